//! What officers and requesters see of the ledger: request views, the
//! accounting of disclosures, notices to the people named, the transparency
//! report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postvault_policy::disclosure::{Instrument, InstrumentKind};
use postvault_store::{DisclosureRow, DisclosureStep};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

/// An `accounting_read` leaf's reason: the report it was read for did not
/// answer (its read's leaf says why), so nothing of it was shown.
pub(crate) const NOT_ANSWERED: &str = "not_answered";

/// An accounting of disclosures, read, whose leaf is not yet appended
/// ([`Vault::accounting_read`]).
pub(crate) struct AccountingRead {
    subject: String,
    entries: Vec<AccountingEntry>,
    /// The leaf's event, but for the person's tag (which depends on the
    /// leaf's index).
    event: Event,
    keys: Option<std::sync::Arc<crate::vault::SubjectKeyPair>>,
}

impl AccountingRead {
    /// The leaf at `idx` that accounts for this read, tagged for the
    /// person; `err` says whether it could not be filed under their tag
    /// (the read then fails). Called again if the store retries. Not
    /// `answered` (the report it was read for failed, or reads again after
    /// the read beside it): count 0 and reason `not_answered`.
    pub(crate) fn leaf(
        &self,
        vault: &Vault,
        idx: u64,
        answered: bool,
        err: &mut Option<postvault_crypto::CryptoError>,
    ) -> postvault_store::Leaf {
        *err = None;
        let event = if answered {
            self.event.clone()
        } else {
            Event {
                count: 0,
                reasons: vec![NOT_ANSWERED.into()],
                ..self.event.clone()
            }
        };
        vault.tagged_leaf(event, self.keys.as_ref().map(|k| &k.tag), idx, err)
    }

    /// The answer, once the leaf is durable at `log_index`.
    pub(crate) fn into_accounting(self, log_index: u64) -> Accounting {
        Accounting {
            subject: self.subject,
            entries: self.entries,
            log_index,
        }
    }
}

impl Vault {
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

    /// The requests waiting for the privacy office (pending approval or held
    /// for review, not past their validity), oldest first, as `principal`
    /// (an approver or the auditor; nobody else waits on the office).
    pub fn disclosure_queue(&self, principal: &Principal) -> Result<Vec<RequestView>, VaultError> {
        if !self.may_see_all_requests(principal) {
            return Ok(vec![]);
        }
        let now = self.clock.now_ms();
        let office = self.is_privacy_office(principal);
        let mut rows: Vec<_> = self
            .store
            .disclosures()?
            .into_iter()
            .filter(|r| {
                let st = effective_status(r, now);
                st == status::PENDING || st == status::HELD
            })
            .collect();
        rows.sort_by_key(|r| r.seq);
        Ok(rows
            .iter()
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

    /// The approver roles, and the pack's auditor role (`[engine]
    /// auditor_role`) if it has one.
    pub(super) fn may_see_all_requests(&self, p: &Principal) -> bool {
        let rules = self.pack.disclosure();
        rules.approver_roles().contains(&p.role)
            || self.pack.taxonomy().engine().auditor_role() == Some(p.role.as_str())
    }

    /// Who may read the service's own metrics (request counts by route and
    /// status, decisions, ingest): the privacy office and the auditor.
    /// Counts of answers can say that some person's request met secret
    /// process (an erasure answered 202 under a delay order), so no agency,
    /// collector or service reads them.
    pub fn may_read_metrics(&self, p: &Principal) -> bool {
        self.may_see_all_requests(p)
    }

    /// The privacy office: the pack's approver roles (not the auditor, who
    /// sees no personal data).
    pub fn is_privacy_office(&self, p: &Principal) -> bool {
        self.pack.disclosure().approver_roles().contains(&p.role)
    }

    /// The accounting of disclosures about `subject` (R13), as `principal`:
    /// a role acting for the pack's subject-access purpose (the person's own
    /// request; `subject_access` in the postal pack). What a
    /// delay order covers is left out until it expires; `officer_view`
    /// (approver roles only) shows it too, marked. One leaf accounts for the
    /// read, tagged for the person.
    pub fn accounting(
        &self,
        principal: &Principal,
        subject: &str,
        officer_view: bool,
    ) -> Result<Accounting, VaultError> {
        let read = self.accounting_read(principal, subject, officer_view)?;
        let mut index_error = None;
        let log_index = self.store.append_leaves(1, &mut |idx, _| {
            read.leaf(self, idx, true, &mut index_error)
        })?;
        if let Some(e) = index_error {
            return Err(e.into());
        }
        Ok(read.into_accounting(log_index))
    }

    /// What [`Vault::accounting`] answers, read, and the leaf that accounts
    /// for it made ready ([`AccountingRead::leaf`]), not yet appended: an
    /// access report appends it with its read's. Refused as there (one deny
    /// leaf).
    pub(crate) fn accounting_read(
        &self,
        principal: &Principal,
        subject: &str,
        officer_view: bool,
    ) -> Result<AccountingRead, VaultError> {
        crate::vault::check_subject(subject)?;
        let engine = self.pack.taxonomy().engine();
        let rules = self.pack.disclosure();
        let for_subject = self.acts_for_subject(principal);
        let officer = rules.approver_roles().contains(&principal.role);
        if !for_subject || (officer_view && !officer) {
            self.deny_leaf(
                principal,
                "accounting_read",
                engine.subject_access_purpose(),
            )?;
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
        let event = Event {
            v: LEAF_VERSION,
            time: now,
            action: "accounting_read".into(),
            principal: self.actor(principal),
            purpose: engine.subject_access_purpose().map(str::to_string),
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: engine
                .disclosure_accounting_category()
                .map(str::to_string)
                .into_iter()
                .collect(),
            // What the person may see: the leaf carries their tag, so an
            // officer's view must not show a delayed entry through it.
            count: entries
                .iter()
                .filter(|e| e.withheld_until.is_none())
                .count() as u64,
            rejected: None,
            selector: None,
            instrument: None,
            subject_tag: None,
        };
        Ok(AccountingRead {
            subject: subject.to_string(),
            entries,
            event,
            keys,
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
            let mut index_error = None;
            let mut first_leaf = 0;
            let mut sent = false;
            self.store
                .disclosure_step(&due.id, &mut |_| vec![], &mut |row, _, first| {
                    // A backend may run the step again: only the run that
                    // commits counts.
                    first_leaf = first;
                    index_error = None;
                    sent = false;
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
                                let event = Event {
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
                                    subject_tag: None,
                                };
                                self.tagged_leaf(
                                    event,
                                    keys.get(i).and_then(|k| k.as_ref()).map(|k| &k.tag),
                                    idx,
                                    &mut index_error,
                                )
                            })
                            .collect(),
                        ..DisclosureStep::default()
                    }
                })?;
            if let Some(e) = index_error {
                return Err(e.into());
            }
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
            by_month: BTreeMap::new(),
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
                (&mut r.by_month, format_ms(d.submitted_at)[..7].to_string()),
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
            let by_officer = |c: &String| {
                c == codes::REFUSED_BY_OFFICER || codes::OFFICER_REASONS.iter().any(|(o, _)| o == c)
            };
            if quota && d.reasons.iter().all(by_officer) {
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
}

pub(super) fn view(r: &DisclosureRow, now: i64) -> RequestView {
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
