//! The engine's contract with a pack (`[engine]`): what the postal pack
//! declares, how a bad declaration fails, what a pack without the table
//! gets, and how a change of it shows in a diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::contract::UNDECLARED_IDS;

/// The postal pack's version before it declared `[engine]`: what every
/// vault made until then recorded.
const POSTAL_BEFORE_ENGINE_TABLE: &str = "sha256:b68f9646f78a8b89";

fn line_with(src: &str, needle: &str) -> usize {
    let at = src
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the pack"));
    src[..at].matches('\n').count() + 1
}

/// The postal pack as it was before its collector stopped recording under
/// mail-cover orders (the inspection service's `mail_cover` role does).
fn postal_with_collector_recording_covers() -> PackSources {
    let mut src = PackSources::postal();
    let now = "description = \"an ingest service: collects for any purpose that collects but mail covers, reads nothing\"\n\
# Not mail_cover: recording under a cover order is the inspection service's\n\
# (the `mail_cover` role). Whether a line naming an order is accepted says\n\
# whether that person is under that cover; a collector must not learn it.\n\
collect_for = [\"delivery\", \"forwarding\", \"account_service\", \"payment_processing\", \"tracking_notifications\", \"informed_delivery\", \"fraud_prevention\", \"aml_compliance\", \"security_operations\", \"marketing\"]";
    let then = "description = \"an ingest service: collects for any purpose that collects, reads nothing\"\n\
collect_for = [\"delivery\", \"forwarding\", \"account_service\", \"payment_processing\", \"tracking_notifications\", \"informed_delivery\", \"fraud_prevention\", \"aml_compliance\", \"mail_cover\", \"security_operations\", \"marketing\"]";
    assert!(src.taxonomy.contains(now));
    src.taxonomy = src.taxonomy.replace(now, then);
    src
}

/// The postal pack without its `[engine]` table (and the comment above it):
/// the files as they were before the table.
fn postal_without_engine_table() -> PackSources {
    let mut src = postal_with_collector_recording_covers();
    let start = src
        .taxonomy
        .find("\n# ---------------------------------------------------------------------------\n# The engine's parts")
        .unwrap();
    let end_marker = "auditor_role = \"auditor\"\n";
    let end = src.taxonomy.find(end_marker).unwrap() + end_marker.len();
    src.taxonomy.replace_range(start..end, "");
    src
}

fn load_err(edit: impl FnOnce(&mut PackSources)) -> PackError {
    let mut src = PackSources::postal();
    edit(&mut src);
    Pack::load(&src).expect_err("the pack should be refused")
}

/// `src` with `[engine]` key `key` set to `value` (`None`: the line removed).
fn set_key(src: &mut PackSources, key: &str, value: Option<&str>) {
    let start = src.taxonomy.find(&format!("\n{key} = ")).unwrap() + 1;
    let end = start + src.taxonomy[start..].find('\n').unwrap() + 1;
    let line = value.map_or(String::new(), |v| format!("{key} = \"{v}\"\n"));
    src.taxonomy.replace_range(start..end, &line);
}

#[test]
fn the_postal_pack_declares_the_engine_parts() {
    let p = Pack::postal().unwrap();
    let e = p.taxonomy().engine();
    assert!(e.declared());
    assert_eq!(
        e.line(),
        Some(line_with(&PackSources::postal().taxonomy, "[engine]"))
    );
    assert_eq!(e.subject_access_purpose(), Some("subject_access"));
    assert_eq!(
        e.disclosure_accounting_category(),
        Some("disclosure_accounting")
    );
    assert_eq!(e.protective_order_category(), Some("protective_order"));
    assert_eq!(e.mail_cover_record_category(), Some("mail_cover_record"));
    assert_eq!(e.auditor_role(), Some("auditor"));
    assert!(e.is_subject_access("subject_access") && !e.is_subject_access("delivery"));
    assert!(e.kept_by_vault("mail_cover_record") && e.kept_by_vault("disclosure_accounting"));
    assert!(!e.kept_by_vault("protective_order") && !e.kept_by_vault("address"));
    // What the postal pack declares is exactly what the engine fixed before.
    for ((key, id), (old_key, old_id)) in e.entries().into_iter().zip(UNDECLARED_IDS) {
        assert_eq!((key, id), (old_key, Some(old_id)));
    }
}

/// A vault made before `[engine]` recorded the postal pack without it: that
/// pack still loads, under the same version, with the very ids the postal
/// pack now declares; staging the declared pack over it changes nothing a
/// decision or the engine depends on.
#[test]
fn a_pack_from_before_the_engine_table_keeps_its_version_and_ids() {
    let old = postal_without_engine_table();
    assert_eq!(old.version(), POSTAL_BEFORE_ENGINE_TABLE);
    assert_ne!(PackSources::postal().version(), POSTAL_BEFORE_ENGINE_TABLE);
    let old = Pack::load(&old).unwrap();
    let new = Pack::load(&postal_with_collector_recording_covers()).unwrap();
    assert!(!old.taxonomy().engine().declared());
    assert_eq!(old.taxonomy().engine().line(), None);
    assert_eq!(
        old.taxonomy().engine().entries(),
        new.taxonomy().engine().entries()
    );
    let d = PackDiff::new(&old, &new);
    assert!(d.is_empty(), "{:?}", d.rules);

    // Without the table, only the ids of the right kind that the pack has
    // are taken: a pack without a subject-access purpose has none.
    let mut src = postal_without_engine_table();
    src.taxonomy = src
        .taxonomy
        .replace("id = \"auditor\"", "id = \"inspector_general\"");
    let p = Pack::load(&src).unwrap();
    assert_eq!(p.taxonomy().engine().auditor_role(), None);
    assert_eq!(
        p.taxonomy().engine().subject_access_purpose(),
        Some("subject_access")
    );
}

