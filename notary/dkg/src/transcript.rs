//! The public record of a ceremony and its independent verification.

use blsttc::{PublicKeySet, PublicKeyShare};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::config::{ParticipantIndex, PublicConfig};
use crate::error::TranscriptError;
use crate::evaluate::{all_conflicts, evaluate, Conflict, Dispute, Evaluation, NamedFault, View};
use crate::message::{check_body, Round, SignedMessage};
use crate::participant::check_outcome;

/// Everything public a participant held at the end: every message signed by its sender, the
/// evidence of equivocation, and the result it computed. Serde JSON; safe to publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// The ceremony's parameters.
    pub config: PublicConfig,
    /// Well-formed messages, at most one per (round, sender), ordered by round then sender.
    pub messages: Vec<SignedMessage>,
    /// Signed messages whose content was unusable (evidence against their senders).
    pub malformed: Vec<SignedMessage>,
    /// Pairs of differently signed messages of one sender for one round.
    pub conflicts: Vec<Conflict>,
    /// The public key set the holder computed, hex of `PublicKeySet::to_bytes` (informative:
    /// verification recomputes it and rejects the transcript if it differs).
    pub public_key_set: Option<String>,
}

/// What [`verify_transcript`] recomputes.
#[derive(Clone, Debug)]
pub struct VerifiedResult {
    /// The cluster's public key set (threshold `t`).
    pub public_key_set: PublicKeySet,
    /// `public_key_shares[i]`: participant `i`'s public key share.
    pub public_key_shares: Vec<PublicKeyShare>,
    /// The dealers whose contributions were used.
    pub qualified: Vec<ParticipantIndex>,
    /// Who misbehaved, and how.
    pub faults: Vec<NamedFault>,
    /// Dealers dropped over an unprovable missing share.
    pub disputes: Vec<Dispute>,
    /// Participants whose signed round-4 confirmation matches the recomputed result.
    pub confirmations: Vec<ParticipantIndex>,
}

impl Transcript {
    pub(crate) fn from_view(
        config: &crate::config::CeremonyConfig,
        view: &View,
        eval: &Evaluation,
    ) -> Self {
        let collect = |v: &Vec<Vec<Option<SignedMessage>>>| {
            v.iter().flatten().flatten().cloned().collect::<Vec<_>>()
        };
        Transcript {
            config: config.to_public(),
            messages: collect(&view.messages),
            malformed: collect(&view.malformed),
            conflicts: all_conflicts(config, view, Round::Confirm),
            public_key_set: eval
                .public_key_set
                .as_ref()
                .map(|p| hex::encode(p.to_bytes())),
        }
    }

    /// Reads a transcript from JSON.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Writes the transcript as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a transcript of strings and vectors always serialises")
    }
}

/// Recomputes a ceremony from its transcript alone: checks every signature against the
/// `expected` participant keys, re-applies the ceremony's rules (the same code the participants
/// ran), and returns the cluster key, every public key share and the named faults. Rejects a
/// transcript whose messages were altered, whose evidence is not evidence, whose result was
/// not confirmed by `n - t` participants, or whose stated key differs from the recomputed one.
pub fn verify_transcript(
    transcript: &Transcript,
    expected: &[VerifyingKey],
) -> Result<VerifiedResult, TranscriptError> {
    let config = transcript.config.to_config()?;
    if config.participants.len() != expected.len() {
        return Err(TranscriptError::KeysMismatch {
            index: expected.len(),
        });
    }
    if let Some(index) = config
        .participants
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
    {
        return Err(TranscriptError::KeysMismatch { index });
    }
    let mut view = View::new(config.n());
    for (list, well_formed) in [(&transcript.messages, true), (&transcript.malformed, false)] {
        for m in list {
            let (sender, round) = (m.sender().0, m.round().number());
            if config.key(m.sender()).is_none() || !m.verify_signature(&config) {
                return Err(TranscriptError::BadSignature { sender, round });
            }
            if check_body(m, &config).is_ok() != well_formed {
                let claimed = if well_formed {
                    "well-formed"
                } else {
                    "malformed"
                };
                return Err(TranscriptError::Misclassified {
                    sender,
                    round,
                    claimed,
                });
            }
            if view.header(m.round(), m.sender()).is_some() {
                return Err(TranscriptError::DuplicateMessage { sender, round });
            }
            let slots = if well_formed {
                &mut view.messages
            } else {
                &mut view.malformed
            };
            slots[m.round().slot()][m.sender().get()] = Some(m.clone());
        }
    }
    for (index, c) in transcript.conflicts.iter().enumerate() {
        if !c.is_evidence(&config) {
            return Err(TranscriptError::BadConflict { index });
        }
        if !view.has_conflict(c.first.round, c.first.sender) {
            view.conflicts.push(c.clone());
        }
    }
    let eval = evaluate(&config, &view, Round::Confirm);
    let public_key_set = check_outcome(&config, &eval)?;
    if transcript.public_key_set.as_deref() != Some(hex::encode(public_key_set.to_bytes()).as_str())
    {
        return Err(TranscriptError::ResultMismatch);
    }
    let public_key_shares = config
        .indices()
        .map(|i| public_key_set.public_key_share(i.get()))
        .collect();
    Ok(VerifiedResult {
        public_key_set,
        public_key_shares,
        qualified: eval.qualified,
        faults: eval.faults,
        disputes: eval.disputes,
        confirmations: eval.confirmations,
    })
}
