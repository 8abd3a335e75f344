//! The command line's edges: a reader that closes stdout early, packs that
//! are broken, too deep or incomplete, the example instruments.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{code, json, pv};

fn postal_pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/postal")
}

/// A copy of the postal pack in `dir`, every file included.
fn copy_pack(dir: &Path) -> PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    for f in [
        "taxonomy.toml",
        "schema.cedarschema",
        "policies.cedar",
        "disclosure.toml",
    ] {
        std::fs::copy(postal_pack_dir().join(f), pack.join(f)).unwrap();
    }
    pack
}

/// Runs `postvault ARGS`, reads two lines of its stdout and closes the pipe
/// (as `| head -2` does); returns the exit code and stderr.
fn closed_after_two_lines(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_PACK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "{args:?} printed less than two lines"
        );
    }
    drop(out);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_command_normally() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    // Each prints far more than a pipe holds (64 KiB), so it writes into
    // the closed pipe.
    for args in [
        &["policy", "table", "--format", "tsv"][..],
        &["policy", "table"],
        &["simulate", "--scale", "0.0005"],
        &["demo", "--scale", "0.00001"],
    ] {
        let (status, stderr) = closed_after_two_lines(&data, args);
        assert_eq!(status, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_broken_deep_or_incomplete_pack_is_refused_with_its_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    let pack = copy_pack(tmp.path());
    let p = pack.to_str().unwrap();

    // The copy passes, and so does a disclosure.toml that allows no kind.
    assert_eq!(code(&pv(&data, &["policy", "check", p])), 0);
    let rules = std::fs::read_to_string(pack.join("disclosure.toml")).unwrap();
    let no_kinds = &rules[..rules.find("[kind.").unwrap()];
    std::fs::write(pack.join("disclosure.toml"), no_kinds).unwrap();
    let o = pv(&data, &["policy", "check", p]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(pack.join("disclosure.toml"), &rules).unwrap();

    // 1,000 nested parentheses: every command refuses the pack (exit 1),
    // naming the file and line, instead of overflowing its stack.
    let policies = std::fs::read_to_string(pack.join("policies.cedar")).unwrap();
    let deep = format!(
        "{policies}\n@id(\"deep\")\n@rule(\"R0\")\n@reason(\"deep\")\npermit (principal, action, resource) when {{ {}true{} }};\n",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    std::fs::write(pack.join("policies.cedar"), deep).unwrap();
    for args in [
        &["policy", "check", p][..],
        &["--pack", p, "policy", "table"],
        &[
            "--pack",
            p,
            "read",
            "--as",
            "x",
            "--purpose",
            "delivery",
            "--subject",
            "s",
        ],
    ] {
        let o = pv(&data, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 1, "{args:?}: {err}");
        assert!(
            err.contains("policies.cedar:") && err.contains("pack-bounds"),
            "{err}"
        );
        assert_eq!(json(&o)["error"]["code"], "bad_pack", "{args:?}");
    }

    // An empty policies.cedar.
    std::fs::write(pack.join("policies.cedar"), "// nothing\n").unwrap();
    let o = pv(&data, &["policy", "check", p]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cedar-empty"));
    std::fs::write(pack.join("policies.cedar"), &policies).unwrap();

    // A pack without disclosure.toml.
    std::fs::remove_file(pack.join("disclosure.toml")).unwrap();
    for args in [
        &["policy", "check", p][..],
        &["--pack", p, "policy", "table"],
    ] {
        let o = pv(&data, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 1, "{args:?}: {err}");
        assert!(err.contains("no `disclosure.toml`"), "{err}");
    }
}

/// The README's tour: `disclose example KIND` prints an instrument dated
/// today that the gateway takes, for every kind.
#[test]
fn the_example_instruments_pass_the_gateway_today() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    assert_eq!(
        code(&pv(&data, &["principal", "add", "ice", "--role", "agency"])),
        0
    );
    for kind in [
        "court_order",
        "warrant",
        "written_request",
        "subpoena",
        "mail_cover",
    ] {
        let o = pv(
            &tmp.path().join("no-vault-needed"),
            &[
                "disclose",
                "example",
                kind,
                "--subject",
                "cust-000000000309",
                "--instrument-id",
                &format!("EX-{kind}"),
            ],
        );
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        let inst = json(&o);
        assert_eq!(inst["kind"], kind);
        assert_eq!(
            inst["subjects"],
            serde_json::json!([{"id": "cust-000000000309"}])
        );
        let file = tmp.path().join(format!("{kind}.json"));
        std::fs::write(&file, o.stdout).unwrap();
        let o = pv(
            &data,
            &["disclose", "submit", "--as", "ice", file.to_str().unwrap()],
        );
        assert_eq!(
            code(&o),
            0,
            "{kind}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(json(&o)["status"], "pending_approval", "{kind}");
    }
    // The files themselves are the documented ones.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/instruments");
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 5);
}
