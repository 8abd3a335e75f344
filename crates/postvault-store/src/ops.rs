//! What the store keeps so that nothing is done twice or left half done:
//! collection runs (committed progress per run id, written in the same
//! transaction as each batch), write-ahead intents of destruction (written
//! with their leaf before any key is destroyed, removed with the completion
//! leaf after), and what `postvault check` counts.
//!
//! Like the rest of the store these rows hold opaque ids, counts, times,
//! key names (`retention:<category>:<day>`, `cover:<n>`) and subject refs;
//! never a personal-data value.

use crate::SubjectRef;

/// The committed progress of a collection run, written with one batch (or
/// alone, when the run ends). The store refuses it unless the run's stored
/// progress is exactly `after_line`: two processes resuming one run never
/// both write the same lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStep {
    /// A keyed hash of (principal, run id as the client gave it).
    pub run: [u8; 16],
    pub principal: String,
    /// Every line up to this one was handled before this step (0: none).
    pub after_line: u64,
    /// Every line up to this one is handled once this step commits.
    pub through_line: u64,
    /// SHA-256 of the input bytes of lines `1..=through_line`.
    pub digest: [u8; 32],
    /// What this step's batch did (zeros for a step without a batch).
    pub accepted: u64,
    pub rejected: u64,
    /// JSON object: category -> records accepted in the batch.
    pub categories: String,
    /// JSON array of the batch's first line errors.
    pub errors: String,
    /// The run is finished: the whole input was handled.
    pub finished: bool,
    /// Unix milliseconds.
    pub at: i64,
}

/// One batch of a run as the store kept it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunBatch {
    pub first_line: u64,
    pub last_line: u64,
    /// The batch's leaf.
    pub leaf: Option<u64>,
    pub accepted: u64,
    pub rejected: u64,
    pub categories: String,
    pub errors: String,
}

/// A collection run as the store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRow {
    pub run: [u8; 16],
    pub principal: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub through_line: u64,
    pub digest: [u8; 32],
    pub finished_at: Option<i64>,
    /// Its batches, in line order.
    pub batches: Vec<RunBatch>,
}

/// What a destruction is about to do, written with its intent leaf before
/// any key is destroyed. `body` is JSON the facade reads back to finish it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    /// `retention`, `erase`, `cover` or `hold`.
    pub kind: String,
    pub body: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// An intent not yet completed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntentRow {
    /// The index of its intent leaf.
    pub id: u64,
    pub kind: String,
    pub body: String,
    pub at: i64,
    /// Records deleted under it so far (retention sweeps count here, in the
    /// transaction of each chunk).
    pub progress: u64,
}

/// How many records one key (or key group) seals: the records of one
/// category, expiry and `key_id`, and for hold keys one subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: u32,
    pub category: String,
    pub expires_at: i64,
    /// The subject, for records sealed under a hold key (one per subject).
    pub subject: Option<SubjectRef>,
    pub records: u64,
}

/// Builds the intent of an erasure (and its leaf, at the given index) from
/// what the erasure's first transaction did, inside that transaction.
pub type EraseIntentFn<'a> = dyn FnMut(u64, &crate::EraseOutcome) -> Option<(Intent, Vec<u8>)> + 'a;

/// One wrapped key offered to [`crate::KeyStore::rewrap`].
#[derive(Clone, Copy, Debug)]
pub enum KeyItem<'a> {
    Subject(&'a crate::SubjectKeys),
    Secret(&'a str, &'a [u8]),
}

/// What to do with a key offered to [`crate::KeyStore::rewrap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    Keep,
    /// New wrapped data and tag keys of a subject.
    Subject(Vec<u8>, Vec<u8>),
    /// A new value of a secret.
    Secret(Vec<u8>),
    /// Destroy the secret.
    Delete,
}

/// Decides, for each key of the key store, what it becomes.
pub type RewrapFn<'a> = dyn FnMut(KeyItem<'_>) -> Result<KeyAction, crate::StoreError> + 'a;

/// What a [`crate::KeyStore::rewrap`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewrapCount {
    pub subjects: u64,
    pub secrets: u64,
    pub deleted: u64,
    pub inserted: u64,
}
