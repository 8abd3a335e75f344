//! Instants of instruments (ISO 8601 in JSON, read and written by
//! `postvault-time`) and the mail-cover arithmetic of 39 CFR 233.3.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// An instant as unix milliseconds, UTC. In JSON an ISO 8601 date
/// (`2026-03-01`, the start of that day UTC) or a date-time with seconds and
/// a zone (`2026-03-01T14:30:00Z`, `2026-03-01T09:30:00.250-05:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_iso(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_iso(&s)
            .map(Timestamp)
            .ok_or_else(|| D::Error::custom("expected an ISO 8601 date or date-time with a zone"))
    }
}

// The calendar and the text of instants are the workspace's one time module.
pub use postvault_time::{
    civil_from_days, days_from_civil, format_iso, parse_iso, start_of_day_ms,
};

// ---------------------------------------------------------------------------
// Mail-cover arithmetic (39 CFR 233.3)
// ---------------------------------------------------------------------------

/// The end (exclusive) of a mail-cover order starting at `start_ms` for
/// `days` days, never longer than `max_days` (233.3(g)(5)).
pub fn mail_cover_order_end_ms(start_ms: i64, days: u32, max_days: u32) -> i64 {
    start_ms.saturating_add(i64::from(days.min(max_days)).saturating_mul(DAY_MS))
}

/// The instant (exclusive) by which an oral request made at `oral_at_ms` must
/// be confirmed in writing: the end of the `calendar_days`-th calendar day
/// (UTC) after the day of the request (233.3(e)(3)).
pub fn confirmation_deadline_ms(oral_at_ms: i64, calendar_days: u32) -> i64 {
    start_of_day_ms(oral_at_ms)
        .saturating_add((i64::from(calendar_days) + 1).saturating_mul(DAY_MS))
}

/// Cumulative cover days after an order of `days` follows `previous` days.
pub fn cumulative_days_after(previous: u32, days: u32) -> u32 {
    previous.saturating_add(days)
}
