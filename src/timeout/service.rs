use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::future::{DeadlineFuture, Limit, ResponseFuture};
use crate::deadline::{CarriesDeadline, Deadline, DeadlineOf, NoDeadline};
use crate::error::BoxError;
use crate::runtime;

const TIMEOUT: &str = "steadfast::timeout::Timeout";
const WITH_DEADLINE: &str = "steadfast::timeout::WithDeadline";

/// Bounds each call to the inner service by a timeout; made by
/// [`TimeoutLayer`](super::TimeoutLayer).
///
/// With [`TimeoutLayer::deadline_aware`](super::TimeoutLayer::deadline_aware)
/// the timer is `min(timeout, time left before the request's deadline)`,
/// and when the deadline is what ran out the error is
/// [`DeadlineExceeded`](super::error::DeadlineExceeded), not
/// [`Elapsed`](super::error::Elapsed).
///
/// # Panics
///
/// A `call` panics, before calling the inner service, unless it runs
/// within a Tokio runtime with time enabled: "steadfast::timeout::Timeout
/// needs a Tokio runtime with time enabled (…)".
#[derive(Clone)]
pub struct Timeout<S, D = NoDeadline> {
    inner: S,
    timeout: Duration,
    /// `timeout`, packed once for every response future.
    limit: Limit,
    deadline: D,
}

impl<S, D> Timeout<S, D> {
    pub(crate) fn from_parts(inner: S, timeout: Duration, deadline: D) -> Self {
        Self {
            inner,
            timeout,
            limit: Limit::attempt(timeout),
            deadline,
        }
    }

    /// The timeout of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug, D> fmt::Debug for Timeout<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<S, D, Req> Service<Req> for Timeout<S, D>
where
    // First, so that the compiler names it when `.oneshot(req)` does not
    // resolve for a deadline-aware timeout.
    D: DeadlineOf<Req>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        // The timer starts here, in `call`, not in `poll_ready`: now, or
        // when the deadline piece just outside read the clock in this same
        // `call` (the preset stack).
        let now = crate::deadline::scope_now().unwrap_or_else(Instant::now);
        let attempt = Deadline::after_from(now, self.timeout);
        // With the time this timer allows: the timeout, or the time left
        // (not computed when the timeout is what runs: without
        // `deadline_aware` nothing reads it).
        let (at, limit, allowed) = match self.deadline.deadline_of(&req) {
            Some(deadline) if attempt > deadline => (
                deadline.instant(),
                Limit::deadline(None),
                deadline.remaining_at(now),
            ),
            _ => (attempt.instant(), self.limit, self.timeout),
        };
        // The next hop gets what this timer allows (gRPC: `grpc-timeout`),
        // not the whole call's time left; nothing without `deadline_aware`.
        self.deadline.propagate_attempt_timeout(&mut req, allowed);
        match runtime::checked_already() {
            // This task's runtime has a timer: the sleep is made in place.
            Ok(()) => {
                ResponseFuture::new(self.inner.call(req), tokio::time::sleep_until(at), limit)
            }
            // Checked before the inner call, so a missing runtime panics
            // before the request is sent.
            Err(task) => {
                let sleep = runtime::checked_sleep_until(TIMEOUT, task, at);
                ResponseFuture::new(self.inner.call(req), sleep, limit)
            }
        }
    }
}

/// Bounds a whole call by a deadline and carries it with the request; made
/// by [`DeadlineLayer`](super::DeadlineLayer).
///
/// # Panics
///
/// A `call` with time left panics, before calling the inner service,
/// unless it runs within a Tokio runtime with time enabled:
/// "steadfast::timeout::WithDeadline needs a Tokio runtime with time enabled
/// (…)".
#[derive(Clone)]
pub struct WithDeadline<S> {
    inner: S,
    timeout: Duration,
    honor_incoming: bool,
    /// The deadline goes in scope around the inner call, not into the
    /// request (the preset stack's mode; see `crate::deadline`).
    in_scope: bool,
    /// `false`: no timer of its own, an attempt timeout inside covers the
    /// deadline (the preset stack's mode; see `DeadlineLayer::untimed`).
    timer: bool,
}

impl<S> WithDeadline<S> {
    pub(crate) fn from_parts(
        inner: S,
        timeout: Duration,
        honor_incoming: bool,
        in_scope: bool,
        timer: bool,
    ) -> Self {
        Self {
            inner,
            timeout,
            honor_incoming,
            in_scope,
            timer,
        }
    }

    /// How long each call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for WithDeadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithDeadline")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("honor_incoming", &self.honor_incoming)
            .finish()
    }
}

impl<S, Req> Service<Req> for WithDeadline<S>
where
    // First, so that a request type without a deadline is what the
    // compiler names when `.oneshot(req)` does not resolve.
    Req: CarriesDeadline,
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        // Now, or when a layer just outside read the clock in this same
        // `call` (the preset's metrics piece).
        let now = crate::deadline::scope_now().unwrap_or_else(Instant::now);
        let mut deadline = Deadline::after_from(now, self.timeout);
        if self.honor_incoming {
            if let Some(incoming) = req.incoming_timeout() {
                deadline = deadline.earliest(Some(Deadline::after_from(now, incoming)));
            }
        }
        // An earlier deadline set further out is kept: one in scope, or one
        // the request carries.
        let deadline = deadline.earliest(Deadline::current());
        let deadline = if self.in_scope {
            deadline.earliest(req.deadline())
        } else {
            req.tighten_deadline(deadline)
        };
        let remaining = deadline.remaining_at(now);
        if remaining.is_zero() {
            return DeadlineFuture::expired(Some(remaining));
        }
        req.propagate_timeout(remaining);
        // Two branches, not an `Option<Sleep>`: the single path with an
        // optional timer measured 100 instructions more per preset call.
        if !self.timer {
            // The attempt timeout inside ends the call at the deadline.
            let future = if self.in_scope {
                let _scope = deadline.enter_at(now);
                self.inner.call(req)
            } else {
                self.inner.call(req)
            };
            return DeadlineFuture::untimed(future, deadline.instant());
        }
        let sleep = runtime::sleep_until(WITH_DEADLINE, deadline.instant());
        let future = if self.in_scope {
            let _scope = deadline.enter_at(now);
            self.inner.call(req)
        } else {
            self.inner.call(req)
        };
        DeadlineFuture::running(ResponseFuture::new(
            future,
            sleep,
            Limit::deadline(Some(remaining)),
        ))
    }
}
