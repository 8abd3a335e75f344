//! A person's portal (`/me/`): a one-time code mailed to them opens a
//! session bound to that one person. What is held (a summary, then a table
//! per category), who looked (every leaf about them, each proof checked in
//! their browser), disclosures and holds, and their choices (consents, an
//! erasure or correction request, downloads). The pages that show data are
//! the subject access report without its log part (one logged read, reused
//! for 15 s); the log page reads only the public log.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use postvault::{LogSelect, Principal, SubjectReport, report};

use super::{
    PERSON_COOKIE, PERSON_TTL, Session, Who, check_csrf, csrf_field, error_page, human, page,
    redirect,
};
use crate::{ApiError, AppState, blocking};

type St = State<Arc<AppState>>;

/// Records per page of one category.
const PAGE: usize = 50;
/// Records of each category on the first page.
const FIRST: usize = 20;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/me", get(|| async { redirect("/me/") }))
        .route("/me/", get(held))
        .route("/me/login", get(login_form).post(login))
        .route("/me/logout", post(logout))
        .route("/me/records", get(records))
        .route("/me/log", get(log))
        .route("/me/proofs.json", get(proofs))
        .route("/me/log-key", get(log_key))
        .route("/me/disclosures", get(disclosures))
        .route("/me/choices", get(choices))
        .route("/me/consent", post(consent))
        .route("/me/erase", post(erase))
        .route("/me/correct", post(correct))
        .route("/me/report.json", get(report_json))
        .route("/me/report.html", get(report_html))
}

/// The person behind the request's session.
struct Person {
    id: String,
    session: Session,
    subject: String,
    principal: Principal,
}

/// The session's person, if the session is live and the person not erased;
/// otherwise the login page (a redirect).
async fn person(state: &Arc<AppState>, h: &HeaderMap) -> Result<Person, Response> {
    let Some((id, session)) = super::session(state, h, PERSON_COOKIE) else {
        return Err(redirect("/me/login"));
    };
    let Who::Person { subject, principal } = session.who.clone() else {
        return Err(redirect("/me/login"));
    };
    if state
        .people
        .check(&super::Sessions::limit_key(&id))
        .is_err()
    {
        return Err(error_page(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many pages at once: wait a few seconds",
            ),
            "/me/",
        ));
    }
    let s = subject.clone();
    match blocking(state, move |v| Ok(v.person_present(&s)?)).await {
        Ok(true) => Ok(Person {
            id,
            session,
            subject,
            principal,
        }),
        Ok(false) => {
            state.sessions.close(&id);
            Err(redirect("/me/login?ended=1"))
        }
        Err(e) => Err(error_page(e, "/me/")),
    }
}

/// A posted form of the session's person: the form, their session checked
/// as every page checks it and its CSRF token; otherwise the page to answer.
async fn person_form(
    state: &Arc<AppState>,
    req: Request,
    back: &str,
) -> Result<(Person, super::Form), Response> {
    let (h, form) = super::read_form(req)
        .await
        .map_err(|e| error_page(e, back))?;
    let p = person(state, &h).await?;
    check_csrf(&p.session, &h, &form).map_err(|e| error_page(e, back))?;
    Ok((p, form))
}

fn nav(s: Option<&Session>) -> Markup {
    html! {
        a href="/me/" { "What we hold" }
        a href="/me/log" { "Who looked" }
        a href="/me/disclosures" { "Disclosures" }
        a href="/me/choices" { "Your choices" }
        @if let Some(s) = s {
            form.inline method="post" action="/me/logout" {
                (csrf_field(s))
                button type="submit" { "Sign out" }
            }
        }
    }
}

async fn login_form(q: Query<std::collections::HashMap<String, String>>) -> Response {
    login_page(
        q.0.contains_key("ended")
            .then_some("Your session has ended. A new code is needed to sign in again."),
        StatusCode::OK,
    )
}

fn login_page(message: Option<&str>, status: StatusCode) -> Response {
    let mut r = page(
        "See what the postal service holds about you",
        html! { a href="/" { "Transparency report" } },
        html! {
            p {
                "Enter the access code the postal service mailed to you. A code works once; \
                 your session lasts 30 minutes."
            }
            @if let Some(m) = message { p.bad role="alert" { (m) } }
            form method="post" action="/me/login" {
                label for="code" { "Access code" }
                input id="code" name="code" type="text" autocomplete="off" spellcheck="false"
                    inputmode="text" required maxlength="40" placeholder="XXXX-XXXX-XXXX-XXXX-XXXX";
                button type="submit" { "Sign in" }
            }
        },
    );
    *r.status_mut() = status;
    r
}

