//! Planted bugs for the simulator's negative controls (`sim-bugs` feature, never in production
//! builds). The simulator turns one on for the current thread and must see its checker fail.
//! Thread-local, so that parallel tests and simulator threads do not see each other's bugs.

use std::cell::Cell;

/// The share collector hands out a combined signature without verifying it.
pub const COMBINE_UNVERIFIED: u32 = 1 << 0;
/// The double-spend function ignores consumed inputs.
pub const NO_DOUBLE_SPEND_CHECK: u32 = 1 << 1;
/// The double-spend function ignores time windows.
pub const IGNORE_TIME_WINDOW: u32 = 1 << 2;

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
