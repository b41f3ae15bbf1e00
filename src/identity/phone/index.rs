//! libphonenumber's metadata, indexed once per process for the phone fast path: each region's
//! calling code, national and international (IDD) prefixes (as literals where they are
//! literals), possible lengths, and lookups by alpha-2 code and by calling code.

use std::sync::OnceLock;

use phonenumber::country::Id as RegionId;
use phonenumber::metadata::{Metadata, DATABASE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LenCheck {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    InvalidLength,
}

pub(super) enum Prefix {
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

pub(super) struct Region {
    pub(super) meta: &'static Metadata,
    pub(super) id: Option<RegionId>,
    pub(super) cc: u16,
    cc_buf: [u8; 3],
    cc_len: u8,
    pub(super) national_prefix: Option<Box<[u8]>>,
    /// National prefix for parsing (inherits the national prefix when absent).
    pub(super) npp: Prefix,
    /// International dialing prefix (IDD), e.g. `011` for the US.
    idd: Prefix,
    /// Has a national prefix transform rule: delegated to `phonenumber::parse`.
    pub(super) transform: bool,
    possible: Box<[u16]>,
    local: Box<[u16]>,
}

const NO_REGION: u16 = u16::MAX;

pub(super) struct PhoneIndex {
    pub(super) regions: Vec<Region>,
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
    pub(super) fn test_len(&self, n: usize) -> LenCheck {
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
    pub(super) fn viable(&self, d: &[u8]) -> bool {
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
    pub(super) fn npp_end(&self, d: &[u8]) -> Option<usize> {
        self.prefix_end(&self.npp, false, d)
    }

    /// Where an international dialing prefix at the start of `d` ends (Java: parsePrefixAsIdd,
    /// which refuses an IDD followed by a 0).
    pub(super) fn idd_end(&self, d: &[u8]) -> Option<usize> {
        self.prefix_end(&self.idd, true, d)
            .filter(|&end| end < d.len() && d[end] != b'0')
    }

    /// Java: maybeStripNationalPrefixAndCarrierCode, plus parseHelper's length check when
    /// `check_len`.
    pub(super) fn strip_national_prefix<'d>(&self, d: &'d [u8], check_len: bool) -> &'d [u8] {
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

    pub(super) fn cc_digits(&self) -> &[u8] {
        &self.cc_buf[..self.cc_len as usize]
    }
}

pub(super) fn phone_index() -> &'static PhoneIndex {
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
    pub(super) fn region_for_country(&self, c: [u8; 2]) -> Option<&Region> {
        let i = self.by_alpha2[(c[0] - b'a') as usize * 26 + (c[1] - b'a') as usize];
        (i != NO_REGION).then(|| &self.regions[i as usize])
    }

    pub(super) fn main_region(&self, cc: u16) -> Option<&Region> {
        let i = *self.main_by_cc.get(cc as usize)?;
        (i != NO_REGION).then(|| &self.regions[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
