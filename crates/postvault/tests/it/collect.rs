//! Collection: minimization (R2), rejections that name line, field and rule,
//! all-or-nothing lines, bad input.

use crate::*;

/// (line, expected code, expected field, expected rule)
fn rejection_cases() -> Vec<(
    String,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
)> {
    let addr = serde_json::json!({"street": "1 A St", "city": "X", "state": "IL", "zip": "62701"});
    vec![
        // A field the category does not declare.
        (line("s", "address", "delivery", serde_json::json!({"street": "1 A St", "city": "X", "state": "IL", "zip": "62701", "ssn": "123"})),
            "field_not_declared", Some("ssn"), Some("R2")),
        // A declared field not collected for this purpose.
        (line("s", "money_order", "aml_compliance", serde_json::json!({"serial": "12345678901", "amount": "10.00", "issue_date": "2026-11-02"})).replace("}}", "}, \"legal_basis\": \"BSA\"}").replace("\"amount\"", "\"tin\": \"123456789\", \"amount\""),
            "ok", None, None),
        (line("s", "online_activity", "account_service", serde_json::json!({"ts": "2026-11-02T10:00:00Z", "device_id": "d1"})),
            "field_not_for_purpose", Some("device_id"), Some("R2")),
        (line("s", "address", "delivery", serde_json::json!({"street": "1 A St", "city": "X", "state": "Illinois", "zip": "62701"})),
            "field_type", Some("state"), Some("R2")),
        (line("s", "address", "delivery", serde_json::json!({"street": "1 A St", "city": "X", "state": "IL", "zip": 62701})),
            "field_type", Some("zip"), Some("R2")),
        (line("s", "address", "delivery", serde_json::json!({"city": "X", "state": "IL", "zip": "62701"})),
            "field_missing", Some("street"), Some("R2")),
        (line("s", "payment_card", "payment_processing", serde_json::json!({"card_number": "4111111111111112"})),
            "field_type", Some("card_number"), Some("R2")),
        (line("s", "money_order", "aml_compliance", serde_json::json!({"serial": "12345678901", "amount": "1000.01", "issue_date": "2026-11-02"})).replace("}}", "}, \"legal_basis\": \"BSA\"}"),
            "field_range", Some("amount"), Some("R2")),
        (line("s", "money_order", "aml_compliance", serde_json::json!({"serial": "12345678901", "amount": "10.00", "issue_date": "2026-11-02"})),
            "missing_legal_basis", Some("legal_basis"), Some("R1")),
        (line("s", "scan_event", "delivery", serde_json::json!({"piece": "letter", "facility_zip": "60601", "op_code": "918", "event": "processed", "scanned_at": "2026-13-02T03:00:00Z"})),
            "field_type", Some("scanned_at"), Some("R2")),
        (line("s", "address", "delivery", serde_json::json!({"street": "1 A St\u{7}", "city": "X", "state": "IL", "zip": "62701"})),
            "field_type", Some("street"), Some("R2")),
        (line("s", "account_identity", "account_service", serde_json::json!({"name": "x".repeat(201)})),
            "field_too_long", Some("name"), Some("R2")),
        (line("s", "postal_secrets", "delivery", addr.clone()), "unknown_category", Some("category"), Some("R1")),
        (line("s", "address", "surveillance", addr.clone()), "unknown_purpose", Some("purpose"), Some("R3")),
        // The matrix forbids collecting card data for delivery.
        (line("s", "payment_card", "delivery", serde_json::json!({"card_number": "4111111111111111"})),
            "denied", Some("purpose"), Some("default-deny")),
        // Prohibited purposes collect nothing.
        (line("s", "address", "immigration_enforcement", addr.clone()), "denied", Some("purpose"), Some("R25-prohibited-purpose")),
        // Marketing collection needs consent.
        (line("s", "account_identity", "marketing", serde_json::json!({"name": "x"})), "denied", Some("purpose"), Some("HEW3-consent")),
        (r#"{"subject": "s", "category": "address", "fields": {}}"#.to_string(), "missing_purpose", Some("purpose"), Some("R1")),
        (r#"{"subject": "", "category": "address", "purpose": "delivery", "fields": {}}"#.to_string(), "invalid_subject", Some("subject"), None),
        (r#"{"subject": "s", "category": "address", "purpose": "delivery", "fields": {}, "extra": 1}"#.to_string(), "malformed_json", None, None),
        (r#"{"subject": "s", "category": "address""#.to_string(), "malformed_json", None, None),
        (r#"[1, 2, 3]"#.to_string(), "malformed_json", None, None),
        (r#"{"subject": "s", "category": "address", "purpose": "delivery", "fields": {"street": "1 A St", "street": "2 B St", "city": "X", "state": "IL", "zip": "62701"}}"#.to_string(), "field_duplicate", Some("street"), Some("R2")),
    ]
}

#[test]
fn every_rejection_names_line_field_and_rule() {
    every_rejection_names_line_field_and_rule_on(&Backend::Sqlite);
}

pub fn every_rejection_names_line_field_and_rule_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let cases = rejection_cases();
    let input: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let report = collect(&v, "ingest", &input.join("\n"));
    let expected_ok = cases.iter().filter(|c| c.1 == "ok").count() as u64;
    assert_eq!(report.accepted, expected_ok, "{:#?}", report.errors);
    assert_eq!(report.rejected, cases.len() as u64 - expected_ok);
    let mut errors = report.errors.iter();
    for (i, (_, code, field, rule)) in cases.iter().enumerate() {
        if *code == "ok" {
            continue;
        }
        let e = errors.next().unwrap();
        assert_eq!(e.line, i as u64 + 1, "{e:?}");
        assert_eq!(e.code, *code, "line {}: {e:?}", i + 1);
        assert_eq!(e.field.as_deref(), *field, "line {}: {e:?}", i + 1);
        assert_eq!(e.rule.as_deref(), *rule, "line {}: {e:?}", i + 1);
        assert!(!e.message.is_empty());
    }
    // Only the accepted lines were stored.
    assert_eq!(v.store().record_count().unwrap(), expected_ok);
}

#[test]
fn role_must_be_allowed_to_collect_for_the_purpose() {
    role_must_be_allowed_to_collect_for_the_purpose_on(&Backend::Sqlite);
}

pub fn role_must_be_allowed_to_collect_for_the_purpose_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let addr = serde_json::json!({"street": "1 A St", "city": "X", "state": "IL", "zip": "62701"});
    // The delivery role collects for delivery, not for marketing.
    let r = collect(
        &v,
        "sorting",
        &line("s", "address", "delivery", addr.clone()),
    );
    assert_eq!(r.accepted, 1);
    let r = collect(
        &v,
        "sorting",
        &line("s", "address", "account_service", addr),
    );
    assert_eq!(r.rejected, 1);
    assert_eq!(
        r.errors[0].rule.as_deref(),
        Some("R5-role-may-collect-for-purpose")
    );
    // The agency role collects nothing.
    let r = collect(&v, "agency", &person("s", "m"));
    assert_eq!((r.accepted, r.rejected), (0, 9));
}

#[test]
fn invalid_utf8_and_oversized_lines_are_rejected_alone() {
    invalid_utf8_and_oversized_lines_are_rejected_alone_on(&Backend::Sqlite);
}

pub fn invalid_utf8_and_oversized_lines_are_rejected_alone_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let good = line(
        "s",
        "protective_order",
        "forwarding",
        serde_json::json!({"on_file": true}),
    );
    let mut input = Vec::new();
    input.extend_from_slice(good.as_bytes());
    input.extend_from_slice(b"\n{\"subject\": \"\xff\xfe\"}\n");
    input.extend_from_slice(&vec![b'x'; postvault_max_line() + 10]);
    input.push(b'\n');
    input.extend_from_slice(good.as_bytes());
    input.extend_from_slice(b"\n\n   \n");
    let p = v.principal("ingest").unwrap();
    let r = v
        .collect(
            &p,
            &mut input.as_slice(),
            &postvault::CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.rejected), (2, 2));
    assert_eq!(
        (r.errors[0].line, r.errors[0].code.as_str()),
        (2, "invalid_utf8")
    );
    assert_eq!(
        (r.errors[1].line, r.errors[1].code.as_str()),
        (3, "line_too_long")
    );
}

fn postvault_max_line() -> usize {
    2 << 20
}

#[test]
fn lines_default_to_the_given_purpose_and_batches_commit() {
    lines_default_to_the_given_purpose_and_batches_commit_on(&Backend::Sqlite);
}

pub fn lines_default_to_the_given_purpose_and_batches_commit_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let lines: Vec<String> = (0..25)
        .map(|i| {
            serde_json::json!({"subject": format!("s{i}"), "category": "scan_event", "fields": {
                "piece": "letter", "facility_zip": "60601", "op_code": "918",
                "event": "processed", "scanned_at": "2026-11-02T03:00:00Z"}})
            .to_string()
        })
        .collect();
    let p = v.principal("ingest").unwrap();
    let mut seen = Vec::new();
    let r = v
        .collect(
            &p,
            &mut lines.join("\n").as_bytes(),
            &postvault::CollectOptions {
                default_purpose: Some("delivery".into()),
                batch_size: 10,
                ..Default::default()
            },
            &mut |n| seen.push(n),
        )
        .unwrap();
    assert_eq!((r.accepted, r.batches), (25, 3));
    assert_eq!((r.committed_through_line, r.failure.clone()), (25, None));
    assert_eq!(r.categories.get("scan_event"), Some(&25));
    assert_eq!(seen.last(), Some(&25));
    assert!(matches!(
        v.collect(
            &p,
            &mut "".as_bytes(),
            &postvault::CollectOptions {
                default_purpose: Some("nope".into()),
                batch_size: 10,
                ..Default::default()
            },
            &mut |_| {}
        ),
        Err(postvault::VaultError::UnknownPurpose(_))
    ));
}

#[test]
fn batches_keep_line_order_across_workers_and_blank_input_writes_nothing() {
    batches_keep_line_order_across_workers_and_blank_input_writes_nothing_on(&Backend::Sqlite);
}

pub fn batches_keep_line_order_across_workers_and_blank_input_writes_nothing_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let p = v.principal("ingest").unwrap();
    let good = |i: usize| {
        line(
            &format!("s{i}"),
            "address",
            "delivery",
            serde_json::json!({"street": format!("{i} Elm St"), "city": "Springfield", "state": "IL", "zip": "62701"}),
        )
    };
    // 60 lines in batches of 4: rejections scattered over many batches, an
    // overlong line first in a batch (line 9), blank lines inside.
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=60usize {
        lines.push(if i == 9 {
            "x".repeat(postvault::MAX_LINE + 10)
        } else if i % 7 == 0 {
            "{not json".to_string()
        } else if i % 11 == 0 {
            String::new()
        } else {
            good(i)
        });
        if i == 9 || i % 7 == 0 {
            bad.push(i as u64);
        }
    }
    let size = v.store().log_size().unwrap();
    let r = v
        .collect(
            &p,
            &mut lines.join("\n").as_bytes(),
            &postvault::CollectOptions {
                batch_size: 4,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    let blank = (1..=60).filter(|i| i % 11 == 0 && i % 7 != 0).count() as u64;
    assert_eq!(r.committed_through_line, 60);
    assert_eq!(r.rejected, bad.len() as u64);
    assert_eq!(r.accepted, 60 - bad.len() as u64 - blank);
    let got: Vec<u64> = r.errors.iter().map(|e| e.line).collect();
    assert_eq!(got, bad, "errors in line order, each once");
    assert_eq!(r.errors[1].line, 9);
    assert_eq!(r.errors[1].code, "line_too_long");
    assert!(
        r.errors
            .iter()
            .filter(|e| e.line != 9)
            .all(|e| e.code == "malformed_json")
    );
    // One leaf per batch, in order.
    assert_eq!(r.batches, 15);
    assert!(r.leaves.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(v.store().log_size().unwrap(), size + 15);
    // Only blank lines: nothing stored, no leaf, no batch.
    let size = v.store().log_size().unwrap();
    let r = v
        .collect(
            &p,
            &mut "\n\n  \n\n\n".as_bytes(),
            &Default::default(),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.accepted, r.rejected, r.batches), (0, 0, 0));
    assert_eq!(r.committed_through_line, 5);
    assert_eq!(v.store().log_size().unwrap(), size);
}

#[test]
fn the_simulated_day_is_accepted_by_the_default_pack() {
    the_simulated_day_is_accepted_by_the_default_pack_on(&Backend::Sqlite);
}

pub fn the_simulated_day_is_accepted_by_the_default_pack_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let cfg = postvault_sim::SimConfig {
        scale: 0.00002,
        seed: 3,
        ..Default::default()
    };
    let plan = postvault_sim::Plan::new(&cfg);
    let lines: Vec<String> = postvault_sim::Simulator::new(&cfg).collect();
    let r = collect(&v, "ingest", &lines.join("\n"));
    assert_eq!(r.rejected, 0, "{:?}", r.errors.first());
    assert_eq!(r.accepted, lines.len() as u64);
    // Every category the plan has, in the plan's numbers.
    for (cat, n) in plan.counts() {
        assert_eq!(r.categories.get(cat).copied().unwrap_or(0), n, "{cat}");
    }
}

#[test]
fn simulated_marketing_opt_ins_need_the_persons_consent() {
    simulated_marketing_opt_ins_need_the_persons_consent_on(&Backend::Sqlite);
}

/// The opt-in lines are refused until the rights channel records each
/// person's consent; then every one is accepted.
pub fn simulated_marketing_opt_ins_need_the_persons_consent_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    let cfg = postvault_sim::SimConfig {
        scale: 0.0004,
        seed: 3,
        marketing: true,
        ..Default::default()
    };
    let marketing: Vec<String> = postvault_sim::Simulator::new(&cfg)
        .filter(|l| l.contains("\"purpose\":\"marketing\""))
        .collect();
    assert!(!marketing.is_empty());
    let r = collect(&v, "ingest", &marketing.join("\n"));
    assert_eq!(r.accepted, 0);
    assert!(r.errors.iter().all(|e| e.code == "denied"));
    let officer = v.principal("officer").unwrap();
    for s in postvault_sim::Simulator::opt_ins(&cfg) {
        v.set_consent(&officer, &s, "marketing", true).unwrap();
    }
    let r = collect(&v, "ingest", &marketing.join("\n"));
    assert_eq!(r.accepted, marketing.len() as u64, "{:?}", r.errors.first());
}

