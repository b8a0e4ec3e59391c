//! The key ceremony with real `notaryd` processes on loopback: four `notaryd dkg online`
//! processes key a production cluster (development = false) that notarises with certificates
//! verifying against the ceremony's key; a silent participant is named and the rest still get
//! keys, while f + 1 silent make it fail cleanly; the offline rounds of files; `dkg verify`
//! accepts a transcript and rejects tampered ones; `config check` refuses dealer keys in a
//! production cluster and a cluster file without a key set. Ports 26000-26999: a cluster at
//! base b uses b+i (QUIC), b+100+i (API) and b+200+i (admin), so the bases are 300 apart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use notary_client::{Client, RetryPolicy};
use notary_e2e::{binary, state, tx, ONE_CLUSTER_AT_A_TIME};
use notary_node::config::{ClusterFile, Home};
use notary_node::keys::{BlsShareFile, KeyOrigin};
use notary_node::localnet::LocalCluster;
use notary_types::{ClusterId, NotarisationRequest, Outcome, RequestFields, RequesterKey};

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn notaryd() -> PathBuf {
    let path = binary("notaryd");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p notary-node --bins)",
        path.display()
    );
    path
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cluster_file(path: &Path) -> ClusterFile {
    toml::from_str(&std::fs::read_to_string(path).expect("cluster file")).expect("parses")
}

fn write_cluster_file(path: &Path, file: &ClusterFile) {
    std::fs::write(path, toml::to_string(file).expect("encodes")).expect("writes");
}

/// `notaryd dkg verify TRANSCRIPT --cluster-file F`.
fn verify(transcript: &Path, cluster: &Path) -> Output {
    Command::new(notaryd())
        .args(["dkg", "verify"])
        .arg(transcript)
        .arg("--cluster-file")
        .arg(cluster)
        .output()
        .expect("runs")
}

/// The key set a replica's transcript records.
fn transcript_key_set(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join("dkg-transcript.json")).expect("transcript");
    notary_dkg_key_set(&text)
}

fn notary_dkg_key_set(transcript_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(transcript_json).expect("json");
    v["public_key_set"].as_str().expect("a key set").to_owned()
}

/// Starts `notaryd dkg online` for each home; returns the children with piped output.
fn spawn_online(homes: &[PathBuf], session: &str, start: &str, round: &str) -> Vec<Child> {
    homes
        .iter()
        .map(|home| {
            Command::new(notaryd())
                .args(["dkg", "online", "--force", "--session", session])
                .args(["--start-timeout", start, "--round-timeout", round])
                .arg("--home")
                .arg(home)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawns")
        })
        .collect()
}

fn request(
    cluster_id: &ClusterId,
    key: &notary_types::ed25519_dalek::SigningKey,
    label: &str,
) -> NotarisationRequest {
    let mut fields = RequestFields {
        cluster_id: cluster_id.clone(),
        tx_id: tx(label),
        inputs: vec![state(&format!("{label}-input"), 0)],
        references: Vec::new(),
        time_window: None,
        requester: RequesterKey(key.verifying_key().to_bytes()),
    };
    fields.normalise();
    NotarisationRequest::sign(fields, key)
}

