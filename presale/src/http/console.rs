//! The ministry console, under `/ministry`: staff sign in with password and TOTP; issuers
//! propose issuing, suspending, resuming a license and changing its admission rate, and a
//! second issuer approves (four-eyes); auditors read, check and export the audit log.
//! Every action is written to the hash-chained audit log in its own transaction.

use std::time::Duration;

use axum::extract::{Extension, Path, State};
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
use super::ClientIp;
use crate::app::Core as App;
use crate::domain::{LicenseError, NewLicense, PresaleKind, Selection};
use crate::error::Error;
use crate::store::proposals::{Change, Decision, Outcome, ProposalError};
use crate::store::staff::Role;

fn t(fa: &'static str, en: &'static str) -> Text {
    Text { fa, en }
}

const STAFF_COOKIE: &str = "emta_staff";
/// A browser where the account signed in before: its own failure budget, so a username
/// locked by somebody else's guesses does not lock its owner out at their desk.
const DEVICE_COOKIE: &str = "emta_staff_device";
const SESSION: Duration = Duration::from_secs(8 * 3600);
const DEVICE_LIFETIME: Duration = Duration::from_secs(180 * 24 * 3600);
/// Failed sign-ins per username (or per username on a known device) per window.
const USER_FAILURES: i64 = 5;
/// Sign-in attempts per client address (IPv6: per /64) per window, failed or not.
const IP_ATTEMPTS: i64 = 30;
const LOGIN_WINDOW: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StaffSession {
    username: String,
    /// The account's session epoch at sign-in: disabling the account or revoking its
    /// sessions moves the epoch, which ends this session on its next request.
    epoch: i64,
}

/// The signed-in staff member, as the database says now.
struct Staff {
    username: String,
    role: Role,
}

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/ministry", get(dashboard))
        .route("/ministry/login", get(login_form).post(login))
        .route("/ministry/logout", post(logout))
        .route("/ministry/licenses", post(issue))
        .route("/ministry/licenses/{id}/suspend", post(suspend))
        .route("/ministry/licenses/{id}/resume", post(resume))
        .route("/ministry/licenses/{id}/rate", post(rate))
        .route("/ministry/proposals/{id}/approve", post(approve))
        .route("/ministry/proposals/{id}/reject", post(reject))
        .route("/ministry/audit", get(audit))
        .route("/ministry/audit.csv", get(audit_csv))
}

impl App {
    /// The staff session of this browser. A session store that cannot answer is an
    /// error (503, try again), not a sign-out.
    async fn staff(
        &self,
        jar: &CookieJar,
    ) -> Result<Option<StaffSession>, service_kit::ephemeral::EphemeralError> {
        let Some(sid) = jar.get(STAFF_COOKIE).map(|c| c.value().to_owned()) else {
            return Ok(None);
        };
        let Some(raw) = self.sessions.get(&format!("staff:{sid}")).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&raw).ok())
    }

    fn staff_csrf(&self, jar: &CookieJar) -> String {
        let sid = jar
            .get(STAFF_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        self.keys.hash("csrf", format!("ministry|{sid}").as_bytes())
    }

    /// The known-device cookie's value for `username`: `nonce.mac`.
    fn device_token(&self, username: &str, nonce: &str) -> String {
        let mac = self
            .keys
            .hash("staff-device", format!("{username}|{nonce}").as_bytes());
        format!("{nonce}.{mac}")
    }

    /// The device's nonce, if this browser is a known device of `username`.
    fn known_device(&self, jar: &CookieJar, username: &str) -> Option<String> {
        let value = jar.get(DEVICE_COOKIE)?.value().to_owned();
        let (nonce, _) = value.split_once('.')?;
        ct_eq(&self.device_token(username, nonce), &value).then(|| nonce.to_owned())
    }
}

/// The signed-in staff member with `role` (issuers may also read the audit log), after the
/// form's CSRF token is checked; otherwise the response to send instead.
async fn require(
    app: &App,
    jar: &CookieJar,
    role: Option<Role>,
    csrf: Option<&str>,
) -> Result<Staff, Response> {
    let s = match app.staff(jar).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Redirect::to("/ministry/login").into_response()),
        Err(e) => return Err(Error::from(e).into_response()),
    };
    // The account as it stands now: disabled, revoked or demoted takes effect at once.
    let account = match app.store.staff_account(&s.username).await {
        Ok(Some(a)) if a.enabled && a.epoch == s.epoch => a,
        Ok(_) => {
            if let Some(c) = jar.get(STAFF_COOKIE) {
                let _ = app.sessions.delete(&format!("staff:{}", c.value())).await;
            }
            return Err(Redirect::to("/ministry/login").into_response());
        }
        Err(e) => {
            tracing::error!(error = %e, "staff account lookup failed");
            return Err(Error::Busy { retry_after: 5 }.into_response());
        }
    };
    if let Some(token) = csrf {
        if !ct_eq(&app.staff_csrf(jar), token) {
            return Err(Error::BadForm.into_response());
        }
    }
    if role.is_some_and(|r| r != account.role) {
        return Err(Error::user(
            StatusCode::FORBIDDEN,
            t("این کار در نقش شما نیست.", "Your role does not allow this."),
        )
        .into_response());
    }
    Ok(Staff {
        username: s.username,
        role: account.role,
    })
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

