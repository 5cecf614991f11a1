//! Durable state in SQL: SQLite (embedded default) or PostgreSQL, one code path.
//!
//! Queries go through sqlx's `Any` driver with `$n` placeholders, which both engines
//! accept, and use only types both engines share (BIGINT as `i64`, TEXT). Each engine has
//! its own migration folder under `migrations/idp/`, so the schema can use each engine's
//! idioms where they differ (identity columns).

mod citizens;
mod clients;
mod grants;
mod keys;

pub use clients::Applied;
pub use grants::{ConsentRow, GrantAudit, GrantRow, LogoutDelivery, RefreshRow, PER_CLIENT_DUE};
pub use keys::KeyRow;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow, Row};

use crate::domain::client::{ClientAuth, ClientStatus, KeySource, KNOWN_SCOPES};
use crate::domain::{
    Citizen, Client, ClientId, JalaliDate, MobileNumber, NationalId, RedirectUri, Scopes,
    SigningAlg, SubjectType,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/idp/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/idp/postgres");

pub use service_kit::sql::StoreError;

/// Turns a unique-constraint violation into [`StoreError::Conflict`] instead of matching
/// on error strings.
fn on_constraint(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict
    } else {
        StoreError::Sql(e)
    }
}

pub use service_kit::sql::{connect_pool_waiting, is_postgres, is_unique_violation, migrate_any};

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    postgres: bool,
}

impl Db {
    /// For commands and batch work: waits up to sqlx's half minute for a connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_waiting(url, max_connections, std::time::Duration::from_secs(30)).await
    }

    /// For a serving replica: a request waits at most `acquire` for a connection, then
    /// fails (503 with Retry-After) instead of joining an unbounded queue.
    pub async fn connect_waiting(
        url: &str,
        max_connections: u32,
        acquire: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let pool = connect_pool_waiting(url, max_connections, acquire).await?;
        Ok(Self {
            pool,
            postgres: is_postgres(url),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate_any(
            &self.pool,
            self.postgres,
            &SQLITE_MIGRATIONS,
            &POSTGRES_MIGRATIONS,
        )
        .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The pool (tests hold its connections to make a replica busy).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether every pooled connection is open and in use ([`service_kit::ready`]).
    pub fn saturated(&self) -> bool {
        service_kit::ready::sql_saturated(&self.pool)
    }

    /// A new connection to the database, outside the pool ([`service_kit::ready`]).
    pub async fn ping_direct(&self) -> Result<(), StoreError> {
        Ok(service_kit::ready::sql_direct(&self.pool).await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- audit ---------------------------------------------------------------------------
    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        service_kit::sql::append_audit(&self.pool, at, actor, action, subject, detail).await
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as::<_, AuditRow>(
            "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::to_string(&items.collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

fn parse_json_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json list: {e}")))
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}
