//! [`RateLimit`]: the service.

use std::fmt;
use std::marker::PhantomData;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::future::{ResponseFuture, Ticket};
use super::gcra::Enqueued;
use super::shared::Shared;
use crate::deadline::{in_force, scope_now, Deadline, DeadlineOf, NoDeadline};
use crate::error::BoxError;
use crate::runtime;

pub(super) const LAYER: &str = "steadfast::rate_limit::RateLimit";

/// Admits calls at a configured rate, shared by every clone; rejects (or
/// queues) the calls over it.
///
/// # Clone
///
/// Clones share the limit (and its queue): see
/// [`RateLimitLayer`](super::RateLimitLayer#clone).
///
/// # Backpressure
///
/// `poll_ready` is the inner service's: the limiter reserves nothing there.
/// A call over the limit fails in its response future with
/// [`RateLimited`](super::error::RateLimited), or waits there for its turn.
///
/// See the [module docs](super) for an example.
pub struct RateLimit<S, D = NoDeadline> {
    inner: S,
    shared: Arc<Shared>,
    _deadline: PhantomData<fn() -> D>,
}

// === impl RateLimit ===

impl<S, D> RateLimit<S, D> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            _deadline: PhantomData,
        }
    }

    /// A handle on the shared limit.
    pub fn handle(&self) -> super::RateLimitHandle {
        super::RateLimitHandle::new(self.shared.clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, D> Clone for RateLimit<S, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            _deadline: PhantomData,
        }
    }
}

impl<S: fmt::Debug, D> fmt::Debug for RateLimit<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limit", &self.shared)
            .finish()
    }
}

fn refresh_deadline<D: DeadlineOf<Req> + Default, Req>(req: &mut Req, deadline: Deadline) {
    D::default().refresh(req, deadline);
}

/// A call that did not conform at `now`: reject it, or queue it.
#[inline(never)]
fn call_slow<S, D, Req>(
    this: &mut RateLimit<S, D>,
    req: Req,
    now: Instant,
    wait: Option<u64>,
) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    D: DeadlineOf<Req> + Default,
{
    let shared = &*this.shared;
    let limiter = &shared.limiter;
    if shared.max_wait.is_zero() {
        let wait = wait.unwrap_or_else(|| limiter.wait_at(limiter.nanos(now)));
        return ResponseFuture::rejected(shared.reject(Duration::from_nanos(wait), Duration::ZERO));
    }
    runtime::assert_timer(LAYER);
    let deadline = in_force(D::default().deadline_of(&req));
    let until = Deadline::after_from(now, shared.max_wait).earliest(deadline);
    let t = limiter.nanos(now);
    let until_nanos = limiter.nanos(until.instant());
    match limiter.enqueue(t, until_nanos, shared.max_waiting, Waker::noop()) {
        Enqueued::Admitted => ResponseFuture::called(this.inner.call(req)),
        Enqueued::Rejected(retry_after) => {
            ResponseFuture::rejected(shared.reject(retry_after, Duration::ZERO))
        }
        Enqueued::Queued(id) => {
            // The readied service goes with the call; its clone stays.
            let clone = this.inner.clone();
            let service = mem::replace(&mut this.inner, clone);
            let refresh =
                deadline.map(|d| (d, refresh_deadline::<D, Req> as fn(&mut Req, Deadline)));
            let ticket = Ticket::new(this.shared.clone(), id);
            ResponseFuture::waiting(service, req, ticket, now, until.instant(), refresh)
        }
    }
}

impl<S, D, Req> Service<Req> for RateLimit<S, D>
where
    D: DeadlineOf<Req> + Default,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // A layer outside that read the clock in this same call (the
        // preset's deadline piece) saves us the read.
        if self.shared.off {
            return ResponseFuture::called(self.inner.call(req));
        }
        let now = scope_now().unwrap_or_else(Instant::now);
        let limiter = &self.shared.limiter;
        match limiter.try_acquire(limiter.nanos(now)) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(wait) => call_slow(self, req, now, wait),
        }
    }
}
