//! `postvault-bench pg-ingest`: the full collection path on PostgreSQL
//! against raw binary COPY of the same bytes into the same table, in one
//! run on one server; then two vault processes ingesting into one vault
//! at once, for the aggregate throughput of two nodes.

use std::hash::{Hash, Hasher};
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};
use postvault_store::RecordRow;
use postvault_store_pg::{ClusterOptions, PgKeyStore, PgOptions, PgStore, TempCluster};

use crate::paths::{bench_dir, peak_rss_mb, simulated};
use postvault_sim::LinesReader;

#[derive(Args, Debug)]
pub struct PgIngestArgs {
    /// The server to measure on (default: a throwaway cluster, fsync on).
    /// Schemas `bench_*` are created there and dropped first.
    #[arg(long, env = "POSTVAULT_BENCH_PG", hide_env_values = true)]
    pub url: Option<String>,
    /// Records to ingest (taken from the simulator).
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Lines per transaction, for every path.
    #[arg(long, default_value_t = 2048)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Vault processes ingesting into one vault at once, for the aggregate.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Targeted reads (each durably logged) after the ingest, per phase.
    #[arg(long, default_value_t = 4000)]
    pub reads: usize,
    /// Concurrent readers of the second read phase (the first has one).
    #[arg(long, default_value_t = 16)]
    pub readers: usize,
    /// Where to put temporary files (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// One node of the aggregate run (spawned by `pg-ingest`).
#[derive(Args, Debug)]
pub struct PgNodeArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub schema: String,
    #[arg(long)]
    pub file: std::path::PathBuf,
    #[arg(long)]
    pub batch_size: usize,
}

fn pg_opts(schema: &str, create: bool) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        keys_schema: format!("{schema}_keys"),
        create,
        ..PgOptions::default()
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// A fresh vault in `schema` with an `ingest` collector.
fn fresh_vault(url: &str, schema: &str) -> Result<Vault> {
    let o = pg_opts(schema, true);
    let keys = PgKeyStore::open(url, &o)?;
    let store = PgStore::open(url, &o)?;
    let v = Vault::init_with(
        Path::new(url),
        Box::new(store),
        Box::new(keys),
        OpenOptions::default(),
    )?;
    v.add_principal("ingest", "collector")?;
    Ok(v)
}

fn collect_all(v: &Vault, lines: impl Iterator<Item = String>, batch: usize) -> Result<u64> {
    let p = v.principal("ingest")?;
    let mut input = BufReader::with_capacity(1 << 20, LinesReader::new(lines));
    let r = v.collect(
        &p,
        &mut input,
        &CollectOptions {
            default_purpose: None,
            batch_size: batch,
            run: None,
        },
        &mut |_| {},
    )?;
    if let Some(f) = &r.failure {
        bail!("collection failed: {}", f.message);
    }
    Ok(r.accepted)
}

/// The server at `url`, or a throwaway cluster with fsync on (kept running
/// while the returned cluster lives).
pub(crate) fn url_or_cluster(url: Option<&str>) -> Result<(String, Option<TempCluster>)> {
    Ok(match url {
        Some(u) => (u.to_string(), None),
        None => {
            eprintln!("postvault: starting a throwaway PostgreSQL cluster (fsync on)");
            let cluster = TempCluster::start(ClusterOptions {
                durable: true,
                ..ClusterOptions::default()
            })?;
            (cluster.url("postgres"), Some(cluster))
        }
    })
}

