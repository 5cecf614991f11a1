//! An independent witness of campaign logs, in the model of Go's checksum database and
//! the C2SP transparency-log witness protocol: a process that someone other than the log
//! runs (the ministry's inspectorate, a court, a manufacturer, a newspaper) with a key of
//! its own. It remembers the last checkpoint it saw of each campaign and cosigns a new
//! one only after checking, with the log's consistency proof, that the new tree extends
//! the one it saw. A log that shows two audiences two different trees (a split view) can
//! get at most one of them cosigned: the witness refuses the other, and reports it.
//!
//! The cosigned note (the log's checkpoint with the witness's signature line added) is
//! posted back to the log, which keeps the signatures of the witnesses it is configured
//! with (`EMTA_LOG_WITNESSES`) and serves them with its checkpoints; the auditor
//! (`presale verify --witness KEY`) relies only on checkpoints that every named witness
//! cosigned. The witness's state is a small JSON file, written whole and renamed into
//! place, so a crash never leaves it half-written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tlog_tiles::tlog;

use super::{hash_text, open_checkpoint, parse_hash, Head};

/// A witness's signing key: an Ed25519 key under a name of its own (`witness/{name}`).
#[derive(Clone)]
pub struct WitnessKey {
    signer: std::sync::Arc<signed_note::StandardSigner>,
    verifier: String,
}

impl WitnessKey {
    /// The key of witness `name` from a 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, String> {
        let (signer, verifier) = super::note_key(&format!("witness/{name}"), seed)?;
        Ok(Self {
            signer: std::sync::Arc::new(signer),
            verifier,
        })
    }

    /// The key kept in `file` (32 random bytes, made on first use, readable by its owner
    /// only).
    pub fn from_file(name: &str, file: &Path) -> Result<Self, String> {
        Self::from_seed(name, &super::read_seed(file, true)?)
    }

    /// The public key in note format, as the log's configuration and auditors name it.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// The checkpoint `note` with this witness's signature added.
    pub fn cosign(&self, note: &str) -> Result<String, String> {
        let mut parsed =
            signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| format!("{e:?}"))?;
        let signer: &dyn signed_note::Signer = self.signer.as_ref();
        parsed.add_sigs(&[signer]).map_err(|e| format!("{e:?}"))?;
        Ok(String::from_utf8_lossy(&parsed.to_bytes()).into_owned())
    }
}

/// Writes a new file readable by its owner only; an existing file is never overwritten.
pub(crate) fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(file)?.write_all(bytes)
}

/// Whether `note` carries a valid signature of the witness whose key is `witness_key`.
pub fn cosigned_by(note: &str, witness_key: &str) -> bool {
    let Ok(verifier) = signed_note::StandardVerifier::new(witness_key) else {
        return false;
    };
    let Ok(parsed) = signed_note::Note::from_bytes(note.as_bytes()) else {
        return false;
    };
    parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .is_ok()
}

/// The signature lines of `note` made by the keys of `known` (each verified), to be served
/// with the log's own checkpoint of the same text.
pub fn signatures_of(note: &str, known: &[String]) -> Vec<String> {
    let Ok(parsed) = signed_note::Note::from_bytes(note.as_bytes()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in known {
        let Ok(verifier) = signed_note::StandardVerifier::new(key) else {
            continue;
        };
        if let Ok((verified, _)) =
            parsed.verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        {
            out.extend(
                verified
                    .iter()
                    .map(|s| String::from_utf8_lossy(&s.to_bytes()).trim_end().to_owned()),
            );
        }
    }
    out
}

/// The text a note signs (its checkpoint), without its signatures.
pub fn note_text(note: &str) -> Option<String> {
    signed_note::Note::from_bytes(note.as_bytes())
        .ok()
        .map(|n| String::from_utf8_lossy(n.text()).into_owned())
}

/// A note with `extra` signature lines added after its own (those already there are
/// not repeated).
pub fn with_signatures(note: &str, extra: &[String]) -> String {
    let mut out = note.trim_end_matches('\n').to_owned();
    for line in extra {
        if !note.lines().any(|l| l == line) {
            out.push('\n');
            out.push_str(line);
        }
    }
    out.push('\n');
    out
}

/// What the witness remembers: the last checkpoint it cosigned of each campaign (the
/// log's signed note, which is also the evidence of what the log showed it), and every
/// fork it refused, with both signed checkpoints.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Campaign → (size, root, the log's signed note).
    pub heads: HashMap<String, (u64, String, String)>,
    /// Forks refused: the campaign, the checkpoint cosigned and the one that does not
    /// extend it, both as the log signed them.
    #[serde(default)]
    pub forks: Vec<(String, String, String)>,
}

