//! The people's side: server-rendered pages for three audiences, with no
//! front-end build. The privacy office works its queue at `/office/`; a
//! person sees what is held about them, who looked, and checks the log's
//! proofs in their own browser at `/me/`; anyone reads the transparency
//! report and the log's checkpoint at `/`.
//!
//! Pages are `maud` templates (every value escaped by construction). The
//! only script is `/assets/verify.js`, the proof checker. Every answer
//! carries a strict Content-Security-Policy (no inline script or style, no
//! third-party origin), and the pages change state only by POST with the
//! session's CSRF token. Sessions live in this process (an LRU of bounded
//! size, keyed by the SHA-256 of the cookie): an officer's session holds
//! their token and is re-authenticated on every request, so a revocation or
//! rotation ends it within the principals watch interval; a person's holds
//! the redeemed code's subject and ends with their erasure. No identifier
//! of a person ever appears in a URL.

mod chart;
mod office;
mod portal;
mod public;

pub(crate) use public::Public;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use postvault::Principal;

use crate::{ApiError, AppState};

pub(crate) const OFFICE_COOKIE: &str = "pv_office";
pub(crate) const PERSON_COOKIE: &str = "pv_me";
/// An officer's session lasts a working day; a person's half an hour.
pub(crate) const OFFICE_TTL: Duration = Duration::from_secs(8 * 3600);
pub(crate) const PERSON_TTL: Duration = Duration::from_secs(30 * 60);
/// Sessions kept at most; the least recently used go first.
const MAX_SESSIONS: usize = 20_000;

/// Who a session is.
#[derive(Clone)]
pub(crate) enum Who {
    /// The officer's bearer token, authenticated again on every request.
    Officer { token: String },
    /// The person a redeemed code opened.
    Person {
        subject: String,
        principal: Principal,
    },
}

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) who: Who,
    pub(crate) csrf: String,
    expires: Instant,
    /// The person's last report and when it was made: pages within
    /// `Config::report_fresh` of it show it again (and the proof checker fetches
    /// the proofs of the report its page shows) instead of logging a read
    /// per click.
    /// The vault's own clock is kept too, so a report is not shown again
    /// once the vault's time has moved on past the freshness either.
    pub(crate) report: Option<(Instant, i64, Arc<postvault::SubjectReport>)>,
}

/// The sessions of this process.
pub struct Sessions {
    map: Mutex<lru::LruCache<[u8; 32], Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_SESSIONS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns the cookie value.
    fn open(&self, who: Who) -> Result<(String, Session), ApiError> {
        let ttl = match who {
            Who::Officer { .. } => OFFICE_TTL,
            Who::Person { .. } => PERSON_TTL,
        };
        let id = random_hex(32)?;
        let s = Session {
            who,
            csrf: random_hex(32)?,
            expires: Instant::now() + ttl,
            report: None,
        };
        self.lock().put(sha256(&id), s.clone());
        Ok((id, s))
    }

    fn get(&self, id: &str) -> Option<Session> {
        let key = sha256(id);
        let mut m = self.lock();
        match m.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                m.pop(&key);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.lock().pop(&sha256(id));
    }

    pub(crate) fn set_report(
        &self,
        id: &str,
        report: Option<(i64, Arc<postvault::SubjectReport>)>,
    ) {
        if let Some(s) = self.lock().get_mut(&sha256(id)) {
            s.report = report.map(|(at, r)| (Instant::now(), at, r));
        }
    }

    /// Ends every session of the person `subject` (their codes withdrawn);
    /// returns how many.
    pub(crate) fn end_person(&self, subject: &str) -> usize {
        let mut m = self.lock();
        let gone: Vec<[u8; 32]> = m
            .iter()
            .filter(|(_, s)| matches!(&s.who, Who::Person { subject: x, .. } if x == subject))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            m.pop(k);
        }
        gone.len()
    }

    /// The rate-limit key of a session.
    pub(crate) fn limit_key(id: &str) -> String {
        format!("session:{}", hex_of(&sha256(id)[..16]))
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pages, their assets and their security headers.
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(public::home))
        .route("/assets/style.css", get(style))
        .route("/assets/verify.js", get(verify_js))
        .merge(
            portal::router()
                .merge(office::router())
                .layer(middleware::from_fn(isolate)),
        )
        .layer(middleware::from_fn_with_state(state, headers))
}

