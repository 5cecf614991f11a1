//! Small cryptographic helpers: random tokens, keyed hashes, CSRF tokens and the
//! proof-of-work challenge.
//!
//! Client secrets, OTPs and token values are high-entropy server-generated values, so they
//! are stored as a keyed fast hash (HMAC-SHA256 under a server pepper), never with a slow
//! password hash: a slow hash on every token request is how an IdP loses its throughput,
//! and it buys nothing against 256-bit secrets. The pepper means a database dump alone
//! cannot confirm a guessed OTP or secret.

pub use service_kit::keys::{b64, b64_decode, ct_eq, random_token, sha256};

/// A uniformly random 6-digit code.
pub fn random_otp() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The IdP's keyring: purpose-separated keys under `EMTA_SECRET_KEY`, with the purposes
/// of hot paths derived once.
#[derive(Clone)]
pub struct Keyring(service_kit::keys::Keyring);

/// Purposes used on hot paths; others are derived on demand.
const PURPOSES: &[&str] = &[
    "access-token-seal",
    "client-secret",
    "csrf",
    "login-pending",
    "otp",
    "pow-challenge",
    "rate-subject",
];

impl Keyring {
    pub fn new(master: &[u8]) -> Self {
        Self(service_kit::keys::Keyring::new(master, PURPOSES))
    }

    /// The service-neutral keyring underneath (the shared rate limiter takes it).
    pub fn inner(&self) -> &service_kit::keys::Keyring {
        &self.0
    }
}

impl std::ops::Deref for Keyring {
    type Target = service_kit::keys::Keyring;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The anti-bot challenge: find `nonce` so that SHA-256(`challenge` ":" `nonce`) starts
/// with `difficulty` zero bits. A person's browser pays it once per login in well under a
/// second; a bot farm pays it for every attempt. The challenge is self-contained and
/// signed (`issued_at.difficulty.random.mac`), so any replica can check it with no state;
/// single use is enforced by the caller through the ephemeral store. Its MAC also covers
/// what it is bound to (the login transaction and the browser), which the challenge does
/// not carry: solved challenges cannot be stockpiled and spent on other logins.
pub mod pow {
    use super::{sha256, Keyring};

    const PURPOSE: &str = "pow-challenge";

    /// A challenge for the login `binding` names (its transaction and browser).
    pub fn issue(keys: &Keyring, now: i64, difficulty: u8, binding: &str) -> String {
        let body = format!("{now}.{difficulty}.{}", super::random_token(12));
        let mac = keys.hash(PURPOSE, format!("{body}|{binding}").as_bytes());
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
    /// `min_difficulty` gives the least difficulty accepted for a challenge of a given age
    /// in seconds (the deployment's level may have risen since it was issued).
    pub fn verify(
        keys: &Keyring,
        challenge: &str,
        binding: &str,
        nonce: &str,
        now: i64,
        max_age: i64,
        min_difficulty: impl Fn(i64) -> u8,
    ) -> Result<String, PowError> {
        let mut parts = challenge.rsplitn(2, '.');
        let mac = parts.next().ok_or(PowError::Malformed)?;
        let body = parts.next().ok_or(PowError::Malformed)?;
        if !keys.verify(PURPOSE, format!("{body}|{binding}").as_bytes(), mac) {
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
        if difficulty < min_difficulty(now - issued) {
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

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_solved_challenge_verifies_once_fresh() {
            let keys = Keyring::new(b"k");
            let c = issue(&keys, 1000, 8, "tx|b");
            let n = testkit::login::solve_pow(&c);
            assert!(verify(&keys, &c, "tx|b", &n, 1010, 300, |_| 8).is_ok());
            assert_eq!(
                verify(&keys, &c, "tx|b", &n, 2000, 300, |_| 8),
                Err(PowError::Expired)
            );
            assert_eq!(
                verify(&keys, &c, "tx|b", &n, 1010, 300, |_| 9),
                Err(PowError::TooEasy)
            );
        }

        #[test]
        fn a_solved_challenge_is_good_only_for_its_login_and_browser() {
            let keys = Keyring::new(b"k");
            let c = issue(&keys, 1000, 8, "tx-1|browser-1");
            let n = testkit::login::solve_pow(&c);
            for other in ["tx-2|browser-1", "tx-1|browser-2"] {
                assert_eq!(
                    verify(&keys, &c, other, &n, 1010, 300, |_| 8),
                    Err(PowError::Malformed),
                    "{other}"
                );
            }
        }

        #[test]
        fn a_forged_or_unsolved_challenge_fails() {
            let keys = Keyring::new(b"k");
            let c = issue(&keys, 1000, 16, "t");
            let forged = c.replacen(".16.", ".1.", 1);
            assert_eq!(
                verify(&keys, &forged, "t", "0", 1000, 300, |_| 1),
                Err(PowError::Malformed)
            );
            let wrong = (0..)
                .map(|i: u32| i.to_string())
                .find(|n| leading_zero_bits(&c, n) < 16)
                .unwrap_or_default();
            assert_eq!(
                verify(&keys, &c, "t", &wrong, 1000, 300, |_| 16),
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
