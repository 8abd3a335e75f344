//! The log cannot fork: the key store's last signed checkpoint against a
//! data store rolled back (whole directory, `data.db` alone, its WAL lost
//! or cut short), rewritten, or stripped of checkpoints; witnesses that
//! cosign, refuse, or are down.

use std::sync::Arc;

use postvault::{
    ConfiguredWitness, Vault, VaultError, VerifyOptions, Witness, WitnessCallError, WitnessPolicy,
};
use postvault_log::{AddCheckpoint, CosignatureVerifier, Hash};
use postvault_witness::{AddError, Cosigner};

use crate::*;

/// A real witness (`postvault_witness::Cosigner`, its state in SQLite)
/// called in process: the protocol without the HTTP transport.
struct Local(Arc<Cosigner>);

impl Witness for Local {
    fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        checkpoint: &str,
    ) -> Result<String, WitnessCallError> {
        let body = AddCheckpoint {
            old_size,
            proof: proof.to_vec(),
            checkpoint: checkpoint.to_string(),
        }
        .to_bytes();
        self.0
            .add_checkpoint(&body, 1_800_000_000)
            .map_err(|e| match e {
                AddError::Refused(r) => match r.conflict_size() {
                    Some(n) => WitnessCallError::Conflict(n),
                    None => WitnessCallError::Refused {
                        status: r.status(),
                        message: r.to_string(),
                    },
                },
                AddError::Storage(m) => WitnessCallError::Refused {
                    status: 500,
                    message: m,
                },
            })
    }
}

/// A witness that cannot be reached.
struct Down;

impl Witness for Down {
    fn add_checkpoint(&self, _: u64, _: &[Hash], _: &str) -> Result<String, WitnessCallError> {
        Err(WitnessCallError::Unavailable("connection refused".into()))
    }
}

fn witness(dir: &Path, name: &str, log_vkey: &str) -> Arc<Cosigner> {
    let w = Cosigner::create(&dir.join(format!("{name}.db")), name).unwrap();
    w.add_log(log_vkey.split('+').next().unwrap(), log_vkey)
        .unwrap();
    Arc::new(w)
}

fn policy(ws: &[(Arc<Cosigner>, bool)], quorum: usize) -> WitnessPolicy {
    WitnessPolicy {
        witnesses: ws
            .iter()
            .map(|(w, up)| ConfiguredWitness {
                verifier: CosignatureVerifier::new(&w.verifier_key()).unwrap(),
                client: if *up {
                    Arc::new(Local(w.clone())) as Arc<dyn Witness>
                } else {
                    Arc::new(Down)
                },
            })
            .collect(),
        quorum,
    }
}

fn reads(v: &Vault, n: usize) {
    let p = v.principal("sorting").unwrap();
    for _ in 0..n {
        v.read(&p, "s1", "delivery").unwrap();
    }
}

fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for n in names {
        let src = from.join(n);
        if src.exists() {
            std::fs::copy(&src, to.join(n)).unwrap();
        } else {
            let _ = std::fs::remove_file(to.join(n));
        }
    }
}

const DATA: [&str; 3] = ["data.db", "data.db-wal", "data.db-shm"];
const KEYS: [&str; 3] = ["keys.db", "keys.db-wal", "keys.db-shm"];

fn rolled_back(r: Result<Vault, VaultError>, what: &str) -> String {
    match r {
        Err(VaultError::LogRollback(m)) => m,
        Err(e) => panic!("{what}: expected a rollback refusal, got {e}"),
        Ok(_) => panic!("{what}: the vault opened"),
    }
}

