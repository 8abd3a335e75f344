//! The typed instrument, and what the check answers: refusals under stable
//! codes, verdicts, the context the caller passes in.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

/// The official who signs an instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    #[serde(default)]
    pub name: String,
    /// Free text, e.g. "Special Agent in Charge".
    #[serde(default)]
    pub title: String,
    /// The level the rules compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<SignerLevel>,
    /// The written delegation a signer below the agency head acts under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_ref: Option<String>,
}

/// A subject, named only by identifier: exactly `{"id": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    pub id: String,
}

/// The period of records asked for, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The court behind a court order or warrant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Court {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub docket: String,
    #[serde(default)]
    pub judge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<Timestamp>,
}

/// A party whose correspondence with the subject a mail cover excludes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
}

pub(super) fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A legal instrument presented to the disclosure gateway. The JSON format is
/// in `docs/instruments.md`; build one with [`parse_instrument`]. Fields
/// after `court` belong to mail covers only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    pub kind: InstrumentKind,
    /// The issuer's reference; with the agency, what the gateway records to
    /// refuse a second use.
    #[serde(default)]
    pub instrument_id: String,
    /// The requesting agency (not a person).
    #[serde(default)]
    pub agency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// The legal authority cited (statute or rule).
    #[serde(default)]
    pub authority: String,
    /// The law-enforcement activity (disclosures) or 233.3 ground (covers).
    #[serde(default)]
    pub ground: String,
    /// The agency's case: quotas are counted per case.
    #[serde(default)]
    pub case_id: String,
    #[serde(default)]
    pub subjects: Vec<SubjectRef>,
    /// Category ids of the pack.
    #[serde(default)]
    pub portions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Disclosures only: the period of records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Disclosures only: the court.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court: Option<Court>,
    /// Disclosures only: a court's order that the person is not told of the
    /// disclosure before this time (the accounting stays hidden from them
    /// until then, R13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_notice_until: Option<Timestamp>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_type: Option<RequesterType>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub statute_cited: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty_max_years: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasonable_grounds: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oral: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_confirmed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub emergency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// 0 for a new order, n for the n-th extension.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extension_no: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub benefit_statement: String,
    /// Continuous cover days on the subject including this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cumulative_days: Option<u32>,
    /// The Chief Postal Inspector's personal approval beyond the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpi_approval_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicted_or_information_filed: Option<bool>,
    /// Correspondence with this party is never recorded (233.3(g)(3)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_attorney: Option<Party>,
}

// ---------------------------------------------------------------------------
// Refusals and verdicts
// ---------------------------------------------------------------------------

