//! The bilingual page shell both services render into: Persian right-to-left by default,
//! English when asked, every message in both languages ([`Text`]). Plain HTML that works
//! without JavaScript; maud escapes every value.

use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// A rendered page.
pub type Page = Html<String>;

/// A message in both languages. Pages show the primary language first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub fa: &'static str,
    pub en: &'static str,
}

/// A [`Text`] from two literals: `t!("خطا", "Error")`.
#[macro_export]
macro_rules! t {
    ($fa:expr, $en:expr $(,)?) => {
        $crate::page::Text { fa: $fa, en: $en }
    };
}

/// The stylesheet every page links as `/static/app.css`.
pub const APP_CSS: &str = include_str!("static/app.css");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fa,
    En,
}

impl Lang {
    pub fn from_english(english: bool) -> Self {
        if english {
            Self::En
        } else {
            Self::Fa
        }
    }

    /// The text in this language, then the other one.
    pub fn pick(self, t: Text) -> (&'static str, &'static str) {
        match self {
            Self::Fa => (t.fa, t.en),
            Self::En => (t.en, t.fa),
        }
    }

    /// The text in this language only (titles, button labels).
    pub fn one(self, t: Text) -> &'static str {
        self.pick(t).0
    }
}

/// A text in the page's language with the other language beneath, smaller.
pub fn both(lang: Lang, t: Text) -> Markup {
    let (main, other) = lang.pick(t);
    let (other_lang, other_dir) = match lang {
        Lang::Fa => ("en", "ltr"),
        Lang::En => ("fa", "rtl"),
    };
    html! { span { (main) } small.other lang=(other_lang) dir=(other_dir) { (other) } }
}

/// The whole page: head, the emta header with the service's `tagline`, the title in both
/// languages, `body`, and the ministry footer.
pub fn layout(lang: Lang, tagline: Text, title: Text, body: Markup) -> Page {
    shell(lang, tagline, title, body, false)
}

/// [`layout`] for work pages with tables and side-by-side panels (the ministry console):
/// the main card takes the width of the screen up to a desk's, and still fits a phone.
pub fn layout_wide(lang: Lang, tagline: Text, title: Text, body: Markup) -> Page {
    shell(lang, tagline, title, body, true)
}

fn shell(lang: Lang, tagline: Text, title: Text, body: Markup, wide: bool) -> Page {
    let (code, dir) = match lang {
        Lang::Fa => ("fa", "rtl"),
        Lang::En => ("en", "ltr"),
    };
    let brand = t!("امتا", "emta");
    Html(
        html! {
            (DOCTYPE)
            html lang=(code) dir=(dir) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (lang.one(title)) " | " (lang.one(brand)) }
                    link rel="stylesheet" href="/static/app.css";
                }
                body {
                    header {
                        strong { (lang.one(brand)) }
                        " · "
                        (lang.one(tagline))
                    }
                    main.wide[wide] { h1 { (both(lang, title)) } (body) }
                    footer { (lang.one(t!("وزارت صنعت، معدن و تجارت", "Ministry of Industry, Mine and Trade"))) }
                }
            }
        }
        .into_string(),
    )
}

/// A page whose body is one alert with `text`.
pub fn error_page(lang: Lang, tagline: Text, text: Text) -> Page {
    layout(
        lang,
        tagline,
        t!("خطا", "Error"),
        html! { p.error role="alert" { (both(lang, text)) } },
    )
}

/// For pages that need raw markup from a trusted constant.
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_right_to_left_in_persian_and_escapes_values() {
        let page = layout(
            Lang::Fa,
            t!("آزمون", "test"),
            t!("عنوان", "Title"),
            html! { p { "<script>" } },
        );
        assert!(page.0.contains(r#"<html lang="fa" dir="rtl">"#));
        assert!(page.0.contains("&lt;script&gt;"));
        assert!(page.0.contains("Title"));
    }
}
