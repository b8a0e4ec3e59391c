//! The container deployment for real, where the machine has Docker: the Compose cluster of
//! `deploy/docker/` starts, notarises, loses a container to `docker kill`, and keeps
//! answering. Skipped, with a message, where Docker is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use notary_client::{Client, RetryPolicy};
use notary_e2e::{binary, state, tx, ONE_CLUSTER_AT_A_TIME};
use notary_types::ed25519_dalek::SigningKey;
use notary_types::{ClusterId, NotarisationRequest, Outcome, RequestFields, RequesterKey};

const PROJECT: &str = "notarye2e";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_available() -> bool {
    let docker = Command::new("docker").arg("info").output();
    let compose = Command::new("docker-compose").arg("version").output();
    matches!(docker, Ok(o) if o.status.success()) && matches!(compose, Ok(o) if o.status.success())
}

/// Takes the Compose project down however the test ends.
struct Down {
    compose: PathBuf,
    dir: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .arg("-f")
            .arg(&self.compose)
            .args(["-p", PROJECT, "down", "-v", "--remove-orphans"])
            .env("NOTARY_CLUSTER_DIR", &self.dir)
            .output();
    }
}

fn request(cluster_id: &ClusterId, key: &SigningKey, label: &str) -> NotarisationRequest {
    let fields = RequestFields {
        cluster_id: cluster_id.clone(),
        tx_id: tx(label),
        inputs: vec![state(label, 0)],
        references: Vec::new(),
        time_window: None,
        requester: RequesterKey(key.verifying_key().to_bytes()),
    };
    NotarisationRequest::sign(fields, key)
}

#[test]
fn compose_cluster_notarises_and_survives_a_killed_container() {
    if !docker_available() {
        eprintln!("SKIPPED: Docker Engine or docker-compose is not available on this machine");
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let repo = repo();
    let docker = repo.join("deploy/docker");
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    run(Command::new("bash").arg(docker.join("build-base-image.sh")));
    run(Command::new("bash")
        .arg(docker.join("make-cluster.sh"))
        .arg("--out")
        .arg(&cluster_dir)
        .arg("--notaryd")
        .arg(binary("notaryd")));
    let compose = docker.join("compose.yml");
    let _down = Down {
        compose: compose.clone(),
        dir: cluster_dir.clone(),
    };
    run(Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["-p", PROJECT, "up", "-d", "--build"])
        .env("NOTARY_CLUSTER_DIR", &cluster_dir));

    let file: notary_node::config::ClusterFile =
        toml::from_str(&std::fs::read_to_string(cluster_dir.join("cluster.toml")).unwrap())
            .unwrap();
    let key = notary_node::keys::public_key_set(&file)
        .unwrap()
        .public_key();
    let cluster_id = ClusterId::new(&file.cluster_id).unwrap();
    let ledger =
        notary_node::keys::read_consensus_key(&cluster_dir.join("clients/client-0.key")).unwrap();
    // The cluster file names container addresses; from the host the APIs are published here.
    let urls: Vec<String> = (0..4)
        .map(|i| format!("http://127.0.0.1:{}", 8100 + i))
        .collect();
    let client = Client::new(
        urls,
        key,
        RetryPolicy {
            deadline: Duration::from_secs(90),
            ..RetryPolicy::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let v = rt
        .block_on(client.notarise(&request(&cluster_id, &ledger, "compose-1")))
        .expect("the Compose cluster notarises");
    assert_eq!(v.outcome(), &Outcome::Committed);
    eprintln!("first notarisation after {:?}", started.elapsed());

    run(Command::new("docker").args(["kill", &format!("{PROJECT}_replica-1_1")]));
    let v = rt
        .block_on(client.notarise(&request(&cluster_id, &ledger, "compose-2")))
        .expect("the cluster answers with one container killed");
    assert_eq!(v.outcome(), &Outcome::Committed);
}
