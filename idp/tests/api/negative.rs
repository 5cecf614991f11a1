//! Every rule of the protocol, broken on purpose.

use crate::both;
use crate::helpers::{
    exchange, login_code, query_of, raw_auth, spawn_app, Backend, Browser, Steps as _, TestApp,
};

async fn userinfo_status(app: &TestApp, at: &str) -> u16 {
    app.http()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(at)
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

async fn refresh(app: &TestApp, key: &str, rt: &str) -> (u16, serde_json::Value) {
    let c = app.client(key);
    let r = app
        .http()
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .expect("refresh");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn a_wrong_pkce_verifier_is_refused_and_burns_the_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[0]).await;
    let wrong = idp::crypto::random_token(32);
    let (status, body) = exchange(&app, c, &code, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(
        status, 400,
        "a code is single use even when the first try failed"
    );
}

async fn a_replayed_code_fails_and_revokes_what_it_issued(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[1]).await;
    let (status, tokens) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200);
    let at = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(userinfo_status(&app, &at).await, 200);

    let (status, body) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo_status(&app, &at).await,
        401,
        "access token revoked"
    );
    let (status, _) = refresh(
        &app,
        "saipa",
        tokens["refresh_token"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(status, 400, "refresh token revoked");
}

async fn refresh_token_reuse_revokes_the_whole_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[2]).await;
    let (_, t1) = exchange(&app, c, &code, &auth.verifier).await;
    let rt1 = t1["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, t2) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 200);
    let rt2 = t2["refresh_token"].as_str().unwrap_or_default().to_owned();
    // The client moved on: its next refresh used rt2. Presenting rt1 now is no retry.
    let (status, t3) = refresh(&app, "saipa", &rt2).await;
    assert_eq!(status, 200);
    let rt3 = t3["refresh_token"].as_str().unwrap_or_default().to_owned();
    let at3 = t3["access_token"].as_str().unwrap_or_default().to_owned();

    let (status, body) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 400, "reuse of a rotated token");
    assert!(body["error_description"]
        .as_str()
        .unwrap_or_default()
        .contains("reuse"));
    let (status, _) = refresh(&app, "saipa", &rt3).await;
    assert_eq!(status, 400, "the legitimate successor dies with the grant");
    assert_eq!(userinfo_status(&app, &at3).await, 401);
    // Another client cannot use it either.
    let (status, _) = refresh(&app, "ikco", &rt3).await;
    assert_eq!(status, 400);
}

/// Issue 11, hole 6: a retried refresh (the answer lost to a timeout during a surge) does
/// not sign the citizen out. Within the grace window, while the new refresh token is
/// unused, the confidential client gets the same new pair again; once it has used the new
/// token, the old one is reuse and the grant ends.
async fn a_retried_refresh_gets_the_same_answer_until_the_new_token_is_used(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[5]).await;
    let (_, t1) = exchange(&app, c, &code, &auth.verifier).await;
    let rt1 = t1["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, first) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 200, "a retry is answered: {again}");
    for field in ["refresh_token", "access_token", "id_token"] {
        assert_eq!(again[field], first[field], "the same {field}");
    }
    let (status, _) = refresh(&app, "ikco", &rt1).await;
    assert_eq!(status, 400, "only to its own client");
    let rt2 = first["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, t3) = refresh(&app, "saipa", &rt2).await;
    assert_eq!(status, 200, "the grant lives on");
    let (status, _) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 400, "after the new token was used: reuse");
    let rt3 = t3["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, _) = refresh(&app, "saipa", &rt3).await;
    assert_eq!(status, 400, "and the grant is revoked");
}

/// userinfo by POST with the token in the header and an empty body typed as JSON (what
/// some client libraries send) is answered, not refused as a malformed form (issue 32,
/// point 11). First failure: 400 invalid_request.
async fn userinfo_post_with_a_bearer_header_and_an_empty_json_body_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[13]).await;
    let (_, t) = exchange(&app, c, &code, &auth.verifier).await;
    let at = t["access_token"].as_str().unwrap_or_default();
    let r = app
        .http()
        .post(format!("{}/userinfo", app.base))
        .bearer_auth(at)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

