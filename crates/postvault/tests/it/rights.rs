//! Retention, erasure, legal holds, consent and the subject access report,
//! end to end: against a restored backup, by byte scans of the whole vault
//! directory, under a concurrent ingest, and with the log verifier.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use postvault::{Clock, Event, OpenOptions, ReportLeaf, Vault, VerifyOptions};
use postvault_crypto::MasterKey;
use postvault_store::{KeyStore, OpenMode, SqliteKeyStore, SubjectRef};

use super::disclosure::{
    approve, court_order, cover_with_a_record, gateway_vault, gateway_vault_on, submit,
};
use super::*;

const DAY: i64 = 86_400_000;

/// Fails if any file of the vault directory holds any of `needles`.
fn assert_absent(dir: &Path, needles: &[(&str, Vec<u8>)]) {
    for (path, bytes) in vault_files(dir) {
        for (what, n) in needles {
            assert!(!contains(&bytes, n), "{what} found in {path}");
        }
    }
}

fn keys(dir: &Path) -> SqliteKeyStore {
    SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Existing).unwrap()
}

fn subject_ref(dir: &Path, id: &str) -> SubjectRef {
    let master = keys(dir).secret("master").unwrap().unwrap();
    MasterKey::from_bytes(&master).unwrap().subject_ref(id)
}

/// Records of person `id`, superseded ones included, as stored.
fn rows_of_on(b: &Backend, dir: &Path, id: &str) -> i64 {
    let master = b.keys(dir).secret("master").unwrap().unwrap();
    let subject = MasterKey::from_bytes(&master).unwrap().subject_ref(id);
    match b {
        Backend::Sqlite => rows_of(dir, id),
        Backend::Postgres { .. } => {
            let v = b.open(dir, OpenOptions::default()).unwrap();
            v.store().subject_records(&subject).unwrap().len() as i64
        }
    }
}

fn rows_of(dir: &Path, id: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("data.db")).unwrap();
    conn.query_row(
        "SELECT count(*) FROM records WHERE subject = ?1",
        [subject_ref(dir, id)],
        |r| r.get(0),
    )
    .unwrap()
}

fn officer(v: &Vault) -> postvault::Principal {
    v.principal("officer").unwrap()
}

fn events(v: &Vault) -> Vec<Event> {
    let n = v.log_catch_up().unwrap();
    v.log_entries(0, n)
        .unwrap()
        .into_iter()
        .map(|e| e.event.unwrap())
        .collect()
}

