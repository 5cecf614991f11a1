//! The audit log for every role: the hash chain checked on every view, and its CSV export
//! (itself audited).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;

pub(super) async fn show(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    let rows = app.store.audit_log().await?;
    let check = app.store.check_audit_chain().await;
    let body = html! {
        @match &check {
            Ok(c) if c.ok() => p.chain-ok { "The hash chain holds: " (c.entries) " entries recomputed, " (c.anchors) " anchors in the campaigns' public logs match." }
            Ok(c) => div.error role="alert" {
                p { (fa(m::CHAIN_BROKEN)) }
                ul { @for f in &c.findings { li { (f) } } }
            }
            Err(_) => p.error { (fa(m::CHAIN_UNCHECKED)) }
        }
        p { a href="/ministry/audit.csv" { "CSV" } }
        ol.history {
            @for e in rows.iter().rev() {
                li {
                    (e.seq.map(|s| s.to_string()).unwrap_or_default()) " · " (when(e.at))
                    " · " span lang="en" dir="ltr" { (e.actor) " · " (e.action) " · " (e.subject) }
                    p.detail lang="en" dir="ltr" { (e.detail) }
                    p.detail { code.hash { (e.hash) } }
                }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::AUDIT_LOG, body))
}

fn csv_field(s: &str) -> String {
    // Quote every field; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) async fn csv(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    app.store
        .audit(
            service_kit::clock::now(),
            &staff.username,
            "audit.export",
            "audit_log",
            "csv",
        )
        .await?;
    let rows = app.store.audit_log().await?;
    let mut out = String::from("seq,at,actor,action,subject,detail,prev_hash,hash\n");
    for e in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.seq.map(|s| s.to_string()).unwrap_or_default(),
            e.at,
            csv_field(&e.actor),
            csv_field(&e.action),
            csv_field(&e.subject),
            csv_field(&e.detail),
            csv_field(&e.prev_hash),
            csv_field(&e.hash)
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}
