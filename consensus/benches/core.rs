//! Benchmark of the consensus core alone (no I/O): a whole n-replica cluster on one thread,
//! every message postcard-encoded, decoded and verified with real ed25519, votes signed.
//! Reports committed blocks per second and messages handled per second, for n = 4, 7, 16,
//! and the cost of one ed25519 sign and verify on this machine.
//!
//! Run: `cargo bench -p notary-consensus --bench core`
// Measuring wall-clock time is this binary's job; the core itself never reads a clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, missing_docs)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey, Verifier};
use harness::{Sim, SimConfig};

fn ed25519_costs() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    let msg = [42u8; 96];
    let iters = 5_000;
    let t = Instant::now();
    let mut sig = key.sign(&msg);
    for _ in 0..iters {
        sig = key.sign(std::hint::black_box(&msg));
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
    let t = Instant::now();
    for _ in 0..iters {
        assert!(vk.verify(std::hint::black_box(&msg), &sig).is_ok());
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
    // A QC of n = 16 has 11 signatures over one message: the batch path of QuorumCert::verify.
    let keys: Vec<SigningKey> = (0..11u8)
        .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
        .collect();
    let vks: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
    let sigs: Vec<_> = keys.iter().map(|k| k.sign(&msg)).collect();
    let msgs: Vec<&[u8]> = vec![&msg[..]; 11];
    let batches = 500;
    let t = Instant::now();
    for _ in 0..batches {
        assert!(ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok());
    }
    let batch_us = t.elapsed().as_secs_f64() * 1e6 / (batches * 11) as f64;
    println!(
        "ed25519: sign {sign_us:.1} µs, verify {verify_us:.1} µs, batch-verify {batch_us:.1} µs \
         per signature in a batch of 11 (one core)"
    );
}

fn cluster(n: usize, blocks: u64, batch: usize) {
    let mut cfg = SimConfig::new(n, 1);
    cfg.delay_ms_min = 1;
    cfg.delay_ms_max = 2;
    cfg.fsync_ms = 0;
    cfg.batch_max = batch;
    let mut sim = Sim::new(cfg);
    // Keep every leader supplied: enough items for `blocks` full blocks.
    sim.prefill(blocks as usize * batch);
    let t = Instant::now();
    while sim.committed_height(0) < blocks && sim.step() {}
    let secs = t.elapsed().as_secs_f64();
    let h = sim.committed_height(0);
    let msgs = sim.messages_delivered;
    println!(
        "n = {n:2}: {h} blocks of {batch} items ({} B payload), {msgs} messages in {secs:.2} s \
         → {:.0} blocks/s, {:.0} messages/s (all n replicas on one thread; one replica alone \
         would use 1/{n} of this time); timeouts {}",
        batch * 8,
        h as f64 / secs,
        msgs as f64 / secs,
        sim.timeouts(),
    );
}

/// Simulated commit latency under 100 items/s with and without one crashed replica (leader
/// reputation), after a 10 s warm-up: the ANCHORS.md target is p99 at most 2x fault-free.
fn crashed_latency(n: usize) {
    let run = |crashed: Option<usize>| {
        let mut sim = Sim::new(SimConfig::new(n, 3));
        if let Some(c) = crashed {
            sim.crash(c);
        }
        sim.load(100, 10_000);
        let t0 = sim.timeouts();
        sim.load(100, 40_000);
        sim.run_until(70_000);
        let (p50, p99, max) = sim.latency_ms(10_000);
        (p50, p99, max, sim.timeouts() - t0)
    };
    let ok = run(None);
    let down = run(Some(1));
    println!(
        "n = {n:2}, simulated commit latency (1-20 ms links), fault-free p50/p99/max {}/{}/{} ms, \
         {} timeouts; replica 1 crashed {}/{}/{} ms, {} timeouts → p99 ratio {:.2}",
        ok.0,
        ok.1,
        ok.2,
        ok.3,
        down.0,
        down.1,
        down.2,
        down.3,
        down.1 as f64 / ok.1.max(1) as f64
    );
}

fn main() {
    for n in [4, 7] {
        crashed_latency(n);
    }
    ed25519_costs();
    for (n, blocks) in [(4, 2000), (7, 1000), (16, 300)] {
        cluster(n, blocks, 100);
    }
}
