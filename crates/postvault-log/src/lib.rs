//! The transparency log behind postvault: every access decision the vault makes
//! is appended as a leaf to an append-only Merkle tree, and the tree's signed
//! heads let anyone check afterwards that no decision was dropped or rewritten.
//!
//! This crate is sans-IO. It computes and checks; it never reads or writes
//! storage itself:
//!
//! - hashing is [RFC 6962](https://www.rfc-editor.org/rfc/rfc6962) (SHA-256
//!   with `0x00` leaf and `0x01` node prefixes), see [`leaf_hash`] and
//!   [`node_hash`];
//! - the tree is kept as the *stored hashes* of Go's `sumdb/tlog` model
//!   (one hash per complete subtree, at a dense index): the caller stores them
//!   (the vault uses SQLite) and hands them back through a [`HashStore`].
//!   [`append_hashes`] returns the new stored hashes to be written in the same
//!   transaction as the leaves;
//! - [`tree_root`], [`prove_inclusion`] / [`verify_inclusion`] and
//!   [`prove_consistency`] / [`verify_consistency`] give RFC 6962 roots and
//!   proofs, byte-compatible with every other RFC 6962 implementation;
//! - [`tile_bytes`], [`tile_path`], [`entry_bundle`] and friends serve the tree
//!   as [C2SP tlog-tiles](https://c2sp.org/tlog-tiles);
//! - [`LogSigner`] signs [C2SP tlog-checkpoint](https://c2sp.org/tlog-checkpoint)
//!   bodies as Ed25519 [C2SP signed notes](https://c2sp.org/signed-note), and
//!   [`open_checkpoint`] verifies them;
//! - [`CosignerKey`] and [`CosignatureVerifier`] make and check
//!   [C2SP tlog-cosignature/v1](https://c2sp.org/tlog-cosignature) witness
//!   cosignatures (Ed25519, signature type 0x04), and [`verify_cosigned`]
//!   checks a checkpoint and its cosignatures together
//!   ([`verify_cosignatures`] the cosignatures alone, once the log's
//!   signature was checked);
//! - [`parse_add_checkpoint`], [`open_submission`] and [`Submission::check`]
//!   are the [C2SP tlog-witness](https://c2sp.org/tlog-witness) protocol
//!   without IO: the request body, and a witness's decision with its status
//!   code;
//! - [`parse_note`] takes any signed note apart; like every parser here it
//!   is total (an error, never a panic, on any input).
//!
//! The Merkle and note algorithms come from Cloudflare's `tlog_tiles` and
//! `signed_note` crates (ports of Go's `golang.org/x/mod/sumdb`); this crate
//! wraps them so that no input, and no misbehaving [`HashStore`], can make
//! them panic.

mod checkpoint;
mod cosignature;
mod error;
mod frontier;
mod note;
mod proof_tiles;
mod tiles;
mod tree;
mod witness;

pub use checkpoint::{Checkpoint, LogSigner, log_key_name, open_checkpoint};
pub use cosignature::{
    COSIGNATURE_LEN, COSIGNATURE_TYPE, CosignatureVerifier, Cosigned, CosignerKey, MAX_TIMESTAMP,
    WitnessedCheckpoint, cosignature_message, cosignature_verifier_key, verify_cosignatures,
    verify_cosigned,
};
pub use error::LogError;
pub use frontier::RootBuilder;
pub use note::{
    MAX_NOTE_LEN, NoteSignature, SignedNote, parse_note, parse_signature_line,
    parse_signature_lines,
};
pub use proof_tiles::{
    PROOF_TILE_BYTES, PROOF_TILE_HASHES, PROOF_TILE_LEVELS, TileSlot, proof_tile_indexes,
    proof_tile_ranges, proof_tile_slot, proof_tiles,
};
pub use tiles::{
    MAX_ENTRY_LEN, TILE_HEIGHT, TILE_WIDTH, TileRequest, entry_bundle, entry_bundle_path,
    new_tiles, parse_entry_bundle, parse_tile_path, tile_bytes, tile_path,
};
pub use tree::{
    EMPTY_ROOT, Hash, HashStore, MAX_TREE_SIZE, append_hashes, leaf_hash, leaf_stored_index,
    node_hash, prove_consistency, prove_inclusion, stored_hash_count, stored_index_level,
    stored_index_node, tree_root, verify_consistency, verify_inclusion,
};
pub use witness::{
    AddCheckpoint, MAX_BODY_LEN, MAX_PROOF_LINES, Refusal, Submission, TLOG_SIZE_CONTENT_TYPE,
    WitnessedTree, format_tlog_size, open_submission, parse_add_checkpoint, parse_decimal,
    parse_tlog_size,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod witness_tests;
