//! The signed block header, the cluster signature, and the answer a client verifies offline.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::ids::{ClusterId, HeaderHash, Height, MerkleHash, Timestamp};
use crate::limits::CHAIN_HEADERS_MAX;
use crate::merkle::{leaf_hash, InclusionProof};
use crate::outcome::{Leaf, Outcome};
use crate::request::RequestFields;
use crate::wire::{DecodeError, Reader, Writer};

/// The domain tag that starts a header's canonical bytes.
pub const HEADER_TAG: &str = "notary/header/v2";

/// What describes one committed block: (cluster id, height, block timestamp, leaf count, Merkle
/// root, hash of the previous header). The timestamp is the notary's time for every outcome of
/// the block; the leaf count fixes the tree's shape, so an inclusion proof's index is
/// unambiguous; `prev` chains the headers, so the cluster's signature over one header vouches
/// for every header below it. Replicas sign some headers, not every one (`docs/PROTOCOL.md`,
/// section 4): an answer carries the headers from its block up to a signed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The cluster that decided.
    pub cluster_id: ClusterId,
    /// The committed block's height.
    pub height: Height,
    /// The committed block's timestamp (the notary's clock).
    pub timestamp: Timestamp,
    /// How many leaves the block's tree has.
    pub leaf_count: u32,
    /// The Merkle root over the block's leaves.
    pub root: MerkleHash,
    /// [`BlockHeader::hash`] of the header at `height - 1`; all zero at height 1.
    pub prev: HeaderHash,
}

impl BlockHeader {
    /// The canonical bytes, the message of the BLS signature (`docs/PROTOCOL.md`, section 4).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + HEADER_TAG.len() + 65 + 84);
        w.tag(HEADER_TAG);
        w.cluster_id(&self.cluster_id);
        w.u64(self.height.0);
        w.u64(self.timestamp.0);
        w.u32(self.leaf_count);
        w.fixed(&self.root.0);
        w.fixed(&self.prev.0);
        w.into_bytes()
    }

    /// Decodes [`BlockHeader::canonical_bytes`].
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.tag(HEADER_TAG)?;
        let header = Self {
            cluster_id: r.cluster_id()?,
            height: Height(r.u64()?),
            timestamp: Timestamp(r.u64()?),
            leaf_count: r.u32()?,
            root: MerkleHash(r.array()?),
            prev: HeaderHash(r.array()?),
        };
        r.finish()?;
        Ok(header)
    }

    /// SHA-256 of the canonical bytes: what the next header carries as `prev`.
    pub fn hash(&self) -> HeaderHash {
        use sha2::{Digest as _, Sha256};
        HeaderHash(Sha256::digest(self.canonical_bytes()).into())
    }

    /// Checks `signature` against the cluster public key over this header.
    pub fn verify(
        &self,
        cluster_key: &blsttc::PublicKey,
        signature: &ClusterSignature,
    ) -> Result<(), AnswerError> {
        if verify_bls(cluster_key, signature, &self.canonical_bytes())? {
            Ok(())
        } else {
            Err(AnswerError::SignatureInvalid {
                height: self.height.0,
            })
        }
    }
}

/// Follows `chain` up from `first`: each header must be the next height of the same cluster
/// and carry the hash of the one before it. Returns the last header (`first` itself when the
/// chain is empty): the one a cluster signature must be over. At most
/// [`CHAIN_HEADERS_MAX`] headers.
pub fn follow_chain<'a>(
    first: &'a BlockHeader,
    chain: &'a [BlockHeader],
) -> Result<&'a BlockHeader, AnswerError> {
    if chain.len() > CHAIN_HEADERS_MAX {
        return Err(AnswerError::ChainTooLong {
            len: chain.len(),
            max: CHAIN_HEADERS_MAX,
        });
    }
    let mut below = first;
    for next in chain {
        if next.cluster_id != below.cluster_id
            || next.height.0 != below.height.0.wrapping_add(1)
            || next.prev != below.hash()
        {
            return Err(AnswerError::ChainBroken {
                height: next.height.0,
            });
        }
        below = next;
    }
    Ok(below)
}