/// Copies the data store (database and WAL) aside, as a backup would.
fn backup(dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["data.db", "data.db-wal"] {
        let p = dir.join(name);
        if p.exists() {
            std::fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

fn restore(from: &Path, dir: &Path) {
    for name in ["data.db", "data.db-wal", "data.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), dir.join(name)).unwrap();
        }
    }
}

#[test]
fn erasure_holds_against_a_restored_backup_and_leaves_nothing_linkable() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let r = collect(
        &v,
        "ingest",
        &[person("cust-e", "pvEraseMe"), person("cust-k", "pvKeepMe")].join("\n"),
    );
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    let sorting = v.principal("sorting").unwrap();
    assert!(
        !v.read(&sorting, "cust-e", "delivery")
            .unwrap()
            .records
            .is_empty()
    );
    let tag_key = v.subject_tag_key("cust-e").unwrap().unwrap();
    let wrapped = keys(dir.path())
        .subject_keys(&subject_ref(dir.path(), "cust-e"))
        .unwrap()
        .unwrap();
    let e_ref = subject_ref(dir.path(), "cust-e");
    backup(dir.path(), saved.path());

    let report = v
        .erase(&officer(&v), &["cust-e".to_string()], &mut |_| {})
        .unwrap();
    assert_eq!(report.erased, 1);
    assert_eq!(report.records_deleted, 9);
    assert_eq!(report.keys_destroyed, 2);
    assert!(report.held.is_empty());

    // Nothing of theirs is readable, and the log still verifies.
    assert!(
        v.read(&sorting, "cust-e", "delivery")
            .unwrap()
            .records
            .is_empty()
    );
    assert!(v.subject_tag_key("cust-e").unwrap().is_none());
    assert_eq!(
        v.read(&sorting, "cust-k", "delivery")
            .unwrap()
            .records
            .len(),
        5
    );
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
    // One leaf records the erasure; the person's saved tag key finds it.
    let erase_leaves: Vec<Event> = events(&v)
        .into_iter()
        .filter(|e| e.action == "erase")
        .collect();
    assert_eq!(erase_leaves.len(), 1);
    assert_eq!(erase_leaves[0].decision, "allow");
    let (_, found) = v.find_leaves(&tag_key).unwrap();
    assert_eq!(found.last().unwrap().index, report.first_leaf);
    assert_eq!(leaves_found(&v, &tag_key).len(), found.len());
    // One person: the erasure purged their rows itself.
    assert_eq!(report.purged.map(|p| (p.people, p.records)), Some((1, 9)));
    assert_eq!(rows_of(dir.path(), "cust-e"), 0);
    assert!(v.store().subject_records(&e_ref).unwrap().is_empty());
    drop(v);

    // Byte scan: no plaintext, no wrapped key, no subject ref in any file
    // (the disclosure ledger never named this person).
    let scan = [
        ("marker", b"pvEraseMe".to_vec()),
        ("wrapped data key", wrapped.data.clone()),
        ("wrapped tag key", wrapped.tag.clone()),
        ("subject ref", e_ref.to_vec()),
    ];
    assert_absent(dir.path(), &scan);

    // The backup holds the rows; put it back beside the current keys.
    restore(saved.path(), dir.path());
    assert_eq!(
        rows_of(dir.path(), "cust-e"),
        9,
        "the backup holds the rows"
    );
    // The vault refuses a data store behind its last signed checkpoint...
    assert!(matches!(
        Vault::open(dir.path(), opts(&c)),
        Err(VaultError::LogRollback(_))
    ));
    // ...and even with that guard removed from the key store (its owner
    // could), nothing of the erased person can be read.
    rusqlite::Connection::open(dir.path().join("keys.db"))
        .unwrap()
        .execute("DELETE FROM log_state", [])
        .unwrap();
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let sorting = v.principal("sorting").unwrap();
    let care = v.principal("care").unwrap();
    let officer_p = officer(&v);
    // Nothing of the erased person opens: the rows the backup brought back
    // have no keys, and a read says so (an error naming a count, never an
    // empty answer that would hide rows without keys).
    for (p, purpose) in [
        (&sorting, "delivery"),
        (&care, "account_service"),
        (&officer_p, "subject_access"),
    ] {
        match v.read(p, "cust-e", purpose) {
            Err(postvault::VaultError::RecordKeysMissing { records }) => assert!(records > 0),
            other => panic!("{purpose}: expected keys_missing, got {other:?}"),
        }
    }
    let check = v.check().unwrap();
    assert_eq!(
        (
            check.records_without_keys.records,
            check.records_without_keys.keys
        ),
        (9, 1),
        "{check:?}"
    );
    assert_eq!(
        v.read(&sorting, "cust-k", "delivery")
            .unwrap()
            .records
            .len(),
        5
    );
    assert!(v.subject_tag_key("cust-e").unwrap().is_none());
}

#[test]
fn retention_destroys_period_keys_then_rows_and_a_backup_stays_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let r = collect(&v, "ingest", &person("cust-r", "pvRetainMark"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    let names = keys(dir.path()).secret_names("retention:").unwrap();
    // One period key per category and day of expiry.
    assert_eq!(names.len(), 8, "{names:?}");
    let image_key = names
        .iter()
        .find(|n| n.starts_with("retention:mail_image:"))
        .unwrap()
        .clone();
    let image_wrapped = keys(dir.path()).secret(&image_key).unwrap().unwrap();

    // Nothing expired yet: the sweep destroys nothing.
    let first = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!((first.periods_destroyed, first.records_deleted), (0, 0));

    // Mail images are kept 7 days (R23): on day 7 they are gone.
    c.advance(7 * DAY);
    backup(dir.path(), saved.path());
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(sweep.periods_destroyed, 1);
    assert_eq!(sweep.records_deleted, 1);
    assert_eq!(sweep.by_category.get("mail_image"), Some(&1));
    assert!(keys(dir.path()).secret(&image_key).unwrap().is_none());
    let e = events(&v).pop().unwrap();
    assert_eq!((e.action.as_str(), e.count), ("retention", 1));
    let sorting = v.principal("sorting").unwrap();
    let read = v.read(&sorting, "cust-r", "delivery").unwrap();
    assert!(read.records.iter().all(|r| r.category != "mail_image"));
    assert_eq!(read.records.len(), 4);
    drop(v);
    assert_absent(dir.path(), &[("mail_image period key", image_wrapped)]);

    // The backup from before the sweep still holds the image's row, but its
    // key is gone: even read at a time before its expiry it stays sealed.
    restore(saved.path(), dir.path());
    let early = std::sync::Arc::new(postvault::FixedClock::new(T0));
    let v = Vault::open(dir.path(), opts(&early)).unwrap();
    let sorting = v.principal("sorting").unwrap();
    // At a time before its expiry the image's record should open, and its
    // key is gone: the read fails, naming the one record, and returns
    // nothing (the image least of all).
    match v.read(&sorting, "cust-r", "delivery") {
        Err(postvault::VaultError::RecordKeysMissing { records }) => assert_eq!(records, 1),
        other => panic!("expected keys_missing, got {other:?}"),
    }
    assert_eq!(v.check().unwrap().period_keys_missing.records, 1);
    drop(v);

    // Five years on, everything has expired: no row, no period key, no
    // marker anywhere, and the log verifies.
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    c.advance(5 * 366 * DAY);
    let all = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(all.records_deleted, 9, "{all:?}");
    assert_eq!(v.store().record_count().unwrap(), 0);
    assert!(
        keys(dir.path())
            .secret_names("retention:")
            .unwrap()
            .is_empty()
    );
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
    drop(v);
    assert_absent(dir.path(), &[("marker", b"pvRetainMark".to_vec())]);
}

#[test]
fn a_hold_blocks_erasure_and_retention_until_released() {
    a_hold_blocks_erasure_and_retention_until_released_on(&Backend::Sqlite);
}

pub fn a_hold_blocks_erasure_and_retention_until_released_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let off = officer(&v);

    // Only an approved instrument carries a hold.
    let refused = submit(&v, "ice", &serde_json::json!({"kind": "letter"}));
    assert!(refused.refused());
    assert_eq!(
        v.hold_place(&off, &refused.id, None).unwrap_err().code(),
        "not_permitted"
    );
    let sub = submit(&v, "fbi", &court_order());
    assert_eq!(sub.status, "pending_approval", "{sub:?}");
    assert_eq!(
        v.hold_place(&off, &sub.id, None).unwrap_err().code(),
        "not_permitted"
    );
    assert!(!approve(&v, "officer", &sub.id).refused());
    let fbi = v.principal("fbi").unwrap();
    assert_eq!(
        v.hold_place(&fbi, &sub.id, None).unwrap_err().code(),
        "not_permitted",
        "an agency cannot place holds"
    );
    let too_long = c.now_ms() + 91 * DAY;
    assert_eq!(
        v.hold_place(&off, &sub.id, Some(too_long))
            .unwrap_err()
            .code(),
        "invalid"
    );
    let hold = v.hold_place(&off, &sub.id, None).unwrap();
    assert_eq!(hold.status, "active");
    assert_eq!(hold.subjects.len(), 1);

    // Erasure of the held person is refused (exit 3 in the CLI), others go.
    let r = v
        .erase(
            &off,
            &["cust-a".to_string(), "cust-b".to_string()],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.erased, 1);
    assert_eq!(r.held, vec!["cust-a".to_string()]);
    let leaves: Vec<Event> = events(&v)
        .into_iter()
        .filter(|e| e.action == "erase")
        .collect();
    // One leaf each (in the order of their keyed refs): one refused.
    assert_eq!(leaves.len(), 2);
    let denied: Vec<&Event> = leaves.iter().filter(|e| e.decision == "deny").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].reasons, vec!["legal_hold".to_string()]);

    // Retention: the held person's mail image outlives its period, sealed
    // under their hold key since the placement; the period key is
    // destroyed all the same, and the others' images are gone.
    let image_key = b
        .keys(dir.path())
        .secret_names("retention:mail_image:")
        .unwrap();
    assert_eq!(image_key.len(), 1);
    c.advance(8 * DAY);
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert!(sweep.periods_destroyed >= 1);
    assert!(b.keys(dir.path()).secret(&image_key[0]).unwrap().is_none());
    assert_eq!(
        sweep.by_category.get("mail_image"),
        Some(&1),
        "cust-p's image"
    );
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 9);
    // Kept, and readable: by the person, and by the hold's own request.
    let mine = v.read(&off, "cust-a", "subject_access").unwrap();
    assert!(
        mine.records.iter().any(|r| r.category == "mail_image"),
        "{mine:?}"
    );
    let sorting_view = v.read(&off, "cust-b", "subject_access").unwrap();
    assert!(
        sorting_view
            .records
            .iter()
            .all(|r| r.category != "mail_image")
    );

    // The person sees the hold in their report.
    let report = v.subject_report(&off, "cust-a").unwrap();
    assert_eq!(report.holds.len(), 1);
    assert!(report.holds[0].subjects.is_empty());

    // Released: the expired image goes at the next sweep, then erasure works.
    let released = v.hold_release(&off, &hold.id).unwrap();
    assert_eq!(released.status, "released");
    assert_eq!(
        v.hold_release(&off, &hold.id).unwrap_err().code(),
        "not_permitted"
    );
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(sweep.records_deleted, 1);
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 8);
    // The hold key is gone; what was not expired is back under period keys.
    assert!(b.keys(dir.path()).secret_names("hold:").unwrap().is_empty());
    let mine = v.read(&off, "cust-a", "subject_access").unwrap();
    assert_eq!(mine.records.len(), 8);
    let r = v.erase(&off, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!((r.erased, r.held.len()), (1, 0));
    assert_eq!(r.records_deleted, 8);
    // One person: the erasure purged their rows itself.
    assert_eq!(r.purged.map(|p| (p.people, p.records)), Some((1, 8)));
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 0);
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(sweep.erased_purged.people, 0, "nothing left for the sweep");
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
}

