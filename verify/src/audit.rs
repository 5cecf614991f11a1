//! The auditor: downloads a campaign's whole log and recomputes everything that matters
//! from it alone, trusting only the pinned signing key (`presale verify URL CAMPAIGN`).
//!
//! 1. The log: every checkpoint's signature, and that the records served hash to every
//!    checkpoint's root (so each checkpoint is a prefix of the next: a record changed,
//!    dropped or reordered after any checkpoint was published shows here), including
//!    checkpoints the auditor kept from earlier runs.
//! 2. The campaign: the commitments, the frozen list (its size and root recomputed from
//!    the tickets or entries before it), every reveal against its commitment, the seed
//!    recomputed, the shuffle of the pre-opening arrivals, the admission order (tickets in
//!    order from 1, none before the seed exists), each accepted application (a holder with
//!    an admitted ticket or a winning rank, once, within the cap, not while suspended), and
//!    the lottery's draw.

use std::collections::{HashMap, HashSet};

use super::seed::{self, Commitment};
use super::{list_root, open_checkpoint, Event, Head, MemoryTree, EARLY, ENTRIES};
use crate::terms::Selection;

/// The largest answer the auditor reads from a log server at once (a page of records).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The most records the auditor reads of one campaign's log (a national campaign's log
/// is a few million: one record per ticket, admission batch and application); a log that
/// signs a larger tree is refused rather than read until memory runs out.
pub const MAX_RECORDS: u64 = 50_000_000;

/// Where the auditor reads a log from.
#[allow(async_fn_in_trait)]
pub trait LogSource {
    /// Every signed checkpoint the log publishes.
    async fn checkpoints(&self, campaign: &str) -> Result<Vec<String>, String>;
    /// Records `start..end`; may return fewer (a page).
    async fn records(&self, campaign: &str, start: u64, end: u64) -> Result<Vec<String>, String>;
}

/// A log served over HTTP by presale (`/transparency/...`).
pub struct HttpSource {
    pub base: String,
    pub client: reqwest::Client,
}

impl HttpSource {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            // A log that stops answering is a finding to report, not a hang.
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The body of `path`, refused past [`MAX_ANSWER_BYTES`] (a hostile server cannot
    /// make the auditor hold more than that at once).
    async fn body(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut r = self.fetch(path).await?;
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| format!("{path}: {e}"))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!("{path}: an answer over {MAX_ANSWER_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn fetch(&self, path: &str) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.base);
        let r = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        Ok(r)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        serde_json::from_slice(&self.body(path).await?).map_err(|e| format!("{path}: {e}"))
    }

    /// The log's published verifier key (to pin it, compare it with one obtained
    /// elsewhere: the ministry's site, a newspaper).
    pub async fn key(&self) -> Result<String, String> {
        let text = self.body("/transparency/key").await?;
        Ok(String::from_utf8_lossy(&text).trim().to_owned())
    }
}

impl LogSource for HttpSource {
    async fn checkpoints(&self, campaign: &str) -> Result<Vec<String>, String> {
        self.get(&format!("/transparency/{campaign}/checkpoints"))
            .await
    }

    async fn records(&self, campaign: &str, start: u64, end: u64) -> Result<Vec<String>, String> {
        self.get(&format!(
            "/transparency/{campaign}/records?start={start}&end={end}"
        ))
        .await
    }
}

impl HttpSource {
    /// The service's published promise key (pin it as the log's key is pinned).
    pub async fn promise_key(&self) -> Result<String, String> {
        let text = self.body("/transparency/promise-key").await?;
        Ok(String::from_utf8_lossy(&text).trim().to_owned())
    }
}

/// What the auditor found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each is a broken promise; empty means everything recomputed matches.
    pub findings: Vec<String>,
    /// What was checked, in words.
    pub checked: Vec<String>,
    /// The latest checkpoint that verified (to keep for the next run).
    pub latest: Option<Head>,
    /// What the log says was issued, admitted and accepted, once its records replayed.
    pub summary: Option<Summary>,
}

/// The campaign's state as its log gives it: what a replayer's acknowledgements are
/// compared with (`load`'s ledger).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub units: i64,
    /// Tickets `1..=issued` exist (pre-opening arrivals and later tickets together).
    pub issued: i64,
    /// Tickets `1..=admitted_to` were admitted.
    pub admitted_to: i64,
    /// Accepted applications: tracking code and the ticket (or rank) it used.
    pub accepted: HashMap<String, i64>,
    /// Queue campaigns: each holder's ticket (pre-opening arrivals once the seed is
    /// revealed, later arrivals always), so that a replayer who knows its citizens'
    /// holders checks each ticket it was answered against its holder, not only its number.
    pub tickets: HashMap<String, i64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    fn find(&mut self, what: String) {
        if self.findings.len() < 200 {
            self.findings.push(what);
        }
    }
}

/// Audits a campaign's log. `kept` are checkpoints (signed notes) from earlier runs:
/// the log must still agree with each.
pub async fn audit(
    source: &impl LogSource,
    campaign: &str,
    verifier_key: &str,
    kept: &[String],
) -> Result<Report, String> {
    audit_witnessed(source, campaign, verifier_key, kept, &[], 0).await
}

