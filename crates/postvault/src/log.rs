//! The transparency log over the vault's leaves: RFC 6962 hashes kept in the
//! store, C2SP checkpoints signed with the vault's Ed25519 key, proofs,
//! verification from scratch, and a person's search by tag key.
//!
//! The leaves are the record: each is durable in the same transaction as the
//! decision it accounts for. The tree's stored hashes are derived from them
//! and brought up to date in batches ([`Vault::log_catch_up`]) before any
//! checkpoint is signed or proof given, so reads never pay for hashing.
//! Architecture invariant: the vault never signs two inconsistent
//! checkpoints: before signing it checks the last one it signed against the
//! tree, and refuses if the tree was rolled back or rewritten.

use base64::Engine as _;
use postvault_crypto::TagKey;
use postvault_log::{Checkpoint, Hash, HashStore, LogError, LogSigner};
use postvault_store::Store;
use serde::Serialize;

use crate::error::VaultError;
use crate::leaf::Event;
use crate::vault::Vault;

/// Leaves hashed per transaction when catching up.
const CATCH_UP_CHUNK: u64 = 65_536;

/// Leaves read at a time when a person's leaves are looked for: a report
/// holds this many in memory (about 1.3 MB), whatever the log's length,
/// so concurrent reports do not each hold tens of megabytes.
const TAG_SCAN_CHUNK: u64 = 4_096;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The store's stored hashes, as the log crate reads them.
pub(crate) struct StoreHashes<'a>(pub(crate) &'a dyn Store);

impl HashStore for StoreHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.0
            .log_hashes(indexes)
            .map_err(|e| LogError::Storage(e.to_string()))
    }
}

/// Stored hashes kept for proofs (32 bytes each, about 3 MB with the
/// cache's own).
pub(crate) const PROOF_HASHES_CACHED: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(1 << 16).expect("not zero");

/// How many signed notes of its own log a vault remembers having verified.
const NOTES_KEPT: usize = 8;

/// Signed notes of the vault's own log that verified with its log key, by
/// their exact text, with the checkpoint each verified to: see
/// [`Vault::open_own_checkpoint`].
#[derive(Default)]
pub(crate) struct VerifiedNotes(std::sync::Mutex<std::collections::VecDeque<(String, Checkpoint)>>);

impl VerifiedNotes {
    fn find(&self, note: &str) -> Option<Checkpoint> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .find(|(n, _)| n == note)
            .map(|(_, cp)| cp.clone())
    }

    fn keep(&self, note: &str, cp: &Checkpoint) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.iter().any(|(n, _)| n == note) {
            return;
        }
        if kept.len() >= NOTES_KEPT {
            kept.pop_front();
        }
        kept.push_back((note.to_string(), cp.clone()));
    }
}

/// The lowest level of subtree whose hash the proof cache keeps: a hash
/// shared by the proofs of 256 leaves or more. Lower ones are read from
/// the store every time, so how fast a proof comes back does not tell
/// which single leaves were proven lately (a person's report proves each
/// of their leaves). The one exception is the tree's right edge: the
/// hashes of the maximal complete subtrees the tree is made of (one per
/// bit set in its size), which the proof of every leaf outside each of
/// them reads, and which no complete tile holds.
const PROOF_CACHE_MIN_LEVEL: u8 = 8;

/// The stored hashes proofs read, through a cache of the upper levels'. A
/// stored hash is the hash of a complete subtree: once in the store it
/// never changes, and every proof reads the same few of the upper levels.
/// Only proofs read through it; roots, checkpoints and verification read
/// the store itself, so a store rewritten under the process is still caught
/// there (and a proof from the cache is of the tree the process saw, which
/// verifies against the checkpoints it signed).
///
/// Stored hashes of levels 0-15 come from the proof tiles where the store
/// keeps them (four rows a proof, `postvault_log::proof_tiles`), the rest
/// from the stored hashes one by one.
pub(crate) struct ProofHashes<'a> {
    vault: &'a Vault,
    /// Tiles are kept for subtrees ending after `tiled_from` leaves, up to
    /// the hashed size.
    tiled_from: u64,
    /// The size of the tree the proofs are of (at most the hashed size):
    /// tiles are read only for subtrees within it, which a store that
    /// holds its stored hashes holds whatever else it hashed since.
    size: u64,
}

impl<'a> ProofHashes<'a> {
    /// For proofs in the tree of the first `size` leaves (hashed).
    pub(crate) fn new(vault: &'a Vault, size: u64) -> Result<Self, VaultError> {
        // Constant once the store is open: read once a process.
        let tiled_from = match vault.tiled_from.get() {
            Some(t) => *t,
            None => {
                let t = vault.store.log_tiled_from()?;
                *vault.tiled_from.get_or_init(|| t)
            }
        };
        Ok(ProofHashes {
            vault,
            tiled_from,
            size,
        })
    }

    /// Reads `indexes` from the store: tiles where kept, stored hashes for
    /// the rest.
    fn read_store(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let storage = |e: postvault_store::StoreError| LogError::Storage(e.to_string());
        let mut from_tiles = Vec::new();
        let mut at_tiles = Vec::new();
        let mut rows = Vec::new();
        let mut at_rows = Vec::new();
        for (at, &i) in indexes.iter().enumerate() {
            match postvault_log::proof_tile_slot(i) {
                Some(s) if s.end > self.tiled_from && s.end <= self.size => {
                    from_tiles.push((s.tile, s.slot));
                    at_tiles.push(at);
                }
                _ => {
                    rows.push(i);
                    at_rows.push(at);
                }
            }
        }
        let mut out = vec![[0u8; 32]; indexes.len()];
        if !from_tiles.is_empty() {
            let got = self
                .vault
                .store
                .log_tile_hashes(&from_tiles)
                .map_err(storage)?;
            if got.len() != from_tiles.len() {
                return Err(LogError::Storage(
                    "a proof tile read came back short".into(),
                ));
            }
            for (at, h) in at_tiles.into_iter().zip(got) {
                out[at] = h;
            }
        }
        if !rows.is_empty() {
            let got = StoreHashes(&*self.vault.store).read_hashes(&rows)?;
            if got.len() != rows.len() {
                return Err(LogError::Storage("a log hash read came back short".into()));
            }
            for (at, h) in at_rows.into_iter().zip(got) {
                out[at] = h;
            }
        }
        Ok(out)
    }
}

impl HashStore for ProofHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let lock = || {
            self.vault
                .proof_hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        let mut out: Vec<Option<Hash>> = Vec::with_capacity(indexes.len());
        let mut missing = Vec::new();
        {
            let mut c = lock();
            for i in indexes {
                // Never looked up otherwise: a low hash cached while it was
                // on the right edge of a smaller tree says nothing now.
                let h = if shared_by_proofs(*i, self.size) {
                    c.get(i).copied()
                } else {
                    None
                };
                if h.is_none() {
                    missing.push(*i);
                }
                out.push(h);
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let got = self.read_store(&missing)?;
            let mut c = lock();
            for (i, h) in missing.iter().zip(&got) {
                if shared_by_proofs(*i, self.size) {
                    c.put(*i, *h);
                }
            }
            for (slot, i) in out.iter_mut().zip(indexes) {
                if slot.is_none() {
                    *slot = missing.binary_search(i).ok().map(|at| got[at]);
                }
            }
        }
        out.into_iter()
            .zip(indexes)
            .map(|(h, i)| h.ok_or_else(|| LogError::Storage(format!("log hash {i} is missing"))))
            .collect()
    }
}

