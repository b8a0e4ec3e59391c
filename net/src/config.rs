//! Transport configuration: plain data with documented defaults, validated once by
//! [`NetConfig::validate`] before anything binds a socket.

use crate::frame::{CLUSTER_ID_BYTES_MAX, HELLO_BYTES_MAX, MESSAGE_HEADER_BYTES};
use crate::identity::{Fingerprint, Identity, IdentityError};
use notary_consensus::ReplicaId;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

/// The ALPN protocol id of replica connections. The protocol version travels in the hello,
/// so that a version mismatch is reported as such rather than as an ALPN failure.
pub const ALPN: &[u8] = b"notary-replica";

/// One cluster member as the shared cluster file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its replica id.
    pub id: ReplicaId,
    /// Where it listens, `host:port` (resolved at each dial, so DNS changes are followed).
    pub addr: String,
    /// SHA-256 of its certificate's SubjectPublicKeyInfo.
    pub fingerprint: Fingerprint,
}

/// Limits on everything a peer can make us hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted or sent (default 8 MiB). Payloads get this minus 3 bytes.
    pub frame_bytes_max: usize,
    /// Messages queued per peer before the oldest is dropped (default 4096).
    pub queue_frames_max: usize,
    /// Bytes queued per peer before the oldest is dropped (default 64 MiB).
    pub queue_bytes_max: usize,
    /// Capacity of the inbound channel to the node (default 8192 messages). When full, readers
    /// wait, and QUIC flow control pushes back on the senders.
    pub inbound_frames_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frame_bytes_max: 8 << 20,
            queue_frames_max: 4096,
            queue_bytes_max: 64 << 20,
            inbound_frames_max: 8192,
        }
    }
}

/// Timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First reconnection delay (default 50 ms); doubles per failure.
    pub backoff_initial: Duration,
    /// Largest reconnection delay (default 5 s).
    pub backoff_max: Duration,
    /// Time allowed for TLS plus the hello exchange (default 5 s).
    pub handshake_timeout: Duration,
    /// QUIC keep-alive interval (default 1 s).
    pub keep_alive: Duration,
    /// A connection silent this long is dead (default 5 s).
    pub idle_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the QUIC transport needs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This replica.
    pub me: ReplicaId,
    /// The UDP address to bind (ignored by `start_on_socket`).
    pub listen: SocketAddr,
    /// The cluster id every member shares.
    pub cluster_id: String,
    /// The wire protocol version; peers must match exactly.
    pub protocol_version: u16,
    /// Our certificate and key.
    pub identity: Identity,
    /// All members, this one included.
    pub members: Vec<Member>,
    /// Limits (see [`Limits`] defaults).
    pub limits: Limits,
    /// Timers (see [`Timing`] defaults).
    pub timing: Timing,
    /// Seed of the back-off jitter RNG (tests fix it; the node may pass any value).
    pub rng_seed: u64,
}

/// A configuration that cannot work.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Our id is not in the member list.
    #[error("replica {me} is not in the member list")]
    NotAMember {
        /// Our id.
        me: ReplicaId,
    },
    /// An id listed twice.
    #[error("replica {id} is listed twice")]
    DuplicateMember {
        /// The id.
        id: ReplicaId,
    },
    /// A fingerprint pinned for two members: the connection could not be bound to one id.
    #[error("fingerprint {fingerprint} is pinned for two members")]
    DuplicateFingerprint {
        /// The fingerprint.
        fingerprint: Fingerprint,
    },
    /// Our certificate does not match our own pin.
    #[error(
        "our certificate's fingerprint {actual} differs from the pin {pinned} of replica {me}"
    )]
    OwnFingerprintMismatch {
        /// Our id.
        me: ReplicaId,
        /// The cluster file's pin.
        pinned: Fingerprint,
        /// Our certificate's.
        actual: Fingerprint,
    },
    /// Cluster id too long for the hello.
    #[error("cluster id of {len} bytes exceeds {max}")]
    ClusterIdTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A frame limit below what a hello or a header needs.
    #[error("frame_bytes_max {value} is below the minimum {min}")]
    FrameLimitTooSmall {
        /// Configured.
        value: usize,
        /// Required.
        min: usize,
    },
    /// A zero-sized queue or channel.
    #[error("{what} must be at least 1")]
    ZeroLimit {
        /// Which limit.
        what: &'static str,
    },
    /// Our identity is unreadable.
    #[error("own identity: {0}")]
    Identity(#[from] IdentityError),
}

impl NetConfig {
    /// Checks the configuration; run once before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = BTreeSet::new();
        let mut pins = BTreeSet::new();
        for m in &self.members {
            if !ids.insert(m.id) {
                return Err(ConfigError::DuplicateMember { id: m.id });
            }
            if !pins.insert(m.fingerprint) {
                return Err(ConfigError::DuplicateFingerprint {
                    fingerprint: m.fingerprint,
                });
            }
        }
        let own = self
            .members
            .iter()
            .find(|m| m.id == self.me)
            .ok_or(ConfigError::NotAMember { me: self.me })?;
        let actual = self.identity.fingerprint()?;
        if actual != own.fingerprint {
            return Err(ConfigError::OwnFingerprintMismatch {
                me: self.me,
                pinned: own.fingerprint,
                actual,
            });
        }
        if self.cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return Err(ConfigError::ClusterIdTooLong {
                len: self.cluster_id.len(),
                max: CLUSTER_ID_BYTES_MAX,
            });
        }
        let min = HELLO_BYTES_MAX.max(MESSAGE_HEADER_BYTES + 1);
        if self.limits.frame_bytes_max < min {
            return Err(ConfigError::FrameLimitTooSmall {
                value: self.limits.frame_bytes_max,
                min,
            });
        }
        for (value, what) in [
            (self.limits.queue_frames_max, "queue_frames_max"),
            (self.limits.inbound_frames_max, "inbound_frames_max"),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { what });
            }
        }
        Ok(())
    }

    /// The largest payload `send` accepts.
    pub fn payload_bytes_max(&self) -> usize {
        self.limits.frame_bytes_max - MESSAGE_HEADER_BYTES
    }
}
