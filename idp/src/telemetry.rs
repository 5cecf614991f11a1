//! Logs and metrics.
//!
//! Logs are structured (JSON in production) and never carry OTPs, secrets, tokens or
//! national IDs: handlers log masked phone numbers and transaction ids only, and the
//! request span records the path without the query string. Metrics are Prometheus text
//! from one process-wide recorder (`service_kit::telemetry`).

pub use service_kit::telemetry::{init_logging, init_metrics, render_metrics};
