//! Retention, erasure and legal holds: data is gone when its retention ends
//! or the person's erasure is granted, gone for real.
//!
//! ```text
//! record key = HMAC(period key, subject data key)      (key_id::PERIOD)
//! period key = one per (category, UTC day of expiry), in the key store
//! ```
//!
//! - A record expires at the start of the UTC day on which its retention
//!   ends (`expiry`): it is never returned after that, and the first sweep
//!   after it destroys the period key, so every copy of every record of that
//!   category and day, in any backup of the data store, is unreadable. The
//!   same sweep deletes the rows.
//! - Erasure destroys the subject's data and tag keys: every ciphertext of
//!   theirs, under any period, and every log tag about them, belongs to
//!   nobody. It runs in three steps that survive a crash at any point (rows
//!   and leaves; keys; rows written meanwhile), and a collection batch
//!   sealed under keys an erasure destroyed is sealed again (the store's
//!   erasure generation).
//! - A legal hold (from an approved instrument, with an expiry) defers both:
//!   before a period key is destroyed, the held person's records of that
//!   period are sealed again under their subject key alone.

use std::collections::BTreeMap;

use serde::Serialize;

use postvault_store::SubjectRef;

use crate::error::VaultError;
use crate::vault::{Principal, Vault};

mod correct;
pub(crate) use correct::parse_correction;
mod erase;
pub(crate) use erase::EraseQueue;
mod holds;
mod retention;

use correct::record_aad_of;

use postvault_time::DAY_MS;
/// Key-store name prefix of retention period keys.
pub(crate) const PERIOD_PREFIX: &str = "retention:";
/// A hold lasts at most this long; placing it again renews it (the 90 days
/// of a preservation request, 18 U.S.C. 2703(f)).
pub const MAX_HOLD_DAYS: i64 = 90;
/// Records deleted per sweep transaction.
const SWEEP_CHUNK: usize = 20_000;
/// Subjects per erasure transaction.
pub const ERASE_CHUNK: usize = 100_000;
/// An erasure of at most this many people purges their rows itself.
pub const ERASE_PURGE_INLINE: usize = 1_000;
/// An erasure whose people hold at most this many rows (dead or alive,
/// counted in the transaction) purges them in the transaction that
/// finishes it, under the erasure's gates (and, on PostgreSQL, the log's
/// lock): a few milliseconds at most. More are purged in a transaction of
/// their own once the gates are released, so a long purge never holds up
/// the log's appends or other writers.
pub const PURGE_JOINED_MAX_RECORDS: u64 = 1_024;
/// One-person erasures waiting at once are erased together, at most this
/// many at a time (within [`ERASE_PURGE_INLINE`]: each is purged at once).
pub const ERASE_JOINED_MAX: usize = 256;
/// Erased people whose rows one purge transaction deletes. Small, because
/// a purge transaction holds the store's writer (and so every read's
/// group commit) while it runs: 2,000 people of ten records each in a 10M-
/// record vault is about a second; the whole queue in one transaction was
/// 20% faster in all but held the writer for a minute there.
pub const PURGE_CHUNK: usize = 2_000;

/// When a record collected at `now` with `retention_days` expires: the start
/// of the UTC day on which its retention ends, so that the records of one
/// category expiring on one day share one period key.
pub(crate) fn expiry(now: i64, retention_days: u32) -> i64 {
    (now + i64::from(retention_days) * DAY_MS).div_euclid(DAY_MS) * DAY_MS
}

/// The key-store name of the period key of `category` for records expiring
/// at `expires_at`.
pub(crate) fn period_secret(category: &str, expires_at: i64) -> String {
    format!("{PERIOD_PREFIX}{category}:{}", period_of(expires_at))
}

/// The day whose start ends the period of a record expiring at
/// `expires_at`: the day it expires on if that is a day start, else the
/// next (a record is never destroyed before its expiry).
pub(crate) fn period_of(expires_at: i64) -> i64 {
    (expires_at + DAY_MS - 1).div_euclid(DAY_MS)
}

/// The start of the day a period key is destroyed on.
pub(crate) fn period_start(expires_at: i64) -> i64 {
    period_of(expires_at) * DAY_MS
}

