//! `postvault-bench http`: a load generator on loopback against the HTTP
//! service started in this process: authenticated, logged targeted reads
//! from many keep-alive connections, then the same reads from an
//! independent load generator (`wrk`, installed if missing and allowed),
//! then NDJSON ingest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{OpenOptions, Vault};

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
    /// After this bench's own reads, the same reads from `wrk` (an
    /// independent load generator, 2 threads, `--connections`, `--seconds`);
    /// installed with apt-get when missing and run as root. `none` skips it.
    #[arg(long, default_value = "wrk", value_parser = ["wrk", "none"])]
    pub load_generator: String,
}

/// A keep-alive HTTP/1.1 connection that reads Content-Length answers.
pub(crate) struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
            host: addr.to_string(),
        })
    }

    pub(crate) fn call(
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

/// The HTTP service over a vault on a free loopback port, in a runtime of
/// its own, without a rate limit in a load generator's way.
pub(crate) struct LoopbackServer {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LoopbackServer {
    pub(crate) fn start(vault: Arc<Vault>) -> Result<LoopbackServer> {
        let state = postvault_server::AppState::new(
            vault,
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
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(postvault_server::serve(listener, state, async {
            let _ = stop_rx.await;
        }));
        Ok(LoopbackServer {
            rt,
            addr,
            stop,
            server,
        })
    }

    /// Stops the service and waits for it; the runtime stays for other work.
    pub(crate) fn stop(self) -> tokio::runtime::Runtime {
        let _ = self.stop.send(());
        let _ = self.rt.block_on(self.server);
        self.rt
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
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
    crate::collect_lines(&vault, &ingest, lines, a.records, "collecting (in process)")?;

    let server = LoopbackServer::start(Arc::new(vault))?;
    let addr = server.addr.clone();

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

    let wrk = if a.load_generator == "wrk" {
        eprintln!(
            "postvault: wrk, {} connections reading for {} s",
            a.connections, a.seconds
        );
        match wrk_reads(&addr, &read_token, subjects.len(), a.connections, a.seconds) {
            Ok(v) => v,
            Err(e) => serde_json::json!({ "failed": format!("{e:#}") }),
        }
    } else {
        serde_json::json!({ "skipped": "--load-generator none" })
    };

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
    server.stop();

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
        "wrk": wrk,
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

/// The reads again from `wrk`: every request a GET of another person with
/// the reader's token (set in the script, in a private directory, not on
/// wrk's command line), over `connections` keep-alive connections from 2
/// threads. Its own count of answers with a status of 400 or more (wrk's
/// "Non-2xx or 3xx responses") is reported.
fn wrk_reads(
    addr: &str,
    token: &str,
    people: usize,
    connections: usize,
    seconds: u64,
) -> Result<serde_json::Value> {
    let wrk = find_or_install_wrk()?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("reads.lua");
    std::fs::write(
        &script,
        format!(
            r#"local n = 0
wrk.headers["Authorization"] = "Bearer {token}"
function setup(thread)
  thread:set("first", n * 7919)
  n = n + 1
end
function init(args)
  i = first
end
function request()
  i = i + 104729
  return wrk.format("GET", "/v1/subjects/http-" .. (i % {people}) .. "?purpose=delivery")
end
"#
        ),
    )?;
    let out = std::process::Command::new(&wrk)
        .args(["-t", "2", "-c", &connections.max(2).to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency"])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .with_context(|| format!("running {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text)
}

/// `wrk` on PATH, or installed with apt-get (as root) when it is not.
fn find_or_install_wrk() -> Result<std::path::PathBuf> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    };
    if let Some(w) = on_path("wrk") {
        return Ok(w);
    }
    eprintln!("postvault: wrk is missing; installing it (apt-get install wrk)");
    let ok = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match on_path("wrk") {
        Some(w) if ok => Ok(w),
        _ => bail!(
            "wrk is not installed and `apt-get install wrk` did not install it (run as root, or install wrk)"
        ),
    }
}

/// Requests/s, latency percentiles and the count of answers that were not
/// 2xx/3xx, from `wrk --latency`'s report.
fn parse_wrk(text: &str) -> Result<serde_json::Value> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    let us = |v: &str| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let x: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => x,
            "ms" => x * 1e3,
            "s" => x * 1e6,
            "m" => x * 60e6,
            _ => return None,
        })
    };
    let per_s: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's report:\n{text}"))?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(" requests in ")?;
            let _ = rest;
            n.parse().ok()
        })
        .with_context(|| format!("no request count in wrk's report:\n{text}"))?;
    let pct = |p: &str| {
        field(p)
            .and_then(|v| us(&v))
            .map(|x| (x * 100.0).round() / 100.0)
    };
    let not_2xx: u64 = match field("Non-2xx or 3xx responses:") {
        None => 0,
        Some(v) => v
            .parse()
            .with_context(|| format!("wrk's count of failed answers `{v}` is not a number"))?,
    };
    let errors = field("Socket errors:").unwrap_or_default();
    Ok(serde_json::json!({
        "requests": total,
        "reads_per_s": per_s.round(),
        "read_p50_us": pct("50%"),
        "read_p99_us": pct("99%"),
        "reads_non_2xx_3xx": not_2xx,
        "socket_errors": errors,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read_or_refused() {
        let report = "Running 10s test @ http://127.0.0.1:4000
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.21ms    2.10ms  40.00ms   80.00%
    Req/Sec     3.10k   200.00     3.50k    70.00%
  Latency Distribution
     50%    4.90ms
     75%    6.00ms
     90%    7.50ms
     99%   12.34ms
  61234 requests in 10.00s, 30.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   6123.40
Transfer/sec:      3.00MB
";
        let v = parse_wrk(report).unwrap();
        assert_eq!(v["requests"], 61234);
        assert_eq!(v["reads_per_s"], 6123.0);
        assert_eq!(v["read_p50_us"], 4900.0);
        assert_eq!(v["read_p99_us"], 12340.0);
        assert_eq!(v["reads_non_2xx_3xx"], 3);
        assert!(parse_wrk("wrk: connection refused").is_err());
    }
}
