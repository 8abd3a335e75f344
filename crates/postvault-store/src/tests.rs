#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tmp();
    let n = AtomicUsize::new(0);
    conformance::run_all(&|| {
        let p = dir
            .path()
            .join(format!("d{}.db", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(SqliteStore::open(&p, OpenMode::Create).unwrap())
    });
    conformance::run_all_keys(&|| {
        let p = dir
            .path()
            .join(format!("k{}.db", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(SqliteKeyStore::open(&p, OpenMode::Create).unwrap())
    });
}

#[test]
fn writes_survive_reopen() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    {
        let s = SqliteStore::open(&p, OpenMode::Create).unwrap();
        conformance::write_then_read_accounts_each(&s);
    }
    let s = SqliteStore::open(&p, OpenMode::Existing).unwrap();
    assert_eq!(s.record_count().unwrap(), 3);
    assert_eq!(s.log_size().unwrap(), 2);
}

#[test]
fn refuses_missing_foreign_and_newer_files() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    let e = SqliteStore::open(&p, OpenMode::Existing).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore(..)), "{e}");

    std::fs::write(
        &p,
        b"this is not sqlite at all, just some text that is long enough",
    )
    .unwrap();
    let e = SqliteStore::open(&p, OpenMode::Existing).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore(..)), "{e}");
    std::fs::remove_file(&p).unwrap();

    // A key store is not a data store.
    SqliteKeyStore::open(&p, OpenMode::Create).unwrap();
    let e = SqliteStore::open(&p, OpenMode::Existing).unwrap_err();
    assert!(e.to_string().contains("not a postvault data store"), "{e}");

    let q = dir.path().join("newer.db");
    drop(SqliteStore::open(&q, OpenMode::Create).unwrap());
    {
        let c = rusqlite::Connection::open(&q).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let e = SqliteStore::open(&q, OpenMode::Existing).unwrap_err();
    assert!(
        matches!(e, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn key_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp();
    let p = dir.path().join("keys.db");
    let k = SqliteKeyStore::open(&p, OpenMode::Create).unwrap();
    k.put_secret("master", &[1; 32]).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Concurrent reads commit in groups: every read gets its own leaf, each
/// durable (there after a reopen), interleaved writes included, and a
/// failing leaf callback fails its read without losing the others.
#[test]
fn concurrent_reads_commit_in_groups_and_each_leaf_is_durable() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    let s = SqliteStore::open(&p, OpenMode::Create).unwrap();
    let readers = 8;
    let each = 150;
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..readers {
            let s = &s;
            let seen = &seen;
            sc.spawn(move || {
                for i in 0..each {
                    let (_, idx) = s
                        .read_accounted(&[t as u8; 16], &mut |_, idx| {
                            format!("read {t} {i} at {idx}").into_bytes().into()
                        })
                        .unwrap();
                    seen.lock().unwrap().push(idx);
                    if i % 50 == 0 {
                        s.append_leaves(1, &mut |idx, _| {
                            format!("write at {idx}").into_bytes().into()
                        })
                        .unwrap();
                    }
                }
            });
        }
        // A read whose leaf callback panics fails alone.
        let s = &s;
        sc.spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s.read_accounted(&[99; 16], &mut |_, _| panic!("injected"))
            }));
            assert!(r.is_err());
        });
    });
    let mut seen = seen.into_inner().unwrap();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), readers * each, "one leaf each, none shared");
    let writes = readers * each.div_ceil(50);
    drop(s);
    let s = SqliteStore::open(&p, OpenMode::Existing).unwrap();
    let size = s.log_size().unwrap();
    let leaves = s.leaves(0, size).unwrap();
    for idx in &seen {
        let body = String::from_utf8(leaves[*idx as usize].clone()).unwrap();
        assert!(
            body.starts_with("read ") && body.ends_with(&format!("at {idx}")),
            "{body}"
        );
    }
    // Exactly the reads and the writes: the failed read left nothing.
    assert_eq!(size as usize, seen.len() + writes);
}

