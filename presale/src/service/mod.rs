//! The presale HTTP service: manufacturers' storefronts (each its own OIDC relying party of
//! the IdP, so single sign-on across them is real), joining the queue, the waiting page,
//! and applying.
//!
//! Status polls are answered from this replica's cache of each campaign's counters,
//! refreshed by the admitter loop, so a million people refreshing the waiting page do not
//! touch Redis; only joins and applications do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use idp::crypto::{b64_decode, random_token, Keyring};
use idp::error::Text;
use idp::flow::limits::Subject;
use idp::http::pages::{both, layout, Lang};
use idp::store::Ephemeral;
use maud::html;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

mod console;

use crate::applications::{ApplicationRequest, LicenseRow, Store};
use crate::queue::{early_ticket, Counters, Joined, Queue, QueueSettings};

type Rp = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// One manufacturer's storefront: its OIDC client registration at the IdP.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorefrontConfig {
    pub id: String,
    pub name: String,
    pub name_fa: String,
    pub client_secret: String,
}

pub struct Config {
    pub listen: SocketAddr,
    /// Public base URL of this service (redirect URIs are `{base}/{manufacturer}/callback`).
    pub base_url: String,
    pub issuer: String,
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub secret_key: String,
    pub storefronts: Vec<StorefrontConfig>,
    /// Requests per second one IP may make to this replica (burst: twice that).
    pub ip_per_sec: u32,
    /// Take the client IP for the per-IP limit from the rightmost X-Forwarded-For entry
    /// (behind an ingress that appends it), as the IdP does.
    pub trust_forwarded_for: bool,
    /// On shutdown, seconds to keep serving with readiness false before closing.
    pub drain_secs: u64,
}

struct Storefront {
    cfg: StorefrontConfig,
    rp: Rp,
}

type QueueState = (bool, i64, i64, i64, bool);

/// A std mutex whose poisoning (a panic elsewhere mid-update of plain data) is ignored.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Per-IP limiter of this replica: cheap, local, and the first line against floods.
type IpLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

struct Inner {
    base_url: String,
    /// The IdP's issuer, checked against the `iss` of every authorization response
    /// (RFC 9207: mix-up defence).
    issuer: String,
    ip_limiter: IpLimiter,
    trust_forwarded_for: bool,
    /// False from the moment the replica is told to stop (readiness probe).
    ready: std::sync::atomic::AtomicBool,
    drain: Duration,
    /// Shared per-subject limits (the IdP's limiter over this service's ephemeral store).
    limiter: idp::flow::limits::Limiter,
    /// Requests in flight on this replica, for load shedding.
    in_flight: std::sync::atomic::AtomicUsize,
    /// One tick at a time: a slow tick that read licenses before a change must not
    /// overwrite a newer tick's cache.
    tick_lock: tokio::sync::Mutex<()>,
    /// What this replica last applied to each campaign's queue (active, rate, bound,
    /// window, sold out), so a tick writes settings only when a license changes.
    applied: std::sync::Mutex<HashMap<String, QueueState>>,
    /// Lotteries this replica has seen drawn: no more draw attempts for them.
    drawn: std::sync::Mutex<std::collections::HashSet<String>>,
    store: Store,
    queue: Queue,
    eph: Ephemeral,
    keys: Keyring,
    http: openidconnect::reqwest::Client,
    storefronts: HashMap<String, Storefront>,
    licenses: RwLock<Arc<Vec<Arc<LicenseRow>>>>,
    counters: RwLock<HashMap<String, Counters>>,
}

#[derive(Clone)]
struct App(Arc<Inner>);

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

const COOKIE: &str = "emta_ps";

/// What the storefront knows of a signed-in citizen, from the verified ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Citizen {
    sub: String,
    national_id: String,
    name: String,
    birthdate: String,
    /// The IdP's refresh token: when the access token lapses the storefront refreshes, so
    /// a withdrawn consent or a suspended manufacturer ends the storefront session too.
    refresh_token: Option<String>,
    /// Unix seconds when the access token lapses.
    access_expires: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoginState {
    manufacturer: String,
    sid: String,
    verifier: String,
    nonce: String,
}

fn t(fa: &'static str, en: &'static str) -> Text {
    Text { fa, en }
}

fn queue_settings(l: &LicenseRow) -> QueueSettings {
    QueueSettings {
        campaign: l.id.clone(),
        opens_at_ms: l.opens_at * 1000,
        rate_per_min: l.admission_per_min,
        max_active: l.max_active,
        apply_window_ms: l.apply_window_secs * 1000,
        buckets: ((l.units * 50) / 100).clamp(1, 100_000) as u32,
    }
}

pub struct Service {
    app: App,
    listener: TcpListener,
}

