//! Wire messages between replicas, and their verification.
//!
//! The driver decodes bytes into [`Message`] (unverified by construction) and calls
//! [`Message::verify`], a pure function that may run on any thread; only its result,
//! [`Verified`], is accepted by the state machine. Verification checks everything that does not
//! depend on the replica's state: membership, signatures, quorum sizes, distinct signers (the
//! round's leader depends on the committed history: the replica checks it), payload digest and size, chain links, and the count limits.

use serde::{Deserialize, Serialize};

use crate::committee::{Committee, Sig};
use crate::ids::{BlockId, Height, ReplicaId, Round};
use crate::limits::{FETCH_BLOCKS_MAX, SYNC_BLOCKS_MAX};
use crate::types::{
    proposal_signing_bytes, Block, CommittedBlock, QuorumCert, Timeout, TimeoutCert, VerifyError,
    Vote,
};

/// A leader's proposal: a block and the leader's signature over its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposed block; `block.header.author` is the leader.
    pub block: Block,
    /// ed25519 over `proposal_signing_bytes(block.id())`.
    pub signature: Sig,
}

/// A timeout, with the sender's highest TC so that laggards can jump rounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutMsg {
    /// The signed timeout.
    pub timeout: Timeout,
    /// The sender's highest timeout certificate, if any.
    pub high_tc: Option<TimeoutCert>,
}

/// Our highest certificates, sent to a replica whose timeout shows it is behind (it may have
/// missed the proposal that carried them while the cluster went idle).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInfo {
    /// The sender's highest QC.
    pub high_qc: QuorumCert,
    /// The sender's highest TC.
    pub high_tc: Option<TimeoutCert>,
}

/// Ask for a block and up to `count - 1` of its ancestors (uncommitted catch-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRequest {
    /// The missing block.
    pub block_id: BlockId,
    /// Blocks wanted, at most [`FETCH_BLOCKS_MAX`].
    pub count: u32,
}

/// Blocks answering a [`BlockRequest`], oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// Ancestors then the requested block, each linked to the previous one.
    pub blocks: Vec<Block>,
}

/// Ask for committed blocks from `from` upward (long-downtime catch-up). The driver answers it
/// from its store: see [`SyncResponse::from_store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// First height wanted.
    pub from: Height,
    /// Blocks wanted, at most [`SYNC_BLOCKS_MAX`].
    pub count: u32,
}

/// Committed blocks with their proofs, contiguous heights, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The blocks.
    pub blocks: Vec<CommittedBlock>,
}

impl SyncResponse {
    /// Builds the answer to `request` from a store lookup `get(height)`: contiguous heights from
    /// `request.from`, stopping at the first missing one, at most [`SYNC_BLOCKS_MAX`] blocks.
    pub fn from_store(
        request: SyncRequest,
        mut get: impl FnMut(Height) -> Option<CommittedBlock>,
    ) -> SyncResponse {
        let count = (request.count as usize).min(SYNC_BLOCKS_MAX);
        let mut blocks = Vec::with_capacity(count);
        let mut h = request.from;
        while blocks.len() < count {
            match get(h) {
                Some(b) => blocks.push(b),
                None => break,
            }
            h = h.next();
        }
        SyncResponse { blocks }
    }
}

/// Every message replicas exchange. Decoded from the wire it is unverified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A leader's block for a round.
    Proposal(Proposal),
    /// A vote, sent to the next round's leader.
    Vote(Vote),
    /// A timeout, broadcast.
    Timeout(TimeoutMsg),
    /// Highest certificates, for a replica that is behind.
    SyncInfo(SyncInfo),
    /// Fetch uncommitted blocks.
    BlockRequest(BlockRequest),
    /// Uncommitted blocks.
    BlockResponse(BlockResponse),
    /// Fetch committed blocks.
    SyncRequest(SyncRequest),
    /// Committed blocks with proofs.
    SyncResponse(SyncResponse),
}

