//! The postvault HTTP service: every vault operation as an authenticated
//! JSON API (axum on tokio), the transparency log's read endpoints and
//! C2SP tiles, `/openapi.json`, `/health` and `/metrics`.
//!
//! Each request is one call into [`postvault::Vault`] on a blocking thread;
//! the vault's guarantees (purpose-bound reads, the leaf durable before any
//! data, exactly one leaf per decision) hold unchanged. Errors are
//! `{"error": {"code", "message"}}` with stable codes (docs/http.md).

mod error;
mod forwarded;
mod handlers;
mod idempotency;
mod limits;
mod listen;
mod local_witness;
mod openapi;
mod stats;
pub mod tls;
mod web;
pub mod witness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use postvault::{Principal, Vault};

pub use error::ApiError;
pub use forwarded::{IpNet, parse_proxy};
pub use limits::{Metrics, RateLimiter};
pub use local_witness::{LocalWitnessError, LocalWitnesses};
pub use tls::{TlsConfig, TlsError};
pub use witness::{HttpWitness, http_witness, serve_witness, witness_router};

/// Limits and knobs of the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest JSON request body.
    pub max_body: usize,
    /// Largest NDJSON body of `POST /v1/records`.
    pub max_records_body: usize,
    /// Requests per second per principal (and per client address for the
    /// public log endpoints), with a burst of twice that.
    pub rate_limit: u32,
    /// A request that takes longer is answered 503 `timeout`; an upload
    /// that sends nothing for this long is cut.
    pub timeout: Duration,
    /// A connection that has not sent a whole request head (or finished
    /// its TLS handshake) this long after it opened, or after its last
    /// answer, is closed.
    pub header_timeout: Duration,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Connections served at once; more wait in the listen queue. Each
    /// costs its buffers, so this bounds the service's memory with
    /// `max_threads`.
    pub max_connections: usize,
    /// How often the store's principals generation is read: a token
    /// revoked or rotated on any node is refused here within this (plus
    /// one request), never later than a second.
    pub principals_watch: Duration,
    /// Sign-in attempts a second per client address on the pages (bursts of
    /// twice that).
    pub login_rate: u32,
    /// Pages a second per person's session (bursts of twice that).
    pub person_rate: u32,
    /// How long a person's pages show the report they last read before
    /// reading (and logging) a new one.
    pub report_fresh: Duration,
    /// Reverse proxies in front of the service: from a peer in one of these
    /// networks, `X-Forwarded-For` names the client (rate limits are kept
    /// by it) and `X-Forwarded-Proto: https` makes cookies `Secure` and
    /// answers carry HSTS. Empty: those headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
}

/// The default requests per second per principal: hundreds, as a busy
/// service or a staff tool sends; a bulk client asks for more (`--rate-limit`).
pub const DEFAULT_RATE_LIMIT: u32 = 500;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body: 1 << 20,
            max_records_body: 1 << 30,
            rate_limit: DEFAULT_RATE_LIMIT,
            timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            tls: None,
            max_connections: 1024,
            principals_watch: Duration::from_millis(250),
            login_rate: 2,
            person_rate: 5,
            report_fresh: Duration::from_secs(15),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Authenticated tokens kept in memory at most.
const TOKEN_CACHE_MAX: std::num::NonZeroUsize = std::num::NonZeroUsize::MIN.saturating_add(9_999);

