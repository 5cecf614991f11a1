//! Manufacturers as OpenID Connect clients, with their e-namad-like trust record.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use url::Url;

/// A client identifier: lowercase letters, digits and dashes, 3 to 64 characters.
/// Deserialised through [`ClientId::parse`], so one read back from a stored login is
/// checked as one from a request is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(s: String) -> Result<Self, ClientIdError> {
        Self::parse(&s)
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> String {
        c.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client ids are 3-64 lowercase letters, digits or dashes")]
pub struct ClientIdError;

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, ClientIdError> {
        let ok = (3..=64).contains(&input.len())
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(ClientIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registered redirect URI. Matching is exact string comparison (RFC 9700 §4.1.3):
/// no prefix, no wildcard, no normalisation beyond what registration stored.
/// Deserialised through [`RedirectUri::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl TryFrom<String> for RedirectUri {
    type Error = RedirectUriError;
    fn try_from(s: String) -> Result<Self, RedirectUriError> {
        Self::parse(&s)
    }
}

impl From<RedirectUri> for String {
    fn from(u: RedirectUri) -> String {
        u.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("not an absolute URL")]
    NotAbsolute,
    #[error("redirect URIs must use https (http only for localhost)")]
    Insecure,
    #[error("redirect URIs must not have a fragment")]
    Fragment,
    #[error("redirect URIs are at most 512 bytes")]
    TooLong,
}

/// The longest redirect URI registered: a login carries its client's request (the URI
/// included) in a cookie until the phone step's proof of work.
pub const MAX_REDIRECT_URI: usize = 512;

impl RedirectUri {
    /// A URI to register: as [`Self::parse`], and at most [`MAX_REDIRECT_URI`] bytes.
    pub fn parse_new(input: &str) -> Result<Self, RedirectUriError> {
        if input.len() > MAX_REDIRECT_URI {
            return Err(RedirectUriError::TooLong);
        }
        Self::parse(input)
    }

    /// A URI as registered (a stored one registered before the length limit still loads).
    pub fn parse(input: &str) -> Result<Self, RedirectUriError> {
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute)?;
        if url.fragment().is_some() {
            return Err(RedirectUriError::Fragment);
        }
        let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if local => {}
            _ => return Err(RedirectUriError::Insecure),
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The scopes this provider knows (DESIGN.md, "Scopes and claims"): the claims-bearing
/// ones, and `offline_access` (OIDC Core §11), which releases no claim but lets a grant
/// outlive the sign-in it came from.
pub const KNOWN_SCOPES: &[&str] = &["openid", "profile", "phone", "national_id", OFFLINE_ACCESS];

/// The scope that makes a grant offline: it survives sign-out and lives up to the
/// absolute grant lifetime. Only for clients the ministry allows it, after consent.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// A set of scopes, always kept sorted so that consent comparison is set comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a space-separated scope string. Unknown scopes are dropped, as OIDC allows.
    pub fn parse_known(input: &str, allowed: &[&str]) -> Self {
        Self(
            input
                .split_ascii_whitespace()
                .filter(|s| allowed.contains(s))
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The scopes of `self` that `allowed` permits (RFC 6749 §3.3: the server may grant
    /// fewer scopes than asked, and says so in the token response's `scope`).
    pub fn restrict(&self, allowed: &Scopes) -> Self {
        Self(self.0.intersection(&allowed.0).cloned().collect())
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

/// Whether a client may be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    Active,
    Suspended,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "active" {
            Self::Active
        } else {
            Self::Suspended
        }
    }
}

/// Which `sub` a client sees for a citizen (OIDC Core §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// The citizen's emta identifier, the same at every client so registered.
    Public,
    /// A keyed hash of the client's sector and the citizen: two manufacturers cannot join
    /// their records by `sub`.
    Pairwise,
}

impl SubjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Pairwise => "pairwise",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "pairwise" => Some(Self::Pairwise),
            _ => None,
        }
    }
}

/// Which signature a client's ID tokens carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// How a client proves who it is at the token, revocation and introspection endpoints.
/// A client authenticates one way only, the way it is registered with.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// The secret the ministry issued, in HTTP Basic or the form (`client_secret_basic`,
    /// `client_secret_post`).
    Secret,
    /// A short-lived JWT signed with the client's own private key (`private_key_jwt`,
    /// RFC 7523 and OIDC Core §9): nothing the IdP stores can impersonate the client.
    PrivateKeyJwt(KeySource),
}

