//! Configuration: the shared cluster file and the replica's own `notary.toml`.
//!
//! Both are plain data with documented defaults, parsed strictly (an unknown key is an
//! error, so a typo never silently falls back to a default) and validated once, here, at
//! the edge. What passes [`Config::validate`] is handed down as one context.
//!
//! * `config/cluster.toml` is **shared byte for byte** by every agency: the cluster id,
//!   the members (addresses, pinned TLS fingerprints, consensus keys), the cluster's BLS
//!   public key set, and the ledger nodes permitted to submit requests.
//! * `config/notary.toml` is the replica's own: which member it is, where it listens,
//!   timings and limits. Durations are strings such as `"750ms"` or `"2s"`.
//!
//! Flags and `NOTARY_*` environment variables override `notary.toml` (see `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The version of the replica-to-replica protocol this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// A configuration that cannot be used, with what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid TOML or has unknown or missing keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// The configuration parses but breaks a rule.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A member of the cluster, as listed in the shared cluster file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Replica id, `0..n`, unique.
    pub id: u16,
    /// The agency that runs it (for people and dashboards).
    pub name: String,
    /// Where other replicas reach it over QUIC (`host:port`).
    pub peer_address: String,
    /// Where ledger nodes reach its client API (`http://host:port`).
    pub api_url: String,
    /// SHA-256 fingerprint (hex) pinning the member's TLS identity.
    pub tls_fingerprint: String,
    /// The member's ed25519 consensus (vote) public key, hex.
    pub consensus_key: String,
}

/// A ledger node permitted to submit notarisation requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LedgerNode {
    /// Who it is (for people and logs).
    pub name: String,
    /// Its ed25519 public key, hex.
    pub key: String,
}

/// The shared cluster file, identical at every agency.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's id: `[a-z0-9-]{1,64}`; part of every signed byte string.
    pub cluster_id: String,
    /// Replica-to-replica protocol version.
    pub protocol_version: u16,
    /// `true` for a development cluster whose BLS keys came from a dealer
    /// (`notaryd testnet`). `notaryd start` refuses dealer keys unless this is set.
    #[serde(default)]
    pub development: bool,
    /// The cluster's BLS public key set (blsttc `PublicKeySet` bytes, hex): the cluster
    /// public key that verifies certificates, and every replica's public key share.
    /// Empty (or absent) in a cluster file written before the key ceremony: `notaryd dkg`
    /// accepts that, `notaryd start` and `config check` refuse it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bls_public_key_set: String,
    /// The members, ordered by id.
    pub members: Vec<Member>,
    /// Ledger nodes permitted to submit requests.
    #[serde(default)]
    pub ledger_nodes: Vec<LedgerNode>,
}

/// Listening addresses of one replica.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// QUIC listener for the other replicas.
    pub peer: SocketAddr,
    /// HTTP listener for ledger nodes (the client API).
    pub api: SocketAddr,
    /// HTTP listener for operators: `/livez`, `/readyz`, `/status`, `/metrics`.
    /// Loopback by default: it is not meant for the network.
    pub admin: SocketAddr,
}

/// Consensus timings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// The first round timeout; it doubles on consecutive timeouts up to `round_timeout_max`.
    #[serde(with = "duration_str")]
    pub round_timeout: Duration,
    /// The cap on the round timeout.
    #[serde(with = "duration_str")]
    pub round_timeout_max: Duration,
    /// How far a block's timestamp may be ahead of this replica's clock before it refuses
    /// to vote for it.
    #[serde(with = "duration_str")]
    pub max_clock_drift: Duration,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            round_timeout: Duration::from_millis(1000),
            round_timeout_max: Duration::from_secs(30),
            max_clock_drift: Duration::from_millis(500),
        }
    }
}

/// Request batching and admission.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// A batch is sealed when it holds this many requests...
    pub max_requests: usize,
    /// ...or when its oldest request has waited this long.
    #[serde(with = "duration_str")]
    pub max_delay: Duration,
    /// Requests admitted but not yet answered, beyond which new ones get `overloaded`.
    pub max_pending_requests: usize,
    /// The same bound for the requests of one requester (ledger node).
    pub max_pending_per_requester: usize,
    /// Queueing-delay target of the adaptive admission limit (see `admission.rs`): when even
    /// the fastest answers take longer than this, fewer requests are admitted.
    #[serde(with = "duration_str")]
    pub max_queue_delay: Duration,
    /// As leader, propose only while fewer committed blocks than this wait to be applied
    /// and fewer certificates than this are forming (`mempool.rs`, pacing); 0 turns pacing
    /// off.
    pub pipeline_blocks: u64,
    /// Replicas sign the first block of each window of this much block time (every other one
    /// when rounds are as long as a window), and a certificate covers the blocks below it
    /// through the header chain (`executor.rs`); a replica that has applied no block for
    /// this long signs its newest. Every replica of a cluster must use the same value (or
    /// the replicas sign different blocks, and more of them). Larger: fewer certificates,
    /// longer waits for them.
    #[serde(with = "duration_str")]
    pub sign_interval: Duration,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_requests: 2000,
            max_delay: Duration::from_millis(5),
            max_pending_requests: 50_000,
            max_pending_per_requester: 10_000,
            max_queue_delay: Duration::from_millis(200),
            pipeline_blocks: 3,
            sign_interval: Duration::from_millis(25),
        }
    }
}

