//! The response futures of [`Timeout`](super::Timeout) and
//! [`WithDeadline`](super::WithDeadline).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::error::{DeadlineExceeded, Elapsed};
use crate::error::BoxError;

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Running { #[pin] future: F },
        // The inner future was dropped when the timer fired.
        Done,
    }
}

/// What the timer means when it fires, packed in 8 bytes (the response
/// future is moved whole whenever it is awaited, so every byte of it is
/// copied): the kind in the top two bits, a duration in nanoseconds in the
/// other 62.
///
/// A duration is kept exactly up to 2^62 ns (about 146 years) and saturates
/// there. Longer timeouts cannot fire anyway: the timer is set at most 30
/// years ahead ([`Deadline::after_from`](crate::deadline::Deadline::after_from)).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit(u64);

const KIND_SHIFT: u32 = 62;
const NANOS: u64 = (1 << KIND_SHIFT) - 1;
/// The attempt's own timeout.
const ATTEMPT: u64 = 0;
/// The call's deadline, with no budget to report.
const DEADLINE: u64 = 1 << KIND_SHIFT;
/// The call's deadline, with the budget this layer gave the call.
const DEADLINE_BUDGET: u64 = 2 << KIND_SHIFT;

/// Nanoseconds, saturating at what a [`Limit`] holds.
#[inline]
fn packed_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).map_or(NANOS, |n| n.min(NANOS))
}

impl Limit {
    /// The attempt's own timeout.
    #[inline]
    pub(crate) fn attempt(timeout: Duration) -> Self {
        Self(ATTEMPT | packed_nanos(timeout))
    }

    /// The call's deadline, given `Some(budget)` when this layer set it.
    #[inline]
    pub(crate) fn deadline(budget: Option<Duration>) -> Self {
        match budget {
            Some(budget) => Self(DEADLINE_BUDGET | packed_nanos(budget)),
            None => Self(DEADLINE),
        }
    }

    #[inline]
    fn duration(self) -> Duration {
        Duration::from_nanos(self.0 & NANOS)
    }

    fn error(self) -> BoxError {
        match self.0 & !NANOS {
            ATTEMPT => {
                let timeout = self.duration();
                tracing::debug!(
                    target: "steadfast::timeout",
                    layer = "timeout",
                    name = "",
                    event = "timed_out",
                    timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    "attempt timed out"
                );
                Box::new(Elapsed::new(timeout))
            }
            DEADLINE_BUDGET => deadline_exceeded(Some(self.duration())),
            _ => deadline_exceeded(None),
        }
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 & !NANOS {
            ATTEMPT => f.debug_tuple("Attempt").field(&self.duration()).finish(),
            DEADLINE_BUDGET => f
                .debug_tuple("Deadline")
                .field(&Some(self.duration()))
                .finish(),
            _ => f.debug_tuple("Deadline").field(&None::<Duration>).finish(),
        }
    }
}

/// Reports and builds a [`DeadlineExceeded`].
#[cold]
fn deadline_exceeded(budget: Option<Duration>) -> BoxError {
    tracing::debug!(
        target: "steadfast::deadline",
        layer = "deadline",
        name = "",
        event = "timed_out",
        "deadline exceeded"
    );
    Box::new(DeadlineExceeded::new(budget))
}

pin_project! {
    /// The response future of [`Timeout`](super::Timeout) and
    /// [`WithDeadline`](super::WithDeadline): the inner future raced
    /// against a timer.
    ///
    /// The inner future is polled first, so a response that is ready when
    /// the timer also is wins. An *error* that arrives once the timer is
    /// due is reported as the timer's error ([`Elapsed`] or
    /// [`DeadlineExceeded`]): it is the inner service's own timer for the
    /// same instant (a `reqwest::Request`'s timeout, which this crate sets
    /// to the time left; tonic's `grpc-timeout`), so the caller, retry and
    /// the breaker see one error for one cause, whichever timer the runtime
    /// woke first. When the timer wins, the inner future is dropped at once
    /// (its connection or permit is released then, not when this future is
    /// dropped).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
        #[pin]
        sleep: Sleep,
        limit: Limit,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(future: F, sleep: Sleep, limit: Limit) -> Self {
        Self {
            inner: Inner::Running { future },
            sleep,
            limit,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("limit", &self.limit)
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.inner.as_mut().project() {
            InnerProj::Running { future } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(match result {
                        Ok(response) => Ok(response),
                        Err(_) if Instant::now() >= this.sleep.deadline() => {
                            this.inner.set(Inner::Done);
                            Err(this.limit.error())
                        }
                        Err(e) => Err(e.into()),
                    });
                }
            }
            InnerProj::Done => panic!("timeout ResponseFuture polled after completion"),
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => {
                this.inner.set(Inner::Done);
                Poll::Ready(Err(this.limit.error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project! {
    /// The response future of [`WithDeadline`](super::WithDeadline).
    pub struct DeadlineFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // The call runs against the deadline.
        Running { #[pin] future: ResponseFuture<F> },
        // The call runs without a timer of its own: one inside ends it at
        // the deadline. An error at or after `deadline` is reported as the
        // deadline's, as with the timer (a bulkhead's wait cut by it).
        Untimed { #[pin] future: F, deadline: Instant },
        // The deadline had passed before the call: it was not made.
        Expired { budget: Option<Duration> },
        Done,
    }
}

impl<F> DeadlineFuture<F> {
    #[inline]
    pub(crate) fn running(future: ResponseFuture<F>) -> Self {
        Self {
            kind: Kind::Running { future },
        }
    }

    #[inline]
    pub(crate) fn untimed(future: F, deadline: Instant) -> Self {
        Self {
            kind: Kind::Untimed { future, deadline },
        }
    }

    pub(crate) fn expired(budget: Option<Duration>) -> Self {
        Self {
            kind: Kind::Expired { budget },
        }
    }
}

impl<F> fmt::Debug for DeadlineFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Running { future } => f.debug_tuple("Running").field(future).finish(),
            Kind::Untimed { .. } => f.write_str("Untimed"),
            Kind::Expired { .. } => f.write_str("Expired"),
            Kind::Done => f.write_str("Done"),
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            KindProj::Running { future } => future.poll(cx),
            KindProj::Untimed { future, deadline } => match ready!(future.poll(cx)) {
                Ok(response) => Poll::Ready(Ok(response)),
                Err(e) => {
                    let e = e.into();
                    if Instant::now() >= *deadline
                        && !crate::error::is_caused_by::<DeadlineExceeded>(e.as_ref())
                    {
                        Poll::Ready(Err(deadline_exceeded(None)))
                    } else {
                        Poll::Ready(Err(e))
                    }
                }
            },
            KindProj::Expired { budget } => {
                let error = deadline_exceeded(*budget);
                kind.set(Kind::Done);
                Poll::Ready(Err(error))
            }
            KindProj::Done => panic!("deadline future polled after completion"),
        }
    }
}
