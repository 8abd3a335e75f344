//! The invariants of ARCHITECTURE.md, one test (or more) each.

use std::path::Path;
use std::sync::Arc;

use postvault::{Event, OpenOptions, Vault};
use postvault_store::testing::{Faults, Faulty};
use postvault_store::{KeyStore, OpenMode, RightsStore, SqliteKeyStore, SqliteStore};

use crate::*;

/// Invariant 1: no plaintext personal data in the store (database, WAL,
/// journal, key store), in a log leaf, or in an error message.
#[test]
fn invariant_1_no_plaintext_in_any_file_leaf_or_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let marker = "ZqXmarkerQ7";
    let subject = format!("subject-{marker}");
    let r = collect(&v, "ingest", &person(&subject, marker));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    assert_eq!(r.accepted, 9);
    // Rejected lines carrying the marker in wrong places.
    let bad = [
        line(
            &subject,
            "address",
            "delivery",
            serde_json::json!({
            "street": "x", "city": "y", "state": marker, "zip": "62701"}),
        ),
        line(
            &subject,
            "address",
            "delivery",
            serde_json::json!({marker: 1}),
        ),
        format!("{{\"subject\": \"{subject}\", \"{marker}\": 1}}"),
        format!("{{\"subject\": \"{marker}"),
    ]
    .join("\n");
    let rejected = collect(&v, "ingest", &bad);
    assert_eq!(rejected.rejected, 4);
    let text = serde_json::to_string(&rejected).unwrap();
    assert!(
        !text.contains(marker),
        "an error message leaks input: {text}"
    );
    // Reads, allowed and denied, so leaves of every kind exist.
    for (who, purpose) in [
        ("sorting", "delivery"),
        ("care", "account_service"),
        ("agency", "immigration_enforcement"),
    ] {
        let p = v.principal(who).unwrap();
        v.read(&p, &subject, purpose).unwrap();
    }
    let size = v.store().log_size().unwrap();
    for leaf in v.store().leaves(0, size).unwrap() {
        assert!(!contains(&leaf, marker.as_bytes()));
        assert!(!contains(&leaf, b"subject-"));
    }
    drop(v);
    let files = vault_files(dir.path());
    assert!(files.iter().any(|(n, _)| n.ends_with("data.db")));
    assert!(files.iter().any(|(n, _)| n.ends_with("keys.db")));
    for (name, bytes) in files {
        assert!(
            !contains(&bytes, marker.as_bytes()),
            "marker found in {name}"
        );
        assert!(
            !contains(&bytes, b"Springfield"),
            "plaintext city in {name}"
        );
        assert!(
            !contains(&bytes, b"4111111111111111"),
            "card number in {name}"
        );
    }
}

/// The calls that commit a batch, a read's leaf, a disclosure step, a
/// statistics query's spend, a run's end or a destruction: the ones a disk
/// gone bad makes fail.
const COMMITS: &[&str] = &[
    "write",
    "read_scoped",
    "submit_disclosure",
    "disclosure_step",
    "spend_budget",
    "rekey",
    "sweep_expired",
    "erase",
    "finish_erasure",
    "put_holds",
    "release_hold",
    "finish_run",
    "put_intent",
    "finish_intent",
];

/// The vault in `dir` over its own files, its data store's calls going
/// through `faults`.
fn vault_with_faults(dir: &Path, c: &Arc<postvault::FixedClock>, faults: &Arc<Faults>) -> Vault {
    let store = SqliteStore::open(&dir.join("data.db"), OpenMode::Existing).unwrap();
    let keys = SqliteKeyStore::open(&dir.join("keys.db"), OpenMode::Existing).unwrap();
    Vault::from_parts(
        dir,
        Box::new(Faulty::new(store, faults)),
        Box::new(keys),
        opts(c),
    )
    .unwrap()
}

