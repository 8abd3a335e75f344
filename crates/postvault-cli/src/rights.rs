//! `postvault retention`, `erase`, `hold`, `consent`, `subject report`: the
//! person's rights and the end of data, from the command line.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use crate::{Cli, EXIT_DENIED, print_json, progress_bar};

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Run the retention sweep now: destroy the keys of every retention
    /// period that has ended (everything sealed under them, in any copy of
    /// the data store, becomes unreadable), delete expired records not
    /// under a legal hold, and purge the rows of erased people. Prints
    /// {"periods_destroyed", "records_deleted", "by_category",
    /// "held_records_kept", "log_index", "erased_purged": {"people", "records"}}.
    Run,
}

#[derive(Args, Debug)]
pub struct EraseArgs {
    /// A privacy officer granting the person's request.
    #[arg(long = "as", value_name = "OFFICER")]
    pub principal: String,
    /// The person's identifier; repeat for several.
    #[arg(long)]
    pub subject: Vec<String>,
    /// A file with one identifier per line (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub subjects_file: Option<PathBuf>,
    /// Leave the erased rows to the retention sweep (`retention run`, or a
    /// server's sweeper) instead of purging them before returning (an
    /// erasure of at most 1,000 people purges theirs itself). The people
    /// are unreadable either way: their keys are destroyed and no read sees
    /// their rows; the purge deletes the rows, their refs and lookup tokens.
    #[arg(long)]
    pub defer_purge: bool,
}

#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Place a legal hold on the people named by an approved disclosure
    /// request: their data outlives retention and cannot be erased until
    /// the hold ends or is released (at most 90 days; place it again to renew).
    Place {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
        /// The approved disclosure request the hold rests on.
        #[arg(long)]
        request: String,
        /// When the hold lapses (YYYY-MM-DD or RFC 3339); default 90 days.
        #[arg(long)]
        until: Option<String>,
    },
    /// Release a hold.
    Release {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
        id: String,
    },
    /// List every hold.
    List {
        #[arg(long = "as", value_name = "OFFICER")]
        principal: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// Record the person's consent to a purpose; takes effect on the next read.
    Grant(ConsentArgs),
    /// Record the withdrawal of the person's consent; takes effect on the next read.
    Withdraw(ConsentArgs),
}

#[derive(Args, Debug)]
pub struct ConsentArgs {
    /// Who records it for the person: a privacy officer or the
    /// `subject_access` service.
    #[arg(long = "as", value_name = "NAME", env = "POSTVAULT_AS")]
    pub principal: String,
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub purpose: String,
}

#[derive(Args, Debug)]
pub struct CorrectArgs {
    /// A privacy officer or the `subject_access` service acting on the
    /// person's request.
    #[arg(long = "as", value_name = "NAME", env = "POSTVAULT_AS")]
    pub principal: String,
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub category: String,
    /// The record to correct, when the person holds several of the category.
    #[arg(long)]
    pub record: Option<String>,
    /// The corrected fields: a JSON object (or {"fields": {...}}); `-` for
    /// standard input.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A privacy officer or the `subject_access` service answering the
    /// person's request.
    #[arg(long = "as", value_name = "NAME", env = "POSTVAULT_AS")]
    pub principal: String,
    #[arg(long)]
    pub subject: String,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Json,
    Html,
}

pub fn retention(cli: &Cli, cmd: &RetentionCmd) -> Result<u8> {
    match cmd {
        RetentionCmd::Run => {
            let v = crate::open_vault(cli)?;
            let bar = progress_bar(None, "sweeping expired records");
            let r = v.retention_run(&mut |n| bar.set_position(n))?;
            bar.finish_and_clear();
            print_json(&r)?;
            if let Some(e) = &r.purge_error {
                bail!("the sweep is done, but the rows of erased people were not purged: {e}");
            }
            Ok(0)
        }
    }
}

