//! One participant's ceremony: a deterministic state machine, messages in, messages out.
//!
//! Drive it like this (the transport and the clock belong to the caller):
//! 1. `Participant::new` creates round 1's message: send `outgoing()` to everyone.
//! 2. Feed every message received, of any round, to `handle`; it buffers early ones.
//! 3. When `round_complete()` (all `n` heard from) or the round's deadline has passed, call
//!    `advance`: it closes the round (whoever is missing is silent) and returns the next
//!    message to send, or `Step::Finished` after round 4.
//! 4. `finish` returns the key share, the public key set and the transcript, or a typed error.

use blsttc::poly::Poly;
use blsttc::{Fr, PublicKeySet, SecretKey, SecretKeyShare};
use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::config::{CeremonyConfig, ParticipantIndex, PublicConfig};
use crate::error::{state_name, CeremonyError, SetupError};
use crate::evaluate::{
    check_share, evaluate, Conflict, Dispute, Evaluation, Fault, NamedFault, View,
};
use crate::message::{
    check_body, decode_deal, decode_public_key, Body, Complaint, Round, SignedMessage,
};
use crate::transcript::Transcript;

/// What became of a message handed to [`Participant::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Stored (for the current round or a later one).
    Accepted,
    /// The same message was already held.
    Duplicate,
    /// For a round that is already closed: ignored (the view is fixed once a round closes, so
    /// that every participant's result depends only on what it held at each deadline).
    Late {
        /// The message's round.
        round: Round,
    },
    /// Not attributable to anyone (bad signature, other ceremony, unknown sender): dropped.
    Rejected {
        /// Why.
        reason: &'static str,
    },
    /// Signed by its sender and proof of a fault, now recorded.
    Faulty(NamedFault),
}

/// What [`Participant::advance`] asks of the caller next.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send this message to every other participant.
    Send(SignedMessage),
    /// The ceremony is over: call [`Participant::finish`].
    Finished,
}

/// A successful ceremony's output for one participant.
#[derive(Debug)]
pub struct CeremonyOutput {
    /// This participant's index; its share signs as `index` in `PublicKeySet::combine_signatures`.
    pub index: ParticipantIndex,
    /// This participant's BLS key share (wiped from memory on drop).
    pub secret_key_share: SecretKeyShare,
    /// The cluster's public key set, threshold `t`: `t + 1` shares sign.
    pub public_key_set: PublicKeySet,
    /// The dealers whose contributions were summed.
    pub qualified: Vec<ParticipantIndex>,
    /// Every fault this participant saw.
    pub faults: Vec<NamedFault>,
    /// Dealers dropped over a share neither side can prove.
    pub disputes: Vec<Dispute>,
    /// All public messages, signed: keep it; `verify_transcript` recomputes the keys from it.
    pub transcript: Transcript,
}

/// One participant of a ceremony.
pub struct Participant {
    config: CeremonyConfig,
    me: ParticipantIndex,
    signing_key: SigningKey,
    secrets: Secrets,
    /// The open round; `None` once round 4 is closed.
    round: Option<Round>,
    view: View,
    /// The result digest sent in round 4 (fixed when round 3 closes).
    confirmed: Option<[u8; 32]>,
}

/// Everything secret besides the signing key; wiped on drop.
struct Secrets {
    /// `enc_keys[d]`: the key dealer `d` encrypts our share to (one per dealer, so revealing
    /// one in a complaint discloses nothing else).
    enc_keys: Vec<SecretKey>,
    /// Our dealing polynomial (wipes itself on drop).
    poly: Poly,
    /// `shares[d]`: the valid share dealer `d` gave us, big-endian.
    shares: Vec<Option<Zeroizing<[u8; 32]>>>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("me", &self.me)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// Creates participant `me` and its round-1 message. All its randomness (encryption keys,
    /// the dealing polynomial) is drawn here, from `rng`.
    pub fn new<R: RngCore + CryptoRng>(
        config: CeremonyConfig,
        me: ParticipantIndex,
        signing_key: SigningKey,
        rng: &mut R,
    ) -> Result<Self, SetupError> {
        let n = config.n();
        let Some(key) = config.key(me) else {
            return Err(SetupError::IndexOutOfRange { index: me.0, n });
        };
        if *key != signing_key.verifying_key() {
            return Err(SetupError::WrongSigningKey { index: me.0 });
        }
        let enc_keys: Vec<SecretKey> = (0..n).map(|_| random_secret_key(rng)).collect();
        let poly = Poly::random(config.threshold, rng);
        let mut p = Self {
            secrets: Secrets {
                enc_keys,
                poly,
                shares: vec![None; n],
            },
            view: View::new(n),
            round: Some(Round::Keys),
            confirmed: None,
            config,
            me,
            signing_key,
        };
        let body = Body::Keys {
            enc_keys: p
                .secrets
                .enc_keys
                .iter()
                .map(|k| hex::encode(k.public_key().to_bytes()))
                .collect(),
        };
        p.emit(body);
        Ok(p)
    }

