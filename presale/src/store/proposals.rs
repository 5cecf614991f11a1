//! Four-eyes: what changes a campaign (issuing, suspending, resuming a license, changing
//! its admission rate) is a proposal until a second issuer approves it. The approval
//! carries out the action in the same transaction as the proposal's decision, the audit
//! entries and the campaign's log records: all of it happens, or none.

use sqlx::Row;

use super::staff::Role;
use super::{audit, Store, StoreError};
use crate::domain::after_sale::CreditPolicy;
use crate::domain::{LicenseStatus, StatusChange};

pub use crate::domain::proposals::*;

fn proposal_from_row(r: &sqlx::any::AnyRow) -> Result<Proposal, StoreError> {
    let payload: String = r.try_get("payload")?;
    Ok(Proposal {
        id: r.try_get("id")?,
        change: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("proposal: {e}")))?,
        proposed_by: r.try_get("proposed_by")?,
        proposed_at: r.try_get("proposed_at")?,
        digest: digest(&payload),
        outcome: r.try_get("outcome")?,
        decided_by: r.try_get("decided_by")?,
    })
}

impl Store {
    /// Whether `username` is an enabled issuer (read in the caller's transaction), on the
    /// record: a staff row inserted in the database without its `staff.add` entry is
    /// nobody's, and a role rewritten there (a representative made an issuer) is the role
    /// its entries say (see [`Store::has_role`]).
    pub(crate) async fn is_issuer(
        &self,
        conn: &mut sqlx::AnyConnection,
        username: &str,
    ) -> Result<bool, StoreError> {
        self.has_role(conn, username, Role::Issuer).await
    }

