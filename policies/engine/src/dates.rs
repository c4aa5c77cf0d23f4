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
    if let Some((y, m, d)) = standard_layout(s) {
        return NaiveDate::from_ymd_opt(y as i32, m, d).ok_or(DateError::NotReal);
    }
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

/// Whether `s` is written exactly in the standard layout `YYYY/MM/DD` (a real date or not).
pub fn is_standard_layout(s: &str) -> bool {
    standard_layout(s).is_some()
}

/// The numbers of a date written exactly `YYYY/MM/DD`: the stored layout and most input, read
/// without splitting or trimming (a date is parsed several times per row).
fn standard_layout(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'/' || b[7] != b'/' {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, &c| {
            let digit = c.wrapping_sub(b'0');
            (digit < 10).then_some(n * 10 + u32::from(digit))
        })
    };
    Some((number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?))
}

/// Write a date in the standard layout `YYYY/MM/DD`.
pub fn format_date(d: NaiveDate) -> String {
    let year = match u32::try_from(d.year()) {
        Ok(y) if y <= 9999 => y,
        _ => return format!("{:04}/{:02}/{:02}", d.year(), d.month(), d.day()),
    };
    let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
    let mut out = String::with_capacity(10);
    out.extend([year / 1000, year / 100, year / 10, year].map(digit));
    out.push('/');
    out.extend([d.month() / 10, d.month()].map(digit));
    out.push('/');
    out.extend([d.day() / 10, d.day()].map(digit));
    out
}

/// `d` plus `months` calendar months (clamped to the month's last day).
pub fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_in_the_standard_layout() {
        for (y, m, d) in [
            (1, 1, 1),
            (999, 12, 31),
            (2024, 2, 29),
            (2099, 12, 31),
            (9999, 9, 9),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(format_date(date), format!("{y:04}/{m:02}/{d:02}"));
        }
        assert_eq!(
            format_date(NaiveDate::MAX),
            format!("{}/12/31", NaiveDate::MAX.year())
        );
    }

    #[test]
    fn every_layout_reads_the_same_day() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 7).unwrap();
        for s in [
            "2024/03/07",
            "2024-03-07",
            "20240307",
            "2024/3/7",
            " 2024/03/07 ",
            "2024/03/07 10:00",
        ] {
            assert_eq!(parse_date(s), Ok(day), "{s:?}");
        }
        assert!(is_standard_layout("2024/03/07"));
        assert!(!is_standard_layout("2024-03-07"));
        assert!(is_standard_layout("2023/02/30"), "the layout, not the day");
    }

    #[test]
    fn bad_dates_are_refused_for_the_right_reason() {
        assert_eq!(parse_date("2023/02/30"), Err(DateError::NotReal));
        assert_eq!(parse_date("2023/13/01"), Err(DateError::NotReal));
        for s in [
            "2024/0a/07",
            "2024/03/0７",
            "24/03/07",
            "2024/03/07/01",
            "",
            "２０２４/03/07",
        ] {
            assert_eq!(parse_date(s), Err(DateError::Format), "{s:?}");
        }
    }
}
