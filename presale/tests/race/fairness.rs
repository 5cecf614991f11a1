//! Fairness against the insider, the clock and the fastest script (issue 31): a second
//! suspension, a forged ticket, a lottery loser claiming a winner's rank, a clock that
//! steps back after the close, a tick that waited behind a suspension, and time given back
//! near the close. Each test here failed on the code before its fix (the closing note of
//! the session that wrote them says how).

use std::time::Duration;

use presale::domain::{Holder, LicenseTerms, NewLicense, Refusal};
use presale::queue::Joined;
use presale::store::lottery::Entered;
use presale::store::proposals::{Change, Decision, Outcome, ProposalError};
use presale::store::staff::Role;
use presale::store::Store;

use super::{
    issue_id, issue_lottery, issue_terms, nid, person, queue_license, queues, reveal_all, tick,
    two_stores, Backend,
};

const PASSWORD: &str = "correct horse battery staple";

/// How long a test lottery's registration stays open: long enough for its few entries on
/// a loaded machine (CI runs the suites in parallel on two cores).
const REGISTRATION_SECS: i64 = 4;

/// Waits until the database's clock has passed `unix_secs` (plus `extra_ms`).
async fn until_db_past(store: &Store, unix_secs: i64, extra_ms: i64) {
    while store.db_now_ms().await.expect("clock") <= unix_secs * 1000 + extra_ms {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ticks the admitter for `ms`, four times a second, as every replica does.
async fn tick_for(store: &Store, id: &str, ms: u64) {
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        tick(store, id).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A suspension while suspended is not carried out: it would stop the queue's clock a
/// second time, and everyone whose deadline fell between the two would lose their turn.
/// First failure: "ticket 1 lost its turn to a second suspension" (the second suspension
/// moved the clock's stop forward by the 2.5 s between them, past the 2 s deadline).
pub(crate) async fn a_second_suspension_costs_nobody_their_turn(backend: Backend) {
    let (sa, sb) = two_stores(backend).await;
    let (qa, _) = queues(&sa, &sb);
    let id = issue_id(&sa, &queue_license(-10, 60_000, 3, 2)).await;
    for i in 0..6 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    assert_eq!(tick(&sa, &id).await.serving, 3);

    assert!(sa.set_license_active(&id, false).await.expect("suspend"));
    tick_for(&sb, &id, 2500).await;
    assert!(
        !sb.set_license_active(&id, false).await.expect("suspend"),
        "a second suspension is no change"
    );
    tick_for(&sb, &id, 500).await;
    assert!(sa.set_license_active(&id, true).await.expect("resume"));
    tick(&sa, &id).await;
    assert!(
        sa.is_admitted(&id, 1).await.expect("admitted"),
        "ticket 1 lost its turn to a second suspension"
    );
}

/// The same through four-eyes: a stale proposal (suspend while suspended, a rate the
/// license has) and a duplicate of a pending one are refused, and a proposal gone stale
/// while it waited is refused at approval, not carried out twice.
pub(crate) async fn stale_and_duplicate_proposals_are_refused(backend: Backend) {
    let (a, _) = two_stores(backend).await;
    for who in ["issuer.a", "issuer.b"] {
        a.add_staff(
            who,
            PASSWORD,
            Role::Issuer,
            "test",
            service_kit::clock::now(),
        )
        .await
        .expect("staff");
    }
    let id = issue_id(&a, &queue_license(-10, 600, 3, 60)).await;
    let now = service_kit::clock::now();
    let suspend = Change::Suspend {
        license_id: id.clone(),
    };
    let first = a
        .propose(&suspend, "issuer.a", now)
        .await
        .expect("sql")
        .expect("proposed");
    assert_eq!(
        a.propose(&suspend, "issuer.b", now).await.expect("sql"),
        Err(ProposalError::Duplicate),
        "a second suspension proposal while one is pending"
    );
    assert!(matches!(
        a.decide(&first, "issuer.b", Decision::Approve, now)
            .await
            .expect("sql"),
        Ok(Outcome::Done { .. })
    ));
    assert_eq!(
        a.propose(&suspend, "issuer.b", now).await.expect("sql"),
        Err(ProposalError::Unchanged),
        "suspend while suspended"
    );
    let rate = Change::Rate {
        license_id: id.clone(),
        admission_per_min: 600,
    };
    assert_eq!(
        a.propose(&rate, "issuer.a", now).await.expect("sql"),
        Err(ProposalError::Unchanged),
        "the rate it has"
    );
    // Gone stale while waiting: resumed by a library caller in between.
    let resume = Change::Resume {
        license_id: id.clone(),
    };
    let p = a
        .propose(&resume, "issuer.a", now)
        .await
        .expect("sql")
        .expect("proposed");
    assert!(a.set_license_active(&id, true).await.expect("resume"));
    assert_eq!(
        a.decide(&p, "issuer.b", Decision::Approve, now)
            .await
            .expect("sql"),
        Err(ProposalError::Unchanged)
    );
}

/// A ticket is spent only by its holder: a cookie signed with the service's key for
/// someone else's number spends nothing. First failure: the forged application was
/// accepted with ticket 1 and its owner was then refused.
pub(crate) async fn a_ticket_is_spent_only_by_its_holder(backend: Backend) {
    let (sa, sb) = two_stores(backend).await;
    let (qa, _) = queues(&sa, &sb);
    let id = issue_id(&sa, &queue_license(-10, 60_000, 10, 60)).await;
    for i in 0..2 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    assert_eq!(tick(&sa, &id).await.serving, 2);
    let terms = issue_terms(&sa, &id).await;
    let as_of = |i: usize, ticket: i64| {
        let mut req = person(i);
        req.national_id = nid(i);
        req.holder = qa.holder(&id, &nid(i));
        req.ticket = ticket;
        req
    };
    // Person 1 holds ticket 2 and applies with ticket 1 (a cookie forged with the key).
    assert_eq!(
        sb.apply(&terms, &as_of(1, 1)).await.expect("sql"),
        Err(Refusal::TurnOver),
        "someone else's ticket was spent"
    );
    sb.release_own_admission(&id, &as_of(1, 1))
        .await
        .expect("release");
    assert!(
        sa.is_admitted(&id, 1).await.expect("admitted"),
        "nor released"
    );
    assert!(sa.apply(&terms, &as_of(0, 1)).await.expect("sql").is_ok());
    assert!(sa.apply(&terms, &as_of(1, 2)).await.expect("sql").is_ok());
}

/// A lottery application is checked against the applicant's rank in its own transaction,
/// and the winners' window runs from the draw, moved on by a suspension. First failure:
/// the loser, applying with the winner's rank, was accepted.
pub(crate) async fn only_a_winner_applies_and_a_suspension_after_the_draw_gives_time_back(
    backend: Backend,
) {
    let (sa, _) = two_stores(backend).await;
    let lic = issue_lottery(&sa, 1, REGISTRATION_SECS).await;
    let mut entrants = Vec::new();
    for i in 0..2 {
        let who = nid(500 + i);
        let holder = Holder(format!("entrant-{i}"));
        assert!(matches!(
            sa.enter_lottery(&lic, &who, "sub", &holder)
                .await
                .expect("enter"),
            Entered::New(_)
        ));
        entrants.push(who);
    }
    until_db_past(&sa, lic.closes_at, 100).await;
    assert_eq!(sa.draw_lottery(&lic).await.expect("freeze"), None);
    assert!(reveal_all(&sa, &lic.id).await);
    assert!(sa.draw_lottery(&lic).await.expect("draw").is_some());
    let mut ranked = Vec::new();
    for who in &entrants {
        let rank = sa
            .lottery_rank(&lic.id, who)
            .await
            .expect("rank")
            .expect("ranked");
        ranked.push((rank, who.clone()));
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    let terms = LicenseTerms {
        apply_window_secs: 2,
        ..lic.terms()
    };
    // The window: 600 s from the draw in the license; shrink it to two seconds here so
    // that the suspension below outlasts it.
    sqlx::query(&format!(
        "UPDATE lottery_draws SET apply_until_ms = {} + 2000 WHERE license_id = $1",
        if matches!(backend, Backend::Servers) {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        }
    ))
    .bind(&lic.id)
    .execute(sa.pool())
    .await
    .expect("shrink the window");
    let apply_as = |who: &presale::domain::NationalId, rank: i64| {
        let mut req = person(0);
        req.national_id = who.clone();
        req.ticket = rank;
        req
    };
    let (winner, loser) = (&ranked[0].1, &ranked[1].1);
    assert_eq!(
        sa.apply(&terms, &apply_as(loser, 1)).await.expect("sql"),
        Err(Refusal::NotAWinner),
        "a loser applied with the winner's rank"
    );
    assert!(sa
        .set_license_active(&lic.id, false)
        .await
        .expect("suspend"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(sa.set_license_active(&lic.id, true).await.expect("resume"));
    let terms = LicenseTerms {
        active: true,
        ..terms
    };
    assert!(
        sa.apply(&terms, &apply_as(winner, 1))
            .await
            .expect("sql")
            .is_ok(),
        "the suspension cost the winner their window"
    );
}

/// Once frozen, a lottery's list takes no entry whatever any clock says, and the draw
/// ranks exactly the frozen entries: a row planted in the table stops the draw. First
/// failure: after the close moved back (as a database clock stepping back does), a new
/// entry was accepted.
pub(crate) async fn a_frozen_lottery_takes_no_entry_and_draws_exactly_its_list(backend: Backend) {
    let (sa, _) = two_stores(backend).await;
    let lic = issue_lottery(&sa, 2, REGISTRATION_SECS).await;
    for i in 0..3 {
        let entered = sa
            .enter_lottery(&lic, &nid(600 + i), "sub", &Holder(format!("f-{i}")))
            .await
            .expect("enter");
        assert!(matches!(entered, Entered::New(_)));
    }
    until_db_past(&sa, lic.closes_at, 100).await;
    assert_eq!(sa.draw_lottery(&lic).await.expect("freeze"), None);

    // The clock steps back behind the close (here: the close moves ahead of the clock).
    sqlx::query("UPDATE licenses SET closes_at = closes_at + 3600 WHERE id = $1")
        .bind(&lic.id)
        .execute(sa.pool())
        .await
        .expect("step back");
    assert_eq!(
        sa.enter_lottery(&lic, &nid(700), "sub", &Holder("late".into()))
            .await
            .expect("enter"),
        Entered::Closed,
        "an entry after the freeze"
    );

    // An insider plants an entry after the freeze: the draw refuses to rank it.
    sqlx::query(
        "INSERT INTO lottery_entries (license_id, entry_no, national_id, citizen_sub, entered_at, holder) \
         VALUES ($1, 4, $2, 'sub', 0, 'planted')",
    )
    .bind(&lic.id)
    .bind(nid(701).as_str())
    .execute(sa.pool())
    .await
    .expect("plant");
    assert!(reveal_all(&sa, &lic.id).await, "seeded");
    assert!(
        sa.draw_lottery(&lic).await.is_err(),
        "a list other than the frozen one was drawn"
    );
    sqlx::query("DELETE FROM lottery_entries WHERE license_id = $1 AND entry_no = 4")
        .bind(&lic.id)
        .execute(sa.pool())
        .await
        .expect("unplant");
    assert!(sa.draw_lottery(&lic).await.expect("draw").is_some());
    let mut order = sa.lottery_order(&lic.id).await.expect("order");
    order.sort_unstable();
    assert_eq!(order, vec![1, 2, 3], "exactly the frozen entries");
}

/// A resumption gives the admitted their time back even past the close, and the admitter
/// stops at the close (moved on by the suspension). First failure: the admitted applicant
/// was refused "outside the window" after a suspension across the close.
pub(crate) async fn a_resume_gives_time_back_past_the_close_and_the_admitter_stops_there(
    backend: Backend,
) {
    let (sa, sb) = two_stores(backend).await;
    let (qa, _) = queues(&sa, &sb);
    let mut l = queue_license(-10, 60_000, 2, 3);
    l.closes_at = service_kit::clock::now() + REGISTRATION_SECS;
    l.delivery_deadline = l.closes_at + 200 * 24 * 3600;
    let id = issue_id(&sa, &l).await;
    for i in 0..10 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    let first = tick(&sa, &id).await;
    assert_eq!(first.serving, 2);
    assert!(!first.over, "{first:?}");
    assert!(sa.set_license_active(&id, false).await.expect("suspend"));
    // Suspended across the close.
    until_db_past(&sa, l.closes_at, 500).await;
    tick_for(&sb, &id, 250).await;
    let resumed_at = sa.db_now_ms().await.expect("clock");
    assert!(sa.set_license_active(&id, true).await.expect("resume"));
    tick(&sa, &id).await;
    let terms = issue_terms(&sa, &id).await;
    let mut req = person(0);
    req.national_id = nid(0);
    req.holder = qa.holder(&id, &nid(0));
    req.ticket = 1;
    assert!(
        sa.apply(&terms, &req).await.expect("sql").is_ok(),
        "the suspension across the close cost an admitted applicant their turn"
    );
    // The close, moved on by the suspension's length, passes; the admitter stops.
    let paused_ms: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT paused_ms FROM licenses WHERE id = $1")
            .bind(&id)
            .fetch_one(sa.pool())
            .await
            .expect("license")
            .try_get("paused_ms")
            .expect("paused")
    };
    assert!(
        paused_ms > 0 && paused_ms <= resumed_at,
        "the pause was counted"
    );
    let close_ms = l.closes_at * 1000 + paused_ms + 500;
    while sa.db_now_ms().await.expect("clock") < close_ms {
        tick(&sa, &id).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = tick(&sa, &id).await;
    assert!(before.over, "the round's admissions are over: {before:?}");
    let before = before.serving;
    sa.release_admission(&id, before).await.expect("release");
    tick_for(&sa, &id, 600).await;
    assert_eq!(
        tick(&sb, &id).await.serving,
        before,
        "admitted after the close"
    );
    assert!(
        sb.queue_state(&id).await.expect("sql").expect("queue").over,
        "the committed state says the round is over too"
    );
    assert!(matches!(
        qa.join(&id, &nid(0)).await.expect("join"),
        Joined::Ticket { ticket: 1, .. }
    ));
}

/// When every unit left is promised to an applicant whose turn has come, the queue says
/// so: the rest of the line is not shown an estimate of a turn that comes only if a
/// promise lapses. A lapsed promise gives its unit to the next ticket, which is promised
/// it in turn; the last application sells out. In the 150/s rehearsal of issue 33, 7 715
/// citizens waited out the tool's five minutes with two units promised and nothing said.
pub(crate) async fn the_waiting_are_told_when_every_unit_left_is_promised(backend: Backend) {
    let (sa, sb) = two_stores(backend).await;
    let (qa, _) = queues(&sa, &sb);
    let l = NewLicense {
        units: 2,
        ..queue_license(-10, 60_000, 10, 60)
    };
    let id = issue_id(&sa, &l).await;
    for i in 0..5 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    let st = tick(&sa, &id).await;
    assert_eq!((st.serving, st.live, st.unsold), (2, 2, 2), "{st:?}");
    assert!(st.every_unit_promised(), "two units, both promised: {st:?}");
    let terms = issue_terms(&sa, &id).await;
    let apply = |i: usize, ticket: i64| {
        let mut req = person(i);
        req.national_id = nid(i);
        req.holder = qa.holder(&id, &nid(i));
        req.ticket = ticket;
        req
    };
    assert!(sa.apply(&terms, &apply(0, 1)).await.expect("sql").is_ok());
    let st = tick(&sb, &id).await;
    assert!(
        st.every_unit_promised(),
        "one unit, promised to ticket 2: {st:?}"
    );
    // Ticket 2 lets its time lapse: ticket 3 is admitted and promised the unit.
    sa.release_admission(&id, 2).await.expect("release");
    let st = tick(&sb, &id).await;
    assert_eq!((st.serving, st.live, st.unsold), (3, 1, 1), "{st:?}");
    assert!(st.every_unit_promised(), "{st:?}");
    assert!(sa.apply(&terms, &apply(2, 3)).await.expect("sql").is_ok());
    let st = tick(&sa, &id).await;
    assert!(st.sold_out && !st.every_unit_promised(), "{st:?}");
    // A campaign with units to spare promises nothing of the kind.
    let roomy = issue_id(&sa, &queue_license(-10, 60_000, 10, 60)).await;
    qa.join(&roomy, &nid(0)).await.expect("join");
    let st = tick(&sa, &roomy).await;
    assert!(!st.every_unit_promised() && !st.over, "{st:?}");
}

/// A pause of admissions that spans the close does not end the round: its resume moves
/// the close on by the pause's length, so the line is not told the round is over while
/// it lasts. First failure (the first version of `over`): "told the round is over during
/// a pause".
pub(crate) async fn a_pause_of_admissions_across_the_close_ends_nothing(backend: Backend) {
    let (sa, sb) = two_stores(backend).await;
    sa.add_staff(
        "issuer.a",
        PASSWORD,
        Role::Issuer,
        "test",
        service_kit::clock::now(),
    )
    .await
    .expect("staff");
    // After the password's hashing: the close is REGISTRATION_SECS from here.
    let now = service_kit::clock::now();
    let (qa, _) = queues(&sa, &sb);
    let mut l = queue_license(-10, 60_000, 1, 60);
    l.closes_at = now + REGISTRATION_SECS;
    l.delivery_deadline = l.closes_at + 200 * 24 * 3600;
    let id = issue_id(&sa, &l).await;
    for i in 0..3 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    let st = tick(&sa, &id).await;
    assert_eq!(st.serving, 1);
    assert!(!st.over);
    let paused = sa
        .pause_admissions(&id, true, "issuer.a", service_kit::clock::now())
        .await
        .expect("sql");
    assert_eq!(paused, Ok(()));
    until_db_past(&sa, l.closes_at, 500).await;
    let st = tick(&sb, &id).await;
    assert!(!st.over, "told the round is over during a pause: {st:?}");
    let st = sb.queue_state(&id).await.expect("sql").expect("queue");
    assert!(!st.over, "the committed state too: {st:?}");
    let resumed = sa
        .pause_admissions(&id, false, "issuer.a", service_kit::clock::now())
        .await
        .expect("sql");
    assert_eq!(resumed, Ok(()));
    let st = tick(&sa, &id).await;
    assert!(!st.over, "the close moved on by the pause: {st:?}");
}

/// PostgreSQL: a tick whose lock waited behind a suspension admits nobody. Under READ
/// COMMITTED the waiting UPDATE re-checked the campaign's row but kept the license as its
/// snapshot saw it (active). First failure: "admitted 2 after the suspension committed".
pub(crate) async fn a_tick_that_waited_behind_a_suspension_admits_nobody() {
    let (sa, sb) = two_stores(Backend::Servers).await;
    let (qa, _) = queues(&sa, &sb);
    let id = issue_id(&sa, &queue_license(-10, 60_000, 2, 60)).await;
    for i in 0..6 {
        qa.join(&id, &nid(i)).await.expect("join");
    }
    assert_eq!(tick(&sa, &id).await.serving, 2);
    for t in 1..=2 {
        sa.release_admission(&id, t).await.expect("release");
    }
    // The suspension's transaction, held open: the license, then the queue's clock.
    let mut held = sa.pool().begin().await.expect("begin");
    sqlx::query("UPDATE licenses SET status = 'suspended' WHERE id = $1")
        .bind(&id)
        .execute(&mut *held)
        .await
        .expect("suspend");
    sqlx::query("UPDATE queue_campaigns SET clock_ms = clock_ms WHERE license_id = $1")
        .bind(&id)
        .execute(&mut *held)
        .await
        .expect("clock");
    let (store, campaign) = (sb.clone(), id.clone());
    let waiting = tokio::spawn(async move { tick(&store, &campaign).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.commit().await.expect("commit");
    let st = waiting.await.expect("tick");
    assert_eq!(
        st.serving,
        2,
        "admitted {} after the suspension committed",
        st.serving - 2
    );
}

/// PostgreSQL: a campaign whose queue row somebody holds locked fails its tick within its
/// budget (the admitter's lock timeout) and another campaign ticks on meanwhile. First
/// failure: the locked campaign's tick was still waiting after five seconds.
pub(crate) async fn a_held_lock_on_one_campaign_does_not_halt_another() {
    let (sa, sb) = two_stores(Backend::Servers).await;
    let (qa, _) = queues(&sa, &sb);
    let held_id = issue_id(&sa, &queue_license(-10, 60_000, 5, 60)).await;
    let other = issue_id(&sa, &queue_license(-10, 60_000, 5, 60)).await;
    for i in 0..3 {
        qa.join(&held_id, &nid(i)).await.expect("join");
        qa.join(&other, &nid(i)).await.expect("join");
    }
    let mut held = sa.pool().begin().await.expect("begin");
    sqlx::query("UPDATE queue_campaigns SET clock_ms = clock_ms WHERE license_id = $1")
        .bind(&held_id)
        .execute(&mut *held)
        .await
        .expect("hold the row");
    let (store, id) = (sb.clone(), held_id.clone());
    let stuck = tokio::spawn(async move { store.advance_queue(&id).await });
    assert_eq!(
        tick(&sb, &other).await.serving,
        3,
        "the other campaign ticks on"
    );
    let waited = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the locked campaign's tick was still waiting after five seconds")
        .expect("task");
    assert!(waited.is_err(), "it gave up on the lock: {waited:?}");
    held.rollback().await.expect("rollback");
    assert_eq!(
        tick(&sb, &held_id).await.serving,
        3,
        "and ticks once it is free"
    );
}

/// Three parties commit to a lottery's seed; the last withholds past the reveal window.
/// The seed is then fixed by the shares as they stood at the deadline (the withheld one a
/// fixed marker) through the delay function, the late reveal is refused, and the auditor
/// recomputes all of it from the public log alone (issue 31, point 2). First failure: the
/// withholding party held the draw for ever (no seed after the deadline).
pub(crate) async fn the_last_party_withholding_changes_nothing_it_could_choose(backend: Backend) {
    use presale::store::seeds::Revealed;
    use presale::transparency::seed::{self, Contribution};
    let (sa, sb) = two_stores(backend).await;
    let parties: Vec<Contribution> = ["ministry", "saipa", "observer"]
        .iter()
        .map(|p| Contribution::generate(p))
        .collect();
    let now = service_kit::clock::now();
    let mut l = super::license(2, None);
    l.selection = presale::domain::Selection::Lottery;
    l.opens_at = now - 10;
    l.closes_at = now + REGISTRATION_SECS;
    l.parties = parties.iter().map(Contribution::commitment).collect();
    l.seed_delay = Some(presale::domain::SeedDelay {
        reveal_secs: 2,
        iterations: 8,
    });
    let id = issue_id(&sa, &l).await;
    let lic = sa
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|x| x.id == id)
        .expect("license");
    for i in 0..5 {
        sa.enter_lottery(&lic, &nid(800 + i), "sub", &Holder(format!("w-{i}")))
            .await
            .expect("enter");
    }
    until_db_past(&sa, lic.closes_at, 100).await;
    assert_eq!(sa.draw_lottery(&lic).await.expect("freeze"), None);
    for c in &parties[..2] {
        assert_eq!(
            sb.reveal(&id, &c.party, &c.secret, "party")
                .await
                .expect("reveal"),
            Revealed::Accepted { seeded: false }
        );
    }
    assert_eq!(
        sa.settle_seed(&id).await.expect("settle"),
        None,
        "within the window the observer may still reveal"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let settled = sb
        .settle_seed(&id)
        .await
        .expect("settle")
        .expect("the seed, the observer's share withheld");
    let late = &parties[2];
    assert_eq!(
        sa.reveal(&id, &late.party, &late.secret, "party")
            .await
            .expect("reveal"),
        Revealed::TooLate,
        "a reveal after the deadline"
    );
    // The outcome is the one the shares at the deadline fix.
    let status = sa.seed_status(&id).await.expect("status");
    let (size, root) = status.frozen.expect("frozen");
    let shares = vec![
        (parties[0].party.clone(), parties[0].secret.clone()),
        (parties[1].party.clone(), parties[1].secret.clone()),
        (late.party.clone(), seed::WITHHELD.to_owned()),
    ];
    let (expected, _) = seed::delayed_seed(&id, "entry", size, &root, &shares, 8);
    assert_eq!(settled, expected);
    assert!(
        sa.draw_lottery(&lic).await.expect("draw").is_some(),
        "drawn"
    );
    // The auditor recomputes it from the public log alone.
    let size = super::transparency::sequence_all(&sa, &id).await;
    assert!(size > 5);
    let report = super::transparency::audit_db(&sa, &id, &[]).await;
    assert!(report.ok(), "{}", report.findings.join("\n"));
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.contains("seed checked through its delay")),
        "{:?}",
        report.checked
    );
    // An insider slips the observer's reveal in after the deadline, back-dated to before
    // it: the first signed checkpoint that holds it is late, and the auditor says so.
    let frozen_at: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT frozen_at_ms FROM campaign_seeds WHERE license_id = $1")
            .bind(&id)
            .fetch_one(sa.pool())
            .await
            .expect("frozen")
            .try_get("frozen_at_ms")
            .expect("time")
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let backdated = presale::transparency::Event::Reveal {
        party: late.party.clone(),
        secret: late.secret.clone(),
        at_ms: frozen_at + 1000,
    };
    sqlx::query("INSERT INTO log_pending (license_id, body, ref) VALUES ($1, $2, NULL)")
        .bind(&id)
        .bind(backdated.line())
        .execute(sa.pool())
        .await
        .expect("plant a reveal");
    super::transparency::sequence_all(&sa, &id).await;
    let report = super::transparency::audit_db(&sa, &id, &[]).await;
    assert!(
        report.findings.iter().any(|f| f.contains("back-dated")),
        "{}",
        report.findings.join("\n")
    );
}
