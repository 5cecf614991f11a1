//! Bad input at scale: every page and JSON endpoint of both services sent malformed forms,
//! oversized fields, wrong content types, broken and foreign cookies, replayed CSRF tokens,
//! odd methods, paths and query strings, mixed with values real enough to get past the
//! first checks (a live login, a signed-in citizen's cookies, the campaign's id).
//!
//! Each answer must be a 2xx-4xx, or a planned 503 with Retry-After: never another 5xx,
//! and never a dropped connection (what a handler that panics leaves). Both services must
//! be ready afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use url::Url;

/// Real values the requests start from.
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    pub idp: Option<Url>,
    pub presale: Option<Url>,
    /// Login transactions still open at the IdP.
    pub logins: Vec<String>,
    pub campaigns: Vec<String>,
    pub manufacturers: Vec<String>,
    /// CSRF tokens from real pages (replayed across sessions and forms).
    pub csrf: Vec<String>,
    /// A signed-in citizen's cookies at each service.
    pub cookies: Vec<(String, String)>,
    /// Anything else a field might plausibly carry (mobile numbers, national IDs, dates,
    /// client ids, redirect URIs).
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Idp,
    Presale,
}

/// A route of either service: method, path (`{tx}`, `{m}`, `{id}` are filled in) and the
/// fields its form or query reads.
struct Route {
    service: Service,
    method: &'static str,
    path: &'static str,
    fields: &'static [&'static str],
}

const AUTHORIZE: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "id_token_hint",
    "ui_locales",
    "request",
    "request_uri",
];
const TOKEN: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "client_assertion",
    "client_assertion_type",
    "scope",
];

const fn r(
    service: Service,
    method: &'static str,
    path: &'static str,
    fields: &'static [&'static str],
) -> Route {
    Route {
        service,
        method,
        path,
        fields,
    }
}