/// A code presented by another client is refused and given back untouched: the client it
/// was issued to still exchanges it, and a second try by the other client revokes nothing
/// of the owner's (issue 32, point 11). First failure: the owner's exchange got 400, the
/// code burnt by the other client's try.
async fn another_clients_try_neither_burns_a_code_nor_revokes_its_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (saipa, ikco) = (app.client("saipa"), app.client("ikco"));
    let (code, auth) = login_code(&app, &Browser::new(&app.base), saipa, &app.citizens[11]).await;
    let (status, _) = exchange(&app, ikco, &code, &auth.verifier).await;
    assert_eq!(status, 400, "not ikco's code");
    let (status, t) = exchange(&app, saipa, &code, &auth.verifier).await;
    assert_eq!(status, 200, "the owner's exchange: {t}");
    let (status, _) = exchange(&app, ikco, &code, &auth.verifier).await;
    assert_eq!(status, 400);
    let at = t["access_token"].as_str().unwrap_or_default();
    assert_eq!(
        userinfo_status(&app, at).await,
        200,
        "the owner's grant stands"
    );
    let rt = t["refresh_token"].as_str().unwrap_or_default();
    assert_eq!(refresh(&app, "saipa", rt).await.0, 200);
}

/// A code exchanged while the database cannot be reached is given back, so the client's
/// retry succeeds; once exchanged, it is single use as ever (issue 32, point 11). First
/// failure: the retry got 400, the code burnt by the 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchanged_while_the_database_is_down_survives_for_the_retry() {
    let app = spawn_app(Backend::Servers).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[12]).await;
    let broken = crate::helpers::start_replica(&app.deployment, &Default::default()).await;
    broken.core.db.close().await;
    let (status, body) = exchange(&broken, c, &code, &auth.verifier).await;
    assert_eq!(status, 503, "{body}");
    let (status, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200, "the retry: {t}");
    let (status, _) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 400, "single use");
}

/// A refresh whose answer was lost after the rotation committed (here: the copy a retry
/// used to find in the shared store is gone, as when the request died between its commit
/// and that write) is answered again on its retry, not taken for reuse (issue 32, point 3).
/// First failure: the retry got 400 invalid_grant and the grant was revoked.
async fn a_retried_refresh_survives_an_answer_lost_after_the_commit(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[9]).await;
    let (_, t1) = exchange(&app, c, &code, &auth.verifier).await;
    let rt1 = t1["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, first) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 200, "{first}");
    let h = idp::crypto::b64(&idp::crypto::sha256(rt1.as_bytes()));
    app.core
        .eph
        .delete(&format!("refresh-retry:{h}"))
        .await
        .expect("the store");
    let (status, again) = refresh(&app, "saipa", &rt1).await;
    assert_eq!(status, 200, "the retry signed the citizen out: {again}");
    assert_eq!(again["refresh_token"], first["refresh_token"]);
    let next = first["refresh_token"].as_str().unwrap_or_default();
    assert_eq!(refresh(&app, "saipa", next).await.0, 200, "the grant lives");
}

/// Parallel uses of one refresh token (a client retrying in a hurry) rotate it once: every
/// answer carries the same successor, and the grant survives.
async fn concurrent_refreshes_with_one_token_rotate_it_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[3]).await;
    let (_, t1) = exchange(&app, c, &code, &auth.verifier).await;
    let rt1 = t1["refresh_token"].as_str().unwrap_or_default().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let http = app.http();
        let url = app.token_url();
        let (id, secret, rt) = (c.id.clone(), c.secret.clone(), rt1.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .expect("refresh");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let rt = body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (status, rt)
        }));
    }
    let mut answers = std::collections::HashSet::new();
    for t in tasks {
        let (status, refresh_token) = t.await.unwrap_or((0, String::new()));
        assert_eq!(status, 200, "a retry within the grace is answered");
        answers.insert(refresh_token);
    }
    assert_eq!(
        answers.len(),
        1,
        "16 parallel uses of one refresh token rotated it {} times",
        answers.len()
    );
    let rt2 = answers.into_iter().next().unwrap_or_default();
    let (status, _) = refresh(&app, "saipa", &rt2).await;
    assert_eq!(status, 200, "the one successor works: the grant lives");
}

