//! What a run records: per step an HDR histogram of latency measured from when the step
//! was meant to start (the arrival instant for the first step, the end of the previous step
//! after it), so time a request spent waiting behind a slow server is counted (no
//! coordinated omission); per second the arrivals, completions, errors, queue length and
//! latency; each join for the fairness figures; and each citizen's outcome.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The value at quantile `q` of a histogram in microseconds, in milliseconds (0 if empty).
pub(crate) fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Where a citizen still told, at the tool's deadline, that every unit left was promised
/// to the admitted is counted: sold out (an answer), unless units were left unsold.
pub const PROMISED_AT_END: &str = "wait: every unit left promised";

/// How a citizen's journey ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An accepted application (tracking code shown).
    Applied,
    /// Told the campaign is sold out (or closed), at `at`.
    SoldOut { at: &'static str },
    /// Left on their own: waited longer than their patience.
    GaveUp { at: &'static str },
    /// Refused by a rule (too young, recent purchase, already applied, suspended).
    Refused { why: String },
    /// Registered in a lottery (the draw comes after the window).
    Entered,
    /// Could not go on: a step failed.
    Failed { step: &'static str, kind: String },
    /// The run was stopped (Ctrl-C) while at `step`.
    Interrupted { step: &'static str },
}

/// One join, for the fairness figures: when it was sent and answered (seconds since the
/// start), the place it got (early arrival before the opening, or a ticket after it), and
/// the ticket once known.
#[derive(Debug, Clone)]
pub struct JoinRecord {
    pub citizen: usize,
    pub sent: f64,
    pub done: f64,
    pub early: bool,
    pub ticket: Option<i64>,
}

#[derive(Default)]
pub struct StepStats {
    /// Every attempt.
    pub hist: Option<Histogram<u64>>,
    /// The attempts that were answered as the step expects.
    pub accepted: Option<Histogram<u64>>,
    /// The attempts refused with 503 and Retry-After (load shed, the server's "come back
    /// later"): how many, how fast the refusing request was answered, and how long the
    /// step had taken when it was (with the redirects served before the refusal).
    pub shed: u64,
    pub shed_hist: Option<Histogram<u64>>,
    pub shed_step_hist: Option<Histogram<u64>>,
    /// Which page refused, by [`crate::http::Page::name`].
    pub refused_by: BTreeMap<String, u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub statuses: BTreeMap<u16, u64>,
}

#[derive(Clone)]
pub struct Second {
    pub arrivals: u64,
    pub completions: u64,
    pub applied: u64,
    pub errors: u64,
    /// Requests that went through on a retry after a 503 or a network error.
    pub retried_ok: u64,
    /// Citizens whose journey ended failed.
    pub failed: u64,
    /// Requests refused with 503 and Retry-After, and how fast they were answered.
    pub shed: u64,
    pub shed_hist: Histogram<u64>,
    /// Sign-ins started again from the storefront after an error page.
    pub started_over: u64,
    /// Sampled once a second: joined and not yet admitted, closed out or gone.
    pub waiting: i64,
    pub in_flight: i64,
    pub hist: Histogram<u64>,
}

pub(crate) fn hist() -> Histogram<u64> {
    // Microseconds, 1 µs to 1 hour, 3 significant figures.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

fn coarse() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant bounds are valid")
}

#[derive(Default)]
struct Inner {
    steps: BTreeMap<&'static str, StepStats>,
    client: BTreeMap<&'static str, Histogram<u64>>,
    seconds: Vec<Second>,
    joins: Vec<JoinRecord>,
    outcomes: Vec<Outcome>,
    accepted: HashMap<usize, u32>,
    second_device_refused: u64,
    second_device_mismatch: u64,
    logins_across_replicas: u64,
    campaign: Option<Campaign>,
    launch_lag: Option<Histogram<u64>>,
    admissions: Vec<(usize, i64)>,
    codes: Vec<(usize, String)>,
    sign_ins: Vec<(usize, String)>,
    faults: Vec<crate::faults::FaultEvent>,
}

/// The campaign as its storefront describes it (data-* attributes).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Campaign {
    pub id: String,
    pub units: Option<i64>,
    pub opens_at: Option<i64>,
    pub selection: Option<String>,
}

pub struct Recorder {
    pub start: Instant,
    inner: Mutex<Inner>,
    pub launched: AtomicU64,
    pub in_flight: AtomicI64,
    pub waiting: AtomicI64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            inner: Mutex::default(),
            launched: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    fn second(inner: &mut Inner, i: usize) -> &mut Second {
        while inner.seconds.len() <= i {
            inner.seconds.push(Second {
                arrivals: 0,
                completions: 0,
                applied: 0,
                errors: 0,
                retried_ok: 0,
                failed: 0,
                shed: 0,
                shed_hist: coarse(),
                started_over: 0,
                waiting: 0,
                in_flight: 0,
                hist: coarse(),
            });
        }
        &mut inner.seconds[i]
    }

    /// A citizen arrived `lag` after their intended arrival instant.
    pub fn arrival(&self, lag: Duration) {
        self.launched.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let i = self.start.elapsed().as_secs() as usize;
        let mut g = self.lock();
        Self::second(&mut g, i).arrivals += 1;
        let h = g.launch_lag.get_or_insert_with(hist);
        h.saturating_record((lag.as_micros() as u64).max(1));
    }

    /// A step of one request ended now; it was meant to start at `intended`.
    pub fn step(
        &self,
        name: &'static str,
        intended: Instant,
        result: Result<u16, &crate::http::Fail>,
    ) {
        self.step_answered(name, intended, result, None);
    }

    /// A step ended now; it was meant to start at `intended`. `last` is the request that
    /// answered last (after any redirects), when there was one: its own time, and its
    /// page ([`crate::http::Page::name`]). A refusal is timed by that request's own
    /// answer, and the page is named among the step's refusers.
    pub fn step_answered(
        &self,
        name: &'static str,
        intended: Instant,
        result: Result<u16, &crate::http::Fail>,
        last: Option<(Duration, &str)>,
    ) {
        let now = Instant::now();
        let us = (now.saturating_duration_since(intended).as_micros() as u64).max(1);
        let refusal_us = last.map_or(us, |(took, _)| (took.as_micros() as u64).clamp(1, us));
        let i = self.secs(now) as usize;
        let mut g = self.lock();
        let s = g.steps.entry(name).or_default();
        s.hist.get_or_insert_with(hist).saturating_record(us);
        match result {
            Ok(status) => {
                s.ok += 1;
                *s.statuses.entry(status).or_default() += 1;
                s.accepted.get_or_insert_with(hist).saturating_record(us);
            }
            Err(f) => {
                *s.errors.entry(f.kind()).or_default() += 1;
                if let Some(st) = f.status() {
                    *s.statuses.entry(st).or_default() += 1;
                }
                if f.shed() {
                    s.shed += 1;
                    s.shed_hist
                        .get_or_insert_with(hist)
                        .saturating_record(refusal_us);
                    s.shed_step_hist
                        .get_or_insert_with(hist)
                        .saturating_record(us);
                    if let Some((_, page)) = last {
                        *s.refused_by.entry(page.to_owned()).or_default() += 1;
                    }
                }
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let sec = Self::second(&mut g, i);
        if let Err(f) = result {
            sec.errors += 1;
            if f.shed() {
                sec.shed += 1;
                sec.shed_hist.saturating_record(refusal_us);
            }
        }
        sec.hist.saturating_record(us);
    }

    /// Work done on the citizen's own device (the proof of work), not server latency.
    pub fn client(&self, name: &'static str, took: Duration) {
        let mut g = self.lock();
        g.client
            .entry(name)
            .or_insert_with(hist)
            .saturating_record((took.as_micros() as u64).max(1));
    }

    pub fn campaign(&self, c: Campaign) {
        let mut g = self.lock();
        if g.campaign.is_none() {
            g.campaign = Some(c);
        }
    }

    /// Records a join; returns its index for [`Recorder::ticket`].
    pub fn join(&self, j: JoinRecord) -> usize {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut g = self.lock();
        g.joins.push(j);
        g.joins.len() - 1
    }

    pub fn ticket(&self, join: usize, ticket: i64) {
        if let Some(j) = self.lock().joins.get_mut(join) {
            j.ticket.get_or_insert(ticket);
        }
    }

    pub fn left_queue(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// An accepted application for `citizen` (from any of their devices).
    pub fn accepted(&self, citizen: usize) {
        *self.lock().accepted.entry(citizen).or_default() += 1;
    }

    /// The servers answered `citizen` that ticket `ticket` is admitted (the ledger).
    pub fn admitted(&self, citizen: usize, ticket: i64) {
        self.lock().admissions.push((citizen, ticket));
    }

    /// The servers answered `citizen` with this tracking code (the ledger).
    pub fn tracking_code(&self, citizen: usize, code: String) {
        self.lock().codes.push((citizen, code));
    }

    /// The storefront `client` answered `citizen` signed in: the IdP had answered its
    /// token request (the ledger).
    pub fn signed_in(&self, citizen: usize, client: &str) {
        self.lock().sign_ins.push((citizen, client.to_owned()));
    }

    /// A fault of the schedule was injected (or failed to be).
    pub fn fault(&self, f: crate::faults::FaultEvent) {
        self.lock().faults.push(f);
    }

    pub fn has_accepted(&self, citizen: usize) -> bool {
        self.lock().accepted.contains_key(&citizen)
    }

    /// A second device's application was refused because the first one's was accepted.
    pub fn second_device_refused(&self) {
        self.lock().second_device_refused += 1;
    }

    /// A sign-in whose IdP pages were served by more than one IdP replica.
    pub fn login_across_replicas(&self) {
        self.lock().logins_across_replicas += 1;
    }

    /// A second device joined and got a different place from the first: must never happen.
    pub fn second_device_mismatch(&self) {
        self.lock().second_device_mismatch += 1;
    }

    /// A request went through on a retry (after a 503 with Retry-After or a network error).
    pub fn started_over(&self) {
        let i = self.start.elapsed().as_secs() as usize;
        Self::second(&mut self.lock(), i).started_over += 1;
    }

    pub fn retried_ok(&self) {
        let i = self.start.elapsed().as_secs() as usize;
        Self::second(&mut self.lock(), i).retried_ok += 1;
    }

    pub fn outcome(&self, o: Outcome) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
        let i = self.start.elapsed().as_secs() as usize;
        let mut g = self.lock();
        let s = Self::second(&mut g, i);
        s.completions += 1;
        if o == Outcome::Applied {
            s.applied += 1;
        }
        if matches!(o, Outcome::Failed { .. }) {
            s.failed += 1;
        }
        g.outcomes.push(o);
    }

    /// Once a second: the gauges into the timeline.
    pub fn sample(&self) {
        let i = self.start.elapsed().as_secs() as usize;
        let waiting = self.waiting.load(Ordering::Relaxed);
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let mut g = self.lock();
        let s = Self::second(&mut g, i);
        s.waiting = waiting;
        s.in_flight = in_flight;
    }

    /// p99 of requests that ended in the last `secs` seconds, in milliseconds.
    pub fn recent_p99_ms(&self, secs: usize) -> f64 {
        let i = self.start.elapsed().as_secs() as usize;
        let g = self.lock();
        let mut h = coarse();
        for s in g.seconds.iter().skip((i + 1).saturating_sub(secs)) {
            let _ = h.add(&s.hist);
        }
        ms_at(&h, 0.99)
    }

    /// Everything recorded, for the report.
    pub fn finish(&self) -> Recorded {
        let mut g = self.lock();
        let inner = std::mem::take(&mut *g);
        Recorded {
            steps: inner.steps,
            client: inner.client,
            seconds: inner.seconds,
            joins: inner.joins,
            outcomes: inner.outcomes,
            accepted: inner.accepted,
            second_device_refused: inner.second_device_refused,
            second_device_mismatch: inner.second_device_mismatch,
            logins_across_replicas: inner.logins_across_replicas,
            campaign: inner.campaign,
            launch_lag: inner.launch_lag.unwrap_or_else(hist),
            admissions: inner.admissions,
            codes: inner.codes,
            sign_ins: inner.sign_ins,
            // In the order they were injected (each is recorded when it has ended).
            faults: {
                let mut f = inner.faults;
                f.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
                f
            },
        }
    }
}

pub struct Recorded {
    pub steps: BTreeMap<&'static str, StepStats>,
    pub client: BTreeMap<&'static str, Histogram<u64>>,
    pub seconds: Vec<Second>,
    pub joins: Vec<JoinRecord>,
    pub outcomes: Vec<Outcome>,
    pub accepted: HashMap<usize, u32>,
    pub second_device_refused: u64,
    pub second_device_mismatch: u64,
    pub logins_across_replicas: u64,
    pub campaign: Option<Campaign>,
    pub launch_lag: Histogram<u64>,
    /// Admissions the servers acknowledged: (citizen, ticket).
    pub admissions: Vec<(usize, i64)>,
    /// Tracking codes the servers acknowledged: (citizen, code).
    pub codes: Vec<(usize, String)>,
    /// Sign-ins the storefronts acknowledged: (citizen, client).
    pub sign_ins: Vec<(usize, String)>,
    pub faults: Vec<crate::faults::FaultEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Fail, Page};

    /// A step whose last hop was refused: the refusal is timed by that request's own
    /// answer, the step's time to it is kept beside it, and the refusing page is named.
    #[test]
    fn a_refusal_is_timed_by_the_request_that_refused() {
        let start = Instant::now();
        let rec = Recorder::new(start);
        let intended = start;
        std::thread::sleep(Duration::from_millis(60));
        let page = Page {
            status: 503,
            location: None,
            retry_after: Some(2),
            body: String::new(),
            url: url::Url::parse("http://presale.test/saipa/").expect("url"),
            took: Duration::from_millis(4),
        };
        let busy = Fail::Status {
            status: 503,
            retry_after: Some(2),
        };
        rec.step_answered(
            "consent",
            intended,
            Err(&busy),
            Some((page.took, &page.name())),
        );
        let r = rec.finish();
        let s = &r.steps["consent"];
        let own = ms_at(s.shed_hist.as_ref().expect("refusals"), 0.99);
        let step = ms_at(s.shed_step_hist.as_ref().expect("steps"), 0.99);
        assert!((3.9..4.1).contains(&own), "the refusing request: {own} ms");
        assert!(step >= 60.0, "the step until refused: {step} ms");
        assert_eq!(s.refused_by.get("storefront"), Some(&1));
        assert_eq!(s.shed, 1);
    }
}
