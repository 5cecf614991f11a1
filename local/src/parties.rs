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
    ["ministry", "manufacturer"]
        .map(|party| Contribution {
            party: party.to_owned(),
            secret: format!("local-demo-secret-of-the-{party}"),
        })
        .to_vec()
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
                for c in contributions() {
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
