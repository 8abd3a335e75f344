//! The one error type of the crate.

/// Everything that can go wrong in the log: a proof or signature that does
/// not check out, malformed input, or a failure of the caller's storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An inclusion or consistency proof does not lead to the claimed root(s).
    #[error("bad proof")]
    BadProof,
    /// The note carries no valid signature by the expected key.
    #[error("bad signature")]
    BadSignature,
    /// A signed note, or the checkpoint inside it, is not well formed.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// A leaf index, tree size or tile lies outside the tree (or outside
    /// [`crate::MAX_TREE_SIZE`]).
    #[error("index out of range: {0}")]
    IndexOutOfRange(String),
    /// The caller's [`crate::HashStore`] failed, or returned the wrong number of hashes.
    #[error("storage error: {0}")]
    Storage(String),
    /// A signing or verifier key (or the key name) is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A checkpoint's origin line is not the name of the key that signs or verifies it.
    #[error("checkpoint origin {found:?} does not match key name {expected:?}")]
    OriginMismatch {
        /// The key name.
        expected: String,
        /// The checkpoint's origin.
        found: String,
    },
    /// A tile path or tile coordinate is not valid C2SP tlog-tiles.
    #[error("invalid tile: {0}")]
    InvalidTile(String),
    /// An entry bundle is truncated or holds more than 256 entries.
    #[error("malformed entry bundle: {0}")]
    MalformedEntryBundle(&'static str),
    /// An entry longer than 65535 bytes cannot be put in an entry bundle.
    #[error("entry too large: {0} bytes, an entry bundle holds at most 65535")]
    EntryTooLarge(usize),
    /// An error of the underlying tlog code that none of the above describes.
    #[error("internal error: {0}")]
    Internal(String),
}
