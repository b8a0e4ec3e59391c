//! The offline (air-gapped) ceremony: rounds of signed files exchanged by any channel.
//!
//! Each participant keeps a private state directory (its state file is written 0600 and
//! refused if group or others can read it), receives the others' round files into an inbox
//! directory, and publishes its own from an outbox directory. [`run_round`] reads what it
//! needs, says which files are still missing, and writes the next round's file once every
//! file is there (or the caller says the round's deadline passed). After round 4 it writes the
//! key share (0600, in the state directory) and the public transcript (in the outbox).
//!
//! File names: `dkg-round-{r}-from-{i}.json` for round messages, `dkg-transcript-{i}.json`,
//! and in the state directory `dkg-state.json` and `dkg-key-share.json`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use blsttc::{PublicKeySet, SecretKeyShare};
use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{CeremonyConfig, ParticipantIndex};
use crate::error::OfflineError;
use crate::evaluate::NamedFault;
use crate::message::{Round, SignedMessage};
use crate::participant::{Handled, Participant, PrivateState, Step};

/// The private state file's name, in the state directory.
pub const STATE_FILE: &str = "dkg-state.json";
/// The key share file's name, in the state directory (0600).
pub const KEY_SHARE_FILE: &str = "dkg-key-share.json";
/// Round files larger than this are refused (a deal for 256 participants is ~100 KiB).
pub const ROUND_FILE_BYTES_MAX: u64 = 4 << 20;

/// Where one participant's files live.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// Private: the state and, at the end, the key share.
    pub state: PathBuf,
    /// The other participants' round files, as received.
    pub inbox: PathBuf,
    /// This participant's round files and transcript, to hand to the others.
    pub outbox: PathBuf,
}

/// What one call did and what it still needs.
#[derive(Clone, Debug, Default)]
pub struct RoundReport {
    /// The round now open (`None` when done).
    pub round: Option<Round>,
    /// Files the open round still waits for (names, to be put into the inbox).
    pub needs: Vec<String>,
    /// Files written by this call.
    pub wrote: Vec<PathBuf>,
    /// Inbox files that were not accepted, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
    /// Faults seen so far.
    pub faults: Vec<NamedFault>,
    /// True once the key share and transcript are written.
    pub done: bool,
}

/// The key share file's content.
#[derive(Serialize, Deserialize)]
pub struct KeyShareFile {
    /// The participant's index (its share signs as this index).
    pub index: u16,
    /// `SecretKeyShare::to_bytes`, hex. Secret.
    pub secret_key_share: String,
    /// `PublicKeySet::to_bytes`, hex.
    pub public_key_set: String,
}

impl KeyShareFile {
    /// Decodes the share and the key set.
    pub fn decode(&self) -> Option<(SecretKeyShare, PublicKeySet)> {
        let bytes = Zeroizing::new(crate::message::decode_array::<32>(&self.secret_key_share)?);
        let share = SecretKeyShare::from_bytes(*bytes).ok()?;
        let pks = PublicKeySet::from_bytes(hex::decode(&self.public_key_set).ok()?).ok()?;
        Some((share, pks))
    }
}

impl Drop for KeyShareFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_key_share);
    }
}

/// The name of participant `sender`'s file for `round`.
pub fn round_file_name(round: Round, sender: ParticipantIndex) -> String {
    format!("dkg-round-{}-from-{}.json", round.number(), sender.0)
}

/// The name of participant `holder`'s transcript file.
pub fn transcript_file_name(holder: ParticipantIndex) -> String {
    format!("dkg-transcript-{}.json", holder.0)
}

/// Starts a ceremony: creates the private state and writes the round-1 file.
pub fn init<R: RngCore + CryptoRng>(
    dirs: &Dirs,
    config: CeremonyConfig,
    me: ParticipantIndex,
    signing_key: SigningKey,
    rng: &mut R,
) -> Result<RoundReport, OfflineError> {
    let state_path = dirs.state.join(STATE_FILE);
    if state_path.exists() {
        return Err(OfflineError::StateExists { path: state_path });
    }
    let p = Participant::new(config, me, signing_key, rng)?;
    let msg = p
        .outgoing()
        .expect("a new participant has its round-1 message")
        .clone();
    let wrote = write_public(&dirs.outbox.join(round_file_name(msg.round(), me)), &msg)?;
    save(&state_path, &p)?;
    Ok(report(&p, vec![wrote]))
}

