//! A whole deployment for tests, benchmarks, the load tool's sweep and its rehearsal: stub
//! government services and SMS (over real HTTP), the IdP, Saipa and Iran Khodro
//! registered, presale replicas sharing one database, one Redis and one secret behind one
//! public URL, and a license. SQLite and in-process stores, or PostgreSQL and Redis; the
//! services in this process, or (for a rehearsal) as processes it owns.

use idp::admin::{self, NewClient};
use presale::config::{Secret, StorefrontConfig};
use presale::domain::{NewLicense, PresaleKind, Selection};
use presale::store::Store;
use testkit::servers::{fresh_database, FreshDatabase, TcpProxy};
use testkit::{generate_citizens, FixtureCitizen, StubServices};
use url::Url;

use crate::processes::{Process, Processes};

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
    /// this process, so that a rehearsal can kill -9 one ([`Processes`]).
    pub presale_binary: Option<std::path::PathBuf>,
    /// More environment for the presale processes (a rehearsal's clock skew); `{replica}`
    /// in a value is the replica's index.
    pub presale_env: Vec<(String, String)>,
    /// Run the IdP as `idp_replicas` processes of this `idp` binary, behind a loopback
    /// balancer at the issuer's address, rather than in this process.
    pub idp_binary: Option<std::path::PathBuf>,
    pub idp_replicas: usize,
    /// Presale's admission control as (`EMTA_MAX_INFLIGHT`, `EMTA_QUEUE_BUDGET_MS`); `None`
    /// for its defaults.
    pub presale_admission: Option<(usize, u64)>,
    /// The IdP's admission control, likewise.
    pub idp_admission: Option<(usize, u64)>,
    /// Each presale replica's SQL pool (`EMTA_DB_MAX_CONNECTIONS`): the service's default
    /// unless a test needs fewer. (It was 4 here from 2026-11-22, which is what lowered
    /// the surge capacity measured through this deployment; see load/BENCHMARKS.md.)
    pub presale_db_connections: u32,
    /// The witnesses whose cosignatures the presale log keeps (`EMTA_LOG_WITNESSES`).
    pub log_witnesses: Vec<String>,
    /// A file holding the logs' signing key, given to the first presale replica only (the
    /// sequencer); the others get its public half. `None`: every replica derives the key
    /// from the shared secret.
    pub log_signing_key: Option<std::path::PathBuf>,
    /// How long presale waits for a bank's answer (`EMTA_BANK_TIMEOUT_MS`).
    pub bank_timeout_ms: u64,
    /// The ministry's credit ceilings per star rating (`EMTA_CREDIT_CEILINGS`, issue 34).
    pub credit_ceilings: Option<String>,
    /// How often presale counts manufacturers' after-sale records and carries them to the
    /// IdP (`EMTA_RECORD_EVERY_SECS`, issue 34); 0: never in the background.
    pub record_every_secs: u64,
}

/// Presale's own default pool (`presale serve --help`).
pub const PRESALE_DB_CONNECTIONS: u32 = 16;

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
            presale_env: Vec::new(),
            idp_binary: None,
            idp_replicas: 1,
            presale_admission: None,
            idp_admission: None,
            presale_db_connections: PRESALE_DB_CONNECTIONS,
            credit_ceilings: None,
            record_every_secs: 0,
            log_witnesses: Vec::new(),
            log_signing_key: None,
            bank_timeout_ms: 5000,
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
    /// The presale database as the owner (migrations, `presale reconcile`) reaches it.
    pub presale_database_url: String,
    /// The manufacturers' storefronts, with their client secrets at the IdP (their
    /// back-ends' credentials, as for a seed commitment).
    pub storefronts: Vec<StorefrontConfig>,
    /// Each manufacturer's own seed client's secret (manufacturer, secret): what its
    /// back-end holds, and presale does not.
    pub seed_clients: Vec<(String, String)>,
    pub idp: idp::core::Core,
    /// The databases made for this deployment (their SQLite folders go with them).
    pub databases: Vec<FreshDatabase>,
    /// The presale replicas, when they run as processes (`Options::presale_binary`).
    pub presale_processes: Processes,
    /// The IdP replicas, when they run as processes (`Options::idp_binary`), and the
    /// balancer in front of them.
    pub idp_processes: Processes,
    idp_balancer: Option<TcpProxy>,
    /// Complaints' attachments, shared by the replicas.
    pub files: testkit::servers::TempDir,
    postgres_admin: Option<String>,
    /// The shared Redis (empty: the in-process store) and this deployment's key prefix in
    /// it, whose keys go when the deployment is stopped.
    pub redis_url: String,
    pub redis_prefix: String,
    stop: tokio::sync::watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Deployment {
    /// Stops every server (they finish what is in flight) and closes their pools, so a
    /// process can run deployment after deployment without running out of connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.presale_processes.kill_all();
        self.idp_processes.kill_all();
        drop(self.idp_balancer);
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
        if !self.redis_url.is_empty() {
            let mine = format!("{}:", self.redis_prefix);
            let pattern = format!("{mine}*");
            let gone = forget_keys(&self.redis_url, |k| k.starts_with(&mine), &pattern);
            if let Err(e) = gone.await {
                tracing::warn!(error = %e, "could not remove a deployment's Redis keys");
            }
        }
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
        parties: crate::parties::commitments("saipa"),
        seed_delay: Some(crate::parties::SEED_DELAY),
        registration: None,
    }
}

