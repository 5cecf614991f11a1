//! The whole journey as a relying party sees it, using the `openidconnect` crate:
//! discovery, authorization URL, the four pages, code, token, ID token verification,
//! userinfo, refresh, revoke, logout; then a second manufacturer through SSO.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::both;
use crate::helpers::{query_of, spawn_app, Backend, Browser, Steps as _, TestApp};

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .expect("rp http client")
}

async fn rp(app: &TestApp, key: &str) -> RpClient {
    let http = rp_http();
    let meta = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.base.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery");
    let c = app.client(key);
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(c.id.clone()),
        Some(ClientSecret::new(c.secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(c.redirect_uri.clone()).expect("redirect"));
    RpClient { client, http }
}

type DiscoveredClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

struct RpClient {
    client: DiscoveredClient,
    http: openidconnect::reqwest::Client,
}

async fn full_flow_as_a_relying_party(backend: Backend) {
    // Arrange
    let app = spawn_app(backend).await;
    let who = app.citizens[0].clone();
    let saipa = rp(&app, "saipa").await;
    let browser = Browser::new(&app.base);

    // Act: authorization URL with PKCE, state and nonce.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = saipa
        .client
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
    let consent = browser
        .verify_to_consent(&app, auth_url.as_str(), &who)
        .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(
        consent.body.contains("اعطای مجوز ورود یکپارچه"),
        "consent title"
    );
    assert!(
        consent.body.contains("سایپا") && consent.body.contains("★★★★☆"),
        "name and stars"
    );
    assert!(
        consent.body.contains("کد ملی"),
        "lists the national ID claim"
    );
    let back = browser.submit_consent(&consent, "approve").await;

    // Assert: code, state and RFC 9207 iss come back.
    let loc = back.location.expect("redirect to the storefront");
    let q = query_of(&loc);
    assert_eq!(q.get("state"), Some(state.secret()));
    assert_eq!(q.get("iss"), Some(&app.base));
    let code = q.get("code").expect("code").clone();

    let tokens = saipa
        .client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&saipa.http)
        .await
        .expect("code exchange");
    let verifier_v = saipa
        .client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id_token = tokens.id_token().expect("id token");
    let claims = id_token
        .claims(&verifier_v, &nonce)
        .expect("valid ID token");
    assert_eq!(claims.issuer().as_str(), app.base);
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("urn:emta:loa:registry-verified")
    );
    let amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default();
    assert_eq!(amr, ["sms", "otp", "kba"]);
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("alg"),
        id_token.signing_key(&verifier_v).expect("key"),
    )
    .expect("at_hash");
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert_eq!(
        claims.phone_number().map(|p| p.as_str().to_owned()),
        Some(format!("+98{}", &who.mobile[1..]))
    );
    assert_eq!(claims.phone_number_verified(), Some(true));
    assert!(claims.birthdate().is_some());

    // Userinfo, GET and POST, carries national_id.
    let http = app.http();
    let ui: serde_json::Value = http
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(ui["national_id"], who.national_id.as_str());
    assert_eq!(ui["sub"], claims.subject().as_str());
    let ui_post = http
        .post(format!("{}/userinfo", app.base))
        .form(&[("access_token", tokens.access_token().secret().as_str())])
        .send()
        .await
        .expect("userinfo post");
    assert_eq!(ui_post.status(), 200);

    // Refresh rotates the refresh token.
    let rt = tokens.refresh_token().expect("refresh token").clone();
    let refreshed = saipa
        .client
        .exchange_refresh_token(&rt)
        .expect("token endpoint")
        .request_async(&saipa.http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().map(|r| r.secret()),
        Some(rt.secret())
    );
    // The auditor's view of it (the load tool's ledger): one grant for this citizen at
    // saipa, with exactly one live refresh token after the rotation.
    let audit = app
        .core
        .db
        .grant_audit(service_kit::clock::now())
        .await
        .expect("grant audit");
    let mine: Vec<_> = audit
        .iter()
        .filter(|g| g.national_id == who.national_id && g.client_id == app.client("saipa").id)
        .collect();
    assert_eq!(mine.len(), 1, "{audit:?}");
    assert_eq!(
        mine[0].live_tokens, 1,
        "rotation leaves one live token: {audit:?}"
    );
    assert_eq!(mine[0].revoked_at, None);

    // Revocation of the new access token (RFC 7009).
    let c = app.client("saipa");
    let status = http
        .post(format!("{}/revoke", app.base))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("token", refreshed.access_token().secret().as_str())])
        .send()
        .await
        .expect("revoke")
        .status();
    assert_eq!(status, 200);
    let after = http
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .expect("userinfo");
    assert_eq!(after.status(), 401);
    assert!(after.headers().contains_key("www-authenticate"));

    // A second manufacturer: SSO, so only the consent page.
    let ikco = rp(&app, "ikco").await;
    let calls_before = app.registry_calls();
    let (challenge2, verifier2) = PkceCodeChallenge::new_random_sha256();
    let (auth2, state2, nonce2) = ikco
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge2)
        .url();
    let consent2 = browser.follow(browser.get(auth2.as_str()).await).await;
    assert_eq!(consent2.status, 200);
    assert!(consent2.body.contains("ایران خودرو"), "straight to consent");
    assert!(!consent2.body.contains("name=\"mobile\""), "no login form");
    let back2 = browser.submit_consent(&consent2, "approve").await;
    let q2 = query_of(back2.location.as_deref().expect("redirect"));
    assert_eq!(q2.get("state"), Some(state2.secret()));
    let tokens2 = ikco
        .client
        .exchange_code(AuthorizationCode::new(q2["code"].clone()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier2)
        .request_async(&ikco.http)
        .await
        .expect("exchange at the second client");
    let v2 = ikco
        .client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
    let claims2 = tokens2
        .id_token()
        .expect("id token")
        .claims(&v2, &nonce2)
        .expect("RS256 ID token");
    // One citizen, two pairwise subjects: the manufacturers cannot join their records by
    // `sub` (each may still read the national ID where the ministry allows it).
    assert_ne!(
        claims2.subject(),
        claims.subject(),
        "a sub per manufacturer"
    );
    assert_eq!(
        app.registry_calls(),
        calls_before,
        "no registry call for SSO"
    );

    // Remembered consent: a third login at the same client needs no page at all.
    let (challenge3, _v3) = PkceCodeChallenge::new_random_sha256();
    let (auth3, _, _) = ikco
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge3)
        .url();
    let direct = browser.get(auth3.as_str()).await;
    assert!(
        direct
            .location
            .as_deref()
            .is_some_and(|l| l.contains("code=")),
        "remembered consent"
    );

    // RP-initiated logout with id_token_hint and a registered post-logout URI.
    let bye = browser
        .get(&format!(
            "/logout?id_token_hint={}&post_logout_redirect_uri={}&state=xyz",
            id_token,
            crate::helpers::urlencode(&c.post_logout_uri)
        ))
        .await;
    assert_eq!(
        bye.location.as_deref(),
        Some(format!("{}?state=xyz", c.post_logout_uri).as_str())
    );
    let again = browser.follow(browser.get(auth3.as_str()).await).await;
    assert!(
        again.body.contains("name=\"mobile\""),
        "signed out: the login form again"
    );
}

