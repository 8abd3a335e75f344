//! The `postvault-bench` binary end to end: each run prints its figures as
//! JSON, every figure there, and writes no file unless a flag names it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `postvault-bench ARGS` in `cwd`.
fn pv(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postvault-bench"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn ingest_runs_small() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pv(
        tmp.path(),
        &[
            "ingest",
            "--records",
            "3000",
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["accepted"], 3000);
    assert_eq!(r["rejected"], 0);
    assert!(r["ratio_full_to_raw"].as_f64().unwrap() > 0.0);
}

#[test]
fn suite_runs_small_and_writes_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let md = tmp.path().join("BENCHMARKS.md");
    std::fs::write(&md, "# Benchmarks\n\nHand-written notes.\n").unwrap();
    let args = [
        "--scale",
        "0.000005",
        "--reads",
        "50",
        "--read-seconds",
        "0.2",
        "--log-leaves",
        "5000",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--dir",
        tmp.path().to_str().unwrap(),
    ];
    let o = pv(tmp.path(), &args);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    );
    let records = v["slice"]["records"].as_u64().unwrap();
    assert!(records > 0);
    // Every simulated record accepted, and every figure there.
    assert_eq!(v["ingest"]["accepted"].as_u64().unwrap(), records);
    assert_eq!(v["ingest"]["rejected"], 0);
    for (a, b) in [
        ("ingest", "raw_sqlite_records_per_s"),
        ("ingest", "full_path_records_per_s"),
        ("ingest", "ratio_full_to_raw"),
        ("read", "p50_us"),
        ("read", "cached_decision_ns"),
        ("read", "cedar_decision_us"),
        ("log", "append_leaves_per_s"),
        ("log", "inclusion_prove_us"),
        ("log", "consistency_prove_us"),
        ("erase", "subjects_per_s"),
        ("projection", "full_path_hours"),
    ] {
        assert!(
            v[a][b].as_f64().is_some_and(|x| x > 0.0),
            "{a}.{b}: {}",
            v[a][b]
        );
    }
    assert_eq!(v["log"]["leaves"], 5000);
    assert!(v["erase"]["erased"].as_u64().unwrap() > 0);
    assert!(v["machine"]["facts"]["cores"].as_u64().unwrap() >= 1);
    // The table went in beside what was there; a second run replaces it.
    let first = std::fs::read_to_string(&md).unwrap();
    assert!(first.contains("Hand-written notes."));
    assert!(first.contains("| ingest | full path records/s |"));
    let o = pv(tmp.path(), &args);
    assert_eq!(code(&o), 0);
    let second = std::fs::read_to_string(&md).unwrap();
    assert_eq!(second.matches("## Benchmark suite").count(), 1);
    assert!(second.contains("Hand-written notes."));
    // A bad scale is refused with a clear message and exit 1.
    let bad = pv(tmp.path(), &["--scale=0", "--no-markdown"]);
    assert_eq!(code(&bad), 1);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--scale"));
    // A whole U.S. day a thousand times over does not fit: refused before
    // anything is written, naming the way out.
    let huge = pv(tmp.path(), &["--scale", "1000", "--no-markdown"]);
    assert_eq!(code(&huge), 1);
    let msg = String::from_utf8_lossy(&huge.stderr);
    assert!(msg.contains("GB of disk") && msg.contains("--dir"), "{msg}");
}

#[test]
fn suite_writes_no_file_unless_asked() {
    // Run from an empty directory: without `--markdown` or `--json` the
    // suite leaves nothing there (no BENCHMARKS.md appears).
    let cwd = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let o = pv(
        cwd.path(),
        &[
            "--scale",
            "0.000002",
            "--reads",
            "20",
            "--read-seconds",
            "0.1",
            "--log-leaves",
            "1000",
            "--dir",
            work.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o)["ingest"]["accepted"].as_u64().unwrap() > 0);
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stats_runs_small_and_collects_in_a_child_of_its_own() {
    // The collection runs in a second `postvault-bench stats` process; the
    // query's vault is made under `--dir` and gone at the end.
    let tmp = tempfile::tempdir().unwrap();
    let o = pv(
        tmp.path(),
        &[
            "stats",
            "--records",
            "2000",
            "--people",
            "200",
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["records"], 2000);
    assert_eq!(r["people"], 200);
    assert!(r["records_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["privacy"].is_object(), "{r}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Every small operation answers 200 over HTTP and runs beside raw
/// PostgreSQL (a throwaway cluster), each side with figures of its own.
#[test]
fn small_ops_runs_small_beside_raw_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pv(
        tmp.path(),
        &[
            "small-ops",
            "--people",
            "300",
            "--clients",
            "2",
            "--seconds",
            "1",
            "--report-people",
            "2",
            "--report-records",
            "10",
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    for op in [
        "insert",
        "read",
        "correction",
        "consent",
        "report",
        "erasure",
    ] {
        for side in ["vault", "raw_pg"] {
            let m = &r["ops"][op][side];
            assert!(m["ops"].as_u64().unwrap() > 0, "{op} {side}: {m}");
            assert_eq!(m["failed"], 0, "{op} {side}: {m}");
            assert!(m["p99_us"].as_f64().unwrap() >= m["p50_us"].as_f64().unwrap());
        }
        assert!(r["ops"][op]["vault_over_raw"].as_f64().unwrap() > 0.0);
        assert!(r["targets"][op]["ratio_met"].is_boolean(), "{op}");
    }
    // Each person is erased once at most: no more erasures than people.
    assert!(r["ops"]["erasure"]["vault"]["ops"].as_u64().unwrap() <= 300);
}
