//! Legal instruments: `parse_instrument` on any text an agency submits, and
//! `check_instrument` of the postal pack's disclosure rules on every one
//! that parses, in a few contexts (a fresh requester; one over its quotas
//! with the document used before and a protective order on file; an
//! extension of an earlier cover).
//!
//! Holds: no panic; an instrument writes back as JSON that parses to the
//! same instrument (the gateway seals what it parsed, and the officer's
//! view reads it back); a verdict is refused exactly when it has a refusal,
//! its refusals and alerts come sorted, and checking twice gives the same
//! verdict; the officer's report of the checks agrees with the verdict.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postvault_policy::Pack;
use postvault_policy::disclosure::{
    CheckContext, CoverChain, Instrument, Outcome, check_instrument, parse_instrument,
};
use postvault_policy::review::{CheckStatus, check_report};

static PACK: LazyLock<Pack> = LazyLock::new(|| Pack::postal().expect("the postal pack loads"));

const DAY_MS: i64 = 86_400_000;

/// The same instrument, a float compared by value (serde_json's default
/// float parsing may differ from the written value in the last place).
fn same(a: &Instrument, b: &Instrument) -> bool {
    let close = match (a.penalty_max_years, b.penalty_max_years) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15,
        (x, y) => x == y,
    };
    let mut a = a.clone();
    let mut b = b.clone();
    a.penalty_max_years = None;
    b.penalty_max_years = None;
    close && a == b
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inst = match parse_instrument(text) {
        Ok(inst) => inst,
        Err(refusals) => {
            assert!(!refusals.is_empty(), "a refused instrument says why");
            return;
        }
    };
    let json = serde_json::to_string(&inst).expect("an instrument serializes");
    let again = parse_instrument(&json)
        .unwrap_or_else(|r| panic!("an instrument written back does not parse: {r:?}\n{json}"));
    assert!(
        same(&inst, &again),
        "round trip changed the instrument:\n{inst:?}\n{again:?}"
    );

    let rules = PACK.disclosure();
    let issued = inst.issued_at.map_or(1_773_100_800_000, |t| t.0);
    let contexts = [
        CheckContext {
            now_ms: issued.saturating_add(DAY_MS),
            ..CheckContext::default()
        },
        CheckContext {
            now_ms: issued.saturating_add(40 * DAY_MS),
            used_before: true,
            subject_has_protective_order: true,
            agency_people_24h: 1_000,
            agency_people_30d: u32::MAX,
            case_people_30d: 10_000,
            cover_chain: None,
        },
        CheckContext {
            now_ms: issued,
            cover_chain: Some(CoverChain {
                prior_orders: 3,
                first_start_ms: issued.saturating_sub(100 * DAY_MS),
            }),
            ..CheckContext::default()
        },
    ];
    for ctx in &contexts {
        let verdict = check_instrument(rules, &inst, ctx);
        assert_eq!(
            verdict.outcome == Outcome::Refused,
            !verdict.refusals.is_empty(),
            "{verdict:?}"
        );
        assert!(verdict.refusals.is_sorted(), "{verdict:?}");
        assert!(verdict.alerts.is_sorted(), "{verdict:?}");
        assert_eq!(check_instrument(rules, &inst, ctx), verdict);
        let report = check_report(rules, &inst, ctx);
        for code in verdict.codes() {
            assert!(
                report
                    .iter()
                    .any(|c| c.check == code.as_str() && c.result == CheckStatus::Failed),
                "the officer's report shows refusal {code:?} as failed: {report:?}"
            );
        }
    }
});
