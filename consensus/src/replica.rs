//! The replica: one sans-IO state machine, events in, actions out.
//!
//! The driver calls [`Replica::handle`] with its clock and one [`Event`], and executes the
//! returned [`Action`]s in the order persist → send → commit → timers (the returned vector is
//! already in that order). A vote or timeout signed in `handle` is never in the same output as the
//! persist that allows it: it is held until the driver reports [`Event::Persisted`] with that
//! persist's sequence number.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;

use crate::committee::Committee;
use crate::ids::{BlockId, Height, ReplicaId, Round, TimeMs};
use crate::limits::{
    AWAITING_PERSIST_MAX, BUFFERED_BLOCKS_MAX, FETCH_BLOCKS_MAX, MISSING_BLOCKS_MAX,
    PAYLOAD_BYTES_MAX, ROUND_AHEAD_MAX, SYNC_BLOCKS_MAX,
};
use crate::messages::{
    BlockRequest, BlockResponse, Message, Proposal, Reject, SyncInfo, SyncRequest, SyncResponse,
    TimeoutMsg, Verified,
};
use crate::pending::{PendingTimeouts, PendingVotes, TimeoutOutcome, VoteOutcome};
use crate::reputation::{leader_for, History, LeaderChoice};
use crate::safety::{SafetyData, SafetyRules, Signed};
use crate::tree::BlockTree;
use crate::types::{
    payload_digest, Block, BlockHeader, CommitProof, CommittedBlock, QuorumCert, Timeout,
    TimeoutCert, Vote,
};

/// Plain configuration, validated once by [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica.
    pub me: ReplicaId,
    /// First round timeout; doubles after each consecutive timeout. Default 1000 ms.
    pub round_timeout_ms: u64,
    /// Cap of the back-off. Default 30 000 ms.
    pub round_timeout_ms_max: u64,
    /// Refuse to vote for a block timestamped further ahead of our clock. Default 1000 ms.
    pub max_clock_drift_ms: u64,
    /// Largest payload accepted and proposed. Default 1 MiB, at most `PAYLOAD_BYTES_MAX`.
    pub payload_bytes_max: usize,
    /// Wait this long for a missing block to arrive on its own before fetching it. Default 50 ms.
    pub fetch_delay_ms: u64,
    /// Retry a fetch or sync after this long. Default 300 ms.
    pub fetch_retry_ms: u64,
}

impl Config {
    /// The defaults for replica `me`.
    pub fn new(me: ReplicaId) -> Config {
        Config {
            me,
            round_timeout_ms: 1000,
            round_timeout_ms_max: 30_000,
            max_clock_drift_ms: 1000,
            payload_bytes_max: 1024 * 1024,
            fetch_delay_ms: 50,
            fetch_retry_ms: 300,
        }
    }

    /// Checks the configuration against the committee.
    pub fn validate(&self, committee: &Committee) -> Result<(), ConfigError> {
        if !committee.contains(self.me) {
            return Err(ConfigError::NotMember(self.me));
        }
        if self.payload_bytes_max > PAYLOAD_BYTES_MAX {
            return Err(ConfigError::PayloadTooLarge {
                bytes: self.payload_bytes_max,
                max: PAYLOAD_BYTES_MAX,
            });
        }
        if self.round_timeout_ms == 0 || self.round_timeout_ms > self.round_timeout_ms_max {
            return Err(ConfigError::Timeouts {
                base_ms: self.round_timeout_ms,
                max_ms: self.round_timeout_ms_max,
            });
        }
        Ok(())
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `me` is not in the committee.
    #[error("replica {0} is not in the committee")]
    NotMember(ReplicaId),
    /// Payload bound above the hard limit.
    #[error("payload_bytes_max {bytes} exceeds {max}")]
    PayloadTooLarge {
        /// Configured.
        bytes: usize,
        /// Hard limit.
        max: usize,
    },
    /// Timeouts must satisfy 0 < base <= max.
    #[error("round timeout {base_ms} ms must be in 1..={max_ms} ms")]
    Timeouts {
        /// Base.
        base_ms: u64,
        /// Cap.
        max_ms: u64,
    },
}

/// What the replica needs from the application, passed into every [`Replica::handle`].
pub trait Application {
    /// A payload for a new block extending `uncommitted`: the ancestors, oldest first, that the
    /// application has not yet received in an `Action::Commit` (their payloads must not be
    /// proposed again). Empty means nothing to propose.
    fn propose(&mut self, uncommitted: &[&Block], payload_bytes_max: usize) -> Vec<u8>;
    /// Whether this replica may vote for `block` extending `uncommitted`. `false` is a veto.
    fn validate(&mut self, block: &Block, uncommitted: &[&Block]) -> bool;
    /// Whether the application holds work that is not committed yet. While it does (or an
    /// uncommitted non-empty block exists) the round timer runs; otherwise the cluster idles
    /// without timeouts.
    fn has_pending_work(&self) -> bool;
    /// Whether the application can take another block now (execution keeps up). A leader
    /// told `false` holds its proposal, empty or not, until a later event (the driver sends
    /// [`Event::PayloadReady`] once the application is ready again). Pacing proposals by
    /// execution makes blocks grow with the load instead of queueing many small blocks
    /// behind a slower stage; holding must stay far shorter than the round timeout.
    /// Default: always ready.
    fn ready_to_propose(&mut self) -> bool {
        true
    }
}

/// Durable state handed to [`Replica::new`] after a restart.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The last durable safety record.
    pub safety: Option<SafetyData>,
    /// The last committed block with its proof.
    pub committed: Option<CommittedBlock>,
    /// The committed blocks just before `committed`, oldest first, contiguous (at most
    /// [`crate::reputation::HISTORY_BLOCKS_MAX`] are used). Leader reputation reads them: a
    /// replica restarted without them cannot be certain of the leaders the others compute,
    /// and if too many replicas restart at once the cluster can stall (simulator seed 750).
    pub history: Vec<Block>,
}

