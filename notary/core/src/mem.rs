//! `MemStore`: the in-memory twin of the RocksDB store, for tests and the simulator.
//!
//! Durability as in the RocksDB store: a block and a safety record are synced when the write
//! returns; a certificate is not, and becomes durable with the next synced write (they share
//! one write-ahead log). Fault injection hooks: [`MemStore::fail_writes`] makes every later
//! write fail with a typed I/O error (a full disk), and [`MemStore::durable_copy`] gives what a
//! restarted replica would find on disk: everything but the certificates stored since the
//! last synced write.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use notary_types::{ClusterSignature, Height, StateRef, TxId};

use crate::store::{BlockRecord, BlockWrite, DecisionRecord, Store, StoreError};

#[derive(Debug, Clone, Default)]
struct State {
    applied: Height,
    consumed: HashMap<StateRef, TxId>,
    decisions: HashMap<TxId, DecisionRecord>,
    blocks: BTreeMap<Height, BlockRecord>,
    certificates: BTreeMap<Height, ClusterSignature>,
    /// Certificates stored since the last synced write: a crash now loses them.
    unsynced: Vec<Height>,
    safety: Option<Vec<u8>>,
}

/// An in-memory [`Store`]. Cloning shares the same state (like two handles on one database).
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    failing: Arc<AtomicBool>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every write fails with [`StoreError::Io`] (`true`) or succeeds again (`false`).
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// An independent store holding what is durable now: what a replica restarted after a crash
    /// at this instant would read.
    pub fn durable_copy(&self) -> Self {
        let mut state = self.lock().clone();
        for h in std::mem::take(&mut state.unsynced) {
            state.certificates.remove(&h);
        }
        Self {
            state: Arc::new(Mutex::new(state)),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied block: every write builds
        // its changes first and mutates only after all checks, so a poisoned state is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_writable(&self, op: &'static str) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                op,
                message: "injected fault: no space left on device".into(),
            });
        }
        Ok(())
    }
}

impl Store for MemStore {
    fn applied_height(&self) -> Result<Height, StoreError> {
        Ok(self.lock().applied)
    }

    fn consumed_by(&self, state: &StateRef) -> Result<Option<TxId>, StoreError> {
        Ok(self.lock().consumed.get(state).copied())
    }

    fn decision(&self, tx_id: &TxId) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.lock().decisions.get(tx_id).copied())
    }

    fn apply_block(&self, write: &BlockWrite) -> Result<(), StoreError> {
        let mut s = self.lock();
        let height = write.record.height;
        if height <= s.applied {
            return Ok(());
        }
        if height.0 != s.applied.0 + 1 {
            return Err(StoreError::HeightGap {
                expected: s.applied.0 + 1,
                got: height.0,
            });
        }
        self.check_writable("apply_block")?;
        s.consumed.extend(write.consumed.iter().copied());
        s.decisions.extend(write.decisions.iter().copied());
        s.blocks.insert(height, write.record.clone());
        s.applied = height;
        s.unsynced.clear();
        Ok(())
    }

    fn block(&self, height: Height) -> Result<Option<BlockRecord>, StoreError> {
        Ok(self.lock().blocks.get(&height).cloned())
    }

    fn put_certificate(
        &self,
        height: Height,
        signature: &ClusterSignature,
    ) -> Result<(), StoreError> {
        self.check_writable("put_certificate")?;
        let mut s = self.lock();
        s.certificates.insert(height, *signature);
        s.unsynced.push(height);
        Ok(())
    }

    fn certificate(&self, height: Height) -> Result<Option<ClusterSignature>, StoreError> {
        Ok(self.lock().certificates.get(&height).copied())
    }

    fn save_safety_record(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.check_writable("save_safety_record")?;
        let mut s = self.lock();
        s.safety = Some(bytes.to_vec());
        s.unsynced.clear();
        Ok(())
    }

    fn load_safety_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().safety.clone())
    }
}
