//! Admission control: how many notarisation requests a replica takes in before it answers
//! `overloaded` (503 with `Retry-After`) at once, instead of letting a queue grow until
//! clients time out.
//!
//! Three bounds. The two global ones are checked first, before the request's body is read
//! ([`Admission::check_room`]): under overload most requests are refused, and a refusal
//! must cost next to nothing, or refusing the excess takes the CPU that serves the rest.
//! The per-requester one needs the body (the requester key is in it), so it is checked
//! after decoding, by [`Admission::admit`], which checks all three again.
//! 1. **Per requester**: at most `batch.max_pending_per_requester` requests of one ledger node
//!    (one requester key) in flight on this replica, so one busy or broken client cannot take
//!    the whole queue.
//! 2. **Hard cap**: at most `batch.max_pending_requests` in flight in all.
//! 3. **Adaptive limit** (AIMD on queueing delay, in the spirit of CoDel and of TCP Vegas):
//!    every window of `batch.max_queue_delay`, the fastest answer of the window (timed from
//!    when the request was read off its connection, so that requests waiting for a busy
//!    async worker count as queued) is compared
//!    with the fastest of the last [`BASE_WINDOWS`] windows (the cluster's own latency without
//!    a queue, whatever the machine). If even the fastest answer waited `max_queue_delay`
//!    longer than that (a standing queue, not a burst), the limit falls to 70 % of the most
//!    requests in flight at once in the window; if the limit was reached while answers stayed
//!    fast, it rises by a tenth. So under overload the replica keeps about
//!    `throughput × max_queue_delay` requests queued: enough to keep every block full, few
//!    enough that an admitted request is answered well within the client's timeout.
//!
//!    The limit falls at most **once per round trip**, as TCP's window does: after a cut,
//!    only answers to requests that arrived after it can cut again. Answers to requests
//!    queued before the cut are slow whatever the new limit, for as long as that queue takes
//!    to drain (a second and more past saturation); counting them cut the limit by 0.7 every
//!    window, to a fraction of what the replica can do, and the `+10 %` steps then took
//!    seconds to climb back: a sawtooth measured at 2x overload (BENCHMARKS.md).
//!
//! A [`Ticket`] is held for as long as the request is in flight and releases its place when
//! dropped, however the call ends.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use notary_types::RequesterKey;
use parking_lot::Mutex;

/// The adaptive limit never falls below this many requests in flight.
pub const LIMIT_FLOOR: usize = 64;

/// Windows over which the latency without a queue (the base) is the minimum.
pub const BASE_WINDOWS: usize = 32;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The requester already has its most requests in flight here.
    #[error(
        "this requester has {max} requests in flight on this replica (its limit); retry shortly"
    )]
    Requester {
        /// The per-requester bound.
        max: usize,
    },
    /// The replica holds its most requests in flight.
    #[error("{max} requests are in flight on this replica; retry shortly or elsewhere")]
    Full {
        /// The bound that was hit.
        max: usize,
    },
    /// Requests queue longer than the target delay: the replica is past its capacity.
    #[error(
        "this replica is past its capacity ({in_flight} in flight, answers slower than {target_ms} ms); retry shortly or elsewhere"
    )]
    Saturated {
        /// Requests in flight.
        in_flight: usize,
        /// The queueing-delay target in milliseconds.
        target_ms: u64,
    },
}

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Hard cap on requests in flight.
    pub max_total: usize,
    /// Cap per requester key.
    pub max_per_requester: usize,
    /// Queueing-delay target; also the length of a measuring window.
    pub target: Duration,
}

struct Inner {
    total: usize,
    by_requester: HashMap<RequesterKey, usize>,
    limit: usize,
    limit_reached: bool,
    /// The most requests in flight at once in this window.
    window_peak: usize,
    window_start: Instant,
    window_min: Option<Duration>,
    /// The fastest answer in this window to a request that arrived after the last cut.
    window_fresh_min: Option<Duration>,
    /// When the limit last fell.
    last_cut: Option<Instant>,
    /// The fastest answer of each of the last windows that had answers.
    recent_mins: VecDeque<Duration>,
}

/// The admission state of one replica.
pub struct Admission {
    bounds: Bounds,
    inner: Mutex<Inner>,
}

