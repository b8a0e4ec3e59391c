//! Partial vote and timeout sets, with equivocation detection and a bound on what they hold.

use std::collections::BTreeMap;

use crate::committee::Sig;
use crate::ids::{BlockId, ReplicaId, Round};
use crate::limits::{PENDING_TIMEOUTS_MAX, PENDING_VOTES_MAX};
use crate::types::{QuorumCert, Timeout, TimeoutCert, Vote, VoteData};

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted; no quorum yet (or the quorum was already formed).
    Added,
    /// The same vote was already counted.
    Duplicate,
    /// The voter already voted for another block in this round: evidence of a Byzantine voter.
    Equivocation {
        /// The voter.
        voter: ReplicaId,
        /// The round.
        round: Round,
        /// The block of its first vote.
        first: BlockId,
        /// The block of this vote.
        second: BlockId,
    },
    /// This vote completed a quorum.
    QuorumFormed(QuorumCert),
    /// The bound on pending votes is reached; the vote was dropped.
    Full,
}

#[derive(Default)]
struct RoundVotes {
    voted: BTreeMap<ReplicaId, BlockId>,
    blocks: BTreeMap<BlockId, (VoteData, BTreeMap<ReplicaId, Sig>)>,
    certified: bool,
}

/// Votes per round, at most one counted per voter and round.
#[derive(Default)]
pub struct PendingVotes {
    rounds: BTreeMap<Round, RoundVotes>,
    total: usize,
}

impl PendingVotes {
    /// Adds a verified vote; `quorum` is the committee's quorum size.
    pub fn add(&mut self, vote: &Vote, quorum: usize) -> VoteOutcome {
        let round = vote.data.round;
        let id = vote.data.block_id;
        if let Some(rv) = self.rounds.get(&round) {
            if let Some(first) = rv.voted.get(&vote.voter) {
                return if *first == id {
                    VoteOutcome::Duplicate
                } else {
                    VoteOutcome::Equivocation {
                        voter: vote.voter,
                        round,
                        first: *first,
                        second: id,
                    }
                };
            }
        }
        if self.total >= PENDING_VOTES_MAX {
            return VoteOutcome::Full;
        }
        let rv = self.rounds.entry(round).or_default();
        rv.voted.insert(vote.voter, id);
        self.total += 1;
        let (data, sigs) = rv
            .blocks
            .entry(id)
            .or_insert_with(|| (vote.data, BTreeMap::new()));
        if *data != vote.data {
            // Same block id but different parent data is impossible for honest voters (the data
            // is derived from the block, whose id binds its parent); count it as not forming.
            return VoteOutcome::Added;
        }
        sigs.insert(vote.voter, vote.signature);
        if !rv.certified && sigs.len() >= quorum {
            rv.certified = true;
            return VoteOutcome::QuorumFormed(QuorumCert {
                data: *data,
                signatures: sigs.iter().map(|(r, s)| (*r, *s)).collect(),
            });
        }
        VoteOutcome::Added
    }

    /// Drops every round below `round`.
    pub fn prune_below(&mut self, round: Round) {
        let keep = self.rounds.split_off(&round);
        for rv in self.rounds.values() {
            self.total -= rv.voted.len();
        }
        self.rounds = keep;
    }

    /// Votes held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no votes are held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// What adding a timeout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// Counted; `count` distinct timeouts for the round so far.
    Added {
        /// Distinct authors so far.
        count: usize,
    },
    /// Already counted.
    Duplicate,
    /// The author signed two different timeouts for the round.
    Equivocation {
        /// The author.
        author: ReplicaId,
        /// The round.
        round: Round,
    },
    /// This timeout completed a TC.
    TcFormed(TimeoutCert),
    /// The bound on pending timeouts is reached; dropped.
    Full,
}

#[derive(Default)]
struct RoundTimeouts {
    entries: BTreeMap<ReplicaId, (Round, Sig)>,
    certified: bool,
}

/// Timeouts per round.
#[derive(Default)]
pub struct PendingTimeouts {
    rounds: BTreeMap<Round, RoundTimeouts>,
    total: usize,
}

