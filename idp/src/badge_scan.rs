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

/// A tag's name (lowercase) and attributes.
type Tag = (String, Vec<(String, String)>);

/// Every start tag in `html` outside comments, with its attributes (a forgiving reader:
/// quotes may hold `>`, names are any case; enough for what a badge looks like, not a
/// general HTML parser).
fn all_tags(html: &str) -> Vec<Tag> {
    // Comments first: a badge commented out is no badge.
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("<!--") {
        text.push_str(&rest[..at]);
        rest = rest[at + 4..]
            .find("-->")
            .map_or("", |end| &rest[at + 4 + end + 3..]);
    }
    text.push_str(rest);
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        let name_end = (i + 1..bytes.len())
            .find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-'))
            .unwrap_or(bytes.len());
        let name = text[i + 1..name_end].to_ascii_lowercase();
        // The tag ends at the first `>` outside quotes.
        let (mut j, mut quote) = (name_end, None::<u8>);
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (None, b'>') => break,
                (None, q @ (b'"' | b'\'')) => quote = Some(q),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            j += 1;
        }
        out.push((name, attributes(&text[name_end..j])));
        i = j + 1;
    }
    out
}

/// The attributes of a start tag's inside.
fn attributes(inner: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
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
    attrs
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The largest page read (bytes): a page that streams more is read this far.
const MAX_PAGE: usize = 2 * 1024 * 1024;

/// The issuer's view of the badges, fetched once per manufacturer per scan.
struct Issuer {
    url: String,
    origin: String,
    http: reqwest::Client,
    jwks: Option<jsonwebtoken::jwk::JwkSet>,
    seen: std::collections::HashMap<String, Result<Option<Badge>, String>>,
}

impl Issuer {
    /// The signed badge of `id`, checked against the issuer's JWKS: `Ok(None)` if the
    /// issuer knows no such manufacturer, `Err` if the issuer could not be asked or its
    /// answer did not verify (unverifiable, not forged).
    async fn badge(&mut self, id: &str) -> Result<Option<Badge>, String> {
        if let Some(b) = self.seen.get(id) {
            return b.clone();
        }
        let b = self.fetch(id).await;
        self.seen.insert(id.to_owned(), b.clone());
        b
    }

    async fn fetch(&mut self, id: &str) -> Result<Option<Badge>, String> {
        let failed = |e: reqwest::Error| format!("the issuer could not be asked: {e}");
        if self.jwks.is_none() {
            let jwks = self
                .http
                .get(format!("{}/jwks", self.url))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(failed)?
                .json()
                .await
                .map_err(failed)?;
            self.jwks = Some(jwks);
        }
        let r = self
            .http
            .get(format!("{}/badge/{id}/badge.jwt", self.url))
            .send()
            .await
            .map_err(failed)?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let jws = r
            .error_for_status()
            .map_err(failed)?
            .text()
            .await
            .map_err(failed)?;
        let jwks = self.jwks.as_ref().ok_or("no JWKS")?;
        verify(&jws, jwks, &self.url)
            .filter(|b| b.sub == id)
            .map(Some)
            .ok_or_else(|| "the issuer's signed badge did not verify".to_owned())
    }
}

/// The claims of a signed badge, if its signature holds under `jwks` and it is the
/// issuer's and in date.
pub fn verify(jws: &str, jwks: &jsonwebtoken::jwk::JwkSet, issuer: &str) -> Option<Badge> {
    let header = jsonwebtoken::decode_header(jws).ok()?;
    if header.typ.as_deref() != Some("badge+jwt") || header.alg != jsonwebtoken::Algorithm::ES256 {
        return None;
    }
    let jwk = jwks.find(header.kid.as_deref()?)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.validate_aud = false;
    // A minute's statement means a minute: no leeway past its expiry.
    v.leeway = 0;
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
        let mut r = iss.http.get(page).send().await?.error_for_status()?;
        let url = r.url().clone();
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_PAGE {
                body.truncate(MAX_PAGE);
                break;
            }
        }
        Ok::<_, reqwest::Error>((url, String::from_utf8_lossy(&body).into_owned()))
    };
    let (url, html) = match fetched.await {
        Ok(p) => p,
        Err(e) => {
            finding("unreachable", None, e.to_string());
            return;
        }
    };
    let tags = all_tags(&html);
    // The issuer's script, or one that pretends to be.
    for (_, s) in tags.iter().filter(|(name, _)| name == "script") {
        let Some(src) = attr(s, "src") else { continue };
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
            Err(e) => finding("unverifiable", Some(&id), e),
            Ok(None) => finding(
                "forged",
                Some(&id),
                "the issuer knows no such manufacturer".into(),
            ),
            Ok(Some(b)) if !crate::http::badge::under(&url, &b.storefronts) => finding(
                "copied",
                Some(&id),
                format!(
                    "{}'s badge on {url}; its registered storefronts: {}",
                    b.sub,
                    b.storefronts.join(" ")
                ),
            ),
            Ok(Some(b)) if b.status != "active" => finding(
                if b.status == "suspended" {
                    "suspended"
                } else {
                    "expired"
                },
                Some(&id),
                format!("{} is {}", b.sub, b.status),
            ),
            Ok(Some(_)) => {}
        }
    }
    // The drawn badge, copied into the HTML (in any element) instead of the issuer's code.
    for (_, a) in &tags {
        let Some(id) = attr(a, "data-emta-badge") else {
            continue;
        };
        let id = id.to_owned();
        let b = match iss.badge(&id).await {
            Err(e) => {
                finding("unverifiable", Some(&id), e);
                continue;
            }
            Ok(None) => {
                finding(
                    "forged",
                    Some(&id),
                    "copied markup naming a manufacturer the issuer does not know".into(),
                );
                continue;
            }
            Ok(Some(b)) => b,
        };
        let shown_stars = attr(a, "data-stars").and_then(|s| s.parse::<u8>().ok());
        let shown_status = attr(a, "data-status");
        if let Some(shown) = shown_stars.filter(|s| *s != b.stars) {
            finding(
                "altered",
                Some(&id),
                format!("{shown} stars shown, {} in the issuer's record", b.stars),
            );
        } else if shown_status.is_some_and(|s| s == "active") && b.status != "active" {
            finding(
                "stale",
                Some(&id),
                format!("shown in force, but {} is {}", b.sub, b.status),
            );
        } else {
            finding(
                "static",
                Some(&id),
                "the badge's markup copied into the page: not the issuer's code, it will not \
                 change with the record"
                    .into(),
            );
        }
    }
    for (_, img) in tags.iter().filter(|(name, _)| name == "img") {
        let src = attr(img, "src").unwrap_or_default().to_ascii_lowercase();
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
    use super::{all_tags, attr};

    #[test]
    fn tags_are_read_with_either_quote_or_none_and_comments_skipped() {
        let html = r#"<p>x</p><SCRIPT data-x=">" src='https://i/badge/saipa/badge.js'></script>
            <!-- <script src="https://i/badge/old/badge.js"></script> -->
            <abbr title=a><section data-emta-badge="saipa" data-stars=5 href="https://i/badge/saipa">"#;
        let tags = all_tags(html);
        let scripts: Vec<_> = tags.iter().filter(|(n, _)| n == "script").collect();
        assert_eq!(scripts.len(), 1, "{tags:?}");
        assert_eq!(
            attr(&scripts[0].1, "src"),
            Some("https://i/badge/saipa/badge.js")
        );
        let marked: Vec<_> = tags
            .iter()
            .filter(|(_, a)| attr(a, "data-emta-badge").is_some())
            .collect();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].0, "section");
        assert_eq!(attr(&marked[0].1, "data-stars"), Some("5"));
        assert!(tags.iter().any(|(n, _)| n == "abbr"));
    }
}
