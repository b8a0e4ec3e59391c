//! `verify_transcript` recomputes the keys and rejects tampering.

mod common;

use common::{honest, run};
use notary_dkg::{verify_transcript, Body, Conflict, Round, Transcript, TranscriptError};

fn transcript() -> (
    Transcript,
    Vec<ed25519_dalek::VerifyingKey>,
    blsttc::PublicKeySet,
) {
    let (ctx, outputs) = run(4, 1, 21, &mut honest);
    let o = outputs
        .into_iter()
        .next()
        .expect("4 outputs")
        .expect("success");
    (o.transcript, ctx.config.participants, o.public_key_set)
}

#[test]
fn transcript_recomputes_cluster_key_and_every_share_after_json_roundtrip() {
    let (t, keys, pks) = transcript();
    let t = Transcript::from_json(&t.to_json()).expect("parses");
    let v = verify_transcript(&t, &keys).expect("verifies");
    assert_eq!(v.public_key_set, pks);
    assert_eq!(v.public_key_shares.len(), 4);
    for (i, s) in v.public_key_shares.iter().enumerate() {
        assert_eq!(*s, pks.public_key_share(i));
    }
    assert_eq!(v.confirmations.len(), 4);
    assert!(v.faults.is_empty());
}

#[test]
fn altered_message_content_is_rejected() {
    let (mut t, keys, _) = transcript();
    let m = t
        .messages
        .iter_mut()
        .find(|m| m.round() == Round::Deal)
        .expect("a deal");
    if let Body::Deal { shares, .. } = &mut m.body {
        shares[0] = None;
    }
    assert!(matches!(
        verify_transcript(&t, &keys),
        Err(TranscriptError::BadSignature { round: 2, .. })
    ));
}

#[test]
fn removed_deal_changes_the_result_and_is_rejected() {
    let (mut t, keys, _) = transcript();
    t.messages
        .retain(|m| !(m.round() == Round::Deal && m.sender().0 == 3));
    // Without dealer 3 the recomputed key differs from what everyone confirmed.
    assert!(matches!(
        verify_transcript(&t, &keys),
        Err(TranscriptError::Ceremony(
            notary_dkg::CeremonyError::NotConfirmed {
                confirmations: 0,
                ..
            }
        ))
    ));
}

#[test]
fn stated_key_set_must_match_the_recomputed_one() {
    let (mut t, keys, _) = transcript();
    let other = blsttc::SecretKeySet::random(1, &mut rand::thread_rng()).public_keys();
    t.public_key_set = Some(hex::encode(other.to_bytes()));
    assert_eq!(
        verify_transcript(&t, &keys).unwrap_err(),
        TranscriptError::ResultMismatch
    );
}

#[test]
fn wrong_participant_keys_are_rejected() {
    let (t, mut keys, _) = transcript();
    keys.swap(0, 1);
    assert_eq!(
        verify_transcript(&t, &keys).unwrap_err(),
        TranscriptError::KeysMismatch { index: 0 }
    );
}

#[test]
fn fake_equivocation_evidence_is_rejected() {
    let (mut t, keys, _) = transcript();
    let h = t.messages[0].header.clone();
    let mut forged = h.clone();
    forged.digest = hex::encode([7u8; 32]);
    t.conflicts.push(Conflict {
        first: h,
        second: forged,
    });
    assert_eq!(
        verify_transcript(&t, &keys).unwrap_err(),
        TranscriptError::BadConflict { index: 0 }
    );
}

#[test]
fn duplicated_message_is_rejected() {
    let (mut t, keys, _) = transcript();
    let m = t.messages[0].clone();
    t.messages.push(m);
    assert!(matches!(
        verify_transcript(&t, &keys),
        Err(TranscriptError::DuplicateMessage { .. })
    ));
}
