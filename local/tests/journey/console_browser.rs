//! The ministry console in a real browser (headless Chromium over WebDriver), as staff use
//! it on an opening day: an administrator enrols an issuer (the TOTP from the QR's secret);
//! the issuer proposes a license through the form with Jalali dates typed in Persian
//! digits, after the manufacturer's seed commitment arrived through its own credentials
//! and another issuer entered the ministry's; the second issuer reads every term and
//! approves; an auditor reads. Every page is photographed at 360 and 1280 pixels
//! (`target/e2e/console/`), and none overflows its screen or its card, and every field
//! has its label.

use presale::store::staff::Role;
use testkit::webdriver::Driver;

use super::{
    add_staff, code_from_secret, jalali, join_and_stay, start, status_of, Env, STAFF_PASSWORD,
};

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e/console")
}

/// What a person would see as broken at this width: the page wider than the screen, a
/// visible element outside the main card, a field without a label.
pub(super) const LAYOUT: &str = r#"
const vw = document.documentElement.clientWidth;
const out = [];
if (document.documentElement.scrollWidth > vw) {
  out.push('the page is ' + document.documentElement.scrollWidth + ' px on a ' + vw + ' px screen');
}
const main = document.querySelector('main').getBoundingClientRect();
for (const e of document.querySelectorAll('main *')) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (r.left < main.left - 1 || r.right > main.right + 1) {
    out.push(e.tagName + '.' + e.className + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right)
      + ', the card ' + Math.round(main.left) + '..' + Math.round(main.right));
  }
}
for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const labelled = (e.id && document.querySelector('label[for="' + e.id + '"]')) || e.getAttribute('aria-label');
  if (!labelled) out.push('no label for ' + e.name);
}
if (!document.documentElement.lang || !document.documentElement.dir) out.push('no lang/dir');
return out.slice(0, 12);
"#;

/// Photographs the page at 360 and 1280 pixels and checks its layout at each.
async fn check(d: &Driver, name: &str) {
    for width in [360, 1280] {
        d.emulate_width(width, 900).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        d.screenshot_to(&shots(), &format!("{name}-{width}.png"))
            .await;
        let found = d.script(LAYOUT).await;
        assert_eq!(found, serde_json::json!([]), "{name} at {width} px");
    }
    d.emulate_width(1280, 900).await;
}

