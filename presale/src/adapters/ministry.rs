//! Presale as the ministry's own client of the IdP (client_credentials, no citizen):
//! - the registered, active manufacturers, for the console's license form
//!   (`GET {issuer}/api/manufacturers`, scope `ministry.manufacturers`), never read from the
//!   IdP's database;
//! - who holds a service token presented to presale (RFC 7662 introspection, scope
//!   `ministry.introspect`): a manufacturer sending its seed commitment through its own
//!   credentials at the IdP.
//!
//! - a manufacturer's standing after the sale (issue 34, scope `ministry.trust`): a
//!   suspension or resumption two staff approved, a rating an inspection set, the stars the
//!   after-sale record withholds (`POST {issuer}/api/manufacturers/{id}/standing`).
//!
//! Endpoints come from the IdP's discovery document. The token is reused until shortly
//! before it expires; the list is kept for 30 seconds.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use service_kit::secret::Secret;

/// A manufacturer as the IdP lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manufacturer {
    pub id: String,
    pub name: String,
    pub name_fa: String,
    pub stars: u8,
    pub valid_until: i64,
}

/// A service token's holder, as the IdP vouches for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MinistryError {
    #[error("the IdP did not answer: {0}")]
    Unreachable(String),
    #[error("the IdP refused the ministry's client: {0}")]
    Refused(String),
    /// The IdP declined the request for good (unknown manufacturer, a suspension by its
    /// own operator, a malformed request): retrying it changes nothing.
    #[error("the IdP declined: {0}")]
    Declined(String),
}

const LIST_TTL_SECS: i64 = 30;
const MANUFACTURERS_SCOPE: &str = "ministry.manufacturers";
const TRUST_SCOPE: &str = "ministry.trust";

/// A manufacturer's standing as the ministry decided it; `None` leaves a part as it is.
/// A decision carries its version (the IdP takes none older than one it has), and so do
/// the stars withheld.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Standing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stars: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_version: Option<i64>,
    /// Who proposed it (or `record`), and who approved it.
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    pub reason: String,
}

