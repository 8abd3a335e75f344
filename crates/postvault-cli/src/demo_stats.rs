//! The demo's statistics scene: a differentially private count, the budget
//! running out, and a refused attempt to group by a subject-level field.

use anyhow::Result;
use postvault::{StatsRequest, Vault, format_ms};

fn query(group_by: &[&str], from: &str, to: &str, epsilon: f64) -> Result<StatsRequest> {
    Ok(serde_json::from_value(serde_json::json!({
        "category": "scan_event", "measure": "count", "group_by": group_by,
        "from": from, "to": to, "epsilon": epsilon,
    }))?)
}

pub fn scene(vault: &Vault, now_ms: i64) -> Result<()> {
    outln!("\nStatistics with differential privacy (docs/statistics.md)");
    outln!("=========================================================");
    vault.add_principal("analyst", "statistics")?;
    let analyst = vault.principal("analyst")?;
    let from = format_ms(now_ms - 14 * 86_400_000)[..10].to_string();
    let to = format_ms(now_ms + 86_400_000)[..10].to_string();
    outln!(
        "The `statistics` purpose may not read a scan event (the cell is A: aggregate only), but it may count them."
    );
    outln!(
        "postvault stats query --as analyst --purpose statistics  # count by week and piece, epsilon 0.5"
    );
    let a = vault.statistics(
        &analyst,
        "statistics",
        &query(&["week", "piece"], &from, &to, 0.5)?,
    )?;
    for g in &a.groups {
        outln!(
            "   week {} {:<8} {:>8}",
            g.key.get("week").map_or("", String::as_str),
            g.key.get("piece").map_or("", String::as_str),
            g.value
        );
    }
    outln!(
        "   {} DP, {}; epsilon {} spent, {} of {} left today; {}",
        a.privacy.definition,
        a.privacy.mechanism,
        a.privacy.epsilon,
        a.budget.remaining,
        a.budget.limit,
        a.accuracy.statement
    );
    outln!("postvault stats query ...  # count by ZIP3, epsilon 0.5: ZIP3s are not public");
    let a = vault.statistics(&analyst, "statistics", &query(&["zip3"], &from, &to, 0.5)?)?;
    outln!(
        "   {} ZIP3s released (noisy count over the threshold {}); rare ones stay hidden (delta {:.1e}).",
        a.groups.len(),
        a.privacy.threshold.unwrap_or(0),
        a.privacy.delta
    );
    outln!("postvault stats query ...  # one more, epsilon 0.1");
    match vault.statistics(&analyst, "statistics", &query(&["week"], &from, &to, 0.1)?) {
        Err(e) => outln!("   REFUSED [{}]: {e}", e.code()),
        Ok(_) => outln!("   ANSWERED over budget"),
    }
    outln!("postvault stats query ...  # group by tracking_number (a subject-level field)");
    match vault.statistics(
        &analyst,
        "statistics",
        &query(&["tracking_number"], &from, &to, 0.1)?,
    ) {
        Err(e) => outln!("   REFUSED [{}]: {e}", e.code()),
        Ok(_) => outln!("   ANSWERED by a subject-level field"),
    }
    Ok(())
}
