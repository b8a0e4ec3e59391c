//! The data the protocol agrees on: blocks, votes, quorum and timeout certificates, and the commit
//! proof. Signing bytes are written by hand (domain tag, fixed-width big-endian fields) so that
//! they never depend on a serde format's version.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::committee::{Committee, Sig};
use crate::ids::{BlockId, Digest, Height, ReplicaId, Round, TimeMs};
use crate::limits::PROOF_HEADERS_MAX;

const DOMAIN_HEADER: &[u8] = b"notary-consensus/header/v1";
const DOMAIN_VOTE: &[u8] = b"notary-consensus/vote/v1";
const DOMAIN_TIMEOUT: &[u8] = b"notary-consensus/timeout/v1";
const DOMAIN_PROPOSAL: &[u8] = b"notary-consensus/proposal/v1";
const DOMAIN_PAYLOAD: &[u8] = b"notary-consensus/payload/v1";

/// The digest of a payload, as recorded in a header.
pub fn payload_digest(payload: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(DOMAIN_PAYLOAD);
    h.update(payload);
    Digest(h.finalize().into())
}

/// Why a certificate, block or proof failed verification. The peer misbehaved (or the data was
/// corrupted); the caller rejects and counts it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A signer is not in the committee.
    #[error("replica {0} is not in the committee")]
    UnknownReplica(ReplicaId),
    /// A signature does not verify.
    #[error("bad signature by {0}")]
    BadSignature(ReplicaId),
    /// Too few distinct signers.
    #[error("certificate has {got} signers, needs {need}")]
    QuorumTooSmall {
        /// Distinct signers present.
        got: usize,
        /// Quorum size.
        need: usize,
    },
    /// Signers must be listed in strictly increasing id order (which also makes them distinct).
    #[error("signer {0} is out of order or repeated")]
    SignerOrder(ReplicaId),
    /// The payload does not hash to the header's payload digest.
    #[error("payload digest mismatch")]
    PayloadDigest,
    /// The payload is larger than allowed.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The block's QC does not certify the block's parent.
    #[error("block's QC certifies {qc_block} at round {qc_round}, header names parent {parent} at round {parent_round}")]
    QcNotParent {
        /// Block the QC certifies.
        qc_block: BlockId,
        /// Round the QC certifies.
        qc_round: Round,
        /// Parent named in the header.
        parent: BlockId,
        /// Parent round named in the header.
        parent_round: Round,
    },
    /// Rounds or heights do not increase along the chain.
    #[error("round {round} / height {height} do not follow parent round {parent_round} / height {parent_height}")]
    NotIncreasing {
        /// The block's round.
        round: Round,
        /// The block's height.
        height: Height,
        /// The parent's round.
        parent_round: Round,
        /// The parent's height.
        parent_height: Height,
    },
    /// A block skips rounds without a timeout certificate for the round before it, or its TC
    /// is for another round, or its QC is older than the TC's highest QC.
    #[error("block at round {round} with QC round {qc_round} lacks a justifying TC")]
    MissingTc {
        /// The block's round.
        round: Round,
        /// Its QC's round.
        qc_round: Round,
    },
    /// The proposal is signed by someone other than the round's leader.
    #[error("proposal for round {round} by {author}, leader is {leader}")]
    NotLeader {
        /// The round.
        round: Round,
        /// Who signed.
        author: ReplicaId,
        /// Who leads that round.
        leader: ReplicaId,
    },
    /// The header's `parent_voters` differ from the signers of the block's QC.
    #[error("header lists {listed} parent voters, its QC has {signers} signers (or others)")]
    VotersMismatch {
        /// Voters listed in the header.
        listed: usize,
        /// Signers of the QC.
        signers: usize,
    },
    /// A commit proof's chain does not link the block to the certificate.
    #[error("commit proof broken at link {link}")]
    ProofBroken {
        /// Index of the failing link (headers, then the QC).
        link: usize,
    },
    /// Too many items in one message or proof.
    #[error("{what}: {len} items exceed {max}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// Count found.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Blocks of a response do not form a contiguous chain.
    #[error("response chain broken at position {position}")]
    ChainBroken {
        /// Position of the offending block.
        position: usize,
    },
    /// The genesis block or certificate was altered.
    #[error("invalid genesis certificate")]
    BadGenesis,
}

