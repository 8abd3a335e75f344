//! Checks of the leaf index ([`crate::LeafIndex`]).

use std::sync::Arc;

use super::*;
use crate::{Leaf, LeafIndex, LeafTokens};

/// Tokens of a test "person" `0`: distinct per (person, month, slot).
struct Tokens(u8);

impl LeafTokens for Tokens {
    fn token(&self, month: u32, slot: u32) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[0] = self.0;
        t[1..5].copy_from_slice(&month.to_be_bytes());
        t[5..9].copy_from_slice(&slot.to_be_bytes());
        t
    }

    fn seal(&self, token: &[u8; 16], idx: u64) -> [u8; 16] {
        let mut s = *token;
        s[8..].copy_from_slice(&idx.to_be_bytes());
        s
    }
}

fn filed(person: u8, month: u32, idx: u64) -> Leaf {
    Leaf {
        bytes: format!("leaf {idx} of {person}").into_bytes(),
        index: LeafIndex::Person {
            tokens: Arc::new(Tokens(person)),
            month,
        },
    }
}

/// The leaves filed under `person`'s slots of `month`, to the first free.
fn slots(s: &dyn Store, person: u8, month: u32) -> Vec<u64> {
    let t = Tokens(person);
    let tokens: Vec<[u8; 16]> = (0..300).map(|n| t.token(month, n)).collect();
    let found = s.leaf_index_find(&tokens).unwrap();
    let taken = found.iter().take_while(|f| f.is_some()).count();
    assert!(
        found[taken..].iter().all(Option::is_none),
        "person {person}'s slots of month {month} are not a prefix: {found:?}"
    );
    found.into_iter().flatten().collect()
}

/// Every leaf with an index is filed once, in its month's next free slot,
/// by every path that appends leaves; a leaf without one is not filed; a
/// failed transaction files nothing; more than a window's leaves of one
/// person in one month (64) go on into the next window.
pub fn leaf_index_files_each_tagged_leaf_once(s: &dyn Store) {
    assert_eq!(s.leaf_indexed_from().unwrap(), 0);
    assert!(s.leaf_index_months().unwrap().is_empty());
    // A batch: 1, 1, none, 2, 1 (another month).
    s.append_leaves(5, &mut |idx, i| match i {
        0 | 1 => filed(1, 600, idx),
        2 => leaf_body(idx, i),
        3 => filed(2, 600, idx),
        _ => filed(1, 601, idx),
    })
    .unwrap();
    assert_eq!(slots(s, 1, 600), vec![0, 1]);
    assert_eq!(slots(s, 2, 600), vec![3]);
    assert_eq!(slots(s, 1, 601), vec![4]);
    assert_eq!(s.leaf_index_months().unwrap(), vec![600, 601]);
    // A read, a write batch and an erasure file theirs too.
    s.read_accounted(&[7; 16], &mut |_, idx| filed(1, 600, idx))
        .unwrap();
    s.write(
        &WriteBatch {
            records: vec![record(1, 7, "address")],
            leaves: 1,
            ..WriteBatch::default()
        },
        &mut |idx, _| filed(2, 600, idx),
    )
    .unwrap();
    s.erase(
        &[[9; 16]],
        1_000,
        &mut |idx, _, _| filed(1, 600, idx),
        &mut |_, _| None,
    )
    .unwrap();
    assert_eq!(slots(s, 1, 600), vec![0, 1, 5, 7]);
    assert_eq!(slots(s, 2, 600), vec![3, 6]);
    // A failed batch files nothing.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.append_leaves(2, &mut |idx, i| {
            assert!(i == 0, "leaf callback failure injected");
            filed(1, 600, idx)
        })
    }));
    assert!(r.is_err());
    assert_eq!(slots(s, 1, 600), vec![0, 1, 5, 7]);
    // 70 leaves of one person in one month, in one transaction: the
    // first window's 64 slots, then the second's.
    let first = s
        .append_leaves(70, &mut |idx, _| filed(3, 602, idx))
        .unwrap();
    assert_eq!(slots(s, 3, 602), (first..first + 70).collect::<Vec<_>>());
    // And one more, alone, finds slot 70.
    let more = s
        .append_leaves(1, &mut |idx, _| filed(3, 602, idx))
        .unwrap();
    assert_eq!(slots(s, 3, 602).len(), 71);
    assert_eq!(slots(s, 3, 602).last(), Some(&more));
    // Reads file theirs one by one, past the first window too.
    let mut read_at = Vec::new();
    for _ in 0..66 {
        let (_, idx) = s
            .read_accounted(&[8; 16], &mut |_, idx| filed(4, 603, idx))
            .unwrap();
        read_at.push(idx);
    }
    assert_eq!(slots(s, 4, 603), read_at);
    // One row per filed leaf, nothing for the leaf without an index.
    let size = s.log_size().unwrap();
    // Read a page at a time, by token, every row once.
    let mut rows = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s.leaf_index_page(after.as_deref(), 7).unwrap();
        assert!(page.len() <= 7);
        rows.extend(page.iter().cloned());
        match page.last() {
            Some(r) if page.len() == 7 => after = Some(r.token.clone()),
            _ => break,
        }
    }
    assert!(rows.windows(2).all(|w| w[0].token < w[1].token));
    let mut filed: Vec<u64> = rows.iter().map(|r| r.idx).collect();
    filed.sort_unstable();
    let expect: Vec<u64> = (0..size).filter(|&i| i != 2).collect();
    assert_eq!(filed, expect);
    // Each with its token and the seal made of it.
    let t = Tokens(1);
    let first = rows.iter().find(|r| r.idx == 0).unwrap();
    assert_eq!(first.token, t.token(600, 0).to_vec());
    assert_eq!(first.seal, t.seal(&t.token(600, 0), 0).to_vec());
    assert!(
        rows.iter()
            .all(|r| r.seal[..8] == r.token[..8] && r.seal[8..] == r.idx.to_be_bytes())
    );
    // Leaves by index, in the order asked.
    assert_eq!(
        s.leaves_at(&[4, 0]).unwrap(),
        vec![b"leaf 4 of 1".to_vec(), b"leaf 0 of 1".to_vec()]
    );
    assert!(matches!(s.leaves_at(&[size]), Err(StoreError::Corrupt(_))));
}

