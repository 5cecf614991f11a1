//! Iranian mobile numbers, normalised to E.164 (`+989xxxxxxxxx`).

use std::fmt;

use super::digits::digits_only;

/// The mobile prefixes (after the trunk `0`) that Iranian operators are assigned: MCI
/// (910-919, 990-994), Irancell (900-905, 930, 933, 935-939, 941), Rightel (920-922),
/// Spadan (931), Taliya (932), TKC Kish (934), the MVNOs (998, 999). A number outside
/// them cannot receive an SMS code and must not cost a gateway call (SMS pumping relies
/// on premium or unassigned ranges).
const OPERATOR_PREFIXES: &[&str] = &[
    "900", "901", "902", "903", "904", "905", "910", "911", "912", "913", "914", "915", "916",
    "917", "918", "919", "920", "921", "922", "930", "931", "932", "933", "934", "935", "936",
    "937", "938", "939", "941", "990", "991", "992", "993", "994", "998", "999",
];

/// A mobile number in E.164. `Debug` and [`MobileNumber::masked`] hide the middle digits.
/// Stored as its E.164 form, and read back through [`MobileNumber::parse`].
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MobileNumber(String);

impl TryFrom<String> for MobileNumber {
    type Error = MobileNumberError;
    fn try_from(s: String) -> Result<Self, MobileNumberError> {
        Self::parse(&s)
    }
}

impl From<MobileNumber> for String {
    fn from(m: MobileNumber) -> String {
        m.0
    }
}

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
            || !national.bytes().all(|b| b.is_ascii_digit())
            || !OPERATOR_PREFIXES.contains(&&national[..3])
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

    /// `0912*****67`: the operator and the last two digits, enough for a person to
    /// recognise their own number, far from enough to identify one (a million numbers
    /// share each mask).
    pub fn masked(&self) -> String {
        let local = self.local();
        format!("{}*****{}", &local[..4], &local[9..])
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
    use proptest::strategy::Strategy;

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
        for input in [
            "02112345678",
            "0912123456",
            "091212345678",
            "abc",
            "",
            // Mobile-looking but unassigned prefixes.
            "09501234567",
            "09601234567",
            "09971234567",
            "09401234567",
        ] {
            assert!(MobileNumber::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn masked_hides_the_middle() {
        let m = MobileNumber::parse("09121234567").expect("valid");
        assert_eq!(m.masked(), "0912*****67");
    }

    proptest::proptest! {
        /// Anything at all is parsed or refused, never a panic; what parses is E.164 with
        /// an operator's prefix, and its local form parses back to it.
        #[test]
        fn any_input_is_parsed_or_refused(s in "\\PC{0,20}|[+0-9 ۰-۹٠-٩-]{9,16}") {
            if let Ok(m) = MobileNumber::parse(&s) {
                let e = m.e164();
                proptest::prop_assert!(e.len() == 13 && e.starts_with("+98"));
                proptest::prop_assert!(OPERATOR_PREFIXES.contains(&&e[3..6]));
                proptest::prop_assert_eq!(MobileNumber::parse(&m.local()), Ok(m.clone()));
            }
        }

        /// An operator's number written with any country prefix (or none), in any digit
        /// form and with separators, is the same number.
        #[test]
        fn every_spelling_of_a_number_is_that_number(
            (e164, typed) in (0..OPERATOR_PREFIXES.len(), 0u32..10_000_000, 0usize..5)
                .prop_flat_map(|(p, rest, form)| {
                    let national = format!("{}{rest:07}", OPERATOR_PREFIXES[p]);
                    let written = match form {
                        0 => format!("0{national}"),
                        1 => national.clone(),
                        2 => format!("98{national}"),
                        3 => format!("0098{national}"),
                        _ => format!("98{national}"),
                    };
                    let plus = form == 4;
                    (
                        proptest::strategy::Just(format!("+98{national}")),
                        crate::domain::typed::spelled(written)
                            .prop_map(move |t| if plus { format!("+{t}") } else { t }),
                    )
                }),
        ) {
            proptest::prop_assert_eq!(MobileNumber::parse(&typed).map(|m| m.e164().to_owned()), Ok(e164));
        }
    }

    #[test]
    fn every_operator_prefix_is_accepted() {
        for p in OPERATOR_PREFIXES {
            assert!(MobileNumber::parse(&format!("0{p}1234567")).is_ok(), "{p}");
        }
    }
}
