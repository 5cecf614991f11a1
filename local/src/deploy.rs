//! A whole deployment in one process, for tests, benchmarks and the load tool's sweep: stub government services and SMS (over real HTTP), the IdP, Saipa and Iran
//! Khodro registered, presale replicas sharing one database, one Redis and one secret
//! behind one public URL, and a license. SQLite and in-process stores, or PostgreSQL and
//! Redis.

use idp::admin::{self, NewClient};
use presale::config::{Secret, StorefrontConfig};
use presale::domain::{NewLicense, PresaleKind, Selection};
use presale::store::Store;
use testkit::servers::{fresh_database, FreshDatabase};
use testkit::{generate_citizens, FixtureCitizen, StubServices};
use url::Url;

pub struct Options {
    /// PostgreSQL server to create fresh databases on (`postgres://…/postgres`); `None` for
    /// SQLite files in a temporary folder.
    pub postgres_admin: Option<String>,
    /// Another PostgreSQL server for the presale service's database alone (tests that stop
    /// it while the IdP's stays up, as the two are separate clusters in production).
    pub presale_postgres_admin: Option<String>,
    /// Redis (or a Cluster: `redis+cluster://…`); empty for the in-process stores.
    pub redis_url: String,
    pub citizens: usize,
    pub presale_replicas: usize,
    pub pow_difficulty: u8,
    /// Per-IP requests per second at each presale replica.
    pub ip_per_sec: u32,
    pub license: NewLicense,
    /// Each presale replica public at a URL of its own (each registered at the IdP), rather
    /// than all behind the first one's.
    pub public_per_replica: bool,
    /// The IdP's access-token lifetime, when a test needs the storefronts to refresh.
    pub access_token_secs: Option<i64>,
    /// Presale takes the client IP from X-Forwarded-For (the load tool gives every citizen
    /// an address); off, every request counts against the connection's address.
    pub trust_forwarded_for: bool,
    /// Run the presale replicas as processes of this `presale` binary rather than in
    /// this process, so that a rehearsal can kill -9 one ([`PresaleProcesses`]).
    pub presale_binary: Option<std::path::PathBuf>,
}

impl Options {
    /// A deployment of `license` on SQLite and in-process stores: 100 citizens, one presale
    /// replica, a 4-bit proof of work, 50 requests per second per IP, forwarded addresses
    /// trusted; callers change what they are about with struct update syntax.
    pub fn new(license: NewLicense) -> Self {
        Self {
            postgres_admin: None,
            presale_postgres_admin: None,
            redis_url: String::new(),
            citizens: 100,
            presale_replicas: 1,
            pow_difficulty: 4,
            ip_per_sec: 50,
            license,
            public_per_replica: false,
            access_token_secs: None,
            trust_forwarded_for: true,
            presale_binary: None,
        }
    }
}

