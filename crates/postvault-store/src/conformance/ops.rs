//! Checks of [`crate::PrincipalStore`] and [`crate::OpsStore`]: principals,
//! metadata, runs, intents and `check`'s counts.

use super::ledger::{request, submit};
use super::*;

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

pub fn meta_round_trips(s: &dyn Store) {
    assert_eq!(s.meta("vault_id").unwrap(), None);
    s.set_meta("vault_id", "a").unwrap();
    s.set_meta("vault_id", "b").unwrap();
    assert_eq!(s.meta("vault_id").unwrap().as_deref(), Some("b"));
}

pub(super) fn step(after: u64, through: u64, accepted: u64) -> crate::RunStep {
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
            &mut |idx, _| format!("intent {idx}").into_bytes().into(),
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
            leaves: vec![b"end".to_vec().into(), b"cover intent".to_vec().into()],
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
