//! The mempool: checked batches waiting for a block, and the consensus [`Application`].
//!
//! It lives on the consensus thread (consensus calls it from `handle`) and never does I/O.
//! * Batches enter already checked (their requests verified off this thread, here or, for
//!   peers' batches, by f + 1 attesting replicas: `attest.rs`), own ones from the batcher and
//!   peers' from the inbound path.
//! * `propose` takes batches in arrival order, skipping those already in an uncommitted
//!   ancestor, up to the payload byte limit.
//! * `validate` vetoes a block whose payload does not decode or holds a request that fails
//!   the stateless checks; batches it already holds are known good and cost a lookup.
//! * A batch leaves only when a block carrying it commits ([`Mempool::take_committed`]); a
//!   batch in an abandoned fork stays and is proposed again.
//! * **Pacing**: as leader, this replica proposes only while fewer than
//!   `batch.pipeline_blocks` (default 3) committed blocks wait to be applied and fewer than
//!   that many certificates it signed are still forming (`ready_to_propose`). Applying a
//!   block costs a synced write and a certificate milliseconds of BLS work, while a consensus
//!   round on a LAN takes about one; without pacing, a loaded cluster commits blocks faster
//!   than the executor writes and certifies them. With it, requests gather in the mempool
//!   while the pipeline is full, so blocks grow with the load. Blocks that wait only for the
//!   next signed height to cover them (`executor.rs`) cost no BLS work and do not hold a
//!   proposal: counting them made a leader wait for the quiet rule (a `batch.sign_interval`
//!   with no block) whenever a window's first block was the one it had just committed, since
//!   the others commit that block only when they see its next proposal. A replica far behind
//!   (catching up after a restart) is not paced: holding its proposals would only cost the
//!   cluster round timeouts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use notary_consensus::{Application, Block, BlockId, Height};
use notary_core::{check_attested, check_batch, ClusterPolicy, Rejection, VerifiedRequest};
use notary_types::NotarisationRequest;
use tokio::sync::watch;

use crate::executor::ExecView;

use crate::wire::{
    decode_payload, encode_payload, Batch, BatchDigest, Payload, PAYLOAD_BATCHES_MAX,
};

/// Beyond this many committed blocks waiting to be applied, the replica is catching up, not
/// pacing: it proposes anyway.
pub const CATCH_UP_BLOCKS: u64 = 64;

/// The most batches the mempool holds; beyond it, peers' batches are refused (own batches are
/// bounded earlier, by admission control).
pub const MEMPOOL_BATCHES_MAX: usize = 8192;

/// A batch whose every request passed the stateless checks.
#[derive(Debug)]
pub struct CheckedBatch {
    /// Its digest.
    pub digest: BatchDigest,
    /// The batch as it travels.
    pub batch: Batch,
    /// Its requests, checked.
    pub requests: Vec<VerifiedRequest>,
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A request does not decode or fails a stateless check.
    #[error("request {index} of the batch fails the checks: {reason}")]
    BadRequest {
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Checks every request of a batch (batch ed25519 verification); all or nothing. `digest`:
/// the batch's, which every caller has already computed to look the batch up.
pub fn check_whole_batch(
    policy: &ClusterPolicy,
    batch: Batch,
    digest: BatchDigest,
) -> Result<CheckedBatch, BatchError> {
    let results = check_batch(policy, decode_batch(&batch)?);
    all_passed(batch, digest, results)
}

/// Checks every request of a batch that f + 1 replicas attest they checked in full
/// (`attest.rs`): everything but the signatures; all or nothing.
pub fn check_attested_batch(
    policy: &ClusterPolicy,
    batch: Batch,
    digest: BatchDigest,
) -> Result<CheckedBatch, BatchError> {
    let results = decode_batch(&batch)?
        .into_iter()
        .map(|r| check_attested(policy, r))
        .collect();
    all_passed(batch, digest, results)
}

fn all_passed(
    batch: Batch,
    digest: BatchDigest,
    results: Vec<Result<VerifiedRequest, Rejection>>,
) -> Result<CheckedBatch, BatchError> {
    let requests = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| r.map_err(|e| bad(index, e)))
        .collect::<Result<_, _>>()?;
    Ok(CheckedBatch {
        digest,
        batch,
        requests,
    })
}

fn decode_batch(batch: &Batch) -> Result<Vec<NotarisationRequest>, BatchError> {
    batch
        .requests
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            NotarisationRequest::from_wire_bytes(bytes).map_err(|e| bad(index, e))
        })
        .collect()
}

