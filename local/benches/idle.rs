//! What campaigns cost while nothing happens (issue 33): `cargo bench -p local --bench
//! idle` (PostgreSQL at `EMTA_TEST_POSTGRES_URL`, Redis at `EMTA_TEST_REDIS_URL`, as the
//! tests; `EMTA_BENCH_FINISHED`, default `0,100`, the numbers of finished campaigns).
//!
//! A ministry licenses presale after presale for years and every replica's admitter ticks
//! four times a second. For each number of finished campaigns (queues closed an hour ago,
//! half taking holds, nobody in them), one deployment (the IdP, one presale replica on
//! PostgreSQL and Redis, one campaign open now) is left alone until their delayed seeds
//! are settled and their logs sequenced (what issuing them costs, once), then
//! measured for `SECS`: the SQL statements sent from this process (the IdP, the presale
//! replica and the deployment's helpers, as sqlx reports them: target `sqlx::query`) and
//! the presale database's commits (`pg_stat_database`: approximate, as an idle backend
//! reports its counts up to 10 s late), a second; the most frequent statements by their
//! first words go to standard error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// How long each deployment is measured.
const SECS: u64 = 20;

/// Statements by their summary (sqlx's first words of each).
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<HashMap<String, u64>>>);

struct Summary(String);

impl tracing::field::Visit for Summary {
    fn record_str(&mut self, f: &tracing::field::Field, value: &str) {
        if f.name() == "summary" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, f: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if f.name() == "summary" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn enabled(&self, m: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        m.target() == "sqlx::query"
    }
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut s = Summary(String::new());
        e.record(&mut s);
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(s.0)
            .or_default() += 1;
    }
}

impl Statements {
    fn take(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn commits(url: &str) -> anyhow::Result<i64> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut c)
    .await?;
    c.close().await?;
    Ok(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let statements = Statements::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(statements.clone()),
    )?;
    let finished: Vec<usize> = std::env::var("EMTA_BENCH_FINISHED")
        .unwrap_or_else(|_| "0,100".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()?;
    println!(
        "| finished campaigns | statements a second (this process) | presale commits a second (approximate) |"
    );
    println!("|---:|---:|---:|");
    for k in finished {
        let d = local::deploy(local::Options {
            postgres_admin: Some(testkit::servers::postgres_admin_url()),
            redis_url: testkit::servers::redis_url(),
            citizens: 1,
            ..local::Options::new(local::queue_license(100, -5, 60))
        })
        .await?;
        let now = service_kit::clock::now();
        for i in 0..k {
            let l = presale::domain::NewLicense {
                license_no: format!("DONE-{i}-{}", rand::random::<u32>()),
                opens_at: now - 7200,
                closes_at: now - 3600,
                delivery_deadline: now + 300 * 24 * 3600,
                ..local::queue_license(100, 0, 60)
            };
            let l = if i % 2 == 0 {
                local::deploy::with_stub_bank_hold(l)
            } else {
                l
            };
            d.store
                .issue_license(&l, now)
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        // The replica reloads the licenses within a tick; its first ticks find the finished
        // ones finished, and it settles each one's delayed seed (once, in the first
        // seconds): measured after that, and after their log records are sequenced.
        let mut settled = false;
        for _ in 0..240 {
            if d.store.unsettled_seeds().await?.is_empty() && d.store.log_pending().await? == 0 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !settled {
            eprintln!("    {k} finished: seeds or log records still waiting after 120 s");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        statements.take();
        let before = commits(&d.presale_database_url).await?;
        let t0 = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(SECS)).await;
        let by_kind = statements.take();
        let n: u64 = by_kind.values().sum();
        let after = commits(&d.presale_database_url).await?;
        // Between the two reads (each lags alike); the first read is a commit too.
        let c = after - before - 1;
        println!(
            "| {k} | {:.1} | {:.1} |",
            n as f64 / SECS as f64,
            c as f64 / t0.elapsed().as_secs_f64()
        );
        let mut top: Vec<_> = by_kind.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        for (summary, count) in top.iter().take(12) {
            eprintln!(
                "    {k} finished: {:8.1}/s  {summary}",
                *count as f64 / SECS as f64
            );
        }
        d.stop().await;
    }
    Ok(())
}
