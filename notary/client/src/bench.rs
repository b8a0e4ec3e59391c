//! `notary bench`: a load generator that measures the cluster, not itself.
//!
//! **Open loop** (`--rate R`): request `i` is due at `start + i / R` and is sent at that time
//! whether or not earlier requests have been answered, so queueing in the cluster shows up as
//! latency instead of silently slowing the generator down (the coordinated-omission trap of
//! closed loops). Latency is measured from the request's *scheduled* time. The generator itself
//! is bounded: at most `--in-flight-max` requests are outstanding; a request due while the cap
//! is reached is not sent and is counted as `not_sent` (reported, never hidden).
//! Like the client library, the open-loop generator **throttles itself** per replica when that
//! replica answers `overloaded` ([`crate::throttle`]): it then sends about `--throttle-k` times
//! what the replica accepts and refuses the rest itself, counted as `throttled` (reported,
//! never hidden). Unlike the library, it does not then try the next replica: a request's
//! replica is fixed by its index, so that the offered load stays spread evenly.
//! `--no-throttle` sends everything, to measure what a flood of clients that ignore
//! `overloaded` costs the cluster. The closed loop never throttles: it cannot offer more than
//! its `--concurrency`.
//! **Closed loop** (`--concurrency N`): N workers each send one request at a time, to find the
//! saturation throughput.
//!
//! Invariants:
//! - every request is signed **before** the clock starts (ed25519 signing costs ~20-40 µs, on the
//!   same two cores as the cluster), so the run spends no CPU on signing;
//! - every certified answer is **verified** before its latency is recorded: transaction id,
//!   request digest, cluster id, the Merkle inclusion proof, the header chain, and the cluster's
//!   BLS signature over its last header, exactly the checks of [`NotarisationAnswer::verify`].
//!   The BLS pairing check (~1.2 ms) is done once per distinct (signed header, signature) and
//!   shared by the answers of the blocks it covers; the per-answer checks are never skipped;
//! - only requests scheduled inside the measured window (after the warm-up) enter the figures.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use notary_types::blsttc::PublicKey;
use notary_types::ed25519_dalek::SigningKey;
use notary_types::{
    BlockHeader, ClusterId, ClusterSignature, NotarisationAnswer, NotarisationRequest, Outcome,
    RequestDigest, RequestFields, RequesterKey, StateRef, TxId,
};
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

/// Distinct verified block certificates remembered before the cache is cleared.
const CERT_CACHE_ENTRIES_MAX: usize = 100_000;
/// How far back (in requests) a conflicting transaction reaches for an input to double-spend.
const CONFLICT_WINDOW_REQUESTS: usize = 256;
/// Requests signed per second of run in closed-loop mode when `--prepare` is not given.
const CLOSED_LOOP_PREPARE_PER_S: u64 = 15_000;

/// What can stop a benchmark before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not make a run.
    #[error("{0}")]
    Config(String),
    /// A ledger node key could not be read.
    #[error("{path}: {message}")]
    Key {
        /// The key file or directory.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Writing the CSV or building the runtime failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Arguments of `notary bench` (the replica URLs and cluster key come from the global flags).
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Open loop: offered load in requests per second.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: this many requests outstanding at all times.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Measured duration, after the warm-up (`60s`, `500ms`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measured window (its samples are written to the CSV, not counted).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Ledger node keys: a directory of `*.key` files (`notaryd testnet` writes DIR/clients),
    /// or one key file. The requesters must be permitted by the cluster.
    #[arg(long)]
    pub keys: PathBuf,
    /// Share of transactions that double-spend an input of a recent earlier transaction.
    #[arg(long, default_value_t = 0.0)]
    pub conflict_ratio: f64,
    /// Inputs per transaction.
    #[arg(long, default_value_t = 1)]
    pub inputs: usize,
    /// The generator's own cap on outstanding requests (open loop).
    #[arg(long, default_value_t = 8192)]
    pub in_flight_max: usize,
    /// Timeout of one HTTP call (the replica answers `pending` after its `answer_timeout`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Do not retry on another replica when one refuses the connection or says `unavailable`
    /// (by default the generator fails over, as the client library does).
    #[arg(long)]
    pub no_failover: bool,
    /// Requests to sign ahead in closed-loop mode (default: 15,000 per second of run).
    #[arg(long)]
    pub prepare: Option<usize>,
    /// Seed of the workload (default: random, printed; a fresh seed means fresh transactions).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write every sample here: send time, latency, outcome, replica.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// A replica's admin base URL (e.g. http://127.0.0.1:7200); repeat. Round-change
    /// timeouts are read from each one's /metrics before and after the measured window.
    #[arg(long = "admin", value_delimiter = ',')]
    pub admin_urls: Vec<String>,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Client-side throttling (open loop): per replica, send at most about K times the
    /// requests it accepted over the last second once it answers `overloaded` (see the client
    /// library). K below 1 counts as 1; a value that is not a finite number as the default.
    #[arg(long, default_value_t = crate::throttle::DEFAULT_K)]
    pub throttle_k: f64,
    /// Send every request whatever the replicas answer (clients that ignore `overloaded`).
    #[arg(long)]
    pub no_throttle: bool,
}

/// Parses `60s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit_s) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 60s, 500ms or 2m"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{text:?} is not a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(v * unit_s))
}

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Requests sent on a fixed schedule at this many per second.
    Open {
        /// Requests per second.
        rate_per_s: f64,
    },
    /// This many requests outstanding at all times.
    Closed {
        /// Outstanding requests.
        concurrency: usize,
    },
}

