//! Who is signed in at the console: the [`Staff`] extractor, which reads the session and the
//! account as the database says now, and answers by itself when there is nobody (the
//! sign-in page) or the store cannot say (503).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use service_kit::keys::ct_eq;
use service_kit::Text;

use crate::app::Core as App;
use crate::error::msg::console as m;
use crate::error::Error;
use crate::store::staff::Role;

pub(super) const STAFF_COOKIE: &str = "emta_staff";
/// A browser where the account signed in before: its own failure budget, so a username
/// locked by somebody else's guesses does not lock its owner out at their desk.
pub(super) const DEVICE_COOKIE: &str = "emta_staff_device";

/// What the session store keeps for a signed-in staff member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StaffSession {
    pub(super) username: String,
    /// The account's session epoch at sign-in: disabling the account, resetting its TOTP,
    /// changing its role or revoking its sessions moves the epoch, which ends this session
    /// on its next request.
    pub(super) epoch: i64,
}

/// The signed-in staff member, as the database says now, with this browser's CSRF token.
pub(crate) struct Staff {
    pub(crate) username: String,
    pub(crate) role: Role,
    /// A representative's manufacturer.
    pub(crate) manufacturer: Option<String>,
    pub(crate) csrf: String,
}

impl Staff {
    /// A form of this member's: its CSRF token must be this browser's (403 otherwise).
    pub(super) fn form(&self, token: &str) -> Result<(), Error> {
        if ct_eq(&self.csrf, token) {
            Ok(())
        } else {
            Err(Error::BadForm)
        }
    }

    /// A change only `role` may make: the form is checked first, then the role (403).
    pub(super) fn may(&self, role: Role, token: &str) -> Result<(), Error> {
        self.form(token)?;
        self.is(role)
    }

    /// A page or an action for `role` only (403 otherwise).
    pub(super) fn is(&self, role: Role) -> Result<(), Error> {
        if self.role == role {
            Ok(())
        } else {
            Err(Error::user(
                axum::http::StatusCode::FORBIDDEN,
                m::NOT_YOUR_ROLE,
            ))
        }
    }
    pub(super) fn role_text(&self) -> Text {
        role_text(self.role)
    }

    /// Whether this member may see `manufacturer`'s campaign: a representative only its
    /// own manufacturer's, everyone else every campaign (403 otherwise).
    pub(super) fn sees(&self, manufacturer: &str) -> Result<(), Error> {
        match (&self.role, &self.manufacturer) {
            (Role::Representative, Some(m)) if m == manufacturer => Ok(()),
            (Role::Representative, _) => Err(Error::user(
                axum::http::StatusCode::FORBIDDEN,
                m::NOT_YOUR_ROLE,
            )),
            _ => Ok(()),
        }
    }
}

/// The console's pages a manufacturer's representative may reach: home, the seed
/// commitments page (bound to its manufacturer), its deliveries (bound to its
/// manufacturer), its campaigns' dashboards (checked
/// against its manufacturer by the page), and signing out. Everything else is closed to
/// it here, before any handler runs, so a page added later is closed until it is listed.
fn open_to_representatives(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    if matches!(
        path,
        "/ministry"
            | "/ministry/commitments"
            | "/ministry/logout"
            | "/ministry/deliveries"
            | "/ministry/deliveries/stage"
            | "/ministry/complaints"
    ) {
        return true;
    }
    // Its manufacturer's complaints, their answer and attachments (checked by the handler).
    if let Some(rest) = path.strip_prefix("/ministry/complaints/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [id] => !id.is_empty(),
            [id, "answer"] => !id.is_empty(),
            [id, "files", sha] => !id.is_empty() && !sha.is_empty(),
            _ => false,
        };
    }
    let Some(rest) = path.strip_prefix("/ministry/licenses/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    // Its manufacturer's share of a campaign's seed, revealed (checked by the handler).
    if let [id, "reveal"] = parts.as_slice() {
        return !id.is_empty();
    }
    let mut parts = parts.into_iter();
    let (Some(id), Some("dashboard"), tail) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !id.is_empty() && matches!(tail, None | Some("live")) && parts.next().is_none()
}

pub(super) fn role_text(role: Role) -> Text {
    match role {
        Role::Administrator => m::ROLE_ADMINISTRATOR,
        Role::Issuer => m::ROLE_ISSUER,
        Role::Auditor => m::ROLE_AUDITOR,
        Role::Inspector => m::ROLE_INSPECTOR,
        Role::Representative => m::ROLE_REPRESENTATIVE,
    }
}

