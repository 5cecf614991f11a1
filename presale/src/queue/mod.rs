//! The identity-bound fair queue, in Redis.
//!
//! One campaign's keys share the hash tag `{c:<id>}`, so they live on one Redis Cluster slot
//! and every script touches one slot:
//! - `…:m` a hash of counters and settings (opening time, pre/post-opening arrivals,
//!   serving counter, admission carry, closed and suspended flags);
//! - `…:t:<bucket>` small hashes from an 8-byte keyed hash of the national ID to the
//!   arrival number. Kept under Redis's listpack threshold, a small hash costs a few bytes
//!   of overhead per entry instead of the ~59 bytes a big hash entry costs;
//! - `…:a` a sorted set of admitted tickets by deadline (only the admitted window).
//!
//! Joining is idempotent per national ID. Those who join before the opening are numbered
//! in arrival order (stored negative) and get their ticket at the opening from a seeded
//! permutation ([`permutation`]); later arrivals get increasing ticket numbers after them.
//! The admitter is an atomic script any replica may call: it advances the serving counter
//! at the license's rate, bounded by the admitted applicants still active, and reclaims
//! slots whose time to apply ran out. Time is Redis's own (`TIME`), so replicas' clocks do
//! not matter.

pub mod memory;
pub mod permutation;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use service_kit::redis::{RedisConn, RedisPool as Pool};

use crate::domain::{NationalId, NidHash};
use sha2::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis setup: {0}")]
    Setup(String),
}

/// What the queue needs to know of a campaign (from its license).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub campaign: String,
    /// Unix milliseconds.
    pub opens_at_ms: i64,
    /// Admissions per minute.
    pub rate_per_min: i64,
    /// Admitted applicants who may be applying at the same time.
    pub max_active: i64,
    /// How long an admitted applicant has to apply (ms) before the slot is reclaimed.
    pub apply_window_ms: i64,
    /// Number of ticket buckets: expected applicants / 100 keeps each bucket small.
    pub buckets: u32,
}

/// The answer to a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Joined before the opening: arrival number `p` (1-based); the ticket is drawn at the
    /// opening. `fresh` is false when this national ID had joined already.
    Early { arrival: i64, fresh: bool },
    /// Joined after the opening: ticket number.
    Ticket { ticket: i64, fresh: bool },
    /// The queue is closed (cap reached or license suspended).
    Closed,
}

/// A snapshot of the counters, cached per replica for status polls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub serving: i64,
    pub early: i64,
    pub late: i64,
    pub closed: bool,
    pub suspended: bool,
    /// `early` is final: these counters were read after the opening (plus a margin for
    /// clock skew), so no early join can still land. Early tickets are computed from
    /// `early`, so they are shown only when this holds (set by whoever reads them).
    pub early_final: bool,
}

#[derive(Clone)]
pub struct Queue {
    backend: Backend,
    prefix: String,
    /// Key for hashing national IDs into bucket fields.
    key: Vec<u8>,
}

#[derive(Clone)]
enum Backend {
    Redis(Pool),
    Memory(Arc<memory::MemoryQueue>),
}

/// The join script, public so benchmarks can run it through `redis-benchmark` as well.
pub const JOIN: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return {tonumber(v), 0} end
local m = redis.call('HMGET', KEYS[2], 'opens', 'closed', 'suspended')
if m[2] == '1' or m[3] == '1' then return {0, 2} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n
if now < tonumber(m[1]) then
  n = -redis.call('HINCRBY', KEYS[2], 'early', 1)
else
  n = tonumber(redis.call('HGET', KEYS[2], 'early') or '0') + redis.call('HINCRBY', KEYS[2], 'late', 1)
end
redis.call('HSET', KEYS[1], ARGV[1], n)
return {n, 1}
";

