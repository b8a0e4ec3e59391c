//! The in-memory transport: the same [`Transport`] seam with no sockets, for node tests.
//!
//! A [`MemNetwork`] owns one bounded inbound channel per replica and hands out connected
//! endpoints. Links can be cut one way or both ([`MemNetwork::set_link`],
//! [`MemNetwork::partition`], [`MemNetwork::isolate`]) and can lose a seeded random fraction
//! of messages. Delivery is immediate and never waits: a message to a full inbound channel,
//! over a cut link, or chosen for loss is dropped and counted (the real transport's queue
//! drops the oldest instead; both are losses consensus recovers from).

use crate::stats::{PeerCounters, RejectCounters, StatsSnapshot};
use crate::{Inbound, SendError, Transport};
use bytes::Bytes;
use notary_consensus::ReplicaId;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Debug)]
struct Faults {
    cut: BTreeSet<(ReplicaId, ReplicaId)>,
    loss_probability: f64,
    rng: rand::rngs::StdRng,
}

#[derive(Debug)]
struct Net {
    senders: BTreeMap<ReplicaId, mpsc::Sender<(ReplicaId, Bytes)>>,
    receivers: Mutex<BTreeMap<ReplicaId, Inbound>>,
    faults: Mutex<Faults>,
    /// Counters of the directed link (from, to), as seen by `from`.
    links: BTreeMap<(ReplicaId, ReplicaId), PeerCounters>,
    payload_bytes_max: usize,
}

/// A set of replicas connected in memory.
#[derive(Debug, Clone)]
pub struct MemNetwork {
    net: Arc<Net>,
}

impl MemNetwork {
    /// A network of `ids`, each with an inbound channel of `inbound_frames_max` messages and
    /// a payload limit of `payload_bytes_max` bytes (as the QUIC transport's).
    pub fn new(ids: &[ReplicaId], inbound_frames_max: usize, payload_bytes_max: usize) -> Self {
        let mut senders = BTreeMap::new();
        let mut receivers = BTreeMap::new();
        let mut links = BTreeMap::new();
        for &id in ids {
            let (tx, rx) = mpsc::channel(inbound_frames_max.max(1));
            senders.insert(id, tx);
            receivers.insert(id, rx);
            for &other in ids {
                if other != id {
                    links.insert((id, other), PeerCounters::default());
                }
            }
        }
        Self {
            net: Arc::new(Net {
                senders,
                receivers: Mutex::new(receivers),
                faults: Mutex::new(Faults {
                    cut: BTreeSet::new(),
                    loss_probability: 0.0,
                    rng: rand::rngs::StdRng::seed_from_u64(0),
                }),
                links,
                payload_bytes_max,
            }),
        }
    }

    /// The endpoint of `id` and its inbound stream; `None` if `id` is not a member or its
    /// endpoint was already taken.
    pub fn endpoint(&self, id: ReplicaId) -> Option<(MemTransport, Inbound)> {
        let rx = self.faults_receivers().remove(&id)?;
        Some((
            MemTransport {
                me: id,
                net: self.net.clone(),
                rejects: RejectCounters::default(),
            },
            rx,
        ))
    }

    fn faults_receivers(&self) -> std::sync::MutexGuard<'_, BTreeMap<ReplicaId, Inbound>> {
        self.net
            .receivers
            .lock()
            .expect("receiver map lock is never poisoned")
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.net
            .faults
            .lock()
            .expect("fault lock is never poisoned")
    }

    /// Cuts (`up = false`) or restores the one-way link `from → to`.
    pub fn set_link(&self, from: ReplicaId, to: ReplicaId, up: bool) {
        let mut f = self.faults();
        if up {
            f.cut.remove(&(from, to));
        } else {
            f.cut.insert((from, to));
        }
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn partition(&self, a: &[ReplicaId], b: &[ReplicaId]) {
        for &x in a {
            for &y in b {
                self.set_link(x, y, false);
                self.set_link(y, x, false);
            }
        }
    }

    /// Cuts `id` off from everyone, both ways.
    pub fn isolate(&self, id: ReplicaId) {
        let others: Vec<_> = self
            .net
            .senders
            .keys()
            .copied()
            .filter(|o| *o != id)
            .collect();
        self.partition(&[id], &others);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.faults().cut.clear();
    }

    /// Loses each message with probability `p` (clamped to [0, 1]), drawn from a seeded RNG.
    pub fn set_loss(&self, p: f64, seed: u64) {
        let mut f = self.faults();
        f.loss_probability = p.clamp(0.0, 1.0);
        f.rng = rand::rngs::StdRng::seed_from_u64(seed);
    }
}

