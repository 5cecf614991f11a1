//! A buyer's complaints (issue 34), at the storefront where they applied:
//! - `GET /{m}/complaints/new?tracking=…`: the form (kind, text, up to three attachments);
//! - `POST /{m}/complaints` (multipart): filed, attachments checked by their content
//!   (PDF, PNG, JPEG; 2 MiB each) and kept under their hash, outside the database;
//! - `GET /{m}/complaints/{id}`: where it stands (with the manufacturer, the province's
//!   office, the consumer-protection organisation, the board), the answer, the decision;
//! - `POST /{m}/complaints/{id}/respond`: the buyer accepts an answer given in time, or
//!   takes the complaint further;
//! - `GET /{m}/complaints/{id}/files/{sha}`: an attachment, to the buyer only (the
//!   manufacturer and the ministry read it at the console).
//!
//! Every page is the signed-in buyer's own: another buyer's complaint is "no such
//! complaint" (404), never a hint that it exists.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use maud::html;
use serde::Deserialize;
use service_kit::clock::format_time;
use service_kit::t;

use super::pages::{fa, page};
use crate::app::Core;
use crate::domain::redress::{ComplaintKind, FileKind, MAX_FILES, MAX_FILE_BYTES};
use crate::error::{Error, Result};
use crate::store::redress::{Complaint, ComplaintError, FileMeta};

/// The largest complaint form: the attachments and a little for the fields.
const MAX_FORM_BYTES: usize = MAX_FILES * MAX_FILE_BYTES + 64 * 1024;

pub(crate) fn routes() -> Router<Core> {
    Router::new()
        .route("/{m}/complaints/new", get(form))
        .route(
            "/{m}/complaints",
            post(file).layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/{m}/complaints/{id}", get(show))
        .route("/{m}/complaints/{id}/respond", post(respond))
        .route("/{m}/complaints/{id}/files/{sha}", get(attachment))
}

pub(crate) fn refused(e: ComplaintError) -> Error {
    use crate::error::msg::console as m;
    match e {
        ComplaintError::NoApplication => Error::not_found(t!(
            "درخواستی از شما با این کد پیگیری نزد این خودروساز نیست.",
            "No application of yours with that tracking code at this manufacturer."
        )),
        ComplaintError::NoComplaint => Error::not_found(m::NO_COMPLAINT),
        ComplaintError::Open => Error::conflict(t!(
            "شکایتی از همین نوع درباره این درخواست باز است.",
            "A complaint of this kind about this application is open already."
        )),
        ComplaintError::Text => Error::user(StatusCode::UNPROCESSABLE_ENTITY, m::E_TEXT),
        ComplaintError::Answered => Error::conflict(m::E_COMPLAINT_ANSWERED),
        ComplaintError::NotAnswered => Error::conflict(t!(
            "پاسخی در مهلت داده نشده یا شکایت پیش‌تر به وزارت رفته است.",
            "No answer was given in time, or the complaint has gone to the ministry already."
        )),
        ComplaintError::Closed => Error::conflict(m::E_COMPLAINT_CLOSED),
        ComplaintError::NotInspector => Error::user(StatusCode::FORBIDDEN, m::NOT_YOUR_ROLE),
        ComplaintError::SamePerson => Error::user(StatusCode::FORBIDDEN, m::E_DECIDE_SECOND),
    }
}

#[derive(Deserialize)]
struct NewQuery {
    #[serde(default)]
    tracking: String,
}

async fn form(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
    Query(q): Query<NewQuery>,
) -> Result<Response> {
    let Some(_c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let csrf = core.csrf(&jar);
    Ok(page(
        StatusCode::OK,
        t!("ثبت شکایت", "File a complaint"),
        html! {
            form.complaint method="post" action=(format!("/{m}/complaints")) enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label for="tracking" { (fa(t!("کد پیگیری درخواست", "The application's tracking code"))) }
                input #tracking name="tracking" required value=(q.tracking) dir="ltr";
                label for="kind" { (fa(t!("موضوع", "About"))) }
                select #kind name="kind" {
                    @for k in ComplaintKind::ALL { option value=(k.as_str()) { (k.text().fa) " / " (k.text().en) } }
                }
                label for="body" { (fa(t!("شرح شکایت", "Your complaint"))) }
                textarea #body name="body" required maxlength="4000" rows="6" {}
                label for="files" { (fa(t!("پیوست‌ها (PDF، PNG یا JPEG، هر کدام تا ۲ مگابایت، حداکثر سه)", "Attachments (PDF, PNG or JPEG, up to 2 MB each, three at most)"))) }
                input #files type="file" name="files" multiple accept="application/pdf,image/png,image/jpeg";
                button type="submit" { (fa(t!("ثبت شکایت", "File the complaint"))) }
            }
        },
    ))
}

