//! Targeted read of one subject for a declared purpose (R3).
//!
//! The answer lists every category the purpose may not see, with reasons,
//! whatever the subject holds: so an unknown subject and a subject the caller
//! may see nothing of answer alike (no existence oracle). The decision is made
//! before any per-person data is touched: a read that may see nothing reads
//! no record of the person and takes the same time for every id. Records past
//! their retention are never returned. The read's leaf is durable before any
//! record is opened.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use postvault_policy::{Action, DecisionRequest, Reason};
use postvault_store::{ReadScope, SubjectData};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::minimize::transform_for_read;
use crate::vault::{Principal, SubjectKeyPair, Vault};

/// One record returned by a read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadRecord {
    pub id: String,
    pub category: String,
    /// The purpose it was collected for.
    pub collected_for: String,
    pub collected_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// History only (the pack's subject-access purpose, `subject_access` in
    /// the postal pack): a correction replaced this
    /// record with the one of this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub fields: Fields,
}

/// A record's fields as a read returns them: the JSON object they were
/// sealed as (after the purpose's read-time transforms), passed on as that
/// text. A read writes its records out and rarely looks inside them, so it
/// does not build a map of every record only to write it out again;
/// [`Fields::to_map`] parses on demand.
///
/// It serializes as JSON text only with `serde_json` (its raw values): a
/// canonicalizer (JCS) or another format would refuse it or write it
/// wrongly, so anything that hashes or signs an answer goes through
/// [`Fields::to_map`]. Its `Debug` shows the length only: the text is
/// personal data.
#[derive(Clone)]
pub struct Fields(Box<serde_json::value::RawValue>);

impl Fields {
    /// The fields as a map. An error if the sealed text is JSON that is
    /// not a map `serde_json` reads (which the vault never writes: a
    /// number out of range, a lone surrogate, a repeated name).
    pub fn to_map(&self) -> Result<Map<String, Value>, VaultError> {
        serde_json::from_str(self.0.get()).map_err(|_| corrupt())
    }

    /// The JSON text of the object.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

/// `v` as indented JSON, records' fields indented like the rest (a
/// `serde_json` pretty writer copies raw text as it is, so this goes
/// through a value): for answers written for people to read.
pub fn pretty_json(v: &impl Serialize) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::to_value(v)?)
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fields({} bytes)", self.0.get().len())
    }
}

/// The same text: both were written by the vault, so the same fields are
/// the same text.
impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A category the purpose may not see, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Withheld {
    pub category: String,
    pub reasons: Vec<Reason>,
}

/// The answer to a targeted read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadResponse {
    pub subject: String,
    pub purpose: String,
    /// `allow` when the purpose may see at least one category, else `deny`.
    pub decision: String,
    pub pack: String,
    /// Index of the leaf that accounts for this read.
    pub log_index: u64,
    pub records: Vec<ReadRecord>,
    pub withheld: Vec<Withheld>,
}

impl ReadResponse {
    pub fn denied(&self) -> bool {
        self.decision != "allow"
    }
}

/// Builds the leaf appended after a read's (see
/// [`Vault::read_with_consents_then`]): at log index `index`, for a read
/// that answers or not.
pub(crate) type ThenLeafFn<'a> = dyn FnMut(u64, bool) -> postvault_store::Leaf + 'a;

/// How many times a read is made when mail-cover orders are destroyed
/// while it reads (see [`Vault::read_with_consents`]).
pub(crate) const READ_ATTEMPTS: usize = 4;

/// What a read or fetch made again [`READ_ATTEMPTS`] times answers: mail-cover
/// orders kept being destroyed while it ran.
pub(crate) fn made_again_too_often() -> VaultError {
    VaultError::Refused {
        code: "busy",
        message: "mail-cover orders were destroyed while this ran, each time it was made; \
                  try again"
            .into(),
    }
}

/// A read's leaf reason: it found the key of a mail-cover order gone that
/// it did not know to be destroyed, and claims nothing (docs/formats.md).
pub(crate) const COVER_KEY_GONE: &str = "cover_key_gone";

/// A read's leaf reason: its leaf's tag could not be made (the system's
/// randomness or the tag key failed); it claims nothing and the read fails.
pub(crate) const TAG_UNAVAILABLE: &str = "tag_unavailable";

