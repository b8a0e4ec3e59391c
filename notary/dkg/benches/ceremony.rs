//! How long a whole in-process ceremony takes (all n participants on one thread, so the
//! figure is the total CPU work of the ceremony; spread over n machines each does ~1/n of it).
//! Run: `cargo bench -p notary-dkg --bench ceremony`.

use std::time::Instant;

use ed25519_dalek::SigningKey;
use notary_dkg::{
    CeremonyConfig, CeremonyId, Participant, ParticipantIndex, Round, SignedMessage, Step,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn ceremony(n: usize, seed: u64) -> (f64, usize) {
    let t = (n - 1) / 3;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate(&mut rng)).collect();
    let config = CeremonyConfig::new(
        CeremonyId::new("bench", &seed.to_be_bytes()),
        t,
        keys.iter().map(|k| k.verifying_key()).collect(),
    )
    .expect("valid configuration");
    let start = Instant::now();
    let mut parts: Vec<Participant> = (0..n)
        .map(|i| {
            Participant::new(
                config.clone(),
                ParticipantIndex(i as u16),
                keys[i].clone(),
                &mut rng,
            )
            .expect("setup")
        })
        .collect();
    let mut out: Vec<SignedMessage> = parts
        .iter()
        .map(|p| p.outgoing().expect("round 1").clone())
        .collect();
    let mut bytes = 0;
    for _ in Round::ALL {
        bytes += out
            .iter()
            .map(|m| serde_json::to_vec(m).expect("json").len())
            .sum::<usize>();
        for m in &out {
            for p in parts.iter_mut().filter(|p| p.index() != m.sender()) {
                p.handle(m.clone());
            }
        }
        out = parts
            .iter_mut()
            .filter_map(|p| match p.advance(&mut rng).expect("advance") {
                Step::Send(m) => Some(m),
                Step::Finished => None,
            })
            .collect();
    }
    for p in parts {
        p.finish().expect("honest ceremony succeeds");
    }
    (start.elapsed().as_secs_f64(), bytes)
}

fn main() {
    println!("n   t   whole ceremony (all n, one thread)   per participant   JSON sent per participant (4 rounds)");
    for n in [4usize, 7, 16] {
        let runs = if n == 16 { 2 } else { 3 };
        let mut best = f64::MAX;
        let mut bytes = 0;
        for seed in 0..runs {
            let (s, b) = ceremony(n, seed);
            best = best.min(s);
            bytes = b;
        }
        println!(
            "{n:<3} {:<3} {:>10.1} ms {:>30.1} ms {:>20} KiB",
            (n - 1) / 3,
            best * 1e3,
            best * 1e3 / n as f64,
            bytes / n / 1024
        );
    }
}