async fn login(State(state): St, req: Request) -> Response {
    let addr = crate::client(&req);
    let https = crate::https(&state, &req);
    let (h, form) = match super::read_form(req).await {
        Ok(x) => x,
        Err(e) => return error_page(e, "/me/login"),
    };
    if let Err(e) = super::same_site(&h).and_then(|()| super::login_limit(&state, &addr)) {
        return error_page(e, "/me/login");
    }
    let code = form.get("code").unwrap_or("").to_string();
    let redeemed = blocking(&state, move |v| Ok(v.redeem_access_code(&code)?)).await;
    match redeemed {
        Ok(Some(p)) => {
            let who = Who::Person {
                subject: p.subject,
                principal: p.principal,
            };
            match state.sessions.open(who) {
                Ok((id, _)) => {
                    let mut r = redirect("/me/");
                    r.headers_mut().insert(
                        header::SET_COOKIE,
                        super::set_cookie(https, PERSON_COOKIE, "/me", &id, PERSON_TTL),
                    );
                    r
                }
                Err(e) => error_page(e, "/me/login"),
            }
        }
        Ok(None) => login_page(
            Some("That code does not open anything: it may be mistyped, already used, or expired."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => error_page(e, "/me/login"),
    }
}

async fn logout(State(state): St, req: Request) -> Response {
    let (h, form) = match super::read_form(req).await {
        Ok(x) => x,
        Err(e) => return error_page(e, "/me/"),
    };
    if let Some((id, s)) = super::session(&state, &h, PERSON_COOKIE) {
        if let Err(e) = check_csrf(&s, &h, &form) {
            return error_page(e, "/me/");
        }
        state.sessions.close(&id);
    }
    let mut r = redirect("/me/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        super::clear_cookie(PERSON_COOKIE, "/me"),
    );
    r
}

/// The person's report: the one this session read less than
/// `Config::report_fresh` ago, or a new one (one logged read), kept for the
/// next page and the proof checker.
async fn report_now(state: &Arc<AppState>, p: &Person) -> Result<Arc<SubjectReport>, ApiError> {
    let fresh = state.config.report_fresh.as_millis() as i64;
    let now = state.vault.now_ms();
    if let Some((at, vault_at, r)) = &p.session.report
        && at.elapsed() < state.config.report_fresh
        && (*vault_at..vault_at + fresh).contains(&now)
    {
        return Ok(r.clone());
    }
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    let r = Arc::new(
        blocking(state, move |v| {
            Ok(v.subject_report_with(&principal, &subject, LogSelect::Nothing)?)
        })
        .await?,
    );
    state.sessions.set_report(&p.id, Some((now, r.clone())));
    Ok(r)
}

/// The person's log entries `select` picks, with their proofs (no record
/// read: nothing to log).
async fn log_now(
    state: &Arc<AppState>,
    p: &Person,
    select: LogSelect,
) -> Result<SubjectReport, ApiError> {
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    blocking(state, move |v| {
        Ok(v.subject_log(&principal, &subject, select)?)
    })
    .await
}

/// The whole report, every leaf with its proof (the downloads).
async fn full_report(state: &Arc<AppState>, p: &Person) -> Result<SubjectReport, ApiError> {
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    blocking(state, move |v| Ok(v.subject_report(&principal, &subject)?)).await
}

/// Where the proof checker fetches the proofs of the entries `shown`.
fn proofs_src(shown: &[postvault::ReportLeaf]) -> String {
    let first = shown.iter().map(|l| l.index).min().unwrap_or(0);
    let last = shown.iter().map(|l| l.index).max().unwrap_or(0);
    format!("/me/proofs.json?first={first}&last={last}")
}

/// Leaves per page of the log page (and of the proofs its checker fetches).
const LOG_PAGE: usize = 100;

async fn held(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let r = match report_now(&state, &p).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/"),
    };
    page(
        "What we hold about you",
        nav(Some(&p.session)),
        html! {
            p { "As of " (r.generated_at) ". Each record shows the purpose it was collected for and when it will be deleted." }
            (report::summary_html(&r.records))
            @for (category, recs) in report::by_category(&r.records) {
                @let more = (recs.len() > FIRST).then(|| format!("/me/records?category={category}&page=1"));
                (report::category_html(category, &recs[..recs.len().min(FIRST)], more.as_deref()))
            }
        },
    )
}

async fn records(
    State(state): St,
    h: HeaderMap,
    q: Query<std::collections::HashMap<String, String>>,
) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let category = q.0.get("category").cloned().unwrap_or_default();
    let page_no: usize =
        q.0.get("page")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
            .max(1);
    let r = match report_now(&state, &p).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/"),
    };
    let groups = report::by_category(&r.records);
    let Some((category, recs)) = groups.into_iter().find(|(c, _)| *c == category) else {
        return error_page(
            ApiError::not_found("no records of that kind are held about you"),
            "/me/",
        );
    };
    let pages = recs.len().div_ceil(PAGE).max(1);
    let page_no = page_no.min(pages);
    let slice = &recs[(page_no - 1) * PAGE..(page_no * PAGE).min(recs.len())];
    let next =
        (page_no < pages).then(|| format!("/me/records?category={category}&page={}", page_no + 1));
    page(
        &format!("{}: page {page_no} of {pages}", human(category)),
        nav(Some(&p.session)),
        html! {
            p { (recs.len()) " records, newest first." }
            (report::category_html(category, slice, next.as_deref()))
            @if page_no > 1 {
                p { a href=(format!("/me/records?category={category}&page={}", page_no - 1)) { "Newer records" } }
            }
        },
    )
}

