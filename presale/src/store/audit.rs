//! The staff audit log as a hash chain.
//!
//! Entry `seq` stores `SHA-256(prev_hash, seq, at, actor, action, subject, detail)`; entries
//! are appended under `audit_head`'s row lock, **in the transaction of the action they
//! record** (an action whose entry cannot be written does not happen). An entry about a
//! license is also anchored in that campaign's public transparency log (its sequence number
//! and hash, no names), so the chain up to any anchor is pinned by the signed, append-only
//! log: rewriting it, even consistently and with the database owner's rights, disagrees
//! with a record that thousands of auditors may have kept.

use sqlx::Row;

use super::{Store, StoreError};
use crate::transparency::Event;

/// One entry to append.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub at: i64,
    /// The staff member (their username), `cli:<name>`, or `anonymous` for a failed login.
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: &'a str,
    /// The campaign whose transparency log anchors this entry, if any.
    pub anchor: Option<&'a str>,
}

/// One stored entry, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `None` for entries written before the chain existed.
    pub seq: Option<i64>,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The chain's hash of one entry.
pub fn chain_hash(prev: &str, seq: i64, e: &Entry<'_>) -> String {
    let fields = serde_json::json!([prev, seq, e.at, e.actor, e.action, e.subject, e.detail]);
    service_kit::keys::b64(&service_kit::keys::sha256(
        format!("emta-audit-v1\n{fields}").as_bytes(),
    ))
}

/// What checking the chain found.
#[derive(Debug, Default, Clone)]
pub struct ChainCheck {
    /// Chained entries checked.
    pub entries: u64,
    /// Anchors in campaigns' transparency logs that matched.
    pub anchors: u64,
    pub findings: Vec<String>,
}

impl ChainCheck {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<Stored, StoreError> {
    Ok(Stored {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        detail: r.try_get("detail")?,
        prev_hash: r
            .try_get::<Option<String>, _>("prev_hash")?
            .unwrap_or_default(),
        hash: r.try_get::<Option<String>, _>("hash")?.unwrap_or_default(),
    })
}

impl Store {
    /// Takes the audit chain's lock in the caller's transaction: every staff action (and
    /// every recorded delivery stage) takes it first, then any license's, in that one
    /// order, so none deadlocks another. A write, so SQLite's one writer lock is taken at
    /// once rather than upgraded from a read.
    pub(crate) async fn lock_audit_chain(
        &self,
        tx: &mut sqlx::AnyConnection,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Appends an entry to the chain, in the caller's transaction; returns its sequence
    /// number.
    pub async fn audit_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        e: &Entry<'_>,
    ) -> Result<i64, StoreError> {
        // The head's row lock orders the chain (and on SQLite takes the write lock first,
        // so the transaction never has to upgrade a read).
        // RETURNING gives the new seq and the hash as yet unchanged: the predecessor's.
        let head =
            sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *conn)
                .await?;
        let seq: i64 = head.try_get("seq")?;
        let prev: String = head.try_get("hash")?;
        let hash = chain_hash(&prev, seq, e);
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, subject, detail, seq, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.at)
        .bind(e.actor)
        .bind(e.action)
        .bind(e.subject)
        .bind(e.detail)
        .bind(seq)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
        if let Some(campaign) = e.anchor {
            let event = Event::Audit {
                seq,
                hash,
                action: e.action.to_owned(),
            };
            self.log_event(conn, campaign, &event).await?;
        }
        Ok(seq)
    }

    /// Appends one entry in its own transaction (actions with no other write: sign-in,
    /// export).
    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let entry = Entry {
            at,
            actor,
            action,
            subject,
            detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The audit log, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
             ORDER BY seq IS NULL DESC, seq, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// The entries about one license: its own and its proposals', oldest first.
    pub async fn audit_for(&self, license_id: &str) -> Result<Vec<Stored>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
             WHERE subject = $1 OR subject IN (SELECT id FROM proposals WHERE subject = $1) \
             ORDER BY seq IS NULL DESC, seq, id",
        )
        .bind(license_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// Recomputes the chain from its first entry to the head, and compares every anchor
    /// the campaigns' transparency logs hold with the entry it names.
    pub async fn check_audit_chain(&self) -> Result<ChainCheck, StoreError> {
        let mut check = ChainCheck::default();
        let entries = self.audit_log().await?;
        let mut by_seq = std::collections::HashMap::new();
        let mut prev = String::new();
        let mut expected = 1;
        for s in entries.iter().filter(|s| s.seq.is_some()) {
            let seq = s.seq.unwrap_or_default();
            if seq != expected {
                check.findings.push(format!(
                    "audit entry {expected} is missing (the next is {seq})"
                ));
                expected = seq;
            }
            let entry = Entry {
                at: s.at,
                actor: &s.actor,
                action: &s.action,
                subject: &s.subject,
                detail: &s.detail,
                anchor: None,
            };
            if s.prev_hash != prev {
                check.findings.push(format!(
                    "audit entry {seq} does not follow its predecessor's hash"
                ));
            }
            if chain_hash(&s.prev_hash, seq, &entry) != s.hash {
                check.findings.push(format!(
                    "audit entry {seq} ({}) does not hash to its stored hash: it was altered",
                    s.action
                ));
            }
            prev = s.hash.clone();
            by_seq.insert(seq, s.hash.clone());
            expected += 1;
            check.entries += 1;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        let head_seq: i64 = head.try_get("seq")?;
        if head_seq != expected - 1 || head.try_get::<String, _>("hash")? != prev {
            check.findings.push(format!(
                "the chain's head is entry {head_seq}, but the log ends at entry {}",
                expected - 1
            ));
        }
        // Per campaign, by the records' lookup key (an index, not a scan of every record).
        let mut anchors = Vec::new();
        let campaigns: Vec<String> = sqlx::query_scalar("SELECT license_id FROM log_state")
            .fetch_all(self.pool())
            .await?;
        for campaign in &campaigns {
            anchors.extend(
                sqlx::query(
                    "SELECT license_id, body FROM log_records WHERE license_id = $1 AND ref = $2 \
                     ORDER BY idx",
                )
                .bind(campaign)
                .bind(crate::transparency::AUDIT_REF)
                .fetch_all(self.pool())
                .await?,
            );
        }
        for r in &anchors {
            let body: String = r.try_get("body")?;
            let Some(Event::Audit { seq, hash, .. }) = Event::parse(&body) else {
                continue;
            };
            let campaign: String = r.try_get("license_id")?;
            match by_seq.get(&seq) {
                Some(h) if *h == hash => check.anchors += 1,
                Some(_) => check.findings.push(format!(
                    "audit entry {seq} differs from its anchor in {campaign}'s transparency log: \
                     the chain was rewritten"
                )),
                None => check.findings.push(format!(
                    "audit entry {seq}, anchored in {campaign}'s transparency log, is gone"
                )),
            }
        }
        Ok(check)
    }
}
