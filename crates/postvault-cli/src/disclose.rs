//! `postvault disclose ...` and `postvault report transparency`: the
//! disclosure gateway from the command line.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use postvault::{ApproveOptions, EndReason, TransparencyReport};

use crate::{Cli, EXIT_DENIED, print_json};

#[derive(Subcommand, Debug)]
pub enum DiscloseCmd {
    /// Submit a legal instrument (JSON, docs/instruments.md) as an agency.
    /// Prints {"id", "status", "reasons": [{"code", "message"}], "alerts",
    /// "log_index"}; exit 3 when refused.
    Submit {
        #[arg(long = "as", value_name = "AGENCY")]
        principal: String,
        /// The instrument; `-` for standard input.
        file: PathBuf,
    },
    /// Approve a request as a privacy officer who is not its requester.
    Approve {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
        id: String,
        /// Approve only these of the requested portions (comma-separated).
        #[arg(long, value_delimiter = ',')]
        portions: Option<Vec<String>>,
    },
    /// Refuse a request as a privacy officer who is not its requester.
    Refuse {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
        id: String,
        /// The officer's reason, recorded beside `refused_by_officer`:
        /// not_particularized, authority_insufficient, overbroad,
        /// document_not_authenticated or other_officer_reason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fetch the package of an approved request, as its requester: exactly
    /// the approved portions of the named people; exit 3 when refused.
    Fetch {
        #[arg(long = "as", value_name = "AGENCY")]
        principal: String,
        id: String,
    },
    /// List requests: an agency sees its own, an officer or auditor all;
    /// without --as, every request (the operator's view).
    List {
        #[arg(long = "as", value_name = "NAME")]
        principal: Option<String>,
    },
    /// Show one request.
    Show {
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        id: String,
    },
    /// End a request early as a privacy officer; `improperly_ordered`
    /// destroys everything recorded under a mail cover.
    End {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
        id: String,
        #[arg(long, value_enum)]
        reason: EndArg,
    },
    /// The accounting of disclosures about one person (5 U.S.C. 552a(c)),
    /// as a role acting for subject access; what a delay order covers is
    /// left out until it expires (--all: officers see it, marked).
    Accounting {
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        all: bool,
    },
    /// Send the notices that are due: each person whose data left, once no
    /// delay order stands in the way.
    Notices {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
    },
    /// Print the documented example instrument of a kind
    /// (examples/instruments/KIND.json) with its dates moved to today, so
    /// it passes the gateway now. Needs no vault.
    Example(crate::examples::ExampleArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EndArg {
    Indicted,
    ImproperlyOrdered,
    Withdrawn,
}

impl From<EndArg> for EndReason {
    fn from(a: EndArg) -> EndReason {
        match a {
            EndArg::Indicted => EndReason::Indicted,
            EndArg::ImproperlyOrdered => EndReason::ImproperlyOrdered,
            EndArg::Withdrawn => EndReason::Withdrawn,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// The transparency report, computed from the ledger: requests by
    /// agency, kind, ground and outcome; refusals by reason; holds, alerts,
    /// mail covers.
    Transparency(TransparencyArgs),
    /// Check a saved subject access report (its JSON: `subject report`, or
    /// the person's page's report.json) with keys you bring: the log's
    /// verifier key as the postal service publishes it, and the witnesses'
    /// keys as they publish them. Needs no vault. Exit 5 if the
    /// checkpoint, its cosignatures or a leaf's proof does not verify.
    /// The report's own keys are not used: a node holds the log's key and
    /// could sign a second log; only independent witnesses' cosignatures
    /// show that everybody sees the same one.
    Verify(ReportVerifyArgs),
}

#[derive(Args, Debug)]
pub struct ReportVerifyArgs {
    /// The report's JSON file, or - for standard input.
    pub file: PathBuf,
    /// The log's verifier key (a signed-note key: `<name>+<id>+<key>`).
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// A witness's verifier key (tlog-cosignature/v1), as the witness
    /// publishes it; repeat. Required unless --no-witnesses.
    #[arg(
        long = "witness",
        value_name = "VKEY",
        required_unless_present = "no_witnesses"
    )]
    pub witness: Vec<String>,
    /// Cosignatures required, from 1 to the number of --witness (default:
    /// all of them).
    #[arg(long, requires = "witness")]
    pub quorum: Option<usize>,
    /// Check the log's signature and the proofs only, for a log without
    /// witnesses: that shows the leaves are in a log the service signed,
    /// not that everybody sees the same one (`"witnessed": false`).
    #[arg(long, conflicts_with = "witness")]
    pub no_witnesses: bool,
}

#[derive(Args, Debug)]
pub struct TransparencyArgs {
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Json,
    /// A table for people.
    Table,
}

pub fn run(cli: &Cli, cmd: &DiscloseCmd) -> Result<u8> {
    if let DiscloseCmd::Example(a) = cmd {
        return crate::examples::run(a);
    }
    let v = crate::open_vault(cli)?;
    let exit = |refused: bool| if refused { EXIT_DENIED } else { 0 };
    match cmd {
        DiscloseCmd::Submit { principal, file } => {
            let p = v.principal(principal)?;
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .take(postvault::gateway::MAX_INSTRUMENT_BYTES as u64 + 1)
                    .read_to_string(&mut text)
                    .context("reading the instrument from standard input")?;
            } else {
                std::fs::File::open(file)
                    .with_context(|| format!("opening `{}`", file.display()))?
                    .take(postvault::gateway::MAX_INSTRUMENT_BYTES as u64 + 1)
                    .read_to_string(&mut text)
                    .with_context(|| format!("reading `{}` as UTF-8 text", file.display()))?;
            }
            let a = v.disclose_submit(&p, &text)?;
            print_json(&a)?;
            for r in &a.reasons {
                errln!("postvault: refused [{}] {}", r.code, r.message);
            }
            for al in &a.alerts {
                errln!("postvault: alert {al}");
            }
            Ok(exit(a.refused()))
        }
        DiscloseCmd::Approve {
            principal,
            id,
            portions,
        } => {
            let p = v.principal(principal)?;
            let a = v.disclose_approve(
                &p,
                id,
                &ApproveOptions {
                    portions: portions.clone(),
                },
            )?;
            print_json(&a)?;
            Ok(exit(a.refused()))
        }
        DiscloseCmd::Refuse {
            principal,
            id,
            reason,
        } => {
            let p = v.principal(principal)?;
            let a = v.disclose_refuse_with(&p, id, reason.as_deref())?;
            print_json(&a)?;
            Ok(exit(a.refused()))
        }
        DiscloseCmd::Fetch { principal, id } => {
            let p = v.principal(principal)?;
            let pkg = v.disclose_fetch(&p, id)?;
            print_json(&pkg)?;
            if let Err(e) = v.checkpoint() {
                errln!("postvault: warning: no checkpoint was signed: {e}");
            }
            Ok(exit(pkg.refused()))
        }
        DiscloseCmd::List { principal } => {
            let list = match principal {
                Some(name) => v.disclosure_list(&v.principal(name)?)?,
                None => v.disclosure_list_all()?,
            };
            print_json(&list)?;
            Ok(0)
        }
        DiscloseCmd::Show { principal, id } => {
            let p = v.principal(principal)?;
            match v.disclosure_show(&p, id)? {
                Some(r) => {
                    print_json(&r)?;
                    Ok(0)
                }
                None => bail!("no request with this id that `{principal}` may see"),
            }
        }
        DiscloseCmd::End {
            principal,
            id,
            reason,
        } => {
            let p = v.principal(principal)?;
            let a = v.disclose_end(&p, id, (*reason).into())?;
            print_json(&a)?;
            Ok(exit(a.refused()))
        }
        DiscloseCmd::Accounting {
            principal,
            subject,
            all,
        } => {
            let p = v.principal(principal)?;
            print_json(&v.accounting(&p, subject, *all)?)?;
            Ok(0)
        }
        DiscloseCmd::Notices { principal } => {
            let p = v.principal(principal)?;
            print_json(&v.disclosure_notices(&p)?)?;
            Ok(0)
        }
        DiscloseCmd::Example(a) => crate::examples::run(a),
    }
}

pub fn report(cli: &Cli, cmd: &ReportCmd) -> Result<u8> {
    if let ReportCmd::Verify(a) = cmd {
        return verify_saved_report(a);
    }
    let v = crate::open_vault(cli)?;
    match cmd {
        ReportCmd::Verify(a) => verify_saved_report(a),
        ReportCmd::Transparency(a) => {
            let r = v.transparency_report()?;
            match a.format {
                ReportFormat::Json => print_json(&r)?,
                ReportFormat::Table => out!("{}", transparency_table(&r)),
            }
            Ok(0)
        }
    }
}

/// `report verify`: a saved report checked with the keys given.
fn verify_saved_report(a: &ReportVerifyArgs) -> Result<u8> {
    let text = if a.file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .context("reading the report from standard input")?;
        t
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("reading `{}`", a.file.display()))?
    };
    match postvault::verify_report_offline(&text, &a.log_key, &a.witness, a.quorum) {
        Ok(r) => {
            print_json(&serde_json::json!({"verified": true, "report": r}))?;
            Ok(0)
        }
        Err(postvault::VaultError::LogVerification(why)) => {
            print_json(&serde_json::json!({"verified": false, "error": why}))?;
            Ok(crate::EXIT_VERIFY_FAILED)
        }
        Err(e) => Err(e.into()),
    }
}

