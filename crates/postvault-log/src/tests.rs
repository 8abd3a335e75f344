#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::sync::OnceLock;

use base64::prelude::*;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An in-memory log: the leaves, their hashes and the stored hashes (stored
/// hash `i` at position `i`).
#[derive(Default)]
struct MemLog {
    leaves: Vec<Vec<u8>>,
    leaf_hashes: Vec<Hash>,
    stored: Vec<Hash>,
}

impl MemLog {
    fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    fn append(&mut self, leaf: Vec<u8>) {
        let hash = leaf_hash(&leaf);
        let new = append_hashes(self.size(), &[hash], &self.stored).unwrap();
        self.write(new);
        self.leaf_hashes.push(hash);
        self.leaves.push(leaf);
    }

    fn write(&mut self, new: Vec<(u64, Hash)>) {
        for (index, hash) in new {
            assert_eq!(
                index,
                self.stored.len() as u64,
                "stored hashes not consecutive"
            );
            self.stored.push(hash);
        }
    }

    fn with_leaves(count: u64) -> Self {
        let mut log = MemLog::default();
        for i in 0..count {
            log.append(format!("leaf {i}").into_bytes());
        }
        log
    }

    fn root(&self, size: u64) -> Hash {
        tree_root(size, &self.stored).unwrap()
    }
}

/// A shared log of 4096 leaves for the property tests: proofs and roots for
/// a size `s` only read the hashes of the first `s` leaves.
fn big_log() -> &'static MemLog {
    static LOG: OnceLock<MemLog> = OnceLock::new();
    LOG.get_or_init(|| MemLog::with_leaves(4096))
}

/// An independent, naive RFC 6962 Merkle Tree Hash.
fn reference_mth(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hashes[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            let mut hasher = Sha256::new();
            hasher.update([1u8]);
            hasher.update(reference_mth(&leaf_hashes[..k]));
            hasher.update(reference_mth(&leaf_hashes[k..]));
            hasher.finalize().into()
        }
    }
}

