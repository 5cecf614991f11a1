//! A rehearsal of the opening on one machine, as one command: the tool starts and owns
//! everything it breaks (a PostgreSQL cluster of its own, a Redis with its append-only
//! file, the stub government services, the IdP, presale replicas as processes of the
//! built binary), runs a crowd with a fault schedule, and checks the ledger of
//! acknowledgements against the campaign's transparency log. Everything it started is
//! stopped and removed when it ends.
//!
//! The faults it knows by name:
//! - `redis-crash`: kill -9 of Redis, restarted with its files;
//! - `redis-wipe`: kill -9 of Redis, its files deleted, restarted empty;
//! - `postgres-restart`: immediate shutdown of PostgreSQL (a crash: recovery from the WAL
//!   at the start), then a start;
//! - `presale-crash`: kill -9 of a presale replica (the last one first, then the others in
//!   turn), restarted at once on its port;
//! - `redis-failover`: kill -9 of the Redis primary, its replica promoted (`REPLICAOF NO
//!   ONE`) and the services' endpoint moved to it (as a Kubernetes Service follows the
//!   primary), a new replica started behind it; what the old primary had not replicated
//!   is lost, as in a real asynchronous failover;
//! - `redis-partition`, `postgres-partition`: for five seconds the services' connections
//!   to the store go silent and new ones are never answered (a broken network, not a
//!   refused connection), then the network comes back;
//! - `redis-latency`, `postgres-latency`: for ten seconds every packet between the
//!   services and the store is held back 100 ms each way (`tc netem delay`'s effect);
//! - `idp-crash`: kill -9 of an IdP replica (in turn), restarted at once; the balancer in
//!   front of them skips it while it is down (with `Rehearsal::idp_binary`);
//! - `presale-clock-skew`: a presale replica's clock (in turn) jumps 30 s ahead for
//!   twenty seconds, then back (libfaketime, Debian's `faketime`, under every replica from
//!   the start, its offset moved at run time: the process is not restarted).
//!
//! The services reach Redis and PostgreSQL through loopback TCP proxies the tool owns
//! (standing for the Kubernetes Services in front of them), which is how the failover
//! moves them, the partitions cut them and the latency slows them.
//!
//! And any `run COMMAND`, as against a remote deployment.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::servers::{PgStop, PostgresServer, RedisServer, TcpProxy};

use crate::curve::{Curve, Shape};
use crate::faults::{Fault, Injected, Injector};
use crate::journey::Journey;
use crate::report::Report;
use crate::run::{Mix, Plan};

pub const FAULTS: &[&str] = &[
    "redis-crash",
    "redis-wipe",
    "redis-failover",
    "redis-partition",
    "postgres-restart",
    "postgres-partition",
    "presale-crash",
    "redis-latency",
    "postgres-latency",
    "idp-crash",
    "presale-clock-skew",
];

/// How long a partition lasts.
pub const PARTITION_SECS: u64 = 5;
/// The one-way delay of a latency fault, and how long it lasts.
pub const LATENCY_MS: u64 = 100;
pub const LATENCY_SECS: u64 = 10;
/// How far a skewed clock runs ahead, and for how long.
pub const SKEW_SECS: i64 = 30;
pub const SKEW_FOR_SECS: u64 = 20;

/// Debian's `faketime` library (the thread-safe one).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The default schedule of `load rehearse`: each kind of fault the tool owns, spread
/// over the run (at a fifth, two fifths and three fifths of it).
pub fn default_schedule(secs: f64) -> Vec<Fault> {
    let at = |share: f64, name: &str| Fault {
        at_secs: (secs * share).round(),
        action: crate::faults::Action::Named(name.to_owned()),
    };
    vec![
        at(0.2, "redis-crash"),
        at(0.4, "postgres-restart"),
        at(0.6, "presale-crash"),
    ]
}

