//! The per-block Merkle tree over leaves: SHA-256 with domain-separated leaf and node hashing.
//!
//! - leaf hash  = SHA-256(0x00 || leaf canonical bytes)
//! - node hash  = SHA-256(0x01 || left || right)
//! - empty tree = SHA-256(0x02)
//! - odd rule: the last node of a level with an odd count is promoted unchanged to the next level
//!   (never paired with itself, so no two different leaf lists share a root).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::MerkleHash;
use crate::outcome::Leaf;

/// SHA-256(0x00 || leaf canonical bytes).
pub fn leaf_hash(leaf: &Leaf) -> MerkleHash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf.canonical_bytes());
    MerkleHash(h.finalize().into())
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &MerkleHash, right: &MerkleHash) -> MerkleHash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    MerkleHash(h.finalize().into())
}

/// The root of a tree with no leaves: SHA-256(0x02).
pub fn empty_root() -> MerkleHash {
    MerkleHash(Sha256::digest([0x02]).into())
}

/// A built tree: every level, bottom (leaf hashes) first, so proofs are cheap to cut.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<MerkleHash>>,
}

impl MerkleTree {
    /// Builds the tree over leaf hashes, in order.
    pub fn from_leaf_hashes(leaf_hashes: Vec<MerkleHash>) -> Self {
        let mut levels = vec![leaf_hashes];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("the loop condition saw a level");
            let above: Vec<MerkleHash> = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    /// Builds the tree over leaves, in order.
    pub fn from_leaves(leaves: &[Leaf]) -> Self {
        Self::from_leaf_hashes(leaves.iter().map(leaf_hash).collect())
    }

    /// How many leaves.
    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    /// The root ([`empty_root`] for no leaves).
    pub fn root(&self) -> MerkleHash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) => *root,
            None => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` if there is no such leaf.
    pub fn proof(&self, index: usize) -> Option<InclusionProof> {
        if index >= self.leaf_count() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            i /= 2;
        }
        Some(InclusionProof {
            index: u32::try_from(index).expect("blocks hold far fewer than 4 billion leaves"),
            siblings,
        })
    }
}

/// The path from one leaf to the root: the leaf's index and its siblings, bottom first. A level
/// where the path node is a promoted odd node contributes no sibling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's position in the block's leaf list (0-based).
    pub index: u32,
    /// The sibling hashes, from the leaf level upwards.
    pub siblings: Vec<MerkleHash>,
}

impl InclusionProof {
    /// The root this proof leads to from `leaf_hash` in a tree of `leaf_count` leaves, or `None`
    /// if the index is out of range or the number of siblings does not fit the tree's shape.
    pub fn root_for(&self, leaf_hash: MerkleHash, leaf_count: u32) -> Option<MerkleHash> {
        if self.index >= leaf_count {
            return None;
        }
        let (mut i, mut size, mut h) = (self.index, leaf_count, leaf_hash);
        let mut siblings = self.siblings.iter();
        while size > 1 {
            if i % 2 == 1 {
                h = node_hash(siblings.next()?, &h);
            } else if i + 1 < size {
                h = node_hash(&h, siblings.next()?);
            }
            i /= 2;
            size = size.div_ceil(2);
        }
        siblings.next().is_none().then_some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(n: usize) -> Vec<MerkleHash> {
        (0..n)
            .map(|i| MerkleHash(Sha256::digest((i as u64).to_be_bytes()).into()))
            .collect()
    }

    #[test]
    fn odd_node_is_promoted_not_duplicated() {
        let h = hashes(3);
        let tree = MerkleTree::from_leaf_hashes(h.clone());
        assert_eq!(tree.root(), node_hash(&node_hash(&h[0], &h[1]), &h[2]));
        assert_eq!(
            tree.proof(2).unwrap().siblings,
            vec![node_hash(&h[0], &h[1])]
        );
        assert_ne!(
            tree.root(),
            MerkleTree::from_leaf_hashes(vec![h[0], h[1], h[2], h[2]]).root()
        );
    }

    #[test]
    fn single_and_empty_trees() {
        let h = hashes(1);
        let tree = MerkleTree::from_leaf_hashes(h.clone());
        assert_eq!(tree.root(), h[0]);
        assert_eq!(tree.proof(0).unwrap().siblings, vec![]);
        let empty = MerkleTree::from_leaf_hashes(vec![]);
        assert_eq!(empty.root(), empty_root());
        assert!(empty.proof(0).is_none());
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_a_wrong_index_or_sibling_does_not(n in 1usize..70, pick in any::<prop::sample::Index>()) {
            let h = hashes(n);
            let tree = MerkleTree::from_leaf_hashes(h.clone());
            let i = pick.index(n);
            let proof = tree.proof(i).unwrap();
            prop_assert_eq!(proof.root_for(h[i], n as u32), Some(tree.root()));
            let mut moved = proof.clone();
            moved.index = ((i + 1) % n) as u32;
            if n > 1 {
                prop_assert_ne!(moved.root_for(h[i], n as u32), Some(tree.root()));
            }
            if let Some(first) = proof.siblings.first() {
                let mut tampered = proof.clone();
                tampered.siblings[0] = node_hash(first, first);
                prop_assert_ne!(tampered.root_for(h[i], n as u32), Some(tree.root()));
            }
            prop_assert_eq!(proof.root_for(h[i], i as u32), None);
        }
    }
}
