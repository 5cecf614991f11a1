//! A buyer's redress in SQL (issue 34): complaints and their attachments' records, warranty
//! visits, inspection cases and findings, the manufacturers' record (demerits), and each
//! manufacturer's standing as decided here and still to be carried out at the IdP.
//!
//! Every change is written with its audit entry in the same transaction, under the person
//! (or the manufacturer's client) who made it; a buyer is written `citizen`, never by
//! their national ID.

use std::collections::HashMap;

use sqlx::Row;

use super::after_sale::GRACE;
use super::audit::Entry;
use super::{Store, StoreError};
use crate::domain::after_sale::DAY;
use crate::domain::redress::{
    warranty_tally, Ageing, ComplaintKind, Demerits, FileKind, Level, Outcome, Visit, WarrantyTally,
};
use crate::domain::staff::Role;

/// An attachment's record (the bytes are in the file store under `sha256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub sha256: String,
    pub kind: FileKind,
    pub size: i64,
    pub name: String,
}

/// A complaint as its parties see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub id: String,
    pub application_id: String,
    pub tracking_code: String,
    pub license_id: String,
    pub manufacturer: String,
    pub citizen_sub: String,
    pub kind: ComplaintKind,
    pub body: String,
    pub filed_at: i64,
    pub answer_due: i64,
    pub answer: Option<String>,
    pub answered_at: Option<i64>,
    pub escalated_at: Option<i64>,
    /// A decision one inspector proposed, awaiting a second person.
    pub proposed: Option<(Outcome, String)>,
    pub outcome: Option<Outcome>,
    pub decided_by: Option<String>,
    pub files: Vec<FileMeta>,
}

impl Complaint {
    pub fn ageing(&self) -> Ageing {
        Ageing {
            filed_at: self.filed_at,
            answer_due: self.answer_due,
            answered_at: self.answered_at,
            escalated_at: self.escalated_at,
            outcome: self.outcome,
        }
    }

    pub fn level(&self, now: i64) -> Level {
        self.ageing().level(now)
    }
}

/// Why a complaint, an answer or a decision was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ComplaintError {
    #[error("no application of yours with that tracking code at this manufacturer")]
    NoApplication,
    #[error("no such complaint")]
    NoComplaint,
    #[error("a complaint of this kind about this application is open already")]
    Open,
    #[error("the text is required, at most 4000 characters")]
    Text,
    #[error("the complaint is answered already")]
    Answered,
    #[error(
        "the manufacturer has not answered yet, or the complaint is with the ministry already"
    )]
    NotAnswered,
    #[error("the complaint is closed")]
    Closed,
    #[error("only an enabled inspector proposes a decision on a complaint; an issuer or another inspector confirms it")]
    NotInspector,
    #[error("a decision needs a second person: its proposer, or anyone behind the same person, cannot confirm it")]
    SamePerson,
}

/// Where a decision on a complaint stands after a member's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Proposed: a second member must say the same.
    Proposed,
    /// Final: upheld or dismissed.
    Final,
}

/// How long after a car came back its return may be recorded (seconds): an hour.
pub const RETURN_GRACE: i64 = 3600;

/// The longest complaint, answer or finding, in characters.
pub const MAX_TEXT: usize = 4000;

fn text_ok(t: &str) -> bool {
    let n = t.trim().chars().count();
    n > 0 && n <= MAX_TEXT
}

/// A warranty visit as the workshop records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyVisit {
    pub id: String,
    pub application_id: String,
    pub tracking_code: String,
    pub manufacturer: String,
    pub opened_at: i64,
    pub work_order: String,
    pub safety: bool,
    pub returned_at: Option<i64>,
    pub failed: Option<bool>,
}

impl WarrantyVisit {
    fn visit(&self) -> Visit {
        Visit {
            opened_at: self.opened_at,
            safety: self.safety,
            returned_at: self.returned_at,
            failed: self.failed.unwrap_or(false),
        }
    }
}

/// One car's warranty: its visits and what the law says is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warranty {
    pub application_id: String,
    pub tracking_code: String,
    pub manufacturer: String,
    pub visits: Vec<WarrantyVisit>,
    pub tally: WarrantyTally,
}

/// Why a warranty visit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VisitError {
    #[error("no delivered car of this manufacturer has that tracking code")]
    NoCar,
    #[error("no such visit of this manufacturer's")]
    NoVisit,
    #[error("the car is in the workshop already: close that visit first")]
    InWorkshop,
    #[error("the car is back already")]
    Returned,
    #[error("a written work order is required, at most 4000 characters")]
    WorkOrder,
    #[error("a visit is dated when it happened: not before the delivery or the visit's start, not in the future, opened at most three days ago and returned at most an hour ago")]
    Time,
    #[error("this request key was used for another visit")]
    KeyReused,
}

/// An inspection case with its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    pub manufacturer: String,
    pub complaint_id: Option<String>,
    pub summary: String,
    pub opened_by: String,
    pub opened_at: i64,
    /// (at, by, text), oldest first.
    pub findings: Vec<(i64, String, String)>,
}

/// Why a case or a finding was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("only an enabled inspector opens a case or records a finding")]
    NotInspector,
    #[error("no such case")]
    NoCase,
    #[error("no such complaint, or it is about another manufacturer")]
    NoComplaint,
    #[error("no licensed manufacturer of that name")]
    NoManufacturer,
    #[error("the text is required, at most 4000 characters")]
    Text,
}

/// An approved decision on a manufacturer's standing: only what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandingDecision {
    pub version: i64,
    pub suspended: Option<bool>,
    pub stars: Option<u8>,
}

