//! [`RateLimitHandle`] and [`RateLimitSnapshot`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::shared::Shared;

/// Reads a rate limiter's state and counters; from
/// [`RateLimitLayer::handle`](super::RateLimitLayer::handle) or
/// [`RateLimit::handle`](super::RateLimit::handle). Clones read the same
/// limiter.
#[derive(Clone)]
pub struct RateLimitHandle {
    shared: Arc<Shared>,
}

impl RateLimitHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The limiter's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// The time between two admitted calls once a burst is spent: the
    /// period divided by the rate, rounded up to the nanosecond.
    pub fn interval(&self) -> Duration {
        self.shared.limiter.interval()
    }

    /// The calls an idle limiter admits at once.
    pub fn burst(&self) -> u64 {
        self.shared.limiter.burst()
    }

    /// The calls the limiter would admit at once now (0 while callers
    /// wait).
    pub fn available(&self) -> u64 {
        let limiter = &self.shared.limiter;
        if limiter.waiting() > 0 {
            return 0;
        }
        limiter.available_at(limiter.nanos(Instant::now()))
    }

    /// The calls waiting for their turn now.
    pub fn waiting(&self) -> u64 {
        self.shared.limiter.waiting()
    }

    /// The counters and state, read now.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let [waited, rejected, rejected_after_waiting, cancelled_waiting] = self.shared.totals();
        RateLimitSnapshot {
            name: self.shared.name.clone(),
            interval: self.interval(),
            burst: self.burst(),
            available: self.available(),
            waiting: self.waiting(),
            waited,
            rejected,
            rejected_after_waiting,
            cancelled_waiting,
        }
    }
}

impl fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHandle")
            .field("limit", &self.shared)
            .finish()
    }
}

/// A rate limiter's state and counters at one moment; from
/// [`RateLimitHandle::snapshot`]. Counters count from when the layer was
/// built; admitted calls are not counted here (a metrics layer does that).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// The limiter's name, if it has one.
    pub name: Option<Arc<str>>,
    /// The time between two admitted calls once a burst is spent.
    pub interval: Duration,
    /// The calls an idle limiter admits at once.
    pub burst: u64,
    /// The calls it would admit at once now.
    pub available: u64,
    /// Calls waiting for their turn now.
    pub waiting: u64,
    /// Calls admitted after waiting for their turn.
    pub waited: u64,
    /// Calls rejected at once, without waiting.
    pub rejected: u64,
    /// Calls rejected after waiting: their wait (or deadline) ran out.
    pub rejected_after_waiting: u64,
    /// Waiting calls whose future was dropped.
    pub cancelled_waiting: u64,
}

impl RateLimitSnapshot {
    /// All the calls the limiter rejected.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.saturating_add(self.rejected_after_waiting)
    }
}

impl fmt::Display for RateLimitSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "burst {} every {:?} | {} available, {} waiting | waited {} | rejected {} (after waiting {}) | cancelled while waiting {}",
            self.burst,
            self.interval,
            self.available,
            self.waiting,
            self.waited,
            self.rejected,
            self.rejected_after_waiting,
            self.cancelled_waiting,
        )
    }
}
