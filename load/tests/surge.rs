//! A small surge through the real services, in-process: stub registry and SMS, the IdP,
//! two presale replicas behind one public URL, on PostgreSQL and Redis; the load tool's
//! citizens walk every page over HTTP. The report must account for everyone, fill the cap
//! exactly, never duplicate, and carry the fairness figures.

use std::time::Duration;

use load::curve::Curve;
use load::journey::Journey;
use load::run::{Mix, Plan};
use local::{Deployment, Options};
use presale::domain::NewLicense;
use testkit::servers::{postgres_admin_url as postgres_admin, redis_url as redis};

/// Stubs, the IdP, Saipa and Iran Khodro registered, two presale replicas, `license`.
async fn deploy(postgres: bool, citizens: usize, license: NewLicense) -> Deployment {
    local::deploy(Options {
        postgres_admin: postgres.then(postgres_admin),
        redis_url: if postgres { redis() } else { String::new() },
        citizens,
        presale_replicas: 2,
        ..Options::new(license)
    })
    .await
    .expect("deployment")
}

/// 600 applications a minute, 200 admitted at once, two minutes to apply, at least 21.
fn queue_license(units: i64, opens_in: i64) -> NewLicense {
    NewLicense {
        max_active: 200,
        apply_window_secs: 120,
        min_age: Some(21),
        ..local::queue_license(units, opens_in, 60_000)
    }
}