    /// Our index.
    pub fn index(&self) -> ParticipantIndex {
        self.me
    }

    /// The ceremony's configuration.
    pub fn config(&self) -> &CeremonyConfig {
        &self.config
    }

    /// The open round, `None` when finished.
    pub fn round(&self) -> Option<Round> {
        self.round
    }

    /// Our message for the open round (send it to every other participant).
    pub fn outgoing(&self) -> Option<&SignedMessage> {
        self.view.message(self.round?, self.me)
    }

    /// Our message for any round already produced (to resend to a peer that asks).
    pub fn own_message(&self, round: Round) -> Option<&SignedMessage> {
        self.view.message(round, self.me)
    }

    /// Participants not yet heard from in the open round.
    pub fn missing(&self) -> Vec<ParticipantIndex> {
        let Some(r) = self.round else {
            return Vec::new();
        };
        self.config
            .indices()
            .filter(|s| self.view.header(r, *s).is_none())
            .collect()
    }

    /// True when everyone has been heard from in the open round: advance without waiting.
    pub fn round_complete(&self) -> bool {
        self.round.is_some() && self.missing().is_empty()
    }

    /// Takes one received message. Never panics on network input.
    pub fn handle(&mut self, msg: SignedMessage) -> Handled {
        if msg.ceremony != self.config.ceremony {
            return Handled::Rejected {
                reason: "other ceremony",
            };
        }
        if self.config.key(msg.sender()).is_none() {
            return Handled::Rejected {
                reason: "unknown sender",
            };
        }
        if !msg.verify_signature(&self.config) {
            return Handled::Rejected {
                reason: "bad signature",
            };
        }
        let (round, sender) = (msg.round(), msg.sender());
        if self.round.is_none_or(|open| round < open) {
            return Handled::Late { round };
        }
        if let Some(held) = self.view.header(round, sender) {
            if held.digest == msg.header.digest {
                return Handled::Duplicate;
            }
            let conflict = Conflict {
                first: held.clone(),
                second: msg.header.clone(),
            };
            if !self.view.has_conflict(round, sender) {
                self.view.conflicts.push(conflict.clone());
            }
            return Handled::Faulty(NamedFault {
                participant: sender,
                fault: Fault::Equivocation {
                    round,
                    conflict: Box::new(conflict),
                },
            });
        }
        match check_body(&msg, &self.config) {
            Ok(()) => {
                self.view.messages[round.slot()][sender.get()] = Some(msg);
                Handled::Accepted
            }
            Err(reason) => {
                self.view.malformed[round.slot()][sender.get()] = Some(msg);
                Handled::Faulty(NamedFault {
                    participant: sender,
                    fault: Fault::Malformed { round, reason },
                })
            }
        }
    }

    /// Closes the open round (call when `round_complete()` or its deadline passed) and
    /// produces the next round's message.
    pub fn advance<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> Result<Step, CeremonyError> {
        let Some(closing) = self.round else {
            return Err(CeremonyError::WrongState {
                state: state_name(None),
                action: "advance",
            });
        };
        self.round = closing.next();
        let body = match closing {
            Round::Keys => self.deal_body(rng),
            Round::Deal => self.complain_body(),
            Round::Complain => {
                let eval = evaluate(&self.config, &self.view, Round::Complain);
                let digest = eval.result_digest.unwrap_or([0; 32]);
                self.confirmed = Some(digest);
                Body::Confirm {
                    result: hex::encode(digest),
                    echo: self.echo(Round::Complain),
                }
            }
            Round::Confirm => return Ok(Step::Finished),
        };
        Ok(Step::Send(self.emit(body)))
    }

