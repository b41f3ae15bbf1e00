//! Meta's multi-key schema: each member is one row of 10 SHA-256 hashes (EMAIL, PHONE, FN, LN,
//! CT, ST, ZIP, COUNTRY, DOBY, GEN) of values normalized by [`crate::identity`], the 64-hex
//! passthrough applied first. Also the per-field hash caches and why a member cannot be sent.
//!
//! Nothing here logs, and no reason string ever contains the input values.

use std::cell::RefCell;
use std::sync::OnceLock;

use chrono::Datelike;

use crate::identity::address::{state_into, zip_into};
use crate::identity::country::country_code;
use crate::identity::date::dob_year_of;
use crate::identity::email::email_into;
use crate::identity::gender::gender_code;
use crate::identity::name::letters_into;
use crate::identity::phone::{phone_into, PhoneStatus};
use crate::identity::sha::{passthrough, push_hex, sha, Hash};
use crate::identity::PersonFields;

/// Meta's multi-key schema, in the order of [`HashedRow`]'s fields.
pub const SCHEMA: [&str; 10] = [
    "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "GEN",
];
/// Number of fields in [`SCHEMA`].
pub const FIELDS: usize = 10;

const EMAIL: usize = 0;
const PHONE: usize = 1;
const FN: usize = 2;
const LN: usize = 3;
const CT: usize = 4;
const ST: usize = 5;
const ZIP: usize = 6;
const COUNTRY: usize = 7;
const DOBY: usize = 8;
const GEN: usize = 9;

/// One member's hashed row in SCHEMA order; None = "" (unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashedRow(pub [Option<Hash>; FIELDS]);

/// Length of [`HashedRow::to_bytes`].
const ROW_BYTES: usize = 32 * FIELDS;

impl HashedRow {
    /// Has EMAIL or PHONE: names and places alone don't match reliably.
    pub fn is_sendable(&self) -> bool {
        self.0[EMAIL].is_some() || self.0[PHONE].is_some()
    }

    /// Exactly 320 bytes: 10 x 32, all-zero 32 bytes for None (stored in PostgreSQL bytea).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; ROW_BYTES];
        for (chunk, field) in out.chunks_exact_mut(32).zip(self.0.iter()) {
            if let Some(h) = field {
                chunk.copy_from_slice(h);
            }
        }
        out
    }

    /// Inverse of [`HashedRow::to_bytes`]; None if the length is not 320.
    /// An all-zero chunk reads back as None (no real SHA-256 digest is all zeros).
    pub fn from_bytes(b: &[u8]) -> Option<HashedRow> {
        if b.len() != ROW_BYTES {
            return None;
        }
        let mut row = [None; FIELDS];
        for (field, chunk) in row.iter_mut().zip(b.chunks_exact(32)) {
            if chunk.iter().any(|&x| x != 0) {
                let mut h = [0u8; 32];
                h.copy_from_slice(chunk);
                *field = Some(h);
            }
        }
        Some(HashedRow(row))
    }

    /// Lowercase 64-hex per field, "" for None: the row Meta receives.
    pub fn hex_fields(&self) -> [String; FIELDS] {
        std::array::from_fn(|i| match &self.0[i] {
            Some(h) => {
                let mut s = String::with_capacity(64);
                push_hex(h, &mut s);
                s
            }
            None => String::new(),
        })
    }

    /// Fast variant of [`HashedRow::hex_fields`]: `out` is made exactly [`FIELDS`] long and its
    /// existing `String`s are cleared and reused, so a caller that keeps `out` between rows does
    /// not allocate.
    pub fn write_hex_fields(&self, out: &mut Vec<String>) {
        out.resize_with(FIELDS, String::new);
        for (s, field) in out.iter_mut().zip(self.0.iter()) {
            s.clear();
            if let Some(h) = field {
                push_hex(h, s);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-field caches

/// SHA-256 of every two-letter lowercase ASCII string ("us", "ca", ...): COUNTRY always and ST
/// usually normalize to one, so their hashes are computed once per process.
fn two_letter_hash(c: [u8; 2]) -> Hash {
    static TABLE: OnceLock<Box<[Hash]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..26 * 26)
            .map(|i| sha(&[b'a' + (i / 26) as u8, b'a' + (i % 26) as u8]))
            .collect()
    });
    table[(c[0] - b'a') as usize * 26 + (c[1] - b'a') as usize]
}

