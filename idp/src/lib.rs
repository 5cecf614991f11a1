//! emta IdP: the national OpenID Connect provider and the citizen verification flow.
//!
//! # Layout
//! - [`domain`]: types that parse at the edge (national ID, mobile, Jalali date, clients).
//! - [`flow`]: the authorization request, the four login steps, tokens, abuse limits.
//! - [`store`]: SQL (SQLite or PostgreSQL) and the ephemeral store (memory or Redis).
//! - [`adapters`]: civil registry, mobile ownership and SMS gateway over HTTP.
//! - [`http`]: routes, forms, pages, headers.
//! - [`keys`]: ID token signing keys and rotation.
//! - [`admin`]: what the operator's commands do (clients, keys, citizens).
//! - [`app`]: building and running the server.

pub mod adapters;
pub mod admin;
pub mod app;
pub mod config;
pub mod core;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod flow;
pub mod http;
pub mod keys;
pub mod store;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;

pub use service_kit::clock::{format_time, now, today_iso};
