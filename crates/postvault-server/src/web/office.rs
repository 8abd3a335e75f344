//! The privacy office's console (`/office/`): the queue of disclosure
//! requests, each request opened beside the pack's checks with approve
//! (portions narrowed by checkboxes) and refuse; people's requests
//! (erasure) and access codes; the transparency report and the log's
//! status. An officer signs in with their bearer token, exchanged for a
//! session; every action is the API's own vault call, so the two-person
//! rule, the leaves and the refusals are the same.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use postvault::{Principal, RequestView};

use super::{
    OFFICE_COOKIE, OFFICE_TTL, Session, Who, check_csrf, csrf_field, error_page, human, page,
    redirect,
};
use crate::{ApiError, AppState, blocking};

type St = State<Arc<AppState>>;

/// Requests per page of the queue.
const QUEUE_PAGE: usize = 50;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/office", get(|| async { redirect("/office/") }))
        .route("/office/", get(queue))
        .route("/office/login", get(login_form).post(login))
        .route("/office/logout", post(logout))
        .route("/office/requests/{id}", get(request))
        .route("/office/requests/{id}/approve", post(approve))
        .route("/office/requests/{id}/refuse", post(refuse))
        .route("/office/rights", get(rights))
        .route("/office/rights/{id}/grant", post(rights_grant))
        .route("/office/rights/{id}/refuse", post(rights_refuse))
        .route("/office/access-code", post(access_code))
        .route("/office/access-code/revoke", post(access_code_revoke))
        .route("/office/reports", get(reports))
        .route("/office/holds", get(holds))
        .route("/office/holds/{id}/release", post(hold_release))
}

struct Officer {
    session: Session,
    principal: Principal,
}

/// The session's officer, authenticated again now (a revoked or rotated
/// token ends the session); otherwise the login page.
async fn officer(state: &Arc<AppState>, h: &HeaderMap) -> Result<Officer, Response> {
    let Some((id, session)) = super::session(state, h, OFFICE_COOKIE) else {
        return Err(redirect("/office/login"));
    };
    let Who::Officer { token } = &session.who else {
        return Err(redirect("/office/login"));
    };
    match state.authenticate(token).await {
        Ok(Some(p)) if state.vault.is_privacy_office(&p) => Ok(Officer {
            session,
            principal: p,
        }),
        Ok(_) => {
            state.sessions.close(&id);
            Err(redirect("/office/login?ended=1"))
        }
        Err(e) => Err(error_page(e, "/office/")),
    }
}

/// A posted form of the session's officer: the form, their session
/// authenticated again and its CSRF token checked; otherwise the page to
/// answer (`back` is where its link leads).
async fn officer_form(
    state: &Arc<AppState>,
    req: Request,
    back: &str,
) -> Result<(Officer, super::Form), Response> {
    let (h, form) = super::read_form(req)
        .await
        .map_err(|e| error_page(e, back))?;
    let o = officer(state, &h).await?;
    check_csrf(&o.session, &h, &form).map_err(|e| error_page(e, back))?;
    Ok((o, form))
}

fn nav(s: Option<&Session>) -> Markup {
    html! {
        a href="/office/" { "Queue" }
        a href="/office/rights" { "People's requests" }
        a href="/office/holds" { "Legal holds" }
        a href="/office/reports" { "Reports" }
        @if let Some(s) = s {
            form.inline method="post" action="/office/logout" {
                (csrf_field(s))
                button type="submit" { "Sign out" }
            }
        }
    }
}

async fn login_form(q: Query<std::collections::HashMap<String, String>>) -> Response {
    login_page(
        q.0.contains_key("ended").then_some(
            "Your session has ended (signed out, expired, or the token was revoked or rotated).",
        ),
        StatusCode::OK,
    )
}

