//! Retention, erasure and legal holds: data is gone when its retention ends
//! or the person's erasure is granted, gone for real.
//!
//! ```text
//! record key = HMAC(period key, subject data key)      (key_id::PERIOD)
//! period key = one per (category, UTC day of expiry), in the key store
//! ```
//!
//! - A record expires at the start of the UTC day on which its retention
//!   ends (`expiry`): it is never returned after that, and the first sweep
//!   after it destroys the period key, so every copy of every record of that
//!   category and day, in any backup of the data store, is unreadable. The
//!   same sweep deletes the rows.
//! - Erasure destroys the subject's data and tag keys: every ciphertext of
//!   theirs, under any period, and every log tag about them, belongs to
//!   nobody. It runs in three steps that survive a crash at any point (rows
//!   and leaves; keys; rows written meanwhile), and a collection batch
//!   sealed under keys an erasure destroyed is sealed again (the store's
//!   erasure generation).
//! - A legal hold (from an approved instrument, with an expiry) defers both:
//!   before a period key is destroyed, the held person's records of that
//!   period are sealed again under their subject key alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;

use postvault_store::{HoldRow, RecordRow, SubjectRef, key_id};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, SubjectKeyPair, Vault};

const DAY_MS: i64 = 86_400_000;
/// Key-store name prefix of retention period keys.
pub(crate) const PERIOD_PREFIX: &str = "retention:";
/// A hold lasts at most this long; placing it again renews it (the 90 days
/// of a preservation request, 18 U.S.C. 2703(f)).
pub const MAX_HOLD_DAYS: i64 = 90;
/// Records deleted per sweep transaction.
const SWEEP_CHUNK: usize = 20_000;
/// Subjects per erasure transaction.
pub const ERASE_CHUNK: usize = 100_000;

/// When a record collected at `now` with `retention_days` expires: the start
/// of the UTC day on which its retention ends, so that the records of one
/// category expiring on one day share one period key.
pub(crate) fn expiry(now: i64, retention_days: u32) -> i64 {
    (now + i64::from(retention_days) * DAY_MS).div_euclid(DAY_MS) * DAY_MS
}

/// The key-store name of the period key of `category` for records expiring
/// at `expires_at`.
pub(crate) fn period_secret(category: &str, expires_at: i64) -> String {
    format!("{PERIOD_PREFIX}{category}:{}", period_of(expires_at))
}

/// The day whose start ends the period of a record expiring at
/// `expires_at`: the day it expires on if that is a day start, else the
/// next (a record is never destroyed before its expiry).
pub(crate) fn period_of(expires_at: i64) -> i64 {
    (expires_at + DAY_MS - 1).div_euclid(DAY_MS)
}

/// The start of the day a period key is destroyed on.
pub(crate) fn period_start(expires_at: i64) -> i64 {
    period_of(expires_at) * DAY_MS
}

/// Key-store name prefix of hold keys.
pub(crate) const HOLD_PREFIX: &str = "hold:";

/// The key-store name of a subject's hold key.
pub(crate) fn hold_secret(subject: &SubjectRef) -> String {
    format!("{HOLD_PREFIX}{}", hex::encode(subject))
}

fn hold_subject(name: &str) -> Option<SubjectRef> {
    hex::decode(name.strip_prefix(HOLD_PREFIX)?)
        .ok()?
        .try_into()
        .ok()
}

/// The day a period key name covers (its records expire at its start).
fn period_day(name: &str) -> Option<i64> {
    name.strip_prefix(PERIOD_PREFIX)?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// What a retention sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionReport {
    /// The time the sweep ran at.
    pub at: String,
    /// Period keys destroyed: everything sealed under them is unreadable.
    pub periods_destroyed: u64,
    /// Records deleted from the data store.
    pub records_deleted: u64,
    pub by_category: BTreeMap<String, u64>,
    /// Records of people under a legal hold sealed again under their own key
    /// so they outlive their period.
    pub held_records_kept: u64,
    /// The leaf that accounts for the sweep.
    pub log_index: u64,
}

/// The answer to an erasure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EraseReport {
    /// People erased.
    pub erased: u64,
    /// Identifiers refused because a legal hold is in force (exit 3).
    pub held: Vec<String>,
    /// Records deleted.
    pub records_deleted: u64,
    /// Keys destroyed (a data key and a tag key each).
    pub keys_destroyed: u64,
    /// The first leaf; one per identifier, in order.
    pub first_leaf: u64,
}