impl App {
    /// The staff session of this browser. A session store that cannot answer is an
    /// error (503, try again), not a sign-out.
    pub(super) async fn staff_session(
        &self,
        jar: &CookieJar,
    ) -> Result<Option<StaffSession>, service_kit::ephemeral::EphemeralError> {
        let Some(sid) = jar.get(STAFF_COOKIE).map(|c| c.value().to_owned()) else {
            return Ok(None);
        };
        let Some(raw) = self.sessions.get(&format!("staff:{sid}")).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&raw).ok())
    }

    /// The console's CSRF token for this browser: bound to its staff cookie.
    pub(super) fn staff_csrf(&self, jar: &CookieJar) -> String {
        let sid = jar
            .get(STAFF_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        self.keys.hash("csrf", format!("ministry|{sid}").as_bytes())
    }

    /// The known-device cookie's value for `username`: `nonce.mac`.
    pub(super) fn device_token(&self, username: &str, nonce: &str) -> String {
        let mac = self
            .keys
            .hash("staff-device", format!("{username}|{nonce}").as_bytes());
        format!("{nonce}.{mac}")
    }

    /// The device's nonce, if this browser is a known device of `username`.
    pub(super) fn known_device(&self, jar: &CookieJar, username: &str) -> Option<String> {
        let value = jar.get(DEVICE_COOKIE)?.value().to_owned();
        let (nonce, _) = value.split_once('.')?;
        ct_eq(&self.device_token(username, nonce), &value).then(|| nonce.to_owned())
    }
}

impl FromRequestParts<App> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let to_login = || Redirect::to("/ministry/login").into_response();
        let session = match app.staff_session(&jar).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(Error::from(e).into_response()),
        };
        // The account as it stands now: disabled, revoked, re-enrolled or given another
        // role takes effect at once.
        match app.store.staff_account(&session.username).await {
            Ok(Some(a)) if a.enabled && a.epoch == session.epoch => {
                if a.role == Role::Representative && !open_to_representatives(parts.uri.path()) {
                    return Err(
                        Error::user(axum::http::StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE)
                            .into_response(),
                    );
                }
                Ok(Staff {
                    csrf: app.staff_csrf(&jar),
                    username: session.username,
                    role: a.role,
                    manufacturer: a.manufacturer,
                })
            }
            Ok(_) => {
                if let Some(c) = jar.get(STAFF_COOKIE) {
                    let _ = app.sessions.delete(&format!("staff:{}", c.value())).await;
                }
                Err(to_login())
            }
            Err(e) => {
                tracing::error!(error = %e, "staff account lookup failed");
                Err(Error::Busy { retry_after: 5 }.into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::open_to_representatives as open;

    #[test]
    fn a_representative_reaches_home_commitments_and_dashboards_only() {
        for path in [
            "/ministry",
            "/ministry/",
            "/ministry/commitments",
            "/ministry/logout",
            "/ministry/licenses/l-1/dashboard",
            "/ministry/licenses/l-1/dashboard/live",
            "/ministry/licenses/l-1/reveal",
            "/ministry/deliveries",
            "/ministry/deliveries/stage",
            "/ministry/complaints",
            "/ministry/complaints/cp-1",
            "/ministry/complaints/cp-1/answer",
            "/ministry/complaints/cp-1/files/ab",
        ] {
            assert!(open(path), "{path}");
        }
        for path in [
            "/ministry/licenses/new",
            "/ministry/licenses",
            "/ministry/licenses/l-1",
            "/ministry/licenses/l-1/pause",
            "/ministry/licenses/l-1/dashboard/live/x",
            "/ministry/licenses/l-1/reveal/x",
            "/ministry/licenses//reveal",
            "/ministry/licenses//dashboard",
            "/ministry/proposals/p-1",
            "/ministry/proposals/p-1/approve",
            "/ministry/staff",
            "/ministry/audit",
            "/ministry/audit.csv",
            "/ministry/commitments/x",
            "/ministry/deliveries/rates",
            "/ministry/complaints/cp-1/decide",
            "/ministry/complaints//answer",
            "/ministry/cases",
            "/ministry/cases/case-1",
            "/ministry/cases/case-1/propose",
        ] {
            assert!(!open(path), "{path}");
        }
    }
}
