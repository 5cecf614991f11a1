//! OpenID Connect Back-Channel Logout 1.0: when a citizen signs out (or withdraws a
//! manufacturer's consent), each client that registered a `backchannel_logout_uri` and
//! holds a grant from that session is sent a logout token, so that its own session ends
//! too, not only at the next refresh.
//!
//! Deliveries are an outbox in SQL, written in the transaction that revokes the grants, so
//! a crash loses none. Any replica delivers: it claims a row by moving its next attempt
//! forward (compare-and-set on `next_at`), posts the token, and deletes the row on a 2xx
//! answer; otherwise the row waits for its next attempt (backoff 2, 4, 8 … s, up to an
//! hour) and is abandoned, with a warning and a metric, after [`MAX_ATTEMPTS`].

use std::time::Duration;

use serde_json::json;

use crate::core::Core;
use crate::crypto::random_token;
use crate::error::Result;
use crate::store::sql::LogoutDelivery;

pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token lives two minutes (the specification recommends at most that).
pub const TOKEN_TTL: i64 = 120;
pub const MAX_ATTEMPTS: i64 = 12;
/// How long a manufacturer has to answer one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds until the attempt after attempt `n` (1-based).
pub fn backoff(n: i64) -> i64 {
    (1_i64 << n.clamp(1, 12)).min(3600)
}

/// Deliveries over the provider's core (`core.backchannel()`).
#[derive(Clone, Copy)]
pub struct Backchannel<'a>(pub(crate) &'a Core);

impl Backchannel<'_> {
    /// Delivers what is due now, concurrently; returns how many were delivered.
    pub async fn deliver_due(&self, now: i64) -> Result<usize> {
        let due = self.0.db.due_logout_deliveries(now, 64).await?;
        let mut attempts = tokio::task::JoinSet::new();
        for d in due {
            let core = self.0.clone();
            attempts.spawn(async move { core.backchannel().attempt(d, now).await });
        }
        Ok(attempts
            .join_all()
            .await
            .into_iter()
            .filter(|delivered| *delivered)
            .count())
    }

    /// One attempt at one delivery; true if the client acknowledged it.
    async fn attempt(&self, d: LogoutDelivery, now: i64) -> bool {
        let core = self.0;
        let attempt = d.attempts + 1;
        // The claim holds the row until this attempt can have ended (its timeout), so that
        // no round on any replica posts it meanwhile; a failed attempt then sets its retry.
        let lease = DELIVERY_TIMEOUT.as_secs() as i64 + 1;
        match core
            .db
            .claim_logout_delivery(&d, now + lease.max(backoff(attempt)))
            .await
        {
            Ok(true) => {}
            Ok(false) => return false, // another replica has it
            Err(e) => {
                tracing::warn!(error = %e, "claiming a logout delivery failed");
                return false;
            }
        }
        let outcome = self.post(&d, now).await;
        let finished = match &outcome {
            Ok(()) => Some("delivered"),
            Err(_) if attempt >= MAX_ATTEMPTS => Some("abandoned"),
            Err(_) => None,
        };
        if let Err(e) = &outcome {
            tracing::warn!(client = %d.client_id, attempt, error = %e, "logout token not delivered");
        }
        metrics::counter!("emta_backchannel_logout_total",
            "outcome" => finished.unwrap_or("retrying"))
        .increment(1);
        if finished.is_some() {
            if let Err(e) = core.db.delete_logout_delivery(&d.id).await {
                tracing::warn!(error = %e, "removing a finished logout delivery failed");
            }
        } else if let Err(e) = core
            .db
            .retry_logout_delivery(&d.id, attempt, crate::now() + backoff(attempt))
            .await
        {
            tracing::warn!(error = %e, "rescheduling a logout delivery failed");
        }
        outcome.is_ok()
    }

    /// Signs a fresh logout token for the delivery and posts it (form-encoded, as the
    /// specification says); Ok on a 2xx answer.
    async fn post(&self, d: &LogoutDelivery, now: i64) -> std::result::Result<(), String> {
        let core = self.0;
        let client = core
            .clients
            .get(&d.client_id)
            .ok_or_else(|| "the client is gone".to_owned())?;
        let uri = client
            .backchannel_logout_uri
            .as_ref()
            .ok_or_else(|| "the client no longer has a logout URI".to_owned())?;
        let claims = json!({
            "iss": core.issuer(),
            "aud": client.id.as_str(),
            "iat": now,
            "exp": now + TOKEN_TTL,
            "jti": random_token(16),
            "sub": core.subject(&client, &d.citizen_id),
            "sid": d.sid,
            "events": { EVENT: {} },
        });
        let token = core
            .keys
            .sign_typed(client.id_token_alg, Some("logout+jwt"), &claims)
            .map_err(|e| e.to_string())?;
        core.outbound
            .post_logout_token(uri.as_str(), &token, DELIVERY_TIMEOUT)
            .await
    }
}

/// Delivers logout tokens until the process stops: at once when woken (a sign-out on this
/// replica), and every second for retries and for sign-outs on other replicas. Each round
/// runs on its own (up to [`ROUNDS_IN_FLIGHT`] at once), so a manufacturer whose endpoint
/// holds a delivery for its whole timeout delays nobody else's; the claim on each row
/// keeps rounds from taking the same one.
pub async fn run(core: Core) {
    let rounds = std::sync::Arc::new(tokio::sync::Semaphore::new(ROUNDS_IN_FLIGHT));
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), core.deliveries.notified()).await;
        let Ok(permit) = rounds.clone().acquire_owned().await else {
            return;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = core.backchannel().deliver_due(crate::now()).await {
                tracing::warn!(error = %e, "back-channel logout deliveries failed this round");
            }
            drop(permit);
        });
    }
}

/// Rounds of deliveries at once (each at most 64 deliveries, 4 of any one client's).
pub const ROUNDS_IN_FLIGHT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(backoff(1), 2);
        assert_eq!(backoff(5), 32);
        assert_eq!(backoff(MAX_ATTEMPTS), 3600);
        let total: i64 = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!(total > 3600 && total < 3 * 3600, "{total}");
    }
}
