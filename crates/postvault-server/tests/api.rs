//! The HTTP API in process: every endpoint's authentication, happy path and
//! bad input, the limits, and malformed bodies thrown at every endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use postvault::{OpenOptions, Vault};
use postvault_server::{AppState, Config};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    _dir: tempfile::TempDir,
    app: Router,
    vault: Arc<Vault>,
    tokens: std::collections::HashMap<&'static str, String>,
}

fn api_with(config: Config) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::init(&dir.path().join("vault"), OpenOptions::default()).unwrap();
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [
        ("ingest", "collector"),
        ("sorting", "delivery"),
        ("officer", "privacy_officer"),
        ("ice", "agency"),
        ("auditor", "auditor"),
        ("channel", "subject_access"),
    ] {
        tokens.insert(name, v.add_principal(name, role).unwrap());
    }
    let vault = Arc::new(v);
    let state = AppState::new(vault.clone(), config);
    Api {
        _dir: dir,
        app: postvault_server::router(state),
        vault,
        tokens,
    }
}

fn api() -> Api {
    api_with(Config::default())
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, who: Option<&str>, body: &[u8]) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(w) = who {
            let token = self.tokens.get(w).cloned().unwrap_or_else(|| w.to_string());
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
    async fn get(&self, uri: &str, who: Option<&str>) -> Answer {
        self.call(Method::GET, uri, who, b"").await
    }
    async fn post(&self, uri: &str, who: Option<&str>, body: &[u8]) -> Answer {
        self.call(Method::POST, uri, who, body).await
    }
}

fn line(subject: &str, category: &str, purpose: &str, fields: Value) -> String {
    json!({"subject": subject, "category": category, "purpose": purpose, "fields": fields})
        .to_string()
}

fn address(subject: &str, street: &str) -> String {
    line(
        subject,
        "address",
        "delivery",
        json!({"street": street, "city": "Springfield", "state": "IL", "zip": "62701"}),
    )
}

