//! A run: arrivals launched on the curve's instants whatever the servers do, each a
//! citizen walking the journey; live progress; Ctrl-C stops arrivals and ends the
//! journeys in flight with a partial report.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;
use testkit::FixtureCitizen;

use crate::curve::Curve;
use crate::journey::{Journey, Person, Traits};
use crate::record::Recorder;
use crate::report::{self, Meta, Report};

/// How the crowd behaves: shares of citizens with each trait.
#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    /// Share signed in at another manufacturer before the surge (SSO: consent only).
    pub returning: f64,
    /// Share who give up while waiting, after an exponentially distributed patience.
    pub give_up: f64,
    /// Mean patience of those who give up, seconds.
    pub patience_secs: f64,
    /// Share who retry a step that failed with overload or a network error (3 times, and
    /// for up to a minute while Retry-After says when; see `journey::TOLD_TO_COME_BACK_FOR`);
    /// the others stop at the first such error.
    pub retry: f64,
    /// Share who type a wrong SMS code first.
    pub wrong_code: f64,
    /// Share who also join and apply from a second device.
    pub second_device: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            returning: 0.0,
            give_up: 0.0,
            patience_secs: 120.0,
            retry: 1.0,
            wrong_code: 0.0,
            second_device: 0.0,
        }
    }
}

pub struct Plan {
    pub scenario: String,
    pub curve: Curve,
    pub seed: u64,
    pub mix: Mix,
    pub citizens: Vec<FixtureCitizen>,
    /// The other storefront where returning citizens signed in before the surge.
    pub sso_from: Option<String>,
    pub p99_limit_ms: f64,
    pub progress: bool,
    pub target: serde_json::Value,
    /// Faults to inject at their instants (see [`crate::faults`]).
    pub faults: Vec<crate::faults::Fault>,
    /// Breaks the processes the run owns, for named faults.
    pub injector: Option<Arc<dyn crate::faults::Injector>>,
    /// After the last arrival, how long journeys may still take before the run ends
    /// them and counts them failed: a run always ends, whatever the servers do.
    pub finish_within: Duration,
}

fn traits(mix: &Mix, rng: &mut impl Rng, sso: bool) -> Traits {
    let mut draw = |share: f64| share > 0.0 && rng.gen::<f64>() < share;
    let returning = sso && draw(mix.returning);
    let gives_up = draw(mix.give_up);
    let retries = if draw(mix.retry) { 3 } else { 0 };
    let wrong_code = draw(mix.wrong_code);
    let second_device = draw(mix.second_device);
    let patience = gives_up.then(|| {
        let u: f64 = rng.gen_range(1e-9..1.0);
        Duration::from_secs_f64(-u.ln() * mix.patience_secs)
    });
    Traits {
        returning,
        patience,
        retries,
        wrong_code,
        second_device,
    }
}

/// Why journeys still in flight are told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    No,
    /// Ctrl-C: the report is partial.
    Interrupted,
    /// The run's deadline (`finish_within` after the last arrival): counted failed.
    Overdue,
}

