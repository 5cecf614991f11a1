//! The SMS gateway. Wire contract: `POST {sms}/messages` `{"to":"+989…","text":"…"}`,
//! any 2xx is accepted.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{http_client, Breaker, UpstreamError};
use crate::domain::MobileNumber;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SmsMessage {
    pub to: String,
    pub text: String,
}

/// The SMS gateway over HTTP.
#[derive(Clone)]
pub struct Sms {
    client: reqwest::Client,
    url: String,
    breaker: Arc<Breaker>,
}

impl Sms {
    pub fn http(url: &str, timeout: std::time::Duration) -> Self {
        Self {
            client: http_client(timeout),
            url: format!("{}/messages", url.trim_end_matches('/')),
            breaker: Arc::new(Breaker::new(
                "SMS gateway",
                5,
                std::time::Duration::from_secs(10),
            )),
        }
    }

    /// Sends `text` (which holds a code: it is never logged) to `to`.
    #[tracing::instrument(skip_all, name = "sms.send")]
    pub async fn send(&self, to: &MobileNumber, text: &str) -> Result<(), UpstreamError> {
        const SERVICE: &str = "SMS gateway";
        let send = async {
            self.client
                .post(&self.url)
                .json(&SmsMessage {
                    to: to.e164().to_owned(),
                    text: text.to_owned(),
                })
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| UpstreamError::from_reqwest(SERVICE, e))
        };
        self.breaker.call(send).await?;
        Ok(())
    }
}