pub fn erase(cli: &Cli, a: &EraseArgs) -> Result<u8> {
    let mut subjects = a.subject.clone();
    if let Some(path) = &a.subjects_file {
        let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path)
                    .with_context(|| format!("opening `{}`", path.display()))?,
            ))
        };
        for line in input.lines() {
            let line = line.context("reading the subjects file")?;
            let id = line.trim();
            if !id.is_empty() {
                subjects.push(id.to_string());
            }
        }
    }
    if subjects.is_empty() {
        bail!("name at least one person with --subject or --subjects-file");
    }
    let v = crate::open_vault(cli)?;
    let p = v.principal(&a.principal)?;
    let bar = progress_bar(Some(subjects.len() as u64), "erasing");
    let mut r = v.erase(&p, &subjects, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    // A request left waiting erased nothing: nothing to purge.
    if !a.defer_purge && r.purged.is_none() && r.pending_request.is_none() {
        let purged = v.purge_pending().and_then(|pending| {
            let bar = progress_bar(Some(pending.people), "purging erased rows");
            let p = v.purge_erased(&mut |n| bar.set_position(n));
            bar.finish_and_clear();
            p
        });
        match purged {
            Ok(p) => {
                r.purged = Some(p);
                r.purge_error = None;
            }
            Err(e) => {
                // The erasure stands (keys destroyed, leaves written): its
                // report first, then the purge's failure.
                print_json(&r)?;
                return Err(anyhow::Error::new(e).context(
                    "the people are erased (their keys are destroyed) but their rows were not purged; \
                     `postvault retention run` purges them",
                ));
            }
        }
    }
    print_json(&r)?;
    if r.refused() {
        errln!(
            "postvault: refused for {} identifier(s): a legal hold is in force",
            r.held.len()
        );
        return Ok(EXIT_DENIED);
    }
    if let Some(id) = &r.pending_request {
        errln!("postvault: the erasure waits for the privacy office, as rights request {id}");
    }
    if let Some(e) = &r.purge_error {
        bail!(
            "the people are erased, but their rows were not purged ({e}); the next sweep purges them"
        );
    }
    Ok(0)
}

pub fn hold(cli: &Cli, cmd: &HoldCmd) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    match cmd {
        HoldCmd::Place {
            principal,
            request,
            until,
        } => {
            let p = v.principal(principal)?;
            let until = match until {
                Some(s) => Some(
                    postvault_policy::disclosure::parse_iso(s)
                        .context("--until: use YYYY-MM-DD or RFC 3339")?,
                ),
                None => None,
            };
            print_json(&v.hold_place(&p, request, until)?)?;
        }
        HoldCmd::Release { principal, id } => {
            let p = v.principal(principal)?;
            print_json(&v.hold_release(&p, id)?)?;
        }
        HoldCmd::List { principal } => {
            let p = v.principal(principal)?;
            print_json(&v.holds(&p)?)?;
        }
    }
    Ok(0)
}

pub fn consent(cli: &Cli, cmd: &ConsentCmd) -> Result<u8> {
    let (a, granted) = match cmd {
        ConsentCmd::Grant(a) => (a, true),
        ConsentCmd::Withdraw(a) => (a, false),
    };
    let v = crate::open_vault(cli)?;
    let p = v.principal(&a.principal)?;
    let idx = v.set_consent(&p, &a.subject, &a.purpose, granted)?;
    print_json(&serde_json::json!({
        "subject": a.subject,
        "purpose": a.purpose,
        "granted": granted,
        "log_index": idx,
    }))?;
    Ok(0)
}

pub fn report(cli: &Cli, a: &ReportArgs) -> Result<u8> {
    let v = crate::open_vault(cli)?;
    let p = v.principal(&a.principal)?;
    let r = v.subject_report(&p, &a.subject)?;
    match a.format {
        ReportFormat::Json => print_json(&r)?,
        ReportFormat::Html => {
            use std::io::Write as _;
            std::io::stdout()
                .lock()
                .write_all(postvault::report_html(&r).as_bytes())?;
        }
    }
    if !r.proofs_verified {
        errln!("postvault: a proof in the report did not verify against the checkpoint");
        return Ok(crate::EXIT_VERIFY_FAILED);
    }
    Ok(0)
}

pub fn correct(cli: &Cli, a: &CorrectArgs) -> Result<u8> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("reading `{}`", a.file.display()))?
    };
    let v = crate::open_vault(cli)?;
    let p = v.principal(&a.principal)?;
    let r = v.correct(&p, &a.subject, &a.category, &text, a.record.as_deref())?;
    print_json(&r)?;
    if !r.notify.is_empty() {
        errln!(
            "postvault: {} earlier recipient(s) of this category must be told of the correction",
            r.notify.len()
        );
    }
    Ok(0)
}