async fn denying_consent_returns_access_denied(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::new(&app.base);
    let auth = crate::helpers::raw_auth(&app, app.client("saipa"), "");
    let consent = browser
        .verify_to_consent(&app, &auth.url, &app.citizens[1])
        .await;
    let back = browser.submit_consent(&consent, "deny").await;
    let q = query_of(back.location.as_deref().expect("redirect"));
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state"), Some(&auth.state));
}

async fn a_returning_citizen_is_served_from_the_identity_cache(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| s.resend_secs = 0),
        },
    )
    .await;
    let who = &app.citizens[2];
    crate::helpers::login_code(&app, &Browser::new(&app.base), app.client("saipa"), who).await;
    let calls = app.registry_calls();
    assert_eq!(calls, 2, "person and ownership checked once each");
    // A new browser (no SSO): the full flow again, but no registry call.
    crate::helpers::login_code(&app, &Browser::new(&app.base), app.client("saipa"), who).await;
    assert_eq!(app.registry_calls(), calls);
}

async fn prompt_none_reports_login_and_consent_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::new(&app.base);
    let auth = crate::helpers::raw_auth(&app, app.client("saipa"), "&prompt=none");
    let r = browser.get(&auth.url).await;
    assert_eq!(
        query_of(r.location.as_deref().expect("redirect"))["error"],
        "login_required"
    );

    crate::helpers::login_code(&app, &browser, app.client("saipa"), &app.citizens[3]).await;
    let auth = crate::helpers::raw_auth(&app, app.client("ikco"), "&prompt=none");
    let r = browser.get(&auth.url).await;
    assert_eq!(
        query_of(r.location.as_deref().expect("redirect"))["error"],
        "consent_required"
    );

    // prompt=login forces the login form despite the session; max_age=0 too.
    for extra in ["&prompt=login", "&max_age=0"] {
        let auth = crate::helpers::raw_auth(&app, app.client("saipa"), extra);
        let page = browser.follow(browser.get(&auth.url).await).await;
        assert!(page.body.contains("name=\"mobile\""), "{extra}");
    }
}

