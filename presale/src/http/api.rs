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
//! - `POST /api/seed-reveals`, JSON `{"license_id", "secret"}`: the manufacturer's secret
//!   for a campaign whose list is frozen, with a token of the same seed client.
//! - `GET /api/deliveries` and `POST /api/deliveries`, JSON `{"tracking_code", "stage":
//!   "contract"|"payment"|"delivered", "amount"?, "at"?}`: the manufacturer's accepted
//!   applications with their deadline, stages and compensation owed, and a stage recorded
//!   (issue 34), with a token of the same service client holding scope
//!   `presale.deliveries`. `at` (Unix seconds, default now) may be in the past, not before
//!   the application nor in the future.
//! - `GET /api/complaints`, `POST /api/complaints/{id}/answer` (JSON `{"answer"}`) and
//!   `GET /api/complaints/{id}/files/{sha256}`: the manufacturer's complaints, its answer,
//!   their attachments (issue 34), scope `presale.complaints` of the same client.
//! - `GET /api/warranty`, `POST /api/warranty` (JSON `{"tracking_code", "work_order",
//!   "safety", "at"?, "key"?}`: a delivered car brought in) and
//!   `POST /api/warranty/{id}/return` (JSON `{"failed", "at"?}`: back, repaired or not),
//!   scope `presale.warranty`: the workshop's record and the law's thresholds.
//! - `POST /api/observers/{name}/statements`, a signed note: a registered observer's
//!   commitment or reveal (see [`crate::transparency::observer`]), checked against the
//!   key registered for `name`.
//!
//! The ministry's share is revealed in the console by an issuer. Nobody reveals without a
//! channel that makes them the party: the secret alone is not enough (an issuer who
//! learnt another party's secret cannot reveal in its name).

use axum::extract::{Path, State};
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
use crate::store::seeds::Revealed;

/// The service scope a manufacturer's token needs to commit to a seed.
pub const SEED_SCOPE: &str = "presale.seed";

/// The service scope a manufacturer's token needs to read its applications after the sale
/// and record their contract, payments and delivery (issue 34).
pub const DELIVERIES_SCOPE: &str = "presale.deliveries";

/// The scope of a manufacturer's complaints (read, answer) and of its warranty record.
pub const COMPLAINTS_SCOPE: &str = "presale.complaints";
pub const WARRANTY_SCOPE: &str = "presale.warranty";

pub use crate::store::commitments::SEED_CLIENT_SUFFIX;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/api/seed-commitments", post(seed_commitment))
        .route("/api/seed-reveals", post(seed_reveal))
        .route(
            "/api/deliveries",
            axum::routing::get(deliveries)
                .post(record_stage)
                .layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        .route("/api/complaints", axum::routing::get(complaints))
        .route(
            "/api/complaints/{id}/answer",
            post(answer).layer(axum::extract::DefaultBodyLimit::max(32 * 1024)),
        )
        .route(
            "/api/complaints/{id}/files/{sha}",
            axum::routing::get(complaint_file),
        )
        .route(
            "/api/warranty",
            axum::routing::get(warranty)
                .post(open_visit)
                .layer(axum::extract::DefaultBodyLimit::max(32 * 1024)),
        )
        .route(
            "/api/warranty/{id}/return",
            post(close_visit).layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        .route(
            "/api/observers/{name}/statements",
            post(observer_statement).layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
}

#[derive(Deserialize)]
struct SeedCommitment {
    license_no: String,
    commitment: String,
}

/// An API error: OAuth-style code, the message in both languages, and the bearer
/// challenge where one applies (RFC 6750 §3).
fn problem(status: StatusCode, code: &str, text: Text) -> Response {
    scoped_problem(status, code, text, SEED_SCOPE)
}

/// [`problem`], whose 403 challenge names `scope`.
fn scoped_problem(status: StatusCode, code: &str, text: Text, scope: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": code, "error_description": text.en, "message_fa": text.fa })),
    )
        .into_response();
    let challenge = match status {
        StatusCode::UNAUTHORIZED => Some("Bearer error=\"invalid_token\"".to_owned()),
        StatusCode::FORBIDDEN => Some(format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
        )),
        _ => None,
    };
    if let Some(c) = challenge.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
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

/// The manufacturer whose seed client sent this request's bearer token, or the answer
/// refusing it.
async fn seed_client(core: &Core, headers: &HeaderMap) -> Result<(String, String), Response> {
    maker_client(core, headers, SEED_SCOPE).await
}

/// The manufacturer whose own service client (`{manufacturer}-seed`) sent this request's
/// bearer token with `scope`, or the answer refusing it.
async fn maker_client(
    core: &Core,
    headers: &HeaderMap,
    scope: &str,
) -> Result<(String, String), Response> {
    let problem = |status, code: &str, text| scoped_problem(status, code, text, scope);
    let Some(ministry) = &core.ministry else {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            m::E_NO_CHANNEL,
        ));
    };
    // Only what looks like one of the IdP's access tokens is worth its introspection: no
    // request with any other string reaches the IdP.
    let Some(token) = bearer(headers).filter(|t| t.starts_with("at1.") && t.len() <= 2048) else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            m::E_TOKEN,
        ));
    };
    let caller = match ministry.caller(token).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(problem(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                m::E_TOKEN,
            ))
        }
        Err(e) => return Err(unavailable(e, "introspection at the IdP")),
    };
    if !caller.scopes.iter().any(|s| s == scope) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            m::E_SCOPE,
        ));
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
        return Err(problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            m::E_NOT_SEED_CLIENT,
        ));
    };
    Ok((manufacturer.to_owned(), caller.client_id.clone()))
}

