//! The pure check of an instrument against the rules, and of an approval.

use std::collections::BTreeSet;

use super::*;

/// How many people a request counts for against the quotas: those it names,
/// and one for a request that names nobody (so badly formed requests still
/// count).
pub fn people_counted(named: usize) -> u32 {
    u32::try_from(named.max(1)).unwrap_or(u32::MAX)
}

/// Checks `inst` against the rules at `ctx.now_ms`. Pure and deterministic:
/// every refusal found, sorted by code; alerts sorted. Refused if there is
/// any refusal; otherwise held for review if a quota is crossed; otherwise
/// pending approval. Quota alerts are raised whatever the outcome.
pub fn check_instrument(rules: &DisclosureRules, inst: &Instrument, ctx: &CheckContext) -> Verdict {
    let mut c = Checker {
        rules,
        inst,
        ctx,
        refusals: Vec::new(),
        alerts: Vec::new(),
        quota_crossed: false,
    };
    c.run();
    c.finish()
}

/// Checks that `approver`, acting in `approver_role`, may approve a request
/// filed by `requester`: never the requester itself (names compared without
/// surrounding spaces or ASCII case), and only in an approver role of the
/// pack (never the requester role).
/// The days from the start of `chain`'s first order to the end of the cover
/// `inst` asks for, or `None` when it gives no start or length.
pub fn cover_run_days(mc: &MailCoverLimits, inst: &Instrument, chain: CoverChain) -> Option<u32> {
    let (start, days) = (inst.start?, inst.days?);
    let end = mc.order_end_ms(start.0, days, &inst.ground);
    let span = end.saturating_sub(chain.first_start_ms).max(0);
    Some(u32::try_from((span + DAY_MS - 1) / DAY_MS).unwrap_or(u32::MAX))
}

/// Whether the cover `inst` asks for would run past the pack's cumulative
/// cap on `chain` without the chief postal inspector's approval. The
/// gateway asks this of the run made by every requester's covers of the
/// person, which the requester may not learn of: the answer goes to the
/// office only.
pub fn cover_run_over_cap(rules: &DisclosureRules, inst: &Instrument, chain: CoverChain) -> bool {
    let Some(mc) = rules.mail_cover() else {
        return false;
    };
    let cpi = inst
        .cpi_approval_ref
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    !cpi && cover_run_days(mc, inst, chain).is_some_and(|d| d > mc.cumulative_cap_days)
}

pub fn check_approval(
    rules: &DisclosureRules,
    requester: &str,
    approver: &str,
    approver_role: &str,
) -> Result<(), Refusal> {
    let (requester, approver) = (requester.trim(), approver.trim());
    if requester.is_empty() || approver.is_empty() {
        return Err(Refusal::new(
            RefusalCode::Malformed,
            "the requester and the approver must both be named",
        ));
    }
    if requester.eq_ignore_ascii_case(approver) {
        return Err(Refusal::new(
            RefusalCode::SelfApproval,
            "a request is approved by someone other than its requester",
        ));
    }
    if approver_role == rules.requester_role
        || !rules.approver_roles.iter().any(|r| r == approver_role)
    {
        return Err(Refusal::new(
            RefusalCode::ApproverRole,
            format!(
                "approval needs the role {}",
                if rules.approver_roles.is_empty() {
                    "of an approver, and this pack has none".to_string()
                } else {
                    rules.approver_roles.join(" or ")
                }
            ),
        ));
    }
    Ok(())
}

pub(super) struct Checker<'a> {
    pub(super) rules: &'a DisclosureRules,
    pub(super) inst: &'a Instrument,
    pub(super) ctx: &'a CheckContext,
    pub(super) refusals: Vec<Refusal>,
    pub(super) alerts: Vec<String>,
    pub(super) quota_crossed: bool,
}