/// A person's leaves filed again: their leaves (those given, and those
/// appended since that the tail claims) fill slots 0, 1, ... of each month
/// in log order; a row already right is not touched; stray filings of
/// theirs go, and rows under their tokens that are not theirs; nobody
/// else's filings change.
pub fn refiled_leaves_fill_their_slots_in_order(s: &dyn Store) {
    // Person 1: three leaves of month 600 and one of 601 (appended "after
    // the scan"); person 2: one of 600; one leaf without an index.
    let first = s
        .append_leaves(6, &mut |idx, i| match i {
            0 | 1 | 3 => filed(1, 600, idx),
            2 => filed(2, 600, idx),
            4 => filed(1, 601, idx),
            _ => leaf_body(idx, i),
        })
        .unwrap();
    let (a, b, d, c, e) = (first, first + 1, first + 2, first + 3, first + 4);
    let tokens: Arc<dyn LeafTokens> = Arc::new(Tokens(1));
    let mut asked = Vec::new();
    let plan = crate::RefilePlan {
        leaves: vec![(c, 600), (a, 600), (b, 600), (a, 600)],
        scanned: e,
        months: vec![600, 601, 602],
        stray: vec![],
    };
    let done = s
        .refile_leaves(&tokens, &plan, &mut |idx, bytes| {
            asked.push(idx);
            (bytes == format!("leaf {idx} of 1").as_bytes()).then_some(601)
        })
        .unwrap();
    // The tail is every leaf from the scan's end on; a whole index is
    // left as it was, but for the tail's leaf of theirs, filed again
    // (wherever it had gone).
    assert_eq!(asked, vec![e, e + 1]);
    assert_eq!(
        done,
        crate::Refiled {
            leaves: 4,
            written: 1,
            removed: 1,
            months: 2
        }
    );
    assert_eq!(slots(s, 1, 600), vec![a, b, c]);
    assert_eq!(slots(s, 1, 601), vec![e]);
    // Leaf b is found not theirs: its slot is taken by c, the slot after
    // is cleared; the rows before are not touched.
    let size = s.log_size().unwrap();
    let plan = crate::RefilePlan {
        leaves: vec![(a, 600), (c, 600), (e, 601)],
        scanned: size,
        months: vec![600, 601],
        stray: vec![],
    };
    let done = s.refile_leaves(&tokens, &plan, &mut |_, _| None).unwrap();
    assert_eq!(
        done,
        crate::Refiled {
            leaves: 3,
            written: 1,
            removed: 2,
            months: 2
        }
    );
    assert_eq!(slots(s, 1, 600), vec![a, c]);
    assert_eq!(slots(s, 1, 601), vec![e]);
    assert_eq!(slots(s, 2, 600), vec![d]);
    // A leaf of person 1 filed under person 2's tokens (moved there):
    // named stray, it leaves person 2's slots and joins person 1's.
    let moved = s
        .append_leaves(1, &mut |idx, _| filed(2, 600, idx))
        .unwrap();
    assert_eq!(slots(s, 2, 600), vec![d, moved]);
    let plan = crate::RefilePlan {
        leaves: vec![(a, 600), (c, 600), (moved, 600), (e, 601)],
        scanned: moved + 1,
        months: vec![600],
        stray: vec![
            (Tokens(2).token(600, 1), moved),
            (Tokens(2).token(600, 0), moved),
        ],
    };
    let done = s.refile_leaves(&tokens, &plan, &mut |_, _| None).unwrap();
    assert_eq!((done.written, done.removed), (1, 1), "{done:?}");
    assert_eq!(slots(s, 1, 600), vec![a, c, moved]);
    assert_eq!(slots(s, 2, 600), vec![d]);
    // A leaf appended now takes the next slot, as ever.
    let next = s
        .append_leaves(1, &mut |idx, _| filed(1, 600, idx))
        .unwrap();
    assert_eq!(slots(s, 1, 600), vec![a, c, moved, next]);
}

