//! The client API (HTTP + JSON, axum): exactly the paths of `docs/API.md`.
//!
//! Nothing a client sends can panic the replica or grow its memory without bound: bodies are
//! capped (413), JSON and every field are checked (400/401/403, one error shape), requests in
//! flight are capped (503 `overloaded` with `Retry-After`), and a waiting call gives up after
//! `answer_timeout` (202 `pending`: the client may ask again; notarisation is idempotent).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::Stream;
use notary_client::{CertifiedBlock, ClusterInfo, MemberInfo, ReplicaView};
use notary_core::{check_unsigned, covering_certificate, tx_status, Rejection, TxStatus};
use notary_types::limits::REQUEST_JSON_BYTES_MAX;
use notary_types::{Height, NotarisationAnswer, NotarisationRequest, Outcome, TxId};
use serde::Deserialize;
use tokio::sync::mpsc::error::TrySendError;

use crate::api_error::ApiError;
use crate::listen::Arrived;
use crate::state::Node;

/// The largest request body accepted: the JSON form of a request with the most state refs
/// allowed (PROTOCOL.md), so that an over-long list is refused as `malformed` with its limit,
/// and anything bigger as `too_large` before it is read.
pub const BODY_BYTES_MAX: usize = REQUEST_JSON_BYTES_MAX;

/// The OpenAPI description of this API.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// The client API router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/notarise", post(notarise))
        .route("/v1/transactions/{tx_id}", get(transaction))
        .route("/v1/cluster", get(cluster))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/stream", get(stream))
        .route("/v1/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such path; see /v1/openapi.json") })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(node)
}

/// The HTTP status of a certified answer: 200 accepted, 409 conflict, 422 other rejection.
pub fn answer_status(outcome: &Outcome) -> StatusCode {
    match outcome {
        Outcome::Committed => StatusCode::OK,
        Outcome::InputsConsumed { .. } | Outcome::ReferencesConsumed { .. } => StatusCode::CONFLICT,
        Outcome::TimeWindowInvalid { .. } | Outcome::TxIdReused { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

/// The metric label of an outcome.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Committed => "committed",
        Outcome::InputsConsumed { .. } | Outcome::ReferencesConsumed { .. } => "conflict",
        Outcome::TimeWindowInvalid { .. } => "time_window_invalid",
        Outcome::TxIdReused { .. } => "tx_id_reused",
    }
}

fn answer_response(answer: NotarisationAnswer) -> Response {
    (answer_status(&answer.leaf.outcome), Json(answer)).into_response()
}

fn rejection_error(r: Rejection) -> ApiError {
    let message = r.to_string();
    match r {
        Rejection::Malformed(_) => ApiError::malformed(message),
        Rejection::UnknownCluster { .. } => ApiError::wrong_cluster(message),
        Rejection::RequesterNotPermitted { .. } => ApiError::not_permitted(message),
        Rejection::SignatureInvalid { .. } => ApiError::bad_signature(message),
    }
}

fn store_error(e: notary_core::StoreError) -> ApiError {
    ApiError::unavailable(format!("this replica's storage failed: {e}"), 5)
}

async fn notarise(
    State(node): State<Arc<Node>>,
    arrived: Option<Extension<Arrived>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let arrived = arrived.map_or(started, |Extension(Arrived(t))| t);
    node.metrics
        .request_queue
        .observe(started.saturating_duration_since(arrived).as_secs_f64());
    let result = notarise_inner(&node, &headers, body, arrived).await;
    node.metrics
        .request_duration
        .observe(arrived.elapsed().as_secs_f64());
    match result {
        Ok(answer) => {
            node.metrics
                .count_request(outcome_label(&answer.leaf.outcome));
            answer_response(answer)
        }
        Err(e) => {
            node.metrics.count_request(e.code);
            e.into_response()
        }
    }
}

/// Reads a request body of at most [`BODY_BYTES_MAX`] bytes. A body announced larger is
/// refused from its `Content-Length` before a byte of it is read; one that turns out larger
/// is refused as soon as it passes the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = announced.filter(|len| *len > BODY_BYTES_MAX) {
        return Err(ApiError::too_large(len, BODY_BYTES_MAX));
    }
    axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::too_large(BODY_BYTES_MAX + 1, BODY_BYTES_MAX)
            } else {
                ApiError::malformed(format!("cannot read the body: {e}"))
            }
        })
}

