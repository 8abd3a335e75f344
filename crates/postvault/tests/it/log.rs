//! The transparency log: checkpoints, proofs, tampering, a person's search.

use base64::Engine as _;
use postvault::{Vault, VaultError, VerifyOptions};
use postvault_log::{Checkpoint, open_checkpoint};

use crate::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn hash(s: &str) -> [u8; 32] {
    B64.decode(s).unwrap().try_into().unwrap()
}

fn opened(v: &Vault, note: &str) -> Checkpoint {
    open_checkpoint(note, &v.log_verifier_key()).unwrap()
}

/// A vault with some collection batches and reads, allowed and denied.
fn busy_vault(dir: &Path, c: &Arc<FixedClock>) -> Vault {
    busy_vault_on(&Backend::Sqlite, dir, c)
}

fn busy_vault_on(b: &Backend, dir: &Path, c: &Arc<FixedClock>) -> Vault {
    let v = vault_on(b, dir, c);
    for i in 0..5 {
        collect(&v, "ingest", &person(&format!("s{i}"), &format!("m{i}")));
    }
    for i in 0..5 {
        for (who, purpose) in [
            ("sorting", "delivery"),
            ("agency", "immigration_enforcement"),
        ] {
            v.read(&v.principal(who).unwrap(), &format!("s{i}"), purpose)
                .unwrap();
        }
    }
    v
}

fn count(dir: &Path, q: &str) -> i64 {
    rusqlite::Connection::open(dir.join("data.db"))
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

fn sql(dir: &Path, stmt: &str) -> usize {
    rusqlite::Connection::open(dir.join("data.db"))
        .unwrap()
        .execute(stmt, [])
        .unwrap()
}

#[test]
fn every_leaf_is_provably_in_the_signed_tree() {
    every_leaf_is_provably_in_the_signed_tree_on(&Backend::Sqlite);
}

pub fn every_leaf_is_provably_in_the_signed_tree_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault_on(b, dir.path(), &c);
    let note = v.checkpoint().unwrap();
    let cp = opened(&v, &note);
    assert_eq!(cp.size, v.store().log_size().unwrap());
    assert_eq!(cp.size, 15);
    assert!(cp.origin.starts_with("postvault/"));
    assert!(note.starts_with(&format!("{}\n15\n", cp.origin)));
    for i in 0..cp.size {
        let p = v.prove_inclusion(i, None).unwrap();
        assert_eq!(p.size, cp.size);
        let path: Vec<[u8; 32]> = p.hashes.iter().map(|h| hash(h)).collect();
        postvault_log::verify_inclusion(i, p.size, &hash(&p.leaf_hash), &path, &cp.root).unwrap();
        // The leaf hash is the hash of the exact entry bytes.
        let e = &v.log_entries(i, i + 1).unwrap()[0];
        assert_eq!(
            hash(&p.leaf_hash),
            postvault_log::leaf_hash(&B64.decode(&e.leaf).unwrap())
        );
    }
    // Asking again signs nothing new.
    assert_eq!(v.checkpoint().unwrap(), note);
    assert_eq!(v.store().checkpoints().unwrap().len(), 1);
}

#[test]
fn checkpoints_are_signed_per_interval_not_per_read_and_stay_consistent_across_restarts() {
    checkpoints_are_signed_per_interval_not_per_read_and_stay_consistent_across_restarts_on(
        &Backend::Sqlite,
    );
}

