//! Test harness: starts the real IdP on port 0 with a fresh database (a SQLite file, or a
//! new PostgreSQL database) and an ephemeral store (in-process, or real Redis under a
//! unique prefix), plus the stub civil registry / ownership / SMS services over HTTP.
//!
//! PostgreSQL and Redis come from `EMTA_TEST_POSTGRES_URL` and `EMTA_TEST_REDIS_URL`
//! (`.ci/run` starts throwaway servers and sets them); without them the tests use the
//! servers on the default local ports.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use idp::admin::{self, NewClient};
use idp::dev::{generate_citizens, FixtureCitizen, StubServices};
use idp::domain::SigningAlg;
use idp::{Application, Settings};
use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use sqlx::Connection;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process ephemeral store: the embedded default.
    Embedded,
    /// PostgreSQL + Redis: production.
    Servers,
}

pub fn postgres_admin_url() -> String {
    std::env::var("EMTA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("EMTA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct RegisteredClient {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
    pub post_logout_uri: String,
}

/// Storage shared by replicas of one deployment under test.
#[derive(Clone)]
pub struct Deployment {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub secret_key: String,
    pub stub_url: String,
    pub stub: StubServices,
}

pub struct TestApp {
    pub base: String,
    pub stub: StubServices,
    pub citizens: Vec<FixtureCitizen>,
    pub clients: HashMap<&'static str, RegisteredClient>,
    pub core: idp::core::Core,
    pub deployment: Deployment,
    stop: Option<oneshot::Sender<()>>,
    _tmp: Option<TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand::random::<u64>())
}

async fn fresh_database(backend: Backend) -> (String, Option<TempDir>) {
    match backend {
        Backend::Embedded => {
            let dir = std::env::temp_dir().join(unique("emta_idp"));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.join("idp.db").display());
            (url, Some(TempDir(dir)))
        }
        Backend::Servers => {
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is not reachable ({e}); run .ci/run or set EMTA_TEST_POSTGRES_URL")
            });
            let name = unique("emta_idp_test");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create database");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            (format!("{base}/{name}"), None)
        }
    }
}

pub struct Options {
    pub settings: Box<dyn Fn(&mut Settings) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: Box::new(|_| {}),
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let citizens = generate_citizens(40, rand::random());
    let stub = StubServices::new(citizens.clone());
    let (stub_addr, _) = stub
        .clone()
        .serve(([127, 0, 0, 1], 0).into(), std::future::pending())
        .await
        .expect("stub services");
    let (database_url, tmp) = fresh_database(backend).await;
    let deployment = Deployment {
        database_url,
        redis_url: if backend == Backend::Servers {
            redis_url()
        } else {
            String::new()
        },
        redis_prefix: unique("emta_t"),
        secret_key: idp::crypto::random_token(32),
        stub_url: format!("http://{stub_addr}"),
        stub,
    };
    let mut app = start_replica(&deployment, &options).await;
    app.citizens = citizens;
    app._tmp = tmp;
    app.clients = register_clients(&app).await;
    app.core.reload().await.expect("reload");
    app
}

/// Starts one more replica of the same deployment (same SQL, Redis and secret).
pub async fn start_replica(d: &Deployment, options: &Options) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut s = Settings::for_tests();
    s.issuer = format!("http://localhost:{}", addr.port());
    s.storage.database_url = idp::config::Secret::new(d.database_url.clone());
    s.storage.redis_url = idp::config::Secret::new(d.redis_url.clone());
    s.storage.redis_prefix = d.redis_prefix.clone();
    s.storage.db_max_connections = 5;
    s.secret_key = idp::config::Secret::new(d.secret_key.clone());
    s.registry_url = d.stub_url.clone();
    s.ownership_url = d.stub_url.clone();
    s.sms_url = d.stub_url.clone();
    s.pow_difficulty = 4;
    s.dev = false;
    s.reload_ms = 200;
    (options.settings)(&mut s);
    let app = Application::build_with_listener(s, None, listener)
        .await
        .expect("build app");
    let core = app.core();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://localhost:{}", addr.port()),
        stub: d.stub.clone(),
        citizens: Vec::new(),
        clients: HashMap::new(),
        core,
        deployment: d.clone(),
        stop: Some(tx),
        _tmp: None,
    }
}

