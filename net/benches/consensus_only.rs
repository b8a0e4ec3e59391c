//! The consensus layer alone, on the workload of asonnino/hotstuff (issue 8): n replicas in one
//! process, each on its own OS thread running the real consensus core
//! ([`notary_consensus::Replica`]) over the real QUIC transport ([`QuicTransport`], pinned
//! mutual TLS on 127.0.0.1), ordering unsigned fixed-size transactions. No notary checks, no
//! client signatures, no replies: what is left is consensus plus payload dissemination.
//!
//! Run: `cargo bench -p notary-net --bench consensus_only -- --rate 50000 --duration 60s
//! [--nodes 4] [--tx-bytes 200] [--fsync] [--warmup 5s] [--csv FILE]` (`--help` lists all).
//!
//! # The workload, as the peer's benchmark has it
//! * Each replica generates `rate / n` transactions per second (open loop: transaction `i` is
//!   due at `i / rate` seconds and carries that instant). A transaction is `--tx-bytes` long:
//!   bytes 0..8 its creation time in µs since one `Instant` shared by the whole process, bytes
//!   8..16 its origin and sequence number (so that no two are equal), the rest filler.
//! * Like the peer's mempool, each replica seals its own transactions into batches (every
//!   `--batch-ms`, or sooner at `--batch-bytes`) and broadcasts each batch to every peer.
//!   **Blocks carry batch digests** (SHA-256 of the batch, 32 bytes each), not the batches:
//!   whichever replica leads proposes the digests of every batch it holds that no uncommitted
//!   ancestor carries yet. A replica's `validate` accepts any payload that decodes as a list of
//!   digests (it does not wait for the batches).
//! * The pool is bounded: a replica refuses to generate beyond `--pool-txs` of its own
//!   transactions not yet committed (counted as dropped), and holds at most a fixed number of
//!   batches and bytes from its peers (beyond them, counted as refused).
//!
//! # What is measured, at replica 0, after the warm-up
//! Committed transactions per second (from commits inside the window), end-to-end latency from
//! a transaction's creation to the commit, at replica 0, of the block carrying its batch
//! (p50/p90/p99/max), committed blocks per second, transactions per block; on every replica,
//! the rounds it timed out of and the rounds entered through a timeout certificate.
//!
//! # The driver
//! The same order as `notaryd`'s driver: persist → send → commit → timers. The safety record is
//! kept in memory by default (the peer persists nothing) and written with `fdatasync` to one
//! file per replica under `--fsync`; a vote is released only after that.
// A benchmark binary: reading the clock, spawning threads and printing are its job.
#![allow(missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use notary_consensus::{
    Action, Application, Block, CommittedBlock, Committee, Config, Event, Height, Message,
    Recovery, Replica, SafetyData, SyncResponse, TimeMs, Verified,
};
use notary_net::local::loopback_cluster;
use notary_net::{QuicTransport, ReplicaId, Transport};
use sha2::{Digest as _, Sha256};

/// First byte of every frame this benchmark sends.
const TAG_CONSENSUS: u8 = 0;
const TAG_BATCH: u8 = 1;

/// A batch body: origin (u16), sequence (u64), transaction count (u32), then the transactions.
const BATCH_HEADER_BYTES: usize = 2 + 8 + 4;

/// Bytes of a transaction this benchmark writes itself (creation time, origin and sequence).
const TX_BYTES_MIN: usize = 16;

/// Digests in one block's payload (32 KiB of payload).
const DIGESTS_PER_BLOCK_MAX: usize = 1024;

/// Batches one replica holds, its own and its peers', not yet committed.
const BATCHES_HELD_MAX: usize = 16_384;

/// Committed digests whose batch has not arrived yet (it is counted when it does).
const AWAITED_DIGESTS_MAX: usize = 4096;

/// Committed blocks kept to answer peers' sync requests.
const COMMITTED_KEPT_MAX: usize = 1024;

/// Messages queued from the network and the generator to one consensus thread.
const DRIVER_QUEUE_MAX: usize = 8192;

type BatchDigest = [u8; 32];

// ----- command line ------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Args {
    rate_tx_s: u64,
    duration: Duration,
    warmup: Duration,
    nodes: u16,
    tx_bytes: usize,
    fsync: bool,
    batch_ms: u64,
    batch_bytes_max: usize,
    pool_txs_max: u64,
    round_timeout_ms: u64,
    /// `Config::max_clock_drift_ms`; only to diagnose the block-timestamp ceiling (see
    /// BENCHMARKS.md): raising it lets the chain's clock run ahead of real time.
    clock_drift_ms_max: Option<u64>,
    csv: Option<String>,
}

const USAGE: &str = "consensus_only [--rate TX/S] [--duration 60s] [--warmup 5s] [--nodes 4] \
[--tx-bytes 200] [--fsync] [--batch-ms 5] [--batch-bytes 500000] [--pool-txs 50000] \
[--timeout-ms 1000] [--max-drift-ms MS] [--csv FILE]";

