//! `postvault bench ...`: the benchmarks live in their own binary,
//! `postvault-bench`, so the tool users run carries no benchmark code. This
//! verb runs that binary from beside this one with the same arguments and
//! answers with its exit code.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The command that builds the benchmark binary, named in the error when
/// it is missing.
const BUILD: &str = "cargo build --release -p postvault-bench";

/// Runs `postvault-bench ARGS...` found beside this binary; its stdout and
/// stderr are this process's. Exit code: the benchmark's (1 if a signal
/// ended it).
pub fn forward(args: &[OsString]) -> Result<u8> {
    let exe = bench_exe()?;
    let status = std::process::Command::new(&exe)
        .args(args)
        .status()
        .with_context(|| format!("running `{}`", exe.display()))?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(crate::EXIT_ERROR))
}

fn bench_exe() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding the postvault binary")?;
    let exe = me.with_file_name(format!("postvault-bench{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        bail!(
            "the benchmarks are a separate binary, `postvault-bench`, not found beside `{}`: \
             build it with `{BUILD}` or run them with `cargo run --release -p postvault-bench -- ...`",
            me.display()
        );
    }
    Ok(exe)
}
