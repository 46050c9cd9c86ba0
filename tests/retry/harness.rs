//! Backends that record when they are called, and exact retry counters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::retry::{Backoff, RetryConfigBuilder, RetryHandle};
use steadfast::retry::{RetryConfig, RetrySnapshot};
use steadfast::BoxError;
use tokio::time::Instant;
use tower::{service_fn, Service};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn offsets(list: &[u64]) -> Vec<Duration> {
    list.iter().copied().map(ms).collect()
}

/// No budget, a fixed 100 ms backoff, the default three attempts.
pub(crate) fn quick() -> RetryConfigBuilder {
    RetryConfig::builder()
        .no_budget()
        .backoff(Backoff::fixed(ms(100)))
}

/// Every counter of a [`RetrySnapshot`] but the derived ones (`give_ups`
/// and `attempts` are checked against their parts by [`Counts::of`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    pub(crate) exhausted: u64,
    pub(crate) deadline: u64,
    pub(crate) server_hint: u64,
    pub(crate) refused: u64,
    pub(crate) unsafe_: u64,
    pub(crate) unreplayable: u64,
}

impl Counts {
    /// The counters of `handle` now; panics if the derived ones disagree.
    pub(crate) fn of(handle: &RetryHandle) -> Self {
        Self::from_snapshot(&handle.snapshot())
    }

    pub(crate) fn from_snapshot(s: &RetrySnapshot) -> Self {
        assert_eq!(s.attempts, s.calls + s.retries, "attempts: {s}");
        assert_eq!(
            s.give_ups,
            s.exhausted + s.deadline_reached + s.server_hint,
            "give_ups: {s}"
        );
        Self {
            calls: s.calls,
            attempts: s.attempts,
            retries: s.retries,
            exhausted: s.exhausted,
            deadline: s.deadline_reached,
            server_hint: s.server_hint,
            refused: s.refused_by_budget,
            unsafe_: s.skipped_unsafe,
            unreplayable: s.skipped_unreplayable,
        }
    }

    /// One call that made `attempts` attempts, nothing skipped.
    pub(crate) fn call(attempts: u64) -> Self {
        Self {
            calls: 1,
            attempts,
            retries: attempts - 1,
            ..Self::default()
        }
    }
}

/// When a backend was called: offsets from the moment the log was made.
#[derive(Clone, Debug)]
pub(crate) struct Calls {
    start: Instant,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            at: Arc::default(),
        }
    }

    /// Records a call now; returns its number, counting from 1.
    pub(crate) fn record(&self) -> usize {
        let mut at = self.at.lock().unwrap();
        at.push(self.start.elapsed());
        at.len()
    }

    pub(crate) fn offsets(&self) -> Vec<Duration> {
        self.at.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.at.lock().unwrap().len()
    }

    /// Virtual time since the log was made.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A backend that fails its first `failures` calls with `attempt N failed`
/// and answers later ones with the call number.
pub(crate) fn flaky(
    failures: usize,
    calls: &Calls,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    let calls = calls.clone();
    service_fn(move |_: u32| {
        let n = calls.record();
        async move {
            if n <= failures {
                Err(format!("attempt {n} failed").into())
            } else {
                Ok(u32::try_from(n).unwrap())
            }
        }
    })
}

/// A backend that always fails.
pub(crate) fn down(
    calls: &Calls,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    flaky(usize::MAX, calls)
}
