//! Complaints' attachments (issue 34), kept outside the database under their content hash:
//! `{dir}/{first two hex digits}/{sha256 hex}`. Written once (to a temporary name, then
//! renamed into place: a reader never sees half a file), read back only after the hash
//! is checked again, so a file changed on disk is refused rather than served. The same
//! bytes sent twice are stored once. Which party may read which file is the store's
//! business ([`crate::store::redress`]); this knows bytes only.

use std::io;
use std::path::PathBuf;

/// The directory every replica shares.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `s` is a SHA-256 as this store names files.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Files {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(sha)
    }

    /// Stores `bytes`; their SHA-256 (hex).
    pub async fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = hex(&service_kit::keys::sha256(bytes));
        let path = self.path(&sha);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(sha);
        }
        let parent = self.dir.join(&sha[..2]);
        tokio::fs::create_dir_all(&parent).await?;
        let tmp = parent.join(format!(
            ".{sha}.{}",
            service_kit::keys::random_token(6).replace(['-', '_'], "x")
        ));
        // On disk before it has a name: a crash leaves a temporary file, never a short one
        // under the hash.
        let written = async {
            use tokio::io::AsyncWriteExt;
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(bytes).await?;
            f.sync_all().await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(sha)
    }

    /// The bytes stored under `sha`, if they still hash to it.
    pub async fn get(&self, sha: &str) -> io::Result<Vec<u8>> {
        if !is_sha256(sha) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sha256"));
        }
        let bytes = tokio::fs::read(self.path(sha)).await?;
        if hex(&service_kit::keys::sha256(&bytes)) != sha {
            tracing::error!(
                file = sha,
                "an attachment on disk no longer matches its hash"
            );
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "changed on disk",
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_kept_by_their_hash_and_refused_when_changed() {
        let dir =
            std::env::temp_dir().join(format!("emta-files-{}", service_kit::keys::random_token(6)));
        let files = Files::new(dir.clone());
        let sha = files.put(b"%PDF-1.7 a work order").await.expect("put");
        assert!(is_sha256(&sha));
        assert_eq!(
            files.put(b"%PDF-1.7 a work order").await.expect("again"),
            sha
        );
        assert_eq!(
            files.get(&sha).await.expect("get"),
            b"%PDF-1.7 a work order"
        );
        std::fs::write(dir.join(&sha[..2]).join(&sha), b"%PDF-1.7 another").expect("tamper");
        assert!(
            files.get(&sha).await.is_err(),
            "a changed file is not served"
        );
        assert!(files.get("../../etc/passwd").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
