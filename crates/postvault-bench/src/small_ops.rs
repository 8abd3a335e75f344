//! `postvault-bench small-ops`: the operations people and postal systems do
//! one at a time, from concurrent keep-alive HTTP clients against the
//! service started in this process, next to a raw PostgreSQL baseline that
//! runs the equivalent statements (each committed on its own) from as many
//! connections, in the same run.
//!
//! | operation | over HTTP | raw PostgreSQL |
//! |---|---|---|
//! | insert | `POST /v1/records`, one line, a new person | `INSERT` of one row |
//! | read | `GET /v1/subjects/{id}?purpose=delivery` | `SELECT` by key |
//! | correction | `POST /v1/subjects/{id}/corrections` | `UPDATE` by key |
//! | consent | `POST /v1/subjects/{id}/consent` | `UPDATE` by key |
//! | erasure | `POST /v1/subjects/{id}/erase`, each person once | `DELETE` by key |
//! | report | `GET /v1/subjects/{id}/report`, a person with `--report-records` records | `SELECT` of that many rows by key |

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{OpenOptions, Vault};

use crate::http::{Conn, LoopbackServer, percentile};

#[derive(Args, Debug)]
pub struct SmallOpsArgs {
    /// People in the vault before the operations, one address record each
    /// (and as many rows in the raw baseline's table).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub people: u64,
    /// Concurrent keep-alive HTTP clients (and raw PostgreSQL connections).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub clients: u16,
    /// Seconds each operation runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Records of each person whose access report is timed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub report_records: u64,
    /// People whose access report is timed (drawn in turn).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub report_people: u64,
    /// The raw baseline's PostgreSQL server (default: a throwaway cluster,
    /// fsync on). A schema `bench_small` is made there, dropped first.
    #[arg(long, env = "POSTVAULT_BENCH_PG", hide_env_values = true)]
    pub url: Option<String>,
    /// Skip the raw PostgreSQL baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Where to put the vault (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

const OPS: [&str; 6] = [
    "insert",
    "read",
    "correction",
    "consent",
    "report",
    "erasure",
];

/// What one operation measured: every call's latency (µs), calls that did
/// not answer as expected, and the wall time. Rates count the calls that
/// did.
#[derive(Default)]
struct Measured {
    lat_us: Vec<f64>,
    failed: u64,
    seconds: f64,
}

impl Measured {
    fn json(&mut self) -> serde_json::Value {
        self.lat_us.sort_by(f64::total_cmp);
        let r = |x: f64| (x * 10.0).round() / 10.0;
        serde_json::json!({
            "ops": self.lat_us.len(),
            "failed": self.failed,
            "ops_per_s": self.ops_per_s().round(),
            "p50_us": r(percentile(&self.lat_us, 0.5)),
            "p99_us": r(percentile(&self.lat_us, 0.99)),
        })
    }

    fn ops_per_s(&self) -> f64 {
        self.lat_us.len().saturating_sub(self.failed as usize) as f64 / self.seconds.max(1e-9)
    }
}

fn person(i: u64) -> String {
    format!("so-{i}")
}

fn address_line(subject: &str, street: u64) -> String {
    format!(
        r#"{{"subject":"{subject}","category":"address","purpose":"delivery","fields":{{"street":"{street} Elm St","city":"Springfield","state":"IL","zip":"62701"}}}}"#
    )
}

/// Runs `clients` threads of `call` until `seconds` pass (or a thread runs
/// out of work: `call` answers None).
fn drive(
    clients: usize,
    seconds: u64,
    call: &(dyn Fn(usize, u64) -> Result<Option<bool>> + Sync),
) -> Result<Measured> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    let parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || -> Result<(Vec<f64>, u64)> {
                    let (mut lat, mut failed) = (Vec::new(), 0u64);
                    let mut k = 0u64;
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        match call(c, k)? {
                            None => break,
                            Some(ok) => {
                                lat.push(t0.elapsed().as_secs_f64() * 1e6);
                                failed += u64::from(!ok);
                            }
                        }
                        k += 1;
                    }
                    Ok((lat, failed))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let mut m = Measured {
        seconds: t.elapsed().as_secs_f64(),
        ..Measured::default()
    };
    for (l, f) in parts {
        m.lat_us.extend(l);
        m.failed += f;
    }
    Ok(m)
}

