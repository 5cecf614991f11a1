//! Staff management, for administrators: add an account (a generated password and a TOTP
//! enrolment QR code, shown once), disable and enable it, reset its TOTP, change its role,
//! end its sessions. Every change is audited and ends the account's sessions. An
//! administrator changes no campaign and approves nothing, and does not change their own
//! account (another administrator does).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, PreEscaped};
use serde::Deserialize;

use super::staff::role_text;
use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::store::staff::{Enrolment, Role, StaffError, Standing};

pub(super) async fn list(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    staff.is(Role::Administrator)?;
    let members = app.store.staff_members().await?;
    let makers = super::form::makers(&app).await?;
    let body = html! {
        section.card {
            h2 { (fa(m::ADD_STAFF)) }
            form method="post" action="/ministry/staff" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label for="username" { (fa(m::USERNAME)) }
                input #username type="text" name="username" autocomplete="off" required aria-describedby="username-hint";
                p.hint #username-hint { (fa(m::USERNAME_RULE)) }
                label for="role" { (fa(m::ROLE)) }
                select #role name="role" {                    @for r in Role::ALL { option value=(r.as_str()) { (role_text(r).fa) " / " (role_text(r).en) } }
                }
                label for="manufacturer" { (fa(m::F_REPRESENTED)) }
                select #manufacturer name="manufacturer" {
                    option value="" { "—" }
                    @for (id, fa_name, en) in &makers { option value=(id) { (fa_name) " / " (en) } }
                }
                button type="submit" { (fa(m::ADD_STAFF)) }
            }
        }
        section.card {
            h2 { (fa(m::STAFF)) }
            ul.cards {
                @for member in &members {
                    li {
                        strong lang="en" dir="ltr" { (member.username) }
                        dl {
                            dt { (fa(m::ROLE)) } dd { (fa(role_text(member.role))) }
                            @if let Some(maker) = &member.manufacturer {
                                dt { (fa(m::REPRESENTS)) } dd lang="en" dir="ltr" { (maker) }
                            }
                            dt { (fa(m::ADDED)) } dd { (when(member.created_at)) }
                            dt { (fa(m::STATUS)) } dd {
                                @if let Some(at) = member.disabled_at { (fa(m::DISABLED)) " · " (when(at)) }
                                @else { (fa(m::ENABLED)) }
                            }
                        }
                        @if member.username != staff.username {
                            div.actions {
                                @let standing = if member.disabled_at.is_some() { ("enable", m::ENABLE) } else { ("disable", m::DISABLE) };
                                @for (action, label) in [standing, ("revoke", m::END_SESSIONS), ("reset-totp", m::RESET_TOTP)] {
                                    form method="post" action=(format!("/ministry/staff/{}/{action}", member.username)) {
                                        input type="hidden" name="csrf" value=(staff.csrf);
                                        button.secondary type="submit" { (fa(label)) }
                                    }
                                }                                @if member.role != Role::Representative {
                                    form method="post" action=(format!("/ministry/staff/{}/role", member.username)) {
                                        input type="hidden" name="csrf" value=(staff.csrf);
                                        @let id = format!("role-{}", member.username);
                                        label for=(id) { (fa(m::CHANGE_ROLE)) }
                                        select id=(id) name="role" {
                                            @for r in Role::CHANGEABLE { option value=(r.as_str()) selected[r == member.role] { (role_text(r).fa) " / " (role_text(r).en) } }
                                        }
                                        button.secondary type="submit" { (fa(m::CHANGE_ROLE)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::STAFF, body))
}

/// The one page that shows a new password and TOTP enrolment; never again.
fn enrolment_page(
    staff: &Staff,
    username: &str,
    password: Option<&str>,
    e: &Enrolment,
) -> Response {
    let secret = e
        .otpauth_uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or_default();
    let body = html! {
        p.error role="alert" { (fa(m::SHOWN_ONCE)) }
        table.terms {
            tr { th scope="row" { (fa(m::USERNAME)) } td lang="en" dir="ltr" { code #new-username { (username) } } }
            @if let Some(p) = password {
                tr { th scope="row" { (fa(m::PASSWORD)) } td lang="en" dir="ltr" { code #new-password { (p) } } }
            }
            tr { th scope="row" { (fa(m::TOTP_SECRET)) } td lang="en" dir="ltr" { code #totp-secret .hash { (secret) } } }
        }
        // The SVG is the qrcode crate's rendering of our own otpauth URI.
        figure.qr aria-label="TOTP QR" { (PreEscaped(&e.qr_svg)) }
        p { a href="/ministry/staff" { (fa(m::STAFF)) } }
    };
    page(staff, StatusCode::OK, m::ENROLMENT, body)
}

fn staff_error(e: StaffError) -> Error {
    match e {
        StaffError::Username => Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::USERNAME_RULE),
        StaffError::Exists => Error::conflict(m::STAFF_EXISTS),
        StaffError::Manufacturer => Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_REPRESENTED),
        StaffError::WeakPassword | StaffError::Hash(_) | StaffError::Totp(_) => {
            Error::Internal(e.to_string())
        }
        StaffError::Store(e) => Error::Store(e),
    }
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    /// A representative's manufacturer (one of the IdP's registered, active ones).
    #[serde(default)]
    manufacturer: String,
}

pub(super) async fn add(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<AddForm>,
) -> Result<Response, Error> {
    staff.may(Role::Administrator, &f.csrf)?;
    let role = Role::parse(&f.role)
        .ok_or_else(|| Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_CHOICE))?;
    let username = f.username.trim();
    let manufacturer = f.manufacturer.trim();
    // 24 random characters: about 143 bits, typed once by the new member.
    let password = service_kit::keys::random_token(18);
    let now = service_kit::clock::now();
    let enrolment = match (role, manufacturer) {
        (Role::Representative, maker) => {
            let registered = super::form::makers(&app)
                .await?
                .iter()
                .any(|(id, _, _)| id == maker);
            if !registered {
                return Err(staff_error(StaffError::Manufacturer));
            }
            app.store
                .add_representative(username, &password, maker, &staff.username, now)
                .await
        }
        (role, "") => {
            app.store
                .add_staff(username, &password, role, &staff.username, now)
                .await
        }
        _ => Err(StaffError::Manufacturer),
    }
    .map_err(staff_error)?;
    Ok(enrolment_page(
        &staff,
        username,
        Some(&password),
        &enrolment,
    ))
}

#[derive(Deserialize)]
pub(super) struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn act(
    State(app): State<App>,
    staff: Staff,
    Path((username, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Result<Response, Error> {
    staff.may(Role::Administrator, &f.csrf)?;
    if username == staff.username {
        return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOURSELF));
    }
    let now = service_kit::clock::now();
    let standing = match action.as_str() {
        "disable" => Some(Standing::Disabled),
        "enable" => Some(Standing::Enabled),
        "revoke" => Some(Standing::Revoked),
        _ => None,
    };
    let done = match (action.as_str(), standing) {
        (_, Some(s)) => {
            app.store
                .set_staff_standing(&username, s, &staff.username, now)
                .await?
        }
        ("reset-totp", None) => {
            let Some(e) = app
                .store
                .reset_staff_totp(&username, &staff.username, now)
                .await
                .map_err(staff_error)?
            else {
                return Err(Error::not_found(m::NO_STAFF));
            };
            return Ok(enrolment_page(&staff, &username, None, &e));
        }
        ("role", None) => {
            let role = Role::parse(&f.role)
                .ok_or_else(|| Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_CHOICE))?;
            let current = app.store.staff_account(&username).await?;
            if role == Role::Representative
                || current.as_ref().map(|a| a.role) == Some(Role::Representative)
            {
                return Err(Error::conflict(m::NO_ROLE_CHANGE_FOR_REPRESENTATIVE));
            }
            if !app
                .store
                .set_staff_role(&username, role, &staff.username, now)
                .await?
            {
                return Err(Error::conflict(m::UNCHANGED));
            }
            true
        }
        _ => return Err(Error::not_found(crate::error::msg::NOT_FOUND)),
    };
    if !done {
        return Err(Error::not_found(m::NO_STAFF));
    }
    Ok(Redirect::to("/ministry/staff").into_response())
}
