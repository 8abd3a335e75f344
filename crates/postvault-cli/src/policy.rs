//! `postvault policy stage` and `postvault policy diff`: changing the pack
//! a vault runs under, with notice (R4).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use postvault::{Pack, PackSources, Vault};
use postvault_policy::PackDiff;

use crate::{Cli, TableFormat, pack_sources, print_json};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DiffFormat {
    /// One JSON object: `from`, `to`, `notice_days`, `widens`, `cells`, `rules`.
    Json,
    /// Tables for people.
    Table,
}

fn read_pack(dir: &Path) -> Result<PackSources> {
    pack_sources(Some(dir))?.with_context(|| format!("no pack in `{}`", dir.display()))
}

/// The pack directory named, or the pack built into this binary.
fn pack_or_built_in(dir: Option<&Path>) -> Result<PackSources> {
    Ok(match dir {
        Some(d) => read_pack(d)?,
        None => PackSources::postal(),
    })
}

/// `postvault policy stage [DIR]`: stages DIR (default: the pack built into
/// this binary) as the vault's pack. Prints the [`postvault::StageReport`].
pub fn stage(cli: &Cli, dir: Option<&Path>) -> Result<u8> {
    let new = pack_or_built_in(dir)?;
    let v = crate::open_vault(cli)?;
    let r = v.policy_stage(&new)?;
    print_json(&r)?;
    if r.diff.is_empty() {
        errln!(
            "postvault: pack {} changes no decision; it is in force now",
            r.to
        );
    } else if r.in_force {
        errln!(
            "postvault: pack {} narrows access and is in force now (restart running nodes)",
            r.to
        );
    } else {
        errln!(
            "postvault: pack {} widens access: it takes effect at {} after {} days' notice (R4); until then the vault runs {}",
            r.to,
            r.effective_at,
            r.notice_days,
            r.from
        );
    }
    Ok(0)
}

/// `postvault policy diff [DIR] [--from OLD]`: what changes from the vault's
/// pack (or OLD) to DIR (default: the staged pack, else the built-in one).
pub fn diff(
    cli: &Cli,
    dir: Option<&Path>,
    from: Option<&PathBuf>,
    format: DiffFormat,
) -> Result<u8> {
    let d = match from {
        Some(old) => {
            let old = Pack::load(&read_pack(old)?)?;
            let new = Pack::load(&pack_or_built_in(dir)?)?;
            PackDiff::new(&old, &new)
        }
        None => {
            let v: Vault = crate::open_vault(cli)?;
            let new = dir.map(read_pack).transpose()?;
            v.policy_diff(new.as_ref())?
        }
    };
    match format {
        DiffFormat::Json => print_json(&d)?,
        DiffFormat::Table => out!("{}", table(&d)),
    }
    Ok(0)
}

/// The diff as text tables.
pub fn table(d: &PackDiff) -> String {
    let mut o = String::new();
    let verdict = if d.is_empty() {
        "changes no decision".to_string()
    } else if d.widens {
        format!(
            "WIDENS access: in force {} days after it is staged",
            d.notice_days
        )
    } else {
        "narrows access only: in force when staged".to_string()
    };
    let _ = writeln!(o, "Pack {} -> {}: {verdict}.", d.from, d.to);
    if !d.cells.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<22} {:<8} {:<28} {:<28} {:<8} {:<8} change",
            "role", "action", "purpose", "category", "from", "to"
        );
        for c in &d.cells {
            let _ = writeln!(
                o,
                "{:<22} {:<8} {:<28} {:<28} {:<8} {:<8} {}",
                c.role,
                c.action,
                c.purpose,
                c.category,
                c.from.as_str(),
                c.to.as_str(),
                if c.widens { "WIDENS" } else { "narrows" }
            );
        }
    }
    if !d.rules.is_empty() {
        let _ = writeln!(o, "\n{:<56} {:<24} {:<24} change", "setting", "from", "to");
        for r in &d.rules {
            let _ = writeln!(
                o,
                "{:<56} {:<24} {:<24} {}",
                r.setting,
                r.from,
                r.to,
                if r.widens { "WIDENS" } else { "narrows" }
            );
        }
    }
    o
}

/// A line on stderr when this binary's built-in pack differs from the pack
/// the vault runs under (a new release changed it): the vault keeps its
/// pack until the change is staged.
pub fn built_in_notice(v: &Vault) {
    let Ok(st) = v.pack_status() else { return };
    if st.current == st.built_in || st.staged.as_ref().is_some_and(|s| s.version == st.built_in) {
        return;
    }
    errln!(
        "postvault: note: this vault runs under pack {}; the pack built into this postvault is {}. \
         `postvault policy diff` shows what would change, `postvault policy stage` stages it",
        st.current,
        st.built_in
    );
}

/// `postvault policy table`: every (role, action, purpose, category,
/// consent) request of the pack with its decision.
pub fn print_table(pack: &Pack, format: TableFormat) -> Result<()> {
    let t = pack.taxonomy();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let TableFormat::Tsv = format {
        writeln!(
            out,
            "role\taction\tpurpose\tcategory\tconsent\teffect\tpolicies"
        )?;
    }
    for r in pack.requests() {
        let d = pack.decide(&r);
        let role = &t.role(r.role).id;
        let purpose = &t.purpose(r.purpose).id;
        let category = &t.category(r.category).id;
        match format {
            TableFormat::Json => {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({
                        "pack": pack.version(),
                        "role": role,
                        "action": r.action,
                        "purpose": purpose,
                        "category": category,
                        "consent": r.consent,
                        "effect": d.effect,
                        "reasons": d.reasons,
                    }),
                )?;
                writeln!(out)?;
            }
            TableFormat::Tsv => {
                let policies: Vec<&str> = d.reasons.iter().map(|x| x.policy.as_str()).collect();
                writeln!(
                    out,
                    "{role}\t{}\t{purpose}\t{category}\t{}\t{}\t{}",
                    r.action.as_str(),
                    r.consent,
                    if d.allowed() { "allow" } else { "deny" },
                    policies.join(",")
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
