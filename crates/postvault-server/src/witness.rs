//! The witness over HTTP, both ways: [`witness_router`] serves C2SP
//! tlog-witness `POST /add-checkpoint` for a [`Cosigner`] (what `postvault
//! witness serve` runs), and [`HttpWitness`] is the vault's client of any
//! conforming witness (the facade's [`postvault::Witness`]).
//!
//! Statuses and bodies are the specification's: 200 with cosignature
//! lines, 400, 403, 404, 409 with `Content-Type: text/x.tlog.size` and the
//! size held, 422; a witness that cannot write its state answers 500 and
//! cosigns nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use postvault::{Witness, WitnessCallError};
use postvault_log::{AddCheckpoint, Hash, MAX_BODY_LEN, TLOG_SIZE_CONTENT_TYPE};
use postvault_witness::{AddError, Cosigner};

/// The witness's HTTP interface: `POST /add-checkpoint` (the submission
/// prefix is the root).
pub fn witness_router(cosigner: Arc<Cosigner>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such endpoint\n") })
        .layer(DefaultBodyLimit::max(MAX_BODY_LEN))
        .with_state(cosigner)
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn add_checkpoint(State(w): State<Arc<Cosigner>>, body: Bytes) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now)).await;
    match out {
        Ok(Ok(lines)) => plain(StatusCode::OK, lines),
        Ok(Err(AddError::Refused(r))) => {
            let status =
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match r.conflict_size() {
                Some(size) => {
                    let mut resp = (status, postvault_log::format_tlog_size(size)).into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(TLOG_SIZE_CONTENT_TYPE),
                    );
                    resp
                }
                None => plain(status, format!("{r}\n")),
            }
        }
        Ok(Err(e @ AddError::Storage(_))) => {
            tracing::error!(error = %e, "witness state");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the witness could not record the checkpoint\n".into(),
            )
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the witness could not record the checkpoint\n".into(),
        ),
    }
}

/// Serves the witness on `listener` until `shutdown` resolves.
pub async fn serve_witness(
    listener: tokio::net::TcpListener,
    cosigner: Arc<Cosigner>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, witness_router(cosigner))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Largest answer read from a witness.
const MAX_ANSWER: usize = 1 << 16;

/// A witness reached over HTTP(S) (rustls, the system's roots). Owns a
/// small runtime and blocks the calling thread on it, as the facade's
/// traits are synchronous; callers must not be async tasks.
pub struct HttpWitness {
    url: String,
    client: reqwest::Client,
    /// Always `Some` until drop.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for HttpWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWitness")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpWitness {
    /// The witness whose submission prefix is `prefix` (`http://host:port`
    /// or `https://host/path`); each call gives up after `timeout`.
    pub fn new(prefix: &str, timeout: Duration) -> Result<HttpWitness, String> {
        let prefix = prefix.trim_end_matches('/');
        let parsed = reqwest::Url::parse(prefix).map_err(|e| format!("`{prefix}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{prefix}`: a witness URL is http:// or https://"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("postvault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postvault-witness-client")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpWitness {
            url: format!("{prefix}/add-checkpoint"),
            client,
            rt: Some(rt),
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<String, WitnessCallError> {
        let unavailable =
            |e: reqwest::Error| WitnessCallError::Unavailable(e.without_url().to_string());
        let resp = self
            .client
            .post(&self.url)
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status().as_u16();
        let size_body = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().map(str::trim) == Some(TLOG_SIZE_CONTENT_TYPE));
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(WitnessCallError::Unavailable(
                    "the answer is too large".into(),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        match status {
            200 => String::from_utf8(bytes)
                .map_err(|_| WitnessCallError::Unavailable("the answer is not UTF-8".into())),
            409 if size_body => postvault_log::parse_tlog_size(&bytes)
                .map(WitnessCallError::Conflict)
                .map_err(|_| WitnessCallError::Refused {
                    status,
                    message: "a 409 without a size".into(),
                })
                .and_then(Err),
            _ => {
                let text: String = String::from_utf8_lossy(&bytes)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                Err(WitnessCallError::Refused {
                    status,
                    message: text,
                })
            }
        }
    }
}

impl Witness for HttpWitness {
    fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        checkpoint: &str,
    ) -> Result<String, WitnessCallError> {
        let body = AddCheckpoint {
            old_size,
            proof: proof.to_vec(),
            checkpoint: checkpoint.to_string(),
        }
        .to_bytes();
        match &self.rt {
            Some(rt) => rt.block_on(self.post(body)),
            None => Err(WitnessCallError::Unavailable("the client is closed".into())),
        }
    }
}

impl Drop for HttpWitness {
    /// Dropped from async code (a service shutting down): do not block.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A shared handle, for [`postvault::ConfiguredWitness`].
pub fn http_witness(prefix: &str, timeout: Duration) -> Result<Arc<dyn Witness>, String> {
    Ok(Arc::new(HttpWitness::new(prefix, timeout)?))
}