/// Invariant 2: no read returns data before its leaf is durable; a failed
/// append means no data leaves the vault.
#[test]
fn invariant_2_failed_append_returns_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    faults.fail_after(2, COMMITS);
    let v = vault_with_faults(dir.path(), &c, &faults);
    // 1: collection succeeds.
    assert_eq!(collect(&v, "ingest", &person("s1", "m")).accepted, 9);
    let p = v.principal("sorting").unwrap();
    // 2: a read succeeds, with data.
    let ok = v.read(&p, "s1", "delivery").unwrap();
    assert!(!ok.records.is_empty());
    let size = v.store().log_size().unwrap();
    // 3: the append fails: an error, no response, no leaf.
    let err = v.read(&p, "s1", "delivery").unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(v.store().log_size().unwrap(), size);
    // A failed collection batch is not acknowledged, and the report says so.
    let r = v
        .collect(
            &v.principal("ingest").unwrap(),
            &mut person("s2", "m").as_bytes(),
            &postvault::CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.committed_through_line), (0, 0));
    assert_eq!(r.failure.unwrap().code, "store");
    assert_eq!(v.store().record_count().unwrap(), 9);
}

/// Invariant 2 for a read made outside the log's lock (as under
/// contention): its leaf's append fails, and nothing leaves, no leaf.
#[test]
fn invariant_2_a_read_outside_the_lock_whose_leaf_fails_returns_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    faults.read_unlogged_always();
    let v = vault_with_faults(dir.path(), &c, &faults);
    assert_eq!(collect(&v, "ingest", &person("s1", "m")).accepted, 9);
    let p = v.principal("sorting").unwrap();
    assert!(!v.read(&p, "s1", "delivery").unwrap().records.is_empty());
    let size = v.store().log_size().unwrap();
    faults.fail_after(0, &["read_scoped"]);
    let handed = faults.records();
    let err = v.read(&p, "s1", "delivery").unwrap_err();
    assert!(
        faults.records() > handed,
        "the rows were read outside the lock"
    );
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(v.store().log_size().unwrap(), size);
}

/// A store that fails midway through a long collection: the batches before
/// the failure are committed and acknowledged in order, nothing after it,
/// and collection returns (the reader is never left waiting on workers).
#[test]
fn invariant_2_a_failing_store_midway_stops_collection_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    faults.fail_after(3, COMMITS);
    let v = vault_with_faults(dir.path(), &c, &faults);
    // 400 lines in batches of 10: far more than the pipeline holds.
    let input: String = (0..400)
        .map(|i| {
            line(
                &format!("p{i}"),
                "address",
                "delivery",
                serde_json::json!({"street": format!("{i} Elm St"), "city": "Springfield", "state": "IL", "zip": "62701"}),
            ) + "\n"
        })
        .collect();
    let r = v
        .collect(
            &v.principal("ingest").unwrap(),
            &mut input.as_bytes(),
            &postvault::CollectOptions {
                batch_size: 10,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        (r.accepted, r.batches, r.committed_through_line),
        (30, 3, 30)
    );
    assert_eq!(r.failure.unwrap().code, "store");
    assert_eq!(v.store().record_count().unwrap(), 30);
}

/// Invariant 2 for disclosures: a fetch whose leaves cannot be appended
/// returns no package and changes nothing.
#[test]
fn invariant_2_failed_disclosure_append_returns_no_package() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    faults.fail_after(3, COMMITS);
    let v = vault_with_faults(dir.path(), &c, &faults);
    // 1: collection, 2: submission, 3: approval succeed.
    assert_eq!(collect(&v, "ingest", &person("s1", "pvfail")).accepted, 9);
    let inst = serde_json::json!({
        "kind": "warrant", "instrument_id": "W-9", "agency": "An Agency",
        "signer": {"name": "A", "title": "Special Agent", "level": "agent"},
        "authority": "Fed. R. Crim. P. 41", "ground": "criminal_law_enforcement", "case_id": "K-9",
        "subjects": [{"id": "s1"}], "portions": ["address"],
        "time_range": {"from": "2026-01-01", "to": "2026-12-31"}, "issued_at": "2026-11-01",
        "court": {"name": "Court", "docket": "1", "judge": "J", "order_date": "2026-11-01"}
    });
    let a = v
        .disclose_submit(&v.principal("agency").unwrap(), &inst.to_string())
        .unwrap();
    assert_eq!(a.status, "pending_approval", "{:?}", a.reasons);
    let ap = v
        .disclose_approve(
            &v.principal("officer").unwrap(),
            &a.id,
            &postvault::ApproveOptions::default(),
        )
        .unwrap();
    assert_eq!(ap.status, "approved");
    // 4: the fetch's append fails: an error, no package, no leaf, no change.
    let size = v.store().log_size().unwrap();
    let err = v
        .disclose_fetch(&v.principal("agency").unwrap(), &a.id)
        .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(!err.to_string().contains("pvfail"));
    assert_eq!(v.store().log_size().unwrap(), size);
    let row = v.store().disclosure(&a.id).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.fetches), ("approved", 0));
    let subject = v.store().disclosure(&a.id).unwrap().unwrap().subjects[0];
    assert!(v.store().accounting(&subject).unwrap().is_empty());
}

