//! Aggregate statistics: refusals with codes before any record is read,
//! the budget spent with the query's one leaf (no values), contribution
//! bounding end to end, concurrent queries that never overspend.

use std::sync::Arc;

use postvault::{FixedClock, StatsRequest, Vault, VaultError};

use crate::{Backend, T0, clock, collect, line, vault_on};

fn query(group_by: &[&str], epsilon: f64) -> StatsRequest {
    serde_json::from_value(serde_json::json!({
        "category": "scan_event",
        "measure": "count",
        "group_by": group_by,
        "from": "2026-11-01",
        "to": "2026-11-03",
        "epsilon": epsilon,
    }))
    .unwrap()
}

fn scan(subject: &str, zip: &str, at: &str) -> String {
    line(
        subject,
        "scan_event",
        "delivery",
        serde_json::json!({"piece": "letter", "facility_zip": zip, "op_code": "918",
            "event": "processed", "scanned_at": at}),
    )
}

/// A vault with an analyst (role `statistics`) and scan events of `people`
/// people, one each, on 2026-11-02 at ZIP 606xx.
fn setup(b: &Backend, dir: &std::path::Path, people: usize) -> (Vault, Arc<FixedClock>) {
    let c = clock();
    let v = vault_on(b, dir, &c);
    v.add_principal("analyst", "statistics").unwrap();
    let lines: Vec<String> = (0..people)
        .map(|i| scan(&format!("p{i}"), "60601", "2026-11-02T03:00:00Z"))
        .collect();
    if !lines.is_empty() {
        let r = collect(&v, "ingest", &lines.join("\n"));
        assert_eq!(r.accepted as usize, people);
    }
    (v, c)
}

fn code(e: VaultError) -> &'static str {
    e.code()
}

pub(crate) fn refusals_spend_nothing_and_read_nothing_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(b, dir.path(), 3);
    let analyst = v.principal("analyst").unwrap();
    let sorting = v.principal("sorting").unwrap();
    let size = v.store().log_size().unwrap();
    let mut bad_measure = query(&["day"], 0.1);
    bad_measure.measure =
        serde_json::from_value(serde_json::json!({"sum": "op_code", "bounds": [0, 9]})).unwrap();
    let mut payment = query(&[], 0.1);
    payment.category = "payment_card".into();
    let cases: Vec<(&postvault::Principal, &str, StatsRequest, &str)> = vec![
        // Delivery reads scan events (Y), so it may not aggregate them (not A).
        (&sorting, "delivery", query(&["day"], 0.1), "not_aggregate"),
        (&analyst, "statistics", payment, "not_aggregate"),
        // A subject-level field is no dimension.
        (
            &analyst,
            "statistics",
            query(&["tracking_number"], 0.1),
            "undeclared_dimension",
        ),
        (
            &analyst,
            "statistics",
            query(&["imb"], 0.1),
            "undeclared_dimension",
        ),
        (
            &analyst,
            "statistics",
            query(&["day"], 0.75),
            "epsilon_over_cap",
        ),
        (&analyst, "statistics", query(&["day"], -1.0), "bad_epsilon"),
        // A million queries of 1e-6 would each add their delta.
        (
            &analyst,
            "statistics",
            query(&["day"], 0.000_001),
            "epsilon_under_minimum",
        ),
        (&analyst, "statistics", bad_measure, "undeclared_field"),
        (
            &sorting,
            "statistics",
            query(&["day"], 0.1),
            "purpose_not_permitted",
        ),
    ];
    for (p, purpose, q, want) in cases {
        let e = v.statistics(p, purpose, &q).unwrap_err();
        assert_eq!(code(e), want, "{purpose} {q:?}");
    }
    assert_eq!(
        v.store().log_size().unwrap(),
        size,
        "a refusal by the pack appends nothing"
    );
    assert!(
        v.statistics_budgets().unwrap().is_empty(),
        "and spends nothing"
    );
}

#[test]
fn refusals_spend_nothing_and_read_nothing() {
    refusals_spend_nothing_and_read_nothing_on(&Backend::Sqlite);
}

/// A query refused by the pack never reaches the store's records: with
/// the key store gone (every record unreadable), the refusal is the same.
#[test]
fn a_refusal_comes_before_any_record_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(&Backend::Sqlite, dir.path(), 3);
    let analyst = v.principal("analyst").unwrap();
    // Every scan event's ciphertext altered: opening any would fail.
    drop(v);
    let db = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    db.execute(
        "UPDATE records SET sealed = zeroblob(length(sealed)) WHERE category = 'scan_event'",
        [],
    )
    .unwrap();
    drop(db);
    let v = crate::Backend::Sqlite
        .open(dir.path(), crate::opts(&clock()))
        .unwrap();
    let e = v
        .statistics(&analyst, "statistics", &query(&["tracking_number"], 0.1))
        .unwrap_err();
    assert_eq!(e.code(), "undeclared_dimension");
    // An allowed query does open them, and fails loudly.
    let e = v
        .statistics(&analyst, "statistics", &query(&["day"], 0.1))
        .unwrap_err();
    assert_eq!(e.code(), "crypto", "{e}");
}

