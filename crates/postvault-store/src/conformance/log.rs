//! Checks of [`crate::LogStore`]: stored hashes, checkpoints, cosignatures.

use super::*;

pub fn log_hashes_advance_only_from_their_size(s: &dyn Store) {
    assert_eq!(s.hashed_size().unwrap(), 0);
    assert!(
        s.put_log_hashes(0, 2, &[(0, [1; 32]), (1, [2; 32]), (2, [3; 32])], &[])
            .unwrap()
    );
    assert_eq!(s.hashed_size().unwrap(), 2);
    // A stale writer is refused and writes nothing.
    assert!(!s.put_log_hashes(0, 1, &[(0, [9; 32])], &[]).unwrap());
    assert_eq!(s.log_hashes(&[2, 0]).unwrap(), vec![[3; 32], [1; 32]]);
    assert!(matches!(s.log_hashes(&[3]), Err(StoreError::Corrupt(_))));
    assert!(s.put_log_hashes(2, 3, &[(3, [4; 32])], &[]).unwrap());
    assert_eq!(s.hashed_size().unwrap(), 3);
    // Many at once (more than one statement's worth on SQLite), in any
    // order, some twice: each in its place; one missing among them fails.
    let more: Vec<(u64, [u8; 32])> = (4..104u64).map(|i| (i, [i as u8; 32])).collect();
    assert!(s.put_log_hashes(3, 50, &more, &[]).unwrap());
    let ask: Vec<u64> = (0..70u64)
        .map(|k| 4 + (k * 37) % 100)
        .chain([9, 9, 103])
        .collect();
    let got = s.log_hashes(&ask).unwrap();
    assert_eq!(got.len(), ask.len());
    for (i, h) in ask.iter().zip(&got) {
        assert_eq!(*h, [*i as u8; 32], "hash {i}");
    }
    let with_gap: Vec<u64> = (4..60u64).chain([104]).collect();
    assert!(matches!(
        s.log_hashes(&with_gap),
        Err(StoreError::Corrupt(_))
    ));
}

/// Proof tiles: kept with the hashes that complete them, read by slot, a
/// stale writer's refused with its hashes, one written again replaced, a
/// missing one an error.
pub fn proof_tiles_are_kept_with_their_hashes(s: &dyn Store) {
    assert_eq!(s.log_tiled_from().unwrap(), 0);
    let tile = |seed: u8| -> Vec<u8> { (0..960).map(|i| seed ^ (i % 251) as u8).collect() };
    let far = (1u64 << 56) | 3;
    assert!(
        s.put_log_hashes(0, 1, &[(0, [1; 32])], &[(0, tile(1)), (far, tile(2))])
            .unwrap()
    );
    assert!(
        !s.put_log_hashes(0, 1, &[(0, [9; 32])], &[(5, tile(9))])
            .unwrap()
    );
    let slot = |t: &[u8], k: usize| -> [u8; 32] { t[k * 32..k * 32 + 32].try_into().unwrap() };
    assert_eq!(
        s.log_tile_hashes(&[(far, 29), (0, 0), (0, 17), (far, 0)])
            .unwrap(),
        vec![
            slot(&tile(2), 29),
            slot(&tile(1), 0),
            slot(&tile(1), 17),
            slot(&tile(2), 0)
        ]
    );
    assert!(matches!(
        s.log_tile_hashes(&[(0, 1), (5, 0)]),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.log_tile_hashes(&[(0, 30)]),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(s.log_tiles(0, 5).unwrap(), vec![(0, tile(1))]);
    assert_eq!(s.log_tiles(1, far + 1).unwrap(), vec![(far, tile(2))]);
    // Written again (a tree rebuilt from its leaves): replaced.
    assert!(
        s.put_log_hashes(1, 2, &[(1, [2; 32])], &[(0, tile(7))])
            .unwrap()
    );
    assert_eq!(
        s.log_tile_hashes(&[(0, 3)]).unwrap(),
        vec![slot(&tile(7), 3)]
    );
    assert_eq!(s.log_tiled_from().unwrap(), 0);
}

pub fn checkpoints_are_kept_by_size(s: &dyn Store) {
    assert_eq!(s.latest_checkpoint().unwrap(), None);
    s.put_checkpoint(5, "five").unwrap();
    s.put_checkpoint(9, "nine").unwrap();
    s.put_checkpoint(5, "other five").unwrap();
    assert_eq!(
        s.latest_checkpoint().unwrap(),
        Some((9, "nine".to_string()))
    );
    assert_eq!(
        s.checkpoints().unwrap(),
        vec![(5, "five".to_string()), (9, "nine".to_string())]
    );
    assert_eq!(s.checkpoint_note(5).unwrap().as_deref(), Some("five"));
    assert_eq!(s.checkpoint_note(7).unwrap(), None);
}

pub fn cosignatures_are_kept_per_checkpoint_and_cosigner(s: &dyn Store) {
    let line = |w: &str, n: u64| (w.to_string(), format!("\u{2014} {w} line-{n}\n"));
    assert_eq!(s.latest_cosigned(&["a".into()], 1).unwrap(), None);
    assert_eq!(s.cosigned_by("a").unwrap(), None);
    s.put_cosignatures(5, &[line("a", 1), line("b", 1)])
        .unwrap();
    s.put_cosignatures(9, &[line("a", 2)]).unwrap();
    s.put_cosignatures(5, &[line("a", 3)]).unwrap();
    assert_eq!(s.cosignatures(5).unwrap(), vec![line("a", 3), line("b", 1)]);
    assert_eq!(s.cosignatures(7).unwrap(), vec![]);
    let ab = ["a".to_string(), "b".to_string()];
    assert_eq!(s.latest_cosigned(&ab, 1).unwrap(), Some(9));
    assert_eq!(s.latest_cosigned(&ab, 2).unwrap(), Some(5));
    assert_eq!(s.latest_cosigned(&ab, 3).unwrap(), None);
    assert_eq!(s.latest_cosigned(&["b".into()], 1).unwrap(), Some(5));
    assert_eq!(s.latest_cosigned(&[], 0).unwrap(), None);
    assert_eq!(s.cosigned_by("a").unwrap(), Some(9));
    assert_eq!(s.cosigned_by("c").unwrap(), None);
}