#[test]
fn a_hold_lapses_at_its_expiry() {
    a_hold_lapses_at_its_expiry_on(&Backend::Sqlite);
}

pub fn a_hold_lapses_at_its_expiry_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let off = officer(&v);
    let sub = submit(&v, "fbi", &court_order());
    approve(&v, "officer", &sub.id);
    v.hold_place(&off, &sub.id, Some(c.now_ms() + 2 * DAY))
        .unwrap();
    assert_eq!(
        v.erase(&off, &["cust-a".to_string()], &mut |_| {})
            .unwrap()
            .held
            .len(),
        1
    );
    c.advance(2 * DAY);
    assert_eq!(v.holds(&off).unwrap()[0].status, "lapsed");
    let r = v.erase(&off, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!(r.erased, 1);
}

#[test]
fn erasure_during_a_concurrent_ingest_leaves_no_unreadable_record() {
    erasure_during_a_concurrent_ingest_leaves_no_unreadable_record_on(&Backend::Sqlite);
}

pub fn erasure_during_a_concurrent_ingest_leaves_no_unreadable_record_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    // 400 batches of 25 lines; every batch carries a line of `cust-x`.
    let mut lines = Vec::new();
    for i in 0..10_000 {
        let subject = if i % 25 == 0 {
            "cust-x".to_string()
        } else {
            format!("cust-{i}")
        };
        lines.push(line(
            &subject,
            "address",
            "delivery",
            serde_json::json!({"street": format!("{i} Elm St"), "city": "Springfield", "state": "IL", "zip": "62701"}),
        ));
    }
    let input = lines.join("\n");
    let ingest = v.principal("ingest").unwrap();
    let off = officer(&v);
    let mut erased = 0;
    let report = std::thread::scope(|s| {
        let h = s.spawn(|| {
            v.collect(
                &ingest,
                &mut input.as_bytes(),
                &postvault::CollectOptions {
                    batch_size: 25,
                    ..postvault::CollectOptions::default()
                },
                &mut |_| {},
            )
            .unwrap()
        });
        while !h.is_finished() {
            let r = v.erase(&off, &["cust-x".to_string()], &mut |_| {}).unwrap();
            erased += r.erased;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        h.join().unwrap()
    });
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.accepted, 10_000);
    assert!(erased > 0);
    // Every other record acknowledged is there and readable.
    let sorting = v.principal("sorting").unwrap();
    for i in (1..10_000).step_by(997) {
        if i % 25 != 0 {
            let r = v.read(&sorting, &format!("cust-{i}"), "delivery").unwrap();
            assert_eq!(r.records.len(), 1, "cust-{i}");
        }
    }
    // What is stored of the erased person (collected after the last
    // erasure) opens under their current keys: nothing is left sealed
    // under a destroyed key.
    let stored = rows_of_on(b, dir.path(), "cust-x");
    let read = v.read(&sorting, "cust-x", "delivery").unwrap();
    assert_eq!(read.records.len() as i64, stored);
    let others = v.store().record_count().unwrap() as i64 - stored;
    assert_eq!(others, 9_600);
}

#[test]
fn consent_takes_effect_on_the_next_read() {
    consent_takes_effect_on_the_next_read_on(&Backend::Sqlite);
}

pub fn consent_takes_effect_on_the_next_read_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("cust-c", "pvConsent"));
    let promo = v.principal("promo").unwrap();
    let off = officer(&v);
    let before = v.read(&promo, "cust-c", "marketing").unwrap();
    v.set_consent(&off, "cust-c", "marketing", true).unwrap();
    let granted = v.read(&promo, "cust-c", "marketing").unwrap();
    assert!(granted.records.len() > before.records.len(), "{granted:?}");
    v.set_consent(&off, "cust-c", "marketing", false).unwrap();
    let withdrawn = v.read(&promo, "cust-c", "marketing").unwrap();
    assert_eq!(withdrawn.records.len(), before.records.len());
    let report = v.subject_report(&off, "cust-c").unwrap();
    assert_eq!(report.consents.len(), 1);
    assert!(!report.consents[0].granted);
}

#[test]
fn the_subject_report_proves_every_leaf_with_the_log_verifier() {
    the_subject_report_proves_every_leaf_with_the_log_verifier_on(&Backend::Sqlite);
}

pub fn the_subject_report_proves_every_leaf_with_the_log_verifier_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    v.add_principal("sorting", "delivery").unwrap();
    let sorting = v.principal("sorting").unwrap();
    v.read(&sorting, "cust-a", "delivery").unwrap();
    let sub = submit(&v, "fbi", &court_order());
    approve(&v, "officer", &sub.id);
    v.disclose_fetch(&v.principal("fbi").unwrap(), &sub.id)
        .unwrap();
    let off = officer(&v);
    let r = v.subject_report(&off, "cust-a").unwrap();
    assert!(r.proofs_verified);
    assert_eq!(r.records.len(), 9, "subject_access sees everything held");
    assert_eq!(r.disclosures.len(), 1);
    let actions: Vec<&str> = r
        .log
        .iter()
        .map(|l| l.event.as_ref().unwrap().action.as_str())
        .collect();
    assert!(actions.contains(&"read"), "{actions:?}");
    assert!(actions.contains(&"disclose"), "{actions:?}");
    // Every leaf the person can find is in the report, and each proof checks
    // out with the log crate alone, against the signed checkpoint.
    let (_, found) = v
        .find_leaves(&v.subject_tag_key("cust-a").unwrap().unwrap())
        .unwrap();
    assert_eq!(found.len(), r.log.len());
    let cp = postvault_log::open_checkpoint(&r.checkpoint, &r.log_verifier_key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for l in &r.log {
        let leaf = b64.decode(&l.leaf).unwrap();
        let hash = postvault_log::leaf_hash(&leaf);
        let path: Vec<[u8; 32]> = l
            .proof
            .hashes
            .iter()
            .map(|h| b64.decode(h).unwrap().try_into().unwrap())
            .collect();
        postvault_log::verify_inclusion(l.index, cp.size, &hash, &path, &cp.root).unwrap();
    }
    // A tampered leaf fails the report's own check.
    let mut bad: Vec<ReportLeaf> = r.log.clone();
    bad[0].leaf = b64.encode(b"{}");
    assert!(postvault::verify_report_proofs(&r.checkpoint, &r.log_verifier_key, &bad).is_err());
    // The HTML page is for a person: plain headings, values escaped.
    let html = postvault::report_html(&r);
    assert!(html.contains("What the postal service holds about you"));
    assert!(html.contains("Information given to outside agencies"));
    assert!(!html.contains("<script"));
    let mut evil = r.clone();
    evil.subject = "<script>alert(1)</script>".into();
    assert!(!postvault::report_html(&evil).contains("<script>"));
}