/// `l` with its down payment held at the stub bank before registering (issue 30), as the
/// real rounds did it: the load tool's journey then walks the bank's pages.
pub fn with_stub_bank_hold(l: NewLicense) -> NewLicense {
    let amount = l.down_payment;
    NewLicense {
        registration: Some(presale::domain::Registration {
            hold: Some(presale::domain::HoldTerms {
                banks: vec![STUB_BANK.into()],
                amount,
                title: format!("{} — {}", l.model, l.license_no),
                before: presale::domain::HoldBefore::Entry,
            }),
            ..l.registration.clone().unwrap_or_default()
        }),
        ..l
    }
}

/// Walks the keys matching `pattern` in the Redis at `url` (SCAN: no KEYS, which blocks a
/// Redis with millions of keys), for at most a minute, and UNLINKs the keys `pick` returns
/// from each batch; how many it removed.
pub async fn sweep_keys(
    url: &str,
    pattern: &str,
    mut pick: impl FnMut(Vec<String>) -> Vec<String>,
) -> redis::RedisResult<usize> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut removed = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut c)
            .await?;
        let gone = pick(keys);
        if !gone.is_empty() {
            let _: i64 = redis::cmd("UNLINK").arg(&gone).query_async(&mut c).await?;
            removed += gone.len();
        }
        if next == 0 || tokio::time::Instant::now() > deadline {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// Removes the keys matching `pattern` for which `keep_out` holds.
async fn forget_keys(
    url: &str,
    keep_out: impl Fn(&str) -> bool,
    pattern: &str,
) -> redis::RedisResult<usize> {
    sweep_keys(url, pattern, |keys| {
        keys.into_iter().filter(|k| keep_out(k)).collect()
    })
    .await
}

/// Removes the keys left in the shared Redis by deployments of processes that ended
/// without stopping them (a test that dropped its deployment, a killed run): their
/// prefixes carry the process id ([`testkit::servers::unique`]). One deployment sweeps at
/// a time (a lock key with a TTL); errors are left for the next sweep.
async fn sweep_orphaned_keys(url: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let locked: redis::RedisResult<Option<String>> = redis::cmd("SET")
        .arg("emta-local-sweeper")
        .arg(std::process::id())
        .arg("NX")
        .arg("EX")
        .arg(120)
        .query_async(&mut c)
        .await;
    if !matches!(locked, Ok(Some(_))) {
        return;
    }
    let orphaned = |k: &str| k.split(':').next().is_some_and(testkit::servers::orphaned);
    if let Err(e) = forget_keys(url, orphaned, "emta_*").await {
        tracing::warn!(error = %e, "could not sweep ended deployments' Redis keys");
    }
    let _: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg("emta-local-sweeper")
        .query_async(&mut c)
        .await;
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
    // The storefronts' back-channel logout endpoints are on the loopback here.
    s.allow_private_callbacks = true;
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

/// The participating bank of a local deployment: the stub's, under `{stubs}/bank`.
pub const STUB_BANK: &str = "stub-bank";

/// The stub bank as presale's configuration names it (issue 30).
pub fn stub_bank(stub_url: &str, bank: &testkit::bank::StubBank) -> presale::config::BankConfig {
    presale::config::BankConfig {
        id: STUB_BANK.into(),
        name: "Stub bank".into(),
        name_fa: "بانک آزمایشی".into(),
        url: format!("{}/bank", stub_url.trim_end_matches('/')),
        api_key: presale::config::Secret::new(bank.api_key.clone()),
        callback_key: presale::config::Secret::new(bank.callback_key.clone()),
    }
}

/// The storefront that pushes its authorization requests (RFC 9126), and of which the IdP
/// requires it: the other sends them through the browser, so both ways are in every
/// deployment.
pub const PUSHING: &str = "iran-khodro";

/// Registers Saipa and Iran Khodro at the IdP, with a callback under each of `bases` (a
/// presale service's public URL, or several), and returns their storefront settings.
/// Iran Khodro pushes its authorization requests and the IdP requires it ([`PUSHING`]).
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
                private_callbacks: true,
            },
            "local",
            service_kit::clock::now(),
        )
        .await?;
        if id == PUSHING {
            admin::set_par(&core.db, id, true, "local", service_kit::clock::now()).await?;
        }
        fronts.push(StorefrontConfig {
            id: id.into(),
            name: name.into(),
            name_fa: name_fa.into(),
            client_secret: Secret::new(client_secret),
            push_requests: id == PUSHING,
        });
    }
    Ok(fronts)
}