impl Vault {
    /// Reads `subject` for `purpose` as `principal`.
    pub fn read(
        &self,
        principal: &Principal,
        subject: &str,
        purpose: &str,
    ) -> Result<ReadResponse, VaultError> {
        Ok(self.read_with_consents(principal, subject, purpose)?.0)
    }

    /// A read, with the person's consents as the read found them.
    ///
    /// The decision comes first, from (role, purpose, category, consent)
    /// alone: when the purpose may see nothing whatever the person's
    /// consent, nothing of the person is read; when only consent would open
    /// something, the one look-up made is that consent's, made alike for
    /// every id. The reasons of a denial are those of a person without
    /// consent, so they say what the role and purpose may not see, and
    /// nothing about this person.
    pub(crate) fn read_with_consents(
        &self,
        principal: &Principal,
        subject: &str,
        purpose: &str,
    ) -> Result<(ReadResponse, Vec<postvault_store::ConsentRow>), VaultError> {
        let (read, consents, _) =
            self.read_with_consents_then(principal, subject, purpose, None)?;
        Ok((read, consents))
    }

    /// [`Vault::read_with_consents`] with one more leaf, `then`, appended
    /// after the read's (an access report's accounting): on SQLite at the
    /// next index in the read's commit, elsewhere in a commit of its own
    /// that follows (`RecordStore::read_scoped_then`). `then(index,
    /// answered)`: `answered` is false when the read's leaf says it fails
    /// or is made again, and that attempt's `then` leaf must say so; a read
    /// made again appends its own. Answers the index of the `then` leaf of
    /// the read that answered.
    pub(crate) fn read_with_consents_then(
        &self,
        principal: &Principal,
        subject: &str,
        purpose: &str,
        mut then: Option<&mut ThenLeafFn<'_>>,
    ) -> Result<(ReadResponse, Vec<postvault_store::ConsentRow>, Option<u64>), VaultError> {
        // A read that met a mail-cover order key gone, of an order this
        // process had not yet seen destroyed, claimed nothing and looked:
        // the order was destroyed (lawful), so it is read again. Each
        // attempt more needs another order destroyed meanwhile.
        let mut then_at = None;
        for _ in 0..READ_ATTEMPTS {
            let then = then.as_deref_mut();
            if let Some((read, consents)) =
                self.read_attempt(principal, subject, purpose, then, &mut then_at)?
            {
                return Ok((read, consents, then_at));
            }
        }
        Err(made_again_too_often())
    }