#[test]
fn a_correction_keeps_history_and_lists_prior_recipients() {
    a_correction_keeps_history_and_lists_prior_recipients_on(&Backend::Sqlite);
}

pub fn a_correction_keeps_history_and_lists_prior_recipients_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    v.add_principal("sorting", "delivery").unwrap();
    let sub = submit(&v, "fbi", &court_order());
    approve(&v, "officer", &sub.id);
    v.disclose_fetch(&v.principal("fbi").unwrap(), &sub.id)
        .unwrap();
    c.advance(DAY);
    let off = officer(&v);
    let fixed =
        r#"{"street": "12 Corrected Ave", "city": "Springfield", "state": "IL", "zip": "62702"}"#;

    // Only a role acting for the person corrects; bad fields are refused.
    let fbi = v.principal("fbi").unwrap();
    assert_eq!(
        v.correct(&fbi, "cust-a", "address", fixed, None)
            .unwrap_err()
            .code(),
        "not_permitted"
    );
    assert_eq!(
        v.correct(
            &off,
            "cust-a",
            "address",
            r#"{"street": "x", "ssn": "1"}"#,
            None
        )
        .unwrap_err()
        .code(),
        "invalid"
    );
    assert_eq!(
        v.correct(&off, "cust-a", "address", "[1]", None)
            .unwrap_err()
            .code(),
        "invalid"
    );
    assert_eq!(
        v.correct(&off, "nobody", "address", fixed, None)
            .unwrap_err()
            .code(),
        "not_permitted"
    );

    let r = v.correct(&off, "cust-a", "address", fixed, None).unwrap();
    assert_eq!(r.notify.len(), 1, "the agency that received the address");
    assert_eq!(r.notify[0].recipient_principal, "fbi");
    let e = events(&v).pop().unwrap();
    assert_eq!(
        (e.action.as_str(), e.categories.clone()),
        ("correct", vec!["address".to_string()])
    );

    // Delivery sees the corrected address only; the person sees the history.
    let sorting = v.principal("sorting").unwrap();
    let read = v.read(&sorting, "cust-a", "delivery").unwrap();
    let addresses: Vec<_> = read
        .records
        .iter()
        .filter(|x| x.category == "address")
        .collect();
    assert_eq!(addresses.len(), 1);
    assert_eq!(
        addresses[0].fields.to_map().unwrap()["street"],
        "12 Corrected Ave"
    );
    let mine = v.read(&off, "cust-a", "subject_access").unwrap();
    let history: Vec<_> = mine
        .records
        .iter()
        .filter(|x| x.category == "address")
        .collect();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].superseded_by.as_deref(), Some(r.record.as_str()));
    // A correction never extends retention.
    assert_eq!(history[0].expires_at, history[1].expires_at);
    assert_eq!(
        rows_of_on(b, dir.path(), "cust-a"),
        10,
        "nine, and the correction"
    );
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
}

#[test]
fn a_mail_cover_record_ends_with_its_person_even_in_a_restored_backup() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault(dir.path(), &c);
    let a = cover_with_a_record(&v);
    let fbi = v.principal("fbi").unwrap();
    let count = |p: &postvault::Package| {
        p.subjects
            .iter()
            .flat_map(|s| &s.records)
            .filter(|r| r.category == "mail_cover_record")
            .count()
    };
    assert_eq!(count(&v.disclose_fetch(&fbi, &a.id).unwrap()), 1);
    backup(dir.path(), saved.path());
    let r = v
        .erase(&officer(&v), &["cust-a".to_string()], &mut |_| {})
        .unwrap();
    assert_eq!(r.erased, 1);
    drop(v);
    // The order's key still exists, but the person's is gone: nothing opens.
    restore(saved.path(), dir.path());
    assert!(rows_of(dir.path(), "cust-a") > 0);
    assert_eq!(keys(dir.path()).secret_names("cover:").unwrap().len(), 1);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let fbi = v.principal("fbi").unwrap();
    // Rows without keys: the fetch and the read fail loudly, with nothing.
    assert_eq!(
        v.disclose_fetch(&fbi, &a.id).unwrap_err().code(),
        "keys_missing"
    );
    let inspector = v.principal("inspector").unwrap();
    assert_eq!(
        v.read(&inspector, "cust-a", "mail_cover")
            .unwrap_err()
            .code(),
        "keys_missing"
    );
}

/// A person under a mail cover who erases their data is told the same as a
/// person with the same records and no cover: the erasure's counts (the
/// answer, its purge, the public `erase_intent` and `erase_done` leaves)
/// leave the cover's records out, which the person's report never shows,
/// though the rows go with the rest.
#[test]
fn an_erasure_does_not_count_records_of_a_mail_cover() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault(dir.path(), &c);
    cover_with_a_record(&v);
    v.add_principal("sar", "subject_access").unwrap();
    let sar = v.principal("sar").unwrap();
    let rows = rows_of(dir.path(), "cust-a");
    let mut answers = Vec::new();
    for who in ["cust-a", "cust-b"] {
        let shown = v.subject_report(&sar, who).unwrap().records.len() as u64;
        assert!(shown > 0);
        let before = events(&v).len();
        let r = v.erase(&sar, &[who.to_string()], &mut |_| {}).unwrap();
        assert_eq!((r.erased, r.records_deleted), (1, shown), "{who}");
        let purged = r.purged.expect("purged at once");
        assert_eq!((purged.people, purged.records), (1, shown), "{who}");
        let selectors: Vec<String> = events(&v)[before..]
            .iter()
            .filter(|e| e.action.starts_with("erase_"))
            .map(|e| e.selector.clone().unwrap_or_default())
            .collect();
        assert_eq!(selectors.len(), 2, "{who}: {selectors:?}");
        for s in &selectors {
            let records = format!("records:{shown}");
            assert!(s.split(';').any(|p| p == records), "{who}: {s}");
        }
        let mut answer = serde_json::to_value(&r).unwrap();
        answer.as_object_mut().unwrap().remove("first_leaf");
        answers.push(answer);
        assert_eq!(rows_of(dir.path(), who), 0, "{who}: every row is gone");
    }
    assert_eq!(answers[0], answers[1]);
    // cust-a had one row more than the report showed: the cover's.
    assert_eq!(rows, answers[0]["records_deleted"].as_i64().unwrap() + 1);
    // Someone whose only record is a cover's is told what a person with
    // no records is: nothing deleted, nobody purged.
    let order = super::disclosure::submit(
        &v,
        "fbi",
        &super::disclosure::with(
            super::disclosure::mail_cover(),
            &[
                ("subjects", serde_json::json!([{"id": "cust-c"}])),
                ("instrument_id", serde_json::json!("MC-2")),
                ("case_id", serde_json::json!("FBI-MC-2")),
            ],
        ),
    );
    assert!(!approve(&v, "officer", &order.id).refused());
    let line = serde_json::json!({"subject": "cust-c", "category": "mail_cover_record",
        "purpose": "mail_cover", "legal_basis": "39 CFR 233.3", "fields": {"order_id": order.id,
        "recorded_on": "2026-11-02", "sender_as_shown": "pvCoverSender",
        "return_address": "9 Other St, Chicago IL"}});
    assert_eq!(collect(&v, "inspector", &line.to_string()).accepted, 1);
    assert!(v.subject_report(&sar, "cust-c").unwrap().records.is_empty());
    let before = events(&v).len();
    let r = v.erase(&sar, &["cust-c".to_string()], &mut |_| {}).unwrap();
    assert_eq!((r.erased, r.records_deleted), (1, 0));
    let purged = r.purged.expect("purged at once");
    assert_eq!((purged.people, purged.records), (0, 0));
    for e in events(&v)[before..]
        .iter()
        .filter(|e| e.action.starts_with("erase_"))
    {
        let s = e.selector.clone().unwrap_or_default();
        assert!(s.split(';').any(|p| p == "records:0"), "{s}");
    }
    assert_eq!(rows_of(dir.path(), "cust-c"), 0, "the cover's row is gone");
}

