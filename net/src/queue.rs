//! The bounded per-peer outbound queue and the reconnection back-off.
//!
//! **Drop policy: drop oldest.** When a peer's queue is over its frame or byte bound, the
//! oldest messages go first: consensus re-sends what still matters (the latest vote, the
//! latest proposal), and stale messages are the least useful. `push` never waits, so a
//! stalled peer can never block a sender or the other peers.

use bytes::Bytes;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

/// A bounded FIFO of messages to one peer.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    frames_max: usize,
    bytes_max: usize,
}

impl PeerQueue {
    pub(crate) fn new(frames_max: usize, bytes_max: usize) -> Self {
        Self {
            inner: Mutex::default(),
            notify: Notify::new(),
            frames_max: frames_max.max(1),
            bytes_max,
        }
    }

    /// Appends `msg`, dropping the oldest messages to stay in bounds; returns how many dropped.
    pub(crate) fn push(&self, msg: Bytes) -> u64 {
        let mut dropped = 0;
        {
            let mut q = self
                .inner
                .lock()
                .expect("queue lock is never poisoned: no panics inside");
            q.bytes += msg.len();
            q.frames.push_back(msg);
            while q.frames.len() > self.frames_max
                || (q.bytes > self.bytes_max && q.frames.len() > 1)
            {
                let old = q.frames.pop_front().expect("length checked above");
                q.bytes -= old.len();
                dropped += 1;
            }
        }
        self.notify.notify_one();
        dropped
    }

    /// Takes messages from the front up to about `bytes_budget` (at least one if any).
    pub(crate) fn drain(&self, bytes_budget: usize, out: &mut Vec<Bytes>) {
        let mut q = self
            .inner
            .lock()
            .expect("queue lock is never poisoned: no panics inside");
        let mut taken = 0;
        while let Some(front) = q.frames.front() {
            if !out.is_empty() && taken + front.len() > bytes_budget {
                break;
            }
            taken += front.len();
            let msg = q.frames.pop_front().expect("front exists");
            q.bytes -= msg.len();
            out.push(msg);
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .expect("queue lock is never poisoned")
            .frames
            .len()
    }

    /// Waits until a push happens (or one happened since the last wait).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Exponential back-off with jitter: attempt `k` waits a uniform time in `[d/2, d]` where
/// `d = min(initial * 2^k, max)`. Jitter keeps replicas that lost a peer together from
/// redialling in lockstep; the RNG is injected so tests can seed it.
#[derive(Debug)]
pub(crate) struct Backoff<R> {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    pub(crate) fn new(initial: Duration, max: Duration, rng: R) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling_us = ceiling.as_micros() as u64;
        Duration::from_micros(self.rng.gen_range(ceiling_us / 2..=ceiling_us))
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn full_queue_drops_oldest_first() {
        let q = PeerQueue::new(3, usize::MAX);
        let mut dropped = 0;
        for i in 0u8..5 {
            dropped += q.push(Bytes::from(vec![i]));
        }
        assert_eq!(dropped, 2);
        let mut out = Vec::new();
        q.drain(usize::MAX, &mut out);
        assert_eq!(
            out,
            vec![
                Bytes::from(vec![2]),
                Bytes::from(vec![3]),
                Bytes::from(vec![4])
            ]
        );
    }

    #[test]
    fn byte_bound_drops_oldest_but_keeps_the_newest() {
        let q = PeerQueue::new(100, 10);
        assert_eq!(q.push(Bytes::from(vec![0; 6])), 0);
        assert_eq!(q.push(Bytes::from(vec![1; 6])), 1);
        assert_eq!(
            q.push(Bytes::from(vec![2; 20])),
            1,
            "an oversize newest message still goes"
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn drain_respects_the_budget_but_always_takes_one() {
        let q = PeerQueue::new(100, usize::MAX);
        for _ in 0..4 {
            q.push(Bytes::from(vec![0; 10]));
        }
        let mut out = Vec::new();
        q.drain(25, &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        q.drain(1, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_in_the_upper_half() {
        let rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100), rng);
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        for (k, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_millis((10u64 << k).min(100));
            assert!(
                *d >= ceiling / 2 && *d <= ceiling,
                "attempt {k}: {d:?} vs {ceiling:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
