//! Building and running the IdP: `Application::build(settings)` connects storage, loads
//! keys and clients, and binds the listener (port 0 in tests); `run_until_stopped` serves
//! until the given shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::adapters::registry::{HttpRegistry, Registry};
use crate::adapters::sms::Sms;
use crate::config::Settings;
use crate::core::{ClientCache, Core, Inner};
use crate::crypto::{random_token, Keyring};
use crate::dev::{FixtureCitizen, FixtureRegistry, Outbox};
use crate::flow::limits::Limiter;
use crate::keys::{self, Keys};
use crate::store::{Db, Ephemeral};

pub struct Application {
    core: Core,
    listener: TcpListener,
    addr: SocketAddr,
}

/// What the embedded default runs on instead of government services (dev and demo).
#[derive(Default)]
pub struct DevFixtures {
    pub citizens: Vec<FixtureCitizen>,
}

impl Application {
    pub async fn build(settings: Settings, fixtures: Option<DevFixtures>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        Self::build_with_listener(settings, fixtures, listener).await
    }

    /// As [`Application::build`], on a listener bound already (tests bind first so that
    /// the issuer URL can name the port).
    pub async fn build_with_listener(
        settings: Settings,
        fixtures: Option<DevFixtures>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        crate::telemetry::init_metrics();
        let db = Db::connect(
            settings.storage.database_url.expose(),
            settings.storage.db_max_connections,
        )
        .await?;
        db.migrate().await?;
        let redis_url = settings.storage.redis_url.expose();
        let eph = if redis_url.is_empty() {
            Ephemeral::memory()
        } else {
            Ephemeral::redis(redis_url, &settings.storage.redis_prefix)?
        };
        let secret = if settings.secret_key.expose().is_empty() {
            anyhow::ensure!(
                settings.dev,
                "EMTA_SECRET_KEY is required outside dev mode: every replica must share it"
            );
            tracing::warn!("no EMTA_SECRET_KEY: using a random one; sessions end at restart");
            random_token(32)
        } else {
            settings.secret_key.expose().to_owned()
        };
        let keyring = Keyring::new(secret.as_bytes());
        let timeout = Duration::from_millis(settings.upstream_timeout_ms);

        let fixture_registry = || -> anyhow::Result<FixtureRegistry> {
            anyhow::ensure!(
                settings.dev,
                "no EMTA_REGISTRY_URL / EMTA_OWNERSHIP_URL: the fixture registry runs only with --dev"
            );
            let citizens = match (&settings.fixture_citizens, &fixtures) {
                (Some(path), _) => serde_json::from_slice(&std::fs::read(path)?)?,
                (None, Some(f)) => f.citizens.clone(),
                (None, None) => crate::dev::generate_citizens(100, 1),
            };
            Ok(FixtureRegistry::new(citizens))
        };
        let registry = if settings.registry_url.is_empty() || settings.ownership_url.is_empty() {
            Registry::Fixture(fixture_registry()?)
        } else {
            Registry::Http(HttpRegistry::new(
                &settings.registry_url,
                &settings.ownership_url,
                timeout,
            ))
        };
        let (sms, outbox) = if settings.sms_url.is_empty() {
            anyhow::ensure!(
                settings.dev,
                "no EMTA_SMS_URL: the SMS outbox runs only with --dev"
            );
            let outbox = Outbox::default();
            (Sms::Outbox(outbox.clone()), Some(outbox))
        } else {
            (Sms::http(&settings.sms_url, timeout), None)
        };

        keys::ensure_keys(&db, crate::now()).await?;
        let discovery = crate::http::oauth::discovery_document(&settings.issuer)
            .map_err(|e| anyhow::anyhow!("issuer {}: {e}", settings.issuer))?
            .into();
        let addr = listener.local_addr()?;
        let core = Core::new(Inner {
            limiter: Limiter::new(eph.clone(), keyring.clone()),
            settings,
            db,
            eph,
            keys: Keys::default(),
            clients: ClientCache::default(),
            registry,
            sms,
            outbox,
            keyring,
            discovery,
            ready: AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        core.reload().await?;
        Ok(Self {
            core,
            listener,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn core(&self) -> Core {
        self.core.clone()
    }

    /// Serves until `shutdown` resolves; then readiness turns false, new connections are
    /// refused, and requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let core = self.core.clone();
        let background = tokio::spawn(background_tasks(core.clone()));
        let app = crate::http::router(core.clone());
        let stop_core = core.clone();
        let result = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_gracefully(
            shutdown,
            move || stop_core.ready.store(false, Ordering::Relaxed),
            Duration::from_secs(core.settings.drain_secs),
        ))
        .await;
        background.abort();
        core.db.close().await;
        result
    }
}

/// Reloads clients and keys so that suspensions and rotations made elsewhere apply here,
/// and sweeps the in-process store.
async fn background_tasks(core: Core) {
    let mut tick = tokio::time::interval(Duration::from_millis(core.settings.reload_ms.max(100)));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = core.reload().await {
            tracing::warn!(error = %e, "reload of clients and keys failed; keeping the last ones");
        }
        n += 1;
        if n.is_multiple_of(30) {
            core.eph.sweep();
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
/// How a replica stops when told to (SIGTERM from Kubernetes): readiness goes false at
/// once (`not_ready`), so the load balancer stops sending it new requests; it keeps
/// serving for `drain` while that propagates; then this future resolves, the server
/// stops accepting connections and finishes the requests in flight, and the process
/// exits. `drain` plus the longest request must fit the pod's grace period.
pub async fn stop_gracefully(
    shutdown: impl Future<Output = ()>,
    not_ready: impl FnOnce(),
    drain: Duration,
) {
    shutdown.await;
    not_ready();
    tracing::info!(
        drain_secs = drain.as_secs(),
        "stopping: readiness is false; serving while the load balancer drains"
    );
    tokio::time::sleep(drain).await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