/// The signed part of a block; its hash is the block id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The round in which the block was proposed.
    pub round: Round,
    /// Parent's height + 1.
    pub height: Height,
    /// The parent block's id.
    pub parent_id: BlockId,
    /// The parent block's round.
    pub parent_round: Round,
    /// Leader's timestamp: strictly greater than the parent's; the cluster's agreed time.
    pub timestamp: TimeMs,
    /// The leader that proposed it.
    pub author: ReplicaId,
    /// SHA-256 of the payload (domain-separated).
    pub payload_digest: Digest,
    /// Payload length in bytes (so that empty blocks are recognisable from the header).
    pub payload_len: u32,
    /// The signers of `Block::qc` (the parent's certificate), in increasing order. Bound into the
    /// id so that the committed chain records, in a form every replica agrees on, who voted:
    /// leader reputation (`reputation.rs`) reads it.
    pub parent_voters: Vec<ReplicaId>,
}

impl BlockHeader {
    /// The block id: SHA-256 of the canonical header bytes.
    pub fn id(&self) -> BlockId {
        let mut h = Sha256::new();
        h.update(DOMAIN_HEADER);
        h.update(self.round.0.to_be_bytes());
        h.update(self.height.0.to_be_bytes());
        h.update(self.parent_id.0);
        h.update(self.parent_round.0.to_be_bytes());
        h.update(self.timestamp.0.to_be_bytes());
        h.update(self.author.0.to_be_bytes());
        h.update(self.payload_digest.0);
        h.update(self.payload_len.to_be_bytes());
        h.update((self.parent_voters.len() as u64).to_be_bytes());
        for v in &self.parent_voters {
            h.update(v.0.to_be_bytes());
        }
        Digest(h.finalize().into())
    }
}

/// A block: header, the certificate of its parent, an optional TC justifying a round jump, and
/// the application's opaque payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The hashed header.
    pub header: BlockHeader,
    /// QC certifying the parent.
    pub qc: QuorumCert,
    /// Present when `round != qc.round + 1`: the TC of round `round - 1`.
    pub tc: Option<TimeoutCert>,
    /// Opaque application payload.
    pub payload: Vec<u8>,
}

impl Block {
    /// The genesis block, height 0, round 0, known to every replica.
    pub fn genesis() -> Block {
        Block {
            header: genesis_header(),
            qc: QuorumCert::genesis(),
            tc: None,
            payload: Vec::new(),
        }
    }

    /// The block id.
    pub fn id(&self) -> BlockId {
        self.header.id()
    }

    /// The round.
    pub fn round(&self) -> Round {
        self.header.round
    }

    /// The height.
    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Whether this is the genesis block.
    pub fn is_genesis(&self) -> bool {
        self.header == genesis_header()
    }

