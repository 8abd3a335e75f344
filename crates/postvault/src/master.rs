//! Moving the master key out of the key store and rotating it.
//!
//! A vault keeps its master key in its key store by default; `keys
//! externalize` seals it there under an external key (a file the operator
//! guards, or what a KMS command prints) so that a stolen key store alone
//! opens nothing, and `keys rotate-master` moves to a new external key.
//! Both draw a new wrapping key and wrap every key again under it, in one
//! key-store transaction: a crash leaves the old state whole (the old key
//! still opens it) or the new one (the new key does). The root of the
//! master key stays, so subject refs and blind indexes in the data store
//! never change. Both need the vault to themselves: no other process may
//! have it open, or it would go on wrapping new keys under the old key.

use serde::Serialize;

use postvault_crypto::{ExternalKey, KeyKind, MasterKey};
use postvault_store::{KeyAction, KeyItem};

use crate::error::VaultError;
use crate::vault::{
    LOG_KEY_REF, LOG_KEY_SECRET, MASTER_SECRET, SEALED_MASTER_SECRET, VAULT_ID, Vault,
};

/// What a rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RotateReport {
    /// The id of the external key the master key is now sealed under
    /// (16 hex digits; it names the key, it is not the key).
    pub key_id: String,
    /// The id of the one it was sealed under before, if it was.
    pub previous_key_id: Option<String>,
    /// The master key was in the key store before, and no longer is.
    pub moved_out_of_key_store: bool,
    /// People whose keys were wrapped again.
    pub subjects: u64,
    /// Named keys (period, hold, order, gateway, log signing) wrapped again.
    pub secrets: u64,
    /// Keys that did not unwrap under the old key, left as they were (they
    /// were unusable before; `postvault check` counts them).
    pub damaged: u64,
}

impl Vault {
    /// Seals the master key under `new` with a new wrapping key, every key
    /// wrapped again, in one key-store transaction; the plain master key,
    /// if the key store held it, is destroyed in it. Consumes the vault:
    /// open it again with `new`.
    pub fn rotate_master(self, new: &ExternalKey) -> Result<RotateReport, VaultError> {
        if let Some(lock) = &self.lock {
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(VaultError::VaultInUse(format!(
                        "the vault at `{}` is open in another process (a service, a collection): stop it first, or it would go on wrapping keys under the old master key",
                        self.dir().display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(VaultError::Io {
                        path: self.dir().display().to_string(),
                        source: e,
                    });
                }
            }
        }
        let vault_id = self.keys.secret(VAULT_ID)?.unwrap_or_default();
        let previous_key_id = self
            .keys
            .secret(SEALED_MASTER_SECRET)?
            .and_then(|s| MasterKey::sealed_key_id(&s));
        let next = self.master.with_new_kek(&self.rng)?;
        let sealed = next.seal_under(new, &self.rng, &vault_id)?;
        let mut report = RotateReport {
            key_id: new.id(),
            previous_key_id,
            moved_out_of_key_store: !self.external_master,
            ..RotateReport::default()
        };
        let old = &self.master;
        let rng = &self.rng;
        let again = |kind: KeyKind, label: &[u8], v: &[u8]| old.rewrap(&next, rng, kind, label, v);
        let mut damaged = 0u64;
        self.keys
            .rewrap(
                &mut |item| {
                    Ok(match item {
                        KeyItem::Subject(k) => match (
                            again(KeyKind::Data, &k.subject, &k.data),
                            again(KeyKind::Tag, &k.subject, &k.tag),
                        ) {
                            (Ok(d), Ok(t)) => KeyAction::Subject(d, t),
                            _ => {
                                damaged += 1;
                                KeyAction::Keep
                            }
                        },
                        KeyItem::Secret(name, v) => {
                            let label: Option<&[u8]> = if name == crate::gateway::GATEWAY_SECRET {
                                Some(crate::gateway::GATEWAY_KEY_REF)
                            } else if name.starts_with(crate::rights::PERIOD_PREFIX)
                                || name.starts_with(crate::rights::HOLD_PREFIX)
                                || name.starts_with("cover:")
                            {
                                Some(name.as_bytes())
                            } else {
                                None
                            };
                            match (name, label) {
                                (MASTER_SECRET, _) => KeyAction::Delete,
                                // The seed of a vault that kept its master key
                                // in the key store is plain: wrapped from now.
                                (LOG_KEY_SECRET, _) if v.len() != postvault_crypto::WRAPPED_LEN => {
                                    KeyAction::Secret(
                                        next.wrap_raw(rng, KeyKind::Data, LOG_KEY_REF, v).map_err(
                                            |e| {
                                                postvault_store::StoreError::Corrupt(format!(
                                                    "wrapping the log's signing key: {e}"
                                                ))
                                            },
                                        )?,
                                    )
                                }
                                (LOG_KEY_SECRET, _) => match again(KeyKind::Data, LOG_KEY_REF, v) {
                                    Ok(w) => KeyAction::Secret(w),
                                    Err(_) => {
                                        damaged += 1;
                                        KeyAction::Keep
                                    }
                                },
                                (_, Some(label)) => match again(KeyKind::Data, label, v) {
                                    Ok(w) => KeyAction::Secret(w),
                                    Err(_) => {
                                        damaged += 1;
                                        KeyAction::Keep
                                    }
                                },
                                // The vault id, the sealed master key (replaced
                                // below) and anything not wrapped.
                                _ => KeyAction::Keep,
                            }
                        }
                    })
                },
                &[(SEALED_MASTER_SECRET.to_string(), sealed)],
            )
            .map(|n| {
                report.subjects = n.subjects;
                report.secrets = n.secrets;
            })?;
        report.damaged = damaged;
        Ok(report)
    }

    /// Whether the master key is sealed under an external key.
    pub fn master_key_is_external(&self) -> bool {
        self.external_master
    }
}
