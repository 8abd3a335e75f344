//! Storage for postvault: the [`Store`] and [`KeyStore`] traits, the embedded
//! SQLite backend, and the conformance suite every backend must pass.
//!
//! [`Store`] is the sum of one trait per concern: [`RecordStore`] (records,
//! consents, lookups and reads), [`LogStore`] (leaves, stored hashes,
//! checkpoints, cosignatures), [`LedgerStore`] (the disclosure ledger),
//! [`RightsStore`] (retention, erasure, holds, re-keying), [`PrincipalStore`],
//! [`OpsStore`] (runs, intents, `check`'s counts, metadata) and
//! [`StatsStore`] (the privacy-budget ledger and the statistics scan). A caller
//! names the traits whose methods it calls in a `use`; `Box<dyn Store>`
//! carries them all.
//!
//! The store only ever sees opaque subject refs, category and purpose ids,
//! timestamps, sealed envelopes and finished log leaves. It knows nothing of
//! policy, crypto or the log format: the facade hands it bytes and callbacks.
//!
//! Architecture invariant: every write is one transaction that either
//! commits durably (WAL, `synchronous=FULL`) or leaves nothing behind, and the
//! leaves accounting for a write or a read are part of that same transaction.

pub mod conformance;
mod disclosure;
mod error;
pub mod group;
mod leaf_index;
mod ops;
mod rights;
pub mod sql;
mod sqlite;
mod sqlite_ops;
mod stats;

pub use disclosure::{
    AccountingRow, DisclosureKeys, DisclosureRow, DisclosureStep, PROTECTIVE_INDEX_CATEGORY,
    PlanFn, StepFn, SubmitFacts, SubmitFn, SubmitQuery,
};
pub use error::StoreError;
pub use leaf_index::{
    FIRST_WINDOW, LAST_WINDOW, Leaf, LeafIndex, LeafIndexRow, LeafTokens, RefilePlan, Refiled,
    WRONG_ROW, free_slot, free_slot_in, refile_changes, refile_read_enough, refile_row,
    slot_window,
};
pub use ops::{
    EraseIntentFn, Intent, IntentRow, KeyAction, KeyItem, KeyUse, RewrapCount, RewrapFn, RunBatch,
    RunRow, RunStep,
};
pub use rights::{
    EraseLeafFn, EraseOutcome, ErasureFinish, Held, HoldRow, PurgeBatch, SweepBatch, key_id,
    known_hold_span,
};
pub use sqlite::{
    Checkpointer, INLINE_CHECKPOINT_PAGES, KEYS_SCHEMA_VERSION, OpenMode, SCHEMA_VERSION,
    SQLITE_PRAGMAS, SqliteKeyStore, SqliteStore,
};
pub use sqlite_ops::{
    Durability, Probe, backup_file, check_durability, durability_of, fold_wal, probe,
};
pub use stats::{BudgetLeafFn, BudgetOutcome, BudgetRow, BudgetSpend, decide as stats_decide};

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;

/// The opaque reference under which a subject is stored (a keyed hash).
pub type SubjectRef = [u8; 16];

/// A stored record: header in the clear, fields sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRow {
    /// UUIDv7 bytes.
    pub id: [u8; 16],
    pub subject: SubjectRef,
    pub category: String,
    pub purpose: String,
    /// The principal that collected it.
    pub source: String,
    /// Unix milliseconds.
    pub collected_at: i64,
    /// Unix milliseconds; never returned after this.
    pub expires_at: i64,
    /// Which key sealed it: see [`key_id`].
    pub key_id: u32,
    pub sealed: Vec<u8>,
    /// A correction replaced it with this record; kept as history.
    pub superseded_by: Option<[u8; 16]>,
}

/// A consent state of one subject for one purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRow {
    pub subject: SubjectRef,
    pub purpose: String,
    pub granted: bool,
    /// Unix milliseconds.
    pub at: i64,
}

/// A blind-index token pointing at a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupRow {
    pub token: [u8; 16],
    pub subject: SubjectRef,
    pub record: [u8; 16],
}

/// A principal: a service, staff member, officer, agency or auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRow {
    pub name: String,
    pub role: String,
    /// SHA-256 of the bearer token; the token itself is never stored.
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    /// When the principal was revoked: its token is refused from then on.
    pub revoked_at: Option<i64>,
}

/// Everything one collection batch writes, atomically.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub records: Vec<RecordRow>,
    pub lookups: Vec<LookupRow>,
    pub consents: Vec<ConsentRow>,
    /// How many log leaves account for this batch.
    pub leaves: usize,
    /// The erasure generation the batch's keys were read under: the write
    /// fails with [`StoreError::Conflict`] if an erasure ran since, so no
    /// record is ever written under a key being destroyed.
    pub erasure_gen: Option<u64>,
    /// Corrections: (record, its subject, the record of this batch that
    /// replaces it). Each must be a current record of that subject, or the
    /// batch fails with [`StoreError::Stale`].
    pub supersede: Vec<([u8; 16], SubjectRef, [u8; 16])>,
    /// The collection run this batch belongs to: its progress is written in
    /// the same transaction, and the batch fails with
    /// [`StoreError::RunMoved`] if the run's stored progress is not the
    /// step's `after_line` (another process committed these lines).
    pub run: Option<RunStep>,
}

