//! `postvault-bench`: every path in one run, each next to its raw baseline
//! measured in the same run on the same machine, with the projection to a
//! full U.S. postal day. Prints JSON, optionally writes it to a file, and,
//! when asked (`--markdown BENCHMARKS.md`), writes the markdown table there,
//! so the published figures are exactly what a run printed.
//!
//! Phases: machine facts (cores, CPU, the disk's flush latency); the
//! simulated slice written to a file (streamed); raw batched SQLite inserts
//! of those bytes; the full collection path over the same file; targeted
//! reads (one thread, several threads, and with the vault on RAM to show
//! the software's own cost); decisions cached and uncached; log appends and
//! proofs; erasure. Memory is streamed throughout: the peak RSS of each
//! phase is reported.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};

use crate::paths::{RawDb, bench_dir, peak_rss_mb, percentile, subject_of};

#[derive(Args, Debug)]
pub struct SuiteArgs {
    /// Fraction of a U.S. postal day to generate and ingest (1.0: 318M
    /// mailpieces, about 2.2 billion records; 0.0045: about 10M records).
    #[arg(long, default_value_t = 0.0005)]
    pub scale: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Lines per transaction, for both ingest paths.
    #[arg(long, default_value_t = 2048)]
    pub batch_size: usize,
    /// Targeted reads to time on one thread.
    #[arg(long, default_value_t = 5000)]
    pub reads: u64,
    /// Seconds of reads from several threads at once.
    #[arg(long, default_value_t = 3.0)]
    pub read_seconds: f64,
    /// Leaves of the in-memory log for the append and proof figures
    /// (default: as many as records ingested, at least 1M, at most 10M).
    #[arg(long)]
    pub log_leaves: Option<u64>,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the table into this markdown file (e.g. `BENCHMARKS.md`),
    /// replacing its benchmark-suite section (created if missing; the
    /// section is appended if the file has none). Without it no file but
    /// `--json`'s is written.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write no markdown file (the default; kept so older commands run).
    #[arg(long, conflicts_with = "markdown")]
    pub no_markdown: bool,
    /// Where to put the temporary files (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const BEGIN: &str =
    "<!-- postvault bench: begin (written by `postvault bench`; edits here are replaced) -->";
const END: &str = "<!-- postvault bench: end -->";

/// How many subjects to keep as read and erasure targets.
const SAMPLE: usize = 20_000;

/// Resets this process's peak RSS (Linux: `clear_refs` 5), so each phase
/// reports its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// Median and 99th percentile of `fdatasync` on a 4 KiB write in `dir`: the
/// floor under every durable commit, so under every logged read.
fn flush_latency_us(dir: &Path) -> Result<(f64, f64)> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("flush-probe");
    let f = std::fs::File::create(&path).context("creating the flush probe")?;
    let block = [0x5au8; 4096];
    let mut lat = Vec::with_capacity(200);
    for i in 0..200u64 {
        f.write_at(&block, (i % 16) * 4096)?;
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    lat.sort_by(f64::total_cmp);
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

fn memory_gib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(round(kb / 1024.0 / 1024.0, 1))
}

fn git_commit() -> Option<String> {
    let o = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The simulated slice, written once to `path`; returns (lines, bytes,
/// seconds) and fills `sample` with up to [`SAMPLE`] distinct subjects
/// spread over the whole slice.
fn simulate(
    cfg: &postvault_sim::SimConfig,
    path: &Path,
    sample: &mut Vec<String>,
) -> Result<(u64, u64, f64)> {
    let plan = postvault_sim::Plan::new(cfg);
    let total = plan.total_records();
    let bar = crate::progress_bar(Some(total), "[1/7] simulating");
    let f =
        std::fs::File::create(path).with_context(|| format!("creating `{}`", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let step = (total / (SAMPLE as u64 * 4)).max(1);
    let mut seen = std::collections::HashSet::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    let t = Instant::now();
    for line in postvault_sim::Simulator::new(cfg) {
        if n.is_multiple_of(step) && sample.len() < SAMPLE {
            let s = subject_of(&line);
            if seen.insert(s.to_string()) {
                sample.push(s.to_string());
            }
        }
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
        n += 1;
        if n.is_multiple_of(16_384) {
            bar.set_position(n);
        }
    }
    w.flush()?;
    let s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((n, bytes, s))
}

/// Raw baseline: the same line bytes as blobs into the same `records` table
/// (same schema, same connection settings, same batch size), prepared
/// statements, nothing else.
fn raw_ingest(input: &Path, db: &Path, batch_size: usize, total: u64) -> Result<f64> {
    let mut raw = RawDb::create(db)?;
    let bar = crate::progress_bar(Some(total), "[2/7] raw SQLite inserts");
    let mut lines = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?).lines();
    let mut chunk = Vec::with_capacity(batch_size);
    let t = Instant::now();
    loop {
        chunk.clear();
        for line in lines.by_ref().take(batch_size.max(1)) {
            chunk.push(line?);
        }
        if chunk.is_empty() {
            break;
        }
        raw.insert_batch(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    let s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(s)
}

/// The full path over the file: returns (accepted, rejected, seconds).
fn full_ingest(
    vault: &Vault,
    input: &Path,
    batch_size: usize,
    total: u64,
    what: &str,
) -> Result<(u64, u64, f64)> {
    let ingest = vault.principal("ingest")?;
    let bar = crate::progress_bar(Some(total), what);
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let t = Instant::now();
    let report = vault.collect(
        &ingest,
        &mut r,
        &CollectOptions {
            batch_size,
            ..CollectOptions::default()
        },
        &mut |k| bar.set_position(k),
    )?;
    let s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(f) = &report.failure {
        bail!("collection failed: {}", f.message);
    }
    Ok((report.accepted, report.rejected, s))
}

fn new_vault(dir: &Path) -> Result<Vault> {
    let vault = Vault::init(dir, OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    vault.add_principal("sorting", "delivery")?;
    vault.add_principal("officer", "privacy_officer")?;
    Ok(vault)
}

struct Reads {
    p50: f64,
    p99: f64,
    per_s: f64,
    returned: u64,
}

/// `n` targeted reads for `delivery` over `subjects`, one thread.
fn timed_reads(vault: &Vault, subjects: &[String], n: u64, what: &str) -> Result<Reads> {
    let sorting = vault.principal("sorting")?;
    let mut lat = Vec::with_capacity(n as usize);
    let mut returned = 0u64;
    let bar = crate::progress_bar(Some(n), what);
    let t = Instant::now();
    for i in 0..n {
        let s = &subjects[(i as usize).wrapping_mul(7919) % subjects.len()];
        let t0 = Instant::now();
        let r = vault.read(&sorting, s, "delivery")?;
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
        returned += r.records.len() as u64;
        if i % 256 == 0 {
            bar.set_position(i);
        }
    }
    let total = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    lat.sort_by(f64::total_cmp);
    Ok(Reads {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        per_s: n as f64 / total,
        returned,
    })
}

/// Reads from `threads` threads at once for `seconds`: reads per second in
/// all (concurrent reads share one durable commit).
pub(crate) fn concurrent_reads(
    vault: &Vault,
    subjects: &[String],
    threads: usize,
    seconds: f64,
) -> Result<f64> {
    let sorting = vault.principal("sorting")?;
    let stop = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let t = Instant::now();
    let counts: Vec<Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let sorting = &sorting;
                scope.spawn(move || -> Result<u64> {
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        let i = (n as usize * threads + k).wrapping_mul(7919);
                        vault.read(sorting, &subjects[i % subjects.len()], "delivery")?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a reader panicked")))
            })
            .collect()
    });
    let total: u64 = counts.into_iter().sum::<Result<u64>>()?;
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// Cached decision (ns) and uncached Cedar evaluation (µs), over every
/// request the pack can be asked.
fn decisions(vault: &Vault) -> (f64, f64) {
    let pack = vault.pack();
    let reqs: Vec<_> = pack.requests().collect();
    for r in &reqs {
        pack.decide(r);
    }
    let rounds = 200u64;
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &reqs {
            std::hint::black_box(pack.decide(std::hint::black_box(r)));
        }
    }
    let cached_ns = t.elapsed().as_secs_f64() * 1e9 / (rounds as f64 * reqs.len().max(1) as f64);
    let sample = reqs.len().min(5000);
    let t = Instant::now();
    for r in reqs.iter().take(sample) {
        std::hint::black_box(pack.evaluate(r));
    }
    let cedar_us = t.elapsed().as_secs_f64() * 1e6 / sample.max(1) as f64;
    (cached_ns, cedar_us)
}

struct LogFigures {
    leaves: u64,
    append_per_s: f64,
    inclusion_us: f64,
    verify_us: f64,
    consistency_us: f64,
}

/// The log at `leaves` leaves, in memory: batched appends, then inclusion
/// proofs (made and checked) and consistency proofs at that size.
fn log_figures(leaves: u64) -> Result<LogFigures> {
    let batch = 1000u64;
    let bar = crate::progress_bar(Some(leaves), "[7/7] log appends");
    let mut stored: Vec<postvault_log::Hash> = Vec::with_capacity(leaves as usize * 2);
    let mut hashes = Vec::with_capacity(batch as usize);
    let t = Instant::now();
    let mut n = 0u64;
    while n < leaves {
        let end = leaves.min(n + batch);
        hashes.clear();
        hashes.extend((n..end).map(|i| postvault_log::leaf_hash(&i.to_be_bytes())));
        let new = postvault_log::append_hashes(n, &hashes, &stored)?;
        stored.extend(new.into_iter().map(|(_, h)| h));
        n = end;
        if n.is_multiple_of(batch * 512) {
            bar.set_position(n);
        }
    }
    let append_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let root = postvault_log::tree_root(leaves, &stored)?;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let idx: Vec<u64> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % leaves
        })
        .collect();
    let t = Instant::now();
    let proofs = idx
        .iter()
        .map(|&i| postvault_log::prove_inclusion(i, leaves, &stored))
        .collect::<Result<Vec<_>, _>>()?;
    let inclusion_us = t.elapsed().as_secs_f64() * 1e6 / idx.len() as f64;
    let t = Instant::now();
    for (&i, p) in idx.iter().zip(&proofs) {
        postvault_log::verify_inclusion(
            i,
            leaves,
            &postvault_log::leaf_hash(&i.to_be_bytes()),
            p,
            &root,
        )?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / idx.len() as f64;
    let t = Instant::now();
    for &i in &idx {
        postvault_log::prove_consistency(i.max(1), leaves, &stored)?;
    }
    let consistency_us = t.elapsed().as_secs_f64() * 1e6 / idx.len() as f64;
    Ok(LogFigures {
        leaves,
        append_per_s: leaves as f64 / append_s,
        inclusion_us,
        verify_us,
        consistency_us,
    })
}

/// Phase 5: a vault in /dev/shm filled from the slice's first 500,000
/// lines, and the same reads on it.
fn ram_reads(
    input: &Path,
    lines: u64,
    a: &SuiteArgs,
    sample: &[String],
    reads: u64,
) -> Result<Option<Reads>> {
    let shm = tempfile::tempdir_in("/dev/shm").context("a directory in /dev/shm")?;
    let v = new_vault(&shm.path().join("vault"))?;
    // A slice of at most 500K records is enough for latency.
    let part = input.with_file_name("part.ndjson");
    let take = lines.min(500_000);
    {
        let mut w = BufWriter::new(std::fs::File::create(&part)?);
        for l in BufReader::new(std::fs::File::open(input)?)
            .lines()
            .take(take as usize)
        {
            writeln!(w, "{}", l?)?;
        }
        w.flush()?;
    }
    full_ingest(&v, &part, a.batch_size, take, "[5/7] RAM vault")?;
    let _ = std::fs::remove_file(&part);
    let known: Vec<String> = sample
        .iter()
        .filter(|s| {
            v.principal("sorting")
                .and_then(|p| v.read(&p, s, "delivery"))
                .is_ok_and(|r| !r.records.is_empty())
        })
        .take(5000)
        .cloned()
        .collect();
    let known = if known.is_empty() {
        sample.to_vec()
    } else {
        known
    };
    Ok(Some(timed_reads(&v, &known, reads, "[5/7] reads (RAM)")?))
}

pub fn run(a: &SuiteArgs) -> Result<u8> {
    if !(a.scale.is_finite() && a.scale > 0.0) {
        bail!("--scale must be a number > 0");
    }
    let started = chrono_now();
    let t_all = Instant::now();
    let tmp = bench_dir(a.dir.as_deref())?;
    let cfg = postvault_sim::SimConfig {
        scale: a.scale,
        seed: a.seed,
        ..postvault_sim::SimConfig::default()
    };
    let day = postvault_sim::Plan::new(&postvault_sim::SimConfig {
        scale: 1.0,
        ..cfg.clone()
    })
    .total_records();
    // The slice, the raw database and the vault each take about as much
    // as the slice: refuse up front rather than fill the disk midway.
    let per_record = 250u64;
    let need = postvault_sim::Plan::new(&cfg)
        .total_records()
        .saturating_mul(per_record * 3);
    if let Ok(st) = rustix::fs::statvfs(tmp.path()) {
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if need > free {
            bail!(
                "scale {} needs about {} GB of disk in `{}`, and {} GB are free; \
                 lower --scale or point --dir at a larger disk",
                a.scale,
                need / 1_000_000_000,
                tmp.path().display(),
                free / 1_000_000_000
            );
        }
    }
    let (flush_p50, flush_p99) = flush_latency_us(tmp.path())?;

    // 1. The slice, on disk once, so both ingest paths read the same bytes.
    let input = tmp.path().join("day.ndjson");
    let mut sample = Vec::new();
    let (lines, bytes, gen_s) = simulate(&cfg, &input, &mut sample)?;
    if sample.is_empty() {
        bail!("the simulated slice is empty; raise --scale");
    }

    // 2. Raw baseline.
    reset_peak_rss();
    let raw_s = raw_ingest(&input, &tmp.path().join("raw.db"), a.batch_size, lines)?;
    let raw_rss = peak_rss_mb();
    let _ = std::fs::remove_file(tmp.path().join("raw.db"));
    let _ = std::fs::remove_file(tmp.path().join("raw.db-wal"));

    // 3. Full path.
    reset_peak_rss();
    let vault_dir = tmp.path().join("vault");
    let vault = new_vault(&vault_dir)?;
    let (accepted, rejected, full_s) =
        full_ingest(&vault, &input, a.batch_size, lines, "[3/7] full path")?;
    let ingest_rss = peak_rss_mb();
    if rejected > 0 {
        bail!("{rejected} simulated records were refused: the simulator and the pack disagree");
    }

    // 4. Reads on the vault just filled: one thread, then several.
    let reads = a.reads.max(1);
    reset_peak_rss();
    let one = timed_reads(&vault, &sample, reads, "[4/7] reads (one thread)")?;
    let threads = 8;
    let many = concurrent_reads(&vault, &sample, threads, a.read_seconds.clamp(0.1, 600.0))?;
    let (cached_ns, cedar_us) = decisions(&vault);
    let read_rss = peak_rss_mb();

    // 5. The same reads with the vault on RAM (no device flush): what the
    //    software itself costs per read.
    // Best effort: a small /dev/shm (containers give 64 MB) or any other
    // failure here leaves the RAM figures out, not the run.
    let ram = match Path::new("/dev/shm").is_dir() {
        true => ram_reads(&input, lines, a, &sample, reads).unwrap_or_else(|e| {
            eprintln!("postvault: the reads on RAM were skipped: {e:#}");
            None
        }),
        false => None,
    };

    // 6. Erasure of people drawn uniformly from the population (most hold
    //    a few records, some none), on the vault opened afresh (no key
    //    cached).
    drop(vault);
    reset_peak_rss();
    let vault = Vault::open(&vault_dir, OpenOptions::default())?;
    let officer = vault.principal("officer")?;
    let people = postvault_sim::Plan::new(&cfg).subjects();
    // Never zero, or xorshift stays at zero.
    let mut x = (a.seed ^ 0x2545_f491_4f6c_dd1d) | 1;
    let mut drawn = std::collections::BTreeSet::new();
    while (drawn.len() as u64) < people.min(SAMPLE as u64) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        drawn.insert(1 + x % people);
    }
    let erase_ids: Vec<String> = drawn.iter().map(|n| format!("cust-{n:012}")).collect();
    let bar = crate::progress_bar(Some(erase_ids.len() as u64), "[6/7] erasing");
    let t = Instant::now();
    let er = vault.erase(&officer, &erase_ids, &mut |k| bar.set_position(k))?;
    let erase_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // The purge of the erased people's dead rows, timed on its own.
    let t = Instant::now();
    let purged = vault.purge_erased(&mut |_| {})?;
    let purge_s = t.elapsed().as_secs_f64();
    let erase_rss = peak_rss_mb();
    drop(vault);

    // 7. The log at the size this run ingested (at least 1M leaves, at
    //    most 10M: 64 bytes a leaf of hashes held in memory, so it runs last).
    reset_peak_rss();
    let log = log_figures(
        a.log_leaves
            .unwrap_or_else(|| accepted.clamp(1_000_000, 10_000_000))
            .max(2),
    )?;
    let log_rss = peak_rss_mb();

    let raw_rate = lines as f64 / raw_s;
    let full_rate = accepted as f64 / full_s;
    let hours = |rate: f64| round(day as f64 / rate / 3600.0, 2);
    let out = serde_json::json!({
        "bench": "suite",
        "started": started,
        "seconds": round(t_all.elapsed().as_secs_f64(), 1),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": git_commit(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": {
            "facts": crate::machine(),
            "memory_gib": memory_gib(),
            "fdatasync_p50_us": round(flush_p50, 1),
            "fdatasync_p99_us": round(flush_p99, 1),
        },
        "slice": {
            "scale": a.scale,
            "seed": a.seed,
            "records": lines,
            "bytes": bytes,
            "generate_records_per_s": (lines as f64 / gen_s).round(),
        },
        "ingest": {
            "batch_size": a.batch_size,
            "raw_sqlite_records_per_s": raw_rate.round(),
            "full_path_records_per_s": full_rate.round(),
            "ratio_full_to_raw": round(full_rate / raw_rate, 3),
            "accepted": accepted,
            "rejected": rejected,
            "raw_peak_rss_mb": raw_rss,
            "full_peak_rss_mb": ingest_rss,
        },
        "read": {
            "subjects": sample.len(),
            "reads": reads,
            "records_returned": one.returned,
            "p50_us": round(one.p50, 1),
            "p99_us": round(one.p99, 1),
            "reads_per_s_one_thread": one.per_s.round(),
            "threads": threads,
            "reads_per_s_threads": many.round(),
            "records_per_read": round(one.returned as f64 / reads as f64, 1),
            "ram_records_per_read": ram.as_ref().map(|r| round(r.returned as f64 / reads as f64, 1)),
            "ram_p50_us": ram.as_ref().map(|r| round(r.p50, 1)),
            "ram_p99_us": ram.as_ref().map(|r| round(r.p99, 1)),
            "ram_reads_per_s_one_thread": ram.as_ref().map(|r| r.per_s.round()),
            "cached_decision_ns": round(cached_ns, 2),
            "cedar_decision_us": round(cedar_us, 2),
            "peak_rss_mb": read_rss,
        },
        "log": {
            "leaves": log.leaves,
            "append_leaves_per_s": log.append_per_s.round(),
            "inclusion_prove_us": round(log.inclusion_us, 2),
            "inclusion_verify_us": round(log.verify_us, 2),
            "consistency_prove_us": round(log.consistency_us, 2),
            "peak_rss_mb": log_rss,
        },
        "erase": {
            "asked": erase_ids.len(),
            "erased": er.erased,
            "records_deleted": er.records_deleted,
            "keys_destroyed": er.keys_destroyed,
            "seconds": round(erase_s, 3),
            "subjects_per_s": (erase_ids.len() as f64 / erase_s).round(),
            "records_deleted_per_s": (er.records_deleted as f64 / erase_s).round(),
            "peak_rss_mb": erase_rss,
            "purge": {
                "people": purged.people,
                "records": purged.records,
                "seconds": round(purge_s, 3),
                "people_per_s": (purged.people as f64 / purge_s).round(),
                "records_per_s": (purged.records as f64 / purge_s).round(),
            },
        },
        "projection": {
            "us_postal_day_records": day,
            "full_path_hours": hours(full_rate),
            "raw_sqlite_hours": hours(raw_rate),
            "records_per_s_for_20_minutes": (day as f64 / 1200.0).round(),
        },
    });
    let text = serde_json::to_string_pretty(&out)?;
    crate::print_text(&text)?;
    if let Some(path) = &a.json {
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing `{}`", path.display()))?;
    }
    if let Some(md) = &a.markdown {
        write_markdown(md, &markdown(&out))?;
        eprintln!("postvault-bench: wrote the table into `{}`", md.display());
    }
    Ok(0)
}

/// UTC now, to the second.
fn chrono_now() -> String {
    let ms = postvault::Clock::now_ms(&postvault::SystemClock);
    let mut s = postvault::format_ms(ms - ms.rem_euclid(1000));
    s.replace_range(19..23, "");
    s
}

fn fmt_int(x: &serde_json::Value) -> String {
    let Some(n) = x.as_f64() else {
        return "n/a".into();
    };
    let s = format!("{}", n.round() as i64);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_num(x: &serde_json::Value) -> String {
    x.as_f64().map_or_else(|| "n/a".into(), |n| format!("{n}"))
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "",
    }
}

/// The table row of a read latency: `prefix` picks the figures (`""`: on
/// the bench directory's device, `"ram_"`: on RAM).
fn read_row(
    o: &serde_json::Value,
    what: &str,
    prefix: &str,
    baseline: String,
) -> (String, String, String, String, String) {
    let r = &o["read"];
    let p50 = &r[format!("{prefix}p50_us")];
    (
        "read".into(),
        format!(
            "p50 / p99, {what} ({} records a read)",
            fmt_num(&r[format!("{prefix}records_per_read")])
        ),
        format!(
            "{} / {} µs",
            fmt_num(p50),
            fmt_num(&r[format!("{prefix}p99_us")])
        ),
        baseline,
        format!("p50 ≤ 25 µs: {}", met(p50.as_f64().map(|x| x <= 25.0))),
    )
}

/// The markdown section of one run.
fn markdown(o: &serde_json::Value) -> String {
    let g = |a: &str, b: &str| &o[a][b];
    let f = |a: &str, b: &str| o[a][b].as_f64();
    let mut s = String::new();
    let facts = &o["machine"]["facts"];
    s.push_str(&format!(
        "## Benchmark suite ({})\n\n```sh\n{}\n```\n\n",
        o["started"].as_str().unwrap_or(""),
        o["command"].as_str().unwrap_or("postvault bench")
    ));
    s.push_str(&format!(
        "Commit `{}`, {} cores ({}, {}), {} GiB; the bench directory's `fdatasync` p50 {} µs, p99 {} µs. \
         Slice: scale {}, seed {}, {} records ({} MB), generated at {} records/s. \
         Whole run {} s.\n\n",
        o["commit"].as_str().unwrap_or("unknown"),
        fmt_num(&facts["cores"]),
        facts["cpu"].as_str().unwrap_or("unknown"),
        facts["arch"].as_str().unwrap_or(""),
        fmt_num(&o["machine"]["memory_gib"]),
        fmt_num(&o["machine"]["fdatasync_p50_us"]),
        fmt_num(&o["machine"]["fdatasync_p99_us"]),
        fmt_num(g("slice", "scale")),
        fmt_num(g("slice", "seed")),
        fmt_int(g("slice", "records")),
        fmt_int(&serde_json::json!(f("slice", "bytes").unwrap_or(0.0) / 1e6)),
        fmt_int(g("slice", "generate_records_per_s")),
        fmt_num(&o["seconds"]),
    ));
    s.push_str(
        "| path | measure | value | raw baseline / reference | target |\n|---|---|---|---|---|\n",
    );
    let full = f("ingest", "full_path_records_per_s");
    let ratio = f("ingest", "ratio_full_to_raw");
    let rows: Vec<(String, String, String, String, String)> = vec![
        (
            "ingest".into(),
            "full path records/s".into(),
            fmt_int(g("ingest", "full_path_records_per_s")),
            format!(
                "raw SQLite {} records/s",
                fmt_int(g("ingest", "raw_sqlite_records_per_s"))
            ),
            format!("≥ 300,000: {}", met(full.map(|x| x >= 300_000.0))),
        ),
        (
            "ingest".into(),
            "full / raw".into(),
            fmt_num(g("ingest", "ratio_full_to_raw")),
            "1.0".into(),
            format!("≥ 0.7: {}", met(ratio.map(|x| x >= 0.7))),
        ),
        (
            "ingest".into(),
            "peak RSS (full path)".into(),
            format!("{} MB", fmt_num(g("ingest", "full_peak_rss_mb"))),
            format!("raw {} MB", fmt_num(g("ingest", "raw_peak_rss_mb"))),
            format!(
                "≤ 256 MB: {}",
                met(f("ingest", "full_peak_rss_mb").map(|x| x <= 256.0))
            ),
        ),
        read_row(
            o,
            "one thread, each logged durably",
            "",
            format!(
                "fdatasync p50 {} µs",
                fmt_num(&o["machine"]["fdatasync_p50_us"])
            ),
        ),
        read_row(o, "vault on RAM, no device flush", "ram_", "".into()),
        (
            "read".into(),
            format!(
                "reads/s, one thread / {} threads",
                fmt_num(g("read", "threads"))
            ),
            format!(
                "{} / {}",
                fmt_int(g("read", "reads_per_s_one_thread")),
                fmt_int(g("read", "reads_per_s_threads"))
            ),
            "".into(),
            "".into(),
        ),
        (
            "decision".into(),
            "cached".into(),
            format!("{} ns", fmt_num(g("read", "cached_decision_ns"))),
            format!(
                "Cedar uncached {} µs",
                fmt_num(g("read", "cedar_decision_us"))
            ),
            format!(
                "≤ 0.2 µs: {}",
                met(f("read", "cached_decision_ns").map(|x| x <= 200.0))
            ),
        ),
        (
            "log".into(),
            format!(
                "appends, in memory, to {} leaves",
                fmt_int(g("log", "leaves"))
            ),
            format!("{} leaves/s", fmt_int(g("log", "append_leaves_per_s"))),
            "".into(),
            format!(
                "≥ 1M/s: {}",
                met(f("log", "append_leaves_per_s").map(|x| x >= 1e6))
            ),
        ),
        (
            "log".into(),
            "inclusion prove / verify; consistency prove".into(),
            format!(
                "{} / {}; {} µs",
                fmt_num(g("log", "inclusion_prove_us")),
                fmt_num(g("log", "inclusion_verify_us")),
                fmt_num(g("log", "consistency_prove_us"))
            ),
            "".into(),
            format!(
                "inclusion ≤ 50 µs: {}",
                met(f("log", "inclusion_prove_us").map(|x| x <= 50.0))
            ),
        ),
        (
            "erase".into(),
            format!(
                "people/s ({} asked, {} with data)",
                fmt_int(g("erase", "asked")),
                fmt_int(g("erase", "erased"))
            ),
            fmt_int(g("erase", "subjects_per_s")),
            format!(
                "{} records made dead; their purge after: {} records/s",
                fmt_int(g("erase", "records_deleted")),
                fmt_int(&o["erase"]["purge"]["records_per_s"])
            ),
            format!(
                "≥ 100,000: {}",
                met(f("erase", "subjects_per_s").map(|x| x >= 100_000.0))
            ),
        ),
        (
            "projection".into(),
            format!(
                "a U.S. postal day ({} records)",
                fmt_int(g("projection", "us_postal_day_records"))
            ),
            format!("{} h", fmt_num(g("projection", "full_path_hours"))),
            format!("raw {} h", fmt_num(g("projection", "raw_sqlite_hours"))),
            format!(
                "20 min: {}",
                met(f("projection", "full_path_hours").map(|x| x <= 1.0 / 3.0))
            ),
        ),
    ];
    for (a, b, c, d, e) in rows {
        s.push_str(&format!("| {a} | {b} | {c} | {d} | {e} |\n"));
    }
    s.push_str(&format!(
        "\nPeak RSS by phase: raw {} MB, full path {} MB, reads {} MB, erase {} MB, log {} MB (its tree in memory, 64 bytes a leaf).\n",
        fmt_num(g("ingest", "raw_peak_rss_mb")),
        fmt_num(g("ingest", "full_peak_rss_mb")),
        fmt_num(g("read", "peak_rss_mb")),
        fmt_num(g("erase", "peak_rss_mb")),
        fmt_num(g("log", "peak_rss_mb")),
    ));
    s
}

/// Replaces the suite's section of `path` (between the markers) with
/// `section`, or appends it; the file is replaced atomically.
fn write_markdown(path: &Path, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_string(),
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", path.display())),
    };
    let block = format!("{BEGIN}\n{section}{END}\n");
    let begin = old.find(BEGIN);
    let end = begin.and_then(|b| old[b..].find(END).map(|e| b + e));
    let new = match (begin, end) {
        (Some(b), Some(e)) => {
            format!(
                "{}{}{}",
                &old[..b],
                block,
                old[e + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_string() + "\n",
            block
        ),
    };
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, new).with_context(|| format!("writing `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_section_is_replaced_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.md");
        std::fs::write(&p, "# Benchmarks\n\nintro\n\n## Other\n\nkept\n").unwrap();
        write_markdown(&p, "first\n").unwrap();
        write_markdown(&p, "second\n").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("intro") && s.contains("kept"));
        assert!(s.contains("second") && !s.contains("first"));
        assert_eq!(s.matches(BEGIN).count(), 1);
        assert_eq!(s.matches(END).count(), 1);
    }

    #[test]
    fn dates_and_numbers_format() {
        let d = chrono_now();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20"));
        assert_eq!(fmt_int(&serde_json::json!(1234567.4)), "1,234,567");
        assert_eq!(fmt_int(&serde_json::json!(999)), "999");
        assert_eq!(fmt_int(&serde_json::Value::Null), "n/a");
    }
}