async fn an_unknown_client_or_redirect_uri_gets_an_error_page_never_a_redirect(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = Browser::new(&app.base);
    let c = app.client("saipa");
    let good = raw_auth(&app, c, "").url;
    for bad in [
        good.replace(
            &crate::helpers::urlencode(&c.redirect_uri),
            "https%3A%2F%2Fevil.example%2Fcb",
        ),
        good.replace(
            &crate::helpers::urlencode(&c.redirect_uri),
            &crate::helpers::urlencode(&format!("{}/x", c.redirect_uri)),
        ),
        good.replace(
            &crate::helpers::urlencode(&c.redirect_uri),
            &crate::helpers::urlencode(&format!("{}?a=1", c.redirect_uri)),
        ),
        good.replace("client_id=saipa", "client_id=nobody"),
        good.replace("client_id=saipa&", ""),
    ] {
        let page = b.get(&bad).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none(), "never redirect: {bad}");
        assert!(page.body.contains("role=\"alert\""));
    }
}

async fn requests_without_pkce_or_openid_are_sent_back_with_an_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = Browser::new(&app.base);
    let c = app.client("saipa");
    let good = raw_auth(&app, c, "").url;
    for (bad, error) in [
        (
            good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            good.split("&code_challenge=")
                .next()
                .unwrap_or_default()
                .to_owned(),
            "invalid_request",
        ),
        (good.replace("scope=openid%20", "scope="), "invalid_scope"),
        (
            good.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (format!("{good}&request=eyJ"), "request_not_supported"),
    ] {
        let page = b.get(&bad).await;
        let loc = page
            .location
            .unwrap_or_else(|| panic!("redirect expected for {bad}"));
        let q = query_of(&loc);
        assert_eq!(q.get("error").map(String::as_str), Some(error), "{bad}");
        assert_eq!(q.get("iss"), Some(&app.base));
    }
}

async fn a_suspended_or_expired_client_is_refused_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[4]).await;
    let (_, tokens) = exchange(&app, c, &code, &auth.verifier).await;
    let at = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    idp::admin::set_status(
        &app.core.db,
        &c.id,
        idp::domain::ClientStatus::Suspended,
        "test",
        idp::now(),
    )
    .await
    .expect("suspend");
    app.core.reload().await.expect("reload");

    let page = Browser::new(&app.base)
        .get(&raw_auth(&app, c, "").url)
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("تعلیق"), "the page says why");
    assert_eq!(
        userinfo_status(&app, &at).await,
        401,
        "its tokens stop working"
    );
    let (status, body) = refresh(
        &app,
        "saipa",
        tokens["refresh_token"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let cc = app
        .http()
        .post(app.token_url())
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(cc.status(), 401);
    let intro = app
        .http()
        .post(format!("{}/introspect", app.base))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("token", at.as_str())])
        .send()
        .await
        .expect("introspect");
    assert_eq!(intro.status(), 401);

    // Expired: the yearly trust record lapsed.
    let other = app.client("ikco");
    let cid = idp::domain::ClientId::parse(&other.id).expect("id");
    app.core
        .db
        .update_client_trust(&cid, None, Some(idp::now() - 1), None, idp::now())
        .await
        .expect("expire");
    app.core.reload().await.expect("reload");
    let page = Browser::new(&app.base)
        .get(&raw_auth(&app, other, "").url)
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("expired"), "the page says why");
}

