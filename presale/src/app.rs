//! Building and running the presale service: `Application::build(settings)` connects
//! storage, discovers the IdP, and binds the listener (port 0 in tests);
//! `run_until_stopped` serves, and runs the admitter, until the shutdown future resolves.
//!
//! [`Core`] is the state every handler and the admitter share; replicas share nothing but
//! SQL (every durable record, the queue's included) and Redis (sessions and rate limits).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use service_kit::ephemeral::Ephemeral;
use service_kit::keys::Keyring;
use service_kit::limit::Limiter;
use tokio::net::TcpListener;

use crate::adapters::oidc::{RelyingParty, Storefront};
use crate::admitter::Admitter;
use crate::config::Settings;
use crate::domain::ticket::Tickets;
use crate::domain::License;
use crate::queue::{Queue, QueueState};
use crate::store::Store;
use crate::transparency::LogKey;

/// Purposes of the keyed hashes used on every request.
const HOT_PURPOSES: &[&str] = &["csrf", "ticket", "ticket-owner", "rate-subject"];

/// The state handlers and the admitter share, cheap to clone.
#[derive(Clone)]
pub struct Core(Arc<CoreState>);

impl std::ops::Deref for Core {
    type Target = CoreState;
    fn deref(&self) -> &CoreState {
        &self.0
    }
}

pub struct CoreState {
    pub(crate) base_url: String,
    pub(crate) store: Store,
    pub(crate) queue: Queue,
    /// Storefront sessions, sign-in states, staff sessions, shared limit counters.
    pub(crate) sessions: Ephemeral,
    pub(crate) keys: Keyring,
    pub(crate) tickets: Tickets,
    /// Joins, applications and staff logins per subject, shared by replicas.
    pub(crate) limiter: Limiter,
    pub(crate) addresses: crate::http::addresses::Addresses,
    pub(crate) trust_forwarded_for: bool,
    /// The storefronts as OIDC relying parties of the IdP.
    pub(crate) rp: RelyingParty,
    /// The ministry's own client at the IdP, when configured.
    pub(crate) ministry: Option<crate::adapters::ministry::MinistryClient>,
    /// False from the moment the replica is told to stop (readiness probe).
    pub(crate) ready: AtomicBool,
    pub(crate) drain: Duration,
    /// The last readiness answer, for a second (`/readyz` is public).
    pub(crate) readiness: service_kit::ready::Cached,
    /// Requests in flight on this replica, for load shedding.
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) admitter: Admitter,
    /// Admission control per step (`http::Gates`).
    pub(crate) gates: crate::http::Gates,
    /// Applications this replica refused, by reason (`Refusal::ALL` order).
    refusals: [std::sync::atomic::AtomicU64; crate::domain::Refusal::ALL.len()],
    /// Signs the campaigns' transparency-log checkpoints, on a replica that sequences
    /// (`EMTA_LOG_SIGNING_KEY_FILE`, or a key derived from the secret when neither key is
    /// configured); `None` on a replica that only serves the log.
    pub(crate) log_signer: Option<LogKey>,
    /// The logs' public key, as verifiers pin it.
    pub(crate) log_verifier: String,
    /// Signs the promises of inclusion given at a join or an entry.
    pub(crate) promise_key: crate::transparency::promise::PromiseKey,
    /// The registries a license may ask at registration ([`crate::eligibility`]).
    pub(crate) registries: crate::adapters::registries::Registries,
    /// The participating banks (issue 30).
    pub(crate) banks: crate::adapters::bank::Banks,
    /// The SMS gateway, when configured, and the deployment's budget for it.
    pub(crate) sms: Option<service_kit::upstream::Sms>,
    pub(crate) sms_rps: i64,
    /// The IdP's issuer URL (the storefronts embed its trust badge, issue 34).
    pub(crate) issuer: String,
    /// The ministry's credit ceilings per star rating (issue 34).
    pub(crate) credit_ceilings: crate::domain::after_sale::Ceilings,
    /// Complaints' attachments, by content hash (issue 34).
    pub(crate) files: crate::files::Files,
    pub(crate) complaint_answer_days: i64,
    pub(crate) record_every: Option<Duration>,
    /// Notifications waiting to be sent by this replica ([`crate::notify`]).
    pub(crate) sms_queue: tokio::sync::mpsc::Sender<(String, String)>,
    sms_outbox: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<(String, String)>>>,
    /// Registry calls per second across the deployment.
    pub(crate) registry_rps: i64,
    /// How long a registry's answer is kept.
    pub(crate) registry_cache: Duration,
    /// The witnesses whose cosignatures the log keeps (`EMTA_LOG_WITNESSES`).
    pub(crate) log_witnesses: Vec<String>,
    /// Licenses as last read from SQL, shared rather than copied: status polls look them
    /// up on every request.
    licenses: RwLock<Arc<Vec<Arc<License>>>>,
    /// Each queue campaign's state as the admitter last committed it: status polls are
    /// answered from here and never touch a store.
    counters: RwLock<HashMap<String, QueueState>>,
    /// Each campaign's figures (dashboard, `/metrics`) as last read, and when: read again
    /// at most every two seconds, however many dashboards are open.
    figures: std::sync::Mutex<
        HashMap<String, (std::time::Instant, Arc<crate::store::figures::Figures>)>,
    >,
}

