//! The per-client token budget (`EMTA_TOKEN_RPS_PER_CLIENT`, for the whole deployment)
//! without a round trip per request.
//!
//! It was a fixed window in Redis: one script per token request, on every replica, which
//! held `client_credentials` to 29% of the replica's `/healthz` rate (issue 33). Now each
//! replica holds an in-process GCRA limiter (`governor`) per client with its share of the
//! budget, `ceil(budget / live replicas)`; the replicas are counted in the shared store
//! once a second (a presence set each one refreshes, [`Ephemeral::presence`]), so the
//! deployment's total stays the budget (plus at most one request a second per replica, the
//! rounding) as replicas come and go. A replica that cannot reach the store keeps the last
//! count, and until its first count assumes the autoscaler's ceiling: it never falls back
//! to one (which would multiply the budget by the replicas). A count that drops (a wiped or
//! failed-over store, the members not back yet) is believed only once the higher count is
//! older than a presence lasts. A new count gives each
//! client a fresh burst of its share (a second's worth, once per change).
//!
//! What it gives up: a client whose every connection lands on one replica gets that
//! replica's share, not the whole budget. The ingress spreads connections; a manufacturer
//! that needs the whole budget opens more than one.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How long a replica's presence lasts without a refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(5);

/// The presence set's key in the shared store.
pub const PRESENCE_KEY: &str = "idp-replicas";

/// How often a replica refreshes its presence (its own task, each call bounded by it).
pub const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// The replicas assumed until the first count: the deployment's autoscaler ceiling
/// (`k8s/`), so that a replica started while the store cannot answer errs low (its
/// clients get less than their budget), never high (N times it).
pub const ASSUMED_UNTIL_COUNTED: usize = 24;

/// The most replicas a count is believed at (a store that says more was written by
/// someone else).
pub const MAX_REPLICAS: usize = 256;

pub struct ClientRates {
    budget: i64,
    replicas: AtomicUsize,
    /// The highest count of the last [`PRESENCE_TTL`] and when it was seen: a count that
    /// drops (a wiped or failed-over store, members not yet back) is believed only once
    /// the higher one is older than a presence lasts, so shares never jump up at once.
    high: std::sync::Mutex<Option<(usize, std::time::Instant)>>,
    /// The share the limiter below was built for, and the limiter.
    limiter: RwLock<(u32, Arc<DefaultKeyedRateLimiter<String>>)>,
}

impl ClientRates {
    pub fn new(budget: i64) -> Self {
        let share = share(budget, ASSUMED_UNTIL_COUNTED);
        Self {
            budget,
            replicas: AtomicUsize::new(ASSUMED_UNTIL_COUNTED),
            high: std::sync::Mutex::new(None),
            limiter: RwLock::new((share, Arc::new(limiter(share)))),
        }
    }

    /// The live replicas (at least this one), as the presence set counted them.
    pub fn set_replicas(&self, n: usize) {
        let counted = n.clamp(1, MAX_REPLICAS);
        let n = {
            let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
            match *high {
                Some((h, at)) if counted < h && at.elapsed() < PRESENCE_TTL => h,
                _ => {
                    *high = Some((counted, std::time::Instant::now()));
                    counted
                }
            }
        };
        self.replicas.store(n, Ordering::Relaxed);
        let share = share(self.budget, n);
        let mut l = self.limiter.write().unwrap_or_else(|p| p.into_inner());
        if l.0 != share {
            *l = (share, Arc::new(limiter(share)));
        }
        // Clients not seen for a while are forgotten (the map holds the active ones).
        l.1.retain_recent();
    }

    pub fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// This replica's share of the budget, per second.
    pub fn share(&self) -> u32 {
        self.limiter.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Counts one token request of `client`; `Err(retry_after_secs)` past its share.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if self.budget <= 0 {
            return Err(1);
        }
        let limiter = self
            .limiter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone();
        limiter.check_key(&client.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

/// `ceil(budget / replicas)`, at least 1, at most `u32::MAX`.
fn share(budget: i64, replicas: usize) -> u32 {
    let s = (budget.max(1) as u64).div_ceil(replicas.max(1) as u64);
    s.clamp(1, u32::MAX as u64) as u32
}

/// A second's share at once (the fixed window it replaces allowed as much), refilled
/// evenly over the second.
fn limiter(share: u32) -> DefaultKeyedRateLimiter<String> {
    let n = NonZeroU32::new(share).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(n).allow_burst(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_by_the_live_replicas() {
        assert_eq!(share(5000, 1), 5000);
        assert_eq!(share(5000, 3), 1667);
        assert_eq!(share(2, 4), 1, "never below one a second");
        assert_eq!(share(i64::MAX, 1), u32::MAX);
    }

    #[test]
    fn a_client_gets_its_share_and_then_a_retry_after() {
        let r = ClientRates::new(4);
        assert_eq!(r.share(), 1, "low until the replicas are counted");
        r.set_replicas(1);
        for _ in 0..4 {
            r.check("saipa").expect("within the budget");
        }
        assert_eq!(r.check("saipa"), Err(1));
        r.check("iran-khodro").expect("another client has its own");
        // A second replica joins: each now holds half.
        r.set_replicas(2);
        assert_eq!(r.share(), 2);
        r.check("saipa").expect("a new limiter");
        r.check("saipa").expect("a new limiter");
        assert!(r.check("saipa").is_err());
    }

    #[test]
    fn a_count_that_drops_is_believed_only_after_a_presence_lasts() {
        let r = ClientRates::new(100);
        r.set_replicas(4);
        assert_eq!(r.share(), 25);
        // The store was wiped: one member back so far. The four of a moment ago stand.
        r.set_replicas(1);
        assert_eq!(r.replicas(), 4);
        assert_eq!(r.share(), 25);
        // Growth is believed at once.
        r.set_replicas(5);
        assert_eq!(r.share(), 20);
    }

    #[test]
    fn no_budget_refuses_everything() {
        assert_eq!(ClientRates::new(0).check("saipa"), Err(1));
    }
}
