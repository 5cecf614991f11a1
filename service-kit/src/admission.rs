//! Admission control: a replica takes on what it can finish in time and refuses the rest
//! at once, instead of queueing without bound until everyone is slow.
//!
//! Past its capacity a server that accepts everything builds queues in front of its
//! database pool, its upstream calls and its cores, and every request's latency grows
//! with the queue: completions per second fall off a cliff while arrivals keep coming.
//! Here every gated request holds one permit of the replica's **in-flight budget** while
//! it is served, waiting at most the **queue budget** for one; a request that gets none
//! in time is answered 503 with Retry-After having cost nothing (Little's law: a bounded
//! number in flight at a bounded service time is a bounded latency).
//!
//! Work is not all equal: a request that finishes a journey (consent, a token) is worth
//! more than one that starts a new one, since refusing it wastes every step before it.
//! So each **class** (a step) has a **share**: it is admitted only while the replica's
//! load is below that share of the budget, and refused at once above it. Under overload
//! new sign-ins (a small share) are the first refused, and the journeys under way keep
//! the rest of the budget: goodput, journeys completed per second, stays near the knee
//! while arrivals double. Classes with the whole budget (share 1) wait for a permit in
//! arrival order, but only when one can be expected within the queue budget: the replica
//! keeps a moving average of how long a request holds its permit, and a request that
//! would find more waiters ahead of it than the budget lets go through (each permit
//! frees after about that average) is refused at once. Waiting the whole budget only to
//! be refused costs the client the wait and the replica the timer: under overload it was
//! the slowest refusals (`load/BENCHMARKS.md`, "Overload").

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A replica's in-flight budget and how long a request may wait for room in it.
#[derive(Debug)]
pub struct Admission {
    total: usize,
    inflight: Arc<Semaphore>,
    budget: Duration,
    enabled: bool,
    /// Requests waiting for a permit now.
    waiting: AtomicUsize,
    /// Moving average of how long a permit is held, in microseconds (0: none seen yet).
    hold_us: AtomicU64,
}

/// One class of requests (a step), admitted while the load is below its share.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: &'static str,
    /// Permits in use at or above which this class is refused at once (the whole budget:
    /// it waits for a permit instead).
    below: usize,
    admission: Arc<Admission>,
}

/// Held while a request is served; dropping it frees the room.
#[derive(Debug)]
pub struct Admitted {
    held: Option<(OwnedSemaphorePermit, Arc<Admission>, Instant)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((_permit, a, since)) = &self.held {
            a.record_hold(since.elapsed());
        }
    }
}

/// Counts a request among the waiters while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `max_inflight` gated requests at once on this replica (0: no admission control),
    /// each waiting at most `budget` for room.
    pub fn new(max_inflight: usize, budget: Duration) -> Arc<Self> {
        Arc::new(Self {
            total: max_inflight.max(1),
            inflight: Arc::new(Semaphore::new(max_inflight.max(1))),
            budget,
            enabled: max_inflight > 0,
            waiting: AtomicUsize::new(0),
            hold_us: AtomicU64::new(0),
        })
    }

    /// A class admitted while fewer than `share` (0 to 1) of the budget are in use.
    pub fn class(self: &Arc<Self>, name: &'static str, share: f64) -> Class {
        let below = ((self.total as f64 * share).ceil() as usize).clamp(1, self.total);
        Class {
            name,
            below,
            admission: self.clone(),
        }
    }

    fn in_use(&self) -> usize {
        self.total - self.inflight.available_permits()
    }

    /// Folds one permit's holding time into the moving average (weight 1/8, as TCP's
    /// smoothed round-trip time).
    fn record_hold(&self, held: Duration) {
        let sample = u64::try_from(held.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .hold_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - old / 8 + sample / 8
                })
            });
    }

    /// Whether a request arriving with no permit free can expect one within the budget:
    /// the waiters ahead of it and itself, served by every permit as each frees after the
    /// average holding time. Unknown until a permit has been held once.
    fn room_expected_in_budget(&self) -> bool {
        if self.inflight.available_permits() > 0 {
            return true;
        }
        let hold = self.hold_us.load(Ordering::Relaxed);
        let ahead = self.waiting.load(Ordering::Relaxed) as u64 + 1;
        let expected_us = ahead.saturating_mul(hold) / self.total as u64;
        u128::from(expected_us) <= self.budget.as_micros()
    }
}

