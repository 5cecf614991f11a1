//! The public transparency log of every campaign (see [`crate::transparency`]): its page,
//! its checkpoints and records as the auditor downloads them, proofs, a citizen's receipts
//! and promises, a page that checks a receipt, and where witnesses post cosignatures.
//!
//! Everything here is public and read-only except the cosignatures (kept only when they
//! verify with a configured witness's key). The parties reveal through their own channels
//! (see [`crate::http::api`] and the console), not here.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use maud::html;
use service_kit::{t, Text};

use super::pages::{fa, page};
use crate::app::Core;
use crate::domain::License;
use crate::error::{msg, Error, Result};
use crate::transparency::Receipt;

pub(crate) fn router(g: &super::Gates) -> Router<Core> {
    let reads = Router::new()
        .route("/transparency/key", get(key))
        .route("/transparency/campaigns.json", get(campaigns))
        .route("/transparency/check", get(check))
        .route("/transparency/{id}", get(overview))
        .route("/transparency/{id}/checkpoint", get(checkpoint))
        .route("/transparency/{id}/checkpoints", get(checkpoints))
        .route("/transparency/{id}/records", get(records))
        .route("/transparency/{id}/proof", get(proof))
        .route("/transparency/{id}/consistency", get(consistency))
        .route("/{m}/c/{id}/receipts", get(receipts))
        .route("/{m}/c/{id}/promise", get(promise))
        .route("/transparency/promise-key", get(promise_key))
        // Anyone may post; only a configured witness's signature is kept. Gated as the
        // reads are, so a flood of posts sheds like any other public request.
        .route(
            "/transparency/{id}/cosignatures",
            post(cosign).layer(axum::extract::DefaultBodyLimit::max(MAX_NOTE)),
        );
    g.browse.around(reads)
}

/// The largest cosigned checkpoint accepted: a checkpoint and a few signature lines.
const MAX_NOTE: usize = 16 * 1024;

/// A witness posts a checkpoint of this log with its cosignature (see
/// [`crate::transparency::witness`]): kept if the text is this log's own checkpoint and the
/// signature is a configured witness's; served with the checkpoint from then on.
async fn cosign(
    State(core): State<Core>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response> {
    campaign(&core, &id)?;
    let kept = core
        .store
        .add_cosignatures(
            &id,
            &body,
            &core.log_witnesses,
            service_kit::clock::now_ms(),
        )
        .await?;
    Ok(match kept {
        None => answer(StatusCode::NOT_FOUND, msg::NOT_OUR_CHECKPOINT),
        Some(0) => answer(StatusCode::FORBIDDEN, msg::UNKNOWN_WITNESS),
        Some(_) => answer(StatusCode::OK, msg::COSIGNED),
    })
}

fn campaign(core: &Core, id: &str) -> Result<std::sync::Arc<License>> {
    core.license_by_id(id).ok_or(Error::not_found(msg::NO_LOG))
}

async fn key(State(core): State<Core>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", core.log_verifier.as_str()),
    )
        .into_response()
}

async fn checkpoint(State(core): State<Core>, Path(id): Path<String>) -> Result<Response> {
    campaign(&core, &id)?;
    let note = core
        .store
        .log_checkpoint(&id)
        .await?
        .ok_or(Error::not_found(msg::NO_LOG))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

async fn checkpoints(State(core): State<Core>, Path(id): Path<String>) -> Result<Response> {
    campaign(&core, &id)?;
    Ok(Json(core.store.log_checkpoints(&id).await?).into_response())
}

#[derive(serde::Deserialize)]
struct Range {
    start: u64,
    end: u64,
}

async fn records(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(r): Query<Range>,
) -> Result<Response> {
    campaign(&core, &id)?;
    if r.end < r.start {
        return Err(Error::bad_request(msg::BAD_RANGE));
    }
    Ok(Json(core.store.log_records(&id, r.start, r.end).await?).into_response())
}

#[derive(serde::Deserialize)]
struct ProofQuery {
    index: u64,
    size: u64,
}

async fn proof(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(q): Query<ProofQuery>,
) -> Result<Response> {
    campaign(&core, &id)?;
    let p = core
        .store
        .log_inclusion(&id, q.size, q.index)
        .await?
        .ok_or(Error::bad_request(msg::BAD_RANGE))?;
    Ok(Json(serde_json::json!({ "index": q.index, "size": q.size, "proof": p })).into_response())
}

#[derive(serde::Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: u64,
}

