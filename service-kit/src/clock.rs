//! Time as both services show and compare it: Unix seconds, Jalali dates in Tehran time.

/// Unix seconds now.
pub fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Iran has kept UTC+03:30 all year since 2022.
const TEHRAN_OFFSET_SECS: i64 = 3 * 3600 + 1800;

/// A Unix time as a Jalali date and Tehran time (`1403/01/01 12:30`), for pages.
pub fn format_time(unix: i64) -> String {
    use icu_calendar::{cal::Persian, Date};
    let local = unix + TEHRAN_OFFSET_SECS;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = match Date::try_new_iso(y, m, d) {
        Ok(iso) => iso.to_calendar(Persian::new()),
        Err(_) => return String::new(),
    };
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}",
        date.year().extended_year(),
        date.month().ordinal,
        date.day_of_month().0,
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// A Unix time's date in Tehran as ISO 8601 (`YYYY-MM-DD`), for age rules (on the
/// database's clock: see presale's `Store::apply`).
pub fn date_iso(unix: i64) -> String {
    let (y, m, d) = civil_from_days((unix + TEHRAN_OFFSET_SECS).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Unix time as a Gregorian date and time in Tehran (`2024-03-20 03:30`), shown beside
/// the Jalali form so that nobody misreads a month.
pub fn format_gregorian(unix: i64) -> String {
    let local = unix + TEHRAN_OFFSET_SECS;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Why a Jalali date and time was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JalaliTimeError {
    #[error("write the date as year/month/day and the time as hour:minute, for example 1405/09/15 09:30")]
    Format,
    #[error("years 1390 to 1500 only")]
    Year,
    #[error("that month has no such day in the Jalali calendar")]
    NoSuchDay,
    #[error("hours are 00 to 23 and minutes 00 to 59")]
    Time,
}

/// A Jalali date with an optional time (`1405/09/15 09:30`, `۱۴۰۵/۹/۱۵ ۹:۳۰`, Persian,
/// Arabic-Indic or Latin digits, `/`, `-` or `.` between the date's parts) read as Tehran
/// time (UTC+03:30 all year), to Unix seconds. Without a time, `default_time` (hours,
/// minutes) is used. Calendar arithmetic (which years have Esfand 30) is ICU4X's.
pub fn parse_jalali_tehran(input: &str, default_time: (u8, u8)) -> Result<i64, JalaliTimeError> {
    use icu_calendar::{cal::Persian, Date, Iso};
    let s = crate::digits::to_latin_digits(input.trim());
    let mut words = s.split_whitespace();
    let date = words.next().ok_or(JalaliTimeError::Format)?;
    let time = words.next();
    if words.next().is_some() {
        return Err(JalaliTimeError::Format);
    }
    let parts: Vec<&str> = date.split(['/', '-', '.']).collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(JalaliTimeError::Format);
    };
    let number = |p: &str, max_len: usize| -> Result<u32, JalaliTimeError> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JalaliTimeError::Format);
        }
        p.parse().map_err(|_| JalaliTimeError::Format)
    };
    let year = number(y, 4)? as i32;
    let month = number(m, 2)? as u8;
    let day = number(d, 2)? as u8;
    if !(1390..=1500).contains(&year) {
        return Err(JalaliTimeError::Year);
    }
    let (hour, minute) = match time {
        None => default_time,
        Some(t) => {
            let (h, mi) = t.split_once(':').ok_or(JalaliTimeError::Format)?;
            (number(h, 2)? as u8, number(mi, 2)? as u8)
        }
    };
    if hour > 23 || minute > 59 {
        return Err(JalaliTimeError::Time);
    }
    let persian: Date<Persian> =
        Date::try_new_persian(year, month, day).map_err(|_| JalaliTimeError::NoSuchDay)?;
    let iso: Date<Iso> = persian.to_calendar(Iso);
    let days = days_from_civil(
        iso.year().extended_year(),
        iso.month().ordinal,
        iso.day_of_month().0,
    );
    Ok(days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 - TEHRAN_OFFSET_SECS)
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_time_shows_jalali_tehran_time() {
        // 2024-03-20 00:00 UTC is 1403/01/01 03:30 in Tehran.
        assert_eq!(super::format_time(1_710_892_800), "1403/01/01 03:30");
    }

    use super::{format_gregorian, format_time, parse_jalali_tehran, JalaliTimeError};

    #[test]
    fn jalali_in_every_script_of_digits_is_tehran_time() {
        // Nowruz 1403 at 03:30 Tehran is 2024-03-20 00:00 UTC.
        for typed in [
            "1403/01/01 03:30",
            "۱۴۰۳/۰۱/۰۱ ۰۳:۳۰",
            "١٤٠٣/٠١/٠١ ٠٣:٣٠",
            "۱۴۰۳/۱/۱ ۳:۳۰",
            " 1403-01-01  03:30 ",
            "1403.1.1 3:30",
        ] {
            assert_eq!(
                parse_jalali_tehran(typed, (0, 0)),
                Ok(1_710_892_800),
                "{typed}"
            );
        }
        // Without a time, the field's default: midnight Tehran is 20:30 UTC the day before.
        assert_eq!(
            parse_jalali_tehran("1403/01/01", (0, 0)),
            Ok(1_710_892_800 - 12_600)
        );
        assert_eq!(
            parse_jalali_tehran("1403/01/01", (23, 59)),
            Ok(1_710_892_800 - 12_600 + 86_340)
        );
    }

    #[test]
    fn tehran_keeps_one_offset_all_year() {
        // Iran ended daylight saving in 1401: midsummer is UTC+03:30 as midwinter is.
        let summer = parse_jalali_tehran("1404/04/01 12:00", (0, 0)).expect("valid");
        assert_eq!(format_time(summer), "1404/04/01 12:00");
        assert_eq!(format_gregorian(summer), "2025-06-22 12:00");
        assert_eq!(
            summer % 86_400,
            8 * 3600 + 1800,
            "12:00 Tehran is 08:30 UTC"
        );
        let winter = parse_jalali_tehran("1404/10/01 12:00", (0, 0)).expect("valid");
        assert_eq!(winter % 86_400, 8 * 3600 + 1800);
        assert_eq!(format_gregorian(winter), "2025-12-22 12:00");
    }

    #[test]
    fn esfand_30_only_in_leap_years_and_each_month_ends_where_it_does() {
        // 1403 is a leap year of the Persian calendar; 1402 and 1404 are not.
        let leap = parse_jalali_tehran("1403/12/30", (0, 0)).expect("1403 is leap");
        assert_eq!(format_gregorian(leap), "2025-03-20 00:00");
        assert_eq!(
            parse_jalali_tehran("1404/12/30", (0, 0)),
            Err(JalaliTimeError::NoSuchDay)
        );
        assert_eq!(
            parse_jalali_tehran("1402/12/30", (0, 0)),
            Err(JalaliTimeError::NoSuchDay)
        );
        assert!(parse_jalali_tehran("1404/12/29", (0, 0)).is_ok());
        // The first six months have 31 days, the next five 30.
        for month in 1..=6 {
            assert!(parse_jalali_tehran(&format!("1405/{month}/31"), (0, 0)).is_ok());
            assert_eq!(
                parse_jalali_tehran(&format!("1405/{month}/32"), (0, 0)),
                Err(JalaliTimeError::NoSuchDay)
            );
        }
        for month in 7..=11 {
            assert!(parse_jalali_tehran(&format!("1405/{month}/30"), (0, 0)).is_ok());
            assert_eq!(
                parse_jalali_tehran(&format!("1405/{month}/31"), (0, 0)),
                Err(JalaliTimeError::NoSuchDay)
            );
        }
        for bad in ["1405/13/01", "1405/00/10", "1405/01/00"] {
            assert_eq!(
                parse_jalali_tehran(bad, (0, 0)),
                Err(JalaliTimeError::NoSuchDay)
            );
        }
        // The last day of one month and the first of the next are one day apart.
        let a = parse_jalali_tehran("1405/06/31", (0, 0)).expect("valid");
        let b = parse_jalali_tehran("1405/07/01", (0, 0)).expect("valid");
        assert_eq!(b - a, 86_400);
        // And the year turns at Nowruz.
        let end = parse_jalali_tehran("1403/12/30 23:59", (0, 0)).expect("valid");
        let nowruz = parse_jalali_tehran("1404/01/01 00:00", (0, 0)).expect("valid");
        assert_eq!(nowruz - end, 60);
    }

    #[test]
    fn what_is_not_a_date_says_why() {
        for bad in [
            "",
            "tomorrow",
            "1405/09",
            "1405/09/15/1",
            "1405/09/15 9",
            "1405/9/15 09:30 x",
            "+1405/09/15",
            "14050/09/15",
        ] {
            assert_eq!(
                parse_jalali_tehran(bad, (0, 0)),
                Err(JalaliTimeError::Format),
                "{bad}"
            );
        }
        assert_eq!(
            parse_jalali_tehran("2025/09/15", (0, 0)),
            Err(JalaliTimeError::Year)
        );
        assert_eq!(
            parse_jalali_tehran("1300/01/01", (0, 0)),
            Err(JalaliTimeError::Year)
        );
        for bad in ["1405/09/15 24:00", "1405/09/15 12:60"] {
            assert_eq!(
                parse_jalali_tehran(bad, (0, 0)),
                Err(JalaliTimeError::Time),
                "{bad}"
            );
        }
    }

    #[test]
    fn format_and_parse_agree_over_years() {
        // Every day at noon for eleven years: the formatted Jalali form parses back.
        let start = parse_jalali_tehran("1400/01/01 12:00", (0, 0)).expect("valid");
        for day in 0..(11 * 366) {
            let t = start + day * 86_400;
            assert_eq!(
                parse_jalali_tehran(&format_time(t), (0, 0)),
                Ok(t),
                "{}",
                format_time(t)
            );
        }
    }
}
