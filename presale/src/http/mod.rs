//! The presale HTTP layer: routes, forms, pages. Each feature owns its routes and merges
//! them here; handlers parse, call the domain and the stores, and render. They never build
//! SQL or Redis commands.
//!
//! - [`storefront`]: the manufacturers' storefronts and the citizen's applications.
//! - [`signin`]: signing citizens in through the IdP (the relying party's two routes).
//! - [`waiting`]: joining the queue, the waiting room and its status JSON.
//! - [`apply`]: applying once admitted (or drawn).
//! - [`holds`]: the down payment's hold at a participating bank, out and back.
//! - [`lottery`]: the public list and draw of a lottery campaign.
//! - [`console`]: the ministry console.
//! - [`transparency`]: each campaign's public log, proofs, reveals, receipts.
//! - [`metrics`]: `/metrics` for operators, on the private listener only.
//! - [`session`], [`pages`]: the storefront session and CSRF, the page shell.
//!
//! Status polls are answered from the replica's cache of the queue's committed state, so a
//! million people refreshing the waiting page touch no store; only joins and applications
//! do.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer as Set;

use service_kit::admission::{Admission, Gate};

use crate::app::Core;
use crate::error::{msg, Error};

pub(crate) mod addresses;
pub mod api;
pub mod apply;
pub mod complaints;
pub mod console;
pub mod holds;
pub mod lottery;
pub mod metrics;
pub mod pages;
pub mod session;
pub mod signin;
pub mod storefront;
pub mod transparency;
pub mod waiting;

/// Requests a replica takes at once before it sheds load.
const MAX_IN_FLIGHT: usize = 4096;

/// Admission control per step of a citizen's journey (`service_kit::admission`): new work
/// is refused first, so under overload the journeys under way keep the database. A
/// storefront page or a started sign-in is refused once half the budget is in use, a join
/// at three quarters, a finished sign-in (the IdP's work already done) and the storefront
/// pages of a citizen signed in (where a sign-in lands: refusing them there would waste
/// it) at nine tenths; an application, the step that completes a journey, waits its
/// queue budget for room. An adaptive budget (`EMTA_ADMISSION_ADAPTIVE`, off by default) lowered by the
/// latency measured is taken from each share alike, so new work loses its room first;
/// none keeps less than half its share of the budget now.
/// Status polls (answered from the replica's cache), the console, the back-channel
/// logout and transparency reveals are not gated.
pub(crate) struct Gates {
    pub(crate) browse: Gate,
    pub(crate) sign_in: Gate,
    pub(crate) signed_in: Gate,
    pub(crate) join: Gate,
    pub(crate) apply: Gate,
}

impl Gates {
    pub(crate) fn new(s: &crate::config::Settings) -> Self {
        let budget = Duration::from_millis(s.queue_budget_ms);
        let a = if s.admission_adaptive {
            Admission::adaptive(s.max_inflight, budget)
        } else {
            Admission::new(s.max_inflight, budget)
        };
        let gate = |name, share| Gate {
            class: a.class(name, share),
            refuse: busy,
        };
        Self {
            browse: gate("browse", 0.5),
            join: gate("join", 0.75),
            sign_in: gate("sign_in", 0.9),
            signed_in: gate("signed_in", 0.9),
            apply: gate("apply", 1.0),
        }
    }
}

/// A refused step: the busy page, in both languages, with Retry-After.
fn busy(retry_after: u64) -> Response {
    Error::Busy { retry_after }.into_response()
}

pub(crate) fn router(core: Core) -> Router {
    let g = &core.gates;
    // Scripts from this service and, for the trust badge the storefronts embed (issue
    // 34), from the IdP's badge path; nothing else.
    let badges = format!("{}/badge/", core.issuer);
    let csp = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self' {badges}; connect-src 'self'; style-src 'self'; \
         img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
        )
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/static/wait.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("static/wait.js"),
                )
            }),
        )
        .route(
            "/static/dashboard.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    include_str!("static/dashboard.js"),
                )
            }),
        )
        .route(
            "/static/app.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    service_kit::page::APP_CSS,
                )
            }),
        )
        .merge(storefront::router(&core))
        .merge(signin::router(g))
        .merge(waiting::router(g))
        .merge(apply::router(g))
        .merge(holds::router(g))
        .merge(lottery::router(g))
        .merge(console::router())
        .merge(api::router())
        .merge(transparency::router(g))
        .fallback(|| async { Error::not_found(msg::NOT_FOUND) })
        // Load shedding counts a request only once its body is in; the body is read after
        // the per-address guard and before every admission gate: a body trickled a byte
        // at a time holds no permit and no place in the replica's in-flight count.
        .layer(axum::middleware::from_fn_with_state(core.clone(), shed))
        .layer(axum::middleware::from_fn(service_kit::body::read_first))
        .layer(axum::middleware::from_fn_with_state(core.clone(), guard))
        .layer(Set::overriding(header::CONTENT_SECURITY_POLICY, csp))
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
        .layer(Set::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(core)
}

