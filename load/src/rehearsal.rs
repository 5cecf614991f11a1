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
//!   refused connection), then the network comes back.
//!
//! The services reach Redis and PostgreSQL through loopback TCP proxies the tool owns
//! (standing for the Kubernetes Services in front of them), which is how the failover
//! moves them and the partitions cut them.
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
];

/// How long a partition lasts.
pub const PARTITION_SECS: u64 = 5;

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
    /// Units on sale; by default half the crowd, so the campaign sells out.
    pub units: Option<i64>,
    pub admission_per_min: i64,
    pub pow_difficulty: u8,
    pub p99_limit_ms: f64,
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
    presale: local::deploy::PresaleProcesses,
    next_presale: AtomicUsize,
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

    async fn presale(&self) -> Result<(), String> {
        let n = self.presale.len();
        if n == 0 {
            return Err("the presale replicas do not run as processes".into());
        }
        // The last replica first: the first one's URL is the public one.
        let i = n - 1 - self.next_presale.fetch_add(1, Ordering::Relaxed) % n;
        self.presale.crash(i).map_err(|e| e.to_string())?;
        self.presale.start(i).await.map_err(|e| e.to_string())
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
                "presale-crash" => self.presale().await,
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
            "deployment": format!("rehearsal: stubs, 1 IdP, {} presale processes, PostgreSQL and a Redis primary (append-only file) with a replica of its own, behind loopback proxies", r.presale_replicas.max(1)),
            "pow_difficulty": r.pow_difficulty,
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
                let l =
                    crate::ledger::check(&ledger_at, &c.id, &report.acks, Duration::from_secs(30))
                        .await;
                l.map(|l| report.with_ledger(l))
            }
            None => Ok(report),
        },
        Err(e) => Err(e),
    };
    d.stop().await;
    drop(owned);
    report
}