async fn wrong_client_secrets_are_refused_with_a_challenge(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let r = app
        .http()
        .post(app.token_url())
        .basic_auth(&c.id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

async fn a_bad_national_id_checksum_never_reaches_the_registry(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = Browser::new(&app.base);
    let who = &app.citizens[5];
    let auth = raw_auth(&app, app.client("saipa"), "");
    let phone = b.follow(b.get(&auth.url).await).await;
    let otp = b.follow(b.submit_phone(&phone, &who.mobile).await).await;
    let code = app.latest_code_for(&who.mobile).await.expect("code");
    let identity = b.follow(b.submit_otp(&otp, &code).await).await;
    let mut bad = who.national_id.clone();
    let last = bad.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
    bad.push(char::from(b'0' + ((last + 1) % 10) as u8));
    let calls = app.registry_calls();
    let r = b.submit_identity(&identity, &bad, &who.birth_date).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("کد ملی معتبر نیست") && r.body.contains("national ID is not valid"));
    assert_eq!(app.registry_calls(), calls, "no registry call for a typo");
    let r = b
        .submit_identity(&identity, &who.national_id, "1370/07/31")
        .await;
    assert_eq!(r.status, 400, "Mehr has 30 days");
    assert_eq!(app.registry_calls(), calls);
    // Born decades from now (issue 32, point 9). First failure: 422 after a registry call.
    let r = b
        .submit_identity(&identity, &who.national_id, "1490/01/01")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("cannot be after today"), "{}", r.body);
    assert_eq!(app.registry_calls(), calls);
}

async fn registry_mismatches_do_not_say_which_field_was_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[6];
    let other = &app.citizens[7];
    let mut texts = Vec::new();
    for (mobile, nid, birth) in [
        // Wrong birth date.
        (
            who.mobile.as_str(),
            who.national_id.as_str(),
            if who.birth_date == "1360/01/01" {
                "1360/01/02"
            } else {
                "1360/01/01"
            },
        ),
        // A mobile number that belongs to someone else.
        (
            other.mobile.as_str(),
            who.national_id.as_str(),
            who.birth_date.as_str(),
        ),
    ] {
        let b = Browser::new(&app.base);
        let auth = raw_auth(&app, app.client("saipa"), "");
        let phone = b.follow(b.get(&auth.url).await).await;
        let otp = b.follow(b.submit_phone(&phone, mobile).await).await;
        let code = app.latest_code_for(mobile).await.expect("code");
        let identity = b.follow(b.submit_otp(&otp, &code).await).await;
        let r = b.submit_identity(&identity, nid, birth).await;
        assert_eq!(r.status, 422);
        let alert = r
            .body
            .split("role=\"alert\">")
            .nth(1)
            .unwrap_or_default()
            .split("</p>")
            .next()
            .unwrap_or_default()
            .to_owned();
        texts.push(alert);
    }
    assert!(texts[0].contains("do not match"));
    assert_eq!(texts[0], texts[1], "same message for any mismatch");
}

async fn a_registry_outage_is_a_503_with_retry_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[8];
    let b = Browser::new(&app.base);
    let identity = crate::helpers::identity_page(&app, &b, &who.mobile).await;
    app.stub
        .registry_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = b
        .submit_identity(&identity, &who.national_id, &who.birth_date)
        .await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body.contains("temporarily unavailable"));
    // The outage is not the citizen's fault: it spends none of the login's three tries.
    for _ in 0..3 {
        let r = b
            .submit_identity(&identity, &who.national_id, &who.birth_date)
            .await;
        assert_eq!(r.status, 503);
    }
    // Nothing half-stored: once the registry is back, the same form goes through.
    app.stub
        .registry_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let r = b
        .submit_identity(&identity, &who.national_id, &who.birth_date)
        .await;
    assert_eq!(r.status, 303);
}