#[test]
fn simulated_mail_cover_items_need_an_order_in_force() {
    simulated_mail_cover_items_need_an_order_in_force_on(&Backend::Sqlite);
}

pub fn simulated_mail_cover_items_need_an_order_in_force_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let v = vault_on(b, dir.path(), &c);
    v.add_principal("inspector", "mail_cover").unwrap();
    let cfg = postvault_sim::SimConfig {
        scale: 0.00001,
        seed: 3,
        mail_covers: true,
        ..Default::default()
    };
    let covers: Vec<String> = postvault_sim::Simulator::new(&cfg)
        .filter(|l| l.contains("\"mail_cover_record\""))
        .collect();
    assert!(!covers.is_empty());
    // A collector records no mail cover: whether a line is accepted would
    // tell it who is under a cover.
    let r = collect(&v, "ingest", &covers.join("\n"));
    assert_eq!(r.accepted, 0);
    assert!(
        r.errors.iter().all(|e| e.code == "denied"),
        "{:?}",
        r.errors.first()
    );
    // Without an approved order in this vault, each is refused (R14).
    let r = collect(&v, "inspector", &covers.join("\n"));
    assert_eq!(r.accepted, 0);
    assert_eq!(r.rejected, covers.len() as u64);
    assert!(
        r.errors.iter().all(|e| e.code == "no_active_cover"),
        "{:?}",
        r.errors.first()
    );
}

