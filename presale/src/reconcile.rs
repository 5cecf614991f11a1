//! `presale reconcile`: emta's holds for a round against each participating bank's
//! statement (issue 30). Every difference is reported, by kind: a mandate the bank holds
//! that emta does not know, one captured twice, one both released and captured, one still
//! held although emta settled it (or decided to), one emta counts that the bank does not
//! have, and one where the two disagree on the state, the amount or the person.

use std::collections::HashMap;

use serde::Serialize;

use crate::adapters::bank::{Banks, StatementEntry};
use crate::store::holds::{Hold, HoldState};
use crate::store::{Store, StoreError};

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The bank holds (or took) money under a mandate emta has no confirmed hold for.
    UnknownToEmta,
    CapturedTwice,
    ReleasedAndCaptured,
    /// emta settled the hold (or decided to), and the bank still holds the money.
    StillHeldAfterRound,
    /// emta counts a hold that the bank's statement does not have.
    MissingAtBank,
    /// Captured at one and released at the other.
    StateDiffers,
    /// Another amount, title or national ID than emta's record.
    TermsDiffer,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub kind: Kind,
    pub bank: String,
    pub token: String,
    /// emta's hold id, if it has one.
    pub hold: Option<String>,
    /// The hold's state at emta, and the mandate's at the bank.
    pub emta: Option<String>,
    pub at_bank: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub license: String,
    pub round: String,
    /// emta's holds compared, and the banks' statement lines.
    pub holds: usize,
    pub statement_lines: usize,
    pub differences: Vec<Difference>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no such license")]
    NoLicense,
    #[error("this license takes no hold")]
    NoHolds,
    #[error("bank {0} is not configured here (EMTA_BANKS_FILE)")]
    UnknownBank(String),
    #[error("bank {bank}: {error}")]
    Bank { bank: String, error: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Compares a license's holds with its banks' statements.
pub async fn reconcile(
    store: &Store,
    banks: &Banks,
    license_id: &str,
) -> Result<Report, ReconcileError> {
    let l = store
        .license(license_id)
        .await?
        .ok_or(ReconcileError::NoLicense)?;
    let terms = l
        .registration
        .as_ref()
        .and_then(|r| r.hold.clone())
        .ok_or(ReconcileError::NoHolds)?;
    let holds = store.holds_of_license(license_id).await?;
    let mut lines = Vec::new();
    for b in &terms.banks {
        let bank = banks
            .get(b)
            .ok_or_else(|| ReconcileError::UnknownBank(b.clone()))?;
        let statement = bank
            .statement(&l.license_no)
            .await
            .map_err(|e| ReconcileError::Bank {
                bank: b.clone(),
                error: e.to_string(),
            })?;
        lines.extend(statement.entries.into_iter().map(|e| (b.clone(), e)));
    }
    Ok(Report {
        license: license_id.to_owned(),
        round: l.license_no.clone(),
        holds: holds.len(),
        statement_lines: lines.len(),
        differences: differences(&holds, &lines),
    })
}

/// The differences between emta's holds and the banks' lines `(bank, line)`.
pub fn differences(holds: &[Hold], lines: &[(String, StatementEntry)]) -> Vec<Difference> {
    let mut out = Vec::new();
    // Holds that the banks should know: confirmed at some point.
    let ours: HashMap<(&str, &str), &Hold> = holds
        .iter()
        .filter(|h| h.state != HoldState::Pending)
        .filter_map(|h| h.token.as_deref().map(|t| ((h.bank.as_str(), t), h)))
        .collect();
    let diff =
        |kind, bank: &str, token: &str, h: Option<&Hold>, e: Option<&StatementEntry>| Difference {
            kind,
            bank: bank.to_owned(),
            token: token.to_owned(),
            hold: h.map(|h| h.id.clone()),
            emta: h.map(|h| h.state.as_str().to_owned()),
            at_bank: e.map(|e| {
                format!(
                    "{} (captures {}, releases {})",
                    e.status, e.captures, e.releases
                )
            }),
        };
    let mut seen = std::collections::HashSet::new();
    for (bank, e) in lines {
        let h = ours.get(&(bank.as_str(), e.token.as_str())).copied();
        seen.insert((bank.as_str(), e.token.as_str()));
        let Some(h) = h.filter(|h| h.id == e.reference) else {
            out.push(diff(Kind::UnknownToEmta, bank, &e.token, None, Some(e)));
            continue;
        };
        if e.captures > 1 {
            out.push(diff(Kind::CapturedTwice, bank, &e.token, Some(h), Some(e)));
        }
        if e.captures >= 1 && e.releases >= 1 {
            out.push(diff(
                Kind::ReleasedAndCaptured,
                bank,
                &e.token,
                Some(h),
                Some(e),
            ));
        }
        if e.amount != h.amount || e.title != h.title || e.national_id != h.national_id {
            out.push(diff(Kind::TermsDiffer, bank, &e.token, Some(h), Some(e)));
        }
        let settled_here = matches!(
            h.state,
            HoldState::Capturing | HoldState::Releasing | HoldState::Captured | HoldState::Released
        );
        if e.status == "held" && settled_here {
            out.push(diff(
                Kind::StillHeldAfterRound,
                bank,
                &e.token,
                Some(h),
                Some(e),
            ));
        }
        let crossed = (matches!(h.state, HoldState::Captured | HoldState::Capturing)
            && e.status == "released")
            || (matches!(h.state, HoldState::Released | HoldState::Releasing)
                && e.status == "captured")
            || (h.state == HoldState::Held && matches!(e.status.as_str(), "captured" | "released"));
        if crossed {
            out.push(diff(Kind::StateDiffers, bank, &e.token, Some(h), Some(e)));
        }
    }
    for ((bank, token), h) in &ours {
        if !seen.contains(&(*bank, *token)) {
            out.push(diff(Kind::MissingAtBank, bank, token, Some(h), None));
        }
    }
    out.sort_by(|a, b| {
        (a.bank.as_str(), a.token.as_str()).cmp(&(b.bank.as_str(), b.token.as_str()))
    });
    out
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "round {} (license {}): {} holds at emta, {} statement lines, {} differences\n",
            self.round,
            self.license,
            self.holds,
            self.statement_lines,
            self.differences.len()
        );
        if !self.differences.is_empty() {
            s.push_str(&format!(
                "{:<24} {:<12} {:<26} {:<18} {:<12} {}\n",
                "kind", "bank", "token", "hold", "emta", "bank says"
            ));
            for d in &self.differences {
                let kind = serde_json::to_value(d.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                s.push_str(&format!(
                    "{:<24} {:<12} {:<26} {:<18} {:<12} {}\n",
                    kind,
                    d.bank,
                    d.token,
                    d.hold.as_deref().unwrap_or("-"),
                    d.emta.as_deref().unwrap_or("-"),
                    d.at_bank.as_deref().unwrap_or("-")
                ));
            }
        }
        s
    }
}