/// The people's and the office's pages are loaded by another site only as
/// a top-level navigation: an image, script, frame or fetch from another
/// site's page is refused, since some of these pages write leaves in the
/// name of whoever is signed in (an officer opening an instrument, a
/// person's logged read). A sibling subdomain's page (`same-site`: the
/// session's `SameSite=Strict` cookie comes with it) may only be left by
/// the user's own click (`Sec-Fetch-User: ?1`), not by its script
/// navigating there. Browsers that send no fetch metadata are let through;
/// forms are checked apart ([`check_csrf`]).
async fn isolate(req: Request, next: Next) -> Response {
    let h = req.headers();
    let meta = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let site = meta("sec-fetch-site");
    let foreign = matches!(site, Some("cross-site" | "same-site"));
    let navigation = req.method() == axum::http::Method::GET
        && meta("sec-fetch-mode") == Some("navigate")
        && meta("sec-fetch-dest").is_none_or(|d| d == "document")
        && (site != Some("same-site") || meta("sec-fetch-user") == Some("?1"));
    if foreign && !navigation {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "another site's page cannot load this page",
        )
        .into_response();
    }
    next.run(req).await
}

/// The headers every page and asset carries.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with `no-referrer` a browser sends
    // `Origin: null` on the pages' own forms, and the origin check could not
    // tell them from a sandboxed attacker's. No address of ours names anyone.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

const STYLE: &str = include_str!("../../assets/style.css");
const VERIFY_JS: &str = include_str!("../../assets/verify.js");

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn verify_js() -> Response {
    asset("text/javascript; charset=utf-8", VERIFY_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A whole page: the shared layout around `body`.
pub(crate) fn page(title: &str, nav: Markup, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · postvault" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { "postvault" }
                    nav aria-label="Sections" { (nav) }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// An error as a page (same status as the API would answer).
pub(crate) fn error_page(e: ApiError, back: &str) -> Response {
    let status = e.status;
    let mut r = page(
        "Something went wrong",
        html! {},
        html! {
            p.bad { (e.message) }
            p.muted { "Code: " code { (e.code) } }
            p { a href=(back) { "Back" } }
        },
    );
    *r.status_mut() = status;
    r
}

/// A 303 to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The session named by cookie `name`, with its cookie value.
pub(crate) fn session(state: &AppState, h: &HeaderMap, name: &str) -> Option<(String, Session)> {
    let id = cookie(h, name)?;
    let s = state.sessions.get(&id)?;
    Some((id, s))
}

fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == name && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, scoped to its
/// surface's path, Secure when the client came over HTTPS (TLS here or at a
/// trusted proxy), gone with the browser or at expiry.
pub(crate) fn set_cookie(
    https: bool,
    name: &str,
    path: &str,
    value: &str,
    ttl: Duration,
) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        ttl.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn clear_cookie(name: &str, path: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A posted form's fields, in order (repeated names kept).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body of at most 64 KiB.
    pub(crate) fn parse(body: &Bytes) -> Result<Form, ApiError> {
        if body.len() > 64 * 1024 {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the form is too large",
            ));
        }
        Ok(Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The request's headers and its form body.
pub(crate) async fn read_form(req: Request) -> Result<(HeaderMap, Form), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the form is too large",
        )
    })?;
    Ok((parts.headers, Form::parse(&bytes)?))
}

/// A state-changing request must come from our own pages: the session's
/// CSRF token in the form (compared in constant time), and no cross-site
/// fetch metadata.
pub(crate) fn check_csrf(s: &Session, h: &HeaderMap, form: &Form) -> Result<(), ApiError> {
    same_site(h)?;
    let given = form.get("csrf").unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), s.csrf.as_bytes())
        .is_err()
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the form is out of date or did not come from this site: reload the page and try again",
        ));
    }
    Ok(())
}

/// Refuses a request the browser marks as cross-site, or whose `Origin` is
/// not this site (logins too, which have no session yet).
pub(crate) fn same_site(h: &HeaderMap) -> Result<(), ApiError> {
    let cross_fetch = h
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let other_origin = match (origin, host) {
        (Some(o), Some(host)) => o
            .split_once("://")
            .is_none_or(|(_, authority)| authority != host),
        (Some(_), None) => true,
        _ => false,
    };
    if cross_fetch || other_origin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a form from another site cannot act here",
        ));
    }
    Ok(())
}

/// The login rate limit of a client address.
pub(crate) fn login_limit(state: &AppState, req_addr: &str) -> Result<(), ApiError> {
    state
        .logins
        .check(&format!("login:{req_addr}"))
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many attempts: wait a few seconds",
            )
        })
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut raw = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| ApiError::internal("no randomness"))?;
    Ok(hex_of(&raw))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(s: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// `change_of_address` -> `change of address`.
pub(crate) fn human(id: &str) -> String {
    id.replace('_', " ")
}
