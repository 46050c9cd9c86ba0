use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::{CircuitState, Core};

/// A handle on one breaker: its state, manual control, and metrics.
///
/// Cheap to clone; every clone controls the same breaker.
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    core: Arc<Core>,
}

impl CircuitBreakerHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The current state. Open → half-open happens lazily, on the first call
    /// after the open duration, so an expired `Open` reads as `Open` until
    /// then.
    pub fn state(&self) -> CircuitState {
        self.core.state()
    }

    /// The breaker's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.core.name().map(|n| &**n)
    }

    /// Opens the breaker until [`reset`](Self::reset): every call is rejected.
    pub fn force_open(&self) {
        self.core.force(CircuitState::ForcedOpen, self.core.now());
    }

    /// Lets every call through until [`reset`](Self::reset); outcomes are
    /// still counted, but no rule trips.
    pub fn disable(&self) {
        self.core.force(CircuitState::Disabled, self.core.now());
    }

    /// Closes the breaker afresh: empties the window and the failure run, and
    /// the next open starts again at the base duration. Calls in flight at
    /// that moment belong to the old generation: their results are counted
    /// as late and move nothing.
    pub fn reset(&self) {
        self.core.force(CircuitState::Closed, self.core.now());
    }

    /// The breaker's counters and current rates.
    pub fn snapshot(&self) -> CircuitBreakerSnapshot {
        let s = self.core.snapshot(self.core.now());
        let rate = |n: u64, of: u64| (of > 0).then(|| 100.0 * n as f64 / of as f64);
        CircuitBreakerSnapshot {
            name: self.core.name().cloned(),
            state: s.state,
            successes: s.successes,
            failures: s.failures,
            ignored: s.ignored,
            slow_calls: s.slow,
            rejected: s.rejected,
            late: s.late,
            cancelled: s.cancelled,
            opened: s.opened,
            half_opened: s.half_opened,
            closed: s.closed,
            window_calls: s.window.map_or(0, |w| w.calls),
            failure_rate: s.window.and_then(|w| rate(w.failures, w.calls)),
            slow_call_rate: s.window.and_then(|w| rate(w.slow, w.calls)),
            consecutive_failures: s.consecutive_failures,
            time_open: Duration::from_nanos(s.open_total),
            time_in_state: Duration::from_nanos(s.in_state),
            retry_after: s.retry_after.map(Duration::from_nanos),
            probes_in_flight: s.probes_in_flight,
        }
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

/// A breaker's counters at one moment, from [`CircuitBreakerHandle::snapshot`].
///
/// Counters count since the breaker was made; rates are over the current
/// window. Call outcomes are counted in every state, results that arrive
/// after the breaker changed state included.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerSnapshot {
    /// The breaker's name, shared with the breaker (no copy).
    pub name: Option<Arc<str>>,
    /// The state.
    pub state: CircuitState,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls classified as ignored (including rejections by inner layers of this crate).
    pub ignored: u64,
    /// Calls slower than the slow-call duration.
    pub slow_calls: u64,
    /// Calls the breaker rejected with `CircuitOpen`.
    pub rejected: u64,
    /// Results that arrived after the breaker had changed state since the
    /// call was admitted: counted above, but they moved nothing.
    pub late: u64,
    /// Calls whose future was dropped before the result came.
    pub cancelled: u64,
    /// Transitions to open or forced open.
    pub opened: u64,
    /// Transitions to half-open.
    pub half_opened: u64,
    /// Transitions back to closed.
    pub closed: u64,
    /// Calls in the current window.
    pub window_calls: u64,
    /// Failures in the current window, in percent (`None` when it is empty
    /// or no rate rule is set).
    pub failure_rate: Option<f64>,
    /// Slow calls in the current window, in percent.
    pub slow_call_rate: Option<f64>,
    /// The current run of consecutive failures.
    pub consecutive_failures: u32,
    /// Total time spent open or forced open.
    pub time_open: Duration,
    /// Time since the last state change (since the breaker was made, when
    /// it never changed state). A [`reset`](CircuitBreakerHandle::reset)
    /// of a closed breaker is no state change.
    pub time_in_state: Duration,
    /// While open: time until the next probe is admitted.
    pub retry_after: Option<Duration>,
    /// While half-open: probes admitted and not yet finished.
    pub probes_in_flight: u32,
}

impl fmt::Display for CircuitBreakerSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "{} | ok {} fail {} ignored {} rejected {} | opened {} half-opened {} closed {} | open for {:.1?}",
            self.state,
            self.successes,
            self.failures,
            self.ignored,
            self.rejected,
            self.opened,
            self.half_opened,
            self.closed,
            self.time_open,
        )?;
        if let Some(rate) = self.failure_rate {
            write!(
                f,
                " | window {} calls, {rate:.1}% failed",
                self.window_calls
            )?;
        }
        Ok(())
    }
}
