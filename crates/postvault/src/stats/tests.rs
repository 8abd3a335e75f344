#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::sync::Arc;

#[test]
fn a_person_with_ten_thousand_records_moves_a_count_by_at_most_k() {
    let mut b = Bounder::new(20, 5);
    let heavy = [7u8; 16];
    for i in 0..10_000 {
        b.add(&heavy, Some((&format!("g{}", i % 3), 1)));
    }
    let out = |b: &Bounder| -> HashMap<String, i128> {
        b.keys.iter().cloned().zip(b.sums.iter().copied()).collect()
    };
    // Five per group, three groups: 15, under the total of 20.
    assert_eq!(out(&b).values().sum::<i128>(), 15);
    assert!(out(&b).values().all(|&v| v == 5));
    for i in 0..10_000 {
        b.add(&[8u8; 16], Some((&format!("h{i}"), 1)));
    }
    // Many groups: the total of 20 binds.
    assert_eq!(out(&b).keys().filter(|k| k.starts_with('h')).count(), 20);
    // Records outside the window add nothing and use no allowance.
    b.add(&[9u8; 16], None);
    b.add(&[9u8; 16], Some(("g0", 1)));
    assert_eq!(out(&b)["g0"], 6);
    // Two pipelines' values add up per group.
    let mut other = Bounder::new(20, 5);
    other.add(&[10u8; 16], Some(("g0", 1)));
    let mut merged = HashMap::new();
    b.merge_into(&mut merged);
    other.merge_into(&mut merged);
    assert_eq!(merged["g0"], 7);
}

/// A money field is summed in cents, as collection seals it ("12.50");
/// an integer as it is; anything else adds nothing.
#[test]
fn money_is_summed_in_cents() {
    assert_eq!(sum_value("\"12.50\""), Some(1250));
    assert_eq!(sum_value("\"0.05\""), Some(5));
    assert_eq!(sum_value("1250"), Some(1250));
    assert_eq!(sum_value("-3"), Some(-3));
    assert_eq!(sum_value("\"abc\""), None);
    assert_eq!(sum_value("true"), None);
}

/// Sums of the largest values a query may bound by (2^40) over more
/// records than an `i64` holds the total of: added without wrapping
/// around (a wrapped total would move by far more than one person can),
/// then clamped, so a group's value only grows as records are added.
#[test]
fn a_sum_past_the_range_of_i64_saturates_and_never_wraps() {
    let big = 1i64 << 40;
    let mut b = Bounder::new(1_000, 1_000);
    let mut last = 0i64;
    for person in 0..9_000u32 {
        let mut subject = [0u8; 16];
        subject[..4].copy_from_slice(&person.to_be_bytes());
        for _ in 0..1_000 {
            b.add(&subject, Some(("g", big)));
        }
        let now = saturate(b.sums[0]);
        assert!(now >= last, "the sum went down at person {person}");
        last = now;
    }
    // 9,000,000 records of 2^40: past 2^63.
    assert_eq!(b.sums[0], 9_000_000i128 << 40);
    assert_eq!(saturate(b.sums[0]), i64::MAX);
    assert_eq!(saturate(-(9_000_000i128 << 40)), i64::MIN);
    assert_eq!(saturate(-5), -5);
}

#[test]
fn periods_and_windows_are_utc() {
    let ms = parse_instant("2026-12-03T23:30:00-02:00").unwrap();
    assert_eq!(format_day(utc_day(ms)), "2026-12-04");
    assert_eq!(period_of(Period::Day, ms), "day:2026-12-04");
    assert_eq!(period_of(Period::Week, ms), "week:2026-11-30");
    assert_eq!(period_of(Period::Month, ms), "month:2026-12");
    assert_eq!(
        parse_instant("2026-12-04").unwrap(),
        parse_instant("2026-12-04T00:00:00Z").unwrap()
    );
    assert!(parse_instant("2026-13-01").is_none());
}

