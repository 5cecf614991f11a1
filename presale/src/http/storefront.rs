//! The manufacturers' storefronts: the list of storefronts, each one's licensed campaigns
//! with their terms, and the signed-in citizen's applications.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use axum_extra::extract::CookieJar;
use maud::html;
use service_kit::clock::format_time;
use service_kit::t;

use super::pages::{fa, money, page};
use crate::app::Core;
use crate::domain::{License, Selection};
use crate::error::Result;

pub(crate) fn router(core: &Core) -> Router<Core> {
    Router::new()
        .route("/", get(home))
        .route("/{m}/", get(storefront))
        .route("/{m}/applications", get(my_applications))
        .merge(super::complaints::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            core.clone(),
            by_visitor,
        ))
}

/// A storefront's pages admitted as the visitor's journey stands: a citizen signed in
/// (the mark a finished sign-in sets, checked without a store) at the signed-in share,
/// anyone else as browsing.
async fn by_visitor(
    State(core): State<Core>,
    jar: CookieJar,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let g = &core.gates;
    let gate = if core.signed_in_here(&jar) {
        &g.signed_in
    } else {
        &g.browse
    };
    gate.pass(req, next).await
}

async fn home(State(core): State<Core>) -> Response {
    let fronts = core.rp.storefronts();
    page(
        StatusCode::OK,
        t!("پیش‌فروش خودرو", "Car presales"),
        html! {
            ul { @for s in fronts { li { a href=(format!("/{}/", s.cfg.id)) { (s.cfg.name_fa) " — " (s.cfg.name) } } } }
        },
    )
}

