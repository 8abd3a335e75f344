//! What a privacy officer is shown beside an instrument before approving it:
//! every check the pack made and its result, and what the pack cannot check
//! and the officer must confirm. An approval is a person's judgement on a
//! document; the officer sees the document and the machine's findings side
//! by side, never a bare status.
//!
//! Pure like the rest of the crate: the checks are the ones
//! [`check_instrument`] runs, each under its refusal code, so a check listed
//! as passed is one that refused nothing.

use serde::Serialize;

use crate::disclosure::{
    CheckContext, DisclosureRules, Instrument, InstrumentKind, Refusal, RefusalCode,
    check_instrument,
};

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CheckStatus {
    /// The check found nothing wrong.
    Passed,
    /// The check refused the instrument (see the messages).
    Failed,
    /// The check raised an alert: the officer decides (a quota crossed, a
    /// protective order on file).
    Flagged,
}

/// One check of the pack on one instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// The refusal code or alert name the check raises.
    pub check: &'static str,
    /// The rule of the reference it enforces.
    pub rule: &'static str,
    /// What it checks, in words.
    pub what: &'static str,
    pub result: CheckStatus,
    /// Why it failed or flagged (fields and pack ids, never a value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

/// The checks the pack runs, with what each checks; `kinds` limits a check
/// to some kinds (empty: every kind).
const CHECKS: &[(RefusalCode, &[InstrumentKind], &str)] = &[
    (
        RefusalCode::Malformed,
        &[],
        "the instrument is well-formed JSON of one kind, with no value of the wrong type and nothing listed twice",
    ),
    (
        RefusalCode::UnknownField,
        &[],
        "every key is a field of the instrument's kind",
    ),
    (
        RefusalCode::Incomplete,
        &[],
        "every required particular is given (instrument id, agency, case, signer name and title, issue date, ...)",
    ),
    (
        RefusalCode::KindNotAllowed,
        &[],
        "the pack accepts instruments of this kind",
    ),
    (RefusalCode::NoSubject, &[], "at least one person is named"),
    (
        RefusalCode::SelectorNotIdentifier,
        &[],
        "each person is named by a plain identifier, never a selector, wildcard, pattern or attribute",
    ),
    (
        RefusalCode::TooManySubjects,
        &[],
        "no more people than the kind allows",
    ),
    (
        RefusalCode::MissingAuthority,
        &[],
        "a legal authority is cited",
    ),
    (
        RefusalCode::ProhibitedPurpose,
        &[],
        "the ground is not a purpose the engine prohibits (immigration enforcement, bulk analytics, First Amendment monitoring, reverse lookups of correspondents)",
    ),
    (
        RefusalCode::GroundNotAllowed,
        &[],
        "the ground is one the kind (and, for a cover, the requester type) may cite",
    ),
    (
        RefusalCode::SignerLevelTooLow,
        &[],
        "the signer's stated level is the kind's (and ground's) level or above",
    ),
    (
        RefusalCode::MissingDelegation,
        &[InstrumentKind::WrittenRequest],
        "a signer below the agency head cites a written delegation",
    ),
    (
        RefusalCode::MissingCourt,
        &[InstrumentKind::CourtOrder, InstrumentKind::Warrant],
        "the court block names the court, docket, judge and order date",
    ),
    (
        RefusalCode::NoPortion,
        &[],
        "at least one portion is asked for",
    ),
    (
        RefusalCode::PortionNotAllowed,
        &[],
        "each portion is one the kind may ask for on this ground",
    ),
    (
        RefusalCode::PortionNeedsCourtOrder,
        &[
            InstrumentKind::CourtOrder,
            InstrumentKind::Warrant,
            InstrumentKind::WrittenRequest,
            InstrumentKind::Subpoena,
        ],
        "court-order-only portions (change of address) come under a court order",
    ),
    (
        RefusalCode::PortionNotExterior,
        &[InstrumentKind::MailCover],
        "a mail cover asks only for data on the outside of mail",
    ),
    (
        RefusalCode::TimeRangeInvalid,
        &[],
        "the period of records is given, in order and no longer than the kind allows",
    ),
    (
        RefusalCode::DelayNeedsCourtOrder,
        &[
            InstrumentKind::CourtOrder,
            InstrumentKind::Warrant,
            InstrumentKind::WrittenRequest,
            InstrumentKind::Subpoena,
        ],
        "only a court delays the person's notice",
    ),
    (
        RefusalCode::NotYetValid,
        &[],
        "the instrument (and its court order) is not dated in the future",
    ),
    (
        RefusalCode::Expired,
        &[],
        "the instrument (or the cover period) has not ended",
    ),
    (
        RefusalCode::DurationTooLong,
        &[],
        "the instrument, the cover or the notice delay lasts no longer than allowed",
    ),
    (
        RefusalCode::AlreadyUsed,
        &[],
        "this document (kind, court, docket and instrument id, however written) was not used before, by any agency",
    ),
    (
        RefusalCode::PenaltyTooLow,
        &[InstrumentKind::MailCover],
        "a cover for a crime cites a maximum penalty over one year",
    ),
    (
        RefusalCode::ExtensionMismatch,
        &[InstrumentKind::MailCover],
        "the extension number and continuous days are what the ledger shows for this requester and subject",
    ),
    (
        RefusalCode::ExtensionWithoutBenefitStatement,
        &[InstrumentKind::MailCover],
        "an extension states the investigative benefit",
    ),
    (
        RefusalCode::CumulativeCap,
        &[InstrumentKind::MailCover],
        "the cover stays within 120 continuous days (from the ledger) unless the Chief Postal Inspector approved",
    ),
    (
        RefusalCode::EndedByIndictment,
        &[InstrumentKind::MailCover],
        "the subject has not been indicted (except fugitive covers)",
    ),
    (
        RefusalCode::OralNotConfirmed,
        &[InstrumentKind::MailCover],
        "an oral request is confirmed in writing within 3 calendar days, or acted on before only in an emergency",
    ),
];

