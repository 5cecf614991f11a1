//! Concurrency properties, shown by racing many tasks against real Redis and SQL, with two
//! "replicas" (separate connection pools, as two presale processes would have) sharing
//! them: no oversell, one seat per person, fair order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use presale::domain::{
    ApplicationRequest, LicenseTerms, NationalId, NewLicense, PresaleKind, Refusal, Selection,
};
use presale::queue::{early_ticket, Joined, Queue, QueueSettings};
use presale::store::Store;
use testkit::servers::{redis_url, unique};
use testkit::Backend;

/// A fresh database and two stores on it (two replicas' pools).
async fn two_stores(backend: Backend) -> (Store, Store) {
    let db = backend.database("presale").await;
    let url = db.url.clone();
    // The SQLite file must outlive both pools, which live as long as the test.
    std::mem::forget(db);
    let a = Store::connect(&url, 10).await.expect("store a");
    a.migrate().await.expect("migrate");
    let b = Store::connect(&url, 10).await.expect("store b");
    (a, b)
}

fn license(units: i64, round: Option<&str>) -> NewLicense {
    let now = service_kit::clock::now();
    NewLicense {
        license_no: unique("L").replace('_', "-"),
        manufacturer: "saipa".into(),
        model: "Shahin".into(),
        units,
        unit_price: 8_000_000_000,
        down_payment: 2_000_000_000,
        kind: PresaleKind::Firm,
        delivery_deadline: now + 3600 + 200 * 24 * 3600,
        opens_at: now - 10,
        closes_at: now + 3600,
        selection: Selection::Queue,
        admission_per_min: 600,
        max_active: 100,
        apply_window_secs: 600,
        min_age: Some(18),
        round: round.map(str::to_owned),
        exclusion: None,
    }
}

async fn issue(store: &Store, l: &NewLicense) -> LicenseTerms {
    let id = store
        .issue_license(l, service_kit::clock::now())
        .await
        .expect("sql")
        .expect("valid license");
    LicenseTerms {
        id,
        units: l.units,
        opens_at: l.opens_at,
        closes_at: l.closes_at,
        min_age: l.min_age,
        round: l.round.clone(),
        active: true,
        lottery: false,
        apply_window_secs: l.apply_window_secs,
        exclusion: l.exclusion.clone(),
    }
}

fn person(i: usize) -> ApplicationRequest {
    ApplicationRequest {
        national_id: national_id(100_000_000 + i as u32),
        citizen_sub: format!("c-{i}"),
        birthdate: "1990-01-01".into(),
        ticket: i as i64 + 1,
    }
}

async fn cap_holds_under_a_storm_of_applications(backend: Backend) {
    // Arrange: 600 people, each applying twice at once, half through each replica; cap 50.
    let (a, b) = two_stores(backend).await;
    let terms = Arc::new(issue(&a, &license(50, None)).await);
    let today = "2026-11-22";

    // Act
    let mut tasks = Vec::new();
    for i in 0..600 {
        for (k, store) in [a.clone(), b.clone()].into_iter().enumerate() {
            let terms = terms.clone();
            tasks.push(tokio::spawn(async move {
                let r = store
                    .apply(&terms, &person(i), service_kit::clock::now(), today)
                    .await
                    .expect("sql");
                (i, k, r)
            }));
        }
    }
    let mut accepted = HashMap::new();
    let mut refusals: HashMap<Refusal, usize> = HashMap::new();
    for t in tasks {
        let (i, _, r) = t.await.expect("task");
        match r {
            Ok(acc) => {
                assert!(
                    accepted.insert(i, acc).is_none(),
                    "person {i} accepted twice"
                );
            }
            Err(why) => *refusals.entry(why).or_default() += 1,
        }
    }

    // Assert
    assert_eq!(accepted.len(), 50, "accepted == cap ({refusals:?})");
    assert_eq!(a.accepted_count(&terms.id).await.expect("count"), 50);
    assert_eq!(b.license_accepted(&terms.id).await.expect("counter"), 50);
    let codes: HashSet<_> = accepted.values().map(|a| a.tracking_code.clone()).collect();
    assert_eq!(codes.len(), 50, "tracking codes are unique");
    assert_eq!(refusals.values().sum::<usize>(), 1200 - 50);
}

