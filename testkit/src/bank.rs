//! A participating bank's stub (issue 30), served under `/bank` by [`crate::StubServices`]:
//! the mandate API emta's presale speaks (README, "Banks") and the bank's own pages where a
//! citizen authenticates and approves a hold, over synthetic citizens.
//!
//! - A citizen's card is `603799` followed by their national ID; every PIN is `1234`. A
//!   card of anyone but the mandate's national ID is refused, as a real bank refuses a
//!   hold on someone else's account.
//! - Every call that changes anything honours `Idempotency-Key`, kept for good: the same
//!   key with the same request replays the first answer; with another request it is
//!   refused, 409 `idempotency_key_reused`.
//! - Faults, for tests and the load tool: a share of API calls fail with 503 (half before
//!   doing anything, half after doing it, the answer lost), a share answer late (done at
//!   once, answered after a delay past the caller's timeout), and duplicate callbacks (the
//!   bank posts its redirect's fields to the callback, server-to-server, twice).
//! - Test hooks plant what reconciliation must find: a capture done twice, a release and a
//!   capture both, a mandate emta never asked for, a hold never lifted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The PIN of every synthetic card.
pub const PIN: &str = "1234";

/// A synthetic citizen's card number.
pub fn card_of(national_id: &str) -> String {
    format!("603799{national_id}")
}

/// One mandate as the stub bank holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StubMandate {
    pub token: String,
    pub reference: String,
    pub national_id: String,
    pub amount: i64,
    pub title: String,
    pub round: String,
    pub callback: String,
    pub state: String,
    /// `pending`, `held`, `declined`, `captured`, `released`.
    pub status: String,
    pub captures: u32,
    pub releases: u32,
    #[serde(skip)]
    auth: Option<String>,
}

#[derive(Default)]
struct Ledger {
    mandates: HashMap<String, StubMandate>,
    /// Idempotency key → (the request it came with, status, answer).
    keys: HashMap<String, (String, u16, Value)>,
}

/// The stub bank. Cheap to clone; every clone is the same bank.
#[derive(Clone)]
pub struct StubBank {
    ledger: Arc<Mutex<Ledger>>,
    pub api_key: String,
    pub callback_key: String,
    /// Its public base URL (`http://…/bank`), for the pages it sends citizens to.
    pub base: Arc<Mutex<String>>,
    /// API calls that fail with 503, per thousand.
    pub fail_per_mille: Arc<AtomicU32>,
    /// API calls answered late (after `late_ms`), per thousand.
    pub late_per_mille: Arc<AtomicU32>,
    pub late_ms: Arc<AtomicU64>,
    /// After an approval, post the redirect's fields to the callback twice more.
    pub duplicate_callbacks: Arc<AtomicBool>,
    /// API calls received.
    pub calls: Arc<AtomicU64>,
    /// Server-to-server callbacks sent and answered 2xx.
    pub callbacks_delivered: Arc<AtomicU64>,
}

impl Default for StubBank {
    fn default() -> Self {
        Self::new("stub-bank-api-key", "stub-bank-callback-key")
    }
}

fn lock(m: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_token() -> String {
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| {
            let c = rng.gen_range(0..36u8);
            (if c < 10 { b'0' + c } else { b'a' + c - 10 }) as char
        })
        .collect()
}

impl StubBank {
    pub fn new(api_key: &str, callback_key: &str) -> Self {
        Self {
            ledger: Arc::default(),
            api_key: api_key.to_owned(),
            callback_key: callback_key.to_owned(),
            base: Arc::default(),
            fail_per_mille: Arc::default(),
            late_per_mille: Arc::default(),
            late_ms: Arc::new(AtomicU64::new(0)),
            duplicate_callbacks: Arc::default(),
            calls: Arc::default(),
            callbacks_delivered: Arc::default(),
        }
    }

    /// Sets the faults: failures and late answers per thousand, the delay, duplicates.
    pub fn faults(&self, fail: u32, late: u32, late_ms: u64, duplicates: bool) {
        self.fail_per_mille.store(fail, Ordering::Relaxed);
        self.late_per_mille.store(late, Ordering::Relaxed);
        self.late_ms.store(late_ms, Ordering::Relaxed);
        self.duplicate_callbacks
            .store(duplicates, Ordering::Relaxed);
    }