/// An input to the state machine.
#[derive(Clone, Debug)]
pub enum Event {
    /// Nothing happened; lets the replica arm its timers (call once after start).
    Tick,
    /// A message verified with [`Message::verify`] (possibly on another thread).
    Message(Verified),
    /// A decoded message the replica verifies itself.
    Unverified {
        /// Transport-authenticated sender.
        from: ReplicaId,
        /// The message.
        message: Message,
    },
    /// The timer set by the last [`Action::SetTimer`] fired.
    TimerFired,
    /// The application has payload to propose.
    PayloadReady,
    /// The record of [`Action::Persist`] with this sequence number (and all before) is durable.
    Persisted {
        /// Sequence number.
        seq: u64,
    },
}

/// An output for the driver, executed in the order persist → send → commit → timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make `record` durable (fsync), then report `Event::Persisted { seq }`.
    Persist {
        /// Sequence number, increasing.
        seq: u64,
        /// The full record (replace the previous one).
        record: SafetyData,
    },
    /// Send to one replica.
    Send {
        /// Destination.
        to: ReplicaId,
        /// The message.
        message: Message,
    },
    /// Send to every other replica.
    Broadcast {
        /// The message.
        message: Message,
    },
    /// A block is committed: exactly once per block, heights contiguous from 1.
    Commit {
        /// The block.
        block: Block,
        /// Its standalone commit proof.
        proof: CommitProof,
    },
    /// Answer `request` from the committed store with `SyncResponse::from_store` and send it to
    /// `to` as `Message::SyncResponse`.
    ServeSync {
        /// Who asked.
        to: ReplicaId,
        /// What was asked (count already clamped).
        request: SyncRequest,
    },
    /// Deliver `Event::TimerFired` at `deadline` (replaces any earlier timer).
    SetTimer {
        /// When.
        deadline: TimeMs,
    },
}

impl Action {
    fn order(&self) -> u8 {
        match self {
            Action::Persist { .. } => 0,
            Action::Send { .. } | Action::Broadcast { .. } | Action::ServeSync { .. } => 1,
            Action::Commit { .. } => 2,
            Action::SetTimer { .. } => 3,
        }
    }
}

/// Counters for the driver to export.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Current round.
    pub round: Round,
    /// Leader of the current round.
    pub leader: ReplicaId,
    /// Highest committed height.
    pub committed_height: Height,
    /// Round of the highest QC.
    pub high_qc_round: Round,
    /// Rounds entered through a QC.
    pub round_changes_qc: u64,
    /// Rounds entered through a TC.
    pub round_changes_tc: u64,
    /// Rounds this replica gave up on (local timer expiry or joining f+1 timeouts).
    pub local_timeouts: u64,
    /// Proposals made.
    pub proposals_sent: u64,
    /// Votes released.
    pub votes_sent: u64,
    /// Blocks committed (including synced ones).
    pub blocks_committed: u64,
    /// Blocks committed through sync.
    pub blocks_synced: u64,
    /// Blocks the application vetoed.
    pub vetoed_blocks: u64,
    /// Votes refused because the block's timestamp was too far ahead of our clock.
    pub clock_drift_refusals: u64,
    /// Signatures the safety rules refused.
    pub not_safe: u64,
    /// Block fetch requests sent.
    pub fetch_requests: u64,
    /// Sync requests sent.
    pub sync_requests: u64,
    /// Events handled.
    pub events_handled: u64,
    /// Equivocations (double votes / double timeouts) detected, per replica.
    pub equivocations: BTreeMap<ReplicaId, u64>,
    /// Messages rejected, by reason (`Reject::kind`).
    pub rejected: BTreeMap<&'static str, u64>,
}

enum Held {
    Vote(Vote),
    Timeout(Timeout),
}

struct Missing {
    height: Height,
    peers: Vec<ReplicaId>,
    next_try: TimeMs,
    attempts: u32,
}

/// One replica's consensus state machine.
pub struct Replica {
    cfg: Config,
    committee: Committee,
    safety: SafetyRules,
    tree: BlockTree,
    high_qc: QuorumCert,
    high_tc: Option<TimeoutCert>,
    commit_qc: Option<QuorumCert>,
    round: Round,
    proposed_in: Round,
    timed_out: bool,
    votes: PendingVotes,
    timeouts: PendingTimeouts,
    buffered: Vec<(Block, bool)>,
    missing: BTreeMap<BlockId, Missing>,
    persist_seq: u64,
    held: Vec<(u64, Held)>,
    round_deadline: Option<TimeMs>,
    timer_set: Option<TimeMs>,
    consecutive_timeouts: u32,
    now: TimeMs,
    stats: Stats,
    out: Vec<Action>,
    /// Blocks committed during the current `handle` call: the application learns of them only
    /// when the driver executes the returned actions, so until then they count as uncommitted
    /// for `Application::propose` and `validate`.
    fresh_commits: Vec<Block>,
    /// The first proposal seen per recent round (rounds >= current - 1, at most
    /// `ROUND_AHEAD_MAX + 2` entries), to detect leader equivocation.
    proposals_seen: BTreeMap<Round, BlockId>,
    /// The last committed blocks, for the leader schedule (`reputation.rs`).
    history: History,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.cfg.me)
            .field("round", &self.round)
            .field("committed", &self.tree.root().height())
            .finish_non_exhaustive()
    }
}

mod handlers;
#[cfg(test)]
mod tests;
