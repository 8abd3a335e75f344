//! The leaf index: where a person's log leaves are, for their access
//! report, without a scan of the whole log and without linking anything in
//! the store to anyone.
//!
//! Each leaf with a subject tag is filed under one 16-byte token. A
//! person's tokens are `LeafTokens::token(month, slot)`, made by the facade
//! with the person's tag key (HMAC, so pseudorandom without it): slot 0, 1,
//! 2, ... of the month of the leaf's time, taken in order, so the tokens of
//! a month in use are always a prefix `0..n` of its slots. A leaf about
//! nobody known is filed under a token from a key of its own that is
//! thrown away: the store holds one row per tagged leaf either way, and no
//! two rows show that they concern the same person. The report asks for
//! slot 0, 1, ... of each month in use until one is missing.
//!
//! Each row also keeps a seal ([`LeafTokens::seal`]) of its token and leaf
//! with a key of the vault's, so a row changed is found by `check`, like a
//! row removed or added.
//!
//! Finding a month's next free slot costs the same number of look-ups for
//! everyone with fewer than [`FIRST_WINDOW`] leaves in that month, known
//! or not (see [`free_slot`]); beyond, the number of windows searched grows
//! with the logarithm of the month's count.

use std::sync::Arc;

/// A person's index tokens (docs/formats.md, "leaf index").
pub trait LeafTokens: Send + Sync {
    /// The token of `slot` in `month` (months since January 1970, UTC).
    fn token(&self, month: u32, slot: u32) -> [u8; 16];

    /// The seal kept with a filing of leaf `idx` under `token`: a MAC with
    /// a key of the vault's (the same for everyone), so `check` finds a row
    /// changed or made by someone without it.
    fn seal(&self, token: &[u8; 16], idx: u64) -> [u8; 16];
}

/// What the store files a leaf under.
#[derive(Clone, Default)]
pub enum LeafIndex {
    /// Nothing: a leaf with no subject tag (batches, decisions about no one).
    #[default]
    None,
    /// The next free slot of `month` in `tokens`.
    Person {
        tokens: Arc<dyn LeafTokens>,
        month: u32,
    },
}

impl std::fmt::Debug for LeafIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeafIndex::None => f.write_str("None"),
            LeafIndex::Person { month, .. } => write!(f, "Person {{ month: {month} }}"),
        }
    }
}

/// A log leaf as a writer hands it to the store: its bytes, and what it is
/// filed under in the leaf index.
#[derive(Clone, Debug, Default)]
pub struct Leaf {
    pub bytes: Vec<u8>,
    pub index: LeafIndex,
}

impl From<Vec<u8>> for Leaf {
    fn from(bytes: Vec<u8>) -> Leaf {
        Leaf {
            bytes,
            index: LeafIndex::None,
        }
    }
}

/// One row of the leaf index, as `check` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafIndexRow {
    pub idx: u64,
    pub token: Vec<u8>,
    pub seal: Vec<u8>,
}

/// What [`crate::LogStore::refile_leaves`] is to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefilePlan {
    /// The person's leaves up to `scanned`, as `(index, month)`.
    pub leaves: Vec<(u64, u32)>,
    /// The log size the caller's scan reached.
    pub scanned: u64,
    /// Months whose slots of the person's are set right (those their
    /// report looks in), besides the months of their leaves.
    pub months: Vec<u32>,
    /// Filings of the person's leaves under tokens not theirs for it
    /// (`(token, index)`, from a scan of the index): removed if still so.
    pub stray: Vec<([u8; 16], u64)>,
}

/// What [`crate::LogStore::refile_leaves`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refiled {
    /// The person's leaves, now each filed once in its month's slots.
    pub leaves: u64,
    /// Rows written (slots that were free or held another leaf).
    pub written: u64,
    /// Rows removed: stray filings, and slots holding the wrong leaf or
    /// beyond the person's leaves.
    pub removed: u64,
    /// The months their leaves are filed under.
    pub months: u64,
}

/// The changes that set one month's slots to `want` (the person's leaves
/// in log order): `have` is what the slots hold now, slot by slot (`None`
/// free), as far as they were read. Returns the slots to clear and the
/// `(slot, index)` filings to write; a slot already holding its leaf is in
/// neither.
pub fn refile_changes(have: &[Option<u64>], want: &[u64]) -> (Vec<u32>, Vec<(u32, u64)>) {
    let mut clear = Vec::new();
    let mut write = Vec::new();
    for slot in 0..have.len().max(want.len()) {
        let (h, w) = (have.get(slot).copied().flatten(), want.get(slot).copied());
        if h == w {
            continue;
        }
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        if h.is_some() {
            clear.push(slot);
        }
        if let Some(w) = w {
            write.push((slot, w));
        }
    }
    (clear, write)
}

