//! Client authentication a bank would accept (issue 11): `private_key_jwt` (RFC 7523,
//! OpenID Connect Core §9) with the client's keys registered inline or at a JWKS URI, used
//! by the `openidconnect` crate as the relying party.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

use crate::both;
use crate::helpers::{query_of, spawn_app, Backend, Browser, Steps as _, TestApp};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's own P-256 key: the private half signs assertions, the public half is its JWK.
struct ClientKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl ClientKey {
    fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .expect("key")
            .as_ref()
            .to_vec();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng).expect("pair");
        // An uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": idp::crypto::b64(&point[1..33]),
            "y": idp::crypto::b64(&point[33..65]),
        });
        Self {
            kid: kid.to_owned(),
            pkcs8,
            jwk,
        }
    }

    fn jwks(keys: &[&ClientKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
    }

    /// A client assertion as RFC 7523 §3 describes it, with `claims` merged over the
    /// usual ones.
    fn assertion(&self, client_id: &str, aud: &str, claims: Value) -> String {
        let now = idp::now();
        let mut body = json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "iat": now, "exp": now + 60,
            "jti": idp::crypto::random_token(16),
        });
        if let (Some(b), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &body,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .expect("sign")
    }
}

/// Registers a manufacturer that authenticates with its key, inline or by URI.
async fn register(app: &TestApp, id: &str, jwks: Option<&str>, jwks_uri: Option<&str>) -> String {
    let redirect_uri = format!("http://localhost:9/{id}/callback");
    let keys = idp::admin::parse_client_keys(jwks, jwks_uri, true).expect("valid keys");
    let (_, secret) = idp::admin::add_client(
        &app.core.db,
        &app.core.keyring,
        idp::admin::NewClient {
            id: id.into(),
            name: "Pars".into(),
            name_fa: "پارس".into(),
            stars: 4,
            redirect_uris: vec![redirect_uri.clone()],
            post_logout_redirect_uris: vec![],
            service_scopes: vec![],
            id_token_alg: idp::domain::SigningAlg::ES256,
            valid_days: 365,
            allowed_scopes: vec!["profile".into()],
            subject_type: idp::domain::SubjectType::Pairwise,
            sector_identifier: Some(format!("{id}.example")),
            backchannel_logout_uri: None,
            private_key_jwt: keys,
            private_callbacks: true,
        },
        "test",
        idp::now(),
    )
    .await
    .expect("add client");
    assert!(
        secret.is_empty(),
        "no secret is issued to a key-holding client"
    );
    app.core.reload().await.expect("reload");
    redirect_uri
}

/// A JWKS URI the test serves, counting its fetches; its keys can be replaced.
#[derive(Clone, Default)]
struct JwksHost {
    body: Arc<std::sync::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksHost {
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = self.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    me.fetches.fetch_add(1, Ordering::SeqCst);
                    let body = me.body.lock().expect("lock").clone();
                    ([("content-type", "application/json")], body)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://127.0.0.1:{port}/jwks.json")
    }
}

