//! Quorum arithmetic, in one place.
//!
//! With `n` replicas the cluster tolerates `f = floor((n - 1) / 3)` Byzantine ones (`n >= 3f + 1`).
//! A certificate needs `f + 1` signature shares: any `f + 1` replicas include at least one honest
//! replica, and honest replicas only sign the results of committed blocks, so `f + 1` shares over
//! a header prove the cluster decided it. In `blsttc` terms the key set's threshold is `f` (its
//! polynomial has degree `f`; `threshold + 1` shares combine).

use thiserror::Error;

/// A replica's position in the committee, 0-based; also its `blsttc` key share index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaIndex(pub u16);

/// The committee's size and fault bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committee {
    n: u16,
}

/// A committee size that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a committee needs at least 1 replica, got {n}")]
pub struct InvalidCommittee {
    /// The size asked for.
    pub n: u16,
}

impl Committee {
    /// A committee of `n >= 1` replicas.
    pub fn new(n: u16) -> Result<Self, InvalidCommittee> {
        if n == 0 {
            return Err(InvalidCommittee { n });
        }
        Ok(Self { n })
    }
    /// The number of replicas.
    pub fn n(&self) -> u16 {
        self.n
    }
    /// The most Byzantine replicas tolerated: `floor((n - 1) / 3)`.
    pub fn f(&self) -> u16 {
        (self.n - 1) / 3
    }
    /// Shares needed for a cluster signature: `f + 1`.
    pub fn certificate_shares(&self) -> usize {
        usize::from(self.f()) + 1
    }
    /// The `blsttc` threshold of the cluster key set: `f`.
    pub fn bls_threshold(&self) -> usize {
        usize::from(self.f())
    }
    /// Whether `replica` is a member.
    pub fn contains(&self, replica: ReplicaIndex) -> bool {
        replica.0 < self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_is_the_largest_with_n_at_least_3f_plus_1() {
        for n in 1..200u16 {
            let c = Committee::new(n).unwrap();
            let f = c.f();
            assert!(
                n > 3 * f && n <= 3 * (f + 1),
                "n >= 3f + 1 fails to hold for f + 1: n={n}"
            );
            assert_eq!(c.certificate_shares(), usize::from(f) + 1);
        }
        assert_eq!(Committee::new(4).unwrap().f(), 1);
        assert!(Committee::new(0).is_err());
    }
}
