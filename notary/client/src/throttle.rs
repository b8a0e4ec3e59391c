//! Client-side adaptive throttling: when a replica has been answering `overloaded`, send
//! it only a little more than it has been accepting, and refuse the rest here, without a
//! network round trip.
//!
//! A refusal is never free for the cluster: a replica still parses the HTTP/2 stream, routes
//! it and writes an error, and on one shared machine the client's own cost of sending and
//! reading it comes out of the same cores. Offered twice its capacity by clients that send
//! everything regardless, a cluster spends much of its CPU saying no. So the client keeps,
//! for each replica, the requests it asked of it and the ones the replica accepted (any
//! answer but `overloaded`) over the last [`WINDOW`], and refuses a new request locally with
//! probability
//!
//! ```text
//! p = max(0, (requests − K × accepts) / (requests + 1))
//! ```
//!
//! the rule of Google's SRE book ("Handling Overload", client-side throttling). Without
//! overload `accepts = requests` and nothing is refused. Offered more than the replica takes,
//! the client sends about `K ×` what it accepts, so the replica still sees a little more
//! than it can do (and keeps saying how much that is), and the rest is refused here.
//!
//! **Recovery.** With one `K`, a client that sends less than the replica would take (after a
//! burst of refusals, when the replica's admission limit has just fallen) can only raise what
//! it sends by `K` per window: 10 % a second at the default. Measured at 6,000/s offered, past
//! the cluster's capacity, that made an 11-second sawtooth: a burst of `overloaded`, then
//! seconds of the client sending half of what the cluster could do (BENCHMARKS.md). So `K`
//! itself adapts to what the replica says: while it refuses little of what it is sent (under
//! [`RECOVERY_BELOW`] of the answers in the window), the client may send up to
//! [`RECOVERY_K`] times what it accepts, falling linearly to `K` as the share refused reaches
//! that mark. A replica that keeps refusing still gets about `K ×` what it accepts (its
//! share refused is then `1 − 1/K`, above the mark); one that has stopped refusing is sent
//! what the clients offer again within about a window.
//!
//! Both counts are taken when an outcome is known (a local refusal counts as a request at
//! once), so that the requests still in flight at the start of a burst do not look like
//! refusals. The choice is deterministic: each request adds `p` to a debt, and a request is
//! refused whenever the debt reaches one, so that exactly a share `p` is refused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which requests and accepts are counted.
pub const WINDOW: Duration = Duration::from_secs(1);

/// The window is kept as this many buckets, so that it slides in steps of a tenth.
const BUCKETS: usize = 10;

/// The default multiplier `K`: send up to 10 % more than the replica accepts.
pub const DEFAULT_K: f64 = 1.1;

/// The multiplier while the replica refuses (almost) nothing of what it is sent: how fast a
/// throttled client sends more again once the replica has room.
pub const RECOVERY_K: f64 = 2.0;

/// The share of answers refused (`overloaded`) in the window at and above which the
/// multiplier is `K`; below it, it rises linearly to [`RECOVERY_K`] at none refused.
pub const RECOVERY_BELOW: f64 = 0.05;

#[derive(Default, Clone, Copy)]
struct Bucket {
    /// Requests asked of the replica: sent and answered, or refused here.
    requests: u64,
    /// Requests the replica accepted (any answer but `overloaded`).
    accepts: u64,
    /// Requests the replica refused (`overloaded`).
    refusals: u64,
}

struct Counts {
    buckets: [Bucket; BUCKETS],
    /// The bucket being filled, and when it began.
    current: usize,
    current_start: Instant,
    debt: f64,
}

impl Counts {
    fn advance(&mut self, now: Instant) {
        let step = WINDOW / BUCKETS as u32;
        let mut passed = now.saturating_duration_since(self.current_start);
        let mut cleared = 0;
        while passed >= step && cleared < BUCKETS {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = Bucket::default();
            self.current_start += step;
            passed -= step;
            cleared += 1;
        }
        if cleared == BUCKETS {
            // Idle for a whole window: start the buckets again from now.
            self.current_start = now;
        }
    }

    fn totals(&self) -> Totals {
        self.buckets.iter().fold(Totals::default(), |t, b| Totals {
            requests: t.requests + b.requests,
            accepts: t.accepts + b.accepts,
            refusals: t.refusals + b.refusals,
        })
    }
}

#[derive(Default)]
struct Totals {
    requests: u64,
    accepts: u64,
    refusals: u64,
}