/// Whether `signature` is `key`'s BLS signature over `message`, in blsttc's ciphersuite (the
/// standard one: keys in G1, signatures in G2, [`blsttc::DST`]); `Err` when the signature
/// does not decode to a point of the prime-order subgroup.
///
/// The same answer as `blsttc::PublicKey::verify`, done as blst's core verify: one hash to
/// G2 and a two-term Miller loop with one final exponentiation, where blsttc computes two
/// full pairings (a final exponentiation each). Every replica verifies each block's combined
/// signature and every ledger node each block's certificate, so this is per-block work on
/// the whole cluster's path (`cargo bench -p notary-core --features testing --bench
/// certificate` times both).
pub fn verify_bls(
    key: &blsttc::PublicKey,
    signature: &ClusterSignature,
    message: &[u8],
) -> Result<bool, AnswerError> {
    use blst::min_pk;
    let sig = min_pk::Signature::sig_validate(&signature.0, false)
        .map_err(|_| AnswerError::SignatureMalformed)?;
    // blsttc decoded (and so subgroup-checked) the key; the identity key is refused below.
    let Ok(key) = min_pk::PublicKey::from_bytes(&key.to_bytes()) else {
        return Ok(false);
    };
    let key = blst::blst_p1_affine::from(key);
    let sig = blst::blst_p2_affine::from(sig);
    let mut pairing = blst::Pairing::new(true, blsttc::DST);
    // The signature was group-checked above; an identity key fails here (PK_IS_INFINITY).
    if pairing.aggregate(&key, false, &sig, false, message, &[]) != blst::BLST_ERROR::BLST_SUCCESS {
        return Ok(false);
    }
    pairing.commit();
    Ok(pairing.finalverify(None))
}

/// A BLS signature (G2, 96 bytes compressed) of the whole cluster over a header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterSignature(#[serde(with = "crate::hexser")] pub [u8; 96]);

impl fmt::Debug for ClusterSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSignature({})", hex::encode(self.0))
    }
}

impl ClusterSignature {
    /// Decodes the point (refusing encodings off the curve or outside the subgroup).
    pub fn to_blsttc(&self) -> Result<blsttc::Signature, AnswerError> {
        blsttc::Signature::from_bytes(self.0).map_err(|_| AnswerError::SignatureMalformed)
    }
}

impl From<&blsttc::Signature> for ClusterSignature {
    fn from(sig: &blsttc::Signature) -> Self {
        Self(sig.to_bytes())
    }
}

/// Why an answer does not prove an outcome for the request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// The leaf is about another transaction.
    #[error("the leaf is for another transaction id")]
    TxIdMismatch,
    /// The leaf binds other request content than the request being checked.
    #[error("the leaf binds another request digest")]
    DigestMismatch,
    /// The header is from another cluster.
    #[error("the header is for cluster {got}, the request for {expected}")]
    ClusterMismatch {
        /// The header's cluster.
        got: String,
        /// The request's cluster.
        expected: String,
    },
    /// The proof does not lead from the leaf to the header's root.
    #[error("inclusion proof for leaf {index} of {leaf_count} does not lead to the root")]
    ProofInvalid {
        /// The proof's index.
        index: u32,
        /// The header's leaf count.
        leaf_count: u32,
    },
    /// The signature bytes are not a valid G2 point.
    #[error("the signature is not a valid compressed G2 point")]
    SignatureMalformed,
    /// The header chain is longer than a client accepts.
    #[error("the header chain has {len} headers; at most {max} are accepted")]
    ChainTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A header of the chain does not follow the one below it (height, cluster or `prev`).
    #[error("the header chain breaks at height {height}")]
    ChainBroken {
        /// The height of the header that does not follow.
        height: u64,
    },
    /// The signature does not verify against the cluster key.
    #[error("the cluster signature over block {height} does not verify")]
    SignatureInvalid {
        /// The header's height.
        height: u64,
    },
}

/// What a client receives: the leaf, its inclusion proof, its block's header, the headers
/// from there up to a signed one, and the cluster's signature over that last header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NotarisationAnswer {
    /// The decision, bound to the transaction id and request digest.
    pub leaf: Leaf,
    /// The path from the leaf to the header's root.
    pub proof: InclusionProof,
    /// The header of the leaf's block.
    pub header: BlockHeader,
    /// The headers of the next heights up to the signed one, in order; empty when `header`
    /// itself is signed ([`follow_chain`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<BlockHeader>,
    /// The cluster's signature over the last header of the chain (or `header`).
    pub signature: ClusterSignature,
}

