//! The agency's fetch: one leaf per person disclosed, written before any
//! record is opened; the package holds exactly the approved portions.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;

use postvault_policy::disclosure::{self, DAY_MS, Instrument, InstrumentKind};
use postvault_store::{AccountingRow, DisclosureRow, DisclosureStep, RecordRow, SubjectRef};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
    /// Fetches the package of request `id` as its requester. Each named
    /// person's records are read and accounted for (one leaf each, plus an
    /// accounting entry) in one transaction before any record is opened.
    pub fn disclose_fetch(&self, agency: &Principal, id: &str) -> Result<Package, VaultError> {
        // A step refused because a mail-cover order's key was gone, of an
        // order destroyed since this process last looked, changed nothing:
        // made again (each attempt more needs another order destroyed).
        for _ in 0..crate::read::READ_ATTEMPTS {
            if let Some(p) = self.fetch_attempt(agency, id)? {
                return Ok(p);
            }
        }
        Err(crate::read::made_again_too_often())
    }

    /// One attempt of [`Vault::disclose_fetch`]; `None`: make it again.
    fn fetch_attempt(&self, agency: &Principal, id: &str) -> Result<Option<Package>, VaultError> {
        let rules = self.pack.disclosure();
        let tax = self.pack.taxonomy();
        let now = self.clock.now_ms();
        // The purpose the pack in force discloses a request's kind for:
        // `None` if it no longer lets that kind disclose (a pack changed
        // since the approval). Decided before the leaves, never after.
        let kind_purpose = |r: &DisclosureRow| {
            InstrumentKind::from_id(&r.kind)
                .and_then(|k| rules.kind(k))
                .and_then(|kr| tax.purpose_ix(&kr.purpose))
        };
        // The approved portions the pack in force still lets the request's
        // kind disclose on its ground: a narrowing since the approval
        // narrows the package.
        let portions_now = |r: &DisclosureRow| -> Vec<String> {
            let allowed = InstrumentKind::from_id(&r.kind)
                .and_then(|k| rules.kind(k))
                .map(|kr| kr.portions_for(&r.ground))
                .unwrap_or_default();
            r.portions
                .iter()
                .filter(|p| allowed.contains(p))
                .cloned()
                .collect()
        };
        let fetch_status = |r: &DisclosureRow| -> Vec<GatewayReason> {
            if r.requester != agency.name {
                return vec![unknown_request()];
            }
            let st = effective_status(r, now);
            if r.kind == InstrumentKind::MailCover.as_str() {
                // A cover's records accrue while it runs: its requester may
                // fetch them until access ends after the cover (R18).
                let running = r.status == status::APPROVED || r.status == status::FETCHED;
                let ended = r.status == status::ENDED && r.fetches_possible_after_end();
                return match () {
                    _ if (running || ended) && cover_access_until(r) > now => vec![],
                    _ if running || ended => vec![GatewayReason::new(
                        disclosure::RefusalCode::Expired.as_str(),
                        format!(
                            "access to a cover's records ends {COVER_ACCESS_DAYS_AFTER_END} days after the cover ends"
                        ),
                    )],
                    _ => vec![wrong_status(&st, "fetched")],
                };
            }
            match st.as_str() {
                status::APPROVED => vec![],
                status::FETCHED => vec![GatewayReason::new(
                    disclosure::RefusalCode::AlreadyUsed.as_str(),
                    "this request's package has been fetched: each instrument is good for one disclosure",
                )],
                status::EXPIRED => vec![GatewayReason::new(
                    disclosure::RefusalCode::Expired.as_str(),
                    "the instrument is no longer valid",
                )],
                other => vec![wrong_status(other, "fetched")],
            }
        };
        // Whether a step is allowed is decided inside the transaction, from
        // the request as stored; the plan reads only if it is.
        let allowed = |r: &DisclosureRow| -> Vec<GatewayReason> {
            let reasons = fetch_status(r);
            if reasons.is_empty() && kind_purpose(r).is_none() {
                return vec![kind_not_disclosed()];
            }
            reasons
        };
        // The agency's own covers, but for those destroyed (as improperly
        // ordered: their records are gone, lawfully). Destroyed orders are
        // noted as seen, so a cover key found gone under the log's lock is
        // judged without a look at the ledger there.
        let ledger = self.store.disclosures()?;
        self.saw_destroyed_in(&ledger);
        let own_covers: BTreeSet<u64> = ledger
            .into_iter()
            .filter(|d| {
                d.requester == agency.name
                    && d.kind == InstrumentKind::MailCover.as_str()
                    && d.status != status::DESTROYED
            })
            .map(|d| d.seq)
            .collect();
        // People held by a legal hold that rests on this request.
        let preserved: BTreeSet<SubjectRef> = self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.disclosure == id && h.active(now))
            .map(|h| h.subject)
            .collect();
        let mut plan = |row: Option<&DisclosureRow>| -> Vec<SubjectRef> {
            match row {
                Some(r) if allowed(r).is_empty() => r.subjects.clone(),
                _ => vec![],
            }
        };
        // The fetched request, the refusal reasons, and per subject the
        // indexes of the records chosen for the package.
        type Fetched = (Option<DisclosureRow>, Vec<GatewayReason>, Vec<Vec<usize>>);
        let mut outcome: Option<Fetched> = None;
        let mut fail = None;
        // What the records are opened with after the step: the keys, and
        // the instrument, as the step found them (nothing is looked up again
        // once the leaves claim the records).
        let mut found: Option<Found> = None;
        // Orders whose key the step found gone, not seen destroyed.
        let mut covers_gone: HashMap<u32, u64> = HashMap::new();
        let (data, first) =
            self.store
                .disclosure_step(id, &mut plan, &mut |row, data, first| {
                    // A backend may run the step again (a transaction the
                    // database refused): nothing of an earlier run counts.
                    outcome = None;
                    fail = None;
                    found = None;
                    covers_gone.clear();
                    let reasons = match row {
                        None => vec![unknown_request()],
                        Some(r) => allowed(r),
                    };
                    // Allowed, so the pack in force discloses its kind
                    // (`allowed` refuses it otherwise).
                    let Some((r, purpose_ix)) = row
                        .filter(|_| reasons.is_empty())
                        .and_then(|r| Some((r, kind_purpose(r)?)))
                    else {
                        // Refused: one leaf, nothing read. A fetch past its validity
                        // records the expiry.
                        let new = row.filter(|r| r.requester == agency.name).and_then(|r| {
                            let st = effective_status(r, now);
                            (st == status::EXPIRED && r.status != status::EXPIRED).then(|| {
                                let mut n = r.clone();
                                n.status = status::EXPIRED.into();
                                n
                            })
                        });
                        let mut ignored = None;
                        let step = self.step_leaf(
                            agency,
                            row.filter(|r| r.requester == agency.name),
                            "disclose",
                            new,
                            reasons.clone(),
                            now,
                            &mut ignored,
                        );
                        outcome = Some((None, reasons, vec![]));
                        return step;
                    };
                    let mut step = DisclosureStep::default();
                    let mut chosen = Vec::new();
                    let mut key_cache = crate::vault::KeyCache::default();
                    // Records of the package whose keys are missing: the
                    // fetch is refused, never answered with less.
                    let mut missing = 0u64;
                    // A key look-up that failed: the fetch is refused too,
                    // and fails with it; so for a leaf's tag not made.
                    let mut unavailable: Option<VaultError> = None;
                    let mut untagged: Option<VaultError> = None;
                    // A sealed instrument that does not open (its key or
                    // its bytes damaged): no retry mends it.
                    let mut unreadable: Option<VaultError> = None;
                    let seen_destroyed = self.covers_seen_destroyed();
                    let mut subject_keys = Vec::with_capacity(r.subjects.len());
                    let portions = portions_now(r);
                    // The instrument names the people in the package.
                    let inst = match self.open_instrument(r) {
                        Ok(inst) => inst,
                        // Its key or its bytes do not authenticate: damage.
                        // (A failed randomness making the key is an outage.)
                        Err(
                            e @ VaultError::Crypto(
                                postvault_crypto::CryptoError::Open
                                | postvault_crypto::CryptoError::KeyLength(_),
                            ),
                        ) => {
                            unreadable = Some(e);
                            None
                        }
                        Err(e) => {
                            unavailable.get_or_insert(e);
                            None
                        }
                    };
                    for (i, (subject, d)) in r.subjects.iter().zip(data).enumerate() {
                        let keys = match self.subject_keys(subject) {
                            Ok(k) => k,
                            Err(VaultError::Crypto(_)) => None,
                            Err(e) => {
                                unavailable.get_or_insert(e);
                                None
                            }
                        };
                        let mut picked: Vec<usize> = Vec::new();
                        for (ix, rec) in d.records.iter().enumerate() {
                            // Once the key store failed, nothing more is
                            // asked of it under the lock: the step is refused.
                            if unavailable.is_some() {
                                break;
                            }
                            // An order seen destroyed: its records are gone
                            // lawfully, even before its key is deleted.
                            if (1..=postvault_store::key_id::COVER_MAX).contains(&rec.key_id)
                                && seen_destroyed.contains(&rec.key_id)
                            {
                                continue;
                            }
                            if !portions.contains(&rec.category)
                                || !in_package(
                                    r,
                                    rec,
                                    now,
                                    &own_covers,
                                    preserved.contains(subject),
                                    tax.engine().mail_cover_record_category(),
                                )
                            {
                                continue;
                            }
                            match self.gone(
                                rec,
                                keys.as_deref().map(|k| &k.data),
                                &mut key_cache,
                                now,
                            ) {
                                Ok(crate::integrity::Gone::No) => picked.push(ix),
                                Ok(crate::integrity::Gone::Lawfully) => {}
                                Ok(crate::integrity::Gone::CoverKey(seq))
                                    if seen_destroyed.contains(&seq) => {}
                                Ok(crate::integrity::Gone::CoverKey(seq)) => {
                                    *covers_gone.entry(seq).or_default() += 1;
                                }
                                Ok(crate::integrity::Gone::Missing) => missing += 1,
                                // The key store did not answer: not a key lost.
                                Err(e) => {
                                    unavailable.get_or_insert(e);
                                }
                            }
                        }
                        let categories: BTreeSet<String> = picked
                            .iter()
                            .map(|&ix| d.records[ix].category.clone())
                            .collect();
                        let idx = first + i as u64;
                        let tag = self.disclosure_tag(r, keys.as_deref(), d.exists, idx, now);
                        let (tag, index) = match tag {
                            Ok(t) => t,
                            Err(e) => {
                                untagged.get_or_insert(e);
                                ([0; 16], postvault_store::LeafIndex::None)
                            }
                        };
                        step.leaves.push(postvault_store::Leaf {
                            bytes: Event {
                                v: LEAF_VERSION,
                                time: now,
                                action: "disclose".into(),
                                principal: self.actor(agency),
                                purpose: Some(tax.purpose(purpose_ix).id.clone()),
                                decision: "allow".into(),
                                pack: self.pack.version().to_string(),
                                reasons: vec![],
                                categories: categories.iter().cloned().collect(),
                                count: picked.len() as u64,
                                rejected: None,
                                selector: None,
                                instrument: Some(r.id.clone()),
                                subject_tag: Some(
                                    base64::engine::general_purpose::STANDARD.encode(tag),
                                ),
                            }
                            .to_leaf(),
                            index,
                        });
                        step.accounting.push(AccountingRow {
                            disclosure: r.id.clone(),
                            subject: *subject,
                            at: now,
                            leaf: 0,
                            records: picked.len() as u64,
                            categories: categories.into_iter().collect(),
                        });
                        step.accounting_leaf.push(i);
                        chosen.push(picked);
                        subject_keys.push(keys);
                    }
                    // Nothing is disclosed when something could not be had:
                    // the step's one leaf says what.
                    let refusal = if let Some(e) = unavailable {
                        fail = Some(e);
                        Some((
                            "keys_unavailable",
                            "the package's keys or instrument could not be looked up",
                        ))
                    } else if let Some(e) = unreadable {
                        fail = Some(e);
                        Some((
                            codes::INSTRUMENT_UNREADABLE,
                            "the request's sealed instrument does not open",
                        ))
                    } else if let Some(e) = untagged {
                        fail = Some(e);
                        Some((
                            "tag_unavailable",
                            "the package's leaves could not be tagged",
                        ))
                    } else if missing > 0 {
                        fail = Some(VaultError::RecordKeysMissing { records: missing });
                        Some((
                            "keys_missing",
                            "records of the package cannot be opened: their keys are missing",
                        ))
                    } else if !covers_gone.is_empty() {
                        // Lawful if the orders were destroyed: looked at
                        // after the step, and the fetch made again.
                        Some((
                            codes::COVER_KEY_GONE,
                            "a mail-cover order's key is gone: the fetch looks at the ledger",
                        ))
                    } else {
                        None
                    };
                    if let Some((code, why)) = refusal {
                        let mut ignored = None;
                        return self.step_leaf(
                            agency,
                            Some(r),
                            "disclose",
                            None,
                            vec![GatewayReason::new(code, why)],
                            now,
                            &mut ignored,
                        );
                    }
                    if step.leaves.is_empty() {
                        // An approved request always names someone; still, a step
                        // is never without its leaf.
                        let mut ignored = None;
                        return self.step_leaf(
                            agency,
                            Some(r),
                            "disclose",
                            None,
                            vec![],
                            now,
                            &mut ignored,
                        );
                    }
                    let mut n = r.clone();
                    // A cover that ended stays ended: fetching what it recorded
                    // never reopens it for recording.
                    if n.status != status::ENDED {
                        n.status = status::FETCHED.into();
                    }
                    n.fetches += 1;
                    n.last_fetched_at = Some(now);
                    // R13: the accounting is kept five years after the disclosure.
                    n.retain_until = n.retain_until.max(now + ACCOUNTING_RETENTION_DAYS * DAY_MS);
                    step.row = Some(n.clone());
                    outcome = Some((Some(n), vec![], chosen));
                    found = Some(Found {
                        keys: subject_keys,
                        cache: key_cache,
                        inst,
                        purpose: purpose_ix,
                    });
                    step
                })?;
        if let Some(e) = fail {
            return Err(e);
        }
        if !covers_gone.is_empty() {
            // An order not destroyed lost its key: an error. All destroyed
            // (since this process last looked): the refused step changed
            // nothing, and the fetch is made again.
            self.check_cover_keys(&covers_gone)?;
            return Ok(None);
        }
        let (row, reasons, chosen) = outcome.ok_or_else(no_answer)?;
        let Some(row) = row else {
            let st = self
                .store
                .disclosure(id)?
                .filter(|r| r.requester == agency.name)
                .map(|r| effective_status(&r, now))
                .unwrap_or_else(|| "unknown".into());
            return Ok(Some(Package {
                id: id.to_string(),
                status: st,
                reasons,
                kind: String::new(),
                purpose: String::new(),
                portions: vec![],
                data_from: None,
                data_until: None,
                subjects: vec![],
                log_index: first,
            }));
        };
        // The leaves are durable: only now is anything opened, with the
        // keys the step judged the records by.
        let Found {
            keys: subject_keys,
            cache: mut cover_keys,
            inst,
            purpose: purpose_ix,
        } = found.ok_or_else(no_answer)?;
        let mut subjects = Vec::new();
        for (i, (d, picked)) in data.iter().zip(&chosen).enumerate() {
            let keys = subject_keys.get(i).and_then(Option::as_deref);
            let mut records = Vec::new();
            for &ix in picked {
                let rec = &d.records[ix];
                // Its key was found in the step, and is kept in the cache.
                let Some(plain) = self.open_record(rec, keys, &mut cover_keys)? else {
                    return Err(VaultError::Store(postvault_store::StoreError::Corrupt(
                        "a record of the package had its key in the step and not after it".into(),
                    )));
                };
                if let Some(r) = crate::read::to_read_record(tax, purpose_ix, rec, &plain)? {
                    records.push(r);
                }
            }
            subjects.push(PackageSubject {
                // Refs were made from the instrument's subjects, in order.
                subject: inst
                    .as_ref()
                    .and_then(|inst| inst.subjects.get(i))
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                records,
                log_index: first + i as u64,
            });
        }
        Ok(Some(Package {
            id: row.id.clone(),
            status: row.status.clone(),
            reasons: vec![],
            kind: row.kind.clone(),
            purpose: tax.purpose(purpose_ix).id.clone(),
            portions: portions_now(&row),
            data_from: row.data_from.map(format_ms),
            data_until: row.data_until.map(format_ms),
            subjects,
            log_index: first,
        }))
    }
}

