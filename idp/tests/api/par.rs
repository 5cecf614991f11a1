//! Pushed Authorization Requests (RFC 9126, issue 32): a manufacturer's back end pushes
//! the authorization request over its authenticated channel and the browser carries only
//! a `request_uri`, once; the ministry may require it per client.

use crate::both;
use crate::helpers::{exchange, query_of, spawn_app, Backend, Browser, Steps as _, TestApp};

/// Pushes an authorization request as `client` (client_secret_basic): status and JSON.
async fn push(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    params: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let r = app
        .http()
        .post(format!("{}/par", app.base))
        .basic_auth(client_id, Some(secret))
        .form(params)
        .send()
        .await
        .expect("par");
    let status = r.status().as_u16();
    if status == 201 {
        assert_eq!(
            r.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
    (status, r.json().await.unwrap_or_default())
}

struct Pushed {
    request_uri: String,
    verifier: String,
    state: String,
}

async fn push_saipa(app: &TestApp) -> Pushed {
    let c = app.client("saipa");
    let verifier = idp::crypto::random_token(32);
    let challenge = idp::crypto::b64(&idp::crypto::sha256(verifier.as_bytes()));
    let state = idp::crypto::random_token(8);
    let (status, body) = push(
        app,
        &c.id,
        &c.secret,
        &[
            ("response_type", "code"),
            ("redirect_uri", &c.redirect_uri),
            ("scope", "openid profile phone"),
            ("state", &state),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 60);
    let request_uri = body["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    Pushed {
        request_uri,
        verifier,
        state,
    }
}

fn authorize_url(app: &TestApp, client_id: &str, request_uri: &str) -> String {
    format!(
        "{}/authorize?client_id={client_id}&request_uri={}",
        app.base,
        crate::helpers::urlencode(request_uri)
    )
}

async fn a_pushed_request_signs_in_with_only_a_request_uri_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let pushed = push_saipa(&app).await;
    let b = Browser::new(&app.base);
    let url = authorize_url(&app, &c.id, &pushed.request_uri);
    let page = b.verify_to_consent(&app, &url, &app.citizens[0]).await;
    let back = b.submit_consent(&page, "approve").await;
    let to = back.location.clone().expect("back to the client");
    assert!(to.starts_with(&c.redirect_uri), "{to}");
    let q = query_of(&to);
    assert_eq!(q.get("state"), Some(&pushed.state), "the pushed state");
    let code = q.get("code").expect("code");
    let (status, tokens) = exchange(&app, c, code, &pushed.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string());
    // Once: the same request_uri again is over.
    let again = Browser::new(&app.base).get(&url).await;
    assert_eq!(again.status, 400, "{}", again.body);
    // Another client's id with a pushed request_uri: refused, and the request stays its
    // own client's (whoever saw the request_uri cannot spend it).
    let other = push_saipa(&app).await;
    let stolen = Browser::new(&app.base)
        .get(&authorize_url(&app, "iran-khodro", &other.request_uri))
        .await;
    assert_eq!(stolen.status, 400, "{}", stolen.body);
    let after = Browser::new(&app.base)
        .get(&authorize_url(&app, &c.id, &other.request_uri))
        .await;
    assert_eq!(after.status, 303, "still its own client's: {}", after.body);
}

async fn pushing_needs_the_client_and_a_valid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let good = [
        ("response_type", "code"),
        ("redirect_uri", c.redirect_uri.as_str()),
        ("scope", "openid"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ];
    let (status, body) = push(&app, &c.id, "wrong-secret", &good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let mut bad_uri = good.to_vec();
    bad_uri[1] = ("redirect_uri", "https://evil.example/cb");
    let (status, body) = push(&app, &c.id, &c.secret, &bad_uri).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut nested = good.to_vec();
    nested.push(("request_uri", "urn:ietf:params:oauth:request_uri:x"));
    let (status, body) = push(&app, &c.id, &c.secret, &nested).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut other = good.to_vec();
    other.push(("client_id", "iran-khodro"));
    let (status, body) = push(&app, &c.id, &c.secret, &other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let mut no_pkce = good.to_vec();
    no_pkce.retain(|(k, _)| !k.starts_with("code_challenge"));
    let (status, body) = push(&app, &c.id, &c.secret, &no_pkce).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // An unknown request_uri at authorize: an error page, never a redirect.
    let r = Browser::new(&app.base)
        .get(&authorize_url(
            &app,
            &c.id,
            "urn:ietf:params:oauth:request_uri:nothing",
        ))
        .await;
    assert_eq!(r.status, 400);
}

async fn the_ministry_can_require_pushed_requests_of_a_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    idp::admin::set_par(&app.core.db, &c.id, true, "test", service_kit::clock::now())
        .await
        .expect("required");
    let direct = crate::helpers::raw_auth(&app, c, "");
    let mut to = String::new();
    for _ in 0..20 {
        let r = Browser::new(&app.base).get(&direct.url).await;
        to = r.location.clone().unwrap_or_default();
        if to.contains("error=invalid_request") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        to.starts_with(&c.redirect_uri) && to.contains("error=invalid_request"),
        "a direct request is refused once the policy is loaded: {to}"
    );
    let pushed = push_saipa(&app).await;
    let b = Browser::new(&app.base);
    let page = b
        .follow(
            b.get(&authorize_url(&app, &c.id, &pushed.request_uri))
                .await,
        )
        .await;
    assert!(page.body.contains("name=\"mobile\""), "{}", page.body);
    let discovery: serde_json::Value = app
        .http()
        .get(format!("{}/.well-known/openid-configuration", app.base))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(
        discovery["pushed_authorization_request_endpoint"],
        format!("{}/par", app.base)
    );
    assert_eq!(discovery["require_pushed_authorization_requests"], false);
}

/// What a push stores is bounded by its client's own push budget, 503 with Retry-After
/// past it, and moves nothing that other clients or citizens share (issue 32, the review
/// of PAR in emta's storefronts): a storefront pushes for every visitor before anyone
/// paid a proof of work, so a flood of visits must spend neither the deployment's cap on
/// stored logins (nor so raise everyone's proof of work) nor the client's login share.
/// Before, each push counted against both.
async fn pushes_are_bounded_by_the_clients_share(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| {
                s.pushes_per_client_rps = 3;
                s.logins_per_client_rps = 3;
                s.max_live_logins = 4;
            }),
        },
    )
    .await;
    let c = app.client("saipa");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, _) = push(
            &app,
            &c.id,
            &c.secret,
            &[
                ("response_type", "code"),
                ("redirect_uri", &c.redirect_uri),
                ("scope", "openid"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
        statuses.push(status);
    }
    assert!(
        statuses.iter().filter(|s| **s == 201).count() <= 6,
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "{statuses:?}");
    let live = app
        .core
        .limiter
        .count(idp::flow::limits::Subject::LiveLogins)
        .await
        .expect("count");
    assert_eq!(live, 0, "pushes spent the deployment's live-login cap");
    // Saipa's citizens still sign in: its login share is untouched by its pushes.
    let b = Browser::new(&app.base);
    let page = b
        .follow(b.get(&crate::helpers::raw_auth(&app, c, "").url).await)
        .await;
    let r = b.submit_phone(&page, &app.citizens[3].mobile).await;
    assert_eq!(r.status, 303, "{}", r.body);
}

both!(
    pushes_are_bounded_by_the_clients_share,
    a_pushed_request_signs_in_with_only_a_request_uri_once,
    pushing_needs_the_client_and_a_valid_request,
    the_ministry_can_require_pushed_requests_of_a_client,
);
