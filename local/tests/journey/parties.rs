//! A seed's parties, each through its own channel (issue 31, point 1, and its "done
//! means"): the manufacturer commits and reveals with its seed client's credentials at the
//! IdP, the ministry's share is entered and revealed in the console by an issuer who is
//! not the proposer, and an observer (a court) with a key registered for it commits with
//! a signed statement and then withholds past the deadline. The outcome is the one the
//! shares at the deadline fix, and the auditor recomputes it from the public log alone.

use super::*;
use presale::store::proposals::{Decision, Outcome};
use presale::store::staff::Role;
use presale::transparency::observer::ObserverKey;
use presale::transparency::seed::{self, Contribution};

/// Polls `f` every 200 ms for up to `secs` seconds until it gives something.
async fn until<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..secs * 5 {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}

/// A one-car lottery of Iran Khodro (license number `license_no`, seed `parties` and
/// `delay`) that closes `secs` seconds from now, proposed by issuer.one and approved by
/// issuer.three: its id.
async fn issue_lottery(
    env: &Env,
    license_no: &str,
    parties: Vec<presale::transparency::seed::Commitment>,
    delay: presale::domain::SeedDelay,
    secs: i64,
) -> String {
    let now = service_kit::clock::now();
    let lottery = NewLicense {
        license_no: license_no.to_owned(),
        units: 1,
        kind: PresaleKind::Firm,
        delivery_deadline: now + secs + 200 * 24 * 3600,
        closes_at: now + secs,
        selection: Selection::Lottery,
        admission_per_min: 60,
        apply_window_secs: 600,
        parties,
        seed_delay: Some(delay),
        registration: None,
        ..test_license("iran-khodro", "Tara", now)
    };
    let proposal = propose_issue(env, lottery, "issuer.one")
        .await
        .expect("proposed");
    match env
        .store
        .decide(
            &proposal,
            "issuer.three",
            Decision::Approve,
            service_kit::clock::now(),
        )
        .await
        .expect("sql")
    {
        Ok(Outcome::Done { license_id }) => license_id,
        other => panic!("approved: {other:?}"),
    }
}

