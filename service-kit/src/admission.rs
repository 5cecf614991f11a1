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
//!
//! **The budget can adapt** ([`Admission::adaptive`]): a fixed budget is right for one
//! moment only. Sized for a healthy replica, it lets in, under a slow database or cores
//! saturated by twice the arrivals, as many requests as before, each now waiting longer on
//! what is slow, so that every step's latency grows. So the replica measures what its
//! requests take, window by window (at least 250 ms and 16 requests: the average time a
//! permit is held), against the best it has seen lately (the lowest window average in the
//! current 30 s epoch and the one before; after an epoch with no window closed, the best
//! since). As the gradient limiters do (Netflix's concurrency-limits, Envoy's adaptive
//! concurrency filter), it lowers the budget in proportion after two windows in a row of
//! more than twice that latency with at least half the budget in use on average (toward at
//! most half of it, a fifth of the way a window: a tenth a window at most). The first such
//! window holds it; any other raises it back by a fifth of its square root (a window with
//! the budget mostly unused too: its latency is not the budget's doing), and a replica
//! with fewer than 16 requests in 5 s returns to the ceiling when its next request ends.
//! It never leaves `[max/8, max]` (at least 4): the ceiling is `EMTA_MAX_INFLIGHT`, as a
//! fixed budget would be. **A lowered budget is taken from the bottom**: each class's room
//! is its share of the ceiling less what the budget was lowered by, so the classes that
//! start journeys (the smallest shares) lose their room first and most, and the steps that
//! finish a journey keep theirs; but no class has less than half its share of the budget
//! now, so a step in the middle of a journey (a code whose SMS was sent) is never shut
//! out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A replica's in-flight budget and how long a request may wait for room in it.
#[derive(Debug)]
pub struct Admission {
    /// The budget's ceiling (`EMTA_MAX_INFLIGHT`).
    ceiling: usize,
    /// The budget now: its ceiling unless adaptive and lowered.
    limit: AtomicUsize,
    /// Permits still to be taken out of the semaphore after the budget was lowered while
    /// they were held: the semaphore holds `limit + debt` permits in all.
    debt: AtomicUsize,
    inflight: Arc<Semaphore>,
    budget: Duration,
    enabled: bool,
    /// Requests waiting for a permit now.
    waiting: AtomicUsize,
    /// Permits held now (counted apart from the semaphore, whose total moves with the
    /// budget and its debt).
    held: AtomicUsize,
    /// Moving average of how long a permit is held, in microseconds (0: none seen yet).
    hold_us: AtomicU64,
    /// The adaptive budget's measurements (`None`: a fixed budget).
    controller: Option<Mutex<Controller>>,
}

/// One class of requests (a step), admitted while the load is below its share.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: &'static str,
    /// The share of the budget at or above whose use this class is refused at once (1,
    /// the whole budget: it waits for a permit instead).
    share: f64,
    admission: Arc<Admission>,
}

/// How long a window of measurements lasts at least, and how many it needs: fewer
/// requests than that say nothing about the budget.
const WINDOW: Duration = Duration::from_millis(250);
const WINDOW_SAMPLES: u32 = 16;
/// A window left open this long with too few requests is dropped, not mixed with the next.
const WINDOW_STALE: Duration = Duration::from_secs(5);
/// The baseline is the lowest window average of the current epoch and the one before.
const EPOCH: Duration = Duration::from_secs(30);
/// Latency up to this multiple of the baseline is the replica's own, not a queue.
const TOLERANCE: f64 = 2.0;
/// How far one window moves the budget toward its new estimate.
const SMOOTHING: f64 = 0.2;

/// The adaptive budget's state: the window being measured and the baseline.
#[derive(Debug)]
struct Controller {
    min: f64,
    max: f64,
    /// The budget as a real number (it moves by fractions a window).
    limit: f64,
    window_start: Instant,
    sum_us: u64,
    samples: u32,
    /// The permits in use as each request of this window ended, summed.
    in_use_sum: u64,
    /// Windows in a row whose latency was past the tolerance.
    slow_windows: u32,
    epoch_start: Instant,
    /// Lowest window average in this epoch and in the one before, in microseconds.
    best_now: u64,
    best_before: u64,
}

