//! Manufacturers' standing after the sale (issue 34), carried to the IdP.
//!
//! Each replica, every few seconds, carries to the IdP what it does not have yet: the
//! latest suspension, resumption or rating two staff approved here (only what that
//! decision changed), and the stars the manufacturer's after-sale record withholds, each
//! with its version: the IdP takes none older than one it has, so two replicas, or a slow
//! request overtaken by a later one, never leave an older decision in force. Every
//! `EMTA_RECORD_EVERY_SECS` it also counts every manufacturer's record (overdue
//! deliveries, complaints unanswered past their deadline or upheld, cars past the law's
//! replacement-or-refund threshold: [`crate::domain::redress::Demerits`]) and notes the
//! stars it withholds. A decision is carried at once when it is approved; this retries
//! what the IdP could not take then, and stops on what it declined for good (noted, and
//! shown on the case's page).

use std::time::{Duration, Instant};

use crate::adapters::ministry::{MinistryError, Standing};
use crate::app::Core;

/// How often decisions not yet carried are retried.
const RETRY: Duration = Duration::from_secs(5);

/// The background pass: decisions retried every few seconds, the record counted every
/// `record_every` (never, when unset).
pub async fn run(core: Core) {
    let mut tick = tokio::time::interval(RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recorded: Option<Instant> = None;
    loop {
        tick.tick().await;
        if let Some(every) = core.record_every {
            if recorded.is_none_or(|at| at.elapsed() >= every) {
                record(&core).await;
                recorded = Some(Instant::now());
            }
        }
        push(&core).await;
    }
}

/// Counts every manufacturer's record now and notes the stars it withholds.
pub async fn record(core: &Core) {
    let now = service_kit::clock::now();
    let all = match core.store.demerits(now).await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "counting manufacturers' records");
            return;
        }
    };
    for (maker, d) in all {
        let why = format!(
            "{} overdue, {} unanswered late, {} upheld, {} warranty",
            d.overdue, d.unanswered, d.upheld, d.warranty
        );
        if let Err(e) = core
            .store
            .set_withheld(&maker, d.withheld(), &why, now)
            .await
        {
            tracing::warn!(error = %e, manufacturer = maker, "noting a record");
        }
    }
}

/// Carries to the IdP whatever it does not have yet: a decision and the stars withheld,
/// each in its own request with its own reason.
pub async fn push(core: &Core) {
    let Some(ministry) = &core.ministry else {
        return;
    };
    let pending = match core.store.pending_standing().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "reading standing to carry to the IdP");
            return;
        }
    };
    for p in pending {
        if let Some(d) = p.decided {
            let s = Standing {
                version: Some(d.version),
                suspended: d.suspended,
                stars: d.stars,
                by: p.proposed_by.clone(),
                approved_by: Some(p.decided_by.clone()),
                reason: p.reason.clone(),
                ..Standing::default()
            };
            let done = ministry.set_standing(&p.manufacturer, &s).await;
            noted(core, &p.manufacturer, done, Some(d.version), None).await;
        }
        if let Some((stars, version)) = p.withheld {
            let s = Standing {
                withheld: Some(stars),
                withheld_version: Some(version),
                by: "record".into(),
                reason: if p.demerits.is_empty() {
                    "after-sale record".into()
                } else {
                    p.demerits.clone()
                },
                ..Standing::default()
            };
            let done = ministry.set_standing(&p.manufacturer, &s).await;
            noted(core, &p.manufacturer, done, None, Some(version)).await;
        }
    }
}

async fn noted(
    core: &Core,
    manufacturer: &str,
    done: Result<(), MinistryError>,
    version: Option<i64>,
    withheld_version: Option<i64>,
) {
    let refused = match &done {
        Ok(()) => None,
        Err(MinistryError::Declined(why)) => {
            tracing::error!(
                manufacturer,
                why = %why,
                "the IdP declined a manufacturer's standing; not retried"
            );
            Some(why.clone())
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                manufacturer,
                "the IdP did not take a manufacturer's standing; tried again shortly"
            );
            return;
        }
    };
    if let Err(e) = core
        .store
        .standing_pushed(manufacturer, version, withheld_version, refused.as_deref())
        .await
    {
        tracing::warn!(error = %e, "noting standing carried to the IdP");
    }
}
