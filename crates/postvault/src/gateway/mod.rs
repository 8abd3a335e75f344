//! The disclosure gateway: the only way data leaves the vault for an outside
//! party. An agency submits a legal instrument naming people by identifier;
//! the pure check of the pack (`postvault_policy::disclosure`) refuses
//! anything that is not particularized legal process, holds what crosses an
//! anti-enumeration quota, and leaves the rest for a privacy officer who is
//! not the requester; only then may the agency fetch a package holding
//! exactly the approved portions of the named people for the approved time.
//!
//! ```text
//! submit ─► refused | held_for_review | pending_approval
//!                          └──────┬──────────┘
//!                      approve ───┴─── refuse (two-person rule)
//!                          │
//!                       approved ─► fetch ─► fetched ─► (notice to the person)
//!                          └─► expired (valid_until passed)      mail covers: ended | destroyed
//! ```
//!
//! Architecture invariants kept here:
//! - every step, allowed or refused, is one store transaction with its leaf
//!   (a fetch: one leaf per person disclosed, written before any record is
//!   opened);
//! - no batch mode exists: each request names people by identifier, matched
//!   exactly through their keyed subject reference;
//! - the ledger keeps no free text of an instrument in the clear: the
//!   instrument is sealed under the gateway key; clear columns are pack ids,
//!   principal names and times;
//! - a mail cover's records are sealed under a key of their own order, so
//!   an improperly ordered cover is destroyed by destroying one key.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use postvault_policy::disclosure;
use postvault_policy::review::PROTECTIVE_ORDER;
use postvault_store::DisclosureRow;

use crate::error::VaultError;
use crate::read::ReadRecord;

mod cover;
mod fetch;
mod keys;
mod steps;
mod submit;
mod views;

pub(crate) use cover::cover_secret;
use cover::{EndedCover, cover_access_until};
use fetch::data_window;
use keys::instrument_aad;

/// The longest instrument accepted, in bytes.
pub const MAX_INSTRUMENT_BYTES: usize = 64 * 1024;
/// R13: the accounting of a disclosure is kept at least five years.
pub const ACCOUNTING_RETENTION_DAYS: i64 = 1826;
/// R18: a mail cover's records stay available to its requester this long
/// after the cover ends, then access ends.
pub const COVER_ACCESS_DAYS_AFTER_END: i64 = 60;

pub(crate) const GATEWAY_SECRET: &str = "gateway_key";
pub(crate) const GATEWAY_KEY_REF: &[u8] = b"postvault/gateway";
/// Meta key: the derivation of the ledger's instrument and case keys.
const LEDGER_KEYS_META: &str = "ledger_keys";
/// Version 2: keyed hashes of a document's normalized identity and of the
/// normalized case id, the same whoever presents them. Version 3: a court's
/// document is its docket and id (not its kind or the court's spelling); a
/// document without a court is its agency's, kind and id.
const LEDGER_KEYS_VERSION: &str = "3";

/// Codes only the privacy office sees (a request's `office_notes`, an
/// officer's answer). A leaf or any other answer shows `not_permitted` in
/// their place, and a refused step's leaf does not name its request, so
/// nothing outside the office learns of a protective order, of another
/// requester's use of a document, or of another requester's mail cover.
pub const OFFICE_ONLY_CODES: [&str; 6] = [
    PROTECTIVE_ORDER,
    // A fetch refused because an order's key was gone: the public leaf
    // would tie the request to a destroyed (or lost) cover.
    codes::COVER_KEY_GONE,
    "protective_order_needs_court_order",
    codes::USED_BY_ANOTHER_REQUESTER,
    codes::COVER_RUN_WITH_OTHERS_OVER_CAP,
    codes::CASE_QUOTA_WITH_OTHERS,
];