/// What transactions to generate.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The cluster the requests are for.
    pub cluster_id: ClusterId,
    /// The simulated ledger nodes; request `i` is signed by `keys[i % keys.len()]`.
    pub keys: Vec<SigningKey>,
    /// Inputs per transaction (≥ 1).
    pub inputs: usize,
    /// Share of transactions that reuse an input of a recent earlier one, in `[0, 1]`.
    pub conflict_ratio: f64,
    /// Seed: the workload is a pure function of it.
    pub seed: u64,
}

/// A request signed ahead, with what verifying its answer needs.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The JSON body.
    pub body: Bytes,
    /// The transaction id.
    pub tx_id: TxId,
    /// The digest the answer's leaf must bind.
    pub digest: RequestDigest,
    /// Whether this transaction was built to double-spend.
    pub conflicting: bool,
}

fn mix(seed: u64, i: u64, domain: u64) -> u64 {
    // SplitMix64's finaliser over the three words: distinct (seed, i, domain) give
    // independent-looking RNG seeds.
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ domain.wrapping_mul(0xD6E8_FEB8);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_id(seed: u64, i: u64, domain: u64) -> TxId {
    let mut bytes = [0u8; 32];
    rand::rngs::StdRng::seed_from_u64(mix(seed, i, domain)).fill_bytes(&mut bytes);
    TxId(bytes)
}

impl Workload {
    /// The fields of request `i`: fresh inputs (outputs of a made-up earlier transaction), one
    /// of them replaced, for a conflicting transaction, by input 0 of one of the previous
    /// `CONFLICT_WINDOW_REQUESTS` requests.
    pub fn fields(&self, i: u64) -> (RequestFields, bool) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(self.seed, i, 3));
        let source = random_id(self.seed, i, 1);
        let mut inputs: Vec<StateRef> = (0..self.inputs.max(1) as u32)
            .map(|index| StateRef {
                tx_id: source,
                index,
            })
            .collect();
        let conflicting = self.is_conflicting(i);
        if conflicting {
            let back = rng.gen_range(1..=(i as usize).min(CONFLICT_WINDOW_REQUESTS)) as u64;
            // Steal from a transaction that spends its own input 0, so the pair really
            // conflicts (request 0 never conflicts, so the walk ends).
            let mut victim = i - back;
            while self.is_conflicting(victim) {
                victim -= 1;
            }
            inputs[0] = StateRef {
                tx_id: random_id(self.seed, victim, 1),
                index: 0,
            };
        }
        let key = &self.keys[(i as usize) % self.keys.len()];
        let mut fields = RequestFields {
            cluster_id: self.cluster_id.clone(),
            tx_id: random_id(self.seed, i, 2),
            inputs,
            references: Vec::new(),
            time_window: None,
            requester: RequesterKey(key.verifying_key().to_bytes()),
        };
        fields.normalise();
        (fields, conflicting)
    }

    /// Whether request `i` double-spends (request 0 never does).
    pub fn is_conflicting(&self, i: u64) -> bool {
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(self.seed, i, 4));
        i > 0 && rng.gen::<f64>() < self.conflict_ratio
    }

    /// Signs requests `0..count` on `threads` threads.
    pub fn prepare(&self, count: usize, threads: usize) -> Vec<Prepared> {
        let threads = threads.max(1);
        let chunk = count.div_ceil(threads).max(1);
        let mut out: Vec<Prepared> = Vec::with_capacity(count);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|from| {
                    let to = (from + chunk).min(count);
                    s.spawn(move || {
                        (from..to)
                            .map(|i| self.prepare_one(i as u64))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                out.extend(h.join().expect("a signing thread does not panic"));
            }
        });
        out
    }

    fn prepare_one(&self, i: u64) -> Prepared {
        let (fields, conflicting) = self.fields(i);
        let key = &self.keys[(i as usize) % self.keys.len()];
        let digest = fields.digest();
        let tx_id = fields.tx_id;
        let request = NotarisationRequest::sign(fields, key);
        let body = serde_json::to_vec(&request).expect("a request always encodes as JSON");
        Prepared {
            body: Bytes::from(body),
            tx_id,
            digest,
            conflicting,
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Certified and accepted.
    Committed,
    /// Certified conflict (an input or reference already consumed).
    Conflict,
    /// Another certified rejection (time window, transaction id reused).
    Rejected,
    /// 503 `overloaded`.
    Overloaded,
    /// 503 `unavailable` (after fail-over, if enabled).
    Unavailable,
    /// 202 `pending`: the replica's answer timeout passed.
    Pending,
    /// The HTTP call timed out on the generator's side.
    Timeout,
    /// No connection (after fail-over, if enabled).
    ConnectError,
    /// Any other error code (non-retryable refusal).
    Refused,
    /// An answer whose certificate does not verify, or that is not the API's JSON.
    Invalid,
    /// Not sent: the generator's in-flight cap was reached at its scheduled time.
    NotSent,
    /// Not sent: refused by the generator's own throttling, because the replica has been
    /// answering `overloaded` (the client library does the same).
    Throttled,
}

impl Kind {
    /// Whether the cluster answered with a verified certificate.
    pub fn is_certified(self) -> bool {
        matches!(self, Kind::Committed | Kind::Conflict | Kind::Rejected)
    }

    /// The CSV / JSON label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Committed => "committed",
            Kind::Conflict => "conflict",
            Kind::Rejected => "rejected",
            Kind::Overloaded => "overloaded",
            Kind::Unavailable => "unavailable",
            Kind::Pending => "pending",
            Kind::Timeout => "timeout",
            Kind::ConnectError => "connect_error",
            Kind::Refused => "refused",
            Kind::Invalid => "invalid",
            Kind::NotSent => "not_sent",
            Kind::Throttled => "throttled",
        }
    }
}

