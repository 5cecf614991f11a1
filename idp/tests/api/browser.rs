//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! walks the citizen pages as a person would, including the proof of work that the page's
//! own JavaScript solves. `.ci/run` installs Debian's `chromium` and `chromium-driver`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{query_of, raw_auth, spawn_app, Backend};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
    _profile: testkit::servers::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit the Chromium it started; killing only
        // chromedriver would leave the browser running after the test.
        let addr = self.base.trim_start_matches("http://");
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let driver =
            std::env::var("EMTA_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium =
            std::env::var("EMTA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&driver).exists() && std::path::Path::new(&chromium).exists(),
            "Chromium and chromedriver are needed: apt-get install chromium chromium-driver (.ci/run does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = testkit::servers::TempDir::new("emta-chromium").expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display()), "--window-size=412,900"]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Self {
            child,
            http,
            base,
            session,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = self.http.request(method.clone(), url);
        let req = if method == reqwest::Method::GET {
            req
        } else {
            req.json(&body)
        };
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        for _ in 0..50 {
            let v = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css}: {}", self.source().await);
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        )
        .await;
    }

    async fn wait_enabled(&self, css: &str) {
        let el = self.find(css).await;
        for _ in 0..200 {
            if self
                .call(
                    reqwest::Method::GET,
                    &format!("/element/{el}/enabled"),
                    json!({}),
                )
                .await
                == json!(true)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} never became enabled (proof of work did not finish)");
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        if let Some(bytes) = png.as_str().and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        }) {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(name), bytes);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_signs_in_with_a_real_browser() {
    // Arrange: the proof of work at a difficulty the page's script has to work for.
    let app = crate::helpers::spawn_app_with(
        Backend::Embedded,
        crate::helpers::Options {
            settings: Box::new(|s| s.pow_difficulty = 12),
        },
    )
    .await;
    let _ = spawn_app; // the plain helper is used by the other modules
    let who = app.citizens[0].clone();
    let c = app.client("saipa");
    let auth = raw_auth(&app, c, "");
    let browser = Driver::start().await;

    // Act: the four pages.
    browser.goto(&auth.url).await;
    browser.type_into("#mobile", &who.mobile).await;
    browser
        .wait_enabled("form[data-pow] button[type=submit]")
        .await;
    browser.screenshot("1-phone.png").await;
    browser.click("form[data-pow] button[type=submit]").await;
    browser.find("#code").await;
    let code = app.latest_code_for(&who.mobile).await.expect("an SMS code");
    browser
        .type_into("#code", &idp::domain::digits::to_persian_digits(&code))
        .await;
    browser.click("form[action$='/otp'] button").await;
    browser.type_into("#national_id", &who.national_id).await;
    browser.type_into("#birth_date", &who.birth_date).await;
    browser.click("form[action$='/identity'] button").await;
    browser.find("button[value=approve]").await;
    browser.screenshot("2-consent.png").await;
    browser.click("button[value=approve]").await;

    // Assert: the browser was sent back to the storefront with a code.
    let mut url = String::new();
    for _ in 0..50 {
        url = browser.url().await;
        if url.starts_with(&c.redirect_uri) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = query_of(&url);
    assert!(
        q.contains_key("code"),
        "back at the storefront with a code: {url}"
    );
    assert_eq!(q.get("state"), Some(&auth.state));
    let (status, _) = crate::helpers::exchange(&app, c, &q["code"], &auth.verifier).await;
    assert_eq!(status, 200);
}
