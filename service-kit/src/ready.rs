//! Readiness that says "cannot serve", never "busy".
//!
//! A replica that reports itself not ready under load sends its load to the others, which
//! then report the same: the cascading failure of a readiness probe tied to latency (a
//! Service with no endpoints, the ingress answering bare 503s without Retry-After). A
//! replica that is merely busy already answers what it cannot take with 503 and
//! Retry-After, by its admission gates. So a dependency's probe is judged by why it did
//! not answer: a pool whose every connection is open and in use is busy (ready); a
//! connection that cannot be made or fails is down (not ready).

use std::future::Future;
use std::time::Duration;

/// What a dependency's probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ready,
    /// No answer in time, but every pooled connection is open and in use: load, not a
    /// fault.
    Busy,
    /// It cannot be reached (or its pool cannot open a connection): the reason, for logs.
    Down(String),
}

/// How long a probe waits for its dependency: under a kubelet's `timeoutSeconds` (2 s in
/// `k8s/`), so the answer is this service's, not a probe timeout.
pub const PROBE_WITHIN: Duration = Duration::from_millis(800);

/// Runs `ping` (through the serving pool) for at most `within`. Should it fail or not
/// answer while the pool has every connection open and in use, the dependency is asked
/// once more outside the pool (`direct`: a new connection, within the same time): an
/// answer there is load (busy, ready); none is a fault (down). A pool filled with
/// requests waiting on a database that went away is therefore down, not busy.
pub async fn probe<E: std::fmt::Display, D: std::fmt::Display>(
    ping: impl Future<Output = Result<(), E>>,
    saturated: impl Fn() -> bool,
    direct: impl Future<Output = Result<(), D>>,
    within: Duration,
) -> Probe {
    let started = tokio::time::Instant::now();
    let why = match tokio::time::timeout(within, ping).await {
        Ok(Ok(())) => return Probe::Ready,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} ms", within.as_millis()),
    };
    if !saturated() {
        return Probe::Down(why);
    }
    let left = within.saturating_sub(started.elapsed()).max(within / 2);
    match tokio::time::timeout(left, direct).await {
        Ok(Ok(())) => Probe::Busy,
        Ok(Err(e)) => Probe::Down(format!("{why}; a new connection: {e}")),
        Err(_) => Probe::Down(format!("{why}; a new connection did not answer either")),
    }
}

/// Whether a SQL pool has every connection open and in use.
pub fn sql_saturated(pool: &sqlx::AnyPool) -> bool {
    pool.size() >= pool.options().get_max_connections() && pool.num_idle() == 0
}

/// A new connection to the pool's database, outside the pool, and a ping on it.
pub async fn sql_direct(pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    use sqlx::{ConnectOptions, Connection};
    let mut c = pool.connect_options().connect().await?;
    let r = c.ping().await;
    let _ = c.close().await;
    r
}

/// The readiness answer for a replica's probes: 200 `ready` (or `ready, busy: …`) unless
/// the replica is stopping or a dependency is down.
pub fn answer(stopping: bool, probes: &[(&str, Probe)]) -> (axum::http::StatusCode, String) {
    if stopping {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "stopping".into(),
        );
    }
    let down: Vec<String> = probes
        .iter()
        .filter_map(|(what, p)| match p {
            Probe::Down(why) => Some(format!("{what}: {why}")),
            _ => None,
        })
        .collect();
    if !down.is_empty() {
        // The reasons (hosts, ports, driver errors) go to the log; the public answer
        // names the dependency only.
        tracing::warn!(down = %down.join("; "), "not ready");
        let names: Vec<&str> = probes
            .iter()
            .filter(|(_, p)| matches!(p, Probe::Down(_)))
            .map(|(what, _)| *what)
            .collect();
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", names.join(", ")),
        );
    }
    let busy: Vec<&str> = probes
        .iter()
        .filter(|(_, p)| *p == Probe::Busy)
        .map(|(what, _)| *what)
        .collect();
    if busy.is_empty() {
        (axum::http::StatusCode::OK, "ready".into())
    } else {
        (
            axum::http::StatusCode::OK,
            format!("ready, busy: {}", busy.join(", ")),
        )
    }
}

