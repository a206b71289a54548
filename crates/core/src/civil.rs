//! Civil (proleptic Gregorian) dates as day counts since 1970-01-01, the unit of Arrow's
//! `Date32` and Delta's `date`. Years are astronomical: year 0 is 1 BC, -1 is 2 BC.
//!
//! The conversions are Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html>), exact for every `i32` day count.
//!
//! ```
//! use rtsync_core::civil::{civil_from_days, date_days, days_from_civil};
//!
//! assert_eq!(days_from_civil(1970, 1, 1), 0);
//! assert_eq!(days_from_civil(2024, 2, 29), 19_782);
//! assert_eq!(civil_from_days(19_782), (2024, 2, 29));
//! assert_eq!(date_days(2023, 2, 29), None, "not a leap year");
//! ```

/// Days since 1970-01-01 of `year-month-day`. `month` is 1..=12 and `day` 1..=31; the day is
/// not checked against the month (use [`date_days`] for that): `2023-02-31` is `2023-03-03`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day count since 1970-01-01; the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// True for a leap year of the proleptic Gregorian calendar (year 0 is one).
pub fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// The number of days of `month` (1..=12) in `year`; 0 for a month outside 1..=12.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a valid date, or None when the month or the day does not exist.
pub fn date_days(year: i64, month: u32, day: u32) -> Option<i64> {
    (day >= 1 && day <= days_in_month(year, month)).then(|| days_from_civil(year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162, "Delta's first date");
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896, "Delta's last date");
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_from_civil(0, 12, 31), -719_163, "year 0 is a leap year");
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
        assert_eq!(days_from_civil(-4713, 11, 24), -2_440_588, "the Julian day epoch");
        assert_eq!(civil_from_days(-719_162), (1, 1, 1));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        assert_eq!(civil_from_days(-719_529), (-1, 12, 31));
    }

    #[test]
    fn every_day_round_trips_and_follows_the_previous_one() {
        // From 1 Jan 10000 BC (year -9999) to 31 Dec 10000, one day after another.
        let first = days_from_civil(-9999, 1, 1);
        let last = days_from_civil(10_000, 12, 31);
        let mut prev = civil_from_days(first - 1);
        assert_eq!(prev, (-10_000, 12, 31));
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(date_days(y, m, d), Some(days));
            let (py, pm, pd) = prev;
            let expected = if pd < days_in_month(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn extreme_day_counts_round_trip() {
        for days in [i64::from(i32::MIN), i64::from(i32::MIN) + 1, -1, 0, 1, i64::from(i32::MAX)] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn leap_years_and_month_lengths() {
        for (year, leap) in [
            (2024, true),
            (2023, false),
            (1900, false),
            (2000, true),
            (0, true),
            (-4, true),
            (-100, false),
            (-400, true),
        ] {
            assert_eq!(is_leap_year(year), leap, "{year}");
            assert_eq!(days_in_month(year, 2), if leap { 29 } else { 28 });
        }
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
        assert_eq!(days_in_month(2023, 0), 0);
        assert_eq!(days_in_month(2023, 13), 0);
        assert_eq!(date_days(2023, 2, 29), None);
        assert_eq!(date_days(2024, 2, 29), Some(19_782));
        assert_eq!(date_days(2024, 4, 31), None);
        assert_eq!(date_days(2024, 1, 0), None);
        assert_eq!(date_days(2024, 13, 1), None);
    }
}