fn parse_count(s: &str) -> Result<u64, String> {
    let (digits, scale) = match s.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1_000),
        None => (s, 1),
    };
    digits
        .replace('_', "")
        .parse::<u64>()
        .map(|v| v * scale)
        .map_err(|e| format!("{s:?} is not a count: {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |e: std::num::ParseFloatError| format!("{s:?} is not a duration: {e}");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<f64>()
            .map(|v| Duration::from_secs_f64(v / 1e3))
            .map_err(bad);
    }
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<f64>()
            .map(|v| Duration::from_secs_f64(v * 60.0))
            .map_err(bad);
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(bad)
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut a = Args {
            rate_tx_s: 50_000,
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            nodes: 4,
            tx_bytes: 200,
            fsync: false,
            batch_ms: 5,
            batch_bytes_max: 500_000,
            pool_txs_max: 50_000,
            round_timeout_ms: 1000,
            clock_drift_ms_max: None,
            csv: None,
        };
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                // `cargo bench` appends `--bench` to a harness-less binary's arguments.
                "--bench" => {}
                "--fsync" => a.fsync = true,
                "--rate" => a.rate_tx_s = parse_count(&value()?)?,
                "--duration" => a.duration = parse_duration(&value()?)?,
                "--warmup" => a.warmup = parse_duration(&value()?)?,
                "--nodes" => a.nodes = parse_count(&value()?)? as u16,
                "--tx-bytes" => a.tx_bytes = parse_count(&value()?)? as usize,
                "--batch-ms" => a.batch_ms = parse_count(&value()?)?,
                "--batch-bytes" => a.batch_bytes_max = parse_count(&value()?)? as usize,
                "--pool-txs" => a.pool_txs_max = parse_count(&value()?)?,
                "--timeout-ms" => a.round_timeout_ms = parse_count(&value()?)?,
                "--max-drift-ms" => a.clock_drift_ms_max = Some(parse_count(&value()?)?),
                "--csv" => a.csv = Some(value()?),
                "--help" | "-h" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if a.nodes < 1 {
            return Err("--nodes must be at least 1".into());
        }
        if a.tx_bytes < TX_BYTES_MIN {
            return Err(format!("--tx-bytes must be at least {TX_BYTES_MIN}"));
        }
        if a.batch_bytes_max < BATCH_HEADER_BYTES + a.tx_bytes || a.batch_bytes_max > 4 << 20 {
            return Err("--batch-bytes must hold one transaction and be at most 4 MiB".into());
        }
        if a.rate_tx_s == 0 || a.duration.is_zero() || a.batch_ms == 0 {
            return Err("--rate, --duration and --batch-ms must be positive".into());
        }
        Ok(a)
    }
}

// ----- batches -----------------------------------------------------------------------------

/// A batch of transactions as it travels (without the frame tag) and its digest.
#[derive(Debug)]
struct Batch {
    digest: BatchDigest,
    origin: ReplicaId,
    tx_count: u32,
    body: Bytes,
}

#[derive(Debug, thiserror::Error)]
enum WireError {
    #[error("frame is empty")]
    Empty,
    #[error("unknown frame tag {0}")]
    Tag(u8),
    #[error("batch of {len} bytes does not hold {count} transactions of {tx_bytes} bytes")]
    BatchLength {
        len: usize,
        count: u32,
        tx_bytes: usize,
    },
    #[error("consensus message: {0}")]
    Consensus(#[from] postcard::Error),
}

fn digest_of(body: &[u8]) -> BatchDigest {
    Sha256::digest(body).into()
}

impl Batch {
    /// Parses a batch body received from `from`; its origin must be the sender.
    fn decode(body: Bytes, tx_bytes: usize) -> Result<Batch, WireError> {
        let short = |count| WireError::BatchLength {
            len: body.len(),
            count,
            tx_bytes,
        };
        if body.len() < BATCH_HEADER_BYTES {
            return Err(short(0));
        }
        let origin = ReplicaId(u16::from_le_bytes([body[0], body[1]]));
        let count = u32::from_le_bytes([body[10], body[11], body[12], body[13]]);
        if body.len() != BATCH_HEADER_BYTES + count as usize * tx_bytes {
            return Err(short(count));
        }
        Ok(Batch {
            digest: digest_of(&body),
            origin,
            tx_count: count,
            body,
        })
    }

    /// The creation time (µs since the shared epoch) of every transaction.
    fn creation_times_us(&self, tx_bytes: usize) -> impl Iterator<Item = u64> + '_ {
        self.body[BATCH_HEADER_BYTES..]
            .chunks_exact(tx_bytes)
            .map(|tx| u64::from_le_bytes(tx[..8].try_into().expect("a chunk holds 8 bytes")))
    }
}

fn encode_message(m: &Message) -> Bytes {
    let out = postcard::to_extend(m, vec![TAG_CONSENSUS]).expect("encoding to a Vec cannot fail");
    Bytes::from(out)
}

enum Frame {
    Consensus(Box<Message>),
    Batch(Bytes),
}

fn decode_frame(bytes: Bytes) -> Result<Frame, WireError> {
    match bytes.first() {
        None => Err(WireError::Empty),
        Some(&TAG_CONSENSUS) => Ok(Frame::Consensus(Box::new(postcard::from_bytes(
            &bytes[1..],
        )?))),
        Some(&TAG_BATCH) => Ok(Frame::Batch(bytes.slice(1..))),
        Some(&t) => Err(WireError::Tag(t)),
    }
}

// ----- latency histogram -------------------------------------------------------------------

/// Log-linear histogram of microseconds: exact below 128 µs, then 64 buckets per power of two
/// (at most 1.6 % error). Fixed size whatever it records.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const HISTOGRAM_BUCKETS: usize = 64 * 60;

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; HISTOGRAM_BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as usize; // >= 7
        let sub = (v >> (exp - 6)) as usize; // 64..128
        ((exp - 6) * 64 + sub).min(HISTOGRAM_BUCKETS - 1)
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < 128 {
            return i as u64;
        }
        let shift = i / 64 - 1;
        let low = ((i % 64 + 64) as u64) << shift;
        low + (1u64 << shift) / 2
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

// ----- the application: a pool of batch digests ---------------------------------------------

