//! The conformance suite every [`Store`] and [`KeyStore`] backend must pass.
//! Each check takes a fresh, empty store and panics on a violation; a
//! backend's tests call [`run_all`] (and [`run_all_keys`]) with a factory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{
    AccountingRow, ConsentRow, DisclosureRow, DisclosureStep, HoldRow, KeyStore, LookupRow,
    PrincipalRow, ReadScope, RecordRow, Store, StoreError, SubjectData, SubjectKeys, SubmitQuery,
    WriteBatch,
};

fn record(subject: u8, n: u8, category: &str) -> RecordRow {
    RecordRow {
        id: [n; 16],
        subject: [subject; 16],
        category: category.into(),
        purpose: "delivery".into(),
        source: "svc".into(),
        collected_at: 1_000 + i64::from(n),
        expires_at: 9_000,
        key_id: 0,
        sealed: vec![n, subject, 0xAA],
        superseded_by: None,
    }
}

fn leaf_body(idx: u64, i: usize) -> Vec<u8> {
    format!("leaf {idx} #{i}").into_bytes()
}

/// Runs every data-store check, each on a fresh store from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    write_then_read_accounts_each(&*fresh());
    unknown_subject_still_leaves_a_leaf(&*fresh());
    failed_batch_leaves_nothing(&*fresh());
    consents_keep_the_latest(&*fresh());
    lookups_find_subjects(&*fresh());
    principals_are_unique(&*fresh());
    principals_rotate_and_revoke(&*fresh());
    scoped_reads_touch_only_what_they_may(&*fresh());
    leaves_are_dense_and_ordered(&*fresh());
    meta_round_trips(&*fresh());
    log_hashes_advance_only_from_their_size(&*fresh());
    checkpoints_are_kept_by_size(&*fresh());
    cosignatures_are_kept_per_checkpoint_and_cosigner(&*fresh());
    disclosures_count_quotas_and_reuse_in_their_transaction(&*fresh());
    disclosure_steps_read_write_and_account_atomically(&*fresh());
    erasure_deletes_rows_spares_holds_and_fences_writes(&*fresh());
    sweeps_delete_only_what_expired_and_is_not_held(&*fresh());
    rekey_replaces_ciphertext_in_place(&*fresh());
    corrections_keep_history_once(&*fresh());
    runs_commit_progress_with_their_batches_and_refuse_a_second_writer(&*fresh());
    intents_are_written_ahead_counted_and_completed_once(&*fresh());
    key_usage_and_record_subjects_count_what_keys_seal(&*fresh());
    crate::stats::conformance::budget_spends_check_and_account_atomically(&*fresh());
    crate::stats::conformance::concurrent_spends_never_overspend(&*fresh());
    crate::stats::conformance::category_records_come_person_by_person(&*fresh());
}

/// Runs every key-store check on a fresh key store from `fresh`.
pub fn run_all_keys(fresh: &dyn Fn() -> Box<dyn KeyStore>) {
    subject_keys_are_kept_once(&*fresh());
    secrets_are_write_once(&*fresh());
    secrets_can_be_destroyed(&*fresh());
    secrets_are_listed_raced_and_destroyed_in_batches(&*fresh());
    rewrap_changes_every_key_in_one_transaction(&*fresh());

    log_state_swaps_only_from_the_state_expected(&*fresh());
}

pub fn write_then_read_accounts_each(s: &dyn Store) {
    let batch = WriteBatch {
        records: vec![
            record(1, 1, "address"),
            record(1, 2, "scan_event"),
            record(2, 3, "address"),
        ],
        leaves: 1,
        ..WriteBatch::default()
    };
    let first = s.write(&batch, &mut leaf_body).unwrap();
    assert_eq!(first, 0);
    assert_eq!(s.record_count().unwrap(), 3);
    let (data, idx) = s
        .read_accounted(&[1; 16], &mut |d, idx| {
            format!("read {} at {idx}", d.records.len()).into_bytes()
        })
        .unwrap();
    assert!(data.exists);
    assert_eq!(idx, 1);
    assert_eq!(
        data.records,
        vec![record(1, 1, "address"), record(1, 2, "scan_event")]
    );
    assert_eq!(s.log_size().unwrap(), 2);
    assert_eq!(s.leaves(1, 2).unwrap(), vec![b"read 2 at 1".to_vec()]);
}

pub fn unknown_subject_still_leaves_a_leaf(s: &dyn Store) {
    let (data, idx) = s
        .read_accounted(&[9; 16], &mut |d, _| vec![u8::from(d.exists)])
        .unwrap();
    assert!(!data.exists);
    assert!(data.records.is_empty());
    assert_eq!(idx, 0);
    assert_eq!(s.leaves(0, 10).unwrap(), vec![vec![0u8]]);
}

pub fn failed_batch_leaves_nothing(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    // A leaf callback that panics midway must not leave half a batch.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.write(
            &WriteBatch {
                records: vec![record(3, 7, "address")],
                leaves: 2,
                ..WriteBatch::default()
            },
            &mut |idx, i| {
                assert!(i == 0, "leaf callback failure injected");
                leaf_body(idx, i)
            },
        )
    }));
    assert!(r.is_err());
    assert_eq!(s.record_count().unwrap(), 1);
    assert_eq!(s.log_size().unwrap(), 1);
    let (data, _) = s.read_accounted(&[3; 16], &mut |_, _| vec![]).unwrap();
    assert!(!data.exists);
}

pub fn consents_keep_the_latest(s: &dyn Store) {
    let c = |granted, at| ConsentRow {
        subject: [1; 16],
        purpose: "marketing".into(),
        granted,
        at,
    };
    for (granted, at) in [(true, 10), (false, 20), (true, 15)] {
        s.write(
            &WriteBatch {
                consents: vec![c(granted, at)],
                leaves: 1,
                ..WriteBatch::default()
            },
            &mut leaf_body,
        )
        .unwrap();
    }
    let (data, _) = s.read_accounted(&[1; 16], &mut |_, _| vec![]).unwrap();
    assert_eq!(data.consents, vec![c(false, 20)]);
}

