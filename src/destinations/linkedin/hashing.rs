//! LinkedIn's row: one `SHA256_EMAIL`, the SHA-256 (lowercase hex) of the email trimmed and
//! lowercased. LinkedIn does not document a normalization (DESTINATIONS.md §3.3): trim and
//! lowercase is what RudderStack does and what [`crate::identity`] does for Meta; no gmail or
//! `+tag` rewriting, which would stop matching people registered with the literal address.
//! LinkedIn's DMP users carry no phone, and names, titles and companies would travel in plain
//! text (DESIGN §8.1 forbids it): a person without a usable email cannot be sent.

use crate::destinations::Row;
use crate::identity::email::email_into;
use crate::identity::sha::{passthrough, push_hex, sha, Hash};
use crate::identity::PersonFields;

/// A stored row's size (V1's CHECK on `audience_member_sync.hashes`): Meta's ten 32-byte slots,
/// the email in the first (EMAIL's), the rest zero, so `get_audience_members_for_export` reads
/// every platform's rows alike.
const ROW_BYTES: usize = 320;

/// The one identifier LinkedIn matches a member on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkedinRow(pub Hash);

impl LinkedinRow {
    /// `idValue` of `SHA256_EMAIL`: 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        push_hex(&self.0, &mut out);
        out
    }
}

/// The normalization buffer, reused across a sync's members.
#[derive(Default)]
pub struct Hasher {
    buf: String,
}

impl Row for LinkedinRow {
    type Hasher = Hasher;

    fn hash(hasher: &mut Hasher, person: &PersonFields) -> Result<Self, &'static str> {
        let Some(t) = person.email.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err("no email (LinkedIn matches people on their email only)");
        };
        // A value that is already a SHA-256 digest is taken as the platform's hash.
        if let Some(h) = passthrough(t) {
            return Ok(LinkedinRow(h));
        }
        if !email_into(t, &mut hasher.buf) {
            return Err("email invalid (LinkedIn matches people on their email only)");
        }
        Ok(LinkedinRow(sha(hasher.buf.as_bytes())))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; ROW_BYTES];
        out[..32].copy_from_slice(&self.0);
        out
    }

    /// `None` unless the email slot alone is set (no real SHA-256 digest is all zeros).
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ROW_BYTES || bytes[32..].iter().any(|&b| b != 0) {
            return None;
        }
        let hash: Hash = bytes[..32].try_into().ok()?;
        hash.iter().any(|&b| b != 0).then_some(LinkedinRow(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(email: Option<&str>) -> Result<String, &'static str> {
        let p = PersonFields {
            email,
            phone: Some("+1 650 555 0123"),
            first_name: Some("Alex"),
            ..PersonFields::default()
        };
        LinkedinRow::hash(&mut Hasher::default(), &p).map(|r| r.hex())
    }

    #[test]
    fn published_vector_and_normalization() {
        // DESTINATIONS.md §3.5 (derived; the same preimage as Google's published example).
        let want = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a";
        assert_eq!(hash(Some("alexz@example.com")).unwrap(), want);
        assert_eq!(hash(Some("  AlexZ@Example.COM ")).unwrap(), want);
        assert_eq!(
            hash(Some(&want.to_uppercase())).unwrap(),
            want,
            "passthrough"
        );
        // No provider rewriting: dots and +tags stay.
        assert_ne!(hash(Some("alex.z+ads@example.com")).unwrap(), want);
    }

    #[test]
    fn without_an_email_nothing_is_sent_and_the_reason_says_why() {
        // A phone and a name are no substitute: LinkedIn takes no phone, and names travel plain.
        assert!(hash(None).unwrap_err().contains("no email"));
        assert!(hash(Some("   ")).unwrap_err().contains("no email"));
        assert!(hash(Some("not an email")).unwrap_err().contains("invalid"));
    }

    #[test]
    fn bytes_round_trip_and_other_platforms_rows_are_refused() {
        let r = LinkedinRow(sha(b"x"));
        assert_eq!(r.to_bytes().len(), 320);
        assert_eq!(LinkedinRow::from_bytes(&r.to_bytes()), Some(r.clone()));
        assert_eq!(LinkedinRow::from_bytes(&[0u8; 320]), None);
        assert_eq!(LinkedinRow::from_bytes(&r.to_bytes()[..32]), None);
        let mut meta_like = r.to_bytes();
        meta_like[40] = 1;
        assert_eq!(LinkedinRow::from_bytes(&meta_like), None);
    }
}
