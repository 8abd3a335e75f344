//! Collection: NDJSON records in, minimized and sealed rows out, one store
//! transaction and one accounting leaf per batch.
//!
//! Each line is all-or-nothing; a rejected line names the line, the field and
//! the rule, never a value. Accepted lines are durable when `collect` returns.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use postvault_policy::{CategoryIx, PurposeIx};
use postvault_store::{StoreError, SubjectRef};

use crate::error::VaultError;
use crate::vault::{Principal, Vault};

mod line;
mod seal;

use line::line_err;
pub(crate) use line::{LineRead, read_line_bounded};
use seal::{Committed, Prepared};
pub(crate) use seal::{lookup_value, payload, record_aad, record_aad_into};

/// Longest accepted line, in bytes (room for a 1 MiB image in base64).
pub const MAX_LINE: usize = 2 << 20;
/// Input bytes at which a batch ends before its line count.
const MAX_BATCH_BYTES: usize = 8 << 20;
pub(crate) const MAX_ERRORS_KEPT: usize = 1000;

/// How to collect.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// The purpose of lines that name none.
    pub default_purpose: Option<String>,
    /// Lines per transaction.
    pub batch_size: usize,
    /// A batch id making the collection idempotent (an HTTP
    /// `Idempotency-Key`, the CLI's hash of its input file): sent again by
    /// the same principal, it resumes after the last committed line, or
    /// answers with the first report if it finished. `None`: every line
    /// is collected as new.
    pub run: Option<String>,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            default_purpose: None,
            batch_size: 2048,
            run: None,
        }
    }
}

/// Why one line was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineError {
    pub line: u64,
    /// Stable code, e.g. `malformed_json`, `unknown_category`, `field_not_declared`, `denied`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The rule of the reference behind the rejection (e.g. `R2`), or the policy id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectReport {
    pub accepted: u64,
    pub rejected: u64,
    pub batches: u64,
    /// Accepted records per category.
    pub categories: BTreeMap<String, u64>,
    /// The first rejections (at most 1000), in line order.
    pub errors: Vec<LineError>,
    /// Log index of each batch's leaf.
    pub leaves: Vec<u64>,
    /// Every input line up to this one (1-based) was handled: accepted lines
    /// are durable, rejected ones stored nothing. After a failure, resume
    /// from the next line.
    pub committed_through_line: u64,
    /// Why collection stopped early, if it did. Lines after
    /// `committed_through_line` were not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The run, when collected under a batch id: the counts above are the
    /// whole run's, earlier attempts' included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::runs::RunInfo>,
}

/// Why a collection stopped before the end of its input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    pub code: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    subject: String,
    category: String,
    #[serde(default)]
    purpose: Option<String>,
    fields: crate::minimize::InputFields,
    #[serde(default)]
    legal_basis: Option<String>,
    /// Present in the line at all (whatever its value): consent is the
    /// person's act, recorded only through the rights channel, so a line
    /// carrying it is rejected (`consent_not_collectable`).
    #[serde(default, deserialize_with = "present")]
    consent: bool,
}

/// True for a key that is present, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A checked line, not yet sealed.
struct Accepted {
    subject: SubjectRef,
    /// 0: sealed under the subject's key; n: under mail cover n's order key.
    key_id: u32,
    category: CategoryIx,
    purpose: PurposeIx,
    legal_basis: Option<String>,
    /// The policy allows the line only with the person's consent to its
    /// purpose: the rejection to give unless the rights channel recorded it.
    needs_consent: Option<LineError>,
    fields: crate::minimize::Minimized,
}

#[derive(Default)]
struct Batch {
    lines: Vec<Accepted>,
    rejected: u64,
    reasons: BTreeSet<String>,
    /// The first rejections, in line order.
    errors: Vec<LineError>,
}

/// Lines read, not yet checked: `data` holds them end to end, `ends` where
/// each ends and whether it was too long (its bytes then dropped).
struct RawBatch {
    seq: u64,
    first_line: u64,
    data: Vec<u8>,
    ends: Vec<(usize, bool)>,
    /// SHA-256 of the input through the batch's last line (runs only).
    digest: [u8; 32],
}

