//! The crate's one error type and its HTTP rendering.
//!
//! User-facing variants carry a message in Persian and English (the [`Text`] catalogue
//! below); internal causes are logged with their chain and answered with a generic
//! message, never shown. OAuth endpoints answer RFC 6749 JSON errors through
//! [`OAuthError`] instead of pages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::adapters::UpstreamError;
use crate::keys::KeyError;
use crate::store::{EphemeralError, StoreError};

pub use service_kit::Text;

macro_rules! texts {
    ($($name:ident = $fa:literal / $en:literal;)*) => {
        $(pub const $name: Text = Text { fa: $fa, en: $en };)*
    };
}

/// Every user-facing error message, in one place so translations stay consistent.
pub mod msg {
    use super::Text;
    texts! {
        UNKNOWN_CLIENT = "این سامانه فروش در امتا ثبت نشده است." / "This sales site is not registered with emta.";
        BAD_REDIRECT = "نشانی بازگشت این درخواست با نشانی ثبت‌شده سامانه فروش یکی نیست." / "The return address of this request does not match the one registered for the sales site.";
        BAD_STATE = "درخواست سامانه فروش پارامتر state نادرستی دارد (حداکثر ۵۱۲ نویسه چاپی)؛ ورود از این درخواست ممکن نیست." / "The sales site's request carries an unusable state parameter (at most 512 printable characters); this request cannot sign you in.";
        REQUEST_TOO_LARGE = "درخواست سامانه فروش بیش از اندازه بزرگ است." / "The sales site's request is too large.";
        PAR_UNKNOWN = "این درخواست ورود منقضی یا پیش‌تر به‌کار رفته است. لطفاً از سامانه فروش دوباره وارد شوید." / "This sign-in request has expired or was used already. Please start again from the sales site.";
        CLIENT_SUSPENDED = "مجوز این سامانه فروش از سوی وزارت صمت تعلیق شده است؛ ورود به آن ممکن نیست." / "The ministry has suspended this sales site; you cannot sign in to it.";
        CLIENT_EXPIRED = "اعتبار یک‌ساله این سامانه فروش به پایان رسیده و تمدید نشده است." / "This sales site's yearly trust record has expired and has not been renewed.";
        LOGIN_EXPIRED = "مهلت این ورود به پایان رسیده است. لطفاً از سامانه فروش دوباره وارد شوید." / "This sign-in has expired. Please start again from the sales site.";
        LOGIN_OTHER_BROWSER = "این ورود در مرورگر دیگری آغاز شده است. لطفاً از سامانه فروش دوباره وارد شوید." / "This sign-in was started in another browser. Please start again from the sales site.";
        CSRF = "فرم منقضی یا نامعتبر است. صفحه را دوباره باز کنید." / "The form is stale or invalid. Please reload the page.";
        BAD_MOBILE = "شماره همراه معتبر نیست. نمونه درست: ۰۹۱۲۱۲۳۴۵۶۷" / "That is not a valid mobile number. Example: 09121234567";
        POW_FAILED = "بررسی ضد ربات انجام نشد. صفحه را دوباره بارگیری کنید و کمی صبر کنید تا بررسی کامل شود." / "The anti-bot check did not complete. Reload the page and wait for the check to finish.";
        OTP_FORMAT = "کد تأیید شش رقم است." / "The verification code has six digits.";
        OTP_WRONG = "کد تأیید درست نیست." / "The verification code is not correct.";
        OTP_EXPIRED = "کد تأیید منقضی شده است. کد تازه بخواهید." / "The verification code has expired. Ask for a new one.";
        OTP_VOID = "کد تأیید پنج بار نادرست وارد شد و این ورود باطل شد. از ابتدا شروع کنید." / "The code was wrong five times, so this sign-in is void. Start again.";
        RESEND_TOO_SOON = "برای ارسال دوباره کد، یک دقیقه صبر کنید." / "Please wait a minute before asking for another code.";
        BAD_NATIONAL_ID = "کد ملی معتبر نیست؛ ده رقم آن را دوباره بررسی کنید." / "That national ID is not valid; please check its ten digits.";
        BAD_BIRTH_DATE = "تاریخ تولد را به شکل سال/ماه/روز شمسی بنویسید، مانند ۱۳۷۰/۰۵/۱۲." / "Write the birth date as Jalali year/month/day, for example 1370/05/12.";
        BAD_BIRTH_DAY = "چنین روزی در تقویم شمسی وجود ندارد." / "That day does not exist in the Jalali calendar.";
        BIRTH_IN_FUTURE = "تاریخ تولد نمی‌تواند پس از امروز باشد." / "The birth date cannot be after today.";
        IDENTITY_MISMATCH = "اطلاعات واردشده با اطلاعات ثبت احوال و مالکیت شماره همراه یکسان نیست." / "The details you entered do not match the civil registry and mobile-ownership records.";
        REGISTRY_DOWN = "سامانه استعلام هویت موقتاً در دسترس نیست. چند دقیقه دیگر دوباره تلاش کنید." / "The identity registry is temporarily unavailable. Please try again in a few minutes.";
        SMS_DOWN = "ارسال پیامک موقتاً ممکن نیست. کمی بعد دوباره تلاش کنید." / "Text messages cannot be sent right now. Please try again shortly.";
        OTP_TRIES = "برای این شماره همراه بیش از حد کد نادرست وارد شده است. یک ساعت دیگر دوباره تلاش کنید." / "Too many codes were tried for this mobile number. Please try again in an hour.";
        IDENTITY_VOID = "اطلاعات هویتی سه بار یکسان نبود و این ورود باطل شد. از ابتدا شروع کنید." / "The details did not match three times, so this sign-in is void. Start again.";
        BUSY = "سامانه در این لحظه بیش از ظرفیت درخواست دارد. چند ثانیه دیگر دوباره تلاش کنید." / "emta has more requests than it can serve this moment. Please try again in a few seconds.";
        RATE_LIMITED = "تعداد درخواست‌ها بیش از حد مجاز است. لطفاً بعداً دوباره تلاش کنید." / "Too many attempts. Please try again later.";
        NOT_SIGNED_IN = "ابتدا وارد شوید." / "Please sign in first.";
        STEP_ORDER = "این مرحله هنوز در دسترس نیست. از ابتدا ادامه دهید." / "This step is not available yet. Please continue from the start.";
        INTERNAL = "خطای داخلی رخ داد. لطفاً دوباره تلاش کنید." / "Something went wrong on our side. Please try again.";
        NOT_FOUND = "صفحه پیدا نشد." / "Page not found.";
        BAD_REQUEST = "درخواست نامعتبر است." / "The request is not valid.";
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem the user can fix or must be told about; nothing internal in it.
    #[error("{status}: {}", text.en)]
    User { status: StatusCode, text: Text },
    /// A limit was hit; the answer is 429 with Retry-After.
    #[error("rate limited for {retry_after}s")]
    RateLimited { retry_after: u64 },
    /// Too soon for this action (a new SMS code within the minute): 429 with its own
    /// message and Retry-After.
    #[error("too soon, {retry_after}s to wait: {}", text.en)]
    TooSoon { text: Text, retry_after: u64 },
    /// The login transaction cannot go on (expired, voided, its session gone): 410 and an
    /// error page rather than the step's form again.
    #[error("login over: {}", .0.en)]
    LoginOver(Text),
    /// More work than the service (or an upstream's agreed budget) takes right now: 503
    /// with Retry-After, at once.
    #[error("busy, {retry_after}s to wait")]
    Busy { retry_after: u64 },
    /// An upstream the flow depends on is down; 503 with Retry-After.
    #[error("upstream unavailable: {source}")]
    Upstream { text: Text, source: UpstreamError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(status: StatusCode, text: Text) -> Self {
        Self::User { status, text }
    }

    pub fn bad_request(text: Text) -> Self {
        Self::user(StatusCode::BAD_REQUEST, text)
    }

    /// Status and message as shown to the user; logs internal causes.
    pub fn public(&self) -> (StatusCode, Text, Option<u64>) {
        match self {
            Self::User { status, text } => (*status, *text, None),
            Self::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                msg::RATE_LIMITED,
                Some(*retry_after),
            ),
            Self::TooSoon { text, retry_after } => {
                (StatusCode::TOO_MANY_REQUESTS, *text, Some(*retry_after))
            }
            Self::LoginOver(text) => (StatusCode::GONE, *text, None),
            Self::Upstream { text, source } => {
                tracing::warn!(error = %source, "upstream unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    *text,
                    Some(source.retry_after()),
                )
            }
            Self::Busy { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                msg::BUSY,
                Some(*retry_after),
            ),
            Self::Ephemeral(EphemeralError::Full) => {
                tracing::warn!("the in-process store is full");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(5))
            }
            // Redis that cannot answer (killed, restarting, a failover under way): ride it
            // out with a retry, nothing half-done, as for the database below.
            Self::Ephemeral(e @ (EphemeralError::Redis(_) | EphemeralError::Pool(_))) => {
                tracing::warn!(error = %e, "ephemeral store unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(2))
            }
            // A protocol error is a connection to a server that is not (yet) answering as
            // one: a rehearsal's PostgreSQL restart gave "unexpected response from
            // SSLRequest" while it came up.
            Self::Store(StoreError::Sql(
                e @ (sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed),
            )) => {
                tracing::warn!(error = %e, "database unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(5))
            }
            other => {
                tracing::error!(error = ?other, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, msg::INTERNAL, None)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, text, retry_after) = self.public();
        let page = crate::http::pages::error_page(crate::http::pages::Lang::Fa, text);
        let mut resp = (status, page).into_response();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// An OAuth 2.0 error answered as JSON (token, revocation, introspection, userinfo).
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// `Some(scheme)` adds WWW-Authenticate (401 on client auth or bearer failures).
    pub challenge: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            challenge: None,
            retry_after: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    /// Something on this side failed (500): the detail goes to the log, not the answer.
    pub fn server(d: impl Into<String>) -> Self {
        tracing::error!(detail = %d.into(), "server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server failed; try again",
        )
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self {
            challenge: Some("Basic realm=\"emta\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
        }
    }

    /// A valid token that does not carry what the resource needs (RFC 6750 §3.1).
    pub fn insufficient_scope(d: impl Into<String>) -> Self {
        Self {
            challenge: Some("Bearer error=\"insufficient_scope\""),
            ..Self::new(StatusCode::FORBIDDEN, "insufficient_scope", d)
        }
    }

    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self {
            challenge: Some("Bearer error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d)
        }
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                // `slow_down` belongs to device-flow polling (RFC 8628); a plain rate
                // limit is a temporary refusal with Retry-After.
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "rate limit exceeded",
                )
            },
            other => {
                let (status, text, retry_after) = other.public();
                let error = if status.is_server_error() {
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        "temporarily_unavailable"
                    } else {
                        "server_error"
                    }
                } else {
                    "invalid_request"
                };
                Self {
                    retry_after,
                    ..Self::new(status, error, text.en)
                }
            }
        }
    }
}

macro_rules! oauth_from_internal {
    ($($t:ty),*) => {$(
        impl From<$t> for OAuthError {
            fn from(e: $t) -> Self {
                Error::from(e).into()
            }
        }
    )*};
}
oauth_from_internal!(StoreError, EphemeralError, KeyError);

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.error, "error_description": self.description }));
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_that_cannot_answer_are_503_with_retry_after() {
        let unavailable = [
            Error::Store(StoreError::Sql(sqlx::Error::PoolTimedOut)),
            Error::Store(StoreError::Sql(sqlx::Error::Protocol(
                "unexpected response from SSLRequest: 0x00".into(),
            ))),
            Error::Ephemeral(EphemeralError::Full),
        ];
        for e in unavailable {
            let (status, _, retry_after) = e.public();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
            assert!(retry_after.is_some(), "{e:?}");
        }
        let (status, _, _) = Error::Internal("a bug".into()).public();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
