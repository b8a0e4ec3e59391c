//! The pure heart of the ceremony: from a view (the signed messages one participant holds)
//! to the faults, the qualified dealers and the public key set. The participant runs it to
//! compute its result, and `verify_transcript` runs the very same function on a transcript,
//! so a transcript is checked by exactly the rules that produced it.

use std::collections::{BTreeMap, BTreeSet};

use blsttc::poly::Commitment;
use blsttc::{Ciphertext, Fr, PublicKey, PublicKeySet, SecretKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::config::{CeremonyConfig, ParticipantIndex};
use crate::message::{
    check_body, decode_deal, decode_public_key, decode_secret_key, Body, DecodedDeal, Header,
    Malformed, Round, SignedMessage,
};

const RESULT_DOMAIN: &[u8] = b"notary-dkg/v1/result";

/// Two validly signed headers of one sender for one round with different bodies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The version this view holds.
    pub first: Header,
    /// The other version (received directly, or echoed by another participant).
    pub second: Header,
}

impl Conflict {
    /// True if this is genuine evidence: same round and sender, both signed, digests differ.
    pub fn is_evidence(&self, config: &CeremonyConfig) -> bool {
        self.first.round == self.second.round
            && self.first.sender == self.second.sender
            && self.first.digest != self.second.digest
            && self.first.verify(config)
            && self.second.verify(config)
    }
}

/// Why a dealt share is invalid, as anyone can check from the revealed key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ShareFault {
    /// The ciphertext fails `blsttc`'s validity check.
    #[error("the ciphertext is not valid")]
    CiphertextInvalid,
    /// The plaintext is not a 32-byte field element.
    #[error("the plaintext is not a field element")]
    NotAScalar,
    /// The share does not lie on the dealer's committed polynomial.
    #[error("the share does not match the dealer's commitment")]
    NotOnCommitment,
}

/// A misbehaviour attributed to one participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Sent nothing (that reached this view) before the round's deadline.
    Silent {
        /// The round.
        round: Round,
    },
    /// Signed a message whose content is unusable.
    Malformed {
        /// The round.
        round: Round,
        /// What is wrong with it.
        reason: Malformed,
    },
    /// Signed two different messages for one round (sent different messages to different peers).
    Equivocation {
        /// The round.
        round: Round,
        /// The signed evidence.
        conflict: Box<Conflict>,
    },
    /// Dealt `recipient` a share that is invalid, proven by the recipient's revealed key.
    InvalidShare {
        /// Who received it.
        recipient: ParticipantIndex,
        /// What is wrong with it.
        reason: ShareFault,
    },
    /// Dealt `recipient` no share although its own echo shows it had `recipient`'s keys.
    OmittedShare {
        /// Who got nothing.
        recipient: ParticipantIndex,
    },
    /// Complained against `dealer` although the share it received was valid (or its complaint
    /// cannot be checked: the revealed key is not the one it published).
    FalseComplaint {
        /// The dealer wrongly accused.
        dealer: ParticipantIndex,
    },
}

impl Fault {
    /// Faults that exclude a dealer's contribution (the others are named but keep it).
    fn disqualifies(&self) -> bool {
        match self {
            Fault::Silent { round }
            | Fault::Malformed { round, .. }
            | Fault::Equivocation { round, .. } => *round <= Round::Deal,
            Fault::InvalidShare { .. } | Fault::OmittedShare { .. } => true,
            Fault::FalseComplaint { .. } => false,
        }
    }
}

/// A dealer that sent `recipient` no share while not acknowledging `recipient`'s keys: either
/// may be lying, so the dealer's contribution is dropped and neither is counted as faulty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// The dealer (dropped from the qualified set).
    pub dealer: ParticipantIndex,
    /// The participant that complained of getting no share.
    pub recipient: ParticipantIndex,
}

/// A fault with the participant it is attributed to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedFault {
    /// Who.
    pub participant: ParticipantIndex,
    /// What.
    pub fault: Fault,
}