/// The replica's own configuration, `config/notary.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Which member of the cluster file this replica is.
    pub id: u16,
    /// Where it listens.
    pub listen: Listen,
    /// Consensus timings.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Batching and admission.
    #[serde(default)]
    pub batch: BatchSection,
    /// How long a client's HTTP call waits for its certified answer before it is told the
    /// request is still pending (it may ask again: notarisation is idempotent).
    #[serde(default = "default_answer_timeout", with = "duration_str")]
    pub answer_timeout: Duration,
}

fn default_answer_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The files of a replica's home directory.
#[derive(Clone, Debug)]
pub struct Home {
    /// The home directory itself.
    pub root: PathBuf,
}

impl Home {
    /// A home rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `config/notary.toml`.
    pub fn node_file(&self) -> PathBuf {
        self.root.join("config/notary.toml")
    }
    /// `config/cluster.toml`.
    pub fn cluster_file(&self) -> PathBuf {
        self.root.join("config/cluster.toml")
    }
    /// `keys/tls.crt` (public: the certificate).
    pub fn tls_cert(&self) -> PathBuf {
        self.root.join("keys/tls.crt")
    }
    /// `keys/tls.key` (private, mode 0600).
    pub fn tls_key(&self) -> PathBuf {
        self.root.join("keys/tls.key")
    }
    /// `keys/consensus.key` (private, mode 0600): the ed25519 vote signing key.
    pub fn consensus_key(&self) -> PathBuf {
        self.root.join("keys/consensus.key")
    }
    /// `keys/bls.share` (private, mode 0600): this replica's BLS secret key share.
    pub fn bls_share(&self) -> PathBuf {
        self.root.join("keys/bls.share")
    }
    /// `data/`: the database.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
}

/// Everything a replica needs to start, parsed and validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The home directory.
    pub home: Home,
    /// The shared cluster file.
    pub cluster: ClusterFile,
    /// This replica's own file, with overrides applied.
    pub node: NodeFile,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl Config {
    /// Reads both files of a home directory (no validation yet).
    pub fn load(home: &Home) -> Result<Self, ConfigError> {
        Ok(Self {
            home: home.clone(),
            cluster: read_toml(&home.cluster_file())?,
            node: read_toml(&home.node_file())?,
        })
    }

    /// The number of members, n.
    pub fn n(&self) -> usize {
        self.cluster.members.len()
    }

    /// The largest number of faulty replicas tolerated: f = ⌊(n − 1) / 3⌋.
    pub fn f(&self) -> usize {
        (self.n().saturating_sub(1)) / 3
    }

    /// This replica's entry in the member list.
    pub fn me(&self) -> &Member {
        self.cluster
            .members
            .iter()
            .find(|m| m.id == self.node.id)
            .expect("validate() checked that our id is in the member list")
    }

    /// Checks every rule that does not need the key files or the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if c.cluster_id.is_empty()
            || c.cluster_id.len() > 64
            || !c
                .cluster_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!(
                "cluster_id {:?} must be 1 to 64 characters of [a-z0-9-]",
                c.cluster_id
            ));
        }
        if c.protocol_version != PROTOCOL_VERSION {
            return bad(format!(
                "cluster file speaks protocol version {}, this build speaks {}",
                c.protocol_version, PROTOCOL_VERSION
            ));
        }
        let n = c.members.len();
        // n ≥ 3f + 1 with f ≥ 1: fewer than 4 members tolerate no fault at all.
        if n < 4 {
            return bad(format!(
                "the cluster has {n} members; a Byzantine-tolerant cluster needs n ≥ 3f+1 ≥ 4"
            ));
        }
        for (i, m) in c.members.iter().enumerate() {
            if usize::from(m.id) != i {
                return bad(format!(
                    "members must be listed in id order 0..{n}: entry {i} has id {}",
                    m.id
                ));
            }
            if hex::decode(&m.tls_fingerprint).map(|b| b.len()) != Ok(32) {
                return bad(format!(
                    "member {} ({}): tls_fingerprint must be 64 hex characters",
                    m.id, m.name
                ));
            }
            if hex::decode(&m.consensus_key).map(|b| b.len()) != Ok(32) {
                return bad(format!(
                    "member {} ({}): consensus_key must be 64 hex characters",
                    m.id, m.name
                ));
            }
        }
        if !c.members.iter().any(|m| m.id == self.node.id) {
            return bad(format!(
                "this replica's id {} is not in the cluster's member list (0..{n})",
                self.node.id
            ));
        }
        for l in &c.ledger_nodes {
            if hex::decode(&l.key).map(|b| b.len()) != Ok(32) {
                return bad(format!(
                    "ledger node {:?}: key must be 64 hex characters",
                    l.name
                ));
            }
        }
        let t = &self.node.consensus;
        if t.round_timeout.is_zero() || t.round_timeout > t.round_timeout_max {
            return bad(format!(
                "consensus.round_timeout ({:?}) must be > 0 and ≤ round_timeout_max ({:?})",
                t.round_timeout, t.round_timeout_max
            ));
        }
        self.node.batch.check().map_err(ConfigError::Invalid)
    }
}