fn unhex(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn unhex_proof(s: &str) -> Vec<Hash> {
    hex::decode(s)
        .unwrap()
        .chunks(32)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn concat(proof: &[Hash]) -> Vec<u8> {
    proof.concat()
}

// ---------------------------------------------------------------------------
// Published test vectors
// ---------------------------------------------------------------------------

/// The eight leaves of the RFC 6962 / certificate-transparency test tree.
const KAT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// MTH of the first n leaves, n = 0..=8 (certificate-transparency's
/// `merkle_test.py`, Go `certificate-transparency-go` verifier tests).
const KAT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (size, index, audit path) from transparency-dev/merkle `reference_test.go`.
const KAT_INCLUSION: [(u64, u64, &str); 7] = [
    (1, 0, ""),
    (
        2,
        0,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    ),
    (
        2,
        1,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    ),
    (
        3,
        2,
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    ),
    (
        5,
        1,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d\
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e\
         bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ),
    (
        8,
        0,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7\
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e\
         6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    (
        8,
        5,
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b\
         ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0\
         d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ),
];

/// (old size, new size, consistency proof) from transparency-dev/merkle `reference_test.go`.
const KAT_CONSISTENCY: [(u64, u64, &str); 4] = [
    (1, 1, ""),
    (
        1,
        8,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7\
         5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e\
         6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    (
        2,
        5,
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e\
         bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ),
    (
        6,
        8,
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a\
         ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0\
         d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ),
];

fn kat_log() -> MemLog {
    let mut log = MemLog::default();
    for leaf in KAT_LEAVES {
        log.append(hex::decode(leaf).unwrap());
    }
    log
}

#[test]
fn rfc6962_hashes() {
    assert_eq!(EMPTY_ROOT, unhex(KAT_ROOTS[0]));
    assert_eq!(leaf_hash(b""), unhex(KAT_ROOTS[1]));
    assert_eq!(
        leaf_hash(b"\x00"),
        unhex("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
    );
    assert_eq!(
        node_hash(&leaf_hash(b""), &leaf_hash(b"\x00")),
        unhex(KAT_ROOTS[2])
    );
}

#[test]
fn known_roots() {
    let log = kat_log();
    for (size, root) in KAT_ROOTS.iter().enumerate() {
        assert_eq!(log.root(size as u64), unhex(root), "root of size {size}");
        assert_eq!(
            reference_mth(&log.leaf_hashes[..size]),
            unhex(root),
            "reference root of size {size}"
        );
    }
}

#[test]
fn known_inclusion_proofs() {
    let log = kat_log();
    for (size, index, expected) in KAT_INCLUSION {
        let proof = prove_inclusion(index, size, &log.stored).unwrap();
        assert_eq!(
            proof,
            unhex_proof(expected),
            "inclusion of {index} in {size}"
        );
        let leaf = log.leaf_hashes[index as usize];
        verify_inclusion(index, size, &leaf, &proof, &log.root(size)).unwrap();
    }
}

#[test]
fn known_consistency_proofs() {
    let log = kat_log();
    for (old, new, expected) in KAT_CONSISTENCY {
        let proof = prove_consistency(old, new, &log.stored).unwrap();
        assert_eq!(proof, unhex_proof(expected), "consistency {old} -> {new}");
        verify_consistency(old, new, &log.root(old), &log.root(new), &proof).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Differential tests against ct-merkle
// ---------------------------------------------------------------------------

type CtTree = MemoryBackedTree<Sha256, Vec<u8>>;

fn ct_inclusion(ct: &CtTree, index: u64) -> Vec<u8> {
    ct.prove_inclusion(index as usize).as_bytes().to_vec()
}

fn ct_consistency(ct: &CtTree, old: u64) -> Vec<u8> {
    let additions = (ct.len() - old) as usize;
    ct.prove_consistency(additions).as_bytes().to_vec()
}

#[test]
fn matches_ct_merkle_for_every_size_up_to_300() {
    let mut ct = CtTree::new();
    let mut log = MemLog::default();
    for size in 1..=300u64 {
        let leaf = format!("entry {size}").into_bytes();
        ct.push(leaf.clone());
        log.append(leaf);

        let root = log.root(size);
        assert_eq!(
            root.as_slice(),
            ct.root().as_bytes().as_slice(),
            "root {size}"
        );
        for index in 0..size {
            let proof = prove_inclusion(index, size, &log.stored).unwrap();
            assert_eq!(
                concat(&proof),
                ct_inclusion(&ct, index),
                "inclusion {index}/{size}"
            );
        }
        for old in 1..=size {
            let proof = prove_consistency(old, size, &log.stored).unwrap();
            assert_eq!(
                concat(&proof),
                ct_consistency(&ct, old),
                "consistency {old}/{size}"
            );
        }
    }
}

#[test]
fn matches_ct_merkle_at_random_sizes() {
    let mut rng = ChaCha20Rng::seed_from_u64(6962);
    let mut sizes: Vec<u64> = (0..30).map(|_| rng.random_range(1..=5000)).collect();
    sizes.sort_unstable();
    sizes.dedup();

    let mut ct = CtTree::new();
    let mut log = MemLog::default();
    for size in sizes {
        while log.size() < size {
            let leaf = format!("random {}", log.size()).into_bytes();
            ct.push(leaf.clone());
            log.append(leaf);
        }
        let root = log.root(size);
        let ct_root = ct.root();
        assert_eq!(
            root.as_slice(),
            ct_root.as_bytes().as_slice(),
            "root {size}"
        );

        for _ in 0..25 {
            let index = rng.random_range(0..size);
            let proof = prove_inclusion(index, size, &log.stored).unwrap();
            let bytes = concat(&proof);
            assert_eq!(bytes, ct_inclusion(&ct, index), "inclusion {index}/{size}");
            // ct-merkle accepts our proof, and we accept ct-merkle's.
            ct_root
                .verify_inclusion(
                    &log.leaves[index as usize],
                    index,
                    &InclusionProof::<Sha256>::from_bytes(bytes),
                )
                .unwrap();
            let theirs = unhex_proof(&hex::encode(ct_inclusion(&ct, index)));
            verify_inclusion(
                index,
                size,
                &log.leaf_hashes[index as usize],
                &theirs,
                &root,
            )
            .unwrap();

            let old = rng.random_range(1..=size);
            let proof = prove_consistency(old, size, &log.stored).unwrap();
            let bytes = concat(&proof);
            assert_eq!(bytes, ct_consistency(&ct, old), "consistency {old}/{size}");
            let old_root = log.root(old);
            let ct_old_root = RootHash::<Sha256>::new(ct_merkle_digest(&old_root), old);
            ct_root
                .verify_consistency(
                    &ct_old_root,
                    &ConsistencyProof::<Sha256>::try_from_bytes(bytes).unwrap(),
                )
                .unwrap();
        }
    }
}

fn ct_merkle_digest(hash: &Hash) -> sha2::digest::Output<Sha256> {
    let mut out = sha2::digest::Output::<Sha256>::default();
    out.copy_from_slice(hash);
    out
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=4096u64).prop_flat_map(|size| (Just(size), 0..size))
}

fn old_and_new() -> impl Strategy<Value = (u64, u64)> {
    (1..=4096u64).prop_flat_map(|new| (1..=new, Just(new)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(
        (size, index) in size_and_index(),
        flip in any::<(prop::sample::Index, u8)>(),
        other in any::<prop::sample::Index>(),
        wrong_root in any::<[u8; 32]>(),
    ) {
        let log = big_log();
        let root = log.root(size);
        let leaf = log.leaf_hashes[index as usize];
        let proof = prove_inclusion(index, size, &log.stored).unwrap();
        prop_assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));

        // A flipped bit anywhere in the proof.
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let position = flip.0.index(proof.len() * 32);
            bad[position / 32][position % 32] ^= 1 << (flip.1 % 8);
            prop_assert_eq!(
                verify_inclusion(index, size, &leaf, &bad, &root),
                Err(LogError::BadProof)
            );
        }
        // A proof with a hash too many or too few.
        let mut longer = proof.clone();
        longer.push(leaf);
        prop_assert!(verify_inclusion(index, size, &leaf, &longer, &root).is_err());
        if !proof.is_empty() {
            let shorter = &proof[..proof.len() - 1];
            prop_assert!(verify_inclusion(index, size, &leaf, shorter, &root).is_err());
        }
        // Another index (in range or not).
        let wrong_index = other.index(size as usize + 1) as u64;
        if wrong_index != index {
            prop_assert!(verify_inclusion(wrong_index, size, &leaf, &proof, &root).is_err());
        }
        // Another size, with that size's root.
        let wrong_size = 1 + other.index(4096) as u64;
        if wrong_size != size && wrong_size > index {
            let wrong_size_root = log.root(wrong_size);
            prop_assert!(
                verify_inclusion(index, wrong_size, &leaf, &proof, &wrong_size_root).is_err()
            );
        }
        // Another root, another leaf.
        if wrong_root != root {
            prop_assert!(verify_inclusion(index, size, &leaf, &proof, &wrong_root).is_err());
        }
        let other_leaf = log.leaf_hashes[(index as usize + 1) % 4096];
        prop_assert!(verify_inclusion(index, size, &other_leaf, &proof, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails(
        (old, new) in old_and_new(),
        flip in any::<(prop::sample::Index, u8)>(),
        other in any::<prop::sample::Index>(),
        wrong_root in any::<[u8; 32]>(),
    ) {
        let log = big_log();
        let old_root = log.root(old);
        let new_root = log.root(new);
        let proof = prove_consistency(old, new, &log.stored).unwrap();
        prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));

        if !proof.is_empty() {
            let mut bad = proof.clone();
            let position = flip.0.index(proof.len() * 32);
            bad[position / 32][position % 32] ^= 1 << (flip.1 % 8);
            prop_assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &bad),
                Err(LogError::BadProof)
            );
            let shorter = &proof[..proof.len() - 1];
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, shorter).is_err());
        }
        let mut longer = proof.clone();
        longer.push(old_root);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());

        // Another old size, with that size's root.
        let wrong_old = 1 + other.index(new as usize) as u64;
        if wrong_old != old {
            let wrong_old_root = log.root(wrong_old);
            prop_assert!(
                verify_consistency(wrong_old, new, &wrong_old_root, &new_root, &proof).is_err()
            );
        }
        // Another new size, with that size's root.
        let wrong_new = old + other.index(4097 - old as usize) as u64;
        if wrong_new != new {
            let wrong_new_root = log.root(wrong_new);
            prop_assert!(
                verify_consistency(old, wrong_new, &old_root, &wrong_new_root, &proof).is_err()
            );
        }
        // Other roots.
        if wrong_root != old_root {
            prop_assert!(verify_consistency(old, new, &wrong_root, &new_root, &proof).is_err());
        }
        if wrong_root != new_root {
            prop_assert!(verify_consistency(old, new, &old_root, &wrong_root, &proof).is_err());
        }
    }

    #[test]
    fn batched_appends_equal_single_appends(
        cuts in prop::collection::vec(0..=300u64, 0..8),
    ) {
        let log = big_log();
        let total = 300u64;
        let mut cuts = cuts;
        cuts.push(0);
        cuts.push(total);
        cuts.sort_unstable();
        cuts.dedup();
        let mut stored: Vec<Hash> = Vec::new();
        for pair in cuts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            let batch = &log.leaf_hashes[from as usize..to as usize];
            for (index, hash) in append_hashes(from, batch, &stored).unwrap() {
                prop_assert_eq!(index, stored.len() as u64);
                stored.push(hash);
            }
            prop_assert_eq!(stored.len() as u64, stored_hash_count(to).unwrap());
        }
        prop_assert_eq!(&stored[..], &log.stored[..stored.len()]);
    }
}

