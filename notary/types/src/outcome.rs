//! The notary's decision on one request and the Merkle leaf that certifies it.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::{RequestDigest, StateRef, Timestamp, TxId, TxIdHash};
use crate::limits::STATE_REFS_COUNT_MAX;
use crate::wire::{DecodeError, Reader, Writer};

/// The domain tag that starts a leaf's canonical bytes.
pub const LEAF_TAG: &str = "notary/leaf/v1";

/// A state that was already consumed, named by the SHA-256 of the consuming transaction's id
/// (Corda's privacy rule: never the id itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsumedState {
    /// The state asked for.
    pub state: StateRef,
    /// SHA-256 of the id of the transaction that consumed it.
    pub consuming_tx_hash: TxIdHash,
}

/// The notary's answer to one committed request. Every outcome is certified, rejections too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The inputs are now consumed by this transaction.
    Committed,
    /// The block timestamp (the notary's time) was outside the request's time window.
    TimeWindowInvalid {
        /// The block timestamp the window was checked against.
        notary_time: Timestamp,
    },
    /// One or more inputs were already consumed by other transactions: all of them are listed.
    InputsConsumed {
        /// The consumed inputs, in the request's order.
        conflicts: Vec<ConsumedState>,
    },
    /// One or more references point at consumed states: all of them are listed.
    ReferencesConsumed {
        /// The consumed references, in the request's order.
        conflicts: Vec<ConsumedState>,
    },
    /// This transaction id was already decided for different request content: refused.
    TxIdReused {
        /// The digest of the request content decided first.
        original_digest: RequestDigest,
    },
}

impl Outcome {
    /// Whether the transaction's inputs were consumed by this request.
    pub fn is_committed(&self) -> bool {
        matches!(self, Outcome::Committed)
    }

    fn code(&self) -> u8 {
        match self {
            Outcome::Committed => 0,
            Outcome::TimeWindowInvalid { .. } => 1,
            Outcome::InputsConsumed { .. } => 2,
            Outcome::ReferencesConsumed { .. } => 3,
            Outcome::TxIdReused { .. } => 4,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Committed => write!(f, "committed"),
            Outcome::TimeWindowInvalid { notary_time } => {
                write!(f, "time window invalid at notary time {} ms", notary_time.0)
            }
            Outcome::InputsConsumed { conflicts } => {
                write!(f, "{} inputs already consumed", conflicts.len())
            }
            Outcome::ReferencesConsumed { conflicts } => {
                write!(f, "{} references already consumed", conflicts.len())
            }
            Outcome::TxIdReused { original_digest } => {
                write!(
                    f,
                    "transaction id already decided for request {original_digest}"
                )
            }
        }
    }
}

/// One Merkle leaf: (transaction id, request digest, outcome). The digest makes a certificate
/// bind the exact request content, not only the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Leaf {
    /// The transaction decided.
    pub tx_id: TxId,
    /// SHA-256 of the request's canonical bytes.
    pub request_digest: RequestDigest,
    /// The decision.
    pub outcome: Outcome,
}

impl Leaf {
    /// The canonical bytes (layout in `docs/PROTOCOL.md`, section 3).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + LEAF_TAG.len() + 65 + 8);
        w.tag(LEAF_TAG);
        w.fixed(&self.tx_id.0);
        w.fixed(&self.request_digest.0);
        w.u8(self.outcome.code());
        match &self.outcome {
            Outcome::Committed => {}
            Outcome::TimeWindowInvalid { notary_time } => w.u64(notary_time.0),
            Outcome::InputsConsumed { conflicts } | Outcome::ReferencesConsumed { conflicts } => {
                w.u32(
                    u32::try_from(conflicts.len())
                        .expect("conflicts are bounded by the request's state refs"),
                );
                for c in conflicts {
                    w.fixed(&c.state.to_bytes());
                    w.fixed(&c.consuming_tx_hash.0);
                }
            }
            Outcome::TxIdReused { original_digest } => w.fixed(&original_digest.0),
        }
        w.into_bytes()
    }

    /// Decodes canonical bytes strictly (the inverse of [`Leaf::canonical_bytes`]).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.tag(LEAF_TAG)?;
        let tx_id = TxId(r.array()?);
        let request_digest = RequestDigest(r.array()?);
        let outcome = match r.u8()? {
            0 => Outcome::Committed,
            1 => Outcome::TimeWindowInvalid {
                notary_time: Timestamp(r.u64()?),
            },
            code @ (2 | 3) => {
                let count = r.count("conflicts", STATE_REFS_COUNT_MAX)?;
                let mut conflicts = Vec::with_capacity(count);
                for _ in 0..count {
                    conflicts.push(ConsumedState {
                        state: StateRef::from_bytes(&r.array()?),
                        consuming_tx_hash: TxIdHash(r.array()?),
                    });
                }
                if code == 2 {
                    Outcome::InputsConsumed { conflicts }
                } else {
                    Outcome::ReferencesConsumed { conflicts }
                }
            }
            4 => Outcome::TxIdReused {
                original_digest: RequestDigest(r.array()?),
            },
            other => {
                return Err(DecodeError::Invalid {
                    field: "outcome",
                    reason: format!("unknown outcome code {other}"),
                })
            }
        };
        r.finish()?;
        Ok(Self {
            tx_id,
            request_digest,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        let conflict =
            (any::<[u8; 32]>(), any::<u32>(), any::<[u8; 32]>()).prop_map(|(t, i, h)| {
                ConsumedState {
                    state: StateRef {
                        tx_id: TxId(t),
                        index: i,
                    },
                    consuming_tx_hash: TxIdHash(h),
                }
            });
        let conflicts = proptest::collection::vec(conflict, 0..5);
        prop_oneof![
            Just(Outcome::Committed),
            (0u64..253_402_300_800_000).prop_map(|t| Outcome::TimeWindowInvalid {
                notary_time: Timestamp(t)
            }),
            conflicts
                .clone()
                .prop_map(|conflicts| Outcome::InputsConsumed { conflicts }),
            conflicts.prop_map(|conflicts| Outcome::ReferencesConsumed { conflicts }),
            any::<[u8; 32]>().prop_map(|d| Outcome::TxIdReused {
                original_digest: RequestDigest(d)
            }),
        ]
    }

    proptest! {
        #[test]
        fn leaf_bytes_and_json_round_trip(tx in any::<[u8; 32]>(), d in any::<[u8; 32]>(), outcome in arb_outcome()) {
            let leaf = Leaf { tx_id: TxId(tx), request_digest: RequestDigest(d), outcome };
            prop_assert_eq!(Leaf::from_canonical_bytes(&leaf.canonical_bytes()).unwrap(), leaf.clone());
            let json = serde_json::to_string(&leaf).unwrap();
            prop_assert_eq!(serde_json::from_str::<Leaf>(&json).unwrap(), leaf);
        }

        #[test]
        fn leaf_decoding_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Leaf::from_canonical_bytes(&bytes);
        }
    }

    #[test]
    fn unknown_outcome_codes_are_refused() {
        let leaf = Leaf {
            tx_id: TxId([1; 32]),
            request_digest: RequestDigest([2; 32]),
            outcome: Outcome::Committed,
        };
        let mut bytes = leaf.canonical_bytes();
        *bytes.last_mut().unwrap() = 9;
        assert!(matches!(
            Leaf::from_canonical_bytes(&bytes),
            Err(DecodeError::Invalid {
                field: "outcome",
                ..
            })
        ));
    }
}
