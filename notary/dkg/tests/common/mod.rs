//! An in-process network for ceremony tests, with a hook to make senders misbehave.
#![allow(dead_code)]

use blsttc::{PublicKeySet, SecretKeyShare};
use ed25519_dalek::SigningKey;
use notary_dkg::{
    Body, CeremonyConfig, CeremonyError, CeremonyId, CeremonyOutput, Participant, ParticipantIndex,
    Round, SignedMessage, Step,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// What a sender does with its message for one recipient in one round.
pub type Hook<'a> =
    dyn FnMut(&Ctx, Round, usize, usize, &SignedMessage) -> Option<SignedMessage> + 'a;

/// What a hook may use: the keys, and every message sent so far as its sender produced it.
pub struct Ctx {
    pub config: CeremonyConfig,
    pub keys: Vec<SigningKey>,
    pub sent: Vec<Vec<Option<SignedMessage>>>,
}

pub fn setup(n: usize, t: usize, seed: u64) -> (CeremonyConfig, Vec<SigningKey>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate(&mut rng)).collect();
    let config = CeremonyConfig::new(
        CeremonyId::new("test-cluster", &seed.to_be_bytes()),
        t,
        keys.iter().map(|k| k.verifying_key()).collect(),
    )
    .expect("valid test configuration");
    (config, keys)
}

/// Runs a whole ceremony; `hook` decides what each sender delivers to each recipient.
pub fn run(
    n: usize,
    t: usize,
    seed: u64,
    hook: &mut Hook<'_>,
) -> (Ctx, Vec<Result<CeremonyOutput, CeremonyError>>) {
    let (config, keys) = setup(n, t, seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xdead_beef);
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
    let mut ctx = Ctx {
        config,
        keys,
        sent: vec![vec![None; n]; 4],
    };
    let mut outgoing: Vec<SignedMessage> = parts
        .iter()
        .map(|p| p.outgoing().expect("round 1").clone())
        .collect();
    for round in Round::ALL {
        for (s, msg) in outgoing.iter().enumerate() {
            ctx.sent[usize::from(round.number() - 1)][s] = Some(msg.clone());
        }
        for (s, msg) in outgoing.iter().enumerate() {
            for (r, part) in parts.iter_mut().enumerate() {
                if r == s {
                    continue;
                }
                if let Some(m) = hook(&ctx, round, s, r, msg) {
                    part.handle(m);
                }
            }
        }
        let mut next = Vec::new();
        for part in &mut parts {
            match part.advance(&mut rng).expect("advance in order") {
                Step::Send(m) => next.push(m),
                Step::Finished => {}
            }
        }
        outgoing = next;
    }
    let outputs = parts.into_iter().map(Participant::finish).collect();
    (ctx, outputs)
}

pub fn honest(_: &Ctx, _: Round, _: usize, _: usize, m: &SignedMessage) -> Option<SignedMessage> {
    Some(m.clone())
}

/// Re-signs a changed body as its original sender.
pub fn resign(ctx: &Ctx, original: &SignedMessage, body: Body) -> SignedMessage {
    let s = original.sender();
    SignedMessage::sign(&ctx.config.ceremony, s, body, &ctx.keys[s.get()])
}

/// Checks the cluster keys the issue asks for: every share signs, any f+1 combine into a
/// signature valid under the cluster key, f shares cannot.
pub fn check_keys(outputs: &[(usize, SecretKeyShare)], pks: &PublicKeySet, t: usize) {
    let msg = b"cluster id, height, results root";
    let sigs: Vec<_> = outputs.iter().map(|(i, s)| (*i, s.sign(msg))).collect();
    for ((i, share), (_, sig)) in outputs.iter().zip(&sigs) {
        assert_eq!(
            share.public_key_share(),
            pks.public_key_share(*i),
            "share {i} matches the key set"
        );
        assert!(pks.public_key_share(*i).verify(sig, msg), "share {i} signs");
    }
    assert!(sigs.len() > t, "at least t + 1 honest shares");
    // Every window of t + 1 consecutive shares (wrapping) combines.
    for start in 0..sigs.len() {
        let subset: Vec<_> = (0..=t)
            .map(|k| sigs[(start + k) % sigs.len()].clone())
            .collect();
        let sig = pks
            .combine_signatures(subset.iter().map(|(i, s)| (*i, s)))
            .expect("t + 1 shares combine");
        assert!(
            pks.public_key().verify(&sig, msg),
            "t + 1 shares from {start} verify"
        );
    }
    let few: Vec<_> = sigs.iter().take(t).map(|(i, s)| (*i, s)).collect();
    assert!(
        pks.combine_signatures(few).is_err(),
        "t shares do not combine"
    );
}
