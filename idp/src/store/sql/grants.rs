//! Consents, grants and their refresh tokens, and the back-channel logout deliveries
//! their ends queue.

use super::*;

/// Queues a back-channel logout for each (client, session) among the live grants the
/// caller's `WHERE` selects (`$2` is now), for clients that registered a logout URI. Both
/// engines accept `INSERT … SELECT … ON CONFLICT DO NOTHING`.
const ENQUEUE_LOGOUTS: &str = "INSERT INTO logout_deliveries \
     (id, client_id, citizen_id, sid, attempts, next_at, created_at) \
     SELECT DISTINCT g.client_id || ':' || g.sid, g.client_id, g.citizen_id, g.sid, 0, $2, $2 \
     FROM grants g JOIN clients c ON c.id = g.client_id";
const ENQUEUE_LOGOUTS_END: &str =
    "AND g.revoked_at IS NULL AND c.backchannel_logout_uri IS NOT NULL ON CONFLICT (id) DO NOTHING";

/// The most deliveries of one client in one round of back-channel logout deliveries.
pub const PER_CLIENT_DUE: i64 = 4;

impl Db {
    // ---- consents ------------------------------------------------------------------------
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
            "SELECT c.client_id, k.name, k.name_fa, \
             CASE WHEN k.stars - k.stars_withheld < 1 THEN 1 ELSE k.stars - k.stars_withheld END \
             AS stars, c.scope, c.granted_at \
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

    // ---- grants and refresh tokens -------------------------------------------------------
    /// What a code exchange writes: the grant and its first refresh token, atomically,
    /// only if the grant's citizen exists; answers that citizen (`None`: unknown, and
    /// nothing written). One statement on PostgreSQL; a grant id written before (a code
    /// used twice) fails with the unique violation as [`Self::insert_grant`] does.
    pub async fn insert_grant_for_citizen(
        &self,
        g: &GrantRow,
        refresh_hash: &str,
        refresh_expires_at: i64,
    ) -> Result<Option<Citizen>, StoreError> {
        if self.postgres {
            let row = sqlx::query(
                "WITH g AS (INSERT INTO grants (id, citizen_id, client_id, scope, sid, \
                 auth_time, created_at) SELECT $1, $2, $3, $4, $5, $6, $7 \
                 WHERE EXISTS (SELECT 1 FROM citizens WHERE id = $2) RETURNING id), \
                 r AS (INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) \
                 SELECT $8, id, $7, $9 FROM g RETURNING 1) \
                 SELECT c.* FROM citizens c JOIN g ON TRUE WHERE c.id = $2",
            )
            .bind(&g.id)
            .bind(&g.citizen_id)
            .bind(&g.client_id)
            .bind(&g.scope)
            .bind(&g.sid)
            .bind(g.auth_time)
            .bind(g.created_at)
            .bind(refresh_hash)
            .bind(refresh_expires_at)
            .fetch_optional(&self.pool)
            .await?;
            return row
                .map(|r| super::citizens::citizen_from_row(&r))
                .transpose();
        }
        // SQLite: the write first, so that the transaction takes the write lock at its
        // first statement (a read first would be upgraded later, and fail at once if
        // another connection committed in between: SQLITE_BUSY_SNAPSHOT).
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let made = sqlx::query(
            "INSERT INTO grants (id, citizen_id, client_id, scope, sid, auth_time, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM citizens WHERE id = $2)",
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
        if made.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(refresh_hash)
        .bind(&g.id)
        .bind(g.created_at)
        .bind(refresh_expires_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM citizens WHERE id = $1")
            .bind(&g.citizen_id)
            .fetch_one(&mut *tx)
            .await?;
        let citizen = super::citizens::citizen_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(citizen))
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

    // ---- back-channel logout deliveries --------------------------------------------------
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
