//! The admitter: four times a second on every replica, reload the licenses, tick every
//! queue campaign (admit at the license's rate; a transaction under the campaign's lock,
//! so any number of replicas may run it), refresh this replica's counters cache from what
//! committed, draw lotteries whose registration has closed (freezing their entries first),
//! and sequence and sign every campaign's transparency log.
//!
//! Work that is finished rests (issue 33): a queue that is over with nobody admitted
//! still within their time and its seed known, a round with no hold held or being settled
//! (looked at again every half minute), a log with nothing pending (one statement finds
//! the campaigns that have some). A ministry
//! licenses presale after presale for years; without this every replica would lock and
//! write every campaign ever run four times a second.
//!
//! While the database cannot be reached nothing is admitted (the tick is a transaction),
//! and the queue's clock stands still, so those already admitted do not lose their turn
//! (see [`crate::store::queue`]).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::app::Core;
use crate::domain::{License, Selection};
use crate::store::StoreError;

/// How often a replica runs the admitter.
const TICK: Duration = Duration::from_millis(250);

/// The admitter's memory on this replica.
#[derive(Default)]
pub(crate) struct Admitter {
    /// One tick at a time: a slow tick that read licenses before a change must not
    /// overwrite a newer tick's cache.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Lotteries this replica has seen drawn: no more draw attempts for them.
    drawn: std::sync::Mutex<HashSet<String>>,
    /// Campaigns whose delayed seed this replica is computing (minutes each): one at a
    /// time per campaign here; other replicas may compute it too, the first write stands.
    settling: Running,
    /// Campaigns whose log this replica is sequencing: each on its own task, one at a
    /// time, so a backlog's large batch is never cut off by a round's budget (and rolled
    /// back, round after round) and never holds up another campaign's admissions.
    sequencing: Running,
    /// Campaigns whose round work (lapses, promotions, holds settled, notifications) this
    /// replica is doing ([`crate::settle`]).
    rounds: Running,
    /// When this replica last completed a tick with every campaign advanced (Unix ms).
    pub(crate) last_tick_ms: std::sync::atomic::AtomicI64,
    /// Events this replica knows were told already ([`crate::notify::once`]): the shared
    /// store is asked once per event here, not once per tick.
    pub(crate) told: std::sync::Mutex<HashSet<String>>,
    /// When this replica last looked for a campaign's admissions about to lapse (Unix ms),
    /// and the last ticket it has reminded.
    pub(crate) lapse_looked: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
    /// Campaigns whose reminders this replica is sending.
    reminding: Running,
    /// Work found finished for good on this replica: not done again until its license
    /// changes, or (a round) until it is looked at again.
    resting: std::sync::Mutex<HashMap<(Work, String), Rest>>,
}

/// A campaign's work that can be finished for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Work {
    /// A queue's admissions: over (its close passed, with no pause or suspension begun
    /// before it still running), nobody admitted still within their time, and its seed
    /// known (the counters this replica shows include it). Final: no admission is made
    /// after the close, and nothing moves the close past the clock again (a resumption
    /// gives back only time begun before it; an extension gives time only to those still
    /// within theirs, and changes no license field).
    Admit,
    /// A round's work ([`crate::settle::round`]): over, and no hold held or being
    /// settled. Looked at again every [`ROUND_RECHECK`], for a hold confirmed or started
    /// late (released then, not at once).
    Round,
}

/// A rest: the license as it was (any change to it wakes the work) and until when.
struct Rest {
    license: u64,
    until_ms: i64,
}

/// How often a finished round is looked at again.
const ROUND_RECHECK: Duration = Duration::from_secs(30);

/// A digest of a license as this replica loaded it: a change of any of its terms or its
/// status (a suspension or resumption, an application accepted) wakes work resting on it.
fn digest(l: &License) -> u64 {
    struct Feed<'a>(&'a mut DefaultHasher);
    impl std::fmt::Write for Feed<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut h = DefaultHasher::new();
    // Debug prints every field: nothing added to `License` can be forgotten here.
    let _ = std::fmt::Write::write_fmt(&mut Feed(&mut h), format_args!("{l:?}"));
    h.finish()
}