pub fn run(a: &SmallOpsArgs) -> Result<u8> {
    let clients = usize::from(a.clients);
    // The baseline's server first: a machine without PostgreSQL is told so
    // before a minute of the vault's operations, not after.
    let baseline = if a.no_baseline {
        None
    } else {
        Some(
            crate::pg::url_or_cluster(a.url.as_deref())
                .context("the raw PostgreSQL baseline (--no-baseline skips it)")?,
        )
    };
    let tmp = crate::paths::bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    let ingest_token = vault.add_principal("ingest", "collector")?;
    let read_token = vault.add_principal("sorting", "delivery")?;
    let officer_token = vault.add_principal("officer", "privacy_officer")?;
    let ingest = vault.principal("ingest")?;
    let reports = a.report_people.max(1);
    let lines = (0..a.people)
        .map(|i| address_line(&person(i), i))
        .chain((0..reports).flat_map(|j| {
            (0..a.report_records).map(move |k| address_line(&format!("so-report-{j}"), k))
        }));
    let total = a.people + reports * a.report_records;
    crate::collect_lines(&vault, &ingest, lines, total, "collecting (in process)")?;

    let vault = Arc::new(vault);
    let server = LoopbackServer::start(vault.clone())?;
    let addr = server.addr.clone();

    // One keep-alive connection a client, kept across operations.
    let conns: Vec<std::sync::Mutex<Conn>> = (0..clients)
        .map(|_| Conn::open(&addr).map(std::sync::Mutex::new))
        .collect::<Result<_>>()?;
    let call = |c: usize, method: &str, path: &str, token: &str, body: &[u8]| -> Result<bool> {
        let mut conn = conns[c].lock().unwrap_or_else(|e| e.into_inner());
        let (status, _) = conn.call(method, path, token, body)?;
        Ok(status == 200)
    };
    let people = a.people.max(1);
    // Each client walks its own stride of people, from a different start.
    let pick = |c: usize, k: u64| (c as u64 * 7_919 + k * 104_729) % people;
    let mut vault_ops: Vec<(&str, Measured)> = Vec::new();
    let mut log_leaves_at_report = 0;
    for op in OPS {
        if op == "report" {
            // What a report reads through to find the person's leaves.
            log_leaves_at_report = vault.store().log_size()?;
        }
        eprintln!(
            "postvault: {op}, {clients} HTTP clients for {} s",
            a.seconds
        );
        let m = match op {
            "insert" => drive(clients, a.seconds, &|c, k| {
                let line = address_line(&format!("so-new-{c}-{k}"), k);
                call(c, "POST", "/v1/records", &ingest_token, line.as_bytes()).map(Some)
            })?,
            "read" => drive(clients, a.seconds, &|c, k| {
                let path = format!("/v1/subjects/{}?purpose=delivery", person(pick(c, k)));
                call(c, "GET", &path, &read_token, b"").map(Some)
            })?,
            "correction" => drive(clients, a.seconds, &|c, k| {
                let path = format!("/v1/subjects/{}/corrections", person(pick(c, k)));
                let body = format!(
                    r#"{{"category":"address","fields":{{"street":"{k} Oak St","city":"Springfield","state":"IL","zip":"62701"}}}}"#
                );
                call(c, "POST", &path, &officer_token, body.as_bytes()).map(Some)
            })?,
            "consent" => drive(clients, a.seconds, &|c, k| {
                let path = format!("/v1/subjects/{}/consent", person(pick(c, k)));
                let body = format!(r#"{{"purpose":"marketing","granted":{}}}"#, k % 2 == 0);
                call(c, "POST", &path, &officer_token, body.as_bytes()).map(Some)
            })?,
            "report" => drive(clients, a.seconds, &|c, k| {
                let j = (c as u64 + k * clients as u64) % reports;
                let path = format!("/v1/subjects/so-report-{j}/report");
                call(c, "GET", &path, &officer_token, b"").map(Some)
            })?,
            // Each person erased once: client c takes c, c + clients, ...
            _ => drive(clients, a.seconds, &|c, k| {
                let i = c as u64 + k * clients as u64;
                if i >= people {
                    return Ok(None);
                }
                let path = format!("/v1/subjects/{}/erase", person(i));
                call(c, "POST", &path, &officer_token, b"").map(Some)
            })?,
        };
        if m.lat_us.is_empty() {
            bail!("{op}: no operation completed");
        }
        vault_ops.push((op, m));
    }
    drop(conns);
    let rt = server.stop();

    let (mut raw_ops, raw_note): (Vec<(&str, Measured)>, _) = match &baseline {
        None => (Vec::new(), serde_json::json!("skipped (--no-baseline)")),
        Some((url, _cluster)) => rt.block_on(raw_baseline(url, a, clients))?,
    };

    let mut ops = serde_json::Map::new();
    let mut targets = serde_json::Map::new();
    for (op, m) in &mut vault_ops {
        let raw = raw_ops.iter_mut().find(|(o, _)| o == op).map(|(_, r)| r);
        let ratio = raw
            .as_ref()
            .map(|r| (m.ops_per_s() / r.ops_per_s().max(1e-9) * 1000.0).round() / 1000.0);
        let vault_json = m.json();
        let p99 = vault_json["p99_us"].as_f64().unwrap_or(f64::MAX);
        let p50 = vault_json["p50_us"].as_f64().unwrap_or(f64::MAX);
        ops.insert(
            op.to_string(),
            serde_json::json!({
                "vault": vault_json,
                "raw_pg": raw.map(|r| r.json()),
                "vault_over_raw": ratio,
            }),
        );
        let latency = if *op == "report" {
            serde_json::json!({ "p50_us_at_most": 5000, "met": p50 <= 5000.0 })
        } else {
            serde_json::json!({ "p99_us_at_most": 5000, "met": p99 <= 5000.0 })
        };
        targets.insert(
            op.to_string(),
            serde_json::json!({
                "ratio_at_least": 0.5,
                "ratio_met": ratio.map(|r| r >= 0.5),
                "latency": latency,
            }),
        );
    }
    let failed: u64 = vault_ops
        .iter()
        .chain(raw_ops.iter())
        .map(|(_, m)| m.failed)
        .sum();
    let out = serde_json::json!({
        "bench": "small-ops",
        "people": a.people,
        "report_people": reports,
        "report_records": a.report_records,
        "log_leaves_at_report": log_leaves_at_report,
        "clients": clients,
        "seconds_each": a.seconds,
        "vault_backend": "sqlite",
        "raw_baseline": raw_note,
        "ops": ops,
        "targets": targets,
        "peak_rss_mb": crate::paths::peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    if failed > 0 {
        eprintln!(
            "postvault: {failed} operations failed (an HTTP answer other than 200, or a statement that found no row)"
        );
        return Ok(1);
    }
    Ok(0)
}

/// The raw baseline: one table keyed by (person, n), `--people` people
/// with one row each and the report people with `--report-records` rows,
/// row bodies the size of an address line; each statement committed on its
/// own (`synchronous_commit` on), from `clients` connections.
async fn raw_baseline(
    url: &str,
    a: &SmallOpsArgs,
    clients: usize,
) -> Result<(Vec<(&'static str, Measured)>, serde_json::Value)> {
    // Every statement committed and flushed on its own, whatever the
    // server's defaults.
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", postvault_store_pg::redact(url)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute("SET synchronous_commit = on").await?;
        anyhow::Ok(client)
    };
    let admin = connect().await?;
    let reports = a.report_people.max(1);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS bench_small CASCADE;
             CREATE SCHEMA bench_small;
             CREATE TABLE bench_small.people (
                 subject BYTEA NOT NULL, n INTEGER NOT NULL, body BYTEA NOT NULL,
                 PRIMARY KEY (subject, n));
             INSERT INTO bench_small.people
                 SELECT sha224(int8send(i::bigint)), 0, convert_to(repeat('x', 150), 'UTF8')
                 FROM generate_series(0, {} - 1) AS i;
             INSERT INTO bench_small.people
                 SELECT sha224(int8send((-1 - j)::bigint)), k, convert_to(repeat('x', 150), 'UTF8')
                 FROM generate_series(0, {} - 1) AS j, generate_series(0, {} - 1) AS k;
             ANALYZE bench_small.people;",
            a.people, reports, a.report_records,
        ))
        .await?;
    let fsync: String = admin.query_one("SHOW fsync", &[]).await?.try_get(0)?;
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await?
        .try_get(0)?;
    let settings = serde_json::json!({
        "fsync": fsync,
        "synchronous_commit": "on",
        "server_version": version,
    });
    let mut out = Vec::new();
    let people = a.people as i64;
    let report_rows = a.report_records;
    for op in OPS {
        eprintln!(
            "postvault: raw PostgreSQL {op}, {clients} connections for {} s",
            a.seconds
        );
        let sql = match op {
            "insert" => {
                "INSERT INTO bench_small.people (subject, n, body) VALUES (sha224(int8send($1::bigint)), 0, convert_to(repeat('y', 150), 'UTF8'))"
            }
            "read" => {
                "SELECT body FROM bench_small.people WHERE subject = sha224(int8send($1::bigint))"
            }
            "correction" | "consent" => {
                "UPDATE bench_small.people SET body = convert_to(repeat('z', 150), 'UTF8') WHERE subject = sha224(int8send($1::bigint)) AND n = 0"
            }
            "report" => {
                "SELECT body FROM bench_small.people WHERE subject = sha224(int8send(-1 - $1::bigint))"
            }
            _ => "DELETE FROM bench_small.people WHERE subject = sha224(int8send($1::bigint))",
        };
        // Every connection made and its statement prepared first: the
        // clock starts when all are ready.
        let mut ready = Vec::with_capacity(clients);
        for _ in 0..clients {
            let client = connect().await?;
            let stmt = client.prepare(sql).await?;
            ready.push((client, stmt));
        }
        let until = Instant::now() + Duration::from_secs(a.seconds);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for (c, (client, stmt)) in ready.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0u64);
                let mut k = 0i64;
                while Instant::now() < until {
                    let key: i64 = match op {
                        // New keys above the people's.
                        "insert" => people + 1 + c as i64 + k * clients as i64,
                        "report" => (c as i64 + k * clients as i64) % reports as i64,
                        "erasure" => {
                            let i = c as i64 + k * clients as i64;
                            if i >= people {
                                break;
                            }
                            i
                        }
                        _ => (c as i64 * 7_919 + k * 104_729) % people,
                    };
                    let t0 = Instant::now();
                    // A read finds its one row, a report all of its
                    // person's, a write changes one.
                    let ok = match op {
                        "read" => client.query(&stmt, &[&key]).await?.len() == 1,
                        "report" => client.query(&stmt, &[&key]).await?.len() as u64 == report_rows,
                        _ => client.execute(&stmt, &[&key]).await? == 1,
                    };
                    lat.push(t0.elapsed().as_secs_f64() * 1e6);
                    failed += u64::from(!ok);
                    k += 1;
                }
                anyhow::Ok((lat, failed))
            }));
        }
        let mut m = Measured::default();
        for t in tasks {
            let (l, f) = t.await??;
            m.lat_us.extend(l);
            m.failed += f;
        }
        m.seconds = t.elapsed().as_secs_f64();
        out.push((op, m));
    }
    admin
        .batch_execute("DROP SCHEMA IF EXISTS bench_small CASCADE")
        .await?;
    Ok((out, settings))
}
