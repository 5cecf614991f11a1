//! Abuse limits shared by all replicas: fixed-window counters in the ephemeral store
//! (Redis in production, so N replicas never give N times the quota).
//!
//! Subjects are keyed hashes, not raw phone numbers or national IDs, so that a look at
//! Redis reveals no identities.

use std::time::Duration;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::store::Ephemeral;
use service_kit::ephemeral::Counter;
use service_kit::limit::LimitError;

#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// SMS sends to one phone number.
    PhoneSms(&'a str),
    /// SMS sends triggered from one client IP.
    IpSms(&'a str),
    /// Phone submissions (PoW verifications) from one IP.
    IpLogin(&'a str),
    /// Login transactions opened from one IP.
    IpLoginStart(&'a str),
    /// SMS codes tried for one phone, across its logins.
    PhoneOtp(&'a str),
    /// Identity tries by one verified phone, whatever national IDs they name.
    PhoneIdentity(&'a str),
    /// Identity tries from one IP.
    IpIdentity(&'a str),
    /// Identity tries of one (phone, national ID) pair: `phone|national ID`.
    PairIdentity(&'a str),
    /// Token-endpoint requests of one client.
    ClientToken(&'a str),
    /// Login transactions opened for one client (or the account page), per second.
    ClientLoginStart(&'a str),
    /// Registry checks per second, all citizens and replicas together.
    RegistryBudget,
    /// SMS sends per second, all citizens and replicas together.
    SmsBudget,
    /// Login transactions stored per login lifetime, all clients and replicas together.
    LiveLogins,
    /// Pushed authorization requests of one client, per second.
    ClientPush(&'a str),
    /// Pushed requests stored per their lifetime, all clients and replicas together.
    LivePushes,
    /// Consent-only logins and codes at authorize of one SSO session (by its sid).
    SessionLogins(&'a str),
    /// One login's tries of one step: the store's own key (`tries:…`), for its lifetime.
    LoginTries(&'a str),
}

impl Subject<'_> {
    /// A deployment's budget or capacity (refused with 503 and Retry-After: the service is
    /// busy or full), not a subject's own limit (429).
    fn busy(&self) -> bool {
        matches!(
            self,
            Self::RegistryBudget
                | Self::SmsBudget
                | Self::LiveLogins
                | Self::LivePushes
                | Self::ClientPush(_)
                | Self::ClientLoginStart(_)
        )
    }

    /// What the subject's hit costs the store ([`Counter`]): a citizen's own counters
    /// (their phone, their phone and national ID, a login's tries) are mostly hit once,
    /// new; an address's (shared behind a carrier's NAT), a client's, a session's and the
    /// deployment's budgets mostly exist already.
    fn counter(&self) -> Counter {
        match self {
            Self::PhoneSms(_)
            | Self::PhoneOtp(_)
            | Self::PhoneIdentity(_)
            | Self::PairIdentity(_)
            | Self::LoginTries(_) => Counter::Own,
            Self::IpSms(_)
            | Self::IpLogin(_)
            | Self::IpLoginStart(_)
            | Self::IpIdentity(_)
            | Self::ClientToken(_)
            | Self::ClientLoginStart(_)
            | Self::RegistryBudget
            | Self::SmsBudget
            | Self::LiveLogins
            | Self::ClientPush(_)
            | Self::LivePushes
            | Self::SessionLogins(_) => Counter::Shared,
        }
    }

    fn key(&self, limiter: &service_kit::limit::Limiter) -> String {
        let (kind, value) = match self {
            Self::PhoneSms(v) => ("sms-phone", v),
            Self::IpSms(v) => ("sms-ip", v),
            Self::IpLogin(v) => ("login-ip", v),
            Self::IpLoginStart(v) => ("login-start-ip", v),
            Self::SessionLogins(v) => ("login-session", v),
            Self::PhoneOtp(v) => ("otp-phone", v),
            Self::PhoneIdentity(v) => ("id-phone", v),
            Self::IpIdentity(v) => ("id-ip", v),
            Self::PairIdentity(v) => ("id-pair", v),
            Self::ClientToken(v) => return format!("rl:client:{v}"),
            Self::ClientLoginStart(v) => return format!("rl:login-client:{v}"),
            Self::RegistryBudget => return "rl:budget:registry".into(),
            Self::SmsBudget => return "rl:budget:sms".into(),
            Self::LiveLogins => return "rl:budget:live-logins".into(),
            Self::ClientPush(v) => return format!("rl:push-client:{v}"),
            Self::LivePushes => return "rl:budget:live-pushes".into(),
            Self::LoginTries(key) => return (*key).to_owned(),
        };
        limiter.key(kind, value)
    }
}

/// The IdP's limits over the shared limiter, counted in its metrics and answered with
/// its error type.
#[derive(Clone)]
pub struct Limiter(service_kit::limit::Limiter);

impl Limiter {
    pub fn new(store: Ephemeral, keys: Keyring) -> Self {
        Self(service_kit::limit::Limiter::new(
            store,
            keys.inner().clone(),
        ))
    }

    /// Counts one hit; fails with 429 once more than `max` hits fall in `window`.
    /// A deployment's budget or capacity ([`Subject::busy`]) fails with 503 instead.
    pub async fn hit(&self, subject: Subject<'_>, max: i64, window: Duration) -> Result<()> {
        self.0
            .hit_key_as(&subject.key(&self.0), max, window, subject.counter())
            .await
            .map_err(|e| refusal(subject, e))
    }

    /// Counts one hit on each of `limits` (subject, max, window) in order, refused as
    /// [`Self::hit`] one after another would be (a deployment's budget or capacity with
    /// 503, as [`Self::budget`]), stopping at the first refusal; on a single Redis server
    /// in one round trip ([`service_kit::limit::Limiter::hit_keys`]). `Err((i, e))`: the
    /// first `i` were counted and stay counted (and the `i`-th, refused); those after it
    /// were not. `Ok`: each subject's count with this hit.
    pub async fn hit_all(
        &self,
        limits: &[(Subject<'_>, i64, Duration)],
    ) -> std::result::Result<Vec<i64>, (usize, Error)> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = limits.iter().map(|(s, _, _)| s.key(&self.0)).collect();
        let asked: Vec<(&str, i64, Duration, Counter)> = keys
            .iter()
            .zip(limits)
            .map(|(k, (subject, max, window))| (k.as_str(), *max, *window, subject.counter()))
            .collect();
        self.0
            .hit_keys_as(&asked)
            .await
            .map_err(|(i, e)| (i, refusal(limits[i.min(limits.len() - 1)].0, e)))
    }

    /// Reads a subject's count in its current window and the time that window has left.
    pub async fn window(&self, subject: Subject<'_>) -> Result<(i64, Option<Duration>)> {
        self.0
            .window_key(&subject.key(&self.0))
            .await
            .map_err(|e| match e {
                LimitError::Store(e) => e.into(),
                LimitError::Limited { retry_after } => Error::RateLimited { retry_after },
            })
    }

    /// Reads a subject's count in its current window, without counting.
    pub async fn count(&self, subject: Subject<'_>) -> Result<i64> {
        self.0
            .count_key(&subject.key(&self.0))
            .await
            .map_err(|e| match e {
                LimitError::Store(e) => e.into(),
                LimitError::Limited { retry_after } => Error::RateLimited { retry_after },
            })
    }

    /// Takes back one hit (a try the service failed, not the citizen).
    pub async fn refund(&self, subject: Subject<'_>) -> Result<()> {
        self.0
            .unhit_key(&subject.key(&self.0))
            .await
            .map_err(|e| refusal(subject, e))
    }

    /// Counts one use of a shared per-second budget; past `per_second`, fails with 503
    /// and Retry-After (the service is busy, not the citizen at fault).
    pub async fn budget(&self, subject: Subject<'_>, per_second: i64) -> Result<()> {
        debug_assert!(
            subject.busy(),
            "a budget is the deployment's, answered with 503"
        );
        self.hit(subject, per_second, Duration::from_secs(1)).await
    }

    /// Counts a refusal decided elsewhere (an in-process limiter) under its subject.
    pub fn refused(&self, subject: Subject<'_>) {
        metrics::counter!("emta_rate_limited_total", "subject" => subject_label(subject))
            .increment(1);
    }
}

/// The error a refusal is answered with: 503 for a deployment's budget or capacity
/// ([`Subject::busy`]: the service is busy, not the citizen at fault), 429 otherwise;
/// counted in `emta_rate_limited_total` but for a login's own tries past its last (the
/// login's end, not a limit).
fn refusal(subject: Subject<'_>, e: LimitError) -> Error {
    match e {
        LimitError::Limited { retry_after } => {
            if !matches!(subject, Subject::LoginTries(_)) {
                metrics::counter!("emta_rate_limited_total", "subject" => subject_label(subject))
                    .increment(1);
            }
            if subject.busy() {
                Error::Busy { retry_after }
            } else {
                Error::RateLimited { retry_after }
            }
        }
        LimitError::Store(e) => e.into(),
    }
}

fn subject_label(s: Subject<'_>) -> &'static str {
    match s {
        Subject::PhoneSms(_) => "phone_sms",
        Subject::IpSms(_) => "ip_sms",
        Subject::IpLogin(_) => "ip_login",
        Subject::IpLoginStart(_) => "ip_login_start",
        Subject::PhoneOtp(_) => "phone_otp",
        Subject::PhoneIdentity(_) => "phone_identity",
        Subject::IpIdentity(_) => "ip_identity",
        Subject::PairIdentity(_) => "pair_identity",
        Subject::ClientToken(_) => "client_token",
        Subject::ClientLoginStart(_) => "client_login_start",
        Subject::RegistryBudget => "registry_budget",
        Subject::SmsBudget => "sms_budget",
        Subject::LiveLogins => "live_logins",
        Subject::ClientPush(_) => "client_push",
        Subject::LivePushes => "live_pushes",
        Subject::SessionLogins(_) => "session_logins",
        Subject::LoginTries(_) => "login_tries",
    }
}
