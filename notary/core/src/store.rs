//! The `Store` seam: what the state machine reads and writes, and the records it keeps.
//!
//! Contract (checked by [`crate::testing::conformance`] against every implementation):
//! - [`Store::apply_block`] writes the whole [`BlockWrite`] (consumed states, decisions by tx id,
//!   the block record with its requests, leaves, root and consensus bytes, and the applied height)
//!   atomically and durably (synced) before returning; a crash leaves all of it or none.
//! - Applying a height at or below the applied height changes nothing; applying any height other
//!   than `applied + 1` above it is a [`StoreError::HeightGap`].
//! - `save_safety_record` is durable when it returns. `put_certificate` need not be: a
//!   certificate is derived data (the unique threshold signature over a block header whose
//!   block is durable already), and a replica forms the ones a crash lost again after its
//!   restart. Saving it unsynced keeps an fsync per block off the path to the client's answer.
//! - An I/O failure is a [`StoreError`]: fatal for the replica, which must stop signing.

use notary_types::limits::CHAIN_HEADERS_MAX;
use notary_types::wire::{DecodeError, Reader, Writer};
use notary_types::{
    BlockHeader, ClusterId, ClusterSignature, HeaderHash, Height, Leaf, MerkleHash,
    NotarisationRequest, RequestDigest, StateRef, Timestamp, TxId,
};
use thiserror::Error;

/// A storage failure. Every variant but `HeightGap` means the disk cannot be trusted: stop.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The storage engine failed (full disk, I/O error, ...).
    #[error("storage I/O failed during {op}: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The engine's message.
        message: String,
    },
    /// A stored value does not decode: the database is corrupt.
    #[error("stored {what} is corrupt: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// A block was applied out of order.
    #[error("block {got} applied but the next height is {expected}")]
    HeightGap {
        /// `applied + 1`.
        expected: u64,
        /// The height offered.
        got: u64,
    },
    /// A block the store says is applied is missing.
    #[error("applied block {height} is missing from the store")]
    MissingBlock {
        /// Its height.
        height: u64,
    },
}

/// How one request of a block was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Decided in this block: its leaf is `leaves[leaf_index]`.
    Decided {
        /// Position in this block's leaves.
        leaf_index: u32,
    },
    /// Same tx id and content as a request decided earlier (in an earlier block or earlier in
    /// this one): the answer is that leaf.
    Duplicate {
        /// The original block.
        height: Height,
        /// Position in that block's leaves.
        leaf_index: u32,
    },
}

/// Where a transaction id was first decided, and for which request content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionRecord {
    /// The block.
    pub height: Height,
    /// Position in that block's leaves.
    pub leaf_index: u32,
    /// The digest of the request content decided.
    pub request_digest: RequestDigest,
}

/// Everything kept about one committed block: the audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The block's height.
    pub height: Height,
    /// The block's timestamp: the notary's time for its outcomes.
    pub timestamp: Timestamp,
    /// The verified requests, in block order.
    pub requests: Vec<NotarisationRequest>,
    /// One resolution per request.
    pub resolutions: Vec<Resolution>,
    /// The new leaves, in order.
    pub leaves: Vec<Leaf>,
    /// The Merkle root over `leaves`.
    pub root: MerkleHash,
    /// The hash of the header at `height - 1` (all zero at height 1).
    pub prev: HeaderHash,
    /// Opaque bytes from consensus (the block and its commit proof), for lagging replicas.
    pub consensus_bytes: Vec<u8>,
}

/// One atomic write: a block and its effects on the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockWrite {
    /// The block record (its height becomes the applied height).
    pub record: BlockRecord,
    /// States consumed by this block, with the consuming transaction.
    pub consumed: Vec<(StateRef, TxId)>,
    /// Transaction ids decided for the first time in this block.
    pub decisions: Vec<(TxId, DecisionRecord)>,
}

/// The storage the state machine needs. All methods take `&self` so that a driver can share one
/// store between the consensus thread (safety record) and the apply thread.
pub trait Store: Send + Sync {
    /// The highest applied height (`Height(0)` when nothing is applied).
    fn applied_height(&self) -> Result<Height, StoreError>;
    /// The transaction that consumed `state`, if any.
    fn consumed_by(&self, state: &StateRef) -> Result<Option<TxId>, StoreError>;
    /// Where `tx_id` was first decided, if it was.
    fn decision(&self, tx_id: &TxId) -> Result<Option<DecisionRecord>, StoreError>;
    /// Writes one block atomically and durably (see the module doc for the rules).
    fn apply_block(&self, write: &BlockWrite) -> Result<(), StoreError>;
    /// The record of an applied block.
    fn block(&self, height: Height) -> Result<Option<BlockRecord>, StoreError>;
    /// The header of an applied block: [`BlockRecord::header`], which a store may keep apart
    /// so as not to read a record of megabytes for it.
    fn header(&self, height: Height) -> Result<Option<BlockHeader>, StoreError> {
        Ok(self.block(height)?.map(|r| r.header()))
    }
    /// Stores the combined cluster signature of an applied block's header (durability not
    /// required: see the module doc).
    fn put_certificate(
        &self,
        height: Height,
        signature: &ClusterSignature,
    ) -> Result<(), StoreError>;
    /// The cluster signature of a block, once stored.
    fn certificate(&self, height: Height) -> Result<Option<ClusterSignature>, StoreError>;
    /// The first stored certificate at `height` or above, looking at most
    /// [`CHAIN_HEADERS_MAX`] heights up: the one whose header chain covers `height`.
    fn certificate_from(
        &self,
        height: Height,
    ) -> Result<Option<(Height, ClusterSignature)>, StoreError> {
        for h in height.0..=height.0.saturating_add(CHAIN_HEADERS_MAX as u64) {
            if let Some(sig) = self.certificate(Height(h))? {
                return Ok(Some((Height(h), sig)));
            }
        }
        Ok(None)
    }
    /// Replaces the consensus safety record; durable when it returns.
    fn save_safety_record(&self, bytes: &[u8]) -> Result<(), StoreError>;
    /// The last saved consensus safety record.
    fn load_safety_record(&self) -> Result<Option<Vec<u8>>, StoreError>;
}

