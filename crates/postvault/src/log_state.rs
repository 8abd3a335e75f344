//! The log's anti-rollback state: the last checkpoint the vault signed,
//! kept in the key store beside the signing key, apart from the data.
//!
//! Architecture invariant: the vault never signs a checkpoint that does
//! not extend the last one it signed. The state is compared and swapped in
//! the key store (under its lock, on every node) before a new checkpoint
//! is stored in the data store or handed to anyone, so it is never behind
//! a checkpoint that was published. On open and before every signature the
//! data store's tree must extend it: a data store behind it (an older copy,
//! a lost or truncated WAL) or beside it (rewritten leaves) is refused.
//!
//! The data store also keeps every checkpoint; the only one it may lack is
//! the state's own (a stop between the swap and the data store's write),
//! and that one is put back from the key store, never signed again.

use base64::Engine as _;
use postvault_log::{Hash, RootBuilder};
use postvault_store::{KeyStore, LogState, LogStateSwap, Store};
use serde::Serialize;

use crate::error::VaultError;
use crate::vault::{LOG_KEY_SECRET, LOG_VERIFIER_SECRET, VAULT_ID, Vault};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Leaves read per query when a root is computed from the leaves.
const CHUNK: u64 = 65_536;

/// How the data store's log stands against the key store's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStateStatus {
    /// The data store's tree extends the last signed checkpoint.
    Consistent,
    /// Nothing was ever signed.
    Empty,
    /// A vault made before the state existed: it is initialized from the
    /// latest kept checkpoint on open.
    NoState,
    /// The data store keeps a validly signed checkpoint beyond the key
    /// store's state (an older copy of the key store): the state is moved
    /// forward to it on open.
    KeyStoreBehind,
    /// The data store holds fewer leaves than the last signed checkpoint.
    Behind,
    /// The data store's first leaves no longer hash to the last signed root.
    Diverged,
}

/// The last signed checkpoint as the key store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedState {
    pub size: u64,
    /// Base64 of the root.
    pub root: String,
    /// Checkpoints signed so far.
    pub checkpoints_signed: u64,
}

impl From<&LogState> for SignedState {
    fn from(s: &LogState) -> Self {
        SignedState {
            size: s.size,
            root: B64.encode(s.root),
            checkpoints_signed: s.signed,
        }
    }
}

/// What [`check_log_state`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogStateReport {
    /// False when the vault refuses to open and sign (`behind`, `diverged`).
    pub ok: bool,
    pub status: LogStateStatus,
    /// The key store's last signed checkpoint.
    pub signed: Option<SignedState>,
    /// Leaves in the data store.
    pub data_leaves: u64,
    /// Checkpoints kept in the data store.
    pub data_checkpoints: u64,
    /// The size of the latest checkpoint the data store keeps.
    pub data_latest_checkpoint: Option<u64>,
    /// Leaves signed for that the data store lacks (`behind`).
    pub missing_leaves: u64,
    /// Checkpoints the key store counts as signed that the data store does
    /// not keep (deleted rows; the latest one excepted, see below).
    pub missing_checkpoints: u64,
    /// The data store lacks the last signed checkpoint itself: it is put
    /// back from the key store (a stop between signing and storing).
    pub latest_checkpoint_missing: bool,
    /// What is wrong and what to do, in words.
    pub message: String,
}

/// The verifier key of the vault's log, from its stores.
fn verifier_key(store: &dyn Store, keys: &dyn KeyStore) -> Result<Option<String>, VaultError> {
    let Some(seed) = keys.secret(LOG_KEY_SECRET)? else {
        return Ok(None);
    };
    // A seed wrapped under an external master key: the public key kept
    // beside it.
    if seed.len() == postvault_crypto::WRAPPED_LEN {
        return match keys.secret(LOG_VERIFIER_SECRET)? {
            Some(v) => Ok(Some(String::from_utf8(v).map_err(|_| {
                VaultError::LogVerification("the key store's log verifier key is not text".into())
            })?)),
            None => Err(VaultError::LogVerification(
                "the log's signing key is wrapped and the key store keeps no verifier key; open the vault with its master key once".into(),
            )),
        };
    }
    let vault_id = store.meta(VAULT_ID)?.unwrap_or_default();
    Ok(Some(
        crate::log::signer(&format!("postvault/{vault_id}"), &seed)?.verifier_key(),
    ))
}

