//! One handler per endpoint; each is one vault call on a blocking thread.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use postvault::{ApproveOptions, CollectOptions, EndReason, Principal};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{ApiError, AppState, blocking};

type St = State<Arc<AppState>>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type Id = Result<Path<String>, PathRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|_| ApiError::bad_request("the query string is malformed"))
}

fn id(p: Id) -> Result<String, ApiError> {
    let Path(s) = p.map_err(|_| ApiError::bad_request("the path is malformed"))?;
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "an identifier is 1 to 256 bytes without control characters",
        ));
    }
    Ok(s)
}

fn number(m: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("`{key}` must be a whole number"))),
    }
}

fn required(m: &HashMap<String, String>, key: &str) -> Result<u64, ApiError> {
    number(m, key)?.ok_or_else(|| ApiError::bad_request(format!("`{key}` is required")))
}

/// The whole body, at most `limit` bytes.
async fn body_bytes(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A JSON body; an empty body reads as `{}`.
async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = body_bytes(body, limit).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not the JSON this endpoint takes (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, Json(v)).into_response()
}

fn text(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[utoipa::path(get, path = "/health", tag = "service", security(()), responses((status = 200, description = "The service is up", body = Object)))]
pub async fn health() -> Response {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// A blocking `Read` over the chunks an async task forwards; bounded, so a
/// slow vault slows the upload (backpressure).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    cur: Bytes,
    ended: bool,
}

/// What the upload task forwards: data, the clean end, or why it stopped.
/// A channel closed without `End` (the request dropped) is a cut upload,
/// never a clean end, so the batch in progress is not stored.
enum Chunk {
    Data(Bytes),
    End,
    Fail(std::io::Error),
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Some(Chunk::Fail(e)) => return Err(e),
                None => return Err(std::io::Error::other("the upload was dropped")),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// `POST /v1/records`: NDJSON, streamed.
#[utoipa::path(post, path = "/v1/records", tag = "records", params(("purpose" = Option<String>, Query, description = "Purpose of lines that name none"), ("batch_size" = Option<u64>, Query, description = "Lines per transaction (default 2048)")), request_body(content = String, content_type = "application/x-ndjson", description = "One record per line: {\"subject\", \"category\", \"purpose\", \"fields\", \"legal_basis\"?}; a line carrying consent is rejected (consent_not_collectable)"), responses((status = 200, description = "The collection report: accepted, rejected, per-line errors, leaves", body = Object), (status = 413, description = "Body too large; the report says how far it got", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn collect(
    State(state): St,
    Extension(p): Extension<Principal>,
    q: Params,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = params(q)?;
    let opts = CollectOptions {
        default_purpose: q.get("purpose").cloned(),
        batch_size: number(&q, "batch_size")?
            .map(|n| n.clamp(1, 65_536) as usize)
            .unwrap_or(2048),
        run: crate::idempotency::key(&headers)?,
    };
    let Ok(_permit) = state.uploads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "{} uploads are in flight; retry when one ends",
                crate::MAX_UPLOADS
            ),
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(16);
    let limit = state.config.max_records_body;
    let idle = state.config.timeout;
    let forward = async move {
        let mut stream = body.into_data_stream();
        let mut total = 0usize;
        let started = std::time::Instant::now();
        loop {
            let next = match tokio::time::timeout(idle, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    let _ = tx
                        .send(Chunk::Fail(std::io::Error::other("the upload stalled")))
                        .await;
                    return Some("stalled");
                }
            };
            let Some(chunk) = next else {
                let _ = tx.send(Chunk::End).await;
                return None;
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(_) => {
                    let _ = tx
                        .send(Chunk::Fail(std::io::Error::other("the upload was cut")))
                        .await;
                    return Some("cut");
                }
            };
            total += chunk.len();
            // A trickle holds an upload slot: after a minute, at least
            // 1 KiB a second on average.
            let elapsed = started.elapsed().as_secs();
            if elapsed > 60 && (total as u64) < elapsed * 1024 {
                let _ = tx
                    .send(Chunk::Fail(std::io::Error::other("the upload is too slow")))
                    .await;
                return Some("stalled");
            }
            if total > limit {
                let _ = tx
                    .send(Chunk::Fail(std::io::Error::other(
                        "the upload is too large",
                    )))
                    .await;
                return Some("too_large");
            }
            if tx.send(Chunk::Data(chunk)).await.is_err() {
                return None; // collection stopped; its report says why
            }
        }
    };
    let vault = state.vault.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::with_capacity(
            1 << 20,
            ChannelReader {
                rx,
                cur: Bytes::new(),
                ended: false,
            },
        );
        vault.collect(&p, &mut reader, &opts, &mut |_| {})
    });
    let (stopped, report) = tokio::join!(forward, work);
    let report = report
        .map_err(|_| ApiError::internal("the collection worker stopped"))?
        .map_err(ApiError::from)?;
    state
        .metrics
        .records_ingested
        .fetch_add(report.accepted, Ordering::Relaxed);
    state
        .metrics
        .records_rejected
        .fetch_add(report.rejected, Ordering::Relaxed);
    let report_json = serde_json::to_value(&report).unwrap_or(Value::Null);
    let fail = |status, code, message: String| {
        json(
            status,
            &json!({"error": {"code": code, "message": message}, "report": report_json}),
        )
    };
    Ok(match (stopped, &report.failure) {
        (Some("too_large"), _) => fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {limit} bytes; lines through {} were handled",
                report.committed_through_line
            ),
        ),
        (Some(_), _) => fail(
            StatusCode::BAD_REQUEST,
            "upload_incomplete",
            format!(
                "the upload stopped; lines through {} were handled",
                report.committed_through_line
            ),
        ),
        (None, Some(f)) if f.code == "run_in_progress" => {
            let mut r = fail(
                StatusCode::CONFLICT,
                "run_in_progress",
                format!(
                    "another upload with this Idempotency-Key committed lines first; lines through {} are handled; resend to resume",
                    report.committed_through_line
                ),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            r
        }
        (None, Some(f)) => {
            tracing::error!(code = %f.code, error = %f.message, "collection stopped");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!(
                    "collection stopped ({}); lines through {} were handled; the service log has more",
                    f.code, report.committed_through_line
                ),
            )
        }
        (None, None) => json(StatusCode::OK, &report),
    })
}

