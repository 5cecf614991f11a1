//! The seed nobody can know in advance, and the public log anybody can recompute a campaign
//! from (issue 10, points 2 and 10): commit-then-reveal after the freeze; the auditor on a
//! whole queue campaign and a whole lottery campaign of thousands; and tampered logs, by
//! someone with the database alone and by an insider who also holds the signing key.

use std::sync::Arc;
use std::time::Duration;

use presale::domain::{ApplicationRequest, Holder};
use presale::queue::{early_ticket, Joined};
use presale::store::seeds::Revealed;
use presale::store::Store;
use presale::transparency::verify::{audit, LogSource, Report};
use presale::transparency::{list_root, seed, Event, LogKey, MemoryTree, EARLY};
use sqlx::Row;

use super::{
    contributions, issue_id, issue_terms, nid, queue_license, queues, reveal_all, tick, Backend,
};

fn key() -> LogKey {
    LogKey::from_seed(&[42; 32])
}

/// The log as the store serves it (what `/transparency/...` serves).
struct Db<'a>(&'a Store);

impl LogSource for Db<'_> {
    async fn checkpoints(&self, campaign: &str) -> Result<Vec<String>, String> {
        self.0
            .log_checkpoints(campaign)
            .await
            .map_err(|e| e.to_string())
    }

    async fn records(&self, campaign: &str, start: u64, end: u64) -> Result<Vec<String>, String> {
        self.0
            .log_records(campaign, start, end)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A log rewritten by an insider who holds the signing key: consistent and freshly signed.
struct Forged {
    records: Vec<String>,
    checkpoint: String,
}

impl Forged {
    fn new(campaign: &str, records: Vec<String>) -> Self {
        let mut tree = MemoryTree::default();
        for r in &records {
            tree.push(r.as_bytes());
        }
        let checkpoint = key().sign(campaign, tree.size(), tree.root(), 1);
        Self {
            records,
            checkpoint,
        }
    }
}

impl LogSource for Forged {
    async fn checkpoints(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(vec![self.checkpoint.clone()])
    }

    async fn records(&self, _: &str, start: u64, end: u64) -> Result<Vec<String>, String> {
        let end = (end as usize).min(self.records.len());
        Ok(self
            .records
            .get(start as usize..end)
            .unwrap_or_default()
            .to_vec())
    }
}

pub(crate) async fn sequence_all(store: &Store, id: &str) -> u64 {
    let mut size = 0;
    for _ in 0..20 {
        size = store.sequence_log(id, &key()).await.expect("sequence");
        if store.log_pending().await.expect("pending") == 0 {
            break;
        }
    }
    size
}

pub(crate) async fn audit_db(store: &Store, id: &str, kept: &[String]) -> Report {
    audit(&Db(store), id, key().verifier_key(), kept)
        .await
        .expect("audit")
}

/// The auditor's report on `records` as a consistent, freshly signed log (what an insider
/// with the signing key could serve).
pub(crate) async fn audit_records(id: &str, records: Vec<String>) -> Report {
    audit(&Forged::new(id, records), id, key().verifier_key(), &[])
        .await
        .expect("audit")
}

pub(crate) fn findings(r: &Report) -> String {
    r.findings.join("\n")
}

/// Before the freeze nothing in the database (or a backup) determines the order: no seed,
/// no secret, and a reveal is refused. The seed exists only after the opening froze the
/// pre-opening list and every party revealed, and it is what anyone recomputes from the
/// frozen root and the reveals. Until then no pre-opening ticket is admitted. (The old code
/// generated the seed at issuance and stored it in clear: whoever read the database knew
/// the order; these calls did not exist.)
pub(crate) async fn the_seed_is_unknowable_until_the_list_is_frozen_and_every_party_revealed(
    backend: Backend,
) {
    let (sa, sb) = super::two_stores(backend).await;
    let (qa, qb) = queues(&sa, &sb);
    let id = issue_id(&sa, &queue_license(2, 600_000, 1000, 60)).await;
    for i in 0..30 {
        let q = if i % 2 == 0 { &qa } else { &qb };
        assert!(matches!(
            q.join(&id, &nid(i)).await.expect("join"),
            Joined::Early { .. }
        ));
    }
    // Nothing that orders the queue is stored before the freeze.
    let row = sqlx::query("SELECT seed, seed_commitment FROM licenses WHERE id = $1")
        .bind(&id)
        .fetch_one(sa.pool())
        .await
        .expect("license row");
    assert_eq!(row.try_get::<String, _>("seed").expect("seed"), "");
    let secrets: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM seed_parties WHERE license_id = $1 AND secret IS NOT NULL",
    )
    .bind(&id)
    .fetch_one(sa.pool())
    .await
    .expect("parties")
    .try_get("n")
    .expect("n");
    assert_eq!(secrets, 0, "no secret stored before its reveal");
    let c = &contributions()[0];
    assert_eq!(
        sa.reveal(&id, &c.party, &c.secret, "party")
            .await
            .expect("reveal"),
        Revealed::TooEarly,
        "a reveal before the freeze is refused"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    for i in 30..40 {
        assert!(matches!(
            qa.join(&id, &nid(i)).await.expect("join"),
            Joined::Ticket { .. }
        ));
    }
    for _ in 0..3 {
        let st = tick(&sa, &id).await;
        assert_eq!(st.serving, 0, "pre-opening tickets wait for their seed");
        assert!(st.seed.is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders: Vec<String> = (0..30).map(|i| qa.holder(&id, &nid(i)).0).collect();
    let (size, root) = list_root(EARLY, holders.iter().map(String::as_str));
    let status = sa.seed_status(&id).await.expect("status");
    assert_eq!(
        status.frozen,
        Some((size, root.clone())),
        "the frozen root is the pre-opening list's, recomputable by anyone"
    );

    assert_eq!(
        sb.reveal(&id, &c.party, "a secret that was never committed", "party")
            .await
            .expect("reveal"),
        Revealed::Mismatch
    );
    assert_eq!(
        sb.reveal(&id, "observer", &c.secret, "party")
            .await
            .expect("reveal"),
        Revealed::UnknownParty
    );
    assert_eq!(
        sb.reveal(&id, &c.party, &c.secret, "party")
            .await
            .expect("reveal"),
        Revealed::Accepted { seeded: false }
    );
    assert_eq!(tick(&sa, &id).await.serving, 0, "one party is not enough");
    assert_eq!(
        sb.reveal(&id, &c.party, &c.secret, "party")
            .await
            .expect("reveal"),
        Revealed::Already
    );
    let d = &contributions()[1];
    assert_eq!(
        sa.reveal(&id, &d.party, &d.secret, "party")
            .await
            .expect("reveal"),
        Revealed::Accepted { seeded: false },
        "the seed waits for its delay, computed outside the reveal"
    );
    assert_eq!(sa.campaign_seed(&id).await.expect("seed"), None);
    let reveals: Vec<(String, String)> = contributions()
        .into_iter()
        .map(|c| (c.party, c.secret))
        .collect();
    let (expected, _) = seed::delayed_seed(&id, EARLY, 30, &root, &reveals, 4);
    assert_eq!(
        sb.settle_seed(&id).await.expect("settle"),
        Some(expected.clone())
    );
    assert_eq!(
        sa.campaign_seed(&id).await.expect("seed"),
        Some(expected.clone())
    );
    // Admissions accrue at the rate over time: let a few milliseconds pass first (a tick
    // in the same millisecond as the last one has nothing to admit yet).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let st = tick(&sa, &id).await;
    assert!(st.serving > 0, "admissions start once the seed exists");
    assert_eq!(st.seed, Some(expected));
}

/// Runs a whole queue campaign through two replicas: pre-opening and later arrivals,
/// the freeze, the reveals, admissions, a suspension and resumption, and applications
/// until sold out. Returns the campaign's id.
async fn run_queue_campaign(sa: &Store, sb: &Store, early: usize, late: usize) -> String {
    let (qa, qb) = queues(sa, sb);
    // 200 a second: the 300 units' admissions take several ticks (and log records).
    let mut l = queue_license(3, 12_000, 100_000, 600);
    l.units = 300;
    let id = issue_id(sa, &l).await;
    let join_all = |range: std::ops::Range<usize>| {
        let mut tasks = Vec::new();
        for i in range {
            let (q, id) = (if i % 2 == 0 { qa.clone() } else { qb.clone() }, id.clone());
            tasks.push(tokio::spawn(async move {
                (i, q.join(&id, &nid(i)).await.expect("join"))
            }));
        }
        tasks
    };
    let mut places = Vec::new();
    for t in join_all(0..early) {
        places.push(t.await.expect("join"));
    }
    let _ = sa.sequence_log(&id, &key()).await.expect("sequence");
    while sa.db_now_ms().await.expect("clock") < l.opens_at * 1000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in join_all(early..early + late) {
        places.push(t.await.expect("join"));
    }
    tick(sa, &id).await;
    assert!(reveal_all(sb, &id).await);
    sa.set_license_active(&id, false).await.expect("suspend");
    sb.set_license_active(&id, true).await.expect("resume");
    let _ = sb.sequence_log(&id, &key()).await.expect("sequence");
    // Admissions stop at the units left for them: the first 300 tickets.
    loop {
        let st = tick(sa, &id).await;
        if st.serving >= l.units {
            assert_eq!(st.serving, l.units, "never more admitted than units left");
            break;
        }
    }
    let seed = sa.campaign_seed(&id).await.expect("seed").expect("seeded");
    let terms = Arc::new(issue_terms(sa, &id).await);
    let mut applies = Vec::new();
    for (i, joined) in places {
        let (t, arrival) = match joined {
            Joined::Early { arrival, .. } => (
                early_ticket(seed.as_bytes(), early as i64, arrival).expect("ticket"),
                Some(arrival),
            ),
            Joined::Ticket { ticket, .. } => (ticket, None),
            other => panic!("{other:?}"),
        };
        if t > 400 {
            continue;
        }
        let (store, terms, holder) = (
            if i % 2 == 0 { sa.clone() } else { sb.clone() },
            terms.clone(),
            qa.holder(&id, &nid(i)),
        );
        applies.push(tokio::spawn(async move {
            let req = ApplicationRequest {
                national_id: nid(i),
                citizen_sub: format!("c-{i}"),
                birthdate: "1990-01-01".into(),
                ticket: t,
                arrival,
                holder,
            };
            (t, store.apply(&terms, &req).await.expect("sql"))
        }));
    }
    // Tickets up to 400 race for the last units: the earliest 300 win them, whichever
    // script is fastest (before, admissions ran past the units and later tickets won).
    let mut won = Vec::new();
    for a in applies {
        let (t, r) = a.await.expect("apply");
        if r.is_ok() {
            won.push(t);
        }
    }
    won.sort_unstable();
    assert_eq!(won.len(), 300, "sold out exactly");
    assert_eq!(
        won,
        (1..=300).collect::<Vec<i64>>(),
        "a later ticket won a unit an earlier one was admitted for"
    );
    id
}

/// The auditor recomputes a whole queue campaign of thousands from its public log, and
/// finds each tampering: records changed in the database (the signed checkpoints no longer
/// match), and, by an insider who also signs, a reordered admission, a dropped ticket and a
/// replaced seed (the campaign no longer recomputes, and the rewritten log is not an
/// extension of a checkpoint anyone kept).
pub(crate) async fn the_auditor_recomputes_a_queue_campaign_and_finds_tampering(backend: Backend) {
    let postgres = matches!(backend, Backend::Servers);
    let (sa, sb) = super::two_stores(backend).await;
    let id = run_queue_campaign(&sa, &sb, 1500, 1500).await;
    let size = sequence_all(&sa, &id).await;
    assert!(
        size > 3000,
        "tickets, admissions and applications logged: {size}"
    );
    let report = audit_db(&sa, &id, &[]).await;
    assert!(report.ok(), "{}", findings(&report));
    assert!(
        report.checked.iter().any(|c| {
            c.contains(
            "1500 pre-opening arrivals shuffled by the recomputed seed, 1500 later tickets in order"
        ) && c.contains("300 accepted (cap 300)")
        }),
        "{:?}",
        report.checked
    );
    let kept = report.latest.clone().expect("a checkpoint").note;

    // An insider with the signing key rewrites the log three ways.
    let records = sa.log_records(&id, 0, size).await.expect("records");
    let events: Vec<Event> = records
        .iter()
        .map(|r| Event::parse(r).expect("an event"))
        .collect();
    let position = |f: &dyn Fn(&Event) -> bool| events.iter().position(f).expect("present");
    let admissions: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Admitted { .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(admissions.len() >= 2, "several admission records");
    let mut reordered = records.clone();
    // Swap what two admission records admitted: the later batch let in first.
    let (a, b) = (admissions[0], admissions[1]);
    let swap = |e: &Event, other: &Event| match (e, other) {
        (Event::Admitted { at_ms, .. }, Event::Admitted { first, last, .. }) => Event::Admitted {
            first: *first,
            last: *last,
            at_ms: *at_ms,
        }
        .line(),
        _ => unreachable!(),
    };
    reordered[a] = swap(&events[a], &events[b]);
    reordered[b] = swap(&events[b], &events[a]);
    let mut dropped = records.clone();
    dropped.remove(position(
        &|e| matches!(e, Event::Ticket { ticket: Some(t), .. } if *t == 2000),
    ));
    let mut reseeded = records.clone();
    let at = position(&|e| matches!(e, Event::Seed { .. }));
    let Event::Seed { delay, .. } = &events[at] else {
        unreachable!("found by position")
    };
    reseeded[at] = Event::Seed {
        seed: "a-seed-the-insider-prefers".into(),
        delay: delay.clone(),
    }
    .line();
    // A suspension recorded before an admission: the admission is a finding (issue 31,
    // point 8; before, the verifier ignored the status at admissions).
    let mut while_suspended = records.clone();
    while_suspended.insert(
        admissions[1],
        Event::Status {
            status: "suspended".into(),
            at_ms: 0,
        }
        .line(),
    );
    // One commitment under two parties' names (issue 31, point 1): a finding.
    let mut one_party = records.clone();
    if let Event::License { id, terms, at_ms } = &events[0] {
        let mut terms = terms.clone();
        terms.parties[1].commitment = terms.parties[0].commitment.clone();
        one_party[0] = Event::License {
            id: id.clone(),
            terms,
            at_ms: *at_ms,
        }
        .line();
    }
    // The database said a higher rate than any record did (issue 31, point 4): here, the
    // license's rate as logged is a ticket a minute, and the admissions are not.
    let mut too_fast = records.clone();
    if let Event::License { id, terms, at_ms } = &events[0] {
        let mut terms = terms.clone();
        terms.admission_per_min = 1;
        too_fast[0] = Event::License {
            id: id.clone(),
            terms,
            at_ms: *at_ms,
        }
        .line();
    }
    for (what, forged, expect) in [
        (
            "admitted past the rate",
            too_fast,
            "more than the rate in force",
        ),
        (
            "one commitment twice",
            one_party,
            "not two distinct parties",
        ),
        (
            "admitted while suspended",
            while_suspended,
            "admitted while the license was suspended",
        ),
        ("reordered admission", reordered, "out of order"),
        ("dropped ticket", dropped, "ticket 2001 out of order"),
        (
            "replaced seed",
            reseeded,
            "is not the delay function's output",
        ),
    ] {
        let forged = Forged::new(&id, forged);
        let alone = audit(&forged, &id, key().verifier_key(), &[])
            .await
            .expect("audit");
        assert!(
            alone.findings.iter().any(|f| f.contains(expect)),
            "{what}: {}",
            findings(&alone)
        );
        let against_kept = audit(
            &forged,
            &id,
            key().verifier_key(),
            std::slice::from_ref(&kept),
        )
        .await
        .expect("audit");
        // Shorter than the kept checkpoint, or not extending it.
        assert!(
            against_kept.findings.iter().any(|f| {
                f.contains("do not hash to the signed checkpoint")
                    || f.contains("its checkpoint says")
            }),
            "{what} against a kept checkpoint: {}",
            findings(&against_kept)
        );
    }

    // Someone with the database but not the key edits a record in place: the triggers
    // refuse, so they drop them first (the service's role could, before role separation).
    let drop = if postgres {
        "DROP TRIGGER log_records_append_only ON log_records"
    } else {
        "DROP TRIGGER log_records_no_update"
    };
    sqlx::query(drop).execute(sa.pool()).await.expect("drop");
    let ticket_idx = position(&|e| matches!(e, Event::Ticket { .. }));
    let (holder, arrival, ticket) = match &events[ticket_idx] {
        Event::Ticket {
            holder,
            arrival,
            ticket,
        } => (holder.clone(), *arrival, *ticket),
        _ => unreachable!(),
    };
    let edited = Event::Ticket {
        holder: format!("{holder}x"),
        arrival,
        ticket,
    }
    .line();
    sqlx::query("UPDATE log_records SET body = $3 WHERE license_id = $1 AND idx = $2")
        .bind(&id)
        .bind(ticket_idx as i64)
        .bind(&edited)
        .execute(sa.pool())
        .await
        .expect("tamper");
    let report = audit_db(&sa, &id, &[]).await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains("do not hash to the signed checkpoint")),
        "{}",
        findings(&report)
    );
}

/// The auditor recomputes a whole lottery of thousands: the entries frozen at the close,
/// the reveals, the seed, the draw and every accepted winner.
pub(crate) async fn the_auditor_recomputes_a_lottery_campaign(backend: Backend) {
    let (sa, sb) = super::two_stores(backend).await;
    let (qa, _) = queues(&sa, &sb);
    // Open long enough for 2000 entries on a busy CI machine.
    let lic = super::issue_lottery(&sa, 200, 15).await;
    let id = lic.id.clone();
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let (store, lic, holder) = (
            if i % 2 == 0 { sa.clone() } else { sb.clone() },
            lic.clone(),
            qa.holder(&id, &nid(i)),
        );
        tasks.push(tokio::spawn(async move {
            store
                .enter_lottery(&lic, &nid(i), &format!("c-{i}"), &holder)
                .await
                .expect("enter")
        }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("entry"),
            presale::store::lottery::Entered::New(_)
        ));
    }
    let _ = sa.sequence_log(&id, &key()).await.expect("sequence");
    while sa.draw_lottery(&lic).await.expect("draw").is_none() {
        let _ = reveal_all(&sb, &id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let terms = Arc::new(issue_terms(&sa, &id).await);
    let mut applies = Vec::new();
    for i in 0..2000 {
        let rank = sa
            .lottery_rank(&id, &nid(i))
            .await
            .expect("rank")
            .expect("ranked");
        if rank > 200 {
            continue;
        }
        let (store, terms) = (sb.clone(), terms.clone());
        let holder = Holder(qa.holder(&id, &nid(i)).0);
        applies.push(tokio::spawn(async move {
            let req = ApplicationRequest {
                national_id: nid(i),
                citizen_sub: format!("c-{i}"),
                birthdate: "1990-01-01".into(),
                ticket: rank,
                arrival: None,
                holder,
            };
            store.apply(&terms, &req).await.expect("sql")
        }));
    }
    // Applications open at the close; the winners apply.
    let mut accepted = 0;
    for a in applies {
        accepted += usize::from(a.await.expect("apply").is_ok());
    }
    assert_eq!(accepted, 200);
    sequence_all(&sa, &id).await;
    let report = audit_db(&sa, &id, &[]).await;
    assert!(report.ok(), "{}", findings(&report));
    assert!(
        report.checked.iter().any(|c| c
            .contains("lottery: 2000 entries frozen, draw recomputed from the seed, 200 accepted")),
        "{:?}",
        report.checked
    );
}
