//! Randomness no single party controls (commit, then reveal).
//!
//! At issuance each party (the ministry, the manufacturer, optionally an observer)
//! gives the SHA-256 of a secret it keeps to itself; the commitments go into the license
//! record, the first record of the campaign's log. The list the seed will order is frozen
//! (the queue's pre-opening arrivals at the opening, a lottery's entries at the close) and
//! its Merkle root logged; only then are reveals accepted, each checked against its
//! commitment. The seed is SHA-256 over the campaign, the frozen list's size and root and
//! every party's secret. As long as one party kept its secret until the freeze, nobody
//! could know the seed while the list could still change, and anyone can recompute it
//! from the log afterwards.
//!
//! The last to reveal sees every other reveal first. So reveals are due within the
//! license's reveal window after the freeze; a party that has not revealed by then
//! counts as [`WITHHELD`] (a fixed marker), and the seed comes out of a delay function
//! ([`super::vdf`]) over the shares, slower to compute than the window lasts: nobody,
//! the last revealer included, can know the outcome before every reveal was due, so
//! withholding is a blind choice, not a veto. (Campaigns issued before the delay existed
//! keep the old rule: the seed follows the last reveal at once.)

use serde::{Deserialize, Serialize};

/// The ministry's party name in every seed.
pub const MINISTRY: &str = "ministry";

/// A party's published commitment: base64url(SHA-256(secret)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commitment {
    pub party: String,
    pub commitment: String,
}

/// A party's secret contribution, kept by the party until the freeze.
#[derive(Clone)]
pub struct Contribution {
    pub party: String,
    pub secret: String,
}

impl std::fmt::Debug for Contribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Contribution({}, <secret>)", self.party)
    }
}

impl Contribution {
    /// A fresh contribution (`presale commit` prints one).
    pub fn generate(party: &str) -> Self {
        Self {
            party: party.to_owned(),
            secret: crate::keys::random_token(32),
        }
    }

    pub fn commitment(&self) -> Commitment {
        Commitment {
            party: self.party.clone(),
            commitment: commitment_of(&self.secret),
        }
    }
}

pub fn commitment_of(secret: &str) -> String {
    crate::keys::b64(&crate::keys::sha256(secret.as_bytes()))
}

/// Whether `secret` is what `commitment` committed to.
pub fn opens(commitment: &str, secret: &str) -> bool {
    crate::keys::ct_eq(&commitment_of(secret), commitment)
}

/// A party name: lowercase letters, digits and dashes, 1 to 32.
pub fn valid_party(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A secret as a party may reveal it: 16 to 200 printable ASCII characters.
pub fn valid_secret(secret: &str) -> bool {
    (16..=200).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic())
}

/// Parties are distinct and well named, commitments are SHA-256 digests, distinct too,
/// and there are at least two: no single party controls the seed. (One and the same
/// commitment under two names is one secret, so one party: whoever holds it knows the
/// seed alone.)
pub fn valid_parties(parties: &[Commitment]) -> bool {
    let mut names: Vec<&str> = parties.iter().map(|p| p.party.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut commitments: Vec<&str> = parties.iter().map(|p| p.commitment.as_str()).collect();
    commitments.sort_unstable();
    commitments.dedup();
    names.len() == parties.len()
        && commitments.len() == parties.len()
        && parties.len() >= 2
        && parties.iter().all(|p| {
            valid_party(&p.party)
                && crate::keys::b64_decode(&p.commitment).is_some_and(|d| d.len() == 32)
        })
}

/// The seed of a campaign: base64url(SHA-256) over a domain tag, the campaign, the frozen
/// list (its name, size and root) and every party's secret in the order of their names.
pub fn derive(
    license_id: &str,
    list: &str,
    size: i64,
    root: &str,
    reveals: &[(String, String)],
) -> String {
    let mut sorted: Vec<&(String, String)> = reveals.iter().collect();
    sorted.sort();
    let mut text = format!("emta-seed/v1\n{license_id}\n{list}\n{size}\n{root}\n");
    for (party, secret) in sorted {
        text.push_str(&format!("{party}\n{secret}\n"));
    }
    crate::keys::b64(&crate::keys::sha256(text.as_bytes()))
}

/// What stands for a party that did not reveal by the deadline. No secret can be it (a
/// secret has 16 to 200 characters), so a withheld share is never confused with one.
pub const WITHHELD: &str = "-";

/// The delay function's output for a seed, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayProof {
    pub iterations: u64,
    /// base64url of the sloth output (big-endian).
    pub output: String,
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    crate::keys::sha256(data)
}