    /// Stateless checks of a block received from a peer: payload digest and size, the QC
    /// certifies the named parent, rounds and heights increase, a round jump carries its TC, and
    /// both certificates verify.
    pub fn verify(
        &self,
        committee: &Committee,
        payload_bytes_max: usize,
    ) -> Result<(), VerifyError> {
        let h = &self.header;
        if self.payload.len() > payload_bytes_max {
            return Err(VerifyError::PayloadTooLarge {
                len: self.payload.len(),
                max: payload_bytes_max,
            });
        }
        if h.payload_len as usize != self.payload.len()
            || payload_digest(&self.payload) != h.payload_digest
        {
            return Err(VerifyError::PayloadDigest);
        }
        if self.qc.data.block_id != h.parent_id || self.qc.data.round != h.parent_round {
            return Err(VerifyError::QcNotParent {
                qc_block: self.qc.data.block_id,
                qc_round: self.qc.data.round,
                parent: h.parent_id,
                parent_round: h.parent_round,
            });
        }
        if h.round <= h.parent_round || h.height != self.qc.data.height.next() {
            return Err(VerifyError::NotIncreasing {
                round: h.round,
                height: h.height,
                parent_round: h.parent_round,
                parent_height: self.qc.data.height,
            });
        }
        if h.round != h.parent_round.next() {
            // The planted skip-lock bug drops this check too: it guards the same lock as
            // vote rule 2, and with it in place rule 2 can never refuse (sim/README.md).
            let skip_lock = crate::safety::skip_locked_round_check();
            let ok = match &self.tc {
                Some(tc) => {
                    tc.round.next() == h.round
                        && (skip_lock || self.qc.data.round >= tc.highest_qc_round())
                }
                None => false,
            };
            if !ok {
                return Err(VerifyError::MissingTc {
                    round: h.round,
                    qc_round: self.qc.data.round,
                });
            }
        }
        if !h.parent_voters.iter().copied().eq(self.qc.signers()) {
            return Err(VerifyError::VotersMismatch {
                listed: h.parent_voters.len(),
                signers: self.qc.signatures.len(),
            });
        }
        self.qc.verify(committee)?;
        if let Some(tc) = &self.tc {
            tc.verify(committee)?;
        }
        Ok(())
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

fn genesis_header() -> BlockHeader {
    BlockHeader {
        round: Round(0),
        height: Height(0),
        parent_id: Digest([0; 32]),
        parent_round: Round(0),
        timestamp: TimeMs(0),
        author: ReplicaId(0),
        payload_digest: payload_digest(&[]),
        payload_len: 0,
        parent_voters: Vec::new(),
    }
}

/// What a vote is about. Carrying the parent lets a certificate alone show a direct commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteData {
    /// The voted block.
    pub block_id: BlockId,
    /// Its round.
    pub round: Round,
    /// Its height.
    pub height: Height,
    /// Its parent.
    pub parent_id: BlockId,
    /// Its parent's round.
    pub parent_round: Round,
}

impl VoteData {
    /// The vote data describing `block`.
    pub fn of(block: &Block) -> VoteData {
        VoteData {
            block_id: block.id(),
            round: block.header.round,
            height: block.header.height,
            parent_id: block.header.parent_id,
            parent_round: block.header.parent_round,
        }
    }

    /// The bytes a voter signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(DOMAIN_VOTE.len() + 96);
        v.extend_from_slice(DOMAIN_VOTE);
        v.extend_from_slice(&self.block_id.0);
        v.extend_from_slice(&self.round.0.to_be_bytes());
        v.extend_from_slice(&self.height.0.to_be_bytes());
        v.extend_from_slice(&self.parent_id.0);
        v.extend_from_slice(&self.parent_round.0.to_be_bytes());
        v
    }

    /// Whether a certificate on this data commits the parent directly (2-chain rule: the
    /// certified block and its parent have consecutive rounds).
    pub fn commits_parent(&self) -> bool {
        self.round.0 > 0 && self.round == self.parent_round.next()
    }
}

/// One replica's signed vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// What is voted for.
    pub data: VoteData,
    /// Who votes.
    pub voter: ReplicaId,
    /// ed25519 over `data.signing_bytes()`.
    pub signature: Sig,
}

impl Vote {
    /// Checks the voter is a member and the signature verifies.
    pub fn verify(&self, committee: &Committee) -> Result<(), VerifyError> {
        if !committee.contains(self.voter) {
            return Err(VerifyError::UnknownReplica(self.voter));
        }
        if !committee.verify_sig(self.voter, &self.data.signing_bytes(), &self.signature) {
            return Err(VerifyError::BadSignature(self.voter));
        }
        Ok(())
    }
}

/// A quorum certificate: votes of a quorum of distinct replicas on the same data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCert {
    /// The certified data.
    pub data: VoteData,
    /// `(voter, signature)`, strictly increasing by voter.
    pub signatures: Vec<(ReplicaId, Sig)>,
}

impl QuorumCert {
    /// The certificate of genesis, with no signatures: known to all, trusted by construction.
    pub fn genesis() -> QuorumCert {
        let g = genesis_header();
        QuorumCert {
            data: VoteData {
                block_id: g.id(),
                round: Round(0),
                height: Height(0),
                parent_id: g.parent_id,
                parent_round: Round(0),
            },
            signatures: Vec::new(),
        }
    }