/// After repeated failures the registries are left alone for a while: citizens get 503
/// with Retry-After at once, and the struggling service gets no more calls.
async fn a_failing_registry_is_left_alone_for_a_while(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| {
                s.resend_secs = 0;
                s.fails_per_national_id = 100;
            }),
        },
    )
    .await;
    let who = &app.citizens[9];
    app.stub
        .registry_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..2 {
        let b = Browser::new(&app.base);
        let identity = crate::helpers::identity_page(&app, &b, &who.mobile).await;
        for _ in 0..3 {
            let r = b
                .submit_identity(&identity, &who.national_id, &who.birth_date)
                .await;
            assert!(r.headers.contains_key("retry-after"));
            statuses.push(r.status);
            calls.push(app.registry_calls());
        }
    }
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    // Each try asks both services; the fifth failure in a row opens the breakers.
    assert_eq!(calls[4], 10, "{calls:?}");
    assert_eq!(
        calls[5], 10,
        "the sixth try was answered without a call: {calls:?}"
    );
}

/// A registry that refuses the query itself (a 4xx) has answered: the try counts as a
/// mismatch, is not given back, and the breakers stay closed, so inputs a registry rejects
/// cannot hold them open for everyone (issue 32, point 9). First failure: every try was a
/// 503 "registry down", refunded, and the sixth found the breakers open.
async fn a_registry_refusal_is_a_mismatch_not_an_outage(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            settings: Box::new(|s| {
                s.resend_secs = 0;
                s.fails_per_national_id = 100;
                s.identity_tries_per_phone = 100;
            }),
        },
    )
    .await;
    let who = &app.citizens[10];
    app.stub
        .registry_status
        .store(404, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..2 {
        let b = Browser::new(&app.base);
        let identity = crate::helpers::identity_page(&app, &b, &who.mobile).await;
        for _ in 0..3 {
            let r = b
                .submit_identity(&identity, &who.national_id, &who.birth_date)
                .await;
            statuses.push(r.status);
            calls.push(app.registry_calls());
        }
        let r = b
            .submit_identity(&identity, &who.national_id, &who.birth_date)
            .await;
        assert_eq!(r.status, 410, "three tries spent, none given back");
    }
    assert!(statuses.iter().all(|s| *s == 422), "{statuses:?}");
    assert_eq!(calls[5], 12, "both registries asked every time: {calls:?}");
}

/// OIDC Core §3.1.2.1: an `id_token_hint` names who the client expects. With another
/// citizen's session in the browser, prompt=none answers login_required instead of a code
/// for whoever is signed in; without prompt=none the citizen signs in again.
async fn an_id_token_hint_for_someone_else_is_not_answered_by_this_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let (alice, bob) = (&app.citizens[13], &app.citizens[14]);
    let a = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &a, c, alice).await;
    let (_, alice_tokens) = exchange(&app, c, &code, &auth.verifier).await;
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, c, bob).await;
    let (_, bob_tokens) = exchange(&app, c, &code, &auth.verifier).await;
    let bob_hint = bob_tokens["id_token"].as_str().expect("id token");
    let alice_hint = alice_tokens["id_token"].as_str().expect("id token");

    let hinted =
        |hint: &str, prompt: &str| raw_auth(&app, c, &format!("&id_token_hint={hint}{prompt}")).url;
    let r = a.get(&hinted(bob_hint, "&prompt=none")).await;
    let q = query_of(r.location.as_deref().unwrap_or(""));
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("login_required"),
        "{q:?}"
    );
    assert!(!q.contains_key("code"));
    let r = a.get(&hinted(bob_hint, "")).await;
    assert!(
        r.location.as_deref().is_some_and(|l| l.contains("/login/")),
        "asked to sign in: {:?}",
        r.location
    );
    let r = a.get(&hinted(alice_hint, "&prompt=none")).await;
    let q = query_of(r.location.as_deref().unwrap_or(""));
    assert!(q.contains_key("code"), "her own hint: {q:?}");
    let r = a.get(&hinted("not.a.token", "&prompt=none")).await;
    let q = query_of(r.location.as_deref().unwrap_or(""));
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
}

