//! Checks of [`crate::RecordStore`]: batches, reads and their leaves, consents,
//! lookups.

use super::*;

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
            format!("read {} at {idx}", d.records.len())
                .into_bytes()
                .into()
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
        .read_accounted(&[9; 16], &mut |d, _| vec![u8::from(d.exists)].into())
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
    let (data, _) = s
        .read_accounted(&[3; 16], &mut |_, _| vec![].into())
        .unwrap();
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
    let (data, _) = s
        .read_accounted(&[1; 16], &mut |_, _| vec![].into())
        .unwrap();
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
        let (mut d, idx) = s
            .read_scoped(&[1; 16], scope, &mut |d, idx| {
                format!("{} records at {idx}", d.records.len())
                    .into_bytes()
                    .into()
            })
            .unwrap();
        assert_eq!(s.leaves(idx, idx + 1).unwrap().len(), 1);
        // A backend that reads the erasure generation with the rows does
        // so for every scope, the nothing-read ones too.
        let expected = s
            .reads_carry_erasure_gen()
            .then(|| s.erasure_gen().unwrap());
        assert_eq!(d.erasure_gen, expected, "{scope:?}");
        d.erasure_gen = None;
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

/// A read with a second leaf (an access report's read and its
/// accounting's): both appended, the second right after the read's (in one
/// transaction, or, by default, one after the other), the read's built from
/// what it found. Both forms: the one-step read, and the leaf appended
/// after a read made outside the log's order.
pub fn reads_with_a_second_leaf_append_it_right_after(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let size = s.log_size().unwrap();
    let (data, idx, next) = s
        .read_scoped_then(
            &[1; 16],
            ReadScope::All,
            &mut |d, idx| {
                format!("read {} at {idx}", d.records.len())
                    .into_bytes()
                    .into()
            },
            &mut |idx, _| format!("then at {idx}").into_bytes().into(),
        )
        .unwrap();
    assert_eq!(data.records.len(), 1);
    assert_eq!((idx, next), (size, size + 1));
    assert_eq!(
        s.leaves(size, size + 2).unwrap(),
        vec![
            format!("read 1 at {size}").into_bytes(),
            format!("then at {}", size + 1).into_bytes()
        ]
    );
    let stamp = s
        .read_unlogged(&[1; 16], ReadScope::All)
        .unwrap()
        .map_or(0, |(_, stamp)| stamp);
    let (_, idx, next) = s
        .append_read_leaf_then(
            stamp,
            &[1; 16],
            ReadScope::All,
            &mut |_, idx| format!("read at {idx}").into_bytes().into(),
            &mut |idx, _| format!("then at {idx}").into_bytes().into(),
        )
        .unwrap();
    assert_eq!((idx, next), (size + 2, size + 3));
    assert_eq!(s.log_size().unwrap(), size + 4);
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

pub fn leaves_are_dense_and_ordered(s: &dyn Store) {
    for _ in 0..3 {
        s.append_leaves(4, &mut leaf_body).unwrap();
    }
    assert_eq!(s.log_size().unwrap(), 12);
    let all = s.leaves(0, 100).unwrap();
    assert_eq!(all.len(), 12);
    for (i, l) in all.iter().enumerate() {
        assert_eq!(l, &leaf_body(i as u64, i % 4).bytes);
    }
    assert_eq!(s.leaves(5, 7).unwrap(), all[5..7].to_vec());
    assert!(s.leaves(12, 20).unwrap().is_empty());
}

/// A change a conformance check makes, named.
type Change<'a> = (&'a str, Box<dyn Fn(&dyn Store)>);

