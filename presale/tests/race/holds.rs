//! Down payment holds (issue 30): an application needs its applicant's confirmed hold,
//! and a settlement decided while applications race it captures exactly the holds of
//! those whose application committed and releases the rest: two replicas applying,
//! settling and withdrawing at once never cross. A hold moves only forward, on both
//! engines.

use super::*;
use presale::domain::{HoldBefore, HoldTerms, Registration};
use presale::store::holds::HoldState;

const AMOUNT: i64 = 1_000_000_000;

fn with_hold(mut l: NewLicense) -> NewLicense {
    l.registration = Some(Registration {
        hold: Some(HoldTerms {
            banks: vec!["melli".into()],
            amount: AMOUNT,
            title: "round title".into(),
            before: HoldBefore::Apply,
        }),
        ..Registration::default()
    });
    l
}

/// Person `i`'s hold, confirmed by the bank (as the callback's path does it).
async fn held(store: &Store, license_id: &str, i: usize) -> presale::store::holds::Hold {
    held_by(store, license_id, i, &person(i).holder).await
}

/// Person `i`'s hold under `holder`, asked of the bank and not confirmed (pending).
async fn started_by(
    store: &Store,
    license_id: &str,
    i: usize,
    holder: &presale::domain::Holder,
) -> presale::store::holds::Hold {
    let p = person(i);
    store
        .start_hold(
            license_id,
            &p.national_id,
            &p.citizen_sub,
            holder,
            "melli",
            AMOUNT,
            "round title",
        )
        .await
        .expect("sql")
        .expect("started")
}

/// The same as [`held`], under the holder `holder` (a queue's: the withdrawal finds the
/// place by it).
async fn held_by(
    store: &Store,
    license_id: &str,
    i: usize,
    holder: &presale::domain::Holder,
) -> presale::store::holds::Hold {
    let h = started_by(store, license_id, i, holder).await;
    let token = format!("tok-{i}");
    assert!(store
        .set_mandate(&h.id, "melli", &token, "state-hash")
        .await
        .expect("mandate"));
    assert!(store.confirm_hold(&h, &token).await.expect("confirm"));
    // A second confirmation (the bank's own notification) is the same hold.
    assert!(store.confirm_hold(&h, &token).await.expect("again"));
    h
}

pub(crate) async fn applications_and_settlements_never_cross(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let terms = Arc::new(issue(&a, &with_hold(license(1000, None))).await);
    let holders = 240;
    for i in 0..holders {
        held(&a, &terms.id, i).await;
    }
    // Act: everyone with a hold applies, through either replica, and twenty without one;
    // meanwhile the other replica decides settlements again and again, and a third of
    // the holders try to withdraw (refused: they hold a place in the queue).
    let mut tasks = Vec::new();
    for i in 0..holders + 20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let terms = terms.clone();
        tasks.push(tokio::spawn(async move {
            (i, store.apply(&terms, &person(i)).await.expect("sql"))
        }));
    }
    let settler = {
        let (b, id) = (b.clone(), terms.id.clone());
        tokio::spawn(async move {
            let mut decided = 0;
            for _ in 0..30 {
                // A batch that waits past its lock timeout is tried again (next tick).
                decided += b.settle_round(&id).await.unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            decided
        })
    };
    // Withdrawals one after another (each a citizen's click), racing the rest.
    let withdrawals = {
        let (a, id) = (a.clone(), terms.id.clone());
        tokio::spawn(async move {
            for i in (0..holders).step_by(3) {
                a.withdraw_hold(&id, &person(i).national_id)
                    .await
                    .expect("withdraw");
            }
        })
    };
    let mut accepted = HashSet::new();
    for t in tasks {
        let (i, r) = t.await.expect("task");
        match r {
            Ok(_) => {
                assert!(i < holders, "{i} applied without a hold");
                accepted.insert(person(i).national_id.as_str().to_owned());
            }
            Err(why) => {
                if i >= holders {
                    assert_eq!(why, Refusal::NoHold);
                }
            }
        }
    }
    settler.await.expect("settler");
    withdrawals.await.expect("withdrawals");
    a.settle_round(&terms.id).await.expect("the rest");

    // Assert: every hold decided once, captured exactly for those whose application
    // committed, released for everyone else.
    let holds = a.holds_of_license(&terms.id).await.expect("holds");
    assert_eq!(holds.len(), holders);
    for h in &holds {
        let applied = accepted.contains(&h.national_id);
        let expected = if applied {
            HoldState::Capturing
        } else {
            HoldState::Releasing
        };
        assert_eq!(h.state, expected, "{h:?}");
        assert!(h.settle_key.as_deref().is_some_and(|k| k.ends_with(&h.id)));
    }
    assert!(
        !accepted.is_empty(),
        "some applied before their hold was settled"
    );
    // And carried out once: the bank's answer moves each to its end, once.
    for h in &holds {
        assert!(a.settled(&h.id).await.expect("settled"));
        assert!(
            !b.settled(&h.id).await.expect("again"),
            "answered twice, recorded once"
        );
    }
}

