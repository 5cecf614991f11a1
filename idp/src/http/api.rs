//! Ministry APIs for other services, each behind a client_credentials token with its own
//! service scope (RFC 6750 bearer tokens; the client must be active and the scope still
//! allowed when the token is used).
//!
//! - `GET /api/manufacturers` (scope `ministry.manufacturers`): the registered
//!   manufacturers that may sign citizens in now (active, trust record in force), for the
//!   ministry console's license form. Presale reads this list, never the IdP's database.
//! - `POST /api/manufacturers/{id}/standing` (scope `ministry.trust`), JSON
//!   `{"suspended"?, "stars"?, "withheld"?, "by", "reason"}`: the ministry's decisions
//!   after the sale (issue 34), carried out here: a suspension or resumption approved by
//!   two of its staff at the presale console, a rating an inspection set, the stars the
//!   after-sale record withholds. Idempotent (what is already so changes nothing and
//!   writes nothing); each change audited here under the ministry's client and the
//!   person it names; applied on this replica at once, on the others within one reload.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::core::Core;
use crate::error::OAuthError;

use super::oauth::bearer;

pub const MANUFACTURERS_SCOPE: &str = "ministry.manufacturers";
/// The scope of the ministry's decisions on a manufacturer's standing.
pub const TRUST_SCOPE: &str = "ministry.trust";

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
                stars: c.rating(),
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

/// A decision on a manufacturer's standing, as presale sends it.
#[derive(serde::Deserialize)]
pub struct Standing {
    #[serde(default)]
    suspended: Option<bool>,
    #[serde(default)]
    stars: Option<u8>,
    #[serde(default)]
    withheld: Option<u8>,
    /// The staff member (or `record`) it is carried out for.
    by: String,
    reason: String,
}

/// The service client behind a bearer token with `scope`, or the refusal.
async fn service_caller(
    core: &Core,
    headers: &HeaderMap,
    scope: &str,
) -> Result<String, OAuthError> {
    let now = service_kit::clock::now();
    let token =
        bearer(headers).ok_or_else(|| OAuthError::invalid_token("a bearer token is required"))?;
    let data = core
        .tokens()
        .check_access_token(&token, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the access token is invalid or revoked"))?;
    if data.citizen_id.is_some() || !data.scope.split_ascii_whitespace().any(|s| s == scope) {
        return Err(OAuthError::insufficient_scope(format!(
            "a service token with scope {scope} is required"
        )));
    }
    Ok(data.client_id.clone())
}

pub async fn standing(
    State(core): State<Core>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Json<Standing>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use crate::domain::ClientStatus;
    let r = async {
        let caller = service_caller(&core, &headers, TRUST_SCOPE).await?;
        let Ok(Json(s)) = body else {
            return Err(OAuthError::invalid_request("a JSON standing is required"));
        };
        let printable = |t: &str, max: usize| {
            !t.trim().is_empty() && t.len() <= max && !t.chars().any(char::is_control)
        };
        if !printable(&s.by, 64) || !printable(&s.reason, 512) {
            return Err(OAuthError::invalid_request(
                "by and reason are required, one line each",
            ));
        }
        if s.stars.is_some_and(|n| !(1..=5).contains(&n)) || s.withheld.is_some_and(|n| n > 4) {
            return Err(OAuthError::invalid_request(
                "stars are 1 to 5, withheld 0 to 4",
            ));
        }
        // Only manufacturers (clients that sign citizens in); never a service client.
        let client = core
            .clients
            .get(&id)
            .filter(|c| !c.redirect_uris.is_empty())
            .ok_or_else(|| {
                OAuthError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "no such manufacturer",
                )
            })?;
        let now = service_kit::clock::now();
        // The stored record, not the replica's copy, decides what is already so.
        let current = core
            .db
            .client(&client.id)
            .await
            .map_err(|e| OAuthError::server(format!("reading the client: {e}")))?
            .ok_or_else(|| {
                OAuthError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "no such manufacturer",
                )
            })?;
        let actor = format!("{caller} for {}", s.by.trim());
        let reason = s.reason.trim();
        let fail = |e: crate::admin::AdminError| OAuthError::server(e.to_string());
        if let Some(suspend) = s.suspended {
            let want = if suspend {
                ClientStatus::Suspended
            } else {
                ClientStatus::Active
            };
            if current.status != want {
                crate::admin::set_status(&core.db, &id, want, &actor, now)
                    .await
                    .map_err(fail)?;
            }
        }
        if let Some(stars) = s.stars.filter(|n| *n != current.stars) {
            crate::admin::rate(&core.db, &id, stars, &actor, now)
                .await
                .map_err(fail)?;
        }
        if let Some(withheld) = s.withheld.filter(|n| *n != current.withheld) {
            core.db
                .update_client_withheld(&client.id, withheld, now)
                .await
                .map_err(|e| OAuthError::server(format!("withholding stars: {e}")))?;
            core.db
                .audit(
                    now,
                    &actor,
                    "client.withheld",
                    &id,
                    &format!("{withheld}: {reason}"),
                )
                .await
                .map_err(|e| OAuthError::server(format!("auditing: {e}")))?;
        }
        core.reload()
            .await
            .map_err(|e| OAuthError::server(format!("reloading clients: {e}")))?;
        let now_client = core
            .clients
            .get(&id)
            .ok_or_else(|| OAuthError::server("reloaded"))?;
        Ok::<_, OAuthError>(
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(serde_json::json!({
                    "id": id,
                    "suspended": now_client.status == ClientStatus::Suspended,
                    "stars": now_client.stars,
                    "withheld": now_client.withheld,
                    "rating": now_client.rating(),
                })),
            )
                .into_response(),
        )
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