async fn seed_commitment(
    State(core): State<Core>,
    headers: HeaderMap,
    body: Result<Json<SeedCommitment>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (manufacturer, client_id) = match seed_client(&core, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let manufacturer = manufacturer.as_str();
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
            &client_id,
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
        Err(e) => unavailable(e, "recording a seed commitment"),
    }
}

#[derive(Deserialize)]
struct SeedReveal {
    license_id: String,
    secret: String,
}

/// What a reveal came to, as an API answer.
pub(crate) fn reveal_answer(party: &str, r: Revealed) -> Response {
    use crate::error::msg;
    let done = |outcome: &str, seeded: bool| {
        (
            StatusCode::OK,
            Json(json!({ "party": party, "outcome": outcome, "seeded": seeded })),
        )
            .into_response()
    };
    match r {
        Revealed::Accepted { seeded } => done("accepted", seeded),
        Revealed::Already => done("already", false),
        Revealed::TooEarly => problem(StatusCode::CONFLICT, "too_early", msg::REVEAL_TOO_EARLY),
        Revealed::TooLate => problem(StatusCode::CONFLICT, "too_late", msg::REVEAL_TOO_LATE),
        Revealed::UnknownParty => problem(
            StatusCode::NOT_FOUND,
            "unknown_party",
            msg::REVEAL_UNKNOWN_PARTY,
        ),
        Revealed::Mismatch => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mismatch",
            msg::REVEAL_MISMATCH,
        ),
    }
}

fn unavailable(e: impl std::fmt::Display, doing: &str) -> Response {
    tracing::error!(error = %e, "{doing}");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        crate::error::msg::BUSY,
    )
}

