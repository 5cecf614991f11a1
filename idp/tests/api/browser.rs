//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! walks the citizen pages as a person would, including the proof of work that the page's
//! own JavaScript solves. `.ci/run` installs Debian's `chromium` and `chromium-driver`.

use std::time::Duration;

use testkit::webdriver::Driver;

use crate::helpers::{query_of, raw_auth, spawn_app, Backend};

/// Where the screenshots go.
fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_signs_in_with_a_real_browser() {
    // Arrange: the proof of work at a difficulty the page's script has to work for.
    let app = crate::helpers::spawn_app_with(
        Backend::Embedded,
        crate::helpers::Options {
            settings: Box::new(|s| s.pow_difficulty = 12),
        },
    )
    .await;
    let _ = spawn_app; // the plain helper is used by the other modules
    let who = app.citizens[0].clone();
    let c = app.client("saipa");
    let auth = raw_auth(&app, c, "");
    let browser = Driver::start(412, 900).await;

    // Act: the four pages.
    browser.goto(&auth.url).await;
    browser.type_into("#mobile", &who.mobile).await;
    browser
        .wait_enabled("form[data-pow] button[type=submit]")
        .await;
    browser.screenshot_to(&shots(), "1-phone.png").await;
    browser.click("form[data-pow] button[type=submit]").await;
    browser.find("#code").await;
    let code = app.latest_code_for(&who.mobile).await.expect("an SMS code");
    browser
        .type_into("#code", &idp::domain::digits::to_persian_digits(&code))
        .await;
    browser.click("form[action$='/otp'] button").await;
    browser.type_into("#national_id", &who.national_id).await;
    browser.type_into("#birth_date", &who.birth_date).await;
    browser.click("form[action$='/identity'] button").await;
    browser.find("button[value=approve]").await;
    browser.screenshot_to(&shots(), "2-consent.png").await;
    browser.click("button[value=approve]").await;

    // Assert: the browser was sent back to the storefront with a code.
    let mut url = String::new();
    for _ in 0..50 {
        url = browser.url().await;
        if url.starts_with(&c.redirect_uri) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let q = query_of(&url);
    assert!(
        q.contains_key("code"),
        "back at the storefront with a code: {url}"
    );
    assert_eq!(q.get("state"), Some(&auth.state));
    let (status, _) = crate::helpers::exchange(&app, c, &q["code"], &auth.verifier).await;
    assert_eq!(status, 200);
}
