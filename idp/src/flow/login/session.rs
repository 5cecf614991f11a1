//! The SSO session a completed login ends in, by cookie and by `sid`.

use super::*;

impl Login<'_> {
    pub async fn save_session(&self, cookie: &str, s: &Session) -> Result<()> {
        let json = serde_json::to_string(s).map_err(|e| Error::Internal(e.to_string()))?;
        self.eph
            .put(
                &session_key(cookie),
                &json,
                self.secs(self.settings.session_secs),
            )
            .await?;
        // Index by sid too, for RP-initiated logout with only an id_token_hint.
        self.eph
            .put(
                &format!("sid:{}", s.sid),
                &session_key(cookie),
                self.secs(self.settings.session_secs),
            )
            .await?;
        Ok(())
    }

    pub async fn session(&self, cookie: Option<&str>) -> Result<Option<Session>> {
        let Some(cookie) = cookie.filter(|c| c.len() <= 64) else {
            return Ok(None);
        };
        Ok(self
            .eph
            .get(&session_key(cookie))
            .await?
            .and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    pub async fn end_session(&self, cookie: Option<&str>, sid: Option<&str>) -> Result<()> {
        if let Some(c) = cookie {
            self.eph.delete(&session_key(c)).await?;
        }
        if let Some(sid) = sid {
            if let Some(key) = self.eph.take(&format!("sid:{sid}")).await? {
                self.eph.delete(&key).await?;
            }
        }
        Ok(())
    }
}
