//! The storefronts as OpenID Connect relying parties of the IdP. Presale knows the IdP
//! only by its issuer URL: endpoints and keys come from discovery, each storefront is a
//! confidential client with its own registration, and every sign-in uses PKCE, state,
//! nonce and the RFC 9207 `iss` check, exactly as a manufacturer's own site would.

use std::collections::HashMap;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::config::{Settings, StorefrontConfig};
use crate::domain::NationalId;

/// What a storefront asks the IdP to release (besides `openid`): the name and birth date
/// (age rules), the verified phone, and the national ID (one seat per person).
const SCOPES: [&str; 3] = ["profile", "phone", "national_id"];

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// One manufacturer's storefront and its client at the IdP.
pub struct Storefront {
    pub cfg: StorefrontConfig,
    client: Client,
}

/// What a sign-in must remember between the redirect to the IdP and the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub manufacturer: String,
    /// The browser session that started it: a callback in another browser is refused.
    pub sid: String,
    verifier: String,
    nonce: String,
}

/// The verified citizen, from the ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sub: String,
    /// The IdP's session (`sid`): a logout token naming it ends this sign-in.
    pub idp_sid: Option<String>,
    pub national_id: NationalId,
    pub name: String,
    pub birthdate: String,
    /// The verified phone (E.164), for notifications.
    pub phone: Option<String>,
}

/// Fresh tokens: the refresh token to keep and when the access token lapses.
pub struct Tokens {
    pub refresh_token: Option<String>,
    pub access_expires: i64,
}

/// Why a refresh gave no tokens.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshError {
    /// The IdP answered no for good (the grant revoked, consent withdrawn, the
    /// manufacturer suspended, a reused token): the storefront session ends.
    Refused,
    /// The IdP did not answer, or answered that it is busy or failing: try again later,
    /// signed in as before.
    Unreachable,
}

/// Why a sign-in did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the IdP did not answer the code exchange")]
    Unreachable,
    /// The IdP answered that it cannot serve now (`temporarily_unavailable`: its store
    /// blinked, its admission is full): try again shortly. The IdP gives a taken code
    /// back on its own failures; one it spent all the same (its answer lost) is refused
    /// on the retry (`invalid_grant`: a new sign-in).
    #[error("the IdP is busy")]
    Busy,
    /// The IdP refused the code for good (`invalid_grant`: spent, expired, or lost with
    /// its store): this sign-in cannot finish; a new one can.
    #[error("the IdP refused the code")]
    Refused,
    #[error("the ID token is missing or does not verify")]
    InvalidToken,
    #[error("the national ID was not released or is not valid")]
    NoNationalId,
}

pub struct RelyingParty {
    pub issuer: String,
    http: openidconnect::reqwest::Client,
    storefronts: HashMap<String, Storefront>,
    /// The IdP's published keys for logout tokens, fetched again (at most every 30 s)
    /// when a token names a key not among them: the IdP rotates its keys.
    jwks_uri: String,
    jwks: std::sync::RwLock<(jsonwebtoken::jwk::JwkSet, i64)>,
    /// The IdP's pushed authorization request endpoint (RFC 9126), when it has one, and
    /// its authorization endpoint, where a pushed request is then sent by reference.
    par_endpoint: Option<String>,
    authorization_endpoint: String,
}

/// Why a sign-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The IdP could not be reached, or answered that it is busy (its `Retry-After`,
    /// when it gave one).
    #[error("the IdP did not take the pushed authorization request")]
    Busy { retry_after: Option<u64> },
    /// The IdP refused the request for good (a suspended client, a request it does not
    /// accept): this storefront cannot sign anyone in until that changes.
    #[error("the IdP refused the pushed authorization request")]
    Refused,
}

/// How long a storefront's visitor waits for the IdP to take a pushed request: a sign-in
/// holds a browsing slot meanwhile.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a verified logout token names.
#[derive(Debug, Clone)]
pub struct Logout {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

/// Why a logout token was refused (OIDC Back-Channel Logout 1.0 §2.6).
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("not a JWT")]
    Malformed,
    #[error("typ is not logout+jwt")]
    Type,
    #[error("signed by no key the IdP publishes")]
    UnknownKey,
    #[error("signature, issuer, audience or expiry do not verify")]
    Invalid,
    #[error("not a logout event, or carries a nonce")]
    NotLogout,
    #[error("names neither a session nor a subject")]
    NoSubject,
}

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn expires(tokens: &impl OAuth2TokenResponse) -> i64 {
    service_kit::clock::now()
        + tokens
            .expires_in()
            .map(|d| d.as_secs() as i64)
            .unwrap_or(300)
}

