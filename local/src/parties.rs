//! The seed's parties, played by the machine in a local deployment.
//!
//! A real campaign's parties (the ministry and the manufacturer, perhaps an observer) each
//! keep a secret from `presale commit` and reveal it by hand after the list is frozen
//! (each through its own channel: the console, the manufacturer's seed client, an
//! observer's signed statement). Locally nobody is there to do that, so every local
//! license commits to two fixed demo secrets and [`reveal_when_frozen`] reveals them as
//! soon as the service accepts. These secrets are public (they are in this file): a local
//! campaign's seed is recomputable in advance, which is fine for a demo and a test bed and
//! is why nothing here is used by the services themselves.

use std::collections::HashSet;
use std::time::Duration;

use presale::store::seeds::Revealed;
use presale::store::Store;
use presale::transparency::seed::{Commitment, Contribution};

/// The local parties and their (public) secrets.
pub fn contributions() -> Vec<Contribution> {
    ["ministry", "manufacturer"].map(contribution).to_vec()
}

/// A local party's contribution: `ministry`, `manufacturer`, or a manufacturer by its
/// client id (a license proposed in the console names the manufacturer's own party).
pub fn contribution(party: &str) -> Contribution {
    Contribution {
        party: party.to_owned(),
        secret: format!("local-demo-secret-of-the-{party}"),
    }
}

/// A client_credentials token of `manufacturer`'s seed client (`{manufacturer}-seed`,
/// with `client_secret`) from the IdP at `issuer`, scope `presale.seed`: what its
/// back-end sends with its commitment and its reveal.
pub async fn seed_token(
    issuer: &str,
    manufacturer: &str,
    client_secret: &str,
) -> anyhow::Result<String> {
    service_token(issuer, manufacturer, client_secret, "presale.seed").await
}

/// A client_credentials token of `manufacturer`'s service client for `scope`
/// (`presale.seed`, or `presale.deliveries` for its deliveries, issue 34).
pub async fn service_token(
    issuer: &str,
    manufacturer: &str,
    client_secret: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(
            format!(
                "{manufacturer}{}",
                presale::store::commitments::SEED_CLIENT_SUFFIX
            ),
            Some(client_secret),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no access token: {token}"))
}

/// Sends `manufacturer`'s seed commitment for license number `license_no` through its own
/// channel, as the manufacturer's back-end would: a token of its seed client (see
/// [`seed_token`]), then `POST {presale}/api/seed-commitments`. The local demo secret's
/// commitment.
pub async fn commit_through_idp(
    issuer: &str,
    presale: &str,
    manufacturer: &str,
    client_secret: &str,
    license_no: &str,
) -> anyhow::Result<()> {
    let commitment = contribution(manufacturer).commitment().commitment;
    commit_with_idp(
        issuer,
        presale,
        manufacturer,
        client_secret,
        license_no,
        &commitment,
    )
    .await
}

/// As [`commit_through_idp`], with `commitment`.
pub async fn commit_with_idp(
    issuer: &str,
    presale: &str,
    manufacturer: &str,
    client_secret: &str,
    license_no: &str,
    commitment: &str,
) -> anyhow::Result<()> {
    let access = seed_token(issuer, manufacturer, client_secret).await?;
    let r = reqwest::Client::new()
        .post(format!("{presale}/api/seed-commitments"))
        .bearer_auth(access)
        .json(&serde_json::json!({ "license_no": license_no, "commitment": commitment }))
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT,
        "commitment refused: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

/// `manufacturer` reveals `secret` for campaign `license_id` through its seed client
/// (`POST {presale}/api/seed-reveals`); the answer as it came.
pub async fn reveal_through_idp(
    issuer: &str,
    presale: &str,
    manufacturer: &str,
    client_secret: &str,
    license_id: &str,
    secret: &str,
) -> anyhow::Result<reqwest::Response> {
    let access = seed_token(issuer, manufacturer, client_secret).await?;
    Ok(reqwest::Client::new()
        .post(format!("{presale}/api/seed-reveals"))
        .bearer_auth(access)
        .json(&serde_json::json!({ "license_id": license_id, "secret": secret }))
        .send()
        .await?)
}

/// The seed's reveal window and delay in a local deployment: the machine reveals at once,
/// so the window only matters when a test withholds; a few delay steps (well under a
/// second) so that tests and the demo do not wait for the production delay's minutes.
pub const SEED_DELAY: presale::domain::SeedDelay = presale::domain::SeedDelay {
    reveal_secs: 30,
    iterations: 16,
};

/// The commitments a local license of `manufacturer` is issued with: the ministry's and
/// that manufacturer's (the auditor requires both).
pub fn commitments(manufacturer: &str) -> Vec<Commitment> {
    ["ministry", manufacturer]
        .map(|p| contribution(p).commitment())
        .to_vec()
}

/// Reveals the local parties' secrets in every campaign of `store` as soon as its list is
/// frozen; runs until aborted.
pub async fn reveal_when_frozen(store: Store) {
    let mut done: HashSet<(String, String)> = HashSet::new();
    loop {
        if let Ok(licenses) = store.licenses().await {
            for l in licenses {
                let mut parties = contributions();
                parties.push(contribution(&l.manufacturer));
                for c in parties {
                    let key = (l.id.clone(), c.party.clone());
                    if done.contains(&key) {
                        continue;
                    }
                    match store
                        .reveal(&l.id, &c.party, &c.secret, "local:parties")
                        .await
                    {
                        Ok(Revealed::TooEarly) | Err(_) => {}
                        Ok(_) => {
                            done.insert(key);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
