//! emta load: the surge replayer.
//!
//! What exists so far: [`drive`], the closed-loop benchmark driver, and [`stubs`], the
//! stub civil registry, mobile-ownership service and SMS
//! gateway that a test deployment of emta points at, over synthetic citizens with valid
//! national IDs. The surge replayer itself (open-model arrivals through the real HTTP
//! flows, HDR latency per step, fairness report) is issue 4 and not built yet.

pub mod drive;

pub mod stubs {
    //! Serves `idp::dev::StubServices` (the three upstream contracts, plus `GET /outbox`
    //! where the replayer reads each citizen's SMS code).

    use std::net::SocketAddr;
    use std::path::Path;

    use idp::dev::{generate_citizens, FixtureCitizen, StubServices};

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
