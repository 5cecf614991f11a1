//! emta's public transparency logs, and everything needed to check them without the
//! service: no database, no web server, no Redis. An outside auditor, a witness or an
//! observer builds this crate alone (`emta-verify`, the binary, reads a campaign's public
//! log over HTTP or from a file and recomputes it); the presale service and the load tool
//! depend on it for the same wire types and checks.
//!
//! A campaign's log is kept in the manner of Certificate Transparency (RFC 9162) and Go's
//! checksum database: an append-only Merkle tree per campaign whose records are the
//! campaign's public [`Event`]s, with signed checkpoints (C2SP tlog-checkpoint in a signed
//! note). The hashing and proofs are `tlog_tiles` (a port of Go's `sumdb/tlog`, RFC 6962
//! compatible); this crate pins the record format, wraps the proofs and signs the
//! checkpoints.
//!
//! - [`Event`]: one record, one line of JSON; [`terms`]: the license terms it carries.
//! - [`seed`], [`vdf`]: commit-then-reveal contributions, and the seed derived from them,
//!   the frozen list's root and a delay function; [`observer`]: observers' signed
//!   statements.
//! - [`lottery`], [`shuffle`]: the draw and the early arrivals' order, from the seed.
//! - [`MemoryTree`]: a tree in memory (the frozen lists' roots, the verifier).
//! - [`LogKey`]: a signing key for checkpoints, and checking them.
//! - [`promise`]: promises of inclusion; [`witness`]: an independent witness.
//! - [`audit`]: the auditor: recomputes a whole campaign from its public log.

pub mod audit;
pub mod cli;
pub mod keys;
pub mod lottery;
pub mod observer;
pub mod promise;
pub mod seed;
pub mod shuffle;
pub mod terms;
pub mod vdf;
pub mod witness;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tlog_tiles::checkpoint::Checkpoint;
/// A Merkle tree hash (RFC 6962), as the log and its proofs carry it.
pub use tlog_tiles::tlog::Hash;
use tlog_tiles::tlog::{self, HashReader};

use crate::terms::NewLicense;

/// One record of a campaign's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The license as issued, with every party's seed commitment. Always record 0.
    License {
        id: String,
        terms: Box<NewLicense>,
        at_ms: i64,
    },
    /// A queue ticket: `arrival` for a pre-opening arrival (its ticket is drawn with the
    /// seed), `ticket` after the opening. `holder` is the per-campaign keyed hash of the
    /// national ID: not brute-forceable from the ID space, not linkable across campaigns.
    Ticket {
        holder: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arrival: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<i64>,
    },
    /// A lottery entry.
    Entry { holder: String, entry: i64 },
    /// The list the seed orders is final: the queue's pre-opening arrivals at the opening,
    /// or the lottery's entries at the close. `root` is the Merkle root of its lines
    /// ([`list_line`]).
    Frozen {
        list: String,
        size: i64,
        root: String,
        at_ms: i64,
    },
    /// A party's secret, accepted only after the freeze and only if it matches the
    /// commitment.
    Reveal {
        party: String,
        secret: String,
        at_ms: i64,
    },
    /// A party that had not revealed by the deadline: its share is a fixed marker.
    Withheld { party: String, at_ms: i64 },
    /// The seed, derived from the frozen list and every reveal ([`seed::derive`]); for a
    /// campaign with a seed delay, through the delay function, whose output is here so
    /// that anyone checks it with squarings instead of recomputing it.
    Seed {
        seed: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay: Option<seed::DelayProof>,
    },
    /// Tickets `first..=last` admitted at `at_ms`.
    Admitted { first: i64, last: i64, at_ms: i64 },
    /// An accepted application: the holder, the ticket (queue) or rank (lottery) it used,
    /// and its tracking code.
    Accepted {
        holder: String,
        ticket: i64,
        tracking_code: String,
    },
    /// The lottery's draw: how many entries, and SHA-256 of the order (entry numbers,
    /// comma-separated), which anyone can recompute from the seed and the entries.
    Draw {
        entries: i64,
        order_sha256: String,
        at_ms: i64,
    },
    /// The ministry suspended or resumed the license.
    Status { status: String, at_ms: i64 },
    /// The ministry changed the admission rate (approved by a second issuer).
    Rate { admission_per_min: i64, at_ms: i64 },
    /// The ministry paused admissions (`paused`) or resumed them, the license staying
    /// active: nobody loses a place or their time, and the close moves on by the pause.
    Admissions { paused: bool, at_ms: i64 },
    /// The ministry changed how many may be admitted at once (approved by a second issuer).
    MaxActive { max_active: i64, at_ms: i64 },
    /// The ministry gave everyone admitted and still within their time `by_ms` more to
    /// apply (after an outage; approved by a second issuer).
    Extended { by_ms: i64, at_ms: i64 },
    /// A citizen's down payment held at `bank`, as the bank confirmed it server-to-server
    /// (issue 30): an entry, a join or an application that the license makes wait for a
    /// hold comes after its holder's.
    Held { holder: String, bank: String },
    /// A hold's one settlement, as decided: captured for an accepted applicant (`capture`),
    /// released for everyone else. A hold is settled once, and no application follows.
    Settled { holder: String, capture: bool },
    /// A lottery place's time to apply ran out without an application: the place of
    /// `rank` goes to the next on the reserve list.
    Lapsed { rank: i64, at_ms: i64 },
    /// The next on the reserve list, `rank`, is offered a place until `until_ms`: reserves
    /// are promoted in their order, one for each lapse.
    Promoted {
        rank: i64,
        until_ms: i64,
        at_ms: i64,
    },
    /// A staff action about this campaign: its entry in the ministry's hash-chained audit
    /// log (sequence number and hash, no names). It pins the whole chain up to that entry.
    Audit {
        seq: i64,
        hash: String,
        action: String,
    },
}

