//! After the sale in SQL (issue 34): the stages manufacturers record per application, the
//! ministry's compensation rates, and what they come to per application, per manufacturer
//! and at a license's issuance (the credit a rating allows).

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::after_sale::{
    compensation, Credit, Lateness, Overdue, Payment, Rate, SaleKind, MAX_MONTHLY_BP,
};

/// A stage of an application after the sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Contract,
    Payment,
    Delivered,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contract => "contract",
            Self::Payment => "payment",
            Self::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contract" => Some(Self::Contract),
            "payment" => Some(Self::Payment),
            "delivered" => Some(Self::Delivered),
            _ => None,
        }
    }
}

/// Why a rate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("a rate is 0 to 100% a month")]
    Range,
    #[error("a rate takes effect from today on, never before")]
    Past,
    #[error("this kind already has a rate from that instant; rates are kept as written")]
    Exists,
}

/// How long after it happened a stage may be recorded (seconds): three days.
pub const GRACE: i64 = 3 * 86_400;

/// A stage as a manufacturer asks to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRequest {
    pub stage: Stage,
    /// Rials, for a payment; 0 otherwise.
    pub amount: i64,
    /// When it happened (Unix seconds).
    pub at: i64,
    /// The caller's key for this request: a retry with it records nothing twice.
    pub key: Option<String>,
}

/// Why a stage was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error("no accepted application of this manufacturer has that tracking code")]
    NoApplication,
    #[error("this stage is recorded already (a contract and a delivery are recorded once)")]
    Recorded,
    #[error("a payment or a delivery needs the contract recorded first")]
    NoContract,
    #[error("the car is delivered: nothing more is recorded")]
    Delivered,
    #[error("a payment is a positive amount, payments total at most the unit price; other stages carry none")]
    Amount,
    #[error("a stage is dated when it happened: not before the application or the last stage, not in the future, at most three days ago")]
    Time,
    #[error("this request key was used for another stage")]
    KeyReused,
}

/// An application's record after the sale, as its buyer and the ministry see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub application_id: String,
    pub manufacturer: String,
    pub license_id: String,
    pub tracking_code: String,
    pub national_id: String,
    pub applied_at: i64,
    pub deadline: i64,
    pub kind: SaleKind,
    pub contract_at: Option<i64>,
    pub payments: Vec<Payment>,
    pub delivered_at: Option<i64>,
    pub lateness: Lateness,
}

impl Delivery {
    pub fn paid(&self) -> i64 {
        self.payments
            .iter()
            .fold(0i64, |sum, p| sum.saturating_add(p.amount))
    }

    /// Past its deadline and not delivered.
    pub fn overdue(&self, now: i64) -> bool {
        self.delivered_at.is_none() && now > self.deadline
    }

    /// The state's name in both languages.
    pub fn state(&self) -> service_kit::Text {
        use service_kit::t;
        match (self.contract_at, self.delivered_at) {
            (_, Some(_)) => t!("تحویل شد", "delivered"),
            (Some(_), None) if !self.payments.is_empty() => {
                t!("قرارداد و پرداخت ثبت شد", "contracted, payments made")
            }
            (Some(_), None) => t!("قرارداد بسته شد", "contracted"),
            (None, None) => t!("در انتظار قرارداد", "awaiting the contract"),
        }
    }
}

/// One manufacturer's deliveries, for the ministry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakerDeliveries {
    pub manufacturer: String,
    pub applications: i64,
    pub delivered: i64,
    pub overdue: i64,
    pub late_delivered: i64,
    pub owed: i64,
    pub unrated_days: i64,
}