/// What a refile reads a slot's row as: the leaf it files, or
/// [`WRONG_ROW`] when its seal is not the one of that token and leaf, or
/// its leaf is out of range (changed by someone without the seal key: it
/// is written again).
pub fn refile_row(tokens: &dyn LeafTokens, token: &[u8; 16], idx: i64, seal: &[u8]) -> u64 {
    match u64::try_from(idx) {
        Ok(i) if tokens.seal(token, i)[..] == *seal => i,
        _ => WRONG_ROW,
    }
}

/// A slot's row read as wrong by [`refile_row`]: no leaf has this index.
pub const WRONG_ROW: u64 = u64::MAX;

/// Whether a month's slots read so far (`have`) are read far enough for a
/// refile with `own` leaves: past them, and ending in a window's worth
/// ([`FIRST_WINDOW`]) of free slots, or at the month's end.
pub fn refile_read_enough(have: &[Option<u64>], own: usize) -> bool {
    let (last, len) = slot_window(LAST_WINDOW);
    if have.len() >= (last + len) as usize {
        return true;
    }
    let free_tail = have.iter().rev().take_while(|h| h.is_none()).count();
    have.len() >= own && free_tail >= FIRST_WINDOW as usize
}

/// Slots of a month's first window.
pub const FIRST_WINDOW: u32 = 64;

/// The last window searched: 64 * (2^21 - 1), some 134 million leaves about
/// one person in one month, is where a month is full.
pub const LAST_WINDOW: u32 = 20;

/// Window `w` of a month's slots, `(first slot, length)`: 64 slots, then
/// 128, 256, ...
pub fn slot_window(w: u32) -> (u32, u32) {
    let len = FIRST_WINDOW << w.min(LAST_WINDOW);
    (len - FIRST_WINDOW, len)
}

/// The first slot of `start..start + len` (`len` a power of two) that
/// `taken` says is free, given that the taken slots are a prefix; `None`
/// if every slot is taken. Asks `taken` exactly `log2(len) + 1` times,
/// whatever the answer, so how long it took does not tell how many slots
/// were taken.
pub fn free_slot_in<E>(
    start: u32,
    len: u32,
    taken: &mut impl FnMut(u32) -> Result<bool, E>,
) -> Result<Option<u32>, E> {
    let end = start + len;
    let (mut lo, mut hi) = (start, end);
    for _ in 0..=len.trailing_zeros() {
        if lo < hi {
            let mid = lo + (hi - lo) / 2;
            if taken(mid)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        } else {
            // Settled: the same look-up again, for the same cost.
            taken(lo.min(end - 1))?;
        }
    }
    Ok((lo < end).then_some(lo))
}

/// The first free slot of a month whose taken slots are a prefix, window
/// by window (see [`free_slot_in`]); `None` if the month is full.
pub fn free_slot<E>(mut taken: impl FnMut(u32) -> Result<bool, E>) -> Result<Option<u32>, E> {
    for w in 0..=LAST_WINDOW {
        let (start, len) = slot_window(w);
        if let Some(s) = free_slot_in(start, len, &mut taken)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_free_slot_is_the_count_at_the_same_cost_within_a_window() {
        for count in (0..300).chain([447, 448, 449, 1000]) {
            let mut asked = 0;
            let slot = free_slot(|s| {
                asked += 1;
                Ok::<_, ()>(s < count)
            })
            .unwrap();
            assert_eq!(slot, Some(count));
            // Window 0 costs 7 look-ups, window 1 8, window 2 9, ...
            let windows = (0..)
                .find(|&w| slot_window(w).0 + slot_window(w).1 > count)
                .unwrap();
            let expect: u32 = (0..=windows)
                .map(|w| slot_window(w).1.trailing_zeros() + 1)
                .sum();
            assert_eq!(asked, expect, "count {count}");
        }
    }

    #[test]
    fn windows_follow_each_other() {
        let mut next = 0;
        for w in 0..10 {
            let (start, len) = slot_window(w);
            assert_eq!(start, next);
            assert!(len.is_power_of_two());
            next = start + len;
        }
    }
}
