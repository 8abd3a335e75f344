//! The engine's contract with a pack (`[engine]` in `taxonomy.toml`): the
//! engine names no purpose, category or role of its own. A small library
//! pack with ids of its own runs collection, reads, consent, corrections,
//! subject access, a disclosure with a protective order on file and erasure;
//! the postal pack with every engine id renamed runs mail covers and
//! protective orders. A postal id written back into the facade fails both.

use std::sync::Arc;

use postvault::{ApproveOptions, EndReason, FixedClock, OpenOptions, PackSources, Vault};
use serde_json::{Value, json};

use super::disclosure::{approve, codes, court_order, fetch, mail_cover, submit, with};
use super::{Backend, clock, collect, line, opts, person};

/// The ids the postal pack gives the engine's parts: none may appear in
/// anything a vault under another pack writes or answers.
const POSTAL_ENGINE_IDS: [&str; 5] = [
    "subject_access",
    "disclosure_accounting",
    "protective_order",
    "mail_cover_record",
    "auditor",
];

/// The library test pack (`tests/packs/library`).
pub fn library() -> PackSources {
    PackSources {
        taxonomy: include_str!("../packs/library/taxonomy.toml").to_string(),
        schema: include_str!("../packs/library/schema.cedarschema").to_string(),
        policies: include_str!("../packs/library/policies.cedar").to_string(),
        disclosure: Some(include_str!("../packs/library/disclosure.toml").to_string()),
    }
}

fn with_pack(c: &Arc<FixedClock>, pack: PackSources) -> OpenOptions {
    OpenOptions {
        pack: Some(pack),
        ..opts(c)
    }
}

/// Every leaf of the log, as its JSON text.
fn leaves(v: &Vault) -> Vec<String> {
    let n = v.store().log_size().unwrap();
    v.store()
        .leaves(0, n)
        .unwrap()
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect()
}

fn leaf(v: &Vault, idx: u64) -> Value {
    serde_json::from_slice(&v.store().leaves(idx, idx + 1).unwrap()[0]).unwrap()
}

/// No leaf names one of `ids`.
fn assert_no_leaf_names(v: &Vault, ids: &[&str]) {
    for l in leaves(v) {
        for id in ids {
            assert!(
                !l.contains(&format!("\"{id}\"")),
                "a leaf names `{id}`: {l}"
            );
        }
    }
}

fn categories(records: &[postvault::ReadRecord]) -> Vec<&str> {
    let mut c: Vec<&str> = records.iter().map(|r| r.category.as_str()).collect();
    c.sort_unstable();
    c
}

fn patron_court_order(subject: &str) -> Value {
    with(
        court_order(),
        &[
            ("instrument_id", json!(format!("LIB-CO-{subject}"))),
            ("case_id", json!(format!("case-{subject}"))),
            ("subjects", json!([{"id": subject}])),
            ("portions", json!(["patron", "loan"])),
        ],
    )
}

