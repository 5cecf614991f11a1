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
        service_caller(&core, &headers, MANUFACTURERS_SCOPE).await?;
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

/// A decision on a manufacturer's standing, as presale sends it: a decision (a
/// suspension, a resumption, a rating) with its version, or the stars withheld with
/// theirs.
#[derive(serde::Deserialize)]
pub struct Standing {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    suspended: Option<bool>,
    #[serde(default)]
    stars: Option<u8>,
    #[serde(default)]
    withheld: Option<u8>,
    #[serde(default)]
    withheld_version: Option<i64>,
    /// The staff member who proposed it (or `record`), and who approved it.
    by: String,
    #[serde(default)]
    approved_by: Option<String>,
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
    use crate::store::sql::Applied;
    let r = async {
        let caller = service_caller(&core, &headers, TRUST_SCOPE).await?;
        let Ok(Json(s)) = body else {
            return Err(OAuthError::invalid_request("a JSON standing is required"));
        };
        let printable = |t: &str, max: usize| {
            !t.trim().is_empty() && t.len() <= max && !t.chars().any(char::is_control)
        };
        if !printable(&s.by, 64)
            || !printable(&s.reason, 512)
            || s.approved_by.as_deref().is_some_and(|a| !printable(a, 64))
        {
            return Err(OAuthError::invalid_request(
                "by and reason are required, one line each",
            ));
        }
        if s.stars.is_some_and(|n| !(1..=5).contains(&n)) || s.withheld.is_some_and(|n| n > 4) {
            return Err(OAuthError::invalid_request(
                "stars are 1 to 5, withheld 0 to 4",
            ));
        }
        let decision = s.suspended.is_some() || s.stars.is_some();
        // A version far ahead of the record's would make every later one stale: whoever
        // holds the ministry's credentials cannot freeze a manufacturer's standing with one.
        let (standing_at, withheld_at) = match crate::domain::ClientId::parse(&id) {
            Ok(cid) => core.db.standing_versions(&cid).await.unwrap_or((0, 0)),
            Err(_) => (0, 0),
        };
        if s.version.is_some_and(|v| v > standing_at + 1000)
            || s.withheld_version.is_some_and(|v| v > withheld_at + 1000)
        {
            return Err(OAuthError::invalid_request(
                "a version at most 1000 past the one in force",
            ));
        }
        let versioned = |v: Option<i64>| v.is_some_and(|v| v > 0);
        if (decision && !versioned(s.version))
            || (s.withheld.is_some() != versioned(s.withheld_version))
            || (!decision && s.withheld.is_none())
        {
            return Err(OAuthError::invalid_request(
                "a decision (suspended, stars) carries its version, the stars withheld theirs",
            ));
        }
        // Only manufacturers (clients that sign citizens in); never a service client. Read
        // from the database, not this replica's copy (which may not have a new client yet).
        let not_found = || {
            OAuthError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such manufacturer",
            )
        };
        let failed = |e: crate::store::StoreError| OAuthError::server(format!("standing: {e}"));
        let cid = crate::domain::ClientId::parse(&id).map_err(|_| not_found())?;
        let client = core
            .db
            .client(&cid)
            .await
            .map_err(failed)?
            .filter(|c| !c.redirect_uris.is_empty())
            .ok_or_else(not_found)?;
        let now = service_kit::clock::now();
        let actor = format!("{caller} for {}", s.by.trim());
        let because = match &s.approved_by {
            Some(a) => format!("{}; approved by {}", s.reason.trim(), a.trim()),
            None => s.reason.trim().to_owned(),
        };
        let mut stale = false;
        if decision {
            let applied = core
                .db
                .apply_ministry_decision(
                    &client.id,
                    s.version.unwrap_or_default(),
                    s.suspended,
                    s.stars,
                    &actor,
                    &because,
                    now,
                )
                .await
                .map_err(failed)?;
            stale |= applied == Applied::Stale;
        }
        if let (Some(withheld), Some(version)) = (s.withheld, s.withheld_version) {
            let applied = core
                .db
                .apply_withheld(&client.id, version, withheld, &actor, &because, now)
                .await
                .map_err(failed)?;
            stale |= applied == Applied::Stale;
        }
        core.reload()
            .await
            .map_err(|e| OAuthError::server(format!("reloading clients: {e}")))?;
        let now_client = core
            .db
            .client(&client.id)
            .await
            .map_err(failed)?
            .ok_or_else(not_found)?;
        let (standing_version, withheld_version) = core
            .db
            .standing_versions(&client.id)
            .await
            .map_err(failed)?;
        Ok::<_, OAuthError>(
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(serde_json::json!({
                    "id": id,
                    "suspended": now_client.status == ClientStatus::Suspended,
                    "stars": now_client.stars,
                    "withheld": now_client.withheld,
                    "rating": now_client.rating(),
                    // A later version was there already: this one changed nothing.
                    "stale": stale,
                    "standing_version": standing_version,
                    "withheld_version": withheld_version,
                })),
            )
                .into_response(),
        )
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