impl Message {
    /// A short name for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal(_) => "proposal",
            Message::Vote(_) => "vote",
            Message::Timeout(_) => "timeout",
            Message::SyncInfo(_) => "sync_info",
            Message::BlockRequest(_) => "block_request",
            Message::BlockResponse(_) => "block_response",
            Message::SyncRequest(_) => "sync_request",
            Message::SyncResponse(_) => "sync_response",
        }
    }

    /// Verifies everything that does not depend on replica state. `from` is the sender as
    /// authenticated by the transport; it must be a committee member.
    pub fn verify(
        self,
        committee: &Committee,
        from: ReplicaId,
        payload_bytes_max: usize,
    ) -> Result<Verified, VerifyError> {
        if !committee.contains(from) {
            return Err(VerifyError::UnknownReplica(from));
        }
        match &self {
            Message::Proposal(p) => {
                // Whether the author leads this round depends on the committed history
                // (`reputation::leader_for`): the replica checks that; here, that the author is
                // a member and signed.
                let author = p.block.header.author;
                if !committee.contains(author) {
                    return Err(VerifyError::UnknownReplica(author));
                }
                if !committee.verify_sig(
                    author,
                    &proposal_signing_bytes(&p.block.id()),
                    &p.signature,
                ) {
                    return Err(VerifyError::BadSignature(author));
                }
                p.block.verify(committee, payload_bytes_max)?;
            }
            Message::Vote(v) => v.verify(committee)?,
            Message::Timeout(t) => {
                t.timeout.verify(committee)?;
                if let Some(tc) = &t.high_tc {
                    tc.verify(committee)?;
                }
            }
            Message::SyncInfo(i) => {
                i.high_qc.verify(committee)?;
                if let Some(tc) = &i.high_tc {
                    tc.verify(committee)?;
                }
            }
            Message::BlockRequest(_) | Message::SyncRequest(_) => {}
            Message::BlockResponse(r) => {
                if r.blocks.len() > FETCH_BLOCKS_MAX {
                    return Err(VerifyError::TooMany {
                        what: "fetched blocks",
                        len: r.blocks.len(),
                        max: FETCH_BLOCKS_MAX,
                    });
                }
                for b in &r.blocks {
                    b.verify(committee, payload_bytes_max)?;
                }
            }
            Message::SyncResponse(r) => {
                if r.blocks.len() > SYNC_BLOCKS_MAX {
                    return Err(VerifyError::TooMany {
                        what: "synced blocks",
                        len: r.blocks.len(),
                        max: SYNC_BLOCKS_MAX,
                    });
                }
                for (position, pair) in r.blocks.windows(2).enumerate() {
                    let (a, b) = (&pair[0].block.header, &pair[1].block.header);
                    if b.parent_id != a.id() || b.height != a.height.next() {
                        return Err(VerifyError::ChainBroken {
                            position: position + 1,
                        });
                    }
                }
                for c in &r.blocks {
                    if c.block.payload.len() > payload_bytes_max {
                        return Err(VerifyError::PayloadTooLarge {
                            len: c.block.payload.len(),
                            max: payload_bytes_max,
                        });
                    }
                    c.proof.verify(committee, &c.block)?;
                }
            }
        }
        Ok(Verified { from, msg: self })
    }
}

/// A message that passed [`Message::verify`]; only this module can make one.
#[derive(Clone, Debug)]
pub struct Verified {
    from: ReplicaId,
    msg: Message,
}

impl Verified {
    /// The authenticated sender.
    pub fn from(&self) -> ReplicaId {
        self.from
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.msg
    }

    pub(crate) fn into_parts(self) -> (ReplicaId, Message) {
        (self.from, self.msg)
    }
}

