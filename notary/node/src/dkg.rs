//! `notaryd dkg`: the agencies' key ceremony (crate [`notary_dkg`]) run from a replica's home,
//! so that the cluster's threshold BLS key is generated without a dealer.
//!
//! Three verbs:
//! * `dkg online` runs the ceremony over the members' mutually authenticated QUIC connections
//!   (the replica transport, started from the same cluster file and pinned certificates);
//! * `dkg offline init|round` runs it in rounds of signed files for air-gapped agencies;
//! * `dkg verify` recomputes the cluster key and every public key share from a transcript.
//!
//! Invariants:
//! * Every ceremony message is signed with the replica's consensus ed25519 key and checked
//!   against the `consensus_key`s of the cluster file: the transport authenticates the peer,
//!   the signature makes the message evidence in the transcript.
//! * The key share is written only after the ceremony succeeded, as `keys/bls.share` with
//!   origin `dkg` and mode 0600, atomically (temporary file, then rename); an existing share
//!   is never replaced without `--force`. Secrets are never printed or logged.
//! * Online, each participant resends its own messages to every peer that has not
//!   acknowledged them until that peer says it needs them no more, or the round deadline
//!   passes. A message that reached some peers only would otherwise leave the others outside
//!   the confirmation quorum (the library's note on selective delivery), and a peer that
//!   started late or reconnected gets everything it missed.
//! * The ceremony's transport speaks the cluster id with a `/dkg` suffix, so a ceremony
//!   process and a running replica that meet on the same port refuse each other at the
//!   handshake instead of reading each other's frames.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blsttc::{PublicKeySet, SecretKeyShare};
use bytes::Bytes;
use clap::{Args, Subcommand};
use ed25519_dalek::{SigningKey, VerifyingKey};
use notary_dkg::offline::{self, Dirs, RoundReport};
use notary_dkg::{
    verify_transcript, CeremonyConfig, CeremonyId, Dispute, Fault, Handled, NamedFault,
    Participant, ParticipantIndex, Round, SignedMessage, Step, Transcript,
};
use notary_net::{QuicTransport, ReplicaId, Transport};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::config::{ClusterFile, Config, Home};
use crate::keys::{self, BlsShareFile, KeyOrigin};

/// How often unacknowledged own messages are sent again to a peer we have heard from.
const RESEND_INTERVAL: Duration = Duration::from_millis(250);
/// ...and to a peer we have not heard from yet (its process may not have started: the
/// transport queues what we send until it connects, so resending often only fills the queue).
const QUIET_RESEND_INTERVAL: Duration = Duration::from_secs(2);
/// The longest session nonce accepted, in bytes.
const SESSION_BYTES_MAX: usize = 128;
/// Transcripts larger than this are refused by `dkg verify` (n = 256 is about 30 MiB).
const TRANSCRIPT_BYTES_MAX: u64 = 64 << 20;
/// The transcript's file name in the replica's home.
pub const TRANSCRIPT_FILE: &str = "dkg-transcript.json";

/// Arguments of `notaryd dkg`.
#[derive(Args, Debug)]
pub struct DkgArgs {
    /// What to do.
    #[command(subcommand)]
    pub verb: DkgVerb,
}

/// The verbs of `notaryd dkg`.
#[derive(Subcommand, Debug)]
pub enum DkgVerb {
    /// Run the ceremony with the other members over the replica network (every agency runs
    /// it at the same time, with the same --session).
    Online(OnlineArgs),
    /// Run the ceremony in rounds of signed files exchanged by any channel (air-gapped).
    Offline {
        /// The step.
        #[command(subcommand)]
        verb: OfflineVerb,
    },
    /// Recompute the cluster key and every public key share from a transcript, and name who
    /// misbehaved; fails on a tampered transcript.
    Verify(VerifyArgs),
}

/// Arguments of `notaryd dkg online`.
#[derive(Args, Debug)]
pub struct OnlineArgs {
    /// The replica's home directory (its cluster file, TLS and consensus keys).
    #[arg(long, env = "NOTARY_HOME")]
    pub home: PathBuf,
    /// The session nonce the agencies agreed for this run (any 1 to 128 printable characters,
    /// e.g. `openssl rand -hex 16`): messages of one run never count in another.
    #[arg(long)]
    pub session: String,
    /// How long rounds 2 to 4 wait for a missing participant before naming it silent.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub round_timeout: Duration,
    /// How long round 1 waits for every participant to join (agencies start at different times).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub start_timeout: Duration,
    /// Replace an existing keys/bls.share (e.g. the dealer's share of `notaryd testnet`).
    #[arg(long)]
    pub force: bool,
}

