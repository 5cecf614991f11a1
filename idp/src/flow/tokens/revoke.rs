//! Ending grants: one, a session's, a withdrawn consent's; each ends its tokens at once.

use super::*;

impl Tokens<'_> {
    /// Revokes a grant: its refresh tokens stop at once (SQL), its access tokens too (a
    /// marker every access-token check reads).
    pub async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<()> {
        self.db.revoke_grant(grant_id, now).await?;
        self.mark_grant_revoked(grant_id).await
    }

    /// Signing out: every grant issued from the SSO session ends, refresh tokens at once
    /// and access tokens at their next check (RFC 9700 §4.14; OIDC RP-Initiated Logout).
    pub async fn revoke_session_grants(&self, sid: &str, now: i64) -> Result<usize> {
        // First the mark that the session ended, then the grants: a code issued from the
        // session and exchanged after this (its grant made after the revocation below)
        // finds the mark and is refused (see `grant_for_code`).
        self.eph
            .put(&ended_session_key(sid), "1", self.secs(CODE_TTL * 2))
            .await?;
        let ids = self.db.revoke_session_grants(sid, now).await?;
        for id in &ids {
            self.mark_grant_revoked(id).await?;
        }
        // The manufacturers are told now (back-channel logout), not at their next refresh.
        self.deliveries.notify_one();
        Ok(ids.len())
    }

    /// The citizen withdraws a manufacturer's consent (account page): its grants end, and
    /// it is told through back-channel logout.
    pub async fn revoke_consent(
        &self,
        citizen_id: &str,
        client_id: &ClientId,
        now: i64,
    ) -> Result<()> {
        for g in self.db.revoke_consent(citizen_id, client_id, now).await? {
            self.mark_grant_revoked(&g).await?;
        }
        self.deliveries.notify_one();
        Ok(())
    }

    pub async fn mark_grant_revoked(&self, grant_id: &str) -> Result<()> {
        self.eph
            .put(
                &revoked_grant_key(grant_id),
                "1",
                self.secs(self.settings.access_token_secs + 60),
            )
            .await?;
        Ok(())
    }
}