#[test]
fn a_library_pack_runs_the_engine_without_postal_ids() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = Backend::Sqlite
        .init(dir.path(), with_pack(&c, library()))
        .unwrap();
    let e = v.pack().taxonomy().engine();
    assert!(e.declared());
    assert_eq!(e.subject_access_purpose(), Some("patron_request"));
    assert_eq!(e.mail_cover_record_category(), None);
    for (_, id) in e.entries() {
        assert!(id.is_none_or(|id| !POSTAL_ENGINE_IDS.contains(&id)));
    }
    for (name, role) in [
        ("desk", "circulation_desk"),
        ("lending", "lending"),
        ("notices", "holds_notices"),
        ("outreach", "newsletter"),
        ("librarian", "librarian"),
        ("self", "patron_request"),
        ("police", "police"),
        ("trustee", "trustee"),
    ] {
        v.add_principal(name, role).unwrap();
    }
    let p = |name: &str| v.principal(name).unwrap();

    // Collection, minimized as the pack says.
    let mut lines = Vec::new();
    for who in ["pat-1", "pat-2"] {
        lines.push(line(who, "patron", "lending", json!({
            "name": format!("Reader {who}"), "email": format!("{who}@example.org"), "card": "21000123"})));
        lines.push(line(who, "loan", "lending", json!({
            "item_id": "b-77", "title": "A Field Guide", "borrowed_on": "2026-10-20", "due_on": "2026-11-10"})));
    }
    lines.push(line(
        "pat-2",
        "confidential_patron",
        "lending",
        json!({"on_file": true, "issued_on": "2026-03-01"}),
    ));
    let r = collect(&v, "desk", &lines.join("\n"));
    assert_eq!((r.accepted, r.rejected), (5, 0), "{:?}", r.errors);
    let r = collect(
        &v,
        "desk",
        &line(
            "pat-3",
            "loan",
            "holds_notices",
            json!({"item_id": "b-1", "title": "t", "borrowed_on": "2026-11-01"}),
        ),
    );
    assert_eq!(r.rejected, 1, "holds notices do not collect loans");

    // Reads: allowed, withheld, denied; a postal purpose is no purpose here.
    let read = v.read(&p("lending"), "pat-1", "lending").unwrap();
    assert_eq!(categories(&read.records), ["loan", "patron"]);
    let read = v.read(&p("notices"), "pat-1", "holds_notices").unwrap();
    assert_eq!(categories(&read.records), ["patron"]);
    assert!(read.withheld.iter().any(|w| w.category == "loan"));
    let read = v.read(&p("notices"), "pat-1", "lending").unwrap();
    assert!(read.denied() && read.records.is_empty());
    assert_eq!(
        v.read(&p("librarian"), "pat-1", "subject_access")
            .unwrap_err()
            .code(),
        "unknown_purpose"
    );

    // Consent is recorded by the role acting for the pack's subject-access
    // purpose, and opens the newsletter's read.
    let read = v.read(&p("outreach"), "pat-1", "newsletter").unwrap();
    assert!(read.records.is_empty());
    let refused = v
        .set_consent(&p("desk"), "pat-1", "newsletter", true)
        .unwrap_err();
    assert_eq!(refused.code(), "not_permitted");
    assert!(
        refused
            .to_string()
            .contains("a role acting for `patron_request` may"),
        "{refused}"
    );
    v.set_consent(&p("librarian"), "pat-1", "newsletter", true)
        .unwrap();
    let read = v.read(&p("outreach"), "pat-1", "newsletter").unwrap();
    assert_eq!(categories(&read.records), ["patron"]);

    // A correction keeps history that only the subject-access purpose sees;
    // the accounting of disclosures is never corrected.
    let fixed = r#"{"name": "Reader One", "card": "21000124"}"#;
    assert_eq!(
        v.correct(&p("lending"), "pat-1", "patron", fixed, None)
            .unwrap_err()
            .code(),
        "not_permitted"
    );
    let kept = v
        .correct(
            &p("librarian"),
            "pat-1",
            "disclosure_log",
            r#"{"disclosure_id": "x"}"#,
            None,
        )
        .unwrap_err();
    assert!(
        kept.to_string().contains("kept by the vault itself"),
        "{kept}"
    );
    let corrected = v
        .correct(&p("librarian"), "pat-1", "patron", fixed, None)
        .unwrap();
    let mine = v.read(&p("self"), "pat-1", "patron_request").unwrap();
    let patrons: Vec<_> = mine
        .records
        .iter()
        .filter(|r| r.category == "patron")
        .collect();
    assert_eq!(patrons.len(), 2, "the person sees the history");
    assert_eq!(
        patrons[0].superseded_by.as_deref(),
        Some(corrected.record.as_str())
    );
    let read = v.read(&p("lending"), "pat-1", "lending").unwrap();
    assert_eq!(categories(&read.records), ["loan", "patron"]);

    // A disclosure: a subpoena naming a patron with a confidentiality order
    // on file (the pack's protective-order category) is held for the
    // librarians, who alone learn why; a court order goes through.
    let sub = submit(
        &v,
        "police",
        &with(
            super::disclosure::subpoena(),
            &[
                ("subjects", json!([{"id": "pat-2"}])),
                ("portions", json!(["patron"])),
            ],
        ),
    );
    assert_eq!(sub.status, "pending_approval", "{:?}", sub.reasons);
    let shown = v
        .disclosure_show(&p("librarian"), &sub.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        shown.office_notes,
        ["protective_order", "protective_order_needs_court_order"]
    );
    let blocked = approve(&v, "librarian", &sub.id);
    assert_eq!(codes(&blocked), ["protective_order_needs_court_order"]);
    let police_view = v.disclosure_show(&p("police"), &sub.id).unwrap().unwrap();
    assert!(police_view.office_notes.is_empty());

    let co = submit(&v, "police", &patron_court_order("pat-1"));
    assert_eq!(co.status, "pending_approval", "{:?}", co.reasons);
    assert!(
        !v.disclose_approve(&p("librarian"), &co.id, &ApproveOptions::default())
            .unwrap()
            .refused()
    );
    let package = fetch(&v, "police", &co.id);
    assert!(!package.refused(), "{:?}", package.reasons);
    assert_eq!(package.purpose, "court_order");
    assert_eq!(categories(&package.subjects[0].records), ["loan", "patron"]);

    // The pack's auditor role sees every request; another role its own.
    assert_eq!(v.disclosure_list(&p("trustee")).unwrap().len(), 2);
    assert!(v.disclosure_list(&p("desk")).unwrap().is_empty());

    // The accounting and the subject access report, through the pack's
    // subject-access purpose; their leaves name the pack's ids.
    let acc = v.accounting(&p("self"), "pat-1", false).unwrap();
    assert_eq!(acc.entries.len(), 1);
    assert_eq!(acc.entries[0].recipient_principal, "police");
    let l = leaf(&v, acc.log_index);
    assert_eq!(
        (&l["purpose"], &l["categories"]),
        (&json!("patron_request"), &json!(["disclosure_log"]))
    );
    assert_eq!(
        v.accounting(&p("lending"), "pat-1", false)
            .unwrap_err()
            .code(),
        "not_permitted"
    );
    let report = v.subject_report(&p("librarian"), "pat-1").unwrap();
    assert_eq!(report.disclosures.len(), 1);
    assert_eq!(report.consents.len(), 1);
    assert_eq!(
        categories(&report.records),
        ["loan", "patron", "patron"],
        "the history too"
    );
    assert!(report.proofs_verified);
    assert_eq!(
        v.subject_report(&p("lending"), "pat-1").unwrap_err().code(),
        "not_permitted"
    );

    // Erasure: the person's own request through the subject-access role,
    // one person; more than one needs a librarian.
    let own = v
        .erase(&p("self"), &["pat-1".to_string()], &mut |_| {})
        .unwrap();
    assert_eq!(own.erased, 1);
    let l = leaf(&v, own.first_leaf);
    assert_eq!(
        (&l["action"], &l["purpose"]),
        (&json!("erase"), &json!("patron_request"))
    );
    assert_eq!(
        v.erase(
            &p("self"),
            &["pat-2".to_string(), "pat-3".to_string()],
            &mut |_| {}
        )
        .unwrap_err()
        .code(),
        "not_permitted"
    );
    let officer = v
        .erase(&p("librarian"), &["pat-2".to_string()], &mut |_| {})
        .unwrap();
    assert_eq!(officer.erased, 1);
    let after = v.read(&p("self"), "pat-1", "patron_request").unwrap();
    assert!(after.records.is_empty());

    // Nothing the vault wrote names a postal id.
    assert_no_leaf_names(&v, &POSTAL_ENGINE_IDS);
    assert!(v.verify_log(&Default::default()).unwrap().ok);
}

