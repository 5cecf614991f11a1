//! A lottery campaign's public page (the commitment, the list of entries, then the seed
//! and the draw order, so anyone can recompute the result) and an entrant's waiting page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use axum_extra::extract::CookieJar;
use maud::html;
use service_kit::clock::format_time;
use service_kit::t;

use super::pages::{fa, page};
use crate::app::Core;
use crate::domain::License;
use crate::error::{msg, Error, Result};
use crate::store::lottery::entry_id;

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    g.browse
        .around(Router::new().route("/{m}/c/{id}/lottery", get(public)))
}

/// The waiting page of a lottery entry: the entry, then the result once drawn.
pub(super) async fn waiting(
    core: &Core,
    jar: &CookieJar,
    m: &str,
    l: &License,
    entry: i64,
    now: i64,
) -> Result<Response> {
    let id = &l.id;
    let rank = match (now >= l.closes_at, core.citizen(jar, m).await?) {
        (true, Some(c)) => core
            .store
            .lottery_rank(id, &c.national_id)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    // A winner's place, or a reserve's promoted in a lapsed winner's (issue 30).
    let offer = match rank {
        Some(r) => core.store.offer(l, r).await.ok(),
        None => None,
    };
    use crate::store::lottery::Offer;
    let csrf = core.csrf(jar);
    let body = html! {
        h2 { (l.model) }
        p { "شماره ثبت‌نام / entry: " strong { (entry_id(entry)) } }
                p { a href=(format!("/{m}/c/{id}/lottery")) { (fa(t!("فهرست عمومی و نتیجه قرعه‌کشی", "Public list and result of the draw"))) } }
        p { a href=(format!("/{m}/c/{id}/promise")) { (fa(msg::PROMISE_LINK)) } }
        @match rank {
            None => {
                meta http-equiv="refresh" content="30";
                p { (fa(t!("ثبت‌نام شما در قرعه‌کشی انجام شد. قرعه‌کشی پس از پایان ثبت‌نام انجام می‌شود.", "You are registered for the lottery. The draw takes place after registration closes."))) }
                p { "پایان ثبت‌نام / closes: " (format_time(l.closes_at)) }
            }
            Some(_) if offer == Some(Offer::Lapsed) => {
                p data-offer="lapsed" { (fa(t!("مهلت درخواست شما گذشت و جای شما به نفر بعدی فهرست ذخیره رسید.", "Your time to apply ran out; your place went to the next on the reserve list."))) }
            }
            Some(r) if matches!(offer, Some(Offer::Until(_))) => {
                @if r <= l.units {
                    p { (fa(t!("برنده شدید. تا پایان مهلت، درخواست خود را ثبت کنید.", "You won. Apply before your time runs out."))) }
                } @else {
                    p { (fa(t!("از فهرست ذخیره به جای برنده‌ای که در مهلت اقدام نکرد، نوبت به شما رسید. تا پایان مهلت، درخواست خود را ثبت کنید.", "A winner's time lapsed and you are next on the reserve list: apply before your time runs out."))) }
                }
                @if let Some(Offer::Until(until)) = offer {
                    p { "مهلت / until: " (format_time(until.div_euclid(1000))) }
                }
                form method="post" action=(format!("/{m}/c/{id}/apply")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (fa(t!("ثبت درخواست", "Apply"))) }
                }
            }
            Some(r) => {
                meta http-equiv="refresh" content="30";
                p { (fa(t!("برنده نشدید؛ در فهرست انتظار هستید.", "You did not win; you are on the waiting list."))) }
                p { "جایگاه در فهرست انتظار / waiting list position: " strong { (r - l.units) } }
            }
        }
    };
    Ok(page(StatusCode::OK, t!("قرعه‌کشی", "Lottery"), body))
}

/// The public lottery page.
async fn public(
    State(core): State<Core>,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    let l = core
        .license(&m, &id)
        .filter(|l| l.is_lottery())
        .ok_or(Error::not_found(msg::NO_LOTTERY))?;
    let list = core.store.lottery_list(&id).await?;
    let seed = core.store.revealed_seed(&id).await?;
    let order = core.store.lottery_order(&id).await?;
    Ok(page(
        StatusCode::OK,
        t!("قرعه‌کشی", "Lottery"),
        html! {
            h2 { (l.model) " — " (l.license_no) }
            p { a href=(format!("/transparency/{id}")) { (fa(t!("گزارش شفافیت: تعهدها، فهرست قطعی، سهم‌ها و بذر", "Transparency log: commitments, the frozen list, the shares and the seed"))) } }
            @if let Some(seed) = &seed {
                p { "seed: " code { (seed) } }
                p { (fa(t!(
                    "رتبه هر ثبت‌نام = ترتیب صعودی SHA-256(seed + \":\" + شماره ثبت‌نام). برندگان، به تعداد ظرفیت، از ابتدای فهرست‌اند.",
                    "Each entry's rank is the ascending order of SHA-256(seed + \":\" + entry id). The first `units` entries win.",
                ))) }
                h3 { "draw order (" (l.units) " winners)" }
                ol { @for n in &order { li { (entry_id(*n)) } } }
            } @else {
                p { (fa(t!("بذر قرعه‌کشی پس از پایان ثبت‌نام و قطعی شدن فهرست، از سهم آشکارشده همه طرف‌ها ساخته می‌شود.", "The draw's seed is made after registration closes and the list is frozen, from every party's revealed share."))) }
            }
            h3 { "entries (" (list.len()) ")" }
            ul { @for (n, masked) in &list { li { (entry_id(*n)) " " (masked) } } }
        },
    ))
}
