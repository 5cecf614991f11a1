//! emta load: replays a national registration surge against a deployment of emta (IdP +
//! presale) through the real HTTP flows, and reports whether it held.
//!
//! # Layout
//! - [`http`]: the traffic client: HTTP only, requests rotated over replicas that pass
//!   `/readyz`, failures classified, every request timed from its intended start.
//! - [`curve`]: arrival curves (recorded CSV series or built-in shapes), scaled and
//!   time-compressed; arrivals follow the curve whatever the servers do (open model).
//! - [`journey`]: one citizen's browser walk: storefront, the IdP's pages (proof of work,
//!   SMS code from the stub gateway, identity, consent), join, wait as the waiting page
//!   does, apply; with returning (SSO), impatient, retrying, mistyping and two-device
//!   citizens.
//! - [`record`], [`report`], [`fairness`], [`html`]: HDR latency per step measured from
//!   intended start, outcomes, applications against the cap, fairness, a timeline; JSON
//!   and an HTML page with charts.
//! - [`run`]: the run itself, with live progress and Ctrl-C for a partial report.
//! - [`faults`]: a fault schedule beside the curve (the tool's own processes broken by
//!   name, or the operator's commands), and what each fault cost.
//! - [`rehearsal`]: `load rehearse`, the opening rehearsed with faults on one machine:
//!   the tool owns PostgreSQL, Redis and the presale processes it breaks.
//! - [`ledger`]: every ticket, admission and tracking code answered, checked after the
//!   run against the campaign's audited transparency log.
//! - [`fuzz`]: bad input at scale against every page and JSON endpoint of both services:
//!   never a 5xx other than a planned 503, never a dropped connection.
//! - [`sweep`]: rising plateaus through an in-process deployment on PostgreSQL and Redis,
//!   to find the largest arrival rate one replica of each service holds.
//! - [`stubs`]: the stub civil registry, mobile ownership and SMS gateway a test deployment
//!   points at.

pub mod curve;
pub mod fairness;
pub mod faults;
pub mod fuzz;
pub mod html;
pub mod http;
pub mod journey;
pub mod ledger;
pub mod record;
pub mod rehearsal;
pub mod report;
pub mod run;
pub mod sweep;

pub mod stubs {
    //! Serves `testkit`'s stub services (the three upstream contracts, plus `GET /outbox`
    //! where the replayer reads each citizen's SMS code).

    use std::net::SocketAddr;
    use std::path::Path;

    use testkit::{generate_citizens, FixtureCitizen, StubServices};

    /// Generates `n` citizens from `seed`, writes them to `out` (the replayer and the
    /// deployment's demo both read the same list), and serves the stubs on `listen`.
    pub async fn serve(
        listen: SocketAddr,
        n: usize,
        seed: u64,
        out: Option<&Path>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<(SocketAddr, Vec<FixtureCitizen>, tokio::task::JoinHandle<()>)> {
        let citizens = generate_citizens(n, seed);
        if let Some(path) = out {
            std::fs::write(path, serde_json::to_vec_pretty(&citizens)?)?;
        }
        let (addr, handle) = StubServices::new(citizens.clone())
            .serve(listen, shutdown)
            .await?;
        Ok((addr, citizens, handle))
    }
}