/// A queue that takes the hold before joining: the join's batch reads the holds with the
/// tickets (issue 33; the step read them one join at a time before). Through two replicas
/// at once, each person twice: everyone with a confirmed hold gets one ticket (the same
/// both times), nobody else is numbered, whether their hold is only pending, was never
/// asked, or is confirmed in another campaign.
pub(crate) async fn a_queue_that_takes_holds_first_numbers_only_the_held(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let mut l = with_hold(queue_license(-5, 60, 100, 600));
    if let Some(h) = l.registration.as_mut().and_then(|r| r.hold.as_mut()) {
        h.before = HoldBefore::Entry;
    }
    let id = issue_id(&a, &l).await;
    let other = issue_id(
        &a,
        &NewLicense {
            license_no: format!("OTHER-{}", rand::random::<u32>()),
            ..l.clone()
        },
    )
    .await;
    let people = 60;
    for i in 0..people {
        match i % 4 {
            // Confirmed here.
            0 | 1 => {
                held(&a, &id, i).await;
            }
            // Started here, never confirmed.
            2 => {
                started_by(&a, &id, i, &person(i).holder).await;
            }
            // Confirmed in the other campaign only.
            _ => {
                held(&a, &other, i).await;
            }
        }
    }
    let (qa, qb) = queues(&a, &b);
    let mut tasks = Vec::new();
    for round in 0..2 {
        for i in 0..people {
            let q = if (i + round) % 2 == 0 {
                qa.clone()
            } else {
                qb.clone()
            };
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                (i, q.join_holding(&id, &person(i).national_id).await)
            }));
        }
    }
    let mut tickets: HashMap<usize, HashSet<i64>> = HashMap::new();
    for t in tasks {
        let (i, joined) = t.await.expect("task");
        match joined.expect("join") {
            Joined::Ticket { ticket, .. } => {
                assert!(
                    i % 4 < 2,
                    "person {i} has no confirmed hold here: ticket {ticket}"
                );
                tickets.entry(i).or_default().insert(ticket);
            }
            Joined::NoHold => assert!(i % 4 >= 2, "person {i} holds here: refused"),
            other => panic!("person {i}: {other:?}"),
        }
    }
    assert_eq!(tickets.len(), people / 2, "everyone holding got a ticket");
    let mut all: Vec<i64> = tickets
        .values()
        .map(|t| {
            assert_eq!(t.len(), 1, "one ticket a person, however often they join");
            *t.iter().next().expect("one")
        })
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=(people / 2) as i64).collect::<Vec<_>>(),
        "numbered 1 to n, nobody else numbered in between"
    );
}

