//! Joining a campaign and waiting for one's turn: `join` gives a signed place (an early
//! arrival number, a ticket, or a lottery entry) in a cookie; the waiting page and its
//! status JSON read it with no lookup and answer from this replica's counters cache.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use maud::html;
use serde::Serialize;
use service_kit::clock::format_time;
use service_kit::t;

use super::pages::{fa, page};
use super::session::CsrfForm;
use crate::app::Core;
use crate::domain::ticket::cookie_name;
use crate::domain::{License, NationalId, Place, Selection};
use crate::error::{msg, Error, Result};
use crate::queue::{early_ticket, Joined, QueueState};
use crate::store::lottery::Entered;

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    Router::new()
        .merge(
            g.join
                .around(Router::new().route("/{m}/c/{id}/join", post(join))),
        )
        .route("/{m}/c/{id}/wait", get(wait))
        .route("/{m}/c/{id}/status", get(status))
}

/// Joins and applications per national ID per minute, shared by replicas: a citizen's
/// own counter, mostly new at its hit (one command, `SET … NX PX`).
pub(super) async fn citizen_limit(core: &Core, what: &str, nid: &NationalId) -> Result<()> {
    core.limiter
        .hit_own(what, nid.as_str(), 10, Duration::from_secs(60))
        .await?;
    Ok(())
}

async fn join(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    core.check_csrf(&jar, &f.csrf)?;
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let l = core
        .license(&m, &id)
        .ok_or(Error::not_found(msg::NO_PRESALE))?;
    citizen_limit(&core, "join", &c.national_id).await?;
    if l.is_lottery() {
        if let Err(why) = core.check_registries(&l, &c.national_id).await? {
            core.count_refusal(why);
            return Err(why.into());
        }
    }
    // A queue that needs the hold before joining: the join's batch reads it with the
    // tickets (no read of its own); applying checks it again under its lock.
    let hold_first = l
        .registration
        .as_ref()
        .and_then(|r| r.hold.as_ref())
        .is_some_and(|h| h.before == crate::domain::HoldBefore::Entry);
    let place = match l.selection {
        // Registering for a draw is registering: the registries' rules are asked here,
        // so that every entry drawn could apply.
        Selection::Lottery => match core
            .store
            .enter_lottery(
                &l,
                &c.national_id,
                &c.sub,
                &core.queue.holder(&l.id, &c.national_id),
            )
            .await?
        {
            Entered::New(n) | Entered::Already(n) => Place::Entry(n),
            Entered::Closed => return Err(Error::conflict(msg::LOTTERY_NOT_OPEN)),
            Entered::NoHold => {
                core.count_refusal(crate::domain::Refusal::NoHold);
                return Err(crate::domain::Refusal::NoHold.into());
            }
        },
        // Answered once the join has committed; a store that cannot commit sheds the join
        // with 503 and Retry-After, and nothing was promised.
        Selection::Queue => match if hold_first {
            core.queue.join_holding(&l.id, &c.national_id).await?
        } else {
            core.queue.join(&l.id, &c.national_id).await?
        } {
            Joined::Early { arrival, .. } => Place::Early(arrival),
            Joined::Ticket { ticket, .. } => Place::Ticket(ticket),
            Joined::SoldOut | Joined::Unknown => return Err(Error::conflict(msg::QUEUE_CLOSED)),
            Joined::Suspended => return Err(Error::conflict(msg::QUEUE_SUSPENDED)),
            Joined::NoHold => {
                core.count_refusal(crate::domain::Refusal::NoHold);
                return Err(crate::domain::Refusal::NoHold.into());
            }
        },
    };
    let cookie = Cookie::build((
        cookie_name(&id),
        core.tickets.sign(&id, &c.national_id, place),
    ))
    .path(format!("/{m}/c/{id}/"))
    .http_only(true)
    .same_site(SameSite::Lax)
    .secure(core.secure_cookies())
    .max_age(time::Duration::days(3))
    .build();
    // The promise of inclusion: the record that stands for this place in the campaign's
    // log, and the service's signed word that it is in the tree within the log's merge
    // delay (`transparency::promise`), given with the acknowledgement itself.
    let holder = core.queue.holder(&id, &c.national_id).0;
    crate::notify::remember(&core, &holder, c.phone.as_deref()).await;
    let record = match place {
        Place::Early(arrival) => crate::transparency::Event::Ticket {
            holder,
            arrival: Some(arrival),
            ticket: None,
        },
        Place::Ticket(ticket) => crate::transparency::Event::Ticket {
            holder,
            arrival: None,
            ticket: Some(ticket),
        },
        Place::Entry(entry) => crate::transparency::Event::Entry { holder, entry },
    }
    .line();
    // A repeated join keeps the promise given at the first acknowledgement (its earlier
    // time is the one that must be kept): it is never replaced by a later one.
    if read_promise(&jar, &id).is_some_and(|p| p.record == record) {
        return Ok((jar.add(cookie), Redirect::to(&format!("/{m}/c/{id}/wait"))).into_response());
    }
    let promise = core
        .promise_key
        .promise(&id, &record, service_kit::clock::now_ms());
    let promise = Cookie::build((
        promise_cookie(&id),
        service_kit::keys::b64(
            serde_json::to_string(&promise)
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_bytes(),
        ),
    ))
    .path(format!("/{m}/c/{id}/"))
    .http_only(true)
    .same_site(SameSite::Lax)
    .secure(core.secure_cookies())
    .max_age(time::Duration::days(3))
    .build();
    Ok((
        jar.add(cookie).add(promise),
        Redirect::to(&format!("/{m}/c/{id}/wait")),
    )
        .into_response())
}