/// Under contention a read of a person with a mail-cover record goes
/// outside the log's lock just as any other when its purpose may not see
/// that record (so its cost tells nothing of the cover), and keeps the
/// one-step path when it may (the order's key is looked at under the lock).
#[test]
fn only_reads_that_open_a_mail_cover_record_keep_the_one_step_path() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let v = gateway_vault(dir.path(), &c);
        v.add_principal("sorting", "delivery").unwrap();
        cover_with_a_record(&v);
    }
    let faults = postvault_store::testing::Faults::new();
    faults.read_unlogged_always();
    let v = Backend::Sqlite.open_faulty(dir.path(), opts(&c), &faults);
    // Rows handed over: once outside the lock, twice when read again.
    let handed = |who: &str, purpose: &str| {
        let before = faults.records();
        let p = v.principal(who).unwrap();
        let r = v.read(&p, "cust-a", purpose).unwrap();
        (r, faults.records() - before)
    };
    let (sorting, n) = handed("sorting", "delivery");
    assert!(!sorting.records.is_empty());
    assert_eq!(n, 10, "the person's ten rows, read once");
    let (cover, n) = handed("inspector", "mail_cover");
    assert_eq!(cover.records.len(), 1);
    assert_eq!(n, 20, "read outside the lock, then again with the leaf");
}

#[test]
fn a_refusal_under_a_delayed_hold_is_not_shown_to_the_person() {
    a_refusal_under_a_delayed_hold_is_not_shown_to_the_person_on(&Backend::Sqlite);
}

/// The gateway vault with `cust-a` under a hold whose instrument carries
/// a delay order (the person may not know of it before 2027-01-10).
fn vault_with_a_delayed_hold(b: &Backend, dir: &Path, c: &Arc<postvault::FixedClock>) -> Vault {
    let v = gateway_vault_on(b, dir, c);
    let off = officer(&v);
    let mut inst = court_order();
    inst["delay_notice_until"] = serde_json::json!("2027-01-10");
    let sub = submit(&v, "fbi", &inst);
    assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
    assert_eq!(v.hold_place(&off, &sub.id, None).unwrap().subjects.len(), 1);
    v
}

pub fn a_refusal_under_a_delayed_hold_is_not_shown_to_the_person_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_with_a_delayed_hold(b, dir.path(), &c);
    let off = officer(&v);
    let r = v.erase(&off, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!(r.held, vec!["cust-a".to_string()]);
    let report = v.subject_report(&off, "cust-a").unwrap();
    assert!(report.holds.is_empty(), "the delay order hides the hold");
    assert!(
        report
            .log
            .iter()
            .all(|l| l.event.as_ref().unwrap().action != "erase"
                && !l.event.as_ref().unwrap().action.starts_with("hold")),
        "no leaf the person can find tells of the hold"
    );
    // The officer sees it, with the date the person may know.
    let holds = v.holds(&off).unwrap();
    assert!(holds[0].withheld_until.is_some());
}

/// The person's own erasure (through the subject-access service) under a
/// hold whose delay order still runs is neither done nor refused with the
/// hold named: it waits for the privacy office as a rights request, which
/// the office carries out once the hold is released.
#[test]
fn the_persons_own_erasure_under_a_delayed_hold_waits_without_naming_it() {
    the_persons_own_erasure_under_a_delayed_hold_waits_without_naming_it_on(&Backend::Sqlite);
}

