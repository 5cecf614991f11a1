//! Four-eyes, as the ministry's rules state it: what changes a campaign (issuing,
//! suspending, resuming a license, its rate, its bound, more time to apply) is a proposal
//! until a second issuer approves it; a proposal pins its exact payload by digest. The
//! store carries an approval out (see `crate::store::proposals`).

use serde::{Deserialize, Serialize};

use super::{LicenseError, NewLicense};

/// How long a proposal waits for its second pair of eyes.
pub const PROPOSAL_TTL_SECS: i64 = 24 * 3600;

/// What a proposal would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Issue {
        license: Box<NewLicense>,
    },
    Suspend {
        license_id: String,
    },
    Resume {
        license_id: String,
    },
    Rate {
        license_id: String,
        admission_per_min: i64,
    },
    /// How many may be admitted at once.
    MaxActive {
        license_id: String,
        max_active: i64,
    },
    /// More time to apply for everyone admitted and still within their time (after an
    /// outage), in minutes.
    Extend {
        license_id: String,
        minutes: i64,
    },
    /// An inspection's proposal (issue 34), made by an inspector and approved by an issuer
    /// or another inspector: a manufacturer suspended everywhere (its client at the IdP,
    /// its campaigns here, nobody's place lost), resumed, or given a rating.
    Maker {
        manufacturer: String,
        case_id: String,
        standing: MakerStanding,
    },
}

/// What an inspection proposes for a manufacturer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum MakerStanding {
    Suspend,
    Resume,
    Rate { stars: u8 },
}

impl Change {
    /// The audit log's action name.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Issue { .. } => "license.issue",
            Self::Suspend { .. } => "license.suspend",
            Self::Resume { .. } => "license.resume",
            Self::Rate { .. } => "license.rate",
            Self::MaxActive { .. } => "license.max-active",
            Self::Extend { .. } => "license.extend",
            Self::Maker { standing, .. } => match standing {
                MakerStanding::Suspend => "manufacturer.suspend",
                MakerStanding::Resume => "manufacturer.resume",
                MakerStanding::Rate { .. } => "manufacturer.rate",
            },
        }
    }

    /// Proposed by an inspector (a manufacturer's standing), not an issuer.
    pub fn by_inspector(&self) -> bool {
        matches!(self, Self::Maker { .. })
    }

    /// What the proposal is about: its license, or the manufacturer an inspection names.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Maker { manufacturer, .. } => Some(manufacturer),
            other => other.license_id(),
        }
    }

    /// The license it is about (none yet for an issue).
    pub fn license_id(&self) -> Option<&str> {
        match self {
            Self::Issue { .. } | Self::Maker { .. } => None,
            Self::Suspend { license_id }
            | Self::Resume { license_id }
            | Self::Rate { license_id, .. }
            | Self::MaxActive { license_id, .. }
            | Self::Extend { license_id, .. } => Some(license_id),
        }
    }

    /// One line for people: what would happen.
    pub fn summary(&self) -> String {
        match self {
            Self::Issue { license: l } => format!(
                "issue {} ({} {}, {} units, {}/min)",
                l.license_no, l.manufacturer, l.model, l.units, l.admission_per_min
            ),
            Self::Suspend { license_id } => format!("suspend {license_id}"),
            Self::Resume { license_id } => format!("resume {license_id}"),
            Self::Rate {
                license_id,
                admission_per_min,
            } => format!("set {license_id}'s admission rate to {admission_per_min}/min"),
            Self::MaxActive {
                license_id,
                max_active,
            } => format!("let up to {max_active} be admitted at once in {license_id}"),
            Self::Extend {
                license_id,
                minutes,
            } => format!("give everyone admitted in {license_id} {minutes} more minutes to apply"),
            Self::Maker {
                manufacturer,
                case_id,
                standing,
            } => match standing {
                MakerStanding::Suspend => format!(
                    "suspend {manufacturer} at the IdP and pause its campaigns (case {case_id})"
                ),
                MakerStanding::Resume => format!(
                    "resume {manufacturer} at the IdP and the campaigns its suspension paused (case {case_id})"
                ),
                MakerStanding::Rate { stars } => {
                    format!("rate {manufacturer} {stars} stars (case {case_id})")
                }
            },
        }
    }
}

