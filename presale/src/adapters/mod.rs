//! What presale talks to besides its own stores: the IdP, as any relying party would, and
//! the registries a license asks at registration, and the banks that hold down payments.

pub mod bank;
pub mod ministry;
pub mod oidc;
pub mod registries;
pub mod sms;