pub fn ingest(a: &PgIngestArgs) -> Result<u8> {
    let (url, _cluster) = url_or_cluster(a.url.as_deref())?;
    eprintln!("postvault: generating {} records", a.records);
    let lines: Vec<String> = simulated(a.records, a.seed).collect();
    let n = lines.len() as u64;
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let batch = a.batch_size.max(1);

    // Start clean: schemas of an earlier run are dropped.
    let admin = PgStore::open(&url, &pg_opts("bench_admin", true))?;
    for s in ["bench_raw", "bench_single", "bench_pair"] {
        admin.danger_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; DROP SCHEMA IF EXISTS {s}_keys CASCADE"
        ))?;
    }

    // Raw baseline: the same line bytes as sealed values, binary COPY into
    // the same table (same indexes), one transaction per batch.
    let raw = PgStore::open(&url, &pg_opts("bench_raw", true))?;
    let bar = crate::progress_bar(Some(n), "raw binary COPY");
    let base = *uuid::Uuid::now_v7().as_bytes();
    let mut counter = 0u64;
    let t = Instant::now();
    for chunk in lines.chunks(batch) {
        let rows: Vec<RecordRow> = chunk
            .iter()
            .map(|line| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                line.get(..24).hash(&mut h);
                let x = h.finish().to_be_bytes();
                let mut subject = [0u8; 16];
                subject[..8].copy_from_slice(&x);
                subject[8..].copy_from_slice(&x);
                counter += 1;
                let mut id = base;
                id[8..].copy_from_slice(&counter.to_be_bytes());
                RecordRow {
                    id,
                    subject,
                    category: "scan_event".into(),
                    purpose: "delivery".into(),
                    source: "ingest".into(),
                    collected_at: 0,
                    expires_at: 0,
                    key_id: 0,
                    sealed: line.as_bytes().to_vec(),
                    superseded_by: None,
                }
            })
            .collect();
        raw.danger_raw_copy_records(&rows)?;
        bar.inc(chunk.len() as u64);
    }
    let raw_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    drop(raw);

    // Full path on one node.
    let v = fresh_vault(&url, "bench_single")?;
    eprintln!("postvault: full path, one node");
    let t = Instant::now();
    let accepted = collect_all(&v, lines.iter().cloned(), batch)?;
    let full_s = t.elapsed().as_secs_f64();

    // Targeted reads through the full path: one reader, then many sharing
    // commits.
    v.add_principal("sorting", "delivery")?;
    let sorting = v.principal("sorting")?;
    let subjects: Vec<String> = lines
        .iter()
        .step_by((lines.len() / 1000).max(1))
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|j| j["subject"].as_str().map(str::to_string))
        })
        .collect();
    if subjects.is_empty() {
        bail!("no subjects to read");
    }
    let reads = a.reads.max(1);
    let mut lat = Vec::with_capacity(reads);
    let t = Instant::now();
    for i in 0..reads {
        let s = Instant::now();
        v.read(&sorting, &subjects[i % subjects.len()], "delivery")?;
        lat.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let one_reader_rate = reads as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let p50_us = lat.get(lat.len() / 2).copied().unwrap_or_default();
    let readers = a.readers.max(1);
    let t = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..readers)
            .map(|r| {
                let (v, sorting, subjects) = (&v, &sorting, &subjects);
                scope.spawn(move || -> Result<()> {
                    for i in (r..reads).step_by(readers) {
                        v.read(sorting, &subjects[i % subjects.len()], "delivery")?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a reader panicked"))?)
    })?;
    let many_readers_rate = reads as f64 / t.elapsed().as_secs_f64();
    drop(v);

    // Several nodes: separate processes, one vault, each its share.
    let nodes = a.nodes.max(1);
    let v = fresh_vault(&url, "bench_pair")?;
    drop(v);
    let tmp = bench_dir(a.dir.as_deref())?;
    let mut files = Vec::new();
    for k in 0..nodes {
        let p = tmp.path().join(format!("node{k}.ndjson"));
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("creating `{}`", p.display()))?,
        );
        for line in lines.iter().skip(k).step_by(nodes) {
            writeln!(f, "{line}")?;
        }
        f.flush()?;
        files.push(p);
    }
    eprintln!("postvault: full path, {nodes} nodes at once");
    let exe = std::env::current_exe().context("finding the postvault-bench binary")?;
    let children = files
        .iter()
        .map(|f| {
            Command::new(&exe)
                .args(["pg-node", "--url", &url, "--schema", "bench_pair"])
                .arg("--file")
                .arg(f)
                .args(["--batch-size", &batch.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a node")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut reports = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!("a node failed");
        }
        reports.push(serde_json::from_slice::<serde_json::Value>(&out.stdout)?);
    }
    let start = reports
        .iter()
        .filter_map(|r| r["start_ms"].as_f64())
        .fold(f64::MAX, f64::min);
    let end = reports
        .iter()
        .filter_map(|r| r["end_ms"].as_f64())
        .fold(0.0, f64::max);
    let pair_accepted: u64 = reports.iter().filter_map(|r| r["accepted"].as_u64()).sum();
    let pair_s = (end - start) / 1000.0;
    let check = PgStore::open(&url, &pg_opts("bench_pair", false))?;
    let stored = postvault_store::RecordStore::record_count(&check)?;
    if stored != pair_accepted {
        bail!("the nodes acknowledged {pair_accepted} records but {stored} are stored");
    }

    let raw_rate = n as f64 / raw_s;
    let full_rate = accepted as f64 / full_s;
    let pair_rate = pair_accepted as f64 / pair_s;
    let out = serde_json::json!({
        "bench": "pg-ingest",
        "records": n,
        "input_bytes": bytes,
        "accepted": accepted,
        "batch_size": batch,
        "raw_copy_records_per_s": raw_rate.round(),
        "full_path_records_per_s": full_rate.round(),
        "ratio_full_to_raw": (full_rate / raw_rate * 1000.0).round() / 1000.0,
        "reads_one_reader_per_s": one_reader_rate.round(),
        "read_one_reader_p50_us": p50_us.round(),
        "readers": readers,
        "reads_many_readers_per_s": many_readers_rate.round(),
        "nodes": nodes,
        "nodes_aggregate_records_per_s": pair_rate.round(),
        "nodes_per_node_records_per_s": reports.iter().map(|r| r["records_per_s"].clone()).collect::<Vec<_>>(),
        "raw_seconds": raw_s,
        "full_seconds": full_s,
        "nodes_seconds": pair_s,
        "server": if a.url.is_some() { "given" } else { "throwaway cluster, fsync on, synchronous_commit on" },
        "peak_rss_mb": peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

pub fn node(a: &PgNodeArgs) -> Result<u8> {
    let o = pg_opts(&a.schema, false);
    let keys = PgKeyStore::open(&a.url, &o)?;
    let store = PgStore::open(&a.url, &o)?;
    let v = Vault::open_with(
        Path::new(&a.url),
        Box::new(store),
        Box::new(keys),
        OpenOptions::default(),
    )?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading `{}`", a.file.display()))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let start = now_ms();
    let t = Instant::now();
    let accepted = collect_all(&v, lines.into_iter(), a.batch_size.max(1))?;
    let secs = t.elapsed().as_secs_f64();
    let end = now_ms();
    crate::print_json(&serde_json::json!({
            "start_ms": start, "end_ms": end, "accepted": accepted,
            "records_per_s": (accepted as f64 / secs).round(),
    }))?;
    Ok(0)
}
