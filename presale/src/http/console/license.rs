//! A license's own page: its terms and status, its proposals and audit history, its seed's
//! commitments and reveals and the latest signed tree head of its public log, and the
//! actions the signed-in role allows (issuers propose suspending, resuming, a new rate).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::login::CsrfOnly;
use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::proposals::Change;
use crate::store::staff::Role;

pub(super) async fn show(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let l = app
        .store
        .license(&id)
        .await?
        .ok_or(Error::not_found(m::NO_LICENSE))?;
    let proposals = app.store.proposals_for(&id).await?;
    let history = app.store.audit_for(&id).await?;
    let seed = app.store.seed_status(&id).await?;
    let head = app.store.log_checkpoint(&id).await?;
    let paused = app.store.admissions_paused(&id).await?;
    let issuer = staff.role == Role::Issuer;
    let body = html! {
        section.card {
            h2 { (l.model) " · " span lang="en" dir="ltr" { (l.license_no) } }
            p { a.button href=(format!("/ministry/licenses/{}/dashboard", l.id)) { (fa(m::DASHBOARD)) } }
            table.terms {
                tr { th scope="row" { (fa(m::STATUS)) } td {
                    (l.status.as_str())
                    @if paused { " · " (fa(m::ADMISSIONS_PAUSED)) }
                } }
                tr { th scope="row" { (fa(m::F_MANUFACTURER)) } td { (l.manufacturer) } }
                tr { th scope="row" { (fa(m::F_KIND)) } td { (l.kind.as_str()) } }
                tr { th scope="row" { (fa(m::F_SELECTION)) } td { (l.selection.as_str()) } }
                tr { th scope="row" { (fa(m::ACCEPTED)) } td { (money(l.accepted)) " / " (money(l.units)) } }
                tr { th scope="row" { (fa(m::F_UNIT_PRICE)) } td { (money(l.unit_price)) } }
                tr { th scope="row" { (fa(m::F_DOWN_PAYMENT)) } td { (money(l.down_payment)) } }
                tr { th scope="row" { (fa(m::F_OPENS_AT)) } td { (when(l.opens_at)) } }
                tr { th scope="row" { (fa(m::F_CLOSES_AT)) } td { (when(l.closes_at)) } }
                tr { th scope="row" { (fa(m::F_DELIVERY)) } td { (when(l.delivery_deadline)) } }
                tr { th scope="row" { (fa(m::F_RATE)) } td { (money(l.admission_per_min)) } }
                tr { th scope="row" { (fa(m::F_MAX_ACTIVE)) } td { (money(l.max_active)) } }
                tr { th scope="row" { (fa(m::F_APPLY_WINDOW)) } td { (l.apply_window_secs / 60) } }
                tr { th scope="row" { (fa(m::F_MIN_AGE)) } td { (l.min_age.map(|a| a.to_string()).unwrap_or_else(|| "—".into())) } }
                tr { th scope="row" { (fa(m::F_ROUND)) } td { (l.round.as_deref().unwrap_or("—")) } }
            }
        }
        @if issuer {
            section.card {
                h2 { (fa(m::ACTIONS)) }
                div.actions {
                    @let action = if l.is_active() { "suspend" } else { "resume" };
                    form method="post" action=(format!("/ministry/licenses/{}/{action}", l.id)) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        button.secondary type="submit" {
                            @if l.is_active() { (fa(m::PROPOSE_SUSPEND)) } @else { (fa(m::PROPOSE_RESUME)) }
                        }
                    }
                }
                @if l.is_active() && !l.is_lottery() {
                    h3 { (fa(m::OUTFLOW)) }
                    p.hint { (fa(m::PAUSE_EXPLAINED)) }
                    @let action = if paused { "unpause" } else { "pause" };
                    form method="post" action=(format!("/ministry/licenses/{}/{action}", l.id)) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        button.secondary type="submit" {
                            @if paused { (fa(m::UNPAUSE)) } @else { (fa(m::PAUSE)) }
                        }
                    }
                }
                form method="post" action=(format!("/ministry/licenses/{}/rate", l.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="admission_per_min" { (fa(m::F_RATE)) }
                    input #admission_per_min type="text" name="admission_per_min" inputmode="numeric" value=(l.admission_per_min);
                    button.secondary type="submit" { (fa(m::PROPOSE_RATE)) }
                }
                form method="post" action=(format!("/ministry/licenses/{}/max-active", l.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="max_active" { (fa(m::F_MAX_ACTIVE)) }
                    input #max_active type="text" name="max_active" inputmode="numeric" value=(l.max_active);
                    button.secondary type="submit" { (fa(m::PROPOSE_MAX_ACTIVE)) }
                }
                form method="post" action=(format!("/ministry/licenses/{}/extend", l.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="minutes" { (fa(m::EXTEND_BY)) }
                    input #minutes type="text" name="minutes" inputmode="numeric" aria-describedby="minutes-hint";
                    p.hint #minutes-hint { (fa(m::EXTEND_EXPLAINED)) }
                    button.secondary type="submit" { (fa(m::PROPOSE_EXTEND)) }
                }
            }
        }
        section.card {
            h2 { (fa(m::PROPOSALS)) }
            @if proposals.is_empty() { p { (fa(m::NONE)) } }
            ul.list {
                @for p in &proposals {
                    li {
                        a href=(format!("/ministry/proposals/{}", p.id)) { (p.change.summary()) }
                        " · " (p.proposed_by) " · " (p.outcome.as_deref().unwrap_or("pending"))
                    }
                }
            }
        }
        section.card {
            h2 { (fa(m::SEED)) }
            table.terms {
                @for (p, revealed) in &seed.parties {
                    tr {
                        th scope="row" { (p.party) }
                        td { code.hash { (p.commitment) } }
                        td { @if *revealed { (fa(m::REVEALED)) } @else { (fa(m::NOT_REVEALED)) } }
                    }
                }
            }
            @if let Some((size, root)) = &seed.frozen {
                p { (fa(m::FROZEN_LIST)) " " (size) " · " code.hash { (root) } }
            }
            @if issuer && seed.frozen.is_some() && seed.seed.is_none()
                && seed.parties.iter().any(|(p, revealed)| p.party == crate::store::commitments::MINISTRY && !*revealed) {
                form method="post" action=(format!("/ministry/licenses/{}/reveal", l.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="secret" { (fa(m::F_MINISTRY_SECRET)) }
                    input #secret type="password" name="secret" required autocomplete="off";
                    button type="submit" { (fa(m::REVEAL_MINISTRY)) }
                }
            }
            @if let Some(s) = &seed.seed { p { "seed: " code.hash { (s) } } }
            h3 { (fa(m::SIGNED_HEAD)) }
            @if let Some(n) = &head { pre.note { (n) } } @else { p { (fa(m::NONE)) } }
            p { a href=(format!("/transparency/{}", l.id)) { (fa(m::PUBLIC_LOG)) } }
        }
        section.card {
            h2 { (fa(m::HISTORY)) }
            ol.history {
                @for e in &history {
                    li {
                        (when(e.at)) " · " span lang="en" dir="ltr" { (e.actor) " · " (e.action) }
                        p.detail lang="en" dir="ltr" { (e.detail) }
                    }
                }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::LICENSE, body))
}

/// Records `change` as a proposal by the signed-in issuer; its page is where it is read.
async fn propose(app: &App, staff: &Staff, csrf: &str, change: Change) -> Result<Response, Error> {
    staff.may(Role::Issuer, csrf)?;
    let id = app
        .store
        .propose(&change, &staff.username, service_kit::clock::now())
        .await?
        .map_err(super::proposals::refused)?;
    Ok(Redirect::to(&format!("/ministry/proposals/{id}")).into_response())
}

pub(super) async fn suspend(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Error> {
    propose(&app, &staff, &f.csrf, Change::Suspend { license_id: id }).await
}

pub(super) async fn resume(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Error> {
    propose(&app, &staff, &f.csrf, Change::Resume { license_id: id }).await
}

/// A whole number as people type it; 0 for anything else (the store refuses it with its
/// reason).
fn number(s: &str) -> i64 {
    super::form::whole(s).unwrap_or(0)
}

#[derive(Deserialize)]
pub(super) struct NumberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    max_active: String,
    #[serde(default)]
    minutes: String,
}

pub(super) async fn max_active(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<NumberForm>,
) -> Result<Response, Error> {
    let change = Change::MaxActive {
        license_id: id,
        max_active: number(&f.max_active),
    };
    propose(&app, &staff, &f.csrf, change).await
}

pub(super) async fn extend(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<NumberForm>,
) -> Result<Response, Error> {
    let change = Change::Extend {
        license_id: id,
        minutes: number(&f.minutes),
    };
    propose(&app, &staff, &f.csrf, change).await
}

/// Pauses or resumes admissions at once: one issuer, audited, in the public log (it
/// delays, it decides nothing: see [`crate::store::Store::pause_admissions`]).
async fn set_paused(
    app: &App,
    staff: &Staff,
    id: &str,
    csrf: &str,
    paused: bool,
) -> Result<Response, Error> {
    staff.may(Role::Issuer, csrf)?;
    app.store
        .pause_admissions(id, paused, &staff.username, service_kit::clock::now())
        .await?
        .map_err(super::proposals::refused)?;
    crate::admitter::tick(app).await;
    Ok(Redirect::to(&format!("/ministry/licenses/{id}")).into_response())
}

pub(super) async fn pause(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Error> {
    set_paused(&app, &staff, &id, &f.csrf, true).await
}

pub(super) async fn unpause(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Error> {
    set_paused(&app, &staff, &id, &f.csrf, false).await
}

#[derive(Deserialize)]
pub(super) struct RateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    admission_per_min: String,
}

pub(super) async fn rate(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<RateForm>,
) -> Result<Response, Error> {
    // Anything but a whole number is no rate (the store refuses 0 with its reason).
    let per_min = number(&f.admission_per_min);
    let change = Change::Rate {
        license_id: id,
        admission_per_min: per_min,
    };
    propose(&app, &staff, &f.csrf, change).await
}

#[derive(Deserialize)]
pub(super) struct RevealForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
}

/// An issuer reveals the ministry's secret for a campaign whose list is frozen, and a
/// manufacturer's representative its manufacturer's (each the channel its party's
/// commitment came through; audited under their name).
pub(super) async fn reveal(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<RevealForm>,
) -> Result<Response, Error> {
    use crate::error::msg;
    use crate::store::seeds::Revealed;
    let (party, back) = match staff.role {
        Role::Issuer => {
            staff.may(Role::Issuer, &f.csrf)?;
            (
                crate::store::commitments::MINISTRY.to_owned(),
                format!("/ministry/licenses/{id}"),
            )
        }
        Role::Representative => {
            staff.may(Role::Representative, &f.csrf)?;
            let l = app
                .store
                .license(&id)
                .await?
                .ok_or(Error::not_found(m::NO_LICENSE))?;
            staff.sees(&l.manufacturer)?;
            (l.manufacturer, format!("/ministry/licenses/{id}/dashboard"))
        }
        _ => return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE)),
    };
    let secret = f.secret.trim();
    if !crate::transparency::seed::valid_secret(secret) {
        return Err(Error::user(StatusCode::BAD_REQUEST, msg::BAD_FORM));
    }
    let refused = |status, text| Err(Error::user(status, text));
    match app
        .store
        .reveal(&id, &party, secret, &staff.username)
        .await?
    {
        Revealed::Accepted { .. } | Revealed::Already => Ok(Redirect::to(&back).into_response()),
        Revealed::TooEarly => refused(StatusCode::CONFLICT, msg::REVEAL_TOO_EARLY),
        Revealed::TooLate => refused(StatusCode::CONFLICT, msg::REVEAL_TOO_LATE),
        Revealed::UnknownParty => refused(StatusCode::NOT_FOUND, msg::REVEAL_UNKNOWN_PARTY),
        Revealed::Mismatch => refused(StatusCode::UNPROCESSABLE_ENTITY, msg::REVEAL_MISMATCH),
    }
}