/// Runs as much of the ceremony as the inbox allows: reads the open round's files, and if all
/// are there (or `deadline_passed`), closes the round and writes the next file. Call it again
/// whenever new files arrive. Idempotent: files already read are recognised as duplicates.
pub fn run_round<R: RngCore + CryptoRng>(
    dirs: &Dirs,
    signing_key: &SigningKey,
    deadline_passed: bool,
    rng: &mut R,
) -> Result<RoundReport, OfflineError> {
    let state_path = dirs.state.join(STATE_FILE);
    let mut p = load(&state_path, signing_key)?;
    let mut rejected = Vec::new();
    let Some(open) = p.round() else {
        return Ok(RoundReport {
            done: true,
            ..report(&p, Vec::new())
        });
    };
    for round in Round::ALL.into_iter().filter(|r| *r >= open) {
        let me = p.index();
        let senders: Vec<ParticipantIndex> = p.config().indices().filter(|s| *s != me).collect();
        for sender in senders {
            let path = dirs.inbox.join(round_file_name(round, sender));
            if !path.exists() {
                continue;
            }
            match read_message(&path) {
                Ok(msg) if msg.round() != round || msg.sender() != sender => {
                    rejected.push((path, "its round or sender differs from its name".into()))
                }
                Ok(msg) => match p.handle(msg) {
                    Handled::Rejected { reason } => rejected.push((path, reason.into())),
                    Handled::Faulty(f) => rejected.push((path, format!("{:?}", f.fault))),
                    Handled::Accepted | Handled::Duplicate | Handled::Late { .. } => {}
                },
                Err(reason) => rejected.push((path, reason)),
            }
        }
    }
    let mut wrote = Vec::new();
    if p.round_complete() || deadline_passed {
        match p.advance(rng)? {
            Step::Send(msg) => {
                wrote.push(write_public(
                    &dirs.outbox.join(round_file_name(msg.round(), p.index())),
                    &msg,
                )?);
                save(&state_path, &p)?;
            }
            Step::Finished => {
                save(&state_path, &p)?;
                let me = p.index();
                let out = p.finish()?;
                let transcript_path = dirs.outbox.join(transcript_file_name(me));
                write_file(&transcript_path, out.transcript.to_json().as_bytes(), 0o644)?;
                let key_file = KeyShareFile {
                    index: me.0,
                    secret_key_share: hex::encode(
                        Zeroizing::new(out.secret_key_share.to_bytes()).as_slice(),
                    ),
                    public_key_set: hex::encode(out.public_key_set.to_bytes()),
                };
                let json = Zeroizing::new(
                    serde_json::to_vec_pretty(&key_file).expect("strings always serialise"),
                );
                let key_path = dirs.state.join(KEY_SHARE_FILE);
                write_file(&key_path, &json, 0o600)?;
                return Ok(RoundReport {
                    round: None,
                    needs: Vec::new(),
                    wrote: vec![transcript_path, key_path],
                    rejected,
                    faults: out.faults,
                    done: true,
                });
            }
        }
    } else {
        save(&state_path, &p)?;
    }
    Ok(RoundReport {
        rejected,
        ..report(&p, wrote)
    })
}

/// Reads the key share file written at the end (refused unless it is 0600-private).
pub fn read_key_share(state_dir: &Path) -> Result<KeyShareFile, OfflineError> {
    let path = state_dir.join(KEY_SHARE_FILE);
    let bytes = read_private(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| OfflineError::Parse {
        path,
        reason: e.to_string(),
    })
}

fn report(p: &Participant, wrote: Vec<PathBuf>) -> RoundReport {
    let round = p.round();
    let needs = match round {
        Some(r) => p
            .missing()
            .into_iter()
            .map(|s| round_file_name(r, s))
            .collect(),
        None => Vec::new(),
    };
    RoundReport {
        round,
        needs,
        wrote,
        rejected: Vec::new(),
        faults: p.faults_so_far(),
        done: false,
    }
}

fn read_message(path: &Path) -> Result<SignedMessage, String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > ROUND_FILE_BYTES_MAX {
        return Err(format!(
            "{len} bytes exceed the limit of {ROUND_FILE_BYTES_MAX}"
        ));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn write_public(path: &Path, msg: &SignedMessage) -> Result<PathBuf, OfflineError> {
    let json =
        serde_json::to_vec_pretty(msg).expect("a message of strings and vectors always serialises");
    write_file(path, &json, 0o644)?;
    Ok(path.to_path_buf())
}

fn save(path: &Path, p: &Participant) -> Result<(), OfflineError> {
    let state = p.to_private();
    let json =
        Zeroizing::new(serde_json::to_vec(&state).expect("the state is strings and vectors"));
    write_file(path, &json, 0o600)
}

fn load(path: &Path, signing_key: &SigningKey) -> Result<Participant, OfflineError> {
    let bytes = read_private(path)?;
    let parse = |reason: String| OfflineError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let state: PrivateState = serde_json::from_slice(&bytes).map_err(|e| parse(e.to_string()))?;
    Participant::from_private(&state, signing_key.clone()).map_err(parse)
}

fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, OfflineError> {
    let io = |source| OfflineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(OfflineError::StateNotPrivate {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(Zeroizing::new(fs::read(path).map_err(io)?))
}

/// Writes atomically (temporary file, fsync, rename) with the given mode from creation on.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), OfflineError> {
    let io = |source| OfflineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io)
}