impl Event {
    /// The record's text: one line of JSON.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }

    /// What a record is stored under for lookups (`log_records.ref`): the holder it is
    /// about, for finding a citizen's receipts; [`AUDIT_REF`] for the audit chain's anchors.
    pub fn holder(&self) -> Option<&str> {
        match self {
            Self::Ticket { holder, .. } | Self::Entry { holder, .. } => Some(holder),
            Self::Accepted { holder, .. } => Some(holder),
            Self::Audit { .. } => Some(AUDIT_REF),
            _ => None,
        }
    }
}

/// The line of a frozen list's `n`-th member (1-based): `arrival` for the queue's
/// pre-opening list, `entry` for a lottery's.
pub fn list_line(list: &str, n: i64, holder: &str) -> String {
    format!("{list} {n} {holder}\n")
}

/// The lookup key of the audit chain's anchors (no holder hash looks like it).
pub const AUDIT_REF: &str = "audit";

/// Lists frozen in the log.
pub const EARLY: &str = "arrival";
pub const ENTRIES: &str = "entry";

/// A hash as published: base64 (standard, as in checkpoints).
pub fn hash_text(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

pub fn parse_hash(s: &str) -> Option<Hash> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Some(Hash(bytes.try_into().ok()?))
}

/// The SHA-256 of a lottery's order as the draw record states it.
pub fn order_digest(order: &[i64]) -> String {
    let text: Vec<String> = order.iter().map(i64::to_string).collect();
    crate::keys::b64(&crate::keys::sha256(text.join(",").as_bytes()))
}

/// A Merkle tree held in memory: its stored hashes in tlog's layout.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.hashes
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryTree {
    pub fn push(&mut self, record: &[u8]) {
        let new = tlog::stored_hashes(self.size, record, self).unwrap_or_default();
        self.hashes.extend(new);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the first `n` records.
    pub fn root_at(&self, n: u64) -> Option<Hash> {
        tlog::tree_hash(n, self).ok()
    }

    pub fn root(&self) -> Hash {
        self.root_at(self.size).unwrap_or(Hash([0; 32]))
    }

    pub fn prove(&self, size: u64, index: u64) -> Option<Vec<Hash>> {
        tlog::prove_record(size, index, self).ok()
    }
}

/// The Merkle root of a frozen list.
pub fn list_root<'a>(list: &str, holders: impl IntoIterator<Item = &'a str>) -> (i64, String) {
    let mut tree = MemoryTree::default();
    for (i, h) in holders.into_iter().enumerate() {
        tree.push(list_line(list, i as i64 + 1, h).as_bytes());
    }
    (tree.size() as i64, hash_text(&tree.root()))
}

/// Runs a tlog computation whose hash reads go to a store that is only reachable
/// asynchronously: the indexes a computation reads depend only on the tree's shape, so a
/// first run with placeholder hashes names them, `fetch` reads those not in `known`
/// (which keeps them, so a run of computations fetches each hash once), a second run
/// computes.
pub async fn with_hashes<T, F, Fut, E>(
    known: &mut HashMap<u64, Hash>,
    fetch: F,
    compute: impl Fn(&Hashes) -> Result<T, tlog::Error>,
) -> Result<Result<T, tlog::Error>, E>
where
    F: FnOnce(Vec<u64>) -> Fut,
    Fut: std::future::Future<Output = Result<HashMap<u64, Hash>, E>>,
{
    let wanted = Hashes::Wanted(std::sync::Mutex::default());
    let _ = compute(&wanted);
    let Hashes::Wanted(wanted) = wanted else {
        unreachable!("made above")
    };
    let mut need: Vec<u64> = wanted
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .filter(|i| !known.contains_key(i))
        .collect();
    need.sort_unstable();
    need.dedup();
    if !need.is_empty() {
        known.extend(fetch(need).await?);
    }
    Ok(compute(&Hashes::Read(known)))
}