/// What every handler shares.
pub struct AppState {
    pub vault: Arc<Vault>,
    pub config: Config,
    pub metrics: Metrics,
    /// Buckets of principals.
    pub limiter: RateLimiter,
    /// Buckets of client addresses: the public endpoints, and tokens not
    /// yet known (each costs a look in the store).
    pub addresses: RateLimiter,
    /// Buckets of client addresses for the pages' sign-in forms.
    pub logins: RateLimiter,
    /// Buckets of people's sessions (their pages).
    pub people: RateLimiter,
    /// The pages' sessions (officers and people).
    pub sessions: web::Sessions,
    /// The public page's figures and when they were gathered: computed at
    /// most once a minute, whoever asks.
    public: std::sync::Mutex<Option<(std::time::Instant, Arc<web::Public>)>>,
    /// Held while the public page's figures are gathered: requests that
    /// find them stale meanwhile wait for that gathering, not start theirs.
    public_gathering: tokio::sync::Mutex<()>,
    /// Uploads in flight (`POST /v1/records`), at most `MAX_UPLOADS`.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Each principal's share of the upload slots (see
    /// [`MAX_PRINCIPAL_UPLOADS`]): a semaphore while any upload of theirs
    /// holds or waits for a permit, then gone.
    shares: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Each principal's slow bodies arriving (see [`MAX_SLOW_UPLOADS`]).
    slow: std::sync::Mutex<HashMap<String, usize>>,
    /// Principals by token hash, valid for the principals generation in
    /// `watched`: emptied whenever the store's generation moves; the least
    /// recently used leave it past [`TOKEN_CACHE_MAX`].
    principals: std::sync::Mutex<lru::LruCache<[u8; 32], Principal>>,
    /// When the store's principals generation was last read, and its value.
    watched: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
    /// The last signed checkpoint served to the public, and when: anonymous
    /// requests sign at most one a second.
    checkpoint: std::sync::Mutex<Option<(std::time::Instant, String, u64)>>,
}

/// Concurrent uploads; more answer 429 `too_many_uploads`.
pub const MAX_UPLOADS: usize = 20;

/// A principal's uploads in flight at most, from before one takes a slot
/// to its answer, however fast or slow their bodies: one more waits (up to
/// the request timeout) for one of theirs to end, then is refused with 429
/// `too_many_uploads`. So one principal, by many uploads at once or in
/// quick succession, always leaves the other principals
/// `MAX_UPLOADS - MAX_PRINCIPAL_UPLOADS` slots (two principals together
/// can fill them all); a burst of many one-line uploads of one principal
/// is queued past the share rather than refused. Held until the
/// collection has ended, even if the client has gone.
pub const MAX_PRINCIPAL_UPLOADS: usize = MAX_UPLOADS - 4;

/// A principal's slow uploads in flight at most: one more that turns slow
/// is cut (`upload_incomplete`, with its report). A body is slow once it
/// has been arriving for [`SLOW_AFTER`] at under [`SLOW_RATE`] on average
/// (the time the service spends waiting for the collection not counted).
pub const MAX_SLOW_UPLOADS: usize = 4;

/// How long a body arrives before its rate is judged.
pub const SLOW_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes a second under which a body that has arrived for [`SLOW_AFTER`]
/// is slow.
pub const SLOW_RATE: u64 = 64 * 1024;

/// One upload of a principal in flight ([`AppState::principal_upload`]):
/// its permit of the principal's share, until the collection has ended.
pub(crate) struct PrincipalUpload {
    state: Arc<AppState>,
    who: String,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PrincipalUpload {
    /// The mark its body carries while it arrives: slow once
    /// [`SlowMark::mark_slow`] says so, until it has arrived.
    pub(crate) fn body(&self) -> SlowMark {
        SlowMark {
            state: self.state.clone(),
            who: self.who.clone(),
            slow: false,
        }
    }
}

impl Drop for PrincipalUpload {
    fn drop(&mut self) {
        // The permit goes to the next waiter of this principal, if any;
        // with none holding or waiting, the share is forgotten.
        drop(self.permit.take());
        let mut shares = self.state.shares();
        if shares
            .get(&self.who)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            shares.remove(&self.who);
        }
    }
}

/// An upload's body while it arrives, counted among its principal's slow
/// ones once it is slow.
pub(crate) struct SlowMark {
    state: Arc<AppState>,
    who: String,
    slow: bool,
}

impl SlowMark {
    /// Counts this body among its principal's slow ones, unless they have
    /// [`MAX_SLOW_UPLOADS`] already (false: it is to be cut).
    pub(crate) fn mark_slow(&mut self) -> bool {
        if self.slow {
            return true;
        }
        let mut slow = self.state.slow_bodies();
        let n = slow.entry(self.who.clone()).or_default();
        if *n >= MAX_SLOW_UPLOADS {
            return false;
        }
        *n += 1;
        self.slow = true;
        true
    }
}