/// A proposal's digest: SHA-256 over its exact stored payload, pinned in its
/// `proposal.create` audit entry. The approver's form carries the digest of what they were
/// shown; an approval carries the change out only if the payload still has both.
pub fn digest(payload: &str) -> String {
    service_kit::keys::b64(&service_kit::keys::sha256(
        format!("emta-proposal-v1\n{payload}").as_bytes(),
    ))
}

/// How the digest reads in the audit entry's detail.
pub(crate) fn pinned(digest: &str) -> String {
    format!("sha256:{digest}")
}

/// A proposal, pending or decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub id: String,
    pub change: Change,
    pub proposed_by: String,
    pub proposed_at: i64,
    /// [`digest`] of the stored payload.
    pub digest: String,
    /// `approved`, `rejected` or `withdrawn`; None while pending.
    pub outcome: Option<String>,
    pub decided_by: Option<String>,
}

/// Why a proposal or a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("no such pending proposal")]
    NotFound,
    #[error("a proposal needs a second issuer: its author cannot approve it")]
    OwnProposal,
    #[error("the proposal expired unapproved")]
    Expired,
    #[error("only an enabled issuer may propose or decide")]
    NotIssuer,
    /// A manufacturer's standing is proposed by an enabled inspector, and approved by an
    /// enabled issuer or another inspector.
    #[error("only an enabled inspector proposes a manufacturer's standing; an issuer or another inspector approves it")]
    NotInspector,
    #[error("no such inspection case about this manufacturer")]
    NoCase,
    /// A campaign the ministry paused by suspending its manufacturer resumes only with it.
    #[error("the manufacturer is suspended: its campaigns resume with it")]
    MakerSuspended,
    #[error("no such license")]
    NoLicense,
    #[error("the admission rate must be a positive number per minute")]
    Rate,
    /// Suspend while suspended, resume while active, a rate it has already: carried out,
    /// it would change nothing (or, for a suspension, stop the queue's clock a second
    /// time and cost people their turn).
    #[error("the license is already so: nothing to change")]
    Unchanged,
    #[error("the same change to this license is already waiting for approval")]
    Duplicate,
    /// The approver and the author are one person behind two accounts: one enrolled the
    /// other, or one administrator enrolled both.
    #[error("the approver and the proposer are, or were enrolled by, the same person")]
    SamePerson,
    /// The payload is not what the approver was shown, or not what its audit entry pins.
    #[error("the proposal is not what was shown or what was proposed")]
    Changed,
    #[error(transparent)]
    License(#[from] LicenseError),
    /// The license's seed parties are not the commitments recorded for it (see
    /// [`super::commitments`]).
    #[error(transparent)]
    Commitments(#[from] CommitmentError),
    /// The manufacturer's credit does not allow this license (issue 34).
    #[error(transparent)]
    Credit(#[from] super::after_sale::CreditRefusal),
    /// A credit ceiling applies and the manufacturer's rating is not known (not listed
    /// by the IdP: unregistered, suspended or expired).
    #[error("the manufacturer's rating is not known: no license under a credit ceiling")]
    NoRating,
}

/// The decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// By another issuer: rejected; by its author: withdrawn.
    Reject,
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Carried out; for an issue, the new license's id.
    Done {
        license_id: String,
    },
    Rejected,
    Withdrawn,
}

/// Why a commitment was not recorded, or a license's parties not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitmentError {
    #[error("a commitment is base64url SHA-256 (43 characters); a license number 3 to 32 letters, digits or dashes")]
    Malformed,
    #[error("this party has a commitment for this license number already")]
    Exists,
    #[error("the manufacturer's commitment has not arrived through its own credentials or its representative")]
    NoManufacturer,
    #[error("the ministry's commitment has not been entered by a member of staff other than the proposer")]
    NoMinistry,
    #[error("a party's commitment is not the one recorded for it")]
    Mismatch,
    #[error("the two parties' commitments were entered by accounts with someone behind both")]
    Dependent,
}