/// A service client at the IdP (no redirect URI, no citizen's claims: client_credentials
/// for `service_scopes` only), registered once; a restart rotates its secret (the old one
/// is gone). Returns its secret.
async fn service_client(
    db: &idp::store::Db,
    keys: &idp::crypto::Keyring,
    id: &str,
    names: (&str, &str),
    service_scopes: &[&str],
) -> anyhow::Result<String> {
    let now = service_kit::clock::now();
    let cid = idp::domain::ClientId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    if db.client(&cid).await?.is_some() {
        return Ok(admin::rotate_secret(db, keys, id, 0, "local", now).await?);
    }
    let new = NewClient {
        id: id.into(),
        name: names.0.into(),
        name_fa: names.1.into(),
        stars: 5,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        service_scopes: service_scopes.iter().map(|s| (*s).to_owned()).collect(),
        id_token_alg: idp::domain::SigningAlg::ES256,
        valid_days: 365,
        allowed_scopes: vec![],
        subject_type: idp::domain::SubjectType::Public,
        sector_identifier: None,
        backchannel_logout_uri: None,
        private_key_jwt: None,
        private_callbacks: true,
    };
    Ok(admin::add_client(db, keys, new, "local", now).await?.1)
}

/// The ministry's own client at the IdP, as presale uses it: the manufacturers API, the
/// introspection of manufacturers' service tokens and manufacturers' standing (issue 34). Returns its id and secret.
pub async fn register_ministry_client(
    db: &idp::store::Db,
    keys: &idp::crypto::Keyring,
) -> anyhow::Result<(String, String)> {
    const ID: &str = "ministry-console";
    let secret = service_client(
        db,
        keys,
        ID,
        ("Ministry console", "سامانه وزارت"),
        &[
            "ministry.manufacturers",
            "ministry.introspect",
            "ministry.trust",
        ],
    )
    .await?;
    Ok((ID.into(), secret))
}

/// Each manufacturer's own seed client at the IdP, `{id}-seed` (a service client with
/// scopes `presale.seed` and `presale.deliveries`): its back-end sends its seed commitments
/// and records its deliveries (issue 34) with it. Presale
/// never holds these credentials (it holds the storefronts' clients). Returns
/// (manufacturer, secret) pairs.
pub async fn register_seed_clients(
    db: &idp::store::Db,
    keys: &idp::crypto::Keyring,
    manufacturers: &[(&str, &str, &str)],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (id, name, name_fa) in manufacturers {
        let client = format!("{id}{}", presale::store::commitments::SEED_CLIENT_SUFFIX);
        let names = (format!("{name} (seed)"), format!("{name_fa} (بذر)"));
        let secret = service_client(
            db,
            keys,
            &client,
            (&names.0, &names.1),
            &[
                "presale.seed",
                "presale.deliveries",
                "presale.complaints",
                "presale.warranty",
            ],
        )
        .await?;
        out.push(((*id).to_owned(), secret));
    }
    Ok(out)
}

