//! The rate limiter's rejection.

use std::fmt;
use std::time::Duration;

/// The rate limiter refused the call: it came sooner than the configured
/// rate allows.
///
/// Returned, boxed as a [`BoxError`](crate::BoxError), by the response
/// future of a call that found its limiter over the limit and could not
/// wait (the default), or could not be served within its wait. The call
/// never reached the inner service. It is not a failure of the backend: the
/// circuit breaker counts it as [`Ignored`](crate::classify::Outcome::Ignored)
/// and retry never repeats it. On a server, `RateLimitLayer`'s HTTP mapping
/// turns it into `429 Too Many Requests` with a `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use steadfast::RateLimited;
///
/// fn backoff(err: &steadfast::BoxError) -> Option<Duration> {
///     err.downcast_ref::<RateLimited>().map(RateLimited::retry_after)
/// }
/// let err: steadfast::BoxError = RateLimited::new(Duration::from_millis(250), Duration::ZERO).into();
/// assert_eq!(backoff(&err), Some(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimited {
    retry_after: Duration,
    waited: Duration,
}

impl RateLimited {
    /// A rejection of a call that would have conformed to the limit
    /// `retry_after` from now, after it `waited` for its turn.
    ///
    /// The rate limiter makes these; building one by hand is for testing
    /// fallbacks.
    pub const fn new(retry_after: Duration, waited: Duration) -> Self {
        Self {
            retry_after,
            waited,
        }
    }

    /// How long from the rejection until a call would be admitted, had
    /// nobody else come in the meantime. Never zero.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How long the call waited for its turn before it was rejected: zero
    /// unless the limiter lets callers wait.
    pub const fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.waited.is_zero() {
            write!(f, "rate limited; retry after {:.3?}", self.retry_after)
        } else {
            write!(
                f,
                "rate limited after waiting {:.3?}; retry after {:.3?}",
                self.waited, self.retry_after
            )
        }
    }
}

impl std::error::Error for RateLimited {}