fn login_page(message: Option<&str>, status: StatusCode) -> Response {
    let mut r = page(
        "Privacy office",
        html! { a href="/" { "Transparency report" } },
        html! {
            p { "Sign in with your officer token. It is exchanged for a session of at most 8 hours; the token never appears in a page or an address." }
            @if let Some(m) = message { p.bad role="alert" { (m) } }
            form method="post" action="/office/login" {
                label for="token" { "Officer token" }
                input id="token" name="token" type="password" autocomplete="off" required maxlength="256";
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
        Err(e) => return error_page(e, "/office/login"),
    };
    if let Err(e) = super::same_site(&h).and_then(|()| super::login_limit(&state, &addr)) {
        return error_page(e, "/office/login");
    }
    let token = form.get("token").unwrap_or("").trim().to_string();
    if token.is_empty() || token.len() > 256 {
        return login_page(Some("Enter your token."), StatusCode::BAD_REQUEST);
    }
    match state.authenticate(&token).await {
        Ok(Some(p)) if state.vault.is_privacy_office(&p) => {
            match state.sessions.open(Who::Officer { token }) {
                Ok((id, _)) => {
                    let mut r = redirect("/office/");
                    r.headers_mut().insert(
                        header::SET_COOKIE,
                        super::set_cookie(https, OFFICE_COOKIE, "/office", &id, OFFICE_TTL),
                    );
                    r
                }
                Err(e) => error_page(e, "/office/login"),
            }
        }
        Ok(Some(_)) => login_page(
            Some("This token is not a privacy officer's: the console is for the privacy office."),
            StatusCode::FORBIDDEN,
        ),
        Ok(None) => login_page(Some("That token is not valid."), StatusCode::UNAUTHORIZED),
        Err(e) => error_page(e, "/office/login"),
    }
}

async fn logout(State(state): St, req: Request) -> Response {
    let (h, form) = match super::read_form(req).await {
        Ok(x) => x,
        Err(e) => return error_page(e, "/office/"),
    };
    if let Some((id, s)) = super::session(&state, &h, OFFICE_COOKIE) {
        if let Err(e) = check_csrf(&s, &h, &form) {
            return error_page(e, "/office/");
        }
        state.sessions.close(&id);
    }
    let mut r = redirect("/office/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        super::clear_cookie(OFFICE_COOKIE, "/office"),
    );
    r
}

/// Whether a request waits for the office.
fn waits(status: &str) -> bool {
    status == postvault::gateway::status::PENDING || status == postvault::gateway::status::HELD
}

/// How long ago `at` (RFC 3339) was, in words.
fn waiting(at: &str, now: i64) -> String {
    let Some(t) = postvault_time::parse_rfc3339(at) else {
        return String::new();
    };
    let mins = (now - t).max(0) / 60_000;
    match mins {
        0..60 => format!("{mins} min"),
        60..2880 => format!("{} h", mins / 60),
        _ => format!("{} days", mins / 1440),
    }
}

async fn queue(
    State(state): St,
    h: HeaderMap,
    q: Query<std::collections::HashMap<String, String>>,
) -> Response {
    let o = match officer(&state, &h).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let page_no: usize =
        q.0.get("page")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
            .max(1);
    let p = o.principal.clone();
    let listed = blocking(&state, move |v| {
        let open: Vec<RequestView> = v.disclosure_queue(&p)?;
        let people = v.rights_requests_waiting(&p)?;
        Ok((open, people, v.now_ms()))
    })
    .await;
    let (open, people, now) = match listed {
        Ok(x) => x,
        Err(e) => return error_page(e, "/office/"),
    };
    let pages = open.len().div_ceil(QUEUE_PAGE).max(1);
    let page_no = page_no.min(pages);
    let shown = &open[(page_no - 1) * QUEUE_PAGE..(page_no * QUEUE_PAGE).min(open.len())];
    page(
        "Disclosure requests waiting",
        nav(Some(&o.session)),
        html! {
            p {
                (open.len()) " requests wait for a decision, oldest first. "
                @if people > 0 { a href="/office/rights" { (people) " people's requests" } " wait too." }
            }
            @if open.is_empty() {
                p { "Nothing waits." }
            } @else {
                table.queue {
                    thead { tr {
                        th scope="col" { "Request" } th scope="col" { "Kind" } th scope="col" { "Agency" }
                        th scope="col" { "People" } th scope="col" { "Portions" } th scope="col" { "Alerts" }
                        th scope="col" { "Status" } th scope="col" { "Waiting" }
                    } }
                    tbody {
                        @for r in shown {
                            tr {
                                td { a href=(format!("/office/requests/{}", r.id)) { (r.id) } }
                                td { (human(&r.kind)) }
                                td { (r.requester) }
                                td { (r.subjects) }
                                td { (r.portions.iter().map(|p| human(p)).collect::<Vec<_>>().join(", ")) }
                                td.alerts {
                                    @for a in r.alerts.iter().chain(&r.office_notes) { span.alert { (human(a)) } " " }
                                }
                                td { (r.status) }
                                td { (waiting(&r.submitted_at, now)) }
                            }
                        }
                    }
                }
                @if pages > 1 {
                    nav.pages aria-label="Pages" {
                        @if page_no > 1 { a href=(format!("/office/?page={}", page_no - 1)) { "Previous" } " " }
                        "Page " (page_no) " of " (pages)
                        @if page_no < pages { " " a href=(format!("/office/?page={}", page_no + 1)) { "Next" } }
                    }
                }
            }
        },
    )
}

async fn request(State(state): St, h: HeaderMap, Path(id): Path<String>) -> Response {
    let o = match officer(&state, &h).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    request_page(&state, &o, &id, None).await
}

async fn request_page(
    state: &Arc<AppState>,
    o: &Officer,
    id: &str,
    notice: Option<Markup>,
) -> Response {
    let (p, rid) = (o.principal.clone(), id.to_string());
    let shown = blocking(state, move |v| Ok(v.disclosure_show(&p, &rid)?)).await;
    let r = match shown {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(ApiError::not_found("no such request"), "/office/"),
        Err(e) => return error_page(e, "/office/"),
    };
    let own = r.requester == o.principal.name;
    let open = waits(&r.status);
    page(
        &format!("Request {}", r.id),
        nav(Some(&o.session)),
        html! {
            @if let Some(n) = notice { (n) }
            dl.facts {
                dt { "Kind" } dd { (human(&r.kind)) }
                dt { "Ground" } dd { (human(&r.ground)) }
                dt { "Requested by" } dd { (r.requester) }
                dt { "Status" } dd.status { (r.status) }
                dt { "People named" } dd { (r.subjects) }
                dt { "Portions requested" } dd { (r.portions.iter().map(|p| human(p)).collect::<Vec<_>>().join(", ")) }
                dt { "Submitted" } dd { (r.submitted_at) }
                @if let Some(u) = &r.valid_until { dt { "Valid until" } dd { (u) } }
                @if let Some(d) = &r.decided_by { dt { "Decided by" } dd { (d) " at " (r.decided_at.clone().unwrap_or_default()) } }
                @if !r.alerts.is_empty() || !r.office_notes.is_empty() {
                    dt { "Alerts" } dd { @for a in r.alerts.iter().chain(&r.office_notes) { span.alert { (human(a)) } " " } }
                }
            }
            @if let Some(ov) = &r.officer {
                div.columns {
                    section aria-labelledby="inst-h" {
                        h2 id="inst-h" { "The instrument, as submitted" }
                        p.muted { "Opening it is entry " (ov.log_index) " of the log." }
                        @match &ov.instrument {
                            Some(inst) => (instrument(inst)),
                            None => p { "The submission was too large to keep." },
                        }
                    }
                    section aria-labelledby="checks-h" {
                        h2 id="checks-h" { "What the policy checked" }
                        table.checks {
                            thead { tr { th scope="col" { "Check" } th scope="col" { "Rule" } th scope="col" { "Result" } } }
                            tbody {
                                @for c in &ov.checks {
                                    @let result = serde_json::to_value(c.result).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                                    tr {
                                        td { (c.what) @for m in &c.messages { br; span.muted { (m) } } }
                                        td { (c.rule) }
                                        td class=(format!("result {result}")) { (result) }
                                    }
                                }
                            }
                        }
                        h3 { "What the policy cannot check: you confirm each" }
                        ul { @for c in &ov.cannot_check { li { (c) } } }
                        @if let Some(run) = &ov.cover_run {
                            h3 { "Mail cover run" }
                            p { "Extension " (run.extension_no) " (declared " (run.declared_extension_no) "), run started " (run.run_started) "." }
                        }
                    }
                }
            }
            @if open && own {
                p.bad { "You submitted this request: a second person in the privacy office must decide it." }
            } @else if open {
                section aria-labelledby="decide-h" {
                    h2 id="decide-h" { "Decide" }
                    form.decide method="post" action=(format!("/office/requests/{}/approve", r.id)) {
                        (csrf_field(&o.session))
                        fieldset {
                            legend { "Approve these portions (untick to narrow)" }
                            @for (i, portion) in r.portions.iter().enumerate() {
                                div {
                                    input type="checkbox" id=(format!("portion-{i}")) name="portion" value=(portion) checked;
                                    label for=(format!("portion-{i}")) { (human(portion)) }
                                }
                            }
                        }
                        button type="submit" id="approve" { "Approve" }
                    }
                    form.decide method="post" action=(format!("/office/requests/{}/refuse", r.id)) {
                        (csrf_field(&o.session))
                        label for="refuse-reason" { "Reason for the requester" }
                        select id="refuse-reason" name="reason" {
                            option value="" { "(no reason beyond the refusal)" }
                            @for (code, words) in postvault::gateway::codes::OFFICER_REASONS {
                                option value=(code) { (words) }
                            }
                        }
                        button type="submit" id="refuse" { "Refuse" }
                    }
                }
            }
        },
    )
}

/// The instrument's fields as a definition list (nested values as JSON).
fn instrument(v: &serde_json::Value) -> Markup {
    html! {
        @match v.as_object() {
            Some(map) => {
                dl.instrument {
                    @for (k, val) in map {
                        dt { (human(k)) }
                        dd {
                            @match val {
                                serde_json::Value::String(s) => (s),
                                serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => {
                                    (items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(", "))
                                }
                                other => code { (other.to_string()) },
                            }
                        }
                    }
                }
            }
            None => pre { (v.to_string()) },
        }
    }
}

async fn decide(state: Arc<AppState>, req: Request, id: String, approve: bool) -> Response {
    let (o, form) = match officer_form(&state, req, "/office/").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (p, rid) = (o.principal.clone(), id.clone());
    let portions = form.all("portion");
    let reason = form
        .get("reason")
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let answer = blocking(&state, move |v| {
        Ok(if approve {
            v.disclose_approve(
                &p,
                &rid,
                &postvault::ApproveOptions {
                    portions: Some(portions),
                },
            )?
        } else {
            v.disclose_refuse_with(&p, &rid, reason.as_deref())?
        })
    })
    .await;
    let notice = match answer {
        Ok(a) if a.reasons.is_empty() => html! {
            p.ok role="status" { "Done: the request is now " b { (a.status) } " (log entry " (a.log_index) ")." }
        },
        Ok(a) => html! {
            div.bad role="alert" {
                p { "Not done (log entry " (a.log_index) "):" }
                ul { @for r in &a.reasons { li { code { (r.code) } ": " (r.message) } } }
            }
        },
        Err(e) => return error_page(e, &format!("/office/requests/{id}")),
    };
    request_page(&state, &o, &id, Some(notice)).await
}

async fn approve(State(state): St, Path(id): Path<String>, req: Request) -> Response {
    decide(state, req, id, true).await
}

async fn refuse(State(state): St, Path(id): Path<String>, req: Request) -> Response {
    decide(state, req, id, false).await
}

async fn rights(State(state): St, h: HeaderMap) -> Response {
    let o = match officer(&state, &h).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    rights_page(&state, &o, None).await
}

async fn rights_page(state: &Arc<AppState>, o: &Officer, notice: Option<Markup>) -> Response {
    let p = o.principal.clone();
    let listed = blocking(state, move |v| Ok(v.rights_requests(&p)?)).await;
    let list = match listed {
        Ok(l) => l,
        Err(e) => return error_page(e, "/office/"),
    };
    page(
        "People's requests",
        nav(Some(&o.session)),
        html! {
            @if let Some(n) = notice { (n) }
            p { "Requests people made from their own page. They name nobody here: granting an erasure erases the person who asked; granting a correction replaces their current record of the category with what they ask (checked as a collection is)." }
            @if list.is_empty() { p { "No requests." } }
            @for r in &list {
                section.rights-request aria-label=(format!("Request {}", r.id)) {
                    h2 { (human(&r.kind)) " request " code { (r.id) } @if let Some(c) = &r.category { " (" (human(c)) ")" } }
                    @if let Some(serde_json::Value::Object(fields)) = &r.proposed {
                        table.proposed {
                            caption { "What the person asks the record to read" }
                            thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } } }
                            tbody {
                                @for (k, v) in fields {
                                    tr { td { (human(k)) } td { @match v { serde_json::Value::String(s) => (s), other => (other.to_string()) } } }
                                }
                            }
                        }
                    }
                    p { "Asked " (r.requested_at) ". Status: " b.status { (r.status) }
                        @if let Some(d) = &r.decided_by { " by " (d) " at " (r.decided_at.clone().unwrap_or_default()) }
                        @if let Some(out) = &r.outcome { " (" (out) ")" } }
                    @if r.status == "pending" {
                        form.decide method="post" action=(format!("/office/rights/{}/grant", r.id)) {
                            (csrf_field(&o.session))
                            button type="submit" {
                                @if r.kind == "correction" { "Grant: correct the record" } @else { "Grant: erase the person" }
                            }
                        }
                        form.decide method="post" action=(format!("/office/rights/{}/refuse", r.id)) {
                            (csrf_field(&o.session))
                            label for=(format!("reason-{}", r.id)) { "Reason" }
                            select id=(format!("reason-{}", r.id)) name="reason" {
                                @for (code, words) in postvault::portal::REFUSAL_REASONS {
                                    option value=(code) { (words) }
                                }
                            }
                            label for=(format!("note-{}", r.id)) { "Note to the person (no personal data)" }
                            input id=(format!("note-{}", r.id)) name="note" type="text" maxlength="500";
                            button type="submit" { "Refuse" }
                        }
                    }
                }
            }
            section aria-labelledby="code-h" {
                h2 id="code-h" { "Issue an access code" }
                p { "For a person who asked to see their data: the code opens their page once, for 30 days, and is mailed to the address on file." }
                form method="post" action="/office/access-code" {
                    (csrf_field(&o.session))
                    label for="subject" { "The person's identifier" }
                    input id="subject" name="subject" type="text" autocomplete="off" required maxlength="128";
                    button type="submit" { "Issue a code" }
                }
                h3 { "Withdraw a person's codes" }
                p { "If a letter went astray: every code of the person stops working, and their open sessions end." }
                form method="post" action="/office/access-code/revoke" {
                    (csrf_field(&o.session))
                    label for="revoke-subject" { "The person's identifier" }
                    input id="revoke-subject" name="subject" type="text" autocomplete="off" required maxlength="128";
                    button type="submit" { "Withdraw codes" }
                }
            }
        },
    )
}

