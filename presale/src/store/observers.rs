//! Observers registered as parties of seeds, with their public keys (see
//! [`crate::transparency::observer`]). An administrator registers one (audited); a
//! registration is never edited, only disabled. An observer's statements count only while
//! its registration stands and has its audit entry: a row inserted in the database without
//! one is nobody.

use sqlx::Row;

use super::{audit, Store, StoreError};
use crate::transparency::observer;

/// A registered observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observer {
    pub name: String,
    pub verifier_key: String,
    pub added_by: String,
    pub added_at: i64,
    pub disabled_at: Option<i64>,
}

/// Why an observer was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObserverError {
    #[error("an observer's key is an Ed25519 note key named observer/NAME (presale observer-key)")]
    Malformed,
    #[error("this name is the ministry's, a manufacturer's or an observer's already")]
    Taken,
}

/// Names no observer may take: the ministry's party and the legacy seed's.
fn reserved(name: &str) -> bool {
    name == super::commitments::MINISTRY
        || name == crate::transparency::seed::LEGACY
        || name.ends_with(super::commitments::SEED_CLIENT_SUFFIX)
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Observer, StoreError> {
    Ok(Observer {
        name: r.try_get("name")?,
        verifier_key: r.try_get("verifier_key")?,
        added_by: r.try_get("added_by")?,
        added_at: r.try_get("added_at")?,
        disabled_at: r.try_get("disabled_at")?,
    })
}

impl Store {
    /// Registers observer `name` with its verifier key, as `by`, audited.
    pub async fn add_observer(
        &self,
        name: &str,
        verifier_key: &str,
        by: &str,
        now: i64,
    ) -> Result<Result<(), ObserverError>, StoreError> {
        if !crate::transparency::seed::valid_party(name) || !observer::valid_key(name, verifier_key)
        {
            return Ok(Err(ObserverError::Malformed));
        }
        if reserved(name) {
            return Ok(Err(ObserverError::Taken));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let inserted = sqlx::query(
            "INSERT INTO seed_observers (name, verifier_key, added_by, added_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(verifier_key)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if service_kit::sql::is_unique_violation(&e) => {
                return Ok(Err(ObserverError::Taken))
            }
            Err(e) => return Err(e.into()),
        }
        let entry = audit::Entry {
            at: now,
            actor: by,
            action: "observer.add",
            subject: name,
            detail: verifier_key,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Disables observer `name` as `by`, audited: its statements no longer count, and it
    /// is no party of licenses proposed from now on. Whether it was enabled.
    pub async fn disable_observer(
        &self,
        name: &str,
        by: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = sqlx::query(
            "UPDATE seed_observers SET disabled_at = $2 WHERE name = $1 AND disabled_at IS NULL",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let entry = audit::Entry {
                at: now,
                actor: by,
                action: "observer.disable",
                subject: name,
                detail: "",
                anchor: None,
            };
            self.audit_in(&mut tx, &entry).await?;
            tx.commit().await?;
        }
        Ok(done)
    }

    /// Every registered observer, by name.
    pub async fn observers(&self) -> Result<Vec<Observer>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, verifier_key, added_by, added_at, disabled_at \
             FROM seed_observers ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Observer `name`'s key, if it is registered, enabled, and its registration has its
    /// audit entry.
    pub(crate) async fn observer_key_in<'c, E>(
        &self,
        conn: E,
        name: &str,
    ) -> Result<Option<String>, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        Ok(self
            .observer_registration_in(conn, name)
            .await?
            .and_then(|(key, enabled)| enabled.then_some(key)))
    }

    /// Observer `name`'s key and whether it is enabled, if it was ever registered (with
    /// its audit entry). A disabled observer still reveals for the licenses it is a party
    /// of: disabling keeps it out of licenses to come, it does not void its share (which
    /// would count as withheld, in its name) of those issued.
    pub async fn observer_registration(
        &self,
        name: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        self.observer_registration_in(self.pool(), name).await
    }

    /// [`Self::observer_registration`] on `conn`: a row written without its `observer.add`
    /// entry is nobody.
    async fn observer_registration_in<'c, E>(
        &self,
        conn: E,
        name: &str,
    ) -> Result<Option<(String, bool)>, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let row = sqlx::query(
            "SELECT o.verifier_key, o.disabled_at FROM seed_observers o JOIN audit_log a \
             ON a.action = 'observer.add' AND a.subject = o.name AND a.actor = o.added_by \
             AND a.detail = o.verifier_key WHERE o.name = $1",
        )
        .bind(name)
        .fetch_optional(conn)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("verifier_key")?,
                r.try_get::<Option<i64>, _>("disabled_at")?.is_none(),
            ))
        })
        .transpose()
    }
}
