//! The simulated world: one discrete-event queue that drives every replica's real consensus
//! core ([`Replica::handle`]) and notary state machine (`notary_core`) through a simulated
//! network, disk, clocks and clients.
//!
//! # The driver's order of actions (the same as `notary/node/src/driver.rs`)
//! persist → send → commit → timers, as the core returns them. A persist is executed inline
//! and `Event::Persisted` fed back at once, its new actions queued behind the current ones;
//! a crash may cut a persist short (the record is lost and nothing after it runs). A commit goes to the simulated executor after an apply lag
//! (a crash before the apply loses it; the restarted replica syncs it again). The executor
//! applies in one write (`apply_committed_block`), signs its share, collects `f + 1`, stores the
//! certificate and answers the clients waiting on that replica.
//!
//! The executor signs what `notaryd`'s does (`notary/node/src/executor.rs`): the heights
//! [`SignSchedule`] picks (the first block of each [`SIGN_INTERVAL_MS`] of block time, but only
//! every other one when such blocks come one after another; every 64th height), any applied,
//! uncovered height a peer signed, and its newest block once it has applied nothing for an
//! interval (two after a block the schedule skipped) and has no certificate forming. A
//! certificate covers the uncovered blocks up to 64 below it (their answers carry the header
//! chain); a share still collecting after [`SHARE_RESEND_MS`] is sent again (checked on the
//! sync-probe tick).
//!
//! Events at one instant run in insertion order (the queue key is (time, sequence number)), and
//! every random choice comes from one ChaCha stream of the seed: a run is a pure function of
//! its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use ed25519_dalek::SigningKey;
use notary_consensus::{
    Action, BlockId, CommittedBlock, Committee, Config, Event, Message, Proposal, QuorumCert,
    Recovery, Replica, ReplicaId, Round, SafetyData, SyncRequest, SyncResponse, TimeMs,
};
use notary_core::{
    answer_for_request, apply_committed_block, tx_status, uncovered, ClusterPolicy, MemStore,
    SignSchedule, Store, TxStatus, VerifiedRequest,
};
use notary_types::{
    ClusterId, ClusterSignature, Height, NotarisationAnswer, NotarisationRequest, RequestDigest,
    RequestFields, RequesterKey, StateRef, TimeWindow, Timestamp, TxId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest as _, Sha256};

use crate::app::{check_whole_batch, SimApp};
use crate::checker::{Checker, Violation};
use crate::config::{Behaviour, Ms, SimConfig};
use crate::crypto::{Collector, Keys, Offer, ShareKey};
use crate::model::Model;
use crate::payload::{decode_payload, Batch, BATCH_REQUESTS_MAX};

mod byzantine;
mod disk;

/// The wall-clock epoch the simulated clocks start at (ms since the Unix epoch).
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// How often a replica asks a peer for committed blocks past its own (as `notaryd` does).
const SYNC_PROBE_MS: Ms = 2_000;
/// How long a replica's batcher waits before sending a batch.
const BATCH_DELAY_MS: Ms = 5;
/// `batch.sign_interval`, as `notaryd`'s default.
const SIGN_INTERVAL_MS: Ms = 25;
/// A certificate still forming this long after its share left sends the share again.
const SHARE_RESEND_MS: Ms = 1_000;
/// At most this many heights have their share sent again per pass (as `notaryd`).
const SHARE_RESEND_HEIGHTS_MAX: usize = 64;
/// Heights past the applied one for which early shares are kept.
const SHARE_HEIGHTS_AHEAD_MAX: u64 = 1024;
/// Old messages kept for replay.
const REPLAY_LOG_MAX: usize = 256;
/// How often the liveness condition is evaluated after the faults stop.
const LIVENESS_CHECK_MS: Ms = 500;
/// While crashes are on, one persist in this many is cut short by a crash during its fsync.
const CRASH_IN_FSYNC_ONE_IN: u32 = 300;

/// What travels between replicas.
// Packets are short-lived queue entries; boxing the message would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Packet {
    /// A consensus message.
    Consensus(Message),
    /// Bytes claimed to be a postcard-encoded consensus message (malformed or mutated).
    Raw(Vec<u8>),
    /// A batch of client requests (encoded).
    Batch(Rc<Vec<u8>>),
    /// A BLS share over a height's header.
    Share {
        /// Height.
        height: u64,
        /// Share bytes.
        share: Vec<u8>,
    },
    /// A combined certificate.
    Certificate {
        /// Height.
        height: u64,
        /// Signature.
        signature: ClusterSignature,
    },
}

// Queue entries are short-lived; boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        packet: Packet,
    },
    Timer {
        node: usize,
        gen: u64,
        deadline: TimeMs,
    },
    Apply {
        node: usize,
        gen: u64,
        committed: CommittedBlock,
        requests: Vec<VerifiedRequest>,
    },
    Flush {
        node: usize,
        gen: u64,
    },
    Probe {
        node: usize,
        gen: u64,
    },
    /// Whether the replica should sign its newest block (nothing applied for an interval).
    Quiet {
        node: usize,
        gen: u64,
    },
    ClientSend {
        req: usize,
        node: usize,
    },
    ClientAnswer {
        req: usize,
        node: usize,
        answer: NotarisationAnswer,
    },
    ClientRetry {
        req: usize,
    },
    NewTx,
    Crash,
    Restart {
        node: usize,
    },
    Pause,
    Partition,
    Heal {
        epoch: u64,
    },
    EndFaults,
    LivenessCheck,
    DiskFull,
    DiskFree {
        node: usize,
    },
}

impl Ev {
    fn tag(&self) -> u8 {
        match self {
            Ev::Deliver { .. } => 1,
            Ev::Timer { .. } => 3,
            Ev::Apply { .. } => 4,
            Ev::Flush { .. } => 5,
            Ev::Probe { .. } => 6,
            Ev::ClientSend { .. } => 7,
            Ev::ClientAnswer { .. } => 8,
            Ev::ClientRetry { .. } => 9,
            Ev::NewTx => 10,
            Ev::Crash => 11,
            Ev::Restart { .. } => 12,
            Ev::Pause => 13,
            Ev::Partition => 14,
            Ev::Heal { .. } => 15,
            Ev::EndFaults => 16,
            Ev::LivenessCheck => 17,
            Ev::DiskFull => 18,
            Ev::DiskFree { .. } => 19,
            Ev::Quiet { .. } => 20,
        }
    }
}

/// A height this replica signed, collecting shares.
struct Pending {
    collector: Collector,
    /// Our share, to send again while the certificate forms.
    share: Vec<u8>,
    /// When it was last sent.
    sent_at: Ms,
}