/// The token endpoint answers what is not a form as OAuth says: JSON `invalid_request`.
/// Its rate limit says `temporarily_unavailable` (not device flow's `slow_down`), and
/// introspection gives a refresh token no access-token type.
async fn the_token_endpoint_answers_in_oauth_terms(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("ikco");
    for (content_type, body) in [
        ("application/json", r#"{"grant_type":"client_credentials"}"#),
        ("text/plain", "grant_type=client_credentials"),
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&grant_type=refresh_token",
        ),
    ]
    .map(|(t, b)| (t, b.to_owned()))
    .into_iter()
    // A client-authentication field said twice is as ambiguous as any other (alone, the
    // same client_id as the Basic credentials is fine).
    .chain([(
        "application/x-www-form-urlencoded",
        format!(
            "grant_type=client_credentials&client_id={0}&client_id={0}",
            c.id
        ),
    )]) {
        let r = app
            .http()
            .post(app.token_url())
            .basic_auth(&c.id, Some(&c.secret))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 400, "{content_type}");
        assert!(r
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json")));
        let j: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(j["error"], "invalid_request", "{content_type}: {j}");
    }
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[15]).await;
    let (_, tokens) = exchange(&app, c, &code, &auth.verifier).await;
    let j: serde_json::Value = app
        .http()
        .post(format!("{}/introspect", app.base))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("token", tokens["refresh_token"].as_str().unwrap_or(""))])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(j["active"], true);
    assert!(j.get("token_type").is_none(), "{j}");
}

/// RP-initiated logout ends the SSO session and every grant it gave: both manufacturers'
/// refresh tokens stop, and their access tokens too.
async fn signing_out_ends_the_grants_of_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[16];
    let b = Browser::new(&app.base);
    let mut tokens = Vec::new();
    for key in ["saipa", "ikco"] {
        let (code, auth) = login_code(&app, &b, app.client(key), who).await;
        let (status, t) = exchange(&app, app.client(key), &code, &auth.verifier).await;
        assert_eq!(status, 200);
        tokens.push((key, t));
    }
    let hint = tokens[0].1["id_token"].as_str().unwrap_or_default();
    let r = b
        .get(&format!("{}/logout?id_token_hint={hint}", app.base))
        .await;
    assert_eq!(r.status, 200, "signed out at once with a matching hint");
    for (key, t) in &tokens {
        let at = t["access_token"].as_str().unwrap_or_default();
        assert_eq!(userinfo_status(&app, at).await, 401, "{key}'s access token");
        let (status, j) = refresh(&app, key, t["refresh_token"].as_str().unwrap_or("")).await;
        assert_eq!(
            (status, j["error"].as_str()),
            (400, Some("invalid_grant")),
            "{key}"
        );
    }
}

/// A code issued just before the citizen signs out, exchanged just after, makes no live
/// grant (issue 32, point 11). First failure: the exchange answered 200 with tokens of a
/// session that had ended.
async fn a_code_from_a_session_that_ended_makes_no_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, c, &app.citizens[17]).await;
    let account = b.get("/account").await;
    let out = b.follow(b.post_form(&account, "/logout", &[]).await).await;
    assert_eq!(out.status, 200, "{}", out.body);
    let (status, body) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// A logout request with someone's `id_token_hint` and no session cookie (a manufacturer,
/// or anyone an ID token reached) signs nobody out (issue 32, point 6). First failure: the
/// hinted citizen's session ended and its grants lived on.
async fn an_id_token_hint_without_the_session_cookie_signs_no_one_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let c = app.client("saipa");
    let b = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b, c, &app.citizens[12]).await;
    let (status, t) = exchange(&app, c, &code, &auth.verifier).await;
    assert_eq!(status, 200);
    let hint = t["id_token"].as_str().unwrap_or_default();
    let stranger = Browser::new(&app.base);
    let r = stranger
        .get(&format!("{}/logout?id_token_hint={hint}", app.base))
        .await;
    assert_eq!(r.status, 200);
    let again = b.follow(b.get(&raw_auth(&app, c, "").url).await).await;
    assert!(
        again
            .location
            .as_deref()
            .is_some_and(|l| l.contains("code=")),
        "the citizen was signed out by a stranger's request: {:?}",
        again.location
    );
    let at = t["access_token"].as_str().unwrap_or_default();
    assert_eq!(userinfo_status(&app, at).await, 200, "the grant stands");
}

