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
//! arrival order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A replica's in-flight budget and how long a request may wait for room in it.
#[derive(Debug)]
pub struct Admission {
    total: usize,
    inflight: Arc<Semaphore>,
    budget: Duration,
    enabled: bool,
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
    _permit: Option<OwnedSemaphorePermit>,
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
}

impl Class {
    /// Room for one request, or `None`: at once when the load is at or above this class's
    /// share, or when no permit came free within the queue budget.
    pub async fn enter(&self) -> Option<Admitted> {
        let a = &self.admission;
        if !a.enabled {
            return Some(Admitted { _permit: None });
        }
        let outcome = if self.below < a.total && a.in_use() >= self.below {
            None
        } else {
            tokio::time::timeout(a.budget, a.inflight.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| Admitted { _permit: Some(p) })
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

/// Admission control as middleware: room within the queue budget, or the refusal with
/// Retry-After at once, before the request has cost anything.
async fn admit(
    axum::extract::State(gate): axum::extract::State<Gate>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match gate.class.enter().await {
        Some(_room) => next.run(req).await,
        None => (gate.refuse)(gate.class.retry_after()),
    }
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
    async fn zero_turns_admission_control_off() {
        let a = Admission::new(0, Duration::from_millis(1));
        let c = a.class("step", 0.1);
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(c.enter().await.expect("never refused"));
        }
    }
}
