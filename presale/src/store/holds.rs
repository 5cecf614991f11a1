//! Down payments held at the participating banks (issue 30), in SQL.
//!
//! One hold per person per license. It is asked of a bank (`pending`, with the bank's
//! mandate token and a keyed hash of the redirect's `state`), counts once the bank has
//! confirmed it server-to-server (`held`, with its record in the campaign's public log),
//! and is settled exactly once: the decision (`capturing` for an accepted applicant,
//! `releasing` for everyone else) is one durable change with its record and its
//! idempotency key, and every call to the bank for it, retried as often as it takes,
//! carries that key; the bank's answer then moves it to `captured` or `released`. The
//! triggers of migration 0019 keep a hold moving only forward on both engines.
//!
//! An application takes the applicant's hold row's lock and requires it `held`; a
//! settlement takes the same lock before it reads who applied, so a hold is never
//! released under an application that commits, nor captured for one that does not.

use sqlx::Row;

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};
use crate::domain::{Holder, NationalId};
use crate::transparency::Event;

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    Pending,
    Held,
    Capturing,
    Releasing,
    Captured,
    Released,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Capturing => "capturing",
            Self::Releasing => "releasing",
            Self::Captured => "captured",
            Self::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "held" => Self::Held,
            "capturing" => Self::Capturing,
            "releasing" => Self::Releasing,
            "captured" => Self::Captured,
            "released" => Self::Released,
            _ => return None,
        })
    }

    /// Whether the hold counts now (confirmed, not settled).
    pub fn counts(self) -> bool {
        self == Self::Held
    }

    /// Whether a settlement was decided: its call to the bank is made (or retried) until
    /// it is answered.
    pub fn settling(self) -> bool {
        matches!(self, Self::Capturing | Self::Releasing)
    }

    /// The bank operation a settling hold carries out.
    pub fn operation(self) -> Option<&'static str> {
        match self {
            Self::Capturing | Self::Captured => Some("capture"),
            Self::Releasing | Self::Released => Some("release"),
            _ => None,
        }
    }

    pub fn text(self) -> service_kit::Text {
        use service_kit::t;
        match self {
            Self::Pending => t!(
                "در انتظار تأیید بانک",
                "waiting for the bank's confirmation"
            ),
            Self::Held => t!("مسدود و تأییدشده", "held, confirmed by the bank"),
            Self::Capturing => t!(
                "در حال برداشت برای خودروساز",
                "being captured for the manufacturer"
            ),
            Self::Releasing => t!("در حال آزادسازی", "being released"),
            Self::Captured => t!("برداشت‌شده برای خودروساز", "captured for the manufacturer"),
            Self::Released => t!("آزاد شده", "released"),
        }
    }
}

/// One hold, as stored.
#[derive(Debug, Clone)]
pub struct Hold {
    pub id: String,
    pub license_id: String,
    pub national_id: String,
    pub citizen_sub: String,
    pub holder: String,
    pub bank: String,
    pub amount: i64,
    pub title: String,
    pub state: HoldState,
    pub token: Option<String>,
    pub state_hash: Option<String>,
    pub created_at_ms: i64,
    pub verified_at_ms: Option<i64>,
    pub settle_key: Option<String>,
    pub settled_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, license_id, national_id, citizen_sub, holder, bank, amount, title, \
     state, token, state_hash, created_at_ms, verified_at_ms, settle_key, settled_at_ms";

fn hold_of(r: &sqlx::any::AnyRow) -> Result<Hold, StoreError> {
    let state: String = r.try_get("state")?;
    Ok(Hold {
        id: r.try_get("id")?,
        license_id: r.try_get("license_id")?,
        national_id: r.try_get("national_id")?,
        citizen_sub: r.try_get("citizen_sub")?,
        holder: r.try_get("holder")?,
        bank: r.try_get("bank")?,
        amount: r.try_get("amount")?,
        title: r.try_get("title")?,
        state: HoldState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("a hold's state {state:?}")))?,
        token: r.try_get("token")?,
        state_hash: r.try_get("state_hash")?,
        created_at_ms: r.try_get("created_at_ms")?,
        verified_at_ms: r.try_get("verified_at_ms")?,
        settle_key: r.try_get("settle_key")?,
        settled_at_ms: r.try_get("settled_at_ms")?,
    })
}

/// Why a hold cannot be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRefused {
    /// Confirmed already (or settled): one hold per person per license.
    Already(HoldState),
}

/// Holds settled per transaction when a round ends.
const SETTLE_BATCH: i64 = 200;

