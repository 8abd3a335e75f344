//! The `postvault` binary end to end: commands, JSON on stdout, exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod ops;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod serve_edges;
mod surface;
mod witness;

fn pv(data: &Path, args: &[&str]) -> Output {
    pv_in(data, args, None)
}

fn pv_in(data: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_PACK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// A warrant for `cust-1`'s address, dated around now so it is in force
/// whenever the test runs; `n` makes its instrument and case ids unique.
fn warrant(n: &str) -> serde_json::Value {
    let day = 86_400_000i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let d = |ms: i64| postvault_policy::disclosure::format_iso(ms - ms.rem_euclid(day));
    serde_json::json!({
        "kind": "warrant", "instrument_id": format!("W-{n}"), "agency": "An Agency",
        "signer": {"name": "A", "title": "Special Agent", "level": "agent"},
        "authority": "Fed. R. Crim. P. 41", "ground": "criminal_law_enforcement",
        "case_id": format!("K-{n}"),
        "subjects": [{"id": "cust-1"}], "portions": ["address"],
        "time_range": {"from": d(now - 30 * day), "to": d(now + day)}, "issued_at": d(now - day),
        "court": {"name": "Court", "docket": "1", "judge": "J", "order_date": d(now - day)}
    })
}

#[test]
fn a_session_from_init_to_denied_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");

    let o = pv(
        &data,
        &[
            "read",
            "--as",
            "x",
            "--purpose",
            "delivery",
            "--subject",
            "s",
        ],
    );
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["code"], "not_initialized");
    assert!(String::from_utf8_lossy(&o.stderr).contains("postvault init"));

    let o = pv(&data, &["init"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o)["pack"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(code(&pv(&data, &["init"])), 1);

    for (name, role) in [
        ("ingest", "collector"),
        ("sorting", "delivery"),
        ("ice", "agency"),
    ] {
        let o = pv(&data, &["principal", "add", name, "--role", role]);
        assert_eq!(code(&o), 0);
        assert!(json(&o)["token"].as_str().unwrap().starts_with("pv_"));
    }
    let o = pv(&data, &["principal", "add", "nobody", "--role", "overlord"]);
    assert_eq!(
        (code(&o), json(&o)["error"]["code"].as_str()),
        (1, Some("unknown_role"))
    );
    let list = json(&pv(&data, &["principal", "list"]));
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(!list.to_string().contains("pv_"), "tokens are never listed");

    let ndjson = concat!(
        r#"{"subject": "cust-1", "category": "address", "fields": {"street": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}}"#,
        "\n",
        r#"{"subject": "cust-1", "category": "scan_event", "fields": {"piece": "letter", "facility_zip": "60601", "op_code": "918", "event": "processed", "scanned_at": "2026-11-02T03:00:00Z"}}"#,
        "\n",
        r#"{"subject": "cust-1", "category": "address", "fields": {"street": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62701", "ssn": "078-05-1120"}}"#,
        "\n",
    );
    let file = tmp.path().join("in.ndjson");
    std::fs::write(&file, ndjson).unwrap();
    let o = pv(
        &data,
        &[
            "collect",
            "--as",
            "ingest",
            "--purpose",
            "delivery",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(r["errors"][0]["line"], 3);
    assert_eq!(r["errors"][0]["field"], "ssn");
    assert_eq!(r["errors"][0]["rule"], "R2");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(!stderr.contains("078-05-1120"));

    // Standard input works too.
    let o = pv_in(
        &data,
        &["collect", "--as", "ingest", "--purpose", "delivery", "-"],
        Some(ndjson.lines().next().unwrap().as_bytes()),
    );
    assert_eq!(code(&o), 0);

    let o = pv(
        &data,
        &[
            "read",
            "--as",
            "sorting",
            "--purpose",
            "delivery",
            "--subject",
            "cust-1",
        ],
    );
    assert_eq!(code(&o), 0);
    let r = json(&o);
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["records"].as_array().unwrap().len(), 3);
    assert_eq!(r["records"][0]["fields"]["city"], "Springfield");
    // Indented like the rest of the answer.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"fields\": {\n"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let o = pv(
        &data,
        &[
            "read",
            "--as",
            "ice",
            "--purpose",
            "immigration_enforcement",
            "--subject",
            "cust-1",
        ],
    );
    assert_eq!(code(&o), 3);
    let r = json(&o);
    assert_eq!(r["decision"], "deny");
    assert!(r["records"].as_array().unwrap().is_empty());
    assert!(r.to_string().contains("R25-prohibited-purpose"));

    // Nothing readable in the vault's files.
    for e in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"Springfield"));
    }
}

