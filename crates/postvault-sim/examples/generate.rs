//! Writes the simulation to stdout and timing to stderr:
//! `cargo run --release -p postvault-sim --example generate -- 0.001 [seed] > day.ndjson`

use std::io::Write;
use std::time::Instant;

use postvault_sim::{Plan, SimConfig, write_ndjson};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let scale = args.next().and_then(|s| s.parse().ok()).unwrap_or(0.001);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = SimConfig {
        scale,
        seed,
        ..SimConfig::default()
    };
    let plan = Plan::new(&cfg);
    let mut err = std::io::stderr();
    writeln!(
        err,
        "scale {scale} seed {seed}: {} records, {} subjects",
        plan.total_records(),
        plan.subjects()
    )?;
    for (cat, n) in plan.counts() {
        writeln!(err, "  {cat:<30} {n:>12}")?;
    }
    let start = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let n = write_ndjson(&cfg, &mut out, &mut |_| {})?;
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        err,
        "{n} lines in {secs:.2} s ({:.0} lines/s)",
        n as f64 / secs
    )?;
    Ok(())
}
