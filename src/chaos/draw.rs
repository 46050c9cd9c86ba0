//! The layer's randomness: a counter-based generator, so that clones share
//! one sequence without a lock.
//!
//! Call number `n` (from one shared atomic counter) gets its own stream of
//! values, `mix(seed, n, k)` for `k = 0, 1, …`: the value in slot `k` does
//! not depend on which other slots were read, so a window that skips the
//! rate draw does not shift the draws of later calls. The mixing function
//! is SplitMix64 ([`crate::mix`]), not `rand`'s `SmallRng`, which may
//! change its algorithm between versions and platforms: a chaos run must
//! replay the same faults for as long as the seed is kept.

/// Slots of a call's stream, one per decision.
pub(super) const LATENCY_GATE: u64 = 0;
pub(super) const LATENCY_VALUE: u64 = 1;
pub(super) const FAULT_PICK: u64 = 2;
pub(super) const FAULT_DELAY: u64 = 3;
/// Window `i`'s rate draw is slot `WINDOW + i`.
pub(super) const WINDOW: u64 = 4;

use crate::mix::{splitmix64, GOLDEN};

/// The random values of one call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draws {
    state: u64,
}

impl Draws {
    /// The stream of call number `n` under `seed`.
    pub(super) fn new(seed: u64, n: u64) -> Self {
        Self {
            state: splitmix64(seed ^ splitmix64(n)),
        }
    }

    /// Slot `k` as a `u64`.
    pub(super) fn u64(self, k: u64) -> u64 {
        splitmix64(self.state.wrapping_add(k.wrapping_mul(GOLDEN)))
    }

    /// Slot `k` as an `f64` in `[0, 1)`, with 53 random bits.
    pub(super) fn unit(self, k: u64) -> f64 {
        (self.u64(k) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_range_and_slots_differ() {
        let d = Draws::new(7, 3);
        for k in 0..1_000 {
            let u = d.unit(k);
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        assert_ne!(d.u64(0), d.u64(1));
        assert_ne!(Draws::new(7, 3).u64(0), Draws::new(7, 4).u64(0));
        assert_ne!(Draws::new(7, 3).u64(0), Draws::new(8, 3).u64(0));
        assert_eq!(Draws::new(7, 3).u64(5), Draws::new(7, 3).u64(5));
    }

    #[test]
    fn unit_mean_is_a_half() {
        let n = 100_000u64;
        let mean: f64 = (0..n).map(|i| Draws::new(1, i).unit(0)).sum::<f64>() / n as f64;
        // σ of the mean: sqrt(1/12 / n) ≈ 0.00091; 5σ.
        assert!((mean - 0.5).abs() < 0.0046, "{mean}");
    }
}
