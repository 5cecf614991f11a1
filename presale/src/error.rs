//! Presale's one error type and its HTTP rendering.
//!
//! Variants a citizen or staff member must be told about carry a message in Persian and
//! English (the [`msg`] catalogue); internal causes are logged with their chain and
//! answered with a generic message, never shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service_kit::t;
use service_kit::Text;

use crate::domain::Refusal;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Every user-facing message of presale, in one place so translations stay consistent.
pub mod msg {
    use service_kit::{t, Text};

    pub const INTERNAL: Text = t!(
        "خطای داخلی رخ داد. لطفاً دوباره تلاش کنید.",
        "Something went wrong on our side. Please try again."
    );
    pub const RATE_LIMITED: Text = t!(
        "تعداد درخواست‌ها بیش از حد مجاز است. لطفاً بعداً دوباره تلاش کنید.",
        "Too many attempts. Please try again later."
    );
    pub const BUSY: Text = t!(
        "سامانه شلوغ است؛ چند ثانیه دیگر دوباره تلاش کنید.",
        "The service is busy; please try again in a few seconds."
    );
    pub const BAD_FORM: Text = t!(
        "فرم نامعتبر است؛ صفحه را دوباره باز کنید.",
        "The form is not valid; reload the page."
    );
    pub const NO_STOREFRONT: Text = t!("فروشگاه پیدا نشد.", "No such storefront.");
    pub const NO_PRESALE: Text = t!("این پیش‌فروش پیدا نشد.", "No such presale.");
    pub const NO_LOTTERY: Text = t!("این قرعه‌کشی پیدا نشد.", "No such lottery.");
    pub const NOT_FOUND: Text = t!("صفحه پیدا نشد.", "Page not found.");
    pub const NOT_FROM_EMTA: Text = t!(
        "پاسخ ورود از امتا نیست.",
        "The sign-in answer did not come from emta."
    );
    pub const SIGN_IN_REFUSED: Text = t!(
        "ورود انجام نشد یا اجازه داده نشد.",
        "Sign-in did not complete or was not allowed."
    );
    pub const SIGN_IN_INVALID: Text =
        t!("پاسخ ورود نامعتبر است.", "The sign-in answer is not valid.");
    pub const SIGN_IN_EXPIRED: Text = t!(
        "این ورود منقضی شده است؛ دوباره وارد شوید.",
        "This sign-in has expired; please sign in again."
    );
    pub const SIGN_IN_AGAIN: Text = t!("ورود دوباره با امتا", "Sign in again with emta");
    pub const SIGN_IN_OTHER_BROWSER: Text = t!(
        "این ورود در مرورگر دیگری آغاز شده است.",
        "This sign-in was started in another browser."
    );
    pub const IDP_DOWN: Text = t!(
        "امتا پاسخ نداد؛ دوباره تلاش کنید.",
        "emta did not answer; please try again."
    );
    pub const NO_NATIONAL_ID: Text =
        t!("شناسه ملی دریافت نشد.", "The national ID was not released.");
    pub const LOTTERY_NOT_OPEN: Text = t!(
        "ثبت‌نام این قرعه‌کشی باز نیست.",
        "Registration for this lottery is not open."
    );
    pub const QUEUE_CLOSED: Text = t!(
        "صف بسته است: ظرفیت تکمیل شده است.",
        "The queue is closed: sold out."
    );
    pub const QUEUE_SUSPENDED: Text = t!(
        "این پیش‌فروش از سوی وزارت موقتاً متوقف شده است؛ پس از ازسرگیری دوباره بپیوندید.",
        "The ministry has paused this presale; join again once it resumes."
    );
    pub const NOT_YOUR_TICKET: Text = t!(
        "این نوبت به شما تعلق ندارد؛ دوباره وارد صف شوید.",
        "This ticket is not yours; join the queue again."
    );
    pub const NOT_YET: Text = t!("هنوز نوبت شما نرسیده است.", "It is not your turn yet.");
    pub const TURN_OVER: Text = t!(
        "نوبت شما نرسیده یا مهلت آن گذشته است.",
        "It is not your turn, or your time to apply has run out."
    );
    pub const NO_LOG: Text = t!(
        "گزارش شفافیت این پیش‌فروش پیدا نشد.",
        "No transparency log for this presale."
    );
    pub const REVEAL_TOO_EARLY: Text = t!(
        "فهرست هنوز قطعی نشده است؛ راز را پس از قطعی شدن فهرست آشکار کنید.",
        "The list is not frozen yet; reveal the secret after it is frozen."
    );
    pub const REVEAL_UNKNOWN_PARTY: Text = t!(
        "این طرف در بذر این پیش‌فروش سهمی ندارد.",
        "This party has no share in this presale's seed."
    );
    pub const REVEAL_MISMATCH: Text = t!(
        "این راز با تعهد منتشرشده این طرف نمی‌خواند.",
        "This secret does not match the party's published commitment."
    );
    pub const BAD_RECEIPT: Text = t!(
        "رسید خوانا نیست: متن JSON رسید را کامل بچسبانید.",
        "The receipt cannot be read: paste the receipt's whole JSON."
    );
    pub const BAD_RANGE: Text = t!(
        "بازه درخواستی نامعتبر است.",
        "The requested range is not valid."
    );
    pub const NOT_A_WINNER: Text = t!(
        "شما در قرعه‌کشی برنده نشده‌اید یا قرعه‌کشی هنوز انجام نشده است.",
        "You did not win the lottery, or it has not been drawn yet."
    );
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the user can act on; nothing internal in it.
    #[error("{status}: {}", text.en)]
    User { status: StatusCode, text: Text },
    /// A limit was hit: 429 with Retry-After.
    #[error("rate limited for {retry_after}s")]
    RateLimited { retry_after: u64 },
    /// Shed load, or a store that cannot serve right now: 503 with Retry-After, nothing
    /// done.
    #[error("busy, retry in {retry_after}s")]
    Busy { retry_after: u64 },
    /// A form whose CSRF token does not belong to this browser's session: 403.
    #[error("bad form")]
    BadForm,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(status: StatusCode, text: Text) -> Self {
        Self::User { status, text }
    }

