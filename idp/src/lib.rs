//! emta IdP: the national OpenID Connect provider and the citizen verification flow.
//!
//! # Layout
//! - [`domain`]: types that parse at the edge (national ID, mobile, Jalali date, clients).
//! - [`flow`]: the authorization request, the four login steps, tokens, abuse limits.
//! - [`store`]: SQL (SQLite or PostgreSQL) and the ephemeral store (memory or Redis).
//! - [`adapters`]: civil registry, mobile ownership and SMS gateway over HTTP.
//! - [`http`]: routes, forms, pages, headers.
//! - [`keys`]: ID token signing keys and rotation.
//! - [`admin`]: what the operator's commands do (clients, keys, citizens).
//! - [`dev`]: synthetic citizens, the fixture registry, the outbox and the stub services.
//! - [`app`]: building and running the server.

pub mod adapters;
pub mod admin;
pub mod app;
pub mod config;
pub mod core;
pub mod crypto;
pub mod demo;
pub mod dev;
pub mod domain;
pub mod error;
pub mod flow;
pub mod http;
pub mod keys;
pub mod store;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Unix time as a Jalali date and Tehran time (`1403/01/01 12:30`), for pages.
pub fn format_time(unix: i64) -> String {
    use icu_calendar::{cal::Persian, Date};
    // Iran has kept UTC+03:30 all year since 2022.
    let local = unix + 3 * 3600 + 1800;
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

/// Today's date in Tehran as ISO 8601 (`YYYY-MM-DD`), for age rules.
pub fn today_iso() -> String {
    let (y, m, d) = civil_from_days((now() + 3 * 3600 + 1800).div_euclid(86_400));
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