/// What the store holds about one subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectData {
    /// The store holds a record or a consent of the subject.
    pub exists: bool,
    pub records: Vec<RecordRow>,
    pub consents: Vec<ConsentRow>,
    /// Under [`ReadScope::Person`] only: since when legal holds the person
    /// may know of at the read's time have been in force on them without a
    /// gap, up to that time ([`known_hold_span`]); `None` when none is in
    /// force. They see what holds keep past retention as far as that span
    /// explains it: records whose retention ended within it. Read in the
    /// same snapshot as the records: a hold released meanwhile, a delayed
    /// one staying, is never shown through them. A backend may answer
    /// `None` for a subject without records: there is nothing a hold would
    /// keep.
    pub shown_hold_since: Option<i64>,
    /// The store's erasure generation ([`RightsStore::erasure_gen`]) in the
    /// snapshot these were read in, when the backend reads it there
    /// ([`RecordStore::reads_carry_erasure_gen`]): a reader checks its key
    /// cache against it before it uses any key on what it read.
    pub erasure_gen: Option<u64>,
}

/// Builds the bytes of the leaf at log index `index`; `i` counts the leaves
/// of one call from 0. A leaf can depend on its index (the subject tag does).
pub type LeafFn<'a> = dyn FnMut(u64, usize) -> Leaf + 'a;

/// What a targeted read loads of its subject. The facade decides it from
/// (role, purpose, category, consent) before anything of the person is
/// touched, so a read that may see nothing costs the same for every id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadScope<'a> {
    /// Nothing of the person: the leaf alone.
    LeafOnly,
    /// The person's consent to this purpose, by one look-up on the
    /// consents' primary key (made the same way whether or not the id is
    /// known); their records and consents only if that consent is granted.
    /// Otherwise nothing: [`SubjectData::default`].
    IfConsented(&'a str),
    /// Everything held of the person.
    All,
    /// Everything held of the person, read for the person themselves (the
    /// subject-access purpose), and since when a hold they may know of at
    /// this time (ms) is in force ([`SubjectData::shown_hold_since`]).
    Person(i64),
}

/// Builds the leaf accounting for a read from what the read found, given the
/// index the leaf will have.
pub type ReadLeafFn<'a> = dyn FnMut(&SubjectData, u64) -> Leaf + 'a;

/// A read made outside the log's order ([`RecordStore::read_unlogged`]):
/// what it found, and the stamp of its snapshot.
pub type UnloggedRead = (SubjectData, u64);

/// Builds the leaf of a read made outside the log's order, given the index
/// the leaf will have: `None` when the snapshot read is still the store's
/// state, else what the read found when made again
/// ([`RecordStore::append_read_leaf`]).
pub type CheckedLeafFn<'a> = dyn FnMut(Option<&SubjectData>, u64) -> Leaf + 'a;

/// A data store backend: the sum of the store traits by concern, so a
/// backend or a wrapper implements each of them and is a `Store` (boxed as
/// `Box<dyn Store>` by the facade). Every method is safe to call from
/// several threads.
///
/// A backend may run a method's callbacks (leaf builders, plans, steps)
/// more than once, when it retries a transaction that the database refused
/// to serialize (PostgreSQL, SQLSTATE 40001): callers keep no state across
/// calls that a retry would make wrong (count by argument, not by call).
pub trait Store:
    RecordStore + LogStore + LedgerStore + RightsStore + PrincipalStore + OpsStore + StatsStore
{
}

impl<T> Store for T where
    T: RecordStore
        + LogStore
        + LedgerStore
        + RightsStore
        + PrincipalStore
        + OpsStore
        + StatsStore
        + ?Sized
{
}

/// Records, consents and blind-index lookups: collection batches and the
/// targeted reads, each with the leaves that account for it.
pub trait RecordStore: Send + Sync {
    /// Writes `batch` and its `batch.leaves` leaves in one durable transaction.
    /// Returns the index of the first leaf.
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError>;

    /// Reads what `scope` allows of `subject` and appends the one leaf
    /// that accounts for the read, in one transaction; returns only after
    /// the leaf is durable. If the leaf cannot be written, nothing is
    /// returned. Under [`ReadScope::LeafOnly`] no row of the person is read.
    fn read_scoped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError>;

    /// What `scope` allows of `subject`, read in a snapshot of its own,
    /// outside the log's order, with a stamp of that snapshot: the first
    /// half of a read whose leaf [`RecordStore::append_read_leaf`] then
    /// appends. Nothing read here may leave the vault before that leaf is
    /// durable. `None`: the backend reads only with its leaf
    /// ([`RecordStore::read_scoped`]), as by default.
    fn read_unlogged(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
    ) -> Result<Option<UnloggedRead>, StoreError> {
        let _ = (subject, scope);
        Ok(None)
    }

    /// Whether every read of a subject ([`RecordStore::read_scoped`],
    /// [`RecordStore::read_unlogged`], [`RecordStore::append_read_leaf`])
    /// answers [`SubjectData::erasure_gen`], read in the data's snapshot: a
    /// reader then needs no read of the generation of its own. By default
    /// no.
    fn reads_carry_erasure_gen(&self) -> bool {
        false
    }

