//! The red team's classes, one scenario each: purpose laundering through
//! consent, existence oracles in reads and rights, and subject ids that
//! look alike; then the second red team against the disclosure gateway:
//! existence oracles (protective orders, request status) and instruments
//! compared as strings (reuse across agencies and spellings, quotas by
//! request, the attorney exclusion, mail-cover extensions as declared).
//! Each test failed before these defenses.

use postvault::{ApproveOptions, EndReason, StepAnswer, Vault};
use serde_json::{Value, json};

use super::{Backend, clock, collect};
use crate::disclosure::{
    approve, codes, court_order, fetch, gateway_vault_on, leaf, mail_cover, submit, subpoena,
    warrant, with, written_request,
};

const DAY: i64 = 86_400_000;

/// An answer with its leaf index and request id taken out: what the two
/// answers being compared must share.
fn shape(a: &StepAnswer) -> Value {
    let mut v = serde_json::to_value(a).unwrap();
    v["log_index"] = json!(0);
    if v["id"] != json!("") {
        v["id"] = json!("<id>");
    }
    v
}

/// A leaf without its time and request id.
fn leaf_shape(v: &Vault, idx: u64) -> Value {
    let mut l = leaf(v, idx);
    l["time"] = json!(0);
    if l.get("instrument").is_some() {
        l["instrument"] = json!("<id>");
    }
    l
}

/// Every leaf of the gateway (collection leaves name the categories
/// collected, the protective-order category among them).
fn gateway_leaves(v: &Vault) -> String {
    let n = v.store().log_size().unwrap();
    v.store()
        .leaves(0, n)
        .unwrap()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| !l.contains("\"action\":\"collect\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_protected_persons_submission_answers_like_anyone_elses() {
    a_protected_persons_submission_answers_like_anyone_elses_on(&Backend::Sqlite);
}

/// R9 without an oracle: a subpoena or court order naming a person with a
/// protective order on file answers the requester exactly as one naming
/// anyone else (status, reasons, alerts, leaf, its view, the public
/// report); the office holds it: an approval is refused to the officer
/// with R9, the leaf saying only `not_permitted`.
pub fn a_protected_persons_submission_answers_like_anyone_elses_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let named = |base: Value, who: &str, n: &str| {
        with(
            base,
            &[
                ("subjects", json!([{"id": who}])),
                ("instrument_id", json!(format!("PO-{n}-{who}"))),
                ("case_id", json!(format!("case-{n}-{who}"))),
            ],
        )
    };
    let cases = [
        (
            "subpoena",
            with(subpoena(), &[("portions", json!(["address"]))]),
        ),
        ("court order", court_order()),
        // Otherwise invalid: refused alike, and protection is never looked at.
        ("invalid", with(subpoena(), &[("authority", Value::Null)])),
    ];
    let mut held = Vec::new();
    for (name, base) in cases {
        let a = submit(&v, "ice", &named(base.clone(), "cust-a", name));
        let p = submit(&v, "ice", &named(base, "cust-p", name));
        assert_eq!(shape(&a), shape(&p), "{name}");
        assert_eq!(
            leaf_shape(&v, a.log_index),
            leaf_shape(&v, p.log_index),
            "{name}"
        );
        let show = |id: &str| {
            let mut s =
                serde_json::to_value(v.disclosure_show(&v.principal("ice").unwrap(), id).unwrap())
                    .unwrap();
            for k in ["id", "seq", "submitted_at"] {
                s[k] = json!(null);
            }
            s
        };
        assert_eq!(show(&a.id), show(&p.id), "{name}");
        assert!(!serde_json::to_string(&p).unwrap().contains("protective"));
        if name != "invalid" {
            assert_eq!(p.status, "pending_approval", "{name}: {:?}", p.reasons);
            held.push((name, p.id.clone(), a.id.clone()));
        }
    }
    // The office holds the subpoena: R9 refuses its approval, to the
    // officer only; the leaf shows an approval not permitted, nothing more.
    let (_, sub_p, sub_a) = &held[0];
    let ap = approve(&v, "officer", sub_p);
    assert_eq!(codes(&ap), ["protective_order_needs_court_order"]);
    assert_eq!(ap.status, "pending_approval");
    let l = leaf(&v, ap.log_index);
    assert_eq!(l["reasons"], json!(["not_permitted"]));
    assert!(!approve(&v, "officer", sub_a).refused());
    // The officer refuses it; the requester sees an officer's refusal.
    let r = v
        .disclose_refuse(&v.principal("officer").unwrap(), sub_p)
        .unwrap();
    assert_eq!(r.status, "refused");
    let shown = v
        .disclosure_show(&v.principal("ice").unwrap(), sub_p)
        .unwrap()
        .unwrap();
    assert_eq!(shown.reasons, ["refused_by_officer"]);
    // A court order may disclose (R9): the officer approves it.
    let (_, co_p, _) = &held[1];
    assert!(!approve(&v, "officer", co_p).refused());
    assert!(!fetch(&v, "ice", co_p).refused());
    // Nothing public names it: no leaf, no report, no requester's list.
    assert!(!gateway_leaves(&v).contains("protective"));
    let report = serde_json::to_string(&v.transparency_report().unwrap()).unwrap();
    assert!(!report.contains("protective"), "{report}");
    let list =
        serde_json::to_string(&v.disclosure_list(&v.principal("ice").unwrap()).unwrap()).unwrap();
    assert!(!list.contains("protective"));
}

