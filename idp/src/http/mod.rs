//! HTTP: routes, forms, cookies, headers and page rendering. Handlers parse input into
//! domain types, call a flow on [`Core`], and render; they never build SQL.

pub mod api;
pub mod badge;
pub mod login;
pub mod oauth;
pub mod ops;
pub mod pages;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;

use crate::core::Core;
use crate::crypto::random_token;

pub fn router(core: Core) -> Router {
    let g = &core.gates;
    let gated = |gate: &service_kit::admission::Gate, r: Router<Core>| gate.around(r);
    let r = Router::new()
        .route("/.well-known/openid-configuration", get(oauth::discovery))
        .route("/jwks", get(oauth::jwks))
        .merge(gated(
            &g.start,
            Router::new()
                .route(
                    "/authorize",
                    get(login::authorize_get).post(login::authorize_post),
                )
                .route("/account", get(login::account)),
        ))
        .merge(gated(
            &g.phone,
            Router::new()
                .route("/login/{tx}/phone", post(login::post_phone))
                .route("/login/{tx}/resend", post(login::post_resend)),
        ))
        .merge(gated(
            &g.otp,
            Router::new().route("/login/{tx}/otp", post(login::post_otp)),
        ))
        .merge(gated(
            &g.identity,
            Router::new().route("/login/{tx}/identity", post(login::post_identity)),
        ))
        .merge(gated(
            &g.finish,
            Router::new()
                .route("/login/{tx}", get(login::show_step))
                .route("/login/{tx}/consent", post(login::post_consent))
                .route("/account/revoke", post(login::account_revoke))
                .route("/logout", get(login::logout_get).post(login::logout_post)),
        ))
        .merge(gated(
            &g.backend,
            Router::new()
                .route("/token", post(oauth::token))
                .route("/par", post(oauth::par))
                .route("/revoke", post(oauth::revoke))
                .route("/introspect", post(oauth::introspect))
                .route("/api/manufacturers", get(api::manufacturers))
                .route(
                    "/api/manufacturers/{id}/standing",
                    post(api::standing).layer(axum::extract::DefaultBodyLimit::max(2048)),
                )
                .route(
                    "/userinfo",
                    get(oauth::userinfo_get).post(oauth::userinfo_post),
                ),
        ))
        // The trust badge (issue 34). Its page reads presale's campaign list: behind the
        // start gate like the other pages anyone may load. The script (loaded with every
        // storefront view at an opening) and the signed form are made from memory, cached
        // by browsers, and never wait on anything: ungated, as `/jwks` is, so they never
        // take a sign-in's place.
        .merge(gated(
            &g.start,
            Router::new().route("/badge/{id}", get(badge::page)),
        ))
        .route("/badge/{id}/badge.js", get(badge::script))
        .route("/badge/{id}/badge.jwt", get(badge::signed))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/static/app.css", get(ops::css))
        .route("/static/pow.js", get(ops::js));
    let secure = core.settings.secure_cookies();
    security_headers(r.fallback(ops::not_found), secure)
        // Outside every admission gate: a body trickled a byte at a time holds no permit.
        .layer(axum::middleware::from_fn(service_kit::body::read_first))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                // The path only: query strings carry codes and tokens.
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(core)
}

/// The operators' listener: `/metrics` only, never on the public router.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(ops::metrics))
}

/// Strict headers on every response (RFC 9700 §4.16, OWASP): no framing, no sniffing, no
/// referrer leaking codes, no caching of anything that did not say otherwise (pages carry
/// personal data; discovery, JWKS and static assets set their own Cache-Control). Static
/// header layers, not a middleware function: this runs on every request of a surge.
fn security_headers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    secure: bool,
) -> Router<S> {
    use tower_http::set_header::SetResponseHeaderLayer as Set;
    let mut r = router
        .layer(Set::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ))
        .layer(Set::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(Set::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(Set::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(Set::overriding(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(Set::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if secure {
        r = r.layer(Set::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    r
}

/// Cookie names: `__Host-` prefixed (Secure, Path=/, no Domain) when served over https.
pub(crate) struct CookieNames {
    pub browser: &'static str,
    pub session: &'static str,
    pub known_device: &'static str,
    /// A login not stored yet: its request, MACed, until the phone step's proof of work.
    pub pending: &'static str,
}

pub(crate) fn cookie_names(core: &Core) -> CookieNames {
    if core.settings.secure_cookies() {
        CookieNames {
            browser: "__Host-emta_b",
            session: "__Host-emta_sso",
            known_device: "__Host-emta_known",
            // Scoped to one login's path, so `__Secure-` (`__Host-` needs the root).
            pending: "__Secure-emta_login",
        }
    } else {
        CookieNames {
            browser: "emta_b",
            session: "emta_sso",
            known_device: "emta_known",
            pending: "emta_login",
        }
    }
}

/// Lax, not Strict: the authorize request is a top-level navigation from a manufacturer's
/// site, and the SSO cookie must come along for single sign-on to work.
pub(crate) fn make_cookie(
    core: &Core,
    name: &'static str,
    value: String,
    max_age: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(core.settings.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(time_duration(max_age))
        .build()
}

fn time_duration(secs: i64) -> time::Duration {
    time::Duration::seconds(secs)
}

/// The browser id cookie, set when missing. Login transactions are bound to it.
pub(crate) fn ensure_browser(core: &Core, jar: CookieJar) -> (CookieJar, String) {
    let name = cookie_names(core).browser;
    if let Some(c) = jar.get(name).filter(|c| c.value().len() <= 64) {
        let v = c.value().to_owned();
        return (jar, v);
    }
    let v = random_token(18);
    let jar = jar.add(make_cookie(core, name, v.clone(), 365 * 24 * 3600));
    (jar, v)
}

pub(crate) fn browser_of(core: &Core, jar: &CookieJar) -> Option<String> {
    jar.get(cookie_names(core).browser)
        .map(|c| c.value().to_owned())
}

pub(crate) fn session_cookie(core: &Core, jar: &CookieJar) -> Option<String> {
    jar.get(cookie_names(core).session)
        .map(|c| c.value().to_owned())
}

/// The client's address as per-address limits key it: the socket peer, or the ingress's
/// entry in X-Forwarded-For when configured to trust it (the rightmost entry is the one our
/// own ingress appended; the ones before it are whatever the client sent), with IPv6 cut
/// to the subscriber's prefix (`ipv6_prefix`).
pub struct ClientIp(pub String);

impl FromRequestParts<Core> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Self, Self::Rejection> {
        if core.settings.trust_forwarded_for {
            if let Some(ip) = service_kit::net::forwarded_for(&parts.headers) {
                return Ok(Self(subject(core, &ip)));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self(subject(core, &peer)))
    }
}

fn subject(core: &Core, ip: &str) -> String {
    service_kit::net::limit_subject(ip, core.settings.ipv6_prefix)
}