impl EraseReport {
    pub fn refused(&self) -> bool {
        !self.held.is_empty()
    }
}

/// A legal hold as shown to an officer or the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldView {
    pub id: String,
    /// The disclosure request whose approved instrument it rests on.
    pub request: String,
    /// People held (officers only; empty in the person's own report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    pub placed_by: String,
    pub placed_at: String,
    pub until: String,
    /// `active`, `released` or `lapsed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// Officers only: the person is not shown the hold before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_until: Option<String>,
    /// The first leaf of the placement or release (answers to those only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

/// The answer to a correction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CorrectionReport {
    pub subject: String,
    pub category: String,
    /// The new record.
    pub record: String,
    /// The record it replaces, kept as history.
    pub supersedes: String,
    /// Who received the category before, to be told of the correction
    /// (5 U.S.C. 552a(c)(4), R13).
    pub notify: Vec<PriorRecipient>,
    pub log_index: u64,
}

/// A recipient of an earlier disclosure of the corrected category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorRecipient {
    pub disclosure: String,
    pub recipient_principal: String,
    pub disclosed_at: String,
    /// The leaf of that disclosure.
    pub log_index: u64,
}

impl Vault {
    /// Corrects a record of `subject` at the person's request, as
    /// `principal` (a role acting for `subject_access`): `fields` (a JSON
    /// object, or `{"fields": {...}}`) replaces the fields of the current
    /// record of `category` (or of record `record`, when the person holds
    /// several), checked and minimized for the purpose it was collected for.
    /// The old record is kept as history, seen only by the person; the new
    /// one keeps its retention (a correction never extends it). Lists who
    /// received that category before. One leaf, tagged for the person.
    pub fn correct(
        &self,
        principal: &Principal,
        subject: &str,
        category: &str,
        fields: &str,
        record: Option<&str>,
    ) -> Result<CorrectionReport, VaultError> {
        let tax = self.pack.taxonomy();
        let may = tax
            .role(principal.role_ix)
            .read_for
            .iter()
            .any(|&p| tax.purpose(p).id == "subject_access");
        if !may {
            self.deny_leaf(principal, "correct", Some("subject_access"))?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not correct records; a role acting for `subject_access` may",
                principal.role
            )));
        }
        let cix = tax
            .category_ix(category)
            .ok_or_else(|| VaultError::Invalid {
                what: "category",
                why: "no such category in the pack".into(),
            })?;
        let cat = tax.category(cix);
        if cat.id == "mail_cover_record" || cat.id == "disclosure_accounting" {
            return Err(VaultError::NotPermitted(format!(
                "records of `{}` are kept by the vault itself and cannot be corrected",
                cat.id
            )));
        }
        crate::vault::check_subject(subject)?;
        let input = parse_correction(fields)?;
        let now = self.clock.now_ms();
        let subject_ref = self.subject_ref(subject);
        let _gate = self.erase_gate_shared();
        let erasure_gen = self.sync_erasures()?;
        let nothing = || {
            VaultError::NotPermitted(
                "the vault holds no current record of that category for this person".into(),
            )
        };
        let keys = self.subject_keys(&subject_ref)?.ok_or_else(nothing)?;
        let current: Vec<RecordRow> = self
            .store
            .subject_records(&subject_ref)?
            .into_iter()
            .filter(|r| r.category == cat.id && r.superseded_by.is_none() && r.expires_at > now)
            .collect();
        let target = match record {
            Some(id) => {
                let id = uuid::Uuid::parse_str(id).map_err(|_| VaultError::Invalid {
                    what: "record",
                    why: "not a record id (a UUID)".into(),
                })?;
                current
                    .into_iter()
                    .find(|r| r.id == *id.as_bytes())
                    .ok_or_else(nothing)?
            }
            None if current.len() == 1 => current.into_iter().next().ok_or_else(nothing)?,
            None if current.is_empty() => return Err(nothing()),
            None => {
                return Err(VaultError::Invalid {
                    what: "record",
                    why: format!(
                        "the person holds {} current records of `{}`; name one with --record",
                        current.len(),
                        cat.id
                    ),
                });
            }
        };
        let plain = self
            .open_record(&target, Some(&keys), &mut crate::vault::KeyCache::default())?
            .ok_or_else(nothing)?;
        let legal_basis = serde_json::from_slice::<serde_json::Value>(&plain)
            .ok()
            .and_then(|v| v.get("legal_basis")?.as_str().map(str::to_string));
        let purpose_ix = tax
            .purpose_ix(&target.purpose)
            .ok_or_else(|| VaultError::UnknownPurpose(target.purpose.clone()))?;
        let minimized =
            crate::minimize::minimize(cat, purpose_ix, input).map_err(|e| VaultError::Invalid {
                what: "fields",
                why: format!("{} ({})", e.message, e.code),
            })?;
        let id = self.ids.next(now);
        let expires_at = target.expires_at;
        let aad = crate::collect::record_aad(
            &subject_ref,
            &id,
            &cat.id,
            &target.purpose,
            now,
            expires_at,
        );
        let period = self
            .period_key(&cat.id, expires_at, true)?
            .ok_or_else(nothing)?;
        let sealed = keys.data.record_key(&period)?.seal(
            &self.rng,
            &aad,
            &crate::collect::payload(cat, &minimized, legal_basis.as_deref()),
        )?;
        let mut wb = postvault_store::WriteBatch {
            leaves: 1,
            erasure_gen: Some(erasure_gen),
            supersede: vec![(target.id, subject_ref, id)],
            ..postvault_store::WriteBatch::default()
        };
        for lookup in &cat.lookups {
            if let Some((domain, value)) = crate::collect::lookup_value(cat, lookup, &minimized) {
                wb.lookups.push(postvault_store::LookupRow {
                    token: self.master.blind_index(&domain, value.as_bytes()),
                    subject: subject_ref,
                    record: id,
                });
            }
        }
        wb.records.push(RecordRow {
            id,
            subject: subject_ref,
            category: cat.id.clone(),
            purpose: target.purpose.clone(),
            source: principal.name.clone(),
            collected_at: now,
            expires_at,
            key_id: key_id::PERIOD,
            sealed,
            superseded_by: None,
        });
        let actor = Actor {
            role: principal.role.clone(),
            id: self.actor_id(&principal.name),
        };
        let log_index = self
            .store
            .write(&wb, &mut |idx, _| {
                Event {
                    v: LEAF_VERSION,
                    time: now,
                    action: "correct".into(),
                    principal: actor.clone(),
                    purpose: Some(target.purpose.clone()),
                    decision: "allow".into(),
                    pack: self.pack.version().to_string(),
                    reasons: vec![],
                    categories: vec![cat.id.clone()],
                    count: 1,
                    rejected: None,
                    selector: None,
                    instrument: None,
                    subject_tag: Some(
                        base64::engine::general_purpose::STANDARD.encode(keys.tag.tag(idx)),
                    ),
                }
                .to_leaf()
            })
            .map_err(|e| match e {
                postvault_store::StoreError::Stale | postvault_store::StoreError::Conflict => {
                    VaultError::NotPermitted(
                        "the record changed meanwhile (corrected or erased); try again".into(),
                    )
                }
                e => e.into(),
            })?;
        let mut notify = Vec::new();
        for a in self.store.accounting(&subject_ref)? {
            if !a.categories.contains(&cat.id) {
                continue;
            }
            if let Some(d) = self.store.disclosure(&a.disclosure)?
                // What a delay order still covers is not for the person's
                // channel to know; the officer sees it in the accounting.
                && d.notice_after.is_none_or(|t| t <= now)
            {
                notify.push(PriorRecipient {
                    disclosure: d.id,
                    recipient_principal: d.requester,
                    disclosed_at: format_ms(a.at),
                    log_index: a.leaf,
                });
            }
        }
        Ok(CorrectionReport {
            subject: subject.to_string(),
            category: cat.id.clone(),
            record: uuid::Uuid::from_bytes(id).to_string(),
            supersedes: uuid::Uuid::from_bytes(target.id).to_string(),
            notify,
            log_index,
        })
    }

    /// Runs the retention sweep at the clock's time: destroys every period
    /// key whose day has begun (after sealing held people's records of it
    /// again under their own key) and the hold keys of ended holds, then
    /// deletes every expired record not under a hold, in bounded chunks.
    /// Written ahead: an intent leaf names what will be destroyed before
    /// anything is, and the sweep's `retention` leaf completes it (a sweep
    /// with nothing to do writes that leaf alone). A sweep a crash stopped
    /// is finished when the vault next opens. `progress` is called with the
    /// records deleted so far.
    pub fn retention_run(
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
        let holds_ending: Vec<SubjectRef> = self
            .keys
            .secret_names(HOLD_PREFIX)?
            .iter()
            .filter_map(|n| hold_subject(n))
            .filter(|s| !held.contains(s))
            .collect();
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
            report.log_index = self.store.append_leaves(1, &mut |_, _| leaf.clone())?;
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
    fn held_subjects(&self, now: i64) -> Result<BTreeSet<SubjectRef>, VaultError> {
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
    fn seal_under_hold(
        &self,
        subject: &SubjectRef,
        pick: &dyn Fn(&RecordRow) -> bool,
    ) -> Result<u64, VaultError> {
        let Some(keys) = self.subject_keys(subject)? else {
            return Ok(0);
        };
        let hold = self
            .hold_key(subject, true)?
            .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
        let key = keys.data.record_key(&hold)?;
        let mut covers = crate::vault::KeyCache::default();
        let mut out = Vec::new();
        for r in self.store.subject_records(subject)? {
            if !pick(&r) || r.category == "mail_cover_record" || r.key_id == key_id::HOLD {
                continue;
            }
            // A record that does not open (altered, or from a restored copy
            // beside newer keys) is left for the sweep, never a reason to
            // stop it for everyone.
            let Ok(Some(plain)) = self.open_record(&r, Some(&keys), &mut covers) else {
                continue;
            };
            let aad = record_aad_of(&r);
            out.push(RecordRow {
                key_id: key_id::HOLD,
                sealed: key.seal(&self.rng, &aad, &plain)?,
                ..r
            });
        }
        Ok(self.store.rekey(&out)?)
    }

    /// The end of every hold on `subject`: records not yet expired go back
    /// under their period keys, then the hold key is destroyed, so what
    /// expired during the hold is unreadable in every copy; the sweep
    /// deletes its rows.
    pub(crate) fn unhold(&self, subject: &SubjectRef, now: i64) -> Result<u64, VaultError> {
        let mut out = Vec::new();
        if let (Some(keys), Some(hold)) =
            (self.subject_keys(subject)?, self.hold_key(subject, false)?)
        {
            let held_key = keys.data.record_key(&hold)?;
            for r in self.store.subject_records(subject)? {
                if r.key_id != key_id::HOLD || period_start(r.expires_at) <= now {
                    continue;
                }
                let aad = record_aad_of(&r);
                let Ok(plain) = held_key.open(&aad, &r.sealed) else {
                    continue;
                };
                let Some(period) = self.period_key(&r.category, r.expires_at, true)? else {
                    continue;
                };
                out.push(RecordRow {
                    key_id: key_id::PERIOD,
                    sealed: keys
                        .data
                        .record_key(&period)?
                        .seal(&self.rng, &aad, &plain)?,
                    ..r
                });
            }
        }
        let n = self.store.rekey(&out)?;
        self.keys.delete_secrets(&[hold_secret(subject)])?;
        Ok(n)
    }

    /// Erases people by identifier, as a privacy officer granting their
    /// request (or, for one person, as the `subject_access` service passing
    /// on the person's own request): destroys their keys (every ciphertext and every log tag of
    /// theirs becomes unreadable or unlinkable) and deletes their rows. People
    /// under a legal hold in force are refused (`held`). One leaf per
    /// identifier (in the order of their keyed refs, not of `subjects`),
    /// tagged for the person, so the erasure is the last leaf they can find
    /// and prove. Works in chunks of [`ERASE_CHUNK`].
    pub fn erase(
        &self,
        officer: &Principal,
        subjects: &[String],
        progress: &mut dyn FnMut(u64),
    ) -> Result<EraseReport, VaultError> {
        // The person's own request comes through the `subject_access`
        // service, one person at a time; anything else needs an officer.
        let tax = self.pack.taxonomy();
        let own_request = subjects.len() == 1
            && tax
                .role(officer.role_ix)
                .read_for
                .iter()
                .any(|&p| tax.purpose(p).id == "subject_access");
        if !own_request {
            self.require_officer(officer, "erase", "erase")?;
        }
        for s in subjects {
            crate::vault::check_subject(s)?;
        }
        let mut report = EraseReport::default();
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        let mut first = None;
        for chunk in subjects.chunks(ERASE_CHUNK) {
            let _destroying = self.destroying();
            let _gate = self.erase_gate_exclusive();
            // A refusal under a hold whose instrument carries a delay order
            // is tagged at random: the person must not learn of the hold
            // from their own leaves before they may know.
            let now = self.clock.now_ms();
            let delayed: HashSet<SubjectRef> = self
                .store
                .holds(None)?
                .into_iter()
                .filter(|h| h.active(now) && h.notice_after.is_some_and(|t| t > now))
                .map(|h| h.subject)
                .collect();
            // In the order of their keyed refs: the stores keep rows of one
            // subject together by ref, so sorted deletes touch each page once.
            let mut pairs: Vec<(SubjectRef, &String)> =
                chunk.iter().map(|s| (self.subject_ref(s), s)).collect();
            pairs.sort_unstable();
            let (refs, ids): (Vec<SubjectRef>, Vec<&String>) = pairs.into_iter().unzip();
            // The tag keys (for the leaves) are read from the key store on a
            // second thread while the transaction deletes the rows; the
            // leaves, written last in it, wait for them.
            let (send_tags, tags) = std::sync::mpsc::sync_channel(1);
            let out = std::thread::scope(|scope| {
                let refs = &refs;
                scope.spawn(move || {
                    let read = || -> Result<Vec<Option<postvault_crypto::TagKey>>, VaultError> {
                        let mut out = Vec::with_capacity(refs.len());
                        for (r, k) in refs.iter().zip(self.keys.subject_keys_many(refs)?) {
                            out.push(match k {
                                Some(k) => Some(self.master.tag_key(&k.tag, r)?),
                                None => None,
                            });
                        }
                        Ok(out)
                    };
                    let _ = send_tags.send(read());
                });
                self.erase_part(&actor, &ids, refs, &delayed, &tags, &mut report)
            });
            // Whoever's first step committed loses their keys now, even if
            // something failed after it (the pending marks and the intent
            // carry a crash).
            let erased = match &out {
                Ok((o, _)) => o.erased.clone(),
                Err(_) => self.store.pending_erasures()?,
            };
            report.keys_destroyed += self.destroy_subject_keys(&erased)?;
            let (out, intent) = out?;
            if let Some(id) = intent {
                self.complete(id, &actor, false)?;
            }
            first.get_or_insert(out.first_leaf);
            progress(report.erased + report.held.len() as u64);
        }
        report.first_leaf = first.unwrap_or(0);
        Ok(report)
    }

    /// Erasure, step one, for one transaction's people; `tags` delivers
    /// their tag keys (in order) when the leaves are written.
    fn erase_part(
        &self,
        actor: &Actor,
        part: &[&String],
        refs: &[SubjectRef],
        delayed: &HashSet<SubjectRef>,
        tags: &std::sync::mpsc::Receiver<Result<Vec<Option<postvault_crypto::TagKey>>, VaultError>>,
        report: &mut EraseReport,
    ) -> Result<(postvault_store::EraseOutcome, Option<u64>), VaultError> {
        let now = self.clock.now_ms();
        let mut keys: Option<Vec<Option<postvault_crypto::TagKey>>> = None;
        let mut rng_error = None;
        // By subject, not by call count: a store may run this callback again
        // when it retries its transaction (PostgreSQL, SQLSTATE 40001).
        let position: HashMap<SubjectRef, usize> =
            refs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let pack = self.pack.version().to_string();
        let mut intent_id = None;
        let mut intent = |idx: u64, out: &postvault_store::EraseOutcome| {
            if out.erased.is_empty() {
                intent_id = None;
                return None;
            }
            intent_id = Some(idx);
            let b = crate::intents::EraseBody {
                subjects: out.erased.len() as u64,
                records: out.records,
            };
            let leaf = self.destruction_leaf(
                actor,
                "erase_intent",
                now,
                b.subjects,
                vec![],
                format!("keys:{};records:{}", 2 * b.subjects, b.records),
                vec![],
            );
            Some((
                postvault_store::Intent {
                    kind: crate::intents::ERASE.into(),
                    body: crate::intents::body(&b),
                    at: now,
                },
                leaf,
            ))
        };
        let out = self.store.erase(
            refs,
            now,
            &mut |idx, subject, held| {
                // A key store that cannot be read leaves random tags: the
                // erasure goes on (and the key destruction that follows reports
                // the key store's failure).
                let k = keys.get_or_insert_with(|| {
                    tags.recv().ok().and_then(Result::ok).unwrap_or_default()
                });
                let key = position
                    .get(subject)
                    .and_then(|&i| k.get(i))
                    .and_then(Option::as_ref)
                    .filter(|_| !(held && delayed.contains(subject)));
                let tag = self.tag_or_random_key(key, idx, &mut rng_error);
                Event {
                    v: LEAF_VERSION,
                    time: now,
                    action: "erase".into(),
                    principal: actor.clone(),
                    purpose: Some("subject_access".into()),
                    decision: if held { "deny" } else { "allow" }.into(),
                    pack: pack.clone(),
                    reasons: if held {
                        vec!["legal_hold".into()]
                    } else {
                        vec![]
                    },
                    categories: vec![],
                    count: 0,
                    rejected: None,
                    selector: None,
                    instrument: None,
                    subject_tag: Some(base64::engine::general_purpose::STANDARD.encode(tag)),
                }
                .to_leaf()
            },
            &mut intent,
        )?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        report.records_deleted += out.records;
        report.erased += out.erased.len() as u64;
        let held: HashSet<&SubjectRef> = out.held.iter().collect();
        for (id, r) in part.iter().zip(refs) {
            if held.contains(r) {
                report.held.push((*id).clone());
            }
        }
        Ok((out, intent_id))
    }

    fn tag_or_random_key(
        &self,
        key: Option<&postvault_crypto::TagKey>,
        idx: u64,
        err: &mut Option<postvault_crypto::CryptoError>,
    ) -> [u8; 16] {
        match key {
            Some(k) => k.tag(idx),
            None => postvault_crypto::random_token(&self.rng).unwrap_or_else(|e| {
                *err = Some(e);
                [0; 16]
            }),
        }
    }

    /// Erasure, steps two and three: destroy the keys, then remove anything
    /// written for these people meanwhile. Returns the keys destroyed.
    fn destroy_subject_keys(&self, erased: &[SubjectRef]) -> Result<u64, VaultError> {
        if erased.is_empty() {
            return Ok(0);
        }
        let n = self.keys.delete_subject_keys(erased)?;
        // Hold keys are few: destroy those of the erased.
        let names: HashSet<String> = erased.iter().map(hold_secret).collect();
        let holds: Vec<String> = self
            .keys
            .secret_names(HOLD_PREFIX)?
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        if !holds.is_empty() {
            self.keys.delete_secrets(&holds)?;
        }
        self.forget_keys(erased);
        self.store.finish_erasure(erased)?;
        Ok(n * 2)
    }

    /// Finishes erasures a crash interrupted after their first transaction;
    /// returns how many people's were.
    pub(crate) fn finish_pending_erasures(&self) -> Result<u64, VaultError> {
        let pending = self.store.pending_erasures()?;
        self.destroy_subject_keys(&pending)?;
        Ok(pending.len() as u64)
    }

    /// Places a legal hold on every person named by disclosure request
    /// `request`, which must be approved (or fetched) and still valid.
    /// `until` defaults to, and may not pass, [`MAX_HOLD_DAYS`] from now.
    /// One leaf per person, tagged for them unless a delay order stands.
    pub fn hold_place(
        &self,
        officer: &Principal,
        request: &str,
        until: Option<i64>,
    ) -> Result<HoldView, VaultError> {
        self.require_officer(officer, "place a legal hold", "hold_place")?;
        let now = self.clock.now_ms();
        let row = self
            .store
            .disclosure(request)?
            .filter(|d| matches!(d.status.as_str(), "approved" | "fetched"))
            .ok_or_else(|| {
                VaultError::NotPermitted(
                    "a hold rests on an approved disclosure request: `request` names none".into(),
                )
            })?;
        if row.valid_until.is_some_and(|v| v <= now) {
            return Err(VaultError::NotPermitted(
                "the instrument of that request is no longer valid".into(),
            ));
        }
        let max = now + MAX_HOLD_DAYS * DAY_MS;
        let until = until.unwrap_or(max);
        if until <= now || until > max {
            return Err(VaultError::Invalid {
                what: "until",
                why: format!(
                    "a hold ends after now and at most {MAX_HOLD_DAYS} days from now; place it again to renew"
                ),
            });
        }
        let id = format!("hold-{}", uuid::Uuid::from_bytes(self.ids.next(now)));
        let holds: Vec<HoldRow> = row
            .subjects
            .iter()
            .map(|s| HoldRow {
                id: id.clone(),
                disclosure: row.id.clone(),
                subject: *s,
                placed_by: officer.name.clone(),
                placed_at: now,
                until,
                notice_after: row.notice_after,
                released_at: None,
                released_by: None,
            })
            .collect();
        let leaf_index = self.put_holds(officer, &holds, now)?;
        // Everything the people hold now goes under their hold keys: the
        // sweep cannot destroy it while the hold stands.
        for h in &holds {
            self.seal_under_hold(&h.subject, &|r| {
                matches!(r.key_id, key_id::PERIOD | key_id::SUBJECT)
            })?;
        }
        Ok(hold_view(&holds, Some(leaf_index), true, now))
    }

    /// Releases hold `id`; the people's records that have not expired go
    /// back under their period keys, and the next sweep removes the rest.
    pub fn hold_release(&self, officer: &Principal, id: &str) -> Result<HoldView, VaultError> {
        self.require_officer(officer, "release a legal hold", "hold_release")?;
        let now = self.clock.now_ms();
        let known: Vec<HoldRow> = self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.id == id)
            .collect();
        if known.is_empty() {
            return Err(VaultError::NotPermitted("no hold has that id".into()));
        }
        if known.iter().all(|h| h.released_at.is_some()) {
            return Err(VaultError::NotPermitted(
                "that hold is already released".into(),
            ));
        }
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        let tags = self.hold_tags(&known, now)?;
        let mut rng_error = None;
        let mut first = None;
        // The first row of each attempt starts the count again: a store may
        // run this callback again when it retries its transaction.
        let mut first_row: Option<SubjectRef> = None;
        let released = self
            .store
            .release_hold(id, &officer.name, now, &mut |idx, h| {
                if first_row.is_none_or(|s| s == h.subject) {
                    first_row = Some(h.subject);
                    first = Some(idx);
                }
                let tag = self.tag_or_random_key(
                    tags.get(&h.subject)
                        .and_then(|t| t.as_ref())
                        .map(|k| &k.tag),
                    idx,
                    &mut rng_error,
                );
                hold_event(&actor, "hold_release", now, self.pack.version(), tag)
            })?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        let still_held = self.held_subjects(now)?;
        let ending: Vec<SubjectRef> = released
            .iter()
            .map(|h| h.subject)
            .filter(|s| !still_held.contains(s))
            .collect();
        if !ending.is_empty() {
            let _destroying = self.destroying();
            // The hold keys go: written ahead, like every destruction.
            let b = crate::intents::HoldBody {
                subjects: ending.iter().map(crate::intents::hex_ref).collect(),
            };
            let leaf = self.destruction_leaf(
                &actor,
                "hold_intent",
                now,
                ending.len() as u64,
                vec![],
                format!("hold_keys:{}", ending.len()),
                vec![],
            );
            let id = self.store.put_intent(
                &postvault_store::Intent {
                    kind: crate::intents::HOLD.into(),
                    body: crate::intents::body(&b),
                    at: now,
                },
                &mut |_, _| leaf.clone(),
            )?;
            for s in &ending {
                self.unhold(s, now)?;
            }
            self.complete(id, &actor, false)?;
        }
        Ok(hold_view(&released, first, true, now))
    }

    /// Every hold, for an officer.
    pub fn holds(&self, officer: &Principal) -> Result<Vec<HoldView>, VaultError> {
        self.require_officer(officer, "list legal holds", "hold_list")?;
        let now = self.clock.now_ms();
        let mut by_id: BTreeMap<(i64, String), Vec<HoldRow>> = BTreeMap::new();
        for h in self.store.holds(None)? {
            by_id
                .entry((h.placed_at, h.id.clone()))
                .or_default()
                .push(h);
        }
        Ok(by_id
            .into_values()
            .map(|rows| hold_view(&rows, None, true, now))
            .collect())
    }

    /// The holds on one person as the person may see them: none a delay
    /// order still covers.
    pub(crate) fn holds_for_person(
        &self,
        subject: &SubjectRef,
    ) -> Result<Vec<HoldView>, VaultError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .holds(Some(subject))?
            .into_iter()
            .filter(|h| h.notice_after.is_none_or(|t| t <= now))
            .map(|h| hold_view(std::slice::from_ref(&h), None, false, now))
            .collect())
    }

    fn hold_tags(
        &self,
        holds: &[HoldRow],
        now: i64,
    ) -> Result<std::collections::HashMap<SubjectRef, Option<Arc<SubjectKeyPair>>>, VaultError>
    {
        let mut out = std::collections::HashMap::new();
        for h in holds {
            // Under a delay order the leaf carries random bytes: the person
            // cannot find it before they may know.
            let tag = if h.notice_after.is_some_and(|t| t > now) {
                None
            } else {
                self.subject_keys(&h.subject)?
            };
            out.insert(h.subject, tag);
        }
        Ok(out)
    }

    /// Stores `holds` with one leaf per person.
    fn put_holds(
        &self,
        officer: &Principal,
        holds: &[HoldRow],
        now: i64,
    ) -> Result<u64, VaultError> {
        let actor = Actor {
            role: officer.role.clone(),
            id: self.actor_id(&officer.name),
        };
        let tags = self.hold_tags(holds, now)?;
        let mut rng_error = None;
        let pack = self.pack.version().to_string();
        let first = self.store.put_holds(holds, &mut |idx, i| {
            let tag = self.tag_or_random_key(
                tags.get(&holds[i].subject)
                    .and_then(|t| t.as_ref())
                    .map(|k| &k.tag),
                idx,
                &mut rng_error,
            );
            hold_event(&actor, "hold_place", now, &pack, tag)
        })?;
        if let Some(e) = rng_error {
            return Err(e.into());
        }
        Ok(first)
    }

    /// Officer-only operations: the pack's approver roles. A refusal is a
    /// decision too: one deny leaf.
    pub(crate) fn require_officer(
        &self,
        p: &Principal,
        what: &str,
        action: &str,
    ) -> Result<(), VaultError> {
        let roles = self.pack.disclosure().approver_roles();
        if roles.contains(&p.role) {
            return Ok(());
        }
        self.deny_leaf(p, action, None)?;
        Err(VaultError::NotPermitted(format!(
            "role `{}` may not {what}; {} may",
            p.role,
            roles.join(" or ")
        )))
    }
}

