//! Platform-neutral normalization and SHA-256 hashing helpers for person contact fields, used
//! by every ad platform under [`crate::destinations`].
//!
//! The rules follow `shared/META_API.md`, section "Normalization before SHA-256": every
//! value is normalized, then sent as the lowercase hex SHA-256 of its UTF-8 bytes. A field
//! that normalizes to nothing is sent as `""` (never the hash of `""`), and a raw value that
//! is already 64 hex characters is taken as already hashed and passed through (lowercased).
//!
//! Deliberate differences from Meta's Python SDK: names keep their UTF-8 letters
//! (`Valéry` → `valéry`, no accent stripping) and phones are E.164 digits without `+` and
//! without the national trunk prefix (UK `07700 900123` → `447700900123`).
//!
//! The `normalize_*` functions normalize plaintext only; the 64-hex passthrough is applied by
//! [`hash_person`](crate::destinations::meta::hashing::hash_person) /
//! [`Hasher::hash_person`](crate::destinations::meta::hashing::Hasher::hash_person) before
//! normalizing.
//!
//! Nothing here logs, and no error or reason string ever contains the input values.

pub mod address;
pub mod country;
pub mod date;
pub mod email;
pub mod gender;
pub mod name;
pub mod phone;
pub mod sha;

pub use address::{normalize_state, normalize_zip};
pub use country::normalize_country;
pub use date::{dob_year, parse_date};
pub use email::normalize_email;
pub use gender::normalize_gender;
pub use name::{normalize_city, normalize_name};
pub use phone::normalize_phone;
pub use sha::{sha256_hex, Hash};

use chrono::NaiveDate;

/// Raw contact data as stored in the `person` table (messy: " Ann@Example.COM ", "(650) 555-0123", " Us ").
#[derive(Debug, Default, Clone, Copy)]
pub struct PersonFields<'a> {
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub city: Option<&'a str>,
    pub state: Option<&'a str>,
    pub zip: Option<&'a str>,
    pub country: Option<&'a str>,
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Option<&'a str>,
    /// Not contact data: for an audience with a `value_attribute` (a value-based Meta list),
    /// that trait of the person as text, `""` when the person has none; `None` for any other
    /// audience. Meta's row parses it (`MetaRow`); other platforms ignore it.
    pub value: Option<&'a str>,
}
