//! Civil time for the whole workspace, in one place: the text of instants
//! (ISO 8601 dates and date-times, RFC 3339 with milliseconds), calendar
//! dates as day numbers, and the start of a day. Every crate that reads or
//! writes a date goes through here; the calendar itself is `jiff`'s.
//!
//! Instants are unix milliseconds (`i64`), UTC. Pure: no clock is read here
//! (callers pass the time in), so the policy crate may use it too.
//!
//! jiff's own range is the years -9999..=9999. The Gregorian calendar repeats
//! every 400 years (146,097 days), so a day number is brought into that range
//! by whole cycles and the cycles are added back to the year: every `i64`
//! instant still has a date, as it always had.

use std::fmt::Write as _;

use jiff::Span;
use jiff::civil::Date;

#[cfg(test)]
mod tests;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Days in 400 Gregorian years: the calendar's cycle.
const CYCLE_DAYS: i64 = 146_097;
/// Years in one cycle.
const CYCLE_YEARS: i64 = 400;
const EPOCH: Date = Date::constant(1970, 1, 1);

/// The date (year, month, day) of a day number since 1970-01-01
/// (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let cycles = days.div_euclid(CYCLE_DAYS);
    let within = days.rem_euclid(CYCLE_DAYS);
    // 1970-01-01 plus less than one cycle is inside jiff's range.
    let date = Span::new()
        .try_days(within)
        .and_then(|span| EPOCH.checked_add(span))
        .unwrap_or_else(|_| unreachable!("a day within one cycle of 1970 is a date"));
    (
        i64::from(date.year()) + cycles * CYCLE_YEARS,
        month_day(date.month()),
        month_day(date.day()),
    )
}

/// The day number since 1970-01-01 of a date, or `None` when there is no
/// such date (month 13, February 30).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let cycles = year.checked_sub(1970)?.div_euclid(CYCLE_YEARS);
    let within = i16::try_from(year - cycles * CYCLE_YEARS).ok()?;
    let date = Date::new(within, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?;
    let days = date.since(EPOCH).ok()?.get_days();
    cycles.checked_mul(CYCLE_DAYS)?.checked_add(i64::from(days))
}

/// Whether `year-month-day` is a date of the proleptic Gregorian calendar.
pub fn is_date(year: i64, month: u32, day: u32) -> bool {
    days_from_civil(year, month, day).is_some()
}

/// The number of days of `month` (1..=12) in `year`; 0 for another month.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    // The same place in the cycle has the same months.
    let Ok(within) = i16::try_from(1600 + year.rem_euclid(CYCLE_YEARS)) else {
        return 0;
    };
    i8::try_from(month)
        .ok()
        .and_then(|m| Date::new(within, m, 1).ok())
        .map_or(0, |d| month_day(d.days_in_month()))
}

fn month_day(v: i8) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The start (00:00 UTC) of the calendar day holding `ms`.
pub fn start_of_day_ms(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// Parses an ISO 8601 date (`YYYY-MM-DD`, midnight UTC) or date-time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`) into unix ms. A zone
/// is required; a fraction keeps milliseconds. `None` for anything else,
/// including dates that do not exist. The shape is checked byte by byte
/// (jiff's parsers accept more spellings than instruments may use).
pub fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !at(4, b'-') || !at(7, b'-') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let day_ms =
        days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)? * DAY_MS;
    if b.len() == 10 {
        return Some(day_ms);
    }
    if !at(10, b'T') || !at(13, b':') || !at(16, b':') {
        return None;
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        let digits = b.get(start..end)?;
        for k in 0..3 {
            millis = millis * 10 + digits.get(k).map_or(0, |d| i64::from(d - b'0'));
        }
        i = end;
    }
    let offset_min = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'-' {
                -(oh * 60 + om)
            } else {
                oh * 60 + om
            }
        }
        _ => return None,
    };
    Some(day_ms + ((hh * 60 + mm - offset_min) * 60 + ss) * 1000 + millis)
}

/// Parses RFC 3339 text as stored field values and statistics windows hold
/// it: a date (`YYYY-MM-DD`, midnight UTC) or a date-time with its offset,
/// in every spelling jiff reads (lower-case `t` and `z`, a leap second
/// taken as :59), into unix ms. `None` without an offset, for a date that
/// does not exist, or outside jiff's years -9999..=9999. Wider than
/// [`parse_iso`] on purpose: a value collection accepted must still have
/// its time when it is counted.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() == 10 {
        let d: Date = s.parse().ok()?;
        let days = d.since(EPOCH).ok()?.get_days();
        return Some(i64::from(days) * DAY_MS);
    }
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// The day number of the Monday that starts the week (ISO 8601, Monday
/// first) holding day number `days`. 1970-01-01 was a Thursday.
pub fn week_start(days: i64) -> i64 {
    days - (days + 3).rem_euclid(7)
}

/// Formats unix ms as ISO 8601 UTC: a bare date at midnight, otherwise a
/// date-time with `Z` (and milliseconds when there are any).
pub fn format_iso(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let rem = ms.rem_euclid(DAY_MS);
    if rem == 0 {
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// RFC 3339 UTC text of unix milliseconds, always with milliseconds
/// (`2023-11-14T22:13:20.123Z`): the form of times in leaves and reports.
pub fn format_ms(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let rem = ms.rem_euclid(DAY_MS);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let mut out = String::with_capacity(24);
    if !(0..=9999).contains(&y) {
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"
        );
        return out;
    }
    // Every read writes two of these a record: digits straight into the
    // text, without the formatting machinery (the same text as above).
    let digits = |out: &mut String, v: i64, width: u32| {
        for p in (0..width).rev() {
            let digit = (v / 10_i64.pow(p)) % 10;
            out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        }
    };
    digits(&mut out, y, 4);
    out.push('-');
    digits(&mut out, i64::from(m), 2);
    out.push('-');
    digits(&mut out, i64::from(d), 2);
    out.push('T');
    digits(&mut out, h, 2);
    out.push(':');
    digits(&mut out, mi, 2);
    out.push(':');
    digits(&mut out, s, 2);
    out.push('.');
    digits(&mut out, milli, 3);
    out.push('Z');
    out
}

/// `YYYY-MM-DD` of a day number since 1970-01-01.
pub fn format_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}