/// A bulk batch (more rows than a group takes) has the store's connection
/// to itself. While it does, readers are told the group is busy, and a read
/// that arrives waits for it: its leaf comes after the batch's. And while
/// bulk batches come back to back, as a bulk load writes them, reads get
/// their turn between them: the connection comes back after each batch and
/// goes to the readers at the door first (before, the writer took the
/// store's lock again at once, and a read could wait many batches).
#[test]
fn reads_get_their_turn_between_back_to_back_bulk_batches() {
    use std::sync::atomic::AtomicBool;
    let dir = tmp();
    let s = SqliteStore::open(&dir.path().join("data.db"), OpenMode::Create).unwrap();
    let bulk = |n: u32| WriteBatch {
        records: (0..100u32)
            .map(|i| {
                let mut r = conformance::record(1, 0, "address");
                r.id[..4].copy_from_slice(&n.to_be_bytes());
                r.id[4..8].copy_from_slice(&i.to_be_bytes());
                r
            })
            .collect(),
        leaves: 1,
        ..WriteBatch::default()
    };
    // One batch held open in its leaf callback, a read arriving meanwhile.
    let (inside_tx, inside) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|sc| {
        let (s, bulk) = (&s, &bulk);
        let w = sc.spawn(move || {
            s.write(&bulk(0), &mut |idx, _| {
                inside_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                format!("bulk at {idx}").into_bytes().into()
            })
            .unwrap()
        });
        inside.recv().unwrap();
        assert!(s.unlogged_reads_pay(), "a lent connection is a busy group");
        let r = sc.spawn(move || {
            s.read_accounted(&[2; 16], &mut |_, idx| {
                format!("read at {idx}").into_bytes().into()
            })
            .unwrap()
            .1
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        go.send(()).unwrap();
        assert_eq!(w.join().unwrap(), 0);
        assert_eq!(r.join().unwrap(), 1, "the read's leaf after the batch's");
    });
    // Batches back to back; each read counts the batches it waited through.
    let written = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut waited = Vec::new();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            // Made before, so each batch follows the last at once.
            let batches: Vec<WriteBatch> = (1..=2_000).map(bulk).collect();
            for b in &batches {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                s.write(b, &mut |idx, _| {
                    // A batch long enough for reads to arrive during it.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    format!("bulk at {idx}").into_bytes().into()
                })
                .unwrap();
                written.fetch_add(1, Ordering::SeqCst);
            }
        });
        // The writer under way (a writer that failed at once fails the
        // test rather than leaving it waiting).
        let started = std::time::Instant::now();
        while written.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the bulk writer wrote nothing"
            );
            std::thread::yield_now();
        }
        for _ in 0..30 {
            let before = written.load(Ordering::SeqCst);
            s.read_accounted(&[2; 16], &mut |_, idx| {
                format!("read at {idx}").into_bytes().into()
            })
            .unwrap();
            waited.push(written.load(Ordering::SeqCst) - before);
        }
        stop.store(true, Ordering::SeqCst);
    });
    // Before, a read could wait through 25-39 of them; a bound well above
    // the one or two a read waits now, so a loaded machine's late wake-up
    // does not fail it.
    let most = waited.iter().copied().max().unwrap_or(0);
    assert!(
        most <= 12,
        "a read waited through {most} bulk batches: {waited:?}"
    );
    assert!(written.into_inner() > 0);
    // A store call for the group made inside a bulk batch (which holds the
    // connection) would wait for ever: it panics instead, and the store
    // goes on (the door's count restored, the connection given back).
    s.write(&bulk(9_999), &mut |idx, _| {
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.read_accounted(&[3; 16], &mut |_, idx| {
                format!("read at {idx}").into_bytes().into()
            })
        }));
        assert!(again.is_err(), "a read inside a bulk batch returned");
        format!("bulk at {idx}").into_bytes().into()
    })
    .unwrap();
    assert!(!s.unlogged_reads_pay(), "no reader left at the door");
    s.read_accounted(&[3; 16], &mut |_, idx| {
        format!("read at {idx}").into_bytes().into()
    })
    .unwrap();
}

