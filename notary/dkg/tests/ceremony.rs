//! Whole ceremonies in-process: honest, with each kind of fault, and with too many faults.

mod common;

use common::{check_keys, honest, resign, run, Ctx};
use notary_dkg::{
    verify_transcript, Body, CeremonyError, CeremonyOutput, Fault, ParticipantIndex, Round,
    SignedMessage,
};

fn successes(outputs: &[Result<CeremonyOutput, CeremonyError>], faulty: &[usize]) -> Vec<usize> {
    (0..outputs.len())
        .filter(|i| !faulty.contains(i))
        .collect::<Vec<_>>()
        .into_iter()
        .inspect(|i| {
            if let Err(e) = &outputs[*i] {
                panic!("honest participant {i} failed: {e}");
            }
        })
        .collect()
}

/// All honest participants agree on the key set and the qualified dealers; keys work.
fn assert_success(
    ctx: &Ctx,
    outputs: &[Result<CeremonyOutput, CeremonyError>],
    faulty: &[usize],
    t: usize,
) -> Vec<usize> {
    let honest = successes(outputs, faulty);
    let ok: Vec<&CeremonyOutput> = honest
        .iter()
        .map(|i| outputs[*i].as_ref().expect("checked"))
        .collect();
    let pks = ok[0].public_key_set.clone();
    for o in &ok {
        assert_eq!(
            o.public_key_set, pks,
            "participant {} agrees on the key set",
            o.index
        );
        assert_eq!(
            o.qualified, ok[0].qualified,
            "participant {} agrees on the qualified dealers",
            o.index
        );
        assert_eq!(o.public_key_set.threshold(), t);
        let verified = verify_transcript(&o.transcript, &ctx.config.participants)
            .expect("own transcript verifies");
        assert_eq!(verified.public_key_set, pks);
        for (i, pk) in verified.public_key_shares.iter().enumerate() {
            assert_eq!(*pk, pks.public_key_share(i));
        }
    }
    let shares: Vec<_> = ok
        .iter()
        .map(|o| (o.index.get(), o.secret_key_share.clone()))
        .collect();
    check_keys(&shares, &pks, t);
    honest
}

fn named(output: &CeremonyOutput, who: usize, pred: impl Fn(&Fault) -> bool) -> bool {
    let v = verify_transcript(
        &output.transcript,
        &output
            .transcript
            .config
            .to_config()
            .expect("config")
            .participants,
    )
    .expect("transcript verifies");
    v.faults
        .iter()
        .any(|f| f.participant == ParticipantIndex(who as u16) && pred(&f.fault))
        && output
            .faults
            .iter()
            .any(|f| f.participant == ParticipantIndex(who as u16) && pred(&f.fault))
}

#[test]
fn honest_ceremony_n4_every_share_signs_and_t_plus_1_combine() {
    let (ctx, outputs) = run(4, 1, 1, &mut honest);
    assert_success(&ctx, &outputs, &[], 1);
    let o = outputs[0].as_ref().expect("success");
    assert!(o.faults.is_empty(), "no faults: {:?}", o.faults);
    assert_eq!(o.qualified.len(), 4);
}

#[test]
fn honest_ceremony_n7() {
    let (ctx, outputs) = run(7, 2, 2, &mut honest);
    assert_success(&ctx, &outputs, &[], 2);
    assert_eq!(outputs[3].as_ref().expect("success").qualified.len(), 7);
}

/// Dealer `bad` gives `victim` a share that is not on its commitment (a fresh random one,
/// properly encrypted to the victim's key, so only the commitment check catches it).
fn bad_share_hook(
    bad: usize,
    victim: usize,
) -> impl FnMut(&Ctx, Round, usize, usize, &SignedMessage) -> Option<SignedMessage> {
    let mut tampered: Option<SignedMessage> = None;
    move |ctx, round, s, _r, m| {
        if s != bad {
            return Some(m.clone());
        }
        if round == Round::Complain {
            // The bad dealer's own echo shows the deal it actually sent (no equivocation).
            let Body::Complain {
                complaints,
                mut echo,
            } = m.body.clone()
            else {
                panic!("complain")
            };
            echo[bad] = tampered.as_ref().map(|t| t.header.clone());
            return Some(resign(ctx, m, Body::Complain { complaints, echo }));
        }
        if round != Round::Deal {
            return Some(m.clone());
        }
        let t = tampered.get_or_insert_with(|| {
            let Body::Deal {
                commitment,
                mut shares,
                echo,
            } = m.body.clone()
            else {
                panic!("deal")
            };
            let keys = ctx.sent[0][victim].as_ref().expect("victim's keys");
            let Body::Keys { enc_keys } = &keys.body else {
                panic!("keys")
            };
            let pk = blsttc::PublicKey::from_bytes(
                hex::decode(&enc_keys[bad])
                    .expect("hex")
                    .try_into()
                    .expect("48"),
            )
            .expect("pk");
            let wrong = blsttc::SecretKey::random().to_bytes();
            shares[victim] = Some(hex::encode(pk.encrypt(wrong).to_bytes()));
            resign(
                ctx,
                m,
                Body::Deal {
                    commitment,
                    shares,
                    echo,
                },
            )
        });
        Some(t.clone())
    }
}

