//! Discovery, keys, headers, cookies, health, metrics, and what the logs must not say.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use crate::both;
use crate::helpers::{
    exchange, login_code, spawn_app, start_replica, try_start_replica, Backend, Browser, Options,
};

async fn discovery_and_jwks_describe_the_provider(backend: Backend) {
    let app = spawn_app(backend).await;
    let d: serde_json::Value = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(d["issuer"], app.base.as_str());
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    for k in [
        "revocation_endpoint",
        "introspection_endpoint",
        "end_session_endpoint",
        "userinfo_endpoint",
    ] {
        assert!(
            d[k].as_str().is_some_and(|u| u.starts_with(&app.base)),
            "{k}"
        );
    }
    let scopes = d["scopes_supported"].to_string();
    assert!(scopes.contains("national_id") && scopes.contains("phone"));
    let jwks: serde_json::Value = app.get_json("/jwks").await;
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["alg"].as_str()).collect())
        .unwrap_or_default();
    assert!(algs.contains(&"ES256") && algs.contains(&"RS256"));
    for k in jwks["keys"].as_array().into_iter().flatten() {
        assert!(k.get("d").is_none(), "no private parts in JWKS");
    }
}

async fn key_rotation_publishes_the_next_key_before_it_signs(backend: Backend) {
    let app = spawn_app(backend).await;
    let kid_of = |t: &str| -> String {
        let header = t.split('.').next().unwrap_or_default();
        let bytes = idp::crypto::b64_decode(header).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()["kid"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let c = app.client("saipa");
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, c, &app.citizens[0]).await;
    let (_, t) = exchange(&app, c, &code, &auth.verifier).await;
    let old_kid = kid_of(t["id_token"].as_str().unwrap_or_default());

    let next = idp::keys::rotate(
        &app.core.db,
        &app.core.keys,
        idp::domain::SigningAlg::ES256,
        idp::now(),
        2,
        600,
    )
    .await
    .expect("rotate");
    app.core.reload().await.expect("reload");
    let jwks = app.core.keys.jwks().to_string();
    assert!(
        jwks.contains(&next.kid) && jwks.contains(&old_kid),
        "both published"
    );
    let (code, auth) = login_code(&app, &b, c, &app.citizens[0]).await;
    let (_, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(
        kid_of(t["id_token"].as_str().unwrap_or_default()),
        old_kid,
        "not yet"
    );

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    app.core.reload().await.expect("reload");
    let (code, auth) = login_code(&app, &b, c, &app.citizens[0]).await;
    let (_, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(
        kid_of(t["id_token"].as_str().unwrap_or_default()),
        next.kid,
        "the new key signs"
    );
    assert!(
        app.core.keys.jwks().to_string().contains(&old_kid),
        "old key kept for its tokens"
    );
}

async fn pages_carry_strict_headers_and_cookies(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = Browser::new(&app.base);
    let auth = crate::helpers::raw_auth(&app, app.client("saipa"), "");
    let first = b.get(&auth.url).await;
    let cookie = first
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let page = b.follow(first).await;
    let h = &page.headers;
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(
        h.get("x-frame-options").and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert_eq!(
        h.get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert_eq!(
        h.get("referrer-policy").and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    assert_eq!(
        h.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(page.body.contains("dir=\"rtl\"") && page.body.contains("lang=\"fa\""));
    let hinted = crate::helpers::raw_auth(&app, app.client("saipa"), "&login_hint=09121234567");
    let b2 = Browser::new(&app.base);
    let page = b2.follow(b2.get(&hinted.url).await).await;
    assert_eq!(
        page.input("mobile").as_deref(),
        Some("09121234567"),
        "login_hint prefills the mobile number"
    );
    let en = crate::helpers::raw_auth(&app, app.client("saipa"), "&ui_locales=en");
    let page = b.follow(b.get(&en.url).await).await;
    assert!(page.body.contains("dir=\"ltr\""), "English on request");
}

/// A replica whose every SQL connection is in use is busy, not unready: readiness that
/// failed under load would take it out of its Service and send its load to the others
/// (issue 33). Its probe answers within the kubelet's timeout either way.
async fn a_replica_with_every_connection_in_use_is_busy_not_unready(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| {
                s.storage.db_max_connections = 2;
                s.db_acquire_ms = 300;
            }),
        },
    )
    .await;
    let http = app.http();
    let ready = || async {
        let r = http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("get");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    assert_eq!(ready().await, (200, "ready".to_owned()));
    let pool = app.core.db.pool();
    let mut held = Vec::new();
    while held.len() < 2 {
        held.push(pool.acquire().await.expect("a connection"));
    }
    // Past the second the last answer is kept for.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("busy: database"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(ready().await, (200, "ready".to_owned()));
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = app.http();
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http.get(format!("{}{path}", app.base))
                .send()
                .await
                .expect("get")
                .status(),
            200,
            "{path}"
        );
    }
    login_code(
        &app,
        &Browser::new(&app.base),
        app.client("saipa"),
        &app.citizens[1],
    )
    .await;
    let public = http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(public.status(), 404, "not on the public listener");
    let m = http
        .get(&app.metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    for needle in [
        "emta_login_step_total",
        "step=\"identity\"",
        "outcome=\"started\"",
        "emta_login_step_seconds",
    ] {
        assert!(m.contains(needle), "{needle}");
    }
}

/// Over https the session cookie is `__Host-emta_sso` (Secure, Path=/, no Domain); signing
/// out must delete it with those attributes, or browsers refuse the deletion and the
/// session cookie stays.
async fn signing_out_deletes_the_host_cookie_with_its_attributes(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| s.issuer = "https://login.emta.test".into()),
        },
    )
    .await;
    let r = app
        .http()
        .get(format!("{}/logout", app.base))
        .header("cookie", "__Host-emta_sso=anything")
        .send()
        .await
        .expect("logout");
    let deletion = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-emta_sso="))
        .unwrap_or_default()
        .to_owned();
    assert!(deletion.contains("Max-Age=0"), "{deletion}");
    assert!(
        deletion.contains("Secure") && deletion.contains("Path=/") && !deletion.contains("Domain"),
        "{deletion}"
    );
}

/// Issue 11: ID-token signing keys are sealed in SQL under a key-encryption key that is
/// not there: a dump cannot sign. Moving to a key-encryption key of its own (from a secret
/// store) seals them again at the next start; a replica without it cannot open them and
/// refuses to start, saying why.
async fn signing_keys_are_sealed_at_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.core.db.signing_keys().await.expect("keys");
    assert!(before.len() >= 2);
    for k in &before {
        assert!(
            k.private_der.starts_with("sealed:v1:"),
            "{} is sealed",
            k.kid
        );
        assert!(idp::crypto::b64_decode(&k.private_der).is_none());
    }
    let kek = idp::crypto::random_token(32);
    let with_kek = Options {
        settings: Box::new(move |s| {
            s.key_encryption_key = idp::config::Secret::new(kek.clone());
        }),
    };
    let replica = start_replica(&app.deployment, &with_kek).await;
    let after = replica.core.db.signing_keys().await.expect("keys");
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.kid, b.kid);
        assert_ne!(
            a.private_der, b.private_der,
            "sealed again under the new KEK"
        );
    }
    // It signs with them: a login through the replica gives a verifiable ID token.
    let jwks = replica.core.keys.jwks().to_string();
    assert!(before.iter().all(|k| jwks.contains(&k.kid)));
    let without = try_start_replica(&app.deployment, &Options::default()).await;
    let err = without.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("key-encryption key"), "{err}");
}

