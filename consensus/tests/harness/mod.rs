//! A deterministic in-process cluster: n replicas, one seeded event queue with message delays,
//! loss, partitions, slow fsyncs, crashes and restarts from the durable record. Shared by the
//! integration tests (`tests/sim.rs`) and the benchmark (`benches/core.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use notary_consensus::{
    Action, Application, Block, BlockId, CommittedBlock, Committee, Config, Event, Height, Message,
    Recovery, Replica, ReplicaId, Round, SafetyData, SyncResponse, TimeMs,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A test application: items are u64 request ids; a payload is their little-endian bytes.
#[derive(Default, Clone)]
pub struct TestApp {
    pub pending: BTreeSet<u64>,
    pub committed: BTreeSet<u64>,
    pub batch_max: usize,
    pub veto_item: Option<u64>,
}

pub fn items(payload: &[u8]) -> impl Iterator<Item = u64> + '_ {
    payload
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
}

impl Application for TestApp {
    fn propose(&mut self, uncommitted: &[&Block], payload_bytes_max: usize) -> Vec<u8> {
        let in_flight: BTreeSet<u64> = uncommitted.iter().flat_map(|b| items(&b.payload)).collect();
        let max = self.batch_max.min(payload_bytes_max / 8);
        self.pending
            .iter()
            .filter(|i| !in_flight.contains(i))
            .take(max)
            .flat_map(|i| i.to_le_bytes())
            .collect()
    }
    fn validate(&mut self, block: &Block, _uncommitted: &[&Block]) -> bool {
        self.veto_item
            .is_none_or(|v| !items(&block.payload).any(|i| i == v))
    }
    fn has_pending_work(&self) -> bool {
        !self.pending.is_empty()
    }
}

pub struct Node {
    pub replica: Option<Replica>,
    pub key: SigningKey,
    pub app: TestApp,
    pub durable: Option<SafetyData>,
    pub committed: Vec<CommittedBlock>,
    pub timer: Option<TimeMs>,
    pub generation: u64,
    /// Every vote this replica ever released, across restarts: round -> block.
    pub voted: BTreeMap<Round, BlockId>,
    /// Stats of previous incarnations, summed.
    pub timeouts_before: u64,
}

// Events are short-lived queue entries; boxing the message would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    Persisted {
        node: usize,
        generation: u64,
        seq: u64,
        record: SafetyData,
    },
    Timer {
        node: usize,
        generation: u64,
        deadline: TimeMs,
    },
    Payload {
        node: usize,
        item: u64,
    },
}

#[derive(Clone)]
pub struct SimConfig {
    pub n: usize,
    pub seed: u64,
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// Extra delay on proposals, so that votes overtake them.
    pub proposal_extra_delay_ms: u64,
    /// Loss probability per message, per million.
    pub loss_ppm: u32,
    pub fsync_ms: u64,
    pub batch_max: usize,
    /// Round-trip every message through postcard.
    pub codec: bool,
    pub round_timeout_ms: u64,
}

impl SimConfig {
    pub fn new(n: usize, seed: u64) -> SimConfig {
        SimConfig {
            n,
            seed,
            delay_ms_min: 1,
            delay_ms_max: 20,
            proposal_extra_delay_ms: 0,
            loss_ppm: 0,
            fsync_ms: 2,
            batch_max: 50,
            codec: true,
            round_timeout_ms: 1000,
        }
    }
}

pub struct Sim {
    pub cfg: SimConfig,
    pub committee: Committee,
    pub nodes: Vec<Node>,
    pub now: TimeMs,
    queue: BTreeMap<(TimeMs, u64), Ev>,
    seq: u64,
    rng: ChaCha8Rng,
    /// Links that drop messages: (from, to).
    pub blocked: BTreeSet<(usize, usize)>,
    /// The one committed block id per height, across all replicas (agreement).
    pub chain: BTreeMap<Height, BlockId>,
    pub injected: BTreeSet<u64>,
    pub messages_delivered: u64,
    pub next_item: u64,
    /// Simulated time each item was injected, and first committed anywhere (for latency).
    pub injected_at: BTreeMap<u64, TimeMs>,
    pub committed_at: BTreeMap<u64, TimeMs>,
}

