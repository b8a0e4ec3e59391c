//! `notary`: the ledger node's command line. Submit requests, check answers offline, watch the
//! cluster. Exit codes: 0 signed acceptance, 1 rejected by the notary (a signed rejection or a
//! refused request), 2 usage or configuration, 3 unavailable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use notary_client::{
    parse_public_key, verify_answer, verify_detached, Client, ClientError, ClusterInfo,
    RetryPolicy, Verified,
};
use notary_types::blsttc::PublicKey;
use notary_types::ed25519_dalek::SigningKey;
use notary_types::{
    ClusterId, NotarisationAnswer, NotarisationRequest, RequestFields, RequesterKey, StateRef,
    TimeWindow, Timestamp, TxId,
};
use serde::{Deserialize, Serialize};

/// mimalloc, not glibc's malloc: a quarter of `notary bench`'s CPU went to allocation
/// (BENCHMARKS.md, "Less CPU per notarisation").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "notary", version, about = "Talk to a BFT notary cluster")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Args)]
struct Global {
    /// A replica's API URL; repeat for several (or NOTARY_URLS, comma-separated).
    #[arg(
        long = "url",
        global = true,
        env = "NOTARY_URLS",
        value_delimiter = ','
    )]
    urls: Vec<String>,
    /// The cluster's BLS public key (hex). Without it (or --cluster-file) the key is learnt
    /// from the first replica that answers: trust on first use.
    #[arg(long, global = true, env = "NOTARY_CLUSTER_KEY")]
    cluster_key: Option<String>,
    /// The shared cluster file: gives the replica URLs and the cluster key.
    #[arg(long, global = true, env = "NOTARY_CLUSTER_FILE")]
    cluster_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Give up after this many seconds.
    #[arg(long, global = true, default_value_t = 30)]
    deadline_s: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a ledger node's ed25519 key (file mode 0600); prints the public key to add to
    /// the cluster file's `ledger_nodes`.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign and submit a notarisation request; prints the verified answer.
    Submit(SubmitArgs),
    /// The certified answer for a transaction.
    Status {
        /// The transaction id (hex).
        tx_id: String,
    },
    /// Verify a saved answer offline against the cluster key.
    Verify {
        /// The answer JSON (as printed by `submit -o json` or saved with --save).
        answer: PathBuf,
        /// The request JSON it answers; checks the leaf is for exactly this request.
        #[arg(long)]
        request: Option<PathBuf>,
    },
    /// Every replica's view of the cluster, as a table.
    Cluster,
    /// Follow certified blocks as they commit, checking each certificate.
    Follow {
        /// The first height.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Stop after this many blocks (default: run until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Load generator: open loop at --rate or closed loop at --concurrency; prints
    /// throughput and end-to-end latency with every certificate verified.
    Bench(notary_client::bench::BenchArgs),
}

#[derive(Args)]
struct SubmitArgs {
    /// The ledger node's key file (from `notary keygen`).
    #[arg(long, env = "NOTARY_KEY")]
    key: PathBuf,
    /// A request file: `{"tx_id", "inputs": ["txhex:index"], "references": [...],
    /// "time_window": {"from", "until"}}` (signed here with --key).
    #[arg(long, conflicts_with_all = ["tx", "input"])]
    file: Option<PathBuf>,
    /// The transaction id (hex, 32 bytes).
    #[arg(long)]
    tx: Option<String>,
    /// An input state `TXHEX:INDEX`; repeat.
    #[arg(long)]
    input: Vec<String>,
    /// A reference state `TXHEX:INDEX`; repeat.
    #[arg(long)]
    reference: Vec<String>,
    /// Time window start (RFC 3339, inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Time window end (RFC 3339, exclusive).
    #[arg(long)]
    until: Option<String>,
    /// Also write the signed request JSON here.
    #[arg(long)]
    save_request: Option<PathBuf>,
    /// Also write the answer JSON here.
    #[arg(long)]
    save: Option<PathBuf>,
}

/// A request before signing, as written in a request file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    tx_id: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    time_window: Option<WindowFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    from: Option<String>,
    until: Option<String>,
}

