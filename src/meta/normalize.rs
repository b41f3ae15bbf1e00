//! Normalization and SHA-256 hashing of person contact fields for Meta Custom Audiences.
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
//! [`hash_person`] / [`Hasher::hash_person`] before normalizing.
//!
//! Nothing here logs, and no error or reason string ever contains the input values.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use phonenumber::country::Id as RegionId;
use phonenumber::metadata::{Metadata, DATABASE};
use sha2::{Digest, Sha256};

/// Meta's multi-key schema, in the order of [`HashedRow`]'s fields.
pub const SCHEMA: [&str; 10] = [
    "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "GEN",
];
/// Number of fields in [`SCHEMA`].
pub const FIELDS: usize = 10;
/// A raw SHA-256 digest.
pub type Hash = [u8; 32];

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
}

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
// Hashing helpers

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_hex(h: &Hash, out: &mut String) {
    let mut buf = [0u8; 64];
    for (i, &b) in h.iter().enumerate() {
        buf[2 * i] = HEX_DIGITS[(b >> 4) as usize];
        buf[2 * i + 1] = HEX_DIGITS[(b & 0x0f) as usize];
    }
    // Every byte of `buf` is an ASCII hex digit.
    out.push_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"));
}

/// SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

fn sha(bytes: &[u8]) -> Hash {
    // Nearly every normalized value fits one 64-byte block (up to 55 bytes + padding): pad it
    // here and run the compression function once, which skips ~20 ns of streaming-buffer
    // bookkeeping per hash. Checked against `Sha256::digest` for every length in the tests.
    if bytes.len() > 55 {
        return Sha256::digest(bytes).into();
    }
    let mut block = [0u8; 64];
    block[..bytes.len()].copy_from_slice(bytes);
    block[bytes.len()] = 0x80;
    block[56..].copy_from_slice(&(bytes.len() as u64 * 8).to_be_bytes());
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &[block]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Lowercase hex SHA-256 of the UTF-8 bytes of `s` (no normalization).
pub fn sha256_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&sha(s.as_bytes()), &mut out);
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A trimmed value of exactly 64 hex characters is an already-hashed value: decode it (which
/// also lowercases it) so it passes through unchanged.
fn passthrough(t: &str) -> Option<Hash> {
    let b = t.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        h[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(h)
}

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
// EMAIL

/// Trim, lowercase; absent unless it has a sane shape: exactly one '@', a non-empty local part,
/// a domain with a dot (not first or last, no empty label) and no whitespace or control chars.
// No provider-specific rewriting (gmail dots, "+tag"): Meta only asks for trim + lowercase, and
// rewriting would stop matching people who registered with the literal address.
pub fn normalize_email(s: &str) -> Option<String> {
    let mut out = String::new();
    email_into(s, &mut out).then_some(out)
}

fn email_into(s: &str, out: &mut String) -> bool {
    out.clear();
    let t = s.trim();
    if t.is_ascii() {
        // ASCII whitespace and control characters are all <= ' ' (or DEL).
        let b = t.as_bytes();
        if b.iter().any(|&c| c <= b' ' || c == 0x7f) {
            return false;
        }
        let mut ats = b
            .iter()
            .enumerate()
            .filter(|(_, &c)| c == b'@')
            .map(|(i, _)| i);
        let (Some(at), None) = (ats.next(), ats.next()) else {
            return false;
        };
        out.push_str(t);
        out.make_ascii_lowercase();
        return email_shape_ok(out, at);
    }
    let mut at = None;
    for (i, c) in t.char_indices() {
        if c.is_whitespace() || c.is_control() {
            return false;
        }
        if c == '@' {
            if at.is_some() {
                return false;
            }
            at = Some(i);
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    let Some(at) = at else { return false };
    // Lowercasing never changes the ASCII '@', but it can change byte lengths before it, so
    // look the separator up again in the output.
    let at = out.find('@').unwrap_or(at);
    email_shape_ok(out, at)
}

fn email_shape_ok(email: &str, at: usize) -> bool {
    let (local, domain) = (&email[..at], &email[at + 1..]);
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

// ---------------------------------------------------------------------------------------------
// FN, LN, CT

/// FN / LN: lowercase (Unicode), letters only; UTF-8 letters are kept (`Valéry` → `valéry`).
// Decision: inner spaces, hyphens and apostrophes are dropped too ("Mary Ann" → "maryann",
// "Jean-Luc" → "jeanluc", "O'Brien" → "obrien"). Meta's rule is "a-z only, lowercase, no
// punctuation, special characters in UTF-8"; a space is not a letter, and Meta's own client-side
// matching removes whitespace from names, so keeping it would hash a value Meta never produces.
// Digits are dropped as well ("letters only"). Combining accents (U+0300-U+036F) are kept so a
// decomposed "e + ´" is not silently turned into an accent-stripped name.
pub fn normalize_name(s: &str) -> Option<String> {
    let mut out = String::new();
    letters_into(s, &mut out).then_some(out)
}

/// CT: lowercase, letters only (Unicode letters), no spaces/punctuation/digits:
/// `San Francisco` → `sanfrancisco`, `São Paulo` → `sãopaulo`.
pub fn normalize_city(s: &str) -> Option<String> {
    let mut out = String::new();
    letters_into(s, &mut out).then_some(out)
}

fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036f}').contains(&c)
}

fn letters_into(s: &str, out: &mut String) -> bool {
    out.clear();
    let t = s.trim();
    if t.is_ascii() {
        for &b in t.as_bytes() {
            if b.is_ascii_alphabetic() {
                out.push(b.to_ascii_lowercase() as char);
            }
        }
        return !out.is_empty();
    }
    for c in t.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphabetic() {
                out.push(c.to_ascii_lowercase());
            }
        } else if c.is_alphabetic() {
            out.extend(c.to_lowercase());
        } else if is_combining_mark(c) && !out.is_empty() {
            out.push(c);
        }
    }
    !out.is_empty()
}

/// Lowercase letters and digits only (Unicode), used for non-US states and non-US ZIPs.
fn alnum_into(s: &str, out: &mut String) -> bool {
    out.clear();
    for c in s.trim().chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            }
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if is_combining_mark(c) && !out.is_empty() {
            out.push(c);
        }
    }
    !out.is_empty()
}

// ---------------------------------------------------------------------------------------------
// ST

/// US states, DC and territories: ANSI 2-letter code and the full name in lowercase letters only.
const US_STATES: [(&str, &str); 57] = [
    ("al", "alabama"),
    ("ak", "alaska"),
    ("az", "arizona"),
    ("ar", "arkansas"),
    ("ca", "california"),
    ("co", "colorado"),
    ("ct", "connecticut"),
    ("de", "delaware"),
    ("fl", "florida"),
    ("ga", "georgia"),
    ("hi", "hawaii"),
    ("id", "idaho"),
    ("il", "illinois"),
    ("in", "indiana"),
    ("ia", "iowa"),
    ("ks", "kansas"),
    ("ky", "kentucky"),
    ("la", "louisiana"),
    ("me", "maine"),
    ("md", "maryland"),
    ("ma", "massachusetts"),
    ("mi", "michigan"),
    ("mn", "minnesota"),
    ("ms", "mississippi"),
    ("mo", "missouri"),
    ("mt", "montana"),
    ("ne", "nebraska"),
    ("nv", "nevada"),
    ("nh", "newhampshire"),
    ("nj", "newjersey"),
    ("nm", "newmexico"),
    ("ny", "newyork"),
    ("nc", "northcarolina"),
    ("nd", "northdakota"),
    ("oh", "ohio"),
    ("ok", "oklahoma"),
    ("or", "oregon"),
    ("pa", "pennsylvania"),
    ("ri", "rhodeisland"),
    ("sc", "southcarolina"),
    ("sd", "southdakota"),
    ("tn", "tennessee"),
    ("tx", "texas"),
    ("ut", "utah"),
    ("vt", "vermont"),
    ("va", "virginia"),
    ("wa", "washington"),
    ("wv", "westvirginia"),
    ("wi", "wisconsin"),
    ("wy", "wyoming"),
    ("dc", "districtofcolumbia"),
    ("as", "americansamoa"),
    ("gu", "guam"),
    ("mp", "northernmarianaislands"),
    ("pr", "puertorico"),
    ("vi", "usvirginislands"),
    ("um", "unitedstatesminoroutlyingislands"),
];

