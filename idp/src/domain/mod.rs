//! Domain types that parse at the edge: a handler never sees a raw string it must re-check.

pub mod client;
pub use service_kit::digits;
pub mod jalali;
pub mod mobile;
pub mod national_id;

/// Property-test strategies: what citizens type.
#[cfg(test)]
pub(crate) mod typed {
    use proptest::prelude::*;

    /// `digits` as a citizen may type them: each digit Latin, Persian or Arabic-Indic,
    /// with spaces, dashes, zero-width non-joiners or no-break spaces between some.
    pub fn spelled(digits: String) -> impl Strategy<Value = String> {
        let n = digits.len();
        (
            proptest::collection::vec(0u32..3, n),
            proptest::collection::vec(0usize..8, n),
        )
            .prop_map(move |(forms, seps)| {
                let mut out = String::new();
                for (i, c) in digits.chars().enumerate() {
                    let d = c as u32 - '0' as u32;
                    out.push(match forms[i] {
                        0 => c,
                        1 => char::from_u32(0x06F0 + d).unwrap_or(c),
                        _ => char::from_u32(0x0660 + d).unwrap_or(c),
                    });
                    if let Some(sep) = [" ", "-", "\u{200c}", "\u{a0}"].get(seps[i]) {
                        if i + 1 < n {
                            out.push_str(sep);
                        }
                    }
                }
                out
            })
    }
}

pub use client::{Client, ClientId, ClientStatus, RedirectUri, Scopes, SigningAlg, SubjectType};
pub use jalali::JalaliDate;
pub use mobile::MobileNumber;
pub use national_id::NationalId;

/// The verified citizen as the provider knows them.
#[derive(Debug, Clone)]
pub struct Citizen {
    /// Opaque, stable subject identifier (`sub`).
    pub id: String,
    pub national_id: NationalId,
    pub mobile: MobileNumber,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: JalaliDate,
    /// Unix seconds of the last registry confirmation.
    pub verified_at: i64,
}