/// `data.db` alone restored from an older copy beside the current key
/// store: refused at open, naming both sizes and what to do.
#[test]
fn a_data_store_restored_alone_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    v.checkpoint().unwrap();
    // A copy of the running vault's data store (its WAL included).
    copy_files(dir.path(), old.path(), &DATA);
    reads(&v, 5);
    let note = v.checkpoint().unwrap();
    let size = postvault_log::open_checkpoint(&note, &v.log_verifier_key())
        .unwrap()
        .size;
    drop(v);
    for f in DATA {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    copy_files(old.path(), dir.path(), &DATA);
    let m = rolled_back(Vault::open(dir.path(), opts(&c)), "data.db restored");
    assert!(m.contains(&format!("holds {} log leaves", size - 5)), "{m}");
    assert!(m.contains(&format!("{size} leaves")), "{m}");
    assert!(m.contains("restore"), "{m}");
    // The report says what is missing, and changes nothing.
    let report = postvault::check_log_state(
        &postvault_store::SqliteStore::open(&dir.path().join("data.db"), OpenMode::Existing)
            .unwrap(),
        &*Backend::Sqlite.keys(dir.path()),
    )
    .unwrap();
    assert!(!report.ok);
    assert_eq!(report.status, postvault::LogStateStatus::Behind);
    assert_eq!(report.missing_leaves, 5);
    rolled_back(Vault::open(dir.path(), opts(&c)), "still refused");
}

/// A crash that loses `data.db-wal`, or leaves it cut short: the commits
/// in it are gone, and with them leaves a signed checkpoint covers.
#[test]
fn a_lost_or_truncated_data_wal_is_refused_at_open() {
    for truncate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let snap = tempfile::tempdir().unwrap();
        let c = clock();
        let v = vault(dir.path(), &c);
        collect(&v, "ingest", &person("s1", "m"));
        v.checkpoint().unwrap();
        // The store's background checkpointer copies the WAL into
        // `data.db` every few milliseconds; once it has, losing the WAL
        // loses nothing. A reader holding its snapshot from here keeps the
        // commits that follow in the WAL alone, as a crash can find them.
        let pin = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
        pin.execute_batch("BEGIN").unwrap();
        let _: i64 = pin
            .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
            .unwrap();
        reads(&v, 20);
        v.checkpoint().unwrap();
        // Mid-run copy of every file, as a crash leaves them.
        copy_files(dir.path(), snap.path(), &DATA);
        copy_files(dir.path(), snap.path(), &KEYS);
        drop(pin);
        drop(v);
        let wal = snap.path().join("data.db-wal");
        if truncate {
            // Cut the WAL after its header and first frame: SQLite replays
            // only whole commits, so what followed is lost.
            let page = {
                let h = std::fs::read(snap.path().join("data.db")).unwrap();
                u64::from(u16::from_be_bytes([h[16], h[17]]))
            };
            let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
            assert!(f.metadata().unwrap().len() > 32 + 2 * (24 + page));
            f.set_len(32 + 24 + page).unwrap();
        } else {
            std::fs::remove_file(&wal).unwrap();
        }
        let _ = std::fs::remove_file(snap.path().join("data.db-shm"));
        rolled_back(
            Vault::open(snap.path(), opts(&c)),
            if truncate {
                "truncated WAL"
            } else {
                "lost WAL"
            },
        );
    }
}

/// One witness's key configured under two names would count its one
/// cosignature twice toward the quorum: refused when the vault is given its
/// witnesses, as when the policy is recorded.
#[test]
fn one_witness_key_under_two_names_is_not_two_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let key = v.log_verifier_key();
    let w1 = witness(wdir.path(), "w1.example", &key);
    let mut p = policy(&[(w1.clone(), true)], 1);
    let renamed = postvault_log::cosignature_verifier_key(
        "w9.example",
        &CosignatureVerifier::new(&w1.verifier_key())
            .unwrap()
            .public_key(),
    );
    let mut twin = p.witnesses[0].clone();
    twin.verifier = CosignatureVerifier::new(&renamed).unwrap();
    p.witnesses.push(twin);
    p.quorum = 2;
    match v.with_witnesses(p) {
        Err(VaultError::Invalid { what, why }) => {
            assert_eq!(what, "witnesses");
            assert!(why.contains("given twice"), "{why}");
        }
        Err(e) => panic!("expected invalid witnesses, got {e}"),
        Ok(_) => panic!("one key under two names was taken as two witnesses"),
    }
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert!(matches!(
        v.set_witness_policy(&[w1.verifier_key(), renamed], 2),
        Err(VaultError::Invalid { .. })
    ));
}

