//! The authorization request: parsing, validation, and what answers it.
//!
//! Order of checks follows RFC 6749 §4.1.2.1 and RFC 9700: until the client and the exact
//! redirect URI are known good, errors are shown on our own page and never redirected
//! (an open redirector is how codes get stolen). After that, errors go back to the client
//! with `state` and the RFC 9207 `iss` parameter.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::core::Core;
use crate::domain::client::{ClientUnavailable, KNOWN_SCOPES};
use crate::domain::{ClientId, RedirectUri, Scopes};
use crate::error::{msg, Error};

/// Raw parameters as they arrive (query for GET, form for POST).
#[derive(Debug, Default, Deserialize)]
pub struct RawAuthParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    pub id_token_hint: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A validated authorization request, kept in the login transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    /// Parsed once, when the request arrived, and again whenever it is read back.
    pub client_id: ClientId,
    /// One of the client's registered URIs, exactly.
    pub redirect_uri: RedirectUri,
    pub scope: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `en` when the client asked for English first; Persian otherwise.
    pub english: bool,
    /// The `sub` of a valid `id_token_hint`: only that citizen's session may answer.
    #[serde(default)]
    pub hint_sub: Option<String>,
}

/// An error to send back to the client's redirect URI.
#[derive(Debug, Clone)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: &'static str,
    pub description: &'static str,
}

/// Either an error page (client or redirect URI not trusted) or an error redirect.
#[derive(Debug)]
pub enum AuthorizeError {
    Page(Error),
    Redirect(RedirectError),
}

impl From<Error> for AuthorizeError {
    fn from(e: Error) -> Self {
        Self::Page(e)
    }
}

const MAX_PARAM: usize = 2048;
/// What is kept of a request for the login's lifetime is short and printable: `state` and
/// `nonce` at most this many visible ASCII characters and spaces (RFC 6749's VSCHAR), ...
pub const MAX_KEPT: usize = 512;
/// ... and a `login_hint` a phone number's length (a longer or unprintable hint is only
/// a hint: it is dropped).
pub const MAX_LOGIN_HINT: usize = 20;

/// RFC 6749's VSCHAR: %x20-7E.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// RFC 9126: the `request_uri` prefix of a pushed request.
pub const PAR_URN: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request waits for its browser (s).
pub const PAR_TTL: i64 = 60;

fn par_key(reference: &str) -> String {
    format!("par:{reference}")
}

/// Why a pushed request was refused: its OAuth error and description.
#[derive(Debug)]
pub struct PushRefused {
    pub error: &'static str,
    pub description: String,
}

/// Stores an authorization request that `client` pushed over its authenticated channel
/// (RFC 9126), checked as an authorize request is: the `request_uri` the browser will
/// carry instead, once, within [`PAR_TTL`] seconds.
pub async fn push(
    core: &Core,
    client_id: &str,
    mut raw: RawAuthParams,
    now: i64,
) -> Result<Result<String, PushRefused>, Error> {
    let refuse = |error: &'static str, description: &str| {
        Ok(Err(PushRefused {
            error,
            description: description.to_owned(),
        }))
    };
    if raw.client_id.as_deref().is_some_and(|c| c != client_id) {
        return refuse(
            "invalid_request",
            "client_id is not the authenticated client",
        );
    }
    if raw.request_uri.is_some() {
        return refuse("invalid_request", "request_uri cannot be pushed");
    }
    raw.client_id = Some(client_id.to_owned());
    let req = match check(core, raw, now, true) {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => return refuse("invalid_request", e.public().1.en),
        Err(AuthorizeError::Redirect(r)) => return refuse(r.error, r.description),
    };
    // A pushed request is stored for a minute before anyone paid a proof of work (a
    // storefront may push for every visitor): it counts against its client's own push
    // budget and a deployment-wide backstop of its own, never the stored logins' share or
    // cap (its login is counted when the phone step stores it, as any other), so a flood
    // of visits to one storefront costs that manufacturer's pushes alone and moves neither
    // the live-login cap nor the proof of work's difficulty.
    // Both in one round trip, counted as one by one.
    core.limiter
        .hit_all(&[
            (
                crate::flow::limits::Subject::ClientPush(client_id),
                core.settings.pushes_per_client_rps,
                Duration::from_secs(1),
            ),
            (
                crate::flow::limits::Subject::LivePushes,
                core.settings.max_live_pushes,
                core.secs(PAR_TTL),
            ),
        ])
        .await
        .map_err(|(_, e)| e)?;
    let reference = crate::crypto::random_token(24);
    let json = serde_json::to_string(&req).map_err(|e| Error::Internal(e.to_string()))?;
    core.eph
        .put(&par_key(&reference), &json, core.secs(PAR_TTL))
        .await?;
    Ok(Ok(format!("{PAR_URN}{reference}")))
}

