//! Safety rules: the only holder of the replica's signing key, and the only place that decides
//! whether signing a vote or a timeout is safe.
//!
//! The record [`SafetyData`] is what must be durable before a signature leaves the replica. The
//! replica core emits it in `Action::Persist` and releases the signed message only when the
//! driver reports `Event::Persisted`; after a crash the replica is rebuilt from the last durable
//! record, so the rules below hold across restarts.
//!
//! **Vote rule** — sign a vote for block `B` (round `r`, QC `qc`, optional TC `tc`) only if:
//! 1. `r > last_voted_round` (one vote per round, and none in a round we timed out of); or
//!    `r == last_voted_round` and `B` is the block of `last_vote`, in which case the same vote is
//!    returned again and nothing changes;
//! 2. `qc.round >= locked_round` (never vote below the 2-chain lock);
//! 3. `r == qc.round + 1`, or `tc` is the TC of round `r - 1` and `qc.round >= tc`'s highest QC
//!    round (a round jump must not skip the highest certified block of the timed-out round).
//!
//! **Timeout rule** — sign a timeout for round `r` carrying `high_qc` only if:
//! 1. `r >= last_voted_round`;
//! 2. `r == high_qc.round + 1`, or `r == high_tc.round + 1`;
//! 3. `high_qc.round >=` the highest QC round this replica has observed (so the TC formed from
//!    our timeout keeps any committed block's certificate alive).
//!
//! Signing either updates `last_voted_round`; voting also raises `locked_round` to the parent
//! round of the certified block and `high_qc` to the block's QC.

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::committee::Sig;
use crate::ids::{ReplicaId, Round};
use crate::limits::RECORD_BLOCKS_MAX;
use crate::types::{
    proposal_signing_bytes, timeout_signing_bytes, Block, QuorumCert, Timeout, TimeoutCert, Vote,
    VoteData,
};

/// Whether the planted `skip-lock` bug is on (simulator builds only; always false otherwise).
/// It skips vote rule 2 and the TC half of rule 3 wherever they are checked: here and in
/// `Block::verify`, which enforces the same TC condition first.
pub(crate) fn skip_locked_round_check() -> bool {
    #[cfg(feature = "sim-bugs")]
    return crate::sim_bugs::active(crate::sim_bugs::SKIP_LOCKED_ROUND_CHECK);
    #[cfg(not(feature = "sim-bugs"))]
    false
}

/// The durable safety record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyData {
    /// The highest round in which we signed a vote or a timeout.
    pub last_voted_round: Round,
    /// The 2-chain lock: we never vote for a block whose QC is below this round.
    pub locked_round: Round,
    /// The highest QC observed when the record was last written.
    pub high_qc: QuorumCert,
    /// The highest TC observed when the record was last written.
    pub high_tc: Option<TimeoutCert>,
    /// Our last vote, to repeat it when asked again for the same block.
    pub last_vote: Option<Vote>,
    /// Our last timeout, to repeat it.
    pub last_timeout: Option<Timeout>,
    /// The uncommitted blocks we last voted on or timed out with: the voted block (or the block
    /// of our high QC) and its uncommitted ancestors, oldest first, at most
    /// `RECORD_BLOCKS_MAX`. Not a safety matter but a liveness one: the block tree lives in
    /// memory, and without this a certified block could be lost by every replica in a rolling
    /// restart, leaving no leader able to extend the highest QC.
    pub blocks: Vec<Block>,
}

impl SafetyData {
    /// The record of a replica that never signed anything.
    pub fn initial() -> SafetyData {
        SafetyData {
            last_voted_round: Round(0),
            locked_round: Round(0),
            high_qc: QuorumCert::genesis(),
            high_tc: None,
            last_vote: None,
            last_timeout: None,
            blocks: Vec::new(),
        }
    }
}

/// Why signing was refused. These are expected protocol situations (a stale or equivocating
/// leader, a round we already left), not failures.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NotSafe {
    /// Vote rule 1 / timeout rule 1.
    #[error("round {round} is not after last voted round {last_voted_round}")]
    AlreadyVoted {
        /// Requested round.
        round: Round,
        /// Our last voted round.
        last_voted_round: Round,
    },
    /// Vote rule 2.
    #[error("QC round {qc_round} is below locked round {locked_round}")]
    BelowLock {
        /// The block's QC round.
        qc_round: Round,
        /// Our lock.
        locked_round: Round,
    },
    /// Vote rule 3 / timeout rule 2.
    #[error("round {round} is not justified by QC round {qc_round} or TC round {tc_round:?}")]
    NotJustified {
        /// Requested round.
        round: Round,
        /// QC round offered.
        qc_round: Round,
        /// TC round offered.
        tc_round: Option<Round>,
    },
    /// Timeout rule 3.
    #[error("timeout would carry QC round {qc_round} below observed {observed}")]
    StaleQc {
        /// QC offered.
        qc_round: Round,
        /// Highest observed.
        observed: Round,
    },
}

