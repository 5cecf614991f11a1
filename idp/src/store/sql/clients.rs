//! Manufacturers' registrations: trust record, secrets, keys, policy.

use super::*;

/// What a versioned change to a client's standing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// A later version was taken already: nothing changed.
    Stale,
}

impl Db {
    // ---- clients -------------------------------------------------------------------------
    pub async fn insert_client(&self, c: &Client, now: i64) -> Result<(), StoreError> {
        let (jwks, jwks_uri) = key_columns(&c.auth);
        sqlx::query(
            "INSERT INTO clients (id, secret_hash, name, name_fa, stars, redirect_uris, \
             post_logout_redirect_uris, service_scopes, id_token_alg, status, valid_until, \
             created_at, updated_at, allowed_scopes, subject_type, sector_identifier, \
             backchannel_logout_uri, token_endpoint_auth_method, jwks, jwks_uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15, $16, \
             $17, $18, $19)",
        )
        .bind(c.id.as_str())
        .bind(&c.secret_hash)
        .bind(&c.name)
        .bind(&c.name_fa)
        .bind(i64::from(c.stars))
        .bind(json_list(c.redirect_uris.iter().map(RedirectUri::as_str)))
        .bind(json_list(
            c.post_logout_redirect_uris.iter().map(RedirectUri::as_str),
        ))
        .bind(json_list(c.service_scopes.iter().map(String::as_str)))
        .bind(c.id_token_alg.as_str())
        .bind(c.status.as_str())
        .bind(c.valid_until)
        .bind(now)
        .bind(json_list(c.allowed_scopes.iter()))
        .bind(c.subject_type.as_str())
        .bind(c.sector_identifier.as_deref())
        .bind(c.backchannel_logout_uri.as_ref().map(RedirectUri::as_str))
        .bind(c.auth.method())
        .bind(jwks)
        .bind(jwks_uri)
        .execute(&self.pool)
        .await
        .map_err(on_constraint)?;
        Ok(())
    }