async fn token_status(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = app
        .http()
        .post(app.token_url())
        .form(form)
        .send()
        .await
        .expect("token");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The whole sign-in with the `openidconnect` crate as the manufacturer, authenticating at
/// the token endpoint with a signed assertion instead of a secret; then everything an
/// attacker would try with assertions is refused with `invalid_client`.
async fn a_manufacturer_authenticates_with_its_own_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = ClientKey::generate("pars-2026");
    let redirect = register(&app, "pars", Some(&ClientKey::jwks(&[&key])), None).await;

    let disco: Value = app.get_json("/.well-known/openid-configuration").await;
    assert!(disco["token_endpoint_auth_methods_supported"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("private_key_jwt"))));
    assert!(disco["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("ES256")) && !m.contains(&json!("HS256"))));

    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let meta = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.base.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery");
    let client = CoreClient::from_provider_metadata(meta, ClientId::new("pars".into()), None)
        .set_redirect_uri(RedirectUrl::new(redirect).expect("redirect"))
        .set_auth_type(AuthType::RequestBody);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = Browser::new(&app.base);
    let consent = browser
        .verify_to_consent(&app, url.as_str(), &app.citizens[23])
        .await;
    let back = browser.submit_consent(&consent, "approve").await;
    let code = query_of(&back.location.expect("redirect"))["code"].clone();

    let aud = app.base.clone();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
        .add_extra_param("client_assertion", key.assertion("pars", &aud, json!({})))
        .request_async(&http)
        .await
        .expect("the code is exchanged with a signed assertion");
    let v = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = tokens
        .id_token()
        .expect("id token")
        .claims(&v, &nonce)
        .expect("valid ID token");
    assert!(claims.given_name().is_some(), "profile released");
    let refresh = tokens.refresh_token().expect("refresh").secret().clone();

    // The issuer, as one string, is the audience (RFC 7523bis).
    let fresh = key.assertion("pars", &app.base, json!({}));
    let form = |assertion: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.clone()),
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", assertion.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token_status(app, &pairs).await
        }
    };
    let (status, body) = send(form(&fresh)).await;
    assert_eq!(status, 200, "{body}");
    let refresh2 = body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Everything below must fail as invalid_client (401), and none may touch the grant.
    let other = ClientKey::generate("pars-2026");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "pars", "sub": "pars", "aud": aud, "exp": idp::now() + 60, "jti": "x"}),
        &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
    )
    .expect("hs256");
    let unsigned = {
        let parts: Vec<&str> = fresh.split('.').collect();
        let header = idp::crypto::b64(br#"{"alg":"none","typ":"JWT"}"#);
        format!("{header}.{}.", parts[1])
    };
    let now = idp::now();
    let cases: Vec<(&str, String)> = vec![
        ("replayed (jti used)", fresh.clone()),
        (
            "another key, same kid",
            other.assertion("pars", &aud, json!({})),
        ),
        (
            "another audience",
            key.assertion("pars", "https://elsewhere.example/token", json!({})),
        ),
        // Issue 32, point 11: both were accepted before.
        (
            "the token endpoint as audience",
            key.assertion("pars", &app.token_url(), json!({})),
        ),
        (
            "an array of audiences",
            key.assertion(
                "pars",
                &aud,
                json!({"aud": [app.base.clone(), "https://elsewhere.example"]}),
            ),
        ),
        (
            "expired",
            key.assertion("pars", &aud, json!({"iat": now - 600, "exp": now - 300})),
        ),
        (
            "valid for too long",
            key.assertion("pars", &aud, json!({"exp": now + 86_400})),
        ),
        (
            "issued for another client",
            key.assertion("saipa", &aud, json!({})),
        ),
        (
            "without a jti",
            key.assertion("pars", &aud, json!({"jti": null})),
        ),
        ("a shared-secret MAC", hs256),
        ("alg none", unsigned),
    ];
    for (what, assertion) in cases {
        let (status, body) = send(form(&assertion)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}");
    }
    let (status, body) = token_status(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
            ("client_assertion_type", "urn:example:not-a-jwt"),
            ("client_assertion", &key.assertion("pars", &aud, json!({}))),
        ],
    )
    .await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
    // A key-holding client cannot fall back to a secret, and a secret client cannot
    // present an assertion instead of its secret.
    let r = app
        .http()
        .post(app.token_url())
        .basic_auth("pars", Some("anything"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 401, "secret for a key-holding client");
    let (status, _) = token_status(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "saipa"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &key.assertion("saipa", &aud, json!({}))),
        ],
    )
    .await;
    assert_eq!(status, 401, "an assertion for a secret client");

    // The grant survived every refused attempt: the second refresh token still works.
    let (status, body) = send(vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh2.clone()),
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", key.assertion("pars", &aud, json!({}))),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Keys published at the manufacturer's JWKS URI are fetched, cached, and fetched again
/// when an assertion names a key the cache does not hold (a rotation), but not for every
/// request nor more often than the refetch interval for unknown keys.
async fn keys_at_a_jwks_uri_are_fetched_cached_and_rotated(backend: Backend) {
    let app = spawn_app(backend).await;
    let host = JwksHost::default();
    let old = ClientKey::generate("kish-1");
    *host.body.lock().expect("lock") = ClientKey::jwks(&[&old]);
    let uri = host.serve().await;
    register(&app, "kish", None, Some(&uri)).await;
    let aud = app.base.clone();
    let cc = |assertion: String| {
        let app = &app;
        async move {
            token_status(
                app,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    for _ in 0..3 {
        let (status, body) = cc(old.assertion("kish", &aud, json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        host.fetches.load(Ordering::SeqCst),
        1,
        "fetched once, cached"
    );

    // The manufacturer rotates: the new key is published and used at once.
    let new = ClientKey::generate("kish-2");
    *host.body.lock().expect("lock") = ClientKey::jwks(&[&new]);
    let (status, body) = cc(new.assertion("kish", &aud, json!({}))).await;
    assert_eq!(status, 200, "an unknown kid refetches: {body}");
    assert_eq!(host.fetches.load(Ordering::SeqCst), 2);
    // A flood of assertions naming keys nobody published does not become a flood of
    // fetches at the manufacturer.
    for i in 0..5 {
        let stranger = ClientKey::generate(&format!("nobody-{i}"));
        let (status, _) = cc(stranger.assertion("kish", &aud, json!({}))).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        host.fetches.load(Ordering::SeqCst),
        2,
        "unknown kids refetch at most once per interval"
    );
    // A secret would never be accepted for it, so none is issued.
    let keys = &app.core.keyring;
    let e = idp::admin::rotate_secret(&app.core.db, keys, "kish", 0, "test", idp::now())
        .await
        .expect_err("no secret for a key-holding client");
    assert!(e.to_string().contains("private_key_jwt"), "{e}");
}

/// What the ministry registers is checked: a JWKS with a private key or a symmetric key,
/// an insecure JWKS URI, or both sources at once are refused with the reason.
#[tokio::test]
async fn registered_keys_are_checked() {
    let key = ClientKey::generate("k");
    let mut private = key.jwk.clone();
    private["d"] = json!("c2VjcmV0");
    let cases = [
        (
            Some(json!({"keys": [private]}).to_string()),
            None,
            "private",
        ),
        (
            Some(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string()),
            None,
            "public",
        ),
        (Some("{\"keys\": []}".to_owned()), None, "no keys"),
        (Some("not json".to_owned()), None, "JWKS"),
        (None, Some("http://keys.example/jwks"), "https"),
        (
            Some(ClientKey::jwks(&[&key])),
            Some("https://keys.example/jwks"),
            "one of",
        ),
    ];
    for (jwks, uri, says) in cases {
        let e = idp::admin::parse_client_keys(jwks.as_deref(), uri, true)
            .expect_err("refused")
            .to_string();
        assert!(e.contains(says), "{e} should say {says}");
    }
    assert!(
        idp::admin::parse_client_keys(Some(&ClientKey::jwks(&[&key])), None, true)
            .expect("valid")
            .is_some()
    );
    assert!(idp::admin::parse_client_keys(None, None, true)
        .expect("valid")
        .is_none());
}

both!(
    a_manufacturer_authenticates_with_its_own_key,
    keys_at_a_jwks_uri_are_fetched_cached_and_rotated,
);
