//! One handler per endpoint; each is one vault call on a blocking thread.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

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
use serde_json::Value;

use crate::{ApiError, AppState, blocking};

type St = State<Arc<AppState>>;
pub(crate) type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Id = Result<Path<String>, PathRejection>;

/// The query's parameters; a parameter given twice is malformed (which one
/// counts would be a guess).
pub(crate) fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = q.map_err(|_| ApiError::bad_request("the query string is malformed"))?;
    let mut m = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if m.contains_key(&k) {
            return Err(ApiError::bad_request(format!("`{k}` is given twice")));
        }
        m.insert(k, v);
    }
    Ok(m)
}

fn id(p: Id) -> Result<String, ApiError> {
    let Path(s) = p.map_err(|_| ApiError::bad_request("the path is malformed"))?;
    if s.is_empty() || s.chars().count() > 256 || s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "an identifier is 1 to 256 characters without control characters",
        ));
    }
    Ok(s)
}

/// A whole number from 0 to 2^63 - 1 (the document's `int64`, `minimum: 0`).
fn number(m: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{key}` must be a whole number from 0 to 9223372036854775807"
                ))
            }),
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
pub(crate) async fn json_body<T: DeserializeOwned>(
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
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

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, Json(v)).into_response()
}

fn text(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[utoipa::path(get, path = "/health", tag = "service", security(()), responses((status = 200, description = "The service is up", body = crate::openapi::Health)))]
pub async fn health() -> Response {
    json(
        StatusCode::OK,
        &crate::openapi::Health {
            status: "ok".into(),
        },
    )
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

impl ChannelReader {
    /// Waits for the next chunk with data while the current one is used
    /// up; false at the clean end.
    fn next_chunk(&mut self) -> std::io::Result<bool> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(false);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Fail(e)) => return Err(e),
                None => return Err(std::io::Error::other("the upload was dropped")),
            }
        }
        Ok(true)
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.next_chunk()? {
            return Ok(0);
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// The chunks as they arrived, lent out in place: no buffer of its own to
/// allocate, zero and copy into for every upload (a `BufReader` of 1 MiB
/// was zeroed for each one-line request: a tenth of the CPU of small
/// inserts, BENCHMARKS.md).
impl std::io::BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if !self.next_chunk()? {
            return Ok(&[]);
        }
        Ok(&self.cur)
    }

    fn consume(&mut self, amt: usize) {
        self.cur = self.cur.slice(amt.min(self.cur.len())..);
    }
}

/// `POST /v1/records`: NDJSON, streamed.
#[utoipa::path(post, path = "/v1/records", tag = "records", params(crate::openapi::CollectQuery, crate::openapi::IdempotencyHeader), request_body(description = "NDJSON: one record per line, {\"subject\", \"category\", \"purpose\"?, \"fields\", \"legal_basis\"?}; a line carrying consent is rejected (consent_not_collectable)", content((String = "application/x-ndjson"), (String = "text/plain"))), responses((status = 200, description = "The collection report: every line accepted or rejected with its reason", body = postvault::CollectReport), (status = 400, description = "`invalid` (a malformed query), `unknown_purpose`, or `upload_incomplete` (the upload stalled or was cut; with the report)", body = crate::openapi::CollectBadRequest), (status = 413, description = "`too_large`: the body passed `--max-records-body`; with the report", body = crate::openapi::CollectError), (status = 409, description = "`run_in_progress`: an upload under the same Idempotency-Key is still running (with `Retry-After`)", body = crate::error::ErrorBody), (status = 422, description = "`run_mismatch`: the Idempotency-Key was used for other content", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: the principal's role may collect nothing; refused before the body is read, with one deny leaf", body = crate::error::ErrorBody), (status = 429, description = "`too_many_uploads`, or `rate_limited`", body = crate::error::ErrorBody), (status = 500, description = "`internal`: the store failed midway; with the report", body = crate::openapi::CollectError), (status = 401, description = "No or bad token", body = crate::error::ErrorBody)))]
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
    // A role that may collect nothing is refused (one deny leaf) before
    // its upload takes a slot or is read.
    if !state.vault.collects_anything(&p) {
        let who = p.clone();
        blocking(&state, move |v| Ok(v.refuse_collection(&who)?)).await?;
    }
    // One principal's uploads leave the others some slots: past their
    // share, an upload waits for one of theirs to end.
    let Some(mine) = state.principal_upload(&p.name).await else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "this principal has {} uploads in flight and none ended while this one waited; \
                 retry when one ends",
                crate::MAX_PRINCIPAL_UPLOADS
            ),
        ));
    };
    let mut receiving = mine.body();
    let Ok(slot) = state.uploads.clone().try_acquire_owned() else {
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
        // When the forwarder last began waiting for bytes, and how long it
        // has waited for the collection instead (a busy vault is not a
        // slow client).
        let mut last = started;
        let mut held = std::time::Duration::ZERO;
        // Looked at each second too, whether or not bytes arrive.
        let second = std::time::Duration::from_secs(1);
        let tick = tokio::time::sleep(second);
        tokio::pin!(tick);
        loop {
            let arrival = tokio::select! {
                n = stream.next() => Arrival::Chunk(n),
                () = &mut tick => {
                    tick.as_mut().reset(tokio::time::Instant::now() + second);
                    Arrival::Tick
                }
            };
            // The client's own time so far: the time the service made it
            // wait for the collection not counted.
            let sending = started.elapsed().saturating_sub(held);
            if matches!(arrival, Arrival::Tick) {
                if tx.is_closed() {
                    return None; // collection stopped; its report says why
                }
                if last.elapsed() >= idle {
                    let _ = tx
                        .send(Chunk::Fail(std::io::Error::other("the upload stalled")))
                        .await;
                    return Some("stalled");
                }
            }
            // A body that has arrived (or failed) is judged no more.
            let incoming = match &arrival {
                Arrival::Chunk(Some(Ok(c))) => Some(c.len()),
                Arrival::Tick => Some(0),
                Arrival::Chunk(_) => None,
            };
            if let Some(incoming) = incoming
                && is_slow(sending, total + incoming)
                && !receiving.mark_slow()
            {
                let _ = tx
                    .send(Chunk::Fail(std::io::Error::other(
                        "the principal's other uploads are slow too",
                    )))
                    .await;
                return Some("crowded");
            }
            let next = match arrival {
                Arrival::Tick => continue,
                Arrival::Chunk(n) => n,
            };
            let Some(chunk) = next else {
                // Arrived: no longer counted among the principal's slow
                // bodies, while the collection finishes.
                drop(receiving);
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
            let elapsed = sending.as_secs();
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
            let wait = std::time::Instant::now();
            if tx.send(Chunk::Data(chunk)).await.is_err() {
                return None; // collection stopped; its report says why
            }
            last = std::time::Instant::now();
            held += last - wait;
        }
    };
    let vault = state.vault.clone();
    let work = tokio::task::spawn_blocking(move || {
        // The slot and the principal's share are held until the collection
        // has ended, even if the client goes (and the handler with it) once
        // its body has arrived: a collection still running holds them.
        let _held = (slot, mine);
        let mut reader = ChannelReader {
            rx,
            cur: Bytes::new(),
            ended: false,
        };
        vault.collect(&p, &mut reader, &opts, &mut |_| {})
    });
    let (stopped, report) = tokio::join!(forward, work);
    let report = report
        .map_err(|_| ApiError::internal("the collection worker stopped"))?
        .map_err(ApiError::from)?;
    state.metrics.ingest(report.accepted, report.rejected);
    let fail = |status, code: &str, message: String| {
        json(
            status,
            &crate::openapi::CollectError {
                error: crate::error::ErrorDetail {
                    code: code.to_string(),
                    message,
                },
                report: report.clone(),
            },
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
        (Some("crowded"), _) => fail(
            StatusCode::BAD_REQUEST,
            "upload_incomplete",
            format!(
                "the upload turned slow while this principal had {} slow uploads arriving; \
                 lines through {} were handled; send the rest faster, or when one of them ends",
                crate::MAX_SLOW_UPLOADS,
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

/// What an upload's forwarder woke for: bytes (or the body's end or
/// failure), or its once-a-second look.
enum Arrival {
    Chunk(Option<Result<Bytes, axum::Error>>),
    Tick,
}

/// Whether a body that has arrived for `elapsed`, `total` bytes of it, is
/// slow (see [`crate::MAX_SLOW_UPLOADS`]).
fn is_slow(elapsed: std::time::Duration, total: usize) -> bool {
    elapsed >= crate::SLOW_AFTER
        && (total as u128) * 1000 < elapsed.as_millis() * u128::from(crate::SLOW_RATE)
}

/// `GET /v1/subjects/{id}?purpose=P`.
#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects", params(crate::openapi::SubjectPath, crate::openapi::ReadQuery), responses((status = 200, description = "Records the purpose may see; withheld categories with reasons; the leaf index. A denied read is an answer too", body = postvault::ReadResponse), (status = 400, description = "`invalid` or `unknown_purpose`", body = crate::error::ErrorBody), crate::openapi::Common))]
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
#[utoipa::path(get, path = "/v1/subjects/{id}/report", tag = "subjects", params(crate::openapi::SubjectPath, crate::openapi::ReportQuery), responses((status = 200, description = "The subject access report with every leaf's inclusion proof", content((postvault::SubjectReport = "application/json"), (String = "text/html"))), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: not a subject-access role", body = crate::error::ErrorBody), crate::openapi::Common))]
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

/// The person's consent to a purpose, granted or withdrawn.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    /// A purpose of the pack.
    purpose: String,
    granted: bool,
}

/// `POST /v1/subjects/{id}/consent` `{"purpose", "granted"}`.
#[utoipa::path(post, path = "/v1/subjects/{id}/consent", tag = "subjects", params(crate::openapi::SubjectPath), request_body(content = ConsentBody, content_type = "application/json"), responses((status = 200, description = "Recorded; takes effect on the next read", body = crate::openapi::ConsentAnswer), (status = 400, description = "`invalid` or `unknown_purpose`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`", body = crate::error::ErrorBody), (status = 413, description = "`too_large`", body = crate::error::ErrorBody), crate::openapi::Common))]
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
        &crate::openapi::ConsentAnswer {
            subject,
            purpose: b.purpose,
            granted: b.granted,
            log_index: idx,
        },
    ))
}

