#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Tests of the disclosure rules: the red-team table (attempts to get data
//! about people who are not the named subject of a valid instrument, or more
//! than approved), valid instruments of every kind, the mail-cover
//! arithmetic, and the loader's checks of `disclosure.toml`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;
use crate::{Pack, PackError, PackSources, Taxonomy};

use RefusalCode as R;

/// Every value in the instruments below that a message must never echo
/// carries this marker.
const SECRET: &str = "pv-secret";
const NOW: &str = "2026-03-15T12:00:00Z";

fn ms(s: &str) -> i64 {
    parse_iso(s).unwrap_or_else(|| panic!("bad test date {s}"))
}

fn taxonomy() -> Taxonomy {
    Taxonomy::parse(&PackSources::postal().taxonomy).unwrap()
}

fn rules() -> &'static DisclosureRules {
    static RULES: OnceLock<DisclosureRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let src = PackSources::postal();
        DisclosureRules::parse(&src.disclosure.unwrap(), &taxonomy()).unwrap()
    })
}

fn ctx() -> CheckContext {
    CheckContext {
        now_ms: ms(NOW),
        ..CheckContext::default()
    }
}

// ---------------------------------------------------------------------------
// Valid instruments of every kind (at NOW)
// ---------------------------------------------------------------------------

fn signer(level: &str) -> Value {
    json!({"name": "pv-secret signer", "title": "Special Agent in Charge", "level": level})
}

fn court_order() -> Value {
    json!({
        "kind": "court_order",
        "instrument_id": "pv-secret-co-17",
        "agency": "United States Attorney, Northern District of Illinois",
        "signer": signer("agent"),
        "authority": "5 U.S.C. 552a(b)(11); 39 CFR 265.14(d)(5)(iii)",
        "ground": "criminal_law_enforcement",
        "case_id": "pv-secret-case-1",
        "subjects": [{"id": "pv-secret-a"}, {"id": "pv-secret-b"}, {"id": "pv-secret-c"}],
        "portions": ["address", "change_of_address"],
        "time_range": {"from": "2025-01-01", "to": "2026-03-01"},
        "issued_at": "2026-03-10",
        "expires_at": "2026-06-01",
        "court": {
            "name": "U.S. District Court for the Northern District of Illinois",
            "docket": "1:26-cr-00042",
            "judge": "pv-secret judge",
            "order_date": "2026-03-09"
        }
    })
}

fn warrant() -> Value {
    json!({
        "kind": "warrant",
        "instrument_id": "pv-secret-w-3",
        "agency": "Federal Bureau of Investigation",
        "signer": signer("agent"),
        "authority": "Fed. R. Crim. P. 41",
        "ground": "criminal_law_enforcement",
        "case_id": "pv-secret-case-2",
        "subjects": [{"id": "pv-secret-a"}],
        "portions": ["scan_event", "delivery_location"],
        "time_range": {"from": "2026-01-01", "to": "2026-03-01"},
        "issued_at": "2026-03-10T16:20:00Z",
        "expires_at": "2026-03-20",
        "court": {"name": "U.S. District Court", "docket": "26-mj-0101", "judge": "pv-secret judge", "order_date": "2026-03-10"}
    })
}

fn written_request() -> Value {
    json!({
        "kind": "written_request",
        "instrument_id": "pv-secret-b7-88",
        "agency": "Drug Enforcement Administration",
        "signer": {
            "name": "pv-secret signer",
            "title": "Section Chief, Investigations",
            "level": "section_chief",
            "delegation_ref": "28 CFR 16.40(c) delegation 2025-4"
        },
        "authority": "5 U.S.C. 552a(b)(7); 21 U.S.C. 841",
        "ground": "criminal_law_enforcement",
        "case_id": "pv-secret-case-3",
        "subjects": [{"id": "pv-secret-a"}],
        "portions": ["account_identity", "address"],
        "time_range": {"from": "2025-06-01", "to": "2026-03-01"},
        "issued_at": "2026-03-10",
        "expires_at": "2026-04-30"
    })
}

fn subpoena() -> Value {
    json!({
        "kind": "subpoena",
        "instrument_id": "pv-secret-gj-9",
        "agency": "Internal Revenue Service, Criminal Investigation",
        "signer": signer("supervisor"),
        "authority": "26 U.S.C. 7602",
        "ground": "criminal_law_enforcement",
        "case_id": "pv-secret-case-4",
        "subjects": [{"id": "pv-secret-a"}],
        "portions": ["payment_card", "money_order"],
        "time_range": {"from": "2025-09-01", "to": "2026-02-28"},
        "issued_at": "2026-03-10"
    })
}

fn mail_cover() -> Value {
    json!({
        "kind": "mail_cover",
        "instrument_id": "pv-secret-mc-5",
        "agency": "Federal Bureau of Investigation",
        "signer": signer("supervisor"),
        "authority": "39 CFR 233.3(e)(2)",
        "ground": "crime",
        "case_id": "pv-secret-case-5",
        "subjects": [{"id": "pv-secret-a"}],
        "portions": ["scan_event", "mail_image", "mail_cover_record"],
        "issued_at": "2026-03-10",
        "requester_type": "law_enforcement_agency",
        "statute_cited": "18 U.S.C. 1341",
        "penalty_max_years": 20,
        "reasonable_grounds": "pv-secret informant report",
        "start": "2026-03-12",
        "days": 30,
        "extension_no": 0,
        "indicted_or_information_filed": false,
        "known_attorney": {"name": "pv-secret attorney", "address": "pv-secret street"}
    })
}

/// `base` with top-level keys set (`Value::Null` removes the key).
fn with(mut base: Value, edits: &[(&str, Value)]) -> Value {
    let map = base.as_object_mut().unwrap();
    for (k, v) in edits {
        if v.is_null() {
            map.remove(*k);
        } else {
            map.insert((*k).to_string(), v.clone());
        }
    }
    base
}

fn subjects(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("pv-secret-{i}")}))
            .collect(),
    )
}

/// Parses and checks: the refusals of whichever step refused, or the verdict.
fn run(v: &Value, ctx: &CheckContext) -> (Option<Verdict>, Vec<Refusal>) {
    match parse_instrument(&v.to_string()) {
        Err(refusals) => (None, refusals),
        Ok(inst) => {
            let verdict = check_instrument(rules(), &inst, ctx);
            let refusals = verdict.refusals.clone();
            (Some(verdict), refusals)
        }
    }
}

fn assert_clean_messages(name: &str, texts: &[String]) {
    for m in texts {
        assert!(!m.contains(SECRET), "{name}: message echoes a value: {m}");
        assert!(
            !m.chars().any(|c| c.is_ascii_uppercase()),
            "{name}: message not lowercase: {m}"
        );
        assert!(!m.ends_with('.'), "{name}: message ends with a period: {m}");
        assert!(!m.is_empty(), "{name}: empty message");
    }
}

#[test]
fn valid_instruments_of_every_kind_wait_for_approval() {
    for (kind, v) in [
        ("court_order", court_order()),
        ("warrant", warrant()),
        ("written_request", written_request()),
        ("subpoena", subpoena()),
        ("mail_cover", mail_cover()),
    ] {
        let inst = parse_instrument(&v.to_string()).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(inst.kind.as_str(), kind);
        let verdict = check_instrument(rules(), &inst, &ctx());
        assert_eq!(
            verdict.outcome,
            Outcome::PendingApproval,
            "{kind}: {verdict:?}"
        );
        assert!(
            verdict.refusals.is_empty() && verdict.alerts.is_empty(),
            "{kind}"
        );
        // Deterministic, and the JSON form round-trips.
        assert_eq!(verdict, check_instrument(rules(), &inst, &ctx()));
        let again = parse_instrument(&serde_json::to_string(&inst).unwrap()).unwrap();
        assert_eq!(again, inst, "{kind}");
        assert!(
            rules()
                .valid_until_ms(&inst)
                .is_some_and(|end| end > ms(NOW))
        );
    }
}