pub fn checkpoints_are_signed_per_interval_not_per_read_and_stay_consistent_across_restarts_on(
    b: &Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault_on(b, dir.path(), &c);
    let first = v.checkpoint().unwrap();
    for _ in 0..20 {
        v.read(&v.principal("sorting").unwrap(), "s1", "delivery")
            .unwrap();
    }
    assert_eq!(
        v.store().checkpoints().unwrap().len(),
        1,
        "reads sign nothing"
    );
    drop(v);
    let v = b.open(dir.path(), opts(&c)).unwrap();
    let second = v.checkpoint().unwrap();
    let (a, b) = (opened(&v, &first), opened(&v, &second));
    assert_eq!((a.size, b.size), (15, 35));
    let p = v.prove_consistency(a.size, b.size).unwrap();
    let path: Vec<[u8; 32]> = p.hashes.iter().map(|h| hash(h)).collect();
    postvault_log::verify_consistency(a.size, b.size, &a.root, &b.root, &path).unwrap();
    let report = v
        .verify_log(&VerifyOptions {
            checkpoint: Some(second),
            since: Some(first),
            ..VerifyOptions::default()
        })
        .unwrap();
    assert!(report.ok);
    assert_eq!(report.checkpoints_checked, 2);
    assert_eq!(report.since.unwrap().size, 15);
}

fn verify_fails(v: &Vault, why: &str) -> String {
    match v.verify_log(&VerifyOptions::default()) {
        Err(VaultError::LogVerification(m)) => m,
        other => panic!("{why}: expected a verification failure, got {other:?}"),
    }
}

#[test]
fn tampering_with_the_log_is_detected() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 5] = [
        ("a changed byte in a leaf", |d| {
            let n = sql(
                d,
                "UPDATE leaves SET body = CAST(replace(CAST(body AS TEXT), '\"deny\"', '\"allow\"') AS BLOB) WHERE idx = 10 AND instr(CAST(body AS TEXT), '\"deny\"') > 0",
            );
            assert_eq!(n, 1);
        }),
        ("a dropped leaf", |d| {
            sql(d, "DELETE FROM leaves WHERE idx = 3");
        }),
        ("reordered leaves", |d| {
            sql(d, "UPDATE leaves SET idx = -1 WHERE idx = 5");
            sql(d, "UPDATE leaves SET idx = 5 WHERE idx = 6");
            sql(d, "UPDATE leaves SET idx = 6 WHERE idx = -1");
        }),
        ("a changed tree hash", |d| {
            sql(d, "UPDATE log_hashes SET hash = zeroblob(32) WHERE idx = 2");
        }),
        ("a rolled-back tree", |d| {
            sql(d, "DELETE FROM leaves WHERE idx >= 12");
            sql(d, "DELETE FROM log_hashes");
            sql(
                d,
                "UPDATE meta SET value = '0' WHERE key = 'log_hashed_size'",
            );
        }),
    ];
    for (what, tamper) in cases {
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        let v = busy_vault(dir.path(), &c);
        let before = v.checkpoint().unwrap();
        assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
        drop(v);
        tamper(dir.path());
        // A data store behind the last signed checkpoint is refused before
        // anything else; the others open and fail verification.
        let v = match Vault::open(dir.path(), opts(&c)) {
            Err(VaultError::LogRollback(m)) if what == "a rolled-back tree" => {
                assert!(m.contains("15"), "{m}");
                continue;
            }
            Ok(v) if what != "a rolled-back tree" => v,
            other => panic!("{what}: {other:?}"),
        };
        let msg = verify_fails(&v, what);
        assert!(!msg.is_empty());
        // And the vault signs nothing inconsistent with what it signed.
        match v.checkpoint() {
            Ok(note) => assert_eq!(note, before, "{what}: signed a new checkpoint"),
            Err(e) => assert!(matches!(e, VaultError::LogVerification(_)), "{what}: {e}"),
        }
    }
}

#[test]
fn a_forged_or_foreign_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    let note = v.checkpoint().unwrap();
    let forged = note.replacen("\n15\n", "\n14\n", 1);
    let e = v
        .verify_log(&VerifyOptions {
            checkpoint: Some(forged),
            since: None,
            ..VerifyOptions::default()
        })
        .unwrap_err();
    assert!(matches!(e, VaultError::LogVerification(_)), "{e}");
    let other_dir = tempfile::tempdir().unwrap();
    let other = busy_vault(other_dir.path(), &c);
    let foreign = other.checkpoint().unwrap();
    assert!(
        v.verify_log(&VerifyOptions {
            checkpoint: Some(foreign),
            since: None,
            ..VerifyOptions::default()
        })
        .is_err()
    );
    // An earlier checkpoint larger than the later one is not "consistent".
    let small = {
        drop(v);
        let v = Vault::open(dir.path(), opts(&c)).unwrap();
        v.read(&v.principal("sorting").unwrap(), "s1", "delivery")
            .unwrap();
        let big = v.checkpoint().unwrap();
        let e = v
            .verify_log(&VerifyOptions {
                checkpoint: Some(note.clone()),
                since: Some(big),
                ..VerifyOptions::default()
            })
            .unwrap_err();
        assert!(matches!(e, VaultError::LogVerification(_)), "{e}");
        note
    };
    assert!(small.contains("\n15\n"));
}