/// Runs the plan until every journey ends or `stop` fires (then arrivals stop, journeys
/// in flight are ended, and the report says it is partial).
pub async fn run(
    plan: Plan,
    mut journey: Journey,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    let schedule = plan.curve.schedule(plan.seed);
    anyhow::ensure!(
        schedule.len() <= plan.citizens.len(),
        "the curve brings {} citizens but only {} synthetic citizens are known: generate more (load stubs --citizens) or scale the curve down",
        schedule.len(),
        plan.citizens.len()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed ^ 0x5eed);
    let people: Vec<Arc<Person>> = schedule
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let t = traits(&plan.mix, &mut rng, plan.sso_from.is_some());
            Arc::new(Person::new(i, plan.citizens[i].clone(), t))
        })
        .collect();
    // Returning citizens sign in at the other storefront first, 32 at a time, recorded
    // apart from the surge.
    journey.rec = Arc::new(Recorder::new(Instant::now()));
    let warm = Arc::new(journey.clone());
    let mut browsers: Vec<Option<crate::http::Browser>> = (0..people.len()).map(|_| None).collect();
    if let Some(other) = &plan.sso_from {
        let returning: Vec<usize> = people
            .iter()
            .filter(|p| p.traits.returning)
            .map(|p| p.index)
            .collect();
        if plan.progress && !returning.is_empty() {
            eprintln!(
                "warming up: {} returning citizens sign in at {other}",
                returning.len()
            );
        }
        for chunk in returning.chunks(32) {
            let mut set = tokio::task::JoinSet::new();
            for &i in chunk {
                let (j, p, o) = (warm.clone(), people[i].clone(), other.clone());
                set.spawn(async move { (i, j.warm_up(&p, &o).await) });
            }
            while let Some(r) = set.join_next().await {
                match r? {
                    (i, Ok(b)) => browsers[i] = Some(b),
                    (i, Err(e)) => anyhow::bail!("warm-up sign-in of citizen {i} failed at {e}"),
                }
            }
        }
    }

    crate::faults::check(
        &plan.faults,
        plan.injector.as_ref().map_or(&[], |i| i.names()),
    )
    .map_err(|e| anyhow::anyhow!("the fault schedule: {e}"))?;
    let probes = journey.http.watch_readiness();
    let start = Instant::now();
    let rec = Arc::new(Recorder::new(start));
    journey.rec = rec.clone();
    let journey = Arc::new(journey);
    let started_at = service_kit::clock::now();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(Cancel::No);
    let done = Arc::new(tokio::sync::Notify::new());
    let planned = schedule.len();
    let faults = crate::faults::spawn(
        plan.faults.clone(),
        plan.injector.clone(),
        rec.clone(),
        start,
    );

    let ticker = {
        let (rec, progress) = (rec.clone(), plan.progress);
        tokio::spawn(async move {
            let tty = std::io::stderr().is_terminal();
            let bar = (progress && tty).then(|| {
                let b = indicatif::ProgressBar::new(planned as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {pos}/{len} arrived · {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            });
            let mut every = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                every.tick().await;
                rec.sample();
                n += 1;
                let line = format!(
                    "in flight {} · waiting {} · done {} · errors {} · p99 {:.0} ms",
                    rec.in_flight.load(Ordering::Relaxed),
                    rec.waiting.load(Ordering::Relaxed),
                    rec.completed.load(Ordering::Relaxed),
                    rec.errors.load(Ordering::Relaxed),
                    rec.recent_p99_ms(5)
                );
                match &bar {
                    Some(b) => {
                        b.set_position(rec.launched.load(Ordering::Relaxed));
                        b.set_message(line);
                    }
                    None if progress && n.is_multiple_of(5) => eprintln!(
                        "{:>5} s  arrived {}/{} · {line}",
                        n,
                        rec.launched.load(Ordering::Relaxed),
                        planned
                    ),
                    None => {}
                }
            }
        })
    };

    let mut interrupted = false;
    tokio::pin!(stop);
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (i, offset) in schedule.iter().enumerate() {
        let at = start + Duration::from_secs_f64(*offset);
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = &mut stop => { interrupted = true; break; }
        }
        rec.arrival(Instant::now().saturating_duration_since(at));
        let (j, p, b, c) = (
            journey.clone(),
            people[i].clone(),
            browsers[i].take(),
            cancel_rx.clone(),
        );
        let (live, done) = (live.clone(), done.clone());
        live.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            j.run(p, at, b, c).await;
            if live.fetch_sub(1, Ordering::SeqCst) == 1 {
                done.notify_one();
            }
        });
    }
    let mut overdue = false;
    if !interrupted {
        let end = Instant::now() + plan.finish_within;
        while live.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = done.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tokio::time::sleep_until(end.into()) => { overdue = true; break; }
                _ = &mut stop => { interrupted = true; break; }
            }
        }
    }
    if interrupted || overdue {
        // Journeys still going end now: interrupted by Ctrl-C, or failed at the deadline.
        let _ = cancel_tx.send(if overdue {
            Cancel::Overdue
        } else {
            Cancel::Interrupted
        });
        let grace = Instant::now() + Duration::from_secs(10);
        while live.load(Ordering::SeqCst) > 0 && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    rec.sample();
    ticker.abort();
    probes.abort();
    faults.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let meta = Meta {
        scenario: plan.scenario,
        target: plan.target,
        routed: journey.http.routed(),
        mix: serde_json::to_value(&plan.mix).unwrap_or_default(),
        started_at,
        elapsed_secs: elapsed,
        interrupted,
        overdue,
        planned,
        launched: rec.launched.load(Ordering::Relaxed),
        peak_per_sec: plan.curve.peak_per_sec(),
        duration_secs: plan.curve.duration_secs(),
        p99_limit_ms: plan.p99_limit_ms,
    };
    Ok(report::build(meta, rec.finish()))
}

/// Writes `<out>.json` and `<out>.html`.
pub fn write(
    report: &Report,
    out: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let json = out.with_extension("json");
    let page = out.with_extension("html");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)?;
    std::fs::write(&page, crate::html::render(report))?;
    Ok((json, page))
}