#[test]
fn noise_spread_matches_the_declared_epsilon() {
    // Discrete Laplace with scale b = sensitivity / epsilon has variance
    // about 2b^2 (exactly 2e^{-1/b}/(1-e^{-1/b})^2). Many releases of one
    // count: the sample variance is within 15% of it, and the declared
    // 95% interval holds about 95% of them.
    let epsilon = 0.5;
    let keys = vec!["k".to_string()];
    let exact = HashMap::from([("k".to_string(), 1000i64)]);
    let runs = 4000;
    let mut noise = Vec::with_capacity(runs);
    let mut released = None;
    for _ in 0..runs {
        let r = release::public_keys(&keys, &exact, 1, epsilon).unwrap();
        noise.push((r.values[0].1 - 1000) as f64);
        released = Some(r);
    }
    let r = released.unwrap();
    assert!((r.epsilon - epsilon).abs() < 1e-9, "{}", r.epsilon);
    assert_eq!(r.delta, 0.0);
    let b = 1.0 / epsilon;
    let q = (-1.0 / b).exp();
    let want = 2.0 * q / (1.0 - q).powi(2);
    let mean = noise.iter().sum::<f64>() / runs as f64;
    let var = noise.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (runs - 1) as f64;
    assert!(
        (var / want - 1.0).abs() < 0.15,
        "variance {var}, want {want}"
    );
    assert!(mean.abs() < 0.3, "mean {mean}");
    let inside = noise.iter().filter(|x| x.abs() <= r.accuracy).count() as f64 / runs as f64;
    assert!(inside >= 0.93, "{inside} inside ±{}", r.accuracy);
    // A smaller epsilon spreads more.
    let wide = release::public_keys(&keys, &exact, 1, 0.05).unwrap();
    assert!(wide.accuracy > 5.0 * r.accuracy);
}

#[test]
fn partition_selection_hides_a_group_of_one_person() {
    // One person with the most records a group may count, alone in their
    // group; a busy group beside it. Over many releases the lone group
    // shows in under 5% of runs (delta bounds it far lower).
    let runs = 2000;
    let mut shown = 0;
    let mut busy = 0;
    for _ in 0..runs {
        let exact = HashMap::from([("lone".to_string(), 5i64), ("busy".to_string(), 5000)]);
        let r = release::private_keys(exact, 20, 5, 0.5, 1e-7).unwrap();
        assert!(r.threshold.unwrap() > 5);
        assert!(r.delta <= 1e-7 && r.delta > 0.0);
        shown += usize::from(r.values.iter().any(|(k, _)| k == "lone"));
        busy += usize::from(r.values.iter().any(|(k, _)| k == "busy"));
    }
    assert!(shown * 20 <= runs, "shown in {shown} of {runs}");
    assert_eq!(busy, runs);
}

/// 2026-11-03T00:00:00Z.
const T0: i64 = 1_793_664_000_000;

/// Collects the lines of `text` as `ingest`; how many were accepted.
fn collect_lines(v: &Vault, text: &str) -> u64 {
    let ingest = v.principal("ingest").unwrap();
    v.collect(
        &ingest,
        &mut text.as_bytes(),
        &crate::CollectOptions::default(),
        &mut |_| {},
    )
    .unwrap()
    .accepted
}

/// A new vault at `dir` on `clock`.
fn vault_at(dir: &std::path::Path, clock: Arc<crate::FixedClock>) -> Vault {
    Vault::init(
        dir,
        crate::OpenOptions {
            clock,
            ..crate::OpenOptions::default()
        },
    )
    .unwrap()
}

