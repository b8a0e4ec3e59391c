//! Setting a replica up: `notaryd init`, `notaryd testnet` and `notaryd config check`.
//!
//! Key files are written through [`notary_net::keyfile`] (mode 0600 from creation) and read
//! back through it (refused when group or others can read them).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::rngs::OsRng;

use crate::config::{ClusterFile, Config, Home, LedgerNode, Member, PROTOCOL_VERSION};
use crate::keys::{self, BlsShareFile, KeyOrigin};
use crate::localnet::ports;

/// The agencies of the demo story, in member order.
const AGENCY_NAMES: [&str; 7] = [
    "treasury",
    "council",
    "health-trust",
    "school-board",
    "regulator",
    "audit-office",
    "police",
];

/// Arguments of `notaryd testnet`.
#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Number of replicas (n ≥ 4; f = ⌊(n−1)/3⌋).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Output directory (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Replica i listens on base+i (peers), base+100+i (API), base+200+i (admin).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// The cluster id.
    #[arg(long, default_value = "wooden-dollars")]
    pub cluster_id: String,
    /// Number of ledger-node client keys to create and permit.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
}

/// Arguments of `notaryd init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The home directory to create.
    #[arg(long)]
    pub home: PathBuf,
    /// This replica's id in the cluster file.
    #[arg(long)]
    pub id: u16,
    /// The agency's name.
    #[arg(long)]
    pub name: String,
    /// The address other replicas reach this one at (host:port).
    #[arg(long)]
    pub peer_address: String,
    /// The URL ledger nodes reach the API at.
    #[arg(long)]
    pub api_url: String,
    /// QUIC listen address.
    #[arg(long, default_value = "0.0.0.0:7000")]
    pub listen_peer: SocketAddr,
    /// API listen address.
    #[arg(long, default_value = "0.0.0.0:8000")]
    pub listen_api: SocketAddr,
    /// Admin listen address (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen_admin: SocketAddr,
}

fn create_home_dirs(home: &Home) -> Result<()> {
    for d in ["config", "keys", "data"] {
        std::fs::create_dir_all(home.root.join(d))
            .with_context(|| format!("cannot create {}", home.root.join(d).display()))?;
    }
    keys::restrict_dir(&home.root.join("keys"))?;
    Ok(())
}

/// The public half of a replica's identity, as it goes into the cluster file.
struct PublicIdentity {
    tls_fingerprint: String,
    consensus_key: String,
}

/// Writes a replica's TLS identity and consensus key into its home.
fn write_replica_keys(home: &Home, cluster_id: &str, id: u16) -> Result<PublicIdentity> {
    let identity = notary_net::generate_member_identity(
        cluster_id,
        notary_net::ReplicaId(id),
        notary_net::Validity::long_lived(),
    )
    .context("cannot generate the TLS identity")?;
    std::fs::write(home.tls_cert(), identity.cert_pem().as_bytes())
        .with_context(|| format!("cannot write {}", home.tls_cert().display()))?;
    notary_net::keyfile::write_private(&home.tls_key(), identity.key_pem().as_bytes())?;
    let consensus = keys::generate_consensus_key();
    keys::write_consensus_key(&home.consensus_key(), &consensus)?;
    Ok(PublicIdentity {
        tls_fingerprint: identity.fingerprint()?.to_hex(),
        consensus_key: hex::encode(consensus.verifying_key().to_bytes()),
    })
}

