//! Submission: an agency presents an instrument; the pack's pure check
//! refuses, holds or queues it, and the ledger records it with one leaf.

use serde_json::Value;

use postvault_policy::contract::PROTECTIVE_ORDER_FIELD;
use postvault_policy::disclosure::{
    self, CheckContext, DAY_MS, InstrumentKind, Outcome, check_instrument, parse_instrument,
};
use postvault_policy::review::{PROTECTIVE_ORDER, protective_order_refusal};
use postvault_store::{DisclosureRow, RecordRow, SubjectData, SubjectRef, SubmitQuery};

use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
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
                self.cover_chain_of(Some(&principal.name), subjects.first(), i, None)?
            }
            _ => (None, None),
        };
        // The run with every requester's covers of the person: past the cap,
        // the office holds the request without the requester learning of
        // another agency's cover.
        let over_cap_with_others = match &parsed {
            Some(i) if i.kind == InstrumentKind::MailCover => {
                let (all, _) = self.cover_chain_of(None, subjects.first(), i, None)?;
                all.is_some_and(|c| disclosure::cover_run_over_cap(rules, i, c))
            }
            _ => false,
        };
        // Decide what can be decided without the person first: a submission
        // the pack refuses on its face touches no per-person record at all.
        // One in order reads the protective-order records of every named id
        // (in the postal pack, a seek on their own index, the same for a
        // person who holds thousands of records and for an id nobody holds).
        // A pack with no protective-order category has nothing to read (the
        // loader requires one beside disclosure rules, except in a pack from
        // before `[engine]`, which ran without the check then too).
        let protective = self.pack.taxonomy().engine().protective_order_category();
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
            subjects: if in_order && protective.is_some() {
                subjects.clone()
            } else {
                Vec::new()
            },
            protective_category: protective.unwrap_or_default().to_string(),
        };
        let tax = self.pack.taxonomy();
        let mut decided = None;
        let mut open_error = None;
        let (row, log_index) = self.store.submit_disclosure(&q, &mut |facts, data, idx| {
            // A backend may run the step again: only the run that commits
            // counts.
            open_error = None;
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
                            // The requester's own: another agency's use of
                            // the case id is the office's to know.
                            case_people_30d: facts.case_people_30d_own,
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
            if status != status::REFUSED && facts.used_by_other {
                office_notes.push(codes::USED_BY_ANOTHER_REQUESTER.to_string());
            }
            if status != status::REFUSED && over_cap_with_others {
                office_notes.push(codes::COVER_RUN_WITH_OTHERS_OVER_CAP.to_string());
            }
            if let Some(inst) = &parsed {
                let people = disclosure::people_counted(inst.subjects.len());
                let limit = rules.quotas().case_per_30d;
                if status != status::REFUSED
                    && facts.case_people_30d_own.saturating_add(people) <= limit
                    && facts.case_people_30d.saturating_add(people) > limit
                {
                    office_notes.push(codes::CASE_QUOTA_WITH_OTHERS.to_string());
                }
            }
            if status != status::REFUSED
                && let Some(inst) = &parsed
            {
                match self.protective_order_on_file(&q, data, now) {
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
                ground: rules.ledger_ground(
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
            .into()
        })?)
    }

    /// Whether a named subject has a protective order on file (R9), from
    /// the records of the pack's protective-order category (`[engine]
    /// protective_order_category`) the store read for the submission `q`:
    /// one whose `on_file` is true and that has not expired. Every named id
    /// costs the same: one key-store read, whether the vault holds the
    /// person or not, and records are opened only where there are some.
    pub(super) fn protective_order_on_file(
        &self,
        q: &SubmitQuery,
        data: &[SubjectData],
        now: i64,
    ) -> Result<bool, VaultError> {
        let mut found = false;
        for (s, d) in q.subjects.iter().zip(data) {
            let orders: Vec<&RecordRow> = d
                .records
                .iter()
                .filter(|r| r.category == q.protective_category && r.expires_at > now)
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
                let on_file = v
                    .get("fields")
                    .and_then(|f| f.get(PROTECTIVE_ORDER_FIELD))
                    .and_then(Value::as_bool);
                if on_file == Some(true) {
                    found = true;
                }
            }
        }
        Ok(found)
    }
}
