use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::budget::{BudgetSnapshot, RetryBudget};
use crate::metrics::{sum, Count, Histogram, HistogramSnapshot, Striped};

/// Why a retryable failure was returned instead of retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// `max_attempts` reached.
    Exhausted,
    /// The next attempt would start after the deadline.
    Deadline,
    /// The server's delay exceeds `max_server_delay`, or it asked for no retry.
    ServerHint,
    /// The budget refused.
    Budget,
    /// The request is not safe to repeat.
    Unsafe,
    /// The request cannot be produced again.
    Unreplayable,
}

impl Skip {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Skip::Exhausted => "attempts exhausted",
            Skip::Deadline => "deadline",
            Skip::ServerHint => "server hint",
            Skip::Budget => "budget exhausted",
            Skip::Unsafe => "not safe to repeat",
            Skip::Unreplayable => "not replayable",
        }
    }
}

#[derive(Default)]
struct Hot {
    calls: Count,
}

/// The counters of one retry layer.
pub(crate) struct Stats {
    hot: Striped<Hot>,
    retries: AtomicU64,
    exhausted: AtomicU64,
    deadline: AtomicU64,
    server_hint: AtomicU64,
    budget: AtomicU64,
    unsafe_: AtomicU64,
    unreplayable: AtomicU64,
    pub(crate) budget_ref: Option<RetryBudget>,
    pub(crate) name: Option<Arc<str>>,
    /// Each attempt's duration, when the layer times them.
    pub(crate) attempt_duration: Option<Histogram>,
}

impl Stats {
    pub(crate) fn new(
        budget_ref: Option<RetryBudget>,
        name: Option<Arc<str>>,
        attempt_durations: bool,
    ) -> Self {
        Self {
            hot: Striped::new(),
            retries: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            server_hint: AtomicU64::new(0),
            budget: AtomicU64::new(0),
            unsafe_: AtomicU64::new(0),
            unreplayable: AtomicU64::new(0),
            budget_ref,
            name,
            attempt_duration: attempt_durations.then(Histogram::new),
        }
    }

    #[inline]
    pub(crate) fn call(&self, stripe: usize) {
        self.hot.get(stripe).calls.incr(stripe);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn skip(&self, why: Skip) {
        let counter = match why {
            Skip::Exhausted => &self.exhausted,
            Skip::Deadline => &self.deadline,
            Skip::ServerHint => &self.server_hint,
            Skip::Budget => &self.budget,
            Skip::Unsafe => &self.unsafe_,
            Skip::Unreplayable => &self.unreplayable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RetrySnapshot {
        let calls = sum(&self.hot, |h| &h.calls);
        let retries = self.retries.load(Ordering::Relaxed);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RetrySnapshot {
            name: self.name.clone(),
            calls,
            attempts: calls.saturating_add(retries),
            retries,
            refused_by_budget: get(&self.budget),
            skipped_unsafe: get(&self.unsafe_),
            skipped_unreplayable: get(&self.unreplayable),
            give_ups: get(&self.exhausted) + get(&self.deadline) + get(&self.server_hint),
            exhausted: get(&self.exhausted),
            deadline_reached: get(&self.deadline),
            server_hint: get(&self.server_hint),
            budget: self.budget_ref.as_ref().map(RetryBudget::snapshot),
            attempt_duration: self.attempt_duration.as_ref().map(Histogram::snapshot),
        }
    }
}

/// Reads the counters of a retry layer; every service the layer made
/// counts into the same place.
///
/// ```
/// use steadfast::retry::{RetryConfig, RetryLayer};
///
/// let layer = RetryLayer::new(RetryConfig::default());
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().calls, 0);
/// ```
#[derive(Clone)]
pub struct RetryHandle {
    stats: Arc<Stats>,
}

impl RetryHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The counters now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.stats.snapshot()
    }

    /// The layer's name, if it has one
    /// ([`RetryConfigBuilder::name`](super::RetryConfigBuilder::name)).
    pub fn name(&self) -> Option<&str> {
        self.stats.name.as_deref()
    }

    /// The layer's budget, unless it has none.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.stats.budget_ref.as_ref()
    }
}

impl fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryHandle")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// The counters of a retry layer at one moment; totals since it was built.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// The layer's name, shared with the layer (no copy).
    pub name: Option<Arc<str>>,
    /// Calls made through the layer.
    pub calls: u64,
    /// Attempts sent: calls plus retries.
    pub attempts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retryable failures returned because the budget refused a retry.
    pub refused_by_budget: u64,
    /// Retryable failures returned because the request was not safe to
    /// repeat (a non-idempotent method without an `Idempotency-Key`).
    pub skipped_unsafe: u64,
    /// Retryable failures returned because the request could not be
    /// produced again (streaming or over-cap body).
    pub skipped_unreplayable: u64,
    /// Retryable failures returned after giving up: the sum of
    /// `exhausted`, `deadline_reached` and `server_hint`.
    pub give_ups: u64,
    /// Give-ups because `max_attempts` was reached.
    pub exhausted: u64,
    /// Give-ups because the next attempt would have started after the
    /// deadline.
    pub deadline_reached: u64,
    /// Give-ups because the server asked for a delay above
    /// `max_server_delay`, or for no retry.
    pub server_hint: u64,
    /// The budget's own counters, when the layer has one.
    pub budget: Option<BudgetSnapshot>,
    /// How long each finished attempt took, when the layer times them
    /// ([`attempt_durations`](super::RetryConfigBuilder::attempt_durations);
    /// on in the preset with metrics).
    pub attempt_duration: Option<HistogramSnapshot>,
}

impl fmt::Display for RetrySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "calls={} attempts={} retries={} refused_by_budget={} skipped_unsafe={} \
             skipped_unreplayable={} give_ups={} (exhausted={} deadline={} server_hint={})",
            self.calls,
            self.attempts,
            self.retries,
            self.refused_by_budget,
            self.skipped_unsafe,
            self.skipped_unreplayable,
            self.give_ups,
            self.exhausted,
            self.deadline_reached,
            self.server_hint,
        )
    }
}