/// Key-store name prefix of hold keys.
pub(crate) const HOLD_PREFIX: &str = "hold:";

/// The key-store name of a subject's hold key.
pub(crate) fn hold_secret(subject: &SubjectRef) -> String {
    format!("{HOLD_PREFIX}{}", hex::encode(subject))
}

/// Key-store name prefix of the marks an ending hold key carries between
/// the end's last look at the holds and the key's destruction (see
/// [`Vault::unhold`]); not under [`HOLD_PREFIX`], so never taken for a key.
pub(crate) const HOLD_ENDING_PREFIX: &str = "hold-ending:";

/// The key-store name of the mark on `subject`'s ending hold key.
pub(crate) fn hold_ending_secret(subject: &SubjectRef) -> String {
    format!("{HOLD_ENDING_PREFIX}{}", hex::encode(subject))
}

/// Key-store name prefix of the marks a hold sealing records under a hold
/// key keeps while it does (see [`Vault::seal_under_hold`]); not under
/// [`HOLD_PREFIX`].
pub(crate) const HOLD_SEALING_PREFIX: &str = "hold-sealing:";

/// The prefix of the sealing marks on `subject`'s hold key: one mark per
/// sealing, named after it with a random suffix.
pub(crate) fn hold_sealing_prefix(subject: &SubjectRef) -> String {
    format!("{HOLD_SEALING_PREFIX}{}:", hex::encode(subject))
}

/// How long a sealing mark keeps a hold key from its end: past this, the
/// mark is one a crash left, and the end destroys it with the key.
pub(crate) const HOLD_SEALING_LEASE_MS: i64 = 10 * 60 * 1000;

fn hold_subject(name: &str) -> Option<SubjectRef> {
    hex::decode(name.strip_prefix(HOLD_PREFIX)?)
        .ok()?
        .try_into()
        .ok()
}

/// The day a period key name covers (its records expire at its start).
fn period_day(name: &str) -> Option<i64> {
    name.strip_prefix(PERIOD_PREFIX)?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// What a retention sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionReport {
    /// The time the sweep ran at.
    pub at: String,
    /// Period keys destroyed: everything sealed under them is unreadable.
    pub periods_destroyed: u64,
    /// Records deleted from the data store.
    pub records_deleted: u64,
    pub by_category: BTreeMap<String, u64>,
    /// Records of people under a legal hold sealed again under their own key
    /// so they outlive their period.
    pub held_records_kept: u64,
    /// The leaf that accounts for the sweep.
    pub log_index: u64,
    /// The rows of erased people the sweep purged after its own work
    /// (their keys were destroyed when they were erased; see [`PurgeReport`]).
    pub erased_purged: PurgeReport,
    /// Why that purge failed, when it did (the sweep's own work is done and
    /// logged; the next sweep purges again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_error: Option<String>,
}

/// Rows of erased people deleted from the data store. An erasure destroys
/// the person's keys at once and makes their rows dead (no read, scan or
/// count sees them); the purge deletes those rows in bulk later, so an
/// erasure costs the same in a vault of any size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeReport {
    /// People whose records were deleted (someone whose only rows were a
    /// mail cover's is purged too, but not counted: see `records`).
    pub people: u64,
    /// Their records deleted, not counting those recorded under mail-cover
    /// orders (docs/rights.md, Erasure).
    pub records: u64,
}

impl From<postvault_store::PurgeBatch> for PurgeReport {
    fn from(b: postvault_store::PurgeBatch) -> Self {
        Self {
            people: b.people,
            records: b.records,
        }
    }
}

