//! One seed decides everything: [`SimConfig::from_seed`] draws the cluster size, the swarm
//! fault mix and its rates, the Byzantine replicas and their behaviours, the clocks and the
//! workload from a ChaCha stream of the seed. The run then draws every later choice from a
//! second stream of the same seed, so `--seed N` replays a run exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Simulated milliseconds.
pub type Ms = u64;

/// A Byzantine behaviour of one replica (several may be combined).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// As leader, sends two different signed proposals for one round to different halves.
    Equivocate,
    /// Signs and sends a second vote for another block in the same round.
    DoubleVote,
    /// Drops most of its votes and timeouts.
    WithholdVotes,
    /// Corrupts the signature of some of its messages.
    BadSignatures,
    /// Sends invalid BLS shares (garbage or over another header).
    BadShares,
    /// Re-sends old messages it sent or received.
    Replay,
    /// Sends undecodable or mutated message bytes.
    Malformed,
    /// Restarts (often) with its safety record wiped.
    WipeSafety,
    /// As leader of a round entered through a timeout certificate, proposes (signed, with a
    /// valid payload) on a QC older than its own highest one instead, abandoning certified
    /// blocks: either the oldest QC the TC still allows, or one below the TC's highest QC (the
    /// lock violation that vote rules 2 and 3 refuse). Also votes for its fork, not its block.
    ForkOnOldQc,
}

/// Every behaviour, for drawing subsets.
pub const BEHAVIOURS: [Behaviour; 9] = [
    Behaviour::Equivocate,
    Behaviour::DoubleVote,
    Behaviour::WithholdVotes,
    Behaviour::BadSignatures,
    Behaviour::BadShares,
    Behaviour::Replay,
    Behaviour::Malformed,
    Behaviour::WipeSafety,
    Behaviour::ForkOnOldQc,
];

/// The network, disk and process faults of one seed. A rate of 0 turns a fault off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    /// Per-message loss, parts per million.
    pub loss_ppm: u32,
    /// Per-message duplication, ppm.
    pub dup_ppm: u32,
    /// Per-message chance that an old message is re-delivered, ppm.
    pub replay_ppm: u32,
    /// Base one-way delay bounds.
    pub delay_ms_min: Ms,
    /// Base one-way delay upper bound.
    pub delay_ms_max: Ms,
    /// Chance of a long-tail delay (reordering), ppm.
    pub tail_ppm: u32,
    /// Longest long-tail delay.
    pub tail_ms_max: Ms,
    /// Mean time between partitions (0: none).
    pub partition_every_ms: Ms,
    /// Longest partition.
    pub partition_ms_max: Ms,
    /// Partitions may be one-way.
    pub asymmetric: bool,
    /// Mean time between crashes (0: none).
    pub crash_every_ms: Ms,
    /// Longest downtime.
    pub down_ms_max: Ms,
    /// Replicas down at once, at most.
    pub down_max: usize,
    /// Mean time between process pauses (0: none).
    pub pause_every_ms: Ms,
    /// Longest pause (beyond the round timeout).
    pub pause_ms_max: Ms,
    /// Longest lag between commit and apply (the executor queue).
    pub apply_lag_ms_max: Ms,
    /// Mean time between full disks (0: none): every write of one replica's store fails for a
    /// while; the replica halts at its first failed write and is restarted when space is back.
    pub disk_full_every_ms: Ms,
    /// Longest time a disk stays full.
    pub disk_full_ms_max: Ms,
}

/// The workload of one seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Mean time between new transactions.
    pub tx_every_ms: Ms,
    /// Chance that a transaction comes with a rival spending one of its inputs, sent to another
    /// replica at the same instant, ppm.
    pub race_ppm: u32,
    /// Chance of a time window, ppm (some of them expire before the commit).
    pub window_ppm: u32,
    /// Chance of a reference state, ppm.
    pub reference_ppm: u32,
    /// Chance of reusing a tx id with different content, ppm.
    pub reuse_ppm: u32,
    /// A client retries on another replica after this long without an answer.
    pub retry_ms: Ms,
}

