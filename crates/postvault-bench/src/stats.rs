//! `postvault-bench stats`: a differentially private count grouped by day
//! and ZIP3 over many scan events, from a freshly opened vault: records
//! scanned per second, and peak memory of the process that only queries
//! (the collection runs in a child process, so its memory is not counted).

use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use postvault::{CollectOptions, FixedClock, OpenOptions, StatsRequest, Vault, format_ms};
use postvault_sim::LinesReader;

use crate::paths::{AnonPeak, anon_rss_mb, bench_dir, cpu_seconds, peak_rss_mb};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Scan events collected before the query.
    #[arg(long, default_value_t = 10_000_000)]
    pub records: u64,
    /// People the events are spread over.
    #[arg(long, default_value_t = 1_000_000)]
    pub people: u64,
    /// Where the vault is made (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Query a copy of a vault collected before (by `--collect-only`, with
    /// the same `--records` and `--people`) instead of collecting; a vault
    /// of an older schema is migrated when the copy is opened (timed apart).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Drop the operating system's page cache before opening the vault
    /// (needs root; reported when it cannot).
    #[arg(long)]
    pub cold: bool,
    /// Build the category's scan blocks (`postvault stats blocks`) after
    /// the collection, timed apart, so the query reads them; then the
    /// vault is closed (and with `--cold` the page cache dropped) before
    /// the query opens it again.
    #[arg(long)]
    pub blocks: bool,
    /// Only build the scan blocks of the vault at `--dir` in place (to
    /// query copies of it later with `--from`), and print what was built.
    #[arg(long, hide = true)]
    pub build_only: bool,
    /// Only collect into `--dir` (the child process of a run).
    #[arg(long, hide = true)]
    pub collect_only: bool,
}

/// 2026-11-02T00:00:00Z: the benchmark's fixed clock, so the events are
/// inside their retention.
const T0: i64 = 1_793_577_600_000;

fn opts() -> OpenOptions {
    OpenOptions {
        clock: std::sync::Arc::new(FixedClock::new(T0)),
        ..OpenOptions::default()
    }
}

/// One day and one hour in milliseconds.
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

fn events(records: u64, people: u64) -> impl Iterator<Item = String> {
    let people = people.max(1);
    (0..records).map(move |i| {
        // A fixed spread over the 14 days before T0 (2026-10-19 to
        // 2026-11-01, the query's window), 40 ZIP3s and every person.
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let day = ((h >> 7) % 14) as i64;
        let hour = ((h >> 3) % 24) as i64;
        let scanned_at = format_ms(T0 - (14 - day) * DAY_MS + hour * HOUR_MS);
        let zip3 = 100 + (h >> 13) % 40;
        format!(
            "{{\"subject\":\"cust-{:09}\",\"category\":\"scan_event\",\"purpose\":\"delivery\",\"fields\":{{\"piece\":\"letter\",\"facility_zip\":\"{zip3}01\",\"op_code\":\"918\",\"event\":\"processed\",\"scanned_at\":\"{scanned_at}\"}}}}",
            (h >> 21) % people,
        )
    })
}

pub fn run(a: &StatsArgs) -> Result<u8> {
    if a.collect_only {
        let dir = a.dir.as_deref().context("--collect-only needs --dir")?;
        let vault = Vault::init(dir, opts())?;
        vault.add_principal("ingest", "collector")?;
        vault.add_principal("analyst", "statistics")?;
        let ingest = vault.principal("ingest")?;
        let r = vault.collect(
            &ingest,
            &mut BufReader::with_capacity(1 << 20, LinesReader::new(events(a.records, a.people))),
            &CollectOptions::default(),
            &mut |_| {},
        )?;
        if r.accepted != a.records {
            bail!("collected {} of {} events", r.accepted, a.records);
        }
        return Ok(0);
    }
    if a.build_only {
        let dir = a.dir.as_deref().context("--build-only needs --dir")?;
        let vault = Vault::open(dir, opts())?;
        let t = Instant::now();
        let cpu = cpu_seconds();
        let b = vault.build_scan_blocks("scan_event", &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu).map(|(a, b)| a - b);
        crate::print_json(&serde_json::json!({
            "seconds": secs,
            "records_per_s": b.records as f64 / secs,
            "cpu_s": cpu,
            "built": b,
        }))?;
        return Ok(0);
    }
    let tmp = bench_dir(a.dir.as_deref())?;
    let dir = tmp.path().join("vault");
    let t = Instant::now();
    match &a.from {
        Some(src) => copy_vault(src, &dir)?,
        None => {
            let exe = std::env::current_exe().context("finding the postvault-bench binary")?;
            let status = std::process::Command::new(&exe)
                .args(["stats", "--collect-only", "--records"])
                .arg(a.records.to_string())
                .arg("--people")
                .arg(a.people.to_string())
                .arg("--dir")
                .arg(&dir)
                .status()
                .context("running the collection")?;
            if !status.success() {
                bail!("the collection failed");
            }
        }
    }
    let collect_s = t.elapsed().as_secs_f64();
    let built = if a.blocks {
        let vault = Vault::open(&dir, opts())?;
        let t = Instant::now();
        let cpu = cpu_seconds();
        let b = vault.build_scan_blocks("scan_event", &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu).map(|(a, b)| a - b);
        if !b.supported {
            bail!("the store keeps no scan blocks");
        }
        Some(serde_json::json!({
            "seconds": secs,
            "records_per_s": b.records as f64 / secs,
            "cpu_s": cpu,
            "people": b.people,
            "blocks": b.blocks,
            "records": b.records,
            "tag": b.tag,
        }))
    } else {
        None
    };
    let cold = a.cold && drop_page_cache();
    let t = Instant::now();
    let vault = Vault::open(&dir, opts())?;
    let open_s = t.elapsed().as_secs_f64();
    let analyst = vault.principal("analyst")?;
    let req: StatsRequest = serde_json::from_value(serde_json::json!({
        "category": "scan_event", "measure": "count", "group_by": ["day", "zip3"],
        "from": "2026-10-19", "to": "2026-11-02", "epsilon": 0.5,
    }))?;
    let rss_before = peak_rss_mb();
    let cpu_before = cpu_seconds();
    let anon_before = anon_rss_mb();
    let anon = AnonPeak::start();
    let t = Instant::now();
    let answer = vault.statistics(&analyst, "statistics", &req)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let anon_peak = anon.finish();
    crate::print_json(&serde_json::json!({
        "records": a.records,
        "people": a.people,
        "groups_released": answer.groups.len(),
        "query_s": secs,
        "records_per_s": a.records as f64 / secs,
        "query_cpu_s": cpu,
        "cpu_us_per_record": cpu.map(|c| c * 1e6 / a.records as f64),
        "collect_s": collect_s,
        "collected": a.from.is_none(),
        "blocks_built": built,
        "open_s": open_s,
        "cold_cache": cold,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "peak_rss_mb_before_query": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "anon_rss_mb_before_query": anon_before,
        "peak_anon_rss_mb_during_query": anon_peak,
        "privacy": answer.privacy,
    }))?;
    Ok(0)
}

/// Copies the files of the vault at `src` into `dst` (made).
fn copy_vault(src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("making {}", dst.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name()))
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Writes back dirty pages and drops the page cache; false (with a note on
/// stderr) when this process may not.
fn drop_page_cache() -> bool {
    let _ = std::process::Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("--cold: the page cache was not dropped ({e}); the run is warm");
            false
        }
    }
}
