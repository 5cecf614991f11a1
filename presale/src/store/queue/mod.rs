//! The fair queue's durable record in SQL (tables `queue_campaigns`, `queue_tickets`,
//! `queue_admissions`; see migration 0005).
//!
//! Every join batch and every admitter tick changes its campaign's row, so they happen one
//! at a time per campaign across all replicas, and each decides on the database's clock.
//! A tick, and a join batch on SQLite or after a lost race, locks the row first and reads
//! after the lock; a join batch on PostgreSQL first reads without it and writes only if
//! the row's counters are still those it read (a compare-and-swap, `Store::swap_join`).
//! Numbers come from those counters and the `UNIQUE (license_id, number)` key refuses any
//! second holder of a number, so nothing is issued twice whatever a clock does. A ticket or admission exists only once its
//! transaction has committed, and only then is it answered.
//!
//! The queue has its own clock (`clock_ms`): the admitter's last tick. Apply deadlines are
//! read against `min(now, clock_ms + STALL_MS)`, so when the admitter cannot tick (the
//! license is suspended, or no replica reached the database) the queue's time stands
//! still, and the next tick extends every live deadline by the time it stood still: nobody
//! loses a turn they could not use. It stands still too while a queue that is over, with
//! nobody within their time, rests (`crate::admitter`): no deadline is left to extend.
//!
//! - [`join`]: numbering and writing join batches (the compare-and-swap, or under the row's lock).
//! - [`admit`]: the admitter's tick (the freeze, admissions in ticket order, the clock) and
//!   an admission's use at apply.

mod admit;
mod join;

pub(crate) use join::Held;

use sqlx::Row;

use super::{Store, StoreError};

/// How long the queue's clock runs on without an admitter tick (ticks come every 250 ms).
pub const STALL_MS: i64 = 1000;

/// The answer to one join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Joined before the opening: arrival number (1-based); the ticket is drawn at the
    /// opening. `fresh` is false when this holder had joined already.
    Early { arrival: i64, fresh: bool },
    /// Joined after the opening: the ticket number.
    Ticket { ticket: i64, fresh: bool },
    /// Sold out: nobody new joins.
    SoldOut,
    /// Suspended by the ministry: nobody new joins until it resumes.
    Suspended,
    /// Not a queue campaign.
    Unknown,
    /// The campaign takes a confirmed hold before joining, and this person has none.
    NoHold,
}

impl Joined {
    fn of(number: i64, fresh: bool) -> Self {
        if number < 0 {
            Self::Early {
                arrival: -number,
                fresh,
            }
        } else {
            Self::Ticket {
                ticket: number,
                fresh,
            }
        }
    }
}

/// A campaign's queue as committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub serving: i64,
    pub early: i64,
    pub late: i64,
    /// The opening has passed on the database's clock: no join is early any more, so
    /// `early` is final and early tickets can be computed.
    pub opened: bool,
    pub sold_out: bool,
    pub suspended: bool,
    /// Admitted applicants whose time to apply is still running.
    pub live: i64,
    /// Units no accepted application has taken (some may be promised to `live`).
    pub unsold: i64,
    /// The round's admissions are over: its close (moved on by its suspensions and its
    /// pauses of admissions) has passed on the database's clock, so nobody new will be
    /// admitted. Never while admissions are paused: the resume moves the close on.
    pub over: bool,
    /// The seed that orders the pre-opening arrivals, once every party revealed it after
    /// the opening froze their list.
    pub seed: Option<String>,
}

/// Whether a round's admissions are over at `now_ms`: its close (`close_ms`, moved on by
/// the pauses and suspensions resumed so far) has passed, and no pause of admissions or
/// suspension now in progress began before it (its resume moves the close on by its
/// length, past `now_ms`). One begun after the close moves it to before its resume: over
/// all the same.
pub(crate) fn round_over(
    opened: bool,
    now_ms: i64,
    close_ms: i64,
    paused_since: Option<i64>,
    suspended_since: Option<i64>,
) -> bool {
    let reopens = |since: Option<i64>| since.is_some_and(|at| at < close_ms);
    opened && now_ms >= close_ms && !reopens(paused_since) && !reopens(suspended_since)
}

impl QueueState {
    /// Every unit left is promised to an admitted applicant still within their time: the
    /// rest of the line is admitted only if one of those promises lapses.
    pub fn every_unit_promised(&self) -> bool {
        self.opened
            && !self.sold_out
            && !self.suspended
            && !self.over
            && self.unsold > 0
            && self.live >= self.unsold
    }
}

