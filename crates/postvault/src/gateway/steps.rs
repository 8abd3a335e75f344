//! The officers' steps on a request: approval, refusal (two-person rule)
//! and the early end of a mail cover, each one store transaction with its leaf.

use postvault_policy::disclosure::{self, InstrumentKind, check_approval};
use postvault_store::{DisclosureRow, DisclosureStep, SubjectRef};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
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
        let answer = self.officer_decision(officer, id, Decision::Approve, &mut |r, reasons| {
            let mut portions = r.portions.clone();
            if let Some(only) = &opts.portions {
                for _ in only.iter().filter(|p| !r.portions.contains(*p)) {
                    reasons.push(GatewayReason::new(
                        codes::PORTION_NOT_REQUESTED,
                        "approval may narrow the requested portions, never add one",
                    ));
                }
                portions.retain(|p| only.contains(p));
            }
            if portions.is_empty() {
                reasons.push(GatewayReason::new(
                    disclosure::RefusalCode::NoPortion.as_str(),
                    "an approval names at least one portion",
                ));
            }
            // R9 (a protective order on file and no court order), a document
            // another requester presented, a cover run past the cap with
            // other requesters' covers. Only an officer who could otherwise
            // approve is told why; the leaf says `not_permitted` and does
            // not name the request.
            if reasons.is_empty() {
                for (code, why) in BLOCKING_NOTES {
                    if r.office_notes.iter().any(|n| n == code) {
                        reasons.push(GatewayReason::new(code, why));
                    }
                }
            }
            if !reasons.is_empty() {
                return None;
            }
            let mut n = r.clone();
            n.status = status::APPROVED.into();
            n.portions = portions;
            Some(n)
        })?;
        // No key is made after the commit: the order's key was made before
        // it (above), and one made now could stand for an order destroyed
        // meanwhile, as a key its records were never sealed under.
        Ok(answer)
    }

    /// Refuses request `id` as `officer` (an approver, not its requester).
    pub fn disclose_refuse(&self, officer: &Principal, id: &str) -> Result<StepAnswer, VaultError> {
        self.disclose_refuse_with(officer, id, None)
    }

    /// [`Vault::disclose_refuse`] with the officer's reason, a code of
    /// [`codes::OFFICER_REASONS`] recorded beside `refused_by_officer`
    /// (another code is `invalid`, before anything is looked up).
    pub fn disclose_refuse_with(
        &self,
        officer: &Principal,
        id: &str,
        reason: Option<&str>,
    ) -> Result<StepAnswer, VaultError> {
        if let Some(code) = reason
            && !codes::OFFICER_REASONS.iter().any(|(c, _)| *c == code)
        {
            return Err(VaultError::Invalid {
                what: "reason",
                why: format!(
                    "one of {}",
                    codes::OFFICER_REASONS
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        self.officer_decision(officer, id, Decision::Refuse, &mut |r, reasons| {
            if !reasons.is_empty() {
                return None;
            }
            let mut n = r.clone();
            n.status = status::REFUSED.into();
            n.reasons.push(codes::REFUSED_BY_OFFICER.into());
            if let Some(code) = reason {
                n.reasons.push(code.into());
            }
            Some(n)
        })
    }

    /// An officer's decision on a pending or held request, in one store
    /// transaction with its leaf. The checks common to both decisions run
    /// first (the officer's view of the request, the two-person rule, the
    /// status); `decide` adds its own reasons and returns the new row when
    /// there are none, which is stamped with the officer and the time.
    fn officer_decision(
        &self,
        officer: &Principal,
        id: &str,
        decision: Decision,
        decide: &mut dyn FnMut(&DisclosureRow, &mut Vec<GatewayReason>) -> Option<DisclosureRow>,
    ) -> Result<StepAnswer, VaultError> {
        let rules = self.pack.disclosure();
        let now = self.clock.now_ms();
        let mut answer = None;
        let (_, log_index) =
            self.store
                .disclosure_step(id, &mut |_| vec![], &mut |row, _, _| {
                    let (row, mut reasons) =
                        self.officer_step_view(officer, row, decision.acting());
                    let new = row.and_then(|r| {
                        if let Err(refusal) =
                            check_approval(rules, &r.requester, &officer.name, &officer.role)
                        {
                            reasons.push(refusal.into());
                        }
                        let st = effective_status(r, now);
                        if st != status::PENDING && st != status::HELD {
                            reasons.push(wrong_status(&st, decision.done()));
                        }
                        let mut n = decide(r, &mut reasons)?;
                        n.decided_by = Some(officer.name.clone());
                        n.decided_at = Some(now);
                        Some(n)
                    });
                    self.step_leaf(
                        officer,
                        row,
                        decision.event(),
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
                // A backend may run the step again: nothing of an earlier
                // run counts.
                destroy = None;
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
                    step.leaves.push(
                        self.destruction_leaf(
                            &self.actor(officer),
                            "cover_intent",
                            now,
                            records,
                            self.cover_categories(),
                            format!("keys:{}", cover_secret(seq)),
                            vec![],
                        )
                        .into(),
                    );
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
            if let Ok(seq) = u32::try_from(seq) {
                self.saw_cover_destroyed(seq);
            }
            self.keys.delete_secret(&cover_secret(seq))?;
        }
        if let Some(at) = intent_leaf {
            self.complete(log_index + at as u64, &self.actor(officer), false)?;
        }
        Ok(answer)
    }

    /// The request as `p` may act on it in an officer's step (approve,
    /// refuse, end), or the reason it may not, decided from `p`'s role
    /// before anything about the request: an approver sees every request;
    /// the requester role its own only (another agency's request is no
    /// request at all); any other role may take no such step, and is told so
    /// in the same words, with the same leaf, for a real id and a made-up
    /// one.
    pub(super) fn officer_step_view<'a>(
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
    pub(super) fn step_leaf(
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
        let office_only = reasons
            .iter()
            .any(|r| OFFICE_ONLY_CODES.contains(&r.code.as_str()));
        let purpose = row
            .filter(|_| !office_only)
            .and_then(|r| InstrumentKind::from_id(&r.kind))
            .and_then(|k| rules.kind(k))
            .map(|kr| kr.purpose.clone());
        // A step refused for a reason only the office may know names no
        // request in its leaf (nor its purpose, portions or people): the
        // requester watching the log would learn that its request met one.
        let shown = new.as_ref().or(row);
        let public = if office_only { None } else { shown };
        let event = Event {
            v: LEAF_VERSION,
            time: now,
            action: action.into(),
            principal: self.actor(principal),
            purpose,
            decision: if reasons.is_empty() { "allow" } else { "deny" }.into(),
            pack: self.pack.version().to_string(),
            reasons: reason_codes(&reasons),
            categories: public.map(|r| sorted(&r.portions)).unwrap_or_default(),
            count: public.map_or(0, |r| r.subjects.len() as u64),
            rejected: None,
            selector: None,
            instrument: row.filter(|_| !office_only).map(|r| r.id.clone()),
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
            leaves: vec![event.to_leaf().into()],
            ..DisclosureStep::default()
        }
    }

    pub(crate) fn actor(&self, p: &Principal) -> Actor {
        Actor {
            role: p.role.clone(),
            id: self.actor_id(&p.name),
        }
    }
}

/// The two decisions an officer takes on a pending or held request.
#[derive(Clone, Copy)]
enum Decision {
    Approve,
    Refuse,
}

impl Decision {
    /// The verb in "`acting` a request needs the role ...".
    fn acting(self) -> &'static str {
        match self {
            Decision::Approve => "approving",
            Decision::Refuse => "refusing",
        }
    }

    /// The verb in "a request ... cannot be `done`".
    fn done(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Refuse => "refused",
        }
    }

    /// The leaf's event.
    fn event(self) -> &'static str {
        match self {
            Decision::Approve => "disclosure_approve",
            Decision::Refuse => "disclosure_refuse",
        }
    }
}