/// The failures of a command, mapped onto exit codes.
enum Failure {
    Rejected(String),
    Usage(String),
    Unavailable(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused { .. } => Failure::Rejected(e.to_string()),
            ClientError::Unavailable { .. } => Failure::Unavailable(e.to_string()),
            ClientError::Config(_) => Failure::Usage(e.to_string()),
            ClientError::InvalidAnswer { .. } | ClientError::Protocol { .. } => {
                Failure::Unavailable(e.to_string())
            }
        }
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

type Outcome = Result<(), Failure>;

fn parse_state_ref(text: &str) -> Result<StateRef, Failure> {
    let (tx, index) = text
        .rsplit_once(':')
        .ok_or_else(|| usage(format!("{text:?}: a state ref is TXHEX:INDEX")))?;
    Ok(StateRef {
        tx_id: tx
            .parse()
            .map_err(|e| usage(format!("{text:?}: bad transaction id: {e}")))?,
        index: index
            .parse()
            .map_err(|e| usage(format!("{text:?}: bad output index: {e}")))?,
    })
}

fn parse_time(text: &Option<String>) -> Result<Option<Timestamp>, Failure> {
    text.as_deref()
        .map(|t| Timestamp::parse_rfc3339(t).map_err(|e| usage(format!("{t:?}: {e}"))))
        .transpose()
}

/// Reads a ledger node's key written by `notary keygen` (or `notaryd testnet`).
fn read_key(path: &Path) -> Result<SigningKey, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(usage(format!(
            "{}: mode {:o} lets others read the key; chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| usage(format!("{}: not a 64-hex-character key", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// The parts of the cluster file the CLI needs.
#[derive(Deserialize)]
struct ClusterFileView {
    cluster_id: String,
    bls_public_key_set: String,
    members: Vec<MemberView>,
}

#[derive(Deserialize)]
struct MemberView {
    api_url: String,
}

struct Context {
    client: Client,
    cluster_id: Option<String>,
    output: Output,
}

async fn connect(g: &Global) -> Result<Context, Failure> {
    let policy = RetryPolicy {
        deadline: Duration::from_secs(g.deadline_s),
        ..RetryPolicy::default()
    };
    let mut urls = g.urls.clone();
    let mut key = g.cluster_key.as_deref().map(parse_public_key).transpose()?;
    let mut cluster_id = None;
    if let Some(path) = &g.cluster_file {
        let text =
            std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        let file: ClusterFileView =
            toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        if urls.is_empty() {
            urls = file.members.iter().map(|m| m.api_url.clone()).collect();
        }
        let set = hex::decode(&file.bls_public_key_set)
            .ok()
            .and_then(|b| notary_types::blsttc::PublicKeySet::from_bytes(b).ok())
            .ok_or_else(|| usage(format!("{}: bad bls_public_key_set", path.display())))?;
        key.get_or_insert(set.public_key());
        cluster_id = Some(file.cluster_id);
    }
    if urls.is_empty() {
        return Err(usage(
            "no replica: give --url URL (or NOTARY_URLS) or --cluster-file",
        ));
    }
    let client = match key {
        Some(k) => Client::new(urls, k, policy)?,
        None => {
            let (c, info) = Client::discover(urls, policy).await?;
            if g.output == Output::Text {
                eprintln!(
                    "notary: trusting cluster key {}… learnt from a replica (pin it with --cluster-key or --cluster-file)",
                    &info.public_key[..16]
                );
            }
            cluster_id = Some(info.cluster_id);
            c
        }
    };
    Ok(Context {
        client,
        cluster_id,
        output: g.output,
    })
}

fn print_answer(ctx_output: Output, v: &Verified) {
    match ctx_output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v.answer).expect("answers encode")
        ),
        Output::Text => {
            let a = &v.answer;
            println!("transaction  {}", a.leaf.tx_id);
            println!("outcome      {}", a.leaf.outcome);
            println!("height       {}", a.header.height.0);
            println!(
                "block time   {}",
                a.header.timestamp.to_rfc3339().unwrap_or_default()
            );
            println!(
                "certificate  verified against the cluster key (leaf {} of {})",
                a.proof.index + 1,
                a.header.leaf_count
            );
            if let Some(signed) = a.chain.last() {
                println!(
                    "signed at    height {} ({} chained header{})",
                    signed.height.0,
                    a.chain.len(),
                    if a.chain.len() == 1 { "" } else { "s" }
                );
            }
            println!("answered by  {}", v.url);
        }
    }
}

fn outcome_exit(v: &Verified) -> Outcome {
    if v.outcome().is_committed() {
        Ok(())
    } else {
        Err(Failure::Rejected(format!(
            "the notary refused: {}",
            v.outcome()
        )))
    }
}

async fn submit(g: &Global, a: &SubmitArgs) -> Outcome {
    let ctx = connect(g).await?;
    let key = read_key(&a.key)?;
    let (tx, inputs, references, from, until) = match &a.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let f: RequestFile = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let (from, until) = f
                .time_window
                .map(|w| (w.from, w.until))
                .unwrap_or((None, None));
            (Some(f.tx_id), f.inputs, f.references, from, until)
        }
        None => (
            a.tx.clone(),
            a.input.clone(),
            a.reference.clone(),
            a.from.clone(),
            a.until.clone(),
        ),
    };
    let tx = tx.ok_or_else(|| usage("give --tx (or --file)"))?;
    let cluster_id = ctx
        .cluster_id
        .clone()
        .ok_or_else(|| usage("the cluster id is unknown: give --cluster-file"))?;
    let (from, until) = (parse_time(&from)?, parse_time(&until)?);
    let time_window = match (from, until) {
        (None, None) => None,
        (f, u) => Some(TimeWindow::new(f, u).map_err(usage)?),
    };
    let mut fields = RequestFields {
        cluster_id: ClusterId::new(&cluster_id).map_err(usage)?,
        tx_id: tx
            .parse::<TxId>()
            .map_err(|e| usage(format!("--tx: {e}")))?,
        inputs: inputs
            .iter()
            .map(|s| parse_state_ref(s))
            .collect::<Result<_, _>>()?,
        references: references
            .iter()
            .map(|s| parse_state_ref(s))
            .collect::<Result<_, _>>()?,
        time_window,
        requester: RequesterKey(key.verifying_key().to_bytes()),
    };
    fields.normalise();
    let request = NotarisationRequest::sign(fields, &key);
    if let Some(p) = &a.save_request {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&request).expect("requests encode"),
        )
        .map_err(|e| usage(format!("{}: {e}", p.display())))?;
    }
    let v = ctx.client.notarise(&request).await?;
    if let Some(p) = &a.save {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&v.answer).expect("answers encode"),
        )
        .map_err(|e| usage(format!("{}: {e}", p.display())))?;
    }
    print_answer(ctx.output, &v);
    outcome_exit(&v)
}

