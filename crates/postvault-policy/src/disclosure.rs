//! The disclosure rules: what an outside party must present to get the data
//! of one named person, and the pure check that refuses everything else.
//!
//! An *instrument* is a court order, a warrant, a written request under
//! 5 U.S.C. 552a(b)(7), a subpoena or a mail-cover request (39 CFR 233.3):
//! typed data with a documented JSON format (`docs/instruments.md`).
//! [`parse_instrument`] reads one in two steps: a walk over the JSON value
//! that turns selectors, wildcards, unknown keys and wrong types into
//! refusals, then the typed [`Instrument`]. [`check_instrument`] applies the
//! pack's `disclosure.toml` ([`DisclosureRules`]) and returns a [`Verdict`]
//! with every refusal found, each under a stable [`RefusalCode`]; a request
//! that is otherwise in order but crosses an anti-enumeration quota is held
//! for review with an alert. [`check_approval`] keeps a requester from
//! approving its own request and anyone without the approver role from
//! approving at all.
//!
//! Refusal by construction: an outside party names subjects only by
//! identifier (matched exactly, later, through a blind index). There is no
//! selector, wildcard, prefix or attribute search, and no field for one.
//!
//! Pure like the rest of the crate: no IO, no clock (the caller passes
//! `now_ms` and the request counts), no randomness. No message echoes a
//! subject id or any other value of an instrument: messages name fields,
//! positions, codes and ids of the pack.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use toml::Spanned;

use crate::error::PackError;
use crate::taxonomy::{Cell, Taxonomy, line_of};

#[cfg(test)]
#[path = "disclosure_tests.rs"]
mod tests;

/// The file name of the disclosure rules inside a pack directory.
pub const DISCLOSURE_FILE: &str = "disclosure.toml";

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// The grounds of a mail cover, 39 CFR 233.3(c)(1). A pack may allow fewer,
/// never others.
pub const MAIL_COVER_GROUNDS: [&str; 5] = [
    "national_security",
    "fugitive",
    "crime",
    "postal_statute",
    "forfeiture",
];

/// The grounds 233.3(g)(5) exempts from the 30-day limit per order.
const DURATION_EXEMPT_GROUNDS: [&str; 2] = ["fugitive", "national_security"];
/// The grounds 233.3(g)(7) exempts from ending on indictment.
const INDICTMENT_EXEMPT_GROUNDS: [&str; 1] = ["fugitive"];
/// 233.3(g)(5): days per order.
const REG_MAX_DAYS: i64 = 30;
/// 233.3(g)(6): continuous days without the Chief Postal Inspector.
const REG_CUMULATIVE_CAP: i64 = 120;
/// 233.3(e)(3): calendar days to confirm an oral request in writing.
const REG_ORAL_DAYS: i64 = 3;
/// 233.3(c)(6): a crime is punishable by imprisonment over this many years.
const REG_PENALTY_YEARS: i64 = 1;

/// The longest delay of notice a court order may set, in days after issue
/// ([I]: 18 U.S.C. 2705(a) delays notice 90 days at a time; a year leaves
/// room for renewals inside one order, never an open-ended secret).
pub const MAX_NOTICE_DELAY_DAYS: i64 = 365;

/// The longest subject identifier accepted, in characters.
pub const MAX_SUBJECT_ID_CHARS: usize = 256;

// ---------------------------------------------------------------------------
// Kinds, levels, requester types
// ---------------------------------------------------------------------------

/// The kind of a legal instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstrumentKind {
    /// An order of a court of competent jurisdiction, 552a(b)(11).
    CourtOrder,
    /// A warrant issued by a court.
    Warrant,
    /// A written request of an agency head or delegate, 552a(b)(7).
    WrittenRequest,
    /// A subpoena, 39 CFR 265.14(d)(5)(iii).
    Subpoena,
    /// A mail-cover request, 39 CFR 233.3.
    MailCover,
}

impl InstrumentKind {
    pub const ALL: [InstrumentKind; 5] = [
        InstrumentKind::CourtOrder,
        InstrumentKind::Warrant,
        InstrumentKind::WrittenRequest,
        InstrumentKind::Subpoena,
        InstrumentKind::MailCover,
    ];

    /// The id used in JSON and `disclosure.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::CourtOrder => "court_order",
            InstrumentKind::Warrant => "warrant",
            InstrumentKind::WrittenRequest => "written_request",
            InstrumentKind::Subpoena => "subpoena",
            InstrumentKind::MailCover => "mail_cover",
        }
    }

    pub fn from_id(s: &str) -> Option<InstrumentKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a pack may count this kind as an order of a court (R7, R9).
    /// A subpoena never is (265.14(d)(5)(iii)).
    pub fn may_be_court_order(self) -> bool {
        matches!(self, InstrumentKind::CourtOrder | InstrumentKind::Warrant)
    }
}

impl fmt::Display for InstrumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of the official who signs an instrument, in order. `title` is
/// free text; this is what the rules compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerLevel {
    Agent,
    Supervisor,
    SectionChief,
    /// The head of the agency (or the designee the rules allow in its place).
    AgencyHead,
}

impl SignerLevel {
    pub const ALL: [SignerLevel; 4] = [
        SignerLevel::Agent,
        SignerLevel::Supervisor,
        SignerLevel::SectionChief,
        SignerLevel::AgencyHead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignerLevel::Agent => "agent",
            SignerLevel::Supervisor => "supervisor",
            SignerLevel::SectionChief => "section_chief",
            SignerLevel::AgencyHead => "agency_head",
        }
    }

    pub fn from_id(s: &str) -> Option<SignerLevel> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SignerLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks for a mail cover (233.3(e)(1)-(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequesterType {
    PostalInspector,
    LawEnforcementAgency,
}

impl RequesterType {
    pub const ALL: [RequesterType; 2] = [
        RequesterType::PostalInspector,
        RequesterType::LawEnforcementAgency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequesterType::PostalInspector => "postal_inspector",
            RequesterType::LawEnforcementAgency => "law_enforcement_agency",
        }
    }

    pub fn from_id(s: &str) -> Option<RequesterType> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for RequesterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// An instant as unix milliseconds, UTC. In JSON an ISO 8601 date
/// (`2026-03-01`, the start of that day UTC) or a date-time with seconds and
/// a zone (`2026-03-01T14:30:00Z`, `2026-03-01T09:30:00.250-05:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_iso(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_iso(&s)
            .map(Timestamp)
            .ok_or_else(|| D::Error::custom("expected an ISO 8601 date or date-time with a zone"))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// The start (00:00 UTC) of the calendar day holding `ms`.
pub fn start_of_day_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// Parses an ISO 8601 date (`YYYY-MM-DD`, midnight UTC) or date-time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`) into unix ms. A zone
/// is required; a fraction keeps milliseconds. `None` for anything else,
/// including dates that do not exist.
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !at(4, b'-') || !at(7, b'-') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let month = u32::try_from(month).ok()?;
    let day = u32::try_from(day).ok()?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let day_ms = days_from_civil(year, month, day) * DAY_MS;
    if b.len() == 10 {
        return Some(day_ms);
    }
    if !at(10, b'T') || !at(13, b':') || !at(16, b':') {
        return None;
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        let digits = b.get(start..end)?;
        for k in 0..3 {
            millis = millis * 10 + digits.get(k).map_or(0, |d| i64::from(d - b'0'));
        }
        i = end;
    }
    let offset_min = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => return None,
    };
    Some(day_ms + ((hh * 60 + mm - offset_min) * 60 + ss) * 1000 + millis)
}