use Service::{Idp, Presale};

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    r(Idp, "GET", "/.well-known/openid-configuration", &[]),
    r(Idp, "GET", "/jwks", &[]),
    r(Idp, "GET", "/authorize", AUTHORIZE),
    r(Idp, "POST", "/authorize", AUTHORIZE),
    r(Idp, "GET", "/account", &["lang"]),
    r(Idp, "GET", "/login/{tx}", &["lang"]),
    r(Idp, "POST", "/login/{tx}/phone", &["csrf", "mobile", "pow_challenge", "pow_nonce"]),
    r(Idp, "POST", "/login/{tx}/resend", &["csrf"]),
    r(Idp, "POST", "/login/{tx}/otp", &["csrf", "code"]),
    r(Idp, "POST", "/login/{tx}/identity", &["csrf", "national_id", "birth_date"]),
    r(Idp, "POST", "/login/{tx}/consent", &["csrf", "decision"]),
    r(Idp, "POST", "/account/revoke", &["csrf", "client_id"]),
    r(Idp, "GET", "/logout", &["id_token_hint", "post_logout_redirect_uri", "state", "client_id"]),
    r(Idp, "POST", "/logout", &["csrf", "id_token_hint", "post_logout_redirect_uri", "state", "client_id"]),
    r(Idp, "POST", "/token", TOKEN),
    r(Idp, "POST", "/revoke", &["token", "token_type_hint", "client_id", "client_secret"]),
    r(Idp, "POST", "/introspect", &["token", "token_type_hint", "client_id", "client_secret"]),
    r(Idp, "GET", "/userinfo", &["access_token"]),
    r(Idp, "POST", "/userinfo", &["access_token"]),
    r(Idp, "GET", "/readyz", &[]),
    r(Idp, "GET", "/{tx}", &[]),
    r(Presale, "GET", "/", &["lang"]),
    r(Presale, "GET", "/{m}/", &["lang"]),
    r(Presale, "GET", "/{m}/applications", &[]),
    r(Presale, "GET", "/{m}/login", &["next"]),
    r(Presale, "GET", "/{m}/callback", &["code", "state", "error", "iss"]),
    r(Presale, "POST", "/{m}/backchannel-logout", &["logout_token"]),
    r(Presale, "POST", "/{m}/c/{id}/join", &["csrf"]),
    r(Presale, "GET", "/{m}/c/{id}/wait", &[]),
    r(Presale, "GET", "/{m}/c/{id}/status", &[]),
    r(Presale, "POST", "/{m}/c/{id}/apply", &["csrf", "national_id", "confirm"]),
    r(Presale, "GET", "/{m}/c/{id}/receipts", &[]),
    r(Presale, "GET", "/{m}/c/{id}/lottery", &[]),
    r(Presale, "GET", "/ministry", &[]),
    r(Presale, "GET", "/ministry/login", &[]),
    r(Presale, "POST", "/ministry/login", &["csrf", "username", "password", "totp"]),
    r(Presale, "POST", "/ministry/logout", &["csrf"]),
    r(Presale, "POST", "/ministry/licenses", &["csrf", "license_no", "units", "unit_price", "opens_at", "closes_at", "check"]),
    r(Presale, "GET", "/ministry/licenses/new", &[]),
    r(Presale, "GET", "/ministry/licenses/{id}", &[]),
    r(Presale, "GET", "/ministry/proposals/{id}", &[]),
    r(Presale, "GET", "/ministry/staff", &[]),
    r(Presale, "POST", "/ministry/staff", &["csrf", "username", "role"]),
    r(Presale, "POST", "/ministry/staff/{id}/disable", &["csrf"]),
    r(Presale, "POST", "/ministry/staff/{id}/role", &["csrf", "role"]),
    r(Presale, "POST", "/ministry/licenses/{id}/suspend", &["csrf", "reason"]),
    r(Presale, "POST", "/ministry/licenses/{id}/resume", &["csrf"]),
    r(Presale, "POST", "/ministry/licenses/{id}/rate", &["csrf", "admission_per_min"]),
    r(Presale, "POST", "/ministry/proposals/{id}/approve", &["csrf", "digest"]),
    r(Presale, "POST", "/ministry/proposals/{id}/reject", &["csrf"]),
    r(Presale, "GET", "/ministry/audit", &["page"]),
    r(Presale, "GET", "/ministry/audit.csv", &[]),
    r(Presale, "GET", "/transparency/key", &[]),
    r(Presale, "GET", "/transparency/check", &["receipt", "campaign"]),
    r(Presale, "GET", "/transparency/{id}", &[]),
    r(Presale, "GET", "/transparency/{id}/checkpoint", &[]),
    r(Presale, "GET", "/transparency/{id}/checkpoints", &["from", "to"]),
    r(Presale, "GET", "/transparency/{id}/records", &["from", "to", "start", "end"]),
    r(Presale, "GET", "/transparency/{id}/proof", &["index", "size", "leaf"]),
    r(Presale, "GET", "/transparency/{id}/consistency", &["first", "second", "from", "to"]),
    r(Presale, "POST", "/api/seed-reveals", &["license_id", "secret"]),
    r(Presale, "POST", "/api/observers/{id}/statements", &["note"]),
    r(Presale, "POST", "/ministry/licenses/{id}/reveal", &["csrf", "secret"]),
    r(Presale, "GET", "/readyz", &[]),
];

/// An answer that must never be: a 5xx other than a planned 503 with Retry-After, or none.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub method: String,
    pub url: String,
    pub mutation: String,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FuzzReport {
    pub requests: u64,
    pub elapsed_secs: f64,
    pub statuses: BTreeMap<u16, u64>,
    /// Per mutation, how many requests carried it.
    pub mutations: BTreeMap<String, u64>,
    /// Planned refusals: 503 with Retry-After.
    pub shed: u64,
    pub findings_total: u64,
    /// The first findings (at most 50).
    pub findings: Vec<Finding>,
    /// Both services answered `/readyz` with 200 afterwards.
    pub ready_after: bool,
}

