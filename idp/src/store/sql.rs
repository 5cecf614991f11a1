//! Durable state in SQL: SQLite (embedded default) or PostgreSQL, one code path.
//!
//! Queries go through sqlx's `Any` driver with `$n` placeholders, which both engines
//! accept, and use only types both engines share (BIGINT as `i64`, TEXT). Each engine has
//! its own migration folder under `migrations/idp/`, so the schema can use each engine's
//! idioms where they differ (identity columns).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow, Row};

use crate::domain::client::{ClientAuth, ClientStatus, KeySource, KNOWN_SCOPES};
use crate::domain::{
    Citizen, Client, ClientId, JalaliDate, MobileNumber, NationalId, RedirectUri, Scopes,
    SigningAlg, SubjectType,
};

/// Queues a back-channel logout for each (client, session) among the live grants the
/// caller's `WHERE` selects (`$2` is now), for clients that registered a logout URI. Both
/// engines accept `INSERT … SELECT … ON CONFLICT DO NOTHING`.
const ENQUEUE_LOGOUTS: &str = "INSERT INTO logout_deliveries \
     (id, client_id, citizen_id, sid, attempts, next_at, created_at) \
     SELECT DISTINCT g.client_id || ':' || g.sid, g.client_id, g.citizen_id, g.sid, 0, $2, $2 \
     FROM grants g JOIN clients c ON c.id = g.client_id";
const ENQUEUE_LOGOUTS_END: &str =
    "AND g.revoked_at IS NULL AND c.backchannel_logout_uri IS NOT NULL ON CONFLICT (id) DO NOTHING";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/idp/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/idp/postgres");

pub use service_kit::sql::StoreError;

/// Turns a unique-constraint violation into [`StoreError::Conflict`] instead of matching
/// on error strings.
fn on_constraint(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict
    } else {
        StoreError::Sql(e)
    }
}

pub use service_kit::sql::{connect_pool_waiting, is_postgres, is_unique_violation, migrate_any};

/// The most deliveries of one client in one round of back-channel logout deliveries.
pub const PER_CLIENT_DUE: i64 = 4;

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    postgres: bool,
}

