//! The errors of [`Timeout`](crate::timeout::Timeout) and
//! [`WithDeadline`](crate::timeout::WithDeadline).

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// One attempt took longer than its timeout.
///
/// A failure of the backend: a circuit breaker counts it, and retry may
/// send the call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    timeout: Duration,
}

impl Elapsed {
    /// An `Elapsed` after `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout that ran out.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.timeout)
    }
}

impl Error for Elapsed {}

/// The whole call's deadline passed before it finished.
///
/// Not a failure of the backend: a circuit breaker ignores it and retry
/// never repeats it (there is no time left to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    budget: Option<Duration>,
}

impl DeadlineExceeded {
    /// A `DeadlineExceeded` for a call that was given `budget` (when known).
    pub const fn new(budget: Option<Duration>) -> Self {
        Self { budget }
    }

    /// How long the call was given, when the layer that gave up knows it.
    pub const fn budget(&self) -> Option<Duration> {
        self.budget
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.budget {
            Some(budget) => write!(f, "deadline exceeded (the call had {budget:?})"),
            None => f.write_str("deadline exceeded"),
        }
    }
}

impl Error for DeadlineExceeded {}
