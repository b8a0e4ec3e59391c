//! What replicas send each other, in one place: the peer message enum, the block payload,
//! and their encodings (postcard, inside the transport's length-prefixed frames).
//!
//! * A **batch** is a list of requests in their canonical wire bytes (PROTOCOL.md): the
//!   replica that received them from ledger nodes checked them and sends the batch to every
//!   peer. The f peers after it in member order check them again and send a **batch ack**;
//!   the others trust the batch once f + 1 replicas attest it (`attest.rs`).
//! * A block's consensus **payload** is a list of batches. Every replica checks every request
//!   of a payload before voting for it (a Byzantine leader cannot slip in an unsigned one);
//!   batches it already trusts (checked here, or attested by f + 1 replicas) cost a hash
//!   lookup, not a signature check.
//! * A **share** is a replica's BLS signature share over the header of a block it applied; a
//!   **certificate** is the combined signature, sent to a replica that asks late.
//!
//! Decoding never trusts a length: counts are checked against what the bytes can hold before
//! anything is allocated, and every frame is already bounded by the transport.

use notary_consensus::Message as ConsensusMessage;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The most requests one batch may hold.
pub const BATCH_REQUESTS_MAX: usize = 10_000;
/// The most batches one block payload may hold.
pub const PAYLOAD_BATCHES_MAX: usize = 256;

/// A message between replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Consensus traffic.
    Consensus(Box<ConsensusMessage>),
    /// A batch of client requests, disseminated by the replica that received them.
    Batch(Batch),
    /// A BLS signature share over the header of an applied block.
    Share {
        /// The block height.
        height: u64,
        /// The share (blsttc `SignatureShare`, 96 bytes compressed G2).
        share: Vec<u8>,
    },
    /// The combined certificate of a block, for a replica that is behind.
    Certificate {
        /// The block height.
        height: u64,
        /// The cluster signature (96 bytes).
        signature: Vec<u8>,
    },
    /// The sender checked every request of this batch in full, signatures included.
    BatchAck {
        /// The batch's digest.
        digest: BatchDigest,
    },
}

/// A batch of requests, each in canonical wire bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The requests.
    pub requests: Vec<Vec<u8>>,
}

/// The SHA-256 identity of a batch.
pub type BatchDigest = [u8; 32];

impl Batch {
    /// The batch's digest: SHA-256 over a domain tag and the length-prefixed requests.
    pub fn digest(&self) -> BatchDigest {
        let mut h = Sha256::new();
        h.update(b"notary/batch/v1");
        h.update((self.requests.len() as u64).to_be_bytes());
        for r in &self.requests {
            h.update((r.len() as u64).to_be_bytes());
            h.update(r);
        }
        h.finalize().into()
    }

    /// Encoded size, approximately (for payload budgeting).
    pub fn wire_len(&self) -> usize {
        8 + self.requests.iter().map(|r| r.len() + 4).sum::<usize>()
    }
}

/// The payload of one consensus block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The batches, in order: the block's requests are their concatenation.
    pub batches: Vec<Batch>,
}

/// A message or payload that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what} of {len} bytes: {message}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// Its length.
    pub len: usize,
    /// The decoder's message.
    pub message: String,
}

/// Encodes a peer message.
pub fn encode(message: &PeerMessage) -> Vec<u8> {
    postcard::to_allocvec(message).expect("encoding to a Vec cannot fail")
}

/// Decodes a peer message (bounded by the transport's frame limit).
pub fn decode(bytes: &[u8]) -> Result<PeerMessage, DecodeError> {
    let message: PeerMessage = postcard::from_bytes(bytes).map_err(|e| DecodeError {
        what: "peer message",
        len: bytes.len(),
        message: e.to_string(),
    })?;
    if let PeerMessage::Batch(b) = &message {
        check_batch_shape(b, bytes.len())?;
    }
    Ok(message)
}

fn check_batch_shape(b: &Batch, len: usize) -> Result<(), DecodeError> {
    if b.requests.len() > BATCH_REQUESTS_MAX {
        return Err(DecodeError {
            what: "batch",
            len,
            message: format!(
                "{} requests exceed the limit of {BATCH_REQUESTS_MAX}",
                b.requests.len()
            ),
        });
    }
    Ok(())
}

/// Encodes a block payload.
pub fn encode_payload(payload: &Payload) -> Vec<u8> {
    if payload.batches.is_empty() {
        return Vec::new();
    }
    postcard::to_allocvec(payload).expect("encoding to a Vec cannot fail")
}

/// Decodes a block payload; the empty byte string is the empty payload.
pub fn decode_payload(bytes: &[u8]) -> Result<Payload, DecodeError> {
    if bytes.is_empty() {
        return Ok(Payload::default());
    }
    let payload: Payload = postcard::from_bytes(bytes).map_err(|e| DecodeError {
        what: "payload",
        len: bytes.len(),
        message: e.to_string(),
    })?;
    if payload.batches.len() > PAYLOAD_BATCHES_MAX {
        return Err(DecodeError {
            what: "payload",
            len: bytes.len(),
            message: format!(
                "{} batches exceed the limit of {PAYLOAD_BATCHES_MAX}",
                payload.batches.len()
            ),
        });
    }
    for b in &payload.batches {
        check_batch_shape(b, bytes.len())?;
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_empty_is_empty() {
        assert!(encode_payload(&Payload::default()).is_empty());
        assert_eq!(decode_payload(&[]).unwrap(), Payload::default());
        let p = Payload {
            batches: vec![Batch {
                requests: vec![vec![1, 2, 3], vec![4]],
            }],
        };
        assert_eq!(decode_payload(&encode_payload(&p)).unwrap(), p);
    }

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        for bytes in [
            &[0xffu8; 3][..],
            &[7, 0, 0][..],
            &[1, 255, 255, 255, 255, 15][..],
        ] {
            assert!(decode(bytes).is_err());
            let _ = decode_payload(bytes);
        }
    }

    #[test]
    fn batch_digest_depends_on_every_request() {
        let a = Batch {
            requests: vec![vec![1], vec![2]],
        };
        let b = Batch {
            requests: vec![vec![1, 2]],
        };
        assert_ne!(a.digest(), b.digest());
    }
}
