//! Signing in (password and TOTP, each code once) and out.

use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::CookieJar;
use maud::html;
use serde::Deserialize;
use service_kit::keys::{ct_eq, random_token};

use super::staff::{StaffSession, DEVICE_COOKIE, STAFF_COOKIE};
use super::{cookie, fa, Staff};
use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::console_page;
use crate::http::ClientIp;

const SESSION: Duration = Duration::from_secs(8 * 3600);
const DEVICE_LIFETIME: Duration = Duration::from_secs(180 * 24 * 3600);
/// Failed sign-ins per username (or per username on a known device) per window.
const USER_FAILURES: i64 = 5;
/// Sign-in attempts per client address (IPv6: per /64) per window, failed or not.
const IP_ATTEMPTS: i64 = 30;
const LOGIN_WINDOW: Duration = Duration::from_secs(900);

pub(super) async fn form(State(app): State<App>, jar: CookieJar) -> Response {
    // A pre-session cookie makes the login form's CSRF token bind to this browser.
    let jar = if jar.get(STAFF_COOKIE).is_some() {
        jar
    } else {
        jar.add(cookie(&app, STAFF_COOKIE, random_token(24), None))
    };
    let csrf = app.staff_csrf(&jar);
    let body = html! {
        form method="post" action="/ministry/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="username" { (fa(m::USERNAME)) }
            input #username type="text" name="username" autocomplete="username" required;
            label for="password" { (fa(m::PASSWORD)) }
            input #password type="password" name="password" autocomplete="current-password" required;
            label for="totp" { (fa(m::TOTP)) }
            input #totp type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" required;
            button type="submit" { (fa(m::SIGN_IN)) }
        }
    };
    (jar, console_page(StatusCode::OK, m::CONSOLE, body)).into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

/// No shared counter, no sign-in attempt: a limiter that cannot count refuses.
fn limited(e: service_kit::limit::LimitError) -> Error {
    match e {
        service_kit::limit::LimitError::Limited { retry_after } => {
            Error::RateLimited { retry_after }
        }
        service_kit::limit::LimitError::Store(_) => Error::RateLimited {
            retry_after: LOGIN_WINDOW.as_secs(),
        },
    }
}

pub(super) async fn submit(
    State(app): State<App>,
    Extension(ip): Extension<ClientIp>,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Result<Response, Error> {
    if !ct_eq(&app.staff_csrf(&jar), &f.csrf) {
        return Err(Error::BadForm);
    }
    // Every attempt counts against the client's address (argon2 is costly); only
    // failures count against the username, and a browser the account signed in from
    // before has a budget of its own, so nobody can lock an issuer out of their desk.
    app.limiter
        .hit("staff-login-ip", &ip.subject(), IP_ATTEMPTS, LOGIN_WINDOW)
        .await
        .map_err(limited)?;
    let device = app.known_device(&jar, &f.username);
    let user_key = match &device {
        Some(nonce) => app
            .limiter
            .key("staff-login-device", &format!("{}|{nonce}", f.username)),
        None => app.limiter.key("staff-login-user", &f.username),
    };
    app.limiter
        .check_key(&user_key, USER_FAILURES)
        .await
        .map_err(limited)?;
    let signed_in = match app
        .store
        .staff_login(
            &f.username,
            &f.password,
            &f.totp,
            service_kit::clock::now(),
            &ip.subject(),
        )
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            let _ = app
                .limiter
                .hit_key(&user_key, USER_FAILURES, LOGIN_WINDOW)
                .await;
            return Err(Error::user(StatusCode::UNAUTHORIZED, m::WRONG_CREDENTIALS));
        }
        Err(e) => {
            tracing::error!(error = %e, "staff login failed");
            return Err(Error::Busy { retry_after: 5 });
        }
    };
    // A fresh session id after sign-in (no fixation).
    let sid = random_token(24);
    let session = StaffSession {
        username: f.username.clone(),
        epoch: signed_in.epoch,
    };
    let json = serde_json::to_string(&session)
        .map_err(|e| Error::Internal(format!("staff session: {e}")))?;
    app.sessions
        .put(&format!("staff:{sid}"), &json, SESSION)
        .await
        .map_err(|_| Error::Busy { retry_after: 5 })?;
    let nonce = device.unwrap_or_else(|| random_token(16));
    let known = app.device_token(&f.username, &nonce);
    Ok((
        jar.add(cookie(&app, STAFF_COOKIE, sid, None)).add(cookie(
            &app,
            DEVICE_COOKIE,
            known,
            Some(DEVICE_LIFETIME),
        )),
        Redirect::to("/ministry"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    pub(super) csrf: String,
}

pub(super) async fn logout(
    State(app): State<App>,
    staff: Staff,
    jar: CookieJar,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, Error> {
    staff.form(&f.csrf)?;
    if let Some(c) = jar.get(STAFF_COOKIE) {
        let _ = app.sessions.delete(&format!("staff:{}", c.value())).await;
    }
    app.store
        .audit(
            service_kit::clock::now(),
            &staff.username,
            "staff.logout",
            &staff.username,
            "",
        )
        .await?;
    Ok(Redirect::to("/ministry/login").into_response())
}
