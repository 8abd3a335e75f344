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
                            format!("read {t} {i} at {idx}").into_bytes()
                        })
                        .unwrap();
                    seen.lock().unwrap().push(idx);
                    if i % 50 == 0 {
                        s.append_leaves(1, &mut |idx, _| format!("write at {idx}").into_bytes())
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
