//! Threshold BLS certificates: each replica signs a committed block's header with its key share;
//! any `f + 1` valid shares combine into the one cluster signature.
//!
//! The collector is optimistic: it verifies nothing until it holds `f + 1` shares, then combines
//! them and verifies the combined signature once (one pairing check instead of `f + 1`, done
//! by [`verify_bls`] as one multi-pairing). Only if that fails does it verify the shares one by
//! one, to reject and attribute exactly the invalid ones. A combined signature is always
//! verified before it is returned.

use std::collections::{BTreeMap, BTreeSet};

use blsttc::{PublicKeySet, SecretKeyShare, SignatureShare};
use notary_types::limits::CHAIN_HEADERS_MAX;
use notary_types::{verify_bls, BlockHeader, ClusterSignature, Height};
use thiserror::Error;

use crate::committee::{Committee, ReplicaIndex};
use crate::store::{Store, StoreError};

/// Signs `header` with this replica's key share. Call only for headers of committed, applied
/// blocks: honest replicas signing nothing else is what makes `f + 1` shares a proof.
pub fn sign_header(share: &SecretKeyShare, header: &BlockHeader) -> SignatureShare {
    share.sign(header.canonical_bytes())
}

/// Which applied heights a replica signs of its own accord (`notaryd`'s executor and the
/// simulator both ask this). Replicas that applied the same blocks pick the same heights
/// without a message: the rules read only heights and block timestamps, which consensus
/// agreed. A replica signs
/// - the first block of each window of `window_ms` of block time (its timestamp is in another
///   window than the one below it),
/// - **except** an odd height whose block below was also the first of its window, less than two
///   windows earlier: rounds are then as long as a window (the cluster is saturated, blocks
///   are big), and signing every block would spend a certificate's BLS work on every round.
///   The skipped block is covered by the next signed one, a round later: the even height
///   above it if that is the first of its window too, else the next window's first block;
/// - every multiple of [`CHAIN_HEADERS_MAX`], so that a certificate is at most that many
///   heights above any block.
///
/// Below saturation a window holds several blocks, two windows' first blocks are rarely
/// adjacent, and the exception does not act; blocks that come far apart (an idle cluster) are
/// more than two windows apart, and each is signed at once. (A replica also signs any height a
/// peer signed, and its newest block once none has come for a window: those rules need the
/// replica's clock and inbox, so they live with its executor.)
#[derive(Clone, Debug)]
pub struct SignSchedule {
    window_ms: u64,
    /// The timestamp of the last block noted.
    below: Option<u64>,
    /// Whether that block was the first of its window.
    below_first: bool,
    /// Whether that block was the first of its window and not signed (the exception).
    below_skipped: bool,
}

impl SignSchedule {
    /// A schedule of windows of `window_ms` (at least 1). `below` is the timestamp (ms) of the
    /// block at the applied height, if any, and `below_that` the timestamp of the block under
    /// it, if any (after a restart, both from the store).
    pub fn new(window_ms: u64, below: Option<u64>, below_that: Option<u64>) -> SignSchedule {
        let window_ms = window_ms.max(1);
        SignSchedule {
            window_ms,
            below,
            below_first: below.is_some_and(|b| Self::first_of_window(window_ms, below_that, b)),
            below_skipped: false,
        }
    }

    /// The schedule of a replica that resumes at `applied` after a restart: the timestamps
    /// it needs are those of the applied block and of the block under it, from `store`.
    pub fn resume(
        window_ms: u64,
        store: &dyn Store,
        applied: Height,
    ) -> Result<SignSchedule, StoreError> {
        let timestamp = |height: u64| -> Result<Option<u64>, StoreError> {
            Ok(store.header(Height(height))?.map(|h| h.timestamp.0))
        };
        Ok(SignSchedule::new(
            window_ms,
            timestamp(applied.0)?,
            timestamp(applied.0.saturating_sub(1))?,
        ))
    }

    fn first_of_window(w: u64, below: Option<u64>, timestamp_ms: u64) -> bool {
        below.is_none_or(|b| b / w != timestamp_ms / w)
    }

