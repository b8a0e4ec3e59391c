//! Batch attestations: each request's signature is checked by f + 1 replicas, not all n.
//!
//! Verifying every client signature on every replica is the largest single cost of a loaded
//! cluster on a small box (`BENCHMARKS.md`). A batch only needs to be checked by **f + 1**
//! replicas: at least one of them is honest, and an honest replica attests only to a batch it
//! checked in full. So:
//! * The **origin** (the replica that took the requests from ledger nodes) checks them
//!   before it disseminates the batch: its sending the batch is its attestation.
//! * The f members after the origin in member order (cyclically) are its **checkers**: each
//!   checks the batch in full and, if it passes, sends `BatchAck { digest }` to every peer.
//! * Every other replica holds the batch unchecked until it has **f + 1 distinct attestors**
//!   (the origin and the checkers; peers are authenticated by the transport). Then it runs the
//!   checks that cost nothing (format, cluster, requester permitted), without the signatures,
//!   and the batch enters its mempool.
//! * A batch whose checker the transport reports disconnected is checked here on arrival.
//!   One still short of f + 1 attestors [`ATTEST_WAIT`] after it arrived (a checker crashed
//!   and its connection has not timed out yet, is far behind, or refused a bad batch of a
//!   Byzantine origin) is checked here in full, and the origin's later batches are checked on
//!   arrival for [`SUSPECT_FOR`]: a crashed checker costs its origin one wait, not one per
//!   batch, and a Byzantine checker that withholds its acks one wait per [`SUSPECT_FOR`].
//!
//! A batch that reaches a block before it is attested here is checked in full by the
//! mempool's `validate` (a late check), so votes never rest on fewer than f + 1 checks.
//!
//! This module is the bookkeeping only (no I/O, no clock of its own): the inbound router
//! feeds it batches, acks and ticks, and does the checking and sending it asks for.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use notary_consensus::ReplicaId;

use crate::wire::{Batch, BatchDigest};

/// How long a batch may wait for its attestations before this replica checks it itself.
pub const ATTEST_WAIT: Duration = Duration::from_millis(250);

/// After a batch of an origin had to be checked here, how long that origin's batches are
/// checked on arrival.
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// The most batches held for attestations; beyond it, batches are checked on arrival.
pub const HELD_BATCHES_MAX: usize = 4096;

/// The most bytes of batches held for attestations; beyond it, batches are checked on
/// arrival (a Byzantine origin cannot make a replica hold more than this).
pub const HELD_BYTES_MAX: usize = 256 << 20;

/// The most digests whose acks arrived before their batch.
pub const EARLY_ACKS_MAX: usize = 8192;

/// How long acks that arrived before their batch are kept.
pub const EARLY_ACKS_FOR: Duration = Duration::from_secs(2);

/// What to do with a batch.
#[derive(Debug)]
pub enum Verdict {
    /// Check every request here, signatures included; `ack`: send `BatchAck` if it passes.
    CheckHere {
        /// The batch.
        batch: Batch,
        /// Its digest.
        digest: BatchDigest,
        /// Whether peers wait for this replica's attestation.
        ack: bool,
    },
    /// f + 1 replicas attest it: run the checks that are not signatures.
    Attested {
        /// The batch.
        batch: Batch,
        /// Its digest.
        digest: BatchDigest,
    },
    /// Held until enough attestations arrive (or [`ATTEST_WAIT`] passes).
    Held,
}

struct HeldBatch {
    batch: Batch,
    origin: ReplicaId,
    attestors: BTreeSet<ReplicaId>,
    since: Instant,
}

/// The attestation state of one replica.
pub struct Attestations {
    me: ReplicaId,
    /// Members in order.
    members: Vec<ReplicaId>,
    f: usize,
    held: HashMap<BatchDigest, HeldBatch>,
    held_bytes: usize,
    early: HashMap<BatchDigest, (Instant, BTreeSet<ReplicaId>)>,
    suspect: HashMap<ReplicaId, Instant>,
    /// Peers the transport reports disconnected.
    down: BTreeSet<ReplicaId>,
}

impl Attestations {
    /// For replica `me` of `members` (any order), tolerating `f` faults.
    pub fn new(me: ReplicaId, members: impl IntoIterator<Item = ReplicaId>, f: usize) -> Self {
        let mut members: Vec<ReplicaId> = members.into_iter().collect();
        members.sort();
        members.dedup();
        Self {
            me,
            members,
            f,
            held: HashMap::new(),
            held_bytes: 0,
            early: HashMap::new(),
            suspect: HashMap::new(),
            down: BTreeSet::new(),
        }
    }

    /// The peers the transport reports disconnected now: batches whose checker is one of
    /// them are checked here on arrival (and those held for it at the next tick).
    pub fn set_down(&mut self, down: impl IntoIterator<Item = ReplicaId>) {
        self.down = down.into_iter().collect();
    }