#[test]
fn four_online_processes_key_a_production_cluster_that_notarises() {
    let _turn = lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let (mut cluster, took) =
        LocalCluster::create_with_dkg(&notaryd(), &dir, 4, 26000).expect("ceremony");
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // Every replica holds a ceremony share; the four transcripts name one key set, the one
    // now in every cluster file, which no longer says "development".
    let shared = cluster_file(&dir.join("cluster.toml"));
    assert!(!shared.development);
    let set = notary_node::keys::public_key_set(&shared).unwrap();
    assert_eq!(set.threshold(), 1);
    for i in 0..4 {
        let home = Home::new(cluster.home(i));
        assert_eq!(transcript_key_set(&home.root), shared.bls_public_key_set);
        assert_eq!(cluster_file(&home.cluster_file()), shared);
        let share = BlsShareFile::read(&home.bls_share()).unwrap();
        assert_eq!(share.origin, KeyOrigin::Dkg);
        share.check_against(&set, i as u16, false).unwrap();
        let log = std::fs::read_to_string(home.root.join("dkg.log")).unwrap();
        assert!(log.contains("faults: none"), "{log}");
        assert!(
            !log.contains(&share.share),
            "the secret share is never printed"
        );
    }

    // `dkg verify` recomputes the same key set and says the cluster file carries it.
    let transcript = cluster.home(0).join("dkg-transcript.json");
    let out = verify(&transcript, &dir.join("cluster.toml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "bls_public_key_set = \"{}\"",
            shared.bls_public_key_set
        )),
        "{stdout}"
    );
    assert!(stdout.contains("is this ceremony's key set"), "{stdout}");
    assert!(stdout.contains("faults: none"), "{stdout}");

    // Tampering: a message's signature, or the stated key set, makes verification fail.
    let json = std::fs::read_to_string(&transcript).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sig = v["messages"][5]["header"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    v["messages"][5]["header"]["signature"] = format!("{flipped}{}", &sig[1..]).into();
    let tampered = tmp.path().join("tampered-signature.json");
    std::fs::write(&tampered, serde_json::to_string(&v).unwrap()).unwrap();
    let out = verify(&tampered, &dir.join("cluster.toml"));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rejected"),
        "{}",
        text(&out)
    );
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let stated = &shared.bls_public_key_set;
    let flipped = if stated.ends_with('0') { "1" } else { "0" };
    v["public_key_set"] = format!("{}{flipped}", &stated[..stated.len() - 1]).into();
    let tampered = tmp.path().join("tampered-key-set.json");
    std::fs::write(&tampered, serde_json::to_string(&v).unwrap()).unwrap();
    let out = verify(&tampered, &dir.join("cluster.toml"));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));

    // A production cluster (development = false) starts from the ceremony's keys and its
    // certificates verify against the ceremony's key.
    cluster.start_all().unwrap();
    cluster.wait_all_ready(Duration::from_secs(60)).unwrap();
    let client = Client::new(
        cluster.api_urls(),
        set.public_key(),
        RetryPolicy {
            deadline: Duration::from_secs(60),
            ..RetryPolicy::default()
        },
    )
    .unwrap();
    let key = notary_node::keys::read_consensus_key(&dir.join("clients/client-0.key")).unwrap();
    let cluster_id = ClusterId::new(&shared.cluster_id).unwrap();
    let r = request(&cluster_id, &key, "dkg-keyed-cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(client.notarise(&r)).expect("notarised");
    assert_eq!(answer.outcome(), &Outcome::Committed);
    answer.answer.verify(&set.public_key(), &r.fields).unwrap();
}

/// Waits for every child; returns their outputs, in order.
fn wait_all(children: Vec<Child>) -> Vec<Output> {
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("waits"))
        .collect()
}