/// `POST /v1/subjects/{id}/erase`: 200, 202 when the person's own request
/// waits for the privacy office, or 409 `legal_hold` with the report.
#[utoipa::path(post, path = "/v1/subjects/{id}/erase", tag = "subjects", params(crate::openapi::SubjectPath), responses((status = 200, description = "Erased: keys destroyed, rows dead at once and purged before the answer (`purged`), one leaf", body = postvault::EraseReport), (status = 202, description = "The person's own request (the subject-access service) could not be carried out now: it waits for the privacy office as the rights request `pending_request`, as a portal request does. No reason is given", body = postvault::EraseReport), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`", body = crate::error::ErrorBody), (status = 409, description = "`legal_hold`: a hold is in force; with the report", body = crate::openapi::EraseRefused), crate::openapi::Common))]
pub async fn erase(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let mut r = blocking(&state, move |v| Ok(v.erase(&p, &[subject], &mut |_| {})?)).await?;
    quiet_purge_error(&mut r.purge_error, "an erasure");
    if r.refused() {
        return Ok(json(
            StatusCode::CONFLICT,
            &crate::openapi::EraseRefused {
                error: crate::error::ErrorDetail {
                    code: "legal_hold".into(),
                    message: "a legal hold is in force".into(),
                },
                report: r,
            },
        ));
    }
    if r.pending_request.is_some() {
        return Ok(json(StatusCode::ACCEPTED, &r));
    }
    Ok(json(StatusCode::OK, &r))
}

