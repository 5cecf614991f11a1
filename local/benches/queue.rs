//! Presale's queue benchmark (`cargo bench -p local --bench queue`; needs Redis at
//! `EMTA_BENCH_REDIS_URL`, default the local one, and `redis-benchmark` on the PATH).
//!
//! In one run on one machine:
//! - status polls (`GET /{m}/c/{id}/status` with a signed ticket cookie) against a trivial
//!   handler on the same stack (`GET /healthz`), both over HTTP with 32 clients;
//! - queue joins (the Lua join script through the service's pool) against
//!   `redis-benchmark` running the same script with EVALSHA;
//! - Redis memory per waiting applicant after the joins.

use std::process::Command;
use std::sync::Arc;

use presale::domain::ticket::{cookie_name, Tickets};
use presale::domain::{NationalId, NewLicense, Place};
use presale::queue::{Queue, QueueSettings, JOIN};
use testkit::drive::{drive, HEADER};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis = std::env::var("EMTA_BENCH_REDIS_URL")
        .unwrap_or_else(|_| testkit::servers::DEFAULT_REDIS_URL.into());
    let prefix = format!("qbench{}", std::process::id());

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

    // Joins straight into the queue (what the join handler does after its checks).
    let n = 100_000usize;
    let queue = Arc::new(Queue::new(&redis, &prefix, secret.as_bytes())?);
    let settings = Arc::new(QueueSettings {
        campaign: "bench-join".into(),
        opens_at_ms: service_kit::clock::now_ms() - 1000,
        rate_per_min: 60,
        max_active: 10,
        apply_window_ms: 60_000,
        buckets: (n / 100) as u32,
    });
    queue.setup(&settings).await?;
    // Valid national IDs, made before the clock starts.
    let people: Arc<Vec<NationalId>> = Arc::new(
        (0..n)
            .filter_map(|i| testkit::citizens::national_id_from(100_000_000 + i as u32))
            .filter_map(|s| NationalId::parse(&s).ok())
            .collect(),
    );
    let (q, st) = (queue.clone(), settings.clone());
    let joins = drive("queue join (Lua, service pool)", n, CONCURRENCY, move |i| {
        let (q, st, people) = (q.clone(), st.clone(), people.clone());
        async move { q.join(&st, &people[i % people.len()]).await.is_ok() }
    })
    .await;
    println!("{}", joins.row());
    let bytes = queue.memory_usage(&settings).await?;
    println!(
        "\nRedis memory per waiting applicant: {:.1} bytes ({bytes} bytes for {n})",
        bytes as f64 / n as f64
    );

    // redis-benchmark, same script, same key layout, random fields.
    let url = url::Url::parse(&redis)?;
    let (host, port) = (
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(6379),
    );
    let sha = String::from_utf8(
        Command::new("redis-cli")
            .args(["-h", &host, "-p", &port.to_string(), "SCRIPT", "LOAD", JOIN])
            .output()?
            .stdout,
    )?;
    let meta = format!("{prefix}:q:{{c:rb}}:m");
    Command::new("redis-cli")
        .args([
            "-h",
            &host,
            "-p",
            &port.to_string(),
            "HSET",
            &meta,
            "opens",
            "0",
        ])
        .output()?;
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            &host,
            "-p",
            &port.to_string(),
            "-c",
            &CONCURRENCY.to_string(),
            "-n",
            &n.to_string(),
            "-r",
            "100000000",
            "-q",
            "EVALSHA",
            sha.trim(),
            "2",
            &format!("{prefix}:q:{{c:rb}}:t:0"),
            &meta,
            "f__rand_int__",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let last = text
        .split(['\r', '\n'])
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    let rps = last.split(": ").nth(1).unwrap_or(&last);
    println!("redis-benchmark, same join script, {CONCURRENCY} clients: {rps}");
    d.stop().await;
    Ok(())
}
