//! Every bound on what a peer can make this crate hold or do, in one place.
//!
//! Each limit is named with its unit last and has a test at the bound (in the module where it is
//! enforced, named `limit_<name>_...`). Memory held for a peer is bounded by these numbers times
//! the committee size, whatever the peer sends.

/// How far ahead of our current round a proposal, vote or timeout may be and still be kept.
/// Anything further is rejected: a Byzantine replica cannot make us allocate state for far rounds.
/// A replica that is genuinely that far behind catches up through the QC in the message instead.
pub const ROUND_AHEAD_MAX: u64 = 64;

/// Total votes held in partial vote sets, across rounds (a second guard beside the round window).
pub const PENDING_VOTES_MAX: usize = 4096;

/// Total timeouts held in partial timeout sets, across rounds.
pub const PENDING_TIMEOUTS_MAX: usize = 4096;

/// Blocks buffered because their parent has not arrived yet (early or orphaned proposals).
pub const BUFFERED_BLOCKS_MAX: usize = 128;

/// The largest payload the core accepts in a block, whatever the configuration says.
/// A postcard frame of a block must fit in a transport frame of a few MiB.
pub const PAYLOAD_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Committed blocks in one sync response.
pub const SYNC_BLOCKS_MAX: usize = 64;

/// Uncommitted blocks in one block-fetch response.
pub const FETCH_BLOCKS_MAX: usize = 32;

/// Blocks we are trying to fetch at once.
pub const MISSING_BLOCKS_MAX: usize = 64;

/// Headers in a commit proof (the indirect-commit chain from a block to its directly committed
/// descendant). In a live cluster this is 0 or a handful.
pub const PROOF_HEADERS_MAX: usize = 1024;

/// Messages from replicas outside the committee: none are kept (they are rejected in `verify`).
pub const UNKNOWN_SENDER_MESSAGES_MAX: usize = 0;

/// The largest committee the quorum arithmetic and `u16` ids are exercised with.
pub const COMMITTEE_SIZE_MAX: usize = 1024;

/// Votes or timeouts produced but waiting for the persist that allows them to leave.
pub const AWAITING_PERSIST_MAX: usize = 64;

/// Uncommitted blocks held in the block tree. A Byzantine leader can propose many blocks for its
/// round; beyond this we refuse new blocks until commits prune the tree.
pub const TREE_BLOCKS_MAX: usize = 1024;

/// Uncommitted blocks kept in the safety record for recovery (the newest ones). In a live
/// cluster the chain from the committed root to a voted block is 2 to 4 blocks; the record is
/// rewritten on every vote, so its size (these blocks' payloads) is paid on every fsync.
pub const RECORD_BLOCKS_MAX: usize = 8;