async fn consistency(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Response> {
    campaign(&core, &id)?;
    let p = core
        .store
        .log_consistency(&id, q.new, q.old)
        .await?
        .ok_or(Error::bad_request(msg::BAD_RANGE))?;
    Ok(Json(serde_json::json!({ "old": q.old, "new": q.new, "proof": p })).into_response())
}

fn answer(status: StatusCode, text: Text) -> Response {
    (
        status,
        Json(serde_json::json!({ "ok": status.is_success(), "fa": text.fa, "en": text.en })),
    )
        .into_response()
}

/// The signed-in citizen's public identity in campaign `id` of storefront `m` (401 without
/// a sign-in, 404 for another storefront's campaign).
async fn signed_in_holder(
    core: &Core,
    jar: &CookieJar,
    m: &str,
    id: &str,
) -> Result<crate::domain::citizen::Holder> {
    let Some(c) = core.citizen(jar, m).await? else {
        return Err(Error::user(StatusCode::UNAUTHORIZED, msg::SIGN_IN_EXPIRED));
    };
    core.license(m, id)
        .ok_or(Error::not_found(msg::NO_PRESALE))?;
    Ok(core.queue.holder(id, &c.national_id))
}

/// The signed-in citizen's receipts in a campaign: their ticket or entry and their
/// application, each with its inclusion proof and the checkpoint it is proved against.
async fn receipts(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    let holder = signed_in_holder(&core, &jar, &m, &id).await?;
    let list = core
        .store
        .receipts(&id, &holder.0, core.log_verifier.as_str())
        .await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"emta-receipts.json\"",
        )],
        Json(list),
    )
        .into_response())
}

async fn promise_key(State(core): State<Core>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", core.promise_key.verifier_key()),
    )
        .into_response()
}

/// This browser's promise of inclusion in a campaign, and what became of it: kept (the
/// record is in a checkpoint signed by the promised time), pending, or broken.
async fn promise(
    State(core): State<Core>,
    jar: CookieJar,
    Path((m, id)): Path<(String, String)>,
) -> Result<Response> {
    use crate::transparency::promise::Verdict;
    // The signed-in citizen's own promise only: a shared browser shows nobody else's.
    let holder = signed_in_holder(&core, &jar, &m, &id).await?.0;
    let promise = super::waiting::read_promise(&jar, &id)
        .filter(|p| {
            p.campaign == id
                && p.check(core.promise_key.verifier_key()).is_ok()
                && crate::transparency::Event::parse(&p.record)
                    .is_some_and(|e| e.holder() == Some(holder.as_str()))
        })
        .ok_or(Error::not_found(msg::NO_PROMISE))?;
    // The index first, then the first checkpoint past it (one row by the primary key):
    // a record sequenced between two reads is never judged without its checkpoint.
    let index = core.store.log_index_of(&id, &promise.record).await?;
    let heads: Vec<_> = match index {
        Some(i) => core
            .store
            .log_checkpoint_past(&id, i)
            .await?
            .and_then(|n| crate::transparency::open_checkpoint(&n, &core.log_verifier, &id).ok())
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let verdict = match promise.verdict_at(&heads, index, service_kit::clock::now_ms()) {
        Verdict::Kept { index, at_ms } => {
            serde_json::json!({"kept": true, "index": index, "checkpoint_at_ms": at_ms})
        }
        Verdict::Pending => serde_json::json!({"kept": null}),
        Verdict::Broken(why) => serde_json::json!({"kept": false, "finding": why}),
    };
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"emta-promise.json\"",
        )],
        Json(serde_json::json!({ "promise": promise, "verdict": verdict })),
    )
        .into_response())
}

