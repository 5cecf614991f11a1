//! The ministry console, under `/ministry`. Staff sign in with a password and TOTP, and
//! each role does its own work:
//! - administrators manage staff accounts ([`people`]) and change no campaign;
//! - issuers propose issuing, suspending and resuming a license and changing its rate
//!   ([`form`], [`license`]), and a second issuer approves what they were shown in full
//!   ([`proposals`]: four-eyes, with the payload's digest pinned in the audit log);
//! - auditors read everything and export the audit log ([`audit`]);
//! - issuers and auditors see every manufacturer's deliveries and the compensation owed,
//!   and issuers add rates to the ministry's table ([`deliveries`]);
//! - a manufacturer's representative sees its own manufacturer's campaigns' dashboards,
//!   enters its seed commitment ([`commitments`]) and records its applications' contract,
//!   payments and delivery ([`deliveries`]), and reaches nothing else (the
//!   [`Staff`] extractor closes every other page to it).
//!
//! Every page is a module; the [`Staff`] extractor answers the sign-in redirect (or 403)
//! by itself, handlers return `Result`, and the texts are in [`crate::error::msg::console`].
//! Every action is written to the hash-chained audit log in its own transaction.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::{html, Markup};
use service_kit::Text;

use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::store::staff::Role;

mod audit;
mod commitments;
mod dashboard;
mod deliveries;
mod form;
mod home;
mod inspection;
mod license;
mod login;
mod people;
mod proposals;
mod staff;

pub(crate) use deliveries::{stage_status, stage_text};
pub(crate) use staff::Staff;

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/ministry", get(home::show))
        .route("/ministry/login", get(login::form).post(login::submit))
        .route("/ministry/logout", post(login::logout))
        .route("/ministry/licenses", post(form::submit))
        .route("/ministry/licenses/new", get(form::blank))
        .route("/ministry/licenses/{id}", get(license::show))
        .route("/ministry/licenses/{id}/dashboard", get(dashboard::show))
        .route(
            "/ministry/licenses/{id}/dashboard/live",
            get(dashboard::live),
        )
        .route("/ministry/licenses/{id}/suspend", post(license::suspend))
        .route("/ministry/licenses/{id}/resume", post(license::resume))
        .route("/ministry/licenses/{id}/rate", post(license::rate))
        .route(
            "/ministry/licenses/{id}/max-active",
            post(license::max_active),
        )
        .route("/ministry/licenses/{id}/extend", post(license::extend))
        .route("/ministry/licenses/{id}/pause", post(license::pause))
        .route("/ministry/licenses/{id}/reveal", post(license::reveal))
        .route("/ministry/licenses/{id}/unpause", post(license::unpause))
        .route("/ministry/proposals/{id}", get(proposals::show))
        .route("/ministry/proposals/{id}/approve", post(proposals::approve))
        .route("/ministry/proposals/{id}/reject", post(proposals::reject))
        .route("/ministry/staff", get(people::list).post(people::add))
        .route("/ministry/staff/{username}/{action}", post(people::act))
        .route(
            "/ministry/commitments",
            get(commitments::list).post(commitments::enter),
        )
        .route("/ministry/deliveries", get(deliveries::show))
        .route("/ministry/deliveries/rates", post(deliveries::add_rate))
        .route("/ministry/deliveries/stage", post(deliveries::record))
        .route("/ministry/complaints", get(inspection::complaints))
        .route("/ministry/complaints/{id}", get(inspection::complaint))
        .route("/ministry/complaints/{id}/answer", post(inspection::answer))
        .route("/ministry/complaints/{id}/decide", post(inspection::decide))
        .route(
            "/ministry/complaints/{id}/files/{sha}",
            get(inspection::complaint_file),
        )
        .route(
            "/ministry/cases",
            get(inspection::cases).post(inspection::open_case),
        )
        .route("/ministry/cases/{id}", get(inspection::case))
        .route("/ministry/cases/{id}/findings", post(inspection::finding))
        .route("/ministry/cases/{id}/propose", post(inspection::propose))
        .route("/ministry/audit", get(audit::show))
        .route("/ministry/audit.csv", get(audit::csv))
}

/// A console cookie: only under `/ministry`, never to scripts, never cross-site, and only
/// over https when the service is.
fn cookie(
    app: &App,
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build((name, value))
        .path("/ministry")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.secure_cookies());
    if let Some(age) = max_age {
        c = c.max_age(time::Duration::seconds(age.as_secs() as i64));
    }
    c.build()
}

/// A console page: the signed-in member's bar (who, which role, where they may go, sign
/// out), then `body`.
fn page(staff: &Staff, status: StatusCode, title: Text, body: Markup) -> Response {
    let nav = html! {
        nav.staff aria-label="console" {                p {
                span lang="en" dir="ltr" { (staff.username) }
                " · " (fa(staff.role_text()))
                @if let Some(maker) = &staff.manufacturer { " · " span lang="en" dir="ltr" { (maker) } }
            }
            ul {
                li { a href="/ministry" { (fa(m::HOME)) } }
                @if staff.role != Role::Administrator {
                    li { a href="/ministry/deliveries" { (fa(m::DELIVERIES)) } }
                    li { a href="/ministry/complaints" { (fa(m::COMPLAINTS)) } }
                }
                @if matches!(staff.role, Role::Inspector | Role::Issuer | Role::Auditor) {
                    li { a href="/ministry/cases" { (fa(m::CASES)) } }
                }
                @if staff.role == Role::Issuer {
                    li { a href="/ministry/licenses/new" { (fa(m::PROPOSE_LICENSE)) } }
                    li { a href="/ministry/commitments" { (fa(m::SEED_COMMITMENTS)) } }
                }                @if staff.role == Role::Administrator {
                    li { a href="/ministry/staff" { (fa(m::STAFF)) } }
                }
                @if staff.role == Role::Representative {
                    li { a href="/ministry/commitments" { (fa(m::SEED_COMMITMENTS)) } }
                } @else {
                    li { a href="/ministry/audit" { (fa(m::AUDIT_LOG)) } }
                }
            }
            form method="post" action="/ministry/logout" {
                input type="hidden" name="csrf" value=(staff.csrf);
                button.secondary.inline type="submit" { (fa(m::SIGN_OUT)) }
            }
        }
        (body)
    };
    super::pages::console_page(status, title, nav)
}

use super::pages::fa;

/// A time as Jalali Tehran time with the Gregorian equivalent beside it.
fn when(unix: i64) -> Markup {
    html! {
        span.when {
            (service_kit::clock::format_time(unix))
            small.other lang="en" dir="ltr" { (service_kit::clock::format_gregorian(unix)) }
        }
    }
}