    /// Notes the block applied at `height` with timestamp `timestamp_ms`, the next above the
    /// last one noted; whether to sign it.
    pub fn on_apply(&mut self, height: u64, timestamp_ms: u64) -> bool {
        let w = self.window_ms;
        let first = Self::first_of_window(w, self.below, timestamp_ms);
        let right_after_first = self.below_first
            && self
                .below
                .is_some_and(|b| timestamp_ms.saturating_sub(b) < w.saturating_mul(2));
        let sign = first && (height % 2 == 0 || !right_after_first)
            || height % CHAIN_HEADERS_MAX as u64 == 0;
        self.below = Some(timestamp_ms);
        self.below_first = first;
        self.below_skipped = first && !sign;
        sign
    }

    /// How long, in ms, the quiet rule waits with nothing applied (the executor's rule that
    /// signs the newest block when no block comes): two windows after a block skipped by the
    /// exception above, whose next block is expected about a window later, else one. With
    /// one, the quiet rule would sign most skipped blocks anyway, a few milliseconds before
    /// their next block.
    pub fn quiet_ms(&self) -> u64 {
        if self.below_skipped {
            self.window_ms.saturating_mul(2)
        } else {
            self.window_ms
        }
    }
}

/// What happened to one offered share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareOutcome {
    /// Kept; fewer than `f + 1` shares so far.
    Added,
    /// This replica already offered a share (or was found invalid) for this header: ignored.
    Duplicate,
    /// These replicas' shares did not verify (or the replica is not a member): rejected.
    Invalid {
        /// The replicas at fault.
        replicas: Vec<ReplicaIndex>,
    },
    /// `f + 1` shares combined into a signature that verifies against the cluster key.
    Combined(ClusterSignature),
    /// The signature was already combined; the share is not needed.
    AlreadyCombined,
}

/// The cluster key set does not fit the committee.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cluster key threshold {key_threshold} does not match f = {f} for n = {n}")]
pub struct ThresholdMismatch {
    /// The key set's threshold.
    pub key_threshold: usize,
    /// The committee's f.
    pub f: u16,
    /// The committee's n.
    pub n: u16,
}

/// Collects shares over one header until `f + 1` valid ones combine.
#[derive(Debug)]
pub struct ShareCollector {
    keys: PublicKeySet,
    committee: Committee,
    message: Vec<u8>,
    pending: BTreeMap<ReplicaIndex, SignatureShare>,
    rejected: BTreeSet<ReplicaIndex>,
    combined: Option<ClusterSignature>,
}

impl ShareCollector {
    /// A collector for `header`, checking that the key set's threshold is the committee's `f`.
    pub fn new(
        keys: PublicKeySet,
        committee: Committee,
        header: &BlockHeader,
    ) -> Result<Self, ThresholdMismatch> {
        if keys.threshold() != committee.bls_threshold() {
            return Err(ThresholdMismatch {
                key_threshold: keys.threshold(),
                f: committee.f(),
                n: committee.n(),
            });
        }
        Ok(Self {
            keys,
            committee,
            message: header.canonical_bytes(),
            pending: BTreeMap::new(),
            rejected: BTreeSet::new(),
            combined: None,
        })
    }

    /// The combined signature, once there is one.
    pub fn signature(&self) -> Option<&ClusterSignature> {
        self.combined.as_ref()
    }