async fn register_clients(app: &TestApp) -> HashMap<&'static str, RegisteredClient> {
    let mut out = HashMap::new();
    for (key, id, name, name_fa, stars, alg) in [
        ("saipa", "saipa", "Saipa", "سایپا", 4, SigningAlg::ES256),
        (
            "ikco",
            "iran-khodro",
            "Iran Khodro",
            "ایران خودرو",
            5,
            SigningAlg::RS256,
        ),
    ] {
        let redirect_uri = format!("http://localhost:9/{id}/callback");
        let post_logout_uri = format!("http://localhost:9/{id}/bye");
        let (_, secret) = admin::add_client(
            &app.core.db,
            &app.core.keyring,
            NewClient {
                id: id.into(),
                name: name.into(),
                name_fa: name_fa.into(),
                stars,
                redirect_uris: vec![redirect_uri.clone()],
                post_logout_redirect_uris: vec![post_logout_uri.clone()],
                service_scopes: vec!["presale.read".into()],
                id_token_alg: alg,
                valid_days: 365,
            },
            "test",
            idp::now(),
        )
        .await
        .expect("add client");
        out.insert(
            key,
            RegisteredClient {
                id: id.into(),
                secret,
                redirect_uri,
                post_logout_uri,
            },
        );
    }
    out
}

impl TestApp {
    pub fn registry_calls(&self) -> u64 {
        self.stub.registry_calls.load(Ordering::Relaxed)
    }

    pub fn client(&self, key: &str) -> &RegisteredClient {
        &self.clients[key]
    }

    pub async fn latest_code_for(&self, mobile: &str) -> Option<String> {
        let m = idp::domain::MobileNumber::parse(mobile).ok()?;
        self.stub
            .outbox
            .list(Some(m.e164()), 1)
            .first()
            .and_then(|e| idp::dev::code_in(&e.text))
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// A plain HTTP client for back-channel calls (no cookies, no redirects).
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client")
    }
}

