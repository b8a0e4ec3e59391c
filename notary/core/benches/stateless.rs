//! Stateless checks per second on one core: per-request ed25519 verification vs the batch form.
//! Run: `cargo bench -p notary-core --features testing --bench stateless`.

use std::time::Instant;

use notary_core::testing::Fixture;
use notary_core::{check, check_batch};
use notary_types::{NotarisationRequest, StateRef, TxId};

fn main() {
    let f = Fixture::new();
    let requests: Vec<NotarisationRequest> = (0..4_096u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            let inputs = [StateRef {
                tx_id: TxId(b),
                index: 0,
            }];
            f.request(TxId(b), &inputs, &[], None).into_request()
        })
        .collect();
    let start = Instant::now();
    let ok = requests
        .iter()
        .filter(|r| check(&f.policy, (*r).clone()).is_ok())
        .count();
    let single = requests.len() as f64 / start.elapsed().as_secs_f64();
    assert_eq!(ok, requests.len());
    println!("single verification:          {single:>9.0} requests/s");
    for batch in [64usize, 256] {
        let start = Instant::now();
        let mut ok = 0;
        for chunk in requests.chunks(batch) {
            ok += check_batch(&f.policy, chunk.to_vec())
                .iter()
                .filter(|r| r.is_ok())
                .count();
        }
        assert_eq!(ok, requests.len());
        let rate = requests.len() as f64 / start.elapsed().as_secs_f64();
        println!("batch of {batch:>3}:                 {rate:>9.0} requests/s");
    }
    let mut bad = requests[..64].to_vec();
    bad[17].signature.0[3] ^= 1;
    let start = Instant::now();
    let results = check_batch(&f.policy, bad);
    let per = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    println!("batch of 64 with one bad signature (fallback): {per:.2} ms");
}