impl Db {
    /// For commands and batch work: waits up to sqlx's half minute for a connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_waiting(url, max_connections, std::time::Duration::from_secs(30)).await
    }

    /// For a serving replica: a request waits at most `acquire` for a connection, then
    /// fails (503 with Retry-After) instead of joining an unbounded queue.
    pub async fn connect_waiting(
        url: &str,
        max_connections: u32,
        acquire: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let pool = connect_pool_waiting(url, max_connections, acquire).await?;
        Ok(Self {
            pool,
            postgres: is_postgres(url),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate_any(
            &self.pool,
            self.postgres,
            &SQLITE_MIGRATIONS,
            &POSTGRES_MIGRATIONS,
        )
        .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- citizens -------------------------------------------------------------------

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
        sqlx::query(
            "INSERT INTO citizens (id, national_id, mobile, given_name, family_name, \
             birth_jalali, verified_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (national_id) DO UPDATE SET mobile = excluded.mobile, \
             given_name = excluded.given_name, family_name = excluded.family_name, \
             birth_jalali = excluded.birth_jalali, verified_at = excluded.verified_at",
        )
        .bind(&c.id)
        .bind(c.national_id.as_str())
        .bind(c.mobile.e164())
        .bind(&c.given_name)
        .bind(&c.family_name)
        .bind(c.birth_date.canonical())
        .bind(c.verified_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.citizen_by_national_id(&c.national_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("citizen vanished after upsert".into()))
    }

    // ---- clients --------------------------------------------------------------------

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
            "UPDATE clients SET status = COALESCE($2, status), \
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

    // ---- consents -------------------------------------------------------------------

    pub async fn consent(
        &self,
        citizen_id: &str,
        client_id: &ClientId,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT scope FROM consents WHERE citizen_id = $1 AND client_id = $2")
                .bind(citizen_id)
                .bind(client_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("scope")).transpose()?)
    }

    pub async fn save_consent(
        &self,
        citizen_id: &str,
        client_id: &ClientId,
        scope: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (citizen_id, client_id, scope, granted_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (citizen_id, client_id) \
             DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
        )
        .bind(citizen_id)
        .bind(client_id.as_str())
        .bind(scope)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn consents_of(&self, citizen_id: &str) -> Result<Vec<ConsentRow>, StoreError> {
        let rows = sqlx::query_as::<_, ConsentRow>(
            "SELECT c.client_id, k.name, k.name_fa, k.stars, c.scope, c.granted_at \
             FROM consents c JOIN clients k ON k.id = c.client_id \
             WHERE c.citizen_id = $1 ORDER BY c.granted_at DESC",
        )
        .bind(citizen_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Withdraws consent and revokes every grant the citizen gave the client, in one
    /// transaction. Returns the revoked grant ids so access tokens can be cut off too.
    pub async fn revoke_consent(
        &self,
        citizen_id: &str,
        client_id: &ClientId,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        sqlx::query(&format!(
            "{ENQUEUE_LOGOUTS} WHERE g.citizen_id = $1 AND g.client_id = $3 \
             {ENQUEUE_LOGOUTS_END}"
        ))
        .bind(citizen_id)
        .bind(now)
        .bind(client_id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM consents WHERE citizen_id = $1 AND client_id = $2")
            .bind(citizen_id)
            .bind(client_id.as_str())
            .execute(&mut *tx)
            .await?;
        let ids: Vec<String> = sqlx::query(
            "SELECT id FROM grants WHERE citizen_id = $1 AND client_id = $2 \
             AND revoked_at IS NULL",
        )
        .bind(citizen_id)
        .bind(client_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
        sqlx::query(
            "UPDATE grants SET revoked_at = $3 WHERE citizen_id = $1 AND client_id = $2 \
             AND revoked_at IS NULL",
        )
        .bind(citizen_id)
        .bind(client_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    // ---- grants and refresh tokens ----------------------------------------------------

    /// Creates a grant and its first refresh token (if any) atomically.
    pub async fn insert_grant(
        &self,
        g: &GrantRow,
        refresh: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO grants (id, citizen_id, client_id, scope, sid, auth_time, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&g.id)
        .bind(&g.citizen_id)
        .bind(&g.client_id)
        .bind(&g.scope)
        .bind(&g.sid)
        .bind(g.auth_time)
        .bind(g.created_at)
        .execute(&mut *tx)
        .await?;
        if let Some((hash, expires_at)) = refresh {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(hash)
            .bind(&g.id)
            .bind(g.created_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, GrantRow>("SELECT * FROM grants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every grant with what an auditor checks it against: the citizen's national ID, and
    /// how many of its refresh tokens are live at `now` (unused, unexpired; rotation
    /// leaves exactly one). For the operator's audit after a rehearsal (the load tool's
    /// ledger), not for serving.
    pub async fn grant_audit(&self, now: i64) -> Result<Vec<GrantAudit>, StoreError> {
        Ok(sqlx::query_as::<_, GrantAudit>(
            "SELECT c.national_id, g.client_id, g.id AS grant_id, g.revoked_at, \
             (SELECT COUNT(*) FROM refresh_tokens r WHERE r.grant_id = g.id \
              AND r.used_at IS NULL AND r.expires_at > $1) AS live_tokens \
             FROM grants g JOIN citizens c ON c.id = g.citizen_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes every live grant issued from the SSO session `sid`; returns their ids.
    pub async fn revoke_session_grants(
        &self,
        sid: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        // The clients told of it (back-channel logout) are queued in the same transaction.
        sqlx::query(&format!(
            "{ENQUEUE_LOGOUTS} WHERE g.sid = $1 {ENQUEUE_LOGOUTS_END}"
        ))
        .bind(sid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Offline grants (the citizen consented to `offline_access`) are for use while the
        // citizen is signed out: they stay until withdrawn on the account page. Scopes are
        // stored space-separated.
        let ids = sqlx::query(
            "UPDATE grants SET revoked_at = $2 WHERE sid = $1 AND revoked_at IS NULL \
             AND (' ' || scope || ' ') NOT LIKE '% offline_access %' RETURNING id",
        )
        .bind(sid)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
        tx.commit().await?;
        Ok(ids)
    }

    // ---- back-channel logout deliveries ---------------------------------------------

    /// Deliveries whose time has come, oldest first.
    /// The deliveries due now, at most [`PER_CLIENT_DUE`] of any one client's, so that a
    /// manufacturer whose endpoint does not answer cannot fill a round.
    pub async fn due_logout_deliveries(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<LogoutDelivery>, StoreError> {
        Ok(sqlx::query_as::<_, LogoutDelivery>(
            "SELECT id, client_id, citizen_id, sid, attempts, next_at FROM ( \
               SELECT id, client_id, citizen_id, sid, attempts, next_at, \
                      ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY next_at, id) AS n \
               FROM logout_deliveries WHERE next_at <= $1) AS due \
             WHERE n <= $3 ORDER BY next_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .bind(PER_CLIENT_DUE)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims a delivery for one attempt: true for exactly one replica, which moves its
    /// next attempt to `retry_at` (where it stays if this one fails or the replica dies).
    pub async fn claim_logout_delivery(
        &self,
        d: &LogoutDelivery,
        retry_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE logout_deliveries SET attempts = attempts + 1, next_at = $3 \
             WHERE id = $1 AND next_at = $2 AND attempts = $4",
        )
        .bind(&d.id)
        .bind(d.next_at)
        .bind(retry_at)
        .bind(d.attempts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the retry of a delivery whose attempt `attempts` failed (if no later attempt
    /// claimed it since).
    pub async fn retry_logout_delivery(
        &self,
        id: &str,
        attempts: i64,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE logout_deliveries SET next_at = $2 WHERE id = $1 AND attempts = $3")
            .bind(id)
            .bind(retry_at)
            .bind(attempts)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_logout_delivery(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM logout_deliveries WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a grant; true if it was live until now.
    pub async fn revoke_grant(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
        Ok(sqlx::query_as::<_, RefreshRow>(
            "SELECT token_hash, grant_id, expires_at, used_at, retry_answer FROM refresh_tokens \
             WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Rotates a refresh token: marks the old one used, keeping the answer it gave (sealed:
    /// a retry within the grace gets it again), and stores its successor, in one
    /// transaction. Returns false, storing nothing, if the old one was used already (by a
    /// concurrent request or a thief): the caller treats that as a retry or as reuse.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        grant_id: &str,
        now: i64,
        expires_at: i64,
        sealed_answer: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2, retry_answer = $3 \
             WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(old_hash)
        .bind(now)
        .bind(sealed_answer)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(new_hash)
        .bind(grant_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- sign-ins -----------------------------------------------------------------------

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

    // ---- signing keys ---------------------------------------------------------------

    /// Replaces a key's stored private part (sealing it under a new key-encryption key).
    pub async fn set_signing_key_private(
        &self,
        kid: &str,
        private: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE signing_keys SET private_der = $2 WHERE kid = $1")
            .bind(kid)
            .bind(private)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn signing_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, KeyRow>("SELECT * FROM signing_keys ORDER BY activate_at")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Adds a key and retires the current key of the same algorithm when it activates.
    pub async fn add_signing_key(
        &self,
        k: &KeyRow,
        retire_previous_at: Option<(i64, i64)>,
    ) -> Result<(), StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        if let Some((retire_at, expires_at)) = retire_previous_at {
            sqlx::query(
                "UPDATE signing_keys SET retire_at = $2, expires_at = $3 \
                 WHERE alg = $1 AND retire_at IS NULL",
            )
            .bind(&k.alg)
            .bind(retire_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, created_at, \
             activate_at, retire_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
        )
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.private_der)
        .bind(&k.public_jwk)
        .bind(k.created_at)
        .bind(k.activate_at)
        .execute(&mut *tx)
        .await
        .map_err(on_constraint)?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_expired_keys(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    // ---- audit ----------------------------------------------------------------------

    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        service_kit::sql::append_audit(&self.pool, at, actor, action, subject, detail).await
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        Ok(sqlx::query_as::<_, AuditRow>(
            "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    serde_json::to_string(&items.collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

fn parse_json_list(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json list: {e}")))
}

fn citizen_from_row(r: &AnyRow) -> Result<Citizen, StoreError> {
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

#[derive(Debug, Clone, FromRow)]
pub struct ConsentRow {
    pub client_id: String,
    pub name: String,
    pub name_fa: String,
    pub stars: i64,
    pub scope: String,
    pub granted_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub id: String,
    pub citizen_id: String,
    pub client_id: String,
    pub scope: String,
    pub sid: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A grant as [`Db::grant_audit`] reads it.
#[derive(Debug, Clone, FromRow)]
pub struct GrantAudit {
    pub national_id: String,
    pub client_id: String,
    pub grant_id: String,
    pub revoked_at: Option<i64>,
    pub live_tokens: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct RefreshRow {
    pub token_hash: String,
    pub grant_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The answer its rotation gave, sealed under a key derived from the token itself.
    pub retry_answer: Option<String>,
}

/// A logout token to deliver to a client (one per client and SSO session).
#[derive(Debug, Clone, FromRow)]
pub struct LogoutDelivery {
    pub id: String,
    pub client_id: String,
    pub citizen_id: String,
    pub sid: String,
    pub attempts: i64,
    pub next_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_der: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub activate_at: i64,
    pub retire_at: Option<i64>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}