    /// Whether a read made with [`RecordStore::read_unlogged`] would be
    /// quicker now than one with [`RecordStore::read_scoped`] (readers
    /// wait for the log's lock). By default no: the backend has no such
    /// reads.
    fn unlogged_reads_pay(&self) -> bool {
        false
    }

    /// Appends the one leaf accounting for a read of `subject` that
    /// [`RecordStore::read_unlogged`] made under `stamp`, and returns once
    /// it is durable. If nothing any read could see has changed since that
    /// snapshot (no record, consent, hold, erasure, purge or disclosure step
    /// committed), the leaf is `leaf(None, index)` and the answer `(None,
    /// index)`: what was read is what the store holds where the leaf
    /// stands. Otherwise the read is made again in the same transaction,
    /// as [`RecordStore::read_scoped`] makes it: the leaf is `leaf(Some(what
    /// it read), index)`, and the answer carries that.
    fn append_read_leaf(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut CheckedLeafFn<'_>,
    ) -> Result<(Option<SubjectData>, u64), StoreError> {
        let _ = stamp;
        let (data, idx) = self.read_scoped(subject, scope, &mut |d, idx| leaf(Some(d), idx))?;
        Ok((Some(data), idx))
    }

    /// [`RecordStore::read_scoped`] with one more leaf, `then`, appended
    /// after the read's, only if it was (an access report's read and its
    /// accounting's). Answers the read and both leaves' indexes. By default
    /// the two commit one after the other: `then` in a commit of its own,
    /// after the read's leaf but not always next to it, and a failure there
    /// leaves the read's leaf durable. The SQLite store appends `then` at
    /// the read's index + 1 in the read's own transaction: one commit
    /// where two would be, and neither leaf without the other.
    fn read_scoped_then(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
        then: &mut LeafFn<'_>,
    ) -> Result<(SubjectData, u64, u64), StoreError> {
        let (data, idx) = self.read_scoped(subject, scope, leaf)?;
        let next = self.append_leaves(1, then)?;
        Ok((data, idx, next))
    }

    /// [`RecordStore::append_read_leaf`] with one more leaf, `then`, as
    /// [`RecordStore::read_scoped_then`] appends it.
    fn append_read_leaf_then(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut CheckedLeafFn<'_>,
        then: &mut LeafFn<'_>,
    ) -> Result<(Option<SubjectData>, u64, u64), StoreError> {
        let (data, idx) = self.append_read_leaf(stamp, subject, scope, leaf)?;
        let next = self.append_leaves(1, then)?;
        Ok((data, idx, next))
    }

    /// [`RecordStore::read_scoped`] of everything held about `subject`.
    fn read_accounted(
        &self,
        subject: &SubjectRef,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        self.read_scoped(subject, ReadScope::All, leaf)
    }

    /// The person's consent state for `purpose`, if one was recorded (no leaf:
    /// collection asks it for a line whose decision turns on consent, and
    /// accounts for the batch in its own leaf).
    fn consent(
        &self,
        subject: &SubjectRef,
        purpose: &str,
    ) -> Result<Option<ConsentRow>, StoreError>;

    /// Appends leaves alone (decisions that touch no data, e.g. a refused read).
    fn append_leaves(&self, count: usize, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.write(
            &WriteBatch {
                leaves: count,
                ..WriteBatch::default()
            },
            leaf,
        )
    }

    /// Subjects holding a record with the blind-index `token`.
    fn lookup(&self, token: &[u8; 16]) -> Result<Vec<SubjectRef>, StoreError>;

    /// Number of records stored (all subjects).
    fn record_count(&self) -> Result<u64, StoreError>;
}

/// The transparency log as the store keeps it: leaves, the Merkle tree's
/// stored hashes, signed checkpoints and witnesses' cosignatures. Derived
/// or signed elsewhere: the store only keeps them.
pub trait LogStore: Send + Sync {
    /// Number of leaves in the log.
    fn log_size(&self) -> Result<u64, StoreError>;