/// `POST /v1/subjects/{id}/access-code`: a one-time code for the person's
/// portal (`/me/`), to be mailed to them. Privacy office only.
#[utoipa::path(post, path = "/v1/subjects/{id}/access-code", tag = "subjects", params(crate::openapi::SubjectPath), responses((status = 200, description = "The code, shown once; one leaf tagged for the person", body = postvault::AccessCode), (status = 400, description = "`invalid` or `invalid_subject_id`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: not the privacy office", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn access_code(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let c = blocking(&state, move |v| Ok(v.issue_access_code(&p, &subject)?)).await?;
    Ok(json(StatusCode::OK, &c))
}

/// A correction: the category's new fields, for the person's current
/// record of it (`record` picks one when they hold several).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorrectBody {
    /// A category of the pack.
    category: String,
    /// The record's fields, as the category declares them.
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    fields: Value,
    /// The record to correct (its id), when the person holds several.
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    record: Option<String>,
}

/// `POST /v1/subjects/{id}/corrections` `{"category", "fields", "record"?}`.
#[utoipa::path(post, path = "/v1/subjects/{id}/corrections", tag = "subjects", params(crate::openapi::SubjectPath), request_body(content = CorrectBody, content_type = "application/json"), responses((status = 200, description = "The new record, the one it supersedes, prior recipients to notify", body = postvault::CorrectionReport), (status = 400, description = "`invalid`: a malformed body, or fields the category does not take", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: the role, a category the vault keeps itself, or no current record", body = crate::error::ErrorBody), (status = 413, description = "`too_large`", body = crate::error::ErrorBody), crate::openapi::Common))]
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
#[utoipa::path(get, path = "/v1/subjects/{id}/accounting", tag = "subjects", params(crate::openapi::SubjectPath, crate::openapi::AccountingQuery), responses((status = 200, description = "The accounting of disclosures", body = postvault::Accounting), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn accounting(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    q: Params,
) -> Result<Response, ApiError> {
    let subject = id(path)?;
    let all = match params(q)?.get("all").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`all` is `true`, `1`, `false` or `0`",
            ));
        }
    };
    let r = blocking(&state, move |v| Ok(v.accounting(&p, &subject, all)?)).await?;
    Ok(json(StatusCode::OK, &r))
}

