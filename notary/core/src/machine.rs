//! The stateful half: the one deterministic double-spend function, applying committed blocks,
//! and rebuilding answers from the store.
//!
//! Checks per request, in block order (the first request in a block wins):
//! 1. tx id already decided: same request digest → the original answer (a duplicate, no new
//!    leaf); different digest → [`Outcome::TxIdReused`];
//! 2. time window against the block timestamp → [`Outcome::TimeWindowInvalid`];
//! 3. any input consumed → [`Outcome::InputsConsumed`] (all consumed inputs listed);
//! 4. any reference consumed → [`Outcome::ReferencesConsumed`] (all listed);
//! 5. otherwise [`Outcome::Committed`]: the inputs become consumed by this transaction.
//!
//! Every first decision of a tx id is final, rejections included: a retry with the same content
//! gets the same answer forever.

use std::collections::HashMap;

use notary_types::{
    BlockHeader, ClusterId, ClusterSignature, ConsumedState, HeaderHash, Height, Leaf, MerkleTree,
    NotarisationAnswer, Outcome, RequestDigest, StateRef, Timestamp, TxId,
};

use crate::stateless::VerifiedRequest;
use crate::store::{BlockRecord, BlockWrite, DecisionRecord, Resolution, Store, StoreError};

/// Decides one block: a pure function of (store state, cluster, height, timestamp, ordered
/// requests). Reads the store, writes nothing; returns the write that applies the block.
pub fn decide_block<S: Store + ?Sized>(
    store: &S,
    cluster_id: &ClusterId,
    height: Height,
    timestamp: Timestamp,
    requests: &[VerifiedRequest],
    consensus_bytes: Vec<u8>,
) -> Result<BlockWrite, StoreError> {
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut resolutions = Vec::with_capacity(requests.len());
    let mut consumed: HashMap<StateRef, TxId> = HashMap::new();
    let mut consumed_order: Vec<(StateRef, TxId)> = Vec::new();
    let mut decisions: HashMap<TxId, DecisionRecord> = HashMap::new();
    let mut decisions_order: Vec<(TxId, DecisionRecord)> = Vec::new();
    // Leaves of this block by (tx id, digest), so a repeated TxIdReused adds no second leaf.
    let mut block_leaves: HashMap<(TxId, RequestDigest), u32> = HashMap::new();

    for verified in requests {
        let fields = &verified.request().fields;
        let digest = verified.digest();
        if let Some(&leaf_index) = block_leaves.get(&(fields.tx_id, digest)) {
            resolutions.push(Resolution::Duplicate { height, leaf_index });
            continue;
        }
        let earlier = match decisions.get(&fields.tx_id) {
            Some(d) => Some(*d),
            None => store.decision(&fields.tx_id)?,
        };
        let outcome = match earlier {
            Some(d) if d.request_digest == digest => {
                resolutions.push(Resolution::Duplicate {
                    height: d.height,
                    leaf_index: d.leaf_index,
                });
                continue;
            }
            Some(d) => Outcome::TxIdReused {
                original_digest: d.request_digest,
            },
            None => {
                let lookup = |s: &StateRef| -> Result<Option<TxId>, StoreError> {
                    match consumed.get(s) {
                        Some(tx) => Ok(Some(*tx)),
                        None => store.consumed_by(s),
                    }
                };
                evaluate(fields, timestamp, lookup)?
            }
        };
        let leaf_index =
            u32::try_from(leaves.len()).expect("a block holds far fewer than 4 billion leaves");
        if earlier.is_none() {
            if outcome.is_committed() {
                for input in &fields.inputs {
                    consumed.insert(*input, fields.tx_id);
                    consumed_order.push((*input, fields.tx_id));
                }
            }
            let record = DecisionRecord {
                height,
                leaf_index,
                request_digest: digest,
            };
            decisions.insert(fields.tx_id, record);
            decisions_order.push((fields.tx_id, record));
        }
        block_leaves.insert((fields.tx_id, digest), leaf_index);
        leaves.push(Leaf {
            tx_id: fields.tx_id,
            request_digest: digest,
            outcome,
        });
        resolutions.push(Resolution::Decided { leaf_index });
    }

    let root = MerkleTree::from_leaves(&leaves).root();
    // The header chain: each block's header names the one below it.
    let prev = if height.0 <= 1 {
        HeaderHash([0; 32])
    } else {
        store
            .header(Height(height.0 - 1))?
            .ok_or(StoreError::MissingBlock {
                height: height.0 - 1,
            })?
            .hash()
    };
    Ok(BlockWrite {
        record: BlockRecord {
            cluster_id: cluster_id.clone(),
            height,
            timestamp,
            requests: requests.iter().map(|r| r.request().clone()).collect(),
            resolutions,
            leaves,
            root,
            prev,
            consensus_bytes,
        },
        consumed: consumed_order,
        decisions: decisions_order,
    })
}

