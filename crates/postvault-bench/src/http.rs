//! `postvault-bench http`: a load generator on loopback against the HTTP
//! service started in this process: authenticated, logged targeted reads
//! from many keep-alive connections, then NDJSON ingest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};

use postvault_sim::LinesReader;

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// People to collect before reading.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Concurrent keep-alive connections doing reads.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of reads.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Records to ingest over HTTP after the reads.
    #[arg(long, default_value_t = 500_000)]
    pub ingest: u64,
    /// Lines per POST /v1/records request.
    #[arg(long, default_value_t = 20_000)]
    pub lines_per_request: usize,
    /// Concurrent ingest connections.
    #[arg(long, default_value_t = 2)]
    pub ingest_connections: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// A keep-alive HTTP/1.1 connection that reads Content-Length answers.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
            host: addr.to_string(),
        })
    }

    fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.w.write_all(head.as_bytes())?;
        self.w.write_all(body)?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("a malformed status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok((status, body))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

pub fn http(a: &HttpArgs) -> Result<u8> {
    let tmp = crate::paths::bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    let ingest_token = vault.add_principal("ingest", "collector")?;
    let read_token = vault.add_principal("sorting", "delivery")?;
    let ingest = vault.principal("ingest")?;
    let subjects: Vec<String> = (0..a.records).map(|i| format!("http-{i}")).collect();
    let lines = subjects.iter().map(|s| address_line(s));
    let bar = crate::progress_bar(Some(a.records), "collecting (in process)");
    let report = vault.collect(
        &ingest,
        &mut BufReader::with_capacity(1 << 20, LinesReader::new(lines)),
        &CollectOptions::default(),
        &mut |k| bar.set_position(k),
    )?;
    bar.finish_and_clear();
    if let Some(f) = report.failure {
        bail!("collection failed: {}", f.message);
    }

    let state = postvault_server::AppState::new(
        Arc::new(vault),
        postvault_server::Config {
            rate_limit: 10_000_000,
            ..postvault_server::Config::default()
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?.to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(postvault_server::serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    // Reads: every connection loops over people until the time is up.
    eprintln!(
        "postvault: {} connections reading for {} s",
        a.connections, a.seconds
    );
    let until = Instant::now() + Duration::from_secs(a.seconds);
    let subjects = Arc::new(subjects);
    let mut handles = Vec::new();
    for c in 0..a.connections {
        let addr = addr.clone();
        let token = read_token.clone();
        let subjects = subjects.clone();
        handles.push(std::thread::spawn(move || -> Result<(Vec<f64>, u64)> {
            let mut conn = Conn::open(&addr)?;
            let mut lat = Vec::new();
            let mut bad = 0u64;
            let mut i = c * 7919;
            while Instant::now() < until {
                let s = &subjects[i % subjects.len()];
                i += 104_729;
                let t = Instant::now();
                let (status, _) = conn.call(
                    "GET",
                    &format!("/v1/subjects/{s}?purpose=delivery"),
                    &token,
                    b"",
                )?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                if status != 200 {
                    bad += 1;
                }
            }
            Ok((lat, bad))
        }));
    }
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut bad = 0;
    for h in handles {
        let (l, b) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        lat.extend(l);
        bad += b;
    }
    let read_s = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);

    // Ingest: simulated NDJSON (the records `bench ingest` uses) over a few
    // connections, each its own slice of the day.
    let per = a.ingest / a.ingest_connections.max(1) as u64;
    eprintln!(
        "postvault: ingesting {} records over {} connections",
        per * a.ingest_connections as u64,
        a.ingest_connections
    );
    let t = Instant::now();
    let mut handles = Vec::new();
    for c in 0..a.ingest_connections {
        let addr = addr.clone();
        let token = ingest_token.clone();
        let lines_per = a.lines_per_request.max(1);
        let mut sim = crate::paths::simulated(per, a.seed + 1 + c as u64);
        handles.push(std::thread::spawn(move || -> Result<(u64, Vec<f64>)> {
            let mut conn = Conn::open(&addr)?;
            let mut accepted = 0u64;
            let mut lat = Vec::new();
            let mut n = 0u64;
            while n < per {
                let take = (per - n).min(lines_per as u64);
                let mut body = String::with_capacity(take as usize * 300);
                for _ in 0..take {
                    let Some(l) = sim.next() else { break };
                    body.push_str(&l);
                    body.push('\n');
                }
                let t0 = Instant::now();
                let (status, resp) = conn.call("POST", "/v1/records", &token, body.as_bytes())?;
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
                if status != 200 {
                    bail!(
                        "ingest answered {status}: {}",
                        String::from_utf8_lossy(&resp)
                    );
                }
                let r: serde_json::Value = serde_json::from_slice(&resp)?;
                accepted +=
                    r["accepted"].as_u64().unwrap_or(0) + r["rejected"].as_u64().unwrap_or(0);
                n += take;
            }
            Ok((accepted, lat))
        }));
    }
    let mut accepted = 0;
    let mut ingest_lat = Vec::new();
    for h in handles {
        let (n, l) = h
            .join()
            .map_err(|_| anyhow::anyhow!("an ingester panicked"))??;
        accepted += n;
        ingest_lat.extend(l);
    }
    let ingest_s = t.elapsed().as_secs_f64();
    ingest_lat.sort_by(f64::total_cmp);
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);

    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let out = serde_json::json!({
        "bench": "http",
        "records_before_reads": a.records,
        "read_connections": a.connections,
        "reads": lat.len(),
        "reads_not_200": bad,
        "reads_per_s": (lat.len() as f64 / read_s).round(),
        "read_p50_us": round2(percentile(&lat, 0.5)),
        "read_p99_us": round2(percentile(&lat, 0.99)),
        "ingest_connections": a.ingest_connections,
        "lines_per_request": a.lines_per_request,
        "ingested_lines": accepted,
        "ingest_records_per_s": (accepted as f64 / ingest_s).round(),
        "ingest_request_p50_ms": round2(percentile(&ingest_lat, 0.5)),
        "ingest_request_p99_ms": round2(percentile(&ingest_lat, 0.99)),
        "peak_rss_mb": crate::paths::peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

fn address_line(subject: &str) -> String {
    format!(
        r#"{{"subject":"{subject}","category":"address","purpose":"delivery","fields":{{"street":"1 Elm St","city":"Springfield","state":"IL","zip":"62701"}}}}"#
    )
}