async fn one_application_per_round_across_licenses(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let round = unique("round-1403");
    let l1 = Arc::new(issue(&a, &license(1000, Some(&round))).await);
    let l2 = Arc::new(issue(&a, &license(1000, Some(&round))).await);
    let mut tasks = Vec::new();
    for i in 0..150 {
        for (store, terms) in [(a.clone(), l1.clone()), (b.clone(), l2.clone())] {
            tasks.push(tokio::spawn(async move {
                (
                    i,
                    store
                        .apply(&terms, &person(i), service_kit::clock::now(), "2026-11-22")
                        .await
                        .expect("sql"),
                )
            }));
        }
    }
    let mut per_person: HashMap<usize, usize> = HashMap::new();
    for t in tasks {
        let (i, r) = t.await.expect("task");
        match r {
            Ok(_) => *per_person.entry(i).or_default() += 1,
            Err(why) => assert_eq!(why, Refusal::AlreadyAppliedInRound),
        }
    }
    assert_eq!(per_person.len(), 150, "everyone got exactly one");
    assert!(per_person.values().all(|&n| n == 1));
}

async fn suspension_and_eligibility_refuse_with_reasons(backend: Backend) {
    let (a, _) = two_stores(backend).await;
    let mut terms = issue(&a, &license(10, None)).await;
    let mut young = person(1);
    young.birthdate = "2010-01-01".into();
    let r = a
        .apply(&terms, &young, service_kit::clock::now(), "2026-11-22")
        .await
        .expect("sql");
    assert_eq!(r, Err(Refusal::TooYoung));
    assert!(a
        .set_license_active(&terms.id, false)
        .await
        .expect("suspend"));
    // Even with stale terms in a replica's cache, the SQL refuses a suspended license.
    let r = a
        .apply(&terms, &person(2), service_kit::clock::now(), "2026-11-22")
        .await
        .expect("sql");
    assert_eq!(r, Err(Refusal::SoldOut));
    terms.active = false;
    let r = a
        .apply(&terms, &person(2), service_kit::clock::now(), "2026-11-22")
        .await
        .expect("sql");
    assert_eq!(r, Err(Refusal::Suspended));
    assert!(Refusal::Suspended.text().fa.contains("تعلیق"));
    assert_eq!(
        a.accepted_count(&terms.id).await.expect("count"),
        0,
        "nothing half-stored"
    );
}

async fn a_recent_purchase_from_a_major_manufacturer_excludes(backend: Backend) {
    let (a, _) = two_stores(backend).await;
    let saipa = issue(&a, &license(10, None)).await;
    let mut l = license(10, None);
    l.manufacturer = "modiran".into();
    l.exclusion = Some(presale::domain::Exclusion {
        manufacturers: vec!["saipa".into(), "iran-khodro".into()],
        months: 48,
    });
    let other = issue(&a, &l).await;
    let buyer = person(7);
    assert!(a
        .apply(&saipa, &buyer, service_kit::clock::now(), "2026-11-22")
        .await
        .expect("sql")
        .is_ok());
    let r = a
        .apply(&other, &buyer, service_kit::clock::now(), "2026-11-22")
        .await
        .expect("sql");
    assert_eq!(r, Err(Refusal::RecentPurchase));
    assert!(
        a.apply(&other, &person(8), service_kit::clock::now(), "2026-11-22")
            .await
            .expect("sql")
            .is_ok(),
        "others may apply"
    );
}