async fn rights_decide(state: Arc<AppState>, req: Request, id: String, grant: bool) -> Response {
    let (o, form) = match officer_form(&state, req, "/office/rights").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = o.principal.clone();
    let reason = form.get("reason").unwrap_or("").to_string();
    let note = form.get("note").unwrap_or("").to_string();
    let done = blocking(&state, move |v| {
        Ok(if grant {
            v.grant_rights_request(&p, &id)?
        } else {
            v.refuse_rights_request(&p, &id, &reason, &note)?
        })
    })
    .await;
    let notice = match done {
        Ok(r) => html! { p.ok role="status" { "Request " (r.id) " is now " b { (r.status) } "." } },
        Err(e) => html! { p.bad role="alert" { (e.message) " (" code { (e.code) } ")" } },
    };
    rights_page(&state, &o, Some(notice)).await
}

async fn rights_grant(State(state): St, Path(id): Path<String>, req: Request) -> Response {
    rights_decide(state, req, id, true).await
}

async fn rights_refuse(State(state): St, Path(id): Path<String>, req: Request) -> Response {
    rights_decide(state, req, id, false).await
}

async fn access_code(State(state): St, req: Request) -> Response {
    let (o, form) = match officer_form(&state, req, "/office/rights").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = o.principal.clone();
    let subject = form.get("subject").unwrap_or("").trim().to_string();
    match blocking(&state, move |v| Ok(v.issue_access_code(&p, &subject)?)).await {
        Ok(c) => page(
            "Access code issued",
            nav(Some(&o.session)),
            html! {
                p { "Mail this code to the person. It is shown only now; it works once, until " (c.expires_at) "." }
                p.code { output id="access-code" { (c.code) } }
                p.muted { "Log entry " (c.log_index) "." }
            },
        ),
        Err(e) => error_page(e, "/office/rights"),
    }
}

