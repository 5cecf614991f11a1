//! Fixed-window rate limits shared by every replica: counters in the ephemeral store
//! (Redis in production, so N replicas never give N times the quota).
//!
//! Subjects are keyed hashes, not raw phone numbers or national IDs, so that a look at
//! Redis reveals no identities.

use std::time::Duration;

use crate::ephemeral::{Counter, Ephemeral, EphemeralError};
use crate::keys::Keyring;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Over the limit: answer 429 with this Retry-After.
    #[error("rate limited for {retry_after}s")]
    Limited { retry_after: u64 },
    #[error(transparent)]
    Store(#[from] EphemeralError),
}

#[derive(Clone)]
pub struct Limiter {
    store: Ephemeral,
    keys: Keyring,
}

/// A refusal whose window ends in `reset_in`: Retry-After rounded up to whole seconds (a
/// client told to come back sooner than the window ends is refused again).
fn refused(reset_in: Duration) -> LimitError {
    LimitError::Limited {
        retry_after: (reset_in.as_millis() as u64).div_ceil(1000).max(1),
    }
}

impl Limiter {
    pub fn new(store: Ephemeral, keys: Keyring) -> Self {
        Self { store, keys }
    }

    /// The counter's key for one subject (`kind`, `value`): the value is hashed.
    pub fn key(&self, kind: &str, value: &str) -> String {
        format!(
            "rl:{kind}:{}",
            &self.keys.hash("rate-subject", value.as_bytes())[..22]
        )
    }

    /// Counts one hit on `key`; fails once more than `max` hits fall in `window`.
    pub async fn hit_key(&self, key: &str, max: i64, window: Duration) -> Result<(), LimitError> {
        self.hit_key_as(key, max, window, Counter::Shared).await
    }

    /// [`Self::hit_key`] at the cost `counter` expects ([`Counter`]).
    pub async fn hit_key_as(
        &self,
        key: &str,
        max: i64,
        window: Duration,
        counter: Counter,
    ) -> Result<(), LimitError> {
        let hit = self.store.hit_counter(key, window, max, counter).await?;
        if hit.count > max {
            return Err(refused(hit.reset_in));
        }
        Ok(())
    }

    /// Counts one hit on each of `limits` (key, max, window) in order, as
    /// [`Self::hit_key`] one after another would, stopping at the first refusal (those
    /// after it are not counted); on a single Redis server in one round trip, atomically
    /// ([`Ephemeral::hit_many`]). `Ok`: each key's count with this hit. `Err((i, e))`:
    /// the first `i` were counted and stay counted; for a refusal, so does the `i`-th (a
    /// refused hit counts, as with [`Self::hit_key`]). For a store error `i` is what is
    /// known to be counted, a lower bound: on a single server a script whose answer was
    /// lost may have counted more (so a caller refunds too little, never too much).
    pub async fn hit_keys(
        &self,
        limits: &[(&str, i64, Duration)],
    ) -> Result<Vec<i64>, (usize, LimitError)> {
        let limits: Vec<_> = limits
            .iter()
            .map(|(k, max, w)| (*k, *max, *w, Counter::Shared))
            .collect();
        self.hit_keys_as(&limits).await
    }

    /// [`Self::hit_keys`], each counter at the cost it expects ([`Counter`]).
    pub async fn hit_keys_as(
        &self,
        limits: &[(&str, i64, Duration, Counter)],
    ) -> Result<Vec<i64>, (usize, LimitError)> {
        let asked: Vec<(&str, Duration, i64, Counter)> = limits
            .iter()
            .map(|(k, max, w, counter)| (*k, *w, *max, *counter))
            .collect();
        let hits = self
            .store
            .hit_counters(&asked)
            .await
            .map_err(|(i, e)| (i, LimitError::Store(e)))?;
        match hits.iter().zip(limits).position(|(h, l)| h.count > l.1) {
            None if hits.len() == limits.len() => Ok(hits.iter().map(|h| h.count).collect()),
            None => Err((
                hits.len(),
                LimitError::Store(crate::ephemeral::EphemeralError::Setup(
                    "fewer hits counted than asked".into(),
                )),
            )),
            Some(first) => Err((first, refused(hits[first].reset_in))),
        }
    }

    /// Takes back one hit on `key` (see [`Ephemeral::unhit`]).
    pub async fn unhit_key(&self, key: &str) -> Result<(), LimitError> {
        Ok(self.store.unhit(key).await?)
    }

    /// Counts one hit for the subject (`kind`, `value`).
    pub async fn hit(
        &self,
        kind: &str,
        value: &str,
        max: i64,
        window: Duration,
    ) -> Result<(), LimitError> {
        self.hit_key(&self.key(kind, value), max, window).await
    }

    /// [`Self::hit`] for a subject's own counter, mostly hit once, new ([`Counter::Own`]).
    pub async fn hit_own(
        &self,
        kind: &str,
        value: &str,
        max: i64,
        window: Duration,
    ) -> Result<(), LimitError> {
        self.hit_key_as(&self.key(kind, value), max, window, Counter::Own)
            .await
    }

    /// The hits counted on `key` in its current window.
    pub async fn count_key(&self, key: &str) -> Result<i64, LimitError> {
        Ok(self.store.count(key).await?)
    }

    /// The hits counted on `key` and how long its window has left.
    pub async fn window_key(&self, key: &str) -> Result<(i64, Option<Duration>), LimitError> {
        Ok(self.store.window(key).await?)
    }

    /// Fails if `max` hits are already counted on `key`, without counting one.
    pub async fn check_key(&self, key: &str, max: i64) -> Result<(), LimitError> {
        if self.store.count(key).await? >= max {
            return Err(LimitError::Limited { retry_after: 600 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hit_past_the_limit_is_refused_with_retry_after() {
        let l = Limiter::new(Ephemeral::memory(), Keyring::new(b"k", &[]));
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            l.hit("join", "0012345678", 3, w)
                .await
                .expect("within limit");
        }
        match l.hit("join", "0012345678", 3, w).await {
            Err(LimitError::Limited { retry_after }) => assert!(retry_after >= 1),
            other => panic!("expected a limit, got {other:?}"),
        }
        assert!(!l.key("join", "0012345678").contains("0012345678"));
    }
}
