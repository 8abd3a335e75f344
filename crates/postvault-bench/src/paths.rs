//! `postvault-bench ingest`: the full collection path against raw batched
//! SQLite inserts of the same bytes into the same schema, in one run.

use std::hash::{Hash, Hasher};
use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};
use postvault_store::{OpenMode, SqliteStore};
use rusqlite::params;

use postvault_sim::LinesReader;

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
    /// Threads that make targeted reads, one after another, while the full
    /// path runs (0: none): what a read waits behind a bulk load, by batch
    /// size. Each reads a person of a line already handed to the vault.
    #[arg(long, default_value_t = 0)]
    pub readers: usize,
    /// Where to put the temporary databases (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// The first `records` lines, streamed, of a simulated day just large
/// enough to hold them.
pub fn simulated(records: u64, seed: u64) -> impl Iterator<Item = String> {
    let per_unit = postvault_sim::Plan::new(&postvault_sim::SimConfig {
        scale: 0.001,
        ..postvault_sim::SimConfig::default()
    })
    .total_records() as f64
        / 0.001;
    let cfg = postvault_sim::SimConfig {
        scale: (records as f64 / per_unit * 1.01).max(0.00001),
        seed,
        ..postvault_sim::SimConfig::default()
    };
    postvault_sim::Simulator::new(&cfg).take(records as usize)
}

pub(crate) fn simulated_lines(records: u64, seed: u64) -> Vec<String> {
    simulated(records, seed).collect()
}

/// A temporary directory for a bench's databases: under `dir`, or the
/// system's.
pub fn bench_dir(dir: Option<&std::path::Path>) -> Result<tempfile::TempDir> {
    match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")
}