/// One request's record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Scheduled (open loop) or actual (closed loop) send time, from the run's start.
    pub send_us: u64,
    /// From the send time to the verified answer (or the error).
    pub latency_us: u64,
    /// How it ended.
    pub kind: Kind,
    /// The index of the replica that answered last (the URL list's order).
    pub replica: u16,
    /// Whether it was scheduled inside the measured window.
    pub measured: bool,
}

/// Latency percentiles in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The mean.
    pub mean_ms: f64,
}

/// The `p`-th percentile (0 < p ≤ 100) of ascending `sorted` by nearest rank: the smallest
/// value with at least p % of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Percentiles {
    /// The percentiles of latencies in microseconds (sorted here).
    pub fn of(mut latencies_us: Vec<u64>) -> Self {
        latencies_us.sort_unstable();
        let ms = |p: f64| percentile(&latencies_us, p).unwrap_or(0) as f64 / 1000.0;
        let mean_ms = if latencies_us.is_empty() {
            0.0
        } else {
            latencies_us.iter().sum::<u64>() as f64 / latencies_us.len() as f64 / 1000.0
        };
        Self {
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
            mean_ms,
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `open` or `closed`.
    pub mode: &'static str,
    /// Offered requests per second (open loop).
    pub offered_per_s: Option<f64>,
    /// Outstanding requests (closed loop).
    pub concurrency: Option<usize>,
    /// The measured window in seconds.
    pub duration_s: f64,
    /// Requests scheduled in the window (sent or not).
    pub scheduled: u64,
    /// Verified certified answers per second (any outcome).
    pub certified_per_s: f64,
    /// Verified acceptances per second.
    pub committed_per_s: f64,
    /// End-to-end latency of certified answers, verification included.
    pub latency: Percentiles,
    /// Requests per outcome.
    pub outcomes: BTreeMap<Kind, u64>,
    /// Error answers per error code (`overloaded`, `unavailable`, `pending`, ...).
    pub error_codes: BTreeMap<String, u64>,
    /// Requests not sent because the generator's in-flight cap was reached.
    pub in_flight_cap_hits: u64,
    /// The generator's in-flight cap.
    pub in_flight_max: usize,
    /// Attempts moved to another replica (refused connection or `unavailable`).
    pub failovers: u64,
    /// Transactions built to conflict.
    pub conflicting_sent: u64,
    /// Requests per replica (by the replica that answered).
    pub per_replica: Vec<u64>,
    /// CPU the generator used in the window, in % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// Round changes by timeout over the window, summed over the `--admin` replicas.
    pub round_timeouts: Option<u64>,
    /// The workload seed.
    pub seed: u64,
}

/// Summarises the samples of the measured window.
pub fn summarise(samples: &[Sample], window: Duration, replicas: usize) -> Summary {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.measured).collect();
    let mut outcomes: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut per_replica = vec![0u64; replicas];
    let mut latencies = Vec::with_capacity(measured.len());
    for s in &measured {
        *outcomes.entry(s.kind).or_default() += 1;
        if s.kind.is_certified() {
            latencies.push(s.latency_us);
        }
        if !matches!(s.kind, Kind::NotSent | Kind::Throttled) {
            if let Some(c) = per_replica.get_mut(usize::from(s.replica)) {
                *c += 1;
            }
        }
    }
    let secs = window.as_secs_f64().max(1e-9);
    let certified = latencies.len() as f64;
    let committed = outcomes.get(&Kind::Committed).copied().unwrap_or(0) as f64;
    Summary {
        scheduled: measured.len() as u64,
        certified_per_s: certified / secs,
        committed_per_s: committed / secs,
        latency: Percentiles::of(latencies),
        outcomes,
        per_replica,
    }
}

