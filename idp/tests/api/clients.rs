//! What the ministry allows each manufacturer (issue 11, hole 7, and client authentication):
//! pairwise subjects per sector, scopes per client, secret rotation with an overlap.

use serde_json::Value;

use crate::both;
use crate::helpers::{
    exchange, login_code, spawn_app, Backend, Browser, RegisteredClient, Steps as _, TestApp,
};

/// The claims of a JWT we received over TLS from the IdP (signature checked elsewhere).
pub fn jwt_claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(idp::crypto::b64_decode)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

async fn userinfo(app: &TestApp, access_token: &str) -> Value {
    app.http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json")
}

/// Two manufacturers see two different `sub`s for one citizen, so they cannot join their
/// customer records by it; each sees the same one in the ID token, at userinfo and in
/// introspection, every time.
async fn each_manufacturer_sees_its_own_subject(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[20];
    let b = Browser::new(&app.base);
    let mut subs = Vec::new();
    for key in ["saipa", "ikco", "saipa"] {
        let c = app.client(key);
        let (code, auth) = login_code(&app, &b, c, who).await;
        let (status, tokens) = exchange(&app, c, &code, &auth.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let id_sub = jwt_claims(tokens["id_token"].as_str().unwrap_or_default())["sub"].clone();
        let access = tokens["access_token"].as_str().unwrap_or_default();
        assert_eq!(
            userinfo(&app, access).await["sub"],
            id_sub,
            "{key}: userinfo"
        );
        let intro: Value = app
            .http()
            .post(format!("{}/introspect", app.base))
            .basic_auth(&c.id, Some(&c.secret))
            .form(&[("token", access)])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json");
        assert_eq!(intro["sub"], id_sub, "{key}: introspection");
        subs.push(id_sub.as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(subs[0], subs[2], "stable for one manufacturer");
    assert_ne!(subs[0], subs[1], "different across manufacturers");
    let citizen = app
        .core
        .db
        .citizen_by_national_id(&idp::domain::NationalId::parse(&who.national_id).expect("nid"))
        .await
        .expect("sql")
        .expect("citizen");
    assert!(
        !subs.contains(&citizen.id),
        "neither sees emta's own identifier"
    );
}

/// A manufacturer the ministry has not allowed the national ID never gets it, whatever it
/// asks: the consent screen does not offer it, and neither the ID token, userinfo nor the
/// token response's `scope` carries it.
async fn a_manufacturer_gets_only_the_scopes_it_is_allowed(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[21];
    let c = app.client("modiran");
    let b = Browser::new(&app.base);
    let auth = crate::helpers::raw_auth(&app, c, "");
    assert!(auth.url.contains("national_id"), "it asks for it");
    let mut page = b.follow(b.get(&auth.url).await).await;
    page = b.verify_from(&app, page, who).await;
    assert!(page.body.contains("name=\"decision\""), "consent screen");
    assert!(
        !page.body.contains("کد ملی"),
        "the national ID is not offered"
    );
    let back = b.submit_consent(&page, "approve").await;
    let loc = back.location.expect("redirect");
    let code = crate::helpers::query_of(&loc)
        .get("code")
        .cloned()
        .expect("code");
    let (status, tokens) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid phone profile");
    let claims = jwt_claims(tokens["id_token"].as_str().unwrap_or_default());
    assert!(claims.get("national_id").is_none(), "{claims}");
    assert!(claims.get("phone_number").is_some(), "allowed claims flow");
    let ui = userinfo(&app, tokens["access_token"].as_str().unwrap_or_default()).await;
    assert!(ui.get("national_id").is_none(), "{ui}");
}

/// An access token tells its holder nothing: no part of it decodes to the citizen's global
/// id (what a public-subject client gets as `sub`) or to anything else that two
/// manufacturers could compare to join their records (issue 32, point 5). First failure:
/// its first part was base64 JSON with `citizen_id`.
async fn an_access_token_carries_nothing_a_client_can_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[23];
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, who).await;
    let (status, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200, "{t}");
    let citizen = app
        .core
        .db
        .citizen_by_national_id(&idp::domain::NationalId::parse(&who.national_id).expect("nid"))
        .await
        .expect("db")
        .expect("the citizen");
    let at = t["access_token"].as_str().unwrap_or_default();
    let readable: String = at
        .split('.')
        .filter_map(idp::crypto::b64_decode)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    for secret in [
        citizen.id.as_str(),
        "citizen_id",
        "grant_id",
        &who.national_id,
    ] {
        assert!(
            !at.contains(secret) && !readable.contains(secret),
            "the access token shows {secret}"
        );
    }
    assert!(
        userinfo(&app, at).await.get("sub").is_some(),
        "and still works"
    );
}

/// The ministry withdraws a scope from a manufacturer: its existing grant stops releasing
/// it at once, at userinfo, in introspection and in refreshed tokens (issue 32, point 8).
/// First failure: userinfo still released `national_id` after the withdrawal.
async fn withdrawing_a_scope_stops_its_release_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[22]).await;
    let (status, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200, "{t}");
    let at = t["access_token"].as_str().unwrap_or_default().to_owned();
    assert!(userinfo(&app, &at).await.get("national_id").is_some());
    idp::admin::set_policy(
        &app.core.db,
        &c.id,
        &["profile".into(), "phone".into()],
        idp::domain::SubjectType::Pairwise,
        "test",
        service_kit::clock::now(),
    )
    .await
    .expect("policy");
    app.core.reload().await.expect("reload");
    let ui = userinfo(&app, &at).await;
    assert!(ui.get("national_id").is_none(), "userinfo: {ui}");
    assert!(
        ui.get("phone_number").is_some(),
        "what stays allowed flows: {ui}"
    );
    let intro: Value = app
        .http()
        .post(format!("{}/introspect", app.base))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(intro["scope"], "openid phone profile", "{intro}");
    let rt = t["refresh_token"].as_str().unwrap_or_default();
    let refreshed: Value = app
        .http()
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("json");
    assert_eq!(refreshed["scope"], "openid phone profile", "{refreshed}");
    let claims = jwt_claims(refreshed["id_token"].as_str().unwrap_or_default());
    assert!(claims.get("national_id").is_none(), "{claims}");
}