fn bad(index: usize, e: impl std::fmt::Display) -> BatchError {
    BatchError::BadRequest {
        index,
        reason: e.to_string(),
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct MempoolStats {
    /// Blocks vetoed (undecodable payload or a bad request).
    pub vetoes: u64,
    /// Batches refused because the mempool was full.
    pub refused_full: u64,
    /// Batches checked on the consensus thread (not seen before the block).
    pub late_checks: u64,
    /// Times a proposal was held because the executor's pipeline was full.
    pub proposals_held: u64,
}

/// Checked batches waiting for, or carried by, uncommitted blocks.
pub struct Mempool {
    policy: Arc<ClusterPolicy>,
    /// Arrival order of batches not yet committed.
    queue: BTreeMap<u64, BatchDigest>,
    /// Every checked, uncommitted batch, with its queue position if it is queued.
    batches: HashMap<BatchDigest, (Arc<CheckedBatch>, Option<u64>)>,
    /// Height and batch digests of blocks seen by `validate`/`propose`, until they commit
    /// or a block at their height commits instead (an abandoned fork).
    by_block: HashMap<BlockId, (Height, Vec<BatchDigest>)>,
    next_seq: u64,
    /// Pacing: the executor's progress, if proposals are paced by it, and how many
    /// committed blocks may wait to be applied (and certificates be forming).
    exec: Option<(watch::Receiver<ExecView>, u64)>,
    /// Height of the last block handed over by `take_committed`.
    committed_height: u64,
    /// A proposal was held and the driver should offer the chance again.
    held: bool,
    /// Counters.
    pub stats: MempoolStats,
}

impl Mempool {
    /// An empty mempool checking requests against `policy`.
    pub fn new(policy: Arc<ClusterPolicy>) -> Self {
        Self {
            policy,
            queue: BTreeMap::new(),
            batches: HashMap::new(),
            by_block: HashMap::new(),
            next_seq: 0,
            exec: None,
            committed_height: 0,
            held: false,
            stats: MempoolStats::default(),
        }
    }

    /// Paces proposals by the executor's progress (module doc): fewer than `pipeline_blocks`
    /// (0: no pacing) committed blocks waiting to be applied and certificates forming;
    /// `committed_height` is the height of the last committed block at start.
    pub fn paced_by(
        mut self,
        exec: watch::Receiver<ExecView>,
        pipeline_blocks: u64,
        committed_height: u64,
    ) -> Self {
        self.exec = (pipeline_blocks > 0).then_some((exec, pipeline_blocks));
        self.committed_height = committed_height;
        self
    }

    /// Whether a proposal was held since the last call: the driver then offers consensus the
    /// chance to propose again shortly ([`Event::PayloadReady`](notary_consensus::Event)).
    pub fn take_held(&mut self) -> bool {
        std::mem::take(&mut self.held)
    }

    /// Whether a proposal is being held now.
    pub fn is_holding(&self) -> bool {
        self.held
    }

    /// Batches waiting to be proposed.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Adds a checked batch; `false` if it was refused (full) or known already.
    pub fn insert(&mut self, batch: Arc<CheckedBatch>) -> bool {
        if self.batches.contains_key(&batch.digest) {
            return false;
        }
        if self.batches.len() >= MEMPOOL_BATCHES_MAX {
            self.stats.refused_full += 1;
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(seq, batch.digest);
        self.batches.insert(batch.digest, (batch, Some(seq)));
        true
    }

    fn digests_of(&mut self, block: &Block) -> Vec<BatchDigest> {
        if let Some((_, d)) = self.by_block.get(&block.id()) {
            return d.clone();
        }
        let digests: Vec<BatchDigest> = decode_payload(&block.payload)
            .map(|p| p.batches.iter().map(Batch::digest).collect())
            .unwrap_or_default();
        self.by_block
            .insert(block.id(), (block.height(), digests.clone()));
        digests
    }

    /// The checked requests of a committed block, in block order; forgets its batches.
    /// A batch this replica never saw (a block learnt by catch-up) is checked here.
    pub fn take_committed(&mut self, block: &Block) -> Vec<VerifiedRequest> {
        self.committed_height = self.committed_height.max(block.height().0);
        self.by_block.remove(&block.id());
        self.forget_forks(block.height());
        let Ok(payload) = decode_payload(&block.payload) else {
            // A committed block passed `validate` at 2f+1 replicas, f+1 of them honest, so
            // its payload decodes; if it ever did not, every honest replica skips it alike.
            return Vec::new();
        };
        let mut out = Vec::new();
        for batch in payload.batches {
            let digest = batch.digest();
            let checked = match self.batches.remove(&digest) {
                Some((b, seq)) => {
                    if let Some(seq) = seq {
                        self.queue.remove(&seq);
                    }
                    b
                }
                None => match check_whole_batch(&self.policy, batch, digest) {
                    Ok(b) => Arc::new(b),
                    Err(_) => continue,
                },
            };
            out.extend(checked.requests.iter().cloned());
        }
        out
    }
}

impl Mempool {
    /// Blocks at or below a committed height that did not commit are abandoned: forget them,
    /// and the batches only they carried that were never queued here (queued ones stay, to
    /// be proposed again).
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

impl Application for Mempool {
    fn propose(&mut self, uncommitted: &[&Block], payload_bytes_max: usize) -> Vec<u8> {
        let mut excluded: HashSet<BatchDigest> = HashSet::new();
        for b in uncommitted {
            excluded.extend(self.digests_of(b));
        }
        let mut payload = Payload::default();
        // postcard's overhead per batch and per request is a few varint bytes: keep a margin.
        let mut budget = payload_bytes_max.saturating_sub(64);
        for digest in self.queue.values() {
            if payload.batches.len() >= PAYLOAD_BATCHES_MAX {
                break;
            }
            if excluded.contains(digest) {
                continue;
            }
            let (b, _) = &self.batches[digest];
            let len = b.batch.wire_len() + 16;
            if len > budget {
                break;
            }
            budget -= len;
            payload.batches.push(b.batch.clone());
        }
        encode_payload(&payload)
    }

    fn validate(&mut self, block: &Block, _uncommitted: &[&Block]) -> bool {
        let payload = match decode_payload(&block.payload) {
            Ok(p) => p,
            Err(_) => {
                self.stats.vetoes += 1;
                return false;
            }
        };
        let mut digests = Vec::with_capacity(payload.batches.len());
        for batch in payload.batches {
            let digest = batch.digest();
            digests.push(digest);
            if self.batches.contains_key(&digest) {
                continue;
            }
            self.stats.late_checks += 1;
            match check_whole_batch(&self.policy, batch, digest) {
                // Known good from now on, but not queued: it is already in a block.
                Ok(b) => {
                    self.batches.insert(digest, (Arc::new(b), None));
                }
                Err(_) => {
                    self.stats.vetoes += 1;
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

    fn ready_to_propose(&mut self) -> bool {
        let Some((exec, pipeline_blocks)) = &self.exec else {
            return true;
        };
        let view = *exec.borrow();
        let applying = self.committed_height.saturating_sub(view.applied);
        let ready = applying > CATCH_UP_BLOCKS
            || (applying < *pipeline_blocks && view.forming < *pipeline_blocks);
        if !ready {
            self.held = true;
            self.stats.proposals_held += 1;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notary_types::ClusterId;

    fn mempool(committed: u64, applied: u64, forming: u64) -> (Mempool, watch::Sender<ExecView>) {
        let policy = ClusterPolicy::new(ClusterId::new("pacing").unwrap(), []).unwrap();
        let (tx, rx) = watch::channel(ExecView {
            applied,
            certified: 0,
            forming,
        });
        (
            Mempool::new(Arc::new(policy)).paced_by(rx, 3, committed),
            tx,
        )
    }

    #[test]
    fn a_full_apply_pipeline_holds_the_proposal_until_it_drains() {
        let (mut m, exec) = mempool(10, 7, 0);
        assert!(!m.ready_to_propose(), "three blocks wait to be applied");
        assert!(m.is_holding());
        assert!(
            m.take_held(),
            "the driver is told to offer the proposal again"
        );
        assert!(!m.take_held(), "once");
        exec.send_replace(ExecView {
            applied: 8,
            certified: 0,
            forming: 2,
        });
        assert!(m.ready_to_propose(), "two waiting, two forming: room");
        assert!(!m.is_holding());
        assert_eq!(m.stats.proposals_held, 1);
    }

    #[test]
    fn certificates_in_flight_hold_the_proposal_but_uncovered_blocks_do_not() {
        let (mut m, exec) = mempool(10, 10, 3);
        assert!(!m.ready_to_propose(), "three certificates forming");
        exec.send_replace(ExecView {
            applied: 10,
            certified: 2,
            forming: 0,
        });
        assert!(
            m.ready_to_propose(),
            "eight applied blocks wait for a signed height to cover them: no BLS work pending"
        );
    }

    #[test]
    fn a_replica_catching_up_and_an_unpaced_mempool_always_propose() {
        let (mut m, _exec) = mempool(1000, 10, 0);
        assert!(m.ready_to_propose(), "far behind: catching up, not pacing");
        let policy = Arc::new(ClusterPolicy::new(ClusterId::new("pacing").unwrap(), []).unwrap());
        assert!(Mempool::new(policy.clone()).ready_to_propose());
        let (_tx, rx) = watch::channel(ExecView::default());
        let mut off = Mempool::new(policy).paced_by(rx, 0, 10);
        assert!(
            off.ready_to_propose(),
            "pipeline_blocks = 0 turns pacing off"
        );
    }
}