async fn text_of(d: &Driver, id: &str) -> String {
    d.find(&format!("#{}", id.replace('.', "\\."))).await;
    d.script(&format!(
        "return document.getElementById('{id}').textContent"
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .trim()
    .to_owned()
}

async fn wait_for_url(d: &Driver, pred: impl Fn(&str) -> bool) -> String {
    let mut url = String::new();
    for _ in 0..100 {
        url = d.url().await;
        if pred(&url) {
            return url;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("still at {url}: {}", d.source().await);
}

/// Signs in with the first of `codes` that the console takes: a TOTP code computed just
/// before a 30-second step ends can reach the server one step late on a loaded machine,
/// and a code is refused for good once a later one was used; the next code is the retry.
async fn sign_in_with_codes(d: &Driver, env: &Env, who: &str, password: &str, codes: &[String]) {
    let console = format!("{}/ministry", env.base);
    for code in codes {
        d.goto(&format!("{}/ministry/login", env.base)).await;
        d.type_into("#username", who).await;
        d.type_into("#password", password).await;
        d.type_into("#totp", code).await;
        submit_and_wait(d, "form[action='/ministry/login'] button").await;
        if d.url().await == console {
            return;
        }
    }
    panic!("{who} could not sign in: {}", d.source().await);
}

/// A staff member's codes as an authenticator shows them from `offset` seconds on: this
/// step's and the next one's.
async fn codes_from(env: &Env, who: &str, offset: i64) -> Vec<String> {
    vec![
        current(env, who, offset).await,
        current(env, who, offset + 30).await,
    ]
}

/// Clicks `css` (a form's button) and waits for the page it brings: the old page carries a
/// mark the new one does not.
async fn submit_and_wait(d: &Driver, css: &str) {
    d.script("window.emtaOldPage = true; return null").await;
    d.click(css).await;
    for _ in 0..100 {
        if d.script("return window.emtaOldPage === true").await == serde_json::json!(false) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no new page after {css}");
}

async fn sign_out(d: &Driver) {
    d.click("form[action='/ministry/logout'] button").await;
    wait_for_url(d, |u| u.ends_with("/ministry/login")).await;
}

async fn current(env: &Env, who: &str, offset: i64) -> String {
    env.store
        .current_totp(who, service_kit::clock::now() + offset)
        .await
        .expect("sql")
        .expect("code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_day_in_the_console_in_a_real_browser() {
    let env = start(false).await;
    let console = format!("{}/ministry", env.base);
    add_staff(&env, "admin.one", Role::Administrator).await;
    add_staff(&env, "issuer.two", Role::Issuer).await;
    add_staff(&env, "auditor.one", Role::Auditor).await;
    let d = Driver::start(1280, 900).await;

    // The administrator signs in and enrols an issuer.
    d.goto(&format!("{console}/login")).await;
    check(&d, "login").await;
    sign_in_with_codes(
        &d,
        &env,
        "admin.one",
        STAFF_PASSWORD,
        &codes_from(&env, "admin.one", -30).await,
    )
    .await;
    check(&d, "home-administrator").await;
    d.goto(&format!("{console}/staff")).await;
    check(&d, "staff").await;
    d.type_into("#username", "issuer.new").await;
    d.click("#role option[value=issuer]").await;
    d.click("form[action='/ministry/staff'] button").await;
    let password = text_of(&d, "new-password").await;
    let secret = text_of(&d, "totp-secret").await;
    assert!(
        d.source().await.contains("<svg"),
        "the QR code is on the page"
    );
    check(&d, "enrolment").await;
    sign_out(&d).await;

    // The manufacturer's commitment arrives through its channel; another issuer enters the
    // ministry's.
    let maker_secret = env.seed_secret("iran-khodro");
    local::parties::commit_through_idp(
        &env.issuer,
        &env.base,
        "iran-khodro",
        &maker_secret,
        "MIMT-1405-0007",
    )
    .await
    .expect("the manufacturer commits");
    sign_in_with_codes(
        &d,
        &env,
        "issuer.two",
        STAFF_PASSWORD,
        &codes_from(&env, "issuer.two", -30).await,
    )
    .await;
    d.goto(&format!("{console}/commitments")).await;
    d.type_into("#license_no", "MIMT-1405-0007").await;
    let ministry = local::parties::contribution("ministry")
        .commitment()
        .commitment;
    d.type_into("#commitment", &ministry).await;
    // The answer is the same page: wait for the new one.
    submit_and_wait(&d, "form[action='/ministry/commitments'] button").await;
    assert!(d.source().await.contains("MIMT-1405-0007"));
    check(&d, "commitments").await;
    sign_out(&d).await;

    // The new issuer signs in with a code from the QR's secret and proposes the license,
    // the dates typed in Persian digits.
    let now = service_kit::clock::now();
    sign_in_with_codes(
        &d,
        &env,
        "issuer.new",
        &password,
        &[
            code_from_secret("issuer.new", &secret, now),
            code_from_secret("issuer.new", &secret, now + 30),
        ],
    )
    .await;
    d.goto(&format!("{console}/licenses/new")).await;
    check(&d, "license-form").await;
    for (id, value) in [
        ("license_no", "MIMT-1405-0007".to_owned()),
        ("model", "Tara".to_owned()),
        ("units", "۵۰".to_owned()),
        ("unit_price", "۹٬۵۰۰٬۰۰۰٬۰۰۰".to_owned()),
        ("down_payment", "۱٬۰۰۰٬۰۰۰٬۰۰۰".to_owned()),
        ("opens_at", jalali(now - 120)),
        ("closes_at", jalali(now + 3 * 86_400)),
        ("delivery_deadline", jalali(now + 200 * 86_400)),
        ("admission_per_min", "۶۰۰".to_owned()),
        ("max_active", "۲۰".to_owned()),
    ] {
        d.type_into(&format!("#{id}"), &value).await;
    }
    d.click("#manufacturer option[value=iran-khodro]").await;
    d.click("#kind option[value=firm]").await;
    // Few delay steps: the local parties reveal at once.
    d.script("document.getElementById('seed_iterations').value = '16'; return null")
        .await;
    // First a window that closes before it opens: told beside its field, the form kept.
    d.script(&format!(
        "document.getElementById('closes_at').value = '{}'; return null",
        jalali(now - 86_400)
    ))
    .await;
    submit_and_wait(&d, "button[name=check]").await;
    d.find("#closes_at-error").await;
    assert!(
        d.source().await.contains("value=\"Tara\""),
        "the form keeps what was typed"
    );
    check(&d, "license-form-errors").await;
    d.script(&format!(
        "document.getElementById('closes_at').value = '{}'; return null",
        jalali(now + 3 * 86_400)
    ))
    .await;
    submit_and_wait(&d, "button[name=check]").await;
    d.find("#delivery_deadline-hint").await;
    let page = d.source().await;
    assert!(!page.contains("class=\"error\""), "checked clean: {page}");
    assert!(
        page.contains("toman"),
        "the toman equivalent beside the rials"
    );
    check(&d, "license-form-checked").await;
    d.click("form.license button:not([name])").await;
    let proposal = wait_for_url(&d, |u| u.contains("/ministry/proposals/")).await;
    check(&d, "proposal-own").await;
    sign_out(&d).await;

    // The second issuer reads every term and approves.
    sign_in_with_codes(
        &d,
        &env,
        "issuer.two",
        STAFF_PASSWORD,
        &codes_from(&env, "issuer.two", 30).await,
    )
    .await;
    check(&d, "home-issuer").await;
    d.goto(&proposal).await;
    let page = d.source().await;
    for term in [
        "MIMT-1405-0007",
        "iran-khodro",
        "Tara",
        "9,500,000,000",
        &ministry,
        "SHA-256",
        "1405/",
    ] {
        assert!(page.contains(term), "{term} on the proposal page");
    }
    check(&d, "proposal").await;
    d.click("form[action$='/approve'] button").await;
    wait_for_url(&d, |u| u.contains("/ministry/licenses/")).await;
    assert!(d.source().await.contains("active"));
    check(&d, "license").await;

    // The live dashboard of the campaign citizens are joining: its figures move without a
    // reload while citizens join over HTTP.
    let saipa = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.manufacturer == "saipa")
        .expect("the saipa campaign");
    let dashboard = format!("{console}/licenses/{}/dashboard", saipa.id);
    d.goto(&dashboard).await;
    let admitted = || async { text_of(&d, "admitted").await };
    assert_eq!(admitted().await, "0");
    let mut joined = Vec::new();
    for who in &env.citizens[..8] {
        joined.push(join_and_stay(&env, who).await);
    }
    // Admitted as far as units allow (a unit for everyone admitted), the rest waiting.
    let expected = 8.min(saipa.units);
    let mut moved = String::new();
    for _ in 0..50 {
        moved = admitted().await;
        if moved == expected.to_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        moved,
        expected.to_string(),
        "the figures moved: {}",
        d.source().await
    );
    assert_eq!(d.url().await, dashboard, "without a reload");
    assert!(
        d.script("return document.getElementById('live').getAttribute('data-refreshed')")
            .await
            .is_string(),
        "refreshed by the page's script"
    );
    assert_eq!(text_of(&d, "waiting").await, (8 - expected).to_string());
    check(&d, "dashboard").await;

    // Pause and resume from the license pages: every place and every apply deadline kept,
    // and nobody admitted while paused (a citizen joins the console's new campaign, with
    // room for fifty, and waits until it resumes).
    let places = || async {
        let mut all = Vec::new();
        for (b, wait) in &joined {
            let s = status_of(b, wait).await;
            all.push((
                s["ticket"].clone(),
                s["ahead"].clone(),
                s["admitted"].clone(),
            ));
        }
        all
    };
    let places_before = places().await;
    let deadlines_before = deadlines(&env, &saipa.id).await;
    assert_eq!(deadlines_before.len(), expected as usize);
    for l in [&saipa, &issued_now(&env, "MIMT-1405-0007").await] {
        d.goto(&format!("{console}/licenses/{}", l.id)).await;
        submit_and_wait(&d, "form[action$='/pause'] button").await;
        d.find("form[action$='/unpause'] button").await;
    }
    check(&d, "license-paused").await;
    d.goto(&dashboard).await;
    assert!(
        d.source().await.contains("admissions paused"),
        "the dashboard says so"
    );
    let wait = citizen_joins(&d, &env).await;
    check(&d, "waiting-room").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    d.goto(&wait).await;
    assert!(
        !d.source().await.contains("/apply\""),
        "nobody is admitted while paused"
    );
    assert_eq!(
        places().await,
        places_before,
        "every place kept while paused"
    );
    for l in [&saipa, &issued_now(&env, "MIMT-1405-0007").await] {
        d.goto(&format!("{console}/licenses/{}", l.id)).await;
        submit_and_wait(&d, "form[action$='/unpause'] button").await;
        d.find("form[action$='/pause'] button").await;
    }
    assert_eq!(places().await, places_before, "every place kept after");
    assert_eq!(
        deadlines(&env, &saipa.id).await,
        deadlines_before,
        "every apply deadline kept"
    );

    // Resumed: the citizen is admitted and applies, in the browser.
    let mut admitted_page = String::new();
    for _ in 0..60 {
        d.goto(&wait).await;
        admitted_page = d.source().await;
        if admitted_page.contains("/apply\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        admitted_page.contains("/apply\""),
        "admitted: {admitted_page}"
    );
    check(&d, "admitted").await;
    submit_and_wait(&d, "form[action$='/apply'] button").await;
    let receipt = d.source().await;
    assert!(receipt.contains("/applications"), "a receipt: {receipt}");
    check(&d, "receipt").await;
    d.click("a[href$='/applications']").await;
    wait_for_url(&d, |u| u.ends_with("/iran-khodro/applications")).await;
    assert!(d.source().await.contains("Tara"));
    check(&d, "applications").await;
    d.goto(&console).await;
    sign_out(&d).await;

    // The auditor reads the log.
    sign_in_with_codes(
        &d,
        &env,
        "auditor.one",
        STAFF_PASSWORD,
        &codes_from(&env, "auditor.one", 0).await,
    )
    .await;
    d.goto(&format!("{console}/audit")).await;
    assert!(d.source().await.contains("The hash chain holds"));
    check(&d, "audit").await;
    let issued = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.license_no == "MIMT-1405-0007")
        .expect("issued through the console");
    assert_eq!(issued.units, 50);
    assert_eq!(issued.manufacturer, "iran-khodro");

    // The citizen's public pages at the same widths: a storefront, a campaign's public
    // transparency log, the lottery list's page shell.
    for (name, path) in [
        ("storefront", "/saipa/".to_owned()),
        ("transparency", format!("/transparency/{}", saipa.id)),
    ] {
        d.goto(&format!("{}{path}", env.base)).await;
        check(&d, name).await;
    }

    // Saipa's representative: its campaign's dashboard, and its seed commitment pasted on
    // the page bound to Saipa.
    env.store
        .add_representative(
            "saipa.rep",
            STAFF_PASSWORD,
            "saipa",
            "admin.one",
            service_kit::clock::now(),
        )
        .await
        .expect("representative");
    sign_in_with_codes(
        &d,
        &env,
        "saipa.rep",
        STAFF_PASSWORD,
        &codes_from(&env, "saipa.rep", 0).await,
    )
    .await;
    assert!(d.source().await.contains(&dashboard.replace(&env.base, "")));
    check(&d, "home-representative").await;
    d.goto(&dashboard).await;
    check(&d, "dashboard-representative").await;
    d.goto(&format!("{console}/commitments")).await;
    d.type_into("#license_no", "MIMT-1405-0008").await;
    let share = local::parties::contribution("saipa")
        .commitment()
        .commitment;
    d.type_into("#commitment", &share).await;
    // The answer is the same page: wait for the new one.
    submit_and_wait(&d, "form[action='/ministry/commitments'] button").await;
    assert!(d.source().await.contains("MIMT-1405-0008"));
    check(&d, "commitments-representative").await;
    let recorded = env
        .store
        .commitments_for("MIMT-1405-0008")
        .await
        .expect("sql");
    assert_eq!(
        (recorded[0].party.as_str(), recorded[0].made_by.as_str()),
        ("saipa", "saipa.rep")
    );
    d.goto(&format!("{console}/audit")).await;
    assert!(
        d.source().await.contains("Your role does not allow this"),
        "a representative reads no audit log"
    );
    d.goto(&console).await;
    sign_out(&d).await;
    complaint_and_case(&d, &env).await;
}

/// After the sale (issue 34): the buyer files a complaint with a photograph from their
/// applications page; unanswered past its deadline it reaches the ministry, where an
/// inspector upholds it, opens a case, records a finding and proposes to suspend the
/// manufacturer, which a second inspector approves.
async fn complaint_and_case(d: &Driver, env: &Env) {
    use presale::store::staff::Role;
    let console = format!("{}/ministry", env.base);
    d.goto(&format!("{}/iran-khodro/applications", env.base))
        .await;
    d.click("a[href*='/complaints/new']").await;
    d.find("#body").await;
    d.type_into("#body", "The delivery date has passed without a word.")
        .await;
    let photo = std::env::temp_dir().join(format!(
        "emta-complaint-{}.png",
        service_kit::keys::random_token(6)
    ));
    std::fs::write(&photo, b"\x89PNG\r\n\x1a\n a photograph of the contract").expect("photo");
    d.type_into("#files", &photo.display().to_string()).await;
    check(d, "complaint-form").await;
    submit_and_wait(d, "form.complaint button").await;
    d.find("[data-now-with=manufacturer]").await;
    let page = d.source().await;
    assert!(
        page.contains(".png") || page.contains("image/png"),
        "{page}"
    );
    check(d, "complaint-buyer").await;
    let _ = std::fs::remove_file(&photo);
    // Eleven days on, unanswered (moved in the database by its owner).
    sqlx::query(
        "UPDATE complaints SET filed_at = filed_at - 950400, answer_due = answer_due - 950400",
    )
    .execute(env.store.pool())
    .await
    .expect("eleven days on");
    d.goto(&d.url().await).await;
    d.find("[data-now-with=province]").await;
    check(d, "complaint-buyer-province").await;
    let complaint = d
        .script("return document.querySelector('[data-complaint]').dataset.complaint")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Two inspectors, enrolled by different people (one person behind both is no
    // second pair of eyes).
    add_staff(env, "inspector.one", Role::Inspector).await;
    env.store
        .add_staff(
            "inspector.two",
            STAFF_PASSWORD,
            Role::Inspector,
            "admin.one",
            service_kit::clock::now(),
        )
        .await
        .expect("inspector");
    sign_in_with_codes(
        d,
        env,
        "inspector.one",
        STAFF_PASSWORD,
        &codes_from(env, "inspector.one", 0).await,
    )
    .await;
    d.goto(&format!("{console}/complaints")).await;
    d.find(&format!(
        "tr[data-complaint='{complaint}'][data-level=province]"
    ))
    .await;
    check(d, "complaints-inspector").await;
    d.goto(&format!("{console}/complaints/{complaint}")).await;
    check(d, "complaint-inspector").await;
    submit_and_wait(d, "button[value=upheld]").await;
    d.find("[data-proposed=upheld]").await;
    d.type_into("#summary", "Deliveries of the Tara campaign are late.")
        .await;
    submit_and_wait(d, "form[action='/ministry/cases'] button").await;
    d.find("dl.case").await;
    d.type_into("#finding", "No delivery dates given to buyers.")
        .await;
    submit_and_wait(d, "form[action$='/findings'] button").await;
    assert!(d
        .source()
        .await
        .contains("No delivery dates given to buyers."));
    check(d, "case").await;
    submit_and_wait(d, "button[value=suspend]").await;
    let proposal = d.url().await;
    assert!(proposal.contains("/ministry/proposals/"), "{proposal}");
    check(d, "case-proposal").await;
    sign_out(d).await;
    sign_in_with_codes(
        d,
        env,
        "inspector.two",
        STAFF_PASSWORD,
        &codes_from(env, "inspector.two", 0).await,
    )
    .await;
    // The second inspector confirms the decision on the complaint, then approves.
    d.goto(&format!("{console}/complaints/{complaint}")).await;
    submit_and_wait(d, "button[value=upheld]").await;
    d.find("[data-outcome=upheld]").await;
    check(d, "complaint-upheld").await;
    d.goto(&proposal).await;
    submit_and_wait(d, "form[action$='/approve'] button").await;
    d.find("[data-standing=suspended]").await;
    check(d, "case-suspended").await;
    let paused = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .filter(|l| l.manufacturer == "iran-khodro")
        .all(|l| !l.is_active());
    assert!(paused, "every Iran Khodro campaign paused");
}

/// Every admission of a campaign: ticket and apply deadline.
async fn deadlines(env: &Env, license_id: &str) -> Vec<(i64, i64)> {
    use sqlx::Row;
    sqlx::query(
        "SELECT ticket, deadline_ms FROM queue_admissions WHERE license_id = $1 ORDER BY ticket",
    )
    .bind(license_id)
    .fetch_all(env.store.pool())
    .await
    .expect("admissions")
    .iter()
    .map(|r| (r.get::<i64, _>("ticket"), r.get::<i64, _>("deadline_ms")))
    .collect()
}

async fn issued_now(env: &Env, license_no: &str) -> presale::domain::License {
    env.store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.license_no == license_no)
        .expect("issued")
}

/// A citizen signs in at Iran Khodro's storefront in the browser, through the IdP's own
/// pages (the proof of work solved by the page's script, the SMS code from the stub's
/// outbox, the civil registry's check, consent), each checked at both widths, and joins
/// the console's campaign; the wait page's URL.
async fn citizen_joins(d: &Driver, env: &Env) -> String {
    let who = env.citizens[9].clone();
    d.goto(&format!("{}/iran-khodro/login", env.base)).await;
    d.find("#mobile").await;
    check(d, "idp-phone").await;
    d.type_into("#mobile", &who.mobile).await;
    d.wait_enabled("form[data-pow] button[type=submit]").await;
    d.click("form[data-pow] button[type=submit]").await;
    d.find("#code").await;
    check(d, "idp-code").await;
    let code = env
        .stub
        .outbox
        .latest_code(&who.mobile)
        .expect("an SMS code");
    d.type_into("#code", &service_kit::digits::to_persian_digits(&code))
        .await;
    d.click("form[action$='/otp'] button").await;
    d.find("#national_id").await;
    check(d, "idp-identity").await;
    d.type_into("#national_id", &who.national_id).await;
    d.type_into("#birth_date", &who.birth_date).await;
    d.click("form[action$='/identity'] button").await;
    d.find("button[value=approve]").await;
    check(d, "idp-consent").await;
    d.click("button[value=approve]").await;
    let front = format!("{}/iran-khodro/", env.base);
    wait_for_url(d, |u| u == front).await;
    // The replicas load a new license within a quarter of a second.
    for _ in 0..40 {
        if d.source().await.contains("/join\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        d.goto(&front).await;
    }
    check(d, "storefront-signed-in").await;
    submit_and_wait(d, "form[action$='/join'] button").await;
    wait_for_url(d, |u| u.ends_with("/wait")).await
}
