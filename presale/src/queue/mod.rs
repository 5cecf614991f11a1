//! The identity-bound fair queue. Its record is durable, in SQL ([`crate::store::queue`]):
//! a join is answered only after the transaction that numbers it has committed, so a ticket
//! once shown to a citizen survives the loss of any process or store, Redis included (the
//! queue keeps nothing there).
//!
//! Joins are committed in batches (group commit): one task per replica takes every join
//! waiting, commits them in one transaction per campaign, and answers each. At low load a
//! batch is one join and costs one commit; under a surge, joins arriving while a commit is
//! under way form the next batch, so the commits per second stay flat while the joins per
//! commit grow.
//!
//! Those who join before the opening are numbered in arrival order and get their ticket at
//! the opening from a seeded permutation ([`permutation`]); later arrivals get increasing
//! ticket numbers after them. The admitter ([`crate::admitter`]) advances the serving
//! counter at the license's rate on any replica. Every time is the database's clock.

pub use emta_verify::shuffle as permutation;
pub use emta_verify::shuffle::early_ticket;

use std::collections::HashMap;

use service_kit::keys::Keyring;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{Holder, NationalId};
use crate::store::queue::Held;
pub use crate::store::queue::{Joined, QueueState};
use crate::store::Store;

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("queue store: {0}")]
    Store(String),
    #[error("the queue's committer has stopped")]
    Stopped,
}

/// Joins committed in one transaction at most.
const MAX_BATCH: usize = 2000;

/// How long a batch waits at most for joins on their way in.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

struct Job {
    campaign: String,
    holder: Holder,
    /// The national ID whose confirmed hold the place needs first, if it does.
    hold_of: Option<String>,
    reply: oneshot::Sender<Result<Joined, QueueError>>,
}

/// The holder of a national ID in a campaign under the deployment's keys: the name the
/// transparency log knows them by (a load tool holding the deployment's secret checks its
/// citizens' tickets against their holders with it).
pub fn holder_of(keys: &Keyring, campaign: &str, national_id: &str) -> Holder {
    let h = keys.hash(
        "queue-holder",
        format!("{campaign}|{national_id}").as_bytes(),
    );
    Holder(h.chars().take(22).collect())
}

/// The queue's front: hashes national IDs into holders and hands joins to this replica's
/// committer. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    keys: Keyring,
    jobs: mpsc::Sender<Job>,
}

impl Queue {
    /// Starts this replica's committer on `store` (a task that ends with the last clone).
    pub fn new(store: Store, keys: Keyring) -> Self {
        let (jobs, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(commit_joins(store, rx));
        Self { keys, jobs }
    }

    /// The holder of a national ID in a campaign.
    pub fn holder(&self, campaign: &str, national_id: &NationalId) -> Holder {
        holder_of(&self.keys, campaign, national_id.as_str())
    }

    /// Joins (idempotent per national ID); answers after the join has committed.
    pub async fn join(
        &self,
        campaign: &str,
        national_id: &NationalId,
    ) -> Result<Joined, QueueError> {
        self.send(campaign, self.holder(campaign, national_id), None)
            .await
    }

    /// Joins a campaign that takes a confirmed hold before joining: [`Joined::NoHold`]
    /// without one, decided by the batch's own read (group commit: no read of its own).
    pub async fn join_holding(
        &self,
        campaign: &str,
        national_id: &NationalId,
    ) -> Result<Joined, QueueError> {
        let hold_of = Some(national_id.as_str().to_owned());
        self.send(campaign, self.holder(campaign, national_id), hold_of)
            .await
    }

    /// Joins a holder (benchmarks and tests drive the committer with made-up holders).
    pub async fn join_holder(&self, campaign: &str, holder: Holder) -> Result<Joined, QueueError> {
        self.send(campaign, holder, None).await
    }

    async fn send(
        &self,
        campaign: &str,
        holder: Holder,
        hold_of: Option<String>,
    ) -> Result<Joined, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                campaign: campaign.to_owned(),
                holder,
                hold_of,
                reply,
            })
            .await
            .map_err(|_| QueueError::Stopped)?;
        answer.await.map_err(|_| QueueError::Stopped)?
    }
}

/// The committer: every join waiting, one transaction per campaign, then the answers.
async fn commit_joins(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut held = Held::default();
    loop {
        // The connection kept between batches goes back to the pool once joins pause, so
        // that nothing holds one while idle (closing a pool waits for every connection).
        let first = match tokio::time::timeout(Held::IDLE, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => break,
            Err(_) => {
                held.release();
                match rx.recv().await {
                    Some(job) => job,
                    None => break,
                }
            }
        };
        let mut batch = vec![first];
        // Let the joins already on their way in (the citizens answered by the last batch
        // send their next at once under a surge) reach this batch rather than wait a whole
        // commit for the next: a few yields cost microseconds, a commit a millisecond.
        // Never for longer than `GATHER`, however fast they come.
        let (mut quiet, gathering) = (0, std::time::Instant::now());
        while batch.len() < MAX_BATCH && quiet < 3 && gathering.elapsed() < GATHER {
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    quiet = 0;
                }
                Err(_) => {
                    quiet += 1;
                    tokio::task::yield_now().await;
                }
            }
        }
        let mut by_campaign: HashMap<String, Vec<Job>> = HashMap::new();
        for job in batch {
            by_campaign
                .entry(job.campaign.clone())
                .or_default()
                .push(job);
        }
        for (campaign, jobs) in by_campaign {
            let holders: Vec<String> = jobs.iter().map(|j| j.holder.0.clone()).collect();
            let hold_of: Vec<Option<String>> = jobs.iter().map(|j| j.hold_of.clone()).collect();
            match store
                .join_batch(&mut held, &campaign, &holders, &hold_of)
                .await
            {
                Ok(answers) => {
                    for (job, joined) in jobs.into_iter().zip(answers) {
                        let _ = job.reply.send(Ok(joined));
                    }
                }
                Err(e) => {
                    let e = QueueError::Store(e.to_string());
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
