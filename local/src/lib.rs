//! emta on one machine. This is the only code that runs the IdP and the presale platform
//! together (in one process, or as processes it owns); neither service depends on the
//! other, nor on this.
//!
//! # Layout
//! - [`demo`]: `cargo run -p local -- demo`: the whole system on embedded defaults with
//!   demo data, on fixed local ports.
//! - [`deploy`]: a whole deployment on free ports (stubs, the IdP, presale replicas, a
//!   license) on SQLite or on PostgreSQL and Redis, which end-to-end tests, benches and the
//!   load tool's sweep start and stop.
//! - [`parties`]: the seed's parties played by the machine (public demo secrets).
//! - [`processes`]: IdP and presale replicas as processes of their built binaries, which
//!   a rehearsal kills -9 and starts again.

pub mod demo;
pub mod deploy;
pub mod parties;
pub mod processes;

pub use deploy::{deploy, queue_license, Deployment, Options, PRESALE_DB_CONNECTIONS};
