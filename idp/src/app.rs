//! Building and running the IdP: `Application::build(settings)` connects storage, loads
//! keys and clients, and binds the listener (port 0 in tests); `run_until_stopped` serves
//! until the given shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::adapters::registry::Registry;
use crate::adapters::Sms;
use crate::config::Settings;
use crate::core::{ClientCache, Core, CoreState};
use crate::crypto::{random_token, Keyring};
use crate::flow::limits::Limiter;
use crate::keys::{self, Keys};
use crate::store::{Db, Ephemeral};

pub struct Application {
    core: Core,
    listener: TcpListener,
    addr: SocketAddr,
    /// The operators' listener (`/metrics`), when configured.
    metrics: Option<TcpListener>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        Self::build_with_listener(settings, listener).await
    }

    /// As [`Application::build`], on a listener bound already (tests bind first so that
    /// the issuer URL can name the port).
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        crate::telemetry::init_metrics();
        let db = Db::connect_waiting(
            settings.storage.database_url.expose(),
            settings.storage.db_max_connections,
            Duration::from_millis(settings.db_acquire_ms.max(1)),
        )
        .await?;
        db.migrate().await?;
        let allow_private_callbacks = settings.allow_private_callbacks;
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
            settings
                .secret_key
                .check_strength("EMTA_SECRET_KEY")
                .map_err(anyhow::Error::msg)?;
            settings.secret_key.expose().to_owned()
        };
        let keyring = Keyring::new(secret.as_bytes());
        let timeout = Duration::from_millis(settings.upstream_timeout_ms);

        anyhow::ensure!(
            !settings.registry_url.is_empty()
                && !settings.ownership_url.is_empty()
                && !settings.sms_url.is_empty(),
            "EMTA_REGISTRY_URL, EMTA_OWNERSHIP_URL and EMTA_SMS_URL are required (on one \
             machine, `cargo run -p local -- demo` starts stubs of all three and points the \
             IdP at them)"
        );
        // A challenge a browser could not solve in a day is a misconfiguration, not a
        // defence (the rise tops out at three bits, see `flow::pow`).
        anyhow::ensure!(
            u32::from(settings.pow_difficulty) + u32::from(settings.pow_max_rise.min(3)) <= 32,
            "EMTA_POW_DIFFICULTY plus its rise (EMTA_POW_MAX_RISE, at most 3) must be at most 32 bits"
        );
        let registry = Registry::new(&settings.registry_url, &settings.ownership_url, timeout);
        let sms = Sms::http(&settings.sms_url, timeout);

        if !settings.key_encryption_key.expose().is_empty() {
            settings
                .key_encryption_key
                .check_strength("EMTA_KEY_ENCRYPTION_KEY")
                .map_err(anyhow::Error::msg)?;
        }
        let signing_keys = Keys::new(keys::keks(
            settings.key_encryption_key.expose(),
            settings.key_encryption_key_previous.expose(),
            &secret,
        ));
        keys::ensure_keys(&db, &signing_keys, crate::now()).await?;
        let discovery = crate::http::oauth::discovery_document(&settings.issuer)
            .map_err(|e| anyhow::anyhow!("issuer {}: {e}", settings.issuer))?
            .into();
        let addr = listener.local_addr()?;
        let gates = crate::core::Gates::new(&settings);
        let campaigns = crate::http::badge::Campaigns::new(settings.presale_url.as_deref());
        let token_rps_per_client = settings.token_rps_per_client;
        let core = Core::new(CoreState {
            limiter: Limiter::new(eph.clone(), keyring.clone()),
            settings,
            db,
            eph,
            keys: signing_keys,
            clients: ClientCache::default(),
            registry,
            sms,
            keyring,
            discovery,
            ready: AtomicBool::new(true),
            deliveries: tokio::sync::Notify::new(),
            outbound: crate::adapters::outbound::Outbound::new(allow_private_callbacks)?,
            client_keys: Default::default(),
            gates,
            reload_lock: tokio::sync::Mutex::new(()),
            campaigns,
            pow_load: Default::default(),
            client_rates: crate::flow::client_rate::ClientRates::new(token_rps_per_client),
            replica_id: service_kit::keys::random_token(12),
            readiness: Default::default(),
        });
        core.reload().await?;
        core.refresh_presence().await;
        let metrics = match core.settings.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            core,
            listener,
            addr,
            metrics,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
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
        // Its own task: a slow reload (SQL) never lets this replica's presence lapse.
        let presence = tokio::spawn({
            let core = core.clone();
            async move {
                let mut tick = tokio::time::interval(crate::flow::client_rate::PRESENCE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    core.refresh_presence().await;
                }
            }
        });
        let deliveries = tokio::spawn(crate::flow::backchannel::run(core.clone()));
        let metrics = self.metrics.map(|l| {
            let router = crate::http::metrics_router();
            tokio::spawn(async move { axum::serve(l, router).await })
        });
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
        presence.abort();
        deliveries.abort();
        if let Some(m) = metrics {
            m.abort();
        }
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

pub use service_kit::shutdown::{shutdown_signal, stop_gracefully};
