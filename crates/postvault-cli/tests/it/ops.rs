//! Operating a vault from the command line: collection that never stores a
//! line twice, atomic `init`, permissions, a full disk, `check`, `backup`
//! and `restore`, the master key outside the key store, exit code 6.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{code, json, pv, pv_in};

fn lines(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"subject": "{tag}-{i}", "category": "address", "purpose": "delivery", "fields": {{"street": "{i} Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A vault with `ingest` and `sorting`.
fn setup(data: &Path, extra: &[&str]) {
    let mut a = extra.to_vec();
    a.push("init");
    let o = pv(data, &a);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for (name, role) in [("ingest", "collector"), ("sorting", "delivery")] {
        let mut a = extra.to_vec();
        a.extend(["principal", "add", name, "--role", role]);
        assert_eq!(code(&pv(data, &a)), 0);
    }
}

fn records_of(data: &Path, extra: &[&str], subject: &str) -> usize {
    let mut a = extra.to_vec();
    a.extend([
        "read",
        "--as",
        "sorting",
        "--purpose",
        "delivery",
        "--subject",
        subject,
    ]);
    let o = pv(data, &a);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    json(&o)["records"].as_array().unwrap().len()
}

/// Collecting the same file again stores nothing again (it says so, and
/// answers with the first report); `--no-resume` forces a new run;
/// standard input resumes under `--batch-id`.
#[test]
fn collecting_the_same_input_again_never_stores_a_line_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    setup(&data, &[]);
    let file = tmp.path().join("in.ndjson");
    std::fs::write(&file, lines(50, "again")).unwrap();
    let f = file.to_str().unwrap();
    let first = pv(&data, &["collect", "--as", "ingest", f]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let id = json(&first)["run"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let again = pv(&data, &["collect", "--as", "ingest", f]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stderr(&again).contains("collected in full before"));
    let r = json(&again);
    assert_eq!(
        (r["accepted"].as_u64(), r["run"]["replayed"].as_bool()),
        (Some(50), Some(true))
    );
    assert_eq!(records_of(&data, &[], "again-7"), 1);
    // Forced: a new run, stored again.
    let forced = pv(&data, &["collect", "--as", "ingest", "--no-resume", f]);
    assert_eq!(code(&forced), 0);
    assert!(
        json(&forced)["run"]["id"]
            .as_str()
            .unwrap()
            .starts_with("run:")
    );
    assert_eq!(records_of(&data, &[], "again-7"), 2);
    // Standard input, under a batch id.
    let input = lines(10, "stdin");
    for _ in 0..2 {
        let o = pv_in(
            &data,
            &["collect", "--as", "ingest", "--batch-id", "upload-42"],
            Some(input.as_bytes()),
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    assert_eq!(records_of(&data, &[], "stdin-3"), 1);
    // The same id with other lines is refused, nothing stored.
    let o = pv_in(
        &data,
        &["collect", "--as", "ingest", "--batch-id", "upload-42"],
        Some(lines(10, "other").as_bytes()),
    );
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["code"], "run_mismatch");
    assert_eq!(records_of(&data, &[], "other-3"), 0);
}

/// What a killed `init` left is named the same way by every command, and
/// `init --replace` replaces it; `chmod 000` says permission denied.
#[test]
fn a_half_made_vault_is_named_and_replaced_and_permissions_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    std::fs::create_dir(&data).unwrap();
    let k = postvault_store::SqliteKeyStore::open(
        &data.join("keys.db"),
        postvault_store::OpenMode::Create,
    )
    .unwrap();
    postvault_store::KeyStore::put_secret(&k, "master", &[9; 32]).unwrap();
    drop(k);
    let read = pv(
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
    let init = pv(&data, &["init"]);
    for o in [&read, &init] {
        assert_eq!(code(o), 1);
        assert_eq!(json(o)["error"]["code"], "half_made", "{}", stderr(o));
        assert!(stderr(o).contains("init --replace"), "{}", stderr(o));
        assert!(!stderr(o).contains("already exists"));
        assert!(!stderr(o).contains("run `postvault init` first"));
    }
    let o = pv(&data, &["init", "--replace"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&pv(&data, &["check"])), 0);

    // Permissions: as a user who may not enter the directory.
    if is_root() {
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        set_mode(tmp.path(), 0o755);
        set_mode(&open, 0o755);
        let bin = open.join("postvault");
        std::fs::copy(env!("CARGO_BIN_EXE_postvault"), &bin).unwrap();
        let vault = open.join("vault");
        assert_eq!(code(&pv(&vault, &["init"])), 0);
        set_mode(&vault, 0o000);
        let o = as_nobody(&bin, &vault, &["check"]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert_eq!(
            json(&o)["error"]["code"],
            "permission_denied",
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("no vault"));
        set_mode(&vault, 0o755);
        set_mode(&vault.join("keys.db"), 0o000);
        let o = as_nobody(&bin, &vault, &["check"]);
        assert_eq!(
            json(&o)["error"]["code"],
            "permission_denied",
            "{}",
            stderr(&o)
        );
        set_mode(&vault, 0o700);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn as_nobody(bin: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(args)
        .uid(65534)
        .gid(65534)
        .env_remove("POSTVAULT_DATA")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A full disk during `init`: a clear error, and nothing left behind (on a
/// tiny tmpfs mounted for the test).
#[test]
fn init_on_a_full_disk_says_so_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = is_root()
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("init_on_a_full_disk: no tmpfs (needs root and mount); checked the message only");
        return;
    }
    let data = mnt.join("vault");
    let o = pv(&data, &["init"]);
    let listing: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(json(&o)["error"]["code"], "disk_full", "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was left behind"));
    assert!(listing.is_empty(), "left behind: {listing:?}");
}

/// `check`, `backup`, `restore`, exit code 6 for records without keys, and
/// the master key kept outside the key store (a file, the environment, a
/// command), moved out and rotated.
#[test]
fn check_backup_restore_and_an_external_master_key_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vault");
    setup(&data, &[]);
    let file = tmp.path().join("in.ndjson");
    std::fs::write(&file, lines(30, "ops")).unwrap();
    assert_eq!(
        code(&pv(
            &data,
            &["collect", "--as", "ingest", file.to_str().unwrap()]
        )),
        0
    );
    let o = pv(&data, &["check"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(
        (r["ok"].as_bool(), r["records"].as_u64()),
        (Some(true), Some(30))
    );

    // Backup and restore.
    let (b_data, b_keys) = (tmp.path().join("b-data"), tmp.path().join("b-keys"));
    let o = pv(
        &data,
        &[
            "backup",
            "--data-to",
            b_data.to_str().unwrap(),
            "--keys-to",
            b_keys.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["records"], 30);
    let restored = tmp.path().join("restored");
    let o = pv(
        &data,
        &[
            "restore",
            "--data-from",
            b_data.to_str().unwrap(),
            "--keys-from",
            b_keys.to_str().unwrap(),
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["check"]["ok"], true);
    assert_eq!(records_of(&restored, &[], "ops-4"), 1);

    // The data store beside a key store that lost the people's keys (as a
    // lost WAL loses them): exit 6.
    let wal_less = tmp.path().join("wal-less");
    std::fs::create_dir(&wal_less).unwrap();
    std::fs::copy(b_data.join("data.db"), wal_less.join("data.db")).unwrap();
    std::fs::copy(b_keys.join("keys.db"), wal_less.join("keys.db")).unwrap();
    {
        let c = rusqlite::Connection::open(wal_less.join("keys.db")).unwrap();
        c.execute("DELETE FROM subject_keys", []).unwrap();
    }
    let o = pv(
        &wal_less,
        &[
            "read",
            "--as",
            "sorting",
            "--purpose",
            "delivery",
            "--subject",
            "ops-1",
        ],
    );
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert_eq!(json(&o)["error"]["code"], "keys_missing");
    assert!(
        stderr(&o).contains("1 records could not be opened"),
        "{}",
        stderr(&o)
    );
    let o = pv(&wal_less, &["check"]);
    assert_eq!(code(&o), 6);
    assert_eq!(json(&o)["records_without_keys"]["records"], 30);

    // The master key outside the key store.
    let key = tmp.path().join("master.key");
    let o = pv(
        &data,
        &[
            "keys",
            "externalize",
            "--new-key-file",
            key.to_str().unwrap(),
            "--generate",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["moved_out_of_key_store"], true);
    let o = pv(&data, &["check"]);
    assert_eq!(
        json(&o)["error"]["code"],
        "master_key_required",
        "{}",
        stderr(&o)
    );
    let k = key.to_str().unwrap();
    assert_eq!(records_of(&data, &["--master-key-file", k], "ops-2"), 1);
    let o = Command::new(env!("CARGO_BIN_EXE_postvault"))
        .arg("--data")
        .arg(&data)
        .arg("check")
        .env("POSTVAULT_MASTER_KEY_FILE", &key)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cmd = format!("cat {k}");
    assert_eq!(
        records_of(&data, &["--master-key-command", cmd.as_str()], "ops-2"),
        1
    );
    let o = pv(&data, &["--master-key-command", "false", "check"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("master key command failed"));
    // Rotation: the old key stops working, the new one works.
    let key2 = tmp.path().join("master2.key");
    let o = pv(
        &data,
        &[
            "--master-key-file",
            k,
            "keys",
            "rotate-master",
            "--new-key-file",
            key2.to_str().unwrap(),
            "--generate",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = pv(&data, &["--master-key-file", k, "check"]);
    assert_eq!(json(&o)["error"]["code"], "master_key_wrong");
    let k2 = key2.to_str().unwrap();
    let o = pv(&data, &["--master-key-file", k2, "check"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A key file others may read is refused.
    set_mode(&key2, 0o644);
    let o = pv(&data, &["--master-key-file", k2, "check"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    set_mode(&key2, 0o600);
    // The demo runs on an external key too.
    let o = pv(
        tmp.path(),
        &["--master-key-file", k2, "demo", "--scale", "0.000002"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Help names the exit code.
    let o = pv(tmp.path(), &["--help"]);
    let help = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("6 keys missing"), "{help}");
}

/// On PostgreSQL: `init` with an external key, every command taking it,
/// `check`, and `backup` pointing at pg_dump.
#[test]
fn on_postgres_the_master_key_options_and_check_work_and_backup_points_at_pg_dump() {
    let cluster = postvault_store_pg::TempCluster::shared(Default::default())
        .unwrap_or_else(|e| panic!("this test needs a PostgreSQL server: {e}"));
    let url = cluster.url("postgres");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    set_mode(&key, 0o600);
    let unused = tmp.path().join("unused");
    let with_key = [
        "--store",
        url.as_str(),
        "--master-key-file",
        key.to_str().unwrap(),
    ];
    setup(&unused, &with_key);
    let file = tmp.path().join("in.ndjson");
    std::fs::write(&file, lines(5, "pgops")).unwrap();
    let mut a = with_key.to_vec();
    a.extend(["collect", "--as", "ingest", file.to_str().unwrap()]);
    assert_eq!(code(&pv(&unused, &a)), 0);
    assert_eq!(records_of(&unused, &with_key, "pgops-1"), 1);
    let o = pv(&unused, &["--store", url.as_str(), "check"]);
    assert_eq!(json(&o)["error"]["code"], "master_key_required");
    let mut a = with_key.to_vec();
    a.push("check");
    let o = pv(&unused, &a);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut a = with_key.to_vec();
    a.extend(["backup", "--data-to", "/tmp/x", "--keys-to", "/tmp/y"]);
    let o = pv(&unused, &a);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("pg_dump"), "{}", stderr(&o));
}

/// `postvault stats blocks` builds the scan blocks of every category the
/// pack declares statistics over (or one), says what it built as JSON, and
/// refuses a category without statistics (exit 4, with its code).
#[test]
fn scan_blocks_are_built_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("v");
    setup(&data, &[]);
    let events: String = (0..30)
        .map(|i| {
            format!(
                "{{\"subject\":\"cust-{}\",\"category\":\"scan_event\",\"purpose\":\"delivery\",\"fields\":{{\"piece\":\"letter\",\"facility_zip\":\"6060{}\",\"op_code\":\"918\",\"event\":\"processed\",\"scanned_at\":\"2026-11-01T0{}:00:00Z\"}}}}\n",
                i % 3,
                i % 10,
                i % 10
            )
        })
        .collect();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, events).unwrap();
    let o = pv(
        &data,
        &["collect", "--as", "ingest", file.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = pv(&data, &["stats", "blocks"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let built = json(&o);
    let scans = built
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["category"] == "scan_event")
        .unwrap();
    assert_eq!(scans["supported"], true);
    assert_eq!(scans["people"], 3);
    assert_eq!(scans["records"], 30);
    assert_eq!(scans["blocks"], 3);
    assert!(scans["tag"].as_str().unwrap().starts_with("b2:scanned_at:"));
    let o = pv(&data, &["stats", "blocks", "--category", "scan_event"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o).as_array().unwrap().len(), 1);
    for (category, want) in [("address", "no_statistics"), ("nope", "unknown_category")] {
        let o = pv(&data, &["stats", "blocks", "--category", category]);
        assert_eq!(code(&o), 4, "{category}: {}", stderr(&o));
        assert_eq!(json(&o)["error"]["code"], want);
    }
}
