//! The provider's shared core: one cloneable struct that every handler holds. Its own
//! methods are here; each flow is a view of it with the flow's methods
//! (`core.login()` in [`crate::flow::login`], `core.tokens()` in [`crate::flow::tokens`]),
//! so a newcomer finds a rule in the flow it belongs to.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::adapters::registry::Registry;
use crate::adapters::Sms;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::domain::{Client, ClientId, SubjectType};
use crate::flow::limits::Limiter;
use crate::keys::Keys;
use crate::store::{Db, Ephemeral};
use service_kit::admission::{Admission, Gate};

#[derive(Clone)]
pub struct Core(Arc<CoreState>);

pub struct CoreState {
    pub settings: Settings,
    pub db: Db,
    pub eph: Ephemeral,
    pub keys: Keys,
    pub clients: ClientCache,
    pub registry: Registry,
    pub sms: Sms,
    pub keyring: Keyring,
    /// The discovery document, built once at start-up.
    pub discovery: axum::body::Bytes,
    pub limiter: Limiter,
    /// Turned off first on SIGTERM so the load balancer stops sending traffic.
    pub ready: AtomicBool,
    /// Wakes the back-channel logout deliverer (a sign-out on this replica).
    pub deliveries: tokio::sync::Notify,
    /// For calls to manufacturers (logout tokens): no redirects followed.
    pub outbound: crate::adapters::outbound::Outbound,
    /// Keys fetched from `private_key_jwt` clients' JWKS URIs.
    pub client_keys: crate::flow::client_auth::ClientKeyCache,
    /// Admission control per step: bounded in flight, refused at once past it.
    pub gates: Gates,
    /// Serialises reloads, so a slow periodic reload that read SQL before a change cannot
    /// overwrite the result of a newer one.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The last reading of the deployment's load, for the proof of work's difficulty.
    pub pow_load: crate::flow::pow::PowLoad,
    /// Presale's public list of licensed campaigns, for the trust badge (issue 34).
    pub campaigns: crate::http::badge::Campaigns,
    /// The per-client token budget, this replica's share of it (issue 33).
    pub client_rates: crate::flow::client_rate::ClientRates,
    /// This replica's name in the shared presence set (random, per process).
    pub replica_id: String,
    /// The last readiness answer, for a second (`/readyz` is public).
    pub readiness: service_kit::ready::Cached,
}

impl Core {
    /// Refreshes this replica's presence and takes the live count for the client budget's
    /// shares. A failure keeps the last count.
    pub async fn refresh_presence(&self) {
        use crate::flow::client_rate::{PRESENCE_EVERY, PRESENCE_KEY, PRESENCE_TTL};
        // Bounded: a pool that cannot hand out a connection (it waits without limit) must
        // not stall the count.
        let counted = tokio::time::timeout(
            PRESENCE_EVERY,
            self.eph
                .presence(PRESENCE_KEY, &self.replica_id, PRESENCE_TTL),
        )
        .await;
        match counted {
            Ok(Ok(n)) => self.client_rates.set_replicas(n),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "replica presence not refreshed; keeping the last count")
            }
            Err(_) => {
                tracing::warn!("replica presence not refreshed in time; keeping the last count")
            }
        }
    }
}

impl std::ops::Deref for Core {
    type Target = CoreState;
    fn deref(&self) -> &CoreState {
        &self.0
    }
}

impl Core {
    pub fn new(state: CoreState) -> Self {
        Self(Arc::new(state))
    }