/// `text` with every postal id of an engine part renamed.
fn rename(text: &str) -> String {
    text.replace("\"subject_access\"", "\"own_records\"")
        .replace("\nsubject_access ", "\nown_records    ")
        .replace("\"disclosure_accounting\"", "\"accounting_entry\"")
        .replace("\"protective_order\"", "\"safety_order\"")
        .replace("\"mail_cover_record\"", "\"cover_entry\"")
        .replace("\"auditor\"", "\"overseer\"")
}

/// The postal pack with every id the engine gives a part renamed.
fn renamed_postal() -> PackSources {
    let mut s = PackSources::postal();
    s.taxonomy = rename(&s.taxonomy);
    s.disclosure = s.disclosure.as_deref().map(rename);
    for id in POSTAL_ENGINE_IDS {
        assert!(!s.taxonomy.contains(&format!("\"{id}\"")), "{id}");
        assert!(
            !s.disclosure
                .as_ref()
                .unwrap()
                .contains(&format!("\"{id}\"")),
            "{id}"
        );
    }
    s
}

fn cover_line(order: &str, sender: &str) -> String {
    json!({"subject": "cust-a", "category": "cover_entry", "purpose": "mail_cover",
        "legal_basis": "39 CFR 233.3", "fields": {"order_id": order, "recorded_on": "2026-11-02",
        "sender_as_shown": sender, "return_address": "9 Other St, Chicago IL"}})
    .to_string()
}

