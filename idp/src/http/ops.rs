//! Operations: health, readiness, Prometheus metrics, static assets.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pages::{self, Lang};
use crate::core::Core;
use crate::error::msg;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when SQL and the ephemeral store answer, and not shutting down.
pub async fn readyz(State(core): State<Core>) -> Response {
    if !core.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let db = core.db.ping().await;
    let eph = core.eph.ping().await;
    match (db, eph) {
        (Ok(()), Ok(())) => "ready".into_response(),
        (db, eph) => {
            tracing::warn!(db = ?db.err(), ephemeral = ?eph.err(), "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn css() -> Response {
    asset(pages::APP_CSS, "text/css; charset=utf-8")
}

pub async fn js() -> Response {
    asset(pages::POW_JS, "text/javascript; charset=utf-8")
}

pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::error_page(Lang::Fa, msg::NOT_FOUND),
    )
        .into_response()
}
