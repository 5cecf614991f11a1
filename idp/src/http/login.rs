//! The citizen's pages: authorize, the four login steps, consent, account and logout.
//!
//! Every POST either redirects (303, so a reload never re-submits) or re-renders its form
//! with a message in both languages and the right status.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::pages::{self, ClientView, ConsentItem, Lang};
use super::{browser_of, cookie_names, ensure_browser, make_cookie, session_cookie, ClientIp};
use crate::core::Core;
use crate::domain::client::KNOWN_SCOPES;
use crate::domain::{ClientId, MobileNumber, Scopes};
use crate::error::{msg, Error, Result};
use crate::flow::authorize::{self, AuthRequest, AuthorizeError, RawAuthParams, RedirectError};
use crate::flow::login::{LoginTx, Next, Origin, Session, Step, TooLarge};
use crate::flow::tokens::scope_descriptions;
use crate::now;

pub async fn authorize_get(
    State(core): State<Core>,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Query(raw): Query<RawAuthParams>,
) -> Response {
    authorize(core, jar, &ip, raw).await
}

pub async fn authorize_post(
    State(core): State<Core>,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Form(raw): Form<RawAuthParams>,
) -> Response {
    authorize(core, jar, &ip, raw).await
}

async fn authorize(core: Core, jar: CookieJar, ip: &str, raw: RawAuthParams) -> Response {
    let now = now();
    let english = raw
        .ui_locales
        .as_deref()
        .is_some_and(|l| l.starts_with("en"));
    // A pushed request (RFC 9126) comes by its request_uri alone; another request_uri
    // (OIDC's request objects by reference) is not supported, as `validate` answers.
    let pushed = raw
        .request_uri
        .as_deref()
        .is_some_and(|u| u.starts_with(authorize::PAR_URN));
    let req = if pushed {
        authorize::pulled(&core, &raw, now).await
    } else {
        authorize::validate(&core, raw, now)
    };
    let req = match req {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => return render_error(Lang::from_english(english), e),
        Err(AuthorizeError::Redirect(r)) => {
            return Redirect::to(&r.url(core.issuer())).into_response()
        }
    };
    match answer_authorize(&core, jar, req, ip, now).await {
        Ok(resp) => resp,
        Err(e) => render_error(Lang::from_english(english), e),
    }
}

async fn answer_authorize(
    core: &Core,
    jar: CookieJar,
    req: AuthRequest,
    ip: &str,
    now: i64,
) -> Result<Response> {
    let (jar, browser) = ensure_browser(core, jar);
    let session = core
        .login()
        .session(session_cookie(core, &jar).as_deref())
        .await?
        .filter(|s| {
            // max_age=0 always asks for a fresh login (seconds are too coarse otherwise).
            !req.prompt.login && req.max_age.is_none_or(|m| m > 0 && now - s.auth_time <= m)
        })
        // An id_token_hint names the citizen the client expects: someone else's session
        // does not answer for them (with prompt=none: login_required).
        .filter(|s| {
            req.hint_sub.as_ref().is_none_or(|h| {
                core.subject_at(req.client_id.as_str(), &s.citizen_id)
                    .as_ref()
                    == Some(h)
            })
        });
    let redirect_error = |error, description| {
        let e = RedirectError {
            redirect_uri: req.redirect_uri.as_str().to_owned(),
            state: req.state.clone(),
            error,
            description,
        };
        Ok((jar.clone(), Redirect::to(&e.url(core.issuer()))).into_response())
    };
    let Some(session) = session else {
        if req.prompt.none {
            return redirect_error("login_required", "the citizen is not signed in");
        }
        let (tx, pending) = match core
            .login()
            .pending_login(&browser, Some(req.clone()), ip, now)
            .await?
        {
            Ok(p) => p,
            Err(TooLarge) => {
                return redirect_error(
                    "invalid_request",
                    "the request is too large to keep (state, nonce and redirect URI together)",
                )
            }
        };
        let jar = jar.add(pending_cookie(core, &tx.id, pending));
        return Ok((jar, Redirect::to(&format!("/login/{}", tx.id))).into_response());
    };
    if core
        .login()
        .consent_covers(&session.citizen_id, &req)
        .await?
        && !req.prompt.consent
    {
        core.login().session_use(&session.sid).await?;
        let url = core
            .tokens()
            .issue_code(
                &req,
                &session.citizen_id,
                &session.sid,
                session.auth_time,
                now,
            )
            .await?;
        return Ok((jar, Redirect::to(&url)).into_response());
    }
    if req.prompt.none {
        return redirect_error(
            "consent_required",
            "the citizen has not granted this client",
        );
    }
    let tx = core
        .login()
        .start_login(
            &browser,
            Some(req),
            Step::Consent,
            Some(session.sid),
            ip,
            now,
        )
        .await?;
    Ok((jar, Redirect::to(&format!("/login/{}", tx.id))).into_response())
}

