//! Domain types that parse at the edge: a handler never sees a raw string it must re-check.

pub mod client;
pub use service_kit::digits;
pub mod jalali;
pub mod mobile;
pub mod national_id;

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
