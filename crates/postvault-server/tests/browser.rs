//! The pages in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them).
//! The service runs in process on a loopback port with a vault whose clock
//! the test moves. Every page visited is saved as a screenshot under
//! `target/browser-screenshots/` for a reviewer.
//!
//! The 2025 scenario end to end: the agency submits over the API; the
//! officer signs in, works the queue, opens the court order, narrows its
//! portions and approves; the agency fetches over the API; the person signs
//! in with a mailed code, sees the disclosure once the delay ends, sees
//! every proof verified in their browser (and a tampered one fail), gives
//! and withdraws a consent, asks to be erased; the officer grants it; the
//! person's session and codes no longer work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use postvault::{Clock as _, FixedClock, OpenOptions, Vault};
use postvault_server::{AppState, Config};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
const PERSON: &str = "cust-000000000042";

/// A chromedriver process, ended with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Browser {
    client: Client,
    _driver: Driver,
    profile: tempfile::TempDir,
    shots: PathBuf,
    n: usize,
    base: String,
}

/// A failed test never reaches `close`: the browser it started (a child of
/// ChromeDriver, which outlives it) is ended by its profile directory.
impl Drop for Browser {
    fn drop(&mut self) {
        // `--` first: the pattern itself starts with dashes.
        let _ = Command::new("pkill")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Browser {
    async fn start(base: &str, name: &str) -> Browser {
        let driver_bin =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&driver_bin).exists() && std::path::Path::new(&chromium).exists(),
            "the browser tests need Chromium and ChromeDriver ({chromium}, {driver_bin}): \
             `apt-get install chromium chromium-driver` (.ci/run installs them), or set CHROMIUM and CHROMEDRIVER"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver(child);
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut client = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let client = client.expect("chromedriver did not answer within 10 s");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/browser-screenshots")
            .join(name);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            _driver: driver,
            profile,
            shots,
            n: 0,
            base: base.to_string(),
        }
    }

    /// Opens `path` and checks the page: a screenshot, every form control
    /// labelled, no person's identifier in the address.
    async fn visit(&mut self, path: &str, shot: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
        self.check(shot).await;
    }

