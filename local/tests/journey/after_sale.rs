//! After the sale (issue 34), over HTTP on PostgreSQL and Redis with two presale
//! replicas: the manufacturer's back-end records a buyer's contract and payment through
//! the API with its own service client (the scope checked), the buyer sees the deadline,
//! the state and the compensation owed on their applications page, the ministry sees it
//! per manufacturer, an issuer adds a rate to the table, the manufacturer's representative
//! records the delivery at the console, and a license past the manufacturer's credit
//! ceiling is refused with the figures.

use super::*;

const DAY: i64 = 86_400;

/// The first accepted tracking code on an application's answer page.
fn tracking_code(body: &str) -> String {
    let at = body
        .find("data-tracking-code=\"")
        .unwrap_or_else(|| panic!("a tracking code in {body}"));
    body[at + "data-tracking-code=\"".len()..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The value of the first `data-{name}="…"` attribute on `body` after `from`.
fn data(body: &str, name: &str) -> Option<String> {
    let key = format!("data-{name}=\"");
    let at = body.find(&key)?;
    Some(body[at + key.len()..].split('"').next()?.to_owned())
}

async fn api(
    env: &Env,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, Option<String>) {
    let http = reqwest::Client::new();
    let url = format!("{}/api/deliveries", env.replica);
    let req = match body {
        Some(b) => http.post(url).json(&b),
        None => http.get(url),
    };
    let r = req.bearer_auth(token).send().await.expect("api");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        r.json().await.unwrap_or(serde_json::Value::Null),
        challenge,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_compensation_and_the_credit_ceiling_on_postgres_and_redis() {
    use presale::store::staff::Role;
    let now = service_kit::clock::now();
    // Saipa has four stars at the IdP; four stars may have 15 billion rials outstanding.
    let d = local::deploy(Options {
        postgres_admin: Some(testkit::servers::postgres_admin_url()),
        redis_url: testkit::Backend::Servers.redis_url(),
        citizens: 10,
        presale_replicas: 2,
        public_per_replica: true,
        trust_forwarded_for: false,
        credit_ceilings: Some("1:0,4:15000000000".into()),
        ..Options::new(test_license("saipa", "Shahin", now))
    })
    .await
    .expect("deployment");
    let env = env_of(d);
    let buyer = &env.citizens[0];
    let (b, wait) = join_and_stay(&env, buyer).await;
    let page = until_admitted(&b, &wait, 20).await;
    let code = tracking_code(&apply_from(&b, &wait, &page).await.body);

    // The manufacturer's back-end: its own service client, with the deliveries scope.
    let secret = |m: &str| {
        env.seed_clients
            .iter()
            .find(|(id, _)| id == m)
            .map(|(_, s)| s.clone())
            .expect("seed client")
    };
    let seed_only = local::parties::seed_token(&env.issuer, "saipa", &secret("saipa"))
        .await
        .expect("token");
    let (status, _, challenge) = api(&env, &seed_only, None).await;
    assert_eq!(status, 403, "the seed scope is not the deliveries scope");
    assert!(
        challenge.is_some_and(|c| c.contains("scope=\"presale.deliveries\"")),
        "the challenge names the scope"
    );
    let token =
        local::parties::service_token(&env.issuer, "saipa", &secret("saipa"), "presale.deliveries")
            .await
            .expect("token");
    let (status, list, _) = api(&env, &token, None).await;
    assert_eq!(status, 200, "{list}");
    let mine = list["applications"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["tracking_code"] == code.as_str()))
        .unwrap_or_else(|| panic!("the application in {list}"))
        .clone();
    assert_eq!(mine["national_id"], buyer.national_id.as_str());
    assert!(mine["delivered_at"].is_null());

    // The contract and the down payment, as they happen; a second contract is refused;
    // Iran Khodro's back-end reaches nothing of Saipa's; nothing is dated in the future.
    let contract = serde_json::json!({"tracking_code": code, "stage": "contract"});
    let (status, body, _) = api(&env, &token, Some(contract.clone())).await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = api(&env, &token, Some(contract.clone())).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message_fa"].as_str().is_some_and(|m| !m.is_empty()));
    let khodro = local::parties::service_token(
        &env.issuer,
        "iran-khodro",
        &secret("iran-khodro"),
        "presale.deliveries",
    )
    .await
    .expect("token");
    let (status, _, _) = api(&env, &khodro, Some(contract)).await;
    assert_eq!(status, 404);
    let payment = serde_json::json!({"tracking_code": code, "stage": "payment", "amount": 2_000_000_000i64, "key": "pay-1"});
    let (status, body, _) = api(&env, &token, Some(payment.clone())).await;
    assert_eq!(status, 201, "{body}");
    let (status, again, _) = api(&env, &token, Some(payment)).await;
    assert_eq!(
        (status, &again["id"]),
        (201, &body["id"]),
        "a retry is the same payment"
    );
    let future = serde_json::json!({"tracking_code": code, "stage": "payment", "amount": 1, "at": now + 3600});
    assert_eq!(api(&env, &token, Some(future)).await.0, 422);

    // The ministry's rate for regular presales, added by an issuer at the console from
    // today: 2.5% a month. None reaches back before today.
    add_staff(&env, "issuer.one", Role::Issuer).await;
    let issuer = Browser::new("");
    staff_sign_in(&env, &issuer, "issuer.one", 0).await;
    let console = issuer
        .go(&format!("{}/ministry/deliveries", env.base))
        .await;
    let add_rate = |from: String, percent: &'static str| {
        let (issuer, csrf, base) = (&issuer, input(&console.body, "csrf"), env.base.clone());
        async move {
            issuer
                .post_follow(
                    &format!("{base}/ministry/deliveries/rates"),
                    &[
                        ("csrf", csrf.as_str()),
                        ("kind", "regular"),
                        ("from", from.as_str()),
                        ("percent", percent),
                    ],
                )
                .await
        }
    };
    assert_eq!(add_rate(jalali(now - 30 * DAY), "0").await.status, 422);
    let form = add_rate(jalali(service_kit::clock::now()), "۲٫۵").await;
    assert!(form.body.contains("2.50%"), "{}", form.body);

    // A month passes (moved in the database by its owner, every time with it): the
    // application was made 30 days ago, the contract and payment 25, the rate has been in
    // force 30, and the delivery deadline passed 10 days ago. Ten whole days late on 2
    // billion paid: 2e9 × 250 × 10 / 300 000 = 16 666 666.67 → 16 666 666 rials.
    let license_id = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.manufacturer == "saipa")
        .expect("saipa")
        .id;
    for sql in [
        "UPDATE applications SET created_at = created_at - 2592000 WHERE license_id = $1",
        "UPDATE delivery_stages SET at = at - 2160000, recorded_at = recorded_at - 2160000 \
         WHERE license_id = $1",
        "UPDATE compensation_rates SET effective_from = effective_from - 2592000 \
         WHERE kind = 'regular' AND $1 <> ''",
        "UPDATE licenses SET delivery_deadline = $2 WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(&license_id)
            .bind(now - 10 * DAY)
            .execute(env.store.pool())
            .await
            .expect(sql);
    }
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert_eq!(
        data(&mine.body, "days-late").as_deref(),
        Some("10"),
        "{}",
        mine.body
    );
    assert_eq!(data(&mine.body, "owed").as_deref(), Some("16666666"));
    assert!(mine.body.contains("contracted, payments made"));
    // The ministry sees it per manufacturer.
    let report = issuer
        .go(&format!("{}/ministry/deliveries", env.base))
        .await;
    let saipa_row = report
        .body
        .split("data-manufacturer=\"saipa\"")
        .nth(1)
        .expect("saipa's row");
    assert_eq!(data(saipa_row, "overdue").as_deref(), Some("1"));
    assert_eq!(data(saipa_row, "owed").as_deref(), Some("16666666"));

    // Saipa's representative records the delivery at the console; the buyer sees it.
    env.store
        .add_representative("saipa.rep", STAFF_PASSWORD, "saipa", "test", now)
        .await
        .expect("representative");
    let rep = Browser::new("");
    staff_sign_in(&env, &rep, "saipa.rep", 0).await;
    let list = rep.go(&format!("{}/ministry/deliveries", env.base)).await;
    assert!(list.body.contains(&code), "{}", list.body);
    let done = rep
        .post_follow(
            &format!("{}/ministry/deliveries/stage", env.base),
            &[
                ("csrf", &input(&list.body, "csrf")),
                ("tracking_code", &code),
                ("stage", "delivered"),
                ("amount", ""),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    // A representative adds no rate.
    let refused = rep
        .post(
            &format!("{}/ministry/deliveries/rates", env.base),
            &[
                ("csrf", &input(&list.body, "csrf")),
                ("kind", "firm"),
                ("from", &jalali(now)),
                ("percent", "0"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert!(mine.body.contains("delivered"), "{}", mine.body);
    assert_eq!(data(&mine.body, "owed").as_deref(), Some("16666666"));

    // A license past the ceiling: 5 units × 1 billion outstanding (none delivered before
    // today's one: 4 billion now), 12 asked: 16 > 15. Proposed by one issuer, the second's
    // approval is refused with the figures.
    add_staff(&env, "issuer.two", Role::Issuer).await;
    add_staff(&env, "issuer.three", Role::Issuer).await;
    let mut big = test_license("saipa", "Tiba", now);
    big.units = 12;
    let parties = local::parties::commitments("saipa");
    for c in &parties {
        let (via, by) = if c.party == "ministry" {
            (presale::store::commitments::Via::Console, "issuer.three")
        } else {
            (presale::store::commitments::Via::IdpClient, "saipa-seed")
        };
        env.store
            .record_commitment(&big.license_no, &c.party, &c.commitment, via, by, now)
            .await
            .expect("sql")
            .expect("recorded");
    }
    propose_issue(&env, big, "issuer.one")
        .await
        .expect("proposed");
    let second = Browser::new("");
    staff_sign_in(&env, &second, "issuer.two", 0).await;
    let refused = decide_on_page(&env, &second, "/approve").await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("credit ceiling")
            && refused
                .body
                .contains("4,000,000,000 + 12,000,000,000 &gt; 15,000,000,000 (4★)"),
        "{}",
        refused.body
    );
}

/// Pages a forger might serve, on an origin of its own: the issuer's badge script copied
/// (`/copy`), the drawn badge copied as markup with five stars (`/altered`) or with the
/// standing it had (`/stale`), a badge script of its own (`/forged`), a picture of a badge
/// (`/picture`).
pub(super) async fn forger(issuer: &str) -> String {
    use axum::response::Html;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let page = |body: String| {
        Html(format!(
            "<!doctype html><html><body><h1>Saipa</h1>{body}</body></html>"
        ))
    };
    let copy = page(format!(
        r#"<script src="{issuer}/badge/saipa/badge.js"></script>"#
    ));
    let altered = page(format!(
        r#"<a class="emta-badge" data-emta-badge="saipa" data-status="active" data-stars="5" href="{issuer}/badge/saipa">emta</a>"#
    ));
    let stale = page(format!(
        r#"<a class="emta-badge" data-emta-badge="saipa" data-status="active" data-stars="4" href="{issuer}/badge/saipa">emta</a>"#
    ));
    let forged = page(format!(
        r#"<script src="{origin}/badge/saipa/badge.js"></script>"#
    ));
    let picture = page(r#"<img src="/img/emta-badge.png" alt="emta">"#.to_owned());
    let app = axum::Router::new()
        .route("/copy", axum::routing::get(move || async move { copy }))
        .route(
            "/altered",
            axum::routing::get(move || async move { altered }),
        )
        .route("/stale", axum::routing::get(move || async move { stale }))
        .route("/forged", axum::routing::get(move || async move { forged }))
        .route(
            "/picture",
            axum::routing::get(move || async move { picture }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    origin
}

/// The kinds of finding a scan of `page` reports.
fn kinds(found: &[idp::badge_scan::Finding], page: &str) -> Vec<&'static str> {
    found
        .iter()
        .filter(|f| f.page == page)
        .map(|f| f.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trust_badge_cannot_be_forged_on_postgres_and_redis() {
    let now = service_kit::clock::now();
    let license = test_license("saipa", "Shahin", now);
    let license_no = license.license_no.clone();
    let d = local::deploy(Options {
        postgres_admin: Some(testkit::servers::postgres_admin_url()),
        redis_url: testkit::Backend::Servers.redis_url(),
        citizens: 3,
        ..Options::new(license)
    })
    .await
    .expect("deployment");
    let idp_core = d.idp.clone();
    let env = env_of(d);
    let http = reqwest::Client::new();
    let storefront = url::Url::parse(&env.base)
        .expect("url")
        .origin()
        .ascii_serialization();

    // The badge's page names the manufacturer, its rating, its standing, its registered
    // storefront and its licensed campaign (read from presale).
    let page = http
        .get(format!("{}/badge/saipa", env.issuer))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let body = page.text().await.expect("body");
    assert!(body.contains("Saipa") && body.contains("سایپا"), "{body}");
    assert_eq!(data(&body, "stars").as_deref(), Some("4"));
    assert_eq!(data(&body, "standing").as_deref(), Some("active"));
    let saipa_front = format!("{}/saipa/", env.base);
    assert_eq!(
        data(&body, "storefront").as_deref(),
        Some(saipa_front.as_str())
    );
    assert_eq!(data(&body, "license").as_deref(), Some(license_no.as_str()));
    // Reached with no Referer (a forger's link may strip it), the page cannot vouch for
    // the site: it says where the badge is valid.
    assert!(data(&body, "badge-copied").is_none());
    assert!(body.contains("data-badge-unverified"), "{body}");
    // Reached from the storefront (the badge's link sends its origin), it confirms.
    let from_front = http
        .get(format!("{}/badge/saipa", env.issuer))
        .header("referer", format!("{storefront}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(
        from_front.contains("data-badge-from-registered"),
        "{from_front}"
    );
    // Reached from another site, the page says the badge there was copied.
    let copied = http
        .get(format!("{}/badge/saipa", env.issuer))
        .header("referer", "http://saipa-presale.example/offer")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert_eq!(
        data(&copied, "badge-copied").as_deref(),
        Some("http://saipa-presale.example")
    );
    // An unknown manufacturer's badge is a forgery.
    let unknown = http
        .get(format!("{}/badge/no-such-maker", env.issuer))
        .send()
        .await
        .expect("page");
    assert_eq!(unknown.status(), 404);

    // The signed form verifies with the IdP's JWKS, and an edited one does not.
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(format!("{}/jwks", env.issuer))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks");
    let jws = http
        .get(format!("{}/badge/saipa/badge.jwt", env.issuer))
        .send()
        .await
        .expect("jwt")
        .text()
        .await
        .expect("jwt");
    let badge = idp::badge_scan::verify(&jws, &jwks, &env.issuer).expect("signed by the IdP");
    assert_eq!(
        (badge.sub.as_str(), badge.stars, badge.status.as_str()),
        ("saipa", 4, "active")
    );
    assert!(badge.origins.contains(&storefront));
    assert_eq!(badge.storefronts, std::slice::from_ref(&saipa_front));
    assert!(badge.exp - badge.iat <= 60, "a minute's statement");
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = String::from_utf8(b64.decode(&parts[1]).expect("claims")).expect("utf8");
        parts[1] = b64.encode(claims.replace("\"stars\":4", "\"stars\":5"));
    }
    assert!(idp::badge_scan::verify(&parts.join("."), &jwks, &env.issuer).is_none());

    // The storefront embeds the IdP's script, and its policy lets that script run.
    let front = http
        .get(format!("{}/saipa/", env.base))
        .send()
        .await
        .expect("storefront");
    let csp = front
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let issuer_origin = url::Url::parse(&env.issuer)
        .expect("issuer")
        .origin()
        .ascii_serialization();
    assert!(
        csp.contains(&format!("script-src 'self' {issuer_origin}/badge/;")),
        "{csp}"
    );
    let front = front.text().await.expect("body");
    assert!(front.contains(&format!("{}/badge/saipa/badge.js", env.issuer)));

    // The monitor: the real storefront is clean; each planted copy is reported.
    let bad = forger(&env.issuer).await;
    let pages: Vec<String> = std::iter::once(format!("{}/saipa/", env.base))
        .chain(
            ["copy", "altered", "stale", "forged", "picture"]
                .iter()
                .map(|p| format!("{bad}/{p}")),
        )
        .collect();
    let found = idp::badge_scan::scan(&env.issuer, &pages).await;
    assert!(kinds(&found, &pages[0]).is_empty(), "{found:?}");
    assert_eq!(kinds(&found, &pages[1]), ["copied"], "{found:?}");
    assert_eq!(kinds(&found, &pages[2]), ["altered"], "{found:?}");
    assert_eq!(kinds(&found, &pages[3]), ["static"], "{found:?}");
    assert_eq!(kinds(&found, &pages[4]), ["forged"], "{found:?}");
    assert_eq!(kinds(&found, &pages[5]), ["static"], "{found:?}");

    // Suspended by the ministry: within a minute the badge, its signed form and the
    // monitor say so, and the copy still claiming it in force is stale.
    idp::admin::set_status(
        &idp_core.db,
        "saipa",
        idp::domain::client::ClientStatus::Suspended,
        "ministry",
        service_kit::clock::now(),
    )
    .await
    .expect("suspend");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let jws = http
            .get(format!("{}/badge/saipa/badge.jwt", env.issuer))
            .send()
            .await
            .expect("jwt")
            .text()
            .await
            .expect("jwt");
        let b = idp::badge_scan::verify(&jws, &jwks, &env.issuer).expect("signed");
        if b.status == "suspended" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", b.status);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let script = http
        .get(format!("{}/badge/saipa/badge.js", env.issuer))
        .send()
        .await
        .expect("script")
        .text()
        .await
        .expect("script");
    assert!(script.contains("\"status\":\"suspended\""), "{script}");
    let found = idp::badge_scan::scan(&env.issuer, &pages).await;
    assert_eq!(kinds(&found, &pages[0]), ["suspended"], "{found:?}");
    assert_eq!(kinds(&found, &pages[3]), ["stale"], "{found:?}");
}

/// A complaint form as a browser sends it (multipart), with `files` as (name, bytes).
async fn file_complaint(
    b: &Browser,
    base: &str,
    csrf: &str,
    tracking: &str,
    kind: &str,
    body: &str,
    files: &[(&str, Vec<u8>)],
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("tracking", tracking.to_owned())
        .text("kind", kind.to_owned())
        .text("body", body.to_owned());
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name((*name).to_owned())
                // What the browser claims is not what is checked.
                .mime_str("application/pdf")
                .expect("mime"),
        );
    }
    let r = b
        .http
        .post(format!("{base}/saipa/complaints"))
        .multipart(form)
        .send()
        .await
        .expect("complaint");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(l) => (status, l),
        None => (status, r.text().await.unwrap_or_default()),
    }
}

/// Polls `check` every 200 ms for up to `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_warranty_and_an_inspectors_suspension_on_postgres_and_redis() {
    use presale::store::staff::Role;
    let now = service_kit::clock::now();
    // Saipa has four stars at the IdP; its record is counted every second.
    let d = local::deploy(Options {
        postgres_admin: Some(testkit::servers::postgres_admin_url()),
        redis_url: testkit::Backend::Servers.redis_url(),
        citizens: 10,
        presale_replicas: 2,
        public_per_replica: true,
        trust_forwarded_for: false,
        record_every_secs: 1,
        ..Options::new(test_license("saipa", "Shahin", now))
    })
    .await
    .expect("deployment");
    let idp_core = d.idp.clone();
    let env = env_of(d);
    let http = reqwest::Client::new();
    let rating = |core: idp::core::Core| async move {
        core.db
            .client(&idp::domain::ClientId::parse("saipa").expect("id"))
            .await
            .expect("sql")
            .expect("saipa")
    };
    assert_eq!(rating(idp_core.clone()).await.rating(), 4);
    let buyer = &env.citizens[0];
    let (b, wait) = join_and_stay(&env, buyer).await;
    let page = until_admitted(&b, &wait, 20).await;
    let code = tracking_code(&apply_from(&b, &wait, &page).await.body);

    // The buyer files a complaint about a price change, with a PDF; an HTML page sent as
    // "application/pdf" is refused by its content, and nothing is kept of it.
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert!(
        mine.body.contains("/saipa/complaints/new?tracking="),
        "{}",
        mine.body
    );
    let form = b
        .go(&format!(
            "{}/saipa/complaints/new?tracking={code}",
            env.base
        ))
        .await;
    let csrf = input(&form.body, "csrf");
    let pdf = b"%PDF-1.4\n% the contract's price page\n".to_vec();
    let (status, body) = file_complaint(
        &b,
        &env.base,
        &csrf,
        &code,
        "price_change",
        "The price went up after the contract.",
        &[("forged.pdf", b"<html><script>alert(1)</script>".to_vec())],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("PDF") && body.contains("پیوست"), "{body}");
    let (status, location) = file_complaint(
        &b,
        &env.base,
        &csrf,
        &code,
        "price_change",
        "The price went up after the contract.",
        &[("contract.pdf", pdf.clone())],
    )
    .await;
    assert_eq!(status, 303, "{location}");
    let complaint_id = location.rsplit('/').next().expect("id").to_owned();
    let shown = b.go(&format!("{}{location}", env.base)).await;
    assert_eq!(
        data(&shown.body, "now-with").as_deref(),
        Some("manufacturer")
    );
    // Another buyer, or nobody, reads nothing of it.
    let other = &env.citizens[1];
    let (ob, _) = join_and_stay(&env, other).await;
    let theirs = ob.get(&format!("{}{location}", env.base)).await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);

    // Saipa's back-end reads it with its complaints scope, and the attachment.
    let secret = env
        .seed_clients
        .iter()
        .find(|(id, _)| id == "saipa")
        .map(|(_, s)| s.clone())
        .expect("seed client");
    let token = |scope: &'static str| {
        let (issuer, secret) = (env.issuer.clone(), secret.clone());
        async move {
            local::parties::service_token(&issuer, "saipa", &secret, scope)
                .await
                .expect("token")
        }
    };
    let complaints_token = token("presale.complaints").await;
    let list: serde_json::Value = http
        .get(format!("{}/api/complaints", env.replica))
        .bearer_auth(&complaints_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let listed = list["complaints"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == complaint_id.as_str()))
        .unwrap_or_else(|| panic!("the complaint in {list}"))
        .clone();
    let sha = listed["files"][0]["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let file = http
        .get(format!(
            "{}/api/complaints/{complaint_id}/files/{sha}",
            env.replica
        ))
        .bearer_auth(&complaints_token)
        .send()
        .await
        .expect("file");
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.bytes().await.expect("bytes").to_vec(), pdf);
    // Kept outside the database, under its hash.
    assert!(env_files(&env).join(&sha[..2]).join(&sha).is_file());
    // The deliveries scope does not read complaints.
    let deliveries = token("presale.deliveries").await;
    let refused = http
        .get(format!("{}/api/complaints", env.replica))
        .bearer_auth(&deliveries)
        .send()
        .await
        .expect("refused");
    assert_eq!(refused.status(), 403);

    // Answered in time; the buyer takes it further: the province's office has it.
    let answered = http
        .post(format!(
            "{}/api/complaints/{complaint_id}/answer",
            env.replica
        ))
        .bearer_auth(&complaints_token)
        .json(&serde_json::json!({"answer": "The price is the contract's; see clause 4."}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answered.status(), 200);
    let again = http
        .post(format!(
            "{}/api/complaints/{complaint_id}/answer",
            env.replica
        ))
        .bearer_auth(&complaints_token)
        .json(&serde_json::json!({"answer": "A second answer."}))
        .send()
        .await
        .expect("answer");
    assert_eq!(again.status(), 409, "one answer");
    let shown = b.go(&format!("{}{location}", env.base)).await;
    assert!(shown.body.contains("clause 4"), "{}", shown.body);
    let escalated = b
        .post_form_follow(&shown, "/respond", &[("accept", "no")])
        .await;
    assert_eq!(escalated.status, 200, "{}", escalated.body);
    assert_eq!(
        data(&escalated.body, "now-with").as_deref(),
        Some("province")
    );

    // A second complaint, about late delivery, left unanswered: eleven days on (moved in
    // the database by its owner) it is with the province's office, and Saipa's record
    // withholds a star at the IdP within seconds.
    let (status, second) = file_complaint(
        &b,
        &env.base,
        &csrf,
        &code,
        "late_delivery",
        "No date for the delivery yet.",
        &[],
    )
    .await;
    assert_eq!(status, 303, "{second}");
    let second_id = second.rsplit('/').next().expect("id").to_owned();
    sqlx::query(
        "UPDATE complaints SET filed_at = filed_at - 950400, answer_due = answer_due - 950400 \
         WHERE id = $1",
    )
    .bind(&second_id)
    .execute(env.store.pool())
    .await
    .expect("eleven days on");
    let shown = b.go(&format!("{}{second}", env.base)).await;
    assert_eq!(data(&shown.body, "now-with").as_deref(), Some("province"));
    eventually(20, "a star withheld for the unanswered complaint", || {
        let core = idp_core.clone();
        async move { rating(core).await.rating() == 3 }
    })
    .await;
    let audit = idp_core.db.audit_log(50).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "client.withheld" && a.subject == "saipa"),
        "{audit:?}"
    );
    // The ministry's list and the badge show three stars.
    let badge = http
        .get(format!("{}/badge/saipa", env.issuer))
        .send()
        .await
        .expect("badge")
        .text()
        .await
        .expect("badge");
    assert_eq!(data(&badge, "stars").as_deref(), Some("3"), "{badge}");

    // Warranty: the car delivered, then in the workshop for a safety defect. Over 48
    // hours off the road (the visit's start moved back in the database), a like
    // replacement car is due; after three failed safety repairs, replacement or refund.
    let stage = |s: &'static str| serde_json::json!({"tracking_code": code, "stage": s});
    for s in ["contract", "delivered"] {
        let r = http
            .post(format!("{}/api/deliveries", env.replica))
            .bearer_auth(&deliveries)
            .json(&stage(s))
            .send()
            .await
            .expect("stage");
        assert_eq!(r.status(), 201);
    }
    let warranty = token("presale.warranty").await;
    let open = |safety: bool| {
        let (http, url, warranty, code) = (
            http.clone(),
            format!("{}/api/warranty", env.replica),
            warranty.clone(),
            code.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(warranty)
                .json(&serde_json::json!({"tracking_code": code, "work_order": "WO-1: brakes pull left", "safety": safety}))
                .send()
                .await
                .expect("visit");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let back = |id: String, failed: bool| {
        let (http, url, warranty) = (
            http.clone(),
            format!("{}/api/warranty/{id}/return", env.replica),
            warranty.clone(),
        );
        async move {
            http.post(url)
                .bearer_auth(warranty)
                .json(&serde_json::json!({"failed": failed}))
                .send()
                .await
                .expect("return")
                .status()
                .as_u16()
        }
    };
    let (status, first) = open(true).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        open(true).await.0,
        409,
        "the car is in the workshop already"
    );
    let no_order = http
        .post(format!("{}/api/warranty", env.replica))
        .bearer_auth(&warranty)
        .json(&serde_json::json!({"tracking_code": code, "work_order": " ", "safety": true}))
        .send()
        .await
        .expect("visit");
    assert_eq!(
        no_order.status(),
        422,
        "a written work order at every visit"
    );
    let first_id = first["id"].as_str().expect("id").to_owned();
    let delivered_at: i64 = sqlx::query_scalar::<_, i64>(
        "SELECT at FROM delivery_stages WHERE stage = 'delivered' AND application_id = \
         (SELECT application_id FROM warranty_visits WHERE id = $1)",
    )
    .bind(&first_id)
    .fetch_one(env.store.pool())
    .await
    .expect("delivered");
    let visit_at = |hours: i64| {
        let (pool, id) = (env.store.pool().clone(), first_id.clone());
        async move {
            sqlx::query("UPDATE warranty_visits SET opened_at = $2 WHERE id = $1")
                .bind(id)
                .bind(service_kit::clock::now() - hours * 3600)
                .execute(&pool)
                .await
                .expect("moved");
        }
    };
    // The delivery itself, moved back with it (a visit is never before the delivery).
    sqlx::query(
        "UPDATE delivery_stages SET at = at - 4000000 WHERE application_id = \
                 (SELECT application_id FROM warranty_visits WHERE id = $1)",
    )
    .bind(&first_id)
    .execute(env.store.pool())
    .await
    .expect("delivered earlier");
    assert!(delivered_at > 0);
    visit_at(47).await;
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert!(
        !mine.body.contains("data-replacement-car-due"),
        "{}",
        mine.body
    );
    visit_at(49).await;
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert!(
        mine.body.contains("data-replacement-car-due"),
        "{}",
        mine.body
    );
    assert!(
        !mine.body.contains("data-replace-or-refund-due"),
        "{}",
        mine.body
    );
    assert_eq!(back(first_id.clone(), true).await, 200);
    for _ in 0..2 {
        let (status, v) = open(true).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(
            back(v["id"].as_str().expect("id").to_owned(), true).await,
            200
        );
    }
    let mine = b.go(&format!("{}/saipa/applications", env.base)).await;
    assert!(
        mine.body.contains("data-replace-or-refund-due"),
        "{}",
        mine.body
    );
    // Thirty days off the road in all, another car's way: the same law, by days.
    let cars: serde_json::Value = http
        .get(format!("{}/api/warranty", env.replica))
        .bearer_auth(&warranty)
        .send()
        .await
        .expect("cars")
        .json()
        .await
        .expect("json");
    assert_eq!(cars["cars"][0]["failed_safety"], 3, "{cars}");
    assert_eq!(cars["cars"][0]["replace_or_refund_due"], true);
    let (status, long) = open(false).await;
    assert_eq!(status, 201, "{long}");
    let long_id = long["id"].as_str().expect("id").to_owned();
    sqlx::query("UPDATE warranty_visits SET opened_at = $2 WHERE id = $1")
        .bind(&long_id)
        .bind(service_kit::clock::now() - 31 * DAY)
        .execute(env.store.pool())
        .await
        .expect("moved");
    let cars: serde_json::Value = http
        .get(format!("{}/api/warranty", env.replica))
        .bearer_auth(&warranty)
        .send()
        .await
        .expect("cars")
        .json()
        .await
        .expect("json");
    assert!(
        cars["cars"][0]["off_road_secs"]
            .as_i64()
            .unwrap_or_default()
            >= 30 * DAY,
        "{cars}"
    );

    // Inspection: an inspector opens a case from the escalated complaint, records a
    // finding and proposes to suspend Saipa; the proposer cannot approve it, an issuer
    // or a second inspector can. At once: Saipa's sign-ins refused at the IdP, its
    // campaign suspended here with nobody's place lost, both audited.
    add_staff(&env, "inspector.one", Role::Inspector).await;
    add_staff(&env, "inspector.two", Role::Inspector).await;
    let inspector = Browser::new("");
    staff_sign_in(&env, &inspector, "inspector.one", 0).await;
    let c = inspector
        .go(&format!("{}/ministry/complaints/{complaint_id}", env.base))
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    // One inspector's word is a proposal; the complaint is not decided yet.
    let decided = inspector
        .post_form_follow(&c, "/decide", &[("outcome", "upheld")])
        .await;
    assert!(
        decided.body.contains("data-proposed=\"upheld\"")
            && !decided.body.contains("data-outcome="),
        "{}",
        decided.body
    );
    let again = inspector
        .post_form(&decided, "/decide", &[("outcome", "upheld")])
        .await;
    assert_eq!(again.status, 403, "its proposer cannot confirm it");
    let case = inspector
        .post_form_follow(
            &decided,
            "/ministry/cases",
            &[
                ("manufacturer", "saipa"),
                ("complaint", &complaint_id),
                ("summary", "Prices raised after contracts."),
            ],
        )
        .await;
    assert_eq!(case.status, 200, "{}", case.body);
    assert!(data(&case.body, "case").is_some_and(|c| c.starts_with("case-")));
    let found = inspector
        .post_form_follow(
            &case,
            "/findings",
            &[("finding", "Twelve contracts repriced.")],
        )
        .await;
    assert!(
        found.body.contains("Twelve contracts repriced."),
        "{}",
        found.body
    );
    let proposed = inspector
        .post_form_follow(&found, "/propose", &[("what", "suspend")])
        .await;
    assert_eq!(proposed.status, 200, "{}", proposed.body);
    assert!(
        testkit::forms::form(&proposed.body, "/approve").is_none(),
        "its author is not offered the approval"
    );
    // Nothing has happened yet.
    assert_eq!(
        rating(idp_core.clone()).await.status,
        idp::domain::client::ClientStatus::Active
    );
    let second_pair = Browser::new("");
    staff_sign_in(&env, &second_pair, "inspector.two", 0).await;
    let c = second_pair
        .go(&format!("{}/ministry/complaints/{complaint_id}", env.base))
        .await;
    let confirmed = second_pair
        .post_form_follow(&c, "/decide", &[("outcome", "upheld")])
        .await;
    assert!(
        confirmed.body.contains("data-outcome=\"upheld\""),
        "{}",
        confirmed.body
    );
    let approved = decide_on_page(&env, &second_pair, "/approve").await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(
        data(&approved.body, "standing").as_deref(),
        Some("suspended")
    );
    // At the IdP, at once: the client is suspended, a sign-in is refused.
    assert_eq!(
        rating(idp_core.clone()).await.status,
        idp::domain::client::ClientStatus::Suspended
    );
    let visitor = Browser::new("");
    let refused = visitor.go(&format!("{}/saipa/login", env.base)).await;
    assert!(
        refused
            .body
            .contains("The ministry has suspended this sales site"),
        "{}",
        refused.body
    );
    // Here: the campaign is suspended; the waiting buyer keeps their place.
    let license = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.manufacturer == "saipa")
        .expect("saipa");
    assert!(!license.is_active(), "the campaign is paused");
    // Both audited: the approval here, the change there under the ministry's client and
    // the inspector's name.
    let log = env.store.audit_log().await.expect("audit");
    for action in [
        "manufacturer.suspend",
        "license.suspend",
        "case.finding",
        "complaint.decide",
    ] {
        assert!(
            log.iter().any(|e| e.action == action),
            "{action} in {log:?}"
        );
    }
    let idp_log = idp_core.db.audit_log(50).await.expect("audit");
    assert!(
        idp_log.iter().any(|a| a.action == "client.suspend"
            && a.subject == "saipa"
            && a.actor.contains("ministry-console for inspector.one")),
        "{idp_log:?}"
    );
    // A license's own resumption cannot bring the campaign back while Saipa is suspended.
    add_staff(&env, "issuer.one", Role::Issuer).await;
    add_staff(&env, "issuer.two", Role::Issuer).await;
    let p = env
        .store
        .propose(
            &presale::store::proposals::Change::Resume {
                license_id: license.id.clone(),
            },
            "issuer.one",
            service_kit::clock::now(),
        )
        .await
        .expect("sql")
        .expect("proposed");
    let refused = env
        .store
        .decide(
            &p,
            "issuer.two",
            presale::store::proposals::Decision::Approve,
            service_kit::clock::now(),
        )
        .await
        .expect("sql");
    assert_eq!(
        refused,
        Err(presale::store::proposals::ProposalError::MakerSuspended)
    );
}

/// Where the deployment keeps complaints' attachments.
fn env_files(env: &Env) -> std::path::PathBuf {
    env._deployment.files.path().to_path_buf()
}
