//! Lotteries: registration during the window, then a draw of exactly `units` winners and an
//! ordered waiting list, from a seed committed before the window opens (its SHA-256 is
//! published with the license) and revealed after it closes.
//!
//! The draw is a pure function of the revealed seed and the published list of entries:
//! each entry's rank is SHA-256(seed ":" entry), ascending. Anyone can recompute it, and a
//! seed that does not match the commitment is refused, so the seed cannot be changed after
//! the entries are known.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// Entries in draw order: the first `units` win, the rest are the waiting list.
    pub order: Vec<String>,
    pub units: usize,
}

impl Draw {
    pub fn winners(&self) -> &[String] {
        &self.order[..self.units.min(self.order.len())]
    }

    pub fn waiting_list(&self) -> &[String] {
        &self.order[self.units.min(self.order.len())..]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the revealed seed does not match the published commitment")]
pub struct CommitmentMismatch;

/// The published commitment of a seed: base64url(SHA-256(seed)).
pub fn commitment(seed: &str) -> String {
    service_kit::keys::b64(&service_kit::keys::sha256(seed.as_bytes()))
}

/// Draws `units` winners and the waiting list from `entries` (public entry identifiers).
pub fn draw(
    seed: &str,
    published_commitment: &str,
    entries: &[String],
    units: usize,
) -> Result<Draw, CommitmentMismatch> {
    if !service_kit::keys::ct_eq(&commitment(seed), published_commitment) {
        return Err(CommitmentMismatch);
    }
    let mut ranked: Vec<([u8; 32], &String)> = entries
        .iter()
        .map(|e| {
            let mut h = Sha256::new();
            h.update(seed.as_bytes());
            h.update(b":");
            h.update(e.as_bytes());
            (h.finalize().into(), e)
        })
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    Ok(Draw {
        order: ranked.into_iter().map(|(_, e)| e.clone()).collect(),
        units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("E{i:06}")).collect()
    }

    #[test]
    fn the_draw_is_reproducible_from_the_seed_and_the_list() {
        let seed = "revealed-seed";
        let c = commitment(seed);
        let a = draw(seed, &c, &entries(500), 40).expect("draw");
        let mut shuffled = entries(500);
        shuffled.reverse();
        let b = draw(seed, &c, &shuffled, 40).expect("draw");
        assert_eq!(a, b, "the order of the published list does not matter");
        assert_eq!(a.winners().len(), 40);
        assert_eq!(a.waiting_list().len(), 460);
    }

    #[test]
    fn changing_the_seed_after_commitment_is_detected() {
        let c = commitment("the seed");
        assert_eq!(
            draw("another seed", &c, &entries(10), 3),
            Err(CommitmentMismatch)
        );
    }

    #[test]
    fn fewer_entries_than_units_all_win() {
        let c = commitment("s");
        let d = draw("s", &c, &entries(3), 10).expect("draw");
        assert_eq!(d.winners().len(), 3);
        assert!(d.waiting_list().is_empty());
    }

    #[test]
    fn every_entry_is_equally_likely_to_win() {
        // 20 entries, 5 units, 4000 seeds: each entry expects 1000 wins (chi-square, 19 dof,
        // critical value at p = 0.001 is 43.82).
        let list = entries(20);
        let mut wins = [0u32; 20];
        for s in 0..4000 {
            let seed = format!("seed-{s}");
            let d = draw(&seed, &commitment(&seed), &list, 5).expect("draw");
            for w in d.winners() {
                if let Some(i) = list.iter().position(|e| e == w) {
                    wins[i] += 1;
                }
            }
        }
        let chi2: f64 = wins
            .iter()
            .map(|&o| (o as f64 - 1000.0).powi(2) / 1000.0)
            .sum();
        assert!(chi2 < 43.82, "chi-square {chi2:.2}");
    }
}
