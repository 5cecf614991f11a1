//! Server-rendered pages: Persian right-to-left by default, English when the client asks
//! (`ui_locales=en`), every message in both languages. Plain HTML forms that work without
//! JavaScript, except the proof-of-work, which needs it. maud escapes every value.

use axum::response::Html;
use maud::{html, Markup};
use service_kit::t;

/// A rendered page.
pub type Page = Html<String>;

use crate::domain::digits::to_persian_digits;
use service_kit::Text;

pub use service_kit::page::{both, Lang};

/// What the IdP's pages say under the emta name.
const TAGLINE: Text = t!("احراز هویت یکپارچه مشتریان", "national sign-in for buyers");

fn one(lang: Lang, t: Text) -> &'static str {
    lang.one(t)
}

pub fn layout(lang: Lang, title: Text, body: Markup) -> Page {
    service_kit::page::layout(lang, TAGLINE, title, body)
}

fn error_box(lang: Lang, error: Option<Text>) -> Markup {
    html! { @if let Some(e) = error { p.error role="alert" { (both(lang, e)) } } }
}

fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

pub fn error_page(lang: Lang, text: Text) -> Page {
    service_kit::page::error_page(lang, TAGLINE, text)
}

pub fn message_page(lang: Lang, title: Text, text: Text) -> Page {
    layout(lang, title, html! { p { (both(lang, text)) } })
}

pub struct ClientView<'a> {
    pub name: &'a str,
    pub name_fa: &'a str,
    pub stars: u8,
}

