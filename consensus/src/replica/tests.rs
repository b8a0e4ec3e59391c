//! Unit tests of the replica's rules, one scenario each, driven by hand-built messages.

use super::*;
use crate::testutil::{keys, Keys};
use crate::types::{Timeout, VoteData};

struct App {
    veto: bool,
    work: bool,
}

impl Application for App {
    fn propose(&mut self, _u: &[&Block], _max: usize) -> Vec<u8> {
        Vec::new()
    }
    fn validate(&mut self, _b: &Block, _u: &[&Block]) -> bool {
        !self.veto
    }
    fn has_pending_work(&self) -> bool {
        self.work
    }
}

fn app() -> App {
    App {
        veto: false,
        work: false,
    }
}

const NOW: TimeMs = TimeMs(1_000_000);

fn replica(k: &Keys, me: u16) -> Replica {
    Replica::new(
        Config::new(ReplicaId(me)),
        k.committee.clone(),
        k.keys[usize::from(me)].clone(),
        Recovery::default(),
    )
    .expect("valid config")
}

fn deliver(r: &mut Replica, from: u16, m: Message, a: &mut App) -> Vec<Action> {
    r.handle(
        NOW,
        Event::Unverified {
            from: ReplicaId(from),
            message: m,
        },
        a,
    )
}

fn persists(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn votes(actions: &[Action]) -> Vec<Vote> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                message: Message::Vote(v),
                ..
            }
            | Action::Broadcast {
                message: Message::Vote(v),
            } => Some(v.clone()),
            _ => None,
        })
        .collect()
}

fn commits(actions: &[Action]) -> Vec<(Block, CommitProof)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Commit { block, proof } => Some((block.clone(), proof.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn vote_is_released_only_after_its_persist() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(b1.clone())), &mut a);
    let seqs = persists(&out);
    assert_eq!(seqs.len(), 1);
    assert!(
        votes(&out).is_empty(),
        "S3: no vote in the persist's own batch"
    );
    let out = r.handle(NOW, Event::Persisted { seq: seqs[0] }, &mut a);
    let v = votes(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].data, VoteData::of(&b1));
    assert!(
        out.iter().any(|x| matches!(
            x,
            Action::Broadcast {
                message: Message::Vote(_)
            }
        )),
        "every replica gets the vote, so each forms the QC itself"
    );
}

#[test]
fn timestamp_rule_refuses_blocks_too_far_ahead_of_our_clock() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let drift = Config::new(ReplicaId(3)).max_clock_drift_ms;
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0 + drift + 1, vec![]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(b1)), &mut a);
    assert!(persists(&out).is_empty());
    assert_eq!(r.stats().clock_drift_refusals, 1);
    let ok = k.child(&Block::genesis(), Round(1), NOW.0 + drift, vec![1]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(ok)), &mut a);
    assert_eq!(persists(&out).len(), 1, "at the bound the vote is allowed");
}

#[test]
fn timestamp_rule_rejects_blocks_not_after_their_parent() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let b1 = k.child(&Block::genesis(), Round(1), 500, vec![]);
    deliver(&mut r, 1, Message::Proposal(k.proposal(b1.clone())), &mut a);
    let b2 = k.child(&b1, Round(2), 500, vec![]);
    let out = deliver(&mut r, 2, Message::Proposal(k.proposal(b2)), &mut a);
    assert!(persists(&out).is_empty());
    assert_eq!(r.stats().rejected.get("timestamp_not_increasing"), Some(&1));
}

#[test]
fn application_veto_withholds_the_vote() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = App {
        veto: true,
        work: false,
    };
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(b1)), &mut a);
    assert!(persists(&out).is_empty());
    assert_eq!(r.stats().vetoed_blocks, 1);
}

#[test]
fn commit_rule_two_chain_with_consecutive_rounds() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let g = Block::genesis();
    let b1 = k.child(&g, Round(1), 10, vec![1]);
    let b3 = k.child(&b1, Round(3), 30, vec![3]); // round jump via a TC of round 2
    let b4 = k.child(&b3, Round(4), 40, vec![4]);
    let b5 = k.child(&b4, Round(5), 50, vec![5]);
    let b6 = k.child(&b5, Round(6), 60, vec![6]);
    let mut all = Vec::new();
    for (from, b) in [(1, &b1), (3, &b3), (0, &b4)] {
        all.extend(commits(&deliver(
            &mut r,
            from,
            Message::Proposal(k.proposal(b.clone())),
            &mut a,
        )));
    }
    // QC on b3 (round 3) has parent round 1: not consecutive, nothing commits.
    assert!(all.is_empty());
    all.extend(commits(&deliver(
        &mut r,
        1,
        Message::Proposal(k.proposal(b5)),
        &mut a,
    )));
    // QC on b4 (round 4) with parent b3 (round 3): b3 commits, and b1 with it.
    let heights: Vec<u64> = all.iter().map(|(b, _)| b.height().0).collect();
    assert_eq!(heights, vec![1, 2]);
    for (b, p) in &all {
        p.verify(&k.committee, b).expect("S4: commit proofs verify");
    }
    assert_eq!(
        all[0].1.headers.len(),
        1,
        "b1 is committed indirectly through b3"
    );
    let more = commits(&deliver(
        &mut r,
        2,
        Message::Proposal(k.proposal(b6)),
        &mut a,
    ));
    assert_eq!(more.len(), 1, "exactly once per block");
    assert_eq!(more[0].0.id(), b4.id());
}

