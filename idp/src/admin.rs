//! What the operator's commands do: register and manage manufacturers (clients), rotate
//! keys, read the audit log. Every change is written to the audit log with the actor.

use crate::crypto::{random_token, Keyring};
use crate::domain::client::{ClientAuth, ClientStatus, KeySource, KNOWN_SCOPES};
use crate::domain::{Client, ClientId, RedirectUri, Scopes, SigningAlg, SubjectType};
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
    /// Claims-bearing scopes the client may ask for; `openid` is always allowed.
    /// `national_id` only where the ministry decides.
    pub allowed_scopes: Vec<String>,
    pub subject_type: SubjectType,
    /// The sector of pairwise subjects; by default the redirect URIs' one host.
    pub sector_identifier: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    /// The client's own keys (`private_key_jwt`, see [`parse_client_keys`]); `None` for a
    /// client that authenticates with a secret.
    pub private_key_jwt: Option<KeySource>,
    /// Whether its callbacks (`jwks_uri`, back-channel logout URI) may be private or
    /// loopback addresses: a local deployment and tests only (`EMTA_ALLOW_PRIVATE_CALLBACKS`),
    /// see [`callback_uri`].
    pub private_callbacks: bool,
}

/// A URL the IdP itself will call (a `jwks_uri`, a back-channel logout URI): absolute
/// https (http only for localhost) and, unless `private`, one the IdP may call in
/// production ([`crate::adapters::outbound::allowed`]: no localhost, no private address
/// written in it). Checked at registration, so that a registration the IdP would refuse
/// to call is refused when it is made, not silently failed at every call.
pub fn callback_uri(uri: &str, private: bool) -> Result<RedirectUri, AdminError> {
    let parsed =
        RedirectUri::parse_new(uri).map_err(|e| AdminError::Invalid(format!("{uri}: {e}")))?;
    crate::adapters::outbound::allowed(uri, private).map_err(|why| {
        AdminError::Invalid(format!(
            "{uri}: the IdP calls only public https addresses in production, not {why}"
        ))
    })?;
    Ok(parsed)
}

/// Checks the keys a `private_key_jwt` client registers: a JWKS document of public
/// signing keys (EC P-256 or RSA of at least 2048 bits; no private or symmetric members),
/// or an https URI where the client publishes them. Neither means a secret client.
pub fn parse_client_keys(
    jwks: Option<&str>,
    jwks_uri: Option<&str>,
    private: bool,
) -> Result<Option<KeySource>, AdminError> {
    let bad = |m: &str| AdminError::Invalid(m.to_owned());
    match (jwks, jwks_uri) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(bad("give one of --jwks and --jwks-uri, not both")),
        (None, Some(uri)) => {
            RedirectUri::parse(uri).map_err(|_| {
                bad("the JWKS URI must be an absolute https URL (http only for localhost)")
            })?;
            callback_uri(uri, private)?;
            Ok(Some(KeySource::Uri(uri.to_owned())))
        }
        (Some(doc), None) => {
            let raw: serde_json::Value = serde_json::from_str(doc)
                .map_err(|e| bad(&format!("the JWKS is not a JSON document: {e}")))?;
            let keys = raw["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() {
                return Err(bad("the JWKS has no keys"));
            }
            for k in &keys {
                check_public_jwk(k).map_err(|m| bad(&m))?;
            }
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(raw)
                .map_err(|e| bad(&format!("the JWKS does not parse: {e}")))?;
            Ok(Some(KeySource::Jwks(set)))
        }
    }
}

/// One key of a client's JWKS: a public signing key of a kind assertions may use.
pub fn check_public_jwk(k: &serde_json::Value) -> Result<(), String> {
    let kid = k["kid"].as_str().unwrap_or("(no kid)");
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| k.get(m).is_some())
    {
        return Err(format!(
            "key {kid} holds private or symmetric material; register public keys only"
        ));
    }
    match (k["kty"].as_str(), k["crv"].as_str()) {
        (Some("EC"), Some("P-256")) => Ok(()),
        (Some("RSA"), _) => {
            let bits = k["n"]
                .as_str()
                .and_then(crate::crypto::b64_decode)
                .map_or(0, |n| n.len() * 8);
            if bits >= 2048 {
                Ok(())
            } else {
                Err(format!("RSA key {kid} is shorter than 2048 bits"))
            }
        }
        _ => Err(format!(
            "key {kid} is not an EC P-256 or RSA public key (ES256, PS256, RS256)"
        )),
    }
}