impl State {
    /// The state in `file`. A witness that starts without one trusts the first checkpoint
    /// it sees of each campaign: so a missing file is refused unless `init` (a new
    /// witness, on purpose), never taken for an empty state by accident.
    pub fn load(file: &Path, init: bool) -> Result<Self, String> {
        if !file.exists() {
            return if init {
                Ok(Self::default())
            } else {
                Err(format!(
                    "{}: no state; a new witness starts with --init (it then trusts the first checkpoint it sees of each campaign)",
                    file.display()
                ))
            };
        }
        serde_json::from_slice(&std::fs::read(file).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Writes the whole state to a new file, flushes it to disk and renames it into place
    /// (one process per state file).
    pub fn save(&self, file: &Path) -> Result<(), String> {
        use std::io::Write;
        let tmp: PathBuf = file.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        f.write_all(&json).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, file).map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What one look at a campaign's log came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// A new checkpoint, consistent with the last one cosigned: cosigned and posted.
    Cosigned { size: u64 },
    /// Nothing new since the last look (its cosignature posted again, in case the last
    /// post was lost).
    Unchanged { size: u64 },
}

/// Why a checkpoint was not cosigned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The log's checkpoint does not verify with its pinned key, or is not this
    /// campaign's.
    #[error("the checkpoint does not verify: {0}")]
    Signature(String),
    /// The log shows a tree that does not extend the one this witness cosigned: a
    /// rollback or a fork. Both signed checkpoints are kept in the state's `forks`.
    #[error("the log forked: the checkpoint of size {new} does not extend the cosigned one of size {old}")]
    Fork { old: u64, new: u64 },
    /// The log could not be read, or refused the cosignature, or the witness's state
    /// could not be saved.
    #[error("{0}")]
    Unreachable(String),
}

/// Looks at `campaign`'s log at `base` once: verifies its checkpoint with `log_key`,
/// checks that it extends the last one this witness cosigned (the log's consistency
/// proof), records it in `state` and has `persist` save that **before** the cosignature
/// leaves (so that no crash, lost answer or refused post can make this witness cosign a
/// tree that does not extend one it signed), then posts the cosigned note. A fork is
/// recorded in `state.forks` and persisted too.
pub async fn observe(
    http: &reqwest::Client,
    base: &str,
    campaign: &str,
    log_key: &str,
    key: &WitnessKey,
    state: &mut State,
    persist: &dyn Fn(&State) -> Result<(), String>,
) -> Result<Observed, Refusal> {
    let base = base.trim_end_matches('/');
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let mut r = http
                .get(&url)
                .send()
                .await
                .map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))?;
            if !r.status().is_success() {
                return Err(Refusal::Unreachable(format!("{url}: HTTP {}", r.status())));
            }
            // A checkpoint and a consistency proof are a few kilobytes: a log that sends
            // more is not read on.
            let mut body = Vec::new();
            while let Some(chunk) = r
                .chunk()
                .await
                .map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > 1 << 20 {
                    return Err(Refusal::Unreachable(format!("{url}: an answer over 1 MiB")));
                }
            }
            String::from_utf8(body).map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))
        }
    };
    let note = get(format!("/transparency/{campaign}/checkpoint")).await?;
    let head: Head =
        open_checkpoint(&note, log_key, campaign).map_err(|e| Refusal::Signature(e.to_string()))?;
    let fork = |state: &mut State, old: u64, old_note: &str| -> Result<Observed, Refusal> {
        // Each fork once, however often the log shows it.
        let evidence = (campaign.to_owned(), old_note.to_owned(), note.clone());
        if !state.forks.contains(&evidence) {
            state.forks.push(evidence);
            persist(state).map_err(Refusal::Unreachable)?;
        }
        Err(Refusal::Fork {
            old,
            new: head.size,
        })
    };
    let mut unchanged = false;
    if let Some((old_size, old_root, old_note)) = state.heads.get(campaign).cloned() {
        let old = parse_hash(&old_root)
            .ok_or_else(|| Refusal::Unreachable("the witness's state is corrupt".into()))?;
        if head.size < old_size || (head.size == old_size && head.root != old) {
            return fork(state, old_size, &old_note);
        }
        // Nor is a larger tree dated before the one cosigned.
        let old_at = open_checkpoint(&old_note, log_key, campaign).map_or(0, |h| h.at_ms);
        if head.size > old_size && head.at_ms < old_at {
            return fork(state, old_size, &old_note);
        }
        unchanged = head.size == old_size;
        if !unchanged && old_size > 0 {
            let body = get(format!(
                "/transparency/{campaign}/consistency?old={old_size}&new={}",
                head.size
            ))
            .await?;
            // An answer that is not a proof is an outage; a proof that fails is a fork.
            let proof: Vec<tlog::Hash> = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["proof"]
                        .as_array()?
                        .iter()
                        .map(|p| p.as_str().and_then(parse_hash))
                        .collect()
                })
                .ok_or_else(|| {
                    Refusal::Unreachable(format!("{campaign}: the consistency proof does not read"))
                })?;
            if tlog::check_tree(&proof, head.size, head.root, old_size, old).is_err() {
                return fork(state, old_size, &old_note);
            }
        }
    }
    let cosigned = key.cosign(&note).map_err(Refusal::Signature)?;
    if !unchanged {
        state.heads.insert(
            campaign.to_owned(),
            (head.size, hash_text(&head.root), note.clone()),
        );
        persist(state).map_err(Refusal::Unreachable)?;
    }
    let url = format!("{base}/transparency/{campaign}/cosignatures");
    let r = http
        .post(&url)
        .header("content-type", "text/plain; charset=utf-8")
        .body(cosigned)
        .send()
        .await
        .map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))?;
    if !r.status().is_success() {
        return Err(Refusal::Unreachable(format!("{url}: HTTP {}", r.status())));
    }
    Ok(if unchanged {
        Observed::Unchanged { size: head.size }
    } else {
        Observed::Cosigned { size: head.size }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_with_the_witness_key_only() {
        let log = crate::LogKey::from_seed(&[1; 32]);
        let note = log.sign("l-1", 5, tlog::Hash([9; 32]), 7);
        let w = WitnessKey::from_seed("court", &[2; 32]).expect("key");
        let other = WitnessKey::from_seed("court", &[3; 32]).expect("key");
        let cosigned = w.cosign(&note).expect("cosign");
        assert!(cosigned_by(&cosigned, w.verifier_key()));
        assert!(!cosigned_by(&cosigned, other.verifier_key()));
        assert!(!cosigned_by(&note, w.verifier_key()));
        // The log's own signature still opens it.
        assert!(open_checkpoint(&cosigned, log.verifier_key(), "l-1").is_ok());
        // A cosignature moved onto another tree's checkpoint does not verify.
        let sigs = signatures_of(&cosigned, &[w.verifier_key().to_owned()]);
        assert_eq!(sigs.len(), 1);
        let forged = with_signatures(&log.sign("l-1", 5, tlog::Hash([8; 32]), 7), &sigs);
        assert!(!cosigned_by(&forged, w.verifier_key()));
        // Served beside the log's own: the same note.
        let served = with_signatures(&note, &sigs);
        assert!(cosigned_by(&served, w.verifier_key()));
        assert_eq!(with_signatures(&served, &sigs), served);
    }
}