fn client_name(lang: Lang, c: &ClientView<'_>) -> Markup {
    let stars: String =
        "★".repeat(usize::from(c.stars)) + &"☆".repeat(5 - usize::from(c.stars.min(5)));
    html! {
        p.client {
            strong { (if lang == Lang::Fa { c.name_fa } else { c.name }) }
            " "
            span.stars title=(format!("{} / 5", c.stars)) aria-label=(format!("{} / 5", c.stars)) { (stars) }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn phone_page(
    lang: Lang,
    tx: &str,
    csrf_token: &str,
    challenge: &str,
    login_hint: Option<&str>,
    client: Option<&ClientView<'_>>,
    error: Option<Text>,
) -> Page {
    layout(
        lang,
        t!("ورود با شماره همراه", "Sign in with your mobile number"),
        html! {
            @if let Some(c) = client {
                p { (both(lang, t!("برای ورود به این سامانه فروش:", "To sign in to this sales site:"))) }
                (client_name(lang, c))
            }
            (error_box(lang, error))
            form method="post" action=(format!("/login/{tx}/phone")) data-pow="1" {
                (csrf(csrf_token))
                input type="hidden" name="pow_challenge" value=(challenge);
                input type="hidden" name="pow_nonce" value="";
                label for="mobile" { (both(lang, t!("شماره همراه", "Mobile number"))) }
                input #mobile type="tel" name="mobile" inputmode="numeric" autocomplete="tel"
                    required placeholder="09121234567" value=(login_hint.unwrap_or(""));
                p.pow-status aria-live="polite" {
                    (both(lang, t!("در حال بررسی ضد ربات…", "Running the anti-bot check…")))
                }
                noscript { p.error { (both(lang, t!("برای بررسی ضد ربات، جاوااسکریپت لازم است.", "The anti-bot check needs JavaScript."))) } }
                button type="submit" disabled { (both(lang, t!("دریافت کد تأیید", "Send me a code"))) }
            }
            script src="/static/pow.js" {}
        },
    )
}

pub fn otp_page(
    lang: Lang,
    tx: &str,
    csrf_token: &str,
    masked_phone: &str,
    error: Option<Text>,
) -> Page {
    let phone = if lang == Lang::Fa {
        to_persian_digits(masked_phone)
    } else {
        masked_phone.to_owned()
    };
    layout(
        lang,
        t!("کد تأیید پیامکی", "Code from the text message"),
        html! {
            p { (both(lang, t!("کد شش‌رقمی پیامک‌شده به این شماره را وارد کنید:", "Enter the six-digit code sent to:"))) " " bdi { (phone) } }
            (error_box(lang, error))
            form method="post" action=(format!("/login/{tx}/otp")) {
                (csrf(csrf_token))
                label for="code" { (both(lang, t!("کد تأیید", "Verification code"))) }
                input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code"
                    required maxlength="12" pattern="[0-9۰-۹]{6}";
                button type="submit" { (both(lang, t!("تأیید", "Verify"))) }
            }
            form method="post" action=(format!("/login/{tx}/resend")) {
                (csrf(csrf_token))
                button.secondary type="submit" { (both(lang, t!("ارسال دوباره کد (پس از یک دقیقه)", "Send the code again (after a minute)"))) }
            }
        },
    )
}

pub fn identity_page(lang: Lang, tx: &str, csrf_token: &str, error: Option<Text>) -> Page {
    layout(
        lang,
        t!("احراز هویت", "Confirm who you are"),
        html! {
            p { (both(lang, t!("این اطلاعات با ثبت احوال و مالکیت شماره همراه شما سنجیده می‌شود.", "These details are checked against the civil registry and the owner of your mobile number."))) }
            (error_box(lang, error))
            form method="post" action=(format!("/login/{tx}/identity")) {
                (csrf(csrf_token))
                label for="national_id" { (both(lang, t!("کد ملی", "National ID"))) }
                input #national_id type="text" name="national_id" inputmode="numeric" required maxlength="14";
                label for="birth_date" { (both(lang, t!("تاریخ تولد (شمسی: سال/ماه/روز)", "Birth date (Jalali: year/month/day)"))) }
                input #birth_date type="text" name="birth_date" inputmode="numeric" required
                    placeholder="1370/05/12" maxlength="16";
                button type="submit" { (both(lang, t!("ادامه", "Continue"))) }
            }
        },
    )
}

pub fn consent_page(
    lang: Lang,
    tx: &str,
    csrf_token: &str,
    client: &ClientView<'_>,
    claims: &[Text],
) -> Page {
    layout(
        lang,
        t!("اعطای مجوز ورود یکپارچه", "Grant single sign-on"),
        html! {
            (client_name(lang, client))
            p { (both(lang, t!(
                "این سامانه فروش می‌خواهد با حساب امتای شما وارد شود و این اطلاعات تأییدشده را دریافت کند:",
                "This sales site wants to sign you in with emta and receive these verified details:"
            ))) }
            ul.claims { @for c in claims { li { (both(lang, *c)) } } }
            p.small { (both(lang, t!(
                "ستاره‌ها درجه اعتماد وزارت صمت به این فروشنده است. هر زمان می‌توانید این مجوز را در «حساب من» لغو کنید.",
                "The stars are the ministry's trust rating of this seller. You can withdraw this permission at any time under “My account”."
            ))) }
            form method="post" action=(format!("/login/{tx}/consent")) {
                (csrf(csrf_token))
                button type="submit" name="decision" value="approve" { (both(lang, t!("اجازه می‌دهم", "Allow"))) }
                button.secondary type="submit" name="decision" value="deny" { (both(lang, t!("اجازه نمی‌دهم", "Deny"))) }
            }
        },
    )
}

pub struct ConsentItem {
    pub client_id: String,
    pub name: String,
    pub name_fa: String,
    pub stars: u8,
    pub claims: Vec<Text>,
}

/// The account page's two kinds of form, each with the CSRF token of its own purpose.
pub struct AccountForms<'a> {
    pub revoke_csrf: &'a str,
    pub logout_csrf: &'a str,
}

pub fn account_page(
    lang: Lang,
    forms: AccountForms<'_>,
    name: &str,
    consents: &[ConsentItem],
    sign_ins: &[(String, String)],
) -> Page {
    layout(
        lang,
        t!("حساب من", "My account"),
        html! {
            p { (name) }
            h2 { (both(lang, t!("سامانه‌هایی که به آن‌ها مجوز داده‌اید", "Sales sites you have allowed"))) }
            @if consents.is_empty() { p { (both(lang, t!("هیچ.", "None."))) } }
            ul.consents {
                @for c in consents {
                    li {
                        (client_name(lang, &ClientView { name: &c.name, name_fa: &c.name_fa, stars: c.stars }))
                        ul.claims { @for t in &c.claims { li { (one(lang, *t)) } } }
                        form method="post" action="/account/revoke" {
                            (csrf(forms.revoke_csrf))
                            input type="hidden" name="client_id" value=(c.client_id);
                            button.secondary type="submit" { (both(lang, t!("لغو مجوز", "Withdraw permission"))) }
                        }
                    }
                }
            }
            h2 { (both(lang, t!("ورودهای اخیر", "Recent sign-ins"))) }
            ul.sign-ins { @for (client, at) in sign_ins { li { bdi { (client) } " — " bdi { (at) } } } }
            form method="post" action="/logout" {
                (csrf(forms.logout_csrf))
                button.secondary type="submit" { (both(lang, t!("خروج", "Sign out"))) }
            }
        },
    )
}

pub fn logout_confirm_page(lang: Lang, csrf_token: &str, hidden: &[(&str, String)]) -> Page {
    layout(
        lang,
        t!("خروج از امتا", "Sign out of emta"),
        html! {
            p { (both(lang, t!("آیا می‌خواهید از امتا خارج شوید؟", "Do you want to sign out of emta?"))) }
            form method="post" action="/logout" {
                (csrf(csrf_token))
                @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
                button type="submit" { (both(lang, t!("خروج", "Sign out"))) }
            }
        },
    )
}

pub use service_kit::page::APP_CSS;
pub const POW_JS: &str = include_str!("static/pow.js");

pub use service_kit::page::raw;
