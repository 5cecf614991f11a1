//! A short rehearsal of the opening with faults, as `load rehearse` runs it: a few hundred
//! citizens on a PostgreSQL and a Redis (append-only file) of the test's own, two presale
//! replicas as processes; in one run Redis is killed -9 and restarted with its files,
//! PostgreSQL crashes and restarts, and a presale replica is killed -9 and restarted. The
//! ledger of everything the servers answered must then match the campaign's audited
//! transparency log: 0 lost, 0 issued twice, 0 out of order, 0 oversold.

use load::faults::{Action, Fault};
use load::rehearsal::{self, Rehearsal};
use load::report::Report;

fn at(secs: f64, name: &str) -> Fault {
    Fault {
        at_secs: secs,
        action: Action::Named(name.into()),
    }
}

/// Every fault injected, the run ended on its own, and a ledger that is not vacuous and
/// holds (tickets, admissions, applications and the sign-ins' tokens): 0 lost, 0 issued
/// twice, 0 out of order, 0 oversold, 0 duplicate national IDs.
fn assert_nothing_acknowledged_was_lost(report: &Report, faults: usize) {
    assert_eq!(report.faults.len(), faults, "every fault was injected");
    for f in &report.faults {
        assert!(f.error.is_none(), "fault {} failed: {:?}", f.name, f.error);
    }
    assert!(
        !report.overdue && !report.interrupted,
        "the run ended on its own"
    );
    let l = report.ledger.as_ref().expect("the ledger was checked");
    assert!(
        l.tickets_acknowledged >= 100
            && l.applications_acknowledged >= 60
            && l.tokens_acknowledged.is_some_and(|t| t >= 100),
        "the ledger is not vacuous: {l:?}"
    );
    assert_eq!(
        (
            l.lost,
            l.issued_twice,
            l.out_of_order,
            l.oversold,
            l.duplicate_national_ids
        ),
        (0, 0, 0, 0, 0),
        "{:?}",
        l.findings
    );
    assert!(l.holds(), "{:?}", l.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_with_redis_postgres_and_replica_crashes_loses_nothing_acknowledged() {
    let report = rehearsal::run(Rehearsal {
        rate: 10.0,
        secs: 30.0,
        faults: vec![
            at(7.0, "redis-crash"),
            at(14.0, "postgres-restart"),
            at(21.0, "presale-crash"),
        ],
        presale_binary: testkit::servers::binary("presale", "presale"),
        presale_replicas: 2,
        idp_binary: None,
        idp_replicas: 1,
        units: Some(120),
        admission_per_min: 6000,
        pow_difficulty: 4,
        p99_limit_ms: 5000.0,
        presale_admission: None,
        idp_admission: None,
        progress: false,
        seed: 3,
    })
    .await
    .expect("the rehearsal runs");
    println!("{}", report.summary());
    assert_nothing_acknowledged_was_lost(&report, 3);
}

/// The faults that slow rather than kill, and the IdP's: two IdP replicas as processes
/// behind a balancer, one killed -9; PostgreSQL and then Redis 100 ms away each way for
/// ten seconds; a presale replica's clock 30 s ahead for twenty seconds, then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_with_an_idp_crash_slow_stores_and_a_skewed_clock_loses_nothing() {
    let report = rehearsal::run(Rehearsal {
        rate: 10.0,
        secs: 40.0,
        faults: vec![
            at(6.0, "idp-crash"),
            at(10.0, "postgres-latency"),
            at(16.0, "presale-clock-skew"),
            at(22.0, "redis-latency"),
        ],
        presale_binary: testkit::servers::binary("presale", "presale"),
        presale_replicas: 2,
        idp_binary: Some(testkit::servers::binary("idp", "idp")),
        idp_replicas: 2,
        units: Some(160),
        admission_per_min: 6000,
        pow_difficulty: 4,
        p99_limit_ms: 5000.0,
        presale_admission: None,
        idp_admission: None,
        progress: false,
        seed: 5,
    })
    .await
    .expect("the rehearsal runs");
    println!("{}", report.summary());
    assert_nothing_acknowledged_was_lost(&report, 4);
    let slowed = |name: &str| {
        report
            .faults
            .iter()
            .find(|f| f.name == name)
            .map_or(0.0, |f| f.peak_p99_ms)
    };
    assert!(
        slowed("postgres-latency") >= 200.0 && slowed("redis-latency") >= 200.0,
        "the latency faults slowed the steps: {:?}",
        report.faults
    );
}
