//! After the sale at the console (issue 34):
//! - everyone but a representative sees each manufacturer's deliveries (applications,
//!   delivered, overdue, compensation owed) and the ministry's table of compensation
//!   rates; an issuer adds a rate (kept for good, audited);
//! - a manufacturer's representative sees its own applications and records their stages
//!   (contract, payment, delivery) as they happen; its back-end can do the same through
//!   the API (`/api/deliveries`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::{fa, page, when, Staff};
use crate::app::Core as App;
use crate::domain::after_sale::{CreditRefusal, Rate, SaleKind, MAX_MONTHLY_BP};
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::after_sale::{Delivery, RateError, Stage, StageError, StageRequest};
use crate::store::staff::Role;

/// A license refused on the manufacturer's credit, with the figures.
pub(super) fn credit_refused(c: CreditRefusal) -> Error {
    let (text, figures) = match c {
        CreditRefusal::Ceiling {
            stars,
            ceiling,
            outstanding,
            asked,
        } => (
            m::E_CREDIT_CEILING,
            format!(
                "{} + {} > {} ({stars}★)",
                money(outstanding),
                money(asked),
                money(ceiling)
            ),
        ),
        CreditRefusal::Overdue {
            overdue,
            allowed,
            asked,
        } => (
            m::E_CREDIT_OVERDUE,
            format!(
                "معوق / overdue {overdue} · مجاز / allowed {allowed} · درخواستی / asked {asked}"
            ),
        ),
    };
    Error::Figures {
        status: StatusCode::CONFLICT,
        text,
        figures,
    }
}

/// The status a refused stage is answered with, by the API and the console alike.
pub(crate) fn stage_status(e: StageError) -> StatusCode {
    match e {
        StageError::NoApplication => StatusCode::NOT_FOUND,
        StageError::Amount | StageError::Time => StatusCode::UNPROCESSABLE_ENTITY,
        StageError::Recorded
        | StageError::NoContract
        | StageError::Delivered
        | StageError::KeyReused => StatusCode::CONFLICT,
    }
}

pub(crate) fn stage_text(e: StageError) -> service_kit::Text {
    match e {
        StageError::NoApplication => m::E_STAGE_NO_APPLICATION,
        StageError::Recorded => m::E_STAGE_RECORDED,
        StageError::NoContract => m::E_STAGE_NO_CONTRACT,
        StageError::Delivered => m::E_STAGE_DELIVERED,
        StageError::Amount => m::E_STAGE_AMOUNT,
        StageError::Time => m::E_STAGE_TIME,
        StageError::KeyReused => m::E_STAGE_KEY,
    }
}

/// A monthly percentage typed with at most two decimals (Persian or Latin digits, a dot
/// or the Persian decimal separator), as basis points.
fn percent_bp(s: &str) -> Option<i64> {
    let s = service_kit::digits::to_latin_digits(s.trim()).replace(['٫', '/'], ".");
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.is_empty()
        || whole.len() > 3
        || frac.len() > 2
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<2}");
    let bp = whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?;
    (0..=MAX_MONTHLY_BP).contains(&bp).then_some(bp)
}

/// Basis points as a percentage.
fn percent(bp: i64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

fn rows(app: &App, ds: &[Delivery], now: i64, staff: Option<&Staff>) -> Markup {
    let licenses = app.all_licenses();
    html! {
        table.deliveries {
            thead { tr {
                th { "کد پیگیری / tracking" } th { "خودرو / model" } th { "مهلت / deadline" }
                th { "وضعیت / state" } th { "پرداخت‌شده / paid" } th { "روز تأخیر / days late" }
                th { "خسارت / owed" }
                @if staff.is_some() { th { "ثبت / record" } }
            } }
            tbody { @for d in ds {
                tr data-tracking=(d.tracking_code) data-overdue[d.overdue(now)] {
                    td { code { (d.tracking_code) } }
                    td { (licenses.iter().find(|l| l.id == d.license_id).map(|l| l.model.clone()).unwrap_or_default()) }
                    td { (when(d.deadline)) }
                    td { (fa(d.state())) }
                    td { (money(d.paid())) }
                    td data-days-late=(d.lateness.days) { (d.lateness.days) }
                    td data-owed=(d.lateness.owed) { (money(d.lateness.owed)) }
                    @if let Some(s) = staff {
                        td { @if d.delivered_at.is_none() {
                            form method="post" action="/ministry/deliveries/stage" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                input type="hidden" name="tracking_code" value=(d.tracking_code);
                                select name="stage" aria-label="stage" {
                                    @if d.contract_at.is_none() { option value="contract" { "قرارداد / contract" } }
                                    @else {
                                        option value="payment" { "پرداخت / payment" }
                                        option value="delivered" { "تحویل / delivered" }
                                    }
                                }
                                input type="text" name="amount" inputmode="numeric" placeholder="ریال / rials" aria-label="amount";
                                button.inline type="submit" { (fa(m::RECORD_STAGE)) }
                            }
                        } }
                    }
                }
            } }
        }
    }
}

