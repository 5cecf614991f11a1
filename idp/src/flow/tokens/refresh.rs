//! The refresh grant: rotation with reuse detection, and the retry within grace that is
//! answered again, never a sign-out.

use super::*;

impl Tokens<'_> {
    /// `grant_type=refresh_token`, with rotation and reuse detection.
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let hash = b64(&sha256(token.as_bytes()));
        let row = self
            .db
            .refresh_token(&hash)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
        let grant = self
            .db
            .grant(&row.grant_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("unknown grant"))?;
        if grant.client_id != client.id.as_str() {
            return Err(OAuthError::invalid_grant(
                "the token was issued to another client",
            ));
        }
        if grant.revoked_at.is_some() {
            return Err(OAuthError::invalid_grant("the grant has been revoked"));
        }
        // What the ministry has withdrawn from this manufacturer since the consent is
        // withdrawn from the grant too (`offline_access` included, so its lifetime below
        // is an online grant's): a refresh releases only what the client may still have.
        let mut grant = grant;
        grant.scope = current_scope(&grant.scope, client);
        if row.used_at.is_some() {
            return self
                .retried_refresh(client, token, &hash, &grant, &row, now)
                .await;
        }
        if row.expires_at <= now {
            return Err(OAuthError::invalid_grant("the refresh token has expired"));
        }
        // Rotation extends a grant, but never past its end (see `grant_ends`): then the
        // citizen signs in again.
        let grant_ends = self.grant_ends(&grant);
        if grant_ends <= now {
            return Err(OAuthError::invalid_grant(
                "the grant has reached its lifetime (the sign-in it came from has ended); sign in again",
            ));
        }
        if let Some(s) = scope {
            let asked = Scopes::parse_known(s, KNOWN_SCOPES);
            let had = Scopes::parse_known(&grant.scope, KNOWN_SCOPES);
            if !asked.is_subset(&had) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "scope exceeds the grant",
                ));
            }
            grant.scope = asked.to_string();
        }
        let citizen = self
            .db
            .citizen_by_id(&grant.citizen_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the citizen is unknown"))?;
        let next = random_token(32);
        let next_hash = b64(&sha256(next.as_bytes()));
        // The answer first, sealed, then the rotation that keeps it in its own
        // transaction: whenever the answer is lost (a timeout, a dropped connection, a
        // crash), a retry within the grace finds it with the rotation, never a rotation
        // without its answer. (A lost race wastes one signature; nothing is stored.)
        let resp = self
            .tokens_for_grant(client, &citizen, &grant, None, Some(next), now)
            .await?;
        let sealed = if self.settings.refresh_grace_secs > 0 {
            Some(
                serde_json::to_vec(&resp)
                    .ok()
                    .and_then(|json| {
                        service_kit::keys::seal::seal(
                            &retry_seal_key(token),
                            hash.as_bytes(),
                            &json,
                        )
                    })
                    .ok_or_else(|| {
                        crate::error::Error::Internal("sealing a refresh answer".into())
                    })?,
            )
        } else {
            None
        };
        let rotated = self
            .db
            .rotate_refresh_token(
                &hash,
                &next_hash,
                &grant.id,
                now,
                (now + self.settings.refresh_token_secs).min(grant_ends),
                sealed.as_deref(),
            )
            .await?;
        if !rotated {
            // Lost a race with another use of the same token: a retry within the grace
            // gets the winner's answer (committed with its rotation), anything else is
            // reuse.
            let row = self
                .db
                .refresh_token(&hash)
                .await?
                .ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
            return self
                .retried_refresh(client, token, &hash, &grant, &row, now)
                .await;
        }
        metrics::counter!("emta_token_issued_total", "grant" => "refresh_token").increment(1);
        Ok(resp)
    }

    /// A refresh token presented after it was rotated. Within the grace window, by its own
    /// client, while the grant lives and the new refresh token is unused, it is a retry:
    /// the same answer again, kept with the rotation in its transaction. Anything else is
    /// reuse (RFC 9700 §4.14.2): the grant is revoked.
    pub(super) async fn retried_refresh(
        &self,
        client: &Client,
        token: &str,
        hash: &str,
        grant: &GrantRow,
        row: &RefreshRow,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grace = self.settings.refresh_grace_secs;
        let used_at = row.used_at.unwrap_or(now);
        if grace > 0 && now - used_at <= grace {
            let again = row.retry_answer.as_deref().and_then(|sealed| {
                service_kit::keys::seal::open(&retry_seal_key(token), hash.as_bytes(), sealed)
                    .and_then(|json| serde_json::from_slice::<TokenResponse>(&json).ok())
            });
            if let Some(resp) = again {
                if self.successor_unused(&resp, grant).await? {
                    metrics::counter!("emta_refresh_retried_total").increment(1);
                    return Ok(resp);
                }
            }
        }
        self.revoke_grant(&grant.id, now).await?;
        tracing::warn!(client = %client.id.as_str(), "refresh token reused; grant revoked");
        Err(OAuthError::invalid_grant(
            "refresh token reuse detected; the grant is revoked",
        ))
    }

    /// Whether the refresh token of an earlier answer is still unused and its grant live.
    pub(super) async fn successor_unused(
        &self,
        resp: &TokenResponse,
        grant: &GrantRow,
    ) -> Result<bool> {
        let Some(next) = &resp.refresh_token else {
            return Ok(false);
        };
        let next_hash = b64(&sha256(next.as_bytes()));
        let row = self.db.refresh_token(&next_hash).await?;
        let live = self
            .db
            .grant(&grant.id)
            .await?
            .is_some_and(|g| g.revoked_at.is_none());
        Ok(live && row.is_some_and(|r| r.used_at.is_none() && r.grant_id == grant.id))
    }
}
