//! The storefront session: a browser cookie naming what the storefront knows of the
//! signed-in citizen (kept in the ephemeral store per manufacturer), and the CSRF token
//! bound to it.

use std::time::Duration;

use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};

use crate::adapters::oidc::RefreshError;
use crate::app::Core;
use crate::domain::NationalId;

/// The session cookie's name over plain http (local runs and tests); over https it has
/// the `__Host-` prefix, so that no other host of the domain and no plain-http page can
/// set it (RFC 6265bis): a session fixed from a sibling subdomain is refused by the
/// browser itself.
const COOKIE: &str = "emta_ps";
const HOST_COOKIE: &str = "__Host-emta_ps";
/// Set by a finished sign-in: a keyed hash of the session cookie, so admission control can
/// tell a signed-in citizen from a visitor without a store lookup, and nobody can make one
/// up. It says a sign-in finished in this browser session once; the session store says
/// who is signed in where.
const SIGNED_IN: &str = "emta_ps_in";
const HOST_SIGNED_IN: &str = "__Host-emta_ps_in";
/// How long a storefront remembers a sign-in (the refresh token keeps it honest).
const SESSION: Duration = Duration::from_secs(8 * 3600);

/// What the storefront knows of a signed-in citizen, from the verified ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Citizen {
    pub sub: String,
    pub national_id: NationalId,
    pub name: String,
    pub birthdate: String,
    /// The IdP's refresh token: when the access token lapses the storefront refreshes, so
    /// a withdrawn consent or a suspended manufacturer ends the storefront session too.
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token lapses.
    pub access_expires: i64,
    /// The IdP's session this sign-in came from (back-channel logout names it), kept so
    /// that a renewed browser session is linked to it again.
    #[serde(default)]
    pub idp_sid: Option<String>,
    /// The verified phone (E.164), for notifications (issue 30).
    #[serde(default)]
    pub phone: Option<String>,
}

fn key(sid: &str, m: &str) -> String {
    format!("ps:{sid}:{m}")
}

/// Which browser session a sign-in from the IdP's session `idp_sid` went to, per
/// storefront: a logout token names the IdP's session.
fn idp_session_key(m: &str, idp_sid: &str) -> String {
    format!("ps-idp:{m}:{idp_sid}")
}

impl Core {
    /// The session cookie's name: `__Host-` prefixed when served over https.
    pub(crate) fn session_cookie(&self) -> &'static str {
        if self.secure_cookies() {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    fn signed_in_cookie(&self) -> &'static str {
        if self.secure_cookies() {
            HOST_SIGNED_IN
        } else {
            SIGNED_IN
        }
    }