/// A rotated secret keeps working for the overlap the ministry gives, so the manufacturer
/// deploys the new one without an outage; a zero overlap (a leaked secret) cuts it at once.
async fn a_rotated_secret_works_until_its_overlap_ends(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("ikco");
    let cc = |secret: String| {
        let app = &app;
        let id = c.id.clone();
        async move {
            app.http()
                .post(app.token_url())
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token")
                .status()
                .as_u16()
        }
    };
    let now = idp::now();
    let keys = &app.core.keyring;
    let fresh = idp::admin::rotate_secret(&app.core.db, keys, &c.id, 3600, "test", now)
        .await
        .expect("rotate");
    app.core.reload().await.expect("reload");
    assert_eq!(cc(fresh.clone()).await, 200, "the new secret");
    assert_eq!(
        cc(c.secret.clone()).await,
        200,
        "the old one, in the overlap"
    );
    let leaked = idp::admin::rotate_secret(&app.core.db, keys, &c.id, 0, "test", now)
        .await
        .expect("rotate");
    app.core.reload().await.expect("reload");
    assert_eq!(cc(leaked).await, 200);
    assert_eq!(cc(fresh).await, 401, "cut at once");
    assert_eq!(cc(c.secret.clone()).await, 401, "older still: gone");
}

/// A manufacturer's back-channel logout endpoint, for the test: records every form it is
/// posted and answers 503 to the first `fail_first` of them.
#[derive(Clone, Default)]
struct LogoutReceiver {
    tokens: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    fail_first: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LogoutReceiver {
    async fn serve(self) -> String {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let me = self.clone();
        let app = axum::Router::new().route(
            "/bcl",
            post(
                move |axum::Form(f): axum::Form<std::collections::HashMap<String, String>>| {
                    let me = me.clone();
                    async move {
                        me.tokens
                            .lock()
                            .expect("lock")
                            .push(f.get("logout_token").cloned().unwrap_or_default());
                        let failing = me
                            .fail_first
                            .fetch_update(
                                std::sync::atomic::Ordering::SeqCst,
                                std::sync::atomic::Ordering::SeqCst,
                                |n| n.checked_sub(1),
                            )
                            .is_ok();
                        if failing {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            axum::http::StatusCode::OK
                        }
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{}/bcl", addr.port())
    }

    fn received(&self) -> Vec<String> {
        self.tokens.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize, within: std::time::Duration) -> Vec<String> {
        let start = std::time::Instant::now();
        while self.received().len() < n && start.elapsed() < within {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.received()
    }
}

/// Registers a manufacturer with a back-channel logout URI.
async fn client_with_logout_uri(app: &TestApp, id: &str, uri: &str) -> RegisteredClient {
    let redirect_uri = format!("http://localhost:9/{id}/callback");
    let (_, secret) = idp::admin::add_client(
        &app.core.db,
        &app.core.keyring,
        idp::admin::NewClient {
            id: id.into(),
            name: "Bahman".into(),
            name_fa: "بهمن".into(),
            stars: 3,
            redirect_uris: vec![redirect_uri.clone()],
            post_logout_redirect_uris: vec![],
            service_scopes: vec![],
            id_token_alg: idp::domain::SigningAlg::RS256,
            valid_days: 365,
            allowed_scopes: vec!["profile".into()],
            subject_type: idp::domain::SubjectType::Pairwise,
            sector_identifier: Some(format!("{id}.ir")),
            backchannel_logout_uri: Some(uri.into()),
            private_key_jwt: None,
            private_callbacks: true,
        },
        "test",
        idp::now(),
    )
    .await
    .expect("add client");
    app.core.reload().await.expect("reload");
    RegisteredClient {
        id: id.into(),
        secret,
        redirect_uri,
        post_logout_uri: String::new(),
    }
}

/// Checks a logout token as OIDC Back-Channel Logout 1.0 §2.6 says a client must: the
/// signature with a key of the IdP's JWKS, `typ`, `iss`, `aud`, `iat`, the event, no
/// `nonce`; returns its claims.
async fn verified_logout_token(app: &TestApp, token: &str, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = app.get_json("/jwks").await;
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("a published key");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[&app.base]);
    v.set_audience(&[client_id]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("a valid logout token")
        .claims;
    assert!(claims["events"]
        .get("http://schemas.openid.net/event/backchannel-logout")
        .is_some());
    assert!(claims.get("nonce").is_none());
    assert!(claims["iat"].as_i64().is_some_and(|t| t >= idp::now() - 60));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    claims
}

/// Issue 11, hole 5: signing out at the IdP reaches the manufacturers. Each client with a
/// grant from the session and a registered `backchannel_logout_uri` gets a signed logout
/// token naming the session (`sid`) and its own `sub`, within a second; one that answers
/// 503 gets it again; withdrawing consent at the account page sends one too.
async fn signing_out_sends_each_manufacturer_a_logout_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let bahman_rx = LogoutReceiver::default();
    bahman_rx
        .fail_first
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let bahman = client_with_logout_uri(&app, "bahman", &bahman_rx.clone().serve().await).await;
    let kerman_rx = LogoutReceiver::default();
    let kerman = client_with_logout_uri(&app, "kerman", &kerman_rx.clone().serve().await).await;
    let who = &app.citizens[22];
    let b = Browser::new(&app.base);
    let mut id_tokens = Vec::new();
    for c in [&bahman, &kerman] {
        let (code, auth) = login_code(&app, &b, c, who).await;
        let (status, tokens) = exchange(&app, c, &code, &auth.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        id_tokens.push(jwt_claims(tokens["id_token"].as_str().unwrap_or_default()));
    }
    assert!(kerman_rx.received().is_empty());

    let account = b.get("/account").await;
    let signed_out = std::time::Instant::now();
    let out = b.follow(b.post_form(&account, "/logout", &[]).await).await;
    assert_eq!(out.status, 200, "{}", out.body);

    let got = kerman_rx
        .wait_for(1, std::time::Duration::from_secs(1))
        .await;
    assert_eq!(got.len(), 1, "kerman told within a second");
    let claims = verified_logout_token(&app, &got[0], "kerman").await;
    assert_eq!(claims["sid"], id_tokens[1]["sid"], "the session");
    assert_eq!(claims["sub"], id_tokens[1]["sub"], "kerman's own sub");
    // Bahman answered 503 once: the delivery comes again after its backoff (2 s).
    let got = bahman_rx
        .wait_for(2, std::time::Duration::from_secs(6))
        .await;
    assert_eq!(got.len(), 2, "retried after a 503");
    let claims = verified_logout_token(&app, &got[1], "bahman").await;
    assert_eq!(claims["sub"], id_tokens[0]["sub"]);
    assert_ne!(claims["jti"], jwt_claims(&got[0])["jti"], "a fresh token");
    assert!(signed_out.elapsed() < std::time::Duration::from_secs(8));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        kerman_rx.received().len(),
        1,
        "an acknowledged one is not sent again"
    );

    // Withdrawing consent at the account page tells that manufacturer only.
    let b = Browser::new(&app.base);
    for c in [&bahman, &kerman] {
        let (code, auth) = login_code(&app, &b, c, who).await;
        let (status, _) = exchange(&app, c, &code, &auth.verifier).await;
        assert_eq!(status, 200);
    }
    let account = b.get("/account").await;
    let csrf = account.input("csrf").expect("csrf");
    let r = b
        .post(
            "/account/revoke",
            &[("csrf", &csrf), ("client_id", "kerman")],
        )
        .await;
    assert_eq!(r.status, 303);
    let got = kerman_rx
        .wait_for(2, std::time::Duration::from_secs(1))
        .await;
    assert_eq!(got.len(), 2, "kerman told of the withdrawn consent");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(bahman_rx.received().len(), 2, "bahman is not told");
}

/// A manufacturer whose back-channel endpoint accepts and never answers holds each of its
/// deliveries for the whole timeout (5 s): it must delay nobody else's. Before, a round
/// of deliveries waited for its slowest, so another manufacturer's logout token waited
/// behind the black hole's timeout.
async fn a_black_holed_manufacturer_delays_no_other_logout(backend: Backend) {
    let app = spawn_app(backend).await;
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_url = format!("http://{}/logout", hole.local_addr().expect("addr"));
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = hole.accept().await {
                held.lock().expect("lock").push(socket);
            }
        });
    }
    let dark = client_with_logout_uri(&app, "dark", &hole_url).await;
    let kerman_rx = LogoutReceiver::default();
    let kerman = client_with_logout_uri(&app, "kerman", &kerman_rx.clone().serve().await).await;
    // One citizen signed in to the black hole signs out: its delivery hangs.
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, &dark, &app.citizens[24]).await;
    assert_eq!(exchange(&app, &dark, &code, &auth.verifier).await.0, 200);
    let other = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &other, &kerman, &app.citizens[25]).await;
    assert_eq!(exchange(&app, &kerman, &code, &auth.verifier).await.0, 200);
    let account = b.get("/account").await;
    b.follow(b.post_form(&account, "/logout", &[]).await).await;
    for _ in 0..50 {
        if !held.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the black hole holds a delivery"
    );
    // Meanwhile another citizen signs out of Kerman: told at once.
    let account = other.get("/account").await;
    let signed_out = std::time::Instant::now();
    other
        .follow(other.post_form(&account, "/logout", &[]).await)
        .await;
    let got = kerman_rx
        .wait_for(1, std::time::Duration::from_secs(3))
        .await;
    assert_eq!(got.len(), 1, "kerman told");
    assert!(
        signed_out.elapsed() < std::time::Duration::from_millis(2500),
        "kerman told in {:?}, not after the black hole's timeout",
        signed_out.elapsed()
    );
}

