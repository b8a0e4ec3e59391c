//! The QUIC transport between real endpoints on loopback (127.0.0.1, OS-chosen ports).

use bytes::{BufMut, Bytes, BytesMut};
use notary_net::frame::{self, Hello};
use notary_net::identity::member_server_name;
use notary_net::local::{loopback_cluster, LOCAL_PROTOCOL_VERSION};
use notary_net::tls::{self, Pins};
use notary_net::{
    generate_member_identity, Identity, Inbound, NetConfig, QuicTransport, RejectReason, ReplicaId,
    SendError, Transport, Validity,
};
use quinn::crypto::rustls::QuicClientConfig;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

async fn recv(rx: &mut Inbound) -> (ReplicaId, Bytes) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within the deadline")
        .expect("inbound stream open")
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(config: NetConfig, socket: UdpSocket) -> (QuicTransport, Inbound) {
    QuicTransport::start_on_socket(config, socket).expect("transport starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_both_ways_and_a_payload_of_exactly_the_maximum_passes() {
    let mut nodes = loopback_cluster("flow", 2).expect("cluster");
    for (c, _) in nodes.iter_mut() {
        c.limits.frame_bytes_max = 64 << 10;
    }
    let (c1, s1) = nodes.pop().expect("node 1");
    let (c0, s0) = nodes.pop().expect("node 0");
    let max = c0.payload_bytes_max();
    let (a, mut ra) = start(c0, s0);
    let (b, mut rb) = start(c1, s1);
    a.send(ReplicaId(1), Bytes::from_static(b"ping"))
        .expect("send");
    assert_eq!(
        recv(&mut rb).await,
        (ReplicaId(0), Bytes::from_static(b"ping"))
    );
    b.broadcast(Bytes::from_static(b"pong")).expect("broadcast");
    assert_eq!(
        recv(&mut ra).await,
        (ReplicaId(1), Bytes::from_static(b"pong"))
    );

    let big = Bytes::from(vec![5u8; max]);
    a.send(ReplicaId(1), big.clone())
        .expect("exactly the maximum is accepted");
    assert_eq!(recv(&mut rb).await.1, big);
    assert_eq!(
        a.send(ReplicaId(1), Bytes::from(vec![0; max + 1])),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    assert_eq!(a.send(ReplicaId(0), Bytes::new()), Err(SendError::ToSelf));

    let stats = a.stats();
    let peer = stats.peer(ReplicaId(1)).expect("peer stats");
    assert!(peer.connected && peer.frames_sent >= 2 && peer.frames_received >= 1);
    assert!(peer.rtt.is_some());
    assert!(peer.cert_not_after_unix.expect("expiry known") > 0);
    assert!(stats.own_cert_not_after_unix.is_some());
    assert!(stats.rejected.iter().all(|(_, n)| *n == 0), "{stats:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// A hand-made client that can get everything wrong: identity, ALPN, hello.
async fn rogue(
    victim: &NetConfig,
    victim_addr: SocketAddr,
    identity: &Identity,
    alpn: &[u8],
    hello: Hello,
) {
    let mut tls = tls::client_config(identity, Pins::for_config(victim)).expect("client tls");
    tls.alpn_protocols = vec![alpn.to_vec()];
    let client =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).expect("quic tls")));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let attempt = async {
        let conn = endpoint
            .connect_with(client, victim_addr, &member_server_name(victim.me))
            .ok()?
            .await
            .ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(&frame::encode_hello(&hello).expect("hello"))
            .await
            .ok()?;
        let _ = recv.read_to_end(1024).await;
        Some(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), attempt).await;
    endpoint.close(0u32.into(), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_matrix_each_refusal_has_its_own_reason() {
    let mut nodes = loopback_cluster("matrix", 3).expect("cluster");
    // Member 1 is pinned with a certificate that expired long ago.
    let expired = generate_member_identity(
        "matrix",
        ReplicaId(1),
        Validity {
            from_year: 2000,
            until_year: 2001,
        },
    )
    .expect("expired identity");
    let member2 = nodes[2].0.identity.clone();
    let (mut victim_config, socket) = nodes.remove(0);
    victim_config.members[1].fingerprint = expired.fingerprint().expect("fp");
    let victim_addr = socket.local_addr().expect("addr");
    let (victim, _rx) = start(victim_config.clone(), socket);

    let hello = |replica: u16, cluster: &str, version: u16| Hello {
        protocol_version: version,
        replica: ReplicaId(replica),
        cluster_id: cluster.to_owned(),
    };
    let good = || hello(1, "matrix", LOCAL_PROTOCOL_VERSION);
    let unknown = generate_member_identity("elsewhere", ReplicaId(1), Validity::long_lived())
        .expect("identity");
    let look_alike =
        generate_member_identity("matrix", ReplicaId(1), Validity::long_lived()).expect("identity");
    let alpn = notary_net::ALPN;
    let cases: Vec<(&str, RejectReason, Identity, &[u8], Hello)> = vec![
        (
            "unknown certificate",
            RejectReason::UnknownCertificate,
            unknown,
            alpn,
            good(),
        ),
        (
            "look-alike",
            RejectReason::LookAlikeCertificate,
            look_alike,
            alpn,
            good(),
        ),
        (
            "member 2's certificate as replica 1",
            RejectReason::WrongReplica,
            member2.clone(),
            alpn,
            good(),
        ),
        (
            "expired certificate",
            RejectReason::ExpiredCertificate,
            expired,
            alpn,
            good(),
        ),
        (
            "wrong ALPN",
            RejectReason::WrongAlpn,
            member2.clone(),
            b"h3",
            hello(2, "matrix", 1),
        ),
        (
            "wrong cluster",
            RejectReason::WrongCluster,
            member2.clone(),
            alpn,
            hello(2, "other", 1),
        ),
        (
            "wrong version",
            RejectReason::WrongVersion,
            member2.clone(),
            alpn,
            hello(2, "matrix", 2),
        ),
    ];
    for (name, reason, identity, alpn, hello) in cases {
        let before = victim.stats();
        rogue(&victim_config, victim_addr, &identity, alpn, hello).await;
        eventually(name, || {
            victim.stats().rejected(reason) > before.rejected(reason)
        })
        .await;
        let after = victim.stats();
        for (other, n) in &after.rejected {
            if *other != reason {
                assert_eq!(*n, before.rejected(*other), "{name}: {other} also counted");
            }
        }
        assert!(after.peers.iter().all(|p| p.frames_received == 0));
    }
    victim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_garbage_is_cut_off_and_the_replica_goes_on() {
    let mut nodes = loopback_cluster("garbage", 3).expect("cluster");
    for (c, _) in nodes.iter_mut() {
        c.limits.frame_bytes_max = 4096;
    }
    let member2 = nodes[2].0.identity.clone();
    let (c1, s1) = nodes.remove(1);
    let (c0, s0) = nodes.remove(0);
    let addr0 = s0.local_addr().expect("addr");
    let (victim, mut rx) = start(c0.clone(), s0);
    let (honest, _rx1) = start(c1, s1);

    // A valid member (2) that greets properly, then misbehaves on the stream.
    let misbehave = |payload: Bytes| {
        let c0 = c0.clone();
        let member2 = member2.clone();
        async move {
            let tls = tls::client_config(&member2, Pins::for_config(&c0)).expect("tls");
            let client =
                quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).expect("quic")));
            let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("ep");
            let conn = ep
                .connect_with(client, addr0, &member_server_name(ReplicaId(0)))
                .expect("connect")
                .await
                .expect("handshake");
            let (mut send, mut recv) = conn.open_bi().await.expect("stream");
            let hello = Hello {
                protocol_version: LOCAL_PROTOCOL_VERSION,
                replica: ReplicaId(2),
                cluster_id: "garbage".into(),
            };
            send.write_all(&frame::encode_hello(&hello).expect("hello"))
                .await
                .expect("write");
            frame::read_frame(&mut recv, 1024)
                .await
                .expect("ack")
                .expect("ack frame");
            send.write_all(&payload).await.expect("write");
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            ep.close(0u32.into(), b"");
        }
    };
    // A frame claiming another author: dropped and counted, the connection stays.
    let mut wrong_author = BytesMut::new();
    frame::encode_message(&mut wrong_author, ReplicaId(1), b"forged", 4096).expect("encode");
    let mut forged_then_good = wrong_author.clone();
    frame::encode_message(&mut forged_then_good, ReplicaId(2), b"genuine", 4096).expect("encode");
    let forged = tokio::spawn(misbehave(forged_then_good.freeze()));
    assert_eq!(
        recv(&mut rx).await,
        (ReplicaId(2), Bytes::from_static(b"genuine"))
    );
    assert_eq!(victim.stats().rejected(RejectReason::WrongAuthor), 1);
    forged.abort();

    // Maximum + 1 announced: refused from the prefix, connection closed.
    let mut too_large = BytesMut::new();
    too_large.put_u32(4097);
    misbehave(too_large.freeze()).await;
    assert_eq!(victim.stats().rejected(RejectReason::FrameTooLarge), 1);
    // An unknown frame kind.
    misbehave(Bytes::from_static(&[0, 0, 0, 2, 9, 9])).await;
    assert_eq!(victim.stats().rejected(RejectReason::MalformedFrame), 1);

    honest
        .send(ReplicaId(0), Bytes::from_static(b"still here"))
        .expect("send");
    assert_eq!(
        recv(&mut rx).await,
        (ReplicaId(1), Bytes::from_static(b"still here"))
    );
    victim.shutdown().await;
    honest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected_without_restarting_the_other_side() {
    let mut nodes = loopback_cluster("restart", 2).expect("cluster");
    for (c, _) in nodes.iter_mut() {
        c.timing.backoff_initial = Duration::from_millis(10);
        c.timing.backoff_max = Duration::from_millis(200);
    }
    let (c1, s1) = nodes.pop().expect("node 1");
    let (c0, s0) = nodes.pop().expect("node 0");
    let addr1 = s1.local_addr().expect("addr");
    let (a, mut ra) = start(c0, s0);
    let (b, mut rb) = start(c1.clone(), s1);
    a.send(ReplicaId(1), Bytes::from_static(b"before"))
        .expect("send");
    assert_eq!(recv(&mut rb).await.1, Bytes::from_static(b"before"));

    b.shutdown().await;
    drop(rb);
    eventually("a notices b is gone", || {
        !a.stats().peer(ReplicaId(1)).expect("peer").connected
    })
    .await;
    a.send(ReplicaId(1), Bytes::from_static(b"while down"))
        .expect("queued, not an error");

    // Rebind the same port: the old socket is released once the endpoint is idle.
    let deadline = Instant::now() + WAIT;
    let socket = loop {
        match UdpSocket::bind(addr1) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "port not released: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (b, mut rb) = start(c1, socket);
    assert_eq!(recv(&mut rb).await.1, Bytes::from_static(b"while down"));
    a.send(ReplicaId(1), Bytes::from_static(b"after"))
        .expect("send");
    assert_eq!(recv(&mut rb).await.1, Bytes::from_static(b"after"));
    b.send(ReplicaId(0), Bytes::from_static(b"back"))
        .expect("send");
    assert_eq!(recv(&mut ra).await.1, Bytes::from_static(b"back"));
    assert!(a.stats().peer(ReplicaId(1)).expect("peer").connects >= 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_does_not_block_the_others() {
    let mut nodes = loopback_cluster("stall", 3).expect("cluster");
    for (c, _) in nodes.iter_mut() {
        c.limits.queue_frames_max = 16;
        c.limits.inbound_frames_max = 4;
    }
    let (c2, s2) = nodes.pop().expect("node 2");
    let (c1, s1) = nodes.pop().expect("node 1");
    let (c0, s0) = nodes.pop().expect("node 0");
    let (a, _ra) = start(c0, s0);
    let (_b, mut rb) = start(c1, s1);
    // Replica 2 never reads its inbound stream: it stalls once its buffers are full.
    let (_stalled, _never_read) = start(c2, s2);
    let msg = Bytes::from(vec![1u8; 64 << 10]);
    let rounds = 600; // 39 MB: beyond the stalled peer's QUIC windows and queue
    for i in 0..rounds {
        a.send(ReplicaId(2), msg.clone())
            .expect("send to the stalled peer never blocks");
        a.send(ReplicaId(1), msg.clone()).expect("send");
        let (from, got) = recv(&mut rb).await;
        assert_eq!((from, got.len()), (ReplicaId(0), msg.len()), "round {i}");
    }
    let stats = a.stats();
    let stalled = stats.peer(ReplicaId(2)).expect("peer");
    let healthy = stats.peer(ReplicaId(1)).expect("peer");
    assert!(stalled.frames_dropped_queue_full > 0, "{stalled:?}");
    assert!(stalled.queued_frames <= 16);
    assert_eq!(healthy.frames_dropped_queue_full, 0);
    assert_eq!(healthy.frames_sent, rounds);
}
