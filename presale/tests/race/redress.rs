//! After the sale, part two (issue 34), on both engines and across two replicas: a
//! complaint answered once however many replicas race, climbing to the ministry by its
//! age and decided only by an inspector; a car in the workshop once at a time and the
//! law's warranty thresholds; an inspection's suspension proposed by an inspector,
//! approved once by a second member, pausing exactly the manufacturer's active campaigns
//! and resuming exactly those; and the record that withholds stars.

use presale::domain::redress::{ComplaintKind, Level, Outcome};
use presale::store::after_sale::{Stage, StageRequest};
use presale::store::proposals::{Change, Decision, MakerStanding, ProposalError};
use presale::store::redress::{CaseError, ComplaintError, Decided, VisitError};
use presale::store::staff::Role;
use presale::store::Store;
use testkit::Backend;

use super::{issue, license, person, two_stores};

const DAY: i64 = 86_400;
const PASSWORD: &str = "correct horse battery staple";

async fn staff(store: &Store, who: &str, role: Role) {
    store
        .add_staff(who, PASSWORD, role, "test", service_kit::clock::now())
        .await
        .expect("staff");
}

/// An accepted application of `person(i)` to a fresh Saipa license: its tracking code.
async fn applied(store: &Store, i: usize) -> (String, String) {
    let terms = issue(store, &license(5, None)).await;
    let acc = store
        .apply(&terms, &person(i))
        .await
        .expect("sql")
        .expect("accepted");
    (terms.id, acc.tracking_code)
}

