//! The in-memory block tree: the last committed block (the root) and the uncommitted blocks that
//! descend from it. Nothing here is persisted: after a restart the tree is refetched.

use std::collections::BTreeMap;

use crate::ids::{BlockId, Height};
use crate::limits::TREE_BLOCKS_MAX;
use crate::types::Block;

/// Blocks by id, rooted at the last committed block.
pub struct BlockTree {
    blocks: BTreeMap<BlockId, Block>,
    root: BlockId,
}

impl BlockTree {
    /// A tree holding only `root`.
    pub fn new(root: Block) -> BlockTree {
        let id = root.id();
        let mut blocks = BTreeMap::new();
        blocks.insert(id, root);
        BlockTree { blocks, root: id }
    }

    /// The last committed block.
    pub fn root(&self) -> &Block {
        self.blocks
            .get(&self.root)
            .expect("tree invariant: the root is always held")
    }

    /// A block by id.
    pub fn get(&self, id: &BlockId) -> Option<&Block> {
        self.blocks.get(id)
    }

    /// Whether the tree holds `id`.
    pub fn contains(&self, id: &BlockId) -> bool {
        self.blocks.contains_key(id)
    }

    /// Whether another block fits (the root does not count).
    pub fn is_full(&self) -> bool {
        self.blocks.len() > TREE_BLOCKS_MAX
    }

    /// Inserts a block whose parent is held. Returns false if the parent is missing.
    pub fn insert(&mut self, block: Block) -> bool {
        if !self.blocks.contains_key(&block.header.parent_id) {
            return false;
        }
        self.blocks.insert(block.id(), block);
        true
    }

    /// The uncommitted chain ending at `id`, oldest first (root excluded), or `None` if `id` does
    /// not descend from the root through held blocks.
    pub fn chain_to(&self, id: &BlockId) -> Option<Vec<&Block>> {
        let mut out = Vec::new();
        let mut cur = *id;
        while cur != self.root {
            let b = self.blocks.get(&cur)?;
            out.push(b);
            cur = b.header.parent_id;
        }
        out.reverse();
        Some(out)
    }

    /// Whether an uncommitted block with a non-empty payload is held.
    pub fn has_nonempty_uncommitted(&self) -> bool {
        self.blocks
            .iter()
            .any(|(id, b)| *id != self.root && !b.payload.is_empty())
    }

    /// Makes `id` (held, descending from the root) the new root; returns the newly committed
    /// blocks oldest first and drops every block that does not descend from the new root.
    pub fn commit_to(&mut self, id: &BlockId) -> Vec<Block> {
        let chain: Vec<BlockId> = match self.chain_to(id) {
            Some(c) => c.iter().map(|b| b.id()).collect(),
            None => return Vec::new(),
        };
        let committed: Vec<Block> = chain
            .iter()
            .map(|i| {
                self.blocks
                    .get(i)
                    .cloned()
                    .expect("chain_to returned held blocks")
            })
            .collect();
        self.reroot(*id);
        committed
    }

    /// Replaces the root by `block` (a committed block obtained by sync), keeping the held
    /// blocks that descend from it.
    pub fn reset_root(&mut self, block: Block) {
        let id = block.id();
        self.blocks.insert(id, block);
        self.reroot(id);
    }

    fn reroot(&mut self, id: BlockId) {
        let root_height = self.blocks[&id].height();
        let mut by_height: Vec<(Height, BlockId, BlockId)> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.height() > root_height)
            .map(|(i, b)| (b.height(), *i, b.header.parent_id))
            .collect();
        by_height.sort();
        let mut keep = std::collections::BTreeSet::new();
        keep.insert(id);
        for (_, i, parent) in by_height {
            if keep.contains(&parent) {
                keep.insert(i);
            }
        }
        self.blocks.retain(|i, _| keep.contains(i));
        self.root = id;
    }

    /// `id` and up to `count - 1` ancestors held (root included), oldest first.
    pub fn ancestry(&self, id: &BlockId, count: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cur = *id;
        while out.len() < count {
            let Some(b) = self.blocks.get(&cur) else {
                break;
            };
            // Every replica knows genesis, and it does not pass `Block::verify` (its QC
            // certifies no parent): sending it would get the whole response refused.
            if b.is_genesis() {
                break;
            }
            out.push(b.clone());
            if cur == self.root {
                break;
            }
            cur = b.header.parent_id;
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Round;
    use crate::testutil::keys;

    #[test]
    fn limit_tree_blocks_max() {
        let k = keys(4);
        let g = Block::genesis();
        let mut t = BlockTree::new(g.clone());
        for i in 0..TREE_BLOCKS_MAX {
            assert!(!t.is_full());
            let b = k.child(&g, Round(1), 1, (i as u32).to_le_bytes().to_vec());
            assert!(t.insert(b));
        }
        assert!(t.is_full());
    }

    #[test]
    fn ancestry_never_includes_genesis_which_would_fail_verification() {
        let k = keys(4);
        let g = Block::genesis();
        let a1 = k.child(&g, Round(1), 1, vec![1]);
        let a2 = k.child(&a1, Round(2), 2, vec![2]);
        let mut t = BlockTree::new(g);
        assert!(t.insert(a1.clone()) && t.insert(a2.clone()));
        let chain = t.ancestry(&a2.id(), 10);
        assert_eq!(chain, vec![a1, a2]);
    }

    #[test]
    fn commit_prunes_forks() {
        let k = keys(4);
        let g = Block::genesis();
        let a1 = k.child(&g, Round(1), 1, vec![1]);
        let b1 = k.child(&g, Round(2), 2, vec![2]);
        let a2 = k.child(&a1, Round(3), 3, vec![3]);
        let mut t = BlockTree::new(g);
        for b in [&a1, &b1, &a2] {
            assert!(t.insert(b.clone()));
        }
        let committed = t.commit_to(&a1.id());
        assert_eq!(committed.len(), 1);
        assert!(t.contains(&a2.id()) && !t.contains(&b1.id()));
        assert_eq!(t.root().id(), a1.id());
    }
}
