//! The trust badge (issue 34): a seal a storefront embeds as code served by the IdP, never
//! as an image a forger could copy and edit.
//!
//! - `GET /badge/{id}`: the badge's page, on the IdP's domain: the manufacturer, its
//!   rating, whether its trust record is in force (or suspended, or expired), until when,
//!   its licensed campaigns (read from presale's public list when `EMTA_PRESALE_URL` is
//!   set) and the storefronts registered for it. It confirms, never assumes: a visitor
//!   whose `Referer` is a registered storefront is told so; one who came from anywhere
//!   else is told the badge there was copied; one whose browser sent no `Referer` (a
//!   forger's link may strip it) is told the IdP cannot tell, and where the badge is
//!   valid.
//! - `GET /badge/{id}/badge.js`: the script a storefront embeds
//!   (`<script src="{issuer}/badge/{id}/badge.js"></script>`). It draws a link to the page
//!   with the rating and the state as the IdP says them now, and says "not this site's"
//!   when the page is not under one of the manufacturer's registered storefronts (the
//!   directories of its redirect URIs). That check runs in the visitor's browser, on the
//!   copying site's page: it catches a passive copy, not a forger who rewrites the page's
//!   script environment or draws a lookalike. What a forger cannot fake is the page it
//!   links to, on the IdP's domain, and the signed form.
//! - `GET /badge/{id}/badge.jwt`: the same facts as a compact JWS (`typ` `badge+jwt`)
//!   signed with the IdP's ES256 key of its JWKS, valid a minute (never past the trust
//!   record's own end), for a browser extension, a bank or a marketplace to check.
//!
//! All three are cached at most 30 seconds, and the IdP's client cache reloads within
//! `EMTA_RELOAD_MS`: a suspended or expired manufacturer's badge says so within a minute.
//! `idp badge scan URL…` (see [`scan`]) fetches pages and reports badges that are copied,
//! altered or stale.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::{Deserialize, Serialize};
use service_kit::t;

use crate::core::Core;
use crate::domain::client::{Client, ClientUnavailable};
use crate::http::pages::{both, layout, Lang};

/// How long a badge may be cached (seconds).
const MAX_AGE: u32 = 30;
/// How long a signed badge is valid (seconds): a suspension binds it within a minute.
const SIGNED_FOR: i64 = 60;

/// A licensed campaign, as presale lists it publicly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Campaign {
    pub license_no: String,
    pub model: String,
    pub units: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub status: String,
}

/// What a badge states, the same in all three forms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Badge {
    pub iss: String,
    /// The manufacturer's client id.
    pub sub: String,
    pub name: String,
    pub name_fa: String,
    pub stars: u8,
    /// `active`, `suspended` or `expired`.
    pub status: String,
    pub valid_until: i64,
    /// The storefront origins registered for the manufacturer (its redirect URIs').
    pub origins: Vec<String>,
    /// The storefronts themselves: the directories of its redirect URIs (a page of the
    /// manufacturer's is under one of them; another manufacturer's storefront on the same
    /// host is not).
    pub storefronts: Vec<String>,
    /// Its licensed campaigns, when presale's list could be read.
    pub campaigns: Option<Vec<Campaign>>,
    /// The badge's page.
    pub page: String,
    pub iat: i64,
    pub exp: i64,
}