impl RelyingParty {
    /// Reads the IdP's discovery document and registers each storefront's client with
    /// redirect URI `{base_url}/{id}/callback`.
    pub async fn discover(settings: &Settings) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let meta =
            CoreProviderMetadata::discover_async(IssuerUrl::new(settings.issuer.clone())?, &http)
                .await?;
        // The same keys as the ID token verifier's, in the form the JWT checker takes.
        let jwks_uri = meta.jwks_uri().url().to_string();
        let authorization_endpoint = meta.authorization_endpoint().url().to_string();
        // RFC 9126's metadata is not among the library's fields: read it from the same
        // document.
        let par_endpoint = http
            .get(format!(
                "{}/.well-known/openid-configuration",
                settings.issuer.trim_end_matches('/')
            ))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?["pushed_authorization_request_endpoint"]
            .as_str()
            .map(str::to_owned);
        if settings.storefronts.iter().any(|s| s.push_requests) && par_endpoint.is_none() {
            anyhow::bail!("a storefront pushes its requests, but the IdP has no PAR endpoint");
        }
        let jwks = serde_json::to_value(meta.jwks())
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(jsonwebtoken::jwk::JwkSet { keys: vec![] });
        let mut storefronts = HashMap::new();
        for s in &settings.storefronts {
            let client = CoreClient::from_provider_metadata(
                meta.clone(),
                ClientId::new(s.id.clone()),
                Some(ClientSecret::new(s.client_secret.expose().to_owned())),
            )
            .set_redirect_uri(RedirectUrl::new(format!(
                "{}/{}/callback",
                settings.base_url, s.id
            ))?);
            storefronts.insert(
                s.id.clone(),
                Storefront {
                    cfg: s.clone(),
                    client,
                },
            );
        }
        Ok(Self {
            issuer: settings.issuer.clone(),
            http,
            storefronts,
            jwks_uri,
            jwks: std::sync::RwLock::new((jwks, service_kit::clock::now())),
            par_endpoint,
            authorization_endpoint,
        })
    }

    /// The IdP's key `kid`, fetching the key set again if it is new to us.
    async fn logout_key(&self, kid: &str) -> Option<jsonwebtoken::DecodingKey> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| {
            set.find(kid)
                .and_then(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok())
        };
        let fetched_at = {
            let guard = self.jwks.read().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = find(&guard.0) {
                return Some(k);
            }
            guard.1
        };
        let now = service_kit::clock::now();
        if now - fetched_at < 30 {
            return None;
        }
        let fresh: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(&self.jwks_uri)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let key = find(&fresh);
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = (fresh, now);
        key
    }

    /// Verifies a logout token for `front` as §2.6 says: signed by the IdP (never `none`),
    /// `typ` logout+jwt when present, our issuer, this storefront's client id as audience,
    /// fresh, the back-channel logout event, no `nonce`, and a `sid` or `sub`.
    pub async fn verify_logout_token(
        &self,
        front: &Storefront,
        token: &str,
    ) -> Result<Logout, LogoutError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| LogoutError::Malformed)?;
        if header.typ.as_deref().is_some_and(|t| t != "logout+jwt") {
            return Err(LogoutError::Type);
        }
        if !matches!(
            header.alg,
            jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::RS256
        ) {
            return Err(LogoutError::Invalid);
        }
        let key = self
            .logout_key(header.kid.as_deref().ok_or(LogoutError::UnknownKey)?)
            .await
            .ok_or(LogoutError::UnknownKey)?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&front.cfg.id]);
        v.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
        v.leeway = 30;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|_| LogoutError::Invalid)?
            .claims;
        let iat = claims["iat"].as_i64().unwrap_or_default();
        if (service_kit::clock::now() - iat).abs() > 300 {
            return Err(LogoutError::Invalid);
        }
        if claims["events"].get(EVENT).is_none_or(|e| !e.is_object())
            || claims.get("nonce").is_some()
        {
            return Err(LogoutError::NotLogout);
        }
        let text = |k: &str| {
            claims[k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return Err(LogoutError::NoSubject);
        }
        Ok(Logout {
            sid,
            sub,
            jti: text("jti").ok_or(LogoutError::Invalid)?,
        })
    }

    pub fn storefront(&self, id: &str) -> Option<&Storefront> {
        self.storefronts.get(id)
    }

    /// Every storefront's id.
    pub fn storefront_ids(&self) -> impl Iterator<Item = &str> {
        self.storefronts.keys().map(String::as_str)
    }

    /// The storefronts by id.
    pub fn storefronts(&self) -> Vec<&Storefront> {
        let mut v: Vec<&Storefront> = self.storefronts.values().collect();
        v.sort_by(|a, b| a.cfg.id.cmp(&b.cfg.id));
        v
    }

    /// Where to send the browser, the `state` to file the pending sign-in under, and the
    /// pending sign-in itself. A storefront that pushes its requests (`push_requests`)
    /// posts them to the IdP first, authenticated, and sends the browser with only the
    /// `request_uri` it is given.
    pub async fn start(
        &self,
        front: &Storefront,
        sid: &str,
    ) -> Result<(String, String, Pending), StartError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = front
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            manufacturer: front.cfg.id.clone(),
            sid: sid.to_owned(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        };
        let url = match (&self.par_endpoint, front.cfg.push_requests) {
            (Some(endpoint), true) => self.push(front, endpoint, &url).await?,
            _ => url.to_string(),
        };
        Ok((url, state.secret().clone(), pending))
    }

    /// Pushes the request `url` carries (RFC 9126 §2.1) and gives the authorization URL
    /// that names it by reference.
    async fn push(
        &self,
        front: &Storefront,
        endpoint: &str,
        url: &openidconnect::url::Url,
    ) -> Result<String, StartError> {
        let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let busy = |why: &dyn std::fmt::Display| {
            tracing::warn!(storefront = %front.cfg.id, %why, "the IdP did not take a pushed request");
            StartError::Busy { retry_after: None }
        };
        let answer = self
            .http
            .post(endpoint)
            .timeout(PUSH_TIMEOUT)
            .basic_auth(
                enc(&front.cfg.id),
                Some(enc(front.cfg.client_secret.expose())),
            )
            .form(&params)
            .send()
            .await
            .map_err(|e| busy(&e.without_url()))?;
        let status = answer.status().as_u16();
        if status != 201 {
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            tracing::warn!(
                storefront = %front.cfg.id,
                status,
                error = body["error"].as_str().unwrap_or_default(),
                description = body["error_description"].as_str().unwrap_or_default(),
                "the IdP did not take a pushed request"
            );
            return Err(if status == 429 || status >= 500 {
                StartError::Busy { retry_after }
            } else {
                StartError::Refused
            });
        }
        let body: serde_json::Value = answer.json().await.map_err(|e| busy(&e))?;
        let request_uri = body["request_uri"]
            .as_str()
            .ok_or_else(|| busy(&"no request_uri in the answer"))?;
        let mut out = url::Url::parse(&self.authorization_endpoint).map_err(|e| busy(&e))?;
        out.query_pairs_mut()
            .append_pair("client_id", &front.cfg.id)
            .append_pair("request_uri", request_uri);
        Ok(out.to_string())
    }

    /// Exchanges the code and verifies the ID token against the pending sign-in.
    pub async fn finish(
        &self,
        front: &Storefront,
        code: String,
        pending: Pending,
    ) -> Result<(Identity, Tokens), SignInError> {
        let tokens = match front.client.exchange_code(AuthorizationCode::new(code)) {
            Ok(req) => req
                .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
                .request_async(&self.http)
                .await
                .map_err(|e| match e {
                    RequestTokenError::ServerResponse(r)
                        if *r.error() == CoreErrorResponseType::InvalidGrant =>
                    {
                        SignInError::Refused
                    }
                    RequestTokenError::ServerResponse(r)
                        if matches!(r.error(), CoreErrorResponseType::Extension(e) if e == "temporarily_unavailable") =>
                    {
                        SignInError::Busy
                    }
                    // Anything else may pass (a busy or unreachable IdP): a reload retries.
                    _ => SignInError::Unreachable,
                })?,
            Err(_) => return Err(SignInError::Unreachable),
        };
        let verifier = front.client.id_token_verifier().set_allowed_algs(vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ]);
        let id_token = tokens.id_token().ok_or(SignInError::InvalidToken)?;
        if id_token
            .claims(&verifier, &Nonce::new(pending.nonce))
            .is_err()
        {
            return Err(SignInError::InvalidToken);
        }
        // Verified above; read the emta-specific claims from the same payload.
        let payload: serde_json::Value = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(service_kit::keys::b64_decode)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let s = |k: &str| payload[k].as_str().unwrap_or_default().to_owned();
        let national_id =
            NationalId::parse(&s("national_id")).map_err(|_| SignInError::NoNationalId)?;
        let identity = Identity {
            sub: s("sub"),
            idp_sid: Some(s("sid")).filter(|v| !v.is_empty()),
            national_id,
            name: s("name"),
            birthdate: s("birthdate"),
            phone: Some(s("phone_number")).filter(|p| !p.is_empty()),
        };
        let fresh = Tokens {
            refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
            access_expires: expires(&tokens),
        };
        Ok((identity, fresh))
    }

    /// Refreshes with rotation; `None` when the IdP refuses (consent withdrawn, grant
    /// revoked, client suspended) or cannot be reached.
    pub async fn refresh(
        &self,
        front: &Storefront,
        refresh_token: &str,
    ) -> Result<Tokens, RefreshError> {
        let refresh_token = RefreshToken::new(refresh_token.to_owned());
        let req = front
            .client
            .exchange_refresh_token(&refresh_token)
            .map_err(|_| RefreshError::Refused)?;
        let tokens = req.request_async(&self.http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                CoreErrorResponseType::Extension(x)
                    if x == "temporarily_unavailable" || x == "server_error" =>
                {
                    RefreshError::Unreachable
                }
                _ => RefreshError::Refused,
            },
            // No OAuth answer at all (a connection refused, a timeout, a proxy's page).
            _ => RefreshError::Unreachable,
        })?;
        Ok(Tokens {
            refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
            access_expires: expires(&tokens),
        })
    }
}
