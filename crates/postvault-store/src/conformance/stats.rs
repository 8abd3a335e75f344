//! Checks of [`crate::StatsStore`]: the privacy-budget ledger and the scan
//! of one category's records.

use super::*;
use crate::{BudgetOutcome, BudgetSpend};

fn spend(amount: u64) -> BudgetSpend {
    BudgetSpend {
        principal: "analyst".into(),
        purpose: "statistics".into(),
        period: "day:2026-12-03".into(),
        amount,
        limit: 1_000_000,
        at: 5,
    }
}

/// A spend is checked, recorded and accounted by one leaf, for a
/// refusal too; the ledger never goes over its limit.
pub fn budget_spends_check_and_account_atomically(s: &dyn Store) {
    let mut leaf = |o: &BudgetOutcome, i: u64| format!("{o:?} at {i}").into_bytes();
    let (o, i) = s.spend_budget(&spend(600_000), &mut leaf).unwrap();
    assert_eq!(o, BudgetOutcome::Spent { remaining: 400_000 });
    assert_eq!(i, 0);
    let (o, i) = s.spend_budget(&spend(500_000), &mut leaf).unwrap();
    assert_eq!(o, BudgetOutcome::Exhausted { remaining: 400_000 });
    assert_eq!(i, 1);
    let (o, _) = s.spend_budget(&spend(400_000), &mut leaf).unwrap();
    assert_eq!(o, BudgetOutcome::Spent { remaining: 0 });
    // Another period, purpose or principal has its own budget.
    let mut other = spend(1_000_000);
    other.period = "day:2026-12-04".into();
    assert!(matches!(
        s.spend_budget(&other, &mut leaf).unwrap().0,
        BudgetOutcome::Spent { remaining: 0 }
    ));
    assert_eq!(s.log_size().unwrap(), 4);
    let leaves = s.leaves(0, 4).unwrap();
    assert_eq!(leaves[1], b"Exhausted { remaining: 400000 } at 1".to_vec());
    let rows = s.budgets().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].spent, rows[0].queries, rows[0].refused),
        (1_000_000, 2, 1)
    );
    assert_eq!(rows[0].period, "day:2026-12-03");
}

