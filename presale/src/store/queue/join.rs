//! Join batches: numbered from one read and written by a compare-and-swap on the
//! campaign's counters (PostgreSQL), or under the campaign's row lock.

use std::collections::HashMap;

use sqlx::Row;

use super::super::{Store, StoreError};
use super::Joined;
use crate::transparency::Event;

/// A campaign's row, locked, with its license and the database's time after the lock.
pub(super) struct Locked {
    pub(super) opens_at_ms: i64,
    pub(super) early: i64,
    pub(super) late: i64,
    pub(super) opened: bool,
    pub(super) serving: i64,
    pub(super) clock_ms: i64,
    pub(super) carry_milli: i64,
    pub(super) now_ms: i64,
    pub(super) suspended: bool,
    /// Admissions paused by the ministry (the license still active).
    pub(super) admissions_paused: bool,
    /// Since when admissions are paused, and since when the license is suspended (each
    /// resume moves the close on by its length).
    pub(super) paused_since: Option<i64>,
    pub(super) suspended_since: Option<i64>,
    pub(super) sold_out: bool,
    /// Units neither taken by an accepted application nor promised to a live
    /// admission, read in one snapshot (ticks only).
    pub(super) units_left: i64,
    /// Units not taken by an accepted application (same snapshot).
    pub(super) units_unsold: i64,
    /// When the admitter stops: the license's close, moved on by its suspensions.
    pub(super) closes_at_ms: i64,
    pub(super) rate_per_min: i64,
    pub(super) max_active: i64,
    pub(super) window_ms: i64,
}

impl Locked {
    fn view(&self) -> JoinView {
        JoinView {
            opens_at_ms: self.opens_at_ms,
            early: self.early,
            late: self.late,
            opened: self.opened,
            now_ms: self.now_ms,
            suspended: self.suspended,
            sold_out: self.sold_out,
        }
    }
}

/// The connection a join committer keeps between its batches, and whether its batches
/// race others'. Taking a connection from the pool costs a round trip (sqlx pings an idle
/// one before lending it), a third of an optimistic batch. It is kept only while batches
/// follow each other: one idle for a second, or one whose batch failed, goes back to the
/// pool, so the next batch takes a checked one (after a database restart, say).
#[derive(Default)]
pub(crate) struct Held {
    conn: Option<(sqlx::pool::PoolConnection<sqlx::Any>, std::time::Instant)>,
    /// Until when batches go straight to the lock: an optimistic batch lost a race.
    locked_until: Option<std::time::Instant>,
}

impl Held {
    /// How long a kept connection may sit idle and still be used unchecked.
    pub(crate) const IDLE: std::time::Duration = std::time::Duration::from_secs(1);
    /// How long batches take the lock after one lost a race. Under a surge on several
    /// replicas most optimistic batches would lose (each read wasted); at a lull, or on
    /// one replica, they win.
    const LOCKED_AFTER_A_RACE: std::time::Duration = std::time::Duration::from_millis(200);

    async fn take(
        &mut self,
        pool: &sqlx::AnyPool,
    ) -> Result<&mut sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        let conn = match self.conn.take() {
            Some((conn, last)) if last.elapsed() <= Self::IDLE => conn,
            _ => pool.acquire().await?,
        };
        let (conn, _) = self.conn.insert((conn, std::time::Instant::now()));
        Ok(conn)
    }

    pub(crate) fn release(&mut self) {
        self.conn = None;
    }

    fn optimistic(&self) -> bool {
        self.locked_until
            .is_none_or(|until| std::time::Instant::now() >= until)
    }

    fn raced(&mut self) {
        tracing::debug!("a join batch raced another; taking the lock for a while");
        self.locked_until = Some(std::time::Instant::now() + Self::LOCKED_AFTER_A_RACE);
    }
}

