//! Government services and the SMS gateway.
//!
//! The IdP always speaks HTTP to them ([`registry::Registry`], [`sms::Sms`]) with timeouts
//! and clear errors. Tests, the local demo and the load tool point it at stubs that serve
//! the same wire contracts over synthetic citizens (`testkit::stubs`), so these adapters
//! are exercised for real everywhere.

pub mod registry;
pub mod sms;

/// Why a call to an upstream service did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{service} timed out")]
    Timeout { service: &'static str },
    #[error("{service} is unreachable: {detail}")]
    Unreachable {
        service: &'static str,
        detail: String,
    },
    #[error("{service} answered {status}")]
    Status { service: &'static str, status: u16 },
    #[error("{service} answered something unreadable: {detail}")]
    Protocol {
        service: &'static str,
        detail: String,
    },
}

impl UpstreamError {
    pub(crate) fn from_reqwest(service: &'static str, e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout { service }
        } else if let Some(status) = e.status() {
            Self::Status {
                service,
                status: status.as_u16(),
            }
        } else if e.is_decode() {
            Self::Protocol {
                service,
                detail: e.to_string(),
            }
        } else {
            Self::Unreachable {
                service,
                detail: e.to_string(),
            }
        }
    }
}

/// POSTs `body` as JSON to `service` at `url` and reads its JSON answer; any failure is an
/// [`UpstreamError`] naming the service.
pub(crate) async fn post_json<A: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    service: &'static str,
    url: String,
    body: &impl serde::Serialize,
) -> Result<A, UpstreamError> {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| UpstreamError::from_reqwest(service, e))?
        .json()
        .await
        .map_err(|e| UpstreamError::from_reqwest(service, e))
}

/// One HTTP client for all upstreams: connection pooling matters during a surge.
pub(crate) fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
