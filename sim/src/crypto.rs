//! The threshold-certificate seam: real blsttc shares through notary-core's
//! [`ShareCollector`], or a fast stand-in with the same shape.
//!
//! Real BLS costs milliseconds per operation (ANCHORS.md: sign share 0.52 ms, verify combined
//! 1.7 ms), which would dominate a run; so most seeds use the stand-in and one seed in ten
//! (`seed % 10 == 0`) runs real signatures end to end. The stand-in keeps what the checker
//! needs: shares are keyed per replica (a share from another key or over another header is
//! invalid), `f + 1` valid shares combine into the one cluster signature for the header, a set
//! with an invalid share combines into garbage, and verification recomputes the signature from
//! the cluster secret that only the simulator's trusted side holds, so a forged or garbage
//! certificate never verifies. The stand-in collector follows the real one (combine
//! optimistically, verify the result, attribute bad shares), including the planted
//! `COMBINE_UNVERIFIED` bug.

use std::collections::{BTreeMap, BTreeSet};

use blsttc::{PublicKeySet, SecretKeySet, SecretKeyShare, SignatureShare};
use notary_core::{Committee, ReplicaIndex, ShareCollector, ShareOutcome};
use notary_types::{BlockHeader, ClusterSignature, NotarisationAnswer, Outcome, RequestFields};
use rand::Rng;
use sha2::{Digest as _, Sha256};

/// The cluster's keys, as the simulator's trusted dealer made them.
#[derive(Clone)]
pub enum Keys {
    /// Real threshold BLS.
    Real {
        /// The secret key set (the dealer's; shares are handed to replicas).
        secret: SecretKeySet,
        /// The public key set.
        public: PublicKeySet,
    },
    /// The stand-in: one 32-byte cluster secret.
    Fast {
        /// The cluster secret.
        secret: [u8; 32],
    },
}

/// What a certificate check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The real verification failed.
    #[error("answer does not verify: {0}")]
    Answer(#[from] notary_types::AnswerError),
    /// The stand-in signature is not the cluster's for this header.
    #[error("stand-in cluster signature invalid for height {height}")]
    FastSignature {
        /// The header's height.
        height: u64,
    },
}

fn expand(tag: &[u8], parts: &[&[u8]]) -> [u8; 96] {
    let mut out = [0u8; 96];
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(tag);
        h.update([i as u8]);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        chunk.copy_from_slice(&h.finalize());
    }
    out
}

impl Keys {
    /// Deals keys for `committee` from the seeded `rng`.
    pub fn deal(real: bool, committee: Committee, rng: &mut impl Rng) -> Keys {
        if real {
            let secret = SecretKeySet::random(committee.bls_threshold(), rng);
            let public = secret.public_keys();
            Keys::Real { secret, public }
        } else {
            Keys::Fast { secret: rng.gen() }
        }
    }

    /// Whether these are real BLS keys.
    pub fn is_real(&self) -> bool {
        matches!(self, Keys::Real { .. })
    }

    /// The share key of replica `i`.
    pub fn share_key(&self, i: u16) -> ShareKey {
        match self {
            Keys::Real { secret, .. } => ShareKey::Real(secret.secret_key_share(u64::from(i))),
            Keys::Fast { secret } => ShareKey::Fast {
                index: i,
                cluster: *secret,
            },
        }
    }

    fn fast_share(cluster: &[u8; 32], index: u16, msg: &[u8]) -> [u8; 96] {
        expand(b"share", &[cluster, &index.to_be_bytes(), msg])
    }

    fn fast_cluster_sig(cluster: &[u8; 32], msg: &[u8]) -> [u8; 96] {
        expand(b"cluster", &[cluster, msg])
    }

    /// Checks a cluster signature over `header`.
    pub fn verify_header(
        &self,
        header: &BlockHeader,
        sig: &ClusterSignature,
    ) -> Result<(), CertError> {
        match self {
            Keys::Real { public, .. } => Ok(header.verify(&public.public_key(), sig)?),
            Keys::Fast { secret } => {
                if Self::fast_cluster_sig(secret, &header.canonical_bytes()) == sig.0 {
                    Ok(())
                } else {
                    Err(CertError::FastSignature {
                        height: header.height.0,
                    })
                }
            }
        }
    }

