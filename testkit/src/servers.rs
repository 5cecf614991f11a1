//! Where the tests' PostgreSQL and Redis are, and fresh, isolated places in them.
//!
//! `.ci/run` starts throwaway servers and sets `EMTA_TEST_POSTGRES_URL` and
//! `EMTA_TEST_REDIS_URL`; without them the defaults are the servers on the standard local
//! ports. Every test gets its own database and its own Redis key prefix, so tests run in
//! parallel on one server.

use std::path::{Path, PathBuf};

use sqlx::Connection;

/// The PostgreSQL a test may create databases on.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Redis tests share (each under its own prefix).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

pub fn postgres_admin_url() -> String {
    std::env::var("EMTA_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

pub fn redis_url() -> String {
    std::env::var("EMTA_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into())
}

/// `prefix_<pid>_<random>`: unique across parallel tests and test processes, and a valid
/// SQL identifier.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand::random::<u32>())
}

/// A fresh Redis key prefix.
pub fn redis_prefix() -> String {
    unique("emta")
}

/// Which storage a test runs on: every storage test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file and the in-process ephemeral store: the embedded default.
    Embedded,
    /// PostgreSQL and Redis: production.
    Servers,
}

impl Backend {
    /// A fresh database for this backend; panics with a hint when the server is away.
    pub async fn database(self, name: &str) -> FreshDatabase {
        let admin = (self == Self::Servers).then(postgres_admin_url);
        fresh_database(admin.as_deref(), name)
            .await
            .unwrap_or_else(|e| {
                panic!("a fresh {name} database ({e}); run .ci/run or set EMTA_TEST_POSTGRES_URL")
            })
    }

    /// The Redis URL for this backend: empty (in-process store) for the embedded one.
    pub fn redis_url(self) -> String {
        match self {
            Self::Embedded => String::new(),
            Self::Servers => redis_url(),
        }
    }
}

/// A database made for one test or one local deployment.
pub struct FreshDatabase {
    pub url: String,
    /// The SQLite file's folder, removed when this is dropped.
    pub dir: Option<TempDir>,
}

/// A new PostgreSQL database on `admin`, or a new SQLite file when `admin` is `None`.
pub async fn fresh_database(admin: Option<&str>, name: &str) -> Result<FreshDatabase, sqlx::Error> {
    let name = unique(&format!("emta_{name}"));
    let Some(admin) = admin else {
        let dir = TempDir::new(&name)?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        return Ok(FreshDatabase {
            url,
            dir: Some(dir),
        });
    };
    let mut c = sqlx::PgConnection::connect(admin).await?;
    drop_orphans(&mut c).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok(FreshDatabase {
        url: format!("{base}/{name}"),
        dir: None,
    })
}

/// Drops the databases left by test processes that have ended. A test's databases live
/// as long as its process (most tests never drop theirs, and one that panics cannot), and
/// a suite of hundreds of tests would otherwise fill the disk with them: each name carries
/// the id of the process that made it ([`unique`]), and one that no longer runs on this
/// machine has no use for them. One process sweeps at a time (an advisory lock); errors
/// are left for the next sweep. Not on a machine without `/proc`.
async fn drop_orphans(c: &mut sqlx::PgConnection) {
    const SWEEPER: i64 = 0x656d_7461; // "emta"
    if !Path::new("/proc/self").exists() {
        return;
    }
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SWEEPER)
        .fetch_one(&mut *c)
        .await
        .unwrap_or(false);
    if !locked {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar(r"SELECT datname FROM pg_database WHERE datname LIKE 'emta\_%'")
            .fetch_all(&mut *c)
            .await
            .unwrap_or_default();
    for name in names.into_iter().filter(|n| orphaned(n)) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut *c)
            .await;
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SWEEPER)
        .execute(&mut *c)
        .await;
}