pub(super) async fn show(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    let now = service_kit::clock::now();
    if staff.role == Role::Representative {
        let Some(maker) = staff.manufacturer.clone() else {
            return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE));
        };
        let ds = app.store.deliveries_of_manufacturer(&maker, now).await?;
        let body = rows(&app, &ds, now, Some(&staff));
        return Ok(page(&staff, StatusCode::OK, m::DELIVERIES, body));
    }
    let report = app.store.delivery_report(now).await?;
    let rates = app.store.compensation_rates().await?;
    let body = html! {
        table.report {
            thead { tr {
                th { "خودروساز / manufacturer" } th { "درخواست‌ها / applications" }
                th { "تحویل‌شده / delivered" } th { "معوق / overdue" }
                th { "تحویل با تأخیر / delivered late" } th { "خسارت / owed" }
                th { "روز بی‌نرخ / unrated days" }
            } }
            tbody { @for r in &report {
                tr data-manufacturer=(r.manufacturer) {
                    td lang="en" dir="ltr" { (r.manufacturer) }
                    td { (r.applications) } td { (r.delivered) }
                    td data-overdue=(r.overdue) { (r.overdue) }
                    td { (r.late_delivered) }
                    td data-owed=(r.owed) { (money(r.owed)) }
                    td { (r.unrated_days) }
                }
            } }
        }
        h2 { (fa(m::RATES)) }
        table.rates {
            thead { tr { th { "نوع / kind" } th { "از / from" } th { "ماهانه / monthly" } } }
            tbody { @for k in SaleKind::ALL { @for r in rates.get(&k).map(Vec::as_slice).unwrap_or(&[]) {
                tr { td { (fa(k.text())) } td { (when(r.from)) } td { (percent(r.monthly_bp)) } }
            } } }
        }
        @if staff.role == Role::Issuer {
            form method="post" action="/ministry/deliveries/rates" {
                input type="hidden" name="csrf" value=(staff.csrf);
                label { "نوع / kind " select name="kind" { @for k in SaleKind::ALL { option value=(k.as_str()) { (k.text().fa) " / " (k.text().en) } } } }
                label { "از تاریخ / from (1405/01/01) " input type="text" name="from" required; }
                label { "درصد ماهانه / % a month " input type="text" name="percent" inputmode="decimal" required; }
                button type="submit" { (fa(m::ADD_RATE)) }
            }
        }
    };
    Ok(page(&staff, StatusCode::OK, m::DELIVERIES, body))
}

#[derive(Deserialize)]
pub(super) struct RateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    percent: String,
}

pub(super) async fn add_rate(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<RateForm>,
) -> Result<Response, Error> {
    staff.may(Role::Issuer, &f.csrf)?;
    let bad = || Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_RATE_FORM);
    let kind = SaleKind::parse(f.kind.trim()).ok_or_else(bad)?;
    let from = service_kit::clock::parse_jalali_tehran(&f.from, (0, 0)).map_err(|_| bad())?;
    let monthly_bp = percent_bp(&f.percent).ok_or_else(bad)?;
    let added = app
        .store
        .set_compensation_rate(
            kind,
            Rate { from, monthly_bp },
            &staff.username,
            service_kit::clock::now(),
        )
        .await?;
    match added {
        Ok(()) => Ok(Redirect::to("/ministry/deliveries").into_response()),
        Err(RateError::Exists) => Err(Error::conflict(m::E_RATE_EXISTS)),
        Err(RateError::Past | RateError::Range) => Err(bad()),
    }
}

#[derive(Deserialize)]
pub(super) struct StageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tracking_code: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    amount: String,
}

pub(super) async fn record(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<StageForm>,
) -> Result<Response, Error> {
    staff.may(Role::Representative, &f.csrf)?;
    let Some(maker) = staff.manufacturer.clone() else {
        return Err(Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE));
    };
    let bad = || Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_STAGE_FORM);
    let stage = Stage::parse(f.stage.trim()).ok_or_else(bad)?;
    let amount = match stage {
        Stage::Payment => super::form::whole(&f.amount).ok_or_else(bad)?,
        _ if f.amount.trim().is_empty() => 0,
        _ => return Err(bad()),
    };
    let now = service_kit::clock::now();
    let code = f.tracking_code.trim();
    let request = StageRequest {
        stage,
        amount,
        at: now,
        key: None,
    };
    // Audited in the stage's own transaction, under the member's name.
    match app
        .store
        .record_stage(&maker, code, &request, &staff.username, now)
        .await?
    {
        Ok(_) => Ok(Redirect::to("/ministry/deliveries").into_response()),
        Err(e) => Err(Error::user(stage_status(e), stage_text(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_bp;

    #[test]
    fn percentages_read_as_basis_points() {
        assert_eq!(percent_bp("2.5"), Some(250));
        assert_eq!(percent_bp("۲٫۵"), Some(250));
        assert_eq!(percent_bp("3"), Some(300));
        assert_eq!(percent_bp("0.01"), Some(1));
        assert_eq!(percent_bp("100"), Some(10_000));
        for bad in ["", "100.01", "2.555", "-1", "1e2", ".5", "2..5"] {
            assert_eq!(percent_bp(bad), None, "{bad}");
        }
    }
}
