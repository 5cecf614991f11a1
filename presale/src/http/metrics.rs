//! Operators' view of the queue: `/metrics` in Prometheus text, served on the private
//! listener (`EMTA_PRESALE_METRICS_LISTEN`) only, never on the public one.
//!
//! Per campaign, from this replica's cache of the committed state: waiting, admitted
//! (serving), admitted and still within their time, accepted applications, suspended,
//! sold out. This replica's refusals by reason. The admitter's lag (time since this
//! replica last advanced every campaign) and the transparency log's journal lag (events
//! committed but not yet sequenced into the signed tree).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::Core;
use crate::domain::{Refusal, Selection};

pub(crate) fn router(core: Core) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(core)
}

async fn metrics(State(core): State<Core>) -> Response {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let licenses = core.all_licenses();
    let queues: Vec<_> = licenses
        .iter()
        .filter(|l| l.selection == Selection::Queue)
        .map(|l| (l.id.clone(), core.cached(&l.id)))
        .collect();
    gauge(
        &mut out,
        "emta_presale_queue_waiting",
        "Tickets issued and not yet admitted.",
    );
    for (id, q) in &queues {
        let _ = writeln!(
            out,
            "emta_presale_queue_waiting{{campaign=\"{id}\"}} {}",
            (q.early + q.late - q.serving).max(0)
        );
    }
    gauge(
        &mut out,
        "emta_presale_queue_admitted",
        "Tickets admitted so far (the serving counter).",
    );
    for (id, q) in &queues {
        let _ = writeln!(
            out,
            "emta_presale_queue_admitted{{campaign=\"{id}\"}} {}",
            q.serving
        );
    }
    gauge(
        &mut out,
        "emta_presale_queue_live",
        "Admitted applicants still within their time to apply.",
    );
    for (id, q) in &queues {
        let _ = writeln!(
            out,
            "emta_presale_queue_live{{campaign=\"{id}\"}} {}",
            q.live
        );
    }
    gauge(
        &mut out,
        "emta_presale_applications_accepted",
        "Accepted applications (never above units).",
    );
    for l in licenses.iter() {
        let _ = writeln!(
            out,
            "emta_presale_applications_accepted{{campaign=\"{}\"}} {}",
            l.id, l.accepted
        );
    }
    gauge(
        &mut out,
        "emta_presale_campaign_suspended",
        "1 while the ministry has suspended the license.",
    );
    for l in licenses.iter() {
        let _ = writeln!(
            out,
            "emta_presale_campaign_suspended{{campaign=\"{}\"}} {}",
            l.id,
            u8::from(!l.is_active())
        );
    }
    let _ = writeln!(out, "# HELP emta_presale_refusals_total Applications refused by this replica, by reason.\n# TYPE emta_presale_refusals_total counter");
    for r in Refusal::ALL {
        let _ = writeln!(
            out,
            "emta_presale_refusals_total{{reason=\"{}\"}} {}",
            r.label(),
            core.refusals(r)
        );
    }
    gauge(
        &mut out,
        "emta_presale_admitter_lag_seconds",
        "Seconds since this replica's admitter last advanced every campaign.",
    );
    let last = core.admitter.last_tick_ms.load(Ordering::Relaxed);
    let lag = if last == 0 {
        -1.0
    } else {
        (service_kit::clock::now_ms() - last) as f64 / 1000.0
    };
    let _ = writeln!(out, "emta_presale_admitter_lag_seconds {lag}");
    gauge(&mut out, "emta_presale_journal_pending", "Transparency-log events committed and not yet sequenced into the signed tree (-1: the database did not answer).");
    let pending = core.store.log_pending().await.unwrap_or(-1);
    let _ = writeln!(out, "emta_presale_journal_pending {pending}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
