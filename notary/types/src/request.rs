//! The notarisation request: its fields, canonical bytes (what the requester signs), wire bytes
//! (canonical bytes + signature, what travels between replicas) and the well-formedness rules.

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use thiserror::Error;

use crate::ids::{ClusterId, RequestDigest, RequesterKey, StateRef, TimeWindow, Timestamp, TxId};
use crate::limits::{REQUEST_BYTES_MAX, STATE_REFS_COUNT_MAX, STATE_REF_BYTES};
use crate::wire::{DecodeError, Reader, Writer};

/// The domain tag that starts a request's canonical bytes.
pub const REQUEST_TAG: &str = "notary/request/v1";

/// An ed25519 signature (RFC 8032, 64 bytes) by the requester over the canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestSignature(#[serde(with = "crate::hexser")] pub [u8; 64]);

impl fmt::Debug for RequestSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestSignature({})", hex::encode(self.0))
    }
}

/// What a requester asks the notary to decide: everything the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestFields {
    /// The cluster this request is meant for (a request for another cluster is refused).
    pub cluster_id: ClusterId,
    /// The transaction being notarised.
    pub tx_id: TxId,
    /// The states to consume: sorted ascending, unique.
    pub inputs: Vec<StateRef>,
    /// The states that must be unconsumed but are not consumed: sorted ascending, unique,
    /// disjoint from `inputs`.
    #[serde(default)]
    pub references: Vec<StateRef>,
    /// The window the block timestamp must fall in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
    /// The requester's ed25519 public key: must be on the cluster's list of permitted ledger nodes.
    pub requester: RequesterKey,
}

/// A request as sent by a ledger node: the fields and the requester's signature over their
/// canonical bytes. Not yet checked: see `notary_core::stateless` for the checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NotarisationRequest {
    /// The signed fields.
    #[serde(flatten)]
    pub fields: RequestFields,
    /// The signature over `fields.canonical_bytes()`.
    pub signature: RequestSignature,
}

/// Why a request is malformed. The numbers (counts, limits, positions) are in each message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedRequest {
    /// Too many inputs plus references.
    #[error("{count} inputs plus references exceed the limit of {max}")]
    TooManyStateRefs {
        /// Inputs plus references in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded request is too large.
    #[error("request of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The size of the wire encoding.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Inputs are not sorted ascending and unique: the first offending position.
    #[error("inputs not sorted and unique at position {position}")]
    InputsNotSorted {
        /// Index of the input that is not greater than its predecessor.
        position: usize,
    },
    /// References are not sorted ascending and unique: the first offending position.
    #[error("references not sorted and unique at position {position}")]
    ReferencesNotSorted {
        /// Index of the reference that is not greater than its predecessor.
        position: usize,
    },
    /// A state is both consumed and referenced.
    #[error("state {state} is both an input and a reference")]
    InputAlsoReference {
        /// The state listed twice.
        state: StateRef,
    },
    /// The bytes do not decode.
    #[error("undecodable request: {0}")]
    Decode(#[from] DecodeError),
}

impl RequestFields {
    /// Sorts and deduplicates inputs and references (a convenience for request builders).
    pub fn normalise(&mut self) {
        self.inputs.sort_unstable();
        self.inputs.dedup();
        self.references.sort_unstable();
        self.references.dedup();
    }

    /// The size of the wire encoding (canonical bytes + signature), computed without encoding.
    pub fn wire_len(&self) -> usize {
        let window_bytes = match self.time_window {
            None => 1,
            Some(w) => 1 + 8 * (usize::from(w.from().is_some()) + usize::from(w.until().is_some())),
        };
        1 + REQUEST_TAG.len()
            + 1
            + self.cluster_id.as_str().len()
            + 32
            + 8
            + STATE_REF_BYTES * (self.inputs.len() + self.references.len())
            + window_bytes
            + 32
            + 64
    }

    /// Checks the limits and the ordering rules (everything but cluster, requester and signature).
    pub fn check_well_formed(&self) -> Result<(), MalformedRequest> {
        let count = self.inputs.len() + self.references.len();
        if count > STATE_REFS_COUNT_MAX {
            return Err(MalformedRequest::TooManyStateRefs {
                count,
                max: STATE_REFS_COUNT_MAX,
            });
        }
        let bytes = self.wire_len();
        if bytes > REQUEST_BYTES_MAX {
            return Err(MalformedRequest::TooLarge {
                bytes,
                max: REQUEST_BYTES_MAX,
            });
        }
        if let Some(position) = first_unsorted(&self.inputs) {
            return Err(MalformedRequest::InputsNotSorted { position });
        }
        if let Some(position) = first_unsorted(&self.references) {
            return Err(MalformedRequest::ReferencesNotSorted { position });
        }
        if let Some(state) = first_common(&self.inputs, &self.references) {
            return Err(MalformedRequest::InputAlsoReference { state });
        }
        Ok(())
    }

    /// The canonical bytes the requester signs (layout in `docs/PROTOCOL.md`, section 2).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.wire_len());
        self.write_canonical(&mut w);
        w.into_bytes()
    }

    fn write_canonical(&self, w: &mut Writer) {
        w.tag(REQUEST_TAG);
        w.cluster_id(&self.cluster_id);
        w.fixed(&self.tx_id.0);
        for list in [&self.inputs, &self.references] {
            w.u32(u32::try_from(list.len()).expect("state ref lists are far below 4 billion"));
            for s in list {
                w.fixed(&s.to_bytes());
            }
        }
        match self.time_window {
            None => w.u8(0),
            Some(win) => {
                w.u8(u8::from(win.from().is_some()) | (u8::from(win.until().is_some()) << 1));
                if let Some(from) = win.from() {
                    w.u64(from.0);
                }
                if let Some(until) = win.until() {
                    w.u64(until.0);
                }
            }
        }
        w.fixed(&self.requester.0);
    }

    fn read_canonical(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.tag(REQUEST_TAG)?;
        let cluster_id = r.cluster_id()?;
        let tx_id = TxId(r.array()?);
        let inputs = read_state_refs(r, "inputs", STATE_REFS_COUNT_MAX)?;
        let references = read_state_refs(r, "references", STATE_REFS_COUNT_MAX - inputs.len())?;
        let flags = r.u8()?;
        if flags > 3 {
            return Err(DecodeError::Invalid {
                field: "time_window",
                reason: format!("flags byte {flags} is above 3"),
            });
        }
        let from = (flags & 1 != 0)
            .then(|| r.u64())
            .transpose()?
            .map(Timestamp);
        let until = (flags & 2 != 0)
            .then(|| r.u64())
            .transpose()?
            .map(Timestamp);
        let time_window = if flags == 0 {
            None
        } else {
            Some(
                TimeWindow::new(from, until).map_err(|e| DecodeError::Invalid {
                    field: "time_window",
                    reason: e.to_string(),
                })?,
            )
        };
        let requester = RequesterKey(r.array()?);
        Ok(Self {
            cluster_id,
            tx_id,
            inputs,
            references,
            time_window,
            requester,
        })
    }

    /// SHA-256 of the canonical bytes: the request content a leaf binds.
    pub fn digest(&self) -> RequestDigest {
        RequestDigest(Sha256::digest(self.canonical_bytes()).into())
    }
}

