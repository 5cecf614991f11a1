//! A citizen's browser for tests: a cookie jar, and no automatic redirects, so a test sees
//! every hop (the IdP's answer to the client is a redirect the test wants to read).

use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use url::Url;

use crate::forms;

/// One response as a test reads it.
#[derive(Debug)]
pub struct Page {
    /// The absolute URL this came from (relative links and actions resolve against it).
    pub url: String,
    pub status: u16,
    /// The redirect target, absolute.
    pub location: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The value of the named input.
    pub fn input(&self, name: &str) -> Option<String> {
        forms::input(&self.body, name)
    }

    /// The absolute URL of the first form whose action ends with `suffix`.
    pub fn action(&self, suffix: &str) -> Option<String> {
        forms::form_action(&self.body, suffix).map(|a| resolve(&self.url, &a))
    }

    /// The login transaction's path (`/login/{tx}`) in an IdP login page's forms.
    pub fn tx_path(&self) -> Option<String> {
        let at = self.body.find("action=\"/login/")? + 8;
        let rest = &self.body[at..];
        let end = rest[7..].find('/')? + 7;
        Some(rest[..end].to_owned())
    }

    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

/// `loc` resolved against `base`.
pub fn resolve(base: &str, loc: &str) -> String {
    Url::parse(base)
        .and_then(|b| b.join(loc))
        .map(String::from)
        .unwrap_or_else(|_| loc.to_owned())
}

fn origin(url: &str) -> Option<url::Origin> {
    Url::parse(url).ok().map(|u| u.origin())
}

/// Clones share the cookie jar: the same browser.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    /// Relative URLs given to [`Browser::get`] and [`Browser::post`] resolve against this.
    pub base: String,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self::with_headers(base, reqwest::header::HeaderMap::new())
    }

    /// A browser behind the address `ip`, as a trusted ingress would say in
    /// `X-Forwarded-For` (for a service started with its forwarded-for trust on).
    pub fn from_address(base: &str, ip: &str) -> Self {
        let mut h = reqwest::header::HeaderMap::new();
        if let Ok(v) = reqwest::header::HeaderValue::from_str(ip) {
            h.insert("x-forwarded-for", v);
        }
        Self::with_headers(base, h)
    }

    fn with_headers(base: &str, headers: reqwest::header::HeaderMap) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Self {
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(Policy::none())
                .default_headers(headers)
                .build()
                .unwrap_or_else(|e| panic!("HTTP client: {e}")),
            jar,
            base: base.to_owned(),
        }
    }

    /// Puts a cookie in this browser's jar as if `url` had set it (`cookie` is a
    /// Set-Cookie value): what a thief who copied another browser's cookie does.
    pub fn add_cookie(&self, url: &str, cookie: &str) {
        if let Ok(url) = url::Url::parse(&self.abs(url)) {
            self.jar.add_cookie_str(cookie, &url);
        }
    }

    /// The cookies this browser would send to `url`, as (name, value).
    pub fn cookies(&self, url: &str) -> Vec<(String, String)> {
        use reqwest::cookie::CookieStore;
        let Ok(url) = url::Url::parse(&self.abs(url)) else {
            return Vec::new();
        };
        self.jar
            .cookies(&url)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn abs(&self, url: &str) -> String {
        resolve(&self.base, url)
    }

    async fn page(url: String, resp: reqwest::Result<reqwest::Response>) -> Page {
        let resp = resp.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| resolve(&url, l));
        let body = resp.text().await.unwrap_or_default();
        Page {
            url,
            status,
            location,
            body,
            headers,
        }
    }

    /// One GET, no redirect followed.
    pub async fn get(&self, url: &str) -> Page {
        let url = self.abs(url);
        Self::page(url.clone(), self.http.get(&url).send().await).await
    }

    /// One form POST, no redirect followed.
    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let url = self.abs(url);
        Self::page(url.clone(), self.http.post(&url).form(form).send().await).await
    }

    /// Follows redirects that stay on the origin of the page that redirected, and stops
    /// at one that leaves it (the IdP's answer to a client, say), or at a page.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..12 {
            match &page.location {
                Some(loc) if origin(loc) == origin(&page.url) => {
                    page = self.get(&loc.clone()).await
                }
                _ => return page,
            }
        }
        page
    }

    /// GET, following every redirect, across origins too (storefront → IdP → storefront).
    pub async fn go(&self, url: &str) -> Page {
        let mut page = self.get(url).await;
        for _ in 0..12 {
            match page.location.clone() {
                Some(loc) => page = self.get(&loc).await,
                None => return page,
            }
        }
        panic!("redirect loop at {}", page.url);
    }

    /// POST, then follows every redirect, across origins too.
    pub async fn post_follow(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let page = self.post(url, form).await;
        match page.location.clone() {
            Some(loc) => self.go(&loc).await,
            None => page,
        }
    }

    /// [`Browser::post_form`], then its redirects followed.
    pub async fn post_form_follow(
        &self,
        page: &Page,
        suffix: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        let posted = self.post_form(page, suffix, fields).await;
        self.follow(posted).await
    }

    /// Posts the form of `page` whose action ends with `suffix`, with the page's own CSRF
    /// token and `fields`; one hop, no redirect followed.
    pub async fn post_form(&self, page: &Page, suffix: &str, fields: &[(&str, &str)]) -> Page {
        let action = page
            .action(suffix)
            .unwrap_or_else(|| panic!("no form ending {suffix} at {}: {}", page.url, page.body));
        // The CSRF token of that form: a page may carry several, each of its own purpose.
        let csrf = forms::form(&page.body, suffix)
            .and_then(|f| forms::input(f, "csrf"))
            .unwrap_or_default();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(&action, &form).await
    }
}