async fn log(
    State(state): St,
    h: HeaderMap,
    q: Query<std::collections::HashMap<String, String>>,
) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let asked: usize =
        q.0.get("page")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
            .max(1);
    let select = LogSelect::Newest {
        skip: (asked - 1).saturating_mul(LOG_PAGE),
        take: LOG_PAGE,
    };
    let r = match log_now(&state, &p, select).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/"),
    };
    let pages = r.log_total.div_ceil(LOG_PAGE).max(1);
    if asked > pages {
        return redirect(&format!("/me/log?page={pages}"));
    }
    let n = asked;
    page(
        "Who looked at your information",
        nav(Some(&p.session)),
        html! {
            p {
                "Every use of your information is an entry in the public transparency log, \
                 allowed or refused, including your own reads of these pages (this page reads \
                 only the public log, so it adds none). Your browser checks each entry below \
                 against the log's signed checkpoint itself, with the key shown at the bottom \
                 of this page, and rewrites the entry's description from the entry it checked."
            }
            p {
                "The checkpoint is signed with the key at the bottom of this page. Compare it \
                 with the key the postal service publishes on its public page and elsewhere: \
                 if they match, these entries are the log's. That alone does not show that \
                 everybody sees the same log, since the service holds that key."
                @if r.witness_quorum > 0 {
                    " Independent witnesses countersign the checkpoints, so a second version \
                     of the log would be caught: to check their countersignatures yourself, \
                     save "
                    a href="/me/report.json" { "your report's data" }
                    " and run `postvault report verify` on it with the log's key and the \
                     witnesses' keys, each as its owner publishes it."
                }
            }
            p id="proofs-summary" role="status" aria-live="polite" { "Checking the proofs in your browser…" }
            div id="proofs" data-src=(proofs_src(&r.log)) data-key=(r.log_verifier_key) {}
            @if pages > 1 { p { "Page " (n) " of " (pages) ", newest first." } }
            (report::log_html(&r, true))
            @if pages > 1 {
                nav.pages aria-label="Pages" {
                    @if n > 1 { a href=(format!("/me/log?page={}", n - 1)) { "Newer entries" } " " }
                    @if n < pages { a href=(format!("/me/log?page={}", n + 1)) { "Older entries" } }
                }
            }
            h2 { "The checkpoint" }
            (report::checking_html(&r))
            h2 { "Check that none is missing" }
            p {
                "The entries above are found for you by the service. To find them yourself in \
                 the whole public log, which anyone may copy, "
                a href="/me/log-key" { "get your key to your entries" }
                " and scan the log with it: that shows every entry about you, none left out."
            }
            script type="module" src="/assets/verify.js" {}
        },
    )
}

