//! emta presale: licensed campaigns, the identity-bound fair queue, and applications.
//!
//! Presale knows the national IdP only as an OpenID provider at a URL, exactly as a
//! manufacturer's own site would: it depends on no IdP code.
//!
//! # Layout
//! - [`http`]: routes, forms and pages, one module per feature (storefront, sign-in,
//!   waiting room, apply, lottery, ministry console, transparency log), each with its own
//!   `router()`.
//! - [`domain`]: the rules, in types that parse at the edge: licenses (kind, selection,
//!   status, terms), applications and refusals, national IDs and their keyed hashes,
//!   signed tickets, the lottery draw.
//! - [`store`]: SQL (SQLite or PostgreSQL): applications accepted in one transaction
//!   under the cap, licenses, lottery entries and draws, staff and the audit log, the
//!   transparency logs and the commit-reveal seeds.
//! - [`queue`]: the fair queue: group commit of joins into its durable record in SQL
//!   ([`store::queue`]), the seeded permutation of pre-opening arrivals.
//! - [`admitter`]: the loop every replica runs: reload licenses, admit at each license's
//!   rate, draw closed lotteries, sequence and sign the transparency logs.
//! - [`reconcile`]: a round's holds against the banks' statements.
//! - [`settle`]: rounds' ends: lapses and the reserves' promotions, holds captured or
//!   released exactly once.
//! - [`transparency`]: the public log's records, checkpoints and receipts, the seed's
//!   commit-then-reveal, and the auditor (`presale verify`).
//! - [`adapters`]: the storefronts as OIDC relying parties of the IdP; the registries a
//!   license asks ([`eligibility`] applies their rules).
//! - [`app`], [`config`], [`error`]: building and running the service, its typed
//!   settings, its one error type.

pub mod adapters;
pub mod admitter;
pub mod app;
pub mod config;
pub mod domain;
pub mod eligibility;
pub mod error;
pub mod files;
pub mod http;
pub mod notify;
pub mod queue;
pub mod reconcile;
pub mod settle;
pub mod standing;
pub mod store;
pub mod transparency;

pub use app::Application;
pub use config::Settings;