/// A place in flight; released on drop.
pub struct Ticket<'a> {
    admission: &'a Admission,
    requester: RequesterKey,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut s = self.admission.inner.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(c) = s.by_requester.get_mut(&self.requester) {
            *c -= 1;
            if *c == 0 {
                s.by_requester.remove(&self.requester);
            }
        }
    }
}

impl Admission {
    /// Admission with these bounds; the adaptive limit starts at the hard cap.
    pub fn new(bounds: Bounds, now: Instant) -> Self {
        Self {
            bounds,
            inner: Mutex::new(Inner {
                total: 0,
                by_requester: HashMap::new(),
                limit: bounds.max_total,
                limit_reached: false,
                window_peak: 0,
                window_start: now,
                window_min: None,
                window_fresh_min: None,
                last_cut: None,
                recent_mins: VecDeque::with_capacity(BASE_WINDOWS),
            }),
        }
    }

    /// Whether a request of anyone would be refused now by the global bounds (the hard cap
    /// and the adaptive limit): the check before a body is read. It takes no place; a
    /// request that passes still goes through [`Admission::admit`].
    pub fn check_room(&self, now: Instant) -> Result<(), Refusal> {
        let mut s = self.inner.lock();
        self.roll_window(&mut s, now);
        self.check_global(&mut s)
    }

    fn check_global(&self, s: &mut Inner) -> Result<(), Refusal> {
        if s.total >= self.bounds.max_total {
            return Err(Refusal::Full {
                max: self.bounds.max_total,
            });
        }
        if s.total >= s.limit {
            s.limit_reached = true;
            return Err(Refusal::Saturated {
                in_flight: s.total,
                target_ms: self.bounds.target.as_millis() as u64,
            });
        }
        Ok(())
    }