/// Office notes that stop an approval: the officer is told why and should
/// refuse the request.
pub(crate) const BLOCKING_NOTES: [(&str, &str); 3] = [
    (
        "protective_order_needs_court_order",
        "a named person has a protective order on file: only a court order may disclose (R9); refuse this request",
    ),
    (
        codes::USED_BY_ANOTHER_REQUESTER,
        "another requester has presented this document and it was not refused: each document is good for one disclosure; refuse this request",
    ),
    (
        codes::COVER_RUN_WITH_OTHERS_OVER_CAP,
        "with other requesters' covers of this person the run is past the cumulative cap (233.3(g)(6)) and no chief postal inspector's approval is cited; refuse this request",
    ),
];

/// Stable codes of the gateway's own refusals, beside the pack's refusal
/// codes (`docs/disclosure.md`).
pub mod codes {
    /// No request with this id that the caller may act on.
    pub const UNKNOWN_REQUEST: &str = "unknown_request";
    /// The caller's role may not take this step.
    pub const NOT_PERMITTED: &str = "not_permitted";
    /// The request is not in a state that allows this step.
    pub const WRONG_STATUS: &str = "wrong_status";
    /// A fetch met a mail-cover order's key gone, of an order not yet seen
    /// destroyed (office only: the leaf says `not_permitted`).
    pub const COVER_KEY_GONE: &str = "cover_key_gone";
    /// A fetch met the request's sealed instrument not opening (its key or
    /// its bytes damaged): nothing is disclosed, and no retry mends it.
    pub const INSTRUMENT_UNREADABLE: &str = "instrument_unreadable";
    /// A privacy officer refused the request.
    pub const REFUSED_BY_OFFICER: &str = "refused_by_officer";
    /// The reasons an officer may give with a refusal, beside
    /// `refused_by_officer`: the requester reads the code, and the
    /// transparency report counts refusals by it.
    pub const OFFICER_REASONS: &[(&str, &str)] = &[
        (
            "not_particularized",
            "the instrument does not name the people or records with particularity",
        ),
        (
            "authority_insufficient",
            "the authority cited does not reach what is asked",
        ),
        ("overbroad", "more is asked than the stated case needs"),
        (
            "document_not_authenticated",
            "the document could not be confirmed with its issuer",
        ),
        (
            "other_officer_reason",
            "another reason, given to the requester outside the vault",
        ),
    ];
    /// Approval named a portion the request did not ask for.
    pub const PORTION_NOT_REQUESTED: &str = "portion_not_requested";
    /// The submission is larger than [`super::MAX_INSTRUMENT_BYTES`].
    pub const TOO_LARGE: &str = "too_large";
    /// Office only: another requester presented the same document and it
    /// was not refused.
    pub const USED_BY_ANOTHER_REQUESTER: &str = "document_used_by_another_requester";
    /// Office only: the mail covers of the person by every requester make
    /// a run past the cumulative cap.
    pub const COVER_RUN_WITH_OTHERS_OVER_CAP: &str = "cover_run_with_other_requesters_over_cap";
    /// Office only: with other requesters' requests on the same case id,
    /// the case's 30-day quota is crossed. The requester's own quota hold
    /// counts its own requests only.
    pub const CASE_QUOTA_WITH_OTHERS: &str = "quota_case_30d_with_other_requesters";
}

/// Request states, as stored and shown.
pub mod status {
    pub const REFUSED: &str = "refused";
    pub const HELD: &str = "held_for_review";
    pub const PENDING: &str = "pending_approval";
    pub const APPROVED: &str = "approved";
    pub const FETCHED: &str = "fetched";
    pub const EXPIRED: &str = "expired";
    pub const ENDED: &str = "ended";
    pub const DESTROYED: &str = "destroyed";
}

/// One reason a step was refused: a stable code and a message that names
/// fields and pack ids, never a value of the instrument.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayReason {
    pub code: String,
    pub message: String,
}