/// `/me/log-key`: the person's key to their own log entries, for their own
/// scan of the public log (`postvault log scan`). Handing it out is a leaf
/// of theirs (`tag_key_shown`).
async fn log_key(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    let got = blocking(&state, move |v| {
        let key = v.person_tag_key(&principal, &subject)?;
        let (witnesses, quorum) = v.witness_policy();
        Ok((key, v.log_verifier_key(), witnesses, quorum))
    })
    .await;
    let (key, log_key, witnesses, quorum) = match got {
        Ok(g) => g,
        Err(e) => return error_page(e, "/me/log"),
    };
    let command = key.as_ref().map(|(_, leaf)| {
        let mut c = format!(
            "postvault log scan --url \"$SERVICE_URL\" --tag-key-file my-log-key.txt \\\n    \
             --min-size {} --log-key \"$LOG_KEY\"",
            leaf + 1
        );
        if witnesses.is_empty() {
            c.push_str(" --no-witnesses");
        } else {
            for n in 1..=witnesses.len() {
                c.push_str(&format!(" \\\n    --witness \"$WITNESS_{n}_KEY\""));
            }
            c.push_str(&format!(" --quorum {quorum} --max-age 86400"));
        }
        c
    });
    page(
        "Your key to your entries in the log",
        nav(Some(&p.session)),
        html! {
            @match (&key, &command) {
                (Some((k, leaf)), Some(command)) => {
                    p {
                        "Every entry about you in the public log carries a mark that only this \
                         key can make. With it, anyone can pick your entries out of the log; \
                         without it, nobody can tell them from anyone else's. Keep it as you \
                         would keep your report, and give it only to someone you want to check \
                         for you. Showing it is itself an entry about you, number " (leaf) "."
                    }
                    pre { (k) }
                    p {
                        "To check that no entry about you is missing, save the key in a file \
                         (here my-log-key.txt) and read the whole log with it. The command below \
                         (from the postvault tools) reads every entry the service publishes, \
                         rebuilds the log from them, checks it against the service's signed \
                         summary and the witnesses' countersignatures, and lists your entries. \
                         It refuses a summary that ends before entry "
                        (leaf) " (or, with witnesses, one countersigned more than a day ago), so \
                         it cannot be shown an old log; a summary covering that entry can take a \
                         few minutes to be signed and countersigned, so run it later if it says \
                         the summary is old. Fill in the log's key and \
                         the witnesses' keys from where their owners publish them, not from this \
                         service: it could give you keys of its own."
                    }
                    pre { (command) }
                    p {
                        "For comparison only, the keys this service names: the log's "
                        code { (log_key) }
                        @if !witnesses.is_empty() {
                            "; the witnesses' "
                            @for w in &witnesses { code { (w) } " " }
                        }
                        "."
                    }
                }
                _ => {
                    p {
                        "The service holds no key for you (nothing was collected about you, or \
                         your information was erased): no entry in the log can be tied to you."
                    }
                }
            }
            p { a href="/me/log" { "Back to who looked" } }
        },
    )
}

