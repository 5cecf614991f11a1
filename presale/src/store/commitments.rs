//! Seed commitments as they arrive, before a license names them (issue 29; issue 31,
//! point 1): a manufacturer sends its own through its credentials at the IdP, the
//! ministry's is entered in the console by a member of staff. A proposal to issue a
//! license takes its parties from here, and the store checks that:
//! - the manufacturer's share came through the manufacturer's own channel: its seed
//!   client's credentials, or its representative's console page (an account enrolled
//!   for that manufacturer, of other people than the proposer);
//! - the ministry's came from a member of staff other than the proposer;
//! - an observer's came as a statement signed with the key registered for it (see
//!   [`crate::transparency::observer`]);
//! - every party's commitment is the one recorded for it, once.
//!
//! So one issuer can no longer be every party of a draw.

use sqlx::Row;

use super::{audit, Store, StoreError};
use crate::transparency::seed::Commitment;

/// The channel a commitment came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A client_credentials token the IdP vouched for: the party is that client.
    IdpClient,
    /// A member of staff, in the console: the ministry's share from an issuer, or the
    /// manufacturer's from its representative.
    Console,
    /// A statement signed with a registered observer's key: the party is that observer.
    Observer,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdpClient => "idp-client",
            Self::Console => "console",
            Self::Observer => "observer-key",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "idp-client" => Some(Self::IdpClient),
            "console" => Some(Self::Console),
            "observer-key" => Some(Self::Observer),
            _ => None,
        }
    }
}

pub use crate::transparency::seed::MINISTRY;

/// A manufacturer's seed client at the IdP is `{manufacturer}-seed`: a service client of
/// its own, whose credentials only the manufacturer holds.
pub const SEED_CLIENT_SUFFIX: &str = "-seed";

/// A recorded commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub license_no: String,
    pub party: String,
    pub commitment: String,
    pub via: Via,
    pub made_by: String,
    pub made_at: i64,
    /// An observer's signed statement of it.
    pub statement: Option<String>,
}

pub use crate::domain::proposals::CommitmentError;

/// A commitment's audit entry's detail.
fn audit_detail(party: &str, commitment: &str, via: Via) -> String {
    format!("{party} {commitment} via {}", via.as_str())
}

