#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::prelude::*;
use postvault_log::{
    Checkpoint, Hash, LogSigner, append_hashes, leaf_hash, parse_note, prove_consistency, tree_root,
};

use super::*;

const ORIGIN: &str = "example.com/log";

/// A log written here from the specifications: leaves, stored hashes,
/// signed checkpoints and hand-made request bodies.
struct Log {
    stored: Vec<Hash>,
    size: u64,
    signer: LogSigner,
}

impl Log {
    fn new() -> Log {
        Log {
            stored: Vec::new(),
            size: 0,
            signer: LogSigner::from_seed(ORIGIN, &[5; 32]).unwrap(),
        }
    }
    fn grow(&mut self, n: u64) {
        for _ in 0..n {
            let h = leaf_hash(format!("entry {}", self.size).as_bytes());
            for (_, x) in append_hashes(self.size, &[h], &self.stored).unwrap() {
                self.stored.push(x);
            }
            self.size += 1;
        }
    }
    fn note_at(&self, size: u64) -> String {
        let root = tree_root(size, &self.stored).unwrap();
        self.signer
            .sign(&Checkpoint::new(ORIGIN, size, root))
            .unwrap()
    }
    fn body(&self, old: u64, size: u64) -> Vec<u8> {
        let mut s = format!("old {old}\n");
        for h in prove_consistency(old, size, &self.stored).unwrap() {
            s += &format!("{}\n", BASE64_STANDARD.encode(h));
        }
        s += "\n";
        s += &self.note_at(size);
        s.into_bytes()
    }
}

fn witness(dir: &Path) -> Cosigner {
    Cosigner::create(&dir.join("witness.db"), "witness.example/w1").unwrap()
}

#[test]
fn every_status_of_add_checkpoint_and_the_state_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let mut log = Log::new();
    log.grow(10);
    // 404 until the log is followed.
    assert_eq!(
        w.add_checkpoint(&log.body(0, 10), 1).unwrap_err().status(),
        404
    );
    w.add_log(ORIGIN, &log.signer.verifier_key()).unwrap();
    // 400 malformed.
    assert_eq!(w.add_checkpoint(b"old x\n\n", 1).unwrap_err().status(), 400);
    // 403 signed by another key.
    let other = LogSigner::from_seed(ORIGIN, &[6; 32]).unwrap();
    let forged = format!(
        "old 0\n\n{}",
        other
            .sign(&Checkpoint::new(
                ORIGIN,
                10,
                tree_root(10, &log.stored).unwrap()
            ))
            .unwrap()
    );
    assert_eq!(
        w.add_checkpoint(forged.as_bytes(), 1).unwrap_err().status(),
        403
    );
    // 400 old size above the new.
    let above = format!("old 11\n\n{}", log.note_at(10));
    assert_eq!(
        w.add_checkpoint(above.as_bytes(), 1).unwrap_err().status(),
        400
    );
    // 200: the first checkpoint, old size 0.
    let line = w.add_checkpoint(&log.body(0, 10), 100).unwrap();
    assert!(line.starts_with("\u{2014} witness.example/w1 "));
    // 409 naming 10 for a stale old size; the same size again is fine.
    let e = w.add_checkpoint(&log.body(0, 10), 101).unwrap_err();
    assert_eq!(e.status(), 409);
    assert!(matches!(e, AddError::Refused(ref r) if r.conflict_size() == Some(10)));
    assert!(w.add_checkpoint(&log.body(10, 10), 102).is_ok());
    // 422: a proof that does not verify.
    log.grow(5);
    let mut bad = String::from_utf8(log.body(10, 15)).unwrap();
    let first = bad.lines().nth(1).unwrap().to_owned();
    bad = bad.replacen(&first, &BASE64_STANDARD.encode([1u8; 32]), 1);
    assert_eq!(
        w.add_checkpoint(bad.as_bytes(), 103).unwrap_err().status(),
        422
    );
    assert!(w.add_checkpoint(&log.body(10, 15), 104).is_ok());
    // 409 same size, another root (a fork signed by the log's key).
    let mut fork = Log::new();
    fork.grow(14);
    let h = leaf_hash(b"forked");
    for (_, x) in append_hashes(14, &[h], &fork.stored).unwrap() {
        fork.stored.push(x);
    }
    fork.size = 15;
    let e = w.add_checkpoint(&fork.body(15, 15), 105).unwrap_err();
    assert_eq!(e.status(), 409);
    // The state survives a restart: persisted before the answer.
    drop(w);
    let w = Cosigner::open(&dir.path().join("witness.db")).unwrap();
    let logs = w.logs().unwrap();
    assert_eq!(logs[0].size, Some(15));
    assert_eq!(logs[0].cosigned_at, Some(104));
    assert_eq!(
        w.add_checkpoint(&log.body(10, 15), 106)
            .unwrap_err()
            .status(),
        409
    );
}