#[test]
fn steps_by_a_principal_who_may_not_act_answer_alike_for_real_and_made_up_ids() {
    steps_by_a_principal_who_may_not_act_answer_alike_for_real_and_made_up_ids_on(&Backend::Sqlite);
}

/// `approve`, `refuse`, `end`, `fetch` and `show` by a principal who may
/// not act on a request answer a real request and a made-up id alike: the
/// same code, message, status and leaf, and no side effect (a cover's order
/// key is made only for an officer's approval).
pub fn steps_by_a_principal_who_may_not_act_answer_alike_for_real_and_made_up_ids_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let real = submit(&v, "ice", &court_order());
    let cover = submit(&v, "ice", &mail_cover());
    assert_eq!(cover.status, "pending_approval", "{:?}", cover.reasons);
    let fake = "0196f3a2-7c41-7d2e-9a53-000000000000";
    let keys = b.keys(dir.path());
    let cover_keys = || keys.secret_names("cover:").unwrap().len();
    for who in ["auditor", "inspector", "ingest", "fbi"] {
        let p = v.principal(who).unwrap();
        for id in [&real.id, &cover.id] {
            type Step<'a> = Box<dyn Fn(&str) -> StepAnswer + 'a>;
            let steps: Vec<(&str, Step)> = vec![
                (
                    "approve",
                    Box::new(|id| {
                        v.disclose_approve(&p, id, &ApproveOptions::default())
                            .unwrap()
                    }),
                ),
                ("refuse", Box::new(|id| v.disclose_refuse(&p, id).unwrap())),
                (
                    "end",
                    Box::new(|id| v.disclose_end(&p, id, EndReason::Withdrawn).unwrap()),
                ),
                (
                    "destroy",
                    Box::new(|id| {
                        v.disclose_end(&p, id, EndReason::ImproperlyOrdered)
                            .unwrap()
                    }),
                ),
            ];
            for (name, step) in steps {
                let before = cover_keys();
                let on_real = step(id);
                let on_fake = step(fake);
                assert_eq!(shape(&on_real), shape(&on_fake), "{who} {name}");
                assert!(on_real.refused(), "{who} {name}");
                assert_eq!(on_real.id, "", "{who} {name}: the id is not confirmed");
                assert_eq!(
                    leaf_shape(&v, on_real.log_index),
                    leaf_shape(&v, on_fake.log_index),
                    "{who} {name}"
                );
                assert!(leaf(&v, on_real.log_index).get("instrument").is_none());
                assert_eq!(cover_keys(), before, "{who} {name}: no side effect");
            }
            let f_real = fetch(&v, who, id);
            let f_fake = fetch(&v, who, fake);
            let strip = |p: &postvault::Package| {
                let mut j = serde_json::to_value(p).unwrap();
                j["id"] = json!(null);
                j["log_index"] = json!(0);
                j
            };
            assert_eq!(strip(&f_real), strip(&f_fake), "{who} fetch");
            // The auditor sees every request (and no personal data); to
            // anyone else another's request and no request look alike.
            if who != "auditor" {
                assert!(v.disclosure_show(&p, id).unwrap().is_none(), "{who} show");
            }
            assert!(v.disclosure_show(&p, fake).unwrap().is_none(), "{who} show");
        }
    }
    // Still pending, untouched.
    assert_eq!(
        v.disclosure_show(&v.principal("ice").unwrap(), &cover.id)
            .unwrap()
            .unwrap()
            .status,
        "pending_approval"
    );
    assert_eq!(cover_keys(), 0);
}

#[test]
fn a_document_is_used_once_whoever_presents_it_and_however_it_is_spelled() {
    a_document_is_used_once_whoever_presents_it_and_however_it_is_spelled_on(&Backend::Sqlite);
}

