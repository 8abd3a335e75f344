//! `postvault-bench pages`: what the pages cost. Render latency of each page
//! of the public site, the office's console and a person's portal on a
//! demo-sized vault over loopback HTTP (sequential requests, so a figure
//! is one page's own time); the office's queue with many requests waiting;
//! and, in headless Chromium over WebDriver, the time the person's browser
//! takes to check every proof of their log page.

use std::io::BufReader;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};
use postvault_sim::LinesReader;

use crate::paths::{bench_dir, percentile, simulated, subjects_of};

#[derive(Args, Debug)]
pub struct PagesArgs {
    /// Simulated records collected first (the demo vault holds about 7K).
    #[arg(long, default_value_t = 7_000)]
    pub records: u64,
    /// Requests per page measured.
    #[arg(long, default_value_t = 200)]
    pub iterations: u64,
    /// Disclosure requests waiting in the office's queue for its figure.
    #[arg(long, default_value_t = 10_000)]
    pub pending: u64,
    /// Log entries about the person whose proofs the browser checks.
    #[arg(long, default_value_t = 100)]
    pub proofs: u64,
    /// Skip the browser figure (no Chromium here).
    #[arg(long)]
    pub no_browser: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the temporary vault (default: the system's).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

struct Site {
    http: reqwest::Client,
    base: String,
}

impl Site {
    async fn get(&self, path: &str, cookie: &str) -> Result<(u16, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.text().await?))
    }

