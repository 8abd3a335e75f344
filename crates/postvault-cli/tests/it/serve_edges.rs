//! `postvault serve` at its edges, through a real socket: the service log
//! without colour codes, connections that never finish their request head,
//! HTTPS with a certificate the test makes, bad certificate files, and
//! the client behind a trusted reverse proxy.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{code, http, pv};

/// Starts `postvault --data DATA serve --listen 127.0.0.1:0 EXTRA`; returns
/// the child and its address.
fn start(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0", "--sweep-interval", "0"])
        .args(extra)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_PACK")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

/// SIGTERM, then everything the service wrote on stderr.
fn stop(mut child: Child) -> String {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    err
}

fn vault(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    data
}

#[test]
fn the_service_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    let (child, addr) = start(&data, &[], &[("RUST_LOG", "postvault_server=debug")]);
    assert_eq!(http(&addr, "GET", "/health", None, b"").0, 200);
    assert_eq!(
        http(
            &addr,
            "GET",
            "/v1/subjects/cust-1?purpose=delivery",
            None,
            b""
        )
        .0,
        401
    );
    let log = stop(child);
    assert!(
        log.contains("route=/health") && log.contains("status=401"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in the log: {log:?}");
    assert!(!log.contains("cust-1"), "a path reached the log: {log}");
}

#[test]
fn connections_that_never_finish_their_request_head_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    let (child, addr) = start(&data, &["--header-timeout", "1"], &[]);
    // Half a request head, and an idle connection that sends nothing.
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        held.push(s);
    }
    let started = Instant::now();
    for mut s in held {
        let mut buf = Vec::new();
        // The server closes the connection: the read ends (with nothing,
        // or a 408), rather than running into the 8 s read timeout.
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection was held open: {e}"),
        }
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(6));
    // Whole requests are still served.
    assert_eq!(http(&addr, "GET", "/health", None, b"").0, 200);
    stop(child);
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postvault test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// GET `path` over TLS, trusting only `ca_pem`; the raw answer.
fn https_get(addr: &str, path: &str, ca_pem: &str) -> Result<String, String> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify still sent its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn serve_speaks_https_with_the_given_certificate_and_refuses_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    let pki = make_pki();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let (child, addr) = start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    let answer = https_get(&addr, "/health", &pki.ca_pem).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
    assert!(
        answer.contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );
    let page = https_get(&addr, "/me/", &pki.ca_pem).unwrap();
    assert!(
        page.contains("strict-transport-security: max-age=31536000"),
        "{page}"
    );
    let cp = https_get(&addr, "/v1/log/checkpoint", &pki.ca_pem).unwrap();
    assert!(cp.starts_with("HTTP/1.1 200"), "{cp}");

    // A client that trusts another CA refuses the service's certificate.
    let other = make_pki();
    let e = https_get(&addr, "/health", &other.ca_pem).unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    let log = stop(child);
    assert!(log.contains("https://"), "{log}");
}

#[test]
fn serve_refuses_bad_certificate_and_key_files_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    let pki = make_pki();
    let other = make_pki();
    let file = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cert = file("cert.pem", &pki.cert_pem);
    let key = file("key.pem", &pki.key_pem);
    let other_key = file("other-key.pem", &other.key_pem);
    let garbage = file("garbage.pem", "not a pem file\n");
    let missing = tmp.path().join("missing.pem").to_str().unwrap().to_string();
    for (c, k, says) in [
        (&missing, &key, "reading `"),
        (&garbage, &key, "holds no certificate"),
        (&key, &key, "holds no certificate"),
        (&cert, &cert, "holds no private key"),
        (&cert, &garbage, "holds no private key"),
        (&cert, &other_key, "cannot be used together"),
    ] {
        let o = pv(
            &data,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                c,
                "--tls-key",
                k,
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 1, "{c} {k}: {err}");
        assert!(err.contains(says), "{c} {k}: {err}");
        assert!(!err.contains("PRIVATE KEY-----"), "{err}");
    }
    // One without the other is bad usage.
    let o = pv(&data, &["serve", "--tls-cert", &cert]);
    assert_eq!(code(&o), 2);
}

