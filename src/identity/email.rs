//! EMAIL normalization.

/// Trim, lowercase; absent unless it has a sane shape: exactly one '@', a non-empty local part,
/// a domain with a dot (not first or last, no empty label) and no whitespace or control chars.
// No provider-specific rewriting (gmail dots, "+tag"): Meta only asks for trim + lowercase, and
// rewriting would stop matching people who registered with the literal address.
pub fn normalize_email(s: &str) -> Option<String> {
    let mut out = String::new();
    email_into(s, &mut out).then_some(out)
}

pub(crate) fn email_into(s: &str, out: &mut String) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
