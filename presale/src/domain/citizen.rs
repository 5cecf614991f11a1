//! Who applies: the national ID the IdP verified, parsed once where it enters presale.

use std::fmt;

/// A ten-digit national ID with a valid check digit, as released in the ID token's
/// `national_id` claim. The only way in is [`NationalId::parse`].
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NationalId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a national ID is ten digits with a valid check digit")]
pub struct InvalidNationalId;

impl NationalId {
    pub fn parse(s: &str) -> Result<Self, InvalidNationalId> {
        if !service_kit::national_id::is_valid(s) {
            return Err(InvalidNationalId);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never printed whole: logs and debug output show the last two digits only.
impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NationalId(********{})", &self.0[8..])
    }
}

impl TryFrom<String> for NationalId {
    type Error = InvalidNationalId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<NationalId> for String {
    fn from(n: NationalId) -> Self {
        n.0
    }
}

/// Who holds a place in one campaign's queue: a keyed hash of the campaign and the national
/// ID. The queue's tables never hold an ID; without the server secret the 10^10 IDs cannot
/// be enumerated against it, and one person's holders in two campaigns cannot be linked.
/// 132 bits: no two applicants ever share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_national_ids_parse() {
        assert!(NationalId::parse("0499370899").is_ok());
        assert!(NationalId::parse("0499370898").is_err());
        assert!(NationalId::parse("049937089").is_err());
        assert!(NationalId::parse("04993708a9").is_err());
    }

    /// Ten equal digits pass the checksum but are never issued; the IdP refuses them, and
    /// presale must not accept what the IdP would never release (watched failing: presale
    /// accepted all ten).
    #[test]
    fn ten_equal_digits_are_never_an_id() {
        for d in '0'..='9' {
            let s: String = std::iter::repeat_n(d, 10).collect();
            assert!(NationalId::parse(&s).is_err(), "{s}");
        }
    }

    proptest::proptest! {
        /// Anything at all: refused or parsed, never a panic; what parses is what was given.
        #[test]
        fn any_input_is_parsed_or_refused(s in "\\PC{0,16}|[0-9]{10}|[0-9\u{6f0}-\u{6f9}]{10}") {
            if let Ok(id) = NationalId::parse(&s) {
                proptest::prop_assert_eq!(id.as_str(), s.as_str());
            }
        }

        /// Ten ASCII digits parse exactly when the mod-11 check digit holds.
        #[test]
        fn ten_digits_parse_when_the_check_digit_holds(s in "[0-9]{10}") {
            let d: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
            let r = (0..9).map(|i| d[i] * (10 - i as u32)).sum::<u32>() % 11;
            let holds = d[9] == if r < 2 { r } else { 11 - r };
            let equal = d.iter().all(|&x| x == d[0]);
            proptest::prop_assert_eq!(NationalId::parse(&s).is_ok(), holds && !equal);
        }
    }

    #[test]
    fn debug_output_hides_the_id() {
        let n = NationalId::parse("0499370899").expect("valid");
        assert!(!format!("{n:?}").contains("04993708"));
    }
}
