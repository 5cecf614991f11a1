//! The upstream services a deployment under test points at, over real HTTP: the civil
//! registry (`POST /persons/verify`), mobile ownership (`POST /ownership/verify`), the
//! traffic police (`POST /licences/verify`), the vehicle registry (`POST /vehicles/query`)
//! and the SMS gateway (`POST /messages`), answering from synthetic citizens; plus
//! `GET /outbox?to=09…`, where tests and the load tool read the codes that were "sent".
//! The wire contracts are the README's ("Upstream services").

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::citizens::{e164, FixtureCitizen};

/// Messages "sent", newest last; bounded so a flood cannot exhaust memory. Indexed by
/// recipient as well, because the load tool reads one citizen's code per login at
/// thousands of logins a second.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Mutex<OutboxInner>>,
}

#[derive(Default)]
struct OutboxInner {
    all: VecDeque<OutboxEntry>,
    /// The last few messages per recipient, and recipients in first-seen order so the
    /// oldest can be forgotten.
    by_to: HashMap<String, VecDeque<OutboxEntry>>,
    recipients: VecDeque<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// E.164.
    pub to: String,
    pub text: String,
    pub at: i64,
}

const OUTBOX_CAP: usize = 10_000;
/// Recipients remembered (about 200 bytes each: 200 MB at the cap).
const OUTBOX_RECIPIENTS: usize = 1_000_000;
const OUTBOX_PER_RECIPIENT: usize = 4;

impl Outbox {
    pub fn push(&self, to: &str, text: &str) {
        let entry = OutboxEntry {
            to: to.to_owned(),
            text: text.to_owned(),
            at: service_kit::clock::now(),
        };
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.all.len() >= OUTBOX_CAP {
            q.all.pop_front();
        }
        q.all.push_back(entry.clone());
        if !q.by_to.contains_key(to) {
            if q.recipients.len() >= OUTBOX_RECIPIENTS {
                if let Some(old) = q.recipients.pop_front() {
                    q.by_to.remove(&old);
                }
            }
            q.recipients.push_back(to.to_owned());
        }
        let mine = q.by_to.entry(to.to_owned()).or_default();
        if mine.len() >= OUTBOX_PER_RECIPIENT {
            mine.pop_front();
        }
        mine.push_back(entry);
    }

    /// Messages to `to` (E.164), or all when `None`, newest first, at most `limit`.
    pub fn list(&self, to: Option<&str>, limit: usize) -> Vec<OutboxEntry> {
        let q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let source = match to {
            Some(t) => match q.by_to.get(t) {
                Some(mine) => mine,
                None => return Vec::new(),
            },
            None => &q.all,
        };
        source.iter().rev().take(limit).cloned().collect()
    }

    /// The code in the newest message to `mobile` (any form).
    pub fn latest_code(&self, mobile: &str) -> Option<String> {
        let to = e164(mobile)?;
        self.list(Some(&to), 1)
            .first()
            .and_then(|e| code_in(&e.text))
    }
}

/// Extracts the 6-digit code from an OTP message.
pub fn code_in(text: &str) -> Option<String> {
    service_kit::digits::to_latin_digits(text)
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
}

/// The stub of the three upstream services.
#[derive(Clone)]
pub struct StubServices {
    citizens: Arc<HashMap<String, FixtureCitizen>>,
    pub outbox: Outbox,
    /// When set, every registry call answers 503: the registry is down.
    pub registry_down: Arc<AtomicBool>,
    /// Calls to the civil registry and ownership service, so tests can see the cache work.
    pub registry_calls: Arc<AtomicU64>,
    /// Milliseconds every registry answer takes (a slow government service).
    pub registry_delay_ms: Arc<AtomicU64>,
    /// When not zero, every registry call answers this status (a registry refusing the
    /// query itself, say 404).
    pub registry_status: Arc<std::sync::atomic::AtomicU16>,
    /// A participating bank, under `/bank` (see [`crate::bank`]).
    pub bank: crate::bank::StubBank,
}

/// The registry side of the wire contract.
#[derive(Deserialize)]
struct PersonQuery {
    national_id: String,
    birth_date: String,
}

#[derive(Serialize, Default)]
struct PersonAnswer {
    #[serde(rename = "match")]
    matched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
}

#[derive(Deserialize)]
struct OwnershipQuery {
    national_id: String,
    mobile: String,
}

#[derive(Serialize)]
struct OwnershipAnswer {
    #[serde(rename = "match")]
    matched: bool,
}

#[derive(Deserialize)]
struct RegistryQuery {
    national_id: String,
}

#[derive(Serialize)]
struct LicenceAnswer {
    valid: bool,
}

#[derive(Serialize)]
struct VehicleAnswer {
    registered_at: i64,
    plate_active: bool,
}

#[derive(Serialize)]
struct VehiclesAnswer {
    vehicles: Vec<VehicleAnswer>,
}

#[derive(Deserialize)]
struct SmsMessage {
    to: String,
    text: String,
}

#[derive(Deserialize)]
struct OutboxQuery {
    to: Option<String>,
}

