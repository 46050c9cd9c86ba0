//! The bulkhead's rejection.

use std::fmt;
use std::time::Duration;

/// Why a [`BulkheadFull`] rejection happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FullReason {
    /// Every slot was taken and the call could not wait: the wait queue
    /// held [`max_waiting`](crate::bulkhead::BulkheadBuilder::max_waiting) callers
    /// already, or the bulkhead does not queue at all (a zero
    /// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait), the default).
    QueueFull,
    /// The call waited in the queue, and no slot came free within
    /// [`max_wait`](crate::bulkhead::BulkheadBuilder::max_wait), or before the
    /// request's deadline (see [`deadline_aware`](crate::bulkhead::BulkheadLayer::deadline_aware)).
    WaitTimedOut,
}

impl FullReason {
    /// The lowercase name used in events and metrics (`queue_full`,
    /// `wait_timed_out`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FullReason::QueueFull => "queue_full",
            FullReason::WaitTimedOut => "wait_timed_out",
        }
    }
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bulkhead refused the call: every slot was taken.
///
/// Returned, boxed as a [`BoxError`](crate::BoxError), by the response
/// future of a call that found the bulkhead full and could not wait, or
/// waited too long. The call never reached the inner service. It is not a
/// failure of the backend: the circuit breaker counts it as
/// [`Ignored`](crate::classify::Outcome::Ignored) and retry never repeats it.
///
/// ```
/// use steadfast::bulkhead::error::{BulkheadFull, FullReason};
///
/// fn shed(err: &steadfast::BoxError) -> bool {
///     // Map to `503 Service Unavailable` (or `429`), or serve a fallback.
///     err.downcast_ref::<BulkheadFull>()
///         .is_some_and(|full| full.reason() == FullReason::QueueFull)
/// }
/// # let _ = shed;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    reason: FullReason,
    max_concurrent: usize,
    waited: Duration,
}

impl BulkheadFull {
    /// A rejection for `reason`, by a bulkhead of `max_concurrent` slots,
    /// after the call `waited` in the queue.
    ///
    /// The bulkhead makes these; building one by hand is for testing fallbacks.
    pub const fn new(reason: FullReason, max_concurrent: usize, waited: Duration) -> Self {
        Self {
            reason,
            max_concurrent,
            waited,
        }
    }

    /// Why the call was rejected.
    pub const fn reason(&self) -> FullReason {
        self.reason
    }

    /// The bulkhead's limit when it rejected the call.
    pub const fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// How long the call waited in the queue before it was rejected: zero
    /// for [`FullReason::QueueFull`].
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FullReason::QueueFull => write!(
                f,
                "bulkhead full; all {} slots taken and no room to wait",
                self.max_concurrent
            ),
            FullReason::WaitTimedOut => write!(
                f,
                "bulkhead full; no slot of {} came free within {:.3?}",
                self.max_concurrent, self.waited
            ),
        }
    }
}

impl std::error::Error for BulkheadFull {}
