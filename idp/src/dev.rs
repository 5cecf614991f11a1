//! Development and test fixtures: synthetic citizens, the fixture registry, the SMS
//! outbox, and a stub HTTP server that serves the civil registry, mobile ownership and SMS
//! gateway contracts over them.
//!
//! Production never uses this module: `serve` refuses the fixture registry unless `--dev`
//! is given, and the outbox is readable over HTTP in dev mode only.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::adapters::registry::{OwnershipAnswer, PersonAnswer};
use crate::adapters::sms::SmsMessage;
use crate::domain::{JalaliDate, MobileNumber, NationalId};

/// One synthetic person as the registries know them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FixtureCitizen {
    pub national_id: String,
    /// Local form, `09…`.
    pub mobile: String,
    pub given_name: String,
    pub family_name: String,
    /// Jalali, `YYYY/MM/DD`.
    pub birth_date: String,
}

const GIVEN: &[&str] = &[
    "علی",
    "محمد",
    "زهرا",
    "فاطمه",
    "حسین",
    "مریم",
    "رضا",
    "سارا",
    "مهدی",
    "نرگس",
    "امیر",
    "لیلا",
    "حمید",
    "پریسا",
    "کاوه",
    "شیرین",
];
const FAMILY: &[&str] = &[
    "احمدی",
    "محمدی",
    "حسینی",
    "رضایی",
    "کریمی",
    "موسوی",
    "جعفری",
    "صادقی",
    "رحیمی",
    "کاظمی",
    "نوری",
    "تهرانی",
    "شیرازی",
    "اصفهانی",
];

/// Generates `n` synthetic citizens with valid national IDs, unique mobile numbers and
/// adults' birth dates, reproducibly from `seed`.
pub fn generate_citizens(n: usize, seed: u64) -> Vec<FixtureCitizen> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut i: u32 = 0;
    while out.len() < n {
        i = i.wrapping_add(1);
        let nid = NationalId::from_prefix(rng.gen_range(1_000_000..999_999_999));
        if !seen.insert(nid.as_str().to_owned()) || NationalId::parse(nid.as_str()).is_err() {
            continue;
        }
        let year = rng.gen_range(1330..=1384);
        let month = rng.gen_range(1..=12u8);
        let day = rng.gen_range(1..=if month <= 6 { 31 } else { 29 });
        let birth = match JalaliDate::new(year, month, day) {
            Ok(d) => d,
            Err(_) => continue,
        };
        out.push(FixtureCitizen {
            national_id: nid.as_str().to_owned(),
            mobile: format!("09{:09}", 100_000_000 + out.len() as u64),
            given_name: GIVEN[rng.gen_range(0..GIVEN.len())].to_owned(),
            family_name: FAMILY[rng.gen_range(0..FAMILY.len())].to_owned(),
            birth_date: birth.canonical(),
        });
    }
    out
}

/// The fixture registry: answers like the real services, from a list of citizens.
#[derive(Clone, Default)]
pub struct FixtureRegistry {
    by_nid: Arc<HashMap<String, FixtureCitizen>>,
}

impl FixtureRegistry {
    pub fn new(citizens: Vec<FixtureCitizen>) -> Self {
        Self {
            by_nid: Arc::new(
                citizens
                    .into_iter()
                    .map(|c| (c.national_id.clone(), c))
                    .collect(),
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.by_nid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_nid.is_empty()
    }

    pub fn person(&self, nid: &NationalId, birth: &JalaliDate) -> PersonAnswer {
        match self.by_nid.get(nid.as_str()) {
            Some(c) if c.birth_date == birth.canonical() => PersonAnswer {
                matched: true,
                given_name: Some(c.given_name.clone()),
                family_name: Some(c.family_name.clone()),
            },
            _ => PersonAnswer::default(),
        }
    }

    pub fn owns(&self, nid: &NationalId, mobile: &MobileNumber) -> bool {
        self.by_nid
            .get(nid.as_str())
            .is_some_and(|c| MobileNumber::parse(&c.mobile).is_ok_and(|m| m == *mobile))
    }
}

/// Messages "sent" in dev mode, newest last; bounded so a flood cannot exhaust memory.
/// Indexed by recipient as well, because the load tool reads one citizen's code per
/// login at thousands of logins a second.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Mutex<OutboxInner>>,
}

#[derive(Default)]
struct OutboxInner {
    /// Every message in arrival order (the dev page lists the newest).
    all: VecDeque<OutboxEntry>,
    /// The last few messages per recipient, and recipients in first-seen order so the
    /// oldest can be forgotten.
    by_to: HashMap<String, VecDeque<OutboxEntry>>,
    recipients: VecDeque<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
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
            at: crate::now(),
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
}

/// Extracts the 6-digit code from an OTP message (tests, the load tool).
pub fn code_in(text: &str) -> Option<String> {
    let digits = crate::domain::digits::to_latin_digits(text);
    digits
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned)
}