struct Node {
    id: u16,
    honest: bool,
    behaviours: BTreeSet<Behaviour>,
    key: SigningKey,
    share: ShareKey,
    replica: Option<Replica>,
    app: SimApp,
    store: MemStore,
    gen: u64,
    paused_until: Ms,
    clock: (i64, i64),
    timer: Option<TimeMs>,
    durable_round: Round,
    /// The locked round of the last durable safety record.
    durable_lock: Round,
    apply_at: Ms,
    applied: u64,
    /// Applied heights not covered by a certificate yet, with their requests.
    uncovered: BTreeMap<u64, Vec<(TxId, RequestDigest)>>,
    /// Which heights it signs of its own accord.
    schedule: SignSchedule,
    /// When it last applied a block (`None` since its start).
    last_applied_at: Option<Ms>,
    pending: BTreeMap<u64, Pending>,
    early: BTreeMap<u64, BTreeMap<u16, Vec<u8>>>,
    /// Peers' certificates for heights not applied yet.
    early_certificates: BTreeMap<u64, ClusterSignature>,
    batcher: Vec<Vec<u8>>,
    flush_scheduled: bool,
    waiters: BTreeMap<(TxId, RequestDigest), BTreeSet<usize>>,
    log: Vec<(u16, Packet)>,
    probe_turn: usize,
    /// QCs seen, by round (kept only by a `ForkOnOldQc` replica).
    qcs: BTreeMap<Round, QuorumCert>,
    /// While the disk is full: the simulated time the window ends (every write of the store
    /// fails until `Ev::DiskFree` runs; at that very instant, writes queued before it still fail).
    disk_full_until: Option<Ms>,
    /// The replica halted on a failed write and waits for the disk to have space again.
    halted: bool,
    /// The last proposal a `ForkOnOldQc` replica rewrote: the original block's id and the fork
    /// sent instead (`None`: it found no older QC), so every peer gets the same one.
    fork: Option<(BlockId, Option<Proposal>)>,
}

struct ClientReq {
    request: NotarisationRequest,
    wire: Vec<u8>,
    answered: bool,
    last_node: usize,
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Consensus messages and other packets delivered.
    pub delivered: u64,
    /// Packets dropped by loss or partitions.
    pub dropped: u64,
    /// Crashes.
    pub crashes: u64,
    /// Pauses.
    pub pauses: u64,
    /// Partitions.
    pub partitions: u64,
    /// Transactions submitted (races included).
    pub requests: u64,
    /// Client retries.
    pub retries: u64,
    /// Malformed packets that did not decode.
    pub undecodable: u64,
    /// Invalid shares attributed.
    pub invalid_shares: u64,
    /// Disks that filled up.
    pub disk_fulls: u64,
    /// Replicas that halted on a failed write.
    pub halts: u64,
    /// Proposals a `ForkOnOldQc` leader rewrote onto an older QC.
    pub forks: u64,
    /// Of those, forks on a QC below their TC's highest QC (`Block::verify` refuses them).
    pub forks_below_tc: u64,
    /// Proposals delivered to an honest replica that only vote rule 2 (the lock) could refuse:
    /// well-formed, for a round it has not voted in, on a QC below its locked round.
    pub below_lock: u64,
    /// Heights a restarted replica covered again: applied above its last stored certificate
    /// (none formed before the crash, or the one that did was stored unsynced and lost).
    pub resigned: u64,
    /// Highest committed height.
    pub height: u64,
    /// Certified answers received by clients.
    pub answers: u64,
    /// Of those, answers whose block was covered by a certificate above it (a header chain).
    pub chained_answers: u64,
    /// When the liveness condition held (simulated ms), if it did.
    pub live_at_ms: Option<Ms>,
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Its configuration.
    pub config: SimConfig,
    /// Simulated time reached.
    pub sim_ms: Ms,
    /// SHA-256 over the full event trace.
    pub trace_hash: [u8; 32],
    /// Counters.
    pub stats: Stats,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// One line per replica at the end: consensus counters and applied height.
    pub replicas: Vec<String>,
}

/// The whole simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: Ms,
    queue: BTreeMap<(Ms, u64), Ev>,
    seq: u64,
    nodes: Vec<Node>,
    committee: Committee,
    core_committee: notary_core::Committee,
    keys: Keys,
    policy: Rc<ClusterPolicy>,
    cluster_id: ClusterId,
    requester: SigningKey,
    clients: Vec<ClientReq>,
    blocked: BTreeSet<(usize, usize)>,
    partition_epoch: u64,
    faults_on: bool,
    replay_log: Vec<(usize, usize, Packet)>,
    next_state: u32,
    spent: Vec<StateRef>,
    checker: Checker,
    trace: Sha256,
    stats: Stats,
}