    /// The checks of whatever page is shown now.
    async fn check(&mut self, shot: &str) {
        self.n += 1;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{:02}-{shot}.png", self.n)), png).unwrap();
        let url = self.client.current_url().await.unwrap();
        assert!(
            !url.as_str().contains(PERSON),
            "a person's identifier in a URL: {url}"
        );
        // Every visible control has a label (or an accessible name).
        let unlabelled = self
            .client
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
                   .map(e => e.name || e.id);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "controls without a label on {shot}");
        let nameless = self
            .client
            .execute(
                "return [...document.querySelectorAll('button')].filter(b => !b.textContent.trim()).length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(nameless, json!(0), "buttons without a name on {shot}");
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Waits until the browser shows `path`; the page it shows instead
    /// otherwise, in the failure.
    async fn wait_for_path(&mut self, path: &str) {
        for _ in 0..100 {
            if self.path().await == path {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.check("wait-failed").await;
        panic!(
            "still on {} instead of {path}: {}",
            self.path().await,
            self.text().await
        );
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }
}

/// The API as the agency and the officer use it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn day(ms: i64) -> String {
    postvault::format_ms(ms)[..10].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2025_scenario_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(postvault::SystemClock.now_ms()));
    let vault = Vault::init(
        &dir.path().join("vault"),
        OpenOptions {
            pack: None,
            clock: clock.clone(),
            master_key: None,
        },
    )
    .unwrap();
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [
        ("ingest", "collector"),
        ("officer", "privacy_officer"),
        ("ice-ero", "agency"),
    ] {
        tokens.insert(name, vault.add_principal(name, role).unwrap());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(Arc::new(vault), Config::default());
    tokio::spawn(postvault_server::serve(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
    };

    // The person's records, collected over the API.
    let now = clock.now_ms();
    let mut lines = vec![
        json!({"subject": PERSON, "category": "address", "purpose": "forwarding",
        "fields": {"street": "7318 Mill St", "unit": "Apt 11", "city": "Portland", "state": "OR", "zip": "97254-4839"}}),
    ];
    for i in 0..30 {
        lines.push(json!({"subject": PERSON, "category": "scan_event", "purpose": "delivery",
            "fields": {"imb": format!("02300112379122066134328509984{i:02}"), "piece": "letter", "facility_zip": "02199",
                       "op_code": "015", "event": "accepted", "scanned_at": postvault::format_ms(now - (i + 1) * 3_600_000)}}));
    }
    let ndjson = lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (st, rep) = api
        .call(
            reqwest::Method::POST,
            "/v1/records",
            &tokens["ingest"],
            Some(ndjson),
        )
        .await;
    assert_eq!(st, 200, "{rep}");
    assert_eq!(rep["accepted"], 31, "{rep}");

    // The agency's requests: one court order with its notice delayed 60 days,
    // and a written request with no court behind it.
    let order = json!({
        "kind": "court_order", "instrument_id": "26-MJ-0417", "agency": "Homeland Security Investigations",
        "signer": {"name": "Assistant U.S. Attorney", "title": "Assistant United States Attorney", "level": "agent"},
        "authority": "5 U.S.C. 552a(b)(11); 39 CFR 265.14(d)(5)(iii)", "ground": "criminal_law_enforcement",
        "case_id": "HSI-CH-26-0417", "subjects": [{"id": PERSON}], "portions": ["address", "scan_event"],
        "time_range": {"from": day(now - 30 * DAY), "to": day(now)}, "issued_at": day(now),
        "expires_at": day(now + 90 * DAY), "delay_notice_until": day(now + 60 * DAY),
        "court": {"name": "U.S. District Court for the Northern District of Illinois", "docket": "1:26-mj-00417",
                  "judge": "Magistrate Judge", "order_date": day(now)}
    });
    let (st, submitted) = api
        .call(
            reqwest::Method::POST,
            "/v1/disclosures",
            &tokens["ice-ero"],
            Some(order.to_string()),
        )
        .await;
    assert_eq!(st, 201, "{submitted}");
    let order_id = submitted["id"].as_str().unwrap().to_string();
    let written = json!({
        "kind": "written_request", "instrument_id": "ERO-2025-0001", "agency": "Immigration and Customs Enforcement",
        "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
        "authority": "8 U.S.C. 1357; 5 U.S.C. 552a(b)(7)", "ground": "civil_law_enforcement", "case_id": "A200000001",
        "subjects": [{"id": PERSON}], "portions": ["address"],
        "time_range": {"from": day(now - 90 * DAY), "to": day(now)}, "issued_at": day(now)
    });
    let (st, w) = api
        .call(
            reqwest::Method::POST,
            "/v1/disclosures",
            &tokens["ice-ero"],
            Some(written.to_string()),
        )
        .await;
    assert_eq!(st, 201, "{w}");

    let mut b = Browser::start(&base, "the_2025_scenario").await;

    // The public page.
    b.visit("/", "public").await;
    let t = b.text().await;
    assert!(t.contains("Requests from outside agencies"), "{t}");
    assert!(t.contains("The transparency log"), "{t}");
    let charts = b
        .client
        .find_all(Locator::Css("figure.chart svg[role=img]"))
        .await
        .unwrap();
    assert!(
        charts.len() >= 2,
        "charts on the public page: {}",
        charts.len()
    );

    // The officer signs in with the keyboard (Enter submits).
    b.visit("/office/", "office-login").await;
    assert_eq!(b.path().await, "/office/login");
    b.type_into("#token", &format!("{}\u{E007}", tokens["officer"]))
        .await;
    b.wait_for_path("/office/").await;
    b.check("office-queue").await;
    let t = b.text().await;
    assert!(t.contains(&order_id), "the court order in the queue: {t}");
    assert!(t.contains(w["id"].as_str().unwrap()), "{t}");

    // The court order opened beside the checks; scan events unticked.
    b.click(&format!("a[href='/office/requests/{order_id}']"))
        .await;
    b.check("office-request").await;
    let t = b.text().await;
    assert!(
        t.contains("26-MJ-0417") && t.contains("1:26-mj-00417"),
        "the instrument in full: {t}"
    );
    assert!(t.contains("What the policy cannot check"), "{t}");
    b.click("input[name=portion][value=scan_event]").await;
    b.click("#approve").await;
    b.check("office-approved").await;
    let t = b.text().await;
    assert!(t.contains("the request is now approved"), "{t}");

    // A legal hold on the approved order, listed and released from the
    // console.
    let (st, hold) = api
        .call(
            reqwest::Method::POST,
            "/v1/holds",
            &tokens["officer"],
            Some(json!({"request": order_id}).to_string()),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {hold}");
    let hold_id = hold["id"].as_str().unwrap().to_string();
    b.visit("/office/holds", "office-holds").await;
    assert!(b.text().await.contains(&hold_id));
    b.click(&format!(
        "form[action='/office/holds/{hold_id}/release'] button"
    ))
    .await;
    b.check("office-hold-released").await;
    assert!(
        b.text().await.contains("is now released"),
        "{}",
        b.text().await
    );

    // The written request (no court behind it): refused with a reason the
    // agency reads.
    let written_id = w["id"].as_str().unwrap().to_string();
    b.visit("/office/", "office-queue-after").await;
    b.click(&format!("a[href='/office/requests/{written_id}']"))
        .await;
    b.check("office-written-request").await;
    b.client
        .find(Locator::Css(
            "#refuse-reason option[value=not_particularized]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("#refuse").await;
    b.check("office-refused").await;
    assert!(b.text().await.contains("the request is now refused"));
    let (_, seen) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/disclosures/{written_id}"),
            &tokens["ice-ero"],
            None,
        )
        .await;
    assert_eq!(
        seen["reasons"],
        json!(["refused_by_officer", "not_particularized"]),
        "{seen}"
    );

    // The agency fetches over the API: the address only.
    let (st, pkg) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/disclosures/{order_id}/fetch"),
            &tokens["ice-ero"],
            None,
        )
        .await;
    assert_eq!(st, 200, "{pkg}");
    assert_eq!(pkg["portions"], json!(["address"]), "{pkg}");
    let cats: Vec<&str> = pkg["subjects"][0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["category"].as_str().unwrap())
        .collect();
    assert!(
        !cats.is_empty() && cats.iter().all(|c| *c == "address"),
        "{cats:?}"
    );

    // The person signs in with a mailed code.
    let (st, code) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/subjects/{PERSON}/access-code"),
            &tokens["officer"],
            None,
        )
        .await;
    assert_eq!(st, 200, "{code}");
    let code = code["code"].as_str().unwrap().to_string();
    b.visit("/me/", "me-login").await;
    assert_eq!(b.path().await, "/me/login");
    b.type_into("#code", &code.to_lowercase()).await;
    b.click("form[action='/me/login'] button").await;
    b.check("me-held").await;
    assert_eq!(b.path().await, "/me/");
    let t = b.text().await;
    assert!(
        t.contains("Summary") && t.contains("scan event") && t.contains("7318 Mill St"),
        "{t}"
    );
    // One table per category, a row per record: 30 scans, 20 on this page.
    let scan_rows = b
        .client
        .find_all(Locator::Css("#cat-scan_event + table tbody tr"))
        .await
        .unwrap();
    assert_eq!(scan_rows.len(), 20);

    // The disclosure is hidden while the court's delay stands...
    b.visit("/me/disclosures", "me-disclosures-delayed").await;
    assert!(!b.text().await.contains("Homeland Security Investigations"));
    // ...and shown once it ends.
    clock.advance(61 * DAY);
    b.visit("/me/disclosures", "me-disclosures").await;
    let t = b.text().await;
    assert!(t.contains("Homeland Security Investigations"), "{t}");

    // Who looked: every proof checked in the browser.
    b.visit("/me/log", "me-log-checking").await;
    b.client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("body[data-proofs=done]"))
        .await
        .expect("the proofs were not checked in the browser");
    b.check("me-log").await;
    let summary = b
        .client
        .find(Locator::Id("proofs-summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        summary.starts_with("All ") && summary.contains("verified in your browser"),
        "{summary}"
    );
    let cells = b
        .client
        .find_all(Locator::Css("td[data-leaf]"))
        .await
        .unwrap();
    assert!(cells.len() >= 5, "leaves about the person: {}", cells.len());
    for c in &cells {
        assert_eq!(c.attr("class").await.unwrap().as_deref(), Some("ok"));
    }
    // The same code over the vault's own proofs, tampered: each alteration fails.
    let tampered = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const m = await import('/assets/verify.js');
               const report = await (await fetch('/me/proofs.json')).json();
               const flip = s => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
               const out = {};
               const honest = await m.checkAll(report);
               out.honest = honest.results.every(r => r.ok);
               const a = structuredClone(report);
               const withPath = a.log.findIndex(e => e.proof.hashes.length > 0);
               a.log[withPath].proof.hashes[0] = flip(a.log[withPath].proof.hashes[0]);
               out.path = (await m.checkAll(a)).results[withPath].ok;
               const l = structuredClone(report);
               l.log[0].leaf = btoa(atob(l.log[0].leaf) + ' ');
               out.leaf = (await m.checkAll(l)).results[0].ok;
               const c = structuredClone(report);
               c.checkpoint = c.checkpoint.replace(/\\n(\\d+)\\n/, (_, n) => '\\n' + (Number(n) + 1) + '\\n');
               try { await m.checkAll(c); out.checkpoint = true; } catch (e) { out.checkpoint = false; }
               return out;
             })().then(done, e => done({error: String(e)}));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        tampered,
        json!({"honest": true, "path": false, "leaf": false, "checkpoint": false}),
        "the browser's checks of altered proofs"
    );

