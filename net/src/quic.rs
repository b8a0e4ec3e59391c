//! The QUIC transport: one quinn endpoint per replica, pinned mutual TLS, a hello exchange,
//! a dialer task per peer with back-off, and a reader task per accepted connection.
//!
//! Connection model: every replica dials every other replica and uses the connection it
//! opened **only to send**; what it receives arrives on connections peers opened to it. So
//! there is never a race over which of two simultaneous connections wins, and a peer that
//! restarts simply dials again while our dialer reconnects with back-off.
//!
//! On one connection the dialer opens one bidirectional stream, sends its [`Hello`], and waits
//! for the acceptor's hello; then it writes Message frames on that stream until the
//! connection dies. The acceptor checks the hello against the certificate (which pins the
//! replica id), closes the connection with [`RejectReason::close_code`] on any mismatch, and
//! otherwise answers with its own hello and reads frames.

use crate::config::{ConfigError, NetConfig, ALPN};
use crate::frame::{self, Frame, FrameError, Hello, ReadError, HELLO_BYTES_MAX};
use crate::identity::member_server_name;
use crate::queue::{Backoff, PeerQueue};
use crate::stats::{PeerCounters, RejectCounters, RejectReason, StatsSnapshot};
use crate::tls::{self, Pins};
use crate::{Inbound, SendError, Transport};
use bytes::{Bytes, BytesMut};
use notary_consensus::ReplicaId;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Concurrent inbound handshakes; more are refused at once (a cheap guard against floods).
const PENDING_HANDSHAKES_MAX: usize = 64;
/// Bytes gathered from a peer's queue into one stream write.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Read buffer of an inbound stream: small frames are parsed without a syscall each.
const READ_BUFFER_BYTES: usize = 64 << 10;
/// TLS alert `access_denied`: what our pinned verifier's refusals become (already counted).
const ALERT_ACCESS_DENIED: u8 = 49;
/// TLS alert `no_application_protocol`.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// The transport could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// rustls refused our certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC crypto configuration: {0}")]
    QuicCrypto(String),
    /// The socket could not be bound or used.
    #[error("socket {addr}: {source}")]
    Socket {
        /// The address.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// Why one dial attempt failed (logged by the dialer, which retries).
#[derive(Debug, Error)]
pub enum DialError {
    /// The peer's address did not resolve.
    #[error("address {addr} did not resolve: {detail}")]
    Resolve {
        /// The address.
        addr: String,
        /// Why.
        detail: String,
    },
    /// QUIC refused to start the connection.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
    /// The peer refused us, and said why.
    #[error("refused by the peer: {0}")]
    RefusedByPeer(RejectReason),
    /// We refused the peer's hello.
    #[error("refused the peer: {0}")]
    Refused(RejectReason),
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
    /// The hello exchange failed.
    #[error("hello: {0}")]
    Hello(String),
}

struct Peer {
    id: ReplicaId,
    addr: String,
    queue: PeerQueue,
    counters: PeerCounters,
    outbound: Mutex<Option<Connection>>,
    inbound: Mutex<Option<Connection>>,
}

struct Shared {
    me: ReplicaId,
    hello: Hello,
    config: NetConfig,
    peers: BTreeMap<ReplicaId, Peer>,
    rejects: Arc<RejectCounters>,
    pins: Arc<Pins>,
    inbound: mpsc::Sender<(ReplicaId, Bytes)>,
    own_not_after_unix: Option<i64>,
    handshakes: Semaphore,
}

/// The QUIC implementation of [`Transport`]. Dropping it stops every task and closes the
/// endpoint; [`QuicTransport::shutdown`] does the same and waits for the socket to be free.
pub struct QuicTransport {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("me", &self.shared.me)
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

fn transport_config(config: &NetConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.timing.idle_timeout)
        .unwrap_or_else(|_| VarInt::from_u32(30_000).into());
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.timing.keep_alive))
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        // Windows sized for a few maximal frames in flight on loopback and LAN links.
        .stream_receive_window(VarInt::from_u32(16 << 20))
        .receive_window(VarInt::from_u32(32 << 20))
        .send_window(32 << 20);
    Arc::new(t)
}

