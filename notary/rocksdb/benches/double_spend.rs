//! Double-spend checks per second on RocksDB: blocks of 1,000 requests with 1, 4 and 100 inputs
//! each, every block applied with one synced write batch. Run:
//! `cargo bench -p notary-rocksdb --bench double_spend` (release profile).

use std::time::Instant;

use notary_core::testing::Fixture;
use notary_core::{apply_committed_block, Store, VerifiedRequest};
use notary_rocksdb::RocksStore;
use notary_types::{Height, StateRef, Timestamp, TxId};

const REQUESTS_PER_BLOCK: usize = 1_000;

fn id(n: u64, salt: u8) -> TxId {
    let mut b = [salt; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    TxId(b)
}

fn block(f: &Fixture, block_no: u64, inputs_per_request: usize) -> Vec<VerifiedRequest> {
    (0..REQUESTS_PER_BLOCK as u64)
        .map(|i| {
            let n = block_no * REQUESTS_PER_BLOCK as u64 + i;
            let inputs: Vec<StateRef> = (0..inputs_per_request as u32)
                .map(|index| StateRef {
                    tx_id: id(n, 0xAA),
                    index,
                })
                .collect();
            f.request(id(n, 0xBB), &inputs, &[], None)
        })
        .collect()
}

fn main() {
    let f = Fixture::new();
    println!("inputs/request  blocks  requests/s  inputs/s   ms/block (p50 / max)");
    for (inputs_per_request, blocks) in [(1usize, 20u64), (4, 20), (100, 5)] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = RocksStore::open(dir.path()).expect("a fresh database");
        // Pre-populate one block so lookups hit a non-empty database.
        let warm = block(&f, 10_000, inputs_per_request);
        apply_committed_block(
            &store,
            &f.cluster_id,
            Height(1),
            Timestamp(1),
            &warm,
            vec![],
        )
        .expect("warm-up block applies");
        let prepared: Vec<_> = (0..blocks)
            .map(|b| block(&f, b, inputs_per_request))
            .collect();
        let mut block_ms = Vec::new();
        let start = Instant::now();
        for (b, requests) in prepared.iter().enumerate() {
            let t = Instant::now();
            let h = Height(b as u64 + 2);
            let rec =
                apply_committed_block(&store, &f.cluster_id, h, Timestamp(h.0), requests, vec![])
                    .expect("benchmark blocks apply");
            assert_eq!(rec.leaves.len(), REQUESTS_PER_BLOCK);
            block_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(
            store.applied_height().expect("readable"),
            Height(blocks + 1)
        );
        block_ms.sort_by(f64::total_cmp);
        let reqs = (blocks as usize * REQUESTS_PER_BLOCK) as f64;
        println!(
            "{inputs_per_request:>14}  {blocks:>6}  {:>10.0}  {:>9.0}  {:.1} / {:.1}",
            reqs / secs,
            reqs * inputs_per_request as f64 / secs,
            block_ms[block_ms.len() / 2],
            block_ms[block_ms.len() - 1],
        );
    }
}