/// A whole vault directory restored from an older copy: both stores agree
/// with each other, so only someone outside can tell. The witnesses can:
/// the vault refuses to sign.
#[test]
fn a_whole_vault_restored_is_refused_before_signing_by_its_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let key = v.log_verifier_key();
    let (w1, w2) = (
        witness(wdir.path(), "w1.example", &key),
        witness(wdir.path(), "w2.example", &key),
    );
    let ws = [(w1.clone(), true), (w2.clone(), true)];
    let v = v.with_witnesses(policy(&ws, 2)).unwrap();
    collect(&v, "ingest", &person("s1", "m"));
    assert!(v.cosign().unwrap().checkpoint.is_final);
    drop(v);
    copy_files(dir.path(), old.path(), &DATA);
    copy_files(dir.path(), old.path(), &KEYS);
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&ws, 2))
        .unwrap();
    reads(&v, 4);
    let r = v.cosign().unwrap();
    assert!(r.checkpoint.is_final);
    let published = r.checkpoint.size;
    drop(v);
    // Restore the whole directory from the older copy.
    for f in DATA.iter().chain(&KEYS) {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    copy_files(old.path(), dir.path(), &DATA);
    copy_files(old.path(), dir.path(), &KEYS);
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&ws, 2))
        .unwrap();
    reads(&v, 2);
    let before = v.store().checkpoints().unwrap().len();
    match v.checkpoint() {
        Err(VaultError::LogRollback(m)) => {
            assert!(m.contains(&format!("{published} leaves")), "{m}")
        }
        other => panic!("signed over a restored vault: {other:?}"),
    }
    assert_eq!(
        v.store().checkpoints().unwrap().len(),
        before,
        "nothing signed"
    );
    // The witnesses still hold the published tree.
    assert_eq!(w1.logs().unwrap()[0].size, Some(published));
}

/// Rewriting a leaf, recomputing every stored hash and deleting the
/// checkpoint rows leaves a data store that looks whole on its own: the
/// key store's state refuses it, and `verify` fails.
#[test]
fn a_rewritten_leaf_with_recomputed_hashes_and_no_checkpoints_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    reads(&v, 3);
    v.checkpoint().unwrap();
    let n = v.store().log_size().unwrap();
    drop(v);
    let db = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE leaves SET body = CAST(replace(CAST(body AS TEXT), '\"allow\"', '\"deny\"') AS BLOB) WHERE idx = 2",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    // Recompute the whole tree from the rewritten leaves.
    let mut stored: Vec<Hash> = Vec::new();
    for i in 0..n {
        let body: Vec<u8> = db
            .query_row("SELECT body FROM leaves WHERE idx = ?1", [i as i64], |r| {
                r.get(0)
            })
            .unwrap();
        let h = postvault_log::leaf_hash(&body);
        for (_, x) in postvault_log::append_hashes(i, &[h], &stored).unwrap() {
            stored.push(x);
        }
    }
    db.execute("DELETE FROM log_hashes", []).unwrap();
    for (i, h) in stored.iter().enumerate() {
        db.execute(
            "INSERT INTO log_hashes (idx, hash) VALUES (?1, ?2)",
            rusqlite::params![i as i64, &h[..]],
        )
        .unwrap();
    }
    db.execute("DELETE FROM log_checkpoints", []).unwrap();
    drop(db);
    let m = rolled_back(Vault::open(dir.path(), opts(&c)), "rewritten leaf");
    assert!(m.contains("no longer hash"), "{m}");
    let report = postvault::check_log_state(
        &postvault_store::SqliteStore::open(&dir.path().join("data.db"), OpenMode::Existing)
            .unwrap(),
        &*Backend::Sqlite.keys(dir.path()),
    )
    .unwrap();
    assert_eq!(report.status, postvault::LogStateStatus::Diverged);
}