/// The pushed request a browser brings by its `request_uri` (RFC 9126 §4): taken once,
/// for the client that pushed it, whose standing is checked again now. Anything else is
/// an error page: without the pushed request there is no trusted place to redirect to.
pub async fn pulled(
    core: &Core,
    raw: &RawAuthParams,
    now: i64,
) -> Result<AuthRequest, AuthorizeError> {
    use axum::http::StatusCode;
    let gone = || AuthorizeError::Page(Error::user(StatusCode::BAD_REQUEST, msg::PAR_UNKNOWN));
    let client_id = raw
        .client_id
        .as_deref()
        .ok_or(AuthorizeError::Page(Error::bad_request(
            msg::UNKNOWN_CLIENT,
        )))?;
    let reference = raw
        .request_uri
        .as_deref()
        .and_then(|u| u.strip_prefix(PAR_URN))
        .filter(|r| !r.is_empty() && r.len() <= 64)
        .ok_or_else(gone)?;
    // Read first, taken only by its own client: someone who saw the request_uri cannot
    // spend it under another client id.
    let stored = core
        .eph
        .get(&par_key(reference))
        .await
        .map_err(|e| AuthorizeError::Page(e.into()))?
        .ok_or_else(gone)?;
    let req: AuthRequest = serde_json::from_str(&stored).map_err(|_| gone())?;
    if req.client_id.as_str() != client_id {
        return Err(gone());
    }
    core.eph
        .take(&par_key(reference))
        .await
        .map_err(|e| AuthorizeError::Page(e.into()))?
        .ok_or_else(gone)?;
    validate_client_now(core, client_id, now)?;
    Ok(req)
}

/// Checks an authorize request that came through the browser.
pub fn validate(core: &Core, raw: RawAuthParams, now: i64) -> Result<AuthRequest, AuthorizeError> {
    check(core, raw, now, false)
}