pub fn ingest(a: &IngestArgs) -> Result<u8> {
    eprintln!("postvault: generating {} records", a.records);
    let lines = simulated_lines(a.records, a.seed);
    let n = lines.len() as u64;
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    let tmp = bench_dir(a.dir.as_deref())?;

    // Raw baseline: the same line bytes as blobs, same schema and settings.
    let mut raw = RawDb::create(&tmp.path().join("raw.db"))?;
    let bar = crate::progress_bar(Some(n), "raw SQLite inserts");
    let t = Instant::now();
    for chunk in lines.chunks(a.batch_size.max(1)) {
        raw.insert_batch(chunk)?;
        bar.inc(chunk.len() as u64);
    }
    let raw_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    drop(raw);

    // Full path: parse, minimize, decide, seal, blind-index, account, store.
    let dir = tmp.path().join("vault");
    let vault = Vault::init(&dir, OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    let p = vault.principal("ingest")?;
    // The readers, and their people: each line's, in input order.
    let (sorting, line_subjects) = if a.readers > 0 {
        vault.add_principal("sorting", "delivery")?;
        let people = lines.iter().map(|l| subject_of(l).to_string()).collect();
        (Some(vault.principal("sorting")?), people)
    } else {
        (None, Vec::new())
    };
    let bar = crate::progress_bar(Some(n), "full path");
    let mut input = BufReader::with_capacity(1 << 20, LinesReader::new(lines.into_iter()));
    let acknowledged = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let t = Instant::now();
    let (report, reads) = std::thread::scope(|scope| {
        let readers: Vec<_> = sorting
            .iter()
            .flat_map(|sorting| std::iter::repeat_n(sorting, a.readers))
            .enumerate()
            .map(|(r, sorting)| {
                let (vault, subjects) = (&vault, &line_subjects);
                let (acknowledged, done) = (&acknowledged, &done);
                scope.spawn(move || -> Result<ReadsWhile> {
                    use std::sync::atomic::Ordering;
                    let mut out = ReadsWhile::default();
                    let mut i = r as u64;
                    while !done.load(Ordering::Relaxed) {
                        let k = acknowledged.load(Ordering::Relaxed);
                        if k == 0 {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            continue;
                        }
                        // A line already handed over, spread over them.
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let s = &subjects[((i >> 33) % k) as usize];
                        let t0 = Instant::now();
                        let read = vault.read(sorting, s, "delivery")?;
                        out.latency_us.push(t0.elapsed().as_secs_f64() * 1e6);
                        out.records += read.records.len() as u64;
                    }
                    Ok(out)
                })
            })
            .collect();
        let report = vault.collect(
            &p,
            &mut input,
            &CollectOptions {
                default_purpose: None,
                batch_size: a.batch_size,
                run: None,
            },
            &mut |k| {
                acknowledged.store(k, std::sync::atomic::Ordering::Relaxed);
                bar.set_position(k)
            },
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut reads = ReadsWhile::default();
        for r in readers {
            let r = r
                .join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
            reads.latency_us.extend(r.latency_us);
            reads.records += r.records;
        }
        Ok::<_, anyhow::Error>((report?, reads))
    })?;
    let full_s = t.elapsed().as_secs_f64();
    if let Some(f) = &report.failure {
        anyhow::bail!("collection failed: {}", f.message);
    }
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
        "reads_while_ingesting": (a.readers > 0).then(|| reads.summary(a.readers, full_s)),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

/// What the readers of `ingest --readers` saw.
#[derive(Default)]
struct ReadsWhile {
    latency_us: Vec<f64>,
    records: u64,
}

impl ReadsWhile {
    fn summary(mut self, readers: usize, seconds: f64) -> serde_json::Value {
        self.latency_us.sort_by(f64::total_cmp);
        let l = &self.latency_us;
        let round = |x: f64| (x * 10.0).round() / 10.0;
        serde_json::json!({
            "readers": readers,
            "reads": l.len(),
            "reads_per_s": (l.len() as f64 / seconds).round(),
            "records_returned": self.records,
            "p50_us": round(percentile(l, 0.5)),
            "p99_us": round(percentile(l, 0.99)),
            "p999_us": round(percentile(l, 0.999)),
            "max_us": round(l.last().copied().unwrap_or(0.0)),
        })
    }
}

/// The raw ingest baseline's database: the store's schema, connection
/// settings and background checkpointing, and none of the vault's work.
pub(crate) struct RawDb {
    conn: rusqlite::Connection,
    _checkpoints: Option<postvault_store::Checkpointer>,
    /// Ids as cheap as the vault's (a counter after a time prefix), so the
    /// baseline pays for no system call the full path does not.
    base: [u8; 16],
    counter: u64,
}

impl RawDb {
    pub(crate) fn create(path: &std::path::Path) -> Result<RawDb> {
        drop(SqliteStore::open(path, OpenMode::Create)?);
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(postvault_store::SQLITE_PRAGMAS)?;
        // The store's checkpointing: in the background, the writer's own
        // connection only past INLINE_CHECKPOINT_PAGES pages.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            postvault_store::INLINE_CHECKPOINT_PAGES,
        )?;
        Ok(RawDb {
            conn,
            _checkpoints: postvault_store::Checkpointer::start(path),
            base: *uuid::Uuid::now_v7().as_bytes(),
            counter: 0,
        })
    }

    /// The lines as blobs into `records`, in one transaction.
    pub(crate) fn insert_batch<S: AsRef<str>>(&mut self, lines: &[S]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut s = tx.prepare_cached(
                "INSERT INTO records (id, subject, category, purpose, source, collected_at,
                     expires_at, key_id, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for line in lines {
                let line = line.as_ref();
                // Keyed by the line's subject, as the vault's rows are (a
                // hash of it: the raw path does no HMAC).
                let mut h = std::collections::hash_map::DefaultHasher::new();
                subject_of(line).hash(&mut h);
                let x = h.finish().to_be_bytes();
                let mut subject = [0u8; 16];
                subject[..8].copy_from_slice(&x);
                subject[8..].copy_from_slice(&x);
                self.counter += 1;
                let mut id = self.base;
                id[8..].copy_from_slice(&self.counter.to_be_bytes());
                s.execute(params![
                    id,
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
        Ok(())
    }
}

/// The `subject` value of a simulated line, found without parsing it (the
/// simulator writes `subject` first).
pub(crate) fn subject_of(line: &str) -> &str {
    line.strip_prefix("{\"subject\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or(line)
}

/// Peak resident set size of this process, from /proc (Linux).
/// CPU seconds (user and system, all threads) this process has used, from
/// `/proc/self/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The process's anonymous resident memory now (`RssAnon`), in MB: what
/// it allocated, without the file pages it maps (a mapped store file's
/// pages are the kernel's page cache, counted in RSS once per mapping).
pub fn anon_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("RssAnon:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// Samples [`anon_rss_mb`] every 10 ms until dropped; its peak.
pub struct AnonPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<f64>>,
}

impl AnonPeak {
    pub fn start() -> AnonPeak {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(anon_rss_mb().unwrap_or(0.0));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak.max(anon_rss_mb().unwrap_or(0.0))
        });
        AnonPeak {
            stop,
            thread: Some(thread),
        }
    }

    /// The highest value sampled.
    pub fn finish(mut self) -> Option<f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take()?.join().ok()
    }
}

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

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Leaves in the in-memory tree (hashing and proofs alone).
    #[arg(long, default_value_t = 10_000_000)]
    pub leaves: u64,
    /// Leaves appended through a vault's store (SQLite) and hashed there.
    #[arg(long, default_value_t = 1_000_000)]
    pub stored_leaves: u64,
    /// Leaves per append batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// A deterministic leaf of about the size of a real one.
fn bench_leaf(i: u64) -> Vec<u8> {
    format!(
        "{{\"action\":\"read\",\"categories\":[\"address\"],\"count\":1,\"decision\":\"allow\",\"i\":{i},\"pack\":\"sha256:0000000000000000\",\"principal\":{{\"id\":\"00000000000000000000000000000000\",\"role\":\"delivery\"}},\"purpose\":\"delivery\",\"reasons\":[],\"subject_tag\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"time\":0,\"v\":1}}"
    )
    .into_bytes()
}

/// Proofs timed through the vault's store (after [`WARM_PROOFS`] untimed).
const STORED_PROOFS: u64 = 10_000;

/// Untimed proofs before the timed ones: enough to fill a 32 MiB page cache
/// with the pages of random proofs in a log of 10M leaves.
const WARM_PROOFS: u64 = 20_000;

fn mean_micros(samples: u64, mut f: impl FnMut(u64) -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    for i in 0..samples {
        f(i)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / samples as f64)
}

pub fn log(a: &LogArgs) -> Result<u8> {
    let batch = a.batch.max(1);
    // 1. In memory: hashing and stored-hash maintenance only.
    let mut stored: Vec<postvault_log::Hash> =
        Vec::with_capacity((a.leaves.saturating_mul(2)) as usize);
    let bar = crate::progress_bar(Some(a.leaves), "appending (in memory)");
    let t = Instant::now();
    let mut n = 0u64;
    let mut leaf_hashes = Vec::with_capacity(batch as usize);
    while n < a.leaves {
        let end = a.leaves.min(n + batch);
        leaf_hashes.clear();
        for i in n..end {
            leaf_hashes.push(postvault_log::leaf_hash(&i.to_be_bytes()));
        }
        let new = postvault_log::append_hashes(n, &leaf_hashes, &stored)?;
        stored.extend(new.into_iter().map(|(_, h)| h));
        n = end;
        if n.is_multiple_of(batch * 1000) {
            bar.set_position(n);
        }
    }
    let mem_append_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let size = a.leaves;
    let root = postvault_log::tree_root(size, &stored)?;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let idx: Vec<u64> = (0..10_000).map(|_| next() % size.max(1)).collect();
    let prove_us = mean_micros(idx.len() as u64, |i| {
        postvault_log::prove_inclusion(idx[i as usize], size, &stored)?;
        Ok(())
    })?;
    let proofs: Vec<Vec<postvault_log::Hash>> = idx
        .iter()
        .take(1000)
        .map(|&i| postvault_log::prove_inclusion(i, size, &stored))
        .collect::<Result<_, _>>()?;
    let verify_us = mean_micros(proofs.len() as u64, |i| {
        let j = idx[i as usize];
        postvault_log::verify_inclusion(
            j,
            size,
            &postvault_log::leaf_hash(&j.to_be_bytes()),
            &proofs[i as usize],
            &root,
        )?;
        Ok(())
    })?;
    let consistency_us = mean_micros(1000, |i| {
        postvault_log::prove_consistency(idx[i as usize].max(1), size, &stored)?;
        Ok(())
    })?;
    drop(stored);

    // 2. Through a vault: leaves appended in batched store transactions,
    //    hashed in catch-up transactions, proofs read from SQLite.
    let tmp = bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    let bar = crate::progress_bar(Some(a.stored_leaves), "appending (vault store)");
    let t = Instant::now();
    let mut n = 0u64;
    while n < a.stored_leaves {
        let count = a.stored_leaves.min(n + batch) - n;
        vault
            .store()
            .append_leaves(count as usize, &mut |idx, _| bench_leaf(idx).into())?;
        n += count;
        bar.set_position(n);
    }
    let store_append_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let t = Instant::now();
    vault.log_catch_up()?;
    let catch_up_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    vault.checkpoint()?;
    let checkpoint_ms = t.elapsed().as_secs_f64() * 1e3;
    // The data store's size with the log in it (leaves, stored hashes,
    // proof tiles), the write-ahead log included.
    let store_bytes: u64 = ["data.db", "data.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(tmp.path().join("vault").join(f)).ok())
        .map(|m| m.len())
        .sum();
    let stored_size = a.stored_leaves.max(1);
    // Leaves drawn over the whole stored log (not the in-memory tree's
    // range); proofs of other leaves first, untimed, until SQLite's page
    // cache is full, so the figures are of a vault in use (its cache
    // recycling pages) rather than of a cache still growing, a page fault
    // per page read.
    let sidx: Vec<u64> = (0..STORED_PROOFS + WARM_PROOFS)
        .map(|_| next() % stored_size)
        .collect();
    for &i in &sidx[STORED_PROOFS as usize..] {
        vault.prove_inclusion(i, Some(stored_size))?;
    }
    let vault_prove_us = mean_micros(STORED_PROOFS, |i| {
        vault.prove_inclusion(sidx[i as usize], Some(stored_size))?;
        Ok(())
    })?;
    // Its parts: the catch-up check (log and hashed sizes), the leaf, the
    // stored hashes alone (read by the log crate through the store).
    let catch_up_check_us = mean_micros(1000, |_| {
        vault.log_catch_up()?;
        Ok(())
    })?;
    let leaf_us = mean_micros(STORED_PROOFS, |i| {
        let at = sidx[i as usize];
        vault.store().leaves(at, at + 1)?;
        Ok(())
    })?;
    let hashes_us = mean_micros(STORED_PROOFS, |i| {
        postvault_log::prove_inclusion(sidx[i as usize], stored_size, &StoreHashes(vault.store()))?;
        Ok(())
    })?;
    // The same proofs while the log is written, as in a serving vault: a
    // thread appends one leaf a commit (each synced, like a read's), so
    // every proof starts after other commits.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (busy_prove_us, commits_during) = std::thread::scope(|sc| -> Result<(f64, u64)> {
        let writer = sc.spawn(|| -> Result<u64> {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                vault
                    .store()
                    .append_leaves(1, &mut |idx, _| bench_leaf(idx).into())?;
                n += 1;
            }
            Ok(n)
        });
        let us = mean_micros(STORED_PROOFS, |i| {
            vault.prove_inclusion(sidx[i as usize], Some(stored_size))?;
            Ok(())
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        Ok((us?, n))
    })?;

    let out = serde_json::json!({
        "bench": "log",
        "in_memory": {
            "leaves": a.leaves,
            "batch": batch,
            "append_leaves_per_s": (a.leaves as f64 / mem_append_s).round(),
            "inclusion_prove_us": (prove_us * 100.0).round() / 100.0,
            "inclusion_verify_us": (verify_us * 100.0).round() / 100.0,
            "consistency_prove_us": (consistency_us * 100.0).round() / 100.0,
        },
        "vault_store": {
            "leaves": a.stored_leaves,
            "batch": batch,
            "append_leaves_per_s": (a.stored_leaves as f64 / store_append_s).round(),
            "hash_catch_up_leaves_per_s": (a.stored_leaves as f64 / catch_up_s).round(),
            "sign_checkpoint_ms": (checkpoint_ms * 100.0).round() / 100.0,
            "store_bytes_per_leaf": (store_bytes as f64 / a.stored_leaves.max(1) as f64).round(),
            "inclusion_prove_us": (vault_prove_us * 100.0).round() / 100.0,
            "catch_up_check_us": (catch_up_check_us * 100.0).round() / 100.0,
            "leaf_read_us": (leaf_us * 100.0).round() / 100.0,
            "proof_hashes_us": (hashes_us * 100.0).round() / 100.0,
            "inclusion_prove_while_writing_us": (busy_prove_us * 100.0).round() / 100.0,
            "commits_while_proving": commits_during,
        },
        "peak_rss_mb": peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Records collected before reading.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Targeted reads to time (one thread, each durably logged).
    #[arg(long, default_value_t = 5_000)]
    pub reads: u64,
    /// Then reads from this many threads at once for `--seconds` (0: none).
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// How long the threads read.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The distinct subjects of simulated `lines`, sorted.
pub fn subjects_of(lines: &[String]) -> Vec<String> {
    let mut subjects: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["subject"].as_str().map(str::to_string))
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

pub fn read(a: &ReadArgs) -> Result<u8> {
    let lines = simulated_lines(a.records, a.seed);
    let subjects = subjects_of(&lines);
    let tmp = bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    vault.add_principal("sorting", "delivery")?;
    let ingest = vault.principal("ingest")?;
    let total = lines.len() as u64;
    crate::collect_lines(&vault, &ingest, lines.into_iter(), total, "collecting")?;

    let sorting = vault.principal("sorting")?;
    let mut lat = Vec::with_capacity(a.reads as usize);
    let mut returned = 0u64;
    let bar = crate::progress_bar(Some(a.reads), "reading");
    let t = Instant::now();
    for i in 0..a.reads {
        let s = &subjects[(i as usize * 7919) % subjects.len().max(1)];
        let t0 = Instant::now();
        let r = vault.read(&sorting, s, "delivery")?;
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
        returned += r.records.len() as u64;
        if i % 256 == 0 {
            bar.set_position(i);
        }
    }
    let total_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    lat.sort_by(f64::total_cmp);
    let many = match a.threads {
        0 => None,
        n => Some(crate::suite::concurrent_reads(
            &vault,
            &subjects,
            n,
            a.seconds.clamp(0.1, 600.0),
        )?),
    };

    // Decisions: cached (the hot path) and straight from Cedar.
    let pack = vault.pack();
    let reqs: Vec<_> = pack.requests().collect();
    for r in &reqs {
        pack.decide(r);
    }
    let rounds = 200u64;
    let t = Instant::now();
    let mut allowed = 0u64;
    for _ in 0..rounds {
        for r in &reqs {
            allowed += u64::from(std::hint::black_box(pack.decide(r)).allowed());
        }
    }
    let cached_ns = t.elapsed().as_secs_f64() * 1e9 / (rounds as f64 * reqs.len() as f64);
    let sample = reqs.len().min(5000);
    let t = Instant::now();
    for r in reqs.iter().take(sample) {
        std::hint::black_box(pack.evaluate(r));
    }
    let cedar_us = t.elapsed().as_secs_f64() * 1e6 / sample as f64;

    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let out = serde_json::json!({
        "bench": "read",
        "records": a.records,
        "subjects": subjects.len(),
        "reads": a.reads,
        "records_returned": returned,
        "read_p50_us": round2(percentile(&lat, 0.5)),
        "read_p99_us": round2(percentile(&lat, 0.99)),
        "read_mean_us": round2(lat.iter().sum::<f64>() / lat.len().max(1) as f64),
        "reads_per_s_one_thread": (a.reads as f64 / total_s).round(),
        "threads": a.threads,
        "reads_per_s_threads": many.map(f64::round),
        "cached_decision_ns": round2(cached_ns),
        "cedar_decision_us": round2(cedar_us),
        "decisions_allowed_checksum": allowed,
        "peak_rss_mb": peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct EraseArgs {
    /// People to collect (one address each), then erase in one call.
    #[arg(long, default_value_t = 100_000)]
    pub subjects: u64,
    /// Erase this many of them (default: all), in one call.
    #[arg(long)]
    pub erase: Option<u64>,
    /// Address records collected for each person (1M people x 10 = a
    /// 10M-record vault).
    #[arg(long, default_value_t = 1)]
    pub records_each: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// Erasure throughput: people erased per second through the full path
/// (hold check, one leaf per person, rows made dead, keys destroyed with
/// secure_delete and the WAL truncated), on a vault opened afresh so no key
/// is cached; then the purge that deletes the dead rows, timed on its own.
pub fn erase(a: &EraseArgs) -> Result<u8> {
    let tmp = bench_dir(a.dir.as_deref())?;
    let dir = tmp.path().join("vault");
    let vault = Vault::init(&dir, OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    vault.add_principal("officer", "privacy_officer")?;
    let ingest = vault.principal("ingest")?;
    let ids: Vec<String> = (0..a.subjects)
        .map(|i| format!("bench-person-{i}"))
        .collect();
    let each = a.records_each.max(1);
    let lines = (0..each).flat_map(|k| {
        ids.iter().enumerate().map(move |(i, s)| {
            format!(
                r#"{{"subject":"{s}","category":"address","purpose":"delivery","fields":{{"street":"{i} Elm St {k}","city":"Springfield","state":"IL","zip":"62701"}}}}"#
            )
        })
    });
    let report = crate::collect_lines(&vault, &ingest, lines, a.subjects * each, "collecting")?;
    drop(vault);
    let vault = Vault::open(&dir, OpenOptions::default())?;
    let officer = vault.principal("officer")?;
    let take = a.erase.unwrap_or(a.subjects).min(a.subjects) as usize;
    // Every tenth person first, so the erased are spread over the stores.
    // Chosen before the clock starts: the list of a million identifiers
    // is the bench's, not the erasure's.
    let mut chosen: Vec<String> = ids.iter().step_by(10).take(take).cloned().collect();
    chosen.extend(
        ids.iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 0)
            .map(|(_, s)| s.clone())
            .take(take - chosen.len()),
    );
    drop(ids);
    let bar = crate::progress_bar(Some(chosen.len() as u64), "erasing");
    let t = Instant::now();
    let r = vault.erase(&officer, &chosen, &mut |k| bar.set_position(k))?;
    let s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let erase_rss = peak_rss_mb();
    let bar = crate::progress_bar(Some(r.erased), "purging");
    let t = Instant::now();
    let p = vault.purge_erased(&mut |k| bar.set_position(k))?;
    let ps = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if p.people != r.erased || p.records != r.records_deleted {
        anyhow::bail!(
            "the purge deleted the rows of {} people ({} records); {} were erased ({} records)",
            p.people,
            p.records,
            r.erased,
            r.records_deleted
        );
    }
    let out = serde_json::json!({
        "bench": "erase",
        "subjects": a.subjects,
        "records": report.accepted,
        "asked": take,
        "erased": r.erased,
        "records_deleted": r.records_deleted,
        "keys_destroyed": r.keys_destroyed,
        "seconds": (s * 1000.0).round() / 1000.0,
        "subjects_per_s": (r.erased as f64 / s).round(),
        "peak_rss_mb": erase_rss,
        "purge": {
            "people": p.people,
            "records": p.records,
            "seconds": (ps * 1000.0).round() / 1000.0,
            "people_per_s": (p.people as f64 / ps).round(),
            "records_per_s": (p.records as f64 / ps).round(),
        },
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Records to collect (streamed from the simulator), then sweep once
    /// every one of them has expired.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// A retention sweep over expired records: collect `records` at one time,
/// move the clock six years on (past every category's retention), sweep.
/// Streaming throughout: memory stays bounded at any size.
pub fn retention(a: &RetentionArgs) -> Result<u8> {
    let tmp = bench_dir(a.dir.as_deref())?;
    let dir = tmp.path().join("vault");
    let clock = std::sync::Arc::new(postvault::FixedClock::new(postvault::Clock::now_ms(
        &postvault::SystemClock,
    )));
    let opts = OpenOptions {
        pack: None,
        clock: clock.clone(),
        ..OpenOptions::default()
    };
    let vault = Vault::init(&dir, opts.clone())?;
    vault.add_principal("ingest", "collector")?;
    let ingest = vault.principal("ingest")?;
    let lines = simulated(a.records, a.seed);
    let t = Instant::now();
    let report = crate::collect_lines(&vault, &ingest, lines, a.records, "collecting")?;
    let collect_s = t.elapsed().as_secs_f64();
    let rss_after_collect = peak_rss_mb();
    clock.advance(6 * 366 * 86_400_000);
    let bar = crate::progress_bar(Some(report.accepted), "sweeping");
    let t = Instant::now();
    let r = vault.retention_run(&mut |k| bar.set_position(k))?;
    let sweep_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let left = vault.store().record_count()?;
    let out = serde_json::json!({
        "bench": "retention",
        "records": a.records,
        "accepted": report.accepted,
        "collect_records_per_s": (report.accepted as f64 / collect_s).round(),
        "periods_destroyed": r.periods_destroyed,
        "records_deleted": r.records_deleted,
        "records_left": left,
        "sweep_seconds": (sweep_s * 1000.0).round() / 1000.0,
        "sweep_records_per_s": (r.records_deleted as f64 / sweep_s).round(),
        "peak_rss_mb_after_collect": rss_after_collect,
        "peak_rss_mb": peak_rss_mb(),
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

/// The store's stored hashes, as the log crate reads them.
struct StoreHashes<'a>(&'a dyn postvault_store::Store);

impl postvault_log::HashStore for StoreHashes<'_> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<postvault_log::Hash>, postvault_log::LogError> {
        self.0
            .log_hashes(indexes)
            .map_err(|e| postvault_log::LogError::Storage(e.to_string()))
    }
}
