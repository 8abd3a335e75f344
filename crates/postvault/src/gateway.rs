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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use postvault_crypto::{DataKey, KeyKind};
use postvault_policy::disclosure::{
    self, CheckContext, CoverChain, DAY_MS, Instrument, InstrumentKind, Outcome, PriorCover,
    check_approval, check_instrument, parse_instrument,
};
use postvault_policy::review::{PROTECTIVE_ORDER, protective_order_refusal};
use postvault_store::{
    AccountingRow, DisclosureKeys, DisclosureRow, DisclosureStep, RecordRow, SubjectData,
    SubjectRef, SubmitQuery,
};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::read::ReadRecord;
use crate::vault::{Principal, SubjectKeyPair, Vault};

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
/// normalized case id, the same whoever presents them.
const LEDGER_KEYS_VERSION: &str = "2";

/// Codes only the privacy office sees (a request's `office_notes`, an
/// officer's answer). A leaf or any other answer shows `not_permitted` in
/// their place, so nothing outside the office names a protective order.
pub const OFFICE_ONLY_CODES: [&str; 2] = [PROTECTIVE_ORDER, "protective_order_needs_court_order"];

/// Stable codes of the gateway's own refusals, beside the pack's refusal
/// codes (`docs/disclosure.md`).
pub mod codes {
    /// No request with this id that the caller may act on.
    pub const UNKNOWN_REQUEST: &str = "unknown_request";
    /// The caller's role may not take this step.
    pub const NOT_PERMITTED: &str = "not_permitted";
    /// The request is not in a state that allows this step.
    pub const WRONG_STATUS: &str = "wrong_status";
    /// A privacy officer refused the request.
    pub const REFUSED_BY_OFFICER: &str = "refused_by_officer";
    /// Approval named a portion the request did not ask for.
    pub const PORTION_NOT_REQUESTED: &str = "portion_not_requested";
    /// The submission is larger than [`super::MAX_INSTRUMENT_BYTES`].
    pub const TOO_LARGE: &str = "too_large";
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

impl Vault {
    // -----------------------------------------------------------------
    // Submission
    // -----------------------------------------------------------------