impl Totals {
    /// The share of new requests to refuse locally, with multiplier `k` (see the module doc).
    fn refuse_share(&self, k: f64) -> f64 {
        let answered = self.accepts + self.refusals;
        let refused = if answered == 0 {
            0.0
        } else {
            self.refusals as f64 / answered as f64
        };
        let up = RECOVERY_K.max(k);
        let k = k + (up - k) * (1.0 - refused / RECOVERY_BELOW).max(0.0);
        ((self.requests as f64 - k * self.accepts as f64) / (self.requests as f64 + 1.0)).max(0.0)
    }
}

/// Adaptive throttling state for the replicas of one cluster, by replica index.
pub struct Throttle {
    k: f64,
    replicas: Vec<Mutex<Counts>>,
}

/// What a replica's window shows, for messages and reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Requests asked of the replica in the window (local refusals included).
    pub requests: u64,
    /// Requests it accepted.
    pub accepts: u64,
    /// The share of new requests refused locally now.
    pub refuse_share: f64,
}

impl Throttle {
    /// Throttling for `replicas` replicas with multiplier `k` (at least 1; see [`DEFAULT_K`]).
    pub fn new(replicas: usize, k: f64, now: Instant) -> Self {
        Self {
            k: if k.is_finite() { k.max(1.0) } else { DEFAULT_K },
            replicas: (0..replicas)
                .map(|_| {
                    Mutex::new(Counts {
                        buckets: [Bucket::default(); BUCKETS],
                        current: 0,
                        current_start: now,
                        debt: 0.0,
                    })
                })
                .collect(),
        }
    }