    /// Verifies a client's answer the way a client does; returns the proven outcome.
    pub fn verify_answer<'a>(
        &self,
        answer: &'a NotarisationAnswer,
        request: &RequestFields,
    ) -> Result<&'a Outcome, CertError> {
        match self {
            Keys::Real { public, .. } => Ok(answer.verify(&public.public_key(), request)?),
            Keys::Fast { .. } => {
                use notary_types::AnswerError;
                if answer.leaf.tx_id != request.tx_id {
                    return Err(AnswerError::TxIdMismatch.into());
                }
                if answer.leaf.request_digest != request.digest() {
                    return Err(AnswerError::DigestMismatch.into());
                }
                if answer.header.cluster_id != request.cluster_id {
                    return Err(AnswerError::ClusterMismatch {
                        got: answer.header.cluster_id.to_string(),
                        expected: request.cluster_id.to_string(),
                    }
                    .into());
                }
                answer.verify_inclusion()?;
                self.verify_header(answer.signed_header()?, &answer.signature)?;
                Ok(&answer.leaf.outcome)
            }
        }
    }

    /// A collector for `header`.
    pub fn collector(&self, committee: Committee, header: &BlockHeader) -> Collector {
        match self {
            Keys::Real { public, .. } => Collector::Real(
                ShareCollector::new(public.clone(), committee, header)
                    .expect("the dealer made the key set with threshold f"),
            ),
            Keys::Fast { secret } => Collector::Fast(FastCollector {
                cluster: *secret,
                committee,
                message: header.canonical_bytes(),
                pending: BTreeMap::new(),
                rejected: BTreeSet::new(),
                combined: None,
            }),
        }
    }
}

/// One replica's share key.
#[derive(Clone)]
pub enum ShareKey {
    /// A blsttc key share.
    Real(SecretKeyShare),
    /// The stand-in.
    Fast {
        /// Replica index.
        index: u16,
        /// The cluster secret (the stand-in's share is derived from it and the index).
        cluster: [u8; 32],
    },
}

impl ShareKey {
    /// Signs a header: 96 share bytes.
    pub fn sign(&self, header: &BlockHeader) -> Vec<u8> {
        match self {
            ShareKey::Real(k) => notary_core::sign_header(k, header).to_bytes().to_vec(),
            ShareKey::Fast { index, cluster } => {
                Keys::fast_share(cluster, *index, &header.canonical_bytes()).to_vec()
            }
        }
    }
}

/// Collects shares over one header: the real [`ShareCollector`] or the stand-in.
#[derive(Debug)]
pub enum Collector {
    /// notary-core's collector.
    Real(ShareCollector),
    /// The stand-in.
    Fast(FastCollector),
}

/// What an offered share did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Nothing decisive.
    Kept,
    /// These replicas' shares were invalid.
    Invalid(Vec<u16>),
    /// The signature combined.
    Combined(ClusterSignature),
}

impl Collector {
    /// The combined signature, once there is one.
    pub fn signature(&self) -> Option<ClusterSignature> {
        match self {
            Collector::Real(c) => c.signature().copied(),
            Collector::Fast(c) => c.combined,
        }
    }

    /// Offers share bytes from replica `from`.
    pub fn add(&mut self, from: u16, bytes: &[u8]) -> Offer {
        let Ok(arr) = <[u8; 96]>::try_from(bytes) else {
            return Offer::Invalid(vec![from]);
        };
        match self {
            Collector::Real(c) => {
                let Ok(share) = SignatureShare::from_bytes(arr) else {
                    return Offer::Invalid(vec![from]);
                };
                match c.add(ReplicaIndex(from), share) {
                    ShareOutcome::Combined(s) => Offer::Combined(s),
                    ShareOutcome::Invalid { replicas } => {
                        Offer::Invalid(replicas.into_iter().map(|r| r.0).collect())
                    }
                    _ => Offer::Kept,
                }
            }
            Collector::Fast(c) => c.add(from, arr),
        }
    }
}