#[test]
fn the_cosignature_verifies_with_an_independent_ed25519_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let mut log = Log::new();
    log.grow(3);
    w.add_log(ORIGIN, &log.signer.verifier_key()).unwrap();
    let line = w.add_checkpoint(&log.body(0, 3), 1_750_000_000).unwrap();
    let vkey = w.verifier_key();
    let key = BASE64_STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    assert_eq!(key[0], 0x04);
    let raw = BASE64_STANDARD
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    let text = parse_note(log.note_at(3).as_bytes()).unwrap().text;
    let msg = format!("cosignature/v1\ntime 1750000000\n{text}");
    UnparsedPublicKey::new(&ED25519, &key[1..])
        .verify(msg.as_bytes(), &raw[12..])
        .unwrap();
}

/// The race of tlog-witness: requests for sizes N and N+K checked against
/// the same old size at once. Whatever the interleaving, across two
/// connections, the state never goes back from N+K to N.
#[test]
fn concurrent_submissions_never_roll_the_witness_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("witness.db");
    let first = Cosigner::create(&path, "witness.example/w1").unwrap();
    let mut log = Log::new();
    log.grow(400);
    first.add_log(ORIGIN, &log.signer.verifier_key()).unwrap();
    let handles = [Arc::new(first), Arc::new(Cosigner::open(&path).unwrap())];
    let log = Arc::new(log);
    let mut held = 0u64;
    for round in 0..40u64 {
        let small = held + 1 + round % 3;
        let large = small + 1 + round % 5;
        let bodies = [log.body(held, small), log.body(held, large)];
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<(u64, Result<String, u16>)> = std::thread::scope(|s| {
            let js: Vec<_> = (0..2)
                .map(|i| {
                    let (w, b, body) = (handles[i].clone(), barrier.clone(), bodies[i].clone());
                    let size = [small, large][i];
                    s.spawn(move || {
                        b.wait();
                        (size, w.add_checkpoint(&body, round).map_err(|e| e.status()))
                    })
                })
                .collect();
            js.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let ok: Vec<u64> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| *s)
            .collect();
        // Exactly one wins the old size; the other is told the new size.
        assert_eq!(ok.len(), 1, "round {round}: {results:?}");
        for (_, r) in &results {
            if let Err(status) = r {
                assert_eq!(*status, 409);
            }
        }
        let state = handles[0].logs().unwrap()[0].size.unwrap();
        assert_eq!(state, ok[0], "the state is the cosigned size");
        assert!(state > held);
        held = state;
        // If the small one lost, resubmitting it now (from the large
        // size) is refused: the witness never goes back.
        if state == large {
            // (old above new: 400; from the old size: 409)
            assert_eq!(
                handles[1]
                    .add_checkpoint(
                        format!("old {large}\n\n{}", log.note_at(small)).as_bytes(),
                        round
                    )
                    .map_err(|e| e.status())
                    .err(),
                Some(400)
            );
        }
    }
}

#[test]
fn a_witness_database_is_private_and_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("witness.db");
    let w = Cosigner::create(&path, "w.example").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(matches!(
        Cosigner::create(&path, "w.example"),
        Err(WitnessError::AlreadyInitialized(_))
    ));
    let again = Cosigner::open(&path).unwrap();
    assert_eq!(again.verifier_key(), w.verifier_key());
    assert!(matches!(
        Cosigner::open(&dir.path().join("none.db")),
        Err(WitnessError::NotInitialized(_))
    ));
    assert!(Cosigner::create(&dir.path().join("x.db"), "bad name").is_err());
    assert!(w.add_log("o", "not a key").is_err());
    assert!(
        w.add_log(
            "",
            &LogSigner::from_seed("o", &[1; 32]).unwrap().verifier_key()
        )
        .is_err()
    );
}
