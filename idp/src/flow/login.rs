//! The emta citizen verification flow, step by step, and the SSO session it ends in.
//!
//! 1. mobile number + proof of work → an SMS code is sent;
//! 2. the code (6 digits, 2 minutes, 5 tries) → the phone is verified;
//! 3. national ID + Jalali birth date → both registries confirm → SSO session;
//! 4. consent "grant single sign-on" → authorization code (see [`super::tokens`]).
//!
//! A login transaction lives in the ephemeral store under a random id, bound to the
//! browser that started it, so any replica can serve any step.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::authorize::AuthRequest;
use super::limits::Subject;
use crate::adapters::registry::PersonCheck;
use crate::core::Core;
use crate::crypto::{b64, pow, random_otp, random_token, sha256};
use crate::domain::client::KNOWN_SCOPES;
use crate::domain::{Citizen, ClientId, JalaliDate, MobileNumber, NationalId, Scopes};
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
    pub mobile: Option<String>,
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
        let mobile = tx
            .mobile
            .as_deref()
            .and_then(|m| MobileNumber::parse(m).ok());
        match (tx.step, mobile) {
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
        let cookie = match self
            .submit_identity(tx, national_id, birth_date, ip, now)
            .await
        {
            Ok(c) => c,
            Err(e) => return (Err(e).into(), None),
        };
        let next = match self.finish_if_consented(tx, &cookie, now).await {
            Ok(Some(url)) => Next::Leave(url),
            Ok(None) => Next::Step,
            Err(e) => Next::Over(e),
        };
        (next, Some(cookie))
    }

    /// After authentication: the account page, or the client if consent is remembered.
    async fn finish_if_consented(
        &self,
        tx: &LoginTx,
        session_cookie: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let Some(req) = &tx.request else {
            self.drop_tx(&tx.id).await?;
            return Ok(Some("/account".into()));
        };
        let Some(session) = self.session(Some(session_cookie)).await? else {
            return Ok(None);
        };
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
        let Ok(client_id) = ClientId::parse(&req.client_id) else {
            return Ok(false);
        };
        Ok(self
            .db
            .consent(citizen_id, &client_id)
            .await?
            .is_some_and(|granted| {
                req.scope
                    .is_subset(&Scopes::parse_known(&granted, KNOWN_SCOPES))
            }))
    }

    /// The SSO session of `session_cookie`, which must be the one the transaction
    /// reached.
    pub async fn live_session(
        &self,
        session_cookie: Option<&str>,
        tx: &LoginTx,
    ) -> Result<Session> {
        self.session(session_cookie)
            .await?
            .filter(|s| Some(&s.sid) == tx.sid.as_ref())
            .ok_or(Error::LoginOver(msg::LOGIN_EXPIRED))
    }

    /// Step 4 as submitted: `approve` remembers the consent and issues the code; anything
    /// else answers the client `access_denied`.
    pub async fn consent_step(
        &self,
        tx: &LoginTx,
        session_cookie: Option<&str>,
        decision: &str,
        now: i64,
    ) -> Next {
        match self.consent_inner(tx, session_cookie, decision, now).await {
            Ok(url) => Next::Leave(url),
            Err(e) => Next::Over(e),
        }
    }

    async fn consent_inner(
        &self,
        tx: &LoginTx,
        session_cookie: Option<&str>,
        decision: &str,
        now: i64,
    ) -> Result<String> {
        let (Step::Consent, Some(req)) = (tx.step, tx.request.as_ref()) else {
            return Err(step_order());
        };
        let session = self.live_session(session_cookie, tx).await?;
        // The ministry may have suspended the client while the citizen was reading.
        super::authorize::validate_client_now(self, &req.client_id, now)?;
        // Two consents posted at once (a double click, a script) issue one code: the
        // transaction is taken, not merely deleted, and only its taker goes on.
        self.claim_tx(&tx.id).await?;
        if decision != "approve" {
            let e = super::authorize::RedirectError {
                redirect_uri: req.redirect_uri.clone(),
                state: req.state.clone(),
                error: "access_denied",
                description: "the citizen denied the request",
            };
            return Ok(e.url(self.issuer()));
        }
        let client_id =
            ClientId::parse(&req.client_id).map_err(|_| Error::bad_request(msg::UNKNOWN_CLIENT))?;
        self.db
            .save_consent(&session.citizen_id, &client_id, &req.scope.to_string(), now)
            .await?;
        self.tokens()
            .issue_code(
                req,
                &session.citizen_id,
                &session.sid,
                session.auth_time,
                now,
            )
            .await
    }

    /// Opens a login transaction that the store holds at once: the consent step of a
    /// citizen with a live SSO session (who paid for it when they signed in). It counts
    /// against the address's limit, the session's ([`SESSION_LOGINS`]) and its client's
    /// share, not against the deployment's cap of paid-for logins, which a session could
    /// otherwise spend for everyone.
    pub async fn start_login(
        &self,
        browser: &str,
        request: Option<AuthRequest>,
        step: Step,
        sid: Option<String>,
        ip: &str,
        now: i64,
    ) -> Result<LoginTx> {
        self.start_limits(ip).await?;
        // A live session's holder is admitted ahead of the client's share, which
        // strangers can spend; the session's own limit bounds what it opens.
        match sid.as_deref() {
            Some(sid) => self.session_use(sid).await?,
            None => self.client_share(request.as_ref()).await?,
        }
        let tx = LoginTx {
            id: random_token(18),
            browser: browser.to_owned(),
            created_at: now,
            request,
            step,
            mobile: None,
            otp_hash: None,
            otp_sent_at: 0,
            known_device: false,
            sid,
            persisted: true,
        };
        self.save_tx(&tx).await?;
        metrics::counter!("emta_login_step_total", "step" => "start", "outcome" => "started")
            .increment(1);
        Ok(tx)
    }

    /// Opens a login at the phone step without storing anything: the transaction travels
    /// as the browser's pending cookie (MACed, bound to the browser, expiring with the
    /// login) until the phone step's proof of work is paid, and only then is stored (see
    /// [`Self::submit_phone`]). A flood of authorize requests of any size from any number
    /// of addresses costs the store nothing but the per-address and per-client counters.
    /// Returns the transaction and its cookie's value.
    pub async fn pending_login(
        &self,
        browser: &str,
        request: Option<AuthRequest>,
        ip: &str,
        now: i64,
    ) -> Result<std::result::Result<(LoginTx, String), TooLarge>> {
        self.start_limits(ip).await?;
        let tx = LoginTx {
            id: random_token(18),
            browser: browser.to_owned(),
            created_at: now,
            request,
            step: Step::Phone,
            mobile: None,
            otp_hash: None,
            otp_sent_at: 0,
            known_device: false,
            sid: None,
            persisted: false,
        };
        let body = b64(&serde_json::to_vec(&tx).map_err(|e| Error::Internal(e.to_string()))?);
        let mac = self.keyring.hash("login-pending", body.as_bytes());
        let sealed = format!("{body}.{mac}");
        if sealed.len() > MAX_PENDING {
            return Ok(Err(TooLarge));
        }
        metrics::counter!("emta_login_step_total", "step" => "start", "outcome" => "started")
            .increment(1);
        Ok(Ok((tx, sealed)))
    }

    /// One more login or code of the SSO session `sid` ([`SESSION_LOGINS`] per login
    /// lifetime; 429 past it).
    pub async fn session_use(&self, sid: &str) -> Result<()> {
        self.limiter
            .hit(
                Subject::SessionLogins(sid),
                SESSION_LOGINS,
                self.secs(self.settings.login_secs),
            )
            .await
    }

    /// The pending login `id` from its cookie's `value`: its MAC, its id, this browser,
    /// its phone step and its lifetime checked, and not a login whose code step was
    /// decided since (finished or voided: a kept cookie does not bring it back). Expired
    /// or altered is "login over".
    pub async fn open_pending(
        &self,
        id: &str,
        value: &str,
        browser: Option<&str>,
        now: i64,
    ) -> Result<LoginTx> {
        let over = || Error::LoginOver(msg::LOGIN_EXPIRED);
        if value.len() > MAX_PENDING {
            return Err(over());
        }
        let (body, mac) = value.rsplit_once('.').ok_or_else(over)?;
        if !self.keyring.verify("login-pending", body.as_bytes(), mac) {
            return Err(over());
        }
        let tx: LoginTx = service_kit::keys::b64_decode(body)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(over)?;
        let live = now < tx.created_at + self.settings.login_secs;
        if tx.id != id || tx.step != Step::Phone || tx.persisted || !live {
            return Err(over());
        }
        if browser != Some(tx.browser.as_str()) {
            return Err(Error::user(StatusCode::FORBIDDEN, msg::LOGIN_OTHER_BROWSER));
        }
        if self.eph.get(&otp_outcome_key(id)).await?.is_some() {
            return Err(over());
        }
        Ok(tx)
    }

    /// One more stored login of its client's (`logins_per_client_rps`, so that a flood
    /// through one manufacturer, paid for in proofs of work, takes only that share; the
    /// account page's sign-ins have one budget of their own); 503 with Retry-After past it.
    async fn client_share(&self, request: Option<&AuthRequest>) -> Result<()> {
        let client = request.map_or("", |r| r.client_id.as_str());
        self.limiter
            .budget(
                Subject::ClientLoginStart(client),
                self.settings.logins_per_client_rps,
            )
            .await
    }

    /// Gives back what [`Self::count_live_login`] took, for a login that was not stored
    /// after all (its code could not be sent).
    async fn uncount_live_login(&self, request: Option<&AuthRequest>, ahead: bool) -> Result<()> {
        if !ahead {
            let client = request.map_or("", |r| r.client_id.as_str());
            self.limiter
                .refund(Subject::ClientLoginStart(client))
                .await?;
        }
        self.limiter.refund(Subject::LiveLogins).await
    }

    /// One more paid-for login to store: its client's share ([`Self::client_share`]),
    /// unless `ahead` (the phone's owner, on a browser where its code was entered before:
    /// admitted ahead of a share that strangers can spend), and the deployment's cap
    /// (`max_live_logins` per login lifetime); past either, 503 with Retry-After, before
    /// the store fills.
    async fn count_live_login(&self, request: Option<&AuthRequest>, ahead: bool) -> Result<()> {
        if !ahead {
            self.client_share(request).await?;
        }
        self.limiter
            .capacity(
                Subject::LiveLogins,
                self.settings.max_live_logins,
                self.secs(self.settings.login_secs),
            )
            .await
    }

    /// The limit on opening a login, stored or not: an address may open only
    /// `logins_per_ip` a minute (and its ranges their share, see [`Self::address_limits`]).
    async fn start_limits(&self, ip: &str) -> Result<()> {
        let wider = service_kit::net::wider_ranges(ip);
        for (subject, max) in self.address_limits(
            Subject::IpLoginStart,
            ip,
            &wider,
            self.settings.logins_per_ip,
        ) {
            self.limiter
                .hit(subject, max, Duration::from_secs(60))
                .await?;
        }
        Ok(())
    }

    /// A per-address budget as a real network sees it: the address (an IPv4 address or an
    /// IPv6 /64) gets `max`, and an IPv6 address's /56 and /48 (`wider`, from
    /// [`service_kit::net::wider_ranges`]) 8 and 32 times as much in all, so rotating
    /// through the /64s of one subscriber's range buys nothing; an address in a
    /// configured carrier-NAT range, shared by thousands, gets `carrier_nat_factor` times
    /// all of these.
    fn address_limits<'a>(
        &self,
        kind: fn(&'a str) -> Subject<'a>,
        ip: &'a str,
        wider: &'a [(String, i64)],
        max: i64,
    ) -> Vec<(Subject<'a>, i64)> {
        let factor = if service_kit::net::in_ranges(ip, &self.settings.carrier_nat_ranges) {
            self.settings.carrier_nat_factor.max(1)
        } else {
            1
        };
        // An IPv6 /64 is one subscriber's, carrier or not: the factor is for what many
        // share (an IPv4 address behind carrier NAT, an IPv6 range).
        let own = if ip.contains('/') { 1 } else { factor };
        let mut out = vec![(kind(ip), max.saturating_mul(own))];
        for (range, times) in wider {
            out.push((
                kind(range),
                max.saturating_mul(*times).saturating_mul(factor),
            ));
        }
        out
    }

    pub async fn save_tx(&self, tx: &LoginTx) -> Result<()> {
        let json = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
        self.eph
            .put(&tx_key(&tx.id), &json, self.tx_ttl(tx))
            .await?;
        Ok(())
    }

    /// Saves the transaction's next state only if it still exists; false if it was ended
    /// meanwhile (voided, finished, expired).
    pub async fn replace_tx(&self, tx: &LoginTx) -> Result<bool> {
        let json = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self
            .eph
            .replace(&tx_key(&tx.id), &json, self.tx_ttl(tx))
            .await?)
    }

    fn tx_ttl(&self, tx: &LoginTx) -> Duration {
        self.secs((tx.created_at + self.settings.login_secs - crate::now()).max(1))
    }

    /// Loads a transaction and checks that this browser started it.
    pub async fn load_tx(&self, id: &str, browser: Option<&str>) -> Result<LoginTx> {
        if id.len() > 64 {
            return Err(Error::user(StatusCode::NOT_FOUND, msg::LOGIN_EXPIRED));
        }
        let raw = self
            .eph
            .get(&tx_key(id))
            .await?
            .ok_or(Error::LoginOver(msg::LOGIN_EXPIRED))?;
        let tx: LoginTx = serde_json::from_str(&raw).map_err(|e| Error::Internal(e.to_string()))?;
        if browser != Some(tx.browser.as_str()) {
            return Err(Error::user(StatusCode::FORBIDDEN, msg::LOGIN_OTHER_BROWSER));
        }
        Ok(tx)
    }

    /// Ends a transaction. Its wrong-code counter is left to expire, so a guess that was
    /// already in flight still counts against the voided login instead of starting over.
    pub async fn drop_tx(&self, id: &str) -> Result<()> {
        self.eph.delete(&tx_key(id)).await?;
        Ok(())
    }

    /// Takes a transaction for the one request that finishes it: `LoginOver` if another
    /// took it first (or it lapsed).
    async fn claim_tx(&self, id: &str) -> Result<()> {
        match self.eph.take(&tx_key(id)).await? {
            Some(_) => Ok(()),
            None => Err(Error::LoginOver(msg::LOGIN_EXPIRED)),
        }
    }

    /// The CSRF token of a form: a keyed hash of what the form belongs to and the browser.
    pub fn csrf_token(&self, scope: &str, browser: &str) -> String {
        self.keyring
            .hash("csrf", format!("{scope}|{browser}").as_bytes())
    }

    pub fn check_csrf(&self, scope: &str, browser: &str, token: &str) -> Result<()> {
        if self
            .keyring
            .verify("csrf", format!("{scope}|{browser}").as_bytes(), token)
        {
            Ok(())
        } else {
            Err(Error::user(StatusCode::FORBIDDEN, msg::CSRF))
        }
    }

    /// The phone step's proof-of-work challenge, bound to this login and its browser.
    pub fn pow_challenge(&self, tx: &LoginTx, now: i64) -> String {
        pow::issue(
            &self.keyring,
            now,
            self.settings.pow_difficulty,
            &pow_binding(tx),
        )
    }

    /// Step 1: checks the proof of work and limits, then sends a code to `mobile`.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_phone(
        &self,
        tx: &mut LoginTx,
        mobile: &str,
        challenge: &str,
        nonce: &str,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let started = started("phone");
        let result = self
            .submit_phone_inner(tx, mobile, challenge, nonce, from, now)
            .await;
        observe(
            "phone",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    async fn submit_phone_inner(
        &self,
        tx: &mut LoginTx,
        mobile: &str,
        challenge: &str,
        nonce: &str,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let mobile =
            MobileNumber::parse(mobile).map_err(|_| Error::bad_request(msg::BAD_MOBILE))?;
        let random = pow::verify(
            &self.keyring,
            challenge,
            &pow_binding(tx),
            nonce,
            now,
            POW_MAX_AGE,
            self.settings.pow_difficulty,
        )
        .map_err(|_| Error::bad_request(msg::POW_FAILED))?;
        // A solved challenge buys one attempt, on any replica.
        if !self
            .eph
            .put_new(&format!("pow:{random}"), "1", self.secs(POW_MAX_AGE))
            .await?
        {
            return Err(Error::bad_request(msg::POW_FAILED));
        }
        let wider = service_kit::net::wider_ranges(from.ip);
        for (subject, max) in self.address_limits(
            Subject::IpLogin,
            from.ip,
            &wider,
            self.settings.sms_per_ip * 3,
        ) {
            self.limiter
                .hit(subject, max, Duration::from_secs(3600))
                .await?;
        }
        // Paid for: from here the store holds this login (a pending one is stored by
        // `send_code`), within the deployment's cap. A code that cannot be sent (limits,
        // the SMS budget, the gateway) stores nothing and gives the count back: the
        // citizen retries from the same page.
        let counted = !tx.persisted;
        let ahead = self.is_known_device(&mobile, tx, from);
        if counted {
            self.count_live_login(tx.request.as_ref(), ahead).await?;
            tx.persisted = true;
        }
        tx.mobile = Some(mobile.e164().to_owned());
        let sent = self.send_code(tx, &mobile, from, now).await;
        if sent.is_err() && counted {
            tx.persisted = false;
            if let Err(e) = self.uncount_live_login(tx.request.as_ref(), ahead).await {
                tracing::warn!(error = %e, "a login's count not given back");
            }
        }
        sent
    }

    /// The value of the known-device cookie for `mobile` in `browser`: set when the code
    /// sent to that phone was entered in that browser.
    pub fn known_device_token(&self, mobile: &str, browser: &str) -> String {
        self.keyring
            .hash("known-device", format!("{mobile}|{browser}").as_bytes())
    }

    fn is_known_device(&self, mobile: &MobileNumber, tx: &LoginTx, from: Origin<'_>) -> bool {
        from.known_device.is_some_and(|t| {
            self.keyring.verify(
                "known-device",
                format!("{}|{}", mobile.e164(), tx.browser).as_bytes(),
                t,
            )
        })
    }

    /// Sends a fresh code; also the "resend" action, no sooner than a minute after the last.
    ///
    /// The budgets are per (phone, browser), so a stranger who knows a number cannot spend
    /// its owner's: a minute's cooldown and `sms_per_phone` per 10 minutes. Browsers that
    /// never verified this phone have one more budget per (phone, address)
    /// (`sms_per_phone` × 3 an hour), which a stranger spends for their own address only,
    /// and all addresses together a cap per phone (four addresses' worth) that bounds SMS
    /// bombing through fresh browsers from many addresses; a browser where the owner
    /// verified it before (the signed known-device cookie) is held by neither. Every send
    /// also counts against the address and against the deployment's SMS rate.
    pub async fn send_code(
        &self,
        tx: &mut LoginTx,
        mobile: &MobileNumber,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let resend = self.settings.resend_secs;
        if now - tx.otp_sent_at < resend {
            return Err(Error::TooSoon {
                text: msg::RESEND_TOO_SOON,
                retry_after: (resend - (now - tx.otp_sent_at)).max(1) as u64,
            });
        }
        let phone_browser = format!("{}|{}", mobile.e164(), tx.browser);
        let cooldown = format!(
            "sms-cooldown:{}",
            self.keyring.hash("rate-subject", phone_browser.as_bytes())
        );
        if resend > 0 && !self.eph.put_new(&cooldown, "1", self.secs(resend)).await? {
            return Err(Error::TooSoon {
                text: msg::RESEND_TOO_SOON,
                retry_after: resend as u64,
            });
        }
        // A code that is not sent after all (a limit, the deployment's budget, the
        // gateway) gives back the cooldown and every count it took: the citizen retries
        // at once, and only codes sent count against anyone.
        let phone_address = format!("{}|{}", mobile.e164(), from.ip);
        let wider = service_kit::net::wider_ranges(from.ip);
        let mut taken: Vec<Subject<'_>> = Vec::new();
        let sent = self
            .send_within_limits(
                tx,
                mobile,
                from,
                (&phone_browser, &phone_address, &wider),
                &mut taken,
            )
            .await;
        let code = match sent {
            Ok(code) => code,
            Err(e) => {
                let _ = self.eph.delete(&cooldown).await;
                for s in taken {
                    let _ = self.limiter.refund(s).await;
                }
                return Err(e);
            }
        };
        metrics::counter!("emta_sms_sent_total").increment(1);
        tx.otp_hash = Some(
            self.keyring
                .hash("otp", format!("{}|{code}", tx.id).as_bytes()),
        );
        tx.otp_sent_at = now;
        tx.known_device = self.is_known_device(mobile, tx, from);
        tx.step = Step::Otp;
        // The tries are per login, not per code: five codes in all.
        self.save_tx(tx).await?;
        tracing::info!(phone = %mobile.masked(), "verification code sent");
        Ok(())
    }

    /// The SMS limits of [`Self::send_code`], then the send: the code sent. Each count
    /// taken is pushed on `taken` so that a failure can give it back.
    async fn send_within_limits<'s>(
        &self,
        tx: &LoginTx,
        mobile: &'s MobileNumber,
        from: Origin<'s>,
        (phone_browser, phone_address, wider): (&'s str, &'s str, &'s [(String, i64)]),
        taken: &mut Vec<Subject<'s>>,
    ) -> Result<String> {
        let mut limits = vec![(
            Subject::PhoneSms(phone_browser),
            self.settings.sms_per_phone,
            600,
        )];
        if !self.is_known_device(mobile, tx, from) {
            limits.push((
                Subject::PhoneSms(phone_address),
                self.settings.sms_per_phone * 3,
                3600,
            ));
            limits.push((
                Subject::PhoneSms(mobile.e164()),
                self.settings.sms_per_phone * 12,
                3600,
            ));
        }
        for (subject, max) in
            self.address_limits(Subject::IpSms, from.ip, wider, self.settings.sms_per_ip)
        {
            limits.push((subject, max, 3600));
        }
        for (subject, max, secs) in limits {
            self.limiter
                .hit(subject, max, Duration::from_secs(secs))
                .await?;
            taken.push(subject);
        }
        self.limiter
            .budget(Subject::SmsBudget, self.settings.sms_rps)
            .await?;
        let code = random_otp();
        let text = format!(
            "امتا: کد تأیید شما {code}\nemta code: {code}\nاین کد را به هیچ‌کس ندهید / never share it"
        );
        self.sms
            .send(mobile, &text)
            .await
            .map_err(|source| Error::Upstream {
                text: msg::SMS_DOWN,
                source,
            })?;
        Ok(code)
    }

    /// Step 2: checks the code. Five wrong codes void the transaction.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_otp(&self, tx: &mut LoginTx, code: &str, now: i64) -> Result<()> {
        let started = started("otp");
        let result = self.submit_otp_inner(tx, code, now).await;
        observe(
            "otp",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    async fn submit_otp_inner(&self, tx: &mut LoginTx, code: &str, now: i64) -> Result<()> {
        if tx.step != Step::Otp {
            return Err(Error::user(StatusCode::CONFLICT, msg::STEP_ORDER));
        }
        let code = crate::domain::digits::digits_only(code.trim());
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::bad_request(msg::OTP_FORMAT));
        }
        if now - tx.otp_sent_at > self.settings.otp_secs {
            return Err(Error::bad_request(msg::OTP_EXPIRED));
        }
        let mobile = tx.mobile.clone().unwrap_or_default();
        // Every try is counted before the code is compared, atomically: parallel guesses
        // cannot each see "fewer than five so far", and a try past the fifth is never
        // compared at all.
        let tries = self.count_step_try(tx, Step::Otp).await?;
        if tries > OTP_MAX_TRIES {
            return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
        }
        // And per (phone, browser), across its logins: opening new logins in a browser
        // buys it no new guesses. Not per phone: a stranger's wrong codes would then
        // lock the owner's right one out. Across browsers the guesses stay bounded per
        // code (five) and so per SMS, which the phone's SMS budgets bound.
        let phone_browser = format!("{mobile}|{}", tx.browser);
        let mut budgets = vec![(phone_browser.as_str(), self.settings.otp_tries_per_phone)];
        // And, from browsers that never verified this phone, a cap per phone (three
        // browsers' worth): the owner's known device is not held by it, so strangers
        // spending it lock nobody out, and their guesses stay bounded per phone too.
        if !tx.known_device {
            budgets.push((mobile.as_str(), self.settings.otp_tries_per_phone * 3));
        }
        for (subject, max) in budgets {
            self.limiter
                .hit(Subject::PhoneOtp(subject), max, Duration::from_secs(3600))
                .await
                .map_err(|e| match e {
                    Error::RateLimited { retry_after } => Error::TooSoon {
                        text: msg::OTP_TRIES,
                        retry_after,
                    },
                    other => other,
                })?;
        }
        let expected = tx.otp_hash.clone().unwrap_or_default();
        let right = self
            .keyring
            .verify("otp", format!("{}|{code}", tx.id).as_bytes(), &expected);
        if !right && tries < OTP_MAX_TRIES {
            return Err(Error::bad_request(msg::OTP_WRONG));
        }
        // The right code and the fifth wrong one may race: the first to claim the step's
        // outcome decides it, so a void stands and a success is never voided after it.
        let outcome = otp_outcome_key(&tx.id);
        let decided = self
            .eph
            .put_new(&outcome, "1", self.secs(self.settings.login_secs))
            .await?;
        if !decided {
            return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
        }
        if !right {
            self.drop_tx(&tx.id).await?;
            return Err(Error::LoginOver(msg::OTP_VOID));
        }
        tx.step = Step::Identity;
        tx.otp_hash = None;
        if !self.replace_tx(tx).await? {
            return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
        }
        Ok(())
    }

    /// Step 3: national ID and birth date, checked against both registries (or the
    /// identity cache). Opens the SSO session and returns its cookie value.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_identity(
        &self,
        tx: &mut LoginTx,
        national_id: &str,
        birth_date: &str,
        ip: &str,
        now: i64,
    ) -> Result<String> {
        let started = started("identity");
        let result = self
            .submit_identity_inner(tx, national_id, birth_date, ip, now)
            .await;
        observe(
            "identity",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    async fn submit_identity_inner(
        &self,
        tx: &mut LoginTx,
        national_id: &str,
        birth_date: &str,
        ip: &str,
        now: i64,
    ) -> Result<String> {
        if tx.step != Step::Identity {
            return Err(Error::user(StatusCode::CONFLICT, msg::STEP_ORDER));
        }
        let mobile = tx
            .mobile
            .as_deref()
            .and_then(|m| MobileNumber::parse(m).ok())
            .ok_or_else(|| Error::user(StatusCode::CONFLICT, msg::STEP_ORDER))?;
        // Checksum first: a typo must not cost a registry call.
        let nid =
            NationalId::parse(national_id).map_err(|_| Error::bad_request(msg::BAD_NATIONAL_ID))?;
        let birth = JalaliDate::parse(birth_date).map_err(|e| {
            Error::bad_request(match e {
                crate::domain::jalali::JalaliDateError::Format => msg::BAD_BIRTH_DATE,
                crate::domain::jalali::JalaliDateError::NoSuchDay => msg::BAD_BIRTH_DAY,
            })
        })?;
        // Nobody is born after today (in Tehran): a typo, refused before it costs a try
        // or a registry call (zero-padded ISO dates compare as strings).
        if birth.to_iso_string() > service_kit::clock::date_iso(now) {
            return Err(Error::bad_request(msg::BIRTH_IN_FUTURE));
        }
        self.count_identity_try(tx, &mobile, &nid, ip).await?;

        let cached = self.db.citizen_by_national_id(&nid).await?.filter(|c| {
            c.mobile == mobile
                && c.birth_date == birth
                && now - c.verified_at < self.settings.identity_cache_secs
        });
        let citizen = match cached {
            Some(c) => {
                metrics::counter!("emta_identity_cache_total", "outcome" => "hit").increment(1);
                c
            }
            None => {
                metrics::counter!("emta_identity_cache_total", "outcome" => "miss").increment(1);
                let verified = match self.ask_registries(&nid, &birth, &mobile).await {
                    Ok(v) => v,
                    Err(e @ (Error::Upstream { .. } | Error::Busy { .. })) => {
                        // The registries failed, not the citizen: the try is given back.
                        self.refund_identity_try(tx, &mobile, &nid, ip).await?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                let Some((given_name, family_name)) = verified else {
                    return Err(Error::user(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        msg::IDENTITY_MISMATCH,
                    ));
                };
                let candidate = Citizen {
                    id: format!("c-{}", random_token(15)),
                    national_id: nid.clone(),
                    mobile: mobile.clone(),
                    given_name,
                    family_name,
                    birth_date: birth,
                    verified_at: now,
                };
                self.db.upsert_citizen(&candidate, now).await?
            }
        };
        let cookie = random_token(32);
        let session = Session {
            sid: random_token(16),
            citizen_id: citizen.id.clone(),
            auth_time: now,
        };
        self.save_session(&cookie, &session).await?;
        tx.sid = Some(session.sid);
        tx.step = Step::Consent;
        self.save_tx(tx).await?;
        Ok(cookie)
    }

    /// Counts an identity try before anything is looked up, atomically, so that parallel
    /// submissions cannot all pass: per login (the fourth voids it), per address, per
    /// verified phone, and per (phone, national ID) pair. Nothing is counted per national
    /// ID alone: only the phone registered to a national ID can ever match it, so a
    /// stranger's failures (from another phone) must not and do not lock its owner out.
    async fn count_identity_try(
        &self,
        tx: &LoginTx,
        mobile: &MobileNumber,
        nid: &NationalId,
        ip: &str,
    ) -> Result<()> {
        let tries = self.count_step_try(tx, Step::Identity).await?;
        if tries > IDENTITY_MAX_TRIES {
            self.drop_tx(&tx.id).await?;
            return Err(Error::LoginOver(msg::IDENTITY_VOID));
        }
        let pair = pair(mobile, nid);
        for (subject, max) in self.identity_budgets(mobile, &pair, ip) {
            self.limiter
                .hit(subject, max, Duration::from_secs(3600))
                .await?;
        }
        Ok(())
    }

    /// The hourly budgets an identity try counts against: per address, per verified phone
    /// and per (phone, national ID) pair; counted and refunded alike.
    fn identity_budgets<'a>(
        &self,
        mobile: &'a MobileNumber,
        pair: &'a str,
        ip: &'a str,
    ) -> [(Subject<'a>, i64); 3] {
        [
            (Subject::IpIdentity(ip), self.settings.identity_tries_per_ip),
            (
                Subject::PhoneIdentity(mobile.e164()),
                self.settings.identity_tries_per_phone,
            ),
            (
                Subject::PairIdentity(pair),
                self.settings.fails_per_national_id,
            ),
        ]
    }

    /// Counts one try of `step` in this login (for its lifetime) and returns the count.
    async fn count_step_try(&self, tx: &LoginTx, step: Step) -> Result<i64> {
        let key = step_tries_key(tx, step);
        let window = self.secs(self.settings.login_secs);
        Ok(self.eph.hit(&key, window).await?.count)
    }

    /// Gives back what [`Self::count_identity_try`] counted.
    async fn refund_identity_try(
        &self,
        tx: &LoginTx,
        mobile: &MobileNumber,
        nid: &NationalId,
        ip: &str,
    ) -> Result<()> {
        self.eph.unhit(&step_tries_key(tx, Step::Identity)).await?;
        let pair = pair(mobile, nid);
        for (subject, _) in self.identity_budgets(mobile, &pair, ip) {
            self.limiter.refund(subject).await?;
        }
        Ok(())
    }

    /// Both registries, concurrently. `None` is a mismatch of any kind: the citizen is not
    /// told which field was wrong, so the form cannot be used to probe the registry.
    async fn ask_registries(
        &self,
        nid: &NationalId,
        birth: &JalaliDate,
        mobile: &MobileNumber,
    ) -> Result<Option<(String, String)>> {
        self.limiter
            .budget(Subject::RegistryBudget, self.settings.registry_rps)
            .await?;
        let (person, owns) = tokio::join!(
            self.registry.check_person(nid, birth),
            self.registry.owns_mobile(nid, mobile)
        );
        let upstream = |source| Error::Upstream {
            text: msg::REGISTRY_DOWN,
            source,
        };
        let person = person.map_err(upstream)?;
        let owns = owns.map_err(upstream)?;
        Ok(match (person, owns) {
            (
                PersonCheck::Match {
                    given_name,
                    family_name,
                },
                true,
            ) => Some((given_name, family_name)),
            _ => None,
        })
    }

    pub async fn save_session(&self, cookie: &str, s: &Session) -> Result<()> {
        let json = serde_json::to_string(s).map_err(|e| Error::Internal(e.to_string()))?;
        self.eph
            .put(
                &session_key(cookie),
                &json,
                self.secs(self.settings.session_secs),
            )
            .await?;
        // Index by sid too, for RP-initiated logout with only an id_token_hint.
        self.eph
            .put(
                &format!("sid:{}", s.sid),
                &session_key(cookie),
                self.secs(self.settings.session_secs),
            )
            .await?;
        Ok(())
    }

    pub async fn session(&self, cookie: Option<&str>) -> Result<Option<Session>> {
        let Some(cookie) = cookie.filter(|c| c.len() <= 64) else {
            return Ok(None);
        };
        Ok(self
            .eph
            .get(&session_key(cookie))
            .await?
            .and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    pub async fn end_session(&self, cookie: Option<&str>, sid: Option<&str>) -> Result<()> {
        if let Some(c) = cookie {
            self.eph.delete(&session_key(c)).await?;
        }
        if let Some(sid) = sid {
            if let Some(key) = self.eph.take(&format!("sid:{sid}")).await? {
                self.eph.delete(&key).await?;
            }
        }
        Ok(())
    }
}
