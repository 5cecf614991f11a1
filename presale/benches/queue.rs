//! Queue benchmark (`cargo bench -p presale --bench queue`; needs Redis at
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

use idp::admin::{self, NewClient};
use presale::license::{NewLicense, PresaleKind, Selection};
use presale::queue::{Queue, QueueSettings, JOIN};
use presale::service::{ticket_cookie_header, Config, Service, StorefrontConfig};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis =
        std::env::var("EMTA_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let dir = std::env::temp_dir().join(format!("emta-qbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let secret = idp::crypto::random_token(32);
    let prefix = format!("qbench{}", std::process::id());

    // The IdP (the storefront discovers it at start-up) and one storefront.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://localhost:{}", listener.local_addr()?.port());
    let mut s = idp::Settings::for_tests();
    s.issuer = issuer.clone();
    s.dev = true;
    s.secret_key = idp::config::Secret::new(secret.clone());
    s.storage.database_url = idp::config::Secret::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("idp.db").display()
    ));
    let idp_app = idp::Application::build_with_listener(s, None, listener).await?;
    let core = idp_app.core();
    tokio::spawn(idp_app.run_until_stopped(std::future::pending()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://localhost:{port}");
    let (_, client_secret) = admin::add_client(
        &core.db,
        &core.keyring,
        NewClient {
            id: "saipa".into(),
            name: "Saipa".into(),
            name_fa: "سایپا".into(),
            stars: 4,
            redirect_uris: vec![format!("{base}/saipa/callback")],
            post_logout_redirect_uris: vec![],
            service_scopes: vec![],
            id_token_alg: idp::domain::SigningAlg::ES256,
            valid_days: 365,
        },
        "bench",
        idp::now(),
    )
    .await?;
    core.reload().await?;

    let db = format!("sqlite://{}?mode=rwc", dir.join("presale.db").display());
    let store = presale::applications::Store::connect(&db, 4).await?;
    store.migrate().await?;
    let now = idp::now();
    let license = store
        .issue_license(
            &NewLicense {
                license_no: "BENCH-1".into(),
                manufacturer: "saipa".into(),
                model: "Shahin".into(),
                units: 1_000_000,
                unit_price: 8_000_000_000,
                down_payment: 1_000_000_000,
                kind: PresaleKind::Regular,
                delivery_deadline: now + 7200 + 300 * 24 * 3600,
                opens_at: now - 5,
                closes_at: now + 7200,
                selection: Selection::Queue,
                admission_per_min: 60,
                max_active: 100,
                apply_window_secs: 600,
                min_age: None,
                round: None,
                exclusion: None,
            },
            now,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let service = Service::build(Config {
        listen: ([127, 0, 0, 1], port).into(),
        base_url: base.clone(),
        issuer,
        database_url: db,
        redis_url: redis.clone(),
        redis_prefix: prefix.clone(),
        secret_key: secret.clone(),
        ip_per_sec: 10_000_000,
        trust_forwarded_for: false,
        drain_secs: 0,
        storefronts: vec![StorefrontConfig {
            id: "saipa".into(),
            name: "Saipa".into(),
            name_fa: "سایپا".into(),
            client_secret,
        }],
    })
    .await?;
    tokio::spawn(service.run_until_stopped(std::future::pending()));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let cookie = ticket_cookie_header(&secret, &license, "0499370899", 5000);
    let status_url = format!("{base}/saipa/c/{license}/status");
    println!("\nemta presale queue benchmark, {CONCURRENCY} concurrent clients\n");
    println!("{}", load::drive::HEADER);
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
    load::drive::drive(
        "warm-up",
        5000,
        CONCURRENCY,
        get(format!("{base}/healthz"), None),
    )
    .await;
    for _ in 0..2 {
        println!(
            "{}",
            load::drive::drive(
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
            load::drive::drive(
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
        opens_at_ms: presale::now_ms() - 1000,
        rate_per_min: 60,
        max_active: 10,
        apply_window_ms: 60_000,
        buckets: (n / 100) as u32,
    });
    queue.setup(&settings).await?;
    let (q, st) = (queue.clone(), settings.clone());
    let joins = load::drive::drive("queue join (Lua, service pool)", n, CONCURRENCY, move |i| {
        let (q, st) = (q.clone(), st.clone());
        async move { q.join(&st, &format!("{:010}", i)).await.is_ok() }
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
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