    /// The certified round.
    pub fn round(&self) -> Round {
        self.data.round
    }

    /// Whether this is the genesis certificate.
    pub fn is_genesis(&self) -> bool {
        *self == QuorumCert::genesis()
    }

    /// Checks quorum size, distinct ordered signers, membership and every signature.
    pub fn verify(&self, committee: &Committee) -> Result<(), VerifyError> {
        if self.data.round == Round(0) {
            return if self.is_genesis() {
                Ok(())
            } else {
                Err(VerifyError::BadGenesis)
            };
        }
        check_signers(committee, self.signatures.iter().map(|(r, _)| *r))?;
        let msg = self.data.signing_bytes();
        let items: Vec<(ReplicaId, &[u8], &Sig)> = self
            .signatures
            .iter()
            .map(|(r, s)| (*r, msg.as_slice(), s))
            .collect();
        committee
            .verify_all(&items)
            .map_err(VerifyError::BadSignature)
    }

    /// The replicas that signed it (the ones to ask for the certified block).
    pub fn signers(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.signatures.iter().map(|(r, _)| *r)
    }
}

fn check_signers(
    committee: &Committee,
    signers: impl Iterator<Item = ReplicaId>,
) -> Result<(), VerifyError> {
    let mut prev: Option<ReplicaId> = None;
    let mut count = 0usize;
    for r in signers {
        if !committee.contains(r) {
            return Err(VerifyError::UnknownReplica(r));
        }
        if prev.is_some_and(|p| p >= r) {
            return Err(VerifyError::SignerOrder(r));
        }
        prev = Some(r);
        count += 1;
    }
    if count < committee.quorum() || count > committee.size() {
        return Err(VerifyError::QuorumTooSmall {
            got: count,
            need: committee.quorum(),
        });
    }
    Ok(())
}

/// A replica's statement that it gives up on `round`, with its highest QC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    /// The round given up.
    pub round: Round,
    /// The sender's highest QC (lets the next leader extend the highest certified block).
    pub high_qc: QuorumCert,
    /// Who times out.
    pub author: ReplicaId,
    /// ed25519 over `timeout_signing_bytes(round, high_qc.round)`.
    pub signature: Sig,
}

/// The bytes a replica signs to time out of `round` holding a QC of `high_qc_round`.
pub fn timeout_signing_bytes(round: Round, high_qc_round: Round) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN_TIMEOUT.len() + 16);
    v.extend_from_slice(DOMAIN_TIMEOUT);
    v.extend_from_slice(&round.0.to_be_bytes());
    v.extend_from_slice(&high_qc_round.0.to_be_bytes());
    v
}

impl Timeout {
    /// Checks the author, the signature and the carried QC.
    pub fn verify(&self, committee: &Committee) -> Result<(), VerifyError> {
        if !committee.contains(self.author) {
            return Err(VerifyError::UnknownReplica(self.author));
        }
        if self.high_qc.round() >= self.round {
            return Err(VerifyError::NotIncreasing {
                round: self.round,
                height: self.high_qc.data.height,
                parent_round: self.high_qc.round(),
                parent_height: self.high_qc.data.height,
            });
        }
        let msg = timeout_signing_bytes(self.round, self.high_qc.round());
        if !committee.verify_sig(self.author, &msg, &self.signature) {
            return Err(VerifyError::BadSignature(self.author));
        }
        self.high_qc.verify(committee)
    }
}

/// A timeout certificate: a quorum of timeouts for one round, each with its QC round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutCert {
    /// The round that timed out.
    pub round: Round,
    /// `(author, high_qc_round, signature)`, strictly increasing by author.
    pub entries: Vec<(ReplicaId, Round, Sig)>,
}

impl TimeoutCert {
    /// The highest QC round among the timeouts: a block justified by this TC must extend a QC at
    /// least this high (that is what keeps a committed block's certificate alive across a view
    /// change).
    pub fn highest_qc_round(&self) -> Round {
        self.entries
            .iter()
            .map(|(_, r, _)| *r)
            .max()
            .unwrap_or_default()
    }

