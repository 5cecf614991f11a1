//! Calls to upstream services (government registries, banks, the SMS gateway): one error
//! type naming the service, a circuit breaker per upstream and replica, and a JSON POST
//! whose refusals of a query (400, 404, 422) are answers, not outages. Both services'
//! adapters are built on it.

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
    /// It answered, refusing the query itself (a 4xx other than a credential fault or
    /// throttling): a definite answer about this input, not an outage. It is neither
    /// given back to the citizen as a free try nor counted by the breaker, so inputs the
    /// registry rejects cannot hold the breaker open for everyone.
    #[error("{service} refused the query ({status})")]
    Rejected { service: &'static str, status: u16 },
    /// Not asked: it failed repeatedly just now and the breaker gives it time to recover.
    #[error("{service} is not asked for {retry_after}s after repeated failures")]
    Open {
        service: &'static str,
        retry_after: u64,
    },
}

impl UpstreamError {
    /// Seconds a citizen should wait before trying again.
    pub fn retry_after(&self) -> u64 {
        match self {
            Self::Open { retry_after, .. } => *retry_after,
            _ => 30,
        }
    }
}

/// A circuit breaker per upstream and replica: after `threshold` failures in a row the
/// upstream is not asked for `cooldown`, so a struggling government service is not
/// hammered by retries and citizens get an immediate 503 with Retry-After instead of a
/// timeout each. After the cooldown calls go through again; one more failure reopens it,
/// one success closes it.
pub struct Breaker {
    service: &'static str,
    threshold: u32,
    cooldown: std::time::Duration,
    failures: std::sync::atomic::AtomicU32,
    open_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Breaker {
    pub fn new(service: &'static str, threshold: u32, cooldown: std::time::Duration) -> Self {
        Self {
            service,
            threshold: threshold.max(1),
            cooldown,
            failures: std::sync::atomic::AtomicU32::new(0),
            open_until: std::sync::Mutex::new(None),
        }
    }

    /// Runs `call` unless the breaker is open, and records its outcome.
    pub async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        if let Some(until) = *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) {
            if until > now {
                return Err(UpstreamError::Open {
                    service: self.service,
                    retry_after: until.duration_since(now).as_secs().max(1),
                });
            }
        }
        let result = call.await;
        match &result {
            // It answered, either way.
            Ok(_) | Err(UpstreamError::Rejected { .. }) => {
                self.failures.store(0, Ordering::Relaxed);
            }
            Err(_) => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.threshold {
                    *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(std::time::Instant::now() + self.cooldown);
                    metrics::counter!("emta_breaker_opened_total", "service" => self.service)
                        .increment(1);
                    tracing::warn!(service = self.service, failures = n, "circuit breaker open");
                }
            }
        }
        result
    }
}

impl UpstreamError {
    pub fn from_reqwest(service: &'static str, e: reqwest::Error) -> Self {
        // The URL stays out of the error and so out of the logs: it may carry credentials
        // or a query the upstream took as a secret.
        let e = e.without_url();
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
pub async fn post_json<A: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    service: &'static str,
    url: String,
    body: &impl serde::Serialize,
) -> Result<A, UpstreamError> {
    let answer = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| UpstreamError::from_reqwest(service, e))?;
    let status = answer.status();
    // A refusal of this query (a malformed or unknown record: 400, 404, 422) is an
    // answer; anything else (our credentials refused, a timeout, throttling, a gateway's
    // odd status) is the service's or our fault, like a 5xx.
    if matches!(status.as_u16(), 400 | 404 | 422) {
        return Err(UpstreamError::Rejected {
            service,
            status: status.as_u16(),
        });
    }
    answer
        .error_for_status()
        .map_err(|e| UpstreamError::from_reqwest(service, e))?
        .json()
        .await
        .map_err(|e| UpstreamError::from_reqwest(service, e))
}

/// One HTTP client for all upstreams: connection pooling matters during a surge.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The signature a bank puts on its redirect back to emta after a mandate (issue 30):
/// base64url of HMAC-SHA256 under the callback key it issued, over
/// `token|state|status|amount`. Banks and their stubs sign with it; presale checks it.
pub fn bank_callback_signature(
    key: &[u8],
    token: &str,
    state: &str,
    status: &str,
    amount: i64,
) -> String {
    use hmac::Mac;
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(format!("{token}|{state}|{status}|{amount}").as_bytes());
    crate::keys::b64(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 32, point 11: an upstream error logged the full URL, credentials and query
    /// included. First failure: the error read "…http://emta:URLSECRET@127.0.0.1:9/…".
    #[tokio::test]
    async fn an_upstream_error_never_carries_its_url() {
        let e = reqwest::Client::new()
            .get("http://emta:URLSECRET@127.0.0.1:9/check?token=QUERYSECRET")
            .send()
            .await
            .expect_err("nothing listens on port 9");
        let shown = UpstreamError::from_reqwest("registry", e).to_string();
        assert!(
            !shown.contains("URLSECRET") && !shown.contains("QUERYSECRET"),
            "{shown}"
        );
    }
}

/// The SMS gateway, as both services speak to it: `POST {sms}/messages`
/// `{"to":"+989…","text":"…"}`, any 2xx accepted, within a timeout and behind a breaker.
/// Texts may hold a code: they are never logged.
#[derive(Clone)]
pub struct Sms {
    client: reqwest::Client,
    url: String,
    breaker: std::sync::Arc<Breaker>,
}

impl Sms {
    pub const SERVICE: &'static str = "SMS gateway";

    pub fn http(url: &str, timeout: std::time::Duration) -> Self {
        Self {
            client: http_client(timeout),
            url: format!("{}/messages", url.trim_end_matches('/')),
            breaker: std::sync::Arc::new(Breaker::new(
                Self::SERVICE,
                5,
                std::time::Duration::from_secs(10),
            )),
        }
    }

    /// Sends `text` to `to` (E.164).
    #[tracing::instrument(skip_all, name = "sms.send")]
    pub async fn send(&self, to: &str, text: &str) -> Result<(), UpstreamError> {
        #[derive(serde::Serialize)]
        struct Message<'a> {
            to: &'a str,
            text: &'a str,
        }
        let send = async {
            self.client
                .post(&self.url)
                .json(&Message { to, text })
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| UpstreamError::from_reqwest(Self::SERVICE, e))
        };
        self.breaker.call(send).await?;
        Ok(())
    }
}