fn limited(e: service_kit::limit::LimitError) -> Response {
    match e {
        service_kit::limit::LimitError::Limited { retry_after } => {
            Error::RateLimited { retry_after }.into_response()
        }
        // No shared counter, no login attempt.
        service_kit::limit::LimitError::Store(_) => Error::RateLimited {
            retry_after: LOGIN_WINDOW.as_secs(),
        }
        .into_response(),
    }
}

async fn login(
    State(app): State<App>,
    Extension(ip): Extension<ClientIp>,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    if !ct_eq(&app.staff_csrf(&jar), &f.csrf) {
        return Error::BadForm.into_response();
    }
    // Every attempt counts against the client's address (argon2 is costly); only
    // failures count against the username, and a browser the account signed in from
    // before has a budget of its own, so nobody can lock an issuer out of their desk.
    if let Err(e) = app
        .limiter
        .hit("staff-login-ip", &ip.subject(), IP_ATTEMPTS, LOGIN_WINDOW)
        .await
    {
        return limited(e);
    }
    let device = app.known_device(&jar, &f.username);
    let user_key = match &device {
        Some(nonce) => app
            .limiter
            .key("staff-login-device", &format!("{}|{nonce}", f.username)),
        None => app.limiter.key("staff-login-user", &f.username),
    };
    if let Err(e) = app.limiter.check_key(&user_key, USER_FAILURES).await {
        return limited(e);
    }
    let signed_in = match app
        .store
        .staff_login(
            &f.username,
            &f.password,
            &f.totp,
            service_kit::clock::now(),
            &ip.subject(),
        )
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => {
            let _ = app
                .limiter
                .hit_key(&user_key, USER_FAILURES, LOGIN_WINDOW)
                .await;
            return Error::user(
                StatusCode::UNAUTHORIZED,
                t(
                    "نام کاربری، گذرواژه یا کد یکبارمصرف نادرست است.",
                    "Wrong username, password or one-time code.",
                ),
            )
            .into_response();
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
        epoch: signed_in.epoch,
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
    let nonce = device.unwrap_or_else(|| random_token(16));
    let known = Cookie::build((DEVICE_COOKIE, app.device_token(&f.username, &nonce)))
        .path("/ministry")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.secure_cookies())
        .max_age(time::Duration::seconds(DEVICE_LIFETIME.as_secs() as i64))
        .build();
    (jar.add(cookie).add(known), Redirect::to("/ministry")).into_response()
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
    let proposals = app
        .store
        .pending_proposals(service_kit::clock::now())
        .await
        .unwrap_or_default();
    let issuer = s.role == Role::Issuer;
    let body = html! {
        p { (s.username) " (" (s.role.as_str()) ") · " a href="/ministry/audit" { "audit log" } }
        h2 { (both(Lang::Fa, t("در انتظار تأیید نفر دوم", "Waiting for a second issuer"))) }
        @if proposals.is_empty() {
            p { (both(Lang::Fa, t("هیچ", "None"))) }
        }
        table {
            @for p in &proposals {
                tr.proposal {
                    td { (p.id) }
                    td { (p.change.summary()) }
                    td { "proposed by " (p.proposed_by) " at " (service_kit::clock::format_time(p.proposed_at)) }
                    td { @if issuer {
                        @if p.proposed_by != s.username {
                            form method="post" action=(format!("/ministry/proposals/{}/approve", p.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { (both(Lang::Fa, t("تأیید", "Approve"))) }
                            }
                        }
                        form method="post" action=(format!("/ministry/proposals/{}/reject", p.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" {
                                @if p.proposed_by == s.username { (both(Lang::Fa, t("پس گرفتن", "Withdraw"))) }
                                @else { (both(Lang::Fa, t("رد", "Reject"))) }
                            }
                        }
                    } }
                }
            }
        }
        h2 { (both(Lang::Fa, t("مجوزها", "Licenses"))) }
        table {
            tr { th { "license" } th { "manufacturer" } th { "model" } th { "units" } th { "accepted" } th { "rate/min" } th { "status" } th {} }
            @for l in &licenses {
                tr {
                    td { (l.license_no) } td { (l.manufacturer) } td { (l.model) } td { (l.units) } td { (l.accepted) } td { (l.admission_per_min) } td { (l.status.as_str()) }
                    td { @if issuer {
                        @let action = if l.is_active() { "suspend" } else { "resume" };
                        form method="post" action=(format!("/ministry/licenses/{}/{action}", l.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.secondary type="submit" { "propose to " (action) }
                        }
                        form method="post" action=(format!("/ministry/licenses/{}/rate", l.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="text" name="admission_per_min" inputmode="numeric" aria-label="admissions per minute";
                            button.secondary type="submit" { "propose rate" }
                        }
                    } }
                }
            }
        }
        @if issuer {
            h2 { (both(Lang::Fa, t("پیشنهاد صدور مجوز پیش‌فروش", "Propose a presale license"))) }
            p { (both(Lang::Fa, t("مجوز پس از تأیید یک صادرکننده دیگر صادر می‌شود.", "The license is issued when another issuer approves it."))) }
            form method="post" action="/ministry/licenses" {
                input type="hidden" name="csrf" value=(csrf);
                @for (name, fa, en) in FIELDS {
                    label for=(name) { (both(Lang::Fa, t(fa, en))) }
                    input id=(name) type="text" name=(name);
                }
                button type="submit" { (both(Lang::Fa, t("پیشنهاد صدور", "Propose"))) }
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
    (
        "seed_reveal_secs",
        "مهلت افشای بذر پس از انجماد فهرست، ثانیه (پیش‌فرض ۶۰)",
        "Seconds after the freeze for the seed's reveals (default 60)",
    ),
    (
        "seed_iterations",
        "گام‌های تأخیر بذر (پیش‌فرض ۴۰۰۰۰)",
        "The seed's delay steps (default 40 000)",
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
        seed_delay: Some(crate::domain::SeedDelay {
            reveal_secs: opt("seed_reveal_secs")?
                .unwrap_or(crate::domain::SeedDelay::RECOMMENDED.reveal_secs),
            iterations: opt("seed_iterations")?
                .map_or(crate::domain::SeedDelay::RECOMMENDED.iterations, |n| {
                    n.max(0) as u64
                }),
        }),
    })
}

/// A proposal's or a decision's refusal, in both languages.
fn refused(e: ProposalError) -> Response {
    match e {
        ProposalError::License(LicenseError::Exists) => Error::conflict(t(
            "این شماره مجوز قبلاً صادر شده است.",
            "This license number has been issued already.",
        ))
        .into_response(),
        ProposalError::License(why) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            t("خطا", "Error"),
            html! { p.error role="alert" { "اطلاعات مجوز نادرست است / the license is not valid: " (why.to_string()) } },
        ),
        ProposalError::OwnProposal => Error::user(
            StatusCode::FORBIDDEN,
            t(
                "پیشنهاد خودتان را نمی‌توانید تأیید کنید: تأیید با صادرکننده دیگری است.",
                "You cannot approve your own proposal: another issuer must.",
            ),
        )
        .into_response(),
        ProposalError::NotIssuer => Error::user(
            StatusCode::FORBIDDEN,
            t("این کار در نقش شما نیست.", "Your role does not allow this."),
        )
        .into_response(),
        ProposalError::NotFound | ProposalError::NoLicense => Error::user(
            StatusCode::NOT_FOUND,
            t(
                "چنین پیشنهاد یا مجوزی در انتظار نیست.",
                "No such pending proposal or license.",
            ),
        )
        .into_response(),
        ProposalError::Expired => Error::conflict(t(
            "مهلت تأیید این پیشنهاد گذشته است؛ دوباره پیشنهاد دهید.",
            "This proposal expired unapproved; propose it again.",
        ))
        .into_response(),
        ProposalError::Unchanged => Error::conflict(t(
            "مجوز هم‌اکنون در همین وضعیت است؛ این تغییر کاری انجام نمی‌دهد.",
            "The license is already so: this change would do nothing.",
        ))
        .into_response(),
        ProposalError::Duplicate => Error::conflict(t(
            "همین تغییر برای این مجوز در انتظار تأیید است.",
            "The same change to this license is already waiting for approval.",
        ))
        .into_response(),
        ProposalError::Rate => Error::user(
            StatusCode::UNPROCESSABLE_ENTITY,
            t(
                "نرخ پذیرش باید عددی مثبت (در دقیقه) باشد.",
                "The admission rate must be a positive number per minute.",
            ),
        )
        .into_response(),
    }
}

/// Records `change` as a proposal by the signed-in issuer.
async fn propose(app: &App, jar: &CookieJar, csrf: &str, change: Change) -> Response {
    let s = match require(app, jar, Some(Role::Issuer), Some(csrf)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app
        .store
        .propose(&change, &s.username, service_kit::clock::now())
        .await
    {
        Ok(Ok(_)) => Redirect::to("/ministry").into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => {
            tracing::error!(error = %e, "proposal failed");
            Error::Busy { retry_after: 5 }.into_response()
        }
    }
}

async fn issue(State(app): State<App>, jar: CookieJar, Form(f): Form<IssueForm>) -> Response {
    let license = match parse_license(&f.fields) {
        Ok(l) => l,
        Err(why) => {
            if let Err(r) = require(&app, &jar, Some(Role::Issuer), Some(&f.csrf)).await {
                return r;
            }
            return page(
                StatusCode::BAD_REQUEST,
                t("خطا", "Error"),
                html! { p.error role="alert" { "اطلاعات مجوز نادرست است / the license is not valid: " (why) } },
            );
        }
    };
    let change = Change::Issue {
        license: Box::new(license),
    };
    propose(&app, &jar, &f.csrf, change).await
}

async fn suspend(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    propose(&app, &jar, &f.csrf, Change::Suspend { license_id: id }).await
}

async fn resume(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    propose(&app, &jar, &f.csrf, Change::Resume { license_id: id }).await
}

#[derive(Deserialize)]
struct RateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    admission_per_min: String,
}

async fn rate(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<RateForm>,
) -> Response {
    let per_min = service_kit::digits::to_latin_digits(f.admission_per_min.trim())
        .replace(',', "")
        .parse::<i64>()
        .unwrap_or(0);
    let change = Change::Rate {
        license_id: id,
        admission_per_min: per_min,
    };
    propose(&app, &jar, &f.csrf, change).await
}

async fn decide(app: App, jar: CookieJar, id: String, csrf: String, d: Decision) -> Response {
    let s = match require(&app, &jar, Some(Role::Issuer), Some(&csrf)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app
        .store
        .decide(&id, &s.username, d, service_kit::clock::now())
        .await
    {
        Ok(Ok(outcome)) => {
            if matches!(outcome, Outcome::Done { .. }) {
                // Suspension, resumption and a new rate hold from this tick on.
                crate::admitter::tick(&app).await;
            }
            Redirect::to("/ministry").into_response()
        }
        Ok(Err(e)) => refused(e),
        Err(e) => {
            tracing::error!(error = %e, "decision failed");
            Error::Busy { retry_after: 5 }.into_response()
        }
    }
}

async fn approve(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    decide(app, jar, id, f.csrf, Decision::Approve).await
}

async fn reject(
    State(app): State<App>,
    jar: CookieJar,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    decide(app, jar, id, f.csrf, Decision::Reject).await
}

async fn audit(State(app): State<App>, jar: CookieJar) -> Response {
    if let Err(r) = require(&app, &jar, None, None).await {
        return r;
    }
    let rows = app.store.audit_log().await.unwrap_or_default();
    let check = app.store.check_audit_chain().await;
    page(
        StatusCode::OK,
        t("گزارش رویدادها", "Audit log"),
        html! {
            @match &check {
                Ok(c) if c.ok() => p.chain-ok { "The hash chain holds: " (c.entries) " entries recomputed, " (c.anchors) " anchors in the campaigns' public logs match." }
                Ok(c) => div.error role="alert" {
                    p { (both(Lang::Fa, t("زنجیره گزارش رویدادها دستکاری شده است.", "The audit log's hash chain is broken."))) }
                    ul { @for f in &c.findings { li { (f) } } }
                }
                Err(_) => p.error { "The chain could not be checked now." }
            }
            p { a href="/ministry/audit.csv" { "CSV" } }
            table { @for e in &rows {
                tr {
                    td { (e.seq.map(|s| s.to_string()).unwrap_or_default()) }
                    td { (service_kit::clock::format_time(e.at)) } td { (e.actor) } td { (e.action) } td { (e.subject) } td { (e.detail) }
                    td.hash { (e.hash) }
                }
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
    let rows = app.store.audit_log().await.unwrap_or_default();
    let mut out = String::from("seq,at,actor,action,subject,detail,prev_hash,hash\n");
    for e in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.seq.map(|s| s.to_string()).unwrap_or_default(),
            e.at,
            csv_field(&e.actor),
            csv_field(&e.action),
            csv_field(&e.subject),
            csv_field(&e.detail),
            csv_field(&e.prev_hash),
            csv_field(&e.hash)
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::parse_license;

    /// What a form field may carry: a plausible value, an extreme number, Persian digits,
    /// or anything at all.
    fn value(plausible: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            // Mostly plausible, so that many forms get as far as the checks of one odd field.
            40 => proptest::sample::select(plausible).prop_map(str::to_owned),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => proptest::sample::select(vec![
                i64::MAX.to_string(),
                i64::MIN.to_string(),
                (i64::MAX / 2).to_string(),
                "-1".into(),
                "0".into(),
            ]),
            1 => "[0-9۰-۹,]{1,20}",
            1 => "\\PC{0,12}",
        ]
    }

    fn form() -> impl Strategy<Value = HashMap<String, String>> {
        let fields: Vec<(&'static str, BoxedStrategy<String>)> = vec![
            ("license_no", value(&["MIMT-1403-0001", "L-1"]).boxed()),
            ("manufacturer", value(&["saipa"]).boxed()),
            ("model", value(&["Shahin"]).boxed()),
            ("units", value(&["100", "1"]).boxed()),
            ("unit_price", value(&["8000000000"]).boxed()),
            ("down_payment", value(&["1000000000"]).boxed()),
            ("kind", value(&["firm", "regular"]).boxed()),
            ("delivery_deadline", value(&["1810000000"]).boxed()),
            ("opens_at", value(&["1800000000"]).boxed()),
            ("closes_at", value(&["1800086400"]).boxed()),
            ("selection", value(&["queue", "lottery", ""]).boxed()),
            ("admission_per_min", value(&["6000"]).boxed()),
            ("max_active", value(&["100000"]).boxed()),
            ("apply_window_secs", value(&["600"]).boxed()),
            ("min_age", value(&["18", ""]).boxed()),
            ("exclusion_months", value(&["", "12"]).boxed()),
            (
                "exclusion_manufacturers",
                value(&["saipa,iran-khodro", ""]).boxed(),
            ),
            (
                "ministry_commitment",
                value(&["47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"]).boxed(),
            ),
            (
                "manufacturer_commitment",
                value(&["ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs"]).boxed(),
            ),
        ];
        fields
            .into_iter()
            .map(|(k, v)| v.prop_map(move |v| (k.to_owned(), v)))
            .collect::<Vec<_>>()
            .prop_map(|kv| kv.into_iter().collect())
    }

    #[test]
    fn the_plausible_form_is_a_license() {
        // The plausible values alone make a license, so the property above sees many.
        let plausible: HashMap<String, String> = [
            ("license_no", "MIMT-1403-0001"),
            ("manufacturer", "saipa"),
            ("model", "Shahin"),
            ("units", "100"),
            ("unit_price", "8000000000"),
            ("down_payment", "1000000000"),
            ("kind", "regular"),
            ("delivery_deadline", "1810000000"),
            ("opens_at", "1800000000"),
            ("closes_at", "1800086400"),
            ("selection", "queue"),
            ("admission_per_min", "6000"),
            ("max_active", "100000"),
            ("apply_window_secs", "600"),
            ("min_age", "18"),
            ("exclusion_months", "12"),
            ("exclusion_manufacturers", "saipa,iran-khodro"),
            (
                "ministry_commitment",
                "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
            ),
            (
                "manufacturer_commitment",
                "ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let l = parse_license(&plausible).expect("parses");
        assert_eq!(l.validate(), Ok(()));
    }

    proptest! {
        /// Any license form is refused with a reason or accepted, never a panic, and what
        /// is accepted keeps every later computation in range: the apply window's end,
        /// the exclusion rule's look-back, the age rule, the delivery deadline.
        #[test]
        fn any_license_form_is_refused_or_sound(f in form()) {
            let Ok(l) = parse_license(&f) else { return Ok(()) };
            if l.validate().is_err() {
                return Ok(());
            }
            prop_assert!(l.closes_at.checked_add(l.apply_window_secs).is_some(), "{l:?}");
            prop_assert!(l.opens_at >= 0, "{l:?}");
            if let Some(age) = l.min_age {
                prop_assert!((0..=120).contains(&age), "{l:?}");
            }
            if let Some(ex) = &l.exclusion {
                prop_assert!((1..=120).contains(&ex.months), "{l:?}");
                prop_assert!(!ex.manufacturers.is_empty(), "{l:?}");
            }
        }
    }
}