/// One participant's (or one transcript's) view: the messages it holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct View {
    /// `messages[round slot][sender]`: well-formed, validly signed messages.
    pub messages: Vec<Vec<Option<SignedMessage>>>,
    /// `malformed[round slot][sender]`: validly signed messages with unusable content.
    pub malformed: Vec<Vec<Option<SignedMessage>>>,
    /// Directly received conflicting versions, one per (round, sender).
    pub conflicts: Vec<Conflict>,
}

impl View {
    pub fn new(n: usize) -> Self {
        Self {
            messages: vec![vec![None; n]; Round::ALL.len()],
            malformed: vec![vec![None; n]; Round::ALL.len()],
            conflicts: Vec::new(),
        }
    }

    pub fn message(&self, round: Round, sender: ParticipantIndex) -> Option<&SignedMessage> {
        self.messages.get(round.slot())?.get(sender.get())?.as_ref()
    }

    /// The first header held for (round, sender), well-formed or not.
    pub fn header(&self, round: Round, sender: ParticipantIndex) -> Option<&Header> {
        fn slot(
            v: &[Vec<Option<SignedMessage>>],
            round: Round,
            sender: ParticipantIndex,
        ) -> Option<&Header> {
            v.get(round.slot())?
                .get(sender.get())?
                .as_ref()
                .map(|m| &m.header)
        }
        slot(&self.messages, round, sender).or_else(|| slot(&self.malformed, round, sender))
    }

    pub fn has_conflict(&self, round: Round, sender: ParticipantIndex) -> bool {
        self.conflicts
            .iter()
            .any(|c| c.first.round == round && c.first.sender == sender)
    }
}

/// What the rules conclude from a view.
#[derive(Clone, Debug)]
pub(crate) struct Evaluation {
    pub faults: Vec<NamedFault>,
    pub disputes: Vec<Dispute>,
    pub qualified: Vec<ParticipantIndex>,
    pub public_key_set: Option<PublicKeySet>,
    pub result_digest: Option<[u8; 32]>,
    /// Participants whose round-4 digest matches `result_digest` (only when evaluated through round 4).
    pub confirmations: Vec<ParticipantIndex>,
    /// Participants whose round-4 digest differs.
    pub divergent: Vec<ParticipantIndex>,
}

impl Evaluation {
    pub fn faulty(&self) -> BTreeSet<ParticipantIndex> {
        self.faults.iter().map(|f| f.participant).collect()
    }
}