struct Held {
    batch: Arc<Batch>,
    seq: u64,
}

/// Counters of the pool.
#[derive(Default, Clone, Copy)]
struct PoolStats {
    refused_batches: u64,
    vetoed_blocks: u64,
    missing_at_commit: u64,
}

/// The batches this replica holds and has not seen committed, in arrival order. It is the
/// [`Application`]: payloads are lists of the digests of held batches.
struct Pool {
    held: HashMap<BatchDigest, Held>,
    queue: BTreeMap<u64, BatchDigest>,
    next_seq: u64,
    held_bytes: usize,
    held_bytes_max: usize,
    /// Committed digests whose batch this replica has not received yet.
    awaited: HashSet<BatchDigest>,
    stats: PoolStats,
}

fn decode_digests(payload: &[u8]) -> Option<impl Iterator<Item = BatchDigest> + '_> {
    if payload.len() % 32 != 0 || payload.len() / 32 > DIGESTS_PER_BLOCK_MAX {
        return None;
    }
    Some(
        payload
            .chunks_exact(32)
            .map(|c| c.try_into().expect("chunks of 32 bytes")),
    )
}

impl Pool {
    fn new(held_bytes_max: usize) -> Self {
        Self {
            held: HashMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            held_bytes: 0,
            held_bytes_max,
            awaited: HashSet::new(),
            stats: PoolStats::default(),
        }
    }

    /// Adds a batch. `Ok(true)`: queued, there is something to propose. `Ok(false)`: refused
    /// or already held. `Err(batch)`: its digest was committed already: it counts now.
    fn insert(&mut self, batch: Arc<Batch>) -> Result<bool, Arc<Batch>> {
        if self.awaited.remove(&batch.digest) {
            return Err(batch);
        }
        if self.held.contains_key(&batch.digest) {
            return Ok(false);
        }
        if self.held.len() >= BATCHES_HELD_MAX
            || self.held_bytes + batch.body.len() > self.held_bytes_max
        {
            self.stats.refused_batches += 1;
            return Ok(false);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held_bytes += batch.body.len();
        self.queue.insert(seq, batch.digest);
        self.held.insert(batch.digest, Held { batch, seq });
        Ok(true)
    }

    /// The batches of a committed block this replica holds; the others are awaited.
    fn take_committed(&mut self, block: &Block) -> Vec<Arc<Batch>> {
        let Some(digests) = decode_digests(&block.payload) else {
            // 2f+1 replicas validated it, so it decodes; were it not, every replica skips it.
            return Vec::new();
        };
        let mut out = Vec::new();
        for digest in digests {
            match self.held.remove(&digest) {
                Some(h) => {
                    self.queue.remove(&h.seq);
                    self.held_bytes -= h.batch.body.len();
                    out.push(h.batch);
                }
                None => {
                    self.stats.missing_at_commit += 1;
                    if self.awaited.len() < AWAITED_DIGESTS_MAX {
                        self.awaited.insert(digest);
                    }
                }
            }
        }
        out
    }
}

impl Application for Pool {
    fn propose(&mut self, uncommitted: &[&Block], payload_bytes_max: usize) -> Vec<u8> {
        let excluded: HashSet<BatchDigest> = uncommitted
            .iter()
            .filter_map(|b| decode_digests(&b.payload))
            .flatten()
            .collect();
        let max = DIGESTS_PER_BLOCK_MAX.min(payload_bytes_max / 32);
        let mut payload = Vec::new();
        for digest in self.queue.values() {
            if payload.len() / 32 >= max {
                break;
            }
            if !excluded.contains(digest) {
                payload.extend_from_slice(digest);
            }
        }
        payload
    }

    fn validate(&mut self, block: &Block, _uncommitted: &[&Block]) -> bool {
        let ok = decode_digests(&block.payload).is_some();
        if !ok {
            self.stats.vetoed_blocks += 1;
        }
        ok
    }

    fn has_pending_work(&self) -> bool {
        !self.queue.is_empty()
    }
}

// ----- shared counters ------------------------------------------------------------------------

/// What the main thread reads of one replica while it runs.
#[derive(Default)]
struct Counters {
    local_timeouts: AtomicU64,
    tc_rounds: AtomicU64,
    committed_height: AtomicU64,
    own_uncommitted_txs: AtomicU64,
    generated_txs: AtomicU64,
    dropped_txs: AtomicU64,
    inbound_dropped: AtomicU64,
    malformed: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct CounterSnapshot {
    local_timeouts: u64,
    tc_rounds: u64,
    generated_txs: u64,
    dropped_txs: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            local_timeouts: self.local_timeouts.load(Relaxed),
            tc_rounds: self.tc_rounds.load(Relaxed),
            generated_txs: self.generated_txs.load(Relaxed),
            dropped_txs: self.dropped_txs.load(Relaxed),
        }
    }
}

/// Microseconds since the process-wide epoch.
fn us_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

