//! What every clone of a rate limiter shares: the limiter, its settings and
//! its counters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::RateLimited;
use super::gcra::Limiter;
use crate::metrics::listener::Listeners;
use crate::metrics::{sum, thread_stripe, Count, Striped};

pub(crate) struct Shared {
    /// Switched off (the preset's rate limit piece when not configured):
    /// every call passes untouched. A flag rather than a `Toggle` around
    /// the service, so the preset's type names its inner service once.
    pub(crate) off: bool,
    pub(crate) limiter: Limiter,
    pub(crate) stats: Striped<Stats>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) max_wait: Duration,
    pub(crate) max_waiting: usize,
    pub(crate) on_rejection: Listeners<Rejected>,
}

/// A call the rate limiter rejected, as its
/// [`on_rejection`](super::RateLimitBuilder::on_rejection) listeners see it.
#[derive(Debug, Clone)]
pub struct Rejected {
    name: Option<Arc<str>>,
    limited: RateLimited,
}

impl Rejected {
    pub(crate) fn new(name: Option<Arc<str>>, limited: RateLimited) -> Self {
        Self { name, limited }
    }

    /// The limiter's [`name`](super::RateLimitBuilder::name), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The error the call failed with.
    pub fn error(&self) -> &RateLimited {
        &self.limited
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) waited: Count,
    pub(crate) rejected: Count,
    pub(crate) rejected_waiting: Count,
    pub(crate) cancelled: Count,
}

impl Shared {
    fn count(&self, field: impl Fn(&Stats) -> &Count) {
        let stripe = thread_stripe();
        field(self.stats.get(stripe)).incr(stripe);
    }

    pub(crate) fn totals(&self) -> [u64; 4] {
        let s = &self.stats;
        [
            sum(s, |c| &c.waited),
            sum(s, |c| &c.rejected),
            sum(s, |c| &c.rejected_waiting),
            sum(s, |c| &c.cancelled),
        ]
    }

    pub(crate) fn count_waited(&self) {
        self.count(|s| &s.waited);
    }

    pub(crate) fn count_cancelled(&self) {
        self.count(|s| &s.cancelled);
    }

    /// Counts, logs and reports a rejection; returns the error.
    #[cold]
    #[inline(never)]
    pub(crate) fn reject(&self, retry_after: Duration, waited: Duration) -> RateLimited {
        if waited.is_zero() {
            self.count(|s| &s.rejected);
        } else {
            self.count(|s| &s.rejected_waiting);
        }
        let limited = RateLimited::new(retry_after.max(Duration::from_nanos(1)), waited);
        tracing::debug!(
            target: "steadfast::rate_limit",
            layer = "rate_limit",
            name = self.name.as_deref().unwrap_or(""),
            event = "rejected",
            retry_after_ms = millis(limited.retry_after()),
            waited_ms = millis(waited),
            waiting = self.limiter.waiting(),
            "rate limiter rejected a call"
        );
        if !self.on_rejection.is_empty() {
            let event = Rejected {
                name: self.name.clone(),
                limited,
            };
            self.on_rejection
                .call("rate_limit", self.name.as_deref(), &event);
        }
        limited
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.name)
            .field("interval", &self.limiter.interval())
            .field("burst", &self.limiter.burst())
            .field("max_wait", &self.max_wait)
            .field("max_waiting", &self.max_waiting)
            .field("waiting", &self.limiter.waiting())
            .finish()
    }
}
