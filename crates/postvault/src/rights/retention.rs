//! Retention: records past their period are destroyed by destroying the
//! period's key, except where a hold keeps them sealed under the hold's key.

use std::collections::{BTreeSet, HashSet};

use postvault_store::{RecordRow, SubjectRef, key_id};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::vault::{Principal, Vault};

use super::*;

/// How many times a hold seals a person's records again when the hold key
/// they were sealed under was destroyed meanwhile.
const HOLD_SEAL_ATTEMPTS: usize = 4;

impl Vault {
    /// Runs the retention sweep at the clock's time: destroys every period
    /// key whose day has begun (after sealing held people's records of it
    /// again under their own key) and the hold keys of ended holds, then
    /// deletes every expired record not under a hold, in bounded chunks.
    /// Written ahead: an intent leaf names what will be destroyed before
    /// anything is, and the sweep's `retention` leaf completes it (a sweep
    /// with nothing to do writes that leaf alone). A sweep a crash stopped
    /// is finished when the vault next opens. `progress` is called with the
    /// records deleted so far. Then it purges the rows of erased people
    /// ([`Vault::purge_erased`]); a purge that fails is reported in
    /// `purge_error`, after the sweep's own work is done and logged.
    pub fn retention_run(
        &self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RetentionReport, VaultError> {
        let mut report = self.retention_sweep(progress)?;
        // The sweeper also deletes the rows of erased people (their keys
        // are gone already).
        match self.purge_erased(&mut |_| {}) {
            Ok(p) => report.erased_purged = p,
            Err(e) => report.purge_error = Some(e.to_string()),
        }
        Ok(report)
    }

    fn retention_sweep(
        &self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RetentionReport, VaultError> {
        let now = self.clock.now_ms();
        let mut report = RetentionReport {
            at: format_ms(now),
            ..RetentionReport::default()
        };
        let held = self.held_subjects(now)?;
        // Holds released or lapsed: their people's records go back under
        // period keys (or, expired, stay sealed under a destroyed key).
        // And the hold key of a person without keys (erased while a hold
        // was being placed, with a crash before the hold destroyed its
        // key): nothing of theirs can be read, the key must go.
        let mut holds_ending: Vec<SubjectRef> = Vec::new();
        for s in self
            .keys
            .secret_names(HOLD_PREFIX)?
            .iter()
            .filter_map(|n| hold_subject(n))
        {
            if !held.contains(&s) || self.keys.subject_keys(&s)?.is_none() {
                holds_ending.push(s);
            }
        }
        self.drop_orphan_hold_marks()?;
        let due: Vec<String> = self
            .keys
            .secret_names(PERIOD_PREFIX)?
            .into_iter()
            .filter(|n| period_day(n).is_some_and(|d| d * DAY_MS <= now))
            .collect();
        let plan = crate::intents::RetentionBody::new(
            now,
            due,
            &holds_ending,
            self.store.count_expired(now)?,
        );
        if plan.is_empty() {
            // Nothing to destroy: the sweep's one leaf says so.
            let leaf = self.destruction_leaf(
                &self.system_actor("retention-sweeper"),
                "retention",
                now,
                0,
                vec![],
                "periods:0".into(),
                vec!["R22".into()],
            );
            report.log_index = self
                .store
                .append_leaves(1, &mut |_, _| leaf.clone().into())?;
            return Ok(report);
        }
        let _destroying = self.destroying();
        let id = self.retention_intent(&plan)?;
        self.carry_out_retention(&plan, id, &mut report, progress)?;
        report.log_index = self
            .complete(id, &self.system_actor("retention-sweeper"), false)?
            // Another process finished it first (it found the intent open
            // when it opened the vault): its leaf accounts for it.
            .unwrap_or(id);
        Ok(report)
    }

    /// Carries out a retention intent: ends the holds it names, keeps held
    /// people's records of its periods under their hold keys, destroys its
    /// period keys, then deletes what expired at its time, counting the
    /// deletions in the intent. Safe to run again after a crash at any step.
    pub(crate) fn carry_out_retention(
        &self,
        plan: &crate::intents::RetentionBody,
        id: u64,
        report: &mut RetentionReport,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), VaultError> {
        let now = plan.now;
        for s in plan
            .holds_ending
            .iter()
            .filter_map(|h| crate::intents::ref_of(h))
        {
            self.unhold(&s, now)?;
        }
        if !plan.periods.is_empty() {
            let held = self.held_subjects(now)?;
            let due_set: HashSet<&str> = plan.periods.iter().map(String::as_str).collect();
            // Collected for a held person after the hold was placed: kept
            // under their hold key before the period key goes.
            for s in &held {
                report.held_records_kept += self.seal_under_hold(s, &|r| {
                    r.key_id == key_id::PERIOD
                        && due_set.contains(period_secret(&r.category, r.expires_at).as_str())
                })?;
            }
            report.periods_destroyed = self.keys.delete_secrets(&plan.periods)?;
            self.forget_periods(&plan.periods);
        }
        loop {
            let b = self.store.sweep_expired(now, SWEEP_CHUNK, Some(id))?;
            if b.deleted == 0 {
                break;
            }
            report.records_deleted += b.deleted;
            for (c, n) in b.by_category {
                *report.by_category.entry(c).or_default() += n;
            }
            progress(report.records_deleted);
        }
        Ok(())
    }

    /// People under a hold in force at `now`.
    pub(super) fn held_subjects(&self, now: i64) -> Result<BTreeSet<SubjectRef>, VaultError> {
        Ok(self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.active(now))
            .map(|h| h.subject)
            .collect())
    }

    /// [`Vault::retention_run`] on a principal's request (the HTTP
    /// service): a privacy officer only; a refusal is one deny leaf.
    pub fn retention_run_as(
        &self,
        officer: &Principal,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RetentionReport, VaultError> {
        self.require_officer(officer, "run the retention sweep", "retention")?;
        self.retention_run(progress)
    }

    /// Seals the records of `subject` that `pick` selects again under the
    /// subject's hold key (`key_id::HOLD`), so they outlive their periods
    /// and end with the hold; returns how many. Mail-cover records keep
    /// their order's key (the order decides who sees them).
    pub(super) fn seal_under_hold(
        &self,
        subject: &SubjectRef,
        pick: &dyn Fn(&RecordRow) -> bool,
    ) -> Result<u64, VaultError> {
        let cover_category = self.pack.taxonomy().engine().mail_cover_record_category();
        self.seal_under_hold_with(subject, &mut |_, keys| {
            let mut covers = crate::vault::KeyCache::default();
            let mut plain_rows = Vec::new();
            for r in self.store.subject_records(subject)? {
                if !pick(&r)
                    || cover_category == Some(r.category.as_str())
                    || r.key_id == key_id::HOLD
                {
                    continue;
                }
                // A record that does not open (altered, or from a restored
                // copy beside newer keys) is left for the sweep, never a
                // reason to stop it for everyone.
                let Ok(Some(plain)) = self.open_record(&r, Some(keys), &mut covers) else {
                    continue;
                };
                plain_rows.push((r, zeroize::Zeroizing::new(plain)));
            }
            Ok(plain_rows)
        })
    }

    /// [`Vault::seal_under_hold`] of the records `rows` gives, with what
    /// they hold: called once the hold key exists and the sealing's mark
    /// is stored, with the person's keys as the key store has them then
    /// (wrapped, and opened).
    fn seal_under_hold_with(
        &self,
        subject: &SubjectRef,
        rows: &mut RowsToSeal<'_>,
    ) -> Result<u64, VaultError> {
        if self.subject_keys(subject)?.is_none() {
            return Ok(0);
        }
        // Called once the person's hold is stored (or, by the sweep, while
        // it stands): an end of their hold key under way keeps the key.
        self.cancel_hold_ending(subject)?;
        let name = hold_secret(subject);
        self.named_secret(&name, true)?
            .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
        // An erasure running meanwhile (here, or on another node) destroys
        // the person's keys, then the hold keys it finds: a hold key made
        // after it looked would outlive the person. Their keys are read
        // again from the key store, after the hold key exists: if they
        // are gone, so is the hold key (and a crash before that leaves it
        // to the next sweep, which ends the hold key of a person without
        // keys). The keys read are the ones used: a person erased and
        // collected again meanwhile has new ones.
        let Some(stored) = self.keys.subject_keys(subject)? else {
            self.keys.delete_secrets(&[name])?;
            return Ok(0);
        };
        // Kept while this seals: an end of the hold key that looks at the
        // marks after this one is stored keeps the key (and a mark a crash
        // leaves keeps it only for the lease). The key is read again below,
        // after this mark exists: an end that destroyed it before is seen.
        let mut sealing = Sealing::start(self, subject)?;
        // Then any end's mark taken away, unconditionally: an end deciding
        // now holds its mark's row (PostgreSQL) or the store (SQLite), so
        // this waits for it, and the key read next is after its decision;
        // an end deciding later sees the sealing mark.
        self.keys.delete_secret(&hold_ending_secret(subject))?;
        let keys = self.unwrap_pair(Some(&stored), subject)?;
        let plain_rows = rows(&stored, &keys)?;
        // The end of an earlier hold (a sweep, a release, a recovery on
        // another node) may destroy the hold key between its look-up here
        // and the rekey: sealed under a key that is gone, the records
        // would be lost while this hold stands. So the key is read again
        // after the rekey; if it is not the one they were sealed under,
        // they are sealed again under the key there is now (made if
        // none), from what was opened.
        let mut wrapped = self
            .named_secret(&name, true)?
            .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
        for _ in 0..HOLD_SEAL_ATTEMPTS {
            let key = keys
                .data
                .record_key(&self.master.data_key(&wrapped, name.as_bytes())?)?;
            let mut out = Vec::with_capacity(plain_rows.len());
            for (r, plain) in &plain_rows {
                let aad = record_aad_of(r);
                out.push(RecordRow {
                    key_id: key_id::HOLD,
                    sealed: key.seal(&self.rng, &aad, plain)?,
                    ..r.clone()
                });
            }
            // From here until the key is seen unchanged, a failure leaves
            // the sealing mark for its lease: records may be under the key.
            sealing.sealed = true;
            let n = self.store.rekey(&out)?;
            // An end that marked the key before this rekey and has not yet
            // destroyed it keeps it now; one that destroyed it already is
            // seen below.
            self.keys.delete_secret(&hold_ending_secret(subject))?;
            match self.named_secret(&name, false)? {
                Some(now) if now == wrapped => {
                    sealing.sealed = false;
                    sealing.end();
                    return Ok(n);
                }
                _ => {
                    wrapped = self
                        .named_secret(&name, true)?
                        .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
                }
            }
        }
        // Left under a key that is gone, they would be lost: back under
        // the keys they were under.
        let back: Vec<RecordRow> = plain_rows.iter().map(|(r, _)| r.clone()).collect();
        self.store.rekey(&back)?;
        sealing.sealed = false;
        sealing.end();
        Err(VaultError::Refused {
            code: "busy",
            message: "the person's hold key kept being destroyed while their records were sealed \
                      under it; try again"
                .into(),
        })
    }

    /// The end of every hold on `subject` (unless one is in force again):
    /// records not yet expired go back
    /// under their period keys, then the hold key is destroyed, so what
    /// expired during the hold is unreadable in every copy; the sweep
    /// deletes its rows.
    pub(crate) fn unhold(&self, subject: &SubjectRef, now: i64) -> Result<u64, VaultError> {
        // Decided earlier (a sweep's plan, a release, an intent replayed on
        // open): a hold placed since keeps the person held, and their hold
        // key with them. Looked at now, whatever `now` the caller planned
        // with; a person without keys has nothing the key could open.
        if self.keys.subject_keys(subject)?.is_some()
            && self.held_subjects(self.clock.now_ms())?.contains(subject)
        {
            return Ok(0);
        }
        // The key is marked as ending before anything is looked at, and
        // goes at the end only if the mark is still there. A hold writes
        // its row, then takes the mark away before it looks the key up and
        // again after it has sealed under it (see `seal_under_hold`). Each
        // side writes, then reads the other's, so one always sees the
        // other: this end sees the hold in force, or the records the hold
        // sealed (and moves them back, the hold being over), or finds its
        // mark gone and keeps the key; or the hold finds the key gone after
        // sealing and seals again under a new one.
        let mark = hold_ending_secret(subject);
        let ours = postvault_crypto::random_token(&self.rng)?;
        let ours = self.keys.put_secret_or_get(&mark, &ours)?;
        let mut out = Vec::new();
        let mut plains = Vec::new();
        // The person's keys as stored, and used: the records moved back
        // are sealed again below only under these.
        let wrapped = self.keys.subject_keys(subject)?;
        let keys = match &wrapped {
            Some(w) => Some(self.unwrap_pair(Some(w), subject)?),
            None => None,
        };
        if let (Some(keys), Some(hold)) = (keys, self.hold_key(subject, false)?) {
            let held_key = keys.data.record_key(&hold)?;
            for r in self.store.subject_records(subject)? {
                if r.key_id != key_id::HOLD || period_start(r.expires_at) <= now {
                    continue;
                }
                let aad = record_aad_of(&r);
                let Ok(plain) = held_key.open(&aad, &r.sealed) else {
                    continue;
                };
                let plain = zeroize::Zeroizing::new(plain);
                let Some(period) = self.period_key(&r.category, r.expires_at, true)? else {
                    continue;
                };
                let row = RecordRow {
                    key_id: key_id::PERIOD,
                    sealed: keys
                        .data
                        .record_key(&period)?
                        .seal(&self.rng, &aad, &plain)?,
                    ..r
                };
                out.push(row.clone());
                plains.push((row, plain));
            }
        }
        let moved = self.store.rekey(&out)?;
        // Looked at again before the key goes: a hold placed while the
        // records were moved keeps the key, and the records moved back go
        // under it again. A hold seals only what is under a period key as
        // it looks, and a sweep on another node only what is as it looks,
        // before it destroys the period keys: one that looked before the
        // move and destroys a period key after it would leave a record
        // moved back under a key that is gone while the hold stands. So
        // they are sealed again from what was opened here, not from the
        // store, if the person's keys are still the ones used.
        if self.keys.subject_keys(subject)?.is_some()
            && self.held_subjects(self.clock.now_ms())?.contains(subject)
        {
            let mut plains = Some(plains);
            let sealed = self.seal_under_hold_with(subject, &mut |stored, _| {
                Ok(match (&wrapped, plains.take()) {
                    (Some(w), Some(p)) if w == stored => p,
                    _ => Vec::new(),
                })
            });
            // The sealing's failure is the one to report (the mark is
            // taken away by the sealing itself first).
            sealed?;
            self.keys.delete_secret(&mark)?;
            return Ok(moved);
        }
        // A hold sealing under the key now (its mark younger than the
        // lease) keeps it: what it seals may not be among the records moved
        // back above. Older marks are a crash's, destroyed with the key.
        let sealing = hold_sealing_prefix(subject);
        let now = self.clock.now_ms();
        let mut names = vec![hold_secret(subject)];
        for n in self.keys.secret_names(&sealing)? {
            match self.keys.secret(&n)? {
                // Young: stored less than the lease ago (a mark from a
                // clock far ahead is young for a lease past its time only).
                Some(at)
                    if sealing_since(&at).is_some_and(|t| {
                        now.abs_diff(t) < HOLD_SEALING_LEASE_MS.unsigned_abs()
                    }) =>
                {
                    self.keys.delete_secret(&mark)?;
                    return Ok(moved);
                }
                Some(_) => names.push(n),
                None => {}
            }
        }
        // The mark gone, a hold took it; a sealing mark stored meanwhile:
        // the key stays, with what that hold sealed under it. A hold no
        // longer in force by then leaves it to the next sweep, which ends
        // the key of a person not held.
        self.keys
            .delete_secrets_guarded(&mark, &ours, &sealing, &names)?;
        Ok(moved)
    }

    /// Destroys the marks of hold-key ends and sealings (see
    /// [`Vault::unhold`]) that name a person without keys: a crash, or a
    /// hold sealing as the person was erased, can leave one after the
    /// erasure destroyed theirs. They hold no key, but they name the
    /// person's ref, which no erased person's name may outlive past the
    /// next sweep.
    fn drop_orphan_hold_marks(&self) -> Result<(), VaultError> {
        let mut marks = self.keys.secret_names(HOLD_ENDING_PREFIX)?;
        marks.extend(self.keys.secret_names(HOLD_SEALING_PREFIX)?);
        let mut orphans = Vec::new();
        for m in marks {
            let Some(s) = mark_subject(&m) else { continue };
            if self.keys.subject_keys(&s)?.is_none() {
                orphans.push(m);
            }
        }
        if !orphans.is_empty() {
            self.keys.delete_secrets(&orphans)?;
        }
        Ok(())
    }

    /// Takes away the mark of an end of `subject`'s hold key (see
    /// [`Vault::unhold`]), once a hold on them is stored: an end that has
    /// not yet looked at the holds will see it; one that has, and has not
    /// yet destroyed the key, keeps it.
    fn cancel_hold_ending(&self, subject: &SubjectRef) -> Result<(), VaultError> {
        let mark = hold_ending_secret(subject);
        if self.keys.secret(&mark)?.is_some() {
            self.keys.delete_secret(&mark)?;
        }
        Ok(())
    }
}

/// A record with what it holds, about to be sealed again.
type PlainRow = (RecordRow, zeroize::Zeroizing<Vec<u8>>);

/// What a hold seals: given the person's keys (wrapped, and opened), the
/// records with what they hold.
type RowsToSeal<'a> = dyn FnMut(
        &postvault_store::SubjectKeys,
        &crate::vault::SubjectKeyPair,
    ) -> Result<Vec<PlainRow>, VaultError>
    + 'a;

/// A hold's mark on a person's hold key while it seals records under it
/// (`hold-sealing:<ref>:<random>`, the time it was stored): an end of the
/// key that sees it keeps the key (see [`Vault::unhold`]). Taken away when
/// the sealing ends, unless it failed after records may have gone under
/// the key (`sealed`): then it stays for its lease, as a crash leaves it.
struct Sealing<'a> {
    vault: &'a Vault,
    name: String,
    sealed: bool,
}

