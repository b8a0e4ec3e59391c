//! The executor: one OS thread that applies committed blocks in height order and certifies
//! them.
//!
//! **Applying.** Each committed block is decided and written in one synced batch
//! ([`notary_core::apply_committed_block`]). Its header carries the hash of the header below
//! it, so the cluster's signature over one header vouches for every block below it: an answer
//! carries its block's header, the headers above it up to a signed one (at most
//! [`CHAIN_HEADERS_MAX`]), and the signature (`docs/PROTOCOL.md`, section 4).
//!
//! **Which heights are signed.** Certifying costs milliseconds of BLS work per certificate on
//! every replica (sign a share, combine f + 1, verify), whatever the number of blocks it
//! covers; so replicas sign some applied heights, not every one, and the same ones. A replica
//! signs, when it applies it,
//! - the first block of each window of `batch.sign_interval` of block time: its timestamp
//!   (agreed in consensus, so every replica picks the same blocks) is in another window than
//!   the one below it; except an odd height right after another window's first block (less
//!   than two windows before it): when rounds are as long as a window, the cluster signs
//!   every other block, not every one;
//! - every height that is a multiple of [`CHAIN_HEADERS_MAX`], so that a certificate is at
//!   most that many heights above any block;
//! - any height a peer has signed (a share for a height not applied yet waits in a bounded
//!   buffer until it is): a height that f + 1 replicas applied always certifies, and a faulty
//!   peer that signs every height costs this replica one signature per block, as if it signed
//!   every block itself.
//!
//! The first two rules are [`SignSchedule`] (`notary_core`), which the simulator runs too.
//!
//! The blocks after the first of a window are covered by the next window's first block. When
//! no block comes (a quiet cluster, or a leader that holds its proposal while its executor
//! catches up), a replica that has applied nothing for `batch.sign_interval`, and has no
//! certificate forming, signs its newest block: the replicas that have applied the same
//! blocks pick the same one. After a block the exception skipped it waits two intervals, as
//! that block's cover is expected a round later.
//!
//! When a certificate forms for height `k`, it is stored (unsynced) and every applied block up
//! to `k` within reach of it is answered: its clients get the answer at once. The block's
//! decisions were synced before any share over a header above it left, and a threshold BLS
//! signature is unique, so a certificate lost in a crash is formed again after the restart
//! with the same bytes ([`uncovered`] finds the heights above the last stored certificate).
//!
//! A peer that sends a share for a height already covered here is sent the covering
//! certificate (that is how a replica that was behind catches up); a certificate for a height
//! not applied yet waits in a bounded buffer. A certificate still forming
//! [`SHARE_RESEND_AFTER`] after its share left sends the share again (at most
//! [`SHARE_RESEND_HEIGHTS_MAX`] at a time): a share lost in transit, or sent while a restarted
//! replica's connections were still being made, is asked for again.
//!
//! A storage error is fatal: the executor stops, the replica stops signing, and `/readyz`
//! says why. Nothing is acknowledged that was not durable: an answer is built from block
//! records synced before the share that certifies them was signed.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blsttc::{PublicKeySet, SecretKeyShare, SignatureShare};
use bytes::Bytes;
use notary_consensus::{CommittedBlock, ReplicaId};
use notary_core::{
    apply_committed_block, block_answers_of, sign_header, uncovered, BlockRecord, Committee,
    ReplicaIndex, ShareCollector, ShareOutcome, SignSchedule, Store, StoreError, TxStatus,
    VerifiedRequest,
};
use notary_net::Transport;
use notary_types::limits::CHAIN_HEADERS_MAX;
use notary_types::{
    BlockHeader, ClusterId, ClusterSignature, Height, RequestDigest, Timestamp, TxId,
};

use crate::driver::encode_committed;
use crate::metrics::Metrics;
use crate::state::Waiters;
use crate::wire::{self, PeerMessage};

/// Heights beyond the applied one for which peers' shares and certificates are buffered.
pub const SHARE_HEIGHTS_AHEAD_MAX: u64 = 1024;

/// How long a certificate may stay forming before this replica sends its share again.
pub const SHARE_RESEND_AFTER: Duration = Duration::from_secs(1);

