//! Seeds by commit-then-reveal in SQL (tables `seed_parties`, `campaign_seeds`; see
//! [`crate::transparency::seed`] for the scheme).
//!
//! The freeze is written under the lock that orders the list (the queue campaign's row at
//! the opening, the license row at a lottery's close), so every member of the list
//! committed before it and none after. A reveal takes the `campaign_seeds` row's lock: it
//! is refused before the freeze, and the last one derives the seed in its transaction.

use sqlx::Row;

use super::{Store, StoreError};
use crate::transparency::seed::{self, Commitment};
use crate::transparency::{list_root, Event};

/// The answer to a reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revealed {
    /// Accepted; `seeded` when it was the last and the seed now exists.
    Accepted { seeded: bool },
    /// This party had revealed this secret already.
    Already,
    /// The list is not frozen yet: revealing now would let the list be chosen after it.
    TooEarly,
    /// No such party in this campaign.
    UnknownParty,
    /// The secret does not match the party's commitment.
    Mismatch,
}

/// What the public can see of a campaign's seed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedStatus {
    pub parties: Vec<(Commitment, bool)>,
    /// The frozen list: its size and Merkle root.
    pub frozen: Option<(i64, String)>,
    pub seed: Option<String>,
}

impl Store {
    pub(crate) async fn insert_parties(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        parties: &[Commitment],
    ) -> Result<(), StoreError> {
        for p in parties {
            sqlx::query(
                "INSERT INTO seed_parties (license_id, party, commitment) VALUES ($1, $2, $3)",
            )
            .bind(license_id)
            .bind(&p.party)
            .bind(&p.commitment)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Freezes a campaign's list (the holders in list order), logs its root, and derives
    /// the seed at once if every party revealed already (legacy campaigns). Called under the
    /// lock that orders the list; a second call is a no-op.
    pub(crate) async fn freeze_list(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        list: &str,
        holders: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (size, root) = list_root(list, holders.iter().map(String::as_str));
        let inserted = sqlx::query(
            "INSERT INTO campaign_seeds (license_id, list, list_size, list_root, frozen_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (license_id) DO NOTHING",
        )
        .bind(license_id)
        .bind(list)
        .bind(size)
        .bind(&root)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        self.log_event(
            conn,
            license_id,
            &Event::Frozen {
                list: list.to_owned(),
                size,
                root,
                at_ms: now_ms,
            },
        )
        .await?;
        self.seed_if_revealed(conn, license_id).await
    }

    /// Derives and logs the seed once every party has revealed.
    async fn seed_if_revealed(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
    ) -> Result<(), StoreError> {
        let frozen = sqlx::query(
            "SELECT list, list_size, list_root, seed FROM campaign_seeds WHERE license_id = $1",
        )
        .bind(license_id)
        .fetch_one(&mut *conn)
        .await?;
        if frozen.try_get::<Option<String>, _>("seed")?.is_some() {
            return Ok(());
        }
        let rows = sqlx::query("SELECT party, secret FROM seed_parties WHERE license_id = $1")
            .bind(license_id)
            .fetch_all(&mut *conn)
            .await?;
        let mut reveals = Vec::new();
        for r in rows {
            match r.try_get::<Option<String>, _>("secret")? {
                Some(s) => reveals.push((r.try_get("party")?, s)),
                None => return Ok(()),
            }
        }
        let list: String = frozen.try_get("list")?;
        let root: String = frozen.try_get("list_root")?;
        let seed = seed::campaign_seed(
            license_id,
            &list,
            frozen.try_get("list_size")?,
            &root,
            &reveals,
        );
        sqlx::query(&format!(
            "UPDATE campaign_seeds SET seed = $2, seeded_at_ms = {} WHERE license_id = $1",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .bind(&seed)
        .execute(&mut *conn)
        .await?;
        self.log_event(conn, license_id, &Event::Seed { seed })
            .await
    }

    /// A party reveals its secret (after the freeze only). The last reveal derives the seed.
    pub async fn reveal(
        &self,
        license_id: &str,
        party: &str,
        secret: &str,
    ) -> Result<Revealed, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let Some(frozen) = sqlx::query(&format!(
            "UPDATE campaign_seeds SET list_size = list_size WHERE license_id = $1 \
             RETURNING {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Revealed::TooEarly);
        };
        let now_ms: i64 = frozen.try_get("now_ms")?;
        let Some(p) = sqlx::query(
            "SELECT commitment, secret FROM seed_parties WHERE license_id = $1 AND party = $2",
        )
        .bind(license_id)
        .bind(party)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Revealed::UnknownParty);
        };
        let commitment: String = p.try_get("commitment")?;
        if !seed::opens(&commitment, secret) {
            return Ok(Revealed::Mismatch);
        }
        if p.try_get::<Option<String>, _>("secret")?.is_some() {
            return Ok(Revealed::Already);
        }
        sqlx::query(
            "UPDATE seed_parties SET secret = $3, revealed_at_ms = $4 WHERE license_id = $1 AND party = $2",
        )
        .bind(license_id)
        .bind(party)
        .bind(secret)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        self.log_event(
            &mut tx,
            license_id,
            &Event::Reveal {
                party: party.to_owned(),
                secret: secret.to_owned(),
                at_ms: now_ms,
            },
        )
        .await?;
        self.seed_if_revealed(&mut tx, license_id).await?;
        let seeded = self.campaign_seed_in(&mut tx, license_id).await?.is_some();
        tx.commit().await?;
        Ok(Revealed::Accepted { seeded })
    }

    pub(crate) async fn campaign_seed_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT seed FROM campaign_seeds WHERE license_id = $1")
                .bind(license_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<Option<String>, _>("seed"))
                .transpose()?
                .flatten(),
        )
    }

    /// The campaign's seed, once derived.
    pub async fn campaign_seed(&self, license_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.campaign_seed_in(&mut conn, license_id).await
    }

    /// The parties, the frozen list and the seed, as public pages show them.
    pub async fn seed_status(&self, license_id: &str) -> Result<SeedStatus, StoreError> {
        let parties = sqlx::query(
            "SELECT party, commitment, secret FROM seed_parties WHERE license_id = $1 ORDER BY party",
        )
        .bind(license_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                Commitment {
                    party: r.try_get("party")?,
                    commitment: r.try_get("commitment")?,
                },
                r.try_get::<Option<String>, _>("secret")?.is_some(),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
        let frozen = sqlx::query(
            "SELECT list_size, list_root, seed FROM campaign_seeds WHERE license_id = $1",
        )
        .bind(license_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(SeedStatus {
            parties,
            frozen: frozen
                .as_ref()
                .map(|r| Ok::<_, StoreError>((r.try_get("list_size")?, r.try_get("list_root")?)))
                .transpose()?,
            seed: frozen
                .map(|r| r.try_get::<Option<String>, _>("seed"))
                .transpose()?
                .flatten(),
        })
    }
}