/// Records `0..size` of a campaign's log, page by page (fewer if the log serves fewer).
pub async fn fetch_records(
    source: &impl LogSource,
    campaign: &str,
    size: u64,
) -> Result<Vec<String>, String> {
    if size > MAX_RECORDS {
        return Err(format!(
            "the log claims {size} records, more than the {MAX_RECORDS} an audit reads"
        ));
    }
    // Room for what arrives, not for what a checkpoint claims.
    let mut records = Vec::with_capacity(size.min(4096) as usize);
    while (records.len() as u64) < size {
        let start = records.len() as u64;
        let page = source.records(campaign, start, size).await?;
        if page.is_empty() {
            break;
        }
        if page.len() as u64 > size - start {
            return Err(format!(
                "the log answered {} records where {} were asked",
                page.len(),
                size - start
            ));
        }
        records.extend(page);
    }
    Ok(records)
}

/// Judges citizens' promises of inclusion (`promises`, as they downloaded them) against
/// the log: each must be signed by the service's promise key (`promise_key`), and its
/// record must be in a checkpoint (signed by `verifier_key`) by the promised time. Returns
/// a finding per promise broken or not the service's; pending ones are not findings.
pub async fn audit_promises(
    source: &impl LogSource,
    campaign: &str,
    verifier_key: &str,
    promise_key: &str,
    promises: &[super::promise::Promise],
    now_ms: i64,
) -> Result<Vec<String>, String> {
    use super::promise::Verdict;
    let mut heads: Vec<Head> = source
        .checkpoints(campaign)
        .await?
        .iter()
        .filter_map(|n| open_checkpoint(n, verifier_key, campaign).ok())
        .collect();
    heads.sort_by_key(|h| h.size);
    let size = heads.last().map_or(0, |h| h.size);
    let records = fetch_records(source, campaign, size).await?;
    let mut findings = Vec::new();
    for (i, p) in promises.iter().enumerate() {
        if p.campaign != campaign {
            continue;
        }
        if let Err(e) = p.check(promise_key) {
            findings.push(format!("promise {i}: {e}"));
            continue;
        }
        if let Verdict::Broken(why) = p.verdict(&heads, &records, now_ms) {
            findings.push(format!("promise {i} was not kept: {why}"));
        }
    }
    Ok(findings)
}

/// How long a log's checkpoint may wait for its witnesses' cosignatures before an
/// auditor that names them calls it unwitnessed (witnesses poll every few seconds).
pub const WITNESS_LAG_MS: i64 = 10 * 60 * 1000;

/// As [`audit`], and each witness of `witnesses` (their verifier keys, see
/// [`super::witness`]) must have kept up with the log: a witness that cosigned none of
/// the checkpoints served, or whose last cosigned checkpoint is more than
/// [`WITNESS_LAG_MS`] behind a larger one (by the checkpoints' own times, or by `now_ms`
/// for one signed that long ago), is a finding. A view the witnesses did not see (a split
/// view: another tree signed for this auditor) can then live at most twice that long
/// past the last checkpoint the witnesses cosigned (once by `now_ms`, once more by the
/// dates the key holder writes), after which its records must hash to what they cosigned.
pub async fn audit_witnessed(
    source: &impl LogSource,
    campaign: &str,
    verifier_key: &str,
    kept: &[String],
    witnesses: &[String],
    now_ms: i64,
) -> Result<Report, String> {
    let mut report = Report::default();
    let mut heads = Vec::new();
    for note in source.checkpoints(campaign).await?.iter().chain(kept) {
        match open_checkpoint(note, verifier_key, campaign) {
            Ok(h) => heads.push(h),
            Err(e) => report.find(format!("checkpoint: {e}")),
        }
    }
    heads.sort_by_key(|h| h.size);
    // A larger tree is never signed earlier: a checkpoint dated back (to make a late
    // inclusion look kept, or to slip under a witness's lag) is a finding.
    for pair in heads.windows(2) {
        if pair[1].size > pair[0].size && pair[1].at_ms < pair[0].at_ms {
            report.find(format!(
                "the checkpoint of {} records is dated {}, before the one of {} records ({})",
                pair[1].size, pair[1].at_ms, pair[0].size, pair[0].at_ms
            ));
        }
    }
    if let Some(newest) = heads.last().cloned() {
        for w in witnesses {
            let name = w.split('+').next().unwrap_or_default();
            let Some(last) = heads
                .iter()
                .rev()
                .find(|h| super::witness::cosigned_by(&h.note, w))
            else {
                report.find(format!(
                    "no checkpoint served is cosigned by witness {name}: the log shows this auditor a tree its witness has not seen (a split view), or the witness never looked"
                ));
                continue;
            };
            let late = heads.iter().find(|h| {
                h.size > last.size
                    && (h.at_ms - last.at_ms > WITNESS_LAG_MS || now_ms - h.at_ms > WITNESS_LAG_MS)
            });
            match late {
                Some(h) => report.find(format!(
                    "witness {name} last cosigned the checkpoint of {} records (time {}); the log's checkpoint of {} records (time {}) has waited longer than {} minutes for it: a split view, or a witness that stopped",
                    last.size,
                    last.at_ms,
                    h.size,
                    h.at_ms,
                    WITNESS_LAG_MS / 60_000
                )),
                None => report.checked.push(format!(
                    "witness {name} cosigned the checkpoint of {} records; the newest, of {}, is within its lag",
                    last.size, newest.size
                )),
            }
        }
    }
    let Some(latest) = heads.last().cloned() else {
        report.find("no checkpoint verifies with the pinned key".into());
        return Ok(report);
    };
    let records = fetch_records(source, campaign, latest.size).await?;
    if records.len() as u64 != latest.size {
        report.find(format!(
            "the log serves {} records; its checkpoint says {}",
            records.len(),
            latest.size
        ));
        return Ok(report);
    }
    let mut tree = MemoryTree::default();
    for r in &records {
        tree.push(r.as_bytes());
    }
    for h in &heads {
        if tree.root_at(h.size) != Some(h.root) {
            report.find(format!(
                "the records do not hash to the signed checkpoint of size {} (time {}): a record was changed, dropped or reordered, or the log forked",
                h.size, h.at_ms
            ));
        }
    }
    report.checked.push(format!(
        "{} checkpoints signed by the pinned key, all prefixes of one log of {} records",
        heads.len(),
        records.len()
    ));
    report.latest = Some(latest);
    if !report.ok() {
        return Ok(report);
    }
    let mut events = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        match Event::parse(r) {
            Some(e) => events.push(e),
            None => report.find(format!("record {i} is not an event: {r}")),
        }
    }
    let mut c = Campaign::new(campaign);
    c.signed = heads.iter().map(|h| (h.size, h.at_ms)).collect();
    c.replay(&events, &mut report);
    Ok(report)
}

