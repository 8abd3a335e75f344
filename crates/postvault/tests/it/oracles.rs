//! The red team's classes, one scenario each: purpose laundering through
//! consent, existence oracles in reads and rights, and subject ids that
//! look alike.

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