fn is_national_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY/MM/DD` with digits only, as the IdP sends it after parsing.
fn is_canonical_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'/'
        && b[7] == b'/'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl StubServices {
    pub fn new(citizens: Vec<FixtureCitizen>) -> Self {
        Self {
            citizens: Arc::new(
                citizens
                    .into_iter()
                    .map(|c| (c.national_id.clone(), c))
                    .collect(),
            ),
            outbox: Outbox::default(),
            registry_down: Arc::default(),
            registry_calls: Arc::default(),
            registry_delay_ms: Arc::default(),
            registry_status: Arc::default(),
            bank: crate::bank::StubBank::default(),
        }
    }

    pub fn registry_calls(&self) -> u64 {
        self.registry_calls.load(Ordering::Relaxed)
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/persons/verify", post(person))
            .route("/ownership/verify", post(ownership))
            .route("/licences/verify", post(licence))
            .route("/vehicles/query", post(vehicles))
            .route("/messages", post(sms))
            .route("/outbox", get(outbox))
            .with_state(self.clone())
            .nest("/bank", self.bank.router())
    }

    /// Serves the stub on `addr` (port 0 for any) until `shutdown` resolves.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        *self.bank.base.lock().unwrap_or_else(|p| p.into_inner()) = format!("http://{local}/bank");
        let app = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok((local, handle))
    }

    /// Serves on a free loopback port for the rest of the process (tests).
    pub async fn start(&self) -> String {
        match self
            .clone()
            .serve(([127, 0, 0, 1], 0).into(), std::future::pending())
            .await
        {
            Ok((addr, _)) => format!("http://{addr}"),
            Err(e) => panic!("stub services: {e}"),
        }
    }

    async fn called(&self) -> Result<(), StatusCode> {
        self.registry_calls.fetch_add(1, Ordering::Relaxed);
        let delay = self.registry_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if self.registry_down.load(Ordering::Relaxed) {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        match self.registry_status.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(StatusCode::from_u16(n).unwrap_or(StatusCode::BAD_REQUEST)),
        }
    }
}

async fn person(
    State(s): State<StubServices>,
    Json(q): Json<PersonQuery>,
) -> Result<Json<PersonAnswer>, StatusCode> {
    s.called().await?;
    if !is_national_id(&q.national_id) || !is_canonical_date(&q.birth_date) {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(Json(match s.citizens.get(&q.national_id) {
        Some(c) if c.birth_date == q.birth_date => PersonAnswer {
            matched: true,
            given_name: Some(c.given_name.clone()),
            family_name: Some(c.family_name.clone()),
        },
        _ => PersonAnswer::default(),
    }))
}

async fn ownership(
    State(s): State<StubServices>,
    Json(q): Json<OwnershipQuery>,
) -> Result<Json<OwnershipAnswer>, StatusCode> {
    s.called().await?;
    let (true, Some(mobile)) = (is_national_id(&q.national_id), e164(&q.mobile)) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let matched = s
        .citizens
        .get(&q.national_id)
        .is_some_and(|c| e164(&c.mobile).as_deref() == Some(mobile.as_str()));
    Ok(Json(OwnershipAnswer { matched }))
}

/// The traffic police: a valid driving licence or not; an unknown person is 404.
async fn licence(
    State(s): State<StubServices>,
    Json(q): Json<RegistryQuery>,
) -> Result<Json<LicenceAnswer>, StatusCode> {
    s.called().await?;
    let c = s
        .citizens
        .get(&q.national_id)
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(LicenceAnswer {
        valid: c.driving_licence,
    }))
}

/// The vehicle registry: the vehicles registered to a person (their dates relative to
/// now); an unknown person is 404.
async fn vehicles(
    State(s): State<StubServices>,
    Json(q): Json<RegistryQuery>,
) -> Result<Json<VehiclesAnswer>, StatusCode> {
    s.called().await?;
    let c = s
        .citizens
        .get(&q.national_id)
        .ok_or(StatusCode::NOT_FOUND)?;
    let now = service_kit::clock::now();
    Ok(Json(VehiclesAnswer {
        vehicles: c
            .vehicles
            .iter()
            .map(|v| VehicleAnswer {
                registered_at: now - v.months_ago * 30 * 24 * 3600,
                plate_active: v.plate_active,
            })
            .collect(),
    }))
}

async fn sms(State(s): State<StubServices>, Json(m): Json<SmsMessage>) -> StatusCode {
    s.outbox.push(&m.to, &m.text);
    StatusCode::ACCEPTED
}

async fn outbox(
    State(s): State<StubServices>,
    Query(q): Query<OutboxQuery>,
) -> Json<Vec<OutboxEntry>> {
    let to = q.to.as_deref().and_then(e164);
    Json(s.outbox.list(to.as_deref(), 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_found_in_a_message() {
        assert_eq!(code_in("emta code: 123456").as_deref(), Some("123456"));
        assert_eq!(code_in("کد: ۶۵۴۳۲۱").as_deref(), Some("654321"));
    }

    #[test]
    fn only_canonical_dates_pass() {
        assert!(is_canonical_date("1370/05/12"));
        assert!(!is_canonical_date("1370-05-12"));
        assert!(!is_canonical_date("۱۳۷۰/۰۵/۱۲"));
    }
}