/// Ready while not stopping and the database and the session store can be reached: the
/// database holds every durable record, the queue's included, and sessions carry every
/// signed-in step. Busy is ready ([`service_kit::ready`]): a replica whose pools are all
/// in use still answers, shedding with 503 and Retry-After what it cannot take, and
/// taking it out of the Service would only send its load to the others.
async fn readyz(State(core): State<Core>) -> Response {
    use service_kit::ready::{answer, probe, PROBE_WITHIN};
    if !core.ready.load(Ordering::Relaxed) {
        return answer(true, &[]).into_response();
    }
    let probed = core.clone();
    core.readiness
        .get_or(async move {
            let core = probed;
            let (sessions, sql) = tokio::join!(
                probe(
                    core.sessions.ping(),
                    || core.sessions.saturated(),
                    core.sessions.ping_direct(),
                    PROBE_WITHIN
                ),
                probe(
                    core.store.ping(),
                    || core.store.saturated(),
                    core.store.ping_direct(),
                    PROBE_WITHIN
                ),
            );
            answer(false, &[("session store", sessions), ("database", sql)])
        })
        .await
        .into_response()
}

/// The client's address as the guard saw it (the peer, or the ingress's
/// X-Forwarded-For when trusted), for handlers that limit per client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub std::net::IpAddr);

impl ClientIp {
    /// The subject a per-client limit keys: the address, or its /64 for IPv6 (one
    /// subscriber's allocation, which it can rotate through freely).
    pub(crate) fn subject(self) -> String {
        service_kit::net::limit_subject(&self.0.to_string(), 64)
    }
}

/// Per-IP limit (governor, per replica) and load shedding. Shedding answers 503 with
/// Retry-After before any work starts, and never for an application in progress: an
/// application that got this far is worth finishing.
/// The first segments of the paths that are the service's own, not a storefront's.
const SERVICE_PATHS: &[&str] = &[
    "",
    "healthz",
    "readyz",
    "static",
    "ministry",
    "api",
    "transparency",
    "metrics",
];

/// The storefront a path is under, as the router's `{m}` would read it (raw: storefront
/// ids are plain letters, digits and dashes).
fn storefront_segment(path: &str) -> Option<&str> {
    let first = path.strip_prefix('/')?.split('/').next()?;
    (!SERVICE_PATHS.contains(&first)).then_some(first)
}

/// Set by [`guard`] on an application in progress, for [`shed`] to read.
#[derive(Clone, Copy)]
struct Applying;

/// An application in progress: a POST to the apply route from a browser whose sign-in
/// finished (its keyed mark, checked without a store).
fn applying(core: &Core, req: &axum::extract::Request) -> bool {
    req.method() == axum::http::Method::POST
        && is_apply_route(req.uri().path())
        && core.signed_in_here(&axum_extra::extract::CookieJar::from_headers(req.headers()))
}

/// `/{m}/c/{id}/apply`, the one route an application is made on.
fn is_apply_route(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["", m, "c", id, "apply"] if !m.is_empty() && !id.is_empty())
}

async fn guard(
    State(core): State<Core>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // An application in progress is worth finishing, so it passes the per-address limit
    // and the shedding below: only a POST to an application's own route from a browser
    // whose sign-in finished (a keyed mark, checked without a store), not any path that
    // ends in `/apply`.
    let applying = applying(&core, &req);
    if applying {
        req.extensions_mut().insert(Applying);
    }
    let ip = core
        .trust_forwarded_for
        .then(|| service_kit::net::forwarded_for(req.headers()))
        .flatten()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .unwrap_or(peer.ip());
    req.extensions_mut().insert(ClientIp(ip));
    // A path under a storefront (`/{m}/…`) names one that exists: the segment goes into
    // redirects and links, and an unknown one (`/%2Fevil.example/…`) must not.
    if let Some(m) = storefront_segment(req.uri().path()) {
        if core.rp.storefront(m).is_none() {
            return Error::not_found(msg::NO_STOREFRONT).into_response();
        }
    }
    if !applying && !core.addresses.check(ip) {
        return Error::RateLimited { retry_after: 1 }.into_response();
    }
    next.run(req).await
}

/// Load shedding: past `MAX_IN_FLIGHT` requests in this replica, 503 with Retry-After
/// before any work starts, except for an application in progress (see [`guard`]).
async fn shed(
    State(core): State<Core>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The probes are answered however many requests are in flight: a busy replica is
    // alive and ready (`readyz`).
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let applying = req.extensions().get::<Applying>().is_some();
    counted(&core.in_flight, applying, next.run(req)).await
}

/// Runs `request` counted in `in_flight`, or answers 503 past [`MAX_IN_FLIGHT`] (unless
/// `applying`). Counted out when the request ends however it ends: a client that hangs
/// up drops this future mid-request, and a count taken back only after the request
/// returned would creep up with every hang-up until the replica refused everyone.
async fn counted(
    in_flight: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    applying: bool,
    request: impl std::future::Future<Output = Response>,
) -> Response {
    let load = in_flight.fetch_add(1, Ordering::Relaxed);
    let _counted = InFlight(in_flight.clone());
    if load >= MAX_IN_FLIGHT && !applying {
        return Error::Busy { retry_after: 5 }.into_response();
    }
    request.await
}

/// One request in [`shed`]'s count, taken back on drop.
struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::response::{IntoResponse, Response};

    /// Requests whose clients hung up (the future dropped mid-request) leave the count
    /// where it was: otherwise each hang-up would take one of the replica's places for
    /// good, and enough of them would shed every request.
    #[tokio::test]
    async fn a_request_dropped_mid_flight_is_counted_out() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let never = std::future::pending::<Response>();
            let r = tokio::time::timeout(
                Duration::from_millis(1),
                super::counted(&in_flight, false, never),
            )
            .await;
            assert!(r.is_err(), "the request never ends; its client gives up");
        }
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
        let answered = super::counted(&in_flight, false, async { "ok".into_response() }).await;
        assert_eq!(answered.status(), 200);
        assert_eq!(in_flight.load(Ordering::Relaxed), 0);
    }
}
