//! emta's test and local-deployment machinery, in one place. It depends on no service:
//! it speaks to the IdP and the presale platform only over HTTP, as a browser or a
//! government service would, so both services' tests, the benches, the local deployment
//! and the load tool can all use it without a dependency circle.
//!
//! # Layout
//! - [`citizens`]: synthetic citizens with valid national IDs and Jalali birth dates.
//! - [`stubs`]: the civil registry, mobile ownership and SMS gateway contracts over HTTP,
//!   answering from those citizens, with the outbox where codes can be read.
//! - [`bank`]: a participating bank's mandate API and pages (card, PIN, approve), with
//!   faults to play and differences to plant for reconciliation.
//! - [`forms`], [`browser`]: reading plain HTML forms; a cookie-keeping client that shows
//!   every redirect hop.
//! - [`login`]: the walk through the IdP's pages (proof of work, SMS code, identity,
//!   consent) as a citizen's browser does it.
//! - [`drive`]: a closed-loop driver with HDR histograms for single-operation benchmarks.
//! - [`servers`]: where the test PostgreSQL and Redis are, fresh databases and key
//!   prefixes, temporary folders, free ports, built binaries.
//! - [`webdriver`]: headless Chromium over WebDriver, for the pages people use.

pub mod bank;
pub mod browser;
pub mod citizens;
pub mod drive;
pub mod forms;
pub mod login;
pub mod servers;
pub mod stubs;
pub mod webdriver;

pub use browser::{Browser, Page};
pub use citizens::{generate_citizens, FixtureCitizen};
pub use servers::Backend;
pub use stubs::{Outbox, StubServices};
