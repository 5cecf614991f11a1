//! Four-eyes: a proposal's own page shows every term of what would change (for a change to
//! a license, the terms in force beside the proposed ones) and the digest of exactly that
//! payload, which the proposal's audit entry pins. The approve form carries the digest the
//! approver was shown; the store carries the change out only if the payload still has it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::domain::after_sale::CreditPolicy;
use crate::domain::{License, LicenseError, NewLicense};
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::proposals::{Change, Decision, Outcome, Proposal, ProposalError};
use crate::store::staff::Role;

/// A proposal's or a decision's refusal, in both languages.
pub(super) fn refused(e: ProposalError) -> Error {
    match e {
        ProposalError::License(LicenseError::Exists) => Error::conflict(m::E_LICENSE_EXISTS),
        ProposalError::License(e) => Error::user(
            StatusCode::UNPROCESSABLE_ENTITY,
            super::form::field_of(&e).1,
        ),
        ProposalError::OwnProposal => Error::user(StatusCode::FORBIDDEN, m::OWN_PROPOSAL),
        ProposalError::NotIssuer | ProposalError::NotInspector => {
            Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE)
        }
        ProposalError::NoCase => Error::not_found(m::NO_CASE),
        ProposalError::MakerSuspended => Error::conflict(m::E_MAKER_SUSPENDED),
        ProposalError::NotFound | ProposalError::NoLicense => Error::not_found(m::NO_PROPOSAL),
        ProposalError::Expired => Error::conflict(m::PROPOSAL_EXPIRED),
        ProposalError::Unchanged => Error::conflict(m::UNCHANGED),
        ProposalError::Duplicate => Error::conflict(m::DUPLICATE),
        ProposalError::Rate => Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_RATE),
        ProposalError::Changed => Error::conflict(m::PROPOSAL_CHANGED),
        ProposalError::SamePerson => Error::user(StatusCode::FORBIDDEN, m::SAME_PERSON),
        ProposalError::Commitments(e) => Error::user(
            StatusCode::UNPROCESSABLE_ENTITY,
            super::commitments::text(&e),
        ),
        ProposalError::Credit(c) => super::deliveries::credit_refused(c),
        ProposalError::NoRating => Error::user(StatusCode::CONFLICT, m::E_NO_RATING),
    }
}

/// One row of terms: its label, and the value in force (for a change) and the proposed one.
fn row(label: service_kit::Text, now: Option<Markup>, proposed: Markup) -> Markup {
    let changed = now.as_ref().is_some_and(|n| n.0 != proposed.0);
    html! {
        tr.changed[changed] {
            th scope="row" { (fa(label)) }
            @if let Some(n) = now { td { (n) } }
            td { (proposed) }
        }
    }
}

fn text(s: impl std::fmt::Display) -> Markup {
    html! { (s) }
}