    /// Every mandate, as the bank holds it.
    pub fn mandates(&self) -> Vec<StubMandate> {
        let mut v: Vec<_> = lock(&self.ledger).mandates.values().cloned().collect();
        v.sort_by(|a, b| a.token.cmp(&b.token));
        v
    }

    /// Changes a mandate in place (tests plant differences for reconciliation).
    pub fn plant(&self, token: &str, change: impl FnOnce(&mut StubMandate)) -> bool {
        match lock(&self.ledger).mandates.get_mut(token) {
            Some(m) => {
                change(m);
                true
            }
            None => false,
        }
    }

    /// Adds a mandate emta never asked for.
    pub fn plant_unknown(&self, national_id: &str, amount: i64, title: &str, round: &str) {
        let token = random_token();
        lock(&self.ledger).mandates.insert(
            token.clone(),
            StubMandate {
                token,
                reference: "h-unknown".into(),
                national_id: national_id.into(),
                amount,
                title: title.into(),
                round: round.into(),
                callback: String::new(),
                state: String::new(),
                status: "held".into(),
                captures: 0,
                releases: 0,
                auth: None,
            },
        );
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/mandates", post(create))
            .route("/api/mandates/{token}/{op}", post(operate))
            .route("/api/statement", get(statement))
            .route("/pay/{token}", get(pay_page))
            .route("/pay/{token}/login", post(pay_login))
            .route("/pay/{token}/approve", post(pay_approve))
            .with_state(self)
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {}", self.api_key))
    }

    /// A fault to play for one API call, drawn by the configured shares.
    fn fault(&self) -> Fault {
        let mut rng = rand::thread_rng();
        let roll = rng.gen_range(0..1000);
        let fail = self.fail_per_mille.load(Ordering::Relaxed);
        let late = self.late_per_mille.load(Ordering::Relaxed);
        if roll < fail {
            if rng.gen_bool(0.5) {
                Fault::FailBefore
            } else {
                Fault::FailAfter
            }
        } else if roll < fail + late {
            Fault::Late(Duration::from_millis(self.late_ms.load(Ordering::Relaxed)))
        } else {
            Fault::None
        }
    }

    /// Runs `act` once per idempotency key: a replay of the same request answers what the
    /// first did; another request under the same key is refused.
    fn once(
        &self,
        key: Option<&str>,
        request: String,
        act: impl FnOnce(&mut Ledger) -> (u16, Value),
    ) -> (u16, Value) {
        let mut l = lock(&self.ledger);
        if let Some(k) = key {
            if let Some((seen, status, answer)) = l.keys.get(k) {
                if *seen != request {
                    return (409, json!({"error": "idempotency_key_reused"}));
                }
                return (*status, answer.clone());
            }
        }
        let (status, answer) = act(&mut l);
        if let Some(k) = key {
            l.keys
                .insert(k.to_owned(), (request, status, answer.clone()));
        }
        (status, answer)
    }
}

enum Fault {
    None,
    FailBefore,
    FailAfter,
    Late(Duration),
}

/// Plays `fault` around `act`: the call's status and answer, or a 503.
async fn with_fault(fault: Fault, act: impl FnOnce() -> (u16, Value)) -> Response {
    if matches!(fault, Fault::FailBefore) {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let (status, answer) = act();
    match fault {
        Fault::FailAfter => (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response(),
        Fault::Late(d) => {
            tokio::time::sleep(d).await;
            answer_with(status, answer)
        }
        _ => answer_with(status, answer),
    }
}

fn answer_with(status: u16, answer: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(answer),
    )
        .into_response()
}

#[derive(Deserialize, Serialize)]
struct CreateMandate {
    reference: String,
    national_id: String,
    amount: i64,
    title: String,
    round: String,
    callback: String,
    state: String,
}

fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn create(
    State(b): State<StubBank>,
    headers: HeaderMap,
    Json(m): Json<CreateMandate>,
) -> Response {
    b.calls.fetch_add(1, Ordering::Relaxed);
    if !b.authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if m.amount <= 0 || m.national_id.len() != 10 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "invalid"})),
        )
            .into_response();
    }
    let key = key_of(&headers);
    let request = serde_json::to_string(&m).unwrap_or_default();
    let base = b.base.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let fault = b.fault();
    with_fault(fault, || {
        b.once(key.as_deref(), format!("create {request}"), |l| {
            let token = random_token();
            l.mandates.insert(
                token.clone(),
                StubMandate {
                    token: token.clone(),
                    reference: m.reference,
                    national_id: m.national_id,
                    amount: m.amount,
                    title: m.title,
                    round: m.round,
                    callback: m.callback,
                    state: m.state,
                    status: "pending".into(),
                    captures: 0,
                    releases: 0,
                    auth: None,
                },
            );
            (
                201,
                json!({"token": token, "pay_url": format!("{base}/pay/{token}")}),
            )
        })
    })
    .await
}

