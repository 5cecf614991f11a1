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
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok(FreshDatabase {
        url: format!("{base}/{name}"),
        dir: None,
    })
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
    pub fn new(name: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(unique(name));
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
/// first if it is not there (a test of one package that runs another's binary).
pub fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test path {}", exe.display()));
    let bin = profile_dir.join(name);
    if !bin.exists() {
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

/// A Redis server of the test's own on a free loopback port, which the test may flush,
/// kill -9 and start again (with its append-only file, or after deleting it) without
/// touching the Redis other tests share. Stopped when dropped.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<std::process::Child>,
    extra: Vec<String>,
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

    fn start_with(extra: Vec<String>) -> std::io::Result<Self> {
        let mut s = Self {
            port: free_port(),
            dir: TempDir::new("redis")?,
            child: None,
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
        self.kill();
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
        self.child = Some(child);
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
        self.kill();
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

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
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

/// A TCP forwarder on a loopback port of its own, standing for a Kubernetes Service in front
/// of whichever server is the primary: [`TcpProxy::point_to`] moves it (a failover's
/// endpoint change) and cuts the connections to the old one.
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    /// Where new connections go (`None`: nowhere, a partition) and a generation that
    /// changes each time it is moved.
    target: ProxyTarget,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target = std::sync::Arc::new(std::sync::Mutex::new((Some(target), 0u64)));
        let shared = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok((to, generation)) = shared.lock().map(|t| *t) else {
                        return;
                    };
                    // Partitioned: the connection is accepted and never answered (packets
                    // dropped, as across a broken network), until the proxy is moved.
                    let Some(to) = to else {
                        moved(&shared, generation).await;
                        return;
                    };
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    // Forward until either side closes or the proxy is moved; moved into
                    // a partition, the connection goes silent instead of closing.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        now = moved(&shared, generation) => {
                            if let (None, g) = now {
                                moved(&shared, g).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Self { addr, target, task })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Sends new connections to `target` and cuts every connection made before.
    pub fn point_to(&self, target: std::net::SocketAddr) {
        if let Ok(mut t) = self.target.lock() {
            *t = (Some(target), t.1 + 1);
        }
    }

    /// A partition: every connection is cut, and new ones are accepted but never
    /// answered, until [`TcpProxy::point_to`].
    pub fn partition(&self) {
        if let Ok(mut t) = self.target.lock() {
            *t = (None, t.1 + 1);
        }
    }
}

type ProxyTarget = std::sync::Arc<std::sync::Mutex<(Option<std::net::SocketAddr>, u64)>>;

/// Resolves once the proxy's generation is no longer `generation`: its new target.
async fn moved(shared: &ProxyTarget, generation: u64) -> (Option<std::net::SocketAddr>, u64) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        match shared.lock().map(|t| *t) {
            Ok(t) if t.1 == generation => {}
            Ok(t) => return t,
            Err(_) => return (None, generation.wrapping_add(1)),
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
