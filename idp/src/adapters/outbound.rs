//! The IdP's own calls to manufacturers' endpoints (their `jwks_uri`, their back-channel
//! logout URI): addresses a manufacturer registers, so the IdP must not be turned into a
//! way into its own network (server-side request forgery). In production these calls go
//! only to public addresses: a host name is resolved, and only its public addresses are
//! dialled; an address written in the URL must be public too; `localhost` is refused.
//! `EMTA_ALLOW_PRIVATE_CALLBACKS` lifts this for a local deployment and tests, where the
//! manufacturers run on the loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Whether `ip` is an address on the public internet: not loopback, private, shared
/// (carrier-grade NAT), link-local, unspecified, multicast, broadcast, or reserved for
/// documentation; an IPv4-mapped IPv6 address is judged as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // Addresses that carry an IPv4 address: judged as it (NAT64's well-known
            // prefix, IPv4-compatible, 6to4).
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0; 6] {
                return is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// A resolver that hands reqwest only a name's public addresses.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The IdP's calls to manufacturers' endpoints, each checked by [`allowed`] and dialled
/// through [`client`]'s resolver; errors are short texts without the URL's query.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    private: bool,
}

impl Outbound {
    /// `private` allows any address (`EMTA_ALLOW_PRIVATE_CALLBACKS`).
    pub fn new(private: bool) -> reqwest::Result<Self> {
        Ok(Self {
            http: client(private)?,
            private,
        })
    }

    /// Posts a logout token to a back-channel logout URI (OIDC Back-Channel Logout 1.0
    /// §2.5): any 2xx is a delivery.
    pub async fn post_logout_token(
        &self,
        uri: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        allowed(uri, self.private)?;
        let resp = self
            .http
            .post(uri)
            .timeout(timeout)
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", resp.status()))
        }
    }

    /// Fetches a JSON document (a client's JWKS) of at most `max_bytes`, read in chunks so
    /// that a larger one is refused before it is held.
    pub async fn get_json(
        &self,
        uri: &str,
        accept: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<serde_json::Value, String> {
        allowed(uri, self.private)?;
        let mut resp = self
            .http
            .get(uri)
            .header("accept", accept)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            body.extend_from_slice(&chunk);
            if body.len() > max_bytes {
                return Err(format!("larger than {} KiB", max_bytes / 1024));
            }
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }
}

/// The HTTP client for calls to manufacturers' endpoints; `private` allows any address.
pub fn client(private: bool) -> reqwest::Result<reqwest::Client> {
    // No proxy from the environment: a proxy would resolve the name itself, past the check.
    let b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(3));
    if private {
        b.build()
    } else {
        b.dns_resolver(Arc::new(PublicOnly)).build()
    }
}

/// Whether a call to `url` may be made: with `private` anything; otherwise not to
/// `localhost` or an address written in the URL that is not public (names are checked
/// when resolved, see [`client`]).
pub fn allowed(url: &str, private: bool) -> Result<(), String> {
    if private {
        return Ok(());
    }
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    match u.host() {
        Some(url::Host::Ipv4(v4)) if !is_public(IpAddr::V4(v4)) => Err("a private address".into()),
        Some(url::Host::Ipv6(v6)) if !is_public(IpAddr::V6(v6)) => Err("a private address".into()),
        Some(url::Host::Domain(d))
            if {
                // `localhost.` is `localhost` (a fully qualified name), in any case.
                let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            } =>
        {
            Err("localhost".into())
        }
        None => Err("no host".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_called() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b:1::1",
            "::a00:5",
            "2002:a00:5::1",
            "fec0::1",
        ] {
            let ip: IpAddr = private.parse().expect("ip");
            assert!(!is_public(ip), "{private}");
        }
        for public in ["5.200.17.4", "8.8.8.8", "2a01:5ec0::1"] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(is_public(ip), "{public}");
        }
        assert!(allowed("https://127.0.0.1/jwks", false).is_err());
        assert!(allowed("http://[::1]:8080/logout", false).is_err());
        assert!(allowed("http://localhost:9/logout", false).is_err());
        assert!(allowed("https://localhost./logout", false).is_err());
        assert!(allowed("https://shop.LOCALHOST./logout", false).is_err());
        assert!(allowed("https://2130706433/jwks", false).is_err());
        assert!(allowed("https://0x7f.1/jwks", false).is_err());
        assert!(allowed("https://[::127.0.0.1]/jwks", false).is_err());
        assert!(allowed("https://169.254.169.254/latest/meta-data", false).is_err());
        assert!(allowed("https://shop.saipa.example/jwks", false).is_ok());
        assert!(allowed("http://localhost:9/logout", true).is_ok());
    }
}
