//! Counters the node exports: per-peer link state and traffic, and rejections by reason.
//!
//! Everything is an atomic updated on the data path; [`StatsSnapshot`] is a cheap copy.

use notary_consensus::ReplicaId;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a connection or frame was refused. A closed set: these are the metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The certificate's key is not pinned for any member.
    UnknownCertificate,
    /// Not pinned, yet it names a member (same common name): an impersonation attempt.
    LookAlikeCertificate,
    /// A member's pinned certificate, used as another replica id.
    WrongReplica,
    /// A pinned certificate outside its validity window.
    ExpiredCertificate,
    /// TLS negotiated no (or another) application protocol.
    WrongAlpn,
    /// The hello named another cluster.
    WrongCluster,
    /// The hello carried another protocol version.
    WrongVersion,
    /// The handshake failed otherwise: timeout, missing or garbled hello, other TLS failure.
    HandshakeFailed,
    /// A frame announced more than the maximum; the connection was closed.
    FrameTooLarge,
    /// A frame could not be decoded; the connection was closed.
    MalformedFrame,
    /// A frame claimed another author than the connection's replica; the frame was dropped.
    WrongAuthor,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 11] = [
        Self::UnknownCertificate,
        Self::LookAlikeCertificate,
        Self::WrongReplica,
        Self::ExpiredCertificate,
        Self::WrongAlpn,
        Self::WrongCluster,
        Self::WrongVersion,
        Self::HandshakeFailed,
        Self::FrameTooLarge,
        Self::MalformedFrame,
        Self::WrongAuthor,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownCertificate => "unknown_certificate",
            Self::LookAlikeCertificate => "look_alike_certificate",
            Self::WrongReplica => "wrong_replica",
            Self::ExpiredCertificate => "expired_certificate",
            Self::WrongAlpn => "wrong_alpn",
            Self::WrongCluster => "wrong_cluster",
            Self::WrongVersion => "wrong_version",
            Self::HandshakeFailed => "handshake_failed",
            Self::FrameTooLarge => "frame_too_large",
            Self::MalformedFrame => "malformed_frame",
            Self::WrongAuthor => "wrong_author",
        }
    }

    /// The QUIC application close code that tells the peer why (0 is a normal close).
    pub fn close_code(self) -> u32 {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as u32 + 1)
    }

    /// The reason behind an application close code, if it is one of ours.
    pub fn from_close_code(code: u64) -> Option<Self> {
        let index = usize::try_from(code.checked_sub(1)?).ok()?;
        Self::ALL.get(index).copied()
    }

    fn index(self) -> usize {
        self.close_code() as usize - 1
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Live counters of one peer.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub connected_out: AtomicBool,
    pub connected_in: AtomicBool,
    pub rtt_us: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub frames_dropped_queue_full: AtomicU64,
    pub connects: AtomicU64,
    pub cert_not_after_unix: AtomicI64,
}

impl PeerCounters {
    pub(crate) fn snapshot(&self, id: ReplicaId, queued_frames: usize) -> PeerStats {
        let rtt_us = self.rtt_us.load(Relaxed);
        let not_after = self.cert_not_after_unix.load(Relaxed);
        PeerStats {
            id,
            connected: self.connected_out.load(Relaxed),
            inbound_connected: self.connected_in.load(Relaxed),
            rtt: (rtt_us > 0).then(|| Duration::from_micros(rtt_us)),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            frames_sent: self.frames_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            frames_dropped_queue_full: self.frames_dropped_queue_full.load(Relaxed),
            queued_frames,
            connects: self.connects.load(Relaxed),
            cert_not_after_unix: (not_after != 0).then_some(not_after),
        }
    }
}

/// Rejection counters, one per [`RejectReason`].
#[derive(Debug, Default)]
pub(crate) struct RejectCounters([AtomicU64; RejectReason::ALL.len()]);

impl RejectCounters {
    pub(crate) fn count(&self, reason: RejectReason) {
        self.0[reason.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .map(|r| (*r, self.0[r.index()].load(Relaxed)))
            .collect()
    }
}

/// One peer, as seen from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub id: ReplicaId,
    /// Our outbound connection to it is up (handshake and hello done).
    pub connected: bool,
    /// Its connection to us is up.
    pub inbound_connected: bool,
    /// Smoothed round-trip time of the outbound connection, once measured.
    pub rtt: Option<Duration>,
    /// Bytes written to it, frame headers included.
    pub bytes_sent: u64,
    /// Bytes read from it, frame headers included.
    pub bytes_received: u64,
    /// Messages written to it.
    pub frames_sent: u64,
    /// Messages delivered from it.
    pub frames_received: u64,
    /// Messages dropped because its outbound queue was full (oldest first).
    pub frames_dropped_queue_full: u64,
    /// Messages waiting in its outbound queue now.
    pub queued_frames: usize,
    /// Successful outbound connections so far (1 + reconnections).
    pub connects: u64,
    /// notAfter of the certificate it last presented, unix seconds.
    pub cert_not_after_unix: Option<i64>,
}

/// A copy of all counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Every other member, by id.
    pub peers: Vec<PeerStats>,
    /// Refusals by reason (every reason listed, zero included).
    pub rejected: Vec<(RejectReason, u64)>,
    /// notAfter of our own certificate, unix seconds (`None` for the in-memory transport).
    pub own_cert_not_after_unix: Option<i64>,
}

impl StatsSnapshot {
    /// The count for one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// One peer's figures.
    pub fn peer(&self, id: ReplicaId) -> Option<&PeerStats> {
        self.peers.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip_and_labels_are_unique() {
        let mut labels = std::collections::BTreeSet::new();
        for r in RejectReason::ALL {
            assert_eq!(
                RejectReason::from_close_code(u64::from(r.close_code())),
                Some(r)
            );
            assert!(labels.insert(r.label()));
        }
        assert_eq!(RejectReason::from_close_code(0), None);
        assert_eq!(RejectReason::from_close_code(99), None);
    }
}
