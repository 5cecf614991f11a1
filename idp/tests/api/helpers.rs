//! Test harness: starts the real IdP on port 0 with a fresh database (a SQLite file, or a
//! new PostgreSQL database) and an ephemeral store (in-process, or real Redis under a
//! unique prefix), plus the stub civil registry / ownership / SMS services over HTTP.
//!
//! PostgreSQL and Redis come from `EMTA_TEST_POSTGRES_URL` and `EMTA_TEST_REDIS_URL`
//! (`.ci/run` starts throwaway servers and sets them); without them the tests use the
//! servers on the default local ports.

use std::collections::HashMap;

use idp::admin::{self, NewClient};
use idp::domain::SigningAlg;
use idp::{Application, Settings};
use reqwest::redirect::Policy;
use testkit::servers::TempDir;
use testkit::{generate_citizens, login, FixtureCitizen, StubServices};
use tokio::sync::oneshot;

pub use testkit::{Backend, Browser, Page};

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
    /// The private listener's `/metrics`.
    pub metrics_url: String,
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
    let stub_url = stub.start().await;
    let db = backend.database("idp").await;
    let deployment = Deployment {
        database_url: db.url,
        redis_url: backend.redis_url(),
        redis_prefix: testkit::servers::redis_prefix(),
        secret_key: idp::crypto::random_token(32),
        stub_url,
        stub,
    };
    let mut app = start_replica(&deployment, &options).await;
    app.citizens = citizens;
    app._tmp = db.dir;
    app.clients = register_clients(&app).await;
    app.core.reload().await.expect("reload");
    app
}

/// Starts one more replica of the same deployment (same SQL, Redis and secret).
pub async fn start_replica(d: &Deployment, options: &Options) -> TestApp {
    try_start_replica(d, options).await.expect("build app")
}

/// As [`start_replica`], with the reason it would not start.
pub async fn try_start_replica(d: &Deployment, options: &Options) -> anyhow::Result<TestApp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut s = Settings::defaults();
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
    // The tests' manufacturers (logout receivers, JWKS servers) listen on the loopback.
    s.allow_private_callbacks = true;
    s.reload_ms = 200;
    s.metrics_listen = Some(([127, 0, 0, 1], 0).into());
    (options.settings)(&mut s);
    let app = Application::build_with_listener(s, listener).await?;
    let core = app.core();
    let metrics_url = format!(
        "http://{}/metrics",
        app.metrics_addr().expect("metrics listener")
    );
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Ok(TestApp {
        base: format!("http://localhost:{}", addr.port()),
        metrics_url,
        stub: d.stub.clone(),
        citizens: Vec::new(),
        clients: HashMap::new(),
        core,
        deployment: d.clone(),
        stop: Some(tx),
        _tmp: None,
    })
}

async fn register_clients(app: &TestApp) -> HashMap<&'static str, RegisteredClient> {
    let mut out = HashMap::new();
    // Saipa and Iran Khodro may read the national ID, each with its own pairwise sector;
    // Modiran is registered as a new manufacturer is by default (no national ID).
    const ALL: &[&str] = &["profile", "phone", "national_id"];
    // Iran Khodro may also keep access while the citizen is signed out.
    const OFFLINE: &[&str] = &["profile", "phone", "national_id", "offline_access"];
    for (key, id, name, name_fa, stars, alg, scopes, sector) in [
        (
            "saipa",
            "saipa",
            "Saipa",
            "سایپا",
            4,
            SigningAlg::ES256,
            ALL,
            Some("saipa.ir"),
        ),
        (
            "ikco",
            "iran-khodro",
            "Iran Khodro",
            "ایران خودرو",
            5,
            SigningAlg::RS256,
            OFFLINE,
            Some("ikco.ir"),
        ),
        (
            "modiran",
            "modiran",
            "Modiran",
            "مدیران",
            3,
            SigningAlg::ES256,
            admin::DEFAULT_SCOPES,
            None,
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
                allowed_scopes: scopes.iter().map(|s| s.to_string()).collect(),
                subject_type: idp::domain::SubjectType::Pairwise,
                sector_identifier: sector.map(str::to_owned),
                backchannel_logout_uri: None,
                private_key_jwt: None,
                private_callbacks: true,
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
        self.stub.registry_calls()
    }

    pub fn client(&self, key: &str) -> &RegisteredClient {
        &self.clients[key]
    }

    pub async fn latest_code_for(&self, mobile: &str) -> Option<String> {
        self.stub.outbox.latest_code(mobile)
    }

    /// Live keys in this deployment's ephemeral store: the in-process map's entries, or
    /// the Redis keys under the deployment's prefix.
    pub async fn ephemeral_keys(&self) -> usize {
        if let Some(n) = self.core.eph.entries() {
            return n;
        }
        let client = redis::Client::open(self.deployment.redis_url.as_str()).expect("redis url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let pattern = format!("{}:*", self.deployment.redis_prefix);
        let mut cursor = 0u64;
        let mut n = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut c)
                .await
                .expect("scan");
            n += keys.len();
            if next == 0 {
                return n;
            }
            cursor = next;
        }
    }

    /// One of the provider's JSON documents (`/.well-known/openid-configuration`,
    /// `/jwks`), as a relying party fetches it.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
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