/// `POST /v1/disclosures`: the instrument as the body; 201 with the answer
/// (a refused request is recorded too: read `status` and `reasons`).
#[utoipa::path(post, path = "/v1/disclosures", tag = "disclosures", request_body(content = crate::openapi::Instrument, content_type = "application/json", description = "A legal instrument (docs/instruments.md). Any body is recorded: one that is not an instrument is refused with its codes"), responses((status = 201, description = "Recorded: the step answer; a refused request has status `refused` and its reasons", body = postvault::StepAnswer, headers(("Location" = String, description = "/v1/disclosures/{id}"))), (status = 413, description = "`too_large`: over `--max-body`, not recorded", body = crate::error::ErrorBody), crate::openapi::Common))]
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

#[utoipa::path(get, path = "/v1/disclosures", tag = "disclosures", responses((status = 200, description = "Requests: the requester role sees its own, the approver role and auditors all", body = Vec<postvault::RequestView>), crate::openapi::Common))]
pub async fn disclosure_list(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = blocking(&state, move |v| Ok(v.disclosure_list(&p)?)).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/v1/disclosures/{id}", tag = "disclosures", params(crate::openapi::IdPath), responses((status = 200, description = "One request", body = postvault::RequestView), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 404, description = "`not_found`: no such request visible to the caller", body = crate::error::ErrorBody), crate::openapi::Common))]
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

/// An approval, of every requested portion or only of some.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    /// Approve only these of the requested portions (category ids).
    #[serde(default)]
    portions: Option<Vec<String>>,
}

/// `POST /v1/disclosures/{id}/approve` `{"portions"?}`.
#[utoipa::path(post, path = "/v1/disclosures/{id}/approve", tag = "disclosures", params(crate::openapi::IdPath), request_body(content = ApproveBody, content_type = "application/json", description = "Optional; none approves every requested portion"), responses((status = 200, description = "The step answer (a refused step has reasons)", body = postvault::StepAnswer), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 413, description = "`too_large`", body = crate::error::ErrorBody), crate::openapi::Common))]
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

/// The optional body of a refusal.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefuseBody {
    /// The officer's reason, recorded beside `refused_by_officer`.
    #[serde(default)]
    reason: Option<RefuseReason>,
}

/// The reasons an officer may give (`postvault::gateway::codes::OFFICER_REASONS`).
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefuseReason {
    NotParticularized,
    AuthorityInsufficient,
    Overbroad,
    DocumentNotAuthenticated,
    OtherOfficerReason,
}

