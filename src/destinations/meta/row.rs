//! Meta's row as the sync engine stores and compares it.

use super::hashing::{unsendable_reason, HashedRow, Hasher};
use crate::destinations::Row;
use crate::identity::PersonFields;

impl Row for HashedRow {
    type Hasher = Hasher;

    /// Meta matches on email or phone: names and places alone are not sent.
    fn hash(hasher: &mut Hasher, person: &PersonFields) -> Result<Self, &'static str> {
        let row = hasher.hash_person(person);
        if row.is_sendable() {
            Ok(row)
        } else {
            Err(unsendable_reason(person).unwrap_or("no usable email or phone"))
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        HashedRow::to_bytes(self)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        HashedRow::from_bytes(bytes)
    }
}