    fn lock(&self, replica: usize) -> Option<std::sync::MutexGuard<'_, Counts>> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        self.replicas
            .get(replica)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether to send a request to `replica` now (`true`), or refuse it locally (`false`,
    /// counted as a request that was not accepted).
    pub fn allow(&self, replica: usize, now: Instant) -> bool {
        let Some(mut c) = self.lock(replica) else {
            return true;
        };
        c.advance(now);
        let p = c.totals().refuse_share(self.k);
        if p <= 0.0 {
            c.debt = 0.0;
            return true;
        }
        c.debt += p;
        if c.debt >= 1.0 {
            c.debt -= 1.0;
            let cur = c.current;
            c.buckets[cur].requests += 1;
            return false;
        }
        true
    }

    /// Records the outcome of a request that was sent: `accepted` unless the replica
    /// answered `overloaded`.
    pub fn record(&self, replica: usize, accepted: bool, now: Instant) {
        if let Some(mut c) = self.lock(replica) {
            c.advance(now);
            let cur = c.current;
            c.buckets[cur].requests += 1;
            if accepted {
                c.buckets[cur].accepts += 1;
            } else {
                c.buckets[cur].refusals += 1;
            }
        }
    }

    /// The window of `replica` now.
    pub fn window(&self, replica: usize, now: Instant) -> Option<Window> {
        let mut c = self.lock(replica)?;
        c.advance(now);
        let t = c.totals();
        Some(Window {
            requests: t.requests,
            accepts: t.accepts,
            refuse_share: t.refuse_share(self.k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_replica_that_accepts_everything_is_never_throttled() {
        let t0 = Instant::now();
        let t = Throttle::new(2, DEFAULT_K, t0);
        for i in 0..5_000u32 {
            let now = t0 + i * MS / 2;
            assert!(t.allow(0, now));
            t.record(0, true, now);
        }
        let w = t.window(0, t0 + 2_500 * MS).unwrap();
        assert_eq!(w.refuse_share, 0.0);
        assert!(w.requests > 0 && w.requests == w.accepts);
    }

    /// Offered 2,000/s against a replica that accepts 1,000/s: the client settles on
    /// sending about K × 1,000/s and refuses the rest itself.
    #[test]
    fn offered_twice_what_it_accepts_the_client_sends_about_k_times_that() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        let (mut sent, mut refused_here) = (0u64, 0u64);
        let mut taken_this_ms = 0u32;
        let mut this_ms = 0u32;
        // 2 requests a millisecond for 5 s; the replica takes the first of each millisecond.
        for i in 0..10_000u32 {
            let now = t0 + (i / 2) * MS;
            if i / 2 != this_ms {
                this_ms = i / 2;
                taken_this_ms = 0;
            }
            let counted = now >= t0 + 3_000 * MS;
            if !t.allow(0, now) {
                refused_here += u64::from(counted);
                continue;
            }
            sent += u64::from(counted);
            let accepted = taken_this_ms == 0;
            taken_this_ms += u32::from(accepted);
            t.record(0, accepted, now);
        }
        // Over the last 2 s: 4,000 offered, about 1.1 × 2,000 sent.
        assert_eq!(sent + refused_here, 4_000);
        assert!(
            (2_000..=2_500).contains(&sent),
            "sent {sent}, refused locally {refused_here}"
        );
    }

    #[test]
    fn throttling_ends_when_the_replica_recovers() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        for i in 0..1_000u32 {
            t.record(0, false, t0 + i * MS / 2);
        }
        let w = t.window(0, t0 + 500 * MS).unwrap();
        assert!(w.refuse_share > 0.9, "{w:?}");
        // A window later, with the replica accepting again, nothing is refused.
        let later = t0 + 1_600 * MS;
        assert!(t.allow(0, later));
        t.record(0, true, later);
        assert_eq!(t.window(0, later).unwrap().refuse_share, 0.0);
    }

    /// The sawtooth this rule replaced: after a burst of refusals, a replica that takes
    /// everything again is sent the whole offered load within about a window, not at 10 %
    /// more a second.
    #[test]
    fn a_replica_that_stops_refusing_gets_the_whole_load_back_within_a_window() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        let mut taken_this_ms = (u32::MAX, 0u32);
        let (mut offered, mut sent) = (0u64, 0u64);
        // 2 requests a millisecond for 4 s. For 2 s the replica takes one a millisecond
        // (the client settles on about 1.1 a millisecond), then it takes everything.
        for i in 0..16_000u32 {
            let ms = i / 2;
            let now = t0 + ms * MS;
            let counted = (3_000..3_500).contains(&ms);
            offered += u64::from(counted);
            if !t.allow(0, now) {
                continue;
            }
            sent += u64::from(counted);
            if taken_this_ms.0 != ms {
                taken_this_ms = (ms, 0);
            }
            let accepted = ms >= 2_000 || taken_this_ms.1 == 0;
            taken_this_ms.1 += 1;
            t.record(0, accepted, now);
        }
        // Half a second, a window after the replica recovered: (almost) all of it is sent.
        assert_eq!(offered, 1_000);
        assert!(sent >= 950, "sent {sent} of {offered}");
    }

    /// Offered twice what the replica takes, for longer, the client still sends it about
    /// `K ×` that (not `RECOVERY_K ×`): the replica keeps refusing more than the mark.
    #[test]
    fn steady_overload_is_throttled_with_k_not_the_recovery_multiplier() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        let (mut sent, mut taken) = (0u64, 0u64);
        let mut taken_this_ms = (u32::MAX, 0u32);
        for i in 0..20_000u32 {
            let ms = i / 2;
            let now = t0 + ms * MS;
            if !t.allow(0, now) {
                continue;
            }
            let counted = ms >= 5_000;
            sent += u64::from(counted);
            if taken_this_ms.0 != ms {
                taken_this_ms = (ms, 0);
            }
            let accepted = taken_this_ms.1 == 0;
            taken_this_ms.1 += 1;
            taken += u64::from(counted && accepted);
            t.record(0, accepted, now);
        }
        // Over the last 5 s: 10,000 offered, 5,000 takeable.
        let ratio = sent as f64 / taken as f64;
        assert!((1.0..1.3).contains(&ratio), "sent {sent}, taken {taken}");
    }

    #[test]
    fn the_window_slides_a_bucket_at_a_time() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        // 500 refusals in the first bucket, 500 acceptances half a window later.
        for i in 0..500u32 {
            t.record(0, false, t0 + i * MS / 10);
        }
        for i in 0..500u32 {
            t.record(0, true, t0 + 500 * MS + i * MS / 10);
        }
        let w = t.window(0, t0 + 950 * MS).unwrap();
        assert_eq!((w.requests, w.accepts), (1_000, 500));
        assert!((w.refuse_share - 0.45).abs() < 0.01, "{w:?}");
        // A window after the refusals, their bucket has gone, and only the acceptances count.
        let w = t.window(0, t0 + 1_050 * MS).unwrap();
        assert_eq!((w.requests, w.accepts), (500, 500));
        assert_eq!(w.refuse_share, 0.0);
    }

    #[test]
    fn a_share_p_is_refused_and_each_local_refusal_counts_as_a_request() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        for _ in 0..1_000 {
            t.record(0, false, t0);
            t.record(0, true, t0);
        }
        // p = (2,000 − 1.1 × 1,000) / 2,001 ≈ 0.45: of 20 calls about 9 are refused here.
        let refused = (0..20).filter(|_| !t.allow(0, t0)).count() as u64;
        assert!((8..=10).contains(&refused), "{refused} refused");
        let w = t.window(0, t0).unwrap();
        assert_eq!(w.requests, 2_000 + refused);
        assert_eq!(w.accepts, 1_000);
    }

    #[test]
    fn an_unknown_replica_is_never_throttled() {
        let t0 = Instant::now();
        let t = Throttle::new(1, DEFAULT_K, t0);
        assert!(t.allow(7, t0));
        t.record(7, false, t0);
        assert_eq!(t.window(7, t0), None);
    }
}