pub fn start_time() -> TimeMs {
    TimeMs(1_700_000_000_000)
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let keys: Vec<SigningKey> = (0..cfg.n)
            .map(|_| SigningKey::from_bytes(&rng.gen()))
            .collect();
        let committee = Committee::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (ReplicaId(i as u16), k.verifying_key()))
                .collect(),
        )
        .expect("distinct random keys");
        let nodes = keys
            .into_iter()
            .map(|key| Node {
                replica: None,
                key,
                app: TestApp {
                    batch_max: cfg.batch_max,
                    ..TestApp::default()
                },
                durable: None,
                committed: Vec::new(),
                timer: None,
                generation: 0,
                voted: BTreeMap::new(),
                timeouts_before: 0,
            })
            .collect();
        let mut sim = Sim {
            cfg,
            committee,
            nodes,
            now: start_time(),
            queue: BTreeMap::new(),
            seq: 0,
            rng,
            blocked: BTreeSet::new(),
            chain: BTreeMap::new(),
            injected: BTreeSet::new(),
            messages_delivered: 0,
            next_item: 0,
            injected_at: BTreeMap::new(),
            committed_at: BTreeMap::new(),
        };
        for i in 0..sim.cfg.n {
            sim.start(i);
        }
        sim
    }

    fn replica_config(&self, i: usize) -> Config {
        let mut c = Config::new(ReplicaId(i as u16));
        c.round_timeout_ms = self.cfg.round_timeout_ms;
        c
    }

    /// Starts (or restarts) node `i` from its durable record and last committed block.
    pub fn start(&mut self, i: usize) {
        let recovery = Recovery {
            safety: self.nodes[i].durable.clone(),
            committed: self.nodes[i].committed.last().cloned(),
            history: {
                let c = &self.nodes[i].committed;
                let end = c.len().saturating_sub(1);
                c[end.saturating_sub(notary_consensus::reputation::HISTORY_BLOCKS_MAX)..end]
                    .iter()
                    .map(|cb| cb.block.clone())
                    .collect()
            },
        };
        let r = Replica::new(
            self.replica_config(i),
            self.committee.clone(),
            self.nodes[i].key.clone(),
            recovery,
        )
        .expect("valid config");
        self.nodes[i].generation += 1;
        self.nodes[i].replica = Some(r);
        self.nodes[i].timer = None;
        self.handle(i, Event::Tick);
    }

    /// Crashes node `i`: in-flight persists are lost, the in-memory state is gone.
    pub fn crash(&mut self, i: usize) {
        if let Some(r) = self.nodes[i].replica.take() {
            self.nodes[i].timeouts_before += r.stats().local_timeouts;
        }
        self.nodes[i].generation += 1;
        self.nodes[i].timer = None;
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some()
    }

    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    fn push(&mut self, at: TimeMs, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// Injects `count` new items, each reaching every replica after a small random delay (the
    /// way batches are disseminated to all replicas).
    pub fn inject(&mut self, count: usize) {
        for _ in 0..count {
            let item = self.next_item;
            self.next_item += 1;
            self.injected.insert(item);
            self.injected_at.insert(item, self.now);
            for node in 0..self.cfg.n {
                let d = self.rng.gen_range(0..=self.cfg.delay_ms_max);
                self.push(self.now.plus_ms(d), Ev::Payload { node, item });
            }
        }
    }

    fn handle(&mut self, i: usize, event: Event) {
        let node = &mut self.nodes[i];
        let Some(r) = node.replica.as_mut() else {
            return;
        };
        let actions = r.handle(self.now, event, &mut node.app);
        for a in actions {
            self.execute(i, a);
        }
    }

    fn execute(&mut self, i: usize, a: Action) {
        match a {
            Action::Persist { seq, record } => {
                let generation = self.nodes[i].generation;
                let at = self.now.plus_ms(self.cfg.fsync_ms);
                self.push(
                    at,
                    Ev::Persisted {
                        node: i,
                        generation,
                        seq,
                        record,
                    },
                );
            }
            Action::Send { to, message } => {
                self.check_persisted_before_send(i, &message);
                self.transmit(i, usize::from(to.0), message);
            }
            Action::Broadcast { message } => {
                self.check_persisted_before_send(i, &message);
                for to in 0..self.cfg.n {
                    if to != i {
                        self.transmit(i, to, message.clone());
                    }
                }
            }
            Action::Commit { block, proof } => {
                proof
                    .verify(&self.committee, &block)
                    .expect("S4: every commit proof verifies");
                let node = &mut self.nodes[i];
                let expected = node
                    .committed
                    .last()
                    .map_or(Height(1), |c| c.block.height().next());
                assert_eq!(
                    block.height(),
                    expected,
                    "S4: commit heights contiguous from 1"
                );
                if let Some(prev) = node.committed.last() {
                    assert_eq!(block.header.parent_id, prev.block.id(), "S1: chain links");
                    assert!(
                        block.header.timestamp > prev.block.header.timestamp,
                        "S5: timestamps increase"
                    );
                }
                let id = block.id();
                let agreed = *self.chain.entry(block.height()).or_insert(id);
                assert_eq!(agreed, id, "S1 agreement at height {}", block.height());
                for item in items(&block.payload) {
                    self.committed_at.entry(item).or_insert(self.now);
                    node.app.pending.remove(&item);
                    assert!(
                        node.app.committed.insert(item),
                        "item {item} committed twice"
                    );
                }
                node.committed.push(CommittedBlock { block, proof });
            }
            Action::ServeSync { to, request } => {
                let store = &self.nodes[i].committed;
                let resp = SyncResponse::from_store(request, |h| {
                    h.0.checked_sub(1)
                        .and_then(|k| store.get(k as usize))
                        .cloned()
                });
                self.transmit(i, usize::from(to.0), Message::SyncResponse(resp));
            }
            Action::SetTimer { deadline } => {
                self.nodes[i].timer = Some(deadline);
                let generation = self.nodes[i].generation;
                self.push(
                    deadline.max(self.now),
                    Ev::Timer {
                        node: i,
                        generation,
                        deadline,
                    },
                );
            }
        }
    }

    /// S3: a vote or timeout leaves only after the record that allows it is durable; and S2:
    /// across restarts a replica never releases two different votes for one round.
    fn check_persisted_before_send(&mut self, i: usize, m: &Message) {
        let durable_round = self.nodes[i]
            .durable
            .as_ref()
            .map_or(Round(0), |d| d.last_voted_round);
        match m {
            Message::Vote(v) => {
                assert!(
                    durable_round >= v.data.round,
                    "S3: vote for round {} sent before persist (durable {durable_round})",
                    v.data.round
                );
                let prev = *self.nodes[i]
                    .voted
                    .entry(v.data.round)
                    .or_insert(v.data.block_id);
                assert_eq!(
                    prev, v.data.block_id,
                    "S2: two votes in round {}",
                    v.data.round
                );
            }
            Message::Timeout(t) => assert!(
                durable_round >= t.timeout.round,
                "S3: timeout for round {} sent before persist",
                t.timeout.round
            ),
            _ => {}
        }
    }

    fn transmit(&mut self, from: usize, to: usize, msg: Message) {
        if self.blocked.contains(&(from, to)) {
            return;
        }
        if self.cfg.loss_ppm > 0 && self.rng.gen_range(0..1_000_000) < self.cfg.loss_ppm {
            return;
        }
        let mut d = self
            .rng
            .gen_range(self.cfg.delay_ms_min..=self.cfg.delay_ms_max);
        if matches!(msg, Message::Proposal(_)) {
            d += self.cfg.proposal_extra_delay_ms;
        }
        let msg = if self.cfg.codec {
            let bytes = postcard::to_allocvec(&msg).expect("messages encode");
            postcard::from_bytes(&bytes).expect("messages decode")
        } else {
            msg
        };
        self.push(self.now.plus_ms(d), Ev::Deliver { from, to, msg });
    }

    /// Processes one event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), ev)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        match ev {
            Ev::Deliver { from, to, msg } => {
                if self.blocked.contains(&(from, to)) {
                    return true;
                }
                self.messages_delivered += 1;
                self.handle(
                    to,
                    Event::Unverified {
                        from: ReplicaId(from as u16),
                        message: msg,
                    },
                );
            }
            Ev::Persisted {
                node,
                generation,
                seq,
                record,
            } => {
                if self.nodes[node].generation == generation {
                    self.nodes[node].durable = Some(record);
                    self.handle(node, Event::Persisted { seq });
                }
            }
            Ev::Timer {
                node,
                generation,
                deadline,
            } => {
                if self.nodes[node].generation == generation
                    && self.nodes[node].timer == Some(deadline)
                {
                    self.handle(node, Event::TimerFired);
                }
            }
            Ev::Payload { node, item } => {
                if !self.nodes[node].app.committed.contains(&item) {
                    self.nodes[node].app.pending.insert(item);
                }
                self.handle(node, Event::PayloadReady);
            }
        }
        true
    }

    /// Runs until simulated time `ms` after the start.
    pub fn run_until(&mut self, ms: u64) {
        let end = start_time().plus_ms(ms);
        while let Some(((at, _), _)) = self.queue.first_key_value() {
            if *at > end {
                break;
            }
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Puts `count` new items straight into every replica's application (no per-item events),
    /// then tells each replica that payload is ready. Used by the benchmark.
    pub fn prefill(&mut self, count: usize) {
        for _ in 0..count {
            let item = self.next_item;
            self.next_item += 1;
            self.injected.insert(item);
            for node in &mut self.nodes {
                node.app.pending.insert(item);
            }
        }
        for i in 0..self.cfg.n {
            self.handle(i, Event::PayloadReady);
        }
    }

    /// Injects `per_second` items a second, spread evenly, from now until `until_ms`.
    pub fn load(&mut self, per_second: u64, until_ms: u64) {
        let step_ms = (1000 / per_second.max(1)).max(1);
        let per_step = (per_second * step_ms / 1000).max(1) as usize;
        while self.now < start_time().plus_ms(until_ms) {
            self.inject(per_step);
            let next = (self.now.0 - start_time().0) + step_ms;
            self.run_until(next);
        }
    }

    pub fn timeouts(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.timeouts_before + n.replica.as_ref().map_or(0, |r| r.stats().local_timeouts))
            .sum()
    }

    pub fn committed_height(&self, i: usize) -> u64 {
        self.nodes[i]
            .committed
            .last()
            .map_or(0, |c| c.block.height().0)
    }

    /// Every injected item committed at node `i`.
    pub fn all_committed(&self, i: usize) -> bool {
        self.injected
            .iter()
            .all(|x| self.nodes[i].app.committed.contains(x))
    }

    /// (p50, p99, max) of simulated commit latency in ms over items injected at or after
    /// `from_ms` after the start.
    pub fn latency_ms(&self, from_ms: u64) -> (u64, u64, u64) {
        let from = start_time().plus_ms(from_ms);
        let mut l: Vec<u64> = self
            .injected_at
            .iter()
            .filter(|(_, t)| **t >= from)
            .filter_map(|(i, t)| self.committed_at.get(i).map(|c| c.0 - t.0))
            .collect();
        l.sort_unstable();
        let at = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(0)
        };
        (at(0.5), at(0.99), l.last().copied().unwrap_or(0))
    }
}