    /// Checks quorum size, distinct ordered signers and every signature.
    pub fn verify(&self, committee: &Committee) -> Result<(), VerifyError> {
        check_signers(committee, self.entries.iter().map(|(r, _, _)| *r))?;
        let mut msgs = Vec::with_capacity(self.entries.len());
        for (_, qc_round, _) in &self.entries {
            if *qc_round >= self.round {
                return Err(VerifyError::NotIncreasing {
                    round: self.round,
                    height: Height(0),
                    parent_round: *qc_round,
                    parent_height: Height(0),
                });
            }
            msgs.push(timeout_signing_bytes(self.round, *qc_round));
        }
        let items: Vec<(ReplicaId, &[u8], &Sig)> = self
            .entries
            .iter()
            .zip(&msgs)
            .map(|((r, _, s), m)| (*r, m.as_slice(), s))
            .collect();
        committee
            .verify_all(&items)
            .map_err(VerifyError::BadSignature)
    }
}

/// The bytes a leader signs to propose `block_id`.
pub fn proposal_signing_bytes(block_id: &BlockId) -> Vec<u8> {
    let mut v = Vec::with_capacity(DOMAIN_PROPOSAL.len() + 32);
    v.extend_from_slice(DOMAIN_PROPOSAL);
    v.extend_from_slice(&block_id.0);
    v
}

/// Standalone evidence that a block is committed: the headers from the block's child up to a
/// directly committed descendant `D` (empty when the block itself is `D`), and a QC on `D`'s
/// child whose round is `D.round + 1` (the 2-chain commit rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitProof {
    /// Descendant headers, parent first.
    pub headers: Vec<BlockHeader>,
    /// The QC that directly commits the last of them (or the block itself).
    pub qc: QuorumCert,
}

impl CommitProof {
    /// Verifies that `block` is committed under `committee`: a pure function of its inputs, for
    /// the store, for sync, and for anyone certifying results of committed blocks.
    pub fn verify(&self, committee: &Committee, block: &Block) -> Result<(), VerifyError> {
        if self.headers.len() > PROOF_HEADERS_MAX {
            return Err(VerifyError::TooMany {
                what: "proof headers",
                len: self.headers.len(),
                max: PROOF_HEADERS_MAX,
            });
        }
        if block.header.payload_len as usize != block.payload.len()
            || payload_digest(&block.payload) != block.header.payload_digest
        {
            return Err(VerifyError::PayloadDigest);
        }
        let mut prev = block.header.clone();
        let mut prev_id = prev.id();
        for (link, h) in self.headers.iter().enumerate() {
            if h.parent_id != prev_id
                || h.parent_round != prev.round
                || h.height != prev.height.next()
                || h.round <= prev.round
            {
                return Err(VerifyError::ProofBroken { link });
            }
            prev_id = h.id();
            prev = h.clone();
        }
        let d = &self.qc.data;
        if d.parent_id != prev_id
            || d.parent_round != prev.round
            || d.height != prev.height.next()
            || !d.commits_parent()
        {
            return Err(VerifyError::ProofBroken {
                link: self.headers.len(),
            });
        }
        self.qc.verify(committee)
    }
}