/// Evaluates a view through `through`: faults of rounds up to it, and (from round 3 on) the
/// complaints, the qualified set and the public key set.
pub(crate) fn evaluate(config: &CeremonyConfig, view: &View, through: Round) -> Evaluation {
    let mut faults: BTreeMap<ParticipantIndex, Vec<Fault>> = BTreeMap::new();
    let conflicts = all_conflicts(config, view, through);
    for round in Round::ALL.into_iter().filter(|r| *r <= through) {
        for s in config.indices() {
            let fault = if let Some(c) = conflicts
                .iter()
                .find(|c| c.first.round == round && c.first.sender == s)
            {
                Some(Fault::Equivocation {
                    round,
                    conflict: Box::new(c.clone()),
                })
            } else if let Some(m) = view.malformed[round.slot()][s.get()].as_ref() {
                let reason = check_body(m, config)
                    .err()
                    .unwrap_or(Malformed::Undecodable {
                        field: "body".into(),
                    });
                Some(Fault::Malformed { round, reason })
            } else if view.message(round, s).is_none() {
                Some(Fault::Silent { round })
            } else {
                None
            };
            if let Some(f) = fault {
                faults.entry(s).or_default().push(f);
            }
        }
    }

    // Dealers: a round-1 and a round-2 message, neither equivocated nor malformed.
    let mut deals: BTreeMap<ParticipantIndex, DecodedDeal> = BTreeMap::new();
    for d in config.indices() {
        let disqualified = faults
            .get(&d)
            .is_some_and(|fs| fs.iter().any(Fault::disqualifies));
        if disqualified || view.message(Round::Keys, d).is_none() {
            continue;
        }
        if let Some(deal) = view
            .message(Round::Deal, d)
            .and_then(|m| decode_deal(&m.body, config).ok())
        {
            deals.insert(d, deal);
        }
    }

    let mut disputes = Vec::new();
    if through >= Round::Complain {
        judge_complaints(config, view, &deals, &mut faults, &mut disputes);
    }

    let dropped: BTreeSet<ParticipantIndex> = disputes.iter().map(|d: &Dispute| d.dealer).collect();
    let qualified: Vec<ParticipantIndex> = deals
        .keys()
        .copied()
        .filter(|d| {
            !dropped.contains(d)
                && !faults
                    .get(d)
                    .is_some_and(|fs| fs.iter().any(Fault::disqualifies))
        })
        .collect();

    let (public_key_set, result_digest) = if through >= Round::Complain && !qualified.is_empty() {
        let mut sum: Option<Commitment> = None;
        for d in &qualified {
            let c = &deals[d].commitment;
            sum = Some(match sum {
                None => c.clone(),
                Some(acc) => acc + c,
            });
        }
        let pks = PublicKeySet::from(sum.expect("qualified is not empty"));
        let digest = result_digest(config, &qualified, &pks);
        (Some(pks), Some(digest))
    } else {
        (None, None)
    };

    let mut confirmations = Vec::new();
    let mut divergent = Vec::new();
    if through == Round::Confirm {
        let mine = result_digest.map(hex::encode);
        for s in config.indices() {
            if let Some(Body::Confirm { result, .. }) =
                view.message(Round::Confirm, s).map(|m| &m.body)
            {
                if Some(result) == mine.as_ref() {
                    confirmations.push(s);
                } else {
                    divergent.push(s);
                }
            }
        }
    }

    Evaluation {
        faults: faults
            .into_iter()
            .flat_map(|(participant, fs)| {
                fs.into_iter()
                    .map(move |fault| NamedFault { participant, fault })
            })
            .collect(),
        disputes,
        qualified,
        public_key_set,
        result_digest,
        confirmations,
        divergent,
    }
}

/// Direct conflicts plus those revealed by echoes (an echoed header that differs from the
/// one this view holds), at most one per (round, sender).
pub(crate) fn all_conflicts(config: &CeremonyConfig, view: &View, through: Round) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = view
        .conflicts
        .iter()
        .filter(|c| c.first.round <= through && c.is_evidence(config))
        .cloned()
        .collect();
    for round in [Round::Deal, Round::Complain, Round::Confirm]
        .into_iter()
        .filter(|r| *r <= through)
    {
        let previous =
            Round::try_from(round.number() - 1).expect("rounds 2..=4 have a predecessor");
        for m in view.messages[round.slot()].iter().flatten() {
            for echoed in m.body.echo().into_iter().flatten().flatten() {
                let s = echoed.sender;
                let Some(held) = view.header(previous, s) else {
                    continue;
                };
                let known = out
                    .iter()
                    .any(|c| c.first.round == previous && c.first.sender == s);
                if held.digest != echoed.digest && !known {
                    out.push(Conflict {
                        first: held.clone(),
                        second: echoed.clone(),
                    });
                }
            }
        }
    }
    out
}

fn judge_complaints(
    config: &CeremonyConfig,
    view: &View,
    deals: &BTreeMap<ParticipantIndex, DecodedDeal>,
    faults: &mut BTreeMap<ParticipantIndex, Vec<Fault>>,
    disputes: &mut Vec<Dispute>,
) {
    for j in config.indices() {
        // A complainer whose round-1 keys are in doubt cannot have its complaints judged.
        let keys_in_doubt = faults.get(&j).is_some_and(|fs| {
            fs.iter().any(|f| {
                matches!(
                    f,
                    Fault::Equivocation {
                        round: Round::Keys,
                        ..
                    } | Fault::Malformed {
                        round: Round::Keys,
                        ..
                    }
                )
            })
        });
        if keys_in_doubt {
            continue;
        }
        let Some(Body::Complain { complaints, .. }) =
            view.message(Round::Complain, j).map(|m| &m.body)
        else {
            continue;
        };
        for complaint in complaints {
            let d = complaint.dealer;
            let Some(deal) = deals.get(&d) else { continue };
            let verdict = judge_one(view, j, d, deal, complaint.revealed_key.as_deref());
            match verdict {
                Verdict::Dealer(f) => faults.entry(d).or_default().push(f),
                Verdict::Complainer => faults
                    .entry(j)
                    .or_default()
                    .push(Fault::FalseComplaint { dealer: d }),
                Verdict::Dispute => disputes.push(Dispute {
                    dealer: d,
                    recipient: j,
                }),
            }
        }
    }
}

