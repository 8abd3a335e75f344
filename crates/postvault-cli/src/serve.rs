//! `postvault serve`: the vault as an HTTP service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};

use crate::Cli;
use postvault_sim::LinesReader;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve a temporary vault seeded with a simulated slice of a postal
    /// day, and print a token and a ready `curl` line for each demo principal.
    #[arg(long)]
    pub demo: bool,
    /// Requests per second per principal, and per client address for the
    /// public log and for tokens not yet known (bursts of twice that).
    #[arg(long, env = "POSTVAULT_RATE_LIMIT", default_value_t = postvault_server::DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,
    /// Largest JSON request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Largest NDJSON body of POST /v1/records, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_records_body: usize,
    /// Seconds before a request is answered 503 `timeout` (and an upload
    /// that sends nothing is cut).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Seconds between retention sweeps run inside the service (0: none);
    /// each also purges the rows of people erased since the last.
    #[arg(long, default_value_t = 3600)]
    pub sweep_interval: u64,
    /// Seconds between builds of the statistics scan blocks inside the
    /// service (`postvault stats blocks`, every category the pack declares
    /// statistics over), the first one interval after the start; 0 (the
    /// default): none, build them from a schedule of your own. 86400 builds
    /// them daily.
    #[arg(long, default_value_t = 0)]
    pub blocks_interval: u64,
    /// Seconds a connection may take to send a whole request head (and to
    /// finish its TLS handshake), from when it opens or its last answer;
    /// then it is closed. At least 1.
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Vault calls running at once, each on its own thread (an upload holds
    /// one for its length); more wait their turn. With `--max-connections`
    /// it bounds the service's memory (docs/http.md, Memory).
    #[arg(long, default_value_t = 64)]
    pub max_threads: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checkpoint rounds: sign a checkpoint if the log grew
    /// and gather the witnesses' cosignatures (0: none; without witnesses
    /// checkpoints are then signed when asked for).
    #[arg(long, default_value_t = 30)]
    pub checkpoint_interval: u64,
    /// A reverse proxy in front of the service (an address or a CIDR block;
    /// repeat or separate with commas). From such a peer, `X-Forwarded-For`
    /// names the client (the rate limits and the pages' sign-in limit are
    /// kept by it, not by the proxy) and `X-Forwarded-Proto: https` marks
    /// the request as HTTPS (Secure cookies, HSTS). From anyone else those
    /// headers are ignored.
    #[arg(long, value_name = "CIDR", env = "POSTVAULT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = postvault_server::parse_proxy)]
    pub trusted_proxy: Vec<postvault_server::IpNet>,
}