/// The environment of an IdP process with the settings `s`, listening on `port`.
fn idp_env(s: &idp::Settings, port: u16) -> Vec<(String, String)> {
    [
        ("EMTA_IDP_LISTEN", format!("127.0.0.1:{port}")),
        ("EMTA_ISSUER", s.issuer.clone()),
        (
            "EMTA_PRESALE_URL",
            s.presale_url.clone().unwrap_or_default(),
        ),
        ("DATABASE_URL", s.storage.database_url.expose().to_owned()),
        ("EMTA_DB_MAX_CONNECTIONS", "8".into()),
        ("REDIS_URL", s.storage.redis_url.expose().to_owned()),
        ("EMTA_REDIS_PREFIX", s.storage.redis_prefix.clone()),
        ("EMTA_SECRET_KEY", s.secret_key.expose().to_owned()),
        ("EMTA_REGISTRY_URL", s.registry_url.clone()),
        ("EMTA_OWNERSHIP_URL", s.ownership_url.clone()),
        ("EMTA_SMS_URL", s.sms_url.clone()),
        ("EMTA_POW_DIFFICULTY", s.pow_difficulty.to_string()),
        ("EMTA_RESEND_SECS", s.resend_secs.to_string()),
        ("EMTA_ACCESS_TOKEN_SECS", s.access_token_secs.to_string()),
        ("EMTA_REGISTRY_RPS", s.registry_rps.to_string()),
        ("EMTA_SMS_RPS", s.sms_rps.to_string()),
        ("EMTA_MAX_INFLIGHT", s.max_inflight.to_string()),
        ("EMTA_QUEUE_BUDGET_MS", s.queue_budget_ms.to_string()),
        ("EMTA_ADMISSION_ADAPTIVE", s.admission_adaptive.to_string()),
        (
            "EMTA_TRUST_FORWARDED_FOR",
            s.trust_forwarded_for.to_string(),
        ),
        (
            "EMTA_ALLOW_PRIVATE_CALLBACKS",
            s.allow_private_callbacks.to_string(),
        ),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `n` loopback ports for processes to bind. Free now; a parallel test could take one
/// before the process binds it (a process cannot be handed a bound socket here).
fn reserve_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
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
    if !o.redis_url.is_empty() {
        sweep_orphaned_keys(&o.redis_url).await;
    }
    let secret = service_kit::keys::random_token(32);
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // As processes, the IdP replicas sit behind a balancer at the issuer's address.
    let idp_balancer = match o.idp_binary {
        Some(_) => Some(TcpProxy::balance(Vec::new()).await?),
        None => None,
    };
    let issuer = format!(
        "http://localhost:{}",
        match &idp_balancer {
            Some(b) => b.addr().port(),
            None => idp_listener.local_addr()?.port(),
        }
    );
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
    s.presale_url = Some(public.clone());
    s.trust_forwarded_for = true;
    if let Some((n, ms)) = o.idp_admission {
        s.max_inflight = n;
        s.queue_budget_ms = ms;
    }
    if let Some(secs) = o.access_token_secs {
        s.access_token_secs = secs;
    }
    let app = idp::Application::build_with_listener(s.clone(), idp_listener).await?;
    let core = app.core();
    if o.idp_binary.is_none() {
        let idp_stop = stopped(&rx);
        servers.push(tokio::spawn(async move {
            let _ = app.run_until_stopped(idp_stop).await;
        }));
    }
    let mut bases = publics.clone();
    bases.dedup();
    let fronts = register_storefronts(&core, &bases).await?;
    let (ministry_id, ministry_secret) = register_ministry_client(&core.db, &core.keyring).await?;
    let seed_clients = register_seed_clients(
        &core.db,
        &core.keyring,
        &[
            ("saipa", "Saipa", "سایپا"),
            ("iran-khodro", "Iran Khodro", "ایران خودرو"),
        ],
    )
    .await?;
    core.reload().await?;
    let idp_processes = Processes::default();
    if let (Some(binary), Some(balancer)) = (&o.idp_binary, &idp_balancer) {
        // The IdP built here migrated the database, made the signing keys and registered
        // the storefronts; the processes serve.
        for port in reserve_ports(o.idp_replicas.max(1))? {
            idp_processes.spawn(Process::new(binary.clone(), idp_env(&s, port), port, None))?;
        }
        idp_processes.ready().await?;
        balancer.balance_over(idp_processes.addrs());
    }
    let presale_admin = o
        .presale_postgres_admin
        .as_deref()
        .or(o.postgres_admin.as_deref());
    let db = fresh_database(presale_admin, "presale").await?;
    let store = Store::connect(&db.url, 4).await?;
    store.migrate().await?;
    // On PostgreSQL the replicas run as production's do: as a role that owns nothing, which
    // the migrations' owner grants what the service needs (`presale migrate --grant-to`),
    // so that every flow a test drives also meets the guards on that role.
    let replica_db = match presale_admin {
        Some(_) => service_role_url(&store, &db.url).await?,
        None => db.url.clone(),
    };
    store
        .issue_license(&o.license, service_kit::clock::now())
        .await?
        .map_err(|e| anyhow::anyhow!("license: {e}"))?;
    servers.push(tokio::spawn(crate::parties::reveal_when_frozen(
        store.clone(),
    )));
    let mut metrics = Vec::new();
    let processes = Processes::default();
    // Complaints' attachments: one directory every replica shares, as a volume would be.
    let files = testkit::servers::TempDir::new("presale-files")?;
    // The log's signing key for the first replica, its public half for the others.
    let log_key = match &o.log_signing_key {
        Some(file) => Some((
            file.clone(),
            presale::transparency::LogKey::from_file(file, true)
                .map_err(anyhow::Error::msg)?
                .verifier_key()
                .to_owned(),
        )),
        None => None,
    };
    if let Some(binary) = &o.presale_binary {
        let dir = std::sync::Arc::new(testkit::servers::TempDir::new("presale")?);
        let fronts_file = dir.path().join("storefronts.json");
        std::fs::write(&fronts_file, serde_json::to_vec(&fronts)?)?;
        let banks_file = dir.path().join("banks.json");
        std::fs::write(
            &banks_file,
            serde_json::to_vec(&[stub_bank(&stub_url, &stub.bank)])?,
        )?;
        // The listeners were bound only to reserve the ports: each process binds its own.
        listeners.clear();
        for (replica, (port, base)) in ports.iter().zip(&publics).enumerate() {
            let env = [
                ("EMTA_PRESALE_LISTEN", format!("127.0.0.1:{port}")),
                ("EMTA_PRESALE_URL", base.clone()),
                ("EMTA_ISSUER", issuer.clone()),
                ("DATABASE_URL", replica_db.clone()),
                ("EMTA_PRESALE_MIGRATE", "false".into()),
                ("REDIS_URL", o.redis_url.clone()),
                ("EMTA_REDIS_PREFIX", prefix.clone()),
                ("EMTA_SECRET_KEY", secret.clone()),
                ("EMTA_STOREFRONTS_FILE", fronts_file.display().to_string()),
                ("EMTA_MINISTRY_CLIENT_ID", ministry_id.clone()),
                ("EMTA_MINISTRY_CLIENT_SECRET", ministry_secret.clone()),
                ("EMTA_IP_PER_SEC", o.ip_per_sec.to_string()),
                ("EMTA_TRAFFIC_POLICE_URL", stub_url.clone()),
                ("EMTA_BANKS_FILE", banks_file.display().to_string()),
                ("EMTA_BANK_TIMEOUT_MS", o.bank_timeout_ms.to_string()),
                ("EMTA_SMS_URL", stub_url.clone()),
                ("EMTA_VEHICLE_REGISTRY_URL", stub_url.clone()),
                (
                    "EMTA_TRUST_FORWARDED_FOR",
                    o.trust_forwarded_for.to_string(),
                ),
                (
                    "EMTA_DB_MAX_CONNECTIONS",
                    o.presale_db_connections.to_string(),
                ),
                ("RUST_LOG", "warn".into()),
                ("EMTA_LOG_WITNESSES", o.log_witnesses.join(",")),
                ("EMTA_FILES_DIR", files.path().display().to_string()),
                ("EMTA_RECORD_EVERY_SECS", o.record_every_secs.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(log_key_env(replica, &log_key))
            .chain(o.presale_admission.into_iter().flat_map(|(n, ms)| {
                [
                    ("EMTA_MAX_INFLIGHT".to_owned(), n.to_string()),
                    ("EMTA_QUEUE_BUDGET_MS".to_owned(), ms.to_string()),
                ]
            }))
            .chain(
                o.credit_ceilings
                    .iter()
                    .map(|c| ("EMTA_CREDIT_CEILINGS".to_owned(), c.clone())),
            )
            .chain(
                o.presale_env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.replace("{replica}", &replica.to_string()))),
            )
            .collect();
            processes.spawn(Process::new(binary.clone(), env, *port, Some(dir.clone())))?;
        }
        processes.ready().await?;
    }
    // In-process replicas, unless they run as processes (then no listener is left).
    for (replica, ((port, base), listener)) in
        ports.into_iter().zip(&publics).zip(listeners).enumerate()
    {
        let mut settings = presale_settings(
            ([127, 0, 0, 1], port).into(),
            base,
            &issuer,
            &secret,
            &fronts,
        );
        settings.storage.database_url = Secret::new(replica_db.clone());
        settings.storage.migrate = false;
        settings.ministry_client_id = Some(ministry_id.clone());
        settings.ministry_client_secret = Some(Secret::new(ministry_secret.clone()));
        settings.storage.redis_url = Secret::new(o.redis_url.clone());
        settings.storage.redis_prefix = prefix.clone();
        settings.storage.db_max_connections = o.presale_db_connections;
        settings.ip_per_sec = o.ip_per_sec;
        settings.trust_forwarded_for = o.trust_forwarded_for;
        settings.traffic_police_url = Some(stub_url.clone());
        settings.banks = vec![stub_bank(&stub_url, &stub.bank)];
        settings.bank_timeout_ms = o.bank_timeout_ms;
        settings.credit_ceilings = o
            .credit_ceilings
            .as_deref()
            .map(presale::domain::after_sale::Ceilings::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("credit ceilings: {e}"))?;
        settings.sms_url = Some(stub_url.clone());
        settings.vehicle_registry_url = Some(stub_url.clone());
        settings.log_witnesses = o.log_witnesses.clone();
        settings.files_dir = files.path().to_path_buf();
        settings.record_every_secs = o.record_every_secs;
        if let Some((file, verifier)) = &log_key {
            if replica == 0 {
                settings.log_signing_key_file = Some(file.clone());
            } else {
                settings.log_verifier_key = Some(verifier.clone());
            }
        }
        settings.metrics_listen = Some(([127, 0, 0, 1], 0).into());
        if let Some((n, ms)) = o.presale_admission {
            settings.max_inflight = n;
            settings.queue_budget_ms = ms;
        }
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
        presale_database_url: db.url.clone(),
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
        storefronts: fronts,
        seed_clients,
        idp: core,
        databases: vec![idp_db, db],
        presale_processes: processes,
        idp_processes,
        idp_balancer,
        files,
        postgres_admin: o.postgres_admin,
        redis_url: o.redis_url.clone(),
        redis_prefix: prefix,
        stop,
        servers,
    })
}

