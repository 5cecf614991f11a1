//! Ephemeral state with a time to live: login transactions, OTP attempt counters, SSO
//! sessions, single-use authorization codes, access tokens and shared rate counters.
//!
//! Redis in production, so that every replica sees the same state and any replica can
//! serve any step; an in-process map for the single-node default. Every key gets its own
//! hash tag (`{…}`) so that Redis Cluster can place it anywhere and each operation,
//! including the Lua scripts, touches one slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis::RedisPool;

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis setup: {0}")]
    Setup(String),
    /// The in-process store holds its maximum number of live entries.
    #[error("the in-process store is full")]
    Full,
}

#[derive(Clone)]
pub enum Ephemeral {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

/// What a counter's hit most often finds, so that it costs Redis the fewest commands.
/// A counter many requests share (an address, which a carrier's NAT gives thousands of
/// citizens; a deployment's budget) mostly exists already: [`Self::Shared`] counts with
/// INCR and sets the window's expiry only at its first hit, one command a hit once it
/// exists. A subject's own counter (a phone, a national ID, a login's step) is mostly hit
/// once, when it is new: [`Self::Own`] creates it with `SET … NX PX`, the count and its
/// window in one command, and counts with INCR only when it exists (then one command more
/// than [`Self::Shared`]). The counting is the same either way; only its cost differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counter {
    #[default]
    Shared,
    Own,
}

/// A fixed-window counter reading: the count after this hit, and when the window resets.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub count: i64,
    pub reset_in: Duration,
}

impl Ephemeral {
    /// The in-process store with room for [`MEMORY_MAX_ENTRIES`] live entries.
    pub fn memory() -> Self {
        Self::memory_bounded(MEMORY_MAX_ENTRIES)
    }

    /// The in-process store with room for `max_entries` live entries and
    /// [`MEMORY_MAX_BYTES`] of keys and values: past either, new writes are refused with
    /// [`EphemeralError::Full`] (a flood costs a bounded amount of memory and answers 503;
    /// what is stored is never evicted early).
    pub fn memory_bounded(max_entries: usize) -> Self {
        Self::memory_within(max_entries, MEMORY_MAX_BYTES)
    }

    /// As [`Self::memory_bounded`], with room for `max_bytes` of keys and values: bytes
    /// as well as entries, so that large values cannot fill memory under the entry cap.
    pub fn memory_within(max_entries: usize, max_bytes: usize) -> Self {
        Self::Memory(Arc::new(MemoryStore::with_capacity(max_entries, max_bytes)))
    }

    /// Live entries of the in-process store (None for Redis: ask Redis).
    pub fn entries(&self) -> Option<usize> {
        match self {
            Self::Memory(m) => Some(m.len()),
            Self::Redis(_) => None,
        }
    }