    /// Offers one replica's share.
    pub fn add(&mut self, replica: ReplicaIndex, share: SignatureShare) -> ShareOutcome {
        if self.combined.is_some() {
            return ShareOutcome::AlreadyCombined;
        }
        if !self.committee.contains(replica) {
            return ShareOutcome::Invalid {
                replicas: vec![replica],
            };
        }
        if self.pending.contains_key(&replica) || self.rejected.contains(&replica) {
            return ShareOutcome::Duplicate;
        }
        self.pending.insert(replica, share);
        if self.pending.len() < self.committee.certificate_shares() {
            return ShareOutcome::Added;
        }
        // Exactly f + 1 pending: each failed attempt below removes at least one share, and a
        // set of only valid shares always combines to a valid signature.
        let shares = self.pending.iter().map(|(r, s)| (u64::from(r.0), s));
        if let Ok(sig) = self.keys.combine_signatures(shares) {
            #[cfg(feature = "sim-bugs")]
            let unverified = crate::sim_bugs::active(crate::sim_bugs::COMBINE_UNVERIFIED);
            #[cfg(not(feature = "sim-bugs"))]
            let unverified = false;
            let sig = ClusterSignature::from(&sig);
            if unverified
                || verify_bls(&self.keys.public_key(), &sig, &self.message).unwrap_or(false)
            {
                self.combined = Some(sig);
                self.pending.clear();
                return ShareOutcome::Combined(sig);
            }
        }
        let bad: Vec<ReplicaIndex> = self
            .pending
            .iter()
            .filter(|(r, s)| {
                !self
                    .keys
                    .public_key_share(u64::from(r.0))
                    .verify(s, &self.message)
            })
            .map(|(r, _)| *r)
            .collect();
        for r in &bad {
            self.pending.remove(r);
            self.rejected.insert(*r);
        }
        if bad.is_empty() {
            // Unreachable with a correct BLS library; keep waiting rather than fail.
            ShareOutcome::Added
        } else {
            ShareOutcome::Invalid { replicas: bad }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blsttc::SecretKeySet;
    use notary_types::{ClusterId, Height, MerkleHash, Timestamp};
    use rand::SeedableRng;

    fn setup(n: u16) -> (SecretKeySet, Committee, BlockHeader) {
        let committee = Committee::new(n).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let sks = SecretKeySet::random(committee.bls_threshold(), &mut rng);
        let header = BlockHeader {
            cluster_id: ClusterId::new("wooden-dollars").unwrap(),
            height: Height(3),
            timestamp: Timestamp(1000),
            leaf_count: 2,
            root: MerkleHash([5; 32]),
            prev: notary_types::HeaderHash([4; 32]),
        };
        (sks, committee, header)
    }

    #[test]
    fn f_plus_one_valid_shares_combine_to_a_verified_signature() {
        let (sks, committee, header) = setup(4);
        let mut c = ShareCollector::new(sks.public_keys(), committee, &header).unwrap();
        assert_eq!(
            c.add(
                ReplicaIndex(2),
                sign_header(&sks.secret_key_share(2u64), &header)
            ),
            ShareOutcome::Added
        );
        assert_eq!(
            c.add(
                ReplicaIndex(2),
                sign_header(&sks.secret_key_share(2u64), &header)
            ),
            ShareOutcome::Duplicate
        );
        let ShareOutcome::Combined(sig) = c.add(
            ReplicaIndex(0),
            sign_header(&sks.secret_key_share(0u64), &header),
        ) else {
            panic!("two shares must combine for n = 4");
        };
        header
            .verify(&sks.public_keys().public_key(), &sig)
            .unwrap();
        assert_eq!(
            c.add(
                ReplicaIndex(1),
                sign_header(&sks.secret_key_share(1u64), &header)
            ),
            ShareOutcome::AlreadyCombined
        );
    }

    #[test]
    fn one_invalid_share_among_f_plus_one_is_attributed_and_then_replaced() {
        let (sks, committee, header) = setup(7);
        assert_eq!(committee.certificate_shares(), 3);
        let mut c = ShareCollector::new(sks.public_keys(), committee, &header).unwrap();
        let mut other = header.clone();
        other.height = Height(4);
        assert_eq!(
            c.add(
                ReplicaIndex(0),
                sign_header(&sks.secret_key_share(0u64), &header)
            ),
            ShareOutcome::Added
        );
        assert_eq!(
            c.add(
                ReplicaIndex(5),
                sign_header(&sks.secret_key_share(5u64), &other)
            ),
            ShareOutcome::Added
        );
        assert_eq!(
            c.add(
                ReplicaIndex(3),
                sign_header(&sks.secret_key_share(3u64), &header)
            ),
            ShareOutcome::Invalid {
                replicas: vec![ReplicaIndex(5)]
            }
        );
        assert_eq!(
            c.add(
                ReplicaIndex(5),
                sign_header(&sks.secret_key_share(5u64), &header)
            ),
            ShareOutcome::Duplicate
        );
        // A share signed with another replica's key is invalid for the claimed index.
        assert_eq!(
            c.add(
                ReplicaIndex(6),
                sign_header(&sks.secret_key_share(1u64), &header)
            ),
            ShareOutcome::Invalid {
                replicas: vec![ReplicaIndex(6)]
            }
        );
        let outcome = c.add(
            ReplicaIndex(1),
            sign_header(&sks.secret_key_share(1u64), &header),
        );
        let ShareOutcome::Combined(sig) = outcome else {
            panic!("expected Combined, got {outcome:?}")
        };
        header
            .verify(&sks.public_keys().public_key(), &sig)
            .unwrap();
    }

    #[test]
    fn the_schedule_signs_each_window_s_first_block_and_every_64th_height() {
        let mut s = SignSchedule::new(25, None, None);
        assert!(s.on_apply(1, 1_000), "nothing below: first of its window");
        assert!(!s.on_apply(2, 1_010), "same window [1000, 1025)");
        assert!(!s.on_apply(3, 1_024));
        assert!(s.on_apply(4, 1_025), "next window");
        assert!(
            s.on_apply(5, 1_100),
            "a window skipped: still first of its own"
        );
        assert!(
            s.on_apply(64, 1_101),
            "a multiple of CHAIN_HEADERS_MAX, same window"
        );
        let mut restarted = SignSchedule::new(25, Some(1_101), Some(1_100));
        assert!(
            !restarted.on_apply(65, 1_110),
            "the stored block below is in the window"
        );
        assert!(
            SignSchedule::new(0, Some(5), None).on_apply(8, 6),
            "a 0 ms window is 1 ms"
        );
    }

    #[test]
    fn rounds_as_long_as_a_window_sign_every_other_block() {
        // Saturated: a block every 27 ms, each the first of its 25 ms window.
        let mut s = SignSchedule::new(25, Some(1_000), Some(973));
        let signed: Vec<u64> = (11..=20)
            .filter(|&h| s.on_apply(h, 1_000 + 27 * (h - 10)))
            .collect();
        assert_eq!(signed, [12, 14, 16, 18, 20], "even heights only");
        assert_eq!(s.quiet_ms(), 25, "the last block was signed");
        assert!(!s.on_apply(21, 1_297));
        assert_eq!(
            s.quiet_ms(),
            50,
            "a skipped block waits longer for the next"
        );
        // An odd block that is the first of its window is signed when the one below was not
        // (here known after a restart from the block under it: same window) ...
        let mut s = SignSchedule::new(25, Some(1_010), Some(1_001));
        assert!(s.on_apply(21, 1_030));
        // ... and when the one below, first of its window, came two windows or more before.
        let mut s = SignSchedule::new(25, Some(1_000), Some(900));
        assert!(s.on_apply(21, 1_050), "an idle cluster: each block at once");
        assert!(!SignSchedule::new(25, Some(1_000), Some(900)).on_apply(21, 1_049));
        assert!(
            !SignSchedule::new(25, Some(1_000), None).on_apply(21, 1_030),
            "nothing under the applied block: it was the first of its window"
        );
        // The widest window does not overflow.
        let mut s = SignSchedule::new(u64::MAX, Some(1), None);
        assert!(!s.on_apply(21, 2), "one window: not the first of it");
    }

    #[test]
    fn non_members_and_wrong_thresholds_are_refused() {
        let (sks, committee, header) = setup(4);
        let mut c = ShareCollector::new(sks.public_keys(), committee, &header).unwrap();
        assert_eq!(
            c.add(
                ReplicaIndex(4),
                sign_header(&sks.secret_key_share(4u64), &header)
            ),
            ShareOutcome::Invalid {
                replicas: vec![ReplicaIndex(4)]
            }
        );
        assert!(
            ShareCollector::new(sks.public_keys(), Committee::new(7).unwrap(), &header).is_err()
        );
    }
}
