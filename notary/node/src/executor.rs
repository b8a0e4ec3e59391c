//! The executor: one OS thread that applies committed blocks in height order and certifies
//! their results.
//!
//! For each committed block: decide and write it in one synced batch
//! ([`notary_core::apply_committed_block`]), sign the header with this replica's BLS share,
//! send the share to every peer, and collect shares until f+1 valid ones combine into the
//! cluster signature (verified before use). The certificate is stored, unsynced, and every
//! client waiting on a transaction of the block gets its answer: the block's decisions were
//! synced before its share left, and a threshold BLS signature is unique (whichever f+1
//! shares form it), so a certificate lost in a crash is formed again after the restart with
//! the same bytes ([`uncertified`] finds the heights to sign again). Shares that arrive for
//! heights not applied yet wait in a bounded buffer; a peer that sends a share for a block
//! already certified here is sent the certificate (that is how a replica that was behind
//! catches up on certificates). A height still uncertified [`SHARE_RESEND_AFTER`] after its
//! share left sends the share again (to at most [`SHARE_RESEND_HEIGHTS_MAX`] heights at a
//! time): a share or certificate lost in transit, or sent while a restarted replica's
//! connections were still being made, is asked for again instead of leaving the height
//! uncertified for ever.
//!
//! A storage error is fatal: the executor stops, the replica stops signing, and `/readyz`
//! says why. Nothing is acknowledged that was not durable: an answer is built from a block
//! record that is synced before its share is signed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blsttc::{PublicKeySet, SecretKeyShare, SignatureShare};
use bytes::Bytes;
use notary_consensus::{CommittedBlock, ReplicaId};
use notary_core::{
    apply_committed_block, block_answers_of, sign_header, uncertified, BlockRecord, Committee,
    ReplicaIndex, ShareCollector, ShareOutcome, Store, StoreError, TxStatus, VerifiedRequest,
};
use notary_net::Transport;
use notary_types::{ClusterId, ClusterSignature, Height, Timestamp};

use crate::driver::encode_committed;
use crate::metrics::Metrics;
use crate::state::Waiters;
use crate::wire::{self, PeerMessage};

/// Heights beyond the applied one for which peers' shares are buffered.
pub const SHARE_HEIGHTS_AHEAD_MAX: u64 = 1024;

/// How long a height may stay uncertified before this replica sends its share again.
pub const SHARE_RESEND_AFTER: Duration = Duration::from_secs(1);

/// At most this many heights (the oldest) have their share sent again per resend pass.
pub const SHARE_RESEND_HEIGHTS_MAX: usize = 64;

/// At most this many heights signed again after a restart are collecting shares at once.
pub const RESIGN_IN_FLIGHT_MAX: usize = 64;

/// Inputs of the executor thread.
pub enum ExecInput {
    /// A committed block with its checked requests.
    Apply {
        /// The block and its proof.
        committed: Box<CommittedBlock>,
        /// Its requests, in block order.
        requests: Vec<VerifiedRequest>,
    },
    /// A peer's share.
    Share {
        /// Who sent it (transport-authenticated).
        from: ReplicaId,
        /// For which height.
        height: u64,
        /// The share bytes.
        share: Vec<u8>,
    },
    /// A peer's copy of a combined certificate.
    Certificate {
        /// Who sent it.
        from: ReplicaId,
        /// For which height.
        height: u64,
        /// The signature bytes.
        signature: Vec<u8>,
    },
    /// Stop.
    Stop,
}

/// Progress the rest of the node reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecView {
    /// Highest applied height.
    pub applied: u64,
    /// Highest height up to which every applied height is certified: every applied height
    /// is pending (or waiting to be signed again after a restart) until it certifies.
    pub certified: u64,
}

