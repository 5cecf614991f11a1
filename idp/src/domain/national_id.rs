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
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        // Ten equal digits pass the arithmetic but are never issued.
        if d.iter().all(|&x| x == d[0]) {
            return Err(NationalIdError::Checksum);
        }
        if checksum_digit(&d[..9]) != d[9] {
            return Err(NationalIdError::Checksum);
        }
        Ok(Self(digits))
    }

    /// Builds a valid ID from nine leading digits by appending the checksum (synthetic data).
    pub fn from_prefix(prefix: u32) -> Self {
        let s = format!("{:09}", prefix % 1_000_000_000);
        let d: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
        let check = checksum_digit(&d);
        Self(format!("{s}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn checksum_digit(first_nine: &[u32]) -> u32 {
    let sum: u32 = first_nine
        .iter()
        .enumerate()
        .map(|(i, &x)| x * (10 - i as u32))
        .sum();
    let r = sum % 11;
    if r < 2 {
        r
    } else {
        11 - r
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

    #[test]
    fn debug_never_shows_the_whole_id() {
        let id = NationalId::from_prefix(987654321);
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
