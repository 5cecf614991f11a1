//! Presale's pages in the shared bilingual shell.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use service_kit::page::{both, layout};
use service_kit::{t, Lang, Text};

/// What presale's pages say under the emta name.
const TAGLINE: Text = t!("پیش‌فروش خودرو", "car presales");

pub(crate) fn page(status: StatusCode, title: Text, body: Markup) -> Response {
    (status, layout(Lang::Fa, TAGLINE, title, body)).into_response()
}

/// A ministry console page: the wide shell.
pub(crate) fn console_page(status: StatusCode, title: Text, body: Markup) -> Response {
    (
        status,
        service_kit::page::layout_wide(Lang::Fa, TAGLINE, title, body),
    )
        .into_response()
}

/// An error page with one alert.
pub(crate) fn problem(status: StatusCode, text: Text) -> Response {
    page(
        status,
        crate::error::ERROR_TITLE,
        html! { p.error role="alert" { (both(Lang::Fa, text)) } },
    )
}

/// [`problem`], with the figures that decided it.
pub(crate) fn problem_with(status: StatusCode, text: Text, figures: &str) -> Response {
    page(
        status,
        crate::error::ERROR_TITLE,
        html! {
            p.error role="alert" { (both(Lang::Fa, text)) }
            p.figures data-figures { (figures) }
        },
    )
}

/// Rials with thousands separators.
pub(crate) fn money(rials: i64) -> String {
    let s = rials.unsigned_abs().to_string();
    let mut out = String::from(if rials < 0 { "-" } else { "" });
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text in Persian with English beneath, for page bodies.
pub(crate) fn fa(t: Text) -> Markup {
    both(Lang::Fa, t)
}
