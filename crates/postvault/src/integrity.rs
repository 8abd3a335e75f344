//! Keys that should be there and are not: a record whose key is missing is
//! an error, never an empty answer; and `postvault check`, which counts
//! every such record, keys without records, the log's stored tree against
//! its leaves and its kept checkpoints against the tree, and what was left
//! pending.
//!
//! A key may be gone lawfully, and then its records are simply no more:
//! an erased person (rows dead from the erasure's first step and deleted
//! by the purge, keys destroyed after that step), records past retention (their period key destroyed by the
//! sweep, the rows deleted after it, or a hold's key destroyed when it
//! ended, after the records it kept had expired), and a mail-cover order
//! destroyed as improperly ordered. Anything else is a damaged or
//! incomplete key store (a file copy of a running vault, a lost WAL, a
//! flipped byte), and is reported, with counts, never with a person.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use postvault_store::{RecordRow, SubjectRef, key_id};

use crate::error::VaultError;
use crate::vault::{KeyCache, KeyOf, Vault};
use postvault_crypto::DataKey;

/// Why a record cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Every key it needs is there.
    No,
    /// Its key was destroyed lawfully (retention ended, a cover destroyed).
    Lawfully,
    /// A key it needs is missing or damaged: an error.
    Missing,
    /// Its mail-cover order key is missing: lawful only if the order was
    /// destroyed, which the ledger says (checked outside the transaction).
    CoverKey(u32),
}

impl Vault {
    /// Why `r` cannot be opened, if it cannot, at `now`. `subject` is the
    /// subject's data key (`None`: missing or damaged). An error when the key
    /// store did not answer: no key is known gone then.
    pub(crate) fn gone(
        &self,
        r: &RecordRow,
        subject: Option<&DataKey>,
        cache: &mut KeyCache,
        now: i64,
    ) -> Result<Gone, VaultError> {
        // An order seen destroyed: its records are gone lawfully, even in
        // the moment before its key is deleted.
        if (1..=key_id::COVER_MAX).contains(&r.key_id)
            && self.covers_seen_destroyed().contains(&r.key_id)
        {
            return Ok(Gone::Lawfully);
        }
        match self.key_of(KeyOf::of(r), subject, cache, false) {
            Ok(Some(_)) => return Ok(Gone::No),
            // A key that does not unwrap is as good as missing.
            Ok(None) | Err(VaultError::Crypto(_)) => {}
            Err(e) => return Err(e),
        }
        // Rows of an erased person are dead (no read sees them) before their
        // keys go.
        if subject.is_none() {
            return Ok(Gone::Missing);
        }
        let ended = crate::rights::period_start(r.expires_at) <= now;
        Ok(match r.key_id {
            key_id::SUBJECT => Gone::Missing,
            key_id::PERIOD | key_id::HOLD if ended => Gone::Lawfully,
            key_id::PERIOD | key_id::HOLD => Gone::Missing,
            seq => {
                // The period part is checked first: a cover's record also
                // ends with its retention.
                if ended {
                    return Ok(Gone::Lawfully);
                }
                let period = self.period_key(&r.category, r.expires_at, false);
                // The order's key as `key_for` found it, if it looked.
                let cover = match cache.covers.get(&seq) {
                    Some(None) => Ok(None),
                    _ => self.cover_key(u64::from(seq)),
                };
                match (period, cover) {
                    (Ok(Some(_)), Ok(None)) => Gone::CoverKey(seq),
                    (Err(e), _) | (_, Err(e)) if !matches!(e, VaultError::Crypto(_)) => {
                        return Err(e);
                    }
                    _ => Gone::Missing,
                }
            }
        })
    }

    /// Mail-cover orders destroyed as improperly ordered, by order number,
    /// read from the ledger (and kept in [`Vault::covers_seen_destroyed`]).
    pub(crate) fn destroyed_covers(&self) -> Result<HashSet<u32>, VaultError> {
        Ok(self.saw_destroyed_in(&self.store.disclosures()?))
    }

    /// The destroyed orders among ledger rows `rows`, noted as seen.
    pub(crate) fn saw_destroyed_in(&self, rows: &[postvault_store::DisclosureRow]) -> HashSet<u32> {
        let destroyed: HashSet<u32> = rows
            .iter()
            .filter(|d| d.status == crate::gateway::status::DESTROYED)
            .filter_map(|d| u32::try_from(d.seq).ok())
            .collect();
        // Destroyed is final: what was seen stays true.
        let mut seen = self
            .covers_destroyed
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if !destroyed.is_subset(&seen) {
            let mut all = (**seen).clone();
            all.extend(destroyed.iter().copied());
            *seen = Arc::new(all);
        }
        destroyed
    }

    /// The mail-cover orders this process has seen destroyed, without a look
    /// at the ledger: a subset of those destroyed.
    pub(crate) fn covers_seen_destroyed(&self) -> Arc<HashSet<u32>> {
        self.covers_destroyed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notes that this process destroyed order `seq` (its status committed).
    pub(crate) fn saw_cover_destroyed(&self, seq: u32) {
        let mut seen = self
            .covers_destroyed
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&seq) {
            let mut all = (**seen).clone();
            all.insert(seq);
            *seen = Arc::new(all);
        }
    }