/// What [`summarise`] computes from the samples alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Requests scheduled in the window.
    pub scheduled: u64,
    /// Certified answers per second.
    pub certified_per_s: f64,
    /// Acceptances per second.
    pub committed_per_s: f64,
    /// Latency of certified answers.
    pub latency: Percentiles,
    /// Requests per outcome.
    pub outcomes: BTreeMap<Kind, u64>,
    /// Requests per answering replica.
    pub per_replica: Vec<u64>,
}

/// One block certificate's pairing check, done by the first answer that carries it.
type CertCheck = Arc<tokio::sync::OnceCell<bool>>;

/// Verifies answers, sharing the BLS check among the answers of one block.
struct Verifier {
    key: PublicKey,
    cluster_id: ClusterId,
    certs: Mutex<HashMap<(BlockHeader, ClusterSignature), CertCheck>>,
}

impl Verifier {
    /// The checks of [`NotarisationAnswer::verify`], the pairing done once per certificate.
    async fn verify(&self, p: &Prepared, a: &NotarisationAnswer) -> bool {
        if a.leaf.tx_id != p.tx_id
            || a.leaf.request_digest != p.digest
            || a.header.cluster_id != self.cluster_id
            || a.verify_inclusion().is_err()
        {
            return false;
        }
        let Ok(signed) = a.signed_header() else {
            return false;
        };
        let cell = {
            let mut certs = self
                .certs
                .lock()
                .expect("no thread panics holding the lock");
            if certs.len() >= CERT_CACHE_ENTRIES_MAX {
                certs.clear();
            }
            certs
                .entry((signed.clone(), a.signature))
                .or_default()
                .clone()
        };
        *cell
            .get_or_init(|| async { signed.verify(&self.key, &a.signature).is_ok() })
            .await
    }
}

struct Shared {
    urls: Vec<String>,
    http: reqwest::Client,
    verifier: Verifier,
    requests: Vec<Prepared>,
    failover: bool,
    failovers: AtomicU64,
    throttle: Option<crate::throttle::Throttle>,
    error_codes: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<Vec<Sample>>,
    start: Instant,
    warmup: Duration,
    window_end: Duration,
    progress: ProgressBar,
}

#[derive(serde::Deserialize)]
struct ErrorEnvelope {
    error: ErrorCode,
}

#[derive(serde::Deserialize)]
struct ErrorCode {
    code: String,
}

