//! One Redis handle for every emta service: a single server (a primary with replicas behind
//! one address) or a Redis Cluster. Callers see one connection type that runs commands and
//! Lua scripts on either; every key emta writes carries a hash tag, so each command and
//! each script touches one Cluster slot, and many campaigns and subjects spread over the
//! shards.
//!
//! `REDIS_URL` selects: `redis://host:6379` is a single server; several comma-separated
//! seed nodes (`redis://a:6379,redis://b:6379`) or the `redis+cluster://` scheme
//! (`redis+cluster://a:6379,b:6379`) is a Cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

/// Connections per replica: every request of a surge touches Redis at least once; the
/// default pool (4 per core) queues requests behind each other long before Redis is busy.
const POOL_SIZE: usize = 64;

/// A connection used this recently is handed out without a PING: see [`Manager`].
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Bumped whenever a request finds a connection broken, in any pool of this process: a
/// server that went away broke every connection to it, so each is checked (PINGed) at its
/// next checkout, and the request that found out is the only one that fails.
static BROKEN_SEEN: AtomicU64 = AtomicU64::new(0);

#[derive(Clone)]
pub enum RedisPool {
    Single(managed::Pool<Manager>),
    Cluster(deadpool_redis::cluster::Pool),
}

pub enum RedisConn {
    Single(managed::Object<Manager>),
    Cluster(deadpool_redis::cluster::Connection),
}

/// deadpool-redis's manager, except in how it recycles. deadpool-redis sends UNWATCH and
/// PING on every checkout, one round trip more for every request: half of what a citizen
/// cost Redis in `load sweep` (100 of 197 commands). Here a connection is checked only
/// when it has been idle for [`CHECK_AFTER_IDLE`] or when some request of this process has
/// found a connection broken since it was last checked ([`BROKEN_SEEN`]); one in steady
/// use is handed out as it is. One whose request failed as a connection (I/O, a timeout, a
/// primary that became a replica) is marked broken by [`RedisConn`] and dropped at its
/// return. So after Redis dies and comes back, the first request to find out fails (503
/// with Retry-After, as any request in flight at the crash) and the others are served by
/// connections checked or made afresh. emta never uses WATCH: nothing to UNWATCH.
pub struct Manager {
    inner: deadpool_redis::Manager,
}

/// A pooled connection, whether a request found it broken, and the [`BROKEN_SEEN`] it
/// was last known good at.
pub struct Pooled {
    conn: MultiplexedConnection,
    broken: bool,
    checked_at: u64,
}

impl managed::Manager for Manager {
    type Type = Pooled;
    type Error = RedisError;

    async fn create(&self) -> Result<Pooled, RedisError> {
        let checked_at = BROKEN_SEEN.load(Ordering::Acquire);
        let mut conn = self.inner.create().await?;
        // A connection is made seldom (at start, after a failover): each checks that the
        // server it reached runs what emta's commands need, so an old server is named in
        // the log and by readiness instead of failing every counter's command. (A single
        // server only: a Cluster's connections are made by deadpool-redis's own manager.)
        // (A server that refuses INFO to emta's user is not judged.)
        match redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut conn)
            .await
        {
            Ok(info) => supported(&info)
                .map_err(|why| RedisError::from((ErrorKind::Client, "unsupported Redis", why)))?,
            Err(e) if breaks_connection(&e) => return Err(e),
            Err(_) => {}
        }
        Ok(Pooled {
            conn,
            broken: false,
            checked_at,
        })
    }

    async fn recycle(&self, c: &mut Pooled, metrics: &Metrics) -> RecycleResult<RedisError> {
        if c.broken {
            return Err(RecycleError::message(
                "a request found the connection broken",
            ));
        }
        let seen = BROKEN_SEEN.load(Ordering::Acquire);
        if c.checked_at == seen && metrics.last_used() < CHECK_AFTER_IDLE {
            return Ok(());
        }
        self.inner.recycle(&mut c.conn, metrics).await?;
        c.checked_at = seen;
        Ok(())
    }
}