enum Verdict {
    Dealer(Fault),
    Complainer,
    Dispute,
}

fn judge_one(
    view: &View,
    j: ParticipantIndex,
    d: ParticipantIndex,
    deal: &DecodedDeal,
    revealed_key: Option<&str>,
) -> Verdict {
    let dealt = deal.shares[j.get()].is_some();
    match (dealt, revealed_key) {
        (true, Some(key_hex)) => {
            let Some(published) = view.message(Round::Keys, j).and_then(|m| match &m.body {
                Body::Keys { enc_keys } => enc_keys.get(d.get()).and_then(|k| decode_public_key(k)),
                _ => None,
            }) else {
                return Verdict::Complainer;
            };
            let Some(sk) = decode_secret_key(key_hex) else {
                return Verdict::Complainer;
            };
            if sk.public_key() != published {
                return Verdict::Complainer;
            }
            let judged = match deal.ciphertext(j) {
                Ok(Some(ct)) => check_share(&sk, &ct, &deal.commitment, j).map(drop),
                _ => Err(ShareFault::CiphertextInvalid),
            };
            match judged {
                Ok(()) => Verdict::Complainer,
                Err(reason) => Verdict::Dealer(Fault::InvalidShare {
                    recipient: j,
                    reason,
                }),
            }
        }
        (true, None) => Verdict::Complainer,
        (false, _) => {
            let acknowledged = view
                .message(Round::Deal, d)
                .and_then(|m| m.body.echo())
                .and_then(|echo| echo.get(j.get()))
                .is_some_and(Option::is_some);
            if acknowledged {
                Verdict::Dealer(Fault::OmittedShare { recipient: j })
            } else {
                Verdict::Dispute
            }
        }
    }
}

/// Decrypts a share and checks it against the dealer's commitment at the recipient's point.
/// Returns the share's big-endian bytes (the caller zeroizes them).
pub(crate) fn check_share(
    key: &SecretKey,
    ct: &Ciphertext,
    commitment: &Commitment,
    recipient: ParticipantIndex,
) -> Result<zeroize::Zeroizing<[u8; 32]>, ShareFault> {
    let mut plain = key.decrypt(ct).ok_or(ShareFault::CiphertextInvalid)?;
    let bytes: Option<[u8; 32]> = plain.as_slice().try_into().ok();
    plain.zeroize();
    let bytes = zeroize::Zeroizing::new(bytes.ok_or(ShareFault::NotAScalar)?);
    let mut fr: Fr = Option::from(Fr::from_bytes_be(&bytes)).ok_or(ShareFault::NotAScalar)?;
    // `from_mut` wipes `fr`; the key wipes itself on drop.
    let share_key = SecretKey::from_mut(&mut fr);
    if share_key.public_key() != PublicKey::from(commitment.evaluate(recipient.point())) {
        return Err(ShareFault::NotOnCommitment);
    }
    Ok(bytes)
}

/// What every participant confirms in round 4: the qualified dealers and the public key set.
pub(crate) fn result_digest(
    config: &CeremonyConfig,
    qualified: &[ParticipantIndex],
    pks: &PublicKeySet,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RESULT_DOMAIN);
    config.ceremony.hash_into(&mut h);
    h.update((qualified.len() as u64).to_be_bytes());
    for d in qualified {
        h.update(d.0.to_be_bytes());
    }
    h.update(pks.to_bytes());
    h.finalize().into()
}