/// A read made outside the log's order is accounted for as made only while
/// nothing any read could see has changed since its snapshot: after every
/// change (records, consents, corrections, holds, erasures, the sweep, the
/// purge, a rekey) it is made again with its one leaf, and answers what the
/// store holds then; other reads' leaves change nothing. Backends without
/// such reads (`read_unlogged` answers `None`) pass.
pub fn unlogged_reads_are_accounted_only_while_nothing_changed(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![record(1, 1, "address"), record(1, 2, "scan_event")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    let Some((data, stamp)) = s.read_unlogged(&[1; 16], ReadScope::All).unwrap() else {
        // Without such reads, the leaf's append reads with it, as
        // `read_scoped` does: one leaf, and what the store holds.
        let size = s.log_size().unwrap();
        let mut asked = None;
        let (data, at) = s
            .append_read_leaf(0, &[1; 16], ReadScope::All, &mut |d, _| {
                asked = Some(d.map(|d| d.records.len()));
                b"read".to_vec().into()
            })
            .unwrap();
        assert_eq!(asked, Some(Some(2)));
        assert_eq!(data.map(|d| d.records.len()), Some(2));
        assert_eq!((at, s.log_size().unwrap()), (size, size + 1));
        return;
    };
    assert_eq!(data.records.len(), 2);
    // The erasure generation too, if the backend says its reads carry it.
    let carried = s
        .reads_carry_erasure_gen()
        .then(|| s.erasure_gen().unwrap());
    assert_eq!(data.erasure_gen, carried);
    // Two reads in turn: each one's leaf, neither refused by the other's.
    let (_, other) = s.read_unlogged(&[2; 16], ReadScope::All).unwrap().unwrap();
    let size = s.log_size().unwrap();
    let again = |s: &dyn Store, subject: u8, stamp| {
        let mut found = None;
        let (data, at) = s
            .append_read_leaf(stamp, &[subject; 16], ReadScope::All, &mut |d, _| {
                found = Some(d.map(|d| d.records.len()));
                b"read".to_vec().into()
            })
            .unwrap();
        assert_eq!(found, Some(data.as_ref().map(|d| d.records.len())));
        (data, at)
    };
    assert_eq!(again(s, 2, other), (None, size));
    assert_eq!(again(s, 1, stamp), (None, size + 1));
    // Each change in turn refuses a read made before it.
    let consent = |granted| crate::ConsentRow {
        subject: [1; 16],
        purpose: "marketing".into(),
        granted,
        at: 5,
    };
    let changes: Vec<Change<'_>> = vec![
        (
            "a record",
            Box::new(|s: &dyn Store| {
                s.write(
                    &WriteBatch {
                        records: vec![record(3, 3, "address")],
                        leaves: 1,
                        ..WriteBatch::default()
                    },
                    &mut leaf_body,
                )
                .map(drop)
                .unwrap();
            }),
        ),
        (
            "a consent",
            Box::new(move |s: &dyn Store| {
                s.write(
                    &WriteBatch {
                        consents: vec![consent(true)],
                        leaves: 1,
                        ..WriteBatch::default()
                    },
                    &mut leaf_body,
                )
                .map(drop)
                .unwrap();
            }),
        ),
        (
            "a correction",
            Box::new(|s: &dyn Store| {
                let mut new = record(1, 4, "address");
                new.collected_at = 2_000;
                s.write(
                    &WriteBatch {
                        records: vec![new],
                        supersede: vec![([1; 16], [1; 16], [4; 16])],
                        leaves: 1,
                        ..WriteBatch::default()
                    },
                    &mut leaf_body,
                )
                .map(drop)
                .unwrap();
            }),
        ),
        (
            "a rekey",
            Box::new(|s: &dyn Store| {
                let mut r = record(1, 2, "scan_event");
                r.key_id = 7;
                assert_eq!(s.rekey(&[r]).unwrap(), 1);
            }),
        ),
        (
            "a hold",
            Box::new(|s: &dyn Store| {
                s.put_holds(&[super::rights::hold(1, 50_000)], &mut leaf_body)
                    .map(drop)
                    .unwrap();
            }),
        ),
        (
            "a release",
            Box::new(|s: &dyn Store| {
                let released = s
                    .release_hold("hold-1", "officer", 2_000, &mut |_, _| {
                        b"release".to_vec().into()
                    })
                    .unwrap();
                assert_eq!(released.len(), 1);
            }),
        ),
        (
            "the sweep",
            Box::new(|s: &dyn Store| {
                assert!(s.sweep_expired(10_000, 100, None).unwrap().deleted > 0);
            }),
        ),
        (
            "another person's record",
            Box::new(|s: &dyn Store| {
                s.write(
                    &WriteBatch {
                        records: vec![record(5, 9, "address")],
                        leaves: 1,
                        ..WriteBatch::default()
                    },
                    &mut leaf_body,
                )
                .map(drop)
                .unwrap();
            }),
        ),
    ];
    for (what, change) in &changes {
        let (_, stamp) = s.read_unlogged(&[1; 16], ReadScope::All).unwrap().unwrap();
        change(s);
        let size = s.log_size().unwrap();
        // Made again with its leaf: what the store holds now.
        let (data, at) = again(s, 1, stamp);
        let now = s
            .read_unlogged(&[1; 16], ReadScope::All)
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(data.as_ref(), Some(&now), "after {what}");
        assert_eq!(
            (at, s.log_size().unwrap()),
            (size, size + 1),
            "one leaf after {what}"
        );
    }
    // The erasure's steps, each on its own.
    let erase = |s: &dyn Store| {
        s.erase(
            &[[5; 16]],
            3_000,
            &mut |_, _, _| b"erase".to_vec().into(),
            &mut |_, _| None,
        )
        .unwrap()
    };
    let steps: Vec<Change<'_>> = vec![
        (
            "an erasure",
            Box::new(move |s: &dyn Store| assert_eq!(erase(s).erased.len(), 1)),
        ),
        (
            "its finish",
            Box::new(|s: &dyn Store| s.finish_erasure(&[[5; 16]]).unwrap()),
        ),
        (
            "the purge",
            Box::new(|s: &dyn Store| {
                assert_eq!(s.purge_subjects(&[[5; 16]]).unwrap().len(), 1);
            }),
        ),
    ];
    for (what, change) in &steps {
        let (_, stamp) = s.read_unlogged(&[1; 16], ReadScope::All).unwrap().unwrap();
        change(s);
        let read_again = again(s, 1, stamp).0;
        assert!(read_again.is_some(), "after {what}");
        // Read again under the lock: with the generation of that snapshot.
        let carried = s
            .reads_carry_erasure_gen()
            .then(|| s.erasure_gen().unwrap());
        assert_eq!(
            read_again.and_then(|d| d.erasure_gen),
            carried,
            "after {what}"
        );
    }
}
