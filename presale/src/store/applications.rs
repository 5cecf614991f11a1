//! Licenses and applications in SQL (SQLite or PostgreSQL).
//!
//! An application is accepted in one transaction that (1) inserts it, which the key
//! `(license_id, national_id)` refuses for a second one, (2) claims the round when the
//! license says one per round, which the key `(round, national_id)` refuses likewise, and
//! (3) uses the applicant's live admission when the license is a queue, and (4) increments
//! the license's `accepted` only while it is below `units` and the license is active. Any refusal rolls the whole transaction back, so nothing is half-stored and
//! the cap holds under any concurrency and across replicas: PostgreSQL serialises the
//! conditional UPDATEs on the license row, SQLite serialises writers. The UPDATE comes last
//! so the license row is locked only for the commit. The exclusion rule (no recent purchase
//! at listed manufacturers) is read inside the same transaction, after a per-person lock,
//! so two simultaneous applications at two excluding manufacturers cannot both pass.

use sqlx::Row;

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};

/// Draws of a tracking code before giving up: at 10 random digits and five million
/// applications a draw collides with probability 5e-4, eight in a row never.
const TRACKING_CODE_TRIES: usize = 8;

/// The advisory-lock key of one national ID (its digits are a number below 10^10).
fn person_lock(national_id: &crate::domain::NationalId) -> i64 {
    national_id.as_str().parse().unwrap_or(0)
}
use crate::domain::{Accepted, ApplicationRequest, LicenseTerms, Refusal};

/// A refusal decided inside an application's transaction: rolled back now. A dropped
/// transaction is rolled back only when its pooled connection is next used, and until
/// then SQLite's one writer lock (and PostgreSQL's row locks) stay taken: a dropped
/// refusal held every other writer off for seconds (`applications_and_settlements_never_
/// cross` on SQLite, "database is locked").
async fn refuse<T>(
    tx: sqlx::Transaction<'static, sqlx::Any>,
    why: Refusal,
) -> Result<Result<T, Refusal>, StoreError> {
    tx.rollback().await?;
    Ok(Err(why))
}

/// A refusal the clock alone decides: before the window (a queue's applications start at
/// the opening and end with the applicant's admission, given only before the close and
/// kept through suspensions; a lottery's run from its draw, checked in the transaction),
/// or too young on the database's date in Tehran.
fn outside_window_or_age(
    terms: &LicenseTerms,
    req: &ApplicationRequest,
    now: i64,
) -> Option<Refusal> {
    if (!terms.lottery && now < terms.opens_at) || (terms.lottery && now < terms.closes_at) {
        return Some(Refusal::OutsideWindow);
    }
    let min = terms.min_age?;
    let today = service_kit::clock::date_iso(now);
    crate::domain::application::age_on(&req.birthdate, &today)
        .is_none_or(|a| a < min)
        .then_some(Refusal::TooYoung)
}

