//! The pages' security in process (the browser test drives the flows): the
//! headers every page carries, sessions and their cookies, CSRF, the end of
//! a session on revocation or erasure, the sign-in rate limit, escaping of
//! what an agency wrote, and a person's pages showing that person only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use postvault::{OpenOptions, Vault};
use postvault_server::{AppState, Config};
use serde_json::json;
use tower::ServiceExt;

struct Site {
    _dir: tempfile::TempDir,
    vault: Arc<Vault>,
    app: Router,
    officer: String,
    agency: String,
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie `name=value` a sign-in set.
    fn cookie(&self) -> String {
        let c = self
            .headers
            .get("set-cookie")
            .expect("a cookie")
            .to_str()
            .unwrap();
        c.split(';').next().unwrap().to_string()
    }

    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        self.body[at..at + 64].to_string()
    }
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::init(&dir.path().join("vault"), OpenOptions::default()).unwrap();
    let ingest = v.add_principal("ingest", "collector").unwrap();
    let officer = v.add_principal("officer", "privacy_officer").unwrap();
    let agency = v.add_principal("ice", "agency").unwrap();
    let _ = ingest;
    let p = v.principal("ingest").unwrap();
    let lines = [
        json!({"subject": "cust-a", "category": "address", "purpose": "forwarding",
               "fields": {"street": "1 Amberly Way", "city": "Portland", "state": "OR", "zip": "97254"}}),
        json!({"subject": "cust-b", "category": "address", "purpose": "forwarding",
               "fields": {"street": "2 Bexley Row", "city": "Portland", "state": "OR", "zip": "97254"}}),
    ]
    .iter()
    .map(|l| l.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    v.collect(
        &p,
        &mut lines.as_bytes(),
        &postvault::CollectOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let vault = Arc::new(v);
    let config = Config {
        principals_watch: Duration::ZERO,
        ..Config::default()
    };
    let app = postvault_server::router(AppState::new(vault.clone(), config));
    Site {
        _dir: dir,
        vault,
        app,
        officer,
        agency,
    }
}

impl Site {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        cookie: Option<&str>,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if form.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let res = self
            .app
            .clone()
            .oneshot(
                req.body(Body::from(form.unwrap_or("").to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Page {
        self.send(Method::GET, uri, cookie, None, &[]).await
    }

    async fn post(&self, uri: &str, cookie: Option<&str>, form: &str) -> Page {
        self.send(Method::POST, uri, cookie, Some(form), &[]).await
    }

    async fn officer_session(&self) -> String {
        let p = self
            .post("/office/login", None, &format!("token={}", self.officer))
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        p.cookie()
    }

    async fn person_session(&self, subject: &str) -> String {
        let officer = self.vault.principal("officer").unwrap();
        let code = self.vault.issue_access_code(&officer, subject).unwrap();
        let p = self
            .post("/me/login", None, &format!("code={}", code.code))
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        p.cookie()
    }
}

/// An inline event handler attribute (` onclick=`...).
fn has_handler(body: &str) -> bool {
    body.match_indices(" on").any(|(i, _)| {
        let rest = &body[i + 3..];
        let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

#[tokio::test]
async fn every_page_carries_a_strict_policy() {
    let s = site();
    let office = s.officer_session().await;
    let me = s.person_session("cust-a").await;
    for (uri, cookie) in [
        ("/", None),
        ("/office/login", None),
        ("/me/login", None),
        ("/office/", Some(office.as_str())),
        ("/office/rights", Some(office.as_str())),
        ("/office/reports", Some(office.as_str())),
        ("/office/holds", Some(office.as_str())),
        ("/me/", Some(me.as_str())),
        ("/me/log", Some(me.as_str())),
        ("/me/log-key", Some(me.as_str())),
        ("/me/disclosures", Some(me.as_str())),
        ("/me/choices", Some(me.as_str())),
        ("/assets/verify.js", None),
    ] {
        let p = s.get(uri, cookie).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.body);
        let csp = p.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{uri}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{uri}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}");
        assert_eq!(p.headers["x-content-type-options"], "nosniff", "{uri}");
        assert_eq!(p.headers["referrer-policy"], "same-origin", "{uri}");
        if uri.ends_with(".js") {
            continue;
        }
        assert_eq!(p.headers["cache-control"], "no-store", "{uri}");
        // No inline script or style, no third-party asset.
        assert!(
            !p.body.contains("<script>") && !p.body.contains("<style"),
            "{uri}"
        );
        assert!(
            !p.body.contains("style=\"") && !has_handler(&p.body),
            "{uri}"
        );
        assert!(
            !p.body.contains("src=\"http") && !p.body.contains("href=\"http"),
            "{uri}"
        );
    }
    // The downloaded report is a standalone file: its own style, no script.
    let p = s.get("/me/report.html", Some(&me)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(
        p.headers["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
}

#[tokio::test]
async fn sessions_are_cookies_the_page_cannot_read_and_only_officers_get_one() {
    let s = site();
    // No session: the sign-in page, for both surfaces.
    assert_eq!(s.get("/office/", None).await.location(), "/office/login");
    assert_eq!(s.get("/me/", None).await.location(), "/me/login");
    // An agency's token opens no console.
    let p = s
        .post("/office/login", None, &format!("token={}", s.agency))
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.headers.get("set-cookie").is_none());
    let p = s.post("/office/login", None, "token=pv_nothing").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    // The officer's cookie: HttpOnly, SameSite=Strict, scoped to /office.
    let p = s
        .post("/office/login", None, &format!("token={}", s.officer))
        .await;
    let c = p.headers["set-cookie"].to_str().unwrap();
    assert!(c.starts_with("pv_office="), "{c}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/office", "Max-Age="] {
        assert!(c.contains(part), "{c}");
    }
    // A forged or guessed cookie is no session.
    let forged = format!("pv_office={}", "ab".repeat(32));
    assert_eq!(
        s.get("/office/", Some(&forged)).await.location(),
        "/office/login"
    );
    // The person's cookie cannot open the console, nor the officer's the portal.
    let me = s.person_session("cust-a").await;
    assert!(me.starts_with("pv_me="));
    let as_office = me.replace("pv_me=", "pv_office=");
    assert_eq!(
        s.get("/office/", Some(&as_office)).await.location(),
        "/office/login"
    );
    let office = p.cookie();
    let as_me = office.replace("pv_office=", "pv_me=");
    assert_eq!(s.get("/me/", Some(&as_me)).await.location(), "/me/login");
}

/// Pages that write leaves when loaded (an officer's view of the rights
/// queue, a person's logged report) are not loaded by another site's page,
/// a sibling subdomain's included: an image, a fetch or a script's
/// navigation from there is refused and writes nothing; a link the user
/// follows from there still opens.
#[tokio::test]
async fn another_sites_page_cannot_load_the_pages_only_navigate_to_them() {
    let s = site();
    let office = s.officer_session().await;
    let me = s.person_session("cust-a").await;
    let before = s.vault.store().log_size().unwrap();
    let image = [
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-dest", "image"),
    ];
    let fetch = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
    ];
    for (uri, cookie) in [("/office/rights", &office), ("/me/report.json", &me)] {
        for extra in [&image[..], &fetch[..]] {
            let p = s.send(Method::GET, uri, Some(cookie), None, extra).await;
            assert_eq!(p.status, StatusCode::FORBIDDEN, "{uri} {extra:?}");
        }
    }
    assert_eq!(
        s.vault.store().log_size().unwrap(),
        before,
        "nothing was logged in anyone's name"
    );
    // A sibling subdomain's script sending the browser there: refused; the
    // user's own click on a link there: opened.
    let scripted = [
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ];
    let p = s
        .send(Method::GET, "/me/report.json", Some(&me), None, &scripted)
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(s.vault.store().log_size().unwrap(), before);
    let clicked = [
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-user", "?1"),
    ];
    let p = s
        .send(Method::GET, "/office/rights", Some(&office), None, &clicked)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    // Our own pages' requests are same-origin.
    let own = [
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
    ];
    let p = s
        .send(Method::GET, "/me/report.json", Some(&me), None, &own)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token_and_no_cross_site_post_is_taken() {
    let s = site();
    let office = s.officer_session().await;
    let page = s.get("/office/rights", Some(&office)).await;
    let csrf = page.csrf();
    let before = s.vault.checkpoint_size().unwrap();
    for form in [
        "subject=cust-a".to_string(),
        format!("subject=cust-a&csrf={}", "0".repeat(64)),
    ] {
        let p = s.post("/office/access-code", Some(&office), &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.body.contains("csrf"));
    }
    // From another site, even with the token: refused.
    let p = s
        .send(
            Method::POST,
            "/office/access-code",
            Some(&office),
            Some(&format!("subject=cust-a&csrf={csrf}")),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.vault.checkpoint_size().unwrap(),
        before,
        "nothing was done"
    );
    // A sign-in from another site is refused too.
    let p = s
        .send(
            Method::POST,
            "/office/login",
            None,
            Some(&format!("token={}", s.officer)),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // With the token: done, and the code shown once.
    let p = s
        .post(
            "/office/access-code",
            Some(&office),
            &format!("subject=cust-a&csrf={csrf}"),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"access-code\""));
    // The person's forms too.
    let me = s.person_session("cust-a").await;
    let p = s
        .post("/me/consent", Some(&me), "purpose=marketing&granted=true")
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = s.post("/me/erase", Some(&me), "confirm=yes").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let officer = s.vault.principal("officer").unwrap();
    assert!(s.vault.rights_requests(&officer).unwrap().is_empty());
}

#[tokio::test]
async fn revoking_or_rotating_an_officers_token_ends_their_session() {
    let s = site();
    let office = s.officer_session().await;
    assert_eq!(
        s.get("/office/", Some(&office)).await.status,
        StatusCode::OK
    );
    s.vault.rotate_principal(None, "officer").unwrap();
    let p = s.get("/office/", Some(&office)).await;
    assert_eq!(p.location(), "/office/login?ended=1");
    // And the session is gone, not just refused once.
    assert_eq!(
        s.get("/office/", Some(&office)).await.location(),
        "/office/login"
    );
}

#[tokio::test]
async fn a_persons_session_ends_with_their_erasure() {
    let s = site();
    let me = s.person_session("cust-a").await;
    assert_eq!(s.get("/me/", Some(&me)).await.status, StatusCode::OK);
    let officer = s.vault.principal("officer").unwrap();
    s.vault
        .erase(&officer, &["cust-a".to_string()], &mut |_| {})
        .unwrap();
    for uri in ["/me/", "/me/log", "/me/proofs.json", "/me/report.json"] {
        let p = s.get(uri, Some(&me)).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{uri}");
        assert!(p.location().starts_with("/me/login"), "{uri}");
    }
}

#[tokio::test]
async fn a_persons_pages_show_that_person_only_and_no_identifier_in_an_address() {
    let s = site();
    let me = s.person_session("cust-a").await;
    for uri in [
        "/me/",
        "/me/records?category=address&page=1",
        "/me/log",
        "/me/proofs.json",
        "/me/disclosures",
        "/me/choices",
        "/me/report.json",
        "/me/report.html",
    ] {
        let p = s.get(uri, Some(&me)).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.body);
        assert!(
            !p.body.contains("Bexley") && !p.body.contains("cust-b"),
            "{uri}"
        );
        if uri == "/me/report.json" {
            // Indented throughout, records' fields too.
            assert!(p.body.contains("\"fields\": {\n"), "{}", p.body);
        }
        assert!(!p.location().contains("cust-"), "{uri}");
    }
    assert!(
        s.get("/me/", Some(&me))
            .await
            .body
            .contains("1 Amberly Way")
    );
    // The records page of a category the person has nothing of says so,
    // whoever else the vault holds.
    let p = s.get("/me/records?category=payment_card", Some(&me)).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // The code worked once.
    let officer = s.vault.principal("officer").unwrap();
    let code = s.vault.issue_access_code(&officer, "cust-a").unwrap();
    let first = s
        .post("/me/login", None, &format!("code={}", code.code))
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert!(!first.location().contains("cust-"));
    let again = s
        .post("/me/login", None, &format!("code={}", code.code))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let s = site();
    let mut limited = 0;
    for _ in 0..12 {
        let p = s
            .post("/me/login", None, "code=0000-0000-0000-0000-0000")
            .await;
        match p.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}: {}", p.body),
        }
    }
    assert!(limited >= 6, "attempts limited: {limited} of 12");
}

#[tokio::test]
async fn what_an_agency_wrote_is_shown_escaped_to_the_officer() {
    let s = site();
    let agency = s.vault.principal("ice").unwrap();
    let now = s.vault.now_ms();
    let day = |ms: i64| postvault::format_ms(ms)[..10].to_string();
    let order = json!({
        "kind": "court_order", "instrument_id": "<script>alert(1)</script>", "agency": "<img src=x onerror=alert(2)>",
        "signer": {"name": "A \"quoted\" <b>name</b>", "title": "Assistant United States Attorney", "level": "agent"},
        "authority": "5 U.S.C. 552a(b)(11)", "ground": "criminal_law_enforcement",
        "case_id": "HSI-1", "subjects": [{"id": "cust-a"}], "portions": ["address"],
        "time_range": {"from": day(now - 86_400_000), "to": day(now)}, "issued_at": day(now),
        "expires_at": day(now + 30 * 86_400_000),
        "court": {"name": "U.S. District Court", "docket": "1:26-mj-1", "judge": "Magistrate Judge", "order_date": day(now)}
    });
    let a = s
        .vault
        .disclose_submit(&agency, &order.to_string())
        .unwrap();
    let office = s.officer_session().await;
    let p = s
        .get(&format!("/office/requests/{}", a.id), Some(&office))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(!p.body.contains("<script>alert") && !p.body.contains("<img src=x"));
    assert!(p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(p.body.contains("&lt;img src=x onerror=alert(2)&gt;"));
}

#[tokio::test]
async fn a_form_from_another_origin_is_refused() {
    let s = site();
    for origin in ["https://evil.example", "null"] {
        let p = s
            .send(
                Method::POST,
                "/office/login",
                None,
                Some(&format!("token={}", s.officer)),
                &[("origin", origin), ("host", "vault.example")],
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{origin}");
    }
    let p = s
        .send(
            Method::POST,
            "/office/login",
            None,
            Some(&format!("token={}", s.officer)),
            &[
                ("origin", "https://vault.example"),
                ("host", "vault.example"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_persons_pages_are_rate_limited_and_a_click_within_seconds_reads_nothing_new() {
    let s = site();
    let me = s.person_session("cust-a").await;
    let before = s.vault.checkpoint_size().unwrap();
    let mut limited = 0;
    for _ in 0..20 {
        match s.get("/me/", Some(&me)).await.status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert!(limited >= 5, "pages limited: {limited} of 20");
    // The report was read once (its read and its accounting lookup), however many pages.
    assert_eq!(s.vault.checkpoint_size().unwrap(), before + 2);
}

#[tokio::test]
async fn withdrawing_a_persons_codes_ends_their_sessions() {
    let s = site();
    let me = s.person_session("cust-a").await;
    let other = s.person_session("cust-b").await;
    let officer = s.vault.principal("officer").unwrap();
    let mailed = s.vault.issue_access_code(&officer, "cust-a").unwrap();
    let office = s.officer_session().await;
    let csrf = s.get("/office/rights", Some(&office)).await.csrf();
    let p = s
        .post(
            "/office/access-code/revoke",
            Some(&office),
            &format!("subject=cust-a&csrf={csrf}"),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains("1 codes withdrawn; 1 open sessions ended"),
        "{}",
        p.body
    );
    assert_eq!(s.get("/me/", Some(&me)).await.location(), "/me/login");
    assert_eq!(s.get("/me/", Some(&other)).await.status, StatusCode::OK);
    let again = s
        .post("/me/login", None, &format!("code={}", mailed.code))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_public_page_shows_no_small_count_exactly() {
    let s = site();
    let agency = s.vault.principal("ice").unwrap();
    let now = s.vault.now_ms();
    let day = |ms: i64| postvault::format_ms(ms)[..10].to_string();
    let one = json!({
        "kind": "written_request", "instrument_id": "ERO-1", "agency": "Immigration and Customs Enforcement",
        "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
        "authority": "8 U.S.C. 1357", "ground": "civil_law_enforcement", "case_id": "A1",
        "subjects": [{"id": "cust-a"}], "portions": ["address"],
        "time_range": {"from": day(now - 86_400_000), "to": day(now)}, "issued_at": day(now)
    });
    s.vault.disclose_submit(&agency, &one.to_string()).unwrap();
    let p = s.get("/", None).await;
    assert!(
        p.body.contains("fewer than 10 requests in all"),
        "{}",
        p.body
    );
    assert!(
        !p.body.contains(">1<"),
        "an exact small count on the public page"
    );
    // The office sees the exact figures.
    let office = s.officer_session().await;
    let p = s.get("/office/reports", Some(&office)).await;
    assert!(p.body.contains("1 requests in all"), "{}", p.body);
}

/// The person's page hands them their key to their own log entries, with
/// the command that scans the whole public log for them; handing it out is
/// an entry of theirs. It is the key their entries' marks are made with:
/// a scan with it finds what the service's index finds.
#[tokio::test]
async fn the_person_gets_their_key_to_the_log_and_it_finds_their_entries() {
    let s = site();
    let me = s.person_session("cust-a").await;
    let log = s.get("/me/log", Some(&me)).await;
    assert!(log.body.contains("/me/log-key"), "{}", log.body);
    let before = s.vault.store().log_size().unwrap();
    let p = s.get("/me/log-key", Some(&me)).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let key = s.vault.subject_tag_key("cust-a").unwrap().unwrap();
    assert!(p.body.contains(&key), "{}", p.body);
    assert!(p.body.contains("postvault log scan"), "{}", p.body);
    // The scan must reach past the entry this page wrote.
    assert!(
        p.body.contains(&format!("--min-size {}", before + 1)),
        "{}",
        p.body
    );
    assert!(p.body.contains(&s.vault.log_verifier_key()), "{}", p.body);
    assert_eq!(s.vault.store().log_size().unwrap(), before + 1);
    // The one entry written is the person's own act, found with that key.
    let (note, found) = s.vault.find_leaves(&key).unwrap();
    let last = found.last().unwrap();
    assert_eq!(last.index, before);
    assert_eq!(last.event.as_ref().unwrap().action, "tag_key_shown");
    let scan = postvault::scan_public_log(
        &note,
        &s.vault.log_verifier_key(),
        &[],
        None,
        &key,
        &mut |path| s.vault.log_tile(path).map_err(|e| e.to_string()),
        &mut |_| {},
    )
    .unwrap();
    let scanned: Vec<u64> = scan.leaves.iter().map(|l| l.index).collect();
    let indexed: Vec<u64> = found.iter().map(|l| l.index).collect();
    assert_eq!(scanned, indexed);
    // Another role may not ask for it.
    s.vault.add_principal("sorting2", "delivery").unwrap();
    let p = s.vault.principal("sorting2").unwrap();
    assert_eq!(
        s.vault.person_tag_key(&p, "cust-a").unwrap_err().code(),
        "not_permitted"
    );
}