impl RefuseReason {
    #[cfg(test)]
    pub(crate) const ALL: [RefuseReason; 5] = [
        RefuseReason::NotParticularized,
        RefuseReason::AuthorityInsufficient,
        RefuseReason::Overbroad,
        RefuseReason::DocumentNotAuthenticated,
        RefuseReason::OtherOfficerReason,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefuseReason::NotParticularized => "not_particularized",
            RefuseReason::AuthorityInsufficient => "authority_insufficient",
            RefuseReason::Overbroad => "overbroad",
            RefuseReason::DocumentNotAuthenticated => "document_not_authenticated",
            RefuseReason::OtherOfficerReason => "other_officer_reason",
        }
    }
}

/// `POST /v1/disclosures/{id}/refuse` `{"reason"?}`.
#[utoipa::path(post, path = "/v1/disclosures/{id}/refuse", tag = "disclosures", params(crate::openapi::IdPath), request_body(content = RefuseBody, content_type = "application/json", description = "Optional; the officer's reason code"), responses((status = 200, description = "The step answer (a refused step has reasons)", body = postvault::StepAnswer), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn disclose_refuse(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
    body: Body,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let b: RefuseBody = json_body(body, state.config.max_body).await?;
    let a = blocking(&state, move |v| {
        Ok(v.disclose_refuse_with(&p, &rid, b.reason.map(RefuseReason::as_str))?)
    })
    .await?;
    Ok(json(StatusCode::OK, &a))
}

#[utoipa::path(post, path = "/v1/disclosures/{id}/fetch", tag = "disclosures", params(crate::openapi::IdPath), responses((status = 200, description = "The package: exactly the approved portions of the named people, or the reasons it was refused", body = postvault::Package), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn disclose_fetch(
    State(state): St,
    Extension(p): Extension<Principal>,
    path: Id,
) -> Result<Response, ApiError> {
    let rid = id(path)?;
    let pkg = blocking(&state, move |v| Ok(v.disclose_fetch(&p, &rid)?)).await?;
    Ok(json(StatusCode::OK, &pkg))
}

/// Why a request is ended early.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndBody {
    /// `improperly_ordered` destroys everything recorded under a mail cover.
    #[schema(inline, value_type = crate::openapi::EndReasonName)]
    reason: String,
}

/// `POST /v1/disclosures/{id}/end` `{"reason"}`.
#[utoipa::path(post, path = "/v1/disclosures/{id}/end", tag = "disclosures", params(crate::openapi::IdPath), request_body(content = EndBody, content_type = "application/json"), responses((status = 200, description = "The step answer (a refused step has reasons)", body = postvault::StepAnswer), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 413, description = "`too_large`", body = crate::error::ErrorBody), crate::openapi::Common))]
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

/// A legal hold from an approved disclosure request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldBody {
    /// The approved (or fetched) disclosure request the hold rests on.
    request: String,
    /// A date (`YYYY-MM-DD`) or an RFC 3339 time, after now and at most 90
    /// days ahead (the default).
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    until: Option<String>,
}

/// `POST /v1/holds` `{"request", "until"?}`.
#[utoipa::path(post, path = "/v1/holds", tag = "holds", request_body(content = HoldBody, content_type = "application/json"), responses((status = 201, description = "The hold", body = postvault::HoldView), (status = 400, description = "`invalid`: a malformed body, or an `until` not after now or more than 90 days ahead", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: the role, or a request that is not approved", body = crate::error::ErrorBody), (status = 413, description = "`too_large`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn hold_place(
    State(state): St,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: HoldBody = json_body(body, state.config.max_body).await?;
    let until = match &b.until {
        Some(s) => Some(postvault_time::parse_iso(s).ok_or_else(|| {
            ApiError::bad_request("`until` is a date (YYYY-MM-DD) or an RFC 3339 time")
        })?),
        None => None,
    };
    let h = blocking(&state, move |v| Ok(v.hold_place(&p, &b.request, until)?)).await?;
    Ok(json(StatusCode::CREATED, &h))
}

#[utoipa::path(get, path = "/v1/holds", tag = "holds", responses((status = 200, description = "Every hold", body = Vec<postvault::HoldView>), (status = 403, description = "`not_permitted`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn hold_list(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let h = blocking(&state, move |v| Ok(v.holds(&p)?)).await?;
    Ok(json(StatusCode::OK, &h))
}

