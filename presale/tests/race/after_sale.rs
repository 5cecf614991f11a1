//! After the sale (issue 34), on both engines and across two replicas: the compensation a
//! late delivery owes, computed from the rate table in force each day and checked against
//! a hand computation; stages recorded only in their order and only by the application's
//! manufacturer, one contract however many replicas race; and a license refused with the
//! figures when it would pass the manufacturer's credit ceiling or, while its deliveries
//! are overdue, one new unit per unit delivered.

use presale::domain::after_sale::{Ceilings, CreditPolicy, CreditRefusal, Rate, SaleKind};
use presale::domain::{NewLicense, PresaleKind};
use presale::store::after_sale::{RateError, Stage, StageError, StageRequest, GRACE};
use presale::store::proposals::{Change, Decision, Outcome, ProposalError};
use presale::store::staff::Role;
use presale::store::Store;
use testkit::Backend;

use super::{issue, license, person, record_parties, two_stores};

const DAY: i64 = 86_400;
const PASSWORD: &str = "correct horse battery staple";

/// Applies `person(i)` for `i` in `who` to the license; their tracking codes.
async fn applied(
    store: &Store,
    l: &NewLicense,
    who: std::ops::Range<usize>,
) -> (String, Vec<String>) {
    let terms = issue(store, l).await;
    let mut codes = Vec::new();
    for i in who {
        let acc = store
            .apply(&terms, &person(i))
            .await
            .expect("sql")
            .expect("accepted");
        codes.push(acc.tracking_code);
    }
    (terms.id, codes)
}

#[allow(clippy::too_many_arguments)]
async fn stage(
    store: &Store,
    maker: &str,
    code: &str,
    stage: Stage,
    amount: i64,
    at: i64,
    now: i64,
) -> Result<String, StageError> {
    let request = StageRequest {
        stage,
        amount,
        at,
        key: None,
    };
    store
        .record_stage(maker, code, &request, "client:saipa-seed", now)
        .await
        .expect("sql")
}

pub(crate) async fn late_delivery_is_compensated_by_the_rate_table(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let firm = license(5, None);
    let regular = NewLicense {
        license_no: testkit::servers::unique("R").replace('_', "-"),
        kind: PresaleKind::Regular,
        ..license(5, None)
    };
    let deadline = firm.delivery_deadline;
    assert_eq!(regular.delivery_deadline, deadline);
    let (_, firm_codes) = applied(&a, &firm, 0..1).await;
    let (_, regular_codes) = applied(&a, &regular, 1..2).await;
    // (The stages' times are checked against the applications': after them.)
    let now = service_kit::clock::now();
    // The ministry's table: firm presales 2.5% a month, 3% from the fifth day past the
    // deadline on; regular presales 2.9% a month.
    for (kind, from, bp) in [
        (SaleKind::Firm, now, 250),
        (SaleKind::Firm, deadline + 5 * DAY, 300),
        (SaleKind::Regular, now, 290),
    ] {
        let rate = Rate {
            from,
            monthly_bp: bp,
        };
        let set = a.set_compensation_rate(kind, rate, "issuer.a", now).await;
        assert_eq!(set.expect("sql"), Ok(()));
    }
    // Kept as written: the same kind and instant again is refused; no rate reaches back
    // to change what a past day owes; none above 100% a month.
    for (from, bp, why) in [
        (now, 1, RateError::Exists),
        (now - 2 * DAY, 1, RateError::Past),
        (now + DAY, 10_001, RateError::Range),
    ] {
        let rate = Rate {
            from,
            monthly_bp: bp,
        };
        let set = b
            .set_compensation_rate(SaleKind::Firm, rate, "issuer.b", now)
            .await;
        assert_eq!(set.expect("sql"), Err(why));
    }
    // Contracts and the down payment now, through either replica; the firm buyer pays a
    // billion more two days past the deadline.
    for (s, code) in [(&a, &firm_codes[0]), (&b, &regular_codes[0])] {
        stage(s, "saipa", code, Stage::Contract, 0, now, now)
            .await
            .expect("contract");
        stage(s, "saipa", code, Stage::Payment, 2_000_000_000, now, now)
            .await
            .expect("payment");
    }
    stage(
        &b,
        "saipa",
        &firm_codes[0],
        Stage::Payment,
        1_000_000_000,
        deadline + 2 * DAY,
        deadline + 2 * DAY,
    )
    .await
    .expect("a later payment");

    // Ten days and an hour past the deadline. By hand (rials; Σ paid × bp / (10 000 × 30)):
    // firm: days 1-2 on 2e9 at 250 (1e12), days 3-5 on 3e9 at 250 (2.25e12), days 6-10 on
    // 3e9 at 300 (4.5e12): 7.75e12 / 300 000 = 25 833 333.33…;
    // regular: 10 days on 2e9 at 290: 5.8e12 / 300 000 = 19 333 333.33….
    let at = deadline + 10 * DAY + 3600;
    let firm_d = b.deliveries_of_citizen("c-0", at).await.expect("sql");
    let regular_d = a.deliveries_of_citizen("c-1", at).await.expect("sql");
    assert_eq!((firm_d.len(), regular_d.len()), (1, 1));
    assert_eq!(firm_d[0].paid(), 3_000_000_000);
    assert_eq!(
        (firm_d[0].lateness.days, firm_d[0].lateness.owed),
        (10, 25_833_333)
    );
    assert_eq!(
        (regular_d[0].lateness.days, regular_d[0].lateness.owed),
        (10, 19_333_333)
    );
    assert!(firm_d[0].overdue(at));
    // Nothing is owed before the deadline has passed by a whole day.
    let early = b
        .deliveries_of_citizen("c-0", deadline + DAY - 1)
        .await
        .expect("sql");
    assert_eq!(early[0].lateness.owed, 0);

    // Delivered twelve days late: days 11-12 add 3e9 at 300 twice (1.8e12): 9.55e12 /
    // 300 000 = 31 833 333.33…, and it stays so however long after one looks.
    stage(
        &a,
        "saipa",
        &firm_codes[0],
        Stage::Delivered,
        0,
        deadline + 12 * DAY,
        deadline + 12 * DAY,
    )
    .await
    .expect("delivered");
    let later = deadline + 30 * DAY;
    let firm_d = a.deliveries_of_citizen("c-0", later).await.expect("sql");
    assert_eq!(
        (firm_d[0].lateness.days, firm_d[0].lateness.owed),
        (12, 31_833_333)
    );
    assert!(!firm_d[0].overdue(later));
    // The ministry's list: saipa's two applications, one delivered late, one overdue
    // (30 days on 2e9 at 290: 1.74e13 / 300 000 = 58 000 000).
    let report = b.delivery_report(later).await.expect("sql");
    let saipa = report
        .iter()
        .find(|r| r.manufacturer == "saipa")
        .expect("saipa");
    assert_eq!(
        (
            saipa.applications,
            saipa.delivered,
            saipa.overdue,
            saipa.late_delivered,
            saipa.owed
        ),
        (2, 1, 1, 1, 31_833_333 + 58_000_000)
    );
}