/// The oldest Redis emta runs on: its rate counters set their expiry with `PEXPIRE … NX`
/// (7.0), one round trip with the count.
pub const REDIS_AT_LEAST: (u32, u32) = (7, 0);

/// Whether a server's `INFO server` names a version at least [`REDIS_AT_LEAST`]; why not.
/// A server that does not say its version (a proxy's trimmed `INFO`) is not judged.
pub fn supported(info: &str) -> Result<(), String> {
    let Some(version) = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
    else {
        return Ok(());
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= REDIS_AT_LEAST {
        Ok(())
    } else {
        Err(format!(
            "Redis {version} is older than {}.{}, which emta needs (PEXPIRE … NX)",
            REDIS_AT_LEAST.0, REDIS_AT_LEAST.1
        ))
    }
}

/// Whether an error says the connection itself is no good (rather than the command).
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Client
                | ErrorKind::Server(ServerErrorKind::ReadOnly)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

/// The seed nodes of a Cluster URL, or `None` for a single server.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest, forced) = match url.strip_prefix("redis+cluster://") {
        Some(rest) => ("redis://", rest, true),
        None => match url.strip_prefix("rediss+cluster://") {
            Some(rest) => ("rediss://", rest, true),
            None => ("", url, false),
        },
    };
    let nodes: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains("://") {
                n.to_owned()
            } else {
                format!(
                    "{}{n}",
                    if scheme.is_empty() {
                        "redis://"
                    } else {
                        scheme
                    }
                )
            }
        })
        .collect();
    (forced || nodes.len() > 1).then_some(nodes)
}

impl RedisPool {
    pub fn new(url: &str) -> Result<Self, String> {
        let pool = deadpool_redis::PoolConfig::new(POOL_SIZE);
        match cluster_nodes(url) {
            Some(nodes) => {
                let mut cfg = deadpool_redis::cluster::Config::from_urls(nodes);
                cfg.pool = Some(pool);
                cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map(Self::Cluster)
                    .map_err(|e| e.to_string())
            }
            None => {
                let inner = deadpool_redis::Manager::new(url).map_err(|e| e.to_string())?;
                managed::Pool::builder(Manager { inner })
                    .config(pool)
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .build()
                    .map(Self::Single)
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Whether every connection of the pool is open and in use (a probe that waited for
    /// one was turned away by load, not by a fault).
    pub fn saturated(&self) -> bool {
        let s = match self {
            Self::Single(p) => p.status(),
            Self::Cluster(p) => p.status(),
        };
        s.size >= s.max_size && s.available == 0
    }

    pub async fn get(&self) -> Result<RedisConn, deadpool_redis::PoolError> {
        Ok(match self {
            Self::Single(p) => RedisConn::Single(p.get().await?),
            Self::Cluster(p) => RedisConn::Cluster(p.get().await?),
        })
    }
}

impl Pooled {
    /// Marks the connection broken when `r` says so.
    fn note<T>(&mut self, r: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &r {
            if breaks_connection(e) {
                self.broken = true;
                BROKEN_SEEN.fetch_add(1, Ordering::AcqRel);
            }
        }
        r
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => Box::pin(async move {
                let r = c.conn.req_packed_command(cmd).await;
                c.note(r)
            }),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => Box::pin(async move {
                let r = c.conn.req_packed_commands(cmd, offset, count).await;
                c.note(r)
            }),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.conn.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_single_or_cluster() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://a:7000,b:7001"),
            Some(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(
            cluster_nodes("redis://a:7000, redis://b:7001"),
            Some(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(
            cluster_nodes("redis+cluster://only:7000"),
            Some(vec!["redis://only:7000".into()])
        );
    }
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn a_server_older_than_redis_7_is_named_and_refused() {
        let new = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert!(super::supported(new).is_ok());
        assert!(super::supported("redis_version:7.2.4\r\n").is_ok());
        let old = super::supported("# Server\r\nredis_version:6.2.14\r\n").expect_err("6.2");
        assert!(old.contains("6.2.14") && old.contains("7.0"), "{old}");
        assert!(
            super::supported("# Server\r\n").is_ok(),
            "no version (a proxy's trimmed INFO): not judged"
        );
    }
}