/// Why the state machine dropped a verified or unverified message, for counting.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Reject {
    /// It failed verification.
    #[error("verification failed: {0}")]
    Invalid(#[from] VerifyError),
    /// Its round is too far ahead of ours.
    #[error("round {round} is more than {max} ahead of our round {current}")]
    FarFuture {
        /// The message's round.
        round: Round,
        /// Our round.
        current: Round,
        /// The bound.
        max: u64,
    },
    /// Its round is already over for us.
    #[error("round {round} is older than our round {current}")]
    Stale {
        /// The message's round.
        round: Round,
        /// Our round.
        current: Round,
    },
    /// A buffer it needed is full.
    #[error("{what} full at {max}")]
    BufferFull {
        /// Which buffer.
        what: &'static str,
        /// Its bound.
        max: usize,
    },
    /// The block conflicts with our committed chain or is otherwise unusable.
    #[error("block at height {height} does not extend our committed chain at height {committed}")]
    Conflicting {
        /// The block's height.
        height: Height,
        /// Our committed height.
        committed: Height,
    },
    /// The block's timestamp does not exceed its parent's.
    #[error("timestamp {timestamp} not after parent's {parent}")]
    TimestampNotIncreasing {
        /// Block timestamp, ms.
        timestamp: u64,
        /// Parent timestamp, ms.
        parent: u64,
    },
}

impl Reject {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::Invalid(e) => match e {
                VerifyError::UnknownReplica(_) => "unknown_replica",
                VerifyError::BadSignature(_) => "bad_signature",
                VerifyError::QuorumTooSmall { .. } => "quorum_too_small",
                VerifyError::SignerOrder(_) => "signer_order",
                VerifyError::PayloadDigest => "payload_digest",
                VerifyError::PayloadTooLarge { .. } => "payload_too_large",
                VerifyError::QcNotParent { .. } => "qc_not_parent",
                VerifyError::NotIncreasing { .. } => "not_increasing",
                VerifyError::MissingTc { .. } => "missing_tc",
                VerifyError::NotLeader { .. } => "not_leader",
                VerifyError::VotersMismatch { .. } => "voters_mismatch",
                VerifyError::ProofBroken { .. } => "proof_broken",
                VerifyError::TooMany { .. } => "too_many",
                VerifyError::ChainBroken { .. } => "chain_broken",
                VerifyError::BadGenesis => "bad_genesis",
            },
            Reject::FarFuture { .. } => "far_future",
            Reject::Stale { .. } => "stale",
            Reject::BufferFull { .. } => "buffer_full",
            Reject::Conflicting { .. } => "conflicting",
            Reject::TimestampNotIncreasing { .. } => "timestamp_not_increasing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::keys;
    use crate::types::{CommitProof, VoteData};
    use proptest::prelude::*;

    #[test]
    fn proposal_must_be_signed_by_its_author() {
        let k = keys(4);
        let mut b = k.child(&Block::genesis(), Round(1), 1, vec![]);
        b.header.author = ReplicaId(2);
        let p = k.proposal(b.clone());
        assert!(Message::Proposal(p.clone())
            .verify(&k.committee, ReplicaId(2), 10)
            .is_ok());
        b.header.author = ReplicaId(3);
        let forged = Proposal {
            block: b,
            signature: p.signature,
        };
        assert_eq!(
            Message::Proposal(forged)
                .verify(&k.committee, ReplicaId(2), 10)
                .map(|_| ()),
            Err(VerifyError::BadSignature(ReplicaId(3)))
        );
    }

    #[test]
    fn header_must_list_the_qc_signers_as_parent_voters() {
        let k = keys(4);
        let g = Block::genesis();
        let parent = k.child(&g, Round(1), 1, vec![]);
        let mut b = k.child(&parent, Round(2), 2, vec![]);
        assert!(b.verify(&k.committee, 10).is_ok());
        b.header.parent_voters.pop();
        assert!(matches!(
            b.verify(&k.committee, 10),
            Err(VerifyError::VotersMismatch { .. })
        ));
    }

