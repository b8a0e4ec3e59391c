//! Cluster scenarios on the deterministic harness. Every scenario checks, on every action,
//! agreement (S1), one vote per round across restarts (S2), persist before send (S3), contiguous
//! commits with verifying proofs (S4) and increasing timestamps (S5).

mod harness;

use harness::{Sim, SimConfig};

const SEEDS: u64 = 8;

#[test]
fn fault_free_cluster_commits_everything_with_zero_timeouts() {
    for n in [4, 7] {
        for seed in 0..SEEDS {
            let mut sim = Sim::new(SimConfig::new(n, seed));
            sim.load(200, 3_000);
            sim.run_until(6_000);
            for i in 0..n {
                assert!(sim.all_committed(i), "n={n} seed={seed} node {i}");
            }
            assert_eq!(
                sim.timeouts(),
                0,
                "n={n} seed={seed}: L2 no spurious timeouts"
            );
        }
    }
}

#[test]
fn idle_cluster_never_times_out_and_stops_proposing() {
    for seed in 0..SEEDS {
        let mut sim = Sim::new(SimConfig::new(4, seed));
        sim.run_until(30_000);
        assert_eq!(sim.timeouts(), 0);
        assert_eq!(sim.committed_height(0), 0, "nothing to commit while idle");
        sim.inject(10);
        sim.run_until(31_000);
        let height = sim.committed_height(0);
        assert!(sim.all_committed(0));
        sim.run_until(90_000);
        assert_eq!(
            sim.committed_height(0),
            height,
            "no heartbeat blocks while idle"
        );
        sim.inject(10);
        sim.run_until(120_000);
        for i in 0..4 {
            assert!(sim.all_committed(i));
        }
        assert_eq!(sim.timeouts(), 0, "seed={seed}");
    }
}

