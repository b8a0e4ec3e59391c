//! Prometheus metrics of one replica, served on the admin listener's `/metrics`.
//!
//! Names follow Prometheus conventions (`notary_` prefix, base units, `_total`, `_seconds`,
//! `_bytes`); every label takes values from a closed set (a replica id, an outcome kind, a
//! stage), never a transaction id. `deploy/` (dashboard, alerts) queries exactly these names;
//! a test scrapes a running replica and compares.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use notary_core::{BlockRecord, BlockWrite, DecisionRecord, Store, StoreError};
use notary_types::{ClusterSignature, Height, StateRef, TxId};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// `{reason=...}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A closed set of reasons.
    pub reason: &'static str,
}

/// `{peer=...}` — a replica id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The replica id as a decimal string.
    pub peer: String,
}

/// `{outcome=...}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// A closed set: outcome kinds and error codes.
    pub outcome: &'static str,
}

/// `{check=...}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabel {
    /// `checked`, `attested`, `fallback` or `late`.
    pub check: &'static str,
}

/// `{write=...}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    /// `block` (a block's decisions, record and applied height, one batch) or `safety_record`
    /// (consensus's vote record, before a vote leaves).
    pub write: &'static str,
}

/// `{stage=...}`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `share`, `combine` or `verify`.
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the replica.
pub struct Metrics {
    registry: Registry,
    /// Highest committed height.
    pub committed_height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// 1 when this replica leads the current round.
    pub is_leader: Gauge,
    /// 1 when a quorum (2f+1 including us) is connected.
    pub has_quorum: Gauge,
    /// Round changes by reason (`qc`, `tc`, `timeout`).
    pub round_changes: Family<ReasonLabel, Counter>,
    /// Blocks committed.
    pub blocks_committed: Counter,
    /// From a block's timestamp to its commit here.
    pub commit_latency: Histogram,
    /// Time spent in each round.
    pub round_duration: Histogram,
    /// Peers connected now.
    pub peers_connected: Gauge,
    /// 1 per connected peer.
    pub peer_up: Family<PeerLabel, Gauge>,
    /// Round-trip time per peer.
    pub peer_rtt: Family<PeerLabel, FloatGauge>,
    /// Bytes sent per peer.
    pub peer_sent_bytes: Family<PeerLabel, Counter>,
    /// Bytes received per peer.
    pub peer_received_bytes: Family<PeerLabel, Counter>,
    /// Frames and connections refused, by reason.
    pub frames_rejected: Family<ReasonLabel, Counter>,
    /// Client requests by outcome or error code.
    pub requests: Family<OutcomeLabel, Counter>,
    /// POST /v1/notarise inside the replica, end to end: from its head being read off the
    /// connection to its answer.
    pub request_duration: Histogram,
    /// How long a POST /v1/notarise waited, once read off its connection, for its handler
    /// to run (the replica's async workers busy).
    pub request_queue: Histogram,
    /// Requests admitted and not yet answered.
    pub requests_in_flight: Gauge,
    /// The adaptive admission limit (`admission.rs`): beyond it, `overloaded`.
    pub admission_limit: Gauge,
    /// Requests per sealed batch.
    pub batch_size: Histogram,
    /// Peers' batches by how this replica came to trust them (`attest.rs`): `checked` (in
    /// full, as a checker), `attested` (f + 1 attestations, signatures not verified here),
    /// `fallback` (in full, because attestations did not come in time), `late` (in full, on
    /// the consensus thread, because a proposal carried it before it was trusted here).
    pub peer_batches: Family<CheckLabel, Counter>,
    /// Threshold-signature work per stage.
    pub signing_duration: Family<StageLabel, Histogram>,
    /// Synced writes, by what is written (timed around the store call alone: [`TimedStore`]).
    pub fsync_duration: Family<WriteLabel, Histogram>,
    /// Size of the database on disk.
    pub db_size_bytes: Gauge,
    /// TLS certificate expiry per peer (unix seconds).
    pub tls_cert_expiry: Family<PeerLabel, Gauge>,
    /// Equivocations detected, by the replica that equivocated.
    pub equivocations: Family<PeerLabel, Counter>,
    /// 1 once a local storage fault made this replica stop signing.
    pub signing_halted: Gauge,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms .. ~65 s, doubling.
    exponential_buckets(0.0005, 2.0, 18)
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("notary");
        let info = Info::new(VersionLabel {
            version: env!("CARGO_PKG_VERSION"),
        });
        registry.register("build", "Build information", info);
        let m = Self {
            committed_height: Gauge::default(),
            round: Gauge::default(),
            is_leader: Gauge::default(),
            has_quorum: Gauge::default(),
            round_changes: Family::default(),
            blocks_committed: Counter::default(),
            commit_latency: Histogram::new(latency_buckets()),
            round_duration: Histogram::new(latency_buckets()),
            peers_connected: Gauge::default(),
            peer_up: Family::default(),
            peer_rtt: Family::default(),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            frames_rejected: Family::default(),
            requests: Family::default(),
            request_duration: Histogram::new(latency_buckets()),
            request_queue: Histogram::new(latency_buckets()),
            requests_in_flight: Gauge::default(),
            admission_limit: Gauge::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            peer_batches: Family::default(),
            signing_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            fsync_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            db_size_bytes: Gauge::default(),
            tls_cert_expiry: Family::default(),
            equivocations: Family::default(),
            signing_halted: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "committed_height",
            "Highest committed block height",
            m.committed_height.clone(),
        );
        r.register(
            "consensus_round",
            "Current consensus round",
            m.round.clone(),
        );
        r.register(
            "is_leader",
            "1 when this replica leads the current round",
            m.is_leader.clone(),
        );
        r.register(
            "has_quorum",
            "1 when 2f+1 replicas (us included) are connected",
            m.has_quorum.clone(),
        );
        r.register(
            "round_changes",
            "Round changes by reason",
            m.round_changes.clone(),
        );
        r.register(
            "blocks_committed",
            "Blocks committed",
            m.blocks_committed.clone(),
        );
        r.register(
            "commit_latency_seconds",
            "From a block's timestamp to its commit here",
            m.commit_latency.clone(),
        );
        r.register(
            "round_duration_seconds",
            "Time spent in each round",
            m.round_duration.clone(),
        );
        r.register(
            "peers_connected",
            "Peers connected now",
            m.peers_connected.clone(),
        );
        r.register("peer_up", "1 per connected peer", m.peer_up.clone());
        r.register(
            "peer_rtt_seconds",
            "Round-trip time per peer",
            m.peer_rtt.clone(),
        );
        r.register(
            "peer_sent_bytes",
            "Bytes sent per peer",
            m.peer_sent_bytes.clone(),
        );
        r.register(
            "peer_received_bytes",
            "Bytes received per peer",
            m.peer_received_bytes.clone(),
        );
        r.register(
            "frames_rejected",
            "Frames and connections refused, by reason",
            m.frames_rejected.clone(),
        );
        r.register(
            "peer_batches",
            "Peers' batches by how they came to be trusted (checked, attested, fallback, late)",
            m.peer_batches.clone(),
        );
        r.register(
            "requests",
            "Client requests by outcome or error code",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "POST /v1/notarise inside the replica",
            m.request_duration.clone(),
        );
        r.register(
            "request_queue_seconds",
            "POST /v1/notarise: wait between arriving and its handler running",
            m.request_queue.clone(),
        );
        r.register(
            "requests_in_flight",
            "Requests admitted and not yet answered",
            m.requests_in_flight.clone(),
        );
        r.register(
            "admission_limit",
            "Adaptive admission limit: requests in flight beyond it are answered overloaded",
            m.admission_limit.clone(),
        );
        r.register(
            "batch_size_requests",
            "Requests per sealed batch",
            m.batch_size.clone(),
        );
        r.register(
            "signing_duration_seconds",
            "Threshold-signature work per stage",
            m.signing_duration.clone(),
        );
        r.register(
            "fsync_duration_seconds",
            "Synced writes by what is written: block or safety_record",
            m.fsync_duration.clone(),
        );
        r.register(
            "db_size_bytes",
            "Size of the database on disk",
            m.db_size_bytes.clone(),
        );
        r.register(
            "tls_cert_expiry_timestamp_seconds",
            "TLS certificate expiry per peer",
            m.tls_cert_expiry.clone(),
        );
        r.register(
            "equivocations",
            "Equivocations detected, by the replica that equivocated",
            m.equivocations.clone(),
        );
        r.register(
            "signing_halted",
            "1 once a local storage fault made this replica stop signing",
            m.signing_halted.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one request outcome.
    pub fn count_request(&self, outcome: &'static str) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Records a signing stage's duration.
    pub fn observe_signing(&self, stage: &'static str, seconds: f64) {
        self.signing_duration
            .get_or_create(&StageLabel { stage })
            .observe(seconds);
    }

    /// Advances a cumulative counter to `total` (sources such as the transport keep their
    /// own running totals; a counter never goes down).
    pub fn advance(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The replica's [`Store`], with its two synced writes timed into
/// `notary_fsync_duration_seconds{write=...}`: `apply_block` as `block`, `save_safety_record`
/// as `safety_record`. Only the store call is timed, so the figure is the write and its sync
/// (including any wait behind the other kind of write), not the deciding before it.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    block: Histogram,
    safety_record: Histogram,
}

impl TimedStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: &Metrics) -> Self {
        let timer = |write| {
            metrics
                .fsync_duration
                .get_or_create(&WriteLabel { write })
                .clone()
        };
        Self {
            inner,
            block: timer("block"),
            safety_record: timer("safety_record"),
        }
    }

    fn timed<T>(histogram: &Histogram, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        histogram.observe(t.elapsed().as_secs_f64());
        out
    }
}

impl Store for TimedStore {
    fn applied_height(&self) -> Result<Height, StoreError> {
        self.inner.applied_height()
    }
    fn consumed_by(&self, state: &StateRef) -> Result<Option<TxId>, StoreError> {
        self.inner.consumed_by(state)
    }
    fn decision(&self, tx_id: &TxId) -> Result<Option<DecisionRecord>, StoreError> {
        self.inner.decision(tx_id)
    }
    fn apply_block(&self, write: &BlockWrite) -> Result<(), StoreError> {
        Self::timed(&self.block, || self.inner.apply_block(write))
    }
    fn block(&self, height: Height) -> Result<Option<BlockRecord>, StoreError> {
        self.inner.block(height)
    }
    fn header(&self, height: Height) -> Result<Option<notary_types::BlockHeader>, StoreError> {
        self.inner.header(height)
    }
    fn put_certificate(
        &self,
        height: Height,
        signature: &ClusterSignature,
    ) -> Result<(), StoreError> {
        self.inner.put_certificate(height, signature)
    }
    fn certificate(&self, height: Height) -> Result<Option<ClusterSignature>, StoreError> {
        self.inner.certificate(height)
    }
    fn save_safety_record(&self, bytes: &[u8]) -> Result<(), StoreError> {
        Self::timed(&self.safety_record, || self.inner.save_safety_record(bytes))
    }
    fn load_safety_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.load_safety_record()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_names_follow_conventions() {
        let m = Metrics::new();
        let timed = TimedStore::new(Arc::new(notary_core::MemStore::default()), &m);
        timed.save_safety_record(b"record").unwrap();
        assert_eq!(
            timed.load_safety_record().unwrap().as_deref(),
            Some(&b"record"[..])
        );
        m.count_request("committed");
        m.observe_signing("share", 0.001);
        m.round_changes
            .get_or_create(&ReasonLabel { reason: "qc" })
            .inc();
        let text = m.encode();
        for name in [
            "notary_build_info",
            "notary_committed_height",
            "notary_requests_total{outcome=\"committed\"}",
            "notary_round_changes_total{reason=\"qc\"}",
            "notary_signing_duration_seconds_bucket",
            "notary_fsync_duration_seconds_count{write=\"block\"} 0",
            "notary_fsync_duration_seconds_count{write=\"safety_record\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn advance_never_goes_backwards() {
        let c = Counter::<u64>::default();
        Metrics::advance(&c, 10);
        Metrics::advance(&c, 7);
        assert_eq!(c.get(), 10);
    }
}
