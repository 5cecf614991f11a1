//! Typed configuration of the presale service, read from flags and environment variables
//! (what Kubernetes sets), with a documented default for every field and secrets that
//! never print.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};
pub use service_kit::secret::Secret;

/// One manufacturer's storefront: its OIDC client registration at the IdP.
#[derive(Clone, Serialize, Deserialize)]
pub struct StorefrontConfig {
    pub id: String,
    pub name: String,
    pub name_fa: String,
    #[serde(with = "secret_string")]
    pub client_secret: Secret,
    /// Whether its sign-ins push their authorization requests to the IdP first (RFC 9126:
    /// the browser then carries only a `request_uri`), as a client the ministry requires
    /// PAR of must.
    #[serde(default)]
    pub push_requests: bool,
}

impl std::fmt::Debug for StorefrontConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorefrontConfig")
            .field("id", &self.id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// A participating bank (issue 30): where its mandate API and pages are, and the two keys
/// it issued to emta: the API's bearer key, and the key its redirects back are signed
/// with (HMAC-SHA256).
#[derive(Clone, Serialize, Deserialize)]
pub struct BankConfig {
    /// The id licenses name it by (a-z, 0-9, dashes).
    pub id: String,
    pub name: String,
    pub name_fa: String,
    /// Its base URL: the mandate API and the citizen's pages are under it.
    pub url: String,
    #[serde(with = "secret_string")]
    pub api_key: Secret,
    #[serde(with = "secret_string")]
    pub callback_key: Secret,
}

impl std::fmt::Debug for BankConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

mod secret_string {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::new)
    }
}

/// Where durable and ephemeral state live.
#[derive(Args, Debug, Clone)]
pub struct StorageSettings {
    /// SQL database: a SQLite file by default, `postgres://…` in production.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://emta-presale.db?mode=rwc"
    )]
    pub database_url: Secret,

    /// Maximum SQL connections per replica.
    #[arg(long, env = "EMTA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// The queue and sessions: empty for the in-process store (one replica only), or
    /// `redis://…` / `redis+cluster://…`.
    #[arg(long, env = "REDIS_URL", default_value = "")]
    pub redis_url: Secret,

    /// Run the migrations at start (the default, and what SQLite needs). In production the
    /// service connects with a role that may not change the schema nor rewrite the audit
    /// log: set this to false, and `presale migrate --grant-to ROLE` runs them (as an
    /// init container) with the owner's credentials; the service then only checks that
    /// the schema is current.
    #[arg(long, env = "EMTA_PRESALE_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    #[arg(long, env = "EMTA_REDIS_PREFIX", default_value = "emta")]
    pub redis_prefix: String,
}

