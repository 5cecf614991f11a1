//! Abuse limits shared by all replicas: fixed-window counters in the ephemeral store
//! (Redis in production, so N replicas never give N times the quota).
//!
//! Subjects are keyed hashes, not raw phone numbers or national IDs, so that a look at
//! Redis reveals no identities.

use std::time::Duration;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::store::Ephemeral;
use service_kit::limit::LimitError;

#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// SMS sends to one phone number.
    PhoneSms(&'a str),
    /// SMS sends triggered from one client IP.
    IpSms(&'a str),
    /// Login starts (PoW verifications) from one IP.
    IpLogin(&'a str),
    /// Failed identity verifications of one national ID.
    NationalIdFail(&'a str),
    /// Token-endpoint requests of one client.
    ClientToken(&'a str),
}

impl Subject<'_> {
    fn key(&self, limiter: &service_kit::limit::Limiter) -> String {
        let (kind, value) = match self {
            Self::PhoneSms(v) => ("sms-phone", v),
            Self::IpSms(v) => ("sms-ip", v),
            Self::IpLogin(v) => ("login-ip", v),
            Self::NationalIdFail(v) => ("nid-fail", v),
            Self::ClientToken(v) => return format!("rl:client:{v}"),
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
    pub async fn hit(&self, subject: Subject<'_>, max: i64, window: Duration) -> Result<()> {
        let r = self.0.hit_key(&subject.key(&self.0), max, window).await;
        self.answer(subject, r)
    }

    /// Fails with 429 if `max` hits are already counted, without counting one.
    pub async fn check(&self, subject: Subject<'_>, max: i64) -> Result<()> {
        let r = self.0.check_key(&subject.key(&self.0), max).await;
        self.answer(subject, r)
    }

    fn answer(&self, subject: Subject<'_>, r: Result<(), LimitError>) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(LimitError::Limited { retry_after }) => {
                metrics::counter!("emta_rate_limited_total", "subject" => subject_label(subject))
                    .increment(1);
                Err(Error::RateLimited { retry_after })
            }
            Err(LimitError::Store(e)) => Err(e.into()),
        }
    }
}

fn subject_label(s: Subject<'_>) -> &'static str {
    match s {
        Subject::PhoneSms(_) => "phone_sms",
        Subject::IpSms(_) => "ip_sms",
        Subject::IpLogin(_) => "ip_login",
        Subject::NationalIdFail(_) => "national_id_fail",
        Subject::ClientToken(_) => "client_token",
    }
}