/// The hash reader of [`with_hashes`]: first naming the hashes wanted, then reading them.
pub enum Hashes<'a> {
    Wanted(std::sync::Mutex<Vec<u64>>),
    Read(&'a HashMap<u64, Hash>),
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        match self {
            Self::Wanted(w) => {
                w.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(indexes);
                Ok(vec![Hash([0; 32]); indexes.len()])
            }
            Self::Read(m) => indexes
                .iter()
                .map(|i| m.get(i).copied().ok_or(tlog::Error::IndexesNotInTree))
                .collect(),
        }
    }
}

/// The origin line of a campaign's checkpoints.
pub fn origin(license_id: &str) -> String {
    format!("emta.ir/presale/{license_id}")
}

/// The key name in checkpoint signatures.
pub const KEY_NAME: &str = "emta.ir/presale";

/// The service's checkpoint signing key, derived from its secret key so that every
/// replica signs with the same key and nothing more has to be provisioned; its public
/// half is published at `/transparency/key` and pinned by verifiers.
#[derive(Clone)]
pub struct LogKey {
    signer: std::sync::Arc<signed_note::StandardSigner>,
    verifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is not a signed note: {0}")]
    Note(String),
    #[error("the checkpoint's signature does not verify with the pinned key: {0}")]
    Signature(String),
    #[error("the checkpoint is malformed")]
    Malformed,
    #[error("the checkpoint is for {found}, not {expected}")]
    Origin { expected: String, found: String },
}

impl LogKey {
    /// Writes `seed` to a new key file (readable by its owner only).
    pub fn write_seed(file: &std::path::Path, seed: &[u8; 32]) -> Result<(), String> {
        witness::write_private(file, seed).map_err(|e| format!("{}: {e}", file.display()))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (signer, verifier) = match note_key(KEY_NAME, seed) {
            Ok(k) => k,
            Err(_) => unreachable!("KEY_NAME is a valid key name"),
        };
        Self {
            signer: std::sync::Arc::new(signer),
            verifier,
        }
    }

    /// The key kept in `file`: 32 bytes; with `create`, made if missing (readable by its
    /// owner only). A serving replica never creates one: a mistyped path would otherwise
    /// start signing with a key nobody pinned.
    pub fn from_file(file: &std::path::Path, create: bool) -> Result<Self, String> {
        Ok(Self::from_seed(&read_seed(file, create)?))
    }

    /// The public key in note format (`name+id+key`), as verifiers pin it.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// A signed checkpoint for a campaign's tree; `at_ms` goes in an extension line.
    pub fn sign(&self, license_id: &str, size: u64, root: Hash, at_ms: i64) -> String {
        let text =
            match Checkpoint::new(&origin(license_id), size, root, &format!("time {at_ms}\n")) {
                Ok(c) => c.to_bytes(),
                Err(_) => unreachable!("the origin is never empty and the extension is one line"),
            };
        match sign_note(&self.signer, &String::from_utf8_lossy(&text)) {
            Ok(note) => note,
            Err(_) => unreachable!("a checkpoint is a valid note text and the key name is valid"),
        }
    }
}

/// An Ed25519 signed-note key named `name` from a 32-byte seed: its signer and its
/// verifier key (`name+id+key`), as the log, its witnesses and its promises use them.
pub fn note_key(
    name: &str,
    seed: &[u8; 32],
) -> Result<(signed_note::StandardSigner, String), String> {
    use base64::Engine;
    if !signed_note::is_key_name_valid(name) {
        return Err(format!("{name:?} is not a valid key name"));
    }
    let signing = ed25519_dalek::SigningKey::from_bytes(seed);
    let public = [&[1u8][..], signing.verifying_key().as_bytes()].concat();
    let id = signed_note::key_id(name, &public);
    let private = [&[1u8][..], signing.to_bytes().as_slice()].concat();
    let skey = format!(
        "PRIVATE+KEY+{name}+{id:08x}+{}",
        base64::engine::general_purpose::STANDARD.encode(private)
    );
    let signer = signed_note::StandardSigner::new(&skey).map_err(|e| format!("{e:?}"))?;
    Ok((
        signer,
        signed_note::new_ed25519_verifier_key(name, &signing.verifying_key()),
    ))
}

/// The 32-byte seed kept in `file`; with `create`, a new random one is written first if
/// the file is missing (readable by its owner only).
pub fn read_seed(file: &std::path::Path, create: bool) -> Result<[u8; 32], String> {
    if create && !file.exists() {
        let seed: [u8; 32] = rand::random();
        witness::write_private(file, &seed).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{}: not a 32-byte key", file.display()))
}

/// Signs `text` (a note's text, ending in a newline) with `signer`.
pub fn sign_note(signer: &signed_note::StandardSigner, text: &str) -> Result<String, String> {
    let mut note = signed_note::Note::new(text.as_bytes(), &[]).map_err(|e| format!("{e:?}"))?;
    let signer: &dyn signed_note::Signer = signer;
    note.add_sigs(&[signer]).map_err(|e| format!("{e:?}"))?;
    Ok(String::from_utf8_lossy(&note.to_bytes()).into_owned())
}

/// A checkpoint that verified: the tree's size, root and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    pub at_ms: i64,
    pub note: String,
}

