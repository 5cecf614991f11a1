//! How much one replica of each service holds: a whole deployment in this process (stub
//! services, the IdP, one presale replica, on PostgreSQL and Redis), then plateaus of
//! rising arrival rates through it, each a fresh license and fresh databases, until a
//! rate does not hold. The load tool runs on the same machine, so what it measures is
//! the whole system's capacity on these cores, the tool's own work included.

use std::time::Duration;

use local::Options;

use crate::curve::{Curve, Shape};
use crate::journey::Journey;
use crate::report::Report;
use crate::run::{Mix, Plan};

pub struct Sweep {
    pub postgres_admin: String,
    pub redis_url: String,
    pub rates: Vec<f64>,
    pub secs: f64,
    pub pow_difficulty: u8,
    pub p99_limit_ms: f64,
    pub out: std::path::PathBuf,
    /// Keep going past the first rate that does not hold.
    pub all: bool,
    /// The license's admission rate: how fast the queue lets people apply.
    pub admission_per_min: i64,
    /// The presale replica's SQL pool.
    pub presale_db_connections: u32,
    /// The presale replica's admission budget (`None`: its defaults).
    pub presale_admission: Option<(usize, u64)>,
    /// The IdP's admission budget (`None`: its defaults).
    pub idp_admission: Option<(usize, u64)>,
    /// Without the bank step (the license asks no hold): for comparing what it costs.
    pub no_bank: bool,
    /// Units for sale per arrival (0.5: half of them buy, and selling out is part of the
    /// run). At twice what holds, set it to 1: when more than the units reach the queue,
    /// those behind wait for an admitted citizen's time to lapse (600 s), and the run's
    /// goodput, journeys over its whole length, would measure that wait instead.
    pub units_per_arrival: f64,
}

/// Work the servers' backends did: PostgreSQL commits by database, Redis commands by
/// kind (`INFO commandstats`) and SQL statements by text (`pg_stat_statements`, when the
/// server loads it; empty otherwise).
#[derive(Debug, Default, Clone)]
pub struct Work {
    /// Commits of the databases counted ([`Self::of_databases`]: the deployment's own).
    pub commits: i64,
    /// Commits by database, as read.
    pub commits_by_db: std::collections::BTreeMap<String, i64>,
    pub redis: std::collections::BTreeMap<String, i64>,
    pub sql: std::collections::BTreeMap<String, i64>,
}

impl Work {
    pub fn commands(&self) -> i64 {
        self.redis.values().sum()
    }

    /// Only the commits of the databases named `names` (a deployment's): the other
    /// databases on the server are other processes' work, and the tool's own readings.
    pub fn of_databases(mut self, names: &[String]) -> Work {
        self.commits_by_db.retain(|db, _| names.contains(db));
        self.commits = self.commits_by_db.values().sum();
        self
    }

    /// What happened between `before` and `self`: the commits of the databases that are
    /// still there (one dropped meanwhile, another process's, is not a negative count),
    /// one made meanwhile counted from zero.
    pub fn since(&self, before: &Work) -> Work {
        let diff = |now: &std::collections::BTreeMap<String, i64>,
                    then: &std::collections::BTreeMap<String, i64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        let commits_by_db: std::collections::BTreeMap<String, i64> =
            diff(&self.commits_by_db, &before.commits_by_db);
        Work {
            commits: commits_by_db.values().sum(),
            commits_by_db,
            redis: diff(&self.redis, &before.redis),
            sql: diff(&self.sql, &before.sql),
        }
    }

    /// A Markdown table of the work per citizen, by kind: Redis commands, SQL commits
    /// and the SQL statements that ran most.
    pub fn per_citizen(&self, citizens: u64) -> String {
        let n = citizens.max(1) as f64;
        let mut out = format!(
            "{} citizens: **{:.1} Redis commands** and **{:.1} SQL commits** per citizen\n\n| Redis command | per citizen |\n|---|---:|\n",
            citizens,
            self.commands() as f64 / n,
            self.commits as f64 / n
        );
        let mut redis: Vec<_> = self.redis.iter().collect();
        redis.sort_by(|a, b| b.1.cmp(a.1));
        for (k, v) in redis {
            out.push_str(&format!("| {k} | {:.2} |\n", *v as f64 / n));
        }
        if !self.sql.is_empty() {
            let mut kinds: std::collections::BTreeMap<String, i64> = Default::default();
            for (q, v) in &self.sql {
                let kind = q.split_whitespace().next().unwrap_or("?").to_uppercase();
                *kinds.entry(kind).or_default() += v;
            }
            out.push_str("\n| SQL statement kind | per citizen |\n|---|---:|\n");
            let mut kinds: Vec<_> = kinds.into_iter().collect();
            kinds.sort_by_key(|b| std::cmp::Reverse(b.1));
            for (k, v) in kinds {
                out.push_str(&format!("| {k} | {:.2} |\n", v as f64 / n));
            }
            out.push_str("\n| SQL statement (the 40 most run) | per citizen |\n|---|---:|\n");
            let mut sql: Vec<_> = self.sql.iter().collect();
            sql.sort_by(|a, b| b.1.cmp(a.1));
            for (q, v) in sql.into_iter().take(40) {
                let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
                let q: String = q.chars().take(140).collect();
                out.push_str(&format!(
                    "| `{}` | {:.2} |\n",
                    q.replace('|', "\\|").replace('`', "'"),
                    *v as f64 / n
                ));
            }
        }
        out
    }
}

