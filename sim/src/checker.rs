//! The invariant checker. Every step of the simulation reports what it saw here; the first
//! broken invariant stops the run with a [`Violation`] naming it.
//!
//! Invariants (the list, each with its name as printed):
//! - `agreement`: honest replicas commit the same block at every height, each with a commit
//!   proof that verifies;
//! - `determinism`: honest replicas apply a height to the same certified header;
//! - `double-spend`: no state is consumed by two committed transactions;
//! - `time-window`: no transaction is committed outside its time window by its block's time;
//! - `certificate`: every answer a client accepts verifies, and an honest replica never sends
//!   one that does not;
//! - `same-answer`: every replica and every retry gives the same leaf for one request;
//! - `one-vote`: no honest replica signs two different votes for one round, across restarts;
//! - `persist-before-send`: no honest vote leaves before the record that allows it is durable;
//! - `locked-round`: no honest replica signs a vote for a block whose QC is below the locked
//!   round of its last durable safety record (vote rule 2, read from what it persists);
//! - `acknowledged`: every acknowledged notarisation is in every honest replica's store after
//!   the liveness phase, with the same leaf;
//! - `model`: the committed order replayed through [`crate::model::Model`] gives every
//!   certified outcome;
//! - `liveness`: after the faults stop, every request is answered and every honest replica
//!   catches up within the stated bound.

use std::collections::BTreeMap;

use notary_consensus::{Block, BlockId, CommitProof, Committee, Round, VoteData};
use notary_core::{BlockRecord, Resolution};
use notary_types::{
    BlockHeader, Leaf, NotarisationAnswer, Outcome, RequestDigest, RequestFields, StateRef, TxId,
};

use crate::config::Ms;
use crate::crypto::Keys;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Simulated time.
    pub at_ms: Ms,
    /// The invariant's name.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant `{}` broken at {} ms: {}",
            self.invariant, self.at_ms, self.detail
        )
    }
}

/// The checker's state.
pub struct Checker {
    committee: Committee,
    keys: Keys,
    /// Simulated time of the current step.
    pub now: Ms,
    /// The committed block per height (from honest replicas).
    pub chain: BTreeMap<u64, Block>,
    headers: BTreeMap<u64, BlockHeader>,
    /// The first honest record per height.
    pub records: BTreeMap<u64, BlockRecord>,
    consumed: BTreeMap<StateRef, TxId>,
    votes: BTreeMap<(u16, Round), BlockId>,
    /// Accepted answers' leaves per request.
    pub answers: BTreeMap<(TxId, RequestDigest), (Leaf, NotarisationAnswer)>,
    /// Answers refused by clients (from Byzantine replicas).
    pub refused_answers: u64,
    /// The first violation.
    pub violation: Option<Violation>,
}

impl Checker {
    /// A checker for a cluster.
    pub fn new(committee: Committee, keys: Keys) -> Checker {
        Checker {
            committee,
            keys,
            now: 0,
            chain: BTreeMap::new(),
            headers: BTreeMap::new(),
            records: BTreeMap::new(),
            consumed: BTreeMap::new(),
            votes: BTreeMap::new(),
            answers: BTreeMap::new(),
            refused_answers: 0,
            violation: None,
        }
    }

