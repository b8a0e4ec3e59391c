//! The ledger node's side of the notary: build and sign requests, send them to any replica,
//! retry what is retryable on another replica, and **verify every answer's certificate**
//! against the cluster public key before returning it.
//!
//! This crate depends on `notary-types` and an HTTP client only: no RocksDB, no consensus
//! (`cargo tree -p notary-client` shows neither), so a ledger node can embed it cheaply. The
//! default feature `mimalloc` builds the allocator of the `notary` binary only; a ledger node
//! turns it off with `default-features = false`.
//!
//! Retrying is safe because notarisation is idempotent: the same request gets the same
//! certified answer from any replica, forever.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::{Duration, Instant};

use notary_types::blsttc::PublicKey;
use notary_types::{AnswerError, Height, NotarisationAnswer, NotarisationRequest, Outcome, TxId};
use serde::{Deserialize, Serialize};

pub mod bench;
pub mod stream;
pub mod throttle;

/// A member as `GET /v1/cluster` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberInfo {
    /// Replica id.
    pub id: u16,
    /// The agency running it.
    pub name: String,
    /// Its client API.
    pub api_url: String,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster id.
    pub cluster_id: String,
    /// Number of replicas.
    pub n: usize,
    /// Faults tolerated.
    pub f: usize,
    /// Signature shares that make a certificate (f+1).
    pub threshold: usize,
    /// The cluster's BLS public key, hex (48 bytes, G1, compressed).
    pub public_key: String,
    /// Whether the keys came from a development dealer.
    pub development: bool,
    /// The members.
    pub members: Vec<MemberInfo>,
    /// The answering replica's own view (absent from older replicas).
    #[serde(default)]
    pub replica: Option<ReplicaView>,
}

/// What one replica says of itself in `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaView {
    /// Its id.
    pub id: u16,
    /// Its highest committed height.
    pub committed_height: u64,
    /// Its highest certified height.
    pub certified_height: u64,
    /// Whether it can serve requests (storage open, quorum connected, signing).
    pub ready: bool,
}

/// A committed, certified block as `GET /v1/blocks/{height}` and `GET /v1/stream` carry it:
/// the audit record of one block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertifiedBlock {
    /// The block's header.
    pub header: notary_types::BlockHeader,
    /// The headers of the next heights up to the signed one (empty when `header` is signed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<notary_types::BlockHeader>,
    /// The cluster's signature over the last header of the chain (or `header`).
    pub signature: notary_types::ClusterSignature,
    /// The leaves, in block order: one per decided request.
    pub leaves: Vec<notary_types::Leaf>,
    /// The requests, in block order (the leaves' requests).
    pub requests: Vec<NotarisationRequest>,
}

impl CertifiedBlock {
    /// Recomputes the Merkle root from the leaves, follows the header chain and checks the
    /// cluster signature over its last header.
    pub fn verify(&self, key: &PublicKey) -> Result<(), AnswerError> {
        let tree = notary_types::MerkleTree::from_leaves(&self.leaves);
        if tree.root() != self.header.root || tree.leaf_count() != self.header.leaf_count as usize {
            return Err(AnswerError::ProofInvalid {
                index: 0,
                leaf_count: self.header.leaf_count,
            });
        }
        notary_types::follow_chain(&self.header, &self.chain)?.verify(key, &self.signature)
    }
}

impl ClusterInfo {
    /// The cluster public key.
    pub fn key(&self) -> Result<PublicKey, ClientError> {
        parse_public_key(&self.public_key)
    }
}

/// Parses a hex BLS public key (48 bytes).
pub fn parse_public_key(text: &str) -> Result<PublicKey, ClientError> {
    let bytes: [u8; 48] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ClientError::Config(format!("{text:?} is not a 96-hex-character key")))?;
    PublicKey::from_bytes(bytes)
        .map_err(|e| ClientError::Config(format!("not a BLS12-381 G1 public key: {e}")))
}

/// The error shape every replica uses: `{"error": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// One human sentence.
    pub message: String,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// Structured details, or null.
    #[serde(default)]
    pub details: serde_json::Value,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