const ADVANCE: &str = r"
local m = redis.call('HMGET', KEYS[1], 'opens', 'early', 'late', 'serving', 'last', 'carry', 'closed', 'suspended', 'rate', 'max_active', 'window')
local opens = tonumber(m[1])
local serving = tonumber(m[4] or '0')
if not opens or m[7] == '1' or m[8] == '1' then return serving end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < opens then return serving end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local total = tonumber(m[2] or '0') + tonumber(m[3] or '0')
local last = tonumber(m[5] or m[1])
local rate = tonumber(m[9])
local allowance = tonumber(m[6] or '0') + (now - last) * rate / 60000
local room = tonumber(m[10]) - redis.call('ZCARD', KEYS[2])
local k = math.min(math.floor(allowance), room, total - serving)
if k < 0 then k = 0 end
local deadline = now + tonumber(m[11])
for i = 1, k do redis.call('ZADD', KEYS[2], deadline, serving + i) end
-- An idle queue does not bank admissions for a burst later: carry at most a minute's rate.
local carry = math.min(allowance - k, rate)
redis.call('HSET', KEYS[1], 'serving', serving + k, 'last', now, 'carry', carry)
return serving + k
";

impl Queue {
    pub fn new(redis_url: &str, prefix: &str, key: &[u8]) -> Result<Self, QueueError> {
        let pool = service_kit::ephemeral::redis_pool(redis_url)
            .map_err(|e| QueueError::Setup(e.to_string()))?;
        Ok(Self {
            backend: Backend::Redis(pool),
            prefix: prefix.to_owned(),
            key: key.to_vec(),
        })
    }