fn check(
    core: &Core,
    raw: RawAuthParams,
    now: i64,
    pushed: bool,
) -> Result<AuthRequest, AuthorizeError> {
    use axum::http::StatusCode;
    let page = |text| AuthorizeError::Page(Error::user(StatusCode::BAD_REQUEST, text));

    let client_id = raw
        .client_id
        .as_deref()
        .ok_or_else(|| page(msg::UNKNOWN_CLIENT))?;
    let client = core
        .clients
        .get(client_id)
        .ok_or_else(|| page(msg::UNKNOWN_CLIENT))?;
    let redirect_uri = raw
        .redirect_uri
        .clone()
        .ok_or_else(|| page(msg::BAD_REDIRECT))?;
    let registered = client
        .redirect_uris
        .iter()
        .find(|r| r.as_str() == redirect_uri)
        .cloned()
        .ok_or_else(|| page(msg::BAD_REDIRECT))?;
    validate_client_now(core, client_id, now)?;

    let state = raw.state.clone().filter(|s| !s.is_empty());
    // A state that cannot be kept cannot be sent back either: an error page, not a
    // redirect without it (the client would take that for a forged answer).
    if state
        .as_deref()
        .is_some_and(|s| s.len() > MAX_KEPT || !printable(s))
    {
        return Err(page(msg::BAD_STATE));
    }
    let fail = |error: &'static str, description: &'static str| {
        AuthorizeError::Redirect(RedirectError {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        })
    };

    let too_long = [
        &raw.state,
        &raw.nonce,
        &raw.login_hint,
        &raw.scope,
        &raw.code_challenge,
        &raw.id_token_hint,
    ]
    .iter()
    .any(|p| p.as_ref().is_some_and(|v| v.len() > MAX_PARAM));
    if too_long {
        return Err(fail("invalid_request", "a parameter is too long"));
    }
    if raw
        .nonce
        .as_deref()
        .is_some_and(|n| n.len() > MAX_KEPT || !printable(n))
    {
        return Err(fail(
            "invalid_request",
            "nonce must be at most 512 printable ASCII characters",
        ));
    }
    if raw.request.is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if client.require_par && !pushed {
        return Err(fail(
            "invalid_request",
            "this client must push its authorization requests (RFC 9126: /par)",
        ));
    }
    if raw.request_uri.is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if raw.response_type.as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only the authorization code flow (response_type=code) is supported",
        ));
    }
    if raw.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(fail(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    // Scopes the ministry has not allowed this client are dropped like unknown ones: the
    // consent screen never offers them and the token response's `scope` shows the rest.
    let scope = Scopes::parse_known(raw.scope.as_deref().unwrap_or(""), KNOWN_SCOPES)
        .restrict(&client.allowed_scopes);
    if !scope.contains("openid") {
        return Err(fail("invalid_scope", "the openid scope is required"));
    }
    let code_challenge = match (
        raw.code_challenge.as_deref(),
        raw.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) if c.len() == 43 => c.to_owned(),
        (Some(_), Some("S256")) => {
            return Err(fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters",
            ))
        }
        (None, _) => return Err(fail("invalid_request", "PKCE (code_challenge) is required")),
        (Some(_), _) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ))
        }
    };
    let mut prompt = Prompt::default();
    for p in raw.prompt.as_deref().unwrap_or("").split_ascii_whitespace() {
        match p {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => {}
            _ => return Err(fail("invalid_request", "unknown prompt value")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(fail("invalid_request", "prompt=none cannot be combined"));
    }
    let max_age = match raw.max_age.as_deref() {
        None | Some("") => None,
        Some(s) => match s.parse::<i64>() {
            Ok(v) if v >= 0 => Some(v),
            _ => {
                return Err(fail(
                    "invalid_request",
                    "max_age must be a non-negative integer",
                ))
            }
        },
    };
    let english = raw
        .ui_locales
        .as_deref()
        .and_then(|l| l.split_ascii_whitespace().next())
        .is_some_and(|l| l.starts_with("en"));
    // An ID token we issued to this client (expired ones too, OIDC Core §3.1.2.1): its
    // subject is who the client expects to be signed in.
    let hint_sub = match raw.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        None => None,
        Some(hint) => {
            let claims = core.keys.verify_own(hint, core.issuer());
            let sub = claims.as_ref().and_then(|c| {
                let aud_ok = c["aud"].as_str() == Some(client.id.as_str())
                    || c["aud"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(client.id.as_str())));
                aud_ok
                    .then(|| c["sub"].as_str().map(str::to_owned))
                    .flatten()
            });
            match sub {
                Some(s) => Some(s),
                None => {
                    return Err(fail(
                        "invalid_request",
                        "id_token_hint is not an ID token this provider issued to this client",
                    ))
                }
            }
        }
    };

    Ok(AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: registered,
        scope,
        state,
        nonce: raw.nonce.filter(|n| !n.is_empty()),
        code_challenge,
        prompt,
        max_age,
        login_hint: raw
            .login_hint
            .filter(|h| !h.is_empty() && h.len() <= MAX_LOGIN_HINT && printable(h)),
        english,
        hint_sub,
    })
}

/// Builds the redirect back to the client: `code` or `error`, with `state` and `iss`.
pub fn redirect_url(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> String {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = state {
        all.push(("state", s));
    }
    all.push(("iss", issuer));
    append_query(redirect_uri, &all)
}

impl RedirectError {
    pub fn url(&self, issuer: &str) -> String {
        redirect_url(
            issuer,
            &self.redirect_uri,
            self.state.as_deref(),
            &[
                ("error", self.error),
                ("error_description", self.description),
            ],
        )
    }
}

/// Appends query parameters to a URL that may already have some.
pub fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

/// Re-checks, at the last moment, that a client may still be used.
pub fn validate_client_now(core: &Core, client_id: &str, now: i64) -> Result<(), Error> {
    use axum::http::StatusCode;
    let client = core
        .clients
        .get(client_id)
        .ok_or_else(|| Error::bad_request(msg::UNKNOWN_CLIENT))?;
    match client.availability(now) {
        Ok(()) => Ok(()),
        Err(ClientUnavailable::Suspended) => {
            Err(Error::user(StatusCode::FORBIDDEN, msg::CLIENT_SUSPENDED))
        }
        Err(ClientUnavailable::Expired) => {
            Err(Error::user(StatusCode::FORBIDDEN, msg::CLIENT_EXPIRED))
        }
    }
}
