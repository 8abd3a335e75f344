//! `postvault log ...`: the transparency log's checkpoints, entries,
//! proofs, tiles and verification, from the command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use postvault::VaultError;

use crate::{Cli, LogCmd, print_json, witness_cmd};

pub fn run(cli: &Cli, cmd: &LogCmd) -> Result<u8> {
    if let LogCmd::Recover = cmd {
        return witness_cmd::recover(cli);
    }
    if let LogCmd::Scan {
        url,
        tag_key,
        log_key,
        witness,
        quorum,
        ..
    } = cmd
    {
        return scan(url, tag_key, log_key, witness, *quorum);
    }
    let v = crate::open_vault(cli)?;
    match cmd {
        LogCmd::Recover | LogCmd::Scan { .. } => {}
        LogCmd::Witnesses(w) => return witness_cmd::witnesses(&v, w),
        LogCmd::Checkpoint if v.has_witnesses() => {
            let r = v.cosign()?;
            for w in &r.witnesses {
                if let Some(e) = &w.error {
                    errln!("postvault: witness `{}`: {e}", w.witness);
                }
            }
            let Some(fin) = &r.final_checkpoint else {
                return Err(VaultError::NoFinalCheckpoint(format!(
                    "checkpoint {} has {} of the {} cosignatures required, and no earlier one has them",
                    r.checkpoint.size,
                    r.checkpoint.cosigners.len(),
                    r.checkpoint.quorum
                ))
                .into());
            };
            if !r.checkpoint.is_final {
                errln!(
                    "postvault: checkpoint {} is pending ({} of {} cosignatures); printing the latest final one, {}",
                    r.checkpoint.size,
                    r.checkpoint.cosigners.len(),
                    r.checkpoint.quorum,
                    fin.size
                );
            }
            out!("{}", fin.note);
        }
        LogCmd::Checkpoint => {
            out!("{}", v.checkpoint()?);
        }
        LogCmd::Key => outln!("{}", v.log_verifier_key()),
        LogCmd::Entries { start, end } => {
            let end = match end {
                Some(e) => *e,
                None => v.store().log_size()?,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut i = *start;
            while i < end {
                let chunk = end.min(i + 10_000);
                for e in v.log_entries(i, chunk)? {
                    serde_json::to_writer(&mut out, &e)?;
                    writeln!(out)?;
                }
                i = chunk;
            }
            out.flush()?;
        }
        LogCmd::Prove {
            index,
            size,
            old,
            new,
        } => match (index, old, new) {
            (Some(i), _, _) => print_json(&v.prove_inclusion(*i, *size)?)?,
            (None, Some(o), Some(n)) => print_json(&v.prove_consistency(*o, *n)?)?,
            _ => bail!("give --index I [--size N], or --old A --new B"),
        },
        LogCmd::Verify {
            checkpoint,
            since,
            witness,
            quorum,
        } => {
            let read = |p: &Option<PathBuf>| -> Result<Option<String>> {
                p.as_ref()
                    .map(|p| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("reading `{}`", p.display()))
                    })
                    .transpose()
            };
            let report = v.verify_log(&postvault::VerifyOptions {
                checkpoint: read(checkpoint)?,
                since: read(since)?,
                witnesses: witness.clone(),
                quorum: *quorum,
            })?;
            errln!(
                "postvault: the log verifies: {} leaves, {} signed checkpoints consistent{}",
                report.size,
                report.checkpoints_checked,
                if report.witness_quorum > 0 {
                    format!(
                        "; checkpoint {} cosigned by {} of {} required witnesses",
                        report.checkpoint.as_ref().map_or(0, |c| c.size),
                        report.cosigners.len(),
                        report.witness_quorum
                    )
                } else {
                    String::new()
                }
            );
            print_json(&report)?;
        }
        LogCmd::Tile { path } => {
            let bytes = v.log_tile(path)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
        LogCmd::Refile { subject } => {
            let done = v.refile_subject(subject)?;
            errln!(
                "postvault: the person's leaves are filed whole ({} rows written, {} removed); leaf {} records the repair",
                done.written,
                done.removed,
                done.leaf
            );
            print_json(&done)?;
        }
        LogCmd::Find { tag_key, scan } => {
            let (checkpoint, found) = if *scan {
                v.find_leaves_scanned(tag_key)?
            } else {
                v.find_leaves_cosigned(tag_key)?
            };
            if !checkpoint.is_final {
                errln!(
                    "postvault: the checkpoint is pending: {} of the {} witness cosignatures required",
                    checkpoint.cosigners.len(),
                    checkpoint.quorum
                );
            }
            print_json(&serde_json::json!({
                "checkpoint": checkpoint.note,
                "checkpoint_final": checkpoint.is_final,
                "cosigners": checkpoint.cosigners,
                "leaves": found,
            }))?;
        }
    }
    Ok(0)
}

/// `log scan`: the public log read over HTTP(S), one entry bundle at a
/// time, and checked by [`postvault::scan_public_log`].
fn scan(
    url: &str,
    tag_key: &str,
    log_key: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<u8> {
    let base = url.trim_end_matches('/').to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("postvault/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let get = |path: &str| -> std::result::Result<Vec<u8>, String> {
        rt.block_on(async {
            let r = client
                .get(format!("{base}/log/{path}"))
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !r.status().is_success() {
                return Err(format!("answered {}", r.status()));
            }
            r.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.without_url().to_string())
        })
    };
    let checkpoint = String::from_utf8(
        get("checkpoint").map_err(|e| anyhow::anyhow!("{base}/log/checkpoint: {e}"))?,
    )
    .context("the checkpoint is not text")?;
    let bar = crate::progress_bar(None, "reading the log");
    let found = postvault::scan_public_log(
        &checkpoint,
        log_key,
        witnesses,
        quorum,
        tag_key,
        &mut |path| get(path),
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    errln!(
        "postvault: {} entries read; they make the checkpoint's tree{}; {} about the person",
        found.checkpoint_size,
        if found.witnessed {
            format!(", cosigned by {} witnesses", found.cosigners.len())
        } else {
            " (no witness checked)".to_string()
        },
        found.leaves.len()
    );
    print_json(&found)?;
    Ok(0)
}
