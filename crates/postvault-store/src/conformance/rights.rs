//! Checks of [`crate::RightsStore`]: erasure, sweeps, holds, re-keying and
//! corrections.

use super::*;

pub(super) fn hold(subject: u8, until: i64) -> HoldRow {
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
                b"erase".to_vec().into()
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
    assert_eq!(out.records_by, [([1; 16], 2)].into_iter().collect());
    assert_eq!(seen, vec![(size, 1, Held::No), (size + 1, 2, Held::Yes)]);
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
        !s.read_accounted(&[1; 16], &mut |_, _| vec![].into())
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
        .erase(
            &[[2; 16]],
            5_000,
            &mut |_, _, _| vec![1].into(),
            &mut |_, _| None,
        )
        .unwrap();
    assert_eq!(out.erased, vec![[2; 16]]);
    assert_eq!(s.intents().unwrap().len(), 1, "no intent was asked for");
}

/// The erasure's transaction itself tells which refused subjects are under
/// a hold whose delay order still runs (their leaves must not be theirs to
/// find): a hold placed by another node just before it is seen with its
/// delay, never as a plain hold.
pub fn erasure_tells_holds_under_a_delay_order(s: &dyn Store) {
    let delayed = |subject: u8, id: &str, until: i64, notice_after: i64| HoldRow {
        id: id.into(),
        notice_after: Some(notice_after),
        ..hold(subject, until)
    };
    s.put_holds(
        &[
            // A plain hold and a delayed one: the plain one explains the
            // refusal.
            hold(3, 5_000),
            delayed(3, "hold-3b", 5_000, 3_000),
            // Only delayed holds: delayed.
            delayed(7, "hold-7", 5_000, 3_000),
            delayed(7, "hold-7b", 5_000, 2_500),
            // The delay has run out: a plain refusal.
            delayed(4, "hold-4", 5_000, 1_500),
            // Lapsed, whatever its delay: erased.
            delayed(5, "hold-5", 1_500, 9_000),
        ],
        &mut leaf_body,
    )
    .unwrap();
    let mut seen = Vec::new();
    let out = s
        .erase(
            &[[3; 16], [4; 16], [5; 16], [6; 16], [7; 16]],
            2_000,
            &mut |_, subj, held| {
                seen.push((subj[0], held));
                b"erase".to_vec().into()
            },
            &mut |_, _| None,
        )
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (3, Held::Yes),
            (4, Held::Yes),
            (5, Held::No),
            (6, Held::No),
            (7, Held::Delayed)
        ]
    );
    assert_eq!(out.held, vec![[3; 16], [4; 16], [7; 16]]);
    assert_eq!(out.erased, vec![[5; 16], [6; 16]]);
}

/// A read for the person tells since when a hold they may know of is in
/// force: the earliest placement among the holds in force without a delay
/// order still running at the read's time; none under delayed holds alone,
/// lapsed or released ones. Other scopes never tell.
pub fn person_reads_tell_since_when_a_hold_they_may_know_of_is_in_force(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address"), record(1, 2, "mail_image")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let since = |scope| {
        let (d, _) = s
            .read_scoped(&[1; 16], scope, &mut |_, _| b"read".to_vec().into())
            .unwrap();
        assert_eq!(d.records.len(), 2);
        d.shown_hold_since
    };
    assert_eq!(since(ReadScope::Person(2_000)), None, "no hold");
    let delayed = HoldRow {
        id: "hold-d".into(),
        notice_after: Some(3_000),
        ..hold(1, 5_000)
    };
    s.put_holds(std::slice::from_ref(&delayed), &mut leaf_body)
        .unwrap();
    assert_eq!(since(ReadScope::Person(2_000)), None, "delayed alone");
    let plain = HoldRow {
        id: "hold-p".into(),
        placed_at: 1_500,
        ..hold(1, 4_000)
    };
    s.put_holds(std::slice::from_ref(&plain), &mut leaf_body)
        .unwrap();
    assert_eq!(since(ReadScope::Person(2_000)), Some(1_500));
    assert_eq!(since(ReadScope::All), None, "only the person's read tells");
    // The delay has run out: the earlier hold explains more.
    assert_eq!(since(ReadScope::Person(3_500)), Some(1_000));
    // The plain one lapsed, the delayed one still in force and delayed.
    let later = HoldRow {
        id: "hold-d2".into(),
        placed_at: 1_200,
        notice_after: Some(9_000),
        ..hold(1, 8_000)
    };
    s.put_holds(std::slice::from_ref(&later), &mut leaf_body)
        .unwrap();
    assert_eq!(since(ReadScope::Person(4_500)), Some(1_000));
    assert_eq!(since(ReadScope::Person(6_000)), None, "lapsed or delayed");
    // Released, the plain one explains nothing while the others are
    // delayed.
    assert_eq!(
        s.release_hold("hold-p", "officer", 2_100, &mut |_, _| b"release"
            .to_vec()
            .into())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(since(ReadScope::Person(2_500)), None, "released");
    assert_eq!(since(ReadScope::Person(3_500)), Some(1_000));
}

