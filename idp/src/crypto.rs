//! Small cryptographic helpers: random tokens, keyed hashes, CSRF tokens and the
//! proof-of-work challenge.
//!
//! Client secrets, OTPs and token values are high-entropy server-generated values, so they
//! are stored as a keyed fast hash (HMAC-SHA256 under a server pepper), never with a slow
//! password hash: a slow hash on every token request is how an IdP loses its throughput,
//! and it buys nothing against 256-bit secrets. The pepper means a database dump alone
//! cannot confirm a guessed OTP or secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `n` random bytes from the OS generator, base64url without padding.
/// `rand`'s thread-local generator is a CSPRNG (ChaCha12) seeded and periodically
/// reseeded from the OS: as unpredictable as `OsRng`, without a syscall per token.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A uniformly random 6-digit code.
pub fn random_otp() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
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

/// Derives independent keys from the one server secret, one per purpose, so a value made
/// for one purpose (a CSRF token, say) is never valid as another (a PoW challenge).
#[derive(Clone)]
pub struct Keyring {
    master: Vec<u8>,
    /// Keyed HMAC states per purpose, derived once: cloning a keyed state is cheaper than
    /// deriving the key again on every request.
    derived: std::sync::Arc<std::collections::HashMap<&'static str, HmacSha256>>,
}

/// Purposes used on hot paths; others are derived on demand.
const PURPOSES: &[&str] = &[
    "access-token",
    "client-secret",
    "csrf",
    "otp",
    "pow-challenge",
    "rate-subject",
];

impl Keyring {
    pub fn new(master: &[u8]) -> Self {
        let mut k = Self {
            master: master.to_vec(),
            derived: Default::default(),
        };
        let derived = PURPOSES.iter().map(|p| (*p, k.derive(p))).collect();
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
}

/// The anti-bot challenge: find `nonce` so that SHA-256(`challenge` ":" `nonce`) starts
/// with `difficulty` zero bits. A person's browser pays it once per login in well under a
/// second; a bot farm pays it for every attempt. The challenge is self-contained and
/// signed (`issued_at.difficulty.random.mac`), so any replica can check it with no state;
/// single use is enforced by the caller through the ephemeral store.
pub mod pow {
    use super::{sha256, Keyring};

    const PURPOSE: &str = "pow-challenge";

    pub fn issue(keys: &Keyring, now: i64, difficulty: u8) -> String {
        let body = format!("{now}.{difficulty}.{}", super::random_token(12));
        let mac = keys.hash(PURPOSE, body.as_bytes());
        format!("{body}.{mac}")
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PowError {
        Malformed,
        Expired,
        TooEasy,
        WrongSolution,
    }

    /// Checks a solved challenge; returns the challenge's random part (for single use).
    pub fn verify(
        keys: &Keyring,
        challenge: &str,
        nonce: &str,
        now: i64,
        max_age: i64,
        min_difficulty: u8,
    ) -> Result<String, PowError> {
        let mut parts = challenge.rsplitn(2, '.');
        let mac = parts.next().ok_or(PowError::Malformed)?;
        let body = parts.next().ok_or(PowError::Malformed)?;
        if !keys.verify(PURPOSE, body.as_bytes(), mac) {
            return Err(PowError::Malformed);
        }
        let mut fields = body.split('.');
        let issued: i64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(PowError::Malformed)?;
        let difficulty: u8 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(PowError::Malformed)?;
        let random = fields.next().ok_or(PowError::Malformed)?;
        if now - issued > max_age || issued > now + 5 {
            return Err(PowError::Expired);
        }
        if difficulty < min_difficulty {
            return Err(PowError::TooEasy);
        }
        if nonce.len() > 20 || leading_zero_bits(challenge, nonce) < u32::from(difficulty) {
            return Err(PowError::WrongSolution);
        }
        Ok(random.to_owned())
    }

    pub fn leading_zero_bits(challenge: &str, nonce: &str) -> u32 {
        let digest = sha256(format!("{challenge}:{nonce}").as_bytes());
        let mut bits = 0;
        for byte in digest {
            if byte == 0 {
                bits += 8;
            } else {
                bits += byte.leading_zeros();
                break;
            }
        }
        bits
    }

    /// Solves a challenge by brute force, as the page's script does (tests and the load tool).
    pub fn solve(challenge: &str) -> String {
        let difficulty: u32 = challenge
            .split('.')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut n: u64 = 0;
        loop {
            let nonce = n.to_string();
            if leading_zero_bits(challenge, &nonce) >= difficulty {
                return nonce;
            }
            n += 1;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_solved_challenge_verifies_once_fresh() {
            let keys = Keyring::new(b"k");
            let c = issue(&keys, 1000, 8);
            let n = solve(&c);
            assert!(verify(&keys, &c, &n, 1010, 300, 8).is_ok());
            assert_eq!(verify(&keys, &c, &n, 2000, 300, 8), Err(PowError::Expired));
            assert_eq!(verify(&keys, &c, &n, 1010, 300, 9), Err(PowError::TooEasy));
        }

        #[test]
        fn a_forged_or_unsolved_challenge_fails() {
            let keys = Keyring::new(b"k");
            let c = issue(&keys, 1000, 16);
            let forged = c.replacen(".16.", ".1.", 1);
            assert_eq!(
                verify(&keys, &forged, "0", 1000, 300, 1),
                Err(PowError::Malformed)
            );
            let wrong = (0..)
                .map(|i: u32| i.to_string())
                .find(|n| leading_zero_bits(&c, n) < 16)
                .unwrap_or_default();
            assert_eq!(
                verify(&keys, &c, &wrong, 1000, 300, 16),
                Err(PowError::WrongSolution)
            );
        }
    }
}

/// PKCE S256 (RFC 7636): BASE64URL(SHA256(verifier)) == challenge.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    valid_verifier && ct_eq(&b64(&sha256(verifier.as_bytes())), challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn keyed_hashes_differ_by_purpose() {
        let k = Keyring::new(b"secret");
        assert_ne!(k.hash("a", b"x"), k.hash("b", b"x"));
        assert!(k.verify("a", b"x", &k.hash("a", b"x")));
    }

    #[test]
    fn otps_are_six_digits() {
        for _ in 0..100 {
            let c = random_otp();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
