//! `emta-verify` (and `presale verify`, the same command): audit a campaign from its public
//! transparency log alone, read over HTTP from the presale service or from a file saved
//! earlier, and exit non-zero on any finding.

use std::path::PathBuf;

use crate::audit::{self, HttpSource, LogSource};

/// Audit a campaign from its public transparency log alone: checkpoints, consistency,
/// the seed, the shuffle, the admission order, the draw and every acceptance. Exits
/// non-zero on any finding.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The presale service's public URL (`https://…`), or a file saved with `--save`.
    pub log: String,
    /// The campaign (license id).
    pub campaign: String,
    /// The log's verifier key, obtained out of band (the ministry's site); without it the
    /// key the service publishes is used (trust on first use). Required with a file.
    #[arg(long)]
    pub key: Option<String>,
    /// A file of checkpoints kept from earlier runs: the log must still agree with every
    /// one, and the latest is added to it.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A witness's verifier key (repeatable): each must have kept up with the log, so a
    /// split view is a finding.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// Citizens' promises of inclusion (a JSON file: one promise as downloaded from a
    /// waiting room, or a list of them): each must be the service's and kept.
    #[arg(long)]
    pub promises: Option<PathBuf>,
    /// The promise key, obtained out of band; without it the published one is used.
    #[arg(long)]
    pub promise_key: Option<String>,
    /// Save the log as read (its checkpoints and records) to this file, to audit it again
    /// offline or hand it to someone else.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// A campaign's public log saved to a file: its signed checkpoints and its records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedLog {
    pub campaign: String,
    pub checkpoints: Vec<String>,
    pub records: Vec<String>,
}

impl SavedLog {
    /// Reads campaign `campaign`'s whole log from `source`: every checkpoint, and the
    /// records up to the largest that verifies with `key` (a size nobody signed fetches
    /// nothing).
    pub async fn read(source: &impl LogSource, campaign: &str, key: &str) -> Result<Self, String> {
        let checkpoints = source.checkpoints(campaign).await?;
        let size = checkpoints
            .iter()
            .filter_map(|c| crate::open_checkpoint(c, key, campaign).ok())
            .map(|h| h.size)
            .max()
            .unwrap_or(0);
        let records = audit::fetch_records(source, campaign, size).await?;
        Ok(Self {
            campaign: campaign.to_owned(),
            checkpoints,
            records,
        })
    }
}

impl LogSource for SavedLog {
    async fn checkpoints(&self, campaign: &str) -> Result<Vec<String>, String> {
        if campaign != self.campaign {
            return Err(format!("the file holds campaign {}'s log", self.campaign));
        }
        Ok(self.checkpoints.clone())
    }

    async fn records(&self, campaign: &str, start: u64, end: u64) -> Result<Vec<String>, String> {
        if campaign != self.campaign {
            return Err(format!("the file holds campaign {}'s log", self.campaign));
        }
        let end = (end as usize).min(self.records.len());
        Ok(self
            .records
            .get(start as usize..end)
            .map(<[String]>::to_vec)
            .unwrap_or_default())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl VerifyArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let from_http = self.log.starts_with("http://") || self.log.starts_with("https://");
        let http = from_http.then(|| HttpSource::new(&self.log));
        let key = match (self.key, &http) {
            (Some(k), _) => k,
            (None, Some(h)) => {
                let k = h.key().await.map_err(anyhow::Error::msg)?;
                println!("key (as published, not pinned): {k}");
                k
            }
            (None, None) => anyhow::bail!("--key: a saved log is checked against a pinned key"),
        };
        let saved = match &http {
            Some(h) => SavedLog::read(h, &self.campaign, &key)
                .await
                .map_err(anyhow::Error::msg)?,
            None => serde_json::from_slice(&std::fs::read(&self.log)?)
                .map_err(|e| anyhow::anyhow!("{}: not a saved log: {e}", self.log))?,
        };
        if let Some(file) = &self.save {
            std::fs::write(file, serde_json::to_vec_pretty(&saved)?)?;
            println!("saved: {}", file.display());
        }
        let kept: Vec<String> = match &self.state {
            Some(p) if p.exists() => serde_json::from_slice(&std::fs::read(p)?)?,
            _ => Vec::new(),
        };
        for w in &self.witnesses {
            anyhow::ensure!(
                signed_note::StandardVerifier::new(w).is_ok(),
                "--witness {w}: not a verifier key (name+id+key)"
            );
        }
        let campaign = self.campaign;
        let mut report =
            audit::audit_witnessed(&saved, &campaign, &key, &kept, &self.witnesses, now_ms())
                .await
                .map_err(anyhow::Error::msg)?;
        if let Some(file) = &self.promises {
            use crate::promise::Promise;
            // As downloaded (`{"promise": …, "verdict": …}`), bare, or a list of either.
            let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?)?;
            let items = match raw {
                serde_json::Value::Array(v) => v,
                one => vec![one],
            };
            let list: Vec<Promise> = items
                .into_iter()
                .map(|v| serde_json::from_value(v.get("promise").cloned().unwrap_or(v)))
                .collect::<Result<_, _>>()?;
            let pk = match (self.promise_key, &http) {
                (Some(k), _) => k,
                (None, Some(h)) => h.promise_key().await.map_err(anyhow::Error::msg)?,
                (None, None) => anyhow::bail!("--promise-key: needed with a saved log"),
            };
            let found = audit::audit_promises(&saved, &campaign, &key, &pk, &list, now_ms())
                .await
                .map_err(anyhow::Error::msg)?;
            report
                .checked
                .push(format!("{} promises of inclusion judged", list.len()));
            report.findings.extend(found);
        }
        for c in &report.checked {
            println!("checked: {c}");
        }
        for f in &report.findings {
            println!("FINDING: {f}");
        }
        if let (Some(p), Some(latest)) = (&self.state, &report.latest) {
            let mut kept = kept;
            // One entry per checkpoint, whatever cosignatures it carried each time.
            let text = crate::witness::note_text;
            if !kept.iter().any(|k| text(k) == text(&latest.note)) {
                kept.push(latest.note.clone());
            }
            std::fs::write(p, serde_json::to_vec_pretty(&kept)?)?;
        }
        if let Some(latest) = &report.latest {
            println!(
                "audited: {} records, to the checkpoint signed at {} ms{}",
                latest.size,
                latest.at_ms,
                if http.is_none() {
                    " (a saved log: whether it is the whole log, only the log can say)"
                } else {
                    ""
                }
            );
        }
        if report.ok() {
            println!("campaign {campaign}: everything recomputed from the log matches");
            Ok(())
        } else {
            anyhow::bail!("campaign {campaign}: {} findings", report.findings.len())
        }
    }
}
