//! The RFC 6962 root of a stream of leaves in O(log n) memory: the roots
//! of the maximal complete subtrees seen so far (the right frontier),
//! merged as leaves arrive. For checks that must not write the stored
//! hashes and must not hold the whole tree.

use crate::{EMPTY_ROOT, Hash, node_hash};

/// Leaf hashes in, RFC 6962 root out.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// (height, root) of complete subtrees, largest first.
    frontier: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf whose leaf hash is `leaf_hash`.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut node = (0u32, leaf_hash);
        while let Some(&(h, left)) = self.frontier.last() {
            if h != node.0 {
                break;
            }
            self.frontier.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.frontier.push(node);
        self.size += 1;
    }

    /// The root of the tree of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}