    pub async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let rows = sqlx::query("SELECT * FROM clients ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    pub async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Updates the trust record; `None` leaves a field as it is. Returns false if no client.
    pub async fn update_client_trust(
        &self,
        id: &ClientId,
        status: Option<ClientStatus>,
        valid_until: Option<i64>,
        stars: Option<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            // The operator's suspension is the operator's: its resumption lifts only that
            // (a suspension the ministry's console made stands).
            "UPDATE clients SET \
             status = CASE WHEN $2 IS NULL THEN status \
                 WHEN $2 = 'suspended' OR suspended_by_ministry = 1 THEN 'suspended' \
                 ELSE 'active' END, \
             suspended_by_operator = CASE WHEN $2 IS NULL THEN suspended_by_operator \
                 WHEN $2 = 'suspended' THEN 1 ELSE 0 END, \
             valid_until = COALESCE($3, valid_until), stars = COALESCE($4, stars), \
             updated_at = $5 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(status.map(|s| s.as_str().to_owned()))
        .bind(valid_until)
        .bind(stars.map(i64::from))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The ministry's decision `version` on a client's standing: its own suspension
    /// (`Some(true)`) or the lifting of it (`Some(false)`: a suspension by the IdP's
    /// operator stands), or its stars. Taken only if no later version was, with its audit
    /// entries in the same transaction (`actor`, `because`).
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_ministry_decision(
        &self,
        id: &ClientId,
        version: i64,
        suspend: Option<bool>,
        stars: Option<u8>,
        actor: &str,
        because: &str,
        now: i64,
    ) -> Result<Applied, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let row = sqlx::query(
            "UPDATE clients SET \
             suspended_by_ministry = COALESCE($3, suspended_by_ministry), \
             status = CASE WHEN $3 IS NULL THEN status \
                 WHEN $3 = 1 OR suspended_by_operator = 1 THEN 'suspended' ELSE 'active' END, \
             stars = COALESCE($4, stars), standing_version = $2, updated_at = $5 \
             WHERE id = $1 AND standing_version < $2 AND $2 <= standing_version + 1000 \
             RETURNING status",
        )
        .bind(id.as_str())
        .bind(version)
        .bind(suspend.map(i64::from))
        .bind(stars.map(i64::from))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Applied::Stale);
        };
        let status: String = row.try_get("status")?;
        let mut entries = Vec::new();
        match suspend {
            Some(true) => entries.push(("client.suspend", format!("v{version}: {because}"))),
            Some(false) if status == ClientStatus::Suspended.as_str() => entries.push((
                "client.resume",
                format!("v{version}: {because}; the operator's suspension stands"),
            )),
            Some(false) => entries.push(("client.resume", format!("v{version}: {because}"))),
            None => {}
        }
        if let Some(n) = stars {
            entries.push(("client.rate", format!("{n} stars; v{version}: {because}")));
        }
        for (action, detail) in entries {
            service_kit::sql::append_audit(&mut *tx, now, actor, action, id.as_str(), &detail)
                .await?;
        }
        tx.commit().await?;
        Ok(Applied::Done)
    }

    /// The stars the after-sale record withholds, at `version`: taken only if no later
    /// version was, audited in the same transaction.
    pub async fn apply_withheld(
        &self,
        id: &ClientId,
        version: i64,
        withheld: u8,
        actor: &str,
        because: &str,
        now: i64,
    ) -> Result<Applied, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE clients SET stars_withheld = $3, withheld_version = $2, updated_at = $4 \
             WHERE id = $1 AND withheld_version < $2 AND $2 <= withheld_version + 1000",
        )
        .bind(id.as_str())
        .bind(version)
        .bind(i64::from(withheld))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Applied::Stale);
        }
        let detail = format!("{withheld} (v{version}): {because}");
        service_kit::sql::append_audit(
            &mut *tx,
            now,
            actor,
            "client.withheld",
            id.as_str(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(Applied::Done)
    }

    /// The versions of the ministry's decision and of the stars withheld this record has.
    pub async fn standing_versions(&self, id: &ClientId) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query("SELECT standing_version, withheld_version FROM clients WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok((
            r.try_get("standing_version")?,
            r.try_get("withheld_version")?,
        ))
    }

    /// Replaces the secret; the one it replaces is still accepted until `old_until`
    /// (the overlap in which the manufacturer deploys the new one).
    pub async fn update_client_secret(
        &self,
        id: &ClientId,
        secret_hash: &str,
        old_until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET previous_secret_hash = secret_hash, \
             previous_secret_until = $4, secret_hash = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(secret_hash)
        .bind(now)
        .bind(old_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces how a client authenticates (a `private_key_jwt` client's new keys).
    pub async fn update_client_auth(
        &self,
        id: &ClientId,
        auth: &ClientAuth,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (jwks, jwks_uri) = key_columns(auth);
        let done = sqlx::query(
            "UPDATE clients SET token_endpoint_auth_method = $2, jwks = $3, jwks_uri = $4, \
             updated_at = $5 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(auth.method())
        .bind(jwks)
        .bind(jwks_uri)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets what the ministry allows a client: its scopes and its subject type.
    pub async fn update_client_policy(
        &self,
        id: &ClientId,
        allowed_scopes: &Scopes,
        subject_type: SubjectType,
        sector: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET allowed_scopes = $2, subject_type = $3, updated_at = $4, \
             sector_identifier = COALESCE($5, sector_identifier) WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(json_list(allowed_scopes.iter()))
        .bind(subject_type.as_str())
        .bind(now)
        .bind(sector)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Requires (or stops requiring) pushed authorization requests of a client.
    pub async fn update_client_par(
        &self,
        id: &ClientId,
        required: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE clients SET require_par = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str())
                .bind(i64::from(required))
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// The `jwks` and `jwks_uri` columns of a client's authentication.
fn key_columns(auth: &ClientAuth) -> (Option<String>, Option<String>) {
    match auth {
        ClientAuth::Secret => (None, None),
        ClientAuth::PrivateKeyJwt(KeySource::Jwks(set)) => (serde_json::to_string(set).ok(), None),
        ClientAuth::PrivateKeyJwt(KeySource::Uri(uri)) => (None, Some(uri.clone())),
    }
}

fn client_auth_from_row(r: &AnyRow) -> Result<ClientAuth, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client {what}"));
    let method: String = r.try_get("token_endpoint_auth_method")?;
    if method != "private_key_jwt" {
        return Ok(ClientAuth::Secret);
    }
    let jwks: Option<String> = r.try_get("jwks")?;
    let uri: Option<String> = r.try_get("jwks_uri")?;
    let source = match (jwks, uri) {
        (Some(j), None) => KeySource::Jwks(serde_json::from_str(&j).map_err(|_| corrupt("jwks"))?),
        (None, Some(u)) => KeySource::Uri(u),
        _ => return Err(corrupt("keys: one of jwks and jwks_uri")),
    };
    Ok(ClientAuth::PrivateKeyJwt(source))
}

fn client_from_row(r: &AnyRow) -> Result<Client, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client {what}"));
    let uris = |col: &str| -> Result<Vec<RedirectUri>, StoreError> {
        parse_json_list(&r.try_get::<String, _>(col)?)?
            .iter()
            .map(|u| RedirectUri::parse(u).map_err(|_| corrupt(col)))
            .collect()
    };
    Ok(Client {
        id: ClientId::parse(&r.try_get::<String, _>("id")?).map_err(|_| corrupt("id"))?,
        secret_hash: r.try_get("secret_hash")?,
        name: r.try_get("name")?,
        name_fa: r.try_get("name_fa")?,
        stars: u8::try_from(r.try_get::<i64, _>("stars")?).map_err(|_| corrupt("stars"))?,
        withheld: u8::try_from(r.try_get::<i64, _>("stars_withheld")?)
            .map_err(|_| corrupt("stars_withheld"))?,
        redirect_uris: uris("redirect_uris")?,
        post_logout_redirect_uris: uris("post_logout_redirect_uris")?,
        service_scopes: parse_json_list(&r.try_get::<String, _>("service_scopes")?)?,
        id_token_alg: SigningAlg::parse(&r.try_get::<String, _>("id_token_alg")?)
            .ok_or_else(|| corrupt("alg"))?,
        status: ClientStatus::parse(&r.try_get::<String, _>("status")?),
        valid_until: r.try_get("valid_until")?,
        allowed_scopes: Scopes::parse_known(
            &parse_json_list(&r.try_get::<String, _>("allowed_scopes")?)?.join(" "),
            KNOWN_SCOPES,
        ),
        subject_type: SubjectType::parse(&r.try_get::<String, _>("subject_type")?)
            .ok_or_else(|| corrupt("subject type"))?,
        sector_identifier: r.try_get("sector_identifier")?,
        backchannel_logout_uri: r
            .try_get::<Option<String>, _>("backchannel_logout_uri")?
            .map(|u| RedirectUri::parse(&u).map_err(|_| corrupt("backchannel_logout_uri")))
            .transpose()?,
        previous_secret: match (
            r.try_get::<Option<String>, _>("previous_secret_hash")?,
            r.try_get::<Option<i64>, _>("previous_secret_until")?,
        ) {
            (Some(h), Some(until)) => Some((h, until)),
            _ => None,
        },
        auth: client_auth_from_row(r)?,
        require_par: r.try_get::<i64, _>("require_par")? != 0,
    })
}