/// The last answer, for a second: however often `/readyz` is asked (it is public, and a
/// busy replica's probe opens a connection of its own), the dependencies are probed at
/// most once a second per replica, one probe at a time. The probe runs in a task of its
/// own, so a caller that hangs up does not cancel it (and leave the next caller to start
/// over); a caller waits at most [`ANSWER_WITHIN`] and then gets the last answer.
#[derive(Default, Clone)]
pub struct Cached {
    last: std::sync::Arc<std::sync::Mutex<Option<(tokio::time::Instant, Answer)>>>,
    probing: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A readiness answer: status and body.
pub type Answer = (axum::http::StatusCode, String);

/// How long a caller waits for a probe: under the kubelet's 2 s `timeoutSeconds` (a probe
/// takes at most [`PROBE_WITHIN`] and half of it again for its own connection).
pub const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

impl Cached {
    fn fresh(&self) -> Option<Answer> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(1))
            .map(|(_, a)| a.clone())
    }

    pub async fn get_or(&self, probe: impl Future<Output = Answer> + Send + 'static) -> Answer {
        if let Some(a) = self.fresh() {
            return a;
        }
        let me = self.clone();
        let task = tokio::spawn(async move {
            let _one = me.probing.clone().lock_owned().await;
            if let Some(a) = me.fresh() {
                return a;
            }
            let a = probe.await;
            *me.last.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((tokio::time::Instant::now(), a.clone()));
            a
        });
        match tokio::time::timeout(ANSWER_WITHIN, task).await {
            Ok(Ok(a)) => a,
            _ => {
                let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                match last.as_ref() {
                    Some((_, a)) => a.clone(),
                    None => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: no answer in time".into(),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOON: Duration = Duration::from_millis(20);

    fn ok() -> std::future::Ready<Result<(), String>> {
        std::future::ready(Ok(()))
    }

    fn err(why: &str) -> std::future::Ready<Result<(), String>> {
        std::future::ready(Err(why.to_owned()))
    }

    #[tokio::test]
    async fn a_busy_pool_is_ready_and_a_dead_one_is_not() {
        let slow = std::future::pending::<Result<(), String>>;
        assert_eq!(probe(ok(), || false, ok(), SOON).await, Probe::Ready);
        // Every connection in use, the database answering a new one: busy.
        assert_eq!(probe(slow(), || true, ok(), SOON).await, Probe::Busy);
        assert_eq!(
            probe(err("pool timed out"), || true, ok(), SOON).await,
            Probe::Busy
        );
        // Every connection in use, but nobody answers a new one (the database went away
        // under load, its requests holding the pool): down, not busy.
        assert!(matches!(
            probe(slow(), || true, err("connection refused"), SOON).await,
            Probe::Down(_)
        ));
        assert!(matches!(
            probe(slow(), || true, slow(), SOON).await,
            Probe::Down(_)
        ));
        // Connections that cannot be made, the pool not full: down, by error or silence.
        assert!(matches!(
            probe(err("connection refused"), || false, ok(), SOON).await,
            Probe::Down(_)
        ));
        assert!(matches!(
            probe(slow(), || false, ok(), SOON).await,
            Probe::Down(_)
        ));
    }

    /// Callers that hang up do not cancel the probe, and a slow probe does not hold a
    /// caller past its time: it gets the last answer.
    #[tokio::test]
    async fn the_probe_runs_once_a_second_and_outlives_its_caller() {
        let c = Cached::default();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let probe = |runs: std::sync::Arc<std::sync::atomic::AtomicUsize>, wait: u64| async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (axum::http::StatusCode::OK, "ready".to_owned())
        };
        // A caller that gives up after 10 ms: the probe (50 ms) still completes.
        let _ = tokio::time::timeout(Duration::from_millis(10), c.get_or(probe(runs.clone(), 50)))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Within the second: the kept answer, no probe.
        assert_eq!(c.get_or(probe(runs.clone(), 0)).await.0, 200);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn busy_answers_ready_down_and_stopping_do_not() {
        let ok = answer(false, &[("sql", Probe::Busy), ("redis", Probe::Ready)]);
        assert_eq!(ok.0, 200);
        assert_eq!(ok.1, "ready, busy: sql");
        assert_eq!(answer(false, &[("sql", Probe::Down("x".into()))]).0, 503);
        assert_eq!(answer(true, &[("sql", Probe::Ready)]).0, 503);
    }
}