#[test]
fn a_person_finds_every_leaf_about_them_and_nobody_else_does() {
    a_person_finds_every_leaf_about_them_and_nobody_else_does_on(&Backend::Sqlite);
}

pub fn a_person_finds_every_leaf_about_them_and_nobody_else_does_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault_on(b, dir.path(), &c);
    // Two more reads of s2, one denied; one read of someone unknown.
    v.read(&v.principal("care").unwrap(), "s2", "account_service")
        .unwrap();
    v.read(&v.principal("promo").unwrap(), "s2", "marketing")
        .unwrap();
    v.read(&v.principal("promo").unwrap(), "ghost", "marketing")
        .unwrap();
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    assert!(v.subject_tag_key("ghost").unwrap().is_none());
    let (note, found) = v.find_leaves(&key).unwrap();
    let cp = opened(&v, &note);
    let indexes: Vec<u64> = found.iter().map(|f| f.index).collect();
    // s2's reads: delivery and immigration in busy_vault (leaves 9 and 10), then 15, 16.
    assert_eq!(indexes, vec![9, 10, 15, 16]);
    for f in &found {
        let path: Vec<[u8; 32]> = f.proof.hashes.iter().map(|h| hash(h)).collect();
        postvault_log::verify_inclusion(
            f.index,
            cp.size,
            &hash(&f.proof.leaf_hash),
            &path,
            &cp.root,
        )
        .unwrap();
        assert_eq!(f.event.as_ref().unwrap().action, "read");
    }
    let other = v.subject_tag_key("s3").unwrap().unwrap();
    let (_, theirs) = v.find_leaves(&other).unwrap();
    assert_eq!(
        theirs.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![11, 12]
    );
    assert!(v.find_leaves("not base64!").is_err());
}

