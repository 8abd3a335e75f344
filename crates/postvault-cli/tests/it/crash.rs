//! Crash tests: a real `postvault collect` and a real `postvault serve`
//! (HTTP ingest with `Idempotency-Key`, retried) killed with SIGKILL at
//! random points, then run again; every acknowledged line must be stored
//! exactly once, the log must verify and the vault must check clean.
//!
//! A handful of iterations by default; `POSTVAULT_CRASH_ITERATIONS=N` for a
//! longer campaign, `POSTVAULT_CRASH_SEED=S` to replay one (the seed is
//! printed). docs/operations.md records a campaign's results.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{code, json, pv};

/// xorshift64*: reproducible kill points from a printed seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("POSTVAULT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("crash test seed: POSTVAULT_CRASH_SEED={seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn iterations() -> usize {
    std::env::var("POSTVAULT_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

fn ndjson(tag: &str, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"subject": "{tag}-{i}", "category": "address", "purpose": "delivery", "fields": {{"street": "{i} Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn pv_key(data: &Path, key: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = Vec::new();
    if let Some(k) = key {
        a.extend(["--master-key-file", k.to_str().unwrap_or_default()]);
    }
    a.extend_from_slice(args);
    pv(data, &a)
}

fn command(data: &Path, key: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_postvault"));
    c.arg("--data").arg(data);
    if let Some(k) = key {
        c.arg("--master-key-file").arg(k);
    }
    c.args(args)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_STORE")
        .env_remove("POSTVAULT_KEYS")
        .env_remove("POSTVAULT_MASTER_KEY_FILE");
    c
}

fn new_vault(data: &Path, key: Option<&Path>) -> String {
    let o = pv_key(data, key, &["init"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = pv_key(
        data,
        key,
        &["principal", "add", "ingest", "--role", "collector"],
    );
    json(&o)["token"].as_str().unwrap().to_string()
}

/// Every one of `expected` people holds exactly one record, nothing else is
/// stored, the log verifies and the vault checks clean.
fn assert_each_once(data: &Path, key: Option<&Path>, expected: u64, what: &str) {
    let opts = postvault::OpenOptions {
        master_key: key
            .map(|k| Arc::new(postvault::ExternalKey::parse(&std::fs::read(k).unwrap()).unwrap())),
        ..postvault::OpenOptions::default()
    };
    let v = postvault::Vault::open(data, opts).unwrap();
    let store = v.store();
    let (mut people, mut after) = (0u64, None);
    loop {
        let page = store.record_subjects(after.as_ref(), 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        for (_, n) in &page {
            assert_eq!(*n, 1, "{what}: a line was stored twice");
        }
        people += page.len() as u64;
    }
    assert_eq!(people, expected, "{what}: every acknowledged line, once");
    assert_eq!(store.record_count().unwrap(), expected, "{what}");
    drop(v);
    let o = pv_key(data, key, &["log", "verify"]);
    assert_eq!(
        code(&o),
        0,
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = pv_key(data, key, &["check"]);
    assert_eq!(
        code(&o),
        0,
        "{what}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn collect_killed_at_random_points_stores_every_line_once_after_a_rerun() {
    const LINES: usize = 3_000;
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    // How long a whole run takes here: kill points fall inside it.
    let cal = tmp.path().join("calibrate");
    new_vault(&cal, None);
    let file = tmp.path().join("cal.ndjson");
    std::fs::write(&file, ndjson("cal", 0, LINES)).unwrap();
    let started = Instant::now();
    let o = pv(
        &cal,
        &[
            "collect",
            "--as",
            "ingest",
            "--batch-size",
            "100",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0);
    let whole = started.elapsed().as_millis() as u64;
    let mut killed_midway = 0;
    for it in 0..iterations() {
        let data = tmp.path().join(format!("v{it}"));
        new_vault(&data, None);
        let file = tmp.path().join(format!("in{it}.ndjson"));
        std::fs::write(&file, ndjson(&format!("k{it}"), 0, LINES)).unwrap();
        let f = file.to_str().unwrap();
        let args = ["collect", "--as", "ingest", "--batch-size", "100", f];
        // Killed one or more times, then run to the end.
        for _ in 0..=rng.below(2) {
            let mut child = command(&data, None, &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(whole + 1)));
            let finished = child.try_wait().unwrap().is_some();
            child.kill().unwrap();
            let _ = child.wait();
            if !finished {
                killed_midway += 1;
            }
        }
        let o = pv(&data, &args);
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            json(&o)["accepted"],
            LINES as u64,
            "the run's report counts every line"
        );
        assert_each_once(
            &data,
            None,
            LINES as u64,
            &format!("collect iteration {it}"),
        );
    }
    eprintln!(
        "collect crash test: {} iterations, {killed_midway} kills mid-run (a whole run takes {whole} ms)",
        iterations()
    );
}

/// One HTTP/1.1 request; an error (not a panic) when the server is gone.
fn post(
    addr: &str,
    path: &str,
    token: &str,
    key: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: \"{key}\"\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // In pieces, so a kill can land mid-upload.
    for piece in body.chunks(16 * 1024) {
        s.write_all(piece)?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, out[split + 4..].to_vec()))
}

fn serve(data: &Path, key: &Path) -> (Child, String) {
    use std::io::BufRead;
    let mut child = command(
        data,
        Some(key),
        &["serve", "--listen", "127.0.0.1:0", "--sweep-interval", "0"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = serde_json::from_str::<serde_json::Value>(&first)
        .unwrap_or_else(|e| panic!("serve did not start ({e}): {first}"))["listening"]
        .as_str()
        .unwrap()
        .to_string();
    (child, addr)
}

/// Uploads `UPLOADS` bodies under their own keys, resending each (same
/// key) until it is acknowledged, to whatever address the service has now.
fn upload_all(addr: Arc<Mutex<String>>, token: String, tag: String) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut acked = Vec::new();
    for u in 0..UPLOADS {
        let body = ndjson(&tag, u * LINES_PER_UPLOAD, LINES_PER_UPLOAD);
        let idem = format!("{tag}-upload-{u}");
        loop {
            assert!(Instant::now() < deadline, "upload {u} never acknowledged");
            let at = addr.lock().unwrap().clone();
            match post(
                &at,
                "/v1/records?batch_size=100",
                &token,
                &idem,
                body.as_bytes(),
            ) {
                Ok((200, b)) => {
                    let r: serde_json::Value = serde_json::from_slice(&b).unwrap();
                    assert_eq!(r["accepted"], LINES_PER_UPLOAD as u64, "{r}");
                    acked.push(u);
                    break;
                }
                // Killed mid-upload, restarting, or still running
                // elsewhere: resend under the same key.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    acked
}

const UPLOADS: usize = 8;
const LINES_PER_UPLOAD: usize = 1_000;

#[test]
fn serve_killed_at_random_points_stores_every_acknowledged_upload_once() {
    let mut rng = Rng::from_env();
    let tmp = tempfile::tempdir().unwrap();
    // The service runs on a vault whose master key is kept outside it.
    let key = tmp.path().join("master.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // How long the uploads take here uninterrupted: kill points fall inside.
    let cal = tmp.path().join("calibrate");
    let token = new_vault(&cal, Some(&key));
    let (mut child, addr) = serve(&cal, &key);
    let started = Instant::now();
    upload_all(Arc::new(Mutex::new(addr)), token, "cal".into());
    let whole = started.elapsed().as_millis() as u64;
    child.kill().unwrap();
    let _ = child.wait();
    let mut killed_mid_upload = 0;
    for it in 0..iterations() {
        let data = tmp.path().join(format!("s{it}"));
        let token = new_vault(&data, Some(&key));
        let (mut child, addr) = serve(&data, &key);
        let addr = Arc::new(Mutex::new(addr));
        let client = {
            let addr = addr.clone();
            std::thread::spawn(move || upload_all(addr, token, format!("h{it}")))
        };
        // Kill at a random point, once or twice, restarting each time.
        for _ in 0..=rng.below(2) {
            std::thread::sleep(Duration::from_millis(rng.below(whole + 1)));
            if !client.is_finished() {
                killed_mid_upload += 1;
            }
            child.kill().unwrap();
            let _ = child.wait();
            let (c, a) = serve(&data, &key);
            child = c;
            *addr.lock().unwrap() = a;
        }
        let acked = client.join().unwrap();
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(acked.len(), UPLOADS);
        assert_each_once(
            &data,
            Some(&key),
            (UPLOADS * LINES_PER_UPLOAD) as u64,
            &format!("serve iteration {it}"),
        );
    }
    eprintln!(
        "serve crash test: {} iterations, {killed_mid_upload} kills while uploads were open (the uploads take {whole} ms)",
        iterations()
    );
}
