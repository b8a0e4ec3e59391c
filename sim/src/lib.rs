//! Deterministic simulation of the whole notary cluster in one process: the real consensus
//! core and notary state machine, driven through a simulated network, disk, clocks and clients,
//! with swarm-style faults and up to f Byzantine replicas, an invariant checked after every
//! step, and exact replay by seed.
//!
//! One job: find the interleaving that breaks the cluster, and replay it.
//!
//! Invariants of the simulator itself:
//! - a run is a pure function of its seed ([`config::SimConfig::from_seed`] and one ChaCha
//!   stream); the trace hash of a run is the same on every replay;
//! - no second implementation of the protocol: replicas are [`notary_consensus::Replica`] and
//!   `notary_core`'s `apply_committed_block`, store and share collector (real BLS or a stand-in
//!   with the same shape, see [`crypto`]); only the reference model in [`model`] restates the
//!   rules, to check them;
//! - the checker ([`checker`]) names every invariant it enforces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod checker;
pub mod config;
pub mod crypto;
pub mod model;
pub mod payload;
pub mod world;

pub use checker::Violation;
pub use config::SimConfig;
pub use world::{run, run_seed, RunReport};

/// Turns planted bugs on for this thread (`sim-bugs` feature): `consensus` and `core` are the
/// masks of `notary_consensus::sim_bugs` and `notary_core::sim_bugs`.
#[cfg(feature = "sim-bugs")]
pub fn plant_bugs(consensus: u32, core: u32) {
    notary_consensus::sim_bugs::set(consensus);
    notary_core::sim_bugs::set(core);
}
