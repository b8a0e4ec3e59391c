//! The signed block header, the cluster signature, and the answer a client verifies offline.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

use crate::ids::{ClusterId, Height, MerkleHash, Timestamp};
use crate::merkle::{leaf_hash, InclusionProof};
use crate::outcome::{Leaf, Outcome};
use crate::request::RequestFields;
use crate::wire::Writer;

/// The domain tag that starts a header's canonical bytes.
pub const HEADER_TAG: &str = "notary/header/v1";

/// What the cluster signs once per committed block: (cluster id, height, block timestamp, leaf
/// count, Merkle root). The timestamp is the notary's time for every outcome of the block; the
/// leaf count fixes the tree's shape, so an inclusion proof's index is unambiguous.
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
}

impl BlockHeader {
    /// The canonical bytes, the message of the BLS signature (`docs/PROTOCOL.md`, section 4).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + HEADER_TAG.len() + 65 + 52);
        w.tag(HEADER_TAG);
        let id = self.cluster_id.as_str().as_bytes();
        w.u8(u8::try_from(id.len()).expect("a ClusterId has at most 64 bytes"));
        w.fixed(id);
        w.u64(self.height.0);
        w.u64(self.timestamp.0);
        w.u32(self.leaf_count);
        w.fixed(&self.root.0);
        w.into_bytes()
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
    /// The signature does not verify against the cluster key.
    #[error("the cluster signature over block {height} does not verify")]
    SignatureInvalid {
        /// The header's height.
        height: u64,
    },
}

/// What a client receives: the leaf, its inclusion proof, the signed header and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NotarisationAnswer {
    /// The decision, bound to the transaction id and request digest.
    pub leaf: Leaf,
    /// The path from the leaf to the header's root.
    pub proof: InclusionProof,
    /// The signed header.
    pub header: BlockHeader,
    /// The cluster's signature over the header.
    pub signature: ClusterSignature,
}

impl NotarisationAnswer {
    /// Verifies offline that the cluster (one public key) decided `leaf.outcome` for exactly
    /// `request`: same transaction id, same request content, same cluster, the leaf in the signed
    /// root, the signature valid. Returns the proven outcome.
    pub fn verify(
        &self,
        cluster_key: &blsttc::PublicKey,
        request: &RequestFields,
    ) -> Result<&Outcome, AnswerError> {
        self.verify_content(request)?;
        self.header.verify(cluster_key, &self.signature)?;
        Ok(&self.leaf.outcome)
    }

    /// Everything [`NotarisationAnswer::verify`] checks except the cluster signature over the
    /// header: for a client that verified this header's signature already (every answer of a
    /// block shares one header and signature), and must still check the rest per answer.
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
        };
        let signature = ClusterSignature::from(&sk.sign(header.canonical_bytes()));
        let answer = NotarisationAnswer {
            leaf: leaves[4].clone(),
            proof: tree.proof(4).unwrap(),
            header,
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
