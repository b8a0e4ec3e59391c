//! The offline mode over temporary directories, n = 4: rounds of files, then keys.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use notary_dkg::offline::{self, Dirs};
use notary_dkg::{verify_transcript, OfflineError, ParticipantIndex, Transcript};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn copy_outboxes(dirs: &[Dirs]) {
    for from in dirs {
        for e in fs::read_dir(&from.outbox).expect("outbox") {
            let path = e.expect("entry").path();
            for to in dirs {
                fs::copy(&path, to.inbox.join(path.file_name().expect("name"))).expect("copy");
            }
        }
    }
}

#[test]
fn offline_rounds_over_files_n4() {
    let (config, keys) = common::setup(4, 1, 31);
    let tmp = tempdir();
    let dirs: Vec<Dirs> = (0..4)
        .map(|i| {
            let d = Dirs {
                state: tmp.join(format!("p{i}/state")),
                inbox: tmp.join(format!("p{i}/inbox")),
                outbox: tmp.join(format!("p{i}/outbox")),
            };
            for p in [&d.state, &d.inbox, &d.outbox] {
                fs::create_dir_all(p).expect("mkdir");
            }
            d
        })
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    for (i, d) in dirs.iter().enumerate() {
        let r = offline::init(
            d,
            config.clone(),
            ParticipantIndex(i as u16),
            keys[i].clone(),
            &mut rng,
        )
        .expect("init");
        assert_eq!(r.wrote.len(), 1);
        assert_eq!(
            r.needs.len(),
            3,
            "waits for the three others' round-1 files"
        );
        let mode = fs::metadata(d.state.join(offline::STATE_FILE))
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Before any exchange, nothing can advance and the report names the missing files.
    let r = offline::run_round(&dirs[0], &keys[0], false, &mut rng).expect("run");
    assert!(r.wrote.is_empty());
    assert_eq!(
        r.needs,
        vec![
            "dkg-round-1-from-1.json",
            "dkg-round-1-from-2.json",
            "dkg-round-1-from-3.json"
        ]
    );

    for _round in 0..4 {
        copy_outboxes(&dirs);
        for (i, d) in dirs.iter().enumerate() {
            let r = offline::run_round(d, &keys[i], false, &mut rng).expect("run");
            assert!(r.rejected.is_empty(), "{:?}", r.rejected);
            assert!(!r.wrote.is_empty(), "participant {i} advanced");
        }
    }
    let mut pks = None;
    for (i, d) in dirs.iter().enumerate() {
        let r = offline::run_round(d, &keys[i], false, &mut rng).expect("run");
        assert!(r.done);
        let file = offline::read_key_share(&d.state).expect("key share");
        let mode = fs::metadata(d.state.join(offline::KEY_SHARE_FILE))
            .expect("share")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (share, set) = file.decode().expect("decodes");
        assert_eq!(share.public_key_share(), set.public_key_share(i));
        let json = fs::read_to_string(
            d.outbox
                .join(offline::transcript_file_name(ParticipantIndex(i as u16))),
        )
        .expect("transcript");
        let v = verify_transcript(
            &Transcript::from_json(&json).expect("parses"),
            &config.participants,
        )
        .expect("verifies");
        assert_eq!(v.public_key_set, set);
        pks.get_or_insert(set.clone());
        assert_eq!(pks.as_ref(), Some(&set), "all agree");
    }
    fs::remove_dir_all(&tmp).expect("cleanup");
}

#[test]
fn offline_deadline_closes_a_round_without_the_silent_participant() {
    let (config, keys) = common::setup(4, 1, 32);
    let tmp = tempdir();
    let d = Dirs {
        state: tmp.join("state"),
        inbox: tmp.join("inbox"),
        outbox: tmp.join("outbox"),
    };
    for p in [&d.state, &d.inbox, &d.outbox] {
        fs::create_dir_all(p).expect("mkdir");
    }
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    offline::init(&d, config, ParticipantIndex(0), keys[0].clone(), &mut rng).expect("init");
    let r = offline::run_round(&d, &keys[0], true, &mut rng).expect("deadline");
    assert_eq!(r.wrote.len(), 1, "round 2 file written at the deadline");
    assert_eq!(
        r.faults.len(),
        3,
        "the three absent participants are named silent: {:?}",
        r.faults
    );
    fs::remove_dir_all(&tmp).expect("cleanup");
}

#[test]
fn state_readable_by_others_is_refused() {
    let (config, keys) = common::setup(4, 1, 33);
    let tmp = tempdir();
    let d = Dirs {
        state: tmp.clone(),
        inbox: tmp.clone(),
        outbox: tmp.clone(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    offline::init(
        &d,
        config.clone(),
        ParticipantIndex(0),
        keys[0].clone(),
        &mut rng,
    )
    .expect("init");
    let state = tmp.join(offline::STATE_FILE);
    fs::set_permissions(&state, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        offline::run_round(&d, &keys[0], false, &mut rng),
        Err(OfflineError::StateNotPrivate { mode: 0o644, .. })
    ));
    assert!(matches!(
        offline::init(&d, config, ParticipantIndex(0), keys[0].clone(), &mut rng),
        Err(OfflineError::StateExists { .. })
    ));
    fs::remove_dir_all(&tmp).expect("cleanup");
}

fn tempdir() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "notary-dkg-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::create_dir_all(&p).expect("tempdir");
    p
}
