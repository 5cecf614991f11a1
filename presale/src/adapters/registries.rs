//! The registries a license asks at registration (issue 30): the traffic police (is this
//! national ID's driving licence valid) and the vehicle registry (which vehicles are
//! registered to it, and whether a plate of theirs is active). HTTP services like the
//! civil registry the IdP asks, with the same discipline: a timeout, a circuit breaker per
//! registry and replica, and errors that name the registry and never carry the URL.
//!
//! Wire contract, JSON over HTTP POST (documented in the README; 404 is "nobody of that ID
//! on its records": no licence, no vehicle; 400 and 422 are errors, "try again"):
//! - `{traffic_police}/licences/verify` `{"national_id"}` → `{"valid":bool}`
//! - `{vehicle_registry}/vehicles/query` `{"national_id"}` →
//!   `{"vehicles":[{"registered_at":UNIX_SECONDS,"plate_active":bool}]}`

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::upstream::{http_client, post_json, Breaker, UpstreamError};

use crate::domain::NationalId;

pub const TRAFFIC_POLICE: &str = "traffic police registry";
pub const VEHICLE_REGISTRY: &str = "vehicle registry";

/// How long a failing registry is left alone before it is asked again.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Serialize)]
pub struct PersonQuery<'a> {
    pub national_id: &'a str,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenceAnswer {
    pub valid: bool,
}

/// One vehicle registered to the national ID.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vehicle {
    /// When it was registered to this national ID (Unix seconds).
    pub registered_at: i64,
    /// Whether its plate is still active under this national ID.
    pub plate_active: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct VehiclesAnswer {
    pub vehicles: Vec<Vehicle>,
}

/// The two registries over HTTP; a registry left unconfigured answers as unreachable, so
/// a license that asks it is "try again", never a pass.
#[derive(Clone)]
pub struct Registries {
    client: reqwest::Client,
    traffic_police: Option<String>,
    vehicle_registry: Option<String>,
    licence_breaker: Arc<Breaker>,
    vehicle_breaker: Arc<Breaker>,
}

impl Registries {
    pub fn new(
        traffic_police: Option<&str>,
        vehicle_registry: Option<&str>,
        timeout: Duration,
    ) -> Self {
        let base = |u: Option<&str>| {
            u.map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty())
        };
        Self {
            client: http_client(timeout),
            traffic_police: base(traffic_police),
            vehicle_registry: base(vehicle_registry),
            licence_breaker: Arc::new(Breaker::new(TRAFFIC_POLICE, 5, BREAKER_COOLDOWN)),
            vehicle_breaker: Arc::new(Breaker::new(VEHICLE_REGISTRY, 5, BREAKER_COOLDOWN)),
        }
    }

    fn url(
        base: &Option<String>,
        service: &'static str,
        path: &str,
    ) -> Result<String, UpstreamError> {
        base.as_ref()
            .map(|b| format!("{b}{path}"))
            .ok_or(UpstreamError::Unreachable {
                service,
                detail: "not configured for this deployment".into(),
            })
    }

    /// Whether the traffic police hold a valid driving licence for `nid`. A query they
    /// refuse (no such person on their records) is no valid licence.
    #[tracing::instrument(skip_all, name = "registry.driving_licence")]
    pub async fn driving_licence(&self, nid: &NationalId) -> Result<bool, UpstreamError> {
        let url = Self::url(&self.traffic_police, TRAFFIC_POLICE, "/licences/verify")?;
        let query = PersonQuery {
            national_id: nid.as_str(),
        };
        match self
            .licence_breaker
            .call(post_json::<LicenceAnswer>(
                &self.client,
                TRAFFIC_POLICE,
                url,
                &query,
            ))
            .await
        {
            Ok(a) => Ok(a.valid),
            // No such person on their records: no licence.
            Err(UpstreamError::Rejected { status: 404, .. }) => Ok(false),
            // A query they cannot read is our fault or theirs, never the citizen's.
            Err(e) => Err(e),
        }
    }

    /// The vehicles registered to `nid`: a 404 (nobody of that ID on its records) is no
    /// vehicle; any other refusal is an error here, not "none": a registry that will not
    /// say is never read as a clean record.
    #[tracing::instrument(skip_all, name = "registry.vehicles")]
    pub async fn vehicles(&self, nid: &NationalId) -> Result<Vec<Vehicle>, UpstreamError> {
        let url = Self::url(&self.vehicle_registry, VEHICLE_REGISTRY, "/vehicles/query")?;
        let query = PersonQuery {
            national_id: nid.as_str(),
        };
        match self
            .vehicle_breaker
            .call(post_json::<VehiclesAnswer>(
                &self.client,
                VEHICLE_REGISTRY,
                url,
                &query,
            ))
            .await
        {
            Ok(a) => Ok(a.vehicles),
            Err(UpstreamError::Rejected { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
