//! The queue for the single-node embedded default: the same rules as the Redis scripts in
//! [`super`], over a map in this process. Production runs the Redis one, which is what
//! makes several replicas agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Counters, Joined, QueueSettings};

#[derive(Default)]
struct Campaign {
    opens_ms: i64,
    rate_per_min: i64,
    max_active: i64,
    window_ms: i64,
    early: i64,
    late: i64,
    serving: i64,
    last_ms: Option<i64>,
    carry: f64,
    closed: bool,
    suspended: bool,
    tickets: HashMap<[u8; 8], i64>,
    /// Admitted ticket → deadline (ms).
    active: BTreeMap<i64, i64>,
}

#[derive(Default)]
pub struct MemoryQueue {
    campaigns: Mutex<HashMap<String, Campaign>>,
}

impl MemoryQueue {
    fn with<T>(&self, campaign: &str, f: impl FnOnce(&mut Campaign) -> T) -> T {
        let mut map = self.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(campaign.to_owned()).or_default())
    }

    pub fn setup(&self, s: &QueueSettings) {
        self.with(&s.campaign, |c| {
            if c.opens_ms == 0 {
                c.opens_ms = s.opens_at_ms;
            }
            c.rate_per_min = s.rate_per_min;
            c.max_active = s.max_active;
            c.window_ms = s.apply_window_ms;
        });
    }

    pub fn join(&self, campaign: &str, field: [u8; 8], now_ms: i64) -> Joined {
        self.with(campaign, |c| {
            if let Some(&n) = c.tickets.get(&field) {
                return if n < 0 {
                    Joined::Early {
                        arrival: -n,
                        fresh: false,
                    }
                } else {
                    Joined::Ticket {
                        ticket: n,
                        fresh: false,
                    }
                };
            }
            if c.closed || c.suspended {
                return Joined::Closed;
            }
            if now_ms < c.opens_ms {
                c.early += 1;
                c.tickets.insert(field, -c.early);
                Joined::Early {
                    arrival: c.early,
                    fresh: true,
                }
            } else {
                c.late += 1;
                let t = c.early + c.late;
                c.tickets.insert(field, t);
                Joined::Ticket {
                    ticket: t,
                    fresh: true,
                }
            }
        })
    }

    pub fn advance(&self, campaign: &str, now_ms: i64) -> i64 {
        self.with(campaign, |c| {
            if c.opens_ms == 0 || c.closed || c.suspended || now_ms < c.opens_ms {
                return c.serving;
            }
            c.active.retain(|_, deadline| *deadline > now_ms);
            let last = c.last_ms.unwrap_or(c.opens_ms);
            let allowance = c.carry + (now_ms - last) as f64 * c.rate_per_min as f64 / 60_000.0;
            let room = c.max_active - c.active.len() as i64;
            let total = c.early + c.late;
            let k = (allowance.floor() as i64)
                .min(room)
                .min(total - c.serving)
                .max(0);
            for i in 1..=k {
                c.active.insert(c.serving + i, now_ms + c.window_ms);
            }
            c.serving += k;
            c.last_ms = Some(now_ms);
            c.carry = (allowance - k as f64).min(c.rate_per_min as f64);
            c.serving
        })
    }

    pub fn counters(&self, campaign: &str) -> Counters {
        self.with(campaign, |c| Counters {
            serving: c.serving,
            early: c.early,
            late: c.late,
            closed: c.closed,
            suspended: c.suspended,
            early_final: false,
        })
    }

    pub fn is_admitted(&self, campaign: &str, ticket: i64, now_ms: i64) -> bool {
        self.with(campaign, |c| {
            c.active.get(&ticket).is_some_and(|d| *d > now_ms)
        })
    }

    pub fn release(&self, campaign: &str, ticket: i64) {
        self.with(campaign, |c| {
            c.active.remove(&ticket);
        });
    }

    pub fn set_flag(&self, campaign: &str, closed: Option<bool>, suspended: Option<bool>) {
        self.with(campaign, |c| {
            if let Some(v) = closed {
                c.closed = v;
            }
            if let Some(v) = suspended {
                c.suspended = v;
            }
        });
    }
}