impl RawBatch {
    fn new(seq: u64, first_line: u64) -> RawBatch {
        RawBatch {
            seq,
            first_line,
            data: Vec::new(),
            ends: Vec::new(),
            digest: [0; 32],
        }
    }

    /// The number of the batch's last line (the line before it if empty).
    fn last_line(&self) -> u64 {
        self.first_line + self.ends.len() as u64 - 1
    }
}

impl Vault {
    /// Whether `principal`'s role may collect anything at all: some
    /// purpose and category the pack lets it collect, with the person's
    /// consent or without. Decided from the pack alone.
    pub fn collects_anything(&self, principal: &Principal) -> bool {
        let tax = self.pack.taxonomy();
        tax.purpose_ixs().any(|purpose| {
            tax.category_ixs().any(|category| {
                [false, true].into_iter().any(|consent| {
                    self.pack
                        .decide(&postvault_policy::DecisionRequest {
                            role: principal.role_ix,
                            action: postvault_policy::Action::Collect,
                            purpose,
                            category,
                            consent,
                        })
                        .allowed()
                })
            })
        })
    }

    /// Refuses an upload by a principal whose role may collect nothing
    /// ([`Vault::collects_anything`]) before any of it is read: one deny
    /// leaf (action `collect`, reason `not_permitted`), and the error
    /// `not_permitted`. The HTTP service asks this before an upload takes
    /// one of its slots.
    pub fn refuse_collection(&self, principal: &Principal) -> Result<(), VaultError> {
        if self.collects_anything(principal) {
            return Ok(());
        }
        self.deny_leaf(principal, "collect", None)?;
        Err(VaultError::NotPermitted(format!(
            "role `{}` may collect nothing",
            principal.role
        )))
    }