pub fn the_persons_own_erasure_under_a_delayed_hold_waits_without_naming_it_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_with_a_delayed_hold(b, dir.path(), &c);
    let off = officer(&v);
    v.add_principal("sar", "subject_access").unwrap();
    let sar = v.principal("sar").unwrap();
    let before = events(&v).len();
    let r = v.erase(&sar, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert!(r.held.is_empty() && !r.refused(), "{r:?}");
    assert_eq!((r.erased, r.records_deleted, r.keys_destroyed), (0, 0, 0));
    let id = r.pending_request.clone().expect("a pending request");
    assert!(id.starts_with("er-"), "{id}");
    let answer = serde_json::to_string(&r).unwrap();
    assert!(
        !answer.contains("hold") && !answer.contains("cust-a"),
        "{answer}"
    );
    // Its one leaf is the person's request, as the portal writes it: no
    // refusal, and not the service's act.
    let all = events(&v);
    assert_eq!(all.len(), before + 1, "{:?}", &all[before..]);
    let leaf = &all[r.first_leaf as usize];
    assert_eq!(
        (leaf.action.as_str(), leaf.decision.as_str()),
        ("erasure_request", "allow")
    );
    assert!(leaf.reasons.is_empty());
    v.subject_report(&sar, "cust-b").unwrap();
    let service = events(&v).pop().unwrap().principal;
    assert_eq!(service.role, leaf.principal.role);
    assert_ne!(
        service.id, leaf.principal.id,
        "the person's, not the service's"
    );
    // Asked again: the same request, still waiting (one more leaf).
    let again = v.erase(&sar, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!(again.pending_request.as_deref(), Some(id.as_str()));
    let mine = v.person_requests(&sar, "cust-a").unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].id.as_str(), mine[0].status.as_str()),
        (id.as_str(), "pending")
    );
    // The person's own leaves tell of their request, not of a refusal.
    let report = v.subject_report(&sar, "cust-a").unwrap();
    assert!(report.holds.is_empty());
    let actions: Vec<String> = report
        .log
        .iter()
        .map(|l| l.event.as_ref().unwrap().action.clone())
        .collect();
    assert!(
        actions
            .iter()
            .all(|a| a != "erase" && !a.starts_with("hold")),
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "erasure_request").count(),
        2
    );
    assert!(
        events(&v).iter().all(|e| e.action != "erase"),
        "no refusal at all"
    );
    // The office knows of the hold: granting now is refused and the request
    // waits, and a refusal naming the hold is not allowed while the delay
    // order runs.
    let e = v.grant_rights_request(&off, &id).unwrap_err();
    assert_eq!(e.code(), "held");
    assert!(e.to_string().contains("delay order"), "{e}");
    assert_eq!(
        v.refuse_rights_request(&off, &id, "legal_hold", "")
            .unwrap_err()
            .code(),
        "delay_order"
    );
    // A hold the person may know of, beside it, refuses their erasure by
    // name, their leaf theirs to find.
    let mut open = court_order();
    open["instrument_id"] = serde_json::json!("CO-pv-secret-2");
    let sub = submit(&v, "fbi", &open);
    assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
    let open_hold = v.hold_place(&off, &sub.id, None).unwrap();
    let r = v.erase(&sar, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!(
        (r.held.clone(), r.pending_request.clone()),
        (vec!["cust-a".to_string()], None)
    );
    let report = v.subject_report(&sar, "cust-a").unwrap();
    assert!(
        report
            .log
            .iter()
            .any(|l| l.index == r.first_leaf && l.event.as_ref().unwrap().action == "erase"),
        "the refusal is the person's to find"
    );
    // Released, the delayed hold alone keeps the request waiting again.
    v.hold_release(&off, &open_hold.id).unwrap();
    let r = v.erase(&sar, &["cust-a".to_string()], &mut |_| {}).unwrap();
    assert_eq!(r.pending_request.as_deref(), Some(id.as_str()));
    // Once the delayed hold is released, the grant erases.
    let delayed = v
        .holds(&off)
        .unwrap()
        .into_iter()
        .find(|h| h.status == "active")
        .unwrap();
    v.hold_release(&off, &delayed.id).unwrap();
    // Released, its delay order still runs: a refusal may not name it.
    assert_eq!(
        v.refuse_rights_request(&off, &id, "legal_hold", "")
            .unwrap_err()
            .code(),
        "delay_order"
    );
    let done = v.grant_rights_request(&off, &id).unwrap();
    assert_eq!(done.status, "granted", "{done:?}");
    assert!(!v.person_present("cust-a").unwrap());
}

/// How many mail images `cust-a`'s own report shows.
fn images_shown(v: &Vault, off: &postvault::Principal) -> usize {
    v.subject_report(off, "cust-a")
        .unwrap()
        .records
        .iter()
        .filter(|r| r.category == "mail_image")
        .count()
}

/// What a hold keeps past retention is shown to the person only while a
/// hold they may know of is in force: under a delay order their report
/// reads as if nothing held the records, while the hold's request still
/// gets them.
#[test]
fn records_a_delayed_hold_keeps_past_retention_are_not_shown_to_the_person() {
    records_a_delayed_hold_keeps_past_retention_are_not_shown_to_the_person_on(&Backend::Sqlite);
}

pub fn records_a_delayed_hold_keeps_past_retention_are_not_shown_to_the_person_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_with_a_delayed_hold(b, dir.path(), &c);
    let off = officer(&v);
    let images = |v: &Vault| images_shown(v, &off);
    assert_eq!(images(&v), 1);
    // Past the image's retention: kept by the hold, not shown to the person.
    c.advance(8 * DAY);
    v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 9, "kept by the hold");
    assert_eq!(images(&v), 0);
    let report = v.subject_report(&off, "cust-a").unwrap();
    // One format, fixed width: the strings order as the times.
    let now = postvault::format_ms(c.now_ms());
    assert!(
        report.records.iter().all(|r| r.expires_at > now),
        "nothing past its retention: {:?}",
        report.records
    );
    // A hold the person may know of, placed now, does not explain what
    // outlived its retention before it: still not shown.
    let mut open = court_order();
    open["instrument_id"] = serde_json::json!("CO-pv-secret-2");
    let sub = submit(&v, "fbi", &open);
    assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
    let open_hold = v.hold_place(&off, &sub.id, None).unwrap();
    assert_eq!(images(&v), 0);
    v.hold_release(&off, &open_hold.id).unwrap();
    assert_eq!(images(&v), 0);
}

/// A hold the person may know of placed before a record's retention ended
/// explains its keeping: shown while it is in force, and no longer once it
/// is released, a delayed hold keeping the record still.
#[test]
fn what_a_known_hold_kept_since_its_placement_is_shown_while_it_stands() {
    what_a_known_hold_kept_since_its_placement_is_shown_while_it_stands_on(&Backend::Sqlite);
}

pub fn what_a_known_hold_kept_since_its_placement_is_shown_while_it_stands_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_with_a_delayed_hold(b, dir.path(), &c);
    let off = officer(&v);
    let mut open = court_order();
    open["instrument_id"] = serde_json::json!("CO-pv-secret-2");
    let sub = submit(&v, "fbi", &open);
    assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
    let open_hold = v.hold_place(&off, &sub.id, None).unwrap();
    c.advance(8 * DAY);
    v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 9, "kept by the holds");
    let images = |v: &Vault| images_shown(v, &off);
    assert_eq!(images(&v), 1);
    v.hold_release(&off, &open_hold.id).unwrap();
    assert_eq!(rows_of_on(b, dir.path(), "cust-a"), 9);
    assert_eq!(images(&v), 0);
}

/// A hold renewed by placing it again keeps showing what the first
/// placement kept: the holds the person may know of cover the time since
/// without a gap.
#[test]
fn a_renewed_hold_keeps_showing_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault(dir.path(), &c);
    let off = officer(&v);
    let sub = submit(&v, "fbi", &court_order());
    assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
    let first = v.hold_place(&off, &sub.id, None).unwrap();
    c.advance(7 * DAY + DAY / 2);
    v.retention_run(&mut |_| {}).unwrap();
    // Renewed after the image's retention ended; the first placement
    // released.
    v.hold_place(&off, &sub.id, None).unwrap();
    c.advance(DAY / 4);
    v.hold_release(&off, &first.id).unwrap();
    v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(
        images_shown(&v, &off),
        1,
        "kept by the holds since before it expired"
    );
}

