//! The admitter's tick (the freeze of the pre-opening list, admissions in ticket order
//! bounded by the units left, the queue's clock) and an admission's use at apply.

use sqlx::Row;

use super::super::{Store, StoreError};
use super::{QueueState, STALL_MS};
use crate::transparency::{Event, EARLY};

impl Store {
    /// One admitter tick for a campaign (any replica may run it; ticks and joins take the
    /// campaign's lock in turn). Admits at the license's rate, bounded by the admitted
    /// applicants still within their time, and only while the license is active and not
    /// sold out. Returns the state as committed.
    pub async fn advance_queue(&self, license_id: &str) -> Result<Option<QueueState>, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        self.bound_admitter_tx(&mut tx).await?;
        let Some(q) = self.lock_queue(&mut tx, license_id, true).await? else {
            return Ok(None);
        };
        let now = q.now_ms;
        let opened = q.opened || now >= q.opens_at_ms;
        let mut serving = q.serving;
        let (mut clock, mut carry) = (q.clock_ms, q.carry_milli);
        // Admitted applicants still within their time, once counted.
        let mut live = None;
        // At the opening the pre-opening list is final (every early join committed under
        // this lock before): freeze it. Its tickets need the seed, revealed only after.
        let seeded = if opened {
            self.freeze_early(&mut tx, license_id, now).await?
        } else {
            false
        };
        let waiting_for_seed = !seeded && q.serving < q.early;
        // Suspended or sold out: nobody is admitted and the queue's clock stands still.
        // After the close (moved on by suspensions) the clock runs, so the admitted keep
        // exactly their time, but nobody new is admitted.
        if opened && !q.suspended && !q.sold_out {
            let admitting = now < q.closes_at_ms;
            let since = if q.clock_ms == 0 {
                q.opens_at_ms
            } else {
                q.clock_ms
            };
            let gap = now - since;
            if q.clock_ms != 0 && gap > STALL_MS {
                // The queue's time stood still from `clock + STALL` until now: every
                // deadline still running then runs on by as much.
                let stood = gap - STALL_MS;
                let extended = sqlx::query(
                    "UPDATE queue_admissions SET deadline_ms = deadline_ms + $3 \
                     WHERE license_id = $1 AND released = 0 AND deadline_ms > $2",
                )
                .bind(license_id)
                .bind(q.clock_ms + STALL_MS)
                .bind(stood)
                .execute(&mut *tx)
                .await?;
                // Only when somebody's deadline moved: a queue that rested over (nobody
                // within their time, `crate::admitter`) and is woken stood still too.
                if extended.rows_affected() > 0 {
                    tracing::warn!(
                        campaign = license_id,
                        stood_ms = stood,
                        extended = extended.rows_affected(),
                        "the queue's clock stood still; deadlines extended"
                    );
                }
            }
            let counted = self.live_admissions(&mut tx, license_id, now).await?;
            // Nothing is owed while the first tickets wait for their seed, nor while the
            // ministry has paused admissions: no burst after.
            let allowance = if waiting_for_seed || !admitting || q.admissions_paused {
                0
            } else {
                carry + gap.clamp(0, STALL_MS) * q.rate_per_min / 60
            };
            // Never more admitted than units left for them: at sell-out as at the opening,
            // every admitted applicant has a unit, so a faster script with a later ticket
            // cannot take the one an earlier ticket was admitted for.
            // Both bounds: the one-snapshot count (an application committing between two
            // reads cannot free a unit twice) and the count after the deadlines were
            // extended (admissions a stall revived are promised units too).
            let k = (allowance / 1000)
                .min(q.max_active - counted)
                .min(q.units_left)
                .min(q.units_unsold - counted)
                .min(q.early + q.late - serving)
                .max(0);
            let first = serving + 1;
            let tickets: Vec<i64> = (first..first + k).collect();
            for chunk in tickets.chunks(super::super::CHUNK) {
                let sql = format!(
                    "INSERT INTO queue_admissions (license_id, ticket, admitted_at_ms, deadline_ms) VALUES {}",
                    super::super::values(chunk.len(), 4, 1)
                );
                let mut query = sqlx::query(&sql);
                for t in chunk {
                    query = query
                        .bind(license_id)
                        .bind(*t)
                        .bind(now)
                        .bind(now + q.window_ms);
                }
                query.execute(&mut *tx).await?;
            }
            if k > 0 {
                let event = Event::Admitted {
                    first,
                    last: first + k - 1,
                    at_ms: now,
                };
                self.log_event(&mut tx, license_id, &event).await?;
            }
            serving += k;
            live = Some(counted + k);
            // An idle queue does not bank admissions for a burst later: at most a minute's.
            carry = (allowance - k * 1000).min(q.rate_per_min * 1000);
            clock = now;
        }
        sqlx::query(
            "UPDATE queue_campaigns SET serving = $2, clock_ms = $3, carry_milli = $4, opened = $5 \
             WHERE license_id = $1",
        )
        .bind(license_id)
        .bind(serving)
        .bind(clock)
        .bind(carry)
        .bind(i64::from(opened))
        .execute(&mut *tx)
        .await?;
        let live = match live {
            Some(n) => n,
            None => self.live_admissions(&mut tx, license_id, now).await?,
        };
        let seed = self.campaign_seed_in(&mut tx, license_id).await?;
        tx.commit().await?;
        Ok(Some(QueueState {
            serving,
            early: q.early,
            late: q.late,
            opened,
            sold_out: q.sold_out,
            suspended: q.suspended,
            live,
            unsold: q.units_unsold,
            over: super::round_over(
                opened,
                now,
                q.closes_at_ms,
                q.paused_since,
                q.suspended_since,
            ),
            seed,
        }))
    }

    /// Freezes the pre-opening list once (its holders in arrival order) and says whether
    /// the seed that orders it exists.
    async fn freeze_early(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let frozen = sqlx::query("SELECT seed FROM campaign_seeds WHERE license_id = $1")
            .bind(license_id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = frozen {
            return Ok(row.try_get::<Option<String>, _>("seed")?.is_some());
        }
        let holders: Vec<String> = sqlx::query(
            "SELECT holder FROM queue_tickets WHERE license_id = $1 AND number < 0 ORDER BY number DESC",
        )
        .bind(license_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get("holder"))
        .collect::<Result<_, _>>()?;
        self.freeze_list(conn, license_id, EARLY, &holders, now_ms)
            .await?;
        Ok(self.campaign_seed_in(conn, license_id).await?.is_some())
    }

    pub(super) async fn live_admissions(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM queue_admissions \
             WHERE license_id = $1 AND released = 0 AND deadline_ms > $2",
        )
        .bind(license_id)
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?)
    }

    /// Whether `ticket` holds a live admission now, on the queue's clock.
    pub async fn is_admitted(&self, license_id: &str, ticket: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(&format!(
            "SELECT 1 AS one FROM queue_admissions WHERE {}",
            self.live_ticket_sql()
        ))
        .bind(license_id)
        .bind(ticket)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Gives an admitted slot back (its holder gave up). Library callers; the service
    /// releases an applicant's own slot only, with [`Self::release_own_admission`].
    pub async fn release_admission(&self, license_id: &str, ticket: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE queue_admissions SET released = 1 WHERE license_id = $1 AND ticket = $2",
        )
        .bind(license_id)
        .bind(ticket)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives back the admitted slot of an applicant refused for good, if the slot is
    /// theirs: a ticket in a forged cookie releases nobody else's.
    pub async fn release_own_admission(
        &self,
        license_id: &str,
        req: &crate::domain::ApplicationRequest,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE queue_admissions SET released = 1 \
             WHERE license_id = $1 AND ticket = $2 AND {}",
            Self::OWNS_TICKET
        ))
        .bind(license_id)
        .bind(req.ticket)
        .bind(&req.holder.0)
        .bind(req.arrival.map_or(req.ticket, |a| -a))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The holder `$3` joined campaign `$1` with queue number `$4` (the ticket, or minus
    /// a pre-opening arrival, whose ticket the seed gives).
    const OWNS_TICKET: &'static str = "EXISTS (SELECT 1 FROM queue_tickets t \
         WHERE t.license_id = $1 AND t.holder = $3 AND t.number = $4)";

    /// Uses a live admission inside an application's transaction: true if the applicant's
    /// ticket was admitted, its time (on the queue's clock) has not run out, and the
    /// ticket is the applicant's own. The ticket in the cookie is signed, but whoever holds
    /// the signing key could sign another's number: the holder is checked here, against
    /// the queue's record, in the transaction that spends the turn.
    pub(crate) async fn claim_admission(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        req: &crate::domain::ApplicationRequest,
    ) -> Result<bool, StoreError> {
        let used = sqlx::query(&format!(
            "UPDATE queue_admissions SET released = 1 WHERE {} AND {}",
            self.live_ticket_sql(),
            Self::OWNS_TICKET
        ))
        .bind(license_id)
        .bind(req.ticket)
        .bind(&req.holder.0)
        .bind(req.arrival.map_or(req.ticket, |a| -a))
        .execute(&mut *conn)
        .await?;
        Ok(used.rows_affected() == 1)
    }
}