/// Formats unix ms as ISO 8601 UTC: a bare date at midnight, otherwise a
/// date-time with `Z` (and milliseconds when there are any).
pub fn format_iso(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let rem = ms.rem_euclid(DAY_MS);
    if rem == 0 {
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

// ---------------------------------------------------------------------------
// Mail-cover arithmetic (39 CFR 233.3)
// ---------------------------------------------------------------------------

/// The end (exclusive) of a mail-cover order starting at `start_ms` for
/// `days` days, never longer than `max_days` (233.3(g)(5)).
pub fn mail_cover_order_end_ms(start_ms: i64, days: u32, max_days: u32) -> i64 {
    start_ms.saturating_add(i64::from(days.min(max_days)).saturating_mul(DAY_MS))
}

/// The instant (exclusive) by which an oral request made at `oral_at_ms` must
/// be confirmed in writing: the end of the `calendar_days`-th calendar day
/// (UTC) after the day of the request (233.3(e)(3)).
pub fn confirmation_deadline_ms(oral_at_ms: i64, calendar_days: u32) -> i64 {
    start_of_day_ms(oral_at_ms)
        .saturating_add((i64::from(calendar_days) + 1).saturating_mul(DAY_MS))
}

/// Cumulative cover days after an order of `days` follows `previous` days.
pub fn cumulative_days_after(previous: u32, days: u32) -> u32 {
    previous.saturating_add(days)
}

// ---------------------------------------------------------------------------
// The instrument
// ---------------------------------------------------------------------------

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

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
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

/// The run of `priors` a cover starting at `start_ms` continues: an order is
/// continued by one that starts after it and less than a day after its end
/// (233.3(g)(6) counts continuous days). Returns the chain and the index in
/// `priors` of the order it directly extends, if any. Orders that start
/// together run side by side and do not extend each other.
pub fn cover_chain(priors: &[PriorCover], start_ms: i64) -> (CoverChain, Option<usize>) {
    let before = |s: i64| {
        priors
            .iter()
            .enumerate()
            .filter(|(_, p)| p.start_ms < s && p.end_ms.saturating_add(DAY_MS) > s)
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

// ---------------------------------------------------------------------------
// Parsing an instrument
// ---------------------------------------------------------------------------

/// Keys that ask for people by something other than identifier. Matched
/// case-insensitively; the first group also as part of a longer key.
const SELECTOR_STEMS: [&str; 7] = [
    "selector", "query", "filter", "wildcard", "regex", "pattern", "search",
];
const SELECTOR_KEYS: [&str; 19] = [
    "all",
    "any",
    "everyone",
    "where",
    "match",
    "matches",
    "like",
    "prefix",
    "range",
    "attributes",
    "attribute",
    "criteria",
    "conditions",
    "bulk",
    "batch",
    "list",
    "population",
    "all_names_at_address",
    "subjects_where",
];

/// Wildcard characters of shells, SQL and search engines.
const WILDCARD_CHARS: [char; 3] = ['*', '?', '%'];
/// Characters of regular expressions and templates.
const PATTERN_CHARS: [char; 9] = ['[', ']', '^', '$', '|', '\\', '{', '}', '~'];
/// Values that stand for everyone rather than someone.
const PLACEHOLDER_IDS: [&str; 9] = [
    "all",
    "any",
    "everyone",
    "everybody",
    "anyone",
    "null",
    "none",
    "undefined",
    "nil",
];

fn is_selector_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SELECTOR_KEYS.contains(&k.as_str()) || SELECTOR_STEMS.iter().any(|s| k.contains(s))
}

/// Why `id` is not a plain identifier, or `None` when it is one.
pub fn subject_id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        return Some("is empty");
    }
    if id.chars().count() > MAX_SUBJECT_ID_CHARS {
        return Some("is longer than 256 characters");
    }
    if id.trim() != id {
        return Some("has leading or trailing spaces: identifiers match exactly");
    }
    if id.chars().any(char::is_control) {
        return Some("has control characters");
    }
    if crate::subject_id::check_subject_chars(id).is_err() {
        return Some(
            "has invisible, formatting or bidirectional characters, or is not in Unicode NFC: identifiers match exactly",
        );
    }
    if id.chars().any(|c| WILDCARD_CHARS.contains(&c)) {
        return Some("has a wildcard character (* ? %): identifiers match exactly");
    }
    if id.chars().any(|c| PATTERN_CHARS.contains(&c)) || id.contains("..") {
        return Some("looks like a pattern or range: identifiers match exactly");
    }
    if !id.chars().any(char::is_alphanumeric) {
        return Some("has no letter or digit");
    }
    if PLACEHOLDER_IDS.contains(&id.to_ascii_lowercase().as_str()) {
        return Some("stands for everyone, not for one person");
    }
    None
}

/// A snake_case id of at most 40 characters is shown; anything else is not.
fn looks_like_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn show_key(key: &str) -> String {
    if looks_like_id(key) {
        format!("`{key}`")
    } else {
        "a key".to_string()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    Disclosure,
    MailCover,
}

impl Scope {
    fn admits(self, kind: InstrumentKind) -> bool {
        match self {
            Scope::All => true,
            Scope::Disclosure => kind != InstrumentKind::MailCover,
            Scope::MailCover => kind == InstrumentKind::MailCover,
        }
    }
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Count,
    Years,
    Time,
    Level,
    Requester,
    Portions,
    Subjects,
    Signer,
    TimeRange,
    Court,
    Party,
}

const FIELDS: [(&str, Ty, Scope); 28] = [
    ("instrument_id", Ty::Str, Scope::All),
    ("agency", Ty::Str, Scope::All),
    ("signer", Ty::Signer, Scope::All),
    ("authority", Ty::Str, Scope::All),
    ("ground", Ty::Str, Scope::All),
    ("case_id", Ty::Str, Scope::All),
    ("subjects", Ty::Subjects, Scope::All),
    ("portions", Ty::Portions, Scope::All),
    ("issued_at", Ty::Time, Scope::All),
    ("expires_at", Ty::Time, Scope::All),
    ("time_range", Ty::TimeRange, Scope::Disclosure),
    ("court", Ty::Court, Scope::Disclosure),
    ("delay_notice_until", Ty::Time, Scope::Disclosure),
    ("requester_type", Ty::Requester, Scope::MailCover),
    ("statute_cited", Ty::Str, Scope::MailCover),
    ("penalty_max_years", Ty::Years, Scope::MailCover),
    ("reasonable_grounds", Ty::Str, Scope::MailCover),
    ("oral", Ty::Bool, Scope::MailCover),
    ("written_confirmed_at", Ty::Time, Scope::MailCover),
    ("emergency", Ty::Bool, Scope::MailCover),
    ("start", Ty::Time, Scope::MailCover),
    ("days", Ty::Count, Scope::MailCover),
    ("extension_no", Ty::Count, Scope::MailCover),
    ("benefit_statement", Ty::Str, Scope::MailCover),
    ("cumulative_days", Ty::Count, Scope::MailCover),
    ("cpi_approval_ref", Ty::Str, Scope::MailCover),
    ("indicted_or_information_filed", Ty::Bool, Scope::MailCover),
    ("known_attorney", Ty::Party, Scope::MailCover),
];

const SIGNER_FIELDS: [(&str, Ty); 4] = [
    ("name", Ty::Str),
    ("title", Ty::Str),
    ("level", Ty::Level),
    ("delegation_ref", Ty::Str),
];
const TIME_RANGE_FIELDS: [(&str, Ty); 2] = [("from", Ty::Time), ("to", Ty::Time)];
const COURT_FIELDS: [(&str, Ty); 4] = [
    ("name", Ty::Str),
    ("docket", Ty::Str),
    ("judge", Ty::Str),
    ("order_date", Ty::Time),
];
const PARTY_FIELDS: [(&str, Ty); 2] = [("name", Ty::Str), ("address", Ty::Str)];

/// Drops `null` members of objects, at every level: an absent optional field.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[derive(Default)]
struct Walk {
    out: Vec<Refusal>,
}

impl Walk {
    fn refuse(&mut self, code: RefusalCode, message: String) {
        self.out.push(Refusal { code, message });
    }

    fn unknown_key(&mut self, path: Option<&str>, key: &str) {
        let at = path.map_or(String::new(), |p| format!(" in `{p}`"));
        if is_selector_key(key) {
            self.refuse(
                RefusalCode::SelectorNotIdentifier,
                format!(
                    "{}{at} is a selector: outside parties name subjects only by identifier",
                    show_key(key)
                ),
            );
        } else {
            self.refuse(
                RefusalCode::UnknownField,
                format!("{}{at} is not a field of an instrument", show_key(key)),
            );
        }
    }

    fn value(&mut self, path: &str, ty: Ty, v: &Value) {
        let bad = |what: &str| format!("field `{path}` must be {what}");
        match ty {
            Ty::Str if !v.is_string() => self.refuse(RefusalCode::Malformed, bad("a string")),
            Ty::Bool if !v.is_boolean() => {
                self.refuse(RefusalCode::Malformed, bad("true or false"));
            }
            Ty::Count if v.as_u64().and_then(|n| u32::try_from(n).ok()).is_none() => {
                self.refuse(RefusalCode::Malformed, bad("a whole number"));
            }
            Ty::Years if v.as_f64().is_none_or(|x| !x.is_finite() || x < 0.0) => {
                self.refuse(RefusalCode::Malformed, bad("a number of years"));
            }
            Ty::Time if v.as_str().and_then(parse_iso).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("an iso 8601 date or date-time with a zone"),
            ),
            Ty::Level if v.as_str().and_then(SignerLevel::from_id).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("one of agent, supervisor, section_chief, agency_head"),
            ),
            Ty::Requester if v.as_str().and_then(RequesterType::from_id).is_none() => self.refuse(
                RefusalCode::Malformed,
                bad("one of postal_inspector, law_enforcement_agency"),
            ),
            Ty::Portions => match v.as_array() {
                Some(items) if items.iter().all(Value::is_string) => {}
                _ => self.refuse(RefusalCode::Malformed, bad("a list of category ids")),
            },
            Ty::Subjects => self.subjects(v),
            Ty::Signer => self.object(path, v, &SIGNER_FIELDS),
            Ty::Court => self.object(path, v, &COURT_FIELDS),
            Ty::Party => self.object(path, v, &PARTY_FIELDS),
            Ty::TimeRange => {
                self.object(path, v, &TIME_RANGE_FIELDS);
                if let Some(map) = v.as_object()
                    && !(map.contains_key("from") && map.contains_key("to"))
                {
                    self.refuse(
                        RefusalCode::TimeRangeInvalid,
                        "time_range needs both `from` and `to`".into(),
                    );
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, path: &str, v: &Value, fields: &[(&str, Ty)]) {
        let Some(map) = v.as_object() else {
            self.refuse(
                RefusalCode::Malformed,
                format!("field `{path}` must be an object"),
            );
            return;
        };
        for (key, val) in map {
            match fields.iter().find(|(name, _)| name == key) {
                Some((name, ty)) => self.value(&format!("{path}.{name}"), *ty, val),
                None => self.unknown_key(Some(path), key),
            }
        }
    }

    fn subjects(&mut self, v: &Value) {
        let Some(items) = v.as_array() else {
            self.refuse(
                RefusalCode::SelectorNotIdentifier,
                "`subjects` must be a list of {\"id\": ...} entries: outside parties name subjects only by identifier".into(),
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(entry) = item.as_object() else {
                self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}] must be an object {{\"id\": ...}}"),
                );
                continue;
            };
            for key in entry.keys().filter(|k| *k != "id") {
                self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!(
                        "subjects[{i}] has {} besides `id`: outside parties name subjects only by identifier",
                        show_key(key)
                    ),
                );
            }
            match entry.get("id") {
                None => self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}] has no `id`"),
                ),
                Some(Value::String(id)) => {
                    if let Some(why) = subject_id_problem(id) {
                        self.refuse(
                            RefusalCode::SelectorNotIdentifier,
                            format!("subjects[{i}].id {why}"),
                        );
                    }
                }
                Some(_) => self.refuse(
                    RefusalCode::SelectorNotIdentifier,
                    format!("subjects[{i}].id must be a string identifier"),
                ),
            }
        }
    }

    fn finish(mut self) -> Vec<Refusal> {
        self.out.sort();
        self.out.dedup();
        self.out
    }
}

