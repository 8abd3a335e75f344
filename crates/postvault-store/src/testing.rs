//! A fault-injecting wrapper around any store, for tests (feature
//! `test-util`). [`Faulty`] forwards every call of the store traits, and of
//! [`KeyStore`], to the store it wraps; the test's [`Faults`] decides which
//! calls fail, which run a hook first and which replay their callbacks as a
//! retrying backend does, and counts the records the wrapped store handed
//! over. A test keeps the `Arc<Faults>` and may change the faults while the
//! wrapper is in use.
//!
//! An injected failure is an IO error naming the call (`injected failure in
//! `erase``). Where the callbacks carry the outcome, the call fails the way a
//! transaction that dies at its end does: `read_scoped` and
//! `disclosure_step` run their callbacks on empty data and then fail (the
//! decision was made, its commit failed: nothing may be returned), and
//! `rewrap` runs for real and fails on the third key offered (a rotation
//! killed midway must change nothing). Every other call fails before it
//! reaches the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::{
    AccountingRow, BudgetLeafFn, BudgetOutcome, BudgetRow, BudgetSpend, ConsentRow, DisclosureKeys,
    DisclosureRow, EraseIntentFn, EraseLeafFn, EraseOutcome, HoldRow, Intent, IntentRow, KeyStore,
    KeyUse, LeafFn, LedgerStore, LogState, LogStateSwap, LogStore, OpsStore, PlanFn,
    PrincipalChange, PrincipalRow, PrincipalStore, PurgeBatch, ReadLeafFn, ReadScope, RecordRow,
    RecordStore, RewrapCount, RewrapFn, RightsStore, RunRow, RunStep, StatsStore, StepFn,
    StoreError, SubjectData, SubjectKeys, SubjectRef, SubmitFn, SubmitQuery, SweepBatch,
    WriteBatch,
};

/// The calls [`Faults`] can name: every method of the store traits and of
/// [`KeyStore`] that a backend implements.
pub const METHODS: &[&str] = &[
    // RecordStore
    "write",
    "read_scoped",
    "read_unlogged",
    "consent",
    "lookup",
    "record_count",
    // LogStore
    "log_size",
    "leaves",
    "log_hashes",
    "refile_leaves",
    "hashed_size",
    "put_log_hashes",
    "log_tiled_from",
    "log_tile_hashes",
    "log_tiles",
    "put_checkpoint",
    "checkpoints",
    "latest_checkpoint",
    "checkpoint_note",
    "put_cosignatures",
    "cosignatures",
    "latest_cosigned",
    "cosigned_by",
    // LedgerStore
    "submit_disclosure",
    "disclosure_step",
    "set_disclosure_keys",
    "disclosure",
    "disclosures",
    "accounting",
    // RightsStore
    "subject_records",
    "rekey",
    "sweep_expired",
    "count_expired",
    "erase",
    "pending_erasures",
    "finish_erasure",
    "finish_erasure_with",
    // The purge step of `finish_erasure_with` (a purge alone is
    // `purge_subjects`).
    "finish_purge",
    "purge_erased",
    "purge_subjects",
    "purge_pending",
    "erasure_gen",
    "put_holds",
    "holds",
    "release_hold",
    // PrincipalStore
    "add_principal",
    "principal",
    "principals",
    "principal_by_token",
    "revoke_principal",
    "rotate_principal",
    "principals_gen",
    // OpsStore
    "run",
    "finish_run",
    "put_intent",
    "intents",
    "finish_intent",
    "key_usage",
    "record_subjects",
    "meta",
    "set_meta",
    // StatsStore
    "category_records",
    "build_scan_blocks",
    "scan_tail",
    "spend_budget",
    "budgets",
    // KeyStore
    "log_state",
    "swap_log_state",
    "put_subject_keys",
    "subject_keys",
    "subject_keys_many",
    "secret",
    "put_secret",
    "delete_secret",
    "put_secret_or_get",
    "secret_names",
    "delete_secrets",
    "delete_subject_keys",
    "delete_subject_keys_as",
    "delete_secrets_guarded",
    "subject_refs",
    "rewrap",
];

/// The calls whose callbacks [`Faults::retry`] can replay.
const RETRYABLE: &[&str] = &["erase", "disclosure_step"];