/// Extra spellings seen in CRM data.
const US_STATE_ALIASES: [(&str, &str); 3] = [
    ("dc", "washingtondc"),
    ("vi", "virginislands"),
    ("vi", "virginislandsus"),
];

/// Looks a US state up by code or name (any case, spaces and punctuation ignored).
fn us_state_code(s: &str) -> Option<&'static str> {
    let mut key = [0u8; 40];
    let mut n = 0;
    for &b in s.trim().as_bytes() {
        if b.is_ascii_alphabetic() {
            if n == key.len() {
                return None;
            }
            key[n] = b.to_ascii_lowercase();
            n += 1;
        } else if !b.is_ascii() {
            return None;
        }
    }
    let key = std::str::from_utf8(&key[..n]).ok()?;
    US_STATES
        .iter()
        .chain(US_STATE_ALIASES.iter())
        .find(|(code, name)| *code == key || *name == key)
        .map(|(code, _)| *code)
}

/// ST: US (or country absent and the value is a US state name/code): the 2-letter code,
/// lowercase, full names mapped (`" new york "` → `ny`); other countries: lowercase letters and
/// digits only, no punctuation or spaces (`Île-de-France` → `îledefrance`).
// Decision: with country US an unknown state is absent rather than hashed as typed: Meta matches
// US states on the ANSI code only, so anything else cannot match and would only be noise.
pub fn normalize_state(s: &str, country: Option<&str>) -> Option<String> {
    let mut out = String::new();
    let cc = country.and_then(country_code);
    state_into(s, cc, &mut out).then_some(out)
}

fn state_into(s: &str, country: Option<[u8; 2]>, out: &mut String) -> bool {
    out.clear();
    let us = country == Some(*b"us");
    if us || country.is_none() {
        if let Some(code) = us_state_code(s) {
            out.push_str(code);
            return true;
        }
        if us {
            return false;
        }
    }
    alnum_into(s, out)
}

// ---------------------------------------------------------------------------------------------
// ZIP

/// ZIP: lowercase, no spaces or dashes. US: the first 5 digits (`94105-1234` → `94105`).
/// Others: lowercase alphanumerics (`SW1A 1AA` → `sw1a1aa`).
// Decisions: a US ZIP with fewer than 5 digits (typically a spreadsheet that ate the leading
// zero) or with letters is absent: guessing the missing zero would hash a ZIP the person may not
// have. With no country, a value shaped exactly like a US ZIP+4 ("94105-1234") is cut to 5
// digits, since the generic rule would produce a 9-digit value that matches nobody.
pub fn normalize_zip(s: &str, country: Option<&str>) -> Option<String> {
    let mut out = String::new();
    let cc = country.and_then(country_code);
    zip_into(s, cc, &mut out).then_some(out)
}

fn zip_into(s: &str, country: Option<[u8; 2]>, out: &mut String) -> bool {
    out.clear();
    let t = s.trim();
    if country == Some(*b"us") {
        let mut digits = 0;
        for &b in t.as_bytes() {
            match b {
                b'0'..=b'9' => {
                    if digits < 5 {
                        out.push(b as char);
                    }
                    digits += 1;
                }
                b' ' | b'-' => {}
                _ => {
                    out.clear();
                    return false;
                }
            }
        }
        if digits < 5 {
            out.clear();
            return false;
        }
        return true;
    }
    if country.is_none() && is_zip_plus4(t.as_bytes()) {
        out.push_str(&t[..5]);
        return true;
    }
    alnum_into(t, out)
}

fn is_zip_plus4(b: &[u8]) -> bool {
    b.len() == 10
        && b[..5].iter().all(u8::is_ascii_digit)
        && (b[5] == b'-' || b[5] == b' ')
        && b[6..].iter().all(u8::is_ascii_digit)
}

// ---------------------------------------------------------------------------------------------
// COUNTRY

/// Bit `b` of word `a` is set when the ISO 3166-1 alpha-2 code `[a, b]` exists (249 codes,
/// from the `rust_iso3166` crate).
fn iso_alpha2_bits() -> &'static [u32; 26] {
    static BITS: OnceLock<[u32; 26]> = OnceLock::new();
    BITS.get_or_init(|| {
        let mut bits = [0u32; 26];
        for c in rust_iso3166::ALL {
            let b = c.alpha2.as_bytes();
            bits[(b[0] - b'A') as usize] |= 1 << (b[1] - b'A');
        }
        bits
    })
}

fn is_iso_alpha2(c: [u8; 2]) -> bool {
    c[0].is_ascii_lowercase()
        && c[1].is_ascii_lowercase()
        && iso_alpha2_bits()[(c[0] - b'a') as usize] & (1 << (c[1] - b'a')) != 0
}

/// Common English names and spellings that are not the ISO short name.
// "UK" is ISO's exceptionally reserved code for GB and is what CRMs usually hold for Britain.
const COUNTRY_ALIASES: [(&str, &str); 48] = [
    ("unitedstates", "us"),
    ("america", "us"),
    ("unitedstatesofamerica", "us"),
    ("uk", "gb"),
    ("unitedkingdom", "gb"),
    ("greatbritain", "gb"),
    ("britain", "gb"),
    ("england", "gb"),
    ("scotland", "gb"),
    ("wales", "gb"),
    ("northernireland", "gb"),
    ("southkorea", "kr"),
    ("republicofkorea", "kr"),
    ("northkorea", "kp"),
    ("russia", "ru"),
    ("vietnam", "vn"),
    ("syria", "sy"),
    ("laos", "la"),
    ("iran", "ir"),
    ("bolivia", "bo"),
    ("venezuela", "ve"),
    ("tanzania", "tz"),
    ("taiwan", "tw"),
    ("moldova", "md"),
    ("czechrepublic", "cz"),
    ("turkey", "tr"),
    ("ivorycoast", "ci"),
    ("cotedivoire", "ci"),
    ("capeverde", "cv"),
    ("swaziland", "sz"),
    ("macedonia", "mk"),
    ("burma", "mm"),
    ("vatican", "va"),
    ("vaticancity", "va"),
    ("brunei", "bn"),
    ("macau", "mo"),
    ("thenetherlands", "nl"),
    ("netherlands", "nl"),
    ("holland", "nl"),
    ("uae", "ae"),
    ("drc", "cd"),
    ("democraticrepublicofthecongo", "cd"),
    ("republicofthecongo", "cg"),
    ("easttimor", "tl"),
    ("curacao", "cw"),
    ("reunion", "re"),
    ("palestine", "ps"),
    ("micronesia", "fm"),
];