/// One warrant, one disclosure. Presented again by the same principal, or
/// with its references respelled (`W-309-A.`, Unicode hyphens, full-width,
/// Cyrillic, another spelling of the docket, leading
/// zeros, another court name, another kind), it is refused `already_used`.
/// Presented by another principal, the answer is the one any new request
/// gets (the second agency must not learn that the first holds the
/// warrant), but the officer cannot approve it, is told why, and the
/// refused approval's leaf names no request.
pub fn a_document_is_used_once_whoever_presents_it_and_however_it_is_spelled_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let doc = |kind: &str, id: &str, court: &str, docket: &str| {
        with(
            warrant(),
            &[
                ("kind", json!(kind)),
                ("instrument_id", json!(id)),
                (
                    "court",
                    json!({"name": court, "docket": docket, "judge": "D. Example", "order_date": "2026-11-01"}),
                ),
            ],
        )
    };
    let w = |id: &str, docket: &str| doc("warrant", id, "U.S. District Court", docket);
    let first = submit(&v, "fbi", &w("W-309-A", "26-mj-1"));
    assert_eq!(first.status, "pending_approval", "{:?}", first.reasons);
    assert!(!approve(&v, "officer", &first.id).refused());
    assert!(!fetch(&v, "fbi", &first.id).refused());
    let respelled = [
        w("W-309-A", "26-mj-1"),
        w("W-309-A.", "26-mj-1"),
        w("w 309 a", "26-MJ-1"),
        w("W\u{2010}309\u{2011}A", "26\u{2013}mj\u{2013}1"),
        w("\u{ff37}-\u{ff13}\u{ff10}\u{ff19}-\u{ff21}", "26-mj-1"),
        w("W-309-\u{0410}", "26-mj-1"),
        w("W-0309-A", "26-mj-0001"),
        doc("warrant", "W-309-A", "US Dist. Ct. N.D. Ill.", "26-mj-1"),
        doc("court_order", "W-309-A", "U.S. District Court", "26-mj-1"),
    ];
    for (n, inst) in respelled.iter().enumerate() {
        let a = submit(&v, "fbi", inst);
        assert!(codes(&a).contains(&"already_used"), "{n}: {:?}", codes(&a));
        assert_eq!(a.status, "refused");
    }
    // An invisible character is not a spelling: refused at once, whoever
    // presents it, the same way.
    for who in ["fbi", "ice"] {
        let a = submit(&v, who, &w("W-30\u{200b}9-A", "26 mj 1"));
        assert_eq!(codes(&a), vec!["malformed"], "{who}");
    }
    // Another principal gets what a new document gets, every spelling.
    let fresh = submit(&v, "ice", &w("W-310-A", "26-mj-1"));
    assert_eq!(fresh.status, "pending_approval", "{:?}", fresh.reasons);
    for (n, inst) in respelled.iter().enumerate() {
        // Each on its own case, so the case quota stays out of the way.
        let a = submit(
            &v,
            "ice",
            &with(inst.clone(), &[("case_id", json!(format!("ICE-{n}")))]),
        );
        assert_eq!(shape(&a), shape(&fresh), "{n}");
        assert_eq!(
            leaf_shape(&v, a.log_index),
            leaf_shape(&v, fresh.log_index),
            "{n}"
        );
        let shown = v
            .disclosure_show(&v.principal("ice").unwrap(), &a.id)
            .unwrap();
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("another_requester"), "{n}: {text}");
        // The office is told, and cannot approve.
        let office = v
            .disclosure_show(&v.principal("officer").unwrap(), &a.id)
            .unwrap();
        let text = serde_json::to_string(&office).unwrap();
        assert!(
            text.contains("document_used_by_another_requester"),
            "{n}: {text}"
        );
        let ap = approve(&v, "officer", &a.id);
        assert!(
            codes(&ap).contains(&"document_used_by_another_requester"),
            "{n}: {:?}",
            codes(&ap)
        );
        let l = leaf(&v, ap.log_index);
        assert_eq!(l["reasons"], json!(["not_permitted"]), "{n}: {l}");
        assert!(l.get("instrument").is_none(), "{n}: {l}");
        assert_eq!(l["count"], json!(0), "{n}: {l}");
        // The officer refuses it; a refused request uses nothing up.
        let r = v
            .disclose_refuse(&v.principal("officer").unwrap(), &a.id)
            .unwrap();
        assert!(!r.refused(), "{n}: {:?}", codes(&r));
    }
    // A document without a court is its agency's: two agencies' written
    // requests numbered alike are two documents, and neither is told of
    // the other.
    let dea = submit(&v, "fbi", &written_request());
    assert_eq!(dea.status, "pending_approval", "{:?}", dea.reasons);
    assert!(!approve(&v, "officer", &dea.id).refused());
    let other_agency = with(
        written_request(),
        &[(
            "agency",
            json!("Bureau of Alcohol, Tobacco, Firearms and Explosives"),
        )],
    );
    let atf = submit(&v, "ice", &other_agency);
    assert_eq!(atf.status, "pending_approval", "{:?}", atf.reasons);
    let office = v
        .disclosure_show(&v.principal("officer").unwrap(), &atf.id)
        .unwrap();
    let text = serde_json::to_string(&office).unwrap();
    assert!(
        !text.contains("document_used_by_another_requester"),
        "{text}"
    );
    assert!(!approve(&v, "officer", &atf.id).refused());
}

