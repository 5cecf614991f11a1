//! The provider's flows: the authorization request, the citizen verification steps,
//! tokens, and the shared abuse limits. No HTML and no SQL here: flows call `store` and
//! `adapters` and return domain results that `http` renders.

pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod client_rate;
pub mod limits;
pub mod login;
pub mod pow;
pub mod tokens;