/// A fetch refused because the pack in force no longer lets its request's
/// kind disclose.
fn kind_not_disclosed() -> GatewayReason {
    GatewayReason::new(
        codes::NOT_PERMITTED,
        "the pack in force does not let this kind of instrument disclose",
    )
}

/// What a fetch's step found the package's records openable with: each
/// person's keys (in the request's order), the record keys derived from
/// them, the instrument, and the purpose its leaves name.
struct Found {
    keys: Vec<Option<std::sync::Arc<crate::vault::SubjectKeyPair>>>,
    cache: crate::vault::KeyCache,
    inst: Option<Instrument>,
    purpose: postvault_policy::PurposeIx,
}

/// Whether record `rec` belongs in the package of request `r`.
/// `own_covers`: the order numbers of the requester's own mail covers; a
/// court order reaches cover records (of `cover_category`, the pack's
/// mail-cover record category) of those only, never another agency's
/// (possibly running, secret) cover.
pub(super) fn in_package(
    r: &DisclosureRow,
    rec: &RecordRow,
    now: i64,
    own_covers: &BTreeSet<u64>,
    preserved: bool,
    cover_category: Option<&str>,
) -> bool {
    let cover = r.kind == InstrumentKind::MailCover.as_str();
    // A legal hold resting on this very request keeps records past their
    // retention for it.
    (rec.expires_at > now || (preserved && rec.key_id == postvault_store::key_id::HOLD))
        && rec.superseded_by.is_none()
        && r.portions.contains(&rec.category)
        && r.data_from.is_none_or(|t| rec.collected_at >= t)
        && r.data_until.is_none_or(|t| rec.collected_at < t)
        // A cover sees what was recorded under its own order only.
        && (cover_category != Some(rec.category.as_str())
            || if cover {
                u64::from(rec.key_id) == r.seq
            } else {
                own_covers.contains(&u64::from(rec.key_id))
            })
}

/// The records a request may reach: `[from, until)`. A time range's `to`
/// that is a day (midnight) includes that whole day.
pub(super) fn data_window(
    inst: &Instrument,
    rules: &postvault_policy::DisclosureRules,
) -> (Option<i64>, Option<i64>) {
    if inst.kind == InstrumentKind::MailCover {
        let start = inst.start.map(|t| t.0);
        let end = match (&inst.start, inst.days, rules.mail_cover()) {
            (Some(s), Some(d), Some(mc)) => Some(mc.order_end_ms(s.0, d, &inst.ground)),
            _ => None,
        };
        return (start, end);
    }
    match inst.time_range {
        Some(tr) => {
            let to = tr.to.0;
            let until = if disclosure::start_of_day_ms(to) == to {
                to.saturating_add(DAY_MS)
            } else {
                to.saturating_add(1)
            };
            (Some(tr.from.0), Some(until))
        }
        None => (None, None),
    }
}