/// An optimistic batch after its read: answered already (nobody new to number), or
/// numbered and waiting for its swap.
pub(crate) enum Prepared<'a> {
    Answered(Vec<Joined>),
    Numbered(Box<(JoinView, Plan<'a>)>),
}

/// What a join batch decides from: its campaign's counters, the license's standing and
/// the database's time, read under the campaign's lock or, optimistically, before it.
pub(crate) struct JoinView {
    opens_at_ms: i64,
    early: i64,
    late: i64,
    opened: bool,
    now_ms: i64,
    suspended: bool,
    sold_out: bool,
}

/// A batch decided: the answers in the order asked, the holders numbered now, their log
/// records, and the counters after.
pub(crate) struct Plan<'a> {
    answers: Vec<Joined>,
    fresh: Vec<(&'a String, i64)>,
    /// The national IDs whose holds the fresh places stand on (each once): a swap takes
    /// effect only if each is still held, and keeps it so until it commits.
    holds: Vec<&'a str>,
    events: Vec<Event>,
    early: i64,
    late: i64,
    opened: i64,
}

impl JoinView {
    /// From a row with the columns of the campaign and its license.
    fn read(row: &sqlx::any::AnyRow) -> Result<Self, StoreError> {
        let status: String = row.try_get("status")?;
        Ok(Self {
            opens_at_ms: row.try_get("opens_at_ms")?,
            early: row.try_get("early")?,
            late: row.try_get("late")?,
            opened: row.try_get::<i64, _>("opened")? == 1,
            now_ms: row.try_get("now_ms")?,
            suspended: status != crate::domain::LicenseStatus::Active.as_str(),
            sold_out: row.try_get::<i64, _>("accepted")? >= row.try_get::<i64, _>("units")?,
        })
    }

    /// Numbers the holders not `known` yet (a holder twice in the batch gets one number).
    /// A holder whose place needs a confirmed hold (`hold_of`, aligned with `holders`, or
    /// empty: nobody's does) that is not among those `holding` is refused first, as if the
    /// join had not been asked.
    fn plan<'a>(
        &self,
        holders: &'a [String],
        mut known: HashMap<String, i64>,
        hold_of: &'a [Option<String>],
        holding: &std::collections::HashSet<String>,
    ) -> Plan<'a> {
        debug_assert!(hold_of.is_empty() || hold_of.len() == holders.len());
        let hold = |i: usize| hold_of.get(i).and_then(|n| n.as_deref());
        let refused = if self.suspended {
            Some(Joined::Suspended)
        } else if self.sold_out {
            Some(Joined::SoldOut)
        } else {
            None
        };
        // Once anything happened at or after the opening, nothing is early again.
        let early_now = self.now_ms < self.opens_at_ms && !self.opened;
        let (mut early, mut late) = (self.early, self.late);
        let mut fresh: Vec<(&String, i64)> = Vec::new();
        let mut holds: Vec<&str> = Vec::new();
        let answers: Vec<Joined> = holders
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if hold(i).is_some_and(|n| !holding.contains(n)) {
                    return Joined::NoHold;
                }
                if let Some(&n) = known.get(h) {
                    return Joined::of(n, false);
                }
                if let Some(r) = refused {
                    return r;
                }
                let n = if early_now {
                    early += 1;
                    -early
                } else {
                    late += 1;
                    early + late
                };
                known.insert(h.clone(), n);
                fresh.push((h, n));
                holds.extend(hold(i));
                Joined::of(n, true)
            })
            .collect();
        let events = fresh
            .iter()
            .map(|(h, n)| Event::Ticket {
                holder: (*h).clone(),
                arrival: (*n < 0).then_some(-n),
                ticket: (*n > 0).then_some(*n),
            })
            .collect();
        holds.sort_unstable();
        holds.dedup();
        Plan {
            answers,
            fresh,
            holds,
            events,
            early,
            late,
            opened: i64::from(self.opened || !early_now),
        }
    }
}

