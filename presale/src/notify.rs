//! Telling citizens (issue 30): an SMS when their turn comes, when they win, when they
//! are promoted from the reserves or their time to apply is about to lapse, and when their
//! hold is captured or released.
//!
//! A citizen's verified phone (the ID token's `phone_number`) is kept in the shared
//! ephemeral store for 30 days when they join, enter or place a hold, sealed
//! (ChaCha20-Poly1305 under a key derived from the server secret, bound to the place)
//! under a keyed hash of the campaign's holder: no table holds phones, and Redis links no
//! place to one. Messages go through one queue per replica,
//! sent within the deployment's SMS budget (`EMTA_SMS_RPS`, shared by replicas): past it
//! they wait their turn rather than being dropped. Without `EMTA_SMS_URL` they are only
//! counted. Notifications are best effort: a replica that stops with messages queued, or
//! a phone forgotten with Redis, costs a text, never a place or a hold.

use std::time::Duration;

use crate::app::Core;
use crate::domain::License;
use crate::store::holds::Hold;

/// How long a phone is kept for a campaign's notifications.
const CONTACT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Messages waiting on one replica, at most (past it the newest are counted and dropped).
pub(crate) const QUEUE: usize = 100_000;
/// The budget's counter, shared by every replica.
const BUDGET_KEY: &str = "rl:budget:presale-sms";

/// The contact's key: a keyed hash of the holder (which the public log shows), so a look
/// at Redis links no place to a phone.
fn contact_key(core: &Core, holder: &str) -> String {
    format!(
        "contact:{}",
        &core.keys.hash("contact", holder.as_bytes())[..22]
    )
}

/// Keeps `phone` for the campaign place of `holder` (best effort).
pub(crate) async fn remember(core: &Core, holder: &str, phone: Option<&str>) {
    let Some(phone) = phone.filter(|p| p.starts_with('+') && p.len() <= 16) else {
        return;
    };
    let Some(sealed) = service_kit::keys::seal::seal(
        &core.keys.key("contact"),
        holder.as_bytes(),
        phone.as_bytes(),
    ) else {
        return;
    };
    if let Err(e) = core
        .sessions
        .put(&contact_key(core, holder), &sealed, CONTACT_TTL)
        .await
    {
        tracing::warn!(error = %e, "a phone for notifications could not be kept");
    }
}

/// Queues `text` for the holder's phone, if one is kept.
pub(crate) async fn tell(core: &Core, holder: &str, text: String) {
    let phone = match core.sessions.get(&contact_key(core, holder)).await {
        Ok(Some(sealed)) => {
            match service_kit::keys::seal::open(
                &core.keys.key("contact"),
                holder.as_bytes(),
                &sealed,
            )
            .and_then(|p| String::from_utf8(p).ok())
            {
                Some(p) => p,
                None => return,
            }
        }
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "a phone for notifications could not be read");
            return;
        }
    };
    if core.sms_queue.try_send((phone, text)).is_err() {
        metrics::counter!("emta_presale_sms_total", "outcome" => "dropped").increment(1);
    }
}

/// Sends the queued messages within the budget, until the queue closes.
pub(crate) async fn drain(core: Core, mut rx: tokio::sync::mpsc::Receiver<(String, String)>) {
    while let Some((to, text)) = rx.recv().await {
        while let Err(service_kit::limit::LimitError::Limited { retry_after }) = core
            .limiter
            .hit_key(BUDGET_KEY, core.sms_rps, Duration::from_secs(1))
            .await
        {
            tokio::time::sleep(Duration::from_millis(200.max(retry_after * 100))).await;
        }
        let outcome = match &core.sms {
            Some(sms) => match sms.send(&to, &text).await {
                Ok(()) => "sent",
                Err(e) => {
                    tracing::warn!(error = %e, "a notification was not sent");
                    "failed"
                }
            },
            None => "unconfigured",
        };
        metrics::counter!("emta_presale_sms_total", "outcome" => outcome).increment(1);
    }
}

