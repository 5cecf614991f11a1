//! The provider's signing keys, sealed at rest.

use super::*;

impl Db {
    // ---- signing keys --------------------------------------------------------------------
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
