//! How a replica stops when told to (SIGTERM from Kubernetes).

use std::future::Future;
use std::time::Duration;

/// Readiness goes false at once (`not_ready`), so the load balancer stops sending new
/// requests; the replica keeps serving for `drain` while that propagates; then this
/// future resolves, the server stops accepting connections and finishes the requests in
/// flight, and the process exits. `drain` plus the longest request must fit the pod's
/// grace period.
pub async fn stop_gracefully(
    shutdown: impl Future<Output = ()>,
    not_ready: impl FnOnce(),
    drain: Duration,
) {
    shutdown.await;
    not_ready();
    tracing::info!(
        drain_secs = drain.as_secs(),
        "stopping: readiness is false; serving while the load balancer drains"
    );
    tokio::time::sleep(drain).await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
