//! Consent: the person's act, recorded only through the rights channel.
//!
//! Architecture invariant: consent changes only here. A principal acting
//! for the person (a role that reads for the pack's subject-access purpose,
//! `[engine] subject_access_purpose`: in the postal pack `subject_access`,
//! read for by the privacy officer and the person's own service) records a
//! grant or a withdrawal; each
//! change is one leaf tagged for the person. Collection never creates,
//! changes or revives consent (a line carrying `consent` is rejected), so a
//! withdrawal stands until the person grants again. Consent is refused,
//! not stored, for a purpose the engine prohibits (no consent can open it)
//! and for one that needs none (it would mean nothing, and would let a
//! record claim a consent the policy never asked for).

use postvault_policy::Cell;
use postvault_store::{ConsentRow, WriteBatch};

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

/// A consent to a prohibited purpose.
pub const CONSENT_PROHIBITED_PURPOSE: &str = "consent_prohibited_purpose";
/// A consent to a purpose that needs none.
pub const CONSENT_NOT_REQUIRED: &str = "consent_not_required";

impl Vault {
    /// Whether a person may ask to correct records of `category` (a
    /// category of the pack the vault does not keep itself).
    pub fn correctable(&self, category: &str) -> bool {
        let tax = self.pack.taxonomy();
        tax.category_ix(category)
            .is_some_and(|c| !tax.engine().kept_by_vault(&tax.category(c).id))
    }

    /// The purposes a person may give or withdraw consent for: those with a
    /// cell that needs consent, outside the prohibited group.
    pub fn consentable_purposes(&self) -> Vec<String> {
        let tax = self.pack.taxonomy();
        tax.purpose_ixs()
            .filter(|&p| {
                !tax.purpose(p).prohibited()
                    && tax.category_ixs().any(|c| tax.cell(p, c) == Cell::Consent)
            })
            .map(|p| tax.purpose(p).id.clone())
            .collect()
    }

    /// Records the person's consent for `purpose` (granted or withdrawn), as
    /// `principal` acting on the person's request; it takes effect on the next
    /// read. One leaf, tagged for the person, accounts for it. Only a role
    /// that answers the person (one that reads for the pack's subject-access
    /// purpose: in the postal pack `privacy_officer`, or the `subject_access`
    /// role) may do this. Refused, with one deny leaf and nothing stored:
    /// a purpose under the pack's prohibited group
    /// (`consent_prohibited_purpose`) and a purpose no cell of which needs
    /// consent (`consent_not_required`).
    pub fn set_consent(
        &self,
        principal: &Principal,
        subject: &str,
        purpose: &str,
        granted: bool,
    ) -> Result<u64, VaultError> {
        crate::vault::check_subject(subject)?;
        let tax = self.pack.taxonomy();
        let purpose_ix = tax
            .purpose_ix(purpose)
            .ok_or_else(|| VaultError::UnknownPurpose(purpose.to_string()))?;
        let action = if granted {
            "consent_grant"
        } else {
            "consent_withdraw"
        };
        if !self.acts_for_subject(principal) {
            self.deny_leaf(principal, action, Some(purpose))?;
            return Err(VaultError::NotPermitted(format!(
                "role `{}` may not record consent; {}",
                principal.role,
                self.subject_access_may()
            )));
        }
        let p = tax.purpose(purpose_ix);
        let refused = if p.prohibited() {
            Some((
                CONSENT_PROHIBITED_PURPOSE,
                format!(
                    "purpose `{}` is prohibited: no consent can open customer data to it (R25)",
                    p.id
                ),
            ))
        } else if !tax
            .category_ixs()
            .any(|c| tax.cell(purpose_ix, c) == Cell::Consent)
        {
            Some((
                CONSENT_NOT_REQUIRED,
                format!(
                    "purpose `{}` needs no consent: the pack decides it without one, so none is recorded",
                    p.id
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            self.refusal_leaf(principal, action, purpose, code)?;
            return Err(VaultError::Refused { code, message });
        }
        let now = self.clock.now_ms();
        let subject_ref = self.subject_ref(subject);
        let keys = self.ensure_subject_keys(&[subject_ref])?;
        let tag = keys.get(&subject_ref).map(|k| &k.tag);
        let wb = WriteBatch {
            consents: vec![ConsentRow {
                subject: subject_ref,
                purpose: purpose.to_string(),
                granted,
                at: now,
            }],
            leaves: 1,
            ..WriteBatch::default()
        };
        let actor = Actor {
            role: principal.role.clone(),
            id: self.actor_id(&principal.name),
        };
        // Encoded before the store's lock; under it only the tag is made.
        let prepared = crate::leaf_index::PreparedLeaf::new(Event {
            v: LEAF_VERSION,
            time: now,
            action: action.into(),
            principal: actor,
            purpose: Some(purpose.to_string()),
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![],
            count: 0,
            rejected: None,
            selector: None,
            instrument: None,
            subject_tag: None,
        });
        let mut index_error = None;
        let first = self.store.write(&wb, &mut |idx, _| {
            // A retried transaction builds its leaf again: only the last
            // attempt's error counts.
            index_error = None;
            match tag {
                Some(t) => self.prepared_leaf(&prepared, Some(t), idx, &mut index_error),
                None => prepared.event().to_leaf().into(),
            }
        })?;
        // The key was there; only the system's randomness can fail here.
        if let Some(e) = index_error {
            return Err(e.into());
        }
        Ok(first)
    }

    /// The deny leaf of a refused consent: the code, no subject tag (nothing
    /// of the person was touched).
    fn refusal_leaf(
        &self,
        principal: &Principal,
        action: &str,
        purpose: &str,
        code: &str,
    ) -> Result<u64, VaultError> {
        let now = self.clock.now_ms();
        let actor = Actor {
            role: principal.role.clone(),
            id: self.actor_id(&principal.name),
        };
        Ok(self.store.append_leaves(1, &mut |_, _| {
            Event {
                v: LEAF_VERSION,
                time: now,
                action: action.into(),
                principal: actor.clone(),
                purpose: Some(purpose.to_string()),
                decision: "deny".into(),
                pack: self.pack.version().to_string(),
                reasons: vec![code.to_string()],
                categories: vec![],
                count: 0,
                rejected: None,
                selector: None,
                instrument: None,
                subject_tag: None,
            }
            .to_leaf()
            .into()
        })?)
    }
}
