//! The tiny reference model: the notary's stateful rules written again, as plainly as
//! possible, from the module doc of `notary_core::machine` (not from its code). The committed
//! order replayed through it must give every outcome the replicas certified.

use std::collections::BTreeMap;

use notary_types::{
    ConsumedState, Outcome, RequestDigest, RequestFields, StateRef, Timestamp, TxId,
};

/// The model's state.
#[derive(Debug, Default)]
pub struct Model {
    consumed: BTreeMap<StateRef, TxId>,
    decided: BTreeMap<TxId, RequestDigest>,
    /// The outcome for each (tx id, request digest) seen.
    pub outcomes: BTreeMap<(TxId, RequestDigest), Outcome>,
}

impl Model {
    /// Applies one request in committed order at block time `now`.
    pub fn apply(&mut self, r: &RequestFields, now: Timestamp) {
        let digest = r.digest();
        if let Some(original) = self.decided.get(&r.tx_id) {
            if *original != digest {
                self.outcomes.insert(
                    (r.tx_id, digest),
                    Outcome::TxIdReused {
                        original_digest: *original,
                    },
                );
            }
            return;
        }
        let conflicts = |states: &[StateRef], consumed: &BTreeMap<StateRef, TxId>| {
            states
                .iter()
                .filter_map(|s| {
                    consumed.get(s).map(|tx| ConsumedState {
                        state: *s,
                        consuming_tx_hash: tx.hashed(),
                    })
                })
                .collect::<Vec<_>>()
        };
        let outcome = if r.time_window.is_some_and(|w| !w.contains(now)) {
            Outcome::TimeWindowInvalid { notary_time: now }
        } else {
            let inputs = conflicts(&r.inputs, &self.consumed);
            let refs = conflicts(&r.references, &self.consumed);
            if !inputs.is_empty() {
                Outcome::InputsConsumed { conflicts: inputs }
            } else if !refs.is_empty() {
                Outcome::ReferencesConsumed { conflicts: refs }
            } else {
                for s in &r.inputs {
                    self.consumed.insert(*s, r.tx_id);
                }
                Outcome::Committed
            }
        };
        self.decided.insert(r.tx_id, digest);
        self.outcomes.insert((r.tx_id, digest), outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notary_types::{ClusterId, RequesterKey, TimeWindow};

    fn req(tx: u8, inputs: &[u32], window: Option<TimeWindow>) -> RequestFields {
        RequestFields {
            cluster_id: ClusterId::new("sim").unwrap(),
            tx_id: TxId([tx; 32]),
            inputs: inputs
                .iter()
                .map(|i| StateRef {
                    tx_id: TxId([0; 32]),
                    index: *i,
                })
                .collect(),
            references: vec![],
            time_window: window,
            requester: RequesterKey([0; 32]),
        }
    }

    #[test]
    fn model_first_spend_wins_and_windows_use_block_time() {
        let mut m = Model::default();
        let a = req(1, &[1], None);
        let b = req(2, &[1], None);
        let late = req(
            3,
            &[2],
            Some(TimeWindow::new(None, Some(Timestamp(5))).unwrap()),
        );
        m.apply(&a, Timestamp(10));
        m.apply(&b, Timestamp(10));
        m.apply(&late, Timestamp(10));
        assert_eq!(m.outcomes[&(a.tx_id, a.digest())], Outcome::Committed);
        assert!(matches!(
            m.outcomes[&(b.tx_id, b.digest())],
            Outcome::InputsConsumed { .. }
        ));
        assert_eq!(
            m.outcomes[&(late.tx_id, late.digest())],
            Outcome::TimeWindowInvalid {
                notary_time: Timestamp(10)
            }
        );
    }
}
