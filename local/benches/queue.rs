//! Presale's queue benchmark (`cargo bench -p local --bench queue`; needs Redis at
//! `EMTA_BENCH_REDIS_URL`, default the local one, and `redis-benchmark` on the PATH).
//!
//! In one run on one machine:
//! - status polls (`GET /{m}/c/{id}/status` with a signed ticket cookie) against a trivial
//!   handler on the same stack (`GET /healthz`), both over HTTP with 32 clients;
//! - durable queue joins (group commit, on PostgreSQL at `EMTA_TEST_POSTGRES_URL` or the
//!   local one, and on SQLite) against `redis-benchmark` running the former Redis join
//!   script on a throwaway Redis with `appendfsync always`;
//! - PostgreSQL bytes per waiting applicant after the joins.

use std::process::Command;
use std::sync::Arc;

use presale::domain::ticket::{cookie_name, Tickets};
use presale::domain::{NationalId, NewLicense, Place};
use presale::queue::Queue;
use presale::store::Store;

/// The Redis join script of the queue before its record moved to SQL (issue 10), kept as
/// the reference a durable join is measured against.
const REDIS_JOIN: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return {tonumber(v), 0} end
local m = redis.call('HMGET', KEYS[2], 'opens', 'closed', 'suspended')
if m[2] == '1' or m[3] == '1' then return {0, 2} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n
if now < tonumber(m[1]) then
  n = -redis.call('HINCRBY', KEYS[2], 'early', 1)
else
  n = tonumber(redis.call('HGET', KEYS[2], 'early') or '0') + redis.call('HINCRBY', KEYS[2], 'late', 1)
end
redis.call('HSET', KEYS[1], ARGV[1], n)
return {n, 1}
";
use testkit::drive::{drive, HEADER};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis = std::env::var("EMTA_BENCH_REDIS_URL")
        .unwrap_or_else(|_| testkit::servers::DEFAULT_REDIS_URL.into());

    // The IdP (the storefront discovers it at start-up), one presale replica on SQLite and
    // Redis, and a campaign open now.
    let d = local::deploy(local::Options {
        redis_url: redis.clone(),
        citizens: 10,
        ip_per_sec: 10_000_000,
        ..local::Options::new(NewLicense {
            max_active: 100,
            min_age: None,
            ..local::queue_license(1_000_000, -5, 60)
        })
    })
    .await?;
    let license = d
        .store
        .licenses()
        .await?
        .first()
        .map(|l| l.id.clone())
        .ok_or_else(|| anyhow::anyhow!("no license"))?;
    let base = d.presale.as_str().trim_end_matches('/').to_owned();
    let secret = d.secret.clone();
    let nid = NationalId::parse("0499370899")?;
    let tickets = Tickets::new(service_kit::keys::Keyring::new(secret.as_bytes(), &[]));
    let cookie = format!(
        "{}={}",
        cookie_name(&license),
        tickets.sign(&license, &nid, Place::Ticket(5000))
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let status_url = format!("{base}/saipa/c/{license}/status");
    println!("\nemta presale queue benchmark, {CONCURRENCY} concurrent clients\n");
    println!("{}", HEADER);
    let get = |url: String, cookie: Option<String>| {
        let http = http.clone();
        move |_| {
            let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
            async move {
                let mut r = http.get(&url);
                if let Some(c) = cookie {
                    r = r.header("cookie", c);
                }
                r.send().await.is_ok_and(|r| r.status() == 200)
            }
        }
    };
    // Warm-up, then the pair in alternation (twice) so neither gets the quieter moment.
    drive(
        "warm-up",
        5000,
        CONCURRENCY,
        get(format!("{base}/healthz"), None),
    )
    .await;
    for _ in 0..2 {
        println!(
            "{}",
            drive(
                "trivial handler (GET /healthz)",
                40_000,
                CONCURRENCY,
                get(format!("{base}/healthz"), None)
            )
            .await
            .row()
        );
        println!(
            "{}",
            drive(
                "status poll (signed ticket, cache)",
                40_000,
                CONCURRENCY,
                get(status_url.clone(), Some(cookie.clone()))
            )
            .await
            .row()
        );
    }

    // Durable joins straight into the queue (what the join handler does after its
    // checks): group commit on PostgreSQL and on SQLite, each join answered after its
    // batch commits.
    let n = 100_000usize;
    let keys = service_kit::keys::Keyring::new(secret.as_bytes(), &[]);
    for backend in [testkit::Backend::Servers, testkit::Backend::Embedded] {
        let db = backend.database("qbench").await;
        let store = Store::connect(&db.url, 16).await?;
        store.migrate().await?;
        let id = store
            .issue_license(
                &NewLicense {
                    max_active: 10,
                    ..local::queue_license(1_000_000, -5, 60)
                },
                service_kit::clock::now(),
            )
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let queue = Arc::new(Queue::new(store.clone(), keys.clone()));
        let people: Arc<Vec<NationalId>> = Arc::new(
            (0..n)
                .filter_map(|i| testkit::citizens::national_id_from(100_000_000 + i as u32))
                .filter_map(|s| NationalId::parse(&s).ok())
                .collect(),
        );
        let (q, campaign) = (queue.clone(), Arc::new(id.clone()));
        let label = match backend {
            testkit::Backend::Servers => "durable join (PostgreSQL, group commit)",
            testkit::Backend::Embedded => "durable join (SQLite, group commit)",
        };
        let joins = drive(label, n, CONCURRENCY, move |i| {
            let (q, campaign, people) = (q.clone(), campaign.clone(), people.clone());
            async move { q.join(&campaign, &people[i % people.len()]).await.is_ok() }
        })
        .await;
        println!("{}", joins.row());
        if backend == testkit::Backend::Servers {
            let bytes: i64 = sqlx::query_scalar(
                "SELECT CAST(pg_total_relation_size('queue_tickets') AS BIGINT)",
            )
            .fetch_one(store.pool())
            .await?;
            println!(
                "PostgreSQL bytes per waiting applicant (queue_tickets with its indexes): {:.1}",
                bytes as f64 / n as f64
            );
        }
        store.close().await;
    }

    // The reference: the former Redis join (one Lua script per join, no durability of
    // its own) on a throwaway Redis with the persistence a durable queue in Redis would
    // need (`appendfsync always`), through `redis-benchmark`.
    let dir = testkit::servers::TempDir::new("qbench-redis")?;
    let port = testkit::servers::free_port();
    let mut redis_server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
    };
    while !cli(&["PING"])?.stdout.starts_with(b"PONG") {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sha = String::from_utf8(cli(&["SCRIPT", "LOAD", REDIS_JOIN])?.stdout)?;
    cli(&["HSET", "m", "opens", "0"])?;
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", &CONCURRENCY.to_string()])
        .args([
            "-n",
            &n.to_string(),
            "-r",
            "100000000",
            "-q",
            "EVALSHA",
            sha.trim(),
        ])
        .args(["2", "t", "m", "f__rand_int__"])
        .output()?;
    let _ = redis_server.kill();
    let _ = redis_server.wait();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let last = text
        .split(['\r', '\n'])
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    let rps = last.split(": ").nth(1).unwrap_or(&last);
    println!(
        "redis-benchmark, former join script, appendfsync always, {CONCURRENCY} clients: {rps}"
    );
    d.stop().await;
    Ok(())
}