    /// One attempt of [`Vault::read_with_consents_then`]; `None`: read
    /// again. With `then`, that leaf is appended after the read's, and
    /// `then_at` set to its index.
    fn read_attempt(
        &self,
        principal: &Principal,
        subject: &str,
        purpose: &str,
        mut then: Option<&mut ThenLeafFn<'_>>,
        then_at: &mut Option<u64>,
    ) -> Result<Option<(ReadResponse, Vec<postvault_store::ConsentRow>)>, VaultError> {
        crate::vault::check_subject(subject)?;
        let tax = self.pack.taxonomy();
        let purpose_ix = tax
            .purpose_ix(purpose)
            .ok_or_else(|| VaultError::UnknownPurpose(purpose.to_string()))?;
        let decide = |c, consent| {
            self.pack.decide(&DecisionRequest {
                role: principal.role_ix,
                action: Action::Read,
                purpose: purpose_ix,
                category: c,
                consent,
            })
        };
        let now = self.clock.now_ms();
        // The person sees the history of corrections too; every other
        // purpose sees current records only.
        let history = tax.engine().is_subject_access(purpose);
        let scope = if tax.category_ixs().any(|c| decide(c, false).allowed()) {
            // The person's read also asks whether a hold they may know of
            // keeps their records (see `visible`).
            if history {
                ReadScope::Person(now)
            } else {
                ReadScope::All
            }
        } else if tax.category_ixs().any(|c| decide(c, true).allowed()) {
            ReadScope::IfConsented(purpose)
        } else {
            ReadScope::LeafOnly
        };
        let subject_ref = self.subject_ref(subject);
        // Another process may have erased someone this one holds keys of:
        // the key cache is checked against the store's erasure generation,
        // read with the rows when the backend does so (in `assess`, before
        // any key is used on them), else here first.
        let carries_gen = self.store.reads_carry_erasure_gen();
        if !carries_gen {
            self.sync_erasures()?;
        }
        // A read that may see something of the person needs their keys
        // (keys that do not unwrap are as good as missing: the records they
        // seal are reported, never skipped); one that may see nothing only
        // tags its leaf, at one cost for every id.
        let fetch_keys = || match match scope {
            ReadScope::All | ReadScope::Person(_) => self.subject_keys(&subject_ref),
            _ => self.subject_keys_uniform(&subject_ref),
        } {
            Err(VaultError::Crypto(_)) => Ok(None),
            k => k,
        };
        // The cache's epoch before the look-up: if it moves (keys dropped),
        // what was looked up is looked up again.
        let mut keys_epoch = self.key_epoch();
        let mut keys = fetch_keys()?;
        // A look-up made again in `assess` that failed: the leaf says the
        // keys were unavailable, and the read fails after it.
        let mut keys_error: Option<VaultError> = None;

        // Decided from what the store read; kept for the answer.
        let mut allowed = vec![false; tax.categories.len()];
        let mut withheld = Vec::new();
        let mut tag_error = None;
        let mut key_cache = crate::vault::KeyCache::default();
        // Records whose keys are missing (an error), and mail-cover records
        // whose order key is missing (an error unless the order was
        // destroyed), by order.
        let mut missing = 0u64;
        let mut cover_keys_gone: std::collections::HashMap<u32, u64> =
            std::collections::HashMap::new();
        // Whether a cover order key was found gone of an order not seen
        // destroyed: the leaf claims nothing, and the ledger is looked at.
        let mut covers_unchecked = false;
        // Which of the rows the leaf claims: exactly those are opened.
        let mut claimed: Vec<bool> = Vec::new();
        let actor = Actor {
            role: principal.role.clone(),
            id: self.actor_id(&principal.name),
        };
        // What the read found: its leaf's event, but for the person's tag
        // (which depends on the leaf's index), and whether the read opens a
        // mail-cover record (one this purpose may see).
        let mut assess =
            |data: &SubjectData, keys: &mut Option<Arc<SubjectKeyPair>>| -> (Event, bool) {
                // Keys looked at afresh each time: a read made again under the
                // lock does not trust what an earlier look found.
                key_cache = crate::vault::KeyCache::default();
                // An erasure since the keys were looked up (the generation
                // of this snapshot, or one in this process) may have
                // destroyed them: looked up again, from the store.
                // Each look decides afresh: a read made again may succeed
                // where the look before failed. In the one-step path this
                // look-up holds the log's group; it happens only after an
                // erasure, whose key destruction it may wait for (under a
                // millisecond as measured in BENCHMARKS.md; up to the WAL
                // overwrite's two seconds of retries while another process
                // reads the key store).
                keys_error = None;
                let epoch = match data.erasure_gen {
                    Some(generation) => Ok(self.adopt_erasure_gen(generation)),
                    // A backend that reads it with the rows and did not this
                    // time: read now, before any key is used.
                    None if carries_gen => self.sync_erasures().map(|_| self.key_epoch()),
                    None => Ok(self.key_epoch()),
                };
                match epoch.and_then(|epoch| {
                    if epoch == keys_epoch {
                        return Ok(());
                    }
                    *keys = fetch_keys()?;
                    keys_epoch = epoch;
                    Ok(())
                }) {
                    Ok(()) => {}
                    Err(e) => {
                        *keys = None;
                        keys_error = Some(e);
                        // Whatever the epoch, the next look fetches.
                        keys_epoch = u64::MAX;
                    }
                }
                // Only a granted consent the scope let the store read counts.
                let consent = data
                    .consents
                    .iter()
                    .any(|c| c.purpose == purpose && c.granted);
                withheld.clear();
                let mut reasons = BTreeSet::new();
                for c in tax.category_ixs() {
                    let d = decide(c, consent);
                    allowed[usize::from(c.0)] = d.allowed();
                    if !d.allowed() {
                        reasons.extend(d.reasons.iter().map(|r| r.policy.clone()));
                        withheld.push(Withheld {
                            category: tax.category(c).id.clone(),
                            reasons: d.reasons.clone(),
                        });
                    }
                }
                // Keys are made before the records they seal: records committed
                // after the keys were first looked for have keys by now.
                if keys.is_none() && !data.records.is_empty() && keys_error.is_none() {
                    match self.subject_keys(&subject_ref) {
                        Ok(k) => *keys = k,
                        // Keys that do not unwrap: as missing.
                        Err(VaultError::Crypto(_)) => {}
                        // The key store did not answer: not a key lost.
                        Err(e) => keys_error = Some(e),
                    }
                }
                missing = 0;
                cover_keys_gone.clear();
                let mut returned: Vec<&postvault_store::RecordRow> = Vec::new();
                claimed.clear();
                claimed.resize(data.records.len(), false);
                let mut covers = false;
                for (i, r) in data.records.iter().enumerate() {
                    if !visible(tax, &allowed, r, now, history, data.shown_hold_since) {
                        continue;
                    }
                    covers |= (1..=postvault_store::key_id::COVER_MAX).contains(&r.key_id);
                    match self.gone(r, keys.as_deref().map(|k| &k.data), &mut key_cache, now) {
                        Ok(crate::integrity::Gone::No) => {
                            claimed[i] = true;
                            returned.push(r);
                        }
                        Ok(crate::integrity::Gone::Lawfully) => {}
                        Ok(crate::integrity::Gone::Missing) => missing += 1,
                        Ok(crate::integrity::Gone::CoverKey(seq)) => {
                            *cover_keys_gone.entry(seq).or_default() += 1;
                        }
                        // The key store did not answer: not a key lost,
                        // and no more is asked of it under the lock.
                        Err(e) => {
                            keys_error = Some(e);
                            break;
                        }
                    }
                }
                // Records of an order seen destroyed are gone lawfully; of
                // any other, the leaf cannot yet say.
                covers_unchecked = !cover_keys_gone.is_empty() && {
                    let seen = self.covers_seen_destroyed();
                    cover_keys_gone.keys().any(|seq| !seen.contains(seq))
                };
                if keys_error.is_some() || missing > 0 || covers_unchecked {
                    claimed.clear();
                }
                if keys_error.is_some() {
                    // Nothing leaves; the leaf says the keys could not be
                    // looked up (not that they are gone).
                    returned.clear();
                    reasons.insert("keys_unavailable".into());
                } else if missing > 0 {
                    // Nothing leaves; the leaf says the read found keys missing.
                    returned.clear();
                    reasons.insert("keys_missing".into());
                } else if covers_unchecked {
                    // Nothing leaves; the leaf says a mail-cover order's key
                    // was gone. The read then fails, or, the order found
                    // destroyed, is made again.
                    returned.clear();
                    reasons.insert(COVER_KEY_GONE.into());
                }
                let categories: BTreeSet<String> =
                    returned.iter().map(|r| r.category.clone()).collect();
                let event = Event {
                    v: LEAF_VERSION,
                    time: now,
                    action: "read".into(),
                    principal: actor.clone(),
                    purpose: Some(purpose.to_string()),
                    decision: effect(&allowed).into(),
                    pack: self.pack.version().to_string(),
                    reasons: reasons.into_iter().collect(),
                    categories: categories.into_iter().collect(),
                    count: returned.len() as u64,
                    rejected: None,
                    selector: None,
                    instrument: None,
                    subject_tag: None,
                };
                (event, covers)
            };
        // Whether the leaf last built lets the read answer (no reason that
        // makes it fail or read again): a second leaf appended after it
        // (an access report's accounting) says whether it was answered.
        let answers = std::cell::Cell::new(false);
        // The leaf at `idx`: a subject with keys gets its tag; any other
        // leaf random bytes of the same length, so the log shows no
        // difference (and the leaf index a row of the same kind).
        let mut tagged = |event: &Event,
                          template: Option<&crate::leaf::TaggedLeaves>,
                          keys: Option<&SubjectKeyPair>,
                          idx: u64|
         -> postvault_store::Leaf {
            tag_error = None;
            answers.set(!event.reasons.iter().any(|r| {
                matches!(
                    r.as_str(),
                    "keys_unavailable" | "keys_missing" | COVER_KEY_GONE
                )
            }));
            let (tag, index) = match self.tag_and_index(keys.map(|k| &k.tag), idx, now) {
                Ok(t) => t,
                Err(e) => {
                    answers.set(false);
                    tag_error = Some(e);
                    // The read fails: its leaf, untagged, claims nothing
                    // and says why.
                    let mut reasons = event.reasons.clone();
                    reasons.push(TAG_UNAVAILABLE.into());
                    reasons.sort();
                    reasons.dedup();
                    let bytes = Event {
                        reasons,
                        categories: vec![],
                        count: 0,
                        subject_tag: None,
                        ..event.clone()
                    }
                    .to_leaf();
                    return postvault_store::Leaf {
                        bytes,
                        index: postvault_store::LeafIndex::None,
                    };
                }
            };
            let bytes = match template {
                Some(t) => t.leaf(&tag),
                None => Event {
                    subject_tag: Some(base64::engine::general_purpose::STANDARD.encode(tag)),
                    ..event.clone()
                }
                .to_leaf(),
            };
            postvault_store::Leaf { bytes, index }
        };
        // First without the log's lock: the rows read and judged on a
        // snapshot of their own, then only the leaf appended under the lock,
        // if nothing a read could see has changed since (else read again
        // with the leaf, as a backend without such reads always does).
        let mut logged = None;
        if self.store.unlogged_reads_pay()
            && let Some((data, stamp)) = self.store.read_unlogged(&subject_ref, scope)?
        {
            let (event, covers) = assess(&data, &mut keys);
            if event.reasons.iter().any(|r| r == COVER_KEY_GONE) {
                // Outside the lock the ledger may be looked at: orders
                // destroyed since this process last looked are seen so
                // before the read made under the lock below.
                self.destroyed_covers()?;
            }
            // A read that opens mail-cover records keeps the one-step path:
            // their order's key is destroyed outside the store's
            // transactions, so only a look at it under the lock orders it
            // against the leaf. Decided on what this purpose may see, so a
            // purpose that may not see them reads alike whoever holds some.
            // A judgement whose key look-up failed is made again under the
            // lock, where it may succeed, rather than logged as it is.
            if !covers && !event.reasons.iter().any(|r| r == "keys_unavailable") {
                let template = crate::leaf::TaggedLeaves::new(event.clone());
                let mut assessed_again = false;
                let leaf: &mut postvault_store::CheckedLeafFn<'_> = &mut |again, idx| match again {
                    None => tagged(&event, template.as_ref(), keys.as_deref(), idx),
                    Some(data) => {
                        assessed_again = true;
                        let (event, _) = assess(data, &mut keys);
                        tagged(&event, None, keys.as_deref(), idx)
                    }
                };
                let (again, idx) = match then.as_deref_mut() {
                    Some(then) => {
                        let (again, idx, next) = self.store.append_read_leaf_then(
                            stamp,
                            &subject_ref,
                            scope,
                            leaf,
                            &mut |idx, _| then(idx, answers.get()),
                        )?;
                        if answers.get() {
                            *then_at = Some(next);
                        }
                        (again, idx)
                    }
                    None => self
                        .store
                        .append_read_leaf(stamp, &subject_ref, scope, leaf)?,
                };
                if again.is_some() != assessed_again {
                    return Err(VaultError::Store(postvault_store::StoreError::Corrupt(
                        "a read made again was not accounted for by its leaf".into(),
                    )));
                }
                logged = Some((again.unwrap_or(data), idx));
            }
        }
        let (data, log_index) = match logged {
            Some(read) => read,
            None => {
                let leaf: &mut postvault_store::ReadLeafFn<'_> = &mut |data, idx| {
                    let (event, _) = assess(data, &mut keys);
                    tagged(&event, None, keys.as_deref(), idx)
                };
                match then {
                    Some(then) => {
                        let (data, idx, next) = self.store.read_scoped_then(
                            &subject_ref,
                            scope,
                            leaf,
                            &mut |idx, _| then(idx, answers.get()),
                        )?;
                        if answers.get() {
                            *then_at = Some(next);
                        }
                        (data, idx)
                    }
                    None => self.store.read_scoped(&subject_ref, scope, leaf)?,
                }
            }
        };
        if let Some(e) = keys_error {
            return Err(e);
        }
        if let Some(e) = tag_error {
            return Err(e.into());
        }
        if missing > 0 {
            return Err(VaultError::RecordKeysMissing { records: missing });
        }
        // Any order whose key was gone and that was not destroyed lost its
        // records' key unlawfully: an error (the leaf claimed nothing). If
        // all were destroyed and one was not seen so by the leaf's
        // judgement, that leaf claimed nothing: read again.
        if covers_unchecked {
            self.check_cover_keys(&cover_keys_gone)?;
            return Ok(None);
        }

        // The leaf is durable: only now is anything opened, and only what
        // it claims, with the keys the judgement found (kept in the cache).
        let mut records = Vec::new();
        for (r, _) in data
            .records
            .iter()
            .zip(&claimed)
            .filter(|(_, claimed)| **claimed)
        {
            let Some(plain) = self.open_record(r, keys.as_deref(), &mut key_cache)? else {
                return Err(VaultError::Store(postvault_store::StoreError::Corrupt(
                    "a record the read's leaf claims had its key then and not after".into(),
                )));
            };
            if let Some(rec) = to_read_record(tax, purpose_ix, r, &plain)? {
                records.push(rec);
            }
        }
        Ok(Some((
            ReadResponse {
                subject: subject.to_string(),
                purpose: purpose.to_string(),
                decision: effect(&allowed).into(),
                pack: self.pack.version().to_string(),
                log_index,
                records,
                withheld,
            },
            data.consents,
        )))
    }
}