impl GatewayReason {
    fn new(code: &str, message: impl Into<String>) -> GatewayReason {
        GatewayReason {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<disclosure::Refusal> for GatewayReason {
    fn from(r: disclosure::Refusal) -> GatewayReason {
        GatewayReason {
            code: r.code.as_str().to_string(),
            message: r.message,
        }
    }
}

/// The answer to a step: where the request stands, and why a step was
/// refused (empty when it was taken).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepAnswer {
    pub id: String,
    pub status: String,
    pub reasons: Vec<GatewayReason>,
    /// Alerts raised (names and messages), submission only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<String>,
    /// The leaf that accounts for the step.
    pub log_index: u64,
}

impl StepAnswer {
    /// The step was refused (or the request is).
    pub fn refused(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Why a cover or disclosure ends before its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// 233.3(g)(7): the subject was indicted or an information filed.
    Indicted,
    /// 233.3(h): the cover was improperly ordered: everything recorded
    /// under it is destroyed (its order key) and the requester told why.
    ImproperlyOrdered,
    /// The requester withdrew it, or the officer closed it.
    Withdrawn,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Indicted => "indicted",
            EndReason::ImproperlyOrdered => "improperly_ordered",
            EndReason::Withdrawn => "withdrawn",
        }
    }

    pub fn from_id(s: &str) -> Option<EndReason> {
        [
            EndReason::Indicted,
            EndReason::ImproperlyOrdered,
            EndReason::Withdrawn,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    fn explain(self) -> &'static str {
        match self {
            EndReason::Indicted => {
                "the subject was indicted or an information filed: the cover ended (39 CFR 233.3(g)(7)); a new need requires a new order"
            }
            EndReason::ImproperlyOrdered => {
                "the cover was improperly ordered: all data recorded under it was destroyed (39 CFR 233.3(h))"
            }
            EndReason::Withdrawn => "the request was withdrawn or closed",
        }
    }
}

/// How a privacy officer approves.
#[derive(Clone, Debug, Default)]
pub struct ApproveOptions {
    /// Approve only these of the requested portions (default: all).
    pub portions: Option<Vec<String>>,
}

/// The records of one named person in a package.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageSubject {
    /// The identifier the instrument named.
    pub subject: String,
    pub records: Vec<ReadRecord>,
    /// The leaf that accounts for this person's disclosure.
    pub log_index: u64,
}

/// What an agency receives: exactly the approved portions of the approved
/// people for the approved time, or nothing and the reasons.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Package {
    pub id: String,
    pub status: String,
    pub reasons: Vec<GatewayReason>,
    pub kind: String,
    /// The purpose of the pack the data was read for.
    pub purpose: String,
    pub portions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_until: Option<String>,
    pub subjects: Vec<PackageSubject>,
    /// The first leaf of this fetch (a refused fetch: its one leaf).
    pub log_index: u64,
}

impl Package {
    pub fn refused(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// A request as its requester or a privacy officer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestView {
    pub id: String,
    pub seq: u64,
    pub requester: String,
    pub kind: String,
    pub ground: String,
    /// The state now (a request past its validity shows `expired`).
    pub status: String,
    pub reasons: Vec<String>,
    pub alerts: Vec<String>,
    pub subjects: usize,
    pub portions: Vec<String>,
    pub submitted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    pub fetches: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Why it ended, in words (what the requester is told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_explanation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_after: Option<String>,
    pub extension_no: u32,
    /// Mail covers: the request this one extends, as the ledger links it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Privacy office only: why the request is held for the office (e.g.
    /// `protective_order`); never shown to anyone else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub office_notes: Vec<String>,
    /// Privacy office only, `show`: the opened instrument beside the pack's
    /// checks (see [`crate::office`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub officer: Option<crate::office::OfficerView>,
}

/// One entry of the accounting of disclosures (5 U.S.C. 552a(c)(1)): date,
/// nature, purpose and recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountingEntry {
    pub disclosure: String,
    /// When the data left.
    pub date: String,
    /// The nature: the kind of instrument.
    pub nature: String,
    /// The purpose: the ground the instrument cites.
    pub purpose: String,
    /// The authority cited.
    pub authority: String,
    /// The recipient: the agency the instrument names, and its principal.
    pub recipient: String,
    pub recipient_principal: String,
    pub categories: Vec<String>,
    pub records: u64,
    /// The leaf that accounts for it.
    pub log_index: u64,
    /// Kept at least until then.
    pub retain_until: String,
    /// Shown to officers only: the person is not told before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_until: Option<String>,
}

/// The accounting shown to or about one person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accounting {
    pub subject: String,
    pub entries: Vec<AccountingEntry>,
    /// The leaf that accounts for this read of the accounting.
    pub log_index: u64,
}

