//! Lottery entries, the draw and its public list in SQL.
use sqlx::Row;

use service_kit::sql::is_unique_violation;

use super::{Store, StoreError};
use crate::domain::{License, NationalId};

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
        l: &License,
        national_id: &NationalId,
        sub: &str,
        now: i64,
    ) -> Result<Entered, StoreError> {
        if let Some(n) = self.entry_of(&l.id, national_id).await? {
            return Ok(Entered::Already(n));
        }
        if now < l.opens_at || now >= l.closes_at || !l.is_active() {
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
        .bind(national_id.as_str())
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
        national_id: &NationalId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT entry_no FROM lottery_entries WHERE license_id = $1 AND national_id = $2",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.try_get("entry_no"))
        .transpose()?)
    }

    /// The published list: entry numbers with masked national IDs, in entry order.
    pub async fn lottery_list(&self, license_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
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
    pub async fn draw_lottery(&self, l: &License, now: i64) -> Result<Option<String>, StoreError> {
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
        let Ok(draw) =
            crate::domain::lottery::draw(&l.seed, &l.seed_commitment, &entries, l.units as usize)
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
        national_id: &NationalId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query(
            "SELECT r.rank FROM lottery_ranks r JOIN lottery_entries e \
             ON e.license_id = r.license_id AND e.entry_no = r.entry_no \
             WHERE r.license_id = $1 AND e.national_id = $2",
        )
        .bind(license_id)
        .bind(national_id.as_str())
        .fetch_optional(self.pool())
        .await?
        .map(|r| r.try_get("rank"))
        .transpose()?)
    }

    /// Entry numbers in draw order (for the published result).
    pub async fn lottery_order(&self, license_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows =
            sqlx::query("SELECT entry_no FROM lottery_ranks WHERE license_id = $1 ORDER BY rank")
                .bind(license_id)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(|r| Ok(r.try_get("entry_no")?)).collect()
    }
}