fn valid_license_no(no: &str) -> bool {
    (3..=32).contains(&no.len()) && no.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Store {
    /// Records `party`'s commitment for license number `license_no`, once, audited.
    pub async fn record_commitment(
        &self,
        license_no: &str,
        party: &str,
        commitment: &str,
        via: Via,
        made_by: &str,
        now: i64,
    ) -> Result<Result<String, CommitmentError>, StoreError> {
        self.record_commitment_with(license_no, party, commitment, via, made_by, None, now)
            .await
    }

    /// [`Self::record_commitment`], keeping the observer's signed `statement` of it.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_commitment_with(
        &self,
        license_no: &str,
        party: &str,
        commitment: &str,
        via: Via,
        made_by: &str,
        statement: Option<&str>,
        now: i64,
    ) -> Result<Result<String, CommitmentError>, StoreError> {
        let c = Commitment {
            party: party.to_owned(),
            commitment: commitment.to_owned(),
        };
        let well_formed = valid_license_no(license_no)
            && crate::transparency::seed::valid_party(party)
            && service_kit::keys::b64_decode(&c.commitment).is_some_and(|d| d.len() == 32)
            && c.commitment.len() == 43;
        if !well_formed {
            return Ok(Err(CommitmentError::Malformed));
        }
        let id = format!("c-{}", service_kit::keys::random_token(9));
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let detail = audit_detail(party, commitment, via);
        let entry = audit::Entry {
            at: now,
            actor: made_by,
            action: "seed.commit",
            subject: license_no,
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        let inserted = sqlx::query(
                        "INSERT INTO seed_commitments (id, license_no, party, commitment, via, made_by, made_at, \
             statement) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(license_no)
        .bind(party)
        .bind(commitment)
        .bind(via.as_str())
                .bind(made_by)
        .bind(now)
        .bind(statement)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if service_kit::sql::is_unique_violation(&e) => {
                tx.rollback().await?;
                // The same commitment sent again (a retry after a lost answer) is the
                // record it made; another one is refused: a commitment is never replaced.
                let same = self
                    .commitments_for(license_no)
                    .await?
                    .into_iter()
                    .find(|r| {
                        r.party == party && r.commitment == commitment && r.made_by == made_by
                    });
                return Ok(same.map(|r| r.id).ok_or(CommitmentError::Exists));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(Ok(id))
    }

    /// The commitments recorded for `license_no`, by party.
    pub async fn commitments_for(&self, license_no: &str) -> Result<Vec<Received>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, license_no, party, commitment, via, made_by, made_at, statement \
             FROM seed_commitments WHERE license_no = $1 ORDER BY party",
        )
        .bind(license_no)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(received_from_row).collect()
    }

    /// The latest commitments, newest first (the console's list).
    pub async fn recent_commitments(&self, limit: i64) -> Result<Vec<Received>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, license_no, party, commitment, via, made_by, made_at, statement \
             FROM seed_commitments ORDER BY made_at DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(received_from_row).collect()
    }

    /// `party`'s latest commitments, newest first (a representative's list).
    pub async fn recent_commitments_of(
        &self,
        party: &str,
        limit: i64,
    ) -> Result<Vec<Received>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, license_no, party, commitment, via, made_by, made_at, statement \
             FROM seed_commitments WHERE party = $1 ORDER BY made_at DESC, id LIMIT $2",
        )
        .bind(party)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(received_from_row).collect()
    }

    /// The commitments that may be a license's parties, as recorded: the ministry's from
    /// staff independent of `proposer` and the manufacturer's through its own channel.
    /// Read in the caller's transaction.
    async fn eligible_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_no: &str,
        manufacturer: &str,
        proposer: &str,
    ) -> Result<Result<Eligible, CommitmentError>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, license_no, party, commitment, via, made_by, made_at, statement \
             FROM seed_commitments WHERE license_no = $1 ORDER BY party",
        )
        .bind(license_no)
        .fetch_all(&mut *conn)
        .await?;
        let received: Vec<Received> = rows
            .iter()
            .map(received_from_row)
            .collect::<Result<_, _>>()?;
        let audited = self.audited_commitments(&mut *conn, license_no).await?;
        // The ministry's party must be another person than the proposer: not an account
        // the same administrator enrolled.
        let mut independent = std::collections::HashSet::new();
        for r in received
            .iter()
            .filter(|r| r.party == MINISTRY && r.via == Via::Console)
        {
            // Entered by an issuer still enabled: an account disabled or demoted since
            // (one that left, or was found out) no longer makes the ministry's share.
            if self.is_issuer(&mut *conn, &r.made_by).await?
                && self.independent(&mut *conn, &r.made_by, proposer).await?
            {
                independent.insert(r.made_by.clone());
            }
        }
        // The manufacturer's, entered in the console: only by a representative of that
        // manufacturer on the record, and of other people than the proposer.
        let mut representatives = std::collections::HashSet::new();
        for r in received
            .iter()
            .filter(|r| r.party == manufacturer && r.via == Via::Console)
        {
            if self
                .representative_of(&mut *conn, &r.made_by)
                .await?
                .as_deref()
                == Some(manufacturer)
                && self.independent(&mut *conn, &r.made_by, proposer).await?
            {
                representatives.insert(r.made_by.clone());
            }
        }
        // Observers' shares: each by an observer registered (on the record) and enabled,
        // in its own name, never the manufacturer's.
        let mut observers = std::collections::HashMap::new();
        for r in received
            .iter()
            .filter(|r| r.via == Via::Observer && r.made_by == r.party && r.party != manufacturer)
        {
            if let Some(key) = self.observer_key_in(&mut *conn, &r.party).await? {
                observers.insert(r.party.clone(), key);
            }
        }
        let mut eligible = match parties_of(
            &received,
            &audited,
            &Vouched {
                issuers: independent,
                representatives,
                observers,
            },
            manufacturer,
            proposer,
        ) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        // A seed's two parties are two people: a representative's share and a ministry's
        // share entered by accounts with anyone behind both (one administrator enrolled
        // both, and so can sign in as both) are one party.
        for (_, maker_author) in &eligible.maker {
            let Some(k) = maker_author else { continue };
            for (_, ministry_author) in &eligible.ministry {
                if !self.independent(&mut *conn, k, ministry_author).await? {
                    eligible
                        .dependent
                        .insert((ministry_author.clone(), k.clone()));
                }
            }
        }
        Ok(Ok(eligible))
    }

    /// The `seed.commit` audit entries of a license number: (actor, detail). A recorded
    /// commitment counts only with its entry, which the hash chain and the campaigns'
    /// public logs pin: a row inserted or rewritten in the database without one does not.
    async fn audited_commitments<'c, E>(
        &self,
        conn: E,
        license_no: &str,
    ) -> Result<std::collections::HashSet<(String, String)>, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let rows = sqlx::query(
            "SELECT actor, detail FROM audit_log WHERE action = 'seed.commit' AND subject = $1",
        )
        .bind(license_no)
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("actor")?, r.try_get("detail")?)))
            .collect()
    }

    /// The parties a proposal takes (the latest eligible ministry's commitment and the
    /// manufacturer's), outside a transaction (the console's form).
    pub async fn recorded_parties(
        &self,
        license_no: &str,
        manufacturer: &str,
        proposer: &str,
    ) -> Result<Result<Vec<Commitment>, CommitmentError>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        Ok(self
            .eligible_in(&mut conn, license_no, manufacturer, proposer)
            .await?
            .and_then(|e| chosen(&e)))
    }

    /// Whether `parties` are what was recorded for the license: the manufacturer's, one
    /// eligible ministry commitment, and registered observers' own.
    pub(crate) async fn check_parties_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        license_no: &str,
        manufacturer: &str,
        proposer: &str,
        parties: &[Commitment],
    ) -> Result<Result<(), CommitmentError>, StoreError> {
        let eligible = match self
            .eligible_in(conn, license_no, manufacturer, proposer)
            .await?
        {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        // The manufacturer's recorded commitment, one of the eligible ministry commitments
        // (the one the proposal names: a ministry commitment entered since does not undo
        // it), and any registered observers' commitments.
        let ministry = parties
            .iter()
            .filter(|p| p.party == MINISTRY)
            .collect::<Vec<_>>();
        let maker = parties
            .iter()
            .filter(|p| p.party == manufacturer)
            .collect::<Vec<_>>();
        // Every other party is an observer, with the commitment it signed for this
        // license number, each once.
        let observers = parties
            .iter()
            .filter(|p| p.party != MINISTRY && p.party != manufacturer)
            .collect::<Vec<_>>();
        let mut names: Vec<&str> = observers.iter().map(|p| p.party.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if ministry.len() != 1
            || maker.len() != 1
            || names.len() != observers.len()
            || !observers.iter().all(|o| eligible.observers.contains(o))
        {
            return Ok(Err(CommitmentError::Mismatch));
        }
        let ministry_authors: Vec<&String> = eligible
            .ministry
            .iter()
            .filter(|(c, _)| c == ministry[0])
            .map(|(_, a)| a)
            .collect();
        let maker_authors: Vec<&Option<String>> = eligible
            .maker
            .iter()
            .filter(|(c, _)| c == maker[0])
            .map(|(_, a)| a)
            .collect();
        if ministry_authors.is_empty() || maker_authors.is_empty() {
            return Ok(Err(CommitmentError::Mismatch));
        }
        let apart = ministry_authors
            .iter()
            .any(|m| maker_authors.iter().any(|k| eligible.apart(m, k)));
        Ok(if apart {
            Ok(())
        } else {
            Err(CommitmentError::Dependent)
        })
    }
}

/// The recorded commitments that may be a license's parties, with who entered them in the
/// console: the manufacturer's (its seed client's first, then its representatives', the
/// latest first), and every eligible ministry's (several issuers may have entered one),
/// the latest first; and the pairs of authors that are not two people.
struct Eligible {
    maker: Vec<(Commitment, Option<String>)>,
    ministry: Vec<(Commitment, String)>,
    /// Registered observers' commitments, one per observer (its latest).
    observers: Vec<Commitment>,
    /// (ministry author, representative) pairs with someone behind both.
    dependent: std::collections::HashSet<(String, String)>,
}

impl Eligible {
    /// Whether a ministry share by `ministry` and a manufacturer's by `maker` (None: its
    /// seed client, outside the console) are two people's.
    fn apart(&self, ministry: &str, maker: &Option<String>) -> bool {
        maker
            .as_ref()
            .is_none_or(|k| !self.dependent.contains(&(ministry.to_owned(), k.clone())))
    }
}

/// The console's authors whose commitments count: issuers for the ministry's share,
/// representatives for the manufacturer's, each independent of the proposer.
struct Vouched {
    issuers: std::collections::HashSet<String>,
    representatives: std::collections::HashSet<String>,
    /// Registered, enabled observers whose commitment is in their own name, with their
    /// keys.
    observers: std::collections::HashMap<String, String>,
}

fn parties_of(
    received: &[Received],
    audited: &std::collections::HashSet<(String, String)>,
    vouched: &Vouched,
    manufacturer: &str,
    proposer: &str,
) -> Result<Eligible, CommitmentError> {
    let counts = |r: &Received| {
        let entry = (
            r.made_by.clone(),
            audit_detail(&r.party, &r.commitment, r.via),
        );
        audited.contains(&entry)
            && match r.party.as_str() {
                MINISTRY => {
                    r.via == Via::Console
                        && r.made_by != proposer
                        && vouched.issuers.contains(&r.made_by)
                }
                // The observer's own signed statement of this very commitment, checked
                // again with its key (not only when it was posted).
                party if r.via == Via::Observer => {
                    party != manufacturer
                        && r.made_by == party
                        && vouched.observers.get(party).is_some_and(|key| {
                            r.statement.as_deref().and_then(|note| {
                                crate::transparency::observer::verified(note, party, key)
                            }) == Some(crate::transparency::observer::Statement::Commitment {
                                license_no: r.license_no.clone(),
                                commitment: r.commitment.clone(),
                            })
                        })
                }
                party => {
                    party == manufacturer
                        && match r.via {
                            Via::IdpClient => r.made_by == format!("{party}{SEED_CLIENT_SUFFIX}"),
                            Via::Console => {
                                r.made_by != proposer
                                    && vouched.representatives.contains(&r.made_by)
                            }
                            Via::Observer => false,
                        }
                }
            }
    };
    let commitment = |r: &Received| Commitment {
        party: r.party.clone(),
        commitment: r.commitment.clone(),
    };
    let mut maker: Vec<&Received> = received
        .iter()
        .filter(|r| r.party == manufacturer && r.party != MINISTRY && counts(r))
        .collect();
    if maker.is_empty() {
        return Err(CommitmentError::NoManufacturer);
    }
    maker.sort_by_key(|r| (r.via != Via::IdpClient, std::cmp::Reverse(r.made_at)));
    let mut ministry: Vec<&Received> = received
        .iter()
        .filter(|r| r.party == MINISTRY && counts(r))
        .collect();
    ministry.sort_by_key(|r| std::cmp::Reverse(r.made_at));
    if ministry.is_empty() {
        return Err(CommitmentError::NoMinistry);
    }
    // Each observer's latest commitment for this license number (an observer may have
    // sent a new one before the proposal; the record keeps both).
    let mut observed: Vec<&Received> = received
        .iter()
        .filter(|r| r.via == Via::Observer && counts(r))
        .collect();
    observed.sort_by_key(|r| (r.party.clone(), std::cmp::Reverse(r.made_at)));
    observed.dedup_by(|a, b| a.party == b.party);
    Ok(Eligible {
        maker: maker
            .into_iter()
            .map(|r| {
                let author = (r.via == Via::Console).then(|| r.made_by.clone());
                (commitment(r), author)
            })
            .collect(),
        ministry: ministry
            .into_iter()
            .map(|r| (commitment(r), r.made_by.clone()))
            .collect(),
        observers: observed.into_iter().map(commitment).collect(),
        dependent: std::collections::HashSet::new(),
    })
}

/// The parties a proposal takes: the latest eligible ministry's and the manufacturer's,
/// sorted by name.
fn chosen(e: &Eligible) -> Result<Vec<Commitment>, CommitmentError> {
    let (maker, ministry) = e
        .maker
        .iter()
        .find_map(|(k, ka)| {
            e.ministry
                .iter()
                .find(|(_, ma)| e.apart(ma, ka))
                .map(|(m, _)| (k, m))
        })
        .ok_or(CommitmentError::Dependent)?;
    let mut parties = vec![maker.clone(), ministry.clone()];
    parties.extend(e.observers.iter().cloned());
    parties.sort_by(|a, b| a.party.cmp(&b.party));
    Ok(parties)
}

fn received_from_row(r: &sqlx::any::AnyRow) -> Result<Received, StoreError> {
    let via: String = r.try_get("via")?;
    Ok(Received {
        id: r.try_get("id")?,
        license_no: r.try_get("license_no")?,
        party: r.try_get("party")?,
        commitment: r.try_get("commitment")?,
        via: Via::parse(&via)
            .ok_or_else(|| StoreError::Corrupt(format!("commitment via {via:?}")))?,
        made_by: r.try_get("made_by")?,
        made_at: r.try_get("made_at")?,
        statement: r.try_get("statement")?,
    })
}