pub fn serve(cli: &Cli, a: &ServeArgs) -> Result<u8> {
    // The service log: errors by default (`RUST_LOG` for more), on stderr.
    // Messages carry codes and the vault's own words, never a value.
    // Libraries that log what they carry at debug level (tokio-postgres its
    // bind parameters: refs, tokens, ciphertext; the HTTP stack request
    // paths, which name subjects) stay at warn whatever RUST_LOG says.
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    for quiet in [
        "tokio_postgres=warn",
        "postgres_protocol=warn",
        "deadpool=warn",
        "hyper=warn",
        "hyper_util=warn",
        "h2=warn",
        "tower_http=warn",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .try_init();
    // A bad certificate or key is refused before anything else starts.
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(postvault_server::TlsConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tmp;
    let (vault, demo_tokens) = if a.demo {
        tmp = tempfile::tempdir().context("creating a temporary directory")?;
        let (v, tokens) = demo_vault(&tmp.path().join("vault"), crate::ops::master_key(cli)?)?;
        (v, tokens)
    } else {
        (crate::open_vault(cli)?, Vec::new())
    };
    let vault = crate::witness_cmd::configure_demo(vault, cli, a.demo)?;
    let vault = Arc::new(vault);
    let config = postvault_server::Config {
        max_body: a.max_body,
        max_records_body: a.max_records_body,
        rate_limit: a.rate_limit,
        timeout: Duration::from_secs(a.timeout.max(1)),
        header_timeout: Duration::from_secs(a.header_timeout.max(1)),
        tls,
        max_connections: a.max_connections.max(1),
        trusted_proxies: a.trusted_proxy.clone(),
        ..postvault_server::Config::default()
    };
    let state = postvault_server::AppState::new(vault.clone(), config);
    // Vault calls run on blocking threads; tokio would start up to 512,
    // each keeping its stack and allocator caches: bounded here. Uploads
    // hold one each for their length, so there are always threads beyond
    // the upload limit for everything else.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(a.max_threads.max(postvault_server::MAX_UPLOADS + 4))
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        let addr = listener.local_addr()?;
        // The first line on stdout says where; programs starting the
        // service on port 0 read it. A closed stdout loses the line: the
        // service runs on if nobody reads it (the address is on stderr too).
        let _ = crate::output::stdout(format_args!(
            "{}\n",
            serde_json::json!({"listening": addr.to_string()})
        ));
        errln!("postvault: serving on {scheme}://{addr} (Ctrl-C or SIGTERM stops it)");
        errln!("postvault: API document: {scheme}://{addr}/openapi.json (needs a token)");
        for (name, role, token, example) in &demo_tokens {
            if name == "person" {
                continue;
            }
            errln!("\n  {name} (role {role})\n  token: {token}");
            errln!("  curl -s -H 'Authorization: Bearer {token}' '{scheme}://{addr}{example}'");
        }
        if !demo_tokens.is_empty() {
            errln!("\n  the pages (open in a browser):");
            errln!("    public transparency report: {scheme}://{addr}/");
            if let Some((_, _, token, _)) = demo_tokens.iter().find(|t| t.0 == "officer") {
                errln!("    privacy office: {scheme}://{addr}/office/login  (officer token: {token})");
            }
            if let Some((_, _, code, _)) = demo_tokens.iter().find(|t| t.0 == "person") {
                errln!("    a person's page: {scheme}://{addr}/me/login  (one-time access code: {code})");
            }
            errln!(
                "\n  the public log: curl -s {scheme}://{addr}/v1/log/checkpoint ; curl -s '{scheme}://{addr}/v1/log/proof/inclusion?index=0'"
            );
        }
        if a.checkpoint_interval > 0 {
            crate::witness_cmd::spawn_rounds(
                vault.clone(),
                Duration::from_secs(a.checkpoint_interval),
            );
        }
        if a.sweep_interval > 0 {
            let v = vault.clone();
            let every = Duration::from_secs(a.sweep_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let v = v.clone();
                    match tokio::task::spawn_blocking(move || v.retention_run(&mut |_| {})).await {
                        Ok(Ok(r)) if r.purge_error.is_some() => errln!(
                            "postvault: retention sweep: the purge of erased rows failed: {}",
                            r.purge_error.unwrap_or_default()
                        ),
                        Ok(Ok(r))
                            if r.records_deleted > 0
                                || r.periods_destroyed > 0
                                || r.erased_purged.people > 0 =>
                        {
                            errln!(
                                "postvault: retention sweep: {} period keys destroyed, {} records deleted, rows of {} erased people purged",
                                r.periods_destroyed, r.records_deleted, r.erased_purged.people
                            )
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => errln!("postvault: retention sweep failed: {e}"),
                        Err(_) => errln!("postvault: retention sweep stopped"),
                    }
                }
            });
        }
        if a.blocks_interval > 0 {
            let v = vault.clone();
            let every = Duration::from_secs(a.blocks_interval);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    let v = v.clone();
                    let built = tokio::task::spawn_blocking(move || {
                        v.statistics_categories()
                            .iter()
                            .map(|c| v.build_scan_blocks(c, &mut |_| {}))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await;
                    match built {
                        Ok(Ok(b)) => errln!(
                            "postvault: scan blocks built: {}",
                            b.iter()
                                .map(|b| format!("{} ({} records)", b.category, b.records))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Ok(Err(e)) => errln!("postvault: building scan blocks failed: {e}"),
                        Err(_) => errln!("postvault: building scan blocks stopped"),
                    }
                }
            });
        }
        // After a stop signal, requests in flight get 30 s to finish; then
        // the process exits anyway (what was acknowledged is durable; an
        // upload's batch in progress was never acknowledged).
        let stop = async {
            postvault_server::shutdown_signal().await;
            errln!("postvault: stopping: finishing requests in flight (30 s at most)");
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                errln!("postvault: stopped with requests still in flight after 30 s");
                std::process::exit(1);
            });
        };
        postvault_server::serve(listener, state, stop)
            .await
            .context("serving")?;
        errln!("postvault: stopped; every acknowledged request is durable");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// Colour codes only for a person at a terminal: never in a file, a pipe
