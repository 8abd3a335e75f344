//! Sealing a batch of accepted lines: the rows, their blind-index lookups
//! and the batch's one accounting leaf, ready for the writer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use postvault_policy::CategoryIx;
use postvault_store::{LookupRow, RecordRow, SubjectRef, WriteBatch, key_id};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
    pub(super) fn prepare_batch(
        &self,
        principal: &Principal,
        batch: Batch,
        lines_read: u64,
        digest: [u8; 32],
    ) -> Result<Prepared, VaultError> {
        let tax = self.pack.taxonomy();
        let now = self.clock.now_ms();
        let subjects: Vec<SubjectRef> = batch.lines.iter().map(|a| a.subject).collect();
        let erasure_gen = self.sync_erasures()?;
        let keys = self.ensure_subject_keys(&subjects)?;
        let mut wb = WriteBatch {
            leaves: 1,
            erasure_gen: Some(erasure_gen),
            ..WriteBatch::default()
        };
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut purposes = BTreeSet::new();
        let mut cover_keys = std::collections::HashMap::new();
        let mut periods = std::collections::HashMap::new();
        let mut nonces = postvault_crypto::Nonces::new();
        let mut last_key: Option<((SubjectRef, CategoryIx), postvault_crypto::DataKey)> = None;
        for a in &batch.lines {
            let cat = tax.category(a.category);
            let purpose = &tax.purpose(a.purpose).id;
            let key = keys
                .get(&a.subject)
                .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?;
            let id = self.ids.next(now);
            let expires_at = crate::rights::expiry(now, cat.retention_days);
            let plain = payload(cat, &a.fields, a.legal_basis.as_deref());
            let aad = record_aad(&a.subject, &id, &cat.id, purpose, now, expires_at);
            let key_id = if a.key_id == 0 {
                key_id::PERIOD
            } else {
                a.key_id
            };
            // One `now` per batch: one period per category.
            let period = match periods.entry(a.category) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    self.period_key(&cat.id, expires_at, true)?
                        .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?
                        .record_keyer(),
                ),
            };
            // A mailpiece's scans come one after another for one person:
            // the record key of the last (subject, category) is reused.
            let slot = (a.subject, a.category);
            let record_key = match &last_key {
                Some((s, k)) if *s == slot => k,
                _ => {
                    let k = period.record_key(&key.data)?;
                    &last_key.insert((slot, k)).1
                }
            };
            let sealed = if key_id == key_id::PERIOD {
                record_key.seal_from(&mut nonces, &self.rng, &aad, &plain)?
            } else {
                // A mail-cover record needs its order's key too: destroying
                // the order, the person's key or the period's key ends it.
                let k = match cover_keys.entry(a.key_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        self.cover_key(u64::from(a.key_id))?
                            .ok_or(VaultError::Crypto(postvault_crypto::CryptoError::Open))?,
                    ),
                };
                k.record_key(record_key)?
                    .seal_from(&mut nonces, &self.rng, &aad, &plain)?
            };
            for lookup in &cat.lookups {
                if let Some((domain, value)) = lookup_value(cat, lookup, &a.fields) {
                    wb.lookups.push(LookupRow {
                        token: self.master.blind_index(&domain, value.as_bytes()),
                        subject: a.subject,
                        record: id,
                    });
                }
            }
            wb.records.push(RecordRow {
                id,
                subject: a.subject,
                category: cat.id.clone(),
                purpose: purpose.clone(),
                source: principal.name.clone(),
                collected_at: now,
                expires_at,
                key_id,
                sealed,
                superseded_by: None,
            });
            *categories.entry(cat.id.clone()).or_default() += 1;
            purposes.insert(purpose.clone());
        }
        let accepted = wb.records.len() as u64;
        let event = Event {
            v: LEAF_VERSION,
            time: now,
            action: "collect".into(),
            principal: Actor {
                role: principal.role.clone(),
                id: self.actor_id(&principal.name),
            },
            purpose: (!purposes.is_empty())
                .then(|| purposes.iter().cloned().collect::<Vec<_>>().join(",")),
            decision: if accepted > 0 { "allow" } else { "deny" }.into(),
            pack: self.pack.version().to_string(),
            reasons: batch.reasons.iter().cloned().collect(),
            categories: categories.keys().cloned().collect(),
            count: accepted,
            rejected: Some(batch.rejected),
            selector: Some(format!(
                "batch:{}",
                uuid::Uuid::from_bytes(self.ids.next(now))
            )),
            instrument: None,
            subject_tag: None,
        };
        Ok(Prepared {
            batch: wb,
            source: batch,
            leaf: event.to_leaf(),
            accepted,
            categories,
            lines_read,
            digest,
        })
    }
}

