//! `RocksStore`: the notary's [`Store`] on RocksDB.
//!
//! One job: keep the notary's state and audit log durable, one atomic synced write per block.
//!
//! Layout: one column family (the default), keys distinguished by a one-byte prefix; integers
//! big-endian so heights sort in order.
//!
//! | key                                | value                                       |
//! | ---------------------------------- | ------------------------------------------- |
//! | `c` ‖ state ref (36)               | consuming tx id (32)                        |
//! | `d` ‖ tx id (32)                   | [`DecisionRecord`] (44)                     |
//! | `b` ‖ height (8)                   | [`BlockRecord`] (requests, leaves, root...) |
//! | `h` ‖ height (8)                   | the block's header, canonical bytes (~130)  |
//! | `s` ‖ height (8)                   | cluster signature (96)                      |
//! | `m` ‖ `applied`                    | applied height (8)                          |
//! | `m` ‖ `safety`                     | consensus safety record (opaque)            |
//!
//! Options (kept few on purpose): `create_if_missing`, LZ4 compression (the only codec compiled
//! in), and bloom filters on the tables (10 bits per key) and on the memtable (whole keys),
//! because the double-spend check is a point lookup that mostly misses. Values of at least
//! [`BLOB_MIN_BYTES`] (in practice the block records, about 1 KiB per request: the requests
//! and the consensus bytes) go to blob files, written once at flush and never rewritten by
//! compaction, which then moves only keys and small values. Without this, each replica
//! rewrote about 100 MB of audit records in an L0 compaction every ~36 s at 5,000
//! notarisations/s, and all four did it in the same seconds (they write the same blocks):
//! measured, a 3-second dip to a fifth of the throughput (BENCHMARKS.md). A block and a safety
//! record are written with `WriteOptions::set_sync(true)`: on disk before the call returns. A
//! certificate is not synced (the `Store` contract: it is formed again after a crash); it
//! reaches the disk with the next synced write, which follows it in the same write-ahead log.
//!
//! Invariants: a block's effects and the applied height are in one `WriteBatch`, so a crash
//! leaves all or nothing; `apply_block` holds a mutex across the applied-height check and the
//! write, so two callers cannot both apply the same height.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Mutex;

use notary_core::{BlockRecord, BlockWrite, DecisionRecord, Store, StoreError};
use notary_types::{BlockHeader, ClusterSignature, Height, StateRef, TxId};
use rocksdb::{BlockBasedOptions, DBCompressionType, Options, WriteBatch, WriteOptions, DB};

/// Values this large or larger are stored in blob files (key-value separation), not in the
/// LSM tree's tables: see the module doc.
pub const BLOB_MIN_BYTES: u64 = 1024;

const APPLIED_KEY: &[u8] = b"mapplied";
const SAFETY_KEY: &[u8] = b"msafety";

/// The RocksDB-backed store.
pub struct RocksStore {
    db: DB,
    apply_lock: Mutex<()>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn io(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
    move |e| StoreError::Io {
        op,
        message: e.into_string(),
    }
}

fn consumed_key(state: &StateRef) -> [u8; 37] {
    let mut k = [0u8; 37];
    k[0] = b'c';
    k[1..].copy_from_slice(&state.to_bytes());
    k
}

fn decision_key(tx_id: &TxId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'd';
    k[1..].copy_from_slice(&tx_id.0);
    k
}

/// `(key, value)` pairs sorted by key, stably (of two puts of one key the later still wins).
fn in_key_order<K: Ord + Copy, V>(pairs: impl Iterator<Item = (K, V)>) -> Vec<(K, V)> {
    let mut pairs: Vec<_> = pairs.collect();
    pairs.sort_by_key(|p| p.0);
    pairs
}

fn height_key(prefix: u8, height: Height) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&height.0.to_be_bytes());
    k
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl RocksStore {
    /// Opens (creating if missing) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // The same reason in the memtable: the double-spend and idempotency lookups of a block
        // mostly miss, and without a filter each miss walks the memtable's skip list (the
        // executor's largest cost after BLS under load, per the profile in BENCHMARKS.md).
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        // Block records are written once and never overwritten or deleted: no blob garbage
        // collection. Their bytes (signatures, keys, hashes) do not compress.
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(BLOB_MIN_BYTES);
        let db = DB::open(&opts, path).map_err(io("open"))?;
        Ok(Self {
            db,
            apply_lock: Mutex::new(()),
        })
    }

    fn get(&self, op: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(key).map_err(io(op))
    }

    /// The record under `key`, decoded; a value that does not decode is `Corrupt`.
    fn get_decoded<T>(
        &self,
        what: &'static str,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, notary_types::wire::DecodeError>,
    ) -> Result<Option<T>, StoreError> {
        self.get(what, key)?
            .map(|v| decode(&v).map_err(|source| StoreError::Corrupt { what, source }))
            .transpose()
    }
}

