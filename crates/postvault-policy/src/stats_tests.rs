#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::stats::{Measure, Query, check, micro_epsilon};

fn postal() -> Pack {
    Pack::load(&PackSources::postal()).unwrap()
}

fn query(category: &str, group_by: &[&str], epsilon: f64) -> Query {
    Query {
        category: category.into(),
        measure: Measure::Count,
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        from_ms: 0,
        to_ms: 86_400_000,
        epsilon: micro_epsilon(epsilon).unwrap(),
    }
}

/// Loads the postal pack with `extra` appended to its `[statistics]`.
fn with_stats(extra: &str) -> Result<Pack, PackError> {
    let mut src = PackSources::postal();
    src.taxonomy.push_str(extra);
    Pack::load(&src)
}

#[test]
fn postal_pack_declares_statistics_over_a_cells_only() {
    let pack = postal();
    let tax = pack.taxonomy();
    let stats = &tax.statistics;
    assert!(!stats.categories.is_empty());
    let p = tax.purpose_ix("statistics").unwrap();
    assert!(stats.budget(p).is_some());
    for s in &stats.categories {
        assert_eq!(tax.cell(p, s.category), Cell::Aggregate);
    }
}

#[test]
fn query_refusals_carry_their_codes() {
    let pack = postal();
    let tax = pack.taxonomy();
    let stats_role = tax.role_ix("statistics").unwrap();
    let delivery_role = tax.role_ix("delivery").unwrap();
    let ok = check(
        tax,
        stats_role,
        "statistics",
        &query("scan_event", &["day", "zip3"], 0.5),
    );
    assert!(ok.is_ok(), "{ok:?}");
    let cases: Vec<(RoleIx, &str, Query, &str)> = vec![
        // The cell is Y for delivery, not A: no aggregate over it either.
        (
            delivery_role,
            "delivery",
            query("scan_event", &["day"], 0.1),
            "not_aggregate",
        ),
        // A role that does not read for the purpose.
        (
            delivery_role,
            "statistics",
            query("scan_event", &["day"], 0.1),
            "purpose_not_permitted",
        ),
        // The statistics cell of payment cards is "-".
        (
            stats_role,
            "statistics",
            query("payment_card", &[], 0.1),
            "not_aggregate",
        ),
        (
            stats_role,
            "statistics",
            query("mail_image", &[], 0.1),
            "not_aggregate",
        ),
        // Undeclared dimensions, among them a subject-level field.
        (
            stats_role,
            "statistics",
            query("scan_event", &["tracking_number"], 0.1),
            "undeclared_dimension",
        ),
        (
            stats_role,
            "statistics",
            query("scan_event", &["imb"], 0.1),
            "undeclared_dimension",
        ),
        (
            stats_role,
            "statistics",
            query("scan_event", &["day", "day"], 0.1),
            "bad_group_by",
        ),
        // An A cell the pack declares no statistics for.
        (
            stats_role,
            "statistics",
            query("address", &[], 0.1),
            "no_statistics",
        ),
        (
            stats_role,
            "statistics",
            query("scan_event", &["day"], 0.6),
            "epsilon_over_cap",
        ),
        // Under the floor: a budget would pay for too many releases, each
        // adding its delta.
        (
            stats_role,
            "statistics",
            query("scan_event", &["day"], 0.009),
            "epsilon_under_minimum",
        ),
        (
            stats_role,
            "nope",
            query("scan_event", &["day"], 0.1),
            "unknown_purpose",
        ),
        (
            stats_role,
            "statistics",
            query("nope", &["day"], 0.1),
            "unknown_category",
        ),
    ];
    for (role, purpose, q, code) in cases {
        let got = check(tax, role, purpose, &q).map(|_| ()).unwrap_err();
        assert_eq!(got.code(), code, "{purpose} {q:?}: {got}");
    }
    let mut sum = query("scan_event", &["day"], 0.1);
    sum.measure = Measure::Sum {
        field: "op_code".into(),
        bounds: (0, 10),
    };
    let got = check(tax, stats_role, "statistics", &sum).unwrap_err();
    assert_eq!(got.code(), "undeclared_field");
}

