//! The down payment's hold at a participating bank (issue 30): the citizen chooses a bank
//! and is sent to the bank's own page, where they authenticate to the bank and approve a
//! mandate (hold this amount, under this title, for this round); the bank sends them
//! back, signed, and emta confirms the hold with the bank server-to-server before it
//! counts. A citizen who has not applied may withdraw: the hold is released at once.
//!
//! On the way back, the `state` emta gave must be the one kept (as a keyed hash) with the
//! hold, the bank's signature must verify, and the amount must be emta's own record's;
//! then the bank's own record of the mandate must name the same national ID, amount,
//! title and round. The amount is always emta's: the redirect's is only compared to it. A
//! confirmation that arrives twice (the browser's, and the bank's own notification) is
//! one hold.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use maud::html;
use serde::Deserialize;
use service_kit::t;

use super::pages::{fa, money, page};
use super::session::CsrfForm;
use super::waiting::citizen_limit;
use crate::adapters::bank::{MandateRequest, SERVICE};
use crate::app::Core;
use crate::domain::{HoldTerms, License};
use crate::error::{msg, Error, Result};
use crate::store::holds::{Hold, HoldState, StartRefused};

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    Router::new()
        .merge(
            g.join
                .around(Router::new().route("/{m}/c/{id}/hold", post(start))),
        )
        .route("/{m}/c/{id}/hold", get(show))
        .route("/{m}/c/{id}/hold/back/{bank}", get(back).post(notified))
        .route("/{m}/c/{id}/hold/withdraw", post(withdraw))
}

/// The license's hold terms, or 404.
fn terms(l: &License) -> Result<&HoldTerms> {
    l.registration
        .as_ref()
        .and_then(|r| r.hold.as_ref())
        .ok_or(Error::not_found(msg::NO_HOLD))
}

