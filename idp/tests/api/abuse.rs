//! Brute force and floods: OTP guesses, SMS bombing, birth-date guesses, stale logins,
//! forged forms, and limits that hold across replicas.

use crate::both;
use crate::helpers::{
    raw_auth, spawn_app, spawn_app_with, start_replica, Backend, Browser, Options, Page,
    Steps as _, TestApp,
};

async fn otp_page(app: &TestApp, b: &Browser, mobile: &str) -> Page {
    let auth = raw_auth(app, app.client("saipa"), "");
    let phone = b.follow(b.get(&auth.url).await).await;
    b.follow(b.submit_phone(&phone, mobile).await).await
}

fn wrong_code(right: &str) -> String {
    let n: u32 = right.parse().unwrap_or(0);
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn five_wrong_codes_void_the_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[0];
    let b = Browser::new(&app.base);
    let otp = otp_page(&app, &b, &who.mobile).await;
    let code = app.latest_code_for(&who.mobile).await.expect("code");
    for _ in 0..4 {
        let r = b.submit_otp(&otp, &wrong_code(&code)).await;
        assert_eq!(r.status, 400);
        assert!(r.body.contains("not correct"));
    }
    let r = b.submit_otp(&otp, &wrong_code(&code)).await;
    assert_eq!(r.status, 410);
    assert!(r.body.contains("void"));
    let r = b.submit_otp(&otp, &code).await;
    assert_eq!(r.status, 410, "even the right code is too late now");
}

async fn parallel_otp_guesses_cannot_exceed_five(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[1];
    let b = std::sync::Arc::new(Browser::new(&app.base));
    let otp = otp_page(&app, &b, &who.mobile).await;
    let code = app.latest_code_for(&who.mobile).await.expect("code");
    let tx = otp.tx_path().expect("tx");
    let csrf = otp.input("csrf").expect("csrf");
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let (b, tx, csrf) = (b.clone(), tx.clone(), csrf.clone());
        let guess = format!(
            "{:06}",
            (code.parse::<u32>().unwrap_or(0) + 1 + i) % 1_000_000
        );
        tasks.push(tokio::spawn(async move {
            b.post(&format!("{tx}/otp"), &[("csrf", &csrf), ("code", &guess)])
                .await
                .status
        }));
    }
    let mut wrong = 0;
    for t in tasks {
        if t.await.unwrap_or(0) == 400 {
            wrong += 1;
        }
    }
    assert!(
        wrong <= 4,
        "{wrong} guesses were judged; at most 4 before the void"
    );
    assert_eq!(b.submit_otp(&otp, &code).await.status, 410);
}

async fn sms_bombing_one_phone_is_throttled(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            settings: Box::new(|s| {
                s.resend_secs = 0;
                s.sms_per_phone = 3;
            }),
        },
    )
    .await;
    let who = &app.citizens[2];
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let b = Browser::new(&app.base);
        let auth = raw_auth(&app, app.client("saipa"), "");
        let phone = b.follow(b.get(&auth.url).await).await;
        let r = b.submit_phone(&phone, &who.mobile).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            assert!(r.body.contains("Too many"));
        }
    }
    assert_eq!(statuses, [303, 303, 303, 429]);
}

async fn a_second_code_within_a_minute_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[3];
    let b = Browser::new(&app.base);
    let otp = otp_page(&app, &b, &who.mobile).await;
    let tx = otp.tx_path().expect("tx");
    let csrf = otp.input("csrf").expect("csrf");
    let r = b.post(&format!("{tx}/resend"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("wait a minute"));
    // Another login for the same phone within the minute does not get a code either.
    let b2 = Browser::new(&app.base);
    let auth = raw_auth(&app, app.client("ikco"), "");
    let phone = b2.follow(b2.get(&auth.url).await).await;
    assert_eq!(b2.submit_phone(&phone, &who.mobile).await.status, 429);
}

async fn sms_sends_from_one_ip_are_limited(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            settings: Box::new(|s| s.sms_per_ip = 2),
        },
    )
    .await;
    let mut statuses = Vec::new();
    for who in app.citizens.iter().take(3) {
        let b = Browser::new(&app.base);
        let auth = raw_auth(&app, app.client("saipa"), "");
        let phone = b.follow(b.get(&auth.url).await).await;
        statuses.push(b.submit_phone(&phone, &who.mobile).await.status);
    }
    assert_eq!(statuses, [303, 303, 429]);
}

async fn birth_date_guessing_locks_the_national_id(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            settings: Box::new(|s| {
                s.fails_per_national_id = 2;
                s.resend_secs = 0;
            }),
        },
    )
    .await;
    let who = &app.citizens[4];
    let b = Browser::new(&app.base);
    let otp = otp_page(&app, &b, &who.mobile).await;
    let code = app.latest_code_for(&who.mobile).await.expect("code");
    let identity = b.follow(b.submit_otp(&otp, &code).await).await;
    for guess in ["1350/01/01", "1350/01/02"] {
        let r = b.submit_identity(&identity, &who.national_id, guess).await;
        assert_eq!(r.status, 422);
    }
    let calls = app.registry_calls();
    let r = b
        .submit_identity(&identity, &who.national_id, &who.birth_date)
        .await;
    assert_eq!(r.status, 429, "locked, even with the right date");
    assert_eq!(app.registry_calls(), calls, "and the registry is spared");
}

