//! Typed configuration for the IdP, read from flags and environment variables.
//!
//! Every field has a documented default that makes `idp serve` work on a laptop with no
//! servers: a SQLite file and the in-process ephemeral store; the government services and
//! the SMS gateway are always HTTP URLs (stubs of them for local runs: `testkit::stubs`).
//! Kubernetes sets the same fields through `EMTA_*` environment variables.

use std::net::SocketAddr;

use clap::Args;

pub use service_kit::secret::Secret;

/// Where durable state lives. `sqlite://…` (default) or `postgres://…`.
#[derive(Args, Debug, Clone)]
pub struct StorageSettings {
    /// SQL database: a SQLite file by default, `postgres://…` in production.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://emta-idp.db?mode=rwc"
    )]
    pub database_url: Secret,

    /// Maximum SQL connections per replica.
    #[arg(long, env = "EMTA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Ephemeral store: empty for the in-process store (single node only), or `redis://…`.
    #[arg(long, env = "REDIS_URL", default_value = "")]
    pub redis_url: Secret,

    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    #[arg(long, env = "EMTA_REDIS_PREFIX", default_value = "emta")]
    pub redis_prefix: String,
}

/// Settings of the `serve` command.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// Address to listen on. Port 0 picks a free port (tests).
    #[arg(long, env = "EMTA_IDP_LISTEN", default_value = "127.0.0.1:8400")]
    pub listen: SocketAddr,

    /// Public issuer URL; must be exactly what relying parties configure.
    #[arg(long, env = "EMTA_ISSUER", default_value = "http://localhost:8400")]
    pub issuer: String,

    #[command(flatten)]
    pub storage: StorageSettings,

    /// Server secret from which CSRF, OTP, PoW and client-secret hash keys are derived.
    /// Must be the same on every replica. Empty: a random one per start (dev only).
    #[arg(long, env = "EMTA_SECRET_KEY", default_value = "")]
    pub secret_key: Secret,

    /// Civil registry base URL (required).
    #[arg(long, env = "EMTA_REGISTRY_URL", default_value = "")]
    pub registry_url: String,

    /// Mobile-ownership service base URL (required).
    #[arg(long, env = "EMTA_OWNERSHIP_URL", default_value = "")]
    pub ownership_url: String,

    /// SMS gateway base URL (required).
    #[arg(long, env = "EMTA_SMS_URL", default_value = "")]
    pub sms_url: String,

    /// Timeout of one call to a government service or the SMS gateway, in milliseconds.
    #[arg(long, env = "EMTA_UPSTREAM_TIMEOUT_MS", default_value_t = 3000)]
    pub upstream_timeout_ms: u64,

    /// Dev mode: without EMTA_SECRET_KEY a random secret is used. Never in production.
    #[arg(long, env = "EMTA_DEV", default_value_t = false)]
    pub dev: bool,

    /// Proof-of-work difficulty in leading zero bits (each bit doubles a bot's cost).
    #[arg(long, env = "EMTA_POW_DIFFICULTY", default_value_t = 18)]
    pub pow_difficulty: u8,

    /// How long a verified identity is trusted before the registries are asked again (s).
    #[arg(long, env = "EMTA_IDENTITY_CACHE_SECS", default_value_t = 30 * 24 * 3600)]
    pub identity_cache_secs: i64,

    /// How long a citizen has to finish the login steps (s).
    #[arg(long, env = "EMTA_LOGIN_SECS", default_value_t = 15 * 60)]
    pub login_secs: i64,

    /// How long an SMS code stays valid (s).
    #[arg(long, env = "EMTA_OTP_SECS", default_value_t = 120)]
    pub otp_secs: i64,

    /// Minimum gap between two SMS codes to one phone (s), across logins and replicas.
    #[arg(long, env = "EMTA_RESEND_SECS", default_value_t = 60)]
    pub resend_secs: i64,

    /// SSO session lifetime (s).
    #[arg(long, env = "EMTA_SESSION_SECS", default_value_t = 8 * 3600)]
    pub session_secs: i64,

    /// Access token lifetime (s).
    #[arg(long, env = "EMTA_ACCESS_TOKEN_SECS", default_value_t = 600)]
    pub access_token_secs: i64,

    /// ID token lifetime (s).
    #[arg(long, env = "EMTA_ID_TOKEN_SECS", default_value_t = 600)]
    pub id_token_secs: i64,

    /// Refresh token lifetime (s).
    #[arg(long, env = "EMTA_REFRESH_TOKEN_SECS", default_value_t = 7 * 24 * 3600)]
    pub refresh_token_secs: i64,

    /// SMS sends allowed per phone number per 10 minutes.
    #[arg(long, env = "EMTA_SMS_PER_PHONE", default_value_t = 3)]
    pub sms_per_phone: i64,

    /// SMS sends allowed per client IP per hour.
    #[arg(long, env = "EMTA_SMS_PER_IP", default_value_t = 20)]
    pub sms_per_ip: i64,

    /// Failed identity checks allowed per national ID per hour.
    #[arg(long, env = "EMTA_FAILS_PER_NATIONAL_ID", default_value_t = 5)]
    pub fails_per_national_id: i64,

    /// Token-endpoint requests allowed per client per second, shared across replicas.
    #[arg(long, env = "EMTA_TOKEN_RPS_PER_CLIENT", default_value_t = 5000)]
    pub token_rps_per_client: i64,

    /// How often each replica reloads clients and signing keys from SQL (ms). This bounds
    /// how long a suspension takes to reach replicas other than the one that made it.
    #[arg(long, env = "EMTA_RELOAD_MS", default_value_t = 1000)]
    pub reload_ms: u64,

    /// Trust the first X-Forwarded-For hop for client IPs (behind the ingress only).
    #[arg(long, env = "EMTA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// On SIGTERM, seconds to keep serving with readiness false (while the load balancer
    /// stops sending new requests) before closing the listener and finishing in flight.
    #[arg(long, env = "EMTA_DRAIN_SECS", default_value_t = 0)]
    pub drain_secs: u64,
}

impl Settings {
    /// Cookies get `Secure` and the `__Host-` prefix when the issuer is https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// The documented defaults (and any `EMTA_*` variables set), listening on a free port:
    /// for embedding the provider (local deployments, tests).
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        let mut s = Wrapper::parse_from(["idp"]).settings;
        s.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s
    }
}