impl Controller {
    fn new(max: usize, now: Instant) -> Self {
        let max = max as f64;
        Self {
            min: (max / 8.0).max(4.0).min(max),
            max,
            limit: max,
            window_start: now,
            sum_us: 0,
            samples: 0,
            in_use_sum: 0,
            slow_windows: 0,
            epoch_start: now,
            best_now: u64::MAX,
            best_before: u64::MAX,
        }
    }

    /// One request's holding time, with the permits in use when it ended; the budget
    /// when a window closes, `None` otherwise.
    fn record(&mut self, held_us: u64, in_use: usize, now: Instant) -> Option<usize> {
        let mut quiet = false;
        if now.duration_since(self.window_start) > WINDOW_STALE {
            // Fewer than a window's requests in 5 s: nothing queues in a replica this
            // quiet, and the next surge must not meet a budget an earlier one lowered.
            self.open_window(now);
            self.slow_windows = 0;
            quiet = self.limit < self.max;
            self.limit = self.max;
        }
        self.sum_us = self.sum_us.saturating_add(held_us);
        self.samples += 1;
        self.in_use_sum = self.in_use_sum.saturating_add(in_use as u64);
        if self.samples < WINDOW_SAMPLES || now.duration_since(self.window_start) < WINDOW {
            return quiet.then_some(self.max as usize);
        }
        let short = (self.sum_us / u64::from(self.samples)).max(1);
        // Used: on average at least half the budget in flight as the window's requests
        // ended (one moment at the top is not a queue).
        let used = self.in_use_sum as f64 / f64::from(self.samples) * 2.0 >= self.limit;
        self.open_window(now);
        let since_epoch = now.duration_since(self.epoch_start);
        if since_epoch >= EPOCH * 2 {
            // Idle for an epoch or more: what it measured before is too old to compare.
            self.best_before = u64::MAX;
            self.best_now = u64::MAX;
            self.epoch_start = now;
        } else if since_epoch >= EPOCH {
            self.best_before = self.best_now;
            self.best_now = u64::MAX;
            self.epoch_start = now;
        }
        self.best_now = self.best_now.min(short);
        let baseline = self.best_now.min(self.best_before) as f64;
        let gradient = TOLERANCE * baseline / short as f64;
        // Lowered only after two slow windows in a row with the budget used: one slow
        // window is as likely a burst of the costlier steps (a queue's opening) as a
        // queue, and latency with the budget mostly unused is not the budget's doing.
        // Otherwise the budget climbs back toward its ceiling.
        self.slow_windows = if gradient < 1.0 && used {
            self.slow_windows + 1
        } else {
            0
        };
        let estimate = if self.slow_windows >= 2 {
            self.limit * gradient.max(0.5)
        } else if gradient < 1.0 && used {
            self.limit
        } else {
            self.limit + self.limit.sqrt()
        };
        self.limit =
            (self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING).clamp(self.min, self.max);
        Some(self.limit.round() as usize)
    }

    fn open_window(&mut self, now: Instant) {
        self.window_start = now;
        self.sum_us = 0;
        self.samples = 0;
        self.in_use_sum = 0;
    }
}

/// Held while a request is served; dropping it frees the room.
#[derive(Debug)]
pub struct Admitted {
    held: Option<(OwnedSemaphorePermit, Arc<Admission>, Instant)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((permit, a, since)) = self.held.take() {
            let now = Instant::now();
            a.release(permit, now.duration_since(since), now);
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
        Self::build(max_inflight, budget, false)
    }

    /// As [`Self::new`], with a budget that adapts to the latency measured (the module's
    /// documentation), `max_inflight` its ceiling.
    pub fn adaptive(max_inflight: usize, budget: Duration) -> Arc<Self> {
        Self::build(max_inflight, budget, true)
    }