#[utoipa::path(post, path = "/v1/holds/{id}/release", tag = "holds", params(crate::openapi::IdPath), responses((status = 200, description = "The released hold", body = postvault::HoldView), (status = 400, description = "`invalid`", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: the role, or an unknown or released hold", body = crate::error::ErrorBody), crate::openapi::Common))]
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
#[utoipa::path(post, path = "/v1/principals/{name}/revoke", tag = "principals", params(crate::openapi::PrincipalPath), responses((status = 200, description = "Revoked: `status` is `revoked`; one leaf", body = postvault::PrincipalChange), (status = 400, description = "`invalid`: a malformed name", body = crate::error::ErrorBody), (status = 403, description = "`not_permitted`: not a privacy officer (one deny leaf)", body = crate::error::ErrorBody), (status = 404, description = "`principal_not_active`: unknown, or revoked already", body = crate::error::ErrorBody), crate::openapi::Common))]
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

/// `POST /v1/principals/{name}/rotate`: a principal gives itself a new
/// token (in the answer, once); the old one is refused by every node within
/// a second. Only `name`'s own token rotates here: the new token of another
/// principal is never handed to the caller, an officer included.
#[utoipa::path(post, path = "/v1/principals/{name}/rotate", tag = "principals", params(crate::openapi::PrincipalPath), responses((status = 200, description = "Rotated: `status` is `rotated`, `token` the caller's new bearer token (shown once); one leaf", body = postvault::PrincipalChange), (status = 400, description = "`invalid`: a malformed name", body = crate::error::ErrorBody), (status = 403, description = "`rotate_own_token_only`: `name` is not the caller (any role, an officer too; one deny leaf). The operator rotates another principal's token with `postvault principal rotate NAME`", body = crate::error::ErrorBody), crate::openapi::Common))]
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
#[utoipa::path(post, path = "/v1/retention/run", tag = "retention", responses((status = 200, description = "What the sweep destroyed and deleted", body = postvault::RetentionReport), (status = 403, description = "`not_permitted`", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn retention_run(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let mut r = blocking(&state, move |v| Ok(v.retention_run_as(&p, &mut |_| {})?)).await?;
    quiet_purge_error(&mut r.purge_error, "a retention sweep");
    Ok(json(StatusCode::OK, &r))
}

/// A purge that failed after the work it follows stood: the store's words
/// (paths, the database's) go to the service log, as for any 5xx; the
/// client learns that it failed and that the sweep purges later.
fn quiet_purge_error(purge_error: &mut Option<String>, after: &str) {
    if let Some(e) = purge_error.take() {
        tracing::error!(error = %e, "the purge after {after} failed");
        *purge_error = Some(
            "the purge of the erased rows failed; what was done stands and the sweep purges \
             them; the service log has the cause"
                .into(),
        );
    }
}

#[utoipa::path(get, path = "/v1/reports/transparency", tag = "disclosures", responses((status = 200, description = "The transparency report", body = postvault::TransparencyReport), crate::openapi::Common))]
pub async fn transparency(
    State(state): St,
    Extension(_p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let r = blocking(&state, |v| Ok(v.transparency_report()?)).await?;
    Ok(json(StatusCode::OK, &r))
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"), (status = 403, description = "`not_permitted`: neither the privacy office nor the auditor", body = crate::error::ErrorBody), crate::openapi::Common))]
pub async fn metrics(
    State(state): St,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    if !state.vault.may_read_metrics(&p) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "the service's metrics are for the privacy office and the auditor",
        ));
    }
    let size = blocking(&state, |v| {
        Ok(v.store().log_size().map_err(postvault::VaultError::from)?)
    })
    .await?;
    Ok(text(
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render(size),
    ))
}

#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "This document", body = crate::openapi::OpenApiDocument), crate::openapi::Common))]
pub async fn openapi(State(state): St, Extension(_p): Extension<Principal>) -> Response {
    text(
        "application/json",
        crate::openapi::document_for(state.vault.pack()),
    )
}

/// `GET /v1/log/checkpoint` (and `/log/checkpoint`): the signed note, with
/// the witness cosignatures when the vault has witnesses.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log", security(()), responses((status = 200, description = "The signed checkpoint (C2SP signed note); with witnesses, the latest one a quorum cosigned, their tlog-cosignature/v1 lines after the log's signature (503 `no_final_checkpoint` until a quorum cosigned one)", body = String, content_type = "text/plain; charset=utf-8"), crate::openapi::PublicCommon))]
pub async fn log_checkpoint(State(state): St) -> Result<Response, ApiError> {
    let (note, _) = state.checkpoint().await?;
    Ok(text("text/plain; charset=utf-8", note))
}

