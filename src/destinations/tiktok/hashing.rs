//! TikTok's row: `EMAIL_SHA256` and `PHONE_SHA256` (DESIGN §8.1), lowercase hex SHA-256.
//!
//! The sources conflict (DESTINATIONS.md §4.4); the newest official page ("List of supported
//! IDs", Aug 2025) wins: email with spaces removed, lowercased, and `+` and what follows it
//! removed from the local part (for every domain); dots are kept (only the Jul 2024 version
//! removed them). Phone: digits with the country code, no `+`, no leading zeros: E.164 without
//! `+`, as [`crate::identity::phone`] gives it (TikTok's published example hash is of the
//! number without `+`).

use crate::destinations::Row;
use crate::identity::country::country_code;
use crate::identity::email::email_into;
use crate::identity::phone::{phone_into, PhoneStatus};
use crate::identity::sha::{passthrough, push_hex, sha, Hash};
use crate::identity::PersonFields;

/// TikTok's `id_schema`, in the order of [`TiktokRow`]'s fields.
pub const ID_SCHEMA: [&str; 2] = ["EMAIL_SHA256", "PHONE_SHA256"];

/// A stored row's size (V1's CHECK on `audience_member_sync.hashes`): Meta's ten 32-byte slots,
/// email in EMAIL's, phone in PHONE's, the rest zero, so `get_audience_members_for_export`
/// reads every platform's rows alike.
const ROW_BYTES: usize = 320;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TiktokRow {
    pub email: Option<Hash>,
    pub phone: Option<Hash>,
}

impl TiktokRow {
    /// The hex hashes in [`ID_SCHEMA`] order; `None` where the member has none.
    pub fn hex_fields(&self) -> [Option<String>; 2] {
        [self.email, self.phone].map(|h| {
            h.map(|h| {
                let mut out = String::with_capacity(64);
                push_hex(&h, &mut out);
                out
            })
        })
    }
}

/// Normalization buffers, reused across a sync's members.
#[derive(Default)]
pub struct Hasher {
    raw: String,
    buf: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    Ok(Hash),
    Missing,
    Invalid,
}

impl Hasher {
    fn email(&mut self, value: Option<&str>) -> Found {
        let Some(t) = value.map(str::trim).filter(|t| !t.is_empty()) else {
            return Found::Missing;
        };
        if let Some(h) = passthrough(t) {
            return Found::Ok(h);
        }
        // "Remove spaces": every whitespace, inside too.
        self.raw.clear();
        self.raw.extend(t.chars().filter(|c| !c.is_whitespace()));
        if !email_into(&self.raw, &mut self.buf) {
            return Found::Invalid;
        }
        let at = self.buf.find('@').unwrap_or_default();
        if let Some(plus) = self.buf[..at].find('+') {
            if plus == 0 {
                return Found::Invalid;
            }
            self.buf.replace_range(plus..at, "");
        }
        Found::Ok(sha(self.buf.as_bytes()))
    }

    fn phone(&mut self, value: Option<&str>, country: Option<&str>) -> (Found, PhoneStatus) {
        let Some(t) = value.map(str::trim).filter(|t| !t.is_empty()) else {
            return (Found::Missing, PhoneStatus::Missing);
        };
        if let Some(h) = passthrough(t) {
            return (Found::Ok(h), PhoneStatus::Ok);
        }
        let cc = country.map(str::trim).and_then(country_code);
        match phone_into(t, cc, &mut self.buf) {
            PhoneStatus::Ok => (Found::Ok(sha(self.buf.as_bytes())), PhoneStatus::Ok),
            status => (Found::Invalid, status),
        }
    }
}

impl Row for TiktokRow {
    type Hasher = Hasher;

