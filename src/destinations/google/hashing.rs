//! Google's normalization (DESTINATIONS.md §2.4, §5) and its row: SHA-256 hex of the email
//! (trimmed, lowercased; for gmail.com and googlemail.com without dots or `+tag` in the local
//! part), of the phone in E.164 *with* `+`, and an address of hashed first and last names with
//! the region and postal code in clear, sent only when all four exist. What is shared with the
//! other platforms (email shape, phone parsing, countries, US ZIPs, SHA-256) comes from
//! [`crate::identity`]; the Google-specific rules are here, so no hash is ever reused between
//! platforms.

use crate::identity::sha::{passthrough, push_hex, sha, Hash};
use crate::identity::{normalize_country, normalize_email, normalize_phone, PersonFields};

/// An address as Google matches it: names hashed, region (ISO 3166-1 alpha-2, uppercase) and
/// postal code in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub given_name: Hash,
    pub family_name: Hash,
    pub region_code: [u8; 2],
    pub postal_code: String,
}

/// One member's identifiers, hashed the Google way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoogleRow {
    pub email: Option<Hash>,
    pub phone: Option<Hash>,
    pub address: Option<Address>,
}

/// Per-sync state (none: each person is hashed on its own).
#[derive(Debug, Default)]
pub struct Hasher;

/// Longest postal code kept (Google's are far shorter; anything longer is not one).
const MAX_POSTAL: usize = 16;

/// Email: trim, lowercase, one `@` and a sane domain ([`normalize_email`]); for gmail.com and
/// googlemail.com, every dot and any `+tag` leave the local part (Google's current formatting
/// guide; other domains keep theirs: `user.name+NYC@Example.com` → `user.name+nyc@example.com`).
pub fn normalize_google_email(raw: &str) -> Option<String> {
    let email = normalize_email(raw)?;
    let (local, domain) = email.rsplit_once('@')?;
    if domain != "gmail.com" && domain != "googlemail.com" {
        return Some(email);
    }
    let local = local.split('+').next().unwrap_or_default().replace('.', "");
    (!local.is_empty()).then(|| format!("{local}@{domain}"))
}

/// Phone: E.164 with `+` (`(800) 555-0100`, US → `+18005550100`), parsed as every platform
/// parses phones ([`normalize_phone`]) with the person's country as default region.
pub fn normalize_google_phone(raw: &str, country: Option<&str>) -> Option<String> {
    normalize_phone(raw, country).map(|digits| format!("+{digits}"))
}

/// First or last name: trimmed, lowercase, punctuation removed, inner whitespace kept as one
/// space (Google's formatter keeps inner spaces; its proto asks for no punctuation).
pub fn normalize_google_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    for word in raw.split_whitespace() {
        let letters: String = word
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        if !letters.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&letters);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Region: ISO 3166-1 alpha-2, uppercase (`" us "`, `USA`, `United States` → `US`).
pub fn normalize_region(raw: &str) -> Option<[u8; 2]> {
    let code = normalize_country(raw)?.to_ascii_uppercase();
    let b = code.as_bytes();
    (b.len() == 2).then(|| [b[0], b[1]])
}

/// Postal code: trimmed (Google sends it in clear, as written); US ZIPs cut to their 5 digits.
pub fn normalize_postal(raw: &str, region: [u8; 2]) -> Option<String> {
    if &region == b"US" {
        return crate::identity::normalize_zip(raw, Some("us"));
    }
    let t = raw.trim();
    let ok = !t.is_empty()
        && t.len() <= MAX_POSTAL
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
    ok.then(|| t.to_ascii_uppercase())
}

/// SHA-256 of a value: a 64-hex value is taken as already hashed (the crate's convention).
fn hash_with(raw: &str, normalize: impl FnOnce(&str) -> Option<String>) -> Option<Hash> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    passthrough(t).or_else(|| normalize(t).map(|v| sha(v.as_bytes())))
}

impl Hasher {
    pub fn hash_person(&mut self, p: &PersonFields) -> GoogleRow {
        let email = p.email.and_then(|e| hash_with(e, normalize_google_email));
        let phone = p
            .phone
            .and_then(|ph| hash_with(ph, |t| normalize_google_phone(t, p.country)));
        GoogleRow {
            email,
            phone,
            address: address_of(p),
        }
    }
}

fn address_of(p: &PersonFields) -> Option<Address> {
    let region = normalize_region(p.country?)?;
    Some(Address {
        given_name: hash_with(p.first_name?, normalize_google_name)?,
        family_name: hash_with(p.last_name?, normalize_google_name)?,
        region_code: region,
        postal_code: normalize_postal(p.zip?, region)?,
    })
}