fn count(records: &[postvault::ReadRecord], category: &str) -> usize {
    records.iter().filter(|r| r.category == category).count()
}

#[test]
fn postal_with_every_engine_id_renamed_runs_covers_and_protective_orders() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = Backend::Sqlite
        .init(dir.path(), with_pack(&c, renamed_postal()))
        .unwrap();
    for (name, role) in [
        ("ingest", "collector"),
        ("fbi", "agency"),
        ("dea", "agency"),
        ("officer", "privacy_officer"),
        ("inspector", "mail_cover"),
        ("overseer", "overseer"),
        ("own", "own_records"),
    ] {
        v.add_principal(name, role).unwrap();
    }
    let p = |name: &str| v.principal(name).unwrap();
    let lines = [
        person("cust-a", "pvmarkA"),
        person("cust-p", "pvmarkP"),
        line(
            "cust-p",
            "safety_order",
            "forwarding",
            json!({"on_file": true, "issued_on": "2026-01-05"}),
        ),
    ];
    let r = collect(&v, "ingest", &lines.join("\n"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors);

    // The protective order on file, in the renamed category, holds a
    // written request for the office.
    let wr = submit(
        &v,
        "dea",
        &with(
            super::disclosure::written_request(),
            &[("subjects", json!([{"id": "cust-p"}]))],
        ),
    );
    let blocked = approve(&v, "officer", &wr.id);
    assert_eq!(codes(&blocked), ["protective_order_needs_court_order"]);

    // A cover's records are of the renamed category: refused before the
    // order is approved, sealed under its key after.
    let mc = with(
        mail_cover(),
        &[(
            "portions",
            json!(["scan_event", "mail_image", "cover_entry"]),
        )],
    );
    let a = submit(&v, "fbi", &mc);
    assert_eq!(a.status, "pending_approval", "{:?}", a.reasons);
    let r = collect(&v, "inspector", &cover_line(&a.id, "pvmarkCover sender"));
    assert_eq!(r.errors[0].code, "no_active_cover");
    assert!(!approve(&v, "officer", &a.id).refused());
    let r = collect(
        &v,
        "inspector",
        &cover_line(&a.id, "Law office of H. COUNSEL"),
    );
    assert_eq!(r.errors[0].code, "attorney_correspondence");
    let r = collect(&v, "inspector", &cover_line(&a.id, "pvmarkCover sender"));
    assert_eq!(r.accepted, 1, "{:?}", r.errors);
    let read = v.read(&p("inspector"), "cust-a", "mail_cover").unwrap();
    assert_eq!(count(&read.records, "cover_entry"), 1);

    // A second cover sees only what was recorded under its own order.
    let b = submit(
        &v,
        "fbi",
        &with(
            mc.clone(),
            &[
                ("instrument_id", json!("MC-2")),
                ("case_id", json!("FBI-MC-2")),
            ],
        ),
    );
    assert!(!approve(&v, "officer", &b.id).refused());
    assert_eq!(
        count(&fetch(&v, "fbi", &b.id).subjects[0].records, "cover_entry"),
        0
    );
    assert_eq!(
        count(&fetch(&v, "fbi", &a.id).subjects[0].records, "cover_entry"),
        1
    );

    // Kept by the vault: never corrected.
    let kept = v
        .correct(
            &p("own"),
            "cust-a",
            "cover_entry",
            r#"{"order_id": "x"}"#,
            None,
        )
        .unwrap_err();
    assert!(
        kept.to_string().contains("kept by the vault itself"),
        "{kept}"
    );

    // Improperly ordered: destroyed, and the leaves name the renamed
    // category.
    let d = v
        .disclose_end(&p("officer"), &a.id, EndReason::ImproperlyOrdered)
        .unwrap();
    assert_eq!(d.status, "destroyed");
    let read = v.read(&p("inspector"), "cust-a", "mail_cover").unwrap();
    assert_eq!(count(&read.records, "cover_entry"), 0);
    let cover_leaves: Vec<Value> = leaves(&v)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["action"] == "cover_intent" || l["action"] == "cover_done")
        .collect();
    assert_eq!(cover_leaves.len(), 2);
    assert!(
        cover_leaves
            .iter()
            .all(|l| l["categories"] == json!(["cover_entry"]))
    );

    // The renamed auditor and subject-access roles do what the postal ones
    // did.
    assert_eq!(v.disclosure_list(&p("overseer")).unwrap().len(), 3);
    let acc = v.accounting(&p("own"), "cust-a", false).unwrap();
    assert_eq!(
        leaf(&v, acc.log_index)["categories"],
        json!(["accounting_entry"])
    );
    let report = v.subject_report(&p("own"), "cust-a").unwrap();
    assert!(report.proofs_verified);

    assert_no_leaf_names(&v, &POSTAL_ENGINE_IDS);
}

