//! Authorization codes, the token endpoint's grants, access-token checks, revocation and
//! introspection.
//!
//! - Codes are single use (an atomic GETDEL) and live 60 s. A replayed code fails and,
//!   presented again by its own client, revokes the grant issued from it (RFC 6749
//!   §4.1.2, RFC 9700 §4.5); one presented by another client, or taken while the database
//!   could not be reached, is given back; a code makes at most one grant (its id is
//!   derived from the code).
//! - Refresh tokens rotate on every use; presenting a used one is reuse and revokes the
//!   whole grant (RFC 9700 §4.14.2), except a retry within the grace, which gets the
//!   answer kept with the rotation.
//! - Access tokens are opaque to clients and self-contained: `at1.` and the sealed
//!   payload (ChaCha20-Poly1305 under a key derived from the server secret). Issuing one
//!   writes nothing (a client_credentials flood cannot fill Redis); checking one reads the
//!   revocation markers of the token and of its grant, and the client's status and
//!   current scopes, so revocation, grant revocation, suspension and a withdrawn scope
//!   stop it at once.

mod access;
mod refresh;
mod revoke;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::authorize::AuthRequest;
use super::login::{ACR, AMR};
use crate::core::Core;
use crate::crypto::{b64, pkce_s256_matches, random_token, sha256};
use crate::domain::client::{KNOWN_SCOPES, OFFLINE_ACCESS};
use crate::domain::{Citizen, Client, ClientId, RedirectUri, Scopes};
use crate::error::{OAuthError, Result};
use crate::store::sql::{GrantRow, RefreshRow};

pub const CODE_TTL: i64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeData {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub citizen_id: String,
    pub scope: String,
    pub sid: String,
    pub auth_time: i64,
    /// When the code lapses (Unix seconds): a code given back after an exchange that
    /// could not reach the database keeps only the time it had left.
    #[serde(default)]
    pub expires_at: i64,
}

/// What an access token stands for, stored under the token's hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessData {
    /// Token id, for revocation of this one token.
    pub jti: String,
    pub client_id: String,
    /// The citizen; `None` for client_credentials tokens.
    pub citizen_id: Option<String>,
    pub grant_id: Option<String>,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: std::borrow::Cow<'static, str>,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

fn hash_key(prefix: &str, token: &str) -> String {
    format!("{prefix}:{}", b64(&sha256(token.as_bytes())))
}

/// Marks an SSO session that ended (signed out), for the codes it issued just before.
fn ended_session_key(sid: &str) -> String {
    format!("sid-ended:{sid}")
}

fn revoked_token_key(jti: &str) -> String {
    format!("rt:{jti}")
}

fn revoked_grant_key(grant_id: &str) -> String {
    format!("rg:{grant_id}")
}

/// The key the answer to a refresh is sealed under for a retry (kept with the rotation,
/// in SQL): only the presenter of the old refresh token can derive it, so the database
/// never holds a usable token.
fn retry_seal_key(old_token: &str) -> [u8; 32] {
    sha256(format!("emta refresh retry\n{old_token}").as_bytes())
}

/// What every access token starts with: its format's version (and the seal's AAD).
const ACCESS_TOKEN_PREFIX: &str = "at1.";

/// A granted scope as its client may still have it: the ministry's current policy.
/// The service scope that lets a client introspect other clients' service tokens.
pub const INTROSPECT_SCOPE: &str = "ministry.introspect";

fn current_scope(granted: &str, client: &Client) -> String {
    Scopes::parse_known(granted, KNOWN_SCOPES)
        .restrict(&client.allowed_scopes)
        .to_string()
}

