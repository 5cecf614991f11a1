//! Scale-out, for real: a three-master Redis Cluster on loopback ports, PostgreSQL, two IdP
//! replicas and two presale replicas running as separate processes of the built binary. The
//! load tool drives a surge through them, rotating every request over the replicas as a
//! load balancer would: logins start on one IdP replica and finish on the other, the queue
//! and the cap hold across replicas, and a presale replica sent SIGTERM in the middle of
//! the surge leaves the rotation and exits without losing a request, as does an IdP
//! replica told to stop.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::curve::Curve;
use load::http::{Http, Targets};
use load::journey::{Codes, Journey};
use load::record::Recorder;
use load::run::{Mix, Plan};
use presale::domain::NewLicense;
use testkit::servers::free_port;
use testkit::{generate_citizens, StubServices};
use url::Url;

/// Child processes killed when the test ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three cluster-enabled redis-server processes joined into one Cluster (no replicas).
fn redis_cluster(dir: &std::path::Path) -> (Children, Vec<u16>) {
    let ports = [free_port(), free_port(), free_port()];
    let mut children = Children(Vec::new());
    for p in ports {
        let d = dir.join(format!("redis-{p}"));
        std::fs::create_dir_all(&d).expect("dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &p.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--dir",
                &d.display().to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        children.0.push(child);
    }
    for p in ports {
        wait_for(|| redis_cli(p, &["PING"]).contains("PONG"), "redis node");
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for(
        || {
            ports
                .iter()
                .all(|p| redis_cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        },
        "cluster state ok",
    );
    (children, ports.to_vec())
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn postgres_db() -> String {
    testkit::Backend::Servers.database("scale").await.url
}

async fn ready(url: &str) {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(Instant::now() < until, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_redis_cluster_keep_every_property_and_drain_on_sigterm() {
    // Arrange: the Cluster, the database, the stubs.
    let dir = std::env::temp_dir().join(format!("emta-scale-{}", std::process::id()));
    let (_redis, redis_ports) = redis_cluster(&dir);
    let redis_url = format!(
        "redis+cluster://{}",
        redis_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let citizens = generate_citizens(240, rand::random());
    let stub = StubServices::new(citizens.clone());
    let stub_url = stub.start().await;
    let secret = service_kit::keys::random_token(32);
    let prefix = "emta";

    // Two IdP replicas: one database, one Cluster, one secret; the issuer is the public URL.
    let idp_db = postgres_db().await;
    // Bound now and handed over, so no parallel test can take a port in between.
    let mut idp_listeners = Vec::new();
    for _ in 0..2 {
        idp_listeners.push(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    }
    let idp_ports: Vec<u16> = idp_listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let issuer = format!("http://localhost:{}", idp_ports[0]);
    let mut cores = Vec::new();
    let mut idp_servers = Vec::new();
    // The second IdP replica is told to stop mid-surge, through the same path SIGTERM
    // takes in `idp serve` (`stop_gracefully`: readiness false, drain, finish in flight).
    let (stop_idp, idp_told) = tokio::sync::oneshot::channel::<()>();
    let mut idp_told = Some(idp_told);
    for (i, listener) in idp_listeners.into_iter().enumerate() {
        let mut s =
            local::deploy::idp_settings(&issuer, &idp_db, &redis_url, prefix, &secret, &stub_url);
        s.resend_secs = 1;
        s.trust_forwarded_for = true;
        s.drain_secs = 2;
        let app = idp::Application::build_with_listener(s, listener)
            .await
            .expect("idp");
        cores.push(app.core());
        let told = if i == 1 { idp_told.take() } else { None };
        idp_servers.push(tokio::spawn(app.run_until_stopped(async move {
            match told {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        })));
    }
    let core = cores[0].clone();

    // Two manufacturers, registered for the presale service's public URL.
    let presale_ports = [free_port(), free_port()];
    let public = format!("http://localhost:{}", presale_ports[0]);
    let fronts = local::deploy::register_storefronts(&core, std::slice::from_ref(&public))
        .await
        .expect("clients");
    for c in &cores {
        c.reload().await.expect("reload");
    }

    // One license: 80 units, opening a few seconds into the surge.
    let presale_db = postgres_db().await;
    let store = presale::store::Store::connect(&presale_db, 4)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let now = service_kit::clock::now();
    let license = NewLicense {
        max_active: 200,
        apply_window_secs: 120,
        min_age: None,
        ..local::queue_license(80, 6, 60_000)
    };
    let campaign = store
        .issue_license(&license, now)
        .await
        .expect("sql")
        .expect("valid");
    // The seed's parties reveal once the opening froze the pre-opening list.
    let revealer = tokio::spawn(local::parties::reveal_when_frozen(store.clone()));
    let fronts_file = dir.join("storefronts.json");
    std::fs::write(&fronts_file, serde_json::to_vec(&fronts).expect("json")).expect("write");

    // Two presale replicas as processes of the built binary.
    let mut presale = Children(Vec::new());
    for port in presale_ports {
        let child = Command::new(testkit::servers::binary("presale", "presale"))
            .arg("serve")
            .env("EMTA_PRESALE_LISTEN", format!("127.0.0.1:{port}"))
            .env("EMTA_PRESALE_URL", &public)
            .env("EMTA_ISSUER", &issuer)
            .env("DATABASE_URL", &presale_db)
            .env("REDIS_URL", &redis_url)
            .env("EMTA_REDIS_PREFIX", prefix)
            .env("EMTA_SECRET_KEY", &secret)
            .env("EMTA_STOREFRONTS_FILE", &fronts_file)
            .env("EMTA_IP_PER_SEC", "1000")
            .env("EMTA_TRUST_FORWARDED_FOR", "true")
            .env("EMTA_DRAIN_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("presale binary");
        presale.0.push(child);
    }
    let presale_urls: Vec<Url> = presale_ports
        .iter()
        .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")).expect("url"))
        .collect();
    for u in &presale_urls {
        ready(u.as_str().trim_end_matches('/')).await;
    }
    let idp_urls: Vec<Url> = idp_ports
        .iter()
        .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")).expect("url"))
        .collect();

    let journey = Journey {
        http: Http::new(
            Targets {
                presale: Url::parse(&public).expect("url"),
                presale_replicas: presale_urls.clone(),
                idp_replicas: idp_urls.clone(),
                issuer: Some(Url::parse(&issuer).expect("url")),
            },
            Duration::from_secs(30),
        )
        .expect("http"),
        rec: Arc::new(Recorder::new(Instant::now())),
        codes: Codes::Outbox(stub.outbox.clone()),
        storefront: "saipa".into(),
        campaign: None,
        poll_scale: 0.25,
        max_wait: Duration::from_secs(120),
        spoof_ips: true,
    };
    let plan = Plan {
        scenario: "scale-out".into(),
        curve: Curve {
            bucket_secs: 1.0,
            counts: vec![16.0; 14],
        },
        seed: 11,
        mix: Mix {
            returning: 0.1,
            give_up: 0.0,
            patience_secs: 60.0,
            retry: 0.0,
            wrong_code: 0.1,
            second_device: 0.05,
        },
        citizens,
        sso_from: Some("iran-khodro".into()),
        p99_limit_ms: 1000.0,
        progress: false,
        target: serde_json::json!({"presale": public}),
        faults: Vec::new(),
        injector: None,
        finish_within: Duration::from_secs(600),
    };

    // Act: the surge; six seconds in, the second IdP replica is told to stop; eight
    // seconds in, SIGTERM to the second presale replica.
    let victim = presale.0[1].id();
    let terminated = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let _ = stop_idp.send(());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -TERM {victim}")])
            .status()
            .is_ok_and(|s| s.success());
        (sent, Instant::now())
    });
    let report = load::run::run(plan, journey, std::future::pending())
        .await
        .expect("run");
    let (sent, at) = terminated.await.expect("sigterm task");
    eprintln!("{}", report.summary());

    // Assert: the replica drained and exited cleanly within its grace period.
    assert!(sent, "SIGTERM sent");
    let status = loop {
        if let Some(s) = presale.0[1].try_wait().expect("wait") {
            break s;
        }
        assert!(
            at.elapsed() < Duration::from_secs(20),
            "exited within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "a clean exit: {status:?}");
    let stopped_idp = idp_servers.pop().expect("second IdP");
    assert!(stopped_idp.is_finished(), "the second IdP replica stopped");
    assert!(stopped_idp.await.expect("join").is_ok());
    // No request lost: the citizens do not retry (retry share 0), so any refused, reset
    // or dropped request would show up as an error or a failed citizen.
    let o = &report.outcomes;
    assert_eq!(o.total, 224, "{}", report.summary());
    assert!(o.failed.is_empty(), "{}", report.summary());
    for s in &report.steps {
        assert_eq!(
            s.errors_total, 0,
            "step {} lost requests: {:?}",
            s.name, s.errors
        );
    }
    // Logins crossed IdP replicas; both presale replicas served.
    assert!(
        report.logins_across_replicas > 50,
        "{}",
        report.logins_across_replicas
    );
    for u in idp_urls.iter().chain(&presale_urls) {
        assert!(
            report.routed.get(u.as_str()).is_some_and(|n| *n > 100),
            "{u} served: {:?}",
            report.routed
        );
    }
    // The cap and one application per person hold across replicas, as SQL agrees.
    let a = &report.applications;
    assert_eq!(a.accepted, 80);
    assert_eq!(a.matches_expected, Some(true));
    assert_eq!((a.duplicates, a.second_device_mismatch), (0, 0));
    let id = store.licenses().await.expect("licenses").remove(0).id;
    assert_eq!(store.accepted_count(&id).await.expect("count"), 80);
    // The queue: first come, first served after the opening; a fair draw before it.
    let f = &report.fairness;
    assert!(f.after_opening.n > 20 && f.before_opening.n > 20, "{f:?}");
    assert_eq!(f.after_opening.out_of_order, 0);
    assert!(f.before_opening.distinct_tickets);
    // The queue keeps nothing in Redis (its record is in SQL); logins, sessions and limits
    // spread over the shards.
    let keys = |p: u16, pattern: &str| {
        redis_cli(p, &["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    let queue_keys: usize = redis_ports.iter().map(|p| keys(*p, "emta:q:*")).sum();
    assert_eq!(queue_keys, 0, "no queue state in Redis");
    let busy_nodes = redis_ports
        .iter()
        .filter(|p| keys(**p, "emta:*") > 0)
        .count();
    assert!(busy_nodes >= 2, "logins and limits spread over the shards");

    // Anyone recomputes the campaign from its public log, served by the surviving replica.
    revealer.abort();
    let survivor = format!("http://127.0.0.1:{}", presale_ports[0]);
    let source = presale::transparency::verify::HttpSource::new(&survivor);
    let key = source.key().await.expect("key");
    let accepted = store.license_accepted(&campaign).await.expect("accepted");
    let expected = format!("{accepted} accepted (cap 80)");
    let mut audit = None;
    for _ in 0..20 {
        let r = presale::transparency::verify::audit(&source, &campaign, &key, &[])
            .await
            .expect("audit");
        // The last events are sequenced within a tick or two.
        if r.ok() && r.checked.iter().any(|c| c.contains(&expected)) {
            audit = Some(r);
            break;
        }
        audit = Some(r);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let audit = audit.expect("audited");
    assert!(audit.ok(), "{:?}", audit.findings);
    assert!(
        audit.checked.iter().any(|c| c.contains(&expected)),
        "{:?}",
        audit.checked
    );
}