/// Every term of a license to be issued.
pub(super) fn terms(l: &NewLicense) -> Markup {
    let delay = l
        .seed_delay
        .unwrap_or(crate::domain::SeedDelay::RECOMMENDED);
    html! {
        table.terms {
            (row(m::F_LICENSE_NO, None, text(&l.license_no)))
            (row(m::F_MANUFACTURER, None, text(&l.manufacturer)))
            (row(m::F_MODEL, None, text(&l.model)))
            (row(m::F_KIND, None, text(l.kind.as_str())))
            (row(m::F_SELECTION, None, text(l.selection.as_str())))
            (row(m::F_UNITS, None, text(money(l.units))))
            (row(m::F_UNIT_PRICE, None, text(money(l.unit_price))))
            (row(m::F_DOWN_PAYMENT, None, text(money(l.down_payment))))
            (row(m::F_OPENS_AT, None, when(l.opens_at)))
            (row(m::F_CLOSES_AT, None, when(l.closes_at)))
            (row(m::F_DELIVERY, None, when(l.delivery_deadline)))
            (row(m::F_RATE, None, text(money(l.admission_per_min))))
            (row(m::F_MAX_ACTIVE, None, text(money(l.max_active))))
            (row(m::F_APPLY_WINDOW, None, text(l.apply_window_secs / 60)))
            (row(m::F_MIN_AGE, None, text(l.min_age.map(|a| a.to_string()).unwrap_or_else(|| "—".into()))))
            (row(m::F_ROUND, None, text(l.round.as_deref().unwrap_or("—"))))
            (row(m::F_EXCLUSION_MONTHS, None, text(l.exclusion.as_ref().map(|e| format!("{} ({})", e.months, e.manufacturers.join(", "))).unwrap_or_else(|| "—".into()))))
            (row(m::F_DRIVING_LICENCE, None, text(if l.registration.as_ref().is_some_and(|r| r.driving_licence) { "✓" } else { "—" })))
            (row(m::F_VEHICLE_MONTHS, None, text(l.registration.as_ref().and_then(|r| r.no_vehicle_months).map(|n| n.to_string()).unwrap_or_else(|| "—".into()))))
            @for p in &l.parties {
                (row(m::SEED_PARTY, None, html! { (p.party) ": " code { (p.commitment) } }))
            }
            (row(m::F_SEED_REVEAL, None, text(delay.reveal_secs)))
            (row(m::F_SEED_STEPS, None, text(delay.iterations)))
        }
    }
}

/// A change to a license: the terms it touches, in force and proposed.
fn diff(change: &Change, l: Option<&License>) -> Markup {
    let status = |active: bool| if active { "active" } else { "suspended" };
    html! {
        @if let Some(l) = l {
            table.terms {
                tr { th {} th scope="col" { (fa(m::IN_FORCE)) } th scope="col" { (fa(m::PROPOSED)) } }
                (row(m::F_LICENSE_NO, Some(text(&l.license_no)), text(&l.license_no)))
                (row(m::F_MODEL, Some(text(&l.model)), text(&l.model)))
                @match change {
                    Change::Suspend { .. } => (row(m::STATUS, Some(text(l.status.as_str())), text(status(false)))),
                    Change::Resume { .. } => (row(m::STATUS, Some(text(l.status.as_str())), text(status(true)))),
                    Change::Rate { admission_per_min, .. } => (row(m::F_RATE, Some(text(money(l.admission_per_min))), text(money(*admission_per_min)))),
                    Change::MaxActive { max_active, .. } => (row(m::F_MAX_ACTIVE, Some(text(money(l.max_active))), text(money(*max_active)))),
                    Change::Extend { minutes, .. } => (row(m::EXTEND_BY, Some(text(0)), text(minutes))),
                    Change::Issue { .. } | Change::Maker { .. } => {}
                }
            }
        } @else {
            p.error { (fa(m::NO_PROPOSAL)) }
        }
    }
}

pub(super) async fn show(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let p = app
        .store
        .proposal(&id)
        .await?
        .ok_or(Error::not_found(m::NO_PROPOSAL))?;
    let license = match p.change.license_id() {
        Some(lid) => app.store.license(lid).await?,
        None => None,
    };
    Ok(page(
        &staff,
        StatusCode::OK,
        m::PROPOSAL,
        body(&staff, &p, license.as_ref()),
    ))
}