impl Sim {
    /// Builds the cluster of `cfg` (all replicas start at time 0).
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.n;
        let vote_keys: Vec<SigningKey> =
            (0..n).map(|_| SigningKey::from_bytes(&rng.gen())).collect();
        let committee = Committee::new(
            vote_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (ReplicaId(i as u16), k.verifying_key()))
                .collect(),
        )
        .expect("distinct random keys, n within limits");
        let core_committee = notary_core::Committee::new(n as u16).expect("n >= 1");
        let keys = Keys::deal(cfg.real_crypto, core_committee, &mut rng);
        let cluster_id = ClusterId::new("sim-cluster").expect("a valid cluster id");
        let requester = SigningKey::from_bytes(&rng.gen());
        let policy = Rc::new(
            ClusterPolicy::new(
                cluster_id.clone(),
                [RequesterKey(requester.verifying_key().to_bytes())],
            )
            .expect("a random key is strong"),
        );
        let mut nodes = Vec::new();
        for (i, key) in vote_keys.iter().enumerate() {
            let byz: BTreeSet<Behaviour> = cfg
                .byzantine
                .iter()
                .filter(|(r, _)| *r == i)
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            let twin = cfg.twins.contains(&i);
            for _copy in 0..(if twin { 2 } else { 1 }) {
                nodes.push(Node {
                    id: i as u16,
                    honest: byz.is_empty() && !twin,
                    behaviours: byz.clone(),
                    key: key.clone(),
                    share: keys.share_key(i as u16),
                    replica: None,
                    app: SimApp::new(policy.clone()),
                    store: MemStore::new(),
                    gen: 0,
                    paused_until: 0,
                    clock: cfg.clocks[i],
                    timer: None,
                    durable_round: Round(0),
                    durable_lock: Round(0),
                    apply_at: 0,
                    applied: 0,
                    uncovered: BTreeMap::new(),
                    schedule: SignSchedule::new(SIGN_INTERVAL_MS, None, None),
                    last_applied_at: None,
                    pending: BTreeMap::new(),
                    early: BTreeMap::new(),
                    early_certificates: BTreeMap::new(),
                    batcher: Vec::new(),
                    flush_scheduled: false,
                    waiters: BTreeMap::new(),
                    log: Vec::new(),
                    probe_turn: 0,
                    qcs: BTreeMap::new(),
                    disk_full_until: None,
                    halted: false,
                    fork: None,
                });
            }
        }
        let checker = Checker::new(committee.clone(), keys.clone());
        let mut sim = Sim {
            cfg,
            rng,
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            nodes,
            committee,
            core_committee,
            keys,
            policy,
            cluster_id,
            requester,
            clients: Vec::new(),
            blocked: BTreeSet::new(),
            partition_epoch: 0,
            faults_on: true,
            replay_log: Vec::new(),
            next_state: 0,
            spent: Vec::new(),
            checker,
            trace: Sha256::new(),
            stats: Stats::default(),
        };
        sim.schedule_start();
        sim
    }

    fn schedule_start(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        let f = self.cfg.faults.clone();
        self.push(0, Ev::NewTx);
        if f.crash_every_ms > 0 {
            let d = self.rng.gen_range(0..f.crash_every_ms * 2);
            self.push(d, Ev::Crash);
        }
        if f.disk_full_every_ms > 0 {
            let d = self.rng.gen_range(0..f.disk_full_every_ms * 2);
            self.push(d, Ev::DiskFull);
        }
        if f.pause_every_ms > 0 {
            let d = self.rng.gen_range(0..f.pause_every_ms * 2);
            self.push(d, Ev::Pause);
        }
        if self.cfg.twins_split {
            self.twins_split();
        } else if f.partition_every_ms > 0 {
            let d = self.rng.gen_range(0..f.partition_every_ms * 2);
            self.push(d, Ev::Partition);
        }
        self.push(self.cfg.fault_phase_ms, Ev::EndFaults);
    }

    fn push(&mut self, at: Ms, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn local_time(&self, i: usize) -> TimeMs {
        let (offset, drift_ppm) = self.nodes[i].clock;
        let t = self.now as i128;
        let local = EPOCH_MS as i128 + offset as i128 + t + t * drift_ppm as i128 / 1_000_000;
        TimeMs(local.max(0) as u64)
    }

    /// The simulated instant at which node `i`'s clock reads `deadline` (rounded up).
    fn sim_time_of(&self, i: usize, deadline: TimeMs) -> Ms {
        let (offset, drift_ppm) = self.nodes[i].clock;
        let rel = deadline.0 as i128 - EPOCH_MS as i128 - offset as i128;
        let t = rel * 1_000_000 / (1_000_000 + drift_ppm as i128) + 1;
        (t.max(self.now as i128)) as Ms
    }

    // ----- replicas -------------------------------------------------------------------------

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.halted = false;
        let safety = node
            .store
            .load_safety_record()
            .ok()
            .flatten()
            .and_then(|b| postcard::from_bytes::<SafetyData>(&b).ok());
        node.durable_round = safety.as_ref().map_or(Round(0), |s| s.last_voted_round);
        node.durable_lock = safety.as_ref().map_or(Round(0), |s| s.locked_round);
        let safety = if node.behaviours.contains(&Behaviour::WipeSafety) {
            None
        } else {
            safety
        };
        let applied = node.store.applied_height().map_or(0, |h| h.0);
        let committed = node
            .store
            .block(Height(applied))
            .ok()
            .flatten()
            .and_then(|r| postcard::from_bytes::<CommittedBlock>(&r.consensus_bytes).ok());
        // The committed blocks before the last one, as notaryd reads them from its store.
        let first = applied
            .saturating_sub(notary_consensus::reputation::HISTORY_BLOCKS_MAX as u64)
            .max(1);
        let history: Vec<_> = (first..applied)
            .filter_map(|h| node.store.block(Height(h)).ok().flatten())
            .filter_map(|r| postcard::from_bytes::<CommittedBlock>(&r.consensus_bytes).ok())
            .map(|c| c.block)
            .collect();
        let mut cfg = Config::new(ReplicaId(node.id));
        cfg.round_timeout_ms = self.cfg.round_timeout_ms;
        let replica = Replica::new(
            cfg,
            self.committee.clone(),
            node.key.clone(),
            Recovery {
                safety,
                committed,
                history,
            },
        )
        .expect("a valid configuration for a member");
        node.replica = Some(replica);
        node.gen += 1;
        node.timer = None;
        node.applied = applied;
        node.app = SimApp::new(self.policy.clone());
        node.pending.clear();
        node.early.clear();
        node.early_certificates.clear();
        node.uncovered.clear();
        node.last_applied_at = None;
        node.schedule = SignSchedule::resume(SIGN_INTERVAL_MS, &node.store, Height(applied))
            .unwrap_or_else(|_| SignSchedule::new(SIGN_INTERVAL_MS, None, None));
        node.batcher.clear();
        node.flush_scheduled = false;
        node.waiters.clear();
        node.apply_at = self.now;
        let gen = node.gen;
        // Heights applied above the last stored certificate (one lost in the crash is stored
        // unsynced, or never formed): covered again, as notaryd's executor does. The multiples
        // of 64 are signed now, the newest by the quiet rule at once.
        let missing = uncovered(&self.nodes[i].store, Height(applied)).unwrap_or_default();
        self.stats.resigned += missing.len() as u64;
        for height in missing {
            let Ok(Some(record)) = self.nodes[i].store.block(Height(height)) else {
                continue;
            };
            let requests = record
                .requests
                .iter()
                .map(|r| (r.fields.tx_id, r.fields.digest()))
                .collect();
            self.nodes[i].uncovered.insert(height, requests);
            if height % notary_types::limits::CHAIN_HEADERS_MAX as u64 == 0 {
                self.start_certifying(i, height);
            }
        }
        self.push(self.now, Ev::Quiet { node: i, gen });
        self.handle(i, Event::Tick);
        for peer in 0..self.cfg.n as u16 {
            if peer != self.nodes[i].id {
                self.probe(i, peer);
            }
        }
        self.push(self.now + SYNC_PROBE_MS, Ev::Probe { node: i, gen });
    }

    fn probe(&mut self, i: usize, peer: u16) {
        let Some(r) = &self.nodes[i].replica else {
            return;
        };
        let m = Message::SyncRequest(SyncRequest {
            from: r.committed().height().next(),
            count: notary_consensus::limits::SYNC_BLOCKS_MAX as u32,
        });
        self.transmit(i, peer, Packet::Consensus(m));
    }

    fn crash(&mut self, i: usize) {
        if self.stop(i) {
            self.stats.crashes += 1;
        }
    }

    /// Stops replica `i`'s process; `false` if it was not running. What it had in flight is
    /// lost with its generation; its store keeps what is durable (and stays full if it was).
    fn stop(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        if node.replica.take().is_none() {
            return false;
        }
        node.gen += 1;
        node.timer = None;
        // What a restarted process finds: the durable state only (every completed write of
        // MemStore is synced; in-flight fsyncs and applies are lost with the generation).
        node.store = node.store.durable_copy();
        if node.disk_full_until.is_some() {
            node.store.fail_writes(true);
        }
        node.pending.clear();
        node.waiters.clear();
        node.batcher.clear();
        true
    }

    fn handle(&mut self, i: usize, event: Event) {
        let now = self.local_time(i);
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let actions = r.handle(now, event, &mut node.app);
        self.execute(i, actions);
    }

    fn execute(&mut self, i: usize, actions: Vec<Action>) {
        let honest = self.nodes[i].honest;
        let id = self.nodes[i].id;
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Persist { seq, record } => {
                    self.trace.update([20]);
                    // The driver persists inline (as notaryd does): the record is durable
                    // before anything after it runs. A crash may hit during the fsync: then
                    // the record is lost and nothing after it happens.
                    let f = &self.cfg.faults;
                    if self.faults_on
                        && f.crash_every_ms > 0
                        && self.down_count() < f.down_max
                        && self.rng.gen_range(0..CRASH_IN_FSYNC_ONE_IN) == 0
                    {
                        self.crash(i);
                        let d = self.rng.gen_range(50..=self.cfg.faults.down_ms_max);
                        self.push(self.now + d, Ev::Restart { node: i });
                        return;
                    }
                    let bytes = postcard::to_allocvec(&record).expect("encoding to a Vec");
                    if let Err(e) = self.nodes[i].store.save_safety_record(&bytes) {
                        // Nothing after a failed persist runs: the vote it allows never leaves.
                        return self.storage_failed(i, "safety record", e);
                    }
                    let (before_round, before_lock) =
                        (self.nodes[i].durable_round, self.nodes[i].durable_lock);
                    self.nodes[i].durable_round = record.last_voted_round;
                    self.nodes[i].durable_lock = record.locked_round;
                    // A durable vote counts as signed: after a restart it may be sent again.
                    if honest {
                        if let Some(v) = &record.last_vote {
                            self.checker.on_vote(id, v.data.round, v.data.block_id);
                            if v.data.round > before_round {
                                self.checker.on_new_vote(id, &v.data, before_lock);
                            }
                        }
                    }
                    let now = self.local_time(i);
                    let node = &mut self.nodes[i];
                    if let Some(r) = node.replica.as_mut() {
                        queue.extend(r.handle(now, Event::Persisted { seq }, &mut node.app));
                    }
                }
                Action::Send { to, message } => {
                    self.check_vote_sent(i, &message);
                    self.transmit(i, to.0, Packet::Consensus(message));
                }
                Action::Broadcast { message } => {
                    self.check_vote_sent(i, &message);
                    for to in 0..self.cfg.n as u16 {
                        if to != id {
                            self.transmit(i, to, Packet::Consensus(message.clone()));
                        }
                    }
                }
                Action::ServeSync { to, request } => {
                    let store = &self.nodes[i].store;
                    let resp = SyncResponse::from_store(request, |h| {
                        let rec = store.block(Height(h.0)).ok().flatten()?;
                        postcard::from_bytes(&rec.consensus_bytes).ok()
                    });
                    self.transmit(i, to.0, Packet::Consensus(Message::SyncResponse(resp)));
                }
                Action::Commit { block, proof } => {
                    self.trace.update(block.id().0);
                    if honest {
                        self.checker.on_commit(id, &block, &proof);
                    }
                    self.stats.height = self.stats.height.max(block.height().0);
                    let requests = self.nodes[i].app.take_committed(&block);
                    let d = self.rng.gen_range(0..=self.cfg.faults.apply_lag_ms_max);
                    let at = (self.now + d).max(self.nodes[i].apply_at);
                    self.nodes[i].apply_at = at;
                    let gen = self.nodes[i].gen;
                    self.push(
                        at,
                        Ev::Apply {
                            node: i,
                            gen,
                            committed: CommittedBlock { block, proof },
                            requests,
                        },
                    );
                }
                Action::SetTimer { deadline } => {
                    self.nodes[i].timer = Some(deadline);
                    let at = self.sim_time_of(i, deadline);
                    let gen = self.nodes[i].gen;
                    self.push(
                        at,
                        Ev::Timer {
                            node: i,
                            gen,
                            deadline,
                        },
                    );
                }
            }
        }
    }

    fn check_vote_sent(&mut self, i: usize, m: &Message) {
        let node = &self.nodes[i];
        if let (true, Message::Vote(v)) = (node.honest, m) {
            let (id, durable) = (node.id, node.durable_round);
            self.checker.on_vote(id, v.data.round, v.data.block_id);
            self.checker.on_vote_sent(id, v.data.round, durable);
        }
    }

    // ----- network --------------------------------------------------------------------------

    fn transmit(&mut self, from: usize, to: u16, packet: Packet) {
        if !self.nodes[from].behaviours.is_empty() {
            for (to, p) in self.byzantine(from, to, packet) {
                self.route(from, to, p);
            }
        } else {
            self.route(from, to, packet);
        }
    }

    fn route(&mut self, from: usize, to: u16, packet: Packet) {
        let targets: Vec<usize> = (0..self.nodes.len())
            .filter(|j| self.nodes[*j].id == to)
            .collect();
        for j in targets {
            self.send_one(from, j, packet.clone());
        }
    }

    fn send_one(&mut self, from: usize, to: usize, packet: Packet) {
        if self.blocked.contains(&(from, to)) {
            self.stats.dropped += 1;
            return;
        }
        let f = self.cfg.faults.clone();
        let on = self.faults_on;
        if on && f.loss_ppm > 0 && self.rng.gen_range(0..1_000_000) < f.loss_ppm {
            self.stats.dropped += 1;
            return;
        }
        let mut d = self.rng.gen_range(f.delay_ms_min..=f.delay_ms_max);
        if on && f.tail_ppm > 0 && self.rng.gen_range(0..1_000_000) < f.tail_ppm {
            d += self.rng.gen_range(0..=f.tail_ms_max);
        }
        let dup = on && f.dup_ppm > 0 && self.rng.gen_range(0..1_000_000) < f.dup_ppm;
        let replay = on && f.replay_ppm > 0 && self.rng.gen_range(0..1_000_000) < f.replay_ppm;
        if dup {
            let d2 = d + self.rng.gen_range(0..=f.delay_ms_max * 4);
            self.push(
                self.now + d2,
                Ev::Deliver {
                    from,
                    to,
                    packet: packet.clone(),
                },
            );
        }
        if replay && !self.replay_log.is_empty() {
            let k = self.rng.gen_range(0..self.replay_log.len());
            let (a, b, p) = self.replay_log[k].clone();
            self.push(
                self.now + d,
                Ev::Deliver {
                    from: a,
                    to: b,
                    packet: p,
                },
            );
        }
        if f.replay_ppm > 0 && self.rng.gen_range(0..32) == 0 {
            if self.replay_log.len() >= REPLAY_LOG_MAX {
                let k = self.rng.gen_range(0..REPLAY_LOG_MAX);
                self.replay_log[k] = (from, to, packet.clone());
            } else {
                self.replay_log.push((from, to, packet.clone()));
            }
        }
        self.push(self.now + d, Ev::Deliver { from, to, packet });
    }

    fn deliver(&mut self, from: usize, to: usize, packet: Packet) {
        if self.nodes[to].replica.is_none() {
            return;
        }
        self.stats.delivered += 1;
        let from_id = ReplicaId(self.nodes[from].id);
        if !self.nodes[to].behaviours.contains(&Behaviour::Replay) {
        } else if let Packet::Consensus(_) = &packet {
            if self.nodes[to].log.len() < 64 {
                self.nodes[to].log.push((from_id.0, packet.clone()));
            }
        }
        match packet {
            Packet::Consensus(message) => {
                self.trace.update([30, message_tag(&message)]);
                self.note_qcs(to, &message);
                if self.ignores_vote(to, &message) {
                    return;
                }
                if let Message::Proposal(p) = &message {
                    self.measure_lock(to, &p.block);
                }
                self.handle(
                    to,
                    Event::Unverified {
                        from: from_id,
                        message,
                    },
                );
            }
            Packet::Raw(bytes) => match postcard::from_bytes::<Message>(&bytes) {
                Ok(message) => self.handle(
                    to,
                    Event::Unverified {
                        from: from_id,
                        message,
                    },
                ),
                Err(_) => self.stats.undecodable += 1,
            },
            Packet::Batch(bytes) => {
                let Ok(batch) = Batch::decode(&bytes) else {
                    self.stats.undecodable += 1;
                    return;
                };
                let digest = batch.digest();
                if let Some(checked) = check_whole_batch(&self.policy, batch) {
                    if self.nodes[to].app.insert(digest, Rc::new(checked)) {
                        self.handle(to, Event::PayloadReady);
                    }
                }
            }
            Packet::Share { height, share } => self.on_share(to, from_id.0, height, share),
            Packet::Certificate { height, signature } => {
                let node = &mut self.nodes[to];
                if height > node.applied {
                    if height <= node.applied + SHARE_HEIGHTS_AHEAD_MAX {
                        node.early_certificates.entry(height).or_insert(signature);
                    }
                } else {
                    self.accept_certificate(to, height, signature);
                }
            }
        }
    }

    // ----- executor ---------------------------------------------------------------------------

    fn apply(&mut self, i: usize, committed: CommittedBlock, requests: Vec<VerifiedRequest>) {
        let h = committed.block.height().0;
        if h <= self.nodes[i].applied {
            return;
        }
        let ts = Timestamp(committed.block.header.timestamp.0);
        let bytes = postcard::to_allocvec(&committed).expect("encoding to a Vec");
        let node = &self.nodes[i];
        let result = apply_committed_block(
            &node.store,
            &self.cluster_id,
            Height(h),
            ts,
            &requests,
            bytes,
        );
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                return self.storage_failed(i, &format!("apply height {h}"), e);
            }
        };
        if node.honest {
            let id = node.id;
            self.checker.on_apply(id, &record);
        }
        let now = self.now;
        let node = &mut self.nodes[i];
        node.applied = h;
        let digests = requests
            .iter()
            .map(|r| (r.request().fields.tx_id, r.digest()))
            .collect();
        node.uncovered.insert(h, digests);
        node.last_applied_at = Some(now);
        let scheduled = node.schedule.on_apply(h, ts.0);
        let followed = node.early.contains_key(&h);
        let gen = node.gen;
        if scheduled || followed {
            self.start_certifying(i, h);
        }
        if let Some(sig) = self.nodes[i].early_certificates.remove(&h) {
            self.accept_certificate(i, h, sig);
        }
        let applied = self.nodes[i].applied;
        self.nodes[i].early_certificates.retain(|k, _| *k > applied);
        let quiet = self.nodes[i].schedule.quiet_ms();
        self.push(now + quiet, Ev::Quiet { node: i, gen });
    }

    /// Every applied height up to this one is covered.
    fn certified(&self, i: usize) -> u64 {
        let node = &self.nodes[i];
        node.uncovered.keys().next().map_or(node.applied, |h| h - 1)
    }

    /// Signs the header at `h` (applied, uncovered), sends the share, starts collecting.
    fn start_certifying(&mut self, i: usize, h: u64) {
        if self.nodes[i].pending.contains_key(&h) {
            return;
        }
        let Ok(Some(header)) = self.nodes[i].store.header(Height(h)) else {
            return;
        };
        let share = self.nodes[i].share.sign(&header);
        let id = self.nodes[i].id;
        for to in 0..self.cfg.n as u16 {
            if to != id {
                let p = Packet::Share {
                    height: h,
                    share: share.clone(),
                };
                self.transmit(i, to, p);
            }
        }
        let mut collector = self.keys.collector(self.core_committee, &header);
        collector.add(id, &share);
        let p = Pending {
            collector,
            share,
            sent_at: self.now,
        };
        self.nodes[i].pending.insert(h, p);
        for (from, share) in self.nodes[i].early.remove(&h).unwrap_or_default() {
            self.on_share(i, from, h, share);
        }
        self.finish_certified(i);
    }

    fn on_share(&mut self, i: usize, from: u16, h: u64, share: Vec<u8>) {
        let certified = self.certified(i);
        let node = &mut self.nodes[i];
        if let Some(p) = node.pending.get_mut(&h) {
            if let Offer::Invalid(bad) = p.collector.add(from, &share) {
                self.stats.invalid_shares += bad.len() as u64;
            }
            self.finish_certified(i);
        } else if h > certified && h <= node.applied {
            // A peer signed an applied height not covered here: follow it.
            node.early.entry(h).or_default().insert(from, share);
            self.start_certifying(i, h);
        } else if h > node.applied && h <= node.applied + SHARE_HEIGHTS_AHEAD_MAX {
            node.early.entry(h).or_default().insert(from, share);
        } else if h <= certified {
            // Covered here: send the certificate that covers it, to a peer that is behind.
            if let Ok(Some((signed, signature))) = node.store.certificate_from(Height(h)) {
                self.transmit(
                    i,
                    from,
                    Packet::Certificate {
                        height: signed.0,
                        signature,
                    },
                );
            }
        }
    }

    /// A peer's certificate for an applied height: kept if it verifies over our own header.
    fn accept_certificate(&mut self, i: usize, h: u64, signature: ClusterSignature) {
        if h <= self.certified(i) || h > self.nodes[i].applied {
            return;
        }
        let Ok(Some(header)) = self.nodes[i].store.header(Height(h)) else {
            return;
        };
        if self.keys.verify_header(&header, &signature).is_ok() {
            self.cover(i, h, signature);
        }
    }

    /// Covers every height whose own certificate formed, lowest first.
    fn finish_certified(&mut self, i: usize) {
        let done: Vec<(u64, ClusterSignature)> = self.nodes[i]
            .pending
            .iter()
            .filter_map(|(h, p)| p.collector.signature().map(|sig| (*h, sig)))
            .collect();
        for (h, sig) in done {
            if self.nodes[i].pending.remove(&h).is_some() {
                self.cover(i, h, sig);
            }
        }
        let applied = self.nodes[i].applied;
        self.nodes[i].early.retain(|h, _| *h > applied);
    }

    /// Stores the certificate of `h` and answers the clients of every uncovered block within
    /// 64 heights below it.
    fn cover(&mut self, i: usize, h: u64, sig: ClusterSignature) {
        if let Err(e) = self.nodes[i].store.put_certificate(Height(h), &sig) {
            return self.storage_failed(i, &format!("certificate of height {h}"), e);
        }
        let reach = h.saturating_sub(notary_types::limits::CHAIN_HEADERS_MAX as u64);
        let covered: Vec<u64> = self.nodes[i]
            .uncovered
            .range(reach..=h)
            .map(|(k, _)| *k)
            .collect();
        for k in covered {
            let requests = self.nodes[i].uncovered.remove(&k).expect("listed above");
            for (index, key) in requests.iter().enumerate() {
                let Some(waiting) = self.nodes[i].waiters.remove(key) else {
                    continue;
                };
                if let Ok(TxStatus::Certified(answer)) =
                    answer_for_request(&self.nodes[i].store, Height(k), index)
                {
                    for req in waiting {
                        self.answer_client(i, req, answer.clone());
                    }
                }
            }
        }
        // A signing at or below a certificate is moot, unless a block too far below it still
        // waits for it.
        let node = &mut self.nodes[i];
        let lowest = node.uncovered.keys().next().copied();
        node.pending
            .retain(|k, _| *k > h || lowest.is_some_and(|l| l <= *k));
        if node.pending.is_empty() && !node.uncovered.is_empty() {
            let at = node
                .last_applied_at
                .map_or(self.now, |t| t + node.schedule.quiet_ms());
            let gen = node.gen;
            self.push(at, Ev::Quiet { node: i, gen });
        }
    }

    /// The quiet rule: nothing applied for an interval, nothing forming, something uncovered:
    /// sign the newest block.
    fn quiet(&mut self, i: usize) {
        let node = &self.nodes[i];
        if node.replica.is_none()
            || node.uncovered.is_empty()
            || !node.pending.is_empty()
            || node
                .last_applied_at
                .is_some_and(|t| t + node.schedule.quiet_ms() > self.now)
        {
            return;
        }
        let top = node.applied;
        self.start_certifying(i, top);
    }

    /// Sends again the shares of certificates still forming after [`SHARE_RESEND_MS`].
    fn resend_stale_shares(&mut self, i: usize) {
        let now = self.now;
        let stale: Vec<(u64, Vec<u8>)> = self.nodes[i]
            .pending
            .iter_mut()
            .filter(|(_, p)| p.sent_at + SHARE_RESEND_MS <= now)
            .take(SHARE_RESEND_HEIGHTS_MAX)
            .map(|(h, p)| {
                p.sent_at = now;
                (*h, p.share.clone())
            })
            .collect();
        let id = self.nodes[i].id;
        for (height, share) in stale {
            for to in 0..self.cfg.n as u16 {
                if to != id {
                    let p = Packet::Share {
                        height,
                        share: share.clone(),
                    };
                    self.transmit(i, to, p);
                }
            }
        }
    }

    fn answer_client(&mut self, node: usize, req: usize, answer: NotarisationAnswer) {
        let d = self.rng.gen_range(1..20);
        self.push(self.now + d, Ev::ClientAnswer { req, node, answer });
    }

    // ----- clients ----------------------------------------------------------------------------

    fn new_tx(&mut self) {
        let w = self.cfg.workload.clone();
        let now_ts = EPOCH_MS + self.now;
        let k = self.rng.gen_range(1..=3);
        let mut inputs: Vec<StateRef> = (0..k).map(|_| self.fresh_state()).collect();
        if !self.spent.is_empty() && self.rng.gen_range(0..1_000_000) < w.race_ppm / 4 {
            // A late double spend of an already requested state.
            let s = self.spent[self.rng.gen_range(0..self.spent.len())];
            if !inputs.contains(&s) {
                inputs.push(s);
            }
        }
        let mut references = Vec::new();
        if !self.spent.is_empty() && self.rng.gen_range(0..1_000_000) < w.reference_ppm {
            let s = self.spent[self.rng.gen_range(0..self.spent.len())];
            if !inputs.contains(&s) {
                references.push(s);
            }
        }
        let time_window = if self.rng.gen_range(0..1_000_000) < w.window_ppm {
            let from = now_ts.saturating_sub(self.rng.gen_range(0..5_000));
            let until = now_ts + self.rng.gen_range(0..4_000);
            let from = (self.rng.gen_bool(0.5)).then_some(Timestamp(from));
            TimeWindow::new(
                from,
                Some(Timestamp(until.max(from.map_or(0, |f| f.0) + 1))),
            )
            .ok()
        } else {
            None
        };
        let tx_id = TxId(self.rng.gen());
        let fields = self.fields(tx_id, inputs.clone(), references, time_window);
        let node = self.rng.gen_range(0..self.nodes.len());
        self.submit(fields.clone(), node);
        if self.rng.gen_range(0..1_000_000) < w.race_ppm {
            // The rival: another transaction spending the first input, sent at the same
            // instant to another replica.
            let rival_id = TxId(self.rng.gen());
            let rival = self.fields(rival_id, vec![inputs[0]], vec![], None);
            let other = (node + 1 + self.rng.gen_range(0..self.nodes.len() - 1)) % self.nodes.len();
            self.submit(rival, other);
        }
        if self.rng.gen_range(0..1_000_000) < w.reuse_ppm {
            let fresh = self.fresh_state();
            let reuse = self.fields(tx_id, vec![fresh], vec![], None);
            let other = self.rng.gen_range(0..self.nodes.len());
            self.submit(reuse, other);
        }
        self.spent.extend(inputs);
    }

    fn fresh_state(&mut self) -> StateRef {
        self.next_state += 1;
        StateRef {
            tx_id: TxId([0xab; 32]),
            index: self.next_state,
        }
    }

    fn fields(
        &self,
        tx_id: TxId,
        inputs: Vec<StateRef>,
        references: Vec<StateRef>,
        time_window: Option<TimeWindow>,
    ) -> RequestFields {
        let mut f = RequestFields {
            cluster_id: self.cluster_id.clone(),
            tx_id,
            inputs,
            references,
            time_window,
            requester: RequesterKey([0; 32]),
        };
        f.normalise();
        f
    }

    fn submit(&mut self, fields: RequestFields, node: usize) {
        let request = NotarisationRequest::sign(fields, &self.requester);
        let wire = request.to_wire_bytes();
        let req = self.clients.len();
        self.clients.push(ClientReq {
            request,
            wire,
            answered: false,
            last_node: node,
        });
        self.stats.requests += 1;
        let d = self.rng.gen_range(1..10);
        self.push(self.now + d, Ev::ClientSend { req, node });
        let retry = self.cfg.workload.retry_ms;
        self.push(self.now + retry, Ev::ClientRetry { req });
    }

    fn client_send(&mut self, req: usize, i: usize) {
        if self.nodes[i].replica.is_none() {
            return;
        }
        let Ok(v) = notary_core::check_wire(&self.policy, &self.clients[req].wire) else {
            return;
        };
        let key = (v.request().fields.tx_id, v.digest());
        if let Ok(TxStatus::Certified(answer)) = tx_status(&self.nodes[i].store, &key.0) {
            if answer.leaf.request_digest == key.1 {
                return self.answer_client(i, req, answer);
            }
        }
        self.nodes[i].waiters.entry(key).or_default().insert(req);
        let wire = self.clients[req].wire.clone();
        let node = &mut self.nodes[i];
        if !node.batcher.contains(&wire) {
            node.batcher.push(wire);
        }
        if !node.flush_scheduled {
            node.flush_scheduled = true;
            let gen = node.gen;
            self.push(self.now + BATCH_DELAY_MS, Ev::Flush { node: i, gen });
        }
    }

    fn flush(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.flush_scheduled = false;
        let take = node.batcher.len().min(BATCH_REQUESTS_MAX);
        let requests: Vec<Vec<u8>> = node.batcher.drain(..take).collect();
        if requests.is_empty() {
            return;
        }
        let batch = Batch { requests };
        let bytes = Rc::new(batch.encode());
        let digest = batch.digest();
        let Some(checked) = check_whole_batch(&self.policy, batch) else {
            return;
        };
        let id = node.id;
        node.app.insert(digest, Rc::new(checked));
        for to in 0..self.cfg.n as u16 {
            if to != id {
                self.transmit(i, to, Packet::Batch(bytes.clone()));
            }
        }
        self.handle(i, Event::PayloadReady);
        if !self.nodes[i].batcher.is_empty() {
            self.nodes[i].flush_scheduled = true;
            let gen = self.nodes[i].gen;
            self.push(self.now + BATCH_DELAY_MS, Ev::Flush { node: i, gen });
        }
    }

    // ----- faults -----------------------------------------------------------------------------

    /// Replicas down, or up on a full disk (they halt at their next write): the fault budget
    /// `down_max` counts both.
    fn down_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.replica.is_none() || n.disk_full_until.is_some())
            .count()
    }

    fn crash_random(&mut self) {
        let f = self.cfg.faults.clone();
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].replica.is_some())
            .collect();
        if !up.is_empty() && self.down_count() < f.down_max {
            let i = up[self.rng.gen_range(0..up.len())];
            self.crash(i);
            let d = self.rng.gen_range(50..=f.down_ms_max);
            self.push(self.now + d, Ev::Restart { node: i });
        }
        let next = self.rng.gen_range(1..=f.crash_every_ms * 2);
        self.push(self.now + next, Ev::Crash);
    }

    fn pause_random(&mut self) {
        let f = self.cfg.faults.clone();
        let i = self.rng.gen_range(0..self.nodes.len());
        if self.nodes[i].paused_until <= self.now {
            self.stats.pauses += 1;
            self.nodes[i].paused_until = self.now
                + self
                    .rng
                    .gen_range(self.cfg.round_timeout_ms..=f.pause_ms_max);
        }
        let next = self.rng.gen_range(1..=f.pause_every_ms * 2);
        self.push(self.now + next, Ev::Pause);
    }

    fn partition_random(&mut self) {
        let f = self.cfg.faults.clone();
        let m = self.nodes.len();
        let mut side: Vec<bool> = (0..m).map(|_| self.rng.gen_bool(0.5)).collect();
        // Twins' copies sit on different sides: that is what makes them dangerous.
        for i in 0..m {
            if let Some(j) = (i + 1..m).find(|j| self.nodes[*j].id == self.nodes[i].id) {
                side[j] = !side[i];
            }
        }
        let one_way = f.asymmetric && self.rng.gen_bool(0.5);
        self.blocked.clear();
        for a in 0..m {
            for b in 0..m {
                if side[a] && !side[b] {
                    self.blocked.insert((a, b));
                    if !one_way {
                        self.blocked.insert((b, a));
                    }
                }
            }
        }
        self.stats.partitions += 1;
        self.partition_epoch += 1;
        let epoch = self.partition_epoch;
        let d = self.rng.gen_range(100..=f.partition_ms_max);
        self.push(self.now + d, Ev::Heal { epoch });
        let next = d + self.rng.gen_range(1..=f.partition_every_ms * 2);
        self.push(self.now + next, Ev::Partition);
    }

    /// The Twins control: copy 0 of each twin with the lower half of the honest replicas,
    /// copy 1 with the upper half; each side holds a quorum of distinct ids.
    fn twins_split(&mut self) {
        let m = self.nodes.len();
        let mut side = vec![false; m];
        let mut seen = BTreeSet::new();
        let honest: Vec<usize> = (0..m).filter(|i| self.nodes[*i].honest).collect();
        for (k, i) in honest.iter().enumerate() {
            side[*i] = k >= honest.len() / 2;
        }
        for (i, s) in side.iter_mut().enumerate() {
            if !self.nodes[i].honest {
                *s = !seen.insert(self.nodes[i].id);
            }
        }
        for a in 0..m {
            for b in 0..m {
                if side[a] != side[b] {
                    self.blocked.insert((a, b));
                }
            }
        }
        self.stats.partitions += 1;
    }

    fn end_faults(&mut self) {
        self.faults_on = false;
        self.blocked.clear();
        self.partition_epoch += 1;
        for i in 0..self.nodes.len() {
            self.free_disk(i);
            if self.nodes[i].replica.is_none() {
                self.start(i);
            }
        }
        self.push(self.now + LIVENESS_CHECK_MS, Ev::LivenessCheck);
    }

    /// After the faults: every request answered, every honest replica applied and certified
    /// up to the highest committed height.
    fn live(&self) -> bool {
        if self.clients.iter().any(|c| !c.answered) {
            return false;
        }
        let top = self.checker.chain.keys().next_back().copied().unwrap_or(0);
        self.nodes.iter().filter(|n| n.honest).all(|n| {
            n.applied >= top && matches!(n.store.certificate(Height(n.applied)), Ok(Some(_)))
                || (n.applied == 0 && top == 0)
        })
    }

    // ----- the loop ---------------------------------------------------------------------------

    fn step(&mut self, at: Ms, ev: Ev) {
        self.now = at;
        self.checker.now = at;
        self.stats.events += 1;
        let node_of = match &ev {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::Timer { node, .. }
            | Ev::Apply { node, .. }
            | Ev::Flush { node, .. }
            | Ev::Probe { node, .. }
            | Ev::Quiet { node, .. }
            | Ev::ClientSend { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(i) = node_of {
            if self.nodes[i].paused_until > at {
                let until = self.nodes[i].paused_until;
                self.push(until, ev);
                return;
            }
        }
        self.trace.update(at.to_be_bytes());
        self.trace
            .update([ev.tag(), node_of.map_or(255, |i| i as u8)]);
        match ev {
            Ev::Deliver { from, to, packet } => self.deliver(from, to, packet),
            Ev::Timer {
                node,
                gen,
                deadline,
            } => {
                if self.nodes[node].gen == gen && self.nodes[node].timer == Some(deadline) {
                    if self.local_time(node) < deadline {
                        // Rounding of a drifting clock: fire when the local clock reads it.
                        self.push(
                            at + 1,
                            Ev::Timer {
                                node,
                                gen,
                                deadline,
                            },
                        );
                        return;
                    }
                    self.nodes[node].timer = None;
                    self.handle(node, Event::TimerFired);
                }
            }
            Ev::Apply {
                node,
                gen,
                committed,
                requests,
            } => {
                if self.nodes[node].gen == gen {
                    self.apply(node, committed, requests);
                }
            }
            Ev::Flush { node, gen } => {
                if self.nodes[node].gen == gen {
                    self.flush(node);
                }
            }
            Ev::Probe { node, gen } => {
                if self.nodes[node].gen == gen {
                    let turn = self.nodes[node].probe_turn;
                    self.nodes[node].probe_turn += 1;
                    let n = self.cfg.n as u16;
                    let peer = (self.nodes[node].id + 1 + (turn % (n as usize - 1)) as u16) % n;
                    self.probe(node, peer);
                    self.resend_stale_shares(node);
                    self.push(at + SYNC_PROBE_MS, Ev::Probe { node, gen });
                }
            }
            Ev::Quiet { node, gen } => {
                if self.nodes[node].gen == gen {
                    self.quiet(node);
                }
            }
            Ev::ClientSend { req, node } => self.client_send(req, node),
            Ev::ClientAnswer { req, node, answer } => {
                let honest = self.nodes[node].honest;
                let fields = self.clients[req].request.fields.clone();
                self.checker.on_answer(honest, &fields, &answer);
                if self.keys.verify_answer(&answer, &fields).is_ok() {
                    self.clients[req].answered = true;
                    self.stats.answers += 1;
                    if !answer.chain.is_empty() {
                        self.stats.chained_answers += 1;
                    }
                }
            }
            Ev::ClientRetry { req } => {
                if !self.clients[req].answered {
                    self.stats.retries += 1;
                    let m = self.nodes.len();
                    let node = (self.clients[req].last_node + 1 + self.rng.gen_range(0..m - 1)) % m;
                    self.clients[req].last_node = node;
                    self.push(at + 1, Ev::ClientSend { req, node });
                    let retry = self.cfg.workload.retry_ms;
                    self.push(at + retry, Ev::ClientRetry { req });
                }
            }
            Ev::NewTx => {
                if self.faults_on {
                    self.new_tx();
                    let d = self.rng.gen_range(1..=self.cfg.workload.tx_every_ms * 2);
                    self.push(at + d, Ev::NewTx);
                }
            }
            Ev::Crash => {
                if self.faults_on {
                    self.crash_random();
                }
            }
            Ev::Restart { node } => {
                if self.nodes[node].replica.is_none() {
                    self.start(node);
                }
            }
            Ev::Pause => {
                if self.faults_on {
                    self.pause_random();
                }
            }
            Ev::Partition => {
                if self.faults_on {
                    self.partition_random();
                }
            }
            Ev::Heal { epoch } => {
                if epoch == self.partition_epoch {
                    self.blocked.clear();
                }
            }
            Ev::EndFaults => self.end_faults(),
            Ev::DiskFull => {
                if self.faults_on {
                    self.disk_full_random();
                }
            }
            Ev::DiskFree { node } => {
                if self.nodes[node].disk_full_until == Some(at) {
                    self.free_disk(node);
                }
            }
            Ev::LivenessCheck => {
                if self.stats.live_at_ms.is_none() && self.live() {
                    self.stats.live_at_ms = Some(at);
                }
                self.push(at + LIVENESS_CHECK_MS, Ev::LivenessCheck);
            }
        }
    }

    /// Runs to the end: the fault phase, then the liveness phase; checks the final invariants.
    pub fn run(mut self) -> RunReport {
        let deadline = self.cfg.fault_phase_ms + self.cfg.liveness_bound_ms;
        let end_min = self.cfg.total_ms_min;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > deadline || (at >= end_min && self.stats.live_at_ms.is_some()) {
                self.now = at.min(deadline.max(end_min));
                break;
            }
            self.step(at, ev);
            if self.checker.violation.is_some() {
                break;
            }
        }
        if self.checker.violation.is_none() {
            self.final_checks();
        }
        RunReport {
            seed: self.cfg.seed,
            config: self.cfg.clone(),
            sim_ms: self.now,
            trace_hash: self.trace.clone().finalize().into(),
            stats: self.stats.clone(),
            violation: self.checker.violation.clone(),
            replicas: self
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "replica {} honest={} applied={} vetoes={} lead={:?} pending={} {:?}",
                        n.id,
                        n.honest,
                        n.applied,
                        n.app.vetoes,
                        n.replica.as_ref().map(|r| r.leader(r.round())),
                        notary_consensus::Application::has_pending_work(&n.app),
                        n.replica.as_ref().map(|r| r.stats())
                    )
                })
                .collect(),
        }
    }

    fn final_checks(&mut self) {
        self.checker.now = self.now;
        // The committed order through the reference model.
        let mut model = Model::default();
        for block in self.checker.chain.values() {
            let ts = Timestamp(block.header.timestamp.0);
            for batch in decode_payload(&block.payload).unwrap_or_default() {
                if let Some(checked) = check_whole_batch(&self.policy, batch) {
                    for r in &checked.requests {
                        model.apply(&r.request().fields, ts);
                    }
                }
            }
        }
        let mut problems = Vec::new();
        for (h, record) in &self.checker.records {
            for leaf in &record.leaves {
                let want = model.outcomes.get(&(leaf.tx_id, leaf.request_digest));
                if want != Some(&leaf.outcome) {
                    problems.push(format!(
                        "height {h}: replicas decided {:?}, the model {:?}",
                        leaf.outcome, want
                    ));
                }
            }
        }
        for ((tx, digest), (leaf, _)) in &self.checker.answers {
            if model.outcomes.get(&(*tx, *digest)) != Some(&leaf.outcome) {
                problems.push(format!("answer for {tx:?} is not the model's"));
            }
        }
        if let Some(p) = problems.into_iter().next() {
            return self.checker.fail("model", p);
        }
        if self.cfg.twins_split {
            return;
        }
        if self.stats.live_at_ms.is_none() {
            let unanswered = self.clients.iter().filter(|c| !c.answered).count();
            let heights: Vec<u64> = self
                .nodes
                .iter()
                .filter(|n| n.honest)
                .map(|n| n.applied)
                .collect();
            return self.checker.fail(
                "liveness",
                format!(
                    "{} ms after the faults stopped: {unanswered} requests unanswered, honest \
                     applied heights {heights:?}, committed height {}",
                    self.cfg.liveness_bound_ms, self.stats.height
                ),
            );
        }
        // Acknowledged notarisations survive: in every honest store, with the same leaf.
        for ((tx, digest), (leaf, _)) in &self.checker.answers {
            for n in self.nodes.iter().filter(|n| n.honest) {
                let Ok(Some(d)) = n.store.decision(tx) else {
                    return self.checker.fail(
                        "acknowledged",
                        format!("replica {} has no decision for acknowledged {tx:?}", n.id),
                    );
                };
                if d.request_digest != *digest {
                    continue;
                }
                let stored = n
                    .store
                    .block(d.height)
                    .ok()
                    .flatten()
                    .and_then(|r| r.leaves.get(d.leaf_index as usize).cloned());
                if stored.as_ref() != Some(leaf) {
                    return self.checker.fail(
                        "acknowledged",
                        format!("replica {} lost or changed acknowledged {tx:?}", n.id),
                    );
                }
            }
        }
    }
}

fn message_tag(m: &Message) -> u8 {
    match m {
        Message::Proposal(_) => 1,
        Message::Vote(_) => 2,
        Message::Timeout(_) => 3,
        Message::SyncInfo(_) => 4,
        Message::BlockRequest(_) => 5,
        Message::BlockResponse(_) => 6,
        Message::SyncRequest(_) => 7,
        Message::SyncResponse(_) => 8,
    }
}

/// Runs one configuration to the end.
pub fn run(cfg: SimConfig) -> RunReport {
    Sim::new(cfg).run()
}

/// Runs the configuration drawn from `seed`.
pub fn run_seed(seed: u64) -> RunReport {
    run(SimConfig::from_seed(seed))
}
