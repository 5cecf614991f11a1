//! A promise of inclusion, in the manner of Certificate Transparency's signed certificate
//! timestamps: the moment a join or a lottery entry is acknowledged, the citizen is given
//! the record that will stand for it in the campaign's log and a signed statement that
//! it will be in the log's tree by a stated time (the log's maximum merge delay after the
//! acknowledgement). The citizen holds something a third party can check before anything
//! else happens; a promise whose record is not in a checkpoint signed by that time is a
//! finding, on the citizen's receipts page and for the auditor (`presale verify
//! --promises FILE`).
//!
//! The promise key is not the log's signing key (which only the sequencer holds): every
//! serving replica gives promises, so it derives this key from the shared secret. A
//! promise is the service's word, and a forged one could only accuse the service itself.

use serde::{Deserialize, Serialize};

use super::{origin, Head};

/// The promise key's name in signatures.
pub const PROMISE_KEY_NAME: &str = "emta.ir/presale-promise";
/// The log's maximum merge delay: a record acknowledged now is in a checkpoint signed
/// within this (the sequencer signs every admitter round, a fraction of a second).
pub const MMD_MS: i64 = 60_000;

/// The service's key for promises, the same on every replica.
#[derive(Clone)]
pub struct PromiseKey {
    signer: std::sync::Arc<signed_note::StandardSigner>,
    verifier: String,
}

impl PromiseKey {
    /// The key from its 32-byte seed (the service derives it from its shared secret).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (signer, verifier) = match super::note_key(PROMISE_KEY_NAME, seed) {
            Ok(k) => k,
            Err(_) => unreachable!("PROMISE_KEY_NAME is a valid key name"),
        };
        Self {
            signer: std::sync::Arc::new(signer),
            verifier,
        }
    }

    /// The public key in note format, published at `/transparency/promise-key`.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// The promise that `record` will be in `campaign`'s log within [`MMD_MS`] of `now_ms`.
    pub fn promise(&self, campaign: &str, record: &str, now_ms: i64) -> Promise {
        let by_ms = now_ms + MMD_MS;
        let note = match super::sign_note(&self.signer, &text(campaign, record, by_ms)) {
            Ok(n) => n,
            Err(_) => unreachable!("a promise's text is a valid note"),
        };
        Promise {
            campaign: campaign.to_owned(),
            record: record.to_owned(),
            by_ms,
            note,
        }
    }
}

fn text(campaign: &str, record: &str, by_ms: i64) -> String {
    let hash = crate::keys::b64(&crate::keys::sha256(record.as_bytes()));
    format!("{}\npromise\n{hash}\nby {by_ms}\n", origin(campaign))
}

/// A signed promise of inclusion, as the citizen keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promise {
    pub campaign: String,
    /// The log record that will stand for the join or entry.
    pub record: String,
    /// The record is in a checkpoint signed at or before this time (Unix ms).
    pub by_ms: i64,
    /// The signed note that says so.
    pub note: String,
}

/// What became of a promise.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In the tree of a checkpoint signed by the promised time.
    Kept { index: u64, at_ms: i64 },
    /// Not in the log yet, and its time has not come.
    Pending,
    /// Not in a checkpoint signed by the promised time: a finding.
    Broken(String),
}

impl Promise {
    /// Whether the promise is signed by the key `verifier_key` and says what it claims.
    pub fn check(&self, verifier_key: &str) -> Result<(), String> {
        let verifier =
            signed_note::StandardVerifier::new(verifier_key).map_err(|e| format!("{e:?}"))?;
        let note = signed_note::Note::from_bytes(self.note.as_bytes())
            .map_err(|_| "the promise is not a signed note".to_owned())?;
        note.verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|_| "the promise is not signed by the service's promise key".to_owned())?;
        if note.text() != text(&self.campaign, &self.record, self.by_ms).as_bytes() {
            return Err("the promise's signed text is not what it claims".into());
        }
        Ok(())
    }

    /// Judges the promise against a log's verified checkpoints (`heads`, sorted by size)
    /// and its records, at `now_ms`.
    pub fn verdict(&self, heads: &[Head], records: &[String], now_ms: i64) -> Verdict {
        let index = records.iter().position(|r| *r == self.record);
        self.verdict_at(heads, index.map(|i| i as u64), now_ms)
    }

    /// As [`Self::verdict`], given where the record is in the log (`None`: nowhere).
    pub fn verdict_at(&self, heads: &[Head], index: Option<u64>, now_ms: i64) -> Verdict {
        let first_in = |index: u64| heads.iter().find(|h| h.size > index);
        match index {
            Some(i) => match first_in(i) {
                Some(h) if h.at_ms <= self.by_ms => Verdict::Kept {
                    index: i,
                    at_ms: h.at_ms,
                },
                Some(h) => Verdict::Broken(format!(
                    "the promised record is record {i}, first in a checkpoint signed at {}, after the promised {}",
                    h.at_ms, self.by_ms
                )),
                None if now_ms > self.by_ms => Verdict::Broken(format!(
                    "the promised record is record {i}, in no checkpoint signed by the promised {}",
                    self.by_ms
                )),
                None => Verdict::Pending,
            },
            None if now_ms > self.by_ms => Verdict::Broken(format!(
                "the promised record is not in the log, promised by {}",
                self.by_ms
            )),
            None => Verdict::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: u64, at_ms: i64) -> Head {
        Head {
            size,
            root: tlog_tiles::tlog::Hash([0; 32]),
            at_ms,
            note: String::new(),
        }
    }

    #[test]
    fn a_promise_is_kept_only_by_its_time() {
        let key = PromiseKey::from_seed(&[1; 32]);
        let p = key.promise("l-1", "{\"event\":\"entry\"}", 1_000);
        assert_eq!(p.by_ms, 1_000 + MMD_MS);
        p.check(key.verifier_key()).expect("signed");
        let records = vec!["a".to_owned(), p.record.clone()];
        assert_eq!(
            p.verdict(&[head(1, 500), head(2, 2_000)], &records, 3_000),
            Verdict::Kept {
                index: 1,
                at_ms: 2_000
            }
        );
        assert_eq!(
            p.verdict(&[head(1, 500)], &records, 3_000),
            Verdict::Pending
        );
        assert!(matches!(
            p.verdict(&[head(1, 500)], &records, p.by_ms + 1),
            Verdict::Broken(_)
        ));
        assert!(matches!(
            p.verdict(&[head(2, p.by_ms + 1)], &records, p.by_ms + 2),
            Verdict::Broken(_)
        ));
        assert!(matches!(
            p.verdict(&[head(1, 500)], &records[..1], p.by_ms + 1),
            Verdict::Broken(_)
        ));
        let mut changed = p.clone();
        changed.by_ms += 1;
        assert!(changed.check(key.verifier_key()).is_err());
        let other = PromiseKey::from_seed(&[2; 32]);
        assert!(p.check(other.verifier_key()).is_err());
    }
}