pub struct Rehearsal {
    /// Arrivals per second (a plateau).
    pub rate: f64,
    pub secs: f64,
    pub faults: Vec<Fault>,
    /// The `presale` binary the replicas run.
    pub presale_binary: PathBuf,
    pub presale_replicas: usize,
    /// The `idp` binary, to run the IdP as `idp_replicas` processes (which `idp-crash`
    /// needs); `None`: the IdP runs in the tool's process.
    pub idp_binary: Option<PathBuf>,
    pub idp_replicas: usize,
    /// Units on sale; by default half the crowd, so the campaign sells out.
    pub units: Option<i64>,
    pub admission_per_min: i64,
    pub pow_difficulty: u8,
    pub p99_limit_ms: f64,
    /// Admission budgets (`EMTA_MAX_INFLIGHT`, `EMTA_QUEUE_BUDGET_MS`) for the presale and
    /// IdP replicas; `None`: the services' defaults.
    pub presale_admission: Option<(usize, u64)>,
    pub idp_admission: Option<(usize, u64)>,
    pub progress: bool,
    pub seed: u64,
}

/// The processes a rehearsal owns, broken on schedule.
struct Owned {
    /// The Redis primary, and its replica (asynchronous, as Redis replicates).
    redis: Mutex<(RedisServer, RedisServer)>,
    redis_proxy: TcpProxy,
    postgres: Mutex<PostgresServer>,
    postgres_proxy: TcpProxy,
    presale: local::processes::Processes,
    next_presale: AtomicUsize,
    idp: local::processes::Processes,
    next_idp: AtomicUsize,
    /// Each presale replica's libfaketime offset file, when the schedule skews clocks.
    clocks: Option<testkit::servers::TempDir>,
    next_clock: AtomicUsize,
}

/// The offset file of presale replica `i`'s clock.
fn clock_file(dir: &std::path::Path, i: usize) -> PathBuf {
    dir.join(format!("clock-{i}"))
}

impl Owned {
    fn redis(&self, keep_files: bool) -> Result<(), String> {
        let mut r = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        tokio::task::block_in_place(|| r.0.crash_and_restart(keep_files)).map_err(|e| e.to_string())
    }

    fn failover(&self) -> Result<(), String> {
        let mut r = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        tokio::task::block_in_place(|| {
            r.0.crash();
            r.1.promote().map_err(|e| e.to_string())?;
            self.redis_proxy.point_to(r.1.addr());
            let replica = RedisServer::start_replica_of(r.1.addr()).map_err(|e| e.to_string())?;
            // The promoted replica is the primary now; the old primary's files go with it.
            let promoted = std::mem::replace(&mut r.1, replica);
            drop(std::mem::replace(&mut r.0, promoted));
            Ok(())
        })
    }

    async fn partition(&self, proxy: &TcpProxy, to: std::net::SocketAddr) -> Result<(), String> {
        proxy.partition();
        tokio::time::sleep(Duration::from_secs(PARTITION_SECS)).await;
        proxy.point_to(to);
        Ok(())
    }

    fn redis_addr(&self) -> std::net::SocketAddr {
        self.redis
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .addr()
    }

    fn postgres_addr(&self) -> std::net::SocketAddr {
        self.postgres
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .addr()
    }

    fn postgres(&self) -> Result<(), String> {
        let mut pg = self.postgres.lock().unwrap_or_else(|e| e.into_inner());
        tokio::task::block_in_place(|| {
            pg.stop(PgStop::Crash)?;
            pg.start_again()
        })
        .map_err(|e| e.to_string())
    }

    async fn latency(&self, proxy: &TcpProxy) -> Result<(), String> {
        proxy.set_delay(Duration::from_millis(LATENCY_MS));
        tokio::time::sleep(Duration::from_secs(LATENCY_SECS)).await;
        proxy.set_delay(Duration::ZERO);
        Ok(())
    }

    /// kill -9 of one of `replicas` (in turn, the last one first: the first presale
    /// replica's URL is the public one) and a restart.
    async fn crash(
        replicas: &local::processes::Processes,
        next: &AtomicUsize,
        what: &str,
    ) -> Result<(), String> {
        let n = replicas.len();
        if n == 0 {
            return Err(format!("the {what} replicas do not run as processes"));
        }
        let i = n - 1 - next.fetch_add(1, Ordering::Relaxed) % n;
        replicas.crash(i).map_err(|e| e.to_string())?;
        replicas.start(i).await.map_err(|e| e.to_string())
    }