/// The claims each scope releases (DESIGN.md, "Scopes and claims").
pub fn scope_claims(citizen: &Citizen, scope: &Scopes, out: &mut Map<String, Value>) {
    if scope.contains("profile") {
        out.insert(
            "name".into(),
            json!(format!("{} {}", citizen.given_name, citizen.family_name)),
        );
        out.insert("given_name".into(), json!(citizen.given_name));
        out.insert("family_name".into(), json!(citizen.family_name));
        out.insert(
            "birthdate".into(),
            json!(citizen.birth_date.to_iso_string()),
        );
    }
    if scope.contains("phone") {
        out.insert("phone_number".into(), json!(citizen.mobile.e164()));
        out.insert("phone_number_verified".into(), json!(true));
    }
    if scope.contains("national_id") {
        out.insert("national_id".into(), json!(citizen.national_id.as_str()));
    }
}

/// Human-readable claim names per scope, for the consent screen.
pub fn scope_descriptions(scope: &Scopes) -> Vec<crate::error::Text> {
    use crate::error::Text;
    let mut out = vec![Text {
        fa: "شناسه کاربری امتا",
        en: "Your emta user identifier",
    }];
    if scope.contains("profile") {
        out.push(Text {
            fa: "نام، نام خانوادگی و تاریخ تولد",
            en: "Your name, family name and birth date",
        });
    }
    if scope.contains("phone") {
        out.push(Text {
            fa: "شماره همراه تأییدشده",
            en: "Your verified mobile number",
        });
    }
    if scope.contains("national_id") {
        out.push(Text {
            fa: "کد ملی",
            en: "Your national ID",
        });
    }
    if scope.contains(OFFLINE_ACCESS) {
        out.push(Text {
            fa: "دسترسی پس از خروج شما از امتا، تا زمانی که آن را در حساب کاربری لغو کنید",
            en: "Access while you are signed out of emta, until you withdraw it on your account page",
        });
    }
    out
}

/// Codes, tokens and grants over the provider's core (`core.tokens()`).
#[derive(Clone, Copy)]
pub struct Tokens<'a>(pub(crate) &'a Core);

impl std::ops::Deref for Tokens<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.0
    }
}