/// A file refused by its content or its size, in both languages.
fn bad_file() -> Error {
    Error::user(
        StatusCode::UNPROCESSABLE_ENTITY,
        t!(
            "پیوست‌ها باید PDF، PNG یا JPEG باشند (از روی محتوا، نه نام)، هر کدام حداکثر ۲ مگابایت و حداکثر سه پیوست.",
            "Attachments must be PDF, PNG or JPEG (by their content, not their name), at most 2 MB each, three at most."
        ),
    )
}

async fn file(
    State(core): State<Core>,
    jar: CookieJar,
    Path(m): Path<String>,
    mut parts: Multipart,
) -> Result<Response> {
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let (mut csrf, mut tracking, mut kind, mut body) =
        (String::new(), String::new(), String::new(), String::new());
    let mut uploads: Vec<(axum::body::Bytes, String)> = Vec::new();
    let malformed = || {
        Error::user(
            StatusCode::BAD_REQUEST,
            t!(
                "فرم شکایت خوانا نبود.",
                "The complaint form could not be read."
            ),
        )
    };
    while let Some(field) = parts.next_field().await.map_err(|_| malformed())? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "files" {
            let file_name: String = field
                .file_name()
                .unwrap_or("attachment")
                .chars()
                .filter(|ch| !ch.is_control() && !matches!(ch, '/' | '\\' | '"'))
                .take(100)
                .collect();
            let bytes = field.bytes().await.map_err(|_| bad_file())?;
            // An empty file input sends one empty part: no attachment.
            if bytes.is_empty() {
                continue;
            }
            if uploads.len() >= MAX_FILES || bytes.len() > MAX_FILE_BYTES {
                return Err(bad_file());
            }
            uploads.push((bytes, file_name));
            continue;
        }
        let value = field.text().await.map_err(|_| malformed())?;
        if value.len() > 64 * 1024 {
            return Err(malformed());
        }
        match name.as_str() {
            "csrf" => csrf = value,
            "tracking" => tracking = value,
            "kind" => kind = value,
            "body" => body = value,
            _ => {}
        }
    }
    core.check_csrf(&jar, &csrf)?;
    let kind = ComplaintKind::parse(kind.trim()).ok_or_else(|| {
        Error::user(
            StatusCode::UNPROCESSABLE_ENTITY,
            t!(
                "موضوع شکایت را از فهرست برگزینید.",
                "Choose what the complaint is about from the list."
            ),
        )
    })?;
    // The complaint itself first, then every attachment checked before any is kept: a
    // refused complaint, or one bad attachment, leaves nothing on the shared volume.
    core.store
        .complaint_precheck(&m, &c.sub, tracking.trim(), kind, &body)
        .await?
        .map_err(refused)?;
    let mut checked = Vec::new();
    for (bytes, name) in uploads {
        let kind = FileKind::sniff(&bytes).ok_or_else(bad_file)?;
        checked.push((bytes, name, kind));
    }
    let mut files = Vec::new();
    for (bytes, name, kind) in checked {
        let sha = core.files.put(&bytes).await.map_err(|e| {
            tracing::error!(error = %e, "keeping an attachment");
            Error::Busy { retry_after: 5 }
        })?;
        files.push(FileMeta {
            sha256: sha,
            kind,
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            name: if name.is_empty() {
                "attachment".into()
            } else {
                name
            },
        });
    }
    files.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    files.dedup_by(|a, b| a.sha256 == b.sha256);
    let now = service_kit::clock::now();
    let id = core
        .store
        .file_complaint(
            &m,
            &c.sub,
            tracking.trim(),
            kind,
            &body,
            &files,
            core.complaint_answer_days,
            now,
        )
        .await?
        .map_err(refused)?;
    Ok(Redirect::to(&format!("/{m}/complaints/{id}")).into_response())
}

/// The signed-in buyer's own complaint, or 404.
async fn own(core: &Core, m: &str, sub: &str, id: &str) -> Result<Complaint> {
    core.store
        .complaint(id)
        .await?
        .filter(|c| c.manufacturer == m && c.citizen_sub == sub)
        .ok_or_else(|| refused(ComplaintError::NoComplaint))
}

