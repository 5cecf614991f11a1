//! The admitter: four times a second on every replica, reload the licenses, push changed
//! settings to each queue campaign, advance its serving counter at the license's rate
//! (an atomic script, so any number of replicas may call it), refresh this replica's
//! counters cache, and draw lotteries whose registration has closed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::app::Core;
use crate::domain::{License, Selection};
use crate::queue::{QueueError, QueueSettings};

/// How often a replica runs the admitter.
const TICK: Duration = Duration::from_millis(250);

/// What this replica last applied to one campaign's queue, so a tick writes settings
/// only when a license changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    active: bool,
    rate_per_min: i64,
    max_active: i64,
    apply_window_ms: i64,
    sold_out: bool,
}

/// The admitter's memory on this replica.
#[derive(Default)]
pub(crate) struct Admitter {
    /// One tick at a time: a slow tick that read licenses before a change must not
    /// overwrite a newer tick's cache.
    one_at_a_time: tokio::sync::Mutex<()>,
    applied: std::sync::Mutex<HashMap<String, Applied>>,
    /// Lotteries this replica has seen drawn: no more draw attempts for them.
    drawn: std::sync::Mutex<HashSet<String>>,
}

/// A std mutex whose poisoning (a panic elsewhere mid-update of plain data) is ignored.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The queue settings a license implies.
pub(crate) fn queue_settings(l: &License) -> QueueSettings {
    QueueSettings {
        campaign: l.id.clone(),
        opens_at_ms: l.opens_at * 1000,
        rate_per_min: l.admission_per_min,
        max_active: l.max_active,
        apply_window_ms: l.apply_window_secs * 1000,
        buckets: ((l.units * 50) / 100).clamp(1, 100_000) as u32,
    }
}

/// Whether counters read at `asked_ms` hold the final number of early joins: a second
/// past the opening (margin for clock skew with Redis), every early join has landed.
pub(crate) fn early_final(l: &License, asked_ms: i64) -> bool {
    asked_ms >= l.opens_at * 1000 + 1000
}

/// Runs the admitter until the task is aborted.
pub(crate) async fn run(core: Core) {
    let mut tick_every = tokio::time::interval(TICK);
    loop {
        tick_every.tick().await;
        tick(&core).await;
    }
}

/// One round: reload licenses, draw closed lotteries, admit in every queue campaign.
pub(crate) async fn tick(core: &Core) {
    let a = &core.admitter;
    let _one = a.one_at_a_time.lock().await;
    match core.store.licenses().await {
        Ok(ls) => core.set_licenses(ls),
        Err(e) => tracing::warn!(error = %e, "license reload failed"),
    }
    let licenses = core.all_licenses();
    let now = service_kit::clock::now();
    for l in licenses
        .iter()
        .filter(|l| l.selection == Selection::Lottery && now >= l.closes_at)
    {
        if lock(&a.drawn).contains(&l.id) {
            continue;
        }
        match core.store.draw_lottery(l, now).await {
            Ok(Some(_)) => {
                lock(&a.drawn).insert(l.id.clone());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, license = %l.id, "lottery draw failed"),
        }
    }
    for l in licenses.iter().filter(|l| l.selection == Selection::Queue) {
        if let Err(e) = admit(core, l).await {
            tracing::warn!(error = %e, campaign = %l.id, "admitter tick failed");
        }
    }
}

async fn admit(core: &Core, l: &License) -> Result<(), QueueError> {
    let a = &core.admitter;
    let s = queue_settings(l);
    let wanted = Applied {
        active: l.is_active(),
        rate_per_min: s.rate_per_min,
        max_active: s.max_active,
        apply_window_ms: s.apply_window_ms,
        sold_out: l.sold_out(),
    };
    // Settings and flags go to the shared queue only when the license changed.
    if lock(&a.applied).get(&l.id) != Some(&wanted) {
        core.queue.setup(&s).await?;
        core.queue.suspend(&l.id, !wanted.active).await?;
        if wanted.sold_out {
            core.queue.close(&l.id).await?;
        }
        lock(&a.applied).insert(l.id.clone(), wanted);
    }
    let asked = service_kit::clock::now_ms();
    core.queue.advance(&l.id).await?;
    let mut c = core.queue.counters(&l.id).await?;
    c.early_final = early_final(l, asked);
    core.set_counters(&l.id, c);
    Ok(())
}