fn journey(d: &Deployment, poll_scale: f64) -> Journey {
    Journey::local(d, poll_scale, Duration::from_secs(120)).expect("journey")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_surge_is_accounted_for_fills_the_cap_and_stays_fair() {
    // Arrange: 300 citizens over 20 s through two replicas; 120 units; the campaign opens
    // about a third of the way in, so some join before the opening and some after; each
    // places the down payment's hold at the stub bank before joining (issue 30).
    let d = deploy(
        true,
        300,
        local::deploy::with_stub_bank_hold(queue_license(120, 8)),
    )
    .await;
    let plan = Plan {
        scenario: "test-surge".into(),
        curve: Curve {
            bucket_secs: 1.0,
            counts: vec![15.0; 20],
        },
        seed: 7,
        mix: Mix {
            returning: 0.1,
            give_up: 0.0,
            patience_secs: 60.0,
            retry: 1.0,
            wrong_code: 0.1,
            second_device: 0.05,
        },
        citizens: d.citizens.clone(),
        sso_from: Some("iran-khodro".into()),
        p99_limit_ms: 500.0,
        progress: false,
        target: serde_json::json!({"presale": d.presale.as_str()}),
        faults: Vec::new(),
        injector: None,
        finish_within: Duration::from_secs(600),
    };

    // Act
    let report = load::run::run(plan, journey(&d, 0.25), std::future::pending())
        .await
        .expect("run");

    // Assert: everyone accounted for, nobody failed.
    eprintln!("{}", report.summary());
    let o = &report.outcomes;
    assert_eq!(report.arrivals.planned, 300);
    assert_eq!(o.total, 300, "{}", report.summary());
    assert!(
        o.failed.is_empty() && o.interrupted.is_empty(),
        "{}",
        report.summary()
    );
    let sold_out: u64 = o.sold_out.values().sum();
    let refused: u64 = o.refused.values().sum();
    assert_eq!(o.applied + sold_out + refused + o.gave_up, 300);
    // The cap is filled exactly, once per national ID, as the database agrees.
    let a = &report.applications;
    assert_eq!(a.cap, Some(120));
    assert_eq!(a.expected, Some(a.eligible.min(120)));
    assert_eq!(a.matches_expected, Some(true), "{}", report.summary());
    assert_eq!(a.accepted, 120);
    assert_eq!(o.applied, 120, "outcomes agree with accepted applications");
    assert_eq!((a.duplicates, a.second_device_mismatch), (0, 0));
    let license = d.store.licenses().await.expect("licenses").remove(0);
    assert_eq!(
        d.store.accepted_count(&license.id).await.expect("count"),
        120
    );
    // Every mix was exercised: SSO (consent without the phone step), wrong codes refused,
    // second devices.
    let step = |n: &str| report.steps.iter().find(|s| s.name == n);
    let phone = step("phone").map(|s| s.count).unwrap_or(0);
    let consent = step("consent").map(|s| s.count).unwrap_or(0);
    assert!(
        consent > phone - 20,
        "returning citizens skip the phone step"
    );
    assert!(step("otp (wrong code)").is_some_and(|s| s.errors_total == 0 && s.count > 0));
    assert!(step("join").is_some_and(|s| s.errors_total == 0));
    // The bank step, walked by everyone once (a second device finds the hold placed).
    assert!(
        step("bank_approve").is_some_and(|s| s.errors_total == 0 && s.count == 300),
        "{}",
        report.summary()
    );
    let holds = d.store.holds_of_license(&license.id).await.expect("holds");
    assert_eq!(holds.len(), 300);
    assert!(holds.iter().all(|h| h.state.counts()));
    // Fairness figures: first come, first served after the opening; a shuffle before.
    let f = &report.fairness;
    assert!(f.after_opening.n > 20 && f.before_opening.n > 20, "{f:?}");
    assert_eq!(f.after_opening.out_of_order, 0);
    assert!(
        f.after_opening.kendall_tau.is_some_and(|t| t > 0.9),
        "{f:?}"
    );
    assert!(f.before_opening.distinct_tickets);
    assert!(f.before_opening.p_value.is_some());
    // The timeline and the pages are written.
    assert!(report.timeline.iter().map(|p| p.arrivals).sum::<u64>() == 300);
    assert!(report.timeline.iter().any(|p| p.waiting > 0));
    let out = std::env::temp_dir().join(format!("emta-load-report-{}", std::process::id()));
    let (json, html) = load::run::write(&report, &out).expect("write");
    let page = std::fs::read_to_string(html).expect("html");
    assert!(page.contains("<svg") && page.contains("Kendall"));
    let back: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("json")).expect("parse");
    assert_eq!(back["applications"]["accepted"], 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_run_gives_a_partial_report() {
    let d = deploy(false, 200, queue_license(50, 0)).await;
    let plan = Plan {
        scenario: "stopped".into(),
        curve: Curve {
            bucket_secs: 1.0,
            counts: vec![20.0; 10],
        },
        seed: 1,
        mix: Mix::default(),
        citizens: d.citizens.clone(),
        sso_from: None,
        p99_limit_ms: 500.0,
        progress: false,
        target: serde_json::json!({}),
        faults: Vec::new(),
        injector: None,
        finish_within: Duration::from_secs(600),
    };
    let report = load::run::run(
        plan,
        journey(&d, 1.0),
        tokio::time::sleep(Duration::from_secs(3)),
    )
    .await
    .expect("run");
    assert!(report.interrupted);
    assert!(report.arrivals.launched < 200 && report.arrivals.launched > 20);
    assert_eq!(
        report.outcomes.total, report.arrivals.launched,
        "everyone who came is accounted for"
    );
    assert!(!report.verdict.held);
    assert!(report
        .verdict
        .reasons
        .iter()
        .any(|r| r.contains("interrupted")));
}

/// A run always ends (issue 12): citizens still waiting `finish_within` after the last
/// arrival are counted failed and the run reports, rather than waiting on them. Here the
/// campaign admits one applicant a minute, so nearly everyone who joins waits, and the
/// deadline is 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_citizens_cannot_finish_ends_at_its_deadline() {
    let d = deploy(true, 20, local::queue_license(50, 0, 1)).await;
    let plan = Plan {
        scenario: "overdue".into(),
        curve: Curve {
            bucket_secs: 1.0,
            counts: vec![10.0; 2],
        },
        seed: 3,
        mix: Mix::default(),
        citizens: d.citizens.clone(),
        sso_from: None,
        p99_limit_ms: 500.0,
        progress: false,
        target: serde_json::json!({}),
        faults: Vec::new(),
        injector: None,
        finish_within: Duration::from_secs(3),
    };
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        load::run::run(plan, journey(&d, 1.0), std::future::pending()),
    )
    .await
    .expect("the run ended on its own")
    .expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ended at its deadline, not when the campaign opens: {:?}",
        started.elapsed()
    );
    assert!(report.overdue, "{:?}", report.outcomes);
    assert!(!report.interrupted);
    assert_eq!(report.outcomes.total, 20, "everyone is accounted for");
    let overdue: u64 = report
        .outcomes
        .failed
        .iter()
        .filter(|(why, _)| why.contains("the run's deadline"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        overdue >= 15,
        "the waiting citizens counted failed at the deadline: {:?}",
        report.outcomes
    );
    assert!(!report.verdict.held);
}