/// A hold with a delay order placed after an erasure has started, just
/// before its transaction (as another node could), refuses the erasure
/// with a random tag: the erasure learns of the delay in the transaction
/// that finds the hold, not from an earlier look.
#[test]
fn a_delayed_hold_placed_as_an_erasure_starts_is_not_shown_to_the_person() {
    a_delayed_hold_placed_as_an_erasure_starts_is_not_shown_to_the_person_on(&Backend::Sqlite);
}

pub fn a_delayed_hold_placed_as_an_erasure_starts_is_not_shown_to_the_person_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let sub = {
        let v = gateway_vault_on(b, dir.path(), &c);
        let mut inst = court_order();
        inst["delay_notice_until"] = serde_json::json!("2027-01-10");
        let sub = submit(&v, "fbi", &inst);
        assert!(!approve(&v, "officer", &sub.id).refused(), "{sub:?}");
        sub
    };
    let faults = postvault_store::testing::Faults::new();
    let v = b.open_faulty(dir.path(), opts(&c), &faults);
    let off = officer(&v);
    // The erasure's store call waits (up to a minute) until the hold is in.
    let (entered, erasing) = std::sync::mpsc::channel();
    let (placed, hold_in) = std::sync::mpsc::channel::<()>();
    faults.before("erase", move || {
        entered.send(()).unwrap();
        let _ = hold_in.recv_timeout(std::time::Duration::from_secs(60));
    });
    // On PostgreSQL a second node places the hold; SQLite has one process.
    let other = match b {
        Backend::Postgres { .. } => Some(b.open(dir.path(), opts(&c)).unwrap()),
        Backend::Sqlite => None,
    };
    let placer = other.as_ref().unwrap_or(&v);
    let r = std::thread::scope(|s| {
        let erase = s.spawn(|| v.erase(&off, &["cust-a".to_string()], &mut |_| {}));
        erasing.recv().unwrap();
        let hold = placer.hold_place(&off, &sub.id, None).unwrap();
        assert_eq!(hold.subjects.len(), 1);
        placed.send(()).unwrap();
        erase.join().unwrap().unwrap()
    });
    assert_eq!(r.held, vec!["cust-a".to_string()], "{r:?}");
    assert_eq!(events(&v)[r.first_leaf as usize].decision, "deny");
    let report = v.subject_report(&off, "cust-a").unwrap();
    assert!(report.holds.is_empty(), "the delay order hides the hold");
    assert!(
        report
            .log
            .iter()
            .all(|l| l.event.as_ref().unwrap().action != "erase"),
        "no leaf the person can find tells of the hold"
    );
}

/// Erases `never-collected`, then, once that erasure has entered the store
/// (`first_entered`, see `hold_first_erasure`), each of `rest` on a thread
/// of its own: they wait, and meet in the next group. The reports in that
/// order.
fn erase_behind_a_first_group(
    first_entered: &std::sync::mpsc::Receiver<()>,
    erase: &(dyn Fn(&str) -> postvault::EraseReport + Sync),
    rest: &[&'static str],
) -> Vec<postvault::EraseReport> {
    std::thread::scope(|s| {
        let first = s.spawn(|| erase("never-collected"));
        first_entered.recv().unwrap();
        let rest: Vec<_> = rest.iter().map(|id| s.spawn(move || erase(id))).collect();
        std::iter::once(first)
            .chain(rest)
            .map(|h| h.join().unwrap())
            .collect()
    })
}

/// One-person erasures that meet are erased as one group: a hold (here
/// with a delay order) refuses only its own person, and its refusal is not
/// the person's to find; each answer speaks of its own person alone, a
/// person never collected included.
#[test]
fn concurrent_one_person_erasures_each_get_their_own_answer() {
    concurrent_one_person_erasures_each_get_their_own_answer_on(&Backend::Sqlite);
}

pub fn concurrent_one_person_erasures_each_get_their_own_answer_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault_with_a_delayed_hold(b, dir.path(), &c));
    let faults = postvault_store::testing::Faults::new();
    let v = b.open_faulty(dir.path(), opts(&c), &faults);
    let off = officer(&v);
    // The first erasure holds its group open until the others wait: they
    // are erased as the second group.
    let first_entered = hold_first_erasure(&faults);
    let erase = |id: &str| v.erase(&off, &[id.to_string()], &mut |_| {}).unwrap();
    let reports =
        erase_behind_a_first_group(&first_entered, &erase, &["cust-a", "cust-b", "cust-p"]);
    let [never, a, b, p] = &reports[..] else {
        unreachable!()
    };
    assert_eq!(a.held, vec!["cust-a".to_string()], "{a:?}");
    assert_eq!(
        (a.erased, a.records_deleted, a.keys_destroyed, a.purged),
        (0, 0, 0, None)
    );
    for (r, records) in [(b, 9), (p, 10)] {
        assert!(r.held.is_empty(), "{r:?}");
        assert_eq!(
            (r.erased, r.records_deleted, r.keys_destroyed),
            (1, records, 2)
        );
        assert_eq!(
            r.purged,
            Some(postvault::PurgeReport { people: 1, records })
        );
    }
    assert_eq!(
        (never.erased, never.records_deleted, never.keys_destroyed),
        (1, 0, 0)
    );
    assert_eq!(never.purged, Some(postvault::PurgeReport::default()));
    // One leaf each, each answer naming its own: the held person's is the
    // refusal.
    let leaves = events(&v);
    let mut at: Vec<u64> = reports.iter().map(|r| r.first_leaf).collect();
    at.sort_unstable();
    at.dedup();
    assert_eq!(at.len(), 4, "four answers, four leaves");
    for r in &reports {
        let e = &leaves[r.first_leaf as usize];
        assert_eq!(e.action, "erase");
        assert_eq!(e.decision == "deny", !r.held.is_empty(), "{r:?}");
    }
    // Two groups: the first alone, the three others together (one intent
    // for the people of cust-b and cust-p; a group of one held person
    // would have none).
    let intents = leaves.iter().filter(|e| e.action == "erase_intent").count();
    assert_eq!(intents, 2, "the three waiting were erased as one group");
    // The delay order hides the refusal from the person, in a group too.
    let report = v.subject_report(&off, "cust-a").unwrap();
    assert!(
        report
            .log
            .iter()
            .all(|l| l.event.as_ref().unwrap().action != "erase"),
        "no leaf the person can find tells of the hold"
    );
    assert_eq!(
        v.read(&off, "cust-a", "subject_access")
            .unwrap()
            .records
            .len(),
        9,
        "the held person keeps their records"
    );
}