fn when(ms: i64) -> String {
    service_kit::clock::format_time(ms.div_euclid(1000))
}

/// True the first time any replica calls it for `what` (within [`TOLD_FOR`]): one message
/// per event, however many replicas notice it. False too when the shared store cannot
/// answer: the event is asked again next time.
pub(crate) async fn once(core: &Core, what: &str) -> bool {
    once_or_unknown(core, what).await.unwrap_or(false)
}

/// [`once`], saying `None` when the shared store could not answer (nothing is
/// remembered: asked again next time). This replica remembers what it has seen told, so
/// the shared store is asked once per event here rather than once per tick while the
/// event stays in view.
async fn once_or_unknown(core: &Core, what: &str) -> Option<bool> {
    use crate::admitter::lock;
    if lock(&core.admitter.told).contains(what) {
        return Some(false);
    }
    let first = match core
        .sessions
        .put_new(&format!("told:{what}"), "1", TOLD_FOR)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            tracing::warn!(error = %e, "whether a notification was sent could not be asked");
            return None;
        }
    };
    let mut told = lock(&core.admitter.told);
    if told.len() >= TOLD_REMEMBERED {
        told.clear();
    }
    told.insert(what.to_owned());
    Some(first)
}

/// How long the shared store remembers an event told: past the longest apply window (30
/// days) with its reminder.
const TOLD_FOR: Duration = Duration::from_secs(32 * 24 * 3600);

/// Events remembered per replica before the memory starts afresh (the shared store still
/// answers for them for a day).
const TOLD_REMEMBERED: usize = 1_000_000;

/// Reminds the admitted of a queue whose time to apply runs out within a quarter of the
/// apply window (at least a minute) that it is about to lapse: one message per admission
/// across replicas, none while the license is suspended (its clock stands still, and the
/// time would be wrong), none for windows no longer than that (the "your turn" text says
/// it all). Each replica walks the admissions in ticket order from where it left off
/// (deadlines follow tickets), at most once a second per campaign and one pass at a time.
pub(crate) async fn admissions_lapsing(core: &Core, l: &License, state: &crate::queue::QueueState) {
    use crate::admitter::lock;
    let soon = (l.apply_window_secs * 1000 / 4).max(60_000);
    if state.suspended || l.apply_window_secs * 1000 <= soon {
        return;
    }
    let now = service_kit::clock::now_ms();
    let after = {
        let mut looked = lock(&core.admitter.lapse_looked);
        let (at, after) = looked.get(&l.id).copied().unwrap_or((0, 0));
        if now - at < 1000 {
            return;
        }
        looked.insert(l.id.clone(), (now, after));
        after
    };
    let due = match core.store.admissions_lapsing(&l.id, soon, after).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "admissions about to lapse could not be read");
            return;
        }
    };
    let mut done = after;
    for ticket in due {
        // The holder first: an event is marked told only once its text is queued.
        let holders = match core
            .store
            .admitted_holders(&l.id, ticket, ticket, state)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "an admitted holder could not be read");
                break;
            }
        };
        let mut asked = true;
        for (_, holder, deadline_ms) in holders {
            match once_or_unknown(core, &format!("lapsing-q:{}:{ticket}", l.id)).await {
                Some(true) => lapsing(core, l, &holder, deadline_ms).await,
                Some(false) => {}
                None => asked = false,
            }
        }
        // A ticket the shared store could not answer for is looked at again next time.
        if !asked {
            break;
        }
        done = ticket;
    }
    if let Some(e) = lock(&core.admitter.lapse_looked).get_mut(&l.id) {
        e.1 = e.1.max(done);
    }
}

