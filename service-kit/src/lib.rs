//! What both emta web services (the IdP and the presale platform) are built from, and
//! nothing that belongs to either: the two services meet only at their protocols (OpenID
//! Connect), so anything they share lives here, small and service-neutral.
//!
//! # Layout
//! - [`page`]: the bilingual page shell (Persian right-to-left first, English beneath),
//!   [`page::Lang`], [`page::Text`] and the stylesheet.
//! - [`digits`], [`clock`]: Persian and Arabic-Indic digits; Unix time, Jalali dates and
//!   Tehran time for pages. [`national_id`]: the national ID's check, one rule for both.
//! - [`keys`]: purpose-separated keyed hashes under one server secret, random tokens.
//! - [`redis`], [`ephemeral`], [`limit`]: the Redis pool recipe (single server or Cluster),
//!   the expiring key-value store (Redis, or in-process for one node) and fixed-window
//!   rate limits shared by every replica.
//! - [`sql`]: SQLite/PostgreSQL pool and migration helpers, unique-violation detection.
//! - [`net`]: the client address behind an ingress; [`secret`]: configuration values
//!   that never print.
//! - [`shutdown`], [`telemetry`]: SIGTERM drain and logging setup for the binaries.
//! - [`admission`]: bounded in-flight work per step, refusing at once past it;
//!   [`body`]: request bodies read whole, within a size and a deadline, before any of it.
//! - [`upstream`]: calls to government services and banks (errors naming the service,
//!   circuit breakers, JSON POSTs).

pub mod admission;
pub mod body;
pub mod clock;
pub mod digits;
pub mod ephemeral;
pub mod keys;
pub mod limit;
pub mod national_id;
pub mod net;
pub mod page;
pub mod ready;
pub mod redis;
pub mod secret;
pub mod shutdown;
pub mod sql;
pub mod telemetry;
pub mod upstream;

pub use page::{Lang, Text};
