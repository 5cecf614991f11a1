//! A replica's per-address request budget (governor, in process, no store): the cheap
//! first line in front of every page, before the shared counters of the steps that cost.
//!
//! An address is what a client can change freely, so the budget is keyed by its limit
//! subject ([`service_kit::net::limit_subject`], as the IdP's counters are): an IPv4
//! address, or an IPv6 client's whole /64, which one subscriber rotates through at will.
//! Keyed by the bare address, 2^64 of them made the limit nothing and the map without
//! bound. Idle subjects are dropped by [`Addresses::trim`], run every few seconds, so a
//! flood of addresses holds memory only while it lasts.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The prefix an IPv6 client is limited by.
pub(crate) const V6_PREFIX: u8 = 64;

/// How often idle subjects are dropped.
pub(crate) const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct Addresses {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl Addresses {
    /// `per_sec` requests a second for each subject, with bursts of twice that.
    pub(crate) fn new(per_sec: u32) -> Self {
        let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_sec.max(1).saturating_mul(2)).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Whether a request from `ip` is within its subject's budget (and counts it).
    pub(crate) fn check(&self, ip: IpAddr) -> bool {
        let subject = service_kit::net::limit_subject(&ip.to_string(), V6_PREFIX);
        self.limiter.check_key(&subject).is_ok()
    }

    /// Drops the subjects whose budget is full again (they are as if never seen).
    pub(crate) fn trim(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Subjects held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::Addresses;

    fn in_one_64(i: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_0001_0002u128 << 64) | u128::from(i),
        ))
    }

    /// An IPv6 client rotating through its own /64 spends one budget: every address of it
    /// is the same subscriber.
    #[test]
    fn a_client_rotating_through_its_64_gets_one_budget() {
        let a = Addresses::new(5);
        let passed = (0..100u64).filter(|i| a.check(in_one_64(*i))).count();
        assert_eq!(passed, 10, "a burst of twice the rate, then refused");
        assert!(a.len() <= 1, "one subject held, not {}", a.len());
        assert!(
            a.check("2001:db8:1:3::1".parse().expect("ip")),
            "the next /64 is its own"
        );
    }

    /// A flood of addresses holds memory only while it lasts.
    #[test]
    fn idle_addresses_are_dropped() {
        let a = Addresses::new(1000);
        for i in 0..10_000u32 {
            let ip = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            assert!(a.check(ip));
        }
        assert_eq!(a.len(), 10_000);
        // Full again after burst / rate = 2 ms.
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.trim();
        assert_eq!(a.len(), 0, "idle subjects still held");
    }
}
