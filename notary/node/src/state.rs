//! What the replica's tasks share: the node context and the clients waiting for answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use blsttc::PublicKeySet;
use notary_core::{ClusterPolicy, Rejection, Store};
use notary_net::{QuicTransport, Transport};
use notary_types::{ClusterId, NotarisationAnswer, NotarisationRequest, RequestDigest, TxId};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::admission::Admission;
use crate::config::Config;
use crate::driver::ConsensusView;
use crate::executor::ExecView;
use crate::metrics::Metrics;

/// What a waiting client receives: its certified answer, or why its request was dropped
/// before consensus (its signature failed the batch check).
pub type Delivery = Result<NotarisationAnswer, Rejection>;

type Slot = (u64, RequestDigest, oneshot::Sender<Delivery>);

/// Clients waiting for the certified answer to a transaction, on this replica.
#[derive(Default)]
pub struct Waiters {
    slots: Mutex<HashMap<TxId, Vec<Slot>>>,
    next: AtomicU64,
}

impl Waiters {
    /// Registers a client waiting for `tx` with request content `digest`.
    pub fn register(&self, tx: TxId, digest: RequestDigest) -> (u64, oneshot::Receiver<Delivery>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (send, recv) = oneshot::channel();
        self.slots
            .lock()
            .entry(tx)
            .or_default()
            .push((id, digest, send));
        (id, recv)
    }

    /// Forgets waiter `id` of `tx` (it timed out or went away).
    pub fn cancel(&self, tx: &TxId, id: u64) {
        let mut slots = self.slots.lock();
        if let Some(v) = slots.get_mut(tx) {
            v.retain(|(i, _, _)| *i != id);
            if v.is_empty() {
                slots.remove(tx);
            }
        }
    }

    /// Whether anyone waits for `tx`.
    pub fn is_waiting(&self, tx: &TxId) -> bool {
        self.slots.lock().contains_key(tx)
    }

    /// Hands `answer` to every waiter of `tx` whose request content is `digest`.
    pub fn deliver(&self, tx: &TxId, digest: &RequestDigest, answer: &NotarisationAnswer) {
        self.send(tx, digest, &Ok(answer.clone()));
    }

    /// Tells the waiters of `tx` with content `digest` that their request was refused.
    pub fn reject(&self, tx: &TxId, digest: &RequestDigest, why: Rejection) {
        self.send(tx, digest, &Err(why));
    }

    fn send(&self, tx: &TxId, digest: &RequestDigest, what: &Delivery) {
        let mut slots = self.slots.lock();
        let Some(v) = slots.get_mut(tx) else { return };
        let mut keep = Vec::new();
        for (id, d, send) in v.drain(..) {
            if d == *digest {
                let _ = send.send(what.clone());
            } else {
                keep.push((id, d, send));
            }
        }
        if keep.is_empty() {
            slots.remove(tx);
        } else {
            *v = keep;
        }
    }
}

/// The context every task of the replica shares.
pub struct Node {
    /// The validated configuration.
    pub config: Config,
    /// The cluster id.
    pub cluster_id: ClusterId,
    /// Stateless-check policy (cluster id, permitted requesters).
    pub policy: Arc<ClusterPolicy>,
    /// The cluster's BLS public key set.
    pub keys: PublicKeySet,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Clients waiting for answers.
    pub waiters: Arc<Waiters>,
    /// Requests admitted and not yet answered, and the bounds on them.
    pub admission: Admission,
    /// The consensus thread's published view.
    pub consensus: Arc<Mutex<ConsensusView>>,
    /// The executor's progress.
    pub exec: watch::Receiver<ExecView>,
    /// Why the executor stopped, if it did.
    pub exec_halted: Arc<Mutex<Option<String>>>,
    /// Set once shutdown began.
    pub stopping: AtomicBool,
    /// The transport (for its statistics).
    pub transport: Arc<QuicTransport>,
    /// Admitted requests (signatures not yet checked), to the batcher.
    pub batcher: mpsc::Sender<NotarisationRequest>,
}

impl Node {
    /// n.
    pub fn n(&self) -> usize {
        self.config.n()
    }

    /// Replicas connected to us in either direction (us not included).
    pub fn peers_connected(&self) -> usize {
        self.transport
            .stats()
            .peers
            .iter()
            .filter(|p| p.connected || p.inbound_connected)
            .count()
    }

    /// Whether a quorum (2f+1, us included) is connected.
    pub fn has_quorum(&self) -> bool {
        self.peers_connected() + 1 > 2 * self.config.f()
    }

    /// Why this replica cannot serve requests now, if it cannot.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Some("shutting down".into());
        }
        if let Some(why) = self.consensus.lock().halted.clone() {
            return Some(why);
        }
        if let Some(why) = self.exec_halted.lock().clone() {
            return Some(why);
        }
        if !self.has_quorum() {
            return Some(format!(
                "no quorum: {} of {} peers connected, {} needed",
                self.peers_connected(),
                self.n() - 1,
                2 * self.config.f()
            ));
        }
        None
    }
}
