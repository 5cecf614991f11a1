//! Access tokens: sealed (nothing a client can read), checked, revoked, introspected, and
//! the userinfo they open.

use super::*;

impl Tokens<'_> {
    /// Mints a self-contained access token: nothing is stored until it is revoked. Its
    /// payload is sealed (ChaCha20-Poly1305 under a key derived from the server secret),
    /// not only MACed: a manufacturer holds the token but cannot read it, so the citizen's
    /// global id inside it cannot join two manufacturers' records, which is what pairwise
    /// subjects are for. Clients learn what a token stands for at userinfo and
    /// introspection, in their own subject.
    pub(super) fn mint_access_token(&self, data: &AccessData) -> Result<String> {
        let json =
            serde_json::to_vec(data).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        let sealed = service_kit::keys::seal::seal(
            &self.keyring.key("access-token-seal"),
            ACCESS_TOKEN_PREFIX.as_bytes(),
            &json,
        )
        .ok_or_else(|| crate::error::Error::Internal("sealing an access token".into()))?;
        Ok(format!("{ACCESS_TOKEN_PREFIX}{sealed}"))
    }

    /// Reads a token we minted; `None` if it is not ours or was tampered with.
    pub(super) fn open_access_token(&self, token: &str) -> Option<AccessData> {
        if token.len() > 2048 {
            return None;
        }
        let sealed = token.strip_prefix(ACCESS_TOKEN_PREFIX)?;
        let json = service_kit::keys::seal::open(
            &self.keyring.key("access-token-seal"),
            ACCESS_TOKEN_PREFIX.as_bytes(),
            sealed,
        )?;
        serde_json::from_slice(&json).ok()
    }

    /// The live access token's data, or `None` if unknown, expired, revoked, or its client
    /// is no longer allowed.
    pub async fn check_access_token(&self, token: &str, now: i64) -> Result<Option<AccessData>> {
        let Some(data) = self.open_access_token(token) else {
            return Ok(None);
        };
        if data.exp <= now {
            return Ok(None);
        }
        let Some(client) = self
            .clients
            .get(&data.client_id)
            .filter(|c| c.availability(now).is_ok())
        else {
            return Ok(None);
        };
        if self.eph.get(&revoked_token_key(&data.jti)).await?.is_some() {
            return Ok(None);
        }
        if let Some(g) = &data.grant_id {
            if self.eph.get(&revoked_grant_key(g)).await?.is_some() {
                return Ok(None);
            }
        }
        // A citizen's token releases only what its client may still have (userinfo and
        // introspection read this): a scope the ministry withdrew stops at once, not when
        // the token lapses.
        let mut data = data;
        if data.citizen_id.is_some() {
            data.scope = current_scope(&data.scope, &client);
        } else {
            // A service token likewise: a ministry API the client may no longer call
            // stops at once.
            data.scope = data
                .scope
                .split_ascii_whitespace()
                .filter(|s| client.service_scopes.iter().any(|a| a == s))
                .collect::<Vec<_>>()
                .join(" ");
        }
        Ok(Some(data))
    }

    /// RFC 7009: revokes an access or refresh token of `client`. Unknown tokens are fine.
    pub async fn revoke_token(&self, client: &Client, token: &str, now: i64) -> Result<()> {
        if let Some(data) = self.open_access_token(token) {
            if data.client_id == client.id.as_str() && data.exp > now {
                self.eph
                    .put(
                        &revoked_token_key(&data.jti),
                        "1",
                        self.secs(data.exp - now + 1),
                    )
                    .await?;
            }
            return Ok(());
        }
        let hash = b64(&sha256(token.as_bytes()));
        if let Some(row) = self.db.refresh_token(&hash).await? {
            if let Some(grant) = self.db.grant(&row.grant_id).await? {
                if grant.client_id == client.id.as_str() {
                    // Revoking a refresh token revokes its grant and so its access tokens.
                    self.revoke_grant(&grant.id, now).await?;
                }
            }
        }
        Ok(())
    }

    /// RFC 7662. A client may introspect only its own tokens; others are `active: false`.
    pub async fn introspect(&self, client: &Client, token: &str, now: i64) -> Result<Value> {
        if let Some(data) = self.check_access_token(token, now).await? {
            // A resource server the ministry lets check other clients' service tokens
            // (presale, for a manufacturer's seed commitment): client_credentials tokens
            // only, never a citizen's.
            let resource_server = data.citizen_id.is_none()
                && client.service_scopes.iter().any(|s| s == INTROSPECT_SCOPE);
            if data.client_id == client.id.as_str() || resource_server {
                return Ok(json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": data.scope,
                    "client_id": data.client_id,
                    "sub": data
                        .citizen_id
                        .as_deref()
                        .map_or(data.client_id.clone(), |c| self.subject(client, c)),
                    "aud": data.client_id,
                    "iss": self.issuer(),
                    "iat": data.iat,
                    "exp": data.exp,
                }));
            }
            return Ok(json!({ "active": false }));
        }
        let hash = b64(&sha256(token.as_bytes()));
        if let Some(row) = self.db.refresh_token(&hash).await? {
            if let Some(grant) = self.db.grant(&row.grant_id).await? {
                let live =
                    grant.revoked_at.is_none() && row.used_at.is_none() && row.expires_at > now;
                if live && grant.client_id == client.id.as_str() {
                    // No token_type: RFC 7662 means the access token's type by it, and a
                    // refresh token has none.
                    return Ok(json!({
                        "active": true,
                        "scope": current_scope(&grant.scope, client),
                        "client_id": grant.client_id,
                        "sub": self.subject(client, &grant.citizen_id),
                        "iss": self.issuer(),
                        "exp": row.expires_at,
                    }));
                }
            }
        }
        Ok(json!({ "active": false }))
    }

    /// Claims for the userinfo endpoint.
    pub async fn userinfo(&self, data: &AccessData) -> Result<Option<Value>> {
        let Some(citizen_id) = &data.citizen_id else {
            return Ok(None);
        };
        let Some(citizen) = self.db.citizen_by_id(citizen_id).await? else {
            return Ok(None);
        };
        let Some(sub) = self.subject_at(&data.client_id, &citizen.id) else {
            return Ok(None);
        };
        let scope = Scopes::parse_known(&data.scope, KNOWN_SCOPES);
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(sub));
        scope_claims(&citizen, &scope, &mut claims);
        Ok(Some(Value::Object(claims)))
    }
}
