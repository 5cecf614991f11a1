//! What presale talks to besides its own stores: the IdP, as any relying party would, and
//! the registries a license asks at registration.

pub mod ministry;
pub mod oidc;
pub mod registries;