/// How long after a reveal's deadline its record may first be signed (at most; a shorter
/// window allows as long as itself): the sequencer runs four times a second on every
/// replica, so this is an outage's margin. It stays far below the seed's delay, so a
/// reveal slipped in within it could not have been chosen by its outcome.
const SIGNED_SLACK_MS: i64 = 30_000;

/// Delay steps per second of reveal window below which the delay is reported as weak:
/// twice what GMP computes on this project's machine (about 155 a second).
const STEPS_PER_WINDOW_SECOND: u64 = 300;

/// The campaign as the log tells it, rebuilt record by record.
#[derive(Default)]
struct Campaign {
    id: String,
    selection: Option<Selection>,
    units: i64,
    parties: Vec<Commitment>,
    /// Holders in list order (pre-opening arrivals or lottery entries).
    listed: Vec<String>,
    /// Each listed holder's place in the list (0-based).
    place: HashMap<String, usize>,
    /// Queue tickets after the opening: holder by ticket.
    late: HashMap<String, i64>,
    holders: HashSet<String>,
    frozen: Option<(String, i64, String)>,
    /// When the list was frozen (its record's time): reveals are due within the window.
    frozen_at_ms: i64,
    /// The signed checkpoints (size, time), smallest first: the time of the first one
    /// that includes a record bounds, under the log's signature, when it was written.
    signed: Vec<(u64, i64)>,
    /// The admission rate in force (per minute): the license's, then each Rate record's.
    rate_per_min: i64,
    /// What the rate in force allows to be admitted next, in thousandths of a ticket: a
    /// bucket of at most one minute's worth, refilled at the rate between admission
    /// records (the admitter banks no more than that). None before the first admission.
    allowance_milli: Option<(i64, i64)>,
    /// The license's seed delay (None: issued before it existed).
    seed_delay: Option<crate::terms::SeedDelay>,
    reveals: Vec<(String, String)>,
    /// Parties whose share became the withheld marker.
    withheld: Vec<String>,
    seed: Option<String>,
    admitted_to: i64,
    accepted: HashSet<String>,
    tracking: HashSet<String>,
    suspended: bool,
    /// Admissions paused by the ministry (the license still active).
    admissions_paused: bool,
    /// Lottery: holder's rank once drawn.
    ranks: HashMap<String, i64>,
    /// The license's hold terms, if it asks for one (issue 30).
    hold: Option<crate::terms::HoldTerms>,
    /// Holders whose hold the bank confirmed.
    held: HashSet<String>,
    /// Holders whose hold was settled (captured or released).
    settled: HashSet<String>,
    /// Lottery: ranks offered beyond the units (promoted reserves) with the time to apply
    /// their record gave them, and ranks lapsed.
    promoted: HashMap<i64, i64>,
    lapsed: HashSet<i64>,
    /// Lottery: the holder of each rank, once drawn; when the draw was recorded.
    by_rank: HashMap<i64, String>,
    drawn_at_ms: Option<i64>,
    /// The license's time to apply, in ms.
    window_ms: i64,
}

