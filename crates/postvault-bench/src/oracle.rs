//! `postvault-bench oracle`: does a refusal take the same time whoever it
//! names? Median times of denied reads and refused disclosure submissions
//! naming a person with many records against ones naming made-up ids,
//! interleaved so drift hits both alike.

use std::io::BufReader;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use postvault::{CollectOptions, OpenOptions, Vault};

use crate::paths::{bench_dir, percentile};
use postvault_sim::LinesReader;

#[derive(Args, Debug)]
pub struct OracleArgs {
    /// Requests per side (a real person, made-up ids) of each phase; at least 200.
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Records held about the real person.
    #[arg(long, default_value_t = 600)]
    pub records: usize,
    /// Other people in the vault (a few records each), so the indexes are
    /// not trivially small.
    #[arg(long, default_value_t = 5_000)]
    pub others: usize,
    /// Where the temporary vault goes (default: the system's temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// The largest difference of medians the target allows, as a fraction.
const TARGET: f64 = 0.10;

const PERSON: &str = "cust-000000000600";

pub fn oracle(a: &OracleArgs) -> Result<u8> {
    if a.requests < 200 {
        bail!("--requests must be at least 200");
    }
    let tmp = bench_dir(a.dir.as_deref())?;
    let vault = Vault::init(&tmp.path().join("vault"), OpenOptions::default())?;
    for (name, role) in [
        ("ingest", "collector"),
        ("sorting", "delivery"),
        ("promo", "marketing"),
        ("ice", "agency"),
    ] {
        vault.add_principal(name, role)?;
    }
    let scan = |s: &str, i: usize| {
        serde_json::json!({"subject": s, "category": "scan_event", "purpose": "delivery",
            "fields": {"piece": "letter", "facility_zip": "60601", "op_code": "918",
            "event": "processed", "scanned_at": format!("2026-11-01T{:02}:{:02}:00Z", (i / 60) % 24, i % 60)}})
        .to_string()
    };
    let person = std::iter::once(
        serde_json::json!({"subject": PERSON, "category": "account_identity", "purpose": "account_service",
            "fields": {"name": "Ada Busy", "email": "ada@example.com"}})
        .to_string(),
    )
    .chain((1..a.records).map(|i| scan(PERSON, i)));
    let others = (0..a.others).flat_map(|o| {
        let s = format!("cust-7{o:011}");
        (0..3).map(move |i| (s.clone(), i))
    });
    let lines: Vec<String> = person.chain(others.map(|(s, i)| scan(&s, i))).collect();
    let report = vault.collect(
        &vault.principal("ingest")?,
        &mut BufReader::new(LinesReader::new(lines.into_iter())),
        &CollectOptions::default(),
        &mut |_| {},
    )?;
    if report.rejected > 0 || report.failure.is_some() {
        bail!(
            "the bench's own records were rejected: {:?}",
            report.errors.first()
        );
    }
    let held = vault
        .read(&vault.principal("sorting")?, PERSON, "delivery")?
        .records
        .len();

    let sorting = vault.principal("sorting")?;
    let promo = vault.principal("promo")?;
    let ice = vault.principal("ice")?;
    let mut n = 0u64;
    let mut ghost = move || {
        n += 1;
        format!("cust-9{n:011}")
    };
    // A prohibited ground: refused by construction, whoever it names.
    let instrument = |subject: &str, i: usize| {
        serde_json::json!({
            "kind": "written_request", "instrument_id": format!("ERO-ORACLE-{i}"),
            "agency": "Immigration and Customs Enforcement",
            "signer": {"name": "Field Office Director", "title": "Field Office Director",
                       "level": "section_chief", "delegation_ref": "DHS delegation 7030.2"},
            "authority": "8 U.S.C. 1357", "ground": "immigration_enforcement",
            "case_id": format!("ERO-{i}"), "subjects": [{"id": subject}], "portions": ["address"],
            "time_range": {"from": "2026-08-01", "to": "2026-11-01"}, "issued_at": "2026-11-01"
        })
        .to_string()
    };

    let mut phases = Vec::new();
    // Denied marketing reads: the role may see nothing for the purpose, or
    // only the person's consent could open it.
    for (name, what, principal) in [
        (
            "denied_read",
            "a read the role and purpose may see nothing of (delivery role, purpose marketing)",
            &sorting,
        ),
        (
            "denied_read_without_consent",
            "a read only the person's consent could open (marketing role, purpose marketing, no consent recorded)",
            &promo,
        ),
    ] {
        let times = measure(a.requests, &mut |real, _| {
            let s = if real { PERSON.to_string() } else { ghost() };
            if !vault.read(principal, &s, "marketing")?.denied() {
                bail!("the read was not denied");
            }
            Ok(())
        })?;
        phases.push(phase(name, what, &times));
    }
    let refused_submission = measure(a.requests, &mut |real, i| {
        let s = if real { PERSON.to_string() } else { ghost() };
        let r = vault.disclose_submit(&ice, &instrument(&s, i))?;
        if !r.refused() {
            bail!("the submission was not refused");
        }
        Ok(())
    })?;
    phases.push(phase(
        "refused_submission",
        "a disclosure submission refused for its ground (immigration enforcement), naming the person",
        &refused_submission,
    ));
    let out = serde_json::json!({
        "bench": "oracle",
        "person_records": a.records,
        "person_records_delivery_may_see": held,
        "other_people": a.others,
        "requests_per_side": a.requests,
        "target_max_difference": TARGET,
        "phases": phases,
        "machine": crate::machine(),
    });
    crate::print_json(&out)?;
    Ok(0)
}

/// Times `f(real, i)` for the real person and a made-up id in turn,
/// `requests` times each after a warm-up; microseconds, sorted.
fn measure(
    requests: usize,
    f: &mut dyn FnMut(bool, usize) -> Result<()>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut real, mut ghost) = (Vec::new(), Vec::new());
    for i in 0..requests + 20 {
        // Alternate which side goes first, so neither always follows the other.
        for side in if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let t = Instant::now();
            f(side, i * 2 + usize::from(side))?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            if i >= 20 {
                if side { &mut real } else { &mut ghost }.push(us);
            }
        }
    }
    real.sort_by(f64::total_cmp);
    ghost.sort_by(f64::total_cmp);
    Ok((real, ghost))
}

fn phase(name: &str, what: &str, (real, ghost): &(Vec<f64>, Vec<f64>)) -> serde_json::Value {
    let (r, g) = (percentile(real, 0.5), percentile(ghost, 0.5));
    let diff = (r - g).abs() / g.max(1e-9);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    serde_json::json!({
        "phase": name,
        "what": what,
        "real_person_median_us": round(r),
        "made_up_id_median_us": round(g),
        "real_person_p90_us": round(percentile(real, 0.9)),
        "made_up_id_p90_us": round(percentile(ghost, 0.9)),
        "difference": (diff * 1000.0).round() / 1000.0,
        "within_target": diff <= TARGET,
    })
}
