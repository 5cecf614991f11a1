//! Applying: only the owner of an admitted ticket (or a lottery winner), once, within the
//! cap. The store decides in one transaction; this handler explains its answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use maud::html;
use service_kit::t;

use super::pages::{fa, page};
use super::session::{Citizen, CsrfForm};
use super::waiting::{citizen_limit, queue_ticket, read_place};
use crate::app::Core;
use crate::domain::{ApplicationRequest, License, Place, Refusal};
use crate::error::{msg, Error, Result};

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    g.apply
        .around(Router::new().route("/{m}/c/{id}/apply", post(apply)))
}

/// Why a queue applicant was refused for lack of a live admission, in words they can act
/// on: their other device applied already, the campaign sold out, or their turn lapsed.
async fn not_admitted(core: &Core, c: &Citizen, l: &License) -> Error {
    if let Ok(mine) = core.store.applications_of(&c.sub).await {
        if mine.iter().any(|a| a.license_id == l.id) {
            return Refusal::AlreadyApplied.into();
        }
    }
    if core.cached(&l.id).sold_out {
        return Refusal::SoldOut.into();
    }
    Refusal::TurnOver.into()
}

async fn apply(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    core.check_csrf(&jar, &f.csrf)?;
    let (Some(c), Some(l)) = (core.citizen(&jar, &m).await?, core.license(&m, &id)) else {
        return Ok(Redirect::to(&format!("/{m}/")).into_response());
    };
    let place = read_place(&core, &jar, &id, Some(&c.national_id))
        .ok_or(Error::user(StatusCode::FORBIDDEN, msg::NOT_YOUR_TICKET))?;
    citizen_limit(&core, "apply", &c.national_id).await?;
    let lottery = matches!(place, Place::Entry(_));
    let ticket = if lottery {
        // Lottery: only a winner (rank within the units) may apply.
        // Only a winner, or a reserve promoted in their place: the store decides.
        match core.store.lottery_rank(&id, &c.national_id).await? {
            Some(rank) => rank,
            None => return Err(Error::conflict(msg::NOT_A_WINNER)),
        }
    } else {
        queue_ticket(&core, &l, place).await?
    };
    let req = ApplicationRequest {
        national_id: c.national_id.clone(),
        citizen_sub: c.sub.clone(),
        birthdate: c.birthdate.clone(),
        ticket,
        arrival: match place {
            Place::Early(arrival) => Some(arrival),
            _ => None,
        },
        holder: core.queue.holder(&id, &c.national_id),
    };
    // The registries' rules first (cached, within the deployment's budget); a registry
    // that cannot answer is "try again", and the admission stays the applicant's.
    // A lottery's were asked at entry: a registry outage during a winner's time to apply
    // must not cost them their place.
    let registries = if lottery {
        Ok(())
    } else {
        core.check_registries(&l, &c.national_id).await?
    };
    let outcome = match registries {
        Ok(()) => core.store.apply(&l.terms(), &req).await?,
        Err(why) => Err(why),
    };
    match outcome {
        Ok(acc) => Ok(page(
            StatusCode::OK,
            t!("درخواست ثبت شد", "Application accepted"),
            html! {
                p { (fa(t!("درخواست شما پذیرفته شد. کد پیگیری:", "Your application is accepted. Tracking code:"))) }
                p { strong data-tracking-code=(acc.tracking_code) { (acc.tracking_code) } }
                p { a href=(format!("/{m}/applications")) { (fa(t!("درخواست‌های من", "My applications"))) } }
                p { a href=(format!("/{m}/c/{id}/receipts")) { (fa(t!("رسید ثبت در گزارش شفافیت (چند ثانیه دیگر)", "Receipt from the transparency log (in a few seconds)"))) } }
            },
        )),
        Err(Refusal::TurnOver) => {
            core.count_refusal(Refusal::TurnOver);
            Err(not_admitted(&core, &c, &l).await)
        }
        Err(why) => {
            core.count_refusal(why);
            // Refused for good (not for a pause or the cap): the slot goes to the next.
            // A hold still to be placed is not a refusal for good: the admitted citizen
            // places it within their time and applies.
            if !lottery && !matches!(why, Refusal::Suspended | Refusal::SoldOut | Refusal::NoHold) {
                let _ = core.store.release_own_admission(&id, &req).await;
            }
            Err(why.into())
        }
    }
}