/// The stand-in collector, shaped like [`ShareCollector`].
#[derive(Debug)]
pub struct FastCollector {
    cluster: [u8; 32],
    committee: Committee,
    message: Vec<u8>,
    pending: BTreeMap<u16, [u8; 96]>,
    rejected: BTreeSet<u16>,
    combined: Option<ClusterSignature>,
}

impl FastCollector {
    fn add(&mut self, from: u16, share: [u8; 96]) -> Offer {
        if self.combined.is_some() {
            return Offer::Kept;
        }
        if !self.committee.contains(ReplicaIndex(from)) {
            return Offer::Invalid(vec![from]);
        }
        if self.pending.contains_key(&from) || self.rejected.contains(&from) {
            return Offer::Kept;
        }
        self.pending.insert(from, share);
        if self.pending.len() < self.committee.certificate_shares() {
            return Offer::Kept;
        }
        let valid = |i: u16, s: &[u8; 96]| Keys::fast_share(&self.cluster, i, &self.message) == *s;
        // Combining: genuine shares interpolate to the cluster signature; any other set gives
        // a value that is not it (modelled as a hash of the shares).
        let all_valid = self.pending.iter().all(|(i, s)| valid(*i, s));
        let sig = if all_valid {
            Keys::fast_cluster_sig(&self.cluster, &self.message)
        } else {
            let parts: Vec<&[u8]> = self.pending.values().map(|s| &s[..]).collect();
            expand(b"garbage", &parts)
        };
        #[cfg(feature = "sim-bugs")]
        let unverified = notary_core::sim_bugs::active(notary_core::sim_bugs::COMBINE_UNVERIFIED);
        #[cfg(not(feature = "sim-bugs"))]
        let unverified = false;
        if unverified || sig == Keys::fast_cluster_sig(&self.cluster, &self.message) {
            let sig = ClusterSignature(sig);
            self.combined = Some(sig);
            self.pending.clear();
            return Offer::Combined(sig);
        }
        let bad: Vec<u16> = self
            .pending
            .iter()
            .filter(|(i, s)| !valid(**i, s))
            .map(|(i, _)| *i)
            .collect();
        for r in &bad {
            self.pending.remove(r);
            self.rejected.insert(*r);
        }
        Offer::Invalid(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notary_types::{ClusterId, Height, MerkleHash, Timestamp};
    use rand::SeedableRng;

    fn header(h: u64) -> BlockHeader {
        BlockHeader {
            cluster_id: ClusterId::new("sim").unwrap(),
            height: Height(h),
            timestamp: Timestamp(5),
            leaf_count: 1,
            root: MerkleHash([h as u8; 32]),
            prev: notary_types::HeaderHash([0; 32]),
        }
    }

    fn combine_with_one_bad(real: bool) {
        let committee = Committee::new(4).unwrap();
        let keys = Keys::deal(
            real,
            committee,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(3),
        );
        let (h, other) = (header(1), header(2));
        let mut c = keys.collector(committee, &h);
        assert_eq!(c.add(0, &keys.share_key(0).sign(&h)), Offer::Kept);
        assert_eq!(
            c.add(1, &keys.share_key(1).sign(&other)),
            Offer::Invalid(vec![1])
        );
        let Offer::Combined(sig) = c.add(2, &keys.share_key(2).sign(&h)) else {
            panic!("two valid shares combine for n = 4")
        };
        assert!(keys.verify_header(&h, &sig).is_ok());
        assert!(keys.verify_header(&other, &sig).is_err());
        let mut forged = sig;
        forged.0[10] ^= 1;
        assert!(keys.verify_header(&h, &forged).is_err());
    }

    #[test]
    fn stand_in_tells_valid_from_forged_like_real_bls() {
        combine_with_one_bad(false);
        combine_with_one_bad(true);
    }
}