/// The cookie that keeps this browser's promise of inclusion for campaign `id`.
pub(super) fn promise_cookie(id: &str) -> String {
    format!("emta_promise_{id}")
}

/// The promise of inclusion this browser was given for campaign `id`, if any.
pub(super) fn read_promise(
    jar: &CookieJar,
    id: &str,
) -> Option<crate::transparency::promise::Promise> {
    let raw = jar.get(&promise_cookie(id))?.value().to_owned();
    serde_json::from_slice(&service_kit::keys::b64_decode(&raw)?).ok()
}

/// The place in this browser's ticket cookie for campaign `id`; with `owner`, only if it
/// is theirs.
pub(super) fn read_place(
    core: &Core,
    jar: &CookieJar,
    id: &str,
    owner: Option<&NationalId>,
) -> Option<Place> {
    let token = jar.get(&cookie_name(id))?.value().to_owned();
    core.tickets.read(&token, id, owner)
}

/// The ticket of a place, once it is known: early tickets come from the frozen list of
/// early joins (final once the queue has opened on the database's clock) and the seed,
/// which exists only after every party revealed its share after that freeze.
pub(super) fn ticket_of(c: &QueueState, place: Place) -> Option<i64> {
    match (place, &c.seed) {
        (Place::Ticket(t), _) => Some(t),
        (Place::Early(arrival), Some(seed)) if c.opened => {
            early_ticket(seed.as_bytes(), c.early, arrival)
        }
        (Place::Early(_) | Place::Entry(_), _) => None,
    }
}

#[derive(Serialize, Debug)]
struct StatusBody {
    ticket: Option<i64>,
    serving: i64,
    ahead: Option<i64>,
    admitted: bool,
    /// Nobody else will be admitted: sold out, or the round's time is over.
    closed: bool,
    /// Every unit left is promised to an admitted applicant: this place is admitted only
    /// if one of them lets their time lapse.
    promised: bool,
    suspended: bool,
    eta_secs: Option<i64>,
    opens_at: i64,
}

fn status_of(l: &License, c: &QueueState, place: Place) -> StatusBody {
    status_at(l.admission_per_min, l.opens_at, c, place)
}