/// In production the IdP calls manufacturers' endpoints only at public addresses (issue
/// 32, point 11): a back-channel logout URI on the loopback, as a registration could
/// name to reach into the IdP's own network, is never called. Before, any URI was.
async fn the_idp_calls_no_private_address_in_production(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| s.allow_private_callbacks = false),
        },
    )
    .await;
    let rx = LogoutReceiver::default();
    let inner = client_with_logout_uri(&app, "inner", &rx.clone().serve().await).await;
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, &inner, &app.citizens[26]).await;
    assert_eq!(exchange(&app, &inner, &code, &auth.verifier).await.0, 200);
    let account = b.get("/account").await;
    b.follow(b.post_form(&account, "/logout", &[]).await).await;
    let got = rx.wait_for(1, std::time::Duration::from_millis(1500)).await;
    assert!(got.is_empty(), "a loopback endpoint was called: {got:?}");
}

/// A callback the IdP would refuse to call in production is refused when it is
/// registered (issue 32, point 11): a back-channel logout URI or a `jwks_uri` on
/// `localhost` or a private address written in the URL, http or https. Before, both were
/// accepted (`http://localhost` as for a redirect URI) and then silently never called.
async fn a_private_callback_is_refused_at_registration(backend: Backend) {
    let app = spawn_app(backend).await;
    let new = |id: &str, logout: Option<&str>, keys| idp::admin::NewClient {
        id: id.into(),
        name: "Inner".into(),
        name_fa: "درونی".into(),
        stars: 3,
        redirect_uris: vec![format!("https://{id}.example/cb")],
        post_logout_redirect_uris: vec![],
        service_scopes: vec![],
        id_token_alg: idp::domain::SigningAlg::ES256,
        valid_days: 365,
        allowed_scopes: vec!["profile".into()],
        subject_type: idp::domain::SubjectType::Public,
        sector_identifier: None,
        backchannel_logout_uri: logout.map(str::to_owned),
        private_key_jwt: keys,
        private_callbacks: false,
    };
    for uri in [
        "http://localhost:9/logout",
        "https://localhost/logout",
        "https://127.0.0.1/logout",
        "https://10.0.0.7/logout",
        "https://[::1]/logout",
        "https://169.254.169.254/latest",
    ] {
        let e = idp::admin::add_client(
            &app.core.db,
            &app.core.keyring,
            new("inner", Some(uri), None),
            "test",
            idp::now(),
        )
        .await
        .map(|(c, _)| c.id)
        .expect_err(uri)
        .to_string();
        assert!(e.contains("public https"), "{uri}: {e}");
        let e = idp::admin::parse_client_keys(None, Some(&uri.replace("logout", "jwks")), false)
            .expect_err(uri)
            .to_string();
        assert!(
            e.contains("public https") || e.contains("https URL"),
            "{uri}: {e}"
        );
    }
    assert!(app
        .core
        .db
        .client(&idp::domain::ClientId::parse("inner").expect("id"))
        .await
        .expect("sql")
        .is_none());
    // A public https callback is what production registers; a local deployment may
    // still name the loopback.
    let keys = idp::admin::parse_client_keys(None, Some("https://keys.inner.example/jwks"), false)
        .expect("public keys URI");
    idp::admin::add_client(
        &app.core.db,
        &app.core.keyring,
        new("inner", Some("https://inner.example/logout"), keys),
        "test",
        idp::now(),
    )
    .await
    .expect("public callbacks");
    // Whoever parsed the keys: registration and a change of keys check the URI too.
    let loose = idp::admin::parse_client_keys(None, Some("https://10.0.0.7/jwks"), true)
        .expect("parsed as a local deployment would");
    let e = idp::admin::add_client(
        &app.core.db,
        &app.core.keyring,
        new("loose", None, loose.clone()),
        "test",
        idp::now(),
    )
    .await
    .map(|(c, _)| c.id)
    .expect_err("a private jwks_uri in production")
    .to_string();
    assert!(e.contains("public https"), "{e}");
    let e = idp::admin::set_client_keys(&app.core.db, "inner", loose, false, "test", idp::now())
        .await
        .expect_err("a private jwks_uri in production")
        .to_string();
    assert!(e.contains("public https"), "{e}");
    let mut local = new("local", Some("http://localhost:9/logout"), None);
    local.private_callbacks = true;
    idp::admin::add_client(&app.core.db, &app.core.keyring, local, "test", idp::now())
        .await
        .expect("a local deployment's loopback");
}

