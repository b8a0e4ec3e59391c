//! The simulated replica's consensus [`Application`]: a mempool of checked batches, shaped like
//! the real node's (`notary/node/src/mempool.rs`): `propose` takes queued batches not already in
//! an uncommitted ancestor; `validate` vetoes a payload that does not decode or holds a request
//! failing the stateless checks; a batch leaves only when a block carrying it commits.

use std::collections::BTreeMap;
use std::rc::Rc;

use notary_consensus::{Application, Block, BlockId, Height};
use notary_core::{check_batch, ClusterPolicy, VerifiedRequest};
use notary_types::NotarisationRequest;

use crate::payload::{decode_payload, encode_payload, Batch, PAYLOAD_BATCHES_MAX};

/// A batch whose every request passed the stateless checks.
#[derive(Debug)]
pub struct CheckedBatch {
    /// The batch.
    pub batch: Batch,
    /// Its requests, checked, in order.
    pub requests: Vec<VerifiedRequest>,
}

/// Checks every request of a batch; all or nothing.
pub fn check_whole_batch(policy: &ClusterPolicy, batch: Batch) -> Option<CheckedBatch> {
    let mut decoded = Vec::with_capacity(batch.requests.len());
    for bytes in &batch.requests {
        decoded.push(NotarisationRequest::from_wire_bytes(bytes).ok()?);
    }
    let requests = check_batch(policy, decoded)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(CheckedBatch { batch, requests })
}

/// The mempool.
pub struct SimApp {
    policy: Rc<ClusterPolicy>,
    queue: BTreeMap<u64, [u8; 32]>,
    batches: BTreeMap<[u8; 32], (Rc<CheckedBatch>, Option<u64>)>,
    by_block: BTreeMap<BlockId, (Height, Vec<[u8; 32]>)>,
    next_seq: u64,
    /// Blocks vetoed.
    pub vetoes: u64,
}

impl SimApp {
    /// An empty mempool.
    pub fn new(policy: Rc<ClusterPolicy>) -> SimApp {
        SimApp {
            policy,
            queue: BTreeMap::new(),
            batches: BTreeMap::new(),
            by_block: BTreeMap::new(),
            next_seq: 0,
            vetoes: 0,
        }
    }

    /// Adds a checked batch; `false` if known already.
    pub fn insert(&mut self, digest: [u8; 32], batch: Rc<CheckedBatch>) -> bool {
        if self.batches.contains_key(&digest) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(seq, digest);
        self.batches.insert(digest, (batch, Some(seq)));
        true
    }

    fn digests_of(&mut self, block: &Block) -> Vec<[u8; 32]> {
        if let Some((_, d)) = self.by_block.get(&block.id()) {
            return d.clone();
        }
        let digests: Vec<[u8; 32]> = decode_payload(&block.payload)
            .map(|p| p.iter().map(Batch::digest).collect())
            .unwrap_or_default();
        self.by_block
            .insert(block.id(), (block.height(), digests.clone()));
        digests
    }

    /// The checked requests of a committed block, in block order; forgets its batches.
    pub fn take_committed(&mut self, block: &Block) -> Vec<VerifiedRequest> {
        self.by_block.remove(&block.id());
        self.forget_forks(block.height());
        let Ok(batches) = decode_payload(&block.payload) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for batch in batches {
            let digest = batch.digest();
            let checked = match self.batches.remove(&digest) {
                Some((b, seq)) => {
                    if let Some(seq) = seq {
                        self.queue.remove(&seq);
                    }
                    b
                }
                None => match check_whole_batch(&self.policy, batch) {
                    Some(b) => Rc::new(b),
                    None => continue,
                },
            };
            out.extend(checked.requests.iter().cloned());
        }
        out
    }
}

impl SimApp {
    /// Blocks at or below a committed height that did not commit are abandoned: forget them,
    /// and the batches only they carried that were never queued here (queued ones stay, to be
    /// proposed again). Without this, a batch learnt from an abandoned block stays known but
    /// unqueued for ever: a client's retry of its request is then refused as a duplicate and
    /// the request is never proposed again (seed 877 with a `ForkOnOldQc` leader, whose
    /// ignored votes abandon blocks).
    fn forget_forks(&mut self, committed: Height) {
        let stale: Vec<BlockId> = self
            .by_block
            .iter()
            .filter(|(_, (h, _))| *h <= committed)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let Some((_, digests)) = self.by_block.remove(&id) else {
                continue;
            };
            for d in digests {
                if matches!(self.batches.get(&d), Some((_, None))) {
                    self.batches.remove(&d);
                }
            }
        }
    }
}

impl Application for SimApp {
    fn propose(&mut self, uncommitted: &[&Block], payload_bytes_max: usize) -> Vec<u8> {
        let mut excluded = std::collections::BTreeSet::new();
        for b in uncommitted {
            excluded.extend(self.digests_of(b));
        }
        let mut chosen: Vec<&Batch> = Vec::new();
        let mut budget = payload_bytes_max.saturating_sub(64);
        for digest in self.queue.values() {
            if chosen.len() >= PAYLOAD_BATCHES_MAX {
                break;
            }
            if excluded.contains(digest) {
                continue;
            }
            let (b, _) = &self.batches[digest];
            let len = b.batch.requests.iter().map(|r| r.len() + 4).sum::<usize>() + 4;
            if len > budget {
                break;
            }
            budget -= len;
            chosen.push(&b.batch);
        }
        encode_payload(&chosen)
    }

    fn validate(&mut self, block: &Block, _uncommitted: &[&Block]) -> bool {
        let Ok(batches) = decode_payload(&block.payload) else {
            self.vetoes += 1;
            return false;
        };
        let mut digests = Vec::with_capacity(batches.len());
        for batch in batches {
            let digest = batch.digest();
            digests.push(digest);
            if self.batches.contains_key(&digest) {
                continue;
            }
            match check_whole_batch(&self.policy, batch) {
                Some(b) => {
                    self.batches.insert(digest, (Rc::new(b), None));
                }
                None => {
                    self.vetoes += 1;
                    return false;
                }
            }
        }
        self.by_block.insert(block.id(), (block.height(), digests));
        true
    }

    fn has_pending_work(&self) -> bool {
        !self.queue.is_empty()
    }
}
