//! The ministry console, under `/ministry`: staff sign in with password and TOTP; issuers
//! issue and suspend presale licenses; auditors read and export the audit log. Every
//! action is written to the append-only audit log.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use maud::html;
use serde::{Deserialize, Serialize};
use service_kit::keys::{ct_eq, random_token};
use service_kit::page::both;
use service_kit::{Lang, Text};

use super::pages::page;
use crate::app::Core as App;
use crate::domain::{LicenseError, NewLicense, PresaleKind, Selection};
use crate::error::Error;
use crate::store::staff::Role;

fn t(fa: &'static str, en: &'static str) -> Text {
    Text { fa, en }
}

const STAFF_COOKIE: &str = "emta_staff";
const SESSION: Duration = Duration::from_secs(8 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StaffSession {
    username: String,
    role: String,
}

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/ministry", get(dashboard))
        .route("/ministry/login", get(login_form).post(login))
        .route("/ministry/logout", post(logout))
        .route("/ministry/licenses", post(issue))
        .route("/ministry/licenses/{id}/suspend", post(suspend))
        .route("/ministry/licenses/{id}/resume", post(resume))
        .route("/ministry/audit", get(audit))
        .route("/ministry/audit.csv", get(audit_csv))
}

impl App {
    async fn staff(&self, jar: &CookieJar) -> Option<StaffSession> {
        let sid = jar.get(STAFF_COOKIE)?.value().to_owned();
        let raw = self.sessions.get(&format!("staff:{sid}")).await.ok()??;
        serde_json::from_str(&raw).ok()
    }

    fn staff_csrf(&self, jar: &CookieJar) -> String {
        let sid = jar
            .get(STAFF_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        self.keys.hash("csrf", format!("ministry|{sid}").as_bytes())
    }
}

/// The signed-in staff member with `role` (issuers may also read the audit log), after the
/// form's CSRF token is checked; otherwise the response to send instead.
async fn require(
    app: &App,
    jar: &CookieJar,
    role: Option<Role>,
    csrf: Option<&str>,
) -> Result<StaffSession, Response> {
    let Some(s) = app.staff(jar).await else {
        return Err(Redirect::to("/ministry/login").into_response());
    };
    if let Some(token) = csrf {
        if !ct_eq(&app.staff_csrf(jar), token) {
            return Err(Error::BadForm.into_response());
        }
    }
    if role.is_some_and(|r| r.as_str() != s.role) {
        return Err(Error::user(
            StatusCode::FORBIDDEN,
            t("این کار در نقش شما نیست.", "Your role does not allow this."),
        )
        .into_response());
    }
    Ok(s)
}

async fn login_form(State(app): State<App>, jar: CookieJar) -> Response {
    // A pre-session cookie makes the login form's CSRF token bind to this browser.
    let (jar, _) = ensure_cookie(jar, &app);
    let csrf = app.staff_csrf(&jar);
    let body = html! {
        form method="post" action="/ministry/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="username" { (both(Lang::Fa, t("نام کاربری", "Username"))) }
            input #username type="text" name="username" autocomplete="username" required;
            label for="password" { (both(Lang::Fa, t("گذرواژه", "Password"))) }
            input #password type="password" name="password" autocomplete="current-password" required;
            label for="totp" { (both(Lang::Fa, t("کد یکبارمصرف (TOTP)", "One-time code (TOTP)"))) }
            input #totp type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" required;
            button type="submit" { (both(Lang::Fa, t("ورود", "Sign in"))) }
        }
    };
    (
        jar,
        page(StatusCode::OK, t("سامانه وزارت", "Ministry console"), body),
    )
        .into_response()
}

fn ensure_cookie(jar: CookieJar, app: &App) -> (CookieJar, String) {
    if let Some(c) = jar.get(STAFF_COOKIE) {
        let v = c.value().to_owned();
        return (jar, v);
    }
    let sid = random_token(24);
    let cookie = Cookie::build((STAFF_COOKIE, sid.clone()))
        .path("/ministry")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.secure_cookies())
        .build();
    (jar.add(cookie), sid)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

