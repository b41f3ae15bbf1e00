//! COUNTRY: ISO 3166-1 alpha-2 codes, alpha-3 codes, common English names and aliases.

use std::collections::HashMap;
use std::sync::OnceLock;

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
pub(crate) fn country_code(s: &str) -> Option<[u8; 2]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
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
}
