//! The consensus core: a sans-IO chained 2-chain HotStuff (Jolteon / DiemBFT-v4 family) that
//! orders opaque payloads among n = 3f + 1 replicas, up to f of them Byzantine.
//!
//! One job: turn events (messages, timer expiries, payload availability, persist confirmations)
//! into actions (persist, send, commit, set timer) through [`Replica::handle`]. No I/O, no clock,
//! no randomness, no threads: `consensus/clippy.toml` makes those lint errors.
//!
//! # How a driver uses it
//! 1. Build [`Committee`], [`Config`], and [`Replica::new`] with the [`Recovery`] read from disk.
//! 2. Decode peer bytes into [`Message`]; call [`Message::verify`] (any thread) to get a
//!    [`Verified`]; pass it as [`Event::Message`] (or pass [`Event::Unverified`]).
//! 3. Execute the returned [`Action`]s in order: persist (fsync, then feed [`Event::Persisted`]),
//!    send, commit (store block + [`CommitProof`]; serve [`Action::ServeSync`] from that store
//!    with [`SyncResponse::from_store`]), timers ([`Event::TimerFired`] at the deadline).
//! 4. Tell the replica [`Event::PayloadReady`] when the application has something to propose.
//!
//! # Promised properties
//! Safety (with at most f Byzantine replicas, under any network behaviour and any crashes of
//! honest replicas that restart from their last durable [`SafetyData`]):
//! - **S1 agreement**: two honest replicas never commit different blocks at the same height;
//!   every committed chain is a prefix of every other. (Asserted in `try_commit`; tested by the
//!   harness in `tests/harness.rs`, every scenario.)
//! - **S2 one vote per round**: an honest replica never signs two different votes for one round,
//!   nor a vote in a round it timed out of, even across restarts (`safety.rs`, property tests;
//!   harness `restart_*`).
//! - **S3 persist before send**: no vote or timeout leaves before the record that allows it is
//!   durable (the persist gate in `replica/handlers.rs`; harness invariant checked on every
//!   action).
//! - **S4 commit output**: `Action::Commit` is emitted exactly once per block, heights contiguous
//!   from 1, each with a proof that [`CommitProof::verify`] accepts (harness checks every proof).
//! - **S5 timestamps**: a committed block's timestamp exceeds its parent's; an honest replica
//!   votes only for timestamps at most `max_clock_drift_ms` ahead of its clock.
//! - **S6 bounded memory**: everything a peer can make us hold is bounded by [`limits`].
//!
//! Liveness (after GST, with n - f honest replicas connected):
//! - **L1 progress**: payload made ready at honest replicas is committed, also with f silent
//!   replicas, a crashed leader, or after a healed partition (harness tests).
//! - **L2 no spurious timeouts**: in a fault-free cluster whose message delays stay below the
//!   round timeout, no round times out, loaded or idle: the timer runs only while there is work,
//!   votes or proposals that arrive early are buffered rather than lost, and the leader keeps
//!   proposing (empty blocks if needed) until every non-empty block is committed and known to be.
//! - **L3 catch-up**: a replica that missed blocks fetches them from the QC's signers; one that
//!   missed many committed blocks syncs them with their proofs, without replaying rounds; one
//!   whose timeouts show it is behind is answered with the sender's highest certificates
//!   ([`SyncInfo`]). After a rolling restart of every replica the blocks needed to extend the
//!   highest QC survive in the safety records ([`SafetyData::blocks`]).
//!
//! Votes are ed25519 (per replica), not BLS shares: on this machine an ed25519 verify costs
//! tens of µs against 1.9 ms for a blsttc share (`benches/core.rs` prints the figures); QCs are
//! checked with deterministic batch verification.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod committee;
mod ids;
pub mod limits;
mod messages;
mod pending;
mod replica;
pub mod reputation;
pub mod safety;
#[cfg(feature = "sim-bugs")]
pub mod sim_bugs;
#[cfg(test)]
mod testutil;
mod tree;
mod types;

pub use committee::{Committee, CommitteeError, Sig, SEEN_SIGNATURES_MAX};
pub use ids::{BlockId, Digest, Height, ReplicaId, Round, TimeMs};
pub use messages::{
    BlockRequest, BlockResponse, Message, Proposal, Reject, SyncInfo, SyncRequest, SyncResponse,
    TimeoutMsg, Verified,
};
pub use pending::{PendingTimeouts, PendingVotes, TimeoutOutcome, VoteOutcome};
pub use replica::{Action, Application, Config, ConfigError, Event, Recovery, Replica, Stats};
pub use safety::{NotSafe, SafetyData, SafetyRules, Signed};
pub use types::{
    payload_digest, timeout_signing_bytes, Block, BlockHeader, CommitProof, CommittedBlock,
    QuorumCert, Timeout, TimeoutCert, VerifyError, Vote, VoteData,
};
