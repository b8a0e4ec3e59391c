//! The notary state machine, without I/O: stateless request checks, the one deterministic
//! double-spend function over committed blocks, Merkle certificates with threshold-BLS shares,
//! and the `Store` seam with its in-memory twin.
//!
//! One job: turn committed, ordered, verified requests into certified outcomes, identically on
//! every replica.
//!
//! Invariants:
//! - [`machine::decide_block`] is a pure function of (store state, height, block timestamp,
//!   ordered requests): no clock, no randomness, no iteration over unordered maps in its output;
//! - a block is applied in one atomic, synced write, at heights 1, 2, 3, ... and re-applying an
//!   applied height changes nothing;
//! - a transaction id's first decision is final; the same content gets the same leaf forever;
//! - only [`stateless`] constructs a [`VerifiedRequest`], and a combined cluster signature is
//!   verified before [`shares::ShareCollector`] hands it out.
//!
//! No tokio, no RocksDB, no consensus: `notary-rocksdb` implements [`Store`] on disk.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod committee;
pub mod machine;
pub mod mem;
pub mod shares;
#[cfg(feature = "sim-bugs")]
pub mod sim_bugs;
pub mod stateless;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use committee::{Committee, ReplicaIndex};
pub use machine::{
    answer_at, answer_for_request, apply_committed_block, block_answers, block_answers_of,
    covering_certificate, decide_block, tx_status, uncovered, TxStatus,
};
pub use mem::MemStore;
pub use shares::{sign_header, ShareCollector, ShareOutcome, SignSchedule};
pub use stateless::{
    check, check_attested, check_batch, check_unsigned, check_wire, ClusterPolicy, Rejection,
    VerifiedRequest,
};
pub use store::{BlockRecord, BlockWrite, DecisionRecord, Resolution, Store, StoreError};