/// The origins of a client's redirect URIs (its storefronts).
fn origins(c: &Client) -> Vec<String> {
    let mut out: Vec<String> = c
        .redirect_uris
        .iter()
        .filter_map(|u| url::Url::parse(u.as_str()).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The directories of a client's redirect URIs: `https://shop/saipa/callback` gives
/// `https://shop/saipa/`.
pub fn storefronts(c: &Client) -> Vec<String> {
    let mut out: Vec<String> = c
        .redirect_uris
        .iter()
        .filter_map(|u| url::Url::parse(u.as_str()).ok())
        .filter_map(|u| u.join("./").ok())
        .map(|u| u.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `page` is under one of `storefronts`.
pub fn under(page: &url::Url, storefronts: &[String]) -> bool {
    let mut p = page.clone();
    p.set_query(None);
    p.set_fragment(None);
    storefronts
        .iter()
        .any(|s| p.as_str().starts_with(s.as_str()))
}

/// A manufacturer (a client that signs citizens in) by id.
fn manufacturer(core: &Core, id: &str) -> Option<Arc<Client>> {
    core.clients.get(id).filter(|c| !c.redirect_uris.is_empty())
}

async fn badge_of(core: &Core, c: &Client, with_campaigns: bool) -> Badge {
    let now = service_kit::clock::now();
    let status = match c.availability(now) {
        Ok(()) => "active",
        Err(ClientUnavailable::Suspended) => "suspended",
        Err(ClientUnavailable::Expired) => "expired",
    };
    Badge {
        iss: core.settings.issuer.clone(),
        sub: c.id.as_str().to_owned(),
        name: c.name.clone(),
        name_fa: c.name_fa.clone(),
        stars: c.rating(),
        status: status.to_owned(),
        valid_until: c.valid_until,
        origins: origins(c),
        storefronts: storefronts(c),
        campaigns: if with_campaigns {
            core.campaigns.of(c.id.as_str()).await
        } else {
            None
        },
        page: format!("{}/badge/{}", core.settings.issuer, c.id.as_str()),
        iat: now,
        exp: (now + SIGNED_FOR).min(c.valid_until.max(now)),
    }
}

fn cached(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CACHE_CONTROL, format!("public, max-age={MAX_AGE}")),
            // Any site may load the script and the signed form; that is the point.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_owned()),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin".to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}

fn unknown() -> Response {
    (
        StatusCode::NOT_FOUND,
        crate::http::pages::error_page(
            Lang::Fa,
            t!(
                "چنین خودروسازی در سامانه ثبت نشده است: این نشان جعلی است.",
                "No such manufacturer is registered: this badge is forged."
            ),
        ),
    )
        .into_response()
}

/// `GET /badge/{id}/badge.js`.
pub async fn script(State(core): State<Core>, Path(id): Path<String>) -> Response {
    let Some(c) = manufacturer(&core, &id) else {
        return cached(
            "text/javascript; charset=utf-8",
            "/* emta: no such manufacturer: this badge is forged */".into(),
        );
    };
    // The script names no campaign: it never waits on presale.
    let b = badge_of(&core, &c, false).await;
    let facts = serde_json::json!({
        "id": b.sub, "name": b.name, "name_fa": b.name_fa, "stars": b.stars,
        "status": b.status, "storefronts": b.storefronts, "page": b.page,
    });
    cached(
        "text/javascript; charset=utf-8",
        include_str!("static/badge.js").replace("__EMTA_BADGE__", &facts.to_string()),
    )
}

/// `GET /badge/{id}/badge.jwt`.
pub async fn signed(State(core): State<Core>, Path(id): Path<String>) -> Response {
    let Some(c) = manufacturer(&core, &id) else {
        return unknown();
    };
    let b = badge_of(&core, &c, true).await;
    match core
        .keys
        .sign_typed(crate::domain::SigningAlg::ES256, Some("badge+jwt"), &b)
    {
        Ok(jws) => cached("application/jwt", jws),
        Err(e) => {
            tracing::error!(error = %e, "signing a badge");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

/// `GET /badge/{id}`: the page the badge links to.
pub async fn page(
    State(core): State<Core>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(c) = manufacturer(&core, &id) else {
        return unknown();
    };
    let b = badge_of(&core, &c, true).await;
    // Where the visitor came from, as far as the browser says: a registered storefront,
    // somewhere else, or nobody knows.
    let came_from = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok());
    let registered = came_from.as_ref().is_some_and(|u| {
        under(u, &b.storefronts)
            // The link's referrer policy is `origin`: a registered origin is as far as
            // the browser tells.
            || (u.path() == "/" && b.origins.contains(&u.origin().ascii_serialization()))
    });
    let copied = came_from
        .as_ref()
        .filter(|_| !registered)
        .map(|u| u.origin().ascii_serialization());
    let stars: String =
        "★".repeat(usize::from(b.stars)) + &"☆".repeat(5 - usize::from(b.stars.min(5)));
    let (state_fa, state_en) = match b.status.as_str() {
        "active" => ("معتبر", "in force"),
        "suspended" => ("تعلیق شده", "SUSPENDED"),
        _ => ("منقضی", "EXPIRED"),
    };
    let lang = Lang::Fa;
    let body = html! {
        @if let Some(o) = &copied {
            p.error role="alert" data-badge-copied=(o) {
                (both(lang, t!("این نشان را از سایتی دیدید که فروشگاه ثبت‌شده این خودروساز نیست: نشان آنجا کپی شده است. خرید نکنید.", "You came from a site that is not this manufacturer's registered storefront: the badge there was copied. Do not buy there.")))
                " " code lang="en" dir="ltr" { (o) }
            }
        } @else if registered {
            p.ok data-badge-from-registered {
                (both(lang, t!("از فروشگاه ثبت‌شده این خودروساز آمده‌اید.", "You came from this manufacturer's registered storefront.")))
            }
        } @else {
            p.error role="alert" data-badge-unverified {
                (both(lang, t!("نمی‌دانیم از کدام سایت آمده‌اید. این نشان تنها در فروشگاه‌های ثبت‌شده زیر معتبر است: نشانی نوار مرورگر را با آن‌ها بسنجید.", "We cannot tell which site you came from. This badge is valid only at the registered storefronts below: compare them with your browser's address bar.")))
            }
        }
        dl.badge data-emta-badge=(b.sub) data-status=(b.status) data-stars=(b.stars) {
            dt { "خودروساز / manufacturer" } dd { (b.name_fa) " / " (b.name) }
            dt { "رتبه / rating" } dd { span.stars aria-label=(format!("{} / 5", b.stars)) { (stars) } }
            dt { "وضعیت / standing" } dd data-standing=(b.status) { strong { (state_fa) " / " (state_en) } }
            dt { "اعتبار تا / valid until" } dd { (service_kit::clock::format_time(b.valid_until)) }
            dt { "فروشگاه‌های ثبت‌شده / registered storefronts" }
            dd { ul { @for o in &b.storefronts { li { code lang="en" dir="ltr" data-storefront=(o) { (o) } } } } }
            dt { "مجوزهای پیش‌فروش / licensed presales" }
            dd { @match &b.campaigns {
                Some(cs) if cs.is_empty() => { "—" }
                Some(cs) => { ul { @for k in cs { li data-license=(k.license_no) {
                    (k.model) " — " code lang="en" dir="ltr" { (k.license_no) } " — " (k.units) " — "
                    (service_kit::clock::format_time(k.opens_at)) " … " (service_kit::clock::format_time(k.closes_at))
                    @if k.status != "active" { " (" (k.status) ")" }
                } } } }
                None => { (both(lang, t!("فهرست مجوزها اکنون خوانده نشد.", "The list of licenses could not be read now."))) }
            } }
        }
        p { (both(lang, t!("این صفحه و نشان را سامانه امتا می‌سازد؛ نسخه امضاشده:", "This page and the badge are served by emta; the signed form:"))) " "
            a href=(format!("/badge/{}/badge.jwt", b.sub)) lang="en" dir="ltr" { "badge.jwt" } }
    };
    let mut r = layout(lang, t!("نشان اعتماد امتا", "emta trust badge"), body).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("public, max-age={MAX_AGE}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    // The page reads the Referer: caches keep one copy per referring page.
    r.headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("Referer"));
    r
}

/// A manufacturer's campaigns as last read (None: not readable then), and when.
type Kept = (Option<Vec<Campaign>>, i64);

/// Presale's public list of licensed campaigns, per manufacturer, kept 30 seconds.
pub struct Campaigns {
    url: Option<String>,
    http: reqwest::Client,
    cache: std::sync::Mutex<std::collections::HashMap<String, Kept>>,
}

#[derive(Deserialize)]
struct CampaignList {
    campaigns: Vec<Campaign>,
}

impl Campaigns {
    pub fn new(presale_url: Option<&str>) -> Self {
        Self {
            url: presale_url
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            http: service_kit::upstream::http_client(std::time::Duration::from_secs(2)),
            cache: Default::default(),
        }
    }

    /// The manufacturer's campaigns, or None when presale is not configured or did not
    /// answer.
    pub async fn of(&self, manufacturer: &str) -> Option<Vec<Campaign>> {
        let base = self.url.as_ref()?;
        let now = service_kit::clock::now();
        if let Some((list, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(manufacturer)
        {
            if now - at < i64::from(MAX_AGE) {
                return list.clone();
            }
        }
        let read = async {
            self.http
                .get(format!("{base}/transparency/campaigns.json"))
                .query(&[("manufacturer", manufacturer)])
                .send()
                .await?
                .error_for_status()?
                .json::<CampaignList>()
                .await
        };
        let list = match read.await {
            Ok(l) => Some(l.campaigns),
            Err(e) => {
                tracing::warn!(error = %e, "presale's campaign list, for a badge");
                None
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(manufacturer.to_owned(), (list.clone(), now));
        list
    }
}