/// The consensus clock: wall-clock ms since the Unix epoch, as `notaryd`'s driver reads it.
fn now_ms() -> TimeMs {
    TimeMs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

// ----- the generator and batch maker ---------------------------------------------------------

/// One replica's client and batch maker: generates its share of the offered rate, seals
/// batches by time or size, broadcasts them and hands them to its own consensus thread.
struct Generator {
    me: ReplicaId,
    args: Args,
    rate_tx_s: f64,
    epoch: Instant,
    transport: Arc<QuicTransport>,
    driver: SyncSender<Input>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Generator {
    fn run(self) {
        let tx_bytes = self.args.tx_bytes;
        let batch_period_us = self.args.batch_ms * 1000;
        let mut generated: u64 = 0;
        let mut batch_seq: u64 = 0;
        let mut open = self.open_batch(batch_seq);
        let mut open_count: u32 = 0;
        let mut open_since_us = us_since(self.epoch);
        let filler = vec![0xa5u8; tx_bytes - TX_BYTES_MIN];
        while !self.stop.load(Relaxed) {
            let now_us = us_since(self.epoch);
            let due = (now_us as f64 * self.rate_tx_s / 1e6) as u64;
            while generated < due {
                // Open loop: transaction `generated` was due at this instant.
                let created_us = (generated as f64 * 1e6 / self.rate_tx_s) as u64;
                generated += 1;
                self.counters.generated_txs.fetch_add(1, Relaxed);
                let own = self.counters.own_uncommitted_txs.load(Relaxed);
                if own + u64::from(open_count) >= self.args.pool_txs_max {
                    self.counters.dropped_txs.fetch_add(1, Relaxed);
                    continue;
                }
                if open_count == 0 {
                    open_since_us = now_us;
                }
                open.put_u64_le(created_us);
                open.put_u16_le(self.me.0);
                open.put_uint_le(generated, 6);
                open.put_slice(&filler);
                open_count += 1;
                if open.len() + tx_bytes > self.args.batch_bytes_max + 1 {
                    self.seal(&mut open, open_count);
                    batch_seq += 1;
                    open = self.open_batch(batch_seq);
                    open_count = 0;
                }
            }
            if open_count > 0 && now_us.saturating_sub(open_since_us) >= batch_period_us {
                self.seal(&mut open, open_count);
                batch_seq += 1;
                open = self.open_batch(batch_seq);
                open_count = 0;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn open_batch(&self, seq: u64) -> BytesMut {
        let mut b = BytesMut::with_capacity(self.args.batch_bytes_max + 1);
        b.put_u8(TAG_BATCH);
        b.put_u16_le(self.me.0);
        b.put_u64_le(seq);
        b.put_u32_le(0);
        b
    }

    fn seal(&self, open: &mut BytesMut, count: u32) {
        open[11..15].copy_from_slice(&count.to_le_bytes());
        let frame = std::mem::take(open).freeze();
        let body = frame.slice(1..);
        let batch = Arc::new(Batch {
            digest: digest_of(&body),
            origin: self.me,
            tx_count: count,
            body,
        });
        self.counters
            .own_uncommitted_txs
            .fetch_add(u64::from(count), Relaxed);
        // Queued per peer without waiting; a full queue drops its oldest frame (counted by the
        // transport), which the pool bound keeps from happening in these runs.
        if let Err(e) = self.transport.broadcast(frame) {
            eprintln!("replica {}: batch not broadcast: {e}", self.me);
        }
        let _ = self.driver.send(Input::Batch(batch));
    }
}

// ----- the inbound path ---------------------------------------------------------------------

enum Input {
    Consensus(Box<Verified>),
    Batch(Arc<Batch>),
    Stop,
}

/// Decodes peers' frames on the async workers; signatures are verified here, off the
/// consensus thread, as `notaryd` does.
async fn inbound_router(
    mut inbound: notary_net::Inbound,
    committee: Committee,
    tx_bytes: usize,
    driver: SyncSender<Input>,
    counters: Arc<Counters>,
) {
    let payload_max = Config::new(ReplicaId(0)).payload_bytes_max;
    while let Some((from, bytes)) = inbound.recv().await {
        let input = match decode_frame(bytes) {
            Ok(Frame::Consensus(m)) => match (*m).verify(&committee, from, payload_max) {
                Ok(v) => Input::Consensus(Box::new(v)),
                Err(e) => {
                    eprintln!("replica {from}: consensus message rejected: {e}");
                    counters.malformed.fetch_add(1, Relaxed);
                    continue;
                }
            },
            Ok(Frame::Batch(body)) => match Batch::decode(body, tx_bytes) {
                Ok(b) if b.origin == from => Input::Batch(Arc::new(b)),
                _ => {
                    counters.malformed.fetch_add(1, Relaxed);
                    continue;
                }
            },
            Err(_) => {
                counters.malformed.fetch_add(1, Relaxed);
                continue;
            }
        };
        match driver.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.inbound_dropped.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

// ----- the driver ---------------------------------------------------------------------------

/// Where the safety record goes: memory (as the peer) or a file, fdatasync'd before a vote
/// leaves.
enum Persister {
    Memory(Vec<u8>),
    File(File),
}

impl Persister {
    fn save(&mut self, record: &SafetyData) -> std::io::Result<()> {
        let bytes = postcard::to_allocvec(record).expect("encoding to a Vec cannot fail");
        match self {
            Persister::Memory(last) => *last = bytes,
            Persister::File(f) => {
                // Length-prefixed at offset 0: a longer stale tail is never read, and the
                // file's size rarely changes, so fdatasync writes data only.
                f.seek(SeekFrom::Start(0))?;
                f.write_all(&(bytes.len() as u64).to_le_bytes())?;
                f.write_all(&bytes)?;
                f.sync_data()?;
            }
        }
        Ok(())
    }
}

/// What replica 0 measures inside the window.
struct Recorder {
    window_us: (u64, u64),
    txs: u64,
    blocks: u64,
    nonempty_blocks: u64,
    latency_us: Histogram,
    persist_us: Histogram,
}

impl Recorder {
    fn in_window(&self, t_us: u64) -> bool {
        (self.window_us.0..self.window_us.1).contains(&t_us)
    }
}

struct Driver {
    replica: Replica,
    pool: Pool,
    rx: Receiver<Input>,
    transport: Arc<QuicTransport>,
    persister: Persister,
    counters: Arc<Counters>,
    committed: VecDeque<CommittedBlock>,
    recorder: Option<Recorder>,
    epoch: Instant,
    tx_bytes: usize,
}

/// What a driver hands back when it stops.
struct DriverReport {
    recorder: Option<Recorder>,
    pool: PoolStats,
    rejected: BTreeMap<&'static str, u64>,
}

impl Driver {
    fn run(mut self) -> DriverReport {
        let mut deadline: Option<TimeMs> = None;
        let first = self.replica.handle(now_ms(), Event::Tick, &mut self.pool);
        self.execute(first, &mut deadline);
        loop {
            let wait = match deadline {
                Some(d) => Duration::from_millis(d.0.saturating_sub(now_ms().0)),
                None => Duration::from_secs(1),
            };
            let event = match self.rx.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Input::Consensus(v)) => Event::Message(*v),
                Ok(Input::Batch(b)) => match self.pool.insert(b) {
                    Ok(true) => Event::PayloadReady,
                    Ok(false) => continue,
                    Err(late) => {
                        self.batch_committed(&late, us_since(self.epoch));
                        continue;
                    }
                },
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| now_ms() >= d) {
                        deadline = None;
                        Event::TimerFired
                    } else {
                        continue;
                    }
                }
            };
            let actions = self.replica.handle(now_ms(), event, &mut self.pool);
            self.execute(actions, &mut deadline);
            self.publish();
        }
        self.publish();
        DriverReport {
            recorder: self.recorder,
            pool: self.pool.stats,
            rejected: self.replica.stats().rejected.clone(),
        }
    }

    fn publish(&self) {
        let s = self.replica.stats();
        if s.local_timeouts > self.counters.local_timeouts.load(Relaxed) {
            // Rare by design (the target is none): say where each one happened.
            eprintln!(
                "  replica {} timed out at t={:.3}s: now in round {} (leader {}), high QC round \
                 {}, committed height {}, votes refused for clock drift so far {}",
                self.me(),
                self.epoch.elapsed().as_secs_f64(),
                s.round,
                s.leader,
                s.high_qc_round,
                s.committed_height,
                s.clock_drift_refusals
            );
        }
        self.counters
            .local_timeouts
            .store(s.local_timeouts, Relaxed);
        self.counters.tc_rounds.store(s.round_changes_tc, Relaxed);
        self.counters
            .committed_height
            .store(s.committed_height.0, Relaxed);
    }

    /// Executes actions in the written order: persist → send → commit → timers (the order the
    /// core returns them in), feeding `Persisted` back before anything else.
    fn execute(&mut self, actions: Vec<Action>, deadline: &mut Option<TimeMs>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Persist { seq, record } => {
                    let t = Instant::now();
                    if let Err(e) = self.persister.save(&record) {
                        // Local and fatal: this replica must never vote without its record.
                        panic!("cannot persist the safety record: {e}");
                    }
                    if let Some(r) = &mut self.recorder {
                        r.persist_us.record(t.elapsed().as_micros() as u64);
                    }
                    let more =
                        self.replica
                            .handle(now_ms(), Event::Persisted { seq }, &mut self.pool);
                    queue.extend(more);
                }
                Action::Send { to, message } => {
                    if let Err(e) = self.transport.send(to, encode_message(&message)) {
                        eprintln!("consensus message to {to} not sent: {e}");
                    }
                }
                Action::Broadcast { message } => {
                    if let Err(e) = self.transport.broadcast(encode_message(&message)) {
                        eprintln!("consensus broadcast not sent: {e}");
                    }
                }
                Action::ServeSync { to, request } => {
                    let response = self.sync_response(request);
                    let bytes = encode_message(&Message::SyncResponse(response));
                    if let Err(e) = self.transport.send(to, bytes) {
                        eprintln!("sync response to {to} not sent: {e}");
                    }
                }
                Action::Commit { block, proof } => self.commit(block, proof),
                Action::SetTimer { deadline: d } => *deadline = Some(d),
            }
        }
    }

    fn commit(&mut self, block: Block, proof: notary_consensus::CommitProof) {
        let now_us = us_since(self.epoch);
        let batches = self.pool.take_committed(&block);
        if let Some(r) = &mut self.recorder {
            if r.in_window(now_us) {
                r.blocks += 1;
                r.nonempty_blocks += u64::from(!block.is_empty());
            }
        }
        for b in &batches {
            self.batch_committed(b, now_us);
        }
        if self.committed.len() >= COMMITTED_KEPT_MAX {
            self.committed.pop_front();
        }
        self.committed.push_back(CommittedBlock { block, proof });
    }

    /// A batch whose digest is committed and which this replica holds, at `now_us`.
    fn batch_committed(&mut self, batch: &Batch, now_us: u64) {
        // Only the origin's own counter bounds its generator.
        if batch.origin == self.me() {
            self.counters
                .own_uncommitted_txs
                .fetch_sub(u64::from(batch.tx_count), Relaxed);
        }
        let Some(r) = &mut self.recorder else {
            return;
        };
        if !r.in_window(now_us) {
            return;
        }
        r.txs += u64::from(batch.tx_count);
        for created_us in batch.creation_times_us(self.tx_bytes) {
            r.latency_us.record(now_us.saturating_sub(created_us));
        }
    }

    fn me(&self) -> ReplicaId {
        self.transport.local_id()
    }

    /// Committed blocks from the kept ones, contiguous from `request.from`.
    fn sync_response(&self, request: notary_consensus::SyncRequest) -> SyncResponse {
        let first = self.committed.front().map_or(0, |c| c.block.height().0);
        SyncResponse::from_store(request, |h: Height| {
            let index = h.0.checked_sub(first)?;
            self.committed.get(index as usize).cloned()
        })
    }
}

// ----- CPU accounting -----------------------------------------------------------------------

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time (user + system, clock ticks) of this process's threads, summed by role: the
/// thread name without its `-N` replica suffix (`consensus`, `generator`), `tokio` for the
/// runtime's workers (QUIC, TLS, decoding, signature checks, batch hashing), `other`. Empty
/// where `/proc` is unavailable.
fn cpu_ticks_by_role() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        // After the name: state is field 3, utime field 14, stime field 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let role = if name.starts_with("tokio") {
            "tokio"
        } else if let Some((role, _)) = name
            .rsplit_once('-')
            .filter(|(r, _)| *r == "consensus" || *r == "generator")
        {
            role
        } else {
            "other"
        };
        *out.entry(role.to_owned()).or_insert(0) += ticks(11) + ticks(12);
    }
    out
}