impl FuzzReport {
    pub fn holds(&self) -> bool {
        self.findings_total == 0 && self.ready_after
    }

    pub fn summary(&self) -> String {
        format!(
            "fuzz: {} requests in {:.1} s; statuses {:?}; {} planned 503s; {} findings (5xx or no answer){}; ready after: {}",
            self.requests,
            self.elapsed_secs,
            self.statuses,
            self.shed,
            self.findings_total,
            self.findings
                .first()
                .map(|f| format!(" (first: {} {} [{}]: {})", f.method, f.url, f.mutation, f.answer))
                .unwrap_or_default(),
            self.ready_after
        )
    }
}

/// What a header can carry: visible ASCII, no cookie separators (anything else cannot be
/// sent at all, so it tests nothing).
fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\'))
        .collect()
}

/// One request, as generated.
struct Request {
    method: reqwest::Method,
    url: Url,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    cookie: Option<String>,
    headers: Vec<(&'static str, String)>,
    mutations: Vec<&'static str>,
}

struct Gen<'a> {
    rng: StdRng,
    seeds: &'a Seeds,
}

impl Gen<'_> {
    fn pick<'b, T>(&mut self, xs: &'b [T]) -> Option<&'b T> {
        (!xs.is_empty()).then(|| &xs[self.rng.gen_range(0..xs.len())])
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn junk(&mut self, len: usize) -> String {
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', '9', '-', '_', '.', '/', '%', '&', '=', '+', ';', ',', ' ', '"', '\'',
            '<', '>', '\\', '#', '?', '۱', '٣', 'ی', '\u{200c}', '\u{0}', '\u{7f}', '😀',
        ];
        (0..len)
            .map(|_| ALPHABET[self.rng.gen_range(0..ALPHABET.len())])
            .collect()
    }

    /// A field's value.
    fn value(&mut self, mutations: &mut Vec<&'static str>) -> String {
        match self.rng.gen_range(0..100) {
            0..35 => {
                let all: Vec<&String> = self
                    .seeds
                    .values
                    .iter()
                    .chain(&self.seeds.csrf)
                    .chain(&self.seeds.logins)
                    .chain(&self.seeds.campaigns)
                    .collect();
                self.pick(&all).map(|s| (*s).clone()).unwrap_or_default()
            }
            35..55 => {
                let n = self.rng.gen_range(0..40);
                self.junk(n)
            }
            55..65 => {
                mutations.push("oversized field");
                let n = self.rng.gen_range(4_000..40_000);
                "x".repeat(n)
            }
            65..75 => {
                let n: i64 = self.rng.gen();
                self.pick(&[
                    n.to_string(),
                    i64::MAX.to_string(),
                    "-1".into(),
                    "1e309".into(),
                    "0x10".into(),
                    "۰۹۱۲۱۲۳۴۵۶۷".into(),
                ])
                .cloned()
                .unwrap_or_default()
            }
            75..80 => "<script>alert(1)</script>".into(),
            80..85 => "%zz%ff%00".into(),
            _ => String::new(),
        }
    }

    fn path(&mut self, template: &str, mutations: &mut Vec<&'static str>) -> String {
        let mut out = template.to_owned();
        for (ph, seeds) in [
            ("{tx}", &self.seeds.logins),
            ("{m}", &self.seeds.manufacturers),
            ("{id}", &self.seeds.campaigns),
        ] {
            if !out.contains(ph) {
                continue;
            }
            let v = if self.chance(0.7) && !seeds.is_empty() {
                seeds[self.rng.gen_range(0..seeds.len())].clone()
            } else {
                mutations.push("odd path segment");
                let n = self.rng.gen_range(1..300);
                let raw = self.junk(n);
                let picked = self
                    .pick(&[
                        "..%2f..%2fetc",
                        "%00",
                        "۱۲۳",
                        "a%2Fb",
                        "-1",
                        "99999999999999999999",
                    ])
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default();
                let v = if self.chance(0.5) { raw } else { picked };
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
            };
            out = out.replace(ph, &v);
        }
        out
    }

    fn fields(
        &mut self,
        names: &[&str],
        mutations: &mut Vec<&'static str>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for name in names {
            if self.chance(0.8) {
                let v = self.value(mutations);
                out.push(((*name).to_owned(), v));
            }
        }
        if self.chance(0.2) {
            mutations.push("repeated or unknown fields");
            let dup = self
                .pick(names)
                .map(|s| (*s).to_owned())
                .unwrap_or_else(|| "x".into());
            let v = self.value(mutations);
            out.push((dup, v));
            let n = self.rng.gen_range(1..12);
            let k = self.junk(n);
            let v = self.value(mutations);
            out.push((k, v));
        }
        out
    }

    fn request(&mut self) -> Option<Request> {
        let route = &ROUTES[self.rng.gen_range(0..ROUTES.len())];
        let base = match route.service {
            Service::Idp => self.seeds.idp.clone()?,
            Service::Presale => self.seeds.presale.clone()?,
        };
        let mut mutations = Vec::new();
        let method = if self.chance(0.1) {
            mutations.push("another method");
            let m = self
                .pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
                .copied()?;
            reqwest::Method::from_bytes(m.as_bytes()).ok()?
        } else {
            reqwest::Method::from_bytes(route.method.as_bytes()).ok()?
        };
        let path = self.path(route.path, &mut mutations);
        let mut url = base.join(&path).ok()?;
        let fields = self.fields(route.fields, &mut mutations);
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let (mut content_type, mut body) = (None, None);
        if route.method == "GET" {
            // Under what a URI can hold (64 KiB): past it there is no request to send.
            let mut q: String = encoded.chars().take(30_000).collect();
            if self.chance(0.05) {
                mutations.push("broken query");
                q.push_str("&%zz=%&&=x&a=%C3%28");
            }
            url.set_query(Some(&q));
        } else {
            let mut b = encoded.into_bytes();
            match self.rng.gen_range(0..100) {
                0..70 => content_type = Some("application/x-www-form-urlencoded".to_owned()),
                70..78 => {
                    mutations.push("wrong content type");
                    content_type = Some("application/json".into());
                    if self.chance(0.5) {
                        b = serde_json::to_vec(&fields.iter().cloned().collect::<BTreeMap<_, _>>())
                            .unwrap_or_default();
                    }
                }
                78..84 => {
                    mutations.push("wrong content type");
                    content_type = Some("multipart/form-data; boundary=x".into());
                }
                84..90 => {
                    mutations.push("wrong content type");
                    content_type = Some(header_safe(&self.junk(12)));
                }
                90..95 => mutations.push("no content type"),
                _ => {
                    mutations.push("not UTF-8");
                    content_type = Some("application/x-www-form-urlencoded".to_owned());
                    b.extend_from_slice(b"&csrf=\xff\xfe\xc3\x28&mobile=\x80");
                }
            }
            if self.chance(0.03) {
                mutations.push("body over the limit");
                b.extend(std::iter::repeat_n(b'a', 100_000));
            }
            body = Some(b);
        }
        let cookie = match self.rng.gen_range(0..100) {
            0..45 => Some(
                self.seeds
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            45..70 => {
                mutations.push("broken cookies");
                let mut parts = Vec::new();
                for (k, v) in &self.seeds.cookies.clone() {
                    let v = match self.rng.gen_range(0..5) {
                        0 => v[..v.len() / 2].to_owned(),
                        1 => format!("{v}x"),
                        2 => header_safe(&self.junk(20)),
                        3 => "A".repeat(4000),
                        _ => String::new(),
                    };
                    parts.push(format!("{k}={v}"));
                }
                Some(parts.join("; "))
            }
            70..80 => {
                mutations.push("broken cookies");
                Some(";;=; x; =y; a=b=c".into())
            }
            _ => None,
        };
        let mut headers = Vec::new();
        if self.chance(0.05) {
            mutations.push("odd forwarded-for");
            headers.push(("x-forwarded-for", "999.1.1.1, ::g, , unknown".to_owned()));
        }
        if self.chance(0.05) {
            headers.push(("accept", "application/json".to_owned()));
        }
        if self.chance(0.05) {
            mutations.push("odd authorization");
            let v = self.value(&mut mutations);
            let scheme = self
                .pick(&["Bearer", "Basic", "DPoP", ""])
                .copied()
                .unwrap_or("");
            headers.push(("authorization", header_safe(&format!("{scheme} {v}"))));
        }
        if mutations.is_empty() {
            mutations.push("plain");
        }
        Some(Request {
            method,
            url,
            content_type,
            body,
            cookie,
            headers,
            mutations,
        })
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    statuses: BTreeMap<u16, u64>,
    mutations: BTreeMap<String, u64>,
    shed: u64,
    findings_total: u64,
    findings: Vec<Finding>,
}

/// Sends `requests` generated requests over `concurrency` connections.
pub async fn run(
    seeds: Seeds,
    requests: u64,
    concurrency: usize,
    seed: u64,
) -> anyhow::Result<FuzzReport> {
    // A connection per request: a server may close a connection after refusing a request
    // (a body over the limit), and a pooled one reused in that instant would fail for a
    // reason that is not the server's; a dropped connection then means what it says.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()?;
    let seeds = Arc::new(seeds);
    let next = Arc::new(AtomicU64::new(0));
    let state = Arc::new(Mutex::new(Tally::default()));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let (client, seeds, next, state) =
            (client.clone(), seeds.clone(), next.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            let mut g = Gen {
                rng: StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(w as u64)),
                seeds: &seeds,
            };
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let Some(r) = g.request() else { continue };
                let mut b = client.request(r.method.clone(), r.url.clone());
                if let Some(ct) = &r.content_type {
                    b = b.header("content-type", ct);
                }
                if let Some(c) = &r.cookie {
                    b = b.header("cookie", c);
                }
                for (k, v) in &r.headers {
                    b = b.header(*k, v);
                }
                if let Some(body) = r.body {
                    b = b.body(body);
                }
                let answer = match b.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let retry_after = resp.headers().contains_key("retry-after");
                        // Read the body whole: an answer cut short is a dropped connection.
                        match resp.bytes().await {
                            Ok(_) => Ok((status, retry_after)),
                            Err(e) => Err(format!("{status}, then the body failed: {e}")),
                        }
                    }
                    Err(e) => Err(format!("no answer: {e}")),
                };
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.requests += 1;
                for m in &r.mutations {
                    *s.mutations.entry((*m).to_owned()).or_default() += 1;
                }
                let bad = match answer {
                    Ok((status, retry_after)) => {
                        *s.statuses.entry(status).or_default() += 1;
                        if status == 503 && retry_after {
                            s.shed += 1;
                            None
                        } else if status >= 500 {
                            Some(format!(
                                "{status}{}",
                                if status == 503 {
                                    " without Retry-After"
                                } else {
                                    ""
                                }
                            ))
                        } else {
                            None
                        }
                    }
                    Err(e) => Some(e),
                };
                if let Some(answer) = bad {
                    s.findings_total += 1;
                    if s.findings.len() < 50 {
                        let mut url = r.url.clone();
                        url.set_query(None);
                        s.findings.push(Finding {
                            method: r.method.to_string(),
                            url: url.to_string(),
                            mutation: r.mutations.join(", "),
                            answer,
                        });
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed_secs = began.elapsed().as_secs_f64();
    let mut ready_after = true;
    for base in [&seeds.idp, &seeds.presale].into_iter().flatten() {
        let ok = client
            .get(base.join("/readyz")?)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        ready_after &= ok;
    }
    let t = std::mem::take(&mut *state.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(FuzzReport {
        requests: t.requests,
        elapsed_secs,
        statuses: t.statuses,
        mutations: t.mutations,
        shed: t.shed,
        findings_total: t.findings_total,
        findings: t.findings,
        ready_after,
    })
}

/// Seeds from a local deployment: one citizen signed in at Saipa and in the queue, and a
/// second login left open at the phone step.
pub async fn seeds_from(d: &local::Deployment) -> anyhow::Result<Seeds> {
    let who = d
        .citizens
        .first()
        .ok_or_else(|| anyhow::anyhow!("the deployment has no citizens"))?
        .clone();
    let presale = d.presale.to_string();
    let b = testkit::Browser::new(&presale);
    let first = b.go("/saipa/login").await;
    let mut seeds = Seeds {
        idp: Url::parse(&d.issuer).ok(),
        presale: Some(d.presale.clone()),
        manufacturers: vec!["saipa".into(), "iran-khodro".into()],
        values: vec![
            who.mobile.clone(),
            who.national_id.clone(),
            who.birth_date.clone(),
            "saipa".into(),
            format!("{presale}saipa/callback"),
            "openid profile national_id".into(),
            "code".into(),
            "S256".into(),
            "authorization_code".into(),
            "refresh_token".into(),
            "approve".into(),
        ],
        ..Seeds::default()
    };
    if let Some(tx) = first.tx_path() {
        seeds
            .logins
            .push(tx.trim_start_matches("/login/").to_owned());
    }
    seeds.csrf.extend(first.input("csrf"));
    let back = testkit::login::complete(&b, first, &who, &d.stub.outbox).await;
    let _ = b.follow(back).await;
    let home = b.go("/saipa/").await;
    seeds.csrf.extend(home.input("csrf"));
    if let Some(c) =
        testkit::forms::attribute(&home.body, "<section data-campaign", "data-campaign")
    {
        seeds.campaigns.push(c);
    }
    // The open login of another browser, and the cookies of both services.
    let other = testkit::Browser::new(&presale);
    let open = other.go("/iran-khodro/login").await;
    if let Some(tx) = open.tx_path() {
        seeds
            .logins
            .push(tx.trim_start_matches("/login/").to_owned());
    }
    seeds.csrf.extend(open.input("csrf"));
    // Cookies are per host, not per port: the two services' share `localhost` here.
    seeds.cookies = b.cookies(&presale);
    for c in b.cookies(&d.issuer) {
        if !seeds.cookies.contains(&c) {
            seeds.cookies.push(c);
        }
    }
    seeds.values.extend(seeds.campaigns.clone());
    anyhow::ensure!(
        !seeds.campaigns.is_empty() && !seeds.cookies.is_empty() && !seeds.logins.is_empty(),
        "could not gather seeds from the deployment: {seeds:?} (the storefront answered {}: {})",
        home.status,
        home.body.chars().take(2000).collect::<String>()
    );
    Ok(seeds)
}

/// A fuzz run against a deployment of its own: SQLite and in-process stores, or (with
/// `servers`) PostgreSQL and Redis at the test servers' addresses.
pub async fn local(
    requests: u64,
    concurrency: usize,
    seed: u64,
    servers: bool,
) -> anyhow::Result<FuzzReport> {
    let backend = if servers {
        testkit::Backend::Servers
    } else {
        testkit::Backend::Embedded
    };
    let d = local::deploy(local::Options {
        postgres_admin: servers.then(testkit::servers::postgres_admin_url),
        redis_url: backend.redis_url(),
        citizens: 10,
        // Every request comes from this machine: no per-address limit in the way.
        ip_per_sec: 100_000,
        ..local::Options::new(local::queue_license(100, 0, 6000))
    })
    .await?;
    let report = async {
        let seeds = seeds_from(&d).await?;
        run(seeds, requests, concurrency, seed).await
    }
    .await;
    d.stop().await;
    report
}