    /// Fails with [`VaultError::RecordKeysMissing`] if any of the orders
    /// `covers` (whose keys were found missing) was not destroyed: then
    /// `records` records lost their key unlawfully.
    pub(crate) fn check_cover_keys(&self, covers: &HashMap<u32, u64>) -> Result<(), VaultError> {
        if covers.is_empty() {
            return Ok(());
        }
        let destroyed = self.destroyed_covers()?;
        let records: u64 = covers
            .iter()
            .filter(|(seq, _)| !destroyed.contains(seq))
            .map(|(_, n)| n)
            .sum();
        if records > 0 {
            return Err(VaultError::RecordKeysMissing { records });
        }
        Ok(())
    }
}

/// A count of records and of the keys (or people) they need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub records: u64,
    /// People (subject keys) or keys (period, hold, order keys).
    pub keys: u64,
}

/// The log as `check` found it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogCheck {
    pub leaves: u64,
    /// Leaves the stored tree hashes cover.
    pub hashed: u64,
    /// Stored tree hashes that do not match the leaves, and proof tiles
    /// missing or unlike them (one each).
    pub hash_mismatches: u64,
    pub checkpoints: u64,
    /// Kept checkpoints that do not verify, are larger than the log, or
    /// whose root is not the tree's.
    pub checkpoint_mismatches: u64,
    /// The size of the largest kept checkpoint.
    pub latest_checkpoint: Option<u64>,
    /// Leaves with a subject tag that the leaf index does not hold exactly
    /// once, and filings that point at a leaf without one (each once).
    pub leaf_index_mismatches: u64,
}

/// What `postvault check` found. `ok` is false when anything under
/// `problems` is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub records: u64,
    /// People with records.
    pub subjects: u64,
    /// Records whose person's keys are missing from the key store (`keys`:
    /// people).
    pub records_without_keys: Missing,
    /// People whose keys are in the key store but do not unwrap.
    pub damaged_keys: u64,
    /// Records whose retention period has not begun and whose period key
    /// is missing.
    pub period_keys_missing: Missing,
    /// Records kept by a hold, not expired, whose hold key is missing.
    pub hold_keys_missing: Missing,
    /// Records of a mail-cover order not destroyed whose order key is missing.
    pub cover_keys_missing: Missing,
    /// Lawful: records past retention whose keys are destroyed, their rows
    /// waiting for the next sweep.
    pub past_retention_pending_deletion: u64,
    /// Lawful: records of destroyed mail-cover orders.
    pub destroyed_cover_records: u64,
    /// People holding keys and no record (consent only, or everything
    /// expired): lawful, and counted.
    pub keys_without_records: u64,
    /// Lawful: erased people (keys destroyed) whose dead rows wait for the
    /// purge (the next retention sweep), and those rows.
    pub erased_pending_purge: crate::PurgeReport,
    pub log: LogCheck,
    /// Erasures whose keys are not yet destroyed, and open intents of
    /// destruction (opening the vault finishes both: see `recovered`).
    pub pending_erasures: u64,
    pub pending_intents: u64,
    /// What opening the vault for the check finished.
    pub recovered: crate::intents::Recovered,
    /// Each problem in a sentence, with its count.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Records lack keys they need.
    pub fn keys_missing(&self) -> bool {
        self.records_without_keys.records > 0
            || self.period_keys_missing.records > 0
            || self.hold_keys_missing.records > 0
            || self.cover_keys_missing.records > 0
    }

    /// The log's stored tree or kept checkpoints do not match its leaves.
    pub fn log_mismatch(&self) -> bool {
        self.log.hash_mismatches > 0
            || self.log.checkpoint_mismatches > 0
            || self.log.leaf_index_mismatches > 0
    }
}

const PAGE: usize = 4096;

