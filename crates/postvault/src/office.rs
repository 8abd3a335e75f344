//! What a privacy officer sees of a request before approving it: the sealed
//! instrument opened (every field: authority, signer and title, court,
//! docket, agency, subject ids, instrument id, grounds, portions, dates,
//! extension claims...), beside every check the pack made on it and the
//! result, the list of what the pack cannot check, and, for a mail cover,
//! the run of earlier orders the ledger links it to. Approving is a
//! person's judgement on a document: the officer sees the document.
//!
//! Architecture invariants kept here: each opening is one leaf
//! (`instrument_open`), written before the instrument is opened; only the
//! pack's approver roles get this view; the requester's view never changes.

use serde::Serialize;
use serde_json::Value;

use postvault_policy::disclosure::{CheckContext, InstrumentKind};
use postvault_policy::review::{self, CheckResult, PROTECTIVE_ORDER};
use postvault_store::DisclosureRow;

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

/// The officer's view of one request (`RequestView::officer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OfficerView {
    /// The instrument as submitted, every field; the submission's JSON as
    /// sent when it was not an instrument; absent when it was too large to
    /// keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub instrument: Option<Value>,
    /// Every check the pack made at submission, and its result.
    pub checks: Vec<CheckResult>,
    /// What the pack cannot check: the officer confirms each.
    pub cannot_check: Vec<&'static str>,
    /// Mail covers: the run of earlier orders this one continues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover_run: Option<CoverRun>,
    /// The leaf that accounts for this opening.
    pub log_index: u64,
}

/// A mail cover's place in the requester's run of covers of the person, as
/// the ledger shows it (not as the instrument declares it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverRun {
    /// The request this order extends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Earlier orders in the run: the extension number the ledger gives.
    pub extension_no: u32,
    /// What the instrument declares.
    pub declared_extension_no: u32,
    /// When the run's first order started.
    pub run_started: String,
    /// Continuous days through the end of this order.
    pub continuous_days: u32,
    /// The cap without the Chief Postal Inspector's approval.
    pub cap_days: u32,
}

impl Vault {
    /// Opens `r`'s instrument for `officer` (one leaf, written first) and
    /// lays it beside the pack's checks as they ran at submission.
    pub(crate) fn officer_view(
        &self,
        officer: &Principal,
        r: &DisclosureRow,
        now: i64,
    ) -> Result<OfficerView, VaultError> {
        let rules = self.pack.disclosure();
        let purpose = InstrumentKind::from_id(&r.kind)
            .and_then(|k| rules.kind(k))
            .map(|kr| kr.purpose.clone());
        let log_index = self.store.append_leaves(1, &mut |_, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: "instrument_open".into(),
                principal: self.actor(officer),
                purpose: purpose.clone(),
                decision: "allow".into(),
                pack: self.pack.version().to_string(),
                reasons: vec![],
                categories: {
                    let mut p = r.portions.clone();
                    p.sort();
                    p.dedup();
                    p
                },
                count: r.subjects.len() as u64,
                rejected: None,
                selector: None,
                instrument: Some(r.id.clone()),
                subject_tag: None,
            }
            .to_leaf()
            .into()
        })?;
        let text = self.open_submission(r)?;
        let inst = self.open_instrument(r)?;
        let Some(inst) = inst else {
            return Ok(OfficerView {
                instrument: text.and_then(|t| serde_json::from_str(&t).ok()),
                checks: vec![],
                cannot_check: vec![],
                cover_run: None,
                log_index,
            });
        };
        // The context as it was at submission: what the ledger recorded.
        let flagged = |name: &str| r.alerts.iter().any(|a| a == name);
        let over = |name: &str| if flagged(name) { u32::MAX / 2 } else { 0 };
        let (chain, extends) = if inst.kind == InstrumentKind::MailCover {
            self.cover_chain_of(Some(&r.requester), r.subjects.first(), &inst, Some(r.seq))?
        } else {
            (None, None)
        };
        let ctx = CheckContext {
            now_ms: r.submitted_at,
            used_before: r.reasons.iter().any(|c| c == "already_used"),
            subject_has_protective_order: r.office_notes.iter().any(|n| n == PROTECTIVE_ORDER),
            agency_people_24h: over("quota_agency_24h"),
            agency_people_30d: over("quota_agency_30d"),
            case_people_30d: over("quota_case_30d"),
            cover_chain: chain,
        };
        let cover_run = match (chain, inst.start, inst.days, rules.mail_cover()) {
            (Some(ch), Some(start), Some(days), Some(mc)) => {
                let end = mc.order_end_ms(start.0, days, &inst.ground);
                let span = end.saturating_sub(ch.first_start_ms).max(0);
                Some(CoverRun {
                    extends: r.extends.clone().or(extends),
                    extension_no: ch.prior_orders,
                    declared_extension_no: inst.extension_no,
                    run_started: format_ms(ch.first_start_ms),
                    continuous_days: u32::try_from((span + 86_399_999) / 86_400_000)
                        .unwrap_or(u32::MAX),
                    cap_days: mc.cumulative_cap_days,
                })
            }
            _ => None,
        };
        Ok(OfficerView {
            instrument: serde_json::to_value(&inst).ok(),
            checks: review::check_report(rules, &inst, &ctx),
            cannot_check: review::unverifiable(inst.kind),
            cover_run,
            log_index,
        })
    }
}