    pub fn redis(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        Ok(Self::Redis(RedisStore {
            pool: redis_pool(url)?,
            prefix: prefix.to_owned(),
            url: url.to_owned(),
        }))
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Whether [`Self::get_many`] reads its keys in one command (a single Redis server,
    /// or in process): on a Cluster each key is a GET of its own, so a key read ahead
    /// "in case" costs a command there.
    pub fn reads_many_at_once(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(r) => !r.pool.is_cluster(),
        }
    }

    /// Stores `value` under `key` for `ttl`, replacing what was there.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => m.put(key, value, ttl),
            Self::Redis(r) => r.set(key, value, ttl, None).await.map(|_| ()),
        }
    }

    /// Stores only if absent; true if this call stored it (single-use markers, locks).
    pub async fn put_new(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        match self {
            Self::Memory(m) => m.put_new(key, value, ttl),
            Self::Redis(r) => r.set(key, value, ttl, Some("NX")).await,
        }
    }

    /// Stores only if present and live; true if this call replaced it (a state machine's
    /// next state, which must not bring back an entry that was deleted meanwhile).
    pub async fn replace(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        match self {
            Self::Memory(m) => m.replace(key, value, ttl),
            Self::Redis(r) => r.set(key, value, ttl, Some("XX")).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.get(key)),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                Ok(redis::cmd("GET")
                    .arg(r.key(key))
                    .query_async(&mut c)
                    .await?)
            }
        }
    }

    /// Reads and deletes in one step: of two concurrent callers, only one gets the value.
    pub async fn take(&self, key: &str) -> Result<Option<String>, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.take(key)),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                Ok(redis::cmd("GETDEL")
                    .arg(r.key(key))
                    .query_async(&mut c)
                    .await?)
            }
        }
    }

    /// The values of `keys`, in order: one MGET on a single server; on a Cluster, whose
    /// keys each have a slot of their own, one GET a key.
    pub async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>, EphemeralError> {
        match self {
            Self::Redis(r) if !r.pool.is_cluster() && keys.len() > 1 => {
                let mut c = r.pool.get().await?;
                let mut cmd = redis::cmd("MGET");
                for key in keys {
                    cmd.arg(r.key(key));
                }
                let values: Vec<Option<String>> = cmd.query_async(&mut c).await?;
                if values.len() != keys.len() {
                    return Err(EphemeralError::Setup("an MGET's answers miscounted".into()));
                }
                Ok(values)
            }
            _ => {
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    out.push(self.get(key).await?);
                }
                Ok(out)
            }
        }
    }

    /// Deletes `keys`: one DEL on a single server, one a key on a Cluster.
    pub async fn delete_many(&self, keys: &[&str]) -> Result<(), EphemeralError> {
        match self {
            Self::Redis(r) if !r.pool.is_cluster() && keys.len() > 1 => {
                let mut c = r.pool.get().await?;
                let mut cmd = redis::cmd("DEL");
                for key in keys {
                    cmd.arg(r.key(key));
                }
                cmd.query_async::<()>(&mut c).await?;
                Ok(())
            }
            _ => {
                for key in keys {
                    self.delete(key).await?;
                }
                Ok(())
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => {
                m.take(key);
                Ok(())
            }
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                redis::cmd("DEL")
                    .arg(r.key(key))
                    .query_async::<()>(&mut c)
                    .await?;
                Ok(())
            }
        }
    }

    /// Counts a hit in a fixed window of length `window` that starts at the first hit.
    /// Only the count is read: [`Hit::reset_in`] is the window's length, an upper bound
    /// (see [`Self::hit_over`] for the time left on a refusal).
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit, EphemeralError> {
        self.hit_over(key, window, i64::MAX).await
    }

    /// Counts a hit as [`Self::hit`] does; once the count is over `max` (a refusal), also
    /// reads how long the window has left and, should the counter have lost its expiry,
    /// gives it its window again, so that no subject is refused for longer than one
    /// window. A hit costs Redis one round trip of two commands (INCR, PEXPIRE NX; Redis
    /// 7); the time left is read, a second round trip, only when it is answered.
    pub async fn hit_over(
        &self,
        key: &str,
        window: Duration,
        max: i64,
    ) -> Result<Hit, EphemeralError> {
        self.hit_counter(key, window, max, Counter::Shared).await
    }

    /// Counts a hit as [`Self::hit_over`] does, at the cost `counter` expects
    /// ([`Counter`]). [`Counter::Own`] on Redis: a new counter is one round trip of one
    /// command (`SET … NX PX … GET`, which says whether it existed); one that exists
    /// costs a second round trip, [`Self::hit_over`]'s.
    pub async fn hit_counter(
        &self,
        key: &str,
        window: Duration,
        max: i64,
        counter: Counter,
    ) -> Result<Hit, EphemeralError> {
        match self {
            Self::Memory(m) => m.hit(key, window),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                let k = r.key(key);
                if counter == Counter::Own {
                    let existed: Option<String> = redis::cmd("SET")
                        .arg(&k)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms(window))
                        .arg("GET")
                        .query_async(&mut c)
                        .await?;
                    if existed.is_none() {
                        // Created, with its whole window ahead.
                        return Ok(Hit {
                            count: 1,
                            reset_in: window,
                        });
                    }
                }
                // One round trip, two commands: the count, and the window's expiry set
                // only where the counter has none (the first hit's, or one a counter
                // lost: every hit gives it back, so no subject is refused for longer
                // than a window). A round trip, not a command, is what a hit costs the
                // machine; INCR alone with the expiry in a second round trip at a first
                // hit would save a command on a counter that exists and cost a round trip
                // on a new one.
                let (count, _): (i64, i64) = redis::pipe()
                    .cmd("INCR")
                    .arg(&k)
                    .cmd("PEXPIRE")
                    .arg(&k)
                    .arg(ttl_ms(window))
                    .arg("NX")
                    .query_async(&mut c)
                    .await?;
                let mut reset_in = window;
                if count > max {
                    let pttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut c).await?;
                    if pttl > 0 {
                        reset_in = Duration::from_millis(pttl as u64);
                    }
                }
                Ok(Hit { count, reset_in })
            }
        }
    }

    /// Counts hits on `hits` (key, window, max) in order, as [`Self::hit_over`] one after
    /// another would, and stops at the first whose count is then over its `max` (that
    /// one is counted; those after it are not touched): the hits counted, the last one
    /// the refused one if fewer than asked or over its `max`. On a single Redis server it
    /// is one script, one round trip for a step's counters however many (INCR each, the
    /// window's PEXPIRE at a counter's first hit, the time left read for a refusal only
    /// and a lost expiry given back there; three round trips the
    /// first time after the server lost its scripts, NOSCRIPT answered by loading it),
    /// and atomic: no other request sees a hit past the refusal. On a Cluster each key
    /// has a slot of its own and no script may span them, so there they are counted one
    /// by one. A store error is answered with the hits known to be counted,
    /// `Err((counted, e))`: exact on a Cluster and in process; on a single server 0, a
    /// lower bound (a script whose answer was lost may have run).
    pub async fn hit_many(
        &self,
        hits: &[(&str, Duration, i64)],
    ) -> Result<Vec<Hit>, (usize, EphemeralError)> {
        let hits: Vec<_> = hits
            .iter()
            .map(|(key, window, max)| (*key, *window, *max, Counter::Shared))
            .collect();
        self.hit_counters(&hits).await
    }

    /// [`Self::hit_many`], each counter at the cost it expects ([`Counter`]).
    pub async fn hit_counters(
        &self,
        hits: &[(&str, Duration, i64, Counter)],
    ) -> Result<Vec<Hit>, (usize, EphemeralError)> {
        match self {
            Self::Redis(r) if !r.pool.is_cluster() && hits.len() > 1 => {
                let mut c = r.pool.get().await.map_err(|e| (0, e.into()))?;
                let mut script = HIT_MANY_SCRIPT.prepare_invoke();
                for (key, window, max, counter) in hits {
                    script
                        .key(r.key(key))
                        .arg(ttl_ms(*window))
                        .arg(*max)
                        .arg(u8::from(*counter == Counter::Own));
                }
                // The counts in order; after a refusal's count, its time left.
                let answer: Vec<i64> = script
                    .invoke_async(&mut c)
                    .await
                    .map_err(|e| (0, e.into()))?;
                let refused_at = answer
                    .iter()
                    .zip(hits)
                    .position(|(count, (_, _, max, _))| count > max);
                let counted = refused_at.map_or(answer.len(), |i| i + 1);
                if counted > hits.len() || (refused_at.is_none() && counted != hits.len()) {
                    return Err((
                        0,
                        EphemeralError::Setup("a script's answer miscounted".into()),
                    ));
                }
                let left = refused_at
                    .and_then(|i| answer.get(i + 1))
                    .filter(|pttl| **pttl > 0)
                    .map(|pttl| Duration::from_millis(*pttl as u64));
                Ok(answer[..counted]
                    .iter()
                    .zip(hits)
                    .enumerate()
                    .map(|(i, (count, (_, window, _, _)))| Hit {
                        count: *count,
                        reset_in: if Some(i) == refused_at {
                            left.unwrap_or(*window)
                        } else {
                            *window
                        },
                    })
                    .collect())
            }
            _ => {
                let mut out = Vec::with_capacity(hits.len());
                for (key, window, max, counter) in hits {
                    let hit = self
                        .hit_counter(key, *window, *max, *counter)
                        .await
                        .map_err(|e| (out.len(), e))?;
                    out.push(hit);
                    if hit.count > *max {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Takes back one hit of a live counter (a try that the service, not the caller,
    /// failed: an upstream outage must not spend a citizen's tries). Never below zero; an
    /// expired or missing counter stays missing.
    pub async fn unhit(&self, key: &str) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => {
                m.unhit(key);
                Ok(())
            }
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                UNHIT_SCRIPT
                    .key(r.key(key))
                    .invoke_async::<()>(&mut c)
                    .await?;
                Ok(())
            }
        }
    }

    /// Reads a counter and how long its window has left (`None`: no live window).
    pub async fn window(&self, key: &str) -> Result<(i64, Option<Duration>), EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.window(key)),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                let k = r.key(key);
                let (value, pttl): (Option<String>, i64) = redis::pipe()
                    .cmd("GET")
                    .arg(&k)
                    .cmd("PTTL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await?;
                let count = value.and_then(|v| v.parse().ok()).unwrap_or(0);
                let left = (pttl > 0).then(|| Duration::from_millis(pttl as u64));
                Ok((count, left))
            }
        }
    }

    /// Reads a counter without counting (a limit checked before an expensive step).
    pub async fn count(&self, key: &str) -> Result<i64, EphemeralError> {
        Ok(self
            .get(key)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// A PING on a new connection, outside the pool (to the first node of a Cluster):
    /// whether the server answers at all when the pool is full ([`crate::ready`]).
    pub async fn ping_direct(&self) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(r) => {
                let url = crate::redis::cluster_nodes(&r.url)
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_else(|| r.url.clone());
                let client = redis::Client::open(url.as_str())?;
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut c).await?;
                Ok(())
            }
        }
    }

    /// Marks `member` present in the set `key` for `ttl` and answers how many members are
    /// (one script, on the server's clock; members dated ahead of it are dropped; the
    /// in-process store is one process: 1).
    pub async fn presence(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<usize, EphemeralError> {
        match self {
            Self::Memory(_) => Ok(1),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                let n: i64 = PRESENCE_SCRIPT
                    .key(r.key(key))
                    .arg(member)
                    .arg(ttl_ms(ttl))
                    .invoke_async(&mut c)
                    .await?;
                Ok(n.max(1) as usize)
            }
        }
    }

    /// Whether the store's pool has every connection open and in use
    /// ([`crate::ready::probe`]); the in-process store never is.
    pub fn saturated(&self) -> bool {
        match self {
            Self::Memory(_) => false,
            Self::Redis(r) => r.pool.saturated(),
        }
    }

    pub async fn ping(&self) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(r) => {
                let mut c = r.pool.get().await?;
                redis::cmd("PING").query_async::<()>(&mut c).await?;
                Ok(())
            }
        }
    }

    /// Drops expired entries of the in-process store (Redis expires keys by itself).
    pub fn sweep(&self) {
        if let Self::Memory(m) = self {
            m.sweep();
        }
    }
}