    /// The in-process queue of the single-node embedded default.
    pub fn memory(key: &[u8]) -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
            prefix: String::new(),
            key: key.to_vec(),
        }
    }

    async fn conn(&self) -> Result<Option<RedisConn>, QueueError> {
        match &self.backend {
            Backend::Redis(pool) => Ok(Some(pool.get().await?)),
            Backend::Memory(_) => Ok(None),
        }
    }

    fn mem(&self) -> Option<&memory::MemoryQueue> {
        match &self.backend {
            Backend::Memory(m) => Some(m),
            Backend::Redis(_) => None,
        }
    }

    fn k(&self, campaign: &str, part: &str) -> String {
        format!("{}:q:{{c:{campaign}}}:{part}", self.prefix)
    }

    /// The bucket and the hash of a national ID: keyed, so Redis holds no IDs.
    fn slot(&self, national_id: &NationalId, buckets: u32) -> (u32, NidHash) {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(national_id.as_str().as_bytes());
        let out = mac.finalize().into_bytes();
        let mut field = [0u8; 8];
        field.copy_from_slice(&out[..8]);
        let bucket = u32::from_be_bytes([out[8], out[9], out[10], out[11]]) % buckets.max(1);
        (bucket, NidHash(field))
    }

    /// Creates a campaign's queue (idempotent: settings of an existing queue are kept,
    /// except the admission rate and bound, which the ministry may change).
    pub async fn setup(&self, s: &QueueSettings) -> Result<(), QueueError> {
        if let Some(m) = self.mem() {
            m.setup(s);
            return Ok(());
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(());
        };
        let meta = self.k(&s.campaign, "m");
        redis::cmd("HSETNX")
            .arg(&meta)
            .arg("opens")
            .arg(s.opens_at_ms)
            .query_async::<()>(&mut c)
            .await?;
        redis::cmd("HSETNX")
            .arg(&meta)
            .arg("buckets")
            .arg(s.buckets)
            .query_async::<()>(&mut c)
            .await?;
        redis::cmd("HSET")
            .arg(&meta)
            .arg("rate")
            .arg(s.rate_per_min)
            .arg("max_active")
            .arg(s.max_active)
            .arg("window")
            .arg(s.apply_window_ms)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    pub async fn join(
        &self,
        s: &QueueSettings,
        national_id: &NationalId,
    ) -> Result<Joined, QueueError> {
        let (bucket, NidHash(field)) = self.slot(national_id, s.buckets);
        if let Some(m) = self.mem() {
            return Ok(m.join(&s.campaign, field, service_kit::clock::now_ms()));
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(Joined::Closed);
        };
        let (n, code): (i64, i64) = redis::Script::new(JOIN)
            .key(self.k(&s.campaign, &format!("t:{bucket}")))
            .key(self.k(&s.campaign, "m"))
            .arg(&field[..])
            .invoke_async(&mut c)
            .await?;
        let fresh = code == 1;
        Ok(match (code, n) {
            (2, _) => Joined::Closed,
            (_, n) if n < 0 => Joined::Early { arrival: -n, fresh },
            (_, n) => Joined::Ticket { ticket: n, fresh },
        })
    }

    /// Runs the admitter once; returns the serving counter. Safe to call from every replica.
    pub async fn advance(&self, campaign: &str) -> Result<i64, QueueError> {
        if let Some(m) = self.mem() {
            return Ok(m.advance(campaign, service_kit::clock::now_ms()));
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(0);
        };
        Ok(redis::Script::new(ADVANCE)
            .key(self.k(campaign, "m"))
            .key(self.k(campaign, "a"))
            .invoke_async(&mut c)
            .await?)
    }

    pub async fn counters(&self, campaign: &str) -> Result<Counters, QueueError> {
        if let Some(m) = self.mem() {
            return Ok(m.counters(campaign));
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(Counters::default());
        };
        let v: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(self.k(campaign, "m"))
            .arg(&["serving", "early", "late", "closed", "suspended"])
            .query_async(&mut c)
            .await?;
        let get = |i: usize| v.get(i).copied().flatten().unwrap_or(0);
        Ok(Counters {
            serving: get(0),
            early: get(1),
            late: get(2),
            closed: get(3) == 1,
            suspended: get(4) == 1,
            early_final: false,
        })
    }

    /// Whether `ticket` is admitted now: served, and its time to apply has not run out.
    pub async fn is_admitted(&self, campaign: &str, ticket: i64) -> Result<bool, QueueError> {
        if let Some(m) = self.mem() {
            return Ok(m.is_admitted(campaign, ticket, service_kit::clock::now_ms()));
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(false);
        };
        let deadline: Option<f64> = redis::cmd("ZSCORE")
            .arg(self.k(campaign, "a"))
            .arg(ticket)
            .query_async(&mut c)
            .await?;
        let now_ms = service_kit::clock::now_ms();
        Ok(deadline.is_some_and(|d| d as i64 > now_ms))
    }

    /// Frees an admitted slot (the applicant applied, or gave up).
    pub async fn release(&self, campaign: &str, ticket: i64) -> Result<(), QueueError> {
        if let Some(m) = self.mem() {
            m.release(campaign, ticket);
            return Ok(());
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(());
        };
        redis::cmd("ZREM")
            .arg(self.k(campaign, "a"))
            .arg(ticket)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Closes the queue for good (cap reached): joins and admissions stop.
    pub async fn close(&self, campaign: &str) -> Result<(), QueueError> {
        self.set_flag(campaign, "closed", true).await
    }

    /// Suspends or resumes admissions (the ministry suspended the license).
    pub async fn suspend(&self, campaign: &str, on: bool) -> Result<(), QueueError> {
        self.set_flag(campaign, "suspended", on).await
    }

    async fn set_flag(&self, campaign: &str, flag: &str, on: bool) -> Result<(), QueueError> {
        if let Some(m) = self.mem() {
            match flag {
                "closed" => m.set_flag(campaign, Some(on), None),
                _ => m.set_flag(campaign, None, Some(on)),
            }
            return Ok(());
        }
        let Some(mut c) = self.conn().await? else {
            return Ok(());
        };
        redis::cmd("HSET")
            .arg(self.k(campaign, "m"))
            .arg(flag)
            .arg(i64::from(on))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Bytes Redis uses for a campaign's queue (`MEMORY USAGE` of each key).
    pub async fn memory_usage(&self, s: &QueueSettings) -> Result<i64, QueueError> {
        let Some(mut c) = self.conn().await? else {
            return Ok(0);
        };
        let mut total = 0;
        let mut keys = vec![self.k(&s.campaign, "m"), self.k(&s.campaign, "a")];
        keys.extend((0..s.buckets).map(|b| self.k(&s.campaign, &format!("t:{b}"))));
        for key in keys {
            let used: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut c)
                .await?;
            total += used.unwrap_or(0);
        }
        Ok(total)
    }
}

/// The ticket of the early arrival number `arrival` (1-based) among `early` early
/// arrivals, under the campaign's revealed seed: a uniform random order, all ahead of the
/// later arrivals.
pub fn early_ticket(seed: &[u8], early: i64, arrival: i64) -> Option<i64> {
    if arrival < 1 || arrival > early {
        return None;
    }
    Some(1 + permutation::permute(seed, early as u64, (arrival - 1) as u64) as i64)
}