/// The leaf index finds what a scan of the log finds; `check` counts a
/// filing removed or added; a store from before the index (schema 12)
/// upgrades, and its older leaves are still found, by a scan.
#[test]
fn the_leaf_index_finds_what_a_scan_finds_and_check_counts_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    v.read(&v.principal("care").unwrap(), "s2", "account_service")
        .unwrap();
    v.read(&v.principal("promo").unwrap(), "ghost", "marketing")
        .unwrap();
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    assert_eq!(leaves_found(&v, &key), vec![9, 10, 15]);
    // Every leaf with a subject tag is filed once (the unknown person's
    // too, under nobody's tokens); batches are not.
    let tagged = count(
        dir.path(),
        "SELECT count(*) FROM leaves WHERE CAST(body AS TEXT) LIKE '%\"subject_tag\":%'",
    );
    assert_eq!(tagged, 12);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM leaf_index"), tagged);
    assert!(v.check().unwrap().ok);
    let mismatches = |v: &Vault| v.check().unwrap().log.leaf_index_mismatches;
    // A filing's token changed (s2's second leaf): its seal no longer
    // holds, and the report finds the gap it leaves before the third.
    assert_eq!(
        sql(
            dir.path(),
            "UPDATE leaf_index SET token = randomblob(16) WHERE idx = 10"
        ),
        1
    );
    assert_eq!(mismatches(&v), 1);
    match v.find_leaves(&key) {
        Err(VaultError::LogVerification(m)) => assert!(m.contains("gap"), "{m}"),
        other => panic!("expected the gap to be reported, got {other:?}"),
    }
    assert_eq!(v.find_leaves_scanned(&key).unwrap().1.len(), 3);
    // The filing of the third removed as well: the report misses both,
    // check counts it, a scan finds them.
    assert_eq!(sql(dir.path(), "DELETE FROM leaf_index WHERE idx = 15"), 1);
    assert_eq!(mismatches(&v), 2);
    assert_eq!(v.find_leaves(&key).unwrap().1.len(), 1);
    assert_eq!(v.find_leaves_scanned(&key).unwrap().1.len(), 3);
    // A filing of a batch's leaf (no tag) and without a seal: twice.
    sql(
        dir.path(),
        "INSERT INTO leaf_index (token, idx, seal) VALUES (zeroblob(16), 0, zeroblob(16))",
    );
    assert_eq!(mismatches(&v), 4);
    // The months removed: every tagged leaf's month is missing (12), and
    // the report still looks in every month from the first leaf's to now.
    sql(dir.path(), "DELETE FROM leaf_index_months");
    assert_eq!(mismatches(&v), 16);
    assert_eq!(v.find_leaves(&key).unwrap().1.len(), 1);
    // A month listed far in the future: counted, and the report asks for it
    // alone, not for every month on the way.
    sql(
        dir.path(),
        "INSERT INTO leaf_index_months (month) VALUES (4294967295)",
    );
    assert_eq!(mismatches(&v), 17);
    assert_eq!(v.find_leaves(&key).unwrap().1.len(), 1);
    drop(v);

    // The store as schema 12 left it: no leaf index. The upgrade files
    // leaves from the log's size on; the older are found by a scan.
    sql(dir.path(), "DROP TABLE leaf_index");
    sql(dir.path(), "DROP TABLE leaf_index_months");
    sql(
        dir.path(),
        "DELETE FROM meta WHERE key = 'leaf_indexed_from'",
    );
    sql(dir.path(), "PRAGMA user_version = 12");
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.store().leaf_indexed_from().unwrap(), 17);
    v.read(&v.principal("care").unwrap(), "s2", "account_service")
        .unwrap();
    assert_eq!(count(dir.path(), "SELECT count(*) FROM leaf_index"), 1);
    assert_eq!(leaves_found(&v, &key), vec![9, 10, 15, 17]);
    assert!(v.check().unwrap().ok);
}