/// Lowercase hex of a digest.
pub fn hex(h: &Hash) -> String {
    let mut s = String::with_capacity(64);
    push_hex(h, &mut s);
    s
}

const EMAIL: u8 = 1;
const PHONE: u8 = 2;
const ADDRESS: u8 = 4;
/// First byte of a stored Google row.
const MARK: u8 = b'G';
/// Stored rows are 320 bytes (`audience_member_sync.hashes`' CHECK, made for Meta's ten
/// digests): `G`, flags, email, phone, given name, family name (32 bytes each, zero when
/// absent), region (2), postal length (1), postal code (up to 16), zeros.
pub const ROW_BYTES: usize = 320;
const EMAIL_AT: usize = 2;
const PHONE_AT: usize = EMAIL_AT + 32;
const GIVEN_AT: usize = PHONE_AT + 32;
const FAMILY_AT: usize = GIVEN_AT + 32;
const REGION_AT: usize = FAMILY_AT + 32;
const POSTAL_LEN_AT: usize = REGION_AT + 2;
const POSTAL_AT: usize = POSTAL_LEN_AT + 1;

impl GoogleRow {
    pub fn is_sendable(&self) -> bool {
        self.email.is_some() || self.phone.is_some() || self.address.is_some()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; ROW_BYTES];
        out[0] = MARK;
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        out[1] = flag(self.email.is_some(), EMAIL)
            | flag(self.phone.is_some(), PHONE)
            | flag(self.address.is_some(), ADDRESS);
        let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
        if let Some(h) = &self.email {
            put(EMAIL_AT, h);
        }
        if let Some(h) = &self.phone {
            put(PHONE_AT, h);
        }
        if let Some(a) = &self.address {
            put(GIVEN_AT, &a.given_name);
            put(FAMILY_AT, &a.family_name);
            put(REGION_AT, &a.region_code);
            put(POSTAL_LEN_AT, &[a.postal_code.len() as u8]);
            put(POSTAL_AT, a.postal_code.as_bytes());
        }
        out
    }

    /// Inverse of [`GoogleRow::to_bytes`]; `None` for anything else (every unused byte must be
    /// zero, so another platform's row is not taken for one).
    pub fn from_bytes(b: &[u8]) -> Option<GoogleRow> {
        if b.len() != ROW_BYTES || b[0] != MARK {
            return None;
        }
        let flags = b[1];
        if flags == 0 || flags & !(EMAIL | PHONE | ADDRESS) != 0 {
            return None;
        }
        let digest = |at: usize| -> Hash { b[at..at + 32].try_into().expect("32 bytes") };
        let zero = |from: usize, to: usize| b[from..to].iter().all(|&x| x == 0);
        let field = |flag: u8, at: usize| (flags & flag != 0).then(|| digest(at));
        let mut row = GoogleRow {
            email: field(EMAIL, EMAIL_AT),
            phone: field(PHONE, PHONE_AT),
            address: None,
        };
        let unused_ok = (row.email.is_some() || zero(EMAIL_AT, PHONE_AT))
            && (row.phone.is_some() || zero(PHONE_AT, GIVEN_AT));
        let mut end = POSTAL_AT;
        if flags & ADDRESS != 0 {
            let len = b[POSTAL_LEN_AT] as usize;
            end = POSTAL_AT + len;
            let postal = std::str::from_utf8(b.get(POSTAL_AT..end)?).ok()?;
            let region: [u8; 2] = [b[REGION_AT], b[REGION_AT + 1]];
            if len == 0 || len > MAX_POSTAL || !region.iter().all(u8::is_ascii_uppercase) {
                return None;
            }
            row.address = Some(Address {
                given_name: digest(GIVEN_AT),
                family_name: digest(FAMILY_AT),
                region_code: region,
                postal_code: postal.to_string(),
            });
        } else if !zero(GIVEN_AT, POSTAL_AT) {
            return None;
        }
        (unused_ok && zero(end, ROW_BYTES)).then_some(row)
    }
}