/// Every authenticated endpoint, with a method and a body it would take.
const AUTHED: &[(&str, &str)] = &[
    ("POST", "/v1/records"),
    ("GET", "/v1/subjects/cust-1?purpose=delivery"),
    ("GET", "/v1/subjects/cust-1/report"),
    ("POST", "/v1/subjects/cust-1/consent"),
    ("POST", "/v1/subjects/cust-1/erase"),
    ("POST", "/v1/subjects/cust-1/corrections"),
    ("GET", "/v1/subjects/cust-1/accounting"),
    ("POST", "/v1/disclosures"),
    ("GET", "/v1/disclosures"),
    ("GET", "/v1/disclosures/x"),
    ("POST", "/v1/disclosures/x/approve"),
    ("POST", "/v1/disclosures/x/refuse"),
    ("POST", "/v1/disclosures/x/fetch"),
    ("POST", "/v1/disclosures/x/end"),
    ("POST", "/v1/holds"),
    ("GET", "/v1/holds"),
    ("POST", "/v1/holds/x/release"),
    ("POST", "/v1/retention/run"),
    ("GET", "/v1/reports/transparency"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

const PUBLIC: &[&str] = &[
    "/v1/log/checkpoint",
    "/log/checkpoint",
    "/v1/log/proof/inclusion?index=0",
    "/v1/log/proof/consistency?old=0&new=1",
    "/v1/log/entries?start=0&end=1",
    "/health",
];

#[tokio::test]
async fn every_endpoint_but_health_and_the_log_needs_a_principal() {
    let a = api();
    // One leaf, so the log endpoints have something to prove.
    a.post(
        "/v1/records",
        Some("ingest"),
        address("cust-1", "1 Elm St").as_bytes(),
    )
    .await;
    for (m, uri) in AUTHED {
        let m: Method = m.parse().unwrap();
        for who in [None, Some("pv_not-a-token"), Some("")] {
            let r = a.call(m.clone(), uri, who, b"{}").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {uri} as {who:?}");
            assert_eq!(r.json()["error"]["code"], "unauthorized");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
    }
    for uri in PUBLIC {
        let r = a.get(uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    let r = a.get("/no/such/thing", Some("officer")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn ingest_read_and_metrics() {
    let a = api();
    let body = [
        address("cust-1", "1 Elm St"),
        address("cust-2", "2 Elm St"),
        r#"{"subject":"cust-3","category":"address","purpose":"delivery","fields":{"ssn":"123-45-6789"}}"#.into(),
    ]
    .join("\n");
    let r = a.post("/v1/records", Some("ingest"), body.as_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rep = r.json();
    assert_eq!(
        (rep["accepted"].as_u64(), rep["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(!r.text().contains("123-45-6789"), "no value in the errors");
    assert_eq!(rep["errors"][0]["line"], 3);
    // A bad query on ingest.
    let r = a
        .post("/v1/records?batch_size=many", Some("ingest"), b"")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = a
        .get("/v1/subjects/cust-1?purpose=delivery", Some("sorting"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["decision"], "allow");
    assert_eq!(r.json()["records"][0]["fields"]["street"], "1 Elm St");
    let r = a.get("/v1/subjects/cust-1", Some("sorting")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "invalid");
    let r = a
        .get("/v1/subjects/cust-1?purpose=no_such", Some("sorting"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "unknown_purpose");
    // A prohibited purpose is an answer, not an error: denied, logged.
    let r = a
        .get(
            "/v1/subjects/cust-1?purpose=immigration_enforcement",
            Some("ice"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["decision"], "deny");
    assert_eq!(r.json()["records"], json!([]));

    // The metrics are the office's and the auditor's only.
    for who in ["ice", "ingest", "sorting"] {
        let m = a.get("/metrics", Some(who)).await;
        assert_eq!(m.status, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(m.json()["error"]["code"], "not_permitted");
    }
    assert_eq!(
        a.get("/metrics", Some("officer")).await.status,
        StatusCode::OK
    );
    let m = a.get("/metrics", Some("auditor")).await;
    assert_eq!(m.status, StatusCode::OK);
    let t = m.text();
    assert!(t.contains("postvault_records_ingested_total 2"), "{t}");
    assert!(
        t.contains("postvault_decisions_total{effect=\"allow\"} 1"),
        "{t}"
    );
    assert!(
        t.contains("postvault_decisions_total{effect=\"deny\"} 1"),
        "{t}"
    );
    assert!(t.contains("postvault_log_size "), "{t}");
    assert!(
        t.contains("route=\"/v1/subjects/{id}\",status=\"200\""),
        "{t}"
    );

    let doc = a.get("/openapi.json", Some("auditor")).await;
    assert_eq!(doc.status, StatusCode::OK);
    let d = doc.json();
    assert!(d["openapi"].as_str().unwrap().starts_with("3.1"));
    for p in [
        "/v1/records",
        "/v1/subjects/{id}",
        "/v1/disclosures",
        "/log/tile/{path}",
    ] {
        assert!(d["paths"].get(p).is_some(), "{p} missing");
    }
}

fn warrant(subject: &str) -> Value {
    let day = 86_400_000i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let d = |ms: i64| postvault_policy::disclosure::format_iso(ms - ms.rem_euclid(day));
    json!({
        "kind": "warrant", "instrument_id": format!("W-{subject}"), "agency": "An Agency",
        "signer": {"name": "A", "title": "Special Agent", "level": "agent"},
        "authority": "Fed. R. Crim. P. 41", "ground": "criminal_law_enforcement",
        "case_id": format!("K-{subject}"),
        "subjects": [{"id": subject}], "portions": ["address"],
        "time_range": {"from": d(now - 30 * day), "to": d(now + day)}, "issued_at": d(now - day),
        "court": {"name": "Court", "docket": "1", "judge": "J", "order_date": d(now - day)}
    })
}

#[tokio::test]
async fn the_disclosure_gateway_over_http() {
    let a = api();
    a.post(
        "/v1/records",
        Some("ingest"),
        address("cust-1", "1 Elm St").as_bytes(),
    )
    .await;
    let r = a
        .post(
            "/v1/disclosures",
            Some("ice"),
            warrant("cust-1").to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/v1/disclosures/{id}"));
    assert_eq!(r.json()["status"], "pending_approval");
    // A dragnet is recorded and refused.
    let r = a
        .post(
            "/v1/disclosures",
            Some("ice"),
            br#"{"kind":"warrant","selector":{"zip":"62701"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["status"], "refused");
    // The requester cannot approve its own request; the officer can.
    let r = a
        .post(&format!("/v1/disclosures/{id}/approve"), Some("ice"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "pending_approval");
    assert!(!r.json()["reasons"].as_array().unwrap().is_empty());
    let r = a
        .post(
            &format!("/v1/disclosures/{id}/approve"),
            Some("officer"),
            br#"{"portions":["address"]}"#,
        )
        .await;
    assert_eq!(r.json()["status"], "approved", "{}", r.text());
    let r = a
        .post(
            &format!("/v1/disclosures/{id}/approve"),
            Some("officer"),
            br#"{"portions":7}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = a
        .post(&format!("/v1/disclosures/{id}/fetch"), Some("ice"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["subjects"][0]["records"][0]["fields"]["street"],
        "1 Elm St"
    );
    let r = a.get("/v1/disclosures", Some("ice")).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = a
        .get(&format!("/v1/disclosures/{id}"), Some("officer"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a.get("/v1/disclosures/no-such", Some("officer")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = a
        .post(
            &format!("/v1/disclosures/{id}/end"),
            Some("officer"),
            br#"{"reason":"bored"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = a
        .post(
            &format!("/v1/disclosures/{id}/refuse"),
            Some("officer"),
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .get("/v1/subjects/cust-1/accounting", Some("officer"))
        .await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1);
    let r = a.get("/v1/reports/transparency", Some("auditor")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().is_object());
}

#[tokio::test]
async fn an_officer_refuses_with_a_reason_the_requester_reads() {
    let a = api();
    let r = a
        .post(
            "/v1/disclosures",
            Some("ice"),
            warrant("cust-9").to_string().as_bytes(),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/disclosures/{id}/refuse");
    for bad in [&br#"{"reason":"bored"}"#[..], br#"{"why":"x"}"#, b"[1]"] {
        let r = a.post(&path, Some("officer"), bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    }
    let r = a
        .post(&path, Some("officer"), br#"{"reason":"overbroad"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["status"], "refused");
    let r = a.get(&format!("/v1/disclosures/{id}"), Some("ice")).await;
    assert_eq!(
        r.json()["reasons"],
        json!(["refused_by_officer", "overbroad"]),
        "{}",
        r.text()
    );
    let r = a.get("/v1/reports/transparency", Some("auditor")).await;
    assert_eq!(r.json()["refusals_by_reason"]["overbroad"], 1);
}

#[tokio::test]
async fn only_the_privacy_office_issues_access_codes() {
    let a = api();
    for who in ["ice", "sorting", "auditor", "channel"] {
        let r = a
            .post("/v1/subjects/cust-1/access-code", Some(who), b"")
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.text());
    }
    let r = a
        .post("/v1/subjects/cust-1/access-code", Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 24);
    assert!(r.json()["log_index"].is_u64());
}

#[tokio::test]
async fn the_persons_rights_over_http() {
    let a = api();
    a.post(
        "/v1/records",
        Some("ingest"),
        address("cust-1", "1 Elm St").as_bytes(),
    )
    .await;
    let r = a
        .post(
            "/v1/subjects/cust-1/consent",
            Some("officer"),
            br#"{"purpose":"marketing","granted":true}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = a
        .post(
            "/v1/subjects/cust-1/consent",
            Some("officer"),
            br#"{"purpose":"marketing"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = a
        .post(
            "/v1/subjects/cust-1/consent",
            Some("ice"),
            br#"{"purpose":"marketing","granted":true}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "not_permitted");
    let r = a
        .post(
            "/v1/subjects/cust-1/corrections",
            Some("officer"),
            br#"{"category":"address","fields":{"street":"9 Fixed St","city":"Springfield","state":"IL","zip":"62701"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = a.get("/v1/subjects/cust-1/report", Some("officer")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["proofs_verified"], true);
    assert_eq!(
        r.json()["records"].as_array().unwrap().len(),
        2,
        "with its history"
    );
    let r = a
        .get("/v1/subjects/cust-1/report?format=html", Some("officer"))
        .await;
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().contains("9 Fixed St"));
    let r = a
        .get("/v1/subjects/cust-1/report?format=pdf", Some("officer"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A hold from an approved warrant blocks erasure: 409 legal_hold.
    let sub = a
        .post(
            "/v1/disclosures",
            Some("ice"),
            warrant("cust-1").to_string().as_bytes(),
        )
        .await
        .json();
    let id = sub["id"].as_str().unwrap().to_string();
    a.post(
        &format!("/v1/disclosures/{id}/approve"),
        Some("officer"),
        b"",
    )
    .await;
    let r = a
        .post(
            "/v1/holds",
            Some("officer"),
            json!({"request": id}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let hold = r.json()["id"].as_str().unwrap().to_string();
    let r = a
        .post(
            "/v1/holds",
            Some("officer"),
            br#"{"request":"x","until":"soon"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.get("/v1/holds", Some("officer"))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a.get("/v1/holds", Some("ice")).await.status,
        StatusCode::FORBIDDEN
    );
    let r = a
        .post("/v1/subjects/cust-1/erase", Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"]["code"], "legal_hold");
    let r = a.post("/v1/subjects/cust-1/erase", Some("ice"), b"").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["code"], "not_permitted");
    let r = a
        .post(&format!("/v1/holds/{hold}/release"), Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .post("/v1/subjects/cust-1/erase", Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["erased"], 1);
    let r = a
        .get("/v1/subjects/cust-1?purpose=delivery", Some("sorting"))
        .await;
    assert_eq!(r.json()["records"], json!([]));
    // The person's own request, through the subject-access service.
    a.post(
        "/v1/records",
        Some("ingest"),
        address("cust-2", "2 Elm St").as_bytes(),
    )
    .await;
    let r = a.get("/v1/subjects/cust-2/report", Some("channel")).await;
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 1);
    let r = a
        .post("/v1/subjects/cust-2/erase", Some("channel"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["erased"], 1);
    let r = a
        .get("/v1/subjects/cust-2?purpose=delivery", Some("sorting"))
        .await;
    assert_eq!(r.json()["records"], json!([]));
    // Under a hold whose delay order still runs, the person's own request
    // is neither done nor refused naming the hold: 202, waiting for the
    // office as a rights request.
    a.post(
        "/v1/records",
        Some("ingest"),
        address("cust-3", "3 Elm St").as_bytes(),
    )
    .await;
    let mut w = warrant("cust-3");
    let in_a_month = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 30 * 86_400_000;
    w["delay_notice_until"] = json!(postvault_policy::disclosure::format_iso(in_a_month));
    let sub = a
        .post("/v1/disclosures", Some("ice"), w.to_string().as_bytes())
        .await
        .json();
    let id = sub["id"].as_str().unwrap().to_string();
    let r = a
        .post(
            &format!("/v1/disclosures/{id}/approve"),
            Some("officer"),
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = a
        .post(
            "/v1/holds",
            Some("officer"),
            json!({"request": id}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = a
        .post("/v1/subjects/cust-3/erase", Some("channel"), b"")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let body = r.text();
    assert!(!body.contains("hold") && !body.contains("cust-3"), "{body}");
    assert!(
        r.json()["pending_request"]
            .as_str()
            .unwrap()
            .starts_with("er-")
    );
    assert_eq!(
        (r.json()["erased"].clone(), r.json()["held"].clone()),
        (json!(0), json!([]))
    );
    // The officer is told of the hold.
    let r = a
        .post("/v1/subjects/cust-3/erase", Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        a.post("/v1/retention/run", Some("sorting"), b"")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = a.post("/v1/retention/run", Some("officer"), b"").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["records_deleted"], 0);
}

#[tokio::test]
async fn the_log_endpoints_prove_and_serve_tiles() {
    let a = api();
    for i in 0..5 {
        a.post(
            "/v1/records",
            Some("ingest"),
            address(&format!("c{i}"), "1 Elm St").as_bytes(),
        )
        .await;
    }
    let note = a.get("/v1/log/checkpoint", None).await;
    assert!(
        note.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let key = {
        // The verifier key is in every report; any principal's report has it.
        let r = a
            .get("/v1/subjects/c1/report", Some("officer"))
            .await
            .json();
        r["log_verifier_key"].as_str().unwrap().to_string()
    };
    let note = a.get("/v1/log/checkpoint", None).await.text();
    let cp = postvault_log::open_checkpoint(&note, &key).unwrap();
    let r = a
        .get(
            &format!("/v1/log/proof/inclusion?index=2&size={}", cp.size),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = r.json();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    };
    let entries = a.get("/v1/log/entries?start=2&end=3", None).await.json();
    let leaf = b64(entries[0]["leaf"].as_str().unwrap());
    let path: Vec<[u8; 32]> = p["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64(h.as_str().unwrap()).try_into().unwrap())
        .collect();
    postvault_log::verify_inclusion(
        2,
        cp.size,
        &postvault_log::leaf_hash(&leaf),
        &path,
        &cp.root,
    )
    .unwrap();
    let r = a.get("/v1/log/proof/consistency?old=2&new=5", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for bad in [
        "/v1/log/proof/inclusion",
        "/v1/log/proof/inclusion?index=x",
        "/v1/log/proof/inclusion?index=99999",
        "/v1/log/proof/consistency?old=5",
        "/v1/log/entries?start=5&end=2",
        "/v1/log/entries?start=0&end=5000",
    ] {
        let r = a.get(bad, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(r.json()["error"]["code"].is_string());
    }
    let size = cp.size;
    let t = a.get(&format!("/log/tile/0/000.p/{size}"), None).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text());
    assert_eq!(t.body.len() as u64, 32 * size);
    let e = a
        .get(&format!("/log/tile/entries/000.p/{size}"), None)
        .await;
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(
        a.get("/log/tile/9/999", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn limits_answer_413_and_429_with_json() {
    let a = api_with(Config {
        max_body: 64,
        max_records_body: 300,
        rate_limit: 2,
        ..Config::default()
    });
    let r = a
        .post("/v1/subjects/cust-1/consent", Some("officer"), &[b' '; 100])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], "too_large");
    // Streamed in chunks, one line each, a batch per line: the lines before
    // the limit are stored and the answer says so; the rest is not.
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = (0..5)
        .map(|i| Ok(format!("{}\n", address(&format!("c{i}"), "1 Elm St")).into()))
        .collect();
    let per = address("c0", "1 Elm St").len() + 1;
    let fits = 300 / per;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/records?batch_size=1")
        .header("authorization", format!("Bearer {}", a.tokens["ingest"]))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(
        body["report"]["committed_through_line"], fits as u64,
        "{body}"
    );
    assert_eq!(body["report"]["accepted"], fits as u64);
    let r = a
        .get(
            &format!("/v1/subjects/c{}?purpose=delivery", fits - 1),
            Some("sorting"),
        )
        .await;
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 1);
    let r = a
        .get(
            &format!("/v1/subjects/c{fits}?purpose=delivery"),
            Some("sorting"),
        )
        .await;
    assert_eq!(r.json()["records"], json!([]));
    // Bursts of twice the rate, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = a.get("/v1/holds", Some("auditor")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the limit never answered 429");
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // Another principal has its own bucket.
    assert_eq!(
        a.get("/v1/holds", Some("officer")).await.status,
        StatusCode::OK
    );
}

/// The calls whose answer is given once (a rotated token, an access code,
/// a fetched package) are not answered 503 `timeout` while their work goes
/// on: with a timeout of a millisecond they still answer what they did.
/// Every authenticated answer says `Cache-Control: no-store`.
#[tokio::test]
async fn answers_given_once_are_not_cut_by_the_timeout_and_nothing_is_cached() {
    let a = api_with(Config {
        timeout: std::time::Duration::from_millis(1),
        ..Config::default()
    });
    // Set up on the vault itself: through HTTP each step could time out.
    let ingest = a.vault.principal("ingest").unwrap();
    a.vault
        .collect(
            &ingest,
            &mut address("cust-1", "1 Elm St").as_bytes(),
            &postvault::CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    let submitted = a
        .vault
        .disclose_submit(
            &a.vault.principal("ice").unwrap(),
            &warrant("cust-1").to_string(),
        )
        .unwrap();
    assert!(submitted.reasons.is_empty(), "{:?}", submitted.reasons);
    let approved = a
        .vault
        .disclose_approve(
            &a.vault.principal("officer").unwrap(),
            &submitted.id,
            &postvault::ApproveOptions::default(),
        )
        .unwrap();
    assert!(approved.reasons.is_empty(), "{:?}", approved.reasons);
    let r = a
        .post(
            &format!("/v1/disclosures/{}/fetch", submitted.id),
            Some("ice"),
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["subjects"][0]["records"].as_array().unwrap().len(),
        1
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    let r = a
        .post("/v1/subjects/cust-1/access-code", Some("officer"), b"")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["cache-control"], "no-store");
    let r = a.post("/v1/principals/ice/rotate", Some("ice"), b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json()["token"].is_string());
}

/// An upload body whose chunks the test sends when it likes (and ends by
/// dropping the sender).
fn open_body() -> (
    tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (tx, Body::from_stream(stream))
}

/// `POST /v1/records` as `who` with `body`.
fn upload_as(a: &Api, who: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/records")
        .header("authorization", format!("Bearer {}", a.tokens[who]))
        .body(body)
        .unwrap()
}

/// An upload by a role that may collect nothing is refused before its body
/// is read or a slot is taken (one deny leaf), so a token of the auditor or
/// an agency cannot hold the upload slots by trickling bodies.
#[tokio::test]
async fn uploads_are_refused_before_a_slot_to_roles_that_collect_nothing() {
    let a = api();
    let size = a.vault.store().log_size().unwrap();
    // A body that never ends: were it read, the call would not return.
    let never = open_body;
    let upload = |who: &str, body: Body| upload_as(&a, who, body);
    // Neither the auditor nor an agency collects (a purpose's own role, as
    // `sorting` for delivery, collects for its purpose).
    for who in ["auditor", "ice"] {
        let (_tx, body) = never();
        let res = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            a.app.clone().oneshot(upload(who, body)),
        )
        .await
        .expect("refused without reading the body")
        .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{who}");
        let body: Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"]["code"], "not_permitted");
    }
    let events: Vec<postvault::Event> = a
        .vault
        .log_entries(size, a.vault.store().log_size().unwrap())
        .unwrap()
        .into_iter()
        .map(|e| e.event.unwrap())
        .collect();
    assert_eq!(events.len(), 2, "one leaf each");
    assert!(
        events
            .iter()
            .all(|e| e.action == "collect" && e.decision == "deny")
    );
    // A collector's concurrent one-line uploads (an ingest service with
    // many clients) are not limited below the 16 slots.
    let mut open = Vec::new();
    for _ in 0..8 {
        let (tx, body) = never();
        let call = tokio::spawn(a.app.clone().oneshot(upload("ingest", body)));
        open.push((tx, call));
    }
    for (i, (tx, call)) in open.into_iter().enumerate() {
        tx.send(Ok(format!(
            "{}\n",
            address(&format!("c-up{i}"), "1 Elm St")
        )
        .into()))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

/// One principal cannot hold every upload slot: past four slow uploads of
/// theirs, the next that turns slow is cut with its report; past twelve
/// uploads in flight, however fast, the next waits for one of theirs to
/// end, while other principals' uploads go on; a burst of one-line uploads
/// is queued, not refused.
#[tokio::test]
async fn a_principal_keeps_at_most_four_slow_uploads() {
    let a = api();
    let open = open_body;
    let upload = |who: &str, body: Body| upload_as(&a, who, body);
    let line = |i: &str| -> axum::body::Bytes { format!("{}\n", address(i, "1 Elm St")).into() };
    let mut slow = Vec::new();
    for _ in 0..postvault_server::MAX_SLOW_UPLOADS {
        let (tx, body) = open();
        slow.push((
            tx,
            tokio::spawn(a.app.clone().oneshot(upload("ingest", body))),
        ));
    }
    // Long enough for each to be judged slow.
    tokio::time::sleep(postvault_server::SLOW_AFTER + std::time::Duration::from_millis(1500)).await;
    let (_tx, body) = open();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        a.app.clone().oneshot(upload("ingest", body)),
    )
    .await
    .expect("cut, not left to trickle")
    .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "upload_incomplete");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("slow"),
        "{body}"
    );
    assert!(body["report"].is_object(), "{body}");
    // A body sent at once goes through beside them.
    let res = a
        .app
        .clone()
        .oneshot(upload("ingest", Body::from(line("c-fast"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // So does another principal's slow upload: counted apart.
    let (tx, body) = open();
    let other = tokio::spawn(a.app.clone().oneshot(upload("sorting", body)));
    tokio::time::sleep(postvault_server::SLOW_AFTER + std::time::Duration::from_millis(1500)).await;
    tx.send(Ok(line("c-other"))).await.unwrap();
    drop(tx);
    assert_eq!(other.await.unwrap().unwrap().status(), StatusCode::OK);
    // Eight more, not yet slow: twelve in flight, the most one principal
    // may have. A thirteenth waits; another principal's upload does not.
    let mut more = Vec::new();
    for _ in 0..postvault_server::MAX_PRINCIPAL_UPLOADS - postvault_server::MAX_SLOW_UPLOADS {
        let (tx, body) = open();
        more.push((
            tx,
            tokio::spawn(a.app.clone().oneshot(upload("ingest", body))),
        ));
    }
    // All of this within two seconds of their opening, before they would
    // turn slow.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (waiting_tx, body) = open();
    let mut waiting = tokio::spawn(a.app.clone().oneshot(upload("ingest", body)));
    // Its body, sent now, is not read while it waits.
    waiting_tx.send(Ok(line("c-waiting"))).await.unwrap();
    drop(waiting_tx);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(800), &mut waiting)
            .await
            .is_err(),
        "the thirteenth waits"
    );
    let res = a
        .app
        .clone()
        .oneshot(upload("sorting", Body::from(line("c-other2"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // One of the twelve ends: the thirteenth takes its place and goes
    // through.
    let (tx, call) = more.pop().unwrap();
    tx.send(Ok(line("c-more-last"))).await.unwrap();
    drop(tx);
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    // The rest finished at once, before they turn slow.
    let mut calls = Vec::new();
    for (i, (tx, call)) in more.into_iter().enumerate() {
        tx.send(Ok(line(&format!("c-more{i}")))).await.unwrap();
        drop(tx);
        calls.push(call);
    }
    let res = tokio::time::timeout(std::time::Duration::from_secs(15), waiting)
        .await
        .expect("the thirteenth goes once one has ended")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    // Sixteen one-line uploads of one principal at once, bodies sent with
    // their requests, beside their four slow ones: those past their share
    // wait their turn, and every one goes through.
    let burst: Vec<_> = (0..postvault_server::MAX_UPLOADS)
        .map(|i| {
            tokio::spawn(
                a.app
                    .clone()
                    .oneshot(upload("ingest", Body::from(line(&format!("c-burst{i}"))))),
            )
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    // The four slow ones finish as they would have.
    for (i, (tx, call)) in slow.into_iter().enumerate() {
        tx.send(Ok(line(&format!("c-slow{i}")))).await.unwrap();
        drop(tx);
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

mod malformed {
    use super::*;
    use proptest::prelude::*;

    const TARGETS: &[(&str, &str)] = &[
        ("POST", "/v1/records"),
        ("POST", "/v1/subjects/cust-1/consent"),
        ("POST", "/v1/subjects/cust-1/corrections"),
        ("POST", "/v1/disclosures"),
        ("POST", "/v1/disclosures/x/approve"),
        ("POST", "/v1/disclosures/x/end"),
        ("POST", "/v1/holds"),
        ("GET", "/v1/subjects/cust-1"),
        ("GET", "/v1/log/entries"),
        ("GET", "/v1/log/proof/inclusion"),
        ("GET", "/log/tile/0/000"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Any bytes as a body, any junk in the query: never a 5xx, never a panic.
        #[test]
        fn no_body_or_query_makes_a_server_error(
            target in 0..TARGETS.len(),
            body in proptest::collection::vec(any::<u8>(), 0..400),
            query in "[a-z=&%0-9.~-]{0,40}",
            who in prop_oneof![Just("officer"), Just("ice"), Just("ingest")],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let a = SHARED.with(|s| s.clone());
            let (m, path) = TARGETS[target];
            let uri = format!("{path}?{query}");
            let status = rt.block_on(async {
                let mut req = Request::builder().method(m).uri(&uri);
                req = req.header("authorization", format!("Bearer {}", a.1[who]));
                a.0.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap().status()
            });
            prop_assert!(!status.is_server_error(), "{m} {uri} -> {status}");
        }
    }

    type Shared = (Router, Arc<std::collections::HashMap<&'static str, String>>);

    thread_local! {
        static SHARED: Shared = {
            let a = api();
            let dir = Box::leak(Box::new(a._dir));
            let _ = dir;
            (a.app, Arc::new(a.tokens))
        };
    }
}

/// Whether `s` describes a body by a named schema, a list of them, text,
/// bytes, or an explicit union: never a bare `{"type": "object"}`.
fn typed(s: &Value) -> bool {
    if s.get("$ref").is_some() {
        return true;
    }
    if let Some(items) = s.get("items") {
        return typed(items);
    }
    if let Some(alts) = s.get("oneOf").or_else(|| s.get("anyOf")) {
        return alts.as_array().unwrap().iter().any(typed);
    }
    matches!(s["type"].as_str(), Some("string" | "integer" | "boolean"))
}

/// The document names a schema for every body, lists the statuses every
/// endpoint can answer, and carries the loaded pack's purposes.
#[tokio::test]
async fn the_api_document_types_every_body_and_lists_every_status() {
    let a = api();
    let d = a.get("/openapi.json", Some("auditor")).await.json();
    let schemas = &d["components"]["schemas"];
    // What the vault keeps to itself is not in the document.
    let erase = &schemas["EraseReport"]["properties"];
    assert!(erase.get("pending_request").is_some() && erase.get("delayed").is_none());
    // A record's fields are an object (the vault passes them on as text).
    assert_eq!(
        schemas["ReadRecord"]["properties"]["fields"]["type"],
        "object"
    );
    for (path, item) in d["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            if let Some(body) = op.get("requestBody") {
                for (ct, c) in body["content"].as_object().unwrap() {
                    assert!(typed(&c["schema"]), "{at}: request {ct}: {}", c["schema"]);
                }
            }
            let responses = op["responses"].as_object().unwrap();
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{at} {status}"
                );
                for (ct, c) in r["content"].as_object().into_iter().flatten() {
                    assert!(typed(&c["schema"]), "{at} {status} {ct}: {}", c["schema"]);
                }
            }
            let public = op["security"] == json!([{}]);
            // `/health` is outside every limit: it answers 200 or nothing.
            let always: &[&str] = if path == "/health" {
                &["200"]
            } else if public {
                &["200", "429", "500", "503"]
            } else {
                &["200", "401", "429", "500", "503"]
            };
            for s in always {
                // An upload is outside the request timeout (its idle timer
                // cuts it: 400 `upload_incomplete`).
                if at == "post /v1/records" && *s == "503" {
                    continue;
                }
                assert!(
                    responses.contains_key(*s) || (*s == "200" && responses.contains_key("201")),
                    "{at} does not list {s}"
                );
            }
        }
    }
    // Every named schema is an object with properties, an enum or a union.
    for (name, s) in schemas.as_object().unwrap() {
        assert!(
            s.get("properties").is_some()
                || s.get("enum").is_some()
                || s.get("oneOf").is_some()
                || s.get("anyOf").is_some(),
            "schema {name} is bare: {s}"
        );
    }
    for name in [
        "ReadResponse",
        "CollectReport",
        "StepAnswer",
        "Package",
        "RequestView",
        "HoldView",
        "LogEntry",
        "ErrorBody",
        "SubjectReport",
        "TransparencyReport",
    ] {
        assert!(schemas.get(name).is_some(), "{name} missing");
    }
    // Arrays where the service answers arrays.
    for path in ["/v1/disclosures", "/v1/holds", "/v1/log/entries"] {
        let s =
            &d["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(s["type"], "array", "{path}: {s}");
    }
    // The loaded pack's purposes are the values `purpose` takes.
    let purposes: Vec<&str> = d["paths"]["/v1/subjects/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "purpose")
        .unwrap()["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(purposes.contains(&"delivery") && purposes.contains(&"immigration_enforcement"));
    assert_eq!(purposes.len(), 22);
}

/// What the document says of parameters, the server holds to.
#[tokio::test]
async fn parameters_are_checked_as_the_document_says() {
    let a = api();
    for uri in [
        "/v1/log/entries?start=0&start=1&end=2",
        "/v1/log/entries?start=9223372036854775808&end=9223372036854775809",
        "/v1/log/proof/inclusion?index=-1",
        "/v1/log/proof/consistency?old=0&new=1.5",
    ] {
        assert_eq!(
            a.get(uri, None).await.status,
            StatusCode::BAD_REQUEST,
            "{uri}"
        );
    }
    assert_eq!(
        a.get("/v1/subjects/cust-1/accounting?all=yes", Some("officer"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        a.get("/v1/subjects/cust-1/accounting?all=0", Some("officer"))
            .await
            .status,
        StatusCode::OK
    );
    // A subject id is at most 128 bytes: 64 characters of two bytes each
    // are one; 65 are not.
    let id = "%C3%A9".repeat(64);
    let r = a
        .get(
            &format!("/v1/subjects/{id}?purpose=delivery"),
            Some("sorting"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .get(
            &format!("/v1/subjects/{id}x?purpose=delivery"),
            Some("sorting"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A malformed tile path is no such tile.
    let r = a.get("/log/tile/%01", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Over HTTP too: the officer's `GET /v1/disclosures/{id}` opens the
/// instrument beside the pack's checks (one leaf), the requester's does
/// not; a step by a principal who may not act answers a real request and a
/// made-up id with the same status and body.
#[tokio::test]
async fn the_officers_view_and_steps_without_an_oracle_over_http() {
    let a = api();
    let r = a
        .post(
            "/v1/disclosures",
            Some("ice"),
            warrant("cust-9").to_string().as_bytes(),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = a
        .get(&format!("/v1/disclosures/{id}"), Some("officer"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let o = &r.json()["officer"];
    assert_eq!(o["instrument"]["court"]["docket"], "1");
    assert_eq!(o["instrument"]["signer"]["title"], "Special Agent");
    assert_eq!(o["instrument"]["subjects"][0]["id"], "cust-9");
    assert!(o["checks"].as_array().unwrap().len() > 20);
    assert!(!o["cannot_check"].as_array().unwrap().is_empty());
    let first = o["log_index"].as_u64().unwrap();
    let r = a
        .get(&format!("/v1/disclosures/{id}"), Some("officer"))
        .await;
    assert_eq!(r.json()["officer"]["log_index"].as_u64(), Some(first + 1));
    let r = a.get(&format!("/v1/disclosures/{id}"), Some("ice")).await;
    assert!(r.json().get("officer").is_none(), "{}", r.text());
    assert!(!r.text().contains("cust-9"));
    // The auditor may not approve: the same answer for any id.
    let strip = |v: Value| {
        let mut v = v;
        v["log_index"] = json!(0);
        v
    };
    let real = a
        .post(
            &format!("/v1/disclosures/{id}/approve"),
            Some("auditor"),
            b"",
        )
        .await;
    let fake = a
        .post(
            "/v1/disclosures/0196f3a2-7c41-7d2e-9a53-000000000000/approve",
            Some("auditor"),
            b"",
        )
        .await;
    assert_eq!(real.status, fake.status);
    assert_eq!(strip(real.json()), strip(fake.json()));
    assert_eq!(real.json()["reasons"][0]["code"], "not_permitted");
}

impl Api {
    async fn upload(&self, key: Option<&str>, body: Body) -> Answer {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/v1/records")
            .header(
                "authorization",
                format!("Bearer {}", self.tokens.get("ingest").unwrap()),
            );
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// `Idempotency-Key`: a resend of a finished upload gets the first answer
/// and stores nothing; other content under the same key is 422; a resend
/// while the first is still running is 409 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_with_an_idempotency_key_are_stored_once() {
    let api = api();
    let body = [address("idem-1", "1 Elm St"), address("idem-2", "2 Elm St")].join("\n");
    let first = api
        .upload(Some("\"batch-7\""), Body::from(body.clone()))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["run"]["id"], "batch-7");
    let again = api.upload(Some("batch-7"), Body::from(body.clone())).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let r = again.json();
    assert_eq!(
        (r["accepted"].as_u64(), r["run"]["replayed"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(r["leaves"], first.json()["leaves"]);
    let read = api
        .get("/v1/subjects/idem-1?purpose=delivery", Some("sorting"))
        .await;
    assert_eq!(read.json()["records"].as_array().unwrap().len(), 1);
    // Other content under the same key.
    let other = api
        .upload(Some("batch-7"), Body::from(address("idem-3", "3 Elm St")))
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json()["error"]["code"], "run_mismatch");
    // Not a key.
    let bad = api.upload(Some("\"\""), Body::from(body.clone())).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // A resend while the first is still sending.
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let slow = {
        let app = api.app.clone();
        let token = api.tokens.get("ingest").unwrap().clone();
        tokio::spawn(async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/v1/records")
                .header("authorization", format!("Bearer {token}"))
                .header("idempotency-key", "batch-8")
                .body(Body::from_stream(stream))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        })
    };
    tx.send(axum::body::Bytes::from(
        address("idem-4", "4 Elm St") + "\n",
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let busy = api.upload(Some("batch-8"), Body::from("")).await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text());
    assert_eq!(busy.json()["error"]["code"], "run_in_progress");
    assert_eq!(busy.headers.get("retry-after").unwrap(), "1");
    drop(tx);
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
}

/// Records whose keys are missing answer 500 `keys_missing` with a message
/// saying what to run, naming neither the person nor a count (the service
/// log has it), not an empty 200.
#[tokio::test]
async fn records_without_keys_answer_500_keys_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let v = Vault::init(&path, OpenOptions::default()).unwrap();
    let ingest = v.add_principal("ingest", "collector").unwrap();
    let sorting = v.add_principal("sorting", "delivery").unwrap();
    let p = v.principal("ingest").unwrap();
    v.collect(
        &p,
        &mut address("lost-1", "1 Elm St").as_bytes(),
        &postvault::CollectOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    drop(v);
    let c = rusqlite::Connection::open(path.join("keys.db")).unwrap();
    c.execute("DELETE FROM subject_keys", []).unwrap();
    drop(c);
    let v = Vault::open(&path, OpenOptions::default()).unwrap();
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("ingest", ingest);
    tokens.insert("sorting", sorting);
    let vault = Arc::new(v);
    let api = Api {
        _dir: dir,
        app: postvault_server::router(AppState::new(vault.clone(), Config::default())),
        vault,
        tokens,
    };
    let r = api
        .get("/v1/subjects/lost-1?purpose=delivery", Some("sorting"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "keys_missing");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("postvault check"), "{msg}");
    assert!(
        !msg.contains("lost-1") && !msg.contains("/tmp") && !msg.contains('1'),
        "{msg}"
    );
}

/// Two service nodes over one vault: `b` a second open of `a`'s stores.
/// Returns the nodes and the tokens of the principals made through `a`.
fn two_nodes(
    a: Vault,
    b: Vault,
) -> (
    Router,
    Router,
    std::collections::HashMap<&'static str, String>,
) {
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [
        ("officer", "privacy_officer"),
        ("sorting", "delivery"),
        ("care", "account_service"),
        ("ice", "agency"),
    ] {
        tokens.insert(name, a.add_principal(name, role).unwrap());
    }
    let node = |v: Vault| postvault_server::router(AppState::new(Arc::new(v), Config::default()));
    (node(a), node(b), tokens)
}

async fn status_of(app: &Router, method: Method, uri: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Polls `node` with `token` until it is refused; the time that took.
async fn refused_within(node: &Router, token: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let (s, _) = status_of(
            node,
            Method::GET,
            "/v1/subjects/cust-1?purpose=delivery",
            token,
        )
        .await;
        if s == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert_eq!(s, StatusCode::OK);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "never refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Revocation and rotation through node `na` reach node `nb`, which had the
/// tokens cached, within a second; only an officer may do either, each is
/// one leaf, and a step on an unknown or revoked principal is refused.
fn revocation_reaches_every_node(a: Vault, b: Vault) {
    let (na, nb, t) = two_nodes(a, b);
    // The nodes (and their stores' own runtimes) live outside this one.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(revocation_reaches(&na, &nb, &t));
    drop(rt);
}

async fn revocation_reaches(
    na: &Router,
    nb: &Router,
    t: &std::collections::HashMap<&'static str, String>,
) {
    let read = "/v1/subjects/cust-1?purpose=delivery";
    for node in [na, nb] {
        for who in ["sorting", "care"] {
            assert_eq!(
                status_of(node, Method::GET, read, &t[who]).await.0,
                StatusCode::OK
            );
        }
    }
    // Neither a service nor an agency may revoke anyone.
    for who in ["sorting", "ice"] {
        let (s, v) = status_of(na, Method::POST, "/v1/principals/care/revoke", &t[who]).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_permitted"))
        );
    }
    let (s, v) = status_of(
        na,
        Method::POST,
        "/v1/principals/sorting/revoke",
        &t["officer"],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    assert!(v["log_index"].is_u64());
    assert_eq!(
        status_of(na, Method::GET, read, &t["sorting"]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let took = refused_within(nb, &t["sorting"]).await;
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    for name in ["sorting", "nobody"] {
        let (s, v) = status_of(
            na,
            Method::POST,
            &format!("/v1/principals/{name}/revoke"),
            &t["officer"],
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("principal_not_active"))
        );
    }

    // Rotation: a principal rotates its own token; the old one goes
    // everywhere within a second, the new works. Nobody else (an officer
    // neither) is handed it.
    let (s, v) = status_of(
        nb,
        Method::POST,
        "/v1/principals/care/rotate",
        &t["officer"],
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rotate_own_token_only")),
        "{v}"
    );
    assert!(v.get("token").is_none());
    let (s, v) = status_of(nb, Method::POST, "/v1/principals/care/rotate", &t["care"]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new = v["token"].as_str().unwrap().to_string();
    assert_ne!(new, t["care"]);
    let took = refused_within(na, &t["care"]).await;
    assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    for node in [na, nb] {
        assert_eq!(
            status_of(node, Method::GET, read, &new).await.0,
            StatusCode::OK
        );
        assert_eq!(
            status_of(node, Method::GET, read, &t["care"]).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}

/// An officer who could receive another principal's new token could submit
/// as an agency and approve as themself: over HTTP a principal rotates only
/// its own token. Refused with a code and one deny leaf (whether the name
/// exists or not: the answer is the same), the target's token keeps working.
#[tokio::test]
async fn an_officer_cannot_rotate_another_principals_token() {
    let a = api();
    async fn entries(a: &Api) -> Vec<Value> {
        let r = a.get("/v1/log/entries?start=0&end=1000", None).await;
        r.json().as_array().unwrap().clone()
    }
    async fn log_size(a: &Api) -> usize {
        entries(a).await.len()
    }
    async fn last_entry(a: &Api) -> Value {
        entries(a).await.last().unwrap()["event"].clone()
    }
    let read = "/v1/subjects/cust-1?purpose=delivery";
    let mut answers = Vec::new();
    for target in ["ice", "sorting", "nobody"] {
        let leaves_before = log_size(&a).await;
        let r = a
            .post(
                &format!("/v1/principals/{target}/rotate"),
                Some("officer"),
                b"",
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let body = r.json();
        assert_eq!(body["error"]["code"], "rotate_own_token_only");
        assert!(body.get("token").is_none(), "{body}");
        assert!(!r.text().contains(&format!("`{target}`")), "{}", r.text());
        answers.push(r.text());
        assert_eq!(log_size(&a).await, leaves_before + 1, "one deny leaf");
        let leaf = last_entry(&a).await;
        assert_eq!(leaf["action"], "principal_rotate");
        assert_eq!(leaf["decision"], "deny");
        assert_eq!(leaf["principal"]["role"], "privacy_officer");
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // The agency's and the service's tokens still work.
    assert_eq!(a.get(read, Some("sorting")).await.status, StatusCode::OK);
    // Each principal rotates its own, any role: the agency too.
    let r = a.post("/v1/principals/ice/rotate", Some("ice"), b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let new = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(new, a.tokens["ice"]);
    assert_eq!(
        r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let leaf = last_entry(&a).await;
    assert_eq!(
        (leaf["action"].as_str(), leaf["decision"].as_str()),
        (Some("principal_rotate"), Some("allow"))
    );
    assert_eq!(leaf["principal"]["role"], "agency");
    let old = a.get("/v1/disclosures", Some("ice")).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let fresh = a.get("/v1/disclosures", Some(new.as_str())).await;
    assert_ne!(fresh.status, StatusCode::UNAUTHORIZED, "{}", fresh.text());
}

#[test]
fn a_revoked_or_rotated_token_is_refused_by_another_node_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("vault");
    let a = Vault::init(&at, OpenOptions::default()).unwrap();
    let b = Vault::open(&at, OpenOptions::default()).unwrap();
    revocation_reaches_every_node(a, b);
}

#[test]
fn a_revoked_or_rotated_token_is_refused_by_another_postgres_node_within_a_second() {
    use postvault_store_pg::{ClusterOptions, PgKeyStore, PgOptions, PgStore, TempCluster};
    let cluster = TempCluster::shared(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("the PostgreSQL test needs a server: {e}"));
    let url = cluster.url("postgres");
    let opts = |create| PgOptions {
        schema: "pv_principals".into(),
        keys_schema: "pv_principals_keys".into(),
        create,
        ..PgOptions::default()
    };
    let open = |create: bool| {
        let o = opts(create);
        (
            PgStore::open(&url, &o).unwrap(),
            PgKeyStore::open(&url, &o).unwrap(),
        )
    };
    let (s, k) = open(true);
    let at = std::path::Path::new(&url);
    let a = Vault::init_with(at, Box::new(s), Box::new(k), OpenOptions::default()).unwrap();
    let (s, k) = open(false);
    let b = Vault::open_with(at, Box::new(s), Box::new(k), OpenOptions::default()).unwrap();
    revocation_reaches_every_node(a, b);
}

#[tokio::test]
async fn subject_ids_with_invisible_characters_are_refused_on_every_path() {
    let a = api();
    for path in [
        "/v1/subjects/cust-1%EF%BB%BF?purpose=delivery",
        "/v1/subjects/cust-1%E2%80%8B/report",
        "/v1/subjects/%E2%80%AEcust-1/accounting",
    ] {
        let who = if path.contains("purpose") {
            "sorting"
        } else {
            "officer"
        };
        let r = a.get(path, Some(who)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_subject_id");
        assert!(!r.text().contains("cust"));
    }
    for (path, body) in [
        (
            "/v1/subjects/cust-1%E2%81%A0/consent",
            json!({"purpose": "marketing", "granted": true}),
        ),
        ("/v1/subjects/cust-1%E2%80%8D/erase", json!({})),
    ] {
        let r = a
            .post(path, Some("officer"), body.to_string().as_bytes())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_subject_id");
        assert!(!r.text().contains("cust"));
    }
    // And a collection line naming one is rejected alone.
    let bad = address("cust-1\u{feff}", "1 Elm St");
    let r = a.post("/v1/records", Some("ingest"), bad.as_bytes()).await;
    assert_eq!(
        r.json()["errors"][0]["code"],
        "invalid_subject",
        "{}",
        r.text()
    );
}

/// A witness that cannot be reached.
struct Down;

impl postvault::Witness for Down {
    fn add_checkpoint(
        &self,
        _: u64,
        _: &[[u8; 32]],
        _: &str,
    ) -> Result<String, postvault::WitnessCallError> {
        Err(postvault::WitnessCallError::Unavailable(
            "connection refused".into(),
        ))
    }
}

/// With witnesses, the public checkpoint is the latest final one, with
/// the cosignature lines, and never signed or cosigned on a request; until
/// a quorum cosigned one, 503 `no_final_checkpoint`.
#[tokio::test]
async fn with_witnesses_the_public_checkpoint_is_the_latest_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::init(&dir.path().join("vault"), OpenOptions::default()).unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let w = Arc::new(
        postvault_witness::Cosigner::create(&wdir.path().join("w.db"), "w.example").unwrap(),
    );
    let key = v.log_verifier_key();
    w.add_log(key.split('+').next().unwrap(), &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(postvault_server::serve_witness(
        listener,
        w.clone(),
        std::future::pending::<()>(),
    ));
    let verifier = postvault_log::CosignatureVerifier::new(&w.verifier_key()).unwrap();
    let policy = move |up: bool| postvault::WitnessPolicy {
        witnesses: vec![postvault::ConfiguredWitness {
            verifier: verifier.clone(),
            client: if up {
                postvault_server::http_witness(&url, std::time::Duration::from_secs(5)).unwrap()
            } else {
                Arc::new(Down)
            },
        }],
        quorum: 1,
    };
    v.add_principal("ingest", "collector").unwrap();
    let v = Arc::new(v.with_witnesses(policy(false)).unwrap());
    let app = postvault_server::router(AppState::new(v.clone(), Config::default()));
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
            (status, String::from_utf8(body).unwrap())
        }
    };
    let (status, body) = get("/v1/log/checkpoint").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("no_final_checkpoint"));
    assert_eq!(
        v.store().checkpoints().unwrap().len(),
        0,
        "a request signs nothing"
    );
    // A round with the witness down: signed, pending.
    let v2 = v.clone();
    let r = tokio::task::spawn_blocking(move || v2.cosign().unwrap())
        .await
        .unwrap();
    assert!(!r.checkpoint.is_final);
    let (_, body) = get("/v1/log/witnesses").await;
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["pending"], true);
    assert_eq!(s["final"], Value::Null);
    drop(app);
    // The witness up (over HTTP): final, and served with its line.
    let v = Arc::try_unwrap(v).ok().unwrap();
    let up = policy.clone();
    let v = Arc::new(
        tokio::task::spawn_blocking(move || v.with_witnesses(up(true)).unwrap())
            .await
            .unwrap(),
    );
    let v2 = v.clone();
    let r = tokio::task::spawn_blocking(move || v2.cosign().unwrap())
        .await
        .unwrap();
    assert!(r.checkpoint.is_final);
    let app = postvault_server::router(AppState::new(v.clone(), Config::default()));
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/v1/log/checkpoint")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let note =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let checked = postvault_log::verify_cosigned(
        &note,
        &key,
        &[postvault_log::CosignatureVerifier::new(&w.verifier_key()).unwrap()],
    )
    .unwrap();
    assert_eq!(checked.cosigned.len(), 1);
    assert_eq!(checked.checkpoint.size, r.checkpoint.size);
    tokio::task::spawn_blocking(move || drop(v)).await.unwrap();
}

/// A witness (or anyone on a plain-HTTP path to one) answering every
/// submission with `409 text/x.tlog.size 999999`: an unsigned claim. With a
/// quorum of 1 of 2 and the other witness real, the log goes on: the
/// checkpoint is final with the real cosignature, the liar is counted as
/// failed with its claim quoted as unverified, and later rounds, and a new
/// process that probes both witnesses first, still sign.
#[tokio::test]
async fn one_witness_claiming_a_larger_tree_does_not_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("vault");
    let v = Vault::init(&at, OpenOptions::default()).unwrap();
    v.add_principal("ingest", "collector").unwrap();
    let key = v.log_verifier_key();
    // The real witness, over HTTP.
    let wdir = tempfile::tempdir().unwrap();
    let real = Arc::new(
        postvault_witness::Cosigner::create(&wdir.path().join("w.db"), "real.example").unwrap(),
    );
    real.add_log(key.split('+').next().unwrap(), &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(postvault_server::serve_witness(
        listener,
        real.clone(),
        std::future::pending::<()>(),
    ));
    // The liar: its own key (so it is a configured witness), and one answer.
    let liar_key = {
        let ldir = tempfile::tempdir().unwrap();
        postvault_witness::Cosigner::create(&ldir.path().join("l.db"), "liar.example")
            .unwrap()
            .verifier_key()
    };
    let liar = Router::new().route(
        "/add-checkpoint",
        axum::routing::post(|| async {
            (
                StatusCode::CONFLICT,
                [(axum::http::header::CONTENT_TYPE, "text/x.tlog.size")],
                "999999\n",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, liar).await });
    let policy = {
        let (real_key, liar_key) = (real.verifier_key(), liar_key.clone());
        move || postvault::WitnessPolicy {
            witnesses: [(&real_url, &real_key), (&liar_url, &liar_key)]
                .into_iter()
                .map(|(url, k)| postvault::ConfiguredWitness {
                    verifier: postvault_log::CosignatureVerifier::new(k).unwrap(),
                    client: postvault_server::http_witness(url, std::time::Duration::from_secs(5))
                        .unwrap(),
                })
                .collect(),
            quorum: 1,
        }
    };
    let line = address("cust-1", "1 Elm St");
    let collect = move |v: &Vault| {
        let p = v.principal("ingest").unwrap();
        v.collect(
            &p,
            &mut line.as_bytes(),
            &postvault::CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    };
    let p2 = policy.clone();
    let collect2 = collect.clone();
    let (v, sizes) = tokio::task::spawn_blocking(move || {
        let v = v.with_witnesses(p2()).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            collect(&v);
            let r = v
                .cosign()
                .expect("one witness's claim does not stop the log");
            assert!(r.checkpoint.is_final, "{r:?}");
            assert_eq!(r.checkpoint.cosigners.len(), 1);
            let lied = r
                .witnesses
                .iter()
                .find(|w| w.witness.starts_with("liar.example"))
                .unwrap();
            assert!(!lied.cosigned);
            let e = lied.error.as_deref().unwrap();
            assert!(e.contains("999999") && e.contains("not verified"), "{e}");
            assert!(!e.contains("has cosigned"), "{e}");
            sizes.push(r.checkpoint.size);
        }
        (v, sizes)
    })
    .await
    .unwrap();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    // A new process probes both witnesses before its first signature: the
    // claim alone refuses nothing.
    let p3 = policy.clone();
    let last = tokio::task::spawn_blocking(move || {
        drop(v);
        let v = Vault::open(&at, OpenOptions::default())
            .unwrap()
            .with_witnesses(p3())
            .unwrap();
        collect2(&v);
        let note = v.checkpoint().expect("signs despite the claim");
        let r = v.cosign().unwrap();
        assert!(r.checkpoint.is_final);
        assert!(note.contains(&format!("\n{}\n", r.checkpoint.size)));
        r.checkpoint.size
    })
    .await
    .unwrap();
    assert!(last > sizes[2]);
    assert_eq!(real.logs().unwrap()[0].size, Some(last));
}