/// The service's one-person erasures that meet are erased as one group,
/// and a person whose holds are all delayed gets, in that group too, their
/// request kept and their own `erasure_request` leaf: no refusal, no name
/// of the hold; the others are erased as usual.
#[test]
fn the_services_grouped_erasures_keep_a_delayed_persons_request() {
    let b = Backend::Sqlite;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let v = vault_with_a_delayed_hold(&b, dir.path(), &c);
        v.add_principal("sar", "subject_access").unwrap();
    }
    let faults = postvault_store::testing::Faults::new();
    let v = b.open_faulty(dir.path(), opts(&c), &faults);
    let sar = v.principal("sar").unwrap();
    let first_entered = hold_first_erasure(&faults);
    let erase = |id: &str| v.erase(&sar, &[id.to_string()], &mut |_| {}).unwrap();
    let reports = erase_behind_a_first_group(&first_entered, &erase, &["cust-a", "cust-b"]);
    let [_, a, b] = &reports[..] else {
        unreachable!()
    };
    assert!(a.held.is_empty() && a.erased == 0, "{a:?}");
    let id = a.pending_request.clone().expect("kept as a request");
    assert_eq!((b.erased, b.pending_request.as_deref()), (1, None), "{b:?}");
    let leaves = events(&v);
    assert_eq!(leaves[a.first_leaf as usize].action, "erasure_request");
    assert_eq!(leaves[b.first_leaf as usize].action, "erase");
    assert!(
        leaves
            .iter()
            .all(|e| e.decision != "deny" || e.action != "erase"),
        "no refusal written"
    );
    // Waiting while the first group ran, the two were erased as the next:
    // their leaves are neighbours, in the order of their keyed refs.
    assert_eq!(a.first_leaf.abs_diff(b.first_leaf), 1);
    let mine = v.person_requests(&sar, "cust-a").unwrap();
    assert_eq!((mine.len(), mine[0].id.as_str()), (1, id.as_str()));
}

/// A person with more records than a finishing transaction purges (see
/// `PURGE_JOINED_MAX_RECORDS`) is purged all the same before the answer,
/// in a transaction of its own once the erasure's gates are released:
/// alone (a one-person request) and in an officer's short list. Failing
/// only that separate purge shows which ran: the few-record person's purge
/// joined the finishing transaction.
#[test]
fn people_with_many_records_are_purged_before_the_answer_too() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let v = vault(dir.path(), &c);
        for id in ["many-1", "many-2"] {
            let lines: Vec<String> = (0..120).map(|i| person(id, &format!("m{i}"))).collect();
            let r = collect(&v, "ingest", &lines.join("\n"));
            assert_eq!((r.accepted, r.rejected), (1_080, 0), "{:?}", r.errors);
        }
        for id in ["few-1", "few-2"] {
            assert_eq!(collect(&v, "ingest", &person(id, "f")).accepted, 9);
        }
    }
    let faults = postvault_store::testing::Faults::new();
    let broken = Arc::new(AtomicBool::new(true));
    faults.fail_while(&broken, &["purge_subjects"]);
    let v = Backend::Sqlite.open_faulty(dir.path(), opts(&c), &faults);
    let off = officer(&v);
    let erase = |ids: &[&str]| {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        v.erase(&off, &ids, &mut |_| {}).unwrap()
    };
    let few = erase(&["few-1"]);
    assert_eq!(
        (few.purged, few.purge_error),
        (
            Some(postvault::PurgeReport {
                people: 1,
                records: 9
            }),
            None
        ),
        "purged in the finishing transaction"
    );
    let many = erase(&["many-1"]);
    assert_eq!((many.erased, many.records_deleted), (1, 1_080));
    assert!(
        many.purged.is_none() && many.purge_error.is_some(),
        "{many:?}"
    );
    assert_eq!(
        rows_of(dir.path(), "many-1"),
        1_080,
        "dead, awaiting the sweep"
    );
    broken.store(false, Ordering::SeqCst);
    let alone = erase(&["many-2"]);
    assert_eq!(
        (alone.purged, alone.purge_error),
        (
            Some(postvault::PurgeReport {
                people: 1,
                records: 1_080
            }),
            None
        )
    );
    let list = erase(&["many-1", "few-2"]);
    assert_eq!(
        list.purged,
        Some(postvault::PurgeReport {
            people: 2,
            records: 1_089
        }),
        "many-1's dead rows count towards the bound and are purged apart"
    );
    for id in ["many-1", "many-2", "few-1", "few-2"] {
        assert_eq!(rows_of(dir.path(), id), 0, "{id}");
    }
    assert!(v.check().unwrap().ok);
}

#[test]
fn an_erased_person_collected_again_keeps_only_the_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let off = officer(&v);
    let r = collect(&v, "ingest", &person("cust-r", "pvOldData"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    // More people than an erasure purges itself (1,000 never collected: no
    // ref of theirs goes in the queue): the rows wait for a bulk purge.
    let mut ids: Vec<String> = (0..1_000).map(|i| format!("never-{i}")).collect();
    ids.push("cust-r".into());
    let erased = v.erase(&off, &ids, &mut |_| {}).unwrap();
    assert_eq!((erased.erased, erased.records_deleted), (1_001, 9));
    assert!(erased.purged.is_none());
    // Dead rows with their keys destroyed are lawful, and counted.
    let check = v.check().unwrap();
    assert!(check.ok, "{:?}", check.problems);
    assert_eq!(
        (
            check.erased_pending_purge.people,
            check.erased_pending_purge.records
        ),
        (1, 9)
    );
    assert_eq!(check.records, 0);
    assert_eq!(rows_of(dir.path(), "cust-r"), 9);

    // Collected again: new keys, and only the new data is theirs.
    let r = collect(&v, "ingest", &person("cust-r", "pvNewData"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    assert_eq!(rows_of(dir.path(), "cust-r"), 9, "the old rows went first");
    let mine = v.read(&off, "cust-r", "subject_access").unwrap();
    assert_eq!(mine.records.len(), 9);
    let shown = serde_json::to_string(&mine).unwrap();
    assert!(shown.contains("pvNewData") && !shown.contains("pvOldData"));
    // Nothing is left for the purge, and it deletes nothing of the new.
    let purged = v.purge_erased(&mut |_| {}).unwrap();
    assert_eq!((purged.people, purged.records), (0, 0));
    assert_eq!(rows_of(dir.path(), "cust-r"), 9);
    let check = v.check().unwrap();
    assert!(check.ok, "{:?}", check.problems);
    assert_eq!(check.erased_pending_purge.people, 0);

    // The retention sweep purges what a long erasure left.
    let r = collect(&v, "ingest", &person("cust-s", "pvSwept"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    ids.pop();
    ids.push("cust-s".into());
    let erased = v.erase(&off, &ids, &mut |_| {}).unwrap();
    assert!(erased.purged.is_none());
    assert_eq!(rows_of(dir.path(), "cust-s"), 9);
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert_eq!(
        (sweep.erased_purged.people, sweep.erased_purged.records),
        (1, 9)
    );
    assert_eq!(rows_of(dir.path(), "cust-s"), 0);
    assert_eq!(
        rows_of(dir.path(), "cust-r"),
        9,
        "the person collected again keeps theirs"
    );
}
