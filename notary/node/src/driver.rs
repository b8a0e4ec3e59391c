//! The consensus driver: one OS thread that owns the consensus [`Replica`] and the
//! [`Mempool`], feeds them events, and executes their actions.
//!
//! # The order of actions (written once, here)
//! For each batch of actions the core returns, the driver executes:
//! 1. **persist** — `Action::Persist`: the safety record is written and fsynced
//!    (`Store::save_safety_record` returns only once it is durable), then
//!    `Event::Persisted` is fed back. The core holds back any vote or timeout that needs the
//!    record until that event, so **a vote never reaches the wire before the record that
//!    allows it is durable**. A failed persist halts the driver: it never votes again.
//! 2. **send** — `Send`, `Broadcast`, `ServeSync` go to the transport, which queues them
//!    without waiting.
//! 3. **commit** — `Commit` hands the block, its proof and its checked requests to the
//!    executor (apply → reply → certify), in height order.
//! 4. **timers** — `SetTimer` moves the one deadline this loop sleeps towards.
//!
//! The core already returns its actions in this order; the driver executes them in the order
//! returned and feeds `Persisted` events back before it looks at anything else.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use notary_consensus::{
    Action, CommittedBlock, Event, Height, Message, Replica, SafetyData, Stats, SyncResponse,
    TimeMs, Verified,
};
use notary_core::Store;
use notary_net::Transport;
use parking_lot::Mutex;

use crate::executor::ExecInput;
use crate::mempool::{CheckedBatch, Mempool};
use crate::metrics::{CheckLabel, Metrics};
use crate::wire::{self, PeerMessage};

/// Inputs of the consensus thread.
pub enum DriverInput {
    /// A verified consensus message.
    Consensus(Box<Verified>),
    /// A checked batch (own or a peer's).
    Batch(Arc<CheckedBatch>),
    /// Stop the loop.
    Stop,
}

/// The largest sync response we build, in bytes (below the transport's frame limit).
const SYNC_RESPONSE_BYTES_MAX: usize = 6 << 20;

/// How often the driver asks one peer (in turn) for committed blocks past its own. An idle
/// cluster sends nothing, so a replica that restarted, or missed the last blocks before the
/// cluster went quiet, would otherwise never learn it is behind. A peer that has nothing
/// newer does not answer.
const SYNC_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// While a proposal is held for the executor's pipeline (pacing), how often it is offered again.
const PACING_POLL: Duration = Duration::from_millis(2);