async fn show(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let complaint = own(&core, &m, &c.sub, &id).await?;
    let now = service_kit::clock::now();
    let level = complaint.level(now);
    let ageing = complaint.ageing();
    let may_respond = complaint.outcome.is_none()
        && complaint.escalated_at.is_none()
        && complaint
            .answered_at
            .is_some_and(|a| a <= complaint.answer_due);
    let csrf = core.csrf(&jar);
    Ok(page(
        StatusCode::OK,
        t!("شکایت", "Complaint"),
        html! {
            dl.complaint data-complaint=(complaint.id) data-level=(level.as_str()) {
                dt { (fa(t!("درخواست", "Application"))) } dd { (complaint.tracking_code) }
                dt { (fa(t!("موضوع", "About"))) } dd { (fa(complaint.kind.text())) }
                dt { (fa(t!("ثبت", "Filed"))) } dd { (format_time(complaint.filed_at)) }
                dt { (fa(t!("مهلت پاسخ خودروساز", "The manufacturer answers by"))) } dd { (format_time(complaint.answer_due)) }
                dt { (fa(t!("اکنون نزد", "Now with"))) } dd data-now-with=(level.as_str()) { (fa(level.text())) }
                @if ageing.unanswered_late(now) {
                    dt {} dd.error { (fa(t!("خودروساز در مهلت پاسخ نداد.", "The manufacturer did not answer in time."))) }
                }
            }
            p.body { (complaint.body) }
            @if !complaint.files.is_empty() {
                h2 { (fa(t!("پیوست‌ها", "Attachments"))) }
                ul { @for f in &complaint.files {
                    li { a href=(format!("/{m}/complaints/{}/files/{}", complaint.id, f.sha256)) { (f.name) } " (" (f.kind.mime()) ", " (f.size) " B)" }
                } }
            }
            @if let Some(answer) = &complaint.answer {
                h2 { (fa(t!("پاسخ خودروساز", "The manufacturer's answer"))) }
                p.answer data-answered-at=(complaint.answered_at.unwrap_or_default()) { (answer) }
            }
            @if let Some(o) = complaint.outcome {
                p data-outcome=(o.as_str()) { (fa(match o {
                    crate::domain::redress::Outcome::Upheld => t!("وزارت شکایت را وارد دانست.", "The ministry upheld the complaint."),
                    crate::domain::redress::Outcome::Dismissed => t!("وزارت شکایت را رد کرد.", "The ministry dismissed the complaint."),
                    crate::domain::redress::Outcome::Accepted => t!("پاسخ خودروساز را پذیرفتید.", "You accepted the manufacturer's answer."),
                })) }
            }
            @if may_respond {
                form method="post" action=(format!("/{m}/complaints/{}/respond", complaint.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" name="accept" value="yes" { (fa(t!("پاسخ را می‌پذیرم", "I accept the answer"))) }
                    button.secondary type="submit" name="accept" value="no" { (fa(t!("پیگیری در سازمان صمت استان", "Take it to the province's industry office"))) }
                }
            }
            p { a href=(format!("/{m}/applications")) { (fa(t!("درخواست‌های من", "My applications"))) } }
        },
    ))
}

#[derive(Deserialize)]
struct RespondForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    accept: String,
}

async fn respond(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
    Form(f): Form<RespondForm>,
) -> Result<Response> {
    core.check_csrf(&jar, &f.csrf)?;
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let accept = match f.accept.as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err(Error::BadForm),
    };
    core.store
        .buyer_on_answer(&m, &c.sub, &id, accept, service_kit::clock::now())
        .await?
        .map_err(refused)?;
    Ok(Redirect::to(&format!("/{m}/complaints/{id}")).into_response())
}

/// An attachment served to a party: its sniffed type, never rendered in the service's
/// origin (a download, sandboxed, not sniffed again by the browser).
pub(crate) async fn serve_file(core: &Core, f: &FileMeta) -> Result<Response> {
    // Lost or changed on disk is not a moment's trouble: no Retry-After.
    let bytes = core.files.get(&f.sha256).await.map_err(|e| {
        tracing::error!(error = %e, "reading an attachment");
        Error::user(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::error::msg::console::E_FILE_GONE,
        )
    })?;
    let name: String = f
        .name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        if name.is_empty() { "attachment" } else { &name },
        match f.kind {
            FileKind::Pdf => "pdf",
            FileKind::Png => "png",
            FileKind::Jpeg => "jpg",
        }
    );
    Ok((
        [
            (header::CONTENT_TYPE, f.kind.mime().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

async fn attachment(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id, sha)): Path<(String, String, String)>,
) -> Result<Response> {
    let Some(c) = core.citizen(&jar, &m).await? else {
        return Ok(Redirect::to(&format!("/{m}/login")).into_response());
    };
    let complaint = own(&core, &m, &c.sub, &id).await?;
    let f = complaint
        .files
        .iter()
        .find(|f| f.sha256 == sha)
        .ok_or_else(|| refused(ComplaintError::NoComplaint))?;
    serve_file(&core, f).await
}
