//! The console's first page: what waits for a second issuer, and every license as a card
//! that leads to its own page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::staff::Role;

pub(super) async fn show(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    if staff.role == Role::Representative {
        return representative(&app, &staff).await;
    }
    let licenses = app.store.licenses().await?;
    let proposals = app
        .store
        .pending_proposals(service_kit::clock::now())
        .await?;
    let body = html! {
        section.card {
            h2 { (fa(m::WAITING_FOR_SECOND)) }
            @if proposals.is_empty() { p { (fa(m::NONE)) } }
            ul.list {
                @for p in &proposals {
                    li.proposal {
                        a href=(format!("/ministry/proposals/{}", p.id)) { (p.change.summary()) }
                        br;
                        small { (fa(m::PROPOSED_BY)) " " span lang="en" dir="ltr" { (p.proposed_by) } " · " (when(p.proposed_at)) }
                        @if staff.role == Role::Issuer && p.proposed_by != staff.username {
                            " " a.button href=(format!("/ministry/proposals/{}", p.id)) { (fa(m::REVIEW)) }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { (fa(m::LICENSES)) }
            @if licenses.is_empty() { p { (fa(m::NONE)) } }
            ul.cards {
                @for l in &licenses {
                    li {
                        a href=(format!("/ministry/licenses/{}", l.id)) {
                            strong { (l.model) } " · " span lang="en" dir="ltr" { (l.license_no) }
                        }
                        dl {
                            dt { (fa(m::F_MANUFACTURER)) } dd { (l.manufacturer) }
                            dt { (fa(m::STATUS)) } dd { (l.status.as_str()) }
                            dt { (fa(m::ACCEPTED)) } dd { (money(l.accepted)) " / " (money(l.units)) }
                            dt { (fa(m::F_RATE)) } dd { (money(l.admission_per_min)) }
                            dt { (fa(m::F_OPENS_AT)) } dd { (when(l.opens_at)) }
                        }
                        a href=(format!("/ministry/licenses/{}/dashboard", l.id)) { (fa(m::DASHBOARD)) }
                    }
                }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::CONSOLE, body))
}

/// A representative's first page: its manufacturer's campaigns, each with its dashboard,
/// and where to enter the manufacturer's seed commitment.
async fn representative(app: &App, staff: &Staff) -> Result<Response, Error> {
    let mine = staff.manufacturer.as_deref().unwrap_or_default();
    let licenses: Vec<_> = app
        .store
        .licenses()
        .await?
        .into_iter()
        .filter(|l| l.manufacturer == mine)
        .collect();
    let body = html! {
        section.card {
            h2 { (fa(m::YOUR_CAMPAIGNS)) " · " span lang="en" dir="ltr" { (mine) } }
            @if licenses.is_empty() { p { (fa(m::NONE)) } }
            ul.cards {
                @for l in &licenses {
                    li {
                        a href=(format!("/ministry/licenses/{}/dashboard", l.id)) {
                            strong { (l.model) } " · " span lang="en" dir="ltr" { (l.license_no) }
                        }
                        dl {
                            dt { (fa(m::STATUS)) } dd { (l.status.as_str()) }
                            dt { (fa(m::ACCEPTED)) } dd { (money(l.accepted)) " / " (money(l.units)) }
                            dt { (fa(m::F_OPENS_AT)) } dd { (when(l.opens_at)) }
                        }
                    }
                }
            }
            p { a href="/ministry/commitments" { (fa(m::ENTER_MAKER_COMMITMENT)) } }
        }
    };
    Ok(page(staff, StatusCode::OK, m::CONSOLE, body))
}