/// What can go wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster refused the request (not retryable: malformed, bad signature, ...).
    #[error("refused by {url} ({status} {}): {}", .body.code, .body.message)]
    Refused {
        /// The replica that answered.
        url: String,
        /// HTTP status.
        status: u16,
        /// The typed error.
        body: ErrorBody,
    },
    /// No replica produced an answer before the deadline.
    #[error("no replica answered within {deadline:?}; last: {last}")]
    Unavailable {
        /// The deadline.
        deadline: Duration,
        /// The last error seen.
        last: String,
    },
    /// A replica answered with a certificate that does not verify: never trust it.
    #[error("the answer from {url} does not verify: {source}")]
    InvalidAnswer {
        /// The replica that answered.
        url: String,
        /// Why.
        source: AnswerError,
    },
    /// A replica answered something that is not the API's JSON.
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The replica.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Bad local configuration (URLs, keys).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Whether the error came from the cluster being unreachable or busy.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClientError::Unavailable { .. })
    }
}

/// How hard the client tries before giving up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Give up after this long in total.
    pub deadline: Duration,
    /// The first back-off; doubles per full pass over the replicas.
    pub backoff: Duration,
    /// The back-off cap.
    pub backoff_max: Duration,
    /// Timeout of one HTTP call.
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            backoff: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            call_timeout: Duration::from_secs(15),
        }
    }
}

/// A verified answer: the certificate checked against the cluster key.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The answer as received (keep it: it is evidence anyone can check).
    pub answer: NotarisationAnswer,
    /// The replica that answered.
    pub url: String,
}

impl Verified {
    /// The certified outcome.
    pub fn outcome(&self) -> &Outcome {
        &self.answer.leaf.outcome
    }
}

/// Whether a call goes through the client-side throttle: notarisations do; reads
/// (`GET /v1/transactions/{id}`, the way to fetch an answer while a replica is overloaded, and
/// the others) are never refused by admission, and neither throttled nor counted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Throttled {
    Yes,
    No,
}

enum Attempt<T> {
    Done(T),
    Retry(String),
    /// The replica answered `overloaded` (retryable, and counted by the throttle).
    Overloaded(String),
}

/// Signed block headers whose cluster signature this client has verified, by the SHA-256 of
/// the header's canonical bytes and the signature. The answers of a run of blocks carry the
/// same signed header and signature: the pairing check (about 1 ms) is paid once per
/// certificate, while each answer's leaf, request content, inclusion proof and header chain
/// are still checked on their own.
#[derive(Default)]
struct VerifiedHeaders {
    set: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

/// How many verified headers a client remembers.
const VERIFIED_HEADERS_MAX: usize = 4096;

impl VerifiedHeaders {
    fn key(
        signed: &notary_types::BlockHeader,
        signature: &notary_types::ClusterSignature,
    ) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(signed.canonical_bytes());
        h.update(signature.0);
        h.finalize().into()
    }
}

/// A client of one cluster.
#[derive(Clone)]
pub struct Client {
    urls: Vec<String>,
    key: PublicKey,
    http: reqwest::Client,
    policy: RetryPolicy,
    verified: std::sync::Arc<std::sync::Mutex<VerifiedHeaders>>,
    /// Per replica: how much to send once it answers `overloaded` (see [`throttle`]).
    throttle: std::sync::Arc<throttle::Throttle>,
}

impl Client {
    /// A client that trusts `key` (from the shared cluster file: the right way).
    pub fn new(
        urls: Vec<String>,
        key: PublicKey,
        policy: RetryPolicy,
    ) -> Result<Self, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Config("no replica URL given".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(policy.call_timeout)
            .http2_prior_knowledge()
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        let throttle = throttle::Throttle::new(urls.len(), throttle::DEFAULT_K, Instant::now());
        Ok(Self {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            key,
            http,
            policy,
            verified: Default::default(),
            throttle: std::sync::Arc::new(throttle),
        })
    }

