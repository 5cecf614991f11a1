//! The emta citizen verification flow, step by step, and the SSO session it ends in.
//!
//! 1. mobile number + proof of work → an SMS code is sent;
//! 2. the code (6 digits, 2 minutes, 5 tries) → the phone is verified;
//! 3. national ID + Jalali birth date → both registries confirm → SSO session;
//! 4. consent "grant single sign-on" → authorization code (see [`super::tokens`]).
//!
//! A login transaction lives in the ephemeral store under a random id, bound to the
//! browser that started it, so any replica can serve any step.

mod identity;
pub use identity::Opened;
mod otp;
mod phone;
mod session;
mod tx;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::authorize::AuthRequest;
use super::limits::Subject;
use crate::adapters::registry::PersonCheck;
use crate::core::Core;
use crate::crypto::{b64, pow, random_otp, random_token, sha256};
use crate::domain::client::KNOWN_SCOPES;
use crate::domain::{Citizen, JalaliDate, MobileNumber, NationalId, Scopes};
use crate::error::{msg, Error, Result};

/// Codes a login may try; the fifth wrong one voids it.
pub const OTP_MAX_TRIES: i64 = 5;
/// Identity submissions a login may make; the fourth voids it.
pub const IDENTITY_MAX_TRIES: i64 = 3;
/// How long a browser is remembered as one where a phone was verified (a signed cookie).
pub const KNOWN_DEVICE_SECS: i64 = 180 * 24 * 3600;
pub const POW_MAX_AGE: i64 = 600;

/// The authentication context this flow gives: phone possession plus a registry match of
/// national ID, birth date and mobile ownership.
pub const ACR: &str = "urn:emta:loa:registry-verified";
/// RFC 8176 methods: SMS one-time code, knowledge (national ID and birth date).
pub const AMR: &[&str] = &["sms", "otp", "kba"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Phone,
    Otp,
    Identity,
    Consent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginTx {
    pub id: String,
    /// The `emta_b` cookie of the browser that started it.
    pub browser: String,
    pub created_at: i64,
    /// The client's request; `None` when the citizen signs in to their own account page.
    pub request: Option<AuthRequest>,
    pub step: Step,
    /// The number of step 1, once its proof of work passed.
    pub mobile: Option<MobileNumber>,
    pub otp_hash: Option<String>,
    pub otp_sent_at: i64,
    /// Whether the code went to a browser where this phone's code was entered before (the
    /// known-device cookie): its wrong codes are not counted in the phone's cap.
    #[serde(default)]
    pub known_device: bool,
    /// Set once the identity step (or a live session) authenticated the citizen.
    pub sid: Option<String>,
    /// Whether the store holds (or is about to hold) this login: false while it is only
    /// the browser's pending cookie, before the phone step's proof of work.
    #[serde(default)]
    pub persisted: bool,
}

/// The longest pending-login cookie value: a browser keeps a cookie's name and value in
/// 4 096 bytes.
pub const MAX_PENDING: usize = 3_800;
/// Logins one SSO session may open or answer at once (consent-only logins and codes issued
/// at authorize) per login lifetime: a citizen signs in to a few manufacturers, a script
/// with a session would otherwise store or write without limit.
pub const SESSION_LOGINS: i64 = 60;

/// A request too large to travel in the pending cookie (state, nonce and redirect URI
/// together, as JSON escapes them).
#[derive(Debug)]
pub struct TooLarge;

/// The SSO session: who, when and how. Keyed by a hash of the cookie value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub sid: String,
    pub citizen_id: String,
    pub auth_time: i64,
}

/// A login as a request read it ([`Login::load_or_pending`]): the transaction, and the
/// browser's SSO session when it was read in the same command (`Some`; `Some(None)`: the
/// browser has none live). `None`: not read, [`Login::live_session`] reads it.
pub struct Loaded {
    pub tx: LoginTx,
    pub session: Option<Option<Session>>,
}

/// The login flow over the provider's core (`core.login()`): the transaction's state
/// machine, the SSO session, and what each step leads to.
#[derive(Clone, Copy)]
pub struct Login<'a>(pub(crate) &'a Core);

