//! SQL helpers both services' stores use: one `Any` pool over SQLite (the embedded
//! default) or PostgreSQL (production), per-engine migrations, constraint detection.

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

/// What a SQL store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a row with this key exists already")]
    Conflict,
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// One entry of a service's audit log (each service has its own `audit_log` table, made
/// append-only by its migrations), through a pool or in the caller's transaction.
pub async fn append_audit<'c, E>(
    pool: E,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres")
}

/// `pool.begin()`, safe to cancel. sqlx 0.8 on PostgreSQL leaves a connection inside its
/// transaction when the future is dropped between sending BEGIN and reading the answer
/// (transact-rs/sqlx#4393): the pool then hands it to the next borrower, whose writes run
/// in that transaction and are lost when the connection closes. Here BEGIN runs in a task
/// of its own: if the caller is cancelled (a client hung up, a timeout, a shed request),
/// the task still finishes and drops the transaction it got, which rolls it back.
/// Every transaction of both services starts here.
pub async fn begin(pool: &AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
}

/// Opens an `Any` pool on SQLite or PostgreSQL. SQLite gets WAL, so readers proceed
/// during a write, and a busy timeout, so a busy writer waits instead of failing.
pub async fn connect_pool(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    connect_pool_waiting(url, max_connections, std::time::Duration::from_secs(30)).await
}

/// [`connect_pool`], waiting at most `acquire` for a connection. A serving replica uses a
/// few seconds, so a database that is down fails requests quickly (503 with Retry-After)
/// rather than after sqlx's default half minute of reconnecting; batch work and tests keep
/// the default.
pub async fn connect_pool_waiting(
    url: &str,
    max_connections: u32,
    acquire: std::time::Duration,
) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    // sqlx pings a connection when it is returned (which finds one a request broke) and,
    // by default, again when it is taken: two round trips for every checkout. The second
    // is kept only for a connection idle for a second or more (the server may have closed
    // it meanwhile); one in steady use was checked at its return a moment ago.
    let mut options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= std::time::Duration::from_secs(1) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    if is_postgres(url) {
        // Statements are prepared once per text; a generic plan made while a table was
        // small (an IN list over an empty queue) would scan it whole forever after. Plan
        // every execution with its values: the statements are short, planning is cheap.
        options = options.after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET plan_cache_mode = force_custom_plan")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        });
    } else {
        options = options.after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA busy_timeout = 5000",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA foreign_keys = ON",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        });
    }
    options.connect(url).await
}

/// Runs the migrations of the pool's engine.
pub async fn migrate_any(
    pool: &AnyPool,
    postgres: bool,
    sqlite_migrations: &sqlx::migrate::Migrator,
    postgres_migrations: &sqlx::migrate::Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    if postgres {
        postgres_migrations.run(pool).await
    } else {
        sqlite_migrations.run(pool).await
    }
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