    /// A client that learns the cluster key from the first replica that answers
    /// `GET /v1/cluster` (trust on first use: fine for a demo, not for production, where
    /// the key comes from the cluster file).
    pub async fn discover(
        urls: Vec<String>,
        policy: RetryPolicy,
    ) -> Result<(Self, ClusterInfo), ClientError> {
        // The probe only fetches the cluster description; it verifies nothing, so the key it
        // holds (the identity point of the zero secret) is never used.
        let probe = Self::new(
            urls,
            notary_types::blsttc::SecretKey::default().public_key(),
            policy,
        )?;
        let info = probe.cluster().await?;
        let key = info.key()?;
        Ok((Self { key, ..probe }, info))
    }

    /// The replica URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The cluster key answers are verified against.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// `GET /v1/cluster` from the first replica that answers.
    pub async fn cluster(&self) -> Result<ClusterInfo, ClientError> {
        self.with_retries(0, Throttled::No, |url| async move {
            self.get_json::<ClusterInfo>(&format!("{url}/v1/cluster"))
                .await
        })
        .await
    }

    /// `GET /v1/cluster` from one replica.
    pub async fn cluster_of(&self, url: &str) -> Result<ClusterInfo, ClientError> {
        match self
            .get_json::<ClusterInfo>(&format!("{url}/v1/cluster"))
            .await?
        {
            Attempt::Done(i) => Ok(i),
            Attempt::Retry(last) | Attempt::Overloaded(last) => Err(ClientError::Unavailable {
                deadline: self.policy.call_timeout,
                last,
            }),
        }
    }

