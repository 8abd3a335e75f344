//! `postvault stats query`: aggregate statistics with differential privacy
//! (docs/statistics.md).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use postvault::{StatsRequest, VaultError};

use crate::{Cli, EXIT_DENIED, print_json};

#[derive(Subcommand, Debug)]
pub enum StatsCmd {
    /// Answer an aggregate query over a category the pack marks "A" for the
    /// purpose: {"category", "measure": "count" | {"sum": FIELD, "bounds":
    /// [lo, hi]}, "group_by": [DIM...], "from", "to", "epsilon"}. The answer
    /// is differentially private (OpenDP), spends epsilon from the
    /// principal's budget for the purpose and period, and carries the
    /// privacy spent and a 95% accuracy interval. A refused query (exit 3)
    /// prints {"error": {"code", "message"}}: not_aggregate,
    /// undeclared_dimension, epsilon_over_cap, budget_exhausted, ...
    Query(QueryArgs),
    /// The privacy budgets spent, by principal, purpose and period.
    Budgets,
    /// Build the scan blocks of a category (every category the pack
    /// declares statistics over, without --category): each person's
    /// current records of it under one key, reduced to the fields the
    /// declaration may read and sealed together under that key, so a
    /// query opens one envelope for them instead of one a record. Run it
    /// after a day's collection; records collected, corrected, re-sealed,
    /// expired or erased since are read as rows until the next build.
    /// Prints [{"category", "tag", "supported", "people", "blocks",
    /// "records", "log_index"}]; one leaf a category. A store that keeps
    /// no blocks (PostgreSQL) says "supported": false. A category unknown
    /// or without statistics: exit 4, {"error": {"code", "message"}}
    /// (unknown_category, no_statistics, too_many_fields).
    Blocks(BlocksArgs),
}

#[derive(Args, Debug)]
pub struct BlocksArgs {
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The principal asking.
    #[arg(long = "as", value_name = "NAME")]
    pub principal: String,
    /// The declared purpose, e.g. `statistics`.
    #[arg(long)]
    pub purpose: String,
    /// The query as JSON; `-` or nothing for standard input.
    pub file: Option<PathBuf>,
}

/// Codes of a query refused by the pack or the budget: exit 3, like a
/// denied read.
const DENIED: &[&str] = &[
    "not_aggregate",
    "purpose_not_permitted",
    "no_statistics",
    "no_budget",
    "undeclared_dimension",
    "undeclared_field",
    "sum_needs_public_keys",
    "epsilon_over_cap",
    "epsilon_under_minimum",
    "budget_exhausted",
];

pub fn run(cli: &Cli, cmd: &StatsCmd) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    match cmd {
        StatsCmd::Budgets => {
            print_json(&v.statistics_budgets()?)?;
            Ok(0)
        }
        StatsCmd::Blocks(a) => {
            let categories = match &a.category {
                Some(c) => vec![c.clone()],
                None => v.statistics_categories(),
            };
            let mut out = Vec::new();
            for c in &categories {
                let bar = crate::progress_bar(None, &format!("scan blocks of {c}: people"));
                let built = v.build_scan_blocks(c, &mut |n| bar.set_position(n));
                bar.finish_and_clear();
                match built {
                    Ok(b) => out.push(b),
                    Err(VaultError::Refused { code, message }) => {
                        print_json(&serde_json::json!({
                            "error": {"code": code, "message": message}
                        }))?;
                        return Ok(crate::EXIT_REJECTED);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            print_json(&out)?;
            Ok(0)
        }
        StatsCmd::Query(a) => {
            let mut text = String::new();
            match a.file.as_deref() {
                None => std::io::stdin().read_to_string(&mut text),
                Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_string(&mut text),
                Some(p) => std::fs::File::open(p)
                    .with_context(|| format!("reading `{}`", p.display()))?
                    .read_to_string(&mut text),
            }
            .context("reading the query")?;
            let req: StatsRequest =
                serde_json::from_str(&text).map_err(|e| VaultError::Invalid {
                    what: "statistics query",
                    why: e.to_string(),
                })?;
            let p = v.principal(&a.principal)?;
            match v.statistics(&p, &a.purpose, &req) {
                Ok(answer) => {
                    print_json(&answer)?;
                    Ok(0)
                }
                Err(e) if DENIED.contains(&e.code()) => {
                    errln!("postvault: refused: {e}");
                    print_json(&serde_json::json!({
                        "error": {"code": e.code(), "message": e.to_string()}
                    }))?;
                    Ok(EXIT_DENIED)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The transparency report's statistics as text: people counts with their
/// method, and the budgets spent.
pub fn report_table(s: &postvault::stats::StatisticsReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let p = &s.people;
    let _ = writeln!(o, "\nPeople ({}):", p.method);
    let _ = writeln!(o, "  {:<38} {:>14}", "disclosed", p.disclosed.to_string());
    let _ = writeln!(
        o,
        "  {:<38} {:>14}",
        "under a mail cover",
        p.under_mail_cover.to_string()
    );
    for (kind, n) in &p.named_by_kind {
        let _ = writeln!(
            o,
            "  {:<38} {:>14}",
            format!("named by {kind}"),
            n.to_string()
        );
    }
    let _ = writeln!(
        o,
        "\nStatistics budgets spent (differential privacy, epsilon per principal, purpose and period):"
    );
    if s.budgets.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for b in &s.budgets {
        let limit = b.limit.map_or("-".to_string(), |l| format!("{l}"));
        let _ = writeln!(
            o,
            "  {:<16} {:<10} {:<14} {:<18} spent {:>5} of {:<5} {} queries, {} refused",
            b.role,
            &b.principal_id[..b.principal_id.len().min(8)],
            b.purpose,
            b.period,
            b.spent,
            limit,
            b.queries,
            b.refused
        );
    }
    o
}
