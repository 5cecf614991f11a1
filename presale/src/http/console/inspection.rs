//! Complaints and inspection at the console (issue 34):
//! - a manufacturer's representative reads its complaints (with their attachments) and
//!   answers them;
//! - inspectors, issuers and auditors read every complaint; an inspector decides one that
//!   has reached the ministry (upheld or dismissed), opens a case (from a complaint or on
//!   their own), records findings, and proposes a suspension, a resumption or a rating that
//!   a second member (an issuer or another inspector) approves on the proposal's page;
//! - the manufacturers' after-sale record (the demerits that withhold stars at the IdP).
//!
//! Administrators manage accounts and read none of this.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::domain::proposals::{Change, MakerStanding};
use crate::domain::redress::{Level, Outcome};
use crate::error::msg::console as m;
use crate::error::Error;
use crate::store::redress::{CaseError, Complaint};
use crate::store::staff::Role;

/// Complaints are read by a representative (its own manufacturer's) and by the
/// ministry's inspectors, issuers and auditors; never by an administrator.
fn reads_complaints(staff: &Staff) -> Result<(), Error> {
    match staff.role {
        Role::Administrator => Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE)),
        _ => Ok(()),
    }
}

fn case_refused(e: CaseError) -> Error {
    match e {
        CaseError::NotInspector => Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE),
        CaseError::NoCase => Error::not_found(m::NO_CASE),
        CaseError::NoComplaint | CaseError::NoManufacturer => {
            Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_NO_MAKER)
        }
        CaseError::Text => Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_TEXT),
    }
}

fn outcome_text(o: Outcome) -> service_kit::Text {
    use service_kit::t;
    match o {
        Outcome::Upheld => t!("وارد دانسته شد", "upheld"),
        Outcome::Dismissed => t!("رد شد", "dismissed"),
        Outcome::Accepted => t!("خریدار پاسخ را پذیرفت", "the buyer accepted the answer"),
    }
}

fn complaint_refused(e: crate::store::redress::ComplaintError) -> Error {
    use crate::store::redress::ComplaintError as E;
    match e {
        E::NotAnswered => Error::conflict(m::E_COMPLAINT_NOT_YET),
        E::NoApplication | E::NoComplaint => Error::not_found(m::NO_COMPLAINT),
        other => crate::http::complaints::refused(other),
    }
}

/// The complaint, if this member may read it (404 otherwise: another manufacturer's
/// complaint does not exist for a representative).
async fn readable(app: &App, staff: &Staff, id: &str) -> Result<Complaint, Error> {
    reads_complaints(staff)?;
    let c = app
        .store
        .complaint(id)
        .await?
        .ok_or(Error::not_found(m::NO_COMPLAINT))?;
    if staff.role == Role::Representative && staff.manufacturer.as_deref() != Some(&c.manufacturer)
    {
        return Err(Error::not_found(m::NO_COMPLAINT));
    }
    Ok(c)
}

pub(super) async fn complaints(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    reads_complaints(&staff)?;
    let list = match staff.role {
        Role::Representative => {
            let maker = staff.manufacturer.clone().unwrap_or_default();
            app.store.complaints(Some(&maker)).await?
        }
        _ => app.store.complaints(None).await?,
    };
    let now = service_kit::clock::now();
    let record = if staff.role == Role::Representative {
        None
    } else {
        Some(app.store.demerits(now).await?)
    };
    Ok(page(
        &staff,
        StatusCode::OK,
        m::COMPLAINTS,
        html! {
            @if let Some(record) = &record {
                h2 { (fa(m::RECORD)) }
                table.terms.record {
                    tr { th { (fa(m::F_MANUFACTURER)) } th { (fa(m::OVERDUE_DELIVERIES)) } th { (fa(m::UNANSWERED)) } th { (fa(m::UPHELD)) } th { (fa(m::WARRANTY_DUE)) } th { (fa(m::WITHHELD)) } }
                    @for (maker, d) in record.iter().collect::<std::collections::BTreeMap<_, _>>() {
                        tr data-record=(maker) data-withheld=(d.withheld()) {
                            td { (maker) } td { (d.overdue) } td { (d.unanswered) } td { (d.upheld) } td { (d.warranty) } td { (d.withheld()) }
                        }
                    }
                }
            }
            h2 { (fa(m::COMPLAINTS)) }
            table.terms.complaints {
                tr { th { (fa(m::COMPLAINTS)) } th { (fa(m::F_MANUFACTURER)) } th { (fa(m::TRACKING)) } th { (fa(m::ABOUT)) } th { (fa(m::FILED)) } th { (fa(m::NOW_WITH)) } }
                @for c in &list {
                    @let level = c.level(now);
                    tr data-complaint=(c.id) data-level=(level.as_str()) {
                        td { a href=(format!("/ministry/complaints/{}", c.id)) { (c.id) } }
                        td { (c.manufacturer) } td { (c.tracking_code) }
                        td { (fa(c.kind.text())) } td { (when(c.filed_at)) } td { (fa(level.text())) }
                    }
                }
            }
        },
    ))
}