/// The steps of `notaryd dkg offline`.
#[derive(Subcommand, Debug)]
pub enum OfflineVerb {
    /// Start: create the private ceremony state and write the round-1 file.
    Init(OfflineInitArgs),
    /// Read the files received so far and, once the open round is complete (or its deadline
    /// is declared passed), write the next round's file; after round 4, install keys/bls.share.
    Round(OfflineRoundArgs),
}

/// Where the offline files go.
#[derive(Args, Debug, Clone)]
pub struct OfflineDirs {
    /// The replica's home directory. The private state goes to HOME/keys/dkg (0700).
    #[arg(long, env = "NOTARY_HOME")]
    pub home: PathBuf,
    /// Where the other agencies' round files are put [default: HOME/dkg/inbox].
    #[arg(long)]
    pub inbox: Option<PathBuf>,
    /// Where this agency's round files are written, to hand to the others
    /// [default: HOME/dkg/outbox].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
}

/// Arguments of `notaryd dkg offline init`.
#[derive(Args, Debug)]
pub struct OfflineInitArgs {
    /// Directories.
    #[command(flatten)]
    pub dirs: OfflineDirs,
    /// The session nonce the agencies agreed for this run.
    #[arg(long)]
    pub session: String,
    /// Start even though keys/bls.share exists (it is replaced at the end).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `notaryd dkg offline round`.
#[derive(Args, Debug)]
pub struct OfflineRoundArgs {
    /// Directories.
    #[command(flatten)]
    pub dirs: OfflineDirs,
    /// The agencies agreed that the open round's deadline passed: close it with whatever
    /// files arrived (the missing participants are named silent).
    #[arg(long)]
    pub deadline_passed: bool,
    /// Replace an existing keys/bls.share at the end.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `notaryd dkg verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The transcript (JSON) a participant kept.
    pub transcript: PathBuf,
    /// The shared cluster file: the participants' consensus keys, and the key set to compare.
    #[arg(long, env = "NOTARY_CLUSTER_FILE")]
    pub cluster_file: PathBuf,
}

/// Runs `notaryd dkg`.
pub fn run(args: &DkgArgs) -> Result<()> {
    match &args.verb {
        DkgVerb::Online(a) => online(a),
        DkgVerb::Offline {
            verb: OfflineVerb::Init(a),
        } => offline_init(a),
        DkgVerb::Offline {
            verb: OfflineVerb::Round(a),
        } => offline_round(a),
        DkgVerb::Verify(a) => verify(a),
    }
}

// ---------------------------------------------------------------------------------------------
// The ceremony's parameters, from the home directory.

/// What a replica brings to a ceremony.
struct Setup {
    config: Config,
    ceremony: CeremonyConfig,
    me: ParticipantIndex,
    signing_key: SigningKey,
}

/// Checks a session nonce: 1 to 128 printable ASCII characters without spaces, so that every
/// agency can type it and it prints unambiguously.
fn check_session(session: &str) -> Result<()> {
    if session.is_empty()
        || session.len() > SESSION_BYTES_MAX
        || !session.bytes().all(|b| b.is_ascii_graphic())
    {
        bail!(
            "--session {session:?} must be 1 to {SESSION_BYTES_MAX} printable characters \
             without spaces"
        );
    }
    Ok(())
}

/// The participants' keys, by index: the cluster file's consensus keys, in member order.
fn participant_keys(cluster: &ClusterFile) -> Result<Vec<VerifyingKey>> {
    cluster
        .members
        .iter()
        .map(|m| {
            let bytes: [u8; 32] = hex::decode(&m.consensus_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| {
                    format!(
                        "member {} ({}): consensus_key is not 32 bytes hex",
                        m.id, m.name
                    )
                })?;
            VerifyingKey::from_bytes(&bytes).with_context(|| {
                format!("member {} ({}): consensus_key is not a key", m.id, m.name)
            })
        })
        .collect()
}

fn load_setup(home: &Path, session: &str) -> Result<Setup> {
    check_session(session)?;
    let config = Config::load(&Home::new(home))?;
    config.validate()?;
    let signing_key = keys::read_consensus_key(&config.home.consensus_key())?;
    if hex::encode(signing_key.verifying_key().to_bytes())
        != config.me().consensus_key.to_lowercase()
    {
        bail!("keys/consensus.key does not match this replica's consensus_key in the cluster file");
    }
    let ceremony = CeremonyConfig::new(
        CeremonyId::new(config.cluster.cluster_id.clone(), session.as_bytes()),
        config.f(),
        participant_keys(&config.cluster)?,
    )
    .context("the cluster file does not make a ceremony")?;
    Ok(Setup {
        me: ParticipantIndex(config.node.id),
        config,
        ceremony,
        signing_key,
    })
}

fn refuse_existing_share(home: &Home, force: bool) -> Result<()> {
    if home.bls_share().exists() && !force {
        bail!(
            "{} exists: refusing to replace a key share (pass --force to replace it, e.g. a \
             development share of `notaryd testnet`)",
            home.bls_share().display()
        );
    }
    Ok(())
}

/// Writes `keys/bls.share` (origin `dkg`, mode 0600) atomically, after checking that the share
/// is ours in `set`. An existing share is replaced only with `force`, or when it is this one.
fn install_share(
    home: &Home,
    index: ParticipantIndex,
    share: &SecretKeyShare,
    set: &PublicKeySet,
    force: bool,
) -> Result<()> {
    if share.public_key_share() != set.public_key_share(index.get()) {
        bail!("the ceremony's share is not public key share {index} of its own key set");
    }
    let file = BlsShareFile::new(index.0, share, KeyOrigin::Dkg);
    let path = home.bls_share();
    if path.exists() && !force {
        let same = BlsShareFile::read(&path)
            .map(|old| old.origin == KeyOrigin::Dkg && old.share == file.share)
            .unwrap_or(false);
        if same {
            return Ok(());
        }
        refuse_existing_share(home, force)?;
    }
    let tmp = path.with_extension("share.new");
    if tmp.exists() {
        std::fs::remove_file(&tmp)
            .with_context(|| format!("cannot remove the stale {}", tmp.display()))?;
    }
    file.write(&tmp)?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// One line about a fault, for people.
pub fn describe_fault(f: &NamedFault) -> String {
    let who = f.participant;
    match &f.fault {
        Fault::Silent { round } => format!("{who}: silent in round {round}"),
        Fault::Malformed { round, reason } => {
            format!("{who}: signed a malformed message in round {round}: {reason}")
        }
        Fault::Equivocation { round, .. } => format!(
            "{who}: equivocated in round {round} (two signed messages; evidence in the transcript)"
        ),
        Fault::InvalidShare { recipient, reason } => {
            format!("{who}: dealt {recipient} an invalid share: {reason}")
        }
        Fault::OmittedShare { recipient } => {
            format!("{who}: dealt {recipient} no share although it had {recipient}'s keys")
        }
        Fault::FalseComplaint { dealer } => {
            format!("{who}: complained falsely against dealer {dealer}")
        }
    }
}

fn list(indices: &[ParticipantIndex]) -> String {
    indices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_faults(faults: &[NamedFault], disputes: &[Dispute]) {
    if faults.is_empty() {
        println!("faults: none");
    } else {
        println!("faults ({}):", faults.len());
        for f in faults {
            println!("  {}", describe_fault(f));
        }
    }
    for d in disputes {
        println!(
            "  dispute: dealer {} and {} disagree about a missing share; the dealer's \
             contribution was dropped, neither is named",
            d.dealer, d.recipient
        );
    }
}

/// What every participant prints at the end of a successful ceremony.
fn print_success(
    home: &Home,
    me: ParticipantIndex,
    set: &PublicKeySet,
    qualified: &[ParticipantIndex],
    faults: &[NamedFault],
    disputes: &[Dispute],
) {
    println!();
    println!(
        "ceremony complete: {} holds share {me} of a key with threshold {} ({} shares sign)",
        home.bls_share().display(),
        set.threshold(),
        set.threshold() + 1
    );
    println!("qualified dealers: {}", list(qualified));
    print_faults(faults, disputes);
    println!(
        "transcript: {} (keep it; `notaryd dkg verify` recomputes the keys from it)",
        home.root.join(TRANSCRIPT_FILE).display()
    );
    println!(
        "cluster public key: {}",
        hex::encode(set.public_key().to_bytes())
    );
    println!();
    println!(
        "Every agency puts this line into the shared cluster file (config/cluster.toml), \
         replacing any earlier one, and sets development = false:"
    );
    println!("bls_public_key_set = \"{}\"", hex::encode(set.to_bytes()));
}

// ---------------------------------------------------------------------------------------------
// Online.

/// One frame of the online ceremony between two participants.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    /// The ceremony's session (as in [`CeremonyId::session`]): a frame of another run, e.g.
    /// of a process left over from an earlier attempt, neither delivers nor acknowledges.
    pub session: String,
    /// The sender needs none of the recipient's messages of rounds `1..=ack` any more (it
    /// holds them, or has closed those rounds): the recipient stops resending them.
    pub ack: u8,
    /// One of the sender's own signed messages, if any.
    pub message: Option<SignedMessage>,
}

impl Frame {
    /// The wire form (JSON, like the transcript).
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a frame of strings and vectors serialises"))
    }

    /// Reads a frame; `None` for anything that is not one (the peer is then ignored for it).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let f: Self = serde_json::from_slice(bytes).ok()?;
        (usize::from(f.ack) <= Round::ALL.len()).then_some(f)
    }
}