/// The executor's state.
pub struct Executor<T: Transport> {
    /// This replica.
    pub me: ReplicaId,
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The transport (shares, certificates).
    pub transport: Arc<T>,
    /// The cluster's public key set.
    pub keys: PublicKeySet,
    /// This replica's secret share.
    pub share_key: SecretKeyShare,
    /// n, f for the collector.
    pub committee: Committee,
    /// Inputs.
    pub rx: Receiver<ExecInput>,
    /// Clients waiting for answers.
    pub waiters: Arc<Waiters>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Published progress (also wakes `/v1/stream`).
    pub view: tokio::sync::watch::Sender<ExecView>,
    /// Why the executor stopped, if it did.
    pub halted: Arc<parking_lot::Mutex<Option<String>>>,
}

struct Pending {
    collector: ShareCollector,
    /// A combined signature received from a peer and verified here.
    received: Option<ClusterSignature>,
    /// Request (tx, digest) pairs of the block, to wake waiters.
    requests: Vec<(notary_types::TxId, notary_types::RequestDigest)>,
    /// The block as applied: its header is what the shares sign, and its leaves give the
    /// answers (kept, not read back: a block record can be megabytes).
    record: BlockRecord,
    /// This replica's share message, kept to send again while the height is uncertified.
    share_message: Bytes,
    /// When the share was last sent.
    sent_at: Instant,
}

impl Pending {
    fn signature(&self) -> Option<ClusterSignature> {
        self.collector.signature().copied().or(self.received)
    }
}