/// Reads an instrument from JSON. First a walk over the value refuses
/// selectors and patterns (`selector_not_identifier`), keys that are not
/// fields of the kind (`unknown_field`), wrong types (`malformed`) and a
/// `time_range` without both ends (`time_range_invalid`), all at once; then
/// the typed [`Instrument`]. A `null` member counts as absent. Whether the
/// instrument is *acceptable* is [`check_instrument`]'s question.
pub fn parse_instrument(json: &str) -> Result<Instrument, Vec<Refusal>> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        vec![Refusal::new(
            RefusalCode::Malformed,
            format!(
                "not a json document (line {}, column {})",
                e.line(),
                e.column()
            ),
        )]
    })?;
    let value = strip_nulls(value);
    let Some(top) = value.as_object() else {
        return Err(vec![Refusal::new(
            RefusalCode::Malformed,
            "an instrument is a json object",
        )]);
    };
    let mut walk = Walk::default();
    let kind = walk_kind(&mut walk, top);
    for (key, v) in top {
        if key == "kind" {
            continue;
        }
        match FIELDS.iter().find(|(name, _, _)| name == key) {
            None => walk.unknown_key(None, key),
            Some(&(name, ty, scope)) => match kind {
                Some(k) if !scope.admits(k) => walk.refuse(
                    RefusalCode::UnknownField,
                    format!("field `{name}` does not apply to a {k}"),
                ),
                _ => walk.value(name, ty, v),
            },
        }
    }
    let refusals = walk.finish();
    if !refusals.is_empty() {
        return Err(refusals);
    }
    serde_json::from_value(value).map_err(|_| {
        vec![Refusal::new(
            RefusalCode::Malformed,
            "the instrument does not match the documented format",
        )]
    })
}

