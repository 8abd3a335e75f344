//! RFC 6962 hashing, the stored-hash model of Go's `sumdb/tlog`, roots and proofs.
//!
//! All the Merkle work is done by `tlog_tiles`; this module feeds it the
//! caller's [`HashStore`] through an adapter that turns storage failures and
//! short reads into errors (the ported Go code asserts on them).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use tlog_tiles as tlog;

use crate::LogError;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree, SHA-256 of the empty string (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = tlog::EMPTY_HASH.0;

/// The largest tree this crate works with: 2^48 leaves (about 2.8 × 10^14).
///
/// Far beyond any vault, and it keeps every index computation of the ported
/// Go code well away from integer overflow. Larger sizes are refused with
/// [`LogError::IndexOutOfRange`].
pub const MAX_TREE_SIZE: u64 = 1 << 48;

/// The longest proof a verifier looks at. Proofs in a tree of at most
/// [`MAX_TREE_SIZE`] leaves have at most 2 × 48 hashes; anything longer is
/// refused before any hashing.
const MAX_PROOF_LEN: usize = 2 * 48 + 2;

/// RFC 6962 leaf hash: `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog::record_hash(leaf).0
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tlog::node_hash(tlog::Hash(*left), tlog::Hash(*right)).0
}

/// Storage of the tree's hashes, implemented by the caller.
///
/// The tree is stored as Go `sumdb/tlog` "stored hashes": the hash of every
/// complete subtree, numbered densely in the order they are completed. A tree
/// of `n` leaves has [`stored_hash_count`]`(n)` of them, at indexes
/// `0..stored_hash_count(n)`, and appending never changes an existing one, so
/// they can live in an append-only table keyed by index. [`append_hashes`]
/// says which to write; everything else only reads them.
pub trait HashStore {
    /// Returns the hashes at the given stored indexes, in the same order.
    ///
    /// Indexes are usually asked for in increasing order. Must return exactly
    /// one hash per index, or an error (a missing index is an error, typically
    /// [`LogError::Storage`]).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError>;
}

impl<T: HashStore + ?Sized> HashStore for &T {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        (**self).read_hashes(indexes)
    }
}

/// A slice holds stored hash `i` at position `i`.
impl HashStore for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or_else(|| missing(i))
            })
            .collect()
    }
}

/// A vector holds stored hash `i` at position `i`.
impl HashStore for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl<S: std::hash::BuildHasher> HashStore for HashMap<u64, Hash, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|i| self.get(i).copied().ok_or_else(|| missing(*i)))
            .collect()
    }
}

impl HashStore for BTreeMap<u64, Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|i| self.get(i).copied().ok_or_else(|| missing(*i)))
            .collect()
    }
}

fn missing(index: u64) -> LogError {
    LogError::Storage(format!("no stored hash at index {index}"))
}

/// The number of stored hashes of a tree of `size` leaves: after appending
/// up to `size`, the store holds exactly the indexes `0..stored_hash_count(size)`.
pub fn stored_hash_count(size: u64) -> Result<u64, LogError> {
    check_size(size)?;
    Ok(tlog::stored_hash_count(size))
}

/// The level of the subtree whose hash is stored at `index` (0: a leaf's
/// hash; level `l` covers 2^l leaves).
pub fn stored_index_level(index: u64) -> u8 {
    tlog::split_stored_hash_index(index).0
}

/// The subtree whose hash is stored at `index`: its level and its number
/// at that level (it covers leaves `n << level .. (n + 1) << level`).
pub fn stored_index_node(index: u64) -> (u8, u64) {
    tlog::split_stored_hash_index(index)
}

/// The stored index of leaf `index`'s leaf hash (handy to fetch the leaf hash
/// an inclusion proof is about).
pub fn leaf_stored_index(index: u64) -> Result<u64, LogError> {
    if index >= MAX_TREE_SIZE {
        return Err(out_of_range(format!(
            "leaf {index} is beyond the largest tree ({MAX_TREE_SIZE} leaves)"
        )));
    }
    Ok(tlog::stored_hash_index(0, index))
}

fn out_of_range(message: String) -> LogError {
    LogError::IndexOutOfRange(message)
}

fn check_size(size: u64) -> Result<(), LogError> {
    if size > MAX_TREE_SIZE {
        return Err(out_of_range(format!(
            "tree size {size} exceeds the maximum of {MAX_TREE_SIZE}"
        )));
    }
    Ok(())
}