async fn the_account_page_lists_and_revokes_grants(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::new(&app.base);
    let c = app.client("saipa");
    let (code, auth) = crate::helpers::login_code(&app, &browser, c, &app.citizens[4]).await;
    let (status, tokens) = crate::helpers::exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.body.contains("سایپا"), "lists the manufacturer");
    assert!(account.body.contains("ورودهای اخیر"), "recent sign-ins");
    let csrf = account.input("csrf").expect("csrf");
    let r = browser
        .post("/account/revoke", &[("csrf", &csrf), ("client_id", &c.id)])
        .await;
    assert_eq!(r.status, 303);
    let ui = app
        .http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .expect("userinfo");
    assert_eq!(ui.status(), 401, "access token revoked with the consent");
    let refresh = app
        .http()
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().unwrap_or_default(),
            ),
        ])
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        refresh.status(),
        400,
        "refresh token revoked with the consent"
    );
    let account = browser.get("/account").await;
    assert!(
        !account.body.contains("name=\"client_id\" value=\"saipa\""),
        "consent gone"
    );
}

async fn client_credentials_and_introspection_work_for_back_ends(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("ikco");
    let http = app.http();
    let r: serde_json::Value = http
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "presale.read"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let at = r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("access token: {r}"));
    assert_eq!(r["scope"], "presale.read");
    let intro: serde_json::Value = http
        .post(format!("{}/introspect", app.base))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("token", at)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], c.id.as_str());
    // A service token at userinfo: 403 with the RFC 6750 challenge saying why.
    let ui = http
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(at)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(ui.status(), 403);
    let challenge = ui
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"insufficient_scope\""),
        "WWW-Authenticate: {challenge:?}"
    );
    // Another client may not introspect it.
    let other = app.client("saipa");
    let intro: serde_json::Value = http
        .post(format!("{}/introspect", app.base))
        .form(&[
            ("token", at),
            ("client_id", &other.id),
            ("client_secret", &other.secret),
        ])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(intro["active"], false);
    // A scope the client was not given is refused.
    let bad = http
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "ministry.admin"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(bad.status(), 400);
}

