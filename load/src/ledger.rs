//! The ledger of acknowledgements: every ticket, admission and tracking code the servers
//! answered a citizen during the run, checked afterwards against the durable public
//! record, the campaign's transparency log (audited first: signatures, consistency, the
//! shuffle, the admission order and the cap, by the `emta-verify` crate's auditor); and every
//! sign-in a storefront acknowledged, checked against the IdP's durable record of the
//! tokens it answered (its grants and refresh tokens, read from its database where the
//! tool has it: a rehearsal owns it; `load run --idp-database-url` for a deployment).
//!
//! Each count below must be 0 for the run to hold: something answered to a citizen and
//! missing from the record was lost; a ticket or tracking code answered to two citizens was
//! issued twice; an admission out of ticket order or an application over the cap is what
//! the queue exists to prevent.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use emta_verify::audit::{self as verify, HttpSource, Summary};
use serde::Serialize;

/// What the servers acknowledged, per citizen (indexes into the run's citizens).
#[derive(Debug, Default, Clone)]
pub struct Acks {
    pub tickets: Vec<(usize, i64)>,
    pub admissions: Vec<(usize, i64)>,
    pub codes: Vec<(usize, String)>,
    /// Sign-ins a storefront acknowledged: (citizen, client). Each rests on a token
    /// response of the IdP.
    pub sign_ins: Vec<(usize, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    pub campaign: String,
    pub tickets_acknowledged: usize,
    pub admissions_acknowledged: usize,
    pub applications_acknowledged: usize,
    /// Sign-ins acknowledged, each checked against the IdP's grants and refresh tokens;
    /// `None` when the IdP's database was not at hand (not checked).
    pub tokens_acknowledged: Option<usize>,
    /// Acknowledged but not in the durable record.
    pub lost: u64,
    /// One ticket number or tracking code answered to two citizens, or given twice in the
    /// record.
    pub issued_twice: u64,
    /// Admissions out of ticket order in the record.
    pub out_of_order: u64,
    /// Applications beyond the cap.
    pub oversold: u64,
    /// A citizen (one national ID) with two accepted applications.
    pub duplicate_national_ids: u64,
    /// Every discrepancy, in words (at most 200).
    pub findings: Vec<String>,
    /// What the log's audit checked.
    pub checked: Vec<String>,
}

impl Ledger {
    pub fn holds(&self) -> bool {
        self.findings.is_empty()
            && self.lost
                + self.issued_twice
                + self.out_of_order
                + self.oversold
                + self.duplicate_national_ids
                == 0
    }
}

/// Records a discrepancy in words (the first 200).
fn note(l: &mut Ledger, what: String) {
    if l.findings.len() < 200 {
        l.findings.push(what);
    }
}

/// Compares `acks` with what the log says, judged by [`Summary`] and the audit's
/// findings. `holders`, when the caller can compute them (it holds the deployment's
/// secret: a rehearsal), are the citizens' holders in this campaign, by
/// citizen: each acknowledged ticket is then checked against its holder's ticket in the
/// log, so a number the log gives to someone else is caught, not only one outside the
/// issued range.
pub fn compare(
    campaign: &str,
    acks: &Acks,
    audit: &verify::Report,
    holders: Option<&[String]>,
) -> Ledger {
    let mut l = Ledger {
        campaign: campaign.to_owned(),
        tickets_acknowledged: acks.tickets.len(),
        admissions_acknowledged: acks.admissions.len(),
        applications_acknowledged: acks.codes.len(),
        tokens_acknowledged: None,
        lost: 0,
        issued_twice: 0,
        out_of_order: 0,
        oversold: 0,
        duplicate_national_ids: 0,
        findings: Vec::new(),
        checked: audit.checked.clone(),
    };
    let mut find = note;
    for f in &audit.findings {
        // The verifier's words for what it found; each also counts under its kind.
        if f.contains("out of order") {
            l.out_of_order += 1;
        } else if f.contains("twice") && f.contains("accepted") {
            l.duplicate_national_ids += 1;
        } else if f.contains("twice") || f.contains("second ticket") {
            l.issued_twice += 1;
        } else if f.contains("more than") {
            l.oversold += 1;
        }
        find(&mut l, format!("the log's audit: {f}"));
    }
    let Some(s) = &audit.summary else {
        find(
            &mut l,
            "the log could not be replayed, so nothing acknowledged can be found in it".into(),
        );
        l.lost = (acks.tickets.len() + acks.admissions.len() + acks.codes.len()) as u64;
        return l;
    };
    compare_summary(&mut l, acks, s, &mut find);
    if let Some(holders) = holders {
        compare_holders(&mut l, acks, s, holders, &mut find);
    }
    l
}

/// Each acknowledged ticket is its holder's in the log.
fn compare_holders(
    l: &mut Ledger,
    acks: &Acks,
    s: &Summary,
    holders: &[String],
    find: &mut impl FnMut(&mut Ledger, String),
) {
    l.checked.push(format!(
        "each of the {} acknowledged tickets against its holder's ticket in the log",
        acks.tickets.len()
    ));
    let mut seen: HashSet<(usize, i64)> = HashSet::new();
    for &(citizen, t) in &acks.tickets {
        if !seen.insert((citizen, t)) {
            continue;
        }
        let Some(holder) = holders.get(citizen) else {
            l.lost += 1;
            find(
                l,
                format!("citizen {citizen} has no holder to check ticket {t} against"),
            );
            continue;
        };
        match s.tickets.get(holder) {
            Some(&mine) if mine == t => {}
            Some(&mine) => {
                l.issued_twice += 1;
                find(
                    l,
                    format!("citizen {citizen} was answered ticket {t}; the log gives their holder ticket {mine}"),
                );
            }
            None => {
                l.lost += 1;
                find(
                    l,
                    format!("citizen {citizen} was answered ticket {t}; the log has no ticket for their holder"),
                );
            }
        }
    }
}

fn compare_summary(
    l: &mut Ledger,
    acks: &Acks,
    s: &Summary,
    find: &mut impl FnMut(&mut Ledger, String),
) {
    // Tickets: each number to one citizen, each in the record.
    let mut holder_of: HashMap<i64, usize> = HashMap::new();
    let mut ticket_of: HashMap<usize, i64> = HashMap::new();
    for &(citizen, t) in &acks.tickets {
        match holder_of.insert(t, citizen) {
            Some(other) if other != citizen => {
                l.issued_twice += 1;
                find(
                    l,
                    format!("ticket {t} was answered to citizens {other} and {citizen}"),
                );
            }
            _ => {}
        }
        match ticket_of.insert(citizen, t) {
            Some(other) if other != t => {
                l.issued_twice += 1;
                find(
                    l,
                    format!("citizen {citizen} was answered tickets {other} and {t}"),
                );
            }
            _ => {}
        }
        if !(1..=s.issued).contains(&t) {
            l.lost += 1;
            find(
                l,
                format!(
                    "ticket {t} was answered but the log issued only 1..={}",
                    s.issued
                ),
            );
        }
    }
    // Admissions: each admitted in the record.
    for &(citizen, t) in &acks.admissions {
        if t > s.admitted_to {
            l.lost += 1;
            find(
                l,
                format!("citizen {citizen}'s ticket {t} was answered admitted; the log admitted up to {}", s.admitted_to),
            );
        }
    }
    // Applications: each code in the record, with the citizen's own ticket; one per
    // citizen; within the cap.
    let mut codes_of: HashMap<usize, HashSet<&str>> = HashMap::new();
    let mut citizen_of: HashMap<&str, usize> = HashMap::new();
    for (citizen, code) in &acks.codes {
        codes_of.entry(*citizen).or_default().insert(code);
        match citizen_of.insert(code, *citizen) {
            Some(other) if other != *citizen => {
                l.issued_twice += 1;
                find(
                    l,
                    format!("tracking code {code} was answered to citizens {other} and {citizen}"),
                );
            }
            _ => {}
        }
        match s.accepted.get(code) {
            None => {
                l.lost += 1;
                find(
                    l,
                    format!("tracking code {code} (citizen {citizen}) is not in the log"),
                );
            }
            Some(t) => {
                if let Some(mine) = ticket_of.get(citizen).filter(|m| **m != *t) {
                    l.issued_twice += 1;
                    find(
                        l,
                        format!("citizen {citizen} held ticket {mine} but their application used ticket {t}"),
                    );
                }
            }
        }
    }
    for (citizen, codes) in &codes_of {
        if codes.len() > 1 {
            l.duplicate_national_ids += 1;
            find(
                l,
                format!("citizen {citizen} was accepted {} times", codes.len()),
            );
        }
    }
    let accepted = s.accepted.len().max(citizen_of.len()) as i64;
    if accepted > s.units {
        l.oversold += (accepted - s.units) as u64;
        find(
            l,
            format!("{accepted} applications accepted for {} units", s.units),
        );
    }
}

/// Checks every acknowledged sign-in against the IdP's durable record: the citizen
/// (`citizens[i]`'s national ID) holds a grant at that client, not revoked, with a live
/// refresh token (the token the storefront was answered is still good: nothing the IdP
/// answered was lost with a store or a process). A grant with more than one live refresh
/// token was issued twice (rotation forked: reuse detection would no longer hold).
pub fn compare_tokens(
    l: &mut Ledger,
    acks: &Acks,
    national_ids: &[String],
    grants: &[idp::store::sql::GrantAudit],
) {
    l.tokens_acknowledged = Some(acks.sign_ins.len());
    l.checked
        .push("the IdP's grants and refresh tokens (its database)".into());
    let mut live: HashMap<(&str, &str), i64> = HashMap::new();
    let mut granted: HashSet<(&str, &str)> = HashSet::new();
    for g in grants {
        granted.insert((&g.national_id, &g.client_id));
        if g.revoked_at.is_none() {
            *live.entry((&g.national_id, &g.client_id)).or_default() += g.live_tokens;
        }
        if g.live_tokens > 1 {
            l.issued_twice += 1;
            note(
                l,
                format!(
                    "grant {} at {} has {} live refresh tokens (rotation leaves one)",
                    g.grant_id, g.client_id, g.live_tokens
                ),
            );
        }
    }
    let mut seen: HashSet<(usize, &str)> = HashSet::new();
    for (citizen, client) in &acks.sign_ins {
        if !seen.insert((*citizen, client)) {
            continue;
        }
        let Some(nid) = national_ids.get(*citizen) else {
            continue;
        };
        let key = (nid.as_str(), client.as_str());
        if !granted.contains(&key) {
            l.lost += 1;
            note(
                l,
                format!(
                    "citizen {citizen} was signed in at {client}, but the IdP has no grant for it"
                ),
            );
        } else if live.get(&key).copied().unwrap_or(0) == 0 {
            l.lost += 1;
            note(
                l,
                format!("citizen {citizen} was signed in at {client}, but no refresh token of theirs there is live"),
            );
        }
    }
}

/// [`compare_tokens`] against the IdP's database at `db`.
pub async fn check_tokens(
    l: &mut Ledger,
    acks: &Acks,
    national_ids: &[String],
    db: &idp::store::Db,
) -> anyhow::Result<()> {
    let grants = db
        .grant_audit(service_kit::clock::now())
        .await
        .map_err(|e| anyhow::anyhow!("the IdP's grants: {e}"))?;
    compare_tokens(l, acks, national_ids, &grants);
    Ok(())
}

/// Audits the campaign's log at `presale` and compares the acknowledgements with it. The
/// log is written a little after each acknowledgement (records are sequenced and signed
/// in batches), so this waits up to `patience` for it to catch up before judging.
pub async fn check(
    presale: &str,
    campaign: &str,
    acks: &Acks,
    holders: Option<&[String]>,
    patience: Duration,
) -> anyhow::Result<Ledger> {
    let source = HttpSource::new(presale);
    let key = source
        .key()
        .await
        .map_err(|e| anyhow::anyhow!("the log's key: {e}"))?;
    let deadline = Instant::now() + patience;
    loop {
        let audit = verify::audit(&source, campaign, &key, &[])
            .await
            .map_err(|e| anyhow::anyhow!("the log of {campaign}: {e}"))?;
        let ledger = compare(campaign, acks, &audit, holders);
        if ledger.holds() || Instant::now() >= deadline {
            return Ok(ledger);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(issued: i64, admitted_to: i64, accepted: &[(&str, i64)]) -> verify::Report {
        verify::Report {
            summary: Some(Summary {
                units: 2,
                issued,
                admitted_to,
                accepted: accepted
                    .iter()
                    .map(|(c, t)| ((*c).to_owned(), *t))
                    .collect(),
                tickets: (1..=issued).map(|t| (format!("h{t}"), t)).collect(),
            }),
            ..verify::Report::default()
        }
    }

    #[test]
    fn what_was_answered_and_recorded_holds() {
        let acks = Acks {
            tickets: vec![(0, 1), (1, 2), (2, 3), (0, 1)],
            admissions: vec![(0, 1), (1, 2)],
            codes: vec![(0, "A".into()), (1, "B".into())],
            ..Acks::default()
        };
        let l = compare("c", &acks, &audit(3, 2, &[("A", 1), ("B", 2)]), None);
        assert!(l.holds(), "{:?}", l.findings);
    }

    #[test]
    fn each_broken_promise_is_counted() {
        let acks = Acks {
            // Ticket 2 to two citizens; ticket 9 never issued.
            tickets: vec![(0, 1), (1, 2), (2, 2), (3, 9)],
            // Ticket 3 answered admitted; the log admitted only up to 2.
            admissions: vec![(0, 1), (2, 3)],
            // C is not in the log; citizen 0 accepted twice.
            codes: vec![(0, "A".into()), (1, "B".into()), (0, "C".into())],
            ..Acks::default()
        };
        let l = compare("c", &acks, &audit(3, 2, &[("A", 1), ("B", 2)]), None);
        assert_eq!(l.issued_twice, 1, "{:?}", l.findings);
        assert_eq!(
            l.lost, 3,
            "ticket 9, the admission of 3, code C: {:?}",
            l.findings
        );
        assert_eq!(l.duplicate_national_ids, 1);
        assert_eq!(l.oversold, 1, "three codes answered for two units");
        assert!(!l.holds());
    }

    #[test]
    fn a_log_that_cannot_be_replayed_loses_everything() {
        let acks = Acks {
            tickets: vec![(0, 1)],
            ..Acks::default()
        };
        let l = compare(
            "c",
            &acks,
            &verify::Report {
                findings: vec!["the records do not hash to the signed checkpoint".into()],
                ..verify::Report::default()
            },
            None,
        );
        assert_eq!(l.lost, 1);
        assert!(!l.holds());
    }

    #[test]
    fn a_ticket_the_log_gives_to_another_holder_is_caught() {
        // Citizens 0..3 hold h1..h3 and the log gives h1 ticket 1, h2 ticket 2, h3 ticket
        // 3. Citizen 0 was answered ticket 2, a number the log issued (so the range check
        // passes) but to h2; citizen 1 was answered ticket 1 (the two swapped).
        let acks = Acks {
            tickets: vec![(0, 2), (1, 1), (2, 3)],
            ..Acks::default()
        };
        let holders: Vec<String> = (1..=3).map(|t| format!("h{t}")).collect();
        let report = audit(3, 0, &[]);
        assert!(
            compare("c", &acks, &report, None).holds(),
            "the numbers alone pass"
        );
        let l = compare("c", &acks, &report, Some(&holders));
        assert_eq!(l.issued_twice, 2, "{:?}", l.findings);
        assert!(!l.holds());
        // A holder the log does not know at all: lost.
        let unknown = vec!["h1".to_owned(), "h2".to_owned(), "nobody".to_owned()];
        let acks = Acks {
            tickets: vec![(0, 1), (1, 2), (2, 3)],
            ..Acks::default()
        };
        let l = compare("c", &acks, &report, Some(&unknown));
        assert_eq!(l.lost, 1, "{:?}", l.findings);
        assert!(compare("c", &acks, &report, Some(&holders)).holds());
    }

    fn grant(nid: &str, client: &str, revoked: bool, live: i64) -> idp::store::sql::GrantAudit {
        idp::store::sql::GrantAudit {
            national_id: nid.into(),
            client_id: client.into(),
            grant_id: format!("g-{nid}-{client}-{live}"),
            revoked_at: revoked.then_some(1),
            live_tokens: live,
        }
    }

    #[test]
    fn sign_ins_resting_on_live_grants_hold() {
        let acks = Acks {
            // Citizen 1 signed in twice at saipa (a start over): two grants, one live.
            sign_ins: vec![
                (0, "saipa".into()),
                (1, "saipa".into()),
                (1, "saipa".into()),
            ],
            ..Acks::default()
        };
        let mut l = compare("c", &acks, &audit(0, 0, &[]), None);
        let ids = ["A".to_owned(), "B".to_owned()];
        compare_tokens(
            &mut l,
            &acks,
            &ids,
            &[
                grant("A", "saipa", false, 1),
                grant("B", "saipa", true, 0),
                grant("B", "saipa", false, 1),
            ],
        );
        assert!(l.holds(), "{:?}", l.findings);
        assert_eq!(l.tokens_acknowledged, Some(3));
    }

    #[test]
    fn a_lost_grant_a_dead_token_and_a_forked_rotation_are_counted() {
        let acks = Acks {
            sign_ins: vec![
                (0, "saipa".into()),
                (1, "saipa".into()),
                (2, "iran-khodro".into()),
            ],
            ..Acks::default()
        };
        let mut l = compare("c", &acks, &audit(0, 0, &[]), None);
        let ids = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
        compare_tokens(
            &mut l,
            &acks,
            &ids,
            &[
                // A's grant is at the other manufacturer only: lost.
                grant("A", "iran-khodro", false, 1),
                // B's grant was revoked: its token is not good any more.
                grant("B", "saipa", true, 1),
                // C's grant has two live refresh tokens.
                grant("C", "iran-khodro", false, 2),
            ],
        );
        assert_eq!(l.lost, 2, "{:?}", l.findings);
        assert_eq!(l.issued_twice, 1, "{:?}", l.findings);
        assert!(!l.holds());
    }
}