/// Cores used per role between two readings `secs` apart.
fn cores_used(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    secs: f64,
) -> Vec<(String, f64)> {
    after
        .iter()
        .map(|(role, t)| {
            let used = t.saturating_sub(before.get(role).copied().unwrap_or(0));
            (role.clone(), used as f64 / CLOCK_TICKS_PER_S / secs)
        })
        .collect()
}

// ----- the run ------------------------------------------------------------------------------

struct Summary {
    args: Args,
    window_s: f64,
    committed_tx_s: f64,
    offered_tx_s: f64,
    dropped_tx_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    blocks_s: f64,
    txs_per_block: f64,
    persist_p50_us: u64,
    persist_p99_us: u64,
    timeouts: Vec<u64>,
    tc_rounds: Vec<u64>,
    timeouts_whole_run: u64,
    net_dropped: u64,
    inbound_dropped: u64,
    malformed: u64,
    refused_batches: u64,
    vetoed_blocks: u64,
    missing_at_commit: u64,
    rejected: BTreeMap<&'static str, u64>,
    cpu_cores: Vec<(String, f64)>,
}

/// The running cluster: per replica its transport, counters, input queue and threads.
struct Cluster {
    transports: Vec<Arc<QuicTransport>>,
    counters: Vec<Arc<Counters>>,
    inputs: Vec<SyncSender<Input>>,
    drivers: Vec<std::thread::JoinHandle<DriverReport>>,
    generators: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Holds the safety-record files of `--fsync` until the run ends.
    dir: tempfile::TempDir,
}

