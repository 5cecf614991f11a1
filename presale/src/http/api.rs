//! Presale's APIs for other services, each behind a bearer token the IdP vouches for (RFC
//! 7662 introspection through the ministry's own client; see
//! [`crate::adapters::ministry`]).
//!
//! - `POST /api/seed-commitments`, JSON `{"license_no", "commitment"}`: a manufacturer's
//!   seed commitment for a license to come, sent with a client_credentials token of the
//!   manufacturer's own seed client at the IdP, `{manufacturer}-seed` (a service client,
//!   scope `presale.seed`, whose secret or key only the manufacturer holds: never the
//!   storefront's client, whose secret presale itself holds). The party is the manufacturer
//!   that client belongs to: nobody else can commit in its name, and an issuer cannot type
//!   it in.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use service_kit::Text;

use crate::app::Core;
use crate::error::msg::console as m;
use crate::store::commitments::{CommitmentError, Via};

/// The service scope a manufacturer's token needs to commit to a seed.
pub const SEED_SCOPE: &str = "presale.seed";

pub use crate::store::commitments::SEED_CLIENT_SUFFIX;

pub(crate) fn router() -> Router<Core> {
    Router::new().route("/api/seed-commitments", post(seed_commitment))
}

#[derive(Deserialize)]
struct SeedCommitment {
    license_no: String,
    commitment: String,
}

/// An API error: OAuth-style code, the message in both languages, and the bearer
/// challenge where one applies (RFC 6750 §3).
fn problem(status: StatusCode, code: &str, text: Text) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": code, "error_description": text.en, "message_fa": text.fa })),
    )
        .into_response();
    let challenge = match status {
        StatusCode::UNAUTHORIZED => Some("Bearer error=\"invalid_token\""),
        StatusCode::FORBIDDEN => {
            Some("Bearer error=\"insufficient_scope\", scope=\"presale.seed\"")
        }
        _ => None,
    };
    if let Some(c) = challenge.and_then(|c| header::HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

async fn seed_commitment(
    State(core): State<Core>,
    headers: HeaderMap,
    body: Result<Json<SeedCommitment>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(ministry) = &core.ministry else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            m::E_NO_CHANNEL,
        );
    };
    // Only what looks like one of the IdP's access tokens is worth its introspection: no
    // request with any other string reaches the IdP.
    let Some(token) = bearer(&headers).filter(|t| t.starts_with("at1.") && t.len() <= 2048) else {
        return problem(StatusCode::UNAUTHORIZED, "invalid_token", m::E_TOKEN);
    };
    let caller = match ministry.caller(token).await {
        Ok(Some(c)) => c,
        Ok(None) => return problem(StatusCode::UNAUTHORIZED, "invalid_token", m::E_TOKEN),
        Err(e) => {
            tracing::warn!(error = %e, "introspection at the IdP");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                crate::error::msg::BUSY,
            );
        }
    };
    if !caller.scopes.iter().any(|s| s == SEED_SCOPE) {
        return problem(StatusCode::FORBIDDEN, "insufficient_scope", m::E_SCOPE);
    }
    // A manufacturer's seed client, never a client whose secret this service holds.
    let Some(manufacturer) = caller
        .client_id
        .strip_suffix(SEED_CLIENT_SUFFIX)
        .filter(|m| {
            !m.is_empty()
                && *m != crate::store::commitments::MINISTRY
                && core.rp.storefront(&caller.client_id).is_none()
        })
    else {
        return problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            m::E_NOT_SEED_CLIENT,
        );
    };
    let Ok(Json(c)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            m::E_COMMITMENT_FORMAT,
        );
    };
    match core
        .store
        .record_commitment(
            c.license_no.trim(),
            manufacturer,
            c.commitment.trim(),
            Via::IdpClient,
            &caller.client_id,
            service_kit::clock::now(),
        )
        .await
    {
        Ok(Ok(id)) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "license_no": c.license_no.trim(), "party": manufacturer })),
        )
            .into_response(),
        Ok(Err(CommitmentError::Exists)) => {
            problem(StatusCode::CONFLICT, "exists", m::E_COMMITMENT_EXISTS)
        }
        Ok(Err(_)) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            m::E_COMMITMENT_FORMAT,
        ),
        Err(e) => {
            tracing::error!(error = %e, "recording a seed commitment");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                crate::error::msg::BUSY,
            )
        }
    }
}