impl Service {
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&cfg.database_url, 16).await?;
        store.migrate().await?;
        let keys = Keyring::new(cfg.secret_key.as_bytes());
        let (queue, eph) = if cfg.redis_url.is_empty() {
            (
                Queue::memory(cfg.secret_key.as_bytes()),
                Ephemeral::memory(),
            )
        } else {
            (
                Queue::new(&cfg.redis_url, &cfg.redis_prefix, cfg.secret_key.as_bytes())?,
                Ephemeral::redis(&cfg.redis_url, &format!("{}:ps", cfg.redis_prefix))?,
            )
        };
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(cfg.issuer.clone())?, &http)
            .await?;
        let mut storefronts = HashMap::new();
        for s in &cfg.storefronts {
            let rp = CoreClient::from_provider_metadata(
                meta.clone(),
                ClientId::new(s.id.clone()),
                Some(ClientSecret::new(s.client_secret.clone())),
            )
            .set_redirect_uri(RedirectUrl::new(format!(
                "{}/{}/callback",
                cfg.base_url, s.id
            ))?);
            storefronts.insert(s.id.clone(), Storefront { cfg: s.clone(), rp });
        }
        let listener = TcpListener::bind(cfg.listen).await?;
        let per_sec =
            std::num::NonZeroU32::new(cfg.ip_per_sec.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let burst =
            std::num::NonZeroU32::new(cfg.ip_per_sec.max(1).saturating_mul(2)).unwrap_or(per_sec);
        let quota = governor::Quota::per_second(per_sec).allow_burst(burst);
        let app = App(Arc::new(Inner {
            issuer: cfg.issuer.clone(),
            base_url: cfg.base_url,
            ip_limiter: governor::RateLimiter::keyed(quota),
            trust_forwarded_for: cfg.trust_forwarded_for,
            ready: std::sync::atomic::AtomicBool::new(true),
            drain: Duration::from_secs(cfg.drain_secs),
            limiter: idp::flow::limits::Limiter::new(eph.clone(), keys.clone()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            tick_lock: tokio::sync::Mutex::new(()),
            applied: Default::default(),
            drawn: Default::default(),
            store,
            queue,
            eph,
            keys,
            http,
            storefronts,
            licenses: RwLock::default(),
            counters: RwLock::default(),
        }));
        app.tick().await;
        Ok(Self { app, listener })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.app.clone();
        let admitter = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                app.tick().await;
            }
        });
        let stop_app = self.app.clone();
        let drain = self.app.drain;
        let router = router(self.app);
        let r = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(idp::app::stop_gracefully(
            shutdown,
            move || {
                stop_app
                    .ready
                    .store(false, std::sync::atomic::Ordering::Relaxed)
            },
            drain,
        ))
        .await;
        admitter.abort();
        r
    }
}

impl App {
    /// Reloads licenses, runs the admitter once for every open queue campaign, and
    /// refreshes this replica's counters cache.
    async fn tick(&self) {
        let _one_at_a_time = self.tick_lock.lock().await;
        match self.store.licenses().await {
            Ok(ls) => {
                *self.licenses.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(ls.into_iter().map(Arc::new).collect())
            }
            Err(e) => tracing::warn!(error = %e, "license reload failed"),
        }
        let licenses = self.all_licenses();
        let now = idp::now();
        for l in licenses
            .iter()
            .filter(|l| l.selection == "lottery" && now >= l.closes_at)
        {
            if lock(&self.drawn).contains(&l.id) {
                continue;
            }
            match self.store.draw_lottery(l, now).await {
                Ok(Some(_)) => {
                    lock(&self.drawn).insert(l.id.clone());
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, license = %l.id, "lottery draw failed"),
            }
        }
        for l in licenses.iter().filter(|l| l.selection == "queue") {
            let s = queue_settings(l);
            // Settings and flags go to the shared queue only when the license changed.
            let wanted = (
                l.status == "active",
                s.rate_per_min,
                s.max_active,
                s.apply_window_ms,
                l.accepted >= l.units,
            );
            let changed = lock(&self.applied).get(&l.id) != Some(&wanted);
            let early_final = early_final(l, crate::now_ms());
            let r = async {
                if changed {
                    self.queue.setup(&s).await?;
                    self.queue.suspend(&l.id, !wanted.0).await?;
                    if wanted.4 {
                        self.queue.close(&l.id).await?;
                    }
                    lock(&self.applied).insert(l.id.clone(), wanted);
                }
                self.queue.advance(&l.id).await?;
                let mut c = self.queue.counters(&l.id).await?;
                c.early_final = early_final;
                Ok::<_, crate::queue::QueueError>(c)
            }
            .await;
            match r {
                Ok(c) => {
                    self.counters
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(l.id.clone(), c);
                }
                Err(e) => tracing::warn!(error = %e, campaign = %l.id, "admitter tick failed"),
            }
        }
    }