/// Reads [`Work`] from the servers.
pub async fn backend_work(postgres_admin: &str, redis_url: &str) -> Work {
    use sqlx::Connection;
    let mut w = Work::default();
    if let Ok(mut c) = sqlx::PgConnection::connect(postgres_admin).await {
        w.commits_by_db = sqlx::query_as::<_, (String, i64)>(
            "SELECT datname::text, xact_commit::bigint FROM pg_stat_database \
             WHERE datname IS NOT NULL",
        )
        .fetch_all(&mut c)
        .await
        .map(|rows| rows.into_iter().collect())
        .unwrap_or_default();
        w.commits = w.commits_by_db.values().sum();
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut c)
            .await;
        if let Ok(rows) = sqlx::query_as::<_, (String, i64)>(
            "SELECT query, sum(calls)::bigint FROM pg_stat_statements GROUP BY query",
        )
        .fetch_all(&mut c)
        .await
        {
            w.sql = rows.into_iter().collect();
        }
    }
    let info = async {
        let client = redis::Client::open(redis_url).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO")
            .arg("commandstats")
            .query_async::<String>(&mut c)
            .await
            .ok()
    }
    .await
    .unwrap_or_default();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls = rest
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        // The tool's own reading is not the citizens' work.
        if name != "info" {
            w.redis.insert(name.to_uppercase(), calls);
        }
    }
    w
}

/// One rate: a fresh deployment and a plateau at `rate` for `secs`; by default half as
/// many units as arrivals, so selling out (planned) is part of every run. Also returns the SQL commits
/// and Redis commands the run cost, read before the deployment drops its databases (a
/// dropped database's counters leave `pg_stat_database`).
pub async fn one(s: &Sweep, rate: f64) -> anyhow::Result<(Report, Work)> {
    let before = backend_work(&s.postgres_admin, &s.redis_url).await;
    let curve = Curve::shape(Shape::Plateau, rate, s.secs)?;
    let n = curve.total().ceil() as usize + 1;
    let d = local::deploy(Options {
        postgres_admin: Some(s.postgres_admin.clone()),
        redis_url: s.redis_url.clone(),
        citizens: n,
        pow_difficulty: s.pow_difficulty,
        presale_db_connections: s.presale_db_connections,
        presale_admission: s.presale_admission,
        idp_admission: s.idp_admission,
        // Opens a fifth of the way in (5 s), like the opening shape.
        // The real rounds' registration: the down payment held at a bank (the stub's)
        // before joining, so every citizen walks the bank's pages too (issue 30).
        ..Options::new({
            let units = ((n as f64 * s.units_per_arrival).ceil() as i64).max(1);
            let l = local::queue_license(units, 5, s.admission_per_min);
            if s.no_bank {
                l
            } else {
                local::deploy::with_stub_bank_hold(l)
            }
        })
    })
    .await?;
    let journey = Journey::local(&d, 1.0, Duration::from_secs(600))?;
    let plan = Plan {
        scenario: format!("plateau {rate}/s"),
        curve,
        seed: rate as u64,
        mix: Mix {
            returning: 0.1,
            give_up: 0.0,
            patience_secs: 600.0,
            retry: 0.0,
            wrong_code: 0.05,
            second_device: 0.0,
        },
        citizens: d.citizens.clone(),
        sso_from: Some("iran-khodro".into()),
        p99_limit_ms: s.p99_limit_ms,
        progress: true,
        target: serde_json::json!({
            "deployment": "in-process: stubs, 1 IdP, 1 presale replica, PostgreSQL, Redis",
            "pow_difficulty": s.pow_difficulty,
            "admission_per_min": s.admission_per_min,
            "presale_db_connections": s.presale_db_connections,
            // [max in flight, queue budget ms]; null: the service's defaults.
            "presale_admission": s.presale_admission,
            "idp_admission": s.idp_admission,
        }),
        faults: Vec::new(),
        injector: None,
        finish_within: Duration::from_secs(660),
    };
    let report = crate::run::run(plan, journey, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    // PostgreSQL's backends report their commits to `pg_stat_database` when they go
    // idle, at most once a second and within ten seconds of their last transaction: read
    // at once, a busy run's last seconds are missing (a reading of 7.8 commits a citizen
    // where the statements said 13). The pools stay open and idle meanwhile.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = backend_work(&s.postgres_admin, &s.redis_url).await;
    // The deployment's own databases only: another process's database dropped during the
    // run (testkit sweeps those of ended processes) once read as 2.2 commits a citizen
    // instead of 13.4.
    let own: Vec<String> = d
        .databases
        .iter()
        .filter_map(|db| database_name(&db.url))
        .collect();
    d.stop().await;
    Ok((report?, after.since(&before).of_databases(&own)))
}

/// The database a PostgreSQL URL names (`None` for SQLite's files).
fn database_name(url: &str) -> Option<String> {
    if !url.starts_with("postgres") {
        return None;
    }
    let path = url.split('?').next()?.rsplit('/').next()?;
    (!path.is_empty()).then(|| path.to_owned())
}

/// The step that gave way first: the most errors, else the highest p99.
pub fn weakest(r: &Report) -> String {
    if let Some(s) = r
        .steps
        .iter()
        .filter(|s| s.errors_total > 0)
        .max_by_key(|s| s.errors_total)
    {
        return format!("{}: {} errors {:?}", s.name, s.errors_total, s.errors);
    }
    r.steps
        .iter()
        .max_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99))
        .map(|s| format!("{}: p99 {:.0} ms", s.name, s.latency_ms.p99))
        .unwrap_or_default()
}