/// Checks a signed checkpoint of `license_id`'s log against the pinned verifier key.
pub fn open_checkpoint(
    note: &str,
    verifier_key: &str,
    license_id: &str,
) -> Result<Head, CheckpointError> {
    let verifier = signed_note::StandardVerifier::new(verifier_key)
        .map_err(|e| CheckpointError::Signature(format!("{e:?}")))?;
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|e| CheckpointError::Note(format!("{e:?}")))?;
    let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    parsed
        .verify(&list)
        .map_err(|e| CheckpointError::Signature(format!("{e:?}")))?;
    let c = Checkpoint::from_bytes(parsed.text()).map_err(|_| CheckpointError::Malformed)?;
    if c.origin() != origin(license_id) {
        return Err(CheckpointError::Origin {
            expected: origin(license_id),
            found: c.origin().to_owned(),
        });
    }
    let at_ms = c
        .extension()
        .lines()
        .find_map(|l| l.strip_prefix("time ")?.parse().ok())
        .unwrap_or(0);
    Ok(Head {
        size: c.size(),
        root: *c.hash(),
        at_ms,
        note: note.to_owned(),
    })
}

/// A citizen's receipt for one record: the record, its index, the inclusion proof and the
/// signed checkpoint it is proved against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub campaign: String,
    pub index: u64,
    pub record: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("a proof hash is not base64 of 32 bytes")]
    BadHash,
    #[error("the record is not included in the signed tree at that index")]
    NotIncluded,
}

impl Receipt {
    /// Checks the receipt on its own: the checkpoint's signature, and the record's
    /// inclusion in that tree. Returns the head it was proved against.
    pub fn check(&self, verifier_key: &str) -> Result<Head, ReceiptError> {
        let head = open_checkpoint(&self.checkpoint, verifier_key, &self.campaign)?;
        let proof: Vec<Hash> = self
            .proof
            .iter()
            .map(|p| parse_hash(p).ok_or(ReceiptError::BadHash))
            .collect::<Result<_, _>>()?;
        tlog::check_record(
            &proof,
            head.size,
            head.root,
            self.index,
            tlog::record_hash(self.record.as_bytes()),
        )
        .map_err(|_| ReceiptError::NotIncluded)?;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_checks_and_a_changed_record_does_not() {
        let key = LogKey::from_seed(&[7; 32]);
        let mut tree = MemoryTree::default();
        let records: Vec<String> = (0..37)
            .map(|i| {
                Event::Ticket {
                    holder: format!("h{i}"),
                    arrival: None,
                    ticket: Some(i),
                }
                .line()
            })
            .collect();
        for r in &records {
            tree.push(r.as_bytes());
        }
        let receipt = Receipt {
            campaign: "l-x".into(),
            index: 21,
            record: records[21].clone(),
            proof: tree
                .prove(37, 21)
                .expect("proof")
                .iter()
                .map(hash_text)
                .collect(),
            checkpoint: key.sign("l-x", 37, tree.root(), 5),
        };
        let head = receipt.check(key.verifier_key()).expect("checks");
        assert_eq!((head.size, head.at_ms), (37, 5));
        let mut forged = receipt.clone();
        forged.record = records[22].clone();
        assert!(matches!(
            forged.check(key.verifier_key()),
            Err(ReceiptError::NotIncluded)
        ));
        let other = LogKey::from_seed(&[8; 32]);
        assert!(receipt.check(other.verifier_key()).is_err());
        let mut elsewhere = receipt;
        elsewhere.campaign = "l-y".into();
        assert!(matches!(
            elsewhere.check(key.verifier_key()),
            Err(ReceiptError::Checkpoint(CheckpointError::Origin { .. }))
        ));
    }

    #[test]
    fn the_memory_tree_matches_the_rfc_6962_root() {
        // RFC 6962 §2.1: MTH of one entry is SHA-256(0x00 || d).
        let mut tree = MemoryTree::default();
        tree.push(b"");
        assert_eq!(
            hex(&tree.root().0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn events_read_back_as_written() {
        let e = Event::Admitted {
            first: 1,
            last: 40,
            at_ms: 9,
        };
        assert_eq!(Event::parse(&e.line()), Some(e));
        assert_eq!(
            Event::parse(r#"{"event":"seed","seed":"x","extra":1}"#),
            None
        );
    }
}