    /// Submits an instrument (JSON, `docs/instruments.md`) as `principal`,
    /// an agency. Every submission is recorded and counted, refused or not,
    /// with one leaf.
    pub fn disclose_submit(
        &self,
        principal: &Principal,
        json: &str,
    ) -> Result<StepAnswer, VaultError> {
        let rules = self.pack.disclosure();
        let now = self.clock.now_ms();
        let id = uuid::Uuid::from_bytes(self.ids.next(now)).to_string();
        let mut early: Vec<GatewayReason> = Vec::new();
        if principal.role != rules.requester_role() {
            early.push(GatewayReason::new(
                codes::NOT_PERMITTED,
                format!(
                    "only a principal in the role `{}` submits instruments",
                    rules.requester_role()
                ),
            ));
        }
        let parsed = if json.len() > MAX_INSTRUMENT_BYTES {
            early.push(GatewayReason::new(
                codes::TOO_LARGE,
                format!("an instrument is at most {MAX_INSTRUMENT_BYTES} bytes"),
            ));
            None
        } else {
            match parse_instrument(json) {
                Ok(i) => Some(i),
                Err(refusals) => {
                    early.extend(refusals.into_iter().map(GatewayReason::from));
                    None
                }
            }
        };
        let sealed = if json.len() > MAX_INSTRUMENT_BYTES {
            Vec::new()
        } else {
            self.gateway_key()?
                .seal(&self.rng, &instrument_aad(&id), json.as_bytes())?
        };
        let subjects: Vec<SubjectRef> = parsed
            .as_ref()
            .map(|i| i.subjects.iter().map(|s| self.subject_ref(&s.id)).collect())
            .unwrap_or_default();
        // A cover continues the requester's earlier covers of the person as
        // the ledger shows them; the check counts extensions from that.
        let (chain, extends) = match &parsed {
            Some(i) if i.kind == InstrumentKind::MailCover => {
                self.cover_chain_of(&principal.name, subjects.first(), i, None)?
            }
            _ => (None, None),
        };
        // Decide what can be decided without the person first: a submission
        // the pack refuses on its face touches no per-person record at all.
        // One in order reads the protective-order records of every named id
        // (a seek on their own index, the same for a person who holds
        // thousands of records and for an id nobody holds).
        let in_order = early.is_empty()
            && parsed.as_ref().is_some_and(|i| {
                check_instrument(
                    rules,
                    i,
                    &CheckContext {
                        now_ms: now,
                        cover_chain: chain,
                        ..CheckContext::default()
                    },
                )
                .outcome
                    != Outcome::Refused
            });
        let q = SubmitQuery {
            requester: principal.name.clone(),
            instrument_key: parsed.as_ref().and_then(|i| self.document_key(i)),
            case_key: parsed.as_ref().and_then(|i| self.case_key(i)),
            since_24h: now - DAY_MS,
            since_30d: now - 30 * DAY_MS,
            subjects: if in_order {
                subjects.clone()
            } else {
                Vec::new()
            },
        };
        let tax = self.pack.taxonomy();
        let mut decided = None;
        let mut open_error = None;
        let (row, log_index) = self.store.submit_disclosure(&q, &mut |facts, data, idx| {
            let (status, mut reasons, alerts) = match &parsed {
                Some(inst) => {
                    let verdict = check_instrument(
                        rules,
                        inst,
                        &CheckContext {
                            now_ms: now,
                            used_before: facts.used_before,
                            subject_has_protective_order: false,
                            agency_people_24h: facts.requester_people_24h,
                            agency_people_30d: facts.requester_people_30d,
                            case_people_30d: facts.case_people_30d,
                            cover_chain: chain,
                        },
                    );
                    let status = match verdict.outcome {
                        Outcome::Refused => status::REFUSED,
                        Outcome::HeldForReview => status::HELD,
                        Outcome::PendingApproval => status::PENDING,
                    };
                    (
                        status,
                        verdict
                            .refusals
                            .into_iter()
                            .map(GatewayReason::from)
                            .collect::<Vec<_>>(),
                        verdict.alerts,
                    )
                }
                None => (status::REFUSED, Vec::new(), Vec::new()),
            };
            reasons.splice(0..0, early.iter().cloned());
            let status = if reasons.is_empty() {
                status
            } else {
                status::REFUSED
            };
            // R9, for a submission in order only, and for the office only:
            // the requester's answer, the leaf and the public counts are
            // what they would be for anyone else.
            let mut office_notes = Vec::new();
            if status != status::REFUSED
                && let Some(inst) = &parsed
            {
                match self.protective_order_on_file(&q.subjects, data, now) {
                    Ok(true) => {
                        office_notes.push(PROTECTIVE_ORDER.to_string());
                        if let Some(r) = protective_order_refusal(rules, inst) {
                            office_notes.push(r.code.as_str().to_string());
                        }
                    }
                    Ok(false) => {}
                    Err(e) => open_error = Some(e),
                }
            }
            // A refused submission is still counted by kind and ground when
            // it names them, so the report shows what was asked for.
            let raw: Option<Value> = if parsed.is_none() && json.len() <= MAX_INSTRUMENT_BYTES {
                serde_json::from_str(json).ok()
            } else {
                None
            };
            let raw_str = |key: &str| {
                raw.as_ref()
                    .and_then(|v| v.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let kind = parsed
                .as_ref()
                .map(|i| i.kind)
                .or_else(|| InstrumentKind::from_id(&raw_str("kind")));
            let purpose = kind
                .and_then(|k| rules.kind(k))
                .map(|kr| kr.purpose.clone());
            let portions: Vec<String> = parsed
                .as_ref()
                .map(|i| {
                    i.portions
                        .iter()
                        .filter(|p| tax.category_ix(p).is_some())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let (data_from, data_until) = parsed
                .as_ref()
                .map(|i| data_window(i, rules))
                .unwrap_or((None, None));
            let notice_after = parsed.as_ref().and_then(|i| match i.kind {
                InstrumentKind::MailCover => data_until,
                _ => i.delay_notice_until.map(|t| t.0),
            });
            let event = Event {
                v: LEAF_VERSION,
                time: now,
                action: "disclosure_submit".into(),
                principal: self.actor(principal),
                purpose: purpose.clone(),
                decision: if status == status::REFUSED {
                    "deny"
                } else {
                    "allow"
                }
                .into(),
                pack: self.pack.version().to_string(),
                reasons: reason_codes(&reasons),
                categories: sorted(&portions),
                count: subjects.len() as u64,
                rejected: None,
                selector: None,
                instrument: Some(id.clone()),
                subject_tag: None,
            };
            let row = DisclosureRow {
                id: id.clone(),
                seq: facts.seq,
                requester: principal.name.clone(),
                kind: kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                ground: known_ground(
                    rules,
                    tax,
                    &parsed
                        .as_ref()
                        .map_or_else(|| raw_str("ground"), |i| i.ground.clone()),
                ),
                instrument_key: q.instrument_key,
                case_key: q.case_key,
                extension_no: parsed.as_ref().map_or(0, |i| i.extension_no),
                subjects: subjects.clone(),
                portions,
                status: status.to_string(),
                reasons: reasons.iter().map(|r| r.code.clone()).collect(),
                alerts: alerts.iter().map(|a| alert_name(a).to_string()).collect(),
                submitted_at: now,
                data_from,
                data_until,
                valid_until: parsed.as_ref().and_then(|i| rules.valid_until_ms(i)),
                notice_after,
                retain_until: now + ACCOUNTING_RETENTION_DAYS * DAY_MS,
                sealed: sealed.clone(),
                office_notes,
                extends: extends.clone(),
                ..DisclosureRow::default()
            };
            decided = Some(Submitted {
                status: status.to_string(),
                reasons,
                alerts,
            });
            let _ = idx;
            (row, event.to_leaf())
        })?;
        if let Some(e) = open_error {
            return Err(e);
        }
        let d = decided.ok_or_else(|| VaultError::Invalid {
            what: "submission",
            why: "the store did not decide it".into(),
        })?;
        Ok(StepAnswer {
            id: row.id,
            status: d.status,
            reasons: d.reasons,
            alerts: d.alerts,
            log_index,
        })
    }

    // -----------------------------------------------------------------
    // Approval, refusal, end
    // -----------------------------------------------------------------

    /// Approves request `id` as `officer`: a principal in an approver role
    /// who is not its requester (two-person rule). A mail cover gets its
    /// order key now.
    pub fn disclose_approve(
        &self,
        officer: &Principal,
        id: &str,
        opts: &ApproveOptions,
    ) -> Result<StepAnswer, VaultError> {
        let rules = self.pack.disclosure();
        let now = self.clock.now_ms();
        let mut answer = None;
        let mut cover_key_for = None;
        // A cover's order key exists before its approval commits, so an
        // approved cover never lacks one (a refused approval leaves an
        // unused key, which seals nothing).
        // Only for a principal who may approve at all: anyone else's call
        // touches nothing, whatever the id.
        if rules.approver_roles().contains(&officer.role)
            && let Some(r) = self.store.disclosure(id)?
            && r.requester != officer.name
            && r.kind == InstrumentKind::MailCover.as_str()
            && (r.status == status::PENDING || r.status == status::HELD)
        {
            self.create_cover_key(r.seq)?;
        }
        let (_, log_index) =
            self.store
                .disclosure_step(id, &mut |_| vec![], &mut |row, _, _| {
                    let mut new = None;
                    let (row, mut reasons) = self.officer_step_view(officer, row, "approving");
                    match row {
                        None => {}
                        Some(r) => {
                            if let Err(refusal) =
                                check_approval(rules, &r.requester, &officer.name, &officer.role)
                            {
                                reasons.push(refusal.into());
                            }
                            let st = effective_status(r, now);
                            if st != status::PENDING && st != status::HELD {
                                reasons.push(wrong_status(&st, "approved"));
                            }
                            let mut portions = r.portions.clone();
                            if let Some(only) = &opts.portions {
                                for p in only {
                                    if !r.portions.contains(p) {
                                        reasons.push(GatewayReason::new(
                                    codes::PORTION_NOT_REQUESTED,
                                    "approval may narrow the requested portions, never add one",
                                ));
                                    }
                                }
                                portions.retain(|p| only.contains(p));
                            }
                            if portions.is_empty() {
                                reasons.push(GatewayReason::new(
                                    disclosure::RefusalCode::NoPortion.as_str(),
                                    "an approval names at least one portion",
                                ));
                            }
                            // R9: a protective order on file and no court order.
                            // Only an officer who could otherwise approve is told
                            // why; the leaf says `not_permitted`.
                            let r9 = disclosure::RefusalCode::ProtectiveOrderNeedsCourtOrder;
                            if reasons.is_empty() && r.office_notes.iter().any(|n| n == r9.as_str()) {
                                reasons.push(GatewayReason::new(
                                    r9.as_str(),
                                    "a named person has a protective order on file: only a court order may disclose (R9); refuse this request",
                                ));
                            }
                            if reasons.is_empty() {
                                let mut n = r.clone();
                                n.status = status::APPROVED.into();
                                n.portions = portions;
                                n.decided_by = Some(officer.name.clone());
                                n.decided_at = Some(now);
                                if n.kind == InstrumentKind::MailCover.as_str() {
                                    cover_key_for = Some(n.seq);
                                }
                                new = Some(n);
                            }
                        }
                    }
                    self.step_leaf(
                        officer,
                        row,
                        "disclosure_approve",
                        new,
                        reasons,
                        now,
                        &mut answer,
                    )
                })?;
        let mut answer = answer.ok_or_else(no_answer)?;
        answer.log_index = log_index;
        if let Some(seq) = cover_key_for {
            self.create_cover_key(seq)?;
        }
        Ok(answer)
    }

    /// Refuses request `id` as `officer` (an approver, not its requester).
    pub fn disclose_refuse(&self, officer: &Principal, id: &str) -> Result<StepAnswer, VaultError> {
        let rules = self.pack.disclosure();
        let now = self.clock.now_ms();
        let mut answer = None;
        let (_, log_index) =
            self.store
                .disclosure_step(id, &mut |_| vec![], &mut |row, _, _| {
                    let mut new = None;
                    let (row, mut reasons) = self.officer_step_view(officer, row, "refusing");
                    match row {
                        None => {}
                        Some(r) => {
                            if let Err(refusal) =
                                check_approval(rules, &r.requester, &officer.name, &officer.role)
                            {
                                reasons.push(refusal.into());
                            }
                            let st = effective_status(r, now);
                            if st != status::PENDING && st != status::HELD {
                                reasons.push(wrong_status(&st, "refused"));
                            }
                            if reasons.is_empty() {
                                let mut n = r.clone();
                                n.status = status::REFUSED.into();
                                n.reasons.push(codes::REFUSED_BY_OFFICER.into());
                                n.decided_by = Some(officer.name.clone());
                                n.decided_at = Some(now);
                                new = Some(n);
                            }
                        }
                    }
                    self.step_leaf(
                        officer,
                        row,
                        "disclosure_refuse",
                        new,
                        reasons,
                        now,
                        &mut answer,
                    )
                })?;
        let mut answer = answer.ok_or_else(no_answer)?;
        answer.log_index = log_index;
        Ok(answer)
    }

    /// Ends request `id` early as `officer`. For a mail cover ended as
    /// improperly ordered, its order key is destroyed: nothing recorded
    /// under it can be read again, and the requester sees why.
    pub fn disclose_end(
        &self,
        officer: &Principal,
        id: &str,
        reason: EndReason,
    ) -> Result<StepAnswer, VaultError> {
        let rules = self.pack.disclosure();
        let now = self.clock.now_ms();
        let mut answer = None;
        let mut destroy = None;
        let mut intent_leaf = None;
        let _destroying = (reason == EndReason::ImproperlyOrdered).then(|| self.destroying());
        let cover_records = |row: Option<&DisclosureRow>| -> Vec<SubjectRef> {
            // A cover ended as improperly ordered reads its people, to
            // count what destroying its key makes unreadable; only for a
            // principal who may end it (no other learns by the time taken).
            match row {
                Some(r)
                    if reason == EndReason::ImproperlyOrdered
                        && r.kind == InstrumentKind::MailCover.as_str()
                        && rules.approver_roles().contains(&officer.role) =>
                {
                    r.subjects.clone()
                }
                _ => vec![],
            }
        };
        let (_, log_index) = self.store.disclosure_step(
            id,
            &mut |row| cover_records(row),
            &mut |row, data, _| {
                let mut new = None;
                let (row, mut reasons) = self.officer_step_view(officer, row, "ending");
                match row {
                    None => {}
                    Some(r) => {
                        if !rules.approver_roles().contains(&officer.role) {
                            reasons.push(GatewayReason::new(
                                codes::NOT_PERMITTED,
                                format!(
                                    "ending a request needs the role {}",
                                    rules.approver_roles().join(" or ")
                                ),
                            ));
                        }
                        let st = effective_status(r, now);
                        let cover = r.kind == InstrumentKind::MailCover.as_str();
                        let open = [
                            status::PENDING,
                            status::HELD,
                            status::APPROVED,
                            status::FETCHED,
                        ]
                        .contains(&r.status.as_str());
                        // An improperly ordered cover is destroyed even after it ran.
                        let destroyable = cover
                            && reason == EndReason::ImproperlyOrdered
                            && r.status != status::DESTROYED
                            && r.status != status::REFUSED;
                        if !(open || destroyable) {
                            reasons.push(wrong_status(&st, "ended"));
                            // A destroy that committed but crashed before its key
                            // was deleted is finished by asking again.
                            if cover
                                && reason == EndReason::ImproperlyOrdered
                                && r.status == status::DESTROYED
                            {
                                destroy = Some(r.seq);
                            }
                        }
                        if reasons.is_empty() {
                            let mut n = r.clone();
                            n.status = if reason == EndReason::ImproperlyOrdered && cover {
                                destroy = Some(n.seq);
                                status::DESTROYED
                            } else {
                                status::ENDED
                            }
                            .into();
                            n.ended_at = Some(now);
                            n.end_reason = Some(reason.as_str().into());
                            // A cover's notice waits for its end, which is now.
                            if cover {
                                n.notice_after = n.notice_after.map(|t| t.min(now));
                            }
                            new = Some(n);
                        }
                    }
                }
                let fresh_destroy = new.as_ref().is_some_and(|n| n.status == status::DESTROYED);
                let mut step = self.step_leaf(
                    officer,
                    row,
                    "disclosure_end",
                    new,
                    reasons,
                    now,
                    &mut answer,
                );
                intent_leaf = None;
                if let (true, Some(seq)) = (fresh_destroy, destroy) {
                    // Written ahead: the order key goes only after this
                    // step and its intent have committed.
                    let records = data
                        .iter()
                        .flat_map(|d| &d.records)
                        .filter(|r| u64::from(r.key_id) == seq)
                        .count() as u64;
                    let b = crate::intents::CoverBody { seq, records };
                    step.leaves.push(self.destruction_leaf(
                        &self.actor(officer),
                        "cover_intent",
                        now,
                        records,
                        vec!["mail_cover_record".into()],
                        format!("keys:{}", cover_secret(seq)),
                        vec![],
                    ));
                    intent_leaf = Some(step.leaves.len() - 1);
                    step.intent = Some((
                        step.leaves.len() - 1,
                        postvault_store::Intent {
                            kind: crate::intents::COVER.into(),
                            body: crate::intents::body(&b),
                            at: now,
                        },
                    ));
                }
                step
            },
        )?;
        let mut answer = answer.ok_or_else(no_answer)?;
        answer.log_index = log_index;
        if let Some(seq) = destroy {
            self.keys.delete_secret(&cover_secret(seq))?;
        }
        if let Some(at) = intent_leaf {
            self.complete(log_index + at as u64, &self.actor(officer), false)?;
        }
        Ok(answer)
    }

    // -----------------------------------------------------------------
    // Fetch
    // -----------------------------------------------------------------

    /// Fetches the package of request `id` as its requester. Each named
    /// person's records are read and accounted for (one leaf each, plus an
    /// accounting entry) in one transaction before any record is opened.
    pub fn disclose_fetch(&self, agency: &Principal, id: &str) -> Result<Package, VaultError> {
        let rules = self.pack.disclosure();
        let tax = self.pack.taxonomy();
        let now = self.clock.now_ms();
        // Whether a step is allowed is decided inside the transaction, from
        // the request as stored; the plan reads only if it is.
        let allowed = |r: &DisclosureRow| -> Vec<GatewayReason> {
            if r.requester != agency.name {
                return vec![unknown_request()];
            }
            let st = effective_status(r, now);
            if r.kind == InstrumentKind::MailCover.as_str() {
                // A cover's records accrue while it runs: its requester may
                // fetch them until access ends after the cover (R18).
                let running = r.status == status::APPROVED || r.status == status::FETCHED;
                let ended = r.status == status::ENDED && r.fetches_possible_after_end();
                return match () {
                    _ if (running || ended) && cover_access_until(r) > now => vec![],
                    _ if running || ended => vec![GatewayReason::new(
                        disclosure::RefusalCode::Expired.as_str(),
                        format!(
                            "access to a cover's records ends {COVER_ACCESS_DAYS_AFTER_END} days after the cover ends"
                        ),
                    )],
                    _ => vec![wrong_status(&st, "fetched")],
                };
            }
            match st.as_str() {
                status::APPROVED => vec![],
                status::FETCHED => vec![GatewayReason::new(
                    disclosure::RefusalCode::AlreadyUsed.as_str(),
                    "this request's package has been fetched: each instrument is good for one disclosure",
                )],
                status::EXPIRED => vec![GatewayReason::new(
                    disclosure::RefusalCode::Expired.as_str(),
                    "the instrument is no longer valid",
                )],
                other => vec![wrong_status(other, "fetched")],
            }
        };
        let own_covers: BTreeSet<u64> = self
            .store
            .disclosures()?
            .into_iter()
            .filter(|d| d.requester == agency.name && d.kind == InstrumentKind::MailCover.as_str())
            .map(|d| d.seq)
            .collect();
        // People held by a legal hold that rests on this request.
        let preserved: BTreeSet<SubjectRef> = self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.disclosure == id && h.active(now))
            .map(|h| h.subject)
            .collect();
        let mut plan = |row: Option<&DisclosureRow>| -> Vec<SubjectRef> {
            match row {
                Some(r) if allowed(r).is_empty() => r.subjects.clone(),
                _ => vec![],
            }
        };
        // The fetched request, the refusal reasons, and per subject the
        // indexes of the records chosen for the package.
        type Fetched = (Option<DisclosureRow>, Vec<GatewayReason>, Vec<Vec<usize>>);
        let mut outcome: Option<Fetched> = None;
        let mut fail = None;
        let (data, first) =
            self.store
                .disclosure_step(id, &mut plan, &mut |row, data, first| {
                    let reasons = match row {
                        None => vec![unknown_request()],
                        Some(r) => allowed(r),
                    };
                    let Some(r) = row.filter(|_| reasons.is_empty()) else {
                        // Refused: one leaf, nothing read. A fetch past its validity
                        // records the expiry.
                        let new = row.filter(|r| r.requester == agency.name).and_then(|r| {
                            let st = effective_status(r, now);
                            (st == status::EXPIRED && r.status != status::EXPIRED).then(|| {
                                let mut n = r.clone();
                                n.status = status::EXPIRED.into();
                                n
                            })
                        });
                        let mut ignored = None;
                        let step = self.step_leaf(
                            agency,
                            row.filter(|r| r.requester == agency.name),
                            "disclose",
                            new,
                            reasons.clone(),
                            now,
                            &mut ignored,
                        );
                        outcome = Some((None, reasons, vec![]));
                        return step;
                    };
                    let purpose_ix = rules
                        .kind(
                            InstrumentKind::from_id(&r.kind).unwrap_or(InstrumentKind::CourtOrder),
                        )
                        .and_then(|kr| tax.purpose_ix(&kr.purpose));
                    let mut step = DisclosureStep::default();
                    let mut chosen = Vec::new();
                    let mut key_cache = crate::vault::KeyCache::default();
                    // Records of the package whose keys are missing: the
                    // fetch is refused, never answered with less.
                    let mut missing = 0u64;
                    for (i, (subject, d)) in r.subjects.iter().zip(data).enumerate() {
                        let keys = match self.subject_keys(subject) {
                            Ok(k) => k,
                            Err(VaultError::Crypto(_)) => None,
                            Err(e) => {
                                fail = Some(e);
                                None
                            }
                        };
                        let mut picked: Vec<usize> = Vec::new();
                        for (ix, rec) in d.records.iter().enumerate() {
                            if !in_package(r, rec, now, &own_covers, preserved.contains(subject)) {
                                continue;
                            }
                            match self.gone(rec, keys.as_deref(), &mut key_cache, now) {
                                crate::integrity::Gone::No => picked.push(ix),
                                crate::integrity::Gone::Lawfully => {}
                                _ => missing += 1,
                            }
                        }
                        let categories: BTreeSet<String> = picked
                            .iter()
                            .map(|&ix| d.records[ix].category.clone())
                            .collect();
                        let idx = first + i as u64;
                        let tag = self.disclosure_tag(r, keys.as_deref(), d.exists, idx, now);
                        let tag = match tag {
                            Ok(t) => t,
                            Err(e) => {
                                fail = Some(e);
                                [0; 16]
                            }
                        };
                        step.leaves.push(
                            Event {
                                v: LEAF_VERSION,
                                time: now,
                                action: "disclose".into(),
                                principal: self.actor(agency),
                                purpose: purpose_ix.map(|p| tax.purpose(p).id.clone()),
                                decision: "allow".into(),
                                pack: self.pack.version().to_string(),
                                reasons: vec![],
                                categories: categories.iter().cloned().collect(),
                                count: picked.len() as u64,
                                rejected: None,
                                selector: None,
                                instrument: Some(r.id.clone()),
                                subject_tag: Some(
                                    base64::engine::general_purpose::STANDARD.encode(tag),
                                ),
                            }
                            .to_leaf(),
                        );
                        step.accounting.push(AccountingRow {
                            disclosure: r.id.clone(),
                            subject: *subject,
                            at: now,
                            leaf: 0,
                            records: picked.len() as u64,
                            categories: categories.into_iter().collect(),
                        });
                        step.accounting_leaf.push(i);
                        chosen.push(picked);
                    }
                    if missing > 0 {
                        fail = Some(VaultError::RecordKeysMissing { records: missing });
                        let mut ignored = None;
                        return self.step_leaf(
                            agency,
                            Some(r),
                            "disclose",
                            None,
                            vec![GatewayReason::new(
                                "keys_missing",
                                "records of the package cannot be opened: their keys are missing",
                            )],
                            now,
                            &mut ignored,
                        );
                    }
                    if step.leaves.is_empty() {
                        // An approved request always names someone; still, a step
                        // is never without its leaf.
                        let mut ignored = None;
                        return self.step_leaf(
                            agency,
                            Some(r),
                            "disclose",
                            None,
                            vec![],
                            now,
                            &mut ignored,
                        );
                    }
                    let mut n = r.clone();
                    // A cover that ended stays ended: fetching what it recorded
                    // never reopens it for recording.
                    if n.status != status::ENDED {
                        n.status = status::FETCHED.into();
                    }
                    n.fetches += 1;
                    n.last_fetched_at = Some(now);
                    // R13: the accounting is kept five years after the disclosure.
                    n.retain_until = n.retain_until.max(now + ACCOUNTING_RETENTION_DAYS * DAY_MS);
                    step.row = Some(n.clone());
                    outcome = Some((Some(n), vec![], chosen));
                    step
                })?;
        if let Some(e) = fail {
            return Err(e);
        }
        let (row, reasons, chosen) = outcome.ok_or_else(no_answer)?;
        let Some(row) = row else {
            let st = self
                .store
                .disclosure(id)?
                .filter(|r| r.requester == agency.name)
                .map(|r| effective_status(&r, now))
                .unwrap_or_else(|| "unknown".into());
            return Ok(Package {
                id: id.to_string(),
                status: st,
                reasons,
                kind: String::new(),
                purpose: String::new(),
                portions: vec![],
                data_from: None,
                data_until: None,
                subjects: vec![],
                log_index: first,
            });
        };
        // The leaves are durable: only now is anything opened.
        let inst = self.open_instrument(&row)?;
        let kr = rules
            .kind(InstrumentKind::from_id(&row.kind).unwrap_or(InstrumentKind::CourtOrder))
            .ok_or_else(no_answer)?;
        let purpose_ix = tax
            .purpose_ix(&kr.purpose)
            .ok_or_else(|| VaultError::UnknownPurpose(kr.purpose.clone()))?;
        let mut subjects = Vec::new();
        let mut cover_keys = crate::vault::KeyCache::default();
        for (i, (d, picked)) in data.iter().zip(&chosen).enumerate() {
            let keys = self.subject_keys(&row.subjects[i])?;
            let mut records = Vec::new();
            for &ix in picked {
                let rec = &d.records[ix];
                let Some(plain) = self.open_record(rec, keys.as_deref(), &mut cover_keys)? else {
                    continue;
                };
                if let Some(r) = crate::read::to_read_record(tax, purpose_ix, rec, &plain)? {
                    records.push(r);
                }
            }
            subjects.push(PackageSubject {
                // Refs were made from the instrument's subjects, in order.
                subject: inst
                    .as_ref()
                    .and_then(|inst| inst.subjects.get(i))
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                records,
                log_index: first + i as u64,
            });
        }
        Ok(Package {
            id: row.id.clone(),
            status: row.status.clone(),
            reasons: vec![],
            kind: row.kind.clone(),
            purpose: kr.purpose.clone(),
            portions: row.portions.clone(),
            data_from: row.data_from.map(format_ms),
            data_until: row.data_until.map(format_ms),
            subjects,
            log_index: first,
        })
    }

    // -----------------------------------------------------------------
    // Views, accounting, notices, report
    // -----------------------------------------------------------------

    /// The requests `principal` may see: an agency its own; an approver or
    /// auditor every one.
    pub fn disclosure_list(&self, principal: &Principal) -> Result<Vec<RequestView>, VaultError> {
        let now = self.clock.now_ms();
        let all = self.may_see_all_requests(principal);
        let office = self.is_privacy_office(principal);
        Ok(self
            .store
            .disclosures()?
            .iter()
            .filter(|r| all || r.requester == principal.name)
            .map(|r| {
                let mut v = view(r, now);
                if office {
                    v.office_notes = r.office_notes.clone();
                }
                v
            })
            .collect())
    }

    /// Every request (the operator's view, on the vault's own machine).
    pub fn disclosure_list_all(&self) -> Result<Vec<RequestView>, VaultError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .disclosures()?
            .iter()
            .map(|r| view(r, now))
            .collect())
    }

    /// One request, if `principal` may see it. A privacy officer's view
    /// opens the sealed instrument (one leaf for the opening) and shows it
    /// beside the pack's checks and what the pack cannot check.
    pub fn disclosure_show(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Option<RequestView>, VaultError> {
        let now = self.clock.now_ms();
        let all = self.may_see_all_requests(principal);
        let Some(r) = self
            .store
            .disclosure(id)?
            .filter(|r| all || r.requester == principal.name)
        else {
            return Ok(None);
        };
        let mut v = view(&r, now);
        if self.is_privacy_office(principal) {
            v.office_notes = r.office_notes.clone();
            v.officer = Some(self.officer_view(principal, &r, now)?);
        }
        Ok(Some(v))
    }

    fn may_see_all_requests(&self, p: &Principal) -> bool {
        let rules = self.pack.disclosure();
        rules.approver_roles().contains(&p.role) || p.role == "auditor"
    }

    /// The privacy office: the pack's approver roles (not the auditor, who
    /// sees no personal data).
    pub(crate) fn is_privacy_office(&self, p: &Principal) -> bool {
        self.pack.disclosure().approver_roles().contains(&p.role)
    }

    /// The accounting of disclosures about `subject` (R13), as `principal`:
    /// a role acting for `subject_access` (the person's own request). What a
    /// delay order covers is left out until it expires; `officer_view`
    /// (approver roles only) shows it too, marked. One leaf accounts for the
    /// read, tagged for the person.
    pub fn accounting(
        &self,
        principal: &Principal,
        subject: &str,
        officer_view: bool,
    ) -> Result<Accounting, VaultError> {
        crate::vault::check_subject(subject)?;
        let tax = self.pack.taxonomy();
        let rules = self.pack.disclosure();
        let for_subject = tax
            .role(principal.role_ix)
            .read_for
            .iter()
            .any(|&p| tax.purpose(p).id == "subject_access");
        let officer = rules.approver_roles().contains(&principal.role);
        if !for_subject || (officer_view && !officer) {
            self.deny_leaf(principal, "accounting_read", Some("subject_access"))?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not read the accounting of disclosures{}",
                principal.role,
                if officer_view {
                    " with what a delay order withholds"
                } else {
                    ""
                }
            )));
        }
        let now = self.clock.now_ms();
        let subject_ref = self.subject_ref(subject);
        let keys = self.subject_keys(&subject_ref)?;
        let rows = self.store.accounting(&subject_ref)?;
        let mut entries = Vec::new();
        let mut cache: HashMap<String, Option<(DisclosureRow, Option<Instrument>)>> =
            HashMap::new();
        for a in rows {
            if !cache.contains_key(&a.disclosure) {
                let d = self.store.disclosure(&a.disclosure)?;
                let inst = match &d {
                    Some(d) => self.open_instrument(d)?,
                    None => None,
                };
                cache.insert(a.disclosure.clone(), d.map(|d| (d, inst)));
            }
            let Some(Some((d, inst))) = cache.get(&a.disclosure) else {
                continue;
            };
            let delayed = d.notice_after.is_some_and(|t| t > now);
            if delayed && !officer_view {
                continue;
            }
            entries.push(AccountingEntry {
                disclosure: d.id.clone(),
                date: format_ms(a.at),
                nature: d.kind.clone(),
                purpose: d.ground.clone(),
                authority: inst
                    .as_ref()
                    .map(|i| i.authority.clone())
                    .unwrap_or_default(),
                recipient: inst.as_ref().map(|i| i.agency.clone()).unwrap_or_default(),
                recipient_principal: d.requester.clone(),
                categories: a.categories.clone(),
                records: a.records,
                log_index: a.leaf,
                retain_until: format_ms(d.retain_until),
                withheld_until: d.notice_after.filter(|_| delayed).map(format_ms),
            });
        }
        let random = self.random_tag()?;
        let log_index = self.store.append_leaves(1, &mut |idx, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: "accounting_read".into(),
                principal: self.actor(principal),
                purpose: Some("subject_access".into()),
                decision: "allow".into(),
                pack: self.pack.version().to_string(),
                reasons: vec![],
                categories: vec!["disclosure_accounting".into()],
                // What the person may see: the leaf carries their tag, so an
                // officer's view must not show a delayed entry through it.
                count: entries
                    .iter()
                    .filter(|e| e.withheld_until.is_none())
                    .count() as u64,
                rejected: None,
                selector: None,
                instrument: None,
                subject_tag: Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(keys.as_ref().map_or(random, |k| k.tag.tag(idx))),
                ),
            }
            .to_leaf()
        })?;
        Ok(Accounting {
            subject: subject.to_string(),
            entries,
            log_index,
        })
    }

    /// Notices due: for every disclosure whose data left and whose delay
    /// order (if any) has expired, each person it was about is told, once.
    /// One leaf per notice, tagged for the person, so they find it in the
    /// log; the answer says what the letter to them would say.
    pub fn disclosure_notices(&self, officer: &Principal) -> Result<Vec<Notice>, VaultError> {
        let rules = self.pack.disclosure();
        if !rules.approver_roles().contains(&officer.role) {
            self.deny_leaf(officer, "disclosure_notice", None)?;
            return Err(VaultError::NotPermitted(format!(
                "sending notices needs the role {}",
                rules.approver_roles().join(" or ")
            )));
        }
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for due in self.store.disclosures()?.into_iter().filter(|r| {
            r.fetches > 0 && r.notified_at.is_none() && r.notice_after.is_none_or(|t| t <= now)
        }) {
            let inst = self.open_instrument(&due)?;
            let mut keys = Vec::new();
            for s in &due.subjects {
                keys.push(self.subject_keys(s)?);
            }
            let random: Vec<[u8; 16]> = (0..due.subjects.len())
                .map(|_| self.random_tag())
                .collect::<Result<_, _>>()?;
            let mut first_leaf = 0;
            let mut sent = false;
            self.store
                .disclosure_step(&due.id, &mut |_| vec![], &mut |row, _, first| {
                    first_leaf = first;
                    let Some(r) = row.filter(|r| r.notified_at.is_none()) else {
                        // Another process sent it: the step still leaves a leaf.
                        let mut ignored = None;
                        return self.step_leaf(
                            officer,
                            row,
                            "disclosure_notice",
                            None,
                            vec![],
                            now,
                            &mut ignored,
                        );
                    };
                    sent = true;
                    let mut n = r.clone();
                    n.notified_at = Some(now);
                    DisclosureStep {
                        row: Some(n),
                        leaves: (0..r.subjects.len())
                            .map(|i| {
                                let idx = first + i as u64;
                                let tag = keys
                                    .get(i)
                                    .and_then(|k| k.as_ref())
                                    .map_or(random[i], |k| k.tag.tag(idx));
                                Event {
                                    v: LEAF_VERSION,
                                    time: now,
                                    action: "disclosure_notice".into(),
                                    principal: self.actor(officer),
                                    purpose: None,
                                    decision: "allow".into(),
                                    pack: self.pack.version().to_string(),
                                    reasons: vec![],
                                    categories: sorted(&r.portions),
                                    count: 0,
                                    rejected: None,
                                    selector: None,
                                    instrument: Some(r.id.clone()),
                                    subject_tag: Some(
                                        base64::engine::general_purpose::STANDARD.encode(tag),
                                    ),
                                }
                                .to_leaf()
                            })
                            .collect(),
                        ..DisclosureStep::default()
                    }
                })?;
            if !sent {
                continue;
            }
            for i in 0..due.subjects.len() {
                out.push(Notice {
                    disclosure: due.id.clone(),
                    subject: inst
                        .as_ref()
                        .and_then(|inst| inst.subjects.get(i))
                        .map(|s| s.id.clone())
                        .unwrap_or_default(),
                    recipient: inst.as_ref().map(|i| i.agency.clone()).unwrap_or_default(),
                    nature: due.kind.clone(),
                    disclosed_at: due.last_fetched_at.map(format_ms).unwrap_or_default(),
                    delayed_until: due.notice_after.map(format_ms),
                    log_index: first_leaf + i as u64,
                });
            }
        }
        Ok(out)
    }

    /// The transparency report (R26), computed from the ledger: requests by
    /// agency, kind, ground and outcome; refusals by reason; holds and
    /// alerts; mail covers. Aggregates only: no person, case or instrument.
    pub fn transparency_report(&self) -> Result<TransparencyReport, VaultError> {
        let now = self.clock.now_ms();
        let rows = self.store.disclosures()?;
        let mut r = TransparencyReport {
            generated_at: format_ms(now),
            pack: self.pack.version().to_string(),
            log_size: self.store.log_size()?,
            requests: rows.len() as u64,
            by_outcome: BTreeMap::new(),
            by_agency: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            by_ground: BTreeMap::new(),
            refusals_by_reason: BTreeMap::new(),
            held_for_review: 0,
            alerts: BTreeMap::new(),
            mail_covers: CoverCounts::default(),
            disclosures: DisclosedCounts::default(),
            statistics: self.statistics_report(&rows)?,
        };
        for d in &rows {
            let st = effective_status(d, now);
            let or_unknown = |s: &str| {
                if s.is_empty() {
                    "unknown".to_string()
                } else {
                    s.to_string()
                }
            };
            *r.by_outcome.entry(st.clone()).or_default() += 1;
            for (map, key) in [
                (&mut r.by_agency, d.requester.clone()),
                (&mut r.by_kind, or_unknown(&d.kind)),
                (&mut r.by_ground, or_unknown(&d.ground)),
            ] {
                *map.entry(key).or_default().entry(st.clone()).or_default() += 1;
            }
            for code in d.reasons.iter().collect::<BTreeSet<_>>() {
                *r.refusals_by_reason.entry(code.clone()).or_default() += 1;
            }
            for a in d.alerts.iter().collect::<BTreeSet<_>>() {
                *r.alerts.entry(a.clone()).or_default() += 1;
            }
            // Held at submission: a quota crossed and nothing else wrong
            // (an officer may have decided it since).
            let quota = d.alerts.iter().any(|a| a.starts_with("quota_"));
            if quota && d.reasons.iter().all(|c| c == codes::REFUSED_BY_OFFICER) {
                r.held_for_review += 1;
            }
            if d.kind == InstrumentKind::MailCover.as_str() {
                let c = &mut r.mail_covers;
                c.requested += 1;
                if d.decided_at.is_some() && d.status != status::REFUSED {
                    c.approved += 1;
                }
                if d.status == status::REFUSED {
                    c.refused += 1;
                }
                if d.extension_no > 0 {
                    c.extended += 1;
                }
                if d.status == status::ENDED {
                    c.ended += 1;
                }
                if d.status == status::DESTROYED {
                    c.destroyed += 1;
                }
            }
            if d.fetches > 0 {
                r.disclosures.fetches += u64::from(d.fetches);
                r.disclosures.subjects += d.subjects.len() as u64;
            }
        }
        Ok(r)
    }

    /// Checks a mail-cover record at collection (R12-R18): it names, in
    /// `order_id`, an approved cover of the line's subject that is running
    /// now and was not destroyed, and it is not correspondence with the
    /// subject's known attorney (233.3(g)(3)). Returns the order's key
    /// number, under which the record is sealed.
    pub(crate) fn check_cover_record(
        &self,
        line_no: u64,
        subject: &SubjectRef,
        cat: &postvault_policy::Category,
        fields: &crate::minimize::Minimized,
    ) -> Result<u32, crate::LineError> {
        let err = |code: &str, field: &str, rule: &str, message: &str| crate::LineError {
            line: line_no,
            code: code.into(),
            field: Some(field.into()),
            rule: Some(rule.into()),
            message: message.into(),
        };
        let field = |name: &str| {
            cat.field(name)
                .and_then(|(ix, _)| crate::minimize::field_value(fields, ix))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let no_cover = || {
            err(
                "no_active_cover",
                "order_id",
                "R14",
                "`order_id` names no mail cover of this subject that is approved and running now: recording needs an order in force (39 CFR 233.3(g)(4)-(5))",
            )
        };
        let now = self.clock.now_ms();
        let row = self
            .store
            .disclosure(field("order_id"))
            .ok()
            .flatten()
            .filter(|r| {
                r.kind == InstrumentKind::MailCover.as_str()
                    && (r.status == status::APPROVED || r.status == status::FETCHED)
                    && r.subjects.contains(subject)
                    && r.data_from.is_some_and(|t| t <= now)
                    && r.data_until.is_some_and(|t| now < t)
            })
            .ok_or_else(no_cover)?;
        let key_id = u32::try_from(row.seq).map_err(|_| no_cover())?;
        if !matches!(self.cover_key(row.seq), Ok(Some(_))) {
            return Err(no_cover());
        }
        let inst = self.open_instrument(&row).ok().flatten();
        if let Some(att) = inst.as_ref().and_then(|i| i.known_attorney.as_ref()) {
            // Compared as skeletons: spacing, punctuation, postal
            // abbreviations, look-alike, full-width and invisible characters
            // do not get past it.
            let names = |text: &str| crate::fold::names_party(text, &att.name, &att.address);
            if names(field("sender_as_shown")) || names(field("return_address")) {
                return Err(err(
                    "attorney_correspondence",
                    "sender_as_shown",
                    "R15",
                    "correspondence between the subject and the subject's known attorney is never recorded (39 CFR 233.3(g)(3))",
                ));
            }
        }
        Ok(key_id)
    }

    // -----------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------

    pub(crate) fn actor(&self, p: &Principal) -> Actor {
        Actor {
            role: p.role.clone(),
            id: self.actor_id(&p.name),
        }
    }

    fn random_tag(&self) -> Result<[u8; 16], VaultError> {
        Ok(postvault_crypto::random_token(&self.rng)?)
    }

    /// The keyed hash of a document's identity, the same whoever presents
    /// it and however its references are written: kind, court name, docket
    /// and instrument id, each an [`crate::fold::identity_key`]. `None` for
    /// an instrument with no id (the pack refuses it).
    pub(crate) fn document_key(&self, inst: &Instrument) -> Option<[u8; 16]> {
        let id = crate::fold::identity_key(&inst.instrument_id);
        if id.is_empty() {
            return None;
        }
        let (court, docket) = inst
            .court
            .as_ref()
            .map_or((String::new(), String::new()), |c| {
                (
                    crate::fold::identity_key(&c.name),
                    crate::fold::identity_key(&c.docket),
                )
            });
        let identity = [inst.kind.as_str(), &court, &docket, &id].join("\0");
        Some(
            self.master
                .blind_index("ledger.document", identity.as_bytes()),
        )
    }

    /// The keyed hash of a case id, the same whoever presents it: quotas per
    /// case count across principals.
    pub(crate) fn case_key(&self, inst: &Instrument) -> Option<[u8; 16]> {
        let case = crate::fold::identity_key(&inst.case_id);
        (!case.is_empty()).then(|| self.master.blind_index("ledger.case", case.as_bytes()))
    }

    /// The run of `requester`'s earlier covers of `subject` that `inst`
    /// continues, from the ledger (requests not refused, submitted before
    /// `before_seq` when given), and the request it directly extends. Only
    /// the requester's own covers count: another agency's (possibly secret)
    /// cover never shows through a refusal.
    pub(crate) fn cover_chain_of(
        &self,
        requester: &str,
        subject: Option<&SubjectRef>,
        inst: &Instrument,
        before_seq: Option<u64>,
    ) -> Result<(Option<CoverChain>, Option<String>), VaultError> {
        let (Some(subject), Some(start)) = (subject, inst.start) else {
            return Ok((None, None));
        };
        let rows: Vec<DisclosureRow> = self
            .store
            .disclosures()?
            .into_iter()
            .filter(|d| {
                d.requester == requester
                    && d.kind == InstrumentKind::MailCover.as_str()
                    && d.status != status::REFUSED
                    && (d.decided_at.is_some()
                        || d.status == status::PENDING
                        || d.status == status::HELD)
                    && d.subjects.first() == Some(subject)
                    && before_seq.is_none_or(|s| d.seq < s)
            })
            .collect();
        let orders: Vec<(&str, PriorCover)> = rows
            .iter()
            .filter_map(|d| {
                let (from, until) = (d.data_from?, d.data_until?);
                Some((
                    d.id.as_str(),
                    PriorCover {
                        start_ms: from,
                        // An order ended early ran until then.
                        end_ms: d.ended_at.map_or(until, |e| e.min(until)),
                    },
                ))
            })
            .collect();
        let priors: Vec<PriorCover> = orders.iter().map(|(_, p)| *p).collect();
        let (chain, direct) = disclosure::cover_chain(&priors, start.0);
        Ok((
            Some(chain),
            direct
                .and_then(|i| orders.get(i))
                .map(|(id, _)| (*id).to_string()),
        ))
    }

    /// Recomputes the ledger's instrument and case keys when their
    /// derivation changed (version [`LEDGER_KEYS_VERSION`]): each sealed
    /// instrument is opened once. Runs at open, before anything is decided.
    pub(crate) fn upgrade_ledger_keys(&self) -> Result<(), VaultError> {
        if self.store.meta(LEDGER_KEYS_META)?.as_deref() == Some(LEDGER_KEYS_VERSION) {
            return Ok(());
        }
        let mut keys = Vec::new();
        for row in self.store.disclosures()? {
            let inst = self.open_instrument(&row)?;
            keys.push(DisclosureKeys {
                id: row.id.clone(),
                instrument_key: inst.as_ref().and_then(|i| self.document_key(i)),
                case_key: inst.as_ref().and_then(|i| self.case_key(i)),
            });
        }
        if !keys.is_empty() {
            self.store.set_disclosure_keys(&keys)?;
        }
        self.store.set_meta(LEDGER_KEYS_META, LEDGER_KEYS_VERSION)?;
        Ok(())
    }

    /// One refused step that touched no data: one leaf.
    pub(crate) fn deny_leaf(
        &self,
        principal: &Principal,
        action: &str,
        purpose: Option<&str>,
    ) -> Result<u64, VaultError> {
        let now = self.clock.now_ms();
        Ok(self.store.append_leaves(1, &mut |_, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: action.into(),
                principal: self.actor(principal),
                purpose: purpose.map(str::to_string),
                decision: "deny".into(),
                pack: self.pack.version().to_string(),
                reasons: vec![codes::NOT_PERMITTED.into()],
                categories: vec![],
                count: 0,
                rejected: None,
                selector: None,
                instrument: None,
                subject_tag: None,
            }
            .to_leaf()
        })?)
    }

    /// The request as `p` may act on it in an officer's step (approve,
    /// refuse, end), or the reason it may not, decided from `p`'s role
    /// before anything about the request: an approver sees every request;
    /// the requester role its own only (another agency's request is no
    /// request at all); any other role may take no such step, and is told so
    /// in the same words, with the same leaf, for a real id and a made-up
    /// one.
    fn officer_step_view<'a>(
        &self,
        p: &Principal,
        row: Option<&'a DisclosureRow>,
        verb: &str,
    ) -> (Option<&'a DisclosureRow>, Vec<GatewayReason>) {
        let rules = self.pack.disclosure();
        let seen = if rules.approver_roles().contains(&p.role) {
            row
        } else if p.role == rules.requester_role() {
            row.filter(|r| r.requester == p.name)
        } else {
            return (
                None,
                vec![GatewayReason::new(
                    codes::NOT_PERMITTED,
                    format!(
                        "{verb} a request needs the role {}",
                        if rules.approver_roles().is_empty() {
                            "of an approver, and this pack has none".to_string()
                        } else {
                            rules.approver_roles().join(" or ")
                        }
                    ),
                )],
            );
        };
        match seen {
            Some(r) => (Some(r), vec![]),
            None => (None, vec![unknown_request()]),
        }
    }

    /// The step of an officer's or agency's action on a request, with its
    /// one leaf; `answer` gets what the caller is told.
    #[allow(clippy::too_many_arguments)]
    fn step_leaf(
        &self,
        principal: &Principal,
        row: Option<&DisclosureRow>,
        action: &str,
        new: Option<DisclosureRow>,
        reasons: Vec<GatewayReason>,
        now: i64,
        answer: &mut Option<StepAnswer>,
    ) -> DisclosureStep {
        let rules = self.pack.disclosure();
        let purpose = row
            .and_then(|r| InstrumentKind::from_id(&r.kind))
            .and_then(|k| rules.kind(k))
            .map(|kr| kr.purpose.clone());
        let shown = new.as_ref().or(row);
        let event = Event {
            v: LEAF_VERSION,
            time: now,
            action: action.into(),
            principal: self.actor(principal),
            purpose,
            decision: if reasons.is_empty() { "allow" } else { "deny" }.into(),
            pack: self.pack.version().to_string(),
            reasons: reason_codes(&reasons),
            categories: shown.map(|r| sorted(&r.portions)).unwrap_or_default(),
            count: shown.map_or(0, |r| r.subjects.len() as u64),
            rejected: None,
            selector: None,
            instrument: row.map(|r| r.id.clone()),
            subject_tag: None,
        };
        *answer = Some(StepAnswer {
            id: row.map(|r| r.id.clone()).unwrap_or_default(),
            status: shown
                .map(|r| effective_status(r, now))
                .unwrap_or_else(|| "unknown".into()),
            reasons,
            alerts: vec![],
            log_index: 0,
        });
        DisclosureStep {
            row: new,
            leaves: vec![event.to_leaf()],
            ..DisclosureStep::default()
        }
    }

    /// The key that seals instruments in the ledger, made on first use.
    fn gateway_key(&self) -> Result<DataKey, VaultError> {
        let wrapped = match self.keys.secret(GATEWAY_SECRET)? {
            Some(w) => w,
            None => {
                let w = self
                    .master
                    .new_wrapped(&self.rng, KeyKind::Data, GATEWAY_KEY_REF)?;
                match self.keys.put_secret(GATEWAY_SECRET, &w) {
                    Ok(()) => w,
                    // Another process made it first.
                    Err(postvault_store::StoreError::SecretExists(_)) => self
                        .keys
                        .secret(GATEWAY_SECRET)?
                        .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(self.master.data_key(&wrapped, GATEWAY_KEY_REF)?)
    }

    fn create_cover_key(&self, seq: u64) -> Result<(), VaultError> {
        let name = cover_secret(seq);
        let w = self
            .master
            .new_wrapped(&self.rng, KeyKind::Data, name.as_bytes())?;
        match self.keys.put_secret(&name, &w) {
            Ok(()) | Err(postvault_store::StoreError::SecretExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The order key of mail cover `seq`, unless it was destroyed.
    pub(crate) fn cover_key(&self, seq: u64) -> Result<Option<DataKey>, VaultError> {
        let name = cover_secret(seq);
        match self.keys.secret(&name)? {
            Some(w) => Ok(Some(self.master.data_key(&w, name.as_bytes())?)),
            None => Ok(None),
        }
    }

    /// The instrument of a request as submitted, if it was one.
    pub(crate) fn open_instrument(
        &self,
        row: &DisclosureRow,
    ) -> Result<Option<Instrument>, VaultError> {
        Ok(self
            .open_submission(row)?
            .and_then(|s| parse_instrument(&s).ok()))
    }

    /// The text of a submission as sealed in the ledger (`None`: too large
    /// to keep, or not text).
    pub(crate) fn open_submission(
        &self,
        row: &DisclosureRow,
    ) -> Result<Option<String>, VaultError> {
        if row.sealed.is_empty() {
            return Ok(None);
        }
        let plain = self
            .gateway_key()?
            .open(&instrument_aad(&row.id), &row.sealed)?;
        Ok(String::from_utf8(plain).ok())
    }

    /// Whether a named subject has a protective order on file (R9), from
    /// the protective-order records the store read for the submission. Every
    /// named id costs the same: one key-store read, whether the vault holds
    /// the person or not, and records are opened only where there are some.
    fn protective_order_on_file(
        &self,
        subjects: &[SubjectRef],
        data: &[SubjectData],
        now: i64,
    ) -> Result<bool, VaultError> {
        let mut found = false;
        for (s, d) in subjects.iter().zip(data) {
            let orders: Vec<&RecordRow> = d
                .records
                .iter()
                .filter(|r| r.category == "protective_order" && r.expires_at > now)
                .collect();
            if orders.is_empty() || found {
                // The same key-store seek as a person with an order on file.
                let _ = self.keys.subject_keys(s)?;
                continue;
            }
            let Some(keys) = self.subject_keys(s)? else {
                continue;
            };
            let mut no_cover_keys = crate::vault::KeyCache::default();
            for r in orders {
                let Some(plain) = self.open_record(r, Some(&keys), &mut no_cover_keys)? else {
                    continue;
                };
                let v: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
                if v.pointer("/fields/on_file").and_then(Value::as_bool) == Some(true) {
                    found = true;
                }
            }
        }
        Ok(found)
    }

    /// The tag of a disclosure leaf: the person's own, unless a delay order
    /// stands (then a keyed value nobody but the vault can link, until the
    /// notice leaf carries the person's tag); random for an unknown person.
    fn disclosure_tag(
        &self,
        r: &DisclosureRow,
        keys: Option<&SubjectKeyPair>,
        exists: bool,
        idx: u64,
        now: i64,
    ) -> Result<[u8; 16], VaultError> {
        let delayed = r.notice_after.is_some_and(|t| t > now);
        match keys {
            Some(k) if exists && !delayed => Ok(k.tag.tag(idx)),
            Some(_) if exists => {
                let mut v = r.id.as_bytes().to_vec();
                v.extend_from_slice(&idx.to_be_bytes());
                Ok(self.master.blind_index("delayed-disclosure-tag", &v))
            }
            _ => self.random_tag(),
        }
    }
}

/// The AAD of a sealed instrument: binds it to its request.
fn instrument_aad(id: &str) -> Vec<u8> {
    let mut aad = b"postvault/v1/instrument\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

pub(crate) fn cover_secret(seq: u64) -> String {
    format!("cover:{seq}")
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

/// When a cover's requester loses access to its records.
fn cover_access_until(r: &DisclosureRow) -> i64 {
    let end = match (r.data_until, r.ended_at) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(i64::MAX),
    };
    end.saturating_add(COVER_ACCESS_DAYS_AFTER_END * DAY_MS)
}

trait EndedCover {
    /// A cover ended early (not destroyed) keeps what it recorded for its
    /// requester, as one that ran its course does (R18).
    fn fetches_possible_after_end(&self) -> bool;
}

impl EndedCover for DisclosureRow {
    fn fetches_possible_after_end(&self) -> bool {
        self.end_reason.as_deref() != Some(EndReason::ImproperlyOrdered.as_str())
    }
}

/// Whether record `rec` belongs in the package of request `r`.
/// `own_covers`: the order numbers of the requester's own mail covers; a
/// court order reaches cover records of those only, never another agency's
/// (possibly running, secret) cover.
fn in_package(
    r: &DisclosureRow,
    rec: &RecordRow,
    now: i64,
    own_covers: &BTreeSet<u64>,
    preserved: bool,
) -> bool {
    let cover = r.kind == InstrumentKind::MailCover.as_str();
    // A legal hold resting on this very request keeps records past their
    // retention for it.
    (rec.expires_at > now || (preserved && rec.key_id == postvault_store::key_id::HOLD))
        && rec.superseded_by.is_none()
        && r.portions.contains(&rec.category)
        && r.data_from.is_none_or(|t| rec.collected_at >= t)
        && r.data_until.is_none_or(|t| rec.collected_at < t)
        // A cover sees what was recorded under its own order only.
        && (rec.category != "mail_cover_record"
            || if cover {
                u64::from(rec.key_id) == r.seq
            } else {
                own_covers.contains(&u64::from(rec.key_id))
            })
}

/// The records a request may reach: `[from, until)`. A time range's `to`
/// that is a day (midnight) includes that whole day.
fn data_window(
    inst: &Instrument,
    rules: &postvault_policy::DisclosureRules,
) -> (Option<i64>, Option<i64>) {
    if inst.kind == InstrumentKind::MailCover {
        let start = inst.start.map(|t| t.0);
        let end = match (&inst.start, inst.days, rules.mail_cover()) {
            (Some(s), Some(d), Some(mc)) => Some(mc.order_end_ms(s.0, d, &inst.ground)),
            _ => None,
        };
        return (start, end);
    }
    match inst.time_range {
        Some(tr) => {
            let to = tr.to.0;
            let until = if disclosure::start_of_day_ms(to) == to {
                to.saturating_add(DAY_MS)
            } else {
                to.saturating_add(1)
            };
            (Some(tr.from.0), Some(until))
        }
        None => (None, None),
    }
}

/// The ground as the ledger keeps it: a ground id of the pack (or a
/// prohibited purpose it was refused for), else `other`; never free text.
fn known_ground(
    rules: &postvault_policy::DisclosureRules,
    tax: &postvault_policy::Taxonomy,
    ground: &str,
) -> String {
    // The same folding the pack's check uses: a prohibited ground spelled
    // with Unicode hyphens or full-width letters is counted as itself.
    let g = disclosure::fold_id(ground);
    if g.is_empty() {
        return String::new();
    }
    let known = rules.kinds().any(|(_, kr)| kr.grounds.contains(&g))
        || disclosure::MAIL_COVER_GROUNDS.contains(&g.as_str())
        || tax.purpose_ix(&g).is_some();
    if known { g } else { "other".into() }
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

fn view(r: &DisclosureRow, now: i64) -> RequestView {
    let end = r.end_reason.as_deref().and_then(EndReason::from_id);
    RequestView {
        id: r.id.clone(),
        seq: r.seq,
        requester: r.requester.clone(),
        kind: r.kind.clone(),
        ground: r.ground.clone(),
        status: effective_status(r, now),
        reasons: r.reasons.clone(),
        alerts: r.alerts.clone(),
        subjects: r.subjects.len(),
        portions: r.portions.clone(),
        submitted_at: format_ms(r.submitted_at),
        valid_until: r.valid_until.map(format_ms),
        decided_by: r.decided_by.clone(),
        decided_at: r.decided_at.map(format_ms),
        fetches: r.fetches,
        end_reason: r.end_reason.clone(),
        end_explanation: end.map(|e| e.explain().to_string()),
        notice_after: r.notice_after.map(format_ms),
        extension_no: r.extension_no,
        extends: r.extends.clone(),
        office_notes: vec![],
        officer: None,
    }
}