impl std::ops::Deref for Login<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.0
    }
}

/// Where a step was submitted from: the address (as limits key it) and the browser's
/// known-device cookie, if it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub ip: &'a str,
    pub known_device: Option<&'a str>,
}

/// What comes after a step, decided here and rendered by HTTP.
#[derive(Debug)]
pub enum Next {
    /// The transaction's page at its (new) current step.
    Step,
    /// The same step's page again, with what the citizen must fix.
    Retry(Error),
    /// This login cannot go on (expired, voided, out of order): an error page.
    Over(Error),
    /// Out of the login: the client's redirect URI (with a code or an error) or the
    /// citizen's account page.
    Leave(String),
}

impl From<Result<()>> for Next {
    fn from(r: Result<()>) -> Self {
        match r {
            Ok(()) => Self::Step,
            Err(e @ Error::LoginOver(_)) => Self::Over(e),
            Err(e) => Self::Retry(e),
        }
    }
}

/// The counter of one step's tries in one login.
fn step_tries_key(tx: &LoginTx, step: Step) -> String {
    format!("tries:{step:?}:{}", tx.id)
}

/// The (phone, national ID) pair an identity budget keys.
fn pair(mobile: &MobileNumber, nid: &NationalId) -> String {
    format!("{}|{}", mobile.e164(), nid.as_str())
}

fn step_order() -> Error {
    Error::user(StatusCode::CONFLICT, msg::STEP_ORDER)
}

/// What a proof-of-work challenge is bound to: the login and its browser.
fn pow_binding(tx: &LoginTx) -> String {
    format!("{}|{}", tx.id, tx.browser)
}

fn tx_key(id: &str) -> String {
    format!("tx:{id}")
}

/// Set when a login's code step is decided (the right code, or the last wrong one).
fn otp_outcome_key(id: &str) -> String {
    format!("otp-outcome:{id}")
}

fn session_key(cookie: &str) -> String {
    format!("sso:{}", b64(&sha256(cookie.as_bytes())))
}

/// Counts a step's start (paired with [`observe`] for its outcome and latency).
pub fn started(step: &'static str) -> Instant {
    metrics::counter!("emta_login_step_total", "step" => step, "outcome" => "started").increment(1);
    Instant::now()
}

/// Records a step's outcome and latency for Prometheus.
pub fn observe(step: &'static str, started: Instant, outcome: &'static str) {
    metrics::counter!("emta_login_step_total", "step" => step, "outcome" => outcome).increment(1);
    metrics::histogram!("emta_login_step_seconds", "step" => step)
        .record(started.elapsed().as_secs_f64());
}

