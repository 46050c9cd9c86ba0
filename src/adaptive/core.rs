//! What every service of one adaptive limit shares: the estimator behind a
//! try-lock, the published values, the counters.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::{Algorithm, Estimator, Sample};
use crate::bulkhead::BulkheadHandle;
use crate::metrics::{sum, thread_stripe, Count, Striped};
use std::sync::Mutex;

/// Counters, one set per stripe.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) drops: Count,
}

pub(crate) struct Core {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) bulkhead: BulkheadHandle,
    pub(crate) algorithm: Algorithm,
    pub(crate) min_limit: usize,
    pub(crate) max_limit: usize,
    /// Time one call in this many on each thread; 0: none.
    pub(crate) measure_every: u32,
    /// Where the estimator's nanoseconds count from.
    epoch: Instant,
    /// Updated by whoever holds the lock; a caller that finds it held
    /// never waits (see [`Core::finish`]).
    estimator: Mutex<Estimator>,
    /// Drops that found the lock held, applied by the next holder.
    pending_drops: AtomicUsize,
    /// Published by the lock holder for readers: the exact limit (`f64`
    /// bits), the RTTs in nanoseconds (0: unknown), samples taken.
    estimate: AtomicU64,
    short_ns: AtomicU64,
    long_ns: AtomicU64,
    samples: AtomicU64,
    /// Successes that found the lock held and were left out.
    skipped: AtomicU64,
    pub(crate) stats: Striped<Stats>,
}

impl Core {
    pub(crate) fn new(
        name: Option<Arc<str>>,
        bulkhead: BulkheadHandle,
        algorithm: Algorithm,
        min_limit: usize,
        max_limit: usize,
        initial: usize,
    ) -> Self {
        let estimator = Estimator::new(algorithm, min_limit, max_limit, initial);
        let limit = estimator.limit();
        // In [1, u32::MAX]: the builder checked the bounds.
        let _ = bulkhead.set_max_concurrent(limit);
        Self {
            name,
            bulkhead,
            measure_every: algorithm.measure_every(),
            algorithm,
            min_limit,
            max_limit,
            epoch: Instant::now(),
            estimate: AtomicU64::new(estimator.estimate().to_bits()),
            estimator: Mutex::new(estimator),
            pending_drops: AtomicUsize::new(0),
            short_ns: AtomicU64::new(0),
            long_ns: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            stats: Striped::new(),
        }
    }

    /// When the call starting now is to be timed: one in `measure_every`
    /// on each thread (a countdown, not a division).
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        thread_local! {
            static SINCE: Cell<u32> = const { Cell::new(0) };
        }
        if self.measure_every == 0 {
            return None;
        }
        let due = SINCE.with(|n| {
            let next = n.get() + 1;
            if next >= self.measure_every {
                n.set(0);
                true
            } else {
                n.set(next);
                false
            }
        });
        due.then(Instant::now)
    }

    /// One finished call: `start` is when it began if it was timed,
    /// `dropped` whether it failed or timed out.
    #[inline]
    pub(crate) fn finish(&self, start: Option<Instant>, dropped: bool) {
        if start.is_none() && !dropped && self.measure_every > 1 {
            // An untimed success of a sampling algorithm: nothing to learn.
            return;
        }
        let (now_ns, rtt_ns) = match start {
            Some(start) => {
                let now = Instant::now();
                (
                    nanos(now.saturating_duration_since(self.epoch)),
                    Some(nanos(now.saturating_duration_since(start))),
                )
            }
            None => (0, None),
        };
        if dropped {
            let stripe = thread_stripe();
            self.stats.get(stripe).drops.incr(stripe);
        }
        let Ok(mut est) = self.estimator.try_lock() else {
            // Never wait: a drop is kept for the next holder, a success
            // is one sample fewer.
            if dropped {
                self.pending_drops.fetch_add(1, Relaxed);
            } else {
                self.skipped.fetch_add(1, Relaxed);
            }
            return;
        };
        let before = est.limit();
        let pending = self.pending_drops.swap(0, Relaxed);
        for _ in 0..pending.min(64) {
            est.drop_once();
        }
        let slow = est.sample(Sample {
            now_ns,
            rtt_ns,
            dropped,
            in_flight: self.bulkhead.in_flight(),
        });
        if slow {
            let stripe = thread_stripe();
            self.stats.get(stripe).drops.incr(stripe);
        }
        self.publish(&est);
        let after = est.limit();
        if after != before {
            // Still under the lock: two updates applied out of order would
            // leave the bulkhead at a stale limit.
            self.apply(before, after);
        }
    }

    fn publish(&self, est: &Estimator) {
        self.estimate.store(est.estimate().to_bits(), Relaxed);
        if self.measure_every != 0 {
            let ns = |d: Option<Duration>| d.map_or(0, nanos);
            self.short_ns.store(ns(est.short_rtt()), Relaxed);
            self.long_ns.store(ns(est.long_rtt()), Relaxed);
        }
        self.samples
            .store(self.samples.load(Relaxed).wrapping_add(1), Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn apply(&self, before: usize, after: usize) {
        // In [min, max] ⊂ [1, u32::MAX]: cannot fail.
        let _ = self.bulkhead.set_max_concurrent(after);
        tracing::debug!(
            target: "steadfast::adaptive",
            layer = "adaptive",
            name = self.name.as_deref().unwrap_or(""),
            event = "limit_changed",
            from = before,
            to = after,
            "adaptive limit changed"
        );
    }

    pub(crate) fn limit(&self) -> usize {
        (self.estimate().floor() as usize).clamp(self.min_limit, self.max_limit)
    }

    pub(crate) fn estimate(&self) -> f64 {
        f64::from_bits(self.estimate.load(Relaxed))
    }

    pub(crate) fn short_rtt(&self) -> Option<Duration> {
        duration(self.short_ns.load(Relaxed))
    }

    pub(crate) fn long_rtt(&self) -> Option<Duration> {
        duration(self.long_ns.load(Relaxed))
    }

    pub(crate) fn samples(&self) -> u64 {
        self.samples.load(Relaxed)
    }

    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    pub(crate) fn drops(&self) -> u64 {
        sum(&self.stats, |s| &s.drops)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn duration(ns: u64) -> Option<Duration> {
    (ns != 0).then(|| Duration::from_nanos(ns))
}