/// Registers observer `court` with a new key, as an administrator does: the key.
async fn register_court(env: &Env) -> ObserverKey {
    let key = ObserverKey::from_seed("court", &rand::random()).expect("key");
    env.store
        .add_observer(
            "court",
            key.verifier_key(),
            "cli:test",
            service_kit::clock::now(),
        )
        .await
        .expect("sql")
        .expect("the court is registered");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_of_three_parties_where_the_observer_withholds() {
    let env = start(false).await;
    for who in ["issuer.one", "issuer.two", "issuer.three"] {
        add_staff(&env, who, Role::Issuer).await;
    }
    let http = reqwest::Client::new();
    let license_no = format!("MIMT-3P-{}", rand::random::<u16>());
    let ministry = Contribution::generate("ministry");
    let maker = Contribution::generate("iran-khodro");
    let court = Contribution::generate("court");
    let court_key = register_court(&env).await;

    // The manufacturer commits through its own credentials at the IdP.
    let maker_secret = env.seed_secret("iran-khodro");
    local::parties::commit_with_idp(
        &env.issuer,
        &env.base,
        "iran-khodro",
        &maker_secret,
        &license_no,
        &maker.commitment().commitment,
    )
    .await
    .expect("the manufacturer commits");
    // The ministry's share, entered in the console by an issuer.
    let b2 = Browser::new("");
    let dash2 = staff_sign_in(&env, &b2, "issuer.two", 0).await;
    let csrf2 = input(&dash2.body, "csrf");
    let entered = b2
        .post_follow(
            &format!("{}/ministry/commitments", env.base),
            &[
                ("csrf", csrf2.as_str()),
                ("license_no", &license_no),
                ("commitment", &ministry.commitment().commitment),
            ],
        )
        .await;
    assert_eq!(entered.status, 200, "{}", entered.body);
    // The court's, with a statement signed by its registered key: not with another key
    // under its name, and not under a name nobody registered.
    let statements = format!("{}/api/observers/court/statements", env.base);
    let impostor = ObserverKey::from_seed("court", &rand::random()).expect("key");
    let forged = http
        .post(&statements)
        .body(
            impostor
                .commit(&license_no, &ministry.commitment().commitment)
                .expect("sign"),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 401, "another key under the court's name");
    let unknown = http
        .post(format!("{}/api/observers/press/statements", env.base))
        .body(court_key.commit(&license_no, "x").expect("sign"))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404, "an observer nobody registered");
    let sent = http
        .post(&statements)
        .body(
            court_key
                .commit(&license_no, &court.commitment().commitment)
                .expect("sign"),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(
        sent.status(),
        201,
        "{}",
        sent.text().await.unwrap_or_default()
    );

    // The proposal takes the three parties from the record, and a second issuer approves.
    let parties = parties_of(&env, &license_no, "iran-khodro", "issuer.one")
        .await
        .expect("three parties on the record");
    let names: Vec<&str> = parties.iter().map(|p| p.party.as_str()).collect();
    assert_eq!(names, ["court", "iran-khodro", "ministry"]);
    let delay = presale::domain::SeedDelay {
        reveal_secs: 4,
        iterations: 16,
    };
    let id = issue_lottery(&env, &license_no, parties, delay, 8).await;

    // Two citizens enter over the storefront.
    for who in &env.citizens[..2] {
        let b = Browser::new("");
        let front = sign_in_to_join(&env, &b, "iran-khodro", who).await;
        let action = form_action(&front.body, "/join");
        let p = b
            .post_follow(
                &resolve(&format!("{}/iran-khodro/", env.base), &action),
                &[("csrf", &input(&front.body, "csrf"))],
            )
            .await;
        assert!(p.body.contains("E000000"), "{}", p.body);
    }

    // After the close the list freezes; the parties reveal, each through its channel.
    let store = env.store.clone();
    let (size, root) = until(30, || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.seed_status(&id).await.ok().and_then(|s| s.frozen) }
    })
    .await
    .expect("the list froze after the close");
    assert_eq!(size, 2);
    // The secret alone is not the party: the manufacturer's credentials reveal the
    // manufacturer's share only, and the old public form is gone.
    let crossed = local::parties::reveal_through_idp(
        &env.issuer,
        &env.base,
        "iran-khodro",
        &maker_secret,
        &id,
        &ministry.secret,
    )
    .await
    .expect("api");
    assert_eq!(
        crossed.status(),
        422,
        "the ministry's secret as the manufacturer's"
    );
    let public = http
        .post(format!("{}/transparency/{id}/reveal", env.base))
        .form(&[("party", "ministry"), ("secret", ministry.secret.as_str())])
        .send()
        .await
        .expect("post");
    assert!(
        !public.status().is_success(),
        "a reveal with no channel: {}",
        public.status()
    );
    let revealed = local::parties::reveal_through_idp(
        &env.issuer,
        &env.base,
        "iran-khodro",
        &maker_secret,
        &id,
        &maker.secret,
    )
    .await
    .expect("api");
    assert_eq!(revealed.status(), 200);
    let page = b2.go(&format!("{}/ministry/licenses/{id}", env.base)).await;
    let done = b2
        .post_follow(
            &resolve(&page.url, &form_action(&page.body, "/reveal")),
            &[
                ("csrf", input(&page.body, "csrf").as_str()),
                ("secret", ministry.secret.as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    // The court withholds. The seed comes when the window closes, through the delay.
    let seeded = until(30, || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.seed_status(&id).await.ok().and_then(|s| s.seed) }
    })
    .await
    .expect("the seed, after the window, without the court's share");
    let late = http
        .post(&statements)
        .body(court_key.reveal(&id, &court.secret).expect("sign"))
        .send()
        .await
        .expect("post");
    assert_eq!(late.status(), 409, "a reveal after the deadline");
    let shares = vec![
        ("court".to_owned(), seed::WITHHELD.to_owned()),
        ("iran-khodro".to_owned(), maker.secret.clone()),
        ("ministry".to_owned(), ministry.secret.clone()),
    ];
    let (expected, _) = seed::delayed_seed(&id, "entry", size, &root, &shares, delay.iterations);
    assert_eq!(
        seeded, expected,
        "the outcome the shares at the deadline fix"
    );
    // Who revealed is on the record: the issuer and the manufacturer's seed client.
    let history = env.store.audit_for(&id).await.expect("audit");
    for actor in ["issuer.two", "iran-khodro-seed"] {
        assert!(
            history
                .iter()
                .any(|e| e.action == "seed.reveal" && e.actor == actor),
            "{actor}'s reveal in {history:?}"
        );
    }

    // The auditor recomputes all of it from the public log alone.
    let key = http
        .get(format!("{}/transparency/key", env.base))
        .send()
        .await
        .expect("key")
        .text()
        .await
        .expect("key");
    let source = presale::transparency::verify::HttpSource::new(&env.base);
    let report = until(30, || {
        let (source, id, key) = (&source, id.clone(), key.clone());
        async move {
            let r = presale::transparency::verify::audit(source, &id, key.trim(), &[])
                .await
                .ok()?;
            r.checked
                .iter()
                .any(|c| c.contains("seed checked through its delay") && c.contains("1 withheld"))
                .then_some(r)
        }
    })
    .await
    .expect("the auditor checks the seed through its delay, the court's share withheld");
    assert!(report.ok(), "{}", report.findings.join("\n"));
    assert!(
        report.checked.iter().any(|c| c.contains("draw")),
        "{:?}",
        report.checked
    );
    // The same with the outside auditor's command: over HTTP, saving the log, then from
    // the saved file alone.
    let dir = testkit::servers::TempDir::new("saved-log").expect("dir");
    let file = dir.path().join("log.json");
    let args = |log: String, save: Option<std::path::PathBuf>| emta_verify::cli::VerifyArgs {
        log,
        campaign: id.clone(),
        key: Some(key.trim().to_owned()),
        state: None,
        witnesses: Vec::new(),
        promises: None,
        promise_key: None,
        save,
    };
    args(env.base.clone(), Some(file.clone()))
        .run()
        .await
        .expect("the log over HTTP");
    args(file.display().to_string(), None)
        .run()
        .await
        .expect("the saved log, offline");
}

