//! Test support shared by every `Store` implementation: a request fixture, the conformance
//! suite, and the reference-model check of the double-spend function (with a proptest strategy).
//! Compiled for this crate's tests and, for other crates, with the `testing` feature.

use std::collections::{BTreeSet, HashMap};

use notary_types::ed25519_dalek::SigningKey;
use notary_types::{
    ClusterId, ClusterSignature, ConsumedState, Height, NotarisationRequest, Outcome,
    RequestFields, RequesterKey, StateRef, TimeWindow, Timestamp, TxId,
};
use proptest::prelude::*;

use crate::machine::{apply_committed_block, tx_status, TxStatus};
use crate::stateless::{check, ClusterPolicy, VerifiedRequest};
use crate::store::{Resolution, Store, StoreError};

/// A cluster with one permitted requester, and helpers to build verified requests.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The cluster id (`test-cluster`).
    pub cluster_id: ClusterId,
    /// The policy permitting [`Fixture::key`].
    pub policy: ClusterPolicy,
    /// The requester's signing key (fixed bytes).
    pub key: SigningKey,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// The fixture.
    pub fn new() -> Self {
        let key = SigningKey::from_bytes(&[0x42; 32]);
        let cluster_id = ClusterId::new("test-cluster").expect("a valid literal id");
        let policy = ClusterPolicy::new(
            cluster_id.clone(),
            [RequesterKey(key.verifying_key().to_bytes())],
        )
        .expect("a key from fixed bytes is a valid strong key");
        Self {
            cluster_id,
            policy,
            key,
        }
    }

    /// A signed, verified request (inputs and references are sorted and deduplicated).
    pub fn request(
        &self,
        tx_id: TxId,
        inputs: &[StateRef],
        references: &[StateRef],
        time_window: Option<TimeWindow>,
    ) -> VerifiedRequest {
        let mut fields = RequestFields {
            cluster_id: self.cluster_id.clone(),
            tx_id,
            inputs: inputs.to_vec(),
            references: references.to_vec(),
            time_window,
            requester: RequesterKey([0; 32]),
        };
        fields.normalise();
        check(&self.policy, NotarisationRequest::sign(fields, &self.key))
            .expect("fixture requests pass the stateless checks")
    }

    /// Applies one block at `height` with timestamp `timestamp` and returns each request's
    /// outcome (duplicates resolved to their original leaf).
    pub fn apply<S: Store + ?Sized>(
        &self,
        store: &S,
        height: u64,
        timestamp: u64,
        requests: &[VerifiedRequest],
    ) -> Result<Vec<Outcome>, StoreError> {
        let record = apply_committed_block(
            store,
            &self.cluster_id,
            Height(height),
            Timestamp(timestamp),
            requests,
            vec![height as u8],
        )?;
        record
            .resolutions
            .iter()
            .map(|r| match r {
                Resolution::Decided { leaf_index } => {
                    Ok(record.leaves[*leaf_index as usize].outcome.clone())
                }
                Resolution::Duplicate { height, leaf_index } => {
                    let original = store
                        .block(*height)?
                        .ok_or(StoreError::MissingBlock { height: height.0 })?;
                    Ok(original.leaves[*leaf_index as usize].outcome.clone())
                }
            })
            .collect()
    }
}

/// State ref number `i` of the small universe the model tests use.
pub fn state(i: u8) -> StateRef {
    StateRef {
        tx_id: TxId([0xEE; 32]),
        index: u32::from(i),
    }
}

/// Transaction id number `i`.
pub fn tx(i: u8) -> TxId {
    TxId([i; 32])
}

/// One request of a generated scenario, in the model's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Transaction number.
    pub tx: u8,
    /// Input state numbers.
    pub inputs: BTreeSet<u8>,
    /// Reference state numbers (disjoint from inputs).
    pub references: BTreeSet<u8>,
    /// Optional window (from, until) in ms; either may be absent, not both.
    pub window: Option<(Option<u64>, Option<u64>)>,
}

