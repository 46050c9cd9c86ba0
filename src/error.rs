//! Errors shared by every layer: [`BoxError`], [`InvalidConfig`] and helpers
//! that find a typed error anywhere in a `source()` chain.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// The boxed error type returned by layers that add failures of their own.
///
/// It is the same alias tower uses, so errors pass between tower layers and
/// ours without conversion.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A configuration value broke a rule; returned by every `build()`.
///
/// The message names the field and the rule, e.g.
/// ``invalid `circuit_breaker.failure_rate`: must be in (0, 100], got 150``.
///
/// ```
/// use steadfast::circuit_breaker::CircuitBreakerConfig;
///
/// let err = CircuitBreakerConfig::builder().failure_rate(150.0).build().unwrap_err();
/// assert_eq!(err.field(), "circuit_breaker.failure_rate");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl InvalidConfig {
    pub(crate) fn new(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The dotted name of the offending field, e.g. `circuit_breaker.minimum_calls`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the value broke, e.g. `must be at least 1, got 0`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl Error for InvalidConfig {}

/// Returns `true` if `err` or any error in its `source()` chain is an `E`.
///
/// Layers wrap and box errors, so `err.is::<E>()` only looks at the outermost
/// one; this walks the chain.
///
/// ```
/// use steadfast::{is_caused_by, BoxError};
/// use steadfast::circuit_breaker::error::CircuitOpen;
///
/// fn fell_back(err: &BoxError) -> bool {
///     is_caused_by::<CircuitOpen>(err.as_ref())
/// }
/// # let _ = fell_back;
/// ```
pub fn is_caused_by<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    cause_ref::<E>(err).is_some()
}

/// Finds the first `E` in `err` or its `source()` chain.
pub fn cause_ref<'a, E: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut current: Option<&'a (dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// `true` when the error is a rejection produced by one of this crate's own
/// layers (not a failure of the backend). Such errors classify as
/// [`Outcome::Ignored`](crate::classify::Outcome::Ignored) in the breaker.
///
/// `Elapsed` (a per-attempt timeout) is *not* one: a backend that does not
/// answer in time has failed.
pub(crate) fn is_own_rejection(err: &(dyn Error + 'static)) -> bool {
    use crate::rejection::{BulkheadFull, CircuitOpen, DeadlineExceeded};

    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<CircuitOpen>() || e.is::<BulkheadFull>() || e.is::<DeadlineExceeded>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// `true` when `err`, or an error in its `source()` chain, says an attempt
/// ran out of time: our [`Elapsed`](crate::rejection::Elapsed), or (feature
/// `tonic`) tonic's own `TimeoutExpired`, which a tonic `Channel` raises
/// when the request's `grpc-timeout` passes.
///
/// The one test for "the attempt timed out": the retry layer (which never
/// repeats a call that is not safe to repeat after one, unless
/// `retry_timeouts`) and the gRPC status mapping
/// ([`GrpcCode::of_error`](crate::classify::GrpcCode::of_error)) read it,
/// so that the two timers, ours and tonic's, mean the same wherever one of
/// them fires first.
pub(crate) fn is_attempt_timeout(err: &(dyn Error + 'static)) -> bool {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if is_attempt_timeout_link(e) {
            return true;
        }
        current = e.source();
    }
    false
}

/// One link of [`is_attempt_timeout`]'s chain.
#[inline]
pub(crate) fn is_attempt_timeout_link(e: &(dyn Error + 'static)) -> bool {
    #[cfg(feature = "tonic")]
    if e.is::<tonic::TimeoutExpired>() {
        return true;
    }
    e.is::<crate::rejection::Elapsed>()
}
