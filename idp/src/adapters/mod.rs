//! Government services and the SMS gateway, and the calls to manufacturers' own endpoints
//! ([`outbound`]: public addresses only).
//!
//! The IdP always speaks HTTP to them ([`registry::Registry`], [`Sms`], shared with presale) with timeouts
//! and clear errors. Tests, the local demo and the load tool point it at stubs that serve
//! the same wire contracts over synthetic citizens (`testkit::stubs`), so these adapters
//! are exercised for real everywhere.

pub mod outbound;
pub mod registry;

pub use service_kit::upstream::{http_client, post_json, Breaker, Sms, UpstreamError};