    fn build(max_inflight: usize, budget: Duration, adaptive: bool) -> Arc<Self> {
        let total = max_inflight.max(1);
        metrics::gauge!("emta_admission_limit").set(max_inflight as f64);
        Arc::new(Self {
            ceiling: total,
            limit: AtomicUsize::new(total),
            debt: AtomicUsize::new(0),
            inflight: Arc::new(Semaphore::new(total)),
            budget,
            enabled: max_inflight > 0,
            waiting: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            hold_us: AtomicU64::new(0),
            controller: (adaptive && max_inflight > 0)
                .then(|| Mutex::new(Controller::new(total, Instant::now()))),
        })
    }

    /// A class admitted while fewer than `share` (0 to 1) of the budget are in use.
    pub fn class(self: &Arc<Self>, name: &'static str, share: f64) -> Class {
        Class {
            name,
            share: share.clamp(0.0, 1.0),
            admission: self.clone(),
        }
    }

    /// The budget now (the ceiling unless adaptive and lowered).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    fn in_use(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Permits in use at or above which a class of `share` is refused at once: its share
    /// of the ceiling less what the budget has been lowered by, but never less than half
    /// its share of the budget now. A lowered budget is taken from the bottom: the classes
    /// that start journeys lose their room first and most, the ones that finish them keep
    /// theirs, and a step in the middle of a journey (a code whose SMS was sent) keeps
    /// some room at the lowest budget, so no journey under way is shut out.
    fn below(&self, share: f64) -> usize {
        let limit = self.limit();
        let lowered_by = self.ceiling.saturating_sub(limit);
        let from_bottom =
            ((self.ceiling as f64 * share).ceil() as usize).saturating_sub(lowered_by);
        let half_share = (limit as f64 * share / 2.0).ceil() as usize;
        from_bottom.max(half_share).clamp(1, limit.max(1))
    }

    /// A request's permit given back after `held`: folded into the moving average and,
    /// for an adaptive budget, into its window; a permit the budget owes (it was lowered
    /// while this one was held) is taken out, not handed to a waiter.
    fn release(&self, permit: OwnedSemaphorePermit, held: Duration, now: Instant) {
        let in_use = self.held.fetch_sub(1, Ordering::Relaxed);
        let sample = self.record_hold(held);
        let Some(controller) = &self.controller else {
            drop(permit);
            return;
        };
        let give_back = {
            let mut c = controller.lock().unwrap_or_else(|p| p.into_inner());
            // Dropped, a permit goes straight to the first waiter and never becomes free
            // to be forgotten: with requests queued, a lowered budget would never be paid.
            let owed = self.debt.load(Ordering::Relaxed);
            let give_back = if owed > 0 {
                self.debt.store(owed - 1, Ordering::Relaxed);
                permit.forget();
                None
            } else {
                Some(permit)
            };
            if let Some(limit) = c.record(sample, in_use, now) {
                self.set_limit(limit);
            }
            self.pay_debt();
            give_back
        };
        // Given back after the lock: it may wake a waiter.
        drop(give_back);
    }

    /// Folds one permit's holding time into the moving average (weight 1/8, as TCP's
    /// smoothed round-trip time); the sample in microseconds.
    fn record_hold(&self, held: Duration) -> u64 {
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
        sample
    }

    /// Moves the budget to `limit` (under the controller's lock): permits added, or taken
    /// out as they are free and owed until they are.
    fn set_limit(&self, limit: usize) {
        let old = self.limit();
        if limit > old {
            // What is owed is forgiven first; only the rest is added.
            let owed = self.debt.load(Ordering::Relaxed);
            let forgiven = owed.min(limit - old);
            self.debt.store(owed - forgiven, Ordering::Relaxed);
            self.inflight.add_permits(limit - old - forgiven);
        } else if limit < old {
            self.debt.fetch_add(old - limit, Ordering::Relaxed);
        }
        if limit != old {
            self.limit.store(limit, Ordering::Relaxed);
            metrics::gauge!("emta_admission_limit").set(limit as f64);
        }
    }

