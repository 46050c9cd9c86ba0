//! The circuit breaker's rejection, and the states it names.

use std::fmt;
use std::time::Duration;

/// The state of a circuit breaker.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass; outcomes are counted against the trip rules.
    Closed,
    /// Calls are rejected at once with [`CircuitOpen`](crate::circuit_breaker::error::CircuitOpen)
    /// until the open duration has passed.
    Open,
    /// A limited number of probe calls pass; the rest are rejected.
    HalfOpen,
    /// Opened by hand ([`CircuitBreakerHandle::force_open`](crate::circuit_breaker::CircuitBreakerHandle::force_open)):
    /// every call is rejected until [`reset`](crate::circuit_breaker::CircuitBreakerHandle::reset).
    ForcedOpen,
    /// Switched off by hand: every call passes, outcomes are still counted.
    Disabled,
}

impl CircuitState {
    /// The lowercase name used in events and metrics (`closed`, `open`,
    /// `half_open`, `forced_open`, `disabled`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker rejected the call without sending it.
///
/// Returned, boxed as a [`BoxError`](crate::BoxError), by the response future
/// of a call made while the breaker is open, forced open, or half-open with
/// every probe slot taken. It is never a failure of the backend: other
/// layers of this crate count it as [`Ignored`](crate::classify::Outcome::Ignored).
///
/// ```
/// # use std::time::Duration;
/// # use steadfast::circuit_breaker::error::CircuitOpen;
/// fn fallback(err: &steadfast::BoxError) -> Option<Duration> {
///     err.downcast_ref::<CircuitOpen>().and_then(CircuitOpen::retry_after)
/// }
/// # let _ = fallback;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection in `state`, with the time until the next probe if known.
    ///
    /// The breaker makes these; building one by hand is for testing fallbacks.
    pub const fn new(state: CircuitState, retry_after: Option<Duration>) -> Self {
        Self { state, retry_after }
    }

    /// The breaker's state when it rejected the call: [`CircuitState::Open`],
    /// [`CircuitState::HalfOpen`] (all probe slots taken) or
    /// [`CircuitState::ForcedOpen`].
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// How long until the breaker admits a probe, when known (while open).
    /// `None` when half-open (a slot frees when a probe ends) or forced open.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (CircuitState::HalfOpen, _) => {
                f.write_str("circuit half-open; every probe slot is taken")
            }
            (CircuitState::ForcedOpen, _) => f.write_str("circuit forced open"),
            (_, Some(d)) => write!(f, "circuit open; next probe in {d:.3?}"),
            (_, None) => f.write_str("circuit open"),
        }
    }
}

impl std::error::Error for CircuitOpen {}
