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

/// A category's current records come person by person, paged.
pub fn category_records_come_person_by_person(s: &dyn Store) {
    let rec = |subject: u8, n: u8, category: &str, expires_at: i64| RecordRow {
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
    };
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
            s.category_records_into(
                "scan_event",
                500,
                after.as_ref(),
                None,
                limit,
                None,
                &mut page,
            )
            .unwrap();
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
