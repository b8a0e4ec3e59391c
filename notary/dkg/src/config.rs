//! The ceremony's public parameters and its quorum arithmetic, validated once.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SetupError;

/// The most participants a ceremony accepts: every limit below scales with it.
pub const PARTICIPANTS_MAX: usize = 256;

/// A participant's position in the ceremony, `0..n`. Its BLS key share is the
/// joint polynomial evaluated at `index + 1`, exactly as `blsttc::SecretKeySet::secret_key_share(index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParticipantIndex(pub u16);

impl ParticipantIndex {
    /// The index as a `usize`, for vector positions.
    pub fn get(self) -> usize {
        usize::from(self.0)
    }

    /// The evaluation point of this participant's share: `index + 1` (0 is the secret).
    pub fn point(self) -> u64 {
        u64::from(self.0) + 1
    }
}

impl std::fmt::Display for ParticipantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Names one run of the ceremony: the cluster it is for and a fresh session nonce, so that
/// messages of one run can never be replayed into another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyId {
    /// The cluster id, as in the cluster file.
    pub cluster_id: String,
    /// A fresh nonce agreed for this run (hex), e.g. chosen by the agencies when they schedule it.
    pub session: String,
}

impl CeremonyId {
    /// A ceremony id from a cluster id and the session nonce bytes.
    pub fn new(cluster_id: impl Into<String>, session_nonce: &[u8]) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            session: hex::encode(session_nonce),
        }
    }

    /// Length-prefixed bytes, so that no two ids share an encoding.
    pub(crate) fn hash_into(&self, h: &mut Sha256) {
        for part in [self.cluster_id.as_bytes(), self.session.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
}

/// Everything public that all participants must agree on before the ceremony starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyConfig {
    /// Which run this is.
    pub ceremony: CeremonyId,
    /// The threshold `t` (= f): a signature needs `t + 1` shares; up to `t` participants may be faulty.
    pub threshold: usize,
    /// Every participant's long-term ed25519 key, by index; `n` is its length.
    pub participants: Vec<VerifyingKey>,
}

impl CeremonyConfig {
    /// Validates the parameters.
    ///
    /// Quorum arithmetic, in one place: with `n >= 3t + 1` participants and at most `t`
    /// faulty, at least `n - t >= 2t + 1` are honest, so
    /// - at least `t + 1` honest dealers are always qualified (secrecy: no coalition of `t`
    ///   knows a qualified honest dealer's polynomial), and
    /// - a confirmation quorum of `n - t` matching results cannot be reached by two different
    ///   results: two such quorums overlap in `n - 2t >= t + 1` participants, one of them honest.
    pub fn new(
        ceremony: CeremonyId,
        threshold: usize,
        participants: Vec<VerifyingKey>,
    ) -> Result<Self, SetupError> {
        let n = participants.len();
        if n > PARTICIPANTS_MAX {
            return Err(SetupError::TooManyParticipants {
                n,
                max: PARTICIPANTS_MAX,
            });
        }
        if n < 3 * threshold + 1 || n == 0 {
            return Err(SetupError::ThresholdTooHigh { n, threshold });
        }
        for (i, key) in participants.iter().enumerate() {
            if let Some(j) = participants[..i].iter().position(|k| k == key) {
                return Err(SetupError::DuplicateKey {
                    first: j,
                    second: i,
                });
            }
        }
        Ok(Self {
            ceremony,
            threshold,
            participants,
        })
    }

    /// The number of participants `n`.
    pub fn n(&self) -> usize {
        self.participants.len()
    }

    /// The most faulty participants the ceremony tolerates: `t`.
    pub fn faults_max(&self) -> usize {
        self.threshold
    }

    /// Matching confirmations a result needs: `n - t`.
    pub fn confirmations_min(&self) -> usize {
        self.n() - self.threshold
    }

    /// Every index `0..n`.
    pub fn indices(&self) -> impl Iterator<Item = ParticipantIndex> {
        (0..self.n()).map(|i| ParticipantIndex(i as u16))
    }

    /// The key of a participant, if the index is in range.
    pub fn key(&self, index: ParticipantIndex) -> Option<&VerifyingKey> {
        self.participants.get(index.get())
    }

    /// The public form stored in a transcript.
    pub fn to_public(&self) -> PublicConfig {
        PublicConfig {
            ceremony: self.ceremony.clone(),
            threshold: self.threshold,
            participants: self
                .participants
                .iter()
                .map(|k| hex::encode(k.to_bytes()))
                .collect(),
        }
    }
}

/// The serialisable form of [`CeremonyConfig`] (keys in hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicConfig {
    /// Which run this is.
    pub ceremony: CeremonyId,
    /// The threshold `t`.
    pub threshold: usize,
    /// The participants' ed25519 keys, hex.
    pub participants: Vec<String>,
}

impl PublicConfig {
    /// Decodes and validates.
    pub fn to_config(&self) -> Result<CeremonyConfig, SetupError> {
        let mut keys = Vec::with_capacity(self.participants.len());
        for (i, h) in self.participants.iter().enumerate() {
            let bytes: [u8; 32] = hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(SetupError::BadKey { index: i })?;
            keys.push(
                VerifyingKey::from_bytes(&bytes).map_err(|_| SetupError::BadKey { index: i })?,
            );
        }
        CeremonyConfig::new(self.ceremony.clone(), self.threshold, keys)
    }
}
