//! The HTTP listeners (client API and admin): HTTP/1.1 and cleartext HTTP/2 (h2c, prior
//! knowledge) on the same port, told apart by the first bytes a connection sends.
//!
//! HTTP/2 is what lets a ledger node be refused rather than queued. Over HTTP/1.1 every
//! outstanding call needs a TCP connection of its own, so a client that sends faster than the
//! cluster answers opens thousands of them, and its calls wait in connection set-up (client
//! side, kernel and accept) before the handler, and admission control, ever sees them. Over
//! HTTP/2 one connection carries every call, a new call reaches its handler at once, and the
//! excess is answered `overloaded` (see [`crate::admission`]).
//!
//! Invariants:
//! - A connection may carry at most [`STREAMS_PER_CONNECTION_MAX`] calls at a time. It is far
//!   above any admission bound a ledger node gets, so that admission, not the stream limit,
//!   is what refuses a busy ledger node (quickly, with `Retry-After`); memory stays bounded by
//!   admission and by HTTP/2 flow control (at most 1 MiB of unread request bodies per
//!   connection).
//! - An accept error (for instance out of file descriptors) is logged and retried after a
//!   pause; it never stops the listener.
//! - On stop, no new connection is accepted and open ones are asked to close once their calls
//!   are answered; the caller bounds how long that may take.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper::Request;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The most calls one HTTP/2 connection may have in flight at once.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 65_536;

/// When a request's head was read off its connection (a request extension): the time a
/// request then waits for its handler to run is queueing inside this replica, which
/// admission control must see.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// How long the listener pauses after a failed `accept` (for instance `EMFILE`).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stop` turns true, then closes every connection
/// gracefully.
pub async fn serve(listener: TcpListener, router: axum::Router, mut stop: watch::Receiver<bool>) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = TowerToHyperService::new(router.clone());
        // `call` runs on the connection's task as soon as a request's head is read, before
        // the handler's task is scheduled: the stamp is when the request reached the replica.
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Arrived(Instant::now()));
            inner.call(req)
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A connection that ends in error (reset by the peer, malformed HTTP) concerns
            // that connection only.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Extension;

    /// Answers how long ago the request was stamped as arrived, or 404 without a stamp.
    async fn stamped(
        arrived: Option<Extension<Arrived>>,
    ) -> Result<String, axum::http::StatusCode> {
        let Extension(Arrived(t)) = arrived.ok_or(axum::http::StatusCode::NOT_FOUND)?;
        Ok(format!("{}", t.elapsed().as_micros()))
    }

    #[tokio::test]
    async fn one_port_serves_http1_and_http2_and_stamps_every_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            axum::Router::new().route("/", get(stamped)),
            stop_rx,
        ));
        let h1 = reqwest::Client::builder().http1_only().build().unwrap();
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        for (client, version) in [
            (h1, reqwest::Version::HTTP_11),
            (h2, reqwest::Version::HTTP_2),
        ] {
            // Many calls at once: over HTTP/2 they share one connection.
            let calls = (0..64).map(|_| client.get(&url).send());
            for resp in futures::future::join_all(calls).await {
                let resp = resp.unwrap();
                assert_eq!(resp.version(), version);
                assert_eq!(resp.status(), 200, "the request carries its arrival stamp");
                let waited_us: u64 = resp.text().await.unwrap().parse().unwrap();
                assert!(waited_us < 10_000_000);
            }
        }
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the listener stops when told")
            .unwrap();
    }
}