/// At most this many heights (the oldest) have their share sent again per resend pass.
pub const SHARE_RESEND_HEIGHTS_MAX: usize = 64;

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
    /// Highest height up to which every applied height is covered by a certificate (and its
    /// waiting clients answered).
    pub certified: u64,
    /// Certificates this replica has signed a share for and is still collecting: the BLS work
    /// in flight, which pacing bounds (`mempool.rs`).
    pub forming: u64,
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
    /// The least time between two certificates this replica starts on its own.
    pub sign_interval: Duration,
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

/// An applied block not yet covered by a certificate.
struct Uncovered {
    /// The block as applied: its leaves give the answers (kept, not read back: a block
    /// record can be megabytes).
    record: BlockRecord,
    /// Its requests' (tx, digest) pairs, to wake waiters.
    requests: Vec<(TxId, RequestDigest)>,
}

/// A height this replica signed, collecting shares.
struct Signing {
    collector: ShareCollector,
    /// This replica's share message, kept to send again while the certificate forms.
    share_message: Bytes,
    /// When the share was last sent.
    sent_at: Instant,
}

/// Everything the executor thread keeps between inputs.
struct State {
    /// Highest applied height.
    applied: u64,
    /// Applied heights not covered yet, ascending.
    uncovered: BTreeMap<u64, Uncovered>,
    /// Headers of every applied height from the lowest uncovered one up: the chains of the
    /// answers, and what a peer's certificate is checked against.
    headers: BTreeMap<u64, BlockHeader>,
    /// Heights this replica signed and whose certificate is forming.
    signing: BTreeMap<u64, Signing>,
    /// Peers' shares for heights not applied yet.
    early_shares: BTreeMap<u64, HashMap<ReplicaId, Vec<u8>>>,
    /// Peers' certificates for heights not applied yet.
    early_certificates: BTreeMap<u64, (ReplicaId, Vec<u8>)>,
    /// When this replica last applied a block.
    last_applied_at: Option<Instant>,
    /// Which heights it signs of its own accord.
    schedule: SignSchedule,
}

impl State {
    fn new(schedule: SignSchedule) -> State {
        State {
            applied: 0,
            uncovered: BTreeMap::new(),
            headers: BTreeMap::new(),
            signing: BTreeMap::new(),
            early_shares: BTreeMap::new(),
            early_certificates: BTreeMap::new(),
            last_applied_at: None,
            schedule,
        }
    }

    /// Every applied height up to this one is covered.
    fn certified(&self) -> u64 {
        self.uncovered.keys().next().map_or(self.applied, |h| h - 1)
    }

    /// Whether this replica should follow a peer that signed `height`: it is applied and
    /// not covered here (even below a height this replica is signing: the peer may not have
    /// applied that one yet).
    fn follows(&self, height: u64) -> bool {
        height > self.certified() && height <= self.applied
    }

    /// When this replica should sign its newest block itself, if it has a reason to: some
    /// applied block is uncovered, no certificate it signed is forming, and none has been
    /// applied for the schedule's quiet interval.
    fn quiet_sign_at(&self) -> Option<Instant> {
        let interval = Duration::from_millis(self.schedule.quiet_ms());
        if self.applied <= self.certified() || !self.signing.is_empty() {
            return None;
        }
        Some(
            self.last_applied_at
                .map_or_else(Instant::now, |t| t + interval),
        )
    }
}