async fn show(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let l = core
        .license(&m, &id)
        .ok_or(Error::not_found(msg::NO_PRESALE))?;
    let h = terms(&l)?;
    let hold = core.store.hold_of(&id, &c.national_id).await?;
    // Whether they registered (a place or an application) matters only to a confirmed
    // hold (it decides whether it can still be withdrawn): one read, and only then.
    let registered = match &hold {
        Some(h) if h.state == HoldState::Held => {
            let holder = core.queue.holder(&id, &c.national_id);
            core.store
                .registered_or_applied(&id, &c.national_id, &holder.0)
                .await?
        }
        _ => false,
    };
    let csrf = core.csrf(&jar);
    let banks = core.banks.names();
    let offered: Vec<_> = banks.iter().filter(|b| h.banks.contains(&b.0)).collect();
    let body = html! {
        h2 { (l.model) " — " (l.license_no) }
        p { (fa(t!("پیش‌پرداخت این پیش‌فروش باید در حساب وکالتی یکی از بانک‌های عامل، به عنوان زیر، مسدود شود. بانک آن را تأیید می‌کند؛ پرداخت با کارت نیست.", "This presale's down payment must be held in a power-of-attorney account at one of the participating banks, under the title below. The bank confirms it; it is not a card payment."))) }
        table.terms {
            tr { th { "مبلغ / amount" } td data-hold-amount=(h.amount) { (money(h.amount)) " ریال / rials" } }
            tr { th { "عنوان حساب / account title" } td { (h.title) } }
            tr { th { "دوره / round" } td { (l.license_no) } }
        }
        @match &hold {
            Some(hold) if hold.state != HoldState::Pending => {
                p data-hold-state=(hold.state.as_str()) { "وضعیت / state: " strong { (hold.state.text().fa) " / " (hold.state.text().en) } }
                p { "بانک / bank: " (bank_name(&core, &hold.bank)) }
                @if hold.state == HoldState::Held && !registered {
                    p { (fa(t!("انصراف پیش از ثبت‌نام، مسدودی را بی‌درنگ آزاد می‌کند و به ثبت‌نام شما در این دوره پایان می‌دهد. پس از ثبت‌نام، مسدودی تا پایان دوره می‌ماند.", "Withdrawing before registering releases the hold at once and ends your registration for this round. Once registered, the hold stays until the round ends."))) }
                    form method="post" action=(format!("/{m}/c/{id}/hold/withdraw")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { (fa(t!("انصراف و آزادسازی مسدودی", "Withdraw and release the hold"))) }
                    }
                }
                p { a href=(format!("/{m}/")) { (fa(t!("بازگشت به پیش‌فروش‌ها", "Back to the presales"))) } }
            }
            _ => {
                @if let Some(hold) = &hold {
                    p data-hold-state="pending" { (fa(HoldState::Pending.text())) " (" (bank_name(&core, &hold.bank)) ")" }
                }
                form method="post" action=(format!("/{m}/c/{id}/hold")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="bank" { (fa(t!("بانک عامل", "Participating bank"))) }
                    select id="bank" name="bank" {
                        @for (bid, fa_name, en_name) in &offered {
                            option value=(bid) { (fa_name) " / " (en_name) }
                        }
                    }
                    button type="submit" { (fa(t!("رفتن به صفحه بانک برای مسدودی", "Go to the bank's page to place the hold"))) }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        t!("مسدودی پیش‌پرداخت", "The down payment's hold"),
        body,
    ))
}

fn bank_name(core: &Core, id: &str) -> String {
    core.banks
        .get(id)
        .map(|b| format!("{} / {}", b.config.name_fa, b.config.name))
        .unwrap_or_else(|| id.to_owned())
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    bank: String,
}

async fn start(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<StartForm>,
) -> Result<Response> {
    core.check_csrf(&jar, &f.csrf)?;
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let l = core
        .license(&m, &id)
        .ok_or(Error::not_found(msg::NO_PRESALE))?;
    let h = terms(&l)?;
    let bank = core
        .banks
        .get(&f.bank)
        .filter(|_| h.banks.contains(&f.bank))
        .ok_or(Error::bad_request(msg::NOT_A_PARTICIPATING_BANK))?
        .clone();
    citizen_limit(&core, "hold", &c.national_id).await?;
    // Nobody holds money for a registration the registries would refuse.
    if let Err(why) = core.check_registries(&l, &c.national_id).await? {
        core.count_refusal(why);
        return Err(why.into());
    }
    let holder = core.queue.holder(&id, &c.national_id);
    crate::notify::remember(&core, &holder.0, c.phone.as_deref()).await;
    let hold = match core
        .store
        .start_hold(
            &id,
            &c.national_id,
            &c.sub,
            &holder,
            &bank.config.id,
            h.amount,
            &h.title,
        )
        .await?
    {
        Ok(hold) => hold,
        Err(StartRefused::Already(_)) => {
            return Ok(Redirect::to(&format!("/{m}/c/{id}/hold")).into_response())
        }
    };
    // A mandate asked before (another tab, a double click, a bank changed, a return that
    // never came): what its bank says of it decides. Held: it is this hold, confirmed
    // now. Still open at the bank: it must be approved or declined there first, so that
    // no second mandate holds the citizen's money unknown to emta. Otherwise (declined,
    // expired, unknown to the bank) a new one may be asked.
    let hold = match hold.token.clone() {
        None => hold,
        Some(old) => {
            let old_bank = core
                .banks
                .get(&hold.bank)
                .ok_or(Error::bad_request(msg::NOT_A_PARTICIPATING_BANK))?
                .clone();
            let known = match old_bank.verify(&old).await {
                Ok(mandate) => Some(mandate),
                Err(service_kit::upstream::UpstreamError::Rejected { status: 404, .. }) => None,
                Err(e) => return Err(upstream(&e)),
            };
            match known {
                Some(mandate) if mandate.status == "held" => {
                    confirm(&core, &l, h, &hold, &old, &mandate).await?;
                    return Ok(Redirect::to(&format!("/{m}/c/{id}/hold")).into_response());
                }
                Some(mandate) if mandate.status == "pending" => {
                    return Err(Error::conflict(msg::MANDATE_OPEN));
                }
                _ => {
                    if !core
                        .store
                        .reset_mandate(&hold.id, &old, &bank.config.id)
                        .await?
                    {
                        return Err(Error::conflict(msg::HOLD_CHANGED));
                    }
                    core.store
                        .hold_of(&id, &c.national_id)
                        .await?
                        .ok_or(Error::conflict(msg::HOLD_CHANGED))?
                }
            }
        }
    };
    // The row is the license's terms (an insider's row with another amount is refused).
    if hold.amount != h.amount || hold.title != h.title || hold.bank != bank.config.id {
        tracing::error!(hold = %hold.id, "a hold row unlike its license's terms");
        return Err(Error::conflict(msg::HOLD_MISMATCH));
    }
    let state = service_kit::keys::random_token(24);
    let state_hash = core.keys.hash("hold-state", state.as_bytes());
    let callback = format!("{}/{m}/c/{id}/hold/back/{}", core.base_url, bank.config.id);
    let request = MandateRequest {
        reference: &hold.id,
        national_id: c.national_id.as_str(),
        // The license's terms, never anything the browser sent.
        amount: h.amount,
        title: &h.title,
        round: &l.license_no,
        callback: &callback,
        state: &state,
    };
    let key = format!("mandate:{}:{}", hold.id, &state_hash[..16]);
    let created = bank
        .create_mandate(&request, &key)
        .await
        .map_err(|e| upstream(&e))?;
    // Only to the bank's own pages: an answer naming anywhere else is not followed.
    let base = bank.config.url.trim_end_matches('/');
    if !created.pay_url.starts_with(&format!("{base}/")) {
        tracing::warn!(bank = %bank.config.id, "a mandate's page outside the bank's address");
        return Err(upstream_protocol());
    }
    if !core
        .store
        .set_mandate(&hold.id, &bank.config.id, &created.token, &state_hash)
        .await?
    {
        return Err(Error::conflict(msg::HOLD_CHANGED));
    }
    Ok(Redirect::to(&created.pay_url).into_response())
}

fn upstream(e: &service_kit::upstream::UpstreamError) -> Error {
    tracing::warn!(error = %e, "bank");
    Error::Upstream {
        service: SERVICE,
        retry_after: e.retry_after(),
    }
}

fn upstream_protocol() -> Error {
    Error::Upstream {
        service: SERVICE,
        retry_after: 30,
    }
}

/// The bank's redirect back (and its notification): what it says of the mandate.
#[derive(Deserialize)]
struct BankReturn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    sig: String,
}

/// What the bank's return proved.
enum Returned {
    /// Confirmed (now, or already by an earlier return).
    Held,
    /// The citizen declined or cancelled at the bank; the hold stays pending.
    Declined,
}

/// Checks a return and, when the bank approved, confirms the hold server-to-server.
async fn returned(core: &Core, id: &str, bank_id: &str, r: &BankReturn) -> Result<Returned> {
    let bad = || Error::bad_request(msg::BAD_BANK_RETURN);
    let bank = core.banks.get(bank_id).ok_or_else(bad)?.clone();
    let amount: i64 = r.amount.parse().map_err(|_| bad())?;
    if !bank.signed(&r.token, &r.state, &r.status, amount, &r.sig) {
        tracing::warn!(bank = %bank_id, "a bank return whose signature does not verify");
        return Err(bad());
    }
    let hold: Hold = core
        .store
        .hold_by_token(bank_id, &r.token)
        .await?
        .filter(|h| h.license_id == id)
        .ok_or_else(bad)?;
    let state_ok = hold
        .state_hash
        .as_deref()
        .is_some_and(|kept| core.keys.verify("hold-state", r.state.as_bytes(), kept));
    if !state_ok {
        // A confirmed hold's state was its last mandate's: a late duplicate of it.
        if hold.state.counts() || hold.settle_key.is_some() {
            return Ok(Returned::Held);
        }
        return Err(bad());
    }
    if amount != hold.amount {
        tracing::warn!(bank = %bank_id, "a bank return whose amount is not emta's record");
        return Err(bad());
    }
    if hold.state != HoldState::Pending {
        return Ok(Returned::Held);
    }
    if r.status != "approved" {
        return Ok(Returned::Declined);
    }
    let l = core
        .license_by_id(id)
        .ok_or(Error::not_found(msg::NO_PRESALE))?;
    let h = terms(&l)?;
    let mandate = bank.verify(&r.token).await.map_err(|e| upstream(&e))?;
    if mandate.status != "held" {
        return Ok(Returned::Declined);
    }
    confirm(core, &l, h, &hold, &r.token, &mandate).await?;
    Ok(Returned::Held)
}

/// Confirms `hold` with the bank's record of its mandate `token`, which must name the
/// hold, its national ID, the license's amount and title and the round, and be held.
async fn confirm(
    core: &Core,
    l: &License,
    h: &HoldTerms,
    hold: &Hold,
    token: &str,
    mandate: &crate::adapters::bank::Mandate,
) -> Result<()> {
    let same = mandate.token == token
        && mandate.reference == hold.id
        && mandate.national_id == hold.national_id
        && mandate.amount == h.amount
        && hold.amount == h.amount
        && mandate.title == h.title
        && hold.title == h.title
        && mandate.round == l.license_no
        && mandate.status == "held";
    if !same {
        tracing::warn!(bank = %hold.bank, "the bank's record of a mandate is not emta's hold");
        return Err(Error::conflict(msg::HOLD_MISMATCH));
    }
    if core.store.confirm_hold(hold, token).await? {
        Ok(())
    } else {
        Err(Error::conflict(msg::HOLD_CHANGED))
    }
}

/// The citizen's browser, back from the bank.
async fn back(
    State(core): State<Core>,
    Path((m, id, bank)): Path<(String, String, String)>,
    Query(r): Query<BankReturn>,
) -> Result<Response> {
    let outcome = returned(&core, &id, &bank, &r).await?;
    let (title, text) = match outcome {
        Returned::Held => (
            t!("مسدودی تأیید شد", "The hold is confirmed"),
            t!("بانک مسدودی پیش‌پرداخت را تأیید کرد.", "The bank confirmed the down payment's hold."),
        ),
        Returned::Declined => (
            t!("مسدودی انجام نشد", "No hold was placed"),
            t!("بانک مسدودی را تأیید نکرد (انصراف یا رد). می‌توانید دوباره، در همین یا بانک دیگری، اقدام کنید.", "The bank did not confirm a hold (cancelled or declined). You may try again, at this bank or another."),
        ),
    };
    Ok(page(
        StatusCode::OK,
        title,
        html! {
            p data-hold-outcome=(matches!(outcome, Returned::Held)) { (fa(text)) }
            p { a href=(format!("/{m}/c/{id}/hold")) { (fa(t!("وضعیت مسدودی", "The hold's state"))) } }
            p { a href=(format!("/{m}/")) { (fa(t!("بازگشت به پیش‌فروش‌ها", "Back to the presales"))) } }
        },
    ))
}

/// The bank's own notification, server-to-server (as often as it likes).
async fn notified(
    State(core): State<Core>,
    Path((_m, id, bank)): Path<(String, String, String)>,
    Form(r): Form<BankReturn>,
) -> Result<Response> {
    let outcome = returned(&core, &id, &bank, &r).await?;
    Ok((
        StatusCode::OK,
        match outcome {
            Returned::Held => "held",
            Returned::Declined => "declined",
        },
    )
        .into_response())
}

async fn withdraw(
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
    terms(&l)?;
    if let Some(hold) = core.store.withdraw_hold(&id, &c.national_id).await? {
        if hold.state.settling() {
            // Released at once, not at the round's end.
            let core = core.clone();
            tokio::spawn(async move { crate::settle::carry_out(&core, &hold).await });
        }
    }
    Ok(Redirect::to(&format!("/{m}/c/{id}/hold")).into_response())
}
