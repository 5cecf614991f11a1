//! A short rehearsal of the opening with faults, as `load rehearse` runs it: a few hundred
//! citizens on a PostgreSQL and a Redis (append-only file) of the test's own, two presale
//! replicas as processes; in one run Redis is killed -9 and restarted with its files,
//! PostgreSQL crashes and restarts, and a presale replica is killed -9 and restarted. The
//! ledger of everything the servers answered must then match the campaign's audited
//! transparency log: 0 lost, 0 issued twice, 0 out of order, 0 oversold.

use load::faults::{Action, Fault};
use load::rehearsal::{self, Rehearsal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_with_redis_postgres_and_replica_crashes_loses_nothing_acknowledged() {
    let at = |secs: f64, name: &str| Fault {
        at_secs: secs,
        action: Action::Named(name.into()),
    };
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
        units: Some(120),
        admission_per_min: 6000,
        pow_difficulty: 4,
        p99_limit_ms: 5000.0,
        progress: false,
        seed: 3,
    })
    .await
    .expect("the rehearsal runs");
    println!("{}", report.summary());

    assert_eq!(report.faults.len(), 3, "every fault was injected");
    for f in &report.faults {
        assert!(f.error.is_none(), "fault {} failed: {:?}", f.name, f.error);
    }
    assert!(
        !report.overdue && !report.interrupted,
        "the run ended on its own"
    );
    let l = report.ledger.as_ref().expect("the ledger was checked");
    assert!(
        l.tickets_acknowledged >= 100 && l.applications_acknowledged >= 60,
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