/// `offline_access` governs long-lived grants (OIDC Core §11): only a manufacturer the
/// ministry allows it, only after the citizen consented to it on the consent screen, gets
/// a grant that outlives the sign-in; every other grant ends with its SSO session (its
/// logout or its lifetime), however often it is refreshed.
async fn offline_access_is_what_keeps_a_grant_past_the_sign_in(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            // Long enough for three sign-ins in one session on a loaded machine.
            settings: Box::new(|s| s.session_secs = 6),
        },
    )
    .await;
    let who = &app.citizens[18];
    let b = Browser::new(&app.base);
    let ask = |key: &str, scope: &str| {
        let auth = crate::helpers::raw_auth(&app, app.client(key), "");
        let url = auth.url.replace(
            "scope=openid%20profile%20phone%20national_id",
            &format!("scope={}", scope.replace(' ', "%20")),
        );
        (crate::helpers::RawAuth { url, ..auth }, key.to_owned())
    };
    let mut grants = Vec::new();
    let mut hint = String::new();
    for (auth, key) in [
        ask("ikco", "openid profile offline_access"),
        ask("modiran", "openid profile offline_access"),
        ask("saipa", "openid profile"),
    ] {
        let mut page = b.follow(b.get(&auth.url).await).await;
        if page.body.contains("name=\"mobile\"") {
            page = b.verify_from(&app, page, who).await;
        }
        assert!(page.body.contains("name=\"decision\""), "{key}: consent");
        let offered = page.body.contains("while you are signed out");
        assert_eq!(
            offered,
            key == "ikco",
            "{key}: offline access on the consent screen"
        );
        let back = b.submit_consent(&page, "approve").await;
        let code = crate::helpers::query_of(&back.location.expect("redirect"))["code"].clone();
        let (status, t) = exchange(&app, app.client(&key), &code, &auth.verifier).await;
        assert_eq!(status, 200, "{t}");
        let scope = t["scope"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            scope.contains("offline_access"),
            key == "ikco",
            "{key}: only an allowed client gets it: {scope}"
        );
        hint = t["id_token"].as_str().unwrap_or_default().to_owned();
        grants.push((
            key,
            t["refresh_token"].as_str().unwrap_or_default().to_owned(),
        ));
    }

    // Signing out ends the online grants; the offline one stays until withdrawn.
    let r = b
        .get(&format!("{}/logout?id_token_hint={hint}", app.base))
        .await;
    assert_eq!(r.status, 200, "signed out");
    for (key, rt) in &mut grants {
        let (status, j) = refresh(&app, key, rt).await;
        if key == "ikco" {
            assert_eq!(status, 200, "the offline grant survives sign-out: {j}");
            *rt = j["refresh_token"].as_str().unwrap_or_default().to_owned();
        } else {
            assert_eq!(
                status, 400,
                "{key}'s online grant ended with the session: {j}"
            );
        }
    }

    // An online grant from a session nobody signs out of ends with the session's
    // lifetime, however often it is refreshed; the offline one goes on.
    let b2 = Browser::new(&app.base);
    let (code, auth) = login_code(&app, &b2, app.client("saipa"), who).await;
    let (_, t) = exchange(&app, app.client("saipa"), &code, &auth.verifier).await;
    let mut online = t["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, j) = refresh(&app, "saipa", &online).await;
    assert_eq!(status, 200, "{j}");
    online = j["refresh_token"].as_str().unwrap_or_default().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(6100)).await;
    let (status, j) = refresh(&app, "saipa", &online).await;
    assert_eq!(status, 400, "past the session's lifetime: {j}");
    let (status, j) = refresh(&app, "ikco", &grants[0].1).await;
    assert_eq!(status, 200, "offline: {j}");
}

