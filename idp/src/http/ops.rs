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

/// Ready when SQL and the ephemeral store can be reached, and not shutting down. Busy is
/// ready ([`service_kit::ready`]): pools with every connection in use answer "busy", not
/// "not ready", so that load never takes a replica out of its Service.
pub async fn readyz(State(core): State<Core>) -> Response {
    use service_kit::ready::{answer, probe, PROBE_WITHIN};
    if !core.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return answer(true, &[]).into_response();
    }
    let probed = core.clone();
    core.readiness
        .get_or(async move {
            let core = probed;
            let (db, eph) = tokio::join!(
                probe(
                    core.db.ping(),
                    || core.db.saturated(),
                    core.db.ping_direct(),
                    PROBE_WITHIN
                ),
                probe(
                    core.eph.ping(),
                    || core.eph.saturated(),
                    core.eph.ping_direct(),
                    PROBE_WITHIN
                ),
            );
            answer(false, &[("database", db), ("ephemeral store", eph)])
        })
        .await
        .into_response()
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