/// Each party reveals through the channel its commitment came by, whatever happened
/// since (review of issue 31): a manufacturer whose representative entered its share in
/// the console reveals it there (before, no channel took it: its share was withheld for
/// want of a way to reveal), and an observer disabled after the license was issued still
/// reveals its share (before, a 404: disabling it after issuance turned its share into
/// "withheld", in its name). Disabling keeps it out of licenses proposed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_party_reveals_by_the_channel_it_committed_through() {
    let env = start(false).await;
    for who in ["issuer.one", "issuer.two", "issuer.three"] {
        add_staff(&env, who, Role::Issuer).await;
    }
    env.store
        .add_representative(
            "khodro.rep",
            STAFF_PASSWORD,
            "iran-khodro",
            "test",
            service_kit::clock::now(),
        )
        .await
        .expect("representative");
    let http = reqwest::Client::new();
    let license_no = format!("MIMT-RP-{}", rand::random::<u16>());
    let ministry = Contribution::generate("ministry");
    let maker = Contribution::generate("iran-khodro");
    let court = Contribution::generate("court");
    let court_key = register_court(&env).await;
    let statements = format!("{}/api/observers/court/statements", env.base);
    let sent = http
        .post(&statements)
        .body(
            court_key
                .commit(&license_no, &court.commitment().commitment)
                .expect("sign"),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(sent.status(), 201);
    // The manufacturer's share by its representative, the ministry's by an issuer.
    let rep = Browser::new("");
    let home = staff_sign_in(&env, &rep, "khodro.rep", 0).await;
    for (b, csrf, c) in [
        (&rep, input(&home.body, "csrf"), &maker),
        (&Browser::new(""), String::new(), &ministry),
    ] {
        let csrf = if csrf.is_empty() {
            let d = staff_sign_in(&env, b, "issuer.two", 0).await;
            input(&d.body, "csrf")
        } else {
            csrf
        };
        let r = b
            .post_follow(
                &format!("{}/ministry/commitments", env.base),
                &[
                    ("csrf", csrf.as_str()),
                    ("license_no", &license_no),
                    ("commitment", &c.commitment().commitment),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let parties = parties_of(&env, &license_no, "iran-khodro", "issuer.one")
        .await
        .expect("three parties");
    assert_eq!(parties.len(), 3, "{parties:?}");
    let delay = presale::domain::SeedDelay {
        reveal_secs: 20,
        iterations: 16,
    };
    let id = issue_lottery(&env, &license_no, parties, delay, 4).await;
    // The court is disabled now: no new license takes it, its share of this one stands.
    assert!(env
        .store
        .disable_observer("court", "cli:test", service_kit::clock::now())
        .await
        .expect("sql"));
    let store = env.store.clone();
    let lic = store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.id == id)
        .expect("license");
    let who = presale::domain::NationalId::parse(&env.citizens[0].national_id).expect("id");
    store
        .enter_lottery(&lic, &who, "sub-0", &presale::domain::Holder("h-0".into()))
        .await
        .expect("enter");
    until(30, || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.seed_status(&id).await.ok().and_then(|s| s.frozen) }
    })
    .await
    .expect("the list froze after the close");
    // The representative reveals on its campaign's dashboard.
    let dash = rep
        .go(&format!("{}/ministry/licenses/{id}/dashboard", env.base))
        .await;
    let done = rep
        .post_follow(
            &resolve(&dash.url, &form_action(&dash.body, "/reveal")),
            &[
                ("csrf", input(&dash.body, "csrf").as_str()),
                ("secret", maker.secret.as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    // The disabled court reveals with its statement.
    let late = http
        .post(&statements)
        .body(court_key.reveal(&id, &court.secret).expect("sign"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        late.status(),
        200,
        "{}",
        late.text().await.unwrap_or_default()
    );
    // And the ministry through an issuer: every share revealed, the seed follows its delay.
    let b2 = Browser::new("");
    // The next TOTP step: the first was spent entering the commitment.
    staff_sign_in(&env, &b2, "issuer.two", 30).await;
    let page = b2.go(&format!("{}/ministry/licenses/{id}", env.base)).await;
    let done = b2
        .post_follow(
            &resolve(&page.url, &form_action(&page.body, "/reveal")),
            &[
                ("csrf", input(&page.body, "csrf").as_str()),
                ("secret", ministry.secret.as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let status = store.seed_status(&id).await.expect("status");
    assert!(
        status.parties.iter().all(|(_, revealed)| *revealed),
        "{:?}",
        status.parties
    );
    let history = store.audit_for(&id).await.expect("audit");
    for actor in ["khodro.rep", "observer:court", "issuer.two"] {
        assert!(
            history
                .iter()
                .any(|e| e.action == "seed.reveal" && e.actor == actor),
            "{actor}'s reveal in {history:?}"
        );
    }
    // A license proposed now does not take the disabled court.
    let next = format!("{license_no}-2");
    let sent = http
        .post(&statements)
        .body(
            court_key
                .commit(
                    &next,
                    &Contribution::generate("court").commitment().commitment,
                )
                .expect("sign"),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(
        sent.status(),
        404,
        "a disabled observer commits to nothing new"
    );
}