/// Why a person cannot be sent to Google (a fixed sentence, never the person's data).
pub const UNSENDABLE: &str =
    "no usable email, phone, or full address (first and last name, country and postal code)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sha256_hex;

    /// googleads/data-manager-python tests/formatter_test.py and the formatting guide's
    /// examples (DESTINATIONS.md §2.7), hashes as published.
    #[test]
    fn published_vectors_hash_as_published() {
        let email = normalize_google_email("  ALEXZ@example.com   ").unwrap();
        assert_eq!(email, "alexz@example.com");
        assert_eq!(
            sha256_hex(&email),
            "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"
        );
        for country in [Some("US"), None] {
            let phone = normalize_google_phone("1-800-555-0100   ", country).unwrap();
            assert_eq!(phone, "+18005550100", "{country:?}");
            assert_eq!(
                sha256_hex(&phone),
                "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"
            );
        }
        assert_eq!(
            normalize_google_phone("+44-113-496-0987", None).as_deref(),
            Some("+441134960987")
        );
        assert_eq!(
            normalize_google_phone("441134960987", None).as_deref(),
            Some("+441134960987")
        );
        let given = normalize_google_name("  GivenName  ").unwrap();
        assert_eq!(
            sha256_hex(&given),
            "128a07bfe2df877c52076e60d7774cf5baaa046c5a6c48daf30ff43ecca2f814"
        );
        let family = normalize_google_name("  FamilyName ").unwrap();
        assert_eq!(
            sha256_hex(&family),
            "77762c287e61ce065bee5c15464012c6fbe088398b8057627d5577249430d574"
        );
        for (raw, want, hash) in [
            (
                "Jefferson.Loves.hiking@gmail.com",
                "jeffersonloveshiking@gmail.com",
                "515d2f967f73864e76937ab2b897210a86fd286016903b1b08c3da07c75f513e",
            ),
            (
                "cloudy.sanfrancisco+shopping@gmail.com",
                "cloudysanfrancisco@gmail.com",
                "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4",
            ),
            (
                "user.name+NYC@Example.com",
                "user.name+nyc@example.com",
                "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac",
            ),
        ] {
            let got = normalize_google_email(raw).unwrap();
            assert_eq!(got, want, "{raw}");
            assert_eq!(sha256_hex(&got), hash, "{raw}");
        }
        assert_eq!(
            normalize_google_email("A.B+x@GoogleMail.com").as_deref(),
            Some("ab@googlemail.com")
        );
        assert_eq!(normalize_google_email("+tag@gmail.com"), None);
    }

    #[test]
    fn address_only_with_all_four_and_region_postal_in_clear() {
        let mut h = Hasher;
        let full = PersonFields {
            first_name: Some("  GivenName  "),
            last_name: Some("  FamilyName "),
            country: Some(" us "),
            zip: Some("94045-1234"),
            ..PersonFields::default()
        };
        let row = h.hash_person(&full);
        let a = row.address.clone().expect("address");
        assert_eq!(hex(&a.given_name), sha256_hex("givenname"));
        assert_eq!(hex(&a.family_name), sha256_hex("familyname"));
        assert_eq!(&a.region_code, b"US");
        assert_eq!(a.postal_code, "94045");
        assert!(row.is_sendable() && row.email.is_none());
        for missing in [
            PersonFields { zip: None, ..full },
            PersonFields {
                last_name: None,
                ..full
            },
            PersonFields {
                country: Some("Atlantis"),
                ..full
            },
        ] {
            assert_eq!(h.hash_person(&missing).address, None);
        }
        assert_eq!(
            normalize_google_name(" Mary-Ann  O'Brien Jr. ").as_deref(),
            Some("maryann obrien jr")
        );
    }

    #[test]
    fn rows_round_trip_and_refuse_other_bytes() {
        let mut h = Hasher;
        let row = h.hash_person(&PersonFields {
            email: Some("a@b.co"),
            phone: Some("+1 650 555 1212"),
            first_name: Some("Ann"),
            last_name: Some("Lee"),
            country: Some("GB"),
            zip: Some("sw1a 1aa"),
            ..PersonFields::default()
        });
        assert_eq!(row.address.as_ref().unwrap().postal_code, "SW1A 1AA");
        assert_eq!(hex(&row.phone.unwrap()), sha256_hex("+16505551212"));
        let b = row.to_bytes();
        assert_eq!(GoogleRow::from_bytes(&b), Some(row));
        assert_eq!(b.len(), 320, "the length the member table takes");
        assert_eq!(GoogleRow::from_bytes(&b[..b.len() - 1]), None);
        assert_eq!(GoogleRow::from_bytes(&vec![0u8; 320]), None);
        let mut meta_like = vec![7u8; 320];
        meta_like[0] = b'G';
        meta_like[1] = 1;
        assert_eq!(
            GoogleRow::from_bytes(&meta_like),
            None,
            "a row of digests is not Google's"
        );
        let email_only = GoogleRow {
            email: Some([7; 32]),
            ..GoogleRow::default()
        };
        assert_eq!(
            GoogleRow::from_bytes(&email_only.to_bytes()),
            Some(email_only)
        );
        let hashed = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a";
        let pre = h.hash_person(&PersonFields {
            email: Some(hashed),
            ..PersonFields::default()
        });
        assert_eq!(
            hex(&pre.email.unwrap()),
            hashed,
            "a 64-hex value passes through"
        );
    }
}