fn status_at(rate_per_min: i64, opens_at: i64, c: &QueueState, place: Place) -> StatusBody {
    let ticket = ticket_of(c, place);
    let admitted = ticket.is_some_and(|t| t <= c.serving);
    // An admitted applicant keeps their time after the close (`over` already waits for
    // a suspension or a pause begun before the close: its resume moves the close on).
    let closed = c.sold_out || (c.over && !admitted);
    let promised = !admitted && !closed && c.every_unit_promised();
    let ahead = ticket.map(|t| (t - c.serving - 1).max(0));
    StatusBody {
        ticket,
        serving: c.serving,
        ahead,
        admitted,
        closed,
        promised,
        suspended: c.suspended,
        // No estimate of a turn that depends on someone else's lapse, or never comes.
        eta_secs: ahead
            .filter(|_| !closed && !promised)
            .map(|a| a * 60 / rate_per_min.max(1)),
        opens_at,
    }
}

/// The ticket of a queue applicant, once known. The application's transaction decides
/// whether it holds a live admission.
pub(super) async fn queue_ticket(core: &Core, l: &License, place: Place) -> Result<i64> {
    let mut state = core.cached(&l.id);
    if matches!(place, Place::Early(_)) && (!state.opened || state.seed.is_none()) {
        // This replica's cache may predate the opening's fence or the seed; an
        // application is worth one read of the committed state.
        state = core.store.queue_state(&l.id).await?.unwrap_or_default();
    }
    ticket_of(&state, place).ok_or(Error::conflict(msg::NOT_YET))
}

/// JSON for pollers; served from this replica's counters cache, never from Redis.
async fn status(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Response {
    let (Some(l), Some(place)) = (core.license(&m, &id), read_place(&core, &jar, &id, None)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "not in this queue"})),
        )
            .into_response();
    };
    Json(status_of(&l, &core.cached(&id), place)).into_response()
}

