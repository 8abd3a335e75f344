//! Helpers: stateless hashing, calendar arithmetic, a minimal JSON line
//! writer, base64, SHA-256 and check digits.

use std::fmt::{self, Write as _};

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash step.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of (seed, tag, index), used for values that must be computable
/// without running a stream (per-subject attributes, block shuffles).
pub(crate) fn mix(seed: u64, tag: u64, idx: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ tag) ^ idx)
}

/// A tiny deterministic sequence generator over [`splitmix`].
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }
    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// A permutation of `0..16` derived from (seed, tag, block).
pub(crate) fn perm16(seed: u64, tag: u64, block: u64) -> [u8; 16] {
    let mut p: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut g = SplitMix(mix(seed, tag, block));
    for i in (1..16usize).rev() {
        let j = g.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

// ---------------------------------------------------------------------------
// Calendar: the workspace's one time module.
// ---------------------------------------------------------------------------

pub(crate) use postvault_time::{civil_from_days, days_in_month};

/// The simulated day, as a day number since 1970-01-01.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day(pub i64);

impl Day {
    /// Normalises any (y, m, d) to a valid date: the year is clamped to
    /// 1900..=9899, the month to 1..=12 and the day into the month.
    pub(crate) fn from_ymd(y: i32, m: u32, d: u32) -> (Day, (i32, u32, u32)) {
        let y = y.clamp(1900, 9899);
        let m = m.clamp(1, 12);
        let d = d.clamp(1, days_in_month(i64::from(y), m));
        // Clamped into the month of a year in range: always a date.
        let day = postvault_time::days_from_civil(i64::from(y), m, d).unwrap_or_default();
        (Day(day), (y, m, d))
    }

    /// `YYYY-MM-DD` of the day `offset` days from the simulated day.
    pub(crate) fn write_date(self, out: &mut String, offset: i64) {
        let (y, m, d) = civil_from_days(self.0 + offset);
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }

    /// `YYYYMMDD` of the simulated day.
    pub(crate) fn compact(self) -> String {
        let (y, m, d) = civil_from_days(self.0);
        format!("{y:04}{m:02}{d:02}")
    }

    pub(crate) fn year(self) -> i64 {
        civil_from_days(self.0).0
    }

    /// RFC 3339 UTC timestamp of second `sec` (0..86400) of the day.
    pub(crate) fn write_datetime(self, out: &mut String, sec: u32) {
        let sec = sec.min(86_399);
        self.write_date(out, 0);
        let _ = write!(
            out,
            "T{:02}:{:02}:{:02}Z",
            sec / 3600,
            sec / 60 % 60,
            sec % 60
        );
    }
}

// ---------------------------------------------------------------------------
// JSON line writer
// ---------------------------------------------------------------------------

/// Appends `s` to `out` as the inside of a JSON string (serde_json's
/// escaping; text that needs none, nearly all of it, is copied as is).
pub(crate) fn escape_into(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        return;
    }
    let quoted = serde_json::Value::from(s).to_string();
    out.push_str(quoted.get(1..quoted.len() - 1).unwrap_or_default());
}

/// A `fmt::Write` adapter that JSON-escapes everything written through it.
struct Esc<'a>(&'a mut String);

impl fmt::Write for Esc<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// One NDJSON collection line under construction:
/// `{"subject":..,"category":..,"purpose":..,"fields":{..}[,"legal_basis":..]}`.
pub(crate) struct Rec {
    buf: String,
}

impl Rec {
    pub(crate) fn new(subject: u64, category: &str, purpose: &str) -> Rec {
        let mut buf = String::with_capacity(256);
        let _ = write!(buf, "{{\"subject\":\"cust-{subject:012}\",\"category\":\"");
        escape_into(&mut buf, category);
        buf.push_str("\",\"purpose\":\"");
        escape_into(&mut buf, purpose);
        buf.push_str("\",\"fields\":{");
        Rec { buf }
    }

    fn key(&mut self, key: &str) {
        if !self.buf.ends_with('{') {
            self.buf.push(',');
        }
        self.buf.push('"');
        escape_into(&mut self.buf, key);
        self.buf.push_str("\":");
    }

    /// A string field.
    pub(crate) fn s(&mut self, key: &str, val: &str) -> &mut Rec {
        self.key(key);
        self.buf.push('"');
        escape_into(&mut self.buf, val);
        self.buf.push('"');
        self
    }

    /// A string field built from format arguments (escaped).
    pub(crate) fn f(&mut self, key: &str, args: fmt::Arguments<'_>) -> &mut Rec {
        self.key(key);
        self.buf.push('"');
        let _ = Esc(&mut self.buf).write_fmt(args);
        self.buf.push('"');
        self
    }