/// A filing removed from the middle of a person's month is never filled
/// again: the next leaves about them go after the taken run instead of
/// into the removed filing's slot, which would make the gap, and the leaf
/// it hid, vanish from every later report. The person's reads go on; their
/// report and `check` still find the gap.
#[test]
fn a_removed_filing_is_not_filled_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    let care = v.principal("care").unwrap();
    for _ in 0..2 {
        v.read(&care, "s2", "account_service").unwrap();
    }
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    let found = leaves_found(&v, &key);
    assert_eq!(found.len(), 4, "{found:?}");
    // Slots 0, 1, 3 left: the search for a free slot lands on 2.
    assert_eq!(
        sql(
            dir.path(),
            &format!("DELETE FROM leaf_index WHERE idx = {}", found[2])
        ),
        1
    );
    let size = v.store().log_size().unwrap();
    // The person's reads go on: each leaf is filed after the taken run,
    // never in the gap.
    for _ in 0..2 {
        v.read(&care, "s2", "account_service").unwrap();
    }
    assert_eq!(v.store().log_size().unwrap(), size + 2);
    assert_eq!(
        count(
            dir.path(),
            &format!(
                "SELECT count(*) FROM leaf_index WHERE idx IN ({}, {})",
                size,
                size + 1
            )
        ),
        2,
        "both new leaves are filed"
    );
    // The gap is still there for the person's report to find...
    match v.find_leaves(&key) {
        Err(VaultError::LogVerification(m)) => assert!(m.contains("gap"), "{m}"),
        other => panic!("expected the gap to be reported, got {other:?}"),
    }
    // ...and for `check`: the one leaf unfiled, nothing else.
    assert_eq!(v.check().unwrap().log.leaf_index_mismatches, 1);
    // Another person's leaves are filed as before.
    v.read(&care, "s3", "account_service").unwrap();
    let others = leaves_found(&v, &v.subject_tag_key("s3").unwrap().unwrap());
    // The operator's repair files the person's leaves again from a scan:
    // the report finds what the scan finds, the repair's own leaf too.
    let done = v.refile_subject("s2").unwrap();
    assert_eq!(
        (done.leaves, done.months, done.untimed),
        (7, 1, 0),
        "{done:?}"
    );
    // Only the gap is written: every other row is already right (slots 0,
    // 1, 3, the reads' after the run, and the repair's own leaf after them).
    assert_eq!((done.written, done.removed), (1, 0), "{done:?}");
    let after = leaves_found(&v, &key);
    assert_eq!(after.len(), 7, "{after:?}");
    assert!(after.contains(&found[2]) && after.contains(&done.leaf));
    let scanned: Vec<u64> = v
        .find_leaves_scanned(&key)
        .unwrap()
        .1
        .iter()
        .map(|l| l.index)
        .collect();
    assert_eq!(after, scanned);
    let event = v.log_entries(done.leaf, done.leaf + 1).unwrap()[0]
        .event
        .clone()
        .unwrap();
    assert_eq!(
        (event.action.as_str(), event.principal.role.as_str()),
        ("leaf_refile", "operator")
    );
    assert!(v.check().unwrap().ok);
    // Nobody else's filings moved.
    assert_eq!(
        leaves_found(&v, &v.subject_tag_key("s3").unwrap().unwrap()),
        others
    );
    // Someone the vault holds no keys for: refused, nothing written.
    let size = v.store().log_size().unwrap();
    assert_eq!(
        v.refile_subject("nobody-here").unwrap_err().code(),
        "no_such_subject"
    );
    assert_eq!(v.store().log_size().unwrap(), size);
}

/// Two filings removed a few slots apart: a new leaf goes after the last
/// taken slot, filling neither gap (the first free slot after the first
/// gap would be the second).
#[test]
fn a_new_leaf_fills_neither_of_two_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    let care = v.principal("care").unwrap();
    for _ in 0..4 {
        v.read(&care, "s2", "account_service").unwrap();
    }
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    let found = leaves_found(&v, &key);
    assert_eq!(found.len(), 6, "{found:?}");
    let tag = postvault_crypto::TagKey::from_bytes(
        &base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap(),
    )
    .unwrap();
    // The month the person's leaves are filed under: the one whose slot 0
    // is their first leaf.
    let month = (0..2_000)
        .find(|&m| {
            v.store().leaf_index_find(&[tag.index_token(m, 0)]).unwrap()[0] == Some(found[0])
        })
        .unwrap();
    let slots = |n: u32| -> Vec<Option<u64>> {
        let tokens: Vec<[u8; 16]> = (0..n).map(|s| tag.index_token(month, s)).collect();
        v.store().leaf_index_find(&tokens).unwrap()
    };
    for gone in [found[2], found[4]] {
        sql(
            dir.path(),
            &format!("DELETE FROM leaf_index WHERE idx = {gone}"),
        );
    }
    let size = v.store().log_size().unwrap();
    v.read(&care, "s2", "account_service").unwrap();
    let now = slots(8);
    assert_eq!(
        now,
        vec![
            Some(found[0]),
            Some(found[1]),
            None,
            Some(found[3]),
            None,
            Some(found[5]),
            Some(size),
            None
        ]
    );
    // The repair (its own leaf filed after the run, at slot 7) writes just
    // the two removed filings: every other row is where it belongs.
    let done = v.refile_subject("s2").unwrap();
    assert_eq!(
        (done.leaves, done.written, done.removed),
        (8, 2, 0),
        "{done:?}"
    );
    assert_eq!(
        slots(9)[2..5],
        [Some(found[2]), Some(found[3]), Some(found[4])]
    );
    assert_eq!(leaves_found(&v, &key).len(), 8);
    assert!(v.check().unwrap().ok);
    // A filing moved under a token of nobody's: found by reading the
    // index, removed, and the slot it left written.
    sql(
        dir.path(),
        &format!(
            "UPDATE leaf_index SET token = randomblob(16) WHERE idx = {}",
            found[1]
        ),
    );
    assert!(!v.check().unwrap().ok);
    let done = v.refile_subject("s2").unwrap();
    assert_eq!(
        (done.leaves, done.written, done.removed),
        (9, 1, 1),
        "{done:?}"
    );
    assert_eq!(leaves_found(&v, &key).len(), 9);
    assert!(v.check().unwrap().ok);
}