#[test]
fn loader_refuses_a_subject_address_or_free_text_dimension() {
    // Categories without statistics yet, each with a usable time field.
    let cases = [
        ("online_activity", "ts", "user_agent", "value"),
        ("online_activity", "ts", "ip", "value"),
        ("online_activity", "ts", "path", "value"),
        ("online_activity", "ts", "device_id", "value"),
        ("mail_image", "captured_at", "imb", "value"),
        ("mail_image", "captured_at", "image", "value"),
        ("mail_image", "captured_at", "width", "value"),
        // A ZIP code only as its prefix; an enum is no date.
        ("mail_image", "captured_at", "facility_zip", "value"),
        ("mail_image", "captured_at", "side", "day"),
        // A long digit string is a serial, however it is coarsened.
        ("money_order", "issue_date", "serial", "value"),
        ("money_order", "issue_date", "pay_to_address", "value"),
        ("money_order", "issue_date", "from_name", "value"),
        ("payment_card", "paid_at", "cardholder_name", "value"),
        ("payment_card", "paid_at", "billing_zip", "value"),
    ];
    for (category, time, field, coarsen) in cases {
        let extra = format!(
            "\n[[statistics.category]]\nid = \"{category}\"\ntime = \"{time}\"\nmax_epsilon = 0.1\nmax_records = 1\nmax_records_per_group = 1\ndelta = 1e-7\ndimensions = [{{ name = \"d\", field = \"{field}\", coarsen = \"{coarsen}\" }}]\n"
        );
        let err = with_stats(&extra).map(|_| ()).unwrap_err();
        assert_eq!(
            err.rule, "statistics-dimension",
            "{category}.{field}: {err}"
        );
        assert!(
            err.message.contains("never a subject"),
            "{category}.{field}: {err}"
        );
    }
    // The same declarations with an allowed dimension load.
    let ok = "\n[[statistics.category]]\nid = \"mail_image\"\ntime = \"captured_at\"\nmax_epsilon = 0.1\nmax_records = 1\nmax_records_per_group = 1\ndelta = 1e-7\ndimensions = [{ name = \"zip3\", field = \"facility_zip\", coarsen = \"zip3\" }, { name = \"side\", field = \"side\", public = true }]\n";
    assert!(with_stats(ok).is_ok());
}

#[test]
fn loader_refuses_a_dimension_over_a_lookup_field_of_a_fresh_category() {
    // online_activity has no statistics yet: a dimension over its address
    // of a person (ip) is refused with the dimension rule.
    let extra = "\n[[statistics.category]]\nid = \"online_activity\"\ntime = \"ts\"\nmax_epsilon = 0.1\nmax_records = 1\nmax_records_per_group = 1\ndelta = 1e-7\ndimensions = [{ name = \"d\", field = \"ip\" }]\n";
    let err = with_stats(extra).map(|_| ()).unwrap_err();
    assert_eq!(err.rule, "statistics-dimension", "{err}");
    assert!(err.message.contains("never a subject"), "{err}");
}

#[test]
fn loader_checks_bounds_budgets_and_public_keys() {
    let base = |dims: &str, bounds: &str| {
        format!(
            "\n[[statistics.category]]\nid = \"online_activity\"\ntime = \"ts\"\nmax_epsilon = 0.1\n{bounds}\ndelta = 1e-7\ndimensions = [{dims}]\n"
        )
    };
    let ok_bounds = "max_records = 2\nmax_records_per_group = 1";
    assert!(
        with_stats(&base(
            "{ name = \"day\", field = \"ts\", coarsen = \"day\", public = true }",
            ok_bounds
        ))
        .is_ok()
    );
    let cases = [
        (
            base("", "max_records = 1\nmax_records_per_group = 2"),
            "statistics-bound",
        ),
        (
            base("", "max_records = 0\nmax_records_per_group = 0"),
            "statistics-bound",
        ),
        (
            "\n[[statistics.budget]]\npurpose = \"delivery\"\nepsilon = 1.0\nperiod = \"day\"\n"
                .to_string(),
            "statistics-budget",
        ),
        (
            "\n[[statistics.budget]]\npurpose = \"statistics\"\nepsilon = 1.0\nperiod = \"day\"\n"
                .to_string(),
            "statistics-budget",
        ),
        (
            base("", ok_bounds).replace("max_epsilon = 0.1", "max_epsilon = 0.0"),
            "statistics-epsilon",
        ),
        // Under what a query spends at least: every query would be refused.
        (
            base("", ok_bounds).replace("max_epsilon = 0.1", "max_epsilon = 0.005"),
            "statistics-epsilon",
        ),
        (
            base("", ok_bounds).replace("delta = 1e-7", "delta = 0.5"),
            "statistics-delta",
        ),
    ];
    for (extra, rule) in cases {
        let err = with_stats(&extra).map(|_| ()).unwrap_err();
        assert_eq!(err.rule, rule, "{extra}: {err}");
    }
}

#[test]
fn zip3_is_never_public() {
    let extra = "\n[[statistics.category]]\nid = \"mail_image\"\ntime = \"captured_at\"\nmax_epsilon = 0.1\nmax_records = 1\nmax_records_per_group = 1\ndelta = 1e-7\ndimensions = [{ name = \"z\", field = \"facility_zip\", coarsen = \"zip3\", public = true }]\n";
    let err = with_stats(extra).map(|_| ()).unwrap_err();
    assert_eq!(err.rule, "statistics-dimension", "{err}");
    assert!(err.message.contains("cannot be public"), "{err}");
}