#[test]
fn quotas_count_people_across_requests_and_principals() {
    quotas_count_people_across_requests_and_principals_on(&Backend::Sqlite);
}

/// Ten court orders of five people are fifty people: the agency's 24-hour
/// quota (25) holds the sixth; a case presented by two agencies counts the
/// people of both.
pub fn quotas_count_people_across_requests_and_principals_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let five = |n: usize, case: &str| {
        with(
            court_order(),
            &[
                ("instrument_id", json!(format!("CO-5-{n}"))),
                ("case_id", json!(case)),
                (
                    "subjects",
                    json!(
                        (0..5)
                            .map(|i| json!({"id": format!("p-{n}-{i}")}))
                            .collect::<Vec<_>>()
                    ),
                ),
            ],
        )
    };
    let mut statuses = Vec::new();
    for n in 0..10 {
        let a = submit(&v, "ice", &five(n, &format!("case-{n}")));
        assert!(a.reasons.is_empty(), "{n}: {:?}", a.reasons);
        statuses.push(a.status.clone());
        if n >= 5 {
            assert!(
                a.alerts.iter().any(|x| x.starts_with("quota_agency_24h")),
                "{n}: {:?}",
                a.alerts
            );
        }
    }
    assert_eq!(
        statuses,
        [
            "pending_approval",
            "pending_approval",
            "pending_approval",
            "pending_approval",
            "pending_approval",
            "held_for_review",
            "held_for_review",
            "held_for_review",
            "held_for_review",
            "held_for_review"
        ]
    );
    assert_eq!(v.transparency_report().unwrap().held_for_review, 5);
    // Per case, however the case id is written: ten people on `FBI-77` by
    // the FBI, then one more by the FBI is held. One more by ICE on the
    // same case id is counted too, but only the office is told: a hold
    // would tell ICE that another agency works the case.
    for n in 0..2 {
        let a = submit(&v, "fbi", &five(100 + n, "FBI-77"));
        assert_eq!(a.status, "pending_approval", "{:?}", a.alerts);
    }
    let one = |id: &str| {
        with(
            court_order(),
            &[
                ("instrument_id", json!(id)),
                ("case_id", json!("fbi 77")),
                ("subjects", json!([{"id": "p-x"}])),
            ],
        )
    };
    c.advance(DAY + 1);
    let a = submit(&v, "fbi", &one("CO-1-x"));
    assert_eq!(a.status, "held_for_review", "{:?}", a.alerts);
    assert!(a.alerts.iter().any(|x| x.starts_with("quota_case_30d")));
    let a = submit(&v, "ice", &one("CO-1-y"));
    let fresh = submit(
        &v,
        "ice",
        &with(one("CO-1-z"), &[("case_id", json!("ice-elsewhere-1"))]),
    );
    assert_eq!(shape(&a), shape(&fresh));
    assert_eq!(leaf_shape(&v, a.log_index), leaf_shape(&v, fresh.log_index));
    let office = |id: &str| {
        serde_json::to_string(
            &v.disclosure_show(&v.principal("officer").unwrap(), id)
                .unwrap(),
        )
        .unwrap()
    };
    assert!(office(&a.id).contains("quota_case_30d_with_other_requesters"));
    assert!(!office(&fresh.id).contains("quota_case_30d_with_other_requesters"));
}