pub struct Deployment {
    /// The public URL of the presale service (what the IdP redirects back to).
    pub presale: Url,
    /// Where each presale replica listens.
    pub replicas: Vec<Url>,
    /// Each presale replica's private metrics listener (`/metrics`).
    pub metrics: Vec<Url>,
    /// Each replica's public URL (all the same unless `public_per_replica`).
    pub public: Vec<Url>,
    pub issuer: String,
    /// The secret every replica shares (benchmarks sign tickets with it).
    pub secret: String,
    pub stub: StubServices,
    pub citizens: Vec<FixtureCitizen>,
    pub store: Store,
    pub idp: idp::core::Core,
    /// The databases made for this deployment (their SQLite folders go with them).
    pub databases: Vec<FreshDatabase>,
    /// The presale replicas, when they run as processes (`Options::presale_binary`).
    pub presale_processes: PresaleProcesses,
    postgres_admin: Option<String>,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// Presale replicas running as processes of the built binary, which a rehearsal may kill
/// -9 and start again on the same port with the same settings. Killed when dropped.
#[derive(Clone, Default)]
pub struct PresaleProcesses(std::sync::Arc<std::sync::Mutex<Vec<PresaleProcess>>>);

struct PresaleProcess {
    command: std::path::PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    child: Option<std::process::Child>,
    /// Holds the storefronts file the process reads.
    _dir: std::sync::Arc<testkit::servers::TempDir>,
}

impl PresaleProcess {
    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new(&self.command)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PresaleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl PresaleProcesses {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PresaleProcess>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// kill -9 of replica `i`: gone at once, with whatever it had in flight.
    pub fn crash(&self, i: usize) -> anyhow::Result<()> {
        let mut g = self.lock();
        let p = g
            .get_mut(i)
            .ok_or_else(|| anyhow::anyhow!("no presale replica {i}"))?;
        p.kill();
        Ok(())
    }

    /// Starts replica `i` again (same port, same settings) and waits until it is ready.
    pub async fn start(&self, i: usize) -> anyhow::Result<()> {
        let port = {
            let mut g = self.lock();
            let p = g
                .get_mut(i)
                .ok_or_else(|| anyhow::anyhow!("no presale replica {i}"))?;
            p.kill();
            p.spawn()?;
            p.port
        };
        ready(port).await
    }

    fn kill_all(&self) {
        for p in self.lock().iter_mut() {
            p.kill();
        }
    }
}

/// Waits up to 30 s for a replica's `/readyz` to answer 200.
async fn ready(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the presale replica on port {port} was not ready within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Deployment {
    /// Stops every server (they finish what is in flight) and closes their pools, so a
    /// process can run deployment after deployment without running out of connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.presale_processes.kill_all();
        // Graceful, but bounded: a client that keeps a connection busy (a readiness probe,
        // a long poll) must not keep the deployment, and the run that owns it, alive.
        for mut s in self.servers {
            if tokio::time::timeout(std::time::Duration::from_secs(10), &mut s)
                .await
                .is_err()
            {
                tracing::warn!("a server still had requests in flight after 10 s; stopped");
                s.abort();
            }
        }
        self.store.close().await;
        if let Some(admin) = &self.postgres_admin {
            for d in &self.databases {
                if let Err(e) = testkit::servers::drop_database(admin, &d.url).await {
                    tracing::warn!(error = %e, "could not drop a deployment's database");
                }
            }
        }
    }
}

fn stopped(
    rx: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A Saipa Shahin queue license for tests and benchmarks: `units`, opening in `opens_in`
/// seconds for a day, admitting `admission_per_min`, 600 s to apply, adults only; callers
/// change what they are about with struct update syntax.
pub fn queue_license(units: i64, opens_in: i64, admission_per_min: i64) -> NewLicense {
    let now = service_kit::clock::now();
    NewLicense {
        license_no: format!("LOCAL-{}", rand::random::<u32>()),
        manufacturer: "saipa".into(),
        model: "Shahin".into(),
        units,
        unit_price: 8_000_000_000,
        down_payment: 1_000_000_000,
        kind: PresaleKind::Regular,
        delivery_deadline: now + 300 * 24 * 3600,
        opens_at: now + opens_in,
        closes_at: now + 24 * 3600,
        selection: Selection::Queue,
        admission_per_min,
        max_active: 100_000,
        apply_window_secs: 600,
        min_age: Some(18),
        round: None,
        exclusion: None,
        parties: crate::parties::commitments(),
    }
}

/// An IdP replica's settings in a local deployment: `issuer`, its database, Redis (empty
/// for the in-process store) under `prefix`, the shared `secret`, the stub upstreams at
/// `stubs`, and a 4-bit proof of work; callers add what their test is about.
pub fn idp_settings(
    issuer: &str,
    database_url: &str,
    redis_url: &str,
    prefix: &str,
    secret: &str,
    stubs: &str,
) -> idp::Settings {
    use idp::config::Secret;
    let mut s = idp::Settings::defaults();
    s.issuer = issuer.to_owned();
    s.storage.database_url = Secret::new(database_url);
    s.storage.redis_url = Secret::new(redis_url);
    s.storage.redis_prefix = prefix.to_owned();
    s.secret_key = Secret::new(secret);
    s.registry_url = stubs.to_owned();
    s.ownership_url = s.registry_url.clone();
    s.sms_url = s.registry_url.clone();
    s.pow_difficulty = 4;
    // The stub gateways have no contracted rate: unless asked for, the national SMS and
    // registry budgets stand aside, so that a sweep measures the system and not a budget
    // (above 200 arrivals a second the SMS budget refused the sweep's own warm-up).
    if std::env::var_os("EMTA_SMS_RPS").is_none() {
        s.sms_rps = 1_000_000;
    }
    if std::env::var_os("EMTA_REGISTRY_RPS").is_none() {
        s.registry_rps = 1_000_000;
    }
    s
}

/// A presale replica's settings in a local deployment: listening on `listen`, public at
/// `base`, signing in through `issuer` with the storefronts `fronts`. Behind the local
/// deployment's loopback "ingress" it takes the client IP from X-Forwarded-For, which lets
/// the load tool give every simulated citizen an address of its own.
pub fn presale_settings(
    listen: std::net::SocketAddr,
    base: &str,
    issuer: &str,
    secret: &str,
    fronts: &[StorefrontConfig],
) -> presale::Settings {
    let mut s = presale::Settings::new(listen, base, issuer, secret);
    s.storefronts = fronts.to_vec();
    s.trust_forwarded_for = true;
    s
}

/// Registers Saipa and Iran Khodro at the IdP, with a callback under each of `bases` (a
/// presale service's public URL, or several), and returns their storefront settings.
pub async fn register_storefronts(
    core: &idp::core::Core,
    bases: &[String],
) -> anyhow::Result<Vec<StorefrontConfig>> {
    let mut fronts = Vec::new();
    for (id, name, name_fa) in [
        ("saipa", "Saipa", "سایپا"),
        ("iran-khodro", "Iran Khodro", "ایران خودرو"),
    ] {
        let (_, client_secret) = admin::add_client(
            &core.db,
            &core.keyring,
            NewClient {
                id: id.into(),
                name: name.into(),
                name_fa: name_fa.into(),
                stars: 4,
                redirect_uris: bases.iter().map(|b| format!("{b}/{id}/callback")).collect(),
                post_logout_redirect_uris: vec![],
                service_scopes: vec![],
                id_token_alg: idp::domain::SigningAlg::ES256,
                valid_days: 365,
                // The storefronts need the national ID (one seat per person).
                allowed_scopes: vec!["profile".into(), "phone".into(), "national_id".into()],
                subject_type: idp::domain::SubjectType::Pairwise,
                // Both storefronts share the presale service's host: each manufacturer is
                // its own sector all the same.
                sector_identifier: Some(format!("{id}.storefront")),
                backchannel_logout_uri: bases
                    .first()
                    .map(|b| format!("{b}/{id}/backchannel-logout")),
                private_key_jwt: None,
            },
            "local",
            service_kit::clock::now(),
        )
        .await?;
        fronts.push(StorefrontConfig {
            id: id.into(),
            name: name.into(),
            name_fa: name_fa.into(),
            client_secret: Secret::new(client_secret),
        });
    }
    Ok(fronts)
}

pub async fn deploy(o: Options) -> anyhow::Result<Deployment> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let citizens = generate_citizens(o.citizens, rand::random());
    let stub = StubServices::new(citizens.clone());
    let (stub_addr, stub_server) = stub
        .clone()
        .serve(([127, 0, 0, 1], 0).into(), stopped(&rx))
        .await?;
    servers.push(stub_server);
    let stub_url = format!("http://{stub_addr}");
    let prefix = testkit::servers::redis_prefix();
    let secret = service_kit::keys::random_token(32);
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://localhost:{}", idp_listener.local_addr()?.port());
    // The replicas' listeners are bound now and handed over: their public URLs are
    // registered at the IdP before they start, and a port merely found free could be
    // taken by a parallel test in between.
    let mut listeners = Vec::new();
    for _ in 0..o.presale_replicas.max(1) {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    let replicas = ports
        .iter()
        .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")))
        .collect::<Result<Vec<_>, _>>()?;
    let publics: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "http://localhost:{}",
                if o.public_per_replica { *p } else { ports[0] }
            )
        })
        .collect();
    let public = publics[0].clone();