/// A citizen's browser: a cookie jar, no automatic redirects (so tests see each hop).
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The value of the named hidden or text input.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\"");
        let at = self.body.find(&needle)?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')?;
        Some(tag[v..v + end].replace("&amp;", "&"))
    }

    pub fn tx_path(&self) -> Option<String> {
        let at = self.body.find("action=\"/login/")? + 8;
        let rest = &self.body[at..];
        let end = rest[7..].find('/')? + 7;
        Some(rest[..end].to_owned())
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    fn abs(&self, url: &str) -> String {
        if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
            headers,
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(self.abs(url)).send().await.expect("GET")).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(self.abs(url))
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// Follows redirects on the IdP until a page or a redirect leaving the IdP.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            match &page.location {
                Some(loc) if !loc.starts_with("http") || loc.starts_with(&self.base) => {
                    page = self.get(loc).await;
                }
                _ => return page,
            }
        }
        page
    }

    /// Step 1: mobile number and proof of work, solved as the page's script does.
    pub async fn submit_phone(&self, step: &Page, mobile: &str) -> Page {
        let challenge = step.input("pow_challenge").expect("challenge");
        let nonce = idp::crypto::pow::solve(&challenge);
        self.submit_phone_with(step, mobile, &challenge, &nonce)
            .await
    }

    pub async fn submit_phone_with(
        &self,
        step: &Page,
        mobile: &str,
        challenge: &str,
        nonce: &str,
    ) -> Page {
        let tx = step.tx_path().expect("a login form");
        let csrf = step.input("csrf").expect("csrf");
        self.post(
            &format!("{tx}/phone"),
            &[
                ("csrf", &csrf),
                ("mobile", mobile),
                ("pow_challenge", challenge),
                ("pow_nonce", nonce),
            ],
        )
        .await
    }

    pub async fn submit_otp(&self, step: &Page, code: &str) -> Page {
        let tx = step.tx_path().expect("a login form");
        let csrf = step.input("csrf").expect("csrf");
        self.post(&format!("{tx}/otp"), &[("csrf", &csrf), ("code", code)])
            .await
    }

    pub async fn submit_identity(&self, step: &Page, nid: &str, birth: &str) -> Page {
        let tx = step.tx_path().expect("a login form");
        let csrf = step.input("csrf").expect("csrf");
        self.post(
            &format!("{tx}/identity"),
            &[("csrf", &csrf), ("national_id", nid), ("birth_date", birth)],
        )
        .await
    }

    pub async fn submit_consent(&self, step: &Page, decision: &str) -> Page {
        let tx = step.tx_path().expect("a login form");
        let csrf = step.input("csrf").expect("csrf");
        self.post(
            &format!("{tx}/consent"),
            &[("csrf", &csrf), ("decision", decision)],
        )
        .await
    }

    /// Walks the whole emta flow from an authorization URL to the consent page.
    pub async fn verify_to_consent(
        &self,
        app: &TestApp,
        auth_url: &str,
        who: &FixtureCitizen,
    ) -> Page {
        let phone = self.follow(self.get(auth_url).await).await;
        self.verify_from(app, phone, who).await
    }

    /// From the phone page to the consent page (or the client, if consent is remembered).
    pub async fn verify_from(&self, app: &TestApp, phone: Page, who: &FixtureCitizen) -> Page {
        assert_eq!(phone.status, 200, "phone page: {}", phone.body);
        let otp = self
            .follow(self.submit_phone(&phone, &who.mobile).await)
            .await;
        assert_eq!(otp.status, 200, "otp page: {}", otp.body);
        let code = app.latest_code_for(&who.mobile).await.expect("an SMS code");
        let identity = self.follow(self.submit_otp(&otp, &code).await).await;
        assert_eq!(identity.status, 200, "identity page: {}", identity.body);
        self.follow(
            self.submit_identity(&identity, &who.national_id, &who.birth_date)
                .await,
        )
        .await
    }
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// A PKCE pair and a minimal authorization URL, for tests that do not need the RP crate.
pub struct RawAuth {
    pub url: String,
    pub verifier: String,
    pub state: String,
}

pub fn raw_auth(app: &TestApp, client: &RegisteredClient, extra: &str) -> RawAuth {
    let verifier = idp::crypto::random_token(32);
    let challenge = idp::crypto::b64(&idp::crypto::sha256(verifier.as_bytes()));
    let state = idp::crypto::random_token(8);
    let nonce = idp::crypto::random_token(8);
    let url = format!(
        "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile%20phone%20national_id&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256{extra}",
        app.base,
        client.id,
        urlencode(&client.redirect_uri),
    );
    RawAuth {
        url,
        verifier,
        state,
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Exchanges a code at the token endpoint with client_secret_post; returns status and JSON.
pub async fn exchange(
    app: &TestApp,
    client: &RegisteredClient,
    code: &str,
    verifier: &str,
) -> (u16, serde_json::Value) {
    let resp = app
        .http()
        .post(app.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri),
            ("code_verifier", verifier),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ])
        .send()
        .await
        .expect("token");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or_default(),
    )
}

/// Signs in (or uses the browser's SSO session), consents if asked, and returns the code.
pub async fn login_code(
    app: &TestApp,
    browser: &Browser,
    client: &RegisteredClient,
    who: &FixtureCitizen,
) -> (String, RawAuth) {
    let auth = raw_auth(app, client, "");
    let mut page = browser.follow(browser.get(&auth.url).await).await;
    if page.body.contains("name=\"mobile\"") {
        page = browser.verify_from(app, page, who).await;
    }
    if page.body.contains("name=\"decision\"") {
        page = browser.submit_consent(&page, "approve").await;
    }
    let loc = page.location.clone().expect("redirect to client");
    assert!(loc.starts_with(&client.redirect_uri), "{loc}");
    let code = query_of(&loc).get("code").cloned().expect("code");
    (code, auth)
}

/// Registers one test per backend: `both!(name)` runs `name(Backend)` on each.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Embedded).await })*
        }
        mod postgres_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Servers).await })*
        }
    };
}