impl<'a> Sealing<'a> {
    fn start(vault: &'a Vault, subject: &SubjectRef) -> Result<Sealing<'a>, VaultError> {
        let name = format!(
            "{}{}",
            hold_sealing_prefix(subject),
            hex::encode(postvault_crypto::random_token(&vault.rng)?)
        );
        let at = vault.clock.now_ms().to_be_bytes();
        vault.keys.put_secret(&name, &at)?;
        Ok(Sealing {
            vault,
            name,
            sealed: false,
        })
    }

    fn end(self) {}
}

impl Drop for Sealing<'_> {
    fn drop(&mut self) {
        if self.sealed {
            return;
        }
        // A mark that stays (the key store failing) keeps the key from its
        // end for the lease only.
        let _ = self
            .vault
            .keys
            .delete_secrets(std::slice::from_ref(&self.name));
    }
}

/// The person a hold-key end's or sealing's mark names.
fn mark_subject(name: &str) -> Option<SubjectRef> {
    let rest = name
        .strip_prefix(HOLD_ENDING_PREFIX)
        .or_else(|| name.strip_prefix(HOLD_SEALING_PREFIX))?;
    let hex_ref = rest.split(':').next()?;
    hex::decode(hex_ref).ok()?.try_into().ok()
}

/// When a sealing mark was stored; `None` if its value is not a time.
fn sealing_since(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An erasure elsewhere (another node) destroyed a person's keys while
    /// this process still holds them in memory; a hold placed now makes
    /// the person's hold key after the erasure looked for hold keys. The
    /// hold sees the keys gone from the key store and destroys its own.
    #[test]
    fn a_hold_key_made_after_an_erasure_destroyed_the_keys_does_not_outlive_them() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let s = v.subject_ref("cust-race");
        v.ensure_subject_keys(&[s]).unwrap();
        v.keys.delete_subject_keys(&[s]).unwrap();
        assert!(v.subject_keys(&s).unwrap().is_some(), "still in memory");
        assert_eq!(v.seal_under_hold(&s, &|_| true).unwrap(), 0);
        assert!(
            v.keys.secret_names(HOLD_PREFIX).unwrap().is_empty(),
            "no hold key names an erased person"
        );
    }

    /// A hold key left behind for a person without keys (erased as the
    /// hold was placed, and a crash before the hold destroyed its key) is
    /// ended by the next sweep, though the hold itself is still in force.
    #[test]
    fn the_sweep_ends_the_hold_key_of_a_person_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let s = v.subject_ref("cust-orphan");
        v.ensure_subject_keys(&[s]).unwrap();
        let now = v.clock.now_ms();
        v.store()
            .put_holds(
                &[postvault_store::HoldRow {
                    id: "hold-orphan".into(),
                    disclosure: "d-1".into(),
                    subject: s,
                    placed_by: "officer".into(),
                    placed_at: now,
                    until: now + 30 * DAY_MS,
                    ..postvault_store::HoldRow::default()
                }],
                &mut |_, _| b"hold".to_vec().into(),
            )
            .unwrap();
        assert!(v.hold_key(&s, true).unwrap().is_some());
        v.keys.delete_subject_keys(&[s]).unwrap();
        v.retention_run(&mut |_| {}).unwrap();
        assert!(v.keys.secret_names(HOLD_PREFIX).unwrap().is_empty());
    }

    /// Marks of hold-key ends and sealings left for a person without keys
    /// (erased) go at the next sweep; a held person's stay.
    #[test]
    fn the_sweep_destroys_hold_marks_of_people_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let (gone, kept) = (v.subject_ref("cust-gone"), v.subject_ref("cust-kept"));
        v.ensure_subject_keys(&[kept]).unwrap();
        for s in [gone, kept] {
            v.keys.put_secret(&hold_ending_secret(&s), b"x").unwrap();
            v.keys
                .put_secret(&format!("{}00", hold_sealing_prefix(&s)), b"y")
                .unwrap();
        }
        v.retention_run(&mut |_| {}).unwrap();
        let left: Vec<String> = [HOLD_ENDING_PREFIX, HOLD_SEALING_PREFIX]
            .iter()
            .flat_map(|p| v.keys.secret_names(p).unwrap())
            .collect();
        let kept_hex = hex::encode(kept);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().all(|n| n.contains(&kept_hex)), "{left:?}");
    }

    /// A period key destroyed by a sweep in another process is not opened
    /// from this process's cache once its day has begun.
    #[test]
    fn a_period_key_destroyed_elsewhere_is_not_used_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let start = 100 * DAY_MS;
        let clock = std::sync::Arc::new(crate::FixedClock::new(start));
        let v = Vault::init(
            dir.path(),
            crate::OpenOptions {
                clock: clock.clone(),
                ..crate::OpenOptions::default()
            },
        )
        .unwrap();
        let expires = start + 2 * DAY_MS;
        assert!(v.period_key("scan_event", expires, true).unwrap().is_some());
        // Another process's sweep, once the day began: the key is gone.
        clock.advance(2 * DAY_MS);
        v.keys
            .delete_secrets(&[period_secret("scan_event", expires)])
            .unwrap();
        assert!(
            v.period_key("scan_event", expires, false)
                .unwrap()
                .is_none(),
            "the destroyed key is not opened from memory"
        );
        // A key whose day has not begun is kept in memory as before.
        let later = start + 10 * DAY_MS;
        assert!(v.period_key("scan_event", later, true).unwrap().is_some());
        v.keys
            .delete_secrets(&[period_secret("scan_event", later)])
            .unwrap();
        assert!(v.period_key("scan_event", later, false).unwrap().is_some());
    }
}