/// Given a tree of `n` leaves held in `store`, the stored hashes to write when
/// appending the leaves whose leaf hashes are `leaf_hashes` (leaf `n`, `n + 1`, …).
///
/// Returns `(stored index, hash)` pairs; the indexes run consecutively from
/// [`stored_hash_count`]`(n)` to `stored_hash_count(n + leaf_hashes.len())`.
/// The caller must write them in the same transaction as the leaves. Reads at
/// most one batch of `log2(n)` hashes from `store` (the roots of the complete
/// subtrees that the new leaves will be merged with), whatever the batch size.
pub fn append_hashes(
    n: u64,
    leaf_hashes: &[Hash],
    store: &dyn HashStore,
) -> Result<Vec<(u64, Hash)>, LogError> {
    let count = u64::try_from(leaf_hashes.len())
        .map_err(|_| out_of_range("too many leaves in one append".to_owned()))?;
    let end = n
        .checked_add(count)
        .ok_or_else(|| out_of_range("tree size overflows".to_owned()))?;
    check_size(end)?;
    if leaf_hashes.is_empty() {
        return Ok(Vec::new());
    }

    // Every old hash the new leaves are combined with is the root of one of
    // the maximal complete subtrees of the old tree, so one read of those
    // serves the whole batch.
    let frontier = if n == 0 {
        Vec::new()
    } else {
        tlog::sub_tree_index(0, n, Vec::new())
    };
    let known = if frontier.is_empty() {
        Vec::new()
    } else {
        let hashes = read_checked(store, &frontier)?;
        frontier.into_iter().zip(hashes).collect()
    };

    let base = tlog::stored_hash_index(0, n);
    let mut reader = Reader::new(store);
    reader.known = known;
    reader.base = base;
    reader.pending.reserve(leaf_hashes.len().saturating_mul(2));
    for (record, leaf) in (n..end).zip(leaf_hashes) {
        let result = tlog::stored_hashes_for_record_hash(record, tlog::Hash(*leaf), &reader);
        let new_hashes = reader.finish(result)?;
        reader.pending.extend(new_hashes.into_iter().map(|h| h.0));
    }
    Ok((base..).zip(reader.pending).collect())
}

/// The RFC 6962 root of the tree of the first `n` leaves (the empty-tree hash
/// for `n == 0`). Reads at most `1 + log2(n)` stored hashes in one call.
pub fn tree_root(n: u64, store: &dyn HashStore) -> Result<Hash, LogError> {
    check_size(n)?;
    let reader = Reader::new(store);
    let result = tlog::tree_hash(n, &reader);
    reader.finish(result).map(|h| h.0)
}

/// The RFC 6962 inclusion proof (audit path) of leaf `index` in the tree of
/// the first `size` leaves, leaf-side sibling first.
pub fn prove_inclusion(
    index: u64,
    size: u64,
    store: &dyn HashStore,
) -> Result<Vec<Hash>, LogError> {
    check_size(size)?;
    check_index(index, size)?;
    let reader = Reader::new(store);
    let result = tlog::prove_record(size, index, &reader);
    reader.finish(result).map(unwrap_hashes)
}

/// Checks that `proof` shows the leaf with hash `leaf_hash` at `index` in the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LogError> {
    check_size(size)?;
    check_index(index, size)?;
    if proof.len() > MAX_PROOF_LEN {
        return Err(LogError::BadProof);
    }
    let proof = wrap_hashes(proof);
    tlog::check_record(
        &proof,
        size,
        tlog::Hash(*root),
        index,
        tlog::Hash(*leaf_hash),
    )
    .map_err(map_tlog_error)
}

/// The RFC 6962 consistency proof that the tree of `new` leaves extends the
/// tree of its first `old` leaves (`old <= new`). Empty when `old == 0` or
/// `old == new`.
pub fn prove_consistency(old: u64, new: u64, store: &dyn HashStore) -> Result<Vec<Hash>, LogError> {
    check_size(new)?;
    check_sizes(old, new)?;
    if old == 0 {
        return Ok(Vec::new());
    }
    let reader = Reader::new(store);
    let result = tlog::prove_tree(new, old, &reader);
    reader.finish(result).map(unwrap_hashes)
}