/// The counters at the start and the end of the measured window.
struct Window {
    before: Vec<CounterSnapshot>,
    after: Vec<CounterSnapshot>,
    cpu_cores: Vec<(String, f64)>,
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, String> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| format!("thread: {e}"))
}

impl Cluster {
    /// Starts `args.nodes` replicas: transports, inbound routers, consensus and generator
    /// threads. Deterministic vote keys: this is a benchmark.
    fn start(args: &Args, rt: &tokio::runtime::Runtime, epoch: Instant) -> Result<Self, String> {
        let n = args.nodes;
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| {
                let mut seed = [0x5eu8; 32];
                seed[..2].copy_from_slice(&i.to_le_bytes());
                SigningKey::from_bytes(&seed)
            })
            .collect();
        let members = keys.iter().enumerate();
        let committee = Committee::new(
            members
                .map(|(i, k)| (ReplicaId(i as u16), k.verifying_key()))
                .collect(),
        )
        .map_err(|e| format!("committee: {e}"))?;
        let nodes =
            loopback_cluster("consensus-only", n).map_err(|e| format!("identities: {e}"))?;
        let mut cluster = Cluster {
            transports: Vec::new(),
            counters: Vec::new(),
            inputs: Vec::new(),
            drivers: Vec::new(),
            generators: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            dir: tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?,
        };
        for ((config, socket), key) in nodes.into_iter().zip(keys) {
            let (transport, inbound) = QuicTransport::start_on_socket(config, socket)
                .map_err(|e| format!("start: {e}"))?;
            cluster.add_replica(args, rt, epoch, &committee, key, transport, inbound)?;
        }
        Ok(cluster)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_replica(
        &mut self,
        args: &Args,
        rt: &tokio::runtime::Runtime,
        epoch: Instant,
        committee: &Committee,
        key: SigningKey,
        transport: QuicTransport,
        inbound: notary_net::Inbound,
    ) -> Result<(), String> {
        let me = transport.local_id();
        let transport = Arc::new(transport);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(DRIVER_QUEUE_MAX);
        let router = inbound_router(
            inbound,
            committee.clone(),
            args.tx_bytes,
            tx.clone(),
            counters.clone(),
        );
        rt.spawn(router);
        let mut cfg = Config::new(me);
        cfg.round_timeout_ms = args.round_timeout_ms;
        cfg.round_timeout_ms_max = cfg.round_timeout_ms_max.max(args.round_timeout_ms);
        if let Some(ms) = args.clock_drift_ms_max {
            cfg.max_clock_drift_ms = ms;
        }
        let replica = Replica::new(cfg, committee.clone(), key, Recovery::default())
            .map_err(|e| format!("replica {me}: {e}"))?;
        let persister = if args.fsync {
            let path = self.dir.path().join(format!("safety-{}.bin", me.0));
            Persister::File(File::create(&path).map_err(|e| format!("{path:?}: {e}"))?)
        } else {
            Persister::Memory(Vec::new())
        };
        let window_us = (
            args.warmup.as_micros() as u64,
            (args.warmup + args.duration).as_micros() as u64,
        );
        // Peers' batches one replica holds: each origin stops at `pool_txs_max` of its own.
        let n = usize::from(args.nodes);
        let held_bytes_max = (args.pool_txs_max as usize * args.tx_bytes + args.batch_bytes_max)
            .saturating_mul(2 * n);
        let driver = Driver {
            replica,
            pool: Pool::new(held_bytes_max),
            rx,
            transport: transport.clone(),
            persister,
            counters: counters.clone(),
            committed: VecDeque::new(),
            recorder: (me.0 == 0).then(|| Recorder {
                window_us,
                txs: 0,
                blocks: 0,
                nonempty_blocks: 0,
                latency_us: Histogram::new(),
                persist_us: Histogram::new(),
            }),
            epoch,
            tx_bytes: args.tx_bytes,
        };
        self.drivers
            .push(spawn(format!("consensus-{}", me.0), move || driver.run())?);
        let generator = Generator {
            me,
            args: args.clone(),
            rate_tx_s: args.rate_tx_s as f64 / f64::from(args.nodes),
            epoch,
            transport: transport.clone(),
            driver: tx.clone(),
            counters: counters.clone(),
            stop: self.stop.clone(),
        };
        self.generators
            .push(spawn(format!("generator-{}", me.0), move || {
                generator.run()
            })?);
        self.transports.push(transport);
        self.counters.push(counters);
        self.inputs.push(tx);
        Ok(())
    }