/// A person's own scan of the public log (its entry bundles) finds what
/// the vault's index finds, and fails on a copy with an entry changed or
/// dropped: the entries must rebuild the checkpoint's tree.
#[test]
fn a_scan_of_the_public_log_finds_every_entry_and_trusts_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    // Past one bundle of 256 entries, so the scan reads a full one and a
    // partial one.
    let care = v.principal("care").unwrap();
    for i in 0..300 {
        v.read(&care, &format!("s{}", i % 3), "account_service")
            .unwrap();
    }
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    let (note, found) = v.find_leaves(&key).unwrap();
    let indexed: Vec<u64> = found.iter().map(|f| f.index).collect();
    assert!(indexed.len() > 100, "{}", indexed.len());
    let log_key = v.log_verifier_key();
    let honest = |path: &str| v.log_tile(path).map_err(|e| e.to_string());
    let mut read = 0;
    let scan = postvault::scan_public_log(
        &note,
        &log_key,
        &[],
        None,
        &key,
        &mut |p| honest(p),
        &mut |n| read = n,
    )
    .unwrap();
    assert!(scan.root_verified && !scan.witnessed);
    assert!(scan.checkpoint_size > 256);
    assert_eq!(read, scan.checkpoint_size);
    let scanned: Vec<u64> = scan.leaves.iter().map(|l| l.index).collect();
    assert_eq!(scanned, indexed);
    // Another person's key finds theirs, none of these.
    let other = v.subject_tag_key("s1").unwrap().unwrap();
    let theirs = postvault::scan_public_log(
        &note,
        &log_key,
        &[],
        None,
        &other,
        &mut |p| honest(p),
        &mut |_| {},
    )
    .unwrap();
    assert!(!theirs.leaves.is_empty());
    assert!(theirs.leaves.iter().all(|l| !scanned.contains(&l.index)));
    // A copy with one of the person's entries changed, or dropped, or a
    // bundle cut short: refused, never a shorter list.
    let target = indexed[0];
    let width = (scan.checkpoint_size - target / 256 * 256).min(256) as u16;
    let bundle = postvault_log::entry_bundle_path(target / 256, width);
    let v = &v;
    let bundle = &bundle;
    let tampered = |drop_it: bool| {
        move |path: &str| -> Result<Vec<u8>, String> {
            let bytes = v.log_tile(path).map_err(|e| e.to_string())?;
            if path != *bundle {
                return Ok(bytes);
            }
            let mut entries = postvault_log::parse_entry_bundle(&bytes).unwrap();
            let at = (target % 256) as usize;
            if drop_it {
                entries.remove(at);
                entries.push(entries[0].clone());
            } else {
                let e = &mut entries[at];
                let last = e.len() - 2;
                e[last] ^= 1;
            }
            Ok(postvault_log::entry_bundle(&entries).unwrap())
        }
    };
    for drop_it in [false, true] {
        let mut f = tampered(drop_it);
        match postvault::scan_public_log(&note, &log_key, &[], None, &key, &mut f, &mut |_| {}) {
            Err(VaultError::LogVerification(m)) => assert!(m.contains("tree"), "{m}"),
            other => panic!("a tampered copy was taken: {other:?}"),
        }
    }
    let short = postvault::scan_public_log(
        &note,
        &log_key,
        &[],
        None,
        &key,
        &mut |p| {
            let mut b = honest(p)?;
            b.truncate(b.len() / 2);
            Ok(b)
        },
        &mut |_| {},
    );
    assert!(
        matches!(short, Err(VaultError::LogVerification(_))),
        "{short:?}"
    );
    // Another log's key: the checkpoint's signature fails.
    let d2 = tempfile::tempdir().unwrap();
    let stranger = vault(d2.path(), &c).log_verifier_key();
    assert!(matches!(
        postvault::scan_public_log(
            &note,
            &stranger,
            &[],
            None,
            &key,
            &mut |p| honest(p),
            &mut |_| {}
        ),
        Err(VaultError::LogVerification(_))
    ));
}