/// What is still to be carried out at the IdP for a manufacturer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStanding {
    pub manufacturer: String,
    /// The latest approved decision, if the IdP does not have it yet.
    pub decided: Option<StandingDecision>,
    /// Who approved it, and who proposed it.
    pub decided_by: String,
    pub proposed_by: String,
    pub reason: String,
    /// The stars withheld and their version, if the IdP does not have them yet.
    pub withheld: Option<(u8, i64)>,
    pub demerits: String,
}

fn complaint_from(r: &sqlx::any::AnyRow) -> Result<Complaint, StoreError> {
    let kind: String = r.try_get("kind")?;
    let outcome: Option<String> = r.try_get("outcome")?;
    Ok(Complaint {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        tracking_code: r.try_get("tracking_code")?,
        license_id: r.try_get("license_id")?,
        manufacturer: r.try_get("manufacturer")?,
        citizen_sub: r.try_get("citizen_sub")?,
        kind: ComplaintKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("complaint kind {kind}")))?,
        body: r.try_get("body")?,
        filed_at: r.try_get("filed_at")?,
        answer_due: r.try_get("answer_due")?,
        answer: r.try_get("answer")?,
        answered_at: r.try_get("answered_at")?,
        escalated_at: r.try_get("escalated_at")?,
        outcome: outcome
            .map(|o| Outcome::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("outcome {o}"))))
            .transpose()?,
        decided_by: r.try_get("decided_by")?,
        proposed: match (
            r.try_get::<Option<String>, _>("proposed_outcome")?,
            r.try_get::<Option<String>, _>("proposed_by")?,
        ) {
            (Some(o), Some(by)) => Outcome::parse(&o).map(|o| (o, by)),
            _ => None,
        },
        files: Vec::new(),
    })
}

fn visit_from(r: &sqlx::any::AnyRow) -> Result<WarrantyVisit, StoreError> {
    Ok(WarrantyVisit {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        tracking_code: r.try_get("tracking_code")?,
        manufacturer: r.try_get("manufacturer")?,
        opened_at: r.try_get("opened_at")?,
        work_order: r.try_get("work_order")?,
        safety: r.try_get::<i64, _>("safety")? != 0,
        returned_at: r.try_get("returned_at")?,
        failed: r.try_get::<Option<i64>, _>("failed")?.map(|f| f != 0),
    })
}

const COMPLAINT_COLUMNS: &str = "c.id, c.application_id, a.tracking_code, c.license_id, \
     c.manufacturer, c.citizen_sub, c.kind, c.body, c.filed_at, c.answer_due, c.answer, \
     c.answered_at, c.escalated_at, c.outcome, c.decided_by, c.proposed_outcome, c.proposed_by";

impl Store {
    /// Whether `username` is an enabled member with `role`, on the record (read in the
    /// caller's transaction; see [`Store::is_issuer`]).
    pub(crate) async fn has_role(
        &self,
        conn: &mut sqlx::AnyConnection,
        username: &str,
        role: Role,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT role, disabled_at FROM staff WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
        let enabled = match row {
            Some(r) => {
                r.try_get::<String, _>("role")? == role.as_str()
                    && r.try_get::<Option<i64>, _>("disabled_at")?.is_none()
            }
            None => false,
        };
        Ok(enabled && self.role_on_record(&mut *conn, username).await? == Some(role))
    }

    // ---- complaints ---------------------------------------------------------------------