/// A record as a read or a disclosure returns it, with the read-time
/// transforms of `purpose` applied; `None` for a category the pack no
/// longer has.
pub(crate) fn to_read_record(
    tax: &postvault_policy::Taxonomy,
    purpose: postvault_policy::PurposeIx,
    r: &postvault_store::RecordRow,
    plain: &[u8],
) -> Result<Option<ReadRecord>, VaultError> {
    let Some(cix) = tax.category_ix(&r.category) else {
        return Ok(None);
    };
    let cat = tax.category(cix);
    let (raw, legal_basis) = parse_payload(plain)?;
    let fields = if crate::minimize::transforms_on_read(cat, purpose) {
        let mut map: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|_| corrupt())?;
        transform_for_read(cat, purpose, &mut map);
        serde_json::value::to_raw_value(&map).map_err(|_| corrupt())?
    } else {
        raw
    };
    Ok(Some(ReadRecord {
        id: uuid::Uuid::from_bytes(r.id).to_string(),
        category: r.category.clone(),
        collected_for: r.purpose.clone(),
        collected_at: format_ms(r.collected_at),
        expires_at: format_ms(r.expires_at),
        legal_basis,
        superseded_by: r
            .superseded_by
            .map(|id| uuid::Uuid::from_bytes(id).to_string()),
        fields: Fields(fields),
    }))
}