async fn login(State(app): State<App>, jar: CookieJar, Form(f): Form<LoginForm>) -> Response {
    if !ct_eq(&app.staff_csrf(&jar), &f.csrf) {
        return Error::BadForm.into_response();
    }
    // Five tries per username per 15 minutes, across replicas.
    let limited = app
        .limiter
        .hit("staff-login", &f.username, 5, Duration::from_secs(900))
        .await;
    match limited {
        Ok(()) => {}
        Err(service_kit::limit::LimitError::Limited { retry_after }) => {
            return Error::RateLimited { retry_after }.into_response()
        }
        // No shared counter, no login attempt.
        Err(_) => return Error::RateLimited { retry_after: 900 }.into_response(),
    }
    let role = match app
        .store
        .staff_login(&f.username, &f.password, &f.totp, service_kit::clock::now())
        .await
    {
        Ok(Ok(role)) => role,
        Ok(Err(_)) => {
            return Error::user(
                StatusCode::UNAUTHORIZED,
                t(
                    "نام کاربری، گذرواژه یا کد یکبارمصرف نادرست است.",
                    "Wrong username, password or one-time code.",
                ),
            )
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "staff login failed");
            return Error::Busy { retry_after: 5 }.into_response();
        }
    };
    // A fresh session id after login (no fixation).
    let sid = random_token(24);
    let session = StaffSession {
        username: f.username.clone(),
        role: role.as_str().into(),
    };
    let Ok(json) = serde_json::to_string(&session) else {
        return Error::Internal("staff session".into()).into_response();
    };
    if app
        .sessions
        .put(&format!("staff:{sid}"), &json, SESSION)
        .await
        .is_err()
    {
        return Error::Busy { retry_after: 5 }.into_response();
    }
    let cookie = Cookie::build((STAFF_COOKIE, sid))
        .path("/ministry")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.secure_cookies())
        .build();
    (jar.add(cookie), Redirect::to("/ministry")).into_response()
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(app): State<App>, jar: CookieJar, Form(f): Form<CsrfOnly>) -> Response {
    if let Ok(s) = require(&app, &jar, None, Some(&f.csrf)).await {
        if let Some(c) = jar.get(STAFF_COOKIE) {
            let _ = app.sessions.delete(&format!("staff:{}", c.value())).await;
        }
        let _ = app
            .store
            .audit(
                service_kit::clock::now(),
                &s.username,
                "staff.logout",
                &s.username,
                "",
            )
            .await;
    }
    Redirect::to("/ministry/login").into_response()
}