pub struct MinistryClient {
    http: openidconnect::reqwest::Client,
    token_endpoint: String,
    introspection_endpoint: String,
    manufacturers_url: String,
    client_id: String,
    secret: Secret,
    /// A service token per scope, each reused until shortly before it expires.
    token: Mutex<std::collections::HashMap<&'static str, (String, i64)>>,
    issuer: String,
    list: Mutex<Option<(Vec<Manufacturer>, i64)>>,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: String,
    introspection_endpoint: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct List {
    manufacturers: Vec<Manufacturer>,
}

#[derive(Deserialize)]
struct Introspection {
    active: bool,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    sub: Option<String>,
}

fn unreachable(e: impl std::fmt::Display) -> MinistryError {
    MinistryError::Unreachable(e.to_string())
}

impl MinistryClient {
    /// Reads the IdP's discovery document at `issuer`.
    pub async fn discover(issuer: &str, client_id: &str, secret: Secret) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()?;
        let d: Discovery = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Self {
            http,
            token_endpoint: d.token_endpoint,
            introspection_endpoint: d.introspection_endpoint,
            manufacturers_url: format!("{issuer}/api/manufacturers"),
            client_id: client_id.to_owned(),
            secret,
            token: Mutex::new(std::collections::HashMap::new()),
            issuer: issuer.to_owned(),
            list: Mutex::new(None),
        })
    }

    /// A service token with `scope`, reused until a minute before it ends.
    async fn token(&self, scope: &'static str) -> Result<String, MinistryError> {
        let now = service_kit::clock::now();
        if let Some((t, until)) = self
            .token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .cloned()
        {
            if until > now {
                return Ok(t);
            }
        }
        let r = self
            .http
            .post(&self.token_endpoint)
            .basic_auth(&self.client_id, Some(self.secret.expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .await
            .map_err(unreachable)?;
        if !r.status().is_success() {
            return Err(MinistryError::Refused(format!("token: {}", r.status())));
        }
        let t: TokenAnswer = r.json().await.map_err(unreachable)?;
        self.token.lock().unwrap_or_else(|p| p.into_inner()).insert(
            scope,
            (t.access_token.clone(), now + (t.expires_in - 60).max(0)),
        );
        Ok(t.access_token)
    }

    fn forget(&self, scope: &str) {
        self.token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope);
    }

    /// Carries a decision on `manufacturer`'s standing out at the IdP (idempotent there).
    pub async fn set_standing(
        &self,
        manufacturer: &str,
        s: &Standing,
    ) -> Result<(), MinistryError> {
        // Client ids are path-safe slugs; anything else is no manufacturer of ours.
        if manufacturer.is_empty()
            || !manufacturer
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(MinistryError::Refused(format!(
                "no such manufacturer {manufacturer:?}"
            )));
        }
        let url = format!("{}/api/manufacturers/{manufacturer}/standing", self.issuer);
        for _ in 0..2 {
            let token = self.token(TRUST_SCOPE).await?;
            let r = self
                .http
                .post(&url)
                .bearer_auth(token)
                .json(s)
                .send()
                .await
                .map_err(unreachable)?;
            if r.status().as_u16() == 401 {
                self.forget(TRUST_SCOPE);
                continue;
            }
            let status = r.status();
            if matches!(status.as_u16(), 400 | 404 | 409) {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                return Err(MinistryError::Declined(format!(
                    "{status}: {}",
                    body["error_description"].as_str().unwrap_or("")
                )));
            }
            if !status.is_success() {
                return Err(MinistryError::Refused(format!("standing: {status}")));
            }
            // The list of ratings is stale now.
            *self.list.lock().unwrap_or_else(|p| p.into_inner()) = None;
            // A decision later than any made here is there (this database restored from
            // an older copy?): said, not papered over.
            let answer: serde_json::Value = r.json().await.map_err(unreachable)?;
            let theirs = answer["standing_version"].as_i64().unwrap_or_default();
            if let Some(ours) = s.version.filter(|ours| theirs > *ours) {
                return Err(MinistryError::Declined(format!(
                    "the IdP has decision v{theirs}, later than this one (v{ours})"
                )));
            }
            return Ok(());
        }
        Err(MinistryError::Refused("standing: token refused".into()))
    }

    /// The registered, active manufacturers (kept for 30 seconds).
    /// The list as the IdP gives it now, not the one kept for 30 seconds: for decisions a
    /// rating or a suspension must bind at once (a license's credit, issue 34).
    pub async fn manufacturers_now(&self) -> Result<Vec<Manufacturer>, MinistryError> {
        *self.list.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.manufacturers().await
    }

    pub async fn manufacturers(&self) -> Result<Vec<Manufacturer>, MinistryError> {
        let now = service_kit::clock::now();
        if let Some((list, at)) = self.list.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if now - at < LIST_TTL_SECS {
                return Ok(list);
            }
        }
        let mut answer = None;
        // A token the IdP no longer honours (its keys rotated, the client re-registered)
        // is fetched again once.
        for _ in 0..2 {
            let token = self.token(MANUFACTURERS_SCOPE).await?;
            let r = self
                .http
                .get(&self.manufacturers_url)
                .bearer_auth(token)
                .send()
                .await
                .map_err(unreachable)?;
            if r.status().as_u16() == 401 {
                self.forget(MANUFACTURERS_SCOPE);
                continue;
            }
            if !r.status().is_success() {
                return Err(MinistryError::Refused(format!(
                    "manufacturers: {}",
                    r.status()
                )));
            }
            answer = Some(r.json::<List>().await.map_err(unreachable)?);
            break;
        }
        let list = answer
            .ok_or_else(|| MinistryError::Refused("manufacturers: token refused".into()))?
            .manufacturers;
        *self.list.lock().unwrap_or_else(|p| p.into_inner()) = Some((list.clone(), now));
        Ok(list)
    }

    /// Who holds `token`: a service token (client_credentials) that is live now, of a
    /// client the ministry has not suspended. `None` for anything else.
    pub async fn caller(&self, token: &str) -> Result<Option<Caller>, MinistryError> {
        let r = self
            .http
            .post(&self.introspection_endpoint)
            .basic_auth(&self.client_id, Some(self.secret.expose()))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(unreachable)?;
        if !r.status().is_success() {
            return Err(MinistryError::Refused(format!(
                "introspect: {}",
                r.status()
            )));
        }
        let i: Introspection = r.json().await.map_err(unreachable)?;
        // A service token's subject is its client; a citizen's is somebody else.
        let service = i.sub.as_deref().is_none_or(|s| s == i.client_id);
        Ok(
            (i.active && service && !i.client_id.is_empty()).then(|| Caller {
                client_id: i.client_id,
                scopes: i
                    .scope
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
            }),
        )
    }
}