pub(super) async fn complaint(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let c = readable(&app, &staff, &id).await?;
    let now = service_kit::clock::now();
    let level = c.level(now);
    let rep_answers =
        staff.role == Role::Representative && c.answer.is_none() && c.outcome.is_none();
    let inspector = staff.role == Role::Inspector;
    // An inspector proposes a decision (or confirms another's); an issuer only confirms.
    let decides = !matches!(level, Level::Manufacturer | Level::Closed)
        && (inspector || (staff.role == Role::Issuer && c.proposed.is_some()));
    Ok(page(
        &staff,
        StatusCode::OK,
        m::COMPLAINTS,
        html! {
            dl.complaint data-complaint=(c.id) data-level=(level.as_str()) {
                dt { (fa(m::F_MANUFACTURER)) } dd { span lang="en" dir="ltr" { (c.manufacturer) } }
                dt { (fa(m::TRACKING)) } dd { (c.tracking_code) }
                dt { (fa(m::ABOUT)) } dd { (fa(c.kind.text())) }
                dt { (fa(m::FILED)) } dd { (when(c.filed_at)) }
                dt { (fa(m::ANSWER_DUE)) } dd { (when(c.answer_due)) }
                dt { (fa(m::NOW_WITH)) } dd { (fa(level.text())) }
                @if c.ageing().unanswered_late(now) { dt {} dd.error { (fa(m::UNANSWERED_LATE)) } }
                @if let Some(o) = c.outcome { dt { (fa(m::OUTCOME)) } dd data-outcome=(o.as_str()) { (fa(outcome_text(o))) " · " span lang="en" dir="ltr" { (c.decided_by.as_deref().unwrap_or("")) } } }
            }
            p.body { (c.body) }
            @if !c.files.is_empty() {
                ul { @for f in &c.files {
                    li { a href=(format!("/ministry/complaints/{}/files/{}", c.id, f.sha256)) { (f.name) } " (" (f.kind.mime()) ", " (f.size) " B)" }
                } }
            }
            @if let Some(a) = &c.answer { h2 { (fa(m::ANSWER)) } p.answer { (a) } }
            @if rep_answers {
                form method="post" action=(format!("/ministry/complaints/{}/answer", c.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="answer" { (fa(m::ANSWER)) }
                    textarea #answer name="answer" required maxlength="4000" rows="5" {}
                    button type="submit" { (fa(m::SEND_ANSWER)) }
                }
            }
            @if let (Some((o, by)), None) = (&c.proposed, c.outcome) {
                p data-proposed=(o.as_str()) { (fa(m::PROPOSED_DECISION)) ": " (fa(outcome_text(*o))) " · " span lang="en" dir="ltr" { (by) } }
            }
            @if decides {
                form method="post" action=(format!("/ministry/complaints/{}/decide", c.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    @if inspector || c.proposed.as_ref().is_some_and(|(o, _)| *o == Outcome::Upheld) {
                        button type="submit" name="outcome" value="upheld" { (fa(m::UPHOLD)) }
                    }
                    @if inspector || c.proposed.as_ref().is_some_and(|(o, _)| *o == Outcome::Dismissed) {
                        button.secondary type="submit" name="outcome" value="dismissed" { (fa(m::DISMISS)) }
                    }
                }
            }
            @if inspector {
                form method="post" action="/ministry/cases" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    input type="hidden" name="manufacturer" value=(c.manufacturer);
                    input type="hidden" name="complaint" value=(c.id);
                    label for="summary" { (fa(m::OPEN_CASE)) }
                    textarea #summary name="summary" required maxlength="4000" rows="3" {}
                    button type="submit" { (fa(m::OPEN_CASE)) }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    answer: String,
}

pub(super) async fn answer(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<AnswerForm>,
) -> Result<Response, Error> {
    staff.may(Role::Representative, &f.csrf)?;
    let maker = staff
        .manufacturer
        .clone()
        .ok_or(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE))?;
    app.store
        .answer_complaint(
            &maker,
            &id,
            &f.answer,
            &staff.username,
            service_kit::clock::now(),
        )
        .await?
        .map_err(complaint_refused)?;
    Ok(Redirect::to(&format!("/ministry/complaints/{id}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    outcome: String,
}

pub(super) async fn decide(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Result<Response, Error> {
    staff.form(&f.csrf)?;
    if !matches!(staff.role, Role::Inspector | Role::Issuer) {
        return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE));
    }
    let outcome = match Outcome::parse(&f.outcome) {
        Some(o @ (Outcome::Upheld | Outcome::Dismissed)) => o,
        _ => return Err(Error::BadForm),
    };
    app.store
        .decide_complaint(&id, outcome, &staff.username, service_kit::clock::now())
        .await?
        .map_err(complaint_refused)?;
    Ok(Redirect::to(&format!("/ministry/complaints/{id}")).into_response())
}

pub(super) async fn complaint_file(
    State(app): State<App>,
    staff: Staff,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Response, Error> {
    let c = readable(&app, &staff, &id).await?;
    let f = c
        .files
        .iter()
        .find(|f| f.sha256 == sha)
        .ok_or(Error::not_found(m::NO_COMPLAINT))?;
    crate::http::complaints::serve_file(&app, f).await
}

fn ministry_reads(staff: &Staff) -> Result<(), Error> {
    match staff.role {
        Role::Inspector | Role::Issuer | Role::Auditor => Ok(()),
        _ => Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE)),
    }
}

pub(super) async fn cases(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    ministry_reads(&staff)?;
    let list = app.store.cases().await?;
    Ok(page(
        &staff,
        StatusCode::OK,
        m::CASES,
        html! {
            table.terms.cases {
                tr { th { (fa(m::CASE)) } th { (fa(m::F_MANUFACTURER)) } th { (fa(m::OPENED)) } th { (fa(m::BY)) } th { (fa(m::FINDINGS)) } }
                @for c in &list {
                    tr data-case=(c.id) {
                        td { a href=(format!("/ministry/cases/{}", c.id)) { (c.id) } }
                        td { (c.manufacturer) } td { (when(c.opened_at)) } td { (c.opened_by) } td { (c.findings.len()) }
                    }
                }
            }
            @if staff.role == Role::Inspector {
                h2 { (fa(m::OPEN_CASE)) }
                form method="post" action="/ministry/cases" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="manufacturer" { (fa(m::F_MANUFACTURER)) }
                    input #manufacturer name="manufacturer" required dir="ltr";
                    label for="summary" { (fa(m::OPEN_CASE)) }
                    textarea #summary name="summary" required maxlength="4000" rows="3" {}
                    button type="submit" { (fa(m::OPEN_CASE)) }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub(super) struct CaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    manufacturer: String,
    #[serde(default)]
    complaint: String,
    #[serde(default)]
    summary: String,
}

pub(super) async fn open_case(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<CaseForm>,
) -> Result<Response, Error> {
    staff.may(Role::Inspector, &f.csrf)?;
    let complaint = Some(f.complaint.trim()).filter(|c| !c.is_empty());
    let id = app
        .store
        .open_case(
            f.manufacturer.trim(),
            complaint,
            &f.summary,
            &staff.username,
            service_kit::clock::now(),
        )
        .await?
        .map_err(case_refused)?;
    Ok(Redirect::to(&format!("/ministry/cases/{id}")).into_response())
}

pub(super) async fn case(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    ministry_reads(&staff)?;
    let c = app
        .store
        .case(&id)
        .await?
        .ok_or(Error::not_found(m::NO_CASE))?;
    let now = service_kit::clock::now();
    let suspended = app.store.maker_suspended(&c.manufacturer).await?;
    let at_idp = app.store.standing_at_idp(&c.manufacturer).await?;
    let record = app.store.demerits_for(&c.manufacturer, now).await?;
    let proposals: Vec<_> = app
        .store
        .pending_proposals(now)
        .await?
        .into_iter()
        .filter(|p| matches!(&p.change, Change::Maker { case_id, .. } if *case_id == c.id))
        .collect();
    let inspector = staff.role == Role::Inspector;
    Ok(page(
        &staff,
        StatusCode::OK,
        m::CASE,
        html! {
            dl.case data-case=(c.id) data-suspended=(suspended) {
                dt { (fa(m::F_MANUFACTURER)) } dd { span lang="en" dir="ltr" { (c.manufacturer) } }
                dt { (fa(m::OPENED)) } dd { (when(c.opened_at)) " · " span lang="en" dir="ltr" { (c.opened_by) } }
                @if let Some(cp) = &c.complaint_id { dt { (fa(m::COMPLAINTS)) } dd { a href=(format!("/ministry/complaints/{cp}")) { (cp) } } }
                dt { (fa(m::STANDING)) } dd data-standing=(if suspended { "suspended" } else { "active" }) { (fa(if suspended { m::SUSPENDED } else { m::ACTIVE })) }
                dt { (fa(m::OVERDUE_DELIVERIES)) } dd { (record.overdue) }
                dt { (fa(m::UNANSWERED)) } dd { (record.unanswered) }
                dt { (fa(m::UPHELD)) } dd { (record.upheld) }
                dt { (fa(m::WARRANTY_DUE)) } dd { (record.warranty) }
                dt { (fa(m::WITHHELD)) } dd data-withheld=(record.withheld()) { (record.withheld()) }
            }
            @match &at_idp {
                Some(None) => p.error data-at-idp="pending" { (fa(m::AT_IDP_PENDING)) },
                Some(Some(why)) => p.error data-at-idp="refused" { (fa(m::AT_IDP_REFUSED)) " " span lang="en" dir="ltr" { (why) } },
                None => {}
            }
            p.summary { (c.summary) }
            h2 { (fa(m::FINDINGS)) }
            ol.findings { @for (at, by, text) in &c.findings { li { (when(*at)) " · " span lang="en" dir="ltr" { (by) } p { (text) } } } }
            @if inspector {
                form method="post" action=(format!("/ministry/cases/{}/findings", c.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="finding" { (fa(m::ADD_FINDING)) }
                    textarea #finding name="finding" required maxlength="4000" rows="3" {}
                    button type="submit" { (fa(m::ADD_FINDING)) }
                }
                div.actions {
                    form method="post" action=(format!("/ministry/cases/{}/propose", c.id)) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        @if suspended {
                            button type="submit" name="what" value="resume" { (fa(m::PROPOSE_MAKER_RESUME)) }
                        } @else {
                            button.danger type="submit" name="what" value="suspend" { (fa(m::PROPOSE_MAKER_SUSPEND)) }
                        }
                    }
                    form method="post" action=(format!("/ministry/cases/{}/propose", c.id)) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        input type="hidden" name="what" value="rate";
                        label for="stars" { (fa(m::PROPOSE_MAKER_RATE)) }
                        input #stars name="stars" type="number" min="1" max="5" required;
                        button.secondary type="submit" { (fa(m::PROPOSE_MAKER_RATE)) }
                    }
                }
            }
            @if !proposals.is_empty() {
                h2 { (fa(m::PROPOSAL)) }
                ul { @for p in &proposals { li { a href=(format!("/ministry/proposals/{}", p.id)) { (p.change.summary()) } " · " (p.proposed_by) } } }
            }
        },
    ))
}

#[derive(Deserialize)]
pub(super) struct FindingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    finding: String,
}

pub(super) async fn finding(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<FindingForm>,
) -> Result<Response, Error> {
    staff.may(Role::Inspector, &f.csrf)?;
    app.store
        .add_finding(&id, &f.finding, &staff.username, service_kit::clock::now())
        .await?
        .map_err(case_refused)?;
    Ok(Redirect::to(&format!("/ministry/cases/{id}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct ProposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    what: String,
    #[serde(default)]
    stars: String,
}

pub(super) async fn propose(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<ProposeForm>,
) -> Result<Response, Error> {
    staff.may(Role::Inspector, &f.csrf)?;
    // A standing nobody could carry to the IdP is not proposed.
    if app.ministry.is_none() {
        return Err(Error::user(
            StatusCode::SERVICE_UNAVAILABLE,
            m::E_NO_CHANNEL,
        ));
    }
    let c = app
        .store
        .case(&id)
        .await?
        .ok_or(Error::not_found(m::NO_CASE))?;
    let standing = match f.what.as_str() {
        "suspend" => MakerStanding::Suspend,
        "resume" => MakerStanding::Resume,
        "rate" => MakerStanding::Rate {
            stars: f
                .stars
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or(Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_RATE))?,
        },
        _ => return Err(Error::BadForm),
    };
    let change = Change::Maker {
        manufacturer: c.manufacturer.clone(),
        case_id: c.id.clone(),
        standing,
    };
    let pid = app
        .store
        .propose(&change, &staff.username, service_kit::clock::now())
        .await?
        .map_err(super::proposals::refused)?;
    Ok(Redirect::to(&format!("/ministry/proposals/{pid}")).into_response())
}