/// Invariant 3: every decision leaves exactly one leaf: one per read
/// (allowed or denied), one per collection batch.
#[test]
fn invariant_3_one_leaf_per_decision() {
    invariant_3_one_leaf_per_decision_on(&Backend::Sqlite);
}

pub fn invariant_3_one_leaf_per_decision_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let r = collect(&v, "ingest", &person("s1", "m"));
    assert_eq!((r.batches, r.leaves.len()), (1, 1));
    let before = v.store().log_size().unwrap();
    let reads = [
        ("sorting", "delivery", "s1"),
        ("agency", "immigration_enforcement", "s1"),
        ("promo", "marketing", "nobody"),
        ("care", "account_service", "s1"),
    ];
    for (i, (who, purpose, s)) in reads.iter().enumerate() {
        let resp = v.read(&v.principal(who).unwrap(), s, purpose).unwrap();
        assert_eq!(resp.log_index, before + i as u64);
        let leaf = v
            .store()
            .leaves(resp.log_index, resp.log_index + 1)
            .unwrap();
        let e = Event::from_leaf(&leaf[0]).unwrap();
        assert_eq!(e.action, "read");
        assert_eq!(e.purpose.as_deref(), Some(*purpose));
        assert_eq!(e.count, resp.records.len() as u64);
        assert_eq!(e.decision, resp.decision);
    }
    assert_eq!(v.store().log_size().unwrap(), before + reads.len() as u64);
    // Rejected lines are accounted in their batch's single leaf.
    let r = collect(&v, "ingest", "{\"bad\": 1}\n{}\n");
    assert_eq!((r.accepted, r.rejected, r.leaves.len()), (0, 2, 1));
    let e = Event::from_leaf(&v.store().leaves(r.leaves[0], r.leaves[0] + 1).unwrap()[0]).unwrap();
    assert_eq!((e.decision.as_str(), e.rejected), ("deny", Some(2)));
}

fn comparable(r: &postvault::ReadResponse) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("subject");
    m.remove("log_index");
    v
}

/// Invariant 4: a subject that does not exist and a subject the caller may
/// see nothing of get the same answer, and leaves of the same shape.
#[test]
fn invariant_4_unknown_and_invisible_subjects_answer_alike() {
    invariant_4_unknown_and_invisible_subjects_answer_alike_on(&Backend::Sqlite);
}