/// `GET /v1/subjects/{id}?purpose=P`.
#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects", params(("id" = String, Path, description = "The person's identifier"), ("purpose" = String, Query, description = "The declared purpose")), responses((status = 200, description = "Records the purpose may see; withheld categories with reasons; the leaf index", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn read(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    q: Params,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let purpose = params(q)?
        .remove("purpose")
        .ok_or_else(|| ApiError::bad_request("`purpose` is required"))?;
    let r = blocking(&state, move |v| Ok(v.read(&p, &subject, &purpose)?)).await?;
    state.metrics.decision(!r.denied());
    Ok(json(StatusCode::OK, &r))
}

/// `GET /v1/subjects/{id}/report?format=json|html`.
#[utoipa::path(get, path = "/v1/subjects/{id}/report", tag = "subjects", params(("id" = String, Path), ("format" = Option<String>, Query, description = "json (default) or html")), responses((status = 200, description = "The subject access report with every leaf's inclusion proof", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn subject_report(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    q: Params,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let html = match params(q)?.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::bad_request("`format` is `json` or `html`")),
    };
    let r = blocking(&state, move |v| Ok(v.subject_report(&p, &subject)?)).await?;
    Ok(if html {
        text("text/html; charset=utf-8", postvault::report_html(&r))
    } else {
        json(StatusCode::OK, &r)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    purpose: String,
    granted: bool,
}

/// `POST /v1/subjects/{id}/consent` `{"purpose", "granted"}`.
#[utoipa::path(post, path = "/v1/subjects/{id}/consent", tag = "subjects", params(("id" = String, Path)), request_body(content = Object, description = "{\"purpose\", \"granted\": bool}"), responses((status = 200, description = "Recorded; takes effect on the next read", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn consent(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    body: Body,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let b: ConsentBody = json_body(body, state.config.max_body).await?;
    let s = subject.clone();
    let purpose = b.purpose.clone();
    let idx = blocking(&state, move |v| {
        Ok(v.set_consent(&p, &s, &purpose, b.granted)?)
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"subject": subject, "purpose": b.purpose, "granted": b.granted, "log_index": idx}),
    ))
}