    /// This browser's session id (empty without the cookie).
    pub(crate) fn sid(&self, jar: &CookieJar) -> String {
        jar.get(self.session_cookie())
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    fn session_cookie_of(&self, sid: String) -> Cookie<'static> {
        Cookie::build((self.session_cookie(), sid))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies())
            .build()
    }

    /// A new session id for this browser at the end of `who`'s sign-in, carrying over
    /// what the old one held for the same citizen (the sign-ins at the other storefronts,
    /// which the one cookie names, and their links to the IdP's sessions). A session id
    /// planted in the browser before the sign-in (session fixation) is worth nothing after
    /// it, and a planted session's sign-ins under another identity are not carried into
    /// this one (login CSRF). Each is written under the new id before the old is removed,
    /// so a store failure midway signs nobody out.
    pub(crate) async fn renew_session(
        &self,
        jar: CookieJar,
        who: &NationalId,
    ) -> crate::error::Result<(CookieJar, String)> {
        let old = self.sid(&jar);
        let new = service_kit::keys::random_token(24);
        if !old.is_empty() {
            // Every storefront's sign-in under the old id read in one round trip, and
            // those found removed in one, after they are carried over.
            let fronts: Vec<&str> = self.rp.storefront_ids().collect();
            let old_keys: Vec<String> = fronts.iter().map(|m| key(&old, m)).collect();
            let keys: Vec<&str> = old_keys.iter().map(String::as_str).collect();
            let found = self.sessions.get_many(&keys).await?;
            let mut gone = Vec::new();
            for ((m, old_key), raw) in fronts.iter().zip(&old_keys).zip(found) {
                let Some(raw) = raw else {
                    continue;
                };
                if let Some(c) = serde_json::from_str::<Citizen>(&raw)
                    .ok()
                    .filter(|c| &c.national_id == who)
                {
                    self.sessions.put(&key(&new, m), &raw, SESSION).await?;
                    if let Some(idp_sid) = &c.idp_sid {
                        self.link_idp_session(m, idp_sid, &new).await?;
                    }
                }
                gone.push(old_key.as_str());
            }
            self.sessions.delete_many(&gone).await?;
        }
        Ok((jar.add(self.session_cookie_of(new.clone())), new))
    }

    /// The citizen signed in at storefront `m` in this browser, refreshed at the IdP when
    /// the access token has lapsed; the IdP's refusal signs them out of this storefront.
    /// A session store or an IdP that cannot answer is an error (503 or 502, try again),
    /// not a sign-out: a citizen mid-turn must not be sent through the sign-in because
    /// Redis or the IdP blinked.
    pub(crate) async fn citizen(
        &self,
        jar: &CookieJar,
        m: &str,
    ) -> crate::error::Result<Option<Citizen>> {
        let Some(cookie) = jar.get(self.session_cookie()) else {
            return Ok(None);
        };
        let key = key(cookie.value(), m);
        let Some(raw) = self.sessions.get(&key).await? else {
            return Ok(None);
        };
        let Ok(mut c) = serde_json::from_str::<Citizen>(&raw) else {
            return Ok(None);
        };
        if c.access_expires > service_kit::clock::now() {
            return Ok(Some(c));
        }
        let refreshed = match (&c.refresh_token, self.rp.storefront(m)) {
            (Some(rt), Some(front)) => self.rp.refresh(front, rt).await,
            _ => Err(RefreshError::Refused),
        };
        let tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(RefreshError::Refused) => {
                let _ = self.sessions.delete(&key).await;
                return Ok(None);
            }
            // Not a sign-out: the grant may well stand, and a citizen mid-turn must not be
            // sent through the sign-in because the IdP blinked.
            Err(RefreshError::Unreachable) => {
                return Err(crate::error::Error::user(
                    axum::http::StatusCode::BAD_GATEWAY,
                    crate::error::msg::IDP_DOWN,
                ))
            }
        };
        c.refresh_token = tokens.refresh_token.or(c.refresh_token);
        c.access_expires = tokens.access_expires;
        let _ = self.save_citizen(jar, m, &c).await;
        Ok(Some(c))
    }

    pub(crate) async fn save_citizen(
        &self,
        jar: &CookieJar,
        m: &str,
        c: &Citizen,
    ) -> crate::error::Result<()> {
        let json =
            serde_json::to_string(c).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        self.sessions
            .put(&key(&self.sid(jar), m), &json, SESSION)
            .await?;
        Ok(())
    }

    /// Remembers that this browser's sign-in at `m` came from the IdP's session `idp_sid`.
    pub(crate) async fn link_idp_session(
        &self,
        m: &str,
        idp_sid: &str,
        browser_sid: &str,
    ) -> crate::error::Result<()> {
        self.sessions
            .put(&idp_session_key(m, idp_sid), browser_sid, SESSION)
            .await?;
        Ok(())
    }

    /// Ends the sign-in at `m` that came from the IdP's session `idp_sid` (back-channel
    /// logout); false if there was none (already signed out, or never here).
    pub(crate) async fn end_idp_session(
        &self,
        m: &str,
        idp_sid: &str,
    ) -> crate::error::Result<bool> {
        let Some(browser_sid) = self.sessions.take(&idp_session_key(m, idp_sid)).await? else {
            return Ok(false);
        };
        self.sessions.delete(&key(&browser_sid, m)).await?;
        Ok(true)
    }

    /// The browser's session cookie, set now if it has none.
    pub(crate) fn ensure_session(&self, jar: CookieJar) -> (CookieJar, String) {
        if let Some(c) = jar.get(self.session_cookie()) {
            let v = c.value().to_owned();
            return (jar, v);
        }
        let sid = service_kit::keys::random_token(24);
        (jar.add(self.session_cookie_of(sid.clone())), sid)
    }

    /// `jar` with the mark of a finished sign-in for its session.
    pub(crate) fn mark_signed_in(&self, jar: CookieJar) -> CookieJar {
        let mark = self.keys.hash("signed-in", self.sid(&jar).as_bytes());
        jar.add(
            Cookie::build((self.signed_in_cookie(), mark))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(self.secure_cookies())
                .build(),
        )
    }

    /// Whether a sign-in finished in this browser session (its mark matches the cookie).
    pub(crate) fn signed_in_here(&self, jar: &CookieJar) -> bool {
        let (Some(session), Some(mark)) = (
            jar.get(self.session_cookie()),
            jar.get(self.signed_in_cookie()),
        ) else {
            return false;
        };
        self.keys
            .verify("signed-in", session.value().as_bytes(), mark.value())
    }

    pub(crate) fn csrf(&self, jar: &CookieJar) -> String {
        self.keys
            .hash("csrf", format!("presale|{}", self.sid(jar)).as_bytes())
    }

    pub(crate) fn check_csrf(&self, jar: &CookieJar, token: &str) -> crate::error::Result<()> {
        if service_kit::keys::ct_eq(&self.csrf(jar), token) {
            Ok(())
        } else {
            Err(crate::error::Error::BadForm)
        }
    }
}

/// A form whose only field is the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}
