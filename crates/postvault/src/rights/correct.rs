//! Correction (R21): a subject's record replaced by a corrected one, with
//! the prior recipients told.

use postvault_store::{RecordRow, key_id};

use crate::clock::format_ms;
use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

use super::*;

impl Vault {
    /// Corrects a record of `subject` at the person's request, as
    /// `principal` (a role acting for the pack's subject-access purpose,
    /// `subject_access` in the postal pack): `fields` (a JSON
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
        if !self.acts_for_subject(principal) {
            self.deny_leaf(principal, "correct", tax.engine().subject_access_purpose())?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not correct records; {}",
                principal.role,
                self.subject_access_may()
            )));
        }
        let cix = tax
            .category_ix(category)
            .ok_or_else(|| VaultError::Invalid {
                what: "category",
                why: "no such category in the pack".into(),
            })?;
        let cat = tax.category(cix);
        if tax.engine().kept_by_vault(&cat.id) {
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
            .subject_records_committed(&subject_ref)?
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
        // Encoded before the store's lock; under it only the tag is made.
        let prepared = crate::leaf_index::PreparedLeaf::new(Event {
            v: LEAF_VERSION,
            time: now,
            action: "correct".into(),
            principal: actor,
            purpose: Some(target.purpose.clone()),
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![cat.id.clone()],
            count: 1,
            rejected: None,
            selector: None,
            instrument: None,
            subject_tag: None,
        });
        let mut index_error = None;
        let log_index = self
            .store
            .write(&wb, &mut |idx, _| {
                index_error = None;
                self.prepared_leaf(&prepared, Some(&keys.tag), idx, &mut index_error)
            })
            .map_err(|e| match e {
                postvault_store::StoreError::Stale | postvault_store::StoreError::Conflict => {
                    VaultError::NotPermitted(
                        "the record changed meanwhile (corrected or erased); try again".into(),
                    )
                }
                e => e.into(),
            })?;
        if let Some(e) = index_error {
            return Err(e.into());
        }
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
}

/// The fields of a correction: a JSON object of fields, or `{"fields": {...}}`.
pub(crate) fn parse_correction(text: &str) -> Result<crate::minimize::InputFields, VaultError> {
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

pub(super) fn record_aad_of(r: &RecordRow) -> Vec<u8> {
    crate::collect::record_aad(
        &r.subject,
        &r.id,
        &r.category,
        &r.purpose,
        r.collected_at,
        r.expires_at,
    )
}