impl Tokens<'_> {
    /// When a grant ends, however often it is refreshed. An offline grant (the citizen
    /// consented to `offline_access`) lives up to the absolute grant lifetime and survives
    /// sign-out; any other grant is bound to the sign-in it came from: it ends with that
    /// SSO session's lifetime (`session_secs` after `auth_time`) or its logout.
    pub fn grant_ends(&self, grant: &GrantRow) -> i64 {
        let absolute = grant.created_at + self.settings.grant_max_secs;
        if Scopes::parse_known(&grant.scope, KNOWN_SCOPES).contains(OFFLINE_ACCESS) {
            absolute
        } else {
            absolute.min(grant.auth_time + self.settings.session_secs)
        }
    }

    /// Issues a code for a completed login and returns the redirect URL to the client.
    pub async fn issue_code(
        &self,
        req: &AuthRequest,
        citizen_id: &str,
        sid: &str,
        auth_time: i64,
        now: i64,
    ) -> Result<String> {
        self.issue_code_consented(req, citizen_id, sid, auth_time, now, None)
            .await
    }

    /// [`Self::issue_code`] for a citizen who has just consented to `consent` (the
    /// scopes): the consent is stored with the sign-in, in one commit, before the code
    /// exists.
    pub async fn issue_code_consented(
        &self,
        req: &AuthRequest,
        citizen_id: &str,
        sid: &str,
        auth_time: i64,
        now: i64,
        consent: Option<&str>,
    ) -> Result<String> {
        let code = random_token(32);
        let data = CodeData {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            nonce: req.nonce.clone(),
            citizen_id: citizen_id.to_owned(),
            scope: req.scope.to_string(),
            sid: sid.to_owned(),
            auth_time,
            expires_at: now + CODE_TTL,
        };
        let json = serde_json::to_string(&data)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        self.db
            .record_sign_in_with_consent(citizen_id, req.client_id.as_str(), consent, now)
            .await?;
        self.eph
            .put(&hash_key("code", &code), &json, self.secs(CODE_TTL))
            .await?;
        metrics::counter!("emta_login_step_total", "step" => "code", "outcome" => "completed")
            .increment(1);
        Ok(super::authorize::redirect_url(
            self.issuer(),
            req.redirect_uri.as_str(),
            req.state.as_deref(),
            &[("code", &code)],
        ))
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let key = hash_key("code", code);
        let Some(raw) = self.eph.take(&key).await? else {
            // Replay of a code already exchanged, by the client it was issued to: revoke
            // what it produced (RFC 9700 §4.2.4). Another client presenting it proves
            // nothing about the owner's grant, and must not end it.
            if let Some(used) = self.eph.get(&hash_key("code-used", code)).await? {
                if let Some((owner, grant_id)) = used.split_once('|') {
                    if owner == client.id.as_str() {
                        self.revoke_grant(grant_id, now).await?;
                        tracing::warn!(client = %client.id.as_str(), "authorization code replayed; grant revoked");
                    }
                }
            }
            return Err(OAuthError::invalid_grant(
                "the code is invalid, expired or used",
            ));
        };
        let data: CodeData = serde_json::from_str(&raw)
            .map_err(|e| OAuthError::from(crate::error::Error::Internal(e.to_string())))?;
        if data.client_id != client.id {
            // Given back untouched: a client holding another's code cannot burn it.
            self.give_back_code(&key, &raw, &data, now).await;
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if redirect_uri != Some(data.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the request",
            ));
        }
        let Some(verifier) = verifier else {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required (PKCE)",
            ));
        };
        if !pkce_s256_matches(verifier, &data.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match (PKCE)",
            ));
        }
        match self.grant_for_code(client, code, &data, now).await {
            // The database could not be reached: nothing was decided, so the code is
            // given back for the client's retry instead of being burnt. (Had the grant
            // committed and only its answer been lost, the retry finds the grant's key
            // taken, below, and is refused: a code never makes two grants.)
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                self.give_back_code(&key, &raw, &data, now).await;
                Err(e)
            }
            done => done,
        }
    }

    /// Puts a taken code back for the time it had left (best effort: a code that cannot
    /// be put back is spent, as before).
    async fn give_back_code(&self, key: &str, raw: &str, data: &CodeData, now: i64) {
        let left = data.expires_at - now;
        if left > 0 {
            if let Err(e) = self.eph.put_new(key, raw, self.secs(left)).await {
                tracing::warn!(error = %e, "a code could not be given back");
            }
        }
    }

    /// The grant a checked code makes, its refresh token and its tokens. The grant's id is
    /// derived from the code, so a code can make at most one grant.
    async fn grant_for_code(
        &self,
        client: &Client,
        code: &str,
        data: &CodeData,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grant = GrantRow {
            id: b64(&sha256(format!("emta grant\n{code}").as_bytes())[..16]),
            citizen_id: data.citizen_id.clone(),
            client_id: data.client_id.as_str().to_owned(),
            scope: data.scope.clone(),
            sid: data.sid.clone(),
            auth_time: data.auth_time,
            created_at: now,
            revoked_at: None,
        };
        let refresh = random_token(32);
        let refresh_hash = b64(&sha256(refresh.as_bytes()));
        // The grant, its refresh token and the citizen it is for, in one commit.
        let inserted = self
            .db
            .insert_grant_for_citizen(
                &grant,
                &refresh_hash,
                (now + self.settings.refresh_token_secs).min(self.grant_ends(&grant)),
            )
            .await;
        let citizen = match inserted {
            Ok(Some(citizen)) => citizen,
            Ok(None) => return Err(OAuthError::invalid_grant("the citizen is unknown")),
            Err(crate::store::StoreError::Sql(e)) if service_kit::sql::is_unique_violation(&e) => {
                return Err(OAuthError::invalid_grant(
                    "the code is invalid, expired or used",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        // A code from a session that has ended since (signed out between the consent and
        // the exchange) makes no live grant, unless the citizen granted offline access,
        // which outlives the sign-in by design. Checked after the grant is written: the
        // sign-out marks the session before it revokes its grants, so either the mark is
        // seen here or the revocation finds this grant.
        let offline = Scopes::parse_known(&grant.scope, KNOWN_SCOPES).contains(OFFLINE_ACCESS);
        if !offline
            && self
                .eph
                .get(&ended_session_key(&grant.sid))
                .await?
                .is_some()
        {
            self.revoke_grant(&grant.id, now).await?;
            return Err(OAuthError::invalid_grant(
                "the sign-in this code came from has ended",
            ));
        }
        self.eph
            .put(
                &hash_key("code-used", code),
                &format!("{}|{}", client.id.as_str(), grant.id),
                self.secs(600),
            )
            .await?;
        let resp = self
            .tokens_for_grant(
                client,
                &citizen,
                &grant,
                data.nonce.as_deref(),
                Some(refresh),
                now,
            )
            .await?;
        metrics::counter!("emta_token_issued_total", "grant" => "authorization_code").increment(1);
        Ok(resp)
    }

    async fn tokens_for_grant(
        &self,
        client: &Client,
        citizen: &Citizen,
        grant: &GrantRow,
        nonce: Option<&str>,
        refresh_token: Option<String>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = Scopes::parse_known(&grant.scope, KNOWN_SCOPES);
        let access_token = self.mint_access_token(&AccessData {
            jti: random_token(12),
            client_id: client.id.as_str().to_owned(),
            citizen_id: Some(citizen.id.clone()),
            grant_id: Some(grant.id.clone()),
            scope: grant.scope.clone(),
            iat: now,
            exp: now + self.settings.access_token_secs,
        })?;
        let digest = sha256(access_token.as_bytes());
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer()));
        claims.insert("sub".into(), json!(self.subject(client, &citizen.id)));
        claims.insert("aud".into(), json!(client.id.as_str()));
        claims.insert("azp".into(), json!(client.id.as_str()));
        claims.insert("exp".into(), json!(now + self.settings.id_token_secs));
        claims.insert("iat".into(), json!(now));
        claims.insert("auth_time".into(), json!(grant.auth_time));
        if let Some(n) = nonce {
            claims.insert("nonce".into(), json!(n));
        }
        claims.insert("acr".into(), json!(ACR));
        claims.insert("amr".into(), json!(AMR));
        claims.insert("at_hash".into(), json!(b64(&digest[..16])));
        claims.insert("sid".into(), json!(grant.sid));
        scope_claims(citizen, &scope, &mut claims);
        let id_token = self
            .keys
            .sign(client.id_token_alg, &Value::Object(claims))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.settings.access_token_secs,
            scope: grant.scope.clone(),
            id_token: Some(id_token),
            refresh_token,
        })
    }

    /// `grant_type=client_credentials`: a manufacturer's back-end calling ministry APIs.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let asked: Vec<&str> = scope.unwrap_or("").split_ascii_whitespace().collect();
        if let Some(bad) = asked
            .iter()
            .find(|s| !client.service_scopes.iter().any(|a| a == *s))
        {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {bad} is not allowed for this client"),
            ));
        }
        let scope = if asked.is_empty() {
            client.service_scopes.join(" ")
        } else {
            asked.join(" ")
        };
        let access_token = self.mint_access_token(&AccessData {
            jti: random_token(12),
            client_id: client.id.as_str().to_owned(),
            citizen_id: None,
            grant_id: None,
            scope: scope.clone(),
            iat: now,
            exp: now + self.settings.access_token_secs,
        })?;
        metrics::counter!("emta_token_issued_total", "grant" => "client_credentials").increment(1);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.settings.access_token_secs,
            scope,
            id_token: None,
            refresh_token: None,
        })
    }
}
