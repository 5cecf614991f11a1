//! A whole deployment in one process, for tests, benchmarks and the load tool's own
//! checks: stub government services and SMS (over real HTTP), the IdP, Saipa and Iran
//! Khodro registered, presale replicas sharing one database, one Redis and one secret
//! behind one public URL, and a license. SQLite and in-process stores, or PostgreSQL and
//! Redis.

use idp::admin::{self, NewClient};
use idp::dev::{generate_citizens, FixtureCitizen, StubServices};
use sqlx::Connection;
use url::Url;

use crate::applications::Store;
use crate::license::{NewLicense, PresaleKind, Selection};
use crate::service::{Config, Service, StorefrontConfig};

pub struct Options {
    /// PostgreSQL server to create fresh databases on (`postgres://…/postgres`); `None` for
    /// SQLite files in a temporary folder.
    pub postgres_admin: Option<String>,
    /// Redis (or a Cluster: `redis+cluster://…`); empty for the in-process stores.
    pub redis_url: String,
    pub citizens: usize,
    pub presale_replicas: usize,
    pub pow_difficulty: u8,
    /// Per-IP requests per second at each presale replica.
    pub ip_per_sec: u32,
    pub license: NewLicense,
}

pub struct Deployment {
    /// The public URL of the presale service (what the IdP redirects back to).
    pub presale: Url,
    /// Where each presale replica listens.
    pub replicas: Vec<Url>,
    pub issuer: String,
    pub stub: StubServices,
    pub citizens: Vec<FixtureCitizen>,
    pub store: Store,
    pub idp: idp::core::Core,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Deployment {
    /// Stops every server (they finish what is in flight) and closes their pools, so a
    /// process can run deployment after deployment without running out of connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        self.store.close().await;
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
    let now = idp::now();
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
    stubs: std::net::SocketAddr,
) -> idp::Settings {
    use idp::config::Secret;
    let mut s = idp::Settings::for_tests();
    s.issuer = issuer.to_owned();
    s.storage.database_url = Secret::new(database_url);
    s.storage.redis_url = Secret::new(redis_url);
    s.storage.redis_prefix = prefix.to_owned();
    s.secret_key = Secret::new(secret);
    s.registry_url = format!("http://{stubs}");
    s.ownership_url = s.registry_url.clone();
    s.sms_url = s.registry_url.clone();
    s.pow_difficulty = 4;
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
            },
            "local",
            idp::now(),
        )
        .await?;
        fronts.push(StorefrontConfig {
            id: id.into(),
            name: name.into(),
            name_fa: name_fa.into(),
            client_secret,
        });
    }
    Ok(fronts)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh database: a new PostgreSQL database on `admin`, or a new SQLite file.
pub async fn fresh_database(admin: Option<&str>, name: &str) -> anyhow::Result<String> {
    let unique = format!("{name}_{}_{}", std::process::id(), rand::random::<u32>());
    let Some(admin) = admin else {
        let dir = std::env::temp_dir().join(format!("emta-{unique}"));
        std::fs::create_dir_all(&dir)?;
        return Ok(format!("sqlite://{}?mode=rwc", dir.join("db").display()));
    };
    let mut c = sqlx::PgConnection::connect(admin).await?;
    let db = format!("emta_{unique}");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await?;
    Ok(format!(
        "{}/{db}",
        admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin)
    ))
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
    let prefix = format!("emta_{}", rand::random::<u32>());
    let secret = idp::crypto::random_token(32);
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://localhost:{}", idp_listener.local_addr()?.port());
    let ports = (0..o.presale_replicas.max(1))
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let replicas = ports
        .iter()
        .map(|p| Url::parse(&format!("http://127.0.0.1:{p}")))
        .collect::<Result<Vec<_>, _>>()?;
    let public = format!("http://localhost:{}", ports[0]);

    let idp_db = fresh_database(o.postgres_admin.as_deref(), "idp").await?;
    let mut s = idp_settings(&issuer, &idp_db, &o.redis_url, &prefix, &secret, stub_addr);
    s.pow_difficulty = o.pow_difficulty;
    s.resend_secs = 1;
    s.trust_forwarded_for = true;
    let app = idp::Application::build_with_listener(s, None, idp_listener).await?;
    let core = app.core();
    let idp_stop = stopped(&rx);
    servers.push(tokio::spawn(async move {
        let _ = app.run_until_stopped(idp_stop).await;
    }));
    let fronts = register_storefronts(&core, std::slice::from_ref(&public)).await?;
    core.reload().await?;
    let db = fresh_database(o.postgres_admin.as_deref(), "presale").await?;
    let store = Store::connect(&db, 4).await?;
    store.migrate().await?;
    store
        .issue_license(&o.license, idp::now())
        .await?
        .map_err(|e| anyhow::anyhow!("license: {e}"))?;
    for port in ports {
        let service = Service::build(Config {
            listen: ([127, 0, 0, 1], port).into(),
            base_url: public.clone(),
            issuer: issuer.clone(),
            database_url: db.clone(),
            redis_url: o.redis_url.clone(),
            redis_prefix: prefix.clone(),
            secret_key: secret.clone(),
            storefronts: fronts.clone(),
            ip_per_sec: o.ip_per_sec,
            trust_forwarded_for: true,
            drain_secs: 0,
        })
        .await?;
        let stop = stopped(&rx);
        servers.push(tokio::spawn(async move {
            let _ = service.run_until_stopped(stop).await;
        }));
    }
    Ok(Deployment {
        presale: Url::parse(&public)?,
        replicas,
        issuer,
        stub,
        citizens,
        store,
        idp: core,
        stop,
        servers,
    })
}
