//! PHONE: E.164 digits without '+'.

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

use phonenumber::country::Id as RegionId;

use super::country::country_code;

mod index;

use index::{phone_index, LenCheck, PhoneIndex, Region};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhoneStatus {
    Ok,
    Missing,
    /// Not a possible number for its country (or unparseable).
    Invalid,
    /// Neither a country nor an international prefix, and not valid as an international number.
    NoCountry,
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

pub(crate) fn phone_into(raw: &str, country: Option<[u8; 2]>, out: &mut String) -> PhoneStatus {
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

#[cfg(test)]
mod tests {
    use super::index::Prefix;
    use super::*;

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
}