impl QuicTransport {
    /// Validates `config`, binds `config.listen` and starts.
    pub async fn start(config: NetConfig) -> Result<(Self, Inbound), StartError> {
        let socket =
            std::net::UdpSocket::bind(config.listen).map_err(|source| StartError::Socket {
                addr: config.listen.to_string(),
                source,
            })?;
        Self::start_on_socket(config, socket)
    }

    /// Starts on an already bound socket (tests bind port 0 first to learn every address).
    pub fn start_on_socket(
        config: NetConfig,
        socket: std::net::UdpSocket,
    ) -> Result<(Self, Inbound), StartError> {
        config.validate()?;
        let rejects = Arc::new(RejectCounters::default());
        let pins = Arc::new(Pins::new(&config, rejects.clone()));
        let client_tls = tls::client_config(&config.identity, pins.clone())?;
        let server_tls = tls::server_config(&config.identity, pins.clone())?;
        let quic_crypto = |e: &dyn std::fmt::Display| StartError::QuicCrypto(e.to_string());
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).map_err(|e| quic_crypto(&e))?,
        ));
        server.transport_config(transport_config(&config));
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).map_err(|e| quic_crypto(&e))?,
        ));
        client.transport_config(transport_config(&config));
        let local = socket.local_addr().ok();
        let mut endpoint = Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| StartError::Socket {
            addr: format!("{local:?}"),
            source,
        })?;
        endpoint.set_default_client_config(client);

        let (tx, rx) = mpsc::channel(config.limits.inbound_frames_max);
        let peers = config
            .members
            .iter()
            .filter(|m| m.id != config.me)
            .map(|m| {
                let peer = Peer {
                    id: m.id,
                    addr: m.addr.clone(),
                    queue: PeerQueue::new(
                        config.limits.queue_frames_max,
                        config.limits.queue_bytes_max,
                    ),
                    counters: PeerCounters::default(),
                    outbound: Mutex::new(None),
                    inbound: Mutex::new(None),
                };
                (m.id, peer)
            })
            .collect();
        let shared = Arc::new(Shared {
            me: config.me,
            hello: Hello {
                protocol_version: config.protocol_version,
                replica: config.me,
                cluster_id: config.cluster_id.clone(),
            },
            own_not_after_unix: config.identity.not_after_unix().ok(),
            peers,
            rejects,
            pins,
            inbound: tx,
            handshakes: Semaphore::new(PENDING_HANDSHAKES_MAX),
            config,
        });
        let mut tasks = vec![tokio::spawn(accept_loop(shared.clone(), endpoint.clone()))];
        for id in shared.peers.keys() {
            tasks.push(tokio::spawn(dial_loop(
                shared.clone(),
                endpoint.clone(),
                *id,
            )));
        }
        Ok((
            Self {
                shared,
                endpoint,
                tasks,
            },
            rx,
        ))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Stops all tasks, closes every connection and waits (at most a second) until the
    /// endpoint is idle, so the port can be bound again.
    pub async fn shutdown(mut self) {
        self.stop();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for peer in self.shared.peers.values() {
            for slot in [&peer.outbound, &peer.inbound] {
                if let Some(conn) = lock(slot).take() {
                    conn.close(VarInt::from_u32(0), b"shutdown");
                }
            }
        }
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("connection slot lock is never poisoned: nothing panics inside")
}

impl Transport for QuicTransport {
    fn local_id(&self) -> ReplicaId {
        self.shared.me
    }

    fn peers(&self) -> Vec<ReplicaId> {
        self.shared.peers.keys().copied().collect()
    }

    fn send(&self, to: ReplicaId, msg: Bytes) -> Result<(), SendError> {
        let max = self.shared.config.payload_bytes_max();
        if msg.len() > max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max,
            });
        }
        let peer = self.shared.peers.get(&to).ok_or(if to == self.shared.me {
            SendError::ToSelf
        } else {
            SendError::UnknownPeer { to }
        })?;
        let dropped = peer.queue.push(msg);
        if dropped > 0 {
            peer.counters
                .frames_dropped_queue_full
                .fetch_add(dropped, Relaxed);
        }
        Ok(())
    }

    fn stats(&self) -> StatsSnapshot {
        let peers = self
            .shared
            .peers
            .values()
            .map(|p| {
                if let Some(conn) = lock(&p.outbound).as_ref() {
                    p.counters
                        .rtt_us
                        .store(conn.rtt().as_micros().max(1) as u64, Relaxed);
                }
                p.counters.snapshot(p.id, p.queue.len())
            })
            .collect();
        StatsSnapshot {
            peers,
            rejected: self.shared.rejects.snapshot(),
            own_cert_not_after_unix: self.shared.own_not_after_unix,
        }
    }
}