fn name_key(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// English names (ISO short names, their part before a parenthesis when unambiguous, and the
/// aliases above) → lowercase alpha-2.
fn country_names() -> &'static HashMap<String, [u8; 2]> {
    static NAMES: OnceLock<HashMap<String, [u8; 2]>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let lower = |a2: &str| -> [u8; 2] {
            let b = a2.as_bytes();
            [b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase()]
        };
        let mut map: HashMap<String, [u8; 2]> = HashMap::new();
        for c in rust_iso3166::ALL {
            map.insert(name_key(c.name), lower(c.alpha2));
        }
        // "Bolivia (Plurinational State of)" → "bolivia", unless two countries share it
        // (the two Koreas, the two Congos, the two Virgin Islands).
        let mut short: HashMap<String, Option<[u8; 2]>> = HashMap::new();
        for c in rust_iso3166::ALL {
            if let Some(i) = c.name.find(" (") {
                let key = name_key(&c.name[..i]);
                short
                    .entry(key)
                    .and_modify(|v| *v = None)
                    .or_insert(Some(lower(c.alpha2)));
            }
        }
        for (k, v) in short {
            if let Some(v) = v {
                map.entry(k).or_insert(v);
            }
        }
        for (alias, a2) in COUNTRY_ALIASES {
            map.insert(alias.to_string(), lower(a2));
        }
        map
    })
}

/// Lowercase ISO alpha-2 of a raw country value: an alpha-2 code in any case, an alpha-3 code,
/// or a common English name.
fn country_code(s: &str) -> Option<[u8; 2]> {
    let t = s.trim();
    let b = t.as_bytes();
    if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
        let c = [b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase()];
        if c == *b"uk" {
            return Some(*b"gb");
        }
        return is_iso_alpha2(c).then_some(c);
    }
    if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
        let upper = [
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ];
        let upper = std::str::from_utf8(&upper).ok()?;
        if let Some(c) = rust_iso3166::from_alpha3(upper) {
            let a = c.alpha2.as_bytes();
            return Some([a[0].to_ascii_lowercase(), a[1].to_ascii_lowercase()]);
        }
    }
    if t.is_empty() || t.len() > 80 {
        return None;
    }
    if t.is_ascii() {
        let mut key = [0u8; 80];
        let mut n = 0;
        for &b in t.as_bytes().iter().filter(|b| b.is_ascii_alphabetic()) {
            key[n] = b.to_ascii_lowercase();
            n += 1;
        }
        let key = std::str::from_utf8(&key[..n]).ok()?;
        return country_names().get(key).copied();
    }
    country_names().get(&name_key(t)).copied()
}

/// COUNTRY: ISO 3166-1 alpha-2, lowercase (`" Us "` → `us`). Alpha-3 codes (`USA`) and common
/// English names (`United States`, `United Kingdom`) are mapped; anything else is absent.
pub fn normalize_country(s: &str) -> Option<String> {
    country_code(s).map(|c| String::from_utf8_lossy(&c).into_owned())
}

// ---------------------------------------------------------------------------------------------
// DOBY, GEN

/// DOBY: the four-digit, zero-padded year.
pub fn dob_year(d: NaiveDate) -> String {
    dob_year_of(d.year())
}

fn dob_year_of(year: i32) -> String {
    format!("{year:04}")
}

fn gender_code(s: &str) -> Option<u8> {
    let t = s.trim();
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("m") || is("male") || is("man") {
        Some(b'm')
    } else if is("f") || is("female") || is("woman") {
        Some(b'f')
    } else {
        None
    }
}

/// GEN: `m` / `male` / `man` → `m`, `f` / `female` / `woman` → `f` (any case, trimmed);
/// anything else is absent (never defaulted to `m`).
pub fn normalize_gender(s: &str) -> Option<String> {
    gender_code(s).map(|g| (g as char).to_string())
}

// ---------------------------------------------------------------------------------------------
// PHONE
//
// Phones become E.164 digits without '+', using libphonenumber's metadata (the `phonenumber`
// crate: calling codes, national and international prefixes, possible lengths) with the person's
// country as default region. No dialing data is written here.
//
// Performance: `phonenumber::parse` costs ~1.6 µs and `is_valid` ~5-10 µs (every regex goes
// through one global Mutex-guarded LRU cache of 100 compiled regexes, which thrashes), so with
// them alone a phone would use up the whole 1 µs/person budget. The common shapes (digits with
// spaces, dashes, dots, parentheses or slashes, an optional leading '+', an optional trailing
// extension) take a fast path that follows libphonenumber's own parsing algorithm on the same
// metadata, matching prefix patterns as literals where they are literals and only calling a
// metadata regex when the input can match it. Anything else (letters, RFC 3966 URIs, a region's
// national-prefix rewrite rule that applies, e.g. Argentina's mobile "15" or a NANPA island's
// 7-digit local number) is delegated to `phonenumber::parse`. Both paths end in the same check.
// Tests check the fast path against `phonenumber` on the metadata's example numbers of every
// region and check the prefix shortcuts against the regexes.
//
// Decision (possible vs valid): a number is kept when its length is a *possible* length for its
// country (libphonenumber's isPossibleNumber, minus "local only" lengths such as 7-digit US
// numbers without area code, which cannot be matched). Meta's rule is "not a possible number for
// its country → absent", and full validity would reject Meta's own example 1 555 987 6543 (the
// 555 area code does not exist) and Ofcom's 07700 900xxx range. Validity is only required when
// there is neither a country nor a '+' / '00' prefix (then the digits must make a valid number
// with '+' prepended), because there a possible-length check would accept almost anything.
//
// The `phonenumber` port computes no possible lengths for the general descriptor (so its own
// length checks never fire), which makes its parse always strip a leading calling code from a
// national number (Italian mobile 393 123 4567 → wrong). The fast path computes the lengths as
// libphonenumber does (union over the number types) and follows the Java algorithm instead.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PhoneStatus {
    Ok,
    Missing,
    /// Not a possible number for its country (or unparseable).
    Invalid,
    /// Neither a country nor an international prefix, and not valid as an international number.
    NoCountry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LenCheck {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    InvalidLength,
}

enum Prefix {
    None,
    /// Literal alternatives, tried in order: the regex is a plain alternation of digit strings
    /// and digit classes, e.g. `0|180020` or `(183[12])|0`, expanded.
    Literals(Box<[Box<[u8]>]>),
    /// A real regex: matched through the metadata's cached regex (prefix match, like Java's
    /// `lookingAt`), only when the input starts with one of `leads` (the literal digits each
    /// alternative begins with, when all have some) and its first digit is in `mask`.
    Regex {
        mask: u16,
        leads: Option<Box<[Box<[u8]>]>>,
    },
}

struct Region {
    meta: &'static Metadata,
    id: Option<RegionId>,
    cc: u16,
    cc_buf: [u8; 3],
    cc_len: u8,
    national_prefix: Option<Box<[u8]>>,
    /// National prefix for parsing (inherits the national prefix when absent).
    npp: Prefix,
    /// International dialing prefix (IDD), e.g. `011` for the US.
    idd: Prefix,
    /// Has a national prefix transform rule: delegated to `phonenumber::parse`.
    transform: bool,
    possible: Box<[u16]>,
    local: Box<[u16]>,
}

const NO_REGION: u16 = u16::MAX;

struct PhoneIndex {
    regions: Vec<Region>,
    by_alpha2: Box<[u16]>,
    main_by_cc: Box<[u16]>,
}

