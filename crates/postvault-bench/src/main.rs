//! `postvault-bench`: throughput, latency and memory of postvault's paths,
//! each against a raw baseline measured in the same run on the same
//! machine. A binary of its own, so the tool users run (`postvault`) carries
//! no benchmark code, no raw-SQL baselines and no test clusters.
//!
//! Run it as `cargo run --release -p postvault-bench -- [SUBCOMMAND]`;
//! `postvault bench ...` forwards here when this binary sits beside
//! `postvault`. JSON on stdout, progress on stderr; no file is written
//! unless a flag names it (`--json`, `--markdown`).
//!
//! Exit codes: 0 done; 1 error; 2 bad usage.

mod http;
mod oracle;
mod pages;
mod paths;
mod pg;
mod small_ops;
mod stats;
mod suite;
mod witness;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// The same allocator as `postvault`, so the figures are those of the
/// shipped binary's paths.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Without a subcommand: the whole suite in one run (ingest vs raw SQLite,
/// reads, decisions, log, erasure, memory, the projection to a U.S. postal
/// day), printed as JSON; `--markdown BENCHMARKS.md` also writes it as a
/// table.
#[derive(Parser, Debug)]
#[command(
    name = "postvault-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Ingest through the full path vs raw batched SQLite inserts of the same bytes.
    Ingest(paths::IngestArgs),
    /// Log append and proof times: in memory, and through a vault's store.
    Log(paths::LogArgs),
    /// Targeted read latency (each read durably logged) and decision times.
    Read(paths::ReadArgs),
    /// Erasure: people erased per second, keys destroyed, rows deleted.
    Erase(paths::EraseArgs),
    /// Retention: a sweep over expired records, records per second, bounded memory.
    Retention(paths::RetentionArgs),
    /// The HTTP service under load on loopback: authenticated logged reads/s
    /// with p50/p99, and NDJSON ingest records/s.
    Http(http::HttpArgs),
    /// Small operations over HTTP from concurrent clients (one-record
    /// inserts, reads, corrections, consents, access reports, erasures)
    /// next to raw PostgreSQL running the equivalent statements.
    SmallOps(small_ops::SmallOpsArgs),
    /// Existence oracles by time: the median of a denied read and of a
    /// refused disclosure submission naming a person with 600 records,
    /// against made-up ids (target: within 10%).
    Oracle(oracle::OracleArgs),
    /// Ingest on PostgreSQL: the full path vs raw binary COPY of the same
    /// bytes, and the aggregate of several vault processes at once.
    PgIngest(pg::PgIngestArgs),
    /// One node of `pg-ingest`'s aggregate run.
    #[command(hide = true)]
    PgNode(pg::PgNodeArgs),
    /// Witnesses: checkpoint latency signed alone and cosigned by two
    /// local witnesses, and reads with and without cosigning rounds.
    Witness(witness::WitnessBenchArgs),
    /// Statistics: a DP count by day and ZIP3 over many scan events from a
    /// freshly opened vault, records scanned per second, peak memory.
    Stats(stats::StatsArgs),
    /// The pages: render p50/p99 of each page of the public site, the
    /// office and a person's portal on a demo-sized vault; the office's
    /// queue with 10K requests waiting; the person's browser checking 100
    /// proofs (headless Chromium over WebDriver).
    Pages(pages::PagesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = match &cli.cmd {
        None => suite::run(&cli.suite),
        Some(Cmd::Ingest(a)) => paths::ingest(a),
        Some(Cmd::Log(a)) => paths::log(a),
        Some(Cmd::Read(a)) => paths::read(a),
        Some(Cmd::Erase(a)) => paths::erase(a),
        Some(Cmd::Retention(a)) => paths::retention(a),
        Some(Cmd::Http(a)) => http::http(a),
        Some(Cmd::SmallOps(a)) => small_ops::run(a),
        Some(Cmd::Oracle(a)) => oracle::oracle(a),
        Some(Cmd::PgIngest(a)) => pg::ingest(a),
        Some(Cmd::PgNode(a)) => pg::node(a),
        Some(Cmd::Witness(a)) => witness::run(a),
        Some(Cmd::Stats(a)) => stats::run(a),
        Some(Cmd::Pages(a)) => pages::run(a),
    };
    match run {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("postvault-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `v` as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    print_text(&serde_json::to_string_pretty(v)?)
}

/// Prints `text` and a newline on stdout, flushed.
pub fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// A progress bar on stderr for `len` steps of `what` (a spinner when the
/// length is unknown).
pub fn progress_bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Collects `lines` (NDJSON, `total` of them) into `vault` as `who`, in
/// process, under a progress bar saying `what`; a collection that failed is
/// an error.
pub fn collect_lines(
    vault: &postvault::Vault,
    who: &postvault::Principal,
    lines: impl Iterator<Item = String>,
    total: u64,
    what: &str,
) -> Result<postvault::CollectReport> {
    let bar = progress_bar(Some(total), what);
    let report = vault.collect(
        who,
        &mut std::io::BufReader::with_capacity(1 << 20, postvault_sim::LinesReader::new(lines)),
        &postvault::CollectOptions::default(),
        &mut |k| bar.set_position(k),
    )?;
    bar.finish_and_clear();
    if let Some(f) = &report.failure {
        anyhow::bail!("collection failed: {}", f.message);
    }
    Ok(report)
}

/// Facts about this machine for benchmark reports.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
