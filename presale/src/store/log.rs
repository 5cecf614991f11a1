//! The campaigns' transparency logs in SQL (migration 0006).
//!
//! An event is appended to `log_pending` inside the transaction of what it records, so it
//! exists exactly when its action committed. The sequencer ([`Store::sequence_log`], run by
//! the admitter on a replica that holds the log's key, one at a time per campaign under
//! `log_state`'s row lock)
//! takes what is pending, gives it the next indices, stores the records and the tree's
//! hashes (tlog's stored-hash layout: about two per record) and signs a checkpoint. Records,
//! hashes and checkpoints are insert-only (triggers refuse the rest); a change made anyway
//! by someone with the database shows as a root that no longer matches a checkpoint anyone
//! kept.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use tlog_tiles::tlog::{self, Hash};

use super::{Store, StoreError};
use crate::transparency::{hash_text, parse_hash, with_hashes, witness, Event, LogKey, Receipt};

/// Records sequenced in one transaction at most.
const SEQUENCE_BATCH: i64 = 20_000;

/// Records served per page.
pub const PAGE: u64 = 10_000;

impl Store {
    /// Appends an event to a campaign's log, in the caller's transaction.
    pub(crate) async fn log_event(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.log_events(conn, license_id, std::slice::from_ref(event))
            .await
    }

