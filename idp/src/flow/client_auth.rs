//! Client authentication at the token, revocation and introspection endpoints.
//!
//! A client authenticates the one way it is registered with:
//! - **a secret** (`client_secret_basic` or `client_secret_post`), compared by keyed hash,
//!   with a rotated-out secret accepted until its overlap ends;
//! - **its own key** (`private_key_jwt`, RFC 7523 §2.2 and §3, OpenID Connect Core §9): a
//!   JWT the client signs with ES256, PS256 or RS256, with `iss` = `sub` = its client id,
//!   an `aud` naming this provider (the issuer, the token endpoint, or the endpoint
//!   called), an `exp` at most [`MAX_ASSERTION_SECS`] ahead, and a `jti` used once (kept in
//!   the ephemeral store until the assertion expires, so a captured assertion cannot be
//!   replayed on any replica). Symmetric and `none` algorithms are refused: the point is
//!   that nothing the IdP holds can impersonate the client.
//!
//! Keys registered inline are used as they are; keys at a `jwks_uri` are fetched (no
//! redirects, a 5 s timeout, 64 KiB at most), cached for [`CACHE_SECS`], and fetched again
//! when an assertion does not verify with the cached set (a rotation), at most once per
//! [`REFETCH_SECS`] per URI, so assertions naming unknown keys cannot turn into a flood of
//! requests at the manufacturer. If the manufacturer's host is down, the last keys fetched
//! keep working; fetches for one URI wait for each other, never for another URI's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::limits::Subject;
use super::tokens::Tokens;
use crate::crypto::{b64, b64_decode, sha256};
use crate::domain::client::{ClientAuth, ClientUnavailable, KeySource};
use crate::domain::Client;
use crate::error::OAuthError;

/// RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion may expire: its `jti` is remembered that long.
pub const MAX_ASSERTION_SECS: i64 = 600;
/// Clock skew allowed between the client and the IdP.
const LEEWAY_SECS: u64 = 30;
/// How long keys fetched from a `jwks_uri` are used without asking again.
pub const CACHE_SECS: u64 = 300;
/// How often an assertion that does not verify may make the IdP fetch the keys again.
pub const REFETCH_SECS: u64 = 30;
const MAX_JWKS_BYTES: usize = 64 * 1024;

/// What a request offers to authenticate its client, from the `Authorization` header and
/// the form.
#[derive(Debug, Default)]
pub struct ClientCredentials<'a> {
    pub basic: Option<(String, String)>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub assertion_type: Option<&'a str>,
    pub assertion: Option<&'a str>,
}

/// Keys fetched from clients' `jwks_uri`s, per URI.
#[derive(Default)]
pub struct ClientKeyCache {
    sets: std::sync::Mutex<HashMap<String, Fetched>>,
    /// One fetch at a time per URI: a cold cache at the opening is one request per
    /// manufacturer, not one per token request, and a manufacturer whose host is slow
    /// holds up only its own requests.
    fetching: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Fetched {
    set: Arc<JwkSet>,
    at: Instant,
    /// When a failed verification last made us fetch again.
    forced: Option<Instant>,
}

impl ClientKeyCache {
    fn cached(&self, uri: &str) -> Option<Fetched> {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uri)
            .cloned()
    }

    fn fetch_lock(&self, uri: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(uri.to_owned())
            .or_default()
            .clone()
    }

    fn store(&self, uri: &str, fetched: Fetched) {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uri.to_owned(), fetched);
    }
}

fn invalid(d: &str) -> OAuthError {
    OAuthError::invalid_client(d.to_owned())
}

/// Whether a key may check a signature made with `alg`.
fn key_allows(k: &Jwk, alg: Algorithm) -> bool {
    if matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return false;
    }
    match k.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::PS256) => alg == Algorithm::PS256,
        Some(_) => false,
    }
}