impl Drop for SlowMark {
    fn drop(&mut self) {
        if !self.slow {
            return;
        }
        let mut slow = self.state.slow_bodies();
        if let Some(n) = slow.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slow.remove(&self.who);
            }
        }
    }
}

impl AppState {
    pub fn new(vault: Arc<Vault>, config: Config) -> Arc<AppState> {
        Arc::new(AppState {
            limiter: RateLimiter::new(config.rate_limit),
            addresses: RateLimiter::new(config.rate_limit),
            logins: RateLimiter::new(config.login_rate),
            people: RateLimiter::new(config.person_rate),
            sessions: web::Sessions::default(),
            public: std::sync::Mutex::new(None),
            public_gathering: tokio::sync::Mutex::new(()),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
            shares: std::sync::Mutex::new(HashMap::new()),
            slow: std::sync::Mutex::new(HashMap::new()),
            checkpoint: std::sync::Mutex::new(None),
            vault,
            config,
            metrics: Metrics::default(),
            principals: std::sync::Mutex::new(lru::LruCache::new(TOKEN_CACHE_MAX)),
            watched: std::sync::Mutex::new((None, 0)),
        })
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Semaphore>>> {
        self.shares.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slow_bodies(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.slow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upload of `who` in flight, once they have fewer than
    /// [`MAX_PRINCIPAL_UPLOADS`]: waits its turn (first come, first served)
    /// up to the request timeout for one of theirs to end; `None` if none
    /// did.
    pub(crate) async fn principal_upload(self: &Arc<Self>, who: &str) -> Option<PrincipalUpload> {
        let mut upload = PrincipalUpload {
            state: self.clone(),
            who: who.to_string(),
            permit: None,
        };
        let share = self
            .shares()
            .entry(who.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_PRINCIPAL_UPLOADS)))
            .clone();
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        // Refused or given up, `upload` forgets the share if nobody else
        // holds or waits for it (the clone here is dropped first).
        let permit = tokio::time::timeout_at(deadline, share.acquire_owned()).await;
        upload.permit = permit.ok()?.ok();
        upload.permit.as_ref()?;
        Some(upload)
    }

    fn token_hash(token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        h
    }

    /// A token already authenticated (cached).
    fn known(&self, token: &str) -> bool {
        self.cache().contains(&AppState::token_hash(token))
    }

    /// The principal a bearer token belongs to (cached by token hash, for
    /// as long as the store's principals generation does not move).
    async fn authenticate(self: &Arc<Self>, token: &str) -> Result<Option<Principal>, ApiError> {
        let generation = self.watch_principals().await?;
        let hash = AppState::token_hash(token);
        if let Some(p) = self.cache().get(&hash) {
            return Ok(Some(p.clone()));
        }
        let token = token.to_string();
        let found = blocking(self, move |v| Ok(v.authenticate(&token)?)).await?;
        if let Some(p) = &found {
            // Cached only if no revocation or rotation was seen since the
            // look-up began: a token found just before one is not kept.
            let w = self.watched();
            if w.1 == generation {
                self.cache().put(hash, p.clone());
            }
        }
        Ok(found)
    }

    /// Reads the store's principals generation if the last reading is older
    /// than `principals_watch`, and empties the token cache when it moved
    /// (another node, or this one, revoked or rotated a token). Returns
    /// the generation the cache is valid for.
    async fn watch_principals(self: &Arc<Self>) -> Result<u64, ApiError> {
        {
            let w = self.watched();
            if let Some(at) = w.0
                && at.elapsed() < self.config.principals_watch
            {
                return Ok(w.1);
            }
        }
        let now = std::time::Instant::now();
        let generation = blocking(self, |v| Ok(v.principals_gen()?)).await?;
        let mut w = self.watched();
        if w.0.is_none_or(|at| at <= now) {
            if w.1 != generation || w.0.is_none() {
                self.cache().clear();
            }
            *w = (Some(now), generation);
        }
        Ok(w.1)
    }

    /// Drops every cached token (after a change made through this node).
    pub(crate) fn forget_tokens(&self) {
        let mut w = self.watched();
        self.cache().clear();
        w.0 = None;
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, (Option<std::time::Instant>, u64)> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The checkpoint served to the public (note, size), looked up again at
    /// most once a second: with witnesses, the latest final one (a quorum
    /// cosigned it; its lines follow the log's signature), never signed or
    /// cosigned on a request (the service's background round does that);
    /// without, the latest signed, signing one if the log grew.
    pub(crate) async fn checkpoint(self: &Arc<Self>) -> Result<(String, u64), ApiError> {
        {
            let c = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, note, size)) = c.as_ref()
                && at.elapsed() < Duration::from_secs(1)
            {
                return Ok((note.clone(), *size));
            }
        }
        let (note, size) = blocking(self, |v| {
            if v.has_witnesses() {
                return match v.final_checkpoint()? {
                    Some(c) => Ok((c.note, c.size)),
                    None => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no_final_checkpoint",
                        "no checkpoint has a quorum of witness cosignatures yet; try again later",
                    )),
                };
            }
            let note = v.checkpoint()?;
            let size = v.checkpoint_size()?;
            Ok((note, size))
        })
        .await?;
        *self.checkpoint.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), note.clone(), size));
        Ok((note, size))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, lru::LruCache<[u8; 32], Principal>> {
        self.principals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `f` on the vault on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&Vault) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let vault = state.vault.clone();
    tokio::task::spawn_blocking(move || f(&vault))
        .await
        .map_err(|_| ApiError::internal("the request's worker stopped"))?
}