impl<T: Transport> Executor<T> {
    /// Runs until `ExecInput::Stop` or a storage failure.
    pub fn run(mut self) {
        let mut applied = match self.store.applied_height() {
            Ok(h) => h.0,
            Err(e) => return self.halt(e),
        };
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut early: BTreeMap<u64, HashMap<ReplicaId, Vec<u8>>> = BTreeMap::new();
        // Heights applied before a restart whose certificate never formed (or was written but
        // not yet synced): sign them again. Their certificates are the same bytes as before,
        // since a threshold BLS signature does not depend on which shares formed it.
        let missing = match uncertified(&*self.store, Height(applied)) {
            Ok(m) => m,
            Err(e) => return self.halt(e),
        };
        let mut resign: VecDeque<u64> = missing.into();
        if !resign.is_empty() {
            tracing::info!(
                heights = resign.len(),
                from = resign[0],
                "signing again applied heights whose certificate is missing"
            );
        }
        loop {
            // Heights signed again enter `pending` a bounded number at a time: each holds its
            // block in memory until it certifies.
            while pending.len() < RESIGN_IN_FLIGHT_MAX {
                let Some(h) = resign.pop_front() else { break };
                match self.start_certifying(h) {
                    Ok(p) => {
                        pending.insert(h, p);
                    }
                    Err(e) => return self.halt(e),
                }
            }
            let certified = [pending.keys().next(), resign.front()]
                .into_iter()
                .flatten()
                .min()
                .map_or(applied, |h| h - 1);
            self.view.send_replace(ExecView { applied, certified });
            let input = match self.rx.recv_timeout(SHARE_RESEND_AFTER) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let result = match input {
                None => Ok(()),
                Some(ExecInput::Stop) => break,
                Some(ExecInput::Apply {
                    committed,
                    requests,
                }) => self
                    .apply(committed, &requests, &mut applied)
                    .map(|applied_block| {
                        let Some(record) = applied_block else { return };
                        let h = record.height.0;
                        let digests = requests
                            .iter()
                            .map(|r| (r.request().fields.tx_id, r.digest()))
                            .collect();
                        let mut p = self.certify(record, digests);
                        for (from, share) in early.remove(&h).unwrap_or_default() {
                            self.add_share(&mut p, from, &share);
                        }
                        pending.insert(h, p);
                    }),
                Some(ExecInput::Share {
                    from,
                    height,
                    share,
                }) => {
                    if let Some(p) = pending.get_mut(&height) {
                        self.add_share(p, from, &share);
                        Ok(())
                    } else if height > applied && height <= applied + SHARE_HEIGHTS_AHEAD_MAX {
                        early.entry(height).or_default().insert(from, share);
                        Ok(())
                    } else if height <= applied {
                        self.send_certificate(from, height)
                    } else {
                        Ok(())
                    }
                }
                Some(ExecInput::Certificate {
                    from,
                    height,
                    signature,
                }) => {
                    if let Some(p) = pending.get_mut(&height) {
                        self.accept_certificate(p, from, height, &signature);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                return self.halt(e);
            }
            // Finish every height whose signature formed.
            let done: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.signature().is_some())
                .map(|(h, _)| *h)
                .collect();
            for h in done {
                let p = pending.remove(&h).expect("listed above");
                let sig = p.signature().expect("filtered on it");
                if let Err(e) = self.finish(h, &sig, &p) {
                    return self.halt(e);
                }
            }
            early.retain(|h, _| *h > applied);
            self.resend_stale_shares(&mut pending);
        }
    }

    /// Sends again the share of every height (oldest first, bounded) still uncertified
    /// [`SHARE_RESEND_AFTER`] after it was last sent. A peer still collecting adds it (a
    /// duplicate is ignored); a peer that certified the height answers with the certificate.
    fn resend_stale_shares(&self, pending: &mut BTreeMap<u64, Pending>) {
        let now = Instant::now();
        for (height, p) in pending
            .iter_mut()
            .filter(|(_, p)| now.duration_since(p.sent_at) >= SHARE_RESEND_AFTER)
            .take(SHARE_RESEND_HEIGHTS_MAX)
        {
            tracing::debug!(height, "height still uncertified: share sent again");
            if let Err(e) = self.transport.broadcast(p.share_message.clone()) {
                tracing::warn!(error = %e, height, "share not sent again");
            }
            p.sent_at = now;
        }
    }

    fn halt(&self, e: StoreError) {
        tracing::error!(error = %e, "storage failed: this replica stops applying and signing");
        *self.halted.lock() = Some(format!("storage failed: {e}"));
        self.metrics.signing_halted.set(1);
    }

    /// Applies one committed block; returns its record if it was new.
    fn apply(
        &mut self,
        committed: Box<CommittedBlock>,
        requests: &[VerifiedRequest],
        applied: &mut u64,
    ) -> Result<Option<BlockRecord>, StoreError> {
        let height = committed.block.height().0;
        if height <= *applied {
            return Ok(None);
        }
        let timestamp = Timestamp(committed.block.header.timestamp.0);
        let lag_s = crate::driver::now_ms().0.saturating_sub(timestamp.0) as f64 / 1000.0;
        let record = apply_committed_block(
            &*self.store,
            &self.cluster_id,
            Height(height),
            timestamp,
            requests,
            encode_committed(&committed),
        )?;
        self.metrics.commit_latency.observe(lag_s);
        self.metrics.blocks_committed.inc();
        self.metrics.committed_height.set(height as i64);
        tracing::debug!(
            height,
            round = committed.block.round().0,
            requests = requests.len(),
            "block applied"
        );
        *applied = height;
        Ok(Some(record))
    }

    /// [`Self::certify`] for a block applied before a restart: its record from the store.
    fn start_certifying(&self, height: u64) -> Result<Pending, StoreError> {
        let record = self
            .store
            .block(Height(height))?
            .ok_or(StoreError::MissingBlock { height })?;
        let digests = record
            .requests
            .iter()
            .map(|r| (r.fields.tx_id, r.fields.digest()))
            .collect();
        Ok(self.certify(record, digests))
    }

    /// Signs the header of an applied block, sends the share, and starts a collector.
    /// `digests`: the (tx, request digest) of each of its requests, to wake their waiters.
    fn certify(
        &self,
        record: BlockRecord,
        digests: Vec<(notary_types::TxId, notary_types::RequestDigest)>,
    ) -> Pending {
        let height = record.height.0;
        let header = record.header();
        let t = Instant::now();
        let share = sign_header(&self.share_key, &header);
        self.metrics
            .observe_signing("share", t.elapsed().as_secs_f64());
        let bytes = Bytes::from(wire::encode(&PeerMessage::Share {
            height,
            share: share.to_bytes().to_vec(),
        }));
        if let Err(e) = self.transport.broadcast(bytes.clone()) {
            tracing::warn!(error = %e, height, "share not sent");
        }
        let collector = ShareCollector::new(self.keys.clone(), self.committee, &header)
            .expect("config check: the key set's threshold matches f");
        let mut p = Pending {
            collector,
            received: None,
            requests: digests,
            record,
            share_message: bytes,
            sent_at: Instant::now(),
        };
        self.add_share_parsed(&mut p, self.me, share);
        p
    }

    fn add_share(&self, p: &mut Pending, from: ReplicaId, bytes: &[u8]) {
        let share = <[u8; 96]>::try_from(bytes)
            .ok()
            .and_then(|b| SignatureShare::from_bytes(b).ok());
        match share {
            Some(s) => self.add_share_parsed(p, from, s),
            None => self.blame(from),
        }
    }

    fn add_share_parsed(&self, p: &mut Pending, from: ReplicaId, share: SignatureShare) {
        let t = Instant::now();
        match p.collector.add(ReplicaIndex(from.0), share) {
            ShareOutcome::Combined(_) => {
                self.metrics
                    .observe_signing("combine", t.elapsed().as_secs_f64());
            }
            ShareOutcome::Invalid { replicas } => {
                for r in replicas {
                    self.blame(ReplicaId(r.0));
                }
            }
            ShareOutcome::Added | ShareOutcome::Duplicate | ShareOutcome::AlreadyCombined => {}
        }
    }

    fn blame(&self, who: ReplicaId) {
        tracing::warn!(peer = %who, "invalid signature share: attributed to its sender");
        self.metrics
            .frames_rejected
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "invalid_share",
            })
            .inc();
    }

    fn accept_certificate(&self, p: &mut Pending, from: ReplicaId, height: u64, bytes: &[u8]) {
        let sig = <[u8; 96]>::try_from(bytes).ok().map(ClusterSignature);
        let Some(sig) = sig else {
            return self.blame(from);
        };
        // The collector holds the header bytes; a certificate from a peer must verify over
        // our own header for that height before we keep it.
        let t = Instant::now();
        if p.record.height.0 == height
            && p.record
                .header()
                .verify(&self.keys.public_key(), &sig)
                .is_ok()
        {
            self.metrics
                .observe_signing("verify", t.elapsed().as_secs_f64());
            p.received = Some(sig);
        } else {
            self.blame(from);
        }
    }

    fn send_certificate(&self, to: ReplicaId, height: u64) -> Result<(), StoreError> {
        if let Some(sig) = self.store.certificate(Height(height))? {
            let bytes = Bytes::from(wire::encode(&PeerMessage::Certificate {
                height,
                signature: sig.0.to_vec(),
            }));
            let _ = self.transport.send(to, bytes);
        }
        Ok(())
    }

    /// Stores the certificate and answers the clients waiting on the block.
    fn finish(&self, height: u64, sig: &ClusterSignature, p: &Pending) -> Result<(), StoreError> {
        // Not synced (the store's contract): a certificate lost in a crash is formed again
        // after the restart, with the same bytes.
        self.store.put_certificate(Height(height), sig)?;
        // One read of the block and one Merkle tree for all its waiting clients (building
        // them per request made answering a block quadratic in its size).
        if !p.requests.iter().any(|(tx, _)| self.waiters.is_waiting(tx)) {
            return Ok(());
        }
        let answers = block_answers_of(&*self.store, &p.record, Some(*sig))?;
        for ((tx, digest), status) in p.requests.iter().zip(answers) {
            if let TxStatus::Certified(answer) = status {
                if self.waiters.is_waiting(tx) {
                    self.waiters.deliver(tx, digest, &answer);
                }
            }
        }
        Ok(())
    }
}
