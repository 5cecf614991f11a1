//! The seed's parties, played by the machine in a local deployment.
//!
//! A real campaign's parties (the ministry and the manufacturer, perhaps an observer) each
//! keep a secret from `presale commit` and reveal it by hand after the list is frozen
//! (`POST /transparency/ID/reveal`). Locally nobody is there to do that, so every local
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

/// Sends `manufacturer`'s seed commitment for license number `license_no` through its own
/// channel, as the manufacturer's back-end would: a client_credentials token of its seed
/// client (`{manufacturer}-seed`, with `client_secret`) from the IdP at `issuer` (scope
/// `presale.seed`), then `POST {presale}/api/seed-commitments`.
pub async fn commit_through_idp(
    issuer: &str,
    presale: &str,
    manufacturer: &str,
    client_secret: &str,
    license_no: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .basic_auth(
            format!(
                "{manufacturer}{}",
                presale::store::commitments::SEED_CLIENT_SUFFIX
            ),
            Some(client_secret),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "presale.seed"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let access = token["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access token: {token}"))?;
    let commitment = contribution(manufacturer).commitment().commitment;
    let r = http
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

/// The seed's reveal window and delay in a local deployment: the machine reveals at once,
/// so the window only matters when a test withholds; a few delay steps (well under a
/// second) so that tests and the demo do not wait for the production delay's minutes.
pub const SEED_DELAY: presale::domain::SeedDelay = presale::domain::SeedDelay {
    reveal_secs: 30,
    iterations: 16,
};

/// The commitments a local license is issued with.
pub fn commitments() -> Vec<Commitment> {
    contributions()
        .iter()
        .map(Contribution::commitment)
        .collect()
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
                    match store.reveal(&l.id, &c.party, &c.secret).await {
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