/// `POST /v1/subjects/{id}/erase`: 200, or 409 `legal_hold` with the report.
#[utoipa::path(post, path = "/v1/subjects/{id}/erase", tag = "subjects", params(("id" = String, Path)), responses((status = 200, description = "Erased: keys destroyed, rows deleted, one leaf", body = Object), (status = 409, description = "A legal hold is in force", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn erase(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let r = blocking(&state, move |v| Ok(v.erase(&p, &[subject], &mut |_| {})?)).await?;
    if r.refused() {
        return Ok(json(
            StatusCode::CONFLICT,
            &json!({"error": {"code": "legal_hold", "message": "a legal hold is in force"}, "report": r}),
        ));
    }
    Ok(json(StatusCode::OK, &r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectBody {
    category: String,
    fields: Value,
    #[serde(default)]
    record: Option<String>,
}

/// `POST /v1/subjects/{id}/corrections` `{"category", "fields", "record"?}`.
#[utoipa::path(post, path = "/v1/subjects/{id}/corrections", tag = "subjects", params(("id" = String, Path)), request_body(content = Object, description = "{\"category\", \"fields\": {...}, \"record\"?}"), responses((status = 200, description = "The new record, the one it supersedes, prior recipients to notify", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn correct(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    body: Body,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let b: CorrectBody = json_body(body, state.config.max_body).await?;
    let fields = b.fields.to_string();
    let r = blocking(&state, move |v| {
        Ok(v.correct(&p, &subject, &b.category, &fields, b.record.as_deref())?)
    })
    .await?;
    Ok(json(StatusCode::OK, &r))
}

/// `GET /v1/subjects/{id}/accounting[?all=true]`.
#[utoipa::path(get, path = "/v1/subjects/{id}/accounting", tag = "subjects", params(("id" = String, Path), ("all" = Option<bool>, Query, description = "Officers: include entries under a delay order, marked")), responses((status = 200, description = "The accounting of disclosures", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn accounting(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    q: Params,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let all = matches!(
        params(q)?.get("all").map(String::as_str),
        Some("true" | "1")
    );
    let r = blocking(&state, move |v| Ok(v.accounting(&p, &subject, all)?)).await?;
    Ok(json(StatusCode::OK, &r))
}