/// A scoped read hands over only what its scope allows, each with its leaf:
/// nothing under `LeafOnly`; under `IfConsented` the person's data only
/// while that consent is granted.
pub fn scoped_reads_touch_only_what_they_may(s: &dyn Store) {
    let c = |granted, at| ConsentRow {
        subject: [1; 16],
        purpose: "marketing".into(),
        granted,
        at,
    };
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address"), record(1, 2, "scan_event")],
            consents: vec![c(false, 5)],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let read = |scope| {
        let (d, idx) = s
            .read_scoped(&[1; 16], scope, &mut |d, idx| {
                format!("{} records at {idx}", d.records.len()).into_bytes()
            })
            .unwrap();
        assert_eq!(s.leaves(idx, idx + 1).unwrap().len(), 1);
        d
    };
    assert_eq!(read(ReadScope::LeafOnly), SubjectData::default());
    assert_eq!(
        read(ReadScope::IfConsented("marketing")),
        SubjectData::default()
    );
    assert_eq!(
        read(ReadScope::IfConsented("statistics")),
        SubjectData::default()
    );
    assert_eq!(s.consent(&[1; 16], "marketing").unwrap(), Some(c(false, 5)));
    assert_eq!(s.consent(&[2; 16], "marketing").unwrap(), None);
    s.write(
        &WriteBatch {
            consents: vec![c(true, 6)],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let d = read(ReadScope::IfConsented("marketing"));
    assert_eq!(d.records.len(), 2);
    assert_eq!(d.consents, vec![c(true, 6)]);
    assert_eq!(read(ReadScope::LeafOnly), SubjectData::default());
    assert_eq!(read(ReadScope::All).records.len(), 2);
    assert_eq!(s.log_size().unwrap(), 8);
}

pub fn lookups_find_subjects(s: &dyn Store) {
    let l = |token: u8, subject: u8, record: u8| LookupRow {
        token: [token; 16],
        subject: [subject; 16],
        record: [record; 16],
    };
    s.write(
        &WriteBatch {
            records: vec![
                record(1, 1, "account_identity"),
                record(2, 2, "account_identity"),
            ],
            lookups: vec![l(7, 1, 1), l(8, 2, 2), l(7, 2, 2)],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    assert_eq!(s.lookup(&[7; 16]).unwrap(), vec![[1; 16], [2; 16]]);
    assert_eq!(s.lookup(&[8; 16]).unwrap(), vec![[2; 16]]);
    assert!(s.lookup(&[9; 16]).unwrap().is_empty());
}

pub fn principals_are_unique(s: &dyn Store) {
    let p = PrincipalRow {
        name: "sorting-svc".into(),
        role: "delivery".into(),
        token_hash: vec![1, 2, 3],
        created_at: 1,
        revoked_at: None,
    };
    s.add_principal(&p).unwrap();
    assert!(matches!(
        s.add_principal(&p),
        Err(StoreError::PrincipalExists(n)) if n == "sorting-svc"
    ));
    assert_eq!(s.principal("sorting-svc").unwrap(), Some(p.clone()));
    assert_eq!(s.principal("nobody").unwrap(), None);
    assert_eq!(s.principals().unwrap(), vec![p]);
}

/// Tokens are found by their hash, rotated and revoked, each step with its
/// one leaf and a new principals generation; a revoked principal's name
/// stays taken.
pub fn principals_rotate_and_revoke(s: &dyn Store) {
    let p = |name: &str, hash: u8| PrincipalRow {
        name: name.into(),
        role: "delivery".into(),
        token_hash: vec![hash; 32],
        created_at: 1,
        revoked_at: None,
    };
    s.add_principal(&p("a", 1)).unwrap();
    s.add_principal(&p("b", 2)).unwrap();
    // One token hash, one principal.
    assert!(s.add_principal(&p("c", 1)).is_err());
    assert_eq!(s.principal_by_token(&[1; 32]).unwrap(), Some(p("a", 1)));
    assert_eq!(s.principal_by_token(&[9; 32]).unwrap(), None);
    let g0 = s.principals_gen().unwrap();
    let size = s.log_size().unwrap();

    let idx = s.rotate_principal("a", &[3; 32], &mut leaf_body).unwrap();
    assert_eq!((idx, s.log_size().unwrap()), (size, size + 1));
    assert!(s.principals_gen().unwrap() > g0);
    assert_eq!(s.principal_by_token(&[1; 32]).unwrap(), None);
    assert_eq!(s.principal_by_token(&[3; 32]).unwrap(), Some(p("a", 3)));

    let g1 = s.principals_gen().unwrap();
    let idx = s.revoke_principal("b", 7, &mut leaf_body).unwrap();
    assert_eq!(idx, size + 1);
    assert!(s.principals_gen().unwrap() > g1);
    assert_eq!(s.principal_by_token(&[2; 32]).unwrap(), None);
    assert_eq!(s.principal("b").unwrap().unwrap().revoked_at, Some(7));
    assert!(matches!(
        s.add_principal(&p("b", 4)),
        Err(StoreError::PrincipalExists(_))
    ));
    // Neither step applies to a revoked or unknown principal, and a refused
    // step writes nothing.
    let g2 = s.principals_gen().unwrap();
    for r in [
        s.revoke_principal("b", 8, &mut leaf_body),
        s.rotate_principal("b", &[5; 32], &mut leaf_body),
        s.revoke_principal("nobody", 8, &mut leaf_body),
        s.rotate_principal("nobody", &[6; 32], &mut leaf_body),
    ] {
        assert!(matches!(r, Err(StoreError::PrincipalNotActive(_))));
    }
    assert_eq!(s.log_size().unwrap(), size + 2);
    assert_eq!(s.principals_gen().unwrap(), g2);
    assert_eq!(s.principal_by_token(&[5; 32]).unwrap(), None);
}

pub fn leaves_are_dense_and_ordered(s: &dyn Store) {
    for _ in 0..3 {
        s.append_leaves(4, &mut leaf_body).unwrap();
    }
    assert_eq!(s.log_size().unwrap(), 12);
    let all = s.leaves(0, 100).unwrap();
    assert_eq!(all.len(), 12);
    for (i, l) in all.iter().enumerate() {
        assert_eq!(l, &leaf_body(i as u64, i % 4));
    }
    assert_eq!(s.leaves(5, 7).unwrap(), all[5..7].to_vec());
    assert!(s.leaves(12, 20).unwrap().is_empty());
}

pub fn meta_round_trips(s: &dyn Store) {
    assert_eq!(s.meta("vault_id").unwrap(), None);
    s.set_meta("vault_id", "a").unwrap();
    s.set_meta("vault_id", "b").unwrap();
    assert_eq!(s.meta("vault_id").unwrap().as_deref(), Some("b"));
}

pub fn subject_keys_are_kept_once(k: &dyn KeyStore) {
    let a = SubjectKeys {
        subject: [1; 16],
        data: vec![1; 60],
        tag: vec![2; 60],
    };
    let replacement = SubjectKeys {
        data: vec![9; 60],
        ..a.clone()
    };
    assert!(
        k.put_subject_keys(std::slice::from_ref(&a))
            .unwrap()
            .is_empty()
    );
    assert_eq!(k.put_subject_keys(&[replacement]).unwrap(), vec![[1; 16]]);
    assert_eq!(k.subject_keys(&[1; 16]).unwrap(), Some(a));
    assert_eq!(k.subject_keys(&[2; 16]).unwrap(), None);
}

pub fn secrets_are_write_once(k: &dyn KeyStore) {
    k.put_secret("master", b"k1").unwrap();
    assert!(matches!(
        k.put_secret("master", b"k2"),
        Err(StoreError::SecretExists(_))
    ));
    assert_eq!(k.secret("master").unwrap(), Some(b"k1".to_vec()));
    assert_eq!(k.secret("other").unwrap(), None);
}

pub fn log_hashes_advance_only_from_their_size(s: &dyn Store) {
    assert_eq!(s.hashed_size().unwrap(), 0);
    assert!(
        s.put_log_hashes(0, 2, &[(0, [1; 32]), (1, [2; 32]), (2, [3; 32])])
            .unwrap()
    );
    assert_eq!(s.hashed_size().unwrap(), 2);
    // A stale writer is refused and writes nothing.
    assert!(!s.put_log_hashes(0, 1, &[(0, [9; 32])]).unwrap());
    assert_eq!(s.log_hashes(&[2, 0]).unwrap(), vec![[3; 32], [1; 32]]);
    assert!(matches!(s.log_hashes(&[3]), Err(StoreError::Corrupt(_))));
    assert!(s.put_log_hashes(2, 3, &[(3, [4; 32])]).unwrap());
    assert_eq!(s.hashed_size().unwrap(), 3);
}

pub fn checkpoints_are_kept_by_size(s: &dyn Store) {
    assert_eq!(s.latest_checkpoint().unwrap(), None);
    s.put_checkpoint(5, "five").unwrap();
    s.put_checkpoint(9, "nine").unwrap();
    s.put_checkpoint(5, "other five").unwrap();
    assert_eq!(
        s.latest_checkpoint().unwrap(),
        Some((9, "nine".to_string()))
    );
    assert_eq!(
        s.checkpoints().unwrap(),
        vec![(5, "five".to_string()), (9, "nine".to_string())]
    );
    assert_eq!(s.checkpoint_note(5).unwrap().as_deref(), Some("five"));
    assert_eq!(s.checkpoint_note(7).unwrap(), None);
}

pub fn cosignatures_are_kept_per_checkpoint_and_cosigner(s: &dyn Store) {
    let line = |w: &str, n: u64| (w.to_string(), format!("\u{2014} {w} line-{n}\n"));
    assert_eq!(s.latest_cosigned(&["a".into()], 1).unwrap(), None);
    assert_eq!(s.cosigned_by("a").unwrap(), None);
    s.put_cosignatures(5, &[line("a", 1), line("b", 1)])
        .unwrap();
    s.put_cosignatures(9, &[line("a", 2)]).unwrap();
    s.put_cosignatures(5, &[line("a", 3)]).unwrap();
    assert_eq!(s.cosignatures(5).unwrap(), vec![line("a", 3), line("b", 1)]);
    assert_eq!(s.cosignatures(7).unwrap(), vec![]);
    let ab = ["a".to_string(), "b".to_string()];
    assert_eq!(s.latest_cosigned(&ab, 1).unwrap(), Some(9));
    assert_eq!(s.latest_cosigned(&ab, 2).unwrap(), Some(5));
    assert_eq!(s.latest_cosigned(&ab, 3).unwrap(), None);
    assert_eq!(s.latest_cosigned(&["b".into()], 1).unwrap(), Some(5));
    assert_eq!(s.latest_cosigned(&[], 0).unwrap(), None);
    assert_eq!(s.cosigned_by("a").unwrap(), Some(9));
    assert_eq!(s.cosigned_by("c").unwrap(), None);
}

pub fn log_state_swaps_only_from_the_state_expected(k: &dyn KeyStore) {
    use crate::{LogState, LogStateSwap};
    let state = |size: u64, signed: u64| LogState {
        size,
        root: [size as u8; 32],
        note: format!("note {size}\n"),
        signed,
    };
    assert_eq!(k.log_state().unwrap(), None);
    assert_eq!(
        k.swap_log_state(None, &state(5, 1)).unwrap(),
        LogStateSwap::Swapped
    );
    assert_eq!(k.log_state().unwrap(), Some(state(5, 1)));
    // A second signer that also read "nothing yet" loses.
    assert_eq!(
        k.swap_log_state(None, &state(6, 1)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    // So does one that read an older or another state.
    assert_eq!(
        k.swap_log_state(Some(&state(4, 1)), &state(9, 2)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    let mut other_root = state(5, 1);
    other_root.root = [0; 32];
    assert_eq!(
        k.swap_log_state(Some(&other_root), &state(9, 2)).unwrap(),
        LogStateSwap::Changed(Some(state(5, 1)))
    );
    assert_eq!(
        k.swap_log_state(Some(&state(5, 1)), &state(9, 2)).unwrap(),
        LogStateSwap::Swapped
    );
    assert_eq!(k.log_state().unwrap(), Some(state(9, 2)));
}

pub fn secrets_can_be_destroyed(k: &dyn KeyStore) {
    k.put_secret("cover:1", b"key").unwrap();
    assert!(k.delete_secret("cover:1").unwrap());
    assert_eq!(k.secret("cover:1").unwrap(), None);
    assert!(!k.delete_secret("cover:1").unwrap());
}

fn request(requester: &str, at: i64, instrument: u8, case: u8, status: &str) -> DisclosureRow {
    DisclosureRow {
        id: format!("d-{requester}-{at}-{instrument}"),
        requester: requester.into(),
        kind: "warrant".into(),
        ground: "criminal_law_enforcement".into(),
        instrument_key: Some([instrument; 16]),
        case_key: Some([case; 16]),
        subjects: vec![[7; 16]],
        portions: vec!["address".into(), "scan_event".into()],
        status: status.into(),
        reasons: vec![],
        alerts: vec![],
        submitted_at: at,
        retain_until: at + 10,
        sealed: vec![1, 2, 3],
        ..DisclosureRow::default()
    }
}

fn submit(s: &dyn Store, row: DisclosureRow, now: i64) -> (crate::SubmitFacts, DisclosureRow) {
    let q = SubmitQuery {
        requester: row.requester.clone(),
        instrument_key: row.instrument_key,
        case_key: row.case_key,
        since_24h: now - 100,
        since_30d: now - 1_000,
        subjects: row.subjects.clone(),
    };
    let mut seen = None;
    let (stored, _) = s
        .submit_disclosure(&q, &mut |facts, data, idx| {
            assert_eq!(data.len(), q.subjects.len());
            seen = Some(*facts);
            (row.clone(), format!("submit {idx}").into_bytes())
        })
        .unwrap();
    (seen.unwrap(), stored)
}

pub fn disclosures_count_quotas_and_reuse_in_their_transaction(s: &dyn Store) {
    let people = |f: &crate::SubmitFacts| {
        (
            f.requester_people_24h,
            f.requester_people_30d,
            f.case_people_30d,
        )
    };
    // Protective orders: the submission reads those records of the named
    // subjects, and nothing else they hold.
    s.write(
        &WriteBatch {
            records: vec![
                record(7, 1, "address"),
                record(7, 2, "protective_order"),
                record(8, 3, "address"),
            ],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let mut three = request("ice", 1_500, 1, 9, "refused");
    three.subjects = vec![[7; 16], [8; 16], [9; 16]];
    let q = SubmitQuery {
        requester: "ice".into(),
        instrument_key: three.instrument_key,
        case_key: three.case_key,
        since_24h: 1_900,
        since_30d: 1_000,
        subjects: three.subjects.clone(),
    };
    let mut seen = None;
    let (first, _) = s
        .submit_disclosure(&q, &mut |facts, data, idx| {
            seen = Some((*facts, data.to_vec()));
            (three.clone(), format!("submit {idx}").into_bytes())
        })
        .unwrap();
    let (f, data) = seen.unwrap();
    assert_eq!(people(&f), (0, 0, 0));
    assert!(!f.used_before);
    assert_eq!((f.seq, first.seq), (1, 1));
    assert_eq!(data.len(), 3);
    assert_eq!(
        data[0].records.iter().map(|r| r.id).collect::<Vec<_>>(),
        [[2; 16]],
        "only the protective-order record"
    );
    assert!(data[1].records.is_empty() && data[2].records.is_empty());
    assert!(data.iter().all(|d| !d.exists), "no existence bit");
    // A refused use of an instrument does not use it up. Quotas count the
    // people named: the first request named three.
    let (f, _) = submit(s, request("ice", 1_950, 1, 9, "pending_approval"), 2_000);
    assert!(!f.used_before);
    assert_eq!(people(&f), (0, 3, 3));
    let (f, _) = submit(s, request("ice", 1_990, 1, 9, "refused"), 2_000);
    assert!(f.used_before, "an instrument accepted once is used");
    assert_eq!(people(&f), (1, 4, 4));
    // Another requester: its own counts, but the same document is used and
    // the same case is counted whoever presents it.
    let (f, _) = submit(s, request("fbi", 1_995, 1, 9, "pending_approval"), 2_000);
    assert!(f.used_before, "a document is used whoever presents it");
    assert_eq!(
        (f.requester_people_24h, f.case_people_30d, f.seq),
        (0, 5, 4)
    );
    let (f, _) = submit(s, request("fbi", 1_996, 2, 8, "pending_approval"), 2_000);
    assert!(!f.used_before);
    assert_eq!((f.requester_people_24h, f.case_people_30d), (1, 0));
    // A request naming nobody counts as one person.
    let mut nobody = request("dea", 1_997, 3, 7, "refused");
    nobody.subjects.clear();
    submit(s, nobody, 2_000);
    let (f, _) = submit(s, request("dea", 1_998, 4, 7, "refused"), 2_000);
    assert_eq!(people(&f), (1, 1, 1));
    let all = s.disclosures().unwrap();
    assert_eq!(
        all.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(all[1], s.disclosure(&all[1].id).unwrap().unwrap());
    assert_eq!(all[1].portions, ["address", "scan_event"]);
    assert_eq!(s.log_size().unwrap(), 8, "one leaf per submission");
    assert_eq!(s.disclosure("nope").unwrap(), None);
    // Keys recomputed in place: the new ones count, nothing else changes.
    let before = s.disclosure(&all[0].id).unwrap().unwrap();
    s.set_disclosure_keys(&[crate::DisclosureKeys {
        id: all[0].id.clone(),
        instrument_key: Some([42; 16]),
        case_key: None,
    }])
    .unwrap();
    let after = s.disclosure(&all[0].id).unwrap().unwrap();
    assert_eq!(
        (after.instrument_key, after.case_key),
        (Some([42; 16]), None)
    );
    assert_eq!(
        DisclosureRow {
            instrument_key: before.instrument_key,
            case_key: before.case_key,
            ..after
        },
        before
    );
}

pub fn disclosure_steps_read_write_and_account_atomically(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(7, 1, "address"), record(8, 2, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let mut req = request("ice", 10, 3, 3, "pending_approval");
    req.office_notes = vec!["protective_order".into()];
    req.extends = Some("d-earlier".into());
    let (_, row) = submit(s, req, 10);
    let stored = s.disclosure(&row.id).unwrap().unwrap();
    assert_eq!(stored.office_notes, ["protective_order"]);
    assert_eq!(stored.extends.as_deref(), Some("d-earlier"));
    // A step on an unknown request still leaves its leaf, reads nothing.
    let (data, idx) = s
        .disclosure_step(
            "nope",
            &mut |r| {
                assert!(r.is_none());
                vec![]
            },
            &mut |_, _, _| DisclosureStep {
                leaves: vec![b"refused".to_vec()],
                ..DisclosureStep::default()
            },
        )
        .unwrap();
    assert!(data.is_empty());
    assert_eq!(s.leaves(idx, idx + 1).unwrap(), [b"refused".to_vec()]);
    // A fetch reads the planned subject only and accounts for it.
    let (data, first) = s
        .disclosure_step(
            &row.id,
            &mut |r| r.unwrap().subjects.clone(),
            &mut |r, data, first| {
                let mut new = r.unwrap().clone();
                new.status = "fetched".into();
                new.fetches += 1;
                DisclosureStep {
                    row: Some(new),
                    leaves: vec![format!("fetch {first}").into_bytes()],
                    accounting: vec![AccountingRow {
                        disclosure: r.unwrap().id.clone(),
                        subject: [7; 16],
                        at: 11,
                        leaf: 0,
                        records: data[0].records.len() as u64,
                        categories: vec!["address".into()],
                    }],
                    accounting_leaf: vec![0],
                    intent: None,
                }
            },
        )
        .unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].records.len(), 1);
    assert_eq!(data[0].records[0].subject, [7; 16]);
    let stored = s.disclosure(&row.id).unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.fetches), ("fetched", 1));
    assert_eq!(stored.kind, "warrant", "what was submitted does not change");
    let acc = s.accounting(&[7; 16]).unwrap();
    assert_eq!(acc.len(), 1);
    assert_eq!((acc[0].leaf, acc[0].records), (first, 1));
    assert!(s.accounting(&[8; 16]).unwrap().is_empty());
    // A step without a leaf writes nothing.
    let size = s.log_size().unwrap();
    assert!(
        s.disclosure_step(&row.id, &mut |_| vec![], &mut |r, _, _| {
            let mut new = r.unwrap().clone();
            new.status = "approved".into();
            DisclosureStep {
                row: Some(new),
                ..DisclosureStep::default()
            }
        })
        .is_err()
    );
    assert_eq!(s.log_size().unwrap(), size);
    assert_eq!(s.disclosure(&row.id).unwrap().unwrap().status, "fetched");
}

fn hold(subject: u8, until: i64) -> HoldRow {
    HoldRow {
        id: format!("hold-{subject}"),
        disclosure: "d-1".into(),
        subject: [subject; 16],
        placed_by: "officer".into(),
        placed_at: 1_000,
        until,
        ..HoldRow::default()
    }
}

pub fn erasure_deletes_rows_spares_holds_and_fences_writes(s: &dyn Store) {
    let batch = WriteBatch {
        records: vec![
            record(1, 1, "address"),
            record(1, 2, "scan_event"),
            record(2, 3, "address"),
        ],
        lookups: vec![LookupRow {
            token: [7; 16],
            subject: [1; 16],
            record: [1; 16],
        }],
        consents: vec![ConsentRow {
            subject: [1; 16],
            purpose: "marketing".into(),
            granted: true,
            at: 1,
        }],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&batch, &mut leaf_body).unwrap();
    s.put_holds(&[hold(2, 5_000)], &mut leaf_body).unwrap();
    let before = s.erasure_gen().unwrap();
    let size = s.log_size().unwrap();
    let mut seen = Vec::new();
    let mut intent_at = None;
    let out = s
        .erase(
            &[[1; 16], [2; 16]],
            2_000,
            &mut |idx, subj, held| {
                seen.push((idx, subj[0], held));
                b"erase".to_vec()
            },
            &mut |idx, out| {
                intent_at = Some((idx, out.records));
                Some((
                    crate::Intent {
                        kind: "erase".into(),
                        body: "{}".into(),
                        at: 2_000,
                    },
                    b"erase intent".to_vec(),
                ))
            },
        )
        .unwrap();
    assert_eq!(out.erased, vec![[1; 16]]);
    assert_eq!(out.held, vec![[2; 16]]);
    assert_eq!(out.records, 2);
    assert_eq!(seen, vec![(size, 1, false), (size + 1, 2, true)]);
    // The intent follows the people's leaves, in the same transaction.
    assert_eq!(intent_at, Some((size + 2, 2)));
    assert_eq!(s.log_size().unwrap(), size + 3);
    assert_eq!(
        s.leaves(size + 2, size + 3).unwrap(),
        vec![b"erase intent".to_vec()]
    );
    let pending = s.intents().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, pending[0].kind.as_str()),
        (size + 2, "erase")
    );
    assert!(
        !s.read_accounted(&[1; 16], &mut |_, _| vec![])
            .unwrap()
            .0
            .exists
    );
    assert!(s.lookup(&[7; 16]).unwrap().is_empty());
    assert_eq!(s.subject_records(&[2; 16]).unwrap().len(), 1);
    assert_eq!(s.pending_erasures().unwrap(), vec![[1; 16]]);
    // A batch prepared before the erasure is refused, and leaves nothing.
    let stale = WriteBatch {
        records: vec![record(1, 9, "address")],
        leaves: 1,
        erasure_gen: Some(before),
        ..WriteBatch::default()
    };
    let size = s.log_size().unwrap();
    assert!(matches!(
        s.write(&stale, &mut leaf_body),
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.log_size().unwrap(), size);
    // Without the fence too: a pending subject takes no record until its
    // erasure is finished; then new data is welcome.
    let unfenced = WriteBatch {
        records: vec![record(1, 9, "address")],
        leaves: 1,
        ..WriteBatch::default()
    };
    assert!(matches!(
        s.write(&unfenced, &mut leaf_body),
        Err(StoreError::Conflict)
    ));
    let mid = s.erasure_gen().unwrap();
    assert_ne!(mid, before);
    s.finish_erasure(&[[1; 16]]).unwrap();
    assert!(s.pending_erasures().unwrap().is_empty());
    assert!(s.subject_records(&[1; 16]).unwrap().is_empty());
    assert_ne!(s.erasure_gen().unwrap(), mid);
    s.write(&unfenced, &mut leaf_body).unwrap();
    assert_eq!(s.subject_records(&[1; 16]).unwrap().len(), 1);
    // After the hold lapses the subject can be erased.
    let out = s
        .erase(&[[2; 16]], 5_000, &mut |_, _, _| vec![1], &mut |_, _| None)
        .unwrap();
    assert_eq!(out.erased, vec![[2; 16]]);
    assert_eq!(s.intents().unwrap().len(), 1, "no intent was asked for");
}

pub fn sweeps_delete_only_what_expired_and_is_not_held(s: &dyn Store) {
    let mut a = record(1, 1, "address");
    a.expires_at = 100;
    let mut b = record(1, 2, "mail_image");
    b.expires_at = 200;
    let mut c = record(2, 3, "mail_image");
    c.expires_at = 100;
    let mut d = record(3, 4, "address");
    d.expires_at = 10_000;
    s.write(
        &WriteBatch {
            records: vec![a, b, c, d],
            lookups: vec![LookupRow {
                token: [5; 16],
                subject: [1; 16],
                record: [1; 16],
            }],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    s.put_holds(&[hold(2, 1_000_000)], &mut leaf_body).unwrap();
    assert_eq!(
        s.count_expired(300).unwrap(),
        2,
        "the held one is not counted"
    );
    let first = s.sweep_expired(300, 1, None).unwrap();
    assert_eq!(first.deleted, 1);
    let rest = s.sweep_expired(300, 100, None).unwrap();
    assert_eq!(rest.deleted, 1);
    assert_eq!(s.sweep_expired(300, 100, None).unwrap().deleted, 0);
    assert_eq!(s.count_expired(300).unwrap(), 0);
    assert_eq!(
        s.record_count().unwrap(),
        2,
        "the held and the unexpired stay"
    );
    assert!(s.lookup(&[5; 16]).unwrap().is_empty());
    assert_eq!(s.subject_records(&[2; 16]).unwrap().len(), 1);
    let released = s
        .release_hold("hold-2", "officer", 400, &mut |_, h| {
            assert_eq!(h.released_at, Some(400));
            vec![2]
        })
        .unwrap();
    assert_eq!(released.len(), 1);
    assert!(
        s.release_hold("hold-2", "officer", 500, &mut |_, _| vec![])
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.holds(Some(&[2; 16])).unwrap()[0].released_at, Some(400));
    assert_eq!(
        s.sweep_expired(500, 100, None)
            .unwrap()
            .by_category
            .get("mail_image"),
        Some(&1)
    );
    assert_eq!(s.record_count().unwrap(), 1);
}

pub fn rekey_replaces_ciphertext_in_place(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let mut r = record(1, 1, "address");
    r.key_id = crate::key_id::PERIOD;
    r.sealed = vec![9, 9, 9];
    assert_eq!(s.rekey(&[r.clone(), record(4, 4, "address")]).unwrap(), 1);
    assert_eq!(s.subject_records(&[1; 16]).unwrap(), vec![r]);
}

pub fn secrets_are_listed_raced_and_destroyed_in_batches(k: &dyn KeyStore) {
    assert_eq!(
        k.put_secret_or_get("retention:a:1", b"first").unwrap(),
        b"first"
    );
    assert_eq!(
        k.put_secret_or_get("retention:a:1", b"second").unwrap(),
        b"first"
    );
    k.put_secret("retention:b:2", b"x").unwrap();
    k.put_secret("cover:1", b"y").unwrap();
    assert_eq!(
        k.secret_names("retention:").unwrap(),
        vec!["retention:a:1".to_string(), "retention:b:2".to_string()]
    );
    assert_eq!(
        k.delete_secrets(&["retention:a:1".into(), "retention:zz".into()])
            .unwrap(),
        1
    );
    assert_eq!(k.secret_names("retention:").unwrap().len(), 1);
    k.put_subject_keys(&[SubjectKeys {
        subject: [3; 16],
        data: vec![1],
        tag: vec![2],
    }])
    .unwrap();
    assert_eq!(k.delete_subject_keys(&[[3; 16], [4; 16]]).unwrap(), 1);
    assert_eq!(k.subject_keys(&[3; 16]).unwrap(), None);
}

pub fn corrections_keep_history_once(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let fix = WriteBatch {
        records: vec![record(1, 2, "address")],
        supersede: vec![([1; 16], [1; 16], [2; 16])],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&fix, &mut leaf_body).unwrap();
    let rows = s.subject_records(&[1; 16]).unwrap();
    assert_eq!(rows.len(), 2, "the corrected record is kept");
    assert_eq!(rows[0].superseded_by, Some([2; 16]));
    assert_eq!(rows[1].superseded_by, None);
    // Correcting it again (or another subject's record) fails and writes nothing.
    let size = s.log_size().unwrap();
    let again = WriteBatch {
        records: vec![record(1, 3, "address")],
        supersede: vec![([1; 16], [1; 16], [3; 16])],
        leaves: 1,
        ..WriteBatch::default()
    };
    assert!(matches!(
        s.write(&again, &mut leaf_body),
        Err(StoreError::Stale)
    ));
    assert_eq!(s.log_size().unwrap(), size);
    assert_eq!(s.subject_records(&[1; 16]).unwrap().len(), 2);
}

fn step(after: u64, through: u64, accepted: u64) -> crate::RunStep {
    crate::RunStep {
        run: [4; 16],
        principal: "svc".into(),
        after_line: after,
        through_line: through,
        digest: [through as u8; 32],
        accepted,
        rejected: 0,
        categories: format!("{{\"address\":{accepted}}}"),
        errors: "[]".into(),
        finished: false,
        at: 10 + through as i64,
    }
}

pub fn runs_commit_progress_with_their_batches_and_refuse_a_second_writer(s: &dyn Store) {
    assert!(s.run(&[4; 16]).unwrap().is_none());
    let batch = |after: u64, through: u64, n: u8| WriteBatch {
        records: vec![record(1, n, "address")],
        leaves: 1,
        run: Some(step(after, through, 1)),
        ..WriteBatch::default()
    };
    let first = s.write(&batch(0, 2, 1), &mut leaf_body).unwrap();
    let second = s.write(&batch(2, 5, 2), &mut leaf_body).unwrap();
    // A second writer resuming from line 2 (it had not seen line 5) is
    // refused, and writes nothing: no record, no leaf.
    let size = s.log_size().unwrap();
    match s.write(&batch(2, 4, 3), &mut leaf_body) {
        Err(StoreError::RunMoved(5)) => {}
        other => panic!("expected RunMoved(5), got {other:?}"),
    }
    assert_eq!(s.log_size().unwrap(), size);
    assert_eq!(s.record_count().unwrap(), 2);
    // So is a run that does not exist yet but claims progress.
    let mut orphan = batch(7, 9, 4);
    orphan.run.as_mut().unwrap().run = [5; 16];
    assert!(matches!(
        s.write(&orphan, &mut leaf_body),
        Err(StoreError::RunMoved(0))
    ));
    let r = s.run(&[4; 16]).unwrap().unwrap();
    assert_eq!(
        (r.through_line, r.digest, r.finished_at),
        (5, [5; 32], None)
    );
    assert_eq!(r.started_at, 12);
    assert_eq!(r.principal, "svc");
    assert_eq!(r.batches.len(), 2);
    assert_eq!(
        (
            r.batches[0].first_line,
            r.batches[0].last_line,
            r.batches[0].leaf
        ),
        (1, 2, Some(first))
    );
    assert_eq!(
        (
            r.batches[1].first_line,
            r.batches[1].last_line,
            r.batches[1].leaf
        ),
        (3, 5, Some(second))
    );
    assert_eq!(r.batches[1].categories, "{\"address\":1}");
    // The end of the run, then nothing more.
    let mut end = step(5, 6, 0);
    end.finished = true;
    s.finish_run(&end).unwrap();
    let r = s.run(&[4; 16]).unwrap().unwrap();
    assert_eq!(
        (r.through_line, r.finished_at, r.batches.len()),
        (6, Some(16), 2)
    );
    let mut again = step(6, 7, 0);
    again.finished = true;
    assert!(matches!(s.finish_run(&again), Err(StoreError::RunMoved(6))));
}

pub fn intents_are_written_ahead_counted_and_completed_once(s: &dyn Store) {
    let written = |s: &dyn Store| -> u64 {
        s.meta("intents_written")
            .unwrap()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0)
    };
    assert_eq!(written(s), 0);
    let mut old = record(1, 1, "address");
    old.expires_at = 100;
    s.write(
        &WriteBatch {
            records: vec![old, record(2, 2, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let id = s
        .put_intent(
            &crate::Intent {
                kind: "retention".into(),
                body: "{\"keys\":[\"retention:address:1\"]}".into(),
                at: 300,
            },
            &mut |idx, _| format!("intent {idx}").into_bytes(),
        )
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(s.leaves(1, 2).unwrap(), vec![b"intent 1".to_vec()]);
    assert_eq!(written(s), 1);
    let rows = s.intents().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].id,
            rows[0].kind.as_str(),
            rows[0].at,
            rows[0].progress
        ),
        (1, "retention", 300, 0)
    );
    assert_eq!(rows[0].body, "{\"keys\":[\"retention:address:1\"]}");
    // A sweep under the intent counts its deletions in the intent.
    assert_eq!(s.sweep_expired(300, 10, Some(id)).unwrap().deleted, 1);
    assert_eq!(s.intents().unwrap()[0].progress, 1);
    let done = s
        .finish_intent(id, &mut |idx, row| {
            format!("done {idx} of {} after {}", row.id, row.progress).into_bytes()
        })
        .unwrap();
    assert_eq!(done, Some(2));
    assert_eq!(
        s.leaves(2, 3).unwrap(),
        vec![b"done 2 of 1 after 1".to_vec()]
    );
    assert!(s.intents().unwrap().is_empty());
    // Completed once: a second completion writes nothing.
    assert_eq!(s.finish_intent(id, &mut |_, _| vec![9]).unwrap(), None);
    assert_eq!(s.log_size().unwrap(), 3);
    // An intent recorded with a disclosure step points at the step's leaf.
    let (_, row) = submit(s, request("agency", 5, 1, 1, "approved"), 5);
    let (_, first) = s
        .disclosure_step(&row.id, &mut |_| vec![], &mut |_, _, _| DisclosureStep {
            leaves: vec![b"end".to_vec(), b"cover intent".to_vec()],
            intent: Some((
                1,
                crate::Intent {
                    kind: "cover".into(),
                    body: "{}".into(),
                    at: 6,
                },
            )),
            ..DisclosureStep::default()
        })
        .unwrap();
    let rows = s.intents().unwrap();
    assert_eq!((rows.len(), rows[0].id), (1, first + 1));
    assert_eq!(written(s), 2);
}

pub fn key_usage_and_record_subjects_count_what_keys_seal(s: &dyn Store) {
    let mut held = record(2, 3, "address");
    held.key_id = crate::key_id::HOLD;
    let mut cover = record(3, 4, "mail_cover_record");
    cover.key_id = 7;
    let mut p1 = record(1, 1, "address");
    p1.key_id = crate::key_id::PERIOD;
    let mut p2 = record(1, 2, "address");
    p2.key_id = crate::key_id::PERIOD;
    s.write(
        &WriteBatch {
            records: vec![p1, p2, held, cover],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let mut usage = s.key_usage().unwrap();
    usage.sort_by_key(|u| (u.key_id, u.category.clone()));
    let by: Vec<(u32, &str, Option<[u8; 16]>, u64)> = usage
        .iter()
        .map(|u| (u.key_id, u.category.as_str(), u.subject, u.records))
        .collect();
    assert_eq!(
        by,
        vec![
            (7, "mail_cover_record", None, 1),
            (crate::key_id::HOLD, "address", Some([2; 16]), 1),
            (crate::key_id::PERIOD, "address", None, 2),
        ]
    );
    assert!(usage.iter().all(|u| u.expires_at == 9_000));
    assert_eq!(
        s.record_subjects(None, 10).unwrap(),
        vec![([1; 16], 2), ([2; 16], 1), ([3; 16], 1)]
    );
    assert_eq!(
        s.record_subjects(Some(&[1; 16]), 1).unwrap(),
        vec![([2; 16], 1)]
    );
    assert!(s.record_subjects(Some(&[3; 16]), 10).unwrap().is_empty());
}

pub fn rewrap_changes_every_key_in_one_transaction(k: &dyn KeyStore) {
    let keys: Vec<SubjectKeys> = (1..=5u8)
        .map(|i| SubjectKeys {
            subject: [i; 16],
            data: vec![i; 4],
            tag: vec![i, i],
        })
        .collect();
    k.put_subject_keys(&keys).unwrap();
    k.put_secret("retention:a:1", b"old").unwrap();
    k.put_secret("plain", b"p").unwrap();
    k.put_secret("gone", b"g").unwrap();
    assert_eq!(k.subject_refs(None, 2).unwrap(), vec![[1; 16], [2; 16]]);
    assert_eq!(
        k.subject_refs(Some(&[2; 16]), 10).unwrap(),
        vec![[3; 16], [4; 16], [5; 16]]
    );
    // A failure midway changes nothing.
    let r = k.rewrap(
        &mut |item| match item {
            crate::KeyItem::Subject(sk) if sk.subject == [4; 16] => {
                Err(StoreError::Corrupt("injected".into()))
            }
            crate::KeyItem::Subject(sk) => {
                Ok(crate::KeyAction::Subject(vec![0], vec![0, sk.subject[0]]))
            }
            crate::KeyItem::Secret(..) => Ok(crate::KeyAction::Keep),
        },
        &[("new".into(), b"n".to_vec())],
    );
    assert!(r.is_err());
    assert_eq!(k.subject_keys(&[1; 16]).unwrap().unwrap().data, vec![1; 4]);
    assert!(k.secret("new").unwrap().is_none());
    let n = k
        .rewrap(
            &mut |item| {
                Ok(match item {
                    crate::KeyItem::Subject(sk) => {
                        crate::KeyAction::Subject(vec![sk.subject[0], 9], vec![9])
                    }
                    crate::KeyItem::Secret("retention:a:1", _) => {
                        crate::KeyAction::Secret(b"new wrap".to_vec())
                    }
                    crate::KeyItem::Secret("gone", _) => crate::KeyAction::Delete,
                    crate::KeyItem::Secret(..) => crate::KeyAction::Keep,
                })
            },
            &[("new".into(), b"n".to_vec())],
        )
        .unwrap();
    assert_eq!(
        n,
        crate::RewrapCount {
            subjects: 5,
            secrets: 1,
            deleted: 1,
            inserted: 1
        }
    );
    for i in 1..=5u8 {
        let sk = k.subject_keys(&[i; 16]).unwrap().unwrap();
        assert_eq!((sk.data, sk.tag), (vec![i, 9], vec![9]));
    }
    assert_eq!(k.secret("retention:a:1").unwrap().unwrap(), b"new wrap");
    assert_eq!(k.secret("plain").unwrap().unwrap(), b"p");
    assert!(k.secret("gone").unwrap().is_none());
    assert_eq!(k.secret("new").unwrap().unwrap(), b"n");
}
