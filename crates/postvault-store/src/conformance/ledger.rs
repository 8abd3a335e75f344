//! Checks of [`crate::LedgerStore`]: submissions counted in their transaction,
//! steps written with their leaves and accounting.

use super::*;

pub(super) fn request(
    requester: &str,
    at: i64,
    instrument: u8,
    case: u8,
    status: &str,
) -> DisclosureRow {
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

pub(super) fn submit(
    s: &dyn Store,
    row: DisclosureRow,
    now: i64,
) -> (crate::SubmitFacts, DisclosureRow) {
    let q = SubmitQuery {
        requester: row.requester.clone(),
        instrument_key: row.instrument_key,
        case_key: row.case_key,
        since_24h: now - 100,
        since_30d: now - 1_000,
        subjects: row.subjects.clone(),
        protective_category: crate::PROTECTIVE_INDEX_CATEGORY.into(),
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
        protective_category: crate::PROTECTIVE_INDEX_CATEGORY.into(),
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
    assert!(!f.used_before && !f.used_by_other);
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
    assert!(!f.used_by_other, "by the same requester");
    assert_eq!(people(&f), (1, 4, 4));
    assert_eq!(
        f.case_people_30d_own, 4,
        "the case's people by this requester"
    );
    // Another requester: its own counts, but the same document is used and
    // the same case is counted whoever presents it.
    let (f, _) = submit(s, request("fbi", 1_995, 1, 9, "pending_approval"), 2_000);
    assert!(
        f.used_by_other && !f.used_before,
        "a document is used whoever presents it, and told apart by requester"
    );
    assert_eq!(
        (
            f.requester_people_24h,
            f.case_people_30d,
            f.case_people_30d_own,
            f.seq
        ),
        (0, 5, 0, 4)
    );
    let (f, _) = submit(s, request("fbi", 1_996, 2, 8, "pending_approval"), 2_000);
    assert!(!f.used_before && !f.used_by_other);
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

/// A pack whose protective-order category has an id of its own: the
/// submission reads that category's records of the named subjects (without
/// the partial index, which names the postal id) and nothing else they hold;
/// the postal id still goes through the index.
pub fn submissions_read_the_protective_category_they_are_given(s: &dyn Store) {
    s.write(
        &WriteBatch {
            records: vec![
                record(7, 1, "address"),
                record(7, 2, "protective_order"),
                record(7, 3, "safety_order"),
                record(8, 4, "safety_order"),
            ],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut leaf_body,
    )
    .unwrap();
    for (n, category, want) in [
        (1u8, "safety_order", [3u8; 16]),
        (2, crate::PROTECTIVE_INDEX_CATEGORY, [2; 16]),
    ] {
        let mut row = request("ice", 1_500, n, 9, "refused");
        row.subjects = vec![[7; 16], [9; 16]];
        let q = SubmitQuery {
            requester: "ice".into(),
            instrument_key: row.instrument_key,
            case_key: row.case_key,
            since_24h: 1_900,
            since_30d: 1_000,
            subjects: row.subjects.clone(),
            protective_category: category.into(),
        };
        let mut seen = None;
        s.submit_disclosure(&q, &mut |_, data, idx| {
            seen = Some(data.to_vec());
            (row.clone(), format!("submit {idx}").into_bytes())
        })
        .unwrap();
        let data = seen.unwrap();
        assert_eq!(data.len(), 2, "{category}");
        assert_eq!(
            data[0].records.iter().map(|r| r.id).collect::<Vec<_>>(),
            [want],
            "only the {category} record"
        );
        assert!(data[1].records.is_empty(), "{category}");
        assert!(data.iter().all(|d| !d.exists), "no existence bit");
    }
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
                leaves: vec![b"refused".to_vec().into()],
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
                    leaves: vec![format!("fetch {first}").into_bytes().into()],
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