/// `allow` when the purpose may see at least one category, else `deny`.
fn effect(allowed: &[bool]) -> &'static str {
    if allowed.iter().any(|&a| a) {
        "allow"
    } else {
        "deny"
    }
}

fn visible(
    tax: &postvault_policy::Taxonomy,
    allowed: &[bool],
    r: &postvault_store::RecordRow,
    now: i64,
    history: bool,
    shown_hold_since: Option<i64>,
) -> bool {
    // The person also sees what a legal hold keeps past its retention, as
    // far as a hold in force that they may know of explains it: records
    // whose retention ended after that hold was placed. What only holds
    // under a delay order still running keep is shown as if nothing held
    // it (it is deleted when those holds end), so the report tells nothing
    // of a hold the person may not know of yet.
    (r.expires_at > now
        || (history
            && r.key_id == postvault_store::key_id::HOLD
            && shown_hold_since.is_some_and(|since| r.expires_at >= since)))
        && (history || r.superseded_by.is_none())
        && tax
            .category_ix(&r.category)
            .is_some_and(|c| allowed.get(usize::from(c.0)).copied().unwrap_or(false))
}

fn corrupt() -> VaultError {
    VaultError::Store(postvault_store::StoreError::Corrupt(
        "a sealed record does not hold a record payload".into(),
    ))
}

/// The sealed payload's `fields` object, as its text, and its legal basis.
fn parse_payload(
    plain: &[u8],
) -> Result<(Box<serde_json::value::RawValue>, Option<String>), VaultError> {
    // Straight into its shape: the fields are only checked to be JSON (the
    // payload is authenticated: the vault wrote it) and kept as text.
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        #[serde(borrow)]
        fields: &'a serde_json::value::RawValue,
        #[serde(default)]
        legal_basis: Option<Value>,
    }
    // One UTF-8 check for the whole payload, not one a string.
    let text = std::str::from_utf8(plain).map_err(|_| corrupt())?;
    let p: Payload<'_> = serde_json::from_str(text).map_err(|_| corrupt())?;
    if !p.fields.get().starts_with('{') {
        return Err(corrupt());
    }
    let legal_basis = match p.legal_basis {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    Ok((p.fields.to_owned(), legal_basis))
}