async fn wait(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    let (Some(l), Some(place)) = (core.license(&m, &id), read_place(&core, &jar, &id, None)) else {
        return Ok(Redirect::to(&format!("/{m}/")).into_response());
    };
    let now = service_kit::clock::now();
    if let Place::Entry(entry) = place {
        return super::lottery::waiting(&core, &jar, &m, &l, entry, now).await;
    }
    let c = core.cached(&id);
    let st = status_of(&l, &c, place);
    let csrf = core.csrf(&jar);
    // Refresh without JavaScript, backing off as the wait grows.
    let refresh = st.eta_secs.map(|e| (e / 10).clamp(3, 30)).unwrap_or(10);
    let body = html! {
        // With JavaScript the page updates itself (wait.js); without, it refreshes.
        noscript { meta http-equiv="refresh" content=(refresh); }
        div data-status-url=(format!("/{m}/c/{id}/status")) data-admitted=(st.admitted)
            data-closed=(st.closed) data-promised=(st.promised) data-serving=(st.serving) {}
        script src="/static/wait.js" {}
        h2 { (l.model) }
        @if c.sold_out {
            p.error { (fa(t!("صف بسته شد: ظرفیت تکمیل شد.", "The queue has closed: sold out."))) }
        } @else if st.closed {
            p.error { (fa(t!("صف بسته شد: مهلت این دوره به پایان رسید و کسی دیگر نوبت نمی‌گیرد.", "The queue has closed: the round's time is over and nobody else will be admitted."))) }
        } @else if st.suspended {
            p.error { (fa(t!("این پیش‌فروش از سوی وزارت موقتاً متوقف شده است. جای شما در صف و مهلت ثبت درخواست شما محفوظ است.", "The ministry has paused this presale. Your place in the queue and your time to apply are kept."))) }
        } @else if st.admitted {
            p { (fa(t!("نوبت شماست. تا پایان مهلت، درخواست خود را ثبت کنید.", "It is your turn. Apply before your time runs out."))) }
            form method="post" action=(format!("/{m}/c/{id}/apply")) {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { (fa(t!("ثبت درخواست", "Apply"))) }
            }
        } @else if st.promised {
            p.error { (fa(t!("همه خودروهای باقی‌مانده به متقاضیانی که نوبتشان رسیده وعده داده شده است. تنها اگر یکی از آنان در مهلت خود درخواست ندهد، نوبت به نفر بعدی می‌رسد؛ این صفحه به شما خبر می‌دهد.", "Every unit left is promised to applicants whose turn has come. The next in line is admitted only if one of them does not apply in time; this page will tell you."))) }
            @if let Some(ticket) = st.ticket {
                p { "نوبت / ticket: " strong #ticket { (ticket) } }
                p { "نفرات جلوتر / people ahead: " strong #ahead { (st.ahead.unwrap_or(0)) } }
            }
        } @else if let (Some(ticket), Some(ahead)) = (st.ticket, st.ahead) {
            p { "نوبت / ticket: " strong #ticket { (ticket) } }
            p { "نفرات جلوتر / people ahead: " strong #ahead { (ahead) } }
            p { "زمان تقریبی / estimated wait: " span #eta { (st.eta_secs.unwrap_or(0) / 60) } " دقیقه / min" }
        } @else {
            p { (fa(t!("در صف ثبت شدید. ترتیب همه کسانی که پیش از گشایش آمده‌اند پس از گشایش به قید قرعه تعیین می‌شود، با بذری که پس از قطعی شدن فهرست از سهم چند طرف ساخته می‌شود.", "You are in. The order of everyone who joined before the opening is drawn after the opening, with a seed made from several parties' shares once the list is frozen."))) }
                        p { "گشایش / opens: " (format_time(l.opens_at)) }
        }
        p { a href=(format!("/{m}/c/{id}/promise")) { (fa(msg::PROMISE_LINK)) } }
    };
    Ok(page(StatusCode::OK, t!("صف انتظار", "Waiting room"), body))
}

#[cfg(test)]
mod tests {
    use super::{status_at, Place, QueueState};

    fn opened() -> QueueState {
        QueueState {
            serving: 2,
            late: 10,
            opened: true,
            live: 2,
            unsold: 2,
            ..QueueState::default()
        }
    }

    /// The waiting are told when nothing is left for them, not shown an estimate: every
    /// unit left promised to the admitted, or the round's time over. The admitted keep
    /// their form either way.
    #[test]
    fn the_line_behind_the_last_promise_is_told_and_given_no_estimate() {
        let waiting = status_at(60, 0, &opened(), Place::Ticket(7));
        assert!(waiting.promised && !waiting.closed, "{waiting:?}");
        assert_eq!((waiting.ahead, waiting.eta_secs), (Some(4), None));
        let admitted = status_at(60, 0, &opened(), Place::Ticket(2));
        assert!(admitted.admitted && !admitted.promised && !admitted.closed);

        let spare = QueueState {
            unsold: 3,
            ..opened()
        };
        let waiting = status_at(60, 0, &spare, Place::Ticket(7));
        assert!(!waiting.promised && !waiting.closed);
        assert_eq!(waiting.eta_secs, Some(4));

        let over = QueueState {
            unsold: 3,
            over: true,
            ..opened()
        };
        let waiting = status_at(60, 0, &over, Place::Ticket(7));
        assert!(waiting.closed && !waiting.promised && waiting.eta_secs.is_none());
        assert!(
            !status_at(60, 0, &over, Place::Ticket(1)).closed,
            "the admitted keep their time"
        );
        // Suspended across the close: the store says not over (its resume gives the time
        // back), and the page says suspended, not closed.
        let paused = QueueState {
            suspended: true,
            over: false,
            ..over
        };
        let waiting = status_at(60, 0, &paused, Place::Ticket(7));
        assert!(waiting.suspended && !waiting.closed && !waiting.promised);
    }
}