impl Store {
    /// The compensation table: every rate, per kind, oldest first.
    pub async fn compensation_rates(&self) -> Result<HashMap<SaleKind, Vec<Rate>>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, effective_from, monthly_bp FROM compensation_rates \
             ORDER BY kind, effective_from",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<SaleKind, Vec<Rate>> = HashMap::new();
        for r in rows {
            let kind: String = r.try_get("kind")?;
            let kind = SaleKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("compensation rate kind {kind}")))?;
            out.entry(kind).or_default().push(Rate {
                from: r.try_get("effective_from")?,
                monthly_bp: r.try_get("monthly_bp")?,
            });
        }
        Ok(out)
    }

    /// Adds a rate to the table, with its audit entry (in the same transaction: on
    /// PostgreSQL the service's role adds none without it). A rate takes effect from today
    /// on, never before: what a past day owes stays what it was. Rates are kept as
    /// written: a second rate of a kind from the same instant is refused.
    pub async fn set_compensation_rate(
        &self,
        kind: SaleKind,
        rate: Rate,
        by: &str,
        now: i64,
    ) -> Result<Result<(), RateError>, StoreError> {
        if !(0..=MAX_MONTHLY_BP).contains(&rate.monthly_bp) {
            return Ok(Err(RateError::Range));
        }
        if rate.from < now - crate::domain::after_sale::DAY {
            return Ok(Err(RateError::Past));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = format!("{} {}bp", rate.from, rate.monthly_bp);
        let entry = super::audit::Entry {
            at: now,
            actor: by,
            action: "rate.compensation",
            subject: kind.as_str(),
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        let inserted = sqlx::query(
            "INSERT INTO compensation_rates (kind, effective_from, monthly_bp, set_by, set_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, effective_from) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(rate.from)
        .bind(rate.monthly_bp)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Err(RateError::Exists));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Records a stage of the application with `tracking_code`, if it is an accepted
    /// application for one of `manufacturer`'s licenses, with its audit entry in the same
    /// transaction (on PostgreSQL the service's role appends no stage without it).
    ///
    /// `s.at` is when it happened: not before the application or the latest stage
    /// recorded, not after `now`, and at most [`GRACE`] before `now` (a stage is recorded
    /// as it happens: a delivery dated back to before its deadline would owe nothing).
    /// Payments never total more than the unit price. A request with the key of a stage
    /// recorded before for this application is that stage (a retry records nothing twice).
    pub async fn record_stage(
        &self,
        manufacturer: &str,
        tracking_code: &str,
        s: &StageRequest,
        by: &str,
        now: i64,
    ) -> Result<Result<String, StageError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = self
            .record_stage_in(&mut tx, manufacturer, tracking_code, s, by, now)
            .await;
        super::finish(tx, done).await
    }

    async fn record_stage_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        manufacturer: &str,
        tracking_code: &str,
        s: &StageRequest,
        by: &str,
        now: i64,
    ) -> Result<Result<String, StageError>, StoreError> {
        // The audit chain's lock, then the license's, in the order staff actions take them
        // (no deadlock). Both are writes, so SQLite's one writer lock is taken at once
        // rather than upgraded from a read. One stage at a time per license: the order
        // checks below hold, two contracts never both pass. The license lock names the
        // manufacturer: another's back-end locks nothing.
        self.lock_audit_chain(&mut *tx).await?;
        let locked = sqlx::query(
            "UPDATE licenses SET status = status WHERE manufacturer = $2 \
             AND id = (SELECT license_id FROM applications WHERE tracking_code = $1) \
             RETURNING unit_price",
        )
        .bind(tracking_code)
        .bind(manufacturer)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(locked) = locked else {
            return Ok(Err(StageError::NoApplication));
        };
        let unit_price: i64 = locked.try_get("unit_price")?;
        let app = sqlx::query(
            "SELECT id, license_id, created_at FROM applications WHERE tracking_code = $1",
        )
        .bind(tracking_code)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(app) = app else {
            return Ok(Err(StageError::NoApplication));
        };
        let (id, license_id): (String, String) = (app.try_get("id")?, app.try_get("license_id")?);
        let created_at: i64 = app.try_get("created_at")?;
        // A retry of a stage recorded before under the same key is that stage.
        if let Some(key) = s.key.as_deref() {
            let seen = sqlx::query(
                "SELECT id, stage, amount FROM delivery_stages \
                 WHERE application_id = $1 AND request_key = $2",
            )
            .bind(&id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = seen {
                let same = r.try_get::<String, _>("stage")? == s.stage.as_str()
                    && r.try_get::<i64, _>("amount")? == s.amount;
                return Ok(if same {
                    Ok(r.try_get("id")?)
                } else {
                    Err(StageError::KeyReused)
                });
            }
        }
        if s.at < created_at || s.at > now || s.at < now - GRACE {
            return Ok(Err(StageError::Time));
        }
        let amount_ok = match s.stage {
            Stage::Payment => s.amount > 0 && s.amount <= unit_price,
            _ => s.amount == 0,
        };
        if !amount_ok {
            return Ok(Err(StageError::Amount));
        }
        let seen =
            sqlx::query("SELECT stage, amount, at FROM delivery_stages WHERE application_id = $1")
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
        // The down payment captured at the bank counts towards the price.
        let held: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(h.amount), 0) AS BIGINT) AS n FROM holds h \
             JOIN applications a ON a.license_id = h.license_id AND a.national_id = h.national_id \
             WHERE a.id = $1 AND h.state = 'captured'",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let (mut contract, mut delivered, mut paid, mut latest) = (false, false, held, i64::MIN);
        for r in &seen {
            latest = latest.max(r.try_get::<i64, _>("at")?);
            match r.try_get::<String, _>("stage")?.as_str() {
                "contract" => contract = true,
                "payment" => paid = paid.saturating_add(r.try_get::<i64, _>("amount")?),
                _ => delivered = true,
            }
        }
        let order = if delivered {
            Err(StageError::Delivered)
        } else if s.at < latest {
            Err(StageError::Time)
        } else {
            match (s.stage, contract) {
                (Stage::Contract, true) => Err(StageError::Recorded),
                (Stage::Contract, false) => Ok(()),
                (_, false) => Err(StageError::NoContract),
                (Stage::Payment, true) if paid.saturating_add(s.amount) > unit_price => {
                    Err(StageError::Amount)
                }
                (_, true) => Ok(()),
            }
        };
        if let Err(e) = order {
            return Ok(Err(e));
        }
        // Its audit entry first: the guard on PostgreSQL looks for it.
        let detail = format!("{} {} {}", s.stage.as_str(), s.amount, s.at);
        let entry = super::audit::Entry {
            at: now,
            actor: by,
            action: match s.stage {
                Stage::Contract => "delivery.contract",
                Stage::Payment => "delivery.payment",
                Stage::Delivered => "delivery.delivered",
            },
            subject: &id,
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut *tx, &entry).await?;
        let stage_id = format!("d-{}", service_kit::keys::random_token(9));
        let inserted = sqlx::query(
            "INSERT INTO delivery_stages (id, application_id, license_id, stage, amount, at, \
             recorded_by, recorded_at, request_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&stage_id)
        .bind(&id)
        .bind(&license_id)
        .bind(s.stage.as_str())
        .bind(s.amount)
        .bind(s.at)
        .bind(by)
        .bind(now)
        .bind(s.key.as_deref())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => Ok(Ok(stage_id)),
            // A contract or a delivery recorded at the same moment by another request.
            Err(e) if service_kit::sql::is_unique_violation(&e) => Ok(Err(StageError::Recorded)),
            Err(e) => Err(e.into()),
        }
    }

    /// The after-sale record of the applications chosen by `filter` (an SQL condition on
    /// `a` (applications) and `l` (licenses) with one text parameter `$1`), computed at
    /// `now` with the ministry's rates.
    pub(crate) async fn deliveries_where(
        &self,
        filter: &str,
        param: &str,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rates = self.compensation_rates().await?;
        let apps = sqlx::query(&format!(
            "SELECT a.id AS id, a.license_id AS license_id, a.tracking_code AS tracking_code, \
             a.national_id AS national_id, a.created_at AS created_at, \
             l.delivery_deadline AS deadline, l.kind AS kind, l.manufacturer AS manufacturer \
             FROM applications a JOIN licenses l ON l.id = a.license_id WHERE {filter} \
             ORDER BY a.created_at, a.id"
        ))
        .bind(param)
        .fetch_all(&self.pool)
        .await?;
        let stages = sqlx::query(&format!(
            "SELECT s.application_id AS application_id, s.stage AS stage, s.amount AS amount, \
             s.at AS at FROM delivery_stages s \
             JOIN applications a ON a.id = s.application_id \
             JOIN licenses l ON l.id = a.license_id WHERE {filter}"
        ))
        .bind(param)
        .fetch_all(&self.pool)
        .await?;
        let mut by_app: HashMap<String, Vec<(String, i64, i64)>> = HashMap::new();
        for s in stages {
            by_app
                .entry(s.try_get("application_id")?)
                .or_default()
                .push((s.try_get("stage")?, s.try_get("amount")?, s.try_get("at")?));
        }
        // The down payment held at a bank and captured for the manufacturer (issue 30) is
        // a payment from its capture on, whatever the manufacturer records.
        let captured = sqlx::query(&format!(
            "SELECT a.id AS application_id, h.amount AS amount, h.settled_at_ms AS at_ms \
             FROM holds h JOIN applications a \
               ON a.license_id = h.license_id AND a.national_id = h.national_id \
             JOIN licenses l ON l.id = a.license_id \
             WHERE h.state = 'captured' AND {filter}"
        ))
        .bind(param)
        .fetch_all(&self.pool)
        .await?;
        for h in captured {
            let at_ms: Option<i64> = h.try_get("at_ms")?;
            by_app
                .entry(h.try_get("application_id")?)
                .or_default()
                .push((
                    "payment".into(),
                    h.try_get("amount")?,
                    at_ms.unwrap_or(0).div_euclid(1000),
                ));
        }
        let mut out = Vec::with_capacity(apps.len());
        for a in apps {
            let id: String = a.try_get("id")?;
            let kind: String = a.try_get("kind")?;
            let kind = crate::domain::PresaleKind::parse(&kind)
                .map(SaleKind::from)
                .ok_or_else(|| StoreError::Corrupt(format!("license kind {kind}")))?;
            let deadline: i64 = a.try_get("deadline")?;
            let mut d = Delivery {
                application_id: id.clone(),
                manufacturer: a.try_get("manufacturer")?,
                license_id: a.try_get("license_id")?,
                tracking_code: a.try_get("tracking_code")?,
                national_id: a.try_get("national_id")?,
                applied_at: a.try_get("created_at")?,
                deadline,
                kind,
                contract_at: None,
                payments: Vec::new(),
                delivered_at: None,
                lateness: Lateness::default(),
            };
            for (stage, amount, at) in by_app.remove(&id).unwrap_or_default() {
                match stage.as_str() {
                    "contract" => d.contract_at = Some(at),
                    "payment" => d.payments.push(Payment { at, amount }),
                    _ => d.delivered_at = Some(at),
                }
            }
            d.payments.sort_by_key(|p| p.at);
            let until = d.delivered_at.unwrap_or(now);
            d.lateness = compensation(
                deadline,
                until,
                &d.payments,
                rates.get(&kind).map(Vec::as_slice).unwrap_or(&[]),
            );
            out.push(d);
        }
        Ok(out)
    }

    /// A buyer's applications after the sale.
    pub async fn deliveries_of_citizen(
        &self,
        citizen_sub: &str,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.deliveries_where("a.citizen_sub = $1", citizen_sub, now)
            .await
    }

    /// A manufacturer's applications after the sale (every license of its, or one).
    pub async fn deliveries_of_manufacturer(
        &self,
        manufacturer: &str,
        now: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.deliveries_where("l.manufacturer = $1", manufacturer, now)
            .await
    }

    /// Every manufacturer's deliveries, summed, for the ministry.
    pub async fn delivery_report(&self, now: i64) -> Result<Vec<MakerDeliveries>, StoreError> {
        let makers: Vec<String> = sqlx::query("SELECT DISTINCT manufacturer FROM licenses")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("manufacturer"))
            .collect::<Result<_, _>>()?;
        // Every application at once (one read of the rates, the stages and the holds),
        // then summed per manufacturer; one with licenses and no application has a row too.
        let all = self.deliveries_where("$1 = $1", "", now).await?;
        let mut out = Vec::new();
        for m in makers {
            let mut row = MakerDeliveries {
                manufacturer: m,
                ..MakerDeliveries::default()
            };
            for d in all.iter().filter(|d| d.manufacturer == row.manufacturer) {
                row.applications += 1;
                row.delivered += i64::from(d.delivered_at.is_some());
                row.overdue += i64::from(d.overdue(now));
                row.late_delivered += i64::from(d.delivered_at.is_some() && d.lateness.days > 0);
                row.owed = row.owed.saturating_add(d.lateness.owed);
                row.unrated_days = row.unrated_days.saturating_add(d.lateness.unrated_days);
            }
            out.push(row);
        }
        out.sort_by(|a, b| a.manufacturer.cmp(&b.manufacturer));
        Ok(out)
    }

    /// A manufacturer's standing for a new license, in the issuing transaction: units
    /// licensed and not delivered times their down payment (once a campaign has closed and
    /// its last window to apply has passed, its units are those sold: unsold units hold no
    /// credit), and its overdue deliveries
    /// with the units delivered and licensed since the first overdue deadline.
    pub(crate) async fn credit_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        manufacturer: &str,
        now: i64,
    ) -> Result<Credit, StoreError> {
        // Per license, summed here with saturating arithmetic: no product of units and
        // down payment can overflow the database's integers.
        let per_license = sqlx::query(
            "SELECT (CASE WHEN l.closes_at + l.apply_window_secs < $2 \
                 THEN l.accepted ELSE l.units END) AS units, l.down_payment AS down_payment, \
                 (SELECT COUNT(*) FROM delivery_stages s \
                  WHERE s.license_id = l.id AND s.stage = 'delivered') AS delivered \
             FROM licenses l WHERE l.manufacturer = $1",
        )
        .bind(manufacturer)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut outstanding: i64 = 0;
        for r in &per_license {
            let (units, down, delivered): (i64, i64, i64) = (
                r.try_get("units")?,
                r.try_get("down_payment")?,
                r.try_get("delivered")?,
            );
            outstanding =
                outstanding.saturating_add((units - delivered).max(0).saturating_mul(down));
        }
        // Overdue: accepted, past the license's deadline, not delivered.
        let first = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(l.delivery_deadline) AS since FROM applications a \
             JOIN licenses l ON l.id = a.license_id \
             WHERE l.manufacturer = $1 AND l.delivery_deadline < $2 \
               AND NOT EXISTS (SELECT 1 FROM delivery_stages s \
                   WHERE s.application_id = a.id AND s.stage = 'delivered')",
        )
        .bind(manufacturer)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let late: i64 = first.try_get("n")?;
        let overdue = if late > 0 {
            let since: i64 = first.try_get("since")?;
            let delivered_since: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM delivery_stages s JOIN licenses l ON l.id = s.license_id \
                 WHERE l.manufacturer = $1 AND s.stage = 'delivered' AND s.at >= $2",
            )
            .bind(manufacturer)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            let licensed_since: i64 = sqlx::query(
                "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) AS n FROM licenses \
                 WHERE manufacturer = $1 AND created_at >= $2",
            )
            .bind(manufacturer)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            Some(Overdue {
                applications: late,
                delivered_since,
                licensed_since,
            })
        } else {
            None
        };
        Ok(Credit {
            stars: None,
            ceiling: None,
            outstanding,
            overdue,
        })
    }
}