impl Checker<'_> {
    pub(super) fn refuse(&mut self, code: RefusalCode, message: impl Into<String>) {
        self.refusals.push(Refusal::new(code, message));
    }

    pub(super) fn alert(&mut self, name: &str, message: String) {
        self.alerts.push(format!("{name}: {message}"));
    }

    /// A pack id is named; any other value by its position.
    pub(super) fn show_portion(&self, i: usize, p: &str) -> String {
        if self.rules.categories.contains(p) {
            format!("`{p}`")
        } else {
            format!("portions[{i}]")
        }
    }

    pub(super) fn run(&mut self) {
        let (inst, ctx) = (self.inst, self.ctx);
        self.particulars();
        self.subjects();
        let prohibited = self.prohibited_ground();
        if inst.authority.trim().is_empty() {
            self.refuse(
                RefusalCode::MissingAuthority,
                "no authority given: name the law under which the instrument is issued",
            );
        }
        if ctx.used_before {
            self.refuse(
                RefusalCode::AlreadyUsed,
                "this instrument has been used before: each is good for one disclosure",
            );
        }
        self.quotas();
        let Some(kr) = self.rules.kind(inst.kind) else {
            self.refuse(
                RefusalCode::KindNotAllowed,
                format!("this pack accepts no {}", inst.kind),
            );
            return;
        };
        self.kind_rules(kr, prohibited);
    }

    pub(super) fn particulars(&mut self) {
        let inst = self.inst;
        for (field, value) in [
            ("instrument_id", &inst.instrument_id),
            ("agency", &inst.agency),
            ("case_id", &inst.case_id),
        ] {
            if value.trim().is_empty() {
                self.refuse(RefusalCode::Incomplete, format!("`{field}` is missing"));
            } else if !value.chars().any(char::is_alphanumeric) {
                // A reference of punctuation alone names no document or case:
                // reuse and quotas compare references by their letters and
                // digits.
                self.refuse(
                    RefusalCode::Incomplete,
                    format!("`{field}` has no letter or digit"),
                );
            }
        }
        match &inst.signer {
            None => self.refuse(RefusalCode::Incomplete, "`signer` is missing"),
            Some(s) => {
                if s.name.trim().is_empty() {
                    self.refuse(RefusalCode::Incomplete, "`signer.name` is missing");
                }
                if s.title.trim().is_empty() {
                    self.refuse(RefusalCode::Incomplete, "`signer.title` is missing");
                }
            }
        }
        if inst.issued_at.is_none() {
            self.refuse(RefusalCode::Incomplete, "`issued_at` is missing");
        }
    }

    pub(super) fn subjects(&mut self) {
        let subjects = &self.inst.subjects;
        if subjects.is_empty() {
            self.refuse(
                RefusalCode::NoSubject,
                "no subject named: an instrument names each person by identifier",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, s) in subjects.iter().enumerate() {
            if let Some(why) = subject_id_problem(&s.id) {
                self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}].id {why}"),
                );
            } else if !seen.insert(s.id.as_str()) {
                self.refuse(
                    RefusalCode::Malformed,
                    format!("subjects[{i}] repeats an earlier subject"),
                );
            }
        }
    }

    /// Refuses a ground that is a prohibited purpose (spelled with spaces,
    /// hyphens or capitals too). True when it did.
    pub(super) fn prohibited_ground(&mut self) -> bool {
        let g = fold_id(&self.inst.ground);
        let hit = self.rules.prohibited_purposes.iter().find(|p| **p == g);
        if let Some(p) = hit {
            let msg = format!("`{p}` is never a purpose of a disclosure");
            self.refuse(RefusalCode::ProhibitedPurpose, msg);
            return true;
        }
        false
    }

    pub(super) fn quotas(&mut self) {
        let (q, ctx) = (self.rules.quotas, self.ctx);
        let people = people_counted(self.inst.subjects.len());
        for (name, count, limit, who, window) in [
            (
                "quota_agency_24h",
                ctx.agency_people_24h,
                q.agency_per_24h,
                "agency",
                "24 hours",
            ),
            (
                "quota_agency_30d",
                ctx.agency_people_30d,
                q.agency_per_30d,
                "agency",
                "30 days",
            ),
            (
                "quota_case_30d",
                ctx.case_people_30d,
                q.case_per_30d,
                "case",
                "30 days",
            ),
        ] {
            // The counts are of earlier requests: this one adds its people.
            if count.saturating_add(people) > limit {
                self.quota_crossed = true;
                self.alert(
                    name,
                    format!("the {who} has reached its limit of {limit} people named in {window}"),
                );
            }
        }
    }

    pub(super) fn kind_rules(&mut self, kr: &KindRules, prohibited: bool) {
        let inst = self.inst;
        let kind = inst.kind;
        let ground = inst.ground.as_str();

        if inst.subjects.len() > kr.max_subjects as usize {
            self.refuse(
                RefusalCode::TooManySubjects,
                format!(
                    "a {kind} names at most {} subject{}",
                    kr.max_subjects,
                    if kr.max_subjects == 1 { "" } else { "s" }
                ),
            );
        }

        let ground_ok = kr.grounds.iter().any(|g| g == ground);
        if !prohibited && !ground_ok {
            let msg = if ground.trim().is_empty() {
                format!(
                    "no ground given: a {kind} cites one of {}",
                    kr.grounds.join(", ")
                )
            } else {
                format!(
                    "this ground is not one a {kind} may cite: {}",
                    kr.grounds.join(", ")
                )
            };
            self.refuse(RefusalCode::GroundNotAllowed, msg);
        }

        if let Some(s) = &inst.signer {
            let need = kr.signer_level_for(ground);
            match s.level {
                None => self.refuse(RefusalCode::SignerLevelTooLow, "`signer.level` is missing"),
                Some(level) if level < need => self.refuse(
                    RefusalCode::SignerLevelTooLow,
                    format!("a {kind} on this ground is signed at level {need} or above"),
                ),
                Some(_) => {}
            }
            if let (Some(below), Some(level)) = (kr.delegation_below, s.level)
                && level < below
                && s.delegation_ref
                    .as_deref()
                    .is_none_or(|d| d.trim().is_empty())
            {
                self.refuse(
                    RefusalCode::MissingDelegation,
                    format!(
                        "a signer below {below} cites the written delegation in `signer.delegation_ref`"
                    ),
                );
            }
        }

        if kr.court_required {
            self.court();
        }

        if let Some(until) = inst.delay_notice_until {
            if !kr.court_order {
                self.refuse(
                    RefusalCode::DelayNeedsCourtOrder,
                    format!("only a court delays notice to the person: a {kind} may not carry `delay_notice_until`"),
                );
            } else if inst.issued_at.is_some_and(|i| until.0 < i.0) {
                self.refuse(
                    RefusalCode::TimeRangeInvalid,
                    "`delay_notice_until` is before `issued_at`",
                );
            } else if inst
                .issued_at
                .is_some_and(|i| until.0 > i.0.saturating_add(MAX_NOTICE_DELAY_DAYS * DAY_MS))
            {
                self.refuse(
                    RefusalCode::DurationTooLong,
                    format!("notice is delayed at most {MAX_NOTICE_DELAY_DAYS} days after `issued_at`; a court renews a longer delay with a new order"),
                );
            }
        }

        self.portions(kr, ground_ok);

        if kind == InstrumentKind::MailCover {
            self.mail_cover(ground_ok);
        } else {
            self.validity(kr);
        }
    }

    pub(super) fn court(&mut self) {
        let kind = self.inst.kind;
        let Some(court) = &self.inst.court else {
            self.refuse(
                RefusalCode::MissingCourt,
                format!("a {kind} carries a court block: name, docket, judge, order_date"),
            );
            return;
        };
        for (field, value) in [
            ("name", &court.name),
            ("docket", &court.docket),
            ("judge", &court.judge),
        ] {
            if value.trim().is_empty() {
                self.refuse(
                    RefusalCode::MissingCourt,
                    format!("`court.{field}` is missing"),
                );
            }
        }
        match court.order_date {
            None => self.refuse(RefusalCode::MissingCourt, "`court.order_date` is missing"),
            Some(d) if d.0 > self.ctx.now_ms => {
                self.refuse(
                    RefusalCode::NotYetValid,
                    "`court.order_date` is in the future",
                );
            }
            Some(_) => {}
        }
    }

    pub(super) fn portions(&mut self, kr: &KindRules, ground_ok: bool) {
        let inst = self.inst;
        let kind = inst.kind;
        if inst.portions.is_empty() {
            self.refuse(
                RefusalCode::NoPortion,
                "no portion requested: name the categories desired",
            );
        }
        let exterior: &[String] = self
            .rules
            .mail_cover
            .as_ref()
            .map_or(&[], |m| m.exterior_portions.as_slice());
        let mut seen = BTreeSet::new();
        for (i, p) in inst.portions.iter().enumerate() {
            let name = self.show_portion(i, p);
            if !seen.insert(p.as_str()) {
                self.refuse(
                    RefusalCode::Malformed,
                    format!("portions[{i}] repeats an earlier portion"),
                );
            } else if kind == InstrumentKind::MailCover && !exterior.contains(p) {
                self.refuse(
                    RefusalCode::PortionNotExterior,
                    format!(
                        "{name} is not data on the outside of mail: a mail cover records only {}",
                        exterior.join(", ")
                    ),
                );
            } else if !kr.court_order && self.rules.court_order_portions.contains(p) {
                self.refuse(
                    RefusalCode::PortionNeedsCourtOrder,
                    format!("{name} is disclosed only under a court order, not a {kind}"),
                );
            } else if !kr.portions.contains(p) {
                self.refuse(
                    RefusalCode::PortionNotAllowed,
                    format!("{name} is not a portion a {kind} may ask for"),
                );
            } else if ground_ok && !kr.portions_for(&inst.ground).contains(p) {
                self.refuse(
                    RefusalCode::PortionNotAllowed,
                    format!(
                        "{name} is not a portion a {kind} may ask for on ground `{}`",
                        inst.ground
                    ),
                );
            }
        }
    }

    /// Issue, expiry and time range of a disclosure (not a mail cover).
    pub(super) fn validity(&mut self, kr: &KindRules) {
        let (inst, now) = (self.inst, self.ctx.now_ms);
        let kind = inst.kind;
        match inst.time_range {
            None => self.refuse(
                RefusalCode::TimeRangeInvalid,
                "no time_range given: name the period of records desired",
            ),
            Some(r) if r.from > r.to => self.refuse(
                RefusalCode::TimeRangeInvalid,
                "time_range.from is after time_range.to",
            ),
            Some(r) => {
                if let Some(max) = kr.max_range_days
                    && r.to.0.saturating_sub(r.from.0) > i64::from(max).saturating_mul(DAY_MS)
                {
                    self.refuse(
                        RefusalCode::TimeRangeInvalid,
                        format!("a {kind} asks for at most {max} days of records"),
                    );
                }
            }
        }
        let Some(issued) = inst.issued_at else { return };
        if issued.0 > now {
            self.refuse(RefusalCode::NotYetValid, "`issued_at` is in the future");
        }
        if let Some(e) = inst.expires_at {
            if e < issued {
                self.refuse(RefusalCode::Malformed, "`expires_at` is before `issued_at`");
            } else if let Some(d) = kr.max_validity_days
                && e.0 > issued.0.saturating_add(i64::from(d).saturating_mul(DAY_MS))
            {
                self.refuse(
                    RefusalCode::DurationTooLong,
                    format!("a {kind} is valid at most {d} days after issue"),
                );
            }
        }
        if let Some(end) = self.rules.valid_until_ms(inst)
            && now >= end
        {
            self.refuse(RefusalCode::Expired, format!("the {kind} has expired"));
        }
    }

    pub(super) fn mail_cover(&mut self, ground_ok: bool) {
        let (inst, now) = (self.inst, self.ctx.now_ms);
        let Some(mc) = self.rules.mail_cover.as_ref() else {
            self.refuse(
                RefusalCode::KindNotAllowed,
                "this pack sets no mail-cover limits",
            );
            return;
        };
        let ground = inst.ground.as_str();

        match inst.requester_type {
            None => self.refuse(RefusalCode::Incomplete, "`requester_type` is missing"),
            Some(rt) => {
                let allowed = mc.grounds_by_requester.get(&rt);
                if ground_ok && !allowed.is_some_and(|l| l.iter().any(|g| g == ground)) {
                    self.refuse(
                        RefusalCode::GroundNotAllowed,
                        format!("a {rt} may not ask for a mail cover on ground `{ground}`"),
                    );
                }
            }
        }
        if inst.reasonable_grounds.trim().is_empty() {
            self.refuse(
                RefusalCode::Incomplete,
                "`reasonable_grounds` is missing: state why the cover is necessary",
            );
        }
        if ground != "national_security" && inst.statute_cited.trim().is_empty() {
            self.refuse(
                RefusalCode::Incomplete,
                "`statute_cited` is missing: name the statute violated",
            );
        }
        if ground == mc.penalty_ground {
            let floor = f64::from(mc.penalty_must_exceed_years);
            match inst.penalty_max_years {
                None => self.refuse(
                    RefusalCode::PenaltyTooLow,
                    format!("a cover on ground `{ground}` gives `penalty_max_years`"),
                ),
                Some(p) if !(p.is_finite() && p > floor) => self.refuse(
                    RefusalCode::PenaltyTooLow,
                    format!(
                        "a crime is an act punishable by imprisonment over {} year{}",
                        mc.penalty_must_exceed_years,
                        if mc.penalty_must_exceed_years == 1 {
                            ""
                        } else {
                            "s"
                        }
                    ),
                ),
                Some(_) => {}
            }
        }

        let max = mc.max_days_for(ground);
        match inst.days {
            None | Some(0) => self.refuse(
                RefusalCode::Incomplete,
                "`days` is missing: give the length of the cover",
            ),
            Some(d) if d > max => self.refuse(
                RefusalCode::DurationTooLong,
                format!("a mail cover on this ground runs at most {max} days per order"),
            ),
            Some(_) => {}
        }
        if inst.start.is_none() {
            self.refuse(RefusalCode::Incomplete, "`start` is missing");
        }
        // From the ledger when the gateway gives the run this order
        // continues: the extension number and the continuous days are what
        // the ledger shows, whatever the instrument declares.
        let ledger = self
            .ctx
            .cover_chain
            .and_then(|chain| Some((chain.prior_orders, cover_run_days(mc, inst, chain)?)));
        if let Some((orders, _)) = ledger
            && orders != inst.extension_no
        {
            self.refuse(
                RefusalCode::ExtensionMismatch,
                format!(
                    "the ledger shows {orders} earlier continuous order{} of this requester on this subject: this order is {}, not what `extension_no` declares",
                    if orders == 1 { "" } else { "s" },
                    if orders == 0 {
                        "a new order".to_string()
                    } else {
                        format!("extension {orders}")
                    }
                ),
            );
        }
        let extension = inst.extension_no > 0 || ledger.is_some_and(|(o, _)| o > 0);
        if extension && inst.benefit_statement.trim().is_empty() {
            self.refuse(
                RefusalCode::ExtensionWithoutBenefitStatement,
                "an extension states the investigative benefit so far and expected",
            );
        }
        let cumulative = match (ledger, inst.cumulative_days, inst.extension_no) {
            (Some((_, c)), declared, _) => {
                if declared.is_some_and(|d| d < c) {
                    self.refuse(
                        RefusalCode::ExtensionMismatch,
                        format!(
                            "`cumulative_days` understates the continuous days the ledger shows ({c})"
                        ),
                    );
                }
                Some(c)
            }
            (None, Some(c), _) => Some(c),
            (None, None, 0) => inst.days,
            (None, None, _) => {
                self.refuse(
                    RefusalCode::Incomplete,
                    "`cumulative_days` is missing: an extension gives the days covered so far",
                );
                None
            }
        };
        if let (Some(c), Some(d)) = (inst.cumulative_days, inst.days)
            && c < d
        {
            self.refuse(
                RefusalCode::Malformed,
                "`cumulative_days` is less than `days`",
            );
        }
        if let Some(c) = cumulative
            && c > mc.cumulative_cap_days
        {
            let cpi = inst
                .cpi_approval_ref
                .as_deref()
                .is_some_and(|r| !r.trim().is_empty());
            if cpi {
                self.alert(
                    "cumulative_cap_lifted",
                    format!(
                        "over {} cumulative days under the chief postal inspector's personal approval",
                        mc.cumulative_cap_days
                    ),
                );
            } else {
                self.refuse(
                    RefusalCode::CumulativeCap,
                    format!(
                        "over {} cumulative days needs the chief postal inspector's personal approval (`cpi_approval_ref`)",
                        mc.cumulative_cap_days
                    ),
                );
            }
        }
        match inst.indicted_or_information_filed {
            None => self.refuse(
                RefusalCode::Incomplete,
                "`indicted_or_information_filed` must be stated",
            ),
            Some(true) if mc.ends_on_indictment(ground) => self.refuse(
                RefusalCode::EndedByIndictment,
                "a cover ends when the subject is indicted or an information is filed; a new need is a new order",
            ),
            Some(_) => {}
        }

        let Some(issued) = inst.issued_at else { return };
        if issued.0 > now {
            self.refuse(RefusalCode::NotYetValid, "`issued_at` is in the future");
        }
        if inst.oral {
            let deadline = mc.confirmation_deadline_ms(issued.0);
            let days = mc.oral_confirmation_days;
            match inst.written_confirmed_at {
                Some(w) if w < issued => self.refuse(
                    RefusalCode::Malformed,
                    "`written_confirmed_at` is before `issued_at`",
                ),
                Some(w) if w.0 > now => self.refuse(
                    RefusalCode::Malformed,
                    "`written_confirmed_at` is in the future",
                ),
                Some(w) if w.0 >= deadline => self.refuse(
                    RefusalCode::OralNotConfirmed,
                    format!("the written confirmation came after {days} calendar days"),
                ),
                Some(_) => {}
                None if now >= deadline => self.refuse(
                    RefusalCode::OralNotConfirmed,
                    format!("an oral request not confirmed in writing within {days} calendar days has lapsed"),
                ),
                None if !inst.emergency => self.refuse(
                    RefusalCode::OralNotConfirmed,
                    "an oral request is acted on before written confirmation only in an emergency",
                ),
                None => self.alert(
                    "oral_pending_confirmation",
                    format!(
                        "emergency release before written confirmation, due before {}",
                        format_iso(deadline)
                    ),
                ),
            }
        }
        if let Some(e) = inst.expires_at
            && e < issued
        {
            self.refuse(RefusalCode::Malformed, "`expires_at` is before `issued_at`");
        }
        if let Some(start) = inst.start {
            if start_of_day_ms(start.0) < start_of_day_ms(issued.0) {
                self.refuse(
                    RefusalCode::TimeRangeInvalid,
                    "`start` is before `issued_at`: a cover records mail from its start on",
                );
            }
            if let Some(end) = self.rules.valid_until_ms(inst)
                && now >= end
            {
                self.refuse(RefusalCode::Expired, "the cover period has ended");
            }
        }
    }

    pub(super) fn finish(mut self) -> Verdict {
        self.refusals.sort();
        self.refusals.dedup();
        self.alerts.sort();
        self.alerts.dedup();
        let outcome = if !self.refusals.is_empty() {
            Outcome::Refused
        } else if self.quota_crossed {
            Outcome::HeldForReview
        } else {
            Outcome::PendingApproval
        };
        Verdict {
            outcome,
            refusals: self.refusals,
            alerts: self.alerts,
        }
    }
}