/// An erasure's last steps in one transaction: its people finished, its
/// intent completed with its leaf, and those asked for purged; run again,
/// there is nothing left to complete or purge.
pub fn erasure_finishes_completes_and_purges_in_one_transaction(s: &dyn Store) {
    let batch = WriteBatch {
        records: vec![
            record(1, 1, "address"),
            record(1, 2, "scan_event"),
            record(2, 3, "address"),
        ],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&batch, &mut leaf_body).unwrap();
    let both = [[1; 16], [2; 16]];
    s.erase(
        &both,
        2_000,
        &mut |_, _, _| b"erase".to_vec().into(),
        &mut |_, _| {
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
    let id = s.intents().unwrap()[0].id;
    let size = s.log_size().unwrap();
    let mut seen = None;
    let done = s
        .finish_erasure_with(
            &both,
            Some(id),
            &mut |idx, row| {
                seen = Some((idx, row.id));
                b"erase done".to_vec()
            },
            &[[1; 16]],
            2,
        )
        .unwrap();
    assert_eq!(seen, Some((size, id)));
    assert_eq!(done.completion_leaf, Some(size));
    assert_eq!(done.purged, Some(vec![([1; 16], 2)]));
    assert_eq!(
        s.leaves(size, size + 1).unwrap(),
        vec![b"erase done".to_vec()]
    );
    assert!(s.intents().unwrap().is_empty());
    assert!(s.pending_erasures().unwrap().is_empty());
    // Person 2 was not asked for: left to the bulk purge.
    assert_eq!(
        s.purge_pending().unwrap(),
        crate::PurgeBatch {
            people: 1,
            records: 1
        }
    );
    let again = s
        .finish_erasure_with(
            &both,
            Some(id),
            &mut |_, _| b"twice".to_vec(),
            &[[1; 16]],
            2,
        )
        .unwrap();
    assert_eq!(
        again,
        crate::ErasureFinish {
            completion_leaf: None,
            purged: Some(vec![])
        }
    );
    assert_eq!(s.log_size().unwrap(), size + 1);
    // Person 2's row is dead (erased before), and counts all the same:
    // over the bound, the purge is left to the caller and nothing goes.
    let over = s
        .finish_erasure_with(&[], None, &mut |_, _| vec![], &[[2; 16]], 0)
        .unwrap();
    assert_eq!(over, crate::ErasureFinish::default());
    assert_eq!(s.purge_pending().unwrap().people, 1);
    let within = s
        .finish_erasure_with(&[], None, &mut |_, _| vec![], &[[2; 16]], 1)
        .unwrap();
    assert_eq!(within.purged, Some(vec![([2; 16], 1)]));
    assert_eq!(s.purge_pending().unwrap(), crate::PurgeBatch::default());
}

/// An erasure makes the person's rows dead at once (every read, scan and
/// count leaves them out) without deleting them; the purge deletes them in
/// bulk, in ref order; a person collected again keeps only the new rows.
pub fn erased_rows_are_dead_until_purged(s: &dyn Store) {
    let mut records = Vec::new();
    for subject in 1..=4u8 {
        for (n, category) in [(0u8, "address"), (1, "scan_event"), (2, "protective_order")] {
            let mut r = record(subject, subject * 10 + n, category);
            r.expires_at = 100;
            records.push(r);
        }
    }
    let lookups = (1..=4u8)
        .map(|subject| LookupRow {
            token: [7; 16],
            subject: [subject; 16],
            record: [subject * 10; 16],
        })
        .collect();
    s.write(
        &WriteBatch {
            records,
            lookups,
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    assert_eq!(s.purge_pending().unwrap(), crate::PurgeBatch::default());
    let out = s
        .erase(
            &[[3; 16], [1; 16], [5; 16]],
            50,
            &mut |_, _, _| b"erase".to_vec().into(),
            &mut |_, _| None,
        )
        .unwrap();
    assert_eq!(out.records, 6, "the records made dead are counted");
    assert_eq!(
        out.records_by,
        [([1; 16], 3), ([3; 16], 3)].into_iter().collect(),
        "and counted by person (person 5 has none)"
    );
    // Person 5 was never collected: no ref of theirs is queued.
    assert_eq!(
        s.purge_pending().unwrap(),
        crate::PurgeBatch {
            people: 2,
            records: 6
        }
    );
    // Dead to every reader.
    for dead in [[1u8; 16], [3; 16]] {
        let (data, _) = s.read_accounted(&dead, &mut |_, _| vec![].into()).unwrap();
        assert!(!data.exists && data.records.is_empty());
        assert!(s.subject_records(&dead).unwrap().is_empty());
    }
    assert_eq!(s.lookup(&[7; 16]).unwrap(), vec![[2; 16], [4; 16]]);
    assert_eq!(s.record_count().unwrap(), 6);
    let subjects: Vec<SubjectRef> = s
        .record_subjects(None, 100)
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(subjects, vec![[2; 16], [4; 16]]);
    assert_eq!(
        s.key_usage()
            .unwrap()
            .iter()
            .map(|k| k.records)
            .sum::<u64>(),
        6
    );
    assert_eq!(s.count_expired(1_000).unwrap(), 6);
    let scanned: Vec<SubjectRef> = s
        .category_records("address", 0, None, None, 100, None)
        .unwrap()
        .rows
        .iter()
        .map(|r| r.subject)
        .collect();
    assert_eq!(scanned, vec![[2; 16], [4; 16]]);
    let q = SubmitQuery {
        requester: "ice".into(),
        instrument_key: None,
        case_key: None,
        since_24h: 0,
        since_30d: 0,
        subjects: vec![[1; 16], [2; 16]],
        protective_category: crate::PROTECTIVE_INDEX_CATEGORY.into(),
    };
    let mut seen = None;
    s.submit_disclosure(&q, &mut |_, data, idx| {
        seen = Some(data.iter().map(|d| d.records.len()).collect::<Vec<_>>());
        (
            super::ledger::request("ice", 60, 1, 9, "refused"),
            format!("submit {idx}").into_bytes(),
        )
    })
    .unwrap();
    assert_eq!(
        seen,
        Some(vec![0, 1]),
        "a dead protective order is no order"
    );
    // People whose erasure is pending are not purged yet.
    assert_eq!(s.purge_erased(10).unwrap(), crate::PurgeBatch::default());
    assert_eq!(s.purge_subjects(&[[1; 16]]).unwrap(), vec![]);
    // The retention sweep leaves dead rows to the purge.
    s.finish_erasure(&[[1; 16], [3; 16], [5; 16]]).unwrap();
    assert_eq!(s.purge_pending().unwrap().people, 2);
    let swept = s.sweep_expired(1_000, 1, None).unwrap();
    assert_eq!(swept.deleted, 1);
    assert_eq!(s.count_expired(1_000).unwrap(), 5);
    // Person 1 is collected again: the old rows go, the new one stays, and
    // they leave the queue; person 3's rows are still queued.
    let mut again = record(1, 99, "address");
    again.collected_at = 2_000;
    s.write(
        &WriteBatch {
            records: vec![again],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let back = s.subject_records(&[1; 16]).unwrap();
    assert_eq!(
        back.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![[99; 16]]
    );
    assert_eq!(
        s.purge_pending().unwrap(),
        crate::PurgeBatch {
            people: 1,
            records: 3
        }
    );
    // The purge of named people: only those queued.
    assert_eq!(
        s.purge_subjects(&[[9; 16], [3; 16], [2; 16]]).unwrap(),
        vec![([3; 16], 3)],
        "only those queued, each with its records"
    );
    assert_eq!(s.purge_erased(1).unwrap(), crate::PurgeBatch::default());
    assert_eq!(s.purge_pending().unwrap(), crate::PurgeBatch::default());
    assert_eq!(s.subject_records(&[1; 16]).unwrap().len(), 1);
    assert_eq!(s.record_count().unwrap(), 6, "5 live of 2 and 4, 1 of 1");
    // The bulk purge: in ref order, `limit` people a transaction.
    s.erase(
        &[[4; 16], [2; 16]],
        60,
        &mut |_, _, _| vec![1].into(),
        &mut |_, _| None,
    )
    .unwrap();
    s.finish_erasure(&[[4; 16], [2; 16]]).unwrap();
    let first = s.purge_erased(1).unwrap();
    assert_eq!(first.people, 1);
    assert_eq!(s.purge_pending().unwrap().people, 1);
    let second = s.purge_erased(5).unwrap();
    assert_eq!((second.people, first.records + second.records), (1, 5));
    assert_eq!(s.record_count().unwrap(), 1);
    // A person queued for lookup tokens alone is purged with no records.
    s.write(
        &WriteBatch {
            lookups: vec![LookupRow {
                token: [8; 16],
                subject: [8; 16],
                record: [80; 16],
            }],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let out = s
        .erase(
            &[[8; 16]],
            70,
            &mut |_, _, _| vec![1].into(),
            &mut |_, _| None,
        )
        .unwrap();
    assert_eq!((out.records, out.records_by.len()), (0, 0));
    s.finish_erasure(&[[8; 16]]).unwrap();
    assert_eq!(s.purge_subjects(&[[8; 16]]).unwrap(), vec![([8; 16], 0)]);
    assert!(s.lookup(&[8; 16]).unwrap().is_empty());
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
            vec![2].into()
        })
        .unwrap();
    assert_eq!(released.len(), 1);
    assert!(
        s.release_hold("hold-2", "officer", 500, &mut |_, _| vec![].into())
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

/// Records sealed under a mail-cover order (`key_id` 1 to
/// [`crate::key_id::COVER_MAX`]) die and are deleted with the person's
/// others, but no count of an erasure or a purge includes them: the person
/// (who sees the counts) may not know of the cover.
pub fn erasure_and_purge_counts_leave_mail_cover_records_out(s: &dyn Store) {
    let cover = |subject: u8, n: u8, seq: u32| RecordRow {
        key_id: seq,
        ..record(subject, n, "mail_cover_record")
    };
    let batch = WriteBatch {
        records: vec![
            record(1, 1, "address"),
            cover(1, 2, 7),
            cover(1, 3, crate::key_id::COVER_MAX),
            RecordRow {
                key_id: crate::key_id::HOLD,
                ..record(1, 4, "scan_event")
            },
            cover(2, 5, 1),
            record(3, 6, "address"),
            cover(3, 7, 9),
        ],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&batch, &mut leaf_body).unwrap();
    let mut counted = None;
    let out = s
        .erase(
            &[[1; 16], [2; 16], [3; 16]],
            2_000,
            &mut |_, _, _| b"erase".to_vec().into(),
            &mut |_, out| {
                counted = Some(out.records);
                None
            },
        )
        .unwrap();
    assert_eq!(out.erased, vec![[1; 16], [2; 16], [3; 16]]);
    // Person 1: the address and the held scan event; person 2 only had a
    // cover's record: not listed, as a person with none.
    assert_eq!(out.records, 3);
    assert_eq!(counted, Some(3));
    assert_eq!(
        out.records_by,
        [([1; 16], 2), ([3; 16], 1)].into_iter().collect()
    );
    s.finish_erasure(&out.erased).unwrap();
    assert_eq!(
        s.purge_pending().unwrap(),
        crate::PurgeBatch {
            people: 3,
            records: 3
        }
    );
    // Each person purged is listed, with the records the erasure counted.
    assert_eq!(
        s.purge_subjects(&[[1; 16], [2; 16]]).unwrap(),
        vec![([1; 16], 2), ([2; 16], 0)]
    );
    assert_eq!(
        s.purge_erased(10).unwrap(),
        crate::PurgeBatch {
            people: 1,
            records: 1
        }
    );
    assert_eq!(s.purge_pending().unwrap(), crate::PurgeBatch::default());
    // Every row is gone, the covers' too.
    for subject in 1..=3 {
        assert!(s.subject_records(&[subject; 16]).unwrap().is_empty());
    }
}