/// The stub of the three upstream services over HTTP, for tests, demos and the load tool.
#[derive(Clone)]
pub struct StubServices {
    pub registry: FixtureRegistry,
    pub outbox: Outbox,
    /// When set, every registry call answers 503: the registry is down.
    pub registry_down: Arc<AtomicBool>,
    /// Calls to the civil registry and ownership service, so tests can see the cache work.
    pub registry_calls: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct PersonQueryIn {
    national_id: String,
    birth_date: String,
}

#[derive(Deserialize)]
struct OwnershipQueryIn {
    national_id: String,
    mobile: String,
}

#[derive(Deserialize)]
struct OutboxQuery {
    to: Option<String>,
}

impl StubServices {
    pub fn new(citizens: Vec<FixtureCitizen>) -> Self {
        Self {
            registry: FixtureRegistry::new(citizens),
            outbox: Outbox::default(),
            registry_down: Arc::default(),
            registry_calls: Arc::default(),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/persons/verify", post(stub_person))
            .route("/ownership/verify", post(stub_ownership))
            .route("/messages", post(stub_sms))
            .route("/outbox", get(stub_outbox))
            .with_state(self)
    }

    /// Serves the stub on `addr` (port 0 for any) until `shutdown` resolves.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok((local, handle))
    }
}

async fn stub_person(
    State(s): State<StubServices>,
    Json(q): Json<PersonQueryIn>,
) -> Result<Json<PersonAnswer>, StatusCode> {
    s.registry_calls.fetch_add(1, Ordering::Relaxed);
    if s.registry_down.load(Ordering::Relaxed) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let (Ok(nid), Ok(birth)) = (
        NationalId::parse(&q.national_id),
        JalaliDate::parse(&q.birth_date),
    ) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    Ok(Json(s.registry.person(&nid, &birth)))
}

async fn stub_ownership(
    State(s): State<StubServices>,
    Json(q): Json<OwnershipQueryIn>,
) -> Result<Json<OwnershipAnswer>, StatusCode> {
    s.registry_calls.fetch_add(1, Ordering::Relaxed);
    if s.registry_down.load(Ordering::Relaxed) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let (Ok(nid), Ok(mobile)) = (
        NationalId::parse(&q.national_id),
        MobileNumber::parse(&q.mobile),
    ) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    Ok(Json(OwnershipAnswer {
        matched: s.registry.owns(&nid, &mobile),
    }))
}

async fn stub_sms(State(s): State<StubServices>, Json(m): Json<SmsMessage>) -> StatusCode {
    s.outbox.push(&m.to, &m.text);
    StatusCode::ACCEPTED
}

async fn stub_outbox(
    State(s): State<StubServices>,
    Query(q): Query<OutboxQuery>,
) -> Json<Vec<OutboxEntry>> {
    let to =
        q.to.as_deref()
            .and_then(|t| MobileNumber::parse(t).ok())
            .map(|m| m.e164().to_owned());
    Json(s.outbox.list(to.as_deref(), 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_citizens_are_valid_and_unique() {
        let cs = generate_citizens(500, 7);
        assert_eq!(cs.len(), 500);
        let nids: std::collections::HashSet<_> = cs.iter().map(|c| &c.national_id).collect();
        let mobiles: std::collections::HashSet<_> = cs.iter().map(|c| &c.mobile).collect();
        assert_eq!(nids.len(), 500);
        assert_eq!(mobiles.len(), 500);
        for c in &cs {
            assert!(NationalId::parse(&c.national_id).is_ok());
            assert!(MobileNumber::parse(&c.mobile).is_ok());
            assert!(JalaliDate::parse(&c.birth_date).is_ok());
        }
        assert_eq!(generate_citizens(10, 7), generate_citizens(10, 7));
    }

    #[test]
    fn the_code_is_found_in_a_message() {
        assert_eq!(code_in("emta code: 123456").as_deref(), Some("123456"));
        assert_eq!(code_in("کد: ۶۵۴۳۲۱").as_deref(), Some("654321"));
    }
}