/// A manufacturer reveals its secret for a campaign, through its seed client as it
/// committed: the party is the manufacturer the client belongs to.
async fn seed_reveal(
    State(core): State<Core>,
    headers: HeaderMap,
    body: Result<Json<SeedReveal>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (manufacturer, client_id) = match seed_client(&core, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(Json(r)) = body.ok().filter(|Json(r)| {
        crate::transparency::seed::valid_secret(&r.secret) && valid_id(&r.license_id)
    }) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            crate::error::msg::BAD_FORM,
        );
    };
    // The manufacturer's share of its own licenses only.
    match core.store.license(&r.license_id).await {
        Ok(Some(l)) if l.manufacturer == manufacturer => {}
        Ok(_) => return reveal_answer(&manufacturer, Revealed::UnknownParty),
        Err(e) => return unavailable(e, "reading a license"),
    }
    match core
        .store
        .reveal(&r.license_id, &manufacturer, &r.secret, &client_id)
        .await
    {
        Ok(outcome) => reveal_answer(&manufacturer, outcome),
        Err(e) => unavailable(e, "recording a reveal"),
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An observer's signed statement (its commitment for a license number, or its secret
/// for a campaign), in the body as a signed note. It counts only if it verifies with the
/// key registered for the observer named in the path.
async fn observer_statement(
    State(core): State<Core>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    use crate::transparency::observer::{verified, Statement};
    // A name no observer can have goes no further (nor into a query).
    if !crate::transparency::seed::valid_party(&name) {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown_observer",
            m::E_UNKNOWN_OBSERVER,
        );
    }
    let (key, enabled) = match core.store.observer_registration(&name).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "unknown_observer",
                m::E_UNKNOWN_OBSERVER,
            )
        }
        Err(e) => return unavailable(e, "reading an observer's key"),
    };
    let Some(statement) = verified(&body, &name, &key) else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            m::E_OBSERVER_SIGNATURE,
        );
    };
    match statement {
        Statement::Commitment { .. } if !enabled => problem(
            StatusCode::NOT_FOUND,
            "unknown_observer",
            m::E_UNKNOWN_OBSERVER,
        ),
        Statement::Commitment {
            license_no,
            commitment,
        } => match core
            .store
            .record_commitment_with(
                &license_no,
                &name,
                &commitment,
                Via::Observer,
                &name,
                Some(&body),
                service_kit::clock::now(),
            )
            .await
        {
            Ok(Ok(id)) => (
                StatusCode::CREATED,
                Json(json!({ "id": id, "license_no": license_no, "party": name })),
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
            Err(e) => unavailable(e, "recording a seed commitment"),
        },
        Statement::Reveal { license_id, secret } => {
            if !crate::transparency::seed::valid_secret(&secret) || !valid_id(&license_id) {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    crate::error::msg::BAD_FORM,
                );
            }
            // An observer's share only: never the manufacturer's of that license, whatever
            // the names.
            match core.store.license(&license_id).await {
                Ok(Some(l)) if l.manufacturer != name => {}
                Ok(_) => return reveal_answer(&name, Revealed::UnknownParty),
                Err(e) => return unavailable(e, "reading a license"),
            }
            let by = format!("observer:{name}");
            match core.store.reveal(&license_id, &name, &secret, &by).await {
                Ok(outcome) => reveal_answer(&name, outcome),
                Err(e) => unavailable(e, "recording a reveal"),
            }
        }
    }
}

#[derive(Deserialize)]
struct StageBody {
    tracking_code: String,
    stage: String,
    #[serde(default)]
    amount: i64,
    #[serde(default)]
    at: Option<i64>,
    /// The caller's key for this request (a retry with it records nothing twice).
    #[serde(default)]
    key: Option<String>,
}

/// A manufacturer's applications after the sale, as its back-end reads them.
async fn deliveries(State(core): State<Core>, headers: HeaderMap) -> Response {
    let (manufacturer, _) = match maker_client(&core, &headers, DELIVERIES_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = service_kit::clock::now();
    match core
        .store
        .deliveries_of_manufacturer(&manufacturer, now)
        .await
    {
        Ok(ds) => {
            let items: Vec<_> = ds
                .iter()
                .map(|d| {
                    json!({
                        "tracking_code": d.tracking_code,
                        "license_id": d.license_id,
                        "national_id": d.national_id,
                        "applied_at": d.applied_at,
                        "deadline": d.deadline,
                        "kind": d.kind.as_str(),
                        "contract_at": d.contract_at,
                        "paid": d.paid(),
                        "payments": d.payments.iter().map(|p| json!({"at": p.at, "amount": p.amount})).collect::<Vec<_>>(),
                        "delivered_at": d.delivered_at,
                        "days_late": d.lateness.days,
                        "compensation_owed": d.lateness.owed,
                    })
                })
                .collect();
            (
                StatusCode::OK,
                Json(json!({ "manufacturer": manufacturer, "applications": items })),
            )
                .into_response()
        }
        Err(e) => unavailable(e, "reading deliveries"),
    }
}

/// A stage recorded by the manufacturer's back-end.
async fn record_stage(
    State(core): State<Core>,
    headers: HeaderMap,
    body: Result<Json<StageBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use crate::store::after_sale::{Stage, StageRequest};
    let problem = |status, code: &str, text| scoped_problem(status, code, text, DELIVERIES_SCOPE);
    let (manufacturer, client_id) = match maker_client(&core, &headers, DELIVERIES_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Json(b)) = body else {
        return problem(StatusCode::BAD_REQUEST, "invalid_request", m::E_STAGE_FORM);
    };
    let Some(stage) = Stage::parse(b.stage.trim()) else {
        return problem(StatusCode::BAD_REQUEST, "invalid_request", m::E_STAGE_FORM);
    };
    let now = service_kit::clock::now();
    let key = b.key.filter(|k| !k.is_empty());
    if key.as_ref().is_some_and(|k| k.len() > 128) {
        return problem(StatusCode::BAD_REQUEST, "invalid_request", m::E_STAGE_FORM);
    }
    let request = StageRequest {
        stage,
        amount: b.amount,
        at: b.at.unwrap_or(now),
        key,
    };
    let by = format!("client:{client_id}");
    match core
        .store
        .record_stage(&manufacturer, b.tracking_code.trim(), &request, &by, now)
        .await
    {
        Ok(Ok(id)) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "tracking_code": b.tracking_code.trim(), "stage": stage.as_str() })),
        )
            .into_response(),
        Ok(Err(e)) => problem(
            super::console::stage_status(e),
            "refused",
            super::console::stage_text(e),
        ),
        Err(e) => unavailable(e, "recording a delivery stage"),
    }
}