impl NotarisationAnswer {
    /// Verifies offline that the cluster (one public key) decided `leaf.outcome` for exactly
    /// `request`: same transaction id, same request content, same cluster, the leaf in its
    /// block's root, the chain of headers unbroken, the signature over its last header valid.
    /// Returns the proven outcome.
    pub fn verify(
        &self,
        cluster_key: &blsttc::PublicKey,
        request: &RequestFields,
    ) -> Result<&Outcome, AnswerError> {
        self.verify_content(request)?;
        self.signed_header()?.verify(cluster_key, &self.signature)?;
        Ok(&self.leaf.outcome)
    }

    /// The header the signature is over, once the chain up to it is checked
    /// ([`follow_chain`]).
    pub fn signed_header(&self) -> Result<&BlockHeader, AnswerError> {
        follow_chain(&self.header, &self.chain)
    }

    /// Everything [`NotarisationAnswer::verify`] checks except the cluster signature over the
    /// signed header: for a client that verified that header's signature already (the answers
    /// of a run of blocks share one signed header), and must still check the rest per answer.
    pub fn verify_content(&self, request: &RequestFields) -> Result<&Outcome, AnswerError> {
        if self.leaf.tx_id != request.tx_id {
            return Err(AnswerError::TxIdMismatch);
        }
        if self.leaf.request_digest != request.digest() {
            return Err(AnswerError::DigestMismatch);
        }
        if self.header.cluster_id != request.cluster_id {
            return Err(AnswerError::ClusterMismatch {
                got: self.header.cluster_id.to_string(),
                expected: request.cluster_id.to_string(),
            });
        }
        self.verify_inclusion()?;
        self.signed_header()?;
        Ok(&self.leaf.outcome)
    }