/// Whether a name made by [`unique`] (`…_<pid>_<random>`: a database, a Redis key
/// prefix) belongs to a process that no longer runs here.
pub fn orphaned(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '_');
    let (Some(random), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    random.parse::<u32>().is_ok()
        && pid != std::process::id()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Drops a PostgreSQL database made by [`fresh_database`] (after its pools are closed).
pub async fn drop_database(admin: &str, url: &str) -> Result<(), sqlx::Error> {
    let Some(name) = url.rsplit('/').next().filter(|n| n.starts_with("emta_")) else {
        return Ok(());
    };
    let mut c = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await?;
    Ok(())
}

/// A folder under the system's temporary folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new folder `<name>_<pid>_<random>`. Folders named `emta_…` that processes which
    /// have ended left behind (a test's SQLite file, kept past its pools) are removed first,
    /// as [`drop_orphans`] does for databases.
    pub fn new(name: &str) -> std::io::Result<Self> {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("emta_") && orphaned(&name) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(unique(name));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The path of a workspace binary built in the same profile as the running test, built
/// first if it is not there or is older than its package's sources or service-kit's (a
/// test of one package that runs another's binary: `cargo nextest run -p load` does not
/// rebuild presale's, and a stale one would make the test pass or fail on old code).
pub fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test path {}", exe.display()));
    let bin = profile_dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."));
    let sources = [
        root.join(package).join("src"),
        root.join("service-kit").join("src"),
    ];
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_none_or(|b| newest_change(&sources).is_some_and(|s| s > b)) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cargo build {name}: {e}"));
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
    }
    bin
}

/// The latest modification time of any file below `dirs`.
fn newest_change(dirs: &[PathBuf]) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = meta.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// A Redis server of the test's own on a free loopback port, which the test may flush,
/// kill -9 and start again (with its append-only file, or after deleting it) without
/// touching the Redis other tests share. Stopped when dropped.
pub struct RedisServer {
    // First: fields drop in order, and the server goes before its folder.
    child: Child,
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
}

/// A child process that is killed (SIGKILL) and reaped when it is replaced, killed or
/// dropped: a server a test or a rehearsal owns never outlives it.
#[derive(Default)]
pub struct Child(Option<std::process::Child>);

impl Child {
    /// Kills the one running, if any, and holds `c` instead.
    pub fn set(&mut self, c: std::process::Child) {
        self.kill();
        self.0 = Some(c);
    }