pub(crate) async fn a_complaint_is_answered_once_and_reaches_the_ministry_by_its_age(
    backend: Backend,
) {
    let (a, b) = two_stores(backend).await;
    let (_, code) = applied(&a, 0).await;
    let now = service_kit::clock::now();
    let file = |store: &Store, sub: &'static str, kind, body: &'static str| {
        let (store, code) = (store.clone(), code.clone());
        async move {
            store
                .file_complaint("saipa", sub, &code, kind, body, &[], 10, now)
                .await
                .expect("sql")
        }
    };
    // Only the buyer's own application, at its manufacturer; some text.
    assert_eq!(
        file(&a, "c-9", ComplaintKind::PriceChange, "not mine").await,
        Err(ComplaintError::NoApplication)
    );
    assert_eq!(
        a.file_complaint(
            "iran-khodro",
            "c-0",
            &code,
            ComplaintKind::Other,
            "x",
            &[],
            10,
            now
        )
        .await
        .expect("sql"),
        Err(ComplaintError::NoApplication)
    );
    assert_eq!(
        file(&a, "c-0", ComplaintKind::PriceChange, "   ").await,
        Err(ComplaintError::Text)
    );
    let id = file(&a, "c-0", ComplaintKind::PriceChange, "The price went up.")
        .await
        .expect("filed");
    assert_eq!(
        file(&b, "c-0", ComplaintKind::PriceChange, "Again.").await,
        Err(ComplaintError::Open),
        "one open complaint of a kind per application"
    );
    let unanswered = file(&b, "c-0", ComplaintKind::LateDelivery, "No date.")
        .await
        .expect("a second kind");

    // Eight answers raced through both replicas: one is recorded.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, id) = (if i % 2 == 0 { a.clone() } else { b.clone() }, id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .answer_complaint(
                    "saipa",
                    &id,
                    &format!("answer {i}"),
                    "client:saipa-seed",
                    now + 60,
                )
                .await
                .expect("sql")
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, ComplaintError::Answered),
        }
    }
    assert_eq!(ok, 1, "one answer");
    assert_eq!(
        a.answer_complaint("iran-khodro", &id, "not ours", "client:x", now)
            .await
            .expect("sql"),
        Err(ComplaintError::NoComplaint),
        "another manufacturer answers nothing"
    );

    // Nobody decides what is still the manufacturer's; an inspector decides what reached
    // the ministry; an issuer decides nothing.
    staff(&a, "inspector.a", Role::Inspector).await;
    staff(&a, "issuer.a", Role::Issuer).await;
    assert_eq!(
        a.decide_complaint(&unanswered, Outcome::Upheld, "inspector.a", now)
            .await
            .expect("sql"),
        Err(ComplaintError::NotAnswered)
    );
    // The buyer takes the answered one further; once.
    assert_eq!(
        b.buyer_on_answer("saipa", "c-1", &id, false, now)
            .await
            .expect("sql"),
        Err(ComplaintError::NoComplaint),
        "another buyer cannot"
    );
    assert_eq!(
        b.buyer_on_answer("saipa", "c-0", &id, false, now + 120)
            .await
            .expect("sql"),
        Ok(())
    );
    assert_eq!(
        a.buyer_on_answer("saipa", "c-0", &id, true, now + 130)
            .await
            .expect("sql"),
        Err(ComplaintError::NotAnswered)
    );
    let c = b.complaint(&id).await.expect("sql").expect("complaint");
    assert_eq!(c.level(now + 200), Level::Province);
    assert_eq!(c.level(c.filed_at + 15 * DAY), Level::ConsumerProtection);
    assert_eq!(c.level(c.filed_at + 20 * DAY), Level::Board);
    assert_eq!(
        a.decide_complaint(&id, Outcome::Upheld, "issuer.a", now + 300)
            .await
            .expect("sql"),
        Err(ComplaintError::NotInspector),
        "an issuer confirms an inspector's decision, never proposes one"
    );
    // One person's word is a proposal: upheld only when a second member (an issuer or
    // another inspector, not behind the same person) says the same.
    assert_eq!(
        a.decide_complaint(&id, Outcome::Upheld, "inspector.a", now + 300)
            .await
            .expect("sql"),
        Ok(Decided::Proposed)
    );
    assert_eq!(
        b.decide_complaint(&id, Outcome::Upheld, "inspector.a", now + 301)
            .await
            .expect("sql"),
        Err(ComplaintError::SamePerson)
    );
    let c = a.complaint(&id).await.expect("sql").expect("complaint");
    assert_eq!(c.outcome, None, "not decided by one person");
    assert_eq!(
        a.demerits(now + 400)
            .await
            .expect("sql")
            .get("saipa")
            .map(|d| d.upheld),
        Some(0)
    );
    assert_eq!(
        b.decide_complaint(&id, Outcome::Upheld, "issuer.a", now + 302)
            .await
            .expect("sql"),
        Ok(Decided::Final)
    );
    assert_eq!(
        b.decide_complaint(&id, Outcome::Dismissed, "inspector.a", now + 303)
            .await
            .expect("sql"),
        Err(ComplaintError::Closed)
    );

    // The record: eleven days on, one complaint upheld and one unanswered past its
    // deadline: two demerits, one star withheld.
    let later = now + 11 * DAY;
    let record = a.demerits(later).await.expect("sql");
    let saipa = record.get("saipa").copied().unwrap_or_default();
    assert_eq!((saipa.upheld, saipa.unanswered), (1, 1), "{saipa:?}");
    assert_eq!(saipa.withheld(), 1);
    // Every step audited, under who took it; the buyer as "citizen", never by their ID.
    let log = b.audit_log().await.expect("audit");
    for action in [
        "complaint.file",
        "complaint.answer",
        "complaint.escalate",
        "complaint.decide",
    ] {
        assert!(log.iter().any(|e| e.action == action), "{action}");
    }
    assert!(log
        .iter()
        .filter(|e| e.action.starts_with("complaint."))
        .all(|e| !e.detail.contains("0100000000") && !e.actor.contains("0100000000")));
}

