//! Logging for the binaries. Logs are structured (JSON in production) and never carry
//! OTPs, secrets, tokens or national IDs: each service logs masked values only.

/// `RUST_LOG` filter, JSON when `EMTA_LOG_JSON=1`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("EMTA_LOG_JSON").is_ok_and(|v| v == "1");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