    /// A `YYYY-MM-DD` field, `offset` days from the simulated day.
    pub(crate) fn date(&mut self, key: &str, day: Day, offset: i64) -> &mut Rec {
        self.key(key);
        self.buf.push('"');
        day.write_date(&mut self.buf, offset);
        self.buf.push('"');
        self
    }

    /// An RFC 3339 UTC field at second `sec` of the simulated day.
    pub(crate) fn datetime(&mut self, key: &str, day: Day, sec: u32) -> &mut Rec {
        self.key(key);
        self.buf.push('"');
        day.write_datetime(&mut self.buf, sec);
        self.buf.push('"');
        self
    }

    /// A money field: integer cents as a string with two decimals.
    pub(crate) fn money(&mut self, key: &str, cents: u64) -> &mut Rec {
        self.f(key, format_args!("{}.{:02}", cents / 100, cents % 100))
    }

    pub(crate) fn int(&mut self, key: &str, v: i64) -> &mut Rec {
        self.key(key);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub(crate) fn bool(&mut self, key: &str, v: bool) -> &mut Rec {
        self.key(key);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// A JSON number with six decimals (coordinates).
    pub(crate) fn coord(&mut self, key: &str, v: f64) -> &mut Rec {
        self.key(key);
        let v = if v.is_finite() { v } else { 0.0 };
        let _ = write!(self.buf, "{v:.6}");
        self
    }

    /// Closes the line, adding `legal_basis` when given.
    pub(crate) fn finish(mut self, legal_basis: Option<&str>) -> String {
        self.buf.push('}');
        if let Some(lb) = legal_basis {
            self.buf.push_str(",\"legal_basis\":\"");
            escape_into(&mut self.buf, lb);
            self.buf.push('"');
        }
        self.buf.push('}');
        self.buf
    }
}

// ---------------------------------------------------------------------------
// Digits, check digits, hex, base64, SHA-256
// ---------------------------------------------------------------------------

/// Appends `n` random decimal digits drawn from `next`.
pub(crate) fn push_digits(out: &mut String, n: usize, mut next: impl FnMut() -> u64) {
    let mut left = n;
    while left > 0 {
        let take = left.min(18);
        let v = next() % 10u64.pow(take as u32);
        let _ = write!(out, "{v:0take$}");
        left -= take;
    }
}

/// The Luhn check digit for `body` (ASCII digits, check digit not included).
pub(crate) fn luhn_check_digit(body: &str) -> u8 {
    let mut sum = 0u32;
    for (i, b) in body.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0') % 10);
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    ((10 - sum % 10) % 10) as u8
}

/// The USPS mod-10 check digit of a tracking number body (weights 3,1 from
/// the right).
pub(crate) fn usps_mod10(body: &str) -> u8 {
    let mut sum = 0u32;
    for (i, b) in body.bytes().rev().enumerate() {
        let d = u32::from(b.wrapping_sub(b'0') % 10);
        sum += if i % 2 == 0 { 3 * d } else { d };
    }
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn calendar_round_trips() {
        let days_from_civil = |y, m, d| postvault_time::days_from_civil(y, m, d).unwrap();
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2026, 11, 2)), (2026, 11, 2));
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 29) + 1),
            (2024, 3, 1)
        );
        for z in -800_000..800_000i64 {
            if z % 997 == 0 {
                let (y, m, d) = civil_from_days(z);
                assert_eq!(days_from_civil(y, m, d), z);
            }
        }
        let (_, ymd) = Day::from_ymd(2026, 13, 40);
        assert_eq!(ymd, (2026, 12, 31));
        let (_, ymd) = Day::from_ymd(2025, 2, 30);
        assert_eq!(ymd, (2025, 2, 28));
    }

    #[test]
    fn check_digits() {
        // 4111 1111 1111 1111 is the classic Luhn-valid test number.
        assert_eq!(luhn_check_digit("411111111111111"), 1);
        assert_eq!(luhn_check_digit("7992739871"), 3);
        // USPS example: 9400 1000 0000 0000 0000 00 -> body weights 3,1.
        let body = "940010000000000000000";
        let d = usps_mod10(body);
        assert!(d < 10);
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\u{1}d O'Brien");
        assert_eq!(s, "a\\\"b\\\\c\\u0001d O'Brien");
        let line = {
            let mut r = Rec::new(12345, "address", "forwarding");
            r.s("street", "1 Main St").int("n", 3).bool("b", true);
            r.finish(Some("x"))
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["subject"], "cust-000000012345");
        assert_eq!(v["fields"]["n"], 3);
        assert!(v.get("consent").is_none());
    }
}