/// `arrived`: when the request was read off its connection. Admission learns how long
/// answers take from then, so that a queue before the handler (busy async workers) counts
/// as queueing too.
async fn notarise_inner(
    node: &Node,
    headers: &HeaderMap,
    body: Body,
    arrived: Instant,
) -> Result<NotarisationAnswer, ApiError> {
    if node.stopping.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("this replica is shutting down", 1));
    }
    // Under overload most requests end here: refused before their body is read, decoded or
    // looked up, so that refusing the excess costs little of the CPU that serves the rest.
    // (Even a resubmission of a certified transaction waits its turn: it can be fetched
    // with GET /v1/transactions/{id}, which admission does not bound.)
    node.admission
        .check_room(Instant::now())
        .map_err(|refusal| ApiError::overloaded(refusal.to_string(), 1))?;
    let body = read_body(headers, body).await?;
    let request: NotarisationRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed(format!("the body is not a notarisation request: {e}")))?;
    // Everything but the signature now; the batcher verifies signatures a batch at a time
    // (the check every peer runs on the batch) and refuses this request then if it fails.
    check_unsigned(&node.policy, &request).map_err(rejection_error)?;
    let tx = request.fields.tx_id;
    let digest = request.fields.digest();

    // Idempotency: a decided, certified transaction is answered from the store, here and
    // on every replica, without consensus.
    if let TxStatus::Certified(answer) = tx_status(&*node.store, &tx).map_err(store_error)? {
        if answer.leaf.request_digest == digest {
            return Ok(answer);
        }
    }
    if let Some(why) = node.not_ready_reason() {
        return Err(ApiError::unavailable(why, 1));
    }
    let _ticket = node
        .admission
        .admit(request.fields.requester, Instant::now())
        .map_err(|refusal| ApiError::overloaded(refusal.to_string(), 1))?;

    let (id, answer) = node.waiters.register(tx, digest);
    // It may have been certified between the look-up above and the registration.
    if let TxStatus::Certified(a) = tx_status(&*node.store, &tx).map_err(store_error)? {
        if a.leaf.request_digest == digest {
            node.waiters.cancel(&tx, id);
            return Ok(a);
        }
    }
    match node.batcher.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            node.waiters.cancel(&tx, id);
            return Err(ApiError::overloaded("the batch queue is full", 1));
        }
        Err(TrySendError::Closed(_)) => {
            node.waiters.cancel(&tx, id);
            return Err(ApiError::unavailable("this replica is shutting down", 1));
        }
    }
    match tokio::time::timeout(node.config.node.answer_timeout, answer).await {
        Ok(Ok(Ok(a))) => {
            let now = Instant::now();
            node.admission.answered(now - arrived, now);
            Ok(a)
        }
        Ok(Ok(Err(rejection))) => Err(rejection_error(rejection)),
        Ok(Err(_)) | Err(_) => {
            node.waiters.cancel(&tx, id);
            Err(ApiError::pending(format!(
                "transaction {tx} is not certified yet; ask GET /v1/transactions/{tx} or resubmit"
            )))
        }
    }
}

async fn transaction(State(node): State<Arc<Node>>, Path(tx): Path<String>) -> Response {
    let tx: TxId = match tx.parse() {
        Ok(t) => t,
        Err(e) => {
            return ApiError::malformed(format!("transaction id {tx:?}: {e}")).into_response()
        }
    };
    match tx_status(&*node.store, &tx) {
        Err(e) => store_error(e).into_response(),
        Ok(TxStatus::Certified(answer)) => answer_response(answer),
        Ok(TxStatus::Uncertified { height, .. }) => ApiError::pending(format!(
            "transaction {tx} is decided at height {height}; its certificate is forming"
        ))
        .into_response(),
        Ok(TxStatus::Unknown) if node.waiters.is_waiting(&tx) => {
            ApiError::pending(format!("transaction {tx} is in flight")).into_response()
        }
        Ok(TxStatus::Unknown) => {
            ApiError::not_found(format!("the cluster never decided transaction {tx}"))
                .into_response()
        }
    }
}

/// `GET /v1/cluster`'s body.
pub fn cluster_info(node: &Node) -> ClusterInfo {
    let c = &node.config;
    let exec = *node.exec.borrow();
    ClusterInfo {
        cluster_id: c.cluster.cluster_id.clone(),
        n: c.n(),
        f: c.f(),
        threshold: c.f() + 1,
        public_key: hex::encode(node.keys.public_key().to_bytes()),
        development: c.cluster.development,
        members: c
            .cluster
            .members
            .iter()
            .map(|m| MemberInfo {
                id: m.id,
                name: m.name.clone(),
                api_url: m.api_url.clone(),
            })
            .collect(),
        replica: Some(ReplicaView {
            id: c.node.id,
            committed_height: exec.applied,
            certified_height: exec.certified,
            ready: node.not_ready_reason().is_none(),
        }),
    }
}

async fn cluster(State(node): State<Arc<Node>>) -> Json<ClusterInfo> {
    Json(cluster_info(&node))
}

/// The audit record of a certified block, if it is certified: the block, the headers above
/// it up to the signed one, and the signature.
pub fn certified_block(node: &Node, height: u64) -> Result<Option<CertifiedBlock>, ApiError> {
    let Some(record) = node.store.block(Height(height)).map_err(store_error)? else {
        return Ok(None);
    };
    let Some((signature, chain)) =
        covering_certificate(&*node.store, Height(height)).map_err(store_error)?
    else {
        return Err(ApiError::pending(format!(
            "block {height} is committed; its certificate is forming"
        )));
    };
    Ok(Some(CertifiedBlock {
        header: record.header(),
        chain,
        signature,
        leaves: record.leaves,
        requests: record.requests,
    }))
}

async fn block(State(node): State<Arc<Node>>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return ApiError::malformed(format!("height {height:?} is not a number")).into_response();
    };
    match certified_block(&node, height) {
        Ok(Some(b)) => Json(b).into_response(),
        Ok(None) => {
            ApiError::not_found(format!("no committed block at height {height}")).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    from: Option<u64>,
}

async fn stream(
    State(node): State<Arc<Node>>,
    Query(q): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let from = q
        .from
        .unwrap_or_else(|| node.exec.borrow().certified + 1)
        .max(1);
    let rx = node.exec.clone();
    let events = futures::stream::unfold((node, rx, from), |(node, mut rx, next)| async move {
        loop {
            if node.stopping.load(Ordering::Relaxed) {
                return None;
            }
            if rx.borrow_and_update().certified >= next {
                match certified_block(&node, next) {
                    Ok(Some(b)) => {
                        let event = Event::default()
                            .event("block")
                            .id(next.to_string())
                            .json_data(&b)
                            .expect("blocks encode as JSON");
                        return Some((Ok(event), (node, rx, next + 1)));
                    }
                    // Certified heights are contiguous and never removed; anything else
                    // means storage failed: end the stream.
                    _ => return None,
                }
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
