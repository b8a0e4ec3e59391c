//! The admin listener (loopback by default): `/livez`, `/readyz`, `/status`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use notary_net::Transport;
use serde_json::json;

use crate::metrics::{Metrics, PeerLabel, ReasonLabel};
use crate::state::Node;

/// The admin router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(node)
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn status(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    let view = node.consensus.lock().clone();
    let exec = *node.exec.borrow();
    let net = node.transport.stats();
    let s = &view.stats;
    Json(json!({
        "replica_id": node.config.node.id,
        "name": node.config.me().name,
        "cluster_id": node.config.cluster.cluster_id,
        "round": s.round.0,
        "leader": s.leader.0,
        "committed_height": exec.applied,
        "certified_height": exec.certified,
        "consensus_committed_height": s.committed_height.0,
        "ready": node.not_ready_reason().is_none(),
        "not_ready_reason": node.not_ready_reason(),
        "requests_in_flight": node.admission.in_flight(),
        "admission_limit": node.admission.limit(),
        "round_changes": {"qc": s.round_changes_qc, "tc": s.round_changes_tc, "timeouts": s.local_timeouts},
        "peers": net.peers.iter().map(|p| json!({
            "id": p.id.0,
            "connected": p.connected,
            "inbound_connected": p.inbound_connected,
            "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1000.0),
            "queued_frames": p.queued_frames,
        })).collect::<Vec<_>>(),
    }))
}

/// Copies the consensus and transport counters into the registry, then encodes it.
pub fn refresh(node: &Node) {
    let m = &node.metrics;
    let view = node.consensus.lock().clone();
    let s = &view.stats;
    m.round.set(s.round.0 as i64);
    m.is_leader
        .set(i64::from(s.leader.0 == node.config.node.id));
    m.has_quorum.set(i64::from(node.has_quorum()));
    // Admission counts the requests in flight (its tickets); the gauge is read off it.
    m.requests_in_flight.set(node.admission.in_flight() as i64);
    m.admission_limit.set(node.admission.limit() as i64);
    let reasons = [
        ("qc", s.round_changes_qc),
        ("tc", s.round_changes_tc),
        ("timeout", s.local_timeouts),
    ];
    for (reason, total) in reasons {
        Metrics::advance(
            &m.round_changes.get_or_create(&ReasonLabel { reason }),
            total,
        );
    }
    for (who, total) in &s.equivocations {
        let c = m.equivocations.get_or_create(&PeerLabel {
            peer: who.0.to_string(),
        });
        Metrics::advance(&c, *total);
    }
    let net = node.transport.stats();
    m.peers_connected.set(
        net.peers
            .iter()
            .filter(|p| p.connected || p.inbound_connected)
            .count() as i64,
    );
    for p in &net.peers {
        let peer = PeerLabel {
            peer: p.id.0.to_string(),
        };
        m.peer_up
            .get_or_create(&peer)
            .set(i64::from(p.connected || p.inbound_connected));
        if let Some(rtt) = p.rtt {
            m.peer_rtt.get_or_create(&peer).set(rtt.as_secs_f64());
        }
        Metrics::advance(&m.peer_sent_bytes.get_or_create(&peer), p.bytes_sent);
        Metrics::advance(
            &m.peer_received_bytes.get_or_create(&peer),
            p.bytes_received,
        );
        if let Some(t) = p.cert_not_after_unix {
            m.tls_cert_expiry.get_or_create(&peer).set(t);
        }
    }
    for (reason, total) in &net.rejected {
        let c = m.frames_rejected.get_or_create(&ReasonLabel {
            reason: reason.label(),
        });
        Metrics::advance(&c, *total);
    }
    m.db_size_bytes
        .set(dir_size(&node.config.home.data_dir()) as i64);
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    refresh(&node);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.encode(),
    )
        .into_response()
}