/// Deleted checkpoint rows alone (the tree intact): the vault opens and
/// can sign on, but `verify` fails, counting what is missing.
#[test]
fn deleted_checkpoint_rows_make_verify_fail() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    for i in 0..3 {
        collect(&v, "ingest", &person(&format!("s{i}"), "m"));
        v.checkpoint().unwrap();
    }
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
    drop(v);
    let db = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    assert_eq!(db.execute("DELETE FROM log_checkpoints", []).unwrap(), 3);
    drop(db);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    // Open put back the last signed checkpoint from the key store, only it.
    assert_eq!(v.store().checkpoints().unwrap().len(), 1);
    match v.verify_log(&VerifyOptions::default()) {
        Err(VaultError::LogVerification(m)) => {
            assert!(m.contains("counts 3 signed checkpoints"), "{m}")
        }
        other => panic!("verify passed with checkpoints deleted: {other:?}"),
    }
    let r = v.log_state_report().unwrap();
    assert_eq!(r.missing_checkpoints, 2);
}

/// A stop between the key store's swap and the data store's write: the
/// data store lacks the last checkpoint. It is put back, not signed again.
#[test]
fn a_stop_between_signing_and_storing_is_repaired_without_signing() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    let note = v.checkpoint().unwrap();
    drop(v);
    let db = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    db.execute("DELETE FROM log_checkpoints", []).unwrap();
    drop(db);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(
        v.store().checkpoints().unwrap(),
        vec![(
            postvault_log::open_checkpoint(&note, &v.log_verifier_key())
                .unwrap()
                .size,
            note.clone()
        )]
    );
    assert_eq!(
        v.checkpoint().unwrap(),
        note,
        "the same note, byte for byte"
    );
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
}

/// A vault made before the state existed gets it from its latest kept
/// checkpoint on first open.
#[test]
fn a_vault_without_state_is_initialized_from_its_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    v.checkpoint().unwrap();
    reads(&v, 2);
    let note = v.checkpoint().unwrap();
    drop(v);
    rusqlite::Connection::open(dir.path().join("keys.db"))
        .unwrap()
        .execute("DELETE FROM log_state", [])
        .unwrap();
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let s = Backend::Sqlite
        .keys(dir.path())
        .log_state()
        .unwrap()
        .unwrap();
    assert_eq!((s.note.as_str(), s.signed), (note.as_str(), 2));
    assert!(v.verify_log(&VerifyOptions::default()).unwrap().ok);
}