    fn all_licenses(&self) -> Arc<Vec<Arc<LicenseRow>>> {
        self.licenses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A license by id, shared rather than copied: status polls look it up every time.
    fn license(&self, manufacturer: &str, id: &str) -> Option<Arc<LicenseRow>> {
        self.all_licenses()
            .iter()
            .find(|l| l.id == id && l.manufacturer == manufacturer)
            .cloned()
    }

    fn cached(&self, id: &str) -> Counters {
        self.counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or_default()
    }

    async fn citizen(&self, jar: &CookieJar, m: &str) -> Option<Citizen> {
        let sid = jar.get(COOKIE)?.value().to_owned();
        let key = format!("ps:{sid}:{m}");
        let raw = self.eph.get(&key).await.ok()??;
        let mut c: Citizen = serde_json::from_str(&raw).ok()?;
        if c.access_expires > idp::now() {
            return Some(c);
        }
        // Refresh with rotation; any refusal (consent withdrawn, grant revoked, client
        // suspended) signs the citizen out of this storefront.
        let refreshed = match (&c.refresh_token, self.storefronts.get(m)) {
            (Some(rt), Some(front)) => match front
                .rp
                .exchange_refresh_token(&RefreshToken::new(rt.clone()))
            {
                Ok(req) => req.request_async(&self.http).await.ok(),
                Err(_) => None,
            },
            _ => None,
        };
        let Some(tokens) = refreshed else {
            let _ = self.eph.delete(&key).await;
            return None;
        };
        c.refresh_token = tokens
            .refresh_token()
            .map(|r| r.secret().clone())
            .or(c.refresh_token);
        c.access_expires = idp::now()
            + tokens
                .expires_in()
                .map(|d| d.as_secs() as i64)
                .unwrap_or(300);
        if let Ok(json) = serde_json::to_string(&c) {
            let _ = self
                .eph
                .put(&key, &json, Duration::from_secs(8 * 3600))
                .await;
        }
        Some(c)
    }

    fn csrf(&self, jar: &CookieJar) -> String {
        let sid = jar
            .get(COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        self.keys.hash("csrf", format!("presale|{sid}").as_bytes())
    }

    fn check_csrf(&self, jar: &CookieJar, token: &str) -> bool {
        idp::crypto::ct_eq(&self.csrf(jar), token)
    }
}

fn router(app: App) -> Router {
    use axum::http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer as Set;
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/static/wait.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("static/wait.js"),
                )
            }),
        )
        .route("/static/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], idp::http::pages::APP_CSS) }))
        .route("/{m}/", get(storefront))
        .route("/{m}/login", get(login))
        .route("/{m}/callback", get(callback))
        .route("/{m}/applications", get(my_applications))
        .route("/{m}/c/{id}/join", post(join))
        .route("/{m}/c/{id}/wait", get(wait))
        .route("/{m}/c/{id}/status", get(status))
        .route("/{m}/c/{id}/apply", post(apply))
        .route("/{m}/c/{id}/lottery", get(lottery_public))
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(Set::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")))
        .layer(Set::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(Set::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(Set::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(Set::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .with_state(app)
}

/// Ready while not stopping and the database answers (Redis trouble sheds load per
/// request instead: a replica without Redis still serves storefront pages).
async fn readyz(State(app): State<App>) -> Response {
    if !app.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response();
    }
    match app.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

/// Requests a replica takes at once before it sheds load.
const MAX_IN_FLIGHT: usize = 4096;

/// Per-IP limit (governor, per replica) and load shedding. Shedding answers 503 with
/// Retry-After before any work starts, and never for an application in progress: an
/// application that got this far is worth finishing.
async fn guard(
    State(app): State<App>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use std::sync::atomic::Ordering;
    let applying = req.uri().path().ends_with("/apply");
    let ip = app
        .trust_forwarded_for
        .then(|| idp::http::forwarded_for(req.headers()))
        .flatten()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .unwrap_or(peer.ip());
    if !applying && app.ip_limiter.check_key(&ip).is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            problem(StatusCode::TOO_MANY_REQUESTS, idp::error::msg::RATE_LIMITED),
        )
            .into_response();
    }
    let load = app.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = if load >= MAX_IN_FLIGHT && !applying {
        busy(5)
    } else {
        next.run(req).await
    };
    app.in_flight.fetch_sub(1, Ordering::Relaxed);
    resp
}

/// Shared limits through the IdP's limiter (Redis in production, so replicas agree):
/// joins and applications per national ID per minute.
async fn citizen_limit(
    app: &App,
    what: &'static str,
    national_id: &str,
    max: i64,
) -> Result<(), Response> {
    match app
        .limiter
        .hit(
            Subject::Named(what, national_id),
            max,
            Duration::from_secs(60),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(idp::error::Error::RateLimited { retry_after }) => Err(too_many(retry_after)),
        Err(_) => Err(busy(5)),
    }
}

/// 429 with Retry-After and the rate-limit page.
fn too_many(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", retry_after.to_string())],
        problem(StatusCode::TOO_MANY_REQUESTS, idp::error::msg::RATE_LIMITED),
    )
        .into_response()
}

/// 403 for a form whose CSRF token does not belong to this browser's session.
fn bad_form() -> Response {
    problem(
        StatusCode::FORBIDDEN,
        t(
            "فرم نامعتبر است؛ صفحه را دوباره باز کنید.",
            "The form is not valid; reload the page.",
        ),
    )
}

/// 503 with Retry-After: shed load or ride out a Redis or SQL hiccup, with nothing done.
fn busy(retry_after: u64) -> Response {
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        t(
            "سامانه شلوغ است؛ چند ثانیه دیگر دوباره تلاش کنید.",
            "The service is busy; please try again in a few seconds.",
        ),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

fn page(status: StatusCode, title: Text, body: maud::Markup) -> Response {
    (status, layout(Lang::Fa, title, body)).into_response()
}

fn problem(status: StatusCode, text: Text) -> Response {
    page(
        status,
        t("خطا", "Error"),
        html! { p.error role="alert" { (both(Lang::Fa, text)) } },
    )
}

async fn home(State(app): State<App>) -> Response {
    let mut fronts: Vec<&Storefront> = app.storefronts.values().collect();
    fronts.sort_by(|a, b| a.cfg.id.cmp(&b.cfg.id));
    page(
        StatusCode::OK,
        t("پیش‌فروش خودرو", "Car presales"),
        html! {
            ul { @for s in fronts { li { a href=(format!("/{}/", s.cfg.id)) { (s.cfg.name_fa) " — " (s.cfg.name) } } } }
        },
    )
}

fn money(rials: i64) -> String {
    let s = rials.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn storefront(State(app): State<App>, jar: CookieJar, Path(m): Path<String>) -> Response {
    let Some(front) = app.storefronts.get(&m) else {
        return problem(
            StatusCode::NOT_FOUND,
            t("فروشگاه پیدا نشد.", "No such storefront."),
        );
    };
    let citizen = app.citizen(&jar, &m).await;
    let csrf = app.csrf(&jar);
    let now = idp::now();
    let licenses: Vec<Arc<LicenseRow>> = app
        .all_licenses()
        .iter()
        .filter(|l| l.manufacturer == m)
        .cloned()
        .collect();
    page(
        StatusCode::OK,
        t("پیش‌فروش", "Presale"),
        html! {
            p.client { strong { (front.cfg.name_fa) } " · " (front.cfg.name) }
            @match &citizen {
                Some(c) => { p { (c.name) " — " a href=(format!("/{m}/applications")) { (both(Lang::Fa, t("درخواست‌های من", "My applications"))) } } }
                None => { p { a href=(format!("/{m}/login")) { (both(Lang::Fa, t("ورود با امتا", "Sign in with emta"))) } } }
            }
            @for l in &licenses {
                // data-* for tools (the load tool reads the cap and the window from here).
                section data-campaign=(l.id) data-units=(l.units) data-opens-at=(l.opens_at) data-closes-at=(l.closes_at) data-selection=(l.selection) {
                    h2 { (l.model) }
                    ul {
                        li { "مجوز / license: " (l.license_no) }
                        li { "قیمت / price: " (money(l.unit_price)) " ریال · پیش‌پرداخت / down payment: " (money(l.down_payment)) }
                        li { "ظرفیت / units: " (l.units) " (" (l.accepted) " پذیرفته / accepted)" }
                        li { "تحویل تا / delivery by: " (idp::format_time(l.delivery_deadline)) " (" (l.kind) ")" }
                        li { "ثبت‌نام / registration: " (idp::format_time(l.opens_at)) " → " (idp::format_time(l.closes_at)) }
                        @if l.selection == "lottery" {
                            li { "روش انتخاب / selection: قرعه‌کشی پس از پایان ثبت‌نام / lottery after registration closes (seed commitment " code { (l.seed_commitment) } ") — " a href=(format!("/{m}/c/{}/lottery", l.id)) { "فهرست و نتیجه / list and result" } }
                        } @else {
                            li { "روش انتخاب / selection: صف منصفانه؛ پیش از گشایش ترتیب تصادفی / fair queue; random order for those who join before the opening (seed commitment " code { (l.seed_commitment) } ")" }
                            // After the opening the seed and the number of early arrivals are
                            // public, so anyone can recompute every early ticket.
                            @if now >= l.opens_at {
                                li { "seed: " code { (l.seed) } " · early arrivals: " (app.cached(&l.id).early) " · ticket(p) = 1 + swap-or-not(seed, early, p − 1)" }
                            }
                        }
                        @if l.status != "active" { li.error { (both(Lang::Fa, t("مجوز تعلیق شده است.", "The license is suspended."))) } }
                    }
                    @if citizen.is_some() {
                        form method="post" action=(format!("/{m}/c/{}/join", l.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { (both(Lang::Fa, t("ورود به صف", "Join the queue"))) }
                        }
                    }
                }
            }
        },
    )
}

async fn login(State(app): State<App>, jar: CookieJar, Path(m): Path<String>) -> Response {
    let Some(front) = app.storefronts.get(&m) else {
        return problem(
            StatusCode::NOT_FOUND,
            t("فروشگاه پیدا نشد.", "No such storefront."),
        );
    };
    let (jar, sid) = match jar.get(COOKIE) {
        Some(c) => {
            let v = c.value().to_owned();
            (jar, v)
        }
        None => {
            let sid = random_token(24);
            let cookie = Cookie::build((COOKIE, sid.clone()))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(app.base_url.starts_with("https"))
                .build();
            (jar.add(cookie), sid)
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = front
        .rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("phone".into()))
        .add_scope(Scope::new("national_id".into()))
        .set_pkce_challenge(challenge)
        .url();
    let st = LoginState {
        manufacturer: m,
        sid,
        verifier: verifier.secret().clone(),
        nonce: nonce.secret().clone(),
    };
    let saved = match serde_json::to_string(&st) {
        Ok(json) => app
            .eph
            .put(
                &format!("rp:{}", state.secret()),
                &json,
                Duration::from_secs(600),
            )
            .await
            .is_ok(),
        Err(_) => false,
    };
    if !saved {
        return busy(5);
    }
    (jar, Redirect::to(url.as_str())).into_response()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

async fn callback(
    State(app): State<App>,
    jar: CookieJar,
    Path(m): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let fail = |text| problem(StatusCode::BAD_REQUEST, text);
    // The IdP advertises RFC 9207, so a response without its `iss` is refused too.
    if q.iss.as_deref() != Some(app.issuer.as_str()) {
        return fail(t(
            "پاسخ ورود از امتا نیست.",
            "The sign-in answer did not come from emta.",
        ));
    }
    if q.error.is_some() {
        return fail(t(
            "ورود انجام نشد یا اجازه داده نشد.",
            "Sign-in did not complete or was not allowed.",
        ));
    }
    let (Some(code), Some(state), Some(front)) = (q.code, q.state, app.storefronts.get(&m)) else {
        return fail(t(
            "پاسخ ورود نامعتبر است.",
            "The sign-in answer is not valid.",
        ));
    };
    let Ok(Some(raw)) = app.eph.take(&format!("rp:{state}")).await else {
        return fail(t(
            "این ورود منقضی شده است؛ دوباره وارد شوید.",
            "This sign-in has expired; please sign in again.",
        ));
    };
    let Ok(st) = serde_json::from_str::<LoginState>(&raw) else {
        return fail(t(
            "پاسخ ورود نامعتبر است.",
            "The sign-in answer is not valid.",
        ));
    };
    let sid = jar
        .get(COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if st.sid != sid || st.manufacturer != m {
        return fail(t(
            "این ورود در مرورگر دیگری آغاز شده است.",
            "This sign-in was started in another browser.",
        ));
    }
    let exchanged = match front.rp.exchange_code(AuthorizationCode::new(code)) {
        Ok(req) => req
            .set_pkce_verifier(PkceCodeVerifier::new(st.verifier))
            .request_async(&app.http)
            .await
            .ok(),
        Err(_) => None,
    };
    let Some(tokens) = exchanged else {
        return problem(
            StatusCode::BAD_GATEWAY,
            t(
                "امتا پاسخ نداد؛ دوباره تلاش کنید.",
                "emta did not answer; please try again.",
            ),
        );
    };
    let verifier = front.rp.id_token_verifier().set_allowed_algs(vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]);
    let Some(id_token) = tokens.id_token() else {
        return fail(t(
            "پاسخ ورود نامعتبر است.",
            "The sign-in answer is not valid.",
        ));
    };
    if id_token.claims(&verifier, &Nonce::new(st.nonce)).is_err() {
        return fail(t(
            "پاسخ ورود نامعتبر است.",
            "The sign-in answer is not valid.",
        ));
    }
    // Verified above; read the emta-specific claims from the same payload.
    let payload: serde_json::Value = id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(b64_decode)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let s = |k: &str| payload[k].as_str().unwrap_or_default().to_owned();
    let citizen = Citizen {
        sub: s("sub"),
        national_id: s("national_id"),
        name: s("name"),
        birthdate: s("birthdate"),
        refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
        access_expires: idp::now()
            + tokens
                .expires_in()
                .map(|d| d.as_secs() as i64)
                .unwrap_or(300),
    };
    if citizen.national_id.is_empty() {
        return fail(t(
            "شناسه ملی دریافت نشد.",
            "The national ID was not released.",
        ));
    }
    let Ok(json) = serde_json::to_string(&citizen) else {
        return fail(t("خطای داخلی.", "Internal error."));
    };
    if app
        .eph
        .put(
            &format!("ps:{sid}:{m}"),
            &json,
            Duration::from_secs(8 * 3600),
        )
        .await
        .is_err()
    {
        return busy(5);
    }
    Redirect::to(&format!("/{m}/")).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The applicant's place, as the signed-in session remembers it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Place {
    Early(i64),
    Ticket(i64),
    /// A lottery entry number.
    Entry(i64),
}

async fn join(
    State(app): State<App>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !app.check_csrf(&jar, &f.csrf) {
        return bad_form();
    }
    let Some(c) = app.citizen(&jar, &m).await else {
        return Redirect::to(&format!("/{m}/login")).into_response();
    };
    let Some(l) = app.license(&m, &id) else {
        return problem(
            StatusCode::NOT_FOUND,
            t("این پیش‌فروش پیدا نشد.", "No such presale."),
        );
    };
    if let Err(r) = citizen_limit(&app, "join", &c.national_id, 10).await {
        return r;
    }
    let lottery = if l.selection == "lottery" {
        match app
            .store
            .enter_lottery(&l, &c.national_id, &c.sub, idp::now())
            .await
        {
            Ok(
                crate::lottery::store::Entered::New(n) | crate::lottery::store::Entered::Already(n),
            ) => Some(Place::Entry(n)),
            Ok(crate::lottery::store::Entered::Closed) => {
                return problem(
                    StatusCode::CONFLICT,
                    t(
                        "ثبت‌نام این قرعه‌کشی باز نیست.",
                        "Registration for this lottery is not open.",
                    ),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "lottery entry failed");
                return busy(10);
            }
        }
    } else {
        None
    };
    let place = match lottery {
        Some(p) => p,
        None => match app.queue.join(&queue_settings(&l), &c.national_id).await {
            Ok(Joined::Early { arrival, .. }) => Place::Early(arrival),
            Ok(Joined::Ticket { ticket, .. }) => Place::Ticket(ticket),
            Ok(Joined::Closed) => {
                return problem(
                    StatusCode::CONFLICT,
                    t(
                        "صف بسته است: ظرفیت تکمیل یا مجوز تعلیق شده است.",
                        "The queue is closed: sold out or suspended.",
                    ),
                )
            }
            // Overloaded or Redis away: shed load with a clear answer, nothing half-done.
            Err(_) => return busy(10),
        },
    };
    let cookie = Cookie::build((
        ticket_cookie(&id),
        app.ticket_token(&id, &c.national_id, place),
    ))
    .path(format!("/{m}/c/{id}/"))
    .http_only(true)
    .same_site(SameSite::Lax)
    .secure(app.base_url.starts_with("https"))
    .max_age(time::Duration::days(3))
    .build();
    (jar.add(cookie), Redirect::to(&format!("/{m}/c/{id}/wait"))).into_response()
}

fn ticket_cookie(license: &str) -> String {
    format!("emta_q_{license}")
}

/// The `Cookie` header a joined applicant's browser sends (benchmarks and tests).
pub fn ticket_cookie_header(secret: &str, license: &str, national_id: &str, ticket: i64) -> String {
    let keys = Keyring::new(secret.as_bytes());
    let token = signed_ticket(&keys, license, national_id, Place::Ticket(ticket));
    format!("{}={token}", ticket_cookie(license))
}

/// The signed ticket: `place.mac.owner`. `mac` proves the place was issued by us (status
/// polls check it with no lookup at all); `owner` binds it to the national ID, checked at
/// apply time against the signed-in citizen, so a copied cookie is useless to others.
fn signed_ticket(keys: &Keyring, license: &str, national_id: &str, place: Place) -> String {
    let p = match place {
        Place::Early(n) => format!("E{n}"),
        Place::Ticket(n) => format!("T{n}"),
        Place::Entry(n) => format!("L{n}"),
    };
    let mac = keys.hash("ticket", format!("{license}|{p}").as_bytes());
    let owner = keys.hash(
        "ticket-owner",
        format!("{license}|{national_id}|{p}").as_bytes(),
    );
    format!("{p}.{mac}.{owner}")
}

impl App {
    fn ticket_token(&self, license: &str, national_id: &str, place: Place) -> String {
        signed_ticket(&self.keys, license, national_id, place)
    }

    /// Reads the signed ticket; with `owner`, also checks it belongs to that national ID.
    fn read_ticket(&self, jar: &CookieJar, license: &str, owner: Option<&str>) -> Option<Place> {
        let raw = jar.get(&ticket_cookie(license))?.value().to_owned();
        let mut parts = raw.split('.');
        let (p, mac, own) = (parts.next()?, parts.next()?, parts.next()?);
        if !self
            .keys
            .verify("ticket", format!("{license}|{p}").as_bytes(), mac)
        {
            return None;
        }
        if let Some(nid) = owner {
            if !self.keys.verify(
                "ticket-owner",
                format!("{license}|{nid}|{p}").as_bytes(),
                own,
            ) {
                return None;
            }
        }
        let n: i64 = p.get(1..)?.parse().ok()?;
        match p.as_bytes().first()? {
            b'E' => Some(Place::Early(n)),
            b'T' => Some(Place::Ticket(n)),
            b'L' => Some(Place::Entry(n)),
            _ => None,
        }
    }
}

/// The ticket of a queue applicant who is admitted right now, or the answer to send.
async fn queue_admission(
    app: &App,
    l: &LicenseRow,
    id: &str,
    place: Place,
    now: i64,
) -> Result<i64, Response> {
    let mut counters = app.cached(id);
    if matches!(place, Place::Early(_)) && !counters.early_final {
        // This replica's cache may not have the final count of early joins yet; an
        // application is worth one read of the shared counters.
        let asked = crate::now_ms();
        counters = match app.queue.counters(id).await {
            Ok(c) => Counters {
                early_final: early_final(l, asked),
                ..c
            },
            Err(_) => return Err(busy(5)),
        };
    }
    let Some(ticket) = ticket_of(l, &counters, place, now) else {
        return Err(problem(
            StatusCode::CONFLICT,
            t("هنوز نوبت شما نرسیده است.", "It is not your turn yet."),
        ));
    };
    match app.queue.is_admitted(id, ticket).await {
        Ok(true) => Ok(ticket),
        Ok(false) => Err(problem(
            StatusCode::CONFLICT,
            t(
                "نوبت شما نرسیده یا مهلت آن گذشته است.",
                "It is not your turn, or your time to apply has run out.",
            ),
        )),
        Err(_) => Err(busy(5)),
    }
}

/// Why someone who was shown the form is not admitted now, in words they can act on:
/// their other device applied already (and released the turn), the campaign sold out, or
/// (`otherwise`) their turn lapsed.
async fn not_admitted(app: &App, c: &Citizen, l: &LicenseRow, otherwise: Response) -> Response {
    use crate::applications::Refusal;
    if let Ok(mine) = app.store.applications_of(&c.sub).await {
        if mine.iter().any(|a| a.license_id == l.id) {
            return problem(StatusCode::CONFLICT, Refusal::AlreadyApplied.text());
        }
    }
    if app.cached(&l.id).closed {
        return problem(StatusCode::CONFLICT, Refusal::SoldOut.text());
    }
    otherwise
}

/// The waiting page of a lottery entry: the entry, then the result once drawn.
async fn lottery_wait(
    app: &App,
    jar: &CookieJar,
    m: &str,
    l: &LicenseRow,
    entry: i64,
    now: i64,
) -> Response {
    let id = &l.id;
    let rank = if now >= l.closes_at {
        app.store
            .lottery_rank(
                id,
                &app.citizen(jar, m)
                    .await
                    .map(|c| c.national_id)
                    .unwrap_or_default(),
            )
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let csrf = app.csrf(jar);
    let body = html! {
        h2 { (l.model) }
        p { "شماره ثبت‌نام / entry: " strong { (crate::lottery::store::entry_id(entry)) } }
        p { a href=(format!("/{m}/c/{id}/lottery")) { (both(Lang::Fa, t("فهرست عمومی و نتیجه قرعه‌کشی", "Public list and result of the draw"))) } }
        @match rank {
            None => {
                meta http-equiv="refresh" content="30";
                p { (both(Lang::Fa, t("ثبت‌نام شما در قرعه‌کشی انجام شد. قرعه‌کشی پس از پایان ثبت‌نام انجام می‌شود.", "You are registered for the lottery. The draw takes place after registration closes."))) }
                p { "پایان ثبت‌نام / closes: " (idp::format_time(l.closes_at)) }
            }
            Some(r) if r <= l.units => {
                p { (both(Lang::Fa, t("برنده شدید. تا پایان مهلت، درخواست خود را ثبت کنید.", "You won. Apply before your time runs out."))) }
                form method="post" action=(format!("/{m}/c/{id}/apply")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (both(Lang::Fa, t("ثبت درخواست", "Apply"))) }
                }
            }
            Some(r) => {
                p { (both(Lang::Fa, t("برنده نشدید؛ در فهرست انتظار هستید.", "You did not win; you are on the waiting list."))) }
                p { "جایگاه در فهرست انتظار / waiting list position: " strong { (r - l.units) } }
            }
        }
    };
    page(StatusCode::OK, t("قرعه‌کشی", "Lottery"), body)
}

/// The public lottery page: the commitment, the seed once revealed, the list of entries
/// and the draw order, so that anyone can recompute the result.
async fn lottery_public(State(app): State<App>, Path((m, id)): Path<(String, String)>) -> Response {
    let Some(l) = app.license(&m, &id).filter(|l| l.selection == "lottery") else {
        return problem(
            StatusCode::NOT_FOUND,
            t("این قرعه‌کشی پیدا نشد.", "No such lottery."),
        );
    };
    let (list, seed, order) = match (
        app.store.lottery_list(&id).await,
        app.store.revealed_seed(&id).await,
        app.store.lottery_order(&id).await,
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => return busy(5),
    };
    page(
        StatusCode::OK,
        t("قرعه‌کشی", "Lottery"),
        html! {
            h2 { (l.model) " — " (l.license_no) }
            p { "SHA-256 commitment (base64url): " code { (l.seed_commitment) } }
            @if let Some(seed) = &seed {
                p { "seed: " code { (seed) } }
                p { (both(Lang::Fa, t(
                    "رتبه هر ثبت‌نام = ترتیب صعودی SHA-256(seed + \":\" + شماره ثبت‌نام). برندگان، به تعداد ظرفیت، از ابتدای فهرست‌اند.",
                    "Each entry's rank is the ascending order of SHA-256(seed + \":\" + entry id). The first `units` entries win.",
                ))) }
                h3 { "draw order (" (l.units) " winners)" }
                ol { @for n in &order { li { (crate::lottery::store::entry_id(*n)) } } }
            } @else {
                p { (both(Lang::Fa, t("بذر قرعه‌کشی پس از پایان ثبت‌نام منتشر می‌شود.", "The seed is revealed after registration closes."))) }
            }
            h3 { "entries (" (list.len()) ")" }
            ul { @for (n, masked) in &list { li { (crate::lottery::store::entry_id(*n)) " " (masked) } } }
        },
    )
}

/// The ticket of a place, once it is known (after the opening for early arrivals).
/// Whether counters read at `asked_ms` hold the final number of early joins: a second
/// past the opening (margin for clock skew with Redis), every early join has landed.
fn early_final(l: &LicenseRow, asked_ms: i64) -> bool {
    asked_ms >= l.opens_at * 1000 + 1000
}

fn ticket_of(l: &LicenseRow, c: &Counters, place: Place, now: i64) -> Option<i64> {
    match place {
        Place::Ticket(t) => Some(t),
        // Early tickets come from the number of early joins, final only once read after
        // the opening: before that a replica's cache could give two people one ticket.
        Place::Early(arrival) if now >= l.opens_at && c.early_final => {
            early_ticket(l.seed.as_bytes(), c.early, arrival)
        }
        Place::Early(_) | Place::Entry(_) => None,
    }
}

#[derive(Serialize)]
struct StatusBody {
    ticket: Option<i64>,
    serving: i64,
    ahead: Option<i64>,
    admitted: bool,
    closed: bool,
    eta_secs: Option<i64>,
    opens_at: i64,
}

fn status_of(l: &LicenseRow, c: &Counters, place: Place, now: i64) -> StatusBody {
    let ticket = ticket_of(l, c, place, now);
    let ahead = ticket.map(|t| (t - c.serving - 1).max(0));
    StatusBody {
        ticket,
        serving: c.serving,
        ahead,
        admitted: ticket.is_some_and(|t| t <= c.serving),
        closed: c.closed || c.suspended,
        eta_secs: ahead.map(|a| a * 60 / l.admission_per_min.max(1)),
        opens_at: l.opens_at,
    }
}

/// JSON for pollers; served from this replica's counters cache, never from Redis.
async fn status(
    State(app): State<App>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Response {
    let (Some(l), Some(place)) = (app.license(&m, &id), app.read_ticket(&jar, &id, None)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "not in this queue"})),
        )
            .into_response();
    };
    Json(status_of(&l, &app.cached(&id), place, idp::now())).into_response()
}

async fn wait(
    State(app): State<App>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Response {
    let (Some(l), Some(place)) = (app.license(&m, &id), app.read_ticket(&jar, &id, None)) else {
        return Redirect::to(&format!("/{m}/")).into_response();
    };
    let now = idp::now();
    if let Place::Entry(entry) = place {
        return lottery_wait(&app, &jar, &m, &l, entry, now).await;
    }
    let st = status_of(&l, &app.cached(&id), place, now);
    let csrf = app.csrf(&jar);
    // Refresh without JavaScript, backing off as the wait grows.
    let refresh = st.eta_secs.map(|e| (e / 10).clamp(3, 30)).unwrap_or(10);
    let body = html! {
        // With JavaScript the page updates itself (wait.js); without, it refreshes.
        noscript { meta http-equiv="refresh" content=(refresh); }
        div data-status-url=(format!("/{m}/c/{id}/status")) {}
        script src="/static/wait.js" {}
        h2 { (l.model) }
        @if st.closed {
            p.error { (both(Lang::Fa, t("صف بسته شد: ظرفیت تکمیل شد یا مجوز تعلیق شد.", "The queue has closed: sold out or suspended."))) }
        } @else if st.admitted {
            p { (both(Lang::Fa, t("نوبت شماست. تا پایان مهلت، درخواست خود را ثبت کنید.", "It is your turn. Apply before your time runs out."))) }
            form method="post" action=(format!("/{m}/c/{id}/apply")) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { (both(Lang::Fa, t("ثبت درخواست", "Apply"))) }
            }
        } @else if let (Some(ticket), Some(ahead)) = (st.ticket, st.ahead) {
            p { "نوبت / ticket: " strong #ticket { (ticket) } }
            p { "نفرات جلوتر / people ahead: " strong #ahead { (ahead) } }
            p { "زمان تقریبی / estimated wait: " span #eta { (st.eta_secs.unwrap_or(0) / 60) } " دقیقه / min" }
        } @else {
            p { (both(Lang::Fa, t("در صف ثبت شدید. ترتیب همه کسانی که پیش از گشایش آمده‌اند هنگام گشایش به قید قرعه تعیین می‌شود.", "You are in. The order of everyone who joined before the opening is drawn at the opening."))) }
            p { "گشایش / opens: " (idp::format_time(l.opens_at)) }
        }
    };
    page(StatusCode::OK, t("صف انتظار", "Waiting room"), body)
}

async fn apply(
    State(app): State<App>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !app.check_csrf(&jar, &f.csrf) {
        return bad_form();
    }
    let (Some(c), Some(l)) = (app.citizen(&jar, &m).await, app.license(&m, &id)) else {
        return Redirect::to(&format!("/{m}/")).into_response();
    };
    let Some(place) = app.read_ticket(&jar, &id, Some(&c.national_id)) else {
        return problem(
            StatusCode::FORBIDDEN,
            t(
                "این نوبت به شما تعلق ندارد؛ دوباره وارد صف شوید.",
                "This ticket is not yours; join the queue again.",
            ),
        );
    };
    if let Err(r) = citizen_limit(&app, "apply", &c.national_id, 10).await {
        return r;
    }
    let now = idp::now();
    let ticket = if let Place::Entry(_) = place {
        // Lottery: only a winner (rank within the units) may apply.
        match app.store.lottery_rank(&id, &c.national_id).await {
            Ok(Some(rank)) if rank <= l.units => rank,
            Ok(_) => {
                return problem(
                    StatusCode::CONFLICT,
                    t(
                        "شما در قرعه‌کشی برنده نشده‌اید یا قرعه‌کشی هنوز انجام نشده است.",
                        "You did not win the lottery, or it has not been drawn yet.",
                    ),
                )
            }
            Err(_) => return busy(5),
        }
    } else {
        match queue_admission(&app, &l, &id, place, now).await {
            Ok(t) => t,
            Err(r) => return not_admitted(&app, &c, &l, r).await,
        }
    };
    let req = ApplicationRequest {
        national_id: c.national_id.clone(),
        citizen_sub: c.sub.clone(),
        birthdate: c.birthdate.clone(),
        ticket,
    };
    let today = idp::today_iso();
    let result = match app.store.apply(&l.terms(), &req, now, &today).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "application failed");
            return busy(5);
        }
    };
    let _ = app.queue.release(&id, ticket).await;
    match result {
        Ok(acc) => page(
            StatusCode::OK,
            t("درخواست ثبت شد", "Application accepted"),
            html! {
                p { (both(Lang::Fa, t("درخواست شما پذیرفته شد. کد پیگیری:", "Your application is accepted. Tracking code:"))) }
                p { strong { (acc.tracking_code) } }
                p { a href=(format!("/{m}/applications")) { (both(Lang::Fa, t("درخواست‌های من", "My applications"))) } }
            },
        ),
        Err(why) => {
            if why == crate::applications::Refusal::SoldOut {
                let _ = app.queue.close(&id).await;
            }
            problem(StatusCode::CONFLICT, why.text())
        }
    }
}

async fn my_applications(
    State(app): State<App>,
    jar: CookieJar,
    Path(m): Path<String>,
) -> Response {
    let Some(c) = app.citizen(&jar, &m).await else {
        return Redirect::to(&format!("/{m}/login")).into_response();
    };
    let rows = app.store.applications_of(&c.sub).await.unwrap_or_default();
    let licenses = app.all_licenses();
    page(
        StatusCode::OK,
        t("درخواست‌های من", "My applications"),
        html! {
            @if rows.is_empty() { p { (both(Lang::Fa, t("هنوز درخواستی ندارید.", "You have no applications yet."))) } }
            ul { @for r in &rows {
                li {
                    (licenses.iter().find(|l| l.id == r.license_id).map(|l| l.model.clone()).unwrap_or_default())
                    " — کد پیگیری / tracking: " strong { (r.tracking_code) }
                    " — " (idp::format_time(r.created_at))
                }
            } }
        },
    )
}
