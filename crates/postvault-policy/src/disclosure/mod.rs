//! The disclosure rules: what an outside party must present to get the data
//! of one named person, and the pure check that refuses everything else.
//!
//! An *instrument* is a court order, a warrant, a written request under
//! 5 U.S.C. 552a(b)(7), a subpoena or a mail-cover request (39 CFR 233.3):
//! typed data with a documented JSON format (`docs/instruments.md`).
//! [`parse_instrument`] reads one in two steps: a walk over the JSON value
//! that turns selectors, wildcards, unknown keys and wrong types into
//! refusals, then the typed [`Instrument`]. [`check_instrument`] applies the
//! pack's `disclosure.toml` ([`DisclosureRules`]) and returns a [`Verdict`]
//! with every refusal found, each under a stable [`RefusalCode`]; a request
//! that is otherwise in order but crosses an anti-enumeration quota is held
//! for review with an alert. [`check_approval`] keeps a requester from
//! approving its own request and anyone without the approver role from
//! approving at all.
//!
//! Refusal by construction: an outside party names subjects only by
//! identifier (matched exactly, later, through a blind index). There is no
//! selector, wildcard, prefix or attribute search, and no field for one.
//!
//! Pure like the rest of the crate: no IO, no clock (the caller passes
//! `now_ms` and the request counts), no randomness. No message echoes a
//! subject id or any other value of an instrument: messages name fields,
//! positions, codes and ids of the pack.

mod check;
mod instrument;
mod kinds;
mod loader;
mod parse;
mod rules;
mod time;

pub use check::*;
pub use instrument::*;
pub use kinds::*;
use loader::*;
pub use parse::*;
pub use rules::*;
pub use time::*;

#[cfg(test)]
mod tests;

/// The file name of the disclosure rules inside a pack directory.
pub const DISCLOSURE_FILE: &str = "disclosure.toml";

/// One day in milliseconds.
pub use postvault_time::DAY_MS;

/// The grounds of a mail cover, 39 CFR 233.3(c)(1). A pack may allow fewer,
/// never others.
pub const MAIL_COVER_GROUNDS: [&str; 5] = [
    "national_security",
    "fugitive",
    "crime",
    "postal_statute",
    "forfeiture",
];

/// The grounds 233.3(g)(5) exempts from the 30-day limit per order.
const DURATION_EXEMPT_GROUNDS: [&str; 2] = ["fugitive", "national_security"];
/// The grounds 233.3(g)(7) exempts from ending on indictment.
const INDICTMENT_EXEMPT_GROUNDS: [&str; 1] = ["fugitive"];
/// 233.3(g)(5): days per order.
const REG_MAX_DAYS: i64 = 30;
/// 233.3(g)(6): continuous days without the Chief Postal Inspector.
const REG_CUMULATIVE_CAP: i64 = 120;
/// 233.3(e)(3): calendar days to confirm an oral request in writing.
const REG_ORAL_DAYS: i64 = 3;
/// 233.3(c)(6): a crime is punishable by imprisonment over this many years.
const REG_PENALTY_YEARS: i64 = 1;

/// The longest delay of notice a court order may set, in days after issue
/// ([I]: 18 U.S.C. 2705(a) delays notice 90 days at a time; a year leaves
/// room for renewals inside one order, never an open-ended secret).
pub const MAX_NOTICE_DELAY_DAYS: i64 = 365;

/// The longest subject identifier accepted, in characters.
pub const MAX_SUBJECT_ID_CHARS: usize = 256;