/// Written batches join the group commit with reads: concurrent writers
/// and readers each get their own leaf, each returns once durable (every
/// row and leaf is there after a reopen), and a batch that fails (a stale
/// supersession, after its record was inserted) is undone alone: neither
/// its record nor a leaf of it is left, and the group's others commit.
#[test]
fn concurrent_writes_join_the_group_commit_and_a_failed_one_leaves_nothing() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    let s = SqliteStore::open(&p, OpenMode::Create).unwrap();
    let writers = 6u8;
    let each = 60u8;
    let failed = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for t in 0..writers {
            let (s, failed) = (&s, &failed);
            sc.spawn(move || {
                for i in 0..each {
                    let mut r = conformance::record(t + 1, i, "address");
                    r.id = [t, i, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
                    let mut batch = WriteBatch {
                        records: vec![r],
                        leaves: 1,
                        ..WriteBatch::default()
                    };
                    // Every tenth batch supersedes a record that is not
                    // there: it fails after inserting its own.
                    if i % 10 == 9 {
                        batch.supersede = vec![([0xEE; 16], [t + 1; 16], batch.records[0].id)];
                    }
                    let out = s.write(&batch, &mut |idx, _| {
                        format!("write {t} {i} at {idx}").into_bytes().into()
                    });
                    match out {
                        Ok(_) => {}
                        Err(StoreError::Stale) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("{e}"),
                    }
                    if i % 3 == 0 {
                        s.read_accounted(&[t + 1; 16], &mut |_, idx| {
                            format!("read {t} {i} at {idx}").into_bytes().into()
                        })
                        .unwrap();
                    }
                }
            });
        }
    });
    let failed = failed.into_inner();
    assert_eq!(failed, usize::from(writers) * usize::from(each / 10));
    let written = usize::from(writers) * usize::from(each) - failed;
    let reads = usize::from(writers) * usize::from(each).div_ceil(3);
    drop(s);
    let s = SqliteStore::open(&p, OpenMode::Existing).unwrap();
    assert_eq!(s.record_count().unwrap() as usize, written);
    let size = s.log_size().unwrap();
    assert_eq!(
        size as usize,
        written + reads,
        "one leaf each, none of a failed batch"
    );
    for (idx, body) in s.leaves(0, size).unwrap().into_iter().enumerate() {
        let body = String::from_utf8(body).unwrap();
        assert!(body.ends_with(&format!("at {idx}")), "{body}");
        if let Some(rest) = body.strip_prefix("write ") {
            let i: u8 = rest.split(' ').nth(1).unwrap().parse().unwrap();
            assert_ne!(i % 10, 9, "a failed batch left its leaf: {body}");
        }
    }
}

/// Every store opens with WAL, `synchronous=FULL` and `secure_delete`, read
/// back from SQLite; a connection that runs with less is refused. A store
/// opened with `synchronous=OFF` (or without WAL) fails this test, and the
/// open itself refuses.
/// Small puts of new subjects' keys from many threads commit in groups:
/// each put learns exactly which of its subjects already had keys (of a
/// subject every thread puts at once, one put stores its keys and every
/// other is told they existed), and every key put is there after reopening.
#[test]
fn concurrent_key_puts_share_commits_and_each_learns_which_keys_existed() {
    let dir = tmp();
    let p = dir.path().join("keys.db");
    let threads = 8u8;
    let each = 40u8;
    let keys = |subject: [u8; 16], t: u8| SubjectKeys {
        subject,
        data: vec![t, 1],
        tag: vec![t, 2],
    };
    let stored_by = std::sync::Mutex::new(std::collections::HashMap::<u8, Vec<u8>>::new());
    {
        let k = SqliteKeyStore::open(&p, OpenMode::Create).unwrap();
        std::thread::scope(|sc| {
            for t in 0..threads {
                let (k, stored_by) = (&k, &stored_by);
                sc.spawn(move || {
                    for i in 0..each {
                        let own = keys([t + 1, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7], t);
                        let shared = keys([0xAA, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7], t);
                        let existing = k.put_subject_keys(&[own.clone(), shared.clone()]).unwrap();
                        assert!(!existing.contains(&own.subject), "{t} {i}");
                        assert!(existing.len() <= 1);
                        if existing.is_empty() {
                            stored_by.lock().unwrap().entry(i).or_default().push(t);
                        }
                    }
                });
            }
        });
    }
    let k = SqliteKeyStore::open(&p, OpenMode::Existing).unwrap();
    let stored_by = stored_by.into_inner().unwrap();
    for i in 0..each {
        let by = &stored_by[&i];
        assert_eq!(by.len(), 1, "subject {i} stored by {by:?}");
        let shared = k
            .subject_keys(&[0xAA, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7])
            .unwrap()
            .unwrap();
        assert_eq!(
            shared.data,
            vec![by[0], 1],
            "the stored keys are the winner's"
        );
        for t in 0..threads {
            let own = k
                .subject_keys(&[t + 1, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7])
                .unwrap();
            assert_eq!(own.map(|o| o.tag), Some(vec![t, 2]));
        }
    }
}

