//! The bank step in a real browser (issue 30's "done means"): headless Chromium signs a
//! citizen in through the IdP's pages, opens the campaign's hold page, chooses the bank,
//! signs in at the (stub) bank's own page with the card and PIN, approves, and comes back
//! to emta, which has confirmed the hold; then joins. Each page is photographed at 360
//! and 1280 pixels (`target/e2e/holds/`), and none overflows its screen or its card, and
//! every field of emta's pages has its label.

use testkit::webdriver::Driver;

use super::*;

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e/holds")
}

/// Photographs the page at both widths; on emta's pages, checks the layout at each.
async fn shoot(d: &Driver, name: &str, layout: bool) {
    for width in [360, 1280] {
        d.emulate_width(width, 900).await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        d.screenshot_to(&shots(), &format!("{name}-{width}.png"))
            .await;
        if layout {
            let found = d.script(super::console_browser::LAYOUT).await;
            assert_eq!(found, serde_json::json!([]), "{name} at {width} px");
        }
    }
    d.emulate_width(1280, 900).await;
}

async fn until_url(d: &Driver, pred: impl Fn(&str) -> bool) -> String {
    let mut url = String::new();
    for _ in 0..150 {
        url = d.url().await;
        if pred(&url) {
            return url;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("still at {url}: {}", d.source().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_places_the_hold_at_the_bank_in_a_real_browser() {
    let now = service_kit::clock::now();
    let env = start_with(
        None,
        testkit::Backend::Embedded.redis_url(),
        local::deploy::with_stub_bank_hold(test_license("saipa", "Shahin", now)),
    )
    .await;
    let who = env.citizens[0].clone();
    let d = Driver::start(1280, 900).await;

    // Sign in through the IdP's pages, as in the citizen's browser test.
    d.goto(&format!("{}/saipa/login", env.base)).await;
    d.type_into("#mobile", &who.mobile).await;
    d.wait_enabled("form[data-pow] button[type=submit]").await;
    d.click("form[data-pow] button[type=submit]").await;
    d.find("#code").await;
    let mut code = None;
    for _ in 0..50 {
        code = env.stub.outbox.latest_code(&who.mobile);
        if code.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    d.type_into("#code", &code.expect("an SMS code")).await;
    d.click("form[action$='/otp'] button").await;
    d.type_into("#national_id", &who.national_id).await;
    d.type_into("#birth_date", &who.birth_date).await;
    d.click("form[action$='/identity'] button").await;
    d.find("button[value=approve]").await;
    d.click("button[value=approve]").await;
    until_url(&d, |u| u == format!("{}/saipa/", env.base)).await;
    d.find("a[data-hold-link]").await;
    shoot(&d, "1-storefront", true).await;

    // The hold page: the amount, the title, the participating bank.
    d.click("a[data-hold-link]").await;
    d.find("select#bank").await;
    shoot(&d, "2-hold", true).await;
    d.click("form[action$='/hold'] button").await;

    // The bank's own page: sign in with the card and PIN, approve.
    until_url(&d, |u| u.contains("/bank/pay/")).await;
    d.find("#card").await;
    let page = d.source().await;
    assert!(page.contains("power-of-attorney"), "{page}");
    shoot(&d, "3-bank", false).await;
    d.type_into("#card", &testkit::bank::card_of(&who.national_id))
        .await;
    d.type_into("#pin", testkit::bank::PIN).await;
    d.click("#login").await;
    d.find("#approve").await;
    shoot(&d, "4-bank-approve", false).await;
    d.click("#approve").await;

    // Back at emta, the hold confirmed.
    until_url(&d, |u| u.contains("/hold/back/")).await;
    d.find("[data-hold-outcome=true]").await;
    shoot(&d, "5-confirmed", true).await;
    d.goto(&format!("{}/saipa/applications", env.base)).await;
    d.find("[data-hold-state=held]").await;
    shoot(&d, "6-applications", true).await;

    // And now the citizen may join. The storefront shows the ministry's trust badge,
    // drawn by the IdP's own script (issue 34), which its content policy lets run.
    d.goto(&format!("{}/saipa/", env.base)).await;
    d.find("a.emta-badge[data-emta-badge=saipa][data-status=active]")
        .await;
    shoot(&d, "7-badge", false).await;
    // The same script copied onto a forger's page says so, in the seal itself.
    let bad = super::after_sale::forger(&env.issuer).await;
    d.goto(&format!("{bad}/copy")).await;
    d.find("a.emta-badge[data-emta-badge=saipa][data-status=wrong-origin]")
        .await;
    shoot(&d, "8-badge-copied", false).await;
    d.goto(&format!("{}/saipa/", env.base)).await;
    d.click("form[action$='/join'] button").await;
    until_url(&d, |u| u.ends_with("/wait")).await;
    shoot(&d, "9-waiting", true).await;
    let license = env
        .store
        .licenses()
        .await
        .expect("licenses")
        .into_iter()
        .find(|l| l.model == "Shahin")
        .expect("license");
    let nid = presale::domain::NationalId::parse(&who.national_id).expect("nid");
    assert!(env
        .store
        .hold_counts(&license.id, &nid)
        .await
        .expect("hold"));
}