impl Store {
    /// The tickets after `after` of live admissions whose time (on the queue's clock)
    /// runs out within `soon_ms`, in ticket order, at most 1 000.
    pub async fn admissions_lapsing(
        &self,
        license_id: &str,
        soon_ms: i64,
        after: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT ticket FROM queue_admissions WHERE license_id = $1 AND released = 0 \
             AND ticket > $3 AND deadline_ms > {now} AND deadline_ms <= {now} + $2 \
             ORDER BY ticket LIMIT 1000",
            now = self.queue_time_sql()
        ))
        .bind(license_id)
        .bind(soon_ms)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("ticket").map_err(StoreError::from))
            .collect()
    }

    /// The holders admitted with tickets `from..=to` and their time to apply (ms, on the
    /// queue's clock): an early arrival's number is recovered from its ticket with the
    /// seed, as the admitted citizen's own cookie names it.
    pub async fn admitted_holders(
        &self,
        license_id: &str,
        from: i64,
        to: i64,
        state: &crate::queue::QueueState,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        // Each admitted ticket's number in `queue_tickets` (an early arrival's recovered
        // from the seed), then one read per chunk of them, not one per ticket.
        let mut pairs: Vec<(i64, i64)> = Vec::new();
        for ticket in from.max(1)..=to {
            let number = if ticket <= state.early {
                let Some(seed) = state.seed.as_deref() else {
                    continue;
                };
                match emta_verify::shuffle::early_arrival(seed.as_bytes(), state.early, ticket) {
                    Some(arrival) => -arrival,
                    None => continue,
                }
            } else {
                ticket
            };
            pairs.push((number, ticket));
        }
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(200) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                        2 + 2 * i,
                        3 + 2 * i
                    )
                })
                .collect();
            let sql = format!(
                "WITH w (number, ticket) AS (VALUES {}) \
                 SELECT w.ticket AS ticket, t.holder AS holder, a.deadline_ms AS deadline_ms \
                 FROM w JOIN queue_tickets t ON t.license_id = $1 AND t.number = w.number \
                 JOIN queue_admissions a ON a.license_id = $1 AND a.ticket = w.ticket \
                 ORDER BY w.ticket",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(license_id);
            for (number, ticket) in chunk {
                q = q.bind(*number).bind(*ticket);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push((
                    r.try_get("ticket")?,
                    r.try_get("holder")?,
                    r.try_get("deadline_ms")?,
                ));
            }
        }
        Ok(out)
    }
}