/// `POST /v1/disclosures`: the instrument as the body; 201 with the answer
/// (a refused request is recorded too: read `status` and `reasons`).
#[utoipa::path(post, path = "/v1/disclosures", tag = "disclosures", request_body(content = Object, description = "A legal instrument (docs/instruments.md)"), responses((status = 201, description = "Recorded: {id, status, reasons, alerts, log_index}; a refused request has status refused", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclose_submit(
    State(state): St,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    // The gateway refuses oversized instruments itself, with a code.
    let bytes = body_bytes(body, state.config.max_body).await?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let a = blocking(&state, move |v| Ok(v.disclose_submit(&p, &text)?)).await?;
    let mut r = json(StatusCode::CREATED, &a);
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/disclosures/{}", a.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[utoipa::path(get, path = "/v1/disclosures", tag = "disclosures", responses((status = 200, description = "Requests: an agency sees its own, an officer all", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclosure_list(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = blocking(&state, move |v| Ok(v.disclosure_list(&p)?)).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/v1/disclosures/{id}", tag = "disclosures", params(("id" = String, Path)), responses((status = 200, description = "One request", body = Object), (status = 404, description = "No such request visible to you", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclosure_show(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    match blocking(&state, move |v| Ok(v.disclosure_show(&p, &rid)?)).await? {
        Some(r) => Ok(json(StatusCode::OK, &r)),
        None => Err(ApiError::not_found(
            "no request with that id is visible to you",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    portions: Option<Vec<String>>,
}

/// `POST /v1/disclosures/{id}/approve` `{"portions"?}`.
#[utoipa::path(post, path = "/v1/disclosures/{id}/approve", tag = "disclosures", params(("id" = String, Path)), request_body(content = Object, description = "{\"portions\"?: [category]}"), responses((status = 200, description = "The step answer", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclose_approve(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    body: Body,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let b: ApproveBody = json_body(body, state.config.max_body).await?;
    let opts = ApproveOptions {
        portions: b.portions,
    };
    let a = blocking(&state, move |v| Ok(v.disclose_approve(&p, &rid, &opts)?)).await?;
    Ok(json(StatusCode::OK, &a))
}

#[utoipa::path(post, path = "/v1/disclosures/{id}/refuse", tag = "disclosures", params(("id" = String, Path)), responses((status = 200, description = "The step answer", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclose_refuse(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let a = blocking(&state, move |v| Ok(v.disclose_refuse(&p, &rid)?)).await?;
    Ok(json(StatusCode::OK, &a))
}

#[utoipa::path(post, path = "/v1/disclosures/{id}/fetch", tag = "disclosures", params(("id" = String, Path)), responses((status = 200, description = "The package: exactly the approved portions of the named people", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclose_fetch(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let pkg = blocking(&state, move |v| Ok(v.disclose_fetch(&p, &rid)?)).await?;
    Ok(json(StatusCode::OK, &pkg))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    reason: String,
}

/// `POST /v1/disclosures/{id}/end` `{"reason"}`.
#[utoipa::path(post, path = "/v1/disclosures/{id}/end", tag = "disclosures", params(("id" = String, Path)), request_body(content = Object, description = "{\"reason\"}"), responses((status = 200, description = "The step answer", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn disclose_end(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    body: Body,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let b: EndBody = json_body(body, state.config.max_body).await?;
    let reason = EndReason::from_id(&b.reason)
        .ok_or_else(|| ApiError::bad_request("`reason` is not an end reason of the pack"))?;
    let a = blocking(&state, move |v| Ok(v.disclose_end(&p, &rid, reason)?)).await?;
    Ok(json(StatusCode::OK, &a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    request: String,
    #[serde(default)]
    until: Option<String>,
}

/// `POST /v1/holds` `{"request", "until"?}`.
#[utoipa::path(post, path = "/v1/holds", tag = "holds", request_body(content = Object, description = "{\"request\", \"until\"?}"), responses((status = 201, description = "The hold", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn hold_place(
    State(state): St,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: HoldBody = json_body(body, state.config.max_body).await?;
    let until = match &b.until {
        Some(s) => Some(postvault_policy::disclosure::parse_iso(s).ok_or_else(|| {
            ApiError::bad_request("`until` is a date (YYYY-MM-DD) or an RFC 3339 time")
        })?),
        None => None,
    };
    let h = blocking(&state, move |v| Ok(v.hold_place(&p, &b.request, until)?)).await?;
    Ok(json(StatusCode::CREATED, &h))
}

#[utoipa::path(get, path = "/v1/holds", tag = "holds", responses((status = 200, description = "Every hold", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn hold_list(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let h = blocking(&state, move |v| Ok(v.holds(&p)?)).await?;
    Ok(json(StatusCode::OK, &h))
}

#[utoipa::path(post, path = "/v1/holds/{id}/release", tag = "holds", params(("id" = String, Path)), responses((status = 200, description = "The released hold", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn hold_release(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let hid = id(path)?;
    let h = blocking(&state, move |v| Ok(v.hold_release(&p, &hid)?)).await?;
    Ok(json(StatusCode::OK, &h))
}

