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
