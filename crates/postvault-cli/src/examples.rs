//! `postvault disclose example KIND`: the documented example instrument of
//! a kind (`examples/instruments/KIND.json`, the examples of
//! docs/instruments.md) with its dates moved to today.
//!
//! An instrument is a dated legal document: a warrant is valid 14 days, a
//! court order 180, so a file dated once goes stale. The examples pass the
//! gateway on 2026-03-15 (at any time of that day: every date in them is a
//! whole day or more away from it); moving every date by the same number
//! of days keeps every relation the gateway checks, so the moved example
//! passes today.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use postvault_policy::disclosure::{format_iso, parse_iso};

use crate::print_json;

/// The day the examples are written for.
const EXAMPLES_DAY: &str = "2026-03-15";
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KindArg {
    CourtOrder,
    Warrant,
    WrittenRequest,
    Subpoena,
    MailCover,
}

#[derive(Args, Debug)]
pub struct ExampleArgs {
    #[arg(value_enum)]
    kind: KindArg,
    /// Name this person instead of the example's (`cust-000123`).
    #[arg(long)]
    subject: Option<String>,
    /// The instrument's id (an instrument is used once: a second
    /// submission of the same id is refused `already_used`).
    #[arg(long)]
    instrument_id: Option<String>,
}

fn text(kind: KindArg) -> &'static str {
    match kind {
        KindArg::CourtOrder => include_str!("../../../examples/instruments/court_order.json"),
        KindArg::Warrant => include_str!("../../../examples/instruments/warrant.json"),
        KindArg::WrittenRequest => {
            include_str!("../../../examples/instruments/written_request.json")
        }
        KindArg::Subpoena => include_str!("../../../examples/instruments/subpoena.json"),
        KindArg::MailCover => include_str!("../../../examples/instruments/mail_cover.json"),
    }
}

/// Moves the date at the start of `s` (`YYYY-MM-DD`, then anything) by
/// `days`; the rest (a time, a zone) stays.
fn shift(s: &str, days: i64) -> Option<String> {
    let (date, rest) = (s.get(..10)?, s.get(10..)?);
    let ms = parse_iso(date)?.checked_add(days.checked_mul(DAY_MS)?)?;
    Some(format!("{}{rest}", format_iso(ms)))
}

/// The example of `kind` dated for `today_ms`, naming `subject` if given.
pub fn instrument(
    kind: KindArg,
    today_ms: i64,
    subject: Option<&str>,
    instrument_id: Option<&str>,
) -> Result<serde_json::Value> {
    let mut v: serde_json::Value =
        serde_json::from_str(text(kind)).context("the built-in example is not JSON")?;
    let base = parse_iso(EXAMPLES_DAY).context("the examples' day")?;
    let days = today_ms.div_euclid(DAY_MS) - base.div_euclid(DAY_MS);
    let dates = [
        "/issued_at",
        "/expires_at",
        "/time_range/from",
        "/time_range/to",
        "/court/order_date",
        "/start",
        "/written_confirmed_at",
        "/delay_notice_until",
    ];
    for p in dates {
        if let Some(slot) = v.pointer_mut(p)
            && let Some(s) = slot.as_str()
        {
            let moved = shift(s, days).with_context(|| format!("moving the date at `{p}`"))?;
            *slot = moved.into();
        }
    }
    if let Some(s) = subject {
        v["subjects"] = serde_json::json!([{ "id": s }]);
    }
    if let Some(id) = instrument_id {
        v["instrument_id"] = id.into();
    }
    Ok(v)
}

pub fn run(a: &ExampleArgs) -> Result<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis();
    let now = i64::try_from(now).context("the system clock is out of range")?;
    print_json(&instrument(
        a.kind,
        now,
        a.subject.as_deref(),
        a.instrument_id.as_deref(),
    )?)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use postvault_policy::Pack;
    use postvault_policy::disclosure::{CheckContext, Outcome, check_instrument, parse_instrument};

    use super::*;

    const KINDS: [KindArg; 5] = [
        KindArg::CourtOrder,
        KindArg::Warrant,
        KindArg::WrittenRequest,
        KindArg::Subpoena,
        KindArg::MailCover,
    ];

    /// Moved to any day of three years, at the first and the last
    /// millisecond of it, every example passes the postal pack's check.
    #[test]
    fn moved_examples_pass_on_every_day_at_any_time() {
        let pack = Pack::postal().unwrap();
        let start = parse_iso("2025-01-01").unwrap();
        for day in 0..(3 * 366) {
            for at in [0, DAY_MS - 1] {
                let now = start + day * DAY_MS + at;
                for kind in KINDS {
                    let v = instrument(kind, now, Some("cust-1"), None).unwrap();
                    let inst = parse_instrument(&v.to_string()).unwrap();
                    let ctx = CheckContext {
                        now_ms: now,
                        ..CheckContext::default()
                    };
                    let verdict = check_instrument(pack.disclosure(), &inst, &ctx);
                    assert_eq!(
                        verdict.outcome,
                        Outcome::PendingApproval,
                        "{kind:?} at {}: {verdict:?}",
                        format_iso(now)
                    );
                }
            }
        }
    }

    #[test]
    fn on_the_examples_day_the_example_is_unchanged() {
        let day = parse_iso("2026-03-15T12:00:00Z").unwrap();
        for kind in KINDS {
            let v = instrument(kind, day, None, None).unwrap();
            let file: serde_json::Value = serde_json::from_str(text(kind)).unwrap();
            assert_eq!(v, file, "{kind:?}");
        }
        assert_eq!(
            shift("2026-03-10T16:20:00Z", 300).as_deref(),
            Some("2027-01-04T16:20:00Z")
        );
        assert_eq!(shift("2026-03", 1), None);
    }
}