/// The whole API.
pub fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/v1/records", post(handlers::collect))
        .route("/v1/subjects/{id}", get(handlers::read))
        .route("/v1/subjects/{id}/report", get(handlers::subject_report))
        .route("/v1/subjects/{id}/consent", post(handlers::consent))
        .route("/v1/subjects/{id}/erase", post(handlers::erase))
        .route("/v1/subjects/{id}/corrections", post(handlers::correct))
        .route("/v1/subjects/{id}/accounting", get(handlers::accounting))
        .route("/v1/subjects/{id}/access-code", post(handlers::access_code))
        .route(
            "/v1/disclosures",
            post(handlers::disclose_submit).get(handlers::disclosure_list),
        )
        .route("/v1/disclosures/{id}", get(handlers::disclosure_show))
        .route(
            "/v1/disclosures/{id}/approve",
            post(handlers::disclose_approve),
        )
        .route(
            "/v1/disclosures/{id}/refuse",
            post(handlers::disclose_refuse),
        )
        .route("/v1/disclosures/{id}/fetch", post(handlers::disclose_fetch))
        .route("/v1/disclosures/{id}/end", post(handlers::disclose_end))
        .route(
            "/v1/holds",
            post(handlers::hold_place).get(handlers::hold_list),
        )
        .route("/v1/holds/{id}/release", post(handlers::hold_release))
        .route("/v1/retention/run", post(handlers::retention_run))
        .route(
            "/v1/principals/{name}/revoke",
            post(handlers::principal_revoke),
        )
        .route(
            "/v1/principals/{name}/rotate",
            post(handlers::principal_rotate),
        )
        .route("/v1/reports/transparency", get(handlers::transparency))
        .route("/v1/statistics", post(stats::query))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // The transparency log is public: anyone may mirror and verify it, and
    // its leaves carry no identifier.
    let public = Router::new()
        .route("/v1/log/checkpoint", get(handlers::log_checkpoint))
        .route("/v1/log/proof/inclusion", get(handlers::log_inclusion))
        .route("/v1/log/proof/consistency", get(handlers::log_consistency))
        .route("/v1/log/entries", get(handlers::log_entries))
        .route("/v1/log/witnesses", get(handlers::log_witnesses))
        .route("/log/checkpoint", get(handlers::log_checkpoint))
        .route("/log/tile/{*path}", get(handlers::log_tile))
        .layer(middleware::from_fn_with_state(state.clone(), public_limit));
    Router::new()
        .merge(authed)
        .merge(public)
        .merge(web::router(state.clone()))
        .route("/health", get(handlers::health))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Routes whose answer is given once and cannot be asked for again: a