/// Steps 2–5 of the module doc for a transaction id seen for the first time.
fn evaluate(
    fields: &notary_types::RequestFields,
    timestamp: Timestamp,
    mut consumed_by: impl FnMut(&StateRef) -> Result<Option<TxId>, StoreError>,
) -> Result<Outcome, StoreError> {
    if let Some(window) = fields.time_window {
        #[cfg(feature = "sim-bugs")]
        let ignore = crate::sim_bugs::active(crate::sim_bugs::IGNORE_TIME_WINDOW);
        #[cfg(not(feature = "sim-bugs"))]
        let ignore = false;
        if !window.contains(timestamp) && !ignore {
            return Ok(Outcome::TimeWindowInvalid {
                notary_time: timestamp,
            });
        }
    }
    let mut conflicts_of = |states: &[StateRef]| -> Result<Vec<ConsumedState>, StoreError> {
        let mut out = Vec::new();
        for state in states {
            if let Some(tx) = consumed_by(state)? {
                out.push(ConsumedState {
                    state: *state,
                    consuming_tx_hash: tx.hashed(),
                });
            }
        }
        Ok(out)
    };
    let conflicts = conflicts_of(&fields.inputs)?;
    #[cfg(feature = "sim-bugs")]
    let conflicts = if crate::sim_bugs::active(crate::sim_bugs::NO_DOUBLE_SPEND_CHECK) {
        Vec::new()
    } else {
        conflicts
    };
    if !conflicts.is_empty() {
        return Ok(Outcome::InputsConsumed { conflicts });
    }
    let conflicts = conflicts_of(&fields.references)?;
    if !conflicts.is_empty() {
        return Ok(Outcome::ReferencesConsumed { conflicts });
    }
    Ok(Outcome::Committed)
}

/// Applies a committed block: decides it and writes it in one atomic, synced batch. Idempotent:
/// for a height already applied it returns the stored record and writes nothing. Blocks must be
/// applied at heights 1, 2, 3, ... ([`StoreError::HeightGap`] otherwise).
pub fn apply_committed_block<S: Store + ?Sized>(
    store: &S,
    cluster_id: &ClusterId,
    height: Height,
    timestamp: Timestamp,
    requests: &[VerifiedRequest],
    consensus_bytes: Vec<u8>,
) -> Result<BlockRecord, StoreError> {
    let applied = store.applied_height()?;
    if height <= applied {
        return store
            .block(height)?
            .ok_or(StoreError::MissingBlock { height: height.0 });
    }
    if height.0 != applied.0 + 1 {
        return Err(StoreError::HeightGap {
            expected: applied.0 + 1,
            got: height.0,
        });
    }
    let write = decide_block(
        store,
        cluster_id,
        height,
        timestamp,
        requests,
        consensus_bytes,
    )?;
    store.apply_block(&write)?;
    Ok(write.record)
}

/// Where a transaction stands, as `GET /v1/transactions/{id}` reports it.
// The certified answer is the common case, and each is moved once to its client: boxing it
// would add an allocation per answer to save stack space in the rare other variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Never decided.
    Unknown,
    /// Decided in a block whose certificate is not stored yet.
    Uncertified {
        /// The block.
        height: Height,
        /// The leaf.
        leaf: Leaf,
    },
    /// Decided and certified: the full answer.
    Certified(NotarisationAnswer),
}

/// The applied heights above the highest stored certificate: those a restarted executor
/// must see covered again (a certificate covers every height below it, through the header
/// chain; certificates are stored unsynced, so a crash can lose the last few).
pub fn uncovered<S: Store + ?Sized>(store: &S, applied: Height) -> Result<Vec<u64>, StoreError> {
    let mut h = applied.0;
    while h > 0 && store.certificate(Height(h))?.is_none() {
        h -= 1;
    }
    Ok((h + 1..=applied.0).collect())
}