pub(crate) async fn one_warranty_visit_at_a_time_and_the_laws_thresholds(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let (_, code) = applied(&a, 0).await;
    let now = service_kit::clock::now();
    // Not delivered yet: no warranty.
    let open = |store: &Store, at: i64, maker: &'static str| {
        let (store, code) = (store.clone(), code.clone());
        async move {
            store
                .open_visit(
                    maker,
                    &code,
                    at,
                    "WO: brakes",
                    true,
                    None,
                    "client:saipa-seed",
                    now,
                )
                .await
                .expect("sql")
        }
    };
    assert_eq!(open(&a, now, "saipa").await, Err(VisitError::NoCar));
    for s in [Stage::Contract, Stage::Delivered] {
        let r = StageRequest {
            stage: s,
            amount: 0,
            at: now,
            key: None,
        };
        a.record_stage("saipa", &code, &r, "client:saipa-seed", now)
            .await
            .expect("sql")
            .expect("stage");
    }
    assert_eq!(open(&a, now, "iran-khodro").await, Err(VisitError::NoCar));
    assert_eq!(
        open(&a, now - 60, "saipa").await,
        Err(VisitError::Time),
        "not before the delivery"
    );
    assert_eq!(
        open(&a, now + 60, "saipa").await,
        Err(VisitError::Time),
        "not in the future"
    );
    assert_eq!(
        a.open_visit("saipa", &code, now, " ", false, None, "x", now)
            .await
            .expect("sql"),
        Err(VisitError::WorkOrder)
    );
    // Six visits raced through both replicas: the car is in once.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(open(&store, now, "saipa")));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(id) => ids.push(id),
            Err(e) => assert_eq!(e, VisitError::InWorkshop),
        }
    }
    assert_eq!(ids.len(), 1, "one visit at a time");
    // Back repaired two days and an hour later: a replacement car was due.
    let back = now + 2 * DAY + 3600;
    assert_eq!(
        b.close_visit("saipa", &ids[0], back, true, "client:saipa-seed", back)
            .await
            .expect("sql"),
        Ok(())
    );
    assert_eq!(
        a.close_visit("saipa", &ids[0], back, true, "client:saipa-seed", back)
            .await
            .expect("sql"),
        Err(VisitError::Returned)
    );
    let w = a.warranty_of_citizen("c-0", back).await.expect("sql");
    assert_eq!(w.len(), 1);
    assert!(w[0].tally.replacement_car_due);
    assert_eq!(w[0].tally.failed_safety, 1);
    assert!(!w[0].tally.replace_or_refund_due);
    // A return is recorded as it happens: one dated back past the hour is refused (a
    // four-day stay written as one would cancel the replacement car).
    let at = back + 3600;
    let id = a
        .open_visit("saipa", &code, at, "WO: noise", false, Some("k-1"), "x", at)
        .await
        .expect("sql")
        .expect("open");
    // A retry with the same key, whatever time it carries, is the same visit.
    assert_eq!(
        b.open_visit(
            "saipa",
            &code,
            at + 5,
            "WO: noise",
            false,
            Some("k-1"),
            "x",
            at + 5
        )
        .await
        .expect("sql"),
        Ok(id.clone())
    );
    assert_eq!(
        b.open_visit(
            "saipa",
            &code,
            at,
            "WO: brakes",
            true,
            Some("k-1"),
            "x",
            at + 5
        )
        .await
        .expect("sql"),
        Err(VisitError::KeyReused)
    );
    let late = at + 3 * DAY;
    assert_eq!(
        a.close_visit("saipa", &id, late - 2 * DAY, false, "x", late)
            .await
            .expect("sql"),
        Err(VisitError::Time)
    );
    a.close_visit("saipa", &id, late - 60, false, "x", late)
        .await
        .expect("sql")
        .expect("back");
    // Two more failed safety repairs: replacement or refund, and a demerit.
    for k in 1..3 {
        let at = late + k * DAY;
        let id = a
            .open_visit("saipa", &code, at, "WO: brakes again", true, None, "x", at)
            .await
            .expect("sql")
            .expect("open");
        b.close_visit("saipa", &id, at + 3600, true, "x", at + 3600)
            .await
            .expect("sql")
            .expect("back");
    }
    let end = late + 3 * DAY;
    let w = b.warranty_of_manufacturer("saipa", end).await.expect("sql");
    assert_eq!(w[0].tally.failed_safety, 3);
    assert!(w[0].tally.replace_or_refund_due);
    let record = a.demerits(end).await.expect("sql");
    assert_eq!(record.get("saipa").map(|d| d.warranty), Some(1));

    // Back-to-back visits are one stay: out and in again within a day does not start the
    // 48 hours over.
    let (_, other) = applied(&a, 1).await;
    for s in [Stage::Contract, Stage::Delivered] {
        let r = StageRequest {
            stage: s,
            amount: 0,
            at: end,
            key: None,
        };
        a.record_stage("saipa", &other, &r, "x", end)
            .await
            .expect("sql")
            .expect("stage");
    }
    let mut t = end;
    for _ in 0..2 {
        let id = a
            .open_visit("saipa", &other, t, "WO: gearbox", false, None, "x", t)
            .await
            .expect("sql")
            .expect("open");
        a.close_visit("saipa", &id, t + 30 * 3600, true, "x", t + 30 * 3600)
            .await
            .expect("sql")
            .expect("back");
        t += 30 * 3600 + 60;
    }
    let w = a.warranty_of_citizen("c-1", t).await.expect("sql");
    assert!(w[0].tally.replacement_car_due, "{:?}", w[0].tally);
}

