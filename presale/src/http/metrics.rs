//! Operators' view of the campaigns: `/metrics` in Prometheus text through the `metrics`
//! crate (the process-wide recorder of `service_kit::telemetry`), served on the private
//! listener (`EMTA_PRESALE_METRICS_LISTEN`) only, never on the public one.
//!
//! Per campaign, from its committed records ([`crate::store::figures`], the same figures
//! the console's live dashboard shows): waiting, admitted, admitted and still within their
//! time, abandoned, accepted applications, admissions in the last minute, the oldest wait,
//! the wait to admission (p50, p90), suspended and paused. This replica's refusals by
//! reason (counted as they happen). The admitter's lag (time since this replica last
//! advanced every campaign) and the transparency log's journal lag (events committed but
//! not yet sequenced into the signed tree).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::gauge;

use crate::app::Core;
use crate::store::figures::Figures;

pub(crate) fn router(core: Core) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(core)
}

/// Sets campaign `id`'s gauges from its figures.
pub(crate) fn export(id: &str, f: &Figures, suspended: bool, paused: bool) {
    let c = id.to_owned();
    gauge!("emta_presale_queue_waiting", "campaign" => c.clone())
        .set((f.joined - f.admitted).max(0) as f64);
    gauge!("emta_presale_queue_admitted", "campaign" => c.clone()).set(f.admitted as f64);
    gauge!("emta_presale_queue_live", "campaign" => c.clone()).set(f.live as f64);
    gauge!("emta_presale_queue_abandoned", "campaign" => c.clone()).set(f.abandoned as f64);
    gauge!("emta_presale_queue_admitted_last_minute", "campaign" => c.clone())
        .set(f.admitted_last_minute as f64);
    gauge!("emta_presale_queue_oldest_wait_seconds", "campaign" => c.clone()).set(
        f.oldest_waiting_ms
            .map_or(0.0, |t| (f.now_ms - t).max(0) as f64 / 1000.0),
    );
    for (q, v) in [("0.5", f.wait_p50_ms), ("0.9", f.wait_p90_ms)] {
        gauge!("emta_presale_queue_wait_seconds", "campaign" => c.clone(), "quantile" => q)
            .set(v.unwrap_or(0) as f64 / 1000.0);
    }
    gauge!("emta_presale_applications_accepted", "campaign" => c.clone()).set(f.accepted as f64);
    gauge!("emta_presale_campaign_suspended", "campaign" => c.clone())
        .set(f64::from(u8::from(suspended)));
    gauge!("emta_presale_admissions_paused", "campaign" => c).set(f64::from(u8::from(paused)));
}

async fn metrics(State(core): State<Core>) -> Response {
    // Campaigns open now or closed within a day: the figures of every campaign ever
    // issued on every scrape would cost the database more than they tell.
    let recent = service_kit::clock::now() - 24 * 3600;
    for l in core.all_licenses().iter().filter(|l| l.closes_at > recent) {
        let paused = core.store.admissions_paused(&l.id).await.unwrap_or(false);
        if let Ok(Some(f)) = core.figures(&l.id).await {
            export(&l.id, &f, !l.is_active(), paused);
        }
    }
    let last = core.admitter.last_tick_ms.load(Ordering::Relaxed);
    let lag = if last == 0 {
        -1.0
    } else {
        (service_kit::clock::now_ms() - last) as f64 / 1000.0
    };
    gauge!("emta_presale_admitter_lag_seconds").set(lag);
    let pending = core.store.log_pending().await.unwrap_or(-1);
    gauge!("emta_presale_journal_pending").set(pending as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        service_kit::telemetry::render_metrics(),
    )
        .into_response()
}