/// The online ceremony's bookkeeping around one [`Participant`], apart from the network so
/// that it can be tested without one.
struct Online {
    participant: Participant,
    me: ParticipantIndex,
    n: usize,
    /// `held[sender][round slot]`: we need no more of that message (held, or proven faulty).
    held: Vec<[bool; 4]>,
    /// The highest ack each peer sent us.
    acked_by: Vec<u8>,
    /// The ack we last sent each peer.
    ack_sent: Vec<u8>,
    /// Whether a frame of this run came from each peer.
    heard: Vec<bool>,
    /// Frames that did not decode, or messages rejected as unattributable.
    ignored: u64,
}

impl Online {
    fn new(participant: Participant) -> Self {
        let n = participant.config().n();
        let me = participant.index();
        Self {
            participant,
            me,
            n,
            held: vec![[false; 4]; n],
            acked_by: vec![0; n],
            ack_sent: vec![0; n],
            heard: vec![false; n],
            ignored: 0,
        }
    }

    /// The ack for `peer`: the longest prefix of rounds whose message from `peer` we hold or
    /// whose round we have closed.
    fn ack_for(&self, peer: usize) -> u8 {
        let open = self
            .participant
            .round()
            .map_or(Round::ALL.len() + 1, |r| usize::from(r.number()));
        let mut ack = 0;
        for (slot, held) in self.held[peer].iter().enumerate() {
            if *held || slot + 1 < open {
                ack = slot as u8 + 1;
            } else {
                break;
            }
        }
        ack
    }

