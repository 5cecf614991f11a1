//! Licenses and applications in SQL (SQLite or PostgreSQL).
//!
//! An application is accepted in one transaction that (1) inserts it, which the key
//! `(license_id, national_id)` refuses for a second one, (2) claims the round when the
//! license says one per round, which the key `(round, national_id)` refuses likewise, and
//! (3) increments the license's `accepted` only while it is below `units` and the license
//! is active. Any refusal rolls the whole transaction back, so nothing is half-stored and
//! the cap holds under any concurrency and across replicas: PostgreSQL serialises the
//! conditional UPDATEs on the license row, SQLite serialises writers. The UPDATE comes last
//! so the license row is locked only for the commit.

use sqlx::Row;

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};
use crate::domain::application::tracking_code;
use crate::domain::{Accepted, ApplicationRequest, LicenseTerms, Refusal};

impl Store {
    /// Accepts an application or says why not. `now` in Unix seconds, `today` as ISO date.
    pub async fn apply(
        &self,
        terms: &LicenseTerms,
        req: &ApplicationRequest,
        now: i64,
        today: &str,
    ) -> Result<Result<Accepted, Refusal>, StoreError> {
        if !terms.active {
            return Ok(Err(Refusal::Suspended));
        }
        let (from, until) = if terms.lottery {
            (terms.closes_at, terms.closes_at + terms.apply_window_secs)
        } else {
            (terms.opens_at, terms.closes_at)
        };
        if now < from || now >= until {
            return Ok(Err(Refusal::OutsideWindow));
        }
        if let Some(min) = terms.min_age {
            if crate::domain::application::age_on(&req.birthdate, today).is_none_or(|a| a < min) {
                return Ok(Err(Refusal::TooYoung));
            }
        }
        if let Some(ex) = &terms.exclusion {
            // Checked before the transaction: SQLite's writers must start by writing. Two
            // simultaneous applications at two different excluded manufacturers could both
            // pass; licenses of one round close that gap with the round rule.
            let since = now - ex.months * 30 * 24 * 3600;
            let recent = sqlx::query(
                "SELECT l.manufacturer AS m FROM applications a JOIN licenses l ON l.id = a.license_id \
                 WHERE a.national_id = $1 AND a.created_at >= $2",
            )
            .bind(req.national_id.as_str())
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            for r in recent {
                let m: String = r.try_get("m")?;
                if ex.manufacturers.contains(&m) {
                    return Ok(Err(Refusal::RecentPurchase));
                }
            }
        }
        let id = service_kit::keys::random_token(12);
        let tracking_code = tracking_code();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO applications (id, license_id, national_id, citizen_sub, ticket, \
             tracking_code, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&terms.id)
        .bind(req.national_id.as_str())
        .bind(&req.citizen_sub)
        .bind(req.ticket)
        .bind(&tracking_code)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(Err(Refusal::AlreadyApplied)),
            Err(e) => return Err(e.into()),
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
                    return Ok(Err(Refusal::AlreadyAppliedInRound))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let counted = sqlx::query(
            "UPDATE licenses SET accepted = accepted + 1 \
             WHERE id = $1 AND accepted < units AND status = 'active'",
        )
        .bind(&terms.id)
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() != 1 {
            return Ok(Err(Refusal::SoldOut));
        }
        tx.commit().await?;
        Ok(Ok(Accepted { id, tracking_code }))
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
