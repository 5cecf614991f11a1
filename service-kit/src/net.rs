//! The client's address as the deployment's own ingress saw it.

use axum::http::HeaderMap;

/// The rightmost X-Forwarded-For entry (the one the deployment's own ingress appended;
/// entries to its left are whatever the client claimed).
pub fn forwarded_for(h: &HeaderMap) -> Option<String> {
    h.get("x-forwarded-for")?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The subject a per-client limit keys for `ip`: an IPv4 address as is, an IPv6 address
/// cut to its first `v6_prefix` bits (a subscriber gets a whole /64, or /56 or /48, and
/// rotates through it freely), written as the network (`2001:db8:1:2::/64`). Anything
/// that is not an address is kept as it is (a test's "unknown").
pub fn limit_subject(ip: &str, v6_prefix: u8) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(addr) => match limit_addr(addr, v6_prefix) {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(net) => format!("{net}/{}", v6_prefix.min(128)),
        },
        Err(_) => ip.to_owned(),
    }
}

/// [`limit_subject`] as an address: an IPv4 address (also one an IPv6 address carries:
/// IPv4-mapped, or 6to4's `2002:V4::/48`, whose holder is that IPv4 address's) as is, an
/// IPv6 address cut to its first `v6_prefix` bits.
pub fn limit_addr(ip: std::net::IpAddr, v6_prefix: u8) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return std::net::IpAddr::V4(v4);
            }
            // 6to4 (2002:V4::/48) is one IPv4 address's holder: it shares that address's
            // budgets instead of getting a /48 of its own.
            let s = v6.segments();
            if s[0] == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return std::net::IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
            }
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The wider ranges an IPv6 subject (`net/64`, from [`limit_subject`]) lies in, each with
/// how many times the subject's own budget it may spend in all: its /56 (a home or a small
/// office: 256 /64s) 8 times, its /48 (a site: 65 536 /64s) 32 times. A subscriber who
/// rotates through the /64s of one /56 or /48 is held by these; none for IPv4.
pub fn wider_ranges(subject: &str) -> Vec<(String, i64)> {
    let Some((net, bits)) = subject.split_once('/') else {
        return Vec::new();
    };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv6Addr>(), bits.parse::<u8>()) else {
        return Vec::new();
    };
    [(56u8, 8i64), (48, 32)]
        .into_iter()
        .filter(|(wider, _)| *wider < bits)
        .map(|(wider, times)| (limit_subject(&net.to_string(), wider), times))
        .collect()
}

/// Whether `subject` (an address, or an IPv6 network from [`limit_subject`]) lies in one
/// of `ranges` (CIDRs such as `5.200.0.0/16` or `2a01:5ec0::/32`); a range that does not
/// parse matches nothing.
pub fn in_ranges(subject: &str, ranges: &[String]) -> bool {
    let addr = subject.split('/').next().unwrap_or(subject);
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    ranges.iter().any(|r| {
        let Some((net, bits)) = r.trim().split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else {
            return false;
        };
        match (ip, net) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_lies_in_its_56_and_48() {
        let s = limit_subject("2001:db8:1:2f3:aaaa::1", 64);
        assert_eq!(
            wider_ranges(&s),
            [
                ("2001:db8:1:200::/56".to_owned(), 8),
                ("2001:db8:1::/48".to_owned(), 32)
            ]
        );
        assert!(wider_ranges("192.0.2.7").is_empty());
        assert!(wider_ranges(&limit_subject("2001:db8::1", 48)).is_empty());
    }

    #[test]
    fn carrier_ranges_match_by_prefix() {
        let ranges = vec![
            "5.200.0.0/16".to_owned(),
            "2a01:5ec0::/32".to_owned(),
            "junk".to_owned(),
        ];
        assert!(in_ranges("5.200.17.4", &ranges));
        assert!(!in_ranges("5.201.17.4", &ranges));
        assert!(in_ranges(&limit_subject("2a01:5ec0:12:34::9", 64), &ranges));
        assert!(!in_ranges(&limit_subject("2a01:5ec1::9", 64), &ranges));
        assert!(!in_ranges("unknown", &ranges));
    }

    #[test]
    fn ipv6_addresses_of_one_subscriber_share_a_subject() {
        let a = limit_subject("2001:db8:1:2:aaaa::1", 64);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(limit_subject("2001:db8:1:2:ffff:1:2:3", 64), a);
        assert_ne!(limit_subject("2001:db8:1:3::1", 64), a);
        assert_eq!(limit_subject("2001:db8:1:3::1", 48), "2001:db8:1::/48");
        assert_eq!(limit_subject("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(limit_subject("::ffff:192.0.2.7", 64), "192.0.2.7");
        assert_eq!(limit_subject("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(limit_subject("2001:db8::1", 0), "::/0");
        assert_eq!(limit_subject("2002:c000:207:1::9", 64), "192.0.2.7", "6to4");
    }
}