/// The examples of docs/instruments.md, one per kind, pass at NOW.
#[test]
fn the_documented_examples_pass() {
    let doc = include_str!("../../../../docs/instruments.md");
    let mut kinds = Vec::new();
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("```").next().unwrap();
        let inst = parse_instrument(json).unwrap_or_else(|e| panic!("{e:?}\n{json}"));
        let v = check_instrument(rules(), &inst, &ctx());
        assert_eq!(v.outcome, Outcome::PendingApproval, "{v:?}\n{json}");
        assert!(v.alerts.is_empty(), "{v:?}");
        kinds.push(inst.kind);
    }
    assert_eq!(kinds, InstrumentKind::ALL);
}

/// More valid instruments at the edges of the rules.
#[test]
fn edge_cases_that_pass() {
    let cases: Vec<(&str, Value, CheckContext, &[&str])> = vec![
        (
            "court order that delays notice for 90 days",
            with(
                court_order(),
                &[("delay_notice_until", json!("2026-06-08"))],
            ),
            ctx(),
            &[],
        ),
        (
            "court order with five subjects",
            with(court_order(), &[("subjects", subjects(5))]),
            ctx(),
            &[],
        ),
        (
            "fugitive cover for 60 days after indictment",
            with(
                mail_cover(),
                &[
                    ("ground", json!("fugitive")),
                    ("days", json!(60)),
                    ("indicted_or_information_filed", json!(true)),
                ],
            ),
            ctx(),
            &[],
        ),
        (
            "national-security cover for 90 days signed by the agency head",
            with(
                mail_cover(),
                &[
                    ("ground", json!("national_security")),
                    ("signer", signer("agency_head")),
                    ("statute_cited", Value::Null),
                    ("days", json!(90)),
                ],
            ),
            ctx(),
            &[],
        ),
        (
            "postal-statute cover asked by a postal inspector",
            with(
                mail_cover(),
                &[
                    ("ground", json!("postal_statute")),
                    ("requester_type", json!("postal_inspector")),
                    ("penalty_max_years", Value::Null),
                ],
            ),
            ctx(),
            &[],
        ),
        (
            "oral cover confirmed in writing on the third calendar day",
            with(
                mail_cover(),
                &[
                    ("oral", json!(true)),
                    ("issued_at", json!("2026-03-10T21:00:00Z")),
                    ("written_confirmed_at", json!("2026-03-13T23:59:59Z")),
                ],
            ),
            ctx(),
            &[],
        ),
        (
            "oral emergency cover not yet confirmed, within the window",
            with(
                mail_cover(),
                &[
                    ("oral", json!(true)),
                    ("emergency", json!(true)),
                    ("issued_at", json!("2026-03-14T08:00:00Z")),
                    ("start", json!("2026-03-14")),
                ],
            ),
            ctx(),
            &["oral_pending_confirmation"],
        ),
        (
            "third extension reaching exactly 120 days",
            with(
                mail_cover(),
                &[
                    ("extension_no", json!(3)),
                    ("benefit_statement", json!("pv-secret benefits so far")),
                    ("cumulative_days", json!(120)),
                ],
            ),
            ctx(),
            &[],
        ),
        (
            "fifth extension beyond 120 days with the chief inspector's approval",
            with(
                mail_cover(),
                &[
                    ("extension_no", json!(4)),
                    ("benefit_statement", json!("pv-secret benefits so far")),
                    ("cumulative_days", json!(150)),
                    ("cpi_approval_ref", json!("pv-secret cpi memo")),
                ],
            ),
            ctx(),
            &["cumulative_cap_lifted"],
        ),
        (
            // The office sees it (review::check_report); the verdict never.
            "protective order under a court order",
            court_order(),
            CheckContext {
                subject_has_protective_order: true,
                ..ctx()
            },
            &[],
        ),
        (
            "quota one below every limit",
            written_request(),
            CheckContext {
                agency_people_24h: 24,
                agency_people_30d: 299,
                case_people_30d: 9,
                ..ctx()
            },
            &[],
        ),
        (
            "nulls count as absent",
            {
                let mut v = written_request();
                v["court"] = Value::Null;
                v["expires_at"] = Value::Null;
                v["signer"]["delegation_ref"] = Value::Null;
                v["signer"]["level"] = json!("agency_head");
                v
            },
            ctx(),
            &[],
        ),
    ];
    for (name, v, ctx, alerts) in cases {
        let (verdict, refusals) = run(&v, &ctx);
        assert!(refusals.is_empty(), "{name}: {refusals:?}");
        let verdict = verdict.unwrap();
        assert_eq!(verdict.outcome, Outcome::PendingApproval, "{name}");
        let names: Vec<&str> = verdict
            .alerts
            .iter()
            .map(|a| a.split(':').next().unwrap())
            .collect();
        assert_eq!(names, alerts, "{name}");
        assert_clean_messages(name, &verdict.alerts);
    }
}

// ---------------------------------------------------------------------------
// The red team
// ---------------------------------------------------------------------------

struct Attempt {
    name: &'static str,
    json: Value,
    ctx: CheckContext,
    codes: &'static [RefusalCode],
}

fn attempt(name: &'static str, json: Value, codes: &'static [RefusalCode]) -> Attempt {
    Attempt {
        name,
        json,
        ctx: ctx(),
        codes,
    }
}

fn attempt_in(
    name: &'static str,
    json: Value,
    ctx: CheckContext,
    codes: &'static [RefusalCode],
) -> Attempt {
    Attempt {
        name,
        json,
        ctx,
        codes,
    }
}

/// An instrument the ledger holds opens as it did when it was accepted,
/// whatever rules submissions gained since: a line break in its free text
/// is refused at submission now, never when it is opened again.
#[test]
fn a_stored_instrument_opens_under_rules_it_predates() {
    let stored = with(
        court_order(),
        &[("agency", json!("U.S. Attorney\nN.D. Ill."))],
    );
    assert!(parse_instrument(&stored.to_string()).is_err());
    let inst = parse_stored_instrument(&stored.to_string()).unwrap();
    assert_eq!(inst.agency, "U.S. Attorney\nN.D. Ill.");
}