/// Why an instrument or approval is refused. The snake_case names are stable:
/// gateways, logs and transparency reports (R26) count by them. Declared in
/// alphabetical order, so sorting by code sorts by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    AlreadyUsed,
    ApproverRole,
    CumulativeCap,
    DelayNeedsCourtOrder,
    DurationTooLong,
    EndedByIndictment,
    Expired,
    ExtensionMismatch,
    ExtensionWithoutBenefitStatement,
    GroundNotAllowed,
    Incomplete,
    KindNotAllowed,
    Malformed,
    MissingAuthority,
    MissingCourt,
    MissingDelegation,
    NoPortion,
    NoSubject,
    NotYetValid,
    OralNotConfirmed,
    PenaltyTooLow,
    PortionNeedsCourtOrder,
    PortionNotAllowed,
    PortionNotExterior,
    ProhibitedPurpose,
    ProtectiveOrderNeedsCourtOrder,
    SelectorNotIdentifier,
    SelfApproval,
    SignerLevelTooLow,
    TimeRangeInvalid,
    TooManySubjects,
    UnknownField,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 32] = [
        RefusalCode::AlreadyUsed,
        RefusalCode::ApproverRole,
        RefusalCode::CumulativeCap,
        RefusalCode::DelayNeedsCourtOrder,
        RefusalCode::DurationTooLong,
        RefusalCode::EndedByIndictment,
        RefusalCode::Expired,
        RefusalCode::ExtensionMismatch,
        RefusalCode::ExtensionWithoutBenefitStatement,
        RefusalCode::GroundNotAllowed,
        RefusalCode::Incomplete,
        RefusalCode::KindNotAllowed,
        RefusalCode::Malformed,
        RefusalCode::MissingAuthority,
        RefusalCode::MissingCourt,
        RefusalCode::MissingDelegation,
        RefusalCode::NoPortion,
        RefusalCode::NoSubject,
        RefusalCode::NotYetValid,
        RefusalCode::OralNotConfirmed,
        RefusalCode::PenaltyTooLow,
        RefusalCode::PortionNeedsCourtOrder,
        RefusalCode::PortionNotAllowed,
        RefusalCode::PortionNotExterior,
        RefusalCode::ProhibitedPurpose,
        RefusalCode::ProtectiveOrderNeedsCourtOrder,
        RefusalCode::SelectorNotIdentifier,
        RefusalCode::SelfApproval,
        RefusalCode::SignerLevelTooLow,
        RefusalCode::TimeRangeInvalid,
        RefusalCode::TooManySubjects,
        RefusalCode::UnknownField,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::AlreadyUsed => "already_used",
            RefusalCode::ApproverRole => "approver_role",
            RefusalCode::CumulativeCap => "cumulative_cap",
            RefusalCode::DelayNeedsCourtOrder => "delay_needs_court_order",
            RefusalCode::DurationTooLong => "duration_too_long",
            RefusalCode::EndedByIndictment => "ended_by_indictment",
            RefusalCode::Expired => "expired",
            RefusalCode::ExtensionMismatch => "extension_mismatch",
            RefusalCode::ExtensionWithoutBenefitStatement => "extension_without_benefit_statement",
            RefusalCode::GroundNotAllowed => "ground_not_allowed",
            RefusalCode::Incomplete => "incomplete",
            RefusalCode::KindNotAllowed => "kind_not_allowed",
            RefusalCode::Malformed => "malformed",
            RefusalCode::MissingAuthority => "missing_authority",
            RefusalCode::MissingCourt => "missing_court",
            RefusalCode::MissingDelegation => "missing_delegation",
            RefusalCode::NoPortion => "no_portion",
            RefusalCode::NoSubject => "no_subject",
            RefusalCode::NotYetValid => "not_yet_valid",
            RefusalCode::OralNotConfirmed => "oral_not_confirmed",
            RefusalCode::PenaltyTooLow => "penalty_too_low",
            RefusalCode::PortionNeedsCourtOrder => "portion_needs_court_order",
            RefusalCode::PortionNotAllowed => "portion_not_allowed",
            RefusalCode::PortionNotExterior => "portion_not_exterior",
            RefusalCode::ProhibitedPurpose => "prohibited_purpose",
            RefusalCode::ProtectiveOrderNeedsCourtOrder => "protective_order_needs_court_order",
            RefusalCode::SelectorNotIdentifier => "selector_not_identifier",
            RefusalCode::SelfApproval => "self_approval",
            RefusalCode::SignerLevelTooLow => "signer_level_too_low",
            RefusalCode::TimeRangeInvalid => "time_range_invalid",
            RefusalCode::TooManySubjects => "too_many_subjects",
            RefusalCode::UnknownField => "unknown_field",
        }
    }

    /// The rule of the reference (§7) the refusal enforces.
    pub fn rule(self) -> &'static str {
        match self {
            RefusalCode::AlreadyUsed
            | RefusalCode::Expired
            | RefusalCode::KindNotAllowed
            | RefusalCode::MissingAuthority
            | RefusalCode::MissingDelegation
            | RefusalCode::NoPortion
            | RefusalCode::NoSubject
            | RefusalCode::NotYetValid
            | RefusalCode::PortionNotAllowed
            | RefusalCode::SignerLevelTooLow
            | RefusalCode::TimeRangeInvalid => "R6",
            RefusalCode::MissingCourt | RefusalCode::PortionNeedsCourtOrder => "R7",
            RefusalCode::Incomplete | RefusalCode::Malformed => "R8",
            RefusalCode::ProtectiveOrderNeedsCourtOrder => "R9",
            RefusalCode::SelectorNotIdentifier
            | RefusalCode::TooManySubjects
            | RefusalCode::UnknownField => "R10",
            RefusalCode::ApproverRole
            | RefusalCode::SelfApproval
            | RefusalCode::OralNotConfirmed => "R12",
            RefusalCode::CumulativeCap
            | RefusalCode::DurationTooLong
            | RefusalCode::ExtensionMismatch
            | RefusalCode::ExtensionWithoutBenefitStatement => "R14",
            RefusalCode::PortionNotExterior => "R15",
            RefusalCode::DelayNeedsCourtOrder => "R13",
            RefusalCode::EndedByIndictment => "R16",
            RefusalCode::GroundNotAllowed
            | RefusalCode::PenaltyTooLow
            | RefusalCode::ProhibitedPurpose => "R25",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason an instrument or approval is refused. The message is lowercase,
/// has no final period and names fields and pack ids, never a value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, thiserror::Error)]
#[error("[{code}] {message}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What happens to a request next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one refusal: nothing is disclosed.
    Refused,
    /// In order, but it crosses an anti-enumeration quota: a person reviews it.
    HeldForReview,
    /// In order: it waits for an approver ([`check_approval`]).
    PendingApproval,
}