    async fn skew(&self) -> Result<(), String> {
        let Some(dir) = &self.clocks else {
            return Err("the presale replicas run without libfaketime".into());
        };
        let n = self.presale.len().max(1);
        let file = clock_file(
            dir.path(),
            self.next_clock.fetch_add(1, Ordering::Relaxed) % n,
        );
        let set = |offset: String| std::fs::write(&file, offset).map_err(|e| e.to_string());
        set(format!("+{SKEW_SECS}s"))?;
        tokio::time::sleep(Duration::from_secs(SKEW_FOR_SECS)).await;
        set("+0".into())
    }
}

impl Injector for Owned {
    fn names(&self) -> &'static [&'static str] {
        FAULTS
    }

    fn inject<'a>(&'a self, name: &'a str) -> Injected<'a> {
        Box::pin(async move {
            match name {
                "redis-crash" => self.redis(true),
                "redis-wipe" => self.redis(false),
                "redis-failover" => self.failover(),
                "redis-partition" => self.partition(&self.redis_proxy, self.redis_addr()).await,
                "postgres-restart" => self.postgres(),
                "postgres-partition" => {
                    self.partition(&self.postgres_proxy, self.postgres_addr())
                        .await
                }
                "presale-crash" => Self::crash(&self.presale, &self.next_presale, "presale").await,
                "idp-crash" => Self::crash(&self.idp, &self.next_idp, "IdP").await,
                "redis-latency" => self.latency(&self.redis_proxy).await,
                "postgres-latency" => self.latency(&self.postgres_proxy).await,
                "presale-clock-skew" => self.skew().await,
                other => Err(format!("unknown fault `{other}`")),
            }
        })
    }
}

