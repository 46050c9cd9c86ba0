//! The response future of [`Metrics`](super::Metrics).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::handle::Counts;
use super::service::Node;
use super::thread_stripe;
use crate::classify::{Classify, Outcome};
use crate::error::{is_attempt_timeout, BoxError};
use crate::rejection::Rejection;

/// One call in flight: counted as cancelled if dropped unfinished.
pub(crate) struct Guard<C> {
    node: Arc<Node<C>>,
    start: Instant,
    armed: bool,
}

impl<C> Guard<C> {
    #[inline]
    pub(crate) fn new(node: Arc<Node<C>>, start: Instant) -> Self {
        Self {
            node,
            start,
            armed: true,
        }
    }

    #[inline]
    fn finish<T>(&mut self, result: &Result<T, BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        self.armed = false;
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let core = &self.node.core;
        let stripe = thread_stripe();
        let counts = core.counts.get(stripe);
        let outcome = match result {
            Err(e) => match own_ending(counts, e) {
                Some(outcome) => outcome,
                None => self.node.classifier.classify(result),
            },
            Ok(_) => self.node.classifier.classify(result),
        };
        match outcome {
            Outcome::Success => counts.successes.incr(stripe),
            Outcome::Failure => counts.failures.incr(stripe),
            Outcome::Ignored => counts.ignored.incr(stripe),
        }
        core.duration.record(elapsed);
    }
}

/// Counts the reason when one of this crate's layers ended the call, and
/// says what that means; `None` for anyone else's error.
#[cold]
fn own_ending(counts: &Counts, err: &BoxError) -> Option<Outcome> {
    let stripe = thread_stripe();
    let count = |c: &super::Count| c.incr(stripe);
    match Rejection::of(err) {
        Some(Rejection::CircuitOpen { .. }) => count(&counts.circuit_open),
        Some(Rejection::BulkheadFull { .. }) => count(&counts.bulkhead_full),
        Some(Rejection::RateLimited { .. }) => count(&counts.rate_limited),
        Some(Rejection::DeadlineExceeded { .. }) => count(&counts.deadline_exceeded),
        Some(Rejection::TimedOut { .. }) => {
            count(&counts.timed_out);
            return Some(Outcome::Failure);
        }
        None if is_attempt_timeout(err.as_ref()) => {
            count(&counts.timed_out);
            return Some(Outcome::Failure);
        }
        None => return None,
    }
    Some(Outcome::Ignored)
}

impl<C> Drop for Guard<C> {
    fn drop(&mut self) {
        if self.armed {
            let stripe = thread_stripe();
            self.node.core.counts.get(stripe).cancelled.incr(stripe);
        }
    }
}

pin_project! {
    /// The response future of [`Metrics`](super::Metrics): the inner call,
    /// counted and timed when it finishes.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        guard: Option<Guard<C>>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn new(inner: F, guard: Option<Guard<C>>) -> Self {
        Self { inner, guard }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "name",
                &self.guard.as_ref().map_or("", |g| &*g.node.core.name),
            )
            .finish_non_exhaustive()
    }
}

impl<F, T, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        if let Some(guard) = this.guard {
            if guard.armed {
                guard.finish(&result);
            }
        }
        Poll::Ready(result)
    }
}