impl Admitter {
    /// Whether `work` of license `l` is resting now (and forgets a rest that has ended).
    fn resting(&self, work: Work, l: &License) -> bool {
        let mut resting = lock(&self.resting);
        let key = (work, l.id.clone());
        let Some(rest) = resting.get(&key) else {
            return false;
        };
        if rest.license == digest(l) && service_kit::clock::now_ms() < rest.until_ms {
            return true;
        }
        resting.remove(&key);
        false
    }

    /// Lets `work` of license `l` rest: until the license changes, and at most `for_`.
    fn rest(&self, work: Work, l: &License, for_: Option<Duration>) {
        let until_ms = for_.map_or(i64::MAX, |d| {
            service_kit::clock::now_ms().saturating_add(d.as_millis() as i64)
        });
        lock(&self.resting).insert(
            (work, l.id.clone()),
            Rest {
                license: digest(l),
                until_ms,
            },
        );
    }
}

/// Campaigns with a task of some kind running on this replica.
type Running = std::sync::Arc<std::sync::Mutex<HashSet<String>>>;

/// A std mutex whose poisoning (a panic elsewhere mid-update of plain data) is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the admitter until the task is aborted.
pub(crate) async fn run(core: Core) {
    let mut tick_every = tokio::time::interval(TICK);
    tick_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick_every.tick().await;
        tick(&core).await;
    }
}

/// One round: reload licenses, draw closed lotteries, admit in every queue campaign.
pub(crate) async fn tick(core: &Core) {
    let a = &core.admitter;
    let _one = a.one_at_a_time.lock().await;
    // A tick that could not read what it needs is not a tick that advanced everything
    // (the admitter's lag shows a database gone even when every campaign rests).
    let mut all_advanced = true;
    match core.store.licenses().await {
        Ok(ls) => core.set_licenses(ls),
        Err(e) => {
            all_advanced = false;
            tracing::warn!(error = %e, "license reload failed");
        }
    }
    let licenses = core.all_licenses();
    settle_seeds(core).await;
    // The draw decides on the database's clock under the license's lock; this replica's
    // clock only spares the database a draw attempt per tick during the whole window.
    let soon = service_kit::clock::now() + 5;
    for l in licenses
        .iter()
        .filter(|l| l.selection == Selection::Lottery && l.is_active() && soon >= l.closes_at)
    {
        if lock(&a.drawn).contains(&l.id) {
            continue;
        }
        match core.store.draw_lottery(l).await {
            Ok(Some(_)) => {
                lock(&a.drawn).insert(l.id.clone());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, license = %l.id, "lottery draw failed"),
        }
    }
    // The logs with records to sequence, for all campaigns in one statement (if it fails,
    // every campaign's log looks for itself, as each sequencing pass does anyway).
    let pending = match core.log_signer {
        Some(_) => match core.store.logs_pending().await {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                all_advanced = false;
                tracing::warn!(error = %e, "the logs with records pending could not be listed");
                None
            }
        },
        None => Some(Arc::default()),
    };
    // Each campaign on its own, at once and within its own budget: one campaign whose row
    // somebody holds locked (or whose log is slow to sign) must not halt every other
    // campaign's admissions. On PostgreSQL the tick's and the sequencer's transactions
    // also carry a lock and a statement timeout, so the server gives up as well.
    let mut work = tokio::task::JoinSet::new();
    for l in licenses.iter() {
        let (core, l, pending) = (core.clone(), l.clone(), pending.clone());
        work.spawn(async move {
            let id = l.id.clone();
            // Seen pending (spares the log its own look), or not known (it looks).
            let sequence = match &pending {
                Some(p) => p.contains(&id).then_some(true),
                None => Some(false),
            };
            let done =
                tokio::time::timeout(CAMPAIGN_BUDGET, campaign(&core, &l, sequence)).await;
            match done {
                Ok(advanced) => advanced,
                Err(_) => {
                    tracing::warn!(campaign = %id, "a campaign's admitter work ran past its budget");
                    false
                }
            }
        });
    }
    while let Some(advanced) = work.join_next().await {
        all_advanced &= advanced.unwrap_or(false);
    }
    if all_advanced {
        a.last_tick_ms.store(
            service_kit::clock::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Starts computing every delayed seed whose shares are final, each on its own task
/// (the delay function takes minutes, by design): the round goes on meanwhile.
async fn settle_seeds(core: &Core) {
    let pending = match core.store.unsettled_seeds().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "seeds waiting for their delay could not be listed");
            return;
        }
    };
    for id in pending {
        let store = core.store.clone();
        spawn_once(&core.admitter.settling, id, |id| async move {
            match store.settle_seed(&id).await {
                Ok(Some(_)) => tracing::info!(campaign = %id, "the seed is settled"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, campaign = %id, "settling the seed failed"),
            }
        });
    }
}