    #[test]
    fn limit_unknown_sender_rejected_before_anything_is_read() {
        let k = keys(4);
        let m = Message::SyncRequest(SyncRequest {
            from: Height(1),
            count: 1,
        });
        assert!(m.clone().verify(&k.committee, ReplicaId(3), 10).is_ok());
        assert_eq!(
            m.verify(&k.committee, ReplicaId(4), 10).map(|_| ()),
            Err(VerifyError::UnknownReplica(ReplicaId(4)))
        );
    }

    #[test]
    fn limit_fetch_blocks_max() {
        let k = keys(4);
        let b = k.child(&Block::genesis(), Round(1), 1, vec![]);
        let ok = Message::BlockResponse(BlockResponse {
            blocks: vec![b.clone(); FETCH_BLOCKS_MAX],
        });
        assert!(ok.verify(&k.committee, ReplicaId(0), 10).is_ok());
        let over = Message::BlockResponse(BlockResponse {
            blocks: vec![b; FETCH_BLOCKS_MAX + 1],
        });
        assert!(matches!(
            over.verify(&k.committee, ReplicaId(0), 10),
            Err(VerifyError::TooMany { .. })
        ));
    }

    fn committed_chain(len: u64) -> (crate::testutil::Keys, Vec<CommittedBlock>) {
        let k = keys(4);
        let mut blocks = vec![Block::genesis()];
        for r in 1..=len + 1 {
            let b = k.child(blocks.last().expect("non-empty"), Round(r), r, vec![]);
            blocks.push(b);
        }
        let out = (1..=len as usize)
            .map(|i| CommittedBlock {
                block: blocks[i].clone(),
                proof: CommitProof {
                    headers: vec![],
                    qc: k.qc(VoteData::of(&blocks[i + 1])),
                },
            })
            .collect();
        (k, out)
    }

    #[test]
    fn limit_sync_blocks_max() {
        let (k, chain) = committed_chain(SYNC_BLOCKS_MAX as u64 + 1);
        let store = |h: Height| chain.get(h.0 as usize - 1).cloned();
        let resp = SyncResponse::from_store(
            SyncRequest {
                from: Height(1),
                count: u32::MAX,
            },
            store,
        );
        assert_eq!(
            resp.blocks.len(),
            SYNC_BLOCKS_MAX,
            "served responses are clamped"
        );
        assert!(Message::SyncResponse(resp)
            .verify(&k.committee, ReplicaId(0), 10)
            .is_ok());
        let over = Message::SyncResponse(SyncResponse {
            blocks: chain.clone(),
        });
        assert!(matches!(
            over.verify(&k.committee, ReplicaId(0), 10),
            Err(VerifyError::TooMany { .. })
        ));
    }

    #[test]
    fn sync_response_must_be_a_chain() {
        let (k, mut chain) = committed_chain(3);
        chain.swap(1, 2);
        assert!(matches!(
            Message::SyncResponse(SyncResponse { blocks: chain }).verify(
                &k.committee,
                ReplicaId(0),
                10
            ),
            Err(VerifyError::ChainBroken { position: 1 })
        ));
    }

    proptest! {
        /// The postcard codec round-trips every message shape, and truncated bytes never decode
        /// into a message that verifies differently (they fail or decode to something else).
        #[test]
        fn codec_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..64), round in 1u64..50) {
            let k = keys(4);
            let b = k.child(&Block::genesis(), Round(round), round, payload);
            for m in [
                Message::Proposal(k.proposal(b.clone())),
                Message::BlockResponse(BlockResponse { blocks: vec![b.clone()] }),
                Message::BlockRequest(BlockRequest { block_id: b.id(), count: 3 }),
            ] {
                let bytes = postcard::to_allocvec(&m).expect("encode");
                let back: Message = postcard::from_bytes(&bytes).expect("decode");
                prop_assert_eq!(&back, &m);
                prop_assert!(back.verify(&k.committee, ReplicaId(0), 1024).is_ok());
                let cut: Result<Message, _> = postcard::from_bytes(&bytes[..bytes.len() - 1]);
                prop_assert!(cut.map(|c| c != m).unwrap_or(true));
            }
        }
    }
}
