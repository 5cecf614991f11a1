//! Registration as real rounds ran it (issue 30): the registries a license asks (the
//! traffic police's driving licences, the vehicle registry's cars and plates), over HTTP
//! to the stub registries, each refusal naming its rule; a registry that cannot answer is
//! "try again", never a refusal and never a pass.

use super::*;
use presale::domain::Registration;

/// Both of the real rounds' registry rules: a valid driving licence, no car in 48 months.
fn real_rules() -> Option<Registration> {
    Some(Registration {
        driving_licence: true,
        no_vehicle_months: Some(Registration::VEHICLE_MONTHS),
    })
}

/// Signs `who` in at Iran Khodro's storefront in a new browser and posts its join form:
/// the answer as it came (no redirect followed).
async fn enter(env: &Env, who: &FixtureCitizen) -> reqwest::Response {
    let b = Browser::new("");
    let front = sign_in_to_join(env, &b, "iran-khodro", who).await;
    let url = format!("{}/iran-khodro/", env.base);
    b.http
        .post(resolve(&url, &form_action(&front.body, "/join")))
        .form(&[("csrf", input(&front.body, "csrf").as_str())])
        .send()
        .await
        .expect("join")
}

async fn registries(postgres: bool) {
    let now = service_kit::clock::now();
    // Saipa's queue asks both registries at applying; Iran Khodro's lottery at entering.
    let queue = NewLicense {
        registration: real_rules(),
        ..test_license("saipa", "Shahin", now)
    };
    let env = start_with(
        postgres.then(testkit::servers::postgres_admin_url),
        if postgres {
            testkit::Backend::Servers.redis_url()
        } else {
            testkit::Backend::Embedded.redis_url()
        },
        queue,
    )
    .await;
    let lottery = NewLicense {
        units: 3,
        selection: Selection::Lottery,
        registration: real_rules(),
        ..test_license("iran-khodro", "Tara", now)
    };
    issue(&env.store, lottery, now).await;
    // The stub's synthetic citizens: the eighth has no driving licence, the ninth a car
    // registered 20 months ago, the tenth a car registered 60 months ago and sold since.
    let (no_licence, recent_car, old_car) = (&env.citizens[7], &env.citizens[8], &env.citizens[9]);
    assert!(!no_licence.driving_licence && recent_car.vehicles[0].months_ago == 20);

    // A lottery: refused at entry, each with its rule's reason in both languages.
    let r = enter(&env, no_licence).await;
    assert_eq!(r.status(), 409);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("no valid driving licence") && body.contains("گواهینامه"),
        "{body}"
    );
    let r = enter(&env, recent_car).await;
    assert_eq!(r.status(), 409);
    let body = r.text().await.expect("body");
    assert!(
        body.contains("vehicle registry shows a vehicle") && body.contains("شماره‌گذاری"),
        "{body}"
    );
    let r = enter(&env, old_car).await;
    assert_eq!(r.status(), 303, "a car sold years ago does not count");
    // Asked again, the answers come from the cache: the registries are not.
    let asked = env.stub.registry_calls();
    assert_eq!(enter(&env, old_car).await.status(), 303);
    assert_eq!(
        env.stub.registry_calls(),
        asked,
        "answered from the caches (the IdP's identity cache, presale's registry cache)"
    );

    // A registry that cannot answer: try again, with Retry-After; nothing refused.
    let someone = &env.citizens[1];
    let b = Browser::new("");
    let front = sign_in_to_join(&env, &b, "iran-khodro", someone).await;
    let url = format!("{}/iran-khodro/", env.base);
    let join = resolve(&url, &form_action(&front.body, "/join"));
    let csrf = input(&front.body, "csrf");
    env.stub
        .registry_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = b
        .http
        .post(&join)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("join");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.expect("body");
    assert!(
        body.contains("traffic police registry cannot answer now"),
        "{body}"
    );
    env.stub
        .registry_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let r = b
        .http
        .post(&join)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("join");
    assert_eq!(r.status(), 303, "the retry enters");

    // A queue: the rules are asked when an admitted citizen applies, and the refused
    // citizen's slot goes to the next.
    let (b, wait) = join_and_stay(&env, no_licence).await;
    let page = until_admitted(&b, &wait, 20).await;
    let r = b
        .http
        .post(resolve(&wait, &form_action(&page.body, "/apply")))
        .form(&[("csrf", input(&page.body, "csrf").as_str())])
        .send()
        .await
        .expect("apply");
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("body").contains("driving licence"));
    let (b, wait) = join_and_stay(&env, old_car).await;
    let page = until_admitted(&b, &wait, 20).await;
    let done = apply_from(&b, &wait, &page).await;
    assert!(done.body.contains("data-tracking-code"), "{}", done.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_refuse_by_their_rule_and_an_outage_is_a_retry_embedded() {
    registries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_refuse_by_their_rule_and_an_outage_is_a_retry_on_postgres_and_redis() {
    registries(true).await;
}