#[test]
fn votes_overtaking_proposals_cause_no_timeout() {
    for seed in 0..SEEDS {
        let mut cfg = SimConfig::new(4, seed);
        cfg.delay_ms_max = 5;
        cfg.proposal_extra_delay_ms = 30;
        let mut sim = Sim::new(cfg);
        sim.load(300, 3_000);
        sim.run_until(5_000);
        for i in 0..4 {
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
        assert_eq!(sim.timeouts(), 0, "seed={seed}");
    }
}

#[test]
fn progress_with_f_silent_replicas() {
    for (n, silent) in [(4usize, vec![3usize]), (7, vec![2, 5])] {
        for seed in 0..4 {
            let mut sim = Sim::new(SimConfig::new(n, seed));
            for &s in &silent {
                sim.crash(s);
            }
            sim.load(100, 5_000);
            sim.run_until(40_000);
            for i in (0..n).filter(|i| !silent.contains(i)) {
                assert!(sim.all_committed(i), "n={n} seed={seed} node {i}");
            }
        }
    }
}

#[test]
fn crashed_leader_is_replaced_by_timeout_certificates() {
    for seed in 0..4 {
        let mut sim = Sim::new(SimConfig::new(4, seed));
        sim.load(100, 1_000);
        let leader = sim.nodes[0]
            .replica
            .as_ref()
            .map(|r| r.stats().leader.0 as usize)
            .unwrap_or(1);
        sim.crash(leader);
        sim.load(100, 4_000);
        sim.run_until(40_000);
        for i in (0..4).filter(|i| *i != leader) {
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
        assert!(sim.timeouts() > 0, "a crashed leader must be timed out");
    }
}

#[test]
fn healed_partition_resumes_and_agrees() {
    for seed in 0..4 {
        let mut sim = Sim::new(SimConfig::new(4, seed));
        sim.load(100, 1_000);
        sim.partition(&[0, 1], &[2, 3]);
        sim.load(100, 4_000);
        sim.heal();
        sim.load(100, 6_000);
        sim.run_until(60_000);
        for i in 0..4 {
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
    }
}

#[test]
fn restart_from_persisted_record_never_double_votes() {
    for seed in 0..SEEDS {
        let mut cfg = SimConfig::new(4, seed);
        cfg.fsync_ms = 5;
        let mut sim = Sim::new(cfg);
        for k in 0..12u64 {
            let victim = (seed as usize + k as usize) % 4;
            sim.load(100, 500 * k + 250);
            sim.crash(victim);
            sim.load(100, 500 * k + 500);
            sim.start(victim);
        }
        sim.run_until(60_000);
        for i in 0..4 {
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
    }
}

#[test]
fn lagging_replica_catches_up_by_sync() {
    for seed in 0..4 {
        let mut cfg = SimConfig::new(4, seed);
        cfg.batch_max = 4;
        let mut sim = Sim::new(cfg);
        sim.partition(&[3], &[0, 1, 2]);
        sim.load(50, 20_000);
        sim.run_until(21_000);
        assert!(
            sim.committed_height(0) > 5,
            "height {}",
            sim.committed_height(0)
        );
        assert_eq!(sim.committed_height(3), 0);
        sim.heal();
        sim.inject(5);
        sim.run_until(60_000);
        assert!(sim.all_committed(0), "seed={seed}");
        assert!(sim.all_committed(3), "seed={seed}");
        let synced = sim.nodes[3]
            .replica
            .as_ref()
            .map_or(0, |r| r.stats().blocks_synced);
        assert!(synced > 0, "seed={seed}: the laggard used sync");
    }
}

#[test]
fn lossy_network_still_commits_everything() {
    for seed in 0..4 {
        let mut cfg = SimConfig::new(4, seed);
        cfg.loss_ppm = 20_000;
        let mut sim = Sim::new(cfg);
        sim.load(100, 3_000);
        sim.run_until(120_000);
        for i in 0..4 {
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
    }
}

/// Random crashes, restarts, partitions and loss (at most f replicas down at a time), then a
/// calm period: agreement holds throughout and everything commits in the end.
#[test]
fn random_faults_keep_agreement_and_recover() {
    use rand::{Rng, SeedableRng};
    // CHAOS_SEEDS=N runs more seeds (the default keeps `cargo test` quick).
    let seeds: u64 = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for seed in 0..seeds {
        let n = if seed % 3 == 0 { 7 } else { 4 };
        let f = (n - 1) / 3;
        let mut cfg = SimConfig::new(n, seed);
        cfg.loss_ppm = 10_000;
        cfg.fsync_ms = 1 + seed % 5;
        let mut sim = Sim::new(cfg);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xfa17);
        for k in 1..=20u64 {
            sim.load(50, k * 500);
            let down: Vec<usize> = (0..n).filter(|i| !sim.is_up(*i)).collect();
            match rng.gen_range(0..4) {
                0 if down.len() < f => sim.crash(rng.gen_range(0..n)),
                1 if !down.is_empty() => sim.start(down[rng.gen_range(0..down.len())]),
                2 => {
                    let cut = rng.gen_range(1..n);
                    let a: Vec<usize> = (0..cut).collect();
                    let b: Vec<usize> = (cut..n).collect();
                    sim.heal();
                    sim.partition(&a, &b);
                }
                _ => sim.heal(),
            }
        }
        sim.heal();
        for i in 0..n {
            if !sim.is_up(i) {
                sim.start(i);
            }
        }
        sim.inject(5);
        sim.run_until(200_000);
        for i in 0..n {
            if !sim.all_committed(i) {
                for j in 0..n {
                    let r = sim.nodes[j].replica.as_ref().expect("all up");
                    eprintln!(
                        "node {j} h={} {:?} durable={:?}",
                        sim.committed_height(j),
                        r.stats(),
                        sim.nodes[j].durable.as_ref().map(|d| (
                            d.last_voted_round,
                            d.high_qc.round(),
                            d.high_tc.as_ref().map(|t| t.round),
                            d.blocks.len()
                        ))
                    );
                }
            }
            assert!(sim.all_committed(i), "seed={seed} node {i}");
        }
    }
}

/// Runs a cluster of `n` with replica `crashed` down from the start under a steady 20 items/s,
/// and returns (round timeouts summed over live replicas, blocks committed at a live replica),
/// both counted from the end of a 10 s warm-up to the end of the run.
fn crashed_replica_timeouts(n: usize, crashed: usize, seed: u64) -> (u64, u64) {
    let (warmup_ms, end_ms) = (10_000, 25_000);
    let mut sim = Sim::new(SimConfig::new(n, seed));
    sim.crash(crashed);
    sim.load(20, warmup_ms);
    let live = (crashed + 1) % n;
    let (t0, h0) = (sim.timeouts(), sim.committed_height(live));
    sim.load(20, end_ms);
    sim.run_until(end_ms + 30_000);
    for i in (0..n).filter(|i| *i != crashed) {
        assert!(sim.all_committed(i), "n={n} seed={seed} node {i}");
    }
    (sim.timeouts() - t0, sim.committed_height(live) - h0)
}

/// Leader reputation: a crashed replica stops being chosen as leader, so after the warm-up the
/// cluster runs without round timeouts. Round-robin measured 2 timed-out rounds in every
/// rotation here (the crashed leader's, and the round before, whose votes go to it): about 296
/// local timeouts per 100 blocks at n = 4 and 243 at n = 7.
#[test]
fn crashed_replica_costs_no_timeouts_after_warm_up() {
    for n in [4usize, 7] {
        let (mut timeouts, mut blocks) = (0, 0);
        for seed in 0..2 {
            for crashed in [1usize, n - 1] {
                let (t, b) = crashed_replica_timeouts(n, crashed, seed);
                timeouts += t;
                blocks += b;
            }
        }
        let per_100 = timeouts as f64 * 100.0 / blocks.max(1) as f64;
        eprintln!(
            "n={n}: {timeouts} timeouts over {blocks} committed blocks = {per_100:.2} per 100 blocks"
        );
        assert!(blocks > 1_000, "n={n}: only {blocks} blocks");
        assert!(
            per_100 <= 0.5,
            "n={n}: {per_100:.2} timeouts per 100 blocks after warm-up (bound 0.5)"
        );
    }
}