pub(crate) async fn an_inspectors_suspension_pauses_exactly_the_makers_campaigns(backend: Backend) {
    let (a, b) = two_stores(backend).await;
    let now = service_kit::clock::now();
    let (running, _) = applied(&a, 0).await;
    let (stopped, _) = applied(&a, 1).await;
    for (who, role) in [
        ("issuer.a", Role::Issuer),
        ("issuer.b", Role::Issuer),
        ("inspector.a", Role::Inspector),
        ("inspector.b", Role::Inspector),
    ] {
        staff(&a, who, role).await;
    }
    // One campaign suspended by the issuers before any inspection.
    let p = a
        .propose(
            &Change::Suspend {
                license_id: stopped.clone(),
            },
            "issuer.a",
            now,
        )
        .await
        .expect("sql")
        .expect("proposed");
    a.decide(&p, "issuer.b", Decision::Approve, now)
        .await
        .expect("sql")
        .expect("suspended");

    // A case, a proposal by an inspector (not an issuer), approved once by a second member.
    assert_eq!(
        a.open_case("saipa", None, "Late deliveries.", "issuer.a", now)
            .await
            .expect("sql"),
        Err(CaseError::NotInspector)
    );
    assert_eq!(
        a.open_case("nobody", None, "?", "inspector.a", now)
            .await
            .expect("sql"),
        Err(CaseError::NoManufacturer)
    );
    let case = a
        .open_case("saipa", None, "Late deliveries.", "inspector.a", now)
        .await
        .expect("sql")
        .expect("case");
    let suspend = Change::Maker {
        manufacturer: "saipa".into(),
        case_id: case.clone(),
        standing: MakerStanding::Suspend,
    };
    assert_eq!(
        a.propose(&suspend, "issuer.a", now).await.expect("sql"),
        Err(ProposalError::NotInspector)
    );
    let wrong_case = Change::Maker {
        manufacturer: "iran-khodro".into(),
        case_id: case.clone(),
        standing: MakerStanding::Suspend,
    };
    assert_eq!(
        a.propose(&wrong_case, "inspector.a", now)
            .await
            .expect("sql"),
        Err(ProposalError::NoCase)
    );
    let p = a
        .propose(&suspend, "inspector.a", now)
        .await
        .expect("sql")
        .expect("proposed");
    assert_eq!(
        a.decide(&p, "inspector.a", Decision::Approve, now)
            .await
            .expect("sql"),
        Err(ProposalError::OwnProposal)
    );
    let (x, y) = tokio::join!(
        a.decide(&p, "inspector.b", Decision::Approve, now),
        b.decide(&p, "issuer.b", Decision::Approve, now)
    );
    let results = [x.expect("sql"), y.expect("sql")];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results.contains(&Err(ProposalError::NotFound)));
    let licenses = b.licenses().await.expect("sql");
    let status = |id: &str| licenses.iter().find(|l| l.id == id).map(|l| l.is_active());
    assert_eq!(
        (status(&running), status(&stopped)),
        (Some(false), Some(false))
    );
    assert!(b.maker_suspended("saipa").await.expect("sql"));
    let pending = a.pending_standing().await.expect("sql");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].decided.map(|d| (d.suspended, d.stars)),
        Some((Some(true), None))
    );
    // No new campaign for a suspended manufacturer.
    let p = a
        .propose(
            &Change::Issue {
                license: Box::new(license(5, None)),
            },
            "issuer.a",
            now,
        )
        .await
        .expect("sql");
    match p {
        Err(e) => assert_eq!(e, ProposalError::MakerSuspended),
        Ok(p) => assert_eq!(
            b.decide(&p, "issuer.b", Decision::Approve, now)
                .await
                .expect("sql"),
            Err(ProposalError::MakerSuspended)
        ),
    }
    // Nor through the operator's bootstrap path (`presale license issue`).
    assert_eq!(
        a.issue_license_as(&license(5, None), "cli:operator", now)
            .await
            .expect("sql"),
        Err(ProposalError::MakerSuspended)
    );
    // Suspended again: refused; a campaign's own resumption: refused while Saipa is.
    assert_eq!(
        a.propose(&suspend, "inspector.a", now).await.expect("sql"),
        Err(ProposalError::Unchanged)
    );
    let p = a
        .propose(
            &Change::Resume {
                license_id: running.clone(),
            },
            "issuer.a",
            now,
        )
        .await
        .expect("sql")
        .expect("proposed");
    assert_eq!(
        b.decide(&p, "issuer.b", Decision::Approve, now)
            .await
            .expect("sql"),
        Err(ProposalError::MakerSuspended)
    );
    // Resumed: the campaign it paused runs again; the one the issuers suspended does not.
    let resume = Change::Maker {
        manufacturer: "saipa".into(),
        case_id: case.clone(),
        standing: MakerStanding::Resume,
    };
    let p = b
        .propose(&resume, "inspector.b", now)
        .await
        .expect("sql")
        .expect("proposed");
    a.decide(&p, "inspector.a", Decision::Approve, now + 1)
        .await
        .expect("sql")
        .expect("resumed");
    let licenses = a.licenses().await.expect("sql");
    let status = |id: &str| licenses.iter().find(|l| l.id == id).map(|l| l.is_active());
    assert_eq!(
        (status(&running), status(&stopped)),
        (Some(true), Some(false))
    );
    assert!(!a.maker_suspended("saipa").await.expect("sql"));
    // Carried out at the IdP: nothing left once noted.
    let pending = a.pending_standing().await.expect("sql");
    // Only what the resumption changed: no rating rides along with it.
    assert_eq!(
        pending[0].decided.map(|d| (d.suspended, d.stars)),
        Some((Some(false), None))
    );
    let version = pending[0].decided.map(|d| d.version);
    a.standing_pushed("saipa", version, pending[0].withheld.map(|w| w.1), None)
        .await
        .expect("sql");
    assert!(a.pending_standing().await.expect("sql").is_empty());
    // Audited: the approvals and each campaign's own entry.
    let log = b.audit_log().await.expect("audit");
    for action in ["manufacturer.suspend", "manufacturer.resume", "case.open"] {
        assert!(log.iter().any(|e| e.action == action), "{action}");
    }
    assert!(log.iter().any(|e| e.action == "license.suspend"
        && e.subject == running
        && e.detail.contains(&case)));
}