/// A pairwise sector taken from the redirect URIs' host is one manufacturer's alone
/// (issue 32, point 11): two manufacturers on one shared host would otherwise get the
/// same subjects for a citizen and could join their records. Registering the second, or
/// switching a legacy public client on that host to pairwise, is refused without a sector
/// of its own; a legacy client switched to pairwise has its sector written down.
async fn a_derived_pairwise_sector_is_one_manufacturers_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let new = |id: &str, uri: &str, subject: idp::domain::SubjectType, sector: Option<&str>| {
        idp::admin::NewClient {
            id: id.into(),
            name: "Shared".into(),
            name_fa: "مشترک".into(),
            stars: 3,
            redirect_uris: vec![uri.into()],
            post_logout_redirect_uris: vec![],
            service_scopes: vec![],
            id_token_alg: idp::domain::SigningAlg::ES256,
            valid_days: 365,
            allowed_scopes: vec!["profile".into()],
            subject_type: subject,
            sector_identifier: sector.map(str::to_owned),
            backchannel_logout_uri: None,
            private_key_jwt: None,
            private_callbacks: true,
        }
    };
    let add = |n: idp::admin::NewClient| {
        let app = &app;
        async move {
            idp::admin::add_client(&app.core.db, &app.core.keyring, n, "test", idp::now()).await
        }
    };
    use idp::domain::SubjectType::{Pairwise, Public};
    add(new(
        "shop-a",
        "https://platform.example/a/cb",
        Pairwise,
        None,
    ))
    .await
    .expect("the first on the host");
    let second = add(new(
        "shop-b",
        "https://platform.example/b/cb",
        Pairwise,
        None,
    ))
    .await;
    assert!(
        second
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("shop-a")),
        "{:?}",
        second.map(|(c, _)| c.id)
    );
    add(new(
        "shop-b",
        "https://platform.example/b/cb",
        Pairwise,
        Some("shop-b.example"),
    ))
    .await
    .expect("with a sector of its own");
    // Nor by naming shop-a's sector on purpose.
    let named = add(new(
        "shop-e",
        "https://e.example/cb",
        Pairwise,
        Some("platform.example"),
    ))
    .await;
    assert!(named.is_err(), "another's sector named on purpose");
    // A legacy public client on the same host cannot be switched to the shared sector.
    add(new("shop-c", "https://platform.example/c/cb", Public, None))
        .await
        .expect("public");
    let switched = idp::admin::set_policy(
        &app.core.db,
        "shop-c",
        &["profile".into()],
        Pairwise,
        "test",
        idp::now(),
    )
    .await;
    assert!(switched.is_err(), "switched onto shop-a's sector");
    // On a host of its own it can, and its sector is written down.
    add(new("shop-d", "https://d.example/cb", Public, None))
        .await
        .expect("public");
    idp::admin::set_policy(
        &app.core.db,
        "shop-d",
        &["profile".into()],
        Pairwise,
        "test",
        idp::now(),
    )
    .await
    .expect("switched");
    let d = app
        .core
        .db
        .client(&idp::domain::ClientId::parse("shop-d").expect("id"))
        .await
        .expect("sql")
        .expect("shop-d");
    assert_eq!(d.sector_identifier.as_deref(), Some("d.example"));
}

both!(
    a_private_callback_is_refused_at_registration,
    a_derived_pairwise_sector_is_one_manufacturers_alone,
    the_idp_calls_no_private_address_in_production,
    a_black_holed_manufacturer_delays_no_other_logout,
    an_access_token_carries_nothing_a_client_can_read,
    withdrawing_a_scope_stops_its_release_at_once,
    each_manufacturer_sees_its_own_subject,
    a_manufacturer_gets_only_the_scopes_it_is_allowed,
    a_rotated_secret_works_until_its_overlap_ends,
    signing_out_sends_each_manufacturer_a_logout_token,
);