async fn a_tracking_code_collision_is_retried_not_reported_as_already_applied(backend: Backend) {
    // Arrange: the code source gives the same ten digits twice, then fresh ones.
    let (store, _) = two_stores(backend).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let store = store.with_tracking_codes(Arc::new(move || {
        match seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
            0 | 1 => "1111111111".to_owned(),
            _ => presale::domain::application::tracking_code(),
        }
    }));
    let terms = issue(&store, &license(10, None)).await;
    let now = service_kit::clock::now();

    // Act: two different people apply; the second draws the first one's code.
    let first = store.apply(&terms, &person(1), now, "2026-11-22").await;
    let second = store.apply(&terms, &person(2), now, "2026-11-22").await;

    // Assert: both accepted, with different codes; the collision cost a retry, not a turn.
    let first = first.expect("sql").expect("first accepted");
    let second = second
        .expect("sql")
        .expect("second accepted, not 'already applied'");
    assert_eq!(first.tracking_code, "1111111111");
    assert_ne!(second.tracking_code, first.tracking_code);
    assert_eq!(store.accepted_count(&terms.id).await.expect("count"), 2);
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}

async fn simultaneous_applications_at_two_excluding_manufacturers_accept_one(backend: Backend) {
    // Arrange: two manufacturers' licenses, each excluding recent buyers of either.
    let (a, b) = two_stores(backend).await;
    let exclusion = presale::domain::Exclusion {
        manufacturers: vec!["saipa".into(), "iran-khodro".into()],
        months: 48,
    };
    let mut saipa = license(1000, None);
    saipa.exclusion = Some(exclusion.clone());
    let mut ikco = license(1000, None);
    ikco.manufacturer = "iran-khodro".into();
    ikco.exclusion = Some(exclusion);
    let saipa = Arc::new(issue(&a, &saipa).await);
    let ikco = Arc::new(issue(&a, &ikco).await);

    // Act: 150 people each apply at both at once, through two replicas' pools.
    let mut tasks = Vec::new();
    for i in 0..150 {
        for (store, terms) in [(a.clone(), saipa.clone()), (b.clone(), ikco.clone())] {
            tasks.push(tokio::spawn(async move {
                let r = store
                    .apply(&terms, &person(i), service_kit::clock::now(), "2026-11-22")
                    .await
                    .expect("sql");
                (i, r)
            }));
        }
    }
    let mut accepted: HashMap<usize, usize> = HashMap::new();
    for t in tasks {
        let (i, r) = t.await.expect("task");
        match r {
            Ok(_) => *accepted.entry(i).or_default() += 1,
            Err(why) => assert_eq!(why, Refusal::RecentPurchase),
        }
    }

    // Assert: everyone got exactly one of the two.
    assert_eq!(accepted.len(), 150, "everyone is accepted somewhere");
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accepted at both: {twice:?}");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Backend::Embedded).await })* }
        mod postgres { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Backend::Servers).await })* }
    };
}
both!(
    cap_holds_under_a_storm_of_applications,
    one_application_per_round_across_licenses,
    suspension_and_eligibility_refuse_with_reasons,
    a_recent_purchase_from_a_major_manufacturer_excludes,
    a_tracking_code_collision_is_retried_not_reported_as_already_applied,
    simultaneous_applications_at_two_excluding_manufacturers_accept_one
);

fn settings(opens_in_ms: i64, rate_per_min: i64, max_active: i64, buckets: u32) -> QueueSettings {
    QueueSettings {
        campaign: unique("c"),
        opens_at_ms: service_kit::clock::now_ms() + opens_in_ms,
        rate_per_min,
        max_active,
        apply_window_ms: 60_000,
        buckets,
    }
}

fn queues() -> (Queue, Queue) {
    let prefix = unique("emta_q");
    let key = b"queue-test-key";
    (
        Queue::new(&redis_url(), &prefix, key).expect("queue a"),
        Queue::new(&redis_url(), &prefix, key).expect("queue b"),
    )
}

fn nid(i: usize) -> NationalId {
    national_id(200_000_000 + i as u32)
}

