//! The gateway's keys: the key that seals instruments in the ledger and the
//! keyed tags of documents and cases that let quotas count without clear text.

use postvault_crypto::{DataKey, KeyKind};
use postvault_policy::disclosure::{Instrument, parse_stored_instrument};
use postvault_store::{DisclosureKeys, DisclosureRow};

use crate::error::VaultError;
use crate::vault::{SubjectKeyPair, Vault};

use super::*;

impl Vault {
    /// The key that seals instruments in the ledger, made on first use.
    pub(super) fn gateway_key(&self) -> Result<DataKey, VaultError> {
        let wrapped = match self.keys.secret(GATEWAY_SECRET)? {
            Some(w) => w,
            None => {
                let w = self
                    .master
                    .new_wrapped(&self.rng, KeyKind::Data, GATEWAY_KEY_REF)?;
                match self.keys.put_secret(GATEWAY_SECRET, &w) {
                    Ok(()) => w,
                    // Another process made it first.
                    Err(postvault_store::StoreError::SecretExists(_)) => {
                        self.keys.secret(GATEWAY_SECRET)?.ok_or_else(|| {
                            VaultError::Store(postvault_store::StoreError::Corrupt(
                                "the gateway key was made by another process, then not found"
                                    .into(),
                            ))
                        })?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(self.master.data_key(&wrapped, GATEWAY_KEY_REF)?)
    }

    /// Recomputes the ledger's instrument and case keys when their
    /// derivation changed (version [`LEDGER_KEYS_VERSION`]): each sealed
    /// instrument is opened once. Runs at open, before anything is decided.
    pub(crate) fn upgrade_ledger_keys(&self) -> Result<(), VaultError> {
        if self.store.meta(LEDGER_KEYS_META)?.as_deref() == Some(LEDGER_KEYS_VERSION) {
            return Ok(());
        }
        let mut keys = Vec::new();
        for row in self.store.disclosures()? {
            let inst = self.open_instrument(&row)?;
            keys.push(DisclosureKeys {
                id: row.id.clone(),
                instrument_key: inst.as_ref().and_then(|i| self.document_key(i)),
                case_key: inst.as_ref().and_then(|i| self.case_key(i)),
            });
        }
        if !keys.is_empty() {
            self.store.set_disclosure_keys(&keys)?;
        }
        self.store.set_meta(LEDGER_KEYS_META, LEDGER_KEYS_VERSION)?;
        Ok(())
    }

    /// The keyed hash of a document's identity, the same whoever presents
    /// it and however its references are written (each a
    /// [`crate::fold::reference_key`] or [`crate::fold::identity_key`]):
    ///
    /// - a court's document is its docket and instrument id: not its kind
    ///   (one warrant presented as a court order is still that warrant) nor
    ///   the court's name, which has many spellings;
    /// - a document without a court (a written request, an administrative
    ///   subpoena, a mail-cover request) is its agency's: kind, agency and
    ///   instrument id, so one agency's reference number neither blocks nor
    ///   reveals another's.
    ///
    /// `None` for an instrument with no id (the pack refuses it).
    pub(crate) fn document_key(&self, inst: &Instrument) -> Option<[u8; 16]> {
        let id = crate::fold::reference_key(&inst.instrument_id);
        if id.is_empty() {
            return None;
        }
        let docket = inst
            .court
            .as_ref()
            .map(|c| crate::fold::reference_key(&c.docket))
            .unwrap_or_default();
        let identity = if docket.is_empty() {
            [
                "agency",
                inst.kind.as_str(),
                &crate::fold::identity_key(&inst.agency),
                &id,
            ]
            .join("\0")
        } else {
            ["court", &docket, &id].join("\0")
        };
        Some(
            self.master
                .blind_index("ledger.document", identity.as_bytes()),
        )
    }

    /// The keyed hash of a case id, the same whoever presents it: quotas per
    /// case count across principals.
    pub(crate) fn case_key(&self, inst: &Instrument) -> Option<[u8; 16]> {
        let case = crate::fold::identity_key(&inst.case_id);
        (!case.is_empty()).then(|| self.master.blind_index("ledger.case", case.as_bytes()))
    }

    /// The instrument of a request as submitted, if it was one.
    pub(crate) fn open_instrument(
        &self,
        row: &DisclosureRow,
    ) -> Result<Option<Instrument>, VaultError> {
        Ok(self
            .open_submission(row)?
            .and_then(|s| parse_stored_instrument(&s).ok()))
    }

    /// The text of a submission as sealed in the ledger (`None`: too large
    /// to keep, or not text).
    pub(crate) fn open_submission(
        &self,
        row: &DisclosureRow,
    ) -> Result<Option<String>, VaultError> {
        if row.sealed.is_empty() {
            return Ok(None);
        }
        let plain = self
            .gateway_key()?
            .open(&instrument_aad(&row.id), &row.sealed)?;
        Ok(String::from_utf8(plain).ok())
    }

    /// The tag of a disclosure leaf and what it is filed under: the
    /// person's own, unless a delay order stands (then a keyed value nobody
    /// but the vault can link, until the notice leaf carries the person's
    /// tag, and a filing under nobody's tokens, so the person's report does
    /// not find it either); random for an unknown person.
    pub(super) fn disclosure_tag(
        &self,
        r: &DisclosureRow,
        keys: Option<&SubjectKeyPair>,
        exists: bool,
        idx: u64,
        now: i64,
    ) -> Result<([u8; 16], postvault_store::LeafIndex), VaultError> {
        let delayed = r.notice_after.is_some_and(|t| t > now);
        match keys {
            Some(k) if exists && !delayed => Ok(self.tag_and_index(Some(&k.tag), idx, now)?),
            Some(_) if exists => {
                let mut v = r.id.as_bytes().to_vec();
                v.extend_from_slice(&idx.to_be_bytes());
                Ok((
                    self.master.blind_index("delayed-disclosure-tag", &v),
                    self.unlinked_index(now)?,
                ))
            }
            _ => Ok(self.tag_and_index(None, idx, now)?),
        }
    }
}

/// The AAD of a sealed instrument: binds it to its request.
pub(super) fn instrument_aad(id: &str) -> Vec<u8> {
    let mut aad = b"postvault/v1/instrument\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}