/// Whether the proof cache keeps (and serves) stored hash `index` for
/// proofs in the tree of `size` leaves: a hash of level 8 or more, or one
/// of the maximal complete subtrees the tree's right edge is made of (one
/// per bit set in `size`), which every proof of a leaf outside it reads.
/// See [`PROOF_CACHE_MIN_LEVEL`].
fn shared_by_proofs(index: u64, size: u64) -> bool {
    let (level, n) = postvault_log::stored_index_node(index);
    level >= PROOF_CACHE_MIN_LEVEL
        || (size >> level & 1 == 1 && n.checked_add(1) == Some(size >> level))
}

/// Reads a proof's hashes and, in the same read, the proven leaf's own
/// stored hash (one trip to the store per proof, not two).
struct WithLeaf<'a> {
    inner: ProofHashes<'a>,
    leaf: u64,
    hash: std::cell::Cell<Option<Hash>>,
}

impl HashStore for WithLeaf<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        if self.hash.get().is_some() {
            return self.inner.read_hashes(indexes);
        }
        let mut ask = Vec::with_capacity(indexes.len() + 1);
        ask.extend_from_slice(indexes);
        ask.push(self.leaf);
        let mut got = self.inner.read_hashes(&ask)?;
        if got.len() != ask.len() {
            return Err(LogError::Storage(format!(
                "{} log hashes read for {} asked",
                got.len(),
                ask.len()
            )));
        }
        self.hash.set(got.pop());
        Ok(got)
    }
}

/// An RFC 6962 inclusion proof, as printed by `postvault log prove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    /// Base64 of the leaf hash.
    pub leaf_hash: String,
    /// Base64 of each hash of the audit path, leaf to root.
    pub hashes: Vec<String>,
}

/// An RFC 6962 consistency proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    pub old: u64,
    pub new: u64,
    pub hashes: Vec<String>,
}

/// One log entry.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    pub index: u64,
    /// Base64 of the exact leaf bytes that are hashed.
    pub leaf: String,
    /// The decoded event, or null if the leaf is not one.
    pub event: Option<Event>,
}

/// A leaf about a person, found with their tag key, with its proof.
#[derive(Clone, Debug, Serialize)]
pub struct FoundLeaf {
    pub index: u64,
    pub event: Option<Event>,
    pub proof: InclusionProof,
}

/// What `postvault log verify` checked.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Leaves in the log.
    pub size: u64,
    /// Base64 of the root recomputed from the leaves.
    pub root: String,
    /// The checkpoint verified against the recomputed tree.
    pub checkpoint: Option<CheckpointInfo>,
    /// Kept checkpoints checked against the recomputed tree.
    pub checkpoints_checked: usize,
    /// The earlier checkpoint proven consistent with the verified one.
    pub since: Option<CheckpointInfo>,
    /// The last checkpoint the key store says was signed, checked against
    /// the leaves and found among the kept checkpoints.
    pub signed_state: Option<crate::log_state::SignedState>,
    /// The witnesses whose cosignatures of the verified checkpoint verify
    /// (with `--witness`), `<name>+<key id>`.
    pub cosigners: Vec<String>,
    /// The cosignatures required (0: none asked for).
    pub witness_quorum: usize,
    /// Leaves past the verified checkpoint (not yet covered by it).
    pub unwitnessed_leaves: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckpointInfo {
    pub origin: String,
    pub size: u64,
    pub root: String,
}

impl From<&Checkpoint> for CheckpointInfo {
    fn from(c: &Checkpoint) -> Self {
        CheckpointInfo {
            origin: c.origin.clone(),
            size: c.size,
            root: B64.encode(c.root),
        }
    }
}

/// Options for [`Vault::verify_log`].
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// A signed checkpoint to verify (default: the latest the vault kept).
    pub checkpoint: Option<String>,
    /// An earlier signed checkpoint to prove consistency with.
    pub since: Option<String>,
    /// Witness verifier keys (tlog-cosignature/v1): the checkpoint verified
    /// must carry cosignatures of at least `quorum` of them. Without
    /// `checkpoint`, the latest kept checkpoint that does is verified.
    pub witnesses: Vec<String>,
    /// Default: every witness given.
    pub quorum: Option<usize>,
}

fn tamper(msg: String) -> VaultError {
    VaultError::LogVerification(msg)
}

/// A store that finds its own log damaged fails verification, not the run.
fn corrupt(e: postvault_store::StoreError) -> VaultError {
    match e {
        postvault_store::StoreError::Corrupt(m) => tamper(m),
        e => e.into(),
    }
}

impl Vault {
    /// The verifier key of the log, `<name>+<key id>+<base64 key>`.
    pub fn log_verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The log's origin line (names this vault).
    pub fn log_origin(&self) -> &str {
        self.signer.origin()
    }

    /// Brings the stored hashes up to the log's size; returns the size.
    pub fn log_catch_up(&self) -> Result<u64, VaultError> {
        loop {
            let n = self.store.log_size()?;
            let h = self.store.hashed_size()?;
            if h >= n {
                return Ok(h);
            }
            let end = n.min(h + CATCH_UP_CHUNK);
            let leaves = self.store.leaves(h, end)?;
            if leaves.len() as u64 != end - h {
                return Err(tamper(format!("log leaves {h}..{end} are missing")));
            }
            let hashes: Vec<Hash> = leaves.iter().map(|l| postvault_log::leaf_hash(l)).collect();
            let stored = postvault_log::append_hashes(h, &hashes, &StoreHashes(&*self.store))?;
            let tiles = postvault_log::proof_tiles(h, end, &stored, &StoreHashes(&*self.store))?;
            // If another writer hashed first, go round again from its size.
            self.store.put_log_hashes(h, end, &stored, &tiles)?;
        }
    }

    /// Offers a checkpoint [`Vault::checkpoint`] signed to the reports
    /// that need one covering their leaves (without witnesses: with them,
    /// reports need its cosignatures, gathered apart).
    fn offer_covering(&self, size: u64, note: &str) {
        if self.witnessing.is_none() {
            self.covering.offer(size, note);
        }
    }

    /// The root of the tree of the first `size` leaves.
    pub fn log_root(&self, size: u64) -> Result<Hash, VaultError> {
        Ok(postvault_log::tree_root(size, &StoreHashes(&*self.store))?)
    }