/// The transparency report as text tables.
pub fn transparency_table(r: &TransparencyReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Transparency report, {} (pack {})",
        r.generated_at, r.pack
    );
    let _ = writeln!(
        o,
        "{} requests to the disclosure gateway; the log holds {} leaves.",
        r.requests, r.log_size
    );
    let outcomes = [
        "refused",
        "held_for_review",
        "pending_approval",
        "approved",
        "fetched",
        "expired",
        "ended",
        "destroyed",
    ];
    let short = [
        "refused",
        "held",
        "pending",
        "approved",
        "fetched",
        "expired",
        "ended",
        "destroyed",
    ];
    for (title, map) in [
        ("agency", &r.by_agency),
        ("kind", &r.by_kind),
        ("ground", &r.by_ground),
    ] {
        let _ = writeln!(o, "\nBy {title}:");
        let _ = write!(o, "  {:<28}", title);
        for s in short {
            let _ = write!(o, " {s:>9}");
        }
        let _ = writeln!(o);
        for (k, counts) in map {
            let _ = write!(o, "  {k:<28}");
            for s in outcomes {
                let _ = write!(o, " {:>9}", counts.get(s).copied().unwrap_or(0));
            }
            let _ = writeln!(o);
        }
    }
    let _ = writeln!(
        o,
        "\nRefusals by reason (a request counts once per reason):"
    );
    for (code, n) in &r.refusals_by_reason {
        let _ = writeln!(o, "  {code:<38} {n:>6}");
    }
    let _ = writeln!(o, "\nHeld for review: {}", r.held_for_review);
    let _ = writeln!(o, "Alerts:");
    for (name, n) in &r.alerts {
        let _ = writeln!(o, "  {name:<38} {n:>6}");
    }
    let c = &r.mail_covers;
    let _ = writeln!(
        o,
        "\nMail covers: {} requested, {} approved, {} refused, {} extensions, {} ended, {} destroyed as improperly ordered.",
        c.requested, c.approved, c.refused, c.extended, c.ended, c.destroyed
    );
    let _ = writeln!(
        o,
        "Data left the vault {} times, about {} people in all.",
        r.disclosures.fetches, r.statistics.people.disclosed
    );
    o.push_str(&crate::stats::report_table(&r.statistics));
    o
}
