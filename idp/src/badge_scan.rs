//! `idp badge scan URL…` (issue 34): fetches pages and reports the emta badges on them
//! that are not what the IdP serves, as the e-commerce centre's monitor does for e-namad.
//!
//! A real badge is a script from the issuer (`{issuer}/badge/{id}/badge.js`) on a page
//! whose origin is one the manufacturer registered: it draws itself in the visitor's
//! browser, so the page's HTML holds only the script tag. The scan reports:
//! - `copied`: the issuer's badge script on a page of another origin;
//! - `forged`: a badge script served by someone else than the issuer, or naming a
//!   manufacturer the issuer does not know;
//! - `altered`: the badge's drawn markup copied into the page's HTML (not the issuer's
//!   code) with a rating other than the issuer's;
//! - `stale`: drawn markup copied into the HTML that states a standing the manufacturer no
//!   longer has (in force, while it is suspended or expired);
//! - `static`: drawn markup or an image copied into the HTML, even if it says what is true
//!   today (it will not change when the standing does);
//! - `suspended` / `expired`: the issuer's own badge of a manufacturer whose trust record
//!   is not in force (the badge says so; the listing tells the monitor to look);
//! - `unreachable`: a page that could not be fetched.
//!
//! Each badge the issuer serves is checked through its signed form (`badge.jwt`) against
//! the issuer's JWKS.

use serde::Serialize;

use crate::http::badge::Badge;

/// One finding of a scan.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub page: String,
    pub kind: &'static str,
    pub manufacturer: Option<String>,
    pub detail: String,
}

/// The attributes of every tag named `tag` in `html` (a forgiving reader: enough for
/// what a badge looks like, not a general HTML parser).
fn tags(html: &str, tag: &str) -> Vec<Vec<(String, String)>> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&open) {
        let start = from + at + open.len();
        let end = lower[start..].find('>').map_or(html.len(), |e| start + e);
        // `<a` is not `<abbr`: the name ends at a space, a slash or the tag's end.
        if !lower[start..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c == '>' || c == '/')
        {
            from = start;
            continue;
        }
        let mut attrs = Vec::new();
        let inner = &html[start..end];
        let mut rest = inner;
        while let Some(eq) = rest.find('=') {
            let name = rest[..eq]
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let after = rest[eq + 1..].trim_start();
            let (value, next) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let close = body.find(q).unwrap_or(body.len());
                    (&body[..close], &body[(close + 1).min(body.len())..])
                }
                _ => {
                    let close = after
                        .find(|c: char| c.is_whitespace())
                        .unwrap_or(after.len());
                    (&after[..close], &after[close..])
                }
            };
            attrs.push((name, value.to_owned()));
            rest = next;
        }
        out.push(attrs);
        from = end.max(start);
    }
    out
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The issuer's view of the badges, fetched once per manufacturer per scan.
struct Issuer {
    url: String,
    origin: String,
    http: reqwest::Client,
    jwks: Option<jsonwebtoken::jwk::JwkSet>,
    seen: std::collections::HashMap<String, Option<Badge>>,
}

impl Issuer {
    /// The signed badge of `id`, checked against the issuer's JWKS; None if the issuer
    /// knows no such manufacturer or its signature does not hold.
    async fn badge(&mut self, id: &str) -> Option<Badge> {
        if let Some(b) = self.seen.get(id) {
            return b.clone();
        }
        let b = self.fetch(id).await;
        self.seen.insert(id.to_owned(), b.clone());
        b
    }