async fn an_expired_code_and_an_expired_login_are_explained(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            settings: Box::new(|s| {
                s.otp_secs = 1;
                s.login_secs = 3;
            }),
        },
    )
    .await;
    let who = &app.citizens[5];
    let b = Browser::new(&app.base);
    let otp = otp_page(&app, &b, &who.mobile).await;
    let code = app.latest_code_for(&who.mobile).await.expect("code");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = b.submit_otp(&otp, &code).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("expired"));
    // The login's TTL is set in whole seconds: allow a full extra second of rounding.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let r = b.get(&otp.tx_path().expect("tx")).await;
    assert_eq!(r.status, 410);
    assert!(r.body.contains("This sign-in has expired"));
}

async fn forged_forms_and_foreign_browsers_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let who = &app.citizens[6];
    let b = Browser::new(&app.base);
    let auth = raw_auth(&app, app.client("saipa"), "");
    let phone = b.follow(b.get(&auth.url).await).await;
    let tx = phone.tx_path().expect("tx");
    let challenge = phone.input("pow_challenge").expect("challenge");
    let nonce = testkit::login::solve_pow(&challenge);
    let r = b
        .post(
            &format!("{tx}/phone"),
            &[
                ("csrf", "forged"),
                ("mobile", &who.mobile),
                ("pow_challenge", &challenge),
                ("pow_nonce", &nonce),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "CSRF");
    let thief = Browser::new(&app.base);
    assert_eq!(
        thief.get(&tx).await.status,
        403,
        "bound to the browser that started it"
    );
    // An unsolved proof of work.
    let csrf = phone.input("csrf").expect("csrf");
    let unsolved = (0..)
        .map(|i: u32| i.to_string())
        .find(|n| idp::crypto::pow::leading_zero_bits(&challenge, n) < 4)
        .unwrap_or_default();
    let r = b
        .post(
            &format!("{tx}/phone"),
            &[
                ("csrf", &csrf),
                ("mobile", &who.mobile),
                ("pow_challenge", &challenge),
                ("pow_nonce", &unsolved),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("anti-bot"));
    // A solved challenge works once only.
    assert_eq!(
        b.submit_phone_with(&phone, &who.mobile, &challenge, &nonce)
            .await
            .status,
        303
    );
    let b2 = Browser::new(&app.base);
    let phone2 = b2
        .follow(b2.get(&raw_auth(&app, app.client("saipa"), "").url).await)
        .await;
    let r = b2
        .submit_phone_with(&phone2, &app.citizens[7].mobile, &challenge, &nonce)
        .await;
    assert_eq!(r.status, 400, "a replayed proof of work");
    let r = b.submit_phone(&phone, "0211234567").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a valid mobile number"));
}

async fn token_requests_are_limited_per_client(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            settings: Box::new(|s| s.token_rps_per_client = 2),
        },
    )
    .await;
    let c = app.client("saipa");
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let r = app
            .http()
            .post(app.token_url())
            .basic_auth(&c.id, Some(&c.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token");
        statuses.push(r.status().as_u16());
        retry_after = retry_after.or(r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("").to_owned()));
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert!(retry_after.is_some(), "429 carries Retry-After");
}

both!(
    token_requests_are_limited_per_client,
    five_wrong_codes_void_the_login,
    parallel_otp_guesses_cannot_exceed_five,
    sms_bombing_one_phone_is_throttled,
    a_second_code_within_a_minute_is_refused,
    sms_sends_from_one_ip_are_limited,
    birth_date_guessing_locks_the_national_id,
    an_expired_code_and_an_expired_login_are_explained,
    forged_forms_and_foreign_browsers_are_refused,
);

/// Two replicas sharing PostgreSQL and Redis: a login started on one finishes on the
/// other, and a per-phone limit is one limit, not one per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_logins_and_limits() {
    let opts = || Options {
        settings: Box::new(|s| {
            s.resend_secs = 0;
            s.sms_per_phone = 2;
        }),
    };
    let a = spawn_app_with(Backend::Servers, opts()).await;
    let b = start_replica(&a.deployment, &opts()).await;
    let who = &a.citizens[0];

    // Start on A, continue on B with the same browser (cookies are per host, not port,
    // just as behind a load balancer).
    let browser = Browser::new(&a.base);
    let auth = raw_auth(&a, a.client("saipa"), "");
    let phone = browser.follow(browser.get(&auth.url).await).await;
    let tx = phone.tx_path().expect("tx");
    let on_b = Browser {
        http: browser.http.clone(),
        base: b.base.clone(),
    };
    let phone_b = on_b.get(&tx).await;
    assert_eq!(phone_b.status, 200, "replica B serves A's login");
    let otp = on_b
        .follow(on_b.submit_phone(&phone_b, &who.mobile).await)
        .await;
    assert_eq!(otp.status, 200);
    let code = a.latest_code_for(&who.mobile).await.expect("code");
    let identity = browser.follow(browser.submit_otp(&otp, &code).await).await;
    assert_eq!(identity.status, 200, "and A continues it");

    // The per-phone SMS limit (2) counts across replicas: one send above, one on A, then 429 on B.
    let b1 = Browser::new(&a.base);
    let p = b1
        .follow(b1.get(&raw_auth(&a, a.client("saipa"), "").url).await)
        .await;
    assert_eq!(b1.submit_phone(&p, &who.mobile).await.status, 303);
    let b2 = Browser::new(&b.base);
    let p = b2
        .follow(b2.get(&raw_auth(&b, a.client("saipa"), "").url).await)
        .await;
    assert_eq!(b2.submit_phone(&p, &who.mobile).await.status, 429);
}