/// Everything one run needs, all drawn from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed.
    pub seed: u64,
    /// Replicas (3f + 1).
    pub n: usize,
    /// Real threshold BLS (else the stand-in).
    pub real_crypto: bool,
    /// The fault phase: faults and workload run until this simulated time.
    pub fault_phase_ms: Ms,
    /// After the faults stop, every pending request must be answered and every honest replica
    /// caught up within this bound.
    pub liveness_bound_ms: Ms,
    /// The run lasts at least this long (simulated).
    pub total_ms_min: Ms,
    /// Faults.
    pub faults: FaultMix,
    /// Byzantine replicas (at most f) and their behaviours.
    pub byzantine: Vec<(usize, Vec<Behaviour>)>,
    /// Replicas that run as Twins (two honest copies sharing one key); counted as Byzantine.
    pub twins: Vec<usize>,
    /// Twins control: keep the twins' copies in two fixed halves for the whole fault phase.
    pub twins_split: bool,
    /// Clock offset (ms) and drift (ppm) per replica.
    pub clocks: Vec<(i64, i64)>,
    /// Round timeout base.
    pub round_timeout_ms: Ms,
    /// Workload.
    pub workload: Workload,
}

fn maybe(rng: &mut ChaCha8Rng, p: f64, v: u32) -> u32 {
    if rng.gen_bool(p) {
        v
    } else {
        0
    }
}