const BLOCK_RECORD_TAG: &str = "notary/store/block/v2";
/// Stored records are written by this replica only, so the bounds are generous sanity limits.
const RECORD_ITEMS_MAX: usize = 1 << 24;
const RECORD_BYTES_MAX: usize = 1 << 30;

impl BlockRecord {
    /// The header the cluster signs for this block.
    pub fn header(&self) -> BlockHeader {
        BlockHeader {
            cluster_id: self.cluster_id.clone(),
            height: self.height,
            timestamp: self.timestamp,
            leaf_count: u32::try_from(self.leaves.len())
                .expect("a block holds far fewer than 4 billion leaves"),
            root: self.root,
            prev: self.prev,
        }
    }

    /// The storage encoding (not a protocol format: only this replica reads it back).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.tag(BLOCK_RECORD_TAG);
        w.var_bytes(self.cluster_id.as_str().as_bytes());
        w.u64(self.height.0);
        w.u64(self.timestamp.0);
        w.fixed(&self.root.0);
        w.fixed(&self.prev.0);
        w.var_bytes(&self.consensus_bytes);
        w.u32(len32(self.requests.len()));
        for r in &self.requests {
            w.var_bytes(&r.to_wire_bytes());
        }
        w.u32(len32(self.resolutions.len()));
        for r in &self.resolutions {
            match r {
                Resolution::Decided { leaf_index } => {
                    w.u8(0);
                    w.u32(*leaf_index);
                }
                Resolution::Duplicate { height, leaf_index } => {
                    w.u8(1);
                    w.u64(height.0);
                    w.u32(*leaf_index);
                }
            }
        }
        w.u32(len32(self.leaves.len()));
        for l in &self.leaves {
            w.var_bytes(&l.canonical_bytes());
        }
        w.into_bytes()
    }

    /// Decodes [`BlockRecord::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.tag(BLOCK_RECORD_TAG)?;
        let id = r.var_bytes("cluster_id", 64)?;
        let cluster_id = std::str::from_utf8(id)
            .ok()
            .and_then(|s| ClusterId::new(s).ok())
            .ok_or_else(|| invalid("cluster_id", "not a cluster id"))?;
        let height = Height(r.u64()?);
        let timestamp = Timestamp(r.u64()?);
        let root = MerkleHash(r.array()?);
        let prev = HeaderHash(r.array()?);
        let consensus_bytes = r.var_bytes("consensus_bytes", RECORD_BYTES_MAX)?.to_vec();
        let mut requests = Vec::new();
        for _ in 0..r.count("requests", RECORD_ITEMS_MAX)? {
            let wire = r.var_bytes("request", RECORD_BYTES_MAX)?;
            let req = NotarisationRequest::from_wire_bytes(wire)
                .map_err(|e| invalid("request", &e.to_string()))?;
            requests.push(req);
        }
        let mut resolutions = Vec::new();
        for _ in 0..r.count("resolutions", RECORD_ITEMS_MAX)? {
            resolutions.push(match r.u8()? {
                0 => Resolution::Decided {
                    leaf_index: r.u32()?,
                },
                1 => Resolution::Duplicate {
                    height: Height(r.u64()?),
                    leaf_index: r.u32()?,
                },
                other => return Err(invalid("resolution", &format!("kind {other}"))),
            });
        }
        let mut leaves = Vec::new();
        for _ in 0..r.count("leaves", RECORD_ITEMS_MAX)? {
            leaves.push(Leaf::from_canonical_bytes(
                r.var_bytes("leaf", RECORD_BYTES_MAX)?,
            )?);
        }
        r.finish()?;
        Ok(Self {
            cluster_id,
            height,
            timestamp,
            requests,
            resolutions,
            leaves,
            root,
            prev,
            consensus_bytes,
        })
    }
}

impl DecisionRecord {
    /// The storage encoding: height (8) || leaf index (4) || request digest (32).
    pub fn to_bytes(&self) -> [u8; 44] {
        let mut out = [0u8; 44];
        out[..8].copy_from_slice(&self.height.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.leaf_index.to_be_bytes());
        out[12..].copy_from_slice(&self.request_digest.0);
        out
    }
    /// Decodes [`DecisionRecord::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let out = Self {
            height: Height(r.u64()?),
            leaf_index: r.u32()?,
            request_digest: RequestDigest(r.array()?),
        };
        r.finish()?;
        Ok(out)
    }
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("a block holds far fewer than 4 billion items")
}

fn invalid(field: &'static str, reason: &str) -> DecodeError {
    DecodeError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}
