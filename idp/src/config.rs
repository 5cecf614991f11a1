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

    /// Where operators scrape `/metrics` (Prometheus text): a second listener that the
    /// ingress never routes. Unset: no metrics listener.
    #[arg(long, env = "EMTA_IDP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Public issuer URL; must be exactly what relying parties configure.
    #[arg(long, env = "EMTA_ISSUER", default_value = "http://localhost:8400")]
    pub issuer: String,

    #[command(flatten)]
    pub storage: StorageSettings,

    /// Server secret from which CSRF, OTP, PoW and client-secret hash keys are derived.
    /// Must be the same on every replica. Empty: a random one per start (dev only).
    #[arg(long, env = "EMTA_SECRET_KEY", default_value = "")]
    pub secret_key: Secret,

    /// Key-encryption key that seals the ID-token signing keys in SQL (give it from the
    /// KMS or secret store). Empty: one derived from EMTA_SECRET_KEY.
    #[arg(long, env = "EMTA_KEY_ENCRYPTION_KEY", default_value = "")]
    pub key_encryption_key: Secret,

    /// The key-encryption key being rotated out: it opens keys, never seals; keys are
    /// sealed again under the current one at start-up.
    #[arg(long, env = "EMTA_KEY_ENCRYPTION_KEY_PREVIOUS", default_value = "")]
    pub key_encryption_key_previous: Secret,

    /// Civil registry base URL (required).
    #[arg(long, env = "EMTA_REGISTRY_URL", default_value = "")]
    pub registry_url: String,

    /// Mobile-ownership service base URL (required).
    #[arg(long, env = "EMTA_OWNERSHIP_URL", default_value = "")]
    pub ownership_url: String,

    /// SMS gateway base URL (required).
    #[arg(long, env = "EMTA_SMS_URL", default_value = "")]
    pub sms_url: String,

    /// Presale's public URL, whose licensed campaigns the trust badge's page names
    /// (`GET {url}/transparency/campaigns.json`). Unset: the page says they could not be
    /// read.
    #[arg(long, env = "EMTA_PRESALE_URL")]
    pub presale_url: Option<String>,

    /// Timeout of one call to a government service or the SMS gateway, in milliseconds.
    #[arg(long, env = "EMTA_UPSTREAM_TIMEOUT_MS", default_value_t = 3000)]
    pub upstream_timeout_ms: u64,

    /// Dev mode: without EMTA_SECRET_KEY a random secret is used. Never in production.
    #[arg(long, env = "EMTA_DEV", default_value_t = false)]
    pub dev: bool,

    /// Proof-of-work difficulty in leading zero bits (each bit doubles a bot's cost).
    #[arg(long, env = "EMTA_POW_DIFFICULTY", default_value_t = 18)]
    pub pow_difficulty: u8,

    /// How many bits the proof of work may rise above `pow_difficulty` as the live-login
    /// cap fills (see `flow::pow`: its table tops out at 3); 0 keeps it fixed.
    #[arg(long, env = "EMTA_POW_MAX_RISE", default_value_t = 3)]
    pub pow_max_rise: u8,

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

    /// Absolute lifetime of a grant (s): refresh rotation extends it up to this, then the
    /// citizen signs in again.
    #[arg(long, env = "EMTA_GRANT_MAX_SECS", default_value_t = 30 * 24 * 3600)]
    pub grant_max_secs: i64,

    /// A confidential client that presents a refresh token again within this many seconds
    /// of its rotation (a retry after a timeout) gets the same new token pair, as long as
    /// it has not used the new refresh token; later, or after that, it is reuse. 0: none.
    #[arg(long, env = "EMTA_REFRESH_GRACE_SECS", default_value_t = 30)]
    pub refresh_grace_secs: i64,

    /// SMS sends per (phone, browser) per 10 minutes; browsers that never verified the
    /// phone get three times this per hour per (phone, address), and twelve times this
    /// per hour per phone across all addresses.
    #[arg(long, env = "EMTA_SMS_PER_PHONE", default_value_t = 3)]
    pub sms_per_phone: i64,

    /// SMS sends allowed per client IP per hour.
    #[arg(long, env = "EMTA_SMS_PER_IP", default_value_t = 20)]
    pub sms_per_ip: i64,

    /// Identity tries allowed per (phone, national ID) pair per hour. Per pair, not per
    /// national ID: a stranger's failures, made from another phone, never lock the owner.
    #[arg(long, env = "EMTA_FAILS_PER_NATIONAL_ID", default_value_t = 5)]
    pub fails_per_national_id: i64,

    /// Identity tries allowed per verified phone per hour, whatever national IDs they
    /// name: one phone cannot probe or flood the registries with many national IDs.
    #[arg(long, env = "EMTA_IDENTITY_TRIES_PER_PHONE", default_value_t = 10)]
    pub identity_tries_per_phone: i64,

    /// Identity tries allowed per client address (IPv6: per prefix) per hour. High: a
    /// carrier's NAT puts many citizens behind one address.
    #[arg(long, env = "EMTA_IDENTITY_TRIES_PER_IP", default_value_t = 600)]
    pub identity_tries_per_ip: i64,

    /// SMS codes tried per (phone, browser) per hour across that browser's logins (each
    /// login allows five). Per browser: a stranger's wrong codes never lock out the owner.
    #[arg(long, env = "EMTA_OTP_TRIES_PER_PHONE", default_value_t = 20)]
    pub otp_tries_per_phone: i64,

    /// Login transactions one client address (IPv6: per prefix) may open per minute.
    #[arg(long, env = "EMTA_LOGINS_PER_IP", default_value_t = 600)]
    pub logins_per_ip: i64,

    /// Login transactions one manufacturer's sign-ins (or the account page's) may open per
    /// second, all replicas together. A flood through one client from many addresses
    /// fills at most this share of the store; past it, 503 with Retry-After.
    #[arg(long, env = "EMTA_LOGINS_PER_CLIENT_RPS", default_value_t = 1000)]
    pub logins_per_client_rps: i64,

    /// Login transactions stored per `login_secs`, all clients and replicas together: the
    /// store holds at most about twice this many (a fixed window), each a few kilobytes
    /// at most; past it a new login is answered 503 with Retry-After before the store
    /// fills. Nothing is stored for a login before its phone step's proof of work.
    #[arg(long, env = "EMTA_MAX_LIVE_LOGINS", default_value_t = 100_000)]
    pub max_live_logins: i64,

    /// Pushed authorization requests (RFC 9126) one client may make per second, all
    /// replicas together. A push is stored for a minute, before any proof of work, and a
    /// storefront may push for every visitor: so pushes are a budget of their own, the
    /// client's alone, never the stored logins' (a login is counted when its phone step
    /// stores it, as any other). Past it, 503 with Retry-After to that client.
    #[arg(long, env = "EMTA_PUSHES_PER_CLIENT_RPS", default_value_t = 500)]
    pub pushes_per_client_rps: i64,

    /// Pushed requests stored at once, all clients and replicas together (each lives a
    /// minute, about a kilobyte): the backstop past the clients' own budgets.
    #[arg(long, env = "EMTA_MAX_LIVE_PUSHES", default_value_t = 100_000)]
    pub max_live_pushes: i64,

    /// Bits of an IPv6 address that name one subscriber for per-address limits.
    #[arg(long, env = "EMTA_IPV6_PREFIX", default_value_t = 64)]
    pub ipv6_prefix: u8,

    /// Registry checks per second, all replicas together: the government services'
    /// agreed capacity. Past it, citizens get 503 with Retry-After, not a slow registry.
    #[arg(long, env = "EMTA_REGISTRY_RPS", default_value_t = 400)]
    pub registry_rps: i64,

    /// SMS sends per second, all replicas together: the gateway contract's rate, and the
    /// cap on what SMS pumping can cost.
    #[arg(long, env = "EMTA_SMS_RPS", default_value_t = 200)]
    pub sms_rps: i64,

    /// Token-endpoint requests allowed per client per second, shared across replicas.
    #[arg(long, env = "EMTA_TOKEN_RPS_PER_CLIENT", default_value_t = 5000)]
    pub token_rps_per_client: i64,

    /// How often each replica reloads clients and signing keys from SQL (ms). This bounds
    /// how long a suspension takes to reach replicas other than the one that made it.
    #[arg(long, env = "EMTA_RELOAD_MS", default_value_t = 1000)]
    pub reload_ms: u64,

    /// Citizen-step and token requests served at once by this replica; past it, requests
    /// wait at most the queue budget and are then answered 503 with Retry-After. A new
    /// sign-in is refused once half of it is in use, the steps that finish a sign-in may
    /// use all of it, so overload refuses new work first and goodput stays near the
    /// knee. 0: no limit. By default 32 per core of this host (64 to 1024): a budget
    /// sized to the cores, since one larger than the replica can serve lets overload in
    /// to wait and refuses late (`load/BENCHMARKS.md`, "Overload").
    #[arg(long, env = "EMTA_MAX_INFLIGHT", default_value_t = per_core_inflight())]
    pub max_inflight: usize,

    /// How long a request may wait for room under `EMTA_MAX_INFLIGHT` (ms).
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

    /// How long a request may wait for a SQL connection (ms) before it is answered 503.
    #[arg(long, env = "EMTA_DB_ACQUIRE_MS", default_value_t = 2000)]
    pub db_acquire_ms: u64,

    /// Trust the first X-Forwarded-For hop for client IPs (behind the ingress only).
    #[arg(long, env = "EMTA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Carrier-NAT ranges (CIDRs, comma-separated): thousands of citizens share one of
    /// their addresses, so per-address budgets there are `carrier_nat_factor` times larger.
    #[arg(long, env = "EMTA_CARRIER_NAT_RANGES", value_delimiter = ',')]
    pub carrier_nat_ranges: Vec<String>,

    /// Let the IdP call manufacturers' endpoints (`jwks_uri`, back-channel logout) at
    /// private and loopback addresses: a local deployment and tests only. Otherwise only
    /// public addresses are called (no server-side request forgery into the network).
    #[arg(long, env = "EMTA_ALLOW_PRIVATE_CALLBACKS", default_value_t = false)]
    pub allow_private_callbacks: bool,

    /// How many times the per-address budgets a carrier-NAT address gets.
    #[arg(long, env = "EMTA_CARRIER_NAT_FACTOR", default_value_t = 50)]
    pub carrier_nat_factor: i64,

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

/// The default admission budget: 32 requests per core of this host, 64 to 1024.
pub fn per_core_inflight() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (32 * cores).clamp(64, 1024)
}
