//! The disclosure gateway end to end: the red team, the workflow of every
//! instrument kind, mail-cover recording, quotas over rolling windows,
//! delayed notice and the transparency report.

use std::path::Path;
use std::sync::Arc;

use postvault::{ApproveOptions, EndReason, FixedClock, Package, StepAnswer, Vault};
use serde_json::{Value, json};

use super::{Backend, clock, collect, line, opts, person};

const DAY: i64 = 86_400_000;

/// A vault with the named person `cust-a`, a bystander `cust-b` and a
/// person with a protective order on file, `cust-p`; each string field of
/// each carries its own marker.
pub fn gateway_vault(dir: &Path, c: &Arc<FixedClock>) -> Vault {
    gateway_vault_on(&Backend::Sqlite, dir, c)
}

pub fn gateway_vault_on(b: &Backend, dir: &Path, c: &Arc<FixedClock>) -> Vault {
    let v = b.init(dir, opts(c)).unwrap();
    for (name, role) in [
        ("ingest", "collector"),
        ("ice", "agency"),
        ("fbi", "agency"),
        ("officer", "privacy_officer"),
        ("officer2", "privacy_officer"),
        ("inspector", "mail_cover"),
        ("auditor", "auditor"),
    ] {
        v.add_principal(name, role).unwrap();
    }
    let mut lines = vec![
        person("cust-a", "pvmarkA"),
        person("cust-b", "pvmarkB"),
        person("cust-p", "pvmarkP"),
    ];
    lines.push(line(
        "cust-p",
        "protective_order",
        "forwarding",
        json!({"on_file": true, "issued_on": "2026-01-05"}),
    ));
    let r = collect(&v, "ingest", &lines.join("\n"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
    v
}

pub fn court_order() -> Value {
    json!({
        "kind": "court_order",
        "instrument_id": "CO-pv-secret-1",
        "agency": "pv-secret agency",
        "signer": {"name": "pv-secret signer", "title": "Assistant U.S. Attorney", "level": "agent"},
        "authority": "5 U.S.C. 552a(b)(11)",
        "ground": "criminal_law_enforcement",
        "case_id": "pv-secret-case-1",
        "subjects": [{"id": "cust-a"}],
        "portions": ["address", "change_of_address"],
        "time_range": {"from": "2026-01-01", "to": "2026-12-31"},
        "issued_at": "2026-11-01",
        "expires_at": "2027-01-15",
        "court": {"name": "U.S. District Court", "docket": "1:26-cr-1", "judge": "B. Example", "order_date": "2026-10-31"}
    })
}

pub fn warrant() -> Value {
    json!({
        "kind": "warrant",
        "instrument_id": "W-1",
        "agency": "Federal Bureau of Investigation",
        "signer": {"name": "C. Example", "title": "Special Agent", "level": "agent"},
        "authority": "Fed. R. Crim. P. 41",
        "ground": "criminal_law_enforcement",
        "case_id": "FBI-1",
        "subjects": [{"id": "cust-a"}],
        "portions": ["scan_event", "delivery_location"],
        "time_range": {"from": "2026-10-01", "to": "2026-11-30"},
        "issued_at": "2026-11-01",
        "court": {"name": "U.S. District Court", "docket": "26-mj-1", "judge": "D. Example", "order_date": "2026-11-01"}
    })
}

pub fn written_request() -> Value {
    json!({
        "kind": "written_request",
        "instrument_id": "B7-1",
        "agency": "Drug Enforcement Administration",
        "signer": {"name": "E. Example", "title": "Section Chief", "level": "section_chief", "delegation_ref": "DEA order 2025-4"},
        "authority": "5 U.S.C. 552a(b)(7); 21 U.S.C. 841",
        "ground": "criminal_law_enforcement",
        "case_id": "DEA-1",
        "subjects": [{"id": "cust-a"}],
        "portions": ["account_identity", "address"],
        "time_range": {"from": "2026-06-01", "to": "2026-11-30"},
        "issued_at": "2026-11-01"
    })
}

pub fn subpoena() -> Value {
    json!({
        "kind": "subpoena",
        "instrument_id": "SUB-1",
        "agency": "Internal Revenue Service, Criminal Investigation",
        "signer": {"name": "F. Example", "title": "Supervisory Special Agent", "level": "supervisor"},
        "authority": "26 U.S.C. 7602",
        "ground": "criminal_law_enforcement",
        "case_id": "CI-1",
        "subjects": [{"id": "cust-a"}],
        "portions": ["payment_card"],
        "time_range": {"from": "2026-09-01", "to": "2026-11-30"},
        "issued_at": "2026-11-01"
    })
}

pub fn mail_cover() -> Value {
    json!({
        "kind": "mail_cover",
        "instrument_id": "MC-1",
        "agency": "Federal Bureau of Investigation",
        "signer": {"name": "G. Example", "title": "Supervisory Special Agent", "level": "supervisor"},
        "authority": "39 CFR 233.3(e)(2)",
        "ground": "crime",
        "case_id": "FBI-MC-1",
        "subjects": [{"id": "cust-a"}],
        "portions": ["scan_event", "mail_image", "mail_cover_record"],
        "issued_at": "2026-11-01",
        "requester_type": "law_enforcement_agency",
        "statute_cited": "18 U.S.C. 1341",
        "penalty_max_years": 20,
        "reasonable_grounds": "victims name the return address of the mailings",
        "start": "2026-11-01",
        "days": 30,
        "indicted_or_information_filed": false,
        "known_attorney": {"name": "H. Counsel", "address": "1 Example Plaza, Chicago IL"}
    })
}

pub fn with(mut base: Value, edits: &[(&str, Value)]) -> Value {
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

pub fn submit(v: &Vault, who: &str, inst: &Value) -> StepAnswer {
    v.disclose_submit(&v.principal(who).unwrap(), &inst.to_string())
        .unwrap()
}

pub fn approve(v: &Vault, who: &str, id: &str) -> StepAnswer {
    v.disclose_approve(&v.principal(who).unwrap(), id, &ApproveOptions::default())
        .unwrap()
}

/// A mail-cover order of `fbi`'s, approved, and one record of it collected
/// for `cust-a`: the order's submission answer.
pub fn cover_with_a_record(v: &Vault) -> StepAnswer {
    let a = submit(v, "fbi", &mail_cover());
    assert!(!approve(v, "officer", &a.id).refused());
    let line = serde_json::json!({"subject": "cust-a", "category": "mail_cover_record",
        "purpose": "mail_cover", "legal_basis": "39 CFR 233.3", "fields": {"order_id": a.id,
        "recorded_on": "2026-11-02", "sender_as_shown": "pvCoverSender",
        "return_address": "9 Other St, Chicago IL"}});
    assert_eq!(collect(v, "inspector", &line.to_string()).accepted, 1);
    a
}

pub fn fetch(v: &Vault, who: &str, id: &str) -> Package {
    v.disclose_fetch(&v.principal(who).unwrap(), id).unwrap()
}

pub fn codes(a: &StepAnswer) -> Vec<&str> {
    a.reasons.iter().map(|r| r.code.as_str()).collect()
}

fn package_codes(p: &Package) -> Vec<&str> {
    p.reasons.iter().map(|r| r.code.as_str()).collect()
}

pub fn leaf(v: &Vault, idx: u64) -> Value {
    serde_json::from_slice(&v.store().leaves(idx, idx + 1).unwrap()[0]).unwrap()
}

/// Nothing of a person other than `cust-a` ever appears in an answer.
fn assert_no_bystander(what: &str, text: &str) {
    for m in ["pvmarkB", "pvmarkP", "cust-b", "cust-p"] {
        assert!(!text.contains(m), "{what}: {m} left the vault");
    }
}

/// A red-team attempt: what is submitted (or done), and the codes it must
/// be refused with.
enum Attack {
    /// Submitted as `ice`; refused with all of these codes.
    Submit(&'static str, Value, &'static [&'static str]),
    /// Raw text submitted as `ice`.
    Raw(&'static str, String, &'static [&'static str]),
}

#[test]
fn red_team_no_data_leaves_for_anyone_not_named_or_beyond_what_was_approved() {
    red_team_no_data_leaves_for_anyone_not_named_or_beyond_what_was_approved_on(&Backend::Sqlite);
}

pub fn red_team_no_data_leaves_for_anyone_not_named_or_beyond_what_was_approved_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let everything = json!([
        "account_identity",
        "address",
        "change_of_address",
        "payment_card",
        "money_order",
        "online_activity",
        "scan_event",
        "delivery_location",
        "mail_image"
    ]);
    let attacks = vec![
        Attack::Submit(
            "2025: bulk account, tracking, card and IP data of everyone matching a selector",
            with(
                written_request(),
                &[
                    ("subjects", Value::Null),
                    ("selector", json!({"zip3": "606", "language": "es"})),
                    ("portions", everything.clone()),
                    ("ground", json!("immigration_enforcement")),
                ],
            ),
            &["selector_not_identifier"],
        ),
        Attack::Submit(
            "no subject",
            with(court_order(), &[("subjects", json!([]))]),
            &["no_subject"],
        ),
        Attack::Submit(
            "a wildcard for an identifier",
            with(court_order(), &[("subjects", json!([{"id": "cust-*"}]))]),
            &["selector_not_identifier"],
        ),
        Attack::Submit(
            "a regular expression for an identifier",
            with(court_order(), &[("subjects", json!([{"id": "^cust-.$"}]))]),
            &["selector_not_identifier"],
        ),
        Attack::Submit(
            "everyone by a placeholder",
            with(court_order(), &[("subjects", json!([{"id": "all"}]))]),
            &["selector_not_identifier"],
        ),
        Attack::Submit(
            "a named subject plus an attribute",
            with(
                court_order(),
                &[("subjects", json!([{"id": "cust-a", "nationality": "x"}]))],
            ),
            &["selector_not_identifier"],
        ),
        Attack::Submit(
            "a court order for six people",
            with(
                court_order(),
                &[(
                    "subjects",
                    json!([{"id": "cust-a"}, {"id": "cust-b"}, {"id": "cust-p"},
                {"id": "cust-c"}, {"id": "cust-d"}, {"id": "cust-e"}]),
                )],
            ),
            &["too_many_subjects"],
        ),
        Attack::Submit(
            "a warrant for two people",
            with(
                warrant(),
                &[("subjects", json!([{"id": "cust-a"}, {"id": "cust-b"}]))],
            ),
            &["too_many_subjects"],
        ),
        Attack::Submit(
            "immigration enforcement as the ground of a written request",
            with(
                written_request(),
                &[("ground", json!("Immigration Enforcement"))],
            ),
            &["prohibited_purpose"],
        ),
        Attack::Submit(
            "bulk analytics under a court order",
            with(court_order(), &[("ground", json!("bulk_analytics"))]),
            &["prohibited_purpose"],
        ),
        Attack::Submit(
            "2025: mail covers on many addresses on civil immigration grounds",
            with(
                mail_cover(),
                &[
                    (
                        "subjects",
                        json!([{"id": "cust-a"}, {"id": "cust-b"}, {"id": "cust-p"}]),
                    ),
                    ("ground", json!("civil_immigration_enforcement")),
                ],
            ),
            &["too_many_subjects", "ground_not_allowed"],
        ),
        Attack::Submit(
            "a mail cover for a misdemeanour",
            with(mail_cover(), &[("penalty_max_years", json!(1))]),
            &["penalty_too_low"],
        ),
        Attack::Submit(
            "a mail cover asking for account data",
            with(
                mail_cover(),
                &[("portions", json!(["scan_event", "account_identity"]))],
            ),
            &["portion_not_exterior"],
        ),
        Attack::Submit(
            "change-of-address data under a written request",
            with(
                written_request(),
                &[("portions", json!(["change_of_address"]))],
            ),
            &["portion_needs_court_order"],
        ),
        Attack::Submit(
            "a written request signed by an agent",
            with(
                written_request(),
                &[(
                    "signer",
                    json!({"name": "x", "title": "Special Agent", "level": "agent"}),
                )],
            ),
            &["signer_level_too_low"],
        ),
        Attack::Submit(
            "no authority cited",
            with(warrant(), &[("authority", Value::Null)]),
            &["missing_authority"],
        ),
        Attack::Submit(
            "an expired instrument",
            with(
                court_order(),
                &[
                    ("issued_at", json!("2026-01-01")),
                    ("expires_at", json!("2026-02-01")),
                    (
                        "court",
                        json!({"name": "U.S. District Court", "docket": "1", "judge": "B", "order_date": "2026-01-01"}),
                    ),
                ],
            ),
            &["expired"],
        ),
        Attack::Submit(
            "a written request that delays notice to the person",
            with(
                written_request(),
                &[("delay_notice_until", json!("2027-01-01"))],
            ),
            &["delay_needs_court_order"],
        ),
        Attack::Raw(
            "not an instrument at all",
            "SELECT * FROM records".into(),
            &["malformed"],
        ),
        Attack::Raw(
            "a submission too large to be particular",
            format!(
                "{{\"kind\": \"court_order\", \"pad\": \"{}\"}}",
                "x".repeat(70 * 1024)
            ),
            &["too_large"],
        ),
    ];
    assert!(attacks.len() >= 20);
    let mut refused = 0;
    for attack in &attacks {
        let (name, text, want) = match attack {
            Attack::Submit(n, j, w) => (*n, j.to_string(), *w),
            Attack::Raw(n, t, w) => (*n, t.clone(), *w),
        };
        let size = v.store().log_size().unwrap();
        let a = v
            .disclose_submit(&v.principal("ice").unwrap(), &text)
            .unwrap();
        assert_eq!(a.status, "refused", "{name}: {:?}", a.reasons);
        for w in want {
            assert!(
                codes(&a).contains(w),
                "{name}: wanted {w}, got {:?}",
                codes(&a)
            );
        }
        assert_eq!(v.store().log_size().unwrap(), size + 1, "{name}: one leaf");
        let l = leaf(&v, a.log_index);
        assert_eq!(l["action"], "disclosure_submit", "{name}");
        assert_eq!(l["decision"], "deny", "{name}");
        // An officer cannot approve a refused request, and nothing can be fetched.
        let ap = approve(&v, "officer", &a.id);
        assert!(codes(&ap).contains(&"wrong_status"), "{name}");
        let p = fetch(&v, "ice", &a.id);
        assert!(p.refused() && p.subjects.is_empty(), "{name}: data left");
        assert_no_bystander(name, &serde_json::to_string(&(&a, &p)).unwrap());
        refused += 1;
    }
    assert_eq!(refused, attacks.len());

    // The attempts named some thirty people in all, past the agency's
    // quota of 25 people a day (quotas count people, refused requests
    // too): a day later, steps around a valid request.
    c.advance(DAY + 1);
    let good = submit(&v, "ice", &court_order());
    assert_eq!(good.status, "pending_approval", "{:?}", good.reasons);
    // The requester approving its own request.
    let own = approve(&v, "ice", &good.id);
    assert_eq!(codes(&own), ["self_approval"]);
    // An officer cannot submit; an agency cannot approve another's request.
    let officer_submits = submit(&v, "officer", &court_order());
    assert!(codes(&officer_submits).contains(&"not_permitted"));
    let other_agency = approve(&v, "fbi", &good.id);
    // Another agency's request is, to an agency, no request at all.
    assert_eq!(codes(&other_agency), ["unknown_request"]);
    assert_eq!(other_agency.status, "unknown");
    let refuse_other = v
        .disclose_refuse(&v.principal("fbi").unwrap(), &good.id)
        .unwrap();
    assert_eq!(codes(&refuse_other), ["unknown_request"]);
    // Fetching before approval.
    let early = fetch(&v, "ice", &good.id);
    assert_eq!(package_codes(&early), ["wrong_status"]);
    assert!(early.subjects.is_empty());
    // An approval may narrow, never widen, the portions.
    let widen = v
        .disclose_approve(
            &v.principal("officer").unwrap(),
            &good.id,
            &ApproveOptions {
                portions: Some(vec!["address".into(), "payment_card".into()]),
            },
        )
        .unwrap();
    assert_eq!(codes(&widen), ["portion_not_requested"]);
    let ok = v
        .disclose_approve(
            &v.principal("officer").unwrap(),
            &good.id,
            &ApproveOptions {
                portions: Some(vec!["address".into()]),
            },
        )
        .unwrap();
    assert!(!ok.refused(), "{:?}", ok.reasons);
    // A second approval of the same request.
    assert!(codes(&approve(&v, "officer2", &good.id)).contains(&"wrong_status"));
    // Another agency fetching the package, or a made-up id.
    for (who, id) in [
        ("fbi", good.id.as_str()),
        ("ice", "01234567-0000-7000-8000-000000000000"),
    ] {
        let p = fetch(&v, who, id);
        assert_eq!(package_codes(&p), ["unknown_request"], "{who}");
        assert!(p.subjects.is_empty());
    }
    // The instrument used again in a new request.
    let again = submit(&v, "ice", &court_order());
    assert!(codes(&again).contains(&"already_used"));

    // The one lawful package: the named person, the approved portion only.
    let p = fetch(&v, "ice", &good.id);
    assert!(!p.refused(), "{:?}", p.reasons);
    assert_eq!(p.subjects.len(), 1);
    assert_eq!(p.subjects[0].subject, "cust-a");
    assert!(!p.subjects[0].records.is_empty());
    assert!(
        p.subjects[0]
            .records
            .iter()
            .all(|r| r.category == "address")
    );
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains("pvmarkA"));
    assert_no_bystander("the package", &text);
    let l = leaf(&v, p.subjects[0].log_index);
    assert_eq!(
        (l["action"].as_str(), l["count"].as_u64()),
        (Some("disclose"), Some(1))
    );
    // Fetched once only.
    let twice = fetch(&v, "ice", &good.id);
    assert_eq!(package_codes(&twice), ["already_used"]);
    assert!(twice.subjects.is_empty());

    // An approved request not fetched before it expires.
    let late = submit(
        &v,
        "ice",
        &with(warrant(), &[("instrument_id", json!("W-late"))]),
    );
    assert!(!approve(&v, "officer", &late.id).refused());
    c.advance(15 * DAY);
    let p = fetch(&v, "ice", &late.id);
    assert_eq!(package_codes(&p), ["expired"]);
    assert!(p.subjects.is_empty());
    assert_eq!(
        v.disclosure_list_all()
            .unwrap()
            .iter()
            .find(|r| r.id == late.id)
            .unwrap()
            .status,
        "expired"
    );

    // Every leaf is free of the bystanders and of the instruments' free text.
    let size = v.store().log_size().unwrap();
    for (i, l) in v.store().leaves(0, size).unwrap().iter().enumerate() {
        let s = String::from_utf8_lossy(l);
        assert_no_bystander(&format!("leaf {i}"), &s);
        assert!(
            !s.contains("pv-secret") && !s.contains("pvmarkA"),
            "leaf {i}: {s}"
        );
    }
    // So is every file of the vault: instruments are sealed.
    drop(v);
    // (On PostgreSQL the vault has no files; the store holds what SQLite's
    // files do, and its rows are checked through the leaves above.)
    for entry in std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|_| matches!(b, Backend::Sqlite))
    {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for m in ["pv-secret", "pvmarkA", "pvmarkB", "Assistant U.S. Attorney"] {
            assert!(
                !bytes.windows(m.len()).any(|w| w == m.as_bytes()),
                "{m} in {}",
                path.display()
            );
        }
    }
}

#[test]
fn every_instrument_kind_runs_the_whole_workflow() {
    every_instrument_kind_runs_the_whole_workflow_on(&Backend::Sqlite);
}

pub fn every_instrument_kind_runs_the_whole_workflow_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let kinds = [
        (
            "court_order",
            court_order(),
            vec!["address", "change_of_address"],
        ),
        (
            "warrant",
            warrant(),
            vec!["scan_event", "delivery_location"],
        ),
        (
            "written_request",
            written_request(),
            vec!["account_identity", "address"],
        ),
        ("subpoena", subpoena(), vec!["payment_card"]),
        (
            "mail_cover",
            mail_cover(),
            vec!["scan_event", "mail_image", "mail_cover_record"],
        ),
    ];
    for (kind, inst, portions) in kinds {
        let a = submit(&v, "fbi", &inst);
        assert_eq!(a.status, "pending_approval", "{kind}: {:?}", a.reasons);
        let show = v
            .disclosure_show(&v.principal("fbi").unwrap(), &a.id)
            .unwrap()
            .unwrap();
        assert_eq!((show.kind.as_str(), show.subjects), (kind, 1));
        // Another agency does not see it; the auditor does.
        assert!(
            v.disclosure_show(&v.principal("ice").unwrap(), &a.id)
                .unwrap()
                .is_none()
        );
        assert!(
            v.disclosure_show(&v.principal("auditor").unwrap(), &a.id)
                .unwrap()
                .is_some()
        );
        let ap = approve(&v, "officer", &a.id);
        assert_eq!(ap.status, "approved", "{kind}: {:?}", ap.reasons);
        assert_eq!(leaf(&v, ap.log_index)["action"], "disclosure_approve");
        if kind == "mail_cover" {
            let r = collect(
                &v,
                "inspector",
                &serde_json::json!({"subject": "cust-a", "category": "mail_cover_record", "purpose": "mail_cover",
                    "legal_basis": "39 CFR 233.3", "fields": {"order_id": a.id, "recorded_on": "2026-11-02",
                    "sender_as_shown": "A. Sender", "postmark_city": "Chicago"}})
                .to_string(),
            );
            assert_eq!(r.accepted, 1, "{:?}", r.errors);
        }
        let p = fetch(&v, "fbi", &a.id);
        assert!(!p.refused(), "{kind}: {:?}", p.reasons);
        assert_eq!(p.status, "fetched");
        let got: std::collections::BTreeSet<&str> = p.subjects[0]
            .records
            .iter()
            .map(|r| r.category.as_str())
            .collect();
        assert!(
            !got.is_empty(),
            "{kind}: the person holds data in the portions"
        );
        assert!(got.iter().all(|c| portions.contains(c)), "{kind}: {got:?}");
        assert_no_bystander(kind, &serde_json::to_string(&p).unwrap());
        // The card number went out masked: read-time transforms apply.
        if kind == "subpoena" {
            assert!(
                !serde_json::to_string(&p)
                    .unwrap()
                    .contains("4111111111111111")
            );
        }
        if kind == "mail_cover" {
            assert!(got.contains("mail_cover_record"));
            // A cover's records accrue: its requester fetches again.
            assert!(!fetch(&v, "fbi", &a.id).refused());
        } else {
            assert!(fetch(&v, "fbi", &a.id).refused());
        }
    }
    // Each disclosure is in the person's accounting (no delay was ordered,
    // the cover's notice waits for its end).
    let acc = v
        .accounting(&v.principal("officer").unwrap(), "cust-a", false)
        .unwrap();
    let natures: Vec<&str> = acc.entries.iter().map(|e| e.nature.as_str()).collect();
    assert_eq!(
        natures,
        ["court_order", "warrant", "written_request", "subpoena"]
    );
    assert!(acc.entries.iter().all(|e| e.recipient_principal == "fbi"));
    let all = v
        .accounting(&v.principal("officer").unwrap(), "cust-a", true)
        .unwrap();
    assert_eq!(all.entries.len(), 6, "the cover was fetched twice");
    assert!(all.entries[4].withheld_until.is_some());
    assert!(
        v.accounting(&v.principal("officer").unwrap(), "cust-b", true)
            .unwrap()
            .entries
            .is_empty()
    );
    // Only a role answering the person reads it.
    assert!(
        v.accounting(&v.principal("fbi").unwrap(), "cust-a", false)
            .is_err()
    );

    let r = v.transparency_report().unwrap();
    assert_eq!(r.requests, 5);
    assert_eq!(r.by_agency["fbi"]["fetched"], 5);
    assert_eq!(r.by_kind.len(), 5);
    assert_eq!(r.mail_covers.requested, 1);
    assert_eq!(r.mail_covers.approved, 1);
    assert_eq!(r.disclosures.fetches, 6);
    assert!(
        v.verify_log(&postvault::VerifyOptions::default())
            .unwrap()
            .ok
    );
}

#[test]
fn mail_cover_recording_follows_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault(dir.path(), &c);
    let record = |order: &str, subject: &str, sender: &str| {
        json!({"subject": subject, "category": "mail_cover_record", "purpose": "mail_cover",
            "legal_basis": "39 CFR 233.3", "fields": {"order_id": order, "recorded_on": "2026-11-02",
            "sender_as_shown": sender, "return_address": "9 Other St, Chicago IL"}})
        .to_string()
    };
    let a = submit(&v, "fbi", &mail_cover());
    assert_eq!(a.status, "pending_approval", "{:?}", a.reasons);
    // Nothing is recorded before the order is approved.
    let r = collect(
        &v,
        "inspector",
        &record(&a.id, "cust-a", "pvmarkCover sender"),
    );
    assert_eq!(r.errors[0].code, "no_active_cover");
    assert!(!approve(&v, "officer", &a.id).refused());
    // A collector records no cover, so its answer is the same for the
    // covered person and anyone else: it learns nothing of who is covered.
    for subject in ["cust-a", "cust-b"] {
        let r = collect(&v, "ingest", &record(&a.id, subject, "pvmarkCover sender"));
        assert_eq!((r.accepted, r.errors[0].code.as_str()), (0, "denied"));
    }
    // Only about the order's subject, never the subject's attorney's mail.
    let r = collect(
        &v,
        "inspector",
        &record(&a.id, "cust-b", "pvmarkCover sender"),
    );
    assert_eq!(r.errors[0].code, "no_active_cover");
    let r = collect(
        &v,
        "inspector",
        &record(&a.id, "cust-a", "Law office of H.  COUNSEL"),
    );
    assert_eq!(r.errors[0].code, "attorney_correspondence");
    assert_eq!(r.errors[0].rule.as_deref(), Some("R15"));
    let r = collect(
        &v,
        "inspector",
        &record(&a.id, "cust-a", "pvmarkCover sender"),
    );
    assert_eq!(r.accepted, 1, "{:?}", r.errors);
    // The record is sealed under the order's key, not the person's.
    let keys = rusqlite::Connection::open(dir.path().join("keys.db")).unwrap();
    let n: i64 = keys
        .query_row(
            "SELECT count(*) FROM secrets WHERE name LIKE 'cover:%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    // The postal inspection role reads it for the cover's purpose.
    let inspector = v.principal("inspector").unwrap();
    let read = v.read(&inspector, "cust-a", "mail_cover").unwrap();
    assert_eq!(
        read.records
            .iter()
            .filter(|r| r.category == "mail_cover_record")
            .count(),
        1
    );

    // A second order on the same person sees only its own records.
    let b = submit(
        &v,
        "fbi",
        &with(
            mail_cover(),
            &[
                ("instrument_id", json!("MC-2")),
                ("case_id", json!("FBI-MC-2")),
            ],
        ),
    );
    assert!(!approve(&v, "officer", &b.id).refused());
    let pb = fetch(&v, "fbi", &b.id);
    assert!(
        pb.subjects[0]
            .records
            .iter()
            .all(|r| r.category != "mail_cover_record")
    );
    let pa = fetch(&v, "fbi", &a.id);
    assert_eq!(
        pa.subjects[0]
            .records
            .iter()
            .filter(|r| r.category == "mail_cover_record")
            .count(),
        1
    );
    // Another agency's court order does not reach the running, secret cover.
    let co = submit(
        &v,
        "ice",
        &with(
            court_order(),
            &[("portions", json!(["mail_cover_record", "address"]))],
        ),
    );
    assert!(
        !approve(&v, "officer", &co.id).refused(),
        "{:?}",
        co.reasons
    );
    let pc = fetch(&v, "ice", &co.id);
    assert!(!pc.refused());
    assert!(
        pc.subjects[0]
            .records
            .iter()
            .all(|r| r.category == "address")
    );

    // Indictment ends the second cover: nothing more is recorded under it.
    let end = v
        .disclose_end(&v.principal("officer").unwrap(), &b.id, EndReason::Indicted)
        .unwrap();
    assert_eq!(end.status, "ended");
    let r = collect(&v, "inspector", &record(&b.id, "cust-a", "another sender"));
    assert_eq!(r.errors[0].code, "no_active_cover");
    // What it recorded stays available to its requester after the end (R18),
    // and fetching it does not reopen the cover.
    assert!(!fetch(&v, "fbi", &b.id).refused());
    let r = collect(&v, "inspector", &record(&b.id, "cust-a", "another sender"));
    assert_eq!(r.errors[0].code, "no_active_cover");

    // The first was improperly ordered: everything recorded under it is gone.
    let agency_only = v
        .disclose_end(
            &v.principal("fbi").unwrap(),
            &a.id,
            EndReason::ImproperlyOrdered,
        )
        .unwrap();
    assert_eq!(codes(&agency_only), ["not_permitted"]);
    let d = v
        .disclose_end(
            &v.principal("officer").unwrap(),
            &a.id,
            EndReason::ImproperlyOrdered,
        )
        .unwrap();
    assert_eq!(d.status, "destroyed");
    let read = v.read(&inspector, "cust-a", "mail_cover").unwrap();
    assert!(
        read.records
            .iter()
            .all(|r| r.category != "mail_cover_record")
    );
    assert_eq!(leaf(&v, read.log_index)["count"], json!(read.records.len()));
    let p = fetch(&v, "fbi", &a.id);
    assert!(p.refused() && p.subjects.is_empty());
    // The requester is told why.
    let shown = v
        .disclosure_show(&v.principal("fbi").unwrap(), &a.id)
        .unwrap()
        .unwrap();
    assert_eq!(shown.end_reason.as_deref(), Some("improperly_ordered"));
    assert!(shown.end_explanation.unwrap().contains("destroyed"));
    assert_eq!(v.transparency_report().unwrap().mail_covers.destroyed, 1);

    // After its 30 days a cover records nothing; its requester's access ends
    // 60 days after that.
    let e = submit(
        &v,
        "fbi",
        &with(
            mail_cover(),
            &[
                ("instrument_id", json!("MC-3")),
                ("case_id", json!("FBI-MC-3")),
            ],
        ),
    );
    assert!(!approve(&v, "officer", &e.id).refused());
    c.advance(30 * DAY);
    let r = collect(&v, "inspector", &record(&e.id, "cust-a", "late sender"));
    assert_eq!(r.errors[0].code, "no_active_cover");
    assert!(!fetch(&v, "fbi", &e.id).refused());
    c.advance(60 * DAY);
    assert_eq!(package_codes(&fetch(&v, "fbi", &e.id)), ["expired"]);
}

#[test]
fn quotas_hold_requests_over_rolling_windows() {
    quotas_hold_requests_over_rolling_windows_on(&Backend::Sqlite);
}

pub fn quotas_hold_requests_over_rolling_windows_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let req = |n: usize, case: &str| {
        with(
            written_request(),
            &[
                ("instrument_id", json!(format!("B7-{n}"))),
                ("case_id", json!(case)),
                // Renaming the agency does not evade the per-agency quota.
                ("agency", json!(format!("Agency {n}"))),
            ],
        )
    };
    // 25 a day per agency: the 26th is held for review with an alert.
    for n in 0..25 {
        let a = submit(&v, "ice", &req(n, &format!("case-{n}")));
        assert_eq!(a.status, "pending_approval", "{n}: {:?}", a.reasons);
    }
    let held = submit(&v, "ice", &req(25, "case-25"));
    assert_eq!(held.status, "held_for_review");
    assert!(
        held.alerts
            .iter()
            .any(|a| a.starts_with("quota_agency_24h"))
    );
    assert!(held.reasons.is_empty());
    // Another agency is not affected (with a document of its own: the
    // same document is used once, whoever presents it).
    assert_eq!(
        submit(
            &v,
            "fbi",
            &with(req(0, "f-0"), &[("instrument_id", json!("F-B7-0"))])
        )
        .status,
        "pending_approval"
    );
    // A held request is reviewed by an officer like any other.
    assert_eq!(approve(&v, "officer", &held.id).status, "approved");
    // A day later the 24-hour window has moved on.
    c.advance(DAY + 1);
    assert_eq!(
        submit(&v, "ice", &req(26, "case-26")).status,
        "pending_approval"
    );
    // Ten a month per case: the eleventh on one case is held.
    for n in 0..9 {
        assert_eq!(
            submit(&v, "ice", &req(100 + n, "case-26")).status,
            "pending_approval"
        );
    }
    let case = submit(&v, "ice", &req(200, "case-26"));
    assert_eq!(case.status, "held_for_review");
    assert!(case.alerts.iter().any(|a| a.starts_with("quota_case_30d")));
    // A refused request still counts: many single-person requests cannot
    // add up to a dragnet by being sent badly.
    c.advance(31 * DAY);
    for n in 0..25 {
        let a = submit(
            &v,
            "ice",
            &with(
                req(300 + n, &format!("r-{n}")),
                &[("authority", Value::Null)],
            ),
        );
        assert_eq!(a.status, "refused");
    }
    let after = submit(&v, "ice", &req(400, "r-x"));
    assert_eq!(after.status, "held_for_review");
    let r = v.transparency_report().unwrap();
    assert_eq!(r.held_for_review, 3, "{:?}", r.by_outcome);
    assert_eq!(r.alerts["quota_agency_24h"], 2, "{:?}", r.alerts);
    assert_eq!(r.alerts["quota_case_30d"], 1, "{:?}", r.alerts);
    assert_eq!(r.refusals_by_reason["missing_authority"], 25);
}

#[test]
fn a_delay_order_hides_the_disclosure_from_the_person_until_it_expires() {
    a_delay_order_hides_the_disclosure_from_the_person_until_it_expires_on(&Backend::Sqlite);
}

pub fn a_delay_order_hides_the_disclosure_from_the_person_until_it_expires_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let officer = v.principal("officer").unwrap();
    let a = submit(
        &v,
        "ice",
        &with(
            court_order(),
            &[("delay_notice_until", json!("2027-01-30"))],
        ),
    );
    assert!(!approve(&v, "officer2", &a.id).refused());
    let p = fetch(&v, "ice", &a.id);
    assert!(!p.refused());
    // While the delay stands: not in the person's accounting, no notice,
    // and the person's tag key does not find the disclosure leaf.
    assert!(
        v.accounting(&officer, "cust-a", false)
            .unwrap()
            .entries
            .is_empty()
    );
    assert_eq!(
        v.accounting(&officer, "cust-a", true)
            .unwrap()
            .entries
            .len(),
        1
    );
    assert!(v.disclosure_notices(&officer).unwrap().is_empty());
    let key = v.subject_tag_key("cust-a").unwrap().unwrap();
    let actions = |v: &Vault| -> Vec<String> {
        v.find_leaves(&key)
            .unwrap()
            .1
            .iter()
            .filter_map(|f| f.event.as_ref().map(|e| e.action.clone()))
            .collect()
    };
    assert!(!actions(&v).contains(&"disclose".to_string()));
    // When it expires the person is told, once, and can find and prove it.
    c.advance(90 * DAY);
    let notices = v.disclosure_notices(&officer).unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].subject, "cust-a");
    assert_eq!(
        notices[0].delayed_until.as_deref(),
        Some("2027-01-30T00:00:00.000Z")
    );
    assert!(v.disclosure_notices(&officer).unwrap().is_empty());
    assert!(actions(&v).contains(&"disclosure_notice".to_string()));
    crate::leaves_found(&v, &key);
    let acc = v.accounting(&officer, "cust-a", false).unwrap();
    assert_eq!(acc.entries.len(), 1);
    let e = &acc.entries[0];
    assert_eq!(
        (e.nature.as_str(), e.purpose.as_str()),
        ("court_order", "criminal_law_enforcement")
    );
    assert_eq!(e.recipient, "pv-secret agency");
    assert_eq!(e.log_index, p.subjects[0].log_index);
    let proof = v.prove_inclusion(e.log_index, None).unwrap();
    assert!(!proof.hashes.is_empty());
    // Reading the accounting is itself accounted for, tagged for the person.
    assert!(actions(&v).contains(&"accounting_read".to_string()));
    // A cover's notice waits for the cover's end.
    let mc = submit(
        &v,
        "fbi",
        &with(
            mail_cover(),
            &[
                ("issued_at", json!("2027-01-31")),
                ("start", json!("2027-01-31")),
            ],
        ),
    );
    assert!(
        !approve(&v, "officer", &mc.id).refused(),
        "{:?}",
        mc.reasons
    );
    assert!(!fetch(&v, "fbi", &mc.id).refused());
    assert!(v.disclosure_notices(&officer).unwrap().is_empty());
    c.advance(30 * DAY);
    assert_eq!(v.disclosure_notices(&officer).unwrap().len(), 1);
}