    /// The latest signed checkpoint, signing one for the current size first
    /// if the log has grown since. Never signs a checkpoint that does not
    /// extend the last one it signed (the key store's state, on any node):
    /// the data store must hold that tree, no witness may hold a larger or
    /// another one, and the new state is swapped into the key store before
    /// the checkpoint is stored or returned.
    pub fn checkpoint(&self) -> Result<String, VaultError> {
        for _ in 0..64 {
            // What witnesses were heard to hold, before the state: every
            // size a witness holds was the state once, and the state only
            // grows, so a larger one read after it means a rollback.
            let witnessed = self.witnessed_max();
            let state = self.reconcile_log_state()?;
            if let (Some((who, m)), s) = (&witnessed, &state)
                && *m > s.as_ref().map_or(0, |s| s.size)
            {
                return Err(VaultError::LogRollback(format!(
                    "a quorum of the witnesses (`{who}` among them) report holding a checkpoint of at least {m} leaves, beyond the last one this vault's key store says it signed ({}); refusing to sign",
                    s.as_ref().map_or(0, |s| s.size)
                )));
            }
            let n = self.log_catch_up()?;
            if let Some(s) = &state {
                if n < s.size || self.log_root(s.size)? != s.root {
                    return Err(VaultError::LogRollback(format!(
                        "the data store's tree ({n} leaves) does not extend the last signed checkpoint ({} leaves); refusing to sign",
                        s.size
                    )));
                }
                if n == s.size {
                    return Ok(s.note.clone());
                }
            }
            self.require_recorded_witnesses()?;
            if let Some(s) = &state {
                self.probe_witnesses(&s.note)?;
            }
            let root = self.log_root(n)?;
            let signed = match &state {
                Some(s) => {
                    // The proof the new checkpoint extends the last one.
                    let proof =
                        postvault_log::prove_consistency(s.size, n, &StoreHashes(&*self.store))?;
                    postvault_log::verify_consistency(s.size, n, &s.root, &root, &proof).map_err(
                        |_| {
                            VaultError::LogRollback(format!(
                                "the tree of {n} leaves does not extend the last signed checkpoint ({} leaves); refusing to sign",
                                s.size
                            ))
                        },
                    )?;
                    s.signed + 1
                }
                None => 1,
            };
            let cp = Checkpoint::new(self.signer.origin(), n, root);
            let note = self.signer.sign(&cp)?;
            let new = postvault_store::LogState {
                size: n,
                root,
                note: note.clone(),
                signed,
            };
            match self.keys.swap_log_state(state.as_ref(), &new)? {
                postvault_store::LogStateSwap::Swapped => {
                    self.store.put_checkpoint(n, &note)?;
                    // Signed here, so it verifies: kept as opened, and the
                    // report that asked for it does not verify it again.
                    debug_assert_eq!(
                        postvault_log::open_checkpoint(&note, &self.signer.verifier_key()).ok(),
                        Some(cp.clone())
                    );
                    self.verified_notes.keep(&note, &cp);
                    self.offer_covering(n, &note);
                    return Ok(note);
                }
                // Another signer (another node) moved the state: start over
                // from it. The note made here is dropped unseen.
                postvault_store::LogStateSwap::Changed(_) => continue,
            }
        }
        Err(VaultError::LogVerification(
            "other signers kept moving the log state; try again".into(),
        ))
    }

    /// A C2SP tlog-tiles resource of the log at its current hashed size:
    /// `tile/<L>/<N>[.p/<W>]` (hashes) or `tile/entries/<N>[.p/<W>]` (an
    /// entry bundle), so any tiles client can mirror the log. The path may be
    /// given with or without the leading `tile/`.
    pub fn log_tile(&self, path: &str) -> Result<Vec<u8>, VaultError> {
        let path = path.trim_start_matches('/');
        let path = if path.starts_with("tile/") {
            path.to_string()
        } else {
            format!("tile/{path}")
        };
        let size = self.log_catch_up()?;
        match postvault_log::parse_tile_path(&path)? {
            postvault_log::TileRequest::Hashes {
                level,
                index,
                width,
            } => Ok(postvault_log::tile_bytes(
                level,
                index,
                width,
                size,
                &StoreHashes(&*self.store),
            )?),
            postvault_log::TileRequest::Entries { index, width } => {
                let start = index.saturating_mul(256);
                let end = start.saturating_add(u64::from(width));
                if end > size {
                    return Err(VaultError::Invalid {
                        what: "tile",
                        why: format!("entry bundle {path} is beyond the log of {size} leaves"),
                    });
                }
                let leaves = self.store.leaves(start, end)?;
                Ok(postvault_log::entry_bundle(&leaves)?)
            }
        }
    }

