//! End-to-end tests: real `notaryd` processes on 127.0.0.1, driven through the client
//! library, the `notary` CLI and raw HTTP. The tests live in `tests/`; this library holds
//! what they share: finding the binaries, a cluster per test, and request builders.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use notary_client::Client;
use notary_node::localnet::LocalCluster;
use notary_types::ed25519_dalek::SigningKey;
use notary_types::{ClusterId, NotarisationRequest, RequestFields, RequesterKey, StateRef, TxId};
use sha2::{Digest, Sha256};

/// Clusters are heavy on a 2-core machine: tests take turns.
pub static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A binary built next to the test executable (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    dir.join(name)
}

/// A running cluster in a temporary directory, with a client and ledger-node keys.
pub struct TestCluster {
    /// The processes.
    pub cluster: LocalCluster,
    /// A client that trusts the cluster file's key.
    pub client: Client,
    /// The cluster id.
    pub cluster_id: ClusterId,
    /// Permitted ledger-node keys (`clients/client-j.key`).
    pub keys: Vec<SigningKey>,
    /// Path of the shared cluster file.
    pub cluster_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Creates and starts `n` replicas on ports from `base_port`, waits until all are ready.
    pub fn start(n: usize, base_port: u16) -> Result<Self> {
        Self::start_configured(n, base_port, |_, toml| toml)
    }

    /// Like [`TestCluster::start`], with each replica's `config/notary.toml` passed through
    /// `configure(i, text)` before it starts.
    pub fn start_configured(
        n: usize,
        base_port: u16,
        configure: impl Fn(usize, String) -> String,
    ) -> Result<Self> {
        let notaryd = binary("notaryd");
        anyhow::ensure!(
            notaryd.exists(),
            "{} is missing: build the binaries first (scripts/test does)",
            notaryd.display()
        );
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("cluster");
        let mut cluster = LocalCluster::create(&notaryd, &home, n, base_port)?;
        for i in 0..n {
            let path = cluster.home(i).join("config/notary.toml");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(&path, configure(i, text))?;
        }
        cluster.start_all()?;
        cluster.wait_all_ready(Duration::from_secs(60))?;
        let cluster_file = home.join("cluster.toml");
        let file = cluster.cluster_file()?;
        let client = cluster.client(Duration::from_secs(60))?;
        let mut keys = Vec::new();
        for j in 0.. {
            let path = home.join(format!("clients/client-{j}.key"));
            if !path.exists() {
                break;
            }
            keys.push(notary_node::keys::read_consensus_key(&path).context("client key")?);
        }
        Ok(Self {
            cluster,
            client,
            cluster_id: ClusterId::new(&file.cluster_id).map_err(|e| anyhow::anyhow!("{e}"))?,
            keys,
            cluster_file,
            _dir: dir,
        })
    }

    /// A signed request by ledger node `key` for transaction `tx` consuming `inputs`.
    pub fn request(&self, key: usize, tx: TxId, inputs: Vec<StateRef>) -> NotarisationRequest {
        let mut fields = RequestFields {
            cluster_id: self.cluster_id.clone(),
            tx_id: tx,
            inputs,
            references: Vec::new(),
            time_window: None,
            requester: RequesterKey(self.keys[key].verifying_key().to_bytes()),
        };
        fields.normalise();
        NotarisationRequest::sign(fields, &self.keys[key])
    }
}

/// A transaction id from a label.
pub fn tx(label: &str) -> TxId {
    TxId(Sha256::digest(label.as_bytes()).into())
}

/// Output `index` of the transaction labelled `label`.
pub fn state(label: &str, index: u32) -> StateRef {
    StateRef {
        tx_id: tx(label),
        index,
    }
}

/// `POST url` with a JSON body; panics if no answer comes (the tests' replicas are up).
pub async fn post_json(http: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Response {
    http.post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the replica answers")
}

/// Sends `POST path` announcing `content_length` bytes but writing only `body_prefix`, then
/// reads the answer: how a test shows that an oversized body is refused before it is read.
pub fn post_announcing(
    addr: std::net::SocketAddr,
    path: &str,
    content_length: usize,
    body_prefix: &[u8],
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )?;
    s.write_all(body_prefix)?;
    let mut buf = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}
