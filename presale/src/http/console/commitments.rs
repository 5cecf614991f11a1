//! The seed commitments received for licenses to come, and where a member of staff enters
//! the ministry's (made with `presale commit ministry` on their own computer: the secret
//! never reaches the service). The manufacturer's arrive through its own channel
//! (`POST /api/seed-commitments`, see [`crate::http::api`]), or are pasted here by its
//! representative, on a page bound to that manufacturer (it lists and enters that
//! manufacturer's only). The page shows which party committed, when, through what and by
//! whom.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use service_kit::Text;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::store::commitments::{CommitmentError, Via, MINISTRY};
use crate::store::staff::Role;

/// What to say about a commitment refused, or a license's parties not accepted.
pub(super) fn text(e: &CommitmentError) -> Text {
    match e {
        CommitmentError::Malformed => m::E_COMMITMENT_FORMAT,
        CommitmentError::Exists => m::E_COMMITMENT_EXISTS,
        CommitmentError::NoManufacturer => m::E_NO_MAKER_COMMITMENT,
        CommitmentError::NoMinistry => m::E_NO_MINISTRY_COMMITMENT,
        CommitmentError::Mismatch => m::E_COMMITMENT_MISMATCH,
        CommitmentError::Dependent => m::E_COMMITMENT_DEPENDENT,
    }
}

/// The party a member enters commitments for: the ministry for an issuer, its manufacturer
/// for a representative, nobody else.
fn party_of(staff: &Staff) -> Option<&str> {
    match staff.role {
        Role::Issuer => Some(MINISTRY),
        Role::Representative => staff.manufacturer.as_deref(),
        _ => None,
    }
}

pub(super) async fn list(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    let received = match (staff.role, staff.manufacturer.as_deref()) {
        (Role::Representative, Some(maker)) => app.store.recent_commitments_of(maker, 200).await?,
        (Role::Representative, None) => Vec::new(),
        _ => app.store.recent_commitments(200).await?,
    };
    let (heading, explained) = if staff.role == Role::Representative {
        (m::ENTER_MAKER_COMMITMENT, m::MAKER_COMMITMENT_EXPLAINED)
    } else {
        (m::ENTER_COMMITMENT, m::MINISTRY_COMMITMENT_EXPLAINED)
    };
    let body = html! {
        @if let Some(party) = party_of(&staff) {
            section.card {
                h2 { (fa(heading)) " · " span lang="en" dir="ltr" { (party) } }
                p { (fa(explained)) }
                form method="post" action="/ministry/commitments" {
                    input type="hidden" name="csrf" value=(staff.csrf);
                    label for="license_no" { (fa(m::F_LICENSE_NO)) }
                    input #license_no type="text" name="license_no" required;
                    label for="commitment" { (fa(m::F_COMMITMENT)) }                    input #commitment type="text" name="commitment" required autocomplete="off";
                    button type="submit" { (fa(heading)) }
                }
            }
        }
        section.card {
            h2 { (fa(m::SEED_COMMITMENTS)) }
            @if received.is_empty() { p { (fa(m::NONE)) } }
            ul.cards {
                @for c in &received {
                    li {
                        strong lang="en" dir="ltr" { (c.license_no) " · " (c.party) }
                        dl {
                            dt { (fa(m::F_COMMITMENT)) } dd { code.hash { (c.commitment) } }
                            dt { "via" } dd lang="en" dir="ltr" {
                                @match c.via {
                                    Via::IdpClient => "the manufacturer's credentials at emta (client_credentials, checked at the IdP)",                                    Via::Console if c.party == MINISTRY => "the console (an issuer)",
                                    Via::Console => "the console (the manufacturer's representative)",
                                    Via::Observer => "a statement signed with the observer's registered key",
                                }
                            }
                            dt { (fa(m::COMMITTED_BY)) } dd lang="en" dir="ltr" { (c.made_by) }
                            dt { (fa(m::ADDED)) } dd { (when(c.made_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::SEED_COMMITMENTS, body))
}

#[derive(Deserialize)]
pub(super) struct EnterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    license_no: String,
    #[serde(default)]
    commitment: String,
}

pub(super) async fn enter(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<EnterForm>,
) -> Result<Response, Error> {
    staff.form(&f.csrf)?;
    let party = party_of(&staff).ok_or(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE))?;
    app.store
        .record_commitment(
            f.license_no.trim(),
            party,
            f.commitment.trim(),
            Via::Console,
            &staff.username,
            service_kit::clock::now(),
        )
        .await?
        .map_err(|e| match e {
            CommitmentError::Exists => Error::conflict(text(&e)),
            e => Error::user(StatusCode::UNPROCESSABLE_ENTITY, text(&e)),
        })?;
    Ok(Redirect::to("/ministry/commitments").into_response())
}
