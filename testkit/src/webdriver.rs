//! A real browser for end-to-end tests: headless Chromium driven over WebDriver
//! (chromedriver). `.ci/run` installs Debian's `chromium` and `chromium-driver`;
//! `EMTA_CHROMIUM` and `EMTA_CHROMEDRIVER` point elsewhere.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
    _profile: crate::servers::TempDir,
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
    /// Starts chromedriver and a headless Chromium session with a window `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Self {
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
        let profile = crate::servers::TempDir::new("emta-chromium").expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display()), format!("--window-size={width},{height}")]
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

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    pub async fn find(&self, css: &str) -> String {
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

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            json!({}),
        )
        .await;
    }

    pub async fn wait_enabled(&self, css: &str) {
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

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot of the page as `dir/name` (PNG); the path.
    pub async fn screenshot_to(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        let path = dir.join(name);
        if let Some(bytes) = png.as_str().and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        }) {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(&path, bytes);
        }
        path
    }

    /// Runs `script` in the page (WebDriver "execute script": its `return` value).
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Lays the page out as on a screen `width` CSS pixels wide (Chrome's device metrics
    /// override, which a desktop window's minimum width does not limit), then reloads
    /// nothing: the layout follows at once.
    pub async fn emulate_width(&self, width: u32, height: u32) {
        let url = format!("{}/session/{}/goog/cdp/execute", self.base, self.session);
        let _ = self
            .http
            .post(url)
            .json(&json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }
            }))
            .send()
            .await;
    }

    /// Resizes the window to `width` x `height` CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }
}
