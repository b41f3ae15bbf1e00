//! FN, LN (first and last names) and CT (city): lowercase letters only, UTF-8 letters kept.

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

pub(crate) fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036f}').contains(&c)
}

pub(crate) fn letters_into(s: &str, out: &mut String) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
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
}