pub fn invariant_4_unknown_and_invisible_subjects_answer_alike_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("real", "m"));
    // Someone with account data only: delivery may see none of it.
    collect(
        &v,
        "ingest",
        &line(
            "acct-only",
            "account_identity",
            "account_service",
            serde_json::json!({"name": "B"}),
        ),
    );
    let cases = [
        ("agency", "immigration_enforcement", "real"),
        ("promo", "marketing", "real"),
        ("sorting", "delivery", "acct-only"),
        ("officer", "bulk_analytics", "real"),
    ];
    for (who, purpose, known) in cases {
        let p = v.principal(who).unwrap();
        let a = v.read(&p, known, purpose).unwrap();
        let b = v.read(&p, "does-not-exist", purpose).unwrap();
        assert!(a.records.is_empty());
        assert_eq!(comparable(&a), comparable(&b), "{who}/{purpose}");
        let la = v
            .store()
            .leaves(a.log_index, a.log_index + 1)
            .unwrap()
            .remove(0);
        let lb = v
            .store()
            .leaves(b.log_index, b.log_index + 1)
            .unwrap()
            .remove(0);
        let (mut ea, mut eb) = (
            Event::from_leaf(&la).unwrap(),
            Event::from_leaf(&lb).unwrap(),
        );
        assert_eq!(
            ea.subject_tag.as_ref().map(String::len),
            eb.subject_tag.as_ref().map(String::len)
        );
        ea.subject_tag = None;
        eb.subject_tag = None;
        ea.time = 0;
        eb.time = 0;
        assert_eq!(ea, eb, "{who}/{purpose}");
    }
}

/// Invariant 7: outside parties name people by identifier only, matched
/// exactly through a keyed blind index; nothing matches by prefix or pattern.
#[test]
fn invariant_7_exact_identifier_lookup_only() {
    invariant_7_exact_identifier_lookup_only_on(&Backend::Sqlite);
}

pub fn invariant_7_exact_identifier_lookup_only_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "Marker"));
    collect(&v, "ingest", &person("s2", "Other"));
    let s1 = v
        .lookup_subjects("account_identity", &["email"], &["  marker@EXAMPLE.com "])
        .unwrap();
    assert_eq!(s1.len(), 1);
    for probe in [
        "marker@",
        "marker",
        "*@example.com",
        "%",
        "marker@example.co",
    ] {
        assert!(
            v.lookup_subjects("account_identity", &["email"], &[probe])
                .unwrap()
                .is_empty(),
            "{probe}"
        );
    }
    assert!(
        v.lookup_subjects("account_identity", &["name"], &["Ada Marker"])
            .is_err()
    );
}

/// A reopened vault returns every acknowledged record.
#[test]
fn reopened_vault_returns_every_acknowledged_record() {
    reopened_vault_returns_every_acknowledged_record_on(&Backend::Sqlite);
}

pub fn reopened_vault_returns_every_acknowledged_record_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let mut expected = 0;
    for i in 0..30 {
        expected += collect(&v, "ingest", &person(&format!("s{i}"), &format!("m{i}"))).accepted;
    }
    drop(v);
    let v = b
        .open(
            dir.path(),
            OpenOptions {
                pack: None,
                clock: c.clone(),
                ..OpenOptions::default()
            },
        )
        .unwrap();
    assert_eq!(v.store().record_count().unwrap(), expected);
    let officer = v.principal("officer").unwrap();
    let mut seen = 0;
    for i in 0..30 {
        let r = v
            .read(&officer, &format!("s{i}"), "subject_access")
            .unwrap();
        assert!(r.records.iter().any(|x| {
            x.fields
                .to_map()
                .unwrap()
                .get("name")
                .and_then(|n| n.as_str())
                == Some(format!("Ada m{i}").as_str())
        }));
        seen += r.records.len() as u64;
    }
    assert_eq!(seen, expected);
    // Collecting again for a known subject after reopening reuses its keys.
    collect(&v, "ingest", &person("s0", "again"));
    let r = v.read(&officer, "s0", "subject_access").unwrap();
    assert_eq!(r.records.len(), 18);
}