/// A withdrawal racing a join, through two replicas: the join either finds the hold and
/// keeps it (the withdrawal then finds the place and the hold stays), or finds it gone
/// and numbers nobody. Never a place standing on a released hold.
pub(crate) async fn a_withdrawal_racing_a_join_never_leaves_a_place_without_its_hold(
    backend: Backend,
) {
    let (a, b) = two_stores(backend).await;
    let mut l = with_hold(queue_license(-5, 60, 100, 600));
    if let Some(h) = l.registration.as_mut().and_then(|r| r.hold.as_mut()) {
        h.before = HoldBefore::Entry;
    }
    let id = issue_id(&a, &l).await;
    let people = 80;
    // Each hold under its person's holder in the queue (as the hold step starts it): the
    // withdrawal looks for the place by it.
    let keys = service_kit::keys::Keyring::new(b"queue-test-key", &[]);
    for i in 0..people {
        let holder = presale::queue::holder_of(&keys, &id, person(i).national_id.as_str());
        held_by(&a, &id, i, &holder).await;
    }
    let (qa, qb) = queues(&a, &b);
    let mut tasks = Vec::new();
    for i in 0..people {
        let (q, store) = if i % 2 == 0 {
            (qa.clone(), b.clone())
        } else {
            (qb.clone(), a.clone())
        };
        let (id_join, id_withdraw) = (id.clone(), id.clone());
        let join = tokio::spawn(async move {
            q.join_holding(&id_join, &person(i).national_id)
                .await
                .expect("join")
        });
        let withdraw = tokio::spawn(async move {
            store
                .withdraw_hold(&id_withdraw, &person(i).national_id)
                .await
                .expect("withdraw")
        });
        tasks.push((i, join, withdraw));
    }
    let (mut placed, mut released) = (0, 0);
    for (i, join, withdraw) in tasks {
        let joined = join.await.expect("task");
        withdraw.await.expect("task");
        let state = a
            .hold_of(&id, &person(i).national_id)
            .await
            .expect("sql")
            .expect("a hold")
            .state;
        match joined {
            Joined::Ticket { .. } => {
                placed += 1;
                assert_eq!(
                    state,
                    HoldState::Held,
                    "person {i}: a place on a released hold"
                );
            }
            Joined::NoHold => {
                released += 1;
                assert_ne!(state, HoldState::Held, "person {i}: refused while holding");
            }
            other => panic!("person {i}: {other:?}"),
        }
    }
    assert_eq!(placed + released, people);
}

pub(crate) async fn a_hold_moves_only_forward(backend: Backend) {
    let (a, _) = two_stores(backend).await;
    let terms = issue(&a, &with_hold(license(10, None))).await;
    let h = held(&a, &terms.id, 0).await;
    for sql in [
        format!("UPDATE holds SET state = 'pending' WHERE id = '{}'", h.id),
        format!("UPDATE holds SET amount = 1 WHERE id = '{}'", h.id),
        format!("UPDATE holds SET token = 'another' WHERE id = '{}'", h.id),
        format!("UPDATE holds SET state = 'captured' WHERE id = '{}'", h.id),
        format!("UPDATE holds SET state = 'capturing' WHERE id = '{}'", h.id),
        // A key set before the decision would make the decision fail, batch after batch.
        format!(
            "UPDATE holds SET settle_key = 'x', settle_at_ms = 1 WHERE id = '{}'",
            h.id
        ),
        format!(
            "INSERT INTO holds (id, license_id, national_id, citizen_sub, holder, bank, amount, \
             title, state, created_at_ms) VALUES ('h-x', '{}', '0499370899', 's', 'x', 'melli', \
             1, 't', 'held', 1)",
            terms.id
        ),
    ] {
        let r = sqlx::query(&sql).execute(a.pool()).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
    assert_eq!(a.settle_round(&terms.id).await.expect("settle"), 1);
    let settled = a
        .hold_of(&terms.id, &person(0).national_id)
        .await
        .expect("hold");
    let key = settled.and_then(|s| s.settle_key).expect("key");
    assert!(key.starts_with("release:"));
    for sql in [
        format!(
            "UPDATE holds SET settle_key = 'capture:{}' WHERE id = '{}'",
            h.id, h.id
        ),
        format!("UPDATE holds SET state = 'captured' WHERE id = '{}'", h.id),
    ] {
        let r = sqlx::query(&sql).execute(a.pool()).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
}
