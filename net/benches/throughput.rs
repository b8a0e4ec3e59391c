//! Two QUIC endpoints on loopback: messages/s and MB/s for 200-byte and 64-KiB messages.
//! Run: `cargo bench -p notary-net --bench throughput` (release profile).

use bytes::Bytes;
use notary_net::local::loopback_cluster;
use notary_net::{QuicTransport, ReplicaId, Transport};
use std::time::{Duration, Instant};

async fn run(size: usize, total_bytes: usize) {
    let mut nodes = loopback_cluster("bench", 2).expect("identities");
    for (config, _) in nodes.iter_mut() {
        // The sender must never drop: a queue as large as the run.
        config.limits.queue_frames_max = 1 << 20;
        config.limits.queue_bytes_max = 1 << 30;
        config.limits.inbound_frames_max = 1 << 16;
    }
    let mut nodes = nodes.into_iter();
    let (c0, s0) = nodes.next().expect("node 0");
    let (c1, s1) = nodes.next().expect("node 1");
    let (a, _ra) = QuicTransport::start_on_socket(c0, s0).expect("start a");
    let (b, mut rb) = QuicTransport::start_on_socket(c1, s1).expect("start b");
    // Warm up: wait for the connection.
    a.send(ReplicaId(1), Bytes::from_static(b"warm"))
        .expect("send");
    tokio::time::timeout(Duration::from_secs(10), rb.recv())
        .await
        .expect("connected in time")
        .expect("message");
    let count = (total_bytes / size).max(1000);
    let payload = Bytes::from(vec![0xabu8; size]);
    let start = Instant::now();
    let sender = async {
        // Offer in chunks so the queue does not hold the whole run at once.
        let mut sent = 0;
        while sent < count {
            let queued = a.stats().peer(ReplicaId(1)).map_or(0, |p| p.queued_frames);
            if queued > 8192 {
                tokio::task::yield_now().await;
                continue;
            }
            for _ in 0..1024.min(count - sent) {
                a.send(ReplicaId(1), payload.clone()).expect("send");
                sent += 1;
            }
            tokio::task::yield_now().await;
        }
    };
    let receiver = async {
        let mut got = 0;
        while got < count {
            rb.recv().await.expect("stream open");
            got += 1;
        }
    };
    tokio::join!(sender, receiver);
    let secs = start.elapsed().as_secs_f64();
    let dropped = a
        .stats()
        .peer(ReplicaId(1))
        .map_or(0, |p| p.frames_dropped_queue_full);
    println!(
        "{size:>6} B messages: {count:>7} in {secs:.2} s = {:>9.0} msg/s, {:>7.1} MB/s (dropped {dropped})",
        count as f64 / secs,
        (count * size) as f64 / secs / 1e6,
    );
    a.shutdown().await;
    b.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        run(200, 100 << 20).await;
        run(64 << 10, 1 << 30).await;
    });
}