/// One replica's endpoint on a [`MemNetwork`].
#[derive(Debug)]
pub struct MemTransport {
    me: ReplicaId,
    net: Arc<Net>,
    rejects: RejectCounters,
}

impl Transport for MemTransport {
    fn local_id(&self) -> ReplicaId {
        self.me
    }

    fn peers(&self) -> Vec<ReplicaId> {
        self.net
            .senders
            .keys()
            .copied()
            .filter(|id| *id != self.me)
            .collect()
    }

    fn send(&self, to: ReplicaId, msg: Bytes) -> Result<(), SendError> {
        let max = self.net.payload_bytes_max;
        if msg.len() > max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max,
            });
        }
        if to == self.me {
            return Err(SendError::ToSelf);
        }
        let (Some(tx), Some(link)) = (
            self.net.senders.get(&to),
            self.net.links.get(&(self.me, to)),
        ) else {
            return Err(SendError::UnknownPeer { to });
        };
        let deliver = {
            let mut f = self
                .net
                .faults
                .lock()
                .expect("fault lock is never poisoned");
            let p = f.loss_probability;
            let lost = p > 0.0 && f.rng.gen_bool(p);
            !lost && !f.cut.contains(&(self.me, to))
        };
        let len = msg.len() as u64;
        if deliver && tx.try_send((self.me, msg)).is_ok() {
            link.frames_sent.fetch_add(1, Relaxed);
            link.bytes_sent.fetch_add(len, Relaxed);
            let back = &self.net.links[&(to, self.me)];
            back.frames_received.fetch_add(1, Relaxed);
            back.bytes_received.fetch_add(len, Relaxed);
        } else {
            link.frames_dropped_queue_full.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    fn stats(&self) -> StatsSnapshot {
        let cut = self
            .net
            .faults
            .lock()
            .expect("fault lock is never poisoned")
            .cut
            .clone();
        let peers = self
            .peers()
            .into_iter()
            .map(|p| {
                let counters = &self.net.links[&(self.me, p)];
                counters
                    .connected_out
                    .store(!cut.contains(&(self.me, p)), Relaxed);
                counters
                    .connected_in
                    .store(!cut.contains(&(p, self.me)), Relaxed);
                counters.snapshot(p, 0)
            })
            .collect();
        StatsSnapshot {
            peers,
            rejected: self.rejects.snapshot(),
            own_cert_not_after_unix: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u16) -> Vec<ReplicaId> {
        (0..n).map(ReplicaId).collect()
    }

    #[tokio::test]
    async fn broadcast_reaches_every_other_replica_once() {
        let net = MemNetwork::new(&ids(4), 16, 1024);
        let mut eps: Vec<_> = ids(4)
            .into_iter()
            .map(|i| net.endpoint(i).expect("ep"))
            .collect();
        eps[0]
            .0
            .broadcast(Bytes::from_static(b"hi"))
            .expect("broadcast");
        for (_, rx) in eps.iter_mut().skip(1) {
            assert_eq!(
                rx.recv().await,
                Some((ReplicaId(0), Bytes::from_static(b"hi")))
            );
            assert!(rx.try_recv().is_err());
        }
        assert!(eps[0].1.try_recv().is_err(), "no message to self");
        assert_eq!(
            eps[0]
                .0
                .stats()
                .peer(ReplicaId(1))
                .expect("peer")
                .frames_sent,
            1
        );
        assert!(
            net.endpoint(ReplicaId(0)).is_none(),
            "an endpoint is handed out once"
        );
    }

    #[tokio::test]
    async fn partition_drops_both_ways_and_heal_restores() {
        let net = MemNetwork::new(&ids(3), 16, 1024);
        let (a, mut ra) = net.endpoint(ReplicaId(0)).expect("ep");
        let (b, mut rb) = net.endpoint(ReplicaId(1)).expect("ep");
        let (_c, mut rc) = net.endpoint(ReplicaId(2)).expect("ep");
        net.partition(&[ReplicaId(0)], &[ReplicaId(1)]);
        a.send(ReplicaId(1), Bytes::from_static(b"x"))
            .expect("send");
        b.send(ReplicaId(0), Bytes::from_static(b"y"))
            .expect("send");
        a.send(ReplicaId(2), Bytes::from_static(b"z"))
            .expect("send");
        assert!(rb.try_recv().is_err() && ra.try_recv().is_err());
        assert_eq!(
            rc.try_recv().expect("c reachable").1,
            Bytes::from_static(b"z")
        );
        assert!(!a.stats().peer(ReplicaId(1)).expect("peer").connected);
        net.heal();
        a.send(ReplicaId(1), Bytes::from_static(b"x"))
            .expect("send");
        assert_eq!(rb.try_recv().expect("healed").1, Bytes::from_static(b"x"));
    }

    #[tokio::test]
    async fn full_inbound_drops_and_counts_without_blocking() {
        let net = MemNetwork::new(&ids(2), 2, 1024);
        let (a, _ra) = net.endpoint(ReplicaId(0)).expect("ep");
        let (_b, mut rb) = net.endpoint(ReplicaId(1)).expect("ep");
        for _ in 0..5 {
            a.send(ReplicaId(1), Bytes::from_static(b"m"))
                .expect("never blocks");
        }
        let s = a.stats();
        assert_eq!(
            s.peer(ReplicaId(1))
                .expect("peer")
                .frames_dropped_queue_full,
            3
        );
        assert!(rb.try_recv().is_ok() && rb.try_recv().is_ok() && rb.try_recv().is_err());
    }

    #[tokio::test]
    async fn send_errors_are_typed() {
        let net = MemNetwork::new(&ids(2), 2, 4);
        let (a, _ra) = net.endpoint(ReplicaId(0)).expect("ep");
        assert_eq!(a.send(ReplicaId(0), Bytes::new()), Err(SendError::ToSelf));
        assert_eq!(
            a.send(ReplicaId(9), Bytes::new()),
            Err(SendError::UnknownPeer { to: ReplicaId(9) })
        );
        assert_eq!(
            a.send(ReplicaId(1), Bytes::from_static(b"12345")),
            Err(SendError::TooLarge { len: 5, max: 4 })
        );
    }

    #[tokio::test]
    async fn seeded_loss_is_reproducible() {
        let run = || {
            let net = MemNetwork::new(&ids(2), 1000, 16);
            net.set_loss(0.5, 42);
            let (a, _ra) = net.endpoint(ReplicaId(0)).expect("ep");
            let (_b, mut rb) = net.endpoint(ReplicaId(1)).expect("ep");
            for i in 0u8..100 {
                a.send(ReplicaId(1), Bytes::from(vec![i])).expect("send");
            }
            let mut got = Vec::new();
            while let Ok((_, m)) = rb.try_recv() {
                got.push(m[0]);
            }
            got
        };
        let first = run();
        assert!(
            first.len() > 20 && first.len() < 80,
            "about half lost: {}",
            first.len()
        );
        assert_eq!(first, run());
    }
}