#[test]
fn policy_check_table_and_a_bad_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("unused");
    let o = pv(&data, &["policy", "check"]);
    assert_eq!(code(&o), 0);
    let r = json(&o);
    // §8's twenty purposes and the two R19 prohibitions the engine fixes.
    assert_eq!(
        (r["categories"].as_u64(), r["purposes"].as_u64()),
        (Some(13), Some(22))
    );
    assert_eq!(r["change_notice_days"], 30);
    let roles = r["roles"].as_u64().unwrap();

    let o = pv(&data, &["policy", "table"]);
    assert_eq!(code(&o), 0);
    let lines: Vec<&[u8]> = o
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len() as u64, roles * 2 * 22 * 13 * 2);
    let first: serde_json::Value = serde_json::from_slice(lines[0]).unwrap();
    assert!(first["effect"] == "allow" || first["effect"] == "deny");

    // A broken copy of the pack names file, line and rule.
    let pack = tmp.path().join("pack");
    std::fs::create_dir(&pack).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/postal");
    for f in [
        "taxonomy.toml",
        "schema.cedarschema",
        "policies.cedar",
        "disclosure.toml",
    ] {
        std::fs::copy(root.join(f), pack.join(f)).unwrap();
    }
    let mut policies = std::fs::read_to_string(pack.join("policies.cedar")).unwrap();
    policies.push_str("\n@id(\"x\")\n@rule(\"R0\")\n@reason(\"x\")\npermit (principal, action, resource) when { resource.nationality == \"x\" };\n");
    std::fs::write(pack.join("policies.cedar"), policies).unwrap();
    let o = pv(&data, &["policy", "check", pack.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("policies.cedar:") && err.contains("cedar-validation"),
        "{err}"
    );
}

/// A copy of the postal pack in `dir`, edited by `edit(file, text)`.
fn pack_copy(dir: &Path, edit: impl Fn(&str, String) -> String) {
    std::fs::create_dir_all(dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/postal");
    for f in [
        "taxonomy.toml",
        "schema.cedarschema",
        "policies.cedar",
        "disclosure.toml",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        std::fs::write(dir.join(f), edit(f, text)).unwrap();
    }
}

/// The red team's custom pack: `immigration_enforcement` moved into an
/// internal group with a full matrix row. `policy check` fails naming the
/// file and the line.
#[test]
fn a_pack_permitting_a_prohibited_purpose_fails_policy_check() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("ice-pack");
    pack_copy(&pack, |f, t| {
        if f != "taxonomy.toml" {
            return t;
        }
        t.replace(
            "id = \"immigration_enforcement\"\nref = \"P20\"\ngroup = \"prohibited\"",
            "id = \"immigration_enforcement\"\nref = \"P20\"\ngroup = \"compliance\"\ninternal = true",
        )
        .replace(
            "immigration_enforcement    = \" -  -  -  -  -  -  -  -  -  -   -   -   - \"",
            "immigration_enforcement    = \" Y  Y  Y  Y  Y  Y  Y  Y  Y  Y   Y   -   - \"",
        )
    });
    let text = std::fs::read_to_string(pack.join("taxonomy.toml")).unwrap();
    // The purpose's `group` line, two below its id.
    let at = text.find("id = \"immigration_enforcement\"").unwrap();
    let line = text[..at].matches('\n').count() + 3;
    let o = pv(
        &tmp.path().join("unused"),
        &["policy", "check", pack.to_str().unwrap()],
    );
    assert_eq!(code(&o), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("taxonomy.toml:{line}:")) && err.contains("fixed-prohibition"),
        "{err}"
    );
    assert!(err.contains("immigration_enforcement"), "{err}");
    assert_eq!(json(&o)["error"]["code"], "bad_pack");
}