impl Login<'_> {
    /// Step 1 as submitted: a new number may be given while waiting for the code.
    pub async fn phone_step(
        &self,
        tx: &mut LoginTx,
        mobile: &str,
        pow: (&str, &str),
        from: Origin<'_>,
        now: i64,
    ) -> Next {
        if tx.step != Step::Phone && tx.step != Step::Otp {
            return Next::Over(step_order());
        }
        tx.step = Step::Phone;
        self.submit_phone(tx, mobile, pow.0, pow.1, from, now)
            .await
            .into()
    }

    /// Step 2 as submitted.
    pub async fn otp_step(&self, tx: &mut LoginTx, code: &str, now: i64) -> Next {
        self.submit_otp(tx, code, now).await.into()
    }

    /// A new code for the number of step 1, only while waiting for one.
    pub async fn resend_step(&self, tx: &mut LoginTx, from: Origin<'_>, now: i64) -> Next {
        match (tx.step, tx.mobile.clone()) {
            (Step::Otp, Some(m)) => self.send_code(tx, &m, from, now).await.into(),
            _ => Next::Retry(step_order()),
        }
    }

    /// Step 3 as submitted; with success, the new SSO session's cookie value, and the
    /// login finishes at once when there is nothing to consent to.
    pub async fn identity_step(
        &self,
        tx: &mut LoginTx,
        national_id: &str,
        birth_date: &str,
        ip: &str,
        now: i64,
    ) -> (Next, Option<String>) {
        let opened = match self
            .submit_identity(tx, national_id, birth_date, ip, now)
            .await
        {
            Ok(o) => o,
            Err(e) => return (Err(e).into(), None),
        };
        let next = match self.finish_if_consented(tx, &opened, now).await {
            Ok(Some(url)) => Next::Leave(url),
            Ok(None) => Next::Step,
            Err(e) => Next::Over(e),
        };
        (next, Some(opened.cookie))
    }

    /// After authentication: the account page, or the client if consent is remembered
    /// (never for a citizen seen for the first time: nothing to read).
    async fn finish_if_consented(
        &self,
        tx: &LoginTx,
        opened: &identity::Opened,
        now: i64,
    ) -> Result<Option<String>> {
        let Some(req) = &tx.request else {
            self.drop_tx(&tx.id).await?;
            return Ok(Some("/account".into()));
        };
        let session = &opened.session;
        if opened.first_time {
            return Ok(None);
        }
        if self.consent_covers(&session.citizen_id, req).await? && !req.prompt.consent {
            // Claimed before the code is issued: of two requests that read this
            // transaction at once, one issues a code and the other finds it over.
            self.claim_tx(&tx.id).await?;
            let url = self
                .tokens()
                .issue_code(
                    req,
                    &session.citizen_id,
                    &session.sid,
                    session.auth_time,
                    now,
                )
                .await?;
            return Ok(Some(url));
        }
        Ok(None)
    }

    /// Whether the citizen has granted this client at least the requested scopes.
    pub async fn consent_covers(&self, citizen_id: &str, req: &AuthRequest) -> Result<bool> {
        Ok(self
            .db
            .consent(citizen_id, &req.client_id)
            .await?
            .is_some_and(|granted| {
                req.scope
                    .is_subset(&Scopes::parse_known(&granted, KNOWN_SCOPES))
            }))
    }

    /// The SSO session of `session_cookie`, which must be the one the transaction
    /// reached: as `read` with the login ([`Loaded::session`]), or read now if it was not.
    pub async fn live_session(
        &self,
        session_cookie: Option<&str>,
        read: Option<Option<Session>>,
        tx: &LoginTx,
    ) -> Result<Session> {
        let session = match read {
            Some(session) => session,
            None => self.session(session_cookie).await?,
        };
        session
            .filter(|s| Some(&s.sid) == tx.sid.as_ref())
            .ok_or(Error::LoginOver(msg::LOGIN_EXPIRED))
    }

    /// Step 4 as submitted: `approve` remembers the consent and issues the code; anything
    /// else answers the client `access_denied`.
    pub async fn consent_step(
        &self,
        tx: &LoginTx,
        session_cookie: Option<&str>,
        read: Option<Option<Session>>,
        decision: &str,
        now: i64,
    ) -> Next {
        match self
            .consent_inner(tx, session_cookie, read, decision, now)
            .await
        {
            Ok(url) => Next::Leave(url),
            Err(e) => Next::Over(e),
        }
    }

    async fn consent_inner(
        &self,
        tx: &LoginTx,
        session_cookie: Option<&str>,
        read: Option<Option<Session>>,
        decision: &str,
        now: i64,
    ) -> Result<String> {
        let (Step::Consent, Some(req)) = (tx.step, tx.request.as_ref()) else {
            return Err(step_order());
        };
        let session = self.live_session(session_cookie, read, tx).await?;
        // The ministry may have suspended the client while the citizen was reading.
        super::authorize::validate_client_now(self, req.client_id.as_str(), now)?;
        // Two consents posted at once (a double click, a script) issue one code: the
        // transaction is taken, not merely deleted, and only its taker goes on.
        self.claim_tx(&tx.id).await?;
        if decision != "approve" {
            let e = super::authorize::RedirectError {
                redirect_uri: req.redirect_uri.as_str().to_owned(),
                state: req.state.clone(),
                error: "access_denied",
                description: "the citizen denied the request",
            };
            return Ok(e.url(self.issuer()));
        }
        // The consent is stored with the sign-in the code records, in one commit.
        self.tokens()
            .issue_code_consented(
                req,
                &session.citizen_id,
                &session.sid,
                session.auth_time,
                now,
                Some(&req.scope.to_string()),
            )
            .await
    }
}