/// fetched package (the request is then `fetched`), a rotated token (the old
/// one is refused), an access code (the office's form too), a statistics
/// answer (its budget is spent before the scan). They are not answered 503
/// `timeout` while the work that makes the answer goes on: the caller waits
/// for it.
const ANSWERED_ONCE: [&str; 5] = [
    "/v1/disclosures/{id}/fetch",
    "/v1/principals/{name}/rotate",
    "/v1/subjects/{id}/access-code",
    "/v1/statistics",
    "/office/access-code",
];

/// Counts every request by route and status, and answers 503 `timeout`
/// past the configured time (uploads are cut by their own idle timer; the
/// [`ANSWERED_ONCE`] routes wait for their answer).
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let streaming = route == "/v1/records";
    let https = https(&state, &req);
    let mut res = if streaming || ANSWERED_ONCE.contains(&route.as_str()) {
        next.run(req).await
    } else {
        match tokio::time::timeout(state.config.timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long",
            )
            .into_response(),
        }
    };
    // Served over TLS (here or at a trusted proxy): browsers are told to
    // use nothing else for a year, so a page, a session cookie or a token
    // is never sent in the clear to this host by a link or a typed address.
    if https {
        res.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    state.metrics.request(&route, res.status().as_u16());
    // The route pattern, never the path: paths name people.
    tracing::debug!(route = %route, status = res.status().as_u16(), "request");
    res
}

/// Bearer-token authentication and the per-principal rate limit.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(str::to_string);
    let Some(token) = token else {
        return ApiError::unauthorized().into_response();
    };
    // A token not seen yet costs a look in the store: limited per address.
    if !state.known(&token)
        && let Err(r) = state.addresses.check(&format!("auth:{}", client(&req)))
    {
        return r.into_response();
    }
    let principal = match state.authenticate(&token).await {
        Ok(Some(p)) => p,
        Ok(None) => return ApiError::unauthorized().into_response(),
        Err(e) => return e.into_response(),
    };
    if let Err(r) = state.limiter.check(&format!("p:{}", principal.name)) {
        return r.into_response();
    }
    req.extensions_mut().insert(principal);
    let mut res = next.run(req).await;
    // What an authenticated call answers (records, reports, codes,
    // packages) is kept by no cache.
    res.headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    res
}

/// The client's address (IPv6 by its /64), or `local` in process: the
/// peer's, or the one a trusted proxy forwarded (see `forwarded`).
pub(crate) fn client(req: &Request) -> String {
    let addr = match req.extensions().get::<forwarded::Client>() {
        Some(c) => Some(c.addr),
        None => req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical()),
    };
    match addr {
        Some(std::net::IpAddr::V6(a)) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(a) => a.to_string(),
        None => "local".into(),
    }
}

/// Whether the client reached the service over HTTPS: TLS here, or a
/// trusted proxy's `X-Forwarded-Proto`.
pub(crate) fn https(state: &AppState, req: &Request) -> bool {
    state.config.tls.is_some()
        || req
            .extensions()
            .get::<forwarded::Client>()
            .is_some_and(|c| c.https)
}

/// The public endpoints' rate limit, per client address.
async fn public_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let who = client(&req);
    if let Err(r) = state.addresses.check(&format!("ip:{who}")) {
        return r.into_response();
    }
    next.run(req).await
}

/// Serves `state` on `listener` until `shutdown` resolves; requests in
/// flight finish first (a collection commits or rejects its batches; what
/// was acknowledged stays). HTTPS when `state.config.tls` is set; a
/// connection that sends no request head within `header_timeout` is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::run(listener, state, shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi_json() -> String {
    openapi::document()
}