/// The root of the data store's first `size` leaves: from the stored
/// hashes when they cover it, otherwise from the leaves (read only).
fn root_at(store: &dyn Store, size: u64) -> Result<Option<Hash>, VaultError> {
    if store.log_size()? < size {
        return Ok(None);
    }
    if store.hashed_size()? >= size {
        return Ok(Some(postvault_log::tree_root(
            size,
            &crate::log::StoreHashes(store),
        )?));
    }
    let mut b = RootBuilder::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + CHUNK);
        let leaves = store.leaves(start, end)?;
        if leaves.len() as u64 != end - start {
            return Ok(None);
        }
        for l in &leaves {
            b.push(postvault_log::leaf_hash(l));
        }
        start = end;
    }
    Ok(Some(b.root()))
}

/// Compares the data store's tree with the key store's last signed
/// checkpoint, reading only. This is the check `open` runs before anything
/// else and `postvault log recover` reports; a restore or an fsck calls it
/// on the stores it is about to hand over. `ok` is false when the vault
/// would refuse them.
pub fn check_log_state(
    store: &dyn Store,
    keys: &dyn KeyStore,
) -> Result<LogStateReport, VaultError> {
    assess(store, keys, true)
}

pub(crate) fn assess(
    store: &dyn Store,
    keys: &dyn KeyStore,
    count: bool,
) -> Result<LogStateReport, VaultError> {
    assess_with(store, keys, count, None)
}

/// [`assess`], with notes opened by `own` (the running vault's own log
/// key, each text verified once: see [`Vault::open_own_checkpoint`]) when
/// given, instead of a key read from the key store and derived again.
fn assess_with(
    store: &dyn Store,
    keys: &dyn KeyStore,
    count: bool,
    own: Option<&Vault>,
) -> Result<LogStateReport, VaultError> {
    let state = keys.log_state()?;
    let n = store.log_size()?;
    let latest = store.latest_checkpoint()?;
    let data_checkpoints = if count {
        store.checkpoints()?.len() as u64
    } else {
        0
    };
    let mut report = LogStateReport {
        ok: true,
        status: LogStateStatus::Consistent,
        signed: state.as_ref().map(SignedState::from),
        data_leaves: n,
        data_checkpoints,
        data_latest_checkpoint: latest.as_ref().map(|(s, _)| *s),
        missing_leaves: 0,
        missing_checkpoints: 0,
        latest_checkpoint_missing: false,
        message: String::new(),
    };
    let Some(s) = state else {
        (report.status, report.message) = match latest {
            None => (
                LogStateStatus::Empty,
                "no checkpoint was signed yet".to_string(),
            ),
            Some((m, _)) => (
                LogStateStatus::NoState,
                format!(
                    "the key store keeps no log state yet; it is set from the latest kept checkpoint (size {m}) on open"
                ),
            ),
        };
        return Ok(report);
    };
    let vkey = match own {
        Some(_) => None,
        None => Some(verifier_key(store, keys)?.ok_or_else(|| {
            VaultError::LogVerification("the key store keeps a log state but no log key".into())
        })?),
    };
    let open = |note: &str| match (own, &vkey) {
        (Some(v), _) => v.open_own_checkpoint(note),
        (None, Some(k)) => postvault_log::open_checkpoint(note, k),
        (None, None) => unreachable!("a verifier key is read when no vault opens the notes"),
    };
    let cp = open(&s.note).map_err(|e| {
        VaultError::LogVerification(format!(
            "the key store's last signed checkpoint does not verify with the log key: {e}"
        ))
    })?;
    if cp.size != s.size || cp.root != s.root {
        return Err(VaultError::LogVerification(
            "the key store's log state does not match its own signed checkpoint".into(),
        ));
    }
    let fail = |mut r: LogStateReport, status, message: String| {
        r.ok = false;
        r.status = status;
        r.message = message;
        Ok(r)
    };
    if n < s.size {
        report.missing_leaves = s.size - n;
        return fail(
            report,
            LogStateStatus::Behind,
            format!(
                "the data store holds {n} log leaves, but the key store says a checkpoint of {} leaves was signed: the data store was rolled back (an older copy, or a lost or truncated WAL) and leaves {n}..{} are missing; restore a copy of the data store holding at least {} leaves, made after that checkpoint was signed (`postvault log recover` reports what is missing; the vault will not open or sign until then)",
                s.size,
                s.size - 1,
                s.size
            ),
        );
    }
    if root_at(store, s.size)? != Some(s.root) {
        return fail(
            report,
            LogStateStatus::Diverged,
            format!(
                "the data store's first {} leaves no longer hash to the root of the checkpoint of that size the key store says was signed (the data store holds {n} leaves): leaves were rewritten, or the data store belongs to another history; restore the data store that matches the key store (`postvault log recover` reports what is missing; the vault will not open or sign until then)",
                s.size
            ),
        );
    }
    match &latest {
        Some((m, note)) if *m > s.size => {
            let valid = open(note).ok().filter(|c| c.size == *m).map(|c| c.root);
            if valid.is_none() || root_at(store, *m)? != valid {
                return fail(
                    report,
                    LogStateStatus::Diverged,
                    format!(
                        "the data store keeps a checkpoint of size {m} that does not verify against its own leaves (the key store's last signed checkpoint is {}); restore the data store that matches the key store",
                        s.size
                    ),
                );
            }
            report.status = LogStateStatus::KeyStoreBehind;
            report.message = format!(
                "the data store keeps a checkpoint of size {m} signed after the key store's state ({}): the key store is an older copy; its state is moved forward on open",
                s.size
            );
            return Ok(report);
        }
        Some((m, _)) if *m == s.size => {}
        _ => report.latest_checkpoint_missing = true,
    }
    if count {
        let kept = data_checkpoints + u64::from(report.latest_checkpoint_missing);
        report.missing_checkpoints = s.signed.saturating_sub(kept);
    }
    report.message = match (report.latest_checkpoint_missing, report.missing_checkpoints) {
        (false, 0) => format!(
            "the data store's {n} leaves extend the last signed checkpoint ({} leaves)",
            s.size
        ),
        (true, 0) => format!(
            "the data store's {n} leaves extend the last signed checkpoint ({} leaves), which the data store does not keep yet: it is put back from the key store",
            s.size
        ),
        (_, k) => format!(
            "the data store's {n} leaves extend the last signed checkpoint ({} leaves), but {k} of the {} checkpoints the key store counts as signed are missing from the data store (deleted rows)",
            s.size, s.signed
        ),
    };
    Ok(report)
}

