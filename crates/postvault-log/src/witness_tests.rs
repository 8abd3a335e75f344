//! The MUSTs of C2SP tlog-witness, tlog-cosignature/v1 and signed-note,
//! one test each, checked with code written from the specifications here
//! (request bodies built by hand, key IDs and Ed25519 signatures checked
//! with aws-lc-rs, an implementation independent of ed25519-dalek).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::prelude::*;
use proptest::prelude::*;

use crate::*;

const ORIGIN: &str = "example.com/test-log";

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().unwrap()
}

fn hex_id(name: &str, kind: u8, key: &[u8; 32]) -> u32 {
    let mut m = name.as_bytes().to_vec();
    m.push(b'\n');
    m.push(kind);
    m.extend_from_slice(key);
    let h = sha256(&m);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

fn witness_key(name: &str, seed: u8) -> CosignerKey {
    CosignerKey::from_bytes(name, &[seed; 32]).unwrap()
}

/// A log of `n` leaves, its stored hashes, and a signer.
struct TestLog {
    stored: Vec<Hash>,
    size: u64,
    signer: LogSigner,
}

impl TestLog {
    fn new(seed: u8) -> Self {
        TestLog {
            stored: Vec::new(),
            size: 0,
            signer: LogSigner::from_seed(ORIGIN, &[seed; 32]).unwrap(),
        }
    }

    fn grow(&mut self, n: u64) {
        for _ in 0..n {
            let h = leaf_hash(format!("leaf {}", self.size).as_bytes());
            for (i, x) in append_hashes(self.size, &[h], &self.stored).unwrap() {
                assert_eq!(i as usize, self.stored.len());
                self.stored.push(x);
            }
            self.size += 1;
        }
    }

    fn root(&self) -> Hash {
        tree_root(self.size, &self.stored).unwrap()
    }

    fn note(&self) -> String {
        self.signer
            .sign(&Checkpoint::new(ORIGIN, self.size, self.root()))
            .unwrap()
    }

    /// The body, written by hand from the specification.
    fn body(&self, old: u64) -> Vec<u8> {
        let proof = prove_consistency(old, self.size, &self.stored).unwrap();
        let mut s = format!("old {old}\n");
        for h in proof {
            s += &BASE64_STANDARD.encode(h);
            s += "\n";
        }
        s += "\n";
        s += &self.note();
        s.into_bytes()
    }

    fn trusted(&self) -> impl Fn(&str) -> Option<Vec<String>> + use<> {
        let vkey = self.signer.verifier_key();
        move |origin: &str| (origin == ORIGIN).then(|| vec![vkey.clone()])
    }
}

fn submit(
    log: &TestLog,
    body: &[u8],
    held: Option<WitnessedTree>,
) -> Result<WitnessedTree, Refusal> {
    open_submission(body, &log.trusted())?.check(held.as_ref())
}

// --- tlog-cosignature/v1 -------------------------------------------------

#[test]
fn the_signed_message_is_the_header_the_time_line_and_the_whole_checkpoint() {
    let body =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    assert_eq!(
        cosignature_message(body, 1679315147),
        "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
    assert_eq!(cosignature_message("a\n", 0), "cosignature/v1\ntime 0\na\n");
}

#[test]
fn a_cosignature_is_key_id_timestamp_and_signature_and_verifies_with_an_independent_ed25519() {
    let key = witness_key("witness.example/w1", 7);
    let mut log = TestLog::new(1);
    log.grow(5);
    let note = log.note();
    let text = parse_note(note.as_bytes()).unwrap().text;
    let line = key.cosign(&text, 1_700_000_000).unwrap();
    // `— <name> base64(...)\n`
    let rest = line.strip_prefix("\u{2014} witness.example/w1 ").unwrap();
    let raw = BASE64_STANDARD
        .decode(rest.strip_suffix('\n').unwrap())
        .unwrap();
    assert_eq!(raw.len(), 4 + 8 + 64);
    let public = key.public_key();
    // Key ID: SHA-256(name || 0x0A || 0x04 || key)[:4], big-endian.
    assert_eq!(
        u32::from_be_bytes(raw[..4].try_into().unwrap()),
        hex_id("witness.example/w1", 0x04, &public)
    );
    assert_eq!(
        u64::from_be_bytes(raw[4..12].try_into().unwrap()),
        1_700_000_000
    );
    let msg = format!("cosignature/v1\ntime 1700000000\n{text}");
    UnparsedPublicKey::new(&ED25519, public)
        .verify(msg.as_bytes(), &raw[12..])
        .expect("aws-lc-rs verifies the cosignature");
    // Not a signature over the text alone (domain separation).
    assert!(
        UnparsedPublicKey::new(&ED25519, public)
            .verify(text.as_bytes(), &raw[12..])
            .is_err()
    );
    // And our verifier agrees.
    let v = CosignatureVerifier::new(&key.verifier_key()).unwrap();
    assert_eq!(v.verify_line(&text, &line).unwrap(), 1_700_000_000);
}

#[test]
fn the_verifier_key_is_name_key_id_and_type_0x04_key() {
    let key = witness_key("witness.example/w1", 9);
    let vkey = key.verifier_key();
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts[0], "witness.example/w1");
    assert_eq!(
        u32::from_str_radix(parts[1], 16).unwrap(),
        hex_id("witness.example/w1", 0x04, &key.public_key())
    );
    let raw = BASE64_STANDARD.decode(parts[2]).unwrap();
    assert_eq!(raw[0], 0x04);
    assert_eq!(&raw[1..], &key.public_key());
    let v = CosignatureVerifier::new(&vkey).unwrap();
    assert_eq!(v.verifier_key(), vkey);
    assert_eq!(v.key_id(), key.key_id());

    // A log key (type 0x01) is not a cosigner key.
    let log_vkey = LogSigner::from_seed("witness.example/w1", &[9; 32])
        .unwrap()
        .verifier_key();
    assert!(CosignatureVerifier::new(&log_vkey).is_err());
    // A key ID that does not match, a bad name, a bad key.
    let wrong_id = format!("{}+{:08x}+{}", parts[0], key.key_id() ^ 1, parts[2]);
    assert!(CosignatureVerifier::new(&wrong_id).is_err());
    assert!(CosignatureVerifier::new(&vkey.replacen("witness.example/w1", "a b", 1)).is_err());
    assert!(CosignatureVerifier::new("x+00000000+BA==").is_err());
    // A small-order point (the identity) lets anyone forge.
    let mut weak = vec![0x04, 1];
    weak.extend_from_slice(&[0; 31]);
    let weak_pk: [u8; 32] = weak[1..].try_into().unwrap();
    let weak = format!(
        "w+{:08x}+{}",
        hex_id("w", 4, &weak_pk),
        BASE64_STANDARD.encode(&weak)
    );
    assert!(CosignatureVerifier::new(&weak).is_err());
}

#[test]
fn timestamps_above_2_63_minus_1_are_neither_made_nor_accepted() {
    let key = witness_key("w", 3);
    assert!(key.cosign("a\nb\n", 1 << 63).is_err());
    assert!(key.cosign("a\nb\n", MAX_TIMESTAMP).is_ok());
    // A forged line claiming a timestamp of 2^63: refused before any check.
    let v = CosignatureVerifier::new(&key.verifier_key()).unwrap();
    let mut sig = (1u64 << 63).to_be_bytes().to_vec();
    sig.extend_from_slice(&[0; 64]);
    let line = NoteSignature {
        name: "w".into(),
        key_id: key.key_id(),
        signature: sig,
    };
    assert!(v.verify("a\nb\n", &line).is_err());
}

#[test]
fn clients_ignore_unknown_cosigners_and_reject_a_bad_known_one() {
    let mut log = TestLog::new(1);
    log.grow(3);
    let note = log.note();
    let text = parse_note(note.as_bytes()).unwrap().text;
    let w1 = witness_key("w1.example", 1);
    let w2 = witness_key("w2.example", 2);
    let stranger = witness_key("w3.example", 3);
    let cosigned = format!(
        "{note}{}{}{}",
        w1.cosign(&text, 10).unwrap(),
        stranger.cosign(&text, 11).unwrap(),
        w2.cosign(&text, 12).unwrap()
    );
    let vs: Vec<CosignatureVerifier> = [&w1, &w2]
        .iter()
        .map(|k| CosignatureVerifier::new(&k.verifier_key()).unwrap())
        .collect();
    let got = verify_cosigned(&cosigned, &log.signer.verifier_key(), &vs).unwrap();
    assert_eq!(got.checkpoint.size, 3);
    let who: Vec<_> = got.cosigned.iter().map(|c| c.timestamp).collect();
    assert_eq!(who, vec![10, 12]);
    // Same name and ID as w2 but another key: w2's line fails, so the note fails.
    let impostor = CosignerKey::from_bytes("w2.example", &[2; 32]).unwrap();
    let mut forged_sig = parse_signature_line(&impostor.cosign("other\n", 12).unwrap()).unwrap();
    forged_sig.key_id = w2.key_id();
    let forged = format!("{note}{}", forged_sig.to_line());
    assert!(verify_cosigned(&forged, &log.signer.verifier_key(), &vs).is_err());
    // A cosignature does not stand in for the log's own signature.
    let only_cosigned = format!("{}\n{}", text, w1.cosign(&text, 10).unwrap());
    assert!(verify_cosigned(&only_cosigned, &log.signer.verifier_key(), &vs).is_err());
}

/// The cosignatures alone, once the log's signature was checked: the same
/// answer as `verify_cosigned`, a bad known line still fails the note, and
/// a checkpoint that is not the note's own is refused.
#[test]
fn cosignatures_alone_need_the_notes_own_checkpoint() {
    let mut log = TestLog::new(1);
    log.grow(3);
    let note = log.note();
    let older = open_checkpoint(&note, &log.signer.verifier_key()).unwrap();
    log.grow(2);
    let note = log.note();
    let text = parse_note(note.as_bytes()).unwrap().text;
    let w1 = witness_key("w1.example", 1);
    let cosigned = format!("{note}{}", w1.cosign(&text, 10).unwrap());
    let vs = vec![CosignatureVerifier::new(&w1.verifier_key()).unwrap()];
    let cp = open_checkpoint(&cosigned, &log.signer.verifier_key()).unwrap();
    assert_eq!(
        verify_cosignatures(&cosigned, cp.clone(), &vs).unwrap(),
        verify_cosigned(&cosigned, &log.signer.verifier_key(), &vs).unwrap()
    );
    // Another note's checkpoint (the log at 3 leaves, not 5).
    assert_ne!(older, cp);
    assert!(matches!(
        verify_cosignatures(&cosigned, older, &vs),
        Err(LogError::MalformedNote(_))
    ));
    // A known witness's line that does not verify still fails the note.
    let other = format!("{note}{}", w1.cosign("other\n", 10).unwrap());
    assert!(verify_cosignatures(&other, cp, &vs).is_err());
}

// --- tlog-witness: the request body ---------------------------------------

#[test]
fn the_request_body_is_old_size_proof_lines_blank_line_checkpoint() {
    let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    let body = format!(
        "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\n{note}"
    );
    let req = parse_add_checkpoint(body.as_bytes()).unwrap();
    assert_eq!(req.old_size, 20852014);
    assert_eq!(req.proof.len(), 2);
    assert_eq!(
        BASE64_STANDARD.encode(req.proof[1]),
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk="
    );
    assert_eq!(req.checkpoint, note);
    assert_eq!(req.to_bytes(), body.as_bytes());
    // No proof at all.
    let empty = format!("old 0\n\n{note}");
    assert_eq!(
        parse_add_checkpoint(empty.as_bytes()).unwrap().proof.len(),
        0
    );
}

#[test]
fn malformed_request_bodies_are_refused() {
    let note = "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} o AAAAAAAA\n";
    let line = BASE64_STANDARD.encode([7u8; 32]);
    let too_many = format!("old 1\n{}\n{note}", format!("{line}\n").repeat(64));
    let just_enough = format!("old 1\n{}\n{note}", format!("{line}\n").repeat(63));
    assert_eq!(
        parse_add_checkpoint(just_enough.as_bytes())
            .unwrap()
            .proof
            .len(),
        63
    );
    for bad in [
        format!("old 01\n\n{note}"),                  // leading zero
        format!("old -1\n\n{note}"),                  // not a decimal
        format!("old 1 \n\n{note}"),                  // trailing space
        format!("Old 1\n\n{note}"),                   // not `old`
        format!("old  1\n\n{note}"),                  // two spaces
        format!("old 9223372036854775808\n\n{note}"), // above 2^63 - 1
        format!("old 1\n{line}\n{note}"),             // no blank line: the note is taken for proof
        format!("old 1\nnot base64\n\n{note}"),
        format!("old 1\n{}\n\n{note}", BASE64_STANDARD.encode([1u8; 31])),
        "old 1".to_string(), // no newline
        too_many,
    ] {
        assert!(parse_add_checkpoint(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(parse_add_checkpoint(&[0xff, b'\n']).is_err());
}

#[test]
fn a_409_body_is_the_size_in_decimal_and_a_newline() {
    assert_eq!(format_tlog_size(0), "0\n");
    assert_eq!(format_tlog_size(20852163), "20852163\n");
    assert_eq!(parse_tlog_size(b"20852163\n").unwrap(), 20852163);
    for bad in [&b"20852163"[..], b"020\n", b" 1\n", b"1\n\n", b"", b"x\n"] {
        assert!(parse_tlog_size(bad).is_err(), "{bad:?}");
    }
}

// --- tlog-witness: the witness's decision, status by status ---------------

#[test]
fn an_unknown_origin_is_404() {
    let mut log = TestLog::new(1);
    log.grow(2);
    let r = open_submission(&log.body(0), &|_: &str| None).unwrap_err();
    assert_eq!((r.status(), r), (404, Refusal::UnknownOrigin));
}

#[test]
fn no_signature_by_a_trusted_key_is_403_and_unknown_signatures_are_ignored() {
    let mut log = TestLog::new(1);
    log.grow(2);
    // Signed by another key of the same name: unknown, ignored, none left.
    let other = TestLog {
        signer: LogSigner::from_seed(ORIGIN, &[2; 32]).unwrap(),
        stored: log.stored.clone(),
        size: log.size,
    };
    let r = open_submission(&other.body(0), &log.trusted()).unwrap_err();
    assert_eq!(r.status(), 403);
    // The trusted signature plus unknown ones (a witness's cosignature, a
    // second log key): accepted.
    let w = witness_key("w.example", 4);
    let text = parse_note(log.note().as_bytes()).unwrap().text;
    let extra = format!(
        "{}{}",
        w.cosign(&text, 1).unwrap(),
        other.note().lines().last().unwrap().to_owned() + "\n"
    );
    let body = [log.body(0), extra.into_bytes()].concat();
    let s = open_submission(&body, &log.trusted()).unwrap();
    assert_eq!(s.checkpoint.size, 2);
    // A tampered signature by the trusted key: 403.
    let mut bad = log.body(0);
    let n = bad.len();
    bad[n - 3] = if bad[n - 3] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        open_submission(&bad, &log.trusted()).unwrap_err().status(),
        403
    );
}

#[test]
fn an_old_size_above_the_checkpoint_is_400() {
    let mut log = TestLog::new(1);
    log.grow(4);
    let body = format!("old 5\n\n{}", log.note());
    let r = open_submission(body.as_bytes(), &log.trusted()).unwrap_err();
    assert_eq!(r.status(), 400);
    assert_eq!(r, Refusal::OldSizeAboveNew { old: 5, size: 4 });
}

#[test]
fn a_stale_old_size_is_409_naming_the_size_held() {
    let mut log = TestLog::new(1);
    log.grow(4);
    let held = submit(&log, &log.body(0), None).unwrap();
    assert_eq!(held.size, 4);
    log.grow(3);
    // The client thinks the witness holds 2, or nothing.
    for old in [0, 2, 5] {
        let r = submit(&log, &log.body(old), Some(held)).unwrap_err();
        assert_eq!(r.status(), 409, "old {old}");
        assert_eq!(r.conflict_size(), Some(4));
    }
    // A fresh witness holds 0: any other old size is 409 naming 0.
    let r = submit(&log, &log.body(4), None).unwrap_err();
    assert_eq!((r.status(), r.conflict_size()), (409, Some(0)));
    // With the right old size it extends.
    assert_eq!(submit(&log, &log.body(4), Some(held)).unwrap().size, 7);
}

#[test]
fn the_same_size_with_another_root_is_409() {
    let mut log = TestLog::new(1);
    log.grow(4);
    let held = submit(&log, &log.body(0), None).unwrap();
    // The same size again, same root: cosigned again.
    assert_eq!(submit(&log, &log.body(4), Some(held)).unwrap(), held);
    // A fork of the same size, signed by the same log key.
    let mut fork = TestLog::new(1);
    fork.grow(3);
    let h = leaf_hash(b"another leaf");
    for (_, x) in append_hashes(3, &[h], &fork.stored).unwrap() {
        fork.stored.push(x);
    }
    fork.size = 4;
    let r = submit(&log, &fork.body(4), Some(held)).unwrap_err();
    assert_eq!((r.status(), r), (409, Refusal::RootMismatch { size: 4 }));
}

#[test]
fn a_bad_consistency_proof_is_422_and_the_old_root_is_the_witness_s() {
    let mut log = TestLog::new(1);
    log.grow(4);
    let held = submit(&log, &log.body(0), None).unwrap();
    log.grow(5);
    // A proof with a hash changed.
    let body = String::from_utf8(log.body(4)).unwrap();
    let first = body.lines().nth(1).unwrap().to_owned();
    let tampered = body.replacen(&first, &BASE64_STANDARD.encode([0u8; 32]), 1);
    let r = submit(&log, tampered.as_bytes(), Some(held)).unwrap_err();
    assert_eq!((r.status(), r), (422, Refusal::BadProof));
    // The right proof, but the witness holds another root of size 4.
    let other = WitnessedTree {
        size: 4,
        root: [9; 32],
    };
    assert_eq!(
        submit(&log, &log.body(4), Some(other))
            .unwrap_err()
            .status(),
        422
    );
    // A proof where none belongs (old size 0).
    let fresh = TestLog::new(1);
    let mut grown = fresh;
    grown.grow(3);
    let with_proof = format!(
        "old 0\n{}\n\n{}",
        BASE64_STANDARD.encode([1u8; 32]),
        grown.note()
    );
    assert_eq!(
        submit(&grown, with_proof.as_bytes(), None)
            .unwrap_err()
            .status(),
        422
    );
    assert_eq!(submit(&log, &log.body(4), Some(held)).unwrap().size, 9);
}

#[test]
fn an_empty_tree_must_have_the_empty_root() {
    let log = TestLog::new(1);
    assert_eq!(submit(&log, &log.body(0), None).unwrap().size, 0);
    let bad = log
        .signer
        .sign(&Checkpoint::new(ORIGIN, 0, [1; 32]))
        .unwrap();
    let body = format!("old 0\n\n{bad}");
    assert_eq!(
        submit(&log, body.as_bytes(), None).unwrap_err().status(),
        422
    );
}

#[test]
fn a_malformed_checkpoint_is_400() {
    let log = TestLog::new(1);
    for bad in [
        "old 0\n\nnot a note".to_string(),
        "old 0\n\norigin\nx\nroot\n\n\u{2014} origin AAAAAAAA\n".to_string(),
        format!("old 0\n\n{}", log.note().replace('\u{2014}', "-")),
    ] {
        let r = open_submission(bad.as_bytes(), &log.trusted()).unwrap_err();
        assert_eq!(r.status(), 400, "{bad:?}");
    }
}

#[test]
fn the_root_builder_equals_the_tree_root() {
    let mut log = TestLog::new(1);
    let mut b = RootBuilder::new();
    assert_eq!(b.root(), EMPTY_ROOT);
    for _ in 0..300 {
        b.push(leaf_hash(format!("leaf {}", log.size).as_bytes()));
        log.grow(1);
        assert_eq!(b.root(), log.root(), "size {}", log.size);
        assert_eq!(b.size(), log.size);
    }
}

#[test]
fn notes_come_apart_into_text_and_signature_lines() {
    let mut log = TestLog::new(1);
    log.grow(2);
    let note = log.note();
    let w = witness_key("w.example", 1);
    let parsed = parse_note(note.as_bytes()).unwrap();
    let line = w.cosign(&parsed.text, 5).unwrap();
    let both = parse_note(format!("{note}{line}").as_bytes()).unwrap();
    assert_eq!(both.text, parsed.text);
    assert_eq!(both.signatures.len(), 2);
    assert_eq!(both.signatures[1].to_line(), line);
    assert_eq!(parse_signature_lines(&line, 16).unwrap().len(), 1);
    assert!(parse_signature_lines(&line.repeat(3), 2).is_err());
    assert!(parse_signature_lines("", 2).is_err());
    assert!(parse_note(b"text\n\n").is_err());
    // A signed note must accept at least 16 signatures.
    let many = format!("{note}{}", line.repeat(16));
    assert_eq!(parse_note(many.as_bytes()).unwrap().signatures.len(), 17);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_add_checkpoint(&bytes);
        let _ = parse_note(&bytes);
        let _ = parse_tlog_size(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_signature_line(&s);
        let _ = parse_signature_lines(&s, 16);
        let _ = CosignatureVerifier::new(&s);
        let _ = open_submission(&bytes, &|_: &str| Some(vec![s.to_string()]));
    }

    #[test]
    fn structured_bodies_never_panic(
        old in any::<u64>(),
        lines in proptest::collection::vec("[A-Za-z0-9+/=]{0,50}", 0..5),
        note in "[a-z/]{1,10}\n[0-9]{1,20}\n[A-Za-z0-9+/=]{0,50}\n(\n\u{2014} [a-z]{1,5} [A-Za-z0-9+/=]{0,100}\n)?",
    ) {
        let body = format!("old {old}\n{}\n{note}", lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        let _ = parse_add_checkpoint(body.as_bytes());
        let mut log = TestLog::new(1);
        log.grow(3);
        if let Ok(s) = open_submission(body.as_bytes(), &log.trusted()) {
            let _ = s.check(None);
            let _ = s.check(Some(&WitnessedTree { size: old, root: [0; 32] }));
        }
    }
}
