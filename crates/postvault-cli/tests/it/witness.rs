//! Witnesses end to end: `postvault witness serve` processes on loopback,
//! spoken to by a raw HTTP client written here from C2SP tlog-witness, by
//! the vault, and by implementations the project did not write (PyPI
//! `aics-witness` and `aics-tlog`), both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::prelude::*;
use postvault_log::{Checkpoint, Hash, LogSigner, append_hashes, leaf_hash, tree_root};

use crate::{code, json, pv};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `postvault witness serve` on a free port: (process, base URL, vkey).
fn serve_witness(dir: &Path, name: &str, logs: &[&str]) -> (Running, String, String) {
    let bin = env!("CARGO_BIN_EXE_postvault");
    let init = Command::new(bin)
        .args(["witness", "--dir"])
        .arg(dir)
        .args(["init", "--name", name])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut cmd = Command::new(bin);
    cmd.args(["witness", "--dir"])
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    for l in logs {
        cmd.args(["--log", l]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    (
        Running(child),
        format!("http://{}", v["listening"].as_str().unwrap()),
        v["vkey"].as_str().unwrap().to_string(),
    )
}

/// One HTTP/1.1 POST by hand: (status, content type, body).
fn post(base: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

struct Log {
    stored: Vec<Hash>,
    signer: LogSigner,
}

impl Log {
    fn new(origin: &str, seed: u8, leaves: u64, fork_last: bool) -> Log {
        let mut stored = Vec::new();
        for i in 0..leaves {
            let text = if fork_last && i + 1 == leaves {
                "forked".to_string()
            } else {
                format!("leaf {i}")
            };
            for (_, h) in append_hashes(i, &[leaf_hash(text.as_bytes())], &stored).unwrap() {
                stored.push(h);
            }
        }
        Log {
            stored,
            signer: LogSigner::from_seed(origin, &[seed; 32]).unwrap(),
        }
    }
    fn note(&self, size: u64) -> String {
        let root = tree_root(size, &self.stored).unwrap();
        self.signer
            .sign(&Checkpoint::new(self.signer.origin(), size, root))
            .unwrap()
    }
    fn body(&self, old: u64, size: u64) -> Vec<u8> {
        let mut b = format!("old {old}\n");
        for h in postvault_log::prove_consistency(old, size, &self.stored).unwrap() {
            b += &BASE64_STANDARD.encode(h);
            b += "\n";
        }
        b += "\n";
        b += &self.note(size);
        b.into_bytes()
    }
}

#[test]
fn the_witness_answers_every_status_of_the_spec_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::new("example.org/log", 1, 20, false);
    let (_w, url, vkey) = serve_witness(
        &tmp.path().join("w"),
        "witness.example/w1",
        &[&log.signer.verifier_key()],
    );
    let stranger = Log::new("example.org/other", 2, 20, false);
    let (status, _, _) = post(&url, "/add-checkpoint", &stranger.body(0, 10));
    assert_eq!(status, 404, "unknown origin");
    let impostor = Log::new("example.org/log", 3, 20, false);
    assert_eq!(post(&url, "/add-checkpoint", &impostor.body(0, 10)).0, 403);
    let above = format!("old 11\n\n{}", log.note(10));
    assert_eq!(post(&url, "/add-checkpoint", above.as_bytes()).0, 400);
    assert_eq!(post(&url, "/add-checkpoint", b"old 1\n").0, 400);
    let (status, ctype, body) = post(&url, "/add-checkpoint", &log.body(0, 10));
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let v = postvault_log::CosignatureVerifier::new(&vkey).unwrap();
    let text = postvault_log::parse_note(log.note(10).as_bytes())
        .unwrap()
        .text;
    v.verify_line(&text, &body).unwrap();
    // A stale old size: 409, `text/x.tlog.size`, the size held.
    let (status, ctype, body) = post(&url, "/add-checkpoint", &log.body(5, 20));
    assert_eq!(
        (status, ctype.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "10\n")
    );
    // A bad proof: 422.
    let mut bad = String::from_utf8(log.body(10, 20)).unwrap();
    let first = bad.lines().nth(1).unwrap().to_owned();
    bad = bad.replacen(&first, &BASE64_STANDARD.encode([0u8; 32]), 1);
    assert_eq!(post(&url, "/add-checkpoint", bad.as_bytes()).0, 422);
    assert_eq!(post(&url, "/add-checkpoint", &log.body(10, 20)).0, 200);
    // The same size with another root: 409 naming it.
    let fork = Log::new("example.org/log", 1, 20, true);
    let (status, ctype, body) = post(&url, "/add-checkpoint", &fork.body(20, 20));
    assert_eq!(
        (status, ctype.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "20\n")
    );
    // Only POST /add-checkpoint.
    assert_eq!(post(&url, "/other", b"").0, 404);
}

fn pv_with(data: &Path, witnesses: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--log-witness", witnesses];
    all.extend_from_slice(args);
    pv(data, &all)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_vault_publishes_cosigned_checkpoints_and_a_restored_copy_cannot_sign() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    assert_eq!(
        code(&pv(
            &data,
            &["principal", "add", "ingest", "--role", "collector"]
        )),
        0
    );
    let key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let key = key.trim();
    let (_w1, u1, k1) = serve_witness(&tmp.path().join("w1"), "w1.example", &[key]);
    let (_w2, u2, k2) = serve_witness(&tmp.path().join("w2"), "w2.example", &[key]);
    let ws = format!("{u1}={k1},{u2}={k2}");
    let line = r#"{"subject":"cust-1","category":"address","purpose":"delivery","fields":{"street":"1 Elm St","city":"Springfield","state":"IL","zip":"62701"}}"#;
    let input = tmp.path().join("in.ndjson");
    std::fs::write(&input, format!("{line}\n")).unwrap();
    let o = pv_with(
        &data,
        &ws,
        &["collect", "--as", "ingest", input.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = pv_with(&data, &ws, &["log", "checkpoint"]);
    assert_eq!(code(&o), 0);
    let note = String::from_utf8(o.stdout).unwrap();
    assert!(
        note.contains("\n\u{2014} w1.example ") && note.contains("\n\u{2014} w2.example "),
        "{note}"
    );
    let o = pv(
        &data,
        &["log", "verify", "--witness", &k1, "--witness", &k2],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["cosigners"].as_array().unwrap().len(), 2);
    // A key not among the cosigners: no checkpoint has its cosignature.
    let stranger = postvault_log::CosignerKey::from_bytes("w9.example", &[9; 32])
        .unwrap()
        .verifier_key();
    assert_eq!(
        code(&pv(&data, &["log", "verify", "--witness", &stranger])),
        5
    );

    // Keep a copy of the whole vault, publish more, then restore the copy.
    let old = tmp.path().join("old");
    copy_dir(&data, &old);
    // The same line again, stored again (`--no-resume`): the log grows.
    let o = pv_with(
        &data,
        &ws,
        &[
            "collect",
            "--as",
            "ingest",
            "--no-resume",
            input.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0);
    assert_eq!(code(&pv_with(&data, &ws, &["log", "checkpoint"])), 0);
    let newer = tmp.path().join("newer");
    copy_dir(&data, &newer);
    copy_dir(&old, &data);
    // The same input again, stored again (`--no-resume`: the restored copy
    // does not know it was collected): a history the witnesses never saw.
    let o = pv_with(
        &data,
        &ws,
        &[
            "collect",
            "--as",
            "ingest",
            "--no-resume",
            input.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rolled back"),
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let o = pv_with(&data, &ws, &["log", "checkpoint"]);
    assert_eq!(code(&o), 5, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["error"]["code"], "log_rollback");

    // data.db alone from the older copy beside the newer key store:
    // refused at open, and `log recover` says what is missing.
    copy_dir(&newer, &data);
    for f in ["data.db", "data.db-wal", "data.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
        if old.join(f).exists() {
            std::fs::copy(old.join(f), data.join(f)).unwrap();
        }
    }
    let o = pv(&data, &["log", "verify"]);
    assert_eq!(code(&o), 5);
    assert_eq!(json(&o)["error"]["code"], "log_rollback");
    let o = pv(&data, &["log", "recover"]);
    assert_eq!(code(&o), 5);
    let r = json(&o);
    assert_eq!(r["status"], "behind");
    assert!(r["missing_leaves"].as_u64().unwrap() > 0);
}

/// A venv with PyPI's aics-witness 0.1.0 and aics-tlog 0.2.1, made once.
fn aics_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aics-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("the interop test needs python3 (with venv)")
            .success();
        assert!(ok, "python3 -m venv failed");
        // aics-witness declares Python >= 3.12 and runs on 3.11.
        let ok = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--ignore-requires-python",
                "aics-witness==0.1.0",
                "aics-tlog==0.2.1",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "installing aics-witness and aics-tlog from PyPI failed");
    }
    python
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn interop_with_aics_witness_and_aics_tlog_both_ways() {
    let python = aics_python();
    let bin_dir = python.parent().unwrap().to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/aics_log.py");
    let tmp = tempfile::tempdir().unwrap();

    // 1. A log we did not write (aics-tlog, its feeder) submits to our witness.
    let out = Command::new(&python)
        .arg(&script)
        .arg("key")
        .output()
        .unwrap();
    let log_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (_w, url, vkey) = serve_witness(&tmp.path().join("w"), "ours.example/w", &[&log_key]);
    let out = Command::new(&python)
        .arg(&script)
        .args(["feed", &url, &vkey])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fed["cosigned"], serde_json::json!([5, 12]));
    assert!(
        fed["fork"].as_str().unwrap().contains("409"),
        "{}",
        fed["fork"]
    );
    // aics-tlog verifies our witness's cosignature.
    let note = tmp.path().join("note");
    std::fs::write(&note, fed["notes"][1].as_str().unwrap()).unwrap();
    let out = Command::new(&python)
        .args(["-m", "aics_tlog", "verify-checkpoint", "--note"])
        .arg(&note)
        .args([
            "--log-key",
            &log_key,
            "--witness-key",
            &vkey,
            "--quorum",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // 2. aics-witness acts as the vault's witness.
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    assert_eq!(
        code(&pv(
            &data,
            &["principal", "add", "ingest", "--role", "collector"]
        )),
        0
    );
    let key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let key = key.trim();
    let origin = key.split('+').next().unwrap();
    let cfg = tmp.path().join("aics/witness.json");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let init = Command::new(bin_dir.join("aics-witness"))
        .args(["init", "--config"])
        .arg(&cfg)
        .args(["--name", "aics.example/w1"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let printed =
        String::from_utf8_lossy(&init.stdout).to_string() + &String::from_utf8_lossy(&init.stderr);
    let aics_vkey = printed
        .split_whitespace()
        .find(|w| w.starts_with("aics.example/w1+"))
        .unwrap()
        .to_string();
    let add = Command::new(bin_dir.join("aics-witness"))
        .args(["add-log", "--config"])
        .arg(&cfg)
        .args(["--origin", origin, "--vkey", key])
        .output()
        .unwrap();
    assert!(add.status.success());
    let port = free_port();
    let _aics = Running(
        Command::new(bin_dir.join("aics-witness"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "aics-witness did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ws = format!("http://127.0.0.1:{port}={aics_vkey}");
    let input = tmp.path().join("in.ndjson");
    std::fs::write(
        &input,
        r#"{"subject":"cust-1","category":"address","purpose":"delivery","fields":{"street":"1 Elm St","city":"Springfield","state":"IL","zip":"62701"}}"#.to_string() + "\n",
    )
    .unwrap();
    for _ in 0..2 {
        let o = pv_with(
            &data,
            &ws,
            &["collect", "--as", "ingest", input.to_str().unwrap()],
        );
        assert_eq!(code(&o), 0);
        let o = pv_with(&data, &ws, &["log", "checkpoint"]);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8(o.stdout)
                .unwrap()
                .contains("\u{2014} aics.example/w1 ")
        );
    }
    let o = pv(&data, &["log", "verify", "--witness", &aics_vkey]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
}