fn node_toml(id: u16, peer: SocketAddr, api: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"# notary.toml: this replica's own configuration (the cluster file is shared).
# Unknown keys are errors. Durations are strings with units: "750ms", "2s".
# A flag or a NOTARY_* environment variable overrides a value here.

# Which member of config/cluster.toml this replica is.
id = {id}

# How long a client's POST /v1/notarise waits for its certified answer before it is told
# "pending" (it may ask again: notarisation is idempotent).
answer_timeout = "10s"

[listen]
peer = "{peer}"    # QUIC, for the other replicas (NOTARY_LISTEN_PEER)
api = "{api}"      # HTTP client API, for ledger nodes (NOTARY_LISTEN_API)
admin = "{admin}"  # /livez /readyz /status /metrics: keep it on loopback (NOTARY_LISTEN_ADMIN)

[consensus]
round_timeout = "1s"        # doubles on consecutive timeouts...
round_timeout_max = "30s"   # ...up to this cap
max_clock_drift = "500ms"   # refuse to vote for a block timestamp further ahead of our clock

[batch]
max_requests = 2000          # a batch is sealed at this many requests...
max_delay = "5ms"            # ...or when its oldest request has waited this long
max_pending_requests = 50000 # beyond this many in flight, answer 503 overloaded
max_pending_per_requester = 10000 # the same bound per ledger node (requester key)
max_queue_delay = "200ms"    # admit fewer when even the fastest answers take longer
pipeline_blocks = 3          # as leader, wait while this many blocks await their write, or certificates form (0: off)
sign_interval = "25ms"       # sign the first block of each 25 ms of block time (same on every replica)
"#
    )
}

fn write_cluster_file(path: &Path, cluster: &ClusterFile) -> Result<()> {
    let mut text =
        String::from("# The cluster file: shared byte for byte by every agency of the cluster.\n");
    if cluster.development {
        text.push_str(
            "# DEVELOPMENT CLUSTER: the BLS keys came from a dealer (notaryd testnet), which\n\
             # knew the whole cluster key. Never use these keys for real notarisations.\n",
        );
    }
    text.push_str(&toml::to_string(cluster).context("cannot encode the cluster file")?);
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `notaryd testnet`: every home directory of a local development cluster.
pub fn testnet(args: &TestnetArgs) -> Result<()> {
    let n = args.replicas;
    if n < 4 {
        bail!("--replicas {n}: a Byzantine-tolerant cluster needs n ≥ 3f+1 ≥ 4");
    }
    if usize::from(args.base_port) + 200 + n > usize::from(u16::MAX) {
        bail!(
            "--base-port {} leaves no room for {n} replicas",
            args.base_port
        );
    }
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("{} exists and is not empty", args.out.display());
    }
    std::fs::create_dir_all(&args.out)?;
    let f = (n - 1) / 3;

    let mut members = Vec::new();
    let mut homes = Vec::new();
    for i in 0..n {
        let id = i as u16;
        let home = Home::new(args.out.join(format!("replica-{i}")));
        create_home_dirs(&home)?;
        let public = write_replica_keys(&home, &args.cluster_id, id)?;
        let (peer, api, admin) = ports(args.base_port, i);
        let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        std::fs::write(
            home.node_file(),
            node_toml(id, local(peer), local(api), local(admin)),
        )?;
        members.push(Member {
            id,
            name: AGENCY_NAMES
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("agency-{i}")),
            peer_address: format!("127.0.0.1:{peer}"),
            api_url: format!("http://127.0.0.1:{api}"),
            tls_fingerprint: public.tls_fingerprint,
            consensus_key: public.consensus_key,
        });
        homes.push(home);
    }

    // The dealer: one machine knows the whole key. Development clusters only.
    let dealer = keys::deal(f, &mut OsRng);
    for (i, home) in homes.iter().enumerate() {
        let share = BlsShareFile::new(i as u16, &dealer.secret_key_share(i), KeyOrigin::Dealer);
        share.write(&home.bls_share())?;
    }

    let clients_dir = args.out.join("clients");
    std::fs::create_dir_all(&clients_dir)?;
    keys::restrict_dir(&clients_dir)?;
    let mut ledger_nodes = Vec::new();
    for j in 0..args.clients {
        let key = keys::generate_consensus_key();
        let path = clients_dir.join(format!("client-{j}.key"));
        notary_net::keyfile::write_private(&path, hex::encode(key.to_bytes()).as_bytes())?;
        ledger_nodes.push(LedgerNode {
            name: format!("ledger-node-{j}"),
            key: hex::encode(key.verifying_key().to_bytes()),
        });
    }

    let cluster = ClusterFile {
        cluster_id: args.cluster_id.clone(),
        protocol_version: PROTOCOL_VERSION,
        development: true,
        bls_public_key_set: hex::encode(dealer.public_keys().to_bytes()),
        members,
        ledger_nodes,
    };
    write_cluster_file(&args.out.join("cluster.toml"), &cluster)?;
    for home in &homes {
        write_cluster_file(&home.cluster_file(), &cluster)?;
        let config = Config::load(home)?;
        config.validate()?;
    }
    println!(
        "wrote a development cluster of {n} replicas (f = {f}) to {}",
        args.out.display()
    );
    Ok(())
}