fn red_team() -> Vec<Attempt> {
    let wr = written_request;
    let mc = mail_cover;
    vec![
        // --- Text that reads otherwise than it is ---
        attempt(
            "a right-to-left override in the instrument id",
            with(
                wr(),
                &[("instrument_id", json!("26-MJ-\u{202e}7140\u{202c}"))],
            ),
            &[R::Malformed],
        ),
        attempt(
            "a line break and a zero-width space in the agency",
            with(
                wr(),
                &[(
                    "agency",
                    json!("U.S. District Court\nAPPROVED BY CHIEF JUDGE \u{200b}"),
                )],
            ),
            &[R::Malformed],
        ),
        attempt(
            "no-break spaces padding the signer's title",
            with(
                wr(),
                &[(
                    "signer",
                    json!({"name": "A. Director", "title": "Field Office Director\u{a0}\u{a0}", "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"}),
                )],
            ),
            &[R::Malformed],
        ),
        // --- Nobody, everybody, or somebody by attribute ---
        attempt(
            "empty subject list",
            with(wr(), &[("subjects", json!([]))]),
            &[R::NoSubject],
        ),
        attempt(
            "no subjects key",
            with(wr(), &[("subjects", Value::Null)]),
            &[R::NoSubject],
        ),
        attempt(
            "a zip selector instead of subjects",
            with(
                wr(),
                &[
                    ("subjects", Value::Null),
                    ("selector", json!({"zip": "60601"})),
                ],
            ),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "a query beside a named subject",
            with(wr(), &[("query", json!("zip = 60601 and pv-secret"))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "all: true",
            with(wr(), &[("all", json!(true))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "a filter on an attribute",
            with(wr(), &[("filter", json!({"nationality": "pv-secret"}))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "attributes to match",
            with(wr(), &[("attributes", json!({"language": "pv-secret"}))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "all names at the subject address",
            with(mc(), &[("all_names_at_address", json!(true))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "a selector hidden in the signer block",
            with(
                wr(),
                &[(
                    "signer",
                    json!({"name": "pv-secret", "title": "chief", "level": "agency_head", "subject_filter": "pv-secret"}),
                )],
            ),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id *",
            with(wr(), &[("subjects", json!([{"id": "*"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id with a sql wildcard",
            with(wr(), &[("subjects", json!([{"id": "cust-%"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id with a single-character wildcard",
            with(wr(), &[("subjects", json!([{"id": "pv-secret-?"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id that is a regular expression",
            with(wr(), &[("subjects", json!([{"id": "^cust-[0-9]+$"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id that is a range",
            with(
                wr(),
                &[("subjects", json!([{"id": "cust-1000..cust-2000"}]))],
            ),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id ALL",
            with(wr(), &[("subjects", json!([{"id": "ALL"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject id with surrounding spaces",
            with(wr(), &[("subjects", json!([{"id": " pv-secret-a "}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "empty subject id",
            with(wr(), &[("subjects", json!([{"id": ""}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "numeric subject id",
            with(wr(), &[("subjects", json!([{"id": 60601}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject with an extra attribute",
            with(
                wr(),
                &[(
                    "subjects",
                    json!([{"id": "pv-secret-x", "nationality": "pv-secret-n"}]),
                )],
            ),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subject named by zip",
            with(wr(), &[("subjects", json!([{"zip": "60601"}]))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subjects as a string",
            with(wr(), &[("subjects", json!("all"))]),
            &[R::SelectorNotIdentifier],
        ),
        attempt(
            "subjects as an attribute object",
            with(wr(), &[("subjects", json!({"zip": "60601"}))]),
            &[R::SelectorNotIdentifier],
        ),
        // --- More people than the kind allows ---
        attempt(
            "two subjects on a warrant",
            with(warrant(), &[("subjects", subjects(2))]),
            &[R::TooManySubjects],
        ),
        attempt(
            "six subjects on a court order",
            with(court_order(), &[("subjects", subjects(6))]),
            &[R::TooManySubjects],
        ),
        attempt(
            "two subjects on a (b)(7) request",
            with(wr(), &[("subjects", subjects(2))]),
            &[R::TooManySubjects],
        ),
        attempt(
            "two subjects on a mail cover",
            with(mc(), &[("subjects", subjects(2))]),
            &[R::TooManySubjects],
        ),
        attempt(
            "the same subject twice",
            with(
                court_order(),
                &[(
                    "subjects",
                    json!([{"id": "pv-secret-a"}, {"id": "pv-secret-a"}]),
                )],
            ),
            &[R::Malformed],
        ),
        // --- More data than the kind and ground allow ---
        attempt(
            "(b)(7) request for change-of-address data",
            with(
                wr(),
                &[("portions", json!(["address", "change_of_address"]))],
            ),
            &[R::PortionNeedsCourtOrder],
        ),
        attempt(
            "subpoena for change-of-address data",
            with(subpoena(), &[("portions", json!(["change_of_address"]))]),
            &[R::PortionNeedsCourtOrder],
        ),
        attempt(
            "(b)(7) request for mail-cover records",
            with(wr(), &[("portions", json!(["mail_cover_record"]))]),
            &[R::PortionNotAllowed],
        ),
        attempt(
            "(b)(7) request for a category that does not exist",
            with(wr(), &[("portions", json!(["everything"]))]),
            &[R::PortionNotAllowed],
        ),
        attempt(
            "(b)(7) request for the disclosure ledger",
            with(wr(), &[("portions", json!(["disclosure_accounting"]))]),
            &[R::PortionNotAllowed],
        ),
        attempt(
            "civil enforcement request for payment data",
            with(
                wr(),
                &[
                    ("ground", json!("civil_law_enforcement")),
                    ("portions", json!(["address", "payment_card"])),
                ],
            ),
            &[R::PortionNotAllowed],
        ),
        attempt(
            "process-server subpoena for online activity",
            with(
                subpoena(),
                &[
                    ("ground", json!("litigation")),
                    ("portions", json!(["online_activity"])),
                ],
            ),
            &[R::PortionNotAllowed],
        ),
        attempt(
            "no portion named",
            with(wr(), &[("portions", json!([]))]),
            &[R::NoPortion],
        ),
        attempt(
            "mail cover asking for account identity",
            with(
                mc(),
                &[("portions", json!(["scan_event", "account_identity"]))],
            ),
            &[R::PortionNotExterior],
        ),
        attempt(
            "mail cover asking for change-of-address data",
            with(mc(), &[("portions", json!(["change_of_address"]))]),
            &[R::PortionNotExterior],
        ),
        // --- Grounds and purposes ---
        attempt(
            "mail cover on civil immigration grounds",
            with(mc(), &[("ground", json!("civil_immigration_enforcement"))]),
            &[R::GroundNotAllowed],
        ),
        attempt(
            "mail cover on a civil law-enforcement ground",
            with(mc(), &[("ground", json!("civil_law_enforcement"))]),
            &[R::GroundNotAllowed],
        ),
        attempt(
            "mail cover for immigration enforcement",
            with(mc(), &[("ground", json!("immigration_enforcement"))]),
            &[R::ProhibitedPurpose],
        ),
        attempt(
            "(b)(7) request for immigration enforcement",
            with(wr(), &[("ground", json!("immigration_enforcement"))]),
            &[R::ProhibitedPurpose],
        ),
        attempt(
            "court order for bulk analytics",
            with(court_order(), &[("ground", json!("bulk_analytics"))]),
            &[R::ProhibitedPurpose],
        ),
        attempt(
            "prohibited purpose spelled in words",
            with(subpoena(), &[("ground", json!("Immigration Enforcement"))]),
            &[R::ProhibitedPurpose],
        ),
        attempt(
            "no ground",
            with(wr(), &[("ground", Value::Null)]),
            &[R::GroundNotAllowed],
        ),
        attempt(
            "civil ground on a warrant",
            with(warrant(), &[("ground", json!("civil_law_enforcement"))]),
            &[R::GroundNotAllowed],
        ),
        attempt(
            "mail cover for a crime punishable by one year",
            with(mc(), &[("penalty_max_years", json!(1))]),
            &[R::PenaltyTooLow],
        ),
        attempt(
            "mail cover for a crime with no penalty given",
            with(mc(), &[("penalty_max_years", Value::Null)]),
            &[R::PenaltyTooLow],
        ),
        attempt(
            "postal-statute cover asked by an outside agency",
            with(mc(), &[("ground", json!("postal_statute"))]),
            &[R::GroundNotAllowed],
        ),
        // --- Signers and authority ---
        attempt(
            "(b)(7) request signed below section chief",
            with(
                wr(),
                &[(
                    "signer",
                    json!({"name": "pv-secret", "title": "Group Supervisor", "level": "supervisor", "delegation_ref": "pv-secret"}),
                )],
            ),
            &[R::SignerLevelTooLow],
        ),
        attempt(
            "(b)(7) request by a section chief without a delegation",
            with(
                wr(),
                &[(
                    "signer",
                    json!({"name": "pv-secret", "title": "Section Chief", "level": "section_chief"}),
                )],
            ),
            &[R::MissingDelegation],
        ),
        attempt(
            "signer level not given",
            with(
                subpoena(),
                &[("signer", json!({"name": "pv-secret", "title": "Agent"}))],
            ),
            &[R::SignerLevelTooLow],
        ),
        attempt(
            "national-security cover signed by a supervisor",
            with(
                mc(),
                &[
                    ("ground", json!("national_security")),
                    ("statute_cited", Value::Null),
                ],
            ),
            &[R::SignerLevelTooLow],
        ),
        attempt(
            "missing authority",
            with(wr(), &[("authority", Value::Null)]),
            &[R::MissingAuthority],
        ),
        attempt(
            "blank authority",
            with(subpoena(), &[("authority", json!("  "))]),
            &[R::MissingAuthority],
        ),
        attempt(
            "a written request that delays notice to the person",
            with(wr(), &[("delay_notice_until", json!("2026-06-01"))]),
            &[R::DelayNeedsCourtOrder],
        ),
        attempt(
            "a subpoena that delays notice to the person",
            with(subpoena(), &[("delay_notice_until", json!("2026-06-01"))]),
            &[R::DelayNeedsCourtOrder],
        ),
        attempt(
            "a court order delaying notice for two years",
            with(
                court_order(),
                &[("delay_notice_until", json!("2028-03-10"))],
            ),
            &[R::DurationTooLong],
        ),
        attempt(
            "a court order delaying notice to before it was issued",
            with(
                court_order(),
                &[("delay_notice_until", json!("2026-01-01"))],
            ),
            &[R::TimeRangeInvalid],
        ),
        attempt(
            "a mail cover with a delay of notice",
            with(mc(), &[("delay_notice_until", json!("2026-06-01"))]),
            &[R::UnknownField],
        ),
        attempt(
            "court order without a court",
            with(court_order(), &[("court", Value::Null)]),
            &[R::MissingCourt],
        ),
        attempt(
            "warrant without a judge",
            with(
                warrant(),
                &[(
                    "court",
                    json!({"name": "U.S. District Court", "docket": "26-mj-0101", "order_date": "2026-03-10"}),
                )],
            ),
            &[R::MissingCourt],
        ),
        attempt(
            "no case id",
            with(wr(), &[("case_id", Value::Null)]),
            &[R::Incomplete],
        ),
        // --- Time and reuse ---
        attempt(
            "expired (b)(7) request",
            with(wr(), &[("expires_at", json!("2026-03-14"))]),
            &[R::Expired],
        ),
        attempt(
            "warrant past its 14 days",
            with(
                warrant(),
                &[
                    ("issued_at", json!("2026-02-20")),
                    ("expires_at", Value::Null),
                    (
                        "court",
                        json!({"name": "court", "docket": "d", "judge": "pv-secret", "order_date": "2026-02-20"}),
                    ),
                ],
            ),
            &[R::Expired],
        ),
        attempt(
            "(b)(7) request valid for 200 days",
            with(wr(), &[("expires_at", json!("2026-09-26"))]),
            &[R::DurationTooLong],
        ),
        attempt_in(
            "reused instrument",
            wr(),
            CheckContext {
                used_before: true,
                ..ctx()
            },
            &[R::AlreadyUsed],
        ),
        attempt(
            "issued in the future",
            with(subpoena(), &[("issued_at", json!("2026-03-16"))]),
            &[R::NotYetValid],
        ),
        attempt(
            "time range from after to",
            with(
                wr(),
                &[(
                    "time_range",
                    json!({"from": "2026-03-01", "to": "2025-06-01"}),
                )],
            ),
            &[R::TimeRangeInvalid],
        ),
        attempt(
            "time range of two years on a (b)(7) request",
            with(
                wr(),
                &[(
                    "time_range",
                    json!({"from": "2024-01-01", "to": "2026-01-01"}),
                )],
            ),
            &[R::TimeRangeInvalid],
        ),
        attempt(
            "time range without an end",
            with(wr(), &[("time_range", json!({"from": "2025-01-01"}))]),
            &[R::TimeRangeInvalid],
        ),
        attempt(
            "no time range",
            with(subpoena(), &[("time_range", Value::Null)]),
            &[R::TimeRangeInvalid],
        ),
        // --- Mail-cover limits ---
        attempt(
            "oral cover unconfirmed after 3 calendar days",
            with(
                mc(),
                &[
                    ("oral", json!(true)),
                    ("emergency", json!(true)),
                    ("issued_at", json!("2026-03-10T15:00:00Z")),
                ],
            ),
            &[R::OralNotConfirmed],
        ),
        attempt(
            "oral cover confirmed on the fourth day",
            with(
                mc(),
                &[
                    ("oral", json!(true)),
                    ("issued_at", json!("2026-03-10T15:00:00Z")),
                    ("written_confirmed_at", json!("2026-03-14T09:00:00Z")),
                ],
            ),
            &[R::OralNotConfirmed],
        ),
        attempt(
            "oral cover released unconfirmed without an emergency",
            with(
                mc(),
                &[
                    ("oral", json!(true)),
                    ("issued_at", json!("2026-03-14T08:00:00Z")),
                    ("start", json!("2026-03-14")),
                ],
            ),
            &[R::OralNotConfirmed],
        ),
        attempt(
            "45-day mail cover",
            with(mc(), &[("days", json!(45))]),
            &[R::DurationTooLong],
        ),
        attempt(
            "90-day fugitive cover",
            with(mc(), &[("ground", json!("fugitive")), ("days", json!(90))]),
            &[R::DurationTooLong],
        ),
        attempt(
            "extension without a benefit statement",
            with(
                mc(),
                &[("extension_no", json!(1)), ("cumulative_days", json!(60))],
            ),
            &[R::ExtensionWithoutBenefitStatement],
        ),
        attempt(
            "cumulative 150 days",
            with(
                mc(),
                &[
                    ("extension_no", json!(4)),
                    ("benefit_statement", json!("pv-secret")),
                    ("cumulative_days", json!(150)),
                ],
            ),
            &[R::CumulativeCap],
        ),
        attempt(
            "cover after indictment",
            with(mc(), &[("indicted_or_information_filed", json!(true))]),
            &[R::EndedByIndictment],
        ),
        attempt(
            "cover whose period has ended",
            with(
                mc(),
                &[
                    ("issued_at", json!("2026-01-10")),
                    ("start", json!("2026-01-12")),
                ],
            ),
            &[R::Expired],
        ),
        attempt(
            "mail cover with a time range of past records",
            with(
                mc(),
                &[(
                    "time_range",
                    json!({"from": "2020-01-01", "to": "2026-03-01"}),
                )],
            ),
            &[R::UnknownField],
        ),
        attempt(
            "an instrument id of punctuation alone, naming no document",
            with(wr(), &[("instrument_id", json!("--.--"))]),
            &[R::Incomplete],
        ),
        attempt_in(
            "a cover claiming to be a fourth extension when the ledger shows none",
            with(
                mc(),
                &[
                    ("extension_no", json!(4)),
                    ("benefit_statement", json!("pv-secret benefits")),
                    ("cumulative_days", json!(120)),
                ],
            ),
            CheckContext {
                cover_chain: Some(CoverChain {
                    prior_orders: 0,
                    first_start_ms: ms("2026-03-12"),
                }),
                ..ctx()
            },
            &[R::ExtensionMismatch],
        ),
        // --- Format ---
        attempt(
            "unknown kind",
            with(wr(), &[("kind", json!("dragnet"))]),
            &[R::Malformed],
        ),
        attempt(
            "unknown field",
            with(wr(), &[("subject_name", json!("pv-secret"))]),
            &[R::UnknownField],
        ),
        attempt(
            "a mail-cover field on a (b)(7) request",
            with(wr(), &[("days", json!(365))]),
            &[R::UnknownField],
        ),
        attempt(
            "wrong type",
            with(wr(), &[("portions", json!("address"))]),
            &[R::Malformed],
        ),
        // --- Several at once: all are reported ---
        attempt(
            "two subjects, change of address, immigration enforcement",
            with(
                wr(),
                &[
                    ("subjects", subjects(2)),
                    ("portions", json!(["change_of_address"])),
                    ("ground", json!("immigration_enforcement")),
                ],
            ),
            &[
                R::PortionNeedsCourtOrder,
                R::ProhibitedPurpose,
                R::TooManySubjects,
            ],
        ),
        attempt(
            "selector and wildcard and unknown field together",
            with(
                wr(),
                &[
                    ("subjects", json!([{"id": "*"}])),
                    ("where", json!({"zip": "60601"})),
                    ("nickname", json!("pv-secret")),
                ],
            ),
            &[R::SelectorNotIdentifier, R::UnknownField],
        ),
    ]
}

#[test]
fn red_team_attempts_are_refused_with_exact_codes() {
    let attempts = red_team();
    assert!(attempts.len() >= 20, "{}", attempts.len());
    let mut names = BTreeSet::new();
    let mut codes_seen = BTreeSet::new();
    for a in &attempts {
        assert!(names.insert(a.name), "duplicate attempt {}", a.name);
        let (verdict, refusals) = run(&a.json, &a.ctx);
        let mut codes: Vec<RefusalCode> = refusals.iter().map(|r| r.code).collect();
        codes.dedup();
        assert_eq!(codes, a.codes, "{}: {refusals:#?}", a.name);
        if let Some(v) = &verdict {
            assert_eq!(v.outcome, Outcome::Refused, "{}", a.name);
            assert_clean_messages(a.name, &v.alerts);
        }
        let messages: Vec<String> = refusals.iter().map(|r| r.message.clone()).collect();
        assert_clean_messages(a.name, &messages);
        // Refusals come sorted by code.
        assert!(refusals.windows(2).all(|w| w[0] <= w[1]), "{}", a.name);
        codes_seen.extend(codes);
    }
    // The red team exercises every instrument refusal code (the approval
    // codes are in the next test).
    for code in RefusalCode::ALL {
        // R9 is the office's (review::protective_order_refusal), never the
        // verdict's: the requester must not learn of a protective order.
        if !matches!(
            code,
            R::SelfApproval
                | R::ApproverRole
                | R::KindNotAllowed
                | R::ProtectiveOrderNeedsCourtOrder
        ) {
            assert!(
                codes_seen.contains(&code),
                "no red-team attempt yields {code}"
            );
        }
    }
}

#[test]
fn approvals_need_another_person_in_the_approver_role() {
    let r = rules();
    let cases: [(&str, &str, &str, Option<RefusalCode>); 8] = [
        ("agent-7", "officer-2", "privacy_officer", None),
        (
            "agent-7",
            "agent-7",
            "privacy_officer",
            Some(R::SelfApproval),
        ),
        (
            "agent-7",
            " Agent-7 ",
            "privacy_officer",
            Some(R::SelfApproval),
        ),
        ("agent-7", "agent-8", "agency", Some(R::ApproverRole)),
        ("agent-7", "clerk-1", "collector", Some(R::ApproverRole)),
        ("agent-7", "auditor-1", "auditor", Some(R::ApproverRole)),
        ("agent-7", "officer-2", "", Some(R::ApproverRole)),
        ("agent-7", "", "privacy_officer", Some(R::Malformed)),
    ];
    for (requester, approver, role, want) in cases {
        let got = check_approval(r, requester, approver, role);
        assert_eq!(
            got.as_ref().err().map(|e| e.code),
            want,
            "{approver} as {role}"
        );
        if let Err(e) = got {
            assert!(!e.message.contains("agent-7"), "{e}");
            assert_clean_messages("approval", &[e.message]);
        }
    }
}

#[test]
fn crossing_a_quota_holds_for_review_with_an_alert() {
    for (alert, c) in [
        (
            "quota_agency_24h",
            CheckContext {
                agency_people_24h: 25,
                ..ctx()
            },
        ),
        (
            "quota_agency_30d",
            CheckContext {
                agency_people_30d: 300,
                ..ctx()
            },
        ),
        (
            "quota_case_30d",
            CheckContext {
                case_people_30d: 10,
                ..ctx()
            },
        ),
    ] {
        let inst = parse_instrument(&written_request().to_string()).unwrap();
        let v = check_instrument(rules(), &inst, &c);
        assert_eq!(v.outcome, Outcome::HeldForReview, "{alert}");
        assert!(v.refusals.is_empty(), "{alert}: not refused");
        assert_eq!(v.alerts.len(), 1);
        assert!(
            v.alerts[0].starts_with(&format!("{alert}: ")),
            "{:?}",
            v.alerts
        );
        assert_clean_messages(alert, &v.alerts);
        // Something else wrong too: refused, and the alert is still raised.
        let bad =
            parse_instrument(&with(written_request(), &[("subjects", subjects(3))]).to_string())
                .unwrap();
        let v = check_instrument(rules(), &bad, &c);
        assert_eq!(v.outcome, Outcome::Refused);
        assert_eq!(v.codes(), [R::TooManySubjects]);
        assert_eq!(v.alerts.len(), 1);
    }
    let inst = parse_instrument(&subpoena().to_string()).unwrap();
    let all = CheckContext {
        agency_people_24h: 1000,
        agency_people_30d: 1000,
        case_people_30d: 1000,
        ..ctx()
    };
    let v = check_instrument(rules(), &inst, &all);
    assert_eq!(v.outcome, Outcome::HeldForReview);
    assert_eq!(v.alerts.len(), 3);
}

/// An instrument built in code, not parsed, is held to the same rules.
#[test]
fn check_does_not_trust_the_parser() {
    let mut inst = parse_instrument(&court_order().to_string()).unwrap();
    inst.subjects.push(SubjectRef {
        id: "pv-secret-*".into(),
    });
    inst.portions.push("pv-secret portion".into());
    let v = check_instrument(rules(), &inst, &ctx());
    assert_eq!(v.codes(), [R::PortionNotAllowed, R::SelectorNotIdentifier]);
    assert_clean_messages(
        "built",
        &v.refusals
            .iter()
            .map(|r| r.message.clone())
            .collect::<Vec<_>>(),
    );
}

#[test]
fn a_pack_without_disclosure_rules_discloses_nothing() {
    let mut src = PackSources::postal();
    src.disclosure = None;
    let bare = Pack::load(&src).unwrap();
    assert_ne!(bare.version(), Pack::postal().unwrap().version());
    for v in [
        court_order(),
        warrant(),
        written_request(),
        subpoena(),
        mail_cover(),
    ] {
        let inst = parse_instrument(&v.to_string()).unwrap();
        let verdict = check_instrument(bare.disclosure(), &inst, &ctx());
        assert_eq!(verdict.outcome, Outcome::Refused);
        assert_eq!(verdict.codes(), [R::KindNotAllowed]);
    }
    let e = check_approval(bare.disclosure(), "a", "b", "privacy_officer").unwrap_err();
    assert_eq!(e.code, R::ApproverRole);
}

#[test]
fn refusal_codes_are_stable_snake_case_names() {
    let names: Vec<&str> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "declared in alphabetical order, unique");
    for c in RefusalCode::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        assert_eq!(
            serde_json::from_value::<RefusalCode>(json!(c.as_str())).unwrap(),
            c
        );
        assert!(c.rule().starts_with('R'));
    }
    let r = Refusal::new(R::NoSubject, "no subject named");
    assert_eq!(r.to_string(), "[no_subject] no subject named");
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"code": "no_subject", "message": "no subject named"})
    );
    assert_eq!(
        serde_json::to_value(Outcome::HeldForReview).unwrap(),
        json!("held_for_review")
    );
}

#[test]
fn parse_refuses_what_is_not_an_instrument() {
    for (text, code) in [
        ("", R::Malformed),
        ("[]", R::Malformed),
        ("\"court_order\"", R::Malformed),
        ("{\"kind\": \"warrant\"", R::Malformed),
        ("{}", R::Malformed),
    ] {
        let e = parse_instrument(text).unwrap_err();
        assert_eq!(
            e.iter().map(|r| r.code).collect::<Vec<_>>(),
            [code],
            "{text}"
        );
    }
    // A serde message would echo the value; ours names the field only.
    let e = parse_instrument(&with(mail_cover(), &[("days", json!("pv-secret"))]).to_string())
        .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].message, "field `days` must be a whole number");
    let e = parse_instrument(&with(mail_cover(), &[("start", json!("pv-secret"))]).to_string())
        .unwrap_err();
    assert!(!e[0].message.contains(SECRET));
    // An unknown key that does not look like an identifier is not echoed.
    let e = parse_instrument(
        &with(written_request(), &[("pv-secret@example.com", json!(1))]).to_string(),
    )
    .unwrap_err();
    assert_eq!(e[0].code, R::UnknownField);
    assert!(!e[0].message.contains(SECRET), "{}", e[0].message);
}

// ---------------------------------------------------------------------------
// Dates and mail-cover arithmetic
// ---------------------------------------------------------------------------

#[test]
fn iso_dates_parse_and_format() {
    assert_eq!(parse_iso("1970-01-01"), Some(0));
    assert_eq!(parse_iso("1970-01-01T00:00:01Z"), Some(1000));
    assert_eq!(parse_iso("1970-01-01T00:00:00.5Z"), Some(500));
    assert_eq!(parse_iso("1970-01-01T00:00:00.123456Z"), Some(123));
    assert_eq!(parse_iso("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(parse_iso("1969-12-31T19:00:00-05:00"), Some(0));
    assert_eq!(parse_iso("1969-12-31"), Some(-DAY_MS));
    assert_eq!(parse_iso("2024-02-29"), Some(ms("2024-02-28") + DAY_MS));
    assert_eq!(ms("2026-03-01") - ms("2026-02-28"), DAY_MS);
    for bad in [
        "2025-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-04-31",
        "2026-1-1",
        "2026-01-01T10:00:00",
        "2026-01-01T24:00:00Z",
        "2026-01-01T10:00Z",
        "2026-01-01 10:00:00Z",
        "2026-01-01T10:00:00.Z",
        "2026-01-01T10:00:00+5:00",
        "2026-01-01T10:00:00Zjunk",
        "20260101",
        "",
        "pv-secret",
    ] {
        assert_eq!(parse_iso(bad), None, "{bad}");
    }
    for s in [
        "2026-03-15",
        "2026-03-15T12:00:00Z",
        "1999-12-31T23:59:59.999Z",
        "0001-01-01",
    ] {
        assert_eq!(format_iso(ms(s)), s);
    }
    // Day numbers and dates agree across four centuries either side of 1970.
    for day in (-146_097 * 2..146_097 * 2).step_by(7) {
        let (y, m, d) = civil_from_days(day);
        assert_eq!(days_from_civil(y, m, d), Some(day));
    }
}

#[test]
fn mail_cover_orders_run_30_days_except_for_fugitives_and_national_security() {
    let mc = rules().mail_cover().unwrap();
    let start = ms("2026-01-15");
    assert_eq!(mc.max_days_for("crime"), 30);
    assert_eq!(mc.max_days_for("forfeiture"), 30);
    assert_eq!(mc.max_days_for("fugitive"), 60);
    assert_eq!(mc.max_days_for("national_security"), 120);
    assert_eq!(mc.order_end_ms(start, 30, "crime"), ms("2026-02-14"));
    // Asking for more never yields more: the order is capped.
    assert_eq!(mc.order_end_ms(start, 45, "crime"), ms("2026-02-14"));
    assert_eq!(mc.order_end_ms(start, 60, "fugitive"), ms("2026-03-16"));
    assert_eq!(mc.order_end_ms(start, 90, "fugitive"), ms("2026-03-16"));
    assert_eq!(
        mc.order_end_ms(start, 90, "national_security"),
        ms("2026-04-15")
    );
    // Leap and common Februaries.
    assert_eq!(
        mail_cover_order_end_ms(ms("2024-02-01"), 30, 30),
        ms("2024-03-02")
    );
    assert_eq!(
        mail_cover_order_end_ms(ms("2025-02-01"), 30, 30),
        ms("2025-03-03")
    );
    assert_eq!(
        mail_cover_order_end_ms(ms("2025-12-15T09:30:00Z"), 30, 30),
        ms("2026-01-14T09:30:00Z")
    );
}

#[test]
fn oral_requests_are_confirmed_within_three_calendar_days() {
    let mc = rules().mail_cover().unwrap();
    assert_eq!(mc.oral_confirmation_days, 3);
    for (oral, last_ok, first_late) in [
        // Across a month end, late in the day.
        (
            "2026-01-30T18:00:00Z",
            "2026-02-02T23:59:59.999Z",
            "2026-02-03",
        ),
        // Across a leap day and a common February end.
        ("2024-02-27T10:00:00Z", "2024-03-01T23:59:59Z", "2024-03-02"),
        ("2025-02-27T00:00:00Z", "2025-03-02T12:00:00Z", "2025-03-03"),
        // Across a year end, a second before midnight.
        ("2025-12-30T23:59:59Z", "2026-01-02T20:00:00Z", "2026-01-03"),
        // A request with a zone is dated in UTC.
        (
            "2026-01-31T22:00:00-05:00",
            "2026-02-04T10:00:00Z",
            "2026-02-05",
        ),
    ] {
        let deadline = mc.confirmation_deadline_ms(ms(oral));
        assert_eq!(deadline, ms(first_late), "{oral}");
        assert!(ms(last_ok) < deadline, "{oral}");
    }
    // Through the check: confirmed on the last allowed day passes, a
    // millisecond later does not.
    let cover = |confirmed: &str| {
        with(
            mail_cover(),
            &[
                ("oral", json!(true)),
                ("issued_at", json!("2026-02-27T16:00:00Z")),
                ("start", json!("2026-02-27")),
                ("written_confirmed_at", json!(confirmed)),
            ],
        )
    };
    let at = CheckContext {
        now_ms: ms("2026-03-05"),
        ..ctx()
    };
    assert!(run(&cover("2026-03-02T23:59:59.999Z"), &at).1.is_empty());
    let (_, r) = run(&cover("2026-03-03T00:00:00Z"), &at);
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [R::OralNotConfirmed]
    );
}

#[test]
fn covers_stop_at_120_cumulative_days_without_the_chief_inspector() {
    let mc = rules().mail_cover().unwrap();
    assert_eq!(mc.cumulative_cap_days, 120);
    // An order and three 30-day extensions reach the cap exactly.
    let mut total = 0;
    for days in [30, 30, 30, 30] {
        total = cumulative_days_after(total, days);
        assert!(mc.within_cumulative_cap(total, false));
    }
    assert_eq!(total, 120);
    let fifth = cumulative_days_after(total, 30);
    assert!(!mc.within_cumulative_cap(fifth, false));
    assert!(mc.within_cumulative_cap(fifth, true));
    assert_eq!(cumulative_days_after(u32::MAX, 30), u32::MAX);
    assert!(mc.ends_on_indictment("crime"));
    assert!(!mc.ends_on_indictment("fugitive"));
}

// ---------------------------------------------------------------------------
// disclosure.toml
// ---------------------------------------------------------------------------

#[test]
fn the_postal_numbers_are_the_contract() {
    let r = rules();
    let k = |kind| r.kind(kind).unwrap();
    assert_eq!(r.kinds().count(), 5);
    assert_eq!(k(InstrumentKind::CourtOrder).max_subjects, 5);
    for kind in [
        InstrumentKind::Warrant,
        InstrumentKind::WrittenRequest,
        InstrumentKind::Subpoena,
        InstrumentKind::MailCover,
    ] {
        assert_eq!(k(kind).max_subjects, 1, "{kind}");
    }
    assert_eq!(
        k(InstrumentKind::WrittenRequest).signer_level,
        SignerLevel::SectionChief
    );
    assert_eq!(
        k(InstrumentKind::MailCover).signer_level_for("national_security"),
        SignerLevel::AgencyHead
    );
    assert_eq!(
        k(InstrumentKind::WrittenRequest).purpose,
        "law_enforcement_disclosure"
    );
    assert_eq!(r.court_order_portions(), ["change_of_address"]);
    assert_eq!(r.approver_roles(), ["privacy_officer"]);
    assert_eq!(r.requester_role(), "agency");
    assert_eq!(
        r.quotas(),
        Quotas {
            agency_per_24h: 25,
            agency_per_30d: 300,
            case_per_30d: 10
        }
    );
    let mc = r.mail_cover().unwrap();
    assert_eq!(
        (
            mc.max_days,
            mc.cumulative_cap_days,
            mc.oral_confirmation_days
        ),
        (30, 120, 3)
    );
    assert_eq!(
        (mc.penalty_ground.as_str(), mc.penalty_must_exceed_years),
        ("crime", 1)
    );
    assert_eq!(
        mc.exterior_portions,
        ["scan_event", "mail_image", "mail_cover_record"]
    );
    let mut grounds = k(InstrumentKind::MailCover).grounds.clone();
    grounds.sort();
    let mut reg = MAIL_COVER_GROUNDS.map(String::from).to_vec();
    reg.sort();
    assert_eq!(grounds, reg);
    for (_, kr) in r.kinds() {
        assert!(
            !kr.grounds
                .iter()
                .any(|g| g.contains("immigration") || g == "bulk_analytics")
        );
    }
}

fn load_err(from: &str, to: &str) -> PackError {
    let src = PackSources::postal();
    let text = src.disclosure.unwrap();
    assert!(text.contains(from), "test edit does not apply: {from}");
    let text = text.replacen(from, to, 1);
    let e = DisclosureRules::parse(&text, &taxonomy()).expect_err("should be refused");
    assert_eq!(e.file, DISCLOSURE_FILE);
    // Where a line is known, it is the line of the edit (or its table).
    if let Some(line) = e.line {
        let at = text.lines().nth(line - 1).unwrap_or("");
        assert!(
            to.lines()
                .any(|l| !l.trim().is_empty() && at.contains(l.trim()))
                || at.starts_with('['),
            "{e}\nline {line}: {at}"
        );
    }
    e
}

#[test]
fn bad_disclosure_files_fail_naming_line_and_check() {
    let cases: [(&str, &str, &str); 22] = [
        (
            "court_order_portions = [\"change_of_address\"]",
            "court_order_portions = [\"change_of_adress\"]",
            "unknown-category",
        ),
        (
            "approver_roles = [\"privacy_officer\"]",
            "approver_roles = [\"privacy_officer\", \"agency\"]",
            "approver-role",
        ),
        (
            "approver_roles = [\"privacy_officer\"]",
            "approver_roles = [\"chief\"]",
            "unknown-role",
        ),
        ("agency_per_24h = 25", "agency_per_24h = 0", "quota"),
        ("agency_per_24h = 25", "agency_per_24h = 301", "quota"),
        ("[quotas]\n", "[quotas]\nper_zip = 1\n", "syntax"),
        (
            "grounds = [\"criminal_law_enforcement\", \"civil_law_enforcement\"]  # [V]",
            "grounds = [\"criminal_law_enforcement\", \"civil_law_enforcement\", \"immigration_enforcement\"]  # [V]",
            "prohibited-purpose",
        ),
        (
            "purpose = \"law_enforcement_disclosure\"",
            "purpose = \"bulk_analytics\"",
            "prohibited-purpose",
        ),
        (
            "grounds = [\"national_security\", \"fugitive\", \"crime\", \"postal_statute\", \"forfeiture\"]",
            "grounds = [\"national_security\", \"fugitive\", \"crime\", \"postal_statute\", \"forfeiture\", \"civil_immigration\"]",
            "mail-cover-ground",
        ),
        (
            "signer_level = \"section_chief\"",
            "signer_level = \"supervisor\"",
            "signer-level",
        ),
        (
            "national_security = \"agency_head\"",
            "national_security = \"supervisor\"",
            "signer-level",
        ),
        (
            "max_subjects = 1        # [I] R6",
            "max_subjects = 2        # [I] R6",
            "max-subjects",
        ),
        (
            "[kind.subpoena]\n",
            "[kind.subpoena]\ncourt_order = true\ncourt_required = true\n",
            "court-order",
        ),
        (
            "portions = [\"account_identity\", \"address\", \"payment_card\", \"money_order\", \"online_activity\", \"scan_event\", \"delivery_location\"]\nsigner_level = \"section_chief\"",
            "portions = [\"account_identity\", \"change_of_address\"]\nsigner_level = \"section_chief\"",
            "court-order-portion",
        ),
        (
            "portions = [\"account_identity\", \"address\", \"payment_card\", \"money_order\", \"online_activity\", \"scan_event\", \"delivery_location\"]\nsigner_level = \"section_chief\"",
            "portions = [\"account_identity\", \"informed_delivery_engagement\"]\nsigner_level = \"section_chief\"",
            "portion-matrix",
        ),
        (
            "portions = [\"scan_event\", \"mail_image\", \"mail_cover_record\"]\nsigner_level",
            "portions = [\"scan_event\", \"account_identity\"]\nsigner_level",
            "portion-matrix",
        ),
        ("max_days = 30 ", "max_days = 45 ", "mail-cover-limit"),
        (
            "cumulative_cap_days = 120",
            "cumulative_cap_days = 150",
            "mail-cover-limit",
        ),
        (
            "oral_confirmation_days = 3",
            "oral_confirmation_days = 5",
            "mail-cover-limit",
        ),
        (
            "penalty_must_exceed_years = 1",
            "penalty_must_exceed_years = 0",
            "mail-cover-limit",
        ),
        (
            "fugitive = 60 ",
            "fugitive = 60\ncrime = 60 ",
            "mail-cover-limit",
        ),
        (
            "law_enforcement_agency = [\"national_security\", \"fugitive\", \"crime\", \"forfeiture\"]",
            "law_enforcement_agency = [\"national_security\", \"fugitive\", \"crime\", \"forfeiture\", \"postal_statute\"]",
            "mail-cover-ground",
        ),
    ];
    for (from, to, rule) in cases {
        let e = load_err(from, to);
        assert_eq!(e.rule, rule, "{from} -> {to}: {e}");
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("disclosure.toml:"), "{e}");
    }
    let e = load_err("[kind.court_order]\n", "[kind.dragnet]\n");
    assert_eq!(e.rule, "unknown-kind", "{e}");
    let e = load_err(
        "indictment_exempt_grounds = [\"fugitive\"]",
        "indictment_exempt_grounds = [\"fugitive\", \"crime\"]",
    );
    assert_eq!(e.rule, "mail-cover-ground", "{e}");
    // Through Pack::load too.
    let mut src = PackSources::postal();
    src.disclosure = src
        .disclosure
        .map(|d| d.replace("max_days = 30 ", "max_days = 31 "));
    let e = Pack::load(&src).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (DISCLOSURE_FILE, "mail-cover-limit")
    );
}

// ---------------------------------------------------------------------------
// Quotas count people; cover chains from the ledger; the office's view
// ---------------------------------------------------------------------------

/// Ten court orders of five people are fifty people: the per-agency and
/// per-case quotas count the people named, not the requests.
#[test]
fn quotas_count_people_not_requests() {
    let five =
        parse_instrument(&with(court_order(), &[("subjects", subjects(5))]).to_string()).unwrap();
    let mut earlier = 0u32;
    let mut held_at = None;
    for n in 0..10 {
        let c = CheckContext {
            agency_people_24h: earlier,
            agency_people_30d: earlier,
            ..ctx()
        };
        let v = check_instrument(rules(), &five, &c);
        if v.outcome == Outcome::HeldForReview && held_at.is_none() {
            held_at = Some(n);
            assert!(
                v.alerts[0].starts_with("quota_agency_24h: "),
                "{:?}",
                v.alerts
            );
            assert!(v.alerts[0].contains("people"), "{:?}", v.alerts);
        }
        earlier += people_counted(five.subjects.len());
    }
    assert_eq!(earlier, 50);
    // 25 people in 24 hours: the sixth order of five is held.
    assert_eq!(held_at, Some(5));
    // Per case too, whoever presents it.
    let c = CheckContext {
        case_people_30d: 6,
        ..ctx()
    };
    let v = check_instrument(rules(), &five, &c);
    assert_eq!(v.outcome, Outcome::HeldForReview);
    assert!(v.alerts[0].starts_with("quota_case_30d"));
    // A request naming nobody still counts.
    assert_eq!(people_counted(0), 1);
}

/// The extension number and the 120-day cap come from the ledger: a cover
/// claiming to be a fourth extension when the ledger shows none, or a first
/// when three exist, is refused; so is a "new" order that runs on from
/// three earlier ones past the cap.
#[test]
fn cover_extensions_are_counted_from_the_ledger() {
    let start = ms("2026-03-12");
    let prior = |from_days: i64| PriorCover {
        start_ms: start - from_days * DAY_MS,
        end_ms: start - from_days * DAY_MS + 30 * DAY_MS,
    };
    // Three earlier 30-day orders, back to back, ending when this one starts.
    let three = [prior(90), prior(60), prior(30)];
    let (chain, direct) = cover_chain(&three, start);
    assert_eq!(chain.prior_orders, 3);
    assert_eq!(chain.first_start_ms, start - 90 * DAY_MS);
    assert_eq!(direct, Some(2));
    // Side by side (same start), or after a pause of an order's length or
    // more: no chain. A shorter pause continues the run, and its days count.
    assert_eq!(cover_chain(&[prior(0)], start).0.prior_orders, 0);
    let ended = |days_before: i64| PriorCover {
        start_ms: start - (days_before + 30) * DAY_MS,
        end_ms: start - days_before * DAY_MS,
    };
    assert_eq!(cover_chain(&[ended(RUN_GAP_DAYS)], start).0.prior_orders, 0);
    let (paused, direct) = cover_chain(&[ended(RUN_GAP_DAYS - 1)], start);
    assert_eq!((paused.prior_orders, direct), (1, Some(0)));
    assert_eq!(
        paused.first_start_ms,
        start - (RUN_GAP_DAYS - 1 + 30) * DAY_MS
    );
    let at = |priors: &[PriorCover]| CheckContext {
        cover_chain: Some(cover_chain(priors, start).0),
        ..ctx()
    };
    let ext = |n: u32| {
        with(
            mail_cover(),
            &[
                ("extension_no", json!(n)),
                ("benefit_statement", json!("pv-secret benefits")),
                ("cumulative_days", Value::Null),
            ],
        )
    };
    // A fourth extension that the ledger does not know.
    let (v, _) = run(&ext(4), &at(&[]));
    assert_eq!(v.unwrap().codes(), [R::ExtensionMismatch]);
    // An order and three extensions on file: this would be the fourth
    // extension. Claiming the first is a mismatch, and past the cap.
    let four = [prior(120), prior(90), prior(60), prior(30)];
    let (v, _) = run(&ext(1), &at(&four));
    let codes = v.unwrap().codes();
    assert!(codes.contains(&R::ExtensionMismatch), "{codes:?}");
    assert!(codes.contains(&R::CumulativeCap), "{codes:?}");
    // So is a "new" order that runs on from them.
    let (v, _) = run(&mail_cover(), &at(&four));
    let codes = v.unwrap().codes();
    assert!(codes.contains(&R::ExtensionMismatch), "{codes:?}");
    assert!(codes.contains(&R::CumulativeCap), "{codes:?}");
    // The honest third extension reaches 120 days exactly; declaring fewer
    // days than the ledger shows is refused.
    let (v, r) = run(&ext(3), &at(&three));
    assert!(r.is_empty());
    let v = v.unwrap();
    assert_eq!(v.outcome, Outcome::PendingApproval, "{:?}", v.refusals);
    let (v, _) = run(
        &with(ext(3), &[("cumulative_days", json!(60))]),
        &at(&three),
    );
    assert_eq!(v.unwrap().codes(), [R::ExtensionMismatch]);
    // The fourth, with the Chief Postal Inspector's approval, is flagged.
    let (v, _) = run(
        &with(ext(4), &[("cpi_approval_ref", json!("pv-secret memo"))]),
        &at(&four),
    );
    let v = v.unwrap();
    assert_eq!(v.outcome, Outcome::PendingApproval, "{:?}", v.refusals);
    assert!(v.alerts[0].starts_with("cumulative_cap_lifted"));
}

/// A protective order on file never changes the verdict (the requester's
/// answer); the office sees it in the report, and R9's refusal applies to
/// every kind that is not a court order.
#[test]
fn a_protective_order_is_for_the_office_never_the_verdict() {
    for (v, court) in [
        (court_order(), true),
        (written_request(), false),
        (subpoena(), false),
        (mail_cover(), false),
    ] {
        let inst = parse_instrument(&v.to_string()).unwrap();
        let protected = CheckContext {
            subject_has_protective_order: true,
            ..ctx()
        };
        assert_eq!(
            check_instrument(rules(), &inst, &protected),
            check_instrument(rules(), &inst, &ctx()),
            "{}",
            inst.kind
        );
        let refusal = crate::review::protective_order_refusal(rules(), &inst);
        assert_eq!(refusal.is_none(), court, "{}", inst.kind);
        let report = crate::review::check_report(rules(), &inst, &protected);
        let po = report
            .iter()
            .find(|c| c.check == "protective_order")
            .unwrap();
        assert_eq!(
            po.result,
            if court {
                crate::review::CheckStatus::Flagged
            } else {
                crate::review::CheckStatus::Failed
            }
        );
        let clear = crate::review::check_report(rules(), &inst, &ctx());
        assert!(
            clear
                .iter()
                .all(|c| c.result == crate::review::CheckStatus::Passed),
            "{clear:?}"
        );
        assert!(!crate::review::unverifiable(inst.kind).is_empty());
    }
    // A failing check is reported failed, with its message.
    let bad = parse_instrument(&with(written_request(), &[("authority", Value::Null)]).to_string())
        .unwrap();
    let report = crate::review::check_report(rules(), &bad, &ctx());
    let c = report
        .iter()
        .find(|c| c.check == "missing_authority")
        .unwrap();
    assert_eq!(c.result, crate::review::CheckStatus::Failed);
    assert_eq!(c.messages.len(), 1);
}

/// Grounds are compared as ids after NFKC and case folding, so look-alike
/// spellings of a prohibited purpose are refused as prohibited.
#[test]
fn prohibited_grounds_are_caught_in_any_spelling() {
    for g in [
        "immigration_enforcement",
        "Immigration Enforcement",
        "immigration\u{2010}enforcement",
        "ＩＭＭＩＧＲＡＴＩＯＮ ＥＮＦＯＲＣＥＭＥＮＴ",
        "bulk-analytics",
        "First Amendment Monitoring",
    ] {
        let (v, _) = run(&with(written_request(), &[("ground", json!(g))]), &ctx());
        assert_eq!(v.unwrap().codes(), [R::ProhibitedPurpose], "{g}");
    }
    assert_eq!(
        fold_id("  Civil—Law  Enforcement "),
        "civil_law_enforcement"
    );
}

#[test]
fn a_ground_is_folded_once_for_the_check_and_the_ledger() {
    let t = taxonomy();
    let r = rules();
    // A ground of the pack, spelled with capitals and a Unicode hyphen.
    assert_eq!(
        r.ledger_ground(&t, "Criminal\u{2010}Law Enforcement"),
        "criminal_law_enforcement"
    );
    // A prohibited purpose in full-width letters is counted as itself.
    assert_eq!(
        r.ledger_ground(&t, "ＩＭＭＩＧＲＡＴＩＯＮ enforcement"),
        fold_id("immigration enforcement")
    );
    assert!(
        t.purpose_ix(&r.ledger_ground(&t, "ＩＭＭＩＧＲＡＴＩＯＮ enforcement"))
            .is_some()
    );
    // A mail-cover ground, and free text that is none of these.
    assert_eq!(r.ledger_ground(&t, "Fugitive"), "fugitive");
    assert_eq!(
        r.ledger_ground(&t, &format!("{SECRET} case notes")),
        "other"
    );
    assert_eq!(r.ledger_ground(&t, " - "), "");
}
