//! A campaign's live dashboard: waiting, admitted and within their time, applied against
//! the cap, the rate set and achieved, refusals by reason (this replica), the oldest
//! wait, people admitted who did not come back, the wait to admission (p50, p90), and for
//! a lottery its entries and the draw's state; a chart of the last hour, minute by minute
//! (server-rendered SVG). The figures are [`crate::store::figures`], the same that
//! `/metrics` exports; the page refreshes them every two seconds with a small script,
//! and reloads itself every ten without one.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped};

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::domain::{License, Refusal};
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::figures::{Figures, Minute};
use crate::store::staff::Role;

fn seconds(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// The last hour as three lines: joins, admissions, accepted applications per minute.
fn chart(series: &[Minute], now_ms: i64) -> Markup {
    const W: i64 = 600;
    const H: i64 = 160;
    let start = now_ms - 3_600_000;
    let top = series
        .iter()
        .flat_map(|m| [m.joined, m.admitted, m.accepted])
        .max()
        .unwrap_or(0)
        .max(1);
    let line = |pick: fn(&Minute) -> i64| -> String {
        series
            .iter()
            .map(|m| {
                let x = ((m.at_ms - start).clamp(0, 3_600_000) * W) / 3_600_000;
                let y = H - (pick(m) * (H - 10)) / top;
                format!("{x},{y}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" class=\"chart\" preserveAspectRatio=\"none\">\
         <title id=\"chart-title\">The last hour, per minute: joins (blue), admissions (green), accepted applications (orange); top {top}</title>\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#f6f7f9\"/>\
         <polyline fill=\"none\" stroke=\"#1a5fb4\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#0b6e4f\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#c64600\" stroke-width=\"2\" points=\"{}\"/></svg>",
        line(|m| m.joined),
        line(|m| m.admitted),
        line(|m| m.accepted),
    );
    html! {
        figure.chart {
            (PreEscaped(svg))
            figcaption {
                span.key.joined { "■" } " " (fa(m::JOINED)) " · "
                span.key.admitted { "■" } " " (fa(m::ADMITTED)) " · "
                span.key.accepted { "■" } " " (fa(m::ACCEPTED_SHORT))
                " · " (fa(m::PER_MINUTE_LAST_HOUR)) " (" (top) ")"
            }
        }
    }
}

/// The figures, as the page shows them and the script refreshes them.
/// `refusals`: this replica's refusals by reason, across every campaign: the ministry's
/// business, not a manufacturer's representative's.
fn figures(app: &App, l: &License, f: &Figures, paused: bool, refusals: bool) -> Markup {
    let lottery = l.is_lottery();
    html! {
        table.terms.figures {
            @if lottery {
                tr { th scope="row" { (fa(m::ENTRIES)) } td #entries { (money(f.joined)) } }
                tr { th scope="row" { (fa(m::DRAW)) } td {
                    @if f.drawn { (fa(m::DRAWN)) } @else if f.frozen { (fa(m::FROZEN)) } @else { (fa(m::OPEN)) }
                } }
            } @else {
                tr { th scope="row" { (fa(m::WAITING)) } td #waiting { (money((f.joined - f.admitted).max(0))) } }
                tr { th scope="row" { (fa(m::ADMITTED)) } td #admitted { (money(f.admitted)) } }
                tr { th scope="row" { (fa(m::LIVE)) } td #live-count { (money(f.live)) } }
                tr { th scope="row" { (fa(m::ABANDONED)) } td #abandoned { (money(f.abandoned)) } }
                tr { th scope="row" { (fa(m::RATE_SET_ACHIEVED)) } td {
                    (money(l.admission_per_min)) " / " span #achieved { (money(f.admitted_last_minute)) }
                    @if paused { " · " strong { (fa(m::ADMISSIONS_PAUSED)) } }
                } }
                tr { th scope="row" { (fa(m::OLDEST_WAITING)) } td {
                    span dir="ltr" { @match f.oldest_waiting_ms { Some(t) => (seconds(f.now_ms - t)), None => "—" } }
                } }
                tr { th scope="row" { (fa(m::WAIT_TO_ADMISSION)) } td {
                    span dir="ltr" { "p50 " (f.wait_p50_ms.map_or("—".into(), seconds)) " · p90 " (f.wait_p90_ms.map_or("—".into(), seconds)) }
                } }
            }
            tr { th scope="row" { (fa(m::ACCEPTED)) } td #accepted { (money(f.accepted)) " / " (money(f.units)) } }
            @if refusals {
                tr { th scope="row" { (fa(m::REFUSALS)) } td {
                    ul.list {
                        @for r in Refusal::ALL {
                            li lang="en" dir="ltr" { (r.label()) ": " (app.refusals(r)) }
                        }
                    }
                } }
            }
            tr { th scope="row" { (fa(m::AS_OF)) } td { (when(f.now_ms / 1000)) } }
        }
        (chart(&f.series, f.now_ms))
    }
}

/// The campaign, its figures and whether admissions are paused, for a member who may see
/// it (a representative: its own manufacturer's only).
async fn load(
    app: &App,
    staff: &Staff,
    id: &str,
) -> Result<(License, std::sync::Arc<Figures>, bool), Error> {
    let l = app
        .store
        .license(id)
        .await?
        .ok_or(Error::not_found(m::NO_LICENSE))?;
    staff.sees(&l.manufacturer)?;
    let f = app
        .figures(id)
        .await?
        .ok_or(Error::not_found(m::NO_LICENSE))?;
    let paused = app.store.admissions_paused(id).await?;
    crate::http::metrics::export(id, &f, !l.is_active(), paused);
    Ok((l, f, paused))
}

pub(super) async fn show(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (l, f, paused) = load(&app, &staff, &id).await?;
    // What waits for a second issuer on this campaign (not a representative's business).
    let ministry = staff.role != Role::Representative;
    let pending: Vec<_> = if ministry {
        app.store
            .pending_proposals(service_kit::clock::now())
            .await?
            .into_iter()
            .filter(|p| p.change.license_id() == Some(l.id.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    // A representative reveals its manufacturer's share here once the list is frozen (the
    // channel its commitment came through).
    let reveal_due = !ministry && {
        let seed = app.store.seed_status(&l.id).await?;
        seed.frozen.is_some()
            && seed.seed.is_none()
            && seed
                .parties
                .iter()
                .any(|(p, revealed)| p.party == l.manufacturer && !*revealed)
    };
    let body = html! {
        // Without the script, the whole page every ten seconds.
        noscript { meta http-equiv="refresh" content="10"; }        p {
            @if ministry {
                a href=(format!("/ministry/licenses/{}", l.id)) { (l.model) " · " span lang="en" dir="ltr" { (l.license_no) } }
            } @else {
                (l.model) " · " span lang="en" dir="ltr" { (l.license_no) }
            }
        }
        section.card #live data-src=(format!("/ministry/licenses/{}/dashboard/live", l.id)) aria-live="polite" {
            (figures(&app, &l, &f, paused, ministry))
        }        @if ministry {
            section.card {
                h2 { (fa(m::WAITING_FOR_SECOND)) }
                @if pending.is_empty() { p { (fa(m::NONE)) } }
                ul.list {
                    @for p in &pending {
                        li { a href=(format!("/ministry/proposals/{}", p.id)) { (p.change.summary()) } " · " span lang="en" dir="ltr" { (p.proposed_by) } }
                    }
                }
            }
        }
        @if reveal_due {
            section.card {
                form method="post" action=(format!("/ministry/licenses/{}/reveal", l.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="secret" { (fa(m::F_MAKER_SECRET)) }
                    input #secret type="password" name="secret" required autocomplete="off";
                    button type="submit" { (fa(m::REVEAL_MAKER)) }
                }
            }
        }
        script src="/static/dashboard.js" {}
    };
    Ok(page(&staff, StatusCode::OK, m::DASHBOARD, body))
}

/// The figures alone, for the page's script.
pub(super) async fn live(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (l, f, paused) = load(&app, &staff, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        figures(&app, &l, &f, paused, staff.role != Role::Representative).into_string(),
    )
        .into_response())
}
