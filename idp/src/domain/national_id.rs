//! The Iranian national ID (کد ملی): ten digits whose last digit is a mod-11 checksum.
//!
//! The checksum is checked before any registry call: a typo must never cost a call to the
//! scarcest resource of the surge, the government registry.

use std::fmt;

use super::digits::digits_only;

/// A national ID whose checksum holds. `Debug` masks it: it must never reach a log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NationalId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NationalIdError {
    #[error("a national ID has exactly ten digits")]
    Length,
    #[error("the national ID checksum does not hold")]
    Checksum,
}

impl NationalId {
    pub fn parse(input: &str) -> Result<Self, NationalIdError> {
        let digits = digits_only(input.trim());
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NationalIdError::Length);
        }
        if !service_kit::national_id::is_valid(&digits) {
            return Err(NationalIdError::Checksum);
        }
        Ok(Self(digits))
    }

    /// Builds a valid ID from nine leading digits by appending the checksum (synthetic data).
    pub fn from_prefix(prefix: u32) -> Self {
        let s = format!("{:09}", prefix % 1_000_000_000);
        let d: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
        let check = service_kit::national_id::check_digit(&d);
        Self(format!("{s}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NationalId(********{})", &self.0[8..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn a_valid_id_parses_from_persian_digits() {
        let id = NationalId::from_prefix(123456789);
        let persian = super::super::digits::to_persian_digits(id.as_str());
        assert_eq!(NationalId::parse(&persian), Ok(id));
    }

    #[test]
    fn a_wrong_check_digit_is_rejected() {
        let id = NationalId::from_prefix(123456789);
        let mut s = id.as_str().to_owned();
        let last = s.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
        s.push(char::from(b'0' + ((last + 1) % 10) as u8));
        assert_eq!(NationalId::parse(&s), Err(NationalIdError::Checksum));
    }

    #[test]
    fn wrong_length_and_repeated_digits_are_rejected() {
        assert_eq!(NationalId::parse("12345"), Err(NationalIdError::Length));
        assert_eq!(
            NationalId::parse("12345678a0"),
            Err(NationalIdError::Length)
        );
        assert_eq!(
            NationalId::parse("1111111111"),
            Err(NationalIdError::Checksum)
        );
    }

    #[test]
    fn known_good_id_passes() {
        // 0499370899 is a commonly cited valid example of the algorithm.
        assert!(NationalId::parse("0499370899").is_ok());
    }

    proptest::proptest! {
        /// Anything at all is parsed or refused, never a panic; what parses is ten ASCII
        /// digits that parse again to the same ID.
        #[test]
        fn any_input_is_parsed_or_refused(s in "\\PC{0,24}|[0-9 ۰-۹-]{8,14}") {
            if let Ok(id) = NationalId::parse(&s) {
                proptest::prop_assert!(id.as_str().len() == 10 && id.as_str().bytes().all(|b| b.is_ascii_digit()));
                proptest::prop_assert_eq!(NationalId::parse(id.as_str()), Ok(id));
            }
        }

        /// A valid ID typed in any mix of digit forms and separators is that ID; any
        /// other check digit is refused.
        #[test]
        fn every_spelling_of_an_id_is_that_id(
            (id, typed) in (0u32..1_000_000_000)
                .prop_filter("not ten equal digits", |p| p % 111_111_111 != 0)
                .prop_flat_map(|p| {
                    let id = NationalId::from_prefix(p);
                    (proptest::strategy::Just(id.clone()), crate::domain::typed::spelled(id.as_str().to_owned()))
                }),
            other in 1u32..10,
        ) {
            proptest::prop_assert_eq!(NationalId::parse(&typed), Ok(id.clone()));
            let mut wrong = id.as_str().to_owned();
            let last = wrong.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
            wrong.push(char::from(b'0' + ((last + other) % 10) as u8));
            proptest::prop_assert!(NationalId::parse(&wrong).is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_whole_id() {
        let id = NationalId::from_prefix(987654321);
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
