//! The public transparency log of every campaign. Its records, proofs, seeds, promises,
//! witnesses and the auditor are the `emta-verify` crate's (what an outside auditor builds
//! alone, without this service); this module re-exports them for the service and adds
//! what only the service has: the keys it derives from its shared secret.

pub use emta_verify::audit as verify;
pub use emta_verify::*;

use service_kit::keys::Keyring;

/// Keys the service derives from its shared secret, the same on every replica.
pub trait FromKeyring {
    fn from_keyring(keys: &Keyring) -> Self;
}

/// The seed of the log key derived from the shared secret (a local deployment's key, and
/// every deployment's before the sequencer held its own): `presale log-key --from-secret`
/// writes it to a key file, so a deployment moves its key to the sequencer without
/// changing it.
pub fn log_seed_of(keys: &Keyring) -> [u8; 32] {
    service_kit::keys::sha256(
        keys.hash("transparency-log-signing-key", b"ed25519")
            .as_bytes(),
    )
}

impl FromKeyring for LogKey {
    fn from_keyring(keys: &Keyring) -> Self {
        Self::from_seed(&log_seed_of(keys))
    }
}

/// Every serving replica gives promises, so the promise key is derived from the shared
/// secret (it is not the log's signing key, which only the sequencer holds).
impl FromKeyring for promise::PromiseKey {
    fn from_keyring(keys: &Keyring) -> Self {
        Self::from_seed(&service_kit::keys::sha256(
            keys.hash("transparency-promise-key", b"ed25519").as_bytes(),
        ))
    }
}
