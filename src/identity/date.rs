//! Dates of person records: `YYYY-MM-DD` parsing, and DOBY (the year of birth).

use chrono::{Datelike, NaiveDate};

/// `YYYY-MM-DD` exactly.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// DOBY: the four-digit, zero-padded year.
pub fn dob_year(d: NaiveDate) -> String {
    dob_year_of(d.year())
}

pub(crate) fn dob_year_of(year: i32) -> String {
    format!("{year:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dob_years() {
        assert_eq!(dob_year(date(1985, 3, 2)), "1985");
        assert_eq!(dob_year(date(987, 1, 1)), "0987");
    }
}