fn walk_kind(walk: &mut Walk, top: &Map<String, Value>) -> Option<InstrumentKind> {
    let kind = top
        .get("kind")
        .and_then(Value::as_str)
        .and_then(InstrumentKind::from_id);
    if kind.is_none() {
        walk.refuse(
            RefusalCode::Malformed,
            "`kind` must be one of court_order, warrant, written_request, subpoena, mail_cover"
                .into(),
        );
    }
    kind
}

// ---------------------------------------------------------------------------
// The rules (disclosure.toml)
// ---------------------------------------------------------------------------

/// The rules for one instrument kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindRules {
    /// The taxonomy purpose the gateway reads for.
    pub purpose: String,
    pub grounds: Vec<String>,
    pub max_subjects: u32,
    pub portions: Vec<String>,
    /// Narrower portion lists for some grounds.
    pub portions_by_ground: BTreeMap<String, Vec<String>>,
    pub signer_level: SignerLevel,
    /// Higher signer levels for some grounds.
    pub signer_level_by_ground: BTreeMap<String, SignerLevel>,
    /// A signer below this level must cite a written delegation.
    pub delegation_below: Option<SignerLevel>,
    pub court_required: bool,
    /// The instrument is an order of a court (R7, R9).
    pub court_order: bool,
    pub max_validity_days: Option<u32>,
    pub max_range_days: Option<u32>,
}

impl KindRules {
    /// The signer level `ground` needs.
    pub fn signer_level_for(&self, ground: &str) -> SignerLevel {
        self.signer_level_by_ground
            .get(ground)
            .copied()
            .unwrap_or(self.signer_level)
    }

    /// The portions that may be asked for on `ground`.
    pub fn portions_for(&self, ground: &str) -> &[String] {
        self.portions_by_ground
            .get(ground)
            .map_or(self.portions.as_slice(), Vec::as_slice)
    }
}

/// Anti-enumeration limits over rolling windows (R10). A request beyond one
/// is held for review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub agency_per_24h: u32,
    pub agency_per_30d: u32,
    pub case_per_30d: u32,
}

/// The mail-cover limits of 39 CFR 233.3 as the pack sets them (never looser
/// than the regulation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailCoverLimits {
    /// Categories that are data on the outside of mail.
    pub exterior_portions: Vec<String>,
    pub max_days: u32,
    /// Longer orders for the grounds 233.3(g)(5) exempts.
    pub max_days_by_ground: BTreeMap<String, u32>,
    pub cumulative_cap_days: u32,
    pub oral_confirmation_days: u32,
    pub penalty_ground: String,
    pub penalty_must_exceed_years: u32,
    pub indictment_exempt_grounds: Vec<String>,
    pub grounds_by_requester: BTreeMap<RequesterType, Vec<String>>,
}

impl MailCoverLimits {
    /// The longest order on `ground`, in days.
    pub fn max_days_for(&self, ground: &str) -> u32 {
        self.max_days_by_ground
            .get(ground)
            .copied()
            .unwrap_or(self.max_days)
    }

    /// The end (exclusive) of an order on `ground` from `start_ms` for `days`.
    pub fn order_end_ms(&self, start_ms: i64, days: u32, ground: &str) -> i64 {
        mail_cover_order_end_ms(start_ms, days, self.max_days_for(ground))
    }

    /// The instant (exclusive) by which an oral request must be confirmed.
    pub fn confirmation_deadline_ms(&self, oral_at_ms: i64) -> i64 {
        confirmation_deadline_ms(oral_at_ms, self.oral_confirmation_days)
    }

    /// Whether `cumulative_days` is allowed, with or without the Chief Postal
    /// Inspector's personal approval.
    pub fn within_cumulative_cap(&self, cumulative_days: u32, cpi_approved: bool) -> bool {
        cpi_approved || cumulative_days <= self.cumulative_cap_days
    }

    /// Whether an indictment or information ends a cover on `ground`.
    pub fn ends_on_indictment(&self, ground: &str) -> bool {
        !self.indictment_exempt_grounds.iter().any(|g| g == ground)
    }
}

/// The checked disclosure rules of a pack. A pack without `disclosure.toml`
/// has [`DisclosureRules::none`]: every instrument is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosureRules {
    kinds: BTreeMap<InstrumentKind, KindRules>,
    approver_roles: Vec<String>,
    requester_role: String,
    court_order_portions: Vec<String>,
    prohibited_purposes: Vec<String>,
    categories: BTreeSet<String>,
    quotas: Quotas,
    mail_cover: Option<MailCoverLimits>,
}