async fn overview(State(core): State<Core>, Path(id): Path<String>) -> Result<Response> {
    let l = campaign(&core, &id)?;
    let seed = core.store.seed_status(&id).await?;
    let note = core.store.log_checkpoint(&id).await?;
    let base = &core.base_url;
    let body = html! {
        h2 { (l.model) " · " (l.license_no) }
        p { (fa(t!(
            "هر رویداد عمومی این پیش‌فروش (مجوز، نوبت‌ها، فهرست قطعی، سهم‌های بذر، پذیرش‌ها، درخواست‌های پذیرفته، قرعه‌کشی، تعلیق) در یک درخت مرکل فقط‌افزودنی ثبت و سرخط آن امضا می‌شود.",
            "Every public event of this presale (the license, tickets, the frozen list, the seed's shares, admissions, accepted applications, the draw, suspensions) is appended to a Merkle tree whose heads are signed."
        ))) }
        h3 { (fa(t!("بذر", "Seed"))) }
        table {
            @for (p, revealed) in &seed.parties {
                tr { td { (p.party) } td { code { (p.commitment) } } td { @if *revealed { "✓" } @else { "…" } } }
            }
        }
        @if let Some((size, root)) = &seed.frozen {
            p { (fa(t!("فهرست قطعی:", "Frozen list:"))) " " (size) " · " code { (root) } }
        }
        @if let Some(s) = &seed.seed { p { "seed: " code { (s) } } }
        h3 { (fa(t!("آخرین سرخط امضاشده", "Latest signed checkpoint"))) }
        @if let Some(n) = &note { pre { (n) } }
        p { a href=(format!("/transparency/{id}/checkpoints")) { "checkpoints.json" } " · "
            a href=(format!("/transparency/{id}/records?start=0&end=1000")) { "records.json" } " · "
            a href="/transparency/key" { (fa(t!("کلید عمومی", "public key"))) } }
        p { (fa(t!("هر کسی می‌تواند کل گزارش را بازسازی و بررسی کند:", "Anyone can recompute and check the whole log:"))) }
        pre { "presale verify " (base) " " (id) " --key '" (core.log_verifier.as_str()) "'" }
        h3 { (fa(t!("بررسی رسید", "Check a receipt"))) }
        form method="get" action="/transparency/check" {
            label for="receipt" { (fa(t!("رسید (متن JSON)", "The receipt (its JSON)"))) }
            textarea #receipt name="receipt" rows="6" required {}
            button type="submit" { (fa(t!("بررسی", "Check"))) }
        }
    };
    Ok(page(
        StatusCode::OK,
        t!("گزارش شفافیت", "Transparency log"),
        body,
    ))
}

#[derive(serde::Deserialize)]
struct CheckQuery {
    receipt: String,
}

/// Checks a receipt: the checkpoint's signature, the record's inclusion, and that the log
/// served now still contains that checkpoint's tree (a consistency proof to the latest).
async fn check(State(core): State<Core>, Query(q): Query<CheckQuery>) -> Result<Response> {
    let receipt: Receipt =
        serde_json::from_str(&q.receipt).map_err(|_| Error::bad_request(msg::BAD_RECEIPT))?;
    let key = core.log_verifier.as_str();
    let verdict: std::result::Result<String, String> = async {
        let head = receipt.check(key).map_err(|e| e.to_string())?;
        let latest_note = core
            .store
            .log_checkpoint(&receipt.campaign)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no checkpoint")?;
        let latest = crate::transparency::open_checkpoint(&latest_note, key, &receipt.campaign)
            .map_err(|e| e.to_string())?;
        let proof = core
            .store
            .log_consistency(&receipt.campaign, latest.size, head.size)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no consistency proof")?;
        let proof: Vec<_> = proof
            .iter()
            .filter_map(|p| crate::transparency::parse_hash(p))
            .collect();
        tlog_tiles::tlog::check_tree(&proof, latest.size, latest.root, head.size, head.root)
            .map_err(|_| "the log no longer contains the receipt's tree: it was rewritten".to_owned())?;
        Ok(format!(
            "record {} is in the signed tree of {} records, which the current log of {} records still contains",
            receipt.index, head.size, latest.size
        ))
    }
    .await;
    let (status, body) = match verdict {
        Ok(s) => (
            StatusCode::OK,
            html! { p.ok { (fa(t!("رسید معتبر است.", "The receipt holds."))) } p { (s) } pre { (receipt.record) } },
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            html! { p.error role="alert" { (fa(t!("رسید معتبر نیست.", "The receipt does not hold."))) } p { (e) } },
        ),
    };
    Ok(page(status, t!("بررسی رسید", "Receipt check"), body))
}

#[derive(serde::Deserialize)]
struct CampaignsQuery {
    #[serde(default)]
    manufacturer: String,
}

/// `GET /transparency/campaigns.json?manufacturer=ID`: the licensed campaigns, as every
/// campaign's log states them (the IdP's trust badge names them, issue 34).
async fn campaigns(State(core): State<Core>, Query(q): Query<CampaignsQuery>) -> Response {
    let list: Vec<_> = core
        .all_licenses()
        .iter()
        .filter(|l| q.manufacturer.is_empty() || l.manufacturer == q.manufacturer)
        .map(|l| {
            serde_json::json!({
                "license_no": l.license_no,
                "manufacturer": l.manufacturer,
                "model": l.model,
                "units": l.units,
                "opens_at": l.opens_at,
                "closes_at": l.closes_at,
                "status": l.status.as_str(),
            })
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "public, max-age=30")],
        Json(serde_json::json!({ "campaigns": list })),
    )
        .into_response()
}