    /// TikTok matches on email or phone; a member with neither cannot be sent.
    fn hash(hasher: &mut Hasher, person: &PersonFields) -> Result<Self, &'static str> {
        let email = hasher.email(person.email);
        let (phone, phone_status) = hasher.phone(person.phone, person.country);
        let hash = |f| match f {
            Found::Ok(h) => Some(h),
            _ => None,
        };
        let row = TiktokRow {
            email: hash(email),
            phone: hash(phone),
        };
        if row.email.is_some() || row.phone.is_some() {
            return Ok(row);
        }
        Err(match (email, phone_status) {
            (Found::Missing, PhoneStatus::Missing) => "no email or phone",
            (_, PhoneStatus::NoCountry) => {
                "no usable email or phone (email missing or invalid, phone has no country code and the person no country)"
            }
            (Found::Missing, _) => {
                "no usable email or phone (email missing, phone not a possible number for its country)"
            }
            (_, PhoneStatus::Missing) => "no usable email or phone (email invalid, phone missing)",
            _ => "no usable email or phone (email invalid, phone not a possible number for its country)",
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; ROW_BYTES];
        for (chunk, h) in out.chunks_exact_mut(32).zip([self.email, self.phone]) {
            if let Some(h) = h {
                chunk.copy_from_slice(&h);
            }
        }
        out
    }

    /// An all-zero slot reads back as absent (no real SHA-256 digest is all zeros); `None`
    /// when any slot but email and phone is set.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ROW_BYTES || bytes[64..].iter().any(|&b| b != 0) {
            return None;
        }
        let half = |c: &[u8]| -> Option<Hash> {
            c.iter()
                .any(|&b| b != 0)
                .then(|| c.try_into().ok())
                .flatten()
        };
        Some(TiktokRow {
            email: half(&bytes[..32]),
            phone: half(&bytes[32..64]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: Option<&str>, phone: Option<&str>, country: Option<&str>) -> [Option<String>; 2] {
        let p = PersonFields {
            email,
            phone,
            country,
            ..PersonFields::default()
        };
        TiktokRow::hash(&mut Hasher::default(), &p)
            .unwrap()
            .hex_fields()
    }

    #[test]
    fn published_vectors() {
        // DESTINATIONS.md §4.6: TikTok's own examples (email, phone without '+') and the US
        // example of the Aug 2025 page ((657)777-0000 → 16577770000).
        let jane = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69";
        let am = "65b7e6dcf6f4310f8d7cbfbd78289a753062fb054d6664fb9aaac5df66a422d4";
        let us = "8d7bdaaf75196f351d22942fc0dd79304ffabc3eaf3339460ef9da0773e3aec2";
        assert_eq!(
            row(Some("janedoe@gmail.com"), None, None)[0].as_deref(),
            Some(jane)
        );
        assert_eq!(
            row(None, Some("+37493828222"), None)[1].as_deref(),
            Some(am)
        );
        assert_eq!(
            row(None, Some("(657)777-0000"), Some("US"))[1].as_deref(),
            Some(us)
        );
        assert_eq!(
            row(None, Some("+1 657 777 0000"), None)[1].as_deref(),
            Some(us)
        );
    }

    #[test]
    fn email_rules_of_the_newest_page() {
        let jane = row(Some("janedoe@gmail.com"), None, None)[0].clone();
        for same in [
            " Jane Doe@Gmail.com ",
            "JANEDOE+ads@gmail.com",
            "janedoe+@gmail.com",
        ] {
            assert_eq!(row(Some(same), None, None)[0], jane, "{same}");
        }
        // Dots stay (only the 2024 page removed them).
        assert_ne!(row(Some("jane.doe@gmail.com"), None, None)[0], jane);
    }

    #[test]
    fn unsendable_members_say_why_and_missing_fields_stay_empty() {
        let p = |email, phone| PersonFields {
            email,
            phone,
            ..PersonFields::default()
        };
        let mut h = Hasher::default();
        assert_eq!(
            TiktokRow::hash(&mut h, &p(None, None)).unwrap_err(),
            "no email or phone"
        );
        let err = TiktokRow::hash(&mut h, &p(Some("+x@y.com"), Some("12"))).unwrap_err();
        assert!(err.starts_with("no usable email or phone"), "{err}");
        let only_email = row(Some("a@b.co"), None, None);
        assert!(only_email[0].is_some() && only_email[1].is_none());
    }

    #[test]
    fn bytes_round_trip() {
        let r = TiktokRow {
            email: None,
            phone: Some(sha(b"1")),
        };
        assert_eq!(r.to_bytes().len(), 320);
        assert_eq!(TiktokRow::from_bytes(&r.to_bytes()), Some(r));
        assert_eq!(TiktokRow::from_bytes(&[1u8; 64]), None);
        assert_eq!(TiktokRow::from_bytes(&[1u8; 320]), None);
    }
}
