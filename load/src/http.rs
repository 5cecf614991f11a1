//! A citizen's browser over one shared connection pool: each citizen has their own
//! cookie jar and (optionally) their own client address, as a person behind their own
//! phone would; requests go to the deployment's replicas the way a load balancer would
//! send them, while cookies and redirects stay with the public URLs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::CookieStore;
use reqwest::header::{HeaderValue, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use url::Url;

/// Where the deployment is: its public origins and, optionally, the replicas behind each
/// (requests rotate over them; a login can start on one and finish on another).
#[derive(Debug, Clone)]
pub struct Targets {
    pub presale: Url,
    pub presale_replicas: Vec<Url>,
    /// The IdP's issuer as the storefronts redirect to it.
    pub idp_replicas: Vec<Url>,
    pub issuer: Option<Url>,
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    targets: Arc<Targets>,
    counter: Arc<std::sync::atomic::AtomicUsize>,
    health: Arc<Health>,
}

/// Which replicas answer their readiness probe, as a load balancer tracks it, and how
/// many requests each was sent (counters beside the replica lists: no lock per request).
struct Health {
    presale: Vec<AtomicBool>,
    idp: Vec<AtomicBool>,
    presale_sent: Vec<AtomicU64>,
    idp_sent: Vec<AtomicU64>,
}

/// An answer: status, where it redirected, Retry-After, the body and the public URL.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<u64>,
    pub body: String,
    pub url: Url,
    /// This request's own time, from sending it to the end of its body (not the
    /// redirects before it).
    pub took: Duration,
}

impl Page {
    /// Which page this is, for reports: the last segment of its path, or "storefront" for
    /// a manufacturer's `/{m}/` (no national IDs, tickets or codes: those are in queries
    /// and forms, not in these paths' last segments).
    pub fn name(&self) -> String {
        let path = self.url.path();
        if path.len() > 1 && path.ends_with('/') {
            return "storefront".into();
        }
        match path.rsplit('/').next() {
            Some("") | None => "home".into(),
            Some(last) => last.into(),
        }
    }
}

/// Why a request gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// Connection refused or reset.
    Connect,
    Timeout,
    /// An HTTP status the step did not expect.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// A 200 that was not the page the step expected (what it looked for).
    Page(&'static str),
}

