//! Planted bugs for the simulator's negative controls (`sim-bugs` feature, never in production
//! builds). Each is a known way to break the protocol; the simulator turns one on for the
//! current thread and must see its checker fail. The switch is thread-local so that parallel
//! tests and simulator threads do not see each other's bugs.

use std::cell::Cell;

/// Vote rule 2 (and the TC part of rule 3, which guards the same lock, both in the safety
/// rules and in `Block::verify`) is skipped.
pub const SKIP_LOCKED_ROUND_CHECK: u32 = 1 << 0;
/// A QC commits the block it certifies (a 1-chain) instead of its parent on a 2-chain.
pub const COMMIT_ON_ONE_CHAIN: u32 = 1 << 1;
/// A new vote is sent at once, without first persisting the record that allows it.
pub const VOTE_BEFORE_PERSIST: u32 = 1 << 2;
/// A restarted replica ignores its durable safety record.
pub const FORGET_SAFETY_ON_RESTART: u32 = 1 << 3;

thread_local! {
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// Turns on exactly the bugs in `mask` for this thread (0 turns all off).
pub fn set(mask: u32) {
    ACTIVE.with(|a| a.set(mask));
}

/// Whether `bug` is on for this thread.
pub fn active(bug: u32) -> bool {
    ACTIVE.with(|a| a.get() & bug != 0)
}
