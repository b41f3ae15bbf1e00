//! ST (state or region) and ZIP (postal code), both read in the light of the person's country.

use super::country::country_code;
use super::name::is_combining_mark;

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

pub(crate) fn state_into(s: &str, country: Option<[u8; 2]>, out: &mut String) -> bool {
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

pub(crate) fn zip_into(s: &str, country: Option<[u8; 2]>, out: &mut String) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
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
}