/// A vault with an analyst, and `per` scan events of each of `people`
/// people over 2026-11-01 and 02, spread over seven ZIP3s; person 0 has
/// 40 events in one group besides.
fn scanned(people: usize, per: usize) -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let v = vault_at(dir.path(), Arc::new(crate::FixedClock::new(T0)));
    v.add_principal("ingest", "collector").unwrap();
    v.add_principal("analyst", "statistics").unwrap();
    let line = |p: usize, zip: usize, day: usize, hour: usize| {
        format!(
            "{{\"subject\":\"p{p}\",\"category\":\"scan_event\",\"purpose\":\"delivery\",\"fields\":{{\"piece\":\"letter\",\"facility_zip\":\"{zip}01\",\"op_code\":\"918\",\"event\":\"processed\",\"scanned_at\":\"2026-11-0{day}T{hour:02}:00:00Z\"}}}}"
        )
    };
    let mut lines: Vec<String> = (0..people)
        .flat_map(|p| (0..per).map(move |i| (p, i)))
        .map(|(p, i)| line(p, 100 + (p + i) % 7, 1 + i % 2, i % 24))
        .collect();
    lines.extend((0..40).map(|i| line(0, 100, 1, i % 24)));
    let ingest = v.principal("ingest").unwrap();
    let text = lines.join("\n");
    let r = v
        .collect(
            &ingest,
            &mut text.as_bytes(),
            &crate::CollectOptions::default(),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(r.accepted as usize, lines.len());
    (dir, v)
}

fn count_by(group_by: &[&str]) -> Query {
    parse_query(
        &serde_json::from_value(serde_json::json!({
            "category": "scan_event", "measure": "count", "group_by": group_by,
            "from": "2026-11-01", "to": "2026-11-03", "epsilon": 0.5,
        }))
        .unwrap(),
    )
    .unwrap()
}

#[test]
fn subject_ranges_cover_every_ref_once() {
    for n in 1..=9 {
        let r = subject_ranges(n);
        assert_eq!(r.len(), n);
        assert_eq!(r[0].0, [0u8; 16]);
        assert_eq!(r[n - 1].1, None);
        for w in r.windows(2) {
            assert_eq!(w[0].1, Some(w[1].0), "contiguous");
            assert!(w[0].0 < w[1].0, "increasing");
        }
    }
}

#[test]
fn scans_split_by_subject_range_agree_with_one_scan() {
    let (_dir, v) = scanned(60, 6);
    let analyst = v.principal("analyst").unwrap();
    let tax = v.pack.taxonomy();
    // Each person's six events fall in six groups by day and ZIP3 (and by
    // ZIP3): all count; person 0's forty more, in a group holding one of
    // theirs, add four (5 a group). With no grouping, 5 a person count.
    for (group_by, want) in [(&["day", "zip3"][..], 364), (&["zip3"], 364), (&[], 300)] {
        let q = count_by(group_by);
        let plan = pstats::check(tax, analyst.role_ix, "statistics", &q).unwrap();
        assert_eq!(plan.stats.max_records_per_group, 5);
        let one = v.bounded_scan_in(&plan, &q, T0, 1).unwrap();
        assert_eq!(one.values().sum::<i64>(), want, "{group_by:?}");
        for n in [2, 3, 7] {
            assert_eq!(
                v.bounded_scan_in(&plan, &q, T0, n).unwrap(),
                one,
                "{n} ranges"
            );
        }
    }
}