impl DisclosureRules {
    /// No disclosure at all: every kind is refused (`kind_not_allowed`).
    pub fn none(taxonomy: &Taxonomy) -> DisclosureRules {
        DisclosureRules {
            kinds: BTreeMap::new(),
            approver_roles: Vec::new(),
            requester_role: String::new(),
            court_order_portions: Vec::new(),
            prohibited_purposes: prohibited_purposes(taxonomy),
            categories: taxonomy.categories.iter().map(|c| c.id.clone()).collect(),
            quotas: Quotas {
                agency_per_24h: u32::MAX,
                agency_per_30d: u32::MAX,
                case_per_30d: u32::MAX,
            },
            mail_cover: None,
        }
    }

    /// Parses and checks `disclosure.toml` against the pack's taxonomy.
    /// Errors read `disclosure.toml:LINE: [check] message`.
    pub fn parse(src: &str, taxonomy: &Taxonomy) -> Result<DisclosureRules, PackError> {
        let raw: RawRules = toml::from_str(src).map_err(|e| {
            PackError::new(
                DISCLOSURE_FILE,
                e.span().map(|s| line_of(src, s.start)),
                "syntax",
                e.message().trim().to_string(),
            )
        })?;
        Loader { src, taxonomy }.build(raw)
    }

    /// The rules of `kind`, if the pack allows it at all.
    pub fn kind(&self, kind: InstrumentKind) -> Option<&KindRules> {
        self.kinds.get(&kind)
    }

    /// The kinds the pack allows, in order.
    pub fn kinds(&self) -> impl Iterator<Item = (InstrumentKind, &KindRules)> {
        self.kinds.iter().map(|(k, r)| (*k, r))
    }

    pub fn approver_roles(&self) -> &[String] {
        &self.approver_roles
    }

    pub fn requester_role(&self) -> &str {
        &self.requester_role
    }

    /// Portions that go out only under a court order (R7).
    pub fn court_order_portions(&self) -> &[String] {
        &self.court_order_portions
    }

    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    pub fn mail_cover(&self) -> Option<&MailCoverLimits> {
        self.mail_cover.as_ref()
    }

