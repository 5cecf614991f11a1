//! Presale's durable state in SQL: SQLite (the embedded default) or PostgreSQL, one code
//! path through sqlx's `Any` driver, each engine with its own migrations under
//! `migrations/presale/`. Storage never renders HTML and knows nothing of HTTP.
//!
//! - [`applications`]: accepting an application in one transaction (cap, one per person).
//! - [`licenses`]: issuing, suspending and reading licenses.
//! - [`lottery`]: entries, the draw and its public list.
//! - [`queue`]: the fair queue's durable record: tickets, admissions, the queue's clock.
//! - [`staff`]: the ministry's staff (argon2 + TOTP) and the audit log.
//! - [`log`]: the campaigns' transparency logs: pending events, the sequencer, proofs.
//! - [`seeds`]: commit-then-reveal seeds: parties, the frozen list, reveals.

pub mod applications;
pub mod licenses;
pub mod log;
pub mod lottery;
pub mod queue;
pub mod seeds;
pub mod staff;

use sqlx::AnyPool;

use service_kit::sql::{connect_pool, is_postgres, migrate_any};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/postgres");

pub use service_kit::sql::StoreError;

/// Rows per multi-row statement (well under both engines' bind limits).
pub(crate) const CHUNK: usize = 400;

/// `($2, $3, …), (…)` for `rows` rows of `cols` values, numbered from `$first`.
pub(crate) fn values(rows: usize, cols: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..cols)
                .map(|c| format!("${}", first + r * cols + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where tracking codes come from.
pub type CodeSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    tracking_codes: CodeSource,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Ok(Self {
            pool: connect_pool(url, max_connections).await?,
            postgres: is_postgres(url),
            tracking_codes: std::sync::Arc::new(crate::domain::application::tracking_code),
        })
    }

    /// The same store drawing tracking codes from `source` (tests force collisions).
    pub fn with_tracking_codes(mut self, source: CodeSource) -> Self {
        self.tracking_codes = source;
        self
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate_any(&self.pool, self.postgres, &SQLITE, &POSTGRES).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