#[test]
fn qc_formation_by_the_next_leader_and_equivocation_detection() {
    let k = keys(4);
    let mut r = replica(&k, 2);
    let mut a = app();
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    deliver(&mut r, 1, Message::Proposal(k.proposal(b1.clone())), &mut a);
    let data = VoteData::of(&b1);
    let vote = |i: usize, d: VoteData| {
        use ed25519_dalek::Signer;
        Vote {
            data: d,
            voter: ReplicaId(i as u16),
            signature: crate::Sig::from(k.keys[i].sign(&d.signing_bytes())),
        }
    };
    deliver(&mut r, 0, Message::Vote(vote(0, data)), &mut a);
    assert_eq!(r.round(), Round(1));
    let mut other = data;
    other.block_id = crate::Digest([9; 32]);
    deliver(&mut r, 0, Message::Vote(vote(0, other)), &mut a);
    assert_eq!(r.stats().equivocations.get(&ReplicaId(0)), Some(&1));
    deliver(&mut r, 1, Message::Vote(vote(1, data)), &mut a);
    deliver(&mut r, 3, Message::Vote(vote(3, data)), &mut a);
    assert_eq!(
        r.round(),
        Round(2),
        "2f + 1 votes form a QC and move to the next round"
    );
    assert_eq!(r.stats().high_qc_round, Round(1));
}

fn timeout(k: &Keys, i: usize, round: Round) -> Message {
    use ed25519_dalek::Signer;
    let qc = QuorumCert::genesis();
    let sig = k.keys[i].sign(&crate::types::timeout_signing_bytes(round, qc.round()));
    Message::Timeout(TimeoutMsg {
        timeout: Timeout {
            round,
            high_qc: qc,
            author: ReplicaId(i as u16),
            signature: crate::Sig::from(sig),
        },
        high_tc: None,
    })
}

#[test]
fn tc_formation_and_joining_after_f_plus_1_timeouts() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    deliver(&mut r, 0, timeout(&k, 0, Round(1)), &mut a);
    assert_eq!(r.stats().local_timeouts, 0);
    let out = deliver(&mut r, 1, timeout(&k, 1, Round(1)), &mut a);
    assert_eq!(r.stats().local_timeouts, 1, "f + 1 timeouts: join");
    let seq = persists(&out)[0];
    let out = r.handle(NOW, Event::Persisted { seq }, &mut a);
    assert!(out.iter().any(|x| matches!(
        x,
        Action::Broadcast {
            message: Message::Timeout(_)
        }
    )));
    assert_eq!(r.round(), Round(2), "our own timeout completed the TC");
    assert_eq!(r.stats().round_changes_tc, 1);
}

#[test]
fn idle_replica_sets_no_round_timer() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let out = r.handle(NOW, Event::Tick, &mut app());
    assert!(!out.iter().any(|x| matches!(x, Action::SetTimer { .. })));
    let mut busy = App {
        veto: false,
        work: true,
    };
    let out = r.handle(NOW, Event::PayloadReady, &mut busy);
    let timeout_ms = Config::new(ReplicaId(3)).round_timeout_ms;
    assert!(out.contains(&Action::SetTimer {
        deadline: NOW.plus_ms(timeout_ms)
    }));
    let out = r.handle(NOW.plus_ms(timeout_ms), Event::TimerFired, &mut busy);
    assert_eq!(
        persists(&out).len(),
        1,
        "work pending and the timer expired: time out"
    );
}

#[test]
fn restarted_replica_repeats_its_vote_and_refuses_a_conflicting_one() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(b1.clone())), &mut a);
    let record = match &out[0] {
        Action::Persist { record, .. } => record.clone(),
        other => panic!("expected persist, got {other:?}"),
    };
    let mut again = Replica::new(
        Config::new(ReplicaId(3)),
        k.committee.clone(),
        k.keys[3].clone(),
        Recovery {
            safety: Some(record),
            committed: None,
            history: Vec::new(),
        },
    )
    .expect("valid");
    let out = deliver(
        &mut again,
        1,
        Message::Proposal(k.proposal(b1.clone())),
        &mut a,
    );
    assert!(persists(&out).is_empty(), "a repeat needs no new persist");
    assert_eq!(votes(&out).len(), 1);
    let conflicting = k.child(&Block::genesis(), Round(1), NOW.0, vec![2]);
    let out = deliver(
        &mut again,
        1,
        Message::Proposal(k.proposal(conflicting)),
        &mut a,
    );
    assert!(votes(&out).is_empty() && persists(&out).is_empty());
}

