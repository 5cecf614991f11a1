//! The registries' rules at registration (issue 30): a valid driving licence (traffic
//! police) and no vehicle registered to the national ID within the license's months, nor
//! an active plate (vehicle registry). A license chooses them; emta's own applications
//! stay as the fallback rule it may choose as well (`Exclusion`, checked in the
//! application's transaction).
//!
//! Each answer is kept for `EMTA_REGISTRY_CACHE_SECS` in the shared ephemeral store under
//! a keyed hash of the national ID (a look at Redis reveals no identity), and every call a
//! cache cannot answer counts against one deployment-wide budget per second
//! (`EMTA_REGISTRY_RPS`), as the IdP's registry calls do: a surge costs the registries what
//! they agreed to, and past it the citizen is told to try again. A registry that cannot
//! answer (down, slow, its breaker open, past the budget) is "try again" (503 with
//! Retry-After), never a refusal and never a pass.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use service_kit::upstream::UpstreamError;

use crate::adapters::registries::{Vehicle, TRAFFIC_POLICE, VEHICLE_REGISTRY};
use crate::app::Core;
use crate::domain::license::MONTH;
use crate::domain::{License, NationalId, Refusal, Registration};
use crate::error::{Error, Result};

/// The deployment-wide budget's counter (one per second, shared by every replica).
const BUDGET_KEY: &str = "rl:budget:registries";

/// What the rules decide from the registries' answers at `now` (Unix seconds): `licence`
/// and `vehicles` are given when the rule that needs them is asked.
pub fn judge(
    rules: &Registration,
    licence: Option<bool>,
    vehicles: Option<&[Vehicle]>,
    now: i64,
) -> std::result::Result<(), Refusal> {
    if rules.driving_licence && licence != Some(true) {
        return Err(Refusal::NoDrivingLicence);
    }
    if let Some(months) = rules.no_vehicle_months {
        let since = now - months * MONTH;
        let recent = vehicles
            .unwrap_or_default()
            .iter()
            .any(|v| v.plate_active || v.registered_at >= since);
        if recent || vehicles.is_none() {
            return Err(Refusal::RecentVehicle);
        }
    }
    Ok(())
}

impl Core {
    /// Whether `nid` passes the registries' rules of license `l`: `Ok(Err(refusal))` names
    /// the rule; `Err` is an answer that could not be had (try again).
    pub(crate) async fn check_registries(
        &self,
        l: &License,
        nid: &NationalId,
    ) -> Result<std::result::Result<(), Refusal>> {
        let Some(rules) = l.registration.as_ref().filter(|r| r.asks_registries()) else {
            return Ok(Ok(()));
        };
        let licence = if rules.driving_licence {
            let valid: bool = self
                .asked(
                    "licence",
                    TRAFFIC_POLICE,
                    nid,
                    self.registries.driving_licence(nid),
                )
                .await?;
            if !valid {
                return Ok(Err(Refusal::NoDrivingLicence));
            }
            Some(valid)
        } else {
            None
        };
        let vehicles = if rules.no_vehicle_months.is_some() {
            let v: Vec<Vehicle> = self
                .asked(
                    "vehicles",
                    VEHICLE_REGISTRY,
                    nid,
                    self.registries.vehicles(nid),
                )
                .await?;
            Some(v)
        } else {
            None
        };
        Ok(judge(
            rules,
            licence,
            vehicles.as_deref(),
            service_kit::clock::now(),
        ))
    }

    /// A registry's answer about `nid`: from the cache, or asked within the budget and
    /// then kept. `ask` is only polled on a miss.
    async fn asked<T: Serialize + DeserializeOwned>(
        &self,
        kind: &str,
        service: &'static str,
        nid: &NationalId,
        ask: impl std::future::Future<Output = std::result::Result<T, UpstreamError>>,
    ) -> Result<T> {
        let key = format!(
            "reg:{kind}:{}",
            &self.keys.hash("registry-cache", nid.as_str().as_bytes())[..22]
        );
        if let Some(kept) = self.sessions.get(&key).await? {
            if let Ok(v) = serde_json::from_str(&kept) {
                metrics::counter!("emta_presale_registry_cache_total", "outcome" => "hit")
                    .increment(1);
                return Ok(v);
            }
        }
        metrics::counter!("emta_presale_registry_cache_total", "outcome" => "miss").increment(1);
        if let Err(service_kit::limit::LimitError::Limited { retry_after }) = self
            .limiter
            .hit_key(BUDGET_KEY, self.registry_rps, Duration::from_secs(1))
            .await
        {
            return Err(Error::Upstream {
                service,
                retry_after,
            });
        }
        let answer = ask.await.map_err(|e| {
            tracing::warn!(error = %e, "registry");
            Error::Upstream {
                service,
                retry_after: e.retry_after(),
            }
        })?;
        if let Ok(json) = serde_json::to_string(&answer) {
            if let Err(e) = self.sessions.put(&key, &json, self.registry_cache).await {
                tracing::warn!(error = %e, "registry cache");
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn car(months_ago: i64, plate_active: bool) -> Vehicle {
        Vehicle {
            registered_at: NOW - months_ago * MONTH,
            plate_active,
        }
    }

    #[test]
    fn each_rule_refuses_with_its_own_reason() {
        let both = Registration {
            driving_licence: true,
            no_vehicle_months: Some(48),
            hold: None,
        };
        assert_eq!(judge(&both, Some(true), Some(&[]), NOW), Ok(()));
        assert_eq!(
            judge(&both, Some(false), Some(&[]), NOW),
            Err(Refusal::NoDrivingLicence)
        );
        assert_eq!(
            judge(&both, Some(true), Some(&[car(20, false)]), NOW),
            Err(Refusal::RecentVehicle),
            "a car bought 20 months ago"
        );
        assert_eq!(
            judge(&both, Some(true), Some(&[car(60, false)]), NOW),
            Ok(()),
            "a car bought 60 months ago and sold since"
        );
        assert_eq!(
            judge(&both, Some(true), Some(&[car(100, true)]), NOW),
            Err(Refusal::RecentVehicle),
            "an active plate counts, however old"
        );
    }

    #[test]
    fn an_answer_not_had_never_passes() {
        let both = Registration {
            driving_licence: true,
            no_vehicle_months: Some(48),
            hold: None,
        };
        assert!(judge(&both, None, Some(&[]), NOW).is_err());
        assert!(judge(&both, Some(true), None, NOW).is_err());
        assert_eq!(judge(&Registration::default(), None, None, NOW), Ok(()));
    }
}
