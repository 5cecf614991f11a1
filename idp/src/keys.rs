//! ID token signing keys: generation, storage in SQL, rotation and the published JWKS.
//!
//! Lifecycle of a key: created and published in JWKS at once; signs from `activate_at`
//! (rotation sets it in the future, so relying parties' JWKS caches learn the key before
//! the first token signed with it); stops signing at `retire_at`, when its successor
//! activates; leaves JWKS at `expires_at`, after every ID token it signed has expired.
//! Every replica reloads keys from SQL periodically, so a rotation made by the CLI reaches
//! all of them without a restart.
//!
//! Private keys are sealed at rest (ChaCha20-Poly1305, the key id as associated data)
//! under a key-encryption key that never enters SQL: `EMTA_KEY_ENCRYPTION_KEY`, or by
//! default one derived from `EMTA_SECRET_KEY`. A database dump or backup alone cannot sign
//! an ID token. Rows sealed under an older key-encryption key (listed as "also opens")
//! and rows stored before sealing existed are sealed under the current one at start-up.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;
use serde_json::{json, Value};

use crate::crypto::{b64, b64_decode, random_token};
use crate::domain::SigningAlg;
use crate::store::sql::{Db, KeyRow, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("stored key {kid} is unusable: {detail}")]
    Corrupt { kid: String, detail: String },
    #[error("no active {0} signing key")]
    NoActiveKey(&'static str),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct ActiveKey {
    kid: String,
    key: EncodingKey,
}

/// The keys in force right now, rebuilt from SQL on every reload.
#[derive(Default)]
struct KeySet {
    signing: HashMap<&'static str, ActiveKey>,
    verifying: HashMap<String, (Algorithm, DecodingKey)>,
    jwks: Value,
}

#[derive(Clone, Default)]
pub struct Keys {
    current: Arc<RwLock<Arc<KeySet>>>,
    /// Key-encryption keys: the first seals, every one opens. Empty only in unit tests.
    keks: Arc<Vec<[u8; 32]>>,
}

/// How a sealed private key is stored: this prefix, then `seal(kek, kid, der_b64)`.
const SEALED: &str = "sealed:v1:";

/// A key-encryption key from a secret of the environment.
pub fn kek_from_secret(secret: &str) -> [u8; 32] {
    crate::crypto::sha256(format!("emta signing-key kek\n{secret}").as_bytes())
}

/// The key-encryption keys in force: the given one (or, if none, one derived from the
/// server secret) seals; the previous one and the server secret's also open.
pub fn keks(kek: &str, previous: &str, server_secret: &str) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for s in [kek, previous, server_secret] {
        if !s.is_empty() && !out.contains(&kek_from_secret(s)) {
            out.push(kek_from_secret(s));
        }
    }
    out
}

/// Generates a fresh key row for `alg`, signing from `activate_at`.
pub fn generate(alg: SigningAlg, now: i64, activate_at: i64) -> Result<KeyRow, KeyError> {
    let kid = format!("{}-{}", alg.as_str().to_lowercase(), random_token(9));
    let (private_der, jwk) = match alg {
        SigningAlg::ES256 => {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|e| KeyError::Generate(e.to_string()))?;
            // Uncompressed SEC1 point: 0x04 || X (32) || Y (32).
            let point = pair.public_key().as_ref();
            let jwk = json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            });
            (b64(pkcs8.as_ref()), jwk)
        }
        SigningAlg::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let der = key
                .to_pkcs1_der()
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            let jwk = json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            });
            (b64(der.as_bytes()), jwk)
        }
    };
    Ok(KeyRow {
        kid,
        alg: alg.as_str().to_owned(),
        private_der,
        public_jwk: jwk.to_string(),
        created_at: now,
        activate_at,
        retire_at: None,
        expires_at: None,
    })
}

/// Makes sure each algorithm has a key that signs now (first start of a deployment), and
/// that every stored key is sealed under the current key-encryption key.
pub async fn ensure_keys(db: &Db, keys: &Keys, now: i64) -> Result<(), KeyError> {
    let rows = db.signing_keys().await?;
    for row in &rows {
        if keys.unsealed(row) {
            // Not sealing it now: a row without the seal is one this service did not
            // write (keys are sealed as they are made), and sealing it would adopt it.
            tracing::error!(kid = %row.kid, "an unsealed signing key row is ignored");
            continue;
        }
        if !keys.sealed_under_current(row) {
            let der = keys.open(row)?;
            db.set_signing_key_private(&row.kid, &keys.seal(&row.kid, &der)?)
                .await?;
            tracing::info!(kid = %row.kid, "signing key sealed under the current key-encryption key");
        }
    }
    for alg in [SigningAlg::ES256, SigningAlg::RS256] {
        let has_active = rows.iter().any(|k| {
            !keys.unsealed(k)
                && k.alg == alg.as_str()
                && k.activate_at <= now
                && k.retire_at.is_none_or(|r| r > now)
        });
        if !has_active {
            let mut row = tokio::task::spawn_blocking(move || generate(alg, now, now))
                .await
                .map_err(|e| KeyError::Generate(e.to_string()))??;
            row.private_der = keys.seal(&row.kid, &row.private_der)?;
            db.add_signing_key(&row, None).await?;
        }
    }
    Ok(())
}