/// Whether a signature is new (persist the record first) or a repeat (send at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed<T> {
    /// Newly signed: the record changed and must be durable before `T` leaves.
    New(T),
    /// The same signature as before, already covered by a durable record.
    Repeat(T),
}

/// The safety rules and the signing key.
pub struct SafetyRules {
    me: ReplicaId,
    key: SigningKey,
    data: SafetyData,
}

impl std::fmt::Debug for SafetyRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetyRules")
            .field("me", &self.me)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl SafetyRules {
    /// Rules for replica `me`, resuming from `record` (the last durable one) or from scratch.
    pub fn new(me: ReplicaId, key: SigningKey, record: Option<SafetyData>) -> SafetyRules {
        SafetyRules {
            me,
            key,
            data: record.unwrap_or_else(SafetyData::initial),
        }
    }

    /// The current record (what `Action::Persist` carries).
    pub fn data(&self) -> &SafetyData {
        &self.data
    }

    /// Records the blocks to keep with the next persisted record (see [`SafetyData::blocks`]).
    pub fn remember_blocks(&mut self, mut blocks: Vec<Block>) {
        let excess = blocks.len().saturating_sub(RECORD_BLOCKS_MAX);
        blocks.drain(..excess);
        self.data.blocks = blocks;
    }

    /// Notes a verified QC (kept in memory, persisted with the next signature).
    pub fn observe_qc(&mut self, qc: &QuorumCert) {
        if qc.round() > self.data.high_qc.round() {
            self.data.high_qc = qc.clone();
        }
    }

    /// Notes a verified TC.
    pub fn observe_tc(&mut self, tc: &TimeoutCert) {
        if self
            .data
            .high_tc
            .as_ref()
            .is_none_or(|t| tc.round > t.round)
        {
            self.data.high_tc = Some(tc.clone());
        }
    }

    /// Applies the vote rule (module doc) to a verified block.
    pub fn vote(&mut self, block: &Block) -> Result<Signed<Vote>, NotSafe> {
        let round = block.round();
        let d = &self.data;
        if round == d.last_voted_round {
            if let Some(v) = &d.last_vote {
                if v.data.block_id == block.id() {
                    return Ok(Signed::Repeat(v.clone()));
                }
            }
        }
        if round <= d.last_voted_round {
            return Err(NotSafe::AlreadyVoted {
                round,
                last_voted_round: d.last_voted_round,
            });
        }
        let qc_round = block.qc.round();
        let skip_lock = skip_locked_round_check();
        if qc_round < d.locked_round && !skip_lock {
            return Err(NotSafe::BelowLock {
                qc_round,
                locked_round: d.locked_round,
            });
        }
        let direct = round == qc_round.next();
        let via_tc = block.tc.as_ref().is_some_and(|tc| {
            round == tc.round.next() && (skip_lock || qc_round >= tc.highest_qc_round())
        });
        if !direct && !via_tc {
            return Err(NotSafe::NotJustified {
                round,
                qc_round,
                tc_round: block.tc.as_ref().map(|t| t.round),
            });
        }
        let data = VoteData::of(block);
        let vote = Vote {
            data,
            voter: self.me,
            signature: Sig::from(self.key.sign(&data.signing_bytes())),
        };
        self.observe_qc(&block.qc);
        if let Some(tc) = &block.tc {
            self.observe_tc(tc);
        }
        let d = &mut self.data;
        assert!(round > d.last_voted_round, "safety: one vote per round");
        d.last_voted_round = round;
        d.locked_round = d.locked_round.max(block.qc.data.parent_round);
        d.last_vote = Some(vote.clone());
        Ok(Signed::New(vote))
    }

    /// Applies the timeout rule (module doc), carrying our highest observed QC.
    pub fn timeout(&mut self, round: Round) -> Result<Signed<Timeout>, NotSafe> {
        let d = &self.data;
        if let Some(t) = &d.last_timeout {
            if t.round == round {
                return Ok(Signed::Repeat(t.clone()));
            }
        }
        if round < d.last_voted_round {
            return Err(NotSafe::AlreadyVoted {
                round,
                last_voted_round: d.last_voted_round,
            });
        }
        let qc_round = d.high_qc.round();
        let tc_round = d.high_tc.as_ref().map(|t| t.round);
        if round != qc_round.next() && tc_round.map(Round::next) != Some(round) {
            return Err(NotSafe::NotJustified {
                round,
                qc_round,
                tc_round,
            });
        }
        let timeout = Timeout {
            round,
            high_qc: d.high_qc.clone(),
            author: self.me,
            signature: Sig::from(self.key.sign(&timeout_signing_bytes(round, qc_round))),
        };
        let d = &mut self.data;
        assert!(
            round >= d.last_voted_round,
            "safety: no timeout below a vote"
        );
        d.last_voted_round = round;
        d.last_timeout = Some(timeout.clone());
        Ok(Signed::New(timeout))
    }

    /// Checks timeout rule 3 for an externally chosen QC (used by tests and by callers that
    /// want to know whether a QC would be accepted).
    pub fn check_timeout_qc(&self, qc: &QuorumCert) -> Result<(), NotSafe> {
        if qc.round() < self.data.high_qc.round() {
            return Err(NotSafe::StaleQc {
                qc_round: qc.round(),
                observed: self.data.high_qc.round(),
            });
        }
        Ok(())
    }

    /// Signs a proposal of ours. Proposing is not a safety matter for voters (each votes once
    /// per round), so no record is needed.
    pub fn sign_proposal(&self, block: &Block) -> Sig {
        assert_eq!(
            block.header.author, self.me,
            "safety: we only sign our own proposals"
        );
        Sig::from(self.key.sign(&proposal_signing_bytes(&block.id())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::keys;
    use crate::types::Block;
    use proptest::prelude::*;

    fn rules(record: Option<SafetyData>) -> SafetyRules {
        SafetyRules::new(ReplicaId(3), SigningKey::from_bytes(&[3 + 11; 32]), record)
    }

    /// A chain of blocks with consecutive rounds 1..=len from genesis.
    fn chain(len: u64) -> Vec<Block> {
        let k = keys(4);
        let mut out = vec![Block::genesis()];
        for r in 1..=len {
            let b = k.child(out.last().expect("non-empty"), Round(r), r, vec![r as u8]);
            out.push(b);
        }
        out
    }

    #[test]
    fn vote_rule_1_one_vote_per_round() {
        let k = keys(4);
        let c = chain(1);
        let mut s = rules(None);
        assert!(matches!(s.vote(&c[1]), Ok(Signed::New(_))));
        let other = k.child(&c[0], Round(1), 2, vec![9]);
        assert_eq!(
            s.vote(&other),
            Err(NotSafe::AlreadyVoted {
                round: Round(1),
                last_voted_round: Round(1)
            })
        );
    }

    #[test]
    fn vote_rule_1_same_block_gets_the_same_vote() {
        let c = chain(1);
        let mut s = rules(None);
        let Ok(Signed::New(v)) = s.vote(&c[1]) else {
            panic!("first vote")
        };
        assert_eq!(s.vote(&c[1]), Ok(Signed::Repeat(v)));
    }

    #[test]
    fn vote_rule_2_never_below_lock() {
        let k = keys(4);
        let c = chain(3);
        let mut s = rules(None);
        for b in &c[1..] {
            assert!(matches!(s.vote(b), Ok(Signed::New(_))));
        }
        // Voting for block 3 (QC on 2, whose parent is 1) locked round 1.
        assert_eq!(s.data().locked_round, Round(1));
        // A block at round 5 justified by a TC but extending genesis (QC round 0) is below it.
        let fork = k.child(&c[0], Round(5), 10, vec![]);
        let fork = Block {
            tc: Some(k.tc(Round(4), Round(0))),
            ..fork
        };
        assert_eq!(
            s.vote(&fork),
            Err(NotSafe::BelowLock {
                qc_round: Round(0),
                locked_round: Round(1)
            })
        );
    }

    #[test]
    fn vote_rule_3_round_jump_needs_a_tc() {
        let k = keys(4);
        let c = chain(1);
        let mut jump = k.child(&c[1], Round(3), 5, vec![]);
        jump.tc = None;
        let mut s = rules(None);
        assert!(matches!(s.vote(&jump), Err(NotSafe::NotJustified { .. })));
        jump.tc = Some(k.tc(Round(2), Round(1)));
        assert!(matches!(s.vote(&jump), Ok(Signed::New(_))));
    }

    #[test]
    fn vote_rule_3_tc_must_not_skip_its_highest_qc() {
        let k = keys(4);
        let c = chain(1);
        let mut jump = k.child(&c[1], Round(4), 5, vec![]);
        // The TC's timeouts saw a QC of round 2, higher than the block's QC (round 1).
        jump.tc = Some(k.tc(Round(3), Round(2)));
        let mut s = rules(None);
        assert!(matches!(s.vote(&jump), Err(NotSafe::NotJustified { .. })));
    }

    #[test]
    fn timeout_rule_1_no_timeout_below_last_vote() {
        let c = chain(3);
        let mut s = rules(None);
        for b in &c[1..] {
            assert!(s.vote(b).is_ok());
        }
        assert!(matches!(
            s.timeout(Round(2)),
            Err(NotSafe::AlreadyVoted { .. })
        ));
        // Timing out of the round we voted in is allowed (the round may still fail).
        assert!(matches!(s.timeout(Round(3)), Ok(Signed::New(_))));
    }

    #[test]
    fn timeout_rule_2_round_follows_high_qc_or_tc() {
        let mut s = rules(None);
        assert!(matches!(
            s.timeout(Round(5)),
            Err(NotSafe::NotJustified { .. })
        ));
        assert!(matches!(s.timeout(Round(1)), Ok(Signed::New(_))));
        let k = keys(4);
        s.observe_tc(&k.tc(Round(4), Round(0)));
        assert!(matches!(s.timeout(Round(5)), Ok(Signed::New(_))));
    }

    #[test]
    fn timeout_rule_3_carries_the_highest_observed_qc() {
        let c = chain(2);
        let mut s = rules(None);
        s.observe_qc(&c[2].qc);
        let Ok(Signed::New(t)) = s.timeout(Round(2)) else {
            panic!("timeout")
        };
        assert_eq!(t.high_qc.round(), Round(1));
        assert!(s.check_timeout_qc(&QuorumCert::genesis()).is_err());
    }

    #[test]
    fn no_vote_in_a_round_after_timing_out_of_it() {
        let c = chain(1);
        let mut s = rules(None);
        assert!(s.timeout(Round(1)).is_ok());
        assert!(matches!(s.vote(&c[1]), Err(NotSafe::AlreadyVoted { .. })));
    }

    #[test]
    fn restart_from_record_repeats_vote_and_refuses_conflict() {
        let k = keys(4);
        let c = chain(1);
        let mut s = rules(None);
        let Ok(Signed::New(v)) = s.vote(&c[1]) else {
            panic!("vote")
        };
        let record = s.data().clone();
        let mut restarted = rules(Some(record));
        assert_eq!(restarted.vote(&c[1]), Ok(Signed::Repeat(v)));
        let other = k.child(&c[0], Round(1), 7, vec![1, 2]);
        assert!(restarted.vote(&other).is_err());
    }

    #[test]
    fn limit_record_blocks_max() {
        let c = chain(RECORD_BLOCKS_MAX as u64 + 3);
        let mut s = rules(None);
        s.remember_blocks(c.clone());
        assert_eq!(s.data().blocks.len(), RECORD_BLOCKS_MAX);
        assert_eq!(
            s.data().blocks.last(),
            c.last(),
            "the newest blocks are kept"
        );
    }

    proptest! {
        /// S2 under arbitrary requests and restarts from the last persisted record: never two
        /// different votes for one round, and no vote in a round we timed out of.
        #[test]
        fn never_two_votes_per_round_across_restarts(
            ops in proptest::collection::vec((0u8..3, 1u64..8, 0u8..3), 1..60)
        ) {
            let k = keys(4);
            // Blocks per round: three forks, each a child of genesis via a TC when needed.
            let g = Block::genesis();
            let mut s = rules(None);
            let mut durable = s.data().clone();
            let mut votes: std::collections::BTreeMap<Round, crate::ids::BlockId> = Default::default();
            let mut timed_out: std::collections::BTreeSet<Round> = Default::default();
            for (op, round, fork) in ops {
                let round = Round(round);
                match op {
                    0 => {
                        let b = k.child(&g, round, u64::from(fork) + 1, vec![fork]);
                        match s.vote(&b) {
                            Ok(Signed::New(v)) => {
                                durable = s.data().clone();
                                let first = *votes.entry(round).or_insert(v.data.block_id);
                                prop_assert_eq!(first, v.data.block_id);
                                prop_assert!(!timed_out.contains(&round));
                            }
                            // A repeat re-sends a vote signed before (possibly before a
                            // timeout of the same round): it must be that very vote.
                            Ok(Signed::Repeat(v)) => {
                                prop_assert_eq!(votes.get(&round), Some(&v.data.block_id));
                            }
                            Err(_) => {}
                        }
                    }
                    1 => {
                        s.observe_tc(&k.tc(Round(round.0 - 1).max(Round(1)), Round(0)));
                        if let Ok(Signed::New(t)) | Ok(Signed::Repeat(t)) = s.timeout(round) {
                            durable = s.data().clone();
                            timed_out.insert(t.round);
                        }
                    }
                    _ => s = rules(Some(durable.clone())),
                }
            }
        }
    }
}