/// Runs `work` for campaign `id` on a task of its own, unless one for it is still running
/// here (as `running` records). The record goes when the task ends, however it ends.
fn spawn_once<F, Fut>(running: &Running, id: String, work: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if !lock(running).insert(id.clone()) {
        return;
    }
    /// Removes the campaign from the set when dropped (a panic included).
    struct Done(Running, String);
    impl Drop for Done {
        fn drop(&mut self) {
            lock(&self.0).remove(&self.1);
        }
    }
    let done = Done(running.clone(), id.clone());
    let fut = work(id);
    tokio::spawn(async move {
        let _done = done;
        fut.await;
    });
}

/// How long one campaign's admitter work may take in one round.
const CAMPAIGN_BUDGET: Duration = Duration::from_secs(3);

/// One campaign's round: admit (queues), then start sequencing and signing its log: when
/// `sequence` is `Some` (`Some(true)`: records were seen pending), or when this round
/// admitted somebody. False if its queue could not be advanced.
async fn campaign(core: &Core, l: &License, mut sequence: Option<bool>) -> bool {
    let a = &core.admitter;
    let mut advanced = true;
    if l.selection == Selection::Queue && !a.resting(Work::Admit, l) {
        match admit(core, l).await {
            Ok(Admitted { finished, logged }) => {
                if logged {
                    sequence = Some(true);
                }
                if finished {
                    a.rest(Work::Admit, l, None);
                }
            }
            Err(e) => {
                advanced = false;
                tracing::warn!(error = %e, campaign = %l.id, "admitter tick failed");
            }
        }
    }
    // The round's work: a lottery's lapses and promotions, holds settled, citizens told.
    if (l.selection == Selection::Lottery
        || l.registration.as_ref().is_some_and(|r| r.hold.is_some()))
        && !a.resting(Work::Round, l)
    {
        let (c, lic) = (core.clone(), l.clone());
        spawn_once(&a.rounds, l.id.clone(), |id| async move {
            match crate::settle::round(&c, &lic).await {
                Ok(true) => c.admitter.rest(Work::Round, &lic, Some(ROUND_RECHECK)),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, campaign = %id, "the round's work failed"),
            }
        });
    }
    // Only a replica that holds the log's signing key sequences (the others leave the
    // pending events to it).
    if let (Some(key), Some(seen_pending)) = (core.log_signer.clone(), sequence) {
        let store = core.store.clone();
        spawn_once(&core.admitter.sequencing, l.id.clone(), |id| async move {
            if let Err(e) = store.sequence_log_if(&id, &key, seen_pending).await {
                tracing::warn!(error = %e, campaign = %id, "transparency log sequencing failed");
            }
        });
    }
    advanced
}

/// What advancing a queue did.
#[derive(Default)]
struct Admitted {
    /// Its admissions are finished for good ([`Work::Admit`]).
    finished: bool,
    /// Somebody was admitted: the log has a record to sequence.
    logged: bool,
}

async fn admit(core: &Core, l: &License) -> Result<Admitted, StoreError> {
    let before = core.cached(&l.id).serving;
    let mut done = Admitted::default();
    if let Some(state) = core.store.advance_queue(&l.id).await? {
        done = Admitted {
            finished: state.over && state.live == 0 && state.seed.is_some(),
            logged: state.serving > before,
        };
        if state.serving > before {
            // Their turn came: told off the tick (one message per ticket across replicas).
            let (c, lic, st) = (core.clone(), l.clone(), state.clone());
            tokio::spawn(async move {
                crate::notify::admitted_range(&c, &lic, before + 1, st.serving, &st).await;
            });
        }
        // Those whose time is about to run out are reminded (once a second at most here).
        let (c, lic, st) = (core.clone(), l.clone(), state.clone());
        spawn_once(&core.admitter.reminding, l.id.clone(), |_| async move {
            crate::notify::admissions_lapsing(&c, &lic, &st).await;
        });
        core.set_counters(&l.id, state);
    }
    Ok(done)
}