#[test]
fn the_attorney_exclusion_compares_what_an_address_says() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(&Backend::Sqlite, dir.path(), &c);
    let a = submit(&v, "fbi", &mail_cover());
    assert!(!approve(&v, "officer", &a.id).refused());
    let record = |sender: &str, ret: &str| {
        json!({"subject": "cust-a", "category": "mail_cover_record", "purpose": "mail_cover",
            "legal_basis": "39 CFR 233.3", "fields": {"order_id": a.id, "recorded_on": "2026-11-02",
            "sender_as_shown": sender, "return_address": ret}})
        .to_string()
    };
    // The instrument names `H. Counsel`, `1 Example Plaza, Chicago IL`.
    for (sender, ret) in [
        ("A. Sender", "1 Example Plz, Chicago IL"),
        ("A. Sender", "1 EXAMPLE PLAZA SUITE 200, CHICAGO IL"),
        (
            "Law office of \u{041d}. \u{0421}\u{043e}unsel",
            "9 Other St",
        ),
        (
            "\u{ff28}\u{ff0e} \u{ff23}\u{ff4f}\u{ff55}\u{ff4e}\u{ff53}\u{ff45}\u{ff4c}",
            "9 Other St",
        ),
        ("H. Coun\u{200b}sel", "9 Other St"),
        ("H.Counsel, Esq.", "9 Other St"),
        ("A. Sender", "1 Ex\u{0430}mple Pla\u{200d}za, Chicago IL"),
    ] {
        let r = collect(&v, "inspector", &record(sender, ret));
        assert_eq!(r.accepted, 0, "{sender:?} / {ret:?} was recorded");
        assert_eq!(r.errors[0].code, "attorney_correspondence", "{sender:?}");
    }
    let r = collect(
        &v,
        "inspector",
        &record("A. Sender", "9 Other St, Chicago IL"),
    );
    assert_eq!(r.accepted, 1, "{:?}", r.errors);
}

/// A cover order starting `start` (a date), issued the day before.
fn cover(id: &str, subject: &str, start: &str, issued: &str, ext: u32) -> Value {
    with(
        mail_cover(),
        &[
            ("instrument_id", json!(id)),
            ("subjects", json!([{"id": subject}])),
            ("issued_at", json!(issued)),
            ("start", json!(start)),
            ("extension_no", json!(ext)),
            (
                "benefit_statement",
                json!("records so far tie the subject to the mailings"),
            ),
        ],
    )
}

#[test]
fn mail_cover_extensions_are_counted_from_the_ledger() {
    mail_cover_extensions_are_counted_from_the_ledger_on(&Backend::Sqlite);
}

/// A cover claiming to be a fourth extension when the ledger shows no
/// earlier order is refused; so is one claiming to be a first extension
/// when an order and three extensions are on file, and the 120-day cap
/// is computed from them.
pub fn mail_cover_extensions_are_counted_from_the_ledger_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let claim = submit(
        &v,
        "fbi",
        &with(
            cover("MC-b-4", "cust-b", "2026-11-02", "2026-11-01", 4),
            &[("cumulative_days", json!(120))],
        ),
    );
    assert!(
        codes(&claim).contains(&"extension_mismatch"),
        "{:?}",
        claim.reasons
    );
    // An order and three extensions, each approved before the next.
    let runs = [
        ("2026-11-01", "2026-10-31"),
        ("2026-12-01", "2026-11-30"),
        ("2026-12-31", "2026-12-30"),
        ("2027-01-30", "2027-01-29"),
    ];
    let mut ids = Vec::new();
    for (n, (start, issued)) in runs.iter().enumerate() {
        let a = submit(
            &v,
            "fbi",
            &cover(&format!("MC-a-{n}"), "cust-a", start, issued, n as u32),
        );
        assert_eq!(a.status, "pending_approval", "{n}: {:?}", a.reasons);
        assert!(!approve(&v, "officer", &a.id).refused());
        ids.push(a.id);
        c.advance(30 * DAY);
    }
    // Now 2027-03-02; the fourth order ends 2027-03-01. A "first
    // extension", or a "new order", continuing the run is caught: the
    // ledger shows the fourth extension, past 120 days.
    for ext in [1, 0] {
        let a = submit(
            &v,
            "fbi",
            &cover(
                &format!("MC-a-x{ext}"),
                "cust-a",
                "2027-03-01",
                "2027-03-01",
                ext,
            ),
        );
        let got = codes(&a);
        assert!(got.contains(&"extension_mismatch"), "{ext}: {got:?}");
        assert!(got.contains(&"cumulative_cap"), "{ext}: {got:?}");
    }
    // Another agency's covers are not this agency's run as far as the
    // agency is told: its answer is a new order's. The office sees the run
    // every requester's covers make, past the cap, and cannot approve.
    let other = submit(
        &v,
        "ice",
        &cover("MC-ice-0", "cust-a", "2027-03-02", "2027-03-02", 0),
    );
    assert_eq!(other.status, "pending_approval", "{:?}", other.reasons);
    let fresh = submit(
        &v,
        "ice",
        &cover("MC-ice-b", "cust-b", "2027-03-02", "2027-03-02", 0),
    );
    assert_eq!(shape(&other), shape(&fresh));
    let ap = approve(&v, "officer", &other.id);
    assert!(
        codes(&ap).contains(&"cover_run_with_other_requesters_over_cap"),
        "{:?}",
        codes(&ap)
    );
    let l = leaf(&v, ap.log_index);
    assert_eq!(l["reasons"], json!(["not_permitted"]), "{l}");
    assert!(l.get("instrument").is_none(), "{l}");
    // The cover of a person no one else covers is approved.
    assert!(!approve(&v, "officer", &fresh.id).refused());
}