impl BatchSection {
    /// The batching and admission bounds are consistent; the message names the keys.
    pub fn check(&self) -> Result<(), String> {
        if self.max_requests == 0 || self.max_pending_requests < self.max_requests {
            return Err(format!(
                "batch.max_requests ({}) must be > 0 and ≤ batch.max_pending_requests ({})",
                self.max_requests, self.max_pending_requests
            ));
        }
        if self.max_pending_per_requester == 0
            || self.max_pending_per_requester > self.max_pending_requests
        {
            return Err(format!(
                "batch.max_pending_per_requester ({}) must be > 0 and ≤ batch.max_pending_requests ({})",
                self.max_pending_per_requester, self.max_pending_requests
            ));
        }
        if self.sign_interval < Duration::from_millis(1)
            || self.sign_interval > Duration::from_secs(1)
        {
            return Err(format!(
                "batch.sign_interval ({:?}) must be from 1ms to 1s: answers wait for it",
                self.sign_interval
            ));
        }
        if self.max_queue_delay < Duration::from_millis(10) {
            return Err(format!(
                "batch.max_queue_delay ({:?}) must be at least 10ms",
                self.max_queue_delay
            ));
        }
        Ok(())
    }
}

/// Durations written as strings, `"750ms"`, `"2s"`, `"1m"`.
pub mod duration_str {
    use super::*;

    /// Writes a duration as `"750ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"750ms"`; a bare number is refused because its unit would be a guess.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"750ms\" or \"2s\": {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_toml() -> &'static str {
        r#"
id = 1
answer_timeout = "3s"
[listen]
peer = "127.0.0.1:7001"
api = "127.0.0.1:8001"
admin = "127.0.0.1:9001"
[consensus]
round_timeout = "750ms"
"#
    }

    #[test]
    fn durations_are_strings_with_units() {
        let n: NodeFile = toml::from_str(node_toml()).unwrap();
        assert_eq!(n.consensus.round_timeout, Duration::from_millis(750));
        assert_eq!(n.answer_timeout, Duration::from_secs(3));
        // Unspecified sections take their documented defaults.
        assert_eq!(n.batch, BatchSection::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = format!("{}\nround_timeot = \"1s\"\n", node_toml());
        let err = toml::from_str::<NodeFile>(&text).unwrap_err().to_string();
        assert!(err.contains("round_timeot"), "{err}");
    }

    #[test]
    fn inconsistent_admission_bounds_are_named_errors() {
        assert_eq!(BatchSection::default().check(), Ok(()));
        let cases = [
            (
                BatchSection {
                    max_pending_per_requester: 60_000,
                    ..BatchSection::default()
                },
                "batch.max_pending_per_requester (60000)",
            ),
            (
                BatchSection {
                    max_pending_per_requester: 0,
                    ..BatchSection::default()
                },
                "batch.max_pending_per_requester (0)",
            ),
            (
                BatchSection {
                    max_queue_delay: Duration::from_millis(1),
                    ..BatchSection::default()
                },
                "batch.max_queue_delay (1ms)",
            ),
            (
                BatchSection {
                    max_requests: 0,
                    ..BatchSection::default()
                },
                "batch.max_requests (0)",
            ),
            (
                BatchSection {
                    sign_interval: Duration::ZERO,
                    ..BatchSection::default()
                },
                "batch.sign_interval (0ns)",
            ),
            (
                BatchSection {
                    sign_interval: Duration::from_secs(2),
                    ..BatchSection::default()
                },
                "batch.sign_interval (2s)",
            ),
        ];
        for (section, key) in cases {
            let err = section.check().unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn bare_numbers_are_not_durations() {
        let text = node_toml().replace("\"750ms\"", "750");
        assert!(toml::from_str::<NodeFile>(&text).is_err());
    }
}