/// A valid national ID from nine leading digits.
fn national_id(prefix: u32) -> NationalId {
    let s = testkit::citizens::national_id_from(prefix).expect("not all one digit");
    NationalId::parse(&s).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_is_idempotent_per_national_id_across_replicas() {
    let (qa, qb) = queues();
    let s = Arc::new(settings(-1000, 600, 100, 4));
    qa.setup(&s).await.expect("setup");
    let mut tasks = Vec::new();
    for i in 0..300 {
        for k in 0..4 {
            let q = if k % 2 == 0 { qa.clone() } else { qb.clone() };
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                (i, q.join(&s, &nid(i)).await.expect("join"))
            }));
        }
    }
    let mut ticket_of: HashMap<usize, i64> = HashMap::new();
    let mut fresh = 0;
    for t in tasks {
        let (i, j) = t.await.expect("task");
        let Joined::Ticket { ticket, fresh: f } = j else {
            panic!("open queue: {j:?}")
        };
        fresh += usize::from(f);
        if let Some(prev) = ticket_of.insert(i, ticket) {
            assert_eq!(prev, ticket, "the same person always gets the same ticket");
        }
    }
    assert_eq!(fresh, 300, "one fresh ticket per person");
    let tickets: HashSet<i64> = ticket_of.values().copied().collect();
    assert_eq!(
        tickets,
        (1..=300).collect(),
        "tickets are 1..=300 with no gaps or repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_follows_ticket_order_at_the_rate_and_bound() {
    let (qa, qb) = queues();
    // 60 000 per minute: the bound (10 active), not the rate, limits admission here.
    let s = settings(-10, 60_000, 10, 2);
    qa.setup(&s).await.expect("setup");
    for i in 0..40 {
        qa.join(&s, &nid(i)).await.expect("join");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let serving = qb.advance(&s.campaign).await.expect("advance");
    assert_eq!(serving, 10, "bounded by max_active");
    for t in 1..=10 {
        assert!(
            qa.is_admitted(&s.campaign, t).await.expect("admitted"),
            "ticket {t}"
        );
    }
    assert!(!qa.is_admitted(&s.campaign, 11).await.expect("admitted"));
    // Three of them apply and leave: exactly three more get in, the next in order.
    for t in [2, 5, 9] {
        qb.release(&s.campaign, t).await.expect("release");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(qa.advance(&s.campaign).await.expect("advance"), 13);
    assert!(qa.is_admitted(&s.campaign, 13).await.expect("admitted"));
    // Suspension stops admissions at once.
    qa.suspend(&s.campaign, true).await.expect("suspend");
    for t in [1, 3, 4, 6] {
        qa.release(&s.campaign, t).await.expect("release");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        qb.advance(&s.campaign).await.expect("advance"),
        13,
        "suspended: nobody more"
    );
    // Closing (cap reached) refuses new joins.
    qa.close(&s.campaign).await.expect("close");
    assert_eq!(qa.join(&s, &nid(999)).await.expect("join"), Joined::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unused_admission_is_reclaimed_when_its_time_runs_out() {
    let (qa, qb) = queues();
    let s = QueueSettings {
        apply_window_ms: 300,
        ..settings(-10, 60_000, 5, 2)
    };
    qa.setup(&s).await.expect("setup");
    for i in 0..20 {
        qa.join(&s, &nid(i)).await.expect("join");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        qa.advance(&s.campaign).await.expect("advance"),
        5,
        "bounded by max_active"
    );
    assert!(qb.is_admitted(&s.campaign, 1).await.expect("admitted"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !qb.is_admitted(&s.campaign, 1).await.expect("admitted"),
        "time to apply ran out"
    );
    assert_eq!(
        qb.advance(&s.campaign).await.expect("advance"),
        10,
        "the five slots went to the next five"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admission_rate_is_respected() {
    let (qa, qb) = queues();
    let s = settings(-10, 600, 1000, 2); // 10 per second
    qa.setup(&s).await.expect("setup");
    for i in 0..100 {
        qa.join(&s, &nid(i)).await.expect("join");
    }
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        // Both replicas call the admitter; it must not admit twice as fast.
        qa.advance(&s.campaign).await.expect("advance");
        qb.advance(&s.campaign).await.expect("advance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Measured from the opening (the admitter's own origin), not from the loop's start:
    // the joins before the loop take time too, and that time counts.
    let serving = qa.advance(&s.campaign).await.expect("advance");
    let since_open = (service_kit::clock::now_ms() - s.opens_at_ms) as f64 / 1000.0;
    let expected = (since_open * 10.0) as i64;
    assert!(
        (expected - 3..=expected + 1).contains(&serving),
        "served {serving}, rate says ~{expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_arrivals_are_shuffled_ahead_of_later_ones() {
    let (qa, qb) = queues();
    let s = Arc::new(settings(800, 60_000, 1000, 2));
    qa.setup(&s).await.expect("setup");
    let mut arrivals = Vec::new();
    for i in 0..20 {
        let q = if i % 2 == 0 { &qa } else { &qb };
        match q.join(&s, &nid(i)).await.expect("join") {
            Joined::Early { arrival, .. } => arrivals.push(arrival),
            other => panic!("before opening: {other:?}"),
        }
    }
    assert_eq!(arrivals, (1..=20).collect::<Vec<_>>());
    // Joining again before the opening returns the same arrival number.
    assert_eq!(
        qb.join(&s, &nid(3)).await.expect("join"),
        Joined::Early {
            arrival: 4,
            fresh: false
        }
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    for i in 20..30 {
        let Joined::Ticket { ticket, .. } = qa.join(&s, &nid(i)).await.expect("join") else {
            panic!("after opening")
        };
        assert_eq!(
            ticket,
            i as i64 + 1,
            "later arrivals queue after every early one, in order"
        );
    }
    let counters = qa.counters(&s.campaign).await.expect("counters");
    assert_eq!((counters.early, counters.late), (20, 10));
    let seed = b"revealed-seed";
    let tickets: HashSet<i64> = (1..=20).filter_map(|p| early_ticket(seed, 20, p)).collect();
    assert_eq!(
        tickets,
        (1..=20).collect(),
        "the early arrivals' tickets are a permutation of 1..=20"
    );
}

/// Chi-square test over many seeded draws: every early arrival is equally likely to land in
/// every position. 10 arrivals, 20 000 draws: each (arrival, ticket) cell expects 2000.
#[test]
fn the_pre_opening_shuffle_is_uniform() {
    let n = 10usize;
    let draws = 20_000usize;
    let mut cells = vec![vec![0u32; n]; n];
    for d in 0..draws {
        let seed = format!("seed-{d}");
        for p in 1..=n as i64 {
            let t = early_ticket(seed.as_bytes(), n as i64, p).expect("ticket");
            cells[(p - 1) as usize][(t - 1) as usize] += 1;
        }
    }
    let expected = draws as f64 / n as f64;
    // Per arrival: 9 degrees of freedom; critical value at p = 0.001 is 27.88.
    for (p, row) in cells.iter().enumerate() {
        let chi2: f64 = row
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 27.88, "arrival {}: chi-square {chi2:.2}", p + 1);
    }
    // Whole table: (n-1)^2 = 81 degrees of freedom; critical value at p = 0.001 is 126.0.
    let chi2: f64 = cells
        .iter()
        .flatten()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 126.0, "table chi-square {chi2:.2}");
}

/// Redis memory per waiting applicant, measured with MEMORY USAGE, stays under 40 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_applicant_costs_under_40_bytes_of_redis() {
    let (qa, _) = queues();
    let n = 20_000usize;
    let s = Arc::new(settings(-10, 600, 100, (n / 100) as u32));
    qa.setup(&s).await.expect("setup");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (q, s, next) = (qa.clone(), s.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                q.join(&s, &nid(i)).await.expect("join");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let bytes = qa.memory_usage(&s).await.expect("memory");
    let per = bytes as f64 / n as f64;
    println!("redis bytes per waiting applicant: {per:.1} ({bytes} bytes for {n})");
    assert!(per < 40.0, "{per:.1} bytes per applicant");
}

/// The whole path: thousands join through two replicas, the admitter runs on both, the
/// admitted apply through both, the cap holds, nobody holds two applications, and the
/// accepted applicants are exactly the lowest tickets that tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_join_and_apply_through_two_replicas_without_oversell() {
    let (qa, qb) = queues();
    let (sa, sb) = two_stores(Backend::Servers).await;
    let cap = 40;
    let terms = Arc::new(issue(&sa, &license(cap, None)).await);
    let s = Arc::new(QueueSettings {
        campaign: terms.id.clone(),
        ..settings(-10, 120_000, 25, 20)
    });
    qa.setup(&s).await.expect("setup");
    let people = 2000usize;

    let mut joins = Vec::new();
    for i in 0..people {
        let (q, s) = (if i % 2 == 0 { qa.clone() } else { qb.clone() }, s.clone());
        joins.push(tokio::spawn(async move {
            match q.join(&s, &nid(i)).await.expect("join") {
                Joined::Ticket { ticket, .. } => (i, ticket),
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut tickets = Vec::new();
    for j in joins {
        tickets.push(j.await.expect("join task"));
    }

    // The admitter, on both replicas, until the queue closes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut admitters = Vec::new();
    for q in [qa.clone(), qb.clone()] {
        let (stop, campaign) = (stop.clone(), s.campaign.clone());
        admitters.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = q.advance(&campaign).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    let mut appliers = Vec::new();
    for (k, (i, ticket)) in tickets.into_iter().enumerate() {
        let (q, store, terms, campaign) = if k % 2 == 0 {
            (qa.clone(), sa.clone(), terms.clone(), s.campaign.clone())
        } else {
            (qb.clone(), sb.clone(), terms.clone(), s.campaign.clone())
        };
        appliers.push(tokio::spawn(async move {
            loop {
                let c = q.counters(&campaign).await.expect("counters");
                if c.closed {
                    return (ticket, None);
                }
                if ticket <= c.serving && q.is_admitted(&campaign, ticket).await.expect("admitted")
                {
                    let mut req = person(i);
                    req.national_id = nid(i);
                    req.ticket = ticket;
                    let r = store
                        .apply(&terms, &req, service_kit::clock::now(), "2026-11-22")
                        .await
                        .expect("sql");
                    q.release(&campaign, ticket).await.expect("release");
                    if r == Err(Refusal::SoldOut) {
                        q.close(&campaign).await.expect("close");
                    }
                    return (ticket, Some(r));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut accepted_tickets = Vec::new();
    let mut attempts = 0;
    for a in appliers {
        match a.await.expect("applier") {
            (ticket, Some(Ok(_))) => {
                attempts += 1;
                accepted_tickets.push(ticket);
            }
            (_, Some(Err(_))) => attempts += 1,
            (_, None) => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in admitters {
        let _ = a.await;
    }

    assert_eq!(accepted_tickets.len() as i64, cap, "applications == cap");
    assert_eq!(sa.accepted_count(&terms.id).await.expect("count"), cap);
    // Admission is in ticket order: only a prefix of the tickets was ever let in, and no
    // more than the slots freed by those who applied plus the bound on concurrently
    // admitted applicants.
    let serving = qa.counters(&s.campaign).await.expect("counters").serving;
    assert!(
        serving <= attempts + s.max_active,
        "serving {serving}, attempts {attempts}"
    );
    assert!(accepted_tickets.iter().all(|&t| t <= serving));
    for t in serving + 1..serving + 50 {
        assert!(
            !qb.is_admitted(&s.campaign, t).await.expect("admitted"),
            "ticket {t} beyond the prefix"
        );
    }
}
