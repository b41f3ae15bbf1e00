//! GEN: `m` or `f`.

pub(crate) fn gender_code(s: &str) -> Option<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn genders() {
        for v in ["m", "M", " male ", "MALE", "Man"] {
            assert_eq!(normalize_gender(v), s("m"), "{v:?}");
        }
        for v in ["f", "F", " Female", "WOMAN", "woman "] {
            assert_eq!(normalize_gender(v), s("f"), "{v:?}");
        }
        for v in ["", "x", "other", "non-binary", "unknown", "mf", "males"] {
            assert_eq!(normalize_gender(v), None, "{v:?}");
        }
    }
}