async fn proofs(
    State(state): St,
    h: HeaderMap,
    q: Query<std::collections::HashMap<String, String>>,
) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The entries the page shows, by index: any later checkpoint holds
    // them too (a person's entries only grow at the end of the log).
    let bound = |k: &str| q.0.get(k).and_then(|n| n.parse::<u64>().ok());
    let select = LogSelect::Between {
        first: bound("first").unwrap_or(0),
        last: bound("last").unwrap_or(u64::MAX),
        max: LOG_PAGE,
    };
    let r = match log_now(&state, &p, select).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/log"),
    };
    let body = serde_json::json!({
        "checkpoint": r.checkpoint,
        "log_verifier_key": r.log_verifier_key,
        "log": r.log,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn disclosures(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let r = match report_now(&state, &p).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/"),
    };
    page(
        "Information given to outside agencies",
        nav(Some(&p.session)),
        html! {
            p {
                "Each time information about you left the postal service under legal process: \
                 when, to whom, under what authority, and what. A court may delay your notice \
                 of a disclosure for a time; it appears here when the delay ends."
            }
            (report::disclosures_html(&r))
            h2 { "Legal holds" }
            (report::holds_html(&r))
        },
    )
}

async fn choices(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let r = match report_now(&state, &p).await {
        Ok(r) => r,
        Err(e) => return error_page(e, "/me/"),
    };
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    let categories: Vec<String> = report::by_category(&r.records)
        .into_iter()
        .map(|(c, _)| c.to_string())
        .collect();
    let extra = blocking(&state, move |v| {
        Ok((
            v.consentable_purposes(),
            v.person_requests(&principal, &subject)?,
            categories
                .into_iter()
                .filter(|c| v.correctable(c))
                .collect::<Vec<_>>(),
        ))
    })
    .await;
    let (purposes, requests, correctable) = match extra {
        Ok(x) => x,
        Err(e) => return error_page(e, "/me/"),
    };
    choices_page(&p.session, &r, &purposes, &requests, &correctable)
}

fn choices_page(
    s: &Session,
    r: &SubjectReport,
    purposes: &[String],
    requests: &[postvault::RightsRequest],
    correctable: &[String],
) -> Response {
    // A correction form for each category the person holds one current
    // record of (one with several is corrected by the office on request).
    let current: Vec<&postvault::ReadRecord> = report::by_category(&r.records)
        .into_iter()
        .filter(|(c, _)| correctable.iter().any(|x| x == c))
        .filter_map(|(_, recs)| {
            let live: Vec<_> = recs
                .into_iter()
                .filter(|x| x.superseded_by.is_none())
                .collect();
            (live.len() == 1).then(|| live[0])
        })
        .collect();
    let granted = |p: &str| r.consents.iter().any(|c| c.purpose == p && c.granted);
    page(
        "Your choices",
        nav(Some(s)),
        html! {
            h2 { "Optional uses of your information" }
            p { "These uses need your agreement. A change takes effect at once and is itself logged." }
            @if purposes.is_empty() {
                p { "There are no optional uses." }
            }
            @for purpose in purposes {
                @let on = granted(purpose);
                form.choice method="post" action="/me/consent" {
                    (csrf_field(s))
                    input type="hidden" name="purpose" value=(purpose);
                    input type="hidden" name="granted" value=(if on { "false" } else { "true" });
                    span { (human(purpose)) ": " b { @if on { "you agreed" } @else { "not agreed" } } " " }
                    button type="submit" {
                        @if on { "Withdraw consent to " (human(purpose)) } @else { "Agree to " (human(purpose)) }
                    }
                }
            }
            h2 { "Ask us to erase your information" }
            p {
                "The privacy office decides on each request. Information under a legal hold, or \
                 that the law requires us to keep, cannot be erased until that ends; the office \
                 tells you why here. Once erased, nothing about you can be read again, and this \
                 page stops working."
            }
            form method="post" action="/me/erase" {
                (csrf_field(s))
                input id="confirm" type="checkbox" name="confirm" value="yes" required;
                label for="confirm" { "I understand that erasure cannot be undone" }
                button type="submit" { "Request erasure" }
            }
            @if !current.is_empty() {
                h2 { "Ask us to correct your information" }
                p { "Change what is wrong and send it: the privacy office checks it and corrects the record. The old record is kept as history that only you see." }
                @for rec in &current {
                    form.correct method="post" action="/me/correct" {
                        (csrf_field(s))
                        input type="hidden" name="category" value=(rec.category);
                        input type="hidden" name="record" value=(rec.id);
                        fieldset {
                            legend { (human(&rec.category)) }
                            @let fields = rec.fields.to_map();
                            @if fields.is_err() {
                                p { "This record could not be read: please tell the privacy office." }
                            }
                            @for (k, v) in fields.iter().flatten() {
                                @let id = format!("fix-{}-{k}", rec.category);
                                div {
                                    label for=(id) { (human(k)) }
                                    input id=(id) type="text" name=(format!("field.{k}"))
                                        value=(match v { serde_json::Value::String(s) => s.clone(), other => other.to_string() });
                                    // What the value is, so "20260" stays text and 41.5 a number.
                                    @match v {
                                        serde_json::Value::Number(_) => input type="hidden" name=(format!("type.{k}")) value="number";,
                                        serde_json::Value::Bool(_) => input type="hidden" name=(format!("type.{k}")) value="bool";,
                                        _ => {},
                                    }
                                }
                            }
                        }
                        button type="submit" { "Ask for this correction of " (human(&rec.category)) }
                    }
                }
            }
            @if !requests.is_empty() {
                table.requests {
                    caption { "Your requests" }
                    thead { tr { th scope="col" { "Request" } th scope="col" { "Asked" } th scope="col" { "Status" } th scope="col" { "Decided" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for q in requests {
                            tr {
                                td { (human(&q.kind)) @if let Some(c) = &q.category { " of " (human(c)) } }
                                td { (q.requested_at) }
                                td.status { (q.status) }
                                td { (q.decided_at.clone().unwrap_or_default()) }
                                td { (q.outcome.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            h2 { "Download" }
            ul {
                li { a href="/me/report.json" download="postvault-report.json" { "Your report as JSON (with every proof)" } }
                li { a href="/me/report.html" download="postvault-report.html" { "Your report as a web page" } }
            }
        },
    )
}

async fn consent(State(state): St, req: Request) -> Response {
    let (p, form) = match person_form(&state, req, "/me/choices").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let purpose = form.get("purpose").unwrap_or("").to_string();
    let granted = form.get("granted") == Some("true");
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    match blocking(&state, move |v| {
        Ok(v.set_consent(&principal, &subject, &purpose, granted)?)
    })
    .await
    {
        Ok(_) => {
            state.sessions.set_report(&p.id, None);
            redirect("/me/choices")
        }
        Err(e) => error_page(e, "/me/choices"),
    }
}

async fn erase(State(state): St, req: Request) -> Response {
    let (p, form) = match person_form(&state, req, "/me/choices").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if form.get("confirm") != Some("yes") {
        return error_page(
            ApiError::bad_request("tick the box to confirm the request"),
            "/me/choices",
        );
    }
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    match blocking(
        &state,
        move |v| Ok(v.request_erasure(&principal, &subject)?),
    )
    .await
    {
        Ok(_) => redirect("/me/choices"),
        Err(e) => error_page(e, "/me/choices"),
    }
}

/// The fields of a correction form (`field.NAME`): a value the form left
/// empty is left out; a field the record holds as a number or true/false
/// (`type.NAME`) is read as one, every other as text (a ZIP code or a
/// phone number stays text, however it looks).
fn correction_fields(form: &super::Form) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in form.pairs() {
        let Some(name) = k.strip_prefix("field.") else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let typed = match form.get(&format!("type.{name}")) {
            Some("number" | "bool") => serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .filter(|x| x.is_number() || x.is_boolean()),
            _ => None,
        };
        let value = typed.unwrap_or_else(|| serde_json::Value::String(v.to_string()));
        out.insert(name.to_string(), value);
    }
    out
}

async fn correct(State(state): St, req: Request) -> Response {
    let (p, form) = match person_form(&state, req, "/me/choices").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let category = form.get("category").unwrap_or("").to_string();
    let record = form.get("record").map(str::to_string);
    let fields = serde_json::Value::Object(correction_fields(&form)).to_string();
    let (principal, subject) = (p.principal.clone(), p.subject.clone());
    match blocking(&state, move |v| {
        Ok(v.request_correction(&principal, &subject, &category, &fields, record.as_deref())?)
    })
    .await
    {
        Ok(_) => redirect("/me/choices"),
        Err(e) => error_page(e, "/me/choices"),
    }
}

async fn report_json(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match full_report(&state, &p).await {
        Ok(r) => download(
            "application/json",
            "postvault-report.json",
            postvault::pretty_json(&r).unwrap_or_default(),
        ),
        Err(e) => error_page(e, "/me/choices"),
    }
}

async fn report_html(State(state): St, h: HeaderMap) -> Response {
    let p = match person(&state, &h).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match full_report(&state, &p).await {
        Ok(r) => {
            let mut resp = download(
                "text/html; charset=utf-8",
                "postvault-report.html",
                postvault::report_html(&r),
            );
            // A standalone file with its own style element and no script.
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                axum::http::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            );
            resp
        }
        Err(e) => error_page(e, "/me/choices"),
    }
}

fn download(content_type: &'static str, name: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                if name.ends_with(".json") {
                    "attachment; filename=\"postvault-report.json\""
                } else {
                    "attachment; filename=\"postvault-report.html\""
                },
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::correction_fields;

    fn form(pairs: &[(&str, &str)]) -> super::super::Form {
        super::super::Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
    }

    /// A ZIP code or a phone number that looks like a number stays text;
    /// a field the record holds as a number is read as one; empty fields
    /// are left out; nothing but `field.` names is taken.
    #[test]
    fn correction_fields_keep_each_fields_type() {
        let f = correction_fields(&form(&[
            ("csrf", "x"),
            ("field.zip", "20260"),
            ("field.phone", "+15555550123"),
            ("field.unit", " 12 "),
            ("field.lat", "41.5"),
            ("type.lat", "number"),
            ("field.on_file", "true"),
            ("type.on_file", "bool"),
            ("field.lon", "not a number"),
            ("type.lon", "number"),
            ("field.city", ""),
        ]));
        assert_eq!(
            serde_json::Value::Object(f),
            serde_json::json!({
                "zip": "20260", "phone": "+15555550123", "unit": "12",
                "lat": 41.5, "on_file": true, "lon": "not a number"
            })
        );
    }
}