    pub fn not_found(text: Text) -> Self {
        Self::user(StatusCode::NOT_FOUND, text)
    }

    pub fn conflict(text: Text) -> Self {
        Self::user(StatusCode::CONFLICT, text)
    }

    pub fn bad_request(text: Text) -> Self {
        Self::user(StatusCode::BAD_REQUEST, text)
    }

    /// Status, message and Retry-After as shown to the user; logs internal causes.
    fn public(&self) -> (StatusCode, Text, Option<u64>) {
        match self {
            Self::User { status, text } => (*status, *text, None),
            Self::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                msg::RATE_LIMITED,
                Some(*retry_after),
            ),
            Self::Busy { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                msg::BUSY,
                Some(*retry_after),
            ),
            Self::BadForm => (StatusCode::FORBIDDEN, msg::BAD_FORM, None),
            // A store or queue that cannot answer: ride it out with nothing half-done.
            Self::Store(e) => {
                tracing::error!(error = %e, "presale store");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(5))
            }
            Self::Queue(e) => {
                tracing::warn!(error = %e, "presale queue");
                (StatusCode::SERVICE_UNAVAILABLE, msg::BUSY, Some(10))
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "presale internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, msg::INTERNAL, None)
            }
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::conflict(r.text())
    }
}

impl From<service_kit::limit::LimitError> for Error {
    fn from(e: service_kit::limit::LimitError) -> Self {
        match e {
            service_kit::limit::LimitError::Limited { retry_after } => {
                Self::RateLimited { retry_after }
            }
            service_kit::limit::LimitError::Store(e) => {
                tracing::warn!(error = %e, "presale limits");
                Self::Busy { retry_after: 5 }
            }
        }
    }
}

impl From<service_kit::ephemeral::EphemeralError> for Error {
    fn from(e: service_kit::ephemeral::EphemeralError) -> Self {
        tracing::warn!(error = %e, "presale sessions");
        Self::Busy { retry_after: 5 }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, text, retry_after) = self.public();
        let mut r = crate::http::pages::problem(status, text);
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// The title of an error page.
pub const ERROR_TITLE: Text = t!("خطا", "Error");
