//! A replica's per-address request budget (governor, in process, no store): the cheap
//! first line in front of every page, before the shared counters of the steps that cost.
//!
//! An address is what a client can change freely, so the budget is keyed as the IdP's
//! counters are ([`service_kit::net::limit_addr`]): an IPv4 address, or an IPv6 client's
//! whole /64, which one subscriber rotates through at will; and an IPv6 /64 also spends
//! from its /56 (8 times its own budget) and its /48 (32 times), so rotating through the
//! /64s of a home or a site buys little more. Keyed by the bare address, 2^64 of them made
//! the limit nothing and the map without bound. Idle entries are dropped by
//! [`Addresses::trim`], run every few seconds, so a flood of addresses holds memory only
//! while it lasts.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use service_kit::net::limit_addr;

/// How often idle entries are dropped.
pub(crate) const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct Addresses {
    /// An IPv4 address or an IPv6 /64.
    own: DefaultKeyedRateLimiter<IpAddr>,
    /// An IPv6 /56 and /48, with 8 and 32 times the budget.
    wider: [(u8, DefaultKeyedRateLimiter<IpAddr>); 2],
}

fn keyed(per_sec: u32, times: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    let per_sec = per_sec.max(1).saturating_mul(times);
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_sec.saturating_mul(2)).unwrap_or(rate);
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

impl Addresses {
    /// `per_sec` requests a second for each address (bursts of twice that).
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            own: keyed(per_sec, 1),
            wider: [(56, keyed(per_sec, 8)), (48, keyed(per_sec, 32))],
        }
    }

    /// Whether a request from `ip` is within its budgets (and counts it).
    pub(crate) fn check(&self, ip: IpAddr) -> bool {
        let own = limit_addr(ip, 64);
        if self.own.check_key(&own).is_err() {
            return false;
        }
        match own {
            IpAddr::V4(_) => true,
            IpAddr::V6(_) => self
                .wider
                .iter()
                .all(|(bits, l)| l.check_key(&limit_addr(own, *bits)).is_ok()),
        }
    }

    /// Drops the entries whose budget is full again (they are as if never seen).
    pub(crate) fn trim(&self) {
        for l in std::iter::once(&self.own).chain(self.wider.iter().map(|(_, l)| l)) {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.own.len() + self.wider.iter().map(|(_, l)| l.len()).sum::<usize>()
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

    /// Rotating through the /64s of one /56 buys 8 budgets, not 256.
    #[test]
    fn rotating_through_the_64s_of_a_56_buys_eight_budgets() {
        let a = Addresses::new(5);
        let one_56 = 0x2001_0db8_0001_0000u128 << 64;
        let passed = (0..256u128)
            .filter(|i| a.check(v6(one_56 | (i << 64), 1)))
            .count();
        assert_eq!(passed, 80, "the /56's burst: 8 × 10");
    }

    /// A flood of addresses holds memory only while it lasts.
    #[test]
    fn idle_addresses_are_dropped() {
        let a = Addresses::new(1000);
        for i in 0..10_000u128 {
            assert!(a.check(v6(i << 80, 0)));
        }
        assert!(a.len() >= 10_000);
        // Full again after burst / rate = 2 ms.
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.trim();
        assert_eq!(a.len(), 0, "idle entries still held");
    }
}
