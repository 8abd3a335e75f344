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
