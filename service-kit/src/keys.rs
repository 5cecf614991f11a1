//! Keyed hashes under one server secret, one derived key per purpose, and random tokens.
//!
//! A value made for one purpose (a CSRF token, say) is never valid as another (a signed
//! ticket), because each purpose has its own key derived from the master secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `n` random bytes, base64url without padding. `rand`'s thread-local generator is a
/// CSPRNG (ChaCha12) seeded and periodically reseeded from the OS: as unpredictable as
/// `OsRng`, without a syscall per token.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    b64(&buf)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Constant-time string comparison for secrets and hashes.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Derives independent keys from the one server secret, one per purpose.
#[derive(Clone)]
pub struct Keyring {
    master: Vec<u8>,
    /// Keyed HMAC states per purpose, derived once: cloning a keyed state is cheaper than
    /// deriving the key again on every request.
    derived: std::sync::Arc<std::collections::HashMap<&'static str, HmacSha256>>,
}

impl Keyring {
    /// A keyring whose `hot` purposes are derived up front (others on demand).
    pub fn new(master: &[u8], hot: &[&'static str]) -> Self {
        let mut k = Self {
            master: master.to_vec(),
            derived: Default::default(),
        };
        let derived = hot.iter().map(|p| (*p, k.derive(p))).collect();
        k.derived = std::sync::Arc::new(derived);
        k
    }

    fn mac(&self, purpose: &str) -> HmacSha256 {
        match self.derived.get(purpose) {
            Some(m) => m.clone(),
            None => self.derive(purpose),
        }
    }

    fn derive(&self, purpose: &str) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
        let mut outer = match HmacSha256::new_from_slice(&self.master) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        outer.update(purpose.as_bytes());
        let derived = outer.finalize().into_bytes();
        match HmacSha256::new_from_slice(&derived) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// Keyed hash of `data` for `purpose`, base64url.
    pub fn hash(&self, purpose: &str, data: &[u8]) -> String {
        let mut mac = self.mac(purpose);
        mac.update(data);
        b64(&mac.finalize().into_bytes())
    }

    pub fn verify(&self, purpose: &str, data: &[u8], expected: &str) -> bool {
        ct_eq(&self.hash(purpose, data), expected)
    }

    /// A 256-bit key for `purpose` (for [`seal`]), derived under the master secret as the
    /// MAC keys are, and separate from them.
    pub fn key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = self.mac(purpose);
        mac.update(b"\0emta sealing key");
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_separate_and_derivation_is_stable() {
        let k = Keyring::new(b"secret", &["a"]);
        let again = Keyring::new(b"secret", &[]);
        assert_eq!(k.hash("a", b"x"), again.hash("a", b"x"));
        assert_ne!(k.hash("a", b"x"), k.hash("b", b"x"));
        assert!(k.verify("a", b"x", &again.hash("a", b"x")));
        assert!(!k.verify("a", b"y", &again.hash("a", b"x")));
    }
}

/// Authenticated encryption (ChaCha20-Poly1305, RFC 8439) under a 256-bit key, for values
/// that must be kept but not read by whoever reads the store: signing keys under the
/// key-encryption key, a refresh answer under the refresh token it answers. The output is
/// `base64url(nonce || ciphertext || tag)`; the nonce is random (96 bits), and `aad` binds
/// the value to where it belongs (a key id, a token hash), so a sealed value moved
/// elsewhere does not open.
pub mod seal {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
    use ring::rand::{SecureRandom, SystemRandom};

    fn key(k: &[u8; 32]) -> Option<LessSafeKey> {
        UnboundKey::new(&CHACHA20_POLY1305, k)
            .ok()
            .map(LessSafeKey::new)
    }

    /// Seals `plaintext`; `None` only if the system's random source fails.
    pub fn seal(k: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut buf = plaintext.to_vec();
        key(k)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(super::b64(&out))
    }

    /// Opens what [`seal`] made under the same key and `aad`; `None` if anything differs.
    pub fn open(k: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let raw = super::b64_decode(sealed)?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let plain = key(k)?
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_sealed_value_opens_only_with_its_key_and_aad() {
            let k = [7u8; 32];
            let s = seal(&k, b"kid-1", b"secret").expect("seal");
            assert_eq!(open(&k, b"kid-1", &s).as_deref(), Some(&b"secret"[..]));
            assert_eq!(open(&k, b"kid-2", &s), None, "moved elsewhere");
            assert_eq!(open(&[8u8; 32], b"kid-1", &s), None, "another key");
            let mut tampered = s.into_bytes();
            let last = tampered.len() - 3;
            tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).expect("ascii");
            assert_eq!(open(&k, b"kid-1", &tampered), None, "tampered");
            assert_eq!(open(&k, b"kid-1", "short"), None);
        }
    }
}