#[test]
fn a_short_pause_does_not_restart_the_mail_cover_count() {
    a_short_pause_does_not_restart_the_mail_cover_count_on(&Backend::Sqlite);
}

/// 233.3(g)(6) caps continuous covers at 120 days. An order ended and a
/// "new" one started a few days later continues the run: three 30-day
/// orders with two-day pauses between them, then a "new order" after
/// another pause, are one run of 126 days, past the cap.
pub fn a_short_pause_does_not_restart_the_mail_cover_count_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let runs = [
        ("2026-11-01", "2026-10-31"),
        ("2026-12-03", "2026-12-02"),
        ("2027-01-04", "2027-01-03"),
    ];
    for (n, (start, issued)) in runs.iter().enumerate() {
        let a = submit(
            &v,
            "fbi",
            &cover(&format!("MC-g-{n}"), "cust-a", start, issued, n as u32),
        );
        assert_eq!(a.status, "pending_approval", "{n}: {:?}", a.reasons);
        assert!(!approve(&v, "officer", &a.id).refused());
        c.advance(32 * DAY);
    }
    // Now 2027-02-06: a "new order" after another two-day pause.
    let a = submit(
        &v,
        "fbi",
        &cover("MC-g-new", "cust-a", "2027-02-05", "2027-02-04", 0),
    );
    let got = codes(&a);
    assert!(got.contains(&"extension_mismatch"), "{got:?}");
    assert!(got.contains(&"cumulative_cap"), "{got:?}");
    // After a pause longer than an order, a new run starts.
    c.advance(54 * DAY);
    let a = submit(
        &v,
        "fbi",
        &cover("MC-g-later", "cust-a", "2027-03-31", "2027-03-30", 0),
    );
    assert_eq!(a.status, "pending_approval", "{:?}", a.reasons);
}

// Reads, consent and subject ids.

use postvault::{Event, VaultError};

use crate::*;

fn code(e: VaultError) -> String {
    e.code().to_string()
}

fn marketing_line(subject: &str, consent: Option<serde_json::Value>) -> String {
    let mut v = serde_json::json!({"subject": subject, "category": "account_identity",
        "purpose": "marketing", "fields": {"name": "Ada", "email": "ada@example.com"}});
    if let Some(c) = consent {
        v["consent"] = c;
    }
    v.to_string()
}

#[test]
fn collection_never_creates_changes_or_revives_consent() {
    collection_never_creates_changes_or_revives_consent_on(&Backend::Sqlite);
}