impl Shared {
    fn count_code(&self, code: &str) {
        *self
            .error_codes
            .lock()
            .expect("no thread panics holding the lock")
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// One attempt at replica `r`: `Ok(kind)` is final, `Err(kind)` may fail over.
    async fn attempt(&self, p: &Prepared, r: usize) -> Result<Kind, Kind> {
        let resp = self
            .http
            .post(format!("{}/v1/notarise", self.urls[r]))
            .header("content-type", "application/json")
            .body(p.body.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => {
                self.count_code("client_timeout");
                return Ok(Kind::Timeout);
            }
            Err(_) => {
                self.count_code("connect_error");
                return Err(Kind::ConnectError);
            }
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => {
                self.count_code("client_timeout");
                return Ok(Kind::Timeout);
            }
            Err(_) => {
                self.count_code("connect_error");
                return Err(Kind::ConnectError);
            }
        };
        if matches!(status, 200 | 409 | 422) {
            let Ok(answer) = serde_json::from_slice::<NotarisationAnswer>(&body) else {
                self.count_code("not_an_answer");
                return Ok(Kind::Invalid);
            };
            if !self.verifier.verify(p, &answer).await {
                self.count_code("certificate_invalid");
                return Ok(Kind::Invalid);
            }
            return Ok(match answer.leaf.outcome {
                Outcome::Committed => Kind::Committed,
                Outcome::InputsConsumed { .. } | Outcome::ReferencesConsumed { .. } => {
                    Kind::Conflict
                }
                _ => Kind::Rejected,
            });
        }
        let code = serde_json::from_slice::<ErrorEnvelope>(&body)
            .map(|e| e.error.code)
            .unwrap_or_else(|_| format!("http_{status}"));
        self.count_code(&code);
        match code.as_str() {
            "overloaded" => Ok(Kind::Overloaded),
            "pending" => Ok(Kind::Pending),
            "unavailable" => Err(Kind::Unavailable),
            _ if status >= 500 => Err(Kind::Unavailable),
            _ => Ok(Kind::Refused),
        }
    }

    /// Sends request `i`, failing over when allowed; records its sample.
    async fn run_one(&self, i: usize, sent_at: Instant) {
        let p = &self.requests[i];
        let n = self.urls.len();
        let mut r = i % n;
        let mut kind = Kind::ConnectError;
        for tried in 0..n {
            if let Some(t) = &self.throttle {
                if !t.allow(r, Instant::now()) {
                    kind = Kind::Throttled;
                    break;
                }
            }
            let attempt = self.attempt(p, r).await;
            if let Some(t) = &self.throttle {
                // As the client library counts: `overloaded` is a refusal, a certified answer
                // or a final refusal (malformed, ...) is an acceptance, and the rest (no
                // connection, a timeout, `unavailable`, `pending`) says nothing of the load.
                match attempt {
                    Ok(Kind::Overloaded) => t.record(r, false, Instant::now()),
                    Ok(Kind::Timeout | Kind::Pending) | Err(_) => {}
                    Ok(_) => t.record(r, true, Instant::now()),
                }
            }
            match attempt {
                Ok(k) => {
                    kind = k;
                    break;
                }
                Err(k) => {
                    kind = k;
                    if !self.failover || tried + 1 == n {
                        break;
                    }
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                    r = (r + 1) % n;
                }
            }
        }
        self.record(sent_at, sent_at.elapsed(), kind, r);
        self.progress.inc(1);
    }

    fn record(&self, sent_at: Instant, latency: Duration, kind: Kind, replica: usize) {
        let send = sent_at.saturating_duration_since(self.start);
        let sample = Sample {
            send_us: send.as_micros() as u64,
            latency_us: latency.as_micros() as u64,
            kind,
            replica: replica as u16,
            measured: send >= self.warmup && send < self.window_end,
        };
        self.samples
            .lock()
            .expect("no thread panics holding the lock")
            .push(sample);
    }
}

/// Everything one run needs.
pub struct BenchConfig {
    /// Replica API base URLs; request `i` goes first to `urls[i % n]`.
    pub urls: Vec<String>,
    /// The cluster key every certificate is verified against.
    pub key: PublicKey,
    /// The workload.
    pub workload: Workload,
    /// Open or closed loop.
    pub load: Load,
    /// Warm-up before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// The generator's cap on outstanding requests (open loop).
    pub in_flight_max: usize,
    /// Timeout of one HTTP call.
    pub call_timeout: Duration,
    /// Retry on another replica after a refused connection or `unavailable`.
    pub failover: bool,
    /// Client-side throttling multiplier K, or `None` to send everything.
    pub throttle_k: Option<f64>,
    /// Requests to sign ahead in closed-loop mode.
    pub prepare: Option<usize>,
    /// Admin base URLs to read round-change timeouts from.
    pub admin_urls: Vec<String>,
    /// Runtime worker threads.
    pub threads: usize,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

/// A finished run: the report and every sample.
pub struct Run {
    /// The figures.
    pub report: Report,
    /// Every sample, warm-up included, in completion order.
    pub samples: Vec<Sample>,
}

fn cpu_seconds() -> Option<f64> {
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised command name) are user and
    // system time in clock ticks; USER_HZ is 100 on every Linux ABI we run on.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Sums `notary_round_changes_total{reason="timeout"}` over the admin endpoints.
async fn round_timeouts(http: &reqwest::Client, admin_urls: &[String]) -> Option<u64> {
    if admin_urls.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for url in admin_urls {
        let text = http
            .get(format!("{}/metrics", url.trim_end_matches('/')))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        total += parse_round_timeouts(&text);
    }
    Some(total)
}

/// The value of `notary_round_changes_total{reason="timeout"}` in a Prometheus text page (0
/// when absent: no timeout yet).
pub fn parse_round_timeouts(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("notary_round_changes_total{") && l.contains("reason=\"timeout\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Runs one benchmark on its own multi-threaded runtime (call it from a plain thread, not from
/// inside another runtime).
pub fn run(config: BenchConfig) -> Result<Run, BenchError> {
    if config.urls.is_empty() {
        return Err(BenchError::Config("no replica URL".into()));
    }
    if config.workload.keys.is_empty() {
        return Err(BenchError::Config("no ledger node key".into()));
    }
    if !(0.0..=1.0).contains(&config.workload.conflict_ratio) {
        return Err(BenchError::Config(format!(
            "--conflict-ratio {} is not in [0, 1]",
            config.workload.conflict_ratio
        )));
    }
    let total = config.warmup + config.duration;
    let count = match config.load {
        Load::Open { rate_per_s } if rate_per_s > 0.0 && rate_per_s.is_finite() => {
            (rate_per_s * total.as_secs_f64()).ceil() as usize
        }
        Load::Open { rate_per_s } => {
            return Err(BenchError::Config(format!(
                "--rate {rate_per_s} is not a positive rate"
            )))
        }
        Load::Closed { concurrency: 0 } => {
            return Err(BenchError::Config("--concurrency 0 sends nothing".into()))
        }
        Load::Closed { .. } => config
            .prepare
            .unwrap_or((CLOSED_LOOP_PREPARE_PER_S * total.as_secs().max(1)) as usize),
    };
    let threads = config.threads.max(1);
    let signing = Instant::now();
    let requests = config.workload.prepare(count, threads);
    eprintln!(
        "notary bench: signed {count} requests ahead in {:.1} s (seed {})",
        signing.elapsed().as_secs_f64(),
        config.workload.seed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            context: "cannot build the runtime".into(),
            source,
        })?;
    runtime.block_on(drive(config, requests))
}

async fn drive(config: BenchConfig, requests: Vec<Prepared>) -> Result<Run, BenchError> {
    let http = reqwest::Client::builder()
        .timeout(config.call_timeout)
        .http2_prior_knowledge()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError::Config(format!("cannot build the HTTP client: {e}")))?;
    let conflicting_sent = requests.iter().filter(|p| p.conflicting).count() as u64;
    let count = requests.len() as u64;
    let progress = if config.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} answered ({per_sec}) {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let timeouts_before = round_timeouts(&http, &config.admin_urls).await;
    let start = Instant::now() + Duration::from_millis(20);
    let shared = Arc::new(Shared {
        urls: config
            .urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect(),
        http: http.clone(),
        verifier: Verifier {
            key: config.key,
            cluster_id: config.workload.cluster_id.clone(),
            certs: Mutex::new(HashMap::new()),
        },
        requests,
        failover: config.failover,
        failovers: AtomicU64::new(0),
        throttle: match config.load {
            Load::Open { .. } => config
                .throttle_k
                .map(|k| crate::throttle::Throttle::new(config.urls.len(), k, start)),
            Load::Closed { .. } => None,
        },
        error_codes: Mutex::new(BTreeMap::new()),
        samples: Mutex::new(Vec::with_capacity(count as usize)),
        start,
        warmup: config.warmup,
        window_end: config.warmup + config.duration,
        progress: progress.clone(),
    });
    let window_start = start + config.warmup;
    let window_end = window_start + config.duration;
    // Measure the generator's CPU over the window from a separate task.
    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        let c0 = cpu_seconds();
        tokio::time::sleep_until(window_end.into()).await;
        let c1 = cpu_seconds();
        c0.zip(c1).map(|(a, b)| b - a)
    });
    let metrics_probe = {
        let http = http.clone();
        let admin = config.admin_urls.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window_end.into()).await;
            round_timeouts(&http, &admin).await
        })
    };
    let cap_hits = match config.load {
        Load::Open { rate_per_s } => open_loop(&shared, rate_per_s, config.in_flight_max).await,
        Load::Closed { concurrency } => {
            closed_loop(&shared, concurrency, window_end).await;
            0
        }
    };
    progress.finish_and_clear();
    let cpu = cpu_probe.await.ok().flatten();
    let timeouts_after = metrics_probe.await.ok().flatten();
    let samples = std::mem::take(
        &mut *shared
            .samples
            .lock()
            .expect("no thread panics holding the lock"),
    );
    let summary = summarise(&samples, config.duration, shared.urls.len());
    let report = Report {
        mode: match config.load {
            Load::Open { .. } => "open",
            Load::Closed { .. } => "closed",
        },
        offered_per_s: match config.load {
            Load::Open { rate_per_s } => Some(rate_per_s),
            Load::Closed { .. } => None,
        },
        concurrency: match config.load {
            Load::Closed { concurrency } => Some(concurrency),
            Load::Open { .. } => None,
        },
        duration_s: config.duration.as_secs_f64(),
        scheduled: summary.scheduled,
        certified_per_s: summary.certified_per_s,
        committed_per_s: summary.committed_per_s,
        latency: summary.latency,
        outcomes: summary.outcomes,
        error_codes: shared
            .error_codes
            .lock()
            .expect("no thread panics holding the lock")
            .clone(),
        in_flight_cap_hits: cap_hits,
        in_flight_max: config.in_flight_max,
        failovers: shared.failovers.load(Ordering::Relaxed),
        conflicting_sent,
        per_replica: summary.per_replica,
        generator_cpu_percent: cpu.map(|c| 100.0 * c / config.duration.as_secs_f64().max(1e-9)),
        round_timeouts: timeouts_before
            .zip(timeouts_after)
            .map(|(a, b)| b.saturating_sub(a)),
        seed: config.workload.seed,
    };
    Ok(Run { report, samples })
}

