//! `notaryd demo` (what `scripts/demo` runs): a local 4-replica cluster of real `notaryd`
//! processes on 127.0.0.1 and a workload that shows what the notary is for.
//!
//! The Treasury issues budget coins ("wooden dollars") that flow to the Council and on to the
//! Health Trust; second spends of the same coins race each other on different replicas and
//! exactly one wins, the others getting a *signed* conflict; one replica is killed with
//! SIGKILL and the cluster keeps notarising; it restarts and catches up; every answer's
//! certificate is verified against the cluster key. Then the cluster runs until Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use notary_client::{Client, Verified};
use notary_types::ed25519_dalek::SigningKey;
use notary_types::{
    ClusterId, NotarisationRequest, Outcome, RequestFields, RequesterKey, StateRef, TimeWindow,
    Timestamp, TxId,
};
use sha2::{Digest, Sha256};

use crate::localnet::LocalCluster;

/// Arguments of `notaryd demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the cluster's homes go (replaced if it holds an earlier demo).
    #[arg(long, default_value = ".demo")]
    pub dir: PathBuf,
    /// Coins the Treasury issues (each is spent twice on its way).
    #[arg(long, default_value_t = 200)]
    pub coins: usize,
    /// Replica i listens on base+i (peers), base+100+i (API), base+200+i (admin).
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Exit after the workload instead of running until Ctrl-C (for tests).
    #[arg(long)]
    pub no_wait: bool,
    /// Generate the cluster's BLS keys with a real key ceremony between the replicas
    /// (`notaryd dkg online`, about a second) instead of `notaryd testnet`'s dealer.
    #[arg(long)]
    pub dkg: bool,
}

const MARKER: &str = ".notary-demo";
const REPLICAS: usize = 4;

fn txid(label: &str) -> TxId {
    TxId(Sha256::digest(label.as_bytes()).into())
}

fn state(tx: TxId, index: u32) -> StateRef {
    StateRef { tx_id: tx, index }
}

struct Ledger {
    cluster_id: ClusterId,
    treasury: SigningKey,
    council: SigningKey,
    health: SigningKey,
}