impl SimConfig {
    /// Draws the whole configuration from `seed` (swarm testing: each fault is on or off per
    /// seed, with its own rate).
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0001);
        let n = if rng.gen_bool(0.15) { 7 } else { 4 };
        let f = (n - 1) / 3;
        let round_timeout_ms = *[500u64, 1000, 1000, 2000]
            .get(rng.gen_range(0..4))
            .expect("index in range");
        let delay_ms_max = rng.gen_range(2..60);
        let mut faults = FaultMix {
            loss_ppm: {
                let v = rng.gen_range(1_000..150_000);
                maybe(&mut rng, 0.5, v)
            },
            dup_ppm: {
                let v = rng.gen_range(1_000..100_000);
                maybe(&mut rng, 0.4, v)
            },
            replay_ppm: {
                let v = rng.gen_range(1_000..50_000);
                maybe(&mut rng, 0.4, v)
            },
            delay_ms_min: rng.gen_range(0..=delay_ms_max / 2),
            delay_ms_max,
            tail_ppm: {
                let v = rng.gen_range(1_000..100_000);
                maybe(&mut rng, 0.5, v)
            },
            tail_ms_max: rng.gen_range(100..3 * round_timeout_ms),
            partition_every_ms: if rng.gen_bool(0.5) {
                rng.gen_range(5_000..30_000)
            } else {
                0
            },
            partition_ms_max: rng.gen_range(500..15_000),
            asymmetric: rng.gen_bool(0.5),
            crash_every_ms: if rng.gen_bool(0.5) {
                rng.gen_range(3_000..30_000)
            } else {
                0
            },
            down_ms_max: rng.gen_range(100..15_000),
            down_max: if rng.gen_bool(0.2) { n } else { f.max(1) },
            pause_every_ms: if rng.gen_bool(0.4) {
                rng.gen_range(5_000..30_000)
            } else {
                0
            },
            pause_ms_max: rng.gen_range(round_timeout_ms..4 * round_timeout_ms),
            apply_lag_ms_max: rng.gen_range(0..30),
            // Drawn last (below), so that every other field of a seed's configuration is what
            // it was before the disk fault existed.
            disk_full_every_ms: 0,
            disk_full_ms_max: 0,
        };
        let mut byzantine = Vec::new();
        let mut twins = Vec::new();
        let bad = rng.gen_range(0..=f);
        let mut ids: Vec<usize> = (0..n).collect();
        for k in 0..bad {
            let i = rng.gen_range(k..n);
            ids.swap(k, i);
            let r = ids[k];
            if rng.gen_bool(0.3) {
                twins.push(r);
            } else {
                let mut b: Vec<Behaviour> = BEHAVIOURS
                    .iter()
                    .copied()
                    .filter(|_| rng.gen_bool(0.4))
                    .collect();
                if b.is_empty() {
                    b.push(BEHAVIOURS[rng.gen_range(0..BEHAVIOURS.len())]);
                }
                byzantine.push((r, b));
            }
        }
        byzantine.sort();
        twins.sort();
        let skew = if rng.gen_bool(0.5) { 300 } else { 0 };
        let clocks = (0..n)
            .map(|_| {
                (
                    rng.gen_range(-skew..=skew),
                    if rng.gen_bool(0.5) {
                        rng.gen_range(-500..=500)
                    } else {
                        0
                    },
                )
            })
            .collect();
        let workload = Workload {
            tx_every_ms: rng.gen_range(300..3_000),
            race_ppm: rng.gen_range(0..400_000),
            window_ppm: rng.gen_range(0..300_000),
            reference_ppm: rng.gen_range(0..200_000),
            reuse_ppm: {
                let v = rng.gen_range(0..50_000);
                maybe(&mut rng, 0.3, v)
            },
            retry_ms: rng.gen_range(1_000..5_000),
        };
        if rng.gen_bool(0.3) {
            faults.disk_full_every_ms = rng.gen_range(5_000..30_000);
            faults.disk_full_ms_max = rng.gen_range(500..15_000);
        }
        SimConfig {
            seed,
            n,
            real_crypto: seed % 10 == 0,
            fault_phase_ms: 90_000,
            liveness_bound_ms: 60_000,
            total_ms_min: 120_000,
            faults,
            byzantine,
            twins,
            twins_split: false,
            clocks,
            round_timeout_ms,
            workload,
        }
    }

    /// The seed's configuration with a `ForkOnOldQc` replica in it: the adversary that exploits
    /// a missing lock check (the `skip-lock` control). An existing Byzantine replica gains the
    /// behaviour; otherwise twins are dropped and replica `seed mod n` becomes one.
    pub fn with_forking_leader(seed: u64) -> SimConfig {
        let mut c = SimConfig::from_seed(seed);
        if let Some((_, b)) = c.byzantine.first_mut() {
            if !b.contains(&Behaviour::ForkOnOldQc) {
                b.push(Behaviour::ForkOnOldQc);
            }
        } else {
            c.twins.clear();
            c.twins_split = false;
            c.byzantine = vec![((seed % c.n as u64) as usize, vec![Behaviour::ForkOnOldQc])];
        }
        c
    }

    /// The negative control: n = 4 with f + 1 = 2 replicas twinned and the copies split into
    /// two halves that each hold a quorum, for the whole fault phase. Safety must break.
    pub fn twins_control(seed: u64) -> SimConfig {
        let mut c = SimConfig::from_seed(seed);
        c.n = 4;
        c.byzantine.clear();
        c.twins = vec![2, 3];
        c.twins_split = true;
        c.clocks = vec![(0, 0); 4];
        c.faults = FaultMix {
            loss_ppm: 0,
            dup_ppm: 0,
            replay_ppm: 0,
            delay_ms_min: 1,
            delay_ms_max: 10,
            tail_ppm: 0,
            tail_ms_max: 100,
            partition_every_ms: 0,
            partition_ms_max: 1,
            asymmetric: false,
            crash_every_ms: 0,
            down_ms_max: 1,
            down_max: 1,
            pause_every_ms: 0,
            pause_ms_max: 1,
            apply_lag_ms_max: 2,
            disk_full_every_ms: 0,
            disk_full_ms_max: 0,
        };
        c.workload.tx_every_ms = 300;
        c
    }

    /// The largest number of Byzantine replicas tolerated.
    pub fn f(&self) -> usize {
        (self.n - 1) / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_configuration_with_at_most_f_byzantine() {
        for seed in 0..300 {
            let c = SimConfig::from_seed(seed);
            assert_eq!(c, SimConfig::from_seed(seed));
            assert!(c.byzantine.len() + c.twins.len() <= c.f(), "seed {seed}");
            assert_eq!(c.real_crypto, seed % 10 == 0);
            assert!(c.fault_phase_ms + c.liveness_bound_ms >= c.total_ms_min);
        }
    }
}