/// Runs the rehearsal: its report, with the ledger checked.
pub async fn run(r: Rehearsal) -> anyhow::Result<Report> {
    crate::faults::check(&r.faults, FAULTS)
        .map_err(|e| anyhow::anyhow!("the fault schedule: {e}"))?;
    let postgres = tokio::task::spawn_blocking(PostgresServer::start)
        .await?
        .map_err(|e| anyhow::anyhow!("starting PostgreSQL: {e}"))?;
    let redis = tokio::task::spawn_blocking(|| {
        let primary = RedisServer::start()?;
        let replica = RedisServer::start_replica_of(primary.addr())?;
        Ok::<_, std::io::Error>((primary, replica))
    })
    .await?
    .map_err(|e| anyhow::anyhow!("starting Redis: {e}"))?;
    let redis_proxy = TcpProxy::start(redis.0.addr()).await?;
    let postgres_proxy = TcpProxy::start(postgres.addr()).await?;
    // Clocks are skewed through libfaketime under every presale replica from the start
    // (the offset file is re-read each second), only when the schedule asks for it.
    let skews = r
        .faults
        .iter()
        .any(|f| f.action == crate::faults::Action::Named("presale-clock-skew".into()));
    let clocks = if skews {
        anyhow::ensure!(
            std::path::Path::new(LIBFAKETIME).exists(),
            "presale-clock-skew needs {LIBFAKETIME}: apt-get install faketime"
        );
        let dir = testkit::servers::TempDir::new("clocks")?;
        for i in 0..r.presale_replicas.max(1) {
            std::fs::write(clock_file(dir.path(), i), "+0")?;
        }
        Some(dir)
    } else {
        None
    };
    let presale_env: Vec<(String, String)> = match &clocks {
        Some(dir) => [
            ("LD_PRELOAD", LIBFAKETIME.to_owned()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                // One file a replica: `{replica}` is its index (see `clock_file`).
                dir.path().join("clock-{replica}").display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION", "1".into()),
            // Timers and timeouts keep real time; only the wall clock is skewed.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        None => Vec::new(),
    };
    let curve = Curve::shape(Shape::Plateau, r.rate, r.secs)?;
    let n = curve.total().ceil() as usize + 1;
    let license = local::queue_license(
        r.units.unwrap_or((n / 2) as i64),
        // Opens a tenth of the way in: some arrive before the opening, most after.
        (r.secs / 10.0).round() as i64,
        r.admission_per_min,
    );
    let d = local::deploy(local::Options {
        postgres_admin: Some(format!(
            "postgres://postgres@{}/postgres",
            postgres_proxy.addr()
        )),
        redis_url: format!("redis://{}", redis_proxy.addr()),
        citizens: n,
        presale_replicas: r.presale_replicas.max(1),
        pow_difficulty: r.pow_difficulty,
        ip_per_sec: 1000,
        presale_binary: Some(r.presale_binary.clone()),
        presale_env,
        idp_binary: r.idp_binary.clone(),
        idp_replicas: r.idp_replicas.max(1),
        presale_admission: r.presale_admission,
        idp_admission: r.idp_admission,
        ..local::Options::new(license)
    })
    .await?;
    let owned = Arc::new(Owned {
        redis: Mutex::new(redis),
        redis_proxy,
        postgres: Mutex::new(postgres),
        postgres_proxy,
        presale: d.presale_processes.clone(),
        next_presale: AtomicUsize::new(0),
        idp: d.idp_processes.clone(),
        next_idp: AtomicUsize::new(0),
        clocks,
        next_clock: AtomicUsize::new(0),
    });
    let journey = Journey::local(&d, 1.0, Duration::from_secs(120))?;
    let plan = Plan {
        scenario: format!("rehearsal: {} arrivals/s over {} s", r.rate, r.secs),
        curve,
        seed: r.seed,
        mix: Mix {
            returning: 0.1,
            give_up: 0.0,
            patience_secs: 600.0,
            // Citizens retry what failed with 503 or a network error, as told.
            retry: 1.0,
            wrong_code: 0.05,
            second_device: 0.05,
        },
        citizens: d.citizens.clone(),
        sso_from: Some("iran-khodro".into()),
        p99_limit_ms: r.p99_limit_ms,
        progress: r.progress,
        target: serde_json::json!({
            "deployment": format!(
                "rehearsal: stubs, {}, {} presale processes, PostgreSQL and a Redis primary (append-only file) with a replica of its own, behind loopback proxies",
                match r.idp_binary {
                    Some(_) => format!("{} IdP processes behind a balancer", r.idp_replicas.max(1)),
                    None => "the IdP in the tool's process".into(),
                },
                r.presale_replicas.max(1)
            ),
            "pow_difficulty": r.pow_difficulty,
            "presale_admission": r.presale_admission,
            "idp_admission": r.idp_admission,
        }),
        faults: r.faults,
        injector: Some(owned.clone()),
        finish_within: Duration::from_secs(300),
    };
    let ledger_at = d.presale.to_string();
    let report = crate::run::run(plan, journey, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    let report = match report {
        Ok(report) => match report.campaign.clone() {
            Some(c) => {
                let national_ids: Vec<String> =
                    d.citizens.iter().map(|c| c.national_id.clone()).collect();
                // The deployment's secret is the tool's: each acknowledged ticket is
                // checked against its holder's in the log.
                let keys = service_kit::keys::Keyring::new(d.secret.as_bytes(), &[]);
                let holders: Vec<String> = d
                    .citizens
                    .iter()
                    .map(|x| presale::queue::holder_of(&keys, &c.id, &x.national_id).0)
                    .collect();
                match crate::ledger::check(
                    &ledger_at,
                    &c.id,
                    &report.acks,
                    Some(&holders),
                    Duration::from_secs(30),
                )
                .await
                {
                    Ok(mut l) => {
                        crate::ledger::check_tokens(&mut l, &report.acks, &national_ids, &d.idp.db)
                            .await
                            .map(|()| report.with_ledger(l))
                    }
                    Err(e) => Err(e),
                }
            }
            None => Ok(report),
        },
        Err(e) => Err(e),
    };
    d.stop().await;
    drop(owned);
    report
}