#[test]
fn bad_share_is_named_and_ceremony_succeeds_n4() {
    let (ctx, outputs) = run(4, 1, 3, &mut bad_share_hook(2, 0));
    // The bad dealer is faulty but still ends with keys of its own; it is excluded as a dealer.
    let honest = assert_success(&ctx, &outputs, &[2], 1);
    for i in honest {
        let o = outputs[i].as_ref().expect("success");
        assert!(
            !o.qualified.contains(&ParticipantIndex(2)),
            "bad dealer excluded"
        );
        assert!(named(
            o,
            2,
            |f| matches!(f, Fault::InvalidShare { recipient, reason: notary_dkg::ShareFault::NotOnCommitment } if recipient.0 == 0)
        ));
    }
}

/// `eq` sends one deal to even-numbered peers and a different (validly signed) one to the others.
fn equivocate_hook(
    eq: usize,
    round: Round,
) -> impl FnMut(&Ctx, Round, usize, usize, &SignedMessage) -> Option<SignedMessage> {
    move |ctx, r, s, to, m| {
        if r != round || s != eq || to % 2 == 0 {
            return Some(m.clone());
        }
        let body = match m.body.clone() {
            Body::Keys { mut enc_keys } => {
                enc_keys.reverse();
                Body::Keys { enc_keys }
            }
            Body::Deal {
                commitment,
                shares,
                mut echo,
            } => {
                echo[0] = None;
                Body::Deal {
                    commitment,
                    shares,
                    echo,
                }
            }
            Body::Complain {
                mut complaints,
                echo,
            } => {
                complaints.clear();
                Body::Complain { complaints, echo }
            }
            Body::Confirm { result, mut echo } => {
                echo[0] = None;
                Body::Confirm { result, echo }
            }
        };
        Some(resign(ctx, m, body))
    }
}

#[test]
fn equivocating_dealer_is_named_with_evidence_and_ceremony_succeeds_n4() {
    let (ctx, outputs) = run(4, 1, 4, &mut equivocate_hook(1, Round::Deal));
    let honest = assert_success(&ctx, &outputs, &[1], 1);
    for i in honest {
        let o = outputs[i].as_ref().expect("success");
        assert!(named(o, 1, |f| matches!(
            f,
            Fault::Equivocation {
                round: Round::Deal,
                ..
            }
        )));
        assert!(!o.qualified.contains(&ParticipantIndex(1)));
    }
}

#[test]
fn equivocation_in_round_1_is_named_n4() {
    let (ctx, outputs) = run(4, 1, 5, &mut equivocate_hook(3, Round::Keys));
    let honest = assert_success(&ctx, &outputs, &[3], 1);
    for i in honest {
        assert!(named(
            outputs[i].as_ref().expect("success"),
            3,
            |f| matches!(
                f,
                Fault::Equivocation {
                    round: Round::Keys,
                    ..
                }
            )
        ));
    }
}

fn silent_hook(
    silent: Vec<usize>,
) -> impl FnMut(&Ctx, Round, usize, usize, &SignedMessage) -> Option<SignedMessage> {
    move |_, _, s, _, m| (!silent.contains(&s)).then(|| m.clone())
}

#[test]
fn silent_participant_is_named_and_ceremony_succeeds_n4() {
    let (ctx, outputs) = run(4, 1, 6, &mut silent_hook(vec![3]));
    let honest = assert_success(&ctx, &outputs, &[3], 1);
    for i in honest {
        let o = outputs[i].as_ref().expect("success");
        assert!(named(o, 3, |f| matches!(
            f,
            Fault::Silent { round: Round::Keys }
        )));
        assert_eq!(
            o.qualified,
            vec![
                ParticipantIndex(0),
                ParticipantIndex(1),
                ParticipantIndex(2)
            ]
        );
    }
}