// ---- complaints and warranty (issue 34) ---------------------------------------------------

fn complaint_json(c: &crate::store::redress::Complaint, now: i64) -> serde_json::Value {
    json!({
        "id": c.id,
        "tracking_code": c.tracking_code,
        "license_id": c.license_id,
        "kind": c.kind.as_str(),
        "body": c.body,
        "filed_at": c.filed_at,
        "answer_due": c.answer_due,
        "answer": c.answer,
        "answered_at": c.answered_at,
        "escalated_at": c.escalated_at,
        "with": c.level(now).as_str(),
        "unanswered_late": c.ageing().unanswered_late(now),
        "outcome": c.outcome.map(|o| o.as_str()),
        "files": c.files.iter().map(|f| json!({
            "sha256": f.sha256, "content_type": f.kind.mime(), "size": f.size, "name": f.name,
        })).collect::<Vec<_>>(),
    })
}

fn complaint_refused(e: crate::store::redress::ComplaintError) -> Response {
    use crate::store::redress::ComplaintError as E;
    let status = match e {
        E::NoApplication | E::NoComplaint => StatusCode::NOT_FOUND,
        E::Text => StatusCode::UNPROCESSABLE_ENTITY,
        E::NotInspector | E::SamePerson => StatusCode::FORBIDDEN,
        E::Open | E::Answered | E::NotAnswered | E::Closed => StatusCode::CONFLICT,
    };
    let text = match e {
        E::Text => m::E_TEXT,
        E::NoComplaint | E::NoApplication => m::NO_COMPLAINT,
        E::Answered => m::E_COMPLAINT_ANSWERED,
        E::Closed => m::E_COMPLAINT_CLOSED,
        _ => m::E_COMPLAINT_NOT_YET,
    };
    scoped_problem(status, "refused", text, COMPLAINTS_SCOPE)
}

async fn complaints(State(core): State<Core>, headers: HeaderMap) -> Response {
    let (manufacturer, _) = match maker_client(&core, &headers, COMPLAINTS_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = service_kit::clock::now();
    match core.store.complaints(Some(&manufacturer)).await {
        Ok(list) => (
            StatusCode::OK,
            Json(json!({
                "manufacturer": manufacturer,
                "complaints": list.iter().map(|c| complaint_json(c, now)).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Err(e) => unavailable(e, "reading complaints"),
    }
}

#[derive(Deserialize)]
struct AnswerBody {
    answer: String,
}

async fn answer(
    State(core): State<Core>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<AnswerBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (manufacturer, client_id) = match maker_client(&core, &headers, COMPLAINTS_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Json(b)) = body else {
        return scoped_problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            m::E_TEXT,
            COMPLAINTS_SCOPE,
        );
    };
    let by = format!("client:{client_id}");
    match core
        .store
        .answer_complaint(
            &manufacturer,
            &id,
            &b.answer,
            &by,
            service_kit::clock::now(),
        )
        .await
    {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "id": id, "answered": true }))).into_response(),
        Ok(Err(e)) => complaint_refused(e),
        Err(e) => unavailable(e, "answering a complaint"),
    }
}