fn mandate_json(m: &StubMandate) -> Value {
    json!({
        "token": m.token, "reference": m.reference, "national_id": m.national_id,
        "amount": m.amount, "title": m.title, "round": m.round, "status": m.status,
    })
}

#[derive(Deserialize, Serialize, Default)]
struct Operation {
    #[serde(default)]
    amount: Option<i64>,
}

async fn operate(
    State(b): State<StubBank>,
    headers: HeaderMap,
    Path((token, op)): Path<(String, String)>,
    body: Option<Json<Operation>>,
) -> Response {
    b.calls.fetch_add(1, Ordering::Relaxed);
    if !b.authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = body.map(|Json(o)| o).unwrap_or_default();
    let key = key_of(&headers);
    let request = format!(
        "{op} {token} {}",
        serde_json::to_string(&body).unwrap_or_default()
    );
    let fault = b.fault();
    with_fault(fault, || {
        b.once(key.as_deref(), request, |l| {
            let Some(m) = l.mandates.get_mut(&token) else {
                return (404, json!({"error": "no such mandate"}));
            };
            match op.as_str() {
                "verify" => (200, mandate_json(m)),
                "capture" => {
                    if body.amount.is_some_and(|a| a != m.amount) {
                        return (422, json!({"error": "amount is not the mandate's"}));
                    }
                    if m.status != "held" {
                        return (409, json!({"error": format!("mandate is {}", m.status)}));
                    }
                    m.status = "captured".into();
                    m.captures += 1;
                    (200, json!({"token": m.token, "status": "captured"}))
                }
                "release" => {
                    if m.status != "held" {
                        return (409, json!({"error": format!("mandate is {}", m.status)}));
                    }
                    m.status = "released".into();
                    m.releases += 1;
                    (200, json!({"token": m.token, "status": "released"}))
                }
                _ => (404, json!({"error": "no such operation"})),
            }
        })
    })
    .await
}

#[derive(Deserialize)]
struct RoundQuery {
    round: String,
}

async fn statement(
    State(b): State<StubBank>,
    headers: HeaderMap,
    Query(q): Query<RoundQuery>,
) -> Response {
    if !b.authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let entries: Vec<Value> = b
        .mandates()
        .iter()
        .filter(|m| m.round == q.round && m.status != "pending" && m.status != "declined")
        .map(|m| {
            json!({
                "token": m.token, "reference": m.reference, "national_id": m.national_id,
                "amount": m.amount, "title": m.title, "status": m.status,
                "captures": m.captures, "releases": m.releases,
            })
        })
        .collect();
    Json(json!({ "entries": entries })).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bank_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"fa\" dir=\"rtl\"><head><meta charset=\"utf-8\">\
         <title>{t}</title></head><body><h1>بانک آزمایشی / Stub bank</h1><h2>{t}</h2>{body}</body></html>",
        t = escape(title)
    ))
}

fn summary(m: &StubMandate) -> String {
    format!(
        "<table><tr><th>مبلغ / amount</th><td data-amount=\"{a}\">{a} ریال / rials</td></tr>\
         <tr><th>عنوان حساب / account title</th><td>{t}</td></tr>\
         <tr><th>دوره / round</th><td>{r}</td></tr></table>",
        a = m.amount,
        t = escape(&m.title),
        r = escape(&m.round)
    )
}

