//! `notary-net`: the replica-to-replica transport. Its one job is to carry opaque messages
//! between the members of one cluster, and only between them.
//!
//! Invariants:
//! - **Only pinned members are heard.** Mutual TLS 1.3 over QUIC; a certificate is accepted
//!   only if the SHA-256 of its SubjectPublicKeyInfo is pinned in the cluster configuration
//!   (see [`identity`] for why the key and not the whole certificate), and it is within its
//!   validity window. After the handshake a connection is bound to exactly one [`ReplicaId`];
//!   a frame claiming another author is dropped and counted.
//! - **Versioned handshake.** ALPN [`ALPN`], then a hello with protocol version and cluster id;
//!   a mismatch is refused with one log line and a typed [`RejectReason`], which the refused
//!   side also learns through the QUIC close code.
//! - **Bounded memory.** Frames are capped ([`Limits::frame_bytes_max`]) before allocation
//!   ([`frame`]); per-peer outbound queues are bounded and drop the oldest message first;
//!   the inbound channel is bounded and pushes back through QUIC flow control.
//! - **Peers are independent.** [`Transport::send`] never waits; a stalled or absent peer
//!   only fills its own queue. Dialers reconnect with exponential back-off and jitter.
//!
//! Two implementations of the [`Transport`] seam: [`QuicTransport`] and the in-memory
//! [`MemNetwork`]/[`MemTransport`]. Key files go through [`keyfile`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod frame;
pub mod identity;
pub mod keyfile;
pub mod local;
mod mem;
mod queue;
mod quic;
pub mod stats;
pub mod tls;
pub mod x509;

pub use config::{Limits, Member, NetConfig, Timing, ALPN};
pub use identity::{generate_member_identity, Fingerprint, Identity, Validity};
pub use mem::{MemNetwork, MemTransport};
pub use notary_consensus::ReplicaId;
pub use quic::{DialError, QuicTransport, StartError};
pub use stats::{PeerStats, RejectReason, StatsSnapshot};

use bytes::Bytes;
use thiserror::Error;

/// Messages from other replicas, with the replica each provably came from.
pub type Inbound = tokio::sync::mpsc::Receiver<(ReplicaId, Bytes)>;

/// A message could not be queued. Delivery itself is best effort: see the crate invariants.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Larger than the frame limit allows.
    #[error("message of {len} bytes exceeds the maximum payload of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// Not a member of the cluster.
    #[error("replica {to} is not a member")]
    UnknownPeer {
        /// The destination.
        to: ReplicaId,
    },
    /// The node handles its own messages itself.
    #[error("a replica does not send to itself")]
    ToSelf,
}

/// The replica transport seam. Implementations: [`QuicTransport`], [`MemTransport`].
///
/// Sending queues the message and returns at once; messages to one peer arrive in order or
/// not at all (a lost connection or a full queue loses some; consensus re-sends).
pub trait Transport: Send + Sync + 'static {
    /// This replica.
    fn local_id(&self) -> ReplicaId;

    /// Every other member.
    fn peers(&self) -> Vec<ReplicaId>;

    /// Queues `msg` for `to`.
    fn send(&self, to: ReplicaId, msg: Bytes) -> Result<(), SendError>;

    /// Queues `msg` for every other member (`Bytes` clones share one buffer).
    fn broadcast(&self, msg: Bytes) -> Result<(), SendError> {
        for peer in self.peers() {
            self.send(peer, msg.clone())?;
        }
        Ok(())
    }

    /// A snapshot of the counters.
    fn stats(&self) -> StatsSnapshot;
}