impl Class {
    /// Room for one request, or `None`: at once when the load is at or above this class's
    /// share or when no permit can be expected within the queue budget, otherwise when
    /// none came free within it.
    pub async fn enter(&self) -> Option<Admitted> {
        let a = &self.admission;
        if !a.enabled {
            return Some(Admitted { held: None });
        }
        let past_share = self.below < a.total && a.in_use() >= self.below;
        let outcome = if past_share || !a.room_expected_in_budget() {
            None
        } else {
            let _waiting = Waiting::new(&a.waiting);
            tokio::time::timeout(a.budget, a.inflight.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| Admitted {
                    held: Some((p, a.clone(), Instant::now())),
                })
        };
        metrics::counter!("emta_admission_total", "class" => self.name,
            "outcome" => if outcome.is_some() { "admitted" } else { "refused" })
        .increment(1);
        outcome
    }

    /// Seconds a refused client should wait: 1 to 3, spread so refused clients do not
    /// come back in step.
    pub fn retry_after(&self) -> u64 {
        1 + rand::random::<u64>() % 3
    }
}

/// A class in front of a group of routes, with how the service words its refusal (a page
/// for citizens, a JSON error for back-end clients), given the seconds to wait.
#[derive(Clone)]
pub struct Gate {
    pub class: Class,
    pub refuse: fn(u64) -> axum::response::Response,
}

impl Gate {
    /// `routes` served only with room in this gate's class, refused at once otherwise.
    pub fn around<S: Clone + Send + Sync + 'static>(
        &self,
        routes: axum::Router<S>,
    ) -> axum::Router<S> {
        routes.route_layer(axum::middleware::from_fn_with_state(self.clone(), admit))
    }
}

impl Gate {
    /// Serves `req` with room in this gate's class (within the queue budget), or refuses
    /// it with Retry-After at once, before it has cost anything. For middleware that picks
    /// the gate per request.
    pub async fn pass(
        &self,
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        match self.class.enter().await {
            Some(_room) => next.run(req).await,
            None => (self.refuse)(self.class.retry_after()),
        }
    }
}

/// Admission control as middleware: [`Gate::pass`].
async fn admit(
    axum::extract::State(gate): axum::extract::State<Gate>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    gate.pass(req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_class_is_refused_past_its_share_and_the_budget() {
        let a = Admission::new(4, Duration::from_millis(300));
        let start = a.class("start", 0.25);
        let finish = a.class("finish", 1.0);
        let first = start.enter().await.expect("room for one start");
        let t = std::time::Instant::now();
        assert!(start.enter().await.is_none(), "past its share: refused");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "at once, not after the budget"
        );
        // Finishing work still has the rest of the budget.
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(finish.enter().await.expect("finish"));
        }
        let t = std::time::Instant::now();
        assert!(finish.enter().await.is_none(), "the whole budget is in use");
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "waited its budget first"
        );
        drop(first);
        assert!(finish.enter().await.is_some(), "room again");
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_freed_within_the_budget() {
        let a = Admission::new(1, Duration::from_millis(500));
        let c = a.class("step", 1.0);
        let held = c.enter().await.expect("first");
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.enter().await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.expect("join"), "admitted when room came free");
    }

    #[tokio::test]
    async fn a_request_that_cannot_expect_room_in_its_budget_is_refused_at_once() {
        let a = Admission::new(2, Duration::from_millis(100));
        let c = a.class("finish", 1.0);
        // Permits have been held 400 ms: with both in use, the next one frees in about
        // 200 ms, twice the budget.
        let first = c.enter().await.expect("first");
        let second = c.enter().await.expect("second");
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(first);
        drop(second);
        let _held = [c.enter().await.expect("one"), c.enter().await.expect("two")];
        let t = std::time::Instant::now();
        assert!(c.enter().await.is_none(), "no room within the budget");
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "refused at once, not after waiting {:?} of a budget it could not use",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_request_that_can_expect_room_waits_for_it() {
        let a = Admission::new(2, Duration::from_millis(300));
        let c = a.class("finish", 1.0);
        // Permits are held 20 ms: the next one frees in about 10 ms.
        for _ in 0..4 {
            let p = c.enter().await.expect("room");
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(p);
        }
        let held = [c.enter().await.expect("one"), c.enter().await.expect("two")];
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.enter().await.is_some() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.expect("join"), "waited and was admitted");
    }

    #[tokio::test]
    async fn zero_turns_admission_control_off() {
        let a = Admission::new(0, Duration::from_millis(1));
        let c = a.class("step", 0.1);
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(c.enter().await.expect("never refused"));
        }
    }
}