/// The certificate that covers `height`, with the headers from `height + 1` up to the signed
/// one: the first stored certificate at or above `height` ([`Store::certificate_from`]).
/// `None` while no stored certificate covers the height.
pub fn covering_certificate<S: Store + ?Sized>(
    store: &S,
    height: Height,
) -> Result<Option<(ClusterSignature, Vec<BlockHeader>)>, StoreError> {
    let Some((signed, signature)) = store.certificate_from(height)? else {
        return Ok(None);
    };
    let mut chain = Vec::with_capacity(signed.0.saturating_sub(height.0) as usize);
    for h in height.0 + 1..=signed.0 {
        match store.header(Height(h))? {
            Some(header) => chain.push(header),
            None => return Ok(None),
        }
    }
    Ok(Some((signature, chain)))
}

/// The answer for the leaf at (`height`, `leaf_index`): `Uncertified` until a certificate
/// covers the block, `Unknown` if there is no such leaf.
pub fn answer_at<S: Store + ?Sized>(
    store: &S,
    height: Height,
    leaf_index: u32,
) -> Result<TxStatus, StoreError> {
    let Some(record) = store.block(height)? else {
        return Ok(TxStatus::Unknown);
    };
    let Some(leaf) = record.leaves.get(leaf_index as usize).cloned() else {
        return Ok(TxStatus::Unknown);
    };
    let Some((signature, chain)) = covering_certificate(store, height)? else {
        return Ok(TxStatus::Uncertified { height, leaf });
    };
    let proof = MerkleTree::from_leaves(&record.leaves)
        .proof(leaf_index as usize)
        .expect("leaf_index was found in the same leaf list");
    Ok(TxStatus::Certified(NotarisationAnswer {
        leaf,
        proof,
        header: record.header(),
        chain,
        signature,
    }))
}

/// The status of `tx_id`: the answer of its first decision.
pub fn tx_status<S: Store + ?Sized>(store: &S, tx_id: &TxId) -> Result<TxStatus, StoreError> {
    match store.decision(tx_id)? {
        None => Ok(TxStatus::Unknown),
        Some(d) => answer_at(store, d.height, d.leaf_index),
    }
}

/// The answer for request `request_index` of the block at `height` (following a duplicate to
/// its original leaf).
pub fn answer_for_request<S: Store + ?Sized>(
    store: &S,
    height: Height,
    request_index: usize,
) -> Result<TxStatus, StoreError> {
    let Some(record) = store.block(height)? else {
        return Ok(TxStatus::Unknown);
    };
    match record.resolutions.get(request_index) {
        None => Ok(TxStatus::Unknown),
        Some(Resolution::Decided { leaf_index }) => answer_at(store, height, *leaf_index),
        Some(Resolution::Duplicate { height, leaf_index }) => {
            answer_at(store, *height, *leaf_index)
        }
    }
}

/// The answer for every request of the block at `height`, in block order (what
/// [`answer_for_request`] gives for each index), with one read of the block and one Merkle
/// tree however many requests it holds; a duplicate of an earlier block's request reads that
/// block. For the replica that answers a block's waiting clients at once.
pub fn block_answers<S: Store + ?Sized>(
    store: &S,
    height: Height,
) -> Result<Vec<TxStatus>, StoreError> {
    let Some(record) = store.block(height)? else {
        return Ok(Vec::new());
    };
    let cover = covering_certificate(store, height)?;
    block_answers_of(
        store,
        &record,
        cover.as_ref().map(|(sig, chain)| (*sig, chain.as_slice())),
    )
}

