//! `notaryd start`: wires storage, transport, consensus, the executor and the HTTP listeners
//! into one replica, and takes it down again on SIGTERM/SIGINT.
//!
//! Threads and tasks:
//! * the **consensus thread** ([`crate::driver`]) owns the HotStuff core and the mempool;
//! * the **executor thread** ([`crate::executor`]) applies, signs and certifies blocks;
//! * tokio tasks: the client API, the admin listener, the **batcher** (seals admitted
//!   requests into batches by count or delay and disseminates them) and the **inbound
//!   router** (decodes peers' frames, verifies consensus signatures and batches off the
//!   consensus thread, and routes them).
//!
//! Shutdown: stop admitting requests, stop the listeners, stop the driver (the in-flight
//! batch is abandoned without acknowledgement), let the executor finish the block it is
//! writing (a block write is atomic anyway), close the transport, exit 0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use notary_consensus::{Committee as ConsensusCommittee, Recovery, Replica, ReplicaId};
use notary_core::{ClusterPolicy, Committee, Store, VerifiedRequest};
use notary_net::{Fingerprint, Identity, Member as NetMember, NetConfig, QuicTransport, Transport};
use notary_types::{ClusterId, NotarisationRequest, RequesterKey};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::admission::{Admission, Bounds};
use crate::attest::{Attestations, Verdict};
use crate::config::Config;
use crate::driver::{decode_committed, decode_safety, ConsensusView, Driver, DriverInput};
use crate::executor::{ExecInput, ExecView, Executor};
use crate::keys::{self, BlsShareFile};
use crate::mempool::{check_attested_batch, check_whole_batch, BatchError, CheckedBatch, Mempool};
use crate::metrics::{CheckLabel, Metrics, PeerLabel, ReasonLabel, TimedStore};
use crate::state::{Node, Waiters};
use crate::wire::{self, Batch, PeerMessage};

/// Queue of verified consensus messages and batches into the consensus thread.
const DRIVER_QUEUE_MAX: usize = 16_384;
/// Committed blocks waiting for the executor (consensus blocks when it is this far ahead).
const EXEC_QUEUE_MAX: usize = 256;

/// Sets up logging: JSON lines when stderr is not a terminal, text when it is; `RUST_LOG`
/// sets per-module levels (default `info`).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Runs the replica until SIGTERM/SIGINT.
pub fn run(config: Config) -> Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("notaryd")
        .build()
        .context("cannot start the async runtime")?;
    // Every log line of the replica's tasks carries its id (the threads enter their own span).
    let span = tracing::info_span!("replica", replica = config.node.id);
    runtime.block_on(tracing::Instrument::instrument(run_async(config), span))
}

fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let dir = config.home.data_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let store = notary_rocksdb::RocksStore::open(&dir)
        .with_context(|| format!("cannot open the database in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// The transport configuration of this replica, from its home and the cluster file.
pub fn net_config(config: &Config) -> Result<NetConfig> {
    let home = &config.home;
    let cert = std::fs::read(home.tls_cert())
        .with_context(|| format!("cannot read {}", home.tls_cert().display()))?;
    let key = notary_net::keyfile::read_private(&home.tls_key())?;
    let identity = Identity::from_pem(&cert, &key).context("keys/tls.crt + keys/tls.key")?;
    let members = config
        .cluster
        .members
        .iter()
        .map(|m| {
            Ok(NetMember {
                id: ReplicaId(m.id),
                addr: m.peer_address.clone(),
                fingerprint: Fingerprint::from_hex(&m.tls_fingerprint)
                    .with_context(|| format!("member {}: tls_fingerprint", m.id))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut seed = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let mut limits = notary_net::Limits::default();
    // A block payload (2 MiB at most) plus framing, well inside the frame limit.
    limits.frame_bytes_max = limits.frame_bytes_max.max(8 << 20);
    Ok(NetConfig {
        me: ReplicaId(config.node.id),
        listen: config.node.listen.peer,
        cluster_id: config.cluster.cluster_id.clone(),
        protocol_version: crate::config::PROTOCOL_VERSION,
        identity,
        members,
        limits,
        timing: notary_net::Timing::default(),
        rng_seed: u64::from_le_bytes(seed),
    })
}

fn consensus_committee(config: &Config) -> Result<ConsensusCommittee> {
    let members = config
        .cluster
        .members
        .iter()
        .map(|m| {
            let bytes: [u8; 32] = hex::decode(&m.consensus_key)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("member {}: consensus_key is not 32 bytes", m.id))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .with_context(|| format!("member {}: consensus_key", m.id))?;
            Ok((ReplicaId(m.id), key))
        })
        .collect::<Result<Vec<_>>>()?;
    ConsensusCommittee::new(members).map_err(|e| anyhow::anyhow!("committee: {e}"))
}

fn policy(config: &Config) -> Result<ClusterPolicy> {
    let cluster_id = ClusterId::new(&config.cluster.cluster_id)
        .map_err(|e| anyhow::anyhow!("cluster_id: {e}"))?;
    let keys = config
        .cluster
        .ledger_nodes
        .iter()
        .map(|l| {
            let bytes: [u8; 32] = hex::decode(&l.key)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("ledger node {}: key is not 32 bytes", l.name))?;
            Ok(RequesterKey(bytes))
        })
        .collect::<Result<Vec<_>>>()?;
    ClusterPolicy::new(cluster_id, keys).map_err(|e| anyhow::anyhow!("ledger_nodes: {e}"))
}

async fn run_async(config: Config) -> Result<()> {
    crate::setup::check_keys(&config)?;
    let me = ReplicaId(config.node.id);
    let key_set = keys::public_key_set(&config.cluster)?;
    let share = BlsShareFile::read(&config.home.bls_share())?;
    share.check_against(&key_set, config.node.id, config.cluster.development)?;
    let share_key = share.secret()?;
    let vote_key = keys::read_consensus_key(&config.home.consensus_key())?;
    let policy = Arc::new(policy(&config)?);
    let committee = consensus_committee(&config)?;
    let metrics = Arc::new(Metrics::new());

    let store: Arc<dyn Store> = Arc::new(TimedStore::new(open_store(&config)?, &metrics));
    let recovery = Recovery {
        history: recent_committed_blocks(&*store)?,
        safety: store
            .load_safety_record()?
            .map(|b| decode_safety(&b))
            .transpose()
            .context("the stored safety record does not decode")?,
        committed: {
            let applied = store.applied_height()?;
            if applied.0 == 0 {
                None
            } else {
                let record = store
                    .block(applied)?
                    .with_context(|| format!("applied block {} is missing", applied.0))?;
                Some(
                    decode_committed(&record.consensus_bytes)
                        .context("the stored committed block does not decode")?,
                )
            }
        },
    };
    let resumed_at = recovery
        .committed
        .as_ref()
        .map_or(0, |c| c.block.height().0);
    let mut cconfig = notary_consensus::Config::new(me);
    let t = &config.node.consensus;
    cconfig.round_timeout_ms = t.round_timeout.as_millis() as u64;
    cconfig.round_timeout_ms_max = t.round_timeout_max.as_millis() as u64;
    cconfig.max_clock_drift_ms = t.max_clock_drift.as_millis() as u64;
    cconfig.payload_bytes_max = notary_consensus::limits::PAYLOAD_BYTES_MAX;
    let replica = Replica::new(cconfig, committee.clone(), vote_key, recovery)
        .map_err(|e| anyhow::anyhow!("consensus configuration: {e}"))?;

    let (transport, inbound) = QuicTransport::start(net_config(&config)?)
        .await
        .context("cannot start the replica transport")?;
    let transport = Arc::new(transport);

    let (driver_tx, driver_rx) = sync_channel::<DriverInput>(DRIVER_QUEUE_MAX);
    let (exec_tx, exec_rx) = sync_channel::<ExecInput>(EXEC_QUEUE_MAX);
    let (exec_view_tx, exec_view_rx) = watch::channel(ExecView::default());
    let (batch_tx, batch_rx) =
        mpsc::channel::<NotarisationRequest>(config.node.batch.max_pending_requests.max(1));
    let consensus_view = Arc::new(Mutex::new(ConsensusView::default()));
    let exec_halted = Arc::new(Mutex::new(None));
    let waiters = Arc::new(Waiters::default());
    let cluster_id =
        ClusterId::new(&config.cluster.cluster_id).map_err(|e| anyhow::anyhow!("{e}"))?;

    let node = Arc::new(Node {
        config: config.clone(),
        cluster_id: cluster_id.clone(),
        policy: policy.clone(),
        keys: key_set.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        waiters: waiters.clone(),
        admission: Admission::new(
            Bounds {
                max_total: config.node.batch.max_pending_requests,
                max_per_requester: config.node.batch.max_pending_per_requester,
                target: config.node.batch.max_queue_delay,
            },
            std::time::Instant::now(),
        ),
        consensus: consensus_view.clone(),
        exec: exec_view_rx,
        exec_halted: exec_halted.clone(),
        stopping: AtomicBool::new(false),
        transport: transport.clone(),
        batcher: batch_tx,
    });
    init_metric_labels(&node);

    let executor = Executor {
        me,
        cluster_id,
        store: store.clone(),
        transport: transport.clone(),
        keys: key_set,
        share_key,
        committee: Committee::new(config.n() as u16).map_err(|e| anyhow::anyhow!("{e}"))?,
        sign_interval: config.node.batch.sign_interval,
        rx: exec_rx,
        waiters,
        metrics: metrics.clone(),
        view: exec_view_tx,
        halted: exec_halted,
    };
    let exec_thread = std::thread::Builder::new()
        .name("executor".into())
        .spawn(move || {
            let _span = tracing::info_span!("executor", replica = me.0).entered();
            executor.run()
        })?;
    let committed_height = replica.committed().height().0;
    let driver = Driver {
        replica,
        mempool: Mempool::new(policy.clone()).paced_by(
            node.exec.clone(),
            config.node.batch.pipeline_blocks,
            committed_height,
        ),
        rx: driver_rx,
        exec: exec_tx.clone(),
        store,
        transport: transport.clone(),
        metrics: metrics.clone(),
        view: consensus_view,
    };
    let driver_thread = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || {
            let _span = tracing::info_span!("consensus", replica = me.0).entered();
            driver.run()
        })?;

    tokio::spawn(inbound_router(
        inbound,
        committee,
        Peers {
            me,
            policy: policy.clone(),
            transport: transport.clone(),
            driver: driver_tx.clone(),
            exec: exec_tx.clone(),
            metrics: metrics.clone(),
        },
    ));
    let sealer = Arc::new(Sealer {
        policy: policy.clone(),
        transport: transport.clone(),
        driver: driver_tx.clone(),
        metrics: metrics.clone(),
        waiters: node.waiters.clone(),
    });
    tokio::spawn(batcher(
        batch_rx,
        config.node.batch.max_requests,
        config.node.batch.max_delay,
        sealer,
    ));

    let api = bind(config.node.listen.api, "listen.api").await?;
    let admin = bind(config.node.listen.admin, "listen.admin").await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let api_server = tokio::spawn(crate::listen::serve(
        api,
        crate::api::router(node.clone()),
        stop_rx.clone(),
    ));
    let admin_server = tokio::spawn(crate::listen::serve(
        admin,
        crate::admin::router(node.clone()),
        stop_rx,
    ));
    tracing::info!(
        replica = me.0,
        api = %config.node.listen.api,
        admin = %config.node.listen.admin,
        peer = %config.node.listen.peer,
        resumed_at_height = resumed_at,
        "replica started"
    );
    crate::notify::ready();

    wait_for_signal().await;
    tracing::info!("stopping: no new requests; finishing the block being written");
    crate::notify::stopping();
    node.stopping.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = driver_tx.send(DriverInput::Stop);
    let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    let _ = exec_tx.send(ExecInput::Stop);
    let _ = tokio::task::spawn_blocking(move || exec_thread.join()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), api_server).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), admin_server).await;
    drop(node);
    if let Ok(t) = Arc::try_unwrap(transport) {
        t.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The committed blocks before the last applied one, oldest first (for leader reputation,
/// which reads the recent committed history; see `notary_consensus::Recovery::history`).
fn recent_committed_blocks(store: &dyn Store) -> Result<Vec<notary_consensus::Block>> {
    let applied = store.applied_height()?.0;
    let first = applied
        .saturating_sub(notary_consensus::reputation::HISTORY_BLOCKS_MAX as u64)
        .max(1);
    let mut blocks = Vec::new();
    for h in first..applied {
        let Some(record) = store.block(notary_types::Height(h))? else {
            continue;
        };
        let committed = decode_committed(&record.consensus_bytes)
            .with_context(|| format!("stored committed block {h} does not decode"))?;
        blocks.push(committed.block);
    }
    Ok(blocks)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what} {addr}: cannot listen"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Creates every closed-set label at zero, so dashboards and `increase()` alerts see the
/// series before the first event.
fn init_metric_labels(node: &Node) {
    let m = &node.metrics;
    for outcome in [
        "committed",
        "conflict",
        "time_window_invalid",
        "tx_id_reused",
        "malformed",
        "bad_signature",
        "not_permitted",
        "unknown_cluster",
        "too_large",
        "overloaded",
        "unavailable",
        "pending",
    ] {
        let _ = m
            .requests
            .get_or_create(&crate::metrics::OutcomeLabel { outcome });
    }
    for reason in ["qc", "tc", "timeout"] {
        let _ = m.round_changes.get_or_create(&ReasonLabel { reason });
    }
    for check in ["checked", "attested", "fallback", "late"] {
        let _ = m.peer_batches.get_or_create(&CheckLabel { check });
    }
    for stage in ["share", "combine", "verify"] {
        let _ = m
            .signing_duration
            .get_or_create(&crate::metrics::StageLabel { stage });
    }
    for (reason, _) in node.transport.stats().rejected {
        let _ = m.frames_rejected.get_or_create(&ReasonLabel {
            reason: reason.label(),
        });
    }
    for reason in ["invalid_share", "undecodable", "bad_consensus", "bad_batch"] {
        let _ = m.frames_rejected.get_or_create(&ReasonLabel { reason });
    }
    for member in &node.config.cluster.members {
        if member.id == node.config.node.id {
            continue;
        }
        let peer = PeerLabel {
            peer: member.id.to_string(),
        };
        let _ = m.peer_up.get_or_create(&peer);
        let _ = m.peer_rtt.get_or_create(&peer);
        let _ = m.peer_sent_bytes.get_or_create(&peer);
        let _ = m.peer_received_bytes.get_or_create(&peer);
        let _ = m.equivocations.get_or_create(&peer);
        let _ = m.tls_cert_expiry.get_or_create(&peer);
    }
}

fn reject(metrics: &Metrics, reason: &'static str) {
    metrics
        .frames_rejected
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// What the inbound router hands peers' messages to.
struct Peers {
    me: ReplicaId,
    policy: Arc<ClusterPolicy>,
    transport: Arc<QuicTransport>,
    driver: SyncSender<DriverInput>,
    exec: SyncSender<ExecInput>,
    metrics: Arc<Metrics>,
}

/// How often held batches are looked at for attestations that did not come (`attest.rs`).
const ATTEST_TICK: Duration = Duration::from_millis(10);

/// Decodes peers' frames and routes them; signature checks happen on blocking threads,
/// never on the consensus thread. Peers' batches are checked in full only where
/// `attest.rs` says so; the rest wait for f + 1 attestations.
async fn inbound_router(
    mut inbound: notary_net::Inbound,
    committee: ConsensusCommittee,
    peers: Peers,
) {
    let payload_max = notary_consensus::limits::PAYLOAD_BYTES_MAX;
    let peers = Arc::new(peers);
    let mut attest = Attestations::new(peers.me, committee.ids(), committee.max_faulty());
    let mut tick = tokio::time::interval(ATTEST_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (from, bytes) = tokio::select! {
            got = inbound.recv() => match got {
                Some(got) => got,
                None => break,
            },
            _ = tick.tick() => {
                let down = peers.transport.stats().peers.into_iter().filter(|p| !p.connected);
                attest.set_down(down.map(|p| p.id));
                for verdict in attest.tick(std::time::Instant::now()) {
                    trust_batch(&peers, None, verdict);
                }
                continue;
            }
        };
        let message = match wire::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "undecodable frame dropped");
                reject(&peers.metrics, "undecodable");
                continue;
            }
        };
        match message {
            PeerMessage::Consensus(m) => {
                let kind = m.kind();
                match m.verify(&committee, from, payload_max) {
                    Ok(v) => {
                        if let Err(TrySendError::Full(_)) =
                            peers.driver.try_send(DriverInput::Consensus(Box::new(v)))
                        {
                            tracing::warn!(peer = %from, kind, "consensus queue full: message dropped");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %from, kind, error = %e, "consensus message rejected");
                        reject(&peers.metrics, "bad_consensus");
                    }
                }
            }
            PeerMessage::Batch(batch) => {
                let verdict = attest.on_batch(from, batch, std::time::Instant::now());
                trust_batch(&peers, Some(from), verdict);
            }
            PeerMessage::BatchAck { digest } => {
                if let Some(verdict) = attest.on_ack(from, digest, std::time::Instant::now()) {
                    trust_batch(&peers, None, verdict);
                }
            }
            PeerMessage::Share { height, share } => {
                let _ = peers.exec.try_send(ExecInput::Share {
                    from,
                    height,
                    share,
                });
            }
            PeerMessage::Certificate { height, signature } => {
                let _ = peers.exec.try_send(ExecInput::Certificate {
                    from,
                    height,
                    signature,
                });
            }
        }
    }
}

/// Acts on an attestation verdict for a peer's batch (`origin`: the peer it came from, when
/// it is being checked on arrival): checks it on a blocking thread, in full or all but the
/// signatures, hands it to the mempool, and acks it to the other peers if they wait for it.
fn trust_batch(peers: &Arc<Peers>, origin: Option<ReplicaId>, verdict: Verdict) {
    let peers = peers.clone();
    match verdict {
        Verdict::Held => {}
        Verdict::CheckHere { batch, digest, ack } => {
            let label = if ack || origin.is_some() {
                "checked"
            } else {
                "fallback"
            };
            tokio::task::spawn_blocking(move || {
                let checked = check_whole_batch(&peers.policy, batch, digest);
                if ack && checked.is_ok() {
                    let bytes = Bytes::from(wire::encode(&PeerMessage::BatchAck { digest }));
                    for to in peers
                        .transport
                        .peers()
                        .into_iter()
                        .filter(|to| Some(*to) != origin)
                    {
                        let _ = peers.transport.send(to, bytes.clone());
                    }
                }
                hand_over(&peers, checked, label, origin);
            });
        }
        // No signatures to verify: done here, so that the batch reaches the mempool before
        // a proposal carrying it that arrives just after the ack (else a late check).
        Verdict::Attested { batch, digest } => {
            let checked = check_attested_batch(&peers.policy, batch, digest);
            hand_over(&peers, checked, "attested", origin);
        }
    }
}

/// Gives a checked peer batch to the mempool, counted by how it came to be trusted, or
/// counts and logs its refusal.
fn hand_over(
    peers: &Peers,
    checked: Result<CheckedBatch, BatchError>,
    check: &'static str,
    origin: Option<ReplicaId>,
) {
    match checked {
        Ok(b) => {
            count_batch(&peers.metrics, check);
            let _ = peers.driver.try_send(DriverInput::Batch(Arc::new(b)));
        }
        Err(e) => {
            tracing::warn!(peer = ?origin, check, error = %e, "batch rejected");
            reject(&peers.metrics, "bad_batch");
        }
    }
}

fn count_batch(metrics: &Metrics, check: &'static str) {
    metrics
        .peer_batches
        .get_or_create(&CheckLabel { check })
        .inc();
}

/// Where sealed batches go, and who hears of a refused request.
struct Sealer {
    policy: Arc<ClusterPolicy>,
    transport: Arc<QuicTransport>,
    driver: SyncSender<DriverInput>,
    metrics: Arc<Metrics>,
    waiters: Arc<Waiters>,
}

/// Seals admitted requests into batches (by count or by the oldest request's age) and
/// disseminates them: to every peer, and to this replica's own mempool.
async fn batcher(
    mut rx: mpsc::Receiver<NotarisationRequest>,
    max_requests: usize,
    max_delay: Duration,
    sealer: Arc<Sealer>,
) {
    let mut open: Vec<NotarisationRequest> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    loop {
        let item = if open.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(item) => item,
                Err(_) => {
                    seal(std::mem::take(&mut open), &sealer);
                    continue;
                }
            }
        };
        let Some(request) = item else { break };
        if open.is_empty() {
            deadline = tokio::time::Instant::now() + max_delay;
        }
        open.push(request);
        if open.len() >= max_requests {
            seal(std::mem::take(&mut open), &sealer);
        }
    }
}

