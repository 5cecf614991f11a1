//! The report: per step throughput, latency percentiles and errors; outcomes; applications
//! against the cap; fairness; a per-second timeline; and a verdict. Written as JSON for
//! machines and as an HTML page with charts for people.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::fairness::{self, Fairness};
use crate::record::{ms_at, Campaign, Outcome, Recorded};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram in microseconds, in milliseconds (zeros if empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: ms_at(h, 0.5),
            p90: ms_at(h, 0.9),
            p99: ms_at(h, 0.99),
            p999: ms_at(h, 0.999),
            max: h.max() as f64 / 1000.0,
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub count: u64,
    pub ok: u64,
    pub errors_total: u64,
    pub per_sec: f64,
    /// From when the step was meant to start, every attempt.
    pub latency_ms: Latency,
    /// The attempts answered as the step expects.
    pub accepted_ms: Latency,
    /// The attempts refused with 503 and Retry-After, how fast the refusing request was
    /// answered, how long the step had taken by then (with the redirects served before
    /// the refusal: a consent given, then its storefront busy), and which page refused.
    pub shed: u64,
    pub shed_ms: Latency,
    pub shed_step_ms: Latency,
    pub refused_by: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub statuses: BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientWork {
    pub name: String,
    pub count: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes {
    pub total: u64,
    pub applied: u64,
    pub sold_out: BTreeMap<String, u64>,
    pub gave_up: u64,
    pub refused: BTreeMap<String, u64>,
    pub entered_lottery: u64,
    pub failed: BTreeMap<String, u64>,
    pub interrupted: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applications {
    /// Citizens with an accepted application.
    pub accepted: u64,
    /// The campaign's units, as its storefront states them.
    pub cap: Option<i64>,
    /// Citizens who met the rules and wanted one: applied or were told sold out.
    pub eligible: u64,
    /// min(cap, eligible).
    pub expected: Option<u64>,
    pub matches_expected: Option<bool>,
    /// National IDs with more than one accepted application. Must be 0.
    pub duplicates: u64,
    /// Second devices whose application was refused because the first one's was accepted.
    pub second_device_refused: u64,
    /// Second devices that got a different place in the queue. Must be 0.
    pub second_device_mismatch: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: usize,
    pub arrivals: u64,
    pub completions: u64,
    pub applied: u64,
    pub errors: u64,
    pub retried_ok: u64,
    pub failed: u64,
    /// Refused with 503 and Retry-After.
    pub shed: u64,
    /// Sign-ins started again from the storefront after an error page.
    pub started_over: u64,
    pub waiting: i64,
    pub in_flight: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// How fast this second's refusals were answered (for each fault's cost).
    #[serde(skip)]
    pub shed_hist: Histogram<u64>,
}

/// The run as an overload: journeys completed per second against the requests refused
/// with 503 and Retry-After, how fast those were answered, and the p99 of what was
/// served. Beyond what the system holds, it should keep its goodput and refuse the rest
/// at once, rather than slow down for everyone.
#[derive(Debug, Clone, Serialize)]
pub struct Overload {
    /// Journeys that ended as designed (applied, sold out, refused by a rule, entered a
    /// lottery) per second of the run.
    pub goodput_per_sec: f64,
    pub requests: u64,
    pub shed: u64,
    pub shed_share: f64,
    /// How fast the refusing requests were answered.
    pub shed_ms: Latency,
    /// How long the refused steps had taken by then, with the redirects served before
    /// the refusal.
    pub shed_step_ms: Latency,
    /// The slowest step's p99 over the attempts it served, and which step.
    pub accepted_p99_ms: f64,
    pub accepted_p99_step: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Every step's p99 under the limit, no errors, no failures, no duplicates and nobody
    /// admitted out of order.
    pub held: bool,
    pub p99_limit_ms: f64,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Arrivals {
    pub planned: usize,
    pub launched: u64,
    pub peak_per_sec: f64,
    pub duration_secs: f64,
    /// How late the load tool started arrivals (its own health: should stay tiny).
    pub launch_lag_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: serde_json::Value,
    /// Requests sent to each replica, when replicas were given.
    pub routed: BTreeMap<String, u64>,
    /// Sign-ins whose IdP pages were served by more than one IdP replica (started on one,
    /// finished on another).
    pub logins_across_replicas: u64,
    pub mix: serde_json::Value,
    pub started_at: i64,
    pub elapsed_secs: f64,
    pub interrupted: bool,
    pub arrivals: Arrivals,
    pub steps: Vec<StepReport>,
    pub client: Vec<ClientWork>,
    pub outcomes: Outcomes,
    pub applications: Applications,
    pub campaign: Option<Campaign>,
    pub fairness: Fairness,
    pub overload: Overload,
    pub timeline: Vec<Point>,
    /// The faults injected, each with what it cost.
    pub faults: Vec<crate::faults::FaultCost>,
    /// The acknowledgements checked against the durable record, when the run checked them.
    pub ledger: Option<crate::ledger::Ledger>,
    /// The run ended journeys still going at its deadline (counted failed).
    pub overdue: bool,
    pub verdict: Verdict,
    /// What the servers acknowledged, for [`crate::ledger::check`].
    #[serde(skip)]
    pub acks: crate::ledger::Acks,
}

pub struct Meta {
    pub scenario: String,
    pub target: serde_json::Value,
    pub routed: BTreeMap<String, u64>,
    pub mix: serde_json::Value,
    pub started_at: i64,
    pub elapsed_secs: f64,
    pub interrupted: bool,
    pub overdue: bool,
    pub planned: usize,
    pub launched: u64,
    pub peak_per_sec: f64,
    pub duration_secs: f64,
    pub p99_limit_ms: f64,
}

fn latency(h: &Option<Histogram<u64>>) -> Latency {
    h.as_ref()
        .map_or_else(|| Latency::of(&crate::record::hist()), Latency::of)
}

fn overload(
    steps: &BTreeMap<&'static str, crate::record::StepStats>,
    o: &Outcomes,
    elapsed: f64,
) -> Overload {
    let mut shed_hist = crate::record::hist();
    let mut shed_step_hist = crate::record::hist();
    let mut requests = 0;
    let mut shed = 0;
    let mut slowest = (0.0, String::new());
    for (name, s) in steps {
        requests += s.ok + s.errors.values().sum::<u64>();
        shed += s.shed;
        if let Some(h) = &s.shed_hist {
            let _ = shed_hist.add(h);
        }
        if let Some(h) = &s.shed_step_hist {
            let _ = shed_step_hist.add(h);
        }
        let p99 = s.accepted.as_ref().map_or(0.0, |h| ms_at(h, 0.99));
        if p99 > slowest.0 {
            slowest = (p99, (*name).to_owned());
        }
    }
    let completed = o.applied
        + o.sold_out.values().sum::<u64>()
        + o.refused.values().sum::<u64>()
        + o.entered_lottery;
    Overload {
        goodput_per_sec: completed as f64 / elapsed,
        requests,
        shed,
        shed_share: if requests == 0 {
            0.0
        } else {
            shed as f64 / requests as f64
        },
        shed_ms: Latency::of(&shed_hist),
        shed_step_ms: Latency::of(&shed_step_hist),
        accepted_p99_ms: slowest.0,
        accepted_p99_step: slowest.1,
    }
}

pub fn build(meta: Meta, r: Recorded) -> Report {
    let elapsed = meta.elapsed_secs.max(1e-9);
    let steps: Vec<StepReport> = r
        .steps
        .iter()
        .map(|(name, s)| {
            let errors_total: u64 = s.errors.values().sum();
            StepReport {
                name: (*name).to_owned(),
                count: s.ok + errors_total,
                ok: s.ok,
                errors_total,
                per_sec: (s.ok + errors_total) as f64 / elapsed,
                latency_ms: latency(&s.hist),
                accepted_ms: latency(&s.accepted),
                shed: s.shed,
                shed_ms: latency(&s.shed_hist),
                shed_step_ms: latency(&s.shed_step_hist),
                refused_by: s.refused_by.clone(),
                errors: s.errors.clone(),
                statuses: s.statuses.clone(),
            }
        })
        .collect();
    let client = r
        .client
        .iter()
        .map(|(name, h)| ClientWork {
            name: (*name).to_owned(),
            count: h.len(),
            latency_ms: Latency::of(h),
        })
        .collect();
    let mut o = Outcomes::default();
    for x in &r.outcomes {
        o.total += 1;
        match x {
            Outcome::Applied => o.applied += 1,
            Outcome::SoldOut { at } => *o.sold_out.entry((*at).into()).or_default() += 1,
            Outcome::GaveUp { .. } => o.gave_up += 1,
            Outcome::Refused { why } => *o.refused.entry(why.clone()).or_default() += 1,
            Outcome::Entered => o.entered_lottery += 1,
            Outcome::Failed { step, kind } => {
                *o.failed.entry(format!("{step}: {kind}")).or_default() += 1
            }
            Outcome::Interrupted { step } => *o.interrupted.entry((*step).into()).or_default() += 1,
        }
    }
    let cap = r.campaign.as_ref().and_then(|c| c.units);
    let accepted = r.accepted.len() as u64;
    let eligible = o.applied + o.sold_out.values().sum::<u64>();
    let expected = cap.map(|c| eligible.min(c.max(0) as u64));
    let apps = Applications {
        accepted,
        cap,
        eligible,
        expected,
        matches_expected: expected.map(|e| e == accepted),
        duplicates: r.accepted.values().filter(|n| **n > 1).count() as u64,
        second_device_refused: r.second_device_refused,
        second_device_mismatch: r.second_device_mismatch,
    };
    let fairness = fairness::assess(&r.joins);
    let timeline: Vec<Point> = r
        .seconds
        .iter()
        .enumerate()
        .map(|(t, s)| Point {
            t,
            arrivals: s.arrivals,
            completions: s.completions,
            applied: s.applied,
            errors: s.errors,
            retried_ok: s.retried_ok,
            failed: s.failed,
            shed: s.shed,
            started_over: s.started_over,
            waiting: s.waiting,
            in_flight: s.in_flight,
            p50_ms: ms_at(&s.hist, 0.5),
            p99_ms: ms_at(&s.hist, 0.99),
            shed_hist: s.shed_hist.clone(),
        })
        .collect();
    let overload = overload(&r.steps, &o, elapsed);
    let mut reasons = Vec::new();
    for s in &steps {
        if s.latency_ms.p99 >= meta.p99_limit_ms {
            reasons.push(format!(
                "step {}: p99 {:.0} ms is not under {:.0} ms",
                s.name, s.latency_ms.p99, meta.p99_limit_ms
            ));
        }
        if s.errors_total > 0 {
            reasons.push(format!(
                "step {}: {} errors {:?}",
                s.name, s.errors_total, s.errors
            ));
        }
    }
    if !o.failed.is_empty() {
        reasons.push(format!("citizens who failed: {:?}", o.failed));
    }
    if apps.duplicates > 0 || apps.second_device_mismatch > 0 {
        reasons.push(format!(
            "{} duplicate applications, {} second devices with another place",
            apps.duplicates, apps.second_device_mismatch
        ));
    }
    // Told every unit was promised, and left at that: an answer only if the units were
    // then sold. Units left while people waited is a failure of the queue to move on.
    let promised = o
        .sold_out
        .get(crate::record::PROMISED_AT_END)
        .copied()
        .unwrap_or(0);
    if let Some(cap) = cap.filter(|c| promised > 0 && accepted < (*c).max(0) as u64) {
        reasons.push(format!(
            "{promised} citizens were told every unit was promised when the tool stopped, yet {} of {cap} units were never sold",
            cap.max(0) as u64 - accepted
        ));
    }
    if fairness.after_opening.out_of_order > 0 {
        reasons.push(format!(
            "{} citizens admitted ahead of someone who came before them",
            fairness.after_opening.out_of_order
        ));
    }
    if meta.interrupted {
        reasons.push("interrupted before the end".into());
    }
    if meta.overdue {
        reasons.push("journeys still going at the run's deadline were ended".into());
    }
    let faults = crate::faults::costs(&r.faults, &timeline);
    for f in &faults {
        if let Some(e) = &f.error {
            reasons.push(format!(
                "fault {} at {:.0} s not injected: {e}",
                f.name, f.at_secs
            ));
        }
    }
    let acks = crate::ledger::Acks {
        tickets: r
            .joins
            .iter()
            .filter_map(|j| j.ticket.map(|t| (j.citizen, t)))
            .collect(),
        admissions: r.admissions,
        codes: r.codes,
        sign_ins: r.sign_ins,
    };
    Report {
        scenario: meta.scenario,
        target: meta.target,
        routed: meta.routed,
        logins_across_replicas: r.logins_across_replicas,
        mix: meta.mix,
        started_at: meta.started_at,
        elapsed_secs: meta.elapsed_secs,
        interrupted: meta.interrupted,
        arrivals: Arrivals {
            planned: meta.planned,
            launched: meta.launched,
            peak_per_sec: meta.peak_per_sec,
            duration_secs: meta.duration_secs,
            launch_lag_ms: Latency::of(&r.launch_lag),
        },
        steps,
        client,
        outcomes: o,
        applications: apps,
        campaign: r.campaign,
        fairness,
        overload,
        timeline,
        faults,
        ledger: None,
        overdue: meta.overdue,
        verdict: Verdict {
            held: reasons.is_empty(),
            p99_limit_ms: meta.p99_limit_ms,
            reasons,
        },
        acks,
    }
}

impl Report {
    /// Adds the ledger's check; the run holds only if the ledger does.
    pub fn with_ledger(mut self, l: crate::ledger::Ledger) -> Self {
        if !l.holds() {
            self.verdict.reasons.push(format!(
                "the ledger: {} lost, {} issued twice, {} out of order, {} oversold, {} duplicate national IDs",
                l.lost, l.issued_twice, l.out_of_order, l.oversold, l.duplicate_national_ids
            ));
            self.verdict.held = false;
        }
        self.ledger = Some(l);
        self
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} of {} arrivals in {:.1} s (peak {:.1}/s){}",
            self.scenario,
            self.arrivals.launched,
            self.arrivals.planned,
            self.elapsed_secs,
            self.arrivals.peak_per_sec,
            if self.interrupted {
                " — interrupted"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "{:<18} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>6}",
            "step", "count", "per s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        for st in &self.steps {
            let _ = writeln!(
                s,
                "{:<18} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6}",
                st.name,
                st.count,
                st.per_sec,
                st.latency_ms.p50,
                st.latency_ms.p99,
                st.latency_ms.p999,
                st.latency_ms.max,
                st.errors_total
            );
        }
        let o = &self.outcomes;
        let _ = writeln!(
            s,
            "outcomes: {} applied, {} sold out, {} gave up, refused {:?}, failed {:?}, interrupted {:?}",
            o.applied,
            o.sold_out.values().sum::<u64>(),
            o.gave_up,
            o.refused,
            o.failed,
            o.interrupted
        );
        let a = &self.applications;
        let _ = writeln!(
            s,
            "applications: {} accepted, cap {:?}, expected {:?}, duplicates {}",
            a.accepted, a.cap, a.expected, a.duplicates
        );
        let f = &self.fairness;
        let _ = writeln!(
            s,
            "fairness: after opening n={} tau={:?} out of order {}; before opening n={} p={:?}",
            f.after_opening.n,
            f.after_opening.kendall_tau,
            f.after_opening.out_of_order,
            f.before_opening.n,
            f.before_opening.p_value
        );
        let ov = &self.overload;
        let _ = writeln!(
            s,
            "overload: goodput {:.1} journeys/s; {} of {} requests ({:.1}%) refused with 503 + Retry-After, answered in p99 {:.1} ms; served p99 {:.0} ms (slowest step: {})",
            ov.goodput_per_sec,
            ov.shed,
            ov.requests,
            100.0 * ov.shed_share,
            ov.shed_ms.p99,
            ov.accepted_p99_ms,
            if ov.accepted_p99_step.is_empty() { "none" } else { &ov.accepted_p99_step }
        );
        if !self.routed.is_empty() {
            let _ = writeln!(
                s,
                "replicas: {:?}; sign-ins served by more than one IdP replica: {}",
                self.routed, self.logins_across_replicas
            );
        }
        for fc in &self.faults {
            let _ = writeln!(
                s,
                "fault {} at {:.1} s: {} errors after it ({} refused with 503 + Retry-After, answered in p99 {:.0} ms), worst p99 {:.0} ms, {} requests through on a retry, {} sign-ins started over, {} citizens failed, {}{}",
                fc.name,
                fc.at_secs,
                fc.errors,
                fc.shed,
                fc.shed_p99_ms,
                fc.peak_p99_ms,
                fc.retried_ok,
                fc.started_over,
                fc.citizens_failed,
                fc.recovered_after_secs.map_or_else(
                    || "not recovered in its window".to_owned(),
                    |r| format!("recovered after {r:.1} s")
                ),
                fc.error
                    .as_ref()
                    .map(|e| format!(" (NOT INJECTED: {e})"))
                    .unwrap_or_default()
            );
        }
        if let Some(l) = &self.ledger {
            let _ = writeln!(
                s,
                "ledger of {}: {} tickets, {} admissions, {} applications, {} acknowledged; {} lost, {} issued twice, {} out of order, {} oversold, {} duplicate national IDs{}",
                l.campaign,
                l.tickets_acknowledged,
                l.admissions_acknowledged,
                l.applications_acknowledged,
                match l.tokens_acknowledged {
                    Some(t) => format!("{t} sign-ins' tokens"),
                    None => "sign-ins' tokens not checked (no IdP database)".into(),
                },
                l.lost,
                l.issued_twice,
                l.out_of_order,
                l.oversold,
                l.duplicate_national_ids,
                l.findings
                    .first()
                    .map(|f| format!(" (first finding: {f})"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "verdict: {}{}",
            if self.verdict.held {
                "held"
            } else {
                "did not hold"
            },
            self.verdict
                .reasons
                .iter()
                .map(|r| format!("\n  - {r}"))
                .collect::<String>()
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{build, Meta};
    use crate::record::{Campaign, Outcome, Recorder, PROMISED_AT_END};

    fn meta() -> Meta {
        Meta {
            scenario: "test".into(),
            target: serde_json::Value::Null,
            routed: Default::default(),
            mix: serde_json::Value::Null,
            started_at: 0,
            elapsed_secs: 1.0,
            interrupted: false,
            overdue: false,
            planned: 3,
            launched: 3,
            peak_per_sec: 1.0,
            duration_secs: 1.0,
            p99_limit_ms: 500.0,
        }
    }

    /// Citizens left told "every unit is promised" are an answer only if the units were
    /// then sold: with units unsold, the queue failed to move on and the run does not hold.
    #[test]
    fn promised_at_the_end_with_units_unsold_does_not_hold() {
        let run = |accepted: usize| {
            let rec = Recorder::new(Instant::now());
            rec.campaign(Campaign {
                id: "c".into(),
                units: Some(2),
                opens_at: None,
                selection: None,
            });
            for i in 0..accepted {
                rec.accepted(i);
                rec.outcome(Outcome::Applied);
            }
            rec.outcome(Outcome::SoldOut {
                at: PROMISED_AT_END,
            });
            build(meta(), rec.finish()).verdict
        };
        let unsold = run(1);
        assert!(!unsold.held, "{:?}", unsold.reasons);
        assert!(
            unsold.reasons.iter().any(|r| r.contains("never sold")),
            "{:?}",
            unsold.reasons
        );
        let sold = run(2);
        assert!(sold.held, "{:?}", sold.reasons);
    }
}