/// The delay function's input for a campaign with a seed delay: SHA-256 over a domain
/// tag, the campaign, the frozen list and every party's share in the order of their
/// names, [`WITHHELD`] for a party that did not reveal in time.
pub fn delay_input(
    license_id: &str,
    list: &str,
    size: i64,
    root: &str,
    shares: &[(String, String)],
) -> [u8; 32] {
    let mut sorted: Vec<&(String, String)> = shares.iter().collect();
    sorted.sort();
    let mut text = format!("emta-seed/v2\n{license_id}\n{list}\n{size}\n{root}\n");
    for (party, secret) in sorted {
        text.push_str(&format!("{party}\n{secret}\n"));
    }
    sha256(text.as_bytes())
}

/// The seed from the delay function's output.
pub fn seed_of_delay(output: &[u8]) -> String {
    let mut text = b"emta-seed/v2/out\n".to_vec();
    text.extend_from_slice(output);
    crate::keys::b64(&sha256(&text))
}

/// A delayed seed computed in full (slow: minutes by design; a blocking thread).
pub fn delayed_seed(
    license_id: &str,
    list: &str,
    size: i64,
    root: &str,
    shares: &[(String, String)],
    iterations: u64,
) -> (String, DelayProof) {
    let input = delay_input(license_id, list, size, root, shares);
    let output = super::vdf::delay(&input, iterations);
    (
        seed_of_delay(&output),
        DelayProof {
            iterations,
            output: crate::keys::b64(&output),
        },
    )
}

/// Checks a delayed seed against its shares and proof (fast: squarings).
pub fn check_delayed_seed(
    license_id: &str,
    list: &str,
    size: i64,
    root: &str,
    shares: &[(String, String)],
    proof: &DelayProof,
    seed: &str,
) -> bool {
    let input = delay_input(license_id, list, size, root, shares);
    let Some(output) = crate::keys::b64_decode(&proof.output) else {
        return false;
    };
    super::vdf::check(&input, proof.iterations, &output) && seed_of_delay(&output) == seed
}

/// The party name of a seed generated at issuance before commit-reveal existed.
pub const LEGACY: &str = "legacy";

/// A campaign's seed from its frozen list and every reveal: [`derive`], except that a
/// campaign issued before commit-reveal has one `legacy` party whose secret was its seed.
pub fn campaign_seed(
    license_id: &str,
    list: &str,
    size: i64,
    root: &str,
    reveals: &[(String, String)],
) -> String {
    match reveals {
        [(party, secret)] if party == LEGACY => secret.clone(),
        _ => derive(license_id, list, size, root, reveals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_party_alone_cannot_license_a_seed() {
        let a = Contribution::generate("ministry");
        let b = Contribution::generate("saipa");
        assert!(valid_parties(&[a.commitment(), b.commitment()]));
        assert!(!valid_parties(&[a.commitment()]));
        assert!(!valid_parties(&[a.commitment(), a.commitment()]));
        let mut bad = b.commitment();
        bad.commitment = "not a digest".into();
        assert!(!valid_parties(&[a.commitment(), bad]));
    }

    #[test]
    fn every_input_moves_the_seed_and_order_of_reveals_does_not() {
        let r = |s: &str| vec![("a".to_owned(), s.to_owned()), ("b".to_owned(), "y".into())];
        let base = derive("l", "arrival", 3, "root", &r("x"));
        let mut swapped = r("x");
        swapped.reverse();
        assert_eq!(base, derive("l", "arrival", 3, "root", &swapped));
        assert_ne!(base, derive("l", "arrival", 3, "root", &r("z")));
        assert_ne!(base, derive("l", "arrival", 4, "root", &r("x")));
        assert_ne!(base, derive("l", "arrival", 3, "other", &r("x")));
        assert_ne!(base, derive("m", "arrival", 3, "root", &r("x")));
    }

    #[test]
    fn a_reveal_opens_only_its_commitment() {
        let c = Contribution::generate("ministry");
        assert!(opens(&c.commitment().commitment, &c.secret));
        assert!(!opens(&c.commitment().commitment, "another secret value"));
        assert_eq!(format!("{c:?}"), "Contribution(ministry, <secret>)");
    }
}
