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
        tag_key_file,
        log_key,
        witness,
        quorum,
        min_size,
        max_age,
        ..
    } = cmd
    {
        let tag_key = match (tag_key, tag_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(p)) if p.as_os_str() == "-" => {
                let mut k = String::new();
                std::io::stdin()
                    .read_line(&mut k)
                    .context("reading the tag key")?;
                k
            }
            (None, Some(p)) => {
                std::fs::read_to_string(p).with_context(|| format!("reading `{}`", p.display()))?
            }
            (None, None) => bail!("give --tag-key or --tag-key-file"),
        };
        return scan(&Scan {
            url,
            tag_key: tag_key.trim(),
            log_key,
            witnesses: witness,
            quorum: *quorum,
            min_size: *min_size,
            max_age: *max_age,
        });
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

/// What `log scan` was asked.
struct Scan<'a> {
    url: &'a str,
    tag_key: &'a str,
    log_key: &'a str,
    witnesses: &'a [String],
    quorum: Option<usize>,
    min_size: Option<u64>,
    max_age: Option<u64>,
}

/// The most a checkpoint may weigh, and an entry bundle (256 entries of at
/// most 65,535 bytes, each with its 2-byte length).
const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
const MAX_BUNDLE_BYTES: usize = 256 * (65_535 + 2);

/// `log scan`: the public log read over HTTP(S), one entry bundle at a
/// time, and checked by [`postvault::scan_public_log`]. No redirect is
/// followed (the log is where the person said), and no answer is read past
/// the most its resource can weigh.
fn scan(a: &Scan<'_>) -> Result<u8> {
    let base = reqwest::Url::parse(a.url.trim_end_matches('/'))
        .with_context(|| format!("`{}` is not an address", a.url))?;
    if !matches!(base.scheme(), "http" | "https") {
        bail!(
            "`{}`: the address must start with https:// (or http://)",
            a.url
        );
    }
    let base = base.as_str().trim_end_matches('/').to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("postvault/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let get = |path: &str, max: usize| -> std::result::Result<Vec<u8>, String> {
        rt.block_on(async {
            let mut r = client
                .get(format!("{base}/log/{path}"))
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !r.status().is_success() {
                return Err(format!("answered {}", r.status()));
            }
            if r.content_length().is_some_and(|n| n > max as u64) {
                return Err(format!(
                    "the answer is larger than the {max} bytes it may be"
                ));
            }
            let mut body = Vec::new();
            while let Some(chunk) = r.chunk().await.map_err(|e| e.without_url().to_string())? {
                if body.len() + chunk.len() > max {
                    return Err(format!(
                        "the answer is larger than the {max} bytes it may be"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    };
    let checkpoint = String::from_utf8(
        get("checkpoint", MAX_CHECKPOINT_BYTES)
            .map_err(|e| anyhow::anyhow!("{base}/log/checkpoint: {e}"))?,
    )
    .context("the checkpoint is not text")?;
    let bar = crate::progress_bar(None, "reading the log");
    let found = postvault::scan_public_log(
        &checkpoint,
        a.log_key,
        a.witnesses,
        a.quorum,
        a.tag_key,
        &mut |path| get(path, MAX_BUNDLE_BYTES),
        &mut |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();
    // How fresh the log read is: an old checkpoint, validly cosigned, ends
    // the scan before newer entries.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let newest = found.cosigned_at.iter().max().copied();
    let age = newest.map(|t| now.saturating_sub(t));
    errln!(
        "postvault: {} entries read; they make the checkpoint's tree{}; {} about the person",
        found.checkpoint_size,
        match age {
            Some(age) if found.witnessed => format!(
                ", cosigned by {} witnesses, the newest {} ago",
                found.cosigners.len(),
                humantime_secs(age)
            ),
            _ => " (no witness checked: the checkpoint's age is unknown)".to_string(),
        },
        found.leaves.len()
    );
    if let Some(min) = a.min_size
        && found.checkpoint_size < min
    {
        return Err(VaultError::LogVerification(format!(
            "the checkpoint holds {} entries, fewer than the {min} you know of: an old checkpoint",
            found.checkpoint_size
        ))
        .into());
    }
    if let (Some(max), Some(age)) = (a.max_age, age)
        && age > max
    {
        return Err(VaultError::LogVerification(format!(
            "the checkpoint's newest cosignature is {} old, more than the {} allowed",
            humantime_secs(age),
            humantime_secs(max)
        ))
        .into());
    }
    print_json(&found)?;
    Ok(0)
}

/// Seconds as the largest whole unit: `3 days`, `5 hours`, `42 seconds`.
fn humantime_secs(s: u64) -> String {
    let (n, unit) = match s {
        0..120 => (s, "seconds"),
        120..7_200 => (s / 60, "minutes"),
        7_200..172_800 => (s / 3_600, "hours"),
        _ => (s / 86_400, "days"),
    };
    format!("{n} {unit}")
}