/// [`block_answers`] for a block record and its covering certificate already in hand (the
/// signature, and the headers above the block up to the signed one: the executor holds them
/// when a block is covered): no read of the block, which can be megabytes.
pub fn block_answers_of<S: Store + ?Sized>(
    store: &S,
    record: &BlockRecord,
    cover: Option<(ClusterSignature, &[BlockHeader])>,
) -> Result<Vec<TxStatus>, StoreError> {
    let height = record.height;
    let signature = cover.map(|(sig, _)| sig);
    let chain = cover.map_or(&[][..], |(_, chain)| chain);
    let tree = cover.map(|_| MerkleTree::from_leaves(&record.leaves));
    let header = record.header();
    let mut out = Vec::with_capacity(record.resolutions.len());
    for resolution in &record.resolutions {
        out.push(match *resolution {
            Resolution::Duplicate { height, leaf_index } => answer_at(store, height, leaf_index)?,
            Resolution::Decided { leaf_index } => {
                match (record.leaves.get(leaf_index as usize), signature, &tree) {
                    (None, _, _) => TxStatus::Unknown,
                    (Some(leaf), Some(signature), Some(tree)) => {
                        TxStatus::Certified(NotarisationAnswer {
                            leaf: leaf.clone(),
                            proof: tree
                                .proof(leaf_index as usize)
                                .expect("leaf_index was found in the same leaf list"),
                            header: header.clone(),
                            chain: chain.to_vec(),
                            signature,
                        })
                    }
                    (Some(leaf), _, _) => TxStatus::Uncertified {
                        height,
                        leaf: leaf.clone(),
                    },
                }
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemStore;
    use crate::testing::{arb_blocks, check_against_model, conformance, state, tx, Fixture};
    use notary_types::TimeWindow;
    use proptest::prelude::*;

    fn window(from: Option<u64>, until: Option<u64>) -> Option<TimeWindow> {
        Some(TimeWindow::new(from.map(Timestamp), until.map(Timestamp)).unwrap())
    }

    #[test]
    fn success_consumes_the_inputs() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let out = f
            .apply(
                &s,
                1,
                10,
                &[f.request(tx(1), &[state(1), state(2)], &[state(3)], None)],
            )
            .unwrap();
        assert_eq!(out, vec![Outcome::Committed]);
        assert_eq!(s.consumed_by(&state(2)).unwrap(), Some(tx(1)));
        assert_eq!(
            s.consumed_by(&state(3)).unwrap(),
            None,
            "references are never consumed"
        );
    }

    #[test]
    fn double_spend_across_blocks_names_the_hash_of_the_consuming_tx() {
        let (f, s) = (Fixture::new(), MemStore::new());
        f.apply(&s, 1, 10, &[f.request(tx(1), &[state(1)], &[], None)])
            .unwrap();
        let out = f
            .apply(
                &s,
                2,
                20,
                &[f.request(tx(2), &[state(0), state(1)], &[], None)],
            )
            .unwrap();
        let conflicts = vec![ConsumedState {
            state: state(1),
            consuming_tx_hash: tx(1).hashed(),
        }];
        assert_eq!(out, vec![Outcome::InputsConsumed { conflicts }]);
        assert_eq!(
            s.consumed_by(&state(0)).unwrap(),
            None,
            "a rejected request consumes nothing"
        );
    }

    #[test]
    fn within_a_block_the_first_request_wins() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let out = f
            .apply(
                &s,
                1,
                10,
                &[
                    f.request(tx(1), &[state(1)], &[], None),
                    f.request(tx(2), &[state(1)], &[], None),
                ],
            )
            .unwrap();
        assert_eq!(out[0], Outcome::Committed);
        assert!(
            matches!(&out[1], Outcome::InputsConsumed { conflicts } if conflicts[0].consuming_tx_hash == tx(1).hashed())
        );
    }

    #[test]
    fn a_reference_to_a_consumed_state_is_refused_even_in_the_same_block() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let out = f
            .apply(
                &s,
                1,
                10,
                &[
                    f.request(tx(1), &[state(1)], &[], None),
                    f.request(tx(2), &[state(2)], &[state(1)], None),
                ],
            )
            .unwrap();
        let conflicts = vec![ConsumedState {
            state: state(1),
            consuming_tx_hash: tx(1).hashed(),
        }];
        assert_eq!(out[1], Outcome::ReferencesConsumed { conflicts });
        let out = f
            .apply(
                &s,
                2,
                20,
                &[f.request(tx(3), &[state(3)], &[state(4)], None)],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![Outcome::Committed],
            "a reference to an unconsumed state is fine"
        );
    }

    #[test]
    fn inputs_are_checked_before_references() {
        let (f, s) = (Fixture::new(), MemStore::new());
        f.apply(
            &s,
            1,
            10,
            &[f.request(tx(1), &[state(1), state(2)], &[], None)],
        )
        .unwrap();
        let out = f
            .apply(
                &s,
                2,
                20,
                &[f.request(tx(2), &[state(1)], &[state(2)], None)],
            )
            .unwrap();
        assert!(matches!(out[0], Outcome::InputsConsumed { .. }));
    }

    #[test]
    fn time_window_from_is_inclusive_and_until_exclusive_against_the_block_timestamp() {
        let f = Fixture::new();
        let cases = [
            (window(Some(100), Some(200)), 99, false),
            (window(Some(100), Some(200)), 100, true),
            (window(Some(100), Some(200)), 199, true),
            (window(Some(100), Some(200)), 200, false),
            (window(None, Some(200)), 0, true),
            (window(Some(100), None), u64::MAX, true),
        ];
        for (i, (w, ts, ok)) in cases.into_iter().enumerate() {
            let s = MemStore::new();
            let out = f
                .apply(&s, 1, ts, &[f.request(tx(i as u8), &[state(1)], &[], w)])
                .unwrap();
            let want = if ok {
                Outcome::Committed
            } else {
                Outcome::TimeWindowInvalid {
                    notary_time: Timestamp(ts),
                }
            };
            assert_eq!(out, vec![want], "case {i}");
        }
    }

    #[test]
    fn the_same_request_gets_the_original_answer_and_different_content_is_refused() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let original = f.request(tx(1), &[state(1)], &[], None);
        let rec1 = apply_committed_block(
            &s,
            &f.cluster_id,
            Height(1),
            Timestamp(10),
            &[original.clone(), original.clone()],
            vec![],
        )
        .unwrap();
        assert_eq!(
            rec1.leaves.len(),
            1,
            "a duplicate in the same block adds no leaf"
        );
        assert_eq!(
            rec1.resolutions[1],
            Resolution::Duplicate {
                height: Height(1),
                leaf_index: 0
            }
        );
        let changed = f.request(tx(1), &[state(2)], &[], None);
        let rec2 = apply_committed_block(
            &s,
            &f.cluster_id,
            Height(2),
            Timestamp(20),
            &[original.clone(), changed.clone(), changed.clone()],
            vec![],
        )
        .unwrap();
        assert_eq!(
            rec2.resolutions[0],
            Resolution::Duplicate {
                height: Height(1),
                leaf_index: 0
            }
        );
        assert_eq!(rec2.leaves.len(), 1);
        assert_eq!(
            rec2.leaves[0].outcome,
            Outcome::TxIdReused {
                original_digest: original.digest()
            }
        );
        assert_eq!(rec2.leaves[0].request_digest, changed.digest());
        assert_eq!(
            rec2.resolutions[2],
            Resolution::Duplicate {
                height: Height(2),
                leaf_index: 0
            }
        );
        assert_eq!(s.consumed_by(&state(2)).unwrap(), None);
        assert_eq!(
            s.decision(&tx(1)).unwrap().unwrap().request_digest,
            original.digest(),
            "the first decision stays"
        );
    }

    #[test]
    fn a_rejection_is_final_for_the_same_content() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let late = f.request(tx(1), &[state(1)], &[], window(None, Some(5)));
        let first = f.apply(&s, 1, 10, std::slice::from_ref(&late)).unwrap();
        let again = f.apply(&s, 2, 3, &[late]).unwrap();
        assert_eq!(first, again);
        assert_eq!(
            first,
            vec![Outcome::TimeWindowInvalid {
                notary_time: Timestamp(10)
            }]
        );
    }

    #[test]
    fn answers_are_rebuilt_from_the_store_and_verify_offline() {
        use blsttc::SecretKeySet;
        use rand::SeedableRng;
        let (f, s) = (Fixture::new(), MemStore::new());
        let requests: Vec<_> = (0..5)
            .map(|i| f.request(tx(i), &[state(i)], &[], None))
            .collect();
        let record = apply_committed_block(
            &s,
            &f.cluster_id,
            Height(1),
            Timestamp(10),
            &requests,
            vec![],
        )
        .unwrap();
        let sks = SecretKeySet::random(0, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let sig = notary_types::ClusterSignature::from(
            &sks.secret_key().sign(record.header().canonical_bytes()),
        );
        s.put_certificate(Height(1), &sig).unwrap();
        for (i, r) in requests.iter().enumerate() {
            let TxStatus::Certified(answer) = answer_for_request(&s, Height(1), i).unwrap() else {
                panic!("certified")
            };
            assert_eq!(
                answer
                    .verify(&sks.public_keys().public_key(), &r.request().fields)
                    .unwrap(),
                &Outcome::Committed
            );
            assert_eq!(
                tx_status(&s, &r.request().fields.tx_id).unwrap(),
                TxStatus::Certified(answer)
            );
        }
    }

    #[test]
    fn the_heights_above_the_highest_certificate_are_uncovered() {
        let store = MemStore::new();
        let sig = ClusterSignature([7; 96]);
        // 150 signed and stored; 151..=200 were covered by nothing stored (a certificate
        // above them lost in a crash, or never formed).
        for h in [64, 128, 150] {
            store.put_certificate(Height(h), &sig).unwrap();
        }
        assert_eq!(
            uncovered(&store, Height(200)).unwrap(),
            (151..=200).collect::<Vec<_>>()
        );
        assert_eq!(uncovered(&store, Height(150)).unwrap(), Vec::<u64>::new());
        assert_eq!(uncovered(&store, Height(0)).unwrap(), Vec::<u64>::new());
        let empty = MemStore::new();
        assert_eq!(uncovered(&empty, Height(3)).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn block_answers_equal_the_answer_of_each_request_certified_or_not() {
        use blsttc::SecretKeySet;
        use rand::SeedableRng;
        let (f, s) = (Fixture::new(), MemStore::new());
        let first = f.request(tx(1), &[state(1)], &[], None);
        f.apply(&s, 1, 10, std::slice::from_ref(&first)).unwrap();
        // Block 2: new requests, a conflict, an in-block duplicate and a duplicate of block 1.
        let second = vec![
            f.request(tx(2), &[state(2)], &[], None),
            f.request(tx(3), &[state(2)], &[], None),
            f.request(tx(2), &[state(2)], &[], None),
            first.clone(),
        ];
        f.apply(&s, 2, 20, &second).unwrap();
        let sks = SecretKeySet::random(0, &mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        let each = |h: u64| -> Vec<TxStatus> {
            (0..s.block(Height(h)).unwrap().unwrap().resolutions.len())
                .map(|i| answer_for_request(&s, Height(h), i).unwrap())
                .collect()
        };
        for h in [1, 2] {
            // Uncertified first, then certified: the same either way.
            assert_eq!(block_answers(&s, Height(h)).unwrap(), each(h));
            let header = s.block(Height(h)).unwrap().unwrap().header();
            let sig = notary_types::ClusterSignature::from(
                &sks.secret_key().sign(header.canonical_bytes()),
            );
            s.put_certificate(Height(h), &sig).unwrap();
        }
        for h in [1, 2] {
            let answers = block_answers(&s, Height(h)).unwrap();
            assert!(answers.iter().all(|a| matches!(a, TxStatus::Certified(_))));
            assert_eq!(answers, each(h));
        }
        assert_eq!(block_answers(&s, Height(3)).unwrap(), Vec::new());
    }

    #[test]
    fn a_full_disk_is_a_typed_error_and_nothing_is_applied() {
        let (f, s) = (Fixture::new(), MemStore::new());
        s.fail_writes(true);
        let err = f
            .apply(&s, 1, 10, &[f.request(tx(1), &[state(1)], &[], None)])
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Io {
                op: "apply_block",
                ..
            }
        ));
        assert_eq!(s.applied_height().unwrap(), Height(0));
        assert_eq!(s.durable_copy().consumed_by(&state(1)).unwrap(), None);
    }

    /// The crash the executor's restart path exists for: certificates stored after the last
    /// synced write are gone from what a restarted replica reads, and `uncovered` names them.
    #[test]
    fn a_crash_loses_only_certificates_stored_since_the_last_synced_write() {
        let (f, s) = (Fixture::new(), MemStore::new());
        let sig = ClusterSignature([7; 96]);
        f.apply(&s, 1, 10, &[f.request(tx(1), &[state(1)], &[], None)])
            .unwrap();
        s.put_certificate(Height(1), &sig).unwrap();
        f.apply(&s, 2, 20, &[f.request(tx(2), &[state(2)], &[], None)])
            .unwrap();
        s.put_certificate(Height(2), &sig).unwrap();
        let restarted = s.durable_copy();
        assert_eq!(restarted.certificate(Height(1)).unwrap(), Some(sig));
        assert_eq!(restarted.certificate(Height(2)).unwrap(), None);
        assert_eq!(restarted.applied_height().unwrap(), Height(2));
        assert_eq!(uncovered(&restarted, Height(2)).unwrap(), vec![2]);
        s.save_safety_record(b"vote").unwrap();
        assert_eq!(s.durable_copy().certificate(Height(2)).unwrap(), Some(sig));
    }

    #[test]
    fn mem_store_passes_the_conformance_suite() {
        conformance(MemStore::new);
    }

    proptest! {
        #[test]
        fn mem_store_matches_the_reference_model(blocks in arb_blocks()) {
            let store = MemStore::new();
            if let Err(e) = check_against_model(&store, &blocks) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
