//! What the store keeps for retention, erasure and legal holds.
//!
//! Like the rest of the store these rows hold opaque subject refs, ids,
//! principal names and times; never a personal-data value.

use std::collections::BTreeMap;

use crate::SubjectRef;

/// How a record's `key_id` names the key that sealed it.
pub mod key_id {
    /// Sealed under the subject's data key alone: records written before
    /// schema 4.
    pub const SUBJECT: u32 = 0;
    /// Sealed under the subject's data key combined with the retention period
    /// key of (category, UTC day of `expires_at`). Every record collected
    /// since schema 4 that is not a mail-cover record.
    pub const PERIOD: u32 = u32::MAX;
    /// Sealed under the subject's data key combined with the subject's hold
    /// key: records kept by a legal hold (not mail-cover records).
    pub const HOLD: u32 = u32::MAX - 1;
    /// Values from 1 to `COVER_MAX` are mail-cover order numbers: sealed
    /// under the subject key, the period key and the order key combined.
    pub const COVER_MAX: u32 = 0x7fff_ffff;
}

/// A legal hold on one subject, from an approved instrument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldRow {
    /// The hold's id, shared by the subjects of one placement.
    pub id: String,
    /// The disclosure request whose approved instrument it comes from.
    pub disclosure: String,
    pub subject: SubjectRef,
    pub placed_by: String,
    /// Unix milliseconds, like every time here.
    pub placed_at: i64,
    /// The hold lapses at this time (exclusive).
    pub until: i64,
    /// The person is not shown the hold before this time (a court-ordered
    /// delay of the instrument).
    pub notice_after: Option<i64>,
    pub released_at: Option<i64>,
    pub released_by: Option<String>,
}

impl HoldRow {
    /// In force at `now`: not released, not lapsed.
    pub fn active(&self, now: i64) -> bool {
        self.released_at.is_none() && self.until > now
    }
}

/// Since when, up to `now`, holds the person may know of (no delay order
/// still running at `now`) have been in force on them without a gap: the
/// start of the run of such holds that reaches `now`. What holds kept past
/// retention since then, holds the person can see explain; what was kept
/// from before, only holds they may not know of yet. `None` when no such
/// hold is in force at `now`. `holds`: each of the subject's holds as
/// (placed at, until, released at, notice after).
pub fn known_hold_span(
    holds: impl IntoIterator<Item = (i64, i64, Option<i64>, Option<i64>)>,
    now: i64,
) -> Option<i64> {
    let spans: Vec<(i64, i64)> = holds
        .into_iter()
        .filter(|&(_, _, _, notice)| notice.is_none_or(|t| t <= now))
        .map(|(placed, until, released, _)| (placed, released.map_or(until, |r| r.min(until))))
        .collect();
    if !spans.iter().any(|&(s, e)| s <= now && now < e) {
        return None;
    }
    let mut since = now;
    // Back from now, through every span that reaches the start so far.
    while let Some(s) = spans
        .iter()
        .filter(|&&(s, e)| s < since && since <= e)
        .map(|&(s, _)| s)
        .min()
    {
        since = s;
    }
    Some(since)
}

/// What one erasure transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EraseOutcome {
    /// Subjects erased: their rows are dead (no read, scan or count sees
    /// them again; the purge deletes them, [`RightsStore::purge_erased`]) and
    /// they are pending until their keys are destroyed
    /// (`RightsStore::finish_erasure`).
    ///
    /// [`RightsStore::purge_erased`]: crate::RightsStore::purge_erased
    pub erased: Vec<SubjectRef>,
    /// Subjects refused because a legal hold is in force.
    pub held: Vec<SubjectRef>,
    /// Records erased (dead from this transaction on, deleted by the purge).
    pub records: u64,
    /// Those records by subject (only subjects that had any): what each
    /// person of a batch of erasures is told of their own.
    pub records_by: BTreeMap<SubjectRef, u64>,
    /// The index of the first leaf (one per subject asked for, in order).
    pub first_leaf: u64,
}

/// What [`RightsStore::finish_erasure_with`] did besides finishing.
///
/// [`RightsStore::finish_erasure_with`]: crate::RightsStore::finish_erasure_with
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureFinish {
    /// The index of the intent's completion leaf; `None` if no intent was
    /// given or it was already completed.
    pub completion_leaf: Option<u64>,
    /// The people purged, in ref order, each with its records deleted;
    /// `None` when no purge was asked for or it was left to the caller
    /// (more records than its bound).
    pub purged: Option<Vec<(SubjectRef, u64)>>,
}

/// What one retention sweep transaction deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepBatch {
    pub deleted: u64,
    pub by_category: BTreeMap<String, u64>,
}

/// What one purge transaction deleted: the rows of erased people.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeBatch {
    /// People whose rows were deleted (and who left the purge queue).
    pub people: u64,
    /// Records deleted.
    pub records: u64,
}

/// What an erasure's own transaction found of the legal holds on one
/// subject it was asked for. Decided inside that transaction, so a hold
/// another node places meanwhile is either seen whole (with its delay
/// order) or not at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Held {
    /// No hold in force: the subject is erased.
    #[default]
    No,
    /// Refused: a hold is in force, and at least one of the subject's
    /// holds in force carries no delay order still running: the person may
    /// know of the refusal, which that hold explains.
    Yes,
    /// Refused, and every one of the subject's holds in force carries a
    /// delay order still running (`notice_after` later than the erasure's
    /// `now`): the person may not learn of the refusal yet.
    Delayed,
}

impl Held {
    /// From what a backend read of the subject's holds in force: none
    /// (`None`), or whether every one of them carries a delay order still
    /// running.
    pub fn found(delayed: Option<bool>) -> Held {
        match delayed {
            None => Held::No,
            Some(false) => Held::Yes,
            Some(true) => Held::Delayed,
        }
    }

    /// The erasure was refused.
    pub fn refused(self) -> bool {
        self != Held::No
    }
}

/// Builds the leaf of one subject of an erasure: (index, subject, what the
/// transaction found of its holds).
pub type EraseLeafFn<'a> = dyn FnMut(u64, &SubjectRef, Held) -> crate::Leaf + 'a;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::known_hold_span;

    #[test]
    fn the_known_span_runs_back_from_now_without_a_gap() {
        let plain = |placed, until, released| (placed, until, released, None);
        // None in force: nothing.
        assert_eq!(known_hold_span([plain(0, 50, None)], 100), None);
        assert_eq!(known_hold_span([plain(0, 500, Some(90))], 100), None);
        // One in force: since its placement.
        assert_eq!(known_hold_span([plain(40, 500, None)], 100), Some(40));
        // Renewed: the released first placement reaches the second.
        assert_eq!(
            known_hold_span([plain(10, 500, Some(60)), plain(50, 500, None)], 100),
            Some(10)
        );
        // A gap: only the run that reaches now.
        assert_eq!(
            known_hold_span([plain(10, 500, Some(30)), plain(50, 500, None)], 100),
            Some(50)
        );
        // Adjoining spans join.
        assert_eq!(
            known_hold_span([plain(10, 50, None), plain(50, 500, None)], 100),
            Some(10)
        );
        // A delay order still running hides its hold, in force or not.
        assert_eq!(known_hold_span([(10, 500, None, Some(200))], 100), None);
        assert_eq!(
            known_hold_span([(10, 500, Some(60), Some(200)), plain(50, 500, None)], 100),
            Some(50)
        );
        // Run out: shown.
        assert_eq!(known_hold_span([(10, 500, None, Some(100))], 100), Some(10));
    }
}