fn read_state_refs(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<Vec<StateRef>, DecodeError> {
    let count = r.count(field, max)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(StateRef::from_bytes(&r.array()?));
    }
    Ok(out)
}

fn first_unsorted(list: &[StateRef]) -> Option<usize> {
    list.windows(2).position(|w| w[0] >= w[1]).map(|i| i + 1)
}

/// The first state in both sorted lists (a merge walk: linear, no allocation).
fn first_common(a: &[StateRef], b: &[StateRef]) -> Option<StateRef> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(a[i]),
        }
    }
    None
}

impl NotarisationRequest {
    /// Signs `fields` with `key`, first setting `fields.requester` to the key's public half.
    pub fn sign(mut fields: RequestFields, key: &SigningKey) -> Self {
        fields.requester = RequesterKey(key.verifying_key().to_bytes());
        let signature = RequestSignature(key.sign(&fields.canonical_bytes()).to_bytes());
        Self { fields, signature }
    }

    /// The wire bytes: canonical bytes followed by the 64-byte signature.
    pub fn to_wire_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.fields.wire_len());
        self.fields.write_canonical(&mut w);
        w.fixed(&self.signature.0);
        w.into_bytes()
    }

    /// Decodes wire bytes strictly (limits checked before allocating, no trailing bytes). Ordering
    /// rules are not checked here: that is [`RequestFields::check_well_formed`]'s job.
    pub fn from_wire_bytes(bytes: &[u8]) -> Result<Self, MalformedRequest> {
        if bytes.len() > REQUEST_BYTES_MAX {
            return Err(MalformedRequest::TooLarge {
                bytes: bytes.len(),
                max: REQUEST_BYTES_MAX,
            });
        }
        let mut r = Reader::new(bytes);
        let fields = RequestFields::read_canonical(&mut r)?;
        let signature = RequestSignature(r.array()?);
        r.finish()?;
        Ok(Self { fields, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn fields(inputs: Vec<StateRef>, references: Vec<StateRef>) -> RequestFields {
        RequestFields {
            cluster_id: ClusterId::new("wooden-dollars").unwrap(),
            tx_id: TxId([9; 32]),
            inputs,
            references,
            time_window: Some(TimeWindow::new(Some(Timestamp(1)), None).unwrap()),
            requester: RequesterKey([0; 32]),
        }
    }

    fn sref(b: u8, index: u32) -> StateRef {
        StateRef {
            tx_id: TxId([b; 32]),
            index,
        }
    }

    #[test]
    fn check_well_formed_names_the_first_unsorted_position() {
        let f = fields(vec![sref(1, 0), sref(1, 1), sref(1, 1)], vec![]);
        assert_eq!(
            f.check_well_formed(),
            Err(MalformedRequest::InputsNotSorted { position: 2 })
        );
        let f = fields(vec![], vec![sref(2, 0), sref(1, 0)]);
        assert_eq!(
            f.check_well_formed(),
            Err(MalformedRequest::ReferencesNotSorted { position: 1 })
        );
        let f = fields(vec![sref(1, 0), sref(3, 0)], vec![sref(2, 0), sref(3, 0)]);
        assert_eq!(
            f.check_well_formed(),
            Err(MalformedRequest::InputAlsoReference { state: sref(3, 0) })
        );
    }

    #[test]
    fn the_state_ref_limit_holds_at_the_bound_and_fails_one_above() {
        let many: Vec<StateRef> = (0..STATE_REFS_COUNT_MAX as u32)
            .map(|i| sref(0, i))
            .collect();
        let at_bound = fields(many[..9_000].to_vec(), many[9_000..].to_vec());
        assert_eq!(at_bound.check_well_formed(), Ok(()));
        let signed = NotarisationRequest::sign(at_bound, &key());
        assert!(signed.to_wire_bytes().len() <= REQUEST_BYTES_MAX);
        assert_eq!(
            NotarisationRequest::from_wire_bytes(&signed.to_wire_bytes()).unwrap(),
            signed
        );

        let mut over = many.clone();
        over.push(sref(1, 0));
        let err = fields(over, vec![]).check_well_formed().unwrap_err();
        assert_eq!(
            err,
            MalformedRequest::TooManyStateRefs {
                count: 10_001,
                max: 10_000
            }
        );
        assert!(err.to_string().contains("10001") && err.to_string().contains("10000"));
    }

    #[test]
    fn wire_decoding_refuses_oversized_and_trailing_input() {
        let signed = NotarisationRequest::sign(fields(vec![sref(1, 0)], vec![]), &key());
        let mut bytes = signed.to_wire_bytes();
        bytes.push(0);
        assert!(matches!(
            NotarisationRequest::from_wire_bytes(&bytes),
            Err(MalformedRequest::Decode(DecodeError::TrailingBytes {
                trailing_bytes: 1
            }))
        ));
        let huge = vec![0u8; REQUEST_BYTES_MAX + 1];
        assert!(matches!(
            NotarisationRequest::from_wire_bytes(&huge),
            Err(MalformedRequest::TooLarge { .. })
        ));
    }

    #[test]
    fn json_round_trips_and_uses_hex_and_rfc3339() {
        let signed = NotarisationRequest::sign(fields(vec![sref(1, 2)], vec![sref(3, 4)]), &key());
        let json = serde_json::to_string(&signed).unwrap();
        assert!(
            json.contains("\"time_window\":{\"from\":\"1970-01-01T00:00:00.001Z\"}"),
            "{json}"
        );
        assert!(json.contains(&hex::encode([9u8; 32])));
        let back: NotarisationRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
    }

    fn arb_state_ref() -> impl Strategy<Value = StateRef> {
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(t, index)| StateRef {
            tx_id: TxId(t),
            index,
        })
    }

    proptest! {
        #[test]
        fn wire_bytes_and_json_round_trip(
            inputs in proptest::collection::vec(arb_state_ref(), 0..20),
            references in proptest::collection::vec(arb_state_ref(), 0..20),
            from in proptest::option::of(0u64..1 << 40),
            len in 1u64..1 << 30,
            until_only in any::<bool>(),
        ) {
            let mut f = fields(inputs, references);
            f.time_window = match (from, until_only) {
                (None, false) => None,
                (None, true) => Some(TimeWindow::new(None, Some(Timestamp(len))).unwrap()),
                (Some(a), false) => Some(TimeWindow::new(Some(Timestamp(a)), Some(Timestamp(a + len))).unwrap()),
                (Some(a), true) => Some(TimeWindow::new(Some(Timestamp(a)), None).unwrap()),
            };
            let signed = NotarisationRequest::sign(f, &key());
            let wire = signed.to_wire_bytes();
            prop_assert_eq!(wire.len(), signed.fields.wire_len());
            prop_assert_eq!(NotarisationRequest::from_wire_bytes(&wire).unwrap(), signed.clone());
            let json = serde_json::to_string(&signed).unwrap();
            prop_assert_eq!(serde_json::from_str::<NotarisationRequest>(&json).unwrap(), signed);
        }

        #[test]
        fn wire_decoding_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = NotarisationRequest::from_wire_bytes(&bytes);
        }
    }
}