/// A signing key planted in the database without the seal (by someone with the service's
/// database role) is never published, never signs and is not adopted by sealing it at the
/// next start (issue 32, point 11). First failure: its kid was in the JWKS.
async fn an_unsealed_signing_key_row_is_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = idp::now();
    let planted = idp::keys::generate(idp::domain::SigningAlg::ES256, now, now).expect("a key");
    app.core
        .db
        .add_signing_key(&planted, None)
        .await
        .expect("plant");
    app.core.reload().await.expect("reload");
    assert!(
        !app.core.keys.jwks().to_string().contains(&planted.kid),
        "an unsealed key is published"
    );
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[2]).await;
    let (status, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200, "{t}");
    let header =
        jsonwebtoken::decode_header(t["id_token"].as_str().unwrap_or_default()).expect("a JWT");
    assert_ne!(
        header.kid.as_deref(),
        Some(planted.kid.as_str()),
        "it signed"
    );
    let replica = start_replica(&app.deployment, &Options::default()).await;
    let rows = replica.core.db.signing_keys().await.expect("keys");
    let row = rows
        .iter()
        .find(|k| k.kid == planted.kid)
        .expect("still there");
    assert!(!row.private_der.starts_with("sealed:"), "adopted at start");
    assert!(!replica.core.keys.jwks().to_string().contains(&planted.kid));
}

both!(
    an_unsealed_signing_key_row_is_ignored,
    signing_keys_are_sealed_at_rest,
    signing_out_deletes_the_host_cookie_with_its_attributes,
    discovery_and_jwks_describe_the_provider,
    key_rotation_publishes_the_next_key_before_it_signs,
    pages_carry_strict_headers_and_cookies,
    health_readiness_and_metrics_answer,
    a_replica_with_every_connection_in_use_is_busy_not_unready,
);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .try_init();
        logs
    })
    .clone()
}

/// Secrets, OTPs and national IDs never appear in logs, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_codes_secrets_or_national_ids() {
    let logs = capture_logs();
    let app = spawn_app(Backend::Servers).await;
    let who = app.citizens[9].clone();
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &who).await;
    let otp = app.latest_code_for(&who.mobile).await.expect("otp");
    let (_, tokens) = exchange(&app, c, &code, &auth.verifier).await;
    let text =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).to_string();
    assert!(text.contains("verification code sent"), "logging is on");
    for secret in [
        who.national_id.as_str(),
        &who.mobile[1..],
        otp.as_str(),
        code.as_str(),
        c.secret.as_str(),
        tokens["access_token"].as_str().unwrap_or("-"),
        tokens["refresh_token"].as_str().unwrap_or("-"),
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
    // A masked phone shows the operator and two more digits, nothing near enough to find
    // the number.
    let shown = text
        .split_whitespace()
        .find(|w| w.contains("***"))
        .map(without_ansi)
        .expect("the phone is logged masked");
    let digits = shown.chars().filter(char::is_ascii_digit).count();
    assert!(digits <= 6, "{shown}: {digits} digits");
}

/// A log word without its terminal colour codes (`ESC [ … m`).
fn without_ansi(word: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in word.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