    /// Records a violation (the first one wins).
    pub fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                at_ms: self.now,
                invariant,
                detail,
            });
        }
    }

    /// An honest replica committed `block`.
    pub fn on_commit(&mut self, replica: u16, block: &Block, proof: &CommitProof) {
        if let Err(e) = proof.verify(&self.committee, block) {
            return self.fail(
                "agreement",
                format!(
                    "replica {replica} committed height {} with a proof that does not verify: {e}",
                    block.height().0
                ),
            );
        }
        let h = block.height().0;
        match self.chain.get(&h) {
            Some(b) if b.id() != block.id() => {
                let detail = format!(
                    "replica {replica} committed {:?} at height {h}, another honest replica {:?}",
                    block.id(),
                    b.id()
                );
                self.fail("agreement", detail)
            }
            Some(_) => {}
            None => {
                self.chain.insert(h, block.clone());
            }
        }
    }

    /// An honest replica applied a block.
    pub fn on_apply(&mut self, replica: u16, record: &BlockRecord) {
        let h = record.height.0;
        let header = record.header();
        if let Some(first) = self.headers.get(&h) {
            if *first != header {
                return self.fail(
                    "determinism",
                    format!("replica {replica} applied height {h} to a different header"),
                );
            }
            return;
        }
        self.headers.insert(h, header);
        for (i, res) in record.resolutions.iter().enumerate() {
            let Resolution::Decided { leaf_index } = res else {
                continue;
            };
            let (Some(leaf), Some(req)) = (
                record.leaves.get(*leaf_index as usize),
                record.requests.get(i),
            ) else {
                return self.fail(
                    "determinism",
                    format!("height {h}: leaf {leaf_index} missing"),
                );
            };
            if leaf.outcome != Outcome::Committed {
                continue;
            }
            let f = &req.fields;
            if f.time_window.is_some_and(|w| !w.contains(record.timestamp)) {
                return self.fail(
                    "time-window",
                    format!(
                        "tx {:?} committed at height {h}, block time {} outside {:?}",
                        f.tx_id, record.timestamp.0, f.time_window
                    ),
                );
            }
            for s in &f.inputs {
                if let Some(other) = self.consumed.insert(*s, f.tx_id) {
                    return self.fail(
                        "double-spend",
                        format!(
                            "state {s:?} consumed by {:?} and again by {:?} at height {h}",
                            other, f.tx_id
                        ),
                    );
                }
            }
        }
        self.records.insert(h, record.clone());
    }

    /// An honest replica signed (persist) or sent a vote.
    pub fn on_vote(&mut self, replica: u16, round: Round, block: BlockId) {
        let first = *self.votes.entry((replica, round)).or_insert(block);
        if first != block {
            self.fail(
                "one-vote",
                format!(
                    "honest replica {replica} signed two votes in round {}",
                    round.0
                ),
            );
        }
    }

    /// An honest replica made a new vote durable (`vote`) while its previous durable record
    /// held the lock `locked_round`. The vote's `parent_round` is the round of the block's QC.
    pub fn on_new_vote(&mut self, replica: u16, vote: &VoteData, locked_round: Round) {
        if vote.parent_round < locked_round {
            self.fail(
                "locked-round",
                format!(
                    "honest replica {replica} voted in round {} for a block on a QC of round {}, \
                     below its locked round {}",
                    vote.round.0, vote.parent_round.0, locked_round.0
                ),
            );
        }
    }

    /// An honest replica sent a vote for `round` while its durable record covers `durable`.
    pub fn on_vote_sent(&mut self, replica: u16, round: Round, durable: Round) {
        if durable < round {
            self.fail(
                "persist-before-send",
                format!(
                    "replica {replica} sent a vote for round {} with durable record at round {}",
                    round.0, durable.0
                ),
            );
        }
    }

    /// A client received `answer` for `request` from a replica.
    pub fn on_answer(
        &mut self,
        honest: bool,
        request: &RequestFields,
        answer: &NotarisationAnswer,
    ) {
        if let Err(e) = self.keys.verify_answer(answer, request) {
            if honest {
                self.fail(
                    "certificate",
                    format!("honest replica sent an answer that does not verify: {e}"),
                );
            } else {
                self.refused_answers += 1;
            }
            return;
        }
        let key = (request.tx_id, request.digest());
        match self.answers.get(&key) {
            Some((leaf, _)) if *leaf != answer.leaf => self.fail(
                "same-answer",
                format!(
                    "tx {:?}: two certified answers {:?} and {:?}",
                    request.tx_id, leaf.outcome, answer.leaf.outcome
                ),
            ),
            Some(_) => {}
            None => {
                self.answers
                    .insert(key, (answer.leaf.clone(), answer.clone()));
            }
        }
    }
}
