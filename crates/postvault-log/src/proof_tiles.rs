//! Proof tiles: the tree's lower levels kept a second time, grouped so that
//! an inclusion proof reads them in a few small rows instead of a row per
//! hash, scattered.
//!
//! The stored hashes (Go `sumdb/tlog`'s layout, [`crate::HashStore`]) are one
//! row each, numbered in the order they are completed. An inclusion proof
//! needs the leaf's own hash and one sibling per level; in a large log the
//! siblings of levels 0-7 lie up to 511 stored indexes apart, so a proof of
//! a random leaf touches four or five pages no cache holds. A proof tile
//! holds every hash of four consecutive levels of one complete subtree of
//! height 4: levels 0-3 of 16 leaves (band 0), levels 4-7 of 256 leaves
//! (band 1), 8-11 of 4,096 (band 2), 12-15 of 65,536 (band 3). That is
//! 16 + 8 + 4 + 2 = 30 hashes, 960 bytes, which fit in one page; the proof
//! of any leaf takes levels 0-15 from four tiles, and each band has 16 times
//! fewer tiles than the one below (in a large log only band 0's are not in
//! a cache). Levels 16 and up are read as stored hashes.
//!
//! A tile exists once its subtree is complete: band `b` tile `t` once
//! `16^(b+1) (t + 1)` leaves are hashed.
//! Tiles are derived data, written with the stored hashes that complete
//! them, and checked against the leaves by verification like every stored
//! hash.

use tlog_tiles as tlog;

use crate::LogError;
use crate::tree::{Hash, HashStore, read_checked};

/// Hashes in one proof tile.
pub const PROOF_TILE_HASHES: usize = 30;

/// Bytes of one proof tile.
pub const PROOF_TILE_BYTES: usize = PROOF_TILE_HASHES * 32;

/// Levels held in proof tiles: 0 up to (not including) this one.
pub const PROOF_TILE_LEVELS: u8 = 16;

/// Bands of tiles, four levels each.
const BANDS: u8 = PROOF_TILE_LEVELS / HEIGHT;

/// Levels of the tree in one tile.
const HEIGHT: u8 = 4;

/// Where each of a tile's four levels starts among its 30 hashes.
const LEVEL_START: [usize; 4] = [0, 16, 24, 28];

/// A tile's band is kept in the id's top byte: the tiles of one band are
/// numbered consecutively (an upper band's few rows stay together).
const BAND_SHIFT: u32 = 56;

// Band 0's tile numbers stay below the band bits in the largest tree.
const _: () = assert!(crate::MAX_TREE_SIZE >> HEIGHT < 1 << BAND_SHIFT);

/// Where a stored hash is held in the proof tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSlot {
    /// The tile's id: its band in the top byte, its number below.
    pub tile: u64,
    /// The hash's position among the tile's [`PROOF_TILE_HASHES`].
    pub slot: usize,
    /// Leaves that must be hashed for the tile to exist.
    pub end: u64,
}

/// The tile slot of stored hash `index`, or None for a hash of level 16 or
/// more (not held in tiles).
pub fn proof_tile_slot(index: u64) -> Option<TileSlot> {
    let (level, n) = tlog::split_stored_hash_index(index);
    if level >= PROOF_TILE_LEVELS {
        return None;
    }
    let band = level / HEIGHT;
    let top = HEIGHT * (band + 1);
    let shift = top - level;
    let t = n >> shift;
    Some(TileSlot {
        tile: (u64::from(band) << BAND_SHIFT) | t,
        slot: LEVEL_START[usize::from(level - HEIGHT * band)] + (n - (t << shift)) as usize,
        end: (t + 1) << top,
    })
}

/// The stored indexes of tile `t` of `band`, in slot order.
fn tile_indexes(band: u8, t: u64) -> impl Iterator<Item = u64> {
    let top = HEIGHT * (band + 1);
    (0..HEIGHT).flat_map(move |l| {
        let level = HEIGHT * band + l;
        let shift = top - level;
        (0..1u64 << (HEIGHT - l)).map(move |k| tlog::stored_hash_index(level, (t << shift) + k))
    })
}

/// The stored indexes of the hashes tile `tile` holds, in slot order.
pub fn proof_tile_indexes(tile: u64) -> impl Iterator<Item = u64> {
    // Ids of another top byte are no tile's; they name band 3's.
    let band = (tile >> BAND_SHIFT).min(u64::from(BANDS - 1)) as u8;
    tile_indexes(band, tile & ((1 << BAND_SHIFT) - 1))
}

/// The ids of the tiles that exist for a tree hashed up to `hashed` leaves,
/// in a store that writes them from `tiled_from` leaves on: those whose
/// subtree was completed by a later append. One range per band, ascending.
pub fn proof_tile_ranges(tiled_from: u64, hashed: u64) -> [std::ops::Range<u64>; BANDS as usize] {
    [0u8, 1, 2, 3].map(|band| {
        let top = HEIGHT * (band + 1);
        let id = |t: u64| (u64::from(band) << BAND_SHIFT) | t;
        let (a, b) = (tiled_from >> top, hashed >> top);
        id(a)..id(b.max(a))
    })
}

/// The tiles completed by appending leaves `from..to` to a tree of `from`
/// leaves, as `(tile id, PROOF_TILE_BYTES bytes)`. `new` is what
/// [`crate::append_hashes`] returned for that append; the hashes of a tile
/// that were stored by earlier appends are read from `store`, in one read.
pub fn proof_tiles(
    from: u64,
    to: u64,
    new: &[(u64, Hash)],
    store: &dyn HashStore,
) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let base = tlog::stored_hash_index(0, from);
    let mut tiles: Vec<(u64, Vec<u64>)> = Vec::new();
    for band in 0..BANDS {
        let top = HEIGHT * (band + 1);
        for t in (from >> top)..(to >> top) {
            tiles.push((
                (u64::from(band) << BAND_SHIFT) | t,
                tile_indexes(band, t).collect(),
            ));
        }
    }
    let mut old: Vec<u64> = tiles
        .iter()
        .flat_map(|(_, ix)| ix.iter().copied().filter(|&i| i < base))
        .collect();
    old.sort_unstable();
    old.dedup();
    let old_hashes = if old.is_empty() {
        Vec::new()
    } else {
        read_checked(store, &old)?
    };
    let get = |i: u64| -> Result<Hash, LogError> {
        if i < base {
            let at = old.binary_search(&i).map_err(|_| missing(i))?;
            return Ok(old_hashes[at]);
        }
        match usize::try_from(i - base).ok().and_then(|at| new.get(at)) {
            Some((j, h)) if *j == i => Ok(*h),
            _ => Err(missing(i)),
        }
    };
    tiles
        .into_iter()
        .map(|(id, ix)| {
            let mut bytes = Vec::with_capacity(PROOF_TILE_BYTES);
            for i in ix {
                bytes.extend_from_slice(&get(i)?);
            }
            Ok((id, bytes))
        })
        .collect()
}

fn missing(index: u64) -> LogError {
    LogError::Storage(format!(
        "stored hash {index} is needed for a proof tile but was not given"
    ))
}