    /// Leaves `start..end` (clamped to the log size).
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The leaves at `indexes`, in that order; one that is not in the log
    /// is [`StoreError::Corrupt`].
    fn leaves_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, StoreError> {
        indexes
            .iter()
            .map(|&i| {
                self.leaves(i, i.saturating_add(1))?
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt(format!("log leaf {i} is missing")))
            })
            .collect()
    }

    /// The log size from which on every leaf with a subject tag is in the
    /// leaf index (see [`LeafIndex`]): 0 for a store made with it, the log
    /// size at the upgrade for an older one.
    fn leaf_indexed_from(&self) -> Result<u64, StoreError>;

    /// The months some leaf is filed under in the leaf index, ascending.
    fn leaf_index_months(&self) -> Result<Vec<u32>, StoreError>;

    /// The leaf filed under each of `tokens`, in the same order (`None` for
    /// a token not in the index).
    fn leaf_index_find(&self, tokens: &[[u8; 16]]) -> Result<Vec<Option<u64>>, StoreError>;

    /// Up to `limit` rows of the leaf index after token `after` (from the
    /// first without), by token: `check` reads them all, a page at a time,
    /// to see that each tagged leaf is filed exactly once, nothing else is,
    /// and every seal holds.
    fn leaf_index_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<LeafIndexRow>, StoreError>;

    /// Files one person's leaves again: the repair once their report or
    /// `check` found a filing removed or moved. In one transaction holding
    /// the log's append lock: the leaves appended since `plan.scanned`
    /// that `tail` claims (`tail(index, bytes)` says the month of a leaf of
    /// theirs) join `plan.leaves`; the filings of `plan.stray` still there
    /// are removed; and in each month of `plan.months` and of their
    /// leaves, the person's slots (read until a window of
    /// [`FIRST_WINDOW`] free slots follows both the last taken one and the
    /// month's own leaves) are set to their leaves in log order, slot 0
    /// first, writing and removing only the rows that differ: a row
    /// already right is not touched, so the repair links no more of the
    /// person's rows than the damage had moved.
    fn refile_leaves(
        &self,
        tokens: &std::sync::Arc<dyn LeafTokens>,
        plan: &RefilePlan,
        tail: &mut dyn FnMut(u64, &[u8]) -> Option<u32>,
    ) -> Result<Refiled, StoreError>;

    /// Stored hashes of the log's Merkle tree, by stored-hash index (the
    /// RFC 6962 tree in the tlog "stored hashes" layout). Derived from the
    /// leaves: the facade computes them, the store only keeps them.
    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError>;

    /// How many leaves the stored hashes cover.
    fn hashed_size(&self) -> Result<u64, StoreError>;

    /// Adds the stored hashes of leaves `from..to`, and the proof tiles
    /// they complete (`(tile id, 960 bytes)`, `postvault_log::proof_tiles`;
    /// a tile already kept is replaced), in one transaction, if the stored
    /// hashes still cover exactly `from` leaves; returns false (and writes
    /// nothing) if another writer got there first.
    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
        tiles: &[(u64, Vec<u8>)],
    ) -> Result<bool, StoreError>;

    /// The hashed size from which on the store keeps proof tiles: 0 for a
    /// store made with them, the hashed size at the upgrade for an older
    /// one. Every tile whose subtree ends after it, up to the hashed size,
    /// is kept.
    fn log_tiled_from(&self) -> Result<u64, StoreError>;

    /// Hashes from the proof tiles, by `(tile id, slot)`, in the same
    /// order. A tile that is not kept is [`StoreError::Corrupt`].
    fn log_tile_hashes(&self, wanted: &[(u64, usize)]) -> Result<Vec<[u8; 32]>, StoreError>;

    /// The proof tiles kept with ids `start..end`, by id (for verification).
    fn log_tiles(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Keeps a signed checkpoint of tree size `size` (a second one of the
    /// same size is ignored).
    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError>;

    /// Every kept checkpoint, by size.
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError>;

    /// The kept checkpoint of the largest size.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// The kept checkpoint of size `size`.
    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError>;

    /// Keeps witness cosignature lines of the checkpoint of size `size`:
    /// `(cosigner, line)` pairs, the cosigner named `<name>+<key id>`. A
    /// cosigner's earlier line for that size is replaced.
    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError>;

    /// The cosignature lines kept for the checkpoint of size `size`, by cosigner.
    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// The largest checkpoint size with lines of at least `quorum` of
    /// `cosigners` (None if there is none, or `cosigners` is empty).
    fn latest_cosigned(
        &self,
        cosigners: &[String],
        quorum: usize,
    ) -> Result<Option<u64>, StoreError>;

    /// The largest checkpoint size `cosigner` has a line for.
    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError>;
}

/// The disclosure ledger: requests to the gateway, their steps and the
/// accounting of what left under them (see [`DisclosureRow`]).
pub trait LedgerStore: Send + Sync {
    /// Records a new request to the disclosure gateway and its one leaf in
    /// one durable transaction, deciding it from facts (quota counts, an
    /// earlier use of the instrument) counted inside that transaction.
    fn submit_disclosure(
        &self,
        q: &SubmitQuery,
        decide: &mut SubmitFn<'_>,
    ) -> Result<(DisclosureRow, u64), StoreError>;

    /// One step of a request (approve, refuse, fetch, end, ...), in one
    /// durable transaction: reads what `plan` names of the request as
    /// stored, then writes the step's new state, its leaves and accounting.
    /// Returns what was read and the index of the first leaf, only after the
    /// leaves are durable.
    fn disclosure_step(
        &self,
        id: &str,
        plan: &mut PlanFn<'_>,
        step: &mut StepFn<'_>,
    ) -> Result<(Vec<SubjectData>, u64), StoreError>;

    /// Replaces the ledger keys of requests (a vault recomputing them when
    /// their derivation changes); what else a request holds stays as it was.
    fn set_disclosure_keys(&self, keys: &[DisclosureKeys]) -> Result<(), StoreError>;

    fn disclosure(&self, id: &str) -> Result<Option<DisclosureRow>, StoreError>;

    /// Every request, in submission order.
    fn disclosures(&self) -> Result<Vec<DisclosureRow>, StoreError>;

    /// The accounting entries about `subject`, oldest first.
    fn accounting(&self, subject: &SubjectRef) -> Result<Vec<AccountingRow>, StoreError>;
}

/// Retention, erasure, legal holds and re-keying: what deletes or keeps
/// records (see [`HoldRow`], [`EraseOutcome`]).
pub trait RightsStore: Send + Sync {
    /// Every record of `subject`, for maintenance (holds, re-keying); no leaf.
    /// Sees every write this process made before it (an open group of
    /// writes is committed first).
    fn subject_records(&self, subject: &SubjectRef) -> Result<Vec<RecordRow>, StoreError>;

    /// [`RightsStore::subject_records`] as committed, beside an open group
    /// of reads and writes rather than committing it early: for a
    /// correction, which checks its record again when it writes. A backend
    /// without such a group answers `subject_records`.
    fn subject_records_committed(
        &self,
        subject: &SubjectRef,
    ) -> Result<Vec<RecordRow>, StoreError> {
        self.subject_records(subject)
    }

    /// Replaces the key id and ciphertext of existing records (by id), in one
    /// durable transaction; returns how many were found.
    fn rekey(&self, records: &[RecordRow]) -> Result<u64, StoreError>;

    /// Deletes up to `limit` records past `expires_at <= now` (and their
    /// lookups) in one durable transaction, skipping subjects under a legal
    /// hold in force at `now`. With `intent`, adds the records deleted to
    /// that intent's progress in the same transaction.
    fn sweep_expired(
        &self,
        now: i64,
        limit: usize,
        intent: Option<u64>,
    ) -> Result<SweepBatch, StoreError>;

    /// Records past `expires_at <= now` not under a hold in force at `now`.
    fn count_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// Erasure, step one, in one durable transaction: refuses subjects under
    /// a hold in force at `now` (telling `leaf`, read in this transaction,
    /// whether one of their holds carries a delay order still running at
    /// `now`, [`Held::Delayed`]); for the others deletes every consent, puts
    /// them in the purge queue (from then on no read, scan or count sees
    /// their records or lookups; [`RightsStore::purge_erased`] deletes those
    /// rows later, in bulk, so an erasure costs the same in a vault of any
    /// size), marks them pending until their keys are destroyed and bumps
    /// the erasure generation. Appends one leaf per subject asked for,
    /// then the intent `intent` builds from the outcome (if any), with its
    /// leaf: the write-ahead record of the keys about to be destroyed.
    fn erase(
        &self,
        subjects: &[SubjectRef],
        now: i64,
        leaf: &mut EraseLeafFn<'_>,
        intent: &mut EraseIntentFn<'_>,
    ) -> Result<EraseOutcome, StoreError>;

    /// Subjects whose erasure started and whose keys may still exist.
    fn pending_erasures(&self) -> Result<Vec<SubjectRef>, StoreError>;

    /// Erasure, last step, once the keys are destroyed: makes anything
    /// written for these subjects meanwhile dead too (consents deleted,
    /// records queued for the purge), clears them from pending and bumps the
    /// erasure generation again.
    fn finish_erasure(&self, subjects: &[SubjectRef]) -> Result<(), StoreError>;

    /// An erasure's last steps once its keys are destroyed, in one durable
    /// transaction: [`RightsStore::finish_erasure`] of `subjects`, then
    /// the completion of intent `intent` (if given) with the leaf `leaf`
    /// builds, as [`OpsStore::finish_intent`], then
    /// [`RightsStore::purge_subjects`] of `purge` (empty: none) unless they
    /// hold more than `purge_max` records, dead or alive (then their purge
    /// is left to the caller: a long purge must not hold the transaction).
    /// One commit where there were three; nothing of it is done if it
    /// fails.
    fn finish_erasure_with(
        &self,
        subjects: &[SubjectRef],
        intent: Option<u64>,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
        purge: &[SubjectRef],
        purge_max: u64,
    ) -> Result<ErasureFinish, StoreError>;

    /// Deletes the records and lookups of up to `limit` people of the purge
    /// queue (in ref order; not those whose erasure is still pending, whose
    /// `finish_erasure` would wait on them) and takes them off it, in one
    /// durable transaction. Their keys are destroyed (or about to be): the rows are
    /// ciphertext nobody can open, and no read sees them; this frees the
    /// space. A person collected again after their erasure leaves the queue
    /// at once, with their old rows deleted, in the transaction that writes
    /// their new ones.
    fn purge_erased(&self, limit: usize) -> Result<PurgeBatch, StoreError>;

    /// [`RightsStore::purge_erased`] for the people of `subjects` that are
    /// in the queue (an erasure of a few people purges them at once), in
    /// one transaction. Returns the people purged, in ref order, each with
    /// its records deleted (a person queued for lookups alone has 0).
    fn purge_subjects(&self, subjects: &[SubjectRef])
    -> Result<Vec<(SubjectRef, u64)>, StoreError>;

    /// People in the purge queue and the records they still hold.
    fn purge_pending(&self) -> Result<PurgeBatch, StoreError>;

    /// The erasure generation: changes whenever an erasure starts or ends.
    fn erasure_gen(&self) -> Result<u64, StoreError>;

    /// Places holds and their leaves in one durable transaction.
    fn put_holds(&self, holds: &[HoldRow], leaf: &mut LeafFn<'_>) -> Result<u64, StoreError>;

    /// Holds (every one, or those of one subject), in placement order.
    fn holds(&self, subject: Option<&SubjectRef>) -> Result<Vec<HoldRow>, StoreError>;

    /// Releases every subject of hold `id` not yet released, with one leaf
    /// per subject, in one durable transaction; returns the rows released.
    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> Leaf,
    ) -> Result<Vec<HoldRow>, StoreError>;
}

/// A change to one active principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalChange<'a> {
    /// Revoked at this time (ms since the epoch): its token stops working.
    Revoke { at: i64 },
    /// Its token replaced by the one of this hash.
    Rotate { token_hash: &'a [u8] },
}

impl PrincipalChange<'_> {
    /// The store call's name, for fault injection and errors.
    pub fn name(&self) -> &'static str {
        match self {
            PrincipalChange::Revoke { .. } => "revoke_principal",
            PrincipalChange::Rotate { .. } => "rotate_principal",
        }
    }
}