async fn access_code_revoke(State(state): St, req: Request) -> Response {
    let (o, form) = match officer_form(&state, req, "/office/rights").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = o.principal.clone();
    let subject = form.get("subject").unwrap_or("").trim().to_string();
    let s = subject.clone();
    match blocking(&state, move |v| Ok(v.revoke_access_codes(&p, &s)?)).await {
        Ok(n) => {
            let ended = state.sessions.end_person(&subject);
            let notice = html! {
                p.ok role="status" { (n) " codes withdrawn; " (ended) " open sessions ended." }
            };
            rights_page(&state, &o, Some(notice)).await
        }
        Err(e) => error_page(e, "/office/rights"),
    }
}

async fn holds(State(state): St, h: HeaderMap) -> Response {
    let o = match officer(&state, &h).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    holds_page(&state, &o, None).await
}

async fn holds_page(state: &Arc<AppState>, o: &Officer, notice: Option<Markup>) -> Response {
    let p = o.principal.clone();
    let list = match blocking(state, move |v| Ok(v.holds(&p)?)).await {
        Ok(l) => l,
        Err(e) => return error_page(e, "/office/"),
    };
    page(
        "Legal holds",
        nav(Some(&o.session)),
        html! {
            @if let Some(n) = notice { (n) }
            p {
                "A legal hold keeps a person's records past their retention, and blocks their \
                 erasure, while an approved instrument needs them (at most 90 days at a time). \
                 Holds are placed over the API (" code { "POST /v1/holds" } ") or with "
                code { "postvault hold place" } "; releasing one here is one log entry per person."
            }
            @if list.is_empty() { p { "No legal holds." } }
            @else {
                table.holds {
                    thead { tr {
                        th scope="col" { "Hold" } th scope="col" { "Request" } th scope="col" { "People" }
                        th scope="col" { "Placed" } th scope="col" { "Until" } th scope="col" { "Status" } th scope="col" { "" }
                    } }
                    tbody {
                        @for x in &list {
                            tr {
                                td { code { (x.id) } }
                                td { a href=(format!("/office/requests/{}", x.request)) { (x.request) } }
                                td { (x.subjects.len()) }
                                td { (x.placed_at) " by " (x.placed_by) }
                                td { (x.until) }
                                td.status { (x.status) }
                                td {
                                    @if x.status == "active" {
                                        form.inline method="post" action=(format!("/office/holds/{}/release", x.id)) {
                                            (csrf_field(&o.session))
                                            button type="submit" { "Release " (x.id) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn hold_release(State(state): St, Path(id): Path<String>, req: Request) -> Response {
    let (o, _) = match officer_form(&state, req, "/office/holds").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = o.principal.clone();
    let notice = match blocking(&state, move |v| Ok(v.hold_release(&p, &id)?)).await {
        Ok(x) => html! { p.ok role="status" { "Hold " (x.id) " is now " b { (x.status) } "." } },
        Err(e) => html! { p.bad role="alert" { (e.message) " (" code { (e.code) } ")" } },
    };
    holds_page(&state, &o, Some(notice)).await
}

async fn reports(State(state): St, h: HeaderMap) -> Response {
    let o = match officer(&state, &h).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let public = match super::public::gather(&state).await {
        Ok(p) => p,
        Err(e) => return error_page(e, "/office/"),
    };
    let status = blocking(&state, |v| Ok(v.witness_policy_status().ok())).await;
    page(
        "Reports",
        nav(Some(&o.session)),
        html! {
            section aria-labelledby="log-status-h" {
                h2 id="log-status-h" { "The log" }
                dl.facts {
                    dt { "Entries" } dd { (public.report.log_size) }
                    @match &public.checkpoint {
                        Ok((_, size)) => { dt { "Last checkpoint shown" } dd { "size " (size) } }
                        Err(why) => { dt { "Last checkpoint" } dd.bad { (why) } }
                    }
                    dt { "Witnesses" }
                    dd {
                        @if public.quorum == 0 { "none configured" }
                        @else { (public.witness_keys.len()) " configured, " (public.quorum) " must cosign" }
                    }
                }
                @if let Ok(Some(s)) = &status {
                    pre { (serde_json::to_string_pretty(s).unwrap_or_default()) }
                }
            }
            (super::public::report_sections(&public.report, false))
        },
    )
}