/// What a manufacturer gets unless the ministry decides otherwise: no national ID, and a
/// `sub` of its own.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "phone"];

/// Parses the scopes a client may ask for: known ones only, `openid` always included.
pub fn parse_allowed_scopes(asked: &[String]) -> Result<Scopes, AdminError> {
    if let Some(bad) = asked.iter().find(|s| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(AdminError::Invalid(format!(
            "unknown scope {bad}; known: {}",
            KNOWN_SCOPES.join(" ")
        )));
    }
    Ok(Scopes::parse_known(
        &format!("openid {}", asked.join(" ")),
        KNOWN_SCOPES,
    ))
}

/// The pairwise sector: the one given, or the single host all redirect URIs share
/// (OIDC Core §8.1: several hosts need a sector identifier).
/// Refuses `sector` when another client (not `except`) has it.
async fn sector_is_free(
    db: &Db,
    sector: &str,
    except: Option<&ClientId>,
) -> Result<(), AdminError> {
    if let Some(other) = db.clients().await?.into_iter().find(|c| {
        Some(&c.id) != except && c.subject_type == SubjectType::Pairwise && c.sector() == sector
    }) {
        return Err(AdminError::Invalid(format!(
            "{sector} is the pairwise sector of {} already: give this client a --sector-identifier of its own",
            other.id.as_str()
        )));
    }
    Ok(())
}

