//! Leader reputation: who leads a round, chosen from the committed history every honest replica
//! agrees on, so that a crashed or cut-off replica stops being chosen (and stops costing a round
//! timeout in every rotation).
//!
//! The one rule is [`leader_for`]; the replica uses it to decide whether to propose, where to
//! send its votes, and whether a proposal's author may lead its round. Safety never depends on
//! it: the safety rules (one vote per round, the lock) and the commit rule hold whoever proposes.

use std::collections::VecDeque;

use crate::committee::Committee;
use crate::ids::{Height, ReplicaId, Round};
use crate::types::Block;

/// The leader of round r is decided by the committed history as of round `r - LAG_ROUNDS` (the
/// anchor). In the fault-free pipeline a replica in round r has committed up to round r - 2 or
/// r - 3 (the QC of r - 1 commits r - 2, and is processed before the commit is applied), so the
/// anchor is already committed everywhere; a larger lag only delays the exclusion of a crashed
/// replica by as many rounds.
pub const LAG_ROUNDS: u64 = 4;

/// Committed blocks (at or before the anchor) whose authors and parent voters count as active.
/// A crashed replica neither proposes nor votes, so it drops out after this many blocks; a live
/// replica is in a QC of n - f out of the n - 1 others (or authors a block) within a few blocks
/// with high probability, and if it is left out for a while, that costs no timeout: it only
/// leads less.
pub const WINDOW_BLOCKS: usize = 3;

/// Committed blocks remembered: the window plus the at most `LAG_ROUNDS` blocks committed after
/// the anchor (blocks have distinct rounds), with a margin for rounds we are a little behind on.
pub const HISTORY_BLOCKS_MAX: usize = WINDOW_BLOCKS + LAG_ROUNDS as usize + 8;

/// What the rule needs of one committed block: all fields are in the hashed header, so every
/// replica that committed the block sees the same values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    height: Height,
    round: Round,
    author: ReplicaId,
    parent_voters: Vec<ReplicaId>,
}

/// The most recent committed blocks, oldest first, contiguous in height.
#[derive(Clone, Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
}

impl History {
    /// History seeded with the last committed block (nothing for genesis): after a restart or a
    /// sync the older blocks are unknown, and [`leader_for`] says so.
    pub fn new(root: &Block) -> History {
        let mut h = History::default();
        if !root.is_genesis() {
            h.push(root);
        }
        h
    }

    /// History rebuilt after a restart: the committed blocks before `root` (oldest first,
    /// contiguous, ending at `root`'s parent), then `root` itself.
    pub fn recovered(earlier: &[Block], root: &Block) -> History {
        let mut h = History::default();
        let start = earlier.len().saturating_sub(HISTORY_BLOCKS_MAX);
        for b in &earlier[start..] {
            if !b.is_genesis() {
                h.push(b);
            }
        }
        if !root.is_genesis() {
            h.push(root);
        }
        h
    }

    /// Records a newly committed block. Blocks must come in height order; a gap (after a sync
    /// that skipped blocks) restarts the history from this block.
    pub fn push(&mut self, block: &Block) {
        if let Some(last) = self.entries.back() {
            if block.height() <= last.height {
                return;
            }
            if block.height() != last.height.next() {
                self.entries.clear();
            }
        }
        self.entries.push_back(Entry {
            height: block.height(),
            round: block.round(),
            author: block.header.author,
            parent_voters: block.header.parent_voters.clone(),
        });
        while self.entries.len() > HISTORY_BLOCKS_MAX {
            self.entries.pop_front();
        }
    }

    /// Whether the history reaches back to height 1 (or nothing is committed yet).
    fn reaches_genesis(&self) -> bool {
        self.entries.front().is_none_or(|e| e.height == Height(1))
    }

    /// Round of the last committed block (0 for genesis).
    fn last_round(&self) -> Round {
        self.entries.back().map_or(Round(0), |e| e.round)
    }
}

/// The leader of a round, and whether this replica is sure of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChoice {
    /// The leader (a best guess when not `certain`).
    pub leader: ReplicaId,
    /// True when the inputs of the rule are all known here: then every other replica that is
    /// also certain computes the same leader.
    pub certain: bool,
}