/// or a journal, and never when `NO_COLOR` is set (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A temporary vault with a simulated slice and one principal per demo role.
type DemoToken = (String, String, String, String);

fn demo_vault(
    dir: &std::path::Path,
    master_key: Option<std::sync::Arc<postvault::ExternalKey>>,
) -> Result<(Vault, Vec<DemoToken>)> {
    let vault = Vault::init(
        dir,
        OpenOptions {
            master_key,
            ..OpenOptions::default()
        },
    )?;
    let ingest_token = vault.add_principal("ingest", "collector")?;
    let cfg = postvault_sim::SimConfig {
        scale: 0.00002,
        seed: 1,
        ..postvault_sim::SimConfig::default()
    };
    let lines: Vec<String> = postvault_sim::Simulator::new(&cfg).collect();
    let person = lines
        .iter()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["category"] == "address").then(|| v["subject"].as_str().map(str::to_string))?
        })
        .unwrap_or_else(|| "cust-000000000001".into());
    let ingest = vault.principal("ingest")?;
    let report = vault.collect(
        &ingest,
        &mut std::io::BufReader::new(LinesReader::new(lines.into_iter())),
        &CollectOptions::default(),
        &mut |_| {},
    )?;
    errln!(
        "postvault: demo vault seeded with {} records ({} simulated lines refused)",
        report.accepted,
        report.rejected
    );
    let mut tokens = vec![(
        "ingest".to_string(),
        "collector".to_string(),
        ingest_token,
        "/openapi.json".to_string(),
    )];
    for (name, role, example) in [
        (
            "sorting",
            "delivery",
            format!("/v1/subjects/{person}?purpose=delivery"),
        ),
        (
            "care",
            "account_service",
            format!("/v1/subjects/{person}?purpose=account_service"),
        ),
        (
            "officer",
            "privacy_officer",
            format!("/v1/subjects/{person}/report"),
        ),
        (
            "ice-ero",
            "agency",
            format!("/v1/subjects/{person}?purpose=immigration_enforcement"),
        ),
        ("auditor", "auditor", "/v1/reports/transparency".to_string()),
    ] {
        let t = vault.add_principal(name, role)?;
        tokens.push((name.to_string(), role.to_string(), t, example));
    }
    // Something in the office's queue: a court order for the person, and a
    // written request for a current address (no court behind it).
    let ice = vault.principal("ice-ero")?;
    let now = vault.now_ms();
    let day = |ms: i64| postvault::format_ms(ms)[..10].to_string();
    const DAY: i64 = 86_400_000;
    for instrument in [
        serde_json::json!({
            "kind": "court_order", "instrument_id": "26-MJ-0417", "agency": "Homeland Security Investigations",
            "signer": {"name": "Assistant U.S. Attorney", "title": "Assistant United States Attorney", "level": "agent"},
            "authority": "5 U.S.C. 552a(b)(11); 39 CFR 265.14(d)(5)(iii)", "ground": "criminal_law_enforcement",
            "case_id": "HSI-CH-26-0417", "subjects": [{"id": person}], "portions": ["address", "scan_event"],
            "time_range": {"from": day(now - 30 * DAY), "to": day(now)}, "issued_at": day(now),
            "expires_at": day(now + 30 * DAY),
            "court": {"name": "U.S. District Court for the Northern District of Illinois", "docket": "1:26-mj-00417",
                      "judge": "Magistrate Judge", "order_date": day(now)}
        }),
        serde_json::json!({
            "kind": "written_request", "instrument_id": "ERO-2025-0001", "agency": "Immigration and Customs Enforcement",
            "signer": {"name": "Field Office Director", "title": "Field Office Director", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
            "authority": "8 U.S.C. 1357; 5 U.S.C. 552a(b)(7)", "ground": "civil_law_enforcement", "case_id": "A200000001",
            "subjects": [{"id": person}], "portions": ["address"],
            "time_range": {"from": day(now - 90 * DAY), "to": day(now)}, "issued_at": day(now)
        }),
    ] {
        vault.disclose_submit(&ice, &instrument.to_string())?;
    }
    let officer = vault.principal("officer")?;
    let code = vault.issue_access_code(&officer, &person)?;
    tokens.push((
        "person".to_string(),
        "access code".to_string(),
        code.code,
        "/me/login".to_string(),
    ));
    Ok((vault, tokens))
}
