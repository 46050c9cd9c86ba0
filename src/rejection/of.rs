//! [`Rejection`]: why one of this crate's layers ended a call, as one enum.

use std::fmt;
use std::time::Duration;

use super::{
    BulkheadFull, CircuitOpen, CircuitState, DeadlineExceeded, Elapsed, FullReason, RateLimited,
};
use crate::error::{chain, AsError};

/// Why one of this crate's layers ended a call, found anywhere in an error's
/// `source()` chain: one `match` instead of a downcast per type.
///
/// [`Rejection::of`] walks the chain of a [`BoxError`](crate::BoxError), an
/// error holding ours as its source (`std::io::Error`, any type that
/// implements [`AsError`]), or a `dyn Error`, and returns the first of this crate's errors it meets (at
/// most 64 deep). `None` means the error came from somewhere else — the
/// backend, the transport — and is the backend's failure to judge.
///
/// ```
/// use std::time::Duration;
/// use steadfast::{BoxError, CircuitOpen, Rejection};
/// use steadfast::circuit_breaker::CircuitState;
///
/// fn explain(err: &BoxError) -> String {
///     match Rejection::of(err) {
///         Some(Rejection::CircuitOpen { retry_after: Some(after), .. }) => {
///             format!("backend down, next probe in {after:?}")
///         }
///         Some(Rejection::CircuitOpen { .. }) => "backend down".into(),
///         Some(Rejection::BulkheadFull { .. }) => "too busy, try later".into(),
///         Some(Rejection::DeadlineExceeded { .. }) => "out of time".into(),
///         Some(Rejection::TimedOut { after, .. }) => format!("backend slower than {after:?}"),
///         Some(other) => other.to_string(),
///         None => format!("backend failed: {err}"),
///     }
/// }
///
/// let open: BoxError = CircuitOpen::new(CircuitState::Open, Some(Duration::from_secs(5))).into();
/// assert_eq!(explain(&open), "backend down, next probe in 5s");
/// assert_eq!(explain(&"connection reset".into()), "backend failed: connection reset");
/// ```
///
/// Each variant carries what its error type does; the error types
/// themselves ([`CircuitOpen`], [`BulkheadFull`], [`RateLimited`],
/// [`DeadlineExceeded`], [`Elapsed`]) stay the thing to downcast to or
/// build in tests. The enum and its variants are `#[non_exhaustive]`: later
/// layers add variants, and variants may gain fields, so match with `..`
/// and keep a catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The circuit breaker refused the call ([`CircuitOpen`]); it was never
    /// sent.
    #[non_exhaustive]
    CircuitOpen {
        /// The breaker's state: open, half-open with every probe slot
        /// taken, or forced open.
        state: CircuitState,
        /// How long until the breaker admits a probe, when known (while
        /// open).
        retry_after: Option<Duration>,
    },
    /// The bulkhead refused the call ([`BulkheadFull`]); it was never sent.
    #[non_exhaustive]
    BulkheadFull {
        /// Why: no room to wait, or the wait ran out.
        reason: FullReason,
        /// The bulkhead's limit when it refused the call.
        max_concurrent: usize,
        /// How long the call waited for a slot.
        waited: Duration,
    },
    /// The rate limiter refused the call ([`RateLimited`]); it was never
    /// sent.
    #[non_exhaustive]
    RateLimited {
        /// How long until a call would be admitted.
        retry_after: Duration,
        /// How long the call waited for its turn.
        waited: Duration,
    },
    /// The whole call's deadline passed ([`DeadlineExceeded`]). The call
    /// may have reached the backend; the caller's time ran out.
    #[non_exhaustive]
    DeadlineExceeded {
        /// How long the call was given, when the layer that gave up knew.
        budget: Option<Duration>,
    },
    /// One attempt took longer than its timeout ([`Elapsed`]): a failure of
    /// the backend, which may have received the call.
    #[non_exhaustive]
    TimedOut {
        /// The per-attempt timeout that ran out.
        after: Duration,
    },
}

impl Rejection {
    /// The first of this crate's rejections in `err` or its `source()`
    /// chain, or `None` when there is none (at most 64 errors deep).
    ///
    /// `err` is anything [`AsError`]: a `BoxError`, a `std::io::Error`, a
    /// `dyn Error`, or a reference to one; any other error type as
    /// `&err as &dyn Error` (or give it the one-line [`AsError`] impl).
    pub fn of<E: AsError + ?Sized>(err: &E) -> Option<Self> {
        chain(err.as_error()).find_map(|e| {
            if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                Some(Self::CircuitOpen {
                    state: open.state(),
                    retry_after: open.retry_after(),
                })
            } else if let Some(full) = e.downcast_ref::<BulkheadFull>() {
                Some(Self::BulkheadFull {
                    reason: full.reason(),
                    max_concurrent: full.max_concurrent(),
                    waited: full.waited(),
                })
            } else if let Some(limited) = e.downcast_ref::<RateLimited>() {
                Some(Self::RateLimited {
                    retry_after: limited.retry_after(),
                    waited: limited.waited(),
                })
            } else if let Some(late) = e.downcast_ref::<DeadlineExceeded>() {
                Some(Self::DeadlineExceeded {
                    budget: late.budget(),
                })
            } else {
                e.downcast_ref::<Elapsed>().map(|elapsed| Self::TimedOut {
                    after: elapsed.timeout(),
                })
            }
        })
    }

    /// `true` only for [`TimedOut`](Self::TimedOut): a backend that did not
    /// answer in time has failed. The others are decisions of ours — the
    /// circuit breaker counts them as
    /// [`Ignored`](crate::classify::Outcome::Ignored), and retry never
    /// repeats them.
    pub const fn is_backend_failure(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }

    /// `true` when the call never left this process (the breaker, the
    /// bulkhead or the rate limiter refused it), so sending it again
    /// elsewhere cannot run it twice. A timeout or a deadline may have cut a call the backend
    /// already received.
    pub const fn is_not_sent(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen { .. } | Self::BulkheadFull { .. } | Self::RateLimited { .. }
        )
    }

    /// How long until the breaker admits a probe, for an open breaker's
    /// rejection, or until the rate limiter admits a call; `None` otherwise.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen { retry_after, .. } => *retry_after,
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The lowercase name used in events and metrics: `circuit_open`,
    /// `bulkhead_full`, `rate_limited`, `deadline_exceeded`, `timed_out`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::CircuitOpen { .. } => "circuit_open",
            Self::BulkheadFull { .. } => "bulkhead_full",
            Self::RateLimited { .. } => "rate_limited",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::TimedOut { .. } => "timed_out",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
