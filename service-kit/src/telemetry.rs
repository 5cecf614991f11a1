//! Logging and metrics for the binaries. Logs are structured (JSON in production) and
//! never carry OTPs, secrets, tokens or national IDs: each service logs masked values
//! only. Metrics go through the `metrics` crate to one process-wide Prometheus recorder,
//! which both services render on their private listeners (in a local deployment both run
//! in one process and share it; in production each is its own process).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process (tests build many apps in one).
pub fn init_metrics() {
    METRICS.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .ok()
            .and_then(|b| b.install_recorder().ok())
    });
}

/// Everything recorded so far, in Prometheus text.
pub fn render_metrics() -> String {
    METRICS
        .get()
        .and_then(|m| m.as_ref())
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// `RUST_LOG` filter, JSON when `EMTA_LOG_JSON=1`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("EMTA_LOG_JSON").is_ok_and(|v| v == "1");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
