//! Presale's domain: types that parse at the edge and the rules they follow. Nothing here
//! knows HTTP, SQL or Redis.

pub mod after_sale;
pub mod application;
pub mod citizen;
pub mod license;
pub mod proposals;
pub mod redress;
pub mod staff;
pub use emta_verify::lottery;
pub mod ticket;

pub use application::{Accepted, ApplicationRequest, LicenseTerms, Refusal};
pub use citizen::{Holder, NationalId};
pub use license::{
    Exclusion, HoldBefore, HoldTerms, License, LicenseError, LicenseStatus, NewLicense,
    PresaleKind, Registration, SeedDelay, Selection, StatusChange, Validate,
};
pub use ticket::Place;
