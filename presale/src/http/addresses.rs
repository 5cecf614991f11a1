//! A replica's per-address request budget (governor, in process, no store): the cheap
//! first line in front of every page, before the shared counters of the steps that cost.
//!
//! An address is what a client can change freely, so the budget is keyed by
//! [`service_kit::net::limit_addr`]: an IPv4 address (also one an IPv6 address carries),
//! or an IPv6 client's whole /64, which one subscriber rotates through at will. Keyed by
//! the bare address, 2^64 of them made the limit nothing and the map without bound. The
//! IdP's sign-in counters also budget an IPv6 /56 and /48, with a factor for configured
//! carrier-NAT ranges; this first line does not (a mobile carrier's /48 holds thousands
//! of citizens, and a surge's pages after sign-in are guarded per national ID). Idle
//! entries are dropped by [`Addresses::trim`], run every few seconds, so a flood of
//! addresses holds memory only while it lasts.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use service_kit::net::limit_addr;

/// How often idle entries are dropped.
pub(crate) const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct Addresses {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Addresses {
    /// `per_sec` requests a second for each address (bursts of twice that).
    pub(crate) fn new(per_sec: u32) -> Self {
        let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_sec.max(1).saturating_mul(2)).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Whether a request from `ip` is within its budget (and counts it).
    pub(crate) fn check(&self, ip: IpAddr) -> bool {
        self.limiter.check_key(&limit_addr(ip, 64)).is_ok()
    }

    /// Drops the entries whose budget is full again (they are as if never seen).
    pub(crate) fn trim(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::Addresses;

    fn v6(prefix: u128, host: u64) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(prefix | u128::from(host)))
    }

    /// An IPv6 client rotating through its own /64 spends one budget: every address of it
    /// is the same subscriber. First failure (keyed by the bare address): 100 of 100 passed.
    #[test]
    fn a_client_rotating_through_its_64_gets_one_budget() {
        let a = Addresses::new(5);
        let one_64 = 0x2001_0db8_0001_0002u128 << 64;
        let passed = (0..100u64).filter(|i| a.check(v6(one_64, *i))).count();
        assert_eq!(passed, 10, "a burst of twice the rate, then refused");
        assert!(
            a.check("2001:db8:1:3::1".parse().expect("ip")),
            "the next /64 is its own"
        );
        // IPv4 as is; an IPv4-mapped address is that IPv4 address.
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let passed = (0..20)
            .filter(|i| a.check(if i % 2 == 0 { v4 } else { mapped }))
            .count();
        assert_eq!(passed, 10, "one budget for both spellings");
    }

    /// A flood of addresses holds memory only while it lasts.
    #[test]
    fn idle_addresses_are_dropped() {
        let a = Addresses::new(1000);
        for i in 0..10_000u128 {
            assert!(a.check(v6(i << 80, 0)));
        }
        assert_eq!(a.len(), 10_000);
        // Full again after burst / rate = 2 ms.
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.trim();
        assert_eq!(a.len(), 0, "idle entries still held");
    }
}