pub(crate) async fn stages_follow_their_order_and_one_contract_wins_a_race(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let l = license(5, None);
    let (_, codes) = applied(&a, &l, 0..3).await;
    let now = service_kit::clock::now();
    let code = &codes[0];
    // Before the contract: no payment, no delivery.
    assert_eq!(
        stage(&a, "saipa", code, Stage::Payment, 1, now, now).await,
        Err(StageError::NoContract)
    );
    assert_eq!(
        stage(&a, "saipa", code, Stage::Delivered, 0, now, now).await,
        Err(StageError::NoContract)
    );
    // Another manufacturer's back-end reaches nothing of saipa's; an unknown code is none.
    assert_eq!(
        stage(&a, "iran-khodro", code, Stage::Contract, 0, now, now).await,
        Err(StageError::NoApplication)
    );
    assert_eq!(
        stage(&a, "saipa", "0000000000", Stage::Contract, 0, now, now).await,
        Err(StageError::NoApplication)
    );
    // Amounts and times are checked: a contract carries none; no time in the future or
    // before the application.
    assert_eq!(
        stage(&a, "saipa", code, Stage::Contract, 5, now, now).await,
        Err(StageError::Amount)
    );
    assert_eq!(
        stage(&a, "saipa", code, Stage::Contract, 0, now + 60, now).await,
        Err(StageError::Time)
    );
    assert_eq!(
        stage(&a, "saipa", code, Stage::Contract, 0, now - 3600, now).await,
        Err(StageError::Time)
    );

    // Twenty racing contracts for one application through two replicas: one is recorded.
    let mut tasks = Vec::new();
    for k in 0..20 {
        let s = if k % 2 == 0 { a.clone() } else { b.clone() };
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            stage(&s, "saipa", &code, Stage::Contract, 0, now, now).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e, StageError::Recorded),
        }
    }
    assert_eq!(won, 1, "one contract");
    // Payments: positive, at most the unit price, not before the contract.
    assert_eq!(
        stage(&b, "saipa", code, Stage::Payment, 0, now, now).await,
        Err(StageError::Amount)
    );
    assert_eq!(
        stage(
            &b,
            "saipa",
            code,
            Stage::Payment,
            l.unit_price + 1,
            now,
            now
        )
        .await,
        Err(StageError::Amount)
    );
    stage(&b, "saipa", code, Stage::Payment, 1_000, now, now)
        .await
        .expect("payment");
    // A retry of a request under its key is the same payment; the key with another
    // payment is refused.
    let keyed = StageRequest {
        stage: Stage::Payment,
        amount: 2_000,
        at: now,
        key: Some("pay-2".into()),
    };
    let first = b
        .record_stage("saipa", code, &keyed, "client:saipa-seed", now)
        .await
        .expect("sql")
        .expect("another");
    let again = a
        .record_stage("saipa", code, &keyed, "client:saipa-seed", now)
        .await
        .expect("sql");
    assert_eq!(again, Ok(first), "a retry records nothing twice");
    let other = StageRequest {
        amount: 5,
        ..keyed.clone()
    };
    let reused = a
        .record_stage("saipa", code, &other, "client:saipa-seed", now)
        .await
        .expect("sql");
    assert_eq!(reused, Err(StageError::KeyReused));
    // Payments never total more than the price.
    assert_eq!(
        stage(
            &b,
            "saipa",
            code,
            Stage::Payment,
            l.unit_price - 2_999,
            now,
            now
        )
        .await,
        Err(StageError::Amount)
    );
    // A delivery is dated when it happened: not back to before the deadline (owing
    // nothing), not before the last stage, at most three days back.
    assert_eq!(
        stage(&a, "saipa", code, Stage::Delivered, 0, now - 10, now).await,
        Err(StageError::Time),
        "before the last payment"
    );
    let later = now + 10 * DAY;
    assert_eq!(
        stage(&a, "saipa", code, Stage::Delivered, 0, now + DAY, later).await,
        Err(StageError::Time),
        "nine days back"
    );
    stage(&a, "saipa", code, Stage::Delivered, 0, later - GRACE, later)
        .await
        .expect("delivered three days back");
    // Delivered is the last stage.
    assert_eq!(
        stage(&a, "saipa", code, Stage::Payment, 1, later, later).await,
        Err(StageError::Delivered)
    );
    assert_eq!(
        stage(&b, "saipa", code, Stage::Delivered, 0, later, later).await,
        Err(StageError::Delivered)
    );
    let d = a.deliveries_of_citizen("c-0", later).await.expect("sql");
    assert_eq!(
        (d[0].paid(), d[0].delivered_at),
        (3_000, Some(later - GRACE))
    );
    // Kept as written (SQLite refuses everyone; PostgreSQL every role but the owner, as
    // the service's role is shown to be refused in the insiders' test of 0017's guards).
    if backend == Backend::Embedded {
        let rate = Rate {
            from: now,
            monthly_bp: 1,
        };
        let set = a.set_compensation_rate(SaleKind::Firm, rate, "issuer.a", now);
        assert_eq!(set.await.expect("sql"), Ok(()));
        for sql in [
            "UPDATE delivery_stages SET amount = 0",
            "DELETE FROM delivery_stages",
            "UPDATE compensation_rates SET monthly_bp = 0",
        ] {
            assert!(sqlx::query(sql).execute(a.pool()).await.is_err(), "{sql}");
        }
    }
}