impl RequestSpec {
    fn time_window(&self) -> Option<TimeWindow> {
        self.window.map(|(f, u)| {
            TimeWindow::new(f.map(Timestamp), u.map(Timestamp))
                .expect("the strategy only builds non-empty windows")
        })
    }
    fn verified(&self, fixture: &Fixture) -> VerifiedRequest {
        let inputs: Vec<StateRef> = self.inputs.iter().map(|i| state(*i)).collect();
        let refs: Vec<StateRef> = self.references.iter().map(|i| state(*i)).collect();
        fixture.request(tx(self.tx), &inputs, &refs, self.time_window())
    }
}

/// A scenario: blocks of requests; block `k` (0-based) has timestamp `1000 * (k + 1)` ms.
pub fn arb_blocks() -> impl Strategy<Value = Vec<Vec<RequestSpec>>> {
    let window = prop_oneof![
        Just(None),
        (0u64..6000, 1u64..3000).prop_map(|(f, len)| Some((Some(f), Some(f + len)))),
        (0u64..6000).prop_map(|f| Some((Some(f), None))),
        (1u64..6000).prop_map(|u| Some((None, Some(u)))),
    ];
    let spec = (
        0u8..6,
        proptest::collection::btree_set(0u8..12, 0..4),
        proptest::collection::btree_set(0u8..12, 0..3),
        window,
    )
        .prop_map(|(tx, inputs, references, window)| RequestSpec {
            references: references.difference(&inputs).copied().collect(),
            tx,
            inputs,
            window,
        });
    // Blocks draw from a small pool, so exact duplicates and reused ids both occur often.
    proptest::collection::vec(spec, 1..10).prop_flat_map(|pool| {
        let n = pool.len();
        proptest::collection::vec(proptest::collection::vec(0..n, 0..6), 1..6).prop_map(
            move |blocks| {
                blocks
                    .into_iter()
                    .map(|b| b.into_iter().map(|i| pool[i].clone()).collect())
                    .collect()
            },
        )
    })
}

/// The reference model: a map of consumed states and the first decision per transaction.
#[derive(Debug, Default)]
struct Model {
    consumed: HashMap<u8, u8>,
    decided: HashMap<u8, (RequestSpec, Outcome)>,
}

impl Model {
    fn decide(&mut self, spec: &RequestSpec, timestamp: u64, fixture: &Fixture) -> Outcome {
        if let Some((first, outcome)) = self.decided.get(&spec.tx) {
            return if first == spec {
                outcome.clone()
            } else {
                Outcome::TxIdReused {
                    original_digest: first.verified(fixture).digest(),
                }
            };
        }
        let conflicts = |states: &BTreeSet<u8>, consumed: &HashMap<u8, u8>| -> Vec<ConsumedState> {
            states
                .iter()
                .filter_map(|s| {
                    consumed.get(s).map(|t| ConsumedState {
                        state: state(*s),
                        consuming_tx_hash: tx(*t).hashed(),
                    })
                })
                .collect()
        };
        let in_window = spec.window.is_none_or(|(f, u)| {
            f.is_none_or(|f| f <= timestamp) && u.is_none_or(|u| timestamp < u)
        });
        let outcome = if !in_window {
            Outcome::TimeWindowInvalid {
                notary_time: Timestamp(timestamp),
            }
        } else if !conflicts(&spec.inputs, &self.consumed).is_empty() {
            Outcome::InputsConsumed {
                conflicts: conflicts(&spec.inputs, &self.consumed),
            }
        } else if !conflicts(&spec.references, &self.consumed).is_empty() {
            Outcome::ReferencesConsumed {
                conflicts: conflicts(&spec.references, &self.consumed),
            }
        } else {
            for s in &spec.inputs {
                self.consumed.insert(*s, spec.tx);
            }
            Outcome::Committed
        };
        self.decided
            .insert(spec.tx, (spec.clone(), outcome.clone()));
        outcome
    }
}

