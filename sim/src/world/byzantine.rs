//! Byzantine behaviour: how a Byzantine replica rewrites, withholds, duplicates or corrupts
//! what its (real, honest) consensus core sends. Every message it sends is signed with its own
//! key; it cannot forge anyone else's signature.

use ed25519_dalek::Signer;
use notary_consensus::{
    payload_digest, Block, Digest, Message, Proposal, ReplicaId, SafetyRules, Sig, TimeMs, Vote,
    VoteData,
};
use rand::Rng;

use super::{Packet, Sim};
use crate::config::Behaviour;

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