#[test]
fn the_payload_reader_takes_only_the_fields_and_reads_them_as_json() {
    let (_dir, v) = scanned(1, 1);
    let analyst = v.principal("analyst").unwrap();
    let tax = v.pack.taxonomy();
    let q = count_by(&["day", "zip3"]);
    let plan = pstats::check(tax, analyst.role_ix, "statistics", &q).unwrap();
    let mut k = Keyer::new(tax, &plan, &q);
    let key = |k: &mut Keyer<'_>, p: &str| {
        k.contribution(p.as_bytes())
            .map(|c| c.map(|(g, v)| (g.replace(SEP, "|"), v)))
    };
    let ok = |day: &str, zip: &str| Some((format!("{day}|{zip}"), 1));
    assert_eq!(
        key(
            &mut k,
            r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z","facility_zip":"60601"}}"#
        )
        .unwrap(),
        ok("2026-11-01", "606")
    );
    // Other keys before and after, nested values skipped, any field order.
    assert_eq!(
        key(&mut k, r#"{"legal_basis":"x","fields":{"extra":{"a":[1,{"b":"}"}]},"facility_zip":"70101","scanned_at":"2026-11-02T23:59:59.5-00:00"},"more":[null]}"#).unwrap(),
        ok("2026-11-02", "701")
    );
    // Escapes are read as JSON reads them.
    assert_eq!(
        key(
            &mut k,
            r#"{"fields":{"scanned_at":"2026-11-01T00:00:00Z","facility_zip":"\u00360601"}}"#
        )
        .unwrap(),
        ok("2026-11-01", "606")
    );
    // The time is read in its offset: 23:30 at -02:00 is the next UTC day.
    assert_eq!(
        key(
            &mut k,
            r#"{"fields":{"scanned_at":"2026-11-01T23:30:00-02:00","facility_zip":"60601"}}"#
        )
        .unwrap(),
        ok("2026-11-02", "606")
    );
    // Outside the window, a field missing or not text: nothing.
    for p in [
        r#"{"fields":{"scanned_at":"2026-11-03T00:00:00Z","facility_zip":"60601"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z","facility_zip":60601}}"#,
        r#"{"fields":{"scanned_at":"yesterday","facility_zip":"60601"}}"#,
    ] {
        assert_eq!(key(&mut k, p).unwrap(), None, "{p}");
    }
    // Not a record payload: a fault, never nothing. Two `fields`; a needed
    // string that does not decode (a lone surrogate); bytes that are not
    // UTF-8 in a field the query skips.
    for p in [
        r#"[1,2]"#,
        r#"{"x":1}"#,
        r#"{"fields":{}"#,
        r#"{"fields":{}} x"#,
        r#"{"fields":{},"fields":{}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z","facility_zip":"\ud800601"}}"#,
    ] {
        assert!(key(&mut k, p).is_err(), "{p}");
    }
    let mut bad = br#"{"fields":{"piece":"le"#.to_vec();
    bad.push(0xff);
    bad.extend_from_slice(br#"er","scanned_at":"2026-11-01T10:00:00Z","facility_zip":"60601"}}"#);
    assert!(k.contribution(&bad).is_err());
}

/// A purpose that reaches a person's data only with their consent
/// (`marketing`) counts, in aggregate too, only the people whose consent
/// stands: not those who never gave it, nor one who withdrew it.
#[test]
fn a_consent_purpose_counts_only_the_people_who_consented() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault_at(dir.path(), Arc::new(crate::FixedClock::new(T0)));
    v.add_principal("ingest", "collector").unwrap();
    v.add_principal("officer", "privacy_officer").unwrap();
    v.add_principal("promo", "marketing").unwrap();
    v.add_principal("analyst", "statistics").unwrap();
    // Ten people, three engagement events each, on 2026-11-01.
    let text: Vec<String> = (0..10)
        .flat_map(|p| (0..3).map(move |i| (p, i)))
        .map(|(p, i)| {
            format!(
                "{{\"subject\":\"e{p}\",\"category\":\"informed_delivery_engagement\",\"purpose\":\"informed_delivery\",\"fields\":{{\"event\":\"open\",\"at\":\"2026-11-01T0{i}:00:00Z\"}}}}"
            )
        })
        .collect();
    assert_eq!(collect_lines(&v, &text.join("\n")), 30);
    let officer = v.principal("officer").unwrap();
    for p in ["e1", "e4", "e7"] {
        v.set_consent(&officer, p, "marketing", true).unwrap();
    }
    v.set_consent(&officer, "e7", "marketing", false).unwrap();
    let req: StatsRequest = serde_json::from_value(serde_json::json!({
        "category": "informed_delivery_engagement", "measure": "count",
        "group_by": ["event"], "from": "2026-11-01", "to": "2026-11-02", "epsilon": 0.25,
    }))
    .unwrap();
    let q = parse_query(&req).unwrap();
    let tax = v.pack.taxonomy();
    let promo = v.principal("promo").unwrap();
    let plan = pstats::check(tax, promo.role_ix, "marketing", &q).unwrap();
    // e1 and e4: three events each.
    let counted = v.bounded_scan_in(&plan, &q, T0, 2).unwrap();
    assert_eq!(counted.values().sum::<i64>(), 6, "{counted:?}");
    // The statistics purpose needs no consent: everyone counts.
    let analyst = v.principal("analyst").unwrap();
    let plan = pstats::check(tax, analyst.role_ix, "statistics", &q).unwrap();
    let counted = v.bounded_scan_in(&plan, &q, T0, 2).unwrap();
    assert_eq!(counted.values().sum::<i64>(), 30, "{counted:?}");
    // The answers say whom they count.
    let a = v.statistics(&promo, "marketing", &req).unwrap();
    assert_eq!(a.consented_only.as_deref(), Some("marketing"));
    assert!(
        a.accuracy.statement.contains("consent to `marketing`"),
        "{}",
        a.accuracy.statement
    );
    let a = v.statistics(&analyst, "statistics", &req).unwrap();
    assert_eq!(a.consented_only, None);
    assert!(
        !a.accuracy.statement.contains("consent"),
        "{}",
        a.accuracy.statement
    );
}