    // The key to their entries, reached from the log page's link, with the
    // command that scans the whole public log.
    b.visit("/me/log", "me-log-again").await;
    b.click("a[href='/me/log-key']").await;
    b.wait_for_path("/me/log-key").await;
    b.check("me-log-key").await;
    let t = b.text().await;
    assert!(
        t.contains("postvault log scan") && t.contains("--min-size"),
        "{t}"
    );

    // Choices: give, then withdraw, consent to marketing.
    b.visit("/me/choices", "me-choices").await;
    b.click("form.choice:has(input[value=marketing]) button")
        .await;
    b.check("me-consent-given").await;
    assert!(b.text().await.contains("marketing: you agreed"));
    b.click("form.choice:has(input[value=marketing]) button")
        .await;
    b.check("me-consent-withdrawn").await;
    assert!(b.text().await.contains("marketing: not agreed"));

    // A correction of the address: asked by the person, seen and granted by
    // the office, shown to the person (once their page reads anew).
    let street = b
        .client
        .find(Locator::Id("fix-address-street"))
        .await
        .unwrap();
    street.clear().await.unwrap();
    street.send_keys("9 Corrected Rd").await.unwrap();
    b.click("form.correct:has(input[value=address]) button")
        .await;
    b.check("me-correction-requested").await;
    assert!(b.text().await.contains("correction of address"));
    b.visit("/office/rights", "office-correction").await;
    let t = b.text().await;
    assert!(
        t.contains("correction request") && t.contains("9 Corrected Rd"),
        "{t}"
    );
    b.click("section.rights-request:has(table.proposed) form[action$='/grant'] button")
        .await;
    b.check("office-correction-granted").await;
    assert!(b.text().await.contains("is now granted"));
    clock.advance(20_000);
    b.visit("/me/", "me-corrected").await;
    let t = b.text().await;
    assert!(
        t.contains("9 Corrected Rd") && t.contains("replaced by a correction"),
        "{t}"
    );
    b.visit("/me/choices", "me-choices-after-correction").await;

    // A second code, mailed before the erasure, must not work after it.
    let (_, second) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/subjects/{PERSON}/access-code"),
            &tokens["officer"],
            None,
        )
        .await;
    let second = second["code"].as_str().unwrap().to_string();

    // The person asks to be erased.
    b.click("#confirm").await;
    b.click("form[action='/me/erase'] button").await;
    b.check("me-erasure-requested").await;
    let status = b
        .client
        .find(Locator::Css("table.requests td.status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "pending");

    // The officer grants it.
    b.visit("/office/rights", "office-rights").await;
    b.click("form[action$='/grant'] button").await;
    b.check("office-rights-granted").await;
    assert!(b.text().await.contains("is now granted"));

    // The person's session has ended, and their other code opens nothing.
    b.visit("/me/", "me-after-erasure").await;
    assert_eq!(b.path().await, "/me/login");
    assert!(b.text().await.contains("session has ended"));
    b.type_into("#code", &second).await;
    b.click("form[action='/me/login'] button").await;
    b.check("me-code-refused").await;
    assert!(b.text().await.contains("does not open anything"));

    b.client.clone().close().await.unwrap();
}
