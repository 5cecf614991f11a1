//! The OAuth 2.0 / OpenID Connect endpoints that relying parties call directly:
//! discovery, JWKS, token, revocation (RFC 7009), introspection (RFC 7662), userinfo.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, IssuerUrl, JsonWebKeySetUrl, LanguageTag,
    ProviderMetadata, ResponseTypes, Scope, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::domain::client::KNOWN_SCOPES;
use crate::error::OAuthError;
use crate::flow::client_auth::ClientCredentials;
use crate::flow::login::ACR;
use crate::now;

/// Discovery fields that OpenID Connect Core does not define but clients rely on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmtaProviderMetadata {
    pub code_challenge_methods_supported: Vec<String>,
    pub end_session_endpoint: String,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9207: the authorization response carries `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    pub prompt_values_supported: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0: logout tokens carry `sid`.
    pub backchannel_logout_supported: bool,
    pub backchannel_logout_session_supported: bool,
    /// RFC 9126: pushed authorization requests; required per client where the ministry
    /// says so (the client's `require_pushed_authorization_requests`), not server-wide.
    pub pushed_authorization_request_endpoint: String,
    pub require_pushed_authorization_requests: bool,
}
impl AdditionalProviderMetadata for EmtaProviderMetadata {}

pub type EmtaProviderMetadataDoc = ProviderMetadata<
    EmtaProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Builds the discovery document once, at start-up, with openidconnect's typed metadata.
pub fn discovery_document(issuer: &str) -> Result<String, String> {
    let url = |path: &str| format!("{}{path}", issuer.trim_end_matches('/'));
    let e = |x: url::ParseError| x.to_string();
    let auth_methods = vec![
        CoreClientAuthMethod::ClientSecretBasic,
        CoreClientAuthMethod::ClientSecretPost,
        CoreClientAuthMethod::PrivateKeyJwt,
    ];
    let auth_algs = vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ];
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let meta = EmtaProviderMetadataDoc::new(
        IssuerUrl::new(issuer.to_owned()).map_err(e)?,
        AuthUrl::new(url("/authorize")).map_err(e)?,
        JsonWebKeySetUrl::new(url("/jwks")).map_err(e)?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![
            CoreSubjectIdentifierType::Public,
            CoreSubjectIdentifierType::Pairwise,
        ],
        vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ],
        EmtaProviderMetadata {
            code_challenge_methods_supported: names(&["S256"]),
            end_session_endpoint: url("/logout"),
            revocation_endpoint: url("/revoke"),
            revocation_endpoint_auth_methods_supported: names(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ]),
            introspection_endpoint: url("/introspect"),
            introspection_endpoint_auth_methods_supported: names(&[
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ]),
            authorization_response_iss_parameter_supported: true,
            prompt_values_supported: names(&["none", "login", "consent"]),
            backchannel_logout_supported: true,
            backchannel_logout_session_supported: true,
            pushed_authorization_request_endpoint: url("/par"),
            require_pushed_authorization_requests: false,
        },
    )
    .set_token_endpoint(Some(TokenUrl::new(url("/token")).map_err(e)?))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(url("/userinfo")).map_err(e)?))
    .set_scopes_supported(Some(
        KNOWN_SCOPES
            .iter()
            .map(|s| Scope::new(s.to_string()))
            .collect(),
    ))
    .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
    .set_grant_types_supported(Some(vec![
        CoreGrantType::AuthorizationCode,
        CoreGrantType::RefreshToken,
        CoreGrantType::ClientCredentials,
    ]))
    .set_acr_values_supported(Some(vec![openidconnect::AuthenticationContextClass::new(
        ACR.to_owned(),
    )]))
    .set_token_endpoint_auth_methods_supported(Some(auth_methods))
    .set_token_endpoint_auth_signing_alg_values_supported(Some(auth_algs))
    .set_claim_types_supported(Some(vec![CoreClaimType::Normal]))
    .set_claims_supported(Some(
        [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "at_hash",
            "sid",
            "name",
            "given_name",
            "family_name",
            "birthdate",
            "phone_number",
            "phone_number_verified",
            "national_id",
        ]
        .iter()
        .map(|c| CoreClaimName::new(c.to_string()))
        .collect(),
    ))
    .set_ui_locales_supported(Some(vec![
        LanguageTag::new("fa".into()),
        LanguageTag::new("en".into()),
    ]))
    .set_claims_parameter_supported(Some(false))
    .set_request_parameter_supported(Some(false))
    .set_request_uri_parameter_supported(Some(false));
    serde_json::to_string(&meta).map_err(|e| e.to_string())
}

fn json_with_cache(body: impl Into<axum::body::Body>, max_age: u32) -> Response {
    let body: axum::body::Body = body.into();
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

pub async fn discovery(State(core): State<Core>) -> Response {
    json_with_cache(core.discovery.clone(), 3600)
}

pub async fn jwks(State(core): State<Core>) -> Response {
    json_with_cache(core.keys.jwks().to_string(), 300)
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: form-urlencoded parts).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some(b64) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((dec(id), dec(secret))))
}

/// A form body for the OAuth endpoints: anything that is not one (another content type,
/// a duplicated parameter, broken encoding) is answered as the protocol says, with a JSON
/// `invalid_request` (RFC 6749 §5.2), not the framework's plain-text rejection.
pub struct OAuthForm<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S>
    for OAuthForm<T>
{
    type Rejection = OAuthError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, OAuthError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(e) => Err(OAuthError::invalid_request(format!(
                "the body must be a form (application/x-www-form-urlencoded) with each \
                 parameter once: {}",
                e.body_text()
            ))),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthForm,
}

/// The form fields of client authentication (RFC 6749 §2.3.1, RFC 7523 §2.2), shared by
/// the token, revocation and introspection endpoints.
#[derive(Deserialize, Default)]
pub struct ClientAuthForm {
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

impl ClientAuthForm {
    fn credentials<'a>(&'a self, headers: &HeaderMap) -> Result<ClientCredentials<'a>, OAuthError> {
        Ok(ClientCredentials {
            basic: basic_credentials(headers)?,
            client_id: self.client_id.as_deref(),
            client_secret: self.client_secret.as_deref(),
            assertion_type: self.client_assertion_type.as_deref(),
            assertion: self.client_assertion.as_deref(),
        })
    }
}

pub async fn token(
    State(core): State<Core>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenForm>,
) -> Response {
    let now = now();
    let r = async {
        let client = core
            .tokens()
            .authenticate_client(f.auth.credentials(&headers)?, &core.endpoint("/token"), now)
            .await?;
        match f.grant_type.as_deref() {
            Some("authorization_code") => {
                let code = f
                    .code
                    .as_deref()
                    .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
                core.tokens()
                    .exchange_code(
                        &client,
                        code,
                        f.redirect_uri.as_deref(),
                        f.code_verifier.as_deref(),
                        now,
                    )
                    .await
            }
            Some("refresh_token") => {
                let token = f
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
                core.tokens()
                    .refresh(&client, token, f.scope.as_deref(), now)
                    .await
            }
            Some("client_credentials") => {
                core.tokens()
                    .client_credentials(&client, f.scope.as_deref(), now)
                    .await
            }
            Some(_) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported: authorization_code, refresh_token, client_credentials",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }
    .await;
    match r {
        Ok(t) => {
            let mut resp = Json(t).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct TokenOnlyForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    #[serde(flatten)]
    auth: ClientAuthForm,
}

pub async fn revoke(
    State(core): State<Core>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenOnlyForm>,
) -> Response {
    let now = now();
    let r = async {
        let client = core
            .tokens()
            .authenticate_client(
                f.auth.credentials(&headers)?,
                &core.endpoint("/revoke"),
                now,
            )
            .await?;
        let token = f
            .token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        core.tokens().revoke_token(&client, token, now).await?;
        Ok::<_, OAuthError>(StatusCode::OK.into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A pushed authorization request's form: the client's credentials and the request.
#[derive(Deserialize)]
pub struct ParForm {
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    #[serde(flatten)]
    raw: crate::flow::authorize::RawAuthParams,
}

/// POST /par (RFC 9126): a confidential client pushes its authorization request; the
/// answer is the `request_uri` its browser carries to /authorize instead.
pub async fn par(
    State(core): State<Core>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<ParForm>,
) -> Response {
    let now = now();
    let r = async {
        let auth = ClientAuthForm {
            client_id: f.raw.client_id.clone(),
            client_secret: f.client_secret,
            client_assertion_type: f.client_assertion_type,
            client_assertion: f.client_assertion,
        };
        let client = core
            .tokens()
            .authenticate_client(auth.credentials(&headers)?, &core.endpoint("/par"), now)
            .await?;
        match crate::flow::authorize::push(&core, client.id.as_str(), f.raw, now)
            .await
            .map_err(OAuthError::from)?
        {
            Ok(request_uri) => Ok::<_, OAuthError>(
                (
                    StatusCode::CREATED,
                    [(header::CACHE_CONTROL, "no-store")],
                    Json(serde_json::json!({
                        "request_uri": request_uri,
                        "expires_in": crate::flow::authorize::PAR_TTL,
                    })),
                )
                    .into_response(),
            ),
            Err(refused) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                refused.error,
                refused.description,
            )),
        }
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

pub async fn introspect(
    State(core): State<Core>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenOnlyForm>,
) -> Response {
    let now = now();
    let r = async {
        let client = core
            .tokens()
            .authenticate_client(
                f.auth.credentials(&headers)?,
                &core.endpoint("/introspect"),
                now,
            )
            .await?;
        let token = f
            .token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        Ok::<_, OAuthError>(
            Json(core.tokens().introspect(&client, token, now).await?).into_response(),
        )
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|t| t.trim().to_owned())
}

pub async fn userinfo_get(State(core): State<Core>, headers: HeaderMap) -> Response {
    userinfo(core, bearer(&headers)).await
}

#[derive(Deserialize, Default)]
pub struct UserinfoForm {
    access_token: Option<String>,
}

/// POST /userinfo: the token in the Authorization header (then the body may be empty and
/// untyped, as the certification suite's `oidcc-userinfo-post-header` sends it) or in a
/// form body (RFC 6750 §2.2); never both (§2: one method per request).
pub async fn userinfo_post(State(core): State<Core>, req: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    let header_token = bearer(req.headers());
    // An empty body is no body, whatever its Content-Type says (a client library that
    // always sends `application/json` with a bearer header): read it first (it is small,
    // and read whole before any gate anyway) and parse a form only when there is one.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return OAuthError::invalid_request("the request body is too large").into_response();
    };
    let body_token = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        match OAuthForm::<UserinfoForm>::from_request(req, &()).await {
            Ok(OAuthForm(f)) => f.access_token,
            Err(e) => return e.into_response(),
        }
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => {
            return OAuthError::invalid_request(
                "send the access token in the header or the body, not both",
            )
            .into_response()
        }
        (h, b) => h.or(b),
    };
    userinfo(core, token).await
}

async fn userinfo(core: Core, token: Option<String>) -> Response {
    let r = async {
        let token = token.ok_or_else(|| OAuthError::invalid_token("a bearer token is required"))?;
        let data = core
            .tokens()
            .check_access_token(&token, now())
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the access token is invalid or revoked"))?;
        let claims = core
            .tokens()
            .userinfo(&data)
            .await?
            .ok_or_else(|| OAuthError::insufficient_scope("not a citizen's token"))?;
        Ok::<_, OAuthError>(Json(claims).into_response())
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
