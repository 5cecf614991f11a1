//! Manufacturers' standing after the sale (issue 34), carried to the IdP.
//!
//! Every `EMTA_RECORD_EVERY_SECS` each replica counts every manufacturer's record (overdue
//! deliveries, complaints unanswered past their deadline or upheld, cars past the law's
//! replacement-or-refund threshold: [`crate::domain::redress::Demerits`]) and the stars it
//! withholds, and carries to the IdP what it does not have yet: those stars, and any
//! suspension, resumption or rating two staff approved here. A decision is carried at
//! once when it is approved; this pass retries what the IdP could not take then. The
//! IdP's answer is idempotent, so replicas doing the same work twice change nothing.

use crate::app::Core;

/// The background pass (nothing when the interval is 0).
pub async fn run(core: Core) {
    let Some(every) = core.record_every else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        record(&core).await;
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

/// Carries to the IdP whatever it does not have yet.
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
        let (suspended, stars, version) = match p.decided {
            Some((s, r, v)) => (s, r, Some(v)),
            None => (None, None, None),
        };
        let (by, reason) = if version.is_some() {
            (p.decided_by.clone(), p.reason.clone())
        } else {
            ("record".to_owned(), p.demerits.clone())
        };
        let s = crate::adapters::ministry::Standing {
            suspended,
            stars,
            withheld: p.withheld,
            by: if by.is_empty() { "record".into() } else { by },
            reason: if reason.is_empty() {
                "after-sale record".into()
            } else {
                reason
            },
        };
        match ministry.set_standing(&p.manufacturer, &s).await {
            Ok(()) => {
                if let Err(e) = core
                    .store
                    .standing_pushed(&p.manufacturer, version, p.withheld)
                    .await
                {
                    tracing::warn!(error = %e, "noting standing carried to the IdP");
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                manufacturer = p.manufacturer,
                "the IdP did not take a manufacturer's standing; tried again on the next pass"
            ),
        }
    }
}