/// The IdP's login steps as methods of the test browser, one hop each (tests look at
/// each answer), over the one walk in `testkit::login`.
#[allow(async_fn_in_trait)]
pub trait Steps {
    async fn submit_phone(&self, step: &Page, mobile: &str) -> Page;
    async fn submit_phone_with(
        &self,
        step: &Page,
        mobile: &str,
        challenge: &str,
        nonce: &str,
    ) -> Page;
    async fn submit_otp(&self, step: &Page, code: &str) -> Page;
    async fn submit_identity(&self, step: &Page, nid: &str, birth: &str) -> Page;
    async fn submit_consent(&self, step: &Page, decision: &str) -> Page;
    /// Walks the whole emta flow from an authorization URL to the consent page.
    async fn verify_to_consent(&self, app: &TestApp, auth_url: &str, who: &FixtureCitizen) -> Page;
    /// From the phone page to the consent page (or the client, if consent is remembered).
    async fn verify_from(&self, app: &TestApp, phone: Page, who: &FixtureCitizen) -> Page;
}

impl Steps for Browser {
    async fn submit_phone(&self, step: &Page, mobile: &str) -> Page {
        login::phone(self, step, mobile).await
    }

    async fn submit_phone_with(
        &self,
        step: &Page,
        mobile: &str,
        challenge: &str,
        nonce: &str,
    ) -> Page {
        login::phone_with(self, step, mobile, challenge, nonce).await
    }

    async fn submit_otp(&self, step: &Page, code: &str) -> Page {
        login::otp(self, step, code).await
    }

    async fn submit_identity(&self, step: &Page, nid: &str, birth: &str) -> Page {
        login::identity(self, step, nid, birth).await
    }

    async fn submit_consent(&self, step: &Page, decision: &str) -> Page {
        login::consent(self, step, decision).await
    }

    async fn verify_to_consent(&self, app: &TestApp, auth_url: &str, who: &FixtureCitizen) -> Page {
        let phone = self.follow(self.get(auth_url).await).await;
        self.verify_from(app, phone, who).await
    }

    async fn verify_from(&self, app: &TestApp, phone: Page, who: &FixtureCitizen) -> Page {
        login::verify(self, phone, who, &app.stub.outbox).await
    }
}

/// A new login at Saipa in `b`, with `mobile` submitted: the code's page.
pub async fn otp_page(app: &TestApp, b: &Browser, mobile: &str) -> Page {
    let auth = raw_auth(app, app.client("saipa"), "");
    let phone = b.follow(b.get(&auth.url).await).await;
    b.follow(b.submit_phone(&phone, mobile).await).await
}

/// As [`otp_page`], with the code sent entered: the identity step's page.
pub async fn identity_page(app: &TestApp, b: &Browser, mobile: &str) -> Page {
    let otp = otp_page(app, b, mobile).await;
    let code = app.latest_code_for(mobile).await.expect("code");
    b.follow(b.submit_otp(&otp, &code).await).await
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