/// A pack without disclosure rules needs no gateway part: the gateway
/// refuses every instrument and the rights channel still answers the person.
#[test]
fn a_pack_without_disclosure_rules_runs_the_rights_channel() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let mut pack = library();
    pack.disclosure = None;
    for key in [
        "disclosure_accounting_category",
        "protective_order_category",
        "auditor_role",
    ] {
        let start = pack.taxonomy.find(&format!("\n{key} = ")).unwrap() + 1;
        let end = start + pack.taxonomy[start..].find('\n').unwrap() + 1;
        pack.taxonomy.replace_range(start..end, "");
    }
    let v = Backend::Sqlite
        .init(dir.path(), with_pack(&c, pack))
        .unwrap();
    for (name, role) in [
        ("desk", "circulation_desk"),
        ("self", "patron_request"),
        ("police", "police"),
    ] {
        v.add_principal(name, role).unwrap();
    }
    let r = collect(
        &v,
        "desk",
        &line(
            "pat-1",
            "patron",
            "lending",
            json!({"name": "R", "card": "1"}),
        ),
    );
    assert_eq!(r.accepted, 1, "{:?}", r.errors);
    let refused = submit(&v, "police", &patron_court_order("pat-1"));
    assert_eq!(refused.status, "refused");
    let self_ = v.principal("self").unwrap();
    let acc = v.accounting(&self_, "pat-1", false).unwrap();
    assert!(acc.entries.is_empty());
    assert_eq!(leaf(&v, acc.log_index)["categories"], json!([]));
    let report = v.subject_report(&self_, "pat-1").unwrap();
    assert_eq!(categories(&report.records), ["patron"]);
    assert_eq!(
        v.erase(&self_, &["pat-1".to_string()], &mut |_| {})
            .unwrap()
            .erased,
        1
    );
    assert_no_leaf_names(&v, &POSTAL_ENGINE_IDS);
}