/// A notice due to a person: data about them left under a disclosure and
/// no delay order stands in the way any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub disclosure: String,
    pub subject: String,
    pub recipient: String,
    pub nature: String,
    pub disclosed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delayed_until: Option<String>,
    pub log_index: u64,
}

/// Mail-cover figures of the transparency report (R26).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverCounts {
    pub requested: u64,
    pub approved: u64,
    pub refused: u64,
    pub extended: u64,
    pub ended: u64,
    pub destroyed: u64,
}

/// The transparency report, computed from the ledger itself (R26).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransparencyReport {
    pub generated_at: String,
    pub pack: String,
    pub log_size: u64,
    pub requests: u64,
    pub by_outcome: BTreeMap<String, u64>,
    /// By requesting principal (a registered agency), then outcome.
    pub by_agency: BTreeMap<String, BTreeMap<String, u64>>,
    pub by_kind: BTreeMap<String, BTreeMap<String, u64>>,
    pub by_ground: BTreeMap<String, BTreeMap<String, u64>>,
    /// By the month the request was submitted (`YYYY-MM`, UTC), then outcome.
    pub by_month: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests refused for each reason (a request counts once per code).
    pub refusals_by_reason: BTreeMap<String, u64>,
    pub held_for_review: u64,
    pub alerts: BTreeMap<String, u64>,
    pub mail_covers: CoverCounts,
    /// Times data left, people it was about, records it held.
    pub disclosures: DisclosedCounts,
    /// Statistics budgets spent, and counts of people with their method.
    pub statistics: crate::stats::StatisticsReport,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisclosedCounts {
    pub fetches: u64,
    pub subjects: u64,
}

/// What the gateway decided at submission, kept for the answer.
struct Submitted {
    status: String,
    reasons: Vec<GatewayReason>,
    alerts: Vec<String>,
}

/// The state of a request now: one past its validity shows `expired`.
pub(crate) fn effective_status(r: &DisclosureRow, now: i64) -> String {
    let open = [status::PENDING, status::HELD, status::APPROVED].contains(&r.status.as_str());
    if open && r.valid_until.is_some_and(|t| t <= now) {
        status::EXPIRED.into()
    } else {
        r.status.clone()
    }
}

fn alert_name(alert: &str) -> &str {
    alert.split(':').next().unwrap_or(alert).trim()
}

/// The codes of `reasons` as a leaf records them: sorted, once each, and an
/// office-only code (a protective order) as `not_permitted`.
fn reason_codes(reasons: &[GatewayReason]) -> Vec<String> {
    let set: BTreeSet<String> = reasons
        .iter()
        .map(|r| {
            if OFFICE_ONLY_CODES.contains(&r.code.as_str()) {
                codes::NOT_PERMITTED.to_string()
            } else {
                r.code.clone()
            }
        })
        .collect();
    set.into_iter().collect()
}

fn sorted(v: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = v.iter().cloned().collect();
    set.into_iter().collect()
}

fn unknown_request() -> GatewayReason {
    GatewayReason::new(
        codes::UNKNOWN_REQUEST,
        "no request with this id that you may act on",
    )
}

fn wrong_status(status: &str, verb: &str) -> GatewayReason {
    GatewayReason::new(
        codes::WRONG_STATUS,
        format!("a request that is {status} cannot be {verb}"),
    )
}

fn no_answer() -> VaultError {
    VaultError::Invalid {
        what: "disclosure step",
        why: "the store did not run the step".into(),
    }
}