async fn dashboard(State(app): State<App>, jar: CookieJar) -> Response {
    let s = match require(&app, &jar, None, None).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let csrf = app.staff_csrf(&jar);
    let licenses = app.store.licenses().await.unwrap_or_default();
    let issuer = s.role == Role::Issuer.as_str();
    let body = html! {
        p { (s.username) " (" (s.role) ") · " a href="/ministry/audit" { "audit log" } }
        table {
            tr { th { "license" } th { "manufacturer" } th { "model" } th { "units" } th { "accepted" } th { "status" } th {} }
            @for l in &licenses {
                tr {
                    td { (l.license_no) } td { (l.manufacturer) } td { (l.model) } td { (l.units) } td { (l.accepted) } td { (l.status.as_str()) }
                    td { @if issuer {
                        @let action = if l.is_active() { "suspend" } else { "resume" };
                        form method="post" action=(format!("/ministry/licenses/{}/{action}", l.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" { (action) }
                        }
                    } }
                }
            }
        }
        @if issuer {
            h2 { (both(Lang::Fa, t("صدور مجوز پیش‌فروش", "Issue a presale license"))) }
            form method="post" action="/ministry/licenses" {
                input type="hidden" name="csrf" value=(csrf);
                @for (name, fa, en) in FIELDS {
                    label for=(name) { (both(Lang::Fa, t(fa, en))) }
                    input id=(name) type="text" name=(name);
                }
                button type="submit" { (both(Lang::Fa, t("صدور", "Issue"))) }
            }
        }
        form method="post" action="/ministry/logout" { input type="hidden" name="csrf" value=(csrf); button.secondary type="submit" { "sign out" } }
    };
    page(StatusCode::OK, t("سامانه وزارت", "Ministry console"), body)
}

/// The license form's fields: name, Persian and English labels. Times are Unix seconds.
const FIELDS: &[(&str, &str, &str)] = &[
    ("license_no", "شماره مجوز", "License number"),
    (
        "manufacturer",
        "خودروساز (شناسه)",
        "Manufacturer (client id)",
    ),
    ("model", "مدل", "Model"),
    ("units", "تعداد (سقف)", "Units (the cap)"),
    ("unit_price", "قیمت واحد (ریال)", "Unit price (rials)"),
    ("down_payment", "پیش‌پرداخت (ریال)", "Down payment (rials)"),
    (
        "kind",
        "نوع: firm (۹ ماه) یا regular (۱۲ ماه)",
        "Kind: firm (9 months) or regular (12 months)",
    ),
    (
        "delivery_deadline",
        "مهلت تحویل (ثانیه یونیکس)",
        "Delivery deadline (Unix seconds)",
    ),
    (
        "opens_at",
        "آغاز ثبت‌نام (ثانیه یونیکس)",
        "Registration opens (Unix seconds)",
    ),
    (
        "closes_at",
        "پایان ثبت‌نام (ثانیه یونیکس)",
        "Registration closes (Unix seconds)",
    ),
    (
        "admission_per_min",
        "نرخ پذیرش در دقیقه",
        "Admissions per minute",
    ),
    (
        "max_active",
        "حداکثر متقاضیان هم‌زمان",
        "Max concurrently admitted",
    ),
    (
        "apply_window_secs",
        "مهلت ثبت درخواست (ثانیه)",
        "Time to apply (seconds)",
    ),
    ("min_age", "حداقل سن (اختیاری)", "Minimum age (optional)"),
    (
        "round",
        "دوره فروش، یک درخواست در دوره (اختیاری)",
        "Sales round, one application per round (optional)",
    ),
    (
        "ministry_commitment",
        "تعهد بذر وزارت (خروجی presale commit ministry)",
        "The ministry's seed commitment (from `presale commit ministry`)",
    ),
    (
        "manufacturer_commitment",
        "تعهد بذر خودروساز (از خودروساز)",
        "The manufacturer's seed commitment (from the manufacturer)",
    ),
    (
        "observer_commitment",
        "تعهد بذر ناظر (اختیاری)",
        "An observer's seed commitment (optional)",
    ),
];

#[derive(Deserialize)]
struct IssueForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: std::collections::HashMap<String, String>,
}

fn parse_license(f: &std::collections::HashMap<String, String>) -> Result<NewLicense, String> {
    let text = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let num = |k: &str| -> Result<i64, String> {
        service_kit::digits::to_latin_digits(&text(k))
            .replace(',', "")
            .parse()
            .map_err(|_| format!("{k}: a whole number is required"))
    };
    let opt = |k: &str| -> Result<Option<i64>, String> {
        if text(k).is_empty() {
            Ok(None)
        } else {
            num(k).map(Some)
        }
    };
    Ok(NewLicense {
        license_no: text("license_no"),
        manufacturer: text("manufacturer"),
        model: text("model"),
        units: num("units")?,
        unit_price: num("unit_price")?,
        down_payment: num("down_payment")?,
        kind: match text("kind").as_str() {
            "firm" => PresaleKind::Firm,
            "regular" => PresaleKind::Regular,
            _ => return Err("kind: firm or regular".into()),
        },
        delivery_deadline: num("delivery_deadline")?,
        opens_at: num("opens_at")?,
        closes_at: num("closes_at")?,
        selection: match text("selection").as_str() {
            "" | "queue" => Selection::Queue,
            "lottery" => Selection::Lottery,
            _ => return Err("selection: queue or lottery".into()),
        },
        admission_per_min: num("admission_per_min")?,
        max_active: num("max_active")?,
        apply_window_secs: num("apply_window_secs")?,
        min_age: opt("min_age")?,
        round: Some(text("round")).filter(|r| !r.is_empty()),
        exclusion: opt("exclusion_months")?.map(|months| crate::domain::Exclusion {
            manufacturers: text("exclusion_manufacturers")
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
            months,
        }),
        parties: [
            ("ministry", text("ministry_commitment")),
            (
                text("manufacturer").as_str(),
                text("manufacturer_commitment"),
            ),
            ("observer", text("observer_commitment")),
        ]
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .map(
            |(party, commitment)| crate::transparency::seed::Commitment {
                party: party.to_owned(),
                commitment,
            },
        )
        .collect(),
    })
}