/// Rotates `alg`: the new key is published now and signs from `now + publish_ahead`; the
/// current key retires then and leaves JWKS `token_ttl` (plus a margin) later.
pub async fn rotate(
    db: &Db,
    keys: &Keys,
    alg: SigningAlg,
    now: i64,
    publish_ahead: i64,
    token_ttl: i64,
) -> Result<KeyRow, KeyError> {
    let activate_at = now + publish_ahead;
    let mut row = tokio::task::spawn_blocking(move || generate(alg, now, activate_at))
        .await
        .map_err(|e| KeyError::Generate(e.to_string()))??;
    row.private_der = keys.seal(&row.kid, &row.private_der)?;
    db.add_signing_key(&row, Some((activate_at, activate_at + token_ttl + 300)))
        .await?;
    Ok(row)
}

impl Keys {
    /// Keys sealed under `keks[0]`, opened with any of `keks`.
    pub fn new(keks: Vec<[u8; 32]>) -> Self {
        Self {
            current: Default::default(),
            keks: Arc::new(keks),
        }
    }

    /// Seals a private key (base64 DER) for storage.
    pub fn seal(&self, kid: &str, der_b64: &str) -> Result<String, KeyError> {
        let Some(kek) = self.keks.first() else {
            return Ok(der_b64.to_owned());
        };
        service_kit::keys::seal::seal(kek, kid.as_bytes(), der_b64.as_bytes())
            .map(|sealed| format!("{SEALED}{sealed}"))
            .ok_or_else(|| KeyError::Generate("sealing the private key failed".into()))
    }

    /// A row stored without the seal while this service seals its keys: not one it
    /// wrote (someone with the database's role planted it), so never loaded, published or
    /// used to sign.
    fn unsealed(&self, row: &KeyRow) -> bool {
        !self.keks.is_empty() && !row.private_der.starts_with(SEALED)
    }

    fn sealed_under_current(&self, row: &KeyRow) -> bool {
        match (self.keks.first(), row.private_der.strip_prefix(SEALED)) {
            (None, _) => true,
            (Some(kek), Some(sealed)) => {
                service_kit::keys::seal::open(kek, row.kid.as_bytes(), sealed).is_some()
            }
            (Some(_), None) => false,
        }
    }

    /// The private key of a stored row (base64 DER), opened with any key-encryption key.
    fn open(&self, row: &KeyRow) -> Result<String, KeyError> {
        let Some(sealed) = row.private_der.strip_prefix(SEALED) else {
            return Ok(row.private_der.clone());
        };
        self.keks
            .iter()
            .find_map(|kek| service_kit::keys::seal::open(kek, row.kid.as_bytes(), sealed))
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or_else(|| KeyError::Corrupt {
                kid: row.kid.clone(),
                detail: "sealed under a key-encryption key this replica does not have \
                         (EMTA_KEY_ENCRYPTION_KEY or EMTA_SECRET_KEY changed?)"
                    .into(),
            })
    }

    /// Rebuilds the key set from SQL rows (called at start and periodically).
    pub fn load(&self, rows: &[KeyRow], now: i64) -> Result<(), KeyError> {
        let mut set = KeySet::default();
        let mut published = Vec::new();
        // Rows come ordered by activate_at, so a later active key replaces an earlier one.
        for row in rows {
            if row.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            if self.unsealed(row) {
                tracing::error!(kid = %row.kid, "an unsealed signing key row is ignored");
                metrics::counter!("emta_signing_key_rejected_total").increment(1);
                continue;
            }
            let corrupt = |detail: &str| KeyError::Corrupt {
                kid: row.kid.clone(),
                detail: detail.to_owned(),
            };
            let jwk: Value = serde_json::from_str(&row.public_jwk).map_err(|_| corrupt("jwk"))?;
            let der = b64_decode(&self.open(row)?).ok_or_else(|| corrupt("der"))?;
            let field = |name: &str| jwk[name].as_str().unwrap_or_default().to_owned();
            let (alg_name, algorithm, encoding, decoding) = match row.alg.as_str() {
                "ES256" => (
                    "ES256",
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(&der),
                    DecodingKey::from_ec_components(&field("x"), &field("y"))
                        .map_err(|_| corrupt("ec public key"))?,
                ),
                "RS256" => (
                    "RS256",
                    Algorithm::RS256,
                    EncodingKey::from_rsa_der(&der),
                    DecodingKey::from_rsa_components(&field("n"), &field("e"))
                        .map_err(|_| corrupt("rsa public key"))?,
                ),
                _ => return Err(corrupt("algorithm")),
            };
            set.verifying.insert(row.kid.clone(), (algorithm, decoding));
            published.push(jwk);
            let signs_now = row.activate_at <= now && row.retire_at.is_none_or(|r| r > now);
            if signs_now {
                set.signing.insert(
                    alg_name,
                    ActiveKey {
                        kid: row.kid.clone(),
                        key: encoding,
                    },
                );
            }
        }
        set.jwks = json!({ "keys": published });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn jwks(&self) -> Value {
        self.snapshot().jwks.clone()
    }

    /// Signs `claims` as a JWS with the active key of `alg`.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, claims: &T) -> Result<String, KeyError> {
        self.sign_typed(alg, None, claims)
    }