/// The principals allowed to call the vault, found by the hash of their
/// token; revocations and rotations move the principals generation.
pub trait PrincipalStore: Send + Sync {
    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError>;

    /// The principal named `name`, revoked or not.
    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError>;

    /// Every principal, revoked ones too, by name.
    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError>;

    /// The principal holding the token of hash `token_hash`, unless revoked:
    /// one look-up on a unique index of the hashes, never a scan.
    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError>;

    /// Makes `change` to the active principal `name` (refusing one unknown
    /// or revoked with [`StoreError::PrincipalNotActive`]) and appends its
    /// one leaf, in one durable transaction that also moves the principals
    /// generation. Returns the leaf's index.
    fn change_principal(
        &self,
        name: &str,
        change: PrincipalChange<'_>,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError>;

    /// Revokes principal `name` at `at` ([`Self::change_principal`]).
    fn revoke_principal(
        &self,
        name: &str,
        at: i64,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.change_principal(name, PrincipalChange::Revoke { at }, leaf)
    }

    /// Replaces the token hash of principal `name`
    /// ([`Self::change_principal`]).
    fn rotate_principal(
        &self,
        name: &str,
        token_hash: &[u8],
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.change_principal(name, PrincipalChange::Rotate { token_hash }, leaf)
    }

    /// The principals generation: changes whenever a token stops being
    /// valid (a revocation or a rotation). Nodes that cache tokens read it
    /// to drop their cache; one indexed row, cheap to ask often.
    fn principals_gen(&self) -> Result<u64, StoreError>;
}

/// What keeps work from being done twice or left half done, and what
/// `postvault check` counts: collection runs, write-ahead intents of
/// destruction, key usage, and the store's metadata.
pub trait OpsStore: Send + Sync {
    /// A collection run's committed progress and batches.
    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError>;

