//! Iranian mobile numbers, normalised to E.164 (`+989xxxxxxxxx`).

use std::fmt;

use super::digits::digits_only;

/// A mobile number in E.164. `Debug` and [`MobileNumber::masked`] hide the middle digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MobileNumber(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an Iranian mobile number (09xx xxx xxxx)")]
pub struct MobileNumberError;

impl MobileNumber {
    /// Accepts `09121234567`, `9121234567`, `+989121234567`, `00989121234567`,
    /// `989121234567`, in Latin, Persian or Arabic-Indic digits with spaces or dashes.
    pub fn parse(input: &str) -> Result<Self, MobileNumberError> {
        let s = digits_only(input.trim());
        let national = if let Some(rest) = s.strip_prefix("+98") {
            rest.to_owned()
        } else if let Some(rest) = s.strip_prefix("0098") {
            rest.to_owned()
        } else if s.len() == 12 && s.starts_with("98") {
            s[2..].to_owned()
        } else if let Some(rest) = s.strip_prefix('0') {
            rest.to_owned()
        } else {
            s
        };
        if national.len() != 10
            || !national.starts_with('9')
            || !national.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MobileNumberError);
        }
        Ok(Self(format!("+98{national}")))
    }

    /// The E.164 form, as released in the `phone_number` claim.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// The local form people recognise (`09121234567`).
    pub fn local(&self) -> String {
        format!("0{}", &self.0[3..])
    }

    /// `0912***4567`: enough for a person to recognise, not enough to identify.
    pub fn masked(&self) -> String {
        let local = self.local();
        format!("{}***{}", &local[..4], &local[7..])
    }
}

impl fmt::Debug for MobileNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MobileNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_common_spelling_normalises_to_e164() {
        for input in [
            "09121234567",
            "9121234567",
            "+989121234567",
            "00989121234567",
            "989121234567",
            "۰۹۱۲ ۱۲۳ ۴۵۶۷",
            "0912-123-4567",
        ] {
            assert_eq!(
                MobileNumber::parse(input).map(|m| m.e164().to_owned()),
                Ok("+989121234567".to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn landlines_and_garbage_are_rejected() {
        for input in ["02112345678", "0912123456", "091212345678", "abc", ""] {
            assert!(MobileNumber::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn masked_hides_the_middle() {
        let m = MobileNumber::parse("09121234567").expect("valid");
        assert_eq!(m.masked(), "0912***4567");
    }
}