    /// Checks only that the proof leads from the leaf to the header's root.
    pub fn verify_inclusion(&self) -> Result<(), AnswerError> {
        let root = self
            .proof
            .root_for(leaf_hash(&self.leaf), self.header.leaf_count);
        if root == Some(self.header.root) {
            Ok(())
        } else {
            Err(AnswerError::ProofInvalid {
                index: self.proof.index,
                leaf_count: self.header.leaf_count,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RequestDigest, RequesterKey, StateRef, TxId};
    use crate::merkle::MerkleTree;
    use crate::request::NotarisationRequest;

    fn setup() -> (blsttc::SecretKey, RequestFields, NotarisationAnswer) {
        let sk = blsttc::SecretKey::from_bytes([0x11; 32]).expect("below the group order");
        let request = NotarisationRequest::sign(
            RequestFields {
                cluster_id: ClusterId::new("wooden-dollars").unwrap(),
                tx_id: TxId([1; 32]),
                inputs: vec![StateRef {
                    tx_id: TxId([2; 32]),
                    index: 0,
                }],
                references: vec![],
                time_window: None,
                requester: RequesterKey([0; 32]),
            },
            &ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        );
        let mut leaves: Vec<Leaf> = (0..6u8)
            .map(|i| Leaf {
                tx_id: TxId([100 + i; 32]),
                request_digest: RequestDigest([i; 32]),
                outcome: Outcome::Committed,
            })
            .collect();
        leaves[4] = Leaf {
            tx_id: request.fields.tx_id,
            request_digest: request.fields.digest(),
            outcome: Outcome::Committed,
        };
        let tree = MerkleTree::from_leaves(&leaves);
        let header = BlockHeader {
            cluster_id: request.fields.cluster_id.clone(),
            height: Height(9),
            timestamp: Timestamp(77),
            leaf_count: 6,
            root: tree.root(),
            prev: HeaderHash([8; 32]),
        };
        let signature = ClusterSignature::from(&sk.sign(header.canonical_bytes()));
        let answer = NotarisationAnswer {
            leaf: leaves[4].clone(),
            proof: tree.proof(4).unwrap(),
            header,
            chain: Vec::new(),
            signature,
        };
        (sk, request.fields, answer)
    }

    #[test]
    fn a_genuine_answer_verifies() {
        let (sk, request, answer) = setup();
        assert_eq!(
            answer.verify(&sk.public_key(), &request),
            Ok(&Outcome::Committed)
        );
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            serde_json::from_str::<NotarisationAnswer>(&json).unwrap(),
            answer
        );
    }

    #[test]
    fn tampering_with_any_part_fails_verification() {
        let (sk, request, answer) = setup();
        let pk = sk.public_key();
        let mut a = answer.clone();
        a.leaf.outcome = Outcome::TimeWindowInvalid {
            notary_time: Timestamp(1),
        };
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::ProofInvalid { .. })
            ),
            "leaf outcome"
        );
        let mut a = answer.clone();
        a.leaf.tx_id = TxId([9; 32]);
        assert_eq!(
            a.verify(&pk, &request),
            Err(AnswerError::TxIdMismatch),
            "leaf tx id"
        );
        let mut other = request.clone();
        other.inputs[0].index = 1;
        assert_eq!(
            answer.verify(&pk, &other),
            Err(AnswerError::DigestMismatch),
            "request content"
        );
        let mut a = answer.clone();
        a.proof.siblings[0].0[0] ^= 1;
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::ProofInvalid { .. })
            ),
            "proof sibling"
        );
        let mut a = answer.clone();
        a.proof.index = 5;
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::ProofInvalid { .. })
            ),
            "proof index"
        );
        let mut a = answer.clone();
        a.header.height = Height(10);
        assert_eq!(
            a.verify(&pk, &request),
            Err(AnswerError::SignatureInvalid { height: 10 }),
            "header height"
        );
        let mut a = answer.clone();
        a.header.timestamp = Timestamp(78);
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::SignatureInvalid { .. })
            ),
            "header time"
        );
        let mut a = answer.clone();
        a.header.cluster_id = ClusterId::new("other").unwrap();
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::ClusterMismatch { .. })
            ),
            "header cluster"
        );
        let mut a = answer.clone();
        a.header.leaf_count = 7;
        assert!(a.verify(&pk, &request).is_err(), "header leaf count");
        let mut a = answer.clone();
        a.signature.0[10] ^= 1;
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::SignatureMalformed | AnswerError::SignatureInvalid { .. })
            ),
            "signature bytes"
        );
        let mut a = answer.clone();
        a.signature = ClusterSignature::from(&sk.sign(b"something else"));
        assert!(
            matches!(
                a.verify(&pk, &request),
                Err(AnswerError::SignatureInvalid { .. })
            ),
            "signature over another message"
        );
        let other_key = blsttc::SecretKey::from_bytes([0x12; 32])
            .unwrap()
            .public_key();
        assert!(
            matches!(
                answer.verify(&other_key, &request),
                Err(AnswerError::SignatureInvalid { .. })
            ),
            "cluster key"
        );
    }

    /// The headers after `first`, each naming the one before it.
    fn chain_after(first: &BlockHeader, len: usize) -> Vec<BlockHeader> {
        let mut chain: Vec<BlockHeader> = Vec::new();
        for i in 0..len {
            let below = chain.last().unwrap_or(first);
            chain.push(BlockHeader {
                cluster_id: below.cluster_id.clone(),
                height: Height(below.height.0 + 1),
                timestamp: Timestamp(below.timestamp.0 + 1),
                leaf_count: 1,
                root: MerkleHash([i as u8; 32]),
                prev: below.hash(),
            });
        }
        chain
    }

    #[test]
    fn an_answer_signed_through_a_later_header_verifies_and_every_link_counts() {
        let (sk, request, mut answer) = setup();
        let pk = sk.public_key();
        answer.chain = chain_after(&answer.header, 3);
        answer.signature = ClusterSignature::from(&sk.sign(answer.chain[2].canonical_bytes()));
        assert_eq!(answer.verify(&pk, &request), Ok(&Outcome::Committed));
        assert_eq!(answer.signed_header().unwrap().height, Height(12));
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            serde_json::from_str::<NotarisationAnswer>(&json).unwrap(),
            answer
        );

        // The block's own header changed: the first link no longer holds.
        let mut a = answer.clone();
        a.header.timestamp = Timestamp(78);
        assert_eq!(
            a.verify(&pk, &request),
            Err(AnswerError::ChainBroken { height: 10 })
        );
        // A header in the middle changed: the link above it breaks.
        let mut a = answer.clone();
        a.chain[1].root = MerkleHash([9; 32]);
        assert_eq!(
            a.verify(&pk, &request),
            Err(AnswerError::ChainBroken { height: 12 })
        );
        // A header skipped, a height repeated, another cluster: each breaks the chain.
        let mut a = answer.clone();
        a.chain.remove(0);
        assert!(matches!(
            a.verify(&pk, &request),
            Err(AnswerError::ChainBroken { .. })
        ));
        let mut a = answer.clone();
        a.chain[0].height = Height(9);
        assert!(matches!(
            a.verify(&pk, &request),
            Err(AnswerError::ChainBroken { .. })
        ));
        let mut a = answer.clone();
        a.chain[0].cluster_id = ClusterId::new("other").unwrap();
        assert!(matches!(
            a.verify(&pk, &request),
            Err(AnswerError::ChainBroken { .. })
        ));
        // The signature must be over the last header, not the leaf's own.
        let mut a = answer.clone();
        a.signature = ClusterSignature::from(&sk.sign(a.header.canonical_bytes()));
        assert_eq!(
            a.verify(&pk, &request),
            Err(AnswerError::SignatureInvalid { height: 12 })
        );
        // A chain cut short is signed over the wrong header.
        let mut a = answer;
        a.chain.pop();
        assert!(matches!(
            a.verify(&pk, &request),
            Err(AnswerError::SignatureInvalid { height: 11 })
        ));
    }

    #[test]
    fn a_header_decodes_from_its_canonical_bytes_and_nothing_else() {
        let (_, _, answer) = setup();
        let bytes = answer.header.canonical_bytes();
        assert_eq!(
            BlockHeader::from_canonical_bytes(&bytes).unwrap(),
            answer.header
        );
        assert!(BlockHeader::from_canonical_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(BlockHeader::from_canonical_bytes(&longer).is_err());
        assert!(BlockHeader::from_canonical_bytes(&[]).is_err());
    }

    #[test]
    fn a_chain_longer_than_the_limit_is_refused_before_any_hashing() {
        let (sk, request, mut answer) = setup();
        answer.chain = chain_after(&answer.header, CHAIN_HEADERS_MAX + 1);
        answer.signature =
            ClusterSignature::from(&sk.sign(answer.chain.last().unwrap().canonical_bytes()));
        assert_eq!(
            answer.verify(&sk.public_key(), &request),
            Err(AnswerError::ChainTooLong {
                len: CHAIN_HEADERS_MAX + 1,
                max: CHAIN_HEADERS_MAX
            })
        );
        answer.chain.truncate(CHAIN_HEADERS_MAX);
        answer.signature =
            ClusterSignature::from(&sk.sign(answer.chain.last().unwrap().canonical_bytes()));
        assert_eq!(
            answer.verify(&sk.public_key(), &request),
            Ok(&Outcome::Committed)
        );
    }

    /// `verify_bls` gives blsttc's answer, and refuses what blsttc cannot decode.
    #[test]
    fn verify_bls_agrees_with_blsttc() {
        let sk = blsttc::SecretKey::from_bytes([0x21; 32]).unwrap();
        let pk = sk.public_key();
        let other = blsttc::SecretKey::from_bytes([0x22; 32]).unwrap();
        let msg = b"notary/header/v1 wooden dollars";
        let agree = |key: &blsttc::PublicKey, sig: &ClusterSignature, m: &[u8]| {
            let ours = verify_bls(key, sig, m);
            let theirs = sig.to_blsttc().map(|s| key.verify(&s, m));
            assert_eq!(ours, theirs, "key {key:?}, signature {sig:?}");
            ours
        };
        let good = ClusterSignature::from(&sk.sign(msg));
        assert_eq!(agree(&pk, &good, msg), Ok(true));
        assert_eq!(agree(&pk, &good, b"another header"), Ok(false));
        assert_eq!(agree(&other.public_key(), &good, msg), Ok(false));
        let by_other = ClusterSignature::from(&other.sign(msg));
        assert_eq!(agree(&pk, &by_other, msg), Ok(false));
        // The identity signature (compressed infinity) decodes but proves nothing.
        let mut identity = [0u8; 96];
        identity[0] = 0xc0;
        assert_eq!(agree(&pk, &ClusterSignature(identity), msg), Ok(false));
        // Bytes off the curve, or a flipped bit, never verify.
        let mut flipped = good;
        flipped.0[10] ^= 1;
        assert!(!agree(&pk, &flipped, msg).unwrap_or(false));
        assert_eq!(
            agree(&pk, &ClusterSignature([0xff; 96]), msg),
            Err(AnswerError::SignatureMalformed)
        );
    }
}