/// Sends every request at its scheduled time; returns how many the in-flight cap held back.
async fn open_loop(shared: &Arc<Shared>, rate_per_s: f64, in_flight_max: usize) -> u64 {
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight_max.max(1)));
    let mut cap_hits = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let interval_s = 1.0 / rate_per_s;
    let count = shared.requests.len();
    let mut i = 0usize;
    while i < count {
        // Send everything due now (the timer's resolution is ~1 ms, so at 10 k/s each wake-up
        // sends about ten), then sleep until the next one is due.
        let now = Instant::now();
        while i < count {
            let due = shared.start + Duration::from_secs_f64(i as f64 * interval_s);
            if due > now {
                tokio::time::sleep_until(due.into()).await;
                break;
            }
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let s = shared.clone();
                    tasks.spawn(async move {
                        s.run_one(i, due).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    cap_hits += 1;
                    shared.record(due, Duration::ZERO, Kind::NotSent, i % shared.urls.len());
                    shared.progress.inc(1);
                }
            }
            i += 1;
        }
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    cap_hits
}

/// `concurrency` workers, each with one request outstanding, until the window ends.
async fn closed_loop(shared: &Arc<Shared>, concurrency: usize, window_end: Instant) {
    tokio::time::sleep_until(shared.start.into()).await;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let s = shared.clone();
        let next = next.clone();
        tasks.spawn(async move {
            while Instant::now() < window_end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= s.requests.len() {
                    break;
                }
                s.run_one(i, Instant::now()).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    if next.load(Ordering::Relaxed) >= shared.requests.len() {
        eprintln!(
            "notary bench: all {} prepared requests were used before the window ended; \
             give a larger --prepare",
            shared.requests.len()
        );
    }
}

/// Reads the ledger node keys: every `*.key` file of a directory, or one file.
pub fn read_keys(path: &Path) -> Result<Vec<SigningKey>, BenchError> {
    let err = |p: &Path, message: String| BenchError::Key {
        path: p.to_owned(),
        message,
    };
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| err(path, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "key"))
            .collect()
    } else {
        vec![path.to_owned()]
    };
    files.sort();
    if files.is_empty() {
        return Err(err(path, "no *.key file here".into()));
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| err(f, e.to_string()))?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| err(f, "not a 64-hex-character key".into()))?;
            Ok(SigningKey::from_bytes(&seed))
        })
        .collect()
}