/// Logs one refusal, counts it, and closes the connection telling the peer why.
fn refuse(shared: &Shared, conn: &Connection, reason: RejectReason, detail: &str) {
    shared.rejects.count(reason);
    tracing::warn!(me = %shared.me, remote = %conn.remote_address(), %reason, "refused connection: {detail}");
    conn.close(
        VarInt::from_u32(reason.close_code()),
        reason.label().as_bytes(),
    );
}

/// Checks a peer's hello against ours and the replica its certificate is pinned for.
fn check_hello(
    ours: &Hello,
    theirs: &Hello,
    certified: ReplicaId,
) -> Result<(), (RejectReason, String)> {
    if theirs.protocol_version != ours.protocol_version {
        return Err((
            RejectReason::WrongVersion,
            format!(
                "protocol version {} (ours is {})",
                theirs.protocol_version, ours.protocol_version
            ),
        ));
    }
    if theirs.cluster_id != ours.cluster_id {
        return Err((
            RejectReason::WrongCluster,
            format!(
                "cluster id {:?} (ours is {:?})",
                theirs.cluster_id, ours.cluster_id
            ),
        ));
    }
    if theirs.replica != certified {
        return Err((
            RejectReason::WrongReplica,
            format!(
                "hello claims replica {}, certificate is pinned for replica {certified}",
                theirs.replica
            ),
        ));
    }
    Ok(())
}

async fn read_hello(recv: &mut RecvStream) -> Result<Hello, String> {
    match frame::read_frame(recv, HELLO_BYTES_MAX).await {
        Ok(Some(body)) => match frame::decode(body) {
            Ok(Frame::Hello(hello)) => Ok(hello),
            Ok(Frame::Message { .. }) => Err("a message before the hello".into()),
            Err(e) => Err(e.to_string()),
        },
        Ok(None) => Err("stream ended before the hello".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn certified_replica(shared: &Shared, conn: &Connection) -> Option<ReplicaId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    shared.pins.replica_of(certs.first()?)
}

fn record_cert_expiry(shared: &Shared, conn: &Connection, peer: &Peer) {
    let not_after = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| {
            let cert = certs.first()?;
            crate::x509::parse_certificate(cert)
                .ok()
                .map(|i| i.not_after_unix)
        });
    if let Some(t) = not_after {
        peer.counters.cert_not_after_unix.store(t, Relaxed);
    }
    let _ = shared;
}

// ---------------------------------------------------------------- accepting

async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let shared_ref = &shared;
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = shared_ref.handshakes.try_acquire() else {
            tracing::warn!(me = %shared.me, remote = %incoming.remote_address(), "too many pending handshakes; refusing");
            incoming.refuse();
            continue;
        };
        permit.forget();
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = accept_handshake(&shared, incoming).await;
            shared.handshakes.add_permits(1);
            if let Some((conn, peer, send, recv)) = conn {
                serve_inbound(&shared, conn, peer, send, recv).await;
            }
        });
    }
}

/// Classifies a failed inbound TLS handshake that our verifier did not already count.
fn classify_handshake_error(err: &ConnectionError) -> Option<RejectReason> {
    match err {
        ConnectionError::TransportError(e)
            if e.code == quinn::TransportErrorCode::crypto(ALERT_ACCESS_DENIED) =>
        {
            None
        }
        ConnectionError::TransportError(e)
            if e.code == quinn::TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL) =>
        {
            Some(RejectReason::WrongAlpn)
        }
        _ => Some(RejectReason::HandshakeFailed),
    }
}