/// Seals a batch on a blocking thread. Its signatures are verified here, as one batch: the
/// same check every peer runs on the batch (ed25519 batch and single verification may
/// disagree on crafted signatures, so a batch this replica proposes must pass exactly the
/// check its peers run, or a requester could have its blocks refused). A request that fails
/// is dropped and its client told why; the rest are disseminated.
fn seal(requests: Vec<NotarisationRequest>, sealer: &Arc<Sealer>) {
    let sealer = sealer.clone();
    tokio::task::spawn_blocking(move || {
        let digests: Vec<_> = requests
            .iter()
            .map(|r| (r.fields.tx_id, r.fields.digest()))
            .collect();
        let mut good = Vec::with_capacity(requests.len());
        for ((tx, digest), result) in digests
            .into_iter()
            .zip(notary_core::check_batch(&sealer.policy, requests))
        {
            match result {
                Ok(r) => good.push(r),
                Err(why) => sealer.waiters.reject(&tx, &digest, why),
            }
        }
        if !good.is_empty() {
            disseminate(good, &sealer.transport, &sealer.driver, &sealer.metrics);
        }
    });
}

fn disseminate(
    requests: Vec<VerifiedRequest>,
    transport: &QuicTransport,
    driver: &SyncSender<DriverInput>,
    metrics: &Metrics,
) {
    metrics.batch_size.observe(requests.len() as f64);
    let batch = Batch {
        requests: requests
            .iter()
            .map(|r| r.request().to_wire_bytes())
            .collect(),
    };
    let bytes = Bytes::from(wire::encode(&PeerMessage::Batch(batch.clone())));
    if let Err(e) = transport.broadcast(bytes) {
        tracing::warn!(error = %e, "batch not disseminated");
    }
    let checked = CheckedBatch {
        digest: batch.digest(),
        batch,
        requests,
    };
    if driver.send(DriverInput::Batch(Arc::new(checked))).is_err() {
        tracing::warn!("consensus thread gone: batch dropped");
    }
}