#[test]
fn stored_hash_layout() {
    let log = big_log();
    assert_eq!(stored_hash_count(0).unwrap(), 0);
    assert_eq!(stored_hash_count(4096).unwrap(), log.stored.len() as u64);
    for index in [0u64, 1, 2, 3, 100, 4095] {
        let at = leaf_stored_index(index).unwrap();
        assert_eq!(log.stored[at as usize], log.leaf_hashes[index as usize]);
    }
    // A tree's root is the reference root, at many sizes.
    for size in [1u64, 2, 3, 7, 8, 9, 255, 256, 257, 1000, 4095, 4096] {
        assert_eq!(
            log.root(size),
            reference_mth(&log.leaf_hashes[..size as usize])
        );
    }
}

// ---------------------------------------------------------------------------
// Edge cases and the caller's store misbehaving
// ---------------------------------------------------------------------------

#[test]
fn ranges_are_checked() {
    let log = MemLog::with_leaves(5);
    let root = log.root(5);
    let leaf = log.leaf_hashes[0];
    assert!(matches!(
        prove_inclusion(5, 5, &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        prove_inclusion(0, 0, &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        verify_inclusion(5, 5, &leaf, &[], &root),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        prove_consistency(6, 5, &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        verify_consistency(6, 5, &root, &root, &[]),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        tree_root(u64::MAX, &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        append_hashes(u64::MAX, &[leaf], &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        append_hashes(MAX_TREE_SIZE, &[leaf], &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    assert!(matches!(
        verify_inclusion(u64::MAX - 1, u64::MAX, &leaf, &[], &root),
        Err(LogError::IndexOutOfRange(_))
    ));
    // Reading beyond what the store holds is the store's error, not a panic.
    assert!(matches!(
        tree_root(6, &log.stored),
        Err(LogError::Storage(_))
    ));
    assert!(matches!(
        prove_inclusion(0, 1 << 40, &log.stored),
        Err(LogError::Storage(_))
    ));
    // Absurdly long proofs are refused before hashing.
    let long = vec![leaf; 10_000];
    assert_eq!(
        verify_inclusion(0, 5, &leaf, &long, &root),
        Err(LogError::BadProof)
    );
    assert_eq!(
        verify_consistency(1, 5, &leaf, &root, &long),
        Err(LogError::BadProof)
    );
    // Empty appends write nothing.
    assert_eq!(append_hashes(5, &[], &log.stored).unwrap(), vec![]);
}

#[test]
fn consistency_with_the_empty_tree() {
    let log = MemLog::with_leaves(5);
    let root = log.root(5);
    assert_eq!(
        prove_consistency(0, 5, &log.stored).unwrap(),
        Vec::<Hash>::new()
    );
    assert_eq!(
        prove_consistency(0, 0, &log.stored).unwrap(),
        Vec::<Hash>::new()
    );
    verify_consistency(0, 5, &EMPTY_ROOT, &root, &[]).unwrap();
    verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 0, &EMPTY_ROOT, &root, &[]),
        Err(LogError::BadProof)
    );
    assert_eq!(
        verify_consistency(0, 5, &root, &root, &[]),
        Err(LogError::BadProof)
    );
    assert_eq!(
        verify_consistency(0, 5, &EMPTY_ROOT, &root, &[root]),
        Err(LogError::BadProof)
    );
    // Same size: empty proof, equal roots.
    verify_consistency(5, 5, &root, &root, &[]).unwrap();
    assert_eq!(
        verify_consistency(5, 5, &root, &EMPTY_ROOT, &[]),
        Err(LogError::BadProof)
    );
}

/// A store that fails, lies about how many hashes it has, or counts reads.
struct OddStore<'a> {
    inner: &'a [Hash],
    mode: Mode,
    calls: Cell<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    Fail,
    Short,
    Long,
}

impl HashStore for OddStore<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.calls.set(self.calls.get() + 1);
        let mut hashes = self.inner.read_hashes(indexes)?;
        match self.mode {
            Mode::Honest => {}
            Mode::Fail => return Err(LogError::Storage("disk on fire".to_owned())),
            Mode::Short => {
                hashes.pop();
            }
            Mode::Long => hashes.push([0; 32]),
        }
        Ok(hashes)
    }
}

#[test]
fn misbehaving_stores_give_errors_not_panics() {
    let log = MemLog::with_leaves(1000);
    let leaf = leaf_hash(b"next");
    for mode in [Mode::Fail, Mode::Short, Mode::Long] {
        let store = OddStore {
            inner: &log.stored,
            mode,
            calls: Cell::new(0),
        };
        let is_storage = |r: Result<(), LogError>| matches!(r, Err(LogError::Storage(_)));
        assert!(is_storage(append_hashes(999, &[leaf; 3], &store).map(drop)));
        assert!(is_storage(tree_root(1000, &store).map(drop)));
        assert!(is_storage(prove_inclusion(3, 1000, &store).map(drop)));
        assert!(is_storage(prove_consistency(3, 1000, &store).map(drop)));
        assert!(is_storage(tile_bytes(0, 1, 256, 1000, &store).map(drop)));
    }
    if let Err(LogError::Storage(message)) = tree_root(
        1000,
        &OddStore {
            inner: &log.stored,
            mode: Mode::Fail,
            calls: Cell::new(0),
        },
    ) {
        assert_eq!(message, "disk on fire");
    } else {
        panic!("the store's own error is passed on");
    }
}

#[test]
fn a_batch_append_reads_the_store_once() {
    let log = MemLog::with_leaves(1000);
    let store = OddStore {
        inner: &log.stored,
        mode: Mode::Honest,
        calls: Cell::new(0),
    };
    let batch: Vec<Hash> = (0..5000).map(|i| leaf_hash(&[i as u8])).collect();
    let new = append_hashes(1000, &batch, &store).unwrap();
    assert_eq!(store.calls.get(), 1);
    assert_eq!(
        new.len() as u64,
        stored_hash_count(6000).unwrap() - stored_hash_count(1000).unwrap()
    );
    // And to a power-of-two-sized tree, with a single frontier hash.
    let store = OddStore {
        inner: &log.stored,
        mode: Mode::Honest,
        calls: Cell::new(0),
    };
    append_hashes(512, &batch, &store).unwrap();
    assert_eq!(store.calls.get(), 1);
    // An empty tree needs nothing from the store.
    let store = OddStore {
        inner: &[],
        mode: Mode::Honest,
        calls: Cell::new(0),
    };
    append_hashes(0, &batch, &store).unwrap();
    assert_eq!(store.calls.get(), 0);
}

#[test]
fn other_store_shapes() {
    let log = MemLog::with_leaves(100);
    let map: std::collections::HashMap<u64, Hash> = (0..).zip(log.stored.iter().copied()).collect();
    let btree: std::collections::BTreeMap<u64, Hash> =
        (0..).zip(log.stored.iter().copied()).collect();
    let root = log.root(100);
    assert_eq!(tree_root(100, &map).unwrap(), root);
    assert_eq!(tree_root(100, &btree).unwrap(), root);
    assert_eq!(tree_root(100, &log.stored.as_slice()).unwrap(), root);
    assert!(matches!(tree_root(101, &map), Err(LogError::Storage(_))));
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

const ORIGIN: &str = "postvault.example/log";

fn test_signer() -> LogSigner {
    LogSigner::from_seed(ORIGIN, &[7; 32]).unwrap()
}

fn test_checkpoint() -> Checkpoint {
    Checkpoint::new(ORIGIN, 8, unhex(KAT_ROOTS[8]))
}

#[test]
fn checkpoint_round_trip() {
    let signer = test_signer();
    let checkpoint = test_checkpoint();
    let note = signer.sign(&checkpoint).unwrap();
    assert_eq!(
        open_checkpoint(&note, &signer.verifier_key()).unwrap(),
        checkpoint
    );

    let with_extensions = Checkpoint {
        extensions: vec!["first extension".to_owned(), "x".to_owned()],
        ..test_checkpoint()
    };
    let note = signer.sign(&with_extensions).unwrap();
    assert!(note.contains("\nfirst extension\nx\n\n— "));
    assert_eq!(
        open_checkpoint(&note, &signer.verifier_key()).unwrap(),
        with_extensions
    );

    let empty = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT);
    let note = signer.sign(&empty).unwrap();
    assert!(note.starts_with(&format!(
        "{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
    )));
    assert_eq!(
        open_checkpoint(&note, &signer.verifier_key()).unwrap(),
        empty
    );
}

#[test]
fn checkpoint_note_is_byte_exact_c2sp() {
    let signer = test_signer();
    let checkpoint = test_checkpoint();
    let note = signer.sign(&checkpoint).unwrap();

    let body = format!("{ORIGIN}\n8\n{}\n", BASE64_STANDARD.encode(checkpoint.root));
    assert_eq!(checkpoint.body().unwrap(), body);

    // The signature is Ed25519 over exactly the body, checked independently.
    let public = ed25519_dalek::VerifyingKey::from_bytes(&signer.public_key()).unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    assert_eq!(public, signing.verifying_key());
    let signature = ed25519_dalek::Signer::sign(&signing, body.as_bytes());
    public.verify_strict(body.as_bytes(), &signature).unwrap();

    // key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], computed here
    // independently of signed_note.
    let mut hasher = Sha256::new();
    hasher.update(ORIGIN.as_bytes());
    hasher.update([0x0a, 0x01]);
    hasher.update(signer.public_key());
    let key_id: [u8; 4] = hasher.finalize()[..4].try_into().unwrap();
    assert_eq!(signer.key_id(), u32::from_be_bytes(key_id));

    let mut blob = key_id.to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    let expected = format!(
        "{body}\n\u{2014} {ORIGIN} {}\n",
        BASE64_STANDARD.encode(blob)
    );
    assert_eq!(note, expected);
    assert!(note.contains("\n\n\u{2014} postvault.example/log "));
}

#[test]
fn verifier_key_has_the_c2sp_form() {
    let signer = test_signer();
    let key = signer.verifier_key();
    let parts: Vec<&str> = key.split('+').collect();
    assert_eq!(parts.len(), 3, "{key}");
    assert_eq!(parts[0], ORIGIN);
    assert_eq!(parts[1].len(), 8);
    assert!(
        parts[1]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(u32::from_str_radix(parts[1], 16).unwrap(), signer.key_id());
    let raw = BASE64_STANDARD.decode(parts[2]).unwrap();
    assert_eq!(raw.len(), 33);
    assert_eq!(raw[0], 0x01);
    assert_eq!(raw[1..], signer.public_key());
}

#[test]
fn verifier_key_matches_the_go_note_test_vector() {
    // golang.org/x/mod/sumdb/note's example key pair (also in signed_note's docs).
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let encoded = skey.splitn(5, '+').nth(4).unwrap();
    let raw = BASE64_STANDARD.decode(encoded).unwrap();
    assert_eq!(raw[0], 0x01);
    let signer = LogSigner::from_bytes("PeterNeumann", &raw[1..]).unwrap();
    assert_eq!(signer.verifier_key(), vkey);
    assert_eq!(signer.key_id(), 0xc74f_20a3);
}

#[test]
fn any_altered_byte_fails() {
    let signer = test_signer();
    let key = signer.verifier_key();
    let checkpoint = Checkpoint {
        extensions: vec!["ext".to_owned()],
        ..test_checkpoint()
    };
    let note = signer.sign(&checkpoint).unwrap().into_bytes();
    let opens = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => open_checkpoint(text, &key).is_ok(),
        Err(_) => false,
    };
    assert!(opens(&note));
    let mut tried = 0;
    for position in 0..note.len() {
        for bit in 0..8 {
            let mut altered = note.clone();
            altered[position] ^= 1 << bit;
            assert!(
                !opens(&altered),
                "bit {bit} of byte {position} flipped still opens"
            );
            tried += 1;
        }
        for replacement in [b'A', b'0', b' ', b'\n', b'+', b'='] {
            if note[position] == replacement {
                continue;
            }
            let mut altered = note.clone();
            altered[position] = replacement;
            assert!(!opens(&altered), "byte {position} replaced still opens");
        }
        let mut removed = note.clone();
        removed.remove(position);
        assert!(!opens(&removed), "byte {position} removed still opens");
        for inserted in [b'A', b'0', b'\n', b' '] {
            let mut longer = note.clone();
            longer.insert(position, inserted);
            assert!(!opens(&longer), "byte inserted at {position} still opens");
        }
    }
    let mut longer = note.clone();
    longer.push(b'\n');
    assert!(!opens(&longer));
    assert!(tried > 1000);
}

#[test]
fn other_keys_fail() {
    let signer = test_signer();
    let note = signer.sign(&test_checkpoint()).unwrap();
    // Another key under the same name.
    let impostor = LogSigner::from_seed(ORIGIN, &[8; 32]).unwrap();
    assert_eq!(
        open_checkpoint(&note, &impostor.verifier_key()),
        Err(LogError::BadSignature)
    );
    let forged = impostor.sign(&test_checkpoint()).unwrap();
    assert_eq!(
        open_checkpoint(&forged, &signer.verifier_key()),
        Err(LogError::BadSignature)
    );
    // Another name.
    let other = LogSigner::from_seed("other.example/log", &[7; 32]).unwrap();
    assert_eq!(
        open_checkpoint(&note, &other.verifier_key()),
        Err(LogError::BadSignature)
    );
    // A key of another log signing a checkpoint that claims our origin is refused.
    let other_note = other
        .sign(&Checkpoint::new("other.example/log", 8, EMPTY_ROOT))
        .unwrap();
    assert_eq!(
        open_checkpoint(&other_note, &other.verifier_key())
            .unwrap()
            .origin,
        "other.example/log"
    );
    // Garbage keys.
    for bad in ["", "name", "name+zzzzzzzz+AA==", "name+00000000+AQ=="] {
        assert!(matches!(
            open_checkpoint(&note, bad),
            Err(LogError::InvalidKey(_))
        ));
    }
}

#[test]
fn cosignatures_by_other_keys_are_ignored() {
    let signer = test_signer();
    let note = signer.sign(&test_checkpoint()).unwrap();
    let witness = signed_note::StandardSigner::new(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    )
    .unwrap();
    let mut cosigned = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    cosigned.add_sigs(&[&witness]).unwrap();
    let cosigned = String::from_utf8(cosigned.to_bytes()).unwrap();
    assert!(cosigned.starts_with(&note));
    assert!(cosigned[note.len()..].starts_with("\u{2014} PeterNeumann "));
    assert_eq!(
        open_checkpoint(&cosigned, &signer.verifier_key()).unwrap(),
        test_checkpoint()
    );
    // The witness's key verifies its signature, but the origin is not its name.
    assert!(matches!(
        open_checkpoint(
            &cosigned,
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        ),
        Err(LogError::OriginMismatch { .. })
    ));
}

#[test]
fn signing_refuses_bad_checkpoints() {
    let signer = test_signer();
    let mismatched = Checkpoint::new("someone.else/log", 1, EMPTY_ROOT);
    assert!(matches!(
        signer.sign(&mismatched),
        Err(LogError::OriginMismatch { .. })
    ));
    for extension in ["", "two\nlines", "control\u{1}char", "tab\there"] {
        let checkpoint = Checkpoint {
            extensions: vec![extension.to_owned()],
            ..test_checkpoint()
        };
        assert!(
            matches!(signer.sign(&checkpoint), Err(LogError::MalformedNote(_))),
            "{extension:?}"
        );
    }
}

#[test]
fn malformed_notes_are_rejected() {
    let signer = test_signer();
    let key = signer.verifier_key();
    for note in [
        "",
        "\n",
        "postvault.example/log\n8\n",
        "postvault.example/log\n8\nAAAA\n\n",
        "postvault.example/log\n8\nAAAA\n\n\u{2014} postvault.example/log AAAA\n",
    ] {
        assert!(open_checkpoint(note, &key).is_err(), "{note:?}");
    }
    // A validly signed note whose text is not a checkpoint.
    let mut not_a_checkpoint = signed_note::Note::new(b"hello\n", &[]).unwrap();
    let raw = signer.to_bytes();
    let mut privkey = vec![0x01];
    privkey.extend_from_slice(&raw);
    let skey = format!(
        "PRIVATE+KEY+{ORIGIN}+{:08x}+{}",
        signer.key_id(),
        BASE64_STANDARD.encode(&privkey)
    );
    let standard = signed_note::StandardSigner::new(&skey).unwrap();
    not_a_checkpoint.add_sigs(&[&standard]).unwrap();
    let text = String::from_utf8(not_a_checkpoint.to_bytes()).unwrap();
    assert_eq!(
        open_checkpoint(&text, &key),
        Err(LogError::MalformedNote("note text is not a checkpoint"))
    );
}

#[test]
fn signer_keys() {
    for bad in ["", "has space", "has+plus", "tab\there", "new\nline"] {
        assert!(matches!(
            LogSigner::from_seed(bad, &[1; 32]),
            Err(LogError::InvalidKey(_))
        ));
    }
    let signer = test_signer();
    let secret = signer.to_bytes();
    assert_eq!(secret.as_slice(), &[7; 32]);
    let restored = LogSigner::from_bytes(ORIGIN, &secret).unwrap();
    assert_eq!(restored.verifier_key(), signer.verifier_key());
    assert_eq!(restored.origin(), ORIGIN);
    assert!(matches!(
        LogSigner::from_bytes(ORIGIN, &secret[..31]),
        Err(LogError::InvalidKey(_))
    ));

    let a = LogSigner::generate(ORIGIN, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
    let b = LogSigner::generate(ORIGIN, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
    let c = LogSigner::generate(ORIGIN, &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
    assert_eq!(a.verifier_key(), b.verifier_key());
    assert_ne!(a.verifier_key(), c.verifier_key());
    let note = a.sign(&test_checkpoint()).unwrap();
    assert!(open_checkpoint(&note, &b.verifier_key()).is_ok());

    // Debug shows no secret.
    let debug = format!("{signer:?}");
    assert!(debug.contains(ORIGIN));
    assert!(!debug.contains("0707"));
    assert!(!debug.contains("[7, 7"));
}

// ---------------------------------------------------------------------------
// Tiles
// ---------------------------------------------------------------------------

#[test]
fn tile_paths_match_c2sp() {
    assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path(1, 1_234_067, 8), "tile/1/x001/x234/067.p/8");
    assert_eq!(tile_path(0, 0, 256), "tile/0/000");
    assert_eq!(tile_path(0, 0, 1), "tile/0/000.p/1");
    assert_eq!(tile_path(2, 1000, 256), "tile/2/x001/000");
    assert_eq!(tile_path(5, 999, 255), "tile/5/999.p/255");
    assert_eq!(
        tile_path(0, u64::MAX, 256),
        "tile/0/x018/x446/x744/x073/x709/x551/615"
    );
    assert_eq!(
        entry_bundle_path(1_234_067, 256),
        "tile/entries/x001/x234/067"
    );
    assert_eq!(entry_bundle_path(273, 112), "tile/entries/273.p/112");

    for path in [
        "tile/0/x001/x234/067",
        "tile/1/x001/x234/067.p/8",
        "tile/63/000",
        "tile/entries/000.p/255",
        "tile/entries/x018/x446/x744/x073/x709/x551/615",
    ] {
        assert_eq!(parse_tile_path(path).unwrap().path(), path);
    }
    assert_eq!(
        parse_tile_path("tile/1/x001/x234/067.p/8").unwrap(),
        TileRequest::Hashes {
            level: 1,
            index: 1_234_067,
            width: 8
        }
    );
    assert_eq!(
        parse_tile_path("tile/entries/273.p/112").unwrap(),
        TileRequest::Entries {
            index: 273,
            width: 112
        }
    );
    for bad in [
        "",
        "tile/",
        "tile/0",
        "tile/0/",
        "tile/0/1",
        "tile/0/0001",
        "tile/00/000",
        "tile/+1/000",
        "tile/64/000",
        "tile/256/000",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/y001/002",
        "tile/0/x001/x002",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/000.p/1/",
        "tile/data/000",
        "tile/entries/000.p/300",
        "tile/entries/x018/x446/x744/x073/x709/x551/616",
        "/tile/0/000",
        "tile/0/000/",
    ] {
        assert!(
            matches!(parse_tile_path(bad), Err(LogError::InvalidTile(_))),
            "{bad:?}"
        );
    }
}

fn tile_log() -> &'static MemLog {
    static LOG: OnceLock<MemLog> = OnceLock::new();
    LOG.get_or_init(|| MemLog::with_leaves(70_000))
}

#[test]
fn new_tiles_match_the_c2sp_example() {
    // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    // partial level 0 tile of width 112, one full level 1 tile, one partial
    // level 1 tile of width 17, and one partial level 2 tile of width 1."
    let tiles = new_tiles(0, 70_000).unwrap();
    let mut expected: Vec<TileRequest> = (0..273)
        .map(|index| TileRequest::Hashes {
            level: 0,
            index,
            width: 256,
        })
        .collect();
    expected.push(TileRequest::Hashes {
        level: 0,
        index: 273,
        width: 112,
    });
    expected.push(TileRequest::Hashes {
        level: 1,
        index: 0,
        width: 256,
    });
    expected.push(TileRequest::Hashes {
        level: 1,
        index: 1,
        width: 17,
    });
    expected.push(TileRequest::Hashes {
        level: 2,
        index: 0,
        width: 1,
    });
    let mut got = tiles.clone();
    got.sort_by_key(|t| match *t {
        TileRequest::Hashes { level, index, .. } => (level, index),
        TileRequest::Entries { index, .. } => (u8::MAX, index),
    });
    assert_eq!(got, expected);

    // "a tree of size 256 will be represented by a full level 0 tile and a
    // partial level 1 tile of width 1"
    assert_eq!(
        new_tiles(0, 256).unwrap(),
        vec![
            TileRequest::Hashes {
                level: 0,
                index: 0,
                width: 256
            },
            TileRequest::Hashes {
                level: 1,
                index: 0,
                width: 1
            },
        ]
    );
    assert_eq!(new_tiles(5, 5).unwrap(), vec![]);
    assert!(new_tiles(6, 5).is_err());
    assert!(new_tiles(0, u64::MAX).is_err());
}

#[test]
fn tile_bytes_are_the_right_hashes() {
    let log = tile_log();
    let size = log.size();
    for tile in new_tiles(0, size).unwrap() {
        let TileRequest::Hashes {
            level,
            index,
            width,
        } = tile
        else {
            unreachable!()
        };
        let bytes = tile_bytes(level, index, width, size, &log.stored).unwrap();
        assert_eq!(bytes.len(), usize::from(width) * 32, "{}", tile.path());
        // Hash i of the tile is MTH(D[(n*256 + i) * 256^l : (n*256 + i + 1) * 256^l]).
        let span = 256usize.pow(u32::from(level));
        let check: Vec<usize> = if level == 0 {
            (0..usize::from(width)).collect()
        } else {
            vec![0, usize::from(width) - 1]
        };
        for i in check {
            let start = (index as usize * 256 + i) * span;
            let expected = reference_mth(&log.leaf_hashes[start..start + span]);
            assert_eq!(
                &bytes[i * 32..(i + 1) * 32],
                &expected,
                "{} hash {i}",
                tile.path()
            );
        }
    }
    // Level 0 tile 0 is exactly the first 256 leaf hashes.
    assert_eq!(
        tile_bytes(0, 0, 256, size, &log.stored).unwrap(),
        log.leaf_hashes[..256].concat()
    );
    // A partial tile is a prefix of the full one.
    let full = tile_bytes(0, 5, 256, size, &log.stored).unwrap();
    for width in [1u16, 17, 255] {
        let partial = tile_bytes(0, 5, width, size, &log.stored).unwrap();
        assert_eq!(partial, full[..usize::from(width) * 32]);
    }
    // Only hashes that exist in the tree of the given size.
    assert!(tile_bytes(0, 273, 112, size, &log.stored).is_ok());
    for (level, index, width) in [(0, 273, 113), (0, 274, 1), (1, 1, 18), (2, 0, 2), (3, 0, 1)] {
        assert!(
            matches!(
                tile_bytes(level, index, width, size, &log.stored),
                Err(LogError::IndexOutOfRange(_))
            ),
            "{}",
            tile_path(level, index, width)
        );
    }
    assert!(matches!(
        tile_bytes(0, 0, 256, 255, &log.stored),
        Err(LogError::IndexOutOfRange(_))
    ));
    for width in [0u16, 257, u16::MAX] {
        assert!(matches!(
            tile_bytes(0, 0, width, size, &log.stored),
            Err(LogError::InvalidTile(_))
        ));
    }
    for level in [8u8, 63, 64, u8::MAX] {
        assert!(tile_bytes(level, 0, 1, size, &log.stored).is_err());
    }
    assert!(tile_bytes(0, u64::MAX, 256, size, &log.stored).is_err());
}

/// Our C2SP tiles, read back through tlog_tiles' authenticating tile reader
/// (Go tlog with height 8), reproduce the stored hashes: they are consistent
/// with the tree root.
#[test]
fn tiles_authenticate_against_the_root() {
    struct Tiles<'a> {
        log: &'a MemLog,
        size: u64,
    }
    impl tlog_tiles::TileReader for Tiles<'_> {
        fn height(&self) -> u8 {
            TILE_HEIGHT
        }
        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::Tile],
        ) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
            Ok(tiles
                .iter()
                .map(|t| {
                    tile_bytes(
                        t.level(),
                        t.level_index(),
                        u16::try_from(t.width()).unwrap(),
                        self.size,
                        &self.log.stored,
                    )
                    .unwrap()
                })
                .collect())
        }
        fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
    }
    let log = tile_log();
    for size in [1u64, 255, 256, 257, 65_536, 70_000] {
        let tiles = Tiles { log, size };
        let root = tlog_tiles::Hash(log.root(size));
        let reader = tlog_tiles::TileHashReader::new(size, root, &tiles);
        let leaves = [0, size / 2, size - 1];
        let indexes: Vec<u64> = leaves
            .iter()
            .map(|&i| leaf_stored_index(i).unwrap())
            .collect();
        let hashes = tlog_tiles::HashReader::read_hashes(&reader, &indexes).unwrap();
        for (leaf, hash) in leaves.iter().zip(hashes) {
            assert_eq!(
                hash.0, log.leaf_hashes[*leaf as usize],
                "leaf {leaf} of {size}"
            );
        }
    }
}

