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
        use base64::Engine;
        let key_name = format!("witness/{name}");
        if !signed_note::is_key_name_valid(&key_name) {
            return Err(format!("{key_name:?} is not a valid key name"));
        }
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = [&[1u8][..], signing.verifying_key().as_bytes()].concat();
        let id = signed_note::key_id(&key_name, &public);
        let private = [&[1u8][..], signing.to_bytes().as_slice()].concat();
        let skey = format!(
            "PRIVATE+KEY+{key_name}+{id:08x}+{}",
            base64::engine::general_purpose::STANDARD.encode(private)
        );
        let signer = signed_note::StandardSigner::new(&skey).map_err(|e| format!("{e:?}"))?;
        Ok(Self {
            signer: std::sync::Arc::new(signer),
            verifier: signed_note::new_ed25519_verifier_key(&key_name, &signing.verifying_key()),
        })
    }

    /// The key kept in `file` (32 random bytes, made on first use, readable by its owner
    /// only).
    pub fn from_file(name: &str, file: &Path) -> Result<Self, String> {
        if !file.exists() {
            let seed: [u8; 32] = rand::random();
            write_private(file, &seed).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("{}: not a 32-byte key", file.display()))?;
        Self::from_seed(name, &seed)
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

fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

/// What the witness remembers: the last checkpoint it cosigned of each campaign.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Campaign → (size, root).
    pub heads: HashMap<String, (u64, String)>,
}

impl State {
    pub fn load(file: &Path) -> Result<Self, String> {
        if !file.exists() {
            return Ok(Self::default());
        }
        serde_json::from_slice(&std::fs::read(file).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Writes the whole state to a new file and renames it into place.
    pub fn save(&self, file: &Path) -> Result<(), String> {
        let tmp: PathBuf = file.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, json).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, file).map_err(|e| e.to_string())
    }
}

/// What one look at a campaign's log came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// A new checkpoint, consistent with the last one seen, cosigned and posted.
    Cosigned { size: u64 },
    /// Nothing new since the last look.
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
    /// rollback or a fork. The evidence is both checkpoints.
    #[error("the log forked: the checkpoint of size {new} does not extend the cosigned one of size {old}")]
    Fork { old: u64, new: u64 },
    /// The log could not be read, or refused the cosignature.
    #[error("{0}")]
    Unreachable(String),
}

/// Looks at `campaign`'s log at `base` once: verifies its checkpoint with `log_key`,
/// checks that it extends the last one this witness cosigned, cosigns it and posts the
/// cosignature back. `state` is updated (and should be saved) only after a cosignature.
pub async fn observe(
    http: &reqwest::Client,
    base: &str,
    campaign: &str,
    log_key: &str,
    key: &WitnessKey,
    state: &mut State,
) -> Result<Observed, Refusal> {
    let base = base.trim_end_matches('/');
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move {
            let r = http
                .get(&url)
                .send()
                .await
                .map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))?;
            if !r.status().is_success() {
                return Err(Refusal::Unreachable(format!("{url}: HTTP {}", r.status())));
            }
            r.text()
                .await
                .map_err(|e| Refusal::Unreachable(format!("{url}: {e}")))
        }
    };
    let note = get(format!("/transparency/{campaign}/checkpoint")).await?;
    let head: Head =
        open_checkpoint(&note, log_key, campaign).map_err(|e| Refusal::Signature(e.to_string()))?;
    if let Some((old_size, old_root)) = state.heads.get(campaign).cloned() {
        let old = parse_hash(&old_root)
            .ok_or_else(|| Refusal::Unreachable("the witness's state is corrupt".into()))?;
        if head.size < old_size || (head.size == old_size && head.root != old) {
            return Err(Refusal::Fork {
                old: old_size,
                new: head.size,
            });
        }
        if head.size == old_size {
            return Ok(Observed::Unchanged { size: head.size });
        }
        if old_size > 0 {
            let body = get(format!(
                "/transparency/{campaign}/consistency?old={old_size}&new={}",
                head.size
            ))
            .await?;
            let proof: Vec<tlog::Hash> = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["proof"]
                        .as_array()?
                        .iter()
                        .map(|p| p.as_str().and_then(parse_hash))
                        .collect()
                })
                .ok_or(Refusal::Fork {
                    old: old_size,
                    new: head.size,
                })?;
            tlog::check_tree(&proof, head.size, head.root, old_size, old).map_err(|_| {
                Refusal::Fork {
                    old: old_size,
                    new: head.size,
                }
            })?;
        }
    }
    let cosigned = key.cosign(&note).map_err(Refusal::Signature)?;
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
    state
        .heads
        .insert(campaign.to_owned(), (head.size, hash_text(&head.root)));
    Ok(Observed::Cosigned { size: head.size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_with_the_witness_key_only() {
        let log = super::super::LogKey::from_seed(&[1; 32]);
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