impl Tokens<'_> {
    /// Authenticates the client of a request to the token, revocation or introspection
    /// endpoint (`endpoint` is that endpoint's URL, an audience assertions may name).
    pub async fn authenticate_client(
        &self,
        creds: ClientCredentials<'_>,
        endpoint: &str,
        now: i64,
    ) -> Result<Arc<Client>, OAuthError> {
        let client = match (creds.assertion_type, creds.assertion) {
            (None, None) => self.by_secret(&creds, now)?,
            (Some(kind), Some(jwt)) => {
                if creds.basic.is_some() || creds.client_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "use one client authentication method, not two",
                    ));
                }
                if kind != ASSERTION_TYPE {
                    return Err(invalid(
                        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ));
                }
                self.by_assertion(jwt, creds.client_id, endpoint, now)
                    .await?
            }
            _ => {
                return Err(OAuthError::invalid_request(
                    "client_assertion and client_assertion_type go together",
                ))
            }
        };
        match client.availability(now) {
            Ok(()) => {}
            Err(ClientUnavailable::Suspended) => {
                return Err(invalid("the client is suspended by the ministry"))
            }
            Err(ClientUnavailable::Expired) => {
                return Err(invalid("the client's trust record has expired"))
            }
        }
        // In process, this replica's share of the deployment's budget: no round trip.
        if let Err(retry_after) = self.client_rates.check(client.id.as_str()) {
            self.limiter
                .refused(Subject::ClientToken(client.id.as_str()));
            return Err(crate::error::Error::RateLimited { retry_after }.into());
        }
        Ok(client)
    }

    fn by_secret(
        &self,
        creds: &ClientCredentials<'_>,
        now: i64,
    ) -> Result<Arc<Client>, OAuthError> {
        let (id, secret) = match (&creds.basic, creds.client_id, creds.client_secret) {
            (Some(_), _, Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ))
            }
            (Some((id, secret)), form_id, None) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request("client_id does not match"));
                }
                (id.as_str(), secret.as_str())
            }
            (None, Some(id), Some(secret)) => (id, secret),
            _ => return Err(invalid("client authentication is required")),
        };
        let client = self
            .clients
            .get(id)
            .ok_or_else(|| invalid("unknown client or wrong secret"))?;
        if !matches!(client.auth, ClientAuth::Secret) {
            return Err(invalid(
                "this client authenticates with private_key_jwt, not a secret",
            ));
        }
        // The current secret, or the one it replaced during the rotation's overlap.
        let matches = |hash: &str| {
            self.keyring
                .verify("client-secret", secret.as_bytes(), hash)
        };
        let previous_ok = client
            .previous_secret
            .as_ref()
            .is_some_and(|(hash, until)| now < *until && matches(hash));
        if !matches(&client.secret_hash) && !previous_ok {
            return Err(invalid("unknown client or wrong secret"));
        }
        Ok(client)
    }

    async fn by_assertion(
        &self,
        jwt: &str,
        form_id: Option<&str>,
        endpoint: &str,
        now: i64,
    ) -> Result<Arc<Client>, OAuthError> {
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|_| invalid("the client assertion is not a JWT"))?;
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256
        ) {
            return Err(invalid(
                "client assertions are signed with ES256, PS256 or RS256",
            ));
        }
        // The client is named by the (not yet verified) `sub`; the signature then has to
        // be by that client's key.
        let unverified: Value = jwt
            .split('.')
            .nth(1)
            .and_then(b64_decode)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("the client assertion is not a JWT"))?;
        let id = unverified["sub"]
            .as_str()
            .ok_or_else(|| invalid("the client assertion has no sub"))?;
        if form_id.is_some_and(|f| f != id) {
            return Err(invalid("client_id does not match the assertion"));
        }
        let client = self
            .clients
            .get(id)
            .ok_or_else(|| invalid("unknown client or invalid assertion"))?;
        let ClientAuth::PrivateKeyJwt(source) = &client.auth else {
            return Err(invalid(
                "this client authenticates with its secret, not an assertion",
            ));
        };
        // The audience is the issuer identifier, as one string (RFC 7523bis, 2025): an
        // assertion made for an endpoint, or for several audiences, could be replayed
        // where it was not meant to go (the attack on multi-audience assertions).
        if unverified["aud"].as_str() != Some(self.issuer()) {
            return Err(invalid(
                "the client assertion's aud must be the issuer identifier, as a single string",
            ));
        }
        let _ = endpoint;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        v.set_audience(&[self.issuer()]);
        v.set_issuer(&[id]);
        v.sub = Some(id.to_owned());
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let verify = |set: &JwkSet| -> Option<Value> {
            set.keys
                .iter()
                .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
                .filter(|k| key_allows(k, header.alg))
                .filter_map(|k| DecodingKey::from_jwk(k).ok())
                .find_map(|key| jsonwebtoken::decode::<Value>(jwt, &key, &v).ok())
                .map(|d| d.claims)
        };
        let claims = match source {
            KeySource::Jwks(set) => verify(set),
            KeySource::Uri(uri) => match verify(self.published_keys(uri, false).await?.as_ref()) {
                Some(c) => Some(c),
                None => verify(self.published_keys(uri, true).await?.as_ref()),
            },
        }
        .ok_or_else(|| invalid("the client assertion's signature or claims are not valid"))?;
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if exp > now + MAX_ASSERTION_SECS {
            return Err(invalid(
                "the client assertion is valid for too long (at most 10 minutes)",
            ));
        }
        if claims["iat"]
            .as_i64()
            .is_some_and(|iat| iat > now + LEEWAY_SECS as i64)
        {
            return Err(invalid("the client assertion is issued in the future"));
        }
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| invalid("the client assertion needs a jti"))?;
        let marker = format!(
            "assertion-jti:{}:{}",
            client.id.as_str(),
            b64(&sha256(jti.as_bytes()))
        );
        let first = self
            .eph
            .put_new(&marker, "1", self.secs(exp - now + LEEWAY_SECS as i64))
            .await?;
        if !first {
            return Err(invalid("the client assertion was used before (jti)"));
        }
        Ok(client)
    }

    /// The keys a client publishes at `uri`: cached, or fetched. `force` asks again
    /// because the cached ones did not verify an assertion, at most every
    /// [`REFETCH_SECS`].
    async fn published_keys(&self, uri: &str, force: bool) -> Result<Arc<JwkSet>, OAuthError> {
        let fresh = |f: &Fetched| {
            if force {
                f.forced
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(REFETCH_SECS))
            } else {
                f.at.elapsed() < Duration::from_secs(CACHE_SECS)
            }
        };
        let before = self.client_keys.cached(uri);
        if let Some(f) = before.as_ref().filter(|f| fresh(f)) {
            return Ok(f.set.clone());
        }
        let asked = Instant::now();
        let lock = self.client_keys.fetch_lock(uri);
        let _one = lock.lock().await;
        // Another request may have fetched while this one waited.
        let now_cached = self.client_keys.cached(uri);
        if let Some(f) = now_cached.as_ref().filter(|f| f.at >= asked || fresh(f)) {
            return Ok(f.set.clone());
        }
        match self.fetch_keys(uri).await {
            Ok(set) => {
                let set = Arc::new(set);
                self.client_keys.store(
                    uri,
                    Fetched {
                        set: set.clone(),
                        at: Instant::now(),
                        forced: if force {
                            Some(Instant::now())
                        } else {
                            now_cached.and_then(|f| f.forced)
                        },
                    },
                );
                Ok(set)
            }
            Err(why) => {
                tracing::warn!(%uri, %why, "a client's JWKS could not be fetched");
                match now_cached {
                    // The manufacturer's host is down: its last keys keep working, and
                    // the next try waits the refetch interval.
                    Some(mut f) => {
                        f.forced = Some(Instant::now());
                        self.client_keys.store(uri, f.clone());
                        Ok(f.set)
                    }
                    None => Err(invalid("the client's keys could not be fetched")),
                }
            }
        }
    }

    async fn fetch_keys(&self, uri: &str) -> Result<JwkSet, String> {
        let raw = self
            .outbound
            .get_json(
                uri,
                "application/json, application/jwk-set+json",
                Duration::from_secs(5),
                MAX_JWKS_BYTES,
            )
            .await?;
        // Keys a registration would refuse (private, symmetric, short) are dropped.
        let keys: Vec<Value> = raw["keys"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .filter(|k| crate::admin::check_public_jwk(k).is_ok())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        serde_json::from_value(serde_json::json!({ "keys": keys })).map_err(|e| e.to_string())
    }
}