/// Refresh rotation extends a grant only up to its absolute lifetime.
async fn a_grant_ends_at_its_absolute_lifetime(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            // Long enough that a loaded machine's first refresh is inside it.
            settings: Box::new(|s| s.grant_max_secs = 5),
        },
    )
    .await;
    let c = app.client("saipa");
    let (code, auth) = login_code(&app, &Browser::new(&app.base), c, &app.citizens[17]).await;
    let (_, t) = exchange(&app, c, &code, &auth.verifier).await;
    let (status, t) = refresh(&app, "saipa", t["refresh_token"].as_str().unwrap_or("")).await;
    assert_eq!(status, 200, "{t}");
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    let (status, j) = refresh(&app, "saipa", t["refresh_token"].as_str().unwrap_or("")).await;
    assert_eq!(status, 400);
    assert_eq!(j["error"], "invalid_grant");
}

both!(
    a_code_from_a_session_that_ended_makes_no_grant,
    an_id_token_hint_without_the_session_cookie_signs_no_one_out,
    signing_out_ends_the_grants_of_the_session,
    offline_access_is_what_keeps_a_grant_past_the_sign_in,
    a_grant_ends_at_its_absolute_lifetime,
    a_failing_registry_is_left_alone_for_a_while,
    a_registry_refusal_is_a_mismatch_not_an_outage,
    an_id_token_hint_for_someone_else_is_not_answered_by_this_session,
    the_token_endpoint_answers_in_oauth_terms,
    a_wrong_pkce_verifier_is_refused_and_burns_the_code,
    a_replayed_code_fails_and_revokes_what_it_issued,
    refresh_token_reuse_revokes_the_whole_grant,
    concurrent_refreshes_with_one_token_rotate_it_once,
    a_retried_refresh_gets_the_same_answer_until_the_new_token_is_used,
    a_retried_refresh_survives_an_answer_lost_after_the_commit,
    another_clients_try_neither_burns_a_code_nor_revokes_its_grant,
    userinfo_post_with_a_bearer_header_and_an_empty_json_body_answers,
    an_unknown_client_or_redirect_uri_gets_an_error_page_never_a_redirect,
    requests_without_pkce_or_openid_are_sent_back_with_an_error,
    a_suspended_or_expired_client_is_refused_everywhere,
    wrong_client_secrets_are_refused_with_a_challenge,
    a_bad_national_id_checksum_never_reaches_the_registry,
    registry_mismatches_do_not_say_which_field_was_wrong,
    a_registry_outage_is_a_503_with_retry_after,
);

/// Redis gone (killed, or a failover under way): the pages answer 503 with Retry-After,
/// not 500, so that citizens and load balancers try again instead of giving up; and the
/// same request goes through once Redis is back. (A rehearsal found 500s here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_503_with_retry_after() {
    let mut redis = testkit::servers::RedisServer::start().expect("redis-server");
    let url = redis.url();
    let app = crate::helpers::spawn_app_with(
        Backend::Servers,
        crate::helpers::Options {
            settings: Box::new(move |s| {
                s.storage.redis_url = idp::config::Secret::new(url.clone());
            }),
        },
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let auth = raw_auth(&app, app.client("saipa"), "").url;
    assert_eq!(http.get(&auth).send().await.expect("get").status(), 303);

    redis.crash();
    let r = http.get(&auth).send().await.expect("get");
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    assert!(r.headers().contains_key("retry-after"));

    redis.crash_and_restart(true).expect("redis back");
    let mut status = 0;
    for _ in 0..50 {
        status = http.get(&auth).send().await.expect("get").status().as_u16();
        if status == 303 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 303, "served again once Redis is back");
}