    /// The login flow: transactions, steps, SSO sessions.
    pub fn login(&self) -> crate::flow::login::Login<'_> {
        crate::flow::login::Login(self)
    }

    /// Codes, tokens, grants, client authentication.
    pub fn tokens(&self) -> crate::flow::tokens::Tokens<'_> {
        crate::flow::tokens::Tokens(self)
    }

    /// Back-channel logout deliveries.
    pub fn backchannel(&self) -> crate::flow::backchannel::Backchannel<'_> {
        crate::flow::backchannel::Backchannel(self)
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The public URL of one of this provider's endpoints (`path` starts with `/`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer().trim_end_matches('/'))
    }

    /// The `sub` that `client` sees for a citizen: the citizen's id for public clients,
    /// a keyed hash of the client's sector and the citizen for pairwise ones (OIDC Core
    /// §8.1). Stable for as long as `EMTA_SECRET_KEY` is (client secrets depend on it too).
    pub fn subject(&self, client: &Client, citizen_id: &str) -> String {
        match client.subject_type {
            SubjectType::Public => citizen_id.to_owned(),
            SubjectType::Pairwise => self.keyring.hash(
                "pairwise-sub",
                format!("{}\n{citizen_id}", client.sector()).as_bytes(),
            ),
        }
    }

    /// [`Core::subject`] by client id; `None` when the client is unknown.
    pub fn subject_at(&self, client_id: &str, citizen_id: &str) -> Option<String> {
        self.clients
            .get(client_id)
            .map(|c| self.subject(&c, citizen_id))
    }

    pub fn secs(&self, s: i64) -> Duration {
        Duration::from_secs(s.max(1) as u64)
    }

    /// Reloads clients and signing keys from SQL.
    pub async fn reload(&self) -> crate::error::Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let clients = self.db.clients().await?;
        self.clients.replace(clients);
        let rows = self.db.signing_keys().await?;
        self.keys.load(&rows, crate::now())?;
        Ok(())
    }
}

/// The classes of admission control (`service_kit::admission`), each admitted while the
/// replica's load is below its share of `EMTA_MAX_INFLIGHT`: a new sign-in below half, the
/// phone step (an SMS) below 60%, the code and identity steps below 75%; the steps that
/// finish a sign-in (consent, the pages between steps, sign-out) and the manufacturers'
/// back-end calls (token, userinfo, introspection, revocation) may use all of it. Under
/// overload new sign-ins are refused first and the ones under way finish. An adaptive
/// budget (`EMTA_ADMISSION_ADAPTIVE`, off by default) lowered by the latency measured is taken from each
/// share alike, so the new sign-ins lose their room first; none keeps less than half its
/// share of the budget now, so a code whose SMS was sent still gets in.
pub struct Gates {
    pub start: Gate,
    pub phone: Gate,
    pub otp: Gate,
    pub identity: Gate,
    pub finish: Gate,
    pub backend: Gate,
}

impl Gates {
    pub fn new(s: &crate::config::Settings) -> Self {
        let budget = Duration::from_millis(s.queue_budget_ms);
        let a = if s.admission_adaptive {
            Admission::adaptive(s.max_inflight, budget)
        } else {
            Admission::new(s.max_inflight, budget)
        };
        let page = |name, share| Gate {
            class: a.class(name, share),
            refuse: busy_page,
        };
        Self {
            start: page("start", 0.5),
            phone: page("phone", 0.6),
            otp: page("otp", 0.75),
            identity: page("identity", 0.75),
            finish: page("finish", 1.0),
            backend: Gate {
                class: a.class("backend", 1.0),
                refuse: busy_json,
            },
        }
    }
}

/// A citizen's step refused: the busy page, in both languages.
fn busy_page(retry_after: u64) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::error::Error::Busy { retry_after }.into_response()
}

/// A manufacturer's back-end call refused: the OAuth JSON error.
fn busy_json(retry_after: u64) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::error::OAuthError::from(crate::error::Error::Busy { retry_after }).into_response()
}

/// Clients held in memory and reloaded from SQL every `reload_ms`: the token endpoint
/// must not pay a SQL round trip per request. A suspension made through this replica's
/// admin path applies at once; on other replicas within one reload interval.
type ClientMap = Arc<HashMap<String, Arc<Client>>>;

#[derive(Clone, Default)]
pub struct ClientCache {
    map: Arc<RwLock<ClientMap>>,
}

impl ClientCache {
    pub fn replace(&self, clients: Vec<Client>) {
        let map = clients
            .into_iter()
            .map(|c| (c.id.as_str().to_owned(), Arc::new(c)))
            .collect();
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<Client>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut all: Vec<Arc<Client>> = map.values().cloned().collect();
        all.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        all
    }

    pub fn get_id(&self, id: &ClientId) -> Option<Arc<Client>> {
        self.get(id.as_str())
    }
}
