//! Observers of a seed (issue 31, point 1): a court, a citizens' representative, an
//! inspectorate, anyone the ministry registers as a party of campaigns' seeds besides the
//! ministry and the manufacturer. An observer holds an Ed25519 key of its own (made with
//! `presale observer-key`, never seen by the service); an administrator registers its
//! public key under its name; the observer then commits and reveals with statements it
//! signs (signed notes, as the log's checkpoints are), posted to
//! `POST /api/observers/{name}/statements`. Only a statement that verifies with the key
//! registered for that name counts, so nobody else (an issuer included) can commit or
//! reveal in an observer's name, and the signed statement is the observer's own evidence
//! of what it committed to.

use std::path::Path;

/// The key name an observer signs under.
pub fn key_name(observer: &str) -> String {
    format!("observer/{observer}")
}

/// An observer's signing key.
pub struct ObserverKey {
    name: String,
    signer: signed_note::StandardSigner,
    verifier: String,
}

impl ObserverKey {
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, String> {
        if !super::seed::valid_party(name) {
            return Err(format!(
                "{name:?}: an observer's name is 1 to 32 lowercase letters, digits or dashes"
            ));
        }
        let (signer, verifier) = super::note_key(&key_name(name), seed)?;
        Ok(Self {
            name: name.to_owned(),
            signer,
            verifier,
        })
    }

    /// The key kept in `file` (32 random bytes, made on first use, mode 0600).
    pub fn from_file(name: &str, file: &Path) -> Result<Self, String> {
        Self::from_seed(name, &super::read_seed(file, true)?)
    }

    /// The public key in note format, which the ministry registers.
    pub fn verifier_key(&self) -> &str {
        &self.verifier
    }

    /// A signed statement: this observer's commitment to `commitment` for license number
    /// `license_no`.
    pub fn commit(&self, license_no: &str, commitment: &str) -> Result<String, String> {
        let s = Statement::Commitment {
            license_no: license_no.to_owned(),
            commitment: commitment.to_owned(),
        };
        super::sign_note(&self.signer, &s.text(&self.name))
    }

    /// A signed statement: this observer's secret for campaign `license_id`.
    pub fn reveal(&self, license_id: &str, secret: &str) -> Result<String, String> {
        let s = Statement::Reveal {
            license_id: license_id.to_owned(),
            secret: secret.to_owned(),
        };
        super::sign_note(&self.signer, &s.text(&self.name))
    }
}

/// What an observer states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Its commitment for a license to come (by license number).
    Commitment {
        license_no: String,
        commitment: String,
    },
    /// Its secret for a campaign whose list is frozen (by license id).
    Reveal { license_id: String, secret: String },
}

impl Statement {
    /// The note text: a first line naming the kind and the observer, then the values.
    /// Every value is a single printable line, so no statement reads as another.
    pub fn text(&self, observer: &str) -> String {
        match self {
            Self::Commitment {
                license_no,
                commitment,
            } => format!(
                "emta seed commitment v1\nobserver {observer}\nlicense-no {license_no}\ncommitment {commitment}\n"
            ),
            Self::Reveal { license_id, secret } => format!(
                "emta seed reveal v1\nobserver {observer}\nlicense {license_id}\nsecret {secret}\n"
            ),
        }
    }

    fn parse(text: &str, observer: &str) -> Option<Self> {
        let lines: Vec<&str> = text.strip_suffix('\n')?.split('\n').collect();
        let [kind, who, first, second] = lines.as_slice() else {
            return None;
        };
        if who.strip_prefix("observer ")? != observer {
            return None;
        }
        let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
        let s = match *kind {
            "emta seed commitment v1" => Self::Commitment {
                license_no: first.strip_prefix("license-no ")?.to_owned(),
                commitment: second.strip_prefix("commitment ")?.to_owned(),
            },
            "emta seed reveal v1" => Self::Reveal {
                license_id: first.strip_prefix("license ")?.to_owned(),
                secret: second.strip_prefix("secret ")?.to_owned(),
            },
            _ => return None,
        };
        let (a, b) = match &s {
            Self::Commitment {
                license_no,
                commitment,
            } => (license_no, commitment),
            Self::Reveal { license_id, secret } => (license_id, secret),
        };
        (printable(a) && printable(b)).then_some(s)
    }
}

/// Whether `key` is a well-formed note verifier key of observer `name`.
pub fn valid_key(name: &str, key: &str) -> bool {
    signed_note::StandardVerifier::new(key).is_ok()
        && key.split('+').next() == Some(key_name(name).as_str())
}

/// The statement in `note` if it carries a valid signature of `key` (observer `name`'s
/// registered key) and states something in `name`'s name.
pub fn verified(note: &str, name: &str, key: &str) -> Option<Statement> {
    if !valid_key(name, key) {
        return None;
    }
    let verifier = signed_note::StandardVerifier::new(key).ok()?;
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).ok()?;
    parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .ok()?;
    Statement::parse(&String::from_utf8_lossy(parsed.text()), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_counts_only_with_its_observers_key() {
        let court = ObserverKey::from_seed("court", &[7; 32]).expect("key");
        let other = ObserverKey::from_seed("court", &[8; 32]).expect("key");
        let note = court
            .commit("MIMT-1", "c".repeat(43).as_str())
            .expect("sign");
        assert_eq!(
            verified(&note, "court", court.verifier_key()),
            Some(Statement::Commitment {
                license_no: "MIMT-1".into(),
                commitment: "c".repeat(43),
            })
        );
        assert_eq!(verified(&note, "court", other.verifier_key()), None);
        // Another observer's registered name: the key names the observer.
        let press = ObserverKey::from_seed("press", &[7; 32]).expect("key");
        assert_eq!(verified(&note, "press", press.verifier_key()), None);
        assert!(!valid_key("press", court.verifier_key()));
        // A statement edited after signing.
        let edited = note.replace("MIMT-1", "MIMT-2");
        assert_eq!(verified(&edited, "court", court.verifier_key()), None);
        let reveal = court.reveal("l-1", "a-secret-of-sixteen").expect("sign");
        assert_eq!(
            verified(&reveal, "court", court.verifier_key()),
            Some(Statement::Reveal {
                license_id: "l-1".into(),
                secret: "a-secret-of-sixteen".into(),
            })
        );
        assert!(ObserverKey::from_seed("Court!", &[1; 32]).is_err());
    }
}
