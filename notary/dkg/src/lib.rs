//! `notary-dkg`: the distributed key generation ceremony that gives each of the `n` agencies
//! its threshold BLS key share without anyone ever holding the cluster key.
//!
//! One job: a pure, deterministic ceremony state machine (signed messages in, signed messages
//! out), its public transcript and the transcript's independent verification, plus the
//! file-based rounds of the offline (air-gapped) mode. No networking, no async, no clock: the
//! caller delivers messages and says when a round's deadline has passed.
//!
//! The scheme is Pedersen's joint-Feldman DKG with publicly verifiable complaints (see
//! `docs/PROTOCOL.md`, "Distributed key generation"), over `blsttc`'s polynomial commitments:
//! 1. **Keys**: each participant publishes one fresh BLS encryption key per dealer.
//! 2. **Deal**: each dealer publishes the commitment to a random degree-`t` polynomial and, for
//!    each participant, the share encrypted to that participant's key for this dealer.
//! 3. **Complain**: a participant whose share does not match the commitment reveals the
//!    encryption key it used for that dealer, so anyone can decrypt and judge who lied.
//! 4. **Confirm**: each publishes a digest of (qualified dealers, public key set).
//!
//! Rounds 2–4 also echo the signed headers of the previous round, so a participant that sends
//! different messages to different peers is caught with two signatures as evidence.
//!
//! Invariants:
//! - With `n >= 3t + 1` and at most `t` faulty participants, every honest dealer is qualified,
//!   the qualified set holds at least `t + 1` honest dealers, and the output is exactly what
//!   `blsttc::SecretKeySet::random(t)` would give a dealer: share `i` is the joint polynomial
//!   at `i + 1`, and `PublicKeySet` has threshold `t`.
//! - A participant only returns keys when `n - t` participants signed the same result digest,
//!   so no two participants ever return different cluster keys.
//! - Every fault named in a transcript is backed by signed messages in it (except silence,
//!   which is the holder's observation), and `verify_transcript` re-derives every conclusion
//!   with the same code the participants ran.
//! - Secrets (shares, encryption keys, the dealing polynomial) are wiped on drop where `blsttc`
//!   allows, never logged (`Debug` prints no secret), and written only to 0600 files.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod evaluate;
mod message;
pub mod offline;
mod participant;
mod transcript;

pub use config::{CeremonyConfig, CeremonyId, ParticipantIndex, PublicConfig, PARTICIPANTS_MAX};
pub use error::{CeremonyError, OfflineError, SetupError, TranscriptError};
pub use evaluate::{Conflict, Dispute, Fault, NamedFault, ShareFault};
pub use message::{Body, Complaint, Header, Malformed, Round, SignedMessage};
pub use participant::{CeremonyOutput, Handled, Participant, Step};
pub use transcript::{verify_transcript, Transcript, VerifiedResult};
