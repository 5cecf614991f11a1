//! What presale talks to besides its own stores: the IdP, as any relying party would, and
//! the registries a license asks at registration, and the banks that hold down payments.
//! The SMS gateway is the one both services speak to ([`service_kit::upstream::Sms`]).

pub mod bank;
pub mod ministry;
pub mod oidc;
pub mod registries;
