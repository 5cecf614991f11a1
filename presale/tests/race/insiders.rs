//! Insiders need a second person, and cannot rewrite what they did (issue 10, point 9):
//! four-eyes on every change to a campaign, raced; an action whose audit entry cannot be
//! written does not happen; the hash chain shows an altered, a deleted and a consistently
//! rewritten entry (the last against its anchor in the public log); and the service's own
//! database role can serve but not rewrite the audit log or the transparency logs.

use presale::store::proposals::{Change, Decision, Outcome, ProposalError};
use presale::store::staff::Role;
use presale::store::Store;
use presale::transparency::LogKey;
use sqlx::Row;
use testkit::servers::unique;

use super::{issue_terms, license, person, two_stores, Backend};

const PASSWORD: &str = "correct horse battery staple";

async fn staff(store: &Store, who: &str, role: Role) {
    store
        .add_staff(who, PASSWORD, role, "test", service_kit::clock::now())
        .await
        .expect("staff");
}

async fn decide(store: &Store, id: &str, by: &str, d: Decision) -> Result<Outcome, ProposalError> {
    store
        .decide(id, by, d, service_kit::clock::now())
        .await
        .expect("sql")
}

/// Records a license's seed parties as they arrive in a real deployment: the ministry's
/// entered in the console by `ministry_by`, the manufacturer's through its own channel.
pub(crate) async fn record_parties(
    store: &Store,
    l: &presale::domain::NewLicense,
    ministry_by: &str,
) {
    use presale::store::commitments::{CommitmentError, Via};
    // The ministry's share is entered by an enabled issuer.
    match store
        .add_staff(
            ministry_by,
            PASSWORD,
            Role::Issuer,
            "test",
            service_kit::clock::now(),
        )
        .await
    {
        Ok(_) | Err(presale::store::staff::StaffError::Exists) => {}
        Err(e) => panic!("staff: {e}"),
    }
    for p in &l.parties {
        let (via, by) = if p.party == "ministry" {
            (Via::Console, ministry_by)
        } else {
            (Via::IdpClient, "saipa-seed")
        };
        let r = store
            .record_commitment(
                &l.license_no,
                &p.party,
                &p.commitment,
                via,
                by,
                service_kit::clock::now(),
            )
            .await
            .expect("sql");
        assert!(matches!(r, Ok(_) | Err(CommitmentError::Exists)), "{r:?}");
    }
}

async fn propose(store: &Store, change: &Change, by: &str) -> String {
    if let Change::Issue { license } = change {
        record_parties(store, license, "ministry.officer").await;
    }
    store
        .propose(change, by, service_kit::clock::now())
        .await
        .expect("sql")
        .expect("proposal")
}

/// Sequences a campaign's log, so its anchors are records.
async fn sequence(store: &Store, id: &str) {
    store
        .sequence_log(id, &LogKey::from_seed(&[7; 32]))
        .await
        .expect("sequence");
}

/// What the database's owner can do and the service cannot: switch the audit log's
/// append-only triggers off (`on`: back on).
async fn owner_unlocks_the_audit_log(store: &Store, postgres: bool, on: bool) {
    let sql: &[&str] = match (postgres, on) {
        (true, false) => &[
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            "ALTER TABLE audit_head DISABLE TRIGGER USER",
        ],
        (true, true) => &[
            "ALTER TABLE audit_log ENABLE TRIGGER USER",
            "ALTER TABLE audit_head ENABLE TRIGGER USER",
        ],
        (false, false) => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
            "DROP TRIGGER audit_head_forward",
        ],
        (false, true) => &[],
    };
    for s in sql {
        sqlx::query(s).execute(store.pool()).await.expect(s);
    }
}