#[test]
fn a_silent_participant_is_named_and_f_plus_one_silent_fail_cleanly() {
    let _turn = lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let cluster = LocalCluster::create(&notaryd(), &dir, 4, 26300).unwrap();
    let homes: Vec<PathBuf> = (0..4).map(|i| cluster.home(i)).collect();

    // Replica 3 never shows up: the other three finish, name it, and agree.
    let outs = wait_all(spawn_online(&homes[..3], "silent-one", "3s", "2s"));
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("#3: silent in round 1"), "{stdout}");
    }
    let set = transcript_key_set(&homes[0]);
    assert_eq!(transcript_key_set(&homes[1]), set);
    assert_eq!(transcript_key_set(&homes[2]), set);
    // Its transcript verifies and names the silent participant; the cluster file still holds
    // the dealer's key set, which verify reports as different (and fails).
    let out = verify(
        &homes[1].join("dkg-transcript.json"),
        &dir.join("cluster.toml"),
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("#3: silent in round 1"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOT the key set"),
        "{}",
        text(&out)
    );
    let mut file = cluster_file(&dir.join("cluster.toml"));
    file.bls_public_key_set = set.clone();
    write_cluster_file(&dir.join("cluster.toml"), &file);
    let out = verify(
        &homes[1].join("dkg-transcript.json"),
        &dir.join("cluster.toml"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Two of four silent (f + 1 = 2): both fail with a clear message and write no share.
    let before = std::fs::read(Home::new(&homes[0]).bls_share()).unwrap();
    let outs = wait_all(spawn_online(&homes[..2], "silent-two", "2s", "1s"));
    for out in &outs {
        assert_ne!(out.status.code(), Some(0), "{}", text(out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("the key ceremony failed"), "{}", text(out));
        assert!(stderr.contains("no key share was written"), "{}", text(out));
    }
    assert_eq!(
        std::fs::read(Home::new(&homes[0]).bls_share()).unwrap(),
        before,
        "a failed ceremony leaves the key share alone"
    );
}

/// Copies every outbox file to every other participant's inbox.
fn exchange(homes: &[PathBuf]) {
    for from in homes {
        for entry in std::fs::read_dir(from.join("dkg/outbox")).unwrap() {
            let path = entry.unwrap().path();
            for to in homes.iter().filter(|h| *h != from) {
                std::fs::copy(&path, to.join("dkg/inbox").join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

fn offline(home: &Path, args: &[&str]) -> Output {
    Command::new(notaryd())
        .args(["dkg", "offline"])
        .args(args)
        .arg("--home")
        .arg(home)
        .output()
        .expect("runs")
}

#[test]
fn offline_rounds_of_files_give_every_agency_its_share() {
    // No network: no cluster lock needed, and the ports are never bound.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let cluster = LocalCluster::create(&notaryd(), &dir, 4, 26600).unwrap();
    let homes: Vec<PathBuf> = (0..4).map(|i| cluster.home(i)).collect();

    // The testnet's dealer share is not replaced without --force.
    let out = offline(&homes[0], &["init", "--session", "air-gap-1"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    for home in &homes {
        let out = offline(home, &["init", "--force", "--session", "air-gap-1"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("wrote: "), "{stdout}");
        assert!(stdout.contains("dkg-round-1-from-"), "{stdout}");
    }
    // Before any exchange, a round says which files it still needs.
    let out = offline(&homes[0], &["round"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for f in ["dkg-round-1-from-1.json", "dkg-round-1-from-3.json"] {
        assert!(stdout.contains(f), "{stdout}");
    }
    for _round in 1..=4 {
        exchange(&homes);
        for home in &homes {
            let out = offline(home, &["round", "--force"]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
    }
    let set = transcript_key_set(&homes[0]);
    let mut file = cluster_file(&dir.join("cluster.toml"));
    file.bls_public_key_set = set.clone();
    file.development = false;
    let key_set = notary_node::keys::public_key_set(&file).unwrap();
    for (i, home) in homes.iter().enumerate() {
        assert_eq!(transcript_key_set(home), set);
        let share = BlsShareFile::read(&Home::new(home).bls_share()).unwrap();
        assert_eq!(share.origin, KeyOrigin::Dkg);
        share.check_against(&key_set, i as u16, false).unwrap();
        // A further round after the end is harmless and idempotent.
        let out = offline(home, &["round"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    write_cluster_file(&dir.join("cluster.toml"), &file);
    let out = verify(
        &homes[2].join("dkg-transcript.json"),
        &dir.join("cluster.toml"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn config_check_refuses_dealer_keys_in_production_and_a_missing_key_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let cluster = LocalCluster::create(&notaryd(), &dir, 4, 26700).unwrap();
    let home = Home::new(cluster.home(0));
    let check = || {
        Command::new(notaryd())
            .args(["config", "check", "--home"])
            .arg(&home.root)
            .output()
            .expect("runs")
    };
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let mut file = cluster_file(&home.cluster_file());
    file.development = false;
    write_cluster_file(&home.cluster_file(), &file);
    let out = check();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dealer"),
        "{}",
        text(&out)
    );

    file.development = true;
    file.bls_public_key_set.clear();
    write_cluster_file(&home.cluster_file(), &file);
    let out = check();
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notaryd dkg"),
        "{}",
        text(&out)
    );
}

/// The online ceremony's wall time with real processes, from spawning `notaryd dkg online`
/// for every replica until the last exited. A measurement, not a test: run it with
/// `cargo test --release -p notary-e2e --test dkg -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_online_ceremony_wall_time() {
    let _turn = lock();
    // Only the peer ports (base + i) are bound during a ceremony.
    for (n, base) in [(4, 26400), (7, 26420), (10, 26440), (16, 26460)] {
        let mut times = Vec::new();
        for _run in 0..3 {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("cluster");
            let (_cluster, took) =
                LocalCluster::create_with_dkg(&notaryd(), &dir, n, base).expect("ceremony");
            times.push(took.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "online ceremony, n = {n:>2} real processes: median {:.0} ms (min {:.0}, max {:.0}) over {} runs",
            times[1], times[0], times[2], times.len()
        );
    }
}
