//! The one JSON shape of every client API error:
//! `{"error": {"code", "message", "retryable", "details"}}`.
//!
//! Signed outcomes (acceptance, conflict, time-window rejection) are not errors: they are
//! certified answers. An error is what the cluster could not, or would not, decide.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A client API error with its HTTP status and machine-readable code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `malformed`, `overloaded`.
    pub code: &'static str,
    /// One human sentence, with the numbers in it.
    pub message: String,
    /// Whether the same request may succeed if retried (here or on another replica).
    pub retryable: bool,
    /// Structured details (limits, sizes, ...), or `null`.
    pub details: Value,
    /// Seconds after which to retry, sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retryable: false,
            details: Value::Null,
            retry_after_s: None,
        }
    }

    /// 400: the request is not a well-formed notarisation request.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 400: the request names another cluster.
    pub fn wrong_cluster(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unknown_cluster", message)
    }

    /// 401: the requester's signature does not verify.
    pub fn bad_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
    }

    /// 403: the requester is not a permitted ledger node.
    pub fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "not_permitted", message)
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(len: usize, max: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body of {len} bytes exceeds the limit of {max} bytes"),
        );
        e.details = json!({ "len": len, "max": max });
        e
    }

    /// 404: nothing is known under this key.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: too many requests in flight; retry after a moment.
    pub fn overloaded(message: impl Into<String>, retry_after_s: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
        e.retryable = true;
        e.retry_after_s = Some(retry_after_s);
        e
    }

    /// 503: this replica cannot reach a quorum, or is shutting down, or has stopped
    /// signing after a local fault; another replica may answer.
    pub fn unavailable(message: impl Into<String>, retry_after_s: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retryable = true;
        e.retry_after_s = Some(retry_after_s);
        e
    }

    /// 202: the request is in flight; ask again (`GET /v1/transactions/{id}`) or resubmit.
    pub fn pending(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::ACCEPTED, "pending", message);
        e.retryable = true;
        e.retry_after_s = Some(1);
        e
    }

    /// With structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({ "error": {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "details": self.details,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}