/// A Redis connection pool as every emta service sizes it (the presale queue too): a
/// single server or a Cluster, by the URL ([`crate::redis`]).
pub fn redis_pool(url: &str) -> Result<RedisPool, EphemeralError> {
    RedisPool::new(url).map_err(EphemeralError::Setup)
}

static PRESENCE_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('ZADD', KEYS[1], now, ARGV[1])
          redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
          redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + 1000), '+inf')
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return redis.call('ZCARD', KEYS[1])",
    )
});

static UNHIT_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local n = tonumber(redis.call('GET', KEYS[1]) or '0')
          if n > 0 then redis.call('DECR', KEYS[1]) end
          return 0",
    )
});

/// [`Ephemeral::hit_counters`] on a single server: for each key in order, INCR, and the
/// window's `PEXPIRE … NX` on a counter's first hit only, or for a subject's own counter
/// ([`Counter::Own`]) `SET … NX PX` first, INCR only if it exists (ARGV: window in ms,
/// max, 1 for an own counter, per key); at the first count over its max, that count and
/// its time left (PTTL), and
/// nothing more is counted. A counter that lost its expiry (a restore, a hand edit) is
/// given its window at that refusal, so no subject is refused for longer than one
/// window; a subject hit again (an address behind carrier NAT, a national budget) costs
/// one command a hit, not two.
static HIT_MANY_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local out = {}
          for i, key in ipairs(KEYS) do
            local window = ARGV[3 * i - 2]
            local count
            if ARGV[3 * i] == '1' and redis.call('SET', key, '1', 'NX', 'PX', window) then
              count = 1
            else
              count = redis.call('INCR', key)
              if count == 1 then
                redis.call('PEXPIRE', key, window, 'NX')
              end
            end
            out[i] = count
            if count > tonumber(ARGV[3 * i - 1]) then
              local left = redis.call('PTTL', key)
              if left < 0 then
                redis.call('PEXPIRE', key, window)
                left = tonumber(window)
              end
              out[i + 1] = left
              return out
            end
          end
          return out",
    )
});

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[derive(Clone)]
pub struct RedisStore {
    pool: RedisPool,
    prefix: String,
    /// Where the pool connects (a probe's own connection, [`Ephemeral::ping_direct`]).
    url: String,
}