/// How a metadata prefix pattern is matched. Patterns use the "ignore whitespace" flag.
fn classify(source: Option<&str>) -> Prefix {
    let Some(source) = source else {
        return Prefix::None;
    };
    let compact: Vec<u8> = source
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match expand_literals(&compact) {
        Some(alts) => Prefix::Literals(alts.into_iter().map(Vec::into_boxed_slice).collect()),
        None => Prefix::Regex {
            mask: first_digits(&compact),
            leads: required_leads(&compact)
                .map(|ls| ls.into_iter().map(Vec::into_boxed_slice).collect()),
        },
    }
}

/// The literal digits every top-level alternative must start with, if each has some.
fn required_leads(p: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for alt in top_level_alternatives(p)? {
        let lead: Vec<u8> = alt
            .iter()
            .enumerate()
            .take_while(|&(i, b)| {
                b.is_ascii_digit() && !matches!(alt.get(i + 1), Some(b'?' | b'*' | b'{'))
            })
            .map(|(_, &b)| b)
            .collect();
        if lead.is_empty() {
            return None;
        }
        out.push(lead);
    }
    Some(out)
}

const ALL_DIGITS: u16 = 0x3ff;

/// Splits at `|` outside parentheses and brackets.
fn top_level_alternatives(p: &[u8]) -> Option<Vec<&[u8]>> {
    let (mut depth, mut in_class, mut start) = (0i32, false, 0);
    let mut alts = Vec::new();
    let mut escaped = false;
    for (i, &b) in p.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => depth -= 1,
            b'|' if !in_class && depth == 0 => {
                alts.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if depth != 0 || in_class {
        return None;
    }
    alts.push(&p[start..]);
    Some(alts)
}

/// Digits of a `[...]` class body like `14-689`; None for anything else (negation, escapes).
fn class_digits(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let a = body[i];
        if !a.is_ascii_digit() {
            return None;
        }
        if i + 2 < body.len() && body[i + 1] == b'-' {
            let z = body[i + 2];
            if !z.is_ascii_digit() || z < a {
                return None;
            }
            out.extend(a..=z);
            i += 3;
        } else {
            out.push(a);
            i += 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A pattern that is an alternation of digit strings and digit classes (each alternative
/// possibly wrapped in one group) as its literal strings, in regex priority order.
fn expand_literals(p: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for alt in top_level_alternatives(p)? {
        let mut alt = alt;
        if alt.first() == Some(&b'(') && alt.last() == Some(&b')') {
            alt = &alt[1..alt.len() - 1];
            if alt.starts_with(b"?:") {
                alt = &alt[2..];
            }
        }
        let mut strings: Vec<Vec<u8>> = vec![Vec::new()];
        let mut i = 0;
        while i < alt.len() {
            let choices = match alt[i] {
                b'0'..=b'9' => {
                    i += 1;
                    vec![alt[i - 1]]
                }
                b'[' => {
                    let end = i + alt[i..].iter().position(|&b| b == b']')?;
                    let digits = class_digits(&alt[i + 1..end])?;
                    i = end + 1;
                    digits
                }
                _ => return None,
            };
            strings = strings
                .iter()
                .flat_map(|s| {
                    choices.iter().map(move |&c| {
                        let mut s = s.clone();
                        s.push(c);
                        s
                    })
                })
                .collect();
            if strings.len() > 64 {
                return None;
            }
        }
        if strings.iter().any(Vec::is_empty) {
            return None;
        }
        out.extend(strings);
    }
    Some(out)
}

/// Digits that can start a match of `p` (bit d for digit d), conservatively: ALL_DIGITS when
/// unsure. Lets the fast path skip the (mutex-guarded) regex for most inputs.
fn first_digits(p: &[u8]) -> u16 {
    let Some(alts) = top_level_alternatives(p) else {
        return ALL_DIGITS;
    };
    let mut mask = 0u16;
    for alt in alts {
        let optional = |next: Option<&u8>| matches!(next, Some(b'?' | b'*' | b'{'));
        mask |= match alt.first() {
            Some(d @ b'0'..=b'9') if !optional(alt.get(1)) => 1 << (d - b'0'),
            Some(b'[') => alt
                .iter()
                .position(|&b| b == b']')
                .filter(|&end| !optional(alt.get(end + 1)))
                .and_then(|end| class_digits(&alt[1..end]))
                .map_or(ALL_DIGITS, |ds| {
                    ds.iter().fold(0, |m, d| m | 1 << (d - b'0'))
                }),
            Some(b'(') => {
                // The group's own first digits, unless the group is optional.
                let mut depth = 0;
                let mut close = None;
                for (i, &b) in alt.iter().enumerate() {
                    match b {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(i);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                match close {
                    Some(c) if !optional(alt.get(c + 1)) => {
                        let inner = &alt[1..c];
                        first_digits(inner.strip_prefix(b"?:").unwrap_or(inner))
                    }
                    _ => ALL_DIGITS,
                }
            }
            _ => ALL_DIGITS,
        };
    }
    mask
}

impl Region {
    fn new(meta: &'static Metadata) -> Region {
        let d = meta.descriptors();
        let mut possible: Vec<u16> = d.general().possible_length().to_vec();
        let mut local: Vec<u16> = d.general().possible_local_length().to_vec();
        // libphonenumber's metadata builder gives the general descriptor the union of the
        // lengths of the number types; the Rust port leaves it empty, so compute it here.
        let types = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        for desc in types.into_iter().flatten() {
            possible.extend_from_slice(desc.possible_length());
            local.extend_from_slice(desc.possible_local_length());
        }
        possible.sort_unstable();
        possible.dedup();
        local.sort_unstable();
        local.dedup();
        let national_prefix: Option<Box<[u8]>> =
            meta.national_prefix().map(|p| p.as_bytes().into());
        let npp = match meta.national_prefix_for_parsing() {
            Some(re) => classify(Some(re.as_str())),
            None => classify(meta.national_prefix()),
        };
        let idd = classify(meta.international_prefix().map(|re| re.as_str()));
        let cc = meta.country_code();
        let cc_text = cc.to_string();
        let mut cc_buf = [0u8; 3];
        cc_buf[..cc_text.len().min(3)].copy_from_slice(&cc_text.as_bytes()[..cc_text.len().min(3)]);
        Region {
            meta,
            id: meta.id().parse().ok(),
            cc,
            cc_buf,
            cc_len: cc_text.len().min(3) as u8,
            national_prefix,
            npp,
            idd,
            transform: meta.national_prefix_transform_rule().is_some(),
            possible: possible.into(),
            local: local.into(),
        }
    }

    /// libphonenumber's testNumberLength for an unknown number type.
    fn test_len(&self, n: usize) -> LenCheck {
        let n = n as u16;
        let (Some(&min), Some(&max)) = (self.possible.first(), self.possible.last()) else {
            return LenCheck::InvalidLength;
        };
        if self.local.contains(&n) {
            LenCheck::LocalOnly
        } else if n == min {
            LenCheck::Possible
        } else if n < min {
            LenCheck::TooShort
        } else if n > max {
            LenCheck::TooLong
        } else if self.possible.contains(&n) {
            LenCheck::Possible
        } else {
            LenCheck::InvalidLength
        }
    }

    /// Stand-in for "matches the general number pattern" without running the regex: a possible
    /// length that does not begin with the national (trunk) prefix.
    fn viable(&self, d: &[u8]) -> bool {
        self.test_len(d.len()) == LenCheck::Possible
            && !self
                .national_prefix
                .as_deref()
                .is_some_and(|p| d.starts_with(p))
    }

    fn prefix_end(&self, p: &Prefix, is_idd: bool, d: &[u8]) -> Option<usize> {
        match p {
            Prefix::None => None,
            Prefix::Literals(alts) => alts.iter().find(|a| d.starts_with(a)).map(|a| a.len()),
            Prefix::Regex { mask, leads } => {
                let first = *d.first()?;
                if !first.is_ascii_digit() || mask & (1 << (first - b'0')) == 0 {
                    return None;
                }
                if leads
                    .as_ref()
                    .is_some_and(|ls| !ls.iter().any(|l| d.starts_with(l)))
                {
                    return None;
                }
                let text = std::str::from_utf8(d).ok()?;
                let re = if is_idd {
                    self.meta.international_prefix()
                } else {
                    self.meta.national_prefix_for_parsing()
                }?;
                re.find(text).filter(|m| m.start() == 0).map(|m| m.end())
            }
        }
    }

    /// Where the national prefix for parsing matches at the start of `d`.
    fn npp_end(&self, d: &[u8]) -> Option<usize> {
        self.prefix_end(&self.npp, false, d)
    }

    /// Where an international dialing prefix at the start of `d` ends (Java: parsePrefixAsIdd,
    /// which refuses an IDD followed by a 0).
    fn idd_end(&self, d: &[u8]) -> Option<usize> {
        self.prefix_end(&self.idd, true, d)
            .filter(|&end| end < d.len() && d[end] != b'0')
    }

    /// Java: maybeStripNationalPrefixAndCarrierCode, plus parseHelper's length check when
    /// `check_len`.
    fn strip_national_prefix<'d>(&self, d: &'d [u8], check_len: bool) -> &'d [u8] {
        let Some(end) = self.npp_end(d) else {
            return d;
        };
        let stripped = &d[end..];
        if stripped.is_empty() || (self.viable(d) && !self.viable(stripped)) {
            return d;
        }
        if check_len
            && matches!(
                self.test_len(stripped.len()),
                LenCheck::TooShort | LenCheck::LocalOnly
            )
        {
            return d;
        }
        stripped
    }

    fn cc_digits(&self) -> &[u8] {
        &self.cc_buf[..self.cc_len as usize]
    }
}

fn phone_index() -> &'static PhoneIndex {
    static INDEX: OnceLock<PhoneIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let db: &'static phonenumber::metadata::Database = &DATABASE;
        let mut regions: Vec<Region> = db.iter().map(Region::new).collect();
        regions.sort_by(|a, b| (a.cc, a.meta.id()).cmp(&(b.cc, b.meta.id())));
        let mut by_alpha2 = vec![NO_REGION; 26 * 26];
        let mut main_by_cc = vec![NO_REGION; 1000];
        for (i, r) in regions.iter().enumerate() {
            let id = r.meta.id().as_bytes();
            if id.len() == 2 && id.iter().all(u8::is_ascii_uppercase) {
                by_alpha2[(id[0] - b'A') as usize * 26 + (id[1] - b'A') as usize] = i as u16;
            }
            let cc = r.cc as usize;
            if cc < main_by_cc.len()
                && (main_by_cc[cc] == NO_REGION || r.meta.is_main_country_for_code())
            {
                main_by_cc[cc] = i as u16;
            }
        }
        PhoneIndex {
            regions,
            by_alpha2: by_alpha2.into(),
            main_by_cc: main_by_cc.into(),
        }
    })
}

impl PhoneIndex {
    fn region_for_country(&self, c: [u8; 2]) -> Option<&Region> {
        let i = self.by_alpha2[(c[0] - b'a') as usize * 26 + (c[1] - b'a') as usize];
        (i != NO_REGION).then(|| &self.regions[i as usize])
    }

    fn main_region(&self, cc: u16) -> Option<&Region> {
        let i = *self.main_by_cc.get(cc as usize)?;
        (i != NO_REGION).then(|| &self.regions[i as usize])
    }
}

/// Longest digit string accepted (E.164 numbers have at most 15 digits, plus IDD / trunk
/// prefixes in national or dialed form).
const MAX_PHONE_DIGITS: usize = 24;

/// PHONE: E.164 digits without '+' (`+1 (650) 555-1212` → `16505551212`), using `country`
/// (alpha-2 in any case, alpha-3 or English name) as the default region. '+' or '00' starts an
/// international number. Absent when not a possible number for its country, and when there is
/// no country and no international prefix unless the digits are a valid number with '+'.
pub fn normalize_phone(s: &str, country: Option<&str>) -> Option<String> {
    let mut out = String::new();
    let cc = country.and_then(country_code);
    (phone_into(s, cc, &mut out) == PhoneStatus::Ok).then_some(out)
}

fn phone_into(raw: &str, country: Option<[u8; 2]>, out: &mut String) -> PhoneStatus {
    out.clear();
    let t = raw.trim();
    if t.is_empty() {
        return PhoneStatus::Missing;
    }
    if t.len() > 64 {
        return PhoneStatus::Invalid;
    }
    let idx = phone_index();
    let region = country.and_then(|c| idx.region_for_country(c));

    let mut buf = [0u8; MAX_PHONE_DIGITS];
    let mut n = 0;
    let mut plus = false;
    let mut unusual = false;
    for (i, c) in t.char_indices() {
        let digit = match c {
            '0'..='9' => Some(c as u8),
            // Fullwidth digits.
            '\u{ff10}'..='\u{ff19}' => Some(b'0' + (c as u32 - 0xff10) as u8),
            _ => None,
        };
        if let Some(d) = digit {
            if n == MAX_PHONE_DIGITS {
                return PhoneStatus::Invalid;
            }
            buf[n] = d;
            n += 1;
            continue;
        }
        match c {
            '+' | '\u{ff0b}' if n == 0 && !plus => plus = true,
            ' '
            | '\t'
            | '-'
            | '.'
            | '('
            | ')'
            | '/'
            | '\u{a0}'
            | '\u{2010}'..='\u{2015}'
            | '\u{2212}'
            | '\u{202f}'
            | '\u{3000}' => {}
            _ => {
                // "650-555-1212 ext. 12": the extension is not part of E.164.
                unusual = n == 0 || !is_extension_suffix(&t[i..]);
                break;
            }
        }
    }
    if unusual {
        return delegate(idx, t, region, out);
    }
    let d = &buf[..n];
    if d.is_empty() {
        return PhoneStatus::Invalid;
    }
    if plus {
        return international(idx, d, out);
    }
    match region {
        Some(r) => {
            // Decision: '00' means international in every country (the brief's rule; it is the
            // IDD of most of the world and no national number starts with it), so a US record
            // holding "0044 7700 900123" works although the US IDD is 011. It is read as '+'
            // first, and only then as the region's own IDD, which for a few regions carries a
            // carrier code (Brazil: "0021 1 650..." = carrier 21, then +1).
            if d.starts_with(b"00") {
                let status = international(idx, &d[2..], out);
                if status == PhoneStatus::Ok {
                    return status;
                }
                if let Some(end) = r.idd_end(d).filter(|&end| end != 2) {
                    return international(idx, &d[end..], out);
                }
                return status;
            }
            if let Some(end) = r.idd_end(d) {
                return international(idx, &d[end..], out);
            }
            // A national-prefix rewrite rule (Argentina's mobile "15", Brazil's carrier codes,
            // the NANPA islands' 7-digit local numbers) is left to the parser, but only when its
            // pattern applies: otherwise such a region parses like any other.
            if r.transform
                && (r.npp_end(d).is_some()
                    || d.strip_prefix(r.cc_digits())
                        .is_some_and(|rest| r.npp_end(rest).is_some()))
            {
                return delegate(idx, t, region, out);
            }
            national(idx, r, d, out)
        }
        None => {
            if d.starts_with(b"00") {
                return international(idx, &d[2..], out);
            }
            without_country(idx, d, out)
        }
    }
}

/// An extension after the number: "ext. 12", "x99", "#5", "extension: 1234", ", ext 7".
fn is_extension_suffix(s: &str) -> bool {
    let s = s.trim_start_matches([' ', ',']);
    let Some(rest) = ["extension", "ext", "ex", "x", "#"].iter().find_map(|m| {
        s.get(..m.len())
            .filter(|head| head.eq_ignore_ascii_case(m))
            .map(|_| &s[m.len()..])
    }) else {
        return false;
    };
    let digits = rest.trim_start_matches(['.', ':', ' ']).trim_end();
    (1..=7).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `d` starts with a calling code (after '+', '00' or an IDD).
fn international(idx: &PhoneIndex, d: &[u8], out: &mut String) -> PhoneStatus {
    // Java: extractCountryCode. A calling code never starts with 0.
    if d.first().is_none_or(|&b| b == b'0') {
        return PhoneStatus::Invalid;
    }
    for len in 1..=3.min(d.len()) {
        let cc = d[..len]
            .iter()
            .fold(0u16, |acc, &b| acc * 10 + (b - b'0') as u16);
        if let Some(r) = idx.main_region(cc) {
            if r.transform && r.npp_end(&d[len..]).is_some() {
                let mut text = String::with_capacity(d.len() + 1);
                text.push('+');
                text.extend(d.iter().map(|&b| b as char));
                return delegate_parse(idx, &text, None, false, out);
            }
            let national = r.strip_national_prefix(&d[len..], true);
            return finish(idx, cc, national, out);
        }
    }
    PhoneStatus::Invalid
}

/// `d` is in national form for region `r` (Java: maybeExtractCountryCode + parseHelper).
fn national(idx: &PhoneIndex, r: &Region, d: &[u8], out: &mut String) -> PhoneStatus {
    let cc = r.cc_digits();
    let cc_len = cc.len();
    if d.starts_with(cc) {
        // Written with the calling code but no '+' ("1 650 555 1212" in the US): drop the
        // calling code when the number is too long without doing so, or only makes sense
        // without it.
        let potential = r.strip_national_prefix(&d[cc_len..], false);
        if (!r.viable(d) && r.viable(potential)) || r.test_len(d.len()) == LenCheck::TooLong {
            return finish(idx, r.cc, potential, out);
        }
    }
    let national = r.strip_national_prefix(d, true);
    finish(idx, r.cc, national, out)
}

/// No country and no '+' / '00': the digits must already hold a calling code and be a valid
/// number (not just a possible one) with '+' prepended.
fn without_country(idx: &PhoneIndex, d: &[u8], out: &mut String) -> PhoneStatus {
    if international(idx, d, out) != PhoneStatus::Ok {
        out.clear();
        return PhoneStatus::NoCountry;
    }
    let mut text = String::with_capacity(d.len() + 1);
    text.push('+');
    text.extend(d.iter().map(|&b| b as char));
    let valid = parse_guarded(&text, None).is_some_and(|p| p.is_valid());
    if !valid {
        out.clear();
        return PhoneStatus::NoCountry;
    }
    PhoneStatus::Ok
}

/// Unusual input (letters, URIs, an applicable rewrite rule): hand it to `phonenumber::parse`.
fn delegate(idx: &PhoneIndex, t: &str, region: Option<&Region>, out: &mut String) -> PhoneStatus {
    // Only ASCII goes to the parser: it keeps the parser on its well-trodden paths.
    let ascii: String = t.chars().filter(char::is_ascii).collect();
    let a = ascii.trim_start();
    if a.starts_with('+') {
        // International numbers are parsed without a default region: the port applies the
        // default region's national-prefix rules even to a foreign '+' number.
        return delegate_parse(idx, a, None, false, out);
    }
    let mut lead = [0u8; MAX_PHONE_DIGITS];
    let mut n = 0;
    for b in a.bytes().filter(u8::is_ascii_digit).take(MAX_PHONE_DIGITS) {
        lead[n] = b;
        n += 1;
    }
    let lead = &lead[..n];
    if let Some(rest) = a.strip_prefix("00") {
        // As in the fast path: plain '00' first, then the region's own IDD reading.
        let text = format!("+{rest}");
        let status = delegate_parse(idx, &text, None, false, out);
        if status == PhoneStatus::Ok {
            return status;
        }
        if let Some(r) = region.filter(|r| r.idd_end(lead).is_some()) {
            return delegate_parse(idx, a, r.id, false, out);
        }
        return status;
    }
    match region {
        Some(r) if r.id.is_some() => delegate_parse(idx, a, r.id, false, out),
        _ => {
            let text = format!("+{a}");
            match delegate_parse(idx, &text, None, true, out) {
                PhoneStatus::Ok => PhoneStatus::Ok,
                _ => PhoneStatus::NoCountry,
            }
        }
    }
}

fn parse_guarded(text: &str, region: Option<RegionId>) -> Option<phonenumber::PhoneNumber> {
    // The parser has had panics on crafted input (RUSTSEC advisories); never let one take the
    // sync down.
    std::panic::catch_unwind(|| phonenumber::parse(region, text))
        .ok()?
        .ok()
}

fn delegate_parse(
    idx: &PhoneIndex,
    text: &str,
    region: Option<RegionId>,
    require_valid: bool,
    out: &mut String,
) -> PhoneStatus {
    let Some(p) = parse_guarded(text, region) else {
        return PhoneStatus::Invalid;
    };
    if require_valid && !p.is_valid() {
        return PhoneStatus::Invalid;
    }
    let national = p.national();
    let mut digits = [0u8; 24];
    let mut n = 0;
    for _ in 0..national.zeros() {
        if n == digits.len() {
            return PhoneStatus::Invalid;
        }
        digits[n] = b'0';
        n += 1;
    }
    let value = national.value().to_string();
    if n + value.len() > digits.len() {
        return PhoneStatus::Invalid;
    }
    digits[n..n + value.len()].copy_from_slice(value.as_bytes());
    n += value.len();
    finish(idx, p.code().value(), &digits[..n], out)
}

/// The shared final check: a possible (not local-only) length for the calling code's main
/// region, then `cc` followed by the national number.
fn finish(idx: &PhoneIndex, cc: u16, national: &[u8], out: &mut String) -> PhoneStatus {
    out.clear();
    if !(2..=17).contains(&national.len()) {
        return PhoneStatus::Invalid;
    }
    let Some(main) = idx.main_region(cc) else {
        return PhoneStatus::Invalid;
    };
    if main.test_len(national.len()) != LenCheck::Possible {
        return PhoneStatus::Invalid;
    }
    // Where 0 is the trunk prefix no national number starts with 0: such a number kept its
    // trunk prefix because the rest is too short ("07700 9001"), and Meta wants no leading zeros.
    if national[0] == b'0'
        && main
            .national_prefix
            .as_deref()
            .is_some_and(|p| p[0] == b'0')
    {
        return PhoneStatus::Invalid;
    }
    out.extend(main.cc_digits().iter().map(|&b| b as char));
    out.extend(national.iter().map(|&b| b as char));
    PhoneStatus::Ok
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

    /// Normalizes and hashes one person; see the module documentation for the rules.
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

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn phone_formats() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("+1 (650) 555-1212", None, Some("16505551212")),
            ("+1 (650) 555-1212", Some("GB"), Some("16505551212")),
            ("(650) 555-1212", Some("US"), Some("16505551212")),
            ("650/555 1212", Some("US"), Some("16505551212")),
            ("1 650 555 1212", Some("US"), Some("16505551212")),
            ("011 44 7700 900123", Some("US"), Some("447700900123")),
            ("0044 7700 900123", Some("US"), Some("447700900123")),
            // UK: national trunk prefix 0 dropped, Meta's SDK would keep it.
            ("07700 900123", Some("GB"), Some("447700900123")),
            ("0044 7700 900123", Some("GB"), Some("447700900123")),
            ("+44 (0) 7700 900123", None, Some("447700900123")),
            ("+44 07700 900123", None, Some("447700900123")),
            ("447700900123", Some("gb"), Some("447700900123")),
            (
                "020 7946 0018",
                Some("United Kingdom"),
                Some("442079460018"),
            ),
            ("030 1234567", Some("DE"), Some("49301234567")),
            ("+49 (0)30 1234567", Some("DE"), Some("49301234567")),
            ("06 12 34 56 78", Some("FR"), Some("33612345678")),
            ("06.12.34.56.78", Some("fr"), Some("33612345678")),
            // Italy keeps the 0 of fixed lines inside E.164; mobiles starting with 39 are not
            // mistaken for a calling code.
            ("02 1234 5678", Some("IT"), Some("390212345678")),
            ("393 123 4567", Some("IT"), Some("393931234567")),
            ("+39 393 123 4567", None, Some("393931234567")),
            ("8 (912) 345-67-89", Some("RU"), Some("79123456789")),
            ("98765 43210", Some("IN"), Some("919876543210")),
            ("0412 345 678", Some("AU"), Some("61412345678")),
            ("(11) 91234-5678", Some("BR"), Some("5511912345678")),
            ("090-1234-5678", Some("JP"), Some("819012345678")),
            ("650-555-1212 ext. 123", Some("US"), Some("16505551212")),
            ("+1 650 555 1212 x99", None, Some("16505551212")),
            ("650 555 1212, Ext: 7", Some("US"), Some("16505551212")),
            ("650-555-1212 #5", Some("US"), Some("16505551212")),
            ("650-555-1212 call me", Some("US"), None),
            ("(11) 2345-6789", Some("BR"), Some("551123456789")),
            ("0 11 2345-6789", Some("BR"), Some("551123456789")),
            ("011 15 2345-6789", Some("AR"), Some("5491123456789")),
            ("+54 9 11 2345-6789", None, Some("5491123456789")),
            ("(268) 460-1234", Some("AG"), Some("12684601234")),
            ("460-1234", Some("AG"), Some("12684601234")),
            ("07781 123456", Some("JE"), Some("447781123456")),
            ("１ ６５０ ５５５ １２１２", Some("US"), Some("16505551212")),
            ("650–555–1212", Some("US"), Some("16505551212")),
        ];
        for &(raw, country, want) in cases {
            assert_eq!(
                normalize_phone(raw, country).as_deref(),
                want,
                "{raw:?} {country:?}"
            );
        }
    }

    #[test]
    fn phone_rejects() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("US")),
            ("   ", Some("US")),
            ("n/a", Some("US")),
            ("123", Some("US")),
            // 7-digit US number: possible only locally, no area code: cannot match.
            ("555-1212", Some("US")),
            ("650 555 12121", Some("US")),
            ("+999 123 456", None),
            ("+0 650 555 1212", None),
            ("0000000000", Some("US")),
            ("07700 9001", Some("GB")),
            ("1234567890123456789012345", Some("US")),
        ];
        for &(raw, country) in cases {
            assert_eq!(normalize_phone(raw, country), None, "{raw:?} {country:?}");
        }
    }

    /// The fast path must agree with libphonenumber on real numbers: for every region, the
    /// metadata's own example numbers written in international, '00' and national (trunk
    /// prefix) form all give calling code + national number.
    #[test]
    fn phone_example_numbers_all_regions() {
        let idx = phone_index();
        let mut checked = 0;
        for r in &idx.regions {
            let d = r.meta.descriptors();
            let cc = r.cc.to_string();
            for desc in [d.fixed_line(), d.mobile()].into_iter().flatten() {
                let Some(ex) = desc.example() else { continue };
                let want = format!("{cc}{ex}");
                if idx.main_region(r.cc).unwrap().test_len(ex.len()) != LenCheck::Possible {
                    continue;
                }
                assert_eq!(
                    normalize_phone(&format!("+{cc} {ex}"), None).as_deref(),
                    Some(want.as_str()),
                    "{} +",
                    r.meta.id()
                );
                let Some(id) = r.id else { continue };
                let alpha2 = id.as_ref();
                // Phone regions that are not ISO countries (AC, TA, XK) are no person's country.
                if country_code(alpha2).is_none() {
                    continue;
                }
                assert_eq!(
                    normalize_phone(&format!("00{cc} {ex}"), Some(alpha2)).as_deref(),
                    Some(want.as_str()),
                    "{alpha2} 00"
                );
                // National form: only where the trunk prefix is a plain literal (regex prefixes
                // also carry carrier codes, e.g. Colombia's "0 + carrier", and "0" + number is not
                // how those numbers are written).
                if r.transform || matches!(r.npp, Prefix::Regex { .. }) {
                    continue;
                }
                let np = r.meta.national_prefix().unwrap_or("");
                let got = normalize_phone(&format!("{np}{ex}"), Some(alpha2));
                assert_eq!(got.as_deref(), Some(want.as_str()), "{alpha2} national");
                // Same answer as phonenumber::parse (which the slow path uses).
                let p = phonenumber::parse(Some(id), format!("{np}{ex}")).unwrap();
                let e164 = p.format().mode(phonenumber::Mode::E164).to_string();
                if ex.starts_with(&cc) {
                    // The port always strips a leading calling code from national numbers.
                    continue;
                }
                assert_eq!(format!("+{want}"), e164, "{alpha2} vs phonenumber");
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} example numbers checked");
    }

    /// The regex-free matching of IDD and national-prefix patterns (literal expansion, first-digit
    /// prefilter) gives the same prefix match as the metadata's regex, for every region.
    #[test]
    fn prefix_shortcuts_agree_with_regex() {
        let idx = phone_index();
        let mut probes: Vec<String> = Vec::new();
        for len in 1..=3u32 {
            for v in 0..10u32.pow(len) {
                probes.push(format!("{v:0w$}5555555555", w = len as usize));
            }
        }
        let mut literal_patterns = 0;
        for r in &idx.regions {
            for (prefix, is_idd) in [(&r.npp, false), (&r.idd, true)] {
                let re = if is_idd {
                    r.meta.international_prefix()
                } else {
                    r.meta.national_prefix_for_parsing()
                };
                let Some(re) = re else { continue };
                let mut mine = probes.clone();
                if let Prefix::Regex {
                    leads: Some(leads), ..
                } = prefix
                {
                    for l in leads.iter() {
                        let l = std::str::from_utf8(l).unwrap();
                        for v in 0..1000 {
                            mine.push(format!("{l}{v:03}5555555"));
                        }
                    }
                }
                if let Prefix::Literals(alts) = prefix {
                    literal_patterns += 1;
                    for a in alts.iter() {
                        let a = std::str::from_utf8(a).unwrap();
                        mine.push(format!("{a}5555555"));
                        for d in 0..10 {
                            mine.push(format!("{}{d}5555", &a[..a.len() - 1]));
                        }
                    }
                }
                for probe in &mine {
                    let want = re.find(probe).filter(|m| m.start() == 0).map(|m| m.end());
                    let got = r.prefix_end(prefix, is_idd, probe.as_bytes());
                    assert_eq!(got, want, "{} {:?} {probe}", r.meta.id(), re.as_str());
                }
            }
        }
        assert!(literal_patterns > 200, "{literal_patterns}");
    }

    #[test]
    fn single_block_sha_matches_sha2() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=data.len() {
            let want: Hash = Sha256::digest(&data[..len]).into();
            assert_eq!(sha(&data[..len]), want, "length {len}");
        }
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
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
        assert_eq!(normalize_name("  Valéry "), s("valéry"));
        assert_eq!(normalize_name("ÉMILE"), s("émile"));
        assert_eq!(normalize_name("Zoë"), s("zoë"));
        assert_eq!(normalize_name("Mary Ann"), s("maryann"));
        assert_eq!(normalize_name("O'Brien-Smith"), s("obriensmith"));
        assert_eq!(normalize_name("Jr."), s("jr"));
        assert_eq!(normalize_name("Łukasz"), s("łukasz"));
        assert_eq!(normalize_name("Müller"), s("müller"));
        assert_eq!(normalize_name("Straße"), s("straße"));
        assert_eq!(normalize_name("山田"), s("山田"));
        // Decomposed é (e + U+0301) keeps its accent.
        assert_eq!(normalize_name("Jose\u{301}"), s("jose\u{301}"));
        assert_eq!(normalize_name(""), None);
        assert_eq!(normalize_name("  "), None);
        assert_eq!(normalize_name("123 -"), None);
        let row = hash_person(&PersonFields {
            first_name: Some("Valéry"),
            ..Default::default()
        });
        assert_eq!(row.hex_fields()[FN], sha256_hex("valéry"));
        assert_ne!(row.hex_fields()[FN], sha256_hex("valery"));
    }

    #[test]
    fn cities() {
        assert_eq!(normalize_city("San Francisco"), s("sanfrancisco"));
        assert_eq!(normalize_city(" St. Louis "), s("stlouis"));
        assert_eq!(normalize_city("São Paulo"), s("sãopaulo"));
        assert_eq!(normalize_city("Paris 15"), s("paris"));
        assert_eq!(normalize_city("Winston-Salem"), s("winstonsalem"));
        assert_eq!(normalize_city("--"), None);
    }

    #[test]
    fn states() {
        assert_eq!(normalize_state("California", Some("US")), s("ca"));
        assert_eq!(normalize_state(" new york ", None), s("ny"));
        assert_eq!(normalize_state("N.Y.", Some("us")), s("ny"));
        assert_eq!(normalize_state("CA", Some("USA")), s("ca"));
        assert_eq!(normalize_state("District of Columbia", Some("US")), s("dc"));
        assert_eq!(normalize_state("Puerto Rico", Some("US")), s("pr"));
        assert_eq!(normalize_state("Narnia", Some("US")), None);
        assert_eq!(normalize_state("Bavaria", Some("DE")), s("bavaria"));
        assert_eq!(
            normalize_state("Île-de-France", Some("FR")),
            s("îledefrance")
        );
        assert_eq!(
            normalize_state("New South Wales", Some("AU")),
            s("newsouthwales")
        );
        assert_eq!(normalize_state("Ontario", None), s("ontario"));
        assert_eq!(normalize_state("", Some("US")), None);
        let mut codes: Vec<&str> = US_STATES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 57);
    }

    #[test]
    fn zips() {
        assert_eq!(normalize_zip("94105-1234", Some("US")), s("94105"));
        assert_eq!(normalize_zip("941051234", Some("US")), s("94105"));
        assert_eq!(normalize_zip(" 02134 ", Some("us")), s("02134"));
        assert_eq!(normalize_zip("2134", Some("US")), None);
        assert_eq!(normalize_zip("9410A", Some("US")), None);
        assert_eq!(normalize_zip("94105-1234", None), s("94105"));
        assert_eq!(normalize_zip("SW1A 1AA", Some("GB")), s("sw1a1aa"));
        assert_eq!(normalize_zip("K1A 0B1", Some("CA")), s("k1a0b1"));
        assert_eq!(normalize_zip("1010-123", Some("PT")), s("1010123"));
        assert_eq!(normalize_zip(" - ", Some("FR")), None);
    }

    #[test]
    fn countries() {
        for v in [
            "US",
            " us ",
            "Us",
            "USA",
            "usa",
            "United States",
            "united states of america",
        ] {
            assert_eq!(normalize_country(v), s("us"), "{v:?}");
        }
        assert_eq!(normalize_country("UK"), s("gb"));
        assert_eq!(normalize_country("GBR"), s("gb"));
        assert_eq!(normalize_country("United Kingdom"), s("gb"));
        assert_eq!(normalize_country("Germany"), s("de"));
        assert_eq!(normalize_country("DEU"), s("de"));
        assert_eq!(normalize_country("Côte d'Ivoire"), s("ci"));
        assert_eq!(normalize_country("Bolivia"), s("bo"));
        assert_eq!(normalize_country("South Korea"), s("kr"));
        assert_eq!(normalize_country("aq"), s("aq"));
        assert_eq!(normalize_country("XX"), None);
        assert_eq!(normalize_country("Korea"), None);
        assert_eq!(normalize_country("Deutschland"), None);
        assert_eq!(normalize_country(""), None);
        assert_eq!(
            iso_alpha2_bits()
                .iter()
                .map(|w| w.count_ones())
                .sum::<u32>(),
            249
        );
    }

    #[test]
    fn gender_and_year() {
        for v in ["m", "M", " male ", "MALE", "Man"] {
            assert_eq!(normalize_gender(v), s("m"), "{v:?}");
        }
        for v in ["f", "F", " Female", "WOMAN", "woman "] {
            assert_eq!(normalize_gender(v), s("f"), "{v:?}");
        }
        for v in ["", "x", "other", "non-binary", "unknown", "mf", "males"] {
            assert_eq!(normalize_gender(v), None, "{v:?}");
        }
        assert_eq!(dob_year(date(1985, 3, 2)), "1985");
        assert_eq!(dob_year(date(987, 1, 1)), "0987");
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
        };
        let row = hash_person(&p);
        assert_eq!(row, HashedRow([None; FIELDS]));
        assert!(row.hex_fields().iter().all(String::is_empty));
        assert!(!row.is_sendable());
    }

    #[test]
    fn emails() {
        let ok = [
            "a@b.co",
            " First.Last+tag@Sub.Example.org ",
            "ÉLODIE@exemple.fr",
        ];
        let want = [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "élodie@exemple.fr",
        ];
        for (v, w) in ok.iter().zip(want) {
            assert_eq!(normalize_email(v).as_deref(), Some(w), "{v:?}");
        }
        for v in [
            "",
            "mary.example.com",
            "@example.com",
            "mary@",
            "mary@example",
            "mary@@example.com",
            "ma ry@example.com",
            "mary@example..com",
            "mary@.example.com",
            "mary@example.com.",
            "a@b@c.com",
        ] {
            assert_eq!(normalize_email(v), None, "{v:?}");
        }
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
