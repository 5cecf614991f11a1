//! What the operator's commands do: register and manage manufacturers (clients), rotate
//! keys, read the audit log. Every change is written to the audit log with the actor.

use crate::crypto::{random_token, Keyring};
use crate::domain::client::ClientStatus;
use crate::domain::{Client, ClientId, RedirectUri, SigningAlg};
use crate::store::sql::{AuditRow, Db, StoreError};

pub const YEAR: i64 = 365 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no client {0}")]
    NoSuchClient(String),
    #[error("client {0} exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new manufacturer, as the ministry registers it.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub name: String,
    pub name_fa: String,
    pub stars: u8,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub service_scopes: Vec<String>,
    pub id_token_alg: SigningAlg,
    pub valid_days: i64,
}

/// Hashes a client secret the way the token endpoint checks it.
pub fn hash_secret(keys: &Keyring, secret: &str) -> String {
    keys.hash("client-secret", secret.as_bytes())
}

fn parse_stars(stars: u8) -> Result<u8, AdminError> {
    if (1..=5).contains(&stars) {
        Ok(stars)
    } else {
        Err(AdminError::Invalid("stars must be 1 to 5".into()))
    }
}

fn parse_id(id: &str) -> Result<ClientId, AdminError> {
    ClientId::parse(id).map_err(|e| AdminError::Invalid(e.to_string()))
}

/// Registers a client and returns it with its secret, shown once and never stored.
pub async fn add_client(
    db: &Db,
    keys: &Keyring,
    new: NewClient,
    actor: &str,
    now: i64,
) -> Result<(Client, String), AdminError> {
    let uris = |v: &[String]| -> Result<Vec<RedirectUri>, AdminError> {
        v.iter()
            .map(|u| RedirectUri::parse(u).map_err(|e| AdminError::Invalid(format!("{u}: {e}"))))
            .collect()
    };
    let redirect_uris = uris(&new.redirect_uris)?;
    if redirect_uris.is_empty() {
        return Err(AdminError::Invalid(
            "at least one redirect URI is required".into(),
        ));
    }
    if new.name.trim().is_empty() || new.name_fa.trim().is_empty() {
        return Err(AdminError::Invalid(
            "a name in English and in Persian is required".into(),
        ));
    }
    // 256 bits from the OS generator.
    let secret = random_token(32);
    let client = Client {
        id: parse_id(&new.id)?,
        secret_hash: hash_secret(keys, &secret),
        name: new.name.trim().to_owned(),
        name_fa: new.name_fa.trim().to_owned(),
        stars: parse_stars(new.stars)?,
        redirect_uris,
        post_logout_redirect_uris: uris(&new.post_logout_redirect_uris)?,
        service_scopes: new.service_scopes,
        id_token_alg: new.id_token_alg,
        status: ClientStatus::Active,
        valid_until: now + new.valid_days.max(1) * 24 * 3600,
    };
    match db.insert_client(&client, now).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AdminError::Exists(new.id)),
        Err(e) => return Err(e.into()),
    }
    db.audit(now, actor, "client.add", client.id.as_str(), &client.name)
        .await?;
    Ok((client, secret))
}

pub async fn set_status(
    db: &Db,
    id: &str,
    status: ClientStatus,
    actor: &str,
    now: i64,
) -> Result<(), AdminError> {
    let cid = parse_id(id)?;
    if !db
        .update_client_trust(&cid, Some(status), None, None, now)
        .await?
    {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    let action = match status {
        ClientStatus::Active => "client.resume",
        ClientStatus::Suspended => "client.suspend",
    };
    db.audit(now, actor, action, id, "").await?;
    Ok(())
}

/// Renews the yearly trust record: one year from today, or from the current end if later.
pub async fn renew(db: &Db, id: &str, actor: &str, now: i64) -> Result<i64, AdminError> {
    let cid = parse_id(id)?;
    let client = db
        .client(&cid)
        .await?
        .ok_or_else(|| AdminError::NoSuchClient(id.into()))?;
    let until = client.valid_until.max(now) + YEAR;
    db.update_client_trust(&cid, None, Some(until), None, now)
        .await?;
    db.audit(now, actor, "client.renew", id, &until.to_string())
        .await?;
    Ok(until)
}

pub async fn rate(db: &Db, id: &str, stars: u8, actor: &str, now: i64) -> Result<(), AdminError> {
    let cid = parse_id(id)?;
    let stars = parse_stars(stars)?;
    if !db
        .update_client_trust(&cid, None, None, Some(stars), now)
        .await?
    {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(now, actor, "client.rate", id, &stars.to_string())
        .await?;
    Ok(())
}

/// Issues a new secret; the old one stops working at once.
pub async fn rotate_secret(
    db: &Db,
    keys: &Keyring,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<String, AdminError> {
    let cid = parse_id(id)?;
    let secret = random_token(32);
    if !db
        .update_client_secret(&cid, &hash_secret(keys, &secret), now)
        .await?
    {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(now, actor, "client.rotate-secret", id, "").await?;
    Ok(secret)
}

pub async fn audit_log(db: &Db, limit: i64) -> Result<Vec<AuditRow>, AdminError> {
    Ok(db.audit_log(limit).await?)
}