impl<T: Transport> Executor<T> {
    /// Runs until `ExecInput::Stop` or a storage failure.
    pub fn run(self) {
        let mut st = State::new(SignSchedule::new(self.window_ms(), None, None));
        if let Err(e) = self.restart(&mut st) {
            return self.halt(e);
        }
        loop {
            self.view.send_replace(ExecView {
                applied: st.applied,
                certified: st.certified(),
                forming: st.signing.len() as u64,
            });
            // Wait for an input, at most until this replica should sign its newest block or a
            // share is due to be sent again.
            let now = Instant::now();
            let wake = [
                st.quiet_sign_at(),
                st.signing
                    .values()
                    .map(|s| s.sent_at + SHARE_RESEND_AFTER)
                    .min(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + SHARE_RESEND_AFTER);
            let first = match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Handle everything queued before looking at the quiet rule.
            let mut next = first;
            let mut stop = false;
            while let Some(input) = next.take() {
                match input {
                    ExecInput::Stop => {
                        stop = true;
                        break;
                    }
                    input => {
                        if let Err(e) = self.handle(&mut st, input) {
                            return self.halt(e);
                        }
                    }
                }
                match self.rx.try_recv() {
                    Ok(input) => next = Some(input),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => stop = true,
                }
            }
            if stop {
                break;
            }
            if let Err(e) = self.finish_formed(&mut st) {
                return self.halt(e);
            }
            if st.quiet_sign_at().is_some_and(|at| at <= Instant::now()) {
                let top = st.applied;
                self.sign(&mut st, top);
                if let Err(e) = self.finish_formed(&mut st) {
                    return self.halt(e);
                }
            }
            self.resend_stale_shares(&mut st);
        }
    }

    /// `batch.sign_interval` in ms, the schedule's window.
    fn window_ms(&self) -> u64 {
        u64::try_from(self.sign_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// After a restart: the applied heights above the last stored certificate are covered
    /// again (a lost certificate is formed again with the same bytes).
    fn restart(&self, st: &mut State) -> Result<(), StoreError> {
        st.applied = self.store.applied_height()?.0;
        st.schedule = SignSchedule::resume(self.window_ms(), &*self.store, Height(st.applied))?;
        let missing = uncovered(&*self.store, Height(st.applied))?;
        if let Some(first) = missing.first() {
            tracing::info!(
                heights = missing.len(),
                from = first,
                "covering again applied heights above the last stored certificate"
            );
        }
        for h in missing {
            let record = self
                .store
                .block(Height(h))?
                .ok_or(StoreError::MissingBlock { height: h })?;
            let requests = record
                .requests
                .iter()
                .map(|r| (r.fields.tx_id, r.fields.digest()))
                .collect();
            st.headers.insert(h, record.header());
            st.uncovered.insert(h, Uncovered { record, requests });
            if h % CHAIN_HEADERS_MAX as u64 == 0 {
                self.sign(st, h);
            }
        }
        Ok(())
    }

    fn handle(&self, st: &mut State, input: ExecInput) -> Result<(), StoreError> {
        match input {
            ExecInput::Stop => Ok(()),
            ExecInput::Apply {
                committed,
                requests,
            } => self.apply(st, committed, &requests),
            ExecInput::Share {
                from,
                height,
                share,
            } => {
                if let Some(s) = st.signing.get_mut(&height) {
                    self.add_share(s, from, &share);
                } else if st.follows(height) {
                    self.sign(st, height);
                    if let Some(s) = st.signing.get_mut(&height) {
                        self.add_share(s, from, &share);
                    }
                } else if height <= st.certified() {
                    self.send_certificate(from, height)?;
                } else if height > st.applied && height <= st.applied + SHARE_HEIGHTS_AHEAD_MAX {
                    st.early_shares
                        .entry(height)
                        .or_default()
                        .insert(from, share);
                }
                Ok(())
            }
            ExecInput::Certificate {
                from,
                height,
                signature,
            } => {
                if height > st.applied && height <= st.applied + SHARE_HEIGHTS_AHEAD_MAX {
                    st.early_certificates
                        .entry(height)
                        .or_insert((from, signature));
                    Ok(())
                } else {
                    self.accept_certificate(st, from, height, &signature)
                }
            }
        }
    }

    /// Applies one committed block, then signs it if it is the first of its window of block
    /// time, if its height is a multiple of [`CHAIN_HEADERS_MAX`], or if a peer already did.
    fn apply(
        &self,
        st: &mut State,
        committed: Box<CommittedBlock>,
        requests: &[VerifiedRequest],
    ) -> Result<(), StoreError> {
        let height = committed.block.height().0;
        if height <= st.applied {
            return Ok(());
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
        st.applied = height;
        st.headers.insert(height, record.header());
        let digests = requests
            .iter()
            .map(|r| (r.request().fields.tx_id, r.digest()))
            .collect();
        st.uncovered.insert(
            height,
            Uncovered {
                record,
                requests: digests,
            },
        );
        let shares = st.early_shares.remove(&height);
        st.early_shares.retain(|h, _| *h > height);
        let scheduled = st.schedule.on_apply(height, timestamp.0);
        st.last_applied_at = Some(Instant::now());
        if scheduled || shares.is_some() && st.follows(height) {
            self.sign(st, height);
        }
        if let Some(s) = st.signing.get_mut(&height) {
            for (from, share) in shares.unwrap_or_default() {
                self.add_share(s, from, &share);
            }
        }
        let certificate = st.early_certificates.remove(&height);
        st.early_certificates.retain(|h, _| *h > height);
        if let Some((from, signature)) = certificate {
            self.accept_certificate(st, from, height, &signature)?;
        }
        Ok(())
    }

    /// Signs the header at `height` (applied, uncovered), sends the share, and starts
    /// collecting.
    fn sign(&self, st: &mut State, height: u64) {
        if st.signing.contains_key(&height) {
            return;
        }
        let Some(header) = st.headers.get(&height) else {
            return;
        };
        tracing::debug!(height, applied = st.applied, "signing");
        let t = Instant::now();
        let share = sign_header(&self.share_key, header);
        self.metrics
            .observe_signing("share", t.elapsed().as_secs_f64());
        let bytes = Bytes::from(wire::encode(&PeerMessage::Share {
            height,
            share: share.to_bytes().to_vec(),
        }));
        if let Err(e) = self.transport.broadcast(bytes.clone()) {
            tracing::warn!(error = %e, height, "share not sent");
        }
        let collector = ShareCollector::new(self.keys.clone(), self.committee, header)
            .expect("config check: the key set's threshold matches f");
        let mut s = Signing {
            collector,
            share_message: bytes,
            sent_at: Instant::now(),
        };
        self.add_share_parsed(&mut s, self.me, share);
        st.signing.insert(height, s);
    }

    /// Covers every height whose own certificate formed, lowest first.
    fn finish_formed(&self, st: &mut State) -> Result<(), StoreError> {
        let formed: Vec<(u64, ClusterSignature)> = st
            .signing
            .iter()
            .filter_map(|(h, s)| s.collector.signature().map(|sig| (*h, *sig)))
            .collect();
        for (h, sig) in formed {
            st.signing.remove(&h);
            self.cover(st, h, sig)?;
        }
        Ok(())
    }

    /// Sends again the share of every certificate still forming (oldest first, bounded)
    /// [`SHARE_RESEND_AFTER`] after it was last sent. A peer still collecting adds it (a
    /// duplicate is ignored); a peer that has the height covered answers with the certificate.
    fn resend_stale_shares(&self, st: &mut State) {
        let now = Instant::now();
        for (height, s) in st
            .signing
            .iter_mut()
            .filter(|(_, s)| now.duration_since(s.sent_at) >= SHARE_RESEND_AFTER)
            .take(SHARE_RESEND_HEIGHTS_MAX)
        {
            tracing::debug!(height, "certificate still forming: share sent again");
            if let Err(e) = self.transport.broadcast(s.share_message.clone()) {
                tracing::warn!(error = %e, height, "share not sent again");
            }
            s.sent_at = now;
        }
    }

    fn halt(&self, e: StoreError) {
        tracing::error!(error = %e, "storage failed: this replica stops applying and signing");
        *self.halted.lock() = Some(format!("storage failed: {e}"));
        self.metrics.signing_halted.set(1);
    }

    fn add_share(&self, s: &mut Signing, from: ReplicaId, bytes: &[u8]) {
        let share = <[u8; 96]>::try_from(bytes)
            .ok()
            .and_then(|b| SignatureShare::from_bytes(b).ok());
        match share {
            Some(share) => self.add_share_parsed(s, from, share),
            None => self.blame(from),
        }
    }

    fn add_share_parsed(&self, s: &mut Signing, from: ReplicaId, share: SignatureShare) {
        let t = Instant::now();
        match s.collector.add(ReplicaIndex(from.0), share) {
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
        tracing::warn!(peer = %who, "invalid signature share or certificate: attributed to its sender");
        self.metrics
            .frames_rejected
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "invalid_share",
            })
            .inc();
    }

    /// A peer's certificate for an applied height: kept if it verifies over our own header
    /// at that height, and it covers everything below.
    fn accept_certificate(
        &self,
        st: &mut State,
        from: ReplicaId,
        height: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if height <= st.certified() || height > st.applied {
            return Ok(());
        }
        let Some(header) = st.headers.get(&height) else {
            return Ok(());
        };
        let Ok(sig) = <[u8; 96]>::try_from(bytes).map(ClusterSignature) else {
            self.blame(from);
            return Ok(());
        };
        let t = Instant::now();
        if header.verify(&self.keys.public_key(), &sig).is_err() {
            self.blame(from);
            return Ok(());
        }
        self.metrics
            .observe_signing("verify", t.elapsed().as_secs_f64());
        self.cover(st, height, sig)
    }

    /// A peer's share for a height covered here: send it the certificate that covers it (the
    /// first stored at or above it), so that a replica that is behind catches up.
    fn send_certificate(&self, to: ReplicaId, height: u64) -> Result<(), StoreError> {
        if let Some((signed, sig)) = self.store.certificate_from(Height(height))? {
            let bytes = Bytes::from(wire::encode(&PeerMessage::Certificate {
                height: signed.0,
                signature: sig.0.to_vec(),
            }));
            let _ = self.transport.send(to, bytes);
        }
        Ok(())
    }

    /// Stores the certificate of `height` and answers the clients of every uncovered block up
    /// to it that is within [`CHAIN_HEADERS_MAX`] headers of it. A block further down stays
    /// uncovered until a nearer certificate forms (every multiple of the limit is signed).
    fn cover(&self, st: &mut State, height: u64, sig: ClusterSignature) -> Result<(), StoreError> {
        // Not synced (the store's contract): a certificate lost in a crash is formed again
        // after the restart, with the same bytes.
        self.store.put_certificate(Height(height), &sig)?;
        tracing::debug!(height, "certificate formed");
        let reach = height.saturating_sub(CHAIN_HEADERS_MAX as u64);
        let covered: Vec<u64> = st
            .uncovered
            .range(reach..=height)
            .map(|(h, _)| *h)
            .collect();
        for h in covered {
            let block = st.uncovered.remove(&h).expect("listed above");
            self.answer(st, &block, height, sig)?;
        }
        // A signing at or below a certificate is moot, unless a block too far below this
        // certificate still waits for it.
        let lowest = st.uncovered.keys().next().copied();
        st.signing
            .retain(|h, _| *h > height || lowest.is_some_and(|l| l <= *h));
        let keep_from = lowest.unwrap_or(st.applied + 1);
        st.headers.retain(|h, _| *h >= keep_from);
        Ok(())
    }

    /// Answers the clients waiting on `block`, covered by the certificate of `signed`.
    fn answer(
        &self,
        st: &State,
        block: &Uncovered,
        signed: u64,
        sig: ClusterSignature,
    ) -> Result<(), StoreError> {
        // One Merkle tree for all the block's waiting clients (building them per request made
        // answering a block quadratic in its size).
        if !block
            .requests
            .iter()
            .any(|(tx, _)| self.waiters.is_waiting(tx))
        {
            return Ok(());
        }
        // (`range` refuses a start above its end: the signed block itself has no chain.)
        let chain: Vec<BlockHeader> = st
            .headers
            .range(block.record.height.0 + 1..signed + 1)
            .map(|(_, h)| h.clone())
            .collect();
        let answers = block_answers_of(&*self.store, &block.record, Some((sig, &chain)))?;
        for ((tx, digest), status) in block.requests.iter().zip(answers) {
            if let TxStatus::Certified(answer) = status {
                if self.waiters.is_waiting(tx) {
                    self.waiters.deliver(tx, digest, &answer);
                }
            }
        }
        Ok(())
    }
}
