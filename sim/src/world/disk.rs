//! Disk faults beyond crash-restart: a full disk. For a while every write of one replica's
//! store fails (`MemStore::fail_writes`, the typed I/O error RocksDB gives on ENOSPC) while
//! reads still work.
//!
//! The replica does what `notaryd` does with a failed write, which is local and fatal: it halts
//! and signs nothing more. A failed safety-record persist halts the consensus driver before
//! the vote or timeout it would allow leaves; a failed apply or certificate write halts the
//! executor before it signs a share or answers a client. The simulator stops the whole process
//! at the first failed write (in `notaryd` the other thread halts at its own next write, which
//! on a full disk comes within a round). When the disk has space again the operator restarts
//! the replica, which recovers from what was durable like any restarted replica.
//!
//! A storage error outside a full-disk window, or of another kind than I/O, is still the
//! `storage` violation.

use notary_core::StoreError;
use rand::Rng;

use super::{Ev, Sim};

impl Sim {
    /// Fills the disk of a random replica (within the `down_max` budget, which counts full
    /// disks) for a random while, and schedules the next full disk.
    pub(super) fn disk_full_random(&mut self) {
        let f = self.cfg.faults.clone();
        let i = self.rng.gen_range(0..self.nodes.len());
        if self.nodes[i].disk_full_until.is_none() && self.down_count() < f.down_max {
            let d = self.rng.gen_range(100..=f.disk_full_ms_max.max(100));
            self.nodes[i].disk_full_until = Some(self.now + d);
            self.nodes[i].store.fail_writes(true);
            self.stats.disk_fulls += 1;
            self.push(self.now + d, Ev::DiskFree { node: i });
        }
        let next = self.rng.gen_range(1..=f.disk_full_every_ms * 2);
        self.push(self.now + next, Ev::DiskFull);
    }

    /// The disk of replica `i` has space again: writes succeed, and a replica that halted on
    /// a failed write is restarted.
    pub(super) fn free_disk(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.disk_full_until = None;
        node.store.fail_writes(false);
        if node.halted && node.replica.is_none() {
            self.start(i);
        }
    }

    /// A write of replica `i` failed (`what` says which). On a full disk that is expected: the
    /// replica halts, nothing after the write runs. Anything else breaks `storage`.
    pub(super) fn storage_failed(&mut self, i: usize, what: &str, e: StoreError) {
        let full = self.nodes[i].disk_full_until.is_some();
        if !(full && matches!(e, StoreError::Io { .. })) {
            let id = self.nodes[i].id;
            return self
                .checker
                .fail("storage", format!("replica {id}: {what}: {e}"));
        }
        self.stats.halts += 1;
        self.stop(i);
        self.nodes[i].halted = true;
    }
}