    /// The f members after `origin` in member order, cyclically (none for a stranger).
    fn checkers(&self, origin: ReplicaId) -> impl Iterator<Item = ReplicaId> + '_ {
        let n = self.members.len();
        let at = self.members.iter().position(|m| *m == origin);
        at.into_iter()
            .flat_map(move |at| (1..=self.f.min(n - 1)).map(move |k| self.members[(at + k) % n]))
    }

    fn checker_down(&self, origin: ReplicaId) -> bool {
        self.checkers(origin).any(|c| self.down.contains(&c))
    }

    /// Whether `me` is one of the f checkers of `origin`'s batches.
    pub fn is_checker(&self, origin: ReplicaId) -> bool {
        self.checkers(origin).any(|c| c == self.me)
    }

    /// Batches held now (for metrics and tests).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A batch from `origin` (the peer that sent it: batches travel only from their origin).
    pub fn on_batch(&mut self, origin: ReplicaId, batch: Batch, now: Instant) -> Verdict {
        let digest = batch.digest();
        let checker = self.is_checker(origin);
        let suspect = self.suspect.get(&origin).is_some_and(|until| now < *until);
        if checker
            || suspect
            || self.held.len() >= HELD_BATCHES_MAX
            || self.held_bytes + batch.wire_len() > HELD_BYTES_MAX
            || self.checker_down(origin)
        {
            self.early.remove(&digest);
            return Verdict::CheckHere {
                batch,
                digest,
                ack: checker,
            };
        }
        if self.held.contains_key(&digest) {
            return Verdict::Held;
        }
        let mut attestors = self
            .early
            .remove(&digest)
            .map(|(_, a)| a)
            .unwrap_or_default();
        attestors.insert(origin);
        if attestors.len() > self.f {
            return Verdict::Attested { batch, digest };
        }
        self.held_bytes += batch.wire_len();
        self.held.insert(
            digest,
            HeldBatch {
                batch,
                origin,
                attestors,
                since: now,
            },
        );
        Verdict::Held
    }

    /// `from` attests that it checked the batch `digest` in full.
    pub fn on_ack(
        &mut self,
        from: ReplicaId,
        digest: BatchDigest,
        now: Instant,
    ) -> Option<Verdict> {
        if from == self.me || !self.members.contains(&from) {
            return None;
        }
        if let Some(h) = self.held.get_mut(&digest) {
            h.attestors.insert(from);
            if h.attestors.len() > self.f {
                let h = self.held.remove(&digest).expect("present above");
                self.held_bytes -= h.batch.wire_len();
                return Some(Verdict::Attested {
                    batch: h.batch,
                    digest,
                });
            }
            return None;
        }
        if self.early.len() < EARLY_ACKS_MAX || self.early.contains_key(&digest) {
            self.early
                .entry(digest)
                .or_insert_with(|| (now, BTreeSet::new()))
                .1
                .insert(from);
        }
        None
    }

    /// Batches to check here: those that waited [`ATTEST_WAIT`] in vain (their origins
    /// become suspect) and those whose checker is down. Also forgets early acks whose batch
    /// never came.
    pub fn tick(&mut self, now: Instant) -> Vec<Verdict> {
        let late: Vec<(BatchDigest, bool)> = self
            .held
            .iter()
            .filter_map(|(d, h)| {
                let waited = now.duration_since(h.since) >= ATTEST_WAIT;
                (waited || self.checker_down(h.origin)).then_some((*d, waited))
            })
            .collect();
        let mut out = Vec::with_capacity(late.len());
        for (digest, waited) in late {
            let h = self.held.remove(&digest).expect("listed above");
            self.held_bytes -= h.batch.wire_len();
            if waited {
                self.suspect.insert(h.origin, now + SUSPECT_FOR);
            }
            out.push(Verdict::CheckHere {
                batch: h.batch,
                digest,
                ack: false,
            });
        }
        self.early
            .retain(|_, (since, _)| now.duration_since(*since) < EARLY_ACKS_FOR);
        self.suspect.retain(|_, until| now < *until);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tag: u8) -> Batch {
        Batch {
            requests: vec![vec![tag; 8]],
        }
    }

    fn four(me: u16) -> Attestations {
        Attestations::new(ReplicaId(me), (0..4).map(ReplicaId), 1)
    }

    #[test]
    fn the_checker_of_an_origin_is_the_next_member() {
        let a = four(2);
        assert!(a.is_checker(ReplicaId(1)));
        assert!(!a.is_checker(ReplicaId(0)));
        assert!(!a.is_checker(ReplicaId(3)));
        assert!(four(0).is_checker(ReplicaId(3)), "cyclic");
        let seven = Attestations::new(ReplicaId(0), (0..7).map(ReplicaId), 2);
        assert!(seven.is_checker(ReplicaId(6)) && seven.is_checker(ReplicaId(5)));
        assert!(!seven.is_checker(ReplicaId(4)));
    }

    #[test]
    fn a_checker_checks_on_arrival_and_acks() {
        let mut a = four(2);
        match a.on_batch(ReplicaId(1), batch(1), Instant::now()) {
            Verdict::CheckHere { ack, .. } => assert!(ack),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn others_wait_for_f_plus_one_attestors_in_either_order() {
        let now = Instant::now();
        let mut a = four(3);
        let d = batch(1).digest();
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(1), now),
            Verdict::Held
        ));
        assert_eq!(a.held(), 1);
        // The origin's own ack, a stranger's and a repeat do not count twice.
        assert!(a.on_ack(ReplicaId(0), d, now).is_none());
        assert!(a.on_ack(ReplicaId(9), d, now).is_none());
        assert!(a.on_ack(ReplicaId(3), d, now).is_none(), "my own ack");
        assert!(matches!(
            a.on_ack(ReplicaId(1), d, now),
            Some(Verdict::Attested { .. })
        ));
        assert_eq!(a.held(), 0);

        // The checker's ack may come first.
        let d2 = batch(2).digest();
        assert!(a.on_ack(ReplicaId(1), d2, now).is_none());
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(2), now),
            Verdict::Attested { .. }
        ));
    }

    #[test]
    fn a_batch_without_attestations_is_checked_here_and_its_origin_becomes_suspect() {
        let t0 = Instant::now();
        let mut a = four(3);
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(1), t0),
            Verdict::Held
        ));
        assert!(a.tick(t0 + ATTEST_WAIT / 2).is_empty());
        let late = a.tick(t0 + ATTEST_WAIT);
        assert!(matches!(late[..], [Verdict::CheckHere { ack: false, .. }]));
        // Its next batches are checked on arrival, until the suspicion lapses.
        let t1 = t0 + ATTEST_WAIT + Duration::from_millis(1);
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(2), t1),
            Verdict::CheckHere { ack: false, .. }
        ));
        a.tick(t0 + ATTEST_WAIT + SUSPECT_FOR);
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(3), t0 + ATTEST_WAIT + SUSPECT_FOR),
            Verdict::Held
        ));
        // Another origin was never suspect.
        assert!(matches!(
            a.on_batch(ReplicaId(1), batch(4), t1),
            Verdict::Held
        ));
    }

    #[test]
    fn held_batches_are_bounded_in_bytes() {
        let now = Instant::now();
        let mut a = four(3);
        let big = |tag: u8| Batch {
            requests: vec![vec![tag; 64 << 20]],
        };
        for tag in 0..3 {
            assert!(matches!(
                a.on_batch(ReplicaId(0), big(tag), now),
                Verdict::Held
            ));
        }
        assert!(matches!(
            a.on_batch(ReplicaId(0), big(3), now),
            Verdict::CheckHere { ack: false, .. }
        ));
        // Attested batches free their bytes.
        let d = big(0).digest();
        assert!(a.on_ack(ReplicaId(1), d, now).is_some());
        assert!(matches!(
            a.on_batch(ReplicaId(0), big(4), now),
            Verdict::Held
        ));
    }

    #[test]
    fn a_batch_whose_checker_is_down_is_checked_here_at_once() {
        let now = Instant::now();
        let mut a = four(3);
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(1), now),
            Verdict::Held
        ));
        a.set_down([ReplicaId(1)]);
        assert!(matches!(
            a.tick(now)[..],
            [Verdict::CheckHere { ack: false, .. }]
        ));
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(2), now),
            Verdict::CheckHere { ack: false, .. }
        ));
        // Replica 2's checker (3, this replica) is up: its batches still wait for nobody.
        assert!(matches!(
            a.on_batch(ReplicaId(2), batch(3), now),
            Verdict::CheckHere { ack: true, .. }
        ));
        // Back up, and the origin never became suspect: held again.
        a.set_down([]);
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(4), now),
            Verdict::Held
        ));
    }

    #[test]
    fn one_byzantine_attestor_is_not_enough_with_f_two() {
        let now = Instant::now();
        let mut a = Attestations::new(ReplicaId(6), (0..7).map(ReplicaId), 2);
        let d = batch(1).digest();
        assert!(matches!(
            a.on_batch(ReplicaId(0), batch(1), now),
            Verdict::Held
        ));
        assert!(a.on_ack(ReplicaId(1), d, now).is_none(), "2 of 3 attestors");
        assert!(matches!(
            a.on_ack(ReplicaId(2), d, now),
            Some(Verdict::Attested { .. })
        ));
    }
}
