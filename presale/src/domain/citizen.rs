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
        let d: Vec<u32> = s.bytes().map(|b| u32::from(b.wrapping_sub(b'0'))).collect();
        if d.len() != 10 || d.iter().any(|&x| x > 9) {
            return Err(InvalidNationalId);
        }
        let weighted: u32 = d[..9].iter().zip((2..=10).rev()).map(|(x, w)| x * w).sum();
        let r = weighted % 11;
        let check = if r < 2 { r } else { 11 - r };
        if d[9] != check {
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

    #[test]
    fn debug_output_hides_the_id() {
        let n = NationalId::parse("0499370899").expect("valid");
        assert!(!format!("{n:?}").contains("04993708"));
    }
}