mod fuzz {
    use proptest::prelude::*;

    use crate::*;

    fn mutated_line() -> impl Strategy<Value = Vec<u8>> {
        let base = line(
            "s1",
            "address",
            "delivery",
            serde_json::json!({"street": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62701"}),
        )
        .into_bytes();
        (
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
        )
            .prop_map(move |(edits, junk, append)| {
                let mut l = base.clone();
                for (i, b) in edits {
                    let at = i.index(l.len());
                    l[at] = b;
                }
                if append {
                    l.extend_from_slice(&junk);
                }
                l
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Arbitrary and mutated input never panics, every line is either
        /// accepted or rejected, and the store holds exactly the accepted ones.
        #[test]
        fn any_input_is_accepted_or_rejected_line_by_line(
            lines in proptest::collection::vec(
                prop_oneof![mutated_line(), proptest::collection::vec(any::<u8>(), 0..80)],
                1..12,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let c = clock();
            let v = vault(dir.path(), &c);
            let mut input = Vec::new();
            let mut nonblank = 0u64;
            for l in &lines {
                let l: Vec<u8> = l.iter().copied().filter(|&b| b != b'\n').collect();
                if !String::from_utf8_lossy(&l).trim().is_empty() {
                    nonblank += 1;
                }
                input.extend_from_slice(&l);
                input.push(b'\n');
            }
            let p = v.principal("ingest").unwrap();
            let r = v
                .collect(&p, &mut input.as_slice(), &postvault::CollectOptions::default(), &mut |_| {})
                .unwrap();
            prop_assert_eq!(r.accepted + r.rejected, nonblank);
            prop_assert_eq!(v.store().record_count().unwrap(), r.accepted);
            for e in &r.errors {
                prop_assert!(e.line >= 1 && e.line <= lines.len() as u64);
                prop_assert!(!e.message.contains("Springfield"));
            }
        }
    }
}
