//! Signing a citizen in at a storefront: `/{m}/login` sends the browser to the IdP with
//! PKCE, state and nonce; `/{m}/callback` checks the answer came from the IdP (RFC 9207
//! `iss`), from this browser, and exchanges the code.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::session::Citizen;
use crate::adapters::oidc::{Pending, SignInError, StartError};
use crate::app::Core;
use crate::error::{msg, Error, Result};

/// How long a started sign-in may take to come back.
const PENDING: Duration = Duration::from_secs(600);

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    Router::new()
        .merge(
            g.browse
                .around(Router::new().route("/{m}/login", get(login))),
        )
        .merge(
            g.sign_in
                .around(Router::new().route("/{m}/callback", get(callback))),
        )
        .route(
            "/{m}/backchannel-logout",
            axum::routing::post(backchannel_logout),
        )
}

fn pending_key(state: &str) -> String {
    format!("rp:{state}")
}

async fn login(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
) -> Result<Response> {
    let front = core.storefront(&m)?;
    let (jar, sid) = core.ensure_session(jar);
    let (url, state, pending) = core.rp.start(front, &sid).await.map_err(|e| match e {
        StartError::Busy { retry_after } => Error::Busy {
            retry_after: retry_after.unwrap_or(2).clamp(1, 60),
        },
        StartError::Refused => Error::user(StatusCode::BAD_GATEWAY, msg::IDP_REFUSED),
    })?;
    let json = serde_json::to_string(&pending).map_err(|e| Error::Internal(e.to_string()))?;
    core.sessions
        .put(&pending_key(&state), &json, PENDING)
        .await?;
    Ok((jar, Redirect::to(&url)).into_response())
}

/// A sign-in that can no longer finish (its pending state lapsed or was lost with the
/// store, or the IdP refused its code): 410, with the way to start a new one, which with
/// the IdP's single sign-on is usually one click.
fn gone(m: &str) -> Response {
    super::pages::page(
        StatusCode::GONE,
        crate::error::ERROR_TITLE,
        maud::html! {
            p.error role="alert" { (super::pages::fa(msg::SIGN_IN_EXPIRED)) }
            p { a href=(format!("/{m}/login")) { (super::pages::fa(msg::SIGN_IN_AGAIN)) } }
        },
    )
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

async fn callback(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Result<Response> {
    // The IdP advertises RFC 9207, so a response without its `iss` is refused too.
    if q.iss.as_deref() != Some(core.rp.issuer.as_str()) {
        return Err(Error::bad_request(msg::NOT_FROM_EMTA));
    }
    if q.error.is_some() {
        return Err(Error::bad_request(msg::SIGN_IN_REFUSED));
    }
    let (Some(code), Some(state), Some(front)) = (q.code, q.state, core.rp.storefront(&m)) else {
        return Err(Error::bad_request(msg::SIGN_IN_INVALID));
    };
    // A store that cannot answer is "try again" (503), not "expired": the pending
    // sign-in is still there once it is back. It is read here and consumed only once the
    // code is exchanged (or refused for good), so a reload after the IdP could not be
    // reached signs in; it stays single-use, as the IdP's code is.
    let key = pending_key(&state);
    let Some(raw) = core.sessions.get(&key).await? else {
        return Ok(gone(&m));
    };
    let pending: Pending =
        serde_json::from_str(&raw).map_err(|_| Error::bad_request(msg::SIGN_IN_INVALID))?;
    let sid = core.sid(&jar);
    if pending.sid != sid || pending.manufacturer != m {
        return Err(Error::bad_request(msg::SIGN_IN_OTHER_BROWSER));
    }
    let finished = core.rp.finish(front, code, pending).await;
    if !matches!(finished, Err(SignInError::Unreachable | SignInError::Busy)) {
        // Spent either way (signed in, or a code the IdP refused): a replay is "expired".
        // Should the delete fail, the entry lapses with its TTL and the code is spent.
        if let Err(e) = core.sessions.delete(&key).await {
            tracing::warn!(error = %e, "a finished sign-in's pending state stays until it lapses");
        }
    }
    if matches!(finished, Err(SignInError::Refused)) {
        return Ok(gone(&m));
    }
    let (who, tokens) = finished.map_err(|e| match e {
        SignInError::Unreachable => Error::user(StatusCode::BAD_GATEWAY, msg::IDP_DOWN),
        // The IdP's own "try again shortly" (503 with Retry-After there) is passed on as
        // such: a reload signs in.
        SignInError::Busy => Error::Busy { retry_after: 2 },
        SignInError::Refused => Error::user(StatusCode::GONE, msg::SIGN_IN_EXPIRED),
        SignInError::InvalidToken => Error::bad_request(msg::SIGN_IN_INVALID),
        SignInError::NoNationalId => Error::bad_request(msg::NO_NATIONAL_ID),
    })?;
    // A new session id from here on: whoever knew the one this sign-in started under
    // (set in this browser by someone else, say) is not signed in by it.
    let (jar, sid) = core.renew_session(jar, &who.national_id).await?;
    if let Some(idp_sid) = &who.idp_sid {
        core.link_idp_session(&m, idp_sid, &sid).await?;
    }
    let citizen = Citizen {
        sub: who.sub,
        national_id: who.national_id,
        name: who.name,
        birthdate: who.birthdate,
        refresh_token: tokens.refresh_token,
        access_expires: tokens.access_expires,
        idp_sid: who.idp_sid,
        phone: who.phone,
    };
    core.save_citizen(&jar, &m, &citizen).await?;
    Ok((core.mark_signed_in(jar), Redirect::to(&format!("/{m}/"))).into_response())
}

#[derive(Deserialize)]
struct LogoutForm {
    logout_token: String,
}

/// POST /{m}/backchannel-logout (OpenID Connect Back-Channel Logout 1.0): the IdP says the
/// citizen signed out, or withdrew this manufacturer's consent. The sign-in that came from
/// the named IdP session ends at once. 200 when done (or nothing was signed in), 400 with
/// an OAuth-style error when the token does not verify. A server-to-server call: no
/// cookie, no CSRF token; the IdP's signature is the authentication.
async fn backchannel_logout(
    State(core): State<Core>,
    Path(m): Path<String>,
    form: std::result::Result<axum::Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refuse = |description: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": "invalid_request",
                "error_description": description,
            })),
        )
            .into_response()
    };
    let Some(front) = core.rp.storefront(&m) else {
        return Error::not_found(msg::NOT_FOUND).into_response();
    };
    let Ok(axum::Form(f)) = form else {
        return refuse("a form with logout_token is required".into());
    };
    let logout = match core.rp.verify_logout_token(front, &f.logout_token).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(storefront = %m, error = %e, "logout token refused");
            return refuse(format!("logout token refused: {e}"));
        }
    };
    // Sign-ins are remembered by the IdP's session: a token with only a `sub` cannot name
    // one (the IdP always sends `sid`; registration says so).
    let Some(idp_sid) = logout.sid else {
        return refuse("a sid is required".into());
    };
    match core.end_idp_session(&m, &idp_sid).await {
        Ok(ended) => {
            tracing::info!(storefront = %m, ended, jti = %logout.jti, "back-channel logout");
            StatusCode::OK.into_response()
        }
        // The IdP retries a 5xx; the session store is back by then.
        Err(e) => e.into_response(),
    }
}
