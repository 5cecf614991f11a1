//! The SMS gateway, as the IdP speaks to it: `POST {sms}/messages`
//! `{"to":"+989…","text":"…"}`, any 2xx is accepted. Presale tells citizens what happened
//! to their place and their money (issue 30); the texts carry no code and no national ID.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use service_kit::upstream::{http_client, Breaker, UpstreamError};

pub const SERVICE: &str = "SMS gateway";

#[derive(Serialize)]
struct Message<'a> {
    to: &'a str,
    text: &'a str,
}

#[derive(Clone)]
pub struct Sms {
    client: reqwest::Client,
    url: String,
    breaker: Arc<Breaker>,
}

impl Sms {
    pub fn http(url: &str, timeout: Duration) -> Self {
        Self {
            client: http_client(timeout),
            url: format!("{}/messages", url.trim_end_matches('/')),
            breaker: Arc::new(Breaker::new(SERVICE, 5, Duration::from_secs(10))),
        }
    }

    /// Sends `text` to `to` (E.164).
    pub async fn send(&self, to: &str, text: &str) -> Result<(), UpstreamError> {
        let send = async {
            self.client
                .post(&self.url)
                .json(&Message { to, text })
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| UpstreamError::from_reqwest(SERVICE, e))
        };
        self.breaker.call(send).await?;
        Ok(())
    }
}
