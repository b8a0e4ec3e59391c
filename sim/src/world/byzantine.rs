//! Byzantine behaviour: how a Byzantine replica rewrites, withholds, duplicates or corrupts
//! what its (real, honest) consensus core sends. Every message it sends is signed with its own
//! key; it cannot forge anyone else's signature.

use ed25519_dalek::Signer;
use notary_consensus::{
    payload_digest, Block, Digest, Message, Proposal, QuorumCert, ReplicaId, SafetyRules, Sig,
    TimeMs, Vote, VoteData,
};
use rand::Rng;

use super::{Packet, Sim};
use crate::config::Behaviour;

/// QCs a `ForkOnOldQc` replica remembers (the newest rounds).
const QCS_KEPT_MAX: usize = 64;

impl Sim {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    pub(super) fn byzantine(&mut self, i: usize, to: u16, packet: Packet) -> Vec<(u16, Packet)> {
        let b = self.nodes[i].behaviours.clone();
        let mut out = Vec::new();
        if b.contains(&Behaviour::Malformed) && self.chance(0.05) {
            let raw = match &packet {
                Packet::Consensus(m) if self.chance(0.5) => {
                    let mut bytes = postcard::to_allocvec(m).expect("encoding to a Vec");
                    let k = self.rng.gen_range(0..bytes.len());
                    bytes[k] ^= 1 << self.rng.gen_range(0..8);
                    bytes
                }
                _ => {
                    let len = self.rng.gen_range(0..200);
                    (0..len).map(|_| self.rng.gen()).collect()
                }
            };
            out.push((to, Packet::Raw(raw)));
        }
        if b.contains(&Behaviour::Replay) && !self.nodes[i].log.is_empty() && self.chance(0.05) {
            let k = self.rng.gen_range(0..self.nodes[i].log.len());
            let old = self.nodes[i].log[k].1.clone();
            out.push((to, old));
        }
        let packet = match packet {
            Packet::Consensus(m) => Packet::Consensus(match self.byzantine_message(i, to, m) {
                Some(m) => m,
                None => return out,
            }),
            Packet::Share { height, mut share } if b.contains(&Behaviour::BadShares) => {
                if self.chance(0.5) {
                    share = (0..96).map(|_| self.rng.gen()).collect();
                } else if let Some(x) = share.get_mut(self.rng.gen_range(0..96)) {
                    *x ^= 0x10;
                }
                Packet::Share { height, share }
            }
            p => p,
        };
        if b.contains(&Behaviour::DoubleVote) {
            if let Packet::Consensus(Message::Vote(v)) = &packet {
                if self.chance(0.5) {
                    let mut data: VoteData = v.data;
                    data.block_id = Digest(self.rng.gen());
                    let signature = Sig::from(self.nodes[i].key.sign(&data.signing_bytes()));
                    let second = Vote {
                        data,
                        voter: v.voter,
                        signature,
                    };
                    out.push((to, Packet::Consensus(Message::Vote(second))));
                }
            }
        }
        out.push((to, packet));
        out
    }

    fn byzantine_message(&mut self, i: usize, to: u16, m: Message) -> Option<Message> {
        let b = self.nodes[i].behaviours.clone();
        let bad_sig = b.contains(&Behaviour::BadSignatures) && self.chance(0.15);
        match m {
            Message::Vote(mut v) => {
                if b.contains(&Behaviour::WithholdVotes) && self.chance(0.8) {
                    return None;
                }
                if b.contains(&Behaviour::ForkOnOldQc) {
                    self.vote_for_fork(i, &mut v);
                }
                if bad_sig {
                    v.signature.0[3] ^= 0x20;
                }
                Some(Message::Vote(v))
            }
            Message::Timeout(mut t) => {
                if b.contains(&Behaviour::WithholdVotes) && self.chance(0.5) {
                    return None;
                }
                if bad_sig {
                    t.timeout.signature.0[7] ^= 0x01;
                }
                Some(Message::Timeout(t))
            }
            Message::Proposal(mut p) => {
                if b.contains(&Behaviour::ForkOnOldQc) && p.block.tc.is_some() {
                    if let Some(fork) = self.fork_on_old_qc(i, &p) {
                        p = fork;
                    }
                }
                if b.contains(&Behaviour::Equivocate) && to % 2 == 1 {
                    p = self.other_proposal(i, &p.block);
                }
                if bad_sig {
                    p.signature.0[0] ^= 0x80;
                }
                Some(Message::Proposal(p))
            }
            m => Some(m),
        }
    }