/// `GET /v1/log/witnesses`: the witness policy and where cosigning stands.
#[utoipa::path(get, path = "/v1/log/witnesses", tag = "log", security(()), responses((status = 200, description = "The witness policy and where cosigning stands", body = crate::openapi::WitnessStatus), crate::openapi::PublicCommon))]
pub async fn log_witnesses(State(state): St) -> Result<Response, ApiError> {
    let body = blocking(&state, |v| {
        let (keys, quorum) = v.witness_policy();
        let fin = v.final_checkpoint()?;
        let latest = v
            .store()
            .latest_checkpoint()
            .map_err(postvault::VaultError::from)?
            .map(|(s, _)| s);
        Ok(crate::openapi::WitnessStatus {
            quorum,
            witnesses: keys,
            pending: latest.is_some() && latest != fin.as_ref().map(|c| c.size),
            final_checkpoint: fin.map(|c| crate::openapi::FinalCheckpoint {
                size: c.size,
                cosigners: c.cosigners,
            }),
            latest_signed: latest,
        })
    })
    .await?;
    Ok(json(StatusCode::OK, &body))
}

/// `GET /v1/log/proof/inclusion?index=&size=`.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "log", security(()), params(crate::openapi::InclusionQuery), responses((status = 200, description = "An RFC 6962 inclusion proof", body = postvault::InclusionProof), (status = 400, description = "`invalid`: a malformed number, a leaf outside the tree, a tree larger than the log", body = crate::error::ErrorBody), crate::openapi::PublicCommon))]
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
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "log", security(()), params(crate::openapi::ConsistencyQuery), responses((status = 200, description = "An RFC 6962 consistency proof", body = postvault::ConsistencyProof), (status = 400, description = "`invalid`: a malformed number, or not `old <= new <=` the log size", body = crate::error::ErrorBody), crate::openapi::PublicCommon))]
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
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", security(()), params(crate::openapi::EntriesQuery), responses((status = 200, description = "Entries `start` to `end` (exclusive), cut at the log's size", body = Vec<postvault::LogEntry>), (status = 400, description = "`invalid`: a malformed number, `end` before `start` or more than 1000 past it", body = crate::error::ErrorBody), crate::openapi::PublicCommon))]
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
#[utoipa::path(get, path = "/log/tile/{path}", tag = "log", security(()), params(crate::openapi::TilePath), responses((status = 200, description = "The tile or entry bundle", body = Vec<u8>, content_type = "application/octet-stream"), (status = 404, description = "`not_found`: a malformed path, or beyond the log", body = crate::error::ErrorBody), crate::openapi::PublicCommon))]
pub async fn log_tile(State(state): St, path: Id) -> Result<Response, ApiError> {
    // Any path the log cannot answer, malformed ones included, is no such
    // tile (C2SP tlog-tiles clients expect 404).
    let Ok(Path(p)) = path else {
        return Err(ApiError::not_found("no such tile"));
    };
    if p.len() > 64 {
        return Err(ApiError::not_found("no such tile"));
    }
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

#[cfg(test)]
mod tests {
    use super::RefuseReason;

    /// The API document's reasons are the vault's, in its order.
    #[test]
    fn refusal_reasons_are_the_vaults() {
        let api: Vec<&str> = RefuseReason::ALL.iter().map(|r| r.as_str()).collect();
        let vault: Vec<&str> = postvault::gateway::codes::OFFICER_REASONS
            .iter()
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(api, vault);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod purge_error_tests {
    #[test]
    fn a_failed_purge_is_said_without_the_stores_words() {
        let mut e = Some("database disk image is malformed at /srv/vault/data.db".to_string());
        super::quiet_purge_error(&mut e, "an erasure");
        let said = e.unwrap();
        assert!(
            said.contains("purge") && said.contains("service log"),
            "{said}"
        );
        assert!(
            !said.contains("/srv") && !said.contains("malformed"),
            "{said}"
        );
        let mut none = None;
        super::quiet_purge_error(&mut none, "an erasure");
        assert!(none.is_none());
    }
}