async fn complaint_file(
    State(core): State<Core>,
    Path((id, sha)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (manufacturer, _) = match maker_client(&core, &headers, COMPLAINTS_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let found = match core.store.attachment(&id, &sha).await {
        Ok(found) => found.filter(|(c, _)| c.manufacturer == manufacturer),
        Err(e) => return unavailable(e, "reading an attachment"),
    };
    let Some((_, f)) = found else {
        return complaint_refused(crate::store::redress::ComplaintError::NoComplaint);
    };
    super::complaints::serve_file(&core, &f)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn visit_refused(e: crate::store::redress::VisitError) -> Response {
    use crate::store::redress::VisitError as E;
    let (status, text) = match e {
        E::NoCar | E::NoVisit => (StatusCode::NOT_FOUND, m::E_NO_CAR),
        E::InWorkshop => (StatusCode::CONFLICT, m::E_IN_WORKSHOP),
        E::Returned => (StatusCode::CONFLICT, m::E_VISIT_RETURNED),
        E::KeyReused => (StatusCode::CONFLICT, m::E_KEY_REUSED),
        E::WorkOrder => (StatusCode::UNPROCESSABLE_ENTITY, m::E_WORK_ORDER),
        E::Time => (StatusCode::UNPROCESSABLE_ENTITY, m::E_VISIT_TIME),
    };
    scoped_problem(status, "refused", text, WARRANTY_SCOPE)
}

async fn warranty(State(core): State<Core>, headers: HeaderMap) -> Response {
    let (manufacturer, _) = match maker_client(&core, &headers, WARRANTY_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = service_kit::clock::now();
    match core
        .store
        .warranty_of_manufacturer(&manufacturer, now)
        .await
    {
        Ok(list) => {
            let cars: Vec<_> = list
                .iter()
                .map(|w| {
                    json!({
                        "tracking_code": w.tracking_code,
                        "visits": w.visits.iter().map(|v| json!({
                            "id": v.id, "opened_at": v.opened_at, "work_order": v.work_order,
                            "safety": v.safety, "returned_at": v.returned_at, "failed": v.failed,
                        })).collect::<Vec<_>>(),
                        "off_road_secs": w.tally.off_road,
                        "failed_safety": w.tally.failed_safety,
                        "replacement_car_due": w.tally.replacement_car_due,
                        "replace_or_refund_due": w.tally.replace_or_refund_due,
                    })
                })
                .collect();
            (
                StatusCode::OK,
                Json(json!({ "manufacturer": manufacturer, "cars": cars })),
            )
                .into_response()
        }
        Err(e) => unavailable(e, "reading warranty"),
    }
}

#[derive(Deserialize)]
struct VisitBody {
    tracking_code: String,
    work_order: String,
    #[serde(default)]
    safety: bool,
    #[serde(default)]
    at: Option<i64>,
    #[serde(default)]
    key: Option<String>,
}

async fn open_visit(
    State(core): State<Core>,
    headers: HeaderMap,
    body: Result<Json<VisitBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (manufacturer, client_id) = match maker_client(&core, &headers, WARRANTY_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Json(b)) = body else {
        return scoped_problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            m::E_VISIT_FORM,
            WARRANTY_SCOPE,
        );
    };
    let key = b.key.filter(|k| !k.is_empty());
    if key.as_ref().is_some_and(|k| k.len() > 128) {
        return scoped_problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            m::E_VISIT_FORM,
            WARRANTY_SCOPE,
        );
    }
    let now = service_kit::clock::now();
    let by = format!("client:{client_id}");
    match core
        .store
        .open_visit(
            &manufacturer,
            b.tracking_code.trim(),
            b.at.unwrap_or(now),
            &b.work_order,
            b.safety,
            key.as_deref(),
            &by,
            now,
        )
        .await
    {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Ok(Err(e)) => visit_refused(e),
        Err(e) => unavailable(e, "recording a warranty visit"),
    }
}

#[derive(Deserialize)]
struct ReturnBody {
    failed: bool,
    #[serde(default)]
    at: Option<i64>,
}

async fn close_visit(
    State(core): State<Core>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ReturnBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (manufacturer, client_id) = match maker_client(&core, &headers, WARRANTY_SCOPE).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Json(b)) = body else {
        return scoped_problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            m::E_VISIT_FORM,
            WARRANTY_SCOPE,
        );
    };
    let now = service_kit::clock::now();
    let by = format!("client:{client_id}");
    match core
        .store
        .close_visit(&manufacturer, &id, b.at.unwrap_or(now), b.failed, &by, now)
        .await
    {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "id": id, "returned": true }))).into_response(),
        Ok(Err(e)) => visit_refused(e),
        Err(e) => unavailable(e, "closing a warranty visit"),
    }
}