/// The leader of `round`, from the committed history.
///
/// # The rule
/// 1. Anchor: `a = round - LAG_ROUNDS`. The input is the last `WINDOW_BLOCKS` committed blocks
///    with round <= a (fewer if the chain is that short). If a is 0 or there is no such block,
///    the leader is round-robin (`Committee::leader`).
/// 2. Active replicas: the authors of those blocks and the replicas listed as their
///    `parent_voters` (the signers of their parent's QC).
/// 3. If fewer than a quorum are active (something odd, such as a long run of few voters), use
///    round-robin; otherwise the leader is the active replica at index `round mod |active|` in
///    id order.
///
/// # Why every honest replica agrees
/// Committed blocks are the same on every honest replica (agreement), and the fields read are in
/// the hashed header. A replica whose last committed block has round >= a knows every committed
/// block with round <= a (rounds grow along the chain); if it also holds `WINDOW_BLOCKS` of them
/// (or the chain from genesis), it is `certain`, and all certain replicas compute the same leader.
/// A replica that is behind (it has not committed up to the anchor, or restarted and lacks older
/// blocks) is not certain: it then proposes on its best guess, accepts a proposal from any member
/// for that round (its first one still gets its only vote: the safety rules make that safe), and
/// broadcasts its vote instead of sending it to one leader. Once it commits past the anchor, it
/// agrees again. In the fault-free pipeline every replica has committed past the anchor, so the
/// schedule is the same everywhere and no round times out.
///
/// # Why a crashed replica stops costing timeouts
/// It neither authors blocks nor votes, so once `WINDOW_BLOCKS` blocks committed after its crash
/// fall at or before the anchor, it is inactive and never leads: it costs at most the timeouts of
/// the rounds it leads within about `WINDOW_BLOCKS + LAG_ROUNDS` rounds (with round-robin it cost
/// two rounds in every rotation: its own, and the one before, whose votes went to it). When it
/// comes back, its votes appear in QCs, and it is active again a few blocks later.
pub fn leader_for(committee: &Committee, history: &History, round: Round) -> LeaderChoice {
    let round_robin = committee.leader(round);
    let anchor = Round(round.0.saturating_sub(LAG_ROUNDS));
    if anchor == Round(0) {
        return LeaderChoice {
            leader: round_robin,
            certain: true,
        };
    }
    let knows_anchor = history.last_round() >= anchor;
    let window: Vec<&Entry> = history
        .entries
        .iter()
        .rev()
        .filter(|e| e.round <= anchor)
        .take(WINDOW_BLOCKS)
        .collect();
    // Fewer blocks than the window: either the chain is that short (everyone who knows the
    // anchor sees the same blocks), or we lack the older ones (after a restart or a sync), and
    // then we only guess.
    let certain = knows_anchor && (window.len() == WINDOW_BLOCKS || history.reaches_genesis());
    if window.is_empty() {
        return LeaderChoice {
            leader: round_robin,
            certain,
        };
    }
    let n = committee.size();
    let mut active = vec![false; n];
    for e in &window {
        for id in std::iter::once(&e.author).chain(e.parent_voters.iter()) {
            if let Some(slot) = active.get_mut(usize::from(id.0)) {
                *slot = true;
            }
        }
    }
    let ids: Vec<ReplicaId> = committee
        .ids()
        .filter(|id| active[usize::from(id.0)])
        .collect();
    let leader = if ids.len() < committee.quorum() {
        round_robin
    } else {
        ids[(round.0 % ids.len() as u64) as usize]
    };
    LeaderChoice { leader, certain }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::keys;

    /// A committed chain of `len` blocks at consecutive rounds from 1, where `silent` neither
    /// leads nor votes after height `silent_from`.
    fn chain(n: usize, len: u64, silent: ReplicaId, silent_from: u64) -> (Committee, Vec<Block>) {
        let k = keys(n);
        let mut blocks = vec![Block::genesis()];
        for r in 1..=len {
            let parent = blocks.last().expect("genesis first").clone();
            let mut b = k.child(&parent, Round(r), r, vec![]);
            if r > silent_from {
                b.header.parent_voters.retain(|v| *v != silent);
                if b.header.author == silent {
                    b.header.author = ReplicaId((silent.0 + 1) % n as u16);
                }
            }
            blocks.push(b);
        }
        blocks.remove(0);
        (k.committee, blocks)
    }

    fn history_of(blocks: &[Block]) -> History {
        let mut h = History::default();
        for b in blocks {
            h.push(b);
        }
        h
    }

    #[test]
    fn short_chain_is_round_robin_then_reputation_and_certain() {
        let (c, blocks) = chain(4, 3, ReplicaId(9), u64::MAX);
        let h = history_of(&blocks);
        // Round 5's window is block 1 alone (its parent is genesis: no voters): too few
        // active replicas, round-robin.
        for r in 1..=5 {
            let choice = leader_for(&c, &h, Round(r));
            assert_eq!(choice.leader, c.leader(Round(r)), "round {r}");
            assert!(choice.certain, "round {r}");
        }
        for r in 6..=7 {
            assert!(leader_for(&c, &h, Round(r)).certain, "round {r}");
        }
        assert!(
            !leader_for(&c, &h, Round(8)).certain,
            "anchor 4 not committed"
        );
    }

    #[test]
    fn silent_replica_is_never_chosen_after_the_window() {
        for n in [4usize, 7] {
            let silent = ReplicaId(2);
            let (c, blocks) = chain(n, 60, silent, 20);
            let from = 20 + WINDOW_BLOCKS as u64 + LAG_ROUNDS + 1;
            for r in from..=60 {
                // A replica in round r has committed up to round r - 2.
                let h = history_of(&blocks[..r as usize - 2]);
                let choice = leader_for(&c, &h, Round(r));
                assert!(choice.certain);
                assert_ne!(choice.leader, silent, "n={n} round {r}");
            }
        }
    }

    #[test]
    fn live_replicas_all_lead_in_turn() {
        let (c, blocks) = chain(4, 40, ReplicaId(9), u64::MAX);
        let leaders: std::collections::BTreeSet<ReplicaId> = (30..=40)
            .map(|r| leader_for(&c, &history_of(&blocks[..r - 2]), Round(r as u64)).leader)
            .collect();
        assert_eq!(leaders.len(), 4);
    }

    #[test]
    fn replicas_that_committed_past_the_anchor_agree() {
        let (c, blocks) = chain(7, 50, ReplicaId(4), 10);
        for r in 20..=50u64 {
            let full = history_of(&blocks[..r as usize - 2]);
            // A replica that committed only up to the anchor, and one that restarted from the
            // anchor's block and synced forward: same leader when certain.
            let anchor = (r - LAG_ROUNDS) as usize;
            let behind = history_of(&blocks[..anchor]);
            let restarted = history_of(&blocks[anchor - 1..]);
            let a = leader_for(&c, &full, Round(r));
            let b = leader_for(&c, &behind, Round(r));
            assert!(a.certain && b.certain);
            assert_eq!(a.leader, b.leader, "round {r}");
            assert!(!leader_for(&c, &restarted, Round(r)).certain);
        }
    }

    #[test]
    fn a_replica_restarted_with_its_recent_committed_blocks_is_certain_again() {
        let (c, blocks) = chain(7, 50, ReplicaId(4), 10);
        let r = 40u64;
        let committed = r as usize - 2;
        let full = history_of(&blocks[..committed]);
        // Restarted from its store: the last committed block and the ones before it.
        let root = &blocks[committed - 1];
        let recovered = History::recovered(&blocks[..committed - 1], root);
        let a = leader_for(&c, &full, Round(r));
        let b = leader_for(&c, &recovered, Round(r));
        assert!(a.certain && b.certain);
        assert_eq!(a.leader, b.leader);
        // Without the earlier blocks it is not.
        assert!(!leader_for(&c, &History::recovered(&[], root), Round(r)).certain);
    }

    #[test]
    fn replica_behind_the_anchor_is_not_certain() {
        let (c, blocks) = chain(4, 30, ReplicaId(9), u64::MAX);
        let h = history_of(&blocks[..20]);
        assert!(leader_for(&c, &h, Round(20 + LAG_ROUNDS)).certain);
        assert!(!leader_for(&c, &h, Round(21 + LAG_ROUNDS)).certain);
    }

    #[test]
    fn limit_history_blocks_max() {
        let (_, blocks) = chain(4, 100, ReplicaId(9), u64::MAX);
        let h = history_of(&blocks);
        assert_eq!(h.entries.len(), HISTORY_BLOCKS_MAX);
        assert_eq!(h.entries.back().map(|e| e.height), Some(Height(100)));
    }
}