impl RedisStore {
    /// `prefix:{key}`: the braces make the whole logical key the Cluster hash tag.
    fn key(&self, key: &str) -> String {
        format!("{}:{{{}}}", self.prefix, key)
    }

    /// `SET key value PX ttl [NX|XX]`; true if it stored.
    async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        condition: Option<&str>,
    ) -> Result<bool, EphemeralError> {
        let mut c = self.pool.get().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(ttl_ms(ttl));
        if let Some(nx_or_xx) = condition {
            cmd.arg(nx_or_xx);
        }
        let set: Option<String> = cmd.query_async(&mut c).await?;
        Ok(set.is_some())
    }
}

const SHARDS: usize = 32;

/// The in-process store's default bound on entries: far more than one node serves.
pub const MEMORY_MAX_ENTRIES: usize = 400_000;
/// The in-process store's default bound on the bytes of its keys and values (the maps'
/// own overhead comes on top, a few dozen bytes an entry).
pub const MEMORY_MAX_BYTES: usize = 512 * 1024 * 1024;

/// One shard: its entries and the bytes of their keys and values.
#[derive(Default)]
struct Shard {
    map: HashMap<String, (String, Instant)>,
    bytes: usize,
}

impl Shard {
    fn size(key: &str, value: &str) -> usize {
        key.len() + value.len()
    }