    /// Files a buyer's complaint about their application at `manufacturer`, with the
    /// records of its attachments (already in the file store), answer due in
    /// `answer_days`.
    #[allow(clippy::too_many_arguments)]
    pub async fn file_complaint(
        &self,
        manufacturer: &str,
        citizen_sub: &str,
        tracking_code: &str,
        kind: ComplaintKind,
        body: &str,
        files: &[FileMeta],
        answer_days: i64,
        now: i64,
    ) -> Result<Result<String, ComplaintError>, StoreError> {
        if !text_ok(body) {
            return Ok(Err(ComplaintError::Text));
        }
        let id = format!("cp-{}", service_kit::keys::random_token(9));
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = format!(
            "{} about {tracking_code}; {} attachment(s)",
            kind.as_str(),
            files.len()
        );
        let entry = Entry {
            at: now,
            actor: "citizen",
            action: "complaint.file",
            subject: &id,
            detail: &detail,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            let app = sqlx::query(
                "SELECT a.id, a.license_id FROM applications a \
                 JOIN licenses l ON l.id = a.license_id \
                 WHERE a.tracking_code = $1 AND a.citizen_sub = $2 AND l.manufacturer = $3",
            )
            .bind(tracking_code)
            .bind(citizen_sub)
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(app) = app else {
                return Ok(Err(ComplaintError::NoApplication));
            };
            let (app_id, license_id): (String, String) =
                (app.try_get("id")?, app.try_get("license_id")?);
            let inserted = sqlx::query(
                "INSERT INTO complaints (id, application_id, license_id, manufacturer, \
                 citizen_sub, kind, body, filed_at, answer_due) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(&app_id)
            .bind(&license_id)
            .bind(manufacturer)
            .bind(citizen_sub)
            .bind(kind.as_str())
            .bind(body.trim())
            .bind(now)
            .bind(now + answer_days * DAY)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(Err(ComplaintError::Open));
            }
            for f in files {
                sqlx::query(
                    "INSERT INTO complaint_files (complaint_id, sha256, content_type, size, name) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&id)
                .bind(&f.sha256)
                .bind(f.kind.mime())
                .bind(f.size)
                .bind(&f.name)
                .execute(&mut *tx)
                .await?;
            }
            Ok(Ok(id.clone()))
        }
        .await;
        super::finish(tx, done).await
    }

    async fn complaints_where(
        &self,
        clause: &str,
        binds: &[&str],
    ) -> Result<Vec<Complaint>, StoreError> {
        let sql = format!(
            "SELECT {COMPLAINT_COLUMNS} FROM complaints c \
             JOIN applications a ON a.id = c.application_id WHERE {clause} \
             ORDER BY c.filed_at DESC, c.id"
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out: Vec<Complaint> = rows.iter().map(complaint_from).collect::<Result<_, _>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT f.complaint_id, f.sha256, f.content_type, f.size, f.name \
             FROM complaint_files f JOIN complaints c ON c.id = f.complaint_id \
             JOIN applications a ON a.id = c.application_id WHERE {clause} ORDER BY f.name"
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let mut files: HashMap<String, Vec<FileMeta>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            let mime: String = r.try_get("content_type")?;
            files
                .entry(r.try_get("complaint_id")?)
                .or_default()
                .push(FileMeta {
                    sha256: r.try_get("sha256")?,
                    kind: FileKind::parse_mime(&mime)
                        .ok_or_else(|| StoreError::Corrupt(format!("attachment type {mime}")))?,
                    size: r.try_get("size")?,
                    name: r.try_get("name")?,
                });
        }
        for c in &mut out {
            c.files = files.remove(&c.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// A buyer's complaints at one manufacturer.
    pub async fn complaints_of_citizen(
        &self,
        manufacturer: &str,
        citizen_sub: &str,
    ) -> Result<Vec<Complaint>, StoreError> {
        self.complaints_where(
            "c.manufacturer = $1 AND c.citizen_sub = $2",
            &[manufacturer, citizen_sub],
        )
        .await
    }

    /// A manufacturer's complaints, or every one (`None`), newest first.
    pub async fn complaints(
        &self,
        manufacturer: Option<&str>,
    ) -> Result<Vec<Complaint>, StoreError> {
        match manufacturer {
            Some(m) => self.complaints_where("c.manufacturer = $1", &[m]).await,
            None => self.complaints_where("$1 = $1", &[""]).await,
        }
    }

    pub async fn complaint(&self, id: &str) -> Result<Option<Complaint>, StoreError> {
        Ok(self.complaints_where("c.id = $1", &[id]).await?.pop())
    }

    /// The manufacturer's answer (once; after its deadline it is still recorded, and the
    /// complaint still counts as answered late).
    pub async fn answer_complaint(
        &self,
        manufacturer: &str,
        id: &str,
        answer: &str,
        by: &str,
        now: i64,
    ) -> Result<Result<(), ComplaintError>, StoreError> {
        if !text_ok(answer) {
            return Ok(Err(ComplaintError::Text));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        // The detail says when it was answered: on PostgreSQL the service's role records
        // no answer without an entry saying that time.
        let detail = format!("{manufacturer} at {now}");
        let entry = Entry {
            at: now,
            actor: by,
            action: "complaint.answer",
            subject: id,
            detail: &detail,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            let row = sqlx::query(
                "SELECT answered_at, outcome FROM complaints WHERE id = $1 AND manufacturer = $2",
            )
            .bind(id)
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Err(ComplaintError::NoComplaint));
            };
            if row.try_get::<Option<String>, _>("outcome")?.is_some() {
                return Ok(Err(ComplaintError::Closed));
            }
            if row.try_get::<Option<i64>, _>("answered_at")?.is_some() {
                return Ok(Err(ComplaintError::Answered));
            }
            sqlx::query(
                "UPDATE complaints SET answer = $2, answered_at = $3, answered_by = $4 \
                 WHERE id = $1 AND answered_at IS NULL",
            )
            .bind(id)
            .bind(answer.trim())
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            Ok(Ok(()))
        }
        .await;
        super::finish(tx, done).await
    }

    /// The buyer's word on an answer in time: `accept` closes the complaint, otherwise it
    /// goes to the province's office (and ages from its filing on).
    pub async fn buyer_on_answer(
        &self,
        manufacturer: &str,
        citizen_sub: &str,
        id: &str,
        accept: bool,
        now: i64,
    ) -> Result<Result<(), ComplaintError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let action = if accept {
            "complaint.accept"
        } else {
            "complaint.escalate"
        };
        let entry = Entry {
            at: now,
            actor: "citizen",
            action,
            subject: id,
            detail: manufacturer,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            let row = sqlx::query(
                "SELECT answered_at, answer_due, escalated_at, outcome FROM complaints \
                 WHERE id = $1 AND manufacturer = $2 AND citizen_sub = $3",
            )
            .bind(id)
            .bind(manufacturer)
            .bind(citizen_sub)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Err(ComplaintError::NoComplaint));
            };
            if row.try_get::<Option<String>, _>("outcome")?.is_some() {
                return Ok(Err(ComplaintError::Closed));
            }
            let answered: Option<i64> = row.try_get("answered_at")?;
            let due: i64 = row.try_get("answer_due")?;
            // Only an answer in time is the buyer's to take or leave: a complaint
            // unanswered by its deadline is with the ministry already.
            if answered.is_none_or(|a| a > due)
                || row.try_get::<Option<i64>, _>("escalated_at")?.is_some()
            {
                return Ok(Err(ComplaintError::NotAnswered));
            }
            let sql = if accept {
                "UPDATE complaints SET outcome = 'accepted', decided_at = $2, decided_by = 'citizen' \
                 WHERE id = $1"
            } else {
                "UPDATE complaints SET escalated_at = $2 WHERE id = $1"
            };
            sqlx::query(sql).bind(id).bind(now).execute(&mut *tx).await?;
            Ok(Ok(()))
        }
        .await;
        super::finish(tx, done).await
    }