/// The service's own database role (PostgreSQL) cannot rewrite the after-sale record: a
/// complaint's times and text are fixed, an answer or a decision is written once and only
/// with its audit entry, a warranty visit's start and its return likewise, and a
/// manufacturer's standing changes only with its approval's entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_role_cannot_rewrite_the_after_sale_record() {
    let (_db, owner, app) = super::insiders::as_service_role().await;
    let (_, code) = applied(&app, 0).await;
    let now = service_kit::clock::now();
    let complaint = app
        .file_complaint(
            "saipa",
            "c-0",
            &code,
            ComplaintKind::Other,
            "x",
            &[],
            10,
            now,
        )
        .await
        .expect("sql")
        .expect("filed through the service's path");
    for s in [Stage::Contract, Stage::Delivered] {
        let r = StageRequest {
            stage: s,
            amount: 0,
            at: now,
            key: None,
        };
        app.record_stage("saipa", &code, &r, "x", now)
            .await
            .expect("sql")
            .expect("stage");
    }
    let visit = app
        .open_visit("saipa", &code, now, "WO", true, None, "x", now)
        .await
        .expect("sql")
        .expect("visit");
    staff(&app, "inspector.a", Role::Inspector).await;
    let case = app
        .open_case("saipa", None, "c", "inspector.a", now)
        .await
        .expect("sql")
        .expect("case");
    app.set_withheld("saipa", 1, "1 overdue", now)
        .await
        .expect("sql");
    for sql in [
        format!("UPDATE complaints SET answer_due = answer_due + 9999999 WHERE id = '{complaint}'"),
        format!("UPDATE complaints SET body = 'nothing' WHERE id = '{complaint}'"),
        format!("UPDATE complaints SET answer = 'a', answered_at = filed_at WHERE id = '{complaint}'"),
        format!("UPDATE complaints SET outcome = 'dismissed' WHERE id = '{complaint}'"),
        format!("UPDATE warranty_visits SET opened_at = opened_at + 86400 WHERE id = '{visit}'"),
        format!("UPDATE warranty_visits SET returned_at = opened_at, failed = 0 WHERE id = '{visit}'"),
        format!("UPDATE inspection_cases SET summary = 'x' WHERE id = '{case}'"),
        "INSERT INTO maker_standing (manufacturer, suspended, decided_kind, decided_version, \
         updated_at) VALUES ('iran-khodro', 0, 'resume', 1, 1)"
            .to_owned(),
        "UPDATE maker_standing SET suspended = 0, decided_kind = 'resume', \
         decided_version = decided_version + 1 WHERE manufacturer = 'saipa'"
            .to_owned(),
        "UPDATE maker_standing SET withheld = 0, withheld_version = withheld_version + 100 \
         WHERE manufacturer = 'saipa'"
            .to_owned(),
        format!(
            "INSERT INTO complaints (id, application_id, license_id, manufacturer, citizen_sub, \
             kind, body, filed_at, answer_due) SELECT 'cp-x', application_id, license_id, \
             manufacturer, 'c-0', 'price_change', 'y', 1, 2 FROM complaints WHERE id = '{complaint}'"
        ),
    ] {
        let r = sqlx::query(&sql).execute(app.pool()).await;
        let e = r.expect_err(&format!("the service's role may not: {sql}"));
        let text = e.to_string();
        assert!(
            text.contains("permission denied")
                || text.contains("not for the service")
                || text.contains("audit entry")
                || text.contains("one version at a time"),
            "{sql}: {text}"
        );
    }
    // Under cover of an entry it writes itself: an acceptance the buyer never gave (no
    // answer in time), and a resumption no two people approved.
    for (action, subject, detail, sql) in [
        (
            "complaint.accept",
            complaint.clone(),
            String::new(),
            format!(
                "UPDATE complaints SET outcome = 'accepted', decided_by = 'citizen', \
                 decided_at = {now} WHERE id = '{complaint}'"
            ),
        ),
        (
            "manufacturer.standing",
            "iran-khodro".to_owned(),
            "v1 suspend; case x".to_owned(),
            format!(
                "INSERT INTO maker_standing (manufacturer, suspended, decided_kind, \
                 decided_version, suspend_version, decided_by, proposed_by, proposal_id, \
                 updated_at) VALUES ('iran-khodro', 1, 'suspend', 1, 1, 'me', 'me-too', \
                 'p-none', {now})"
            ),
        ),
    ] {
        let mut tx = app.pool().begin().await.expect("begin");
        app.audit_in(
            &mut tx,
            &presale::store::audit::Entry {
                at: now,
                actor: "insider",
                action,
                subject: &subject,
                detail: &detail,
                anchor: None,
            },
        )
        .await
        .expect("an entry of its own");
        let wrote = sqlx::query(&sql).execute(&mut *tx).await;
        let done = match wrote {
            Ok(_) => tx.commit().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let text = done.expect_err(&format!("the service's role may not: {sql}"));
        assert!(text.contains("not for the service"), "{sql}: {text}");
    }
    // The service's own paths, as the role, pass every guard: two decisions in a row (the
    // second an upsert of the row the first made), the record's stars changing twice,
    // what the IdP took noted, a complaint proposed and confirmed.
    staff(&app, "inspector.b", Role::Inspector).await;
    staff(&app, "issuer.a", Role::Issuer).await;
    for (standing, by, approver) in [
        (MakerStanding::Suspend, "inspector.a", "inspector.b"),
        (MakerStanding::Resume, "inspector.b", "issuer.a"),
        (MakerStanding::Rate { stars: 2 }, "inspector.a", "issuer.a"),
    ] {
        let change = Change::Maker {
            manufacturer: "saipa".into(),
            case_id: case.clone(),
            standing,
        };
        let p = app
            .propose(&change, by, now)
            .await
            .expect("sql")
            .expect("proposed");
        app.decide(&p, approver, Decision::Approve, now)
            .await
            .expect("sql")
            .unwrap_or_else(|e| panic!("{standing:?}: {e}"));
    }
    app.set_withheld("saipa", 2, "11 overdue", now)
        .await
        .expect("sql");
    app.set_withheld("saipa", 0, "clean", now)
        .await
        .expect("sql");
    let pending = app.pending_standing().await.expect("sql");
    let saipa = pending
        .iter()
        .find(|p| p.manufacturer == "saipa")
        .expect("pending");
    let decided = saipa.decided.expect("decided");
    assert_eq!(
        (decided.version, decided.suspended, decided.stars),
        (3, Some(false), Some(2))
    );
    app.standing_pushed("saipa", Some(3), saipa.withheld.map(|w| w.1), None)
        .await
        .expect("noted");
    assert!(app
        .pending_standing()
        .await
        .expect("sql")
        .iter()
        .all(|p| p.manufacturer != "saipa"));
    // The complaint: moved past its deadline by the owner, proposed and confirmed.
    sqlx::query(&format!(
        "UPDATE complaints SET filed_at = filed_at - 1000000, answer_due = answer_due - 1000000 \
         WHERE id = '{complaint}'"
    ))
    .execute(owner.pool())
    .await
    .expect("the owner moves time");
    assert_eq!(
        app.decide_complaint(&complaint, Outcome::Upheld, "inspector.a", now)
            .await
            .expect("sql"),
        Ok(Decided::Proposed)
    );
    assert_eq!(
        app.decide_complaint(&complaint, Outcome::Upheld, "issuer.a", now)
            .await
            .expect("sql"),
        Ok(Decided::Final)
    );
    // The owner may (a migration, or a test moving time).
    sqlx::query(&format!(
        "UPDATE complaints SET answer_due = answer_due - 1 WHERE id = '{complaint}'"
    ))
    .execute(owner.pool())
    .await
    .expect("the owner");
}