pub(crate) fn budget_runs_out_and_renews_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (v, c) = setup(b, dir.path(), 20);
    let analyst = v.principal("analyst").unwrap();
    let a = v
        .statistics(&analyst, "statistics", &query(&["day"], 0.5))
        .unwrap();
    assert_eq!(a.budget.remaining, 0.5);
    assert_eq!(a.privacy.definition, "pure");
    // Public keys: every day of the window, each released.
    assert_eq!(a.groups.len(), 2);
    let a = v
        .statistics(&analyst, "statistics", &query(&["day", "zip3"], 0.4))
        .unwrap();
    assert_eq!(a.privacy.definition, "approximate");
    assert!((a.budget.remaining - 0.1).abs() < 1e-9);
    let size = v.store().log_size().unwrap();
    let e = v
        .statistics(&analyst, "statistics", &query(&["day"], 0.2))
        .unwrap_err();
    assert_eq!(e.code(), "budget_exhausted");
    assert!(e.to_string().contains("epsilon 0.1 of 1 remains"), "{e}");
    // The refusal is accounted: one leaf, a denial.
    assert_eq!(v.store().log_size().unwrap(), size + 1);
    let leaf = v.log_entries(size, size + 1).unwrap();
    let text = serde_json::to_string(&leaf[0].event).unwrap();
    assert!(text.contains("budget_exhausted"), "{text}");
    // What remains can still be spent; the next day renews the budget.
    v.statistics(&analyst, "statistics", &query(&["day"], 0.1))
        .unwrap();
    c.advance(86_400_000);
    let a = v
        .statistics(&analyst, "statistics", &query(&["day"], 0.5))
        .unwrap();
    assert_eq!(a.budget.remaining, 0.5);
    assert!(
        a.budget.period.starts_with("day:2026-11-03"),
        "{}",
        a.budget.period
    );
    let budgets = v.statistics_budgets().unwrap();
    assert_eq!(budgets.len(), 2);
    assert_eq!(budgets[0].spent, 1.0);
    assert_eq!(budgets[0].refused, 1);
}

#[test]
fn budget_runs_out_and_renews() {
    budget_runs_out_and_renews_on(&Backend::Sqlite);
}

pub(crate) fn concurrent_queries_never_overspend_on(b: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(b, dir.path(), 5);
    let analyst = v.principal("analyst").unwrap();
    // 0.75 remains; two queries of 0.5 together would overspend.
    v.statistics(&analyst, "statistics", &query(&[], 0.25))
        .unwrap();
    let results: Vec<Result<_, VaultError>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| v.statistics(&analyst, "statistics", &query(&["day"], 0.5))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one succeeds");
    let refused = results.into_iter().find_map(Result::err).unwrap();
    assert_eq!(refused.code(), "budget_exhausted");
    assert_eq!(v.statistics_budgets().unwrap()[0].spent, 0.75);
}

#[test]
fn concurrent_queries_never_overspend() {
    concurrent_queries_never_overspend_on(&Backend::Sqlite);
}

#[test]
fn each_query_leaves_one_leaf_with_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(&Backend::Sqlite, dir.path(), 40);
    let analyst = v.principal("analyst").unwrap();
    let size = v.store().log_size().unwrap();
    let a = v
        .statistics(&analyst, "statistics", &query(&["day", "zip3"], 0.5))
        .unwrap();
    assert_eq!(v.store().log_size().unwrap(), size + 1);
    assert_eq!(a.log_index, size);
    let raw = v.log_entries(size, size + 1).unwrap();
    let text = serde_json::to_string(&raw[0].event).unwrap();
    for want in ["statistics", "scan_event", "day,zip3", "epsilon 0.5"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // No group key, no value, no count of records.
    for g in &a.groups {
        assert!(!text.contains(&g.key["zip3"]), "{text}");
        assert!(!text.contains(&format!(":{}", g.value)), "{text}");
    }
    let event = raw[0].event.as_ref().unwrap();
    assert_eq!(event.categories, vec!["scan_event".to_string()]);
    assert_eq!(event.count, 0);
    assert!(event.subject_tag.is_none() && event.reasons.is_empty());
    assert_eq!(event.decision, "allow");
}

#[test]
fn a_person_with_ten_thousand_records_moves_a_count_by_at_most_k() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(&Backend::Sqlite, dir.path(), 0);
    let heavy: Vec<String> = (0..10_000)
        .map(|i| {
            scan(
                "heavy",
                "60601",
                &format!(
                    "2026-11-02T{:02}:{:02}:{:02}Z",
                    i / 3600 % 24,
                    i / 60 % 60,
                    i % 60
                ),
            )
        })
        .collect();
    assert_eq!(collect(&v, "ingest", &heavy.join("\n")).accepted, 10_000);
    let analyst = v.principal("analyst").unwrap();
    let a = v
        .statistics(&analyst, "statistics", &query(&["day"], 0.5))
        .unwrap();
    let day = a
        .groups
        .iter()
        .find(|g| g.key["day"] == "2026-11-02")
        .unwrap();
    // At most k = 5 records of the person count in the group; the noise's
    // 95% interval is a little over 100 wide at this epsilon. Unbounded,
    // the count would be 10,000.
    let k = f64::from(a.privacy.max_records_per_group);
    assert!(
        (day.value as f64) <= k + 3.0 * a.accuracy.plus_minus,
        "{} > {k} + noise",
        day.value
    );
}

#[test]
fn answers_carry_privacy_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _c) = setup(&Backend::Sqlite, dir.path(), 5);
    let analyst = v.principal("analyst").unwrap();
    let a = v
        .statistics(&analyst, "statistics", &query(&["day", "piece"], 0.5))
        .unwrap();
    // Public keys: every day of the window times every piece type.
    assert_eq!(a.groups.len(), 2 * 3);
    assert!(a.privacy.epsilon <= 0.5 && a.privacy.epsilon > 0.499_999);
    assert_eq!(a.privacy.delta, 0.0);
    assert!(a.privacy.mechanism.contains("make_laplace"));
    assert!(a.accuracy.plus_minus > 0.0);
    assert_eq!(a.accuracy.confidence, 0.95);
    let json = serde_json::to_value(&a).unwrap();
    for key in ["groups", "privacy", "accuracy", "budget", "log_index"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let _ = T0;
}
