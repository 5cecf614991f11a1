//! Citizens (verified identities) and their sign-ins.

use super::*;

impl Db {
    // ---- citizens ------------------------------------------------------------------------
    pub async fn citizen_by_national_id(
        &self,
        nid: &NationalId,
    ) -> Result<Option<Citizen>, StoreError> {
        let row = sqlx::query("SELECT * FROM citizens WHERE national_id = $1")
            .bind(nid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| citizen_from_row(&r)).transpose()
    }

    pub async fn citizen_by_id(&self, id: &str) -> Result<Option<Citizen>, StoreError> {
        let row = sqlx::query("SELECT * FROM citizens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| citizen_from_row(&r)).transpose()
    }

    /// Records a registry-confirmed citizen. The `sub` of a known national ID never changes.
    pub async fn upsert_citizen(&self, c: &Citizen, now: i64) -> Result<Citizen, StoreError> {
        let row = sqlx::query(
            "INSERT INTO citizens (id, national_id, mobile, given_name, family_name, \
             birth_jalali, verified_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (national_id) DO UPDATE SET mobile = excluded.mobile, \
             given_name = excluded.given_name, family_name = excluded.family_name, \
             birth_jalali = excluded.birth_jalali, verified_at = excluded.verified_at \
             RETURNING *",
        )
        .bind(&c.id)
        .bind(c.national_id.as_str())
        .bind(c.mobile.e164())
        .bind(&c.given_name)
        .bind(&c.family_name)
        .bind(c.birth_date.canonical())
        .bind(c.verified_at)
        .bind(now)
        // The row as stored, in the same statement (its `id` is the first one's when the
        // national ID was known: the `sub` never changes).
        .fetch_one(&self.pool)
        .await?;
        citizen_from_row(&row)
    }

    // ---- sign-ins ------------------------------------------------------------------------
    /// Records a sign-in at a client and, when the citizen has just consented, their
    /// consent with it: one commit (one statement on PostgreSQL).
    pub async fn record_sign_in_with_consent(
        &self,
        citizen_id: &str,
        client_id: &str,
        consent: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        let Some(scope) = consent else {
            return self.record_sign_in(citizen_id, client_id, at).await;
        };
        const CONSENT: &str = "INSERT INTO consents (citizen_id, client_id, scope, granted_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (citizen_id, client_id) \
             DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at";
        const SIGN_IN: &str =
            "INSERT INTO sign_ins (citizen_id, client_id, at) VALUES ($1, $2, $4)";
        if self.postgres {
            sqlx::query(&format!("WITH c AS ({CONSENT} RETURNING 1) {SIGN_IN}",))
                .bind(citizen_id)
                .bind(client_id)
                .bind(scope)
                .bind(at)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        for q in [CONSENT, SIGN_IN] {
            sqlx::query(q)
                .bind(citizen_id)
                .bind(client_id)
                .bind(scope)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_sign_in(
        &self,
        citizen_id: &str,
        client_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sign_ins (citizen_id, client_id, at) VALUES ($1, $2, $3)")
            .bind(citizen_id)
            .bind(client_id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn recent_sign_ins(
        &self,
        citizen_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, at FROM sign_ins WHERE citizen_id = $1 ORDER BY at DESC, id DESC \
             LIMIT $2",
        )
        .bind(citizen_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("client_id")?, r.try_get("at")?)))
            .collect()
    }
}

pub(super) fn citizen_from_row(r: &AnyRow) -> Result<Citizen, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("citizen {what}"));
    Ok(Citizen {
        id: r.try_get("id")?,
        national_id: NationalId::parse(&r.try_get::<String, _>("national_id")?)
            .map_err(|_| corrupt("national_id"))?,
        mobile: MobileNumber::parse(&r.try_get::<String, _>("mobile")?)
            .map_err(|_| corrupt("mobile"))?,
        given_name: r.try_get("given_name")?,
        family_name: r.try_get("family_name")?,
        birth_date: JalaliDate::parse(&r.try_get::<String, _>("birth_jalali")?)
            .map_err(|_| corrupt("birth date"))?,
        verified_at: r.try_get("verified_at")?,
    })
}
