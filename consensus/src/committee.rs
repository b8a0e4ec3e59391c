//! The committee: who the replicas are, their vote keys, the quorum arithmetic and the leader
//! schedule. Everything that counts votes asks this module.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ids::{ReplicaId, Round};
use crate::limits::COMMITTEE_SIZE_MAX;

/// Why a committee description was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitteeError {
    /// Fewer than 1 or more than the supported number of members.
    #[error("committee has {n} members; supported: 1..={max}")]
    Size {
        /// Members given.
        n: usize,
        /// The largest committee supported.
        max: usize,
    },
    /// Member ids must be exactly `0..n` in order, so that an id is an index.
    #[error("member {position} has id {id}; ids must be 0..n in order")]
    IdOrder {
        /// Position in the list.
        position: usize,
        /// The id found there.
        id: ReplicaId,
    },
    /// Two members share a vote key.
    #[error("members {a} and {b} share a vote key")]
    DuplicateKey {
        /// First member.
        a: ReplicaId,
        /// Second member.
        b: ReplicaId,
    },
}

/// An ed25519 signature, 64 bytes, serialised as a byte string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 64]);

impl std::fmt::Debug for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sig({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl From<Signature> for Sig {
    fn from(s: Signature) -> Self {
        Sig(s.to_bytes())
    }
}

impl Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Sig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Sig, E> {
                let arr: [u8; 64] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Sig(arr))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Sig, E> {
                self.visit_bytes(&v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Sig, A::Error> {
                let mut arr = [0u8; 64];
                for (i, slot) in arr.iter_mut().enumerate() {
                    *slot = a
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Sig(arr))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The ordered list of replicas with their ed25519 vote keys.
///
/// Clones share one memo of checked signatures: a certificate whose signatures this replica already
/// checked one by one, as votes or timeouts, is then checked by look-up.
#[derive(Clone, Debug)]
pub struct Committee {
    keys: Vec<VerifyingKey>,
    seen: Arc<Mutex<SeenSignatures>>,
}

/// The most recent signatures that passed a one-by-one check, kept to spare a second check.
pub const SEEN_SIGNATURES_MAX: usize = 1024;

/// Signatures that passed [`Committee::verify_sig`]: `(signer, signature, message)`, the last
/// [`SEEN_SIGNATURES_MAX`] of them.
///
/// Votes go to every replica, so each replica has checked, one by one, the votes of the QC
/// that the next proposal carries; at 500 notarisations/s those second checks were about two
/// fifths of a replica's ed25519 work (BENCHMARKS.md, "Less CPU per notarisation"). A hit is
/// exact (signer, signature and the whole message), and ed25519 verification is a function of
/// them, so a hit returns what a check would. Only one-by-one successes are recorded, never a
/// batch's (batch and one-by-one checks may disagree on crafted signatures).
#[derive(Debug, Default)]
struct SeenSignatures {
    set: BTreeSet<(ReplicaId, [u8; 64], Vec<u8>)>,
    order: VecDeque<(ReplicaId, [u8; 64], Vec<u8>)>,
}

impl SeenSignatures {
    fn contains(&self, id: ReplicaId, msg: &[u8], sig: &Sig) -> bool {
        let key = (id, sig.0, msg.to_vec());
        self.set.contains(&key)
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn insert(&mut self, id: ReplicaId, msg: &[u8], sig: &Sig) {
        let key = (id, sig.0, msg.to_vec());
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > SEEN_SIGNATURES_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl Committee {
    /// Builds a committee from `(id, key)` pairs; ids must be `0..n` in order.
    pub fn new(members: Vec<(ReplicaId, VerifyingKey)>) -> Result<Self, CommitteeError> {
        let n = members.len();
        if n == 0 || n > COMMITTEE_SIZE_MAX {
            return Err(CommitteeError::Size {
                n,
                max: COMMITTEE_SIZE_MAX,
            });
        }
        for (position, (id, _)) in members.iter().enumerate() {
            if usize::from(id.0) != position {
                return Err(CommitteeError::IdOrder { position, id: *id });
            }
        }
        for (i, (a, ka)) in members.iter().enumerate() {
            if let Some((b, _)) = members[i + 1..].iter().find(|(_, kb)| kb == ka) {
                return Err(CommitteeError::DuplicateKey { a: *a, b: *b });
            }
        }
        Ok(Committee {
            keys: members.into_iter().map(|(_, k)| k).collect(),
            seen: Arc::default(),
        })
    }

    /// Number of replicas, n.
    pub fn size(&self) -> usize {
        self.keys.len()
    }

    /// The number of Byzantine replicas tolerated: the largest f with n >= 3f + 1.
    pub fn max_faulty(&self) -> usize {
        (self.size() - 1) / 3
    }

    /// Votes needed for a certificate: n - f.
    ///
    /// Derivation: any two sets of n - f replicas intersect in at least n - 2f >= f + 1 replicas
    /// (because n >= 3f + 1), so at least one honest replica is in both; an honest replica votes
    /// once per round, hence two conflicting certificates for one round cannot exist. And n - f
    /// replicas are always honest-and-alive enough to form one: liveness. For n = 3f + 1 this is
    /// the familiar 2f + 1.
    pub fn quorum(&self) -> usize {
        self.size() - self.max_faulty()
    }

    /// Replicas that guarantee at least one honest among them: f + 1.
    pub fn validity(&self) -> usize {
        self.max_faulty() + 1
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ReplicaId) -> bool {
        usize::from(id.0) < self.size()
    }

    /// All member ids in order.
    pub fn ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.keys.len()).map(|i| ReplicaId(i as u16))
    }

    /// The vote key of a member.
    pub fn key(&self, id: ReplicaId) -> Option<&VerifyingKey> {
        self.keys.get(usize::from(id.0))
    }

    /// The leader of `round`: round-robin over the members, the same on every replica.
    pub fn leader(&self, round: Round) -> ReplicaId {
        let n = self.keys.len() as u64;
        ReplicaId((round.0 % n) as u16)
    }

    /// Checks several `(signer, message, signature)` triples at once with ed25519 batch
    /// verification (deterministic: its randomness is a transcript of the inputs), falling back
    /// to one-by-one checks to name the culprit. Returns the first bad or unknown signer.
    ///
    /// Signatures already seen to pass [`Committee::verify_sig`] are not checked again.
    pub fn verify_all(&self, items: &[(ReplicaId, &[u8], &Sig)]) -> Result<(), ReplicaId> {
        let mut keys = Vec::with_capacity(items.len());
        for (id, _, _) in items {
            keys.push(*self.key(*id).ok_or(*id)?);
        }
        let unseen: Vec<usize> = {
            let seen = self.seen();
            (0..items.len())
                .filter(|&i| !seen.contains(items[i].0, items[i].1, items[i].2))
                .collect()
        };
        if unseen.len() >= 2 {
            let msgs: Vec<&[u8]> = unseen.iter().map(|&i| items[i].1).collect();
            let sigs: Vec<Signature> = unseen
                .iter()
                .map(|&i| Signature::from_bytes(&items[i].2 .0))
                .collect();
            let keys: Vec<VerifyingKey> = unseen.iter().map(|&i| keys[i]).collect();
            if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                return Ok(());
            }
        }
        match unseen
            .iter()
            .map(|&i| items[i])
            .find(|(id, m, s)| !self.verify_sig(*id, m, s))
        {
            Some((id, _, _)) => Err(id),
            None => Ok(()),
        }
    }

    /// Checks `sig` by member `id` over `msg`; false for non-members or bad signatures. A
    /// signature that passes is remembered (see [`SEEN_SIGNATURES_MAX`]).
    pub fn verify_sig(&self, id: ReplicaId, msg: &[u8], sig: &Sig) -> bool {
        let Some(k) = self.key(id) else {
            return false;
        };
        if self.seen().contains(id, msg, sig) {
            return true;
        }
        let ok = k.verify(msg, &Signature::from_bytes(&sig.0)).is_ok();
        if ok {
            self.seen().insert(id, msg, sig);
        }
        ok
    }

    /// Remembers a signature this replica made itself with `id`'s key (an honest ed25519
    /// signature always verifies), so that a certificate carrying it is not checked for it.
    pub(crate) fn remember_signed(&self, id: ReplicaId, msg: &[u8], sig: &Sig) {
        self.seen().insert(id, msg, sig);
    }

    /// How many checked signatures are remembered (for tests and metrics).
    pub fn seen_signatures(&self) -> usize {
        self.seen().len()
    }

    /// The memo of checked signatures. A panic while it was held cannot leave it wrong (each
    /// change is one insert and at most one removal of a key): recover the guard.
    fn seen(&self) -> std::sync::MutexGuard<'_, SeenSignatures> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    pub(crate) fn committee(n: usize) -> Committee {
        Committee::new(
            (0..n)
                .map(|i| {
                    let sk = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                    (ReplicaId(i as u16), sk.verifying_key())
                })
                .collect(),
        )
        .expect("valid test committee")
    }

    #[test]
    fn quorum_is_2f_plus_1_for_3f_plus_1() {
        for f in 0..10 {
            let c = committee(3 * f + 1);
            assert_eq!(c.max_faulty(), f);
            assert_eq!(c.quorum(), 2 * f + 1);
            assert_eq!(c.validity(), f + 1);
        }
    }

    #[test]
    fn quorums_intersect_in_an_honest_replica() {
        for n in 1..60 {
            let c = committee(n);
            // Two quorums overlap in 2q - n replicas; that must exceed f.
            assert!(2 * c.quorum() > n + c.max_faulty(), "n = {n}");
        }
    }

    #[test]
    fn committee_rejects_out_of_order_ids() {
        let sk = SigningKey::from_bytes(&[1; 32]);
        let err = Committee::new(vec![(ReplicaId(1), sk.verifying_key())]).unwrap_err();
        assert_eq!(
            err,
            CommitteeError::IdOrder {
                position: 0,
                id: ReplicaId(1)
            }
        );
    }

    #[test]
    fn committee_rejects_shared_keys() {
        let k = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let err = Committee::new(vec![(ReplicaId(0), k), (ReplicaId(1), k)]).unwrap_err();
        assert!(matches!(err, CommitteeError::DuplicateKey { .. }));
    }

    #[test]
    fn limit_committee_size_max() {
        let key = |i: usize| {
            let mut b = [7u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SigningKey::from_bytes(&b).verifying_key()
        };
        let members = |n: usize| (0..n).map(|i| (ReplicaId(i as u16), key(i))).collect();
        assert!(Committee::new(members(COMMITTEE_SIZE_MAX)).is_ok());
        assert_eq!(
            Committee::new(members(COMMITTEE_SIZE_MAX + 1)).unwrap_err(),
            CommitteeError::Size {
                n: COMMITTEE_SIZE_MAX + 1,
                max: COMMITTEE_SIZE_MAX
            }
        );
        assert!(matches!(
            Committee::new(vec![]),
            Err(CommitteeError::Size { n: 0, .. })
        ));
    }

    #[test]
    fn leader_rotates_round_robin() {
        let c = committee(4);
        assert_eq!(c.leader(Round(1)), ReplicaId(1));
        assert_eq!(c.leader(Round(4)), ReplicaId(0));
        assert_eq!(c.leader(Round(7)), ReplicaId(3));
    }

    fn signed(c: usize, msg: &[u8]) -> Sig {
        use ed25519_dalek::Signer as _;
        SigningKey::from_bytes(&[c as u8 + 1; 32]).sign(msg).into()
    }

    #[test]
    fn a_signature_checked_once_is_remembered_exactly() {
        let c = committee(4);
        let vote = signed(1, b"vote for block 7");
        assert!(c.verify_sig(ReplicaId(1), b"vote for block 7", &vote));
        assert_eq!(c.seen_signatures(), 1);
        // A clone (the replica's, the router's) shares what was seen.
        let clone = c.clone();
        assert!(clone.verify_sig(ReplicaId(1), b"vote for block 7", &vote));
        assert_eq!(clone.seen_signatures(), 1);
        // The same signature for another message or another signer is checked, and fails.
        assert!(!c.verify_sig(ReplicaId(1), b"vote for block 8", &vote));
        assert!(!c.verify_sig(ReplicaId(2), b"vote for block 7", &vote));
        // Failures are never remembered.
        let mut bad = vote;
        bad.0[0] ^= 1;
        assert!(!c.verify_sig(ReplicaId(1), b"vote for block 7", &bad));
        assert!(!c.verify_sig(ReplicaId(1), b"vote for block 7", &bad));
        assert_eq!(c.seen_signatures(), 1);
        // A non-member is refused before any look-up.
        assert!(!c.verify_sig(ReplicaId(9), b"vote for block 7", &vote));
    }

    #[test]
    fn a_certificate_of_seen_votes_still_names_a_bad_unseen_signer() {
        let c = committee(4);
        let msg: &[u8] = b"vote data";
        let (s0, s1) = (signed(0, msg), signed(1, msg));
        let mut s2 = signed(2, msg);
        assert!(c.verify_sig(ReplicaId(0), msg, &s0));
        assert!(c.verify_sig(ReplicaId(1), msg, &s1));
        let good = [
            (ReplicaId(0), msg, &s0),
            (ReplicaId(1), msg, &s1),
            (ReplicaId(2), msg, &s2),
        ];
        assert_eq!(c.verify_all(&good), Ok(()));
        s2.0[5] ^= 1;
        let bad = [
            (ReplicaId(0), msg, &s0),
            (ReplicaId(1), msg, &s1),
            (ReplicaId(2), msg, &s2),
        ];
        assert_eq!(c.verify_all(&bad), Err(ReplicaId(2)));
        // Two unseen, one of them bad: the batch fails and the culprit is named.
        let fresh = committee(4);
        assert_eq!(fresh.verify_all(&bad), Err(ReplicaId(2)));
    }

    #[test]
    fn limit_seen_signatures_max() {
        let c = committee(4);
        let first = signed(0, &0u64.to_be_bytes());
        assert!(c.verify_sig(ReplicaId(0), &0u64.to_be_bytes(), &first));
        for i in 1..=SEEN_SIGNATURES_MAX as u64 {
            let msg = i.to_be_bytes();
            assert!(c.verify_sig(ReplicaId(0), &msg, &signed(0, &msg)));
        }
        assert_eq!(c.seen_signatures(), SEEN_SIGNATURES_MAX);
        // The oldest went first; checking it again still passes, and remembers it again.
        assert!(!c.seen().contains(ReplicaId(0), &0u64.to_be_bytes(), &first));
        assert!(c.verify_sig(ReplicaId(0), &0u64.to_be_bytes(), &first));
        assert_eq!(c.seen_signatures(), SEEN_SIGNATURES_MAX);
    }
}