/// `policy diff` and `policy stage` from the command line: a widening waits
/// for its notice, the vault refuses the staged pack until then.
#[test]
fn policy_stage_and_diff_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("v");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    let wide = tmp.path().join("wide");
    pack_copy(&wide, |f, t| {
        if f == "taxonomy.toml" {
            t.replace(
                "marketing                  = \" C  C ",
                "marketing                  = \" Y  Y ",
            )
        } else {
            t
        }
    });
    let wide = wide.to_str().unwrap();
    // Without a vault, between two directories.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/postal");
    let o = pv(
        &tmp.path().join("unused"),
        &["policy", "diff", wide, "--from", root.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let d = json(&o);
    assert_eq!(d["widens"], true);
    assert!(
        d["cells"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "marketing"
                && c["category"] == "address"
                && c["from"] == "consent"
                && c["to"] == "allow")
    );
    // Against the vault, as a table.
    let o = pv(&data, &["policy", "diff", wide, "--format", "table"]);
    assert_eq!(code(&o), 0);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("WIDENS access") && t.contains("marketing"),
        "{t}"
    );
    // Not staged: refused at open.
    let o = pv(&data, &["--pack", wide, "principal", "list"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["code"], "pack_not_staged");
    // Staged: it waits for its notice period.
    let o = pv(&data, &["policy", "stage", wide]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(
        (r["widens"].as_bool(), r["in_force"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(r["notice_days"], 30);
    let o = pv(&data, &["--pack", wide, "principal", "list"]);
    assert_eq!(json(&o)["error"]["code"], "pack_not_in_force");
    assert_eq!(code(&pv(&data, &["principal", "list"])), 0);
}

#[test]
fn simulate_is_deterministic_and_help_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("unused");
    let a = pv(&data, &["simulate", "--scale", "0.000005", "--seed", "9"]);
    let b = pv(&data, &["simulate", "--scale", "0.000005", "--seed", "9"]);
    assert_eq!(code(&a), 0);
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
    let out = tmp.path().join("day.ndjson");
    assert_eq!(
        code(&pv(
            &data,
            &[
                "simulate",
                "--scale",
                "0.000005",
                "--seed",
                "9",
                "--out",
                out.to_str().unwrap()
            ]
        )),
        0
    );
    assert_eq!(std::fs::read(&out).unwrap(), a.stdout);
    // A directory gets the records and the plan they follow.
    let dir = tmp.path().join("day");
    let o = pv(
        &data,
        &[
            "simulate",
            "--scale",
            "0.000005",
            "--seed",
            "9",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(dir.join("records.ndjson")).unwrap(), a.stdout);
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    let lines = a.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(plan["records"], lines);
    let by_cat: u64 = plan["categories"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_cat, lines);
    // Images make longer lines, the same number of them.
    let img = pv(
        &data,
        &[
            "simulate", "--scale", "0.000005", "--seed", "9", "--images", "2000",
        ],
    );
    assert_eq!(code(&img), 0);
    assert!(img.stdout.len() > a.stdout.len());
    assert_eq!(
        img.stdout.iter().filter(|&&b| b == b'\n').count() as u64,
        lines
    );
    let h = pv(&data, &["--help"]);
    assert_eq!(code(&h), 0);
    let help = String::from_utf8_lossy(&h.stdout);
    for verb in [
        "init",
        "principal",
        "collect",
        "read",
        "policy",
        "simulate",
        "demo",
        "bench",
        "disclose",
        "report",
    ] {
        assert!(help.contains(verb), "{verb}");
    }
    assert_eq!(code(&pv(&data, &["read", "--as", "x"])), 2);
}

#[test]
fn demo_tells_the_story() {
    let tmp = tempfile::tempdir().unwrap();
    let o = pv(tmp.path(), &["demo", "--scale", "0.000005"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "reads for delivery",
        "ALLOWED",
        "Withheld",
        "DENIED",
        "R25",
        "identical to",
        "log holds",
        "2025, replayed",
        "selector_not_identifier",
        "ground_not_allowed",
        "HELD FOR REVIEW",
        "self_approval",
        "notice to",
        "Transparency report",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn bench_forwards_to_the_benchmark_binary_beside_it() {
    // `postvault bench ARGS` runs `postvault-bench ARGS` from beside the
    // `postvault` binary, arguments verbatim (flags and `--help` included),
    // and answers with its exit code. A stand-in script records what it got.
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("postvault");
    std::fs::copy(env!("CARGO_BIN_EXE_postvault"), &exe).unwrap();
    let got = tmp.path().join("args");
    let script = tmp.path().join("postvault-bench");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 7\n",
            got.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = Command::new(&exe)
        .args(["bench", "ingest", "--records", "30", "--help"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 7, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        "ingest\n--records\n30\n--help\n"
    );
    // Without the benchmark binary: a clear error naming how to build it.
    std::fs::remove_file(&script).unwrap();
    let o = Command::new(&exe)
        .args(["bench", "ingest"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("cargo build --release -p postvault-bench"),
        "{msg}"
    );
}

#[test]
fn log_commands_prove_verify_and_detect_tampering() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
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
        code(&pv_in(
            &data,
            &["collect", "--as", "ingest"],
            Some(line.as_bytes())
        )),
        0
    );
    for _ in 0..3 {
        pv(
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
    }

    let key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let key = key.trim();
    // The base64 key itself may contain '+'.
    let parts: Vec<&str> = key.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{key}");
    assert!(parts[0].starts_with("postvault/"));
    assert_eq!(parts[1].len(), 8);

    let o = pv(&data, &["log", "checkpoint"]);
    assert_eq!(code(&o), 0);
    let note = String::from_utf8(o.stdout).unwrap();
    let cp = postvault_log::open_checkpoint(&note, key).unwrap();
    assert_eq!(cp.size, 4);
    let saved = tmp.path().join("cp4");
    std::fs::write(&saved, &note).unwrap();

    // Every entry, proven independently against the checkpoint.
    let o = pv(&data, &["log", "entries"]);
    let entries: Vec<serde_json::Value> = o
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 4);
    for e in &entries {
        let i = e["index"].as_u64().unwrap();
        let leaf = b64.decode(e["leaf"].as_str().unwrap()).unwrap();
        assert!(!String::from_utf8_lossy(&leaf).contains("cust-7"));
        let p = json(&pv(&data, &["log", "prove", "--index", &i.to_string()]));
        let path: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| b64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        postvault_log::verify_inclusion(
            i,
            cp.size,
            &postvault_log::leaf_hash(&leaf),
            &path,
            &cp.root,
        )
        .unwrap();
    }

    // A person's tag key finds their three reads.
    let tk = json(&pv(&data, &["subject", "tag-key", "--subject", "cust-7"]));
    let found = json(&pv(
        &data,
        &["log", "find", "--tag-key", tk["tag_key"].as_str().unwrap()],
    ));
    assert_eq!(found["leaves"].as_array().unwrap().len(), 3);
    // Filed again (a whole index: nothing else changes), with one leaf of
    // its own that the person finds too.
    let o = pv(&data, &["log", "refile", "--subject", "cust-7"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let refiled = json(&o);
    assert_eq!(refiled["leaves"].as_u64(), Some(4));
    assert_eq!(
        (refiled["written"].as_u64(), refiled["removed"].as_u64()),
        (Some(0), Some(0))
    );
    let found = json(&pv(
        &data,
        &["log", "find", "--tag-key", tk["tag_key"].as_str().unwrap()],
    ));
    let leaves = found["leaves"].as_array().unwrap();
    assert_eq!(leaves.len(), 4);
    assert_eq!(leaves[3]["event"]["action"], "leaf_refile");
    let o = pv(&data, &["log", "refile", "--subject", "never-collected"]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no keys"));

    // Growth stays consistent with the saved checkpoint.
    pv(
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
    assert_eq!(code(&pv(&data, &["log", "checkpoint"])), 0);
    let o = pv(
        &data,
        &["log", "verify", "--since", saved.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["since"]["size"], 4);
    let p = json(&pv(&data, &["log", "prove", "--old", "4", "--new", "5"]));
    assert_eq!((p["old"].as_u64(), p["new"].as_u64()), (Some(4), Some(5)));

    // One changed byte in an entry: verification fails with exit code 5.
    let conn = rusqlite::Connection::open(data.join("data.db")).unwrap();
    conn.execute("UPDATE leaves SET body = CAST(replace(CAST(body AS TEXT), 'delivery', 'deliverx') AS BLOB) WHERE idx = 2", []).unwrap();
    drop(conn);
    let o = pv(&data, &["log", "verify"]);
    assert_eq!(code(&o), 5, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(json(&o)["error"]["code"], "log_verification_failed");
}

#[test]
fn disclose_verbs_from_submit_to_transparency_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    for (name, role) in [
        ("ingest", "collector"),
        ("ice", "agency"),
        ("officer", "privacy_officer"),
    ] {
        assert_eq!(
            code(&pv(&data, &["principal", "add", name, "--role", role])),
            0
        );
    }
    let line = r#"{"subject":"cust-1","category":"address","purpose":"delivery","fields":{"street":"1 pvcli St","city":"Springfield","state":"IL","zip":"62701"}}"#;
    let o = pv_in(
        &data,
        &["collect", "--as", "ingest", "-"],
        Some(line.as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let inst = warrant("1");
    let file = tmp.path().join("warrant.json");
    std::fs::write(&file, inst.to_string()).unwrap();
    let f = file.to_str().unwrap();
    let o = pv(&data, &["disclose", "submit", "--as", "ice", f]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let sub = json(&o);
    assert_eq!(sub["status"], "pending_approval");
    assert_eq!(sub["reasons"], serde_json::json!([]));
    let id = sub["id"].as_str().unwrap().to_string();
    // A refused submission: exit 3, the codes on stdout.
    let o = pv_in(
        &data,
        &["disclose", "submit", "--as", "ice", "-"],
        Some(br#"{"kind": "warrant", "selector": {"zip": "62701"}}"#),
    );
    assert_eq!(code(&o), 3);
    assert_eq!(json(&o)["status"], "refused");
    assert!(
        json(&o)["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "selector_not_identifier")
    );
    // Self-approval: refused, exit 3; the officer's approval: exit 0.
    assert_eq!(
        code(&pv(&data, &["disclose", "approve", "--as", "ice", &id])),
        3
    );
    let o = pv(&data, &["disclose", "approve", "--as", "officer", &id]);
    assert_eq!(
        (code(&o), json(&o)["status"].as_str()),
        (0, Some("approved"))
    );
    let o = pv(&data, &["disclose", "fetch", "--as", "ice", &id]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let pkg = json(&o);
    assert_eq!(pkg["subjects"][0]["subject"], "cust-1");
    assert_eq!(
        pkg["subjects"][0]["records"][0]["fields"]["street"],
        "1 pvcli St"
    );
    assert_eq!(
        code(&pv(&data, &["disclose", "fetch", "--as", "ice", &id])),
        3
    );
    let o = pv(&data, &["disclose", "list", "--as", "ice"]);
    assert_eq!(json(&o).as_array().unwrap().len(), 2);
    let o = pv(
        &data,
        &[
            "disclose",
            "accounting",
            "--as",
            "officer",
            "--subject",
            "cust-1",
        ],
    );
    assert_eq!(json(&o)["entries"][0]["nature"], "warrant");
    let o = pv(&data, &["report", "transparency"]);
    let r = json(&o);
    assert_eq!(r["requests"], 2);
    assert_eq!(r["refusals_by_reason"]["selector_not_identifier"], 1);
    let o = pv(&data, &["report", "transparency", "--format", "table"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Refusals by reason"));
    assert_eq!(code(&pv(&data, &["log", "verify"])), 0);
}

#[test]
fn rights_verbs_hold_erase_consent_report_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    for (name, role) in [
        ("ingest", "collector"),
        ("ice", "agency"),
        ("officer", "privacy_officer"),
        ("promo", "marketing"),
    ] {
        assert_eq!(
            code(&pv(&data, &["principal", "add", name, "--role", role])),
            0
        );
    }
    let lines = [
        r#"{"subject":"cust-1","category":"address","purpose":"delivery","fields":{"street":"1 pvrights St","city":"Springfield","state":"IL","zip":"62701"}}"#,
        r#"{"subject":"cust-2","category":"address","purpose":"delivery","fields":{"street":"2 pvrights St","city":"Springfield","state":"IL","zip":"62701"}}"#,
    ]
    .join("\n");
    let o = pv_in(
        &data,
        &["collect", "--as", "ingest", "-"],
        Some(lines.as_bytes()),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));

    // Consent: grant and withdraw, each logged.
    for verb in ["grant", "withdraw"] {
        let o = pv(
            &data,
            &[
                "consent",
                verb,
                "--as",
                "officer",
                "--subject",
                "cust-1",
                "--purpose",
                "marketing",
            ],
        );
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(json(&o)["granted"], verb == "grant");
    }
    // An agency may not record consent.
    let o = pv(
        &data,
        &[
            "consent",
            "grant",
            "--as",
            "ice",
            "--subject",
            "cust-1",
            "--purpose",
            "marketing",
        ],
    );
    assert_eq!(code(&o), 1);

    // A hold from an approved warrant blocks erasure: exit 3.
    let inst = warrant("9");
    let o = pv_in(
        &data,
        &["disclose", "submit", "--as", "ice", "-"],
        Some(inst.to_string().as_bytes()),
    );
    let id = json(&o)["id"].as_str().unwrap().to_string();
    assert_eq!(
        code(&pv(&data, &["disclose", "approve", "--as", "officer", &id])),
        0
    );
    let o = pv(
        &data,
        &["hold", "place", "--as", "officer", "--request", &id],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let hold_id = json(&o)["id"].as_str().unwrap().to_string();
    assert_eq!(json(&o)["status"], "active");
    let o = pv(&data, &["hold", "list", "--as", "officer"]);
    assert_eq!(json(&o).as_array().unwrap().len(), 1);
    let o = pv(
        &data,
        &[
            "erase",
            "--as",
            "officer",
            "--subject",
            "cust-1",
            "--subject",
            "cust-2",
        ],
    );
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["erased"], 1);
    assert_eq!(json(&o)["held"], serde_json::json!(["cust-1"]));
    // The command purges the erased rows before it returns.
    assert_eq!(json(&o)["purged"]["people"], 1);
    assert_eq!(json(&o)["purged"]["records"], json(&o)["records_deleted"]);
    // Only an officer erases.
    assert_eq!(
        code(&pv(&data, &["erase", "--as", "ice", "--subject", "cust-1"])),
        1
    );

    // The report: JSON with verified proofs, and HTML for the person.
    let o = pv(
        &data,
        &[
            "subject",
            "report",
            "--as",
            "officer",
            "--subject",
            "cust-1",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["proofs_verified"], true);
    assert_eq!(r["records"][0]["fields"]["street"], "1 pvrights St");
    assert_eq!(r["holds"].as_array().unwrap().len(), 1);
    assert!(r["log"].as_array().unwrap().len() >= 4);
    // Saved and checked offline with the log's key (no vault needed; this
    // vault has no witnesses, so none is asked for).
    let saved = data.parent().unwrap().join("report.json");
    std::fs::write(&saved, &o.stdout).unwrap();
    let key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let verify = |file: &Path, key: &str| {
        pv(
            Path::new("/nonexistent"),
            &[
                "report",
                "verify",
                file.to_str().unwrap(),
                "--log-key",
                key.trim(),
                "--no-witnesses",
            ],
        )
    };
    let o2 = verify(&saved, &key);
    assert_eq!(code(&o2), 0, "{}", String::from_utf8_lossy(&o2.stderr));
    assert_eq!(json(&o2)["verified"], true);
    assert_eq!(json(&o2)["report"]["witnessed"], false);
    // Without witnesses it must be said so: usage error otherwise.
    let o3 = pv(
        Path::new("/nonexistent"),
        &[
            "report",
            "verify",
            saved.to_str().unwrap(),
            "--log-key",
            key.trim(),
        ],
    );
    assert_eq!(code(&o3), 2, "{}", String::from_utf8_lossy(&o3.stderr));
    assert_eq!(
        json(&o2)["report"]["leaves_verified"].as_u64(),
        Some(r["log"].as_array().unwrap().len() as u64)
    );
    // A leaf altered: exit 5, said in JSON.
    let mut bad = r.clone();
    let leaf = bad["log"][0]["leaf"].as_str().unwrap().to_string();
    let flipped = if leaf.starts_with('e') { "f" } else { "e" };
    bad["log"][0]["leaf"] = serde_json::Value::String(format!("{flipped}{}", &leaf[1..]));
    std::fs::write(&saved, bad.to_string()).unwrap();
    let o2 = verify(&saved, &key);
    assert_eq!(code(&o2), 5, "{}", String::from_utf8_lossy(&o2.stdout));
    assert_eq!(json(&o2)["verified"], false);
    // Not a report: a plain error, exit 1.
    std::fs::write(&saved, "{}").unwrap();
    assert_eq!(code(&verify(&saved, &key)), 1);
    let o = pv(
        &data,
        &[
            "subject",
            "report",
            "--as",
            "officer",
            "--subject",
            "cust-1",
            "--format",
            "html",
        ],
    );
    assert_eq!(code(&o), 0);
    let html = String::from_utf8(o.stdout).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("1 pvrights St"));

    // A correction: the old record stays as history.
    let o = pv_in(
        &data,
        &[
            "correct",
            "--as",
            "officer",
            "--subject",
            "cust-1",
            "--category",
            "address",
            "-",
        ],
        Some(br#"{"street":"1 fixed St","city":"Springfield","state":"IL","zip":"62701"}"#),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["notify"], serde_json::json!([]));

    // Release, then erasure goes through; retention runs (nothing expired).
    assert_eq!(
        code(&pv(
            &data,
            &["hold", "release", "--as", "officer", &hold_id]
        )),
        0
    );
    let o = pv(
        &data,
        &[
            "erase",
            "--as",
            "officer",
            "--subject",
            "cust-1",
            "--defer-purge",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["erased"], 1);
    // One person: the erasure purges theirs itself, deferred or not.
    assert_eq!(json(&o)["purged"]["people"], 1);
    assert_eq!(json(&o)["purged"]["records"], json(&o)["records_deleted"]);
    let o = pv(&data, &["check"]);
    assert_eq!(json(&o)["erased_pending_purge"]["people"], 0);
    let o = pv(&data, &["retention", "run"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["records_deleted"], 0);
    assert_eq!(json(&o)["erased_purged"]["people"], 0);
    assert_eq!(code(&pv(&data, &["log", "verify"])), 0);
}

/// One HTTP/1.1 request on a fresh connection; (status, body).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // De-chunk.
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = plain;
    }
    (status, body)
}

#[test]
fn serve_ingests_reads_and_proves_over_http_then_stops_on_sigterm() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    assert_eq!(code(&pv(&data, &["init"])), 0);
    let token = |name: &str, role: &str| {
        let o = pv(&data, &["principal", "add", name, "--role", role]);
        json(&o)["token"].as_str().unwrap().to_string()
    };
    let ingest = token("ingest", "collector");
    let sorting = token("sorting", "delivery");
    let key = String::from_utf8(pv(&data, &["log", "key"]).stdout).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--sweep-interval", "0"])
        .env_remove("POSTVAULT_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = serde_json::from_str::<serde_json::Value>(&first).unwrap()["listening"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(http(&addr, "GET", "/health", None, b"").0, 200);
    let lines = (0..50)
        .map(|i| format!(r#"{{"subject":"cust-{i}","category":"address","purpose":"delivery","fields":{{"street":"{i} pvhttp St","city":"Springfield","state":"IL","zip":"62701"}}}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let (st, body) = http(
        &addr,
        "POST",
        "/v1/records",
        Some(&ingest),
        lines.as_bytes(),
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let rep: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rep["accepted"], 50);
    let (st, body) = http(
        &addr,
        "GET",
        "/v1/subjects/cust-7?purpose=delivery",
        Some(&sorting),
        b"",
    );
    assert_eq!(st, 200);
    let read: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(read["records"][0]["fields"]["street"], "7 pvhttp St");
    let idx = read["log_index"].as_u64().unwrap();
    assert_eq!(
        http(
            &addr,
            "GET",
            "/v1/subjects/cust-7?purpose=delivery",
            None,
            b""
        )
        .0,
        401
    );

    // The read's own leaf is provably in the signed tree.
    let (st, note) = http(&addr, "GET", "/v1/log/checkpoint", None, b"");
    assert_eq!(st, 200);
    let cp =
        postvault_log::open_checkpoint(std::str::from_utf8(&note).unwrap(), key.trim()).unwrap();
    assert!(cp.size > idx);
    let (st, body) = http(
        &addr,
        "GET",
        &format!("/v1/log/proof/inclusion?index={idx}&size={}", cp.size),
        None,
        b"",
    );
    assert_eq!(st, 200);
    let proof: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (_, body) = http(
        &addr,
        "GET",
        &format!("/v1/log/entries?start={idx}&end={}", idx + 1),
        None,
        b"",
    );
    let entries: serde_json::Value = serde_json::from_slice(&body).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaf = b64.decode(entries[0]["leaf"].as_str().unwrap()).unwrap();
    let path: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    postvault_log::verify_inclusion(
        idx,
        cp.size,
        &postvault_log::leaf_hash(&leaf),
        &path,
        &cp.root,
    )
    .unwrap();

    // SIGTERM: a clean stop, exit 0; what was acknowledged is there.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = pv(
        &data,
        &[
            "read",
            "--as",
            "sorting",
            "--purpose",
            "delivery",
            "--subject",
            "cust-49",
        ],
    );
    assert_eq!(json(&o)["records"][0]["fields"]["street"], "49 pvhttp St");
}

/// Starts `postvault serve` on a free port with `args` before the verb;
/// returns the child and its address.
fn serve_node(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0", "--sweep-interval", "0"])
        .env_remove("POSTVAULT_DATA")
        .env_remove("POSTVAULT_STORE")
        .env_remove("POSTVAULT_KEYS")
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

#[test]
fn two_nodes_on_one_postgres_keep_every_record_once_and_one_consistent_log() {
    let cluster = postvault_store_pg::TempCluster::start(Default::default())
        .unwrap_or_else(|e| panic!("this test needs a PostgreSQL server: {e}"));
    let url = cluster.url("postgres");
    let tmp = tempfile::tempdir().unwrap();
    let unused = tmp.path().join("unused");
    let on = |args: &[&str]| {
        let mut a = vec!["--store", url.as_str()];
        a.extend_from_slice(args);
        pv(&unused, &a)
    };
    assert_eq!(code(&on(&["init"])), 0);
    assert_eq!(code(&on(&["init"])), 1, "a second init is refused");
    let token = |name: &str, role: &str| {
        let o = on(&["principal", "add", name, "--role", role]);
        json(&o)["token"].as_str().unwrap().to_string()
    };
    let ingest = token("ingest", "collector");
    let sorting = token("sorting", "delivery");
    let key = String::from_utf8(on(&["log", "key"]).stdout).unwrap();
    assert!(!unused.exists(), "a PostgreSQL vault writes no directory");

    let nodes: Vec<_> = (0..2).map(|_| serve_node(&["--store", &url])).collect();
    let addrs: Vec<String> = nodes.iter().map(|(_, a)| a.clone()).collect();
    const BATCHES: usize = 6;
    const LINES: usize = 80;
    // Each node ingests its people in batches while reading the other
    // node's and signing checkpoints.
    let work: Vec<_> = (0..2)
        .map(|n| {
            let (mine, other) = (addrs[n].clone(), addrs[1 - n].clone());
            let (ingest, sorting) = (ingest.clone(), sorting.clone());
            std::thread::spawn(move || {
                let mut acked = 0u64;
                let mut notes = Vec::new();
                for b in 0..BATCHES {
                    let lines = (0..LINES)
                        .map(|i| format!(r#"{{"subject":"n{n}-{b}-{i}","category":"address","purpose":"delivery","fields":{{"street":"{n}-{b}-{i} pvnode St","city":"Springfield","state":"IL","zip":"62701"}}}}"#))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let (st, body) = http(&mine, "POST", "/v1/records", Some(&ingest), lines.as_bytes());
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
                    let rep: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    acked += rep["accepted"].as_u64().unwrap();
                    for i in [0, LINES / 2] {
                        let subject = format!("n{}-{b}-{i}", 1 - n);
                        let (st, _) = http(&other, "GET", &format!("/v1/subjects/{subject}?purpose=delivery"), Some(&sorting), b"");
                        assert_eq!(st, 200);
                    }
                    let (st, note) = http(&mine, "GET", "/v1/log/checkpoint", None, b"");
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&note));
                    notes.push(String::from_utf8(note).unwrap());
                }
                (acked, notes)
            })
        })
        .collect();
    let mut acked = 0;
    let mut notes = Vec::new();
    for w in work {
        let (a, n) = w.join().unwrap();
        acked += a;
        notes.extend(n);
    }
    assert_eq!(acked, (2 * BATCHES * LINES) as u64);
    for (mut child, _) in nodes {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }

    // Every acknowledged record is there once, readable from a third vault.
    let opts = postvault_store_pg::PgOptions::default();
    let v = postvault::Vault::open_with(
        std::path::Path::new(&url),
        Box::new(postvault_store_pg::PgStore::open(&url, &opts).unwrap()),
        Box::new(postvault_store_pg::PgKeyStore::open(&url, &opts).unwrap()),
        postvault::OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(v.store().record_count().unwrap(), acked);
    let officer = {
        v.add_principal("officer", "privacy_officer").unwrap();
        v.principal("officer").unwrap()
    };
    for n in 0..2 {
        for b in 0..BATCHES {
            for i in 0..LINES {
                let s = format!("n{n}-{b}-{i}");
                if i % 9 == 0 {
                    let r = v.read(&officer, &s, "subject_access").unwrap();
                    assert_eq!(r.records.len(), 1, "{s}");
                    assert_eq!(
                        r.records[0].fields.to_map().unwrap()["street"],
                        format!("{n}-{b}-{i} pvnode St")
                    );
                }
            }
        }
    }
    // Each person's record is stored exactly once.
    use postvault_store::KeyStore as _;
    let keys = postvault_store_pg::PgKeyStore::open(&url, &opts).unwrap();
    let master =
        postvault_crypto::MasterKey::from_bytes(&keys.secret("master").unwrap().unwrap()).unwrap();
    for n in 0..2 {
        for b in 0..BATCHES {
            for i in 0..LINES {
                let r = master.subject_ref(&format!("n{n}-{b}-{i}"));
                assert_eq!(v.store().subject_records(&r).unwrap().len(), 1);
            }
        }
    }

    // Every pair of checkpoints the nodes served is consistent.
    notes.extend(v.store().checkpoints().unwrap().into_iter().map(|(_, n)| n));
    let cps: Vec<_> = notes
        .iter()
        .map(|n| postvault_log::open_checkpoint(n, key.trim()).unwrap())
        .collect();
    assert!(cps.len() >= 2 * BATCHES);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for a in &cps {
        for b in &cps {
            if a.size > b.size {
                continue;
            }
            if a.size == b.size {
                assert_eq!(a.root, b.root, "two roots for size {}", a.size);
                continue;
            }
            let p = v.prove_consistency(a.size, b.size).unwrap();
            let path: Vec<[u8; 32]> = p
                .hashes
                .iter()
                .map(|h| b64.decode(h).unwrap().try_into().unwrap())
                .collect();
            postvault_log::verify_consistency(a.size, b.size, &a.root, &b.root, &path).unwrap();
        }
    }
    drop(v);
    assert_eq!(code(&on(&["log", "verify"])), 0);
}
