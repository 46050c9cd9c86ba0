//! [`MetricsHandle`] and [`MetricsSnapshot`]: what a [`MetricsLayer`](super::MetricsLayer) counted.

use std::fmt;
use std::sync::Arc;

use super::histogram::{Histogram, HistogramSnapshot};
use super::{sum, Count, Striped};

/// The counters of one metrics layer, shared by every service it made.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) started: Count,
    pub(crate) successes: Count,
    pub(crate) failures: Count,
    pub(crate) ignored: Count,
    pub(crate) circuit_open: Count,
    pub(crate) bulkhead_full: Count,
    pub(crate) rate_limited: Count,
    pub(crate) deadline_exceeded: Count,
    pub(crate) timed_out: Count,
    pub(crate) cancelled: Count,
}

/// What every service of one layer counts into.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    pub(crate) counts: Striped<Counts>,
    pub(crate) duration: Histogram,
}

impl Core {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            counts: Striped::new(),
            duration: Histogram::new(),
        }
    }

    fn snapshot(&self) -> MetricsSnapshot {
        let get = |field: fn(&Counts) -> &Count| sum(&self.counts, field);
        // Finished calls are read before started ones, so that a call that
        // starts and finishes in between never makes the gauge negative.
        let successes = get(|c| &c.successes);
        let failures = get(|c| &c.failures);
        let ignored = get(|c| &c.ignored);
        let cancelled = get(|c| &c.cancelled);
        let started = get(|c| &c.started);
        let finished = successes
            .wrapping_add(failures)
            .wrapping_add(ignored)
            .wrapping_add(cancelled);
        MetricsSnapshot {
            name: self.name.clone(),
            calls: started,
            successes,
            failures,
            ignored,
            cancelled,
            in_flight: started.saturating_sub(finished),
            rejected_circuit_open: get(|c| &c.circuit_open),
            rejected_bulkhead_full: get(|c| &c.bulkhead_full),
            rejected_rate_limited: get(|c| &c.rate_limited),
            deadline_exceeded: get(|c| &c.deadline_exceeded),
            timed_out: get(|c| &c.timed_out),
            duration: self.duration.snapshot(),
        }
    }
}

/// Reads what a [`MetricsLayer`](super::MetricsLayer) counted; from
/// [`MetricsLayer::new`](super::MetricsLayer::new) or
/// [`MetricsLayer::handle`](super::MetricsLayer::handle).
///
/// Cheap to clone; every clone reads the same counters.
#[derive(Clone)]
pub struct MetricsHandle {
    node: Arc<dyn HasCore>,
}

/// The layer's shared node, whatever its classifier type.
pub(crate) trait HasCore: Send + Sync {
    fn core(&self) -> &Core;
}

impl MetricsHandle {
    pub(crate) fn new(node: Arc<dyn HasCore>) -> Self {
        Self { node }
    }

    fn core(&self) -> &Core {
        self.node.core()
    }

    /// The name given to [`MetricsLayer::new`](super::MetricsLayer::new).
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The counters and the call-duration histogram now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.core().snapshot()
    }
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("name", &self.name())
            .finish()
    }
}

/// What a [`MetricsLayer`](super::MetricsLayer) counted since it was made,
/// from [`MetricsHandle::snapshot`].
///
/// Every finished call is counted once by its outcome —
/// `successes + failures + ignored` — as the layer's classifier judged it,
/// except that this crate's own rejections are never the classifier's to
/// judge: an attempt timeout ([`Elapsed`](crate::Elapsed), or tonic's
/// `TimeoutExpired`) is a failure of the backend, the others (open breaker,
/// full bulkhead, deadline) are ignored. The `rejected_*`, `deadline_exceeded`
/// and `timed_out` fields say which of those calls our layers ended, and
/// why. A call whose future was dropped before it finished is `cancelled`,
/// not classified, and not in the histogram.
///
/// The fields are read one after another without a lock: while calls come
/// and go they may be a moment apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The layer's name.
    pub name: Arc<str>,
    /// Calls started.
    pub calls: u64,
    /// Finished calls the classifier judged successes.
    pub successes: u64,
    /// Finished calls that failed: the classifier's failures and attempt
    /// timeouts.
    pub failures: u64,
    /// Finished calls that were neither: the classifier's `Ignored` and our
    /// own rejections other than timeouts.
    pub ignored: u64,
    /// Calls whose future was dropped before they finished.
    pub cancelled: u64,
    /// Calls started and not yet finished or dropped.
    pub in_flight: u64,
    /// Calls ended by an open circuit breaker
    /// ([`CircuitOpen`](crate::CircuitOpen)).
    pub rejected_circuit_open: u64,
    /// Calls ended by a full bulkhead ([`BulkheadFull`](crate::BulkheadFull)).
    pub rejected_bulkhead_full: u64,
    /// Calls ended by a rate limiter ([`RateLimited`](crate::RateLimited)).
    pub rejected_rate_limited: u64,
    /// Calls ended by their deadline
    /// ([`DeadlineExceeded`](crate::DeadlineExceeded)).
    pub deadline_exceeded: u64,
    /// Calls whose (last) attempt timed out ([`Elapsed`](crate::Elapsed)).
    pub timed_out: u64,
    /// How long finished calls took, from `call` to the result, whatever
    /// the outcome.
    pub duration: HistogramSnapshot,
}

impl MetricsSnapshot {
    /// Calls our layers ended: the sum of the `rejected_*`,
    /// `deadline_exceeded` and `timed_out` fields.
    pub fn rejected(&self) -> u64 {
        self.rejected_circuit_open
            .saturating_add(self.rejected_bulkhead_full)
            .saturating_add(self.rejected_rate_limited)
            .saturating_add(self.deadline_exceeded)
            .saturating_add(self.timed_out)
    }
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} calls | ok {} failed {} ignored {} cancelled {} | in flight {} | \
             open {} full {} limited {} deadline {} timeout {} | {}",
            self.name,
            self.calls,
            self.successes,
            self.failures,
            self.ignored,
            self.cancelled,
            self.in_flight,
            self.rejected_circuit_open,
            self.rejected_bulkhead_full,
            self.rejected_rate_limited,
            self.deadline_exceeded,
            self.timed_out,
            self.duration,
        )
    }
}