/// A sealed batch on its way to the writer.
pub(super) struct Prepared {
    pub(super) batch: WriteBatch,
    /// The checked lines, to seal again if an erasure ran meanwhile.
    pub(super) source: Batch,
    pub(super) leaf: Vec<u8>,
    pub(super) accepted: u64,
    pub(super) categories: BTreeMap<String, u64>,
    pub(super) lines_read: u64,
    /// SHA-256 of the input through `lines_read` (runs only).
    pub(super) digest: [u8; 32],
}

/// A batch the writer committed.
pub(super) struct Committed {
    /// None for a batch of blank lines, which writes nothing.
    pub(super) first_leaf: Option<u64>,
    pub(super) accepted: u64,
    pub(super) rejected: u64,
    pub(super) errors: Vec<LineError>,
    /// What the batch held, to be dropped off the writer's thread.
    pub(super) spent: Option<(WriteBatch, Batch)>,
    pub(super) categories: BTreeMap<String, u64>,
    pub(super) lines_read: u64,
}

/// The sealed plaintext: `{"fields": {...}, "legal_basis": "..."}` (the
/// legal basis is free text, so it is sealed with the fields).
pub(crate) fn payload(
    cat: &postvault_policy::Category,
    fields: &crate::minimize::Minimized,
    legal_basis: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"fields\":");
    crate::minimize::write_fields(cat, fields, &mut out);
    if let Some(b) = legal_basis {
        out.extend_from_slice(b",\"legal_basis\":");
        let _ = serde_json::to_writer(&mut out, b);
    }
    out.push(b'}');
    out
}

/// The associated data sealed with a record: binds the ciphertext to its
/// subject, id, category, purpose and retention, so none can be swapped or
/// extended in the store. Layout in docs/formats.md.
pub(crate) fn record_aad(
    subject: &SubjectRef,
    id: &[u8; 16],
    category: &str,
    purpose: &str,
    collected_at: i64,
    expires_at: i64,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96);
    record_aad_into(
        &mut aad,
        subject,
        id,
        category,
        purpose,
        collected_at,
        expires_at,
    );
    aad
}

/// [`record_aad`] into `aad` (its contents replaced).
pub(crate) fn record_aad_into(
    aad: &mut Vec<u8>,
    subject: &SubjectRef,
    id: &[u8; 16],
    category: &str,
    purpose: &str,
    collected_at: i64,
    expires_at: i64,
) {
    aad.clear();
    aad.extend_from_slice(b"postvault/v1/record\0");
    aad.extend_from_slice(subject);
    aad.extend_from_slice(id);
    for s in [category, purpose] {
        aad.extend_from_slice(&(s.len() as u16).to_be_bytes());
        aad.extend_from_slice(s.as_bytes());
    }
    aad.extend_from_slice(&collected_at.to_be_bytes());
    aad.extend_from_slice(&expires_at.to_be_bytes());
}

/// The blind-index domain and normalized value of one lookup, if every field
/// of it is present.
pub(crate) fn lookup_value(
    cat: &postvault_policy::Category,
    lookup: &[usize],
    fields: &crate::minimize::Minimized,
) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut parts = Vec::new();
    for &ix in lookup {
        let spec = cat.fields.get(ix)?;
        names.push(spec.name.as_str());
        // An absent optional part of a composite lookup counts as empty.
        let v = crate::minimize::field_value(fields, ix).and_then(Value::as_str);
        if v.is_none() && lookup.len() == 1 {
            return None;
        }
        parts.push(normalize(v.unwrap_or("")));
    }
    Some((
        format!("{}.{}", cat.id, names.join("+")),
        parts.join("\u{1f}"),
    ))
}

/// Lookup normalization: trimmed, lowercase, inner whitespace collapsed.
pub fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}
