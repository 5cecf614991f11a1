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
}