    /// Sleeps through the warm-up and the window, reading the counters at both ends and
    /// printing progress every 10 s.
    fn watch(&self, args: &Args, epoch: Instant) -> Window {
        let sleep_until = |t: Duration| std::thread::sleep(t.saturating_sub(epoch.elapsed()));
        let snapshot =
            || -> Vec<CounterSnapshot> { self.counters.iter().map(|c| c.snapshot()).collect() };
        sleep_until(args.warmup);
        let before = snapshot();
        let cpu_before = cpu_ticks_by_role();
        let end = args.warmup + args.duration;
        let mut next = args.warmup + Duration::from_secs(10);
        while next < end {
            sleep_until(next);
            let h = self.counters[0].committed_height.load(Relaxed);
            let t: u64 = snapshot().iter().map(|c| c.local_timeouts).sum();
            eprintln!(
                "  t={:>4.0}s committed height {h}, timeouts {t}",
                next.as_secs_f64()
            );
            next += Duration::from_secs(10);
        }
        sleep_until(end);
        let after = snapshot();
        let secs = args.duration.as_secs_f64();
        let cpu_cores = cores_used(&cpu_before, &cpu_ticks_by_role(), secs);
        Window {
            before,
            after,
            cpu_cores,
        }
    }

    /// Stops generators, then consensus threads, then transports; returns the drivers'
    /// reports (replica order) and the frames the transports dropped.
    fn stop(self, rt: &tokio::runtime::Runtime) -> Result<(Vec<DriverReport>, u64), String> {
        self.stop.store(true, Relaxed);
        for g in self.generators {
            g.join().map_err(|_| "a generator thread panicked")?;
        }
        for input in &self.inputs {
            let _ = input.send(Input::Stop);
        }
        let mut reports = Vec::new();
        for d in self.drivers {
            reports.push(d.join().map_err(|_| "a consensus thread panicked")?);
        }
        let net_dropped = self
            .transports
            .iter()
            .flat_map(|t| t.stats().peers)
            .map(|p| p.frames_dropped_queue_full)
            .sum();
        let transports = self.transports;
        rt.block_on(async {
            for t in transports {
                if let Ok(t) = Arc::try_unwrap(t) {
                    t.shutdown().await;
                }
            }
        });
        Ok((reports, net_dropped))
    }
}

fn run(args: Args) -> Result<Summary, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let _guard = rt.enter();
    let epoch = Instant::now();
    let cluster = Cluster::start(&args, &rt, epoch)?;
    let counters = cluster.counters.clone();
    let window = cluster.watch(&args, epoch);
    let (mut reports, net_dropped) = cluster.stop(&rt)?;
    let recorder = reports[0]
        .recorder
        .take()
        .expect("replica 0 records the window");
    Ok(Summary::new(
        args,
        &window,
        &recorder,
        &reports,
        &counters,
        net_dropped,
    ))
}