async fn accept_handshake(
    shared: &Shared,
    incoming: quinn::Incoming,
) -> Option<(Connection, ReplicaId, SendStream, RecvStream)> {
    let timeout = shared.config.timing.handshake_timeout;
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            if let Some(reason) = classify_handshake_error(&e) {
                shared.rejects.count(reason);
                tracing::warn!(me = %shared.me, %remote, %reason, "refused connection: TLS handshake failed: {e}");
            }
            return None;
        }
        Err(_) => {
            shared.rejects.count(RejectReason::HandshakeFailed);
            tracing::warn!(me = %shared.me, %remote, "refused connection: TLS handshake timed out");
            return None;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        let detail = format!(
            "ALPN {:?}, expected {:?}",
            alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
            String::from_utf8_lossy(ALPN)
        );
        refuse(shared, &conn, RejectReason::WrongAlpn, &detail);
        return None;
    }
    let Some(certified) = certified_replica(shared, &conn) else {
        refuse(
            shared,
            &conn,
            RejectReason::UnknownCertificate,
            "no pinned certificate after the handshake",
        );
        return None;
    };
    let hello = tokio::time::timeout(timeout, async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let hello = read_hello(&mut recv).await?;
        Ok::<_, String>((send, recv, hello))
    })
    .await;
    let (mut send, recv, hello) = match hello {
        Ok(Ok(x)) => x,
        Ok(Err(detail)) => {
            refuse(
                shared,
                &conn,
                RejectReason::HandshakeFailed,
                &format!("hello from replica {certified}: {detail}"),
            );
            return None;
        }
        Err(_) => {
            refuse(
                shared,
                &conn,
                RejectReason::HandshakeFailed,
                &format!("no hello from replica {certified} in time"),
            );
            return None;
        }
    };
    if let Err((reason, detail)) = check_hello(&shared.hello, &hello, certified) {
        refuse(shared, &conn, reason, &detail);
        return None;
    }
    let Some(peer) = shared.peers.get(&certified) else {
        // Our own certificate, presented by someone else: nobody else may be us.
        refuse(
            shared,
            &conn,
            RejectReason::WrongReplica,
            &format!("a peer presented our own certificate (replica {certified})"),
        );
        return None;
    };
    let ack = frame::encode_hello(&shared.hello).expect("our hello fits: validated at start");
    if let Err(e) = send.write_all(&ack).await {
        tracing::debug!(me = %shared.me, peer = %certified, "hello ack failed: {e}");
        return None;
    }
    record_cert_expiry(shared, &conn, peer);
    Some((conn, peer.id, send, recv))
}

async fn serve_inbound(
    shared: &Shared,
    conn: Connection,
    id: ReplicaId,
    _send: SendStream,
    recv: RecvStream,
) {
    let peer = &shared.peers[&id];
    if let Some(old) = lock(&peer.inbound).replace(conn.clone()) {
        old.close(VarInt::from_u32(0), b"replaced by a newer connection");
    }
    peer.counters.connected_in.store(true, Relaxed);
    tracing::info!(me = %shared.me, peer = %id, "inbound connection up");
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, recv);
    let max = shared.config.limits.frame_bytes_max;
    loop {
        let body = match frame::read_frame(&mut reader, max).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(ReadError::Frame(e @ FrameError::TooLarge { .. })) => {
                refuse(
                    shared,
                    &conn,
                    RejectReason::FrameTooLarge,
                    &format!("replica {id}: {e}"),
                );
                break;
            }
            Err(ReadError::Frame(e)) => {
                refuse(
                    shared,
                    &conn,
                    RejectReason::MalformedFrame,
                    &format!("replica {id}: {e}"),
                );
                break;
            }
            Err(e) => {
                tracing::debug!(me = %shared.me, peer = %id, "inbound stream ended: {e}");
                break;
            }
        };
        let wire_len = body.len() + frame::LENGTH_PREFIX_BYTES;
        match frame::decode(body) {
            Ok(Frame::Message { author, payload }) if author == id => {
                peer.counters
                    .bytes_received
                    .fetch_add(wire_len as u64, Relaxed);
                peer.counters.frames_received.fetch_add(1, Relaxed);
                if shared.inbound.send((id, payload)).await.is_err() {
                    break; // The node dropped its receiver: it is shutting down.
                }
            }
            Ok(Frame::Message { author, .. }) => {
                shared.rejects.count(RejectReason::WrongAuthor);
                tracing::warn!(me = %shared.me, peer = %id, %author, "dropped a frame claiming another author");
            }
            Ok(Frame::Hello(_)) => {
                refuse(
                    shared,
                    &conn,
                    RejectReason::MalformedFrame,
                    &format!("replica {id}: a second hello"),
                );
                break;
            }
            Err(e) => {
                refuse(
                    shared,
                    &conn,
                    RejectReason::MalformedFrame,
                    &format!("replica {id}: {e}"),
                );
                break;
            }
        }
    }
    let mut slot = lock(&peer.inbound);
    if slot.as_ref().map(Connection::stable_id) == Some(conn.stable_id()) {
        *slot = None;
        peer.counters.connected_in.store(false, Relaxed);
    }
}