    /// Takes one frame from transport peer `from`.
    fn receive(&mut self, from: usize, bytes: &[u8]) -> Option<NamedFault> {
        let Some(frame) = Frame::decode(bytes)
            .filter(|f| f.session == self.participant.config().ceremony.session)
        else {
            self.ignored += 1;
            return None;
        };
        if let Some(a) = self.acked_by.get_mut(from) {
            *a = (*a).max(frame.ack);
            self.heard[from] = true;
        }
        let msg = frame.message?;
        let (sender, slot) = (msg.sender().get(), usize::from(msg.round().number() - 1));
        let handled = self.participant.handle(msg);
        match &handled {
            Handled::Rejected { .. } => self.ignored += 1,
            Handled::Accepted | Handled::Duplicate | Handled::Faulty(_) => {
                if let Some(h) = self.held.get_mut(sender) {
                    h[slot] = true;
                }
            }
            Handled::Late { .. } => {}
        }
        match handled {
            Handled::Faulty(f) => Some(f),
            _ => None,
        }
    }

    /// The frames to send now: our own messages each peer has not acknowledged, and a bare
    /// ack where ours grew; to peers not heard from yet only if `quiet_too`.
    fn outgoing(&mut self, quiet_too: bool) -> Vec<(usize, Frame)> {
        let session = &self.participant.config().ceremony.session;
        let mut out = Vec::new();
        let me = self.me.get();
        for peer in (0..self.n).filter(|p| *p != me && (quiet_too || self.heard[*p])) {
            let ack = self.ack_for(peer);
            let mut sent = false;
            for round in Round::ALL {
                if round.number() <= self.acked_by[peer] {
                    continue;
                }
                if let Some(m) = self.participant.own_message(round) {
                    out.push((
                        peer,
                        Frame {
                            session: session.clone(),
                            ack,
                            message: Some(m.clone()),
                        },
                    ));
                    sent = true;
                }
            }
            if !sent && ack > self.ack_sent[peer] {
                out.push((
                    peer,
                    Frame {
                        session: session.clone(),
                        ack,
                        message: None,
                    },
                ));
                sent = true;
            }
            if sent {
                self.ack_sent[peer] = self.ack_sent[peer].max(ack);
            }
        }
        out
    }

    /// True when every peer acknowledged all our messages (it holds them or is finished).
    fn all_acknowledged(&self) -> bool {
        (0..self.n)
            .filter(|p| *p != self.me.get())
            .all(|p| usize::from(self.acked_by[p]) == Round::ALL.len())
    }
}

/// When to resend: often to peers we have heard from, rarely to the others.
struct Resend {
    next: Instant,
    next_quiet: Instant,
}