/// `notaryd init`: one replica's home with fresh keys; prints its cluster-file entry.
pub fn init(args: &InitArgs) -> Result<()> {
    let home = Home::new(&args.home);
    if home.node_file().exists() {
        bail!("{} already holds a replica", args.home.display());
    }
    create_home_dirs(&home)?;
    // The cluster id goes into the certificate's name only; the pin is the key.
    let public = write_replica_keys(&home, "notary", args.id)?;
    std::fs::write(
        home.node_file(),
        node_toml(
            args.id,
            args.listen_peer,
            args.listen_api,
            args.listen_admin,
        ),
    )?;
    let member = Member {
        id: args.id,
        name: args.name.clone(),
        peer_address: args.peer_address.clone(),
        api_url: args.api_url.clone(),
        tls_fingerprint: public.tls_fingerprint,
        consensus_key: public.consensus_key,
    };
    let mut out = String::new();
    writeln!(
        out,
        "# Created {}. Send this entry to the other agencies for the shared cluster file\n\
         # (config/cluster.toml); the BLS key share comes from the key ceremony.\n[[members]]",
        args.home.display()
    )?;
    out.push_str(&toml::to_string(&member)?);
    println!("{out}");
    Ok(())
}

/// `notaryd config check`: everything `start` needs, short of starting.
pub fn check(config: &Config) -> Result<()> {
    check_keys(config)?;
    check_ports(config)
}

/// The key files: present, private, and matching the cluster file.
pub fn check_keys(config: &Config) -> Result<()> {
    let home = &config.home;
    let set = keys::public_key_set(&config.cluster)?;
    if set.threshold() != config.f() {
        bail!(
            "the cluster's BLS key set has threshold {} (signatures need {} shares), but n = {} \
             needs f+1 = {} shares",
            set.threshold(),
            set.threshold() + 1,
            config.n(),
            config.f() + 1
        );
    }
    let share = BlsShareFile::read(&home.bls_share())?;
    share.check_against(&set, config.node.id, config.cluster.development)?;
    let cert = std::fs::read(home.tls_cert())
        .with_context(|| format!("cannot read {}", home.tls_cert().display()))?;
    let key = notary_net::keyfile::read_private(&home.tls_key())?;
    let identity = notary_net::Identity::from_pem(&cert, &key)
        .context("keys/tls.crt and keys/tls.key do not form an identity")?;
    let pinned = &config.me().tls_fingerprint;
    if identity.fingerprint()?.to_hex() != pinned.to_lowercase() {
        bail!(
            "keys/tls.crt's public key does not match this replica's tls_fingerprint {pinned} \
             in the cluster file"
        );
    }
    let vote = keys::read_consensus_key(&home.consensus_key())?;
    if hex::encode(vote.verifying_key().to_bytes()) != config.me().consensus_key.to_lowercase() {
        bail!("keys/consensus.key does not match this replica's consensus_key in the cluster file");
    }
    Ok(())
}

/// The listen addresses are free.
fn check_ports(config: &Config) -> Result<()> {
    let l = &config.node.listen;
    for (what, addr) in [("peer", l.peer), ("api", l.api), ("admin", l.admin)] {
        // QUIC binds UDP; the others TCP. A free TCP port is what we can check cheaply for all.
        if what != "peer" {
            TcpListener::bind(addr).with_context(|| format!("listen.{what} {addr} is not free"))?;
        } else {
            std::net::UdpSocket::bind(addr)
                .with_context(|| format!("listen.{what} {addr} is not free"))?;
        }
    }
    Ok(())
}
