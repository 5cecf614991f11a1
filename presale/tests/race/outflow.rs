//! Outflow control from the console (issue 29): pausing admissions keeps every place and
//! every apply deadline, admits nobody on any replica until resumed, lets joins go on and
//! gives the close the pause's length; a pause while paused (and a resume while
//! admitting) is refused; more time to apply reaches exactly the admitted still within
//! their time; a new bound on the admitted holds from the next tick. Each change is in the
//! campaign's public log, and the auditor's recomputation finds nobody admitted while
//! paused, and finds it when a record says otherwise.

use std::time::Duration;

use presale::queue::Joined;
use presale::store::proposals::{Change, Decision, Outcome, ProposalError};
use presale::store::staff::Role;
use presale::store::Store;
use presale::transparency::Event;
use sqlx::Row;

use super::transparency::{audit_db, findings, sequence_all};
use super::{issue_id, nid, queue_license, queues, tick, two_stores, Backend};

/// Every admission's ticket and deadline, by ticket.
async fn deadlines(store: &Store, id: &str) -> Vec<(i64, i64)> {
    sqlx::query(
        "SELECT ticket, deadline_ms FROM queue_admissions WHERE license_id = $1 ORDER BY ticket",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await
    .expect("admissions")
    .iter()
    .map(|r| (r.get::<i64, _>("ticket"), r.get::<i64, _>("deadline_ms")))
    .collect()
}

async fn paused_ms(store: &Store, id: &str) -> i64 {
    sqlx::query("SELECT paused_ms FROM licenses WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("license")
        .get("paused_ms")
}

fn place(j: Joined) -> i64 {
    match j {
        Joined::Ticket { ticket, .. } => ticket,
        other => panic!("a place in the queue, not {other:?}"),
    }
}

pub(crate) async fn pausing_admissions_keeps_every_place_and_deadline(backend: Backend) {
    let (sa, sb) = two_stores(backend).await;
    for who in ["issuer.a", "issuer.b"] {
        sa.add_staff(
            who,
            "correct horse battery staple",
            Role::Issuer,
            "test",
            service_kit::clock::now(),
        )
        .await
        .expect("staff");
    }
    let (qa, qb) = queues(&sa, &sb);
    // Two a second, up to 50 at once, 60 s to apply.
    let id = issue_id(&sa, &queue_license(-10, 120, 50, 60)).await;
    for i in 0..30 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    let admitted = tick(&sa, &id).await.serving;
    assert!((1..30).contains(&admitted), "{admitted}");
    let places: Vec<i64> = {
        let mut v = Vec::new();
        for i in 0..30 {
            v.push(place(qb.join(&id, &nid(i)).await.expect("join")));
        }
        v
    };
    let before = deadlines(&sa, &id).await;
    let close_before = paused_ms(&sa, &id).await;
    let now = service_kit::clock::now();

    // Paused by one issuer; a second pause is no change.
    assert_eq!(
        sa.pause_admissions(&id, true, "issuer.a", now)
            .await
            .expect("sql"),
        Ok(())
    );
    assert_eq!(
        sb.pause_admissions(&id, true, "issuer.b", now)
            .await
            .expect("sql"),
        Err(ProposalError::Unchanged)
    );
    // Both replicas tick for two seconds: nobody is admitted; joins go on.
    for i in 0..8 {
        let s = if i % 2 == 0 { &sa } else { &sb };
        assert_eq!(
            tick(s, &id).await.serving,
            admitted,
            "nobody admitted while paused"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(place(qb.join(&id, &nid(100)).await.expect("join")), 31);
    // Every place and every deadline as before.
    for (i, before) in places.iter().enumerate() {
        assert_eq!(place(qa.join(&id, &nid(i)).await.expect("join")), *before);
    }
    assert_eq!(
        deadlines(&sb, &id).await,
        before,
        "the admitted keep exactly their time"
    );

    // Resumed: admissions go on, no burst for the time paused, and the close moved on.
    assert_eq!(
        sb.pause_admissions(&id, false, "issuer.b", now)
            .await
            .expect("sql"),
        Ok(())
    );
    assert_eq!(
        sa.pause_admissions(&id, false, "issuer.a", now)
            .await
            .expect("sql"),
        Err(ProposalError::Unchanged)
    );
    assert!(
        paused_ms(&sa, &id).await - close_before >= 2000,
        "the close moves on by the pause"
    );
    let first = tick(&sa, &id).await.serving;
    assert!(
        first - admitted <= 3,
        "no burst for the paused time: {admitted} then {first}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(tick(&sb, &id).await.serving > admitted, "admissions go on");

    // More time to apply, approved by a second issuer: exactly the admitted within their
    // time get it.
    let live = deadlines(&sa, &id).await;
    let extend = Change::Extend {
        license_id: id.clone(),
        minutes: 5,
    };
    let p = sa
        .propose(&extend, "issuer.a", now)
        .await
        .expect("sql")
        .expect("proposed");
    assert!(matches!(
        sb.decide(&p, "issuer.b", Decision::Approve, now)
            .await
            .expect("sql"),
        Ok(Outcome::Done { .. })
    ));
    let after = deadlines(&sa, &id).await;
    for ((t, d), (t2, d2)) in live.iter().zip(&after) {
        assert_eq!(t, t2);
        assert_eq!(*d2, d + 300_000, "ticket {t} got five minutes");
    }
    // A bound on the admitted: the one it has is no change; a new one holds.
    let same = Change::MaxActive {
        license_id: id.clone(),
        max_active: 50,
    };
    assert_eq!(
        sa.propose(&same, "issuer.a", now).await.expect("sql"),
        Err(ProposalError::Unchanged)
    );
    let bound = Change::MaxActive {
        license_id: id.clone(),
        max_active: 1,
    };
    let p = sa
        .propose(&bound, "issuer.a", now)
        .await
        .expect("sql")
        .expect("proposed");
    sb.decide(&p, "issuer.b", Decision::Approve, now)
        .await
        .expect("sql")
        .expect("approved");
    let serving = tick(&sa, &id).await.serving;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        tick(&sb, &id).await.serving,
        serving,
        "the admitted are past the new bound"
    );

    // The public log holds the pause, the resumption, the extension and the bound, and the
    // auditor finds nothing; a record of an admission inside the pause is a finding.
    sequence_all(&sa, &id).await;
    let report = audit_db(&sa, &id, &[]).await;
    assert!(report.findings.is_empty(), "{}", findings(&report));
    let records = sa.log_records(&id, 0, 100_000).await.expect("records");
    let events: Vec<Event> = records.iter().filter_map(|r| Event::parse(r)).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Admissions { paused: true, .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Admissions { paused: false, .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Extended { by_ms: 300_000, .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::MaxActive { max_active: 1, .. })));
    let mut forged = Vec::new();
    let mut inside = false;
    for r in &records {
        forged.push(r.clone());
        if matches!(
            Event::parse(r),
            Some(Event::Admissions { paused: true, .. })
        ) && !inside
        {
            inside = true;
            forged.push(
                Event::Admitted {
                    first: admitted + 1,
                    last: admitted + 1,
                    at_ms: 0,
                }
                .line(),
            );
        }
    }
    let report = super::transparency::audit_records(&id, forged).await;
    assert!(
        findings(&report).contains("admitted while admissions were paused"),
        "{}",
        findings(&report)
    );
}