    /// The ministry's decision on a complaint that has reached it, upheld or dismissed, by
    /// two people: an inspector proposes it; an issuer or another inspector (not behind
    /// the same person) saying the same makes it final. A second member saying otherwise
    /// replaces the proposal with theirs (a third person decides). Each step audited.
    pub async fn decide_complaint(
        &self,
        id: &str,
        outcome: Outcome,
        by: &str,
        now: i64,
    ) -> Result<Result<Decided, ComplaintError>, StoreError> {
        if outcome == Outcome::Accepted {
            return Ok(Err(ComplaintError::NotInspector));
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = async {
            // The chain's lock first (SQLite: the write lock before any read).
            self.lock_audit_chain(&mut tx).await?;
            let row = sqlx::query(
                "SELECT filed_at, answer_due, answered_at, escalated_at, outcome, \
                 proposed_outcome, proposed_by FROM complaints WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Err(ComplaintError::NoComplaint));
            };
            if row.try_get::<Option<String>, _>("outcome")?.is_some() {
                return Ok(Err(ComplaintError::Closed));
            }
            let ageing = Ageing {
                filed_at: row.try_get("filed_at")?,
                answer_due: row.try_get("answer_due")?,
                answered_at: row.try_get("answered_at")?,
                escalated_at: row.try_get("escalated_at")?,
                outcome: None,
            };
            // The ministry decides what has reached it, not what the manufacturer still
            // has time to answer.
            if ageing.level(now) == Level::Manufacturer {
                return Ok(Err(ComplaintError::NotAnswered));
            }
            let proposed: Option<String> = row.try_get("proposed_outcome")?;
            let mut proposer: Option<String> = row.try_get("proposed_by")?;
            // A proposer no longer an enabled inspector proposes nothing: a word now is a
            // new proposal.
            if let Some(who) = proposer.clone() {
                if !self.has_role(&mut tx, &who, Role::Inspector).await? {
                    proposer = None;
                }
            }
            let proposed = proposed.filter(|_| proposer.is_some());
            let inspector = self.has_role(&mut tx, by, Role::Inspector).await?;
            let second = match (&proposed, &proposer) {
                (Some(p), Some(who)) if p == outcome.as_str() => {
                    if who == by || !self.independent(&mut tx, who, by).await? {
                        return Ok(Err(ComplaintError::SamePerson));
                    }
                    if !inspector && !self.is_issuer(&mut tx, by).await? {
                        return Ok(Err(ComplaintError::NotInspector));
                    }
                    true
                }
                _ => {
                    if !inspector {
                        return Ok(Err(ComplaintError::NotInspector));
                    }
                    if proposer.as_deref() == Some(by) {
                        return Ok(Err(ComplaintError::SamePerson));
                    }
                    false
                }
            };
            let detail = match &proposer {
                Some(who) if second => format!("{}; proposed by {who}", outcome.as_str()),
                _ => outcome.as_str().to_owned(),
            };
            let entry = Entry {
                at: now,
                actor: by,
                action: if second {
                    "complaint.decide"
                } else {
                    "complaint.propose"
                },
                subject: id,
                detail: &detail,
                anchor: None,
            };
            self.audit_in(&mut tx, &entry).await?;
            if second {
                sqlx::query(
                    "UPDATE complaints SET outcome = $2, decided_at = $3, decided_by = $4 \
                     WHERE id = $1 AND outcome IS NULL",
                )
                .bind(id)
                .bind(outcome.as_str())
                .bind(now)
                .bind(by)
                .execute(&mut *tx)
                .await?;
                Ok(Ok(Decided::Final))
            } else {
                sqlx::query(
                    "UPDATE complaints SET proposed_outcome = $2, proposed_by = $3 \
                     WHERE id = $1 AND outcome IS NULL",
                )
                .bind(id)
                .bind(outcome.as_str())
                .bind(by)
                .execute(&mut *tx)
                .await?;
                Ok(Ok(Decided::Proposed))
            }
        }
        .await;
        super::finish(tx, done).await
    }

    /// Whether a complaint would be taken (the application is the buyer's at the
    /// manufacturer, the text is there, none of its kind is open), checked before its
    /// attachments are kept: a refused complaint leaves nothing on the shared volume.
    pub async fn complaint_precheck(
        &self,
        manufacturer: &str,
        citizen_sub: &str,
        tracking_code: &str,
        kind: ComplaintKind,
        body: &str,
    ) -> Result<Result<(), ComplaintError>, StoreError> {
        if !text_ok(body) {
            return Ok(Err(ComplaintError::Text));
        }
        let row = sqlx::query(
            "SELECT a.id, (SELECT COUNT(*) FROM complaints c WHERE c.application_id = a.id \
             AND c.kind = $4 AND c.outcome IS NULL) AS open FROM applications a \
             JOIN licenses l ON l.id = a.license_id \
             WHERE a.tracking_code = $1 AND a.citizen_sub = $2 AND l.manufacturer = $3",
        )
        .bind(tracking_code)
        .bind(citizen_sub)
        .bind(manufacturer)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Err(ComplaintError::NoApplication),
            Some(r) if r.try_get::<i64, _>("open")? > 0 => Err(ComplaintError::Open),
            Some(_) => Ok(()),
        })
    }

    /// Whether `sha256` is an attachment of a complaint that `party` may read: the buyer
    /// (their sub at the manufacturer), the manufacturer, or the ministry (`None`).
    pub async fn attachment(
        &self,
        complaint_id: &str,
        sha256: &str,
    ) -> Result<Option<(Complaint, FileMeta)>, StoreError> {
        let Some(c) = self.complaint(complaint_id).await? else {
            return Ok(None);
        };
        let f = c.files.iter().find(|f| f.sha256 == sha256).cloned();
        Ok(f.map(|f| (c, f)))
    }

    // ---- warranty -----------------------------------------------------------------------

    /// A delivered car brought in, with its written work order.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_visit(
        &self,
        manufacturer: &str,
        tracking_code: &str,
        opened_at: i64,
        work_order: &str,
        safety: bool,
        key: Option<&str>,
        by: &str,
        now: i64,
    ) -> Result<Result<String, VisitError>, StoreError> {
        if !text_ok(work_order) {
            return Ok(Err(VisitError::WorkOrder));
        }
        let id = format!("wv-{}", service_kit::keys::random_token(9));
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = format!(
            "{tracking_code} in at {opened_at}{}",
            if safety { ", safety defect" } else { "" }
        );
        let entry = Entry {
            at: now,
            actor: by,
            action: "warranty.open",
            subject: &id,
            detail: &detail,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            let car = sqlx::query(
                "SELECT a.id, a.license_id, s.at AS delivered_at FROM applications a \
                 JOIN licenses l ON l.id = a.license_id \
                 JOIN delivery_stages s ON s.application_id = a.id AND s.stage = 'delivered' \
                 WHERE a.tracking_code = $1 AND l.manufacturer = $2",
            )
            .bind(tracking_code)
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(car) = car else {
                return Ok(Err(VisitError::NoCar));
            };
            let app_id: String = car.try_get("id")?;
            if let Some(key) = key {
                // A retry is the visit recorded under its key, whatever time it carries
                // (a retry without `at` is stamped anew); another work order or safety
                // flag under the same key is refused.
                let seen = sqlx::query(
                    "SELECT id, safety, work_order FROM warranty_visits \
                     WHERE application_id = $1 AND request_key = $2",
                )
                .bind(&app_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(r) = seen {
                    let same = r.try_get::<String, _>("work_order")? == work_order.trim()
                        && (r.try_get::<i64, _>("safety")? != 0) == safety;
                    return Ok(if same {
                        Ok(r.try_get("id")?)
                    } else {
                        Err(VisitError::KeyReused)
                    });
                }
            }
            let delivered_at: i64 = car.try_get("delivered_at")?;
            if opened_at < delivered_at || opened_at > now || opened_at < now - GRACE {
                return Ok(Err(VisitError::Time));
            }
            let inserted = sqlx::query(
                "INSERT INTO warranty_visits (id, application_id, license_id, manufacturer, \
                 opened_at, work_order, safety, recorded_by, recorded_at, request_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(&app_id)
            .bind(car.try_get::<String, _>("license_id")?)
            .bind(manufacturer)
            .bind(opened_at)
            .bind(work_order.trim())
            .bind(i64::from(safety))
            .bind(by)
            .bind(now)
            .bind(key)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(Err(VisitError::InWorkshop));
            }
            Ok(Ok(id.clone()))
        }
        .await;
        super::finish(tx, done).await
    }

    /// The car back from a visit, repaired or not.
    pub async fn close_visit(
        &self,
        manufacturer: &str,
        id: &str,
        returned_at: i64,
        failed: bool,
        by: &str,
        now: i64,
    ) -> Result<Result<(), VisitError>, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = format!(
            "back at {returned_at}, {}",
            if failed { "not repaired" } else { "repaired" }
        );
        let entry = Entry {
            at: now,
            actor: by,
            action: "warranty.close",
            subject: id,
            detail: &detail,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            let row = sqlx::query(
                "SELECT opened_at, returned_at FROM warranty_visits \
                 WHERE id = $1 AND manufacturer = $2",
            )
            .bind(id)
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Err(VisitError::NoVisit));
            };
            if row.try_get::<Option<i64>, _>("returned_at")?.is_some() {
                return Ok(Err(VisitError::Returned));
            }
            let opened_at: i64 = row.try_get("opened_at")?;
            // A return is recorded as it happens: dated back past the hour, a long stay
            // could be written short after the fact and cancel what it made due.
            if returned_at < opened_at || returned_at > now || returned_at < now - RETURN_GRACE {
                return Ok(Err(VisitError::Time));
            }
            sqlx::query(
                "UPDATE warranty_visits SET returned_at = $2, failed = $3 \
                 WHERE id = $1 AND returned_at IS NULL",
            )
            .bind(id)
            .bind(returned_at)
            .bind(i64::from(failed))
            .execute(&mut *tx)
            .await?;
            Ok(Ok(()))
        }
        .await;
        super::finish(tx, done).await
    }

    async fn warranty_where(
        &self,
        clause: &str,
        bind: &str,
        now: i64,
    ) -> Result<Vec<Warranty>, StoreError> {
        let sql = format!(
            "SELECT v.id, v.application_id, a.tracking_code, v.manufacturer, v.opened_at, \
             v.work_order, v.safety, v.returned_at, v.failed FROM warranty_visits v \
             JOIN applications a ON a.id = v.application_id WHERE {clause} \
             ORDER BY v.application_id, v.opened_at"
        );
        let rows = sqlx::query(&sql).bind(bind).fetch_all(&self.pool).await?;
        let mut out: Vec<Warranty> = Vec::new();
        for r in &rows {
            let v = visit_from(r)?;
            match out.last_mut() {
                Some(w) if w.application_id == v.application_id => w.visits.push(v),
                _ => out.push(Warranty {
                    application_id: v.application_id.clone(),
                    tracking_code: v.tracking_code.clone(),
                    manufacturer: v.manufacturer.clone(),
                    visits: vec![v],
                    tally: WarrantyTally::default(),
                }),
            }
        }
        for w in &mut out {
            let visits: Vec<Visit> = w.visits.iter().map(WarrantyVisit::visit).collect();
            w.tally = warranty_tally(&visits, now);
        }
        Ok(out)
    }

    /// A buyer's cars' warranty (their applications' subject at the manufacturer).
    pub async fn warranty_of_citizen(
        &self,
        citizen_sub: &str,
        now: i64,
    ) -> Result<Vec<Warranty>, StoreError> {
        self.warranty_where("a.citizen_sub = $1", citizen_sub, now)
            .await
    }

    /// A manufacturer's cars' warranty.
    pub async fn warranty_of_manufacturer(
        &self,
        manufacturer: &str,
        now: i64,
    ) -> Result<Vec<Warranty>, StoreError> {
        self.warranty_where("v.manufacturer = $1", manufacturer, now)
            .await
    }

    // ---- inspection ---------------------------------------------------------------------

    /// An inspector opens a case about a manufacturer, from a complaint or on their own.
    pub async fn open_case(
        &self,
        manufacturer: &str,
        complaint_id: Option<&str>,
        summary: &str,
        by: &str,
        now: i64,
    ) -> Result<Result<String, CaseError>, StoreError> {
        if !text_ok(summary) {
            return Ok(Err(CaseError::Text));
        }
        let id = format!("case-{}", service_kit::keys::random_token(9));
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = format!(
            "{manufacturer}{}",
            complaint_id
                .map(|c| format!(" from {c}"))
                .unwrap_or_default()
        );
        let entry = Entry {
            at: now,
            actor: by,
            action: "case.open",
            subject: &id,
            detail: &detail,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            if !self.has_role(&mut tx, by, Role::Inspector).await? {
                return Ok(Err(CaseError::NotInspector));
            }
            let known =
                sqlx::query("SELECT 1 AS one FROM licenses WHERE manufacturer = $1 LIMIT 1")
                    .bind(manufacturer)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if !known {
                return Ok(Err(CaseError::NoManufacturer));
            }
            if let Some(c) = complaint_id {
                let ok = sqlx::query(
                    "SELECT 1 AS one FROM complaints WHERE id = $1 AND manufacturer = $2",
                )
                .bind(c)
                .bind(manufacturer)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if !ok {
                    return Ok(Err(CaseError::NoComplaint));
                }
            }
            sqlx::query(
                "INSERT INTO inspection_cases (id, manufacturer, complaint_id, summary, \
                 opened_by, opened_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(manufacturer)
            .bind(complaint_id)
            .bind(summary.trim())
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(Ok(id.clone()))
        }
        .await;
        super::finish(tx, done).await
    }

    /// A finding recorded on a case (kept as written).
    pub async fn add_finding(
        &self,
        case_id: &str,
        text: &str,
        by: &str,
        now: i64,
    ) -> Result<Result<(), CaseError>, StoreError> {
        if !text_ok(text) {
            return Ok(Err(CaseError::Text));
        }
        let id = format!("f-{}", service_kit::keys::random_token(9));
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let entry = Entry {
            at: now,
            actor: by,
            action: "case.finding",
            subject: case_id,
            detail: &id,
            anchor: None,
        };
        let done = async {
            self.audit_in(&mut tx, &entry).await?;
            if !self.has_role(&mut tx, by, Role::Inspector).await? {
                return Ok(Err(CaseError::NotInspector));
            }
            let inserted = sqlx::query(
                "INSERT INTO case_findings (id, case_id, at, by_staff, body) \
                 SELECT $1, id, $3, $4, $5 FROM inspection_cases WHERE id = $2",
            )
            .bind(&id)
            .bind(case_id)
            .bind(now)
            .bind(by)
            .bind(text.trim())
            .execute(&mut *tx)
            .await?;
            Ok(if inserted.rows_affected() == 1 {
                Ok(())
            } else {
                Err(CaseError::NoCase)
            })
        }
        .await;
        super::finish(tx, done).await
    }

    /// Every case, newest first, with its findings.
    pub async fn cases(&self) -> Result<Vec<Case>, StoreError> {
        self.cases_where("$1 = $1", "").await
    }

    /// One case, with its findings.
    pub async fn case(&self, id: &str) -> Result<Option<Case>, StoreError> {
        Ok(self.cases_where("id = $1", id).await?.pop())
    }

    async fn cases_where(&self, clause: &str, bind: &str) -> Result<Vec<Case>, StoreError> {
        let sql = format!(
            "SELECT id, manufacturer, complaint_id, summary, opened_by, opened_at \
             FROM inspection_cases WHERE {clause} ORDER BY opened_at DESC, id"
        );
        let rows = sqlx::query(&sql).bind(bind).fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for r in rows {
            out.push(Case {
                id: r.try_get("id")?,
                manufacturer: r.try_get("manufacturer")?,
                complaint_id: r.try_get("complaint_id")?,
                summary: r.try_get("summary")?,
                opened_by: r.try_get("opened_by")?,
                opened_at: r.try_get("opened_at")?,
                findings: Vec::new(),
            });
        }
        let mut findings: HashMap<String, Vec<(i64, String, String)>> = HashMap::new();
        let sql = format!(
            "SELECT case_id, at, by_staff, body FROM case_findings WHERE case_id IN \
             (SELECT id FROM inspection_cases WHERE {clause}) ORDER BY at, id"
        );
        for r in sqlx::query(&sql).bind(bind).fetch_all(&self.pool).await? {
            findings.entry(r.try_get("case_id")?).or_default().push((
                r.try_get("at")?,
                r.try_get("by_staff")?,
                r.try_get("body")?,
            ));
        }
        for c in &mut out {
            c.findings = findings.remove(&c.id).unwrap_or_default();
        }
        Ok(out)
    }

    // ---- the record and the standing ----------------------------------------------------

    /// Each manufacturer's demerits over the last 365 days (see
    /// [`crate::domain::redress::Demerits`]), for every manufacturer with a license.
    pub async fn demerits(&self, now: i64) -> Result<HashMap<String, Demerits>, StoreError> {
        self.demerits_of(None, now).await
    }

    /// One manufacturer's demerits (a case's page reads no other's).
    pub async fn demerits_for(&self, manufacturer: &str, now: i64) -> Result<Demerits, StoreError> {
        Ok(self
            .demerits_of(Some(manufacturer), now)
            .await?
            .remove(manufacturer)
            .unwrap_or_default())
    }

    async fn demerits_of(
        &self,
        manufacturer: Option<&str>,
        now: i64,
    ) -> Result<HashMap<String, Demerits>, StoreError> {
        let since = now - 365 * DAY;
        let (clause, bind) = match manufacturer {
            Some(m) => ("l.manufacturer = $1", m),
            None => ("$1 = $1", ""),
        };
        let mut out: HashMap<String, Demerits> = HashMap::new();
        let sql = format!("SELECT DISTINCT manufacturer FROM licenses l WHERE {clause}");
        for r in sqlx::query(&sql).bind(bind).fetch_all(&self.pool).await? {
            out.insert(r.try_get("manufacturer")?, Demerits::default());
        }
        for d in self.deliveries_where(clause, bind, now).await? {
            if d.overdue(now) {
                out.entry(d.manufacturer.clone()).or_default().overdue += 1;
            }
        }
        for c in self.complaints(manufacturer).await? {
            let e = out.entry(c.manufacturer.clone()).or_default();
            if c.filed_at >= since && c.ageing().unanswered_late(now) {
                e.unanswered += 1;
            }
            if c.outcome == Some(Outcome::Upheld) && c.filed_at >= since {
                e.upheld += 1;
            }
        }
        let visits = match manufacturer {
            Some(m) => self.warranty_of_manufacturer(m, now).await?,
            None => self.warranty_where("$1 = $1", "", now).await?,
        };
        for w in visits {
            let recent = w.visits.iter().any(|v| v.opened_at >= since);
            if recent && w.tally.replace_or_refund_due {
                out.entry(w.manufacturer.clone()).or_default().warranty += 1;
            }
        }
        Ok(out)
    }

    /// Records the stars `manufacturer`'s record withholds now (and why). A change of the
    /// stars takes the next version, with its `manufacturer.withheld` audit entry in the
    /// same transaction, to be carried to the IdP (which takes no version older than one
    /// it has). Replicas counting the same change write it once.
    pub async fn set_withheld(
        &self,
        manufacturer: &str,
        withheld: u8,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let current =
            sqlx::query("SELECT withheld, demerits FROM maker_standing WHERE manufacturer = $1")
                .bind(manufacturer)
                .fetch_optional(&self.pool)
                .await?;
        let (stars, said): (i64, String) = match &current {
            Some(r) => (r.try_get("withheld")?, r.try_get("demerits")?),
            None => (0, String::new()),
        };
        if stars == i64::from(withheld) {
            // The same stars: the counts said beside them, if they moved (no version).
            if current.is_some() && said != why {
                sqlx::query(
                    "UPDATE maker_standing SET demerits = $2, updated_at = $3 \
                     WHERE manufacturer = $1 AND withheld = $4",
                )
                .bind(manufacturer)
                .bind(why)
                .bind(now)
                .bind(i64::from(withheld))
                .execute(&self.pool)
                .await?;
            }
            return Ok(());
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = async {
            self.lock_audit_chain(&mut tx).await?;
            let version: Option<(i64, i64)> = sqlx::query(
                "SELECT withheld, withheld_version FROM maker_standing WHERE manufacturer = $1",
            )
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| Ok::<_, StoreError>((r.try_get("withheld")?, r.try_get("withheld_version")?)))
            .transpose()?;
            let (stars, version) = version.unwrap_or((0, 0));
            if stars == i64::from(withheld) {
                return Ok(Ok(()));
            }
            let next = version + 1;
            let detail = format!("v{next} {withheld}: {why}");
            self.audit_in(
                &mut tx,
                &Entry {
                    at: now,
                    actor: "record",
                    action: "manufacturer.withheld",
                    subject: manufacturer,
                    detail: &detail,
                    anchor: None,
                },
            )
            .await?;
            sqlx::query(
                "INSERT INTO maker_standing (manufacturer, withheld, withheld_version, demerits, \
                 updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (manufacturer) DO UPDATE \
                 SET withheld = $2, withheld_version = $3, demerits = $4, updated_at = $5",
            )
            .bind(manufacturer)
            .bind(i64::from(withheld))
            .bind(next)
            .bind(why)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok::<Result<(), ()>, StoreError>(Ok(()))
        }
        .await;
        super::finish(tx, done).await?.ok();
        Ok(())
    }

    /// What is still to be carried out at the IdP.
    pub async fn pending_standing(&self) -> Result<Vec<PendingStanding>, StoreError> {
        let rows = sqlx::query(
            "SELECT manufacturer, suspended, stars, decided_kind, decided_by, proposed_by, \
             reason, decided_version, suspend_version, stars_version, pushed_version, withheld, \
             withheld_version, withheld_pushed_version, demerits FROM maker_standing \
             WHERE decided_version > pushed_version \
                OR withheld_version > withheld_pushed_version \
             ORDER BY manufacturer",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let version: i64 = r.try_get("decided_version")?;
            let pushed: i64 = r.try_get("pushed_version")?;
            // What changed since the IdP's last decision, and only that: a rating carries
            // no suspension, a suspension no rating (the IdP's operator may have set either
            // since); a suspension not yet carried rides with the rating that followed it.
            let decided = if version > pushed {
                let suspended: Option<i64> = r.try_get("suspended")?;
                let stars: Option<i64> = r.try_get("stars")?;
                let suspend_changed = r.try_get::<i64, _>("suspend_version")? > pushed;
                let stars_changed = r.try_get::<i64, _>("stars_version")? > pushed;
                let stars = match stars {
                    Some(s) if stars_changed => Some(
                        u8::try_from(s).map_err(|_| StoreError::Corrupt(format!("stars {s}")))?,
                    ),
                    _ => None,
                };
                Some(StandingDecision {
                    version,
                    suspended: suspended.filter(|_| suspend_changed).map(|s| s == 1),
                    stars,
                })
            } else {
                None
            };
            let wv: i64 = r.try_get("withheld_version")?;
            let withheld = if wv > r.try_get::<i64, _>("withheld_pushed_version")? {
                let w: i64 = r.try_get("withheld")?;
                Some((
                    u8::try_from(w).map_err(|_| StoreError::Corrupt(format!("withheld {w}")))?,
                    wv,
                ))
            } else {
                None
            };
            out.push(PendingStanding {
                manufacturer: r.try_get("manufacturer")?,
                decided,
                decided_by: r.try_get("decided_by")?,
                proposed_by: r.try_get("proposed_by")?,
                reason: r.try_get("reason")?,
                withheld,
                demerits: r.try_get("demerits")?,
            });
        }
        Ok(out)
    }

    /// Notes what the IdP has taken (or refused for good, with why): the decision's
    /// version, the stars withheld's version, each with its `manufacturer.carried` audit
    /// entry in the same transaction. Never moves back.
    pub async fn standing_pushed(
        &self,
        manufacturer: &str,
        version: Option<i64>,
        withheld_version: Option<i64>,
        refused: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = async {
            self.lock_audit_chain(&mut tx).await?;
            let row = sqlx::query(
                "SELECT pushed_version, withheld_pushed_version FROM maker_standing \
                 WHERE manufacturer = $1",
            )
            .bind(manufacturer)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(Ok(()));
            };
            let at = service_kit::clock::now();
            fn carried<'a>(at: i64, subject: &'a str, detail: &'a str) -> Entry<'a> {
                Entry {
                    at,
                    actor: "record",
                    action: "manufacturer.carried",
                    subject,
                    detail,
                    anchor: None,
                }
            }
            if let Some(v) =
                version.filter(|v| *v > row.try_get::<i64, _>("pushed_version").unwrap_or(i64::MAX))
            {
                let detail = match refused {
                    Some(why) => format!("v{v} declined: {why}"),
                    None => format!("v{v}"),
                };
                self.audit_in(&mut tx, &carried(at, manufacturer, &detail))
                    .await?;
                sqlx::query(
                    "UPDATE maker_standing SET pushed_version = $2, push_error = $3 \
                     WHERE manufacturer = $1 AND pushed_version < $2",
                )
                .bind(manufacturer)
                .bind(v)
                .bind(refused)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(w) = withheld_version.filter(|w| {
                *w > row
                    .try_get::<i64, _>("withheld_pushed_version")
                    .unwrap_or(i64::MAX)
            }) {
                let detail = format!("withheld v{w}");
                self.audit_in(&mut tx, &carried(at, manufacturer, &detail))
                    .await?;
                sqlx::query(
                    "UPDATE maker_standing SET withheld_pushed_version = $2 \
                     WHERE manufacturer = $1 AND withheld_pushed_version < $2",
                )
                .bind(manufacturer)
                .bind(w)
                .execute(&mut *tx)
                .await?;
            }
            Ok::<Result<(), ()>, StoreError>(Ok(()))
        }
        .await;
        super::finish(tx, done).await?.ok();
        Ok(())
    }

    /// Where the ministry's decision on `manufacturer` stands at the IdP: carried out,
    /// waiting (`Some(None)`), or refused there (`Some(Some(why))`).
    pub async fn standing_at_idp(
        &self,
        manufacturer: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT decided_version, pushed_version, push_error FROM maker_standing \
             WHERE manufacturer = $1",
        )
        .bind(manufacturer)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let error: Option<String> = r.try_get("push_error")?;
        if r.try_get::<i64, _>("decided_version")? > r.try_get::<i64, _>("pushed_version")? {
            Ok(Some(None))
        } else {
            Ok(error.map(Some))
        }
    }

    /// Whether the ministry has `manufacturer` suspended here (an approved inspection).
    pub async fn maker_suspended(&self, manufacturer: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.maker_suspended_in(&mut conn, manufacturer).await
    }
}