    /// Inserts or replaces, keeping the byte count.
    fn insert(&mut self, key: &str, value: String, expires: Instant) {
        let added = Self::size(key, &value);
        if let Some((old, _)) = self.map.insert(key.to_owned(), (value, expires)) {
            self.bytes = self.bytes.saturating_sub(Self::size(key, &old));
        }
        self.bytes += added;
    }

    fn remove(&mut self, key: &str) -> Option<(String, Instant)> {
        let gone = self.map.remove(key);
        if let Some((v, _)) = &gone {
            self.bytes = self.bytes.saturating_sub(Self::size(key, v));
        }
        gone
    }

    fn retain_live(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|k, (v, exp)| {
            let keep = *exp > now;
            if !keep {
                freed += k.len() + v.len();
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

/// The single-node store: sharded mutex-protected maps, swept periodically, each shard
/// bounded in entries and in bytes.
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    bytes_per_shard: usize,
}

impl MemoryStore {
    fn with_capacity(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            bytes_per_shard: max_bytes.div_ceil(SHARDS).max(1),
        }
    }

    fn len(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .map
                    .values()
                    .filter(|(_, exp)| *exp > now)
                    .count()
            })
            .sum()
    }

    /// Room in `shard` for `key` to hold `value`: expired entries are dropped first when
    /// it is full, by entries or by bytes.
    fn room(
        &self,
        shard: &mut Shard,
        key: &str,
        value: &str,
        now: Instant,
    ) -> Result<(), EphemeralError> {
        let fits = |s: &Shard| {
            let old = s.map.get(key).map_or(0, |(v, _)| Shard::size(key, v));
            let entries_ok = s.map.len() < self.per_shard || s.map.contains_key(key);
            entries_ok
                && s.bytes - old.min(s.bytes) + Shard::size(key, value) <= self.bytes_per_shard
        };
        if fits(shard) {
            return Ok(());
        }
        shard.retain_live(now);
        if fits(shard) {
            Ok(())
        } else {
            Err(EphemeralError::Full)
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-insert of a plain map
        // entry; the map is still consistent, so keep serving.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), EphemeralError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        self.room(&mut shard, key, value, now)?;
        shard.insert(key, value.to_owned(), now + ttl);
        Ok(())
    }

    fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, EphemeralError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some((_, exp)) if *exp > now => Ok(false),
            _ => {
                self.room(&mut shard, key, value, now)?;
                shard.insert(key, value.to_owned(), now + ttl);
                Ok(true)
            }
        }
    }

    fn replace(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, EphemeralError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.map.get(key) {
            Some((_, exp)) if *exp > now => {
                self.room(&mut shard, key, value, now)?;
                shard.insert(key, value.to_owned(), now + ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        self.shard(key)
            .map
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone())
    }

    fn window(&self, key: &str) -> (i64, Option<Duration>) {
        let now = Instant::now();
        self.shard(key)
            .map
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map_or((0, None), |(v, exp)| {
                (
                    v.parse().unwrap_or(0),
                    Some(exp.saturating_duration_since(now)),
                )
            })
    }

    fn take(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        self.shard(key)
            .remove(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v)
    }

    fn hit(&self, key: &str, window: Duration) -> Result<Hit, EphemeralError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let (count, expires) = match shard.map.get(key) {
            Some((n, exp)) if *exp > now => (n.parse::<i64>().unwrap_or(0) + 1, *exp),
            _ => (1, now + window),
        };
        let value = count.to_string();
        self.room(&mut shard, key, &value, now)?;
        shard.insert(key, value, expires);
        Ok(Hit {
            count,
            reset_in: expires.saturating_duration_since(now),
        })
    }

    fn unhit(&self, key: &str) {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if let Some((n, exp)) = shard.map.get(key).filter(|e| e.1 > now).cloned() {
            let n = n.parse::<i64>().unwrap_or(0);
            shard.insert(key, (n - 1).max(0).to_string(), exp);
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain_live(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_returns_a_value_once() {
        let s = Ephemeral::memory();
        s.put("k", "v", Duration::from_secs(5)).await.expect("put");
        assert_eq!(s.take("k").await.expect("take"), Some("v".into()));
        assert_eq!(s.take("k").await.expect("take"), None);
    }

    #[tokio::test]
    async fn hits_count_within_a_window_and_reset_after() {
        let s = Ephemeral::memory();
        let w = Duration::from_millis(50);
        assert_eq!(s.hit("c", w).await.expect("hit").count, 1);
        assert_eq!(s.hit("c", w).await.expect("hit").count, 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(s.hit("c", w).await.expect("hit").count, 1);
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_keys_until_entries_expire() {
        let s = Ephemeral::memory_bounded(SHARDS);
        let short = Duration::from_millis(30);
        let mut stored = 0;
        for i in 0..10 * SHARDS {
            match s.put(&format!("k{i}"), "v", short).await {
                Ok(()) => stored += 1,
                Err(EphemeralError::Full) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stored <= SHARDS, "{stored} stored, room for {SHARDS}");
        assert_eq!(s.entries(), Some(stored));
        assert!(matches!(
            s.hit("counter", short).await,
            Ok(_) | Err(EphemeralError::Full)
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;
        s.put("k0", "v", short).await.expect("room after expiry");
    }

    #[tokio::test]
    async fn a_store_full_of_bytes_refuses_large_values_until_they_expire() {
        // Room for 10 entries a shard but 64 KiB in all: 2 KiB a shard.
        let s = Ephemeral::memory_within(10 * SHARDS, 64 * 1024);
        let short = Duration::from_millis(30);
        let big = "x".repeat(1500);
        let mut stored = 0usize;
        for i in 0..20 * SHARDS {
            match s.put(&format!("k{i}"), &big, short).await {
                Ok(()) => stored += 1,
                Err(EphemeralError::Full) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stored <= SHARDS, "{stored} values of 1.5 KB in 64 KiB");
        assert!(stored > 0);
        // A small counter still fits beside them; growing a value past the room does not.
        s.hit("c", short).await.expect("room for a counter");
        let stored_key = (0..20 * SHARDS)
            .map(|i| format!("k{i}"))
            .find(|k| memory_get(&s, k).is_some())
            .expect("one stored");
        assert!(matches!(
            s.replace(&stored_key, &"y".repeat(4000), short).await,
            Err(EphemeralError::Full)
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;
        s.put("k0", &big, short).await.expect("room after expiry");
    }

    fn memory_get(s: &Ephemeral, key: &str) -> Option<String> {
        match s {
            Ephemeral::Memory(m) => m.get(key),
            Ephemeral::Redis(_) => None,
        }
    }

    #[tokio::test]
    async fn unhit_takes_back_one_hit_and_never_goes_below_zero() {
        let s = Ephemeral::memory();
        let w = Duration::from_secs(5);
        s.hit("u", w).await.expect("hit");
        s.hit("u", w).await.expect("hit");
        s.unhit("u").await.expect("unhit");
        assert_eq!(s.hit("u", w).await.expect("hit").count, 2);
        for _ in 0..5 {
            s.unhit("u").await.expect("unhit");
        }
        assert_eq!(s.hit("u", w).await.expect("hit").count, 1);
        s.unhit("missing").await.expect("unhit");
        assert_eq!(s.get("missing").await.expect("get"), None);
    }

    #[tokio::test]
    async fn replace_never_brings_back_a_deleted_key() {
        let s = Ephemeral::memory();
        let ttl = Duration::from_secs(5);
        assert!(!s.replace("r", "1", ttl).await.expect("replace"));
        s.put("r", "1", ttl).await.expect("put");
        assert!(s.replace("r", "2", ttl).await.expect("replace"));
        s.delete("r").await.expect("delete");
        assert!(!s.replace("r", "3", ttl).await.expect("replace"));
        assert_eq!(s.get("r").await.expect("get"), None);
    }

    #[tokio::test]
    async fn put_new_refuses_a_live_key() {
        let s = Ephemeral::memory();
        assert!(s
            .put_new("n", "1", Duration::from_secs(5))
            .await
            .expect("put"));
        assert!(!s
            .put_new("n", "2", Duration::from_secs(5))
            .await
            .expect("put"));
    }
}