/// Concurrent spends that together would go over: exactly as many pass
/// as fit, and each has its leaf.
pub fn concurrent_spends_never_overspend(s: &dyn Store) {
    let before = s.log_size().unwrap();
    let spent: Vec<bool> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                sc.spawn(|| {
                    let mut leaf = |_: &BudgetOutcome, i: u64| format!("q {i}").into_bytes();
                    let (o, _) = s.spend_budget(&spend(400_000), &mut leaf).unwrap();
                    matches!(o, BudgetOutcome::Spent { .. })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(spent.iter().filter(|&&x| x).count(), 2, "{spent:?}");
    assert_eq!(s.log_size().unwrap(), before + 6);
    let rows = s.budgets().unwrap();
    assert_eq!(rows[0].spent, 800_000);
}

/// Record `n` (its id and sealed bytes all `n`) of person `subject`.
fn scan_record(subject: u8, n: u8, category: &str, expires_at: i64) -> RecordRow {
    RecordRow {
        id: [n; 16],
        subject: [subject; 16],
        category: category.into(),
        purpose: "delivery".into(),
        source: "svc".into(),
        collected_at: 1_000,
        expires_at,
        key_id: 0,
        sealed: vec![n],
        superseded_by: None,
    }
}

/// A category's current records come person by person, paged.
pub fn category_records_come_person_by_person(s: &dyn Store) {
    let rec = scan_record;
    let batch = WriteBatch {
        records: vec![
            rec(3, 1, "scan_event", 9_000),
            rec(1, 2, "scan_event", 9_000),
            rec(2, 3, "address", 9_000),
            rec(1, 4, "scan_event", 9_000),
            rec(2, 5, "scan_event", 9_000),
            // Expired at the scan's time: never returned.
            rec(2, 6, "scan_event", 100),
            rec(3, 7, "scan_event", 9_000),
        ],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&batch, &mut |_, _| b"w".to_vec().into()).unwrap();
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .category_records("scan_event", 500, after.as_ref(), None, 2, None)
            .unwrap();
        let Some(next) = page.next else { break };
        assert!(page.rows.last().is_some_and(|r| r.subject == next.0));
        after = Some(next);
        got.extend(page.rows.iter().map(|r| (r.subject[0], r.id[0])));
    }
    assert_eq!(got, vec![(1, 2), (1, 4), (2, 5), (3, 1), (3, 7)]);
    // A subject range: from person 2 (the nil id is before every id) up
    // to, not including, person 3; then from person 3 to the end.
    let range = |from: u8, until: Option<u8>| {
        let until = until.map(|u| [u; 16]);
        let start = (
            [from, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0u8; 16],
        );
        s.category_records("scan_event", 500, Some(&start), until.as_ref(), 100, None)
            .unwrap()
            .rows
            .iter()
            .map(|r| (r.subject[0], r.id[0]))
            .collect::<Vec<_>>()
    };
    assert_eq!(range(2, Some(3)), vec![(2, 5)]);
    assert_eq!(range(3, None), vec![(3, 1), (3, 7)]);
    assert_eq!(range(0, Some(2)), vec![(1, 2), (1, 4)]);
    // Two ranges scanned at once see what one scan sees.
    let (a, b) = std::thread::scope(|t| {
        let a = t.spawn(|| range(0, Some(2)));
        let b = t.spawn(|| range(2, None));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!([a, b].concat(), got);
    // Asked for the people who consented to a purpose: person 1 granted
    // it, person 2 withdrew it (the latest state counts), person 3 never
    // gave it; a consent to another purpose does not count.
    let consent = |subject: u8, purpose: &str, granted: bool, at: i64| crate::ConsentRow {
        subject: [subject; 16],
        purpose: purpose.into(),
        granted,
        at,
    };
    for c in [
        consent(1, "marketing", true, 10),
        consent(2, "marketing", true, 10),
        consent(2, "marketing", false, 20),
        consent(3, "research", true, 10),
    ] {
        s.write(
            &WriteBatch {
                consents: vec![c],
                leaves: 1,
                ..WriteBatch::default()
            },
            &mut |_, _| b"c".to_vec().into(),
        )
        .unwrap();
    }
    let consented = |after: Option<&crate::ScanPos>, limit| {
        let page = s
            .category_records("scan_event", 500, after, None, limit, Some("marketing"))
            .unwrap();
        let rows = page.rows.iter().map(|r| (r.subject[0], r.id[0])).collect();
        (rows, page.next)
    };
    let all: (Vec<(u8, u8)>, _) = consented(None, 100);
    assert_eq!(all.0, vec![(1, 2), (1, 4)]);
    let first = consented(None, 1);
    assert_eq!(first.0, vec![(1, 2)]);
    assert_eq!(consented(first.1.as_ref(), 1).0, vec![(1, 4)]);
    // Without the purpose, everyone's as before.
    assert_eq!(
        s.category_records("scan_event", 500, None, None, 100, None)
            .unwrap()
            .rows
            .len(),
        5
    );
    // Paged into one reused page, every row is what a fresh page holds,
    // whatever the last page's row at its place held (longer or shorter
    // strings and sealed bytes than the new one's).
    let reread = WriteBatch {
        records: vec![
            RecordRow {
                purpose: "research_with_a_long_name".into(),
                source: "a-much-longer-source-name".into(),
                sealed: vec![9; 300],
                ..rec(4, 8, "scan_event", 9_000)
            },
            RecordRow {
                purpose: "x".into(),
                source: "s".into(),
                sealed: Vec::new(),
                ..rec(4, 9, "scan_event", 9_000)
            },
        ],
        leaves: 1,
        ..WriteBatch::default()
    };
    s.write(&reread, &mut |_, _| b"w".to_vec().into()).unwrap();
    for limit in [1, 2, 3] {
        let mut page = crate::ScanPage::default();
        let mut after: Option<crate::ScanPos> = None;
        let mut pages = 0;
        loop {
            let ask = crate::ScanAsk {
                category: "scan_event",
                now: 500,
                after: after.as_ref(),
                until: None,
                limit,
                consented: None,
                blocks: None,
                people: limit,
                tail: None,
            };
            s.category_records_into(&ask, &mut page).unwrap();
            let fresh = s
                .category_records("scan_event", 500, after.as_ref(), None, limit, None)
                .unwrap();
            assert_eq!(page.rows, fresh.rows, "page {pages} of {limit}");
            assert_eq!(page.next, fresh.next);
            let Some(next) = page.next else {
                assert!(page.rows.is_empty());
                break;
            };
            after = Some(next);
            pages += 1;
        }
        assert_eq!(pages, 7usize.div_ceil(limit), "pages of {limit}");
    }
}

/// What a scan with blocks of `tag` hands out, paged `limit` people at a
/// time: every record once, as (subject, id), from a block (whose sealed
/// bytes are here the ids it holds) or a row; and how many came in blocks.
/// The same whether the scan finds its people from every row or from the
/// blocks and the category's tail.
fn scanned(
    s: &dyn Store,
    tag: &str,
    limit: usize,
    consented: Option<&str>,
) -> (Vec<(u8, u8)>, usize) {
    let walked = scanned_with(s, tag, limit, consented, None);
    if let Some(tail) = s.scan_tail("scan_event").unwrap() {
        assert_eq!(
            scanned_with(s, tag, limit, consented, Some(&tail)),
            walked,
            "the scan with the tail {tail:?} and without, {limit} a page"
        );
    }
    walked
}

/// [`scanned`] with the tail given, or without one.
fn scanned_with(
    s: &dyn Store,
    tag: &str,
    limit: usize,
    consented: Option<&str>,
    tail: Option<&[SubjectRef]>,
) -> (Vec<(u8, u8)>, usize) {
    let mut page = crate::ScanPage::default();
    let mut after: Option<crate::ScanPos> = None;
    let mut got = Vec::new();
    let mut in_blocks = 0;
    loop {
        let ask = crate::ScanAsk {
            category: "scan_event",
            now: 500,
            after: after.as_ref(),
            until: None,
            limit,
            consented,
            blocks: Some(tag),
            people: limit,
            tail,
        };
        s.category_records_into(&ask, &mut page).unwrap();
        let Some(next) = page.next else {
            assert!(page.rows.is_empty() && page.blocks.is_empty());
            break;
        };
        // Person by person: each one's blocks and rows in the page, in
        // subject order, never split over two pages once blocks are in use.
        let mut people: Vec<u8> = page
            .blocks
            .iter()
            .map(|b| b.subject[0])
            .chain(page.rows.iter().map(|r| r.subject[0]))
            .collect();
        people.sort_unstable();
        people.dedup();
        assert!(people.last().is_none_or(|p| *p <= next.0[0]));
        // At most `limit` rows, but for the person who reached it.
        assert!(
            page.rows.iter().filter(|r| r.subject != next.0).count() < limit.max(1),
            "a page of {} rows for a limit of {limit}",
            page.rows.len()
        );
        for b in &page.blocks {
            assert_eq!(b.tag, tag);
            assert_eq!(b.sealed.len() as u64, b.records);
            in_blocks += b.sealed.len();
            got.extend(b.sealed.iter().map(|id| (b.subject[0], *id)));
        }
        got.extend(page.rows.iter().map(|r| (r.subject[0], r.id[0])));
        after = Some(next);
    }
    got.sort_unstable();
    (got, in_blocks)
}

/// Builds blocks of tag `tag` for everyone: one a (key_id, expiry), its
/// sealed bytes the first byte of each record's id. Returns false for a
/// backend that keeps no blocks.
fn build(s: &dyn Store, tag: &str, people: usize) -> bool {
    let mut after = None;
    let mut begun = 0;
    loop {
        let Some(step) = build_step(s, tag, after, begun, people) else {
            return false;
        };
        begun = step.build;
        match step.next {
            Some(n) => after = Some(n),
            None => return true,
        }
    }
}

/// One step of [`build`]: up to `people` people after `after`, of the
/// build `begun` (any, for the first step).
fn build_step(
    s: &dyn Store,
    tag: &str,
    after: Option<SubjectRef>,
    begun: i64,
    people: usize,
) -> Option<crate::BlockStep> {
    {
        s.build_scan_blocks(
            "scan_event",
            500,
            after.as_ref(),
            begun,
            people,
            tag,
            &mut |subject, rows, upto| {
                let mut blocks: Vec<crate::ScanBlock> = Vec::new();
                for r in rows {
                    assert_eq!(&r.subject, subject);
                    assert_eq!(r.category, "scan_event");
                    assert!(r.superseded_by.is_none() && r.expires_at > 500);
                    match blocks
                        .iter_mut()
                        .find(|b| b.key_id == r.key_id && b.expires_at == r.expires_at)
                    {
                        Some(b) => {
                            b.sealed.push(r.id[0]);
                            b.records += 1;
                        }
                        None => blocks.push(crate::ScanBlock {
                            subject: *subject,
                            category: r.category.clone(),
                            key_id: r.key_id,
                            expires_at: r.expires_at,
                            records: 1,
                            upto: *upto,
                            tag: tag.into(),
                            sealed: vec![r.id[0]],
                        }),
                    }
                }
                Ok(Some(blocks))
            },
        )
        .unwrap()
    }
}

/// Scan blocks stand for the rows they were built of, and only as long as
/// those rows are unchanged: a new row is read beside them, a correction,
/// a re-seal, an expiry or a purge of a person's row drops the person's
/// blocks of the category in the same transaction, and blocks of another
/// tag are never handed out.
pub fn scan_blocks_stand_for_rows_until_they_change(s: &dyn Store) {
    let rec = scan_record;
    let write = |records: Vec<RecordRow>, supersede: Vec<([u8; 16], SubjectRef, [u8; 16])>| {
        s.write(
            &WriteBatch {
                records,
                supersede,
                leaves: 1,
                ..WriteBatch::default()
            },
            &mut |_, _| b"w".to_vec().into(),
        )
        .unwrap();
    };
    write(
        vec![
            rec(1, 1, "scan_event", 9_000),
            rec(1, 2, "scan_event", 9_000),
            rec(1, 3, "scan_event", 8_000),
            rec(2, 4, "scan_event", 9_000),
            rec(2, 5, "address", 9_000),
            rec(2, 6, "scan_event", 9_000),
            rec(3, 7, "scan_event", 9_000),
            rec(3, 8, "scan_event", 600),
            // Expired at the scan's time: in no block, never handed out.
            rec(4, 9, "scan_event", 100),
            rec(5, 10, "scan_event", 9_000),
        ],
        vec![],
    );
    let all = vec![
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 4),
        (2, 6),
        (3, 7),
        (3, 8),
        (5, 10),
    ];
    // Before any block: rows only, whatever the tag.
    assert_eq!(scanned(s, "t", 2, None), (all.clone(), 0));
    if !build(s, "t", 2) {
        return;
    }
    for limit in [1, 2, 100] {
        assert_eq!(
            scanned(s, "t", limit, None),
            (all.clone(), 8),
            "limit {limit}"
        );
        // Blocks of another tag are not read: rows instead.
        assert_eq!(scanned(s, "u", limit, None), (all.clone(), 0));
    }
    // Built and finished: no row is outside the blocks.
    assert_eq!(s.scan_tail("scan_event").unwrap(), Some(vec![]));
    // A new row is read beside the person's blocks: it is the tail.
    write(vec![rec(1, 11, "scan_event", 9_000)], vec![]);
    assert_eq!(s.scan_tail("scan_event").unwrap(), Some(vec![[1; 16]]));
    let mut now = all.clone();
    now.push((1, 11));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 8));
    // A correction drops the person's blocks: the old value is gone, the
    // new one read, and person 2's other record now comes as a row.
    write(
        vec![rec(2, 12, "scan_event", 9_000)],
        vec![([4; 16], [2; 16], [12; 16])],
    );
    now.retain(|r| *r != (2, 4));
    now.push((2, 12));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 6));
    // A correction of another category leaves them be.
    write(vec![rec(1, 13, "address", 9_000)], vec![]);
    write(
        vec![rec(1, 14, "address", 9_000)],
        vec![([13; 16], [1; 16], [14; 16])],
    );
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 6));
    // A re-seal drops them too (person 3, whose blocks held 2 records).
    let mut r7 = rec(3, 7, "scan_event", 9_000);
    r7.key_id = crate::key_id::HOLD;
    r7.sealed = vec![77];
    assert_eq!(s.rekey(&[r7]).unwrap(), 1);
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 4));
    // Rebuilt (person 5's new row too), then person 3's record of 600
    // expires and is swept: their blocks go in the sweep's transaction,
    // and their record left comes as a row.
    assert!(build(s, "t", 100));
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 9));
    write(vec![rec(5, 15, "scan_event", 700)], vec![]);
    assert!(build(s, "t", 100));
    now.push((5, 15));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 10));
    let swept = s.sweep_expired(650, 100, None).unwrap();
    assert_eq!(swept.deleted, 2, "person 3's record of 600 and person 4's");
    now.retain(|r| *r != (3, 8));
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), 10 - 2));
    // A person erased is dead at once, blocks and rows; the purge deletes
    // both.
    s.erase(
        &[[1; 16]],
        400,
        &mut |_, _, _| b"erase".to_vec().into(),
        &mut |_, _| None,
    )
    .unwrap();
    now.retain(|r| r.0 != 1);
    let (got, in_blocks) = scanned(s, "t", 2, None);
    assert_eq!(got, now);
    s.finish_erasure(&[[1; 16]]).unwrap();
    assert_eq!(s.purge_subjects(&[[1; 16]]).unwrap().len(), 1);
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), in_blocks));
    // Collected again, they have their new row and none of the old blocks.
    write(vec![rec(1, 16, "scan_event", 9_000)], vec![]);
    now.push((1, 16));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), in_blocks));
    // Consent: only people whose consent stands, blocks and rows alike.
    s.write(
        &WriteBatch {
            consents: vec![crate::ConsentRow {
                subject: [5; 16],
                purpose: "marketing".into(),
                granted: true,
                at: 10,
            }],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut |_, _| b"c".to_vec().into(),
    )
    .unwrap();
    let fives: Vec<(u8, u8)> = now.iter().copied().filter(|r| r.0 == 5).collect();
    assert_eq!(scanned(s, "t", 2, Some("marketing")).0, fives);
    // A row number freed at the end of the table and given again, below
    // where the tail began, is still read: each write lowers the tail to
    // its first row.
    write(
        vec![rec(6, 17, "scan_event", 600), rec(6, 18, "scan_event", 600)],
        vec![],
    );
    assert!(build(s, "t", 100));
    assert_eq!(s.scan_tail("scan_event").unwrap(), Some(vec![]));
    assert_eq!(s.sweep_expired(650, 100, None).unwrap().deleted, 2);
    write(vec![rec(5, 19, "scan_event", 9_000)], vec![]);
    assert_eq!(s.scan_tail("scan_event").unwrap(), Some(vec![[5; 16]]));
    now.push((5, 19));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None).0, now);
    assert_eq!(scanned(s, "t", 100, None).0, now);
    // Two builds at once, the second begun where the rows ended when the
    // first began (a row number given again between): only the one begun
    // last moves the tail. The first builds everyone, then person 7's row
    // (the last) expires and its number goes to a new row of person 5's,
    // then the second begins (one person done), then the first finishes.
    write(vec![rec(7, 20, "scan_event", 600)], vec![]);
    let first = build_step(s, "t", None, 0, 100).unwrap();
    assert!(first.next.is_some());
    assert_eq!(s.sweep_expired(650, 100, None).unwrap().deleted, 1);
    write(vec![rec(5, 21, "scan_event", 9_000)], vec![]);
    let second = build_step(s, "t", None, 0, 1).unwrap();
    assert_ne!(second.build, first.build);
    let done = build_step(s, "t", first.next, first.build, 100).unwrap();
    assert_eq!((done.people, done.next), (0, None));
    now.push((5, 21));
    now.sort_unstable();
    assert_eq!(scanned(s, "t", 2, None).0, now);
    assert_eq!(
        s.scan_tail("scan_event")
            .unwrap()
            .map(|t| t.contains(&[5; 16])),
        Some(true),
        "person 5's new row is still in the tail"
    );
    // The second finishes: its own rows are all in blocks.
    let mut after = second.next;
    loop {
        let step = build_step(s, "t", after, second.build, 1).unwrap();
        match step.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(s.scan_tail("scan_event").unwrap(), Some(vec![]));
    assert_eq!(scanned(s, "t", 2, None), (now.clone(), now.len()));
}
