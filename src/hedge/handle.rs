use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::delay::Delay;
use super::service::Shared;
use crate::metrics::{sum, Count, Striped};
use crate::retry::{BudgetSnapshot, RetryBudget};

#[derive(Default)]
struct Hot {
    calls: Count,
}

/// Why a call sent fewer hedges than it could have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The budget refused a hedge.
    Budget,
    /// The next hedge would have gone at or after the deadline.
    Deadline,
    /// The request could not be produced again (body over the cap).
    Unreplayable,
}

impl Skip {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Skip::Budget => "budget exhausted",
            Skip::Deadline => "deadline",
            Skip::Unreplayable => "not replayable",
        }
    }
}

/// The counters of one hedge layer.
pub(crate) struct Stats {
    hot: Striped<Hot>,
    hedges: AtomicU64,
    won: AtomicU64,
    budget: AtomicU64,
    deadline: AtomicU64,
    unsafe_: AtomicU64,
    unreplayable: AtomicU64,
    pub(crate) name: Option<Arc<str>>,
}

impl Stats {
    pub(crate) fn new(name: Option<Arc<str>>) -> Self {
        Self {
            hot: Striped::new(),
            hedges: AtomicU64::new(0),
            won: AtomicU64::new(0),
            budget: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            unsafe_: AtomicU64::new(0),
            unreplayable: AtomicU64::new(0),
            name,
        }
    }

    #[inline]
    pub(crate) fn call(&self, stripe: usize) {
        self.hot.get(stripe).calls.incr(stripe);
    }

    pub(crate) fn hedge(&self) {
        self.hedges.fetch_add(1, Relaxed);
    }

    pub(crate) fn won(&self) {
        self.won.fetch_add(1, Relaxed);
    }

    pub(crate) fn not_safe(&self) {
        self.unsafe_.fetch_add(1, Relaxed);
    }

    pub(crate) fn skip(&self, why: Skip) {
        let counter = match why {
            Skip::Budget => &self.budget,
            Skip::Deadline => &self.deadline,
            Skip::Unreplayable => &self.unreplayable,
        };
        counter.fetch_add(1, Relaxed);
        tracing::debug!(
            target: "steadfast::hedge",
            layer = "hedge",
            name = self.name.as_deref().unwrap_or(""),
            event = "no_hedge",
            reason = why.as_str(),
            "not hedging"
        );
    }
}

/// Reads the counters of a hedge layer; every service the layer made counts
/// into the same place.
///
/// ```
/// use steadfast::hedge::{HedgeConfig, HedgeLayer};
///
/// let layer = HedgeLayer::new(HedgeConfig::default());
/// let handle = layer.handle();
/// assert_eq!(handle.snapshot().calls, 0);
/// ```
#[derive(Clone)]
pub struct HedgeHandle {
    stats: Arc<Stats>,
    budget: Option<RetryBudget>,
    delay: Arc<Delay>,
}

impl HedgeHandle {
    pub(crate) fn new<On, Rp>(shared: &Shared<On, Rp>) -> Self {
        Self {
            stats: shared.stats.clone(),
            budget: shared.config.budget.clone(),
            delay: shared.delay.clone(),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> HedgeSnapshot {
        let s = &*self.stats;
        let get = |c: &AtomicU64| c.load(Relaxed);
        HedgeSnapshot {
            name: s.name.clone(),
            calls: sum(&s.hot, |h| &h.calls),
            hedges: get(&s.hedges),
            hedges_won: get(&s.won),
            refused_by_budget: get(&s.budget),
            deadline_reached: get(&s.deadline),
            skipped_unsafe: get(&s.unsafe_),
            skipped_unreplayable: get(&s.unreplayable),
            delay: self.delay.current(),
            budget: self.budget.as_ref().map(RetryBudget::snapshot),
        }
    }

    /// The layer's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.stats.name.as_deref()
    }

    /// The layer's budget, unless it has none.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

impl fmt::Debug for HedgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeHandle")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// The counters of a hedge layer at one moment; totals since it was built.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HedgeSnapshot {
    /// The layer's name, shared with the layer (no copy).
    pub name: Option<Arc<str>>,
    /// Calls made through the layer.
    pub calls: u64,
    /// Hedges sent (attempts after the first). The extra load on the
    /// backend is `hedges / calls`.
    pub hedges: u64,
    /// Calls answered by a hedge rather than by the first attempt.
    pub hedges_won: u64,
    /// Hedges the budget refused.
    pub refused_by_budget: u64,
    /// Hedges not sent because they would have gone at or after the call's
    /// deadline.
    pub deadline_reached: u64,
    /// Calls never hedged because the request was not safe to repeat (a
    /// POST without an `Idempotency-Key`, a gRPC call not marked
    /// idempotent).
    pub skipped_unsafe: u64,
    /// Calls never hedged, or hedged less, because the request could not
    /// be produced again (a body over the cap, a streaming body).
    pub skipped_unreplayable: u64,
    /// The delay in force: the fixed delay, or the latest percentile
    /// estimate.
    pub delay: Duration,
    /// The budget's own counters, when the layer has one.
    pub budget: Option<BudgetSnapshot>,
}

impl fmt::Display for HedgeSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "calls={} hedges={} hedges_won={} refused_by_budget={} deadline={} \
             skipped_unsafe={} skipped_unreplayable={} delay={:?}",
            self.calls,
            self.hedges,
            self.hedges_won,
            self.refused_by_budget,
            self.deadline_reached,
            self.skipped_unsafe,
            self.skipped_unreplayable,
            self.delay,
        )
    }
}
