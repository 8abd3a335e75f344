//! The log's C2SP tile and entry-bundle path parser (`parse_tile_path`), as
//! `GET /v1/log/tile/...` and `postvault log tile` call it on a caller's
//! path. Holds: no panic; a path accepted is canonical (it is exactly the
//! path of what it names, so one resource has one URL) and names a
//! resource the path functions write back the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postvault_log::{TILE_WIDTH, TileRequest, entry_bundle_path, parse_tile_path, tile_path};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(req) = parse_tile_path(path) else {
        return;
    };
    assert_eq!(req.path(), path, "an accepted tile path is canonical");
    assert_eq!(parse_tile_path(&req.path()).ok(), Some(req));
    match req {
        TileRequest::Hashes {
            level,
            index,
            width,
        } => {
            assert!(level <= 63);
            assert!((1..=TILE_WIDTH).contains(&width));
            assert_eq!(tile_path(level, index, width), path);
        }
        TileRequest::Entries { index, width } => {
            assert!((1..=TILE_WIDTH).contains(&width));
            assert_eq!(entry_bundle_path(index, width), path);
        }
    }
});