    async fn fetch(&mut self, id: &str) -> Option<Badge> {
        if self.jwks.is_none() {
            self.jwks = self
                .http
                .get(format!("{}/jwks", self.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok();
        }
        let jws = self
            .http
            .get(format!("{}/badge/{id}/badge.jwt", self.url))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .text()
            .await
            .ok()?;
        verify(&jws, self.jwks.as_ref()?, &self.url).filter(|b| b.sub == id)
    }
}

/// The claims of a signed badge, if its signature holds under `jwks` and it is the
/// issuer's and in date.
pub fn verify(jws: &str, jwks: &jsonwebtoken::jwk::JwkSet, issuer: &str) -> Option<Badge> {
    let header = jsonwebtoken::decode_header(jws).ok()?;
    if header.typ.as_deref() != Some("badge+jwt") {
        return None;
    }
    let jwk = jwks.find(header.kid.as_deref()?)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<Badge>(jws, &key, &v)
        .ok()
        .map(|d| d.claims)
}

fn origin_of(u: &url::Url) -> String {
    u.origin().ascii_serialization()
}

/// Scans `pages` for badges of the IdP at `issuer`.
pub async fn scan(issuer: &str, pages: &[String]) -> Vec<Finding> {
    let issuer = issuer.trim_end_matches('/').to_owned();
    let mut iss = Issuer {
        origin: url::Url::parse(&issuer)
            .map(|u| origin_of(&u))
            .unwrap_or_default(),
        url: issuer,
        http: service_kit::upstream::http_client(std::time::Duration::from_secs(10)),
        jwks: None,
        seen: Default::default(),
    };
    let mut out = Vec::new();
    for page in pages {
        scan_page(&mut iss, page, &mut out).await;
    }
    out
}

async fn scan_page(iss: &mut Issuer, page: &str, out: &mut Vec<Finding>) {
    let mut finding = |kind, manufacturer: Option<&str>, detail: String| {
        out.push(Finding {
            page: page.to_owned(),
            kind,
            manufacturer: manufacturer.map(str::to_owned),
            detail,
        })
    };
    let fetched = async {
        let r = iss.http.get(page).send().await?.error_for_status()?;
        let url = r.url().clone();
        Ok::<_, reqwest::Error>((url, r.text().await?))
    };
    let (url, html) = match fetched.await {
        Ok(p) => p,
        Err(e) => {
            finding("unreachable", None, e.to_string());
            return;
        }
    };
    let here = origin_of(&url);
    // The issuer's script, or one that pretends to be.
    for s in tags(&html, "script") {
        let Some(src) = attr(&s, "src") else { continue };
        let Ok(src) = url.join(src) else { continue };
        let mut segs = src
            .path_segments()
            .map(|s| s.collect::<Vec<_>>())
            .unwrap_or_default();
        let (Some("badge.js"), Some(id), Some("badge")) = (segs.pop(), segs.pop(), segs.pop())
        else {
            continue;
        };
        if origin_of(&src) != iss.origin {
            finding(
                "forged",
                Some(id),
                format!(
                    "a badge script served by {} instead of {}",
                    origin_of(&src),
                    iss.origin
                ),
            );
            continue;
        }
        let id = id.to_owned();
        match iss.badge(&id).await {
            None => finding(
                "forged",
                Some(&id),
                "the issuer knows no such manufacturer".into(),
            ),
            Some(b) if !b.origins.contains(&here) => finding(
                "copied",
                Some(&id),
                format!(
                    "{}'s badge on {here}; its registered storefronts: {}",
                    b.sub,
                    b.origins.join(" ")
                ),
            ),
            Some(b) if b.status != "active" => {
                finding(
                    if b.status == "suspended" {
                        "suspended"
                    } else {
                        "expired"
                    },
                    Some(&id),
                    format!("{} is {}", b.sub, b.status),
                );
            }
            Some(_) => {}
        }
    }
    // The drawn badge, copied into the HTML instead of the issuer's code.
    for t in ["a", "div", "span", "img", "p"] {
        for a in tags(&html, t) {
            let Some(id) = attr(&a, "data-emta-badge") else {
                continue;
            };
            let id = id.to_owned();
            let Some(b) = iss.badge(&id).await else {
                finding(
                    "forged",
                    Some(&id),
                    "copied markup naming a manufacturer the issuer does not know".into(),
                );
                continue;
            };
            let shown_stars = attr(&a, "data-stars").and_then(|s| s.parse::<u8>().ok());
            let shown_status = attr(&a, "data-status");
            if shown_stars.is_some_and(|s| s != b.stars) {
                finding(
                    "altered",
                    Some(&id),
                    format!(
                        "{} stars shown, {} in the issuer's record",
                        shown_stars.unwrap_or(0),
                        b.stars
                    ),
                );
            } else if shown_status.is_some_and(|s| s == "active") && b.status != "active" {
                finding(
                    "stale",
                    Some(&id),
                    format!("shown in force, but {} is {}", b.sub, b.status),
                );
            } else {
                finding("static", Some(&id), "the badge's markup copied into the page: not the issuer's code, it will not change with the record".into());
            }
        }
    }
    for img in tags(&html, "img") {
        let src = attr(&img, "src").unwrap_or_default().to_ascii_lowercase();
        if src.contains("emta") && src.contains("badge") {
            finding(
                "static",
                None,
                format!("an image of a badge ({src}): the issuer serves code, never an image"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{attr, tags};

    #[test]
    fn tags_are_read_with_either_quote_or_none() {
        let html = r#"<p>x</p><SCRIPT src='https://i/badge/saipa/badge.js'></script>
            <a data-emta-badge="saipa" data-stars=5 href="https://i/badge/saipa">"#;
        let s = tags(html, "script");
        assert_eq!(attr(&s[0], "src"), Some("https://i/badge/saipa/badge.js"));
        let a = tags(&format!("<abbr x=1>{html}"), "a");
        assert_eq!(attr(&a[0], "data-stars"), Some("5"));
        assert_eq!(attr(&a[0], "data-emta-badge"), Some("saipa"));
        assert!(tags(html, "img").is_empty());
    }
}