async fn add_issuers(store: &Store) {
    for who in ["issuer.a", "issuer.b"] {
        store
            .add_staff(
                who,
                PASSWORD,
                Role::Issuer,
                "test",
                service_kit::clock::now(),
            )
            .await
            .expect("staff");
    }
}

/// Proposes issuing `l` as issuer.a and approves it as issuer.b under `policy`.
async fn approve_issue(
    store: &Store,
    l: &NewLicense,
    policy: Option<&CreditPolicy>,
    now: i64,
) -> Result<Outcome, ProposalError> {
    record_parties(store, l, "ministry.officer").await;
    let id = store
        .propose(
            &Change::Issue {
                license: Box::new(l.clone()),
            },
            "issuer.a",
            now,
        )
        .await
        .expect("sql")
        .expect("proposal");
    let out = store
        .decide_with(&id, "issuer.b", Decision::Approve, None, policy, now)
        .await
        .expect("sql");
    if out.is_err() {
        // Refused: the proposal stays pending; its author withdraws it.
        store
            .decide(&id, "issuer.a", Decision::Reject, now)
            .await
            .expect("sql")
            .expect("withdrawn");
    }
    out
}

fn units(n: i64) -> NewLicense {
    NewLicense {
        license_no: testkit::servers::unique("C").replace('_', "-"),
        ..license(n, None)
    }
}