fn pairwise_sector(
    subject_type: SubjectType,
    given: Option<String>,
    redirect_uris: &[RedirectUri],
) -> Result<Option<String>, AdminError> {
    if let Some(s) = given {
        let s = s.trim().to_owned();
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:/_".contains(&b));
        if !ok {
            return Err(AdminError::Invalid(
                "the sector identifier is a host name or an https URL".into(),
            ));
        }
        return Ok(Some(s));
    }
    if subject_type == SubjectType::Public {
        return Ok(None);
    }
    let hosts: std::collections::BTreeSet<String> = redirect_uris
        .iter()
        .filter_map(|u| {
            url::Url::parse(u.as_str())
                .ok()?
                .host_str()
                .map(str::to_owned)
        })
        .collect();
    match hosts.len() {
        1 => Ok(hosts.into_iter().next()),
        _ => Err(AdminError::Invalid(
            "redirect URIs on several hosts need a sector identifier for pairwise subjects".into(),
        )),
    }
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

/// Registers a client and returns it with its secret, shown once and never stored (empty
/// for a client that authenticates with its own keys).
pub async fn add_client(
    db: &Db,
    keys: &Keyring,
    new: NewClient,
    actor: &str,
    now: i64,
) -> Result<(Client, String), AdminError> {
    let uris = |v: &[String]| -> Result<Vec<RedirectUri>, AdminError> {
        v.iter()
            .map(|u| {
                RedirectUri::parse_new(u).map_err(|e| AdminError::Invalid(format!("{u}: {e}")))
            })
            .collect()
    };
    let redirect_uris = uris(&new.redirect_uris)?;
    // A client with no redirect URI signs nobody in: a service client (the ministry's own,
    // calling ministry APIs with client_credentials), which may ask for no citizen's claims.
    let service_only = !new.service_scopes.is_empty() && new.allowed_scopes.is_empty();
    if redirect_uris.is_empty() && !service_only {
        return Err(AdminError::Invalid(
            "at least one redirect URI is required (or, for a service client, service scopes and no claims scopes)".into(),
        ));
    }
    // The ministry's scopes (reading the manufacturers, introspecting other clients'
    // service tokens) go to the ministry's own service clients only, never to a client
    // that signs citizens in.
    // Likewise a manufacturer's seed share (`presale.seed`): its own seed client, never the
    // storefront's, whose secret presale holds.
    if !redirect_uris.is_empty()
        && new
            .service_scopes
            .iter()
            .any(|s| s.starts_with("ministry.") || s == "presale.seed")
    {
        return Err(AdminError::Invalid(
            "ministry.* and presale.seed service scopes are for service clients only (no redirect URI)".into(),
        ));
    }
    if new.name.trim().is_empty() || new.name_fa.trim().is_empty() {
        return Err(AdminError::Invalid(
            "a name in English and in Persian is required".into(),
        ));
    }
    let allowed_scopes = parse_allowed_scopes(&new.allowed_scopes)?;
    let sector_identifier =
        pairwise_sector(new.subject_type, new.sector_identifier, &redirect_uris)?;
    // A pairwise sector is one manufacturer's alone, whether taken from the redirect
    // URIs' host or given: two manufacturers on one host (a shared platform), or one that
    // names another's sector, would otherwise get the same subjects and could join their
    // records. (OIDC lets one organisation's clients share a sector; the ministry
    // registers one client per manufacturer, so none needs to.)
    if let (SubjectType::Pairwise, Some(sector)) = (new.subject_type, sector_identifier.as_deref())
    {
        sector_is_free(db, sector, None).await?;
    }
    let backchannel_logout_uri = new
        .backchannel_logout_uri
        .as_deref()
        .map(|u| callback_uri(u, new.private_callbacks))
        .transpose()?;
    // 256 bits from the OS generator. A key-holding client is given none: its stored hash
    // is of a secret nobody knows, and its registered method refuses secrets anyway.
    let secret = random_token(32);
    let secret_hash = hash_secret(keys, &secret);
    // Checked here too, whoever parsed the keys: the registration is what must hold.
    if let Some(KeySource::Uri(u)) = &new.private_key_jwt {
        callback_uri(u, new.private_callbacks)?;
    }
    let (auth, secret) = match new.private_key_jwt {
        Some(k) => (ClientAuth::PrivateKeyJwt(k), String::new()),
        None => (ClientAuth::Secret, secret),
    };
    let client = Client {
        id: parse_id(&new.id)?,
        secret_hash,
        name: new.name.trim().to_owned(),
        name_fa: new.name_fa.trim().to_owned(),
        stars: parse_stars(new.stars)?,
        redirect_uris,
        post_logout_redirect_uris: uris(&new.post_logout_redirect_uris)?,
        service_scopes: new.service_scopes,
        id_token_alg: new.id_token_alg,
        status: ClientStatus::Active,
        valid_until: now + new.valid_days.max(1) * 24 * 3600,
        allowed_scopes,
        subject_type: new.subject_type,
        sector_identifier,
        backchannel_logout_uri,
        previous_secret: None,
        auth,
        require_par: false,
        withheld: 0,
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

/// Suspends or resumes a client as the IdP's operator; the status it has after (a
/// resumption leaves a suspension the ministry's console made standing).
pub async fn set_status(
    db: &Db,
    id: &str,
    status: ClientStatus,
    actor: &str,
    now: i64,
) -> Result<ClientStatus, AdminError> {
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
    // The operator lifts only the operator's suspension: one the ministry's console made
    // stands, and the entry says so.
    let still = status == ClientStatus::Active
        && db
            .client(&cid)
            .await?
            .is_some_and(|c| c.status == ClientStatus::Suspended);
    let detail = if still {
        "the operator's suspension lifted; the ministry's suspension stands"
    } else {
        ""
    };
    db.audit(now, actor, action, id, detail).await?;
    Ok(if still {
        ClientStatus::Suspended
    } else {
        status
    })
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

/// Issues a new secret; the old one keeps working for `overlap_secs` (0: stops at once,
/// for a leaked secret), so the manufacturer can deploy the new one without an outage.
pub async fn rotate_secret(
    db: &Db,
    keys: &Keyring,
    id: &str,
    overlap_secs: i64,
    actor: &str,
    now: i64,
) -> Result<String, AdminError> {
    let cid = parse_id(id)?;
    // A key-holding client is never accepted with a secret: issuing one would only give
    // the operator the false idea that it works.
    if let Some(c) = db.client(&cid).await? {
        if matches!(c.auth, ClientAuth::PrivateKeyJwt(_)) {
            return Err(AdminError::Invalid(format!(
                "{id} authenticates with private_key_jwt: register new keys with \
                 `idp client keys {id}`, or go back to secrets with no keys first"
            )));
        }
    }
    let secret = random_token(32);
    if !db
        .update_client_secret(
            &cid,
            &hash_secret(keys, &secret),
            now + overlap_secs.max(0),
            now,
        )
        .await?
    {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(
        now,
        actor,
        "client.rotate-secret",
        id,
        &format!("old secret until {}", now + overlap_secs.max(0)),
    )
    .await?;
    Ok(secret)
}

/// Sets the scopes a client may ask for and the subject type it sees.
pub async fn set_policy(
    db: &Db,
    id: &str,
    allowed_scopes: &[String],
    subject_type: SubjectType,
    actor: &str,
    now: i64,
) -> Result<(), AdminError> {
    let cid = parse_id(id)?;
    let scopes = parse_allowed_scopes(allowed_scopes)?;
    let client = db
        .client(&cid)
        .await?
        .ok_or_else(|| AdminError::NoSuchClient(id.into()))?;
    // A client switched to pairwise without a sector of its own gets its redirect host's,
    // written down now (so that it never moves), and only if no other client has it.
    let sector = match (subject_type, &client.sector_identifier) {
        (SubjectType::Pairwise, None) => {
            let derived = client.sector();
            sector_is_free(db, &derived, Some(&cid)).await?;
            Some(derived)
        }
        _ => None,
    };
    if !db
        .update_client_policy(&cid, &scopes, subject_type, sector.as_deref(), now)
        .await?
    {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(
        now,
        actor,
        "client.policy",
        id,
        &format!("scopes {scopes}; subject {}", subject_type.as_str()),
    )
    .await?;
    Ok(())
}

/// Requires a client to push its authorization requests (RFC 9126), or stops requiring it.
pub async fn set_par(
    db: &Db,
    id: &str,
    required: bool,
    actor: &str,
    now: i64,
) -> Result<(), AdminError> {
    let cid = parse_id(id)?;
    if !db.update_client_par(&cid, required, now).await? {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(
        now,
        actor,
        "client.par",
        id,
        if required { "required" } else { "optional" },
    )
    .await?;
    Ok(())
}

/// Registers new keys for a `private_key_jwt` client (inline or at a URI) and makes it
/// one: its secrets stop working. With neither, it goes back to its secret.
pub async fn set_client_keys(
    db: &Db,
    id: &str,
    keys: Option<KeySource>,
    private_callbacks: bool,
    actor: &str,
    now: i64,
) -> Result<(), AdminError> {
    let cid = parse_id(id)?;
    if let Some(KeySource::Uri(u)) = &keys {
        callback_uri(u, private_callbacks)?;
    }
    let auth = keys.map_or(ClientAuth::Secret, ClientAuth::PrivateKeyJwt);
    let detail = match &auth {
        ClientAuth::Secret => "secret".to_owned(),
        ClientAuth::PrivateKeyJwt(KeySource::Uri(u)) => format!("private_key_jwt, jwks_uri {u}"),
        ClientAuth::PrivateKeyJwt(KeySource::Jwks(set)) => format!(
            "private_key_jwt, keys {}",
            set.keys
                .iter()
                .map(|k| k.common.key_id.as_deref().unwrap_or("(no kid)"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    if !db.update_client_auth(&cid, &auth, now).await? {
        return Err(AdminError::NoSuchClient(id.into()));
    }
    db.audit(now, actor, "client.keys", id, &detail).await?;
    Ok(())
}

pub async fn audit_log(db: &Db, limit: i64) -> Result<Vec<AuditRow>, AdminError> {
    Ok(db.audit_log(limit).await?)
}