/// The ministry's own client (no redirect URI, service scopes only) reads the registered,
/// active manufacturers over the ministry API and checks a manufacturer's service token by
/// introspection, as presale's console and seed channel do.
async fn the_ministry_reads_manufacturers_and_checks_service_tokens(backend: Backend) {
    use idp::admin::{self, NewClient};
    let app = spawn_app(backend).await;
    let http = app.http();
    let (_, ministry_secret) = admin::add_client(
        &app.core.db,
        &app.core.keyring,
        NewClient {
            id: "ministry-console".into(),
            name: "Ministry console".into(),
            name_fa: "سامانه وزارت".into(),
            stars: 5,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            service_scopes: vec![
                "ministry.manufacturers".into(),
                "ministry.introspect".into(),
            ],
            id_token_alg: idp::domain::SigningAlg::ES256,
            valid_days: 365,
            allowed_scopes: vec![],
            subject_type: idp::domain::SubjectType::Public,
            sector_identifier: None,
            backchannel_logout_uri: None,
            private_key_jwt: None,
            private_callbacks: true,
        },
        "test",
        idp::now(),
    )
    .await
    .expect("a service client needs no redirect URI");
    app.core.reload().await.expect("reload");
    let token = |id: &'static str, secret: String, scope: &'static str| {
        let http = http.clone();
        let url = app.token_url();
        async move {
            let r: serde_json::Value = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            r["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_owned()
        }
    };
    let list = |bearer: Option<String>| {
        let http = http.clone();
        let url = format!("{}/api/manufacturers", app.base);
        async move {
            let mut req = http.get(url);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send().await.expect("api")
        }
    };
    let ministry = token(
        "ministry-console",
        ministry_secret.clone(),
        "ministry.manufacturers",
    )
    .await;
    let r = list(Some(ministry.clone())).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    let ids: Vec<&str> = body["manufacturers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["iran-khodro", "modiran", "saipa"],
        "manufacturers, not service clients"
    );
    // A suspended manufacturer is not offered.
    admin::set_status(
        &app.core.db,
        "modiran",
        idp::domain::ClientStatus::Suspended,
        "test",
        idp::now(),
    )
    .await
    .expect("suspend");
    app.core.reload().await.expect("reload");
    let body: serde_json::Value = list(Some(ministry)).await.json().await.expect("json");
    assert!(!body.to_string().contains("modiran"), "{body}");
    // No token, or a manufacturer's token: refused with the bearer challenge.
    assert_eq!(list(None).await.status(), 401);
    let ikco = app.client("ikco");
    let maker = token("iran-khodro", ikco.secret.clone(), "presale.read").await;
    let r = list(Some(maker.clone())).await;
    assert_eq!(r.status(), 403);
    // The ministry, a resource server, may introspect a manufacturer's service token.
    let intro: serde_json::Value = http
        .post(format!("{}/introspect", app.base))
        .basic_auth("ministry-console", Some(&ministry_secret))
        .form(&[("token", maker.as_str())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["client_id"], "iran-khodro");
    assert_eq!(intro["scope"], "presale.read");
    // A client with no redirect URI signs nobody in.
    let r = http
        .get(format!(
            "{}/authorize?client_id=ministry-console&response_type=code&scope=openid&redirect_uri=http://localhost:9/cb&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            app.base
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 400);
}

/// Presale carries the ministry's decisions on a manufacturer's standing (issue 34) with
/// its own client's `ministry.trust` scope: stars withheld by the after-sale record, a
/// suspension two staff approved. Nothing else reaches it: another scope, a manufacturer's
/// token, a service client as the target, stars out of range. What is already so writes
/// nothing; each change is audited under the ministry's client and the person named.
async fn the_ministry_carries_a_manufacturers_standing_and_nothing_else(backend: Backend) {
    use idp::admin::{self, NewClient};
    let app = spawn_app(backend).await;
    let http = app.http();
    let (_, secret) = admin::add_client(
        &app.core.db,
        &app.core.keyring,
        NewClient {
            id: "ministry-console".into(),
            name: "Ministry console".into(),
            name_fa: "سامانه وزارت".into(),
            stars: 5,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            service_scopes: vec!["ministry.manufacturers".into(), "ministry.trust".into()],
            id_token_alg: idp::domain::SigningAlg::ES256,
            valid_days: 365,
            allowed_scopes: vec![],
            subject_type: idp::domain::SubjectType::Public,
            sector_identifier: None,
            backchannel_logout_uri: None,
            private_key_jwt: None,
            private_callbacks: true,
        },
        "test",
        idp::now(),
    )
    .await
    .expect("service client");
    app.core.reload().await.expect("reload");
    let token = |id: &'static str, secret: String, scope: &'static str| {
        let (http, url) = (http.clone(), app.token_url());
        async move {
            let r: serde_json::Value = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            r["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_owned()
        }
    };
    let set = |bearer: String, id: &'static str, body: serde_json::Value| {
        let (http, url) = (
            http.clone(),
            format!("{}/api/manufacturers/{id}/standing", app.base),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .expect("api");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let trust = token("ministry-console", secret.clone(), "ministry.trust").await;
    let list_only = token("ministry-console", secret.clone(), "ministry.manufacturers").await;
    let ikco = app.client("ikco");
    let maker = token("iran-khodro", ikco.secret.clone(), "presale.read").await;
    let withhold = serde_json::json!({"withheld": 2, "withheld_version": 1, "by": "record", "reason": "3 overdue"});
    assert_eq!(set(list_only, "saipa", withhold.clone()).await.0, 403);
    assert_eq!(set(maker, "saipa", withhold.clone()).await.0, 403);
    assert_eq!(
        set(trust.clone(), "ministry-console", withhold.clone())
            .await
            .0,
        404
    );
    assert_eq!(set(trust.clone(), "nobody", withhold.clone()).await.0, 404);
    let bad = serde_json::json!({"stars": 9, "version": 1, "by": "x", "reason": "y"});
    assert_eq!(set(trust.clone(), "saipa", bad).await.0, 400);
    let unversioned = serde_json::json!({"suspended": true, "by": "x", "reason": "y"});
    assert_eq!(set(trust.clone(), "saipa", unversioned).await.0, 400);
    let no_reason =
        serde_json::json!({"withheld": 1, "withheld_version": 1, "by": "x", "reason": " "});
    assert_eq!(set(trust.clone(), "saipa", no_reason).await.0, 400);
    let audited = |app_db: idp::store::Db| async move {
        app_db
            .audit_log(100)
            .await
            .expect("audit")
            .into_iter()
            .filter(|a| a.subject == "saipa" && a.actor.starts_with("ministry-console for "))
            .count()
    };
    assert_eq!(
        audited(app.core.db.clone()).await,
        0,
        "nothing refused was written"
    );

    // Saipa's ministry rating stays; two stars are withheld from what is shown.
    let before = app.core.clients.get("saipa").expect("saipa").stars;
    let (status, body) = set(trust.clone(), "saipa", withhold.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stars"], before);
    assert_eq!(body["withheld"], 2);
    assert_eq!(body["rating"], before.saturating_sub(2).max(1));
    assert_eq!(
        app.core.clients.get("saipa").expect("saipa").withheld,
        2,
        "applied at once"
    );
    assert_eq!(audited(app.core.db.clone()).await, 1);
    // Again: already so, nothing written.
    assert_eq!(set(trust.clone(), "saipa", withhold).await.0, 200);
    assert_eq!(audited(app.core.db.clone()).await, 1);
    // An older version of the stars, arriving late, changes nothing.
    let older =
        serde_json::json!({"withheld": 0, "withheld_version": 1, "by": "record", "reason": "late"});
    let (status, body) = set(trust.clone(), "saipa", older).await;
    assert_eq!(
        (status, &body["stale"], &body["withheld"]),
        (200, &serde_json::json!(true), &serde_json::json!(2))
    );
    // Suspended (version 2): its sign-ins refused at once; version 1, a resumption sent
    // before it and arriving after, changes nothing.
    let suspend = serde_json::json!({"suspended": true, "version": 2, "by": "inspector.one", "approved_by": "inspector.two", "reason": "case-1"});
    assert_eq!(set(trust.clone(), "saipa", suspend).await.0, 200);
    let resume_late = serde_json::json!({"suspended": false, "version": 1, "by": "inspector.one", "approved_by": "issuer.two", "reason": "case-1"});
    let (status, body) = set(trust.clone(), "saipa", resume_late).await;
    assert_eq!(
        (status, &body["suspended"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    let log = app.core.db.audit_log(100).await.expect("audit");
    assert!(log.iter().any(|a| a.action == "client.suspend"
        && a.subject == "saipa"
        && a.actor == "ministry-console for inspector.one"
        && a.detail.contains("approved by inspector.two")));
    // Each side lifts only its own suspension: the operator's (say for a leaked secret)
    // stands through the ministry's resumption, and the ministry's through the operator's.
    let operator = |status| {
        let db = app.core.db.clone();
        async move {
            admin::set_status(&db, "iran-khodro", status, "operator", idp::now())
                .await
                .expect("operator");
        }
    };
    let ikco_status = || {
        let db = app.core.db.clone();
        async move {
            db.client(&idp::domain::ClientId::parse("iran-khodro").expect("id"))
                .await
                .expect("sql")
                .expect("client")
                .status
        }
    };
    operator(idp::domain::ClientStatus::Suspended).await;
    let suspend = serde_json::json!({"suspended": true, "version": 1, "by": "inspector.one", "reason": "case-2"});
    assert_eq!(set(trust.clone(), "iran-khodro", suspend).await.0, 200);
    operator(idp::domain::ClientStatus::Active).await;
    assert_eq!(
        ikco_status().await,
        idp::domain::ClientStatus::Suspended,
        "the ministry's suspension stands"
    );
    operator(idp::domain::ClientStatus::Suspended).await;
    let resume = serde_json::json!({"suspended": false, "version": 2, "by": "inspector.one", "reason": "case-2"});
    let (status, body) = set(trust.clone(), "iran-khodro", resume).await;
    assert_eq!(
        (status, &body["suspended"]),
        (200, &serde_json::json!(true)),
        "the operator's stands: {body}"
    );
    operator(idp::domain::ClientStatus::Active).await;
    assert_eq!(ikco_status().await, idp::domain::ClientStatus::Active);
    let c = app.client("saipa");
    let r = http
        .get(format!(
            "{}/authorize?client_id=saipa&response_type=code&scope=openid&redirect_uri={}&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            app.base,
            urlencoding_min(&c.redirect_uri)
        ))
        .send()
        .await
        .expect("authorize");
    let page = r.text().await.expect("page");
    assert!(
        page.contains("The ministry has suspended this sales site"),
        "{page}"
    );
}

/// Percent-encodes what a redirect URI in a query needs.
fn urlencoding_min(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('&', "%26")
}

async fn the_account_page_signs_out_in_one_step(backend: Backend) {
    // Arrange: a citizen signed in, on their account page.
    let app = spawn_app(backend).await;
    let browser = Browser::new(&app.base);
    let c = app.client("saipa");
    crate::helpers::login_code(&app, &browser, c, &app.citizens[5]).await;
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200);

    // Act: the page's own sign-out form.
    let out = browser
        .follow(browser.post_form(&account, "/logout", &[]).await)
        .await;

    // Assert: signed out at once (no second confirmation), and the session is gone.
    assert_eq!(out.status, 200);
    assert!(out.body.contains("Signed out"), "{}", out.body);
    let again = browser.get("/account").await;
    assert_ne!(again.status, 200, "the account page asks to sign in again");
}

both!(
    the_account_page_signs_out_in_one_step,
    full_flow_as_a_relying_party,
    denying_consent_returns_access_denied,
    a_returning_citizen_is_served_from_the_identity_cache,
    prompt_none_reports_login_and_consent_required,
    the_account_page_lists_and_revokes_grants,
    client_credentials_and_introspection_work_for_back_ends,
    the_ministry_reads_manufacturers_and_checks_service_tokens,
    the_ministry_carries_a_manufacturers_standing_and_nothing_else,
);