/// Applies `blocks` to an empty `store` and checks every answer, and the final consumed set,
/// against the reference model. Returns a description of the first difference.
pub fn check_against_model<S: Store + ?Sized>(
    store: &S,
    blocks: &[Vec<RequestSpec>],
) -> Result<(), String> {
    let fixture = Fixture::new();
    let mut model = Model::default();
    for (k, block) in blocks.iter().enumerate() {
        let timestamp = 1000 * (k as u64 + 1);
        let requests: Vec<VerifiedRequest> = block.iter().map(|s| s.verified(&fixture)).collect();
        let got = fixture
            .apply(store, k as u64 + 1, timestamp, &requests)
            .map_err(|e| format!("block {}: {e}", k + 1))?;
        for (i, spec) in block.iter().enumerate() {
            let want = model.decide(spec, timestamp, &fixture);
            if got[i] != want {
                return Err(format!(
                    "block {} request {i} {spec:?}: got {:?}, model {want:?}",
                    k + 1,
                    got[i]
                ));
            }
        }
    }
    for s in 0..=u8::MAX {
        let got = store.consumed_by(&state(s)).map_err(|e| e.to_string())?;
        let want = model.consumed.get(&s).map(|t| tx(*t));
        if got != want {
            return Err(format!("state {s}: store says {got:?}, model {want:?}"));
        }
    }
    Ok(())
}

/// The conformance suite: every check runs against a fresh store from `make`. Panics with a
/// message naming the broken rule.
pub fn conformance<S: Store>(mut make: impl FnMut() -> S) {
    empty_store_reads_nothing(&make());
    applied_block_reads_back(&make());
    reapplying_an_applied_height_changes_nothing(&make());
    heights_must_be_contiguous(&make());
    certificates_and_safety_records_round_trip(&make());
    let blocks = fixed_scenario();
    if let Err(e) = check_against_model(&make(), &blocks) {
        panic!("model check failed: {e}");
    }
}

fn fixed_scenario() -> Vec<Vec<RequestSpec>> {
    let spec = |tx: u8, inputs: &[u8], references: &[u8], window| RequestSpec {
        tx,
        inputs: inputs.iter().copied().collect(),
        references: references.iter().copied().collect(),
        window,
    };
    vec![
        vec![
            spec(1, &[1, 2], &[], None),
            spec(2, &[2], &[], None),
            spec(1, &[1, 2], &[], None),
        ],
        vec![
            spec(3, &[3], &[1], None),
            spec(4, &[4], &[5], Some((Some(3000), None))),
        ],
        vec![
            spec(1, &[1], &[], None),
            spec(5, &[5], &[], Some((Some(2000), Some(3001)))),
        ],
    ]
}

fn empty_store_reads_nothing<S: Store>(store: &S) {
    assert_eq!(
        store.applied_height().unwrap(),
        Height(0),
        "an empty store has applied nothing"
    );
    assert_eq!(store.block(Height(1)).unwrap(), None);
    assert_eq!(store.decision(&tx(1)).unwrap(), None);
    assert_eq!(store.consumed_by(&state(1)).unwrap(), None);
    assert_eq!(store.certificate(Height(1)).unwrap(), None);
    assert_eq!(store.load_safety_record().unwrap(), None);
    assert_eq!(tx_status(store, &tx(1)).unwrap(), TxStatus::Unknown);
}

fn applied_block_reads_back<S: Store>(store: &S) {
    let f = Fixture::new();
    let requests = [
        f.request(tx(1), &[state(1), state(2)], &[], None),
        f.request(tx(2), &[state(2)], &[], None),
    ];
    let record = apply_committed_block(
        store,
        &f.cluster_id,
        Height(1),
        Timestamp(5),
        &requests,
        vec![9, 9],
    )
    .unwrap();
    assert_eq!(store.applied_height().unwrap(), Height(1));
    assert_eq!(
        store.block(Height(1)).unwrap().as_ref(),
        Some(&record),
        "the block record reads back"
    );
    assert_eq!(record.consensus_bytes, vec![9, 9]);
    assert_eq!(record.requests.len(), 2);
    assert_eq!(store.consumed_by(&state(1)).unwrap(), Some(tx(1)));
    assert_eq!(store.consumed_by(&state(2)).unwrap(), Some(tx(1)));
    let d = store
        .decision(&tx(2))
        .unwrap()
        .expect("rejections are decisions too");
    assert_eq!(
        (d.height, d.leaf_index, d.request_digest),
        (Height(1), 1, requests[1].digest())
    );
    assert!(matches!(
        tx_status(store, &tx(2)).unwrap(),
        TxStatus::Uncertified {
            height: Height(1),
            ..
        }
    ));
}