fn hold_event(actor: &Actor, action: &str, now: i64, pack: &str, tag: [u8; 16]) -> Vec<u8> {
    Event {
        v: LEAF_VERSION,
        time: now,
        action: action.into(),
        principal: actor.clone(),
        purpose: None,
        decision: "allow".into(),
        pack: pack.into(),
        reasons: vec![],
        categories: vec![],
        count: 0,
        rejected: None,
        selector: None,
        instrument: None,
        subject_tag: Some(base64::engine::general_purpose::STANDARD.encode(tag)),
    }
    .to_leaf()
}

fn hold_view(rows: &[HoldRow], log_index: Option<u64>, officer: bool, now: i64) -> HoldView {
    let first = &rows[0];
    let status = if first.released_at.is_some() {
        "released"
    } else if first.until <= now {
        "lapsed"
    } else {
        "active"
    };
    HoldView {
        id: first.id.clone(),
        request: first.disclosure.clone(),
        subjects: if officer {
            rows.iter().map(|h| hex::encode(h.subject)).collect()
        } else {
            vec![]
        },
        placed_by: first.placed_by.clone(),
        placed_at: format_ms(first.placed_at),
        until: format_ms(first.until),
        status: status.into(),
        released_at: first.released_at.map(format_ms),
        withheld_until: if officer {
            first.notice_after.filter(|&t| t > now).map(format_ms)
        } else {
            None
        },
        log_index,
    }
}

/// The fields of a correction: a JSON object of fields, or `{"fields": {...}}`.
fn parse_correction(text: &str) -> Result<crate::minimize::InputFields, VaultError> {
    let bad = |why: &str| VaultError::Invalid {
        what: "correction",
        why: why.into(),
    };
    if text.len() > 64 * 1024 {
        return Err(bad("larger than 64 KiB"));
    }
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| bad("not a JSON object of fields"))?;
    let obj = match v {
        serde_json::Value::Object(mut m) if m.len() == 1 && m.contains_key("fields") => {
            m.remove("fields").unwrap_or_default()
        }
        other => other,
    };
    if !obj.is_object() {
        return Err(bad("not a JSON object of fields"));
    }
    serde_json::from_value(obj).map_err(|_| bad("not a JSON object of fields"))
}

fn record_aad_of(r: &RecordRow) -> Vec<u8> {
    crate::collect::record_aad(
        &r.subject,
        &r.id,
        &r.category,
        &r.purpose,
        r.collected_at,
        r.expires_at,
    )
}