impl Summary {
    fn new(
        args: Args,
        w: &Window,
        r: &Recorder,
        reports: &[DriverReport],
        counters: &[Arc<Counters>],
        net_dropped: u64,
    ) -> Summary {
        let secs = args.duration.as_secs_f64();
        let delta = |f: fn(&CounterSnapshot) -> u64| -> Vec<u64> {
            w.before
                .iter()
                .zip(&w.after)
                .map(|(b, a)| f(a) - f(b))
                .collect()
        };
        let generated: u64 = delta(|c| c.generated_txs).iter().sum();
        let dropped: u64 = delta(|c| c.dropped_txs).iter().sum();
        let ms = |us: u64| us as f64 / 1e3;
        let mut rejected = BTreeMap::new();
        for (kind, count) in reports.iter().flat_map(|r| &r.rejected) {
            *rejected.entry(*kind).or_insert(0) += count;
        }
        let pools = |f: fn(&PoolStats) -> u64| reports.iter().map(|r| f(&r.pool)).sum();
        Summary {
            window_s: secs,
            committed_tx_s: r.txs as f64 / secs,
            offered_tx_s: generated as f64 / secs,
            dropped_tx_s: dropped as f64 / secs,
            p50_ms: ms(r.latency_us.quantile(0.50)),
            p90_ms: ms(r.latency_us.quantile(0.90)),
            p99_ms: ms(r.latency_us.quantile(0.99)),
            max_ms: ms(r.latency_us.max),
            blocks_s: r.blocks as f64 / secs,
            txs_per_block: r.txs as f64 / r.nonempty_blocks.max(1) as f64,
            persist_p50_us: r.persist_us.quantile(0.5),
            persist_p99_us: r.persist_us.quantile(0.99),
            timeouts: delta(|c| c.local_timeouts),
            tc_rounds: delta(|c| c.tc_rounds),
            timeouts_whole_run: w.after.iter().map(|c| c.local_timeouts).sum(),
            net_dropped,
            inbound_dropped: counters
                .iter()
                .map(|c| c.inbound_dropped.load(Relaxed))
                .sum(),
            malformed: counters.iter().map(|c| c.malformed.load(Relaxed)).sum(),
            refused_batches: pools(|p| p.refused_batches),
            vetoed_blocks: pools(|p| p.vetoed_blocks),
            missing_at_commit: pools(|p| p.missing_at_commit),
            rejected,
            cpu_cores: w.cpu_cores.clone(),
            args,
        }
    }
}

// ----- output -------------------------------------------------------------------------------

const CSV_HEADER: &str = "nodes,tx_bytes,fsync,offered_tx_s,generated_tx_s,committed_tx_s,\
committed_mb_s,p50_ms,p90_ms,p99_ms,max_ms,blocks_s,txs_per_block,round_timeouts,\
timeouts_per_replica,tc_rounds,pool_dropped_tx_s,net_dropped_frames,persist_p50_us,\
persist_p99_us,window_s,cpu_cores";

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
}

impl Summary {
    fn cpu_total(&self) -> f64 {
        self.cpu_cores.iter().map(|(_, c)| c).sum()
    }

    fn cpu_line(&self) -> String {
        let parts: Vec<String> = self
            .cpu_cores
            .iter()
            .map(|(role, c)| format!("{role} {c:.2}"))
            .collect();
        format!(
            "  CPU in the window: {:.2} cores ({})",
            self.cpu_total(),
            parts.join(", ")
        )
    }

    fn line(&self) -> String {
        let a = &self.args;
        format!(
            "consensus-only n={} tx={}B fsync={} offered={}/s{}: committed {:.0} tx/s ({:.2} MB/s) | \
             latency p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms | {:.1} blocks/s, {:.0} tx/block | \
             round timeouts {} ({}), TC rounds {} | generated {:.0}/s, pool-dropped {:.0}/s, \
             net-dropped {} | persist p50 {} p99 {} µs",
            a.nodes,
            a.tx_bytes,
            if a.fsync { "on" } else { "off" },
            a.rate_tx_s,
            a.clock_drift_ms_max
                .map_or(String::new(), |ms| format!(" DRIFT-BOUND={ms}ms (diagnostic)")),
            self.committed_tx_s,
            self.committed_tx_s * a.tx_bytes as f64 / 1e6,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.blocks_s,
            self.txs_per_block,
            self.timeouts.iter().sum::<u64>(),
            join(&self.timeouts),
            self.tc_rounds.iter().sum::<u64>(),
            self.offered_tx_s,
            self.dropped_tx_s,
            self.net_dropped,
            self.persist_p50_us,
            self.persist_p99_us,
        )
    }

    fn csv_row(&self) -> String {
        let a = &self.args;
        format!(
            "{},{},{},{},{:.0},{:.0},{:.3},{:.2},{:.2},{:.2},{:.2},{:.1},{:.1},{},{},{},{:.0},{},{},{},{:.0},{:.2}",
            a.nodes,
            a.tx_bytes,
            a.fsync,
            a.rate_tx_s,
            self.offered_tx_s,
            self.committed_tx_s,
            self.committed_tx_s * a.tx_bytes as f64 / 1e6,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.blocks_s,
            self.txs_per_block,
            self.timeouts.iter().sum::<u64>(),
            join(&self.timeouts),
            self.tc_rounds.iter().sum::<u64>(),
            self.dropped_tx_s,
            self.net_dropped,
            self.persist_p50_us,
            self.persist_p99_us,
            self.window_s,
            self.cpu_total(),
        )
    }
}

fn append_csv(path: &str, row: &str) -> std::io::Result<()> {
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if fresh {
        writeln!(f, "{CSV_HEADER}")?;
    }
    writeln!(f, "{row}")
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "consensus-only: {} replicas, {} tx/s of {} B, warm-up {:?}, window {:?}, fsync {}",
        args.nodes, args.rate_tx_s, args.tx_bytes, args.warmup, args.duration, args.fsync
    );
    let summary = match run(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("consensus-only: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", summary.line());
    println!("{}", summary.cpu_line());
    if summary.inbound_dropped + summary.malformed + summary.refused_batches + summary.vetoed_blocks
        > 0
    {
        println!(
            "  anomalies: inbound queue full {}, malformed frames {}, peer batches refused {}, \
             blocks vetoed {}",
            summary.inbound_dropped,
            summary.malformed,
            summary.refused_batches,
            summary.vetoed_blocks
        );
    }
    println!(
        "  whole run: round timeouts {}, committed digests not yet received {}, messages the \
         core dropped {:?}",
        summary.timeouts_whole_run, summary.missing_at_commit, summary.rejected
    );
    if let Some(path) = &summary.args.csv {
        if let Err(e) = append_csv(path, &summary.csv_row()) {
            eprintln!("consensus-only: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}