fn lang_of(tx: &LoginTx) -> Lang {
    Lang::from_english(tx.request.as_ref().is_some_and(|r| r.english))
}

fn render_error(lang: Lang, e: Error) -> Response {
    let (status, text, retry_after) = e.public();
    let mut resp = (status, pages::error_page(lang, text)).into_response();
    add_retry_after(&mut resp, retry_after);
    resp
}

fn add_retry_after(resp: &mut Response, retry_after: Option<u64>) {
    if let Some(secs) = retry_after {
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
    }
}

/// The pending login's cookie (see [`crate::flow::login::Login::pending_login`]): sent
/// only to this login's own pages (its path), never to scripts, and gone with the login.
fn pending_cookie(
    core: &Core,
    id: &str,
    value: String,
) -> axum_extra::extract::cookie::Cookie<'static> {
    let mut c = make_cookie(
        core,
        cookie_names(core).pending,
        value,
        core.settings.login_secs,
    );
    c.set_path(format!("/login/{id}"));
    c
}

/// The login `id` of this browser: as the store holds it, or, before the phone step's
/// proof of work, as its pending cookie carries it.
/// With `with_session`, the browser's SSO session is read in the same command when it
/// has a session cookie (the consent step's page and post need it; a step's page reads it
/// whatever the step, which the login tells only once read: on a single server one key
/// more in the same MGET, on a Cluster nothing read ahead).
async fn load_any(
    core: &Core,
    jar: &CookieJar,
    id: &str,
    with_session: bool,
) -> Result<crate::flow::login::Loaded> {
    let browser = browser_of(core, jar);
    let pending = jar.get(cookie_names(core).pending).map(|c| c.value());
    let session = with_session.then(|| session_cookie(core, jar)).flatten();
    core.login()
        .load_or_pending(id, browser.as_deref(), pending, session.as_deref(), now())
        .await
}

/// GET /login/{tx}: the page of the transaction's current step.
pub async fn show_step(
    State(core): State<Core>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    let loaded = match load_any(&core, &jar, &id, true).await {
        Ok(loaded) => loaded,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let tx = &loaded.tx;
    match render_step(&core, &jar, tx, loaded.session, None).await {
        Ok(r) => r,
        Err(e) => render_error(lang_of(tx), e),
    }
}

/// Renders the current step's page, with `error` (and its status) if given.
async fn render_step(
    core: &Core,
    jar: &CookieJar,
    tx: &LoginTx,
    session: Option<Option<crate::flow::login::Session>>,
    error: Option<Error>,
) -> Result<Response> {
    let lang = lang_of(tx);
    let (status, text, retry_after) = match &error {
        Some(e) => {
            let (s, t, r) = e.public();
            (s, Some(t), r)
        }
        None => (StatusCode::OK, None, None),
    };
    let csrf = core.login().csrf_token(&tx.id, &tx.browser);
    let client = tx
        .request
        .as_ref()
        .and_then(|r| core.clients.get(r.client_id.as_str()));
    let view = client.as_ref().map(|c| ClientView {
        name: &c.name,
        name_fa: &c.name_fa,
        stars: c.rating(),
    });
    let page = match tx.step {
        Step::Phone => pages::phone_page(
            lang,
            &tx.id,
            &csrf,
            &core.login().pow_challenge(tx, now()).await,
            tx.request.as_ref().and_then(|r| r.login_hint.as_deref()),
            view.as_ref(),
            text,
        ),
        Step::Otp => {
            let masked = tx
                .mobile
                .as_ref()
                .map(MobileNumber::masked)
                .unwrap_or_default();
            pages::otp_page(lang, &tx.id, &csrf, &masked, text)
        }
        Step::Identity => pages::identity_page(lang, &tx.id, &csrf, text),
        Step::Consent => {
            let (Some(req), Some(view)) = (tx.request.as_ref(), view.as_ref()) else {
                return Ok(Redirect::to("/account").into_response());
            };
            core.login()
                .live_session(session_cookie(core, jar).as_deref(), session, tx)
                .await?;
            pages::consent_page(lang, &tx.id, &csrf, view, &scope_descriptions(&req.scope))
        }
    };
    let mut resp = (status, page).into_response();
    add_retry_after(&mut resp, retry_after);
    Ok(resp)
}

/// Loads the transaction, checks browser binding and the form's CSRF token.
async fn load_for_post(core: &Core, jar: &CookieJar, id: &str, csrf: &str) -> Result<LoginTx> {
    Ok(load_posted(core, jar, id, csrf, false).await?.tx)
}

/// [`load_for_post`], with the browser's SSO session read in the same command when
/// `with_session` (the consent step's post).
async fn load_posted(
    core: &Core,
    jar: &CookieJar,
    id: &str,
    csrf: &str,
    with_session: bool,
) -> Result<crate::flow::login::Loaded> {
    let loaded = load_any(core, jar, id, with_session).await?;
    core.login()
        .check_csrf(&loaded.tx.id, &loaded.tx.browser, csrf)?;
    Ok(loaded)
}

/// Renders what the flow decided comes after a step.
async fn show(core: &Core, jar: CookieJar, tx: &LoginTx, next: Next) -> Response {
    match next {
        Next::Step => (jar, Redirect::to(&format!("/login/{}", tx.id))).into_response(),
        Next::Leave(url) => (jar, Redirect::to(&url)).into_response(),
        Next::Over(e) => (jar, render_error(lang_of(tx), e)).into_response(),
        Next::Retry(e) => match render_step(core, &jar, tx, None, Some(e)).await {
            Ok(r) => r,
            Err(e) => render_error(lang_of(tx), e),
        },
    }
}

#[derive(Deserialize)]
pub struct PhoneForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    mobile: String,
    #[serde(default)]
    pow_challenge: String,
    #[serde(default)]
    pow_nonce: String,
}