impl Vault {
    /// [`check_log_state`] on this vault's stores.
    pub fn log_state_report(&self) -> Result<LogStateReport, VaultError> {
        check_log_state(&*self.store, &*self.keys)
    }

    /// Brings the key store's state and the data store into agreement where
    /// that needs no signature, and refuses where it cannot: initializes
    /// the state of a vault made before it existed (from the latest kept
    /// checkpoint), moves it forward to a validly signed checkpoint of the
    /// data store (an older key store), and puts the state's checkpoint
    /// back into a data store that lacks it. Returns the state.
    pub(crate) fn reconcile_log_state(&self) -> Result<Option<LogState>, VaultError> {
        for _ in 0..16 {
            let r = assess_with(&*self.store, &*self.keys, false, Some(self))?;
            if !r.ok {
                return Err(VaultError::LogRollback(r.message));
            }
            let state = self.keys.log_state()?;
            let target = match r.status {
                LogStateStatus::NoState | LogStateStatus::KeyStoreBehind => {
                    let Some((m, note)) = self.store.latest_checkpoint()? else {
                        continue;
                    };
                    let root = postvault_log::open_checkpoint(&note, &self.signer.verifier_key())
                        .ok()
                        .filter(|c| c.size == m)
                        .map(|c| c.root);
                    if root.is_none() || root_at(&*self.store, m)? != root {
                        return Err(VaultError::LogRollback(format!(
                            "the latest kept checkpoint (size {m}) does not verify against the data store's leaves; restore the data store"
                        )));
                    }
                    let root = root.unwrap_or_default();
                    let kept = self.store.checkpoints()?.len() as u64;
                    LogState {
                        size: m,
                        root,
                        note,
                        signed: kept.max(state.as_ref().map_or(0, |s| s.signed)),
                    }
                }
                _ => {
                    if let Some(s) = &state
                        && r.latest_checkpoint_missing
                    {
                        self.store.put_checkpoint(s.size, &s.note)?;
                    }
                    return Ok(state);
                }
            };
            match self.keys.swap_log_state(state.as_ref(), &target)? {
                LogStateSwap::Swapped => return Ok(Some(target)),
                LogStateSwap::Changed(_) => continue,
            }
        }
        Err(VaultError::LogVerification(
            "the log state kept changing under this node; try again".into(),
        ))
    }
}