impl Resend {
    /// Due at once, to everyone.
    fn now() -> Self {
        let now = Instant::now();
        Self {
            next: now,
            next_quiet: now,
        }
    }

    /// `Some(quiet_too)` if a resend is due at `now`; schedules the next one.
    fn due(&mut self, now: Instant) -> Option<bool> {
        if now < self.next {
            return None;
        }
        self.next = now + RESEND_INTERVAL;
        let quiet_too = now >= self.next_quiet;
        if quiet_too {
            self.next_quiet = now + QUIET_RESEND_INTERVAL;
        }
        Some(quiet_too)
    }

    /// When the next resend is due.
    fn at(&self) -> Instant {
        self.next
    }
}

fn send_all<T: Transport>(transport: &T, frames: Vec<(usize, Frame)>) {
    for (peer, frame) in frames {
        // A full queue drops the oldest frame; the next resend makes up for it.
        if let Err(e) = transport.send(ReplicaId(peer as u16), frame.encode()) {
            tracing::warn!(peer, error = %e, "cannot queue a ceremony frame");
        }
    }
}

/// `notaryd dkg online`.
fn online(args: &OnlineArgs) -> Result<()> {
    let setup = load_setup(&args.home, &args.session)?;
    refuse_existing_share(&setup.config.home, args.force)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("notaryd-dkg")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(online_async(setup, args))
}

