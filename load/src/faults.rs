//! A fault schedule beside the arrival curve: at given instants of the run, break
//! something the deployment depends on, and record when and how that went, so the report
//! can show what each fault cost and how long the system took to recover.
//!
//! A schedule is a text file, one fault a line (`#` starts a comment):
//!
//! ```text
//! # seconds  fault
//! 20   redis-crash                      kill -9 Redis, restart it with its files
//! 40   postgres-restart                 immediate shutdown of PostgreSQL, then start
//! 60   run ssh db1 systemctl restart postgresql
//! ```
//!
//! `run COMMAND` runs `sh -c COMMAND` (the operator's hook against a remote deployment);
//! every other name is a fault of the processes the tool itself owns, injected by an
//! [`Injector`] (the rehearsal's in-process deployment), which says which names it knows.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::record::Recorder;

/// One line of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Seconds from the run's start.
    pub at_secs: f64,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A fault the [`Injector`] knows by name (`redis-crash`, `postgres-restart`, ...).
    Named(String),
    /// `sh -c` this command.
    Run(String),
}

impl Fault {
    /// The fault as the report names it.
    pub fn name(&self) -> String {
        match &self.action {
            Action::Named(n) => n.clone(),
            Action::Run(c) => format!("run {c}"),
        }
    }
}

/// What happened when a fault was injected.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    pub name: String,
    /// Seconds from the run's start at which it was injected.
    pub at_secs: f64,
    /// How long the injection itself took (a restart included).
    pub took_secs: f64,
    /// Why it could not be injected, if it could not.
    pub error: Option<String>,
}

/// Parses a schedule; errors name the line.
pub fn parse(text: &str) -> Result<Vec<Fault>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (at, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("line {}: expected `SECONDS FAULT`, found `{line}`", n + 1))?;
        let at_secs: f64 = at
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| format!("line {}: `{at}` is not a number of seconds", n + 1))?;
        let rest = rest.trim();
        let action = match rest.split_once(char::is_whitespace) {
            Some(("run", cmd)) if !cmd.trim().is_empty() => Action::Run(cmd.trim().to_owned()),
            _ if rest == "run" => return Err(format!("line {}: `run` needs a command", n + 1)),
            _ => {
                // Names only; anything after the name is a description.
                let name = rest.split_whitespace().next().unwrap_or(rest);
                Action::Named(name.to_owned())
            }
        };
        out.push(Fault { at_secs, action });
    }
    out.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    Ok(out)
}

/// Reads and parses a schedule file; errors name the file and the line.
pub fn read(path: &std::path::Path) -> anyhow::Result<Vec<Fault>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub type Injected<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Breaks the processes a run owns.
pub trait Injector: Send + Sync {
    /// The fault names this injector knows.
    fn names(&self) -> &'static [&'static str];
    fn inject<'a>(&'a self, name: &'a str) -> Injected<'a>;
}

/// Checks every named fault against the names the run's injector knows (none without
/// one), before the run starts.
pub fn check(faults: &[Fault], known: &[&str]) -> Result<(), String> {
    for f in faults {
        if let Action::Named(n) = &f.action {
            if !known.contains(&n.as_str()) {
                return Err(if known.is_empty() {
                    format!("fault `{n}` needs processes the tool owns (a rehearsal); against a deployment use `run COMMAND`")
                } else {
                    format!(
                        "unknown fault `{n}`: known are {}, or `run COMMAND`",
                        known.join(", ")
                    )
                });
            }
        }
    }
    Ok(())
}

/// Injects each fault at its instant, recording it; ends after the last has ended. Each
/// runs on its own: a fault that lasts (a partition, a latency, a skewed clock) does not
/// hold back the ones after it.
pub fn spawn(
    faults: Vec<Fault>,
    injector: Option<Arc<dyn Injector>>,
    rec: Arc<Recorder>,
    start: Instant,
) -> tokio::task::JoinHandle<()> {
    let tasks: Vec<_> = faults
        .into_iter()
        .map(|f| {
            let (injector, rec) = (injector.clone(), rec.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until((start + Duration::from_secs_f64(f.at_secs)).into()).await;
                inject(f, injector.as_deref(), &rec).await;
            })
        })
        .collect();
    tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    })
}

async fn inject(f: Fault, injector: Option<&dyn Injector>, rec: &Recorder) {
    let began = Instant::now();
    let at_secs = rec.secs(began);
    let name = f.name();
    tracing::warn!(fault = %name, at_secs, "injecting a fault");
    let r = match (&f.action, injector) {
        (Action::Run(cmd), _) => run_command(cmd).await,
        (Action::Named(n), Some(i)) => i.inject(n).await,
        (Action::Named(n), None) => Err(format!("no injector for `{n}`")),
    };
    if let Err(e) = &r {
        tracing::error!(fault = %name, error = %e, "the fault could not be injected");
    }
    rec.fault(FaultEvent {
        name,
        at_secs,
        took_secs: began.elapsed().as_secs_f64(),
        error: r.err(),
    });
}

