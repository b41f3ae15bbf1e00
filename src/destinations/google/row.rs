//! Google's row as the sync engine stores and compares it.

use super::hashing::{GoogleRow, Hasher, UNSENDABLE};
use crate::destinations::Row;
use crate::identity::PersonFields;

impl Row for GoogleRow {
    type Hasher = Hasher;

    fn hash(hasher: &mut Hasher, person: &PersonFields) -> Result<Self, &'static str> {
        let row = hasher.hash_person(person);
        if row.is_sendable() {
            Ok(row)
        } else {
            Err(UNSENDABLE)
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        GoogleRow::to_bytes(self)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        GoogleRow::from_bytes(bytes)
    }
}