impl Ledger {
    fn request(
        &self,
        key: &SigningKey,
        tx: TxId,
        inputs: Vec<StateRef>,
        window: Option<TimeWindow>,
    ) -> NotarisationRequest {
        let mut fields = RequestFields {
            cluster_id: self.cluster_id.clone(),
            tx_id: tx,
            inputs,
            references: Vec::new(),
            time_window: window,
            requester: RequesterKey(key.verifying_key().to_bytes()),
        };
        fields.normalise();
        NotarisationRequest::sign(fields, key)
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "  {what:<34} [{{bar:30}}] {{pos:>4}}/{{len}} {{per_sec:>9}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    pb
}

/// Runs `notaryd demo`.
pub fn run(args: &DemoArgs) -> Result<()> {
    let notaryd = std::env::current_exe().context("cannot find this notaryd binary")?;
    if args.dir.exists() {
        // A demo that failed before writing its marker still left a testnet behind.
        let testnet_like =
            args.dir.join("cluster.toml").exists() && args.dir.join("replica-0").exists();
        if !args.dir.join(MARKER).exists() && !testnet_like {
            bail!(
                "{} exists and is not a demo directory: choose another --dir",
                args.dir.display()
            );
        }
        std::fs::remove_dir_all(&args.dir)?;
    }
    println!("Starting a local cluster of {REPLICAS} replicas on 127.0.0.1 (n = 4, f = 1)...");
    let mut cluster = if args.dkg {
        println!(
            "  generating the cluster key in a key ceremony between the replicas (no dealer)..."
        );
        let (cluster, took) =
            LocalCluster::create_with_dkg(&notaryd, &args.dir, REPLICAS, args.base_port)?;
        println!(
            "  key ceremony done in {:.1} s; transcripts: {}/replica-*/dkg-transcript.json",
            took.as_secs_f64(),
            args.dir.display()
        );
        cluster
    } else {
        LocalCluster::create(&notaryd, &args.dir, REPLICAS, args.base_port)?
    };
    std::fs::write(args.dir.join(MARKER), "written by notaryd demo\n")?;
    cluster.start_all()?;
    cluster.wait_all_ready(Duration::from_secs(60))?;
    for i in 0..REPLICAS {
        println!(
            "  replica {i}: {}   (log: {})",
            cluster.api_url(i),
            cluster.home(i).join("notaryd.log").display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(workload(&mut cluster, args))?;
    println!();
    println!("Where to look next:");
    println!(
        "  the client API     {}/v1/cluster  (docs/API.md)",
        cluster.api_url(0)
    );
    println!(
        "  metrics            http://{}/metrics   status: /status",
        cluster.admin_addr(0)
    );
    println!(
        "  the CLI            export NOTARY_CLUSTER_FILE={}/cluster.toml",
        args.dir.display()
    );
    println!("                     cargo run -q -p notary-client --bin notary -- cluster");
    println!("                     cargo run -q -p notary-client --bin notary -- follow --from 1 --count 3");
    println!(
        "                     cargo run -q -p notary-client --bin notary -- submit --key {}/clients/client-1.key --tx {} --input {}:0",
        args.dir.display(),
        uuid_like().repeat(4),
        uuid_like().repeat(4)
    );
    if args.no_wait {
        return Ok(());
    }
    println!();
    println!("The cluster keeps running. Press Ctrl-C to stop every replica.");
    runtime.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("Stopping the replicas...");
    for i in 0..REPLICAS {
        let _ = cluster.terminate(i, Duration::from_secs(10));
    }
    Ok(())
}

fn read_key(path: &std::path::Path) -> Result<SigningKey> {
    crate::keys::read_consensus_key(path)
}

#[derive(Default)]
struct Tally {
    by_outcome: BTreeMap<&'static str, u64>,
    verified: u64,
}

impl Tally {
    fn count(&mut self, v: &Verified) {
        self.verified += 1;
        *self
            .by_outcome
            .entry(crate::api::outcome_label(v.outcome()))
            .or_default() += 1;
    }
}

/// Notarises `requests` concurrently (spread over the replicas); every answer is verified.
async fn notarise_all(
    client: &Client,
    requests: Vec<NotarisationRequest>,
    pb: &ProgressBar,
    tally: &mut Tally,
) -> Result<Vec<Verified>> {
    let mut out = Vec::with_capacity(requests.len());
    let client = Arc::new(client.clone());
    let mut set = tokio::task::JoinSet::new();
    for (i, r) in requests.into_iter().enumerate() {
        let c = client.clone();
        set.spawn(async move { (i, c.notarise_via(i, &r).await) });
        while set.len() >= 64 {
            let (i, v) = set.join_next().await.expect("non-empty")?;
            out.push((i, v?));
            pb.inc(1);
        }
    }
    while let Some(r) = set.join_next().await {
        let (i, v) = r?;
        out.push((i, v?));
        pb.inc(1);
    }
    pb.finish();
    out.sort_by_key(|(i, _)| *i);
    let out: Vec<Verified> = out.into_iter().map(|(_, v)| v).collect();
    for v in &out {
        tally.count(v);
    }
    Ok(out)
}

async fn wait_caught_up(
    client: &Client,
    cluster: &LocalCluster,
    i: usize,
) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let target = client
        .cluster_of(&cluster.api_url(0))
        .await?
        .replica
        .map_or(0, |r| r.committed_height);
    loop {
        if let Ok(info) = client.cluster_of(&cluster.api_url(i)).await {
            if let Some(r) = info.replica {
                if r.committed_height >= target && r.ready {
                    return Ok((r.committed_height, started.elapsed()));
                }
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("replica {i} did not catch up to height {target} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn workload(cluster: &mut LocalCluster, args: &DemoArgs) -> Result<()> {
    let dir = cluster.dir().to_path_buf();
    let file = cluster.cluster_file()?;
    let client = cluster.client(Duration::from_secs(60))?;
    let key = *client.key();
    let ledger = Ledger {
        cluster_id: ClusterId::new(&file.cluster_id).map_err(|e| anyhow::anyhow!("{e}"))?,
        treasury: read_key(&dir.join("clients/client-0.key"))?,
        council: read_key(&dir.join("clients/client-1.key"))?,
        health: read_key(&dir.join("clients/client-2.key"))?,
    };
    println!(
        "Cluster key {}… : every answer below is verified against it.",
        &hex::encode(key.to_bytes())[..24]
    );
    println!();
    let mut tally = Tally::default();
    let run = uuid_like();
    let coins = args.coins;

    println!("1. The Treasury pays {coins} wooden dollars to the Council.");
    let reserve = txid(&format!("treasury-reserve-{run}"));
    let pay: Vec<_> = (0..coins)
        .map(|k| {
            ledger.request(
                &ledger.treasury,
                txid(&format!("pay-council-{run}-{k}")),
                vec![state(reserve, k as u32)],
                None,
            )
        })
        .collect();
    let paid = notarise_all(
        &client,
        pay,
        &bar(coins as u64, "Treasury -> Council"),
        &mut tally,
    )
    .await?;
    ensure_all_committed(&paid)?;

    println!("2. The Council spends them at the Health Trust; some coins are spent twice at once.");
    let racers = coins.min(10);
    let spends: Vec<_> = paid
        .iter()
        .enumerate()
        .map(|(k, p)| {
            ledger.request(
                &ledger.council,
                txid(&format!("pay-health-{run}-{k}")),
                vec![state(p.answer.leaf.tx_id, 0)],
                None,
            )
        })
        .collect();
    let doubles: Vec<_> = paid
        .iter()
        .take(racers)
        .enumerate()
        .map(|(k, p)| {
            ledger.request(
                &ledger.council,
                txid(&format!("double-spend-{run}-{k}")),
                vec![state(p.answer.leaf.tx_id, 0)],
                None,
            )
        })
        .collect();
    // The racing pairs go first, to different replicas at the same time.
    let mut race = Vec::new();
    for k in 0..racers {
        race.push(spends[k].clone());
        race.push(doubles[k].clone());
    }
    let raced = notarise_all(
        &client,
        race,
        &bar(2 * racers as u64, "double-spend races"),
        &mut tally,
    )
    .await?;
    let rest = notarise_all(
        &client,
        spends[racers..].to_vec(),
        &bar((coins - racers) as u64, "Council -> Health Trust"),
        &mut tally,
    )
    .await?;
    ensure_all_committed(&rest)?;
    let mut winners = 0;
    for pair in raced.chunks(2) {
        let won = pair.iter().filter(|v| v.outcome().is_committed()).count();
        if won != 1 {
            bail!("a double-spend race had {won} winners: the notary is broken");
        }
        winners += won;
    }
    println!("   {racers} races, {winners} winners: exactly one spend of each coin was signed.");
    if let Some(loser) = raced.iter().find(|v| !v.outcome().is_committed()) {
        if let Outcome::InputsConsumed { conflicts } = loser.outcome() {
            let c = &conflicts[0];
            println!(
                "   e.g. transaction {}… was refused with a signed conflict at height {}:",
                &loser.answer.leaf.tx_id.to_string()[..16],
                loser.answer.header.height.0
            );
            println!(
                "        state {}…:{} already consumed by the transaction whose SHA-256 is {}…",
                &c.state.tx_id.to_string()[..16],
                c.state.index,
                &hex::encode(c.consuming_tx_hash.0)[..16]
            );
        }
    }

    println!("3. Replica 3 is killed with SIGKILL; the Health Trust keeps spending.");
    cluster.kill(3)?;
    // The Health Trust holds every coin the Council paid it: the race winners and the rest.
    let held: Vec<TxId> = raced
        .iter()
        .chain(rest.iter())
        .filter(|v| v.outcome().is_committed())
        .map(|v| v.answer.leaf.tx_id)
        .collect();
    let more: Vec<_> = held
        .iter()
        .enumerate()
        .map(|(k, coin)| {
            ledger.request(
                &ledger.health,
                txid(&format!("health-spend-{run}-{k}")),
                vec![state(*coin, 0)],
                None,
            )
        })
        .collect();
    let started = Instant::now();
    let during = notarise_all(
        &client,
        more,
        &bar(held.len() as u64, "with replica 3 down"),
        &mut tally,
    )
    .await?;
    ensure_all_committed(&during)?;
    println!(
        "   {} of {} notarised with one replica down, in {:.1} s.",
        during.len(),
        held.len(),
        started.elapsed().as_secs_f64()
    );

    println!("4. Replica 3 restarts and catches up.");
    cluster.start(3)?;
    cluster.wait_ready(3, Duration::from_secs(60))?;
    let (height, took) = wait_caught_up(&client, cluster, 3).await?;
    println!(
        "   replica 3 is at height {height} again, {:.1} s after restarting.",
        took.as_secs_f64()
    );

    println!("5. A payment with an expired time window is refused, and the refusal is signed.");
    let past = Timestamp(1_000_000_000_000);
    let late = ledger.request(
        &ledger.treasury,
        txid(&format!("late-{run}")),
        vec![state(reserve, coins as u32 + 1)],
        Some(TimeWindow::new(None, Some(past)).map_err(|e| anyhow::anyhow!("{e}"))?),
    );
    let v = client.notarise_via(3, &late).await?;
    tally.count(&v);
    println!(
        "   outcome: {} (certificate verified, answered by {})",
        v.outcome(),
        v.url
    );

    println!("6. Retrying a request anywhere gives the same certified answer (idempotency).");
    let again = client
        .notarise_via(
            2,
            &ledger.request(
                &ledger.treasury,
                txid(&format!("pay-council-{run}-0")),
                vec![state(reserve, 0)],
                None,
            ),
        )
        .await?;
    if again.answer != paid[0].answer {
        bail!("a retry got a different answer");
    }
    println!("   same answer from {} as from {}.", again.url, paid[0].url);

    println!();
    println!(
        "Summary: {} answers, every certificate verified against the cluster key: {:?}",
        tally.verified, tally.by_outcome
    );
    Ok(())
}

fn ensure_all_committed(v: &[Verified]) -> Result<()> {
    if let Some(bad) = v.iter().find(|v| !v.outcome().is_committed()) {
        bail!(
            "transaction {} unexpectedly got {}",
            bad.answer.leaf.tx_id,
            bad.outcome()
        );
    }
    Ok(())
}

/// A run label, so that a second demo in the same cluster spends fresh coins.
fn uuid_like() -> String {
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}
