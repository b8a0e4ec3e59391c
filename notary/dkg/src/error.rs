//! Typed errors, with the numbers in them.

use crate::config::ParticipantIndex;
use crate::message::Round;

/// The ceremony's parameters are unusable (caught before any message is sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// `n` must be at least `3t + 1` (and at least 1).
    #[error("{n} participants cannot tolerate threshold {threshold}: need n >= 3t + 1")]
    ThresholdTooHigh {
        /// Participants.
        n: usize,
        /// Threshold asked for.
        threshold: usize,
    },
    /// Too many participants.
    #[error("{n} participants exceed the maximum of {max}")]
    TooManyParticipants {
        /// Participants.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// Two participants share a key.
    #[error("participants {first} and {second} have the same key")]
    DuplicateKey {
        /// The first index.
        first: usize,
        /// The second index.
        second: usize,
    },
    /// A key does not decode.
    #[error("the key of participant {index} does not decode")]
    BadKey {
        /// The index.
        index: usize,
    },
    /// Our index is not in `0..n`.
    #[error("index {index} is not among the {n} participants")]
    IndexOutOfRange {
        /// Our index.
        index: u16,
        /// Participants.
        n: usize,
    },
    /// Our signing key is not the one the configuration lists for our index.
    #[error("the signing key is not participant {index}'s key in the configuration")]
    WrongSigningKey {
        /// Our index.
        index: u16,
    },
}

/// The ceremony could not produce keys (the typed failure the issue asks for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    /// More participants misbehaved than the threshold tolerates.
    #[error("{} participants are faulty ({faulty:?}), more than the {max} tolerated", faulty.len())]
    TooManyFaults {
        /// The faulty participants.
        faulty: Vec<ParticipantIndex>,
        /// `t`.
        max: usize,
    },
    /// Too few dealers remain qualified to guarantee an honest contribution.
    #[error("only {qualified} dealers are qualified, at least {min} are needed")]
    TooFewQualified {
        /// Qualified dealers.
        qualified: usize,
        /// `t + 1`.
        min: usize,
    },
    /// Too few participants confirmed the result this participant computed.
    #[error("{confirmations} participants confirmed our result, {needed} are needed; {divergent:?} computed another")]
    NotConfirmed {
        /// Matching confirmations, our own included.
        confirmations: usize,
        /// `n - t`.
        needed: usize,
        /// Participants that confirmed a different result.
        divergent: Vec<ParticipantIndex>,
    },
    /// The joint polynomial has the wrong degree (cannot happen with one honest dealer).
    #[error("the joint public polynomial has degree {degree}, expected {threshold}")]
    DegenerateKey {
        /// Its degree.
        degree: usize,
        /// `t`.
        threshold: usize,
    },
    /// A qualified dealer's share for us is unusable (an internal inconsistency: we would
    /// have complained and the dealer would be disqualified).
    #[error("no valid share from qualified dealer {dealer}")]
    OwnShareMissing {
        /// The dealer.
        dealer: ParticipantIndex,
    },
    /// The call does not fit the ceremony's state.
    #[error("the ceremony is {state}, cannot {action}")]
    WrongState {
        /// Where it is.
        state: String,
        /// What was asked.
        action: &'static str,
    },
}

/// A transcript failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    /// The configuration in the transcript does not decode.
    #[error("transcript configuration: {0}")]
    Config(#[from] SetupError),
    /// The participants' keys differ from the expected ones.
    #[error("the transcript lists other participant keys than expected (at index {index})")]
    KeysMismatch {
        /// First differing index (or the expected count if the lengths differ).
        index: usize,
    },
    /// A message's signature, ceremony or header does not check.
    #[error(
        "message of participant {sender} for round {round} is not validly signed for this ceremony"
    )]
    BadSignature {
        /// Sender.
        sender: u16,
        /// Round.
        round: u8,
    },
    /// Two messages for one (round, sender) among the well-formed ones.
    #[error("two messages of participant {sender} for round {round}")]
    DuplicateMessage {
        /// Sender.
        sender: u16,
        /// Round.
        round: u8,
    },
    /// A message listed as malformed is well-formed (or one listed as well-formed is not).
    #[error("message of participant {sender} for round {round} is misclassified as {claimed}")]
    Misclassified {
        /// Sender.
        sender: u16,
        /// Round.
        round: u8,
        /// What the transcript claims.
        claimed: &'static str,
    },
    /// An equivocation record is not genuine evidence.
    #[error("equivocation record {index} is not evidence")]
    BadConflict {
        /// Its position.
        index: usize,
    },
    /// The recomputed ceremony fails.
    #[error("the recomputed ceremony fails: {0}")]
    Ceremony(#[from] CeremonyError),
    /// The transcript's stated result differs from the recomputed one.
    #[error("the transcript states a public key set that differs from the recomputed one")]
    ResultMismatch,
}

/// Offline round files failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The private state is readable by others.
    #[error("{path} has mode {mode:o}: the private state must not be readable by group or others (chmod 600)")]
    StateNotPrivate {
        /// The file.
        path: std::path::PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A file does not parse.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The state already exists (init twice).
    #[error("{path} already exists: refusing to overwrite a ceremony's private state")]
    StateExists {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Setup.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Ceremony.
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
}

/// Helper for the round a message was late for.
pub(crate) fn state_name(round: Option<Round>) -> String {
    match round {
        Some(r) => format!("in round {r}"),
        None => "finished".to_owned(),
    }
}