async fn status(g: &Global, tx: &str) -> Outcome {
    let ctx = connect(g).await?;
    let tx: TxId = tx
        .parse()
        .map_err(|e| usage(format!("transaction id: {e}")))?;
    let v = ctx.client.status(&tx).await?;
    print_answer(ctx.output, &v);
    outcome_exit(&v)
}

async fn verify(g: &Global, answer: &Path, request: Option<&Path>) -> Outcome {
    let text =
        std::fs::read_to_string(answer).map_err(|e| usage(format!("{}: {e}", answer.display())))?;
    let a: NotarisationAnswer =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", answer.display())))?;
    // Offline: the key must be given (or come from the cluster file), never from a replica.
    if g.cluster_key.is_none() && g.cluster_file.is_none() {
        return Err(usage(
            "offline verification needs --cluster-key or --cluster-file",
        ));
    }
    let key: PublicKey = match &g.cluster_key {
        Some(k) => parse_public_key(k)?,
        None => {
            let path = g.cluster_file.as_ref().expect("checked above");
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let file: ClusterFileView =
                toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
            hex::decode(&file.bls_public_key_set)
                .ok()
                .and_then(|b| notary_types::blsttc::PublicKeySet::from_bytes(b).ok())
                .ok_or_else(|| usage("bad bls_public_key_set"))?
                .public_key()
        }
    };
    let checked = match request {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
            let r: NotarisationRequest =
                serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", p.display())))?;
            verify_answer(&key, &a, &r.fields).map(|_| ())
        }
        None => verify_detached(&key, &a),
    };
    match checked {
        Ok(()) => {
            if g.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "outcome": a.leaf.outcome})
                );
            } else {
                println!(
                    "valid: the cluster certified \"{}\" for {} at height {}",
                    a.leaf.outcome, a.leaf.tx_id, a.header.height.0
                );
            }
            if a.leaf.outcome.is_committed() {
                Ok(())
            } else {
                Err(Failure::Rejected(format!(
                    "certified rejection: {}",
                    a.leaf.outcome
                )))
            }
        }
        Err(e) => Err(Failure::Rejected(format!("INVALID answer: {e}"))),
    }
}