/// Quorum 2 of 2 with one witness down: the new checkpoint stays pending,
/// the last final one is what is served, and the next round, with the
/// witness back, makes the pending one final.
#[test]
fn below_quorum_a_checkpoint_stays_pending_and_the_last_final_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let key = v.log_verifier_key();
    let (w1, w2) = (
        witness(wdir.path(), "w1.example", &key),
        witness(wdir.path(), "w2.example", &key),
    );
    let up = [(w1.clone(), true), (w2.clone(), true)];
    let v = v.with_witnesses(policy(&up, 2)).unwrap();
    collect(&v, "ingest", &person("s1", "m"));
    let first = v.cosign().unwrap();
    assert!(first.checkpoint.is_final);
    assert_eq!(first.checkpoint.cosigners.len(), 2);
    drop(v);
    let half = [(w1.clone(), true), (w2.clone(), false)];
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&half, 2))
        .unwrap();
    reads(&v, 3);
    let r = v.cosign().unwrap();
    assert!(!r.checkpoint.is_final, "below quorum");
    assert_eq!(r.checkpoint.cosigners.len(), 1);
    assert!(r.checkpoint.size > first.checkpoint.size);
    assert_eq!(
        r.final_checkpoint.as_ref().unwrap().size,
        first.checkpoint.size,
        "the last final checkpoint is still the one served"
    );
    let down = r.witnesses.iter().find(|w| !w.cosigned).unwrap();
    assert!(
        down.error
            .as_deref()
            .unwrap()
            .contains("connection refused")
    );
    assert_eq!(
        v.final_checkpoint().unwrap().unwrap().size,
        first.checkpoint.size
    );
    // A person's proofs come with the pending checkpoint, marked so.
    let tag = v.subject_tag_key("s1").unwrap().unwrap();
    let (cp, _) = v.find_leaves_cosigned(&tag).unwrap();
    assert!(!cp.is_final);
    // verify with the witnesses' keys fails while the latest signed
    // checkpoint lacks the quorum, naming the last one that has it.
    let keys = vec![w1.verifier_key(), w2.verifier_key()];
    let rep = v.verify_log(&VerifyOptions {
        witnesses: keys.clone(),
        ..VerifyOptions::default()
    });
    match rep {
        Err(VaultError::LogVerification(m)) => assert!(
            m.contains(&format!("ends at {} leaves", first.checkpoint.size)),
            "{m}"
        ),
        other => panic!("a pending checkpoint verified: {other:?}"),
    }
    drop(v);
    // The witness is back: the next round makes it final.
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&up, 2))
        .unwrap();
    let r = v.cosign().unwrap();
    assert!(r.checkpoint.is_final);
    assert_eq!(
        v.final_checkpoint().unwrap().unwrap().size,
        r.checkpoint.size
    );
    // The published note verifies offline with the log key and the
    // witnesses' keys, and carries both lines.
    let vs: Vec<CosignatureVerifier> = keys
        .iter()
        .map(|k| CosignatureVerifier::new(k).unwrap())
        .collect();
    let w = postvault_log::verify_cosigned(&r.checkpoint.note, &v.log_verifier_key(), &vs).unwrap();
    assert_eq!(w.cosigned.len(), 2);
    let rep = v
        .verify_log(&VerifyOptions {
            witnesses: keys.clone(),
            ..VerifyOptions::default()
        })
        .unwrap();
    assert_eq!(rep.checkpoint.unwrap().size, r.checkpoint.size);
    assert_eq!(rep.cosigners.len(), 2);
    // A quorum of the other witness alone is refused by verify.
    let rep = v.verify_log(&VerifyOptions {
        checkpoint: Some(v.checkpoint().unwrap()),
        witnesses: keys,
        ..VerifyOptions::default()
    });
    assert!(
        matches!(rep, Err(VaultError::LogVerification(_))),
        "{rep:?}"
    );
}

#[test]
fn a_quorum_is_between_one_and_the_number_of_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let w = witness(wdir.path(), "w1.example", &v.log_verifier_key());
    let ws = [(w.clone(), true)];
    assert!(matches!(
        Vault::open(dir.path(), opts(&c))
            .unwrap()
            .with_witnesses(policy(&ws, 2)),
        Err(VaultError::Invalid { .. })
    ));
    assert!(matches!(
        Vault::open(dir.path(), opts(&c))
            .unwrap()
            .with_witnesses(policy(&ws, 0)),
        Err(VaultError::Invalid { .. })
    ));
    let twice = [(w.clone(), true), (w, true)];
    assert!(v.with_witnesses(policy(&twice, 1)).is_err());
}