    /// Writes a run's progress without a batch (its end: `step.finished`),
    /// in one durable transaction, under the same check as a batch's step.
    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError>;

    /// Records an intent of destruction and its leaf in one durable
    /// transaction, before anything is destroyed; returns the leaf's index,
    /// which is the intent's id.
    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError>;

    /// Intents not yet completed, oldest first.
    fn intents(&self) -> Result<Vec<IntentRow>, StoreError>;

    /// Completes intent `id`: removes it and appends its completion leaf in
    /// one durable transaction. `None` (and no leaf) if another process
    /// completed it first.
    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError>;

    /// How many records each key seals, for `postvault check`: one row per
    /// (key_id, category, expires_at), and per subject for hold keys.
    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError>;

    /// Subjects holding records, in ref order after `after`, with their
    /// record counts; at most `limit`.
    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError>;

    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// Where the statistics of a vault are accounted and read from: the
/// privacy-budget ledger and the scan of one category's records.
///
/// Architecture invariant: a statistics query's spend is checked against
/// the budget and recorded, together with the query's one leaf, in one
/// transaction that holds the log's append lock; two queries never both
/// pass a check that only one of them fits.
pub trait StatsStore: Send + Sync {
    /// Current records (not superseded, expiring after `now`) of
    /// `category`, by subject, strictly after `after` and with a subject
    /// before `until` (all when `None`); at most `limit`, and where the
    /// next page starts. Records of one person come together, in an order
    /// of the store's (see [`ScanPos`]), so a scan bounds each person's
    /// contribution holding one person's counts at a time, and scans of
    /// disjoint subject ranges may run at once (each on a connection of its
    /// own where the backend has several), one person never split between
    /// two. With `consented`, only the records of people whose consent for
    /// that purpose is recorded as granted.
    fn category_records(
        &self,
        category: &str,
        now: i64,
        after: Option<&ScanPos>,
        until: Option<&SubjectRef>,
        limit: usize,
        consented: Option<&str>,
    ) -> Result<ScanPage, StoreError>;

    /// [`StatsStore::category_records`] into `page`, whose rows' buffers a
    /// backend may reuse (a scan pages through millions of rows, and need
    /// not allocate for each): `page.rows` holds the new page's rows and
    /// nothing else after, `page.next` its resume position.
    ///
    /// With `ask.blocks`, a backend that keeps scan blocks
    /// ([`StatsStore::build_scan_blocks`]) may answer a person's rows up
    /// to their blocks' position with those blocks instead (the ones of
    /// that tag only; a person with a block of another tag, or blocks of
    /// unequal positions, gets rows). Then a page ends with a whole person,
    /// holds at most `ask.people` people and stops after the person whose
    /// rows reach `ask.limit`, and `page.blocks` holds the
    /// blocks of the page's people (current: not expired at `ask.now`,
    /// the person neither awaiting the purge nor, with `consented`,
    /// without that consent), in person order like the rows.
    fn category_records_into(
        &self,
        ask: &ScanAsk<'_>,
        page: &mut ScanPage,
    ) -> Result<(), StoreError> {
        *page = self.category_records(
            ask.category,
            ask.now,
            ask.after,
            ask.until,
            ask.limit,
            ask.consented,
        )?;
        Ok(())
    }