impl Vault {
    /// `postvault check`: counts records without the keys they need (and
    /// tells the lawful ends of data apart), keys without records, the log's
    /// stored hashes and kept checkpoints against its leaves, and pending
    /// work. Names no person.
    pub fn check(&self) -> Result<CheckReport, VaultError> {
        let now = self.clock.now_ms();
        let mut report = CheckReport {
            recovered: self.recovered(),
            erased_pending_purge: self.purge_pending()?,
            ..CheckReport::default()
        };
        // People: every subject with records needs its keys.
        let mut with_records: HashSet<SubjectRef> = HashSet::new();
        let mut damaged: HashSet<SubjectRef> = HashSet::new();
        let mut after: Option<SubjectRef> = None;
        loop {
            let page = self.store.record_subjects(after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            let refs: Vec<SubjectRef> = page.iter().map(|(s, _)| *s).collect();
            let keys = self.keys.subject_keys_many(&refs)?;
            for ((s, n), k) in page.iter().zip(keys) {
                with_records.insert(*s);
                report.subjects += 1;
                report.records += n;
                match k {
                    None => {
                        report.records_without_keys.records += n;
                        report.records_without_keys.keys += 1;
                    }
                    Some(k) => {
                        let ok = self.master.data_key(&k.data, s).is_ok()
                            && self.master.tag_key(&k.tag, s).is_ok();
                        if !ok {
                            damaged.insert(*s);
                            report.damaged_keys += 1;
                            report.records_without_keys.records += n;
                        }
                    }
                }
            }
        }
        // People holding keys and nothing else.
        let mut after: Option<SubjectRef> = None;
        loop {
            let page = self.keys.subject_refs(after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            report.keys_without_records +=
                page.iter().filter(|s| !with_records.contains(*s)).count() as u64;
        }
        // The keys records are sealed under, by (key id, category, expiry).
        let periods: BTreeSet<String> = self
            .keys
            .secret_names(crate::rights::PERIOD_PREFIX)?
            .into_iter()
            .collect();
        let holds: BTreeSet<String> = self
            .keys
            .secret_names(crate::rights::HOLD_PREFIX)?
            .into_iter()
            .collect();
        let covers: BTreeSet<String> = self.keys.secret_names("cover:")?.into_iter().collect();
        let destroyed = self.destroyed_covers()?;
        let mut missing_periods = BTreeSet::new();
        let mut missing_covers = BTreeSet::new();
        for u in self.store.key_usage()? {
            let ended = crate::rights::period_start(u.expires_at) <= now;
            let period = crate::rights::period_secret(&u.category, u.expires_at);
            match u.key_id {
                key_id::SUBJECT => {}
                key_id::PERIOD => {
                    if periods.contains(&period) {
                    } else if ended {
                        report.past_retention_pending_deletion += u.records;
                    } else {
                        report.period_keys_missing.records += u.records;
                        missing_periods.insert(period);
                    }
                }
                key_id::HOLD => {
                    let name = u
                        .subject
                        .as_ref()
                        .map(crate::rights::hold_secret)
                        .unwrap_or_default();
                    if holds.contains(&name) {
                    } else if ended {
                        report.past_retention_pending_deletion += u.records;
                    } else {
                        report.hold_keys_missing.records += u.records;
                        report.hold_keys_missing.keys += 1;
                    }
                }
                seq => {
                    let name = crate::gateway::cover_secret(u64::from(seq));
                    if destroyed.contains(&seq) {
                        report.destroyed_cover_records += u.records;
                    } else if ended && !periods.contains(&period) {
                        report.past_retention_pending_deletion += u.records;
                    } else if !covers.contains(&name) {
                        report.cover_keys_missing.records += u.records;
                        missing_covers.insert(name);
                    } else if !periods.contains(&period) {
                        report.period_keys_missing.records += u.records;
                        missing_periods.insert(period);
                    }
                }
            }
        }
        report.period_keys_missing.keys = missing_periods.len() as u64;
        report.cover_keys_missing.keys = missing_covers.len() as u64;
        report.log = self.check_log()?;
        report.pending_erasures = self.store.pending_erasures()?.len() as u64;
        report.pending_intents = self.store.intents()?.len() as u64;
        // The log's anti-rollback state kept with the key store (its last
        // signed checkpoint) is compared with this data store's tree here,
        // once the key store keeps it; until then the kept checkpoints
        // above are checked against the tree.
        let r = &report;
        let mut problems = Vec::new();
        if r.records_without_keys.records > 0 {
            problems.push(format!(
                "{} records of {} people have no usable keys in the key store ({} people's keys damaged)",
                r.records_without_keys.records,
                r.records_without_keys.keys + r.damaged_keys,
                r.damaged_keys
            ));
        }
        if r.period_keys_missing.records > 0 {
            problems.push(format!(
                "{} records not past retention have lost their period keys ({} keys)",
                r.period_keys_missing.records, r.period_keys_missing.keys
            ));
        }
        if r.hold_keys_missing.records > 0 {
            problems.push(format!(
                "{} records kept by holds have lost their hold keys ({} keys)",
                r.hold_keys_missing.records, r.hold_keys_missing.keys
            ));
        }
        if r.cover_keys_missing.records > 0 {
            problems.push(format!(
                "{} records of mail-cover orders not destroyed have lost their order keys ({} keys)",
                r.cover_keys_missing.records, r.cover_keys_missing.keys
            ));
        }
        if r.log.hash_mismatches > 0 {
            problems.push(format!(
                "{} stored tree hashes or proof tiles do not match the log's leaves",
                r.log.hash_mismatches
            ));
        }
        if r.log.checkpoint_mismatches > 0 {
            problems.push(format!(
                "{} kept checkpoints do not match the tree of the log's leaves",
                r.log.checkpoint_mismatches
            ));
        }
        if r.log.leaf_index_mismatches > 0 {
            problems.push(format!(
                "{} tagged leaves are not filed exactly once in the leaf index, or filings point at untagged leaves: a person's report could miss leaves (`postvault log find --scan` does not)",
                r.log.leaf_index_mismatches
            ));
        }
        if r.pending_erasures > 0 || r.pending_intents > 0 {
            problems.push(format!(
                "{} erasures and {} intents of destruction are still pending",
                r.pending_erasures, r.pending_intents
            ));
        }
        report.ok = problems.is_empty();
        report.problems = problems;
        Ok(report)
    }
}