/// Reports that run together share checkpoints, and each still shows its
/// own two leaves (the read and the accounting lookup), proven, and
/// committed together: next to each other in the log.
#[test]
fn concurrent_reports_each_show_their_own_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    let officer = v.principal("officer").unwrap();
    let before = v.store().checkpoints().unwrap().len();
    std::thread::scope(|s| {
        for round in 0..3 {
            let handles: Vec<_> = (0..5)
                .map(|i| {
                    let (v, officer) = (&v, &officer);
                    s.spawn(move || (i, v.subject_report(officer, &format!("s{i}")).unwrap()))
                })
                .collect();
            for h in handles {
                let (i, r) = h.join().unwrap();
                assert!(r.proofs_verified);
                let actions: Vec<&str> = r
                    .log
                    .iter()
                    .filter_map(|l| l.event.as_ref().map(|e| e.action.as_str()))
                    .collect();
                // Nothing else touches s{i}: the last two leaves are this
                // report's own, and earlier rounds' are there too.
                assert_eq!(
                    actions[actions.len() - 2..],
                    ["read", "accounting_read"],
                    "s{i} round {round}: {actions:?}"
                );
                assert_eq!(actions.len(), 2 + 2 * (round + 1), "s{i}: {actions:?}");
                // Committed together, the accounting's right after the
                // read's, whatever the other reports append meanwhile.
                let own: Vec<u64> = r.log[r.log.len() - 2..].iter().map(|l| l.index).collect();
                assert_eq!(own[1], own[0] + 1, "s{i} round {round}: {own:?}");
            }
        }
    });
    // At most one signature a report; the log verifies.
    assert!(v.store().checkpoints().unwrap().len() - before <= 15);
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
}

#[test]
fn a_leaf_changed_under_its_hash_is_never_shown_with_a_proof() {
    // Someone who can write the store changes the event of one of s2's
    // leaves and leaves the tree's hashes alone: a proof from the tree
    // would still verify, so the leaf found is checked against it.
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault(dir.path(), &c);
    let key = v.subject_tag_key("s2").unwrap().unwrap();
    let (_, found) = v.find_leaves(&key).unwrap();
    assert_eq!(
        found.iter().map(|f| f.index).collect::<Vec<_>>(),
        vec![9, 10]
    );
    let n = sql(
        dir.path(),
        "UPDATE leaves SET body = CAST(replace(CAST(body AS TEXT), '\"read\"', '\"look\"') AS BLOB) WHERE idx = 10",
    );
    assert_eq!(n, 1);
    match v.find_leaves(&key) {
        Err(VaultError::LogVerification(m)) => assert!(m.contains("10"), "{m}"),
        other => panic!("expected the changed leaf to be refused, got {other:?}"),
    }
}

#[test]
fn the_log_is_served_as_c2sp_tiles() {
    the_log_is_served_as_c2sp_tiles_on(&Backend::Sqlite);
}

pub fn the_log_is_served_as_c2sp_tiles_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = busy_vault_on(b, dir.path(), &c);
    let n = v.store().log_size().unwrap();
    let leaves = v.store().leaves(0, n).unwrap();
    let tile = v.log_tile(&format!("tile/0/000.p/{n}")).unwrap();
    let expected: Vec<u8> = leaves
        .iter()
        .flat_map(|l| postvault_log::leaf_hash(l))
        .collect();
    assert_eq!(tile, expected);
    let bundle = v.log_tile(&format!("entries/000.p/{n}")).unwrap();
    assert_eq!(postvault_log::parse_entry_bundle(&bundle).unwrap(), leaves);
    assert!(v.log_tile("tile/0/000.p/99").is_err());
    assert!(v.log_tile("tile/0/000").is_err(), "no full tile yet");
    assert!(v.log_tile("tile/x/../../etc").is_err());
}

