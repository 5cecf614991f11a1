//! Birth dates as citizens know them: in the Jalali (Solar Hijri) calendar.
//!
//! Calendar arithmetic is ICU4X's (`icu_calendar`'s Persian calendar); this type only
//! parses what people type and keeps both the Jalali and the ISO 8601 forms, since the
//! registry speaks Jalali and the `birthdate` claim is ISO 8601.

use icu_calendar::{Date, Iso};

use super::digits::to_latin_digits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JalaliDate {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JalaliDateError {
    #[error("write the date as year/month/day, for example 1370/05/12")]
    Format,
    #[error("that day does not exist in the Jalali calendar")]
    NoSuchDay,
}

impl JalaliDate {
    /// Parses `1370/05/12`, `1370-5-12` or `۱۳۷۰/۰۵/۱۲`. Years 1300 to 1500 only: anything
    /// else is a typo, not a citizen.
    pub fn parse(input: &str) -> Result<Self, JalaliDateError> {
        let s = to_latin_digits(input.trim());
        let parts: Vec<&str> = s.split(['/', '-', '.']).map(str::trim).collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(JalaliDateError::Format);
        };
        let year: i32 = y.parse().map_err(|_| JalaliDateError::Format)?;
        let month: u8 = m.parse().map_err(|_| JalaliDateError::Format)?;
        let day: u8 = d.parse().map_err(|_| JalaliDateError::Format)?;
        Self::new(year, month, day)
    }

    pub fn new(year: i32, month: u8, day: u8) -> Result<Self, JalaliDateError> {
        if !(1300..=1500).contains(&year) {
            return Err(JalaliDateError::Format);
        }
        // ICU4X clamps nothing here: an out-of-range day (Esfand 30 in a common year) fails.
        Date::try_new_persian(year, month, day).map_err(|_| JalaliDateError::NoSuchDay)?;
        Ok(Self { year, month, day })
    }

    /// The canonical Jalali form `YYYY/MM/DD` the registry expects.
    pub fn canonical(&self) -> String {
        format!("{:04}/{:02}/{:02}", self.year, self.month, self.day)
    }

    /// The same day in ISO 8601 (`YYYY-MM-DD`), for the `birthdate` claim.
    pub fn to_iso_string(&self) -> String {
        let iso: Date<Iso> = match Date::try_new_persian(self.year, self.month, self.day) {
            Ok(date) => date.to_calendar(Iso),
            // `new` already proved the date exists; keep the type total anyway.
            Err(_) => return String::new(),
        };
        format!(
            "{:04}-{:02}-{:02}",
            iso.year().extended_year(),
            iso.month().ordinal,
            iso.day_of_month().0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nowruz_1403_is_march_20_2024() {
        let d = JalaliDate::parse("1403/01/01").expect("valid");
        assert_eq!(d.to_iso_string(), "2024-03-20");
    }

    #[test]
    fn persian_digits_and_dashes_parse() {
        let d = JalaliDate::parse("۱۳۷۰-۵-۱۲").expect("valid");
        assert_eq!(d.canonical(), "1370/05/12");
        assert_eq!(d.to_iso_string(), "1991-08-03");
    }

    proptest::proptest! {
        /// Anything at all is parsed or refused, never a panic.
        #[test]
        fn any_input_is_parsed_or_refused(s in "\\PC{0,16}|[0-9۰-۹/.-]{5,12}") {
            if let Ok(d) = JalaliDate::parse(&s) {
                proptest::prop_assert_eq!(JalaliDate::parse(&d.canonical()), Ok(d));
            }
        }

        /// A year, month and day parse exactly when that day exists (ICU4X's Persian
        /// calendar), in any spelling; the canonical form parses back, and the ISO day
        /// goes back to the same Jalali day.
        #[test]
        fn a_day_parses_exactly_when_it_exists(
            y in 1300i32..=1500,
            m in 1u8..=12,
            d in 1u8..=31,
            sep in proptest::sample::select(vec!["/", "-", ".", " / "]),
            persian in proptest::bool::ANY,
        ) {
            let written = format!("{y}{sep}{m}{sep}{d}");
            let written = if persian { crate::domain::digits::to_persian_digits(&written) } else { written };
            let exists = Date::try_new_persian(y, m, d).is_ok();
            let parsed = JalaliDate::parse(&written);
            proptest::prop_assert_eq!(parsed.is_ok(), exists, "{}", written);
            if let Ok(j) = parsed {
                proptest::prop_assert_eq!(JalaliDate::parse(&j.canonical()), Ok(j));
                let iso: Date<Iso> = Date::try_new_persian(y, m, d).map(|x| x.to_calendar(Iso)).map_err(|_| proptest::test_runner::TestCaseError::fail("exists"))?;
                let back = iso.to_calendar(icu_calendar::cal::Persian);
                proptest::prop_assert_eq!(
                    (back.year().extended_year(), back.month().ordinal, back.day_of_month().0),
                    (y, m, d)
                );
                proptest::prop_assert_eq!(j.to_iso_string().len(), 10);
            }
        }
    }

    #[test]
    fn impossible_days_are_rejected() {
        assert_eq!(
            JalaliDate::parse("1370/07/31"),
            Err(JalaliDateError::NoSuchDay)
        );
        assert_eq!(
            JalaliDate::parse("1370/13/01"),
            Err(JalaliDateError::NoSuchDay)
        );
        assert_eq!(JalaliDate::parse("1370/05"), Err(JalaliDateError::Format));
        assert_eq!(JalaliDate::parse("970/05/01"), Err(JalaliDateError::Format));
    }
}