/// Runs the rates in order; writes each report and a Markdown table; returns the table.
pub async fn run(s: Sweep) -> anyhow::Result<String> {
    let mut table = String::from(
        "| arrivals/s | citizens | held | slowest step p99 (ms) | status polls p99 (ms) | applied | sold out | SQL commits / citizen | Redis commands / citizen | what gave way first |\n|---:|---:|:---:|---|---:|---:|---:|---:|---:|---|\n",
    );
    std::fs::create_dir_all(&s.out)?;
    for &rate in &s.rates {
        let (r, work) = one(&s, rate).await?;
        let (commits, commands) = (work.commits, work.commands());
        let per = |n: i64| n as f64 / r.outcomes.total.max(1) as f64;
        crate::run::write(&r, &s.out.join(format!("plateau-{rate}")))?;
        std::fs::write(
            s.out.join(format!("plateau-{rate}-work.md")),
            work.per_citizen(r.outcomes.total),
        )?;
        let slowest = r
            .steps
            .iter()
            .max_by(|a, b| a.latency_ms.p99.total_cmp(&b.latency_ms.p99))
            .map(|x| format!("{} {:.0}", x.name, x.latency_ms.p99))
            .unwrap_or_default();
        let status = r
            .steps
            .iter()
            .find(|x| x.name == "status")
            .map(|x| x.latency_ms.p99)
            .unwrap_or(0.0);
        let row = format!(
            "| {rate} | {} | {} | {slowest} | {status:.0} | {} | {} | {:.1} | {:.1} | {} |\n",
            r.outcomes.total,
            if r.verdict.held { "yes" } else { "no" },
            r.outcomes.applied,
            r.outcomes.sold_out.values().sum::<u64>(),
            per(commits),
            per(commands),
            weakest(&r)
        );
        eprint!("{row}");
        table.push_str(&row);
        if !r.verdict.held && !s.all {
            break;
        }
    }
    std::fs::write(s.out.join("sweep.md"), &table)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(dbs: &[(&str, i64)]) -> Work {
        let commits_by_db: std::collections::BTreeMap<String, i64> =
            dbs.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect();
        Work {
            commits: commits_by_db.values().sum(),
            commits_by_db,
            ..Work::default()
        }
    }

    #[test]
    fn a_database_dropped_during_a_run_takes_nothing_from_its_count() {
        // Another process's database, with 50 000 commits, is dropped meanwhile; the
        // deployment's two are made during the run.
        let before = work(&[("postgres", 900), ("emta_other_1", 50_000)]);
        let after = work(&[
            ("postgres", 960),
            ("emta_idp_7", 12_000),
            ("emta_presale_7", 30_000),
        ]);
        let w = after.since(&before);
        assert_eq!(w.commits, 60 + 12_000 + 30_000);
        let own = w.of_databases(&["emta_idp_7".into(), "emta_presale_7".into()]);
        assert_eq!(
            own.commits, 42_000,
            "the tool's own readings are not counted"
        );
    }

    #[test]
    fn a_database_is_named_by_its_url() {
        assert_eq!(
            database_name("postgres://emta@127.0.0.1:5432/emta_presale_1_2?sslmode=disable")
                .as_deref(),
            Some("emta_presale_1_2")
        );
        assert_eq!(database_name("sqlite:///tmp/x/db.sqlite?mode=rwc"), None);
    }
}
