//! emta IdP: the national OpenID Connect provider and the citizen verification flow.
//!
//! # Layout
//! - [`http`]: routes, forms, pages, headers. It parses and renders only: the login pages
//!   show the [`flow::login::Next`] value the flow returns.
//! - [`flow`]: the rules: the authorization request, the login state machine
//!   (`core.login()`), codes and tokens (`core.tokens()`), abuse limits.
//! - [`domain`]: types that parse at the edge (national ID, mobile, Jalali date, clients).
//! - [`store`]: SQL (SQLite or PostgreSQL); the ephemeral store (memory or Redis) comes
//!   from `service-kit`.
//! - [`adapters`]: civil registry, mobile ownership and SMS gateway, always over HTTP (the
//!   library has no fixtures: tests and the demo start `testkit`'s stubs).
//! - [`keys`]: ID token signing keys and rotation.
//! - [`admin`]: what the operator's commands do (clients, keys, audit).
//! - [`app`], [`core`], [`config`], [`error`]: building and running the server
//!   (`Application`), the state handlers share (`Core`), typed settings, the one error
//!   type.

pub mod adapters;
pub mod admin;
pub mod app;
pub mod badge_scan;
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

pub use service_kit::clock::{format_time, now};