#[test]
fn limit_round_ahead_max() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    deliver(
        &mut r,
        0,
        timeout(&k, 0, Round(1 + ROUND_AHEAD_MAX)),
        &mut a,
    );
    assert_eq!(
        r.stats().rejected.get("far_future"),
        None,
        "at the bound: kept"
    );
    deliver(
        &mut r,
        0,
        timeout(&k, 0, Round(2 + ROUND_AHEAD_MAX)),
        &mut a,
    );
    assert_eq!(r.stats().rejected.get("far_future"), Some(&1));
}

#[test]
fn limit_buffered_blocks_max() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    // Orphans: children of blocks we do not have, each with a valid QC on its unknown parent.
    for i in 0..=BUFFERED_BLOCKS_MAX {
        let mut fake_parent = k.child(&Block::genesis(), Round(1), 1, vec![]);
        fake_parent.payload = (i as u32).to_le_bytes().to_vec();
        fake_parent.header.payload_digest = payload_digest(&fake_parent.payload);
        fake_parent.header.payload_len = 4;
        let orphan = k.child(&fake_parent, Round(2), 2, vec![]);
        deliver(&mut r, 2, Message::Proposal(k.proposal(orphan)), &mut a);
    }
    assert_eq!(r.buffered.len(), BUFFERED_BLOCKS_MAX);
    assert_eq!(r.stats().rejected.get("buffer_full"), Some(&1));
    // Each orphan named a missing parent; we chase at most MISSING_BLOCKS_MAX of them.
    assert_eq!(r.missing.len(), MISSING_BLOCKS_MAX);
}

#[test]
fn limit_unknown_sender_messages_max() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let b1 = k.child(&Block::genesis(), Round(1), NOW.0, vec![]);
    deliver(&mut r, 9, Message::Proposal(k.proposal(b1)), &mut app());
    assert_eq!(r.stats().rejected.get("unknown_replica"), Some(&1));
    assert_eq!(r.buffered.len(), crate::limits::UNKNOWN_SENDER_MESSAGES_MAX);
    assert!(r.tree.get(&Block::genesis().id()).is_some());
}

#[test]
fn sync_request_is_served_from_the_store_with_a_clamped_count() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let req = SyncRequest {
        from: Height(0),
        count: 10_000,
    };
    let out = deliver(&mut r, 1, Message::SyncRequest(req), &mut app());
    assert_eq!(
        out,
        vec![Action::ServeSync {
            to: ReplicaId(1),
            request: SyncRequest {
                from: Height(0),
                count: SYNC_BLOCKS_MAX as u32
            }
        }]
    );
}

#[test]
fn config_validation_bounds() {
    let k = keys(4);
    let mut c = Config::new(ReplicaId(4));
    assert_eq!(
        c.validate(&k.committee),
        Err(ConfigError::NotMember(ReplicaId(4)))
    );
    c.me = ReplicaId(0);
    c.payload_bytes_max = PAYLOAD_BYTES_MAX;
    assert!(c.validate(&k.committee).is_ok());
    c.payload_bytes_max = PAYLOAD_BYTES_MAX + 1;
    assert!(matches!(
        c.validate(&k.committee),
        Err(ConfigError::PayloadTooLarge { .. })
    ));
}

#[test]
fn leader_equivocation_is_detected_and_gets_one_vote() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let first = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    let second = k.child(&Block::genesis(), Round(1), NOW.0, vec![2]);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(first)), &mut a);
    assert_eq!(persists(&out).len(), 1);
    let out = deliver(&mut r, 1, Message::Proposal(k.proposal(second)), &mut a);
    assert!(persists(&out).is_empty() && votes(&out).is_empty());
    assert_eq!(r.stats().equivocations.get(&ReplicaId(1)), Some(&1));
}

#[test]
fn limit_awaiting_persist_max() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let mut parent = Block::genesis();
    // The driver never confirms a persist: votes pile up, bounded.
    for round in 1..=(AWAITING_PERSIST_MAX as u64 + 1) {
        let mut b = k.child(&parent, Round(round), NOW.0 + round, vec![]);
        // Past the first rounds the leader follows reputation (`reputation.rs`).
        b.header.author = r.leader(Round(round)).leader;
        deliver(&mut r, 0, Message::Proposal(k.proposal(b.clone())), &mut a);
        parent = b;
    }
    assert_eq!(r.held.len(), AWAITING_PERSIST_MAX);
    assert_eq!(r.stats().rejected.get("buffer_full"), Some(&1));
}

#[test]
fn proposal_from_a_replica_that_does_not_lead_is_rejected() {
    let k = keys(4);
    let mut r = replica(&k, 3);
    let mut a = app();
    let mut b = k.child(&Block::genesis(), Round(1), NOW.0, vec![1]);
    assert_eq!(r.leader(Round(1)).leader, ReplicaId(1));
    b.header.author = ReplicaId(2);
    let out = deliver(&mut r, 2, Message::Proposal(k.proposal(b)), &mut a);
    assert!(persists(&out).is_empty() && votes(&out).is_empty());
    assert_eq!(r.stats().rejected.get("not_leader"), Some(&1));
}
