//! Secrets in configuration.

use std::fmt;

/// A secret that never prints, not even in `Debug` (so settings can be logged whole).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The least a server secret may carry: 32 bytes (256 bits) of key material.
pub const MIN_SECRET_BYTES: usize = 32;

impl Secret {
    /// Checks that the secret holds at least [`MIN_SECRET_BYTES`] of key material, as
    /// `openssl rand -base64 32` (or `-hex 32`) gives: base64 (standard or URL-safe, padded
    /// or not) or hex is decoded and counted; anything else must be at least 64 characters
    /// with at least 16 different ones. A short, guessable secret would let anyone forge
    /// what it MACs (access tokens, CSRF tokens, cookies).
    pub fn check_strength(&self, name: &str) -> Result<(), String> {
        use base64::Engine as _;
        let s = self.0.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let hex = (s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(s.len() / 2);
        let decoded: Option<Vec<u8>> = match hex {
            Some(_) => Some(
                (0..s.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                    .collect(),
            ),
            None => engines.iter().find_map(|e| e.decode(s).ok()),
        };
        let distinct = s.chars().collect::<std::collections::HashSet<_>>().len();
        // A short unit repeated ("changeme" eight times is valid base64 of 48 bytes)
        // carries no more than the unit: judged by its content, not its length.
        let b = s.as_bytes();
        let periodic = (1..=b.len() / 2)
            .any(|p| b.len().is_multiple_of(p) && b.chunks(p).all(|c| c == &b[..p]));
        let ok = !periodic
            && match decoded {
                // Thirty-two random bytes have about 30 different values; 16 is far below.
                Some(bytes) => {
                    bytes.len() >= MIN_SECRET_BYTES
                        && bytes.iter().collect::<std::collections::HashSet<_>>().len() >= 16
                }
                None => s.chars().count() >= 2 * MIN_SECRET_BYTES && distinct >= 16,
            };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{name} is too weak: it must carry at least {MIN_SECRET_BYTES} random bytes \
                 (make one with `openssl rand -base64 32`)"
            ))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_guessable_secrets_are_refused() {
        for weak in [
            "",
            "changeme",
            "secret-secret-secret-secret-secret",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBka", // 27 bytes
            "00112233445566778899aabbccddeeff",     // 16 bytes hex
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", // one char
        ] {
            assert!(Secret::new(weak).check_strength("K").is_err(), "{weak}");
        }
        // Long enough to decode to 32 bytes or more, and no secret at all (issue 32,
        // point 11: "changeme" eight times passed).
        for weak in [
            "changeme".repeat(8),
            "0123456789abcdef".repeat(4),
            "AAAA".repeat(16),
        ] {
            assert!(Secret::new(&weak).check_strength("K").is_err(), "{weak}");
        }
    }

    #[test]
    fn thirty_two_random_bytes_in_any_usual_spelling_pass() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        use base64::Engine as _;
        for good in [
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            crate::keys::random_token(32),
            "correct horse battery staple, then a long sentence nobody would guess".into(),
        ] {
            assert!(Secret::new(&good).check_strength("K").is_ok(), "{good}");
        }
    }
}