/// `POST /v1/principals/{name}/revoke`: a privacy officer revokes a
/// principal; its token is refused by every node within a second.
#[utoipa::path(post, path = "/v1/principals/{name}/revoke", tag = "principals", params(("name" = String, Path)), responses((status = 200, description = "{\"name\", \"status\": \"revoked\", \"log_index\"}", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "Not a privacy officer (one deny leaf)", body = Object), (status = 404, description = "`principal_not_active`: unknown, or revoked already", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn principal_revoke(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let name = id(path)?;
    let r = blocking(&state, move |v| Ok(v.revoke_principal(Some(&p), &name)?)).await?;
    state.forget_tokens();
    Ok(json(StatusCode::OK, &r))
}

/// `POST /v1/principals/{name}/rotate`: a privacy officer gives a principal
/// a new token (in the answer, once); the old one is refused by every node
/// within a second.
#[utoipa::path(post, path = "/v1/principals/{name}/rotate", tag = "principals", params(("name" = String, Path)), responses((status = 200, description = "{\"name\", \"status\": \"rotated\", \"token\", \"log_index\"}", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "Not a privacy officer (one deny leaf)", body = Object), (status = 404, description = "`principal_not_active`: unknown, or revoked already", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn principal_rotate(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let name = id(path)?;
    let r = blocking(&state, move |v| Ok(v.rotate_principal(Some(&p), &name)?)).await?;
    state.forget_tokens();
    let mut res = json(StatusCode::OK, &r);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /v1/retention/run`: a privacy officer runs the sweep now.
#[utoipa::path(post, path = "/v1/retention/run", tag = "retention", responses((status = 200, description = "What the sweep destroyed and deleted", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn retention_run(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = blocking(&state, move |v| Ok(v.retention_run_as(&p, &mut |_| {})?)).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/v1/reports/transparency", tag = "disclosures", responses((status = 200, description = "The transparency report", body = Object), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn transparency(
    State(state): St,
    Extension(_p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = blocking(&state, |v| Ok(v.transparency_report()?)).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text", body = String), (status = 400, description = "Bad input", body = Object), (status = 401, description = "No or bad token", body = Object), (status = 403, description = "The role may not act", body = Object), (status = 429, description = "Rate limited", body = Object)))]
pub async fn metrics(
    State(state): St,
    Extension(_p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let size = blocking(&state, |v| {
        Ok(v.store().log_size().map_err(postvault::VaultError::from)?)
    })
    .await?;
    Ok(text(
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(size),
    ))
}

#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi(Extension(_p): Extension<Principal>) -> Response {
    text("application/json", crate::openapi::document())
}

/// `GET /v1/log/checkpoint` (and `/log/checkpoint`): the signed note, with
/// the witness cosignatures when the vault has witnesses.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log", security(()), responses((status = 200, description = "The signed checkpoint (C2SP signed note), text/plain; with witnesses, the latest one a quorum cosigned, their tlog-cosignature/v1 lines after the log's signature", body = String), (status = 503, description = "Witnesses are configured and no checkpoint has a quorum of cosignatures yet", body = Object)))]
pub async fn log_checkpoint(State(state): St) -> Result<Response, ApiError> {
    let (note, _) = state.checkpoint().await?;
    Ok(text("text/plain; charset=utf-8", note))
}

/// `GET /v1/log/witnesses`: the witness policy and where cosigning stands.
#[utoipa::path(get, path = "/v1/log/witnesses", tag = "log", security(()), responses((status = 200, description = "{quorum, witnesses (verifier keys), final {size, cosigners} or null, latest_signed}", body = Object)))]
pub async fn log_witnesses(State(state): St) -> Result<Response, ApiError> {
    let body = blocking(&state, |v| {
        let (keys, quorum) = v.witness_policy();
        let fin = v.final_checkpoint()?;
        let latest = v
            .store()
            .latest_checkpoint()
            .map_err(postvault::VaultError::from)?
            .map(|(s, _)| s);
        Ok(json!({
            "quorum": quorum,
            "witnesses": keys,
            "final": fin.as_ref().map(|c| json!({"size": c.size, "cosigners": c.cosigners})),
            "latest_signed": latest,
            "pending": latest.is_some() && latest != fin.as_ref().map(|c| c.size),
        }))
    })
    .await?;
    Ok(json(StatusCode::OK, &body))
}

/// `GET /v1/log/proof/inclusion?index=&size=`.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "log", security(()), params(("index" = u64, Query), ("size" = Option<u64>, Query, description = "Default: the latest checkpoint")), responses((status = 200, description = "An RFC 6962 inclusion proof", body = Object), (status = 400, description = "Bad input", body = Object)))]
pub async fn log_inclusion(State(state): St, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let index = required(&q, "index")?;
    let size = match number(&q, "size")? {
        Some(s) => s,
        None => state.checkpoint().await?.1,
    };
    let p = blocking(&state, move |v| Ok(v.prove_inclusion(index, Some(size))?)).await?;
    Ok(json(StatusCode::OK, &p))
}

/// `GET /v1/log/proof/consistency?old=&new=`.
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "log", security(()), params(("old" = u64, Query), ("new" = u64, Query)), responses((status = 200, description = "An RFC 6962 consistency proof", body = Object), (status = 400, description = "Bad input", body = Object)))]
pub async fn log_consistency(State(state): St, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let old = required(&q, "old")?;
    let new = required(&q, "new")?;
    let p = blocking(&state, move |v| Ok(v.prove_consistency(old, new)?)).await?;
    Ok(json(StatusCode::OK, &p))
}

/// Entries per call at most.
const MAX_ENTRIES: u64 = 1000;

/// `GET /v1/log/entries?start=&end=` (at most 1000 a call).
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", security(()), params(("start" = u64, Query), ("end" = u64, Query, description = "Exclusive; at most start + 1000")), responses((status = 200, description = "Entries: index, leaf (base64), event", body = Object), (status = 400, description = "Bad input", body = Object)))]
pub async fn log_entries(State(state): St, q: Params) -> Result<Response, ApiError> {
    let q = params(q)?;
    let start = required(&q, "start")?;
    let end = required(&q, "end")?;
    if end < start || end - start > MAX_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "`end` must be at least `start` and at most {MAX_ENTRIES} past it"
        )));
    }
    let e = blocking(&state, move |v| {
        let size = v.store().log_size().map_err(postvault::VaultError::from)?;
        Ok(v.log_entries(start.min(size), end.min(size))?)
    })
    .await?;
    Ok(json(StatusCode::OK, &e))
}

/// `GET /log/tile/<L>/<N>[.p/<W>]` and `/log/tile/entries/<N>[.p/<W>]`.
#[utoipa::path(get, path = "/log/tile/{path}", tag = "log", security(()), params(("path" = String, Path, description = "<L>/<N>[.p/<W>] or entries/<N>[.p/<W>] (C2SP tlog-tiles)")), responses((status = 200, description = "The tile bytes", body = String), (status = 404, description = "No such tile", body = Object)))]
pub async fn log_tile(State(state): St, path: Id) -> Result<Response, ApiError> {
    let p = id(path)?;
    let bytes = blocking(&state, move |v| {
        // A failure to bring the tree up to date is the service's (5xx);
        // after it, a path the log cannot answer is no such tile.
        v.log_catch_up()?;
        v.log_tile(&p).map_err(|e| match e.code() {
            "invalid" | "log" => ApiError::not_found("no such tile"),
            _ => ApiError::from(e),
        })
    })
    .await?;
    let mut r = text("application/octet-stream", bytes);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(r)
}