async fn run_command(cmd: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .map_err(|e| format!("sh -c {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "sh -c {cmd}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What one fault cost, from the run's timeline: the errors from its instant until the
/// next fault (or the end), and how long until they stopped for good (three clean seconds
/// at least before the window ends).
#[derive(Debug, Clone, Serialize)]
pub struct FaultCost {
    pub name: String,
    pub at_secs: f64,
    pub error: Option<String>,
    /// Failed requests in the fault's window.
    pub errors: u64,
    /// Requests in the window that went through on a retry (after a 503 with
    /// Retry-After, or a network error).
    pub retried_ok: u64,
    /// Sign-ins started again from the storefront after an error page in the window.
    pub started_over: u64,
    /// Citizens whose journey ended failed in the window.
    pub citizens_failed: u64,
    /// Requests refused with 503 and Retry-After in the window, and the p99 of how fast
    /// those refusals were answered.
    pub shed: u64,
    pub shed_p99_ms: f64,
    /// The worst second's p99 in the window: what a slow store cost.
    pub peak_p99_ms: f64,
    /// Seconds from the fault until errors stopped; `None` if they never did in its window.
    pub recovered_after_secs: Option<f64>,
}

/// Per fault, its cost from the run's per-second timeline.
pub fn costs(events: &[FaultEvent], timeline: &[crate::report::Point]) -> Vec<FaultCost> {
    let mut out = Vec::new();
    for (k, e) in events.iter().enumerate() {
        let from = (e.at_secs.floor() as usize).min(timeline.len());
        let to = events
            .get(k + 1)
            .map_or(timeline.len(), |n| n.at_secs.floor() as usize)
            .clamp(from, timeline.len());
        let window = &timeline[from..to];
        let errors: u64 = window.iter().map(|p| p.errors).sum();
        // Recovered once the errors stop for the rest of the window, three seconds at least.
        let recovered_after_secs = match window.iter().rposition(|p| p.errors > 0) {
            None => Some(0.0),
            Some(last) if window.len() - last > 3 => {
                Some(((from + last + 1) as f64 - e.at_secs).max(0.0))
            }
            Some(_) => None,
        };
        let mut shed_hist = crate::record::hist();
        for p in window {
            let _ = shed_hist.add(&p.shed_hist);
        }
        out.push(FaultCost {
            shed: window.iter().map(|p| p.shed).sum(),
            shed_p99_ms: crate::record::ms_at(&shed_hist, 0.99),
            peak_p99_ms: window.iter().map(|p| p.p99_ms).fold(0.0, f64::max),
            name: e.name.clone(),
            at_secs: e.at_secs,
            error: e.error.clone(),
            errors,
            retried_ok: window.iter().map(|p| p.retried_ok).sum(),
            started_over: window.iter().map(|p| p.started_over).sum(),
            citizens_failed: window.iter().map(|p| p.failed).sum(),
            recovered_after_secs,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_parses_with_comments_and_sorted() {
        let f = parse(
            "# a rehearsal\n40 postgres-restart immediate\n\n 20 redis-crash # with files\n60 run echo hi there\n",
        )
        .expect("parses");
        assert_eq!(
            f,
            vec![
                Fault {
                    at_secs: 20.0,
                    action: Action::Named("redis-crash".into())
                },
                Fault {
                    at_secs: 40.0,
                    action: Action::Named("postgres-restart".into())
                },
                Fault {
                    at_secs: 60.0,
                    action: Action::Run("echo hi there".into())
                },
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse("10 redis-crash\nsoon redis-crash").unwrap_err(),
            "line 2: `soon` is not a number of seconds"
        );
        assert_eq!(parse("5 run").unwrap_err(), "line 1: `run` needs a command");
        assert!(parse("-3 redis-crash").is_err());
        let f = parse("1 kill-everything").expect("parses");
        assert!(check(&f, &[]).unwrap_err().contains("run COMMAND"));
    }

    #[test]
    fn a_fault_costs_its_errors_and_recovers_after_three_clean_seconds() {
        let ev = |name: &str, at: f64| FaultEvent {
            name: name.into(),
            at_secs: at,
            took_secs: 0.1,
            error: None,
        };
        let errors = [0, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0, 2, 2, 2];
        let timeline: Vec<crate::report::Point> = errors
            .iter()
            .enumerate()
            .map(|(t, &e)| crate::report::Point {
                t,
                arrivals: 10,
                completions: 10,
                applied: 0,
                errors: e,
                retried_ok: e / 2,
                failed: u64::from(t == 3),
                shed: e / 3,
                started_over: u64::from(t == 5),
                waiting: 0,
                in_flight: 0,
                p50_ms: 1.0,
                p99_ms: 2.0 + t as f64,
                shed_hist: crate::record::hist(),
            })
            .collect();
        let c = costs(&[ev("a", 2.2), ev("b", 12.0)], &timeline);
        assert_eq!(c[0].errors, 9);
        assert_eq!(c[0].retried_ok, 2 + 1);
        assert_eq!(c[0].citizens_failed, 1);
        assert_eq!(c[0].shed, 1 + 1);
        assert_eq!(c[0].started_over, 1);
        assert_eq!(c[0].peak_p99_ms, 2.0 + 11.0);
        assert_eq!(c[0].recovered_after_secs, Some(6.0 - 2.2));
        assert_eq!(c[1].errors, 6);
        assert_eq!(c[1].recovered_after_secs, None, "never clean again");
    }
}