pub async fn post_phone(
    State(core): State<Core>,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Form(f): Form<PhoneForm>,
) -> Response {
    let mut tx = match load_for_post(&core, &jar, &id, &f.csrf).await {
        Ok(tx) => tx,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let known = known_device(&core, &jar);
    let from = Origin {
        ip: &ip,
        known_device: known.as_deref(),
    };
    let next = core
        .login()
        .phone_step(
            &mut tx,
            &f.mobile,
            (&f.pow_challenge, &f.pow_nonce),
            from,
            now(),
        )
        .await;
    // Stored now (the code was sent): the pending cookie has done its work.
    let stored = tx.persisted && tx.step == Step::Otp && matches!(next, Next::Step);
    let jar = if stored && jar.get(cookie_names(&core).pending).is_some() {
        jar.remove(pending_cookie(&core, &tx.id, String::new()))
    } else {
        jar
    };
    show(&core, jar, &tx, next).await
}

fn known_device(core: &Core, jar: &CookieJar) -> Option<String> {
    jar.get(cookie_names(core).known_device)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() <= 64)
}

#[derive(Deserialize)]
pub struct OtpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn post_otp(
    State(core): State<Core>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<OtpForm>,
) -> Response {
    let mut tx = match load_for_post(&core, &jar, &id, &f.csrf).await {
        Ok(tx) => tx,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let next = core.login().otp_step(&mut tx, &f.code, now()).await;
    // The code reached this browser: it is now a known device of this phone, which keeps
    // the owner's own budget when strangers spend the number's (see `send_code`).
    let jar = match (&next, &tx.mobile) {
        (Next::Step, Some(mobile)) if tx.step == Step::Identity => {
            let value = core.login().known_device_token(mobile.e164(), &tx.browser);
            jar.add(make_cookie(
                &core,
                cookie_names(&core).known_device,
                value,
                crate::flow::login::KNOWN_DEVICE_SECS,
            ))
        }
        _ => jar,
    };
    show(&core, jar, &tx, next).await
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn post_resend(
    State(core): State<Core>,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let mut tx = match load_for_post(&core, &jar, &id, &f.csrf).await {
        Ok(tx) => tx,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let known = known_device(&core, &jar);
    let from = Origin {
        ip: &ip,
        known_device: known.as_deref(),
    };
    let next = core.login().resend_step(&mut tx, from, now()).await;
    show(&core, jar, &tx, next).await
}

#[derive(Deserialize)]
pub struct IdentityForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    national_id: String,
    #[serde(default)]
    birth_date: String,
}

pub async fn post_identity(
    State(core): State<Core>,
    jar: CookieJar,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Form(f): Form<IdentityForm>,
) -> Response {
    let mut tx = match load_for_post(&core, &jar, &id, &f.csrf).await {
        Ok(tx) => tx,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let (next, cookie) = core
        .login()
        .identity_step(&mut tx, &f.national_id, &f.birth_date, &ip, now())
        .await;
    let jar = match cookie {
        Some(c) => jar.add(make_cookie(
            &core,
            cookie_names(&core).session,
            c,
            core.settings.session_secs,
        )),
        None => jar,
    };
    show(&core, jar, &tx, next).await
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
}

pub async fn post_consent(
    State(core): State<Core>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<ConsentForm>,
) -> Response {
    let loaded = match load_posted(&core, &jar, &id, &f.csrf, true).await {
        Ok(loaded) => loaded,
        Err(e) => return render_error(Lang::Fa, e),
    };
    let tx = loaded.tx;
    let next = core
        .login()
        .consent_step(
            &tx,
            session_cookie(&core, &jar).as_deref(),
            loaded.session,
            &f.decision,
            now(),
        )
        .await;
    show(&core, jar, &tx, next).await
}

/// GET /account: the citizen's own page; signs them in first if needed.
pub async fn account(State(core): State<Core>, jar: CookieJar, ClientIp(ip): ClientIp) -> Response {
    let r = async {
        let (jar, browser) = ensure_browser(&core, jar);
        let Some(session) = core
            .login()
            .session(session_cookie(&core, &jar).as_deref())
            .await?
        else {
            let Ok((tx, pending)) = core
                .login()
                .pending_login(&browser, None, &ip, now())
                .await?
            else {
                return Err(Error::bad_request(msg::REQUEST_TOO_LARGE));
            };
            let jar = jar.add(pending_cookie(&core, &tx.id, pending));
            return Ok((jar, Redirect::to(&format!("/login/{}", tx.id))).into_response());
        };
        let citizen = core
            .db
            .citizen_by_id(&session.citizen_id)
            .await?
            .ok_or_else(|| Error::user(StatusCode::UNAUTHORIZED, msg::NOT_SIGNED_IN))?;
        let consents = core
            .db
            .consents_of(&citizen.id)
            .await?
            .into_iter()
            .map(|c| ConsentItem {
                claims: scope_descriptions(&Scopes::parse_known(&c.scope, KNOWN_SCOPES)),
                client_id: c.client_id,
                name: c.name,
                name_fa: c.name_fa,
                stars: u8::try_from(c.stars).unwrap_or(0),
            })
            .collect::<Vec<_>>();
        let sign_ins = core
            .db
            .recent_sign_ins(&citizen.id, 20)
            .await?
            .into_iter()
            .map(|(client, at)| {
                let name = core
                    .clients
                    .get(&client)
                    .map(|c| c.name_fa.clone())
                    .unwrap_or(client);
                (name, crate::format_time(at))
            })
            .collect::<Vec<_>>();
        let csrf = core
            .login()
            .csrf_token(&format!("account:{}", session.sid), &browser);
        // The sign-out form posts to /logout, which checks its own CSRF purpose.
        let logout_csrf = core
            .login()
            .csrf_token(&logout_scope(Some(&session)), &browser);
        let name = format!("{} {}", citizen.given_name, citizen.family_name);
        let page = pages::account_page(
            Lang::Fa,
            pages::AccountForms {
                revoke_csrf: &csrf,
                logout_csrf: &logout_csrf,
            },
            &name,
            &consents,
            &sign_ins,
        );
        Ok((jar, page).into_response())
    }
    .await;
    r.unwrap_or_else(|e| render_error(Lang::Fa, e))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
}

/// POST /account/revoke: withdraws consent and revokes every token of that client.
pub async fn account_revoke(
    State(core): State<Core>,
    jar: CookieJar,
    Form(f): Form<RevokeForm>,
) -> Response {
    let r = async {
        let browser = browser_of(&core, &jar).unwrap_or_default();
        let session = core
            .login()
            .session(session_cookie(&core, &jar).as_deref())
            .await?
            .ok_or_else(|| Error::user(StatusCode::UNAUTHORIZED, msg::NOT_SIGNED_IN))?;
        core.login()
            .check_csrf(&format!("account:{}", session.sid), &browser, &f.csrf)?;
        let client_id =
            ClientId::parse(&f.client_id).map_err(|_| Error::bad_request(msg::BAD_REQUEST))?;
        core.tokens()
            .revoke_consent(&session.citizen_id, &client_id, now())
            .await?;
        Ok(Redirect::to("/account").into_response())
    }
    .await;
    r.unwrap_or_else(|e| render_error(Lang::Fa, e))
}

#[derive(Deserialize, Default)]
pub struct LogoutParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
    ui_locales: Option<String>,
    csrf: Option<String>,
}

/// GET /logout (RP-initiated logout). With a valid `id_token_hint` whose session is this
/// browser's, signs out at once; otherwise asks the citizen to confirm (a logout link on
/// another site must not sign people out).
pub async fn logout_get(
    State(core): State<Core>,
    jar: CookieJar,
    Query(p): Query<LogoutParams>,
) -> Response {
    logout(core, jar, p, false).await
}

pub async fn logout_post(
    State(core): State<Core>,
    jar: CookieJar,
    Form(p): Form<LogoutParams>,
) -> Response {
    logout(core, jar, p, true).await
}

async fn logout(core: Core, jar: CookieJar, p: LogoutParams, posted: bool) -> Response {
    let lang = Lang::from_english(p.ui_locales.as_deref().is_some_and(|l| l.starts_with("en")));
    let r: Result<Response> = async {
        let hint = p
            .id_token_hint
            .as_deref()
            .and_then(|t| core.keys.verify_own(t, core.issuer()));
        let hint_client = hint
            .as_ref()
            .and_then(|c| c["aud"].as_str().map(str::to_owned));
        let client_id = p.client_id.clone().or(hint_client.clone());
        if p.client_id.is_some() && hint_client.is_some() && p.client_id != hint_client {
            return Err(Error::bad_request(msg::BAD_REQUEST));
        }
        // A post-logout redirect needs a client (id_token_hint or client_id) that registered it.
        let redirect = match &p.post_logout_redirect_uri {
            None => None,
            Some(uri) => {
                let ok = client_id
                    .as_deref()
                    .and_then(|id| core.clients.get(id))
                    .is_some_and(|c| c.has_post_logout_redirect_uri(uri));
                if !ok {
                    return Err(Error::bad_request(msg::BAD_REDIRECT));
                }
                Some(uri.clone())
            }
        };
        let session = core
            .login()
            .session(session_cookie(&core, &jar).as_deref())
            .await?;
        let hint_sid = hint
            .as_ref()
            .and_then(|c| c["sid"].as_str().map(str::to_owned));
        let browser = browser_of(&core, &jar).unwrap_or_default();
        let confirmed = match (&session, &hint_sid) {
            (Some(s), Some(h)) => &s.sid == h,
            (None, _) => true,
            _ => false,
        } || (posted
            && p.csrf.as_deref().is_some_and(|c| {
                core.login()
                    .check_csrf(&logout_scope(session.as_ref()), &browser, c)
                    .is_ok()
            }));
        if !confirmed {
            let csrf = core
                .login()
                .csrf_token(&logout_scope(session.as_ref()), &browser);
            let mut hidden = vec![];
            for (k, v) in [
                ("id_token_hint", &p.id_token_hint),
                ("post_logout_redirect_uri", &p.post_logout_redirect_uri),
                ("state", &p.state),
                ("client_id", &p.client_id),
            ] {
                if let Some(v) = v {
                    hidden.push((k, v.clone()));
                }
            }
            return Ok(pages::logout_confirm_page(lang, &csrf, &hidden).into_response());
        }
        // Only this browser's own session ends, and with it the grants it gave
        // manufacturers. An id_token_hint names a session but proves nothing (ID tokens
        // travel to manufacturers): without the session's cookie it ends nothing, neither
        // the session nor its grants; with another session's cookie it ends that one only.
        if let Some(s) = &session {
            core.login()
                .end_session(session_cookie(&core, &jar).as_deref(), Some(&s.sid))
                .await?;
            core.tokens().revoke_session_grants(&s.sid, now()).await?;
        }
        // Deleted with the attributes it was set with: a `__Host-` cookie without
        // `Secure` is refused by browsers, and the session cookie would stay.
        let jar = jar.remove(make_cookie(
            &core,
            cookie_names(&core).session,
            String::new(),
            0,
        ));
        let resp = match redirect {
            Some(uri) => {
                let url = match &p.state {
                    Some(s) => authorize::append_query(&uri, &[("state", s)]),
                    None => uri,
                };
                Redirect::to(&url).into_response()
            }
            None => pages::message_page(lang, pages_text::SIGNED_OUT_TITLE, pages_text::SIGNED_OUT)
                .into_response(),
        };
        Ok((jar, resp).into_response())
    }
    .await;
    r.unwrap_or_else(|e| render_error(lang, e))
}

fn logout_scope(session: Option<&Session>) -> String {
    format!("logout:{}", session.map(|s| s.sid.as_str()).unwrap_or("-"))
}

mod pages_text {
    use crate::error::Text;
    pub const SIGNED_OUT_TITLE: Text = Text {
        fa: "خارج شدید",
        en: "Signed out",
    };
    pub const SIGNED_OUT: Text = Text {
        fa: "از امتا خارج شدید. برای ورود دوباره از سامانه فروش اقدام کنید.",
        en: "You have signed out of emta. Sign in again from a sales site.",
    };
}