/// Consent laundering (class 1): a collection line carrying `consent` is
/// rejected whoever sends it, writes no consent and reverses no withdrawal;
/// collecting for a purpose that needs consent follows the rights channel's
/// record only; each consent change is one leaf tagged for the person.
pub fn collection_never_creates_changes_or_revives_consent_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    let promo = v.principal("promo").unwrap();
    let officer = v.principal("officer").unwrap();
    // The collector, and the marketing role itself, try to grant consent.
    for who in ["ingest", "promo"] {
        for value in [
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!("yes"),
        ] {
            let r = collect(&v, who, &marketing_line("s1", Some(value)));
            assert_eq!(r.accepted, 0, "{who}");
            assert_eq!(r.errors[0].code, "consent_not_collectable", "{who}");
            assert!(!r.errors[0].message.contains("s1"));
        }
    }
    let r = v.read(&promo, "s1", "marketing").unwrap();
    assert!(r.denied(), "collection must not have opened marketing");
    assert!(
        v.subject_report(&officer, "s1")
            .unwrap()
            .consents
            .is_empty()
    );
    // Without a recorded consent, collecting for marketing is denied (HEW3).
    let r = collect(&v, "ingest", &marketing_line("s1", None));
    assert_eq!((r.accepted, r.errors[0].code.as_str()), (0, "denied"));
    assert_eq!(r.errors[0].rule.as_deref(), Some("HEW3-consent"));

    // The person grants through the rights channel: one leaf, their tag.
    let size = v.store().log_size().unwrap();
    let grant = v.set_consent(&officer, "s1", "marketing", true).unwrap();
    assert_eq!((grant, v.store().log_size().unwrap()), (size, size + 1));
    let key = v.subject_tag_key("s1").unwrap().unwrap();
    let (_, mine) = v.find_leaves(&key).unwrap();
    assert!(mine.iter().any(|l| l.index == grant));
    assert_eq!(
        collect(&v, "ingest", &marketing_line("s1", None)).accepted,
        1
    );
    assert!(!v.read(&promo, "s1", "marketing").unwrap().denied());

    // The person withdraws; a line claiming consent does not revive it.
    c.advance(1);
    v.set_consent(&officer, "s1", "marketing", false).unwrap();
    c.advance(1);
    for who in ["ingest", "promo"] {
        let r = collect(
            &v,
            who,
            &marketing_line("s1", Some(serde_json::json!(true))),
        );
        assert_eq!(r.errors[0].code, "consent_not_collectable");
    }
    let r = collect(&v, "ingest", &marketing_line("s1", None));
    assert_eq!((r.accepted, r.errors[0].code.as_str()), (0, "denied"));
    let r = v.read(&promo, "s1", "marketing").unwrap();
    assert!(r.denied() && r.records.is_empty());
    let consents = v.subject_report(&officer, "s1").unwrap().consents;
    assert_eq!(consents.len(), 1);
    assert!(!consents[0].granted);
    // Until the person grants again.
    c.advance(1);
    v.set_consent(&officer, "s1", "marketing", true).unwrap();
    assert!(!v.read(&promo, "s1", "marketing").unwrap().denied());
}

#[test]
fn consent_to_a_prohibited_or_unneeded_purpose_is_refused() {
    consent_to_a_prohibited_or_unneeded_purpose_is_refused_on(&Backend::Sqlite);
}

pub fn consent_to_a_prohibited_or_unneeded_purpose_is_refused_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("s1", "m"));
    let officer = v.principal("officer").unwrap();
    for (purpose, expected) in [
        ("immigration_enforcement", "consent_prohibited_purpose"),
        ("bulk_analytics", "consent_prohibited_purpose"),
        ("delivery", "consent_not_required"),
        ("subject_access", "consent_not_required"),
        ("law_enforcement_disclosure", "consent_not_required"),
    ] {
        for granted in [true, false] {
            let size = v.store().log_size().unwrap();
            let e = v.set_consent(&officer, "s1", purpose, granted).unwrap_err();
            assert_eq!(e.code(), expected, "{purpose}");
            assert!(!e.to_string().contains("s1"));
            // One deny leaf with the code; nothing of the person's.
            assert_eq!(v.store().log_size().unwrap(), size + 1);
            let leaf = v.store().leaves(size, size + 1).unwrap().remove(0);
            let ev = Event::from_leaf(&leaf).unwrap();
            assert_eq!(
                (ev.decision.as_str(), ev.reasons.clone()),
                ("deny", vec![expected.to_string()])
            );
            assert!(ev.subject_tag.is_none());
        }
    }
    assert!(
        v.subject_report(&officer, "s1")
            .unwrap()
            .consents
            .is_empty()
    );
    // Nothing reaches a prohibited purpose.
    let agency = v.principal("agency").unwrap();
    assert!(
        v.read(&agency, "s1", "immigration_enforcement")
            .unwrap()
            .denied()
    );
}

#[test]
fn denial_reasons_do_not_depend_on_the_person() {
    denial_reasons_do_not_depend_on_the_person_on(&Backend::Sqlite);
}

