//! Seeds by commit-then-reveal in SQL (tables `seed_parties`, `campaign_seeds`; see
//! [`crate::transparency::seed`] for the scheme).
//!
//! The freeze is written under the lock that orders the list (the queue campaign's row at
//! the opening, the license row at a lottery's close), so every member of the list
//! committed before it and none after. A reveal takes the `campaign_seeds` row's lock: it
//! is refused before the freeze, and the last one derives the seed in its transaction.

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::SeedDelay;
use crate::transparency::seed::{self, Commitment};
use crate::transparency::{list_root, Event};

/// The answer to a reveal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revealed {
    /// Accepted; `seeded` when it was the last and the seed now exists.
    Accepted { seeded: bool },
    /// This party had revealed this secret already.
    Already,
    /// The reveal window closed: this party's share is the withheld marker for good.
    TooLate,
    /// The list is not frozen yet: revealing now would let the list be chosen after it.
    TooEarly,
    /// No such party in this campaign.
    UnknownParty,
    /// The secret does not match the party's commitment.
    Mismatch,
}

/// A delayed seed's inputs, as far as they are known.
enum Shares {
    Settled(String),
    Final {
        list: String,
        size: i64,
        root: String,
        shares: Vec<(String, String)>,
    },
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
        if self.seed_delay_in(conn, license_id).await?.is_none() {
            self.seed_if_revealed(conn, license_id).await?;
        }
        Ok(())
    }

    /// A campaign's seed delay (None: issued before it existed).
    pub(crate) async fn seed_delay_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
    ) -> Result<Option<SeedDelay>, StoreError> {
        let row =
            sqlx::query("SELECT seed_reveal_secs, seed_iterations FROM licenses WHERE id = $1")
                .bind(license_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(
            match (
                row.try_get::<Option<i64>, _>("seed_reveal_secs")?,
                row.try_get::<Option<i64>, _>("seed_iterations")?,
            ) {
                (Some(reveal_secs), Some(iterations)) => Some(SeedDelay {
                    reveal_secs,
                    iterations: iterations.max(0) as u64,
                }),
                _ => None,
            },
        )
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
        self.log_event(conn, license_id, &Event::Seed { seed, delay: None })
            .await
    }

    /// A party reveals its secret (after the freeze only), through the channel that makes it
    /// that party (`by`: the member of staff, the manufacturer's seed client or the observer,
    /// checked by the caller), audited. The last reveal derives an undelayed seed.
    pub async fn reveal(
        &self,
        license_id: &str,
        party: &str,
        secret: &str,
        by: &str,
    ) -> Result<Revealed, StoreError> {
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let Some(frozen) = sqlx::query(&format!(
            "UPDATE campaign_seeds SET list_size = list_size WHERE license_id = $1 \
             RETURNING frozen_at_ms, seed, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Revealed::TooEarly);
        };
        let now_ms: i64 = frozen.try_get("now_ms")?;
        let delay = self.seed_delay_in(&mut tx, license_id).await?;
        if let Some(d) = delay {
            // Due within the window after the freeze (on the database's clock, under the
            // row the seed is settled under), and never once the seed exists.
            let due = frozen.try_get::<i64, _>("frozen_at_ms")? + d.reveal_secs * 1000;
            if now_ms > due || frozen.try_get::<Option<String>, _>("seed")?.is_some() {
                return Ok(Revealed::TooLate);
            }
        }
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
        let detail = format!("{party} revealed");
        let entry = super::audit::Entry {
            at: now_ms / 1000,
            actor: by,
            action: "seed.reveal",
            subject: license_id,
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
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
        if delay.is_none() {
            self.seed_if_revealed(&mut tx, license_id).await?;
        }
        let seeded = self.campaign_seed_in(&mut tx, license_id).await?.is_some();
        tx.commit().await?;
        Ok(Revealed::Accepted { seeded })
    }

    /// Campaigns whose seed is waiting for its delay: frozen, not seeded, with a delay.
    pub async fn unsettled_seeds(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.license_id FROM campaign_seeds s JOIN licenses l ON l.id = s.license_id \
             WHERE s.seed IS NULL AND l.seed_iterations IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("license_id")?)).collect()
    }

    /// Settles a delayed seed once its shares are final (every party revealed, or the
    /// window closed: the missing ones count as [`seed::WITHHELD`]): computes the delay
    /// function on a blocking thread (minutes, by design; outside any transaction), then
    /// writes the seed under the campaign's seed row, logging each withheld party and the
    /// seed with the delay's output. Any replica may run it; the first write stands, and a
    /// share that changed meanwhile (a reveal that committed just before the deadline)
    /// makes the result be thrown away and computed again. The seed, once settled.
    pub async fn settle_seed(&self, license_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(delay) = self.seed_delay_in(&mut conn, license_id).await? else {
            return self.campaign_seed_in(&mut conn, license_id).await;
        };
        let Some(shares) = self.final_shares(&mut conn, license_id, delay).await? else {
            return Ok(None);
        };
        if let Shares::Settled(seed) = shares {
            return Ok(Some(seed));
        }
        let Shares::Final {
            list,
            size,
            root,
            shares,
        } = shares
        else {
            return Ok(None);
        };
        drop(conn);
        let (id, l, r, sh) = (
            license_id.to_owned(),
            list.clone(),
            root.clone(),
            shares.clone(),
        );
        let (seed, proof) = tokio::task::spawn_blocking(move || {
            seed::delayed_seed(&id, &l, size, &r, &sh, delay.iterations)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("the seed's delay: {e}")))?;
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        let row = sqlx::query(&format!(
            "UPDATE campaign_seeds SET list_size = list_size WHERE license_id = $1 \
             RETURNING seed, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(settled) = row.try_get::<Option<String>, _>("seed")? {
            return Ok(Some(settled));
        }
        let now_ms: i64 = row.try_get("now_ms")?;
        match self.final_shares(&mut tx, license_id, delay).await? {
            Some(Shares::Final { shares: now, .. }) if now == shares => {}
            _ => return Ok(None),
        }
        for (party, share) in &shares {
            if share == seed::WITHHELD {
                let event = Event::Withheld {
                    party: party.clone(),
                    at_ms: now_ms,
                };
                self.log_event(&mut tx, license_id, &event).await?;
            }
        }
        sqlx::query("UPDATE campaign_seeds SET seed = $2, seeded_at_ms = $3 WHERE license_id = $1")
            .bind(license_id)
            .bind(&seed)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let event = Event::Seed {
            seed: seed.clone(),
            delay: Some(proof),
        };
        self.log_event(&mut tx, license_id, &event).await?;
        tx.commit().await?;
        Ok(Some(seed))
    }

    /// The shares of a delayed seed, if final: every party's secret, or the withheld
    /// marker for those that had not revealed when the window closed.
    async fn final_shares(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        delay: SeedDelay,
    ) -> Result<Option<Shares>, StoreError> {
        let Some(frozen) = sqlx::query(&format!(
            "SELECT list, list_size, list_root, frozen_at_ms, seed, {} AS now_ms \
             FROM campaign_seeds WHERE license_id = $1",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        if let Some(seed) = frozen.try_get::<Option<String>, _>("seed")? {
            return Ok(Some(Shares::Settled(seed)));
        }
        let closed = frozen.try_get::<i64, _>("now_ms")?
            > frozen.try_get::<i64, _>("frozen_at_ms")? + delay.reveal_secs * 1000;
        let rows = sqlx::query("SELECT party, secret FROM seed_parties WHERE license_id = $1")
            .bind(license_id)
            .fetch_all(&mut *conn)
            .await?;
        let mut shares = Vec::with_capacity(rows.len());
        for r in rows {
            let party: String = r.try_get("party")?;
            match r.try_get::<Option<String>, _>("secret")? {
                Some(secret) => shares.push((party, secret)),
                None if closed => shares.push((party, seed::WITHHELD.to_owned())),
                None => return Ok(None),
            }
        }
        shares.sort();
        Ok(Some(Shares::Final {
            list: frozen.try_get("list")?,
            size: frozen.try_get("list_size")?,
            root: frozen.try_get("list_root")?,
            shares,
        }))
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