async fn online_async(setup: Setup, args: &OnlineArgs) -> Result<()> {
    let Setup {
        config,
        ceremony,
        me,
        signing_key,
    } = setup;
    let n = ceremony.n();
    let mut net = crate::replica::net_config(&config)?;
    net.cluster_id = format!("{}/dkg", config.cluster.cluster_id);
    let (transport, mut inbound) = QuicTransport::start(net)
        .await
        .context("cannot start the ceremony's transport")?;
    println!(
        "key ceremony {} of cluster {}: participant {me} of {n}, threshold {} ({} shares sign)",
        args.session,
        config.cluster.cluster_id,
        ceremony.threshold,
        ceremony.threshold + 1
    );
    let participant = Participant::new(ceremony, me, signing_key, &mut OsRng)
        .context("cannot start the ceremony")?;
    let mut state = Online::new(participant);
    let started = Instant::now();
    let mut round_opened = started;
    let mut deadline = started + args.start_timeout;
    let mut resend = Resend::now();
    let mut step = Step::Send(
        state
            .participant
            .outgoing()
            .expect("a new participant has its round-1 message")
            .clone(),
    );
    while !matches!(step, Step::Finished) {
        let now = Instant::now();
        if let Some(quiet_too) = resend.due(now) {
            send_all(&transport, state.outgoing(quiet_too));
        }
        if state.participant.round_complete() || now >= deadline {
            let closing = state.participant.round().expect("not finished in the loop");
            let missing = state.participant.missing();
            // This future runs on the thread that called `block_on`, not on a runtime worker:
            // the transport's tasks keep running on the workers while we compute.
            step = state.participant.advance(&mut OsRng)?;
            let heard = if missing.is_empty() {
                format!("heard from all {n}")
            } else {
                format!("silent: {}", list(&missing))
            };
            println!(
                "round {closing} closed after {:.2} s ({heard})",
                round_opened.elapsed().as_secs_f64()
            );
            round_opened = Instant::now();
            deadline = round_opened + args.round_timeout;
            // Send the new message to everyone at once rather than at the next resend tick.
            resend = Resend::now();
            continue;
        }
        let wake = deadline.min(resend.at());
        tokio::select! {
            got = inbound.recv() => {
                let (from, bytes) = got.context("the ceremony's transport stopped")?;
                if let Some(f) = state.receive(usize::from(from.0), &bytes) {
                    println!("fault: {}", describe_fault(&f));
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    // Finished: our acks now say "all rounds" to everyone. Stay until every peer has all our
    // messages (or is finished), at most one round timeout, so that a message that reached
    // some peers only still reaches the rest before their deadline.
    let linger_until = Instant::now() + args.round_timeout;
    let mut resend = Resend::now();
    while !state.all_acknowledged() && Instant::now() < linger_until {
        if let Some(quiet_too) = resend.due(Instant::now()) {
            send_all(&transport, state.outgoing(quiet_too));
        }
        tokio::select! {
            got = inbound.recv() => {
                let Some((from, bytes)) = got else { break };
                state.receive(usize::from(from.0), &bytes);
            }
            _ = tokio::time::sleep_until(resend.at().min(linger_until).into()) => {}
        }
    }
    // One last ack to everyone still waiting for ours.
    send_all(&transport, state.outgoing(true));
    tokio::time::sleep(Duration::from_millis(50)).await;
    transport.shutdown().await;
    if state.ignored > 0 {
        println!(
            "{} frames were ignored (undecodable or not validly signed)",
            state.ignored
        );
    }
    let output = match state.participant.finish() {
        Ok(o) => o,
        Err(e) => bail!(
            "the key ceremony failed after {:.1} s: {e}; no key share was written. Re-run it with \
             a new --session once the named participants are fixed or replaced",
            started.elapsed().as_secs_f64()
        ),
    };
    let home = &config.home;
    std::fs::write(home.root.join(TRANSCRIPT_FILE), output.transcript.to_json())
        .with_context(|| format!("cannot write {}", home.root.join(TRANSCRIPT_FILE).display()))?;
    install_share(
        home,
        output.index,
        &output.secret_key_share,
        &output.public_key_set,
        args.force,
    )?;
    println!("the ceremony took {:.2} s", started.elapsed().as_secs_f64());
    print_success(
        home,
        output.index,
        &output.public_key_set,
        &output.qualified,
        &output.faults,
        &output.disputes,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Offline.

fn offline_dirs(d: &OfflineDirs) -> Result<Dirs> {
    let home = Home::new(&d.home);
    let dirs = Dirs {
        state: home.root.join("keys/dkg"),
        inbox: d
            .inbox
            .clone()
            .unwrap_or_else(|| home.root.join("dkg/inbox")),
        outbox: d
            .outbox
            .clone()
            .unwrap_or_else(|| home.root.join("dkg/outbox")),
    };
    for p in [&dirs.state, &dirs.inbox, &dirs.outbox] {
        std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    keys::restrict_dir(&dirs.state)?;
    Ok(dirs)
}

fn print_report(r: &RoundReport, dirs: &Dirs) {
    for p in &r.wrote {
        println!("wrote: {}", p.display());
    }
    for (p, why) in &r.rejected {
        println!("rejected: {}: {why}", p.display());
    }
    let mut named = BTreeSet::new();
    for f in &r.faults {
        if named.insert(describe_fault(f)) {
            println!("fault so far: {}", describe_fault(f));
        }
    }
    if let Some(round) = r.round {
        println!("round {round} is open");
        if r.needs.is_empty() {
            println!("it has every file: run `notaryd dkg offline round` again to close it");
        } else {
            println!("it needs, in {}:", dirs.inbox.display());
            for f in &r.needs {
                println!("  {f}");
            }
        }
        if !r.wrote.is_empty() {
            println!(
                "hand every file of {} to every other agency",
                dirs.outbox.display()
            );
        }
    }
}

/// `notaryd dkg offline init`.
fn offline_init(args: &OfflineInitArgs) -> Result<()> {
    let setup = load_setup(&args.dirs.home, &args.session)?;
    refuse_existing_share(&setup.config.home, args.force)?;
    let dirs = offline_dirs(&args.dirs)?;
    println!(
        "key ceremony {} of cluster {} (offline): participant {} of {}, threshold {}",
        args.session,
        setup.config.cluster.cluster_id,
        setup.me,
        setup.ceremony.n(),
        setup.ceremony.threshold
    );
    let report = offline::init(
        &dirs,
        setup.ceremony,
        setup.me,
        setup.signing_key,
        &mut OsRng,
    )?;
    print_report(&report, &dirs);
    Ok(())
}

/// `notaryd dkg offline round`.
fn offline_round(args: &OfflineRoundArgs) -> Result<()> {
    let config = Config::load(&Home::new(&args.dirs.home))?;
    config.validate()?;
    let signing_key = keys::read_consensus_key(&config.home.consensus_key())?;
    let dirs = offline_dirs(&args.dirs)?;
    if !dirs.state.join(offline::STATE_FILE).exists() {
        bail!(
            "no ceremony in progress in {}: run `notaryd dkg offline init` first",
            dirs.state.display()
        );
    }
    let report = offline::run_round(&dirs, &signing_key, args.deadline_passed, &mut OsRng)
        .map_err(|e| anyhow::anyhow!("the key ceremony failed: {e}; no key share was written"))?;
    print_report(&report, &dirs);
    if !report.done {
        return Ok(());
    }
    let me = ParticipantIndex(config.node.id);
    let key_file = offline::read_key_share(&dirs.state)?;
    let (share, set) = key_file
        .decode()
        .context("the ceremony's key share file does not decode")?;
    let transcript_path = dirs.outbox.join(offline::transcript_file_name(me));
    let text = std::fs::read_to_string(&transcript_path)
        .with_context(|| format!("cannot read {}", transcript_path.display()))?;
    let transcript = Transcript::from_json(&text)
        .with_context(|| format!("{}: not a transcript", transcript_path.display()))?;
    // Our own transcript, checked like anyone else's: it also gives the qualified set.
    let result = verify_transcript(&transcript, &participant_keys(&config.cluster)?)
        .context("our own transcript does not verify")?;
    if result.public_key_set != set {
        bail!("the key share file and the transcript name different key sets");
    }
    std::fs::write(config.home.root.join(TRANSCRIPT_FILE), &text).with_context(|| {
        format!(
            "cannot write {}",
            config.home.root.join(TRANSCRIPT_FILE).display()
        )
    })?;
    install_share(&config.home, me, &share, &set, args.force)?;
    print_success(
        &config.home,
        me,
        &set,
        &result.qualified,
        &result.faults,
        &result.disputes,
    );
    println!(
        "({} holds the ceremony's private state: delete it once the cluster runs on the new key)",
        dirs.state.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Verify.

/// `notaryd dkg verify`.
fn verify(args: &VerifyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.cluster_file)
        .with_context(|| format!("cannot read {}", args.cluster_file.display()))?;
    let cluster: ClusterFile = toml::from_str(&text)
        .with_context(|| format!("{}: not a cluster file", args.cluster_file.display()))?;
    let len = std::fs::metadata(&args.transcript)
        .with_context(|| format!("cannot read {}", args.transcript.display()))?
        .len();
    if len > TRANSCRIPT_BYTES_MAX {
        bail!(
            "{}: {len} bytes exceed the limit of {TRANSCRIPT_BYTES_MAX}",
            args.transcript.display()
        );
    }
    let json = std::fs::read_to_string(&args.transcript)
        .with_context(|| format!("cannot read {}", args.transcript.display()))?;
    let transcript = Transcript::from_json(&json)
        .with_context(|| format!("{}: not a ceremony transcript", args.transcript.display()))?;
    let ceremony = &transcript.config.ceremony;
    if ceremony.cluster_id != cluster.cluster_id {
        bail!(
            "the transcript is of cluster {:?}, the cluster file of {:?}",
            ceremony.cluster_id,
            cluster.cluster_id
        );
    }
    let result = verify_transcript(&transcript, &participant_keys(&cluster)?)
        .map_err(|e| anyhow::anyhow!("the transcript is rejected: {e}"))?;
    let set = &result.public_key_set;
    println!(
        "transcript verified: ceremony of cluster {} (session hex {}), {} participants, threshold {}",
        ceremony.cluster_id,
        ceremony.session,
        cluster.members.len(),
        set.threshold()
    );
    println!(
        "cluster public key: {}",
        hex::encode(set.public_key().to_bytes())
    );
    println!("bls_public_key_set = \"{}\"", hex::encode(set.to_bytes()));
    println!("public key shares:");
    for (m, share) in cluster.members.iter().zip(&result.public_key_shares) {
        println!(
            "  {} {:<14} {}",
            m.id,
            m.name,
            hex::encode(share.to_bytes())
        );
    }
    println!("qualified dealers: {}", list(&result.qualified));
    println!("confirmed by: {}", list(&result.confirmations));
    print_faults(&result.faults, &result.disputes);
    if cluster.bls_public_key_set.is_empty() {
        println!("the cluster file has no bls_public_key_set yet: use the line above");
        return Ok(());
    }
    if cluster.bls_public_key_set.to_lowercase() != hex::encode(set.to_bytes()) {
        bail!(
            "the cluster file's bls_public_key_set is NOT the key set of this transcript: the \
             cluster runs on other keys than this ceremony produced"
        );
    }
    println!("the cluster file's bls_public_key_set is this ceremony's key set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceremony(n: usize, seed: u8) -> (CeremonyConfig, Vec<SigningKey>) {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[seed.wrapping_add(i as u8); 32]))
            .collect();
        let config = CeremonyConfig::new(
            CeremonyId::new("test", b"session"),
            (n - 1) / 3,
            keys.iter().map(SigningKey::verifying_key).collect(),
        )
        .unwrap();
        (config, keys)
    }

    fn participants(n: usize) -> Vec<Online> {
        let (config, keys) = ceremony(n, 1);
        keys.into_iter()
            .enumerate()
            .map(|(i, k)| {
                Online::new(
                    Participant::new(config.clone(), ParticipantIndex(i as u16), k, &mut OsRng)
                        .unwrap(),
                )
            })
            .collect()
    }

    /// Delivers every frame `from` wants to send (optionally dropping those to `drop_to`).
    fn deliver(all: &mut [Online], from: usize, drop_to: Option<usize>) -> usize {
        let frames = all[from].outgoing(true);
        let count = frames.len();
        for (to, frame) in frames {
            if Some(to) != drop_to {
                all[to].receive(from, &frame.encode());
            }
        }
        count
    }

    #[test]
    fn frames_round_trip_and_garbage_is_ignored() {
        let mut all = participants(4);
        let frames = all[0].outgoing(true);
        assert_eq!(frames.len(), 3, "round 1 goes to the three peers");
        for (_, f) in &frames {
            assert_eq!(Frame::decode(&f.encode()).as_ref(), Some(f));
        }
        assert!(Frame::decode(b"{\"session\":\"\",\"ack\":5,\"message\":null}").is_none());
        // A frame of another run neither delivers nor acknowledges.
        let (_, mut stale) = frames[0].clone();
        stale.session = hex::encode("another-run");
        stale.ack = 4;
        assert_eq!(all[1].receive(0, &stale.encode()), None);
        assert_eq!((all[1].ignored, all[1].acked_by[0]), (1, 0));
        assert!(all[1].participant.missing().contains(&ParticipantIndex(0)));
        assert!(Frame::decode(b"\xff\x00garbage").is_none());
        assert_eq!(all[1].receive(0, b"not json"), None);
        assert_eq!(all[1].ignored, 2);
    }

    #[test]
    fn resends_until_acknowledged_then_stops() {
        let mut all = participants(4);
        // 0's first round-1 frame to 3 is lost; the resend delivers it.
        deliver(&mut all, 0, Some(3));
        assert!(all[3].participant.missing().contains(&ParticipantIndex(0)));
        for i in 1..4 {
            deliver(&mut all, i, None);
        }
        deliver(&mut all, 0, None);
        assert!(all[3].participant.round_complete());
        // Everyone acks: peers then need nothing more from 0 in round 1.
        for i in 1..4 {
            deliver(&mut all, i, None);
        }
        assert!(all[0].acked_by[1..].iter().all(|a| *a == 1));
        assert!(
            all[0].outgoing(true).is_empty(),
            "acknowledged messages and acks already sent are not sent again"
        );
    }

    #[test]
    fn ceremony_over_frames_with_a_lossy_first_send_gives_one_key() {
        let mut all = participants(4);
        let mut first = true;
        while all.iter().any(|p| p.participant.round().is_some()) {
            for i in 0..4 {
                deliver(&mut all, i, if first { Some((i + 1) % 4) } else { None });
            }
            first = false;
            for p in all.iter_mut() {
                if p.participant.round_complete() {
                    p.participant.advance(&mut OsRng).unwrap();
                }
            }
        }
        for i in 0..4 {
            deliver(&mut all, i, None);
        }
        assert!(all.iter().all(Online::all_acknowledged));
        let outputs: Vec<_> = all
            .into_iter()
            .map(|p| p.participant.finish().unwrap())
            .collect();
        assert!(outputs.iter().all(|o| o.faults.is_empty()));
        assert!(outputs
            .windows(2)
            .all(|w| w[0].public_key_set == w[1].public_key_set));
    }

    #[test]
    fn session_nonces_are_printable_and_bounded() {
        assert!(check_session("2025-06-01-a").is_ok());
        assert!(check_session("").is_err());
        assert!(check_session("with space").is_err());
        assert!(check_session(&"x".repeat(SESSION_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn installing_a_share_refuses_to_replace_another_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        let set = blsttc::SecretKeySet::random(1, &mut OsRng);
        let other = blsttc::SecretKeySet::random(1, &mut OsRng);
        let me = ParticipantIndex(2);
        BlsShareFile::new(2, &other.secret_key_share(2), KeyOrigin::Dealer)
            .write(&home.bls_share())
            .unwrap();
        let share = set.secret_key_share(2);
        let err = install_share(&home, me, &share, &set.public_keys(), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        install_share(&home, me, &share, &set.public_keys(), true).unwrap();
        let file = BlsShareFile::read(&home.bls_share()).unwrap();
        assert_eq!(file.origin, KeyOrigin::Dkg);
        file.check_against(&set.public_keys(), 2, false).unwrap();
        // The same share again is not a replacement.
        install_share(&home, me, &share, &set.public_keys(), false).unwrap();
        // A share that is not ours in the set is never written.
        let err = install_share(&home, ParticipantIndex(1), &share, &set.public_keys(), true)
            .unwrap_err();
        assert!(err.to_string().contains("not public key share"), "{err}");
    }
}
