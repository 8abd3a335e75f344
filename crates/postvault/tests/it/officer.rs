//! The privacy officer sees what they approve: the opened instrument, every
//! field, beside every check the pack made and what it cannot check; each
//! opening is one leaf. Nobody else sees more than before.

use postvault::Vault;
use serde_json::json;

use super::{Backend, clock};
use crate::disclosure::{
    approve, court_order, gateway_vault_on, leaf, mail_cover, submit, subpoena, with,
};

fn show(v: &Vault, who: &str, id: &str) -> postvault::RequestView {
    v.disclosure_show(&v.principal(who).unwrap(), id)
        .unwrap()
        .unwrap()
}

#[test]
fn the_officer_sees_every_field_beside_the_checks() {
    the_officer_sees_every_field_beside_the_checks_on(&Backend::Sqlite);
}

pub fn the_officer_sees_every_field_beside_the_checks_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    // The blind approvals of the red team: a subpoena citing an
    // immigration statute, signed by an "Intern" claiming the agency head's
    // level, naming a person with a protective order on file.
    let inst = with(
        subpoena(),
        &[
            ("authority", json!("8 U.S.C. 1357")),
            (
                "signer",
                json!({"name": "I. Nobody", "title": "Intern", "level": "agency_head"}),
            ),
            ("subjects", json!([{"id": "cust-p"}])),
            ("portions", json!(["address"])),
        ],
    );
    let a = submit(&v, "ice", &inst);
    assert_eq!(a.status, "pending_approval", "{:?}", a.reasons);

    let size = v.store().log_size().unwrap();
    let view = show(&v, "officer", &a.id);
    assert_eq!(
        v.store().log_size().unwrap(),
        size + 1,
        "one leaf per opening"
    );
    let o = view.officer.as_ref().expect("the officer's view");
    let l = leaf(&v, o.log_index);
    assert_eq!(l["action"], "instrument_open");
    assert_eq!(l["instrument"], json!(a.id));
    assert_eq!(l["principal"]["role"], "privacy_officer");
    // Every field of the instrument.
    let i = o.instrument.as_ref().unwrap();
    assert_eq!(i["authority"], "8 U.S.C. 1357");
    assert_eq!(i["signer"]["title"], "Intern");
    assert_eq!(i["signer"]["level"], "agency_head");
    assert_eq!(
        i["agency"],
        "Internal Revenue Service, Criminal Investigation"
    );
    assert_eq!(i["instrument_id"], "SUB-1");
    assert_eq!(i["case_id"], "CI-1");
    assert_eq!(i["subjects"], json!([{"id": "cust-p"}]));
    assert_eq!(i["ground"], "criminal_law_enforcement");
    assert_eq!(i["portions"], json!(["address"]));
    assert!(i["time_range"]["from"].is_string() && i["issued_at"].is_string());
    // Beside every check and its result; R9 for the office.
    let check = |name: &str| {
        o.checks
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    };
    let result = |name: &str| serde_json::to_value(check(name).result).unwrap();
    assert_eq!(result("missing_authority"), "passed");
    assert_eq!(result("signer_level_too_low"), "passed");
    assert_eq!(result("protective_order"), "failed");
    assert!(check("protective_order").messages[0].contains("R9"));
    assert!(o.checks.len() > 20);
    assert!(
        o.checks
            .iter()
            .all(|c| !c.what.is_empty() && !c.rule.is_empty())
    );
    // What the pack cannot check, for the officer to confirm.
    assert!(o.cannot_check.iter().any(|s| s.contains("8 U.S.C.")));
    assert!(o.cannot_check.iter().any(|s| s.contains("title")));
    assert_eq!(
        view.office_notes,
        ["protective_order", "protective_order_needs_court_order"]
    );
    // A second opening is a second leaf.
    let again = show(&v, "officer", &a.id);
    assert_eq!(again.officer.unwrap().log_index, o.log_index + 1);
    // The officer's list flags it, without opening anything.
    let size = v.store().log_size().unwrap();
    let list = v.disclosure_list(&v.principal("officer").unwrap()).unwrap();
    assert_eq!(v.store().log_size().unwrap(), size);
    let row = list.iter().find(|r| r.id == a.id).unwrap();
    assert_eq!(row.office_notes.len(), 2);
    assert!(row.officer.is_none());

    // The requester and the auditor see no more than before, and open
    // nothing.
    for who in ["ice", "auditor"] {
        let size = v.store().log_size().unwrap();
        let view = show(&v, who, &a.id);
        assert_eq!(v.store().log_size().unwrap(), size, "{who}");
        let text = serde_json::to_string(&view).unwrap();
        for hidden in [
            "officer",
            "office_notes",
            "protective",
            "Intern",
            "cust-p",
            "1357",
        ] {
            assert!(!text.contains(hidden), "{who}: {hidden} in {text}");
        }
        let list =
            serde_json::to_string(&v.disclosure_list(&v.principal(who).unwrap()).unwrap()).unwrap();
        assert!(!list.contains("protective"), "{who}");
    }

    // A court order: its court block, docket and judge.
    let co = submit(
        &v,
        "fbi",
        &with(court_order(), &[("instrument_id", json!("CO-o-1"))]),
    );
    let view = show(&v, "officer", &co.id);
    let i = view.officer.unwrap().instrument.unwrap();
    assert_eq!(i["court"]["docket"], "1:26-cr-1");
    assert_eq!(i["court"]["judge"], "B. Example");
    assert!(view.office_notes.is_empty());
}

#[test]
fn a_cover_extension_is_linked_to_its_order_in_the_ledger() {
    a_cover_extension_is_linked_to_its_order_in_the_ledger_on(&Backend::Sqlite);
}

pub fn a_cover_extension_is_linked_to_its_order_in_the_ledger_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = gateway_vault_on(b, dir.path(), &c);
    let first = submit(&v, "fbi", &mail_cover());
    assert!(!approve(&v, "officer", &first.id).refused());
    c.advance(28 * 86_400_000);
    let ext = submit(
        &v,
        "fbi",
        &with(
            mail_cover(),
            &[
                ("instrument_id", json!("MC-1-ext-1")),
                ("issued_at", json!("2026-11-29")),
                ("start", json!("2026-12-01")),
                ("extension_no", json!(1)),
                (
                    "benefit_statement",
                    json!("the first order tied the subject to the mailings"),
                ),
            ],
        ),
    );
    assert_eq!(ext.status, "pending_approval", "{:?}", ext.reasons);
    // The requester sees the link; the officer sees the run as the ledger
    // shows it.
    assert_eq!(
        show(&v, "fbi", &ext.id).extends.as_deref(),
        Some(first.id.as_str())
    );
    let view = show(&v, "officer", &ext.id);
    let run = view.officer.unwrap().cover_run.unwrap();
    assert_eq!(run.extends.as_deref(), Some(first.id.as_str()));
    assert_eq!((run.extension_no, run.declared_extension_no), (1, 1));
    assert_eq!(run.continuous_days, 60);
    assert_eq!(run.cap_days, 120);
    assert_eq!(run.run_started, "2026-11-01T00:00:00.000Z");
}