/// The answer to an erasure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EraseReport {
    /// People erased.
    pub erased: u64,
    /// Identifiers refused because a legal hold is in force (exit 3).
    pub held: Vec<String>,
    /// Records erased: unreadable once the keys are destroyed and seen by
    /// no read, scan or count from the erasure's first transaction on;
    /// their rows are deleted by the purge (`purged`, or the sweeper).
    pub records_deleted: u64,
    /// Keys destroyed (a data key and a tag key each).
    pub keys_destroyed: u64,
    /// The first leaf; one per identifier, in order.
    pub first_leaf: u64,
    /// The purge run right after the erasure: by the erasure itself for a
    /// call of at most 1,000 people (theirs), or by `postvault erase` unless
    /// `--defer-purge` (every erased person's rows, these and any left from
    /// earlier erasures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<PurgeReport>,
    /// Why that purge failed, when it did: the erasure stands (keys
    /// destroyed, rows dead), and the next sweep purges the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_error: Option<String>,
    /// The person's own request (the subject-access service, one person)
    /// that could not be carried out now and was not refused either: it
    /// waits for the privacy office as a rights request, this one (`er-`),
    /// as a request made in the portal does; `held` is then empty. The
    /// answer gives no reason: the one there is, a hold whose delay order
    /// still runs, is not for the person to learn yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_request: Option<String>,
    /// The person was refused under a hold whose delay order still runs
    /// (read in the erasure's transaction); never serialized.
    #[serde(skip)]
    pub(crate) delayed: bool,
}

impl EraseReport {
    pub fn refused(&self) -> bool {
        !self.held.is_empty()
    }
}

/// A legal hold as shown to an officer or the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldView {
    pub id: String,
    /// The disclosure request whose approved instrument it rests on.
    pub request: String,
    /// People held (officers only; empty in the person's own report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    pub placed_by: String,
    pub placed_at: String,
    pub until: String,
    /// `active`, `released` or `lapsed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// Officers only: the person is not shown the hold before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_until: Option<String>,
    /// The first leaf of the placement or release (answers to those only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

/// The answer to a correction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CorrectionReport {
    pub subject: String,
    pub category: String,
    /// The new record.
    pub record: String,
    /// The record it replaces, kept as history.
    pub supersedes: String,
    /// Who received the category before, to be told of the correction
    /// (5 U.S.C. 552a(c)(4), R13).
    pub notify: Vec<PriorRecipient>,
    pub log_index: u64,
}

/// A recipient of an earlier disclosure of the corrected category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorRecipient {
    pub disclosure: String,
    pub recipient_principal: String,
    pub disclosed_at: String,
    /// The leaf of that disclosure.
    pub log_index: u64,
}

impl Vault {
    /// Officer-only operations: the pack's approver roles. A refusal is a
    /// decision too: one deny leaf.
    pub(crate) fn require_officer(
        &self,
        p: &Principal,
        what: &str,
        action: &str,
    ) -> Result<(), VaultError> {
        let roles = self.pack.disclosure().approver_roles();
        if roles.contains(&p.role) {
            return Ok(());
        }
        self.deny_leaf(p, action, None)?;
        Err(VaultError::NotPermitted(format!(
            "role `{}` may not {what}; {} may",
            p.role,
            roles.join(" or ")
        )))
    }

    /// Whether `p`'s role acts for the pack's subject-access purpose
    /// (`[engine] subject_access_purpose`): the role that answers the person
    /// (their consent, corrections, own erasure, accounting and report).
    pub(crate) fn acts_for_subject(&self, p: &Principal) -> bool {
        let tax = self.pack.taxonomy();
        tax.role(p.role_ix)
            .read_for
            .iter()
            .any(|&ix| tax.engine().is_subject_access(&tax.purpose(ix).id))
    }

    /// Whether `role` passes on people's own requests (it reads for the
    /// subject-access purpose) and is not the privacy office: it must not
    /// learn of a hold the person may not know of yet.
    pub(crate) fn speaks_for_person(&self, role: &str) -> bool {
        let tax = self.pack.taxonomy();
        !self
            .pack
            .disclosure()
            .approver_roles()
            .iter()
            .any(|r| r == role)
            && tax.role_ix(role).is_some_and(|ix| {
                tax.role(ix)
                    .read_for
                    .iter()
                    .any(|&p| tax.engine().is_subject_access(&tax.purpose(p).id))
            })
    }

    /// Who may do what only the subject-access role does, as a refusal
    /// says it.
    pub(crate) fn subject_access_may(&self) -> String {
        match self.pack.taxonomy().engine().subject_access_purpose() {
            Some(id) => format!("a role acting for `{id}` may"),
            None => {
                "the pack names no subject-access purpose ([engine] subject_access_purpose)".into()
            }
        }
    }
}
