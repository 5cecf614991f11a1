//! One Redis handle for every emta service: a single server (a primary with replicas behind
//! one address) or a Redis Cluster. Callers see one connection type that runs commands and
//! Lua scripts on either; every key emta writes carries a hash tag, so each command and
//! each script touches one Cluster slot, and many campaigns and subjects spread over the
//! shards.
//!
//! `REDIS_URL` selects: `redis://host:6379` is a single server; several comma-separated
//! seed nodes (`redis://a:6379,redis://b:6379`) or the `redis+cluster://` scheme
//! (`redis+cluster://a:6379,b:6379`) is a Cluster.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Connections per replica: every request of a surge touches Redis at least once; the
/// default pool (4 per core) queues requests behind each other long before Redis is busy.
const POOL_SIZE: usize = 64;

#[derive(Clone)]
pub enum RedisPool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

pub enum RedisConn {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
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
                let mut cfg = deadpool_redis::Config::from_url(url);
                cfg.pool = Some(pool);
                cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map(Self::Single)
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    pub async fn get(&self) -> Result<RedisConn, deadpool_redis::PoolError> {
        Ok(match self {
            Self::Single(p) => RedisConn::Single(p.get().await?),
            Self::Cluster(p) => RedisConn::Cluster(p.get().await?),
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
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
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
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
