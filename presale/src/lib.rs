//! emta presale: licensed campaigns, the identity-bound fair queue, and applications.
//!
//! # Layout
//! - [`queue`]: the fair queue in Redis (joins, the admitter, admission checks) and the
//!   seeded permutation of pre-opening arrivals.
//! - [`applications`]: durable applications in SQL: never above the license's cap, never
//!   two per national ID in a campaign (or a round), under any concurrency.
//!
//! - [`license`], [`lottery`], [`staff`]: licenses the ministry issues, public lottery
//!   draws, and the ministry's staff (argon2 + TOTP, audit log).
//! - [`service`]: the HTTP service: storefronts (OIDC relying parties of the IdP), the
//!   waiting room, applications, the ministry console.
//! - [`local`]: a whole deployment in one process, for tests and benchmarks.

pub mod applications;
pub mod license;
pub mod local;
pub mod lottery;
pub mod queue;
pub mod service;
pub mod staff;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