/// The witness policy is recorded in the key store on first configuration:
/// a copy of the vault restored and run without its witnesses (or with
/// others) refuses to sign, with its code; changing the policy is the
/// operator's explicit step, one leaf.
#[test]
fn a_vault_run_without_its_recorded_witnesses_refuses_to_sign() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    assert_eq!(v.recorded_witness_policy().unwrap(), None);
    let key = v.log_verifier_key();
    let (w1, w2) = (
        witness(wdir.path(), "w1.example", &key),
        witness(wdir.path(), "w2.example", &key),
    );
    let ws = [(w1.clone(), true), (w2.clone(), true)];
    let v = v.with_witnesses(policy(&ws, 2)).unwrap();
    let rec = v.recorded_witness_policy().unwrap().unwrap();
    assert_eq!((rec.version, rec.quorum, rec.witnesses.len()), (1, 2, 2));
    collect(&v, "ingest", &person("s1", "m"));
    assert!(v.cosign().unwrap().checkpoint.is_final);
    drop(v);
    copy_files(dir.path(), old.path(), &DATA);
    copy_files(dir.path(), old.path(), &KEYS);
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&ws, 2))
        .unwrap();
    assert_eq!(v.recorded_witness_policy().unwrap().unwrap().version, 1);
    reads(&v, 3);
    assert!(v.cosign().unwrap().checkpoint.is_final);
    drop(v);
    // The older copy, run without witnesses (no flags): it reads, but
    // signs nothing.
    for f in DATA.iter().chain(&KEYS) {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    copy_files(old.path(), dir.path(), &DATA);
    copy_files(old.path(), dir.path(), &KEYS);
    let refused = |v: &Vault| {
        let before = v.store().checkpoints().unwrap().len();
        match v.checkpoint() {
            Err(e @ VaultError::Refused { .. }) => {
                assert_eq!(e.code(), postvault::WITNESSES_NOT_CONFIGURED);
                assert!(e.to_string().contains("log witnesses set"), "{e}");
            }
            other => panic!("signed without the recorded witnesses: {other:?}"),
        }
        assert_eq!(v.store().checkpoints().unwrap().len(), before);
    };
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    reads(&v, 2);
    refused(&v);
    assert!(!v.witness_policy_status().unwrap().may_sign);
    drop(v);
    // One of them, or a lower quorum: refused too.
    for (ws, q) in [(&ws[..1], 1), (&ws[..], 1)] {
        let v = Vault::open(dir.path(), opts(&c))
            .unwrap()
            .with_witnesses(policy(ws, q))
            .unwrap();
        refused(&v);
    }
    // The operator changes the record: one leaf, and the new policy signs.
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    let n = v.store().log_size().unwrap();
    assert!(matches!(
        v.set_witness_policy(&[w1.verifier_key()], 2),
        Err(VaultError::Invalid { .. })
    ));
    let p = v.set_witness_policy(&[w1.verifier_key()], 1).unwrap();
    assert_eq!((p.version, p.quorum), (2, 1));
    assert_eq!(v.store().log_size().unwrap(), n + 1);
    let leaf = v.log_entries(n, n + 1).unwrap().remove(0).event.unwrap();
    assert_eq!(leaf.action, "witness_policy");
    assert_eq!(
        leaf.selector.as_deref(),
        Some("witnesses:1;quorum:1;version:2")
    );
    drop(v);
    // Run with the recorded witness, this copy is caught: w1 cosigned the
    // newer tree, and it is the whole quorum now.
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&ws[..1], 1))
        .unwrap();
    assert_eq!(v.recorded_witness_policy().unwrap().unwrap().version, 2);
    match v.checkpoint() {
        Err(VaultError::LogRollback(m)) => assert!(m.contains("w1.example"), "{m}"),
        other => panic!("signed over a restored vault: {other:?}"),
    }
    drop(v);
    // A policy the operator records is the one the vault signs with.
    let w3 = witness(wdir.path(), "w3.example", &key);
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    assert_eq!(
        v.set_witness_policy(&[w3.verifier_key()], 1)
            .unwrap()
            .version,
        3
    );
    drop(v);
    let v = Vault::open(dir.path(), opts(&c))
        .unwrap()
        .with_witnesses(policy(&[(w3, true)], 1))
        .unwrap();
    assert!(v.cosign().unwrap().checkpoint.is_final);
}

/// `verify --witness` fails when the latest signed checkpoint is not
/// cosigned by the quorum of the keys given: a checkpoint signed without
/// the witnesses is a view no witness saw.
#[test]
fn verify_with_witnesses_fails_on_a_checkpoint_signed_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let key = v.log_verifier_key();
    let (w1, w2) = (
        witness(wdir.path(), "w1.example", &key),
        witness(wdir.path(), "w2.example", &key),
    );
    let ws = [(w1.clone(), true), (w2.clone(), true)];
    let v = v.with_witnesses(policy(&ws, 2)).unwrap();
    collect(&v, "ingest", &person("s1", "m"));
    let cosigned = v.cosign().unwrap().checkpoint.size;
    let keys = vec![w1.verifier_key(), w2.verifier_key()];
    let verify = |v: &Vault| {
        v.verify_log(&VerifyOptions {
            witnesses: keys.clone(),
            ..VerifyOptions::default()
        })
    };
    assert_eq!(verify(&v).unwrap().checkpoint.unwrap().size, cosigned);
    drop(v);
    // The record says no witnesses (the operator's step), and a checkpoint
    // is signed without them.
    let v = Vault::open(dir.path(), opts(&c)).unwrap();
    v.set_witness_policy(&[], 0).unwrap();
    reads(&v, 2);
    v.checkpoint().unwrap();
    let (latest, _) = v.store().latest_checkpoint().unwrap().unwrap();
    assert!(latest > cosigned);
    match verify(&v) {
        Err(VaultError::LogVerification(m)) => {
            assert!(m.contains("is not cosigned by 2 of the witnesses"), "{m}")
        }
        other => panic!("verify passed a checkpoint no witness saw: {other:?}"),
    }
}