fn reapplying_an_applied_height_changes_nothing<S: Store>(store: &S) {
    let f = Fixture::new();
    let first = [f.request(tx(1), &[state(1)], &[], None)];
    let record = apply_committed_block(
        store,
        &f.cluster_id,
        Height(1),
        Timestamp(5),
        &first,
        vec![],
    )
    .unwrap();
    let other = [f.request(tx(2), &[state(2)], &[], None)];
    let again = apply_committed_block(
        store,
        &f.cluster_id,
        Height(1),
        Timestamp(6),
        &other,
        vec![1],
    )
    .unwrap();
    assert_eq!(again, record, "re-applying returns the stored results");
    let write = crate::machine::decide_block(
        store,
        &f.cluster_id,
        Height(1),
        Timestamp(6),
        &other,
        vec![],
    )
    .unwrap();
    store.apply_block(&write).unwrap();
    assert_eq!(
        store.block(Height(1)).unwrap(),
        Some(record),
        "a store-level re-apply changes nothing"
    );
    assert_eq!(store.consumed_by(&state(2)).unwrap(), None);
    assert_eq!(store.applied_height().unwrap(), Height(1));
}

fn heights_must_be_contiguous<S: Store>(store: &S) {
    let f = Fixture::new();
    let err = apply_committed_block(store, &f.cluster_id, Height(2), Timestamp(5), &[], vec![])
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::HeightGap {
            expected: 1,
            got: 2
        }
    );
    let mut write =
        crate::machine::decide_block(store, &f.cluster_id, Height(1), Timestamp(5), &[], vec![])
            .unwrap();
    write.record.height = Height(3);
    assert_eq!(
        store.apply_block(&write).unwrap_err(),
        StoreError::HeightGap {
            expected: 1,
            got: 3
        }
    );
    assert_eq!(store.applied_height().unwrap(), Height(0));
}

fn certificates_and_safety_records_round_trip<S: Store>(store: &S) {
    let f = Fixture::new();
    apply_committed_block(store, &f.cluster_id, Height(1), Timestamp(5), &[], vec![]).unwrap();
    let sig = ClusterSignature([7; 96]);
    store.put_certificate(Height(1), &sig).unwrap();
    assert_eq!(store.certificate(Height(1)).unwrap(), Some(sig));
    assert_eq!(store.certificate(Height(2)).unwrap(), None);
    // Each header names the one below it, and a certificate higher up is found from below.
    for h in 2..=4 {
        apply_committed_block(
            store,
            &f.cluster_id,
            Height(h),
            Timestamp(5 + h),
            &[],
            vec![],
        )
        .unwrap();
    }
    let header = |h: u64| store.header(Height(h)).unwrap().unwrap();
    assert_eq!(header(1).prev, notary_types::HeaderHash([0; 32]));
    for h in 2..=4 {
        assert_eq!(header(h), store.block(Height(h)).unwrap().unwrap().header());
        assert_eq!(header(h).prev, header(h - 1).hash(), "height {h}");
    }
    assert_eq!(store.header(Height(5)).unwrap(), None);
    let later = ClusterSignature([8; 96]);
    store.put_certificate(Height(4), &later).unwrap();
    assert_eq!(
        store.certificate_from(Height(1)).unwrap(),
        Some((Height(1), sig))
    );
    assert_eq!(
        store.certificate_from(Height(2)).unwrap(),
        Some((Height(4), later))
    );
    assert_eq!(store.certificate_from(Height(5)).unwrap(), None);
    store.save_safety_record(b"round 1").unwrap();
    store.save_safety_record(&vec![3u8; 100_000]).unwrap();
    assert_eq!(
        store.load_safety_record().unwrap(),
        Some(vec![3u8; 100_000]),
        "the last record wins"
    );
}