/// The bounded values of a count by day and ZIP3, from rows only and with
/// the scan blocks the store holds; both, in one and in three ranges.
fn both_ways(v: &Vault) -> (HashMap<String, i64>, HashMap<String, i64>) {
    let analyst = v.principal("analyst").unwrap();
    let q = count_by(&["day", "zip3"]);
    let plan = pstats::check(v.pack.taxonomy(), analyst.role_ix, "statistics", &q).unwrap();
    let rows = v.bounded_scan_with(&plan, &q, T0, 1, false).unwrap();
    let blocks = v.bounded_scan_with(&plan, &q, T0, 1, true).unwrap();
    assert_eq!(v.bounded_scan_with(&plan, &q, T0, 3, true).unwrap(), blocks);
    assert_eq!(v.bounded_scan_with(&plan, &q, T0, 3, false).unwrap(), rows);
    (rows, blocks)
}

/// Scan blocks answer what the rows answer: once built, after new records
/// (read beside them), after a correction (the person's blocks dropped
/// with the old value) and after an erasure; a block altered in the store
/// stops the scan, never a guess; and the store holds them sealed.
#[test]
fn scan_blocks_answer_what_the_rows_answer() {
    let (dir, v) = scanned(60, 6);
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(rows.values().sum::<i64>(), 364);
    let built = v.build_scan_blocks("scan_event", &mut |_| {}).unwrap();
    assert!(built.supported);
    assert_eq!((built.people, built.records), (60, 60 * 6 + 40));
    assert_eq!(built.blocks, 60, "one key a person: one block each");
    assert_eq!(
        built.tag, "b2:scanned_at:event,facility_zip,op_code,piece,scanned_at",
        "the fields of the pack's declaration"
    );
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(blocks.values().sum::<i64>(), 364);
    // A person added, with one event, then corrected: their new value
    // counts once, the old one not at all.
    let solo = r#"{"subject":"solo","category":"scan_event","purpose":"delivery","fields":{"piece":"letter","facility_zip":"99901","op_code":"918","event":"processed","scanned_at":"2026-11-01T05:00:00Z"}}"#;
    assert_eq!(collect_lines(&v, solo), 1);
    assert!(
        v.build_scan_blocks("scan_event", &mut |_| {})
            .unwrap()
            .records
            > 400
    );
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(blocks.get("2026-11-01\u{1f}999"), Some(&1));
    v.add_principal("officer", "privacy_officer").unwrap();
    let officer = v.principal("officer").unwrap();
    v.correct(
        &officer,
        "solo",
        "scan_event",
        r#"{"piece":"letter","facility_zip":"88801","op_code":"918","event":"processed","scanned_at":"2026-11-01T05:00:00Z"}"#,
        None,
    )
    .unwrap();
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(blocks.get("2026-11-01\u{1f}999"), None);
    assert_eq!(blocks.get("2026-11-01\u{1f}888"), Some(&1));
    // New records beside built blocks; then an erasure.
    let more = r#"{"subject":"p3","category":"scan_event","purpose":"delivery","fields":{"piece":"letter","facility_zip":"77701","op_code":"918","event":"processed","scanned_at":"2026-11-02T05:00:00Z"}}"#;
    assert_eq!(collect_lines(&v, more), 1);
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(blocks.get("2026-11-02\u{1f}777"), Some(&1));
    let before = blocks.values().sum::<i64>();
    v.erase(&officer, &["p3".into()], &mut |_| {}).unwrap();
    let (rows, blocks) = both_ways(&v);
    assert_eq!(rows, blocks);
    assert_eq!(blocks.values().sum::<i64>(), before - 7);
    // Nothing of a record's fields is in the store's files in the clear.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in [&b"88801"[..], b"99901", b"2026-11-01T05"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} in the clear in {}",
                String::from_utf8_lossy(needle),
                path.display()
            );
        }
    }
    // A block whose position is moved (to hide rows or count them twice)
    // no longer opens: the scan fails.
    drop(v);
    let db = rusqlite::Connection::open(dir.path().join("data.db")).unwrap();
    let n = db
        .execute(
            "UPDATE scan_blocks SET upto = upto - 1
             WHERE rowid = (SELECT min(rowid) FROM scan_blocks)",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let v = Vault::open(
        dir.path(),
        crate::OpenOptions {
            clock: Arc::new(crate::FixedClock::new(T0)),
            ..crate::OpenOptions::default()
        },
    )
    .unwrap();
    let analyst = v.principal("analyst").unwrap();
    let q = count_by(&["day", "zip3"]);
    let plan = pstats::check(v.pack.taxonomy(), analyst.role_ix, "statistics", &q).unwrap();
    assert!(v.bounded_scan_with(&plan, &q, T0, 1, false).is_ok());
    assert!(v.bounded_scan_with(&plan, &q, T0, 1, true).is_err());
}

