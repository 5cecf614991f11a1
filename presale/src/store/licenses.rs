//! Licenses in SQL: issuing, suspending, reading.

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};
use sqlx::Row;

use crate::domain::license::{
    status_change, Exclusion, License, LicenseError, LicenseStatus, NewLicense, PresaleKind,
    Selection, StatusChange,
};
use crate::transparency::Event;

impl Store {
    /// Issues a license, in one transaction with its seed parties' commitments, its
    /// queue, and its transparency log whose first record is the license as issued.
    /// (Library callers: demos, tests, benches. Staff issue through an approved proposal.)
    pub async fn issue_license(
        &self,
        l: &NewLicense,
        now: i64,
    ) -> Result<Result<String, LicenseError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let id = self.issue_license_in(&mut tx, l, now).await?;
        if id.is_ok() {
            tx.commit().await?;
        }
        Ok(id)
    }

    /// Issues a license outside the console (`presale license issue`: the operator's
    /// bootstrap path, which needs the database's credentials), with its audit entry in
    /// the same transaction, anchored in the new campaign's log. The overdue rule holds
    /// here too (issue 34); the credit ceiling needs the rating the IdP gives at approval,
    /// which this path does not ask: it is the console's.
    pub async fn issue_license_as(
        &self,
        l: &NewLicense,
        actor: &str,
        now: i64,
    ) -> Result<Result<String, crate::domain::proposals::ProposalError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        self.lock_audit_chain(&mut tx).await?;
        // None for a manufacturer the ministry suspended (issue 34), on this path either.
        if self.maker_suspended_in(&mut tx, &l.manufacturer).await? {
            tx.rollback().await?;
            return Ok(Err(crate::domain::proposals::ProposalError::MakerSuspended));
        }
        let standing = self.credit_in(&mut tx, &l.manufacturer, now).await?;
        if let Err(e) = standing.check(l.units, l.down_payment) {
            tx.rollback().await?;
            return Ok(Err(e.into()));
        }
        let id = match self.issue_license_in(&mut tx, l, now).await? {
            Ok(id) => id,
            Err(e) => {
                tx.rollback().await.ok();
                return Ok(Err(e.into()));
            }
        };
        let detail = format!("{} {} units={}", l.license_no, l.model, l.units);
        let entry = super::audit::Entry {
            at: now,
            actor,
            action: "license.issue",
            subject: &id,
            detail: &detail,
            anchor: Some(&id),
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Ok(id))
    }

    /// [`Store::issue_license`] in the caller's transaction. On `Err(Exists)` the
    /// transaction must be rolled back (PostgreSQL has aborted it).
    pub(crate) async fn issue_license_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        l: &NewLicense,
        now: i64,
    ) -> Result<Result<String, LicenseError>, StoreError> {
        if let Err(e) = crate::domain::Validate::validate(l) {
            return Ok(Err(e));
        }
        let id = format!("l-{}", service_kit::keys::random_token(9));
        let inserted = sqlx::query(
            "INSERT INTO licenses (id, license_no, manufacturer, model, units, unit_price, \
             down_payment, kind, delivery_deadline, opens_at, closes_at, selection, \
             admission_per_min, max_active, apply_window_secs, min_age, round, status, \
             seed_commitment, seed, created_at, exclusion_manufacturers, exclusion_months, \
             seed_reveal_secs, seed_iterations, registration) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             'active', '', '', $18, $19, $20, $21, $22, $23)",
        )
        .bind(&id)
        .bind(&l.license_no)
        .bind(&l.manufacturer)
        .bind(&l.model)
        .bind(l.units)
        .bind(l.unit_price)
        .bind(l.down_payment)
        .bind(l.kind.as_str())
        .bind(l.delivery_deadline)
        .bind(l.opens_at)
        .bind(l.closes_at)
        .bind(l.selection.as_str())
        .bind(l.admission_per_min)
        .bind(l.max_active)
        .bind(l.apply_window_secs)
        .bind(l.min_age)
        .bind(l.round.clone())
        .bind(now)
        .bind(l.exclusion.as_ref().map(|e| e.manufacturers.join(",")))
        .bind(l.exclusion.as_ref().map(|e| e.months))
        .bind(l.seed_delay.map(|d| d.reveal_secs))
        .bind(l.seed_delay.map(|d| d.iterations as i64))
        .bind(
            l.registration
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(Err(LicenseError::Exists)),
            Err(e) => return Err(e.into()),
        }
        if l.selection == Selection::Queue {
            self.create_queue(tx, &id, l.opens_at).await?;
        }
        self.insert_parties(tx, &id, &l.parties).await?;
        self.create_log(tx, &id).await?;
        let at_ms = self.db_now_ms_in(tx).await?;
        let event = Event::License {
            id: id.clone(),
            terms: Box::new(l.clone()),
            at_ms,
        };
        self.log_event(tx, &id, &event).await?;
        Ok(Ok(id))
    }

    /// Suspends or resumes a license (library callers; staff do it through an approved
    /// proposal). True if the status changed. See [`Store::set_license_active_in`].
    pub async fn set_license_active(&self, id: &str, active: bool) -> Result<bool, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = self.set_license_active_in(&mut tx, id, active).await?;
        tx.commit().await?;
        Ok(matches!(
            done,
            Some(StatusChange::Suspend | StatusChange::Resume { .. })
        ))
    }

    /// Suspends or resumes a license, in the caller's transaction, under the license row's
    /// lock and by [`crate::domain::license::status_change`]: only a real change of status
    /// happens (a repeated one is `Unchanged` and writes nothing). Applications stop at
    /// once (their transaction checks the status), admissions too (every admitter tick
    /// reads it after the campaign's lock), and the queue's clock stops now, so no apply
    /// deadline runs while suspended: the first tick after the resumption extends them by
    /// the time it stood still. A resumption gives the suspension's length back to the
    /// admitter's close and to a drawn lottery's apply window. None if there is no such
    /// license.
    pub(crate) async fn set_license_active_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        active: bool,
    ) -> Result<Option<StatusChange>, StoreError> {
        let Some(row) = self.lock_license(tx, id, "status, suspended_at_ms").await? else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let status = LicenseStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("license {id}: status {status:?}")))?;
        let suspended_at: Option<i64> = row.try_get("suspended_at_ms")?;
        let at_ms: i64 = row.try_get("now_ms")?;
        let change = status_change(status, suspended_at, active, at_ms);
        match change {
            StatusChange::Unchanged => return Ok(Some(change)),
            StatusChange::Suspend => {
                sqlx::query(
                    "UPDATE licenses SET status = 'suspended', suspended_at_ms = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
                // The queue's time is `min(now, clock_ms + STALL_MS)`: stop it at now.
                sqlx::query(&format!(
                    "UPDATE queue_campaigns SET clock_ms = {} - {} WHERE license_id = $1 AND clock_ms > 0",
                    self.now_ms_sql(),
                    super::queue::STALL_MS
                ))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            StatusChange::Resume { paused_ms } => {
                sqlx::query(
                    "UPDATE licenses SET status = 'active', suspended_at_ms = NULL, \
                     paused_ms = paused_ms + $2 WHERE id = $1",
                )
                .bind(id)
                .bind(paused_ms)
                .execute(&mut *tx)
                .await?;
                // A pause of admissions that spans the suspension counts from its end: the
                // suspension's length is given back once, above.
                sqlx::query(
                    "UPDATE licenses SET admissions_paused_at_ms = admissions_paused_at_ms + $2 \
                     WHERE id = $1 AND admissions_paused_at_ms IS NOT NULL",
                )
                .bind(id)
                .bind(paused_ms)
                .execute(&mut *tx)
                .await?;
                // Winners whose window was still open when the suspension began get its
                // length back.
                sqlx::query(
                    "UPDATE lottery_draws SET apply_until_ms = apply_until_ms + $2 \
                     WHERE license_id = $1 AND apply_until_ms > $3",
                )
                .bind(id)
                .bind(paused_ms)
                .bind(suspended_at.unwrap_or(at_ms))
                .execute(&mut *tx)
                .await?;
                // And the reserves promoted in lapsed winners' places (issue 30).
                sqlx::query(
                    "UPDATE lottery_promotions SET until_ms = until_ms + $2 \
                     WHERE license_id = $1 AND until_ms > $3",
                )
                .bind(id)
                .bind(paused_ms)
                .bind(suspended_at.unwrap_or(at_ms))
                .execute(&mut *tx)
                .await?;
            }
        }
        let status = if active { "active" } else { "suspended" }.to_owned();
        self.log_event(tx, id, &Event::Status { status, at_ms })
            .await?;
        Ok(Some(change))
    }

    /// Takes a license row's lock in the caller's transaction (the first statement writes,
    /// as SQLite's writers must) and reads `columns` and the database's time (`now_ms`)
    /// after it; None if there is no such license. The statement names no key column, so
    /// on PostgreSQL it takes the row's no-key update lock, which the key-share locks of
    /// an application's or an entry's foreign key do not block: a lottery application
    /// inserts its row (a key share on the license) before it takes this lock, and naming
    /// `id` would ask for the exclusive lock and deadlock two of them (seen as 40P01 in
    /// `the_auditor_recomputes_a_lottery_campaign`).
    pub(crate) async fn lock_license(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        columns: &str,
    ) -> Result<Option<sqlx::any::AnyRow>, StoreError> {
        Ok(sqlx::query(&format!(
            "UPDATE licenses SET status = status WHERE id = $1 RETURNING {columns}, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?)
    }

    /// Changes a license's admission rate, in the caller's transaction; every admitter
    /// tick reads it under the campaign's lock, so it holds from the next tick on. None if
    /// there is no such license, `Some(false)` if the rate is that already (nothing
    /// written: a stale or repeated change is not carried out twice).
    pub(crate) async fn set_rate_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        admission_per_min: i64,
    ) -> Result<Option<bool>, StoreError> {
        let Some(row) = self.lock_license(tx, id, "admission_per_min").await? else {
            return Ok(None);
        };
        if row.try_get::<i64, _>("admission_per_min")? == admission_per_min {
            return Ok(Some(false));
        }
        sqlx::query("UPDATE licenses SET admission_per_min = $2 WHERE id = $1")
            .bind(id)
            .bind(admission_per_min)
            .execute(&mut *tx)
            .await?;
        let event = Event::Rate {
            admission_per_min,
            at_ms: row.try_get("now_ms")?,
        };
        self.log_event(tx, id, &event).await?;
        Ok(Some(true))
    }

    /// Pauses (`paused`) or resumes admissions, in the caller's transaction, under the
    /// license row's lock, the license staying active: joins and applications go on, the
    /// admitted keep their time (the queue's clock runs), and nobody is admitted until the
    /// resumption, which moves the admitter's close on by the pause's length. `Some(false)`
    /// if there is nothing to change (paused already, not paused, or the license is
    /// suspended); None if there is no such license.
    pub(crate) async fn set_admissions_paused_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        paused: bool,
    ) -> Result<Option<bool>, StoreError> {
        // The campaign's lock first, as every admitter tick takes it: a tick that read the
        // license before this commits is done before it, and one after sees the pause.
        sqlx::query("UPDATE queue_campaigns SET opened = opened WHERE license_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let Some(row) = self
            .lock_license(tx, id, "status, selection, admissions_paused_at_ms")
            .await?
        else {
            return Ok(None);
        };
        // A lottery admits nobody: its winners are drawn.
        let active = row.try_get::<String, _>("status")? == LicenseStatus::Active.as_str()
            && row.try_get::<String, _>("selection")? == crate::domain::Selection::Queue.as_str();
        let since: Option<i64> = row.try_get("admissions_paused_at_ms")?;
        let at_ms: i64 = row.try_get("now_ms")?;
        match (paused, since) {
            (true, None) if active => {
                sqlx::query("UPDATE licenses SET admissions_paused_at_ms = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            // Not while suspended: the suspension gives its own length back at the
            // resumption, and the pause then counts from there (see the resumption).
            (false, Some(since)) if active => {
                sqlx::query(
                    "UPDATE licenses SET admissions_paused_at_ms = NULL, \
                     paused_ms = paused_ms + $2 WHERE id = $1",
                )
                .bind(id)
                .bind((at_ms - since).max(0))
                .execute(&mut *tx)
                .await?;
            }
            _ => return Ok(Some(false)),
        }
        self.log_event(tx, id, &Event::Admissions { paused, at_ms })
            .await?;
        Ok(Some(true))
    }

    /// Changes how many may be admitted at once, in the caller's transaction (as
    /// [`Store::set_rate_in`]).
    pub(crate) async fn set_max_active_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        max_active: i64,
    ) -> Result<Option<bool>, StoreError> {
        let Some(row) = self.lock_license(tx, id, "max_active").await? else {
            return Ok(None);
        };
        if row.try_get::<i64, _>("max_active")? == max_active {
            return Ok(Some(false));
        }
        sqlx::query("UPDATE licenses SET max_active = $2 WHERE id = $1")
            .bind(id)
            .bind(max_active)
            .execute(&mut *tx)
            .await?;
        let event = Event::MaxActive {
            max_active,
            at_ms: row.try_get("now_ms")?,
        };
        self.log_event(tx, id, &event).await?;
        Ok(Some(true))
    }

    /// Gives everyone admitted and still within their time `by_ms` more to apply (a
    /// queue's admissions and a drawn lottery's winners), in the caller's transaction.
    /// Admissions already lapsed stay lapsed: their units may be promised to others.
    /// `Some(false)` if nobody is within their time.
    pub(crate) async fn extend_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        by_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        // The admissions before the license row: the order an application takes them in
        // (its admission, then the license's count), so the two never deadlock. Within
        // their time on the queue's clock, which stands still while the queue does.
        let queue = sqlx::query(&format!(
            "UPDATE queue_admissions SET deadline_ms = deadline_ms + $2 \
             WHERE license_id = $1 AND released = 0 AND deadline_ms > {}",
            self.queue_time_sql()
        ))
        .bind(id)
        .bind(by_ms)
        .execute(&mut *tx)
        .await?;
        let Some(row) = self.lock_license(tx, id, "status").await? else {
            return Ok(None);
        };
        let at_ms: i64 = row.try_get("now_ms")?;
        let lottery = sqlx::query(
            "UPDATE lottery_draws SET apply_until_ms = apply_until_ms + $2 \
             WHERE license_id = $1 AND apply_until_ms > $3",
        )
        .bind(id)
        .bind(by_ms)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        let promoted = sqlx::query(
            "UPDATE lottery_promotions SET until_ms = until_ms + $2 \
             WHERE license_id = $1 AND until_ms > $3",
        )
        .bind(id)
        .bind(by_ms)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        if queue.rows_affected() + lottery.rows_affected() + promoted.rows_affected() == 0 {
            return Ok(Some(false));
        }
        self.log_event(tx, id, &Event::Extended { by_ms, at_ms })
            .await?;
        Ok(Some(true))
    }

    /// Whether admissions are paused now (the console's view).
    pub async fn admissions_paused(&self, id: &str) -> Result<bool, StoreError> {
        let since: Option<Option<i64>> =
            sqlx::query_scalar("SELECT admissions_paused_at_ms FROM licenses WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(since.flatten().is_some())
    }

    /// One license.
    pub async fn license(&self, id: &str) -> Result<Option<License>, StoreError> {
        sqlx::query_as::<_, LicenseRow>(
            "SELECT id, license_no, manufacturer, model, units, accepted, unit_price, \
             down_payment, kind, delivery_deadline, opens_at, closes_at, selection, \
             admission_per_min, max_active, apply_window_secs, min_age, round, status, \
             exclusion_manufacturers, exclusion_months, registration \
             FROM licenses WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(License::try_from)
        .transpose()
    }

    pub async fn licenses(&self) -> Result<Vec<License>, StoreError> {
        let rows = sqlx::query_as::<_, LicenseRow>(
            "SELECT id, license_no, manufacturer, model, units, accepted, unit_price, \
             down_payment, kind, delivery_deadline, opens_at, closes_at, selection, \
             admission_per_min, max_active, apply_window_secs, min_age, round, status, \
             exclusion_manufacturers, exclusion_months, registration \
             FROM licenses ORDER BY opens_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(License::try_from).collect()
    }
}

/// A license row as stored; [`License`] is what the rest of presale sees.
#[derive(Debug, Clone, sqlx::FromRow)]
struct LicenseRow {
    id: String,
    license_no: String,
    manufacturer: String,
    model: String,
    units: i64,
    accepted: i64,
    unit_price: i64,
    down_payment: i64,
    kind: String,
    delivery_deadline: i64,
    opens_at: i64,
    closes_at: i64,
    selection: String,
    admission_per_min: i64,
    max_active: i64,
    apply_window_secs: i64,
    min_age: Option<i64>,
    round: Option<String>,
    status: String,
    exclusion_manufacturers: Option<String>,
    exclusion_months: Option<i64>,
    registration: Option<String>,
}

impl TryFrom<LicenseRow> for License {
    type Error = StoreError;

    fn try_from(r: LicenseRow) -> Result<Self, StoreError> {
        let bad =
            |what: &str, v: &str| StoreError::Corrupt(format!("license {}: {what} {v:?}", r.id));
        let kind = PresaleKind::parse(&r.kind).ok_or_else(|| bad("kind", &r.kind))?;
        let selection =
            Selection::parse(&r.selection).ok_or_else(|| bad("selection", &r.selection))?;
        let status = LicenseStatus::parse(&r.status).ok_or_else(|| bad("status", &r.status))?;
        let exclusion = match (&r.exclusion_manufacturers, r.exclusion_months) {
            (Some(list), Some(months)) => Some(Exclusion {
                manufacturers: list
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect(),
                months,
            }),
            _ => None,
        };
        let registration = r
            .registration
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad("registration", &e.to_string()))?;
        Ok(License {
            registration,
            kind,
            selection,
            status,
            exclusion,
            id: r.id,
            license_no: r.license_no,
            manufacturer: r.manufacturer,
            model: r.model,
            units: r.units,
            accepted: r.accepted,
            unit_price: r.unit_price,
            down_payment: r.down_payment,
            delivery_deadline: r.delivery_deadline,
            opens_at: r.opens_at,
            closes_at: r.closes_at,
            admission_per_min: r.admission_per_min,
            max_active: r.max_active,
            apply_window_secs: r.apply_window_secs,
            min_age: r.min_age,
            round: r.round,
        })
    }
}