/// Settings of `presale serve`.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Address to listen on. Port 0 picks a free port (tests).
    #[arg(long, env = "EMTA_PRESALE_LISTEN", default_value = "127.0.0.1:8500")]
    pub listen: SocketAddr,

    /// Public base URL of this service (redirect URIs are `{base}/{manufacturer}/callback`).
    #[arg(
        long,
        env = "EMTA_PRESALE_URL",
        default_value = "http://localhost:8500"
    )]
    pub base_url: String,

    /// The IdP's issuer: presale knows the IdP only through its OIDC discovery document.
    #[arg(long, env = "EMTA_ISSUER", default_value = "http://localhost:8400")]
    pub issuer: String,

    #[command(flatten)]
    pub storage: StorageSettings,

    /// Secret from which CSRF, ticket and rate-limit keys are derived; the same on every
    /// replica (required).
    #[arg(long, env = "EMTA_SECRET_KEY")]
    pub secret_key: Secret,

    /// JSON file: `[{"id","name","name_fa","client_secret"}]`, one per manufacturer.
    #[arg(long, env = "EMTA_STOREFRONTS_FILE")]
    pub storefronts_file: Option<PathBuf>,

    /// The storefronts themselves (from `storefronts_file`, or given by a local deployment).
    #[arg(skip)]
    pub storefronts: Vec<StorefrontConfig>,

    /// The ministry's own client at the IdP (client_credentials, service scopes
    /// `ministry.manufacturers`, `ministry.introspect` and `ministry.trust`): the console
    /// reads the registered manufacturers through it, manufacturers' service tokens are
    /// checked with it, and manufacturers' standing (an approved suspension, the stars
    /// their after-sale record withholds, issue 34) is carried to the IdP with it.
    /// Unset: the license form offers the storefronts this service is configured with, and
    /// commitments through a manufacturer's credentials are refused.
    #[arg(long, env = "EMTA_MINISTRY_CLIENT_ID")]
    pub ministry_client_id: Option<String>,

    #[arg(long, env = "EMTA_MINISTRY_CLIENT_SECRET", hide_env_values = true)]
    pub ministry_client_secret: Option<Secret>,

    /// Requests per second one address (an IPv6 client's /64) may make to this replica
    /// (burst: twice that).
    #[arg(long, env = "EMTA_IP_PER_SEC", default_value_t = 50)]
    pub ip_per_sec: u32,

    /// Gated requests (sign-ins, joins, applications) served at once by this replica;
    /// past it they are answered 503 with Retry-After before they cost anything. Sized to
    /// what the database pool finishes within a request's time: new work (a storefront
    /// page, a sign-in, a join) is refused once part of it is in use, and an application,
    /// which finishes a journey, may use all of it. 0: no limit.
    #[arg(long, env = "EMTA_MAX_INFLIGHT", default_value_t = 64)]
    pub max_inflight: usize,

    /// How long an application may wait for room under `EMTA_MAX_INFLIGHT` (ms); the
    /// other steps are refused at once past their share.
    #[arg(long, env = "EMTA_QUEUE_BUDGET_MS", default_value_t = 100)]
    pub queue_budget_ms: u64,

    /// The in-flight budget adapts to the latency measured: lowered, in proportion, while
    /// requests take more than twice the best of the last 30 to 60 s and the replica uses
    /// at least half of it, raised back while they do not; `EMTA_MAX_INFLIGHT` is its
    /// ceiling (`service_kit::admission`). Off by default: at 200/s, more than 5/3 of the
    /// rate held, it cut the accepted steps' p99 by about a fifth, but near the knee it
    /// refused more (`load/BENCHMARKS.md`, issue 33's sixth pass).
    #[arg(long, env = "EMTA_ADMISSION_ADAPTIVE", default_value_t = false, action = clap::ArgAction::Set)]
    pub admission_adaptive: bool,

    /// Take the client IP from the rightmost X-Forwarded-For entry (behind an ingress that
    /// appends it), as the IdP does.
    #[arg(long, env = "EMTA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Where operators scrape `/metrics` (Prometheus text): a second listener, not the
    /// public one, so the ingress never exposes it. Unset: no metrics listener.
    #[arg(long, env = "EMTA_PRESALE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// On SIGTERM, seconds to keep serving with readiness false before closing.
    #[arg(long, env = "EMTA_DRAIN_SECS", default_value_t = 0)]
    pub drain_secs: u64,

    /// The independent witnesses whose cosignatures on the logs' checkpoints this service
    /// keeps and serves (their verifier keys, `presale witness-key` prints one;
    /// comma-separated). A cosignature by any other key is refused.
    #[arg(long, env = "EMTA_LOG_WITNESSES", value_delimiter = ',')]
    pub log_witnesses: Vec<String>,

    /// The transparency logs' signing key, a file of 32 bytes (`presale log-key`) given
    /// to the sequencing replicas only: they sign checkpoints with it. Unset, with
    /// `EMTA_LOG_VERIFIER_KEY` set: this replica serves the log but never signs. Both
    /// unset (a local deployment): the key is derived from `EMTA_SECRET_KEY`, and so held
    /// by every replica and whoever holds that secret.
    #[arg(long, env = "EMTA_LOG_SIGNING_KEY_FILE")]
    pub log_signing_key_file: Option<PathBuf>,

    /// JSON file: `[{"id","name","name_fa","url","api_key","callback_key"}]`, the
    /// participating banks a license may name for its down payment's hold.
    #[arg(long, env = "EMTA_BANKS_FILE")]
    pub banks_file: Option<PathBuf>,

    /// The banks themselves (from `banks_file`, or given by a local deployment).
    #[arg(skip)]
    pub banks: Vec<BankConfig>,

    /// How long a bank may take to answer (ms). A call that times out is retried later
    /// under the same idempotency key.
    #[arg(long, env = "EMTA_BANK_TIMEOUT_MS", default_value_t = 5000)]
    pub bank_timeout_ms: u64,

    /// The SMS gateway (`POST {url}/messages`) for citizens' notifications: their turn,
    /// their win or promotion, their time lapsing, their hold captured or released. Unset:
    /// nothing is sent (counted only).
    #[arg(long, env = "EMTA_SMS_URL")]
    pub sms_url: Option<String>,

    /// Notifications per second across the whole deployment (every replica); past it they
    /// wait their turn.
    #[arg(long, env = "EMTA_SMS_RPS", default_value_t = 100)]
    pub sms_rps: i64,

    /// The ministry's credit ceilings per star rating (issue 34), `stars:rials,…` (say
    /// `1:0,2:20000000000000,3:50000000000000,4:100000000000000,5:200000000000000`): what a
    /// manufacturer may have outstanding in presales (units licensed and not delivered,
    /// times their down payment). A rating the list does not name may presell nothing.
    /// Unset: no ceiling (the overdue rule still holds: one new unit per unit delivered).
    #[arg(long, env = "EMTA_CREDIT_CEILINGS", value_parser = crate::domain::after_sale::Ceilings::parse)]
    pub credit_ceilings: Option<crate::domain::after_sale::Ceilings>,

    /// Where complaints' attachments are kept, each under its SHA-256 (issue 34): a
    /// directory every replica shares (a volume in Kubernetes). Relative to the working
    /// directory.
    #[arg(long, env = "EMTA_FILES_DIR", default_value = "emta-files")]
    pub files_dir: std::path::PathBuf,

    /// Days a manufacturer has to answer a complaint (issue 34).
    #[arg(long, env = "EMTA_COMPLAINT_ANSWER_DAYS", default_value_t = crate::domain::redress::ANSWER_DAYS)]
    pub complaint_answer_days: i64,

    /// How often (seconds) each replica counts every manufacturer's after-sale record and
    /// carries its consequence (stars withheld) and any decision not yet carried out to the
    /// IdP (issue 34). 0: never in the background (a decision is still carried out when it
    /// is approved).
    #[arg(long, env = "EMTA_RECORD_EVERY_SECS", default_value_t = 60)]
    pub record_every_secs: u64,

    /// The traffic police's driving-licence registry (`POST {url}/licences/verify`), for
    /// licenses that require a valid driving licence. Unset: such licenses answer "try
    /// again" (503), never a pass.
    #[arg(long, env = "EMTA_TRAFFIC_POLICE_URL")]
    pub traffic_police_url: Option<String>,

    /// The vehicle registry (`POST {url}/vehicles/query`), for licenses that exclude a
    /// recent vehicle or an active plate.
    #[arg(long, env = "EMTA_VEHICLE_REGISTRY_URL")]
    pub vehicle_registry_url: Option<String>,

    /// How long a registry may take to answer (ms).
    #[arg(long, env = "EMTA_REGISTRY_TIMEOUT_MS", default_value_t = 3000)]
    pub registry_timeout_ms: u64,

    /// Registry calls per second across the whole deployment (every replica, both
    /// registries): what the registries agreed to. Past it a citizen is told to try again.
    #[arg(long, env = "EMTA_REGISTRY_RPS", default_value_t = 200)]
    pub registry_rps: i64,

    /// How long a registry's answer about a national ID is kept (seconds).
    #[arg(long, env = "EMTA_REGISTRY_CACHE_SECS", default_value_t = 900)]
    pub registry_cache_secs: u64,

    /// The logs' public key (note format), on the replicas that do not sign.
    #[arg(long, env = "EMTA_LOG_VERIFIER_KEY")]
    pub log_verifier_key: Option<String>,
}