async fn storefront(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
) -> Result<Response> {
    let front = core.storefront(&m)?;
    let citizen = core.citizen(&jar, &m).await?;
    let csrf = core.csrf(&jar);
    let now = service_kit::clock::now();
    let licenses: Vec<Arc<License>> = core
        .all_licenses()
        .iter()
        .filter(|l| l.manufacturer == m)
        .cloned()
        .collect();
    Ok(page(
        StatusCode::OK,
        t!("پیش‌فروش", "Presale"),
        html! {
            p.client { strong { (front.cfg.name_fa) } " · " (front.cfg.name) }
            // The ministry's trust badge, drawn by the IdP's own code (issue 34).
            p.badge { script src=(format!("{}/badge/{m}/badge.js", core.issuer)) {} }
            @match &citizen {
                Some(c) => { p { (c.name) " — " a href=(format!("/{m}/applications")) { (fa(t!("درخواست‌های من", "My applications"))) } } }
                None => { p { a href=(format!("/{m}/login")) { (fa(t!("ورود با امتا", "Sign in with emta"))) } } }
            }
            @for l in &licenses {
                // data-* for tools (the load tool reads the cap and the window from here).
                section data-campaign=(l.id) data-units=(l.units) data-opens-at=(l.opens_at) data-closes-at=(l.closes_at) data-selection=(l.selection.as_str()) {
                    h2 { (l.model) }
                    ul {
                        li { "مجوز / license: " (l.license_no) }
                        li { "قیمت / price: " (money(l.unit_price)) " ریال · پیش‌پرداخت / down payment: " (money(l.down_payment)) }
                        li { "ظرفیت / units: " (l.units) " (" (l.accepted) " پذیرفته / accepted)" }
                        li { "تحویل تا / delivery by: " (format_time(l.delivery_deadline)) " (" (l.kind.as_str()) ")" }
                        li { "ثبت‌نام / registration: " (format_time(l.opens_at)) " → " (format_time(l.closes_at)) }
                        @if let Some(r) = l.registration.as_ref() {
                            @if r.driving_licence {
                                li { "شرط / rule: گواهینامه رانندگی معتبر (استعلام از پلیس راهور) / a valid driving licence (the traffic police are asked)" }
                            }
                            @if let Some(months) = r.no_vehicle_months {
                                li { "شرط / rule: بدون خودروی شماره‌شده در " (months) " ماه گذشته و بدون پلاک فعال / no vehicle registered in the last " (months) " months and no active plate (the vehicle registry is asked)" }
                            }
                        }
                        @if l.selection == Selection::Lottery {
                            li { "روش انتخاب / selection: قرعه‌کشی پس از پایان ثبت‌نام / lottery after registration closes — " a href=(format!("/{m}/c/{}/lottery", l.id)) { "فهرست و نتیجه / list and result" } }
                        } @else {
                            li { "روش انتخاب / selection: صف منصفانه؛ پیش از گشایش ترتیب تصادفی / fair queue; random order for those who join before the opening" }
                            // After the opening the seed and the number of early arrivals are
                            // public, so anyone can recompute every early ticket.
                            @if let (true, Some(seed)) = (now >= l.opens_at, core.cached(&l.id).seed) {
                                li { "seed: " code { (seed) } " · early arrivals: " (core.cached(&l.id).early) " · ticket(p) = 1 + swap-or-not(seed, early, p − 1)" }
                            }
                        }
                        li { a href=(format!("/transparency/{}", l.id)) { "گزارش شفافیت / transparency log" } " (" (fa(t!("بذر از سهم چند طرف پس از قطعی شدن فهرست ساخته می‌شود", "the seed is made from several parties' shares after the list is frozen"))) ")" }
                        @if !l.is_active() { li.error { (fa(t!("مجوز تعلیق شده است.", "The license is suspended."))) } }
                    }
                    @if let Some(h) = l.registration.as_ref().and_then(|r| r.hold.as_ref()) {
                        p { a href=(format!("/{m}/c/{}/hold", l.id)) data-hold-link="1" {
                            (fa(t!("مسدودی پیش‌پرداخت در بانک عامل", "The down payment's hold at a participating bank")))
                        } " (" (crate::http::pages::money(h.amount)) " ریال / rials; "
                          (if h.before == crate::domain::HoldBefore::Entry { "پیش از ثبت‌نام / before registering" } else { "پیش از ثبت درخواست / before applying" }) ")" }
                    }
                    @if citizen.is_some() {
                        form method="post" action=(format!("/{m}/c/{}/join", l.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { (fa(t!("ورود به صف", "Join the queue"))) }
                        }
                    }
                }
            }
        },
    ))
}

async fn my_applications(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
) -> Result<Response> {
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let rows = core.store.applications_of(&c.sub).await?;
    // After the sale (issue 34): the deadline, the state and the compensation owed.
    let now = service_kit::clock::now();
    let after = core.store.deliveries_of_citizen(&c.sub, now).await?;
    let licenses = core.all_licenses();
    let holds = core.store.holds_of_person(&c.national_id).await?;
    // Complaints and warranty (issue 34).
    let complaints = core.store.complaints_of_citizen(&m, &c.sub).await?;
    let warranty = core.store.warranty_of_citizen(&c.sub, now).await?;
    let mine: Vec<_> = holds
        .iter()
        .filter_map(|h| {
            licenses
                .iter()
                .find(|l| l.id == h.license_id && l.manufacturer == m)
                .map(|l| (l.clone(), h))
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        t!("درخواست‌های من", "My applications"),
        html! {
            @if rows.is_empty() { p { (fa(t!("هنوز درخواستی ندارید.", "You have no applications yet."))) } }
            ul { @for r in &rows {
                li data-tracking=(r.tracking_code) {
                    (licenses.iter().find(|l| l.id == r.license_id).map(|l| l.model.clone()).unwrap_or_default())
                    " — کد پیگیری / tracking: " strong { (r.tracking_code) }
                    " — " (format_time(r.created_at))
                    @if let Some(d) = after.iter().find(|d| d.tracking_code == r.tracking_code) {
                        dl.delivery {
                            dt { (fa(t!("مهلت تحویل", "Delivery by"))) } dd { (format_time(d.deadline)) }
                            dt { (fa(t!("وضعیت", "State"))) } dd data-delivery-state { (fa(d.state())) }
                            dt { (fa(t!("پرداخت‌شده", "Paid"))) } dd { (money(d.paid())) " ریال / rials" }
                            @if d.lateness.days > 0 {
                                dt { (fa(t!("تأخیر", "Late"))) } dd data-days-late=(d.lateness.days) { (d.lateness.days) " روز / days" }
                                dt { (fa(t!("خسارت تأخیر تا امروز", "Late compensation owed so far"))) }
                                dd data-owed=(d.lateness.owed) { (money(d.lateness.owed)) " ریال / rials" }
                            }
                        }
                    }
                    @if let Some(w) = warranty.iter().find(|w| w.tracking_code == r.tracking_code) {
                        dl.warranty data-warranty=(w.tracking_code) {
                            dt { (fa(t!("مراجعه‌های گارانتی", "Warranty visits"))) } dd { (w.visits.len()) }
                            dt { (fa(t!("روزهای توقف خودرو", "Days off the road"))) } dd data-days-off-road=(w.tally.off_road / 86_400) { (w.tally.off_road / 86_400) }
                            dt { (fa(t!("تعمیر ناموفق نقص ایمنی", "Failed safety repairs"))) } dd { (w.tally.failed_safety) }
                            @if w.tally.replacement_car_due {
                                dt {} dd data-replacement-car-due { (fa(t!("خودروی جایگزین مشابه به شما تعلق می‌گیرد (بیش از ۴۸ ساعت توقف).", "A like replacement car is due to you (over 48 hours off the road)."))) }
                            }
                            @if w.tally.replace_or_refund_due {
                                dt {} dd data-replace-or-refund-due { (fa(t!("تعویض خودرو یا بازپرداخت وجه به شما تعلق می‌گیرد (سه تعمیر ناموفق ایمنی یا ۳۰ روز توقف).", "Replacement or refund is due to you (three failed safety repairs, or 30 days off the road)."))) }
                            }
                        }
                    }
                    ul.complaints {
                        @for cp in complaints.iter().filter(|cp| cp.tracking_code == r.tracking_code) {
                            li data-complaint=(cp.id) { a href=(format!("/{m}/complaints/{}", cp.id)) { (fa(cp.kind.text())) } " — " (fa(cp.level(now).text())) }
                        }
                    }
                    a href=(format!("/{m}/complaints/new?tracking={}", r.tracking_code)) { (fa(t!("ثبت شکایت", "File a complaint"))) }
                }
            } }
            @if !mine.is_empty() {
                h2 { (fa(t!("مسدودی‌های پیش‌پرداخت", "Down payment holds"))) }
                ul { @for (l, h) in &mine {
                    li data-hold-state=(h.state.as_str()) {
                        (l.model) " — " (crate::http::pages::money(h.amount)) " ریال / rials — "
                        (core.banks.get(&h.bank).map(|b| format!("{} / {}", b.config.name_fa, b.config.name)).unwrap_or_else(|| h.bank.clone()))
                        " — " strong { (h.state.text().fa) " / " (h.state.text().en) }
                        " — " a href=(format!("/{m}/c/{}/hold", l.id)) { (fa(t!("جزئیات", "details"))) }
                    }
                } }
            }
        },
    ))
}
