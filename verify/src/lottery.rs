//! Lotteries: registration during the window, then a draw of exactly `units` winners and an
//! ordered waiting list, from a seed that exists only after the entries are frozen (see
//! [`crate::seed`]: every party's secret, committed at issuance and revealed
//! after the close, with the frozen list's root).
//!
//! The draw is a pure function of the seed and the published list of entries: each
//! entry's rank is SHA-256(seed ":" entry), ascending. Anyone can recompute it.

use sha2::{Digest, Sha256};

/// An entry's public identifier: `E` and its number, seven digits.
pub fn entry_id(entry_no: i64) -> String {
    format!("E{entry_no:07}")
}

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

/// Draws `units` winners and the waiting list from `entries` (public entry identifiers).
pub fn draw(seed: &str, entries: &[String], units: usize) -> Draw {
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
    Draw {
        order: ranked.into_iter().map(|(_, e)| e.clone()).collect(),
        units,
    }
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
        let a = draw(seed, &entries(500), 40);
        let mut shuffled = entries(500);
        shuffled.reverse();
        let b = draw(seed, &shuffled, 40);
        assert_eq!(a, b, "the order of the published list does not matter");
        assert_eq!(a.winners().len(), 40);
        assert_eq!(a.waiting_list().len(), 460);
    }

    #[test]
    fn fewer_entries_than_units_all_win() {
        let d = draw("s", &entries(3), 10);
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
            let d = draw(&seed, &list, 5);
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