/// This replica's wall clock, in ms since the Unix epoch: the only clock consensus sees.
pub fn now_ms() -> TimeMs {
    TimeMs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Encodes a safety record for the store.
pub fn encode_safety(record: &SafetyData) -> Vec<u8> {
    postcard::to_allocvec(record).expect("encoding to a Vec cannot fail")
}

/// Decodes a stored safety record.
pub fn decode_safety(bytes: &[u8]) -> Result<SafetyData, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// An event, for the `notary::rounds` trace: a message's kind and sender, or the event's name.
fn event_label(event: &Event) -> String {
    match event {
        Event::Message(m) => format!("{}<{}", m.message().kind(), m.from()),
        Event::PayloadReady => "payload".into(),
        Event::TimerFired => "timer".into(),
        _ => "other".into(),
    }
}

/// The actions a handled event returned, for the `notary::rounds` trace (the persist's own
/// follow-up, the vote it releases, is inside its time but not listed).
fn actions_label(actions: &[Action]) -> String {
    let label = |a: &Action| match a {
        Action::Persist { .. } => "persist".to_string(),
        Action::Send { to, message } => format!("send:{}>{to}", message.kind()),
        Action::Broadcast { message } => format!("bcast:{}", message.kind()),
        Action::Commit { .. } => "commit".to_string(),
        Action::ServeSync { .. } => "serve_sync".to_string(),
        Action::SetTimer { .. } => "timer".to_string(),
    };
    actions.iter().map(label).collect::<Vec<_>>().join(",")
}

/// Encodes a committed block and its proof (stored with the block, served to lagging peers).
pub fn encode_committed(c: &CommittedBlock) -> Vec<u8> {
    postcard::to_allocvec(c).expect("encoding to a Vec cannot fail")
}

/// Decodes what [`encode_committed`] wrote.
pub fn decode_committed(bytes: &[u8]) -> Result<CommittedBlock, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// What the rest of the node may read of the consensus state.
#[derive(Clone, Debug, Default)]
pub struct ConsensusView {
    /// The core's counters.
    pub stats: Stats,
    /// Why the driver stopped, if it did.
    pub halted: Option<String>,
}

/// Everything the driver thread needs.
pub struct Driver<T: Transport> {
    /// The core.
    pub replica: Replica,
    /// The application.
    pub mempool: Mempool,
    /// Inputs.
    pub rx: Receiver<DriverInput>,
    /// To the executor.
    pub exec: SyncSender<ExecInput>,
    /// The store (safety record; committed blocks for sync).
    pub store: Arc<dyn Store>,
    /// The transport.
    pub transport: Arc<T>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Shared view for /status and /metrics.
    pub view: Arc<Mutex<ConsensusView>>,
}

impl<T: Transport> Driver<T> {
    /// Runs until `DriverInput::Stop` or a fatal storage error.
    pub fn run(mut self) {
        let mut deadline: Option<TimeMs> = None;
        let started = Instant::now();
        let mut round_started = started;
        let mut round = self.replica.round();
        let first = self
            .replica
            .handle(now_ms(), Event::Tick, &mut self.mempool);
        if !self.execute(first, &mut deadline) {
            return;
        }
        // Right after a start, ask everyone: we may have been down for a while.
        let peers = self.transport.peers();
        for peer in &peers {
            self.probe_sync(*peer);
        }
        let mut next_probe = Instant::now() + SYNC_PROBE_INTERVAL;
        let mut probe_turn = 0usize;
        loop {
            let until_timer = match deadline {
                Some(d) => Duration::from_millis(d.0.saturating_sub(now_ms().0)),
                None => Duration::from_secs(3600),
            };
            let until_probe = next_probe.saturating_duration_since(Instant::now());
            if until_probe.is_zero() && !peers.is_empty() {
                self.probe_sync(peers[probe_turn % peers.len()]);
                probe_turn += 1;
                next_probe = Instant::now() + SYNC_PROBE_INTERVAL;
                continue;
            }
            let mut wait = until_timer.min(until_probe);
            if self.mempool.is_holding() {
                // A proposal waits for the executor's pipeline (mempool pacing): look again
                // soon, whatever else happens.
                wait = wait.min(PACING_POLL);
            }
            let event = match self.rx.recv_timeout(wait) {
                Ok(DriverInput::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(DriverInput::Consensus(m)) => Event::Message(*m),
                Ok(DriverInput::Batch(b)) => {
                    if !self.mempool.insert(b) {
                        continue;
                    }
                    Event::PayloadReady
                }
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| now_ms() >= d) {
                        deadline = None;
                        Event::TimerFired
                    } else if self.mempool.take_held() {
                        Event::PayloadReady
                    } else {
                        continue;
                    }
                }
            };
            // One trace line per handled event (target `notary::rounds`, off unless asked
            // for): how BENCHMARKS.md takes a round apart.
            let traced = tracing::enabled!(target: "notary::rounds", tracing::Level::TRACE)
                .then(|| (Instant::now(), event_label(&event)));
            let timeouts_before = self.replica.stats().local_timeouts;
            let round_before = self.replica.round();
            // Who this replica waits for, before the event (a commit while handling it may
            // change the answer); only a timer event is worth the lookup.
            let leader_before =
                matches!(event, Event::TimerFired).then(|| self.replica.leader(round_before));
            let late_before = self.mempool.stats.late_checks;
            let actions = self.replica.handle(now_ms(), event, &mut self.mempool);
            let late = self.mempool.stats.late_checks - late_before;
            if late > 0 {
                self.metrics
                    .peer_batches
                    .get_or_create(&CheckLabel { check: "late" })
                    .inc_by(late);
            }
            let out = traced.as_ref().map(|_| actions_label(&actions));
            if !self.execute(actions, &mut deadline) {
                return;
            }
            if let (Some((t, event)), Some(out)) = (traced, out) {
                tracing::trace!(
                    target: "notary::rounds",
                    event,
                    round = round_before.0,
                    took_us = t.elapsed().as_micros() as u64,
                    out,
                    holding = self.mempool.is_holding(),
                    queued = self.mempool.queued(),
                );
            }
            if self.replica.stats().local_timeouts > timeouts_before {
                self.log_timeout(round_before, leader_before);
            }
            if self.replica.round() != round {
                self.metrics
                    .round_duration
                    .observe(round_started.elapsed().as_secs_f64());
                round_started = Instant::now();
                round = self.replica.round();
            }
            self.publish();
        }
        self.publish();
    }

    /// A round this replica gave up on: what an operator needs to see why. `leader`: the
    /// round's leader as this replica saw it when the timer fired.
    fn log_timeout(
        &self,
        round: notary_consensus::Round,
        leader: Option<notary_consensus::reputation::LeaderChoice>,
    ) {
        let stats = self.replica.stats();
        let leader = leader.unwrap_or_else(|| self.replica.leader(round));
        tracing::warn!(
            round = round.0,
            leader = %leader.leader,
            leader_certain = leader.certain,
            committed_height = stats.committed_height.0,
            committed_round = self.replica.committed().round().0,
            high_qc_round = stats.high_qc_round.0,
            holding_for_pipeline = self.mempool.is_holding(),
            queued_batches = self.mempool.queued(),
            "round timed out"
        );
    }

    /// Asks `peer` for committed blocks after ours.
    fn probe_sync(&self, peer: notary_consensus::ReplicaId) {
        let request = notary_consensus::SyncRequest {
            from: self.replica.committed().height().next(),
            count: notary_consensus::limits::SYNC_BLOCKS_MAX as u32,
        };
        let bytes = Bytes::from(wire::encode(&PeerMessage::Consensus(Box::new(
            Message::SyncRequest(request),
        ))));
        let _ = self.transport.send(peer, bytes);
    }

    fn publish(&self) {
        let mut v = self.view.lock();
        v.stats = self.replica.stats().clone();
    }

    fn halt(&self, why: String) {
        tracing::error!(reason = %why, "consensus halted: this replica stops voting");
        self.view.lock().halted = Some(why);
        self.metrics.signing_halted.set(1);
    }

    /// Executes actions in order; `false` when the driver must stop (storage failed).
    fn execute(&mut self, actions: Vec<Action>, deadline: &mut Option<TimeMs>) -> bool {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Persist { seq, record } => {
                    if let Err(e) = self.store.save_safety_record(&encode_safety(&record)) {
                        self.halt(format!("cannot persist the safety record: {e}"));
                        return false;
                    }
                    let more =
                        self.replica
                            .handle(now_ms(), Event::Persisted { seq }, &mut self.mempool);
                    queue.extend(more);
                }
                Action::Send { to, message } => {
                    let bytes =
                        Bytes::from(wire::encode(&PeerMessage::Consensus(Box::new(message))));
                    if let Err(e) = self.transport.send(to, bytes) {
                        tracing::warn!(peer = %to, error = %e, "consensus message not sent");
                    }
                }
                Action::Broadcast { message } => {
                    let bytes =
                        Bytes::from(wire::encode(&PeerMessage::Consensus(Box::new(message))));
                    if let Err(e) = self.transport.broadcast(bytes) {
                        tracing::warn!(error = %e, "consensus broadcast not sent");
                    }
                }
                Action::ServeSync { to, request } => {
                    let response = self.sync_response(request);
                    let bytes = Bytes::from(wire::encode(&PeerMessage::Consensus(Box::new(
                        Message::SyncResponse(response),
                    ))));
                    if let Err(e) = self.transport.send(to, bytes) {
                        tracing::warn!(peer = %to, error = %e, "sync response not sent");
                    }
                }
                Action::Commit { block, proof } => {
                    let requests = self.mempool.take_committed(&block);
                    let input = ExecInput::Apply {
                        committed: Box::new(CommittedBlock { block, proof }),
                        requests,
                    };
                    // Blocks while the executor is a full queue behind: consensus must not
                    // run unboundedly ahead of what is applied.
                    if self.exec.send(input).is_err() {
                        return false;
                    }
                }
                Action::SetTimer { deadline: d } => *deadline = Some(d),
            }
        }
        true
    }

    /// Committed blocks from the store, contiguous from `request.from`, within a byte budget.
    fn sync_response(&self, request: notary_consensus::SyncRequest) -> SyncResponse {
        let mut budget = SYNC_RESPONSE_BYTES_MAX;
        let store = &self.store;
        SyncResponse::from_store(request, |h: Height| {
            let record = store.block(notary_types::Height(h.0)).ok().flatten()?;
            if record.consensus_bytes.len() > budget {
                return None;
            }
            budget -= record.consensus_bytes.len();
            decode_committed(&record.consensus_bytes).ok()
        })
    }
}