/// Invariant 6: an erasure interrupted after its first transaction (rows
/// and leaf committed, keys not yet destroyed) is finished when the vault
/// opens; one interrupted after the keys went is finished too.
#[test]
fn invariant_6_an_interrupted_erasure_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(
        &v,
        "ingest",
        &[
            person("cust-i", "pvInterrupted"),
            person("cust-j", "pvFinish"),
        ]
        .join("\n"),
    );
    drop(v);
    let keys = SqliteKeyStore::open(&dir.path().join("keys.db"), OpenMode::Existing).unwrap();
    let master =
        postvault_crypto::MasterKey::from_bytes(&keys.secret("master").unwrap().unwrap()).unwrap();
    let i_ref = master.subject_ref("cust-i");
    assert!(keys.subject_keys(&i_ref).unwrap().is_some());

    // Step 1 only, as if the process died right after it.
    let store = SqliteStore::open(&dir.path().join("data.db"), OpenMode::Existing).unwrap();
    let out = store
        .erase(
            &[i_ref],
            T0,
            &mut |_, _, _| b"{}".to_vec().into(),
            &mut |_, _| None,
        )
        .unwrap();
    assert_eq!(out.erased, vec![i_ref]);
    assert_eq!(store.pending_erasures().unwrap(), vec![i_ref]);
    drop(store);
    assert!(
        keys.subject_keys(&i_ref).unwrap().is_some(),
        "keys still there"
    );

    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert!(
        keys.subject_keys(&i_ref).unwrap().is_none(),
        "destroyed on open"
    );
    assert!(v.store().pending_erasures().unwrap().is_empty());
    assert!(v.subject_tag_key("cust-i").unwrap().is_none());

    // Through the vault, with the last step failing: the keys are gone, the
    // pending mark stays, and the next open clears it.
    let j_ref = master.subject_ref("cust-j");
    drop(v);
    let faults = Faults::new();
    faults.fail_after(1, COMMITS);
    let v = vault_with_faults(dir.path(), &c, &faults);
    let officer = v.principal("officer").unwrap();
    assert!(
        v.erase(&officer, &["cust-j".to_string()], &mut |_| {})
            .is_err()
    );
    drop(v);
    assert!(keys.subject_keys(&j_ref).unwrap().is_none());
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert!(v.store().pending_erasures().unwrap().is_empty());
    let sorting = v.principal("sorting").unwrap();
    assert!(
        v.read(&sorting, "cust-j", "delivery")
            .unwrap()
            .records
            .is_empty()
    );
}

/// Invariant 10 under a retrying backend: a store may run erase's leaf
/// callback again when it retries its transaction; each person's erasure
/// leaf still carries their tag, so they can find it.
#[test]
fn invariant_10_an_erasure_retried_by_the_store_still_tags_each_person() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(
        &v,
        "ingest",
        &[person("cust-r1", "m1"), person("cust-r2", "m2")].join("\n"),
    );
    let tags = [
        v.subject_tag_key("cust-r1").unwrap().unwrap(),
        v.subject_tag_key("cust-r2").unwrap().unwrap(),
    ];
    drop(v);
    let faults = Faults::new();
    faults.retry(&["erase"]);
    let v = vault_with_faults(dir.path(), &c, &faults);
    let officer = v.principal("officer").unwrap();
    let r = v
        .erase(&officer, &["cust-r1".into(), "cust-r2".into()], &mut |_| {})
        .unwrap();
    assert_eq!(r.erased, 2);
    // Each finds one of the two erasure leaves as their last, and not the
    // same one.
    let mut last: Vec<u64> = tags
        .iter()
        .map(|t| v.find_leaves(t).unwrap().1.last().unwrap().index)
        .collect();
    last.sort();
    assert_eq!(last, vec![r.first_leaf, r.first_leaf + 1]);
}

