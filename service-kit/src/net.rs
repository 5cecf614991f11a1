//! The client's address as the deployment's own ingress saw it.

use axum::http::HeaderMap;

/// The rightmost X-Forwarded-For entry (the one the deployment's own ingress appended;
/// entries to its left are whatever the client claimed).
pub fn forwarded_for(h: &HeaderMap) -> Option<String> {
    h.get("x-forwarded-for")?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
