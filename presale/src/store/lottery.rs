//! Lottery entries, the draw and its public list in SQL.
use std::collections::HashSet;

use sqlx::Row;

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};
use crate::domain::{Holder, License, LicenseStatus, NationalId};
use crate::transparency::{Event, ENTRIES};

/// A public entry identifier, as the draw and the published list use it.
pub use emta_verify::lottery::entry_id;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    New(i64),
    Already(i64),
    Closed,
    /// The license requires a confirmed hold before entering, and there is none.
    NoHold,
}

impl Store {
    /// Registers a national ID in a lottery (idempotent: the same entry number again).
    /// The window is checked on the database's clock after taking the license row's lock,
    /// which the draw takes too: an entry either commits before the draw reads the list,
    /// or finds the window closed and is refused.
    pub async fn enter_lottery(
        &self,
        l: &License,
        national_id: &NationalId,
        sub: &str,
        holder: &Holder,
    ) -> Result<Entered, StoreError> {
        if let Some(n) = self.entry_of(&l.id, national_id).await? {
            return Ok(Entered::Already(n));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        // A hold required before entering (issue 30), locked first (its lock comes before
        // the license row's, as an application's does).
        if l.registration
            .as_ref()
            .and_then(|r| r.hold.as_ref())
            .is_some_and(|h| h.before == crate::domain::HoldBefore::Entry)
            && !self.lock_counting_hold(&mut tx, &l.id, national_id).await?
        {
            return Ok(Entered::NoHold);
        }
        // `frozen_at_ms` is in the row this statement locks, so PostgreSQL re-reads it
        // after waiting for the draw's lock: once the list is frozen, no entry is taken,
        // whatever the clock says (one stepped back after a failover, say).
        let row = sqlx::query(&format!(
            "UPDATE licenses SET entries = entries + 1 WHERE id = $1 \
             RETURNING entries, opens_at, closes_at, status, frozen_at_ms, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(&l.id)
        .fetch_one(&mut *tx)
        .await?;
        let now_ms: i64 = row.try_get("now_ms")?;
        let opens_ms = row.try_get::<i64, _>("opens_at")? * 1000;
        let closes_ms = row.try_get::<i64, _>("closes_at")? * 1000;
        let status: String = row.try_get("status")?;
        let frozen = row.try_get::<Option<i64>, _>("frozen_at_ms")?.is_some();
        if frozen
            || now_ms < opens_ms
            || now_ms >= closes_ms
            || status != LicenseStatus::Active.as_str()
        {
            tx.rollback().await?;
            return Ok(Entered::Closed);
        }
        let n: i64 = row.try_get("entries")?;
        let inserted = sqlx::query(
            "INSERT INTO lottery_entries (license_id, entry_no, national_id, citizen_sub, entered_at, holder) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&l.id)
        .bind(n)
        .bind(national_id.as_str())
        .bind(sub)
        .bind(now_ms.div_euclid(1000))
        .bind(&holder.0)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                let event = Event::Entry {
                    holder: holder.0.clone(),
                    entry: n,
                };
                self.log_event(&mut tx, &l.id, &event).await?;
                tx.commit().await?;
                Ok(Entered::New(n))
            }
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                Ok(self
                    .entry_of(&l.id, national_id)
                    .await?
                    .map(Entered::Already)
                    .unwrap_or(Entered::Closed))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn entry_of(
        &self,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT entry_no FROM lottery_entries WHERE license_id = $1 AND national_id = $2",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.try_get("entry_no"))
        .transpose()?)
    }

    /// The published list: entry numbers with masked national IDs, in entry order.
    pub async fn lottery_list(&self, license_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT entry_no, national_id FROM lottery_entries WHERE license_id = $1 ORDER BY entry_no")
            .bind(license_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let nid: String = r.try_get("national_id")?;
                let masked = format!("******{}", nid.get(6..).unwrap_or(""));
                Ok((r.try_get("entry_no")?, masked))
            })
            .collect()
    }

    /// Draws once, after the window closes on the database's clock and while the license
    /// is active (a suspended lottery waits for its resumption); a second call (any
    /// replica) is a no-op. Under the license row's lock, which every entry takes: the
    /// first attempt after the close freezes the list of entries (its root goes into the
    /// log); the draw waits until every party has revealed after that, and ranks exactly
    /// the frozen entries. Returns the seed when the draw exists.
    pub async fn draw_lottery(&self, l: &License) -> Result<Option<String>, StoreError> {
        if let Some(seed) = self.revealed_seed(&l.id).await? {
            return Ok(Some(seed));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let row = sqlx::query(&format!(
            "UPDATE licenses SET entries = entries WHERE id = $1 \
             RETURNING closes_at, status, frozen_at_ms, apply_window_secs, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(&l.id)
        .fetch_one(&mut *tx)
        .await?;
        let now_ms: i64 = row.try_get("now_ms")?;
        let status: String = row.try_get("status")?;
        let frozen = row.try_get::<Option<i64>, _>("frozen_at_ms")?.is_some();
        // Once frozen, the close is final: a clock that steps back does not reopen it.
        if (!frozen && now_ms < row.try_get::<i64, _>("closes_at")? * 1000)
            || status != LicenseStatus::Active.as_str()
        {
            return Ok(None);
        }
        let drawn: Option<String> =
            sqlx::query("SELECT seed FROM lottery_draws WHERE license_id = $1")
                .bind(&l.id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("seed"))
                .transpose()?;
        if drawn.is_some() {
            return Ok(drawn);
        }
        // Frozen and still waiting for its seed (the reveal window, then the delay: minutes):
        // nothing to read until it exists. Every replica tries four times a second.
        if frozen && self.campaign_seed_in(&mut tx, &l.id).await?.is_none() {
            return Ok(None);
        }
        if !frozen {
            sqlx::query("UPDATE licenses SET frozen_at_ms = $2 WHERE id = $1")
                .bind(&l.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT entry_no, holder FROM lottery_entries WHERE license_id = $1 ORDER BY entry_no",
        )
        .bind(&l.id)
        .fetch_all(&mut *tx)
        .await?;
        let mut numbers = Vec::with_capacity(rows.len());
        let mut holders = Vec::with_capacity(rows.len());
        for r in &rows {
            numbers.push(r.try_get::<i64, _>("entry_no")?);
            holders.push(
                r.try_get::<Option<String>, _>("holder")?
                    .unwrap_or_default(),
            );
        }
        self.freeze_list(&mut tx, &l.id, ENTRIES, &holders, now_ms)
            .await?;
        // The draw ranks exactly the frozen list: entries 1..=size, whose root must be the
        // frozen one. An entry added, changed or removed since (by anyone who can write
        // the table) stops the draw rather than being drawn.
        let frozen_list =
            sqlx::query("SELECT list_size, list_root FROM campaign_seeds WHERE license_id = $1")
                .bind(&l.id)
                .fetch_one(&mut *tx)
                .await?;
        let size: i64 = frozen_list.try_get("list_size")?;
        let root: String = frozen_list.try_get("list_root")?;
        let expected: Vec<i64> = (1..=size).collect();
        let (_, now_root) =
            crate::transparency::list_root(ENTRIES, holders.iter().map(String::as_str));
        if numbers != expected || now_root != root {
            return Err(StoreError::Corrupt(format!(
                "lottery {}: the entries ({} now) are not the frozen list of {size}; not drawing",
                l.id,
                numbers.len()
            )));
        }
        let Some(seed) = self.campaign_seed_in(&mut tx, &l.id).await? else {
            // Frozen; the parties reveal next.
            tx.commit().await?;
            return Ok(None);
        };
        let entries: Vec<String> = numbers.iter().map(|n| entry_id(*n)).collect();
        let draw = crate::domain::lottery::draw(&seed, &entries, l.units as usize);
        // Winners apply for the license's window from now (the draw waits for every
        // reveal, so the window runs from the draw, not from the close).
        let window_ms = row.try_get::<i64, _>("apply_window_secs")? * 1000;
        sqlx::query(
            "INSERT INTO lottery_draws (license_id, seed, drawn_at, apply_until_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&l.id)
        .bind(&seed)
        .bind(now_ms.div_euclid(1000))
        .bind(now_ms + window_ms)
        .execute(&mut *tx)
        .await?;
        let order: Vec<i64> = draw
            .order
            .iter()
            .map(|e| e.trim_start_matches('E').parse().unwrap_or(0))
            .collect();
        let ranked: Vec<(i64, i64)> = order
            .iter()
            .enumerate()
            .map(|(rank, no)| (*no, rank as i64 + 1))
            .collect();
        for chunk in ranked.chunks(super::CHUNK) {
            let sql = format!(
                "INSERT INTO lottery_ranks (license_id, entry_no, rank) VALUES {}",
                super::values(chunk.len(), 3, 1)
            );
            let mut query = sqlx::query(&sql);
            for (no, rank) in chunk {
                query = query.bind(&l.id).bind(*no).bind(*rank);
            }
            query.execute(&mut *tx).await?;
        }
        let event = Event::Draw {
            entries: order.len() as i64,
            order_sha256: crate::transparency::order_digest(&order),
            at_ms: now_ms,
        };
        self.log_event(&mut tx, &l.id, &event).await?;
        tx.commit().await?;
        Ok(Some(seed))
    }

    pub async fn revealed_seed(&self, license_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT seed FROM lottery_draws WHERE license_id = $1")
                .bind(license_id)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("seed"))
                .transpose()?,
        )
    }

    /// A national ID's rank in a drawn lottery.
    pub async fn lottery_rank(
        &self,
        license_id: &str,
        national_id: &NationalId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT r.rank FROM lottery_ranks r JOIN lottery_entries e \
             ON e.license_id = r.license_id AND e.entry_no = r.entry_no \
             WHERE r.license_id = $1 AND e.national_id = $2",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.try_get("rank"))
        .transpose()?)
    }

    /// Entry numbers in draw order (for the published result).
    pub async fn lottery_order(&self, license_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows =
            sqlx::query("SELECT entry_no FROM lottery_ranks WHERE license_id = $1 ORDER BY rank")
                .bind(license_id)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(|r| Ok(r.try_get("entry_no")?)).collect()
    }
}

/// A lottery place as offered: never (a reserve not promoted, or not drawn yet), until a
/// time, or lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Never,
    Until(i64),
    Lapsed,
}

/// Where a drawn lottery's round stands after [`Store::promote_reserves`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offers {
    /// Not drawn yet (or suspended): nothing to do.
    pub waiting: bool,
    /// Ranks whose time lapsed in this call.
    pub lapsed: Vec<i64>,
    /// Reserves offered a place in this call: (rank, national ID, until ms).
    pub promoted: Vec<(i64, String, i64)>,
    /// No place is open to an application any more, and none will be: the round is over.
    pub over: bool,
}

impl Store {
    /// A drawn lottery's reserves (issue 30): every offered place (a winner's, or a
    /// promoted reserve's) whose time to apply ran out without an application lapses,
    /// and for each lapse the next on the reserve list, in rank order, is offered a place
    /// for the license's apply window, until the cap is reached or the list ends. Each
    /// lapse and each promotion is a record in the public log. Under the license row's
    /// lock, which a lottery application takes too, so no application slips past its
    /// lapse. On the database's clock.
    pub async fn promote_reserves(&self, l: &License) -> Result<Offers, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        self.bound_admitter_tx(&mut tx).await?;
        let Some(row) = self
            .lock_license(&mut tx, &l.id, "status, units, apply_window_secs")
            .await?
        else {
            tx.rollback().await?;
            return Ok(Offers::default());
        };
        let now_ms: i64 = row.try_get("now_ms")?;
        let units: i64 = row.try_get("units")?;
        let window_ms = row.try_get::<i64, _>("apply_window_secs")? * 1000;
        let status: String = row.try_get("status")?;
        let until: Option<Option<i64>> =
            sqlx::query("SELECT apply_until_ms FROM lottery_draws WHERE license_id = $1")
                .bind(&l.id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("apply_until_ms"))
                .transpose()?;
        let (Some(until), true) = (until, status == LicenseStatus::Active.as_str()) else {
            tx.rollback().await?;
            return Ok(Offers {
                waiting: true,
                ..Offers::default()
            });
        };
        let until = until.unwrap_or((l.closes_at + l.apply_window_secs) * 1000);
        let mut offered: Vec<(i64, i64)> = (1..=units).map(|r| (r, until)).collect();
        let promotions: Vec<(i64, i64)> = sqlx::query(
            "SELECT rank, until_ms FROM lottery_promotions WHERE license_id = $1 ORDER BY rank",
        )
        .bind(&l.id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("rank")?, r.try_get("until_ms")?)))
        .collect::<Result<_, StoreError>>()?;
        offered.extend(promotions.iter().copied());
        let accepted: HashSet<i64> =
            sqlx::query("SELECT ticket FROM applications WHERE license_id = $1")
                .bind(&l.id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("ticket"))
                .collect::<Result<_, _>>()?;
        let lapsed: HashSet<i64> =
            sqlx::query("SELECT rank FROM lottery_lapses WHERE license_id = $1")
                .bind(&l.id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("rank"))
                .collect::<Result<_, _>>()?;
        let ranked: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM lottery_ranks WHERE license_id = $1")
                .bind(&l.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let mut out = Offers::default();
        let mut events = Vec::new();
        let mut live = 0;
        for &(rank, until_ms) in &offered {
            if accepted.contains(&rank) || lapsed.contains(&rank) || rank > ranked {
                continue;
            }
            if until_ms > now_ms {
                live += 1;
                continue;
            }
            sqlx::query("INSERT INTO lottery_lapses (license_id, rank, at_ms) VALUES ($1, $2, $3)")
                .bind(&l.id)
                .bind(rank)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            events.push(Event::Lapsed {
                rank,
                at_ms: now_ms,
            });
            out.lapsed.push(rank);
        }
        // A place for each lapse, never past the cap: the places taken are the
        // applications and the offers still open.
        let mut free = units - accepted.len() as i64 - live;
        let mut next = units + promotions.len() as i64 + 1;
        while free > 0 && next <= ranked {
            let until_ms = now_ms + window_ms;
            sqlx::query(
                "INSERT INTO lottery_promotions (license_id, rank, until_ms, at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(&l.id)
            .bind(next)
            .bind(until_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            events.push(Event::Promoted {
                rank: next,
                until_ms,
                at_ms: now_ms,
            });
            let nid: String = sqlx::query(
                "SELECT e.national_id FROM lottery_ranks r JOIN lottery_entries e \
                 ON e.license_id = r.license_id AND e.entry_no = r.entry_no \
                 WHERE r.license_id = $1 AND r.rank = $2",
            )
            .bind(&l.id)
            .bind(next)
            .fetch_one(&mut *tx)
            .await?
            .try_get("national_id")?;
            out.promoted.push((next, nid, until_ms));
            free -= 1;
            next += 1;
            live += 1;
        }
        out.over = live == 0;
        if events.is_empty() {
            tx.rollback().await?;
        } else {
            self.log_events(&mut tx, &l.id, &events).await?;
            tx.commit().await?;
        }
        Ok(out)
    }

    /// A lottery place's offer: the time to apply of `rank` (a winner's, or a promoted
    /// reserve's). In the caller's transaction, which holds the license row's lock.
    pub(crate) async fn offer_of(
        &self,
        conn: &mut sqlx::AnyConnection,
        l_id: &str,
        units: i64,
        rank: i64,
        legacy_until_ms: i64,
    ) -> Result<Offer, StoreError> {
        let lapsed =
            sqlx::query("SELECT 1 AS one FROM lottery_lapses WHERE license_id = $1 AND rank = $2")
                .bind(l_id)
                .bind(rank)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
        if lapsed {
            return Ok(Offer::Lapsed);
        }
        let until: Option<i64> = if rank <= units {
            sqlx::query("SELECT apply_until_ms FROM lottery_draws WHERE license_id = $1")
                .bind(l_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<Option<i64>, _>("apply_until_ms"))
                .transpose()?
                .map(|u| u.unwrap_or(legacy_until_ms))
        } else {
            sqlx::query(
                "SELECT until_ms FROM lottery_promotions WHERE license_id = $1 AND rank = $2",
            )
            .bind(l_id)
            .bind(rank)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("until_ms"))
            .transpose()?
        };
        Ok(until.map_or(Offer::Never, Offer::Until))
    }

    /// A lottery place's offer (see [`Store::offer_of`]), read outside a transaction.
    pub async fn offer(&self, l: &License, rank: i64) -> Result<Offer, StoreError> {
        let mut conn = self.pool().acquire().await?;
        self.offer_of(
            &mut conn,
            &l.id,
            l.units,
            rank,
            (l.closes_at + l.apply_window_secs) * 1000,
        )
        .await
    }

    /// A lottery's promoted reserves: (rank, until ms).
    pub async fn promotions(&self, license_id: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        sqlx::query(
            "SELECT rank, until_ms FROM lottery_promotions WHERE license_id = $1 ORDER BY rank",
        )
        .bind(license_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("rank")?, r.try_get("until_ms")?)))
        .collect()
    }
}