    /// Records a proposal; nothing changes until another issuer approves it.
    pub async fn propose(
        &self,
        change: &Change,
        by: &str,
        now: i64,
    ) -> Result<Result<String, ProposalError>, StoreError> {
        match change {
            Change::Issue { license } => {
                if let Err(e) = crate::domain::Validate::validate(license.as_ref()) {
                    return Ok(Err(e.into()));
                }
            }
            Change::Rate {
                admission_per_min, ..
            } if *admission_per_min <= 0 => return Ok(Err(ProposalError::Rate)),
            Change::MaxActive { max_active, .. } if *max_active <= 0 => {
                return Ok(Err(ProposalError::Rate))
            }
            // At most a day at a time.
            Change::Extend { minutes, .. } if !(1..=24 * 60).contains(minutes) => {
                return Ok(Err(ProposalError::Rate))
            }
            Change::Maker {
                standing: MakerStanding::Rate { stars },
                ..
            } if !(1..=5).contains(stars) => return Ok(Err(ProposalError::Rate)),
            _ => {}
        }
        let id = format!("p-{}", service_kit::keys::random_token(9));
        let payload = serde_json::to_string(change)
            .map_err(|e| StoreError::Corrupt(format!("proposal: {e}")))?;
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        // The chain's lock first (SQLite: the write lock before any read). The entry pins
        // the payload's digest, which the approval checks again.
        let summary = format!("{}; {}", change.summary(), pinned(&digest(&payload)));
        let entry = audit::Entry {
            at: now,
            actor: by,
            action: "proposal.create",
            subject: &id,
            detail: &summary,
            anchor: change.license_id(),
        };
        self.audit_in(&mut tx, &entry).await?;
        if change.by_inspector() {
            if !self.has_role(&mut tx, by, Role::Inspector).await? {
                return Ok(Err(ProposalError::NotInspector));
            }
        } else if !self.is_issuer(&mut tx, by).await? {
            return Ok(Err(ProposalError::NotIssuer));
        }
        if let Change::Maker {
            manufacturer,
            case_id,
            standing,
        } = change
        {
            let case = sqlx::query(
                "SELECT 1 AS one FROM inspection_cases WHERE id = $1 AND manufacturer = $2",
            )
            .bind(case_id)
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            if case.is_none() {
                return Ok(Err(ProposalError::NoCase));
            }
            if self
                .maker_unchanged(&mut tx, manufacturer, standing)
                .await?
            {
                return Ok(Err(ProposalError::Unchanged));
            }
            let pending = sqlx::query(
                "SELECT 1 AS one FROM proposals WHERE action = $1 AND subject = $2 \
                 AND payload = $3 AND outcome IS NULL AND proposed_at > $4",
            )
            .bind(change.action())
            .bind(manufacturer)
            .bind(&payload)
            .bind(now - PROPOSAL_TTL_SECS)
            .fetch_optional(&mut *tx)
            .await?;
            if pending.is_some() {
                return Ok(Err(ProposalError::Duplicate));
            }
        }
        if let Change::Issue { license } = change {
            if self
                .maker_suspended_in(&mut tx, &license.manufacturer)
                .await?
            {
                return Ok(Err(ProposalError::MakerSuspended));
            }
            if let Err(e) = self
                .check_parties_in(
                    &mut tx,
                    &license.license_no,
                    &license.manufacturer,
                    by,
                    &license.parties,
                )
                .await?
            {
                return Ok(Err(e.into()));
            }
        }
        if let Some(license_id) = change.license_id() {
            let Some(current) = sqlx::query(
                "SELECT status, admission_per_min, max_active FROM licenses WHERE id = $1",
            )
            .bind(license_id)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(Err(ProposalError::NoLicense));
            };
            let status: String = current.try_get("status")?;
            let active = status == LicenseStatus::Active.as_str();
            let stale = match change {
                Change::Suspend { .. } => !active,
                Change::Resume { .. } => active,
                Change::Rate {
                    admission_per_min, ..
                } => current.try_get::<i64, _>("admission_per_min")? == *admission_per_min,
                Change::MaxActive { max_active, .. } => {
                    current.try_get::<i64, _>("max_active")? == *max_active
                }
                Change::Issue { .. } | Change::Extend { .. } | Change::Maker { .. } => false,
            };
            if stale {
                return Ok(Err(ProposalError::Unchanged));
            }
            // The same change pending already (the same payload: two different rates
            // may wait side by side, so one issuer cannot block every rate change by
            // keeping one proposal pending).
            let pending = sqlx::query(
                "SELECT 1 AS one FROM proposals WHERE action = $1 AND subject = $2 \
                 AND payload = $3 AND outcome IS NULL AND proposed_at > $4",
            )
            .bind(change.action())
            .bind(license_id)
            .bind(&payload)
            .bind(now - PROPOSAL_TTL_SECS)
            .fetch_optional(&mut *tx)
            .await?;
            if pending.is_some() {
                return Ok(Err(ProposalError::Duplicate));
            }
        }
        sqlx::query(
            "INSERT INTO proposals (id, action, subject, payload, proposed_by, proposed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(change.action())
        .bind(change.subject().unwrap_or(""))
        .bind(&payload)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(id))
    }

    /// Pauses or resumes a queue's admissions at once, by one enabled issuer (it changes
    /// nobody's place or time, and the close moves on by the pause: it delays, it decides
    /// nothing), audited and in the campaign's public log in one transaction. Refused as
    /// `Unchanged` when paused already, not paused, suspended, or a lottery.
    pub async fn pause_admissions(
        &self,
        license_id: &str,
        paused: bool,
        by: &str,
        now: i64,
    ) -> Result<Result<(), ProposalError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let (action, detail) = if paused {
            ("license.pause", "admissions paused")
        } else {
            ("license.unpause", "admissions resumed")
        };
        let entry = audit::Entry {
            at: now,
            actor: by,
            action,
            subject: license_id,
            detail,
            anchor: Some(license_id),
        };
        // The chain's lock first (SQLite: the write lock before any read).
        self.audit_in(&mut tx, &entry).await?;
        if !self.is_issuer(&mut tx, by).await? {
            return Ok(Err(ProposalError::NotIssuer));
        }
        match self
            .set_admissions_paused_in(&mut tx, license_id, paused)
            .await?
        {
            None => return Ok(Err(ProposalError::NoLicense)),
            Some(false) => return Ok(Err(ProposalError::Unchanged)),
            Some(true) => {}
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Proposals waiting for a decision (not expired), oldest first.
    pub async fn pending_proposals(&self, now: i64) -> Result<Vec<Proposal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, payload, proposed_by, proposed_at, outcome, decided_by FROM proposals \
             WHERE outcome IS NULL AND proposed_at > $1 ORDER BY proposed_at, id",
        )
        .bind(now - PROPOSAL_TTL_SECS)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    /// One proposal, pending or decided.
    pub async fn proposal(&self, id: &str) -> Result<Option<Proposal>, StoreError> {
        sqlx::query(
            "SELECT id, payload, proposed_by, proposed_at, outcome, decided_by FROM proposals \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(proposal_from_row)
        .transpose()
    }

    /// The proposals about one license (its issue included), newest first.
    pub async fn proposals_for(&self, license_id: &str) -> Result<Vec<Proposal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, payload, proposed_by, proposed_at, outcome, decided_by FROM proposals \
             WHERE subject = $1 ORDER BY proposed_at DESC, id",
        )
        .bind(license_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    /// Decides a proposal. An approval by an enabled issuer other than its author carries
    /// the change out in this transaction; if the change is refused (say, the license
    /// number was issued meanwhile) nothing is written and the proposal stays pending.
    pub async fn decide(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        now: i64,
    ) -> Result<Result<Outcome, ProposalError>, StoreError> {
        self.decide_seen(id, by, decision, None, now).await
    }

    /// [`Store::decide`], by someone who was shown the proposal whose digest is `seen`: an
    /// approval goes ahead only if the stored payload still has that digest and the one its
    /// `proposal.create` audit entry pins (a payload edited in the database since, by
    /// anyone, is refused).
    pub async fn decide_seen(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        seen: Option<&str>,
        now: i64,
    ) -> Result<Result<Outcome, ProposalError>, StoreError> {
        self.decide_with(id, by, decision, seen, None, now).await
    }

    /// [`Store::decide_seen`], with the ministry's credit policy and the manufacturers'
    /// ratings (issue 34) for an issue's approval. Without a policy only the overdue rule
    /// applies. A refusal rolls the transaction back at once (on SQLite a dropped one
    /// keeps the one writer's lock until its connection is used again).
    pub async fn decide_with(
        &self,
        id: &str,
        by: &str,
        decision: Decision,
        seen: Option<&str>,
        credit: Option<&CreditPolicy>,
        now: i64,
    ) -> Result<Result<Outcome, ProposalError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let decided = self
            .decide_in(&mut tx, id, by, decision, seen, credit, now)
            .await;
        super::finish(tx, decided).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        by: &str,
        decision: Decision,
        seen: Option<&str>,
        credit: Option<&CreditPolicy>,
        now: i64,
    ) -> Result<Result<Outcome, ProposalError>, StoreError> {
        // The audit chain's lock first, as every other staff action takes it (a pause: the
        // chain, then the license): one order, no deadlock.
        self.lock_audit_chain(&mut *tx).await?;
        // The row's lock: two approvals race; one decides, the other finds it decided.
        let row = sqlx::query(
            "UPDATE proposals SET outcome = outcome WHERE id = $1 AND outcome IS NULL \
             RETURNING payload, proposed_by, proposed_at",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(ProposalError::NotFound));
        };
        let proposed_by: String = row.try_get("proposed_by")?;
        let proposed_at: i64 = row.try_get("proposed_at")?;
        let payload: String = row.try_get("payload")?;
        let change: Change = serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("proposal {id}: {e}")))?;
        let own = proposed_by == by;
        // (Its author's approval is refused below as their own, whatever its digest.)
        if decision == Decision::Approve && !own {
            let digest = digest(&payload);
            if seen.is_some_and(|s| !service_kit::keys::ct_eq(s, &digest)) {
                return Ok(Err(ProposalError::Changed));
            }
            let created = sqlx::query(
                "SELECT actor, at, detail FROM audit_log \
                 WHERE action = 'proposal.create' AND subject = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let pin = pinned(&digest);
            // The payload, its author and its time, all as the entry recorded them: an
            // author or a time edited in the database (to approve one's own proposal, or
            // to bring an expired one back) is refused as a changed payload is.
            let matches = created.len() == 1
                && created[0]
                    .try_get::<String, _>("detail")?
                    .ends_with(&format!("; {pin}"))
                && created[0].try_get::<String, _>("actor")? == proposed_by
                && created[0].try_get::<i64, _>("at")? == proposed_at;
            if !matches {
                tracing::error!(
                    proposal = id,
                    "a proposal's payload differs from its audit entry"
                );
                return Ok(Err(ProposalError::Changed));
            }
        }
        if change.by_inspector() {
            // An inspection's proposal: a second pair of eyes is an issuer or another
            // inspector; its author must still be an inspector for it to be carried out.
            if !own
                && !self.is_issuer(&mut *tx, by).await?
                && !self.has_role(&mut *tx, by, Role::Inspector).await?
            {
                return Ok(Err(ProposalError::NotInspector));
            }
            if decision == Decision::Approve
                && !own
                && !self
                    .has_role(&mut *tx, &proposed_by, Role::Inspector)
                    .await?
            {
                return Ok(Err(ProposalError::NotInspector));
            }
        } else {
            if !own && !self.is_issuer(&mut *tx, by).await? {
                return Ok(Err(ProposalError::NotIssuer));
            }
            // An author disabled or given another role since: their proposal is not
            // carried out (it may still be rejected).
            if decision == Decision::Approve
                && !own
                && !self.is_issuer(&mut *tx, &proposed_by).await?
            {
                return Ok(Err(ProposalError::NotIssuer));
            }
        }
        // Two accounts, one person: no second pair of eyes.
        if decision == Decision::Approve
            && !own
            && !self.independent(&mut *tx, &proposed_by, by).await?
        {
            return Ok(Err(ProposalError::SamePerson));
        }
        let (outcome, license_id) = match decision {
            Decision::Reject if own => ("withdrawn", change.subject().map(str::to_owned)),
            Decision::Reject => ("rejected", change.subject().map(str::to_owned)),
            Decision::Approve if own => return Ok(Err(ProposalError::OwnProposal)),
            Decision::Approve if proposed_at <= now - PROPOSAL_TTL_SECS => {
                return Ok(Err(ProposalError::Expired))
            }
            Decision::Approve => match self
                .carry_out(&mut *tx, &change, (&proposed_by, by, id), credit, now)
                .await?
            {
                Ok(license_id) => ("approved", Some(license_id)),
                Err(e) => return Ok(Err(e)),
            },
        };
        // An issue's proposal takes the new license's id as its subject, so the license's
        // page lists it with the rest of its history.
        sqlx::query(
            "UPDATE proposals SET outcome = $2, decided_by = $3, decided_at = $4, \
             subject = COALESCE($5, subject) WHERE id = $1",
        )
        .bind(id)
        .bind(outcome)
        .bind(by)
        .bind(now)
        .bind(license_id.as_deref())
        .execute(&mut *tx)
        .await?;
        // A manufacturer's standing is anchored in no campaign's log (each campaign it
        // pauses or resumes has its own entry, anchored there).
        let anchor = if change.by_inspector() {
            None
        } else {
            license_id.as_deref()
        };
        let decided = format!("proposal.{outcome}");
        let summary = format!("{}; {}", change.summary(), pinned(&digest(&payload)));
        let entry = audit::Entry {
            at: now,
            actor: by,
            action: &decided,
            subject: id,
            detail: &summary,
            anchor,
        };
        self.audit_in(&mut *tx, &entry).await?;
        if outcome == "approved" {
            let detail = format!("{summary}; proposed by {proposed_by} as {id}, approved by {by}");
            let entry = audit::Entry {
                at: now,
                actor: by,
                action: change.action(),
                subject: license_id.as_deref().unwrap_or(""),
                detail: &detail,
                anchor,
            };
            self.audit_in(&mut *tx, &entry).await?;
        }
        Ok(Ok(match outcome {
            "approved" => Outcome::Done {
                license_id: license_id.unwrap_or_default(),
            },
            "withdrawn" => Outcome::Withdrawn,
            _ => Outcome::Rejected,
        }))
    }

    /// Carries out an approved change in the caller's transaction; the license's id.
    async fn carry_out(
        &self,
        tx: &mut sqlx::AnyConnection,
        change: &Change,
        (proposed_by, approved_by, proposal): (&str, &str, &str),
        credit: Option<&CreditPolicy>,
        now: i64,
    ) -> Result<Result<String, ProposalError>, StoreError> {
        let changed = match change {
            Change::Issue { license }
                if self.maker_suspended_in(tx, &license.manufacturer).await? =>
            {
                return Ok(Err(ProposalError::MakerSuspended));
            }
            Change::Issue { license } => {
                // The manufacturer's credit (issue 34): under the ceiling its rating
                // allows, and while late, one new unit per unit delivered. Staff actions
                // hold the audit chain's lock, so two approvals never both pass it.
                let mut standing = self.credit_in(tx, &license.manufacturer, now).await?;
                if let Some(p) = credit.filter(|p| !p.ceilings.is_empty()) {
                    let Some(stars) = p.stars.get(&license.manufacturer).copied() else {
                        return Ok(Err(ProposalError::NoRating));
                    };
                    standing.stars = Some(stars);
                    standing.ceiling = Some(p.ceilings.for_stars(stars));
                }
                if let Err(e) = standing.check(license.units, license.down_payment) {
                    return Ok(Err(e.into()));
                }
                // The parties are still the commitments recorded for it.
                if let Err(e) = self
                    .check_parties_in(
                        tx,
                        &license.license_no,
                        &license.manufacturer,
                        proposed_by,
                        &license.parties,
                    )
                    .await?
                {
                    return Ok(Err(e.into()));
                }
                return Ok(self
                    .issue_license_in(tx, license, now)
                    .await?
                    .map_err(ProposalError::from));
            }
            Change::Maker {
                manufacturer,
                case_id,
                standing,
            } => {
                let who = Decider {
                    proposed_by,
                    approved_by,
                    proposal,
                };
                return self
                    .carry_out_maker(tx, manufacturer, case_id, *standing, who, now)
                    .await;
            }
            Change::Resume { license_id }
                if self.license_maker_suspended(tx, license_id).await? =>
            {
                return Ok(Err(ProposalError::MakerSuspended));
            }
            Change::Suspend { license_id } | Change::Resume { license_id } => self
                .set_license_active_in(tx, license_id, matches!(change, Change::Resume { .. }))
                .await?
                .map(|c| c != StatusChange::Unchanged),
            Change::Rate {
                license_id,
                admission_per_min,
            } => self.set_rate_in(tx, license_id, *admission_per_min).await?,
            Change::MaxActive {
                license_id,
                max_active,
            } => self.set_max_active_in(tx, license_id, *max_active).await?,
            Change::Extend {
                license_id,
                minutes,
            } => self.extend_in(tx, license_id, minutes * 60_000).await?,
        };
        Ok(match changed {
            Some(true) => Ok(change.license_id().unwrap_or_default().to_owned()),
            // Stale since it was proposed (another proposal did it first): refused, and
            // the proposal stays pending for its author to withdraw.
            Some(false) => Err(ProposalError::Unchanged),
            None => Err(ProposalError::NoLicense),
        })
    }
}