/// Proofs read the tree's low levels from proof tiles: every proof of a
/// log with many tiles verifies, a changed tile is caught by `verify` and
/// counted by `check`, and a store made before tiles keeps proving its old
/// leaves from the stored hashes and tiles what is hashed after the upgrade.
#[test]
fn proofs_read_tiles_and_a_changed_tile_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let append = |v: &Vault, count: usize| {
        v.store()
            .append_leaves(count, &mut |idx, _| {
                format!("leaf {idx}").into_bytes().into()
            })
            .unwrap();
    };
    let proves = |v: &Vault, index: u64| {
        let note = v.checkpoint().unwrap();
        let cp = opened(v, &note);
        let p = v.prove_inclusion(index, None).unwrap();
        let body = v.store().leaves(index, index + 1).unwrap().pop().unwrap();
        let path: Vec<[u8; 32]> = p.hashes.iter().map(|h| hash(h)).collect();
        hash(&p.leaf_hash) == postvault_log::leaf_hash(&body)
            && postvault_log::verify_inclusion(index, cp.size, &hash(&p.leaf_hash), &path, &cp.root)
                .is_ok()
    };
    let count = |d: &Path, q: &str| -> i64 {
        rusqlite::Connection::open(d.join("data.db"))
            .unwrap()
            .query_row(q, [], |r| r.get(0))
            .unwrap()
    };
    append(&v, 600);
    v.checkpoint().unwrap();
    // 600 leaves: 37 tiles of 16, 2 of 256.
    assert_eq!(count(dir.path(), "SELECT count(*) FROM log_tiles"), 39);
    for index in [0, 1, 100, 255, 256, 511, 591, 592, 599] {
        assert!(proves(&v, index), "leaf {index}");
    }
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
    drop(v);

    // A changed hash in a tile: the proof it serves fails to verify, and
    // verification and `check` catch it.
    sql(
        dir.path(),
        "UPDATE log_tiles SET hashes = zeroblob(32) || substr(hashes, 33) WHERE id = 6",
    );
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert!(!proves(&v, 96) && !proves(&v, 97));
    assert!(proves(&v, 112));
    let msg = verify_fails(&v, "a changed proof tile");
    assert!(msg.contains("proof tile 6"), "{msg}");
    let r = v.check().unwrap();
    assert!(!r.ok && r.log.hash_mismatches == 1, "{:?}", r.log);
    drop(v);
    // A missing tile: refused loudly, not answered.
    sql(dir.path(), "DELETE FROM log_tiles WHERE id = 6");
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert!(v.prove_inclusion(97, None).is_err());
    assert!(v.check().unwrap().log.hash_mismatches == 1);
    drop(v);

    // The store as schema 11 left it: no tiles. The upgrade keeps tiles
    // from the hashed size on (600 leaves).
    sql(dir.path(), "DROP TABLE log_tiles");
    sql(dir.path(), "DELETE FROM meta WHERE key = 'log_tiled_from'");
    sql(dir.path(), "DROP TABLE leaf_index");
    sql(dir.path(), "DROP TABLE leaf_index_months");
    sql(
        dir.path(),
        "DELETE FROM meta WHERE key = 'leaf_indexed_from'",
    );
    sql(dir.path(), "PRAGMA user_version = 11");
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(v.store().log_tiled_from().unwrap(), 600);
    append(&v, 400);
    v.checkpoint().unwrap();
    // Those completed after 600 leaves: 37..62 of 16, and tile 2 of 256.
    assert_eq!(count(dir.path(), "SELECT count(*) FROM log_tiles"), 26);
    for index in [0, 96, 591, 592, 600, 767, 768, 999] {
        assert!(proves(&v, index), "leaf {index}");
    }
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
    assert!(v.check().unwrap().ok);
}