impl Store {
    /// A person's hold for a license, if any.
    pub async fn hold_of(
        &self,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<Option<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE license_id = $1 AND national_id = $2"
        ))
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(hold_of)
        .transpose()
    }

    /// A hold by the bank's mandate token.
    pub async fn hold_by_token(&self, bank: &str, token: &str) -> Result<Option<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE bank = $1 AND token = $2"
        ))
        .bind(bank)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(hold_of)
        .transpose()
    }

    /// A person's holds, newest first (their applications page).
    pub async fn holds_of_person(&self, national_id: &NationalId) -> Result<Vec<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE national_id = $1 ORDER BY created_at_ms DESC"
        ))
        .bind(national_id.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(hold_of)
        .collect()
    }

    /// Every hold of a license (reconciliation, the console).
    pub async fn holds_of_license(&self, license_id: &str) -> Result<Vec<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE license_id = $1 ORDER BY id"
        ))
        .bind(license_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(hold_of)
        .collect()
    }

    /// Starts a person's hold at `bank` for `amount` under `title`, or starts it again at
    /// a bank of their choice while it is still pending (a mandate never approved). The
    /// amount and title are the license's and never change.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_hold(
        &self,
        license_id: &str,
        national_id: &NationalId,
        sub: &str,
        holder: &Holder,
        bank: &str,
        amount: i64,
        title: &str,
    ) -> Result<Result<Hold, StartRefused>, StoreError> {
        let id = format!("h-{}", service_kit::keys::random_token(12));
        // A new hold comes back as stored, in the same statement.
        let inserted = sqlx::query(&format!(
            "INSERT INTO holds (id, license_id, national_id, citizen_sub, holder, bank, amount, \
             title, state, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', {}) \
             RETURNING {COLUMNS}",
            self.now_ms_sql()
        ))
        .bind(&id)
        .bind(license_id)
        .bind(national_id.as_str())
        .bind(sub)
        .bind(&holder.0)
        .bind(bank)
        .bind(amount)
        .bind(title)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => return Ok(Ok(hold_of(&row)?)),
            Err(e) if is_unique_violation(&e) => {
                // Theirs already: a pending one with no mandate outstanding moves to the
                // bank chosen now (one with a mandate is the caller's to settle first).
                sqlx::query(
                    "UPDATE holds SET bank = $3 WHERE license_id = $1 AND national_id = $2 \
                     AND state = 'pending' AND token IS NULL",
                )
                .bind(license_id)
                .bind(national_id.as_str())
                .bind(bank)
                .execute(&self.pool)
                .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let hold = self
            .hold_of(license_id, national_id)
            .await?
            .ok_or(StoreError::Conflict)?;
        if hold.state != HoldState::Pending {
            return Ok(Err(StartRefused::Already(hold.state)));
        }
        Ok(Ok(hold))
    }

    /// Records the bank's mandate token and the keyed hash of the redirect's `state` for
    /// a pending hold at `bank`. False if it is no longer pending there.
    pub async fn set_mandate(
        &self,
        hold_id: &str,
        bank: &str,
        token: &str,
        state_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE holds SET token = $3, state_hash = $4 \
             WHERE id = $1 AND bank = $2 AND state = 'pending' AND token IS NULL",
        )
        .bind(hold_id)
        .bind(bank)
        .bind(token)
        .bind(state_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a pending hold's mandate `token`, which its bank says it does not hold
    /// (declined, expired, unknown), so that a new one may be asked at `bank`. False if
    /// the hold changed meanwhile.
    pub async fn reset_mandate(
        &self,
        hold_id: &str,
        token: &str,
        bank: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE holds SET bank = $3, token = NULL, state_hash = NULL \
             WHERE id = $1 AND token = $2 AND state = 'pending'",
        )
        .bind(hold_id)
        .bind(token)
        .bind(bank)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The bank confirmed the pending hold `hold_id` with mandate `token`: it counts from
    /// now, with its record in the public log. A second confirmation (a callback that
    /// arrives twice, the browser's and the bank's) changes nothing: true both times.
    pub async fn confirm_hold(&self, hold: &Hold, token: &str) -> Result<bool, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let done = sqlx::query(&format!(
            "UPDATE holds SET state = 'held', verified_at_ms = {} \
             WHERE id = $1 AND token = $2 AND bank = $3 AND state = 'pending'",
            self.now_ms_sql()
        ))
        .bind(&hold.id)
        .bind(token)
        .bind(&hold.bank)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let event = Event::Held {
                holder: hold.holder.clone(),
                bank: hold.bank.clone(),
            };
            self.log_event(&mut tx, &hold.license_id, &event).await?;
            tx.commit().await?;
            return Ok(true);
        }
        tx.rollback().await?;
        Ok(self
            .hold_by_token(&hold.bank, token)
            .await?
            .is_some_and(|h| h.id == hold.id && h.state != HoldState::Pending))
    }

    /// In an application's transaction: locks the applicant's hold and says whether it
    /// counts. Settlement takes the same lock, so it waits for this transaction.
    pub(crate) async fn lock_counting_hold(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<bool, StoreError> {
        let locked = sqlx::query(
            "UPDATE holds SET state = state WHERE license_id = $1 AND national_id = $2 \
             AND state = 'held' RETURNING id",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(locked.is_some())
    }

    /// Whether a person's hold counts (a read; a queue's joins read the holds their
    /// places need in their batch instead, `Store::join_batch`).
    pub async fn hold_counts(
        &self,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM holds WHERE license_id = $1 AND national_id = $2 AND state = 'held'",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Whether the person registered in the campaign (a lottery entry, a queue ticket or
    /// an application): their hold then stays until the round ends. One read (the
    /// applications by their own key, one per national ID per license).
    pub async fn registered_or_applied(
        &self,
        license_id: &str,
        national_id: &NationalId,
        holder: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM lottery_entries WHERE license_id = $1 AND national_id = $2 \
             UNION ALL SELECT 1 AS one FROM queue_tickets WHERE license_id = $1 AND holder = $3 \
             UNION ALL SELECT 1 AS one FROM applications WHERE license_id = $1 AND national_id = $2",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .bind(holder)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// A citizen withdraws before registering: their confirmed hold is released at once.
    /// Once they hold a place (an entry, a ticket) or an application, the hold stays
    /// until the round ends: a released hold under a place would let one sum of money
    /// stand behind many places, and a winner's released hold would turn them into a
    /// reserve. The hold as it now stands.
    pub async fn withdraw_hold(
        &self,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<Option<Hold>, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let locked = sqlx::query(
            "UPDATE holds SET state = state WHERE license_id = $1 AND national_id = $2 \
             AND state = 'held' RETURNING id, holder",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = locked {
            let holder: String = row.try_get("holder")?;
            let placed = sqlx::query(
                "SELECT 1 AS one FROM applications WHERE license_id = $1 AND national_id = $2 \
                 UNION ALL SELECT 1 AS one FROM lottery_entries WHERE license_id = $1 AND national_id = $2 \
                 UNION ALL SELECT 1 AS one FROM queue_tickets WHERE license_id = $1 AND holder = $3",
            )
            .bind(license_id)
            .bind(national_id.as_str())
            .bind(&holder)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if !placed {
                let id: String = row.try_get("id")?;
                self.decide_settlements(&mut tx, license_id, &[(id, holder, false)])
                    .await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
        } else {
            tx.rollback().await?;
        }
        self.hold_of(license_id, national_id).await
    }

    /// Settles every confirmed hold of a round that has ended: captured for the accepted
    /// applicants, released for everyone else, a batch per transaction. The number
    /// decided.
    pub async fn settle_round(&self, license_id: &str) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = service_kit::sql::begin(&self.pool).await?;
            self.bound_admitter_tx(&mut tx).await?;
            // The lock first; who applied is read after it, in a statement of its own, so
            // an application that held the lock has committed (or not) by then.
            let rows = sqlx::query(&format!(
                "UPDATE holds SET state = state WHERE state = 'held' AND id IN \
                 (SELECT id FROM holds WHERE license_id = $1 AND state = 'held' \
                  ORDER BY id LIMIT {SETTLE_BATCH}) RETURNING id, national_id, holder"
            ))
            .bind(license_id)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                // Rolled back now, not when the connection is next used: SQLite keeps its
                // one writer's lock until then.
                tx.rollback().await?;
                return Ok(total);
            }
            let mut batch = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = r.try_get("id")?;
                let nid: String = r.try_get("national_id")?;
                let holder: String = r.try_get("holder")?;
                batch.push((id, nid, holder));
            }
            let applied: std::collections::HashSet<String> = sqlx::query(&format!(
                "SELECT national_id FROM applications WHERE license_id = $1 AND national_id IN ({})",
                (0..batch.len())
                    .map(|i| format!("${}", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .bind(license_id)
            .pipe_binds(batch.iter().map(|(_, n, _)| n.clone()))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .filter_map(|r| r.try_get::<String, _>("national_id").ok())
            .collect();
            let decided: Vec<(String, String, bool)> = batch
                .into_iter()
                .map(|(id, nid, holder)| {
                    let capture = applied.contains(&nid);
                    (id, holder, capture)
                })
                .collect();
            total += decided.len();
            self.decide_settlements(&mut tx, license_id, &decided)
                .await?;
            tx.commit().await?;
        }
    }

    /// Decides the settlements of locked, confirmed holds `(id, holder, capture)`: one
    /// idempotency key each, kept in the row, and one record each in the public log.
    async fn decide_settlements(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        holds: &[(String, String, bool)],
    ) -> Result<(), StoreError> {
        let now = self.now_ms_sql();
        for (capture, state, op) in [
            (true, "capturing", "capture"),
            (false, "releasing", "release"),
        ] {
            let ids: Vec<&String> = holds
                .iter()
                .filter(|(_, _, c)| *c == capture)
                .map(|(id, _, _)| id)
                .collect();
            for chunk in ids.chunks(super::CHUNK) {
                let list = (0..chunk.len())
                    .map(|i| format!("${}", i + 1))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "UPDATE holds SET state = '{state}', settle_key = '{op}:' || id, \
                     settle_at_ms = {now} WHERE state = 'held' AND id IN ({list})"
                );
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind((*id).clone());
                }
                q.execute(&mut *conn).await?;
            }
        }
        let events: Vec<Event> = holds
            .iter()
            .map(|(_, holder, capture)| Event::Settled {
                holder: holder.clone(),
                capture: *capture,
            })
            .collect();
        self.log_events(conn, license_id, &events).await
    }

    /// Holds whose settlement was decided and not yet answered by the bank (any license).
    pub async fn unsettled_holds(&self, limit: i64) -> Result<Vec<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE state IN ('capturing', 'releasing') \
             ORDER BY settle_at_ms LIMIT {limit}"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(hold_of)
        .collect()
    }

    /// One license's holds whose settlement was decided and not yet answered by the bank.
    pub async fn unsettled_holds_of(
        &self,
        license_id: &str,
        limit: i64,
    ) -> Result<Vec<Hold>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE license_id = $1 \
             AND state IN ('capturing', 'releasing') AND next_try_at_ms <= {now} \
             ORDER BY next_try_at_ms, settle_at_ms LIMIT {limit}",
            now = self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(hold_of)
        .collect()
    }

    /// Whether a queue's round is over: active, its admissions not paused, closed (on the
    /// database's clock, with the time suspensions and pauses gave back, which is added
    /// only when they end: hence no verdict during one) and no admission still within its
    /// time to apply.
    pub async fn queue_round_over(&self, license_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT (closes_at * 1000 + paused_ms <= {now} AND status = 'active' \
             AND suspended_at_ms IS NULL AND admissions_paused_at_ms IS NULL) AS closed, \
             (SELECT COUNT(*) FROM queue_admissions WHERE license_id = $1 AND released = 0 \
              AND deadline_ms > {queue_time}) AS live \
             FROM licenses WHERE id = $1",
            now = self.now_ms_sql(),
            queue_time = self.queue_time_sql()
        ))
        .bind(license_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let closed: bool = row
            .try_get::<bool, _>("closed")
            .or_else(|_| row.try_get::<i64, _>("closed").map(|n| n != 0))?;
        let live: i64 = row.try_get("live")?;
        Ok(closed && live == 0)
    }

    /// A settling hold's call failed: the next waits 2^attempts seconds (at most five
    /// minutes), so holds a bank keeps refusing never hold up the others.
    pub async fn settle_failed(&self, hold_id: &str) -> Result<(), StoreError> {
        let backoff = if self.postgres {
            "LEAST(300000, 1000 * CAST(power(2, LEAST(attempts, 9)) AS BIGINT))"
        } else {
            "MIN(300000, 1000 * (1 << MIN(attempts, 9)))"
        };
        sqlx::query(&format!(
            "UPDATE holds SET attempts = attempts + 1, next_try_at_ms = {} + {backoff} \
             WHERE id = $1 AND state IN ('capturing', 'releasing')",
            self.now_ms_sql()
        ))
        .bind(hold_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The bank answered a settling hold's call: captured or released, once.
    pub async fn settled(&self, hold_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE holds SET state = CASE state WHEN 'capturing' THEN 'captured' ELSE 'released' END, \
             settled_at_ms = {} WHERE id = $1 AND state IN ('capturing', 'releasing')",
            self.now_ms_sql()
        ))
        .bind(hold_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether every hold of a license is settled or was never confirmed (pending).
    pub async fn holds_open(&self, license_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM holds WHERE license_id = $1 \
             AND state IN ('held', 'capturing', 'releasing')",
        )
        .bind(license_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }
}

/// Binds each of `values` in turn.
trait PipeBinds<'q> {
    fn pipe_binds(self, values: impl Iterator<Item = String>) -> Self;
}

impl<'q> PipeBinds<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn pipe_binds(mut self, values: impl Iterator<Item = String>) -> Self {
        for v in values {
            self = self.bind(v);
        }
        self
    }
}