impl Store {
    /// A drawn lottery's places still open to an application (a winner's or a promoted
    /// reserve's, neither applied nor lapsed): (rank, holder, until ms).
    pub async fn open_offers(&self, l: &License) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let legacy = (l.closes_at + l.apply_window_secs) * 1000;
        let rows = sqlx::query(
            "SELECT r.rank AS rank, e.holder AS holder, \
             COALESCE(p.until_ms, CASE WHEN r.rank <= $2 THEN COALESCE(d.apply_until_ms, $3) END) AS until_ms \
             FROM lottery_ranks r \
             JOIN lottery_entries e ON e.license_id = r.license_id AND e.entry_no = r.entry_no \
             JOIN lottery_draws d ON d.license_id = r.license_id \
             LEFT JOIN lottery_promotions p ON p.license_id = r.license_id AND p.rank = r.rank \
             WHERE r.license_id = $1 AND (r.rank <= $2 OR p.rank IS NOT NULL) \
             AND NOT EXISTS (SELECT 1 FROM lottery_lapses x WHERE x.license_id = r.license_id AND x.rank = r.rank) \
             AND NOT EXISTS (SELECT 1 FROM applications a WHERE a.license_id = r.license_id AND a.ticket = r.rank)",
        )
        .bind(&l.id)
        .bind(l.units)
        .bind(legacy)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("rank")?,
                    r.try_get::<Option<String>, _>("holder")?
                        .unwrap_or_default(),
                    r.try_get::<Option<i64>, _>("until_ms")?.unwrap_or(legacy),
                ))
            })
            .collect()
    }
}