/// Writes the samples as CSV: `send_s,latency_ms,outcome,replica,measured`.
pub fn write_csv(path: &Path, samples: &[Sample]) -> Result<(), BenchError> {
    use std::io::Write;
    let io = |source| BenchError::Io {
        context: format!("cannot write {}", path.display()),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "send_s,latency_ms,outcome,replica,measured").map_err(io)?;
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.send_us);
    for s in sorted {
        writeln!(
            w,
            "{:.6},{:.3},{},{},{}",
            s.send_us as f64 / 1e6,
            s.latency_us as f64 / 1e3,
            s.kind.label(),
            s.replica,
            u8::from(s.measured)
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Prints a report for people.
pub fn print_report(r: &Report) {
    match (r.offered_per_s, r.concurrency) {
        (Some(rate), _) => println!("open loop at {rate:.0} req/s for {:.0} s", r.duration_s),
        (_, Some(c)) => println!("closed loop, {c} outstanding, for {:.0} s", r.duration_s),
        _ => {}
    }
    println!(
        "throughput   {:.0} certified answers/s ({:.0} accepted/s)",
        r.certified_per_s, r.committed_per_s
    );
    let l = &r.latency;
    println!(
        "latency      p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (certificate verified)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    let outcomes: Vec<String> = r
        .outcomes
        .iter()
        .map(|(k, v)| format!("{} {v}", k.label()))
        .collect();
    println!("outcomes     {}", outcomes.join(", "));
    if !r.error_codes.is_empty() {
        let codes: Vec<String> = r
            .error_codes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "error codes  {} (all attempts, warm-up included)",
            codes.join(", ")
        );
    }
    println!(
        "per replica  {:?}; fail-overs {}",
        r.per_replica, r.failovers
    );
    if r.in_flight_cap_hits > 0 {
        println!(
            "GENERATOR CAP HIT: {} requests not sent (over {} in flight)",
            r.in_flight_cap_hits, r.in_flight_max
        );
    }
    if let Some(cpu) = r.generator_cpu_percent {
        println!("generator    {cpu:.0} % of one core");
    }
    if let Some(t) = r.round_timeouts {
        println!("round timeouts during the window: {t}");
    }
}

/// `notary bench`: builds the run from the arguments and the connected cluster, runs it on a
/// separate thread with its own runtime, prints the report (JSON when `json`), writes the CSV.
pub fn main(
    args: &BenchArgs,
    urls: Vec<String>,
    key: PublicKey,
    cluster_id: &str,
    json: bool,
) -> Result<Report, BenchError> {
    let load = match (args.rate, args.concurrency) {
        (Some(rate_per_s), None) => Load::Open { rate_per_s },
        (None, Some(concurrency)) => Load::Closed { concurrency },
        _ => {
            return Err(BenchError::Config(
                "give --rate R (open loop) or --concurrency N (closed loop)".into(),
            ))
        }
    };
    if args.inputs == 0 {
        return Err(BenchError::Config("--inputs must be at least 1".into()));
    }
    let cluster_id = ClusterId::new(cluster_id)
        .map_err(|e| BenchError::Config(format!("cluster id {cluster_id:?}: {e}")))?;
    let config = BenchConfig {
        urls,
        key,
        workload: Workload {
            cluster_id,
            keys: read_keys(&args.keys)?,
            inputs: args.inputs,
            conflict_ratio: args.conflict_ratio,
            seed: args.seed.unwrap_or_else(|| rand::rngs::OsRng.gen()),
        },
        load,
        warmup: args.warmup,
        duration: args.duration,
        in_flight_max: args.in_flight_max,
        call_timeout: args.call_timeout,
        failover: !args.no_failover,
        throttle_k: (!args.no_throttle).then_some(args.throttle_k),
        prepare: args.prepare,
        admin_urls: args.admin_urls.clone(),
        threads: args.threads,
        progress: !json,
    };
    let run = std::thread::spawn(move || run(config))
        .join()
        .map_err(|_| BenchError::Config("the benchmark thread panicked".into()))??;
    if let Some(path) = &args.csv {
        write_csv(path, &run.samples)?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&run.report).expect("a report encodes as JSON")
        );
    } else {
        print_report(&run.report);
    }
    Ok(run.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(send_ms: u64, latency_ms: u64, kind: Kind, measured: bool) -> Sample {
        Sample {
            send_us: send_ms * 1000,
            latency_us: latency_ms * 1000,
            kind,
            replica: (send_ms % 4) as u16,
            measured,
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 1.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // Three values: p50 is the second, p99 the third.
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 99.0), Some(3));
    }

    #[test]
    fn percentiles_sort_and_convert_to_ms() {
        let p = Percentiles::of(vec![4000, 1000, 3000, 2000]);
        assert_eq!(p.p50_ms, 2.0);
        assert_eq!(p.p90_ms, 4.0);
        assert_eq!(p.max_ms, 4.0);
        assert_eq!(p.mean_ms, 2.5);
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn summary_counts_only_the_window_and_latency_only_of_certified_answers() {
        let samples = vec![
            sample(0, 500, Kind::Committed, false), // warm-up: ignored
            sample(1000, 10, Kind::Committed, true),
            sample(1001, 20, Kind::Conflict, true),
            sample(1002, 30, Kind::Rejected, true),
            sample(1003, 1, Kind::Overloaded, true), // fast refusal: no latency
            sample(1004, 0, Kind::NotSent, true),
            sample(1005, 0, Kind::Throttled, true),
        ];
        let s = summarise(&samples, Duration::from_secs(2), 4);
        assert_eq!(s.scheduled, 6);
        assert_eq!(s.certified_per_s, 1.5);
        assert_eq!(s.committed_per_s, 0.5);
        assert_eq!(s.latency.p50_ms, 20.0);
        assert_eq!(s.latency.max_ms, 30.0);
        assert_eq!(s.outcomes[&Kind::Overloaded], 1);
        assert_eq!(s.outcomes[&Kind::NotSent], 1);
        assert_eq!(s.outcomes[&Kind::Throttled], 1);
        assert!(!s.outcomes.contains_key(&Kind::Timeout));
        // Not-sent and throttled requests reached no replica.
        assert_eq!(s.per_replica.iter().sum::<u64>(), 4);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn round_timeouts_are_read_from_the_metrics_page() {
        let page = "# HELP notary_round_changes_total Round changes by reason\n\
                    notary_round_changes_total{reason=\"qc\"} 1200\n\
                    notary_round_changes_total{reason=\"timeout\"} 3\n";
        assert_eq!(parse_round_timeouts(page), 3);
        assert_eq!(parse_round_timeouts("notary_build_info 1\n"), 0);
    }

    fn workload(conflict_ratio: f64, inputs: usize) -> Workload {
        Workload {
            cluster_id: ClusterId::new("wooden-dollars").expect("a valid id"),
            keys: vec![
                SigningKey::from_bytes(&[1; 32]),
                SigningKey::from_bytes(&[2; 32]),
            ],
            inputs,
            conflict_ratio,
            seed: 42,
        }
    }

    #[test]
    fn workload_is_deterministic_signed_and_well_formed() {
        let w = workload(0.0, 3);
        let a = w.prepare(50, 3);
        let b = w.prepare(50, 1);
        assert_eq!(a.len(), 50);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.body, y.body, "the workload is a function of the seed");
        }
        for p in &a {
            let r: NotarisationRequest = serde_json::from_slice(&p.body).expect("valid JSON");
            assert_eq!(r.fields.inputs.len(), 3);
            assert_eq!(r.fields.digest(), p.digest);
            r.fields.check_well_formed().expect("well formed");
            assert!(!p.conflicting);
        }
        let ids: std::collections::HashSet<_> = a.iter().map(|p| p.tx_id).collect();
        assert_eq!(ids.len(), 50, "transaction ids are unique");
    }

    #[test]
    fn conflicting_transactions_reuse_a_recent_input() {
        let w = workload(1.0, 2);
        let n = 300u64;
        let firsts: std::collections::HashSet<StateRef> = (0..n)
            .map(|i| StateRef {
                tx_id: random_id(42, i, 1),
                index: 0,
            })
            .collect();
        for i in 1..n {
            let (fields, conflicting) = w.fields(i);
            assert!(conflicting);
            let own = StateRef {
                tx_id: random_id(42, i, 1),
                index: 0,
            };
            let stolen: Vec<_> = fields
                .inputs
                .iter()
                .filter(|s| firsts.contains(s) && **s != own)
                .collect();
            assert_eq!(
                stolen.len(),
                1,
                "request {i} double-spends one earlier input"
            );
        }
        let none = workload(0.25, 1);
        let share = (1..2000).filter(|&i| none.fields(i).1).count() as f64 / 1999.0;
        assert!((0.2..0.3).contains(&share), "conflict share {share}");
    }
}