impl Fail {
    fn of(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Connect
        }
    }

    pub fn kind(&self) -> String {
        match self {
            Self::Connect => "connect".into(),
            Self::Timeout => "timeout".into(),
            Self::Status { status, .. } => format!("http {status}"),
            Self::Page(what) => format!("unexpected page ({what})"),
        }
    }

    /// An error page a person leaves by starting the sign-in again from the storefront:
    /// the login is gone (410) or spent (409), a server or its gateway failed (5xx), or
    /// nothing answered.
    pub fn start_over(&self) -> bool {
        match self {
            Self::Connect | Self::Timeout => true,
            Self::Status { status, .. } => matches!(status, 409 | 410 | 500..=599),
            Self::Page(_) => false,
        }
    }

    /// Refused with 503 and Retry-After: the server shedding load, as it should when
    /// overloaded (answered at once, with when to come back).
    pub fn shed(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: 503,
                retry_after: Some(_)
            }
        )
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth a retry for a person who retries: overload, throttling, network trouble.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Connect | Self::Timeout => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Page(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub struct Browser {
    jar: reqwest::cookie::Jar,
    /// Which IdP replicas (bit per replica) served this browser.
    idp_seen: std::sync::atomic::AtomicU64,
    /// Sent as X-Forwarded-For, so a deployment that trusts its ingress sees one address
    /// per citizen instead of the load machine's one.
    ip: Option<HeaderValue>,
}

impl Browser {
    pub fn new(ip: Option<String>) -> Self {
        Self {
            jar: reqwest::cookie::Jar::default(),
            idp_seen: Default::default(),
            ip: ip.and_then(|s| HeaderValue::from_str(&s).ok()),
        }
    }

    /// How many IdP replicas served this browser so far.
    pub fn idp_replicas_seen(&self) -> u32 {
        self.idp_seen.load(Ordering::Relaxed).count_ones()
    }

    /// The value of a cookie that would be sent to `url`.
    pub fn cookie(&self, url: &Url, name: &str) -> Option<String> {
        let all = self.jar.cookies(url)?;
        let all = all.to_str().ok()?;
        all.split("; ").find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}

impl Http {
    pub fn new(targets: Targets, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()?;
        let up = |n: usize| (0..n).map(|_| AtomicBool::new(true)).collect();
        let zero = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Ok(Self {
            client,
            health: Arc::new(Health {
                presale: up(targets.presale_replicas.len()),
                idp: up(targets.idp_replicas.len()),
                presale_sent: zero(targets.presale_replicas.len()),
                idp_sent: zero(targets.idp_replicas.len()),
            }),
            targets: Arc::new(targets),
            counter: Arc::default(),
        })
    }

    /// Probes every replica's `/readyz` four times a second until dropped, and routes only
    /// to those that answer 200 (all of them if none does), as a Kubernetes Service does:
    /// a replica told to stop leaves the rotation before it closes.
    pub fn watch_readiness(&self) -> tokio::task::JoinHandle<()> {
        let http = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                let t = &http.targets;
                for (urls, flags) in [
                    (&t.presale_replicas, &http.health.presale),
                    (&t.idp_replicas, &http.health.idp),
                ] {
                    for (u, flag) in urls.iter().zip(flags.iter()) {
                        let ok = match u.join("/readyz") {
                            Ok(probe) => http
                                .client
                                .get(probe)
                                .timeout(Duration::from_secs(1))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success()),
                            Err(_) => false,
                        };
                        flag.store(ok, Ordering::Relaxed);
                    }
                }
            }
        })
    }

    /// Requests sent to each replica (empty without replicas).
    pub fn routed(&self) -> std::collections::BTreeMap<String, u64> {
        let t = &self.targets;
        let h = &self.health;
        t.presale_replicas
            .iter()
            .zip(&h.presale_sent)
            .chain(t.idp_replicas.iter().zip(&h.idp_sent))
            .map(|(u, n)| (u.to_string(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Where a request for public `url` actually goes: the next replica, like a load
    /// balancer's round robin.
    fn route(&self, url: &Url, b: Option<&Browser>) -> Url {
        let t = &self.targets;
        let h = &self.health;
        let (replicas, ready, sent, idp) = if same_origin(url, &t.presale) {
            (&t.presale_replicas, &h.presale, &h.presale_sent, false)
        } else if t.issuer.as_ref().is_some_and(|i| same_origin(url, i)) {
            (&t.idp_replicas, &h.idp, &h.idp_sent, true)
        } else {
            return url.clone();
        };
        if replicas.is_empty() {
            return url.clone();
        }
        let n = replicas.len();
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        let pick = (0..n)
            .map(|k| (start + k) % n)
            .find(|i| ready[*i].load(Ordering::Relaxed))
            .unwrap_or(start % n);
        if let (true, Some(b)) = (idp, b) {
            b.idp_seen.fetch_or(1 << (pick % 64), Ordering::Relaxed);
        }
        let mut routed = url.clone();
        let r = &replicas[pick];
        sent[pick].fetch_add(1, Ordering::Relaxed);
        let _ = routed.set_scheme(r.scheme());
        let _ = routed.set_host(r.host_str());
        let _ = routed.set_port(r.port_or_known_default());
        routed
    }

    /// One request, no redirects followed.
    pub async fn send(
        &self,
        b: &Browser,
        url: &Url,
        form: Option<&[(&str, &str)]>,
    ) -> Result<Page, Fail> {
        let target = self.route(url, Some(b));
        let sent = std::time::Instant::now();
        let mut req = match form {
            Some(f) => self.client.post(target).form(f),
            None => self.client.get(target),
        };
        if let Some(c) = b.jar.cookies(url) {
            req = req.header(COOKIE, c);
        }
        if let Some(ip) = &b.ip {
            req = req.header("x-forwarded-for", ip.clone());
        }
        let r = req.send().await.map_err(Fail::of)?;
        let mut set = r.headers().get_all(SET_COOKIE).iter();
        b.jar.set_cookies(&mut set, url);
        let status = r.status().as_u16();
        let header = |n| {
            r.headers()
                .get(n)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(LOCATION);
        let retry_after = header(RETRY_AFTER).and_then(|v| v.trim().parse().ok());
        let body = r.text().await.map_err(Fail::of)?;
        Ok(Page {
            status,
            location,
            retry_after,
            body,
            url: url.clone(),
            took: sent.elapsed(),
        })
    }

    /// GET `url`, following redirects; the final page (any status).
    pub async fn go(&self, b: &Browser, url: &Url) -> Result<Page, Fail> {
        let mut url = url.clone();
        for _ in 0..12 {
            let p = self.send(b, &url, None).await?;
            match p.location.as_deref().map(|l| url.join(l)) {
                Some(Ok(next)) if (300..400).contains(&p.status) => url = next,
                _ => return Ok(p),
            }
        }
        Err(Fail::Page("a redirect loop"))
    }

    /// POST a form to `url`, following the redirect it answers with.
    pub async fn post(&self, b: &Browser, url: &Url, form: &[(&str, &str)]) -> Result<Page, Fail> {
        let p = self.send(b, url, Some(form)).await?;
        match p.location.as_deref().map(|l| url.join(l)) {
            Some(Ok(next)) if (300..400).contains(&p.status) => self.go(b, &next).await,
            _ => Ok(p),
        }
    }

    /// GET a JSON document (the waiting page's status poll).
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        b: &Browser,
        url: &Url,
    ) -> Result<T, Fail> {
        let p = self.send(b, url, None).await?;
        if p.status != 200 {
            return Err(Fail::Status {
                status: p.status,
                retry_after: p.retry_after,
            });
        }
        serde_json::from_str(&p.body).map_err(|_| Fail::Page("JSON"))
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_rotate_over_replicas_and_keep_public_urls() {
        let u = |s: &str| Url::parse(s).expect("url");
        let http = Http::new(
            Targets {
                presale: u("http://shop.example"),
                presale_replicas: vec![u("http://127.0.0.1:1"), u("http://127.0.0.1:2")],
                idp_replicas: vec![],
                issuer: Some(u("http://id.example")),
            },
            Duration::from_secs(1),
        )
        .expect("client");
        let a = http.route(&u("http://shop.example/saipa/?x=1"), None);
        let b = http.route(&u("http://shop.example/saipa/?x=1"), None);
        assert_eq!(a.as_str(), "http://127.0.0.1:1/saipa/?x=1");
        assert_eq!(b.as_str(), "http://127.0.0.1:2/saipa/?x=1");
        assert_eq!(
            http.route(&u("http://id.example/authorize"), None).as_str(),
            "http://id.example/authorize"
        );
    }
}
