//! C2SP tlog-tiles: tile and entry-bundle paths, tile bytes, entry bundles.
//!
//! C2SP tiles have a fixed height of 8: a full tile is 256 consecutive hashes
//! of one tree level (level `L` of the tiling is level `8 L` of the tree). Go's
//! tlog, which `tlog_tiles` ports, has a variable height written into the path
//! (`tile/H/L/N`); C2SP drops it (`tile/L/N`), so the paths are built here.

use tlog_tiles as tlog;

use crate::LogError;
use crate::tree::{HashStore, MAX_TREE_SIZE, Reader};

/// Height of a C2SP tile: each tile spans 8 tree levels.
pub const TILE_HEIGHT: u8 = 8;

/// Width of a full C2SP tile, in hashes (and of a full entry bundle, in entries).
pub const TILE_WIDTH: u16 = 256;

/// The longest entry an entry bundle can hold (its length is a big-endian u16).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

const HASH_SIZE: usize = 32;

/// A C2SP tlog-tiles resource, as named by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileRequest {
    /// `tile/<L>/<N>[.p/<W>]`: `width` hashes of tiling level `level`.
    Hashes {
        /// Tiling level (tree level `8 * level`).
        level: u8,
        /// Index of the tile within its level.
        index: u64,
        /// Number of hashes, 256 for a full tile.
        width: u16,
    },
    /// `tile/entries/<N>[.p/<W>]`: the entries under level-0 tile `index`.
    Entries {
        /// Index of the bundle (the same as its level-0 tile).
        index: u64,
        /// Number of entries, 256 for a full bundle.
        width: u16,
    },
}

impl TileRequest {
    /// The resource's path, relative to the log's prefix.
    pub fn path(&self) -> String {
        match *self {
            TileRequest::Hashes {
                level,
                index,
                width,
            } => tile_path(level, index, width),
            TileRequest::Entries { index, width } => entry_bundle_path(index, width),
        }
    }
}

/// The C2SP path `tile/<L>/<N>[.p/<W>]` of hash tile `index` at tiling level
/// `level` with `width` hashes. `<N>` is written in 3-digit groups, all but the
/// last prefixed with `x` (1234067 is `x001/x234/067`); the `.p/<W>` suffix
/// marks a partial tile and is left out for `width == 256`.
///
/// Valid widths are `1..=256`; other values give a path that
/// [`parse_tile_path`] rejects.
pub fn tile_path(level: u8, index: u64, width: u16) -> String {
    format!(
        "tile/{level}/{}{}",
        encode_index(index),
        width_suffix(width)
    )
}

/// The C2SP path `tile/entries/<N>[.p/<W>]` of entry bundle `index` with
/// `width` entries, encoded as in [`tile_path`].
pub fn entry_bundle_path(index: u64, width: u16) -> String {
    format!(
        "tile/entries/{}{}",
        encode_index(index),
        width_suffix(width)
    )
}

fn encode_index(index: u64) -> String {
    let mut rest = index;
    let mut path = format!("{:03}", rest % 1000);
    while rest >= 1000 {
        rest /= 1000;
        path = format!("x{:03}/{path}", rest % 1000);
    }
    path
}

