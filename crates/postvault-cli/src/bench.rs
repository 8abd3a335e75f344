//! `postvault bench ingest`: the full collection path against raw batched
//! SQLite inserts of the same bytes into the same schema, in one run.

use std::hash::{Hash, Hasher};
use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};
use postvault_store::{OpenMode, SqliteStore};
use rusqlite::params;

use crate::LinesReader;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Records to ingest (taken from the simulator).
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Lines per transaction, for both paths.
    #[arg(long, default_value_t = 2048)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to put the temporary databases (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

pub fn ingest(a: &IngestArgs) -> Result<u8> {
    // Enough of a simulated day to cover the records asked for.
    let per_unit = postvault_sim::Plan::new(&postvault_sim::SimConfig {
        scale: 0.001,
        ..postvault_sim::SimConfig::default()
    })
    .total_records() as f64
        / 0.001;
    let cfg = postvault_sim::SimConfig {
        scale: (a.records as f64 / per_unit * 1.01).max(0.00001),
        seed: a.seed,
        ..postvault_sim::SimConfig::default()
    };
    eprintln!("postvault: generating {} records", a.records);
    let lines: Vec<String> = postvault_sim::Simulator::new(&cfg)
        .take(a.records as usize)
        .collect();
    let n = lines.len() as u64;
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    let tmp = match &a.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")?;

    // Raw baseline: the same line bytes as blobs, same schema and pragmas.
    let raw_path = tmp.path().join("raw.db");
    drop(SqliteStore::open(&raw_path, OpenMode::Create)?);
    let mut conn = rusqlite::Connection::open(&raw_path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    let bar = crate::progress_bar(Some(n), "raw SQLite inserts");
    let t = Instant::now();
    for chunk in lines.chunks(a.batch_size.max(1)) {
        let tx = conn.transaction()?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO records (id, subject, category, purpose, source, collected_at,
                     expires_at, key_id, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for line in chunk {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                line.get(..24).hash(&mut h);
                let x = h.finish().to_be_bytes();
                let mut subject = [0u8; 16];
                subject[..8].copy_from_slice(&x);
                subject[8..].copy_from_slice(&x);
                s.execute(params![
                    uuid::Uuid::now_v7().as_bytes(),
                    subject,
                    "scan_event",
                    "delivery",
                    "ingest",
                    0i64,
                    0i64,
                    0u32,
                    line.as_bytes()
                ])?;
            }
        }
        tx.commit()?;
        bar.inc(chunk.len() as u64);
    }
    let raw_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    drop(conn);

    // Full path: parse, minimize, decide, seal, blind-index, account, store.
    let dir = tmp.path().join("vault");
    let vault = Vault::init(&dir, OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    let p = vault.principal("ingest")?;
    let bar = crate::progress_bar(Some(n), "full path");
    let mut input = BufReader::with_capacity(1 << 20, LinesReader::new(lines.into_iter()));
    let t = Instant::now();
    let report = vault.collect(
        &p,
        &mut input,
        &CollectOptions {
            default_purpose: None,
            batch_size: a.batch_size,
        },
        &mut |k| bar.set_position(k),
    )?;
    let full_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let raw_rate = n as f64 / raw_s;
    let full_rate = report.accepted as f64 / full_s;
    let out = serde_json::json!({
        "bench": "ingest",
        "records": n,
        "input_bytes": bytes,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "batch_size": a.batch_size,
        "raw_sqlite_records_per_s": raw_rate.round(),
        "full_path_records_per_s": full_rate.round(),
        "ratio_full_to_raw": (full_rate / raw_rate * 1000.0).round() / 1000.0,
        "raw_seconds": raw_s,
        "full_seconds": full_s,
        "peak_rss_mb": peak_rss_mb(),
        "machine": crate::machine(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// Peak resident set size of this process, from /proc (Linux).
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}