    let idp_db = fresh_database(o.postgres_admin.as_deref(), "idp").await?;
    let mut s = idp_settings(
        &issuer,
        &idp_db.url,
        &o.redis_url,
        &prefix,
        &secret,
        &stub_url,
    );
    s.pow_difficulty = o.pow_difficulty;
    s.resend_secs = 1;
    s.trust_forwarded_for = true;
    if let Some(secs) = o.access_token_secs {
        s.access_token_secs = secs;
    }
    let app = idp::Application::build_with_listener(s, idp_listener).await?;
    let core = app.core();
    let idp_stop = stopped(&rx);
    servers.push(tokio::spawn(async move {
        let _ = app.run_until_stopped(idp_stop).await;
    }));
    let mut bases = publics.clone();
    bases.dedup();
    let fronts = register_storefronts(&core, &bases).await?;
    core.reload().await?;
    let presale_admin = o
        .presale_postgres_admin
        .as_deref()
        .or(o.postgres_admin.as_deref());
    let db = fresh_database(presale_admin, "presale").await?;
    let store = Store::connect(&db.url, 4).await?;
    store.migrate().await?;
    store
        .issue_license(&o.license, service_kit::clock::now())
        .await?
        .map_err(|e| anyhow::anyhow!("license: {e}"))?;
    servers.push(tokio::spawn(crate::parties::reveal_when_frozen(
        store.clone(),
    )));
    let mut metrics = Vec::new();
    let processes = PresaleProcesses::default();
    if let Some(binary) = &o.presale_binary {
        let dir = std::sync::Arc::new(testkit::servers::TempDir::new("presale")?);
        let fronts_file = dir.path().join("storefronts.json");
        std::fs::write(&fronts_file, serde_json::to_vec(&fronts)?)?;
        // The listeners were bound only to reserve the ports: each process binds its own.
        listeners.clear();
        for (port, base) in ports.iter().zip(&publics) {
            let env = [
                ("EMTA_PRESALE_LISTEN", format!("127.0.0.1:{port}")),
                ("EMTA_PRESALE_URL", base.clone()),
                ("EMTA_ISSUER", issuer.clone()),
                ("DATABASE_URL", db.url.clone()),
                ("REDIS_URL", o.redis_url.clone()),
                ("EMTA_REDIS_PREFIX", prefix.clone()),
                ("EMTA_SECRET_KEY", secret.clone()),
                ("EMTA_STOREFRONTS_FILE", fronts_file.display().to_string()),
                ("EMTA_IP_PER_SEC", o.ip_per_sec.to_string()),
                (
                    "EMTA_TRUST_FORWARDED_FOR",
                    o.trust_forwarded_for.to_string(),
                ),
                ("EMTA_DB_MAX_CONNECTIONS", "4".into()),
                ("RUST_LOG", "warn".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let mut p = PresaleProcess {
                command: binary.clone(),
                env,
                port: *port,
                child: None,
                _dir: dir.clone(),
            };
            p.spawn()?;
            processes.lock().push(p);
        }
        for port in &ports {
            ready(*port).await?;
        }
    }
    // In-process replicas, unless they run as processes (then no listener is left).
    for ((port, base), listener) in ports.into_iter().zip(&publics).zip(listeners) {
        let mut settings = presale_settings(
            ([127, 0, 0, 1], port).into(),
            base,
            &issuer,
            &secret,
            &fronts,
        );
        settings.storage.database_url = Secret::new(db.url.clone());
        settings.storage.redis_url = Secret::new(o.redis_url.clone());
        settings.storage.redis_prefix = prefix.clone();
        settings.storage.db_max_connections = 4;
        settings.ip_per_sec = o.ip_per_sec;
        settings.trust_forwarded_for = o.trust_forwarded_for;
        settings.metrics_listen = Some(([127, 0, 0, 1], 0).into());
        let service = presale::Application::build_with_listener(settings, listener).await?;
        if let Some(addr) = service.metrics_addr() {
            metrics.push(Url::parse(&format!("http://{addr}/metrics"))?);
        }
        let stop = stopped(&rx);
        servers.push(tokio::spawn(async move {
            let _ = service.run_until_stopped(stop).await;
        }));
    }
    Ok(Deployment {
        presale: Url::parse(&public)?,
        replicas,
        metrics,
        public: publics
            .iter()
            .map(|p| Url::parse(p))
            .collect::<Result<Vec<_>, _>>()?,
        issuer,
        secret,
        stub,
        citizens,
        store,
        idp: core,
        databases: vec![idp_db, db],
        presale_processes: processes,
        postgres_admin: o.postgres_admin,
        stop,
        servers,
    })
}