/// Tells the holders admitted with tickets `from..=to` of a queue that their turn came.
pub(crate) async fn admitted_range(
    core: &Core,
    l: &License,
    from: i64,
    to: i64,
    state: &crate::queue::QueueState,
) {
    let holders = match core.store.admitted_holders(&l.id, from, to, state).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "admitted holders could not be read for notifications");
            return;
        }
    };
    for (ticket, holder, deadline_ms) in holders {
        if once(core, &format!("admitted:{}:{ticket}", l.id)).await {
            admitted(core, l, &holder, deadline_ms).await;
        }
    }
}

/// Tells a drawn lottery's winners, and reminds every open offer whose time is within a
/// quarter of the apply window of lapsing.
pub(crate) async fn offers(core: &Core, l: &License) {
    let open = match core.store.open_offers(l).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "open offers could not be read for notifications");
            return;
        }
    };
    let now = service_kit::clock::now_ms();
    let soon = (l.apply_window_secs * 1000 / 4).max(60_000);
    for (rank, holder, until_ms) in open {
        if rank <= l.units && once(core, &format!("won:{}:{rank}", l.id)).await {
            won(core, l, &holder, until_ms).await;
        }
        if until_ms - now <= soon
            && until_ms > now
            && once(core, &format!("lapsing:{}:{rank}", l.id)).await
        {
            lapsing(core, l, &holder, until_ms).await;
        }
    }
}

/// The citizen's turn came (queue admission).
pub(crate) async fn admitted(core: &Core, l: &License, holder: &str, until_ms: i64) {
    let text = format!(
        "امتا: نوبت شما در پیش‌فروش {model} رسید؛ تا {t} درخواست دهید.\nemta: your turn in the {model} presale has come: apply by {t}.",
        model = l.model,
        t = when(until_ms)
    );
    tell(core, holder, text).await;
}

/// The citizen won the draw.
pub(crate) async fn won(core: &Core, l: &License, holder: &str, until_ms: i64) {
    let text = format!(
        "امتا: در قرعه‌کشی {model} برنده شدید؛ تا {t} درخواست دهید.\nemta: you won the {model} draw: apply by {t}.",
        model = l.model,
        t = when(until_ms)
    );
    tell(core, holder, text).await;
}

/// Reserves offered a lapsed winner's place: (rank, national ID, until ms).
pub(crate) async fn promoted(core: &Core, l: &License, promoted: &[(i64, String, i64)]) {
    for (_, nid, until_ms) in promoted {
        let Ok(nid) = crate::domain::NationalId::parse(nid) else {
            continue;
        };
        let holder = core.queue.holder(&l.id, &nid);
        let text = format!(
            "امتا: از فهرست ذخیره پیش‌فروش {model} نوبت به شما رسید؛ تا {t} درخواست دهید.\nemta: you are promoted from the {model} reserve list: apply by {t}.",
            model = l.model,
            t = when(*until_ms)
        );
        tell(core, &holder.0, text).await;
    }
}

/// The citizen's time to apply is about to lapse.
pub(crate) async fn lapsing(core: &Core, l: &License, holder: &str, until_ms: i64) {
    let text = format!(
        "امتا: مهلت درخواست شما در پیش‌فروش {model} در {t} به پایان می‌رسد.\nemta: your time to apply in the {model} presale ends at {t}.",
        model = l.model,
        t = when(until_ms)
    );
    tell(core, holder, text).await;
}

/// A hold was captured for the manufacturer or released.
pub(crate) async fn settled(core: &Core, hold: &Hold, op: &str) {
    let text = if op == "capture" {
        format!(
            "امتا: مبلغ مسدودشده {a} ریال برای خرید شما به حساب خودروساز منتقل شد.\nemta: the {a} rials held were captured for your purchase.",
            a = hold.amount
        )
    } else {
        format!(
            "امتا: مسدودی {a} ریال شما آزاد شد.\nemta: your hold of {a} rials was released.",
            a = hold.amount
        )
    };
    tell(core, &hold.holder, text).await;
}