fn body(staff: &Staff, p: &Proposal, license: Option<&License>) -> Markup {
    let mine = p.proposed_by == staff.username;
    html! {
        p { (p.change.summary()) }
        p { (fa(m::PROPOSED_BY)) " " span lang="en" dir="ltr" { (p.proposed_by) } " · " (when(p.proposed_at)) }
        @match &p.change {
            Change::Issue { license } => (terms(license)),
            Change::Maker { case_id, .. } => {
                p { a href=(format!("/ministry/cases/{case_id}")) { (fa(m::CASE)) " " (case_id) } }
            }
            other => (diff(other, license)),
        }
        p { (fa(m::DIGEST)) " " code.hash { (p.digest) } }
        @if let Some(outcome) = &p.outcome {
            p { (fa(m::DECIDED)) " " (outcome) " · " (p.decided_by.as_deref().unwrap_or("")) }
        } @else if staff.role == Role::Issuer
            || (p.change.by_inspector() && staff.role == Role::Inspector)
        {
            div.actions {
                @if !mine {
                    form method="post" action=(format!("/ministry/proposals/{}/approve", p.id)) {
                        input type="hidden" name="csrf" value=(staff.csrf);
                        input type="hidden" name="digest" value=(p.digest);
                        button type="submit" { (fa(m::APPROVE)) }
                    }
                }
                form method="post" action=(format!("/ministry/proposals/{}/reject", p.id)) {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    button.secondary type="submit" {
                        @if mine { (fa(m::WITHDRAW)) } @else { (fa(m::REJECT)) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    /// The digest of the payload the approver was shown.
    #[serde(default)]
    digest: String,
}

async fn decide(
    app: App,
    staff: Staff,
    id: String,
    f: DecisionForm,
    d: Decision,
) -> Result<Response, Error> {
    staff.form(&f.csrf)?;
    let change = app.store.proposal(&id).await?.map(|p| p.change);
    // An inspection's proposal is decided by an issuer or an inspector; every other by
    // an issuer (the store checks again, on the record, in the decision's transaction).
    if !(staff.role == Role::Issuer
        || (staff.role == Role::Inspector && change.as_ref().is_some_and(Change::by_inspector)))
    {
        return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE));
    }
    // An approval names what it approves; a rejection needs no digest.
    let seen = match d {
        Decision::Approve => Some(f.digest.as_str()),
        Decision::Reject => None,
    };
    // The credit ceiling (issue 34) needs the manufacturers' ratings as the IdP gives
    // them now; without a ceiling configured, only the overdue rule applies.
    // Only an issue's approval needs it: a suspension is approved whatever the IdP says.
    let issuing = matches!(change, Some(Change::Issue { .. }));
    let credit = match d {
        Decision::Approve if issuing && !app.credit_ceilings.is_empty() => {
            Some(credit_policy(&app).await?)
        }
        _ => None,
    };
    let outcome = app
        .store
        .decide_with(
            &id,
            &staff.username,
            d,
            seen,
            credit.as_ref(),
            service_kit::clock::now(),
        )
        .await?
        .map_err(refused)?;
    if let (Outcome::Done { .. }, Some(Change::Maker { case_id, .. })) = (&outcome, &change) {
        // Carried out at the IdP now; if it cannot be reached, the standing pass tries
        // again until it is (the decision is recorded here).
        crate::standing::push(&app).await;
        crate::admitter::tick(&app).await;
        return Ok(Redirect::to(&format!("/ministry/cases/{case_id}")).into_response());
    }
    if let Outcome::Done { license_id } = &outcome {
        // Suspension, resumption and a new rate hold from this tick on.
        crate::admitter::tick(&app).await;
        return Ok(Redirect::to(&format!("/ministry/licenses/{license_id}")).into_response());
    }
    Ok(Redirect::to("/ministry").into_response())
}

/// The ministry's ceilings with every listed manufacturer's rating, read from the IdP.
async fn credit_policy(app: &App) -> Result<CreditPolicy, Error> {
    let Some(ministry) = &app.ministry else {
        return Err(Error::user(StatusCode::CONFLICT, m::E_NO_RATING));
    };
    let list = ministry.manufacturers_now().await.map_err(|e| {
        tracing::warn!(error = %e, "the IdP's manufacturer list, for a credit ceiling");
        Error::Busy { retry_after: 5 }
    })?;
    Ok(CreditPolicy {
        ceilings: app.credit_ceilings.clone(),
        stars: list.into_iter().map(|m| (m.id, m.stars)).collect(),
    })
}

pub(super) async fn approve(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Result<Response, Error> {
    decide(app, staff, id, f, Decision::Approve).await
}

pub(super) async fn reject(
    State(app): State<App>,
    staff: Staff,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Result<Response, Error> {
    decide(app, staff, id, f, Decision::Reject).await
}
