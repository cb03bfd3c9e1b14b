//! Billing periods: calendar months in UTC, written `YYYY-MM`.
//!
//! A period is stored as a month index (`year * 12 + month - 1`) so that ordering and
//! "next period" are integer arithmetic; the string form is only for the wire.

use super::ParseError;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

const MIN_YEAR: u32 = 1970;
const MAX_YEAR: u32 = 9999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeriodKey(u32);

impl PeriodKey {
    /// Parses exactly `YYYY-MM` (four-digit year, two-digit month 01..=12).
    ///
    /// ```
    /// use edgequota::domain::PeriodKey;
    /// let dec = PeriodKey::parse("2026-12").unwrap();
    /// assert_eq!(dec.next().to_string(), "2027-01");
    /// assert_eq!(dec.end().to_rfc3339(), "2027-01-01T00:00:00+00:00");
    /// assert!(PeriodKey::parse("2026-13").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("must be a month written YYYY-MM");
        let b = raw.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return Err(bad());
        }
        let digits = |s: &[u8]| -> Option<u32> {
            s.iter().try_fold(0u32, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let year = digits(&b[0..4]).ok_or_else(bad)?;
        let month = digits(&b[5..7]).ok_or_else(bad)?;
        if !(1..=12).contains(&month) || !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(bad());
        }
        Ok(Self(year * 12 + month - 1))
    }

    pub fn containing(at: DateTime<Utc>) -> Self {
        let year = u32::try_from(at.year())
            .unwrap_or(MIN_YEAR)
            .clamp(MIN_YEAR, MAX_YEAR);
        Self(year * 12 + at.month0())
    }

    pub fn year(self) -> u32 {
        self.0 / 12
    }

    pub fn month(self) -> u32 {
        self.0 % 12 + 1
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// First instant of the period.
    pub fn start(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.start_secs(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// First instant after the period (the reset time).
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn length_secs(self) -> u64 {
        (self.next().start_secs() - self.start_secs()).max(0) as u64
    }

    /// Whole seconds from `now` to the end of the period, rounded up, never negative.
    pub fn secs_until_end(self, now: DateTime<Utc>) -> u64 {
        // Whole milliseconds, truncated as a `Duration` would be, then rounded up.
        let sub_ms = i64::from(now.timestamp_subsec_nanos().div_ceil(1_000_000));
        let ms = (self.next().start_secs() - now.timestamp()) * 1000 - sub_ms;
        (ms.max(0) as u64).div_ceil(1000)
    }

    /// Seconds from the Unix epoch to the period's first instant, by the civil-date day
    /// count (Hinnant's `days_from_civil`) rather than chrono's calendar types: both
    /// RateLimit headers need it on every decision.
    fn start_secs(self) -> i64 {
        let (year, month) = (i64::from(self.year()), i64::from(self.month()));
        // Years counted from March, so that February's leap day ends the year.
        let year = if month <= 2 { year - 1 } else { year };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        (era * 146_097 + day_of_era - 719_468) * 86_400
    }

    /// Compact big-endian form for store keys (sorts like the period).
    pub fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    pub fn from_index(index: u32) -> Self {
        Self(index)
    }

    /// The month index (`year * 12 + month - 1`), for compact atomic storage.
    pub fn index(self) -> u32 {
        self.0
    }

    /// The key's text, `YYYY-MM`, as bytes on the stack for a four-digit year (every
    /// record's answer body carries one, and the formatter cost more than the rest of
    /// the body); `None` beyond year 9999, which only `Display`'s general form spells.
    pub fn digits(self) -> Option<[u8; 7]> {
        let (year, month) = (self.year(), self.month());
        let digit = |n: u32| b'0' + (n % 10) as u8;
        (year <= 9999).then(|| {
            [
                digit(year / 1000),
                digit(year / 100),
                digit(year / 10),
                digit(year),
                b'-',
                digit(month / 10),
                digit(month),
            ]
        })
    }
}

impl fmt::Display for PeriodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.digits() {
            // ASCII digits and a dash: always UTF-8.
            Some(d) => f.write_str(std::str::from_utf8(&d).unwrap_or_default()),
            None => write!(f, "{:04}-{:02}", self.year(), self.month()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are stored and answered as text: the stack form must spell what the general
    /// zero-padded form spells.
    #[test]
    fn displays_as_zero_padded_year_and_month() {
        for (index, text) in [
            (2026 * 12 + 11, "2026-12"),
            (7 * 12 + 8, "0007-09"),
            (9999 * 12 + 11, "9999-12"),
            (12_345 * 12 + 2, "12345-03"),
        ] {
            let key = PeriodKey::from_index(index);
            assert_eq!(key.to_string(), text);
            let general = format!("{:04}-{:02}", key.year(), key.month());
            assert_eq!(key.to_string(), general);
        }
    }

    #[test]
    fn parses_only_real_months() {
        assert_eq!(
            PeriodKey::parse("2026-01").map(|p| p.to_string()),
            Ok("2026-01".into())
        );
        for bad in [
            "2026-13",
            "26-01",
            "",
            "2026-00",
            "2026-1",
            "2026/01",
            "２０２６-01",
            "20261-1",
        ] {
            assert!(PeriodKey::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn month_arithmetic_crosses_years() {
        let dec = PeriodKey::parse("2026-12").unwrap();
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.length_secs(), 31 * 86_400);
        let feb = PeriodKey::parse("2028-02").unwrap();
        assert_eq!(feb.length_secs(), 29 * 86_400);
        assert!(dec < dec.next());
    }

    /// The day count agrees with chrono's calendar for every month of every year the
    /// service knows, and the seconds to the end with chrono's durations.
    #[test]
    fn period_bounds_match_the_calendar() {
        use chrono::TimeZone;
        for index in (MIN_YEAR * 12)..=(MAX_YEAR * 12 + 11) {
            let p = PeriodKey::from_index(index);
            let start = Utc
                .with_ymd_and_hms(p.year() as i32, p.month(), 1, 0, 0, 0)
                .single()
                .unwrap();
            assert_eq!(p.start(), start, "{p}");
            let end = p.next().start();
            assert_eq!(p.length_secs(), (end - start).num_seconds() as u64, "{p}");
        }
        let p = PeriodKey::parse("2026-03").unwrap();
        for offset_us in [
            -5_000_000, -1_000_001, -1_000_000, -999_999, -1_500_400, -1_000_400, -1, 0, 1, 700,
        ] {
            let now = p.end() + chrono::Duration::microseconds(offset_us);
            let want = ((p.end() - now).num_milliseconds().max(0) as u64).div_ceil(1000);
            assert_eq!(p.secs_until_end(now), want, "{offset_us} us");
        }
    }

    #[test]
    fn seconds_until_end_rounds_up() {
        let p = PeriodKey::parse("2026-01").unwrap();
        let now = p.end() - chrono::Duration::milliseconds(1500);
        assert_eq!(p.secs_until_end(now), 2);
        assert_eq!(p.secs_until_end(p.end() + chrono::Duration::seconds(5)), 0);
        assert_eq!(PeriodKey::containing(now), p);
    }
}