/// The decision is made before any per-person data is touched: a read that
/// may see nothing (whatever the person's consent) gets no record of the
/// person from the store, and one that only consent could open gets none
/// unless the consent is recorded; each still appends its one leaf first.
#[test]
fn invariant_12_the_decision_is_made_before_any_per_person_data_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    // A person with 600 records.
    let lines: Vec<String> = (0..600)
        .map(|i| {
            line(
                "busy",
                "scan_event",
                "delivery",
                serde_json::json!({
                "piece": "letter", "facility_zip": "60601", "op_code": "918",
                "event": "processed", "scanned_at": format!("2026-11-01T03:{:02}:00Z", i % 60)}),
            )
        })
        .chain(std::iter::once(line(
            "busy",
            "account_identity",
            "account_service",
            serde_json::json!({"name": "B"}),
        )))
        .collect();
    assert_eq!(collect(&v, "ingest", &lines.join("\n")).accepted, 601);
    drop(v);
    let faults = Faults::new();
    let v = vault_with_faults(dir.path(), &c, &faults);
    let officer = v.principal("officer").unwrap();
    let denied = [
        ("sorting", "marketing"),
        ("promo", "marketing"),
        ("agency", "immigration_enforcement"),
        ("soc", "delivery"),
        ("officer", "bulk_analytics"),
    ];
    for (who, purpose) in denied {
        let size = v.store().log_size().unwrap();
        let r = v.read(&v.principal(who).unwrap(), "busy", purpose).unwrap();
        assert!(r.denied(), "{who}/{purpose}");
        assert_eq!(v.store().log_size().unwrap(), size + 1);
        assert_eq!(faults.records(), 0, "{who}/{purpose} read records");
    }
    // Recorded consent opens marketing: only then are records read.
    v.set_consent(&officer, "busy", "marketing", true).unwrap();
    assert_eq!(faults.records(), 0);
    let r = v
        .read(&v.principal("promo").unwrap(), "busy", "marketing")
        .unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(faults.records(), 601);
    // A role still denied for the purpose reads nothing, consent or not.
    let r = v
        .read(&v.principal("sorting").unwrap(), "busy", "marketing")
        .unwrap();
    assert!(r.denied());
    assert_eq!(faults.records(), 601);
}

/// Invariant 6, the purge: a purge that fails neither undoes nor hides an
/// erasure. The report says so, the rows stay dead, the sweep says so too,
/// and the next sweep that can purges them.
#[test]
fn invariant_6_a_failed_purge_leaves_the_erasure_standing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    let broken = Arc::new(AtomicBool::new(true));
    faults.fail_while(&broken, &["purge_subjects", "purge_erased", "finish_purge"]);
    let v = vault_with_faults(dir.path(), &c, &faults);
    assert_eq!(collect(&v, "ingest", &person("s1", "m")).accepted, 9);
    let off = v.principal("officer").unwrap();
    let r = v.erase(&off, &["s1".to_string()], &mut |_| {}).unwrap();
    assert_eq!((r.erased, r.keys_destroyed), (1, 2));
    assert!(r.purged.is_none());
    assert!(r.purge_error.is_some());
    assert!(
        v.read(&off, "s1", "subject_access")
            .unwrap()
            .records
            .is_empty()
    );
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert!(sweep.purge_error.is_some());
    assert_eq!(v.purge_pending().unwrap().people, 1);
    broken.store(false, Ordering::SeqCst);
    let sweep = v.retention_run(&mut |_| {}).unwrap();
    assert!(sweep.purge_error.is_none());
    assert_eq!(
        (sweep.erased_purged.people, sweep.erased_purged.records),
        (1, 9)
    );
}