impl Store for RocksStore {
    fn applied_height(&self) -> Result<Height, StoreError> {
        match self.get("applied_height", APPLIED_KEY)? {
            None => Ok(Height(0)),
            Some(v) => {
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    what: "applied height",
                    source: notary_types::wire::DecodeError::Invalid {
                        field: "applied",
                        reason: format!("{} bytes, expected 8", v.len()),
                    },
                })?;
                Ok(Height(u64::from_be_bytes(bytes)))
            }
        }
    }

    fn consumed_by(&self, state: &StateRef) -> Result<Option<TxId>, StoreError> {
        let Some(v) = self
            .db
            .get_pinned(consumed_key(state))
            .map_err(io("consumed_by"))?
        else {
            return Ok(None);
        };
        let id: [u8; 32] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            what: "consuming tx id",
            source: notary_types::wire::DecodeError::Invalid {
                field: "tx_id",
                reason: format!("{} bytes, expected 32", v.len()),
            },
        })?;
        Ok(Some(TxId(id)))
    }

    fn decision(&self, tx_id: &TxId) -> Result<Option<DecisionRecord>, StoreError> {
        self.get_decoded(
            "decision record",
            &decision_key(tx_id),
            DecisionRecord::from_bytes,
        )
    }

    fn apply_block(&self, write: &BlockWrite) -> Result<(), StoreError> {
        // Poisoning cannot leave a half-written block (the batch is atomic): recover the guard.
        let _guard = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.applied_height()?;
        let height = write.record.height;
        if height <= applied {
            return Ok(());
        }
        if height.0 != applied.0 + 1 {
            return Err(StoreError::HeightGap {
                expected: applied.0 + 1,
                got: height.0,
            });
        }
        // In key order (`b` < `c` < `d` < `h` < `m`, each run sorted): the memtable's skip
        // list then finds each key's place from the one before it, where keys in block order
        // (random hashes) each cost a search from the top (BENCHMARKS.md, "Less CPU per
        // notarisation").
        let consumed = in_key_order(write.consumed.iter().map(|(s, tx)| (consumed_key(s), tx)));
        let decisions = in_key_order(write.decisions.iter().map(|(tx, d)| (decision_key(tx), d)));
        let mut batch = WriteBatch::default();
        batch.put(height_key(b'b', height), write.record.to_bytes());
        for (key, tx_id) in &consumed {
            batch.put(key, tx_id.0);
        }
        for (key, decision) in &decisions {
            batch.put(key, decision.to_bytes());
        }
        // Kept apart: an answer's header chain reads headers, not records of megabytes.
        batch.put(
            height_key(b'h', height),
            write.record.header().canonical_bytes(),
        );
        batch.put(APPLIED_KEY, height.0.to_be_bytes());
        self.db
            .write_opt(batch, &synced())
            .map_err(io("apply_block"))
    }

    fn block(&self, height: Height) -> Result<Option<BlockRecord>, StoreError> {
        self.get_decoded(
            "block record",
            &height_key(b'b', height),
            BlockRecord::from_bytes,
        )
    }

    fn header(&self, height: Height) -> Result<Option<BlockHeader>, StoreError> {
        self.get_decoded(
            "block header",
            &height_key(b'h', height),
            BlockHeader::from_canonical_bytes,
        )
    }

    fn put_certificate(
        &self,
        height: Height,
        signature: &ClusterSignature,
    ) -> Result<(), StoreError> {
        self.db
            .put_opt(
                height_key(b's', height),
                signature.0,
                &WriteOptions::default(),
            )
            .map_err(io("put_certificate"))
    }

    fn certificate(&self, height: Height) -> Result<Option<ClusterSignature>, StoreError> {
        self.get_decoded("certificate", &height_key(b's', height), |v| {
            v.try_into().map(ClusterSignature).map_err(|_| {
                notary_types::wire::DecodeError::Invalid {
                    field: "signature",
                    reason: format!("{} bytes, expected 96", v.len()),
                }
            })
        })
    }

    fn save_safety_record(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_opt(SAFETY_KEY, bytes, &synced())
            .map_err(io("save_safety_record"))
    }

    fn load_safety_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("load_safety_record", SAFETY_KEY)
    }
}