async fn cluster(g: &Global) -> Outcome {
    let ctx = connect(g).await?;
    let mut rows: Vec<(String, Result<ClusterInfo, ClientError>)> = Vec::new();
    for url in ctx.client.urls() {
        rows.push((url.clone(), ctx.client.cluster_of(url).await));
    }
    let reachable = rows.iter().filter(|(_, r)| r.is_ok()).count();
    if ctx.output == Output::Json {
        let json: Vec<_> = rows
            .iter()
            .map(|(url, r)| match r {
                Ok(i) => serde_json::json!({"url": url, "up": true, "cluster": i}),
                Err(e) => serde_json::json!({"url": url, "up": false, "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json).expect("encodes"));
    } else {
        println!(
            "{:<28} {:<6} {:<10} {:<16} key",
            "replica", "up", "height", "cluster"
        );
        for (url, r) in &rows {
            match r {
                Ok(i) => println!(
                    "{:<28} {:<6} {:<10} {:<16} {}…",
                    url,
                    "yes",
                    i.replica
                        .as_ref()
                        .map(|r| r.committed_height.to_string())
                        .unwrap_or_default(),
                    i.cluster_id,
                    &i.public_key[..16]
                ),
                Err(e) => println!("{url:<28} {:<6} {e}", "NO"),
            }
        }
        println!("{reachable} of {} replicas answer", rows.len());
    }
    if reachable == 0 {
        return Err(Failure::Unavailable("no replica answers".into()));
    }
    Ok(())
}

async fn follow(g: &Global, from: u64, count: Option<u64>) -> Outcome {
    let ctx = connect(g).await?;
    let key = *ctx.client.key();
    let mut seen = 0u64;
    let mut stream = notary_client::stream::BlockStream::open(&ctx.client, from).await?;
    while let Some(block) = stream.next().await? {
        block.verify(&key).map_err(|e| {
            Failure::Rejected(format!(
                "block {}: INVALID certificate: {e}",
                block.header.height.0
            ))
        })?;
        let line = if ctx.output == Output::Json {
            serde_json::to_string(&block).expect("encodes")
        } else {
            format!(
                "height {:>6}  {}  {:>5} outcomes  certificate ok",
                block.header.height.0,
                block.header.timestamp.to_rfc3339().unwrap_or_default(),
                block.header.leaf_count
            )
        };
        // A follower is often piped into `head` or `jq`: a closed pipe ends it quietly.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

async fn bench(g: &Global, a: &notary_client::bench::BenchArgs) -> Outcome {
    let ctx = connect(g).await?;
    let cluster_id = ctx
        .cluster_id
        .clone()
        .ok_or_else(|| usage("the cluster id is unknown: give --cluster-file"))?;
    let urls = ctx.client.urls().to_vec();
    notary_client::bench::main(
        a,
        urls,
        *ctx.client.key(),
        &cluster_id,
        ctx.output == Output::Json,
    )
    .map(|_| ())
    .map_err(usage)
}

fn keygen(out: &Path) -> Outcome {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_private(out, &hex::encode(key.to_bytes()))?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    eprintln!(
        "notary: wrote {} (mode 0600); add the public key above to the cluster file's ledger_nodes",
        out.display()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    let result = match &cli.verb {
        Verb::Keygen { out } => keygen(out),
        Verb::Submit(a) => submit(g, a).await,
        Verb::Status { tx_id } => status(g, tx_id).await,
        Verb::Verify { answer, request } => verify(g, answer, request.as_deref()).await,
        Verb::Cluster => cluster(g).await,
        Verb::Follow { from, count } => follow(g, *from, *count).await,
        Verb::Bench(a) => bench(g, a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected(m)) => {
            eprintln!("notary: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("notary: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Unavailable(m)) => {
            eprintln!("notary: {m}");
            ExitCode::from(3)
        }
    }
}