    /// When `inst` stops being valid (exclusive), as far as the rules tell:
    /// for a mail cover the end of the order (capped), otherwise `expires_at`
    /// or the kind's longest validity after `issued_at`, whichever is first.
    /// `None` when it cannot be told (missing dates, unknown kind) or the
    /// instrument has no end.
    pub fn valid_until_ms(&self, inst: &Instrument) -> Option<i64> {
        let kr = self.kind(inst.kind)?;
        let expires = inst.expires_at.map(|t| t.0);
        let end = if inst.kind == InstrumentKind::MailCover {
            let mc = self.mail_cover.as_ref()?;
            Some(mc.order_end_ms(inst.start?.0, inst.days?, &inst.ground))
        } else {
            let issued = inst.issued_at?.0;
            kr.max_validity_days
                .map(|d| issued.saturating_add(i64::from(d).saturating_mul(DAY_MS)))
        };
        match (expires, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The pack's prohibited purposes and the engine's fixed ones.
fn prohibited_purposes(t: &Taxonomy) -> Vec<String> {
    let mut ids: BTreeSet<String> = t
        .purposes
        .iter()
        .filter(|p| p.prohibited())
        .map(|p| p.id.clone())
        .collect();
    ids.extend(
        crate::taxonomy::FIXED_PROHIBITED_PURPOSES
            .iter()
            .map(|(p, _)| (*p).to_string()),
    );
    ids.into_iter().collect()
}

/// A ground or purpose as an id: NFKC (full-width letters, compatibility
/// hyphens), lowercase, every run of other characters one `_`. So
/// `Immigration‐Enforcement` (a Unicode hyphen) and `ＩＭＭＩＧＲＡＴＩＯＮ
/// enforcement` are `immigration_enforcement`.
pub fn fold_id(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::new();
    let mut gap = false;
    for c in s.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else if !unicode_normalization::char::is_combining_mark(c) {
            gap = true;
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    gateway: RawGateway,
    quotas: RawQuotas,
    #[serde(default)]
    kind: BTreeMap<String, Spanned<RawKind>>,
    mail_cover: Option<RawMailCover>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    approver_roles: Spanned<Vec<Spanned<String>>>,
    requester_role: Spanned<String>,
    #[serde(default)]
    court_order_portions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuotas {
    agency_per_24h: Spanned<i64>,
    agency_per_30d: Spanned<i64>,
    case_per_30d: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    purpose: Spanned<String>,
    grounds: Spanned<Vec<Spanned<String>>>,
    max_subjects: Spanned<i64>,
    portions: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    portions_by_ground: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    signer_level: Spanned<String>,
    #[serde(default)]
    signer_level_by_ground: BTreeMap<String, Spanned<String>>,
    delegation_below: Option<Spanned<String>>,
    #[serde(default)]
    court_required: bool,
    court_order: Option<Spanned<bool>>,
    max_validity_days: Option<Spanned<i64>>,
    max_range_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailCover {
    exterior_portions: Spanned<Vec<Spanned<String>>>,
    max_days: Spanned<i64>,
    #[serde(default)]
    max_days_by_ground: BTreeMap<String, Spanned<i64>>,
    cumulative_cap_days: Spanned<i64>,
    oral_confirmation_days: Spanned<i64>,
    penalty_ground: Spanned<String>,
    penalty_must_exceed_years: Spanned<i64>,
    #[serde(default)]
    indictment_exempt_grounds: Vec<Spanned<String>>,
    grounds_by_requester: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
}

struct Loader<'a> {
    src: &'a str,
    taxonomy: &'a Taxonomy,
}

type Span = Range<usize>;

impl Loader<'_> {
    fn err(&self, span: Span, rule: &str, message: String) -> PackError {
        PackError::new(
            DISCLOSURE_FILE,
            Some(line_of(self.src, span.start)),
            rule,
            message,
        )
    }

    /// The line of a table header such as `[kind.warrant]`, if present.
    fn header_line(&self, header: &str) -> Option<usize> {
        self.src.find(header).map(|o| line_of(self.src, o))
    }

    fn err_at_header(&self, header: &str, rule: &str, message: String) -> PackError {
        PackError::new(DISCLOSURE_FILE, self.header_line(header), rule, message)
    }

    fn positive(&self, v: &Spanned<i64>, rule: &str, what: &str) -> Result<u32, PackError> {
        u32::try_from(*v.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                self.err(
                    v.span(),
                    rule,
                    format!("{what} must be a positive whole number"),
                )
            })
    }

    fn category(&self, s: &Spanned<String>, what: &str) -> Result<String, PackError> {
        let id = s.get_ref();
        if self.taxonomy.category_ix(id).is_none() {
            return Err(self.err(
                s.span(),
                "unknown-category",
                format!("{what} names unknown category `{id}`"),
            ));
        }
        Ok(id.clone())
    }

    fn ground(&self, s: &Spanned<String>, what: &str) -> Result<String, PackError> {
        let id = s.get_ref();
        let fixed = crate::taxonomy::FIXED_PROHIBITED_PURPOSES
            .iter()
            .any(|(p, _)| p == id);
        if fixed
            || self
                .taxonomy
                .purposes
                .iter()
                .any(|p| p.prohibited() && &p.id == id)
        {
            return Err(self.err(
                s.span(),
                "prohibited-purpose",
                format!(
                    "{what}: `{id}` is a prohibited purpose and never a ground of a disclosure"
                ),
            ));
        }
        if !looks_like_id(id) {
            return Err(self.err(
                s.span(),
                "ground-id",
                format!("{what}: ground `{id}` is not a snake_case id"),
            ));
        }
        Ok(id.clone())
    }

    fn level(&self, s: &Spanned<String>, what: &str) -> Result<SignerLevel, PackError> {
        SignerLevel::from_id(s.get_ref()).ok_or_else(|| {
            self.err(
                s.span(),
                "signer-level",
                format!(
                    "{what}: `{}` is not one of agent, supervisor, section_chief, agency_head",
                    s.get_ref()
                ),
            )
        })
    }

    fn unique(&self, list: &[Spanned<String>], rule: &str, what: &str) -> Result<(), PackError> {
        let mut seen = BTreeSet::new();
        for s in list {
            if !seen.insert(s.get_ref()) {
                return Err(self.err(
                    s.span(),
                    rule,
                    format!("{what} lists `{}` twice", s.get_ref()),
                ));
            }
        }
        Ok(())
    }

    fn build(&self, raw: RawRules) -> Result<DisclosureRules, PackError> {
        let t = self.taxonomy;
        let gw = raw.gateway;

        let requester_role = gw.requester_role.get_ref().clone();
        if t.role_ix(&requester_role).is_none() {
            return Err(self.err(
                gw.requester_role.span(),
                "unknown-role",
                format!("[gateway] requester_role names unknown role `{requester_role}`"),
            ));
        }
        let mut approver_roles = Vec::new();
        for r in gw.approver_roles.get_ref() {
            let id = r.get_ref();
            if t.role_ix(id).is_none() {
                return Err(self.err(
                    r.span(),
                    "unknown-role",
                    format!("[gateway] approver_roles names unknown role `{id}`"),
                ));
            }
            if *id == requester_role || approver_roles.contains(id) {
                return Err(self.err(
                    r.span(),
                    "approver-role",
                    format!("[gateway] approver role `{id}` is the requester role or listed twice"),
                ));
            }
            approver_roles.push(id.clone());
        }
        if approver_roles.is_empty() {
            return Err(self.err(
                gw.approver_roles.span(),
                "approver-role",
                "[gateway] approver_roles lists no role".into(),
            ));
        }
        let court_order_portions = gw
            .court_order_portions
            .iter()
            .map(|s| self.category(s, "[gateway] court_order_portions"))
            .collect::<Result<Vec<_>, _>>()?;
        self.unique(
            &gw.court_order_portions,
            "portion",
            "[gateway] court_order_portions",
        )?;

        let q = raw.quotas;
        let quotas = Quotas {
            agency_per_24h: self.positive(&q.agency_per_24h, "quota", "[quotas] agency_per_24h")?,
            agency_per_30d: self.positive(&q.agency_per_30d, "quota", "[quotas] agency_per_30d")?,
            case_per_30d: self.positive(&q.case_per_30d, "quota", "[quotas] case_per_30d")?,
        };
        if quotas.agency_per_24h > quotas.agency_per_30d {
            return Err(self.err(
                q.agency_per_24h.span(),
                "quota",
                "[quotas] agency_per_24h is larger than agency_per_30d".into(),
            ));
        }

        let mail_cover = raw
            .mail_cover
            .as_ref()
            .map(|m| self.mail_cover(m))
            .transpose()?;

        let mut kinds = BTreeMap::new();
        for (name, rk) in &raw.kind {
            let header = format!("[kind.{name}]");
            let Some(kind) = InstrumentKind::from_id(name) else {
                return Err(self.err_at_header(
                    &header,
                    "unknown-kind",
                    format!(
                        "`{name}` is not an instrument kind: court_order, warrant, written_request, subpoena, mail_cover"
                    ),
                ));
            };
            let kr = self.kind(
                kind,
                rk.get_ref(),
                &court_order_portions,
                mail_cover.as_ref(),
                &header,
            )?;
            kinds.insert(kind, kr);
        }

        Ok(DisclosureRules {
            kinds,
            approver_roles,
            requester_role,
            court_order_portions,
            prohibited_purposes: prohibited_purposes(t),
            categories: t.categories.iter().map(|c| c.id.clone()).collect(),
            quotas,
            mail_cover,
        })
    }

    fn kind(
        &self,
        kind: InstrumentKind,
        rk: &RawKind,
        court_order_portions: &[String],
        mail_cover: Option<&MailCoverLimits>,
        header: &str,
    ) -> Result<KindRules, PackError> {
        let t = self.taxonomy;
        let what = format!("[kind.{kind}]");

        let purpose = rk.purpose.get_ref();
        let Some(pix) = t.purpose_ix(purpose) else {
            return Err(self.err(
                rk.purpose.span(),
                "unknown-purpose",
                format!("{what} purpose names unknown purpose `{purpose}`"),
            ));
        };
        if t.purpose(pix).prohibited() {
            return Err(self.err(
                rk.purpose.span(),
                "prohibited-purpose",
                format!("{what} purpose `{purpose}` is prohibited"),
            ));
        }

        let grounds = rk
            .grounds
            .get_ref()
            .iter()
            .map(|g| self.ground(g, &format!("{what} grounds")))
            .collect::<Result<Vec<_>, _>>()?;
        if grounds.is_empty() {
            return Err(self.err(
                rk.grounds.span(),
                "ground-id",
                format!("{what} lists no grounds"),
            ));
        }
        self.unique(
            rk.grounds.get_ref(),
            "ground-id",
            &format!("{what} grounds"),
        )?;
        if kind == InstrumentKind::MailCover {
            if mail_cover.is_none() {
                return Err(self.err_at_header(
                    header,
                    "mail-cover",
                    format!("{what} needs a [mail_cover] table with the limits of 39 cfr 233.3"),
                ));
            }
            for g in rk.grounds.get_ref() {
                if !MAIL_COVER_GROUNDS.contains(&g.get_ref().as_str()) {
                    return Err(self.err(
                        g.span(),
                        "mail-cover-ground",
                        format!(
                            "{what}: `{}` is not a ground of 39 cfr 233.3(c)(1): {}",
                            g.get_ref(),
                            MAIL_COVER_GROUNDS.join(", ")
                        ),
                    ));
                }
            }
        }

        let court_order = rk.court_order.as_ref().is_some_and(|b| *b.get_ref());
        let court_order_span = rk.court_order.as_ref().map_or(0..0, Spanned::span);
        if court_order && !kind.may_be_court_order() {
            return Err(self.err(
                court_order_span.clone(),
                "court-order",
                format!("{what}: only court_order and warrant may count as a court order"),
            ));
        }
        if court_order && !rk.court_required {
            return Err(self.err(
                court_order_span,
                "court-order",
                format!("{what}: a court order must require a court block (court_required)"),
            ));
        }

        let max_subjects = self.positive(
            &rk.max_subjects,
            "max-subjects",
            &format!("{what} max_subjects"),
        )?;
        if !court_order && max_subjects != 1 {
            return Err(self.err(
                rk.max_subjects.span(),
                "max-subjects",
                format!("{what}: only a court order may name more than one subject"),
            ));
        }

        let mut portions = Vec::new();
        for p in rk.portions.get_ref() {
            let id = self.category(p, &format!("{what} portions"))?;
            let cix = t
                .category_ix(&id)
                .ok_or_else(|| self.err(p.span(), "unknown-category", format!("unknown `{id}`")))?;
            if !matches!(t.cell(pix, cix), Cell::Instrument | Cell::Allowed) {
                return Err(self.err(
                    p.span(),
                    "portion-matrix",
                    format!(
                        "{what}: purpose `{purpose}` may not read `{id}` under an instrument (matrix cell `{}`)",
                        t.cell(pix, cix).letter()
                    ),
                ));
            }
            if !court_order && court_order_portions.contains(&id) {
                return Err(self.err(
                    p.span(),
                    "court-order-portion",
                    format!("{what}: `{id}` goes out only under a court order"),
                ));
            }
            if let Some(mc) = mail_cover
                && kind == InstrumentKind::MailCover
                && !mc.exterior_portions.contains(&id)
            {
                return Err(self.err(
                    p.span(),
                    "mail-cover-exterior",
                    format!("{what}: `{id}` is not in [mail_cover] exterior_portions"),
                ));
            }
            portions.push(id);
        }
        if portions.is_empty() {
            return Err(self.err(
                rk.portions.span(),
                "portion",
                format!("{what} lists no portions"),
            ));
        }
        self.unique(
            rk.portions.get_ref(),
            "portion",
            &format!("{what} portions"),
        )?;

        let mut portions_by_ground = BTreeMap::new();
        for (g, list) in &rk.portions_by_ground {
            if !grounds.contains(g) {
                return Err(self.err(
                    list.span(),
                    "unknown-ground",
                    format!("{what} portions_by_ground: `{g}` is not one of the kind's grounds"),
                ));
            }
            let mut narrowed = Vec::new();
            for p in list.get_ref() {
                if !portions.contains(p.get_ref()) {
                    return Err(self.err(
                        p.span(),
                        "portion",
                        format!(
                            "{what} portions_by_ground.{g}: `{}` is not in the kind's portions",
                            p.get_ref()
                        ),
                    ));
                }
                narrowed.push(p.get_ref().clone());
            }
            portions_by_ground.insert(g.clone(), narrowed);
        }

        let signer_level = self.level(&rk.signer_level, &format!("{what} signer_level"))?;
        let mut signer_level_by_ground = BTreeMap::new();
        for (g, lv) in &rk.signer_level_by_ground {
            if !grounds.contains(g) {
                return Err(self.err(
                    lv.span(),
                    "unknown-ground",
                    format!(
                        "{what} signer_level_by_ground: `{g}` is not one of the kind's grounds"
                    ),
                ));
            }
            let level = self.level(lv, &format!("{what} signer_level_by_ground.{g}"))?;
            if level < signer_level {
                return Err(self.err(
                    lv.span(),
                    "signer-level",
                    format!("{what} signer_level_by_ground.{g} may only raise signer_level"),
                ));
            }
            signer_level_by_ground.insert(g.clone(), level);
        }
        let delegation_below = rk
            .delegation_below
            .as_ref()
            .map(|s| self.level(s, &format!("{what} delegation_below")))
            .transpose()?;
        // Floors the pack may not go below.
        if kind == InstrumentKind::WrittenRequest && signer_level < SignerLevel::SectionChief {
            return Err(self.err(
                rk.signer_level.span(),
                "signer-level",
                format!(
                    "{what}: a (b)(7) request is signed by the agency head or a delegate not below section_chief"
                ),
            ));
        }
        if kind == InstrumentKind::MailCover
            && grounds.iter().any(|g| g == "national_security")
            && signer_level_by_ground
                .get("national_security")
                .copied()
                .unwrap_or(signer_level)
                < SignerLevel::AgencyHead
        {
            let span = rk
                .signer_level_by_ground
                .get("national_security")
                .map_or_else(|| rk.signer_level.span(), Spanned::span);
            return Err(self.err(
                span,
                "signer-level",
                format!(
                    "{what}: a national-security cover is approved personally by the agency head (233.3(g)(8)): set signer_level_by_ground.national_security = \"agency_head\""
                ),
            ));
        }

        let max_validity_days = rk
            .max_validity_days
            .as_ref()
            .map(|d| self.positive(d, "duration", &format!("{what} max_validity_days")))
            .transpose()?;
        let max_range_days = rk
            .max_range_days
            .as_ref()
            .map(|d| self.positive(d, "duration", &format!("{what} max_range_days")))
            .transpose()?;

        Ok(KindRules {
            purpose: purpose.clone(),
            grounds,
            max_subjects,
            portions,
            portions_by_ground,
            signer_level,
            signer_level_by_ground,
            delegation_below,
            court_required: rk.court_required,
            court_order,
            max_validity_days,
            max_range_days,
        })
    }

    fn mail_cover(&self, m: &RawMailCover) -> Result<MailCoverLimits, PackError> {
        let what = "[mail_cover]";
        let exterior_portions = m
            .exterior_portions
            .get_ref()
            .iter()
            .map(|s| self.category(s, "[mail_cover] exterior_portions"))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = |v: &Spanned<i64>, name: &str, lo: i64, hi: i64, why: &str| {
            let n = *v.get_ref();
            if n < lo || n > hi {
                return Err(self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!("{what} {name} must be between {lo} and {hi}: {why}"),
                ));
            }
            u32::try_from(n).map_err(|_| {
                self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!("{what} {name} is out of range"),
                )
            })
        };
        let max_days = limit(
            &m.max_days,
            "max_days",
            1,
            REG_MAX_DAYS,
            "233.3(g)(5) allows 30 days per order",
        )?;
        let cumulative_cap_days = limit(
            &m.cumulative_cap_days,
            "cumulative_cap_days",
            1,
            REG_CUMULATIVE_CAP,
            "233.3(g)(6) caps covers at 120 continuous days",
        )?;
        let oral_confirmation_days = limit(
            &m.oral_confirmation_days,
            "oral_confirmation_days",
            0,
            REG_ORAL_DAYS,
            "233.3(e)(3) wants written confirmation within 3 calendar days",
        )?;
        let penalty_must_exceed_years = limit(
            &m.penalty_must_exceed_years,
            "penalty_must_exceed_years",
            REG_PENALTY_YEARS,
            99,
            "233.3(c)(6) defines a crime as punishable by over one year",
        )?;
        let mc_ground = |s: &Spanned<String>, name: &str, allowed: &[&str]| {
            let g = self.ground(s, &format!("{what} {name}"))?;
            if !allowed.contains(&g.as_str()) {
                return Err(self.err(
                    s.span(),
                    "mail-cover-ground",
                    format!(
                        "{what} {name}: `{g}` may not appear here (allowed: {})",
                        allowed.join(", ")
                    ),
                ));
            }
            Ok(g)
        };
        let penalty_ground = mc_ground(&m.penalty_ground, "penalty_ground", &["crime"])?;
        let indictment_exempt_grounds = m
            .indictment_exempt_grounds
            .iter()
            .map(|g| mc_ground(g, "indictment_exempt_grounds", &INDICTMENT_EXEMPT_GROUNDS))
            .collect::<Result<Vec<_>, _>>()?;
        let mut max_days_by_ground = BTreeMap::new();
        for (g, v) in &m.max_days_by_ground {
            if !DURATION_EXEMPT_GROUNDS.contains(&g.as_str()) {
                return Err(self.err(
                    v.span(),
                    "mail-cover-limit",
                    format!(
                        "{what} max_days_by_ground: `{g}` is not exempt from the 30 days (233.3(g)(5) exempts {})",
                        DURATION_EXEMPT_GROUNDS.join(", ")
                    ),
                ));
            }
            let days = limit(
                v,
                &format!("max_days_by_ground.{g}"),
                1,
                i64::from(cumulative_cap_days),
                "an order never runs past the cumulative cap",
            )?;
            max_days_by_ground.insert(g.clone(), days);
        }
        let mut grounds_by_requester = BTreeMap::new();
        for (name, list) in &m.grounds_by_requester {
            let Some(rt) = RequesterType::from_id(name) else {
                return Err(self.err(
                    list.span(),
                    "mail-cover-ground",
                    format!(
                        "{what} grounds_by_requester: `{name}` is not postal_inspector or law_enforcement_agency"
                    ),
                ));
            };
            // 233.3(e)(1): inspectors ask for postal-statute covers; (e)(2):
            // law enforcement agencies for the other grounds.
            let allowed: &[&str] = match rt {
                RequesterType::PostalInspector => &["postal_statute"],
                RequesterType::LawEnforcementAgency => {
                    &["national_security", "fugitive", "crime", "forfeiture"]
                }
            };
            let grounds = list
                .get_ref()
                .iter()
                .map(|g| mc_ground(g, &format!("grounds_by_requester.{name}"), allowed))
                .collect::<Result<Vec<_>, _>>()?;
            grounds_by_requester.insert(rt, grounds);
        }
        Ok(MailCoverLimits {
            exterior_portions,
            max_days,
            max_days_by_ground,
            cumulative_cap_days,
            oral_confirmation_days,
            penalty_ground,
            penalty_must_exceed_years,
            indictment_exempt_grounds,
            grounds_by_requester,
        })
    }
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

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

struct Checker<'a> {
    rules: &'a DisclosureRules,
    inst: &'a Instrument,
    ctx: &'a CheckContext,
    refusals: Vec<Refusal>,
    alerts: Vec<String>,
    quota_crossed: bool,
}

impl Checker<'_> {
    fn refuse(&mut self, code: RefusalCode, message: impl Into<String>) {
        self.refusals.push(Refusal::new(code, message));
    }

