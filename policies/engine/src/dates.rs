//! Dates of the 双公示 standard: written `YYYY/MM/DD`, accepted as `YYYY-MM-DD` and `YYYYMMDD`
//! (an optional time of day after a space is ignored). `2099/12/31` means long-term.

use chrono::{Datelike, Months, NaiveDate};

/// Why a date string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// Not in one of the accepted layouts.
    Format,
    /// In an accepted layout, but no such day exists (e.g. 2023/02/30).
    NotReal,
}

/// Parse a date in one of the accepted layouts.
pub fn parse_date(s: &str) -> Result<NaiveDate, DateError> {
    let s = s.trim();
    let day = s.split_once([' ', 'T']).map_or(s, |(d, _)| d);
    let b = day.as_bytes();
    let (y, m, d) = match b.len() {
        8 if b.iter().all(u8::is_ascii_digit) => (&day[0..4], &day[4..6], &day[6..8]),
        8..=10 => {
            let sep = if day.contains('/') { '/' } else { '-' };
            let mut parts = day.split(sep);
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(y), Some(m), Some(d), None)
                    if y.len() == 4 && (1..=2).contains(&m.len()) && (1..=2).contains(&d.len()) =>
                {
                    (y, m, d)
                }
                _ => return Err(DateError::Format),
            }
        }
        _ => return Err(DateError::Format),
    };
    let num = |t: &str| -> Result<u32, DateError> {
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().map_err(|_| DateError::Format)
        } else {
            Err(DateError::Format)
        }
    };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    NaiveDate::from_ymd_opt(y as i32, m, d).ok_or(DateError::NotReal)
}

/// Write a date in the standard layout `YYYY/MM/DD`.
pub fn format_date(d: NaiveDate) -> String {
    format!("{:04}/{:02}/{:02}", d.year(), d.month(), d.day())
}

/// `d` plus `months` calendar months (clamped to the month's last day).
pub fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}