pub(crate) async fn campaign_changes_need_a_second_issuer_raced_and_audited_with_their_action(
    backend: Backend,
) {
    let (a, b) = two_stores(backend).await;
    for who in ["issuer.a", "issuer.b", "issuer.c"] {
        staff(&a, who, Role::Issuer).await;
    }
    staff(&a, "auditor.a", Role::Auditor).await;
    let terms = license(10, None);
    let change = Change::Issue {
        license: Box::new(terms.clone()),
    };
    // The seed's parties are the commitments that arrived for the license, not what the
    // proposer typed: none recorded, the manufacturer's missing, the ministry's entered by
    // the proposer, or a commitment other than the recorded one, and it is refused.
    use presale::store::commitments::{CommitmentError, Via};
    let now = service_kit::clock::now();
    let refused = |r: Result<String, ProposalError>| match r {
        Err(ProposalError::Commitments(e)) => e,
        other => panic!("refused for its parties, not {other:?}"),
    };
    let r = a.propose(&change, "issuer.a", now).await.expect("sql");
    assert_eq!(refused(r), CommitmentError::NoManufacturer);
    let [ministry, maker] = [&terms.parties[0], &terms.parties[1]];
    assert_eq!(
        (ministry.party.as_str(), maker.party.as_str()),
        ("ministry", "saipa")
    );
    // The ministry's alone, then a commitment in the manufacturer's name that did not come
    // through its channel.
    let third = presale::domain::NewLicense {
        license_no: format!("{}-3", terms.license_no),
        ..license(10, None)
    };
    a.record_commitment(
        &third.license_no,
        "ministry",
        &ministry.commitment,
        Via::Console,
        "issuer.b",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    let issue_third = Change::Issue {
        license: Box::new(third.clone()),
    };
    let r = a.propose(&issue_third, "issuer.a", now).await.expect("sql");
    assert_eq!(refused(r), CommitmentError::NoManufacturer);
    a.record_commitment(
        &third.license_no,
        "saipa",
        &maker.commitment,
        Via::Console,
        "issuer.b",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    let r = a.propose(&issue_third, "issuer.a", now).await.expect("sql");
    assert_eq!(refused(r), CommitmentError::NoManufacturer);
    // With both recorded properly, the proposer who entered the ministry's share is still
    // refused: another issuer's proposal is not.
    let second = license(10, None);
    let second = presale::domain::NewLicense {
        license_no: format!("{}-2", terms.license_no),
        ..second
    };
    a.record_commitment(
        &second.license_no,
        "ministry",
        &ministry.commitment,
        Via::Console,
        "issuer.a",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    a.record_commitment(
        &second.license_no,
        "saipa",
        &maker.commitment,
        Via::IdpClient,
        "saipa-seed",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    let issue_second = Change::Issue {
        license: Box::new(second.clone()),
    };
    let r = a
        .propose(&issue_second, "issuer.a", now)
        .await
        .expect("sql");
    assert_eq!(refused(r), CommitmentError::NoMinistry);
    // Parties other than the recorded commitments.
    let mut typed = second.clone();
    typed.parties[1].commitment = ministry.commitment.replace('A', "B");
    let r = a
        .propose(
            &Change::Issue {
                license: Box::new(typed),
            },
            "issuer.b",
            now,
        )
        .await
        .expect("sql");
    assert_eq!(refused(r), CommitmentError::Mismatch);
    let ok = a
        .propose(&issue_second, "issuer.b", now)
        .await
        .expect("sql")
        .expect("another issuer's proposal of the recorded parties");
    assert_eq!(
        decide(&a, &ok, "issuer.b", Decision::Reject).await,
        Ok(Outcome::Withdrawn)
    );

    let p = propose(&a, &change, "issuer.a").await;
    assert!(a.licenses().await.expect("licenses").is_empty());

    // Not the author, not an auditor, not a disabled issuer.
    assert_eq!(
        decide(&b, &p, "issuer.a", Decision::Approve).await,
        Err(ProposalError::OwnProposal)
    );
    assert_eq!(
        decide(&b, &p, "auditor.a", Decision::Approve).await,
        Err(ProposalError::NotIssuer)
    );
    assert_eq!(
        a.propose(&change, "auditor.a", service_kit::clock::now())
            .await
            .expect("sql"),
        Err(ProposalError::NotIssuer)
    );

    // Two issuers on two replicas approve at once, many times: it is carried out once.
    let mut racers = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let by = if i % 2 == 0 { "issuer.b" } else { "issuer.c" };
        let p = p.clone();
        racers.push(tokio::spawn(async move {
            decide(&store, &p, by, Decision::Approve).await
        }));
    }
    let mut done = Vec::new();
    for r in racers {
        match r.await.expect("task") {
            Ok(Outcome::Done { license_id }) => done.push(license_id),
            Err(ProposalError::NotFound) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(done.len(), 1, "approved exactly once");
    let id = done[0].clone();
    assert_eq!(a.licenses().await.expect("licenses").len(), 1);

    // An action whose audit entry cannot be written does not happen.
    let suspend = propose(
        &a,
        &Change::Suspend {
            license_id: id.clone(),
        },
        "issuer.b",
    )
    .await;
    let postgres = backend == Backend::Servers;
    let (break_audit, mend_audit): (&[&str], &[&str]) = if postgres {
        (
            &[
                "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit down'; END; $$ LANGUAGE plpgsql",
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_down()",
            ],
            &["DROP TRIGGER audit_down ON audit_log"],
        )
    } else {
        (
            &["CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END"],
            &["DROP TRIGGER audit_down"],
        )
    };
    for s in break_audit {
        sqlx::query(s).execute(a.pool()).await.expect(s);
    }
    let failed = a
        .decide(
            &suspend,
            "issuer.c",
            Decision::Approve,
            service_kit::clock::now(),
        )
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        issue_terms(&a, &id).await.active,
        "not suspended without its audit entry"
    );
    for s in mend_audit {
        sqlx::query(s).execute(a.pool()).await.expect(s);
    }
    assert!(matches!(
        decide(&b, &suspend, "issuer.c", Decision::Approve).await,
        Ok(Outcome::Done { .. })
    ));
    assert!(!issue_terms(&a, &id).await.active);

    // A rate change, withdrawn by its author; then one approved.
    let rate = |per_min| Change::Rate {
        license_id: id.clone(),
        admission_per_min: per_min,
    };
    let w = propose(&a, &rate(5), "issuer.c").await;
    assert_eq!(
        decide(&a, &w, "issuer.c", Decision::Reject).await,
        Ok(Outcome::Withdrawn)
    );
    let r = propose(&a, &rate(7), "issuer.c").await;
    assert!(matches!(
        decide(&a, &r, "issuer.a", Decision::Approve).await,
        Ok(Outcome::Done { .. })
    ));
    let l = a
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.id == id)
        .expect("license");
    assert_eq!(l.admission_per_min, 7);
    assert!(a
        .pending_proposals(service_kit::clock::now())
        .await
        .expect("pending")
        .is_empty());

    // Every change is in the chain and anchored in the campaign's public log.
    sequence(&a, &id).await;
    let check = a.check_audit_chain().await.expect("check");
    assert!(check.ok(), "{:?}", check.findings);
    // Issue (approved + issue), suspend (create, approved, suspend), rates (create,
    // withdrawn, create, approved, rate).
    assert_eq!(check.anchors, 10, "{check:?}");
}

pub(crate) async fn the_audit_chain_shows_an_altered_a_deleted_and_a_rewritten_entry(
    backend: Backend,
) {
    let (a, _) = two_stores(backend).await;
    let postgres = backend == Backend::Servers;
    staff(&a, "issuer.a", Role::Issuer).await;
    staff(&a, "issuer.b", Role::Issuer).await;
    let p = propose(
        &a,
        &Change::Issue {
            license: Box::new(license(10, None)),
        },
        "issuer.a",
    )
    .await;
    let Ok(Outcome::Done { license_id: id }) = decide(&a, &p, "issuer.b", Decision::Approve).await
    else {
        panic!("approved")
    };
    for active in [false, true, false] {
        let change = if active {
            Change::Resume {
                license_id: id.clone(),
            }
        } else {
            Change::Suspend {
                license_id: id.clone(),
            }
        };
        let p = propose(&a, &change, "issuer.b").await;
        assert!(decide(&a, &p, "issuer.a", Decision::Approve).await.is_ok());
    }
    a.audit(
        service_kit::clock::now(),
        "issuer.a",
        "audit.export",
        "audit_log",
        "csv",
    )
    .await
    .expect("audit");
    sequence(&a, &id).await;
    let before = a.check_audit_chain().await.expect("check");
    assert!(before.ok(), "{:?}", before.findings);
    let log = a.audit_log().await.expect("log");
    let suspended = log
        .iter()
        .find(|e| e.action == "license.suspend")
        .expect("a suspension")
        .clone();
    let seq = suspended.seq.expect("chained");

    owner_unlocks_the_audit_log(&a, postgres, false).await;
    // Altered: who approved the suspension.
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind("approved by nobody")
        .bind(seq)
        .execute(a.pool())
        .await
        .expect("owner edits");
    let check = a.check_audit_chain().await.expect("check");
    assert!(
        check.findings.iter().any(|f| f.contains("altered")),
        "{:?}",
        check.findings
    );
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind(&suspended.detail)
        .bind(seq)
        .execute(a.pool())
        .await
        .expect("owner restores");
    assert!(a.check_audit_chain().await.expect("check").ok());

    // Deleted: the last entry (no successor to give it away but the head).
    let last = log.last().and_then(|e| e.seq).expect("last");
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(last)
        .execute(a.pool())
        .await
        .expect("owner deletes");
    let check = a.check_audit_chain().await.expect("check");
    assert!(
        !check.ok(),
        "a deleted last entry is found against the head"
    );

    // Rewritten consistently from the suspension on: every hash recomputed, the head too.
    // The chain alone now checks; its anchors in the public log do not.
    let mut prev = suspended.prev_hash.clone();
    for e in log
        .iter()
        .filter(|e| e.seq.is_some_and(|s| s >= seq && s < last))
    {
        let s = e.seq.expect("chained");
        let detail = if s == seq {
            "approved by nobody".to_owned()
        } else {
            e.detail.clone()
        };
        let entry = presale::store::audit::Entry {
            at: e.at,
            actor: &e.actor,
            action: &e.action,
            subject: &e.subject,
            detail: &detail,
            anchor: None,
        };
        let hash = presale::store::audit::chain_hash(&prev, s, &entry);
        sqlx::query("UPDATE audit_log SET detail = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&detail)
            .bind(&prev)
            .bind(&hash)
            .bind(s)
            .execute(a.pool())
            .await
            .expect("owner rewrites");
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last - 1)
        .bind(&prev)
        .execute(a.pool())
        .await
        .expect("owner moves the head back");
    let check = a.check_audit_chain().await.expect("check");
    assert!(
        check
            .findings
            .iter()
            .any(|f| f.contains("differs from its anchor")),
        "the public log's anchors give the rewrite away: {:?}",
        check.findings
    );
    owner_unlocks_the_audit_log(&a, postgres, true).await;
}

/// `url` with `user:password@` in place of its credentials.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{user}:{password}@{host}")
}

/// A fresh PostgreSQL database migrated by its owner, and a store on it as the service's
/// role (granted as `presale migrate --grant-to` does): (database, owner, service).
pub(crate) async fn as_service_role() -> (testkit::servers::FreshDatabase, Store, Store) {
    let db = Backend::Servers.database("presale").await;
    let owner = Store::connect(&db.url, 4).await.expect("owner");
    owner.migrate().await.expect("migrate");
    let role = unique("emta_app").to_lowercase();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD 'app-password'"))
        .execute(owner.pool())
        .await
        .expect("role");
    owner.grant_service_role(&role).await.expect("grant");
    let app = Store::connect(&as_user(&db.url, &role, "app-password"), 4)
        .await
        .expect("the service's role connects");
    (db, owner, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_role_serves_but_cannot_rewrite_the_audit_or_the_logs() {
    let (_db, owner, app) = as_service_role().await;
    app.check_migrated().await.expect("the schema is current");

    // Everything the service does, as the role: staff, four-eyes, queue, application, log.
    staff(&app, "issuer.a", Role::Issuer).await;
    staff(&app, "issuer.b", Role::Issuer).await;
    let p = propose(
        &app,
        &Change::Issue {
            license: Box::new(license(10, None)),
        },
        "issuer.a",
    )
    .await;
    let Ok(Outcome::Done { license_id: id }) =
        decide(&app, &p, "issuer.b", Decision::Approve).await
    else {
        panic!("approved")
    };
    let holders: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    app.join_queue(&id, &holders).await.expect("join");
    app.advance_queue(&id).await.expect("tick").expect("queue");
    let terms = issue_terms(&app, &id).await;
    let accepted = app.apply(&terms, &person(0)).await.expect("apply");
    assert!(accepted.is_ok(), "{accepted:?}");
    sequence(&app, &id).await;
    assert!(app.check_audit_chain().await.expect("check").ok());
    let size: i64 = sqlx::query("SELECT size FROM log_state WHERE license_id = $1")
        .bind(&id)
        .fetch_one(app.pool())
        .await
        .expect("size")
        .try_get("size")
        .expect("size");
    assert!(size > 20, "the log holds the campaign: {size}");

    // What it cannot do, triggers or not.
    for sql in [
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_update ON audit_log",
        "UPDATE log_records SET body = '{}'",
        "DELETE FROM log_hashes",
        "TRUNCATE log_heads",
        "DELETE FROM audit_head",
        "UPDATE audit_head SET seq = 0",
        "DELETE FROM _sqlx_migrations",
        "DROP TABLE licenses",
        "CREATE TABLE shadow (x INTEGER)",
    ] {
        let r = sqlx::query(sql).execute(app.pool()).await;
        assert!(r.is_err(), "the service's role may not: {sql}");
    }
    // Refused by the grants themselves, not only by triggers the owner could switch off.
    for sql in [
        "UPDATE audit_log SET actor = 'nobody'",
        "UPDATE log_records SET body = '{}'",
    ] {
        let e = sqlx::query(sql)
            .execute(app.pool())
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
    }
    app.close().await;
    owner.close().await;
}

/// The console's migration (roles: administrator) on a database with staff and decided
/// proposals in it: SQLite rebuilds the staff table, and with it the proposals that refer
/// to it; every row survives, the references hold, and an administrator can be added.
/// (The first version of the SQLite migration failed here: "FOREIGN KEY constraint
/// failed" at its commit, since dropping the staff table orphaned the proposals.)
pub(crate) async fn the_console_migration_keeps_staff_and_proposals(backend: Backend) {
    let db = backend.database("presale").await;
    let store = Store::connect(&db.url, 4).await.expect("store");
    store
        .migrate_to(9)
        .await
        .expect("the schema before the console");
    for (who, role) in [("issuer.a", "issuer"), ("issuer.b", "issuer")] {
        sqlx::query(
            "INSERT INTO staff (username, password_hash, totp_secret, role, created_at) \
             VALUES ($1, 'h', 's', $2, 1)",
        )
        .bind(who)
        .bind(role)
        .execute(store.pool())
        .await
        .expect("staff");
    }
    sqlx::query(
        "INSERT INTO proposals (id, action, subject, payload, proposed_by, proposed_at, \
         decided_by, decided_at, outcome) VALUES ('p-1', 'license.suspend', 'l-1', '{}', \
         'issuer.a', 1, 'issuer.b', 2, 'approved')",
    )
    .execute(store.pool())
    .await
    .expect("proposal");
    store
        .migrate()
        .await
        .expect("the console's migrations on a database with data");
    let row =
        sqlx::query("SELECT proposed_by, decided_by, outcome FROM proposals WHERE id = 'p-1'")
            .fetch_one(store.pool())
            .await
            .expect("the proposal survives");
    assert_eq!(row.get::<String, _>("decided_by"), "issuer.b");
    staff(&store, "admin.a", Role::Administrator).await;
    let orphan = sqlx::query(
        "INSERT INTO proposals (id, action, subject, payload, proposed_by, proposed_at) \
         VALUES ('p-2', 'x', '', '{}', 'nobody', 1)",
    )
    .execute(store.pool())
    .await;
    assert!(orphan.is_err(), "the references to staff still hold");
    drop(db);
}

/// Four-eyes counts people, not accounts (issue 29): an administrator who enrolled two
/// issuers saw both TOTP secrets, so neither approves the other's proposal, nor is the
/// seed's ministry party for it, through any chain of accounts that administrator made;
/// an independent issuer does. And what the database says is checked against the audit
/// chain: a proposal's author edited in place, a commitment rewritten or inserted without
/// its audit entry, count for nothing. (Before: the approval went through, and the
/// inserted commitment counted.)
pub(crate) async fn one_person_behind_two_accounts_is_one_pair_of_eyes(backend: Backend) {
    use presale::store::commitments::{CommitmentError, Via};
    let (a, b) = two_stores(backend).await;
    let now = service_kit::clock::now();
    staff(&a, "admin.a", Role::Administrator).await;
    staff(&a, "issuer.b", Role::Issuer).await;
    for (who, role) in [
        ("xx.one", Role::Issuer),
        ("xx.two", Role::Issuer),
        ("admin.p", Role::Administrator),
    ] {
        a.add_staff(who, PASSWORD, role, "admin.a", now)
            .await
            .expect("staff");
    }
    // A puppet administrator's issuer: behind it, admin.p and so admin.a.
    a.add_staff("yy.one", PASSWORD, Role::Issuer, "admin.p", now)
        .await
        .expect("staff");
    let id = super::issue_id(&a, &license(10, None)).await;
    let suspend = Change::Suspend {
        license_id: id.clone(),
    };
    let p = propose(&a, &suspend, "xx.one").await;
    for approver in ["xx.two", "yy.one"] {
        assert_eq!(
            decide(&b, &p, approver, Decision::Approve).await,
            Err(ProposalError::SamePerson),
            "{approver} approving xx.one"
        );
    }
    assert!(matches!(
        decide(&b, &p, "issuer.b", Decision::Approve).await,
        Ok(Outcome::Done { .. })
    ));
    // Who enrolled an account stays behind it: another administrator resetting its TOTP
    // (or changing its role) adds nobody and removes nobody; its password is the first.
    staff(&a, "admin.b", Role::Administrator).await;
    a.reset_staff_totp("xx.two", "admin.b", now)
        .await
        .expect("reset")
        .expect("an account");
    assert!(a
        .set_staff_role("xx.two", Role::Auditor, "admin.b", now)
        .await
        .expect("role"));
    assert!(a
        .set_staff_role("xx.two", Role::Issuer, "admin.b", now)
        .await
        .expect("role"));
    let resume = Change::Resume {
        license_id: id.clone(),
    };
    let p = propose(&a, &resume, "xx.one").await;
    assert_eq!(
        decide(&b, &p, "xx.two", Decision::Approve).await,
        Err(ProposalError::SamePerson),
        "admin.a still enrolled xx.two"
    );
    // An issuer admin.b enrolled is independent of admin.a's, whoever reset it since.
    a.add_staff("zz.one", PASSWORD, Role::Issuer, "admin.b", now)
        .await
        .expect("staff");
    a.reset_staff_totp("zz.one", "admin.a", now)
        .await
        .expect("reset")
        .expect("an account");
    assert!(matches!(
        decide(&b, &p, "zz.one", Decision::Approve).await,
        Ok(Outcome::Done { .. })
    ));
    // A staff row inserted without its enrolment on the record is nobody's.
    sqlx::query(
        "INSERT INTO staff (username, password_hash, totp_secret, role, created_at) \
         VALUES ('mole', 'h', 's', 'issuer', 1)",
    )
    .execute(a.pool())
    .await
    .expect("a row inserted by the service's role");
    let suspend = Change::Suspend {
        license_id: id.clone(),
    };
    assert_eq!(
        a.propose(&suspend, "mole", now).await.expect("sql"),
        Err(ProposalError::NotIssuer)
    );

    // The ministry's share entered by xx.one, a license proposed by xx.two: not independent.
    let l = license(10, None);
    let [ministry, maker] = [&l.parties[0], &l.parties[1]];
    a.record_commitment(
        &l.license_no,
        "ministry",
        &ministry.commitment,
        Via::Console,
        "xx.one",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    a.record_commitment(
        &l.license_no,
        "saipa",
        &maker.commitment,
        Via::IdpClient,
        "saipa-seed",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    let issue = Change::Issue {
        license: Box::new(l.clone()),
    };
    assert_eq!(
        a.propose(&issue, "xx.two", now).await.expect("sql"),
        Err(ProposalError::Commitments(CommitmentError::NoMinistry))
    );
    let named = a
        .propose(&issue, "issuer.b", now)
        .await
        .expect("sql")
        .expect("proposed");
    // Another issuer's ministry commitment entered since does not undo the proposal: it
    // names one of the eligible ones.
    a.record_commitment(
        &l.license_no,
        "ministry",
        &maker.commitment,
        Via::Console,
        "zz.one",
        now + 1,
    )
    .await
    .expect("sql")
    .expect("a second ministry commitment");
    assert!(matches!(
        decide(&b, &named, "zz.one", Decision::Approve).await,
        Ok(Outcome::Done { .. })
    ));

    // The same commitment sent again is the same record; another is refused.
    let again = a
        .record_commitment(
            &l.license_no,
            "saipa",
            &maker.commitment,
            Via::IdpClient,
            "saipa-seed",
            now,
        )
        .await
        .expect("sql");
    assert!(again.is_ok(), "{again:?}");
    let other = a
        .record_commitment(
            &l.license_no,
            "saipa",
            &ministry.commitment,
            Via::IdpClient,
            "saipa-seed",
            now,
        )
        .await
        .expect("sql");
    assert_eq!(other, Err(CommitmentError::Exists));

    // The database's word against the audit chain's.
    let rewrite = sqlx::query("UPDATE seed_commitments SET made_by = 'issuer.b'")
        .execute(a.pool())
        .await;
    assert!(rewrite.is_err(), "commitments are append-only");
    let l2 = license(10, None);
    sqlx::query(
        "INSERT INTO seed_commitments (id, license_no, party, commitment, via, made_by, made_at) \
         VALUES ('c-forged', $1, 'saipa', $2, 'idp-client', 'saipa-seed', 1)",
    )
    .bind(&l2.license_no)
    .bind(&l2.parties[1].commitment)
    .execute(a.pool())
    .await
    .expect("a row inserted by the service's role");
    a.record_commitment(
        &l2.license_no,
        "ministry",
        &l2.parties[0].commitment,
        Via::Console,
        "issuer.b",
        now,
    )
    .await
    .expect("sql")
    .expect("recorded");
    assert_eq!(
        a.propose(
            &Change::Issue {
                license: Box::new(l2)
            },
            "xx.one",
            now
        )
        .await
        .expect("sql"),
        Err(ProposalError::Commitments(CommitmentError::NoManufacturer)),
        "a commitment without its audit entry counts for nothing"
    );
    // x1 makes issuer.b's suspension proposal look like x1's own... and the other way:
    // an author edited in place is refused at approval.
    let p = propose(&a, &suspend, "xx.one").await;
    sqlx::query("UPDATE proposals SET proposed_by = 'issuer.b' WHERE id = $1")
        .bind(&p)
        .execute(a.pool())
        .await
        .expect("edit");
    assert_eq!(
        decide(&b, &p, "xx.two", Decision::Approve).await,
        Err(ProposalError::Changed),
        "an author edited in the database"
    );
}

/// The insider with a replica's `DATABASE_URL` (issue 31, point 4): what decides who gets
/// a car (a license's terms, its rate, its active bound, its status, the frozen list, the
/// seed and its parties, the records waiting for the tree, the staff) changes under the
/// service's role only in the transaction that writes its public record, so every silent
/// edit is refused; an edit that writes its record too is public, and a forged seed
/// published that way is the auditor's finding. Meanwhile everything the service itself
/// does still goes through as that role: issuance, four-eyes changes of rate, bound and
/// status, joins, the freeze, reveals, the seed, the log. (Before: every edit below was
/// accepted without a trace.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_role_changes_who_gets_a_car_only_in_the_open() {
    let (_db, owner, app) = as_service_role().await;

    // The service's own path, as the role.
    staff(&app, "issuer.a", Role::Issuer).await;
    staff(&app, "issuer.b", Role::Issuer).await;
    staff(&app, "auditor.a", Role::Auditor).await;
    let p = propose(
        &app,
        &Change::Issue {
            // With the registries' rules (issue 30): the row's JSON must be the record's.
            license: Box::new(presale::domain::NewLicense {
                registration: Some(presale::domain::Registration {
                    driving_licence: true,
                    no_vehicle_months: Some(48),
                    hold: Some(presale::domain::HoldTerms {
                        banks: vec!["melli".into()],
                        amount: 1_000_000_000,
                        title: "t".into(),
                        before: presale::domain::HoldBefore::Apply,
                    }),
                }),
                ..license(10, None)
            }),
        },
        "issuer.a",
    )
    .await;
    let Ok(Outcome::Done { license_id: id }) =
        decide(&app, &p, "issuer.b", Decision::Approve).await
    else {
        panic!("approved")
    };
    let holders: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    app.join_queue(&id, &holders).await.expect("join");
    app.advance_queue(&id).await.expect("tick").expect("queue");
    for change in [
        Change::Rate {
            license_id: id.clone(),
            admission_per_min: 5_000_000,
        },
        Change::MaxActive {
            license_id: id.clone(),
            max_active: 50_000,
        },
        Change::Suspend {
            license_id: id.clone(),
        },
        Change::Resume {
            license_id: id.clone(),
        },
    ] {
        let p = propose(&app, &change, "issuer.a").await;
        let done = decide(&app, &p, "issuer.b", Decision::Approve).await;
        assert!(
            matches!(done, Ok(Outcome::Done { .. })),
            "{change:?}: {done:?}"
        );
    }
    app.set_staff_standing(
        "auditor.a",
        presale::store::staff::Standing::Revoked,
        "cli:test",
        service_kit::clock::now(),
    )
    .await
    .expect("an audited change of an account");

    // An observer registered as the service does it (audited).
    let court =
        presale::transparency::observer::ObserverKey::from_seed("court", &[5; 32]).expect("key");
    app.add_observer(
        "court",
        court.verifier_key(),
        "cli:test",
        service_kit::clock::now(),
    )
    .await
    .expect("sql")
    .expect("registered");

    // A citizen's hold, asked of a bank and not confirmed (issue 30).
    let someone = presale::domain::NationalId::parse("0499370899").expect("nid");
    app.start_hold(
        &id,
        &someone,
        "sub",
        &presale::domain::Holder("a-holder".into()),
        "melli",
        1_000_000_000,
        "t",
    )
    .await
    .expect("sql")
    .expect("started");

    // A compensation rate, with its audit entry as the console adds it (issue 34).
    let rate = presale::domain::after_sale::Rate {
        from: service_kit::clock::now(),
        monthly_bp: 250,
    };
    let set = app.set_compensation_rate(
        presale::domain::after_sale::SaleKind::Firm,
        rate,
        "issuer.a",
        service_kit::clock::now(),
    );
    assert_eq!(set.await.expect("sql"), Ok(()), "an audited rate");
    // An accepted application (written here by the owner), whose contract the service
    // records as the manufacturer's back-end asks: with its audit entry, so it passes.
    sqlx::query(&format!(
        "INSERT INTO applications (id, license_id, national_id, citizen_sub, ticket, \
         tracking_code, created_at) VALUES ('a-ok', '{id}', '0012345679', 's', 1, 'OWNER00001', 1)"
    ))
    .execute(owner.pool())
    .await
    .expect("the owner's application");
    let now = service_kit::clock::now();
    let contract = presale::store::after_sale::StageRequest {
        stage: presale::store::after_sale::Stage::Contract,
        amount: 0,
        at: now,
        key: None,
    };
    let recorded = app
        .record_stage("saipa", "OWNER00001", &contract, "client:saipa-seed", now)
        .await
        .expect("sql");
    assert!(recorded.is_ok(), "{recorded:?}");

    // The insider's silent edits, each refused.
    let commitment = presale::transparency::seed::commitment_of("an insider's own secret!");
    for sql in [
        format!("UPDATE licenses SET admission_per_min = 999999999 WHERE id = '{id}'"),
        format!("UPDATE licenses SET max_active = 999999 WHERE id = '{id}'"),
        format!("UPDATE licenses SET status = 'suspended' WHERE id = '{id}'"),
        format!("UPDATE licenses SET units = 1000 WHERE id = '{id}'"),
        format!("UPDATE licenses SET closes_at = closes_at + 3600 WHERE id = '{id}'"),
        format!("UPDATE licenses SET paused_ms = paused_ms + 600000 WHERE id = '{id}'"),
        format!("DELETE FROM licenses WHERE id = '{id}'"),
        format!(
            "UPDATE campaign_seeds SET seed = 'chosen-by-the-insider' WHERE license_id = '{id}'"
        ),
        format!(
            "UPDATE campaign_seeds SET list_size = 0, list_root = 'x' WHERE license_id = '{id}'"
        ),
        format!("UPDATE seed_parties SET commitment = '{commitment}' WHERE license_id = '{id}'"),
        format!(
            "UPDATE seed_parties SET secret = 'race-test-secret-of-saipa' \
             WHERE license_id = '{id}' AND party = 'saipa'"
        ),
        format!(
            "INSERT INTO seed_parties (license_id, party, commitment) \
             VALUES ('{id}', 'insider', '{commitment}')"
        ),
        "UPDATE log_pending SET body = body".to_owned(),
        format!("DELETE FROM log_pending WHERE license_id = '{id}'"),
        "INSERT INTO staff (username, password_hash, totp_secret, role, created_at) \
         VALUES ('ghost', 'h', 's', 'issuer', 1)"
            .to_owned(),
        "UPDATE staff SET role = 'issuer' WHERE username = 'auditor.a'".to_owned(),
        "UPDATE staff SET totp_secret = 'JBSWY3DPEHPK3PXP' WHERE username = 'issuer.a'".to_owned(),
        "UPDATE staff SET password_hash = 'x' WHERE username = 'issuer.a'".to_owned(),
        "UPDATE staff SET disabled_at = NULL, session_epoch = 0 WHERE username = 'auditor.a'"
            .to_owned(),
                "DELETE FROM staff WHERE username = 'auditor.a'".to_owned(),
        // What a first review still found open (a temporary table read in place of a
        // table the guards read; a record parked past the tree; the tree's size moved
        // back; an unchained audit entry; the queue's opening; the records of who
        // applied, entered and ranked; an observer disabled without its entry).
        "CREATE TEMP TABLE pg_class (oid oid, relowner oid)".to_owned(),
        "CREATE TEMP TABLE log_pending (license_id text, body text, ref text)".to_owned(),
        format!(
            "INSERT INTO log_records (license_id, idx, body, ref) \
             VALUES ('{id}', 9000000000000000000, '{{}}', NULL)"
        ),
        format!("UPDATE log_state SET size = size - 1 WHERE license_id = '{id}'"),
        format!("DELETE FROM log_state WHERE license_id = '{id}'"),
        "INSERT INTO audit_log (at, actor, action, subject, detail) \
         VALUES (1, 'cli:x', 'staff.role', 'auditor.a', 'issuer')"
            .to_owned(),
        format!("UPDATE queue_campaigns SET opens_at_ms = opens_at_ms + 60000 WHERE license_id = '{id}'"),
        format!("DELETE FROM queue_tickets WHERE license_id = '{id}'"),
        format!("UPDATE queue_tickets SET holder = 'someone else' WHERE license_id = '{id}'"),
        "DELETE FROM applications".to_owned(),
                "UPDATE seed_observers SET disabled_at = 1 WHERE name = 'court'".to_owned(),
        // And what a second review found open: an application, an admission or a count
        // written without its record; the queue closed again; a license whose row is not
        // what its record states.
        format!(
            "INSERT INTO applications (id, license_id, national_id, citizen_sub, ticket, \
             tracking_code, created_at) VALUES ('a-insider', '{id}', '0499370899', 'friend', \
             19, 'INSIDER1', 1)"
        ),
        format!("UPDATE licenses SET accepted = accepted + 1 WHERE id = '{id}'"),
        format!("UPDATE licenses SET entries = entries + 5 WHERE id = '{id}'"),
        format!(
            "INSERT INTO queue_admissions (license_id, ticket, admitted_at_ms, deadline_ms) \
             VALUES ('{id}', 999, 1, 9000000000000)"
        ),
        format!("UPDATE queue_campaigns SET opened = 0 WHERE license_id = '{id}'"),
        // Issue 30: the registries' rules are a term like the others.
        format!("UPDATE licenses SET registration = NULL WHERE id = '{id}'"),
        // A hold confirmed, and a lottery's lapse and promotion, without their records.
        format!("UPDATE holds SET state = 'held' WHERE license_id = '{id}'"),
        format!("UPDATE holds SET settle_key = 'x' WHERE license_id = '{id}'"),
        format!("UPDATE holds SET bank = 'a-bank-of-my-own' WHERE license_id = '{id}'"),
        format!(
            "INSERT INTO holds (id, license_id, national_id, citizen_sub, holder, bank, amount, \
             title, state, created_at_ms) VALUES ('h-cheap', '{id}', '0012345679', 's', 'x', \
             'melli', 1, 't', 'pending', 1)"
        ),
        format!("INSERT INTO lottery_lapses (license_id, rank, at_ms) VALUES ('{id}', 1, 1)"),
        format!(
            "INSERT INTO lottery_promotions (license_id, rank, until_ms, at_ms) \
             VALUES ('{id}', 2, 9000000000000, 1)"
        ),
        format!(
            "UPDATE licenses SET registration = '{{\"driving_licence\":true}}' WHERE id = '{id}'"
        ),
        // Issue 34: the rate table and the stages after the sale are kept as written, and
        // a rate needs its staff member's audit entry.
        "INSERT INTO compensation_rates (kind, effective_from, monthly_bp, set_by, set_at) \
         VALUES ('firm', 2, 0, 'x', 1)"
            .to_owned(),
        "UPDATE compensation_rates SET monthly_bp = 0".to_owned(),
        "UPDATE delivery_stages SET amount = 0".to_owned(),
        // A delivery written without its audit entry (dated back, it would owe nothing),
        // and one claiming another application's license.
        format!(
            "INSERT INTO delivery_stages (id, application_id, license_id, stage, amount, at, \
             recorded_by, recorded_at) SELECT 'd-x', a.id, a.license_id, 'delivered', 0, 1, 'x', 1 \
             FROM applications a WHERE a.license_id = '{id}' LIMIT 1"
        ),
        format!(
            "INSERT INTO delivery_stages (id, application_id, license_id, stage, amount, at, \
             recorded_by, recorded_at) VALUES ('d-y', 'a-none', '{id}', 'contract', 0, 1, 'x', 1)"
        ),
        "DELETE FROM delivery_stages".to_owned(),
    ] {
        let r = sqlx::query(&sql).execute(app.pool()).await;
        let e = r.expect_err(&format!("the service's role may not: {sql}"));
        let text = e.to_string();
        assert!(
            text.contains("permission denied")
                || text.contains("violates check constraint")
                || text.contains("past the tree")
                                || text.contains("audit entry")
                || text.contains("without their records")
                || text.contains("without its record")
                || text.contains("before its opening")
                || text.contains("only grows")
                || text.contains("never removed")
                || text.contains("is the license")
                || text.contains("not for the service")
                || text.contains("without its")
                || text.contains("not in the license")
                || text.contains("without being appended")
                || text.contains("not the license's")
                || text.contains("not the application's license")
                || text.contains("not one of the license's")
                || text.contains("settled once"),
            "{sql}: {text}"
        );
    }
    assert!(
        app.log_pending().await.expect("pending") > 0,
        "the records waiting for the tree are all still there"
    );
    // New credentials under cover of a chained entry of another kind (a failed sign-in).
    let mut tx = app.pool().begin().await.expect("begin");
    app.audit_in(
        &mut tx,
        &presale::store::audit::Entry {
            at: service_kit::clock::now(),
            actor: "anonymous",
            action: "staff.login-failed",
            subject: "issuer.b",
            detail: "",
            anchor: None,
        },
    )
    .await
    .expect("a chained entry");
    sqlx::query("UPDATE staff SET totp_secret = 'JBSWY3DPEHPK3PXP' WHERE username = 'issuer.b'")
        .execute(&mut *tx)
        .await
        .expect("deferred to the commit");
    let e = tx.commit().await.expect_err("refused at commit");
    assert!(e.to_string().contains("reset-totp"), "{e}");
    // A pending record moved to a place past the tree, in the same transaction.
    let mut tx = app.pool().begin().await.expect("begin");
    let pending =
        sqlx::query("SELECT id, body, ref FROM log_pending WHERE license_id = $1 LIMIT 1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .expect("a pending record");
    sqlx::query("INSERT INTO log_records (license_id, idx, body, ref) VALUES ($1, 9000000000000000000, $2, $3)")
        .bind(&id)
        .bind(pending.get::<String, _>("body"))
        .bind(pending.get::<Option<String>, _>("ref"))
        .execute(&mut *tx)
        .await
        .expect("deferred to the commit");
    sqlx::query("DELETE FROM log_pending WHERE id = $1")
        .bind(pending.get::<i64, _>("id"))
        .execute(&mut *tx)
        .await
        .expect("the same record is there");
    let e = tx.commit().await.expect_err("refused at commit");
    assert!(e.to_string().contains("past the tree"), "{e}");
    // ... or parked far ahead with the size jumping past the gap to cover it.
    let mut tx = app.pool().begin().await.expect("begin");
    let size: i64 = sqlx::query("SELECT size FROM log_state WHERE license_id = $1")
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .expect("size")
        .get("size");
    sqlx::query("INSERT INTO log_records (license_id, idx, body, ref) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(size + 1000)
        .bind(pending.get::<String, _>("body"))
        .bind(pending.get::<Option<String>, _>("ref"))
        .execute(&mut *tx)
        .await
        .expect("deferred to the commit");
    sqlx::query("DELETE FROM log_pending WHERE id = $1")
        .bind(pending.get::<i64, _>("id"))
        .execute(&mut *tx)
        .await
        .expect("the same record is there");
    sqlx::query("UPDATE log_state SET size = $2 WHERE license_id = $1")
        .bind(&id)
        .bind(size + 1001)
        .execute(&mut *tx)
        .await
        .expect("deferred to the commit");
    let e = tx.commit().await.expect_err("refused at commit");
    assert!(e.to_string().contains("passes a gap"), "{e}");
    // A role change whose entry says another role.
    let mut tx = app.pool().begin().await.expect("begin");
    app.audit_in(
        &mut tx,
        &presale::store::audit::Entry {
            at: service_kit::clock::now(),
            actor: "admin.x",
            action: "staff.role",
            subject: "auditor.a",
            detail: "auditor",
            anchor: None,
        },
    )
    .await
    .expect("a chained entry");
    sqlx::query("UPDATE staff SET role = 'issuer' WHERE username = 'auditor.a'")
        .execute(&mut *tx)
        .await
        .expect("deferred to the commit");
    let e = tx.commit().await.expect_err("refused at commit");
    assert!(e.to_string().contains("staff.role"), "{e}");

    // An insider who writes the record too is in the open: a seed chosen before the
    // reveals, published with its record, is what the auditor finds.
    let mut tx = app.pool().begin().await.expect("begin");
    sqlx::query("INSERT INTO log_pending (license_id, body, ref) VALUES ($1, $2, NULL)")
        .bind(&id)
        .bind(r#"{"event":"seed","seed":"chosen-by-the-insider"}"#)
        .execute(&mut *tx)
        .await
        .expect("the record");
    sqlx::query("UPDATE campaign_seeds SET seed = 'chosen-by-the-insider' WHERE license_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .expect("the seed");
    tx.commit().await.expect("public, so it commits");
    // The service's own path goes on: the parties reveal, the log is sequenced.
    super::reveal_all(&app, &id).await;
    let size = super::transparency::sequence_all(&app, &id).await;
    assert!(size > 20, "{size}");
    let report = super::transparency::audit_db(&app, &id, &[]).await;
    assert!(
        report.findings.iter().any(|f| f.contains("seed")),
        "the forged seed is a finding: {:?}",
        report.findings
    );
    app.close().await;
    owner.close().await;
}
