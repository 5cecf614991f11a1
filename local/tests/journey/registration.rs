//! Registration as real rounds ran it (issue 30): the registries a license asks (the
//! traffic police's driving licences, the vehicle registry's cars and plates), over HTTP
//! to the stub registries, each refusal naming its rule; a registry that cannot answer is
//! "try again", never a refusal and never a pass.

use super::*;
use presale::domain::Registration;
use presale::transparency::FromKeyring as _;

/// Both of the real rounds' registry rules: a valid driving licence, no car in 48 months.
fn real_rules() -> Option<Registration> {
    Some(Registration {
        driving_licence: true,
        no_vehicle_months: Some(Registration::VEHICLE_MONTHS),
        hold: None,
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
    // Told by SMS when the turn came (issue 30), once, however many replicas saw it.
    let to = testkit::citizens::e164(&old_car.mobile);
    let mut told = Vec::new();
    for _ in 0..20 {
        told = env.stub.outbox.list(to.as_deref(), 10);
        if !told.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let turns = told
        .iter()
        .filter(|t| t.text.contains("your turn in the Shahin presale has come"))
        .count();
    assert_eq!(turns, 1, "{told:?}");

    // An admitted citizen who has not applied is reminded that their time is about to
    // lapse (issue 30) once it is within a quarter of the window (five minutes here: 75 s
    // ahead), once, however many ticks and replicas see it; one who applied is not.
    let waiter = &env.citizens[3];
    let (b, wait) = join_and_stay(&env, waiter).await;
    until_admitted(&b, &wait, 20).await;
    let to = testkit::citizens::e164(&waiter.mobile);
    let reminded = |told: &[testkit::stubs::OutboxEntry]| {
        told.iter()
            .filter(|t| {
                t.text
                    .contains("your time to apply in the Shahin presale ends at")
            })
            .count()
    };
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let told = env.stub.outbox.list(to.as_deref(), 10);
    assert_eq!(reminded(&told), 0, "not yet: {told:?}");
    // Four minutes on: the deadline is a minute away.
    let saipa = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.manufacturer == "saipa")
        .expect("the queue");
    sqlx::query(
        "UPDATE queue_admissions SET deadline_ms = deadline_ms - 240000 \
         WHERE license_id = $1 AND released = 0",
    )
    .bind(&saipa.id)
    .execute(env.store.pool())
    .await
    .expect("four minutes on");
    let mut told = Vec::new();
    for _ in 0..100 {
        told = env.stub.outbox.list(to.as_deref(), 10);
        if reminded(&told) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reminded(&told), 1, "{told:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let told = env.stub.outbox.list(to.as_deref(), 10);
    assert_eq!(reminded(&told), 1, "told once: {told:?}");
    let applied = env
        .stub
        .outbox
        .list(testkit::citizens::e164(&old_car.mobile).as_deref(), 10);
    assert_eq!(reminded(&applied), 0, "{applied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_refuse_by_their_rule_and_an_outage_is_a_retry_embedded() {
    registries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_refuse_by_their_rule_and_an_outage_is_a_retry_on_postgres_and_redis() {
    registries(true).await;
}

/// The bank step as a citizen walks it: choose the bank on the campaign's hold page, go
/// to the bank's page, sign in with the card and PIN, approve, come back. What a person
/// does when a step says "try again" (the stub bank fails some calls), this does too: the
/// hold page again, or the way back again.
async fn place_hold(env: &Env, b: &Browser, m: &str, id: &str, who: &FixtureCitizen) {
    let hold_url = format!("{}/{m}/c/{id}/hold", env.base);
    for _ in 0..40 {
        let page = b.go(&hold_url).await;
        if page.body.contains("data-hold-state=\"held\"") {
            return;
        }
        let out = b
            .post(
                &hold_url,
                &[
                    ("csrf", input(&page.body, "csrf").as_str()),
                    ("bank", local::deploy::STUB_BANK),
                ],
            )
            .await;
        if out.status == 503 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(out.status, 303, "{}", out.body);
        let pay = out.location.clone().expect("to the bank");
        let bank_page = b.go(&pay).await;
        assert!(
            bank_page.body.contains("power-of-attorney"),
            "{}",
            bank_page.body
        );
        let login = b
            .post(
                &resolve(&pay, &form_action(&bank_page.body, "/login")),
                &[
                    ("card", testkit::bank::card_of(&who.national_id).as_str()),
                    ("pin", testkit::bank::PIN),
                ],
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.body);
        let approved = b
            .post(
                &resolve(&pay, &form_action(&login.body, "/approve")),
                &[
                    ("auth", input(&login.body, "auth").as_str()),
                    ("decision", "approve"),
                ],
            )
            .await;
        let back = approved.location.clone().expect("back to emta");
        for _ in 0..20 {
            let p = b.go(&back).await;
            if p.status == 200 {
                assert!(p.body.contains("data-hold-outcome=\"true\""), "{}", p.body);
                return;
            }
            assert_eq!(p.status, 503, "{}", p.body);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    panic!("no hold placed for {}", who.national_id);
}

/// Signs `who` in at `m` in a new browser: the browser and the storefront's page.
async fn signed_in(env: &Env, m: &str, who: &FixtureCitizen) -> (Browser, Page) {
    let b = Browser::new("");
    let front = sign_in_to_join(env, &b, m, who).await;
    (b, front)
}

async fn holds_and_reserves(postgres: bool) {
    let now = service_kit::clock::now();
    let env = start(postgres).await;
    let deployment = &env._deployment;
    // A fault-ridden bank: one call in ten fails (half of them after doing their work),
    // one in twenty answers after presale's timeout, and every approval is also posted
    // back twice server-to-server.
    env.stub.bank.faults(100, 50, 1_500, true);
    let lottery = NewLicense {
        units: 2,
        selection: Selection::Lottery,
        closes_at: now + 20,
        apply_window_secs: 6,
        registration: Some(Registration {
            driving_licence: false,
            no_vehicle_months: None,
            hold: Some(presale::domain::HoldTerms {
                banks: vec![local::deploy::STUB_BANK.into()],
                amount: 1_000_000_000,
                title: "پیش‌فروش تارا — نوبت آزمایشی".into(),
                before: presale::domain::HoldBefore::Entry,
            }),
        }),
        ..test_license("iran-khodro", "Tara", now)
    };
    let id = env
        .store
        .issue_license(&lottery, now)
        .await
        .expect("sql")
        .expect("valid");
    let m = "iran-khodro";

    // Without a confirmed hold, nobody enters.
    let entrants = &env.citizens[..5];
    let mut browsers = Vec::new();
    for (i, who) in entrants.iter().enumerate() {
        let (b, front) = signed_in(&env, m, who).await;
        let join = resolve(
            &format!("{}/{m}/", env.base),
            &form_action(&front.body, "/join"),
        );
        let csrf = input(&front.body, "csrf");
        if i == 0 {
            let r = b
                .http
                .post(&join)
                .form(&[("csrf", csrf.as_str())])
                .send()
                .await
                .expect("join");
            assert_eq!(r.status(), 409);
            assert!(r
                .text()
                .await
                .expect("body")
                .contains("hold at a participating bank"));
        }
        place_hold(&env, &b, m, &id, who).await;
        let r = b
            .http
            .post(&join)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("join");
        assert_eq!(r.status(), 303, "entered once the hold is confirmed");
        browsers.push(b);
    }
    // One hold each, however many confirmations arrived.
    let holds = env.store.holds_of_license(&id).await.expect("holds");
    assert_eq!(holds.len(), 5);
    assert!(holds.iter().all(|h| h.state.counts()), "{holds:?}");
    assert!(
        env.stub
            .bank
            .mandates()
            .iter()
            .filter(|m| m.status == "held")
            .count()
            >= 5,
        "each hold confirmed by the bank"
    );

    // The draw: the winner ranked first applies, the second does not, and the first
    // reserve is promoted in the second's place, told by SMS, and applies.
    let rank_of = |nid: presale::domain::NationalId| {
        let store = env.store.clone();
        let id = id.clone();
        async move { store.lottery_rank(&id, &nid).await.expect("rank") }
    };
    let mut ranks = vec![None; 5];
    for _ in 0..240 {
        for (i, who) in entrants.iter().enumerate() {
            let nid = presale::domain::NationalId::parse(&who.national_id).expect("nid");
            ranks[i] = rank_of(nid).await;
        }
        if ranks.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let ranks: Vec<i64> = ranks.into_iter().map(|r| r.expect("drawn")).collect();
    let at = |r: i64| ranks.iter().position(|x| *x == r).expect("rank");
    let wait = |_: usize| format!("{}/{m}/c/{id}/wait", env.base);
    let apply = |i: usize| {
        let b = browsers[i].clone();
        let url = wait(i);
        async move {
            let page = until_admitted(&b, &url, 30).await;
            apply_from(&b, &url, &page).await
        }
    };
    let first = apply(at(1)).await;
    assert!(first.body.contains("data-tracking-code"), "{}", first.body);
    let promoted = apply(at(3)).await;
    assert!(
        promoted.body.contains("data-tracking-code"),
        "{}",
        promoted.body
    );
    let told = env.stub.outbox.list(
        testkit::citizens::e164(&entrants[at(3)].mobile).as_deref(),
        10,
    );
    assert!(
        !postgres
            || told
                .iter()
                .any(|t| t.text.contains("promoted from the Tara reserve list")),
        "{told:?}"
    );
    // Rank 2 lapsed and cannot apply now.
    let late = browsers[at(2)].go(&wait(at(2))).await;
    assert!(!late.body.contains("/apply\""), "{}", late.body);

    // The round is over: the accepted applicants' holds captured, every other released,
    // each exactly once, through the bank's faults.
    let mut settled = Vec::new();
    for _ in 0..240 {
        settled = env.store.holds_of_license(&id).await.expect("holds");
        if settled.iter().all(|h| {
            matches!(
                h.state,
                presale::store::holds::HoldState::Captured
                    | presale::store::holds::HoldState::Released
            )
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let accepted: Vec<&str> = [at(1), at(3)]
        .iter()
        .map(|i| entrants[*i].national_id.as_str())
        .collect();
    let mandates = env.stub.bank.mandates();
    for h in &settled {
        let capture = accepted.contains(&h.national_id.as_str());
        assert_eq!(
            h.state,
            if capture {
                presale::store::holds::HoldState::Captured
            } else {
                presale::store::holds::HoldState::Released
            },
            "{h:?}"
        );
        let at_bank = mandates
            .iter()
            .find(|x| Some(&x.token) == h.token.as_ref())
            .expect("the bank's mandate");
        assert_eq!(
            (at_bank.captures, at_bank.releases),
            if capture { (1, 0) } else { (0, 1) },
            "exactly once: {at_bank:?}"
        );
    }
    let outbox = |i: usize| {
        env.stub
            .outbox
            .list(testkit::citizens::e164(&entrants[i].mobile).as_deref(), 10)
    };
    // Told, within the SMS budget (sent off the settlement, so polled). The phones are
    // kept in the shared store: the embedded deployment's two replicas share none (the
    // in-process store is for one node), so only there may another replica not know it.
    let shared = if postgres {
        vec![(at(1), "captured"), (at(2), "released")]
    } else {
        Vec::new()
    };
    for (i, word) in shared {
        let mut told = false;
        for _ in 0..50 {
            told = outbox(i).iter().any(|t| t.text.contains(word));
            if told {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(told, "{word}: {:?}", outbox(i));
    }

    // The bank's statement and emta's record agree; then each kind of difference, planted
    // at the bank, is reported.
    let banks = presale::adapters::bank::Banks::new(
        &[local::deploy::stub_bank(&env.stub_url(), &env.stub.bank)],
        std::time::Duration::from_secs(10),
    );
    env.stub.bank.faults(0, 0, 0, false);
    let report = presale::reconcile::reconcile(&env.store, &banks, &id)
        .await
        .expect("reconcile");
    assert_eq!(report.differences, vec![], "{}", report.table());
    let token = |i: usize| {
        settled
            .iter()
            .find(|h| h.national_id == entrants[i].national_id)
            .and_then(|h| h.token.clone())
            .expect("token")
    };
    env.stub.bank.plant(&token(at(1)), |x| x.captures = 2);
    env.stub.bank.plant(&token(at(3)), |x| x.releases = 1);
    env.stub
        .bank
        .plant(&token(at(2)), |x| x.status = "held".into());
    env.stub.bank.plant_unknown(
        &entrants[0].national_id,
        1_000_000_000,
        "x",
        &lottery.license_no,
    );
    let report = presale::reconcile::reconcile(&env.store, &banks, &id)
        .await
        .expect("reconcile");
    use presale::reconcile::Kind;
    let mut kinds: Vec<Kind> = report.differences.iter().map(|d| d.kind).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        kinds,
        vec![
            Kind::CapturedTwice,
            Kind::ReleasedAndCaptured,
            Kind::StillHeldAfterRound,
            Kind::UnknownToEmta
        ],
        "{}",
        report.table()
    );
    // The command says the same, as JSON, and exits non-zero.
    let banks_file = tempfile_in(
        &serde_json::to_vec(&[local::deploy::stub_bank(&env.stub_url(), &env.stub.bank)])
            .expect("json"),
    );
    let out = std::process::Command::new(testkit::servers::binary("presale", "presale"))
        .args([
            "reconcile",
            "--database-url",
            &deployment.presale_database_url,
            "--banks-file",
            &banks_file.display().to_string(),
            "--license",
            &id,
            "--json",
        ])
        .output()
        .expect("presale reconcile");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json["differences"].as_array().map(Vec::len),
        Some(4),
        "{json}"
    );

    // The public log tells it all, and the auditor finds it consistent: every entry after
    // its holder's hold, the promotion in the reserve list's order after the lapse, each
    // hold settled once, captured exactly for the accepted.
    let mut report = None;
    for _ in 0..40 {
        let r = presale::transparency::verify::audit(
            &presale::transparency::verify::HttpSource::new(&env.base),
            &id,
            presale::transparency::LogKey::from_keyring(&service_kit::keys::Keyring::new(
                deployment.secret.as_bytes(),
                &[],
            ))
            .verifier_key(),
            &[],
        )
        .await
        .expect("audit");
        let done = r.checked.iter().any(|c| c.contains("accepted"));
        report = Some(r);
        if done && env.store.log_pending().await.expect("pending") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let report = report.expect("audited");
    assert!(report.ok(), "{:?}", report.findings);
}

fn tempfile_in(bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("emta-banks-{}.json", rand::random::<u64>()));
    std::fs::write(&path, bytes).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_at_a_faulty_bank_settle_exactly_once_and_reserves_fill_the_cap_on_postgres_and_redis(
) {
    holds_and_reserves(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_at_a_faulty_bank_settle_exactly_once_and_reserves_fill_the_cap_embedded() {
    holds_and_reserves(false).await;
}