/// A saved report checked offline with keys the checker brings: it holds
/// with the log's key and the witnesses' keys; a checkpoint stripped of its
/// cosignatures (what a node showing a second log could sign alone), a
/// leaf altered, or another log's key are each refused.
#[test]
fn a_saved_report_verifies_only_with_the_witnesses_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault(dir.path(), &c);
    let key = v.log_verifier_key();
    let ws = [
        (witness(wdir.path(), "w1.example", &key), true),
        (witness(wdir.path(), "w2.example", &key), true),
    ];
    let keys: Vec<String> = ws.iter().map(|(w, _)| w.verifier_key()).collect();
    let v = v.with_witnesses(policy(&ws, 2)).unwrap();
    collect(&v, "ingest", &person("s1", "m"));
    reads(&v, 2);
    v.cosign().unwrap();
    let officer = v.principal("officer").unwrap();
    let report = v.subject_report(&officer, "s1").unwrap();
    assert!(report.checkpoint_final);
    assert!(!report.log.is_empty());
    let json = serde_json::to_string(&report).unwrap();
    let ok = postvault::verify_report_offline(&json, &key, &keys, None).unwrap();
    assert_eq!(ok.leaves_verified, report.log.len());
    assert_eq!(ok.cosigners.len(), 2);
    assert_eq!(ok.quorum, 2);
    assert!(ok.witnessed);
    // One witness's key given twice, or under another name, counts once:
    // refused, never two cosignatures.
    let renamed = postvault_log::cosignature_verifier_key(
        "w3.example",
        &CosignatureVerifier::new(&keys[0]).unwrap().public_key(),
    );
    assert!(CosignatureVerifier::new(&renamed).is_ok());
    for twice in [
        vec![keys[0].clone(), keys[0].clone()],
        vec![keys[0].clone(), renamed],
    ] {
        assert!(matches!(
            postvault::verify_report_offline(&json, &key, &twice, Some(2)),
            Err(VaultError::Invalid { .. })
        ));
    }
    // A quorum of none with witnesses given is no check.
    assert!(matches!(
        postvault::verify_report_offline(&json, &key, &keys, Some(0)),
        Err(VaultError::Invalid { .. })
    ));
    let refused = |json: &str, log_key: &str| {
        matches!(
            postvault::verify_report_offline(json, log_key, &keys, None),
            Err(VaultError::LogVerification(_))
        )
    };
    // The log's signature alone: what a node could make of a second log.
    let mut bare = report.clone();
    bare.checkpoint = bare
        .checkpoint
        .lines()
        .filter(|l| !l.starts_with("— w"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        bare.checkpoint, report.checkpoint,
        "cosignature lines removed"
    );
    assert!(refused(&serde_json::to_string(&bare).unwrap(), &key));
    // ...which the log's key alone would accept, saying it checked no
    // witness: the witnesses are the check.
    let alone =
        postvault::verify_report_offline(&serde_json::to_string(&bare).unwrap(), &key, &[], None)
            .unwrap();
    assert!(!alone.witnessed);
    // A leaf altered.
    let mut altered = report.clone();
    let l = &mut altered.log[0];
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &l.leaf).unwrap();
    bytes[2] ^= 1;
    l.leaf = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    assert!(refused(&serde_json::to_string(&altered).unwrap(), &key));
    // Another log's key.
    let other = vault(tempfile::tempdir().unwrap().path(), &c).log_verifier_key();
    assert!(refused(&json, &other));
}