    /// The outcome, once round 4 is closed.
    pub fn finish(self) -> Result<CeremonyOutput, CeremonyError> {
        if self.round.is_some() {
            return Err(CeremonyError::WrongState {
                state: state_name(self.round),
                action: "finish",
            });
        }
        let eval = evaluate(&self.config, &self.view, Round::Confirm);
        let public_key_set = check_outcome(&self.config, &eval)?;
        debug_assert_eq!(
            eval.result_digest, self.confirmed,
            "round 4 adds no evidence about rounds 1-2"
        );
        let mut sum = Fr::from(0u64);
        for d in &eval.qualified {
            let share = self.secrets.shares[d.get()]
                .as_ref()
                .ok_or(CeremonyError::OwnShareMissing { dealer: *d })?;
            let fr: Fr = Option::from(Fr::from_bytes_be(share))
                .ok_or(CeremonyError::OwnShareMissing { dealer: *d })?;
            sum += fr;
        }
        let secret_key_share = SecretKeyShare::from_mut(&mut sum);
        let transcript = Transcript::from_view(&self.config, &self.view, &eval);
        Ok(CeremonyOutput {
            index: self.me,
            secret_key_share,
            public_key_set,
            qualified: eval.qualified,
            faults: eval.faults,
            disputes: eval.disputes,
            transcript,
        })
    }

    /// Faults seen so far (through the last closed round), for progress reports.
    pub fn faults_so_far(&self) -> Vec<NamedFault> {
        let through = match self.round {
            None => Round::Confirm,
            Some(Round::Keys) => return Vec::new(),
            Some(r) => Round::try_from(r.number() - 1).expect("rounds 2..=4 have a predecessor"),
        };
        evaluate(&self.config, &self.view, through).faults
    }

    fn emit(&mut self, body: Body) -> SignedMessage {
        let msg = SignedMessage::sign(&self.config.ceremony, self.me, body, &self.signing_key);
        let round = msg.round();
        self.view.messages[round.slot()][self.me.get()] = Some(msg.clone());
        msg
    }

    fn echo(&self, round: Round) -> Vec<Option<crate::message::Header>> {
        self.config
            .indices()
            .map(|s| self.view.message(round, s).map(|m| m.header.clone()))
            .collect()
    }

    fn deal_body<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Body {
        let shares = self
            .config
            .indices()
            .map(|j| {
                let key = self
                    .view
                    .message(Round::Keys, j)
                    .and_then(|m| match &m.body {
                        Body::Keys { enc_keys } => enc_keys
                            .get(self.me.get())
                            .and_then(|k| decode_public_key(k)),
                        _ => None,
                    })?;
                let bytes = Zeroizing::new(self.secrets.poly.evaluate(j.point()).to_bytes_be());
                Some(hex::encode(key.encrypt_with_rng(rng, *bytes).to_bytes()))
            })
            .collect();
        Body::Deal {
            commitment: hex::encode(self.secrets.poly.commitment().to_bytes()),
            shares,
            echo: self.echo(Round::Keys),
        }
    }

    /// Checks every share dealt to us, keeps the valid ones, complains about the rest.
    fn complain_body(&mut self) -> Body {
        let mut complaints = Vec::new();
        for d in self.config.indices() {
            let Some(deal) = self
                .view
                .message(Round::Deal, d)
                .and_then(|m| decode_deal(&m.body, &self.config).ok())
            else {
                continue;
            };
            let key = &self.secrets.enc_keys[d.get()];
            let reveal = Complaint {
                dealer: d,
                revealed_key: Some(hex::encode(key.to_bytes())),
            };
            match deal.ciphertext(self.me) {
                Ok(None) => complaints.push(Complaint {
                    dealer: d,
                    revealed_key: None,
                }),
                Err(()) => complaints.push(reveal),
                Ok(Some(ct)) => match check_share(key, &ct, &deal.commitment, self.me) {
                    Ok(share) => self.secrets.shares[d.get()] = Some(share),
                    Err(_) => complaints.push(reveal),
                },
            }
        }
        Body::Complain {
            complaints,
            echo: self.echo(Round::Deal),
        }
    }

