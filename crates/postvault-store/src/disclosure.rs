//! The disclosure ledger as the store keeps it: one row per request an
//! outside party submitted (whatever became of it), and one accounting row
//! per subject each time data left under it (5 U.S.C. 552a(c)).
//!
//! Like everything else in the store, rows hold no plaintext personal data:
//! subjects are opaque refs, the instrument as submitted is sealed by the
//! facade, and the clear columns are ids of the pack (kind, ground,
//! portions, refusal codes, alert names), principal names and times. Free
//! text of an instrument (agency, case, signer, reasons) is only sealed.

use crate::{SubjectData, SubjectRef};

/// One request to the disclosure gateway and where it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisclosureRow {
    /// UUIDv7, text.
    pub id: String,
    /// Submission order, from 1; also the number of a mail cover's order key.
    pub seq: u64,
    /// The principal (an agency) that submitted it.
    pub requester: String,
    /// The instrument kind, or empty when the submission was not an instrument.
    pub kind: String,
    pub ground: String,
    /// A keyed hash of the document's normalized identity (kind, court,
    /// docket, instrument id), whoever presents it: refuses a second use.
    pub instrument_key: Option<[u8; 16]>,
    /// A keyed hash of the normalized case id, whoever presents it: the
    /// per-case quota.
    pub case_key: Option<[u8; 16]>,
    /// Mail covers: 0 for a new order, n for the n-th extension.
    pub extension_no: u32,
    pub subjects: Vec<SubjectRef>,
    /// The portions (category ids) asked for, then the ones approved.
    pub portions: Vec<String>,
    /// `refused`, `held_for_review`, `pending_approval`, `approved`,
    /// `fetched`, `expired`, `ended` or `destroyed`.
    pub status: String,
    /// Refusal codes, in order (with repeats).
    pub reasons: Vec<String>,
    /// Alert names.
    pub alerts: Vec<String>,
    /// Unix milliseconds, like every time here.
    pub submitted_at: i64,
    /// Records from this time on (the time range or the cover's start).
    pub data_from: Option<i64>,
    /// Records before this time (exclusive).
    pub data_until: Option<i64>,
    /// The instrument stops being valid at this time (exclusive).
    pub valid_until: Option<i64>,
    /// A court-ordered delay: the person is not shown the disclosure before.
    pub notice_after: Option<i64>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// How many times data left under it.
    pub fetches: u32,
    pub last_fetched_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Why it ended early (`indicted`, `improperly_ordered`, ...), a code.
    pub end_reason: Option<String>,
    /// When the person was told (after any delay).
    pub notified_at: Option<i64>,
    /// Kept at least until then (R13: five years or the life of the record).
    pub retain_until: i64,
    /// The instrument as submitted, sealed by the facade.
    pub sealed: Vec<u8>,
    /// Notes for the privacy office only (codes, e.g. `protective_order`):
    /// never shown to the requester, in a leaf or in a public report.
    pub office_notes: Vec<String>,
    /// Mail covers: the request id of the earlier order this one extends,
    /// as the ledger shows it.
    pub extends: Option<String>,
}

/// One accounting entry: data of `subject` left under `disclosure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingRow {
    pub disclosure: String,
    pub subject: SubjectRef,
    pub at: i64,
    /// The log leaf that accounts for it.
    pub leaf: u64,
    pub records: u64,
    pub categories: Vec<String>,
}

/// What the store knows when a request arrives, read in the same
/// transaction that records it (so two requests cannot both slip under a
/// quota). Counts are of the people named by earlier requests (a request
/// naming nobody counts as one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubmitFacts {
    /// An earlier request with the same instrument key by the same
    /// requester was not refused.
    pub used_before: bool,
    /// An earlier request with the same instrument key by another requester
    /// was not refused. The gateway holds such a request for the office
    /// without telling the requester: a refusal would tell one agency what
    /// documents another has presented.
    pub used_by_other: bool,
    /// People named by the same requester's earlier requests in 24 hours.
    pub requester_people_24h: u32,
    /// ... in 30 days.
    pub requester_people_30d: u32,
    /// People named by earlier requests with the same case key, by any
    /// requester, in 30 days.
    pub case_people_30d: u32,
    /// ... by the same requester only: what its own quota counts. The
    /// difference is another agency's use of the case id, which only the
    /// office may learn of.
    pub case_people_30d_own: u32,
    /// The `seq` this request gets.
    pub seq: u64,
}

/// What to count for [`SubmitFacts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitQuery {
    pub requester: String,
    pub instrument_key: Option<[u8; 16]>,
    pub case_key: Option<[u8; 16]>,
    /// Window starts, Unix milliseconds (inclusive).
    pub since_24h: i64,
    pub since_30d: i64,
    /// Subjects whose protective-order records (category
    /// `protective_category`) the decision needs. The store reads those
    /// records only, never the rest of what a person holds.
    pub subjects: Vec<SubjectRef>,
    /// The pack's protective-order category (the facade passes the pack's
    /// `[engine] protective_order_category`; empty, with no `subjects`, for
    /// a pack that has none). When it is [`PROTECTIVE_INDEX_CATEGORY`] the
    /// read is a seek on the `records_protective` partial index, costing
    /// the same for everyone; any other category is a seek on
    /// `records_subject` (subject, category: schema 16), at a cost that
    /// grows with the person's records of that category only (before 16,
    /// with everything the person held).
    pub protective_category: String,
}

/// The category the `records_protective` partial index covers (migration 9,
/// the postal pack's protective-order category). The stored schema names it;
/// a pack whose protective-order category has another id is served without
/// the index.
pub const PROTECTIVE_INDEX_CATEGORY: &str = "protective_order";

/// New ledger keys of one request ([`crate::LedgerStore::set_disclosure_keys`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosureKeys {
    pub id: String,
    pub instrument_key: Option<[u8; 16]>,
    pub case_key: Option<[u8; 16]>,
}

/// What one step of a request writes, atomically, with its leaves.
#[derive(Clone, Debug, Default)]
pub struct DisclosureStep {
    /// The request's new state (`None`: unchanged).
    pub row: Option<DisclosureRow>,
    /// The leaves accounting for the step (at least one).
    pub leaves: Vec<crate::Leaf>,
    /// Accounting entries; their `leaf` is filled in from the leaves.
    pub accounting: Vec<AccountingRow>,
    /// Which leaf (index into `leaves`) each accounting entry points at.
    pub accounting_leaf: Vec<usize>,
    /// A destruction the step starts (a mail-cover order key): recorded
    /// with the step, its id the index of the leaf at this position of
    /// `leaves`, and completed once the key is gone.
    pub intent: Option<(usize, crate::Intent)>,
}

/// Decides a submission from the facts and the protective-order records of
/// the query's subjects; gets the index of its leaf.
pub type SubmitFn<'a> =
    dyn FnMut(&SubmitFacts, &[SubjectData], u64) -> (DisclosureRow, Vec<u8>) + 'a;

/// Says which subjects a step reads, from the request as stored (`None`:
/// no such request).
pub type PlanFn<'a> = dyn FnMut(Option<&DisclosureRow>) -> Vec<SubjectRef> + 'a;

/// Builds a step from the request, what was read of each planned subject
/// and the index the step's first leaf will have.
pub type StepFn<'a> = dyn FnMut(Option<&DisclosureRow>, &[SubjectData], u64) -> DisclosureStep + 'a;
