//! Abuse limits shared by all replicas: fixed-window counters in the ephemeral store
//! (Redis in production, so N replicas never give N times the quota).
//!
//! Subjects are keyed hashes, not raw phone numbers or national IDs, so that a look at
//! Redis reveals no identities.

use std::time::Duration;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::store::Ephemeral;

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
    /// Another service's subject (the presale service's joins, applications, staff logins),
    /// counted the same way.
    Named(&'static str, &'a str),
}

impl Subject<'_> {
    fn key(&self, keys: &Keyring) -> String {
        let (kind, value) = match self {
            Self::PhoneSms(v) => ("sms-phone", v),
            Self::IpSms(v) => ("sms-ip", v),
            Self::IpLogin(v) => ("login-ip", v),
            Self::NationalIdFail(v) => ("nid-fail", v),
            Self::Named(kind, v) => (*kind, v),
            Self::ClientToken(v) => return format!("rl:client:{v}"),
        };
        format!(
            "rl:{kind}:{}",
            &keys.hash("rate-subject", value.as_bytes())[..22]
        )
    }
}

#[derive(Clone)]
pub struct Limiter {
    store: Ephemeral,
    keys: Keyring,
}

impl Limiter {
    pub fn new(store: Ephemeral, keys: Keyring) -> Self {
        Self { store, keys }
    }

    /// Counts one hit; fails with 429 once more than `max` hits fall in `window`.
    pub async fn hit(&self, subject: Subject<'_>, max: i64, window: Duration) -> Result<()> {
        let hit = self.store.hit(&subject.key(&self.keys), window).await?;
        if hit.count > max {
            metrics::counter!("emta_rate_limited_total", "subject" => subject_label(subject))
                .increment(1);
            return Err(Error::RateLimited {
                retry_after: hit.reset_in.as_secs().max(1),
            });
        }
        Ok(())
    }

    /// Fails with 429 if `max` hits are already counted, without counting one.
    pub async fn check(&self, subject: Subject<'_>, max: i64) -> Result<()> {
        if self.store.count(&subject.key(&self.keys)).await? >= max {
            metrics::counter!("emta_rate_limited_total", "subject" => subject_label(subject))
                .increment(1);
            return Err(Error::RateLimited { retry_after: 600 });
        }
        Ok(())
    }
}

fn subject_label(s: Subject<'_>) -> &'static str {
    match s {
        Subject::PhoneSms(_) => "phone_sms",
        Subject::IpSms(_) => "ip_sms",
        Subject::IpLogin(_) => "ip_login",
        Subject::NationalIdFail(_) => "national_id_fail",
        Subject::ClientToken(_) => "client_token",
        Subject::Named(kind, _) => kind,
    }
}