/// The result of [`check_instrument`]: every refusal found, sorted by code,
/// and the alerts raised (each `name: message`), sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub refusals: Vec<Refusal>,
    pub alerts: Vec<String>,
}

impl Verdict {
    /// The refusal codes, in order, with repeats.
    pub fn codes(&self) -> Vec<RefusalCode> {
        self.refusals.iter().map(|r| r.code).collect()
    }
}

/// What the caller knows about the moment and the history of a request. The
/// counts are of the people named by earlier requests in each window (a
/// request naming nobody counts as one), this one not included: quotas count
/// people, not requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckContext {
    pub now_ms: i64,
    /// The gateway has already acted on this document (by any principal).
    pub used_before: bool,
    /// A named subject has a protective order on file (R9). It never
    /// changes the verdict: the gateway asks only for a submission that is
    /// otherwise in order, and holds it for the privacy office
    /// ([`protective_order_refusal`]); [`check_report`] shows it to the
    /// officer.
    pub subject_has_protective_order: bool,
    /// People named by the requester's earlier requests in 24 hours.
    pub agency_people_24h: u32,
    /// People named by the requester's earlier requests in 30 days.
    pub agency_people_30d: u32,
    /// People named by earlier requests on the same case, by any principal,
    /// in 30 days.
    pub case_people_30d: u32,
    /// A mail cover: the requester's earlier covers of this subject that run
    /// continuously into this one, from the ledger. When given, the
    /// extension number and the 120-day cap are computed from it, not from
    /// what the instrument declares.
    pub cover_chain: Option<CoverChain>,
}

/// The continuous run of earlier mail covers a new cover extends, as the
/// ledger shows it ([`cover_chain`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverChain {
    /// Earlier orders in the run: 0 for a new order, n for the n-th extension.
    pub prior_orders: u32,
    /// When the first order of the run started.
    pub first_start_ms: i64,
}

/// An earlier mail cover of the same requester on the same subject, as the
/// ledger keeps it: its order window `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriorCover {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How long a pause between two covers of one person may be and still not
/// start a new run: 30 days, one order's length. 233.3(g)(6) caps
/// *continuous* covers at 120 days; without a bound on the pause, an order
/// ended a day early and followed by a new one two days later would restart
/// the count for ever. The days of such a pause count toward the cap.
pub const RUN_GAP_DAYS: i64 = 30;

/// The run of `priors` a cover starting at `start_ms` continues: an order is
/// continued by one that starts after it and less than [`RUN_GAP_DAYS`]
/// after its end (233.3(g)(6) counts continuous days). Returns the chain and
/// the index in `priors` of the order it directly extends, if any. Orders
/// that start together run side by side and do not extend each other.
pub fn cover_chain(priors: &[PriorCover], start_ms: i64) -> (CoverChain, Option<usize>) {
    let before = |s: i64| {
        priors
            .iter()
            .enumerate()
            .filter(|(_, p)| p.start_ms < s && p.end_ms.saturating_add(RUN_GAP_DAYS * DAY_MS) > s)
            .max_by_key(|(_, p)| p.start_ms)
            .map(|(i, p)| (i, *p))
    };
    let direct = before(start_ms).map(|(i, _)| i);
    let mut chain = CoverChain {
        prior_orders: 0,
        first_start_ms: start_ms,
    };
    // Starts strictly decrease along the walk, so it ends.
    while let Some((_, p)) = before(chain.first_start_ms) {
        chain.prior_orders += 1;
        chain.first_start_ms = p.start_ms;
    }
    (chain, direct)
}