/// Invariant 6, group commit: concurrent one-person erasures by one
/// principal are erased together (one transaction for their rows and
/// leaves, one key destruction, one intent, one purge), and each caller is
/// answered with its own person's part alone: its leaf, its records, its
/// keys, its purge. Every person is unreadable afterwards.
#[test]
fn invariant_6_concurrent_erasures_share_a_group_and_each_answer_is_its_own() {
    const N: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    let v = vault_with_faults(dir.path(), &c, &faults);
    // Person i has 9 + i records: each answer's count is its person's.
    let mut lines = Vec::new();
    for i in 0..N {
        lines.push(person(&format!("g{i}"), &format!("m{i}")));
        for k in 0..i {
            lines.push(line(
                &format!("g{i}"),
                "scan_event",
                "delivery",
                serde_json::json!({
                    "piece": "letter", "facility_zip": "60601", "op_code": "918",
                    "event": "processed", "scanned_at": format!("2026-11-01T04:{k:02}:00Z")}),
            ));
        }
    }
    assert_eq!(
        collect(&v, "ingest", &lines.join("\n")).accepted,
        (9 * N + N * (N - 1) / 2) as u64
    );
    let keys: Vec<String> = (0..N)
        .map(|i| v.subject_tag_key(&format!("g{i}")).unwrap().unwrap())
        .collect();
    // The first erasure holds its group open until the others wait.
    let first_entered = hold_first_erasure(&faults);
    let off = v.principal("officer").unwrap();
    let erase = |i: usize| v.erase(&off, &[format!("g{i}")], &mut |_| {}).unwrap();
    let reports: Vec<(usize, postvault::EraseReport)> = std::thread::scope(|s| {
        let first = s.spawn(|| (0, erase(0)));
        first_entered.recv().unwrap();
        let rest: Vec<_> = (1..N)
            .map(|i| {
                let erase = &erase;
                s.spawn(move || (i, erase(i)))
            })
            .collect();
        std::iter::once(first)
            .chain(rest)
            .map(|h| h.join().unwrap())
            .collect()
    });
    for (i, r) in &reports {
        let records = 9 + *i as u64;
        assert_eq!(
            (r.erased, r.keys_destroyed, r.records_deleted),
            (1, 2, records),
            "g{i}: {r:?}"
        );
        assert!(r.held.is_empty() && r.purge_error.is_none(), "g{i}: {r:?}");
        assert_eq!(
            r.purged,
            Some(postvault::PurgeReport { people: 1, records }),
            "g{i}"
        );
        assert_eq!(
            leaves_found(&v, &keys[*i]).last(),
            Some(&r.first_leaf),
            "g{i}'s answer names its own erasure leaf"
        );
        assert!(
            v.read(&off, &format!("g{i}"), "subject_access")
                .unwrap()
                .records
                .is_empty()
        );
    }
    let n = v.log_catch_up().unwrap();
    let groups = v
        .log_entries(0, n)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.as_ref().is_some_and(|e| e.action == "erase_intent"))
        .count();
    assert!(
        (1..N).contains(&groups),
        "{groups} erasure transactions for {N} one-person erasures"
    );
    assert_eq!(v.purge_pending().unwrap().people, 0);
    assert_eq!(v.store().record_count().unwrap(), 0);
}

/// Invariant 6, group commit: a group of erasures that fails fails every
/// request in it, each with the same code (the request that ran the group
/// with the error itself, the others with its code and message), and
/// erases no one.
#[test]
fn invariant_6_a_failed_erasure_group_fails_every_request_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    drop(vault(dir.path(), &c));
    let faults = Faults::new();
    let v = vault_with_faults(dir.path(), &c, &faults);
    let ids: Vec<String> = (0..4).map(|i| format!("f{i}")).collect();
    let lines: Vec<String> = ids.iter().map(|id| person(id, "m")).collect();
    assert_eq!(collect(&v, "ingest", &lines.join("\n")).accepted, 36);
    // The first erasure holds its group open until the others wait; their
    // group's transaction then fails.
    let first_entered = hold_first_erasure(&faults);
    faults.fail_after(1, &["erase"]);
    let off = v.principal("officer").unwrap();
    let erase = |id: &String| v.erase(&off, std::slice::from_ref(id), &mut |_| {});
    let (first, rest) = std::thread::scope(|s| {
        let first = s.spawn(|| erase(&ids[0]));
        first_entered.recv().unwrap();
        let rest: Vec<_> = ids[1..]
            .iter()
            .map(|id| {
                let erase = &erase;
                s.spawn(move || erase(id))
            })
            .collect();
        (
            first.join().unwrap(),
            rest.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    assert_eq!(first.unwrap().erased, 1);
    let errors: Vec<postvault::VaultError> = rest.into_iter().map(|r| r.unwrap_err()).collect();
    for e in &errors {
        assert_eq!(e.code(), "store", "{e}");
        assert!(e.to_string().contains("injected failure"), "{e}");
    }
    let joined = errors
        .iter()
        .filter(|e| matches!(e, postvault::VaultError::Joined { .. }))
        .count();
    assert_eq!(joined, 2, "one ran the group, two were in it: {errors:?}");
    for id in &ids[1..] {
        assert_eq!(
            v.read(&off, id, "subject_access").unwrap().records.len(),
            9,
            "{id} was not erased"
        );
    }
    assert!(v.store().pending_erasures().unwrap().is_empty());
}