impl Settings {
    /// The documented defaults (and any variables of the environment, as clap reads
    /// them) for a service on `listen` at `base_url`, signing in through `issuer`: for
    /// embedding (local deployments, tests).
    pub fn new(listen: SocketAddr, base_url: &str, issuer: &str, secret_key: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        // `--flag=value`: a secret may start with '-', which would read as another flag.
        let secret = format!("--secret-key={secret_key}");
        let mut s = Wrapper::parse_from(["presale", secret.as_str()]).settings;
        s.listen = listen;
        s.base_url = base_url.to_owned();
        s.issuer = issuer.to_owned();
        s
    }

    /// Reads `storefronts_file` into `storefronts`, and `banks_file` into `banks`, when
    /// given.
    pub fn load_storefronts(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.storefronts_file {
            self.storefronts = serde_json::from_slice(&std::fs::read(path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        if let Some(path) = &self.banks_file {
            self.banks = serde_json::from_slice(&std::fs::read(path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_starts_with_a_dash_is_taken_as_the_secret() {
        let s = Settings::new(([127, 0, 0, 1], 0).into(), "http://x", "http://i", "-Ixyz");
        assert_eq!(s.secret_key.expose(), "-Ixyz");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut s = Settings::new(
            ([127, 0, 0, 1], 0).into(),
            "http://x",
            "http://i",
            "s3cr3t-key",
        );
        s.storefronts.push(StorefrontConfig {
            id: "saipa".into(),
            name: "Saipa".into(),
            name_fa: "سایپا".into(),
            client_secret: Secret::new("client-s3cr3t"),
            push_requests: false,
        });
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