#[test]
fn silent_only_in_confirm_round_keeps_its_contribution_n4() {
    let mut hook = |_: &Ctx, r: Round, s: usize, _: usize, m: &SignedMessage| {
        (!(s == 2 && r == Round::Confirm)).then(|| m.clone())
    };
    let (ctx, outputs) = run(4, 1, 7, &mut hook);
    let honest = assert_success(&ctx, &outputs, &[2], 1);
    let o = outputs[honest[0]].as_ref().expect("success");
    assert!(named(o, 2, |f| matches!(
        f,
        Fault::Silent {
            round: Round::Confirm
        }
    )));
    assert!(o.qualified.contains(&ParticipantIndex(2)));
}

#[test]
fn bad_share_equivocation_and_silence_together_within_f_n7() {
    // n = 7 tolerates f = 2: one bad dealer and one equivocator; then one bad dealer and one
    // silent participant (three distinct faulty would exceed f).
    let mut bad = bad_share_hook(5, 1);
    let mut eq = equivocate_hook(6, Round::Deal);
    let mut hook = |c: &Ctx, r: Round, s: usize, to: usize, m: &SignedMessage| match s {
        5 => bad(c, r, s, to, m),
        6 => eq(c, r, s, to, m),
        _ => Some(m.clone()),
    };
    let (ctx, outputs) = run(7, 2, 8, &mut hook);
    let honest = assert_success(&ctx, &outputs, &[5, 6], 2);
    for i in honest {
        let o = outputs[i].as_ref().expect("success");
        assert!(named(o, 5, |f| matches!(f, Fault::InvalidShare { .. })));
        assert!(named(o, 6, |f| matches!(f, Fault::Equivocation { .. })));
        assert_eq!(o.qualified.len(), 5);
    }

    let mut bad = bad_share_hook(0, 4);
    let mut hook = |c: &Ctx, r: Round, s: usize, to: usize, m: &SignedMessage| match s {
        0 => bad(c, r, s, to, m),
        3 => None,
        _ => Some(m.clone()),
    };
    let (ctx, outputs) = run(7, 2, 9, &mut hook);
    let honest = assert_success(&ctx, &outputs, &[0, 3], 2);
    let o = outputs[honest[0]].as_ref().expect("success");
    assert!(named(o, 0, |f| matches!(f, Fault::InvalidShare { .. })));
    assert!(named(o, 3, |f| matches!(f, Fault::Silent { .. })));
}

#[test]
fn false_complaint_is_named_and_the_dealer_kept_n4() {
    // Participant 1 reveals its key for dealer 2 and claims a bad share that was good.
    let mut hook = |c: &Ctx, r: Round, s: usize, _: usize, m: &SignedMessage| {
        if r != Round::Complain || s != 1 {
            return Some(m.clone());
        }
        let Body::Complain {
            mut complaints,
            echo,
        } = m.body.clone()
        else {
            panic!("complain")
        };
        complaints.push(notary_dkg::Complaint {
            dealer: ParticipantIndex(2),
            revealed_key: None,
        });
        Some(resign(c, m, Body::Complain { complaints, echo }))
    };
    let (ctx, outputs) = run(4, 1, 10, &mut hook);
    let honest = assert_success(&ctx, &outputs, &[1], 1);
    let o = outputs[honest[0]].as_ref().expect("success");
    assert!(named(
        o,
        1,
        |f| matches!(f, Fault::FalseComplaint { dealer } if dealer.0 == 2)
    ));
    assert!(
        o.qualified.contains(&ParticipantIndex(2)),
        "the wrongly accused dealer is kept"
    );
}

#[test]
fn f_plus_1_silent_fails_cleanly_n4() {
    let (_, outputs) = run(4, 1, 11, &mut silent_hook(vec![1, 2]));
    for i in [0, 3] {
        match &outputs[i] {
            Err(CeremonyError::TooManyFaults { faulty, max: 1 }) => {
                assert_eq!(faulty, &vec![ParticipantIndex(1), ParticipantIndex(2)])
            }
            other => panic!("participant {i}: expected TooManyFaults, got {other:?}"),
        }
    }
}

#[test]
fn f_plus_1_mixed_faults_fail_cleanly_n7() {
    let mut bad = bad_share_hook(0, 4);
    let mut eq = equivocate_hook(1, Round::Deal);
    let mut hook = |c: &Ctx, r: Round, s: usize, to: usize, m: &SignedMessage| match s {
        0 => bad(c, r, s, to, m),
        1 => eq(c, r, s, to, m),
        2 => None,
        _ => Some(m.clone()),
    };
    let (_, outputs) = run(7, 2, 12, &mut hook);
    for (i, out) in outputs.iter().enumerate().skip(3) {
        assert!(
            matches!(out, Err(CeremonyError::TooManyFaults { faulty, max: 2 }) if faulty.len() == 3),
            "participant {i}: {out:?}"
        );
    }
}