/// The national IDs whose holds a batch must find (each once).
fn needed(hold_of: &[Option<String>]) -> Vec<&str> {
    let mut ids: Vec<&str> = hold_of.iter().flatten().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Store {
    /// Locks a campaign's row (the first statement writes, as SQLite's writers must).
    ///
    /// A join reads the license's terms in the same round trip on PostgreSQL. An admitter
    /// `tick` reads them in a statement of its own after the lock: under READ COMMITTED,
    /// an UPDATE that waited for the row re-checks only that row and keeps the joined
    /// license as its snapshot saw it, so a tick that waited behind a suspension (which
    /// moves this row's clock) would still see the license active and admit a second's
    /// worth of people. A new statement sees what committed before the lock was granted.
    pub(super) async fn lock_queue(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        tick: bool,
    ) -> Result<Option<Locked>, StoreError> {
        let joined = self.postgres && !tick;
        // PostgreSQL: the lock and the license's terms in one round trip (SQLite's RETURNING
        // may not name a joined table; it is in-process, so two statements cost little).
        let Some(q) = sqlx::query(&if joined {
            format!(
                "UPDATE queue_campaigns q SET opened = q.opened FROM licenses l \
                 WHERE q.license_id = $1 AND l.id = q.license_id \
                 RETURNING q.opens_at_ms, q.early, q.late, q.opened, q.serving, q.clock_ms, \
                 q.carry_milli, l.status, l.accepted, l.units, l.admission_per_min, \
                 l.max_active, l.apply_window_secs, l.closes_at, l.paused_ms, \
                 l.admissions_paused_at_ms, l.suspended_at_ms, {} AS now_ms",
                self.now_ms_sql()
            )
        } else {
            format!(
                "UPDATE queue_campaigns SET opened = opened WHERE license_id = $1 \
                 RETURNING opens_at_ms, early, late, opened, serving, clock_ms, carry_milli, \
                 {} AS now_ms",
                self.now_ms_sql()
            )
        })
        .bind(license_id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let separate = if joined {
            None
        } else {
            Some(
                // The live admissions in the same statement as `accepted`: one snapshot,
                // so an application that commits between two reads (its admission
                // spent, `accepted` not yet seen) cannot make a unit look free twice.
                sqlx::query(&format!(
                    "SELECT status, accepted, units, admission_per_min, max_active, \
                     apply_window_secs, closes_at, paused_ms, admissions_paused_at_ms, \
                     suspended_at_ms, \
                     (SELECT COUNT(*) FROM queue_admissions a WHERE a.license_id = $1 \
                      AND a.released = 0 AND a.deadline_ms > {}) AS live \
                     FROM licenses WHERE id = $1",
                    self.now_ms_sql()
                ))
                .bind(license_id)
                .fetch_one(&mut *conn)
                .await?,
            )
        };
        let l = separate.as_ref().unwrap_or(&q);
        let status: String = l.try_get("status")?;
        let accepted: i64 = l.try_get("accepted")?;
        let units: i64 = l.try_get("units")?;
        Ok(Some(Locked {
            opens_at_ms: q.try_get("opens_at_ms")?,
            early: q.try_get("early")?,
            late: q.try_get("late")?,
            opened: q.try_get::<i64, _>("opened")? == 1,
            serving: q.try_get("serving")?,
            clock_ms: q.try_get("clock_ms")?,
            carry_milli: q.try_get("carry_milli")?,
            now_ms: q.try_get("now_ms")?,
            suspended: status != crate::domain::LicenseStatus::Active.as_str(),
            admissions_paused: l
                .try_get::<Option<i64>, _>("admissions_paused_at_ms")?
                .is_some(),
            paused_since: l.try_get("admissions_paused_at_ms")?,
            suspended_since: l.try_get("suspended_at_ms")?,
            sold_out: accepted >= units,
            units_unsold: units - accepted,
            // For a join (no tick) the units left are not used.
            units_left: units
                - accepted
                - match &separate {
                    Some(r) => r.try_get::<i64, _>("live")?,
                    None => 0,
                },
            closes_at_ms: l.try_get::<i64, _>("closes_at")? * 1000
                + l.try_get::<i64, _>("paused_ms")?,
            rate_per_min: l.try_get("admission_per_min")?,
            max_active: l.try_get("max_active")?,
            window_ms: l.try_get::<i64, _>("apply_window_secs")? * 1000,
        }))
    }

    /// Joins a batch of holders (keyed hashes of national IDs) to a campaign's queue in one
    /// transaction: group commit. Idempotent per holder, within the batch too. Answers in
    /// the order of `holders`, after the commit.
    pub async fn join_queue(
        &self,
        license_id: &str,
        holders: &[String],
    ) -> Result<Vec<Joined>, StoreError> {
        self.join_batch(&mut Held::default(), license_id, holders, &[])
            .await
    }

    /// [`Self::join_queue`] for a replica's committer, on the connection it keeps between
    /// batches.
    ///
    /// On PostgreSQL a batch first tries without holding the campaign's lock across round
    /// trips ([`Self::prepare_join`], [`Self::swap_join`]): two statements and no explicit
    /// transaction, where the locked path takes five (six when places need holds) with
    /// the lock held through all of them. When another batch (another replica's, or the admitter's tick that freezes
    /// the pre-opening list) moved the counters in between, nothing was written and the
    /// batch takes the lock; while batches keep racing like that (replicas joining the
    /// same campaign at full speed), the committer goes straight to the lock for a while.
    ///
    /// `hold_of` names, for each holder whose place needs a confirmed hold first, its
    /// national ID (empty: nobody's does): one without is answered [`Joined::NoHold`],
    /// from the batch's own read, not a read of its own per join. The holds the new places
    /// stand on are kept held until the batch commits (`FOR SHARE`), so that a withdrawal
    /// racing the join waits and then finds the place. Applying checks the hold again
    /// under its lock.
    pub(crate) async fn join_batch(
        &self,
        held: &mut Held,
        license_id: &str,
        holders: &[String],
        hold_of: &[Option<String>],
    ) -> Result<Vec<Joined>, StoreError> {
        if self.postgres && holders.len() <= super::super::CHUNK && held.optimistic() {
            let tried = match self.prepare_join(held, license_id, holders, hold_of).await {
                Ok(Prepared::Answered(answers)) => return Ok(answers),
                Ok(Prepared::Numbered(batch)) => self.swap_join(held, license_id, batch).await,
                Err(e) => Err(e),
            };
            match tried {
                Ok(Some(answers)) => return Ok(answers),
                Ok(None) => held.raced(),
                Err(e) => {
                    // Whatever broke, the next batch starts on a connection the pool checked.
                    held.release();
                    return Err(e);
                }
            }
        }
        self.join_queue_locked(license_id, holders, hold_of).await
    }

    /// The optimistic batch's first step (PostgreSQL): the counters, the license's standing,
    /// the holders already known and the holds the batch's places need (see
    /// [`Self::join_batch`]), read without a lock, and the batch numbered from them.
    pub(crate) async fn prepare_join<'a>(
        &self,
        held: &mut Held,
        license_id: &str,
        holders: &'a [String],
        hold_of: &'a [Option<String>],
    ) -> Result<Prepared<'a>, StoreError> {
        let needed = needed(hold_of);
        let tickets = format!(
            "SELECT 't' AS kind, holder, number FROM queue_tickets \
             WHERE license_id = $1 AND holder IN {}",
            super::super::values(1, holders.len(), 2)
        );
        let sql = if needed.is_empty() {
            format!(
                "SELECT q.opens_at_ms, q.early, q.late, q.opened, l.status, l.accepted, l.units, \
                 {} AS now_ms, t.kind, t.holder, t.number \
                 FROM queue_campaigns q JOIN licenses l ON l.id = q.license_id \
                 LEFT JOIN ({tickets}) t ON TRUE WHERE q.license_id = $1",
                self.now_ms_sql(),
            )
        } else {
            format!(
                "SELECT q.opens_at_ms, q.early, q.late, q.opened, l.status, l.accepted, l.units, \
                 {} AS now_ms, t.kind, t.holder, t.number \
                 FROM queue_campaigns q JOIN licenses l ON l.id = q.license_id \
                 LEFT JOIN ({tickets} UNION ALL \
                 SELECT 'h' AS kind, national_id, 0 FROM holds WHERE license_id = $1 \
                 AND state = 'held' AND national_id IN {}) t ON TRUE \
                 WHERE q.license_id = $1",
                self.now_ms_sql(),
                super::super::values(1, needed.len(), 2 + holders.len())
            )
        };
        let mut query = sqlx::query(&sql).bind(license_id);
        for h in holders {
            query = query.bind(h);
        }
        for n in &needed {
            query = query.bind(*n);
        }
        let rows = query.fetch_all(&mut **held.take(&self.pool).await?).await?;
        let Some(first) = rows.first() else {
            return Ok(Prepared::Answered(vec![Joined::Unknown; holders.len()]));
        };
        let view = JoinView::read(first)?;
        let mut known = HashMap::new();
        let mut holding = std::collections::HashSet::new();
        for row in &rows {
            let Some(h) = row.try_get::<Option<String>, _>("holder")? else {
                continue;
            };
            if row.try_get::<String, _>("kind")? == "h" {
                holding.insert(h);
            } else {
                known.insert(h, row.try_get("number")?);
            }
        }
        let plan = view.plan(holders, known, hold_of, &holding);
        Ok(if plan.fresh.is_empty() {
            Prepared::Answered(plan.answers)
        } else {
            Prepared::Numbered(Box::new((view, plan)))
        })
    }

    /// The optimistic batch's second step: tickets, log records and counters in one
    /// statement (its own transaction) that takes effect only if the counters are still
    /// those the batch was numbered from, a compare-and-swap on `(early, late, opened)`.
    /// `None` when it did not take effect: nothing was written.
    ///
    /// Why it is as safe as the lock: whatever issues a ticket or freezes the pre-opening
    /// list (this, the locked batch, the admitter's tick at the opening) changes those
    /// counters in that row, and they only grow, so a swap that finds the values it read
    /// saw nothing issued or frozen since. PostgreSQL re-checks the condition on the row's
    /// latest version after waiting for its lock.
    pub(crate) async fn swap_join(
        &self,
        held: &mut Held,
        license_id: &str,
        batch: Box<(JoinView, Plan<'_>)>,
    ) -> Result<Option<Vec<Joined>>, StoreError> {
        let (view, plan) = *batch;
        let n = plan.fresh.len();
        let tickets = super::super::values(n, 2, 9);
        let records = super::super::values(n, 2, 9 + 2 * n);
        // The holds the new places stand on, still held, and kept so until the commit (a
        // withdrawal racing this batch waits, then finds the place; one that came first
        // leaves fewer held rows, and the swap does not take effect).
        let holds = if plan.holds.is_empty() {
            String::new()
        } else {
            format!(
                "AND (SELECT COUNT(*) FROM (SELECT 1 FROM holds WHERE license_id = $1 \
                 AND state = 'held' AND national_id IN {} FOR SHARE) h) = {} ",
                super::super::values(1, plan.holds.len(), 9 + 4 * n),
                plan.holds.len()
            )
        };
        let sql = format!(
            "WITH c AS (UPDATE queue_campaigns SET early = $2, late = $3, opened = $4 \
             WHERE license_id = $1 AND early = $5 AND late = $6 AND opened = $7 {holds}\
             RETURNING license_id), \
             t AS (INSERT INTO queue_tickets (license_id, holder, number, joined_at_ms) \
             SELECT c.license_id, v.holder, v.number, $8 FROM c, (VALUES {tickets}) AS v (holder, number)), \
             p AS (INSERT INTO log_pending (license_id, body, ref) \
             SELECT c.license_id, v.body, v.ref FROM c, (VALUES {records}) AS v (body, ref)) \
             SELECT COUNT(*) AS swapped FROM c"
        );
        let mut query = sqlx::query(&sql)
            .bind(license_id)
            .bind(plan.early)
            .bind(plan.late)
            .bind(plan.opened)
            .bind(view.early)
            .bind(view.late)
            .bind(i64::from(view.opened))
            .bind(view.now_ms);
        for (h, n) in &plan.fresh {
            query = query.bind(*h).bind(*n);
        }
        for e in &plan.events {
            query = query.bind(e.line()).bind(e.holder());
        }
        for n in &plan.holds {
            query = query.bind(*n);
        }
        let swapped: i64 = query
            .fetch_one(&mut **held.take(&self.pool).await?)
            .await?
            .try_get("swapped")?;
        Ok((swapped == 1).then_some(plan.answers))
    }

    /// The batch under the campaign's lock, held from the first statement to the commit.
    async fn join_queue_locked(
        &self,
        license_id: &str,
        holders: &[String],
        hold_of: &[Option<String>],
    ) -> Result<Vec<Joined>, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let Some(q) = self.lock_queue(&mut tx, license_id, false).await? else {
            return Ok(vec![Joined::Unknown; holders.len()]);
        };
        let mut known: HashMap<String, i64> = HashMap::new();
        for chunk in holders.chunks(super::super::CHUNK) {
            let sql = format!(
                "SELECT holder, number FROM queue_tickets WHERE license_id = $1 AND holder IN {}",
                super::super::values(1, chunk.len(), 2)
            );
            let mut query = sqlx::query(&sql).bind(license_id);
            for h in chunk {
                query = query.bind(h);
            }
            for row in query.fetch_all(&mut *tx).await? {
                known.insert(row.try_get("holder")?, row.try_get("number")?);
            }
        }
        // The holds of those to be placed now are kept held until the batch commits
        // (PostgreSQL; SQLite's writer lock is taken already): a withdrawal waits, then
        // finds the place and keeps the hold; one that came first has released it, and the
        // row is no longer read as held. Those placed before are only read: an application
        // of theirs may hold their hold's lock while it waits for the license's row, which
        // a suspension may hold while it waits for this campaign's.
        let (new, placed): (Vec<_>, Vec<_>) = holders
            .iter()
            .zip(hold_of)
            .partition(|(h, _)| !known.contains_key(*h));
        let ids = |v: Vec<(&String, &Option<String>)>| -> Vec<Option<String>> {
            v.into_iter().map(|(_, n)| n.clone()).collect()
        };
        let mut holding = std::collections::HashSet::new();
        for (ids, lock) in [(ids(new), self.postgres), (ids(placed), false)] {
            for chunk in needed(&ids).chunks(super::super::CHUNK) {
                let sql = format!(
                    "SELECT national_id FROM holds WHERE license_id = $1 AND state = 'held' \
                     AND national_id IN {}{}",
                    super::super::values(1, chunk.len(), 2),
                    if lock { " FOR SHARE" } else { "" }
                );
                let mut query = sqlx::query(&sql).bind(license_id);
                for n in chunk {
                    query = query.bind(*n);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    holding.insert(row.try_get::<String, _>("national_id")?);
                }
            }
        }
        let Plan {
            answers,
            fresh,
            events,
            early,
            late,
            opened,
            ..
        } = q.view().plan(holders, known, hold_of, &holding);
        if self.postgres && !fresh.is_empty() && fresh.len() <= super::super::CHUNK {
            // One round trip for the batch's writes (under the campaign's lock, every
            // round trip is time nobody else joins): tickets, log records, counters.
            let tickets = super::super::values(fresh.len(), 4, 5);
            let records = super::super::values(fresh.len(), 3, 5 + 4 * fresh.len());
            let sql = format!(
                "WITH t AS (INSERT INTO queue_tickets (license_id, holder, number, joined_at_ms) \
                 VALUES {tickets}), \
                 p AS (INSERT INTO log_pending (license_id, body, ref) VALUES {records}) \
                 UPDATE queue_campaigns SET early = $2, late = $3, opened = $4 WHERE license_id = $1"
            );
            let mut query = sqlx::query(&sql)
                .bind(license_id)
                .bind(early)
                .bind(late)
                .bind(opened);
            for (h, n) in &fresh {
                query = query.bind(license_id).bind(*h).bind(*n).bind(q.now_ms);
            }
            for e in &events {
                query = query.bind(license_id).bind(e.line()).bind(e.holder());
            }
            query.execute(&mut *tx).await?;
        } else {
            for chunk in fresh.chunks(super::super::CHUNK) {
                let sql = format!(
                    "INSERT INTO queue_tickets (license_id, holder, number, joined_at_ms) VALUES {}",
                    super::super::values(chunk.len(), 4, 1)
                );
                let mut query = sqlx::query(&sql);
                for (h, n) in chunk {
                    query = query.bind(license_id).bind(*h).bind(*n).bind(q.now_ms);
                }
                query.execute(&mut *tx).await?;
            }
            self.log_events(&mut tx, license_id, &events).await?;
            sqlx::query(
                "UPDATE queue_campaigns SET early = $2, late = $3, opened = $4 WHERE license_id = $1",
            )
            .bind(license_id)
            .bind(early)
            .bind(late)
            .bind(opened)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewLicense;

    /// A queue campaign on a fresh PostgreSQL database, opening `opens_in` seconds from now.
    async fn campaign(opens_in: i64) -> (Store, String, testkit::servers::FreshDatabase) {
        campaign_with(opens_in, None).await
    }

    /// The same, registering with `registration`.
    async fn campaign_with(
        opens_in: i64,
        registration: Option<crate::domain::Registration>,
    ) -> (Store, String, testkit::servers::FreshDatabase) {
        let db = testkit::Backend::Servers.database("presale").await;
        let store = Store::connect(&db.url, 4).await.expect("store");
        store.migrate().await.expect("migrate");
        let now = service_kit::clock::now();
        let terms = NewLicense {
            delivery_deadline: now + 200 * 24 * 3600,
            opens_at: now + opens_in,
            closes_at: now + 3600,
            registration,
            ..crate::domain::license::tests::sample()
        };
        let id = store
            .issue_license(&terms, now)
            .await
            .expect("sql")
            .expect("valid");
        (store, id, db)
    }

    /// A queue campaign taking the hold before joining, opened already, on a fresh
    /// PostgreSQL database, and one person's confirmed hold: (store, campaign, the person's
    /// batch of one, its `hold_of`, the database).
    async fn campaign_with_a_hold() -> (
        Store,
        String,
        Vec<String>,
        Vec<Option<String>>,
        testkit::servers::FreshDatabase,
    ) {
        let (store, id, db) = campaign_with(
            -5,
            Some(crate::domain::Registration {
                hold: Some(crate::domain::HoldTerms {
                    banks: vec!["melli".into()],
                    amount: 1_000,
                    title: "round".into(),
                    before: crate::domain::HoldBefore::Entry,
                }),
                ..crate::domain::Registration::default()
            }),
        )
        .await;
        let nid = crate::domain::NationalId::parse("0499370899").expect("valid");
        let holder = crate::domain::Holder("h-0499370899".into());
        let hold = store
            .start_hold(&id, &nid, "c-1", &holder, "melli", 1_000, "round")
            .await
            .expect("sql")
            .expect("started");
        assert!(store
            .set_mandate(&hold.id, "melli", "tok", "state")
            .await
            .expect("mandate"));
        assert!(store.confirm_hold(&hold, "tok").await.expect("confirm"));
        (
            store,
            id,
            holders(&[&holder.0]),
            vec![Some(nid.as_str().to_owned())],
            db,
        )
    }

    /// The optimistic read of a batch that has somebody new to number.
    async fn numbered<'a>(
        store: &Store,
        held: &mut Held,
        id: &str,
        batch: &'a [String],
        hold_of: &'a [Option<String>],
    ) -> Box<(JoinView, Plan<'a>)> {
        match store
            .prepare_join(held, id, batch, hold_of)
            .await
            .expect("read")
        {
            Prepared::Numbered(numbered) => numbered,
            Prepared::Answered(a) => panic!("somebody new to number: {a:?}"),
        }
    }

    /// What a withdrawal does first: the hold's row locked, in a transaction left open.
    async fn withdrawal_begun(store: &Store, id: &str) -> sqlx::Transaction<'static, sqlx::Any> {
        let mut tx = store.pool.begin().await.expect("begin");
        sqlx::query("SELECT id FROM holds WHERE license_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .expect("lock");
        tx
    }

    /// A withdrawal between a batch's read and its swap: the batch read the hold as held,
    /// the withdrawal found no place yet and released it. Written anyway, the place would
    /// stand on no money (one sum behind many places). Found lacking when the swap checked
    /// only the counters: it must not take effect, and the batch retried is refused.
    #[tokio::test]
    async fn a_hold_withdrawn_between_a_batchs_read_and_its_swap_stops_the_swap() {
        let (store, id, batch, hold_of, _db) = campaign_with_a_hold().await;
        let nid = crate::domain::NationalId::parse("0499370899").expect("valid");
        let mut held = Held::default();
        let numbered = numbered(&store, &mut held, &id, &batch, &hold_of).await;
        let withdrawn = store.withdraw_hold(&id, &nid).await.expect("withdraw");
        assert!(
            withdrawn.is_some_and(|h| h.state != crate::store::holds::HoldState::Held),
            "no place yet: the withdrawal releases the hold"
        );
        let swapped = store
            .swap_join(&mut held, &id, numbered)
            .await
            .expect("swap");
        assert!(swapped.is_none(), "the swap took effect on a released hold");
        assert_eq!(
            store
                .join_batch(&mut held, &id, &batch, &hold_of)
                .await
                .expect("join"),
            vec![Joined::NoHold]
        );
    }

    /// A withdrawal that has locked the hold (and may release it) when the batch comes:
    /// the batch waits for it, on either path, rather than write a place on a hold about
    /// to go. Found lacking when the holds were only read.
    #[tokio::test]
    async fn a_batch_waits_for_a_withdrawal_of_a_hold_it_places_on() {
        let wait = std::time::Duration::from_millis(300);
        // The optimistic path's swap.
        let (store, id, batch, hold_of, _db) = campaign_with_a_hold().await;
        let mut held = Held::default();
        let numbered = numbered(&store, &mut held, &id, &batch, &hold_of).await;
        let withdrawal = withdrawal_begun(&store, &id).await;
        let swap = store.swap_join(&mut held, &id, numbered);
        tokio::pin!(swap);
        assert!(
            tokio::time::timeout(wait, &mut swap).await.is_err(),
            "the swap did not wait for the withdrawal"
        );
        withdrawal.rollback().await.expect("rollback");
        assert!(
            swap.await.expect("swap").is_some(),
            "the hold stayed: placed"
        );

        // The locked path.
        let (store, id, batch, hold_of, _db) = campaign_with_a_hold().await;
        let withdrawal = withdrawal_begun(&store, &id).await;
        let join = store.join_queue_locked(&id, &batch, &hold_of);
        tokio::pin!(join);
        assert!(
            tokio::time::timeout(wait, &mut join).await.is_err(),
            "the locked batch did not wait for the withdrawal"
        );
        withdrawal.rollback().await.expect("rollback");
        assert!(matches!(
            join.await.expect("join")[..],
            [Joined::Ticket { .. }]
        ));
    }

    fn holders(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// An optimistic batch is numbered from a read and written by a later statement; what
    /// happened in between must stop it. Here: the admitter's tick at the opening froze
    /// the pre-opening list between the two. Written anyway, the batch's people would be
    /// answered "early" and be missing from the frozen list (and `opened` would be set
    /// back). Found lacking when the swap compared only the counters.
    #[tokio::test]
    async fn a_batch_numbered_before_the_opening_is_not_written_after_the_freeze() {
        // Arrange: one early arrival; a batch read and numbered before the opening.
        let (store, id, _db) = campaign(1).await;
        store.join_queue(&id, &holders(&["a"])).await.expect("join");
        let mut held = Held::default();
        let late_comers = holders(&["b", "c"]);
        let Prepared::Numbered(batch) = store
            .prepare_join(&mut held, &id, &late_comers, &[])
            .await
            .expect("read")
        else {
            panic!("two new holders to number")
        };
        assert!(batch.1.fresh.iter().all(|(_, n)| *n < 0), "numbered early");

        // Act: the opening passes and a tick freezes the list; then the swap is tried.
        let opens = batch.0.opens_at_ms;
        while store.db_now_ms().await.expect("clock") < opens {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        store
            .advance_queue(&id)
            .await
            .expect("tick")
            .expect("queue");
        let swapped = store.swap_join(&mut held, &id, batch).await.expect("swap");

        // Assert: nothing written; the batch joins again as later arrivals, after the list.
        assert_eq!(
            swapped, None,
            "a batch numbered before the freeze was written after it"
        );
        let st = store.queue_state(&id).await.expect("state").expect("queue");
        assert_eq!((st.early, st.late, st.opened), (1, 0, true));
        let again = store
            .join_batch(&mut held, &id, &late_comers, &[])
            .await
            .expect("join");
        assert_eq!(
            again,
            vec![
                Joined::Ticket {
                    ticket: 2,
                    fresh: true
                },
                Joined::Ticket {
                    ticket: 3,
                    fresh: true
                }
            ]
        );
        let frozen = store.seed_status(&id).await.expect("seeds").frozen;
        assert_eq!(frozen.map(|(size, _)| size), Some(1), "the frozen list");
    }

    /// Two replicas number from the same read; the second swap finds the counters moved
    /// and writes nothing, then its committer takes the lock: nobody shares a number.
    #[tokio::test]
    async fn of_two_batches_numbered_from_one_read_only_the_first_is_written() {
        let (store, id, _db) = campaign(-5).await;
        // The queue is open and has a first ticket (so `opened` is set and stays).
        store.join_queue(&id, &holders(&["w"])).await.expect("join");
        let (mut one, mut two) = (Held::default(), Held::default());
        let (xs, ys) = (holders(&["x1", "x2"]), holders(&["y1"]));
        let (Prepared::Numbered(first), Prepared::Numbered(second)) = (
            store
                .prepare_join(&mut one, &id, &xs, &[])
                .await
                .expect("read"),
            store
                .prepare_join(&mut two, &id, &ys, &[])
                .await
                .expect("read"),
        ) else {
            panic!("new holders to number")
        };
        assert_eq!(
            store
                .swap_join(&mut one, &id, first)
                .await
                .expect("swap")
                .as_deref(),
            Some(
                &[
                    Joined::Ticket {
                        ticket: 2,
                        fresh: true
                    },
                    Joined::Ticket {
                        ticket: 3,
                        fresh: true
                    }
                ][..]
            )
        );
        assert_eq!(
            store.swap_join(&mut two, &id, second).await.expect("swap"),
            None
        );
        assert_eq!(
            store
                .join_batch(&mut two, &id, &ys, &[])
                .await
                .expect("join"),
            vec![Joined::Ticket {
                ticket: 4,
                fresh: true
            }]
        );
    }
}