    /// kill -9 and wait: gone at once, with whatever it had in flight.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// Starts `redis-server` with an append-only file fsynced every second.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(Vec::new())
    }

    /// Starts a replica of the primary at `primary` (asynchronous replication, as Redis
    /// does; put a [`TcpProxy`] between them to cut the link).
    pub fn start_replica_of(primary: std::net::SocketAddr) -> std::io::Result<Self> {
        let s = Self::start_with(vec![
            "--replicaof".into(),
            primary.ip().to_string(),
            primary.port().to_string(),
        ])?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !s
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other("the replica did not sync"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(s)
    }

    /// A throwaway server with extra arguments (`--maxmemory 256mb`, say).
    pub fn start_with_args(args: &[&str]) -> std::io::Result<Self> {
        Self::start_with(args.iter().map(|a| (*a).to_owned()).collect())
    }

    fn start_with(extra: Vec<String>) -> std::io::Result<Self> {
        let mut s = Self {
            port: free_port(),
            dir: TempDir::new("redis")?,
            child: Child::default(),
            extra,
        };
        s.spawn()?;
        Ok(s)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Promotes a replica (`REPLICAOF NO ONE`): a primary from now on, restarts included.
    pub fn promote(&mut self) -> std::io::Result<()> {
        let out = self.cli(&["REPLICAOF", "NO", "ONE"]);
        if !out.contains("OK") {
            return Err(std::io::Error::other(format!("REPLICAOF NO ONE: {out}")));
        }
        self.extra.clear();
        Ok(())
    }

    /// kill -9: the server is gone at once, with whatever it had not replicated.
    pub fn crash(&mut self) {
        self.child.kill();
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--port", &self.port.to_string()])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child.set(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other("redis-server did not answer PING"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many times the server ran `command` (lower case), from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Runs `redis-cli` against this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// kill -9, then a start on the same port: with its files (`keep_files`) or without.
    pub fn crash_and_restart(&mut self, keep_files: bool) -> std::io::Result<()> {
        self.child.kill();
        if !keep_files {
            for entry in std::fs::read_dir(self.dir.path())? {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        self.spawn()
    }
}

/// A PostgreSQL server of the test's own on a free loopback port, which the test may stop
/// (cleanly or as a crash) and start again without touching the server other tests share.
/// As root it runs `initdb` and `pg_ctl` through `runuser -u postgres` (PostgreSQL refuses
/// to run as root). Stopped when dropped.
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    dir: TempDir,
    running: bool,
}

/// How a [`PostgresServer`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgStop {
    /// `pg_ctl stop -m fast`: connections are cut, the server shuts down cleanly.
    Fast,
    /// `pg_ctl stop -m immediate`: the server dies as in a crash and recovers from its
    /// write-ahead log at the next start.
    Crash,
}

impl PostgresServer {
    /// `initdb` (trust on loopback) and a start.
    pub fn start() -> std::io::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max_by_key(|p| {
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .ok_or_else(|| std::io::Error::other("no /usr/lib/postgresql/<version>/bin/initdb"))?;
        let dir = TempDir::new("pg")?;
        let mut s = Self {
            port: free_port(),
            bin,
            dir,
            running: false,
        };
        if is_root() {
            run(std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(s.dir.path()))?;
        }
        let data = s.data();
        s.pg("initdb", &["-A", "trust", "-U", "postgres", "-D", &data])?;
        // A free port can be taken between the check and the bind: try another.
        let mut tries = 0;
        loop {
            match s.start_again() {
                Ok(()) => return Ok(s),
                Err(e) if tries == 2 => return Err(e),
                Err(_) => {
                    tries += 1;
                    s.port = free_port();
                }
            }
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn pg(&self, program: &str, args: &[&str]) -> std::io::Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        run(cmd.args(args))
    }

    /// Starts the server (again, after a stop) on its port.
    pub fn start_again(&mut self) -> std::io::Result<()> {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.pg(
            "pg_ctl",
            &["-D", &data, "-w", "-l", &log, "-o", &options, "start"],
        )
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            std::io::Error::other(format!("{e}\n{tail}"))
        })?;
        self.running = true;
        Ok(())
    }

    /// Stops the server.
    pub fn stop(&mut self, how: PgStop) -> std::io::Result<()> {
        let mode = match how {
            PgStop::Fast => "fast",
            PgStop::Crash => "immediate",
        };
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-w", "-m", mode, "stop"])?;
        self.running = false;
        Ok(())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The URL of its `postgres` database as the `postgres` superuser (tests make their
    /// databases on it, as on [`postgres_admin_url`]).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop(PgStop::Crash);
        }
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(cmd: &mut std::process::Command) -> std::io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A TCP forwarder on a loopback port of its own, standing for a Kubernetes Service: in
/// front of whichever server is a store's primary ([`TcpProxy::point_to`] moves it, a
/// failover's endpoint change, and cuts the connections to the old one), or in front of a
/// service's replicas ([`TcpProxy::balance`]: connections in turn, past one that refuses,
/// as a Service skips a pod that is down). It can also cut the network
/// ([`TcpProxy::partition`]) and slow it ([`TcpProxy::set_delay`]).
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    /// Where new connections go (none: nowhere, a partition) and a generation that changes
    /// each time they are moved.
    targets: std::sync::Mutex<(Vec<std::net::SocketAddr>, u64)>,
    /// The target the next connection tries first.
    next: std::sync::atomic::AtomicUsize,
    /// The one-way delay added to every chunk in either direction, in microseconds.
    delay_us: std::sync::atomic::AtomicU64,
}

impl ProxyState {
    fn now(&self) -> (Vec<std::net::SocketAddr>, u64) {
        self.targets
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set(&self, targets: Vec<std::net::SocketAddr>) {
        let mut t = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        *t = (targets, t.1 + 1);
    }

    /// Resolves once the targets are no longer those of `generation`: whether the proxy
    /// is partitioned now, and the new generation.
    async fn moved(&self, generation: u64) -> (bool, u64) {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let (targets, g) = self.now();
            if g != generation {
                return (targets.is_empty(), g);
            }
        }
    }
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<Self> {
        Self::balance(vec![target]).await
    }

    /// Spreads connections over `targets` in turn; a target that refuses is skipped.
    pub async fn balance(targets: Vec<std::net::SocketAddr>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(ProxyState {
            targets: std::sync::Mutex::new((targets, 0)),
            next: std::sync::atomic::AtomicUsize::new(0),
            delay_us: std::sync::atomic::AtomicU64::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(shared.clone(), inbound));
            }
        });
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Sends new connections to `target` and cuts every connection made before.
    pub fn point_to(&self, target: std::net::SocketAddr) {
        self.balance_over(vec![target]);
    }

    /// Spreads new connections over `targets` and cuts every connection made before.
    pub fn balance_over(&self, targets: Vec<std::net::SocketAddr>) {
        self.state.set(targets);
    }

    /// A partition: every connection is cut, and new ones are accepted but never
    /// answered, until [`TcpProxy::point_to`].
    pub fn partition(&self) {
        self.state.set(Vec::new());
    }

    /// From now on every chunk, in either direction and on connections already open, is
    /// held back `one_way` (zero: none), in order and without holding up the chunks
    /// behind it, as `tc netem delay` does on a link.
    pub fn set_delay(&self, one_way: std::time::Duration) {
        self.state.delay_us.store(
            one_way.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// One connection through the proxy.
async fn forward(state: std::sync::Arc<ProxyState>, mut inbound: tokio::net::TcpStream) {
    let (targets, generation) = state.now();
    // Partitioned: the connection is accepted and never answered (packets dropped, as
    // across a broken network), until the proxy is moved.
    if targets.is_empty() {
        state.moved(generation).await;
        return;
    }
    let first = state
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut outbound = None;
    for k in 0..targets.len() {
        let to = targets[(first + k) % targets.len()];
        if let Ok(s) = tokio::net::TcpStream::connect(to).await {
            outbound = Some(s);
            break;
        }
    }
    let Some(mut outbound) = outbound else {
        return;
    };
    // Forward until either side closes or the proxy is moved; moved into a partition, the
    // connection goes silent instead of closing.
    let (from_client, to_client) = inbound.split();
    let (from_server, to_server) = outbound.split();
    let delay = &state.delay_us;
    tokio::select! {
        _ = async {
            tokio::try_join!(
                delayed_copy(from_client, to_server, delay),
                delayed_copy(from_server, to_client, delay),
            )
        } => {}
        (partitioned, g) = state.moved(generation) => {
            if partitioned {
                state.moved(g).await;
            }
        }
    }
}

/// Copies `from` to `to`, each chunk sent the proxy's delay after it arrived (a delay
/// line: chunks in flight do not wait for each other, so the throughput stays).
async fn delayed_copy(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(256);
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let d =
                std::time::Duration::from_micros(delay.load(std::sync::atomic::Ordering::Relaxed));
            let due = tokio::time::Instant::now() + d;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's SQLite folder outlives its pools on purpose (the presale race tests forget
    /// theirs), so folders of processes that have ended are removed by the next one made,
    /// as their PostgreSQL databases are ([`drop_orphans`]).
    #[test]
    fn a_folder_left_by_an_ended_process_is_removed_by_the_next() {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        let left = std::env::temp_dir().join(format!("emta_left_{dead}_{}", rand::random::<u32>()));
        std::fs::create_dir_all(left.join("inside")).expect("folder");
        let mine = TempDir::new("emta_mine").expect("folder");
        let alive = TempDir::new("emta_alive").expect("folder");
        let _next = TempDir::new("emta_next").expect("folder");
        assert!(!left.exists(), "{} left behind", left.display());
        assert!(
            mine.path().exists() && alive.path().exists(),
            "a running process's folders stay"
        );
    }

    #[test]
    fn the_newest_change_is_found_in_nested_folders() {
        let dir = TempDir::new("newest").expect("dir");
        let nested = dir.path().join("a").join("b");
        std::fs::create_dir_all(&nested).expect("mkdir");
        std::fs::write(dir.path().join("old.rs"), "").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = std::time::SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(nested.join("new.rs"), "").expect("write");
        let newest = newest_change(&[dir.path().to_owned()]).expect("files");
        assert!(newest > before, "the nested file is the newest");
        assert_eq!(newest_change(&[dir.path().join("missing")]), None);
    }

    /// The id of a process that has just ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn only_names_of_ended_processes_are_orphans() {
        let dead = dead_pid();
        assert!(orphaned(&format!("emta_idp_{dead}_12345")));
        assert!(orphaned(&format!("emta_two_parts_{dead}_1")));
        assert!(!orphaned(&format!("emta_idp_{}_12345", std::process::id())));
        assert!(!orphaned("emta_idp_1_12345"), "pid 1 runs");
        assert!(!orphaned("emta_demo"));
        assert!(!orphaned(&format!("emta_idp_{dead}_x")));
    }

    /// Watched failing with the sweep taken out of `fresh_database`.
    #[tokio::test]
    async fn a_new_database_sweeps_away_those_of_ended_processes() {
        let admin = postgres_admin_url();
        let left = format!("emta_left_{}_{}", dead_pid(), rand::random::<u32>());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL: run .ci/run or set EMTA_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {left}"))
            .execute(&mut c)
            .await
            .expect("create");
        let mine = fresh_database(Some(&admin), "sweep").await.expect("fresh");
        let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database")
            .fetch_all(&mut c)
            .await
            .expect("list");
        // Another test process may hold the sweep: then a later database sweeps it.
        let mut tries = 0;
        let mut names = names;
        while names.contains(&left) && tries < 20 {
            tries += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let _ = fresh_database(Some(&admin), "sweep").await.expect("fresh");
            names = sqlx::query_scalar("SELECT datname FROM pg_database")
                .fetch_all(&mut c)
                .await
                .expect("list");
        }
        assert!(!names.contains(&left), "{left} was left behind");
        let mine_name = mine.url.rsplit('/').next().unwrap_or_default().to_owned();
        assert!(
            names.contains(&mine_name),
            "this process's database was dropped"
        );
        drop_database(&admin, &mine.url).await.expect("drop");
    }

    /// An echo server on a loopback port, answering each connection with what it sent,
    /// prefixed by `tag`.
    async fn echo(tag: u8) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut out = vec![tag];
                        out.extend_from_slice(&buf[..n]);
                        if c.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(to: std::net::SocketAddr) -> (u8, std::time::Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let began = std::time::Instant::now();
        let mut c = tokio::net::TcpStream::connect(to).await.expect("connect");
        c.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.expect("read");
        (buf[0], began.elapsed())
    }

    #[tokio::test]
    async fn a_delayed_link_holds_each_chunk_back_but_not_behind_the_others() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let proxy = TcpProxy::start(echo(b'a').await).await.expect("proxy");
        proxy.set_delay(std::time::Duration::from_millis(100));
        let (_, rtt) = round_trip(proxy.addr()).await;
        assert!(rtt >= std::time::Duration::from_millis(200), "{rtt:?}");
        // Twenty pings in flight at once cost one round trip, not twenty.
        let mut c = tokio::net::TcpStream::connect(proxy.addr())
            .await
            .expect("connect");
        let began = std::time::Instant::now();
        for _ in 0..20 {
            c.write_all(b"y").await.expect("write");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut got = 0;
        let mut buf = [0u8; 64];
        while got < 40 {
            got += c.read(&mut buf).await.expect("read");
        }
        let took = began.elapsed();
        assert!(took < std::time::Duration::from_millis(1500), "{took:?}");
        proxy.set_delay(std::time::Duration::ZERO);
        let (_, rtt) = round_trip(proxy.addr()).await;
        assert!(rtt < std::time::Duration::from_millis(150), "{rtt:?}");
    }

    #[tokio::test]
    async fn a_balancer_takes_turns_and_skips_a_target_that_is_down() {
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy = TcpProxy::balance(vec![echo(b'a').await, down, echo(b'b').await])
            .await
            .expect("proxy");
        let mut tags = Vec::new();
        for _ in 0..6 {
            tags.push(round_trip(proxy.addr()).await.0);
        }
        assert!(tags.contains(&b'a') && tags.contains(&b'b'), "{tags:?}");
    }
}