impl PendingTimeouts {
    /// Adds a verified timeout.
    pub fn add(&mut self, t: &Timeout, quorum: usize) -> TimeoutOutcome {
        if let Some(rt) = self.rounds.get(&t.round) {
            if let Some((qc_round, _)) = rt.entries.get(&t.author) {
                return if *qc_round == t.high_qc.round() {
                    TimeoutOutcome::Duplicate
                } else {
                    TimeoutOutcome::Equivocation {
                        author: t.author,
                        round: t.round,
                    }
                };
            }
        }
        if self.total >= PENDING_TIMEOUTS_MAX {
            return TimeoutOutcome::Full;
        }
        let rt = self.rounds.entry(t.round).or_default();
        rt.entries
            .insert(t.author, (t.high_qc.round(), t.signature));
        self.total += 1;
        if !rt.certified && rt.entries.len() >= quorum {
            rt.certified = true;
            return TimeoutOutcome::TcFormed(TimeoutCert {
                round: t.round,
                entries: rt.entries.iter().map(|(r, (q, s))| (*r, *q, *s)).collect(),
            });
        }
        TimeoutOutcome::Added {
            count: rt.entries.len(),
        }
    }

    /// Drops every round below `round`.
    pub fn prune_below(&mut self, round: Round) {
        let keep = self.rounds.split_off(&round);
        for rt in self.rounds.values() {
            self.total -= rt.entries.len();
        }
        self.rounds = keep;
    }

    /// Timeouts held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether no timeouts are held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Digest, Height};

    fn vote(voter: u16, round: u64, block: u8) -> Vote {
        Vote {
            data: VoteData {
                block_id: Digest([block; 32]),
                round: Round(round),
                height: Height(round),
                parent_id: Digest([0; 32]),
                parent_round: Round(round - 1),
            },
            voter: ReplicaId(voter),
            signature: Sig([0; 64]),
        }
    }

    #[test]
    fn quorum_forms_once_with_distinct_voters() {
        let mut p = PendingVotes::default();
        assert_eq!(p.add(&vote(0, 1, 1), 3), VoteOutcome::Added);
        assert_eq!(p.add(&vote(0, 1, 1), 3), VoteOutcome::Duplicate);
        assert_eq!(p.add(&vote(1, 1, 1), 3), VoteOutcome::Added);
        assert!(
            matches!(p.add(&vote(2, 1, 1), 3), VoteOutcome::QuorumFormed(qc) if qc.signatures.len() == 3)
        );
        assert_eq!(p.add(&vote(3, 1, 1), 3), VoteOutcome::Added);
    }

    #[test]
    fn double_vote_is_equivocation() {
        let mut p = PendingVotes::default();
        p.add(&vote(2, 5, 1), 3);
        assert!(matches!(
            p.add(&vote(2, 5, 2), 3),
            VoteOutcome::Equivocation {
                voter: ReplicaId(2),
                ..
            }
        ));
    }

    #[test]
    fn limit_pending_votes_max() {
        let mut p = PendingVotes::default();
        for i in 0..PENDING_VOTES_MAX {
            let v = vote((i % 1000) as u16, 1 + (i / 1000) as u64, 1);
            assert_ne!(p.add(&v, usize::MAX), VoteOutcome::Full);
        }
        assert_eq!(p.len(), PENDING_VOTES_MAX);
        assert_eq!(p.add(&vote(1, 99, 1), usize::MAX), VoteOutcome::Full);
        p.prune_below(Round(2));
        assert_eq!(p.len(), PENDING_VOTES_MAX - 1000);
    }

    fn timeout(author: u16, round: u64, qc_round: u64) -> Timeout {
        let mut qc = QuorumCert::genesis();
        qc.data.round = Round(qc_round);
        Timeout {
            round: Round(round),
            high_qc: qc,
            author: ReplicaId(author),
            signature: Sig([0; 64]),
        }
    }

    #[test]
    fn tc_forms_with_a_quorum_and_keeps_each_qc_round() {
        let mut p = PendingTimeouts::default();
        assert_eq!(
            p.add(&timeout(0, 4, 1), 3),
            TimeoutOutcome::Added { count: 1 }
        );
        assert_eq!(
            p.add(&timeout(1, 4, 3), 3),
            TimeoutOutcome::Added { count: 2 }
        );
        let TimeoutOutcome::TcFormed(tc) = p.add(&timeout(3, 4, 2), 3) else {
            panic!("tc")
        };
        assert_eq!(tc.highest_qc_round(), Round(3));
        assert!(matches!(
            p.add(&timeout(3, 4, 0), 3),
            TimeoutOutcome::Equivocation { .. }
        ));
    }

    #[test]
    fn limit_pending_timeouts_max() {
        let mut p = PendingTimeouts::default();
        for i in 0..PENDING_TIMEOUTS_MAX {
            let t = timeout((i % 1000) as u16, 1 + (i / 1000) as u64, 0);
            assert_ne!(p.add(&t, usize::MAX), TimeoutOutcome::Full);
        }
        assert_eq!(p.add(&timeout(1, 99, 0), usize::MAX), TimeoutOutcome::Full);
    }
}
