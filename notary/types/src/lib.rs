//! The notary's protocol types, shared by replicas and ledger nodes: requests, outcomes, Merkle
//! leaves and proofs, block headers, cluster signatures, and the offline verification of an
//! answer (the light client).
//!
//! One job: say what the bytes mean. Every signed or hashed structure has one canonical byte
//! form, written in `docs/PROTOCOL.md` and checked against `docs/test-vectors/*.json`.
//!
//! Invariants:
//! - canonical encodings are domain-separated (a length-prefixed ASCII tag such as
//!   `notary/request/v1`), use fixed-width big-endian integers and explicit length prefixes;
//!   decoders are strict (no trailing bytes, limits checked before allocating);
//! - the JSON forms use lowercase hex for bytes and RFC 3339 for times, and round-trip;
//! - this crate never depends on storage, async runtimes or the consensus core, so a ledger node
//!   can verify answers with nothing else.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certificate;
mod hexser;
pub mod ids;
pub mod limits;
pub mod merkle;
pub mod outcome;
pub mod request;
pub mod wire;

pub use blsttc;
pub use certificate::{
    follow_chain, verify_bls, AnswerError, BlockHeader, ClusterSignature, NotarisationAnswer,
};
pub use ed25519_dalek;
pub use ids::{
    ClusterId, HeaderHash, Height, MerkleHash, RequestDigest, RequesterKey, StateRef, TimeWindow,
    Timestamp, TxId, TxIdHash,
};
pub use merkle::{InclusionProof, MerkleTree};
pub use outcome::{ConsumedState, Leaf, Outcome};
pub use request::{MalformedRequest, NotarisationRequest, RequestFields, RequestSignature};