    fn alert(&mut self, name: &str, message: String) {
        self.alerts.push(format!("{name}: {message}"));
    }

    /// A pack id is named; any other value by its position.
    fn show_portion(&self, i: usize, p: &str) -> String {
        if self.rules.categories.contains(p) {
            format!("`{p}`")
        } else {
            format!("portions[{i}]")
        }
    }

    fn run(&mut self) {
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

    fn particulars(&mut self) {
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

    fn subjects(&mut self) {
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
    fn prohibited_ground(&mut self) -> bool {
        let g = fold_id(&self.inst.ground);
        let hit = self.rules.prohibited_purposes.iter().find(|p| **p == g);
        if let Some(p) = hit {
            let msg = format!("`{p}` is never a purpose of a disclosure");
            self.refuse(RefusalCode::ProhibitedPurpose, msg);
            return true;
        }
        false
    }

    fn quotas(&mut self) {
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

    fn kind_rules(&mut self, kr: &KindRules, prohibited: bool) {
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

    fn court(&mut self) {
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

    fn portions(&mut self, kr: &KindRules, ground_ok: bool) {
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
    fn validity(&mut self, kr: &KindRules) {
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

    fn mail_cover(&mut self, ground_ok: bool) {
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
        let ledger = match (self.ctx.cover_chain, inst.start, inst.days) {
            (Some(chain), Some(start), Some(days)) => {
                let end = mc.order_end_ms(start.0, days, ground);
                let span = end.saturating_sub(chain.first_start_ms).max(0);
                let days = u32::try_from((span + DAY_MS - 1) / DAY_MS).unwrap_or(u32::MAX);
                Some((chain.prior_orders, days))
            }
            _ => None,
        };
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

    fn finish(mut self) -> Verdict {
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