#[test]
fn engine_ids_are_checked_naming_file_line_and_kind() {
    let src = PackSources::postal();
    let at = |key: &str| line_with(&src.taxonomy, &format!("\n{key} = ")) + 1;

    // Each id must exist and be of the right kind.
    let cases = [
        (
            "subject_access_purpose",
            "address",
            "names `address`, a category, not a purpose",
        ),
        (
            "subject_access_purpose",
            "own_records",
            "names `own_records`, no id of the pack, not a purpose",
        ),
        (
            "protective_order_category",
            "protective_orders",
            "names `protective_orders`, no id of the pack, not a category",
        ),
        (
            "mail_cover_record_category",
            "mail_cover",
            "names `mail_cover`, a purpose, not a category",
        ),
        (
            "disclosure_accounting_category",
            "individual_rights",
            "names `individual_rights`, a purpose group, not a category",
        ),
        (
            "auditor_role",
            "scan_event",
            "names `scan_event`, a category, not a role",
        ),
        (
            "subject_access_purpose",
            "bulk_analytics",
            "`bulk_analytics`, a prohibited purpose",
        ),
        (
            "mail_cover_record_category",
            "protective_order",
            "mail_cover_record_category and protective_order_category both name `protective_order`",
        ),
    ];
    for (key, value, says) in cases {
        let e = load_err(|s| set_key(s, key, Some(value)));
        assert_eq!(
            (e.file.as_str(), e.line, e.rule.as_str()),
            (TAXONOMY_FILE, Some(at(key)), "engine-id"),
            "{key} = {value}: {e}"
        );
        assert!(e.message.contains(says), "{key} = {value}: {e}");
    }

    // A category the engine reads must have the fields it reads.
    for (key, value, field) in [
        (
            "protective_order_category",
            "address",
            "`bool` field `on_file`",
        ),
        (
            "mail_cover_record_category",
            "scan_event",
            "required `string` field `order_id`",
        ),
    ] {
        let e = load_err(|s| set_key(s, key, Some(value)));
        assert_eq!(
            (e.file.as_str(), e.line, e.rule.as_str()),
            (TAXONOMY_FILE, Some(at(key)), "engine-field"),
            "{e}"
        );
        assert!(e.message.contains(field), "{e}");
    }
    let e = load_err(|s| {
        s.taxonomy = s.taxonomy.replace(
            "{ name = \"return_address\", type = \"string\", max = 300 },\n  { name = \"postmark_city\"",
            "{ name = \"return_address\", type = \"integer\" },\n  { name = \"postmark_city\"",
        )
    });
    assert_eq!(e.rule, "engine-field", "{e}");
    assert!(e.message.contains("`return_address`"), "{e}");

    // The subject-access purpose is required; the table's line is named.
    let e = load_err(|s| set_key(s, "subject_access_purpose", None));
    assert_eq!(
        (e.file.as_str(), e.line, e.rule.as_str()),
        (
            TAXONOMY_FILE,
            Some(line_with(&src.taxonomy, "[engine]")),
            "engine-id"
        ),
        "{e}"
    );

    // An unknown key is a syntax error at its line.
    let e = load_err(|s| {
        s.taxonomy = s.taxonomy.replace(
            "auditor_role = \"auditor\"\n",
            "auditor_role = \"auditor\"\ncourt_role = \"agency\"\n",
        )
    });
    assert_eq!(
        (e.file.as_str(), e.rule.as_str()),
        (TAXONOMY_FILE, "syntax")
    );
    assert_eq!(e.line, Some(at("auditor_role") + 1), "{e}");
}

/// The gateway's parts are required where the gateway runs, and only there.
#[test]
fn disclosure_rules_need_the_gateway_parts() {
    let d = PackSources::postal().disclosure.unwrap();
    for key in [
        "disclosure_accounting_category",
        "protective_order_category",
    ] {
        let e = load_err(|s| set_key(s, key, None));
        assert_eq!(
            (e.file.as_str(), e.line, e.rule.as_str()),
            (
                DISCLOSURE_FILE,
                Some(line_with(&d, "[gateway]")),
                "engine-id"
            ),
            "{e}"
        );
        assert!(e.message.contains(key), "{e}");
    }
    let e = load_err(|s| set_key(s, "mail_cover_record_category", None));
    assert_eq!(
        (e.file.as_str(), e.line, e.rule.as_str()),
        (
            DISCLOSURE_FILE,
            Some(line_with(&d, "[kind.mail_cover]")),
            "engine-id"
        ),
        "{e}"
    );

    // Without disclosure rules a pack needs none of them: the features that
    // use them are off, and a change that drops one may widen.
    let mut src = PackSources::postal();
    src.disclosure = None;
    for key in [
        "disclosure_accounting_category",
        "protective_order_category",
        "mail_cover_record_category",
        "auditor_role",
    ] {
        set_key(&mut src, key, None);
    }
    let p = Pack::load(&src).unwrap();
    let e = p.taxonomy().engine();
    assert!(e.declared());
    assert_eq!(e.subject_access_purpose(), Some("subject_access"));
    assert!(e.entries()[1..].iter().all(|(_, id)| id.is_none()));
    assert!(!e.kept_by_vault("mail_cover_record"));

    let mut with = PackSources::postal();
    with.disclosure = None;
    let d = PackDiff::new(&Pack::load(&with).unwrap(), &p);
    let dropped = d
        .rules
        .iter()
        .find(|r| r.setting == "engine.protective_order_category")
        .unwrap();
    assert_eq!(
        (dropped.from.as_str(), dropped.to.as_str(), dropped.widens),
        ("protective_order", "none", true)
    );
    assert!(d.widens && d.cells.is_empty());
}
