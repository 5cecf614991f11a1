//! The participating banks' mandate API (issue 30): a down payment held in a
//! power-of-attorney account (حساب وکالتی), confirmed by the bank, then captured for the
//! manufacturer or released, each exactly once.
//!
//! Wire contract (documented in the README), JSON over HTTP with the bank's API key as a
//! bearer token; every call that changes anything carries an `Idempotency-Key`, which the
//! bank keeps at least 24 hours: the same key again returns the first answer, the same key
//! with other parameters is refused (409):
//! - `POST {bank}/api/mandates` `{"reference","national_id","amount","title","round",
//!   "callback","state"}` → `{"token","pay_url"}`: the citizen is sent to `pay_url`, where
//!   they authenticate to the bank and approve; the bank sends them back to `callback`
//!   with `token`, `state`, `status`, `amount` and `sig` (see
//!   [`service_kit::upstream::bank_callback_signature`]), and may post the same fields to
//!   it server-to-server, as often as it likes.
//! - `POST {bank}/api/mandates/{token}/verify` → the mandate as the bank holds it:
//!   `{"token","reference","national_id","amount","title","round","status"}`.
//! - `POST {bank}/api/mandates/{token}/capture` `{"amount"}` and
//!   `POST {bank}/api/mandates/{token}/release` `{}` → `{"token","status"}`.
//! - `GET {bank}/api/statement?round=R` → `{"entries":[{"token","reference","national_id",
//!   "amount","title","status","captures","releases"}]}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::upstream::{http_client, Breaker, UpstreamError};

use crate::config::BankConfig;

/// What emta asks a bank to hold.
#[derive(Serialize, Debug, Clone)]
pub struct MandateRequest<'a> {
    /// emta's hold id.
    pub reference: &'a str,
    pub national_id: &'a str,
    pub amount: i64,
    pub title: &'a str,
    /// The license number: the round the mandate is for.
    pub round: &'a str,
    pub callback: &'a str,
    pub state: &'a str,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct MandateCreated {
    pub token: String,
    pub pay_url: String,
}

/// A mandate as the bank holds it.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Mandate {
    pub token: String,
    pub reference: String,
    pub national_id: String,
    pub amount: i64,
    pub title: String,
    pub round: String,
    /// `pending`, `held`, `declined`, `captured`, `released`.
    pub status: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct Settlement {
    pub token: String,
    pub status: String,
}

/// One line of a bank's statement for a round.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct StatementEntry {
    pub token: String,
    pub reference: String,
    pub national_id: String,
    pub amount: i64,
    pub title: String,
    pub status: String,
    pub captures: u32,
    pub releases: u32,
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
pub struct Statement {
    pub entries: Vec<StatementEntry>,
}

/// How long a failing bank is left alone before it is asked again.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

/// The banks this deployment knows, over HTTP.
#[derive(Clone, Default)]
pub struct Banks {
    banks: HashMap<String, Arc<Bank>>,
}

pub struct Bank {
    pub config: BankConfig,
    client: reqwest::Client,
    breaker: Breaker,
}

impl Banks {
    pub fn new(configs: &[BankConfig], timeout: Duration) -> Self {
        Self {
            banks: configs
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        Arc::new(Bank {
                            config: c.clone(),
                            client: http_client(timeout),
                            breaker: Breaker::new("a participating bank", 5, BREAKER_COOLDOWN),
                        }),
                    )
                })
                .collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Bank>> {
        self.banks.get(id)
    }

    /// The banks as (id, Persian name, English name), in id order.
    pub fn names(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .banks
            .values()
            .map(|b| {
                (
                    b.config.id.clone(),
                    b.config.name_fa.clone(),
                    b.config.name.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// What the service names in errors and logs (never the URL).
pub const SERVICE: &str = "a participating bank";

impl Bank {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.url.trim_end_matches('/'))
    }

    async fn call<A: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        key: Option<&str>,
    ) -> Result<A, UpstreamError> {
        let mut req = req.bearer_auth(self.config.api_key.expose());
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let call = async {
            let answer = req
                .send()
                .await
                .map_err(|e| UpstreamError::from_reqwest(SERVICE, e))?;
            let status = answer.status().as_u16();
            if matches!(status, 400 | 404 | 409 | 422) {
                return Err(UpstreamError::Rejected {
                    service: SERVICE,
                    status,
                });
            }
            answer
                .error_for_status()
                .map_err(|e| UpstreamError::from_reqwest(SERVICE, e))?
                .json::<A>()
                .await
                .map_err(|e| UpstreamError::from_reqwest(SERVICE, e))
        };
        self.breaker.call(call).await
    }

    /// Asks the bank for a mandate; the key makes a retry the same request.
    pub async fn create_mandate(
        &self,
        m: &MandateRequest<'_>,
        key: &str,
    ) -> Result<MandateCreated, UpstreamError> {
        self.call(
            self.client.post(self.url("/api/mandates")).json(m),
            Some(key),
        )
        .await
    }

    /// The mandate as the bank holds it now, server-to-server: a read, so no idempotency
    /// key (a key would have the bank replay its first answer, a `pending` seen before the
    /// approval, for a day).
    pub async fn verify(&self, token: &str) -> Result<Mandate, UpstreamError> {
        let path = format!("/api/mandates/{}/verify", urlencode(token));
        self.call(
            self.client
                .post(self.url(&path))
                .json(&serde_json::json!({})),
            None,
        )
        .await
    }

    /// Captures (`capture`) or releases a confirmed mandate of `amount`.
    pub async fn settle(
        &self,
        token: &str,
        op: &str,
        amount: i64,
        key: &str,
    ) -> Result<Settlement, UpstreamError> {
        let path = format!("/api/mandates/{}/{op}", urlencode(token));
        let body = if op == "capture" {
            serde_json::json!({ "amount": amount })
        } else {
            serde_json::json!({})
        };
        self.call(self.client.post(self.url(&path)).json(&body), Some(key))
            .await
    }

    /// The bank's statement for a round (a license number).
    pub async fn statement(&self, round: &str) -> Result<Statement, UpstreamError> {
        self.call(
            self.client
                .get(self.url("/api/statement"))
                .query(&[("round", round)]),
            None,
        )
        .await
    }

    /// Whether `sig` is the bank's signature of a redirect back.
    pub fn signed(&self, token: &str, state: &str, status: &str, amount: i64, sig: &str) -> bool {
        let expected = service_kit::upstream::bank_callback_signature(
            self.config.callback_key.expose().as_bytes(),
            token,
            state,
            status,
            amount,
        );
        service_kit::keys::ct_eq(&expected, sig)
    }
}

/// A path segment: tokens are the bank's and could hold anything.
fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