/// `examples/instruments/*.json` are the examples of docs/instruments.md,
/// byte for byte, one per kind; each passes the gateway at the date the
/// documentation checks them (2026-03-15T12:00:00Z) and is approved by an
/// officer.
#[test]
fn the_example_instrument_files_are_the_documented_ones_and_pass_the_gateway() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/instruments.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples/instruments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), blocks.len());
    let c = Arc::new(FixedClock::new(
        postvault_policy::disclosure::parse_iso("2026-03-15T12:00:00Z").unwrap(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let v = gateway_vault(tmp.path(), &c);
    let mut kinds = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            blocks.contains(&text.as_str()),
            "{} is not in docs/instruments.md",
            f.display()
        );
        let kind = serde_json::from_str::<Value>(&text).unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(f.file_stem().unwrap().to_str(), Some(kind.as_str()));
        let a = v
            .disclose_submit(&v.principal("fbi").unwrap(), &text)
            .unwrap();
        assert_eq!(a.status, "pending_approval", "{kind}: {:?}", a.reasons);
        assert!(a.alerts.is_empty(), "{kind}: {:?}", a.alerts);
        let a = v
            .disclose_approve(
                &v.principal("officer").unwrap(),
                &a.id,
                &ApproveOptions::default(),
            )
            .unwrap();
        assert_eq!(a.status, "approved", "{kind}: {:?}", a.reasons);
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "court_order",
            "mail_cover",
            "subpoena",
            "warrant",
            "written_request"
        ]
    );
}