impl Campaign {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ..Self::default()
        }
    }

    fn replay(mut self, events: &[Event], report: &mut Report) {
        let mut summary = Summary::default();
        for (i, e) in events.iter().enumerate() {
            if let Err(why) = self.apply(i, e) {
                report.find(format!("record {i}: {why}"));
            }
            if let Event::Accepted {
                ticket,
                tracking_code,
                ..
            } = e
            {
                summary.accepted.insert(tracking_code.clone(), *ticket);
            }
        }
        summary.units = self.units;
        summary.issued = match self.selection {
            Some(Selection::Queue) => self.early_count() + self.late.len() as i64,
            _ => self.listed.len() as i64,
        };
        summary.admitted_to = self.admitted_to;
        if self.selection == Some(Selection::Queue) {
            summary.tickets = self
                .place
                .keys()
                .chain(self.late.keys())
                .filter_map(|h| Some((h.clone(), self.ticket_of(h)?)))
                .collect();
        }
        report.summary = Some(summary);
        let (early, late) = (self.early_count(), self.late.len());
        match self.selection {
            Some(Selection::Queue) => report.checked.push(format!(
                "queue: {early} pre-opening arrivals shuffled by the recomputed seed, {late} later tickets in order, {} admitted in ticket order, {} accepted (cap {})",
                self.admitted_to,
                self.accepted.len(),
                self.units
            )),
            Some(Selection::Lottery) => report.checked.push(format!(
                "lottery: {} entries frozen, draw recomputed from the seed, {} accepted (cap {})",
                self.listed.len(),
                self.accepted.len(),
                self.units
            )),
            None => {}
        }
        if self.parties.len() < 2 {
            report.find(format!(
                "the seed has {} party: one party could know it in advance",
                self.parties.len()
            ));
        }
        if self.seed.is_some() {
            report.checked.push(match self.seed_delay {
                Some(d) => format!(
                    "seed checked through its delay ({} steps, {} per second of the reveal window{}) from {} reveals within {} s of the freeze and {} withheld",
                    d.iterations,
                    d.iterations / d.reveal_secs.max(1) as u64,
                    if d.iterations < d.reveal_secs.max(1) as u64 * STEPS_PER_WINDOW_SECOND {
                        ": weak, faster hardware could compute it within the window"
                    } else {
                        ""
                    },
                    self.reveals.len(),
                    d.reveal_secs,
                    self.withheld.len()
                ),
                None => format!("seed recomputed from {} reveals", self.reveals.len()),
            });
        }
    }

    /// When the license makes `step` wait for a hold: the holder's must be confirmed and
    /// not settled.
    fn held_before(&self, holder: &str, step: crate::terms::HoldBefore) -> Result<(), String> {
        let Some(h) = &self.hold else {
            return Ok(());
        };
        // A hold required before entering is required before applying too.
        let needed = step == h.before || step == crate::terms::HoldBefore::Apply;
        // Registering needs a hold confirmed before it; applying, one not settled since
        // (a hold released on withdrawal leaves the place, but no application can follow).
        let settled = (step == crate::terms::HoldBefore::Apply
            || self.selection == Some(Selection::Lottery))
            && self.settled.contains(holder);
        if needed && (!self.held.contains(holder) || settled) {
            return Err(format!(
                "holder {holder} {} without a hold the bank confirmed",
                if step == crate::terms::HoldBefore::Entry {
                    "registered"
                } else {
                    "applied"
                }
            ));
        }
        Ok(())
    }

    fn early_count(&self) -> i64 {
        match self.selection {
            Some(Selection::Queue) => self.listed.len() as i64,
            _ => 0,
        }
    }

    fn list(&mut self, holder: &str) {
        self.place.insert(holder.to_owned(), self.listed.len());
        self.listed.push(holder.to_owned());
    }

    /// The ticket of a queue holder, with the seed known.
    fn ticket_of(&self, holder: &str) -> Option<i64> {
        if let Some(&p) = self.place.get(holder) {
            let seed = self.seed.as_ref()?;
            return crate::shuffle::early_ticket(
                seed.as_bytes(),
                self.listed.len() as i64,
                p as i64 + 1,
            );
        }
        self.late.get(holder).copied()
    }

    fn apply(&mut self, i: usize, e: &Event) -> Result<(), String> {
        match e {
            Event::License { id, terms, .. } => {
                if i != 0 || *id != self.id {
                    return Err(format!("a license record for {id} out of place"));
                }
                if !seed::valid_parties(&terms.parties) {
                    return Err(
                        "the license's seed commitments are not two distinct parties \
                         (distinct names and distinct commitments)"
                            .into(),
                    );
                }
                for needed in [crate::seed::MINISTRY, terms.manufacturer.as_str()] {
                    if !terms.parties.iter().any(|p| p.party == needed) {
                        return Err(format!(
                            "the license's seed has no share of {needed}: the ministry and \
                             the manufacturer are always among its parties"
                        ));
                    }
                }
                self.selection = Some(terms.selection);
                self.units = terms.units;
                self.rate_per_min = terms.admission_per_min;
                self.parties = terms.parties.clone();
                self.seed_delay = terms.seed_delay;
                self.hold = terms.registration.as_ref().and_then(|r| r.hold.clone());
                self.window_ms = terms.apply_window_secs * 1000;
            }
            _ if i == 0 => {
                // A campaign issued before the log existed: its single legacy party.
                self.parties = vec![Commitment {
                    party: seed::LEGACY.into(),
                    commitment: String::new(),
                }];
                return Err(
                    "the log does not start with the license (issued before the log existed)"
                        .into(),
                );
            }
            Event::Ticket {
                holder,
                arrival,
                ticket,
            } => {
                self.held_before(holder, crate::terms::HoldBefore::Entry)?;
                if !self.holders.insert(holder.clone()) {
                    return Err(format!("holder {holder} has a second ticket"));
                }
                match (arrival, ticket) {
                    (Some(a), None) => {
                        if self.frozen.is_some() {
                            return Err(format!(
                                "pre-opening arrival {a} after the list was frozen"
                            ));
                        }
                        if *a != self.listed.len() as i64 + 1 {
                            return Err(format!(
                                "arrival {a} out of order (expected {})",
                                self.listed.len() + 1
                            ));
                        }
                        self.list(holder);
                    }
                    (None, Some(t)) => {
                        let expected = self.late.len() as i64 + 1;
                        // Later tickets count on from the pre-opening arrivals, whose
                        // number is final at the first later ticket.
                        if *t != self.early_count() + expected {
                            return Err(format!(
                                "ticket {t} out of order (expected {}): a number skipped or issued twice",
                                self.early_count() + expected
                            ));
                        }
                        self.late.insert(holder.clone(), *t);
                    }
                    _ => return Err("a ticket record with neither or both numbers".into()),
                }
            }
            Event::Entry { holder, entry } => {
                self.held_before(holder, crate::terms::HoldBefore::Entry)?;
                if self.frozen.is_some() {
                    return Err(format!("entry {entry} after the list was frozen"));
                }
                if !self.holders.insert(holder.clone()) {
                    return Err(format!("holder {holder} entered twice"));
                }
                if *entry != self.listed.len() as i64 + 1 {
                    return Err(format!("entry {entry} out of order"));
                }
                self.list(holder);
            }
            Event::Frozen {
                list,
                size,
                root,
                at_ms,
            } => {
                self.frozen_at_ms = *at_ms;
                if self.frozen.is_some() {
                    return Err("the list was frozen twice".into());
                }
                let expected_list = match self.selection {
                    Some(Selection::Queue) => EARLY,
                    _ => ENTRIES,
                };
                let (n, r) = list_root(expected_list, self.listed.iter().map(String::as_str));
                if list != expected_list || *size != n || *root != r {
                    return Err(format!(
                        "the frozen list ({list}, {size}, {root}) is not the list before it ({expected_list}, {n}, {r})"
                    ));
                }
                self.frozen = Some((list.clone(), *size, root.clone()));
            }
            Event::Reveal {
                party,
                secret,
                at_ms,
            } => {
                if self.frozen.is_none() {
                    return Err(format!("{party} revealed before the list was frozen"));
                }
                if let Some(d) = self.seed_delay {
                    let due = self.frozen_at_ms + d.reveal_secs * 1000;
                    if *at_ms > due {
                        return Err(format!(
                            "{party} revealed at {at_ms}, after the deadline {due}: a late reveal lets a party choose"
                        ));
                    }
                    // The record's own time is written by the service; the checkpoint that
                    // first includes it is signed. A reveal slipped in after the deadline
                    // with a back-dated time shows in the first checkpoint's time.
                    let signed_at = self
                        .signed
                        .iter()
                        .find(|(size, _)| *size > i as u64)
                        .map(|(_, at)| *at);
                    let slack = SIGNED_SLACK_MS.min(d.reveal_secs * 1000);
                    if let Some(t) = signed_at.filter(|t| *t > due + slack) {
                        return Err(format!(
                            "{party}'s reveal was first signed at {t}, after the deadline {due} (and {slack} ms of sequencing): back-dated"
                        ));
                    }
                    if self.seed.is_some() || self.withheld.contains(party) {
                        return Err(format!("{party} revealed after its share was settled"));
                    }
                }
                let Some(c) = self.parties.iter().find(|p| p.party == *party) else {
                    return Err(format!("{party} is not a party of this campaign"));
                };
                if !seed::opens(&c.commitment, secret) {
                    return Err(format!("{party}'s reveal does not match its commitment"));
                }
                if self.reveals.iter().any(|(p, _)| p == party) {
                    return Err(format!("{party} revealed twice"));
                }
                self.reveals.push((party.clone(), secret.clone()));
            }
            Event::Withheld { party, at_ms } => {
                let Some(d) = self.seed_delay else {
                    return Err(format!("{party} withheld in a campaign without a deadline"));
                };
                if self.frozen.is_none() || *at_ms <= self.frozen_at_ms + d.reveal_secs * 1000 {
                    return Err(format!("{party} counted as withheld before the deadline"));
                }
                if !self.parties.iter().any(|p| p.party == *party)
                    || self.reveals.iter().any(|(p, _)| p == party)
                    || self.withheld.contains(party)
                {
                    return Err(format!("{party} cannot be withheld: not a silent party"));
                }
                self.withheld.push(party.clone());
            }
            Event::Seed { seed: s, delay } => {
                let Some((list, size, root)) = &self.frozen else {
                    return Err("a seed before the list was frozen".into());
                };
                if self.reveals.len() + self.withheld.len() != self.parties.len() {
                    return Err("a seed before every party revealed or was withheld".into());
                }
                match (self.seed_delay, delay) {
                    (Some(d), Some(proof)) => {
                        if proof.iterations != d.iterations {
                            return Err(format!(
                                "the seed's delay ran {} steps; the license says {}",
                                proof.iterations, d.iterations
                            ));
                        }
                        let mut shares = self.reveals.clone();
                        shares.extend(
                            self.withheld
                                .iter()
                                .map(|p| (p.clone(), seed::WITHHELD.to_owned())),
                        );
                        if !seed::check_delayed_seed(&self.id, list, *size, root, &shares, proof, s)
                        {
                            return Err(format!(
                                "the seed {s} is not the delay function's output over the reveals and the frozen list"
                            ));
                        }
                    }
                    (Some(_), None) => {
                        return Err("a seed without the delay the license requires".into())
                    }
                    (None, _) => {
                        let expected =
                            seed::campaign_seed(&self.id, list, *size, root, &self.reveals);
                        if *s != expected {
                            return Err(format!(
                                "the seed {s} is not the one the reveals and the frozen list give ({expected})"
                            ));
                        }
                    }
                }
                self.seed = Some(s.clone());
            }
            Event::Admitted { first, last, at_ms } => {
                if self.suspended {
                    return Err(format!(
                        "tickets {first}..={last} admitted while the license was suspended"
                    ));
                }
                if self.admissions_paused {
                    return Err(format!(
                        "tickets {first}..={last} admitted while admissions were paused"
                    ));
                }
                // Against the rate in force: the records of who changed it are the only
                // way it changes, so a rate raised in the database without one shows here.
                let cap = self.rate_per_min.max(0) * 1000;
                let (budget, since) = self.allowance_milli.unwrap_or((cap, *at_ms));
                // What was banked under an earlier, higher rate may still be spent once.
                let budget = (budget + (at_ms - since).max(0) * self.rate_per_min.max(0) / 60)
                    .min(cap.max(budget));
                let count = last - first + 1;
                if count * 1000 > budget + 1000 {
                    return Err(format!(
                        "tickets {first}..={last} ({count}) admitted at {at_ms}, more than the rate in force ({} a minute) allows",
                        self.rate_per_min
                    ));
                }
                self.allowance_milli = Some(((budget - count * 1000).max(0), *at_ms));
                if *first != self.admitted_to + 1 || last < first {
                    return Err(format!(
                        "admission of {first}..={last} out of order (next is {})",
                        self.admitted_to + 1
                    ));
                }
                if *first <= self.early_count() && self.seed.is_none() {
                    return Err("pre-opening tickets admitted before their seed existed".into());
                }
                let issued = self.early_count() + self.late.len() as i64;
                if *last > issued {
                    return Err(format!("ticket {last} admitted but only {issued} issued"));
                }
                self.admitted_to = *last;
            }
            Event::Accepted {
                holder,
                ticket,
                tracking_code,
            } => {
                if self.suspended {
                    return Err("an application accepted while suspended".into());
                }
                if !self.accepted.insert(holder.clone()) {
                    return Err(format!("holder {holder} accepted twice"));
                }
                if !self.tracking.insert(tracking_code.clone()) {
                    return Err(format!("tracking code {tracking_code} given twice"));
                }
                if self.accepted.len() as i64 > self.units {
                    return Err(format!("more than {} applications accepted", self.units));
                }
                self.held_before(holder, crate::terms::HoldBefore::Apply)?;
                match self.selection {
                    Some(Selection::Lottery) => match self.ranks.get(holder) {
                        Some(r)
                            if *r == *ticket
                                && (*r <= self.units || self.promoted.contains_key(r))
                                && !self.lapsed.contains(r) => {}
                        _ => {
                            return Err(format!(
                                "holder {holder} accepted without a winning rank or a promotion in time"
                            ))
                        }
                    },
                    _ => {
                        if self.ticket_of(holder) != Some(*ticket) {
                            return Err(format!(
                                "holder {holder} accepted with ticket {ticket}, not theirs"
                            ));
                        }
                        if *ticket > self.admitted_to {
                            return Err(format!("ticket {ticket} accepted before it was admitted"));
                        }
                    }
                }
            }
            Event::Draw {
                entries,
                order_sha256,
                at_ms,
            } => {
                let Some(s) = &self.seed else {
                    return Err("a draw before the seed".into());
                };
                if *entries != self.listed.len() as i64 {
                    return Err(format!(
                        "the draw ranked {entries} entries; {} were frozen",
                        self.listed.len()
                    ));
                }
                let ids: Vec<String> = (1..=self.listed.len() as i64)
                    .map(crate::lottery::entry_id)
                    .collect();
                let draw = crate::lottery::draw(s, &ids, self.units as usize);
                let order: Vec<i64> = draw
                    .order
                    .iter()
                    .map(|e| e.trim_start_matches('E').parse().unwrap_or(0))
                    .collect();
                if super::order_digest(&order) != *order_sha256 {
                    return Err("the draw's order is not the one the seed gives".into());
                }
                for (rank, no) in order.iter().enumerate() {
                    if let Some(h) = self.listed.get(*no as usize - 1) {
                        self.ranks.insert(h.clone(), rank as i64 + 1);
                        self.by_rank.insert(rank as i64 + 1, h.clone());
                    }
                }
                self.drawn_at_ms = Some(*at_ms);
            }
            Event::Held { holder, .. } => {
                if self.hold.is_none() {
                    return Err(format!(
                        "a hold for {holder}, and the license asks for none"
                    ));
                }
                if self.settled.contains(holder) || !self.held.insert(holder.clone()) {
                    return Err(format!("holder {holder} held twice"));
                }
            }
            Event::Settled { holder, capture } => {
                // Nobody's money is released while their place is open to them: that
                // would turn a winner into a reserve (their place then lapses).
                if !*capture {
                    if let Some(rank) = self.ranks.get(holder) {
                        let open = (*rank <= self.units || self.promoted.contains_key(rank))
                            && !self.lapsed.contains(rank)
                            && !self.accepted.contains(holder);
                        if open {
                            return Err(format!(
                                "holder {holder}'s hold released while their place (rank {rank}) was open"
                            ));
                        }
                    }
                }
                if !self.held.contains(holder) {
                    return Err(format!("holder {holder} settled without a hold"));
                }
                if !self.settled.insert(holder.clone()) {
                    return Err(format!("holder {holder}'s hold settled twice"));
                }
                if *capture != self.accepted.contains(holder) {
                    return Err(format!(
                        "holder {holder}'s hold {} though they {} applied",
                        if *capture { "captured" } else { "released" },
                        if *capture { "never" } else { "" }
                    ));
                }
            }
            Event::Lapsed { rank, at_ms } => {
                let offered =
                    *rank >= 1 && (*rank <= self.units || self.promoted.contains_key(rank));
                let taken = self
                    .by_rank
                    .get(rank)
                    .is_some_and(|h| self.accepted.contains(h));
                if !offered || taken || !self.lapsed.insert(*rank) {
                    return Err(format!(
                        "rank {rank} lapsed, though it was not offered, applied, or had lapsed already"
                    ));
                }
                // Not before its time: the draw's record plus the window for a winner, the
                // promotion's own time for a reserve (suspensions and extensions only move
                // these later, so they are lower bounds).
                let due = match self.promoted.get(rank) {
                    Some(until) => Some(*until),
                    None => self.drawn_at_ms.map(|d| d + self.window_ms),
                };
                if self.suspended || due.is_none_or(|due| *at_ms < due) {
                    return Err(format!(
                        "rank {rank} lapsed at {at_ms}, before its time to apply ran out ({})",
                        due.map_or("no draw".to_owned(), |d| d.to_string())
                    ));
                }
            }
            Event::Promoted {
                rank,
                until_ms,
                at_ms,
            } => {
                // Reserves in their order, one for each lapse: nobody skipped, nobody
                // silently turned into a reserve.
                let next = self.units + self.promoted.len() as i64 + 1;
                if *rank != next {
                    return Err(format!(
                        "rank {rank} promoted; the next on the reserve list was {next}"
                    ));
                }
                if self.promoted.len() >= self.lapsed.len() {
                    return Err(format!("rank {rank} promoted without a place lapsed"));
                }
                if *rank > self.listed.len() as i64 {
                    return Err(format!("rank {rank} promoted past the list's end"));
                }
                if self.suspended || *until_ms != *at_ms + self.window_ms {
                    return Err(format!(
                        "rank {rank} promoted with {} ms to apply; the license gives {}",
                        until_ms - at_ms,
                        self.window_ms
                    ));
                }
                self.promoted.insert(*rank, *until_ms);
            }
            Event::Status { status, .. } => self.suspended = status == "suspended",
            // Checked against the ministry's audit chain by `presale staff audit-check`.
            Event::Rate {
                admission_per_min,
                at_ms,
            } => {
                // What the old rate banked until now, then the new rate from now.
                if let Some((budget, since)) = self.allowance_milli {
                    let old = self.rate_per_min.max(0);
                    let banked = (budget + (at_ms - since).max(0) * old / 60).min(old * 1000);
                    self.allowance_milli = Some((banked.max(budget), *at_ms));
                }
                self.rate_per_min = *admission_per_min;
            }
            Event::Admissions { paused, .. } => self.admissions_paused = *paused,
            Event::MaxActive { .. } | Event::Extended { .. } => {}
            Event::Audit { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The auditor's rules for holds and reserves (issue 30), record by record.

    use super::*;
    use crate::terms::{HoldBefore, HoldTerms, NewLicense, PresaleKind, Registration};

    fn lottery(units: i64, before: HoldBefore) -> Event {
        Event::License {
            id: "l-1".into(),
            terms: Box::new(NewLicense {
                license_no: "MIMT-1".into(),
                manufacturer: "saipa".into(),
                model: "Shahin".into(),
                units,
                unit_price: 8_000_000_000,
                down_payment: 1_000_000_000,
                kind: PresaleKind::Firm,
                delivery_deadline: 1_900_000_000,
                opens_at: 1_800_000_000,
                closes_at: 1_800_003_600,
                selection: Selection::Lottery,
                admission_per_min: 600,
                max_active: 100,
                apply_window_secs: 600,
                min_age: None,
                round: None,
                exclusion: None,
                parties: ["ministry", "saipa"]
                    .map(|p| crate::seed::Contribution::generate(p).commitment())
                    .to_vec(),
                seed_delay: None,
                registration: Some(Registration {
                    hold: Some(HoldTerms {
                        banks: vec!["melli".into()],
                        amount: 1_000_000_000,
                        title: "t".into(),
                        before,
                    }),
                    ..Registration::default()
                }),
            }),
            at_ms: 0,
        }
    }

    /// A lottery of `units` with entrants h1..=h5 held and entered, ranked in order
    /// (as a draw would leave it), then `events`: the first finding, if any.
    fn replay(units: i64, before: HoldBefore, events: Vec<Event>) -> Option<String> {
        let mut c = Campaign::new("l-1");
        let mut all = vec![lottery(units, before)];
        for i in 1..=5 {
            let holder = format!("h{i}");
            all.push(Event::Held {
                holder: holder.clone(),
                bank: "melli".into(),
            });
            all.push(Event::Entry { holder, entry: i });
        }
        for (i, e) in all.iter().enumerate() {
            if let Err(why) = c.apply(i, e) {
                return Some(format!("setup {i}: {why}"));
            }
        }
        for i in 1..=5 {
            c.ranks.insert(format!("h{i}"), i);
            c.by_rank.insert(i, format!("h{i}"));
        }
        c.drawn_at_ms = Some(0);
        c.frozen = Some((String::new(), 5, String::new()));
        for (i, e) in events.iter().enumerate() {
            if let Err(why) = c.apply(100 + i, e) {
                return Some(why);
            }
        }
        None
    }

    /// The license's window (600 s) in ms, and a time past every winner's window.
    const WINDOW: i64 = 600_000;
    const LATE: i64 = WINDOW + 1;

    fn accepted(h: &str, rank: i64) -> Event {
        Event::Accepted {
            holder: h.into(),
            ticket: rank,
            tracking_code: format!("T{h}"),
        }
    }

    fn settled(h: &str, capture: bool) -> Event {
        Event::Settled {
            holder: h.into(),
            capture,
        }
    }

    #[test]
    fn a_round_as_it_should_go_has_no_finding() {
        let events = vec![
            accepted("h1", 1),
            Event::Lapsed {
                rank: 2,
                at_ms: LATE,
            },
            Event::Promoted {
                rank: 3,
                until_ms: LATE + WINDOW,
                at_ms: LATE,
            },
            accepted("h3", 3),
            settled("h1", true),
            settled("h2", false),
            settled("h3", true),
            settled("h4", false),
            settled("h5", false),
        ];
        assert_eq!(replay(2, HoldBefore::Entry, events), None);
    }

    #[test]
    fn an_entry_without_a_hold_is_a_finding() {
        let mut c = Campaign::new("l-1");
        assert!(c.apply(0, &lottery(2, HoldBefore::Entry)).is_ok());
        let e = Event::Entry {
            holder: "h9".into(),
            entry: 1,
        };
        let why = c.apply(1, &e).expect_err("no hold");
        assert!(why.contains("without a hold"), "{why}");
    }

    #[test]
    fn skipping_a_reserve_or_promoting_without_a_lapse_is_a_finding() {
        // The next on the list is rank 3: promoting 4 skips someone.
        let skip = vec![
            Event::Lapsed {
                rank: 2,
                at_ms: LATE,
            },
            Event::Promoted {
                rank: 4,
                until_ms: LATE + WINDOW,
                at_ms: LATE,
            },
        ];
        let why = replay(2, HoldBefore::Entry, skip).expect("a finding");
        assert!(why.contains("next on the reserve list was 3"), "{why}");
        // A winner silently turned into a reserve: a promotion with no lapse.
        let silent = vec![Event::Promoted {
            rank: 3,
            until_ms: LATE + WINDOW,
            at_ms: LATE,
        }];
        let why = replay(2, HoldBefore::Entry, silent).expect("a finding");
        assert!(why.contains("without a place lapsed"), "{why}");
        // A reserve applying without a promotion, and a lapsed winner applying.
        let why = replay(2, HoldBefore::Entry, vec![accepted("h3", 3)]).expect("a finding");
        assert!(why.contains("without a winning rank"), "{why}");
        let late = vec![
            Event::Lapsed {
                rank: 2,
                at_ms: LATE,
            },
            accepted("h2", 2),
        ];
        assert!(replay(2, HoldBefore::Entry, late).is_some());
        // An applied place cannot lapse.
        let applied = vec![
            accepted("h1", 1),
            Event::Lapsed {
                rank: 1,
                at_ms: LATE,
            },
        ];
        assert!(replay(2, HoldBefore::Entry, applied).is_some());
        // A winner lapsed before their time ran out (turned into a reserve by an insider),
        // and a promotion with another time to apply than the license's.
        let early = vec![Event::Lapsed {
            rank: 2,
            at_ms: WINDOW - 1,
        }];
        let why = replay(2, HoldBefore::Entry, early).expect("a finding");
        assert!(why.contains("before its time to apply ran out"), "{why}");
        let short = vec![
            Event::Lapsed {
                rank: 2,
                at_ms: LATE,
            },
            Event::Promoted {
                rank: 3,
                until_ms: LATE + 1,
                at_ms: LATE,
            },
        ];
        let why = replay(2, HoldBefore::Entry, short).expect("a finding");
        assert!(why.contains("the license gives"), "{why}");
        // A winner's hold released while their place is open.
        let why = replay(2, HoldBefore::Entry, vec![settled("h1", false)]).expect("a finding");
        assert!(why.contains("while their place"), "{why}");
    }

    #[test]
    fn a_hold_settled_twice_or_against_its_application_is_a_finding() {
        let twice = vec![settled("h4", false), settled("h4", false)];
        let why = replay(2, HoldBefore::Entry, twice).expect("a finding");
        assert!(why.contains("settled twice"), "{why}");
        let captured_idle = vec![settled("h4", true)];
        let why = replay(2, HoldBefore::Entry, captured_idle).expect("a finding");
        assert!(why.contains("captured though they never applied"), "{why}");
        let released_buyer = vec![accepted("h1", 1), settled("h1", false)];
        assert!(replay(2, HoldBefore::Entry, released_buyer).is_some());
        // Released (a reserve's, not promoted), then an application: no hold to apply with.
        let after = vec![
            settled("h4", false),
            Event::Lapsed {
                rank: 2,
                at_ms: LATE,
            },
            Event::Promoted {
                rank: 3,
                until_ms: LATE + WINDOW,
                at_ms: LATE,
            },
            Event::Lapsed {
                rank: 3,
                at_ms: LATE + WINDOW,
            },
            Event::Promoted {
                rank: 4,
                until_ms: LATE + 2 * WINDOW,
                at_ms: LATE + WINDOW,
            },
            accepted("h4", 4),
        ];
        let why = replay(2, HoldBefore::Entry, after).expect("a finding");
        assert!(why.contains("applied without a hold"), "{why}");
    }
}