const FIRST_YEAR: i32 = 1900;
const LAST_CACHED_YEAR: i32 = 2100;

fn year_hash(year: i32) -> Hash {
    static TABLE: OnceLock<Box<[Hash]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (FIRST_YEAR..=LAST_CACHED_YEAR)
            .map(|y| sha(dob_year_of(y).as_bytes()))
            .collect()
    });
    if (FIRST_YEAR..=LAST_CACHED_YEAR).contains(&year) {
        table[(year - FIRST_YEAR) as usize]
    } else {
        sha(dob_year_of(year).as_bytes())
    }
}

fn gender_hash(g: u8) -> Hash {
    static TABLE: OnceLock<[Hash; 2]> = OnceLock::new();
    let t = TABLE.get_or_init(|| [sha(b"m"), sha(b"f")]);
    if g == b'm' {
        t[0]
    } else {
        t[1]
    }
}

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.year())
        .unwrap_or(LAST_CACHED_YEAR)
}

// ---------------------------------------------------------------------------------------------
// Rows

/// A reusable hasher holding scratch buffers, so the hot loop does not allocate per field.
pub struct Hasher {
    buf: String,
    current_year: i32,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            buf: String::with_capacity(128),
            // DOBY accepts 1900..=current year (Meta's range). Read once: a hasher living across
            // New Year accepts the new year's births a little late, which is harmless.
            current_year: current_year(),
        }
    }

    /// Normalizes and hashes one person; see [`crate::identity`] for the rules.
    pub fn hash_person(&mut self, p: &PersonFields) -> HashedRow {
        let mut row = [None; FIELDS];
        let buf = &mut self.buf;

        // COUNTRY first: PHONE, ST and ZIP depend on it.
        let mut country = None;
        if let Some(t) = p.country.map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(h) = passthrough(t) {
                row[COUNTRY] = Some(h);
            } else if let Some(c) = country_code(t) {
                country = Some(c);
                row[COUNTRY] = Some(two_letter_hash(c));
            }
        }

        row[EMAIL] = hash_field(buf, p.email, email_into);
        row[PHONE] = hash_field(buf, p.phone, |s, out| {
            phone_into(s, country, out) == PhoneStatus::Ok
        });
        row[FN] = hash_field(buf, p.first_name, letters_into);
        row[LN] = hash_field(buf, p.last_name, letters_into);
        row[CT] = hash_field(buf, p.city, letters_into);
        row[ST] = hash_field(buf, p.state, |s, out| state_into(s, country, out));
        row[ZIP] = hash_field(buf, p.zip, |s, out| zip_into(s, country, out));
        if let Some(d) = p.date_of_birth {
            let y = d.year();
            if (FIRST_YEAR..=self.current_year).contains(&y) {
                row[DOBY] = Some(year_hash(y));
            }
        }
        if let Some(g) = p.gender.and_then(gender_code) {
            row[GEN] = Some(gender_hash(g));
        }
        HashedRow(row)
    }
}

fn hash_field(
    buf: &mut String,
    raw: Option<&str>,
    normalize: impl FnOnce(&str, &mut String) -> bool,
) -> Option<Hash> {
    let t = raw?.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(h) = passthrough(t) {
        return Some(h);
    }
    if !normalize(t, buf) {
        return None;
    }
    let b = buf.as_bytes();
    if b.len() == 2 && b.iter().all(u8::is_ascii_lowercase) {
        return Some(two_letter_hash([b[0], b[1]]));
    }
    Some(sha(b))
}

