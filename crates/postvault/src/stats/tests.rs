#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn a_person_with_ten_thousand_records_moves_a_count_by_at_most_k() {
    let mut b = Bounder {
        max: 20,
        per_group: 5,
        person: None,
        total: 0,
        groups: HashMap::new(),
        out: HashMap::new(),
    };
    let heavy = [7u8; 16];
    for i in 0..10_000 {
        b.add(&heavy, Some((format!("g{}", i % 3), 1)));
    }
    // Five per group, three groups: 15, under the total of 20.
    assert_eq!(b.out.values().sum::<i64>(), 15);
    assert!(b.out.values().all(|&v| v == 5));
    for i in 0..10_000 {
        b.add(&[8u8; 16], Some((format!("h{i}"), 1)));
    }
    // Many groups: the total of 20 binds.
    assert_eq!(b.out.iter().filter(|(k, _)| k.starts_with('h')).count(), 20);
    // Records outside the window add nothing and use no allowance.
    b.add(&[9u8; 16], None);
    b.add(&[9u8; 16], Some(("g0".into(), 1)));
    assert_eq!(b.out["g0"], 6);
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
