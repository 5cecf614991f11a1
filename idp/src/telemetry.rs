//! Logs and metrics.
//!
//! Logs are structured (JSON in production) and never carry OTPs, secrets, tokens or
//! national IDs: handlers log masked phone numbers and transaction ids only, and the
//! request span records the path without the query string. Metrics are Prometheus text
//! from one process-wide recorder.

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

pub fn render_metrics() -> String {
    METRICS
        .get()
        .and_then(|m| m.as_ref())
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

pub use service_kit::telemetry::init_logging;
