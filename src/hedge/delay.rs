//! The hedging delay: fixed, or a percentile of recent call latency.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::config::HedgeDelay;
use crate::metrics::{Histogram, HistogramSnapshot};
use crate::sync::Mutex;
use std::sync::TryLockError;

/// Refreshes per window: the estimate is as old as a tenth of the window at
/// most, and covers the last window give or take a tenth.
const SLICES: u32 = 10;

/// Where the delay comes from; shared by every service of a layer.
pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(Box<Tracker>),
}

impl Delay {
    pub(crate) fn new(config: HedgeDelay, now: Instant) -> Self {
        match config {
            HedgeDelay::Fixed(delay) => Delay::Fixed(delay),
            HedgeDelay::Percentile {
                percentile,
                window,
                min,
                max,
            } => Delay::Percentile(Box::new(Tracker::new(percentile, window, min, max, now))),
        }
    }

    /// The delay for a hedge decided at `now`.
    #[inline]
    pub(crate) fn at(&self, now: Instant) -> Duration {
        match self {
            Delay::Fixed(delay) => *delay,
            Delay::Percentile(tracker) => tracker.at(now),
        }
    }

    /// The delay in force, without refreshing it.
    pub(crate) fn current(&self) -> Duration {
        match self {
            Delay::Fixed(delay) => *delay,
            Delay::Percentile(tracker) => Duration::from_nanos(tracker.delay_ns.load(Relaxed)),
        }
    }

    /// The latency tracker, when the delay is a percentile.
    #[inline]
    pub(crate) fn tracker(&self) -> Option<&Tracker> {
        match self {
            Delay::Fixed(_) => None,
            Delay::Percentile(tracker) => Some(tracker),
        }
    }
}

/// A percentile of the latencies recorded over a sliding window.
///
/// Latencies go into one cumulative [`Histogram`] (striped, no lock). Every
/// tenth of the window the first call to ask takes a snapshot and reads the
/// percentile of what was recorded since the snapshot one window earlier;
/// the result is cached in an atomic that every other call reads.
pub(crate) struct Tracker {
    quantile: f64,
    min_ns: u64,
    max_ns: u64,
    /// Calls the window must hold before the percentile is read.
    min_samples: u64,
    window_ns: u64,
    slice_ns: u64,
    base: Instant,
    histogram: Histogram,
    /// The delay in force, in nanoseconds.
    delay_ns: AtomicU64,
    /// Nanoseconds after `base` from which the next call refreshes.
    next_refresh: AtomicU64,
    /// Snapshots taken at refreshes, oldest first, with their times.
    ring: Mutex<VecDeque<(u64, HistogramSnapshot)>>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Tracker {
    fn new(percentile: f64, window: Duration, min: Duration, max: Duration, now: Instant) -> Self {
        let window_ns = nanos(window);
        let slice_ns = window_ns / u64::from(SLICES);
        // p95 means something from 20 values on (the top one is then the
        // 5 % above it), p99 from 100.
        let min_samples = (100.0 / (100.0 - percentile)).ceil() as u64;
        let mut ring = VecDeque::with_capacity(SLICES as usize + 2);
        ring.push_back((0, HistogramSnapshot::empty()));
        Self {
            quantile: percentile / 100.0,
            min_ns: nanos(min),
            max_ns: nanos(max),
            min_samples,
            window_ns,
            slice_ns,
            base: now,
            histogram: Histogram::new(),
            delay_ns: AtomicU64::new(nanos(max)),
            next_refresh: AtomicU64::new(slice_ns),
            ring: Mutex::new(ring),
        }
    }

    #[inline]
    fn at(&self, now: Instant) -> Duration {
        let t = nanos(now.saturating_duration_since(self.base));
        if t >= self.next_refresh.load(Relaxed) {
            self.refresh(t);
        }
        Duration::from_nanos(self.delay_ns.load(Relaxed))
    }

    /// Records the latency of one call.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        self.histogram.record(latency);
    }

    #[cold]
    #[inline(never)]
    fn refresh(&self, t: u64) {
        // One caller refreshes; the others go on with the delay in force.
        let mut ring = match self.ring.try_lock() {
            Ok(ring) => ring,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let next = self.next_refresh.load(Relaxed);
        if t < next {
            return; // another caller just did it
        }
        self.next_refresh
            .store(t.saturating_add(self.slice_ns), Relaxed);
        let now = self.histogram.snapshot();
        // The baseline is the newest snapshot at least a window old.
        let horizon = t.saturating_sub(self.window_ns);
        while ring.len() > 1 && ring[1].0 <= horizon {
            ring.pop_front();
        }
        let recent = now.since(&ring[0].1);
        let delay = if recent.count() >= self.min_samples {
            recent
                .quantile(self.quantile)
                .map_or(self.max_ns, nanos)
                .clamp(self.min_ns, self.max_ns)
        } else {
            self.max_ns
        };
        self.delay_ns.store(delay, Relaxed);
        ring.push_back((t, now));
    }
}
