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
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{net}/{bits}")
        }
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