/// Alerts the pack raises, with what each flags.
const ALERTS: &[(&str, &str, &str)] = &[
    (
        "quota_agency_24h",
        "R10",
        "the requester named no more people than its 24-hour quota",
    ),
    (
        "quota_agency_30d",
        "R10",
        "the requester named no more people than its 30-day quota",
    ),
    (
        "quota_case_30d",
        "R10",
        "the case (by any agency) named no more people than its 30-day quota",
    ),
    (
        "cumulative_cap_lifted",
        "R14",
        "the cover runs past 120 days only under the Chief Postal Inspector's personal approval",
    ),
    (
        "oral_pending_confirmation",
        "R12",
        "an emergency oral cover request still awaits its written confirmation",
    ),
];

/// The name of the protective-order check, an office-only note: a code of
/// the engine (stored in the ledger), the same whatever id the pack gives its
/// protective-order category (`[engine] protective_order_category`).
pub const PROTECTIVE_ORDER: &str = "protective_order";

/// The refusal a protective order on file makes for `inst` (R9): none
/// under a court order, else no disclosure without one. The gateway holds
/// such a request for the privacy office instead of telling the requester.
pub fn protective_order_refusal(rules: &DisclosureRules, inst: &Instrument) -> Option<Refusal> {
    let court_order = rules.kind(inst.kind).is_some_and(|kr| kr.court_order);
    (!court_order).then(|| {
        Refusal::new(
            RefusalCode::ProtectiveOrderNeedsCourtOrder,
            "a named subject has a protective order on file: disclosed only under a court order (R9); refuse this request",
        )
    })
}

/// Every check the pack makes on `inst` with `ctx`, and its result, in the
/// order of [`CHECKS`], then the alerts, then the protective-order check.
pub fn check_report(
    rules: &DisclosureRules,
    inst: &Instrument,
    ctx: &CheckContext,
) -> Vec<CheckResult> {
    let verdict = check_instrument(rules, inst, ctx);
    let mut out = Vec::new();
    for (code, kinds, what) in CHECKS {
        if !kinds.is_empty() && !kinds.contains(&inst.kind) {
            continue;
        }
        let messages: Vec<String> = verdict
            .refusals
            .iter()
            .filter(|r| r.code == *code)
            .map(|r| r.message.clone())
            .collect();
        out.push(CheckResult {
            check: code.as_str(),
            rule: code.rule(),
            what,
            result: if messages.is_empty() {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            },
            messages,
        });
    }
    for (name, rule, what) in ALERTS {
        let cover_only = !name.starts_with("quota_");
        if cover_only && inst.kind != InstrumentKind::MailCover {
            continue;
        }
        let messages: Vec<String> = verdict
            .alerts
            .iter()
            .filter_map(|a| a.strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_string)
            .collect();
        out.push(CheckResult {
            check: name,
            rule,
            what,
            result: if messages.is_empty() {
                CheckStatus::Passed
            } else {
                CheckStatus::Flagged
            },
            messages,
        });
    }
    let hold = ctx
        .subject_has_protective_order
        .then(|| protective_order_refusal(rules, inst));
    out.push(CheckResult {
        check: PROTECTIVE_ORDER,
        rule: "R9",
        what: "no named person has a protective order on file (one on file: disclosure only under a court order)",
        result: match &hold {
            None => CheckStatus::Passed,
            Some(None) => CheckStatus::Flagged,
            Some(Some(_)) => CheckStatus::Failed,
        },
        messages: match hold {
            None => vec![],
            Some(None) => vec![
                "a named subject has a protective order on file; this is a court order, which R9 allows".into(),
            ],
            Some(Some(r)) => vec![r.message],
        },
    });
    out
}

/// What the pack cannot check about an instrument of `kind`: the officer
/// confirms each against the document and its source before approving.
pub fn unverifiable(kind: InstrumentKind) -> Vec<&'static str> {
    let mut v = vec![
        "the document is genuine and comes from the agency it names",
        "the signer is the person named and holds the title and the level claimed (a title such as `Intern` does not sign at `agency_head`)",
        "the authority cited exists and authorizes this request; a statute of immigration law (8 U.S.C.) cited for a disclosure is civil immigration enforcement, which R25 never serves",
        "the ground stated is the investigation's true purpose, not a prohibited one under another name",
        "each identifier names the person the agency means, and only that person",
        "the portions and the period asked for are no more than the investigation needs (particularity)",
    ];
    match kind {
        InstrumentKind::CourtOrder | InstrumentKind::Warrant => v.extend([
            "the court, docket and judge are real and the order was issued as dated",
            "the order covers the people, portions and period asked for",
        ]),
        InstrumentKind::WrittenRequest => v.extend([
            "the written delegation cited exists and reaches this signer (not below section chief)",
        ]),
        InstrumentKind::Subpoena => v.extend([
            "the subpoena was issued by an authority that may issue it, in a pending matter",
        ]),
        InstrumentKind::MailCover => v.extend([
            "the statute cited carries the maximum penalty stated",
            "the reasonable grounds state facts that make the cover necessary",
            "an extension's benefit statement is true",
            "the subject has not been indicted or an information filed",
            "an emergency oral request was a real emergency, and its written confirmation is genuine",
            "the Chief Postal Inspector's approval, when cited, is genuine",
            "the known attorney's name and address are complete",
        ]),
    }
    v
}