#[test]
fn stores_run_with_durable_commits_read_back_at_open() {
    let dir = tmp();
    let want = Durability {
        journal_mode: "wal".into(),
        synchronous: 2,
        secure_delete: 1,
    };
    let s = SqliteStore::open(&dir.path().join("d.db"), OpenMode::Create).unwrap();
    assert_eq!(s.durability().unwrap(), want);
    let k = SqliteKeyStore::open(&dir.path().join("k.db"), OpenMode::Create).unwrap();
    assert_eq!(k.durability().unwrap(), want);
    // The same settings applied to a raw connection pass; each weakening is
    // refused with a reason.
    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.execute_batch(SQLITE_PRAGMAS).unwrap();
    check_durability(&durability_of(&raw).unwrap()).unwrap();
    for (weaken, why) in [
        ("PRAGMA synchronous = OFF", "synchronous is 0"),
        ("PRAGMA synchronous = NORMAL", "synchronous is 1"),
        ("PRAGMA secure_delete = OFF", "secure_delete is 0"),
        ("PRAGMA journal_mode = DELETE", "journal_mode is `delete`"),
    ] {
        raw.execute_batch(SQLITE_PRAGMAS).unwrap();
        raw.query_row(weaken, [], |_| Ok(()))
            .or_else(|_| raw.execute_batch(weaken))
            .unwrap();
        let e = check_durability(&durability_of(&raw).unwrap()).unwrap_err();
        assert!(e.contains(why), "{weaken}: {e}");
    }
    // A database that cannot run WAL (in memory) is refused at the check.
    let mem = rusqlite::Connection::open_in_memory().unwrap();
    mem.execute_batch(SQLITE_PRAGMAS).unwrap();
    assert!(
        check_durability(&durability_of(&mem).unwrap())
            .unwrap_err()
            .contains("journal_mode")
    );
}

/// The online backup is one snapshot taken while a writer goes on: the
/// copy opens as a store, holds every batch committed before it began and
/// no half batch, and needs no WAL beside it.
#[test]
fn online_backup_is_one_consistent_snapshot_during_writes() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    let s = std::sync::Arc::new(SqliteStore::open(&p, OpenMode::Create).unwrap());
    let batch = |n: u32| WriteBatch {
        records: (0..50u32)
            .map(|i| RecordRow {
                id: *uuid_like(n, i),
                subject: [1; 16],
                category: "address".into(),
                purpose: "delivery".into(),
                source: "svc".into(),
                collected_at: 1,
                expires_at: 9,
                key_id: 0,
                sealed: vec![7; 64],
                superseded_by: None,
            })
            .collect(),
        leaves: 1,
        ..WriteBatch::default()
    };
    for n in 0..20 {
        s.write(&batch(n), &mut |_, _| b"leaf".to_vec().into())
            .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1000;
            while !stop.load(Ordering::SeqCst) {
                s.write(&batch(n), &mut |_, _| b"leaf".to_vec().into())
                    .unwrap();
                n += 1;
            }
        })
    };
    let copy = dir.path().join("copy").join("data.db");
    std::fs::create_dir(copy.parent().unwrap()).unwrap();
    backup_file(&p, &copy).unwrap();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(!copy.with_file_name("data.db-wal").exists());
    // A second backup to the same place is refused, not overwritten.
    assert!(backup_file(&p, &copy).is_err());
    let c = SqliteStore::open(&copy, OpenMode::Existing).unwrap();
    let (records, leaves) = (c.record_count().unwrap(), c.log_size().unwrap());
    assert!(leaves >= 20);
    assert_eq!(records, 50 * leaves, "whole batches only");
}

fn uuid_like(n: u32, i: u32) -> Box<[u8; 16]> {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[4..8].copy_from_slice(&i.to_be_bytes());
    Box::new(b)
}

/// A token is found through the unique index on its hash, never by a scan
/// of every principal (the query names the index: SQLite refuses it if it
/// could not use it), and the index is unique.
#[test]
fn tokens_are_found_by_their_unique_index() {
    let dir = tmp();
    let p = dir.path().join("data.db");
    let s = SqliteStore::open(&p, OpenMode::Create).unwrap();
    for i in 0..200u8 {
        s.add_principal(&PrincipalRow {
            name: format!("p{i}"),
            role: "delivery".into(),
            token_hash: vec![i; 32],
            created_at: 0,
            revoked_at: None,
        })
        .unwrap();
    }
    assert_eq!(
        s.principal_by_token(&[42; 32]).unwrap().unwrap().name,
        "p42"
    );
    let conn = rusqlite::Connection::open(&p).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT name FROM principals INDEXED BY principals_token
             WHERE token_hash = ?1 AND revoked_at IS NULL",
        )
        .unwrap()
        .query_map([vec![1u8; 32]], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|d| d.contains("USING INDEX principals_token (token_hash=?)")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|d| d.starts_with("SCAN")), "{plan:?}");
    let unique: i64 = conn
        .query_row(
            "SELECT \"unique\" FROM pragma_index_list('principals') WHERE name = 'principals_token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unique, 1);
}