impl Core {
    pub(crate) fn all_licenses(&self) -> Arc<Vec<Arc<License>>> {
        self.licenses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_licenses(&self, ls: Vec<License>) {
        *self.licenses.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(ls.into_iter().map(Arc::new).collect());
    }

    /// The storefront of manufacturer `m`, or 404.
    pub(crate) fn storefront(&self, m: &str) -> crate::error::Result<&Storefront> {
        self.rp.storefront(m).ok_or(crate::error::Error::not_found(
            crate::error::msg::NO_STOREFRONT,
        ))
    }

    /// A license by id, whoever's.
    pub(crate) fn license_by_id(&self, id: &str) -> Option<Arc<License>> {
        self.all_licenses().iter().find(|l| l.id == id).cloned()
    }

    /// A manufacturer's license by id.
    pub(crate) fn license(&self, manufacturer: &str, id: &str) -> Option<Arc<License>> {
        self.all_licenses()
            .iter()
            .find(|l| l.id == id && l.manufacturer == manufacturer)
            .cloned()
    }

    pub(crate) fn cached(&self, id: &str) -> QueueState {
        self.counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn set_counters(&self, id: &str, c: QueueState) {
        self.counters
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), c);
    }

    /// Campaign `id`'s figures, read again when older than two seconds; None if there is
    /// no such campaign.
    pub(crate) async fn figures(
        &self,
        id: &str,
    ) -> Result<Option<Arc<crate::store::figures::Figures>>, crate::store::StoreError> {
        let fresh = std::time::Duration::from_secs(2);
        if let Some((at, f)) = self
            .figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            if at.elapsed() < fresh {
                return Ok(Some(f.clone()));
            }
        }
        let Some(f) = self.store.figures(id).await? else {
            return Ok(None);
        };
        let f = Arc::new(f);
        self.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (std::time::Instant::now(), f.clone()));
        Ok(Some(f))
    }

    pub(crate) fn count_refusal(&self, r: crate::domain::Refusal) {
        metrics::counter!("emta_presale_refusals_total", "reason" => r.label()).increment(1);
        if let Some(i) = crate::domain::Refusal::ALL.iter().position(|x| *x == r) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn refusals(&self, r: crate::domain::Refusal) -> u64 {
        crate::domain::Refusal::ALL
            .iter()
            .position(|x| *x == r)
            .map(|i| self.refusals[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub(crate) fn secure_cookies(&self) -> bool {
        self.base_url.starts_with("https")
    }
}

pub struct Application {
    core: Core,
    listener: TcpListener,
    /// The operators' listener (`/metrics`), when configured.
    metrics: Option<TcpListener>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        Self::build_with_listener(settings, listener).await
    }

    /// As [`Application::build`], on a listener bound already.
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let secret = settings.secret_key.expose();
        anyhow::ensure!(
            !secret.is_empty(),
            "EMTA_SECRET_KEY is required: every replica must share it"
        );
        for k in settings
            .log_witnesses
            .iter()
            .filter(|k| !k.trim().is_empty())
        {
            anyhow::ensure!(
                signed_note::StandardVerifier::new(k.trim()).is_ok(),
                "EMTA_LOG_WITNESSES: {k} is not a verifier key (name+id+key)"
            );
        }
        settings
            .secret_key
            .check_strength("EMTA_SECRET_KEY")
            .map_err(anyhow::Error::msg)?;
        let store = Store::connect_waiting(
            settings.storage.database_url.expose(),
            settings.storage.db_max_connections,
            Duration::from_secs(5),
        )
        .await?;
        if settings.storage.migrate {
            store.migrate().await?;
        } else {
            store.check_migrated().await?;
        }
        let keys = Keyring::new(secret.as_bytes(), HOT_PURPOSES);
        let (log_signer, log_verifier) =
            match (&settings.log_signing_key_file, &settings.log_verifier_key) {
                (Some(file), given) => {
                    let key = LogKey::from_file(file, false).map_err(anyhow::Error::msg)?;
                    if let Some(v) = given {
                        anyhow::ensure!(
                        v.trim() == key.verifier_key(),
                        "EMTA_LOG_VERIFIER_KEY is not the public half of EMTA_LOG_SIGNING_KEY_FILE"
                    );
                    }
                    let v = key.verifier_key().to_owned();
                    (Some(key), v)
                }
                (None, Some(v)) => {
                    anyhow::ensure!(
                        signed_note::StandardVerifier::new(v.trim()).is_ok(),
                        "EMTA_LOG_VERIFIER_KEY is not a verifier key (name+id+key)"
                    );
                    (None, v.trim().to_owned())
                }
                (None, None) => {
                    let key = <LogKey as crate::transparency::FromKeyring>::from_keyring(&keys);
                    let v = key.verifier_key().to_owned();
                    (Some(key), v)
                }
            };
        // The key must be the one the logs were signed with: a replica left without its
        // key settings (which would sign with the secret's key), a wrong key file, or a
        // key changed under existing logs refuses to start rather than sign a second tree
        // or break every receipt (`presale log-key --from-secret` keeps the old key).
        if let Some((license, note)) = store.latest_log_head().await? {
            anyhow::ensure!(
                crate::transparency::open_checkpoint(&note, &log_verifier, &license).is_ok(),
                "the transparency logs' key {log_verifier} does not verify the checkpoints already signed (campaign {license}): set EMTA_LOG_SIGNING_KEY_FILE or EMTA_LOG_VERIFIER_KEY to the key they were signed with"
            );
        }
        let redis_url = settings.storage.redis_url.expose();
        let sessions = if redis_url.is_empty() {
            Ephemeral::memory()
        } else {
            let prefix = &settings.storage.redis_prefix;
            Ephemeral::redis(redis_url, &format!("{prefix}:ps"))?
        };
        let queue = Queue::new(store.clone(), keys.clone());
        let rp = RelyingParty::discover(&settings).await?;
        let ministry = match (
            &settings.ministry_client_id,
            &settings.ministry_client_secret,
        ) {
            (Some(id), Some(secret)) => Some(
                crate::adapters::ministry::MinistryClient::discover(
                    &settings.issuer,
                    id,
                    secret.clone(),
                )
                .await?,
            ),
            _ => None,
        };
        let (sms_queue, sms_outbox) = tokio::sync::mpsc::channel(crate::notify::QUEUE);
        let core = Core(Arc::new(CoreState {
            base_url: settings.base_url.clone(),
            ministry,
            limiter: Limiter::new(sessions.clone(), keys.clone()),
            tickets: Tickets::new(keys.clone()),
            addresses: crate::http::addresses::Addresses::new(settings.ip_per_sec),
            trust_forwarded_for: settings.trust_forwarded_for,
            ready: AtomicBool::new(true),
            drain: Duration::from_secs(settings.drain_secs),
            in_flight: Arc::new(AtomicUsize::new(0)),
            readiness: Default::default(),
            admitter: Admitter::default(),
            gates: crate::http::Gates::new(&settings),
            log_signer,
            log_verifier,
            promise_key: crate::transparency::FromKeyring::from_keyring(&keys),
            log_witnesses: settings
                .log_witnesses
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            refusals: Default::default(),
            registries: crate::adapters::registries::Registries::new(
                settings.traffic_police_url.as_deref(),
                settings.vehicle_registry_url.as_deref(),
                Duration::from_millis(settings.registry_timeout_ms.max(1)),
            ),
            registry_rps: settings.registry_rps.max(1),
            sms: settings
                .sms_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .map(|u| service_kit::upstream::Sms::http(u, Duration::from_secs(5))),
            sms_rps: settings.sms_rps.max(1),
            credit_ceilings: settings.credit_ceilings.clone().unwrap_or_default(),
            files: crate::files::Files::new(settings.files_dir.clone()),
            complaint_answer_days: settings.complaint_answer_days.clamp(1, 365),
            record_every: (settings.record_every_secs > 0)
                .then(|| Duration::from_secs(settings.record_every_secs)),
            issuer: settings.issuer.trim_end_matches('/').to_owned(),
            sms_queue,
            sms_outbox: std::sync::Mutex::new(Some(sms_outbox)),
            banks: crate::adapters::bank::Banks::new(
                &settings.banks,
                Duration::from_millis(settings.bank_timeout_ms.max(1)),
            ),
            registry_cache: Duration::from_secs(settings.registry_cache_secs.max(1)),
            store,
            queue,
            sessions,
            keys,
            rp,
            licenses: RwLock::default(),
            counters: RwLock::default(),
            figures: std::sync::Mutex::default(),
        }));
        crate::admitter::tick(&core).await;
        service_kit::telemetry::init_metrics();
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            core,
            listener,
            metrics,
        })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves; then readiness turns false, the replica drains,
    /// new connections are refused and requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let admitter = tokio::spawn(crate::admitter::run(self.core.clone()));
        let standing = tokio::spawn(crate::standing::run(self.core.clone()));
        let trim = {
            let core = self.core.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(crate::http::addresses::TRIM_EVERY);
                loop {
                    every.tick().await;
                    core.addresses.trim();
                }
            })
        };
        let outbox = self
            .core
            .sms_outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let notifier = outbox.map(|rx| tokio::spawn(crate::notify::drain(self.core.clone(), rx)));
        let metrics = self.metrics.map(|l| {
            let router = crate::http::metrics::router(self.core.clone());
            tokio::spawn(async move { axum::serve(l, router).await })
        });
        let stop = self.core.clone();
        let drain = self.core.drain;
        let router = crate::http::router(self.core.clone());
        let r = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(service_kit::shutdown::stop_gracefully(
            shutdown,
            move || stop.ready.store(false, Ordering::Relaxed),
            drain,
        ))
        .await;
        admitter.abort();
        trim.abort();
        standing.abort();
        if let Some(n) = notifier {
            n.abort();
        }
        if let Some(m) = metrics {
            m.abort();
        }
        self.core.store.close().await;
        r
    }
}