/// Person `.0`'s tokens from slot `.1` on: what a filing past a removed
/// one, in a later window, looks like.
struct Shifted(u8, u32);

impl LeafTokens for Shifted {
    fn token(&self, month: u32, slot: u32) -> [u8; 16] {
        Tokens(self.0).token(month, slot + self.1)
    }

    fn seal(&self, token: &[u8; 16], idx: u64) -> [u8; 16] {
        Tokens(self.0).seal(token, idx)
    }
}

/// Person `.0`'s tokens with a seal nobody with the key would make.
struct Forged(u8);

impl LeafTokens for Forged {
    fn token(&self, month: u32, slot: u32) -> [u8; 16] {
        Tokens(self.0).token(month, slot)
    }

    fn seal(&self, _: &[u8; 16], _: u64) -> [u8; 16] {
        [0xEE; 16]
    }
}

/// A refile reads every month's slots before it removes anything: filings
/// far past a gap (a later window), and one of a leaf appended while the
/// caller scanned, are all read, cleared and written in place; a row whose
/// seal is not the key's is written again.
pub fn refiled_leaves_clear_far_filings_and_forged_seals(s: &dyn Store) {
    let far = |idx: u64| Leaf {
        bytes: format!("leaf {idx} of 5").into_bytes(),
        index: LeafIndex::Person {
            tokens: Arc::new(Shifted(5, 64)),
            month: 600,
        },
    };
    // Three leaves filed at slots 64, 65, 66 (window 0 left empty).
    let first = s.append_leaves(3, &mut |idx, _| far(idx)).unwrap();
    let scanned = s.log_size().unwrap();
    // One more, appended "while the caller scanned": at slot 67.
    let tail = s.append_leaves(1, &mut |idx, _| far(idx)).unwrap();
    let t = Tokens(5);
    let plan = crate::RefilePlan {
        leaves: (first..first + 3).map(|i| (i, 600)).collect(),
        scanned,
        months: vec![600],
        stray: (0..3)
            .map(|k| (t.token(600, 64 + k as u32), first + k))
            .collect(),
    };
    let tokens: Arc<dyn LeafTokens> = Arc::new(Tokens(5));
    let done = s
        .refile_leaves(&tokens, &plan, &mut |idx, bytes| {
            (bytes == format!("leaf {idx} of 5").as_bytes()).then_some(600)
        })
        .unwrap();
    assert_eq!(
        (done.leaves, done.written, done.removed),
        (4, 4, 4),
        "{done:?}"
    );
    assert_eq!(slots(s, 5, 600), vec![first, first + 1, first + 2, tail]);
    let far_slots: Vec<[u8; 16]> = (64..140).map(|n| t.token(600, n)).collect();
    assert!(
        s.leaf_index_find(&far_slots)
            .unwrap()
            .iter()
            .all(Option::is_none),
        "a filing past the gap was left"
    );
    // A row under the right token for the right leaf, but with a forged
    // seal: written again with the key's.
    let forged = s
        .append_leaves(1, &mut |idx, _| Leaf {
            bytes: format!("leaf {idx} of 5").into_bytes(),
            index: LeafIndex::Person {
                tokens: Arc::new(Forged(5)),
                month: 600,
            },
        })
        .unwrap();
    assert_eq!(slots(s, 5, 600).last(), Some(&forged));
    let mut plan = plan;
    plan.leaves = vec![
        (first, 600),
        (first + 1, 600),
        (first + 2, 600),
        (tail, 600),
        (forged, 600),
    ];
    plan.scanned = s.log_size().unwrap();
    plan.stray.clear();
    let done = s.refile_leaves(&tokens, &plan, &mut |_, _| None).unwrap();
    assert_eq!((done.written, done.removed), (1, 1), "{done:?}");
    let mut after = None;
    let mut seal = None;
    loop {
        let page = s.leaf_index_page(after.as_deref(), 50).unwrap();
        if let Some(r) = page.iter().find(|r| r.idx == forged) {
            seal = Some(r.seal.clone());
        }
        match page.last() {
            Some(r) if page.len() == 50 => after = Some(r.token.clone()),
            _ => break,
        }
    }
    assert_eq!(seal, Some(t.seal(&t.token(600, 4), forged).to_vec()));
    // And a whole index is left as it is.
    let done = s.refile_leaves(&tokens, &plan, &mut |_, _| None).unwrap();
    assert_eq!((done.written, done.removed), (0, 0), "{done:?}");
}
