//! A closed-loop driver for benchmarks: `total` operations over `concurrency` tasks, with
//! HDR latency histograms. (Benchmarks of one operation at a time; the surge replayer's
//! open model, which measures from intended arrival times, is separate.)

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub struct Report {
    pub name: String,
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
    pub errors: u64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.hist.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q` in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// A Markdown table row: name, rate, p50, p90, p99, max, errors.
    pub fn row(&self) -> String {
        format!(
            "| {:<34} | {:>10.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.2} | {:>6} |",
            self.name,
            self.rate(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.hist.max() as f64 / 1000.0,
            self.errors
        )
    }

    /// Prints the row, unless nothing ran.
    pub fn print(&self) {
        if !self.hist.is_empty() {
            println!("{}", self.row());
        }
    }
}

pub const HEADER: &str = "| operation                          |      ops/s |  p50 ms |  p90 ms |  p99 ms |  max ms | errors |\n|------------------------------------|-----------:|--------:|--------:|--------:|--------:|-------:|";

/// Runs `op(i)` for i in 0..total over `concurrency` tasks; `op` returns success.
pub async fn drive<F, Fut>(name: &str, total: usize, concurrency: usize, op: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next, errors) = (op.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).ok();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                if !op(i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(h) = h.as_mut() {
                    let _ = h.record(t.elapsed().as_micros() as u64);
                }
            }
            h
        }));
    }
    let mut hist =
        Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    for t in tasks {
        if let Ok(Some(h)) = t.await {
            let _ = hist.add(&h);
        }
    }
    Report {
        name: name.to_owned(),
        hist,
        elapsed: start.elapsed(),
        errors: errors.load(Ordering::Relaxed),
    }
}