    /// Collects NDJSON records from `input` as `principal`. `progress` is
    /// called after each committed batch with the lines read so far.
    ///
    /// A failure midway (the store or the key store failing) does not lose
    /// what was committed: the report says how far collection got
    /// (`committed_through_line`) and why it stopped (`failure`).
    pub fn collect(
        &self,
        principal: &Principal,
        input: &mut dyn BufRead,
        opts: &CollectOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CollectReport, VaultError> {
        let default_purpose = match &opts.default_purpose {
            Some(p) => Some(
                self.pack
                    .taxonomy()
                    .purpose_ix(p)
                    .ok_or_else(|| VaultError::UnknownPurpose(p.clone()))?,
            ),
            None => None,
        };
        let batch_size = opts.batch_size.max(1);
        // Under a batch id: what an earlier attempt committed is read (and
        // checked to be the same input), not collected again.
        let run = match &opts.run {
            Some(id) => Some(self.start_run(principal, id)?),
            None => None,
        };
        let mut hasher = None;
        if let Some(r) = &run {
            let ctx = self.skip_committed(r, input)?;
            if r.finished() {
                return self.replay(r, input, ctx);
            }
            hasher = Some(ctx);
        }
        let skip = run.as_ref().map_or(0, crate::runs::ActiveRun::committed);
        let run = run.as_ref();
        let mut end_of_input = (skip, [0u8; 32]);
        let mut report = CollectReport::default();
        // Three stages: this thread reads lines into batches; workers (one
        // per core, at most four) check, minimize, decide and seal whole
        // batches; the writer commits them (store + leaf) in input order. A
        // batch is acknowledged only once the writer has committed it.
        let workers = crate::vault::cores().clamp(1, 4);
        let (to_workers, work) = std::sync::mpsc::sync_channel::<RawBatch>(workers * 2);
        let work = std::sync::Mutex::new(work);
        let (to_writer, prepared) =
            std::sync::mpsc::sync_channel::<(u64, Result<Prepared, VaultError>)>(workers + 1);
        let (to_reader, committed) = std::sync::mpsc::channel::<Committed>();
        let in_flight = (4 * workers + 4) as u64;
        let store = &*self.store;
        // Set when the writer has stopped: workers then take and drop the
        // batches still coming, so the reader is never left blocked, and
        // the reader stops reading.
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let stopped = &stopped;
        std::thread::scope(|scope| -> Result<(), VaultError> {
            // Owned here: an early return drops it, so workers see the end.
            let to_workers = to_workers;
            // The pipeline's threads start with the first full batch: an
            // input that ends within its first batch (a one-line request,
            // most of what the HTTP API is sent) is checked, sealed and
            // committed on this thread, with no thread started or handed to.
            let work = &work;
            let start = move || -> Result<_, VaultError> {
                for _ in 0..workers {
                    let to_writer = to_writer.clone();
                    let spawned = std::thread::Builder::new()
                        .name("pv-prepare".into())
                        .spawn_scoped(scope, move || {
                            loop {
                                let next = work.lock().unwrap_or_else(|e| e.into_inner()).recv();
                                let Ok(raw) = next else { return };
                                if stopped.load(std::sync::atomic::Ordering::Acquire) {
                                    continue;
                                }
                                let seq = raw.seq;
                                let lines_read = raw.last_line();
                                let digest = raw.digest;
                                let done =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        self.check_batch(principal, &raw, default_purpose).and_then(
                                            |b| {
                                                self.prepare_batch(principal, b, lines_read, digest)
                                            },
                                        )
                                    }))
                                    .unwrap_or_else(|_| {
                                        Err(VaultError::Invalid {
                                            what: "collection",
                                            why: "preparing a batch panicked".into(),
                                        })
                                    });
                                if to_writer.send((seq, done)).is_err() {
                                    stopped.store(true, std::sync::atomic::Ordering::Release);
                                }
                            }
                        });
                    spawned.map_err(VaultError::Input)?;
                }
                drop(to_writer);
                std::thread::Builder::new()
                    .name("pv-write".into())
                    .spawn_scoped(scope, move || -> Result<u64, VaultError> {
                        // Batches arrive in any order; they commit in input order.
                        let mut ready = BTreeMap::new();
                        let mut next = 0u64;
                        // The run's progress as stored: each batch's step must
                        // start there.
                        let mut stored = skip;
                        let written = (|| {
                            for (seq, b) in prepared {
                                ready.insert(seq, b);
                                while let Some(b) = ready.remove(&next) {
                                    next += 1;
                                    let c =
                                        self.commit_batch(principal, store, b?, run, &mut stored)?;
                                    // The reader may have stopped listening after an error.
                                    let _ = to_reader.send(c);
                                }
                            }
                            Ok(stored)
                        })();
                        if written.is_err() {
                            stopped.store(true, std::sync::atomic::Ordering::Release);
                        }
                        written
                    })
                    .map_err(VaultError::Input)
            };
            let mut start = Some(start);
            let mut writer = None;
            let mut unsent = None;
            let mut start_error = None;
            let mut apply = |mut c: Committed, report: &mut CollectReport| {
                drop(c.spent.take());
                report.accepted += c.accepted;
                report.rejected += c.rejected;
                if let Some(leaf) = c.first_leaf {
                    report.batches += 1;
                    report.leaves.push(leaf);
                }
                report.committed_through_line = c.lines_read;
                for (k, n) in c.categories {
                    *report.categories.entry(k).or_default() += n;
                }
                for e in c.errors {
                    if report.errors.len() < MAX_ERRORS_KEPT {
                        report.errors.push(e);
                    }
                }
                progress(c.lines_read);
            };
            let end_of_input = &mut end_of_input;
            let produced = (|| -> Result<(), VaultError> {
                let mut seq = 0u64;
                let (mut sent, mut applied) = (0u64, 0u64);
                let mut raw = RawBatch::new(seq, skip + 1);
                let mut line_no = skip;
                loop {
                    let n = read_line_bounded(input, &mut raw.data, hasher.as_mut())
                        .map_err(VaultError::Input)?;
                    if n == LineRead::Eof {
                        break;
                    }
                    line_no += 1;
                    raw.ends.push((raw.data.len(), n == LineRead::TooLong));
                    // A batch ends at its line count, or at MAX_BATCH_BYTES
                    // of input (lines with images are large).
                    if raw.ends.len() >= batch_size || raw.data.len() >= MAX_BATCH_BYTES {
                        if let Some(h) = &hasher {
                            raw.digest = crate::runs::finish(h);
                        }
                        if stopped.load(std::sync::atomic::Ordering::Acquire) {
                            return Ok(()); // the writer failed; its error is reported below
                        }
                        // At most `in_flight` batches between reading and
                        // committed, whatever order workers finish in: memory
                        // stays bounded.
                        while sent - applied >= in_flight {
                            match committed.recv() {
                                Ok(c) => {
                                    applied += 1;
                                    apply(c, &mut report);
                                }
                                Err(_) => return Ok(()), // the writer stopped
                            }
                        }
                        seq += 1;
                        let mut next = RawBatch::new(seq, line_no + 1);
                        // Sized like the last one: no regrowing copies.
                        next.data.reserve(raw.data.len() + raw.data.len() / 8);
                        next.ends.reserve(raw.ends.len());
                        let full = std::mem::replace(&mut raw, next);
                        if let Some(start) = start.take() {
                            match start() {
                                Ok(w) => writer = Some(w),
                                Err(e) => {
                                    start_error = Some(e);
                                    return Ok(());
                                }
                            }
                        }
                        if to_workers.send(full).is_err() {
                            return Ok(()); // the writer failed; its error is reported below
                        }
                        sent += 1;
                        while let Ok(c) = committed.try_recv() {
                            applied += 1;
                            apply(c, &mut report);
                        }
                    }
                }
                if let Some(h) = &hasher {
                    raw.digest = crate::runs::finish(h);
                    *end_of_input = (line_no, raw.digest);
                }
                if !raw.ends.is_empty() {
                    if writer.is_some() {
                        let _ = to_workers.send(raw);
                    } else {
                        unsent = Some(raw);
                    }
                }
                Ok(())
            })();
            drop(to_workers);
            // A thread that could not start fails the call, as before any
            // batch was committed.
            if let Some(e) = start_error {
                return Err(e);
            }
            let written = match writer {
                Some(w) => w.join().unwrap_or_else(|_| {
                    Err(VaultError::Invalid {
                        what: "writer",
                        why: "the writer thread panicked".into(),
                    })
                }),
                // No thread started: the one batch, here, as a worker and
                // the writer would have.
                None => {
                    let mut stored = skip;
                    match unsent.take() {
                        Some(raw) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let lines_read = raw.last_line();
                            self.check_batch(principal, &raw, default_purpose)
                                .and_then(|b| {
                                    self.prepare_batch(principal, b, lines_read, raw.digest)
                                })
                                .and_then(|b| {
                                    self.commit_batch(principal, store, b, run, &mut stored)
                                })
                        }))
                        .unwrap_or_else(|_| {
                            Err(VaultError::Invalid {
                                what: "collection",
                                why: "collecting a batch panicked".into(),
                            })
                        })
                        .map(|c| {
                            apply(c, &mut report);
                            stored
                        }),
                        None => Ok(stored),
                    }
                }
            };
            while let Ok(c) = committed.try_recv() {
                apply(c, &mut report);
            }
            // The writer's error is the cause when both failed.
            match (written, produced) {
                (Ok(stored), Ok(())) => {
                    // The whole input was handled: the run is finished.
                    if let Some(r) = run {
                        let (lines, digest) = *end_of_input;
                        let step = r.step(
                            stored,
                            lines,
                            digest,
                            0,
                            0,
                            &BTreeMap::new(),
                            &[],
                            true,
                            self.clock.now_ms(),
                        );
                        match self.store.finish_run(&step) {
                            Ok(()) => report.committed_through_line = lines,
                            Err(e) => {
                                let e = VaultError::from(e);
                                report.failure = Some(Failure {
                                    code: e.code().to_string(),
                                    message: e.to_string(),
                                });
                            }
                        }
                    }
                }
                (w, p) => {
                    if let Some(e) = w.err().or(p.err()) {
                        report.failure = Some(Failure {
                            code: e.code().to_string(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            Ok(())
        })?;
        if let Some(r) = run {
            let earlier = r
                .stored
                .as_ref()
                .map(crate::runs::report_of)
                .unwrap_or_default();
            report.run = Some(r.info(false));
            report = crate::runs::merge(earlier, report);
        }
        Ok(report)
    }

    /// Checks every line of `raw`.
    fn check_batch(
        &self,
        principal: &Principal,
        raw: &RawBatch,
        default_purpose: Option<PurposeIx>,
    ) -> Result<Batch, VaultError> {
        let mut batch = Batch::default();
        let mut start = 0;
        for (i, &(end, too_long)) in raw.ends.iter().enumerate() {
            let line_no = raw.first_line + i as u64;
            let checked = if too_long {
                Err(line_err(
                    line_no,
                    "line_too_long",
                    None,
                    None,
                    format!("the line is longer than {MAX_LINE} bytes"),
                ))
            } else {
                self.check_line(principal, line_no, &raw.data[start..end], default_purpose)
            };
            start = end;
            let checked = match checked {
                Ok(Some(mut a)) => match a.needs_consent.take() {
                    // Consent comes from the rights channel's record alone.
                    Some(denied) => {
                        let purpose = &self.pack.taxonomy().purpose(a.purpose).id;
                        if self
                            .store
                            .consent(&a.subject, purpose)?
                            .is_some_and(|c| c.granted)
                        {
                            Ok(Some(a))
                        } else {
                            Err(denied)
                        }
                    }
                    None => Ok(Some(a)),
                },
                other => other,
            };
            match checked {
                Ok(Some(a)) => batch.lines.push(a),
                Ok(None) => {} // blank line
                Err(e) => {
                    batch
                        .reasons
                        .insert(e.rule.clone().unwrap_or_else(|| e.code.clone()));
                    batch.rejected += 1;
                    if batch.errors.len() < MAX_ERRORS_KEPT {
                        batch.errors.push(e);
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Writes one prepared batch with its leaf (and its run's progress,
    /// `stored` being the progress as stored before it).
    fn commit_batch(
        &self,
        principal: &Principal,
        store: &dyn postvault_store::Store,
        mut b: Prepared,
        run: Option<&crate::runs::ActiveRun<'_>>,
        stored: &mut u64,
    ) -> Result<Committed, VaultError> {
        // Blank lines only: nothing to store and no decision to account for.
        if b.source.lines.is_empty() && b.source.rejected == 0 {
            return Ok(Committed {
                first_leaf: None,
                accepted: 0,
                rejected: 0,
                errors: Vec::new(),
                categories: BTreeMap::new(),
                lines_read: b.lines_read,
                spent: None,
            });
        }
        // An erasure between sealing and writing may have destroyed a key
        // the batch used: seal it again under fresh keys (the erased
        // person's data collected now is new data, under new keys), with
        // this process's erasures held off, so only another process's can
        // interfere.
        let mut tries = 0;
        let mut gate = None;
        let first = loop {
            if let Some(r) = run {
                b.batch.run = Some(r.step(
                    *stored,
                    b.lines_read,
                    b.digest,
                    b.accepted,
                    b.source.rejected,
                    &b.categories,
                    &b.source.errors,
                    false,
                    self.clock.now_ms(),
                ));
            }
            let leaf = &b.leaf;
            match store.write(&b.batch, &mut |_, _| leaf.clone().into()) {
                Err(StoreError::Conflict) if tries < 16 => {
                    tries += 1;
                    gate.get_or_insert_with(|| self.erase_gate_shared());
                    // An erasure another process left half done is finished
                    // first.
                    self.finish_pending_erasures()?;
                    b = self.prepare_batch(principal, b.source, b.lines_read, b.digest)?;
                }
                r => break r?,
            }
        };
        drop(gate);
        *stored = b.lines_read;
        Ok(Committed {
            first_leaf: Some(first),
            accepted: b.accepted,
            rejected: b.source.rejected,
            errors: std::mem::take(&mut b.source.errors),
            categories: b.categories,
            lines_read: b.lines_read,
            // Freed by the reader, not on the writer's time.
            spent: Some((b.batch, b.source)),
        })
    }
}
