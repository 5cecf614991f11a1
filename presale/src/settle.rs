//! The ends of rounds (issue 30), on every replica's admitter tick: a drawn lottery's
//! lapses and its reserves' promotions; then, once no place is open to an application any
//! more (the lottery's offers all applied or lapsed, the queue closed with no admission
//! still within its time), every confirmed hold's settlement is decided (captured for the
//! accepted applicants, released for everyone else), and each decided settlement is
//! carried out at its bank, retried under its one idempotency key until the bank answers.
//!
//! Any number of replicas may run this at once: the decisions are transactions under the
//! holds' locks, and a bank asked twice under one key answers once.

use crate::adapters::bank::SERVICE;
use crate::app::Core;
use crate::domain::{License, Selection};
use crate::store::holds::Hold;
use crate::store::StoreError;

/// Settlements carried out per license per tick, at most (each a bank call).
const CALLS_PER_TICK: i64 = 200;
/// Bank calls in flight at once per license.
const CONCURRENT_CALLS: usize = 16;

/// One license's round work for this tick. True once the round is finished: over, and no
/// hold (if the license takes them) held or being settled, so that later ticks find
/// nothing to do ([`crate::admitter`] then looks again only every half minute: a pending
/// hold confirmed late, or one started late, is released then).
pub(crate) async fn round(core: &Core, l: &License) -> Result<bool, StoreError> {
    let over = match l.selection {
        // Nothing to lapse or promote before the close (the draw follows it).
        Selection::Lottery if service_kit::clock::now() < l.closes_at => false,
        Selection::Lottery => {
            let offers = core.store.promote_reserves(l).await?;
            for (rank, _, _) in &offers.promoted {
                tracing::info!(campaign = %l.id, rank, "a reserve is offered a lapsed place");
            }
            crate::notify::promoted(core, l, &offers.promoted).await;
            if !offers.waiting {
                crate::notify::offers(core, l).await;
            }
            !offers.waiting && offers.over
        }
        Selection::Queue => core.store.queue_round_over(&l.id).await?,
    };
    let holds = l.registration.as_ref().is_some_and(|r| r.hold.is_some());
    if !holds {
        return Ok(over);
    }
    let open = if over {
        core.store.holds_open(&l.id).await?
    } else {
        0
    };
    if open > 0 {
        let n = core.store.settle_round(&l.id).await?;
        if n > 0 {
            tracing::info!(campaign = %l.id, holds = n, "the round is over: holds settled");
        }
    }
    let due = core.store.unsettled_holds_of(&l.id, CALLS_PER_TICK).await?;
    // Finished when over with nothing due now and no hold held or being settled. A pending
    // one does not keep it awake: its bank may confirm it late, or never (none expires).
    let finished =
        over && due.is_empty() && (open == 0 || core.store.holds_open(&l.id).await? == 0);
    let calls = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS));
    let mut running = tokio::task::JoinSet::new();
    for h in due {
        let (core, calls) = (core.clone(), calls.clone());
        running.spawn(async move {
            let _permit = calls.acquire().await;
            carry_out(&core, &h).await
        });
    }
    while running.join_next().await.is_some() {}
    Ok(finished)
}

/// Carries out a decided settlement at its bank, under its idempotency key: true once the
/// bank has answered that it is done (now or before).
pub(crate) async fn carry_out(core: &Core, hold: &Hold) -> bool {
    let (Some(op), Some(key), Some(token)) = (
        hold.state.operation(),
        hold.settle_key.as_deref(),
        hold.token.as_deref(),
    ) else {
        return false;
    };
    let Some(bank) = core.banks.get(&hold.bank) else {
        tracing::warn!(bank = %hold.bank, "a hold at a bank this replica does not know");
        return false;
    };
    let expected = if op == "capture" {
        "captured"
    } else {
        "released"
    };
    let done = match bank.settle(token, op, hold.amount, key).await {
        Ok(s) if s.status == expected => true,
        other => {
            match &other {
                Ok(s) => {
                    tracing::error!(service = SERVICE, answer = %s.status, op, "a settlement answered otherwise")
                }
                Err(e) => tracing::warn!(error = %e, op, "a settlement's bank call failed"),
            }
            // Refused (409: it forgot the key, or settled the mandate itself) or answered
            // otherwise: what the bank holds now decides. Done if it is what was decided;
            // otherwise tried again later, backing off, and reconciliation shows it.
            matches!(
                other,
                Ok(_) | Err(service_kit::upstream::UpstreamError::Rejected { .. })
            ) && bank
                .verify(token)
                .await
                .is_ok_and(|m| m.status == expected && m.reference == hold.id)
        }
    };
    if !done {
        if let Err(e) = core.store.settle_failed(&hold.id).await {
            tracing::warn!(error = %e, "a failed settlement's next try could not be set");
        }
        return false;
    }
    match core.store.settled(&hold.id).await {
        Ok(_) => {
            metrics::counter!("emta_presale_holds_settled_total", "op" => op).increment(1);
            crate::notify::settled(core, hold, op).await;
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "a settled hold could not be recorded; retried");
            false
        }
    }
}
