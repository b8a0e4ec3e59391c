//! Checks the code against `docs/test-vectors/*.json`, the vectors a ledger node in another
//! language implements against. `NOTARY_WRITE_VECTORS=1 cargo test -p notary-types --test
//! vectors` regenerates them (only when the format changes on purpose: bump the tags then).

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use notary_types::merkle::leaf_hash;
use notary_types::{
    BlockHeader, ClusterId, ClusterSignature, ConsumedState, HeaderHash, Height, Leaf, MerkleTree,
    NotarisationAnswer, NotarisationRequest, Outcome, RequestDigest, RequestFields, RequesterKey,
    StateRef, TimeWindow, Timestamp, TxId,
};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/test-vectors")
}

fn seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = i as u8;
    }
    s
}

/// A fixed BLS secret key: 32 bytes, big-endian, below the group order.
fn bls_key() -> blsttc::SecretKey {
    let mut b = [0x5au8; 32];
    b[0] = 0x1f;
    blsttc::SecretKey::from_bytes(b).expect("below the group order")
}

fn sref(byte: u8, index: u32) -> StateRef {
    StateRef {
        tx_id: TxId([byte; 32]),
        index,
    }
}

fn requests() -> Vec<(&'static str, NotarisationRequest)> {
    let key = SigningKey::from_bytes(&seed());
    let cluster_id = ClusterId::new("wooden-dollars").unwrap();
    let base = RequestFields {
        cluster_id,
        tx_id: TxId([0x11; 32]),
        inputs: vec![sref(0xa1, 0), sref(0xa1, 1)],
        references: vec![sref(0xb2, 7)],
        time_window: Some(
            TimeWindow::new(
                Some(Timestamp(1_735_689_600_000)),
                Some(Timestamp(1_735_693_200_000)),
            )
            .unwrap(),
        ),
        requester: RequesterKey([0; 32]),
    };
    let mut no_window = base.clone();
    no_window.tx_id = TxId([0x22; 32]);
    no_window.references = vec![];
    no_window.time_window = None;
    let mut until_only = base.clone();
    until_only.tx_id = TxId([0x33; 32]);
    until_only.inputs = vec![sref(0xc3, 65_536)];
    until_only.time_window =
        Some(TimeWindow::new(None, Some(Timestamp(1_735_693_200_000))).unwrap());
    vec![
        (
            "two inputs, one reference, window with both bounds",
            NotarisationRequest::sign(base, &key),
        ),
        (
            "two inputs, no references, no window",
            NotarisationRequest::sign(no_window, &key),
        ),
        (
            "until-only window, index above 65535",
            NotarisationRequest::sign(until_only, &key),
        ),
    ]
}

fn leaves(first: &NotarisationRequest) -> Vec<Leaf> {
    vec![
        Leaf {
            tx_id: first.fields.tx_id,
            request_digest: first.fields.digest(),
            outcome: Outcome::Committed,
        },
        Leaf {
            tx_id: TxId([0x44; 32]),
            request_digest: RequestDigest([0x45; 32]),
            outcome: Outcome::TimeWindowInvalid {
                notary_time: Timestamp(1_735_689_600_000),
            },
        },
        Leaf {
            tx_id: TxId([0x55; 32]),
            request_digest: RequestDigest([0x56; 32]),
            outcome: Outcome::InputsConsumed {
                conflicts: vec![ConsumedState {
                    state: sref(0xa1, 0),
                    consuming_tx_hash: TxId([0x11; 32]).hashed(),
                }],
            },
        },
        Leaf {
            tx_id: TxId([0x66; 32]),
            request_digest: RequestDigest([0x67; 32]),
            outcome: Outcome::ReferencesConsumed {
                conflicts: vec![ConsumedState {
                    state: sref(0xa1, 1),
                    consuming_tx_hash: TxId([0x11; 32]).hashed(),
                }],
            },
        },
        Leaf {
            tx_id: TxId([0x22; 32]),
            request_digest: RequestDigest([0x77; 32]),
            outcome: Outcome::TxIdReused {
                original_digest: RequestDigest([0x78; 32]),
            },
        },
    ]
}