fn width_suffix(width: u16) -> String {
    if width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

/// Parses a C2SP tile or entry-bundle path (relative to the log prefix, such
/// as `tile/1/x001/x234/067.p/8` or `tile/entries/000`). Only the canonical
/// form is accepted: no leading zeroes in `<L>` or `<W>`, `<L>` at most 63,
/// `<W>` in `1..=255`.
pub fn parse_tile_path(path: &str) -> Result<TileRequest, LogError> {
    let bad = || LogError::InvalidTile(format!("malformed tile path {path:?}"));
    // The longest canonical path is under 60 bytes.
    if path.len() > 64 {
        return Err(bad());
    }
    let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
    let (kind, rest) = rest.split_once('/').ok_or_else(bad)?;
    let (index_part, width) = match rest.split_once(".p/") {
        Some((index_part, width)) => {
            let width = parse_decimal(width).ok_or_else(bad)?;
            let width = u16::try_from(width).map_err(|_| bad())?;
            if !(1..TILE_WIDTH).contains(&width) {
                return Err(bad());
            }
            (index_part, width)
        }
        None => (rest, TILE_WIDTH),
    };
    let index = parse_index(index_part).ok_or_else(bad)?;
    let request = if kind == "entries" {
        TileRequest::Entries { index, width }
    } else {
        let level = parse_decimal(kind).ok_or_else(bad)?;
        let level = u8::try_from(level).map_err(|_| bad())?;
        if level > 63 {
            return Err(bad());
        }
        TileRequest::Hashes {
            level,
            index,
            width,
        }
    };
    // Rejects leading zeroes and superfluous `x000/` groups.
    if request.path() != path {
        return Err(bad());
    }
    Ok(request)
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_index(text: &str) -> Option<u64> {
    let mut groups = text.split('/').peekable();
    let mut index: u64 = 0;
    while let Some(group) = groups.next() {
        let digits = if groups.peek().is_some() {
            group.strip_prefix('x')?
        } else {
            group
        };
        if digits.len() != 3 {
            return None;
        }
        let value = parse_decimal(digits)?;
        index = index.checked_mul(1000)?.checked_add(value)?;
    }
    Some(index)
}

/// The bytes of C2SP hash tile `index` at tiling level `level` with `width`
/// hashes, as served at [`tile_path`]: the concatenated stored hashes of tree
/// level `8 * level` at positions `index * 256 .. index * 256 + width`.
///
/// All those hashes must exist in the tree of `tree_size` leaves, i.e.
/// `(index * 256 + width) * 256^level <= tree_size`; a partial tile may be
/// produced for any width that fits, though C2SP serves the one of width
/// `floor(tree_size / 256^level) mod 256` for a checkpointed size.
pub fn tile_bytes(
    level: u8,
    index: u64,
    width: u16,
    tree_size: u64,
    store: &dyn HashStore,
) -> Result<Vec<u8>, LogError> {
    if !(1..=TILE_WIDTH).contains(&width) {
        return Err(LogError::InvalidTile(format!(
            "width {width} is not in 1..=256"
        )));
    }
    if tree_size > MAX_TREE_SIZE {
        return Err(LogError::IndexOutOfRange(format!(
            "tree size {tree_size} exceeds the maximum of {MAX_TREE_SIZE}"
        )));
    }
    let beyond = || {
        LogError::IndexOutOfRange(format!(
            "tile {} is beyond the tree of size {tree_size}",
            tile_path(level, index, width)
        ))
    };
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    // Complete subtrees (hence stored hashes) at tree level `shift`.
    let available = tree_size.checked_shr(shift).ok_or_else(beyond)?;
    let end = u128::from(index) * u128::from(TILE_WIDTH) + u128::from(width);
    if end > u128::from(available) {
        return Err(beyond());
    }
    // Here level < 8 (as tree_size <= 2^48) and 1 <= width <= 256, so `Tile::new`'s
    // preconditions hold.
    let tile = tlog::Tile::new(TILE_HEIGHT, level, index, u32::from(width), false);
    let reader = Reader::new(store);
    let result = tile.read_data(&reader);
    let data = reader.finish(result)?;
    if data.len() != usize::from(width) * HASH_SIZE {
        return Err(LogError::Internal(format!(
            "tile of width {width} came out {} bytes long",
            data.len()
        )));
    }
    Ok(data)
}

/// The hash tiles (all [`TileRequest::Hashes`]) that appear or change when
/// the tree grows from `old_size` to `new_size` leaves: each full tile once,
/// and the partial tiles of the new size. The level-0 ones name the entry
/// bundles that appear or change as well.
pub fn new_tiles(old_size: u64, new_size: u64) -> Result<Vec<TileRequest>, LogError> {
    if new_size > MAX_TREE_SIZE || old_size > new_size {
        return Err(LogError::IndexOutOfRange(format!(
            "cannot grow a tree from {old_size} to {new_size} leaves"
        )));
    }
    tlog::Tile::new_tiles(TILE_HEIGHT, old_size, new_size)
        .into_iter()
        .map(|tile| {
            let width = u16::try_from(tile.width())
                .map_err(|_| LogError::Internal("tile width above 256".to_owned()))?;
            Ok(TileRequest::Hashes {
                level: tile.level(),
                index: tile.level_index(),
                width,
            })
        })
        .collect()
}

/// Encodes entries as a C2SP entry bundle: each entry as a big-endian u16
/// length followed by its bytes.
///
/// Fails for an entry longer than [`MAX_ENTRY_LEN`] or for more than 256
/// entries (a bundle belongs to one level-0 tile).
pub fn entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, LogError> {
    if entries.len() > usize::from(TILE_WIDTH) {
        return Err(LogError::MalformedEntryBundle("more than 256 entries"));
    }
    let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
    let mut out = Vec::with_capacity(total);
    for entry in entries {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len()).map_err(|_| LogError::EntryTooLarge(entry.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes a C2SP entry bundle (see [`entry_bundle`]). Fails on a truncated
/// length or entry and on more than 256 entries.
pub fn parse_entry_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, LogError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if entries.len() == usize::from(TILE_WIDTH) {
            return Err(LogError::MalformedEntryBundle("more than 256 entries"));
        }
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or(LogError::MalformedEntryBundle("truncated entry length"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (entry, tail) = tail
            .split_at_checked(len)
            .ok_or(LogError::MalformedEntryBundle("truncated entry"))?;
        entries.push(entry.to_vec());
        rest = tail;
    }
    Ok(entries)
}
