//! Ministry APIs for other services, each behind a client_credentials token with its own
//! service scope (RFC 6750 bearer tokens; the client must be active and the scope still
//! allowed when the token is used).
//!
//! - `GET /api/manufacturers` (scope `ministry.manufacturers`): the registered
//!   manufacturers that may sign citizens in now (active, trust record in force), for the
//!   ministry console's license form. Presale reads this list, never the IdP's database.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::core::Core;
use crate::error::OAuthError;

use super::oauth::bearer;

pub const MANUFACTURERS_SCOPE: &str = "ministry.manufacturers";

#[derive(Serialize)]
struct Manufacturer {
    id: String,
    name: String,
    name_fa: String,
    stars: u8,
    valid_until: i64,
}

pub async fn manufacturers(State(core): State<Core>, headers: HeaderMap) -> Response {
    let now = service_kit::clock::now();
    let r = async {
        let token = bearer(&headers)
            .ok_or_else(|| OAuthError::invalid_token("a bearer token is required"))?;
        let data = core
            .tokens()
            .check_access_token(&token, now)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the access token is invalid or revoked"))?;
        let allowed = data.citizen_id.is_none()
            && data
                .scope
                .split_ascii_whitespace()
                .any(|s| s == MANUFACTURERS_SCOPE);
        if !allowed {
            return Err(OAuthError::insufficient_scope(format!(
                "a service token with scope {MANUFACTURERS_SCOPE} is required"
            )));
        }
        // Manufacturers sign citizens in: clients with a redirect URI. Service clients
        // (the ministry's own) have none.
        let list: Vec<Manufacturer> = core
            .clients
            .all()
            .iter()
            .filter(|c| !c.redirect_uris.is_empty() && c.availability(now).is_ok())
            .map(|c| Manufacturer {
                id: c.id.as_str().to_owned(),
                name: c.name.clone(),
                name_fa: c.name_fa.clone(),
                stars: c.stars,
                valid_until: c.valid_until,
            })
            .collect();
        Ok::<_, OAuthError>(
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(serde_json::json!({ "manufacturers": list })),
            )
                .into_response(),
        )
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