    /// Entries `start..end` of the log.
    pub fn log_entries(&self, start: u64, end: u64) -> Result<Vec<LogEntry>, VaultError> {
        let leaves = self.store.leaves(start, end)?;
        Ok(leaves
            .into_iter()
            .zip(start..)
            .map(|(leaf, index)| LogEntry {
                index,
                event: Event::from_leaf(&leaf),
                leaf: B64.encode(&leaf),
            })
            .collect())
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves
    /// (default: the latest signed checkpoint's size, signing one if needed).
    pub fn prove_inclusion(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, VaultError> {
        // A tree already hashed needs no catch-up (the usual case: a size
        // from a checkpoint); otherwise the tree is brought up to date. The
        // hashed size only grows: one this process has seen covers a size
        // within it without reading the store's again.
        use std::sync::atomic::Ordering;
        let seen = self.hashed_seen.load(Ordering::Acquire);
        let n = match size {
            Some(s) if s <= seen => seen,
            _ => {
                let hashed = self.store.hashed_size()?;
                let n = match size {
                    Some(s) if s <= hashed => hashed,
                    _ => self.log_catch_up()?,
                };
                self.hashed_seen.fetch_max(n, Ordering::Release);
                n
            }
        };
        let size = match size {
            Some(s) => s,
            None => self.checkpoint_size()?,
        };
        if size > n || index >= size {
            return Err(VaultError::Invalid {
                what: "proof",
                why: format!("leaf {index} is not in a tree of {size} (the log has {n} leaves)"),
            });
        }
        // The leaf's hash is the tree's own (stored, level 0): what the
        // proof is of, read with it.
        let reader = WithLeaf {
            inner: ProofHashes::new(self, size)?,
            leaf: postvault_log::leaf_stored_index(index)?,
            hash: std::cell::Cell::new(None),
        };
        let hashes = postvault_log::prove_inclusion(index, size, &reader)?;
        let leaf_hash = match reader.hash.get() {
            Some(h) => h,
            None => reader
                .inner
                .read_hashes(&[reader.leaf])?
                .pop()
                .ok_or_else(|| tamper(format!("the hash of log leaf {index} is missing")))?,
        };
        Ok(InclusionProof {
            index,
            size,
            leaf_hash: B64.encode(leaf_hash),
            hashes: hashes.iter().map(|h| B64.encode(h)).collect(),
        })
    }

    /// The consistency proof between the trees of `old` and `new` leaves.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<ConsistencyProof, VaultError> {
        let n = self.log_catch_up()?;
        if old > new || new > n {
            return Err(VaultError::Invalid {
                what: "proof",
                why: format!("need old <= new <= {n} (the log size)"),
            });
        }
        let hashes = postvault_log::prove_consistency(old, new, &ProofHashes::new(self, new)?)?;
        Ok(ConsistencyProof {
            old,
            new,
            hashes: hashes.iter().map(|h| B64.encode(h)).collect(),
        })
    }

    /// The size of the latest signed checkpoint (signing one if the log grew).
    pub fn checkpoint_size(&self) -> Result<u64, VaultError> {
        let note = self.checkpoint()?;
        Ok(self.open_own_checkpoint(&note)?.size)
    }

    /// [`postvault_log::open_checkpoint`] of `note` with the vault's own log
    /// key, remembered by the note's exact text: serving paths open the
    /// same checkpoint again and again (a subject access report three or
    /// four times: its checkpoint found, its cosignatures counted, its
    /// proofs checked), and each opening is an Ed25519 verification. The
    /// log key is the vault's for its life, so a text that verified once
    /// verifies again; any other text, one byte changed, is verified in
    /// full (a note this vault signs is remembered when it is signed).
    /// Only what a note says is remembered, never the store's state:
    /// callers that hand a checkpoint out again still compare its root
    /// with the store's tree (`Vault::still_holds`), and `log verify` and
    /// `check` verify every note themselves.
    pub(crate) fn open_own_checkpoint(&self, note: &str) -> Result<Checkpoint, LogError> {
        if let Some(cp) = self.verified_notes.find(note) {
            return Ok(cp);
        }
        let cp = postvault_log::open_checkpoint(note, &self.signer.verifier_key())?;
        self.verified_notes.keep(note, &cp);
        Ok(cp)
    }

    /// The tag key of a subject, for the person (through an authorized
    /// channel). None if the vault holds no keys for that identifier: only
    /// the operator, who holds the key store itself, can ask (no HTTP
    /// endpoint), so the answer tells nobody anything new.
    pub fn subject_tag_key(&self, subject: &str) -> Result<Option<String>, VaultError> {
        crate::vault::check_subject(subject)?;
        let r = self.subject_ref(subject);
        self.sync_erasures()?;
        Ok(self
            .subject_keys(&r)?
            .map(|k| B64.encode(k.tag.to_bytes().as_ref())))
    }

    /// Every leaf whose subject tag was made with `tag_key` (base64), each
    /// with its inclusion proof against the latest signed checkpoint, which
    /// is returned with the witness cosignatures gathered for it.
    pub fn find_leaves(&self, tag_key: &str) -> Result<(String, Vec<FoundLeaf>), VaultError> {
        let (c, found) = self.find_leaves_cosigned(tag_key)?;
        Ok((c.note, found))
    }

    /// [`Vault::find_leaves`], with the checkpoint's cosigners and whether
    /// it is final.
    pub fn find_leaves_cosigned(
        &self,
        tag_key: &str,
    ) -> Result<(crate::witness::CosignedCheckpoint, Vec<FoundLeaf>), VaultError> {
        self.find_leaves_how(tag_key, false)
    }

    /// [`Vault::find_leaves_cosigned`] by reading every leaf of the log
    /// instead of the leaf index: slower, linear in the log, and
    /// independent of the index (what an auditor runs who doubts it; the
    /// person can do the same on the public log with their tag key).
    pub fn find_leaves_scanned(
        &self,
        tag_key: &str,
    ) -> Result<(crate::witness::CosignedCheckpoint, Vec<FoundLeaf>), VaultError> {
        self.find_leaves_how(tag_key, true)
    }

    fn find_leaves_how(
        &self,
        tag_key: &str,
        scan: bool,
    ) -> Result<(crate::witness::CosignedCheckpoint, Vec<FoundLeaf>), VaultError> {
        let raw = B64
            .decode(tag_key.trim())
            .map_err(|_| VaultError::Invalid {
                what: "tag key",
                why: "not base64".into(),
            })?;
        let key = TagKey::from_bytes(&raw)?;
        let cosigned = self.cosigned_checkpoint()?;
        let size = cosigned.size;
        let mut found = Vec::new();
        let leaves = if scan {
            self.scanned_leaves(&key, size)?
        } else {
            self.tagged_leaves(&key, size)?
        };
        for (index, leaf) in leaves {
            let proof = self.prove_inclusion(index, Some(size))?;
            // The proof is of the tree's leaf hash; the event shown is read
            // off the stored leaf: they must be the same leaf.
            if proof.leaf_hash != B64.encode(postvault_log::leaf_hash(&leaf)) {
                return Err(tamper(format!(
                    "log leaf {index} does not match its hash in the tree"
                )));
            }
            found.push(FoundLeaf {
                index,
                proof,
                event: Event::from_leaf(&leaf),
            });
        }
        Ok((cosigned, found))
    }

    /// The leaves of the first `size` whose subject tag `key` made, with
    /// their bytes, oldest first: those the leaf index holds by look-ups
    /// ([`Vault::indexed_leaves`]), any older (a store upgraded to the
    /// index) by a scan. The scan reads each leaf's tag off its bytes and
    /// compares it with the key's tag for its index.
    pub(crate) fn tagged_leaves(
        &self,
        key: &TagKey,
        size: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, VaultError> {
        let indexed_from = self.store.leaf_indexed_from()?.min(size);
        let mut found = self.scanned_leaves(key, indexed_from)?;
        found.extend(self.indexed_leaves(key, indexed_from, size)?);
        Ok(found)
    }

    /// The leaves of the first `size` whose subject tag `key` made, found
    /// by reading every one.
    pub(crate) fn scanned_leaves(
        &self,
        key: &TagKey,
        size: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, VaultError> {
        let mut found = Vec::new();
        let mut start = 0;
        let mut tag = String::new();
        while start < size {
            let end = size.min(start + TAG_SCAN_CHUNK);
            for (leaf, index) in self.store.leaves(start, end)?.into_iter().zip(start..) {
                let Some(theirs) = crate::leaf_index::leaf_tag(&leaf) else {
                    continue;
                };
                tag.clear();
                B64.encode_string(key.tag(index), &mut tag);
                if theirs == tag.as_bytes() {
                    found.push((index, leaf));
                }
            }
            start = end;
        }
        Ok(found)
    }

    /// Recomputes the whole tree from the stored leaves and checks it against
    /// the stored hashes, the checkpoint (signature and root), every kept
    /// checkpoint, and consistency with an earlier checkpoint. Any changed,
    /// dropped or reordered leaf, or a rolled-back tree, fails.
    /// Every stored hash of the tree of the first `n` leaves, recomputed
    /// from the leaves in memory.
    fn recompute_tree(&self, n: u64) -> Result<Vec<Hash>, VaultError> {
        let mut recomputed: Vec<Hash> = Vec::new();
        let mut start = 0;
        while start < n {
            let end = n.min(start + CATCH_UP_CHUNK);
            let leaves = self.store.leaves(start, end).map_err(corrupt)?;
            if leaves.len() as u64 != end - start {
                return Err(tamper(format!("log leaves {start}..{end} are missing")));
            }
            let hashes: Vec<Hash> = leaves.iter().map(|l| postvault_log::leaf_hash(l)).collect();
            for (_, h) in postvault_log::append_hashes(start, &hashes, &recomputed)? {
                recomputed.push(h);
            }
            start = end;
        }
        Ok(recomputed)
    }

    /// The proof tiles the store keeps for the tree hashed up to `hashed`
    /// leaves, against the recomputed tree: how many are missing or differ,
    /// and the first of them.
    fn check_tiles(
        &self,
        hashed: u64,
        recomputed: &[Hash],
    ) -> Result<(u64, Option<u64>), VaultError> {
        let tiled_from = self.store.log_tiled_from().map_err(corrupt)?;
        let (mut bad, mut first) = (0u64, None);
        for range in postvault_log::proof_tile_ranges(tiled_from, hashed) {
            let mut a = range.start;
            while a < range.end {
                let b = range.end.min(a + 4096);
                let kept = self.store.log_tiles(a, b).map_err(corrupt)?;
                let mut kept = kept.iter().peekable();
                for id in a..b {
                    let good = match kept.next_if(|(k, _)| *k == id) {
                        Some((_, bytes)) => {
                            bytes.len() == postvault_log::PROOF_TILE_BYTES
                                && postvault_log::proof_tile_indexes(id)
                                    .zip(bytes.chunks_exact(32))
                                    .all(|(i, h)| {
                                        usize::try_from(i)
                                            .ok()
                                            .and_then(|i| recomputed.get(i))
                                            .is_some_and(|r| r[..] == *h)
                                    })
                        }
                        None => false,
                    };
                    if !good {
                        bad += 1;
                        first.get_or_insert(id);
                    }
                }
                a = b;
            }
        }
        Ok((bad, first))
    }

    /// The log for `postvault check`: like [`Vault::verify_log`], but
    /// counting every stored hash and kept checkpoint that does not match
    /// the leaves instead of stopping at the first.
    pub(crate) fn check_log(&self) -> Result<crate::integrity::LogCheck, VaultError> {
        let key = self.signer.verifier_key();
        let n = self.store.log_size()?;
        let hashed = self.store.hashed_size()?;
        let recomputed = self.recompute_tree(n)?;
        let mut out = crate::integrity::LogCheck {
            leaves: n,
            hashed,
            ..crate::integrity::LogCheck::default()
        };
        let kept = postvault_log::stored_hash_count(hashed.min(n))?;
        let mut i = 0;
        while i < kept {
            let end = kept.min(i + 4096);
            let idx: Vec<u64> = (i..end).collect();
            match self.store.log_hashes(&idx) {
                Ok(stored) => {
                    for (j, h) in idx.iter().zip(stored) {
                        if recomputed.get(*j as usize) != Some(&h) {
                            out.hash_mismatches += 1;
                        }
                    }
                }
                // Missing rows count as mismatches, one by one.
                Err(postvault_store::StoreError::Corrupt(_)) => {
                    for j in &idx {
                        match self.store.log_hashes(&[*j]) {
                            Ok(h) if recomputed.get(*j as usize) == h.first() => {}
                            _ => out.hash_mismatches += 1,
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
            i = end;
        }
        // Each proof tile missing or unlike the leaves counts once.
        out.hash_mismatches += self.check_tiles(hashed.min(n), &recomputed)?.0;
        for (size, note) in self.store.checkpoints()? {
            out.checkpoints += 1;
            out.latest_checkpoint = Some(out.latest_checkpoint.unwrap_or(0).max(size));
            let good = postvault_log::open_checkpoint(&note, &key)
                .ok()
                .filter(|cp| cp.size == size && cp.size <= n)
                .is_some_and(|cp| {
                    postvault_log::tree_root(cp.size, &recomputed).is_ok_and(|r| r == cp.root)
                });
            if !good {
                out.checkpoint_mismatches += 1;
            }
        }
        out.leaf_index_mismatches = self.check_leaf_index(n)?;
        Ok(out)
    }

    /// What of the leaf index does not match the first `n` leaves: a leaf
    /// with a subject tag not filed exactly once, a filing of a leaf without
    /// one or before the index began, a row whose seal does not hold
    /// (changed, or made without the vault's key), a tagged leaf whose month
    /// is not listed, a month listed after the next (a row can count twice:
    /// unsealed, and filing an untagged leaf). Without the people's keys this
    /// cannot tell whose a filing is; the seals say no one without the
    /// vault's key made or moved it. The rows are read a page at a time and
    /// counted per leaf (a byte a leaf), then the leaves a chunk at a time.
    fn check_leaf_index(&self, n: u64) -> Result<u64, VaultError> {
        const PAGE: usize = 8_192;
        let from = self.store.leaf_indexed_from()?.min(n);
        let months: std::collections::HashSet<u32> =
            self.store.leaf_index_months()?.into_iter().collect();
        let span = usize::try_from(n - from).map_err(|_| VaultError::Invalid {
            what: "log",
            why: "too many leaves to check on this machine".into(),
        })?;
        let mut filed = vec![0u8; span];
        let mut bad = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.store.leaf_index_page(after.as_deref(), PAGE)?;
            for r in &page {
                // Rows of leaves appended since `n` was read are not ours.
                if r.idx >= n {
                    continue;
                }
                let sealed = <[u8; 16]>::try_from(&r.token[..])
                    .is_ok_and(|t| self.index_seal.filing_seal(&t, r.idx)[..] == r.seal[..]);
                if !sealed {
                    bad += 1;
                }
                match r.idx.checked_sub(from) {
                    Some(at) => filed[at as usize] = filed[at as usize].saturating_add(1),
                    None => bad += 1,
                }
            }
            match page.last() {
                Some(r) if page.len() == PAGE => after = Some(r.token.clone()),
                _ => break,
            }
        }
        // A month listed after the next one: no leaf is from the future.
        let next = crate::leaf_index::month_of(self.clock.now_ms()).saturating_add(1);
        bad += months.iter().filter(|&&m| m > next).count() as u64;
        let mut start = from;
        while start < n {
            let end = n.min(start + TAG_SCAN_CHUNK);
            for (leaf, index) in self.store.leaves(start, end)?.into_iter().zip(start..) {
                let times = u64::from(filed[(index - from) as usize]);
                let tagged = crate::leaf_index::leaf_tag(&leaf).is_some();
                bad += match (tagged, times) {
                    (true, 1) | (false, 0) => 0,
                    (true, 0) => 1,
                    (true, t) => t - 1,
                    (false, t) => t,
                };
                if tagged
                    && !crate::leaf_index::leaf_time(&leaf)
                        .is_some_and(|t| months.contains(&crate::leaf_index::month_of(t)))
                {
                    bad += 1;
                }
            }
            start = end;
        }
        Ok(bad)
    }

    pub fn verify_log(&self, opts: &VerifyOptions) -> Result<VerifyReport, VaultError> {
        let key = self.signer.verifier_key();
        let n = self.store.log_size()?;
        let hashed = self.store.hashed_size()?;
        // Recompute every stored hash from the leaves, in memory.
        let recomputed = self.recompute_tree(n)?;
        // The stored hashes (what proofs and tiles are served from) must agree.
        let kept = postvault_log::stored_hash_count(hashed.min(n))?;
        let mut i = 0;
        while i < kept {
            let end = kept.min(i + 4096);
            let idx: Vec<u64> = (i..end).collect();
            let stored = self.store.log_hashes(&idx).map_err(corrupt)?;
            for (j, h) in idx.iter().zip(stored) {
                if recomputed.get(*j as usize) != Some(&h) {
                    return Err(tamper(format!(
                        "stored tree hash {j} does not match the leaves: a leaf or a tile was altered"
                    )));
                }
            }
            i = end;
        }
        if let (_, Some(tile)) = self.check_tiles(hashed.min(n), &recomputed)? {
            return Err(tamper(format!(
                "log proof tile {} of band {} (id {tile}) is missing or does not match the leaves",
                tile & ((1 << 56) - 1),
                tile >> 56
            )));
        }
        let root_of = |size: u64| -> Result<Hash, VaultError> {
            Ok(postvault_log::tree_root(size, &recomputed)?)
        };
        let check = |note: &str, what: &str| -> Result<Checkpoint, VaultError> {
            let cp = postvault_log::open_checkpoint(note, &key)
                .map_err(|e| tamper(format!("{what}: {e}")))?;
            if cp.size > n {
                return Err(tamper(format!(
                    "{what} is for {} leaves but the log holds {n}: the log was rolled back",
                    cp.size
                )));
            }
            if root_of(cp.size)? != cp.root {
                return Err(tamper(format!(
                    "{what} (size {}) does not match the leaves: entries were changed, dropped or reordered",
                    cp.size
                )));
            }
            Ok(cp)
        };
        let kept_checkpoints = self.store.checkpoints()?;
        // The key store's record of what was signed: its last checkpoint
        // must match the leaves and be kept, and no signed one be missing.
        let signed_state = self.keys.log_state()?;
        if let Some(s) = &signed_state {
            let cp = check(&s.note, "the key store's last signed checkpoint")?;
            if cp.size != s.size || cp.root != s.root {
                return Err(tamper(
                    "the key store's log state does not match its own checkpoint".into(),
                ));
            }
            if !kept_checkpoints
                .iter()
                .any(|(size, note)| *size == s.size && *note == s.note)
            {
                return Err(tamper(format!(
                    "the checkpoint of size {} that the key store says was signed is missing from the data store",
                    s.size
                )));
            }
            let kept = kept_checkpoints.len() as u64;
            if kept < s.signed {
                return Err(tamper(format!(
                    "the key store counts {} signed checkpoints but the data store keeps {kept}: {} were deleted",
                    s.signed,
                    s.signed - kept
                )));
            }
        }
        for (size, note) in &kept_checkpoints {
            let cp = check(note, &format!("the kept checkpoint of size {size}"))?;
            if cp.size != *size {
                return Err(tamper(format!(
                    "the kept checkpoint of size {size} says {}",
                    cp.size
                )));
            }
        }
        let verifiers = opts
            .witnesses
            .iter()
            .map(|k| {
                postvault_log::CosignatureVerifier::new(k.trim()).map_err(|e| VaultError::Invalid {
                    what: "witness key",
                    why: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = opts.quorum.unwrap_or(verifiers.len());
        if quorum > verifiers.len() {
            return Err(VaultError::Invalid {
                what: "quorum",
                why: format!(
                    "{quorum} is more than the {} witnesses given",
                    verifiers.len()
                ),
            });
        }
        let mut cosigners = Vec::new();
        let mut witnessed = |note: &str, what: &str| -> Result<(), VaultError> {
            let w = postvault_log::verify_cosigned(note, &key, &verifiers)
                .map_err(|e| tamper(format!("{what}: {e}")))?;
            if w.cosigned.len() < quorum {
                return Err(tamper(format!(
                    "{what} carries {} of the {quorum} witness cosignatures required",
                    w.cosigned.len()
                )));
            }
            cosigners = w.cosigned.into_iter().map(|c| c.cosigner).collect();
            Ok(())
        };
        let target = match &opts.checkpoint {
            Some(note) => {
                let cp = check(note, "the given checkpoint")?;
                if !verifiers.is_empty() {
                    witnessed(note, "the given checkpoint")?;
                }
                Some(cp)
            }
            None if !verifiers.is_empty() => {
                let labels: Vec<String> = verifiers.iter().map(|v| v.label()).collect();
                let size = self.store.latest_cosigned(&labels, quorum.max(1))?.ok_or_else(|| {
                    tamper(format!(
                        "no kept checkpoint carries {quorum} cosignatures of the witnesses given"
                    ))
                })?;
                let note = self.store.checkpoint_note(size)?.ok_or_else(|| {
                    tamper(format!(
                        "cosignatures are kept for a missing checkpoint of size {size}"
                    ))
                })?;
                let mut full = note.clone();
                for (_, line) in self.store.cosignatures(size)? {
                    full.push_str(&line);
                }
                witnessed(&full, &format!("the checkpoint of size {size}"))?;
                // The latest signed checkpoint must be the witnessed one: a
                // checkpoint signed past it without the quorum is a view
                // no witness saw (a copy run without its witnesses, or a
                // round still pending).
                let latest = kept_checkpoints
                    .last()
                    .map(|(s, _)| *s)
                    .max(signed_state.as_ref().map(|s| s.size))
                    .unwrap_or(0);
                if latest > size {
                    return Err(tamper(format!(
                        "the latest signed checkpoint ({latest} leaves) is not cosigned by {quorum} of the witnesses given; the latest checkpoint that is ends at {size} leaves: a checkpoint signed without the witnesses (a copy of the vault run without them signs a fork no witness sees), or one whose cosigning round is still pending (`postvault log witnesses show`, the service's `/v1/log/witnesses`)"
                    )));
                }
                Some(check(&note, "the latest witnessed checkpoint")?)
            }
            None => match kept_checkpoints.last() {
                Some((_, note)) => Some(check(note, "the latest checkpoint")?),
                None => None,
            },
        };
        let since = match (&opts.since, &target) {
            (Some(note), Some(new)) => {
                let old = check(note, "the earlier checkpoint")?;
                if old.size > new.size {
                    return Err(tamper(format!(
                        "the earlier checkpoint ({}) is larger than the later one ({})",
                        old.size, new.size
                    )));
                }
                let proof = postvault_log::prove_consistency(old.size, new.size, &recomputed)?;
                postvault_log::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
                    .map_err(|e| tamper(format!("consistency proof: {e}")))?;
                Some(CheckpointInfo::from(&old))
            }
            (Some(_), None) => {
                return Err(tamper("no checkpoint to prove consistency with".into()));
            }
            _ => None,
        };
        Ok(VerifyReport {
            ok: true,
            size: n,
            root: B64.encode(root_of(n)?),
            unwitnessed_leaves: n - target.as_ref().map_or(0, |c| c.size),
            checkpoint: target.as_ref().map(CheckpointInfo::from),
            checkpoints_checked: kept_checkpoints.len(),
            since,
            signed_state: signed_state
                .as_ref()
                .map(crate::log_state::SignedState::from),
            cosigners,
            witness_quorum: quorum,
        })
    }
}

/// Makes or loads the vault's log signing key.
pub(crate) fn signer(origin: &str, seed: &[u8]) -> Result<LogSigner, VaultError> {
    Ok(LogSigner::from_bytes(origin, seed)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod proof_cache_tests {
    use super::*;

    /// A note of the vault's own log that verified is answered from memory;
    /// any other text (a byte of its root or of its signature changed) is
    /// verified in full and refused, however many good notes are kept, and
    /// only a few are kept.
    #[test]
    fn own_checkpoints_verified_once_are_remembered_by_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let kept = |v: &Vault| v.verified_notes.0.lock().unwrap().len();
        let mut notes = Vec::new();
        for i in 0..(NOTES_KEPT + 3) {
            v.store()
                .append_leaves(1, &mut |_, _| {
                    format!("{{\"v\":1,\"n\":{i}}}").into_bytes().into()
                })
                .unwrap();
            let note = v.checkpoint().unwrap();
            let cp = v.open_own_checkpoint(&note).unwrap();
            assert_eq!(
                cp,
                postvault_log::open_checkpoint(&note, &v.signer.verifier_key()).unwrap()
            );
            // Again: from memory, the same checkpoint.
            assert_eq!(v.open_own_checkpoint(&note).unwrap(), cp);
            notes.push(note);
        }
        assert_eq!(kept(&v), NOTES_KEPT);
        let last = notes.last().unwrap();
        // The newest is answered from memory.
        assert_eq!(
            v.verified_notes.find(last),
            Some(postvault_log::open_checkpoint(last, &v.signer.verifier_key()).unwrap())
        );
        // The root line changed: the text is new, its signature fails.
        let lines: Vec<&str> = last.split('\n').collect();
        let mut root = lines[2].to_string();
        root.replace_range(0..1, if root.starts_with('A') { "B" } else { "A" });
        let forged = last.replacen(lines[2], &root, 1);
        assert_ne!(&forged, last);
        assert!(matches!(
            v.open_own_checkpoint(&forged),
            Err(LogError::BadSignature)
        ));
        // A byte of the Ed25519 signature changed (past the key id's four
        // bytes, clear of the base64's padded end).
        let sig_at = last.rfind(' ').unwrap() + 1 + 20;
        let mut bad = last.clone().into_bytes();
        bad[sig_at] = if bad[sig_at] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(
            v.open_own_checkpoint(&bad),
            Err(LogError::BadSignature)
        ));
        // Nothing refused is kept; the good note still opens.
        assert!(v.verified_notes.find(&forged).is_none());
        assert!(v.verified_notes.find(&bad).is_none());
        assert_eq!(
            v.open_own_checkpoint(last).unwrap().size,
            v.checkpoint_size().unwrap()
        );
        // The oldest notes left memory and still verify in full.
        assert!(v.verified_notes.find(&notes[0]).is_none());
        assert_eq!(
            v.open_own_checkpoint(&notes[0]).unwrap(),
            postvault_log::open_checkpoint(&notes[0], &v.signer.verifier_key()).unwrap()
        );
    }

    /// A person's leaves are found across the scan's chunks, and only theirs.
    #[test]
    fn tagged_leaves_are_found_across_scan_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let key = TagKey::from_bytes(&[7u8; 32]).unwrap();
        let other = TagKey::from_bytes(&[8u8; 32]).unwrap();
        let chunk = TAG_SCAN_CHUNK;
        let theirs = [0, 10, chunk - 1, chunk, chunk + 1, 2 * chunk + 3];
        let n = 2 * chunk + 10;
        v.store()
            .append_leaves(n as usize, &mut |idx, _| {
                let k = if theirs.contains(&idx) { &key } else { &other };
                format!(
                    "{{\"action\":\"read\",\"subject_tag\":\"{}\",\"v\":1}}",
                    B64.encode(k.tag(idx))
                )
                .into_bytes()
                .into()
            })
            .unwrap();
        let found: Vec<u64> = v
            .scanned_leaves(&key, n)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found, theirs);
        // Within a smaller tree, only the leaves in it.
        let found: Vec<u64> = v
            .scanned_leaves(&key, chunk)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found, [0, 10, chunk - 1]);
    }

    /// A person's leaves are found through the leaf index across months and
    /// windows, only theirs, only inside the tree asked about; a filing that
    /// points at a leaf without their tag is reported as tampering.
    #[test]
    fn tagged_leaves_are_found_by_the_leaf_index() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let key = TagKey::from_bytes(&[7u8; 32]).unwrap();
        let other = TagKey::from_bytes(&[8u8; 32]).unwrap();
        let start = v.store().log_size().unwrap();
        let month = 30 * 86_400_000i64;
        let mut theirs = Vec::new();
        // 200 leaves, one in three theirs, over three months; 70 of theirs
        // in one month (past the first window).
        v.store()
            .append_leaves(200, &mut |idx, i| {
                let mine = i % 3 == 0 || (100..150).contains(&i);
                let time = month * (i as i64 / 80);
                let (tag, index) = v
                    .tag_and_index(Some(if mine { &key } else { &other }), idx, time)
                    .unwrap();
                postvault_store::Leaf {
                    bytes: format!(
                        "{{\"action\":\"read\",\"subject_tag\":\"{}\",\"v\":1}}",
                        B64.encode(tag)
                    )
                    .into_bytes(),
                    index,
                }
            })
            .unwrap();
        for i in 0..200u64 {
            if i % 3 == 0 || (100..150).contains(&i) {
                theirs.push(start + i);
            }
        }
        // Leaves about nobody known are filed too, under nobody's tokens.
        v.store()
            .append_leaves(5, &mut |idx, _| {
                let (tag, index) = v.tag_and_index(None, idx, 0).unwrap();
                postvault_store::Leaf {
                    bytes: format!("{{\"subject_tag\":\"{}\"}}", B64.encode(tag)).into_bytes(),
                    index,
                }
            })
            .unwrap();
        let n = v.store().log_size().unwrap();
        assert_eq!(
            v.store()
                .leaf_index_page(None, 1000)
                .unwrap()
                .iter()
                .filter(|r| (start..n).contains(&r.idx))
                .count(),
            205
        );
        let found = |size| -> Vec<u64> {
            v.tagged_leaves(&key, size)
                .unwrap()
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(found(n), theirs);
        assert_eq!(
            found(n),
            v.scanned_leaves(&key, n)
                .unwrap()
                .into_iter()
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        assert_eq!(found(start + 10), [start, start + 3, start + 6, start + 9]);
        // A filing under the person's next slot that points at someone
        // else's leaf: tampering, not a quiet answer.
        let next = v.store().log_size().unwrap();
        v.store()
            .append_leaves(1, &mut |idx, _| {
                let (_, index) = v.tag_and_index(Some(&key), idx, 0).unwrap();
                postvault_store::Leaf {
                    bytes: format!("{{\"subject_tag\":\"{}\"}}", B64.encode(other.tag(idx)))
                        .into_bytes(),
                    index,
                }
            })
            .unwrap();
        match v.tagged_leaves(&key, next + 1) {
            Err(VaultError::LogVerification(m)) => assert!(m.contains("leaf index"), "{m}"),
            other => panic!("expected a verification error, got {other:?}"),
        }
    }

    /// A checkpoint that already covers what a report needs is reused; one
    /// that does not is not: a new one is signed.
    #[test]
    fn a_covering_checkpoint_is_reused_and_a_short_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        v.store()
            .append_leaves(10, &mut |idx, _| format!("leaf {idx}").into_bytes().into())
            .unwrap();
        let n = v.store().log_size().unwrap();
        let first = v.checkpoint_covering(n).unwrap();
        assert_eq!(first.size, n);
        let kept = v.store().checkpoints().unwrap().len();
        v.store()
            .append_leaves(3, &mut |idx, _| format!("leaf {idx}").into_bytes().into())
            .unwrap();
        // Covers the first n: the same one, nothing signed.
        let again = v.checkpoint_covering(n).unwrap();
        assert_eq!(again.note, first.note);
        assert_eq!(v.store().checkpoints().unwrap().len(), kept);
        // Needs the new leaves: signed now, over all of them.
        let newer = v.checkpoint_covering(n + 1).unwrap();
        assert_eq!(newer.size, n + 3);
        assert_eq!(v.store().checkpoints().unwrap().len(), kept + 1);
        // A store whose tree no longer reaches the checkpoint (rolled back
        // under the running vault) gets nothing reused: the signing path,
        // with its rollback checks, decides.
        assert!(v.kept_checkpoint_covering(n).unwrap().is_some());
        rusqlite::Connection::open(dir.path().join("data.db"))
            .unwrap()
            .execute(
                "UPDATE meta SET value = '0' WHERE key = 'log_hashed_size'",
                [],
            )
            .unwrap();
        assert!(v.kept_checkpoint_covering(n).unwrap().is_none());
        // Nor is the last checkpoint signed handed to a report on trust:
        // the signing path runs, with its checks (here its catch-up finds
        // the hashes it would write there already: refused).
        let r = v.checkpoint_covering(n);
        assert!(r.is_err() || v.store().hashed_size().unwrap() >= n, "{r:?}");
    }

    /// A report whose leaves the kept checkpoint covers takes it while
    /// another report signs; one that needs more waits for that signing,
    /// then signs once; reports that arrive together share one signature.
    #[test]
    fn a_covered_report_does_not_wait_for_a_signing_in_progress() {
        use std::sync::mpsc::RecvTimeoutError;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        let add = |k: usize| {
            v.store()
                .append_leaves(k, &mut |idx, _| format!("leaf {idx}").into_bytes().into())
                .unwrap();
            v.store().log_size().unwrap()
        };
        let n = add(10);
        let first = v.checkpoint_covering(n).unwrap();
        let signed = || v.store().checkpoints().unwrap().len();
        let kept = signed();
        let more = add(3);
        let v = &v;
        std::thread::scope(|s| {
            // Another report's turn to sign, held.
            let turn = v.covering.turn_now();
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || tx.send(v.checkpoint_covering(n).map(|c| c.note)).unwrap());
            let covered = rx.recv_timeout(Duration::from_secs(60));
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                tx.send(v.checkpoint_covering(more).map(|c| c.size))
                    .unwrap()
            });
            let early = rx.recv_timeout(Duration::from_millis(300));
            drop(turn);
            assert!(covered.is_ok(), "waited for the signing");
            assert_eq!(covered.unwrap().unwrap(), first.note);
            assert!(
                matches!(early, Err(RecvTimeoutError::Timeout)),
                "signed beside a signing"
            );
            assert_eq!(rx.recv().unwrap().unwrap(), more);
        });
        assert_eq!(signed(), kept + 1);
        let last = add(5);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert_eq!(v.checkpoint_covering(last).unwrap().size, last));
            }
        });
        assert_eq!(signed(), kept + 2);
    }