    /// Replaces the scan blocks of up to `people` people after `after`
    /// (in subject order) who hold rows of `category`: in one write
    /// transaction, each person's current rows (not superseded, not
    /// expired at `now`, not awaiting the purge) go to `make` with the
    /// position the blocks will cover up to (every row of the category
    /// the person holds now is at or before it); the blocks it returns
    /// are stored with that position and `tag`, the person's old blocks
    /// of the category deleted. `make` returning `None` leaves the person
    /// to their rows (their old blocks deleted, the scan reads the rows).
    /// `None` from a backend that keeps no blocks (the scan then reads
    /// rows only).
    ///
    /// A build is the steps from `after` `None` until one finds no person
    /// left; each step after the first passes `build`, the
    /// [`BlockStep::build`] the first answered. The last step moves the
    /// category's tail ([`StatsStore::scan_tail`]) to where the build
    /// began, unless another build of the category has begun since.
    ///
    /// Architecture invariant: a person's blocks of a category never
    /// outlive a change to a row they cover: superseding, re-sealing,
    /// expiring or deleting any row of the person's in the category
    /// deletes them in the same transaction.
    #[allow(clippy::too_many_arguments)]
    fn build_scan_blocks(
        &self,
        category: &str,
        now: i64,
        after: Option<&SubjectRef>,
        build: i64,
        people: usize,
        tag: &str,
        make: &mut BlockMakeFn<'_>,
    ) -> Result<Option<BlockStep>, StoreError> {
        let _ = (category, now, after, build, people, tag, make);
        Ok(None)
    }

    /// The people holding rows of `category` that its scan blocks may not
    /// stand for (the rows written since the last build of its blocks
    /// finished), sorted: with them, a block scan ([`ScanAsk::tail`])
    /// finds its people from the blocks instead of from every row. `None`
    /// when the store does not know them cheaply (no build finished, or
    /// much written since): the scan then finds its people from the rows.
    fn scan_tail(&self, category: &str) -> Result<Option<Vec<SubjectRef>>, StoreError> {
        let _ = category;
        Ok(None)
    }

    /// Checks `spend` against what its principal has spent for its purpose
    /// in its period, spends it if it fits, and appends the query's one
    /// leaf (for a refusal too), all in one durable transaction. Returns
    /// the decision and the leaf's index.
    fn spend_budget(
        &self,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError>;

    /// Every ledger row, by principal, purpose and period.
    fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError>;
}

/// Where a statistics scan stands: a subject, and the store's own key of
/// a row among that person's rows, opaque to the caller (SQLite: the row's
/// number, big-endian in the first 8 bytes, so a person's rows come in the
/// order they were written, as its index of records by person holds them,
/// with no sort; PostgreSQL: the record's id). `(subject, [0; 16])` is
/// before every row of `subject`.
pub type ScanPos = (SubjectRef, [u8; 16]);

/// What one page of a statistics scan asks for
/// ([`StatsStore::category_records_into`]).
#[derive(Clone, Copy, Debug)]
pub struct ScanAsk<'a> {
    pub category: &'a str,
    pub now: i64,
    pub after: Option<&'a ScanPos>,
    pub until: Option<&'a SubjectRef>,
    /// The most rows a page holds (the rows of one person may span pages).
    pub limit: usize,
    pub consented: Option<&'a str>,
    /// The tag of the scan blocks the caller can read, if any.
    pub blocks: Option<&'a str>,
    /// With blocks in use: the most people a page holds (whole people).
    pub people: usize,
    /// With blocks in use: the category's tail, as
    /// [`StatsStore::scan_tail`] answered at the scan's start.
    pub tail: Option<&'a [SubjectRef]>,
}

/// One person's current records of one category under one key (the same
/// key_id and expiry), sealed together under that key by the vault, so a
/// statistics scan opens one envelope and reads one row for all of them
/// (see [`StatsStore::build_scan_blocks`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanBlock {
    pub subject: SubjectRef,
    pub category: String,
    pub key_id: u32,
    pub expires_at: i64,
    /// How many records it holds.
    pub records: u64,
    /// The store's position up to which the person's rows of the category
    /// are in their blocks (opaque; the same in each of the person's
    /// blocks of the category).
    pub upto: [u8; 16],
    /// What the vault put in it (which fields, which format).
    pub tag: String,
    pub sealed: Vec<u8>,
}

/// What one step of [`StatsStore::build_scan_blocks`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockStep {
    /// The last person handled: where the next step starts (`None` when
    /// no person was left).
    pub next: Option<SubjectRef>,
    pub people: u64,
    pub blocks: u64,
    /// Records sealed into the blocks.
    pub records: u64,
    /// The build the step is part of (passed to the next step).
    pub build: i64,
}