impl Store {
    /// Whether the manufacturer's standing is already what `standing` would make it.
    async fn maker_unchanged(
        &self,
        tx: &mut sqlx::AnyConnection,
        manufacturer: &str,
        standing: &MakerStanding,
    ) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT suspended, stars FROM maker_standing WHERE manufacturer = $1")
                .bind(manufacturer)
                .fetch_optional(&mut *tx)
                .await?;
        let (suspended, stars) = match row {
            Some(r) => (
                r.try_get::<Option<i64>, _>("suspended")? == Some(1),
                r.try_get::<Option<i64>, _>("stars")?,
            ),
            None => (false, None),
        };
        Ok(match standing {
            MakerStanding::Suspend => suspended,
            MakerStanding::Resume => !suspended,
            MakerStanding::Rate { stars: s } => stars == Some(i64::from(*s)),
        })
    }

    /// Whether the ministry suspended the manufacturer of `license_id`.
    async fn license_maker_suspended(
        &self,
        tx: &mut sqlx::AnyConnection,
        license_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM maker_standing s JOIN licenses l ON l.manufacturer = s.manufacturer \
             WHERE l.id = $1 AND s.suspended = 1",
        )
        .bind(license_id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some())
    }

    /// Whether the ministry has `manufacturer` suspended (read in the caller's
    /// transaction).
    pub(crate) async fn maker_suspended_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        manufacturer: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM maker_standing WHERE manufacturer = $1 AND suspended = 1",
        )
        .bind(manufacturer)
        .fetch_optional(&mut *tx)
        .await?
        .is_some())
    }

    /// An approved inspection carried out here: the standing recorded with its version
    /// and its own audit entry (for the IdP, which the console and a background pass tell
    /// until it has it), and for a suspension every active campaign of the manufacturer
    /// suspended (the queue's clock stops: nobody loses their place or their time), each
    /// in its own log, under the approver's name; a resumption resumes exactly those.
    async fn carry_out_maker(
        &self,
        tx: &mut sqlx::AnyConnection,
        manufacturer: &str,
        case_id: &str,
        standing: MakerStanding,
        who: Decider<'_>,
        now: i64,
    ) -> Result<Result<String, ProposalError>, StoreError> {
        if self.maker_unchanged(tx, manufacturer, &standing).await? {
            return Ok(Err(ProposalError::Unchanged));
        }
        let current = sqlx::query(
            "SELECT paused_licenses, decided_version FROM maker_standing WHERE manufacturer = $1",
        )
        .bind(manufacturer)
        .fetch_optional(&mut *tx)
        .await?;
        let (paused, version): (String, i64) = match current {
            Some(r) => (r.try_get("paused_licenses")?, r.try_get("decided_version")?),
            None => ("[]".to_owned(), 0),
        };
        let version = version + 1;
        let mut paused: Vec<String> = serde_json::from_str(&paused)
            .map_err(|e| StoreError::Corrupt(format!("paused licenses of {manufacturer}: {e}")))?;
        let because = format!(
            "case {case_id}, proposal {} by {}, approved by {}",
            who.proposal, who.proposed_by, who.approved_by
        );
        let (kind, suspended, stars): (&str, Option<i64>, Option<i64>) = match standing {
            MakerStanding::Suspend => {
                let active: Vec<String> = sqlx::query(
                    "SELECT id FROM licenses WHERE manufacturer = $1 AND status = $2 ORDER BY id",
                )
                .bind(manufacturer)
                .bind(LicenseStatus::Active.as_str())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
                for id in &active {
                    if self.set_license_active_in(tx, id, false).await?
                        == Some(StatusChange::Suspend)
                    {
                        let detail = format!("{manufacturer} suspended ({because})");
                        self.audit_in(
                            tx,
                            &audit::Entry {
                                at: now,
                                actor: who.approved_by,
                                action: "license.suspend",
                                subject: id,
                                detail: &detail,
                                anchor: Some(id),
                            },
                        )
                        .await?;
                        paused.push(id.clone());
                    }
                }
                ("suspend", Some(1), None)
            }
            MakerStanding::Resume => {
                for id in std::mem::take(&mut paused) {
                    if let Some(StatusChange::Resume { .. }) =
                        self.set_license_active_in(tx, &id, true).await?
                    {
                        let detail = format!("{manufacturer} resumed ({because})");
                        self.audit_in(
                            tx,
                            &audit::Entry {
                                at: now,
                                actor: who.approved_by,
                                action: "license.resume",
                                subject: &id,
                                detail: &detail,
                                anchor: Some(&id),
                            },
                        )
                        .await?;
                    }
                }
                ("resume", Some(0), None)
            }
            MakerStanding::Rate { stars } => ("rate", None, Some(i64::from(stars))),
        };
        // The standing's own entry, saying its version and kind: on PostgreSQL the
        // service's role changes no standing without it.
        let detail = format!("v{version} {kind}; {because}");
        self.audit_in(
            tx,
            &audit::Entry {
                at: now,
                actor: who.approved_by,
                action: "manufacturer.standing",
                subject: manufacturer,
                detail: &detail,
                anchor: None,
            },
        )
        .await?;
        let paused = serde_json::to_string(&paused)
            .map_err(|e| StoreError::Corrupt(format!("paused licenses: {e}")))?;
        sqlx::query(
            "INSERT INTO maker_standing (manufacturer, suspended, stars, decided_kind, \
             decided_by, proposed_by, proposal_id, reason, decided_version, paused_licenses, \
             updated_at, suspend_version, stars_version) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, CASE WHEN $2 IS NULL THEN 0 ELSE $9 END, \
             CASE WHEN $3 IS NULL THEN 0 ELSE $9 END) \
             ON CONFLICT (manufacturer) DO UPDATE SET \
             suspended = COALESCE($2, maker_standing.suspended), \
             stars = COALESCE($3, maker_standing.stars), decided_kind = $4, decided_by = $5, \
             proposed_by = $6, proposal_id = $7, reason = $8, decided_version = $9, \
             suspend_version = CASE WHEN $2 IS NULL THEN maker_standing.suspend_version ELSE $9 END, \
             stars_version = CASE WHEN $3 IS NULL THEN maker_standing.stars_version ELSE $9 END, \
             paused_licenses = $10, push_error = NULL, updated_at = $11",
        )
        .bind(manufacturer)
        .bind(suspended)
        .bind(stars)
        .bind(kind)
        .bind(who.approved_by)
        .bind(who.proposed_by)
        .bind(who.proposal)
        .bind(format!("case {case_id}"))
        .bind(version)
        .bind(&paused)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(Ok(manufacturer.to_owned()))
    }
}

/// Who proposed and who approved a change, and the proposal's id.
#[derive(Debug, Clone, Copy)]
struct Decider<'a> {
    proposed_by: &'a str,
    approved_by: &'a str,
    proposal: &'a str,
}