/// A block's entry of a payload adds what the payload adds, for every
/// dimension the pack declares: escapes, offsets, a missing or unreadable
/// time, a missing field, a value that is not text, fields in any order.
#[test]
fn a_block_entry_adds_what_its_record_adds() {
    let (_dir, v) = scanned(1, 1);
    let analyst = v.principal("analyst").unwrap();
    let tax = v.pack.taxonomy();
    let cat = tax.category_ix("scan_event").unwrap();
    let kept = blocks::block_fields(tax, cat).unwrap();
    let time = kept.iter().position(|f| *f == "scanned_at").unwrap();
    let payloads = [
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z","facility_zip":"60601","piece":"letter","event":"processed","op_code":"918"}}"#,
        r#"{"legal_basis":"x","fields":{"extra":{"a":[1]},"facility_zip":"70101","scanned_at":"2026-11-02T23:59:59.5-00:00","piece":"flat"},"more":[null]}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T00:00:00Z","facility_zip":"\u00360601","event":"d\u00e9livr\"e"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T23:30:00-02:00","facility_zip":"60601","op_code":"9\\18"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-03T00:00:00Z","facility_zip":"60601"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z"}}"#,
        r#"{"fields":{"scanned_at":"2026-11-01T10:00:00Z","facility_zip":60601,"piece":7}}"#,
        r#"{"fields":{"scanned_at":"yesterday","facility_zip":"60601"}}"#,
        r#"{"fields":{"facility_zip":"60601"}}"#,
    ];
    for dims in [
        &["day", "zip3"][..],
        &["week", "piece"],
        &["event", "operation"],
        &["zip3", "day", "event", "piece"],
        &[],
    ] {
        let q = count_by(dims);
        let plan = pstats::check(tax, analyst.role_ix, "statistics", &q).unwrap();
        let mut k = Keyer::new(tax, &plan, &q);
        let map = blocks::field_map(tax, cat, &k.needed.names).unwrap();
        let mut entry = Vec::new();
        for p in payloads {
            let want = k
                .contribution(p.as_bytes())
                .unwrap()
                .map(|(g, v)| (g.to_string(), v));
            assert!(blocks::entry_of(p.as_bytes(), &kept, (7, time), &mut entry).unwrap());
            let got = k
                .block_contribution(&entry, &map)
                .unwrap()
                .map(|(g, v)| (g.to_string(), v));
            assert_eq!(got, want, "{dims:?} {p}");
        }
    }
    // An entry cut short, or holding bytes that are not UTF-8, is a fault.
    let q = count_by(&["day"]);
    let plan = pstats::check(tax, analyst.role_ix, "statistics", &q).unwrap();
    let mut k = Keyer::new(tax, &plan, &q);
    let map = blocks::field_map(tax, cat, &k.needed.names).unwrap();
    let mut entry = Vec::new();
    assert!(blocks::entry_of(payloads[0].as_bytes(), &kept, (0, time), &mut entry).unwrap());
    assert_eq!(blocks::entry_seq(&entry), Some(0));
    assert!(
        k.block_contribution(&entry[..entry.len() - 1], &map)
            .is_err()
    );
    assert!(k.block_contribution(&entry[..9], &map).is_err());
    let mut bad = entry.clone();
    let at = bad.len() - 2;
    bad[at] = 0xff;
    assert!(k.block_contribution(&bad, &map).is_err());
}