    /// Takes a place for a request of `requester`, or says why not.
    pub fn admit(&self, requester: RequesterKey, now: Instant) -> Result<Ticket<'_>, Refusal> {
        let mut s = self.inner.lock();
        self.roll_window(&mut s, now);
        let mine = s.by_requester.get(&requester).copied().unwrap_or(0);
        if mine >= self.bounds.max_per_requester {
            return Err(Refusal::Requester {
                max: self.bounds.max_per_requester,
            });
        }
        self.check_global(&mut s)?;
        s.total += 1;
        s.window_peak = s.window_peak.max(s.total);
        *s.by_requester.entry(requester).or_insert(0) += 1;
        Ok(Ticket {
            admission: self,
            requester,
        })
    }

    /// Records how long an admitted request waited for its answer, from its arrival.
    pub fn answered(&self, waited: Duration, now: Instant) {
        let mut s = self.inner.lock();
        self.roll_window(&mut s, now);
        s.window_min = Some(s.window_min.map_or(waited, |m| m.min(waited)));
        let arrived = now.checked_sub(waited);
        let fresh = match (s.last_cut, arrived) {
            (Some(cut), Some(arrived)) => arrived >= cut,
            _ => true,
        };
        if fresh {
            s.window_fresh_min = Some(s.window_fresh_min.map_or(waited, |m| m.min(waited)));
        }
    }

    /// The adaptive limit now.
    pub fn limit(&self) -> usize {
        self.inner.lock().limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().total
    }

    fn roll_window(&self, s: &mut Inner, now: Instant) {
        if now.saturating_duration_since(s.window_start) < self.bounds.target {
            return;
        }
        let max = self.bounds.max_total;
        let base = s.recent_mins.iter().min().copied();
        if let Some(min) = s.window_min {
            if s.recent_mins.len() == BASE_WINDOWS {
                s.recent_mins.pop_front();
            }
            s.recent_mins.push_back(min);
        }
        // Without a base yet (the first window of answers) nothing counts as queued.
        let queued = |min: Duration| base.map_or(Duration::ZERO, |b| min.saturating_sub(b));
        match (s.window_min, s.window_fresh_min) {
            // A standing queue: even the fastest answer to a request admitted since the last
            // cut waited too long beyond the base. The cut is from the window's peak, not from
            // the requests in flight at this instant: answers leave a block at a time, so that
            // count swings from the whole queue to a handful between two blocks.
            (_, Some(fresh)) if queued(fresh) > self.bounds.target => {
                let peak = s.window_peak.max(s.total).min(s.limit);
                s.limit = (peak * 7 / 10).clamp(LIMIT_FLOOR.min(max), max);
                s.last_cut = Some(now);
            }
            // Fast answers while the limit was binding: allow a little more.
            (Some(min), _) if s.limit_reached && queued(min) <= self.bounds.target => {
                s.limit = (s.limit + (s.limit / 10).max(LIMIT_FLOOR)).min(max);
            }
            // Nothing answered and nothing in flight: idle, start again from the cap.
            (None, _) if s.total == 0 => s.limit = max,
            // Only answers queued before the last cut, or slow ones: wait and see.
            _ => {}
        }
        s.limit_reached = false;
        s.window_peak = s.total;
        s.window_start = now;
        s.window_min = None;
        s.window_fresh_min = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn bounds() -> Bounds {
        Bounds {
            max_total: 1000,
            max_per_requester: 300,
            target: 100 * MS,
        }
    }

    fn key(b: u8) -> RequesterKey {
        RequesterKey([b; 32])
    }

    /// `n` requests admitted at `at`, spread over four requesters.
    fn hold(a: &Admission, n: usize, at: Instant) -> Vec<Ticket<'_>> {
        (0..n)
            .map(|i| a.admit(key((i % 4) as u8), at).unwrap())
            .collect()
    }

    /// The start of a standing queue: a first window sets the base (30 ms without a queue),
    /// 500 requests are admitted at `t0` (returned, with their tickets), then an answer
    /// waits 250 ms. The next arrival after `t0 + 100 ms` closes the window: the first cut.
    fn standing_queue(a: &Admission, start: Instant) -> (Instant, Vec<Ticket<'_>>) {
        a.answered(30 * MS, start + 10 * MS);
        let t0 = start + 100 * MS;
        let held = hold(a, 500, t0);
        a.answered(250 * MS, t0 + 50 * MS);
        (t0, held)
    }

    #[test]
    fn one_requester_cannot_take_the_whole_queue() {
        let t0 = Instant::now();
        let a = Admission::new(bounds(), t0);
        let held: Vec<_> = (0..300).map(|_| a.admit(key(1), t0).unwrap()).collect();
        assert_eq!(
            a.admit(key(1), t0).err(),
            Some(Refusal::Requester { max: 300 })
        );
        assert!(
            a.admit(key(2), t0).is_ok(),
            "another requester still gets in"
        );
        drop(held);
        assert_eq!(a.in_flight(), 0, "tickets give their places back");
        assert!(a.admit(key(1), t0).is_ok());
    }

    #[test]
    fn the_check_before_the_body_refuses_on_the_global_bounds_only_and_takes_no_place() {
        let t0 = Instant::now();
        let a = Admission::new(bounds(), t0);
        let held: Vec<_> = (0..300).map(|_| a.admit(key(1), t0).unwrap()).collect();
        // Requester 1 is at its own bound, but that needs the body: the room check passes.
        assert_eq!(a.check_room(t0), Ok(()));
        assert_eq!(a.in_flight(), 300, "checking takes no place");
        let more: Vec<_> = (0..700)
            .map(|i| a.admit(key(2 + (i % 3) as u8), t0).unwrap())
            .collect();
        assert_eq!(a.check_room(t0), Err(Refusal::Full { max: 1000 }));
        drop(more);
        assert_eq!(a.check_room(t0), Ok(()));
        drop(held);
    }

    #[test]
    fn the_hard_cap_holds() {
        let t0 = Instant::now();
        let a = Admission::new(bounds(), t0);
        let held = hold(&a, 1000, t0);
        assert_eq!(a.admit(key(9), t0).err(), Some(Refusal::Full { max: 1000 }));
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn a_standing_queue_lowers_the_limit_and_fast_answers_raise_it_again() {
        let start = Instant::now();
        let a = Admission::new(bounds(), start);
        // A first window: the cluster answers in 30 ms without a queue (the base).
        a.answered(30 * MS, start + 10 * MS);
        let t0 = start + 100 * MS;
        let held = hold(&a, 500, t0);
        assert_eq!(a.limit(), 1000);
        // Every answer in the next window waited more than the target beyond the base.
        a.answered(250 * MS, t0 + 50 * MS);
        a.answered(180 * MS, t0 + 60 * MS);
        // The next arrival closes the window: the limit falls to 70 % of those in flight.
        let refused = a.admit(key(5), t0 + 120 * MS);
        assert_eq!(a.limit(), 350);
        assert_eq!(
            refused.err(),
            Some(Refusal::Saturated {
                in_flight: 500,
                target_ms: 100
            })
        );
        drop(held);
        // Fast answers while the limit binds: it rises by a tenth (at least the floor).
        let held = hold(&a, 350, t0 + 130 * MS);
        // The check before the body sees the limit, and marks it as binding as `admit` does.
        assert!(matches!(
            a.check_room(t0 + 140 * MS),
            Err(Refusal::Saturated { .. })
        ));
        a.answered(20 * MS, t0 + 150 * MS);
        let more = a.admit(key(5), t0 + 230 * MS);
        assert_eq!(a.limit(), 350 + 64);
        assert!(more.is_ok(), "room again");
        drop(held);
    }

    /// After a cut, answers to requests that were already queued do not cut again: the
    /// limit falls once per round trip, not once per window.
    #[test]
    fn the_limit_falls_once_per_round_trip() {
        let start = Instant::now();
        let a = Admission::new(bounds(), start);
        let (t0, mut held) = standing_queue(&a, start);
        let _ = a.admit(key(5), t0 + 120 * MS);
        assert_eq!(a.limit(), 350, "a standing queue: the first cut");
        held.truncate(300);
        // Two more windows of slow answers, all to requests that arrived before the cut.
        a.answered(400 * MS, t0 + 150 * MS);
        let _ = a.admit(key(5), t0 + 230 * MS);
        a.answered(500 * MS, t0 + 260 * MS);
        let _ = a.admit(key(5), t0 + 340 * MS);
        assert_eq!(a.limit(), 350, "stale answers do not cut again");
        // A slow answer to a request that arrived after the cut (at t0 + 130 ms) does: 190 ms
        // beyond the 30 ms base, and 70 % of the 300 now in flight.
        a.answered(220 * MS, t0 + 350 * MS);
        let _ = a.admit(key(5), t0 + 450 * MS);
        assert_eq!(a.limit(), 210);
        drop(held);
    }

    /// A block's answers leave together: the cut is from the window's peak in flight, not
    /// from the few left at the instant the window closes.
    #[test]
    fn the_cut_is_from_the_peak_in_flight_not_the_trough() {
        let start = Instant::now();
        let a = Admission::new(bounds(), start);
        let (t0, mut held) = standing_queue(&a, start);
        held.truncate(50);
        let _ = a.admit(key(5), t0 + 120 * MS);
        assert_eq!(a.limit(), 350);
        drop(held);
    }

    #[test]
    fn a_slow_cluster_without_a_queue_keeps_its_limit() {
        // Answers take 800 ms (a loaded machine, a slow disk) but do not grow: no queue.
        let t0 = Instant::now();
        let a = Admission::new(bounds(), t0);
        let held = hold(&a, 900, t0);
        for w in 0..10u32 {
            a.answered((800 + w) * MS, t0 + (w * 100 + 50) * MS);
            let _ = a.admit(key(9), t0 + (w * 100 + 100) * MS);
        }
        assert_eq!(a.limit(), 1000);
        drop(held);
    }

    #[test]
    fn an_idle_replica_starts_again_from_the_cap_and_never_below_the_floor() {
        let t0 = Instant::now();
        let a = Admission::new(bounds(), t0);
        {
            let _one = a.admit(key(1), t0).unwrap();
            a.answered(20 * MS, t0 + 5 * MS);
            let _ = a.admit(key(1), t0 + 100 * MS);
            a.answered(500 * MS, t0 + 110 * MS);
            let _ = a.admit(key(1), t0 + 250 * MS);
            assert_eq!(
                a.limit(),
                LIMIT_FLOOR,
                "70 % of 1 in flight is raised to the floor"
            );
        }
        // A window with nothing answered and nothing in flight resets the limit.
        let _ = a.admit(key(1), t0 + 400 * MS);
        assert_eq!(a.limit(), 1000);
    }
}