    /// Notarises `request`, starting with replica `start` (spread load by choosing it),
    /// retrying elsewhere on retryable errors; returns the verified answer, whatever the
    /// outcome (a signed conflict is an answer, not an error).
    pub async fn notarise_via(
        &self,
        start: usize,
        request: &NotarisationRequest,
    ) -> Result<Verified, ClientError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ClientError::Config(format!("cannot encode the request: {e}")))?;
        let answer = self
            .with_retries(start, Throttled::Yes, |url| {
                let body = body.clone();
                async move {
                    let resp = self
                        .http
                        .post(format!("{url}/v1/notarise"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    self.read_answer(&url, resp).await
                }
            })
            .await?;
        self.verify(&answer.answer, &request.fields)
            .map_err(|source| ClientError::InvalidAnswer {
                url: answer.url.clone(),
                source,
            })?;
        Ok(answer)
    }

    /// Verifies an answer for exactly `request` against the cluster key, checking each
    /// block's signature once (see `VerifiedHeaders`).
    pub fn verify(
        &self,
        answer: &NotarisationAnswer,
        request: &notary_types::RequestFields,
    ) -> Result<(), AnswerError> {
        answer.verify_content(request)?;
        let signed = answer.signed_header()?;
        let key = VerifiedHeaders::key(signed, &answer.signature);
        let known = self
            .verified
            .lock()
            .map(|v| v.set.contains(&key))
            .unwrap_or(false);
        if !known {
            signed.verify(&self.key, &answer.signature)?;
            if let Ok(mut v) = self.verified.lock() {
                if v.set.insert(key) {
                    v.order.push_back(key);
                }
                while v.order.len() > VERIFIED_HEADERS_MAX {
                    if let Some(old) = v.order.pop_front() {
                        v.set.remove(&old);
                    }
                }
            }
        }
        Ok(())
    }

    /// [`Client::notarise_via`] starting with the first replica.
    pub async fn notarise(&self, request: &NotarisationRequest) -> Result<Verified, ClientError> {
        self.notarise_via(0, request).await
    }

    /// The certified answer for a transaction (`GET /v1/transactions/{id}`), checked for
    /// inclusion and signature (the request content is checked by [`verify_answer`] when the
    /// caller has the request).
    pub async fn status(&self, tx: &TxId) -> Result<Verified, ClientError> {
        let answer = self
            .with_retries(0, Throttled::No, |url| async move {
                let resp = self
                    .http
                    .get(format!("{url}/v1/transactions/{tx}"))
                    .send()
                    .await;
                self.read_answer(&url, resp).await
            })
            .await?;
        verify_detached(&self.key, &answer.answer).map_err(|source| {
            ClientError::InvalidAnswer {
                url: answer.url.clone(),
                source,
            }
        })?;
        Ok(answer)
    }

    /// A committed block (`GET /v1/blocks/{height}`), as JSON.
    pub async fn block(&self, height: Height) -> Result<serde_json::Value, ClientError> {
        self.with_retries(0, Throttled::No, |url| async move {
            self.get_json::<serde_json::Value>(&format!("{url}/v1/blocks/{}", height.0))
                .await
        })
        .await
    }

    /// The HTTP client (for streams).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
    ) -> Result<Attempt<T>, ClientError> {
        let resp = match self.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
        };
        if status == 200 {
            return serde_json::from_slice(&bytes)
                .map(Attempt::Done)
                .map_err(|e| ClientError::Protocol {
                    url: url.to_string(),
                    message: e.to_string(),
                });
        }
        self.classify_error(url, status, &bytes)
    }

    fn classify_error<T>(
        &self,
        url: &str,
        status: u16,
        bytes: &[u8],
    ) -> Result<Attempt<T>, ClientError> {
        match serde_json::from_slice::<ErrorEnvelope>(bytes) {
            Ok(env) if env.error.code == "overloaded" => Ok(Attempt::Overloaded(format!(
                "{url}: {status} {}: {}",
                env.error.code, env.error.message
            ))),
            Ok(env) if env.error.retryable || status >= 500 => Ok(Attempt::Retry(format!(
                "{url}: {status} {}: {}",
                env.error.code, env.error.message
            ))),
            Ok(env) => Err(ClientError::Refused {
                url: url.to_string(),
                status,
                body: env.error,
            }),
            Err(_) if status >= 500 => Ok(Attempt::Retry(format!("{url}: HTTP {status}"))),
            Err(e) => Err(ClientError::Protocol {
                url: url.to_string(),
                message: format!("HTTP {status} without the error JSON: {e}"),
            }),
        }
    }

    async fn read_answer(
        &self,
        url: &str,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Attempt<Verified>, ClientError> {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Ok(Attempt::Retry(format!("{url}: {e}"))),
        };
        match status {
            200 | 409 | 422 => {
                let answer: NotarisationAnswer =
                    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
                        url: url.to_string(),
                        message: format!("HTTP {status} body is not an answer: {e}"),
                    })?;
                Ok(Attempt::Done(Verified {
                    answer,
                    url: url.to_string(),
                }))
            }
            _ => self.classify_error(url, status, &bytes),
        }
    }

    /// Calls `op` on replicas in turn from `start`, with back-off after each full pass,
    /// until it is done, refused, or the deadline passes. With [`Throttled::Yes`], a replica
    /// that has been answering `overloaded` is skipped by the throttle for a share of calls,
    /// as if it had answered so again, without a round trip.
    async fn with_retries<T, F, Fut>(
        &self,
        start: usize,
        throttled: Throttled,
        mut op: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>, ClientError>>,
    {
        let began = Instant::now();
        let mut backoff = self.policy.backoff;
        let mut last: String;
        let n = self.urls.len();
        let mut i = start % n;
        let mut tried = 0usize;
        loop {
            if throttled == Throttled::No || self.throttle.allow(i, Instant::now()) {
                let outcome = op(self.urls[i].clone()).await;
                // An answer or a final refusal counts as accepted, `overloaded` as refused; a
                // failed connection, `unavailable`, `pending` or a protocol error says nothing
                // of the replica's load.
                let accepted = match &outcome {
                    Ok(Attempt::Done(_)) | Err(ClientError::Refused { .. }) => Some(true),
                    Ok(Attempt::Overloaded(_)) => Some(false),
                    _ => None,
                };
                if let (Throttled::Yes, Some(accepted)) = (throttled, accepted) {
                    self.throttle.record(i, accepted, Instant::now());
                }
                match outcome? {
                    Attempt::Done(t) => return Ok(t),
                    Attempt::Retry(why) | Attempt::Overloaded(why) => last = why,
                }
            } else {
                last = format!(
                    "{}: not sent: it has been answering `overloaded`, so this client \
                     throttles itself",
                    self.urls[i]
                );
            }
            tried += 1;
            i = (i + 1) % n;
            if began.elapsed() >= self.policy.deadline {
                return Err(ClientError::Unavailable {
                    deadline: self.policy.deadline,
                    last,
                });
            }
            if tried % n == 0 {
                let left = self.policy.deadline.saturating_sub(began.elapsed());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(self.policy.backoff_max);
            }
        }
    }
}