/// A person over the bounds whose records fall in blocks of several keys:
/// the blocks are read in the order of the person's rows, so the bounding
/// keeps the records a scan of rows keeps. Collected on day 0 (expiry E),
/// day 1 (expiry E + 1 day) and day 0 again: the first block holds the
/// first and third collections, the rows come first, second, third.
#[test]
fn blocks_of_several_keys_are_bounded_in_the_order_of_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(crate::FixedClock::new(T0));
    let v = vault_at(dir.path(), clock.clone());
    v.add_principal("ingest", "collector").unwrap();
    v.add_principal("analyst", "statistics").unwrap();
    let collect = |zip: usize| {
        let text: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    "{{\"subject\":\"busy\",\"category\":\"scan_event\",\"purpose\":\"delivery\",\"fields\":{{\"piece\":\"letter\",\"facility_zip\":\"{}01\",\"op_code\":\"918\",\"event\":\"processed\",\"scanned_at\":\"2026-11-01T0{i}:00:00Z\"}}}}",
                    zip + i
                )
            })
            .collect();
        assert_eq!(collect_lines(&v, &text.join("\n")), 8);
    };
    collect(100);
    clock.advance(86_400_000);
    collect(200);
    clock.advance(-86_400_000);
    collect(300);
    let built = v.build_scan_blocks("scan_event", &mut |_| {}).unwrap();
    assert_eq!((built.people, built.blocks, built.records), (1, 2, 24));
    let analyst = v.principal("analyst").unwrap();
    let q = count_by(&["zip3"]);
    let plan = pstats::check(v.pack.taxonomy(), analyst.role_ix, "statistics", &q).unwrap();
    assert_eq!(plan.stats.max_records, 20);
    let rows = v.bounded_scan_with(&plan, &q, T0, 1, false).unwrap();
    let blocks = v.bounded_scan_with(&plan, &q, T0, 1, true).unwrap();
    assert_eq!(rows.values().sum::<i64>(), 20);
    // The first twenty rows: collections one and two, four of the third.
    assert_eq!(rows.keys().filter(|k| k.starts_with('2')).count(), 8);
    assert_eq!(blocks, rows);
}