    /// The fork a `ForkOnOldQc` leader sends instead of `p` (a TC-justified proposal of its
    /// own), the same for every peer: `p`'s round, TC, timestamp and payload on an older QC
    /// than `p`'s. With even odds (when both exist) the QC is the oldest one the TC still
    /// allows (`Block::verify` accepts it; it abandons the blocks certified since) or one below
    /// the TC's highest QC: the newest there, or one below the lock held by every replica that
    /// voted for a block carrying that QC. Both break vote rule 3, the second rule 2 as well;
    /// `Block::verify` refuses them before the safety rules unless `skip-lock` is planted.
    fn fork_on_old_qc(&mut self, i: usize, p: &Proposal) -> Option<Proposal> {
        let original = p.block.id();
        if let Some((id, fork)) = &self.nodes[i].fork {
            if *id == original {
                return fork.clone();
            }
        }
        let tc = p.block.tc.as_ref()?;
        let (floor, top) = (tc.highest_qc_round(), p.block.qc.round());
        let node = &self.nodes[i];
        let allowed = node.qcs.range(floor..top).next().map(|(_, qc)| qc.clone());
        // Below the floor: the newest QC there, or, with even odds, the newest one below the
        // parent round of the floor's block, i.e. below the lock of every replica that voted
        // for a block carrying the floor's QC (only the planted `skip-lock` bug lets such a
        // fork be voted for).
        let lock = node.qcs.get(&floor).map(|qc| qc.data.parent_round);
        let newest_below = node
            .qcs
            .range(..floor)
            .next_back()
            .map(|(_, qc)| qc.clone());
        let below_lock =
            lock.and_then(|l| node.qcs.range(..l).next_back().map(|(_, qc)| qc.clone()));
        let below = match (newest_below, below_lock) {
            (Some(n), Some(l)) => Some(if self.chance(0.5) { n } else { l }),
            (n, _) => n,
        };
        let qc = match (allowed, below) {
            (Some(a), Some(b)) => {
                if self.chance(0.5) {
                    a
                } else {
                    b
                }
            }
            (Some(q), None) | (None, Some(q)) => q,
            (None, None) => {
                self.nodes[i].fork = Some((original, None));
                return None;
            }
        };
        self.stats.forks += 1;
        if qc.round() < floor {
            self.stats.forks_below_tc += 1;
        }
        let mut block = p.block.clone();
        block.header.height = qc.data.height.next();
        block.header.parent_id = qc.data.block_id;
        block.header.parent_round = qc.data.round;
        block.header.parent_voters = qc.signers().collect();
        block.qc = qc;
        let node = &self.nodes[i];
        let signature =
            SafetyRules::new(ReplicaId(node.id), node.key.clone(), None).sign_proposal(&block);
        let fork = Proposal { block, signature };
        self.nodes[i].fork = Some((original, Some(fork.clone())));
        Some(fork)
    }

    /// A `ForkOnOldQc` leader's own vote goes to its fork (signed with its key), so that the
    /// fork needs one honest vote fewer to be certified.
    fn vote_for_fork(&mut self, i: usize, v: &mut Vote) {
        let node = &self.nodes[i];
        let Some((original, Some(fork))) = &node.fork else {
            return;
        };
        if v.data.block_id != *original {
            return;
        }
        v.data = VoteData::of(&fork.block);
        v.signature = Sig::from(node.key.sign(&v.data.signing_bytes()));
    }

    /// A `ForkOnOldQc` replica ignores, in one round in two (a hash of the round decides, so
    /// that all votes of a round share the fate), the votes it should aggregate into the QC
    /// that would let it lead the next round directly: the round times out, and it leads the
    /// next one holding a TC, which is when it forks (`fork_on_old_qc`).
    pub(super) fn ignores_vote(&self, i: usize, m: &Message) -> bool {
        let node = &self.nodes[i];
        let (Message::Vote(v), Some(r)) = (m, node.replica.as_ref()) else {
            return false;
        };
        let coin = v.data.round.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 63 == 1;
        coin && node.behaviours.contains(&Behaviour::ForkOnOldQc)
            && r.leader(v.data.round.next()).leader == ReplicaId(node.id)
    }

    /// A `ForkOnOldQc` replica remembers the QCs that reach it (the newest
    /// [`QCS_KEPT_MAX`] rounds), to fork on later. QCs in forged messages are kept too: a fork
    /// on one fails `Block::verify` at every peer, which is only a wasted round.
    pub(super) fn note_qcs(&mut self, i: usize, m: &Message) {
        let node = &mut self.nodes[i];
        if !node.behaviours.contains(&Behaviour::ForkOnOldQc) {
            return;
        }
        let mut found: Vec<&QuorumCert> = Vec::new();
        match m {
            Message::Proposal(p) => found.push(&p.block.qc),
            Message::Timeout(t) => found.push(&t.timeout.high_qc),
            Message::SyncInfo(s) => found.push(&s.high_qc),
            Message::BlockResponse(r) => found.extend(r.blocks.iter().map(|b| &b.qc)),
            _ => {}
        }
        for qc in found {
            node.qcs.entry(qc.round()).or_insert_with(|| qc.clone());
        }
        while node.qcs.len() > QCS_KEPT_MAX {
            node.qcs.pop_first();
        }
    }

    /// Counts a proposal reaching honest replica `i` that only vote rule 2 could refuse: its
    /// round is after the replica's last voted round, it passes the TC check of
    /// `Block::verify`, and its QC is below the replica's locked round (`Stats::below_lock`).
    pub(super) fn measure_lock(&mut self, i: usize, block: &Block) {
        let node = &self.nodes[i];
        let Some(r) = node.replica.as_ref().filter(|_| node.honest) else {
            return;
        };
        let d = r.safety_data();
        let qc_round = block.qc.round();
        let justified = block.round() == qc_round.next()
            || block.tc.as_ref().is_some_and(|tc| {
                tc.round.next() == block.round() && qc_round >= tc.highest_qc_round()
            });
        if justified && block.round() > d.last_voted_round && qc_round < d.locked_round {
            self.stats.below_lock += 1;
        }
    }

    /// A second, different, validly signed proposal for the same round.
    fn other_proposal(&mut self, i: usize, block: &Block) -> Proposal {
        let mut alt = block.clone();
        if alt.payload.is_empty() {
            alt.header.timestamp = TimeMs(alt.header.timestamp.0 + 1);
        } else {
            alt.payload.clear();
        }
        alt.header.payload_digest = payload_digest(&alt.payload);
        alt.header.payload_len = alt.payload.len() as u32;
        let node = &self.nodes[i];
        let signature =
            SafetyRules::new(ReplicaId(node.id), node.key.clone(), None).sign_proposal(&alt);
        Proposal {
            block: alt,
            signature,
        }
    }
}