/// Makes a person's scan blocks of their current rows, given the position
/// they will cover up to; `None` leaves the person to their rows (their
/// old blocks deleted, a mark in their place).
pub type BlockMakeFn<'a> = dyn FnMut(&SubjectRef, &[RecordRow], &[u8; 16]) -> Result<Option<Vec<ScanBlock>>, StoreError>
    + 'a;

/// A page of [`StatsStore::category_records`].
#[derive(Clone, Debug, Default)]
pub struct ScanPage {
    pub rows: Vec<RecordRow>,
    /// Scan blocks standing for rows (only when asked for).
    pub blocks: Vec<ScanBlock>,
    /// After the page's last row: where the next page starts (`None` when
    /// the page is empty).
    pub next: Option<ScanPos>,
}

/// A subject's wrapped keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectKeys {
    pub subject: SubjectRef,
    pub data: Vec<u8>,
    pub tag: Vec<u8>,
}

/// The log's anti-rollback state, kept with the signing key: the last
/// checkpoint the vault signed, and how many it has signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    pub root: [u8; 32],
    /// The signed note, exactly as published.
    pub note: String,
    /// Checkpoints signed so far, this one included.
    pub signed: u64,
}

/// What [`KeyStore::swap_log_state`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogStateSwap {
    /// The state was the expected one and is now the new one.
    Swapped,
    /// Another signer changed it first: this is what it holds now.
    Changed(Option<LogState>),
}

/// Where key material lives, apart from the data store, so a copy of the
/// data store alone never holds usable keys.
pub trait KeyStore: Send + Sync {
    /// The log's anti-rollback state (None before the first checkpoint).
    fn log_state(&self) -> Result<Option<LogState>, StoreError>;
    /// Replaces the log state with `new` if it is still `expected`, in one
    /// durable transaction that holds the state row against every other
    /// signer (SQLite: an immediate transaction on the key store file;
    /// PostgreSQL: the row locked `FOR UPDATE`). Signers on any node
    /// compare and swap here, so two of them never both advance from the
    /// same state.
    fn swap_log_state(
        &self,
        expected: Option<&LogState>,
        new: &LogState,
    ) -> Result<LogStateSwap, StoreError>;
    /// Stores keys of subjects that have none yet (existing keys are kept);
    /// durable on return. Returns the subjects whose keys already existed,
    /// so the caller can use the stored keys instead of its own.
    fn put_subject_keys(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError>;
    fn subject_keys(&self, subject: &SubjectRef) -> Result<Option<SubjectKeys>, StoreError>;
    /// The keys of many subjects, in order, read in one transaction.
    fn subject_keys_many(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<Option<SubjectKeys>>, StoreError>;
    /// A named secret (the master key, a signing key).
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a named secret; fails if it exists.
    fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Destroys a named secret (its bytes overwritten on disk); true if it existed.
    fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;
    /// Stores a named secret unless one exists; returns the stored value
    /// (so two writers racing agree on one).
    fn put_secret_or_get(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Names of the secrets starting with `prefix`, sorted.
    fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Destroys named secrets in one transaction, bytes overwritten on disk
    /// and out of the WAL; returns how many existed.
    fn delete_secrets(&self, names: &[String]) -> Result<u64, StoreError>;
    /// [`KeyStore::delete_secrets`] of `guard` and `names` in one
    /// transaction, only while secret `guard` still holds `value` and every
    /// secret whose name starts with `unless_prefix` is among `names`; true
    /// if it did (and so destroyed them). A process that deleted or
    /// replaced `guard`, or stored a secret under `unless_prefix`,
    /// meanwhile cancels the destruction: processes each write their own
    /// mark, then read the others', and one of them always sees the other.
    /// The guard is deleted first and its row held until the transaction
    /// ends: a process that stores a secret under `unless_prefix`, then
    /// deletes the guard, is ordered against this one (SQLite: an immediate
    /// transaction; PostgreSQL: the guard's row lock).
    fn delete_secrets_guarded(
        &self,
        guard: &str,
        value: &[u8],
        unless_prefix: &str,
        names: &[String],
    ) -> Result<bool, StoreError>;
    /// Destroys subjects' keys in one transaction, bytes overwritten on disk
    /// and out of the WAL; returns the subjects whose keys existed, in the
    /// order asked.
    fn delete_subject_keys(&self, subjects: &[SubjectRef]) -> Result<Vec<SubjectRef>, StoreError>;
    /// [`KeyStore::delete_subject_keys`] of these keys, each only while it
    /// is still its subject's (the same wrapped data key): a subject whose
    /// keys were destroyed and made again meanwhile (another process
    /// finished the erasure, then collected them again) keeps the new ones.
    fn delete_subject_keys_as(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError>;

    /// Subjects holding keys, in ref order after `after`; at most `limit`.
    fn subject_refs(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<SubjectRef>, StoreError>;
    /// Offers every subject's keys and every secret to `f` and applies what
    /// it answers, then inserts `insert` (replacing secrets of those names),
    /// all in one durable transaction: a rotation of the master key either
    /// happens whole or not at all. Deleted and replaced bytes are
    /// overwritten on disk where the backend can.
    fn rewrap(
        &self,
        f: &mut RewrapFn<'_>,
        insert: &[(String, Vec<u8>)],
    ) -> Result<RewrapCount, StoreError>;
}