async fn issue(State(app): State<App>, jar: CookieJar, Form(f): Form<IssueForm>) -> Response {
    let s = match require(&app, &jar, Some(Role::Issuer), Some(&f.csrf)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let license = match parse_license(&f.fields) {
        Ok(l) => l,
        Err(why) => {
            return page(
                StatusCode::BAD_REQUEST,
                t("خطا", "Error"),
                html! { p.error role="alert" { "اطلاعات مجوز نادرست است / the license is not valid: " (why) } },
            )
        }
    };
    let now = service_kit::clock::now();
    match app.store.issue_license(&license, now).await {
        Ok(Ok(id)) => {
            let _ = app
                .store
                .audit(
                    now,
                    &s.username,
                    "license.issue",
                    &id,
                    &format!(
                        "{} {} units={}",
                        license.license_no, license.model, license.units
                    ),
                )
                .await;
            crate::admitter::tick(&app).await;
            Redirect::to("/ministry").into_response()
        }
        Ok(Err(LicenseError::Exists)) => Error::conflict(t(
            "این شماره مجوز قبلاً صادر شده است.",
            "This license number has been issued already.",
        ))
        .into_response(),
        Ok(Err(why)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            t("خطا", "Error"),
            html! { p.error role="alert" { "اطلاعات مجوز نادرست است / the license is not valid: " (why.to_string()) } },
        ),
        Err(e) => {
            tracing::error!(error = %e, "license issue failed");
            Error::Busy { retry_after: 5 }.into_response()
        }
    }
}

async fn set_active(app: App, jar: CookieJar, id: String, csrf: String, active: bool) -> Response {
    let s = match require(&app, &jar, Some(Role::Issuer), Some(&csrf)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Admissions stop at once on every replica (each tick reads the status under the
    // campaign's lock), applications too (their transaction checks it), and the queue's
    // clock stops, so nobody's time to apply runs while suspended.
    let sql = app.store.set_license_active(&id, active).await;
    if !matches!(sql, Ok(true)) {
        return Error::Busy { retry_after: 5 }.into_response();
    }
    let action = if active {
        "license.resume"
    } else {
        "license.suspend"
    };
    let _ = app
        .store
        .audit(service_kit::clock::now(), &s.username, action, &id, "")
        .await;
    crate::admitter::tick(&app).await;
    Redirect::to("/ministry").into_response()
}

async fn suspend(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    set_active(app, jar, id, f.csrf, false).await
}

async fn resume(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    set_active(app, jar, id, f.csrf, true).await
}

async fn audit(State(app): State<App>, jar: CookieJar) -> Response {
    if let Err(r) = require(&app, &jar, None, None).await {
        return r;
    }
    let rows = app.store.audit_entries().await.unwrap_or_default();
    page(
        StatusCode::OK,
        t("گزارش رویدادها", "Audit log"),
        html! {
            p { a href="/ministry/audit.csv" { "CSV" } }
            table { @for (at, actor, action, subject, detail) in &rows {
                tr { td { (service_kit::clock::format_time(*at)) } td { (actor) } td { (action) } td { (subject) } td { (detail) } }
            } }
        },
    )
}

fn csv_field(s: &str) -> String {
    // Quote every field; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn audit_csv(State(app): State<App>, jar: CookieJar) -> Response {
    let s = match require(&app, &jar, None, None).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _ = app
        .store
        .audit(
            service_kit::clock::now(),
            &s.username,
            "audit.export",
            "audit_log",
            "csv",
        )
        .await;
    let rows = app.store.audit_entries().await.unwrap_or_default();
    let mut out = String::from("at,actor,action,subject,detail\n");
    for (at, actor, action, subject, detail) in rows {
        out.push_str(&format!(
            "{at},{},{},{},{}\n",
            csv_field(&actor),
            csv_field(&action),
            csv_field(&subject),
            csv_field(&detail)
        ));
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}