    /// The private state for the offline mode (contains secrets: write it 0600).
    pub(crate) fn to_private(&self) -> PrivateState {
        PrivateState {
            config: self.config.to_public(),
            me: self.me,
            round: self.round,
            enc_keys: self
                .secrets
                .enc_keys
                .iter()
                .map(|k| hex::encode(k.to_bytes()))
                .collect(),
            poly: hex::encode(Zeroizing::new(self.secrets.poly.to_bytes()).as_slice()),
            shares: self
                .secrets
                .shares
                .iter()
                .map(|s| s.as_ref().map(|b| hex::encode(b.as_slice())))
                .collect(),
            view: self.view.clone(),
            confirmed: self.confirmed.map(hex::encode),
        }
    }

    /// Restores a participant from its private state and its signing key.
    pub(crate) fn from_private(
        state: &PrivateState,
        signing_key: SigningKey,
    ) -> Result<Self, String> {
        let config = state.config.to_config().map_err(|e| e.to_string())?;
        if config.key(state.me) != Some(&signing_key.verifying_key()) {
            return Err(format!("the signing key is not participant {}'s", state.me));
        }
        let n = config.n();
        let enc_keys = state
            .enc_keys
            .iter()
            .map(|h| crate::message::decode_secret_key(h).ok_or("bad encryption key"))
            .collect::<Result<Vec<_>, _>>()?;
        let poly_bytes = Zeroizing::new(hex::decode(&state.poly).map_err(|_| "bad polynomial")?);
        let poly = Poly::from_bytes(poly_bytes.to_vec()).map_err(|_| "bad polynomial")?;
        let shares = state
            .shares
            .iter()
            .map(|s| match s {
                None => Ok(None),
                Some(h) => crate::message::decode_array::<32>(h)
                    .map(|b| Some(Zeroizing::new(b)))
                    .ok_or("bad share"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let confirmed = match &state.confirmed {
            None => None,
            Some(h) => Some(crate::message::decode_array::<32>(h).ok_or("bad digest")?),
        };
        if enc_keys.len() != n
            || shares.len() != n
            || poly.degree() > config.threshold
            || state.view.messages.len() != Round::ALL.len()
        {
            return Err("the private state does not fit the configuration".into());
        }
        Ok(Self {
            config,
            me: state.me,
            signing_key,
            secrets: Secrets {
                enc_keys,
                poly,
                shares,
            },
            round: state.round,
            view: state.view.clone(),
            confirmed,
        })
    }
}

/// Checks the evaluation's outcome against the ceremony's bounds; returns the key set.
pub(crate) fn check_outcome(
    config: &CeremonyConfig,
    eval: &Evaluation,
) -> Result<PublicKeySet, CeremonyError> {
    let faulty: Vec<ParticipantIndex> = eval.faulty().into_iter().collect();
    if faulty.len() > config.faults_max() {
        return Err(CeremonyError::TooManyFaults {
            faulty,
            max: config.faults_max(),
        });
    }
    let min = config.threshold + 1;
    let pks = match &eval.public_key_set {
        Some(pks) if eval.qualified.len() >= min => pks.clone(),
        _ => {
            return Err(CeremonyError::TooFewQualified {
                qualified: eval.qualified.len(),
                min,
            })
        }
    };
    if pks.threshold() != config.threshold {
        return Err(CeremonyError::DegenerateKey {
            degree: pks.threshold(),
            threshold: config.threshold,
        });
    }
    if eval.confirmations.len() < config.confirmations_min() {
        return Err(CeremonyError::NotConfirmed {
            confirmations: eval.confirmations.len(),
            needed: config.confirmations_min(),
            divergent: eval.divergent.clone(),
        });
    }
    Ok(pks)
}

fn random_secret_key<R: RngCore + CryptoRng>(rng: &mut R) -> SecretKey {
    rand::Rng::gen(rng)
}

/// A participant's whole state for the offline mode, secrets included.
#[derive(Serialize, Deserialize)]
pub(crate) struct PrivateState {
    pub config: PublicConfig,
    pub me: ParticipantIndex,
    pub round: Option<Round>,
    pub enc_keys: Vec<String>,
    pub poly: String,
    pub shares: Vec<Option<String>>,
    pub view: View,
    pub confirmed: Option<String>,
}

impl Drop for PrivateState {
    fn drop(&mut self) {
        self.enc_keys.zeroize();
        self.poly.zeroize();
        self.shares.zeroize();
    }
}
