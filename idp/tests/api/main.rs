//! API tests: the real IdP on port 0, driven like a relying party and a browser would.
//! Every test runs on both storage backends (SQLite + in-process, PostgreSQL + Redis).

mod helpers;

mod abuse;
mod browser;
mod certification;
mod client_auth;
mod clients;
mod flow;
mod negative;
mod ops;
mod par;