/// A committed block with the proof that it is committed: what the application stores and what
/// sync serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its commit proof.
    pub proof: CommitProof,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::keys;

    #[test]
    fn qc_needs_a_quorum_of_distinct_ordered_valid_signers() {
        let k = keys(4);
        let b1 = k.child(&Block::genesis(), Round(1), 1, vec![]);
        let qc = k.qc(VoteData::of(&b1));
        assert!(qc.verify(&k.committee).is_ok());
        let mut short = qc.clone();
        short.signatures.pop();
        assert_eq!(
            short.verify(&k.committee),
            Err(VerifyError::QuorumTooSmall { got: 2, need: 3 })
        );
        let mut dup = qc.clone();
        dup.signatures[1] = dup.signatures[0];
        assert!(matches!(
            dup.verify(&k.committee),
            Err(VerifyError::SignerOrder(_))
        ));
        let mut forged = qc.clone();
        forged.signatures[2].1 = forged.signatures[0].1;
        assert_eq!(
            forged.verify(&k.committee),
            Err(VerifyError::BadSignature(ReplicaId(2)))
        );
        let mut stranger = qc;
        stranger.signatures[2].0 = ReplicaId(7);
        assert_eq!(
            stranger.verify(&k.committee),
            Err(VerifyError::UnknownReplica(ReplicaId(7)))
        );
    }

    #[test]
    fn genesis_qc_cannot_be_altered() {
        let k = keys(4);
        let mut g = QuorumCert::genesis();
        assert!(g.verify(&k.committee).is_ok());
        g.data.block_id = Digest([1; 32]);
        assert_eq!(g.verify(&k.committee), Err(VerifyError::BadGenesis));
    }

    #[test]
    fn block_round_jump_requires_a_tc() {
        let k = keys(4);
        let b1 = k.child(&Block::genesis(), Round(1), 1, vec![]);
        let mut b3 = k.child(&b1, Round(3), 3, vec![]);
        assert!(b3.verify(&k.committee, 10).is_ok());
        b3.tc = None;
        assert!(matches!(
            b3.verify(&k.committee, 10),
            Err(VerifyError::MissingTc { .. })
        ));
    }

    #[test]
    fn limit_payload_bytes_max() {
        let k = keys(4);
        let b = k.child(&Block::genesis(), Round(1), 1, vec![0; 100]);
        assert!(b.verify(&k.committee, 100).is_ok());
        assert_eq!(
            b.verify(&k.committee, 99),
            Err(VerifyError::PayloadTooLarge { len: 100, max: 99 })
        );
    }

    #[test]
    fn block_payload_must_match_its_digest() {
        let k = keys(4);
        let mut b = k.child(&Block::genesis(), Round(1), 1, vec![1, 2, 3]);
        b.payload[0] = 9;
        assert_eq!(b.verify(&k.committee, 10), Err(VerifyError::PayloadDigest));
    }

    fn committed_pair() -> (crate::testutil::Keys, Block, CommitProof) {
        let k = keys(4);
        let b1 = k.child(&Block::genesis(), Round(1), 1, vec![1]);
        let b2 = k.child(&b1, Round(2), 2, vec![]);
        let proof = CommitProof {
            headers: vec![],
            qc: k.qc(VoteData::of(&b2)),
        };
        (k, b1, proof)
    }

    #[test]
    fn commit_proof_verifies_standalone_and_rejects_tampering() {
        let (k, b1, proof) = committed_pair();
        assert!(proof.verify(&k.committee, &b1).is_ok());
        let mut other = b1.clone();
        other.header.timestamp = TimeMs(5);
        assert_eq!(
            proof.verify(&k.committee, &other),
            Err(VerifyError::ProofBroken { link: 0 })
        );
        let mut bad_payload = b1.clone();
        bad_payload.payload = vec![2];
        assert_eq!(
            proof.verify(&k.committee, &bad_payload),
            Err(VerifyError::PayloadDigest)
        );
    }

    #[test]
    fn commit_proof_needs_consecutive_rounds() {
        let k = keys(4);
        let b1 = k.child(&Block::genesis(), Round(1), 1, vec![1]);
        let b3 = k.child(&b1, Round(3), 3, vec![]);
        let proof = CommitProof {
            headers: vec![],
            qc: k.qc(VoteData::of(&b3)),
        };
        assert_eq!(
            proof.verify(&k.committee, &b1),
            Err(VerifyError::ProofBroken { link: 0 })
        );
    }

    #[test]
    fn limit_proof_headers_max() {
        let (k, b1, mut proof) = committed_pair();
        proof.headers = vec![b1.header.clone(); PROOF_HEADERS_MAX + 1];
        assert!(matches!(
            proof.verify(&k.committee, &b1),
            Err(VerifyError::TooMany { len, .. }) if len == PROOF_HEADERS_MAX + 1
        ));
        proof.headers.pop();
        assert_eq!(
            proof.verify(&k.committee, &b1),
            Err(VerifyError::ProofBroken { link: 0 })
        );
    }
}