impl Store {
    /// The database's clock in Unix milliseconds, as an SQL expression. SQLite is the
    /// embedded single-node default, so its clock is this host's.
    pub(crate) fn now_ms_sql(&self) -> &'static str {
        if self.postgres {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        }
    }

    /// PostgreSQL: the admitter's transactions (a campaign's tick, its log's sequencing)
    /// give up on a lock after two seconds and on a statement after five, so one campaign
    /// whose row somebody holds cannot hold the admitter's connection, or the server's
    /// backend, for long. (SQLite has one writer and a busy timeout of its own.)
    pub(crate) async fn bound_admitter_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<(), StoreError> {
        if self.postgres {
            sqlx::query(
                "SELECT set_config('lock_timeout', '2000', true), \
                 set_config('statement_timeout', '5000', true)",
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// The time on the database's clock (Unix milliseconds).
    pub async fn db_now_ms(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query(&format!("SELECT {} AS now_ms", self.now_ms_sql()))
                .fetch_one(&self.pool)
                .await?
                .try_get("now_ms")?,
        )
    }

    /// The time on the database's clock (Unix milliseconds), in the caller's transaction.
    pub(crate) async fn db_now_ms_in(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<i64, StoreError> {
        Ok(
            sqlx::query(&format!("SELECT {} AS now_ms", self.now_ms_sql()))
                .fetch_one(&mut *conn)
                .await?
                .try_get("now_ms")?,
        )
    }

    /// The SQL of "the queue's time now" for the campaign `$1`: the database's clock,
    /// stopped at `clock_ms + STALL_MS` while no admitter ticks.
    pub(crate) fn queue_time_sql(&self) -> String {
        let least = if self.postgres { "LEAST" } else { "MIN" };
        format!(
            "(SELECT {least}({now}, CASE WHEN clock_ms = 0 THEN {now} ELSE clock_ms + {STALL_MS} END) \
             FROM queue_campaigns WHERE license_id = $1)",
            now = self.now_ms_sql()
        )
    }

    /// Creates a campaign's queue row (idempotent). Issuing a queue license does this in
    /// its own transaction.
    pub(crate) async fn create_queue(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        opens_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queue_campaigns (license_id, opens_at_ms) VALUES ($1, $2) \
             ON CONFLICT (license_id) DO NOTHING",
        )
        .bind(license_id)
        .bind(opens_at * 1000)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// A campaign's queue as committed, without ticking.
    pub async fn queue_state(&self, license_id: &str) -> Result<Option<QueueState>, StoreError> {
        let Some(r) = sqlx::query(&format!(
            "SELECT q.early, q.late, q.serving, q.opened, l.status, l.accepted, l.units, \
             l.closes_at, l.paused_ms, l.admissions_paused_at_ms, l.suspended_at_ms, \
             {} AS now_ms FROM queue_campaigns q JOIN licenses l ON l.id = q.license_id \
             WHERE q.license_id = $1",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let now: i64 = r.try_get("now_ms")?;
        let status: String = r.try_get("status")?;
        let (live, seed) = {
            let mut conn = self.pool.acquire().await?;
            (
                self.live_admissions(&mut conn, license_id, now).await?,
                self.campaign_seed_in(&mut conn, license_id).await?,
            )
        };
        let (accepted, units): (i64, i64) = (r.try_get("accepted")?, r.try_get("units")?);
        // Set by the first join or tick after the opening, under the campaign's lock, so
        // every early join has committed by then.
        let opened = r.try_get::<i64, _>("opened")? == 1;
        let closes_at_ms =
            r.try_get::<i64, _>("closes_at")? * 1000 + r.try_get::<i64, _>("paused_ms")?;
        Ok(Some(QueueState {
            serving: r.try_get("serving")?,
            early: r.try_get("early")?,
            late: r.try_get("late")?,
            opened,
            sold_out: accepted >= units,
            suspended: status != crate::domain::LicenseStatus::Active.as_str(),
            live,
            unsold: units - accepted,
            over: round_over(
                opened,
                now,
                closes_at_ms,
                r.try_get("admissions_paused_at_ms")?,
                r.try_get("suspended_at_ms")?,
            ),
            seed,
        }))
    }

    /// The admission of ticket `$2` in campaign `$1`, unused and within its time on the
    /// queue's clock (one definition for the check and for its use).
    fn live_ticket_sql(&self) -> String {
        format!(
            "license_id = $1 AND ticket = $2 AND released = 0 AND deadline_ms > {}",
            self.queue_time_sql()
        )
    }
}

#[cfg(test)]
mod tests {
    /// A pause or a suspension begun before the close moves it on at its resume: not over
    /// while it lasts. One begun after the close moves it to before its resume: over. (The
    /// first version called the round over during any pause that spanned the close, then
    /// ignored one begun after it: the line was told "closed", then shown an estimate.)
    #[test]
    fn the_round_is_over_only_when_no_resume_can_move_the_close_on() {
        use super::round_over;
        let close = 10_000;
        assert!(!round_over(true, 9_999, close, None, None));
        assert!(round_over(true, 10_000, close, None, None));
        assert!(
            !round_over(false, 10_000, close, None, None),
            "never opened"
        );
        assert!(
            !round_over(true, 12_000, close, Some(9_000), None),
            "paused before"
        );
        assert!(
            !round_over(true, 12_000, close, None, Some(9_000)),
            "suspended before"
        );
        assert!(
            round_over(true, 12_000, close, Some(11_000), None),
            "paused after"
        );
        assert!(
            round_over(true, 12_000, close, None, Some(10_000)),
            "suspended at it"
        );
    }

    #[test]
    fn values_numbers_placeholders_row_by_row() {
        assert_eq!(super::super::values(2, 2, 3), "($3, $4), ($5, $6)");
    }
}