// ---------------------------------------------------------------- dialling

async fn dial_loop(shared: Arc<Shared>, endpoint: Endpoint, id: ReplicaId) {
    let peer = &shared.peers[&id];
    let timing = shared.config.timing;
    let rng = rand::rngs::StdRng::seed_from_u64(shared.config.rng_seed ^ u64::from(id.0) << 32);
    let mut backoff = Backoff::new(timing.backoff_initial, timing.backoff_max, rng);
    loop {
        match dial_once(&shared, &endpoint, peer).await {
            Ok((conn, send)) => {
                backoff.reset();
                peer.counters.connects.fetch_add(1, Relaxed);
                record_cert_expiry(&shared, &conn, peer);
                *lock(&peer.outbound) = Some(conn.clone());
                peer.counters.connected_out.store(true, Relaxed);
                tracing::info!(me = %shared.me, peer = %id, "outbound connection up");
                let why = write_loop(&shared, peer, &conn, send).await;
                peer.counters.connected_out.store(false, Relaxed);
                *lock(&peer.outbound) = None;
                tracing::info!(me = %shared.me, peer = %id, "outbound connection down: {why}");
            }
            Err(DialError::RefusedByPeer(reason)) => {
                tracing::warn!(me = %shared.me, peer = %id, %reason, "peer refused our connection");
            }
            Err(e) => tracing::debug!(me = %shared.me, peer = %id, "dial failed: {e}"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn dial_once(
    shared: &Shared,
    endpoint: &Endpoint,
    peer: &Peer,
) -> Result<(Connection, SendStream), DialError> {
    let resolve = |detail: String| DialError::Resolve {
        addr: peer.addr.clone(),
        detail,
    };
    let addr = tokio::net::lookup_host(&peer.addr)
        .await
        .map_err(|e| resolve(e.to_string()))?
        .next()
        .ok_or_else(|| resolve("no address".into()))?;
    let timeout = shared.config.timing.handshake_timeout;
    let connecting = endpoint.connect(addr, &member_server_name(peer.id))?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| DialError::Timeout)??;
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = frame::encode_hello(&shared.hello).expect("our hello fits: validated at start");
        send.write_all(&hello)
            .await
            .map_err(|e| DialError::Hello(e.to_string()))?;
        let theirs = read_hello(&mut recv).await.map_err(DialError::Hello)?;
        Ok::<_, DialError>((send, recv, theirs))
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    let (send, recv, theirs) = match result {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            // If the peer closed with one of our reason codes, report that instead.
            if let Some(ConnectionError::ApplicationClosed(close)) = conn.close_reason() {
                if let Some(reason) = RejectReason::from_close_code(close.error_code.into_inner()) {
                    return Err(DialError::RefusedByPeer(reason));
                }
            }
            return Err(e);
        }
        Err(_) => return Err(DialError::Timeout),
    };
    // The acceptor writes nothing after its hello: the receiving half is no longer needed.
    drop(recv);
    if let Err((reason, detail)) = check_hello(&shared.hello, &theirs, peer.id) {
        refuse(shared, &conn, reason, &detail);
        return Err(DialError::Refused(reason));
    }
    Ok((conn, send))
}

async fn write_loop(
    shared: &Shared,
    peer: &Peer,
    conn: &Connection,
    mut send: SendStream,
) -> String {
    let max = shared.config.limits.frame_bytes_max;
    let mut batch = Vec::new();
    let mut buf = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    loop {
        peer.queue.drain(WRITE_BATCH_BYTES, &mut batch);
        if batch.is_empty() {
            tokio::select! {
                _ = peer.queue.notified() => continue,
                e = conn.closed() => return e.to_string(),
            }
        }
        buf.clear();
        let frames = batch.len() as u64;
        for msg in batch.drain(..) {
            frame::encode_message(&mut buf, shared.me, &msg, max)
                .expect("payload size checked in send against the same limit");
        }
        if let Err(e) = send.write_all(&buf).await {
            return e.to_string();
        }
        peer.counters.frames_sent.fetch_add(frames, Relaxed);
        peer.counters
            .bytes_sent
            .fetch_add(buf.len() as u64, Relaxed);
    }
}
