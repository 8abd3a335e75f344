//! Does a disclosure submission take longer when it names a real person?
//! Times `Vault::disclose_submit` naming a person with 600 records, a person
//! with 600 records and a protective order on file, and an id nobody holds,
//! interleaved, for a submission the pack refuses on its face and for one in
//! order; and an approval by a principal who may not approve, of a real
//! request and of a made-up id. Prints JSON with the medians and their
//! ratios to the unknown id's.
//!
//! `cargo run --release -p postvault --example submit_timing -- [ROUNDS]`
//! (default 300 rounds: 300 submissions of each kind per person).

use std::time::Instant;

use postvault::{ApproveOptions, CollectOptions, OpenOptions, Vault};
use serde_json::{Value, json};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn records(subject: &str, n: usize, protective: bool) -> String {
    let mut lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"subject": subject, "category": "scan_event", "purpose": "delivery",
                "fields": {"imb": format!("0027012345612345{:04}", i % 10_000), "piece": "letter",
                "facility_zip": "60601", "op_code": "918", "event": "processed",
                "scanned_at": "2026-11-02T03:00:00Z"}})
            .to_string()
        })
        .collect();
    if protective {
        lines.push(
            json!({"subject": subject, "category": "protective_order", "purpose": "forwarding",
                "fields": {"on_file": true, "issued_on": "2026-01-05"}})
            .to_string(),
        );
    }
    lines.join("\n")
}

fn instrument(n: usize, who: &str, in_order: bool) -> String {
    let today = postvault::format_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    );
    let day = &today[..10];
    let mut v = json!({
        "kind": "court_order", "instrument_id": format!("T-{n}-{who}"), "agency": "Timing Agency",
        "signer": {"name": "A. Example", "title": "Assistant United States Attorney", "level": "agent"},
        "authority": "5 U.S.C. 552a(b)(11)", "ground": "criminal_law_enforcement",
        "case_id": format!("case-{n}-{who}"), "subjects": [{"id": who}], "portions": ["scan_event"],
        "time_range": {"from": "2026-01-01", "to": day}, "issued_at": day,
        "court": {"name": "U.S. District Court", "docket": format!("{n}-{who}"), "judge": "B", "order_date": day}
    });
    if !in_order {
        v.as_object_mut().map(|m| m.remove("authority"));
    }
    v.to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir()?;
    let v = Vault::init(dir.path(), OpenOptions::default())?;
    for (name, role) in [
        ("ingest", "collector"),
        ("auditor", "auditor"),
        ("officer", "privacy_officer"),
    ] {
        v.add_principal(name, role)?;
    }
    let ingest = v.principal("ingest")?;
    for (who, protective) in [("cust-real", false), ("cust-protected", true)] {
        let r = v.collect(
            &ingest,
            &mut records(who, 600, protective).as_bytes(),
            &CollectOptions::default(),
            &mut |_| {},
        )?;
        assert_eq!(r.rejected, 0, "{:?}", r.errors);
    }
    let people = ["cust-real", "cust-protected", "cust-unknown-0000"];
    let mut out = serde_json::Map::new();
    for in_order in [false, true] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); people.len()];
        for n in 0..rounds {
            // A fresh agency every 20 rounds keeps the quotas from holding
            // every request (holding costs the same for everyone anyway).
            let agency = format!("agency-{}-{}", in_order, n / 20);
            if n % 20 == 0 {
                v.add_principal(&agency, "agency")?;
            }
            let p = v.principal(&agency)?;
            // Rotate who goes first, so no one always follows another.
            for k in 0..people.len() {
                let slot = (k + n) % people.len();
                let text = instrument(n, people[slot], in_order);
                let t = Instant::now();
                let a = v.disclose_submit(&p, &text)?;
                times[slot].push(t.elapsed().as_secs_f64() * 1e6);
                assert_eq!(a.refused(), !in_order, "{:?}", a.reasons);
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let unknown = medians[2];
        out.insert(
            if in_order { "in_order" } else { "refused" }.into(),
            json!({
                "submissions_each": rounds,
                "median_us": {"real_600_records": medians[0], "protected_600_records": medians[1], "unknown_id": unknown},
                "ratio_to_unknown": {"real_600_records": medians[0] / unknown, "protected_600_records": medians[1] / unknown},
            }),
        );
    }
    // An approval by a principal who may not approve: a real request and a
    // made-up id.
    let auditor = v.principal("auditor")?;
    let real = v
        .disclosure_list_all()?
        .into_iter()
        .find(|r| r.status == "pending_approval")
        .map(|r| r.id)
        .unwrap_or_default();
    let fake = "0196f3a2-7c41-7d2e-9a53-000000000000".to_string();
    let mut times = [Vec::new(), Vec::new()];
    for n in 0..rounds {
        for k in 0..2 {
            let slot = (k + n) % 2;
            let id = if slot == 0 { &real } else { &fake };
            let t = Instant::now();
            let a = v.disclose_approve(&auditor, id, &ApproveOptions::default())?;
            times[slot].push(t.elapsed().as_secs_f64() * 1e6);
            assert!(a.refused());
        }
    }
    let [r, f] = times;
    let (r, f) = (median(r), median(f));
    out.insert(
        "approve_not_permitted".into(),
        json!({"calls_each": rounds, "median_us": {"real_request": r, "made_up_id": f}, "ratio": r / f}),
    );
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    Ok(())
}
