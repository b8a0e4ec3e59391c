//! Real `notaryd` processes on loopback: the happy path through the library and the CLI, a
//! double-spend race, SIGKILL under load with no acknowledged notarisation lost, bad input,
//! a clean SIGTERM, and overload refused at once (503 with `Retry-After`) with nothing lost.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use notary_client::Verified;
use notary_e2e::{binary, post_json, state, tx, TestCluster, ONE_CLUSTER_AT_A_TIME};
use notary_types::{NotarisationAnswer, Outcome};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn happy_path_through_the_library_and_the_cli() {
    let _turn = lock();
    let c = TestCluster::start(4, 21000).expect("cluster starts");
    let rt = runtime();

    // The library: the answer verifies against the key /v1/cluster publishes too.
    let info = rt.block_on(c.client.cluster()).unwrap();
    assert_eq!((info.n, info.f, info.threshold), (4, 1, 2));
    assert_eq!(info.key().unwrap(), *c.client.key());
    let r = c.request(0, tx("happy-1"), vec![state("genesis", 0)]);
    let v = rt.block_on(c.client.notarise(&r)).unwrap();
    assert_eq!(v.outcome(), &Outcome::Committed);
    v.answer.verify(&info.key().unwrap(), &r.fields).unwrap();

    // The CLI: submit, verify offline, status.
    let dir = tempfile::tempdir().unwrap();
    let notary = binary("notary");
    let key_file = c.cluster.dir().join("clients/client-1.key");
    let answer = dir.path().join("answer.json");
    let request = dir.path().join("request.json");
    let out = Command::new(&notary)
        .env("NOTARY_CLUSTER_FILE", &c.cluster_file)
        .args(["submit", "--key"])
        .arg(&key_file)
        .args(["--tx", &tx("happy-cli").to_string()])
        .args(["--input", &format!("{}:0", tx("genesis-cli"))])
        .arg("--save")
        .arg(&answer)
        .arg("--save-request")
        .arg(&request)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&notary)
        .arg("--cluster-file")
        .arg(&c.cluster_file)
        .arg("verify")
        .arg(&answer)
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&notary)
        .env("NOTARY_CLUSTER_FILE", &c.cluster_file)
        .args(["-o", "json", "status", &tx("happy-cli").to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: NotarisationAnswer = serde_json::from_slice(&out.stdout).unwrap();
    let saved: NotarisationAnswer =
        serde_json::from_str(&std::fs::read_to_string(&answer).unwrap()).unwrap();
    assert_eq!(status, saved, "status returns the same certified answer");

    // A second spend of the same state through the CLI: a signed refusal, exit code 1.
    let out = Command::new(&notary)
        .env("NOTARY_CLUSTER_FILE", &c.cluster_file)
        .args(["submit", "--key"])
        .arg(&key_file)
        .args(["--tx", &tx("happy-cli-double").to_string()])
        .args(["--input", &format!("{}:0", tx("genesis-cli"))])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Every metric the dashboard and the alert rules query is exported by a running replica.
    let (status, metrics) =
        notary_node::localnet::http_get(c.cluster.admin_addr(0), "/metrics").unwrap();
    assert_eq!(status, 200);
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/check.sh");
    let out = Command::new("bash")
        .args([check, "--list-metrics"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let queried = String::from_utf8(out.stdout).unwrap();
    assert!(
        queried.lines().count() > 10,
        "the dashboard queries metrics"
    );
    for name in queried.lines() {
        let exported = metrics
            .lines()
            .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")));
        assert!(
            exported,
            "the dashboard or an alert queries {name}, which nobody exports"
        );
    }
}

#[test]
fn double_spend_race_signs_exactly_one_spend_per_state() {
    let _turn = lock();
    let c = TestCluster::start(4, 22000).expect("cluster starts");
    let rt = runtime();
    let client = Arc::new(c.client.clone());
    let states = 12;
    let racers = 4;
    let mut tasks = Vec::new();
    for s in 0..states {
        for k in 0..racers {
            let r = c.request(
                k % c.keys.len(),
                tx(&format!("race-{s}-{k}")),
                vec![state("race-genesis", s)],
            );
            let client = client.clone();
            // Each racer starts at a different replica.
            tasks.push(rt.spawn(async move { (s, client.notarise_via(k, &r).await) }));
        }
    }
    let mut winners: HashMap<u32, usize> = HashMap::new();
    for t in tasks {
        let (s, v) = rt.block_on(t).unwrap();
        let v: Verified = v.expect("every racer gets a certified answer");
        match v.outcome() {
            Outcome::Committed => *winners.entry(s).or_default() += 1,
            Outcome::InputsConsumed { conflicts } => {
                assert_eq!(conflicts.len(), 1);
                assert_eq!(conflicts[0].state, state("race-genesis", s));
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    for s in 0..states {
        assert_eq!(
            winners.get(&s),
            Some(&1),
            "state {s}: exactly one spend is signed"
        );
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_notarisation() {
    let _turn = lock();
    let mut c = TestCluster::start(4, 23000).expect("cluster starts");
    let rt = runtime();
    let client = Arc::new(c.client.clone());
    let total = 240;
    let mut tasks = Vec::new();
    for i in 0..total {
        let r = c.request(
            i % c.keys.len(),
            tx(&format!("load-{i}")),
            vec![state("load", i as u32)],
        );
        let client = client.clone();
        tasks.push(rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
            client.notarise_via(i, &r).await
        }));
    }
    // Kill replica 1 while the load runs, then bring it back.
    std::thread::sleep(Duration::from_millis(800));
    c.cluster.kill(1).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let mut acknowledged = Vec::new();
    for t in tasks {
        let v = rt
            .block_on(t)
            .unwrap()
            .expect("the cluster keeps answering with one replica down");
        assert_eq!(v.outcome(), &Outcome::Committed);
        acknowledged.push(v.answer);
    }
    // Peers' batches were checked by their checkers and trusted elsewhere on f + 1
    // attestations (attest.rs).
    let count = |check: &str| -> u64 {
        [0, 2, 3]
            .into_iter()
            .map(|i| {
                let (_, m) =
                    notary_node::localnet::http_get(c.cluster.admin_addr(i), "/metrics").unwrap();
                let series = format!("notary_peer_batches_total{{check=\"{check}\"}} ");
                m.lines()
                    .find_map(|l| l.strip_prefix(series.as_str()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    assert!(
        count("attested") > 0,
        "no batch was trusted on attestations"
    );
    assert!(count("checked") > 0, "no batch was checked by its checker");
    c.cluster.start(1).unwrap();
    c.cluster.wait_ready(1, Duration::from_secs(60)).unwrap();

    // Every acknowledged transaction is reported certified, with the same leaf in the same
    // block, by every replica, the restarted one included (after it caught up). The signed
    // header may differ: a replica answers from the first certificate it stored above the
    // block, and any certificate of the chain proves it.
    let http = reqwest::Client::new();
    let key = *c.client.key();
    for i in 0..4 {
        let url = c.cluster.api_url(i);
        for a in &acknowledged {
            let got = rt.block_on(async {
                for _ in 0..300 {
                    let resp = http
                        .get(format!("{url}/v1/transactions/{}", a.leaf.tx_id))
                        .send()
                        .await
                        .unwrap();
                    if resp.status() == 200 {
                        return Some(resp.json::<NotarisationAnswer>().await.unwrap());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None
            });
            let got = got.unwrap_or_else(|| {
                panic!("replica {i}: transaction {} not certified", a.leaf.tx_id)
            });
            assert_eq!(
                (&got.leaf, &got.header, &got.proof),
                (&a.leaf, &a.header, &a.proof),
                "replica {i}, transaction {}",
                a.leaf.tx_id
            );
            notary_client::verify_detached(&key, &got)
                .unwrap_or_else(|e| panic!("replica {i}, transaction {}: {e}", a.leaf.tx_id));
        }
    }
}

#[test]
fn bad_input_gets_typed_errors_and_the_cluster_stays_healthy() {
    let _turn = lock();
    let c = TestCluster::start(4, 24000).expect("cluster starts");
    let rt = runtime();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/notarise", c.cluster.api_url(0));
    let post = |body: Vec<u8>| {
        let http = http.clone();
        let url = url.clone();
        rt.block_on(async move {
            let resp = post_json(&http, &url, body).await;
            let status = resp.status().as_u16();
            let json: serde_json::Value = resp.json().await.unwrap_or_default();
            (
                status,
                json["error"]["code"].as_str().unwrap_or("").to_string(),
                json,
            )
        })
    };

    let (s, code, _) = post(b"{not json".to_vec());
    assert_eq!((s, code.as_str()), (400, "malformed"));

    let mut r = c.request(0, tx("bad-sig"), vec![state("bad", 0)]);
    r.signature.0[0] ^= 1;
    let (s, code, _) = post(serde_json::to_vec(&r).unwrap());
    assert_eq!((s, code.as_str()), (401, "bad_signature"));

    let stranger = notary_types::ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let mut fields = c.request(0, tx("stranger"), vec![state("bad", 1)]).fields;
    fields.requester = notary_types::RequesterKey(stranger.verifying_key().to_bytes());
    let r = notary_types::NotarisationRequest::sign(fields, &stranger);
    let (s, code, _) = post(serde_json::to_vec(&r).unwrap());
    assert_eq!((s, code.as_str()), (403, "not_permitted"));

    // 16 MiB announced, a few bytes sent: refused from the header, before the body is read.
    let api: std::net::SocketAddr = c.cluster.api_url(0)["http://".len()..].parse().unwrap();
    let (s, body) = notary_e2e::post_announcing(api, "/v1/notarise", 16 << 20, b"{").unwrap();
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");

    let inputs: Vec<_> = (0..10_001).map(|i| state("many", i)).collect();
    let r = c.request(0, tx("too-many"), inputs);
    let (s, code, json) = post(serde_json::to_vec(&r).unwrap());
    assert_eq!((s, code.as_str()), (400, "malformed"), "{json}");
    assert!(
        json["error"]["message"].as_str().unwrap().contains("10000"),
        "{json}"
    );

    let mut fields = c
        .request(0, tx("other-cluster"), vec![state("bad", 2)])
        .fields;
    fields.cluster_id = notary_types::ClusterId::new("another-cluster").unwrap();
    let r = notary_types::NotarisationRequest::sign(fields, &c.keys[0]);
    let (s, code, _) = post(serde_json::to_vec(&r).unwrap());
    assert_eq!((s, code.as_str()), (400, "unknown_cluster"));

    // Still healthy: every replica ready, and a good request is signed.
    for i in 0..4 {
        let (status, _) =
            notary_node::localnet::http_get(c.cluster.admin_addr(i), "/readyz").unwrap();
        assert_eq!(status, 200, "replica {i} ready");
    }
    let r = c.request(0, tx("after-bad-input"), vec![state("bad", 3)]);
    let v = rt.block_on(c.client.notarise(&r)).unwrap();
    assert_eq!(v.outcome(), &Outcome::Committed);
}

#[test]
fn sigterm_stops_a_replica_cleanly_and_it_restarts() {
    let _turn = lock();
    let mut c = TestCluster::start(4, 25000).expect("cluster starts");
    let rt = runtime();
    let r = c.request(0, tx("before-term"), vec![state("term", 0)]);
    let before = rt.block_on(c.client.notarise(&r)).unwrap();
    assert_eq!(
        c.cluster.terminate(2, Duration::from_secs(20)).unwrap(),
        Some(0)
    );
    c.cluster.start(2).unwrap();
    c.cluster.wait_ready(2, Duration::from_secs(60)).unwrap();
    // The restarted replica answers the earlier transaction from its own store.
    let v = rt.block_on(c.client.notarise_via(2, &r)).unwrap();
    assert_eq!(v.answer, before.answer);
}

#[test]
fn overload_is_refused_at_once_with_retry_after_and_loses_nothing() {
    let _turn = lock();
    // Replica 0 takes at most 8 requests in flight, 4 per ledger node.
    let c = TestCluster::start_configured(4, 27000, |i, toml| {
        if i != 0 {
            return toml;
        }
        let small = toml
            .replace("max_requests = 2000 ", "max_requests = 4 ")
            .replace("max_pending_requests = 50000", "max_pending_requests = 8")
            .replace(
                "max_pending_per_requester = 10000",
                "max_pending_per_requester = 4",
            );
        assert_eq!(small.matches(" = 4 ").count(), 2, "{small}");
        assert!(small.contains("max_pending_requests = 8 "), "{small}");
        small
    })
    .expect("cluster starts");
    let rt = runtime();
    let key = rt.block_on(c.client.cluster()).unwrap().key().unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/notarise", c.cluster.api_url(0));

    // Ledger node 0 sends 48 requests at once, ledger node 1 four, all to replica 0.
    let requests: Vec<_> = (0..52)
        .map(|i| {
            let node = usize::from(i >= 48);
            c.request(node, tx(&format!("flood-{i}")), vec![state("flood", i)])
        })
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .map(|r| {
            let (http, url, body) = (http.clone(), url.clone(), serde_json::to_vec(r).unwrap());
            rt.spawn(async move {
                let resp = post_json(&http, &url, body).await;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let json: serde_json::Value = resp.json().await.unwrap();
                (status, retry_after, json)
            })
        })
        .collect();
    let results: Vec<_> = tasks.into_iter().map(|t| rt.block_on(t).unwrap()).collect();

    let mut refused = Vec::new();
    for (i, (r, (status, retry_after, json))) in requests.iter().zip(&results).enumerate() {
        match status {
            200 => {
                let answer: NotarisationAnswer = serde_json::from_value(json.clone()).unwrap();
                answer.verify(&key, &r.fields).unwrap();
                assert_eq!(answer.leaf.outcome, Outcome::Committed);
            }
            503 => {
                assert_eq!(json["error"]["code"], "overloaded", "{json}");
                assert_eq!(json["error"]["retryable"], true, "{json}");
                let after: u64 = retry_after
                    .as_deref()
                    .expect("a 503 carries Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(after >= 1, "Retry-After {after}");
                assert!(i < 48, "ledger node 1 stays within its own bound: {json}");
                refused.push(r);
            }
            other => panic!("request {i}: unexpected status {other}: {json}"),
        }
    }
    // Ledger node 0 had 48 requests in flight against a bound of 4.
    assert!(refused.len() >= 40, "only {} refused", refused.len());

    // Refused is not lost: each one resubmitted is signed, and replica 0 counted every 503.
    for r in &refused {
        let v = rt.block_on(c.client.notarise(r)).unwrap();
        assert_eq!(v.outcome(), &Outcome::Committed);
    }
    let (_, metrics) =
        notary_node::localnet::http_get(c.cluster.admin_addr(0), "/metrics").unwrap();
    let counted: usize = metrics
        .lines()
        .find(|l| l.starts_with("notary_requests_total{outcome=\"overloaded\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("the overloaded counter");
    assert!(
        counted >= refused.len(),
        "{counted} counted, {} refused",
        refused.len()
    );
    let (status, _) = notary_node::localnet::http_get(c.cluster.admin_addr(0), "/readyz").unwrap();
    assert_eq!(status, 200, "replica 0 stays ready");
}