/// Existence oracles (class 2): a denied read answers and logs exactly the
/// same for a person who consented, one who did not and an unknown id.
pub fn denial_reasons_do_not_depend_on_the_person_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("consented", "m"));
    collect(&v, "ingest", &person("plain", "n"));
    let officer = v.principal("officer").unwrap();
    v.set_consent(&officer, "consented", "marketing", true)
        .unwrap();
    // Roles that may see nothing for the purpose, consent or not.
    for (who, purpose) in [
        ("sorting", "marketing"),
        ("care", "marketing"),
        ("agency", "marketing"),
        ("agency", "immigration_enforcement"),
        ("soc", "delivery"),
    ] {
        let p = v.principal(who).unwrap();
        let answers: Vec<_> = ["consented", "plain", "nobody-at-all"]
            .iter()
            .map(|s| v.read(&p, s, purpose).unwrap())
            .collect();
        let events: Vec<Event> = answers
            .iter()
            .map(|a| {
                let leaf = v
                    .store()
                    .leaves(a.log_index, a.log_index + 1)
                    .unwrap()
                    .remove(0);
                let mut e = Event::from_leaf(&leaf).unwrap();
                assert_eq!(e.subject_tag.as_ref().map(String::len), Some(24));
                e.subject_tag = None;
                e
            })
            .collect();
        for (a, e) in answers.iter().zip(&events).skip(1) {
            assert!(a.denied(), "{who}/{purpose}");
            assert_eq!(a.withheld, answers[0].withheld, "{who}/{purpose}");
            assert_eq!(a.decision, answers[0].decision);
            assert_eq!(e, &events[0], "{who}/{purpose}");
        }
        // The reasons say what the purpose may never see without consent.
        if purpose == "marketing" {
            assert!(
                answers[0]
                    .withheld
                    .iter()
                    .any(|w| w.reasons.iter().any(|r| r.policy == "HEW3-consent")),
                "{who}"
            );
        }
    }
    // The marketing role: a person without consent and an unknown id alike.
    let promo = v.principal("promo").unwrap();
    let plain = v.read(&promo, "plain", "marketing").unwrap();
    let nobody = v.read(&promo, "nobody-at-all", "marketing").unwrap();
    assert!(plain.denied());
    assert_eq!(plain.withheld, nobody.withheld);
}

#[test]
fn subject_ids_with_invisible_characters_are_refused_everywhere() {
    subject_ids_with_invisible_characters_are_refused_everywhere_on(&Backend::Sqlite);
}

/// Look-alike ids (class 3): `cust-1` followed by an invisible or bidi
/// character is refused at every entry point, never a second person, and
/// no message echoes it.
pub fn subject_ids_with_invisible_characters_are_refused_everywhere_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    collect(&v, "ingest", &person("cust-1", "m"));
    let officer = v.principal("officer").unwrap();
    let sorting = v.principal("sorting").unwrap();
    let agency = v.principal("agency").unwrap();
    let size = v.store().log_size().unwrap();
    for bad in [
        "cust-1\u{feff}",
        "cust-1\u{200b}",
        "\u{202e}1-tsuc",
        "cust\u{2060}-1",
        "cust-1\u{200d}",
        " cust-1",
    ] {
        let r = collect(&v, "ingest", &person(bad, "x"));
        assert_eq!(r.accepted, 0);
        assert!(r.errors.iter().all(|e| e.code == "invalid_subject"));
        assert!(r.errors.iter().all(|e| !e.message.contains("cust")));
        let refusals = [
            v.read(&sorting, bad, "delivery").map(drop),
            v.subject_report(&officer, bad).map(drop),
            v.set_consent(&officer, bad, "marketing", true).map(drop),
            v.erase(&officer, &[bad.to_string()], &mut |_| {}).map(drop),
            v.correct(
                &officer,
                bad,
                "address",
                r#"{"street": "2 Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}"#,
                None,
            )
            .map(drop),
            v.subject_tag_key(bad).map(drop),
            v.accounting(&officer, bad, true).map(drop),
        ];
        for (i, r) in refusals.into_iter().enumerate() {
            let e = r.unwrap_err();
            assert!(!e.to_string().contains("cust"), "{i}: {e}");
            assert_eq!(code(e), "invalid_subject_id", "entry point {i}");
        }
        // An instrument naming one is refused as not an identifier.
        let instrument = serde_json::json!({
            "kind": "warrant", "instrument_id": "W-1", "agency": "FBI",
            "signer": {"name": "J", "title": "Judge", "level": "judge"},
            "authority": "Fed. R. Crim. P. 41", "ground": "criminal_law_enforcement",
            "case_id": "C-1", "subjects": [{"id": bad}], "portions": ["address"],
            "issued_at": "2026-11-01", "expires_at": "2026-11-20",
            "court": {"name": "U.S. District Court", "docket": "1:26-mj-1", "judge": "J", "order_date": "2026-11-01"}
        });
        let a = v.disclose_submit(&agency, &instrument.to_string()).unwrap();
        assert!(a.refused());
        assert!(
            a.reasons
                .iter()
                .any(|r| r.code == "selector_not_identifier"),
            "{:?}",
            a.reasons
        );
    }
    // Nothing became a second person: the real one is untouched.
    let r = v.read(&sorting, "cust-1", "delivery").unwrap();
    assert!(!r.records.is_empty());
    // Refused before any decision: only the instruments left leaves.
    let leaves = v
        .store()
        .leaves(size, v.store().log_size().unwrap())
        .unwrap();
    assert!(
        leaves
            .iter()
            .filter_map(|l| Event::from_leaf(l))
            .all(|e| e.action == "disclosure_submit"
                || e.action == "collect"
                || e.action == "read")
    );
}