pub(crate) async fn a_license_past_the_credit_ceiling_is_refused_with_the_figures(
    backend: Backend,
) {
    let (a, b) = two_stores(backend).await;
    add_issuers(&a).await;
    let now = service_kit::clock::now();
    // Three stars may have 50 billion rials outstanding; each unit's down payment is 2.
    let policy = CreditPolicy {
        ceilings: Ceilings::parse("1:0,3:50000000000").expect("ceilings"),
        stars: [("saipa".to_owned(), 3)].into(),
    };
    let first = units(20);
    assert!(matches!(
        approve_issue(&a, &first, Some(&policy), now).await,
        Ok(Outcome::Done { .. })
    ));
    // 40 billion outstanding + 20 asked > 50.
    let second = units(10);
    assert_eq!(
        approve_issue(&b, &second, Some(&policy), now).await,
        Err(ProposalError::Credit(CreditRefusal::Ceiling {
            stars: 3,
            ceiling: 50_000_000_000,
            outstanding: 40_000_000_000,
            asked: 20_000_000_000,
        }))
    );
    // Unlisted at the IdP (suspended, expired): no license under a ceiling.
    let unrated = CreditPolicy {
        stars: Default::default(),
        ..policy.clone()
    };
    assert_eq!(
        approve_issue(&a, &units(1), Some(&unrated), now).await,
        Err(ProposalError::NoRating)
    );
    // One star: nothing.
    let one = CreditPolicy {
        stars: [("saipa".to_owned(), 1)].into(),
        ..policy.clone()
    };
    assert!(matches!(
        approve_issue(&a, &units(1), Some(&one), now).await,
        Err(ProposalError::Credit(_))
    ));
    // Five delivered units free 10 billion: now it fits exactly.
    let id = a
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.license_no == first.license_no)
        .expect("first")
        .id;
    let terms = issue_terms_of(&a, &id).await;
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(
            a.apply(&terms, &super::person(i))
                .await
                .expect("sql")
                .expect("accepted"),
        );
    }
    let now = service_kit::clock::now();
    for acc in accepted {
        stage(
            &a,
            "saipa",
            &acc.tracking_code,
            Stage::Contract,
            0,
            now,
            now,
        )
        .await
        .expect("contract");
        stage(
            &b,
            "saipa",
            &acc.tracking_code,
            Stage::Delivered,
            0,
            now,
            now,
        )
        .await
        .expect("delivered");
    }
    assert!(matches!(
        approve_issue(&b, &units(10), Some(&policy), now).await,
        Ok(Outcome::Done { .. })
    ));
}

/// The terms of an issued license, with 1000 admitted (as [`issue`] does).
async fn issue_terms_of(store: &Store, id: &str) -> presale::domain::LicenseTerms {
    let holders: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    store.join_queue(id, &holders).await.expect("join");
    store.advance_queue(id).await.expect("tick").expect("queue");
    store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.id == id)
        .expect("license")
        .terms()
}

pub(crate) async fn while_late_a_manufacturer_gets_one_unit_per_unit_delivered(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    add_issuers(&a).await;
    let l = units(5);
    let (id, codes) = applied(&a, &l, 0..5).await;
    let now = service_kit::clock::now();
    // Time passes (moved in the database, as the owner can): the license was issued a
    // year ago and its deadline passed ten days ago.
    sqlx::query("UPDATE licenses SET delivery_deadline = $2, created_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(now - 10 * DAY)
        .bind(now - 365 * DAY)
        .execute(a.pool())
        .await
        .expect("a year on");
    for code in &codes[..2] {
        stage(&a, "saipa", code, Stage::Contract, 0, now, now)
            .await
            .expect("contract");
        stage(&b, "saipa", code, Stage::Delivered, 0, now, now)
            .await
            .expect("delivered");
    }
    // Three overdue, two delivered since the deadline: three new units are too many.
    assert_eq!(
        approve_issue(&a, &units(3), None, now).await,
        Err(ProposalError::Credit(CreditRefusal::Overdue {
            overdue: 3,
            allowed: 2,
            asked: 3
        }))
    );
    assert!(matches!(
        approve_issue(&b, &units(2), None, now).await,
        Ok(Outcome::Done { .. })
    ));
    // Those two are spent: nothing more until another car is delivered.
    assert_eq!(
        approve_issue(&a, &units(1), None, now).await,
        Err(ProposalError::Credit(CreditRefusal::Overdue {
            overdue: 3,
            allowed: 0,
            asked: 1
        }))
    );
    stage(&a, "saipa", &codes[2], Stage::Contract, 0, now, now)
        .await
        .expect("contract");
    stage(&a, "saipa", &codes[2], Stage::Delivered, 0, now, now)
        .await
        .expect("delivered");
    assert!(matches!(
        approve_issue(&a, &units(1), None, now).await,
        Ok(Outcome::Done { .. })
    ));
}
