//! Idempotent collection: a run is known by the batch id its client gives
//! (an HTTP `Idempotency-Key`, or the CLI's hash of the input file), scoped
//! to the principal. Each batch commits with the run's progress in the same
//! transaction (the lines it handled and the SHA-256 of the input so far),
//! so a run sent again after a crash, a cut connection or a resend resumes
//! after its last committed line (after checking that the input is the
//! same up to there), and a run sent again after it finished is answered
//! with its first report. No line is ever stored twice: a second process
//! resuming the same run at the same time is refused by the store.
//!
//! The store keeps a keyed hash of (principal, batch id), never the id.

use std::collections::BTreeMap;
use std::io::BufRead;

use aws_lc_rs::digest;
use serde::Serialize;

use postvault_store::{RunRow, RunStep};

use crate::collect::{CollectReport, LineError};
use crate::error::VaultError;
use crate::vault::{Principal, Vault};

/// Longest batch id, in bytes.
pub const MAX_BATCH_ID: usize = 200;

/// What a collection under a batch id did, beside its counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInfo {
    /// The batch id, as given.
    pub id: String,
    /// Lines up to this one were stored by an earlier attempt and were not
    /// stored again (0: a fresh run).
    pub resumed_after_line: u64,
    /// The run had finished before: nothing was stored; the report is the
    /// first one.
    pub replayed: bool,
}

/// A run this process is collecting; leaves the set of active runs when
/// dropped.
pub(crate) struct ActiveRun<'a> {
    vault: &'a Vault,
    pub(crate) key: [u8; 16],
    pub(crate) id: String,
    pub(crate) principal: String,
    pub(crate) stored: Option<RunRow>,
}

impl Drop for ActiveRun<'_> {
    fn drop(&mut self) {
        self.vault
            .runs_active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl ActiveRun<'_> {
    /// Lines an earlier attempt committed.
    pub(crate) fn committed(&self) -> u64 {
        self.stored.as_ref().map_or(0, |r| r.through_line)
    }

    pub(crate) fn finished(&self) -> bool {
        self.stored
            .as_ref()
            .is_some_and(|r| r.finished_at.is_some())
    }

    /// The step a batch of lines `after+1..=through` writes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        after: u64,
        through: u64,
        digest: [u8; 32],
        accepted: u64,
        rejected: u64,
        categories: &BTreeMap<String, u64>,
        errors: &[LineError],
        finished: bool,
        at: i64,
    ) -> RunStep {
        RunStep {
            run: self.key,
            principal: self.principal.clone(),
            after_line: after,
            through_line: through,
            digest,
            accepted,
            rejected,
            categories: serde_json::to_string(categories).unwrap_or_else(|_| "{}".into()),
            errors: serde_json::to_string(errors).unwrap_or_else(|_| "[]".into()),
            finished,
            at,
        }
    }

    pub(crate) fn info(&self, replayed: bool) -> RunInfo {
        RunInfo {
            id: self.id.clone(),
            resumed_after_line: self.committed(),
            replayed,
        }
    }
}

fn mismatch() -> VaultError {
    VaultError::RunMismatch(
        "this batch id was used before for other input (the lines already stored under it differ from these); send the same input again, or use a new batch id".into(),
    )
}

/// SHA-256 of what a digest context has seen.
pub(crate) fn finish(ctx: &digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.clone().finish().as_ref());
    out
}

impl Vault {
    /// Starts (or resumes) the run `id` of `principal`: refuses an id in
    /// use by this process, and one that is not a batch id.
    pub(crate) fn start_run(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ActiveRun<'_>, VaultError> {
        if id.is_empty()
            || id.len() > MAX_BATCH_ID
            || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(VaultError::Invalid {
                what: "batch id",
                why: format!("use 1 to {MAX_BATCH_ID} printable ASCII characters"),
            });
        }
        let mut material = principal.name.as_bytes().to_vec();
        material.push(0);
        material.extend_from_slice(id.as_bytes());
        let key = self.master.blind_index("collection-run", &material);
        if !self
            .runs_active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return Err(VaultError::RunInProgress);
        }
        let mut run = ActiveRun {
            vault: self,
            key,
            id: id.to_string(),
            principal: principal.name.clone(),
            stored: None,
        };
        run.stored = self.store.run(&key)?;
        Ok(run)
    }

    /// Reads the lines an earlier attempt of `run` committed, checking they
    /// are the same input; returns the digest context after them.
    pub(crate) fn skip_committed(
        &self,
        run: &ActiveRun<'_>,
        input: &mut dyn BufRead,
    ) -> Result<digest::Context, VaultError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let Some(stored) = &run.stored else {
            return Ok(ctx);
        };
        let mut scratch = Vec::new();
        for _ in 0..stored.through_line {
            scratch.clear();
            let read = crate::collect::read_line_bounded(input, &mut scratch, Some(&mut ctx))
                .map_err(VaultError::Input)?;
            if read == crate::collect::LineRead::Eof {
                return Err(mismatch());
            }
        }
        if finish(&ctx) != stored.digest {
            return Err(mismatch());
        }
        Ok(ctx)
    }

    /// A finished run sent again: the rest of the input must be what was
    /// collected (nothing more), and the answer is the first report.
    pub(crate) fn replay(
        &self,
        run: &ActiveRun<'_>,
        input: &mut dyn BufRead,
        mut ctx: digest::Context,
    ) -> Result<CollectReport, VaultError> {
        // A finished run's digest covers its whole input: one more line is
        // other input.
        let mut scratch = Vec::new();
        let read = crate::collect::read_line_bounded(input, &mut scratch, Some(&mut ctx))
            .map_err(VaultError::Input)?;
        if read != crate::collect::LineRead::Eof {
            return Err(mismatch());
        }
        let stored = run.stored.as_ref().ok_or_else(mismatch)?;
        if finish(&ctx) != stored.digest {
            return Err(mismatch());
        }
        let mut report = report_of(stored);
        report.run = Some(run.info(true));
        Ok(report)
    }
}

/// The report of what a run's stored batches did.
pub(crate) fn report_of(row: &RunRow) -> CollectReport {
    let mut r = CollectReport {
        committed_through_line: row.through_line,
        ..CollectReport::default()
    };
    for b in &row.batches {
        r.accepted += b.accepted;
        r.rejected += b.rejected;
        if let Some(leaf) = b.leaf {
            r.batches += 1;
            r.leaves.push(leaf);
        }
        let cats: BTreeMap<String, u64> = serde_json::from_str(&b.categories).unwrap_or_default();
        for (c, n) in cats {
            *r.categories.entry(c).or_default() += n;
        }
        let errors: Vec<LineError> = serde_json::from_str(&b.errors).unwrap_or_default();
        for e in errors {
            if r.errors.len() < crate::collect::MAX_ERRORS_KEPT {
                r.errors.push(e);
            }
        }
    }
    r
}

/// `earlier` (an earlier attempt's stored report) followed by `later`.
pub(crate) fn merge(mut earlier: CollectReport, later: CollectReport) -> CollectReport {
    earlier.accepted += later.accepted;
    earlier.rejected += later.rejected;
    earlier.batches += later.batches;
    for (c, n) in later.categories {
        *earlier.categories.entry(c).or_default() += n;
    }
    for e in later.errors {
        if earlier.errors.len() < crate::collect::MAX_ERRORS_KEPT {
            earlier.errors.push(e);
        }
    }
    earlier.leaves.extend(later.leaves);
    earlier.committed_through_line = earlier
        .committed_through_line
        .max(later.committed_through_line);
    earlier.failure = later.failure;
    earlier.run = later.run;
    earlier
}