fn generate() -> (Value, Value, Value) {
    let reqs = requests();
    let request_vectors: Vec<Value> = reqs
        .iter()
        .map(|(description, r)| {
            json!({
                "description": description,
                "request": r,
                "canonical_bytes": hex::encode(r.fields.canonical_bytes()),
                "request_digest": r.fields.digest().to_string(),
                "signature": hex::encode(r.signature.0),
                "wire_bytes": hex::encode(r.to_wire_bytes()),
            })
        })
        .collect();
    let requests_json = json!({
        "ed25519_seed": hex::encode(seed()),
        "ed25519_public_key": hex::encode(SigningKey::from_bytes(&seed()).verifying_key().to_bytes()),
        "vectors": request_vectors,
    });

    let leaves = leaves(&reqs[0].1);
    let tree = MerkleTree::from_leaves(&leaves);
    let merkle_json = json!({
        "odd_rule": "the last node of an odd level is promoted unchanged",
        "leaves": leaves.iter().enumerate().map(|(i, l)| json!({
            "leaf": l,
            "canonical_bytes": hex::encode(l.canonical_bytes()),
            "leaf_hash": leaf_hash(l).to_string(),
            "proof": tree.proof(i).unwrap(),
        })).collect::<Vec<_>>(),
        "root": tree.root().to_string(),
        "empty_root": notary_types::merkle::empty_root().to_string(),
    });

    let sk = bls_key();
    let header = BlockHeader {
        cluster_id: reqs[0].1.fields.cluster_id.clone(),
        height: Height(42),
        timestamp: Timestamp(1_735_690_000_000),
        leaf_count: leaves.len() as u32,
        root: tree.root(),
        prev: HeaderHash([0x41; 32]),
    };
    let signature = ClusterSignature::from(&sk.sign(header.canonical_bytes()));
    let answer = NotarisationAnswer {
        leaf: leaves[0].clone(),
        proof: tree.proof(0).unwrap(),
        header: header.clone(),
        chain: Vec::new(),
        signature,
    };
    // The next block's header names this one; a signature over it alone covers both.
    let next = BlockHeader {
        cluster_id: header.cluster_id.clone(),
        height: Height(43),
        timestamp: Timestamp(1_735_690_000_009),
        leaf_count: 1,
        root: leaf_hash(&leaves[1]),
        prev: header.hash(),
    };
    let next_signature = ClusterSignature::from(&sk.sign(next.canonical_bytes()));
    let chained = NotarisationAnswer {
        chain: vec![next.clone()],
        signature: next_signature,
        ..answer.clone()
    };
    let certificate_json = json!({
        "ciphersuite": "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_",
        "bls_secret_key": hex::encode(sk.to_bytes()),
        "cluster_public_key": hex::encode(sk.public_key().to_bytes()),
        "header": header,
        "header_canonical_bytes": hex::encode(header.canonical_bytes()),
        "signature": hex::encode(signature.0),
        "header_hash": header.hash().to_string(),
        "answer_for_request_0": answer,
        "next_header": next,
        "next_header_canonical_bytes": hex::encode(next.canonical_bytes()),
        "next_header_signature": hex::encode(next_signature.0),
        "chained_answer_for_request_0": chained,
        "expected_outcome": leaves[0].outcome,
    });
    (requests_json, merkle_json, certificate_json)
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn code_matches_the_published_vectors() {
    let (requests_json, merkle_json, certificate_json) = generate();
    if std::env::var_os("NOTARY_WRITE_VECTORS").is_some() {
        for (name, v) in [
            ("requests.json", &requests_json),
            ("merkle.json", &merkle_json),
            ("certificate.json", &certificate_json),
        ] {
            std::fs::write(
                dir().join(name),
                serde_json::to_string_pretty(v).unwrap() + "\n",
            )
            .unwrap();
        }
    }
    // Each vector is checked from the file's own fields, not only by comparing whole files.
    let file = load("requests.json");
    assert_eq!(file, requests_json, "requests.json differs from the code");
    let key = SigningKey::from_bytes(
        &hex::decode(file["ed25519_seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    for v in file["vectors"].as_array().unwrap() {
        let r: NotarisationRequest = serde_json::from_value(v["request"].clone()).unwrap();
        assert_eq!(
            hex::encode(r.fields.canonical_bytes()),
            v["canonical_bytes"]
        );
        assert_eq!(r.fields.digest().to_string(), v["request_digest"]);
        assert_eq!(
            NotarisationRequest::sign(r.fields.clone(), &key),
            r,
            "ed25519 is deterministic"
        );
        let wire = hex::decode(v["wire_bytes"].as_str().unwrap()).unwrap();
        assert_eq!(NotarisationRequest::from_wire_bytes(&wire).unwrap(), r);
    }

    let file = load("merkle.json");
    assert_eq!(file, merkle_json, "merkle.json differs from the code");
    let count = file["leaves"].as_array().unwrap().len() as u32;
    for v in file["leaves"].as_array().unwrap() {
        let leaf: Leaf = serde_json::from_value(v["leaf"].clone()).unwrap();
        assert_eq!(hex::encode(leaf.canonical_bytes()), v["canonical_bytes"]);
        let proof: notary_types::InclusionProof =
            serde_json::from_value(v["proof"].clone()).unwrap();
        let root = proof.root_for(leaf_hash(&leaf), count).unwrap();
        assert_eq!(root.to_string(), file["root"]);
    }

    let file = load("certificate.json");
    assert_eq!(
        file, certificate_json,
        "certificate.json differs from the code"
    );
    let pk = blsttc::PublicKey::from_hex(file["cluster_public_key"].as_str().unwrap()).unwrap();
    let header: BlockHeader = serde_json::from_value(file["header"].clone()).unwrap();
    assert_eq!(
        hex::encode(header.canonical_bytes()),
        file["header_canonical_bytes"]
    );
    let answer: NotarisationAnswer =
        serde_json::from_value(file["answer_for_request_0"].clone()).unwrap();
    header.verify(&pk, &answer.signature).unwrap();
    let outcome = answer.verify(&pk, &requests()[0].1.fields).unwrap();
    assert_eq!(header.hash().to_string(), file["header_hash"]);
    let chained: NotarisationAnswer =
        serde_json::from_value(file["chained_answer_for_request_0"].clone()).unwrap();
    assert_eq!(chained.signed_header().unwrap().height, Height(43));
    assert_eq!(
        chained.verify(&pk, &requests()[0].1.fields).unwrap(),
        outcome
    );
    assert_eq!(
        serde_json::to_value(outcome).unwrap(),
        file["expected_outcome"]
    );
}
