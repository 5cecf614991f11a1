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
    idp::crypto::b64(&idp::crypto::sha256(seed.as_bytes()))
}

/// Draws `units` winners and the waiting list from `entries` (public entry identifiers).
pub fn draw(
    seed: &str,
    published_commitment: &str,
    entries: &[String],
    units: usize,
) -> Result<Draw, CommitmentMismatch> {
    if !idp::crypto::ct_eq(&commitment(seed), published_commitment) {
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

/// Lottery storage: entries, the draw, ranks.
pub mod store {
    use sqlx::Row;

    use crate::applications::{LicenseRow, Store, StoreError};
    use idp::store::sql::is_unique_violation;

    /// A public entry identifier, as the draw and the published list use it.
    pub fn entry_id(entry_no: i64) -> String {
        format!("E{entry_no:07}")
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Entered {
        New(i64),
        Already(i64),
        Closed,
    }

    impl Store {
        /// Registers a national ID in a lottery (idempotent: the same entry number again).
        pub async fn enter_lottery(
            &self,
            l: &LicenseRow,
            national_id: &str,
            sub: &str,
            now: i64,
        ) -> Result<Entered, StoreError> {
            if let Some(n) = self.entry_of(&l.id, national_id).await? {
                return Ok(Entered::Already(n));
            }
            if now < l.opens_at || now >= l.closes_at || l.status != "active" {
                return Ok(Entered::Closed);
            }
            let mut tx = self.pool().begin().await?;
            let n: i64 = sqlx::query(
                "UPDATE licenses SET entries = entries + 1 WHERE id = $1 RETURNING entries",
            )
            .bind(&l.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("entries")?;
            let inserted = sqlx::query(
                "INSERT INTO lottery_entries (license_id, entry_no, national_id, citizen_sub, entered_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&l.id)
            .bind(n)
            .bind(national_id)
            .bind(sub)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    Ok(Entered::New(n))
                }
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    Ok(self
                        .entry_of(&l.id, national_id)
                        .await?
                        .map(Entered::Already)
                        .unwrap_or(Entered::Closed))
                }
                Err(e) => Err(e.into()),
            }
        }

        pub async fn entry_of(
            &self,
            license_id: &str,
            national_id: &str,
        ) -> Result<Option<i64>, StoreError> {
            Ok(sqlx::query(
                "SELECT entry_no FROM lottery_entries WHERE license_id = $1 AND national_id = $2",
            )
            .bind(license_id)
            .bind(national_id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.try_get("entry_no"))
            .transpose()?)
        }

        /// The published list: entry numbers with masked national IDs, in entry order.
        pub async fn lottery_list(
            &self,
            license_id: &str,
        ) -> Result<Vec<(i64, String)>, StoreError> {
            let rows = sqlx::query("SELECT entry_no, national_id FROM lottery_entries WHERE license_id = $1 ORDER BY entry_no")
                .bind(license_id)
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    let nid: String = r.try_get("national_id")?;
                    let masked = format!("******{}", nid.get(6..).unwrap_or(""));
                    Ok((r.try_get("entry_no")?, masked))
                })
                .collect()
        }

        /// Draws once, after the window closes; a second call (any replica) is a no-op.
        /// Returns the revealed seed when the draw exists.
        pub async fn draw_lottery(
            &self,
            l: &LicenseRow,
            now: i64,
        ) -> Result<Option<String>, StoreError> {
            if let Some(seed) = self.revealed_seed(&l.id).await? {
                return Ok(Some(seed));
            }
            if now < l.closes_at {
                return Ok(None);
            }
            let entries: Vec<String> = self
                .lottery_list(&l.id)
                .await?
                .iter()
                .map(|(n, _)| entry_id(*n))
                .collect();
            let Ok(draw) = super::draw(&l.seed, &l.seed_commitment, &entries, l.units as usize)
            else {
                // The stored seed no longer matches its published commitment: refuse.
                tracing::error!(license = %l.id, "lottery seed does not match its commitment; not drawing");
                return Ok(None);
            };
            let mut tx = self.pool().begin().await?;
            let claimed = sqlx::query(
                "INSERT INTO lottery_draws (license_id, seed, drawn_at) VALUES ($1, $2, $3)",
            )
            .bind(&l.id)
            .bind(&l.seed)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match claimed {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return self.revealed_seed(&l.id).await,
                Err(e) => return Err(e.into()),
            }
            for (rank, e) in draw.order.iter().enumerate() {
                let no: i64 = e.trim_start_matches('E').parse().unwrap_or(0);
                sqlx::query(
                    "INSERT INTO lottery_ranks (license_id, entry_no, rank) VALUES ($1, $2, $3)",
                )
                .bind(&l.id)
                .bind(no)
                .bind(rank as i64 + 1)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(l.seed.clone()))
        }

        pub async fn revealed_seed(&self, license_id: &str) -> Result<Option<String>, StoreError> {
            Ok(
                sqlx::query("SELECT seed FROM lottery_draws WHERE license_id = $1")
                    .bind(license_id)
                    .fetch_optional(self.pool())
                    .await?
                    .map(|r| r.try_get("seed"))
                    .transpose()?,
            )
        }

        /// A national ID's rank in a drawn lottery.
        pub async fn lottery_rank(
            &self,
            license_id: &str,
            national_id: &str,
        ) -> Result<Option<i64>, StoreError> {
            Ok(sqlx::query(
                "SELECT r.rank FROM lottery_ranks r JOIN lottery_entries e \
                 ON e.license_id = r.license_id AND e.entry_no = r.entry_no \
                 WHERE r.license_id = $1 AND e.national_id = $2",
            )
            .bind(license_id)
            .bind(national_id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.try_get("rank"))
            .transpose()?)
        }

        /// Entry numbers in draw order (for the published result).
        pub async fn lottery_order(&self, license_id: &str) -> Result<Vec<i64>, StoreError> {
            let rows = sqlx::query(
                "SELECT entry_no FROM lottery_ranks WHERE license_id = $1 ORDER BY rank",
            )
            .bind(license_id)
            .fetch_all(self.pool())
            .await?;
            rows.iter().map(|r| Ok(r.try_get("entry_no")?)).collect()
        }
    }
}
