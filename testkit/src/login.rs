//! The walk through the IdP's login pages as a citizen's browser does it: the mobile
//! number with the proof of work (solved as the page's script does), the SMS code read
//! from the stub gateway, national ID and birth date, then consent.

use sha2::{Digest, Sha256};

use crate::browser::{Browser, Page};
use crate::citizens::FixtureCitizen;
use crate::stubs::Outbox;

/// Solves the IdP's anti-bot challenge `issued.difficulty.random.mac` as `pow.js` does:
/// the first counter whose SHA-256(challenge ":" counter) starts with `difficulty` zero
/// bits.
pub fn solve_pow(challenge: &str) -> String {
    let difficulty: u32 = challenge
        .split('.')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| {
            let d = Sha256::digest(format!("{challenge}:{nonce}").as_bytes());
            let head = u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]));
            head.leading_zeros() >= difficulty.min(128)
        })
        .unwrap_or_default()
}

/// Step 1: the mobile number, with the page's challenge solved. One hop.
pub async fn phone(b: &Browser, page: &Page, mobile: &str) -> Page {
    let challenge = page
        .input("pow_challenge")
        .expect("a proof-of-work challenge");
    let nonce = solve_pow(&challenge);
    phone_with(b, page, mobile, &challenge, &nonce).await
}

/// Step 1 with a given challenge and nonce (replays, foreign challenges). One hop.
pub async fn phone_with(
    b: &Browser,
    page: &Page,
    mobile: &str,
    challenge: &str,
    nonce: &str,
) -> Page {
    b.post_form(
        page,
        "/phone",
        &[
            ("mobile", mobile),
            ("pow_challenge", challenge),
            ("pow_nonce", nonce),
        ],
    )
    .await
}

/// Step 2: the SMS code. One hop.
pub async fn otp(b: &Browser, page: &Page, code: &str) -> Page {
    b.post_form(page, "/otp", &[("code", code)]).await
}

/// Step 3: national ID and Jalali birth date. One hop.
pub async fn identity(b: &Browser, page: &Page, national_id: &str, birth_date: &str) -> Page {
    b.post_form(
        page,
        "/identity",
        &[("national_id", national_id), ("birth_date", birth_date)],
    )
    .await
}

/// Step 4: `approve` or `deny`. One hop.
pub async fn consent(b: &Browser, page: &Page, decision: &str) -> Page {
    b.post_form(page, "/consent", &[("decision", decision)])
        .await
}

/// From the phone page to what the identity step leads to: the consent page, or the
/// redirect back to the client when consent is remembered.
pub async fn verify(b: &Browser, phone_page: Page, who: &FixtureCitizen, outbox: &Outbox) -> Page {
    assert_eq!(phone_page.status, 200, "phone page: {}", phone_page.body);
    let code_page = b.follow(phone(b, &phone_page, &who.mobile).await).await;
    assert_eq!(code_page.status, 200, "code page: {}", code_page.body);
    let code = outbox.latest_code(&who.mobile).expect("an SMS code");
    let identity_page = b.follow(otp(b, &code_page, &code).await).await;
    assert_eq!(
        identity_page.status, 200,
        "identity page: {}",
        identity_page.body
    );
    b.follow(identity(b, &identity_page, &who.national_id, &who.birth_date).await)
        .await
}

/// Finishes a sign-in from the first IdP page a browser lands on: verifies if asked,
/// approves consent if asked, and returns the IdP's redirect back to the client.
pub async fn complete(b: &Browser, first: Page, who: &FixtureCitizen, outbox: &Outbox) -> Page {
    let mut page = first;
    if page.has("name=\"mobile\"") {
        page = verify(b, page, who, outbox).await;
    }
    if page.has("name=\"decision\"") {
        page = b.follow(consent(b, &page, "approve").await).await;
    }
    page
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_solved_challenge_has_the_asked_zero_bits() {
        let challenge = "1700000000.12.abc.mac";
        let nonce = super::solve_pow(challenge);
        let d = <sha2::Sha256 as sha2::Digest>::digest(format!("{challenge}:{nonce}").as_bytes());
        assert_eq!(d[0], 0);
        assert!(d[1] < 16);
    }
}
