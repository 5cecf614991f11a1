//! What presale talks to besides its own stores: the IdP, as any relying party would.

pub mod ministry;
pub mod oidc;