/// One request on its own connection with extra header lines; the
/// answer's status and head (lower case).
fn raw(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// Sign-in attempts with a wrong access code until one is refused 429
/// (at most 20); whether one was.
fn sign_in_limited(addr: &str, headers: &[&str]) -> bool {
    let line = headers.join("\r\n");
    sign_in_limited_with(addr, &mut || line.clone())
}

/// The same, with a header line made anew for each attempt.
fn sign_in_limited_with(addr: &str, header: &mut dyn FnMut() -> String) -> bool {
    (0..20).any(|_| {
        let h = header();
        let lines = [
            "Content-Type: application/x-www-form-urlencoded",
            h.as_str(),
        ];
        raw(
            addr,
            "POST",
            "/me/login",
            &lines,
            "code=AAAA-BBBB-CCCC-DDDD-EEEE",
        )
        .0 == 429
    })
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_https_is_believed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    let o = pv(
        &data,
        &["principal", "add", "officer", "--role", "privacy_officer"],
    );
    assert_eq!(code(&o), 0);
    let officer = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The test's own address is the proxy.
    let (child, addr) = start(&data, &["--trusted-proxy", "10.0.0.0/8,127.0.0.1"], &[]);
    // One client's failed sign-ins use up its own limit, not everyone's:
    // another client behind the same proxy still signs in.
    let a = "X-Forwarded-For: 203.0.113.1, 10.1.2.3";
    assert!(sign_in_limited(&addr, &[a]));
    let (st, _) = raw(
        &addr,
        "POST",
        "/me/login",
        &[
            "Content-Type: application/x-www-form-urlencoded",
            "X-Forwarded-For: 203.0.113.2",
        ],
        "code=AAAA-BBBB-CCCC-DDDD-EEEE",
    );
    assert_eq!(st, 401);
    // A client cannot get out of its limit by writing hops of its own left
    // of what the proxy appended: rotating them, it stays limited.
    let mut n = 0;
    assert!(sign_in_limited_with(&addr, &mut || {
        n += 1;
        format!("X-Forwarded-For: 198.51.100.{n}, 203.0.113.1")
    }));
    // HTTPS at the proxy: HSTS, and the session cookie is Secure.
    let (_, head) = raw(&addr, "GET", "/health", &["X-Forwarded-Proto: https"], "");
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    let (_, head) = raw(&addr, "GET", "/health", &[], "");
    assert!(!head.contains("strict-transport-security"), "{head}");
    let form = format!("token={officer}");
    let (st, head) = raw(
        &addr,
        "POST",
        "/office/login",
        &[
            "Content-Type: application/x-www-form-urlencoded",
            "X-Forwarded-Proto: https",
            "X-Forwarded-For: 203.0.113.3",
        ],
        &form,
    );
    assert_eq!(st, 303, "{head}");
    let cookie = head.lines().find(|l| l.starts_with("set-cookie:")).unwrap();
    assert!(cookie.ends_with("; secure"), "{cookie}");
    let (st, head) = raw(
        &addr,
        "POST",
        "/office/login",
        &[
            "Content-Type: application/x-www-form-urlencoded",
            "X-Forwarded-For: 203.0.113.4",
        ],
        &form,
    );
    assert_eq!(st, 303, "{head}");
    let cookie = head.lines().find(|l| l.starts_with("set-cookie:")).unwrap();
    assert!(!cookie.contains("secure"), "{cookie}");
    stop(child);

    // Without the proxy configured, the headers are the client's own words:
    // ignored. Rotating X-Forwarded-For does not escape the limit, and
    // X-Forwarded-Proto does not bring HSTS.
    let (child, addr) = start(&data, &[], &[]);
    let mut n = 0;
    assert!(sign_in_limited_with(&addr, &mut || {
        n += 1;
        format!("X-Forwarded-For: 203.0.113.{n}")
    }));
    let (_, head) = raw(&addr, "GET", "/health", &["X-Forwarded-Proto: https"], "");
    assert!(!head.contains("strict-transport-security"), "{head}");
    stop(child);
}

/// A person's own scan of the public log over HTTP: what `log find` finds
/// with the vault, from the service's entry bundles alone, checked against
/// its signed checkpoint; a wrong log key is exit 5.
#[test]
fn a_person_scans_the_public_log_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vault(tmp.path());
    pv(
        &data,
        &["principal", "add", "ingest", "--role", "collector"],
    );
    pv(
        &data,
        &["principal", "add", "sorting", "--role", "delivery"],
    );
    let line = r#"{"subject": "cust-7", "category": "address", "purpose": "delivery", "fields": {"street": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}}"#;
    assert_eq!(
        code(&super::pv_in(
            &data,
            &["collect", "--as", "ingest"],
            Some(line.as_bytes())
        )),
        0
    );
    for _ in 0..3 {
        let o = pv(
            &data,
            &[
                "read",
                "--as",
                "sorting",
                "--purpose",
                "delivery",
                "--subject",
                "cust-7",
            ],
        );
        assert_eq!(code(&o), 0);
    }
    let json = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let tk = json(&pv(&data, &["subject", "tag-key", "--subject", "cust-7"]))["tag_key"]
        .as_str()
        .unwrap()
        .to_string();
    let found = json(&pv(&data, &["log", "find", "--tag-key", &tk]));
    let log_key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let (child, addr) = start(&data, &[], &[]);
    let url = format!("http://{addr}");
    let scan = |key: &str, no_witnesses: bool| {
        let mut args = vec![
            "log",
            "scan",
            "--url",
            &url,
            "--tag-key",
            &tk,
            "--log-key",
            key,
        ];
        if no_witnesses {
            args.push("--no-witnesses");
        }
        pv(std::path::Path::new("/nonexistent"), &args)
    };
    let o = scan(log_key.trim(), true);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let s = json(&o);
    assert_eq!(s["root_verified"], true);
    assert_eq!(s["witnessed"], false);
    let indexes = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["index"].as_u64().unwrap())
            .collect()
    };
    let scanned = indexes(&s["leaves"]);
    assert_eq!(scanned.len(), 3);
    // `log find` proves against the latest checkpoint too: the same leaves.
    assert_eq!(scanned, indexes(&found["leaves"]));
    assert!(
        s["checkpoint"]
            .as_str()
            .unwrap()
            .contains(&format!("\n{}\n", s["checkpoint_size"]))
    );
    // Without witnesses it must be said so: usage error otherwise.
    assert_eq!(code(&scan(log_key.trim(), false)), 2);
    // The key from a file; a checkpoint smaller than an entry the person
    // knows of is refused (exit 5).
    let key_file = tmp.path().join("my-log-key.txt");
    std::fs::write(&key_file, format!("{tk}\n")).unwrap();
    let size = s["checkpoint_size"].as_u64().unwrap();
    let with_file = |min: u64| {
        pv(
            std::path::Path::new("/nonexistent"),
            &[
                "log",
                "scan",
                "--url",
                &url,
                "--tag-key-file",
                key_file.to_str().unwrap(),
                "--log-key",
                log_key.trim(),
                "--no-witnesses",
                "--min-size",
                &min.to_string(),
            ],
        )
    };
    let o = with_file(size);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(indexes(&json(&o)["leaves"]), scanned);
    assert_eq!(code(&with_file(size + 1)), 5);
    // Another log's key: the checkpoint's signature fails (exit 5).
    let other = vault(&tmp.path().join("other"));
    let stranger = String::from_utf8(pv(&other, &["log", "key"]).stdout).unwrap();
    assert_eq!(code(&scan(stranger.trim(), true)), 5);
    stop(child);
}