/// `testing::Faulty` with no fault configured is the store it wraps: it
/// passes the whole conformance suite, so every call reaches the wrapped
/// store with its arguments and callbacks and returns what it returned.
#[test]
fn a_faulty_store_without_faults_passes_the_conformance_suite() {
    let dir = tmp();
    let n = AtomicUsize::new(0);
    let faults = testing::Faults::new();
    conformance::run_all(&|| {
        let p = dir
            .path()
            .join(format!("d{}.db", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(testing::Faulty::new(
            SqliteStore::open(&p, OpenMode::Create).unwrap(),
            &faults,
        ))
    });
    conformance::run_all_keys(&|| {
        let p = dir
            .path()
            .join(format!("k{}.db", n.fetch_add(1, Ordering::SeqCst)));
        Box::new(testing::Faulty::new(
            SqliteKeyStore::open(&p, OpenMode::Create).unwrap(),
            &faults,
        ))
    });
    assert!(faults.records() > 0, "reads handed records over");
}

/// Faults fire as a test configures them: after a count of calls, while a
/// switch is on, and with a hook run once before a call; a failed call
/// writes nothing and its error names the call.
#[test]
fn faults_fire_after_a_count_while_a_switch_is_on_and_before_a_call() {
    let dir = tmp();
    let faults = testing::Faults::new();
    let s = testing::Faulty::new(
        SqliteStore::open(&dir.path().join("d.db"), OpenMode::Create).unwrap(),
        &faults,
    );
    let switch = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    faults
        .fail_after(1, &["write", "set_meta"])
        .fail_while(&switch, &["meta"]);
    let batch = WriteBatch {
        leaves: 1,
        ..WriteBatch::default()
    };
    assert_eq!(
        s.write(&batch, &mut |_, _| b"a".to_vec().into()).unwrap(),
        0
    );
    let e = s.set_meta("k", "v").unwrap_err();
    assert!(
        e.to_string().contains("injected failure in `set_meta`"),
        "{e}"
    );
    assert!(s.write(&batch, &mut |_, _| b"b".to_vec().into()).is_err());
    assert_eq!(s.log_size().unwrap(), 1, "nothing written by a failed call");
    assert_eq!(s.meta("k").unwrap(), None);
    switch.store(true, Ordering::SeqCst);
    assert!(s.meta("k").is_err());
    switch.store(false, Ordering::SeqCst);
    assert_eq!(s.meta("k").unwrap(), None);
    let ran = std::sync::Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    faults.before("log_size", move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    s.log_size().unwrap();
    s.log_size().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a hook runs once");
}

/// A read that fails at its commit has run its leaf callback, as a real
/// one would have, and returns nothing; a rotation failed midway changes
/// no key.
#[test]
fn injected_failures_of_reads_and_rotations_fail_after_their_callbacks_ran() {
    let dir = tmp();
    let faults = testing::Faults::new();
    let s = testing::Faulty::new(
        SqliteStore::open(&dir.path().join("d.db"), OpenMode::Create).unwrap(),
        &faults,
    );
    conformance::write_then_read_accounts_each(&s);
    let handed = faults.records();
    assert!(handed > 0);
    faults.fail_after(0, &["read_scoped"]);
    let mut built = 0;
    let e = s
        .read_accounted(&[1; 16], &mut |_, _| {
            built += 1;
            b"leaf".to_vec().into()
        })
        .unwrap_err();
    assert!(e.to_string().contains("`read_scoped`"), "{e}");
    assert_eq!(built, 1, "the decision was made");
    assert_eq!(faults.records(), handed, "nothing handed over");

    let k = testing::Faulty::new(
        SqliteKeyStore::open(&dir.path().join("k.db"), OpenMode::Create).unwrap(),
        &faults,
    );
    for name in ["a", "b", "c"] {
        k.put_secret(name, b"old").unwrap();
    }
    faults.fail_after(0, &["rewrap"]);
    let mut offered = 0;
    assert!(
        k.rewrap(
            &mut |_| {
                offered += 1;
                Ok(KeyAction::Secret(b"new".to_vec()))
            },
            &[],
        )
        .is_err()
    );
    assert_eq!(offered, 2, "two keys were rewrapped before it failed");
    for name in ["a", "b", "c"] {
        assert_eq!(k.secret(name).unwrap().unwrap(), b"old");
    }
}