    /// Takes out of the semaphore what is owed and free (under the controller's lock).
    fn pay_debt(&self) {
        let owed = self.debt.load(Ordering::Relaxed);
        if owed > 0 {
            let paid = self.inflight.forget_permits(owed);
            self.debt.store(owed - paid, Ordering::Relaxed);
        }
    }

    /// Whether a request arriving with no permit free can expect one within the budget:
    /// the waiters ahead of it and itself, served by every permit as each frees after the
    /// average holding time. Unknown until a permit has been held once.
    fn room_expected_in_budget(&self) -> bool {
        if self.inflight.available_permits() > 0 {
            return true;
        }
        let hold = self.hold_us.load(Ordering::Relaxed);
        // The first permits back that the budget owes go to no one.
        let owed = self.debt.load(Ordering::Relaxed) as u64;
        let ahead = self.waiting.load(Ordering::Relaxed) as u64 + 1 + owed;
        let expected_us = ahead.saturating_mul(hold) / (self.limit() as u64 + owed).max(1);
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
        let below = a.below(self.share);
        let past_share = below < a.limit() && a.in_use() >= below;
        let outcome = if past_share || !a.room_expected_in_budget() {
            None
        } else {
            let _waiting = Waiting::new(&a.waiting);
            tokio::time::timeout(a.budget, a.inflight.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| {
                    a.held.fetch_add(1, Ordering::Relaxed);
                    Admitted {
                        held: Some((p, a.clone(), Instant::now())),
                    }
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

    /// Closes one window of the controller's: `WINDOW_SAMPLES` requests of `held_us`
    /// each, the replica using `in_use` permits, one window after `at`.
    fn window(c: &mut Controller, at: &mut Instant, held_us: u64, in_use: usize) -> usize {
        *at += WINDOW;
        let mut limit = None;
        for _ in 0..WINDOW_SAMPLES {
            limit = c.record(held_us, in_use, *at);
        }
        limit.expect("the window closed")
    }

    /// Windows eight times slower than the best, the budget in use, until it is lowered
    /// below half its ceiling; the budget then.
    fn lowered_by_a_queue(c: &mut Controller, at: &mut Instant) -> usize {
        let mut last = 64;
        for _ in 0..41 {
            last = window(c, at, 80_000, 64);
        }
        assert!(last < 32, "lowered: {last}");
        last
    }

    #[test]
    fn the_budget_falls_while_requests_take_more_than_twice_their_best_and_comes_back() {
        let mut at = Instant::now();
        let mut c = Controller::new(64, at);
        // A healthy replica: 10 ms a request, the budget busy. It stays at its ceiling.
        for _ in 0..8 {
            assert_eq!(window(&mut c, &mut at, 10_000, 40), 64);
        }
        // Up to twice the best is the replica's own latency, not a queue.
        assert_eq!(window(&mut c, &mut at, 19_000, 40), 64);
        // Five times the best, the budget in use: one window is not yet a queue...
        assert_eq!(window(&mut c, &mut at, 50_000, 64), 64);
        // ...the second is, and it falls, window by window.
        let mut last = 64;
        for _ in 0..4 {
            let now = window(&mut c, &mut at, 50_000, last);
            assert!(now < last, "fell from {last} to {now}");
            last = now;
        }
        // Never below an eighth of the ceiling.
        for _ in 0..200 {
            last = window(&mut c, &mut at, 50_000, last);
        }
        assert_eq!(last, 8);
        // The latency back to its best: the budget climbs back to its ceiling.
        let mut windows = 0;
        while last < 64 {
            let now = window(&mut c, &mut at, 10_000, last);
            assert!(now >= last, "climbed, from {last} to {now}");
            last = now;
            windows += 1;
            assert!(windows < 200, "back within 50 s: still {last}");
        }
    }

    #[test]
    fn a_window_with_the_budget_mostly_unused_never_lowers_it_and_lets_it_climb() {
        let mut at = Instant::now();
        let mut c = Controller::new(64, at);
        assert_eq!(window(&mut c, &mut at, 10_000, 40), 64);
        // Slow, but with a fifth of the budget in use: not the budget's doing.
        for _ in 0..20 {
            assert_eq!(window(&mut c, &mut at, 80_000, 12), 64);
        }
        // Lowered by a queue, then the load goes: the budget climbs back while unused,
        // whatever the latency (a slow registry keeps it high), ready for the next surge.
        let mut last = lowered_by_a_queue(&mut c, &mut at);
        for _ in 0..100 {
            last = window(&mut c, &mut at, 80_000, 2);
        }
        assert_eq!(last, 64);
        // Too few requests close no window, however long (short of the stale window).
        let mut c = Controller::new(64, at);
        for _ in 0..WINDOW_SAMPLES - 1 {
            at += Duration::from_millis(300);
            assert_eq!(c.record(80_000, 64, at), None);
        }
    }

    #[test]
    fn one_moment_at_the_top_of_the_budget_is_not_a_queue() {
        let mut at = Instant::now();
        let mut c = Controller::new(64, at);
        window(&mut c, &mut at, 10_000, 40);
        // Slow windows in which one request in sixteen saw the budget full: on average
        // a tenth of it was in use.
        for _ in 0..20 {
            at += WINDOW;
            let mut limit = None;
            for i in 0..WINDOW_SAMPLES {
                limit = c.record(50_000, if i == 0 { 64 } else { 3 }, at);
            }
            assert_eq!(limit, Some(64));
        }
    }

    #[test]
    fn the_baseline_forgets_a_best_older_than_two_epochs() {
        let mut at = Instant::now();
        let mut c = Controller::new(64, at);
        window(&mut c, &mut at, 1_000, 40);
        // The replica is slower for good (a bigger table, a slower disk): after two epochs
        // its new latency is its best, and the budget returns to its ceiling.
        let mut last = 64;
        let until = at + EPOCH * 2 + WINDOW;
        while at < until {
            last = window(&mut c, &mut at, 30_000, last.max(40));
        }
        assert!(last < 64, "lowered meanwhile: {last}");
        for _ in 0..400 {
            last = window(&mut c, &mut at, 30_000, 40);
        }
        assert_eq!(last, 64, "the slower latency is the new best");
        // Idle for two epochs: the best from before is not compared with what follows.
        let mut c = Controller::new(64, at);
        window(&mut c, &mut at, 1_000, 40);
        at += EPOCH * 3;
        // The stale window is dropped and a new one opened, then closed.
        for _ in 0..WINDOW_SAMPLES {
            assert_eq!(c.record(30_000, 64, at), None);
        }
        at += WINDOW;
        assert_eq!(c.record(30_000, 64, at), Some(64));
        for _ in 0..10 {
            assert_eq!(window(&mut c, &mut at, 30_000, 64), 64);
        }
    }

    fn set_limit(a: &Admission, limit: usize) {
        let mut c = a
            .controller
            .as_ref()
            .expect("adaptive")
            .lock()
            .expect("lock");
        c.limit = limit as f64;
        a.set_limit(limit);
        a.pay_debt();
    }

    #[tokio::test]
    async fn a_lowered_budget_is_taken_from_the_classes_that_start_journeys_first() {
        let a = Admission::adaptive(8, Duration::from_millis(100));
        let start = a.class("start", 0.5);
        let middle = a.class("middle", 0.75);
        let finish = a.class("finish", 1.0);
        let held = futures_held(&finish, 8).await;
        // Lowered to 6 while all 8 permits are held: 2 are owed until they come back.
        set_limit(&a, 6);
        assert_eq!(a.limit(), 6);
        assert_eq!(a.debt.load(Ordering::Relaxed), 2);
        drop(held);
        assert_eq!(a.in_use(), 0);
        assert_eq!(a.debt.load(Ordering::Relaxed), 0, "paid as they came back");
        assert_eq!(a.inflight.available_permits(), 6);
        // A start gets half of 8 less the 2 taken: 2; the middle, 6 less 2: 4; a finish, 6.
        let starts = futures_held(&start, 2).await;
        assert!(start.enter().await.is_none(), "a third start");
        let middles = futures_held(&middle, 2).await;
        assert!(middle.enter().await.is_none(), "a third in the middle");
        let finishes = futures_held(&finish, 2).await;
        assert_eq!(
            a.inflight.available_permits(),
            0,
            "6 in use: the budget is 6"
        );
        assert_eq!(a.in_use(), 6);
        drop((starts, middles, finishes));
        // Raised again: room for 8.
        set_limit(&a, 8);
        let eight = futures_held(&finish, 8).await;
        assert_eq!(a.in_use(), 8);
        drop(eight);
    }

    #[tokio::test]
    async fn a_budget_raised_while_permits_are_owed_forgives_them_first() {
        let a = Admission::adaptive(8, Duration::from_millis(100));
        let finish = a.class("finish", 1.0);
        let held = futures_held(&finish, 8).await;
        set_limit(&a, 4);
        assert_eq!(a.debt.load(Ordering::Relaxed), 4);
        // Raised to 6 before any came back: 2 of the 4 owed are forgiven, none added.
        set_limit(&a, 6);
        assert_eq!(a.debt.load(Ordering::Relaxed), 2);
        assert_eq!(a.inflight.available_permits(), 0);
        drop(held);
        assert_eq!(a.debt.load(Ordering::Relaxed), 0);
        assert_eq!(
            a.inflight.available_permits(),
            6,
            "the budget, no more, no less"
        );
    }

    #[tokio::test]
    async fn at_the_lowest_budget_every_step_of_a_journey_keeps_some_room() {
        // The IdP's classes on its default ceiling, at the floor of 8.
        let a = Admission::adaptive(64, Duration::from_millis(100));
        set_limit(&a, 8);
        let room = |share| a.below(share);
        assert_eq!(room(0.5), 2, "a new sign-in");
        assert_eq!(room(0.6), 3, "the phone step");
        assert_eq!(room(0.75), 3, "the code step, its SMS sent");
        assert_eq!(room(1.0), 8, "consent");
        // Lowered by a quarter: taken from the bottom.
        set_limit(&a, 48);
        assert_eq!(room(0.5), 16);
        assert_eq!(room(0.75), 32);
        assert_eq!(room(1.0), 48);
    }

    #[test]
    fn a_quiet_replica_returns_to_its_ceiling() {
        let mut at = Instant::now();
        let mut c = Controller::new(64, at);
        window(&mut c, &mut at, 10_000, 40);
        lowered_by_a_queue(&mut c, &mut at);
        // Six seconds with fewer requests than a window: the next meets the ceiling.
        at += Duration::from_secs(6);
        assert_eq!(c.record(80_000, 1, at), Some(64));
    }

    #[tokio::test]
    async fn a_lowered_budget_is_paid_even_while_requests_wait_for_room() {
        let a = Admission::adaptive(4, Duration::from_secs(5));
        let finish = a.class("finish", 1.0);
        let mut held = futures_held(&finish, 4).await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = finish.clone();
                tokio::spawn(async move { c.enter().await })
            })
            .collect();
        while a.waiting.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
        set_limit(&a, 2);
        assert_eq!(a.debt.load(Ordering::Relaxed), 2, "all 4 held: 2 owed");
        // Two come back: both are owed, and no waiter gets in.
        held.pop();
        held.pop();
        assert_eq!(a.debt.load(Ordering::Relaxed), 0);
        assert_eq!(a.in_use(), 2);
        tokio::task::yield_now().await;
        assert_eq!(
            a.waiting.load(Ordering::Relaxed),
            3,
            "nobody let in past the budget"
        );
        // The next one back goes to a waiter: 2 in flight, as the budget says.
        held.pop();
        while a.waiting.load(Ordering::Relaxed) > 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.in_use(), 2);
        assert_eq!(a.inflight.available_permits(), 0);
        for w in &waiters {
            w.abort();
        }
        drop(held);
    }

    async fn futures_held(c: &Class, n: usize) -> Vec<Admitted> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(c.enter().await.unwrap_or_else(|| panic!("room for {i}")));
        }
        out
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
