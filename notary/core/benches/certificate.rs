//! Per-block certificate cost: Merkle tree over 1,000 leaves, one share signature, combining
//! f + 1 shares (optimistic: combine then verify once), and the client's offline verification.
//! Run: `cargo bench -p notary-core --features testing --bench certificate`.

use std::time::Instant;

use blsttc::SecretKeySet;
use notary_core::{sign_header, Committee, ReplicaIndex, ShareCollector, ShareOutcome};
use notary_types::{
    BlockHeader, ClusterId, Height, Leaf, MerkleTree, Outcome, RequestDigest, Timestamp, TxId,
};
use rand::SeedableRng;

fn time<T>(label: &str, iterations: u32, mut f: impl FnMut() -> T) -> T {
    let mut out = f();
    let start = Instant::now();
    for _ in 0..iterations {
        out = f();
    }
    let per = start.elapsed().as_secs_f64() * 1e3 / f64::from(iterations);
    println!("{label:<52} {per:>8.3} ms");
    out
}

/// Times `a` and `b` in 9 alternating rounds of 30 calls each; prints each one's median per
/// call and the ratio of the medians.
fn time_pair(label_a: &str, mut a: impl FnMut(), label_b: &str, mut b: impl FnMut()) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        for (f, out) in [(&mut a as &mut dyn FnMut(), &mut ta), (&mut b, &mut tb)] {
            let start = Instant::now();
            for _ in 0..30 {
                f();
            }
            out.push(start.elapsed().as_secs_f64() * 1e3 / 30.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ma, mb) = (median(&mut ta), median(&mut tb));
    println!("{label_a:<52} {ma:>8.3} ms");
    println!("{label_b:<52} {mb:>8.3} ms  (ratio {:.2})", ma / mb);
}

fn main() {
    let leaves: Vec<Leaf> = (0..1_000u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Leaf {
                tx_id: TxId(b),
                request_digest: RequestDigest(b),
                outcome: Outcome::Committed,
            }
        })
        .collect();
    let tree = time("Merkle tree over 1,000 leaves", 50, || {
        MerkleTree::from_leaves(&leaves)
    });
    time("1,000 inclusion proofs", 20, || {
        (0..1_000)
            .filter_map(|i| tree.proof(i))
            .map(|p| p.siblings.len())
            .sum::<usize>()
    });
    let header = BlockHeader {
        cluster_id: ClusterId::new("wooden-dollars").expect("valid"),
        height: Height(1),
        timestamp: Timestamp(1),
        leaf_count: 1_000,
        root: tree.root(),
        prev: notary_types::HeaderHash([0; 32]),
    };
    for n in [4u16, 7] {
        let committee = Committee::new(n).expect("n >= 1");
        let sks = SecretKeySet::random(
            committee.bls_threshold(),
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(3),
        );
        let shares: Vec<_> = (0..n).map(|i| sks.secret_key_share(u64::from(i))).collect();
        time(&format!("n={n}: sign one share"), 20, || {
            sign_header(&shares[0], &header)
        });
        let signed: Vec<_> = shares.iter().map(|s| sign_header(s, &header)).collect();
        let sig = time(
            &format!(
                "n={n}: collect f+1={} shares, combine, verify",
                committee.certificate_shares()
            ),
            20,
            || {
                let mut c = ShareCollector::new(sks.public_keys(), committee, &header)
                    .expect("threshold f");
                let mut result = None;
                for (i, s) in signed.iter().enumerate() {
                    if let ShareOutcome::Combined(sig) = c.add(ReplicaIndex(i as u16), s.clone()) {
                        result = Some(sig);
                        break;
                    }
                }
                result.expect("f + 1 valid shares combine")
            },
        );
        // What a replica pays for each peer share it takes in: the wire bytes back to a G2
        // point (decompression and the subgroup check).
        let wire = signed[1].to_bytes();
        time(
            &format!("n={n}: decode one share from its bytes"),
            50,
            || blsttc::SignatureShare::from_bytes(wire).expect("valid"),
        );
        let pk = sks.public_keys();
        let f1 = committee.certificate_shares();
        time(
            &format!("n={n}:   ... of which combining alone"),
            20,
            || {
                pk.combine_signatures(signed.iter().enumerate().take(f1))
                    .expect("f + 1 shares")
            },
        );
        time(
            &format!("n={n}: one bad share among f+1 (attribute + recombine)"),
            10,
            || {
                let mut c =
                    ShareCollector::new(pk.clone(), committee, &header).expect("threshold f");
                let bad = sign_header(
                    &shares[1],
                    &BlockHeader {
                        height: Height(2),
                        ..header.clone()
                    },
                );
                c.add(ReplicaIndex(1), bad);
                let mut out = ShareOutcome::Added;
                for (i, s) in signed.iter().enumerate().filter(|(i, _)| *i != 1) {
                    out = c.add(ReplicaIndex(i as u16), s.clone());
                    if matches!(out, ShareOutcome::Combined(_)) {
                        break;
                    }
                }
                assert!(matches!(out, ShareOutcome::Combined(_)));
            },
        );
        // The client's check, and the same check as blsttc does it (two full pairings, the
        // baseline of `verify_bls`), alternated so that both see the same machine.
        let message = header.canonical_bytes();
        time_pair(
            &format!("n={n}: client verifies header signature"),
            || header.verify(&pk.public_key(), &sig).expect("valid"),
            "  ... with blsttc's verify (two pairings)",
            || {
                let s = sig.to_blsttc().expect("valid");
                assert!(pk.public_key().verify(&s, &message));
            },
        );
    }
}
