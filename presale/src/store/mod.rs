//! Presale's durable state in SQL: SQLite (the embedded default) or PostgreSQL, one code
//! path through sqlx's `Any` driver, each engine with its own migrations under
//! `migrations/presale/`. Storage never renders HTML and knows nothing of HTTP.
//!
//! - [`applications`]: accepting an application in one transaction (cap, one per person).
//! - [`licenses`]: issuing, suspending and reading licenses.
//! - [`lottery`]: entries, the draw and its public list.
//! - [`queue`]: the fair queue's durable record: tickets, admissions, the queue's clock.
//! - [`staff`]: the ministry's staff (argon2 + TOTP), disabling, session revocation.
//! - [`audit`]: the hash-chained audit log, anchored in the campaigns' transparency logs.
//! - [`proposals`]: four-eyes: campaign changes wait for a second issuer's approval.
//! - [`log`]: the campaigns' transparency logs: pending events, the sequencer, proofs.
//! - [`seeds`]: commit-then-reveal seeds: parties, the frozen list, reveals.

pub mod after_sale;
pub mod applications;
pub mod audit;
pub mod commitments;
pub mod figures;
pub mod holds;
pub mod licenses;
pub mod log;
pub mod lottery;
pub mod observers;
pub mod proposals;
pub mod queue;
pub mod redress;
pub mod seeds;
pub mod staff;

use sqlx::{AnyPool, Row};

use service_kit::sql::{connect_pool_waiting, is_postgres, migrate_any};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/postgres");

pub use service_kit::sql::StoreError;

/// Tables the service may only read and append to.
const APPEND_ONLY: &str =
    "audit_log, log_records, log_hashes, log_heads, log_cosignatures, seed_commitments";

/// Rows per multi-row statement (well under both engines' bind limits).
pub(crate) const CHUNK: usize = 400;

/// `($2, $3, …), (…)` for `rows` rows of `cols` values, numbered from `$first`.
/// Ends a transaction by what was done in it: committed when it went through, rolled back
/// at once when it was refused or failed. (A transaction merely dropped is rolled back
/// only when its pooled connection is next used: until then SQLite's one writer lock, or
/// PostgreSQL's row locks, stay held.)
pub(crate) async fn finish<T, E>(
    tx: sqlx::Transaction<'static, sqlx::Any>,
    done: Result<Result<T, E>, StoreError>,
) -> Result<Result<T, E>, StoreError> {
    match done {
        Ok(Ok(v)) => {
            tx.commit().await?;
            Ok(Ok(v))
        }
        Ok(Err(e)) => {
            tx.rollback().await?;
            Ok(Err(e))
        }
        Err(e) => {
            tx.rollback().await.ok();
            Err(e)
        }
    }
}

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
        Self::connect_waiting(url, max_connections, std::time::Duration::from_secs(30)).await
    }

    /// As [`Store::connect`], waiting at most `acquire` for a connection (a serving
    /// replica: a database that is down fails requests in seconds).
    pub async fn connect_waiting(
        url: &str,
        max_connections: u32,
        acquire: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            pool: connect_pool_waiting(url, max_connections, acquire).await?,
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

    /// Runs the migrations up to `version` only: upgrade tests start from an older schema
    /// with data in it.
    #[doc(hidden)]
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        let all = if self.postgres { &POSTGRES } else { &SQLITE };
        let older = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                all.migrations
                    .iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        older.run(&self.pool).await?;
        Ok(())
    }

    /// Refuses to serve on a schema older than this build's (for a service that runs with
    /// a role that may not migrate: `presale migrate` runs them with the owner's).
    pub async fn check_migrated(&self) -> Result<(), StoreError> {
        let migrator = if self.postgres { &POSTGRES } else { &SQLITE };
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        let missing: Vec<String> = migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "the database is not migrated (missing {}): run `presale migrate` with the owner's credentials",
                missing.join(", ")
            )))
        }
    }

    /// Lets `role` (PostgreSQL) do what the service does and no more: read and write the
    /// working tables, only read and append the audit log and the transparency logs. The
    /// role owns nothing, so it cannot drop or disable their triggers either.
    pub async fn grant_service_role(&self, role: &str) -> Result<(), StoreError> {
        if !self.postgres {
            return Err(StoreError::Corrupt(
                "database roles exist on PostgreSQL only (SQLite is a file: protect the file)"
                    .into(),
            ));
        }
        let ok = !role.is_empty()
            && role.len() <= 63
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(StoreError::Corrupt(
                "role: lowercase letters, digits and underscores".into(),
            ));
        }
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        for sql in [
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"),
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
            ),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
            format!("REVOKE UPDATE, DELETE, TRUNCATE ON {APPEND_ONLY} FROM {role}",),
            format!("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM {role}"),
            format!("REVOKE DELETE, TRUNCATE ON audit_head FROM {role}"),
            // The service removes nothing but the records it has just appended to a tree, and
            // edits no ticket, entry, rank, claim, application or waiting record (see
            // migration 0017, whose guards bind what it may still update).
            format!("REVOKE DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM {role}"),
            format!("GRANT DELETE ON log_pending TO {role}"),
            // Nothing of its own in the schema the guards name their tables in (the
            // default since PostgreSQL 15, said again for older servers).
            format!("REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}"),
            format!(
                "REVOKE UPDATE ON log_pending, applications, round_claims, lottery_ranks, \
                 lottery_entries, queue_tickets, lottery_lapses, delivery_stages, \
                 compensation_rates, complaint_files, case_findings, inspection_cases FROM {role}"
            ),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        // No temporary tables: one named like a table the guards read would be read in
        // its place by a function without a fixed search path.
        let db: String = sqlx::query("SELECT current_database()::text AS db")
            .fetch_one(&mut *tx)
            .await?
            .try_get("db")?;
        let db = db.replace('"', "\"\"");
        sqlx::query(&format!(
            "REVOKE TEMPORARY ON DATABASE \"{db}\" FROM PUBLIC, {role}"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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

    /// Whether every pooled connection is open and in use ([`service_kit::ready`]).
    pub fn saturated(&self) -> bool {
        service_kit::ready::sql_saturated(&self.pool)
    }

    /// A new connection to the database, outside the pool ([`service_kit::ready`]).
    pub async fn ping_direct(&self) -> Result<(), StoreError> {
        Ok(service_kit::ready::sql_direct(&self.pool).await?)
    }
}