/// Normalizes and hashes one person (uses a per-thread [`Hasher`]).
pub fn hash_person(p: &PersonFields) -> HashedRow {
    thread_local! {
        static HASHER: RefCell<Hasher> = RefCell::new(Hasher::new());
    }
    HASHER.with(|h| match h.try_borrow_mut() {
        Ok(mut h) => h.hash_person(p),
        Err(_) => Hasher::new().hash_person(p),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EmailStatus {
    Ok,
    Missing,
    Invalid,
}

/// Why a member cannot be sent, for the member's failure reason (never contains the PII itself).
/// None when [`hash_person`] would give a sendable row.
pub fn unsendable_reason(p: &PersonFields) -> Option<&'static str> {
    let mut buf = String::new();
    let email = match p.email.map(str::trim).filter(|t| !t.is_empty()) {
        None => EmailStatus::Missing,
        Some(t) if passthrough(t).is_some() || email_into(t, &mut buf) => EmailStatus::Ok,
        Some(_) => EmailStatus::Invalid,
    };
    let country = p
        .country
        .map(str::trim)
        .filter(|t| passthrough(t).is_none())
        .and_then(country_code);
    let phone = match p.phone.map(str::trim).filter(|t| !t.is_empty()) {
        None => PhoneStatus::Missing,
        Some(t) if passthrough(t).is_some() => PhoneStatus::Ok,
        Some(t) => phone_into(t, country, &mut buf),
    };
    use EmailStatus as E;
    use PhoneStatus as P;
    match (email, phone) {
        (E::Ok, _) | (_, P::Ok) => None,
        (E::Missing, P::Missing) => Some("no email or phone"),
        (E::Missing, P::Invalid) => {
            Some("no usable email or phone (email missing, phone not a possible number for its country)")
        }
        (E::Missing, P::NoCountry) => Some(
            "no usable email or phone (email missing, phone has no country code and the person no country)",
        ),
        (E::Invalid, P::Missing) => Some("no usable email or phone (email invalid, phone missing)"),
        (E::Invalid, P::Invalid) => {
            Some("no usable email or phone (email invalid, phone not a possible number for its country)")
        }
        (E::Invalid, P::NoCountry) => Some(
            "no usable email or phone (email invalid, phone has no country code and the person no country)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    use crate::identity::{normalize_email, normalize_phone, sha256_hex};

    const MARY_HASH: &str = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79";
    const PHONE_HASH: &str = "1ef970831d7963307784fa8688e8fce101a15685d62aa765fed23f3a2c576a4e";

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn schema_shape() {
        assert_eq!(SCHEMA.len(), FIELDS);
        assert_eq!(SCHEMA[EMAIL], "EMAIL");
        assert_eq!(SCHEMA[PHONE], "PHONE");
        assert_eq!(SCHEMA[COUNTRY], "COUNTRY");
        assert_eq!(SCHEMA[GEN], "GEN");
    }

    #[test]
    fn meta_email_vector() {
        assert_eq!(sha256_hex("mary@example.com"), MARY_HASH);
        let n = normalize_email("  Mary@Example.COM ").unwrap();
        assert_eq!(n, "mary@example.com");
        assert_eq!(sha256_hex(&n), MARY_HASH);
        let row = hash_person(&PersonFields {
            email: Some(" MARY@example.com"),
            ..Default::default()
        });
        assert_eq!(row.hex_fields()[EMAIL], MARY_HASH);
    }

    #[test]
    fn meta_phone_vector() {
        assert_eq!(sha256_hex("15559876543"), PHONE_HASH);
        // 555 is not a real US area code: only the "possible number" check accepts Meta's own
        // example, which is why that is the check used.
        for (raw, country) in [
            ("+1 555 987 6543", None),
            ("+1 (555) 987-6543", Some("US")),
            ("(555) 987-6543", Some("us")),
            ("555.987.6543", Some(" US ")),
            ("1-555-987-6543", Some("US")),
            ("15559876543", Some("USA")),
            ("001 555 987 6543", None),
        ] {
            let n = normalize_phone(raw, country);
            assert_eq!(n, s("15559876543"), "{raw:?} {country:?}");
        }
        let row = hash_person(&PersonFields {
            phone: Some("(555) 987-6543"),
            country: Some("US"),
            ..Default::default()
        });
        assert_eq!(row.hex_fields()[PHONE], PHONE_HASH);
        // Without a country or '+', the digits must form a *valid* number: Meta's fictional
        // 555 number is not one, a real San Francisco number is.
        assert_eq!(normalize_phone("15559876543", None), None);
        assert_eq!(normalize_phone("14155552671", None), s("14155552671"));
        assert_eq!(normalize_phone("6505551212", None), None);
    }

    /// Random messy strings: never a panic, and any accepted phone is plain digits with no
    /// leading zero; the reason and the row always agree.
    #[test]
    fn phone_fuzz() {
        let chars: Vec<char> = "0123456789+-() .x#extEXT/,;:é–０１＋abc".chars().collect();
        let countries = [
            None,
            Some("US"),
            Some("GB"),
            Some("BR"),
            Some("AR"),
            Some("JP"),
            Some("AU"),
            Some("IT"),
            Some("AG"),
            Some("CO"),
            Some("AQ"),
        ];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let s: String = (0..len)
                .map(|_| chars[(next() % chars.len() as u64) as usize])
                .collect();
            let country = countries[(next() % countries.len() as u64) as usize];
            if let Some(p) = normalize_phone(&s, country) {
                assert!(
                    p.bytes().all(|b| b.is_ascii_digit()) && !p.starts_with('0') && p.len() <= 17,
                    "{s:?} {country:?} {p}"
                );
            }
            let person = PersonFields {
                phone: Some(&s),
                email: Some(&s),
                country,
                ..Default::default()
            };
            assert_eq!(
                hash_person(&person).is_sendable(),
                unsendable_reason(&person).is_none()
            );
        }
    }

    #[test]
    fn names_keep_utf8_letters() {
        let row = hash_person(&PersonFields {
            first_name: Some("Valéry"),
            ..Default::default()
        });
        assert_eq!(row.hex_fields()[FN], sha256_hex("valéry"));
        assert_ne!(row.hex_fields()[FN], sha256_hex("valery"));
    }

    #[test]
    fn gender_and_year() {
        let row = hash_person(&PersonFields {
            date_of_birth: Some(date(1985, 3, 2)),
            gender: Some("Female"),
            ..Default::default()
        });
        assert_eq!(row.hex_fields()[DOBY], sha256_hex("1985"));
        assert_eq!(row.hex_fields()[GEN], sha256_hex("f"));
        // Outside Meta's 1900..=current year range: absent.
        for y in [1850, current_year() + 1] {
            let row = hash_person(&PersonFields {
                date_of_birth: Some(date(y, 1, 1)),
                ..Default::default()
            });
            assert_eq!(row.0[DOBY], None, "{y}");
        }
    }

    #[test]
    fn full_row() {
        let p = PersonFields {
            email: Some(" Ann@Example.COM "),
            phone: Some("(650) 555-0123"),
            first_name: Some(" Ann-Marie "),
            last_name: Some("D'Été"),
            city: Some("San Francisco"),
            state: Some("california"),
            zip: Some("94105-1234"),
            country: Some(" Us "),
            date_of_birth: Some(date(1990, 12, 31)),
            gender: Some("F"),
            value: None,
        };
        let want = [
            "ann@example.com",
            "16505550123",
            "annmarie",
            "dété",
            "sanfrancisco",
            "ca",
            "94105",
            "us",
            "1990",
            "f",
        ]
        .map(sha256_hex);
        assert_eq!(hash_person(&p).hex_fields(), want);
        assert_eq!(Hasher::new().hash_person(&p), hash_person(&p));
        let mut out = vec!["stale".to_string(); 3];
        hash_person(&p).write_hex_fields(&mut out);
        assert_eq!(out, want.to_vec());
    }

    #[test]
    fn hex_passthrough() {
        let upper = MARY_HASH.to_uppercase();
        let p = PersonFields {
            email: Some(&upper),
            phone: Some(PHONE_HASH),
            first_name: Some(&format!("  {upper} ")),
            country: Some(&upper),
            ..Default::default()
        };
        let hex = hash_person(&p).hex_fields();
        assert_eq!(hex[EMAIL], MARY_HASH);
        assert_eq!(hex[PHONE], PHONE_HASH);
        assert_eq!(hex[FN], MARY_HASH);
        assert_eq!(hex[COUNTRY], MARY_HASH);
        // 63 hex chars is not a hash: normalized as usual (an invalid email here).
        let p = PersonFields {
            email: Some(&MARY_HASH[1..]),
            ..Default::default()
        };
        assert_eq!(hash_person(&p).0[EMAIL], None);
    }

    #[test]
    fn empty_fields_are_absent_not_hash_of_empty() {
        let p = PersonFields {
            email: Some("  "),
            phone: Some(""),
            first_name: Some(" . "),
            last_name: None,
            city: Some("123"),
            state: Some("  "),
            zip: Some("-"),
            country: Some("Narnia"),
            date_of_birth: None,
            gender: Some("unknown"),
            value: None,
        };
        let row = hash_person(&p);
        assert_eq!(row, HashedRow([None; FIELDS]));
        assert!(row.hex_fields().iter().all(String::is_empty));
        assert!(!row.is_sendable());
    }

    #[test]
    fn bytes_round_trip() {
        let p = PersonFields {
            email: Some("mary@example.com"),
            city: Some("Oslo"),
            gender: Some("m"),
            ..Default::default()
        };
        let row = hash_person(&p);
        let b = row.to_bytes();
        assert_eq!(b.len(), 320);
        assert!(b[32..64].iter().all(|&x| x == 0));
        assert_eq!(&b[..32], &row.0[EMAIL].unwrap());
        assert_eq!(HashedRow::from_bytes(&b), Some(row.clone()));
        let empty = HashedRow([None; FIELDS]);
        assert_eq!(HashedRow::from_bytes(&empty.to_bytes()), Some(empty));
        assert_eq!(HashedRow::from_bytes(&b[..319]), None);
        assert_eq!(HashedRow::from_bytes(&[0u8; 321]), None);
        assert_eq!(HashedRow::from_bytes(&[]), None);
    }

    #[test]
    fn sendable_and_reasons() {
        let email_only = PersonFields {
            email: Some("mary@example.com"),
            ..Default::default()
        };
        assert!(hash_person(&email_only).is_sendable());
        assert_eq!(unsendable_reason(&email_only), None);
        let phone_only = PersonFields {
            phone: Some("+44 7700 900123"),
            ..Default::default()
        };
        assert!(hash_person(&phone_only).is_sendable());
        assert_eq!(unsendable_reason(&phone_only), None);
        let names_only = PersonFields {
            first_name: Some("Mary"),
            last_name: Some("Smith"),
            city: Some("Boston"),
            country: Some("US"),
            ..Default::default()
        };
        assert!(!hash_person(&names_only).is_sendable());
        assert_eq!(unsendable_reason(&names_only), Some("no email or phone"));
        let both_bad = PersonFields {
            email: Some("mary.example.com"),
            phone: Some("123"),
            country: Some("US"),
            ..Default::default()
        };
        assert!(!hash_person(&both_bad).is_sendable());
        assert_eq!(
            unsendable_reason(&both_bad),
            Some("no usable email or phone (email invalid, phone not a possible number for its country)")
        );
        let no_country = PersonFields {
            phone: Some("6505551212"),
            ..Default::default()
        };
        assert_eq!(
            unsendable_reason(&no_country),
            Some("no usable email or phone (email missing, phone has no country code and the person no country)")
        );
    }

    #[test]
    fn reasons_never_contain_pii() {
        let people = [
            PersonFields {
                email: Some("secret.person@nowhere"),
                phone: Some("650 555 1212 1"),
                first_name: Some("Secretname"),
                country: Some("US"),
                ..Default::default()
            },
            PersonFields {
                email: Some("secretperson"),
                phone: Some("5551212"),
                ..Default::default()
            },
            PersonFields {
                phone: Some("4155552671"),
                city: Some("Hiddenville"),
                ..Default::default()
            },
            PersonFields {
                email: Some("bad qwrtmail@x.com"),
                ..Default::default()
            },
            PersonFields {
                last_name: Some("Privateperson"),
                zip: Some("94105"),
                ..Default::default()
            },
        ];
        let mut seen = 0;
        for p in &people {
            let reason = unsendable_reason(p).expect("all of these are unsendable");
            assert!(!hash_person(p).is_sendable());
            seen += 1;
            assert!(!reason.chars().any(|c| c.is_ascii_digit()), "{reason}");
            for v in [p.email, p.phone, p.first_name, p.last_name, p.city, p.zip]
                .into_iter()
                .flatten()
            {
                let v = v.to_lowercase();
                assert!(!reason.to_lowercase().contains(&v), "{reason}");
                for part in v.split(|c: char| !c.is_alphanumeric()) {
                    if part.len() >= 4 {
                        assert!(!reason.to_lowercase().contains(part), "{reason} / {part}");
                    }
                }
            }
        }
        assert_eq!(seen, people.len());
    }

    #[test]
    fn reason_agrees_with_row() {
        let emails = [
            None,
            Some(""),
            Some("bad"),
            Some("ok@example.com"),
            Some(MARY_HASH),
        ];
        let phones = [
            None,
            Some("x"),
            Some("123"),
            Some("6505551212"),
            Some("+16505551212"),
        ];
        let countries = [None, Some("US"), Some("zz")];
        for email in emails {
            for phone in phones {
                for country in countries {
                    let p = PersonFields {
                        email,
                        phone,
                        country,
                        ..Default::default()
                    };
                    assert_eq!(
                        unsendable_reason(&p).is_none(),
                        hash_person(&p).is_sendable(),
                        "{email:?} {phone:?} {country:?}"
                    );
                }
            }
        }
    }
}