/// Verifies an answer's inclusion proof and cluster signature without the request (for
/// `status` and `follow`, where the caller may not hold the request).
pub fn verify_detached(key: &PublicKey, answer: &NotarisationAnswer) -> Result<(), AnswerError> {
    answer.verify_inclusion()?;
    answer.signed_header()?.verify(key, &answer.signature)
}

/// Verifies an answer for exactly this request against the cluster key.
pub fn verify_answer<'a>(
    key: &PublicKey,
    answer: &'a NotarisationAnswer,
    request: &notary_types::RequestFields,
) -> Result<&'a Outcome, AnswerError> {
    answer.verify(key, request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notary_types::blsttc::SecretKey;
    use notary_types::ed25519_dalek::SigningKey;
    use notary_types::{
        BlockHeader, ClusterId, ClusterSignature, Leaf, MerkleTree, RequestFields, RequesterKey,
        StateRef, Timestamp,
    };

    fn request(i: u8) -> NotarisationRequest {
        let key = SigningKey::from_bytes(&[7; 32]);
        let fields = RequestFields {
            cluster_id: ClusterId::new("test").unwrap(),
            tx_id: TxId([i; 32]),
            inputs: vec![StateRef {
                tx_id: TxId([100 + i; 32]),
                index: 0,
            }],
            references: Vec::new(),
            time_window: None,
            requester: RequesterKey([0; 32]),
        };
        NotarisationRequest::sign(fields, &key)
    }

    /// Two answers of one block, signed by `sk`.
    fn block(sk: &SecretKey) -> (Vec<NotarisationRequest>, Vec<NotarisationAnswer>) {
        let requests = vec![request(1), request(2)];
        let leaves: Vec<Leaf> = requests
            .iter()
            .map(|r| Leaf {
                tx_id: r.fields.tx_id,
                request_digest: r.fields.digest(),
                outcome: Outcome::Committed,
            })
            .collect();
        let tree = MerkleTree::from_leaves(&leaves);
        let header = BlockHeader {
            cluster_id: ClusterId::new("test").unwrap(),
            height: Height(1),
            timestamp: Timestamp(1_000),
            leaf_count: 2,
            root: tree.root(),
            prev: notary_types::HeaderHash([0; 32]),
        };
        let signature = ClusterSignature(sk.sign(header.canonical_bytes()).to_bytes());
        let answers = leaves
            .into_iter()
            .enumerate()
            .map(|(i, leaf)| NotarisationAnswer {
                leaf,
                proof: tree.proof(i).unwrap(),
                header: header.clone(),
                chain: Vec::new(),
                signature,
            })
            .collect();
        (requests, answers)
    }

    fn client(key: PublicKey) -> Client {
        Client::new(
            vec!["http://127.0.0.1:9".into()],
            key,
            RetryPolicy::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_cached_block_signature_still_checks_every_answer_content() {
        let sk = SecretKey::random();
        let (requests, answers) = block(&sk);
        let c = client(sk.public_key());
        c.verify(&answers[0], &requests[0].fields).unwrap();
        // The header is now known good; the second answer is checked without a pairing...
        c.verify(&answers[1], &requests[1].fields).unwrap();
        // ...but its content still is: the wrong request, or a tampered leaf, fails.
        assert!(c.verify(&answers[1], &requests[0].fields).is_err());
        let mut tampered = answers[1].clone();
        tampered.leaf.outcome = Outcome::TxIdReused {
            original_digest: requests[0].fields.digest(),
        };
        assert!(c.verify(&tampered, &requests[1].fields).is_err());
    }

    #[test]
    fn a_block_signed_by_another_key_is_refused_even_after_a_good_one() {
        let sk = SecretKey::random();
        let (requests, answers) = block(&sk);
        let c = client(sk.public_key());
        c.verify(&answers[0], &requests[0].fields).unwrap();
        let forger = SecretKey::random();
        let (requests, forged) = block(&forger);
        assert!(c.verify(&forged[0], &requests[0].fields).is_err());
    }
}