#[test]
fn entry_bundles() {
    let entries = vec![b"ab".to_vec(), vec![], vec![0xff; 300]];
    let bundle = entry_bundle(&entries).unwrap();
    assert_eq!(&bundle[..6], &[0, 2, b'a', b'b', 0, 0]);
    assert_eq!(&bundle[6..8], &[0x01, 0x2c]);
    assert_eq!(bundle.len(), 6 + 2 + 300);
    assert_eq!(parse_entry_bundle(&bundle).unwrap(), entries);

    assert_eq!(entry_bundle::<Vec<u8>>(&[]).unwrap(), Vec::<u8>::new());
    assert_eq!(parse_entry_bundle(&[]).unwrap(), Vec::<Vec<u8>>::new());

    let largest = vec![vec![1u8; MAX_ENTRY_LEN]];
    assert_eq!(
        parse_entry_bundle(&entry_bundle(&largest).unwrap()).unwrap(),
        largest
    );
    assert_eq!(
        entry_bundle(&[vec![0u8; MAX_ENTRY_LEN + 1]]),
        Err(LogError::EntryTooLarge(MAX_ENTRY_LEN + 1))
    );

    let full: Vec<Vec<u8>> = (0..256u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let full_bundle = entry_bundle(&full).unwrap();
    assert_eq!(parse_entry_bundle(&full_bundle).unwrap(), full);
    let too_many: Vec<Vec<u8>> = (0..257u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert!(matches!(
        entry_bundle(&too_many),
        Err(LogError::MalformedEntryBundle(_))
    ));
    let mut overfull = full_bundle.clone();
    overfull.extend_from_slice(&[0, 0]);
    assert!(matches!(
        parse_entry_bundle(&overfull),
        Err(LogError::MalformedEntryBundle(_))
    ));

    // Every truncation of a bundle is rejected (or is a shorter valid bundle
    // ending on an entry boundary).
    let boundaries = [0usize, 4, 6, 308];
    for cut in 0..bundle.len() {
        let parsed = parse_entry_bundle(&bundle[..cut]);
        assert_eq!(parsed.is_ok(), boundaries.contains(&cut), "cut at {cut}");
    }
}

#[test]
fn entry_bundle_hashes_to_its_level_0_tile() {
    let log = tile_log();
    let size = log.size();
    for (index, width) in [(0u64, 256u16), (273, 112)] {
        let start = index as usize * 256;
        let entries = &log.leaves[start..start + usize::from(width)];
        let bundle = entry_bundle(entries).unwrap();
        let tile = tile_bytes(0, index, width, size, &log.stored).unwrap();
        let hashed: Vec<u8> = parse_entry_bundle(&bundle)
            .unwrap()
            .iter()
            .flat_map(|e| leaf_hash(e))
            .collect();
        assert_eq!(hashed, tile, "{}", entry_bundle_path(index, width));
    }
}

// ---------------------------------------------------------------------------
// Scale: appends one by one and in batches agree; proofs hold on a larger tree
// (the timing of the same operations is `postvault-bench log`)
// ---------------------------------------------------------------------------

#[test]
fn single_and_batched_appends_agree_and_proofs_verify_at_scale() {
    let leaves: u64 = 20_000;
    let hashes: Vec<Hash> = (0..leaves).map(|i| leaf_hash(&i.to_be_bytes())).collect();

    let mut stored: Vec<Hash> = Vec::new();
    for (n, hash) in (0..).zip(&hashes) {
        for (_, h) in append_hashes(n, std::slice::from_ref(hash), &stored).unwrap() {
            stored.push(h);
        }
    }
    let mut batched: Vec<Hash> = Vec::new();
    for (chunk, n) in hashes.chunks(1000).zip((0..).step_by(1000)) {
        for (_, h) in append_hashes(n, chunk, &batched).unwrap() {
            batched.push(h);
        }
    }
    assert_eq!(stored, batched);

    let root = tree_root(leaves, &stored).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for _ in 0..1000 {
        let i = rng.random_range(0..leaves);
        let proof = prove_inclusion(i, leaves, &stored).unwrap();
        verify_inclusion(i, leaves, &hashes[i as usize], &proof, &root).unwrap();
    }
    let consistency = prove_consistency(leaves / 3, leaves, &stored).unwrap();
    verify_consistency(
        leaves / 3,
        leaves,
        &tree_root(leaves / 3, &stored).unwrap(),
        &root,
        &consistency,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------
// Proof tiles
// ---------------------------------------------------------------------------

/// Every stored hash of levels 0-15 has one slot of one tile, no two share
/// one, every slot of a tile is used, and a tile's `end` is when its
/// subtree is complete.
#[test]
fn proof_tile_slots_cover_the_low_levels_once() {
    let log = big_log();
    let mut seen = std::collections::HashMap::new();
    let mut levels_16_up = 0;
    for i in 0..log.stored.len() as u64 {
        match proof_tile_slot(i) {
            None => {
                assert!(stored_index_level(i) >= PROOF_TILE_LEVELS);
                levels_16_up += 1;
            }
            Some(s) => {
                assert!(stored_index_level(i) < PROOF_TILE_LEVELS);
                assert!(s.slot < PROOF_TILE_HASHES);
                // Complete no later than the stored hash itself exists.
                assert!(stored_hash_count(s.end).unwrap() > i, "{i} {s:?}");
                assert!(seen.insert((s.tile, s.slot), i).is_none(), "{i} {s:?}");
                assert_eq!(proof_tile_indexes(s.tile).nth(s.slot), Some(i));
            }
        }
    }
    // 4096 leaves: a tree of 12 levels; its root is in band 3's first
    // tile, which is complete at 65,536 leaves.
    assert_eq!(levels_16_up, 0);
    let root = tlog_tiles::tlog::stored_hash_index(12, 0);
    assert_eq!(proof_tile_slot(root).unwrap().end, 1 << 16);
    for level in [16u8, 17, 30] {
        let i = tlog_tiles::tlog::stored_hash_index(level, 3);
        assert_eq!(proof_tile_slot(i), None);
    }
    let mut per_tile = std::collections::HashMap::<u64, usize>::new();
    for ((tile, _), i) in &seen {
        if proof_tile_slot(*i).unwrap().end <= 4096 {
            *per_tile.entry(*tile).or_default() += 1;
        }
    }
    assert_eq!(per_tile.len(), 4096 / 16 + 4096 / 256 + 1);
    assert!(per_tile.values().all(|&n| n == PROOF_TILE_HASHES));
    let mut ids: Vec<u64> = proof_tile_ranges(0, 4096).into_iter().flatten().collect();
    let mut found: Vec<u64> = per_tile.into_keys().collect();
    ids.sort_unstable();
    found.sort_unstable();
    assert_eq!(ids, found);
}

/// A proof in a tree of 4,096 leaves reads its 12 levels (and the leaf's
/// own hash) from three tiles.
#[test]
fn a_proof_takes_its_levels_from_a_tile_a_band() {
    let log = big_log();
    for index in [0u64, 1, 15, 16, 255, 256, 1000, 4095] {
        let mut asked = Vec::new();
        struct Spy<'a>(&'a [Hash], &'a std::cell::RefCell<Vec<u64>>);
        impl HashStore for Spy<'_> {
            fn read_hashes(&self, ix: &[u64]) -> Result<Vec<Hash>, LogError> {
                self.1.borrow_mut().extend_from_slice(ix);
                self.0.read_hashes(ix)
            }
        }
        let cell = std::cell::RefCell::new(Vec::new());
        prove_inclusion(index, 4096, &Spy(&log.stored, &cell)).unwrap();
        asked.extend(cell.into_inner());
        asked.push(leaf_stored_index(index).unwrap());
        let mut tiles: Vec<u64> = asked
            .iter()
            .filter_map(|&i| proof_tile_slot(i).map(|s| s.tile))
            .collect();
        tiles.sort_unstable();
        tiles.dedup();
        assert_eq!(tiles.len(), 3, "leaf {index}: {asked:?}");
        assert_eq!(
            asked
                .iter()
                .filter(|&&i| proof_tile_slot(i).is_some())
                .count(),
            13
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Tiles written append by append, whatever the cuts, hold exactly the
    /// stored hashes their slots name, and are those the ranges list.
    #[test]
    fn proof_tiles_hold_the_stored_hashes(
        cuts in prop::collection::vec(0..=4096u64, 0..8),
        tiled_from in 0..=4096u64,
    ) {
        let log = big_log();
        let total = 4096u64;
        let mut cuts = cuts;
        cuts.extend([0, tiled_from, total]);
        cuts.sort_unstable();
        cuts.dedup();
        let mut stored: Vec<Hash> = Vec::new();
        let mut tiles = std::collections::BTreeMap::new();
        for pair in cuts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            let batch = &log.leaf_hashes[from as usize..to as usize];
            let new = append_hashes(from, batch, &stored).unwrap();
            if from >= tiled_from {
                for (id, bytes) in proof_tiles(from, to, &new, &stored).unwrap() {
                    prop_assert_eq!(bytes.len(), PROOF_TILE_BYTES);
                    prop_assert!(tiles.insert(id, bytes).is_none());
                }
            }
            stored.extend(new.into_iter().map(|(_, h)| h));
        }
        let ids: Vec<u64> = proof_tile_ranges(tiled_from, total).into_iter().flatten().collect();
        prop_assert_eq!(ids, tiles.keys().copied().collect::<Vec<_>>());
        for (i, h) in stored.iter().enumerate() {
            if let Some(s) = proof_tile_slot(i as u64)
                && s.end > tiled_from
                && s.end <= total
            {
                let t = &tiles[&s.tile];
                prop_assert_eq!(&t[s.slot * 32..s.slot * 32 + 32], &h[..]);
            }
        }
    }
}

/// A tile whose earlier hashes the store does not have is an error, not a
/// tile of zeros.
#[test]
fn proof_tiles_need_the_earlier_hashes() {
    let log = big_log();
    let new = append_hashes(10, &log.leaf_hashes[10..20], &log.stored).unwrap();
    let none: Vec<Hash> = Vec::new();
    assert!(matches!(
        proof_tiles(10, 20, &new, &none),
        Err(LogError::Storage(_))
    ));
    let tiles = proof_tiles(10, 20, &new, &log.stored).unwrap();
    assert_eq!(tiles.len(), 1);
    assert_eq!(tiles[0].0, 0);
}