    /// A session cookie from a sign-in form.
    async fn sign_in(&self, path: &str, field: &str, secret: &str) -> Result<String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{field}={secret}"))
            .send()
            .await?;
        let c = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("{path} set no session ({})", r.status()))?;
        Ok(c.split(';').next().unwrap_or("").to_string())
    }

    /// p50/p99 (ms) of `n` sequential renders of `path`.
    async fn measure(&self, path: &str, cookie: &str, n: u64) -> Result<serde_json::Value> {
        let mut lat = Vec::with_capacity(n as usize);
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let (status, body) = self.get(path, cookie).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                bail!("{path}: {status}");
            }
            bytes = body.len();
        }
        lat.sort_by(f64::total_cmp);
        Ok(serde_json::json!({
            "page": path, "n": n, "bytes": bytes,
            "p50_ms": round2(percentile(&lat, 0.5)), "p99_ms": round2(percentile(&lat, 0.99)),
        }))
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn run(a: &PagesArgs) -> Result<u8> {
    let tmp = bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    let officer_token = vault.add_principal("officer", "privacy_officer")?;
    vault.add_principal("ice", "agency")?;
    let lines: Vec<String> = simulated(a.records, a.seed).collect();
    let subjects = subjects_of(&lines);
    let ingest = vault.principal("ingest")?;
    vault.collect(
        &ingest,
        &mut BufReader::new(LinesReader::new(lines.into_iter())),
        &CollectOptions::default(),
        &mut |_| {},
    )?;
    let person = subjects.first().context("no simulated person")?.clone();
    let officer = vault.principal("officer")?;
    // The person's log: entries about them, for the browser's check.
    while vault
        .subject_tag_key(&person)?
        .map(|k| vault.find_leaves(&k).map(|(_, f)| f.len() as u64))
        .transpose()?
        .unwrap_or(0)
        < a.proofs
    {
        vault.subject_report(&officer, &person)?;
    }
    let vault = Arc::new(vault);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = postvault_server::AppState::new(vault.clone(), bench_config());
        tokio::spawn(postvault_server::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        let site = Site {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: base.clone(),
        };
        let office = site
            .sign_in("/office/login", "token", &officer_token)
            .await?;
        let code = vault.issue_access_code(&officer, &person)?;
        let me = site.sign_in("/me/login", "code", &code.code).await?;
        let agency = vault.principal("ice")?;
        let first = submit(&vault, &agency, &person, 0)?;
        let mut pages = Vec::new();
        for (path, cookie) in [
            ("/", ""),
            ("/office/", office.as_str()),
            (&format!("/office/requests/{first}")[..], office.as_str()),
            ("/office/rights", office.as_str()),
            ("/office/reports", office.as_str()),
            ("/me/", me.as_str()),
            ("/me/log", me.as_str()),
            ("/me/disclosures", me.as_str()),
            ("/me/choices", me.as_str()),
        ] {
            pages.push(site.measure(path, cookie, a.iterations).await?);
        }
        // Many requests waiting: the queue's first and last pages.
        let t = Instant::now();
        for i in 1..a.pending {
            submit(&vault, &agency, &subjects[i as usize % subjects.len()], i)?;
        }
        let submit_s = t.elapsed().as_secs_f64();
        let last = a.pending.div_ceil(50);
        let queue = vec![
            site.measure("/office/", &office, a.iterations.min(100))
                .await?,
            site.measure(
                &format!("/office/?page={last}"),
                &office,
                a.iterations.min(100),
            )
            .await?,
        ];
        let browser = if a.no_browser {
            serde_json::Value::Null
        } else {
            let code = vault.issue_access_code(&officer, &person)?;
            proofs_in_browser(&base, &code.code).await?
        };
        crate::print_json(&serde_json::json!({
            "bench": "pages",
            "records": a.records,
            "pages": pages,
            "queue": {"pending": a.pending, "submitted_in_s": round2(submit_s), "pages": queue},
            "browser_proofs": browser,
        }))?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// Every page view reads (and logs) the person's report anew, and no limit
/// paces the sequential requests: each figure is a page's whole cost, not a
/// cached one.
fn bench_config() -> postvault_server::Config {
    postvault_server::Config {
        login_rate: 1_000,
        person_rate: 1_000_000,
        report_fresh: Duration::ZERO,
        ..postvault_server::Config::default()
    }
}

/// A written request for one person's address: it waits for the office.
fn submit(vault: &Vault, agency: &postvault::Principal, subject: &str, i: u64) -> Result<String> {
    let now = vault.now_ms();
    let day = |ms: i64| postvault::format_ms(ms)[..10].to_string();
    let one = serde_json::json!({
        "kind": "written_request", "instrument_id": format!("BENCH-{i:06}"), "agency": "Bench Agency",
        "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
        "authority": "8 U.S.C. 1357; 5 U.S.C. 552a(b)(7)", "ground": "civil_law_enforcement", "case_id": format!("A{:09}", i),
        "subjects": [{"id": subject}], "portions": ["address"],
        "time_range": {"from": day(now - 90 * 86_400_000), "to": day(now)}, "issued_at": day(now)
    });
    Ok(vault.disclose_submit(agency, &one.to_string())?.id)
}

/// Signs the person in with Chromium and reads how long their browser took
/// to check every proof of the log page (`data-proofs-ms`), five times.
async fn proofs_in_browser(base: &str, code: &str) -> Result<serde_json::Value> {
    let driver_bin =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut driver = std::process::Command::new(&driver_bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {driver_bin} (apt-get install chromium chromium-driver, or --no-browser)"
            )
        })?;
    let profile = tempfile::tempdir()?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            format!("--user-data-dir={}", profile.path().display())]}),
    );
    let mut client = None;
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let Some(c) = client else {
        let _ = driver.kill();
        bail!("chromedriver did not answer within 10 s");
    };
    let run = async {
        c.goto(&format!("{base}/me/login")).await?;
        c.find(fantoccini::Locator::Id("code")).await?.send_keys(&format!("{code}\u{E007}")).await?;
        c.wait().for_element(fantoccini::Locator::Css("a[href='/me/log']")).await?;
        let mut ms = Vec::new();
        let mut entries = 0;
        for _ in 0..5 {
            c.goto(&format!("{base}/me/log")).await?;
            c.wait()
                .at_most(Duration::from_secs(30))
                .for_element(fantoccini::Locator::Css("body[data-proofs=done]"))
                .await?;
            let v = c
                .execute(
                    "return [Number(document.body.dataset.proofsMs), document.querySelectorAll('td[data-leaf].ok').length, document.querySelectorAll('td[data-leaf]').length];",
                    vec![],
                )
                .await?;
            ms.push(v[0].as_f64().unwrap_or(f64::NAN));
            entries = v[1].as_u64().unwrap_or(0);
            if v[1] != v[2] {
                bail!("the browser verified {} of {} entries", v[1], v[2]);
            }
        }
        ms.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>(serde_json::json!({
            "entries_verified": entries, "runs": ms.len(),
            "median_ms": round2(ms[ms.len() / 2]), "max_ms": round2(ms[ms.len() - 1]),
        }))
    }
    .await;
    let _ = c.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    // The browser outlives its driver if the session did not close.
    let _ = std::process::Command::new("pkill")
        .arg("-f")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .status();
    run
}
