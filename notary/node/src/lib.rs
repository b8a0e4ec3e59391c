//! `notaryd`, one replica of the notary cluster: it wires the consensus core, the notary
//! state machine, RocksDB storage and the QUIC transport together, and serves the client
//! API and the admin endpoints.
//!
//! Where things are:
//! * [`replica`] — start-up, the tasks, shutdown;
//! * [`driver`] — the consensus thread and **the order in which actions are executed**
//!   (persist → send → commit → timers; a vote never leaves before its safety record is
//!   durable);
//! * [`executor`] — applying committed blocks, signing shares, combining certificates,
//!   answering waiting clients;
//! * [`mempool`] — batches waiting for a block; the consensus `Application`;
//! * [`attest`] — which peers' batches this replica checks in full, and which it trusts on
//!   f + 1 attestations;
//! * [`wire`] — every message between replicas;
//! * [`api`], [`admin`] — the HTTP routers; [`listen`] — serving them over HTTP/1.1 and
//!   HTTP/2; [`admission`] — when to answer `overloaded`;
//! * [`config`], [`keys`], [`setup`] — the home directory, key files and set-up verbs;
//! * [`dkg`] — the key ceremony verbs (`notaryd dkg online|offline|verify`);
//! * [`localnet`], [`demo`] — a cluster of real processes for the demo and the e2e tests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod api;
pub mod api_error;
pub mod attest;
pub mod config;
pub mod demo;
pub mod dkg;
pub mod driver;
pub mod executor;
pub mod keys;
pub mod listen;
pub mod localnet;
pub mod mempool;
pub mod metrics;
pub mod notify;
pub mod replica;
pub mod setup;
pub mod state;
pub mod wire;
