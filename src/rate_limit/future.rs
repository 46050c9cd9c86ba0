//! [`ResponseFuture`]: the future of a [`RateLimit`](super::RateLimit) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::RateLimited;
use super::gcra::Turn;
use super::shared::Shared;
use crate::deadline::Deadline;
use crate::error::BoxError;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): the inner
    /// call, a call waiting for its turn, or a rejection.
    ///
    /// A waiting call that is dropped leaves the queue, and the callers
    /// behind it move up.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Waiting {
            queued: Pin<Box<Queued<S, Req>>>,
        },
        // Boxed when the call is rejected: a `RateLimited` (two
        // `Duration`s, 32 bytes) inline would make every future that
        // large, admitted ones included; a rejection allocates once
        // either way.
        Rejected {
            error: Option<BoxError>,
        },
    }
}

type Refresh<Req> = (Deadline, fn(&mut Req, Deadline));

/// A place in the limiter's queue; leaves it when dropped.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    queued: bool,
}

impl Ticket {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Self {
        Self {
            shared,
            id,
            queued: true,
        }
    }

    /// Leaves the queue (a waiter that gave up).
    fn leave(&mut self) {
        if self.queued {
            self.queued = false;
            self.shared.limiter.cancel_waiter(self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.queued {
            self.shared.count_cancelled();
            self.leave();
        }
    }
}

pin_project! {
    struct Queued<S, Req> {
        service: Option<S>,
        request: Option<Req>,
        ticket: Ticket,
        since: Instant,
        // The latest the call may wait: `max_wait` or the deadline.
        until: Instant,
        refresh: Option<Refresh<Req>>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            kind: Kind::Called { future },
        }
    }

    pub(crate) fn rejected(error: RateLimited) -> Self {
        Self {
            kind: Kind::Rejected {
                error: Some(Box::new(error)),
            },
        }
    }

    pub(crate) fn waiting(
        service: S,
        request: Req,
        ticket: Ticket,
        since: Instant,
        until: Instant,
        refresh: Option<Refresh<Req>>,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                queued: Box::pin(Queued {
                    service: Some(service),
                    request: Some(request),
                    ticket,
                    since,
                    until,
                    refresh,
                    sleep: None,
                }),
            },
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Waiting { .. } => "waiting",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        // The admitted call, on its own: nothing of the slow paths below
        // is inlined into the caller's loop.
        if let KindProj::Called { future } = kind.as_mut().project() {
            return future.poll(cx).map_err(Into::into);
        }
        poll_slow(kind, cx)
    }
}

/// A rejected call, or one waiting for its turn (then called).
#[inline(never)]
fn poll_slow<S, Req>(
    mut kind: Pin<&mut Kind<S, Req>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    loop {
        let next = match kind.as_mut().project() {
            KindProj::Called { future } => return future.poll(cx).map_err(Into::into),
            KindProj::Rejected { error } => {
                let error = error
                    .take()
                    .expect("rate limit ResponseFuture polled after completion");
                return Poll::Ready(Err(error));
            }
            KindProj::Waiting { queued } => ready!(poll_queued(queued.as_mut(), cx)),
        };
        kind.set(next);
    }
}

fn poll_queued<S, Req>(queued: Pin<&mut Queued<S, Req>>, cx: &mut Context<'_>) -> Poll<Kind<S, Req>>
where
    S: Service<Req>,
{
    let mut q = queued.project();
    let shared = q.ticket.shared.clone();
    let limiter = &shared.limiter;
    loop {
        let now = Instant::now();
        let wake_at = match limiter.poll_waiter(q.ticket.id, limiter.nanos(now), cx.waker()) {
            Turn::Admitted => break,
            Turn::HeadAt(at) => limiter.instant(at).min(*q.until),
            Turn::Behind => *q.until,
        };
        if now >= *q.until {
            // Out of time before the turn came.
            q.ticket.leave();
            let waited = now.saturating_duration_since(*q.since);
            let t = limiter.nanos(now);
            let behind = limiter.waiting().saturating_mul(limiter.interval_nanos());
            let retry_after = Duration::from_nanos(limiter.wait_at(t).saturating_add(behind));
            return Poll::Ready(Kind::Rejected {
                error: Some(Box::new(shared.reject(retry_after, waited))),
            });
        }
        match q.sleep.as_mut().as_pin_mut() {
            Some(sleep) => {
                if sleep.deadline() != wake_at {
                    sleep.reset(wake_at);
                }
            }
            None => q.sleep.set(Some(crate::runtime::sleep_until(
                super::service::LAYER,
                wake_at,
            ))),
        }
        if let Some(sleep) = q.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
        }
    }
    q.ticket.queued = false;
    shared.count_waited();
    let (Some(mut service), Some(mut request)) = (q.service.take(), q.request.take()) else {
        unreachable!("a queued call is started once")
    };
    let future = match q.refresh.take() {
        Some((deadline, refresh)) => {
            refresh(&mut request, deadline);
            // Called later than in `RateLimit::call`: the deadline goes
            // back in scope for the layers inside (see `crate::deadline`).
            let _scope = deadline.enter();
            service.call(request)
        }
        None => service.call(request),
    };
    Poll::Ready(Kind::Called { future })
}