async fn pay_page(State(b): State<StubBank>, Path(token): Path<String>) -> Response {
    let Some(m) = lock(&b.ledger).mandates.get(&token).cloned() else {
        return (StatusCode::NOT_FOUND, "no such mandate").into_response();
    };
    bank_page(
        "مسدودی در حساب وکالتی / A hold in a power-of-attorney account",
        &format!(
            "{}<form method=\"post\" action=\"/bank/pay/{tok}/login\">\
             <label for=\"card\">شماره کارت / card number</label> <input id=\"card\" name=\"card\" inputmode=\"numeric\">\
             <label for=\"pin\">رمز / PIN</label> <input id=\"pin\" name=\"pin\" type=\"password\">\
             <button type=\"submit\" id=\"login\">ورود / sign in</button></form>",
            summary(&m),
            tok = escape(&token)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    card: String,
    #[serde(default)]
    pin: String,
}

async fn pay_login(
    State(b): State<StubBank>,
    Path(token): Path<String>,
    Form(f): Form<Login>,
) -> Response {
    let auth = random_token();
    let m = {
        let mut l = lock(&b.ledger);
        let Some(m) = l.mandates.get_mut(&token) else {
            return (StatusCode::NOT_FOUND, "no such mandate").into_response();
        };
        let card: String = f.card.chars().filter(char::is_ascii_digit).collect();
        if card != card_of(&m.national_id) || f.pin != PIN || m.status != "pending" {
            return (
                StatusCode::FORBIDDEN,
                bank_page(
                    "ورود ناموفق / Not signed in",
                    "<p id=\"refused\">کارت یا رمز درست نیست، یا کارت به نام متقاضی نیست. / The card or PIN is wrong, or the card is not the applicant's.</p>",
                ),
            )
                .into_response();
        }
        m.auth = Some(auth.clone());
        m.clone()
    };
    bank_page(
        "تأیید مسدودی / Approve the hold",
        &format!(
            "{}<p>این مبلغ تا پایان دوره در حساب وکالتی شما مسدود می‌ماند. / This amount stays held in your account until the round ends.</p>\
             <form method=\"post\" action=\"/bank/pay/{tok}/approve\"><input type=\"hidden\" name=\"auth\" value=\"{auth}\">\
             <button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">تأیید / Approve</button> \
             <button type=\"submit\" name=\"decision\" value=\"decline\" id=\"decline\">انصراف / Decline</button></form>",
            summary(&m),
            tok = escape(&token)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct Approve {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    decision: String,
}

async fn pay_approve(
    State(b): State<StubBank>,
    Path(token): Path<String>,
    Form(f): Form<Approve>,
) -> Response {
    let m = {
        let mut l = lock(&b.ledger);
        let Some(m) = l.mandates.get_mut(&token) else {
            return (StatusCode::NOT_FOUND, "no such mandate").into_response();
        };
        if m.auth.as_deref() != Some(f.auth.as_str()) || f.auth.is_empty() {
            return (StatusCode::FORBIDDEN, "sign in first").into_response();
        }
        m.auth = None;
        if m.status == "pending" {
            m.status = if f.decision == "approve" {
                "held".into()
            } else {
                "declined".into()
            };
        }
        m.clone()
    };
    let status = if m.status == "held" {
        "approved"
    } else {
        "declined"
    };
    let sig = service_kit::upstream::bank_callback_signature(
        b.callback_key.as_bytes(),
        &m.token,
        &m.state,
        status,
        m.amount,
    );
    let fields = [
        ("token", m.token.clone()),
        ("state", m.state.clone()),
        ("status", status.to_owned()),
        ("amount", m.amount.to_string()),
        ("sig", sig),
    ];
    if b.duplicate_callbacks.load(Ordering::Relaxed) {
        let (callback, fields, delivered) = (
            m.callback.clone(),
            fields.clone(),
            b.callbacks_delivered.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..2 {
                if let Ok(r) = client.post(&callback).form(&fields).send().await {
                    if r.status().is_success() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let query = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let sep = if m.callback.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{}{sep}{query}", m.callback)).into_response()
}
