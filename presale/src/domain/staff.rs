//! The ministry's staff roles and what an account's standing can be: who may do what in
//! the console (the store keeps the accounts; see `crate::store::staff`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages staff accounts; approves nothing and changes no campaign.
    Administrator,
    /// Proposes and approves issuing, suspending and resuming licenses and their rates.
    Issuer,
    /// Reads everything and exports the audit log; changes nothing.
    Auditor,
    /// A manufacturer's representative, bound to that manufacturer when enrolled: sees its
    /// campaigns' dashboards and enters its seed commitment; changes nothing else.
    Representative,
    /// Inspects manufacturers after the sale (issue 34): decides complaints, opens cases,
    /// records findings, and proposes a rating or a suspension that a second member (an
    /// issuer or another inspector) approves.
    Inspector,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Self::Administrator,
        Self::Issuer,
        Self::Auditor,
        Self::Representative,
        Self::Inspector,
    ];
    /// The roles an account may be moved between. A representative is bound to its
    /// manufacturer at enrolment: no role change makes or unmakes one.
    pub const CHANGEABLE: [Role; 4] = [
        Self::Administrator,
        Self::Issuer,
        Self::Auditor,
        Self::Inspector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::Issuer => "issuer",
            Self::Auditor => "auditor",
            Self::Representative => "representative",
            Self::Inspector => "inspector",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "administrator" => Some(Self::Administrator),
            "issuer" => Some(Self::Issuer),
            "auditor" => Some(Self::Auditor),
            "representative" => Some(Self::Representative),
            "inspector" => Some(Self::Inspector),
            _ => None,
        }
    }
}

/// A successful sign-in: the account's role and the epoch its session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedIn {
    pub role: Role,
    pub epoch: i64,
}

/// An account's standing (see [`Store::staff_account`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub role: Role,
    /// A representative's manufacturer.
    pub manufacturer: Option<String>,
    pub enabled: bool,
    pub epoch: i64,
}

/// What an operator does to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Disabled,
    Enabled,
    Revoked,
}

/// Why a login failed; deliberately one answer for the user ("wrong credentials").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    BadCredentials,
}