    #[test]
    fn proofs_cache_only_hashes_shared_by_256_leaves_or_the_right_edge() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::init(dir.path(), crate::OpenOptions::default()).unwrap();
        v.store()
            .append_leaves(3000, &mut |idx, _| {
                format!("leaf {idx}").into_bytes().into()
            })
            .unwrap();
        let n = v.log_catch_up().unwrap();
        assert!(n >= 3000);
        let root = v.log_root(n).unwrap();
        for index in [0, 1, 255, 256, 1234, n - 1] {
            // Twice: the second from the cache where it has the hashes.
            for _ in 0..2 {
                let p = v.prove_inclusion(index, Some(n)).unwrap();
                let hash = |b: &str| -> Hash { B64.decode(b).unwrap().try_into().unwrap() };
                let path: Vec<Hash> = p.hashes.iter().map(|h| hash(h)).collect();
                let body = v.store().leaves(index, index + 1).unwrap().pop().unwrap();
                let leaf = postvault_log::leaf_hash(&body);
                assert_eq!(hash(&p.leaf_hash), leaf);
                postvault_log::verify_inclusion(index, n, &leaf, &path, &root).unwrap();
            }
        }
        let c = v.proof_hashes.lock().unwrap();
        assert!(!c.is_empty(), "the upper levels are kept");
        for (i, _) in c.iter() {
            assert!(shared_by_proofs(*i, n), "{i}");
        }
        // Not the leaves' own hashes, nor their low siblings.
        for index in [0, 1, 1234, 1235, n - 2, n - 1] {
            let at = postvault_log::leaf_stored_index(index).unwrap();
            assert!(c.peek(&at).is_none(), "leaf {index}");
        }
        drop(c);
        // The right edge is the maximal complete subtrees, one a bit of the
        // size: the last leaf of an odd-sized tree is one, and stops being
        // one (and being looked up in the cache) once the tree grows.
        let last = postvault_log::leaf_stored_index(2998).unwrap();
        assert!(shared_by_proofs(last, 2999));
        assert!(!shared_by_proofs(last, 3000) && !shared_by_proofs(last, 3001));
        let sibling = postvault_log::leaf_stored_index(2997).unwrap();
        assert!(!shared_by_proofs(sibling, 2999));
        // The hashed size seen is a floor for later proofs, never a ceiling:
        // the log grows unhashed, and a proof of the larger tree catches up
        // and verifies, while one of the old size still does without.
        v.store()
            .append_leaves(700, &mut |idx, _| {
                format!("later {idx}").into_bytes().into()
            })
            .unwrap();
        let m = v.store().log_size().unwrap();
        assert!(m > n && v.store().hashed_size().unwrap() == n);
        for (index, size) in [(n - 1, n), (m - 1, m), (3, m)] {
            let p = v.prove_inclusion(index, Some(size)).unwrap();
            let hash = |b: &str| -> Hash { B64.decode(b).unwrap().try_into().unwrap() };
            let path: Vec<Hash> = p.hashes.iter().map(|h| hash(h)).collect();
            let root = v.log_root(size).unwrap();
            postvault_log::verify_inclusion(index, size, &hash(&p.leaf_hash), &path, &root)
                .unwrap();
        }
        assert_eq!(v.store().hashed_size().unwrap(), m);
        assert!(v.prove_inclusion(m, Some(m + 1)).is_err(), "beyond the log");
    }
}
