//! Builders for unit tests: a committee with known keys, signed certificates and blocks.

use ed25519_dalek::{Signer, SigningKey};

use crate::committee::{Committee, Sig};
use crate::ids::{ReplicaId, Round, TimeMs};
use crate::messages::Proposal;
use crate::types::{
    payload_digest, proposal_signing_bytes, timeout_signing_bytes, Block, BlockHeader, QuorumCert,
    TimeoutCert, VoteData,
};

pub struct Keys {
    pub keys: Vec<SigningKey>,
    pub committee: Committee,
}

pub fn keys(n: usize) -> Keys {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 11; 32]))
        .collect();
    let committee = Committee::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (ReplicaId(i as u16), k.verifying_key()))
            .collect(),
    )
    .expect("distinct test keys");
    Keys { keys, committee }
}

impl Keys {
    /// A QC on `data` signed by the first quorum of replicas.
    pub fn qc(&self, data: VoteData) -> QuorumCert {
        let msg = data.signing_bytes();
        QuorumCert {
            data,
            signatures: (0..self.committee.quorum())
                .map(|i| (ReplicaId(i as u16), Sig::from(self.keys[i].sign(&msg))))
                .collect(),
        }
    }

    /// A TC for `round` whose entries carry `hqc_round`.
    pub fn tc(&self, round: Round, hqc_round: Round) -> TimeoutCert {
        TimeoutCert {
            round,
            entries: (0..self.committee.quorum())
                .map(|i| {
                    let s = self.keys[i].sign(&timeout_signing_bytes(round, hqc_round));
                    (ReplicaId(i as u16), hqc_round, Sig::from(s))
                })
                .collect(),
        }
    }

    /// A child of `parent` at `round`, led by that round's leader, with a QC on the parent.
    pub fn child(&self, parent: &Block, round: Round, ts_ms: u64, payload: Vec<u8>) -> Block {
        let qc = if parent.is_genesis() {
            QuorumCert::genesis()
        } else {
            self.qc(VoteData::of(parent))
        };
        let tc =
            (round != parent.round().next()).then(|| self.tc(Round(round.0 - 1), parent.round()));
        let parent_voters = qc.signers().collect();
        Block {
            header: BlockHeader {
                round,
                height: parent.height().next(),
                parent_id: parent.id(),
                parent_round: parent.round(),
                timestamp: TimeMs(ts_ms),
                author: self.committee.leader(round),
                payload_digest: payload_digest(&payload),
                payload_len: payload.len() as u32,
                parent_voters,
            },
            qc,
            tc,
            payload,
        }
    }

    pub fn proposal(&self, block: Block) -> Proposal {
        let leader = usize::from(block.header.author.0);
        let signature = Sig::from(self.keys[leader].sign(&proposal_signing_bytes(&block.id())));
        Proposal { block, signature }
    }
}