    /// [`Keys::sign`] with an explicit `typ` header (`logout+jwt` for logout tokens, so
    /// that no verifier can take one for an ID token).
    pub fn sign_typed<T: Serialize>(
        &self,
        alg: SigningAlg,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, KeyError> {
        let set = self.snapshot();
        let active = set
            .signing
            .get(alg.as_str())
            .ok_or(KeyError::NoActiveKey(alg.as_str()))?;
        let mut header = Header::new(match alg {
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::RS256 => Algorithm::RS256,
        });
        header.kid = Some(active.kid.clone());
        if let Some(t) = typ {
            header.typ = Some(t.to_owned());
        }
        Ok(jsonwebtoken::encode(&header, claims, &active.key)?)
    }

    /// Verifies a JWS we signed (an `id_token_hint`), ignoring expiry, and returns its
    /// claims. `None` for anything not signed by a published key.
    pub fn verify_own(&self, token: &str, issuer: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        // An ID token's type, or none: never a logout token or a trust badge (issue 34),
        // which the same keys sign.
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return None;
        }
        let set = self.snapshot();
        let (alg, key) = set.verifying.get(header.kid.as_deref()?)?;
        if header.alg != *alg {
            return None;
        }
        let mut v = Validation::new(*alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_issuer(&[issuer]);
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, key, &v)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key() {
        let keys = Keys::default();
        let rows = vec![
            generate(SigningAlg::ES256, 0, 0).expect("es"),
            generate(SigningAlg::RS256, 0, 0).expect("rs"),
        ];
        keys.load(&rows, 10).expect("load");
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let t = keys
                .sign(alg, &json!({"iss": "https://idp", "sub": "x"}))
                .expect("sign");
            let claims = keys.verify_own(&t, "https://idp").expect("verify");
            assert_eq!(claims["sub"], "x");
            assert!(keys.verify_own(&t, "https://other").is_none());
        }
        assert_eq!(keys.jwks()["keys"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_sealed_key_opens_only_under_a_known_kek() {
        let row = generate(SigningAlg::ES256, 0, 0).expect("es");
        let old = Keys::new(vec![kek_from_secret("old")]);
        let mut sealed = row.clone();
        sealed.private_der = old.seal(&row.kid, &row.private_der).expect("seal");
        assert!(sealed.private_der.starts_with(SEALED));
        assert!(!sealed.private_der.contains(&row.private_der));
        assert!(old.load(std::slice::from_ref(&sealed), 10).is_ok());
        let stranger = Keys::new(vec![kek_from_secret("other")]);
        assert!(matches!(
            stranger.load(std::slice::from_ref(&sealed), 10),
            Err(KeyError::Corrupt { .. })
        ));
        let rotated = Keys::new(vec![kek_from_secret("new"), kek_from_secret("old")]);
        assert!(rotated.load(std::slice::from_ref(&sealed), 10).is_ok());
        assert!(
            !rotated.sealed_under_current(&sealed),
            "resealed at start-up"
        );
        // A row sealed for one key id does not open as another's.
        let mut moved = sealed.clone();
        moved.kid = "es256-other".into();
        assert!(old.open(&moved).is_err());
    }

    #[test]
    fn a_key_published_ahead_does_not_sign_yet() {
        let keys = Keys::default();
        let old = generate(SigningAlg::ES256, 0, 0).expect("old");
        let mut next = generate(SigningAlg::ES256, 0, 100).expect("next");
        next.created_at = 50;
        keys.load(&[old.clone(), next.clone()], 60).expect("load");
        let t = keys
            .sign(SigningAlg::ES256, &json!({"iss": "i"}))
            .expect("sign");
        let kid = jsonwebtoken::decode_header(&t).expect("header").kid;
        assert_eq!(kid.as_deref(), Some(old.kid.as_str()));
        assert_eq!(keys.jwks()["keys"].as_array().map(Vec::len), Some(2));
    }
}
