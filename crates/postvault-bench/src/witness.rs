//! `postvault-bench witness`: what witnesses cost. The latency of a
//! checkpoint signed alone and signed and cosigned by two witnesses on
//! loopback (HTTP, SQLite state each), and targeted reads without
//! witnesses and with a cosigning round running beside them much more
//! often than `serve` does, to show reads do not wait for witnesses.

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};

use postvault_server::LocalWitnesses;
use postvault_sim::LinesReader;

use crate::paths::{bench_dir, percentile, simulated_lines, subjects_of};

#[derive(Args, Debug)]
pub struct WitnessBenchArgs {
    /// Records collected first.
    #[arg(long, default_value_t = 20_000)]
    pub records: u64,
    /// Checkpoints measured each way.
    #[arg(long, default_value_t = 100)]
    pub rounds: u64,
    /// Reads between two checkpoints.
    #[arg(long, default_value_t = 50)]
    pub reads_per_round: u64,
    /// Targeted reads measured each way.
    #[arg(long, default_value_t = 20_000)]
    pub reads: u64,
    /// Milliseconds between cosigning rounds while reads are measured.
    #[arg(long, default_value_t = 100)]
    pub round_every_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the temporary vault (default: the system's).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    serde_json::json!({
        "n": v.len(),
        "p50": percentile(&v, 0.50),
        "p99": percentile(&v, 0.99),
        "mean": mean,
    })
}

fn reads(vault: &Vault, subjects: &[String], n: u64) -> Result<(Vec<f64>, f64)> {
    let sorting = vault.principal("sorting")?;
    let mut lat = Vec::with_capacity(n as usize);
    let t = Instant::now();
    for i in 0..n {
        let s = &subjects[(i as usize * 7919) % subjects.len().max(1)];
        let t0 = Instant::now();
        vault.read(&sorting, s, "delivery")?;
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok((lat, n as f64 / t.elapsed().as_secs_f64()))
}

pub fn run(a: &WitnessBenchArgs) -> Result<u8> {
    let lines = simulated_lines(a.records, a.seed);
    let subjects = subjects_of(&lines);
    let tmp = bench_dir(a.dir.as_deref())?;
    let dir = tmp.path().join("vault");
    let vault = Vault::init(&dir, OpenOptions::default())?;
    vault.add_principal("ingest", "collector")?;
    vault.add_principal("sorting", "delivery")?;
    let ingest = vault.principal("ingest")?;
    let report = vault.collect(
        &ingest,
        &mut BufReader::with_capacity(1 << 20, LinesReader::new(lines.into_iter())),
        &CollectOptions::default(),
        &mut |_| {},
    )?;
    if let Some(f) = &report.failure {
        anyhow::bail!("collection failed: {}", f.message);
    }
    let witness_state = tempfile::tempdir()?;
    let witnesses = LocalWitnesses::start(witness_state.path(), 2, &vault.log_verifier_key())?;
    let sorting = vault.principal("sorting")?;

    // Checkpoints signed alone.
    let mut sign = Vec::new();
    for i in 0..a.rounds {
        for j in 0..a.reads_per_round {
            let s = &subjects[((i * a.reads_per_round + j) as usize) % subjects.len().max(1)];
            vault.read(&sorting, s, "delivery")?;
        }
        let t = Instant::now();
        vault.checkpoint()?;
        sign.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // Reads, no witness anywhere.
    let (plain_lat, plain_rate) = reads(&vault, &subjects, a.reads)?;

    // The same vault with two witnesses, quorum 2.
    let vault = Arc::new(vault.with_witnesses(witnesses.policy()?)?);
    vault.cosign()?;
    let mut cosign = Vec::new();
    let mut finals = 0u64;
    for i in 0..a.rounds {
        for j in 0..a.reads_per_round {
            let s = &subjects[((i * a.reads_per_round + j) as usize) % subjects.len().max(1)];
            vault.read(&sorting, s, "delivery")?;
        }
        let t = Instant::now();
        let r = vault.cosign()?;
        cosign.push(t.elapsed().as_secs_f64() * 1e3);
        finals += u64::from(r.checkpoint.is_final);
    }
    // Reads while a cosigning round runs beside them.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds_run = Arc::new(AtomicU64::new(0));
    let bg = {
        let (v, stop, n) = (vault.clone(), stop.clone(), rounds_run.clone());
        let every = Duration::from_millis(a.round_every_ms.max(1));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if v.cosign().is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        })
    };
    let (witnessed_lat, witnessed_rate) = reads(&vault, &subjects, a.reads)?;
    stop.store(true, Ordering::Relaxed);
    let _ = bg.join();

    let out = serde_json::json!({
        "machine": crate::machine(),
        "records": report.accepted,
        "witnesses": 2,
        "quorum": 2,
        "checkpoint_sign_ms": stats(sign),
        "checkpoint_sign_and_cosign_ms": stats(cosign),
        "cosigned_final": finals,
        "reads_without_witnesses": {"latency_us": stats(plain_lat), "per_s": plain_rate},
        "reads_with_witness_rounds": {
            "latency_us": stats(witnessed_lat),
            "per_s": witnessed_rate,
            "rounds_during": rounds_run.load(Ordering::Relaxed),
            "round_every_ms": a.round_every_ms,
        },
    });
    crate::print_json(&out)?;
    Ok(0)
}