impl Store {
    /// Accepts an application or says why not, on the database's clock: the window and
    /// the applicant's age (on the database's date in Tehran) alike. A queue applicant's
    /// admission is used in the same transaction, so it is either spent on an accepted
    /// application or still theirs.
    pub async fn apply(
        &self,
        terms: &LicenseTerms,
        req: &ApplicationRequest,
    ) -> Result<Result<Accepted, Refusal>, StoreError> {
        if !terms.active {
            return Ok(Err(Refusal::Suspended));
        }
        // The clock is read in the application's transaction on PostgreSQL (one commit
        // and one pooled checkout fewer); SQLite's first statement in a transaction must
        // write, so its clock (this host's) is read before, and a refusal takes no lock.
        let (now_ms, open) = if self.postgres {
            let mut tx = service_kit::sql::begin(&self.pool).await?;
            (self.db_now_ms_in(&mut tx).await?, Some(tx))
        } else {
            (self.db_now_ms().await?, None)
        };
        let now = now_ms.div_euclid(1000);
        if let Some(why) = outside_window_or_age(terms, req, now) {
            return match open {
                Some(tx) => refuse(tx, why).await,
                None => Ok(Err(why)),
            };
        }
        let mut tx = match open {
            Some(tx) => tx,
            None => service_kit::sql::begin(&self.pool).await?,
        };
        let id = service_kit::keys::random_token(12);
        if terms.exclusion.is_some() && self.postgres {
            // One person's applications one at a time, so the exclusion rule below reads
            // every application of theirs that committed before (READ COMMITTED takes a
            // fresh snapshot per statement). SQLite needs no lock: the INSERT below makes
            // this the only writer until it commits.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(person_lock(&req.national_id))
                .execute(&mut *tx)
                .await?;
        }
        // The INSERT comes first (SQLite's writers must start by writing); the key
        // `(license_id, national_id)` refuses a second application.
        let tracking_code = match self
            .insert_application(&mut tx, &id, terms, req, now)
            .await?
        {
            Ok(code) => code,
            Err(refusal) => return refuse(tx, refusal).await,
        };
        if terms.lottery {
            if let Err(refusal) = self.check_winner(&mut tx, terms, req, now_ms).await? {
                return refuse(tx, refusal).await;
            }
        } else if !self.claim_admission(&mut tx, &terms.id, req).await? {
            return refuse(tx, Refusal::TurnOver).await;
        }
        // The down payment's hold, locked so that no settlement decides it under this
        // application (issue 30).
        if terms
            .registration
            .as_ref()
            .is_some_and(|r| r.hold.is_some())
            && !self
                .lock_counting_hold(&mut tx, &terms.id, &req.national_id)
                .await?
        {
            return refuse(tx, Refusal::NoHold).await;
        }
        if let Some(ex) = &terms.exclusion {
            let since = now - ex.months * 30 * 24 * 3600;
            let recent = sqlx::query(
                "SELECT l.manufacturer AS m FROM applications a JOIN licenses l ON l.id = a.license_id \
                 WHERE a.national_id = $1 AND a.created_at >= $2 AND a.id <> $3",
            )
            .bind(req.national_id.as_str())
            .bind(since)
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?;
            for r in recent {
                let m: String = r.try_get("m")?;
                if ex.manufacturers.contains(&m) {
                    return refuse(tx, Refusal::RecentPurchase).await;
                }
            }
        }
        if let Some(round) = &terms.round {
            let claimed = sqlx::query(
                "INSERT INTO round_claims (round, national_id, application_id) VALUES ($1, $2, $3)",
            )
            .bind(round)
            .bind(req.national_id.as_str())
            .bind(&id)
            .execute(&mut *tx)
            .await;
            match claimed {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return refuse(tx, Refusal::AlreadyAppliedInRound).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        let event = crate::transparency::Event::Accepted {
            holder: req.holder.0.clone(),
            ticket: req.ticket,
            tracking_code: tracking_code.clone(),
        };
        self.log_event(&mut tx, &terms.id, &event).await?;
        let counted = sqlx::query(
            "UPDATE licenses SET accepted = accepted + 1 \
             WHERE id = $1 AND accepted < units AND status = 'active'",
        )
        .bind(&terms.id)
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() != 1 {
            // Sold out, or suspended since this replica last read the license: say which.
            tx.rollback().await?;
            let status: String = sqlx::query("SELECT status FROM licenses WHERE id = $1")
                .bind(&terms.id)
                .fetch_one(&self.pool)
                .await?
                .try_get("status")?;
            return Ok(Err(
                if status == crate::domain::LicenseStatus::Active.as_str() {
                    Refusal::SoldOut
                } else {
                    Refusal::Suspended
                },
            ));
        }
        tx.commit().await?;
        Ok(Ok(Accepted { id, tracking_code }))
    }

    /// A lottery application's rank, read in its transaction: the applicant's own entry
    /// must be ranked among the winners, or promoted from the reserves (issue 30), and
    /// applied with that rank, within its offer's time to apply (a winner's runs from the
    /// draw, moved on by suspensions since) and not lapsed. The license row's lock comes
    /// first, as the promotions' does, so a lapse and this application never cross; the
    /// time is the database's under that lock. The handler's check is only for a quicker
    /// answer; this one decides.
    async fn check_winner(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        terms: &LicenseTerms,
        req: &ApplicationRequest,
        _now_ms: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let Some(lock) = self.lock_license(&mut *tx, &terms.id, "units").await? else {
            return Ok(Err(Refusal::NotAWinner));
        };
        let now_ms: i64 = lock.try_get("now_ms")?;
        let Some(row) = sqlx::query(
            "SELECT r.rank FROM lottery_entries e \
             JOIN lottery_ranks r ON r.license_id = e.license_id AND r.entry_no = e.entry_no \
             WHERE e.license_id = $1 AND e.national_id = $2",
        )
        .bind(&terms.id)
        .bind(req.national_id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(Err(Refusal::NotAWinner));
        };
        let rank: i64 = row.try_get("rank")?;
        if rank != req.ticket {
            return Ok(Err(Refusal::NotAWinner));
        }
        // Draws from before the window ran from the draw: from the close, as then.
        let legacy = (terms.closes_at + terms.apply_window_secs) * 1000;
        use super::lottery::Offer;
        match self
            .offer_of(&mut *tx, &terms.id, terms.units, rank, legacy)
            .await?
        {
            Offer::Never => Ok(Err(Refusal::NotAWinner)),
            Offer::Lapsed => Ok(Err(Refusal::TurnOver)),
            Offer::Until(until) if now_ms >= until => Ok(Err(Refusal::OutsideWindow)),
            Offer::Until(_) => Ok(Ok(())),
        }
    }

    /// Inserts the application with a fresh tracking code and returns the code. A code
    /// that collides with another application's is drawn again inside the transaction (a
    /// savepoint undoes the failed INSERT), so a collision costs a retry, never the turn;
    /// a second application of the same national ID is refused.
    async fn insert_application(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &str,
        terms: &LicenseTerms,
        req: &ApplicationRequest,
        now: i64,
    ) -> Result<Result<String, Refusal>, StoreError> {
        use sqlx::Acquire;
        for _ in 0..TRACKING_CODE_TRIES {
            let code = (self.tracking_codes)();
            let mut attempt = (&mut **tx).begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO applications (id, license_id, national_id, citizen_sub, ticket, \
                 tracking_code, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(&terms.id)
            .bind(req.national_id.as_str())
            .bind(&req.citizen_sub)
            .bind(req.ticket)
            .bind(&code)
            .bind(now)
            .execute(&mut *attempt)
            .await;
            match inserted {
                Ok(_) => {
                    attempt.commit().await?;
                    return Ok(Ok(code));
                }
                Err(e) if is_unique_violation(&e) => {
                    attempt.rollback().await?;
                    let mine = sqlx::query(
                        "SELECT 1 AS one FROM applications WHERE license_id = $1 AND national_id = $2",
                    )
                    .bind(&terms.id)
                    .bind(req.national_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
                    if mine.is_some() {
                        return Ok(Err(Refusal::AlreadyApplied));
                    }
                    tracing::warn!(license = %terms.id, "tracking code collision; drawing another");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict)
    }

    pub async fn accepted_count(&self, license_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM applications WHERE license_id = $1")
                .bind(license_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }

    pub async fn license_accepted(&self, license_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT accepted FROM licenses WHERE id = $1")
            .bind(license_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("accepted")?)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApplicationRow {
    pub license_id: String,
    pub ticket: i64,
    pub tracking_code: String,
    pub created_at: i64,
}

impl Store {
    pub async fn applications_of(
        &self,
        citizen_sub: &str,
    ) -> Result<Vec<ApplicationRow>, StoreError> {
        Ok(sqlx::query_as::<_, ApplicationRow>(
            "SELECT license_id, ticket, tracking_code, created_at FROM applications \
             WHERE citizen_sub = $1 ORDER BY created_at DESC",
        )
        .bind(citizen_sub)
        .fetch_all(&self.pool)
        .await?)
    }
}