/// When a rule applies.
enum When {
    /// Once this many calls of the rule's methods went through, to every
    /// later one.
    After(AtomicI64),
    /// While the switch is on.
    While(Arc<AtomicBool>),
    /// To the first this many calls of the rule's methods.
    First(AtomicI64),
    /// Always.
    Always,
}

/// What a rule does to a call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Fail,
    Retry,
}

struct Rule {
    methods: Vec<&'static str>,
    when: When,
    fault: Fault,
}

type Hook = Box<dyn FnOnce() + Send>;

/// What a [`Faulty`] store does besides forwarding: rules that fail or
/// replay calls, hooks run once before a call, and a count of the records
/// handed over.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    hooks: Mutex<HashMap<&'static str, Hook>>,
    records: AtomicU64,
    /// Reads go outside the log's lock whenever the store has such reads.
    unlogged: AtomicBool,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("records", &self.records())
            .finish_non_exhaustive()
    }
}

/// How a call goes, as the rules decide it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Pass,
    Retry,
}

fn known(methods: &[&'static str]) -> Vec<&'static str> {
    for m in methods {
        assert!(METHODS.contains(m), "no store method `{m}` to inject into");
    }
    methods.to_vec()
}

/// The error of an injected failure.
pub fn injected(method: &str) -> StoreError {
    StoreError::Io {
        path: "injected".into(),
        source: std::io::Error::other(format!("injected failure in `{method}`")),
    }
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults::default())
    }

    /// Makes every read go outside the log's lock where the store has such
    /// reads ([`RecordStore::read_unlogged`]), as under contention.
    pub fn read_unlogged_always(&self) -> &Self {
        self.unlogged.store(true, Ordering::SeqCst);
        self
    }

    fn add(&self, methods: &[&'static str], when: When, fault: Fault) -> &Self {
        let methods = known(methods);
        self.rules.lock().unwrap().push(Rule {
            methods,
            when,
            fault,
        });
        self
    }

    /// Lets `ok` calls of `methods` (counted together) through, then fails
    /// every later one.
    pub fn fail_after(&self, ok: i64, methods: &[&'static str]) -> &Self {
        self.add(methods, When::After(AtomicI64::new(ok)), Fault::Fail)
    }

    /// Fails the first `n` calls of `methods` (counted together), then lets
    /// every later one through: a store that answers again.
    pub fn fail_first(&self, n: i64, methods: &[&'static str]) -> &Self {
        self.add(methods, When::First(AtomicI64::new(n)), Fault::Fail)
    }

    /// Fails every call of `methods` while `switch` is on.
    pub fn fail_while(&self, switch: &Arc<AtomicBool>, methods: &[&'static str]) -> &Self {
        self.add(methods, When::While(switch.clone()), Fault::Fail)
    }

    /// Runs the callbacks of every call of `methods` once on a throwaway
    /// attempt (at leaf indexes from 1,000,000, which the real attempt will
    /// not have) before the real call: a backend retrying a transaction the
    /// database refused.
    pub fn retry(&self, methods: &[&'static str]) -> &Self {
        for m in methods {
            assert!(RETRYABLE.contains(m), "`{m}` has no retry to replay");
        }
        self.add(methods, When::Always, Fault::Retry)
    }

    /// Runs `hook` once, just before the next call of `method` (another node
    /// acting in between).
    pub fn before(&self, method: &'static str, hook: impl FnOnce() + Send + 'static) -> &Self {
        let [method] = known(&[method])[..] else {
            unreachable!()
        };
        self.hooks.lock().unwrap().insert(method, Box::new(hook));
        self
    }

    /// Records of people the wrapped store handed over so far: by reads
    /// (`read_scoped`, `read_accounted`), disclosure steps,
    /// `subject_records` and `category_records`.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::SeqCst)
    }

    fn handed(&self, data: &[SubjectData]) {
        let n: usize = data.iter().map(|d| d.records.len()).sum();
        self.records.fetch_add(n as u64, Ordering::SeqCst);
    }

    /// Runs the call's hook and applies its rules: every rule naming the
    /// method counts the call, and the first that fires decides it.
    fn enter(&self, method: &'static str) -> Result<Entry, StoreError> {
        let hook = self.hooks.lock().unwrap().remove(method);
        if let Some(hook) = hook {
            hook();
        }
        let rules = self.rules.lock().unwrap();
        let mut entry = Ok(Entry::Pass);
        for r in rules.iter().filter(|r| r.methods.contains(&method)) {
            let fires = match &r.when {
                When::After(left) => left.fetch_sub(1, Ordering::SeqCst) <= 0,
                When::While(switch) => switch.load(Ordering::SeqCst),
                When::First(left) => left.fetch_sub(1, Ordering::SeqCst) > 0,
                When::Always => true,
            };
            if fires && entry.as_ref().is_ok_and(|e| *e == Entry::Pass) {
                entry = match r.fault {
                    Fault::Fail => Err(injected(method)),
                    Fault::Retry => Ok(Entry::Retry),
                };
            }
        }
        entry
    }
}

/// A store (or key store) whose calls go through [`Faults`] first.
pub struct Faulty<S> {
    inner: S,
    faults: Arc<Faults>,
}

impl<S> std::fmt::Debug for Faulty<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<S> Faulty<S> {
    pub fn new(inner: S, faults: &Arc<Faults>) -> Faulty<S> {
        Faulty {
            inner,
            faults: faults.clone(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn enter(&self, method: &'static str) -> Result<Entry, StoreError> {
        self.faults.enter(method)
    }

    /// Counts records the wrapped store handed over (see [`Faults::records`]).
    fn handed_rows(&self, rows: Vec<RecordRow>) -> Vec<RecordRow> {
        self.faults
            .records
            .fetch_add(rows.len() as u64, Ordering::SeqCst);
        rows
    }
}

impl<S: RecordStore> RecordStore for Faulty<S> {
    fn write(&self, batch: &WriteBatch, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.enter("write")?;
        self.inner.write(batch, leaf)
    }

    fn read_scoped(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut ReadLeafFn<'_>,
    ) -> Result<(SubjectData, u64), StoreError> {
        if let Err(e) = self.enter("read_scoped") {
            let _ = leaf(&SubjectData::default(), 0);
            return Err(e);
        }
        let out = self.inner.read_scoped(subject, scope, leaf)?;
        self.faults.handed(std::slice::from_ref(&out.0));
        Ok(out)
    }

    fn read_unlogged(
        &self,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
    ) -> Result<Option<crate::UnloggedRead>, StoreError> {
        self.enter("read_unlogged")?;
        let out = self.inner.read_unlogged(subject, scope)?;
        if let Some((data, _)) = &out {
            self.faults.handed(std::slice::from_ref(data));
        }
        Ok(out)
    }

    fn reads_carry_erasure_gen(&self) -> bool {
        self.inner.reads_carry_erasure_gen()
    }

    fn unlogged_reads_pay(&self) -> bool {
        self.faults.unlogged.load(Ordering::SeqCst) || self.inner.unlogged_reads_pay()
    }

    /// The read's commit, as [`RecordStore::read_scoped`]'s is: faults
    /// naming `read_scoped` fail it (the leaf built first, as there).
    fn append_read_leaf(
        &self,
        stamp: u64,
        subject: &SubjectRef,
        scope: ReadScope<'_>,
        leaf: &mut crate::CheckedLeafFn<'_>,
    ) -> Result<(Option<SubjectData>, u64), StoreError> {
        if let Err(e) = self.enter("read_scoped") {
            let _ = leaf(None, 0);
            return Err(e);
        }
        let out = self.inner.append_read_leaf(stamp, subject, scope, leaf)?;
        if let Some(data) = &out.0 {
            self.faults.handed(std::slice::from_ref(data));
        }
        Ok(out)
    }

    fn consent(
        &self,
        subject: &SubjectRef,
        purpose: &str,
    ) -> Result<Option<ConsentRow>, StoreError> {
        self.enter("consent")?;
        self.inner.consent(subject, purpose)
    }

    fn lookup(&self, token: &[u8; 16]) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("lookup")?;
        self.inner.lookup(token)
    }

    fn record_count(&self) -> Result<u64, StoreError> {
        self.enter("record_count")?;
        self.inner.record_count()
    }
}

impl<S: LogStore> LogStore for Faulty<S> {
    fn log_size(&self) -> Result<u64, StoreError> {
        self.enter("log_size")?;
        self.inner.log_size()
    }

    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.enter("leaves")?;
        self.inner.leaves(start, end)
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        self.enter("log_hashes")?;
        self.inner.log_hashes(indexes)
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        self.enter("hashed_size")?;
        self.inner.hashed_size()
    }

    fn put_log_hashes(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
        tiles: &[(u64, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        self.enter("put_log_hashes")?;
        self.inner.put_log_hashes(from, to, hashes, tiles)
    }

    fn log_tiled_from(&self) -> Result<u64, StoreError> {
        self.enter("log_tiled_from")?;
        self.inner.log_tiled_from()
    }

    fn leaves_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.enter("leaves_at")?;
        self.inner.leaves_at(indexes)
    }

    fn leaf_indexed_from(&self) -> Result<u64, StoreError> {
        self.enter("leaf_indexed_from")?;
        self.inner.leaf_indexed_from()
    }

    fn leaf_index_months(&self) -> Result<Vec<u32>, StoreError> {
        self.enter("leaf_index_months")?;
        self.inner.leaf_index_months()
    }

    fn leaf_index_find(&self, tokens: &[[u8; 16]]) -> Result<Vec<Option<u64>>, StoreError> {
        self.enter("leaf_index_find")?;
        self.inner.leaf_index_find(tokens)
    }

    fn leaf_index_page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<crate::LeafIndexRow>, StoreError> {
        self.enter("leaf_index_page")?;
        self.inner.leaf_index_page(after, limit)
    }

    fn refile_leaves(
        &self,
        tokens: &Arc<dyn crate::LeafTokens>,
        plan: &crate::RefilePlan,
        tail: &mut dyn FnMut(u64, &[u8]) -> Option<u32>,
    ) -> Result<crate::Refiled, StoreError> {
        self.enter("refile_leaves")?;
        self.inner.refile_leaves(tokens, plan, tail)
    }

    fn log_tile_hashes(&self, wanted: &[(u64, usize)]) -> Result<Vec<[u8; 32]>, StoreError> {
        self.enter("log_tile_hashes")?;
        self.inner.log_tile_hashes(wanted)
    }

    fn log_tiles(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.enter("log_tiles")?;
        self.inner.log_tiles(start, end)
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.enter("put_checkpoint")?;
        self.inner.put_checkpoint(size, note)
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.enter("checkpoints")?;
        self.inner.checkpoints()
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.enter("latest_checkpoint")?;
        self.inner.latest_checkpoint()
    }

    fn checkpoint_note(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.enter("checkpoint_note")?;
        self.inner.checkpoint_note(size)
    }

    fn put_cosignatures(&self, size: u64, lines: &[(String, String)]) -> Result<(), StoreError> {
        self.enter("put_cosignatures")?;
        self.inner.put_cosignatures(size, lines)
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.enter("cosignatures")?;
        self.inner.cosignatures(size)
    }

    fn latest_cosigned(
        &self,
        cosigners: &[String],
        quorum: usize,
    ) -> Result<Option<u64>, StoreError> {
        self.enter("latest_cosigned")?;
        self.inner.latest_cosigned(cosigners, quorum)
    }

    fn cosigned_by(&self, cosigner: &str) -> Result<Option<u64>, StoreError> {
        self.enter("cosigned_by")?;
        self.inner.cosigned_by(cosigner)
    }
}

impl<S: LedgerStore + RightsStore> LedgerStore for Faulty<S> {
    fn submit_disclosure(
        &self,
        q: &SubmitQuery,
        decide: &mut SubmitFn<'_>,
    ) -> Result<(DisclosureRow, u64), StoreError> {
        self.enter("submit_disclosure")?;
        self.inner.submit_disclosure(q, decide)
    }

    fn disclosure_step(
        &self,
        id: &str,
        plan: &mut PlanFn<'_>,
        step: &mut StepFn<'_>,
    ) -> Result<(Vec<SubjectData>, u64), StoreError> {
        let entry = match self.enter("disclosure_step") {
            Ok(entry) => entry,
            Err(e) => {
                let row = self.inner.disclosure(id)?;
                let subjects = plan(row.as_ref());
                let data = vec![SubjectData::default(); subjects.len()];
                let _ = step(row.as_ref(), &data, 0);
                return Err(e);
            }
        };
        if entry == Entry::Retry {
            // A throwaway attempt on the request as stored, each person's
            // records as `subject_records` has them.
            let row = self.inner.disclosure(id)?;
            let data = plan(row.as_ref())
                .iter()
                .map(|s| {
                    Ok(SubjectData {
                        records: self.inner.subject_records(s)?,
                        exists: true,
                        ..SubjectData::default()
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let _ = step(row.as_ref(), &data, 1_000_000);
        }
        let out = self.inner.disclosure_step(id, plan, step)?;
        self.faults.handed(&out.0);
        Ok(out)
    }

    fn set_disclosure_keys(&self, keys: &[DisclosureKeys]) -> Result<(), StoreError> {
        self.enter("set_disclosure_keys")?;
        self.inner.set_disclosure_keys(keys)
    }

    fn disclosure(&self, id: &str) -> Result<Option<DisclosureRow>, StoreError> {
        self.enter("disclosure")?;
        self.inner.disclosure(id)
    }

    fn disclosures(&self) -> Result<Vec<DisclosureRow>, StoreError> {
        self.enter("disclosures")?;
        self.inner.disclosures()
    }

    fn accounting(&self, subject: &SubjectRef) -> Result<Vec<AccountingRow>, StoreError> {
        self.enter("accounting")?;
        self.inner.accounting(subject)
    }
}

impl<S: RightsStore> RightsStore for Faulty<S> {
    fn subject_records(&self, subject: &SubjectRef) -> Result<Vec<RecordRow>, StoreError> {
        self.enter("subject_records")?;
        Ok(self.handed_rows(self.inner.subject_records(subject)?))
    }

    fn subject_records_committed(
        &self,
        subject: &SubjectRef,
    ) -> Result<Vec<RecordRow>, StoreError> {
        self.enter("subject_records")?;
        Ok(self.handed_rows(self.inner.subject_records_committed(subject)?))
    }

    fn rekey(&self, records: &[RecordRow]) -> Result<u64, StoreError> {
        self.enter("rekey")?;
        self.inner.rekey(records)
    }

    fn sweep_expired(
        &self,
        now: i64,
        limit: usize,
        intent: Option<u64>,
    ) -> Result<SweepBatch, StoreError> {
        self.enter("sweep_expired")?;
        self.inner.sweep_expired(now, limit, intent)
    }

    fn count_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.enter("count_expired")?;
        self.inner.count_expired(now)
    }

    fn erase(
        &self,
        subjects: &[SubjectRef],
        now: i64,
        leaf: &mut EraseLeafFn<'_>,
        intent: &mut EraseIntentFn<'_>,
    ) -> Result<EraseOutcome, StoreError> {
        if self.enter("erase")? == Entry::Retry {
            for (i, s) in subjects.iter().enumerate() {
                let _ = leaf(1_000_000 + i as u64, s, crate::Held::No);
            }
        }
        self.inner.erase(subjects, now, leaf, intent)
    }

    fn pending_erasures(&self) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("pending_erasures")?;
        self.inner.pending_erasures()
    }

    fn finish_erasure(&self, subjects: &[SubjectRef]) -> Result<(), StoreError> {
        self.enter("finish_erasure")?;
        self.inner.finish_erasure(subjects)
    }

    fn finish_erasure_with(
        &self,
        subjects: &[SubjectRef],
        intent: Option<u64>,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
        purge: &[SubjectRef],
        purge_max: u64,
    ) -> Result<crate::ErasureFinish, StoreError> {
        // The steps it joins fail as they would alone; its purge is
        // `finish_purge` (a purge in a transaction of its own is
        // `purge_subjects`), so a test can tell which ran.
        self.enter("finish_erasure_with")?;
        self.enter("finish_erasure")?;
        if intent.is_some() {
            self.enter("finish_intent")?;
        }
        if !purge.is_empty() {
            self.enter("finish_purge")?;
        }
        self.inner
            .finish_erasure_with(subjects, intent, leaf, purge, purge_max)
    }

    fn purge_erased(&self, limit: usize) -> Result<PurgeBatch, StoreError> {
        self.enter("purge_erased")?;
        self.inner.purge_erased(limit)
    }

    fn purge_subjects(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        self.enter("purge_subjects")?;
        self.inner.purge_subjects(subjects)
    }

    fn purge_pending(&self) -> Result<PurgeBatch, StoreError> {
        self.enter("purge_pending")?;
        self.inner.purge_pending()
    }

    fn erasure_gen(&self) -> Result<u64, StoreError> {
        self.enter("erasure_gen")?;
        self.inner.erasure_gen()
    }

    fn put_holds(&self, holds: &[HoldRow], leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.enter("put_holds")?;
        self.inner.put_holds(holds, leaf)
    }

    fn holds(&self, subject: Option<&SubjectRef>) -> Result<Vec<HoldRow>, StoreError> {
        self.enter("holds")?;
        self.inner.holds(subject)
    }

    fn release_hold(
        &self,
        id: &str,
        by: &str,
        at: i64,
        leaf: &mut dyn FnMut(u64, &HoldRow) -> crate::Leaf,
    ) -> Result<Vec<HoldRow>, StoreError> {
        self.enter("release_hold")?;
        self.inner.release_hold(id, by, at, leaf)
    }
}

impl<S: PrincipalStore> PrincipalStore for Faulty<S> {
    fn add_principal(&self, p: &PrincipalRow) -> Result<(), StoreError> {
        self.enter("add_principal")?;
        self.inner.add_principal(p)
    }

    fn principal(&self, name: &str) -> Result<Option<PrincipalRow>, StoreError> {
        self.enter("principal")?;
        self.inner.principal(name)
    }

    fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        self.enter("principals")?;
        self.inner.principals()
    }

    fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<PrincipalRow>, StoreError> {
        self.enter("principal_by_token")?;
        self.inner.principal_by_token(token_hash)
    }

    fn change_principal(
        &self,
        name: &str,
        change: PrincipalChange<'_>,
        leaf: &mut LeafFn<'_>,
    ) -> Result<u64, StoreError> {
        self.enter(change.name())?;
        self.inner.change_principal(name, change, leaf)
    }

    fn principals_gen(&self) -> Result<u64, StoreError> {
        self.enter("principals_gen")?;
        self.inner.principals_gen()
    }
}

impl<S: OpsStore> OpsStore for Faulty<S> {
    fn run(&self, run: &[u8; 16]) -> Result<Option<RunRow>, StoreError> {
        self.enter("run")?;
        self.inner.run(run)
    }

    fn finish_run(&self, step: &RunStep) -> Result<(), StoreError> {
        self.enter("finish_run")?;
        self.inner.finish_run(step)
    }

    fn put_intent(&self, intent: &Intent, leaf: &mut LeafFn<'_>) -> Result<u64, StoreError> {
        self.enter("put_intent")?;
        self.inner.put_intent(intent, leaf)
    }

    fn intents(&self) -> Result<Vec<IntentRow>, StoreError> {
        self.enter("intents")?;
        self.inner.intents()
    }

    fn finish_intent(
        &self,
        id: u64,
        leaf: &mut dyn FnMut(u64, &IntentRow) -> Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        self.enter("finish_intent")?;
        self.inner.finish_intent(id, leaf)
    }

    fn key_usage(&self) -> Result<Vec<KeyUse>, StoreError> {
        self.enter("key_usage")?;
        self.inner.key_usage()
    }

    fn record_subjects(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<(SubjectRef, u64)>, StoreError> {
        self.enter("record_subjects")?;
        self.inner.record_subjects(after, limit)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.enter("meta")?;
        self.inner.meta(key)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.enter("set_meta")?;
        self.inner.set_meta(key, value)
    }
}

impl<S: StatsStore> StatsStore for Faulty<S> {
    fn category_records(
        &self,
        category: &str,
        now: i64,
        after: Option<&crate::ScanPos>,
        until: Option<&SubjectRef>,
        limit: usize,
        consented: Option<&str>,
    ) -> Result<crate::ScanPage, StoreError> {
        self.enter("category_records")?;
        let page = self
            .inner
            .category_records(category, now, after, until, limit, consented)?;
        Ok(crate::ScanPage {
            rows: self.handed_rows(page.rows),
            ..page
        })
    }

    fn category_records_into(
        &self,
        ask: &crate::ScanAsk<'_>,
        page: &mut crate::ScanPage,
    ) -> Result<(), StoreError> {
        self.enter("category_records")?;
        self.inner.category_records_into(ask, page)?;
        self.faults
            .records
            .fetch_add(page.rows.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn build_scan_blocks(
        &self,
        category: &str,
        now: i64,
        after: Option<&SubjectRef>,
        build: i64,
        people: usize,
        tag: &str,
        make: &mut crate::BlockMakeFn<'_>,
    ) -> Result<Option<crate::BlockStep>, StoreError> {
        self.enter("build_scan_blocks")?;
        self.inner
            .build_scan_blocks(category, now, after, build, people, tag, make)
    }

    fn scan_tail(&self, category: &str) -> Result<Option<Vec<SubjectRef>>, StoreError> {
        self.enter("scan_tail")?;
        self.inner.scan_tail(category)
    }

    fn spend_budget(
        &self,
        spend: &BudgetSpend,
        leaf: &mut BudgetLeafFn<'_>,
    ) -> Result<(BudgetOutcome, u64), StoreError> {
        self.enter("spend_budget")?;
        self.inner.spend_budget(spend, leaf)
    }

    fn budgets(&self) -> Result<Vec<BudgetRow>, StoreError> {
        self.enter("budgets")?;
        self.inner.budgets()
    }
}

impl<S: KeyStore> KeyStore for Faulty<S> {
    fn log_state(&self) -> Result<Option<LogState>, StoreError> {
        self.enter("log_state")?;
        self.inner.log_state()
    }

    fn swap_log_state(
        &self,
        expected: Option<&LogState>,
        new: &LogState,
    ) -> Result<LogStateSwap, StoreError> {
        self.enter("swap_log_state")?;
        self.inner.swap_log_state(expected, new)
    }

    fn put_subject_keys(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("put_subject_keys")?;
        self.inner.put_subject_keys(keys)
    }

    fn subject_keys(&self, subject: &SubjectRef) -> Result<Option<SubjectKeys>, StoreError> {
        self.enter("subject_keys")?;
        self.inner.subject_keys(subject)
    }

    fn subject_keys_many(
        &self,
        subjects: &[SubjectRef],
    ) -> Result<Vec<Option<SubjectKeys>>, StoreError> {
        self.enter("subject_keys_many")?;
        self.inner.subject_keys_many(subjects)
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.enter("secret")?;
        self.inner.secret(name)
    }

    fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.enter("put_secret")?;
        self.inner.put_secret(name, value)
    }

    fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        self.enter("delete_secret")?;
        self.inner.delete_secret(name)
    }

    fn put_secret_or_get(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.enter("put_secret_or_get")?;
        self.inner.put_secret_or_get(name, value)
    }

    fn secret_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.enter("secret_names")?;
        self.inner.secret_names(prefix)
    }

    fn delete_secrets(&self, names: &[String]) -> Result<u64, StoreError> {
        self.enter("delete_secrets")?;
        self.inner.delete_secrets(names)
    }

    fn delete_secrets_guarded(
        &self,
        guard: &str,
        value: &[u8],
        unless_prefix: &str,
        names: &[String],
    ) -> Result<bool, StoreError> {
        self.enter("delete_secrets_guarded")?;
        self.inner
            .delete_secrets_guarded(guard, value, unless_prefix, names)
    }

    fn delete_subject_keys(&self, subjects: &[SubjectRef]) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("delete_subject_keys")?;
        self.inner.delete_subject_keys(subjects)
    }

    fn delete_subject_keys_as(&self, keys: &[SubjectKeys]) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("delete_subject_keys_as")?;
        self.inner.delete_subject_keys_as(keys)
    }

    fn subject_refs(
        &self,
        after: Option<&SubjectRef>,
        limit: usize,
    ) -> Result<Vec<SubjectRef>, StoreError> {
        self.enter("subject_refs")?;
        self.inner.subject_refs(after, limit)
    }

    fn rewrap(
        &self,
        f: &mut RewrapFn<'_>,
        insert: &[(String, Vec<u8>)],
    ) -> Result<RewrapCount, StoreError> {
        let Err(e) = self.enter("rewrap") else {
            return self.inner.rewrap(f, insert);
        };
        let mut offered = 0;
        let mut failure = Some(e);
        self.inner.rewrap(
            &mut |item| {
                offered += 1;
                if offered > 2 {
                    return Err(failure.take().unwrap_or_else(|| injected("rewrap")));
                }
                f(item)
            },
            insert,
        )
    }
}
