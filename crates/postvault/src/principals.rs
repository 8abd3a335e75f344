//! Principals over their lifetime: revocation and token rotation.
//!
//! A principal's token is found by its hash on a unique index (never a scan
//! of every principal). Revoking a principal or rotating its token is one
//! store transaction holding the change, its one leaf and a new principals
//! generation; every node that caches tokens (the HTTP service) watches the
//! generation and drops its cache when it moves, so an old token is refused
//! everywhere within the interval it watches at (one second at most).
//! A revoked principal's name stays taken: the ledger and the log name it.
//!
//! A new token goes only to the principal it belongs to: over the API a
//! principal rotates its own token and nobody else's (an officer who could
//! receive an agency's token could submit as the agency and approve as
//! themself, and the two-person rule would be gone). The operator on the
//! vault's machine rotates any principal's token from the command line.

use serde::Serialize;

use crate::error::VaultError;
use crate::leaf::{Actor, Event, LEAF_VERSION};
use crate::vault::{Principal, Vault};

/// The refusal of a revoked principal's name.
pub(crate) fn revoked(name: &str) -> VaultError {
    VaultError::Refused {
        code: "principal_revoked",
        message: format!("principal `{name}` was revoked"),
    }
}

/// The answer to a revocation or a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipalChange {
    pub name: String,
    /// `revoked` or `rotated`.
    pub status: String,
    /// The new bearer token of a rotation, shown once (only its hash is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The leaf that accounts for the change.
    pub log_index: u64,
}

impl Vault {
    /// Revokes principal `name`: its token is refused from now on, by every
    /// node within a second. `by` is the officer acting (None: the operator,
    /// from the command line). One leaf.
    pub fn revoke_principal(
        &self,
        by: Option<&Principal>,
        name: &str,
    ) -> Result<PrincipalChange, VaultError> {
        self.principal_change_allowed(by, "principal_revoke")?;
        let now = self.clock.now_ms();
        let leaf = self.principal_event(by, "principal_revoke", name, now);
        let log_index = self
            .store
            .revoke_principal(name, now, &mut |_, _| leaf.clone().into())
            .map_err(|e| not_active(e, name))?;
        Ok(PrincipalChange {
            name: name.to_string(),
            status: "revoked".into(),
            token: None,
            log_index,
        })
    }

    /// Gives principal `name` a new token (returned once) and refuses the
    /// old one from now on, on every node within a second. One leaf.
    /// `by` (over the API) must be `name` itself, whatever its role: any
    /// other principal, an officer too, is refused with
    /// `rotate_own_token_only` and one deny leaf, before anything about
    /// `name` is looked up. None: the operator, from the command line.
    pub fn rotate_principal(
        &self,
        by: Option<&Principal>,
        name: &str,
    ) -> Result<PrincipalChange, VaultError> {
        if let Some(p) = by
            && p.name != name
        {
            self.deny_leaf(p, "principal_rotate", None)?;
            return Err(VaultError::Refused {
                code: "rotate_own_token_only",
                message: "a principal may rotate only its own token over the API; a privacy officer may revoke another principal, and the operator rotates it with `postvault principal rotate NAME` on the vault's machine".into(),
            });
        }
        let now = self.clock.now_ms();
        let token = self.new_token()?;
        let leaf = self.principal_event(by, "principal_rotate", name, now);
        let log_index = self
            .store
            .rotate_principal(name, &crate::vault::token_hash(&token), &mut |_, _| {
                leaf.clone().into()
            })
            .map_err(|e| not_active(e, name))?;
        Ok(PrincipalChange {
            name: name.to_string(),
            status: "rotated".into(),
            token: Some(token),
            log_index,
        })
    }

    /// The principals generation (see [`postvault_store::PrincipalStore::principals_gen`]).
    pub fn principals_gen(&self) -> Result<u64, VaultError> {
        Ok(self.store.principals_gen()?)
    }

    /// Only a privacy officer revokes principals over the API (one deny
    /// leaf otherwise); the operator on the command line may.
    fn principal_change_allowed(
        &self,
        by: Option<&Principal>,
        action: &str,
    ) -> Result<(), VaultError> {
        match by {
            Some(p) => self.require_officer(p, "revoke principals", action),
            None => Ok(()),
        }
    }

    /// The leaf of a change: who acted (the operator when nobody), and the
    /// pseudonymous id of the principal changed as the selector.
    fn principal_event(
        &self,
        by: Option<&Principal>,
        action: &str,
        name: &str,
        now: i64,
    ) -> Vec<u8> {
        let principal = match by {
            Some(p) => Actor {
                role: p.role.clone(),
                id: self.actor_id(&p.name),
            },
            None => Actor {
                role: "operator".into(),
                id: self.actor_id("operator"),
            },
        };
        Event {
            v: LEAF_VERSION,
            time: now,
            action: action.into(),
            principal,
            purpose: None,
            decision: "allow".into(),
            pack: self.pack.version().to_string(),
            reasons: vec![],
            categories: vec![],
            count: 1,
            rejected: None,
            selector: Some(format!("principal:{}", self.actor_id(name))),
            instrument: None,
            subject_tag: None,
        }
        .to_leaf()
    }
}

fn not_active(e: postvault_store::StoreError, name: &str) -> VaultError {
    match e {
        postvault_store::StoreError::PrincipalNotActive(_) => VaultError::Refused {
            code: "principal_not_active",
            message: format!("no principal `{name}` in force: unknown, or revoked already"),
        },
        e => e.into(),
    }
}