impl ClientAuth {
    /// The registration metadata's `token_endpoint_auth_method`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Secret => "client_secret_basic",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// Where a `private_key_jwt` client's public keys are.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Registered with the client (its `jwks`).
    Jwks(jsonwebtoken::jwk::JwkSet),
    /// Published by the client at an https URL (its `jwks_uri`), fetched and cached.
    Uri(String),
}

/// A manufacturer registered by the ministry.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: ClientId,
    /// Keyed hash of the secret; the secret itself is shown once at registration.
    pub secret_hash: String,
    pub name: String,
    pub name_fa: String,
    /// Trust level 1-5 stars, set by the ministry. What is shown is [`Client::rating`].
    pub stars: u8,
    /// Stars withheld by the manufacturer's after-sale record (issue 34), as presale
    /// counts it: 0 to 4.
    pub withheld: u8,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Scopes the client may ask for with `client_credentials` (ministry APIs).
    pub service_scopes: Vec<String>,
    pub id_token_alg: SigningAlg,
    pub status: ClientStatus,
    /// Unix seconds; the trust record lapses after this.
    pub valid_until: i64,
    /// The claims-bearing scopes the ministry lets this client ask for (`openid` always).
    pub allowed_scopes: Scopes,
    pub subject_type: SubjectType,
    /// The sector of pairwise subjects: clients of one sector see one `sub`. Defaults to
    /// the host of the redirect URIs.
    pub sector_identifier: Option<String>,
    /// Where logout tokens are posted (OIDC Back-Channel Logout 1.0).
    pub backchannel_logout_uri: Option<RedirectUri>,
    /// A rotated-out secret's hash and until when it is still accepted.
    pub previous_secret: Option<(String, i64)>,
    /// How it authenticates; a `private_key_jwt` client's secret hash is of a secret
    /// nobody was given.
    pub auth: ClientAuth,
    /// Whether its authorization requests must be pushed (RFC 9126): the browser then
    /// carries only a `request_uri`.
    pub require_par: bool,
}

/// Why a client cannot be used now, shown on the authorize error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientUnavailable {
    Suspended,
    Expired,
}

impl Client {
    /// The rating shown everywhere (consent screen, badge, the ministry's list): the
    /// ministry's stars less those the after-sale record withholds, at least one.
    pub fn rating(&self) -> u8 {
        self.stars.saturating_sub(self.withheld).max(1)
    }

    pub fn availability(&self, now: i64) -> Result<(), ClientUnavailable> {
        if self.status == ClientStatus::Suspended {
            Err(ClientUnavailable::Suspended)
        } else if now >= self.valid_until {
            Err(ClientUnavailable::Expired)
        } else {
            Ok(())
        }
    }

    /// The sector this client's pairwise subjects are computed for.
    pub fn sector(&self) -> String {
        self.sector_identifier.clone().unwrap_or_else(|| {
            self.redirect_uris
                .first()
                .and_then(|u| Url::parse(u.as_str()).ok())
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| self.id.as_str().to_owned())
        })
    }

    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r.as_str() == uri)
    }

    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|r| r.as_str() == uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_https_except_on_localhost() {
        assert!(RedirectUri::parse("https://shop.example/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost:8080/cb").is_ok());
        assert_eq!(
            RedirectUri::parse("http://shop.example/cb"),
            Err(RedirectUriError::Insecure)
        );
        assert_eq!(
            RedirectUri::parse("https://shop.example/cb#x"),
            Err(RedirectUriError::Fragment)
        );
        assert_eq!(
            RedirectUri::parse("/cb"),
            Err(RedirectUriError::NotAbsolute)
        );
    }

    #[test]
    fn scopes_drop_unknown_values_and_sort() {
        let s = Scopes::parse_known("phone openid evil profile", KNOWN_SCOPES);
        assert_eq!(s.to_string(), "openid phone profile");
    }

    #[test]
    fn restricting_scopes_keeps_only_the_allowed() {
        let asked = Scopes::parse_known("openid national_id phone", KNOWN_SCOPES);
        let allowed = Scopes::parse_known("openid profile phone", KNOWN_SCOPES);
        assert_eq!(asked.restrict(&allowed).to_string(), "openid phone");
    }

    #[test]
    fn client_ids_are_restricted() {
        assert!(ClientId::parse("iran-khodro").is_ok());
        assert!(ClientId::parse("Iran Khodro").is_err());
        assert!(ClientId::parse("ab").is_err());
    }
}