/// Checks that `proof` shows the tree of `new` leaves with root `new_root`
/// extending the tree of `old` leaves with root `old_root`.
///
/// Every tree extends the empty one: for `old == 0` the proof must be empty
/// and `old_root` the empty-tree hash.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LogError> {
    check_size(new)?;
    check_sizes(old, new)?;
    if proof.len() > MAX_PROOF_LEN {
        return Err(LogError::BadProof);
    }
    if old == 0 {
        let new_ok = new != 0 || *new_root == EMPTY_ROOT;
        if proof.is_empty() && *old_root == EMPTY_ROOT && new_ok {
            return Ok(());
        }
        return Err(LogError::BadProof);
    }
    let proof = wrap_hashes(proof);
    tlog::check_tree(
        &proof,
        new,
        tlog::Hash(*new_root),
        old,
        tlog::Hash(*old_root),
    )
    .map_err(map_tlog_error)
}

fn check_index(index: u64, size: u64) -> Result<(), LogError> {
    if index >= size {
        return Err(out_of_range(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    Ok(())
}

fn check_sizes(old: u64, new: u64) -> Result<(), LogError> {
    if old > new {
        return Err(out_of_range(format!(
            "old tree size {old} is larger than new tree size {new}"
        )));
    }
    Ok(())
}

fn wrap_hashes(hashes: &[Hash]) -> Vec<tlog::Hash> {
    hashes.iter().map(|h| tlog::Hash(*h)).collect()
}

fn unwrap_hashes(hashes: Vec<tlog::Hash>) -> Vec<Hash> {
    hashes.into_iter().map(|h| h.0).collect()
}

pub(crate) fn map_tlog_error(error: tlog::Error) -> LogError {
    match error {
        tlog::Error::InvalidProof => LogError::BadProof,
        tlog::Error::InvalidInput(message) => LogError::IndexOutOfRange(message),
        other => LogError::Internal(other.to_string()),
    }
}

/// Reads `indexes` from `store`, insisting on one hash per index.
pub(crate) fn read_checked(store: &dyn HashStore, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
    let hashes = store.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(LogError::Storage(format!(
            "hash store returned {} hashes for {} indexes",
            hashes.len(),
            indexes.len()
        )));
    }
    Ok(hashes)
}

/// Adapts a [`HashStore`] to `tlog_tiles::HashReader`.
///
/// The tlog code asserts that a reader returns one hash per index; this
/// adapter checks that instead and reports a failure as an error. As the
/// `HashReader` error type cannot carry a [`LogError`], the failure is kept
/// aside and [`Reader::finish`] puts it back in place of tlog's error.
///
/// For appends it also answers from hashes already known (`known`, sorted by
/// index) and from the hashes computed so far in the batch (`pending`, at
/// stored indexes `base..`), which are not in the store yet.
pub(crate) struct Reader<'a> {
    store: &'a dyn HashStore,
    known: Vec<(u64, Hash)>,
    base: u64,
    pending: Vec<Hash>,
    failure: RefCell<Option<LogError>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(store: &'a dyn HashStore) -> Self {
        Reader {
            store,
            known: Vec::new(),
            base: u64::MAX,
            pending: Vec::new(),
            failure: RefCell::new(None),
        }
    }

    /// Turns the result of a tlog call made with this reader into ours.
    pub(crate) fn finish<T>(&self, result: Result<T, tlog::Error>) -> Result<T, LogError> {
        result.map_err(|error| self.failure.take().unwrap_or_else(|| map_tlog_error(error)))
    }

    fn local(&self, index: u64) -> Option<Hash> {
        if index >= self.base {
            let offset = usize::try_from(index - self.base).ok()?;
            return self.pending.get(offset).copied();
        }
        let position = self.known.binary_search_by_key(&index, |(i, _)| *i).ok()?;
        self.known.get(position).map(|(_, h)| *h)
    }

    fn read(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, LogError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut remote_positions = Vec::new();
        let mut remote_indexes = Vec::new();
        for (position, &index) in indexes.iter().enumerate() {
            match self.local(index) {
                Some(hash) => out.push(tlog::Hash(hash)),
                None => {
                    out.push(tlog::Hash::default());
                    remote_positions.push(position);
                    remote_indexes.push(index);
                }
            }
        }
        if remote_indexes.is_empty() {
            return Ok(out);
        }
        let hashes = read_checked(self.store, &remote_indexes)?;
        for (position, hash) in remote_positions.into_iter().zip(hashes) {
            if let Some(slot) = out.get_mut(position) {
                *slot = tlog::Hash(hash);
            }
        }
        Ok(out)
    }
}

impl tlog::HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        self.read(indexes).map_err(|error| {
            *self.failure.borrow_mut() = Some(error);
            tlog::Error::IndexesNotInTree
        })
    }
}
