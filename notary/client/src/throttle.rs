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

#[derive(Default, Clone, Copy)]
struct Bucket {
    requests: u64,
    accepts: u64,
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

    fn totals(&self) -> (u64, u64) {
        self.buckets
            .iter()
            .fold((0, 0), |(r, a), b| (r + b.requests, a + b.accepts))
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
        let (requests, accepts) = c.totals();
        let p = refuse_share(requests, accepts, self.k);
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
            }
        }
    }

    /// The window of `replica` now.
    pub fn window(&self, replica: usize, now: Instant) -> Option<Window> {
        let mut c = self.lock(replica)?;
        c.advance(now);
        let (requests, accepts) = c.totals();
        Some(Window {
            requests,
            accepts,
            refuse_share: refuse_share(requests, accepts, self.k),
        })
    }
}

fn refuse_share(requests: u64, accepts: u64, k: f64) -> f64 {
    ((requests as f64 - k * accepts as f64) / (requests as f64 + 1.0)).max(0.0)
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
