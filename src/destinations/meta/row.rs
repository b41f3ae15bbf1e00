//! Meta's row as the sync engine stores and compares it: the hashed identifiers and, in a
//! value-based list, the person's value (`LOOKALIKE_VALUE`, sent as a number, not hashed).

use super::hashing::{unsendable_reason, HashedRow, Hasher};
use crate::destinations::Row;
use crate::identity::PersonFields;

/// Why a member of a value-based list is not sent. A row without a usable value is skipped
/// rather than sent with 0: 0 is a value ("worth nothing") that would pull a value-based
/// lookalike towards people like them, and a missing or broken trait is a data problem the
/// marketer can see (the member's failure reason) and fix; the member is sent at the first sync
/// after it is fixed.
pub const NO_VALUE: &str =
    "no usable value for the audience's value_attribute (a number of at least 0 is needed)";

/// A member's row: hashed identifiers, plus its value when the list is value-based.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaRow {
    pub hashes: HashedRow,
    pub value: Option<f64>,
}

/// Bytes of the stored hashes; a value-based row appends its value (8 bytes, big-endian IEEE
/// 754), so a change of value alone is a changed row: it reaches Meta at the next sync that
/// re-hashes the member (`update`, `full`), as a change of email would.
const HASH_BYTES: usize = 320;

/// The value the trait's text holds, if it is a usable one: a finite number of at least 0.
pub fn parse_value(raw: &str) -> Option<f64> {
    let v: f64 = raw.trim().parse().ok()?;
    // -0 is 0; "inf" and "NaN" parse but are no amounts.
    (v.is_finite() && v >= 0.0).then_some(v.abs())
}

impl Row for MetaRow {
    type Hasher = Hasher;

    /// Meta matches on email or phone: names and places alone are not sent. A value-based
    /// list's member needs a value too ([`NO_VALUE`]).
    fn hash(hasher: &mut Hasher, person: &PersonFields) -> Result<Self, &'static str> {
        let hashes = hasher.hash_person(person);
        if !hashes.is_sendable() {
            return Err(unsendable_reason(person).unwrap_or("no usable email or phone"));
        }
        let value = match person.value {
            None => None,
            Some(raw) => Some(parse_value(raw).ok_or(NO_VALUE)?),
        };
        Ok(MetaRow { hashes, value })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.hashes.to_bytes();
        if let Some(v) = self.value {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (hashes, value) = bytes.split_at_checked(HASH_BYTES)?;
        let value = match value.len() {
            0 => None,
            8 => Some(f64::from_be_bytes(value.try_into().ok()?)),
            _ => return None,
        };
        Some(MetaRow {
            hashes: HashedRow::from_bytes(hashes)?,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person<'a>(email: &'a str, value: Option<&'a str>) -> PersonFields<'a> {
        PersonFields {
            email: Some(email),
            value,
            ..PersonFields::default()
        }
    }

    #[test]
    fn values_are_non_negative_finite_numbers() {
        assert_eq!(parse_value("44.5"), Some(44.5));
        assert_eq!(parse_value(" 140 "), Some(140.0));
        assert_eq!(parse_value("0"), Some(0.0));
        assert_eq!(parse_value("-0"), Some(0.0));
        for bad in ["", "-1", "abc", "NaN", "inf", "1e999", "true", "{\"a\":1}"] {
            assert_eq!(parse_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_value_based_row_carries_its_value_through_its_bytes() {
        let mut h = Hasher::new();
        let plain = MetaRow::hash(&mut h, &person("a@example.com", None)).unwrap();
        assert_eq!(plain.value, None);
        assert_eq!(plain.to_bytes().len(), HASH_BYTES);
        let valued = MetaRow::hash(&mut h, &person("a@example.com", Some("12.5"))).unwrap();
        assert_eq!(valued.value, Some(12.5));
        assert_eq!(valued.hashes, plain.hashes);
        assert_eq!(
            MetaRow::from_bytes(&valued.to_bytes()),
            Some(valued.clone())
        );
        assert_eq!(MetaRow::from_bytes(&plain.to_bytes()), Some(plain));
        let other = MetaRow::hash(&mut h, &person("a@example.com", Some("13"))).unwrap();
        assert_ne!(
            other.to_bytes(),
            valued.to_bytes(),
            "a new value is a changed row"
        );
        assert_eq!(MetaRow::from_bytes(&[0; 321]), None);
    }

    #[test]
    fn a_value_based_member_without_a_usable_value_is_not_sent() {
        let mut h = Hasher::new();
        for raw in ["", "-3", "lots"] {
            assert_eq!(
                MetaRow::hash(&mut h, &person("a@example.com", Some(raw))),
                Err(NO_VALUE)
            );
        }
        // No identifier is said first: the value would not help.
        let nobody = PersonFields {
            value: Some("5"),
            ..PersonFields::default()
        };
        assert_eq!(MetaRow::hash(&mut h, &nobody), Err("no email or phone"));
    }
}
