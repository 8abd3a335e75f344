#![allow(clippy::unwrap_used)]

//! The formats are contracts (leaves, reports, JSON): fixed vectors, and a
//! day-by-day comparison with the proleptic Gregorian rules written out.

use super::*;

/// The Gregorian rule, written out independently of jiff.
fn is_leap(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

#[test]
fn format_ms_writes_rfc3339_utc_with_millis() {
    assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(format_ms(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
    assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
    // Past jiff's range: still a date, by whole 400-year cycles.
    assert!(format_ms(300_000_000_000_000).starts_with("11476-"));
    assert_eq!(format_ms(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
}

#[test]
fn format_ms_writes_what_the_formatter_writes_in_every_year_it_shortcuts() {
    let reference = |ms: i64| {
        let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
        let rem = ms.rem_euclid(DAY_MS);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000
        )
    };
    // Year 0 to past 9999, at a stride that visits every field's digits.
    let (first, last) = (-62_167_219_200_000_i64, 253_402_300_800_000_i64 + DAY_MS);
    let mut ms = first - DAY_MS;
    while ms < last {
        assert_eq!(format_ms(ms), reference(ms), "{ms}");
        ms += 7_919_999_337;
    }
    for ms in [first, first - 1, last - DAY_MS - 1, 0, -1, 86_399_999] {
        assert_eq!(format_ms(ms), reference(ms), "{ms}");
    }
}

#[test]
fn format_iso_is_a_date_at_midnight_else_a_date_time() {
    assert_eq!(format_iso(0), "1970-01-01");
    assert_eq!(format_iso(1_773_576_000_000), "2026-03-15T12:00:00Z");
    assert_eq!(format_iso(1_773_576_000_250), "2026-03-15T12:00:00.250Z");
    assert_eq!(format_iso(-DAY_MS), "1969-12-31");
    assert_eq!(format_day(20_527), "2026-03-15");
}

#[test]
fn parse_iso_reads_exactly_the_documented_shapes() {
    assert_eq!(parse_iso("1970-01-01"), Some(0));
    assert_eq!(parse_iso("2026-03-15T12:00:00Z"), Some(1_773_576_000_000));
    assert_eq!(
        parse_iso("2026-03-15T07:00:00.250-05:00"),
        Some(1_773_576_000_250)
    );
    assert_eq!(parse_iso("2024-02-29"), Some(19_782 * DAY_MS));
    assert_eq!(parse_iso("9999-12-31"), Some(2_932_896 * DAY_MS));
    for bad in [
        "2025-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-03-15T12:00:00",
        "2026-03-15T12:00Z",
        "2026-03-15 12:00:00Z",
        "2026-03-15T12:00:00z",
        "2026-03-15T12:00:00+0500",
        "2026-03-15T24:00:00Z",
        "2026-03-15T12:00:00.Z",
        "2026-03-15T12:00:00.1234567890Z",
        "+2026-03-15",
        "26-03-15",
        "",
    ] {
        assert_eq!(parse_iso(bad), None, "{bad}");
    }
    for ms in [0, 1_773_576_000_000, 1_773_576_000_250, -DAY_MS, 86_399_999] {
        assert_eq!(parse_iso(&format_iso(ms)), Some(ms));
    }
}

#[test]
fn days_round_trip_and_follow_the_gregorian_rules() {
    // Day by day over two cycles around the epoch and across jiff's upper
    // bound: the next day is the next date by the written-out rules.
    let mut ymd = civil_from_days(-CYCLE_DAYS);
    assert_eq!(ymd, (1570, 1, 1));
    let end = 2 * CYCLE_DAYS;
    for z in -CYCLE_DAYS..end {
        assert_eq!(civil_from_days(z), ymd, "day {z}");
        assert_eq!(days_from_civil(ymd.0, ymd.1, ymd.2), Some(z));
        let (y, m, d) = ymd;
        let len = match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        assert_eq!(days_in_month(y, m), len);
        ymd = if d < len {
            (y, m, d + 1)
        } else if m < 12 {
            (y, m + 1, 1)
        } else {
            (y + 1, 1, 1)
        };
    }
    let far = 4_000_000;
    let (y, m, d) = civil_from_days(far);
    assert!(y > 9999);
    assert_eq!(days_from_civil(y, m, d), Some(far));
    assert_eq!(days_from_civil(2025, 2, 29), None);
    assert_eq!(days_from_civil(2026, 13, 1), None);
    assert_eq!(days_in_month(2026, 13), 0);
    assert!(is_date(2000, 2, 29) && !is_date(1900, 2, 29));
    assert_eq!(start_of_day_ms(DAY_MS + 5), DAY_MS);
    assert_eq!(start_of_day_ms(-5), -DAY_MS);
}

#[test]
fn parse_rfc3339_reads_dates_and_zoned_date_times_as_collection_accepts_them() {
    assert_eq!(parse_rfc3339("1970-01-01"), Some(0));
    assert_eq!(parse_rfc3339("2026-12-04"), parse_iso("2026-12-04"));
    assert_eq!(
        parse_rfc3339("2026-12-03T23:30:00-02:00"),
        parse_iso("2026-12-04T01:30:00Z")
    );
    assert_eq!(
        parse_rfc3339("2026-12-03t23:30:00.250z"),
        parse_iso("2026-12-03T23:30:00.250Z")
    );
    assert_eq!(parse_rfc3339("1969-12-31"), Some(-DAY_MS));
    assert!(parse_rfc3339("2026-13-01").is_none());
    assert!(parse_rfc3339("2026-02-30").is_none());
    assert!(parse_rfc3339("2026-12-03T23:30:00").is_none(), "no offset");
    assert!(parse_rfc3339("").is_none());
}

#[test]
fn week_start_is_the_monday_on_or_before() {
    // 1970-01-01 was a Thursday; 1969-12-29 the Monday before it.
    assert_eq!(week_start(0), -3);
    let monday = days_from_civil(2026, 11, 30).unwrap();
    for d in 0..7 {
        assert_eq!(week_start(monday + d), monday);
    }
    assert_eq!(week_start(monday + 7), monday + 7);
    assert_eq!(week_start(monday - 1), monday - 7);
    assert_eq!(format_day(week_start(-1000)).len(), 10);
}
