//! The civil registry (person and birth date) and the mobile-ownership service (is this
//! number registered to this national ID).
//!
//! Wire contract, JSON over HTTP POST (documented in the README):
//! - `{registry}/persons/verify` `{"national_id","birth_date":"YYYY/MM/DD"}` →
//!   `{"match":true,"given_name","family_name"}` or `{"match":false}`
//! - `{ownership}/ownership/verify` `{"national_id","mobile":"+989…"}` → `{"match":bool}`

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{http_client, post_json, Breaker, UpstreamError};
use crate::domain::{JalaliDate, MobileNumber, NationalId};

/// What the civil registry says of a national ID and birth date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonCheck {
    Match {
        given_name: String,
        family_name: String,
    },
    Mismatch,
}

#[derive(Serialize)]
pub struct PersonQuery<'a> {
    pub national_id: &'a str,
    pub birth_date: String,
}

#[derive(Serialize, Deserialize, Default)]
pub struct PersonAnswer {
    #[serde(rename = "match")]
    pub matched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

#[derive(Serialize)]
pub struct OwnershipQuery<'a> {
    pub national_id: &'a str,
    pub mobile: &'a str,
}

#[derive(Serialize, Deserialize)]
pub struct OwnershipAnswer {
    #[serde(rename = "match")]
    pub matched: bool,
}

/// How long a failing registry is left alone before it is asked again.
const BREAKER_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(10);

/// The civil registry and the mobile-ownership service, over HTTP.
#[derive(Clone)]
pub struct Registry {
    client: reqwest::Client,
    registry_url: String,
    ownership_url: String,
    person_breaker: Arc<Breaker>,
    ownership_breaker: Arc<Breaker>,
}

impl Registry {
    pub fn new(registry_url: &str, ownership_url: &str, timeout: std::time::Duration) -> Self {
        Self {
            client: http_client(timeout),
            registry_url: registry_url.trim_end_matches('/').to_owned(),
            ownership_url: ownership_url.trim_end_matches('/').to_owned(),
            person_breaker: Arc::new(Breaker::new("civil registry", 5, BREAKER_COOLDOWN)),
            ownership_breaker: Arc::new(Breaker::new(
                "mobile ownership service",
                5,
                BREAKER_COOLDOWN,
            )),
        }
    }

    #[tracing::instrument(skip_all, name = "registry.person")]
    pub async fn check_person(
        &self,
        nid: &NationalId,
        birth: &JalaliDate,
    ) -> Result<PersonCheck, UpstreamError> {
        const SERVICE: &str = "civil registry";
        let query = PersonQuery {
            national_id: nid.as_str(),
            birth_date: birth.canonical(),
        };
        let url = format!("{}/persons/verify", self.registry_url);
        let answer: PersonAnswer = match self
            .person_breaker
            .call(post_json(&self.client, SERVICE, url, &query))
            .await
        {
            Err(UpstreamError::Rejected { status, .. }) => {
                tracing::warn!(service = SERVICE, status, "the registry refused a query");
                return Ok(PersonCheck::Mismatch);
            }
            answer => answer?,
        };
        match (answer.matched, answer.given_name, answer.family_name) {
            (true, Some(given_name), Some(family_name)) => Ok(PersonCheck::Match {
                given_name,
                family_name,
            }),
            (true, _, _) => Err(UpstreamError::Protocol {
                service: SERVICE,
                detail: "a match without names".into(),
            }),
            (false, _, _) => Ok(PersonCheck::Mismatch),
        }
    }

    #[tracing::instrument(skip_all, name = "registry.ownership")]
    pub async fn owns_mobile(
        &self,
        nid: &NationalId,
        mobile: &MobileNumber,
    ) -> Result<bool, UpstreamError> {
        const SERVICE: &str = "mobile ownership service";
        let query = OwnershipQuery {
            national_id: nid.as_str(),
            mobile: mobile.e164(),
        };
        let url = format!("{}/ownership/verify", self.ownership_url);
        match self
            .ownership_breaker
            .call(post_json(&self.client, SERVICE, url, &query))
            .await
        {
            Ok(OwnershipAnswer { matched, .. }) => Ok(matched),
            Err(UpstreamError::Rejected { status, .. }) => {
                tracing::warn!(service = SERVICE, status, "the registry refused a query");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