/// The environment that gives presale process `replica` the log's signing key (the
/// first) or its public half (the others); nothing when the key is derived from the secret.
fn log_key_env(
    replica: usize,
    key: &Option<(std::path::PathBuf, String)>,
) -> Option<(String, String)> {
    match key {
        Some((file, _)) if replica == 0 => Some((
            "EMTA_LOG_SIGNING_KEY_FILE".into(),
            file.display().to_string(),
        )),
        Some((_, verifier)) => Some(("EMTA_LOG_VERIFIER_KEY".into(), verifier.clone())),
        None => None,
    }
}

/// The service's role on the presale database at `owner_url` (migrated by its owner,
/// through `store`): `emta_presale_service`, made once per PostgreSQL server, granted what
/// the service needs on this database. Its URL.
async fn service_role_url(store: &Store, owner_url: &str) -> anyhow::Result<String> {
    const ROLE: &str = "emta_presale_service";
    const PASSWORD: &str = "local-service-password";
    let made = sqlx::query(&format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"))
        .execute(store.pool())
        .await;
    match made {
        Ok(_) => {}
        // Another deployment on this server made it (at the same moment, perhaps).
        Err(e)
            if e.to_string().contains("already exists")
                || e.to_string().contains("duplicate key") => {}
        Err(e) => return Err(e.into()),
    }
    store.grant_service_role(ROLE).await?;
    let (scheme, rest) = owner_url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("a database URL"))?;
    let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    Ok(format!("{scheme}://{ROLE}:{PASSWORD}@{host}"))
}