    /// Appends many events to a campaign's log, in the caller's transaction.
    pub(crate) async fn log_events(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
        events: &[Event],
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(super::CHUNK) {
            let sql = format!(
                "INSERT INTO log_pending (license_id, body, ref) VALUES {}",
                super::values(chunk.len(), 3, 1)
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query.bind(license_id).bind(e.line()).bind(e.holder());
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Creates a campaign's log (in the issuing transaction).
    pub(crate) async fn create_log(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO log_state (license_id) VALUES ($1)")
            .bind(license_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The campaigns with records waiting to be sequenced: one statement for every
    /// campaign ever licensed (an index probe each), not one round trip per campaign.
    pub async fn logs_pending(&self) -> Result<HashSet<String>, StoreError> {
        sqlx::query(
            "SELECT s.license_id FROM log_state s \
             WHERE EXISTS (SELECT 1 FROM log_pending p WHERE p.license_id = s.license_id)",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("license_id")?))
        .collect()
    }

    /// Sequences what is pending in a campaign's log and signs the new tree. Returns the
    /// tree's size after.
    pub async fn sequence_log(&self, license_id: &str, key: &LogKey) -> Result<u64, StoreError> {
        self.sequence_log_if(license_id, key, false).await
    }

    /// As [`Store::sequence_log`]; `seen_pending` when the caller has just seen records
    /// pending in this log ([`Store::logs_pending`]): the campaign's own look is spared.
    pub async fn sequence_log_if(
        &self,
        license_id: &str,
        key: &LogKey,
        seen_pending: bool,
    ) -> Result<u64, StoreError> {
        // Nothing pending (most ticks of most campaigns): no lock, no write transaction.
        let waiting = seen_pending
            || sqlx::query("SELECT id FROM log_pending WHERE license_id = $1 LIMIT 1")
                .bind(license_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some();
        if !waiting {
            return Ok(
                sqlx::query("SELECT size FROM log_state WHERE license_id = $1")
                    .bind(license_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get::<i64, _>("size"))
                    .transpose()?
                    .unwrap_or(0) as u64,
            );
        }
        let mut tx = service_kit::sql::begin(&self.pool).await?;
        self.bound_admitter_tx(&mut tx).await?;
        let Some(row) = sqlx::query(&format!(
            "UPDATE log_state SET size = size WHERE license_id = $1 RETURNING size, {} AS now_ms",
            self.now_ms_sql()
        ))
        .bind(license_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(0);
        };
        let size = row.try_get::<i64, _>("size")? as u64;
        let now_ms: i64 = row.try_get("now_ms")?;
        let pending = sqlx::query(
            "SELECT id, body, ref FROM log_pending WHERE license_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(license_id)
        .bind(SEQUENCE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if pending.is_empty() {
            return Ok(size);
        }
        let mut ids = Vec::with_capacity(pending.len());
        let mut records: Vec<(String, Option<String>)> = Vec::with_capacity(pending.len());
        for r in &pending {
            ids.push(r.try_get::<i64, _>("id")?);
            records.push((r.try_get("body")?, r.try_get("ref")?));
        }
        // The new records' stored hashes, reading the old tree's right edge from SQL once:
        // `known` keeps what was read and what was computed.
        let mut known: HashMap<u64, Hash> = HashMap::new();
        for (i, (body, _)) in records.iter().enumerate() {
            let n = size + i as u64;
            let hashes = with_hashes(
                &mut known,
                |idx| self.read_hashes(license_id, idx),
                |r| tlog::stored_hashes(n, body.as_bytes(), r),
            )
            .await?
            .map_err(|e| StoreError::Corrupt(format!("log {license_id}: {e:?}")))?;
            let first = tlog::stored_hash_count(n);
            for (k, h) in hashes.into_iter().enumerate() {
                known.insert(first + k as u64, h);
            }
        }
        let new_size = size + records.len() as u64;
        let root = with_hashes(
            &mut known,
            |idx| self.read_hashes(license_id, idx),
            |r| tlog::tree_hash(new_size, r),
        )
        .await?
        .map_err(|e| StoreError::Corrupt(format!("log {license_id}: {e:?}")))?;
        for (chunk_no, chunk) in records.chunks(super::CHUNK).enumerate() {
            let sql = format!(
                "INSERT INTO log_records (license_id, idx, body, ref) VALUES {}",
                super::values(chunk.len(), 4, 1)
            );
            let mut query = sqlx::query(&sql);
            for (k, (body, reference)) in chunk.iter().enumerate() {
                let idx = size + (chunk_no * super::CHUNK + k) as u64;
                query = query
                    .bind(license_id)
                    .bind(idx as i64)
                    .bind(body)
                    .bind(reference);
            }
            query.execute(&mut *tx).await?;
        }
        // Only the new ones: those from the old tree are stored already.
        let old_count = tlog::stored_hash_count(size);
        let mut hashes: Vec<(u64, Hash)> =
            known.into_iter().filter(|(i, _)| *i >= old_count).collect();
        hashes.sort_unstable_by_key(|(i, _)| *i);
        for chunk in hashes.chunks(super::CHUNK) {
            let sql = format!(
                "INSERT INTO log_hashes (license_id, idx, hash) VALUES {}",
                super::values(chunk.len(), 3, 1)
            );
            let mut query = sqlx::query(&sql);
            for (i, h) in chunk {
                query = query.bind(license_id).bind(*i as i64).bind(hash_text(h));
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in ids.chunks(super::CHUNK) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 1)).collect();
            let sql = format!("DELETE FROM log_pending WHERE id IN ({})", marks.join(", "));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE log_state SET size = $2 WHERE license_id = $1")
            .bind(license_id)
            .bind(new_size as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO log_heads (license_id, size, note, at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(license_id)
        .bind(new_size as i64)
        .bind(key.sign(license_id, new_size, root, now_ms))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new_size)
    }

    async fn read_hashes(
        &self,
        license_id: &str,
        indexes: Vec<u64>,
    ) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut out = HashMap::new();
        for chunk in indexes.chunks(super::CHUNK) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT idx, hash FROM log_hashes WHERE license_id = $1 AND idx IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(license_id);
            for i in chunk {
                query = query.bind(*i as i64);
            }
            for r in query.fetch_all(&self.pool).await? {
                let idx: i64 = r.try_get("idx")?;
                let text: String = r.try_get("hash")?;
                let h = parse_hash(&text).ok_or_else(|| {
                    StoreError::Corrupt(format!("log {license_id}: hash {idx} is not a hash"))
                })?;
                out.insert(idx as u64, h);
            }
        }
        Ok(out)
    }

    /// The latest signed checkpoint of a campaign's log, with the witnesses' cosignatures
    /// it has.
    pub async fn log_checkpoint(&self, license_id: &str) -> Result<Option<String>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT size, note FROM log_heads WHERE license_id = $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(license_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let size: i64 = row.try_get("size")?;
        let note: String = row.try_get("note")?;
        let mut cosigned = self.cosignatures(license_id, Some(size)).await?;
        Ok(Some(witness::with_signatures(
            &note,
            &cosigned.remove(&size).unwrap_or_default(),
        )))
    }

    /// Every signed checkpoint of a campaign's log, oldest first, each with the
    /// witnesses' cosignatures it has.
    pub async fn log_checkpoints(&self, license_id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT size, note FROM log_heads WHERE license_id = $1 ORDER BY size")
                .bind(license_id)
                .fetch_all(&self.pool)
                .await?;
        let mut cosigned = self.cosignatures(license_id, None).await?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get("size")?;
                let note: String = r.try_get("note")?;
                Ok(witness::with_signatures(
                    &note,
                    &cosigned.remove(&size).unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// The witnesses' signature lines per checkpoint size (one size, or all).
    async fn cosignatures(
        &self,
        license_id: &str,
        size: Option<i64>,
    ) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let rows = sqlx::query(
            "SELECT size, signature FROM log_cosignatures \
             WHERE license_id = $1 AND ($2 < 0 OR size = $2) ORDER BY size, witness",
        )
        .bind(license_id)
        .bind(size.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for r in rows {
            out.entry(r.try_get("size")?)
                .or_default()
                .push(r.try_get("signature")?);
        }
        Ok(out)
    }

    /// Keeps the signature lines of `witnesses` (verifier keys) that `note` carries, if
    /// its text is this log's own checkpoint at that size. Returns how many witnesses'
    /// signatures were kept; `None` when the note is not one of this log's checkpoints.
    pub async fn add_cosignatures(
        &self,
        license_id: &str,
        note: &str,
        witnesses: &[String],
        now_ms: i64,
    ) -> Result<Option<usize>, StoreError> {
        let Some(text) = witness::note_text(note) else {
            return Ok(None);
        };
        let Ok(checkpoint) = tlog_tiles::checkpoint::Checkpoint::from_bytes(text.as_bytes()) else {
            return Ok(None);
        };
        let Some(own) =
            sqlx::query("SELECT note FROM log_heads WHERE license_id = $1 AND size = $2")
                .bind(license_id)
                .bind(checkpoint.size() as i64)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let own: String = own.try_get("note")?;
        if witness::note_text(&own).as_deref() != Some(text.as_str()) {
            return Ok(None);
        }
        let mut kept = 0;
        for key in witnesses {
            for line in witness::signatures_of(note, std::slice::from_ref(key)) {
                let name = key.split('+').take(2).collect::<Vec<_>>().join("+");
                let inserted = sqlx::query(
                    "INSERT INTO log_cosignatures (license_id, size, witness, signature, at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(license_id)
                .bind(checkpoint.size() as i64)
                .bind(&name)
                .bind(&line)
                .bind(now_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
                // Kept is what is served: a line already stored counts only if it is
                // this one (a row put there by other hands keeps the witness's out).
                let stored = inserted == 1
                    || sqlx::query(
                        "SELECT signature FROM log_cosignatures \
                         WHERE license_id = $1 AND size = $2 AND witness = $3",
                    )
                    .bind(license_id)
                    .bind(checkpoint.size() as i64)
                    .bind(&name)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get::<String, _>("signature"))
                    .transpose()?
                    .is_some_and(|s| s == line);
                if stored {
                    kept += 1;
                }
            }
        }
        Ok(Some(kept))
    }

    /// Records `start..end` (at most [`PAGE`]).
    pub async fn log_records(
        &self,
        license_id: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<String>, StoreError> {
        let end = end.min(start + PAGE);
        let rows = sqlx::query(
            "SELECT body FROM log_records WHERE license_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
        )
        .bind(license_id)
        .bind(start as i64)
        .bind(end as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("body")?)).collect()
    }

    /// The proof that record `index` is in the tree of `size` records.
    pub async fn log_inclusion(
        &self,
        license_id: &str,
        size: u64,
        index: u64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let proof = with_hashes(
            &mut HashMap::new(),
            |idx| self.read_hashes(license_id, idx),
            |r| tlog::prove_record(size, index, r),
        )
        .await?;
        Ok(proof.ok().map(|p| p.iter().map(hash_text).collect()))
    }

    /// The proof that the tree of `old` records is a prefix of the tree of `new`.
    pub async fn log_consistency(
        &self,
        license_id: &str,
        new: u64,
        old: u64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let proof = with_hashes(
            &mut HashMap::new(),
            |idx| self.read_hashes(license_id, idx),
            |r| tlog::prove_tree(new, old, r),
        )
        .await?;
        Ok(proof.ok().map(|p| p.iter().map(hash_text).collect()))
    }

    /// Receipts for every sequenced record about `holder`, against the latest checkpoint.
    pub async fn receipts(
        &self,
        license_id: &str,
        holder: &str,
        verifier_key: &str,
    ) -> Result<Vec<Receipt>, StoreError> {
        let Some(note) = self.log_checkpoint(license_id).await? else {
            return Ok(Vec::new());
        };
        let Ok(head) = crate::transparency::open_checkpoint(&note, verifier_key, license_id) else {
            return Err(StoreError::Corrupt(format!(
                "log {license_id}: the latest checkpoint does not verify"
            )));
        };
        let rows = sqlx::query(
            "SELECT idx, body FROM log_records WHERE license_id = $1 AND ref = $2 AND idx < $3 ORDER BY idx",
        )
        .bind(license_id)
        .bind(holder)
        .bind(head.size as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let index = r.try_get::<i64, _>("idx")? as u64;
            let Some(proof) = self.log_inclusion(license_id, head.size, index).await? else {
                continue;
            };
            out.push(Receipt {
                campaign: license_id.to_owned(),
                index,
                record: r.try_get("body")?,
                proof,
                checkpoint: note.clone(),
            });
        }
        Ok(out)
    }

    /// The most recently signed checkpoint of any campaign, and its campaign.
    pub async fn latest_log_head(&self) -> Result<Option<(String, String)>, StoreError> {
        sqlx::query("SELECT license_id, note FROM log_heads ORDER BY at_ms DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok((r.try_get("license_id")?, r.try_get("note")?)))
            .transpose()
    }

    /// The first signed checkpoint whose tree holds record `index`.
    pub async fn log_checkpoint_past(
        &self,
        license_id: &str,
        index: u64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT note FROM log_heads WHERE license_id = $1 AND size > $2 ORDER BY size LIMIT 1",
        )
        .bind(license_id)
        .bind(index as i64)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get("note"))
        .transpose()?)
    }

    /// Where `record` is in a campaign's sequenced log, if it is.
    pub async fn log_index_of(
        &self,
        license_id: &str,
        record: &str,
    ) -> Result<Option<u64>, StoreError> {
        let holder =
            crate::transparency::Event::parse(record).and_then(|e| e.holder().map(str::to_owned));
        let rows = sqlx::query(
            "SELECT idx, body FROM log_records WHERE license_id = $1 AND ref = $2 ORDER BY idx",
        )
        .bind(license_id)
        .bind(holder.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            if r.try_get::<String, _>("body")? == record {
                return Ok(Some(r.try_get::<i64, _>("idx")? as u64));
            }
        }
        Ok(None)
    }

    /// Events not yet sequenced, per campaign (the operators' journal lag).
    pub async fn log_pending(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM log_pending")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }
}
