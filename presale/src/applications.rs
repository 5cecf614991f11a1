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

use sqlx::{AnyPool, Row};

use idp::store::sql::{connect_pool, is_postgres, is_unique_violation, migrate_any};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/presale/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Why an application was refused. Each has a message in Persian and English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    SoldOut,
    AlreadyApplied,
    AlreadyAppliedInRound,
    Suspended,
    OutsideWindow,
    TooYoung,
    RecentPurchase,
}

impl Refusal {
    pub fn text(self) -> idp::error::Text {
        use idp::error::Text;
        match self {
            Self::SoldOut => Text {
                fa: "ظرفیت این پیش‌فروش تکمیل شده است.",
                en: "This presale is sold out.",
            },
            Self::AlreadyApplied => Text {
                fa: "با این کد ملی قبلاً در این پیش‌فروش ثبت‌نام شده است.",
                en: "This national ID has already applied in this presale.",
            },
            Self::AlreadyAppliedInRound => Text {
                fa: "با این کد ملی در این دوره فروش قبلاً ثبت‌نام شده است.",
                en: "This national ID has already applied in this sales round.",
            },
            Self::Suspended => Text {
                fa: "مجوز این پیش‌فروش از سوی وزارت تعلیق شده است.",
                en: "The ministry has suspended this presale's license.",
            },
            Self::OutsideWindow => Text {
                fa: "زمان ثبت‌نام این پیش‌فروش نیست.",
                en: "Registration for this presale is not open now.",
            },
            Self::TooYoung => Text {
                fa: "سن متقاضی کمتر از حد مجاز این پیش‌فروش است.",
                en: "The applicant is younger than this presale allows.",
            },
            Self::RecentPurchase => Text {
                fa: "این کد ملی در ماه‌های اخیر از خودروسازان بزرگ خرید داشته و در این پیش‌فروش مجاز نیست.",
                en: "This national ID bought from a major manufacturer recently and cannot apply in this presale.",
            },
        }
    }
}

/// The license fields an application is checked against.
#[derive(Debug, Clone)]
pub struct LicenseTerms {
    pub id: String,
    pub units: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub min_age: Option<i64>,
    pub round: Option<String>,
    pub active: bool,
    /// Lottery winners apply after the window closes, for `apply_window_secs`.
    pub lottery: bool,
    pub apply_window_secs: i64,
    /// No accepted application at these manufacturers in the last so many months.
    pub exclusion: Option<(Vec<String>, i64)>,
}

/// One applicant's request, with the identity the IdP verified.
#[derive(Debug, Clone)]
pub struct ApplicationRequest {
    pub national_id: String,
    pub citizen_sub: String,
    /// ISO 8601 birth date from the ID token.
    pub birthdate: String,
    pub ticket: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub tracking_code: String,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Ok(Self {
            pool: connect_pool(url, max_connections).await?,
            postgres: is_postgres(url),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate_any(&self.pool, self.postgres, &SQLITE, &POSTGRES).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

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
            if age_on(&req.birthdate, today).is_none_or(|a| a < min) {
                return Ok(Err(Refusal::TooYoung));
            }
        }
        if let Some((makers, months)) = &terms.exclusion {
            // Checked before the transaction: SQLite's writers must start by writing. Two
            // simultaneous applications at two different excluded manufacturers could both
            // pass; licenses of one round close that gap with the round rule.
            let since = now - months * 30 * 24 * 3600;
            let recent = sqlx::query(
                "SELECT l.manufacturer AS m FROM applications a JOIN licenses l ON l.id = a.license_id \
                 WHERE a.national_id = $1 AND a.created_at >= $2",
            )
            .bind(&req.national_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            for r in recent {
                let m: String = r.try_get("m")?;
                if makers.contains(&m) {
                    return Ok(Err(Refusal::RecentPurchase));
                }
            }
        }
        let id = idp::crypto::random_token(12);
        let tracking_code = tracking_code();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO applications (id, license_id, national_id, citizen_sub, ticket, \
             tracking_code, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&terms.id)
        .bind(&req.national_id)
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
            .bind(&req.national_id)
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

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

/// A license as the storefront shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LicenseRow {
    pub id: String,
    pub license_no: String,
    pub manufacturer: String,
    pub model: String,
    pub units: i64,
    pub accepted: i64,
    pub unit_price: i64,
    pub down_payment: i64,
    pub kind: String,
    pub delivery_deadline: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub selection: String,
    pub admission_per_min: i64,
    pub max_active: i64,
    pub apply_window_secs: i64,
    pub min_age: Option<i64>,
    pub round: Option<String>,
    pub status: String,
    pub seed_commitment: String,
    pub seed: String,
    pub exclusion_manufacturers: Option<String>,
    pub exclusion_months: Option<i64>,
}

impl LicenseRow {
    pub fn terms(&self) -> LicenseTerms {
        LicenseTerms {
            id: self.id.clone(),
            units: self.units,
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            min_age: self.min_age,
            round: self.round.clone(),
            active: self.status == "active",
            lottery: self.selection == "lottery",
            apply_window_secs: self.apply_window_secs,
            exclusion: match (&self.exclusion_manufacturers, self.exclusion_months) {
                (Some(list), Some(months)) => Some((
                    list.split(',')
                        .map(|m| m.trim().to_owned())
                        .filter(|m| !m.is_empty())
                        .collect(),
                    months,
                )),
                _ => None,
            },
        }
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
    pub async fn licenses(&self) -> Result<Vec<LicenseRow>, StoreError> {
        Ok(sqlx::query_as::<_, LicenseRow>(
            "SELECT id, license_no, manufacturer, model, units, accepted, unit_price, \
             down_payment, kind, delivery_deadline, opens_at, closes_at, selection, \
             admission_per_min, max_active, apply_window_secs, min_age, round, status, \
             seed_commitment, seed, exclusion_manufacturers, exclusion_months \
             FROM licenses ORDER BY opens_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

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

/// A tracking code people can read out on the phone: 10 digits, no ambiguity.
fn tracking_code() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen_range(1_000_000_000..10_000_000_000);
    n.to_string()
}

/// Whole years from an ISO birth date to an ISO day.
pub fn age_on(birthdate: &str, today: &str) -> Option<i64> {
    let parse = |s: &str| -> Option<(i64, i64, i64)> {
        let mut it = s.split('-').map(|p| p.parse::<i64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let (by, bm, bd) = parse(birthdate)?;
    let (ty, tm, td) = parse(today)?;
    let mut age = ty - by;
    if (tm, td) < (bm, bd) {
        age -= 1;
    }
    Some(age)
}

#[cfg(test)]
mod tests {
    use super::age_on;

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age_on("2008-03-20", "2026-03-19"), Some(17));
        assert_eq!(age_on("2008-03-20", "2026-03-20"), Some(18));
        assert_eq!(age_on("garbage", "2026-03-20"), None);
    }
}
