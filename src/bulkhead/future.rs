//! The response future of [`Bulkhead`](super::Bulkhead).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{BulkheadFull, FullReason};
use super::permit::{Permit, Shared, Ticket};
use super::policy::{HoldPermit, ReleaseOnResponse};
use crate::deadline::Deadline;
use crate::error::BoxError;

pin_project! {
    /// The response future of [`Bulkhead`](super::Bulkhead): the inner call
    /// holding its slot, a call waiting in the queue for one, or a
    /// rejection.
    ///
    /// A waiting call polls the queue first and its timer second, so a slot
    /// handed over as the wait runs out is used. The timer starts when the
    /// call joins the queue, in `call`.
    pub struct ResponseFuture<S, Req, H = ReleaseOnResponse>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        _hold: PhantomData<fn() -> H>,
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
            permit: Option<Permit>,
        },
        Waiting {
            queued: Pin<Box<Queued<S, Req>>>,
        },
        Rejected {
            error: Option<BoxError>,
        },
    }
}

/// A queued request's deadline, and how to tell the next hop the time left
/// before it once the wait is over.
pub(crate) type Refresh<Req> = (Deadline, fn(&mut Req, Deadline));

pin_project! {
    /// A call waiting for a slot: boxed, so the fast path's future stays small.
    struct Queued<S, Req> {
        service: Option<S>,
        request: Option<Req>,
        ticket: Ticket,
        shared: Arc<Shared>,
        since: Instant,
        until: Instant,
        // The request's deadline, and how to tell the next hop the time
        // left before it once the wait is over.
        refresh: Option<Refresh<Req>>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<S, Req, H> ResponseFuture<S, Req, H>
where
    S: Service<Req>,
{
    #[inline]
    pub(crate) fn called(future: S::Future, permit: Permit) -> Self {
        Self::new(Kind::Called {
            future,
            permit: Some(permit),
        })
    }

    pub(crate) fn rejected(error: BulkheadFull) -> Self {
        Self::new(Kind::Rejected {
            error: Some(Box::new(error)),
        })
    }

    pub(crate) fn waiting(
        service: S,
        request: Req,
        ticket: Ticket,
        shared: Arc<Shared>,
        since: Instant,
        until: Instant,
        refresh: Option<Refresh<Req>>,
    ) -> Self {
        Self::new(Kind::Waiting {
            queued: Box::pin(Queued {
                service: Some(service),
                request: Some(request),
                ticket,
                shared,
                since,
                until,
                refresh,
                sleep: None,
            }),
        })
    }

    #[inline]
    fn new(kind: Kind<S, Req>) -> Self {
        Self {
            kind,
            _hold: PhantomData,
        }
    }
}

impl<S, Req, H> fmt::Debug for ResponseFuture<S, Req, H>
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

impl<S, Req, H> Future for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    H: HoldPermit<S::Response>,
{
    type Output = Result<H::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let next = match kind.as_mut().project() {
                KindProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    let permit = permit
                        .take()
                        .expect("bulkhead ResponseFuture polled after completion");
                    return Poll::Ready(match result {
                        Ok(response) => Ok(H::hold(response, permit)),
                        Err(e) => {
                            drop(permit);
                            Err(e.into())
                        }
                    });
                }
                KindProj::Rejected { error } => {
                    let error = error
                        .take()
                        .expect("bulkhead ResponseFuture polled after completion");
                    return Poll::Ready(Err(error));
                }
                KindProj::Waiting { queued } => ready!(poll_queued(queued.as_mut(), cx)),
            };
            kind.set(next);
        }
    }
}

/// Waits for a slot; then makes the call, or rejects it when the wait
/// runs out.
fn poll_queued<S, Req>(queued: Pin<&mut Queued<S, Req>>, cx: &mut Context<'_>) -> Poll<Kind<S, Req>>
where
    S: Service<Req>,
{
    let mut q = queued.project();
    let permit = match q.ticket.poll(cx) {
        Poll::Ready(permit) => permit,
        Poll::Pending => {
            if q.sleep.is_none() {
                q.sleep.set(Some(crate::runtime::sleep_until(
                    super::service::LAYER,
                    *q.until,
                )));
            }
            if let Some(sleep) = q.sleep.as_mut().as_pin_mut() {
                ready!(sleep.poll(cx));
            }
            match q.ticket.cancel() {
                Some(permit) => permit,
                None => {
                    let waited = Instant::now().saturating_duration_since(*q.since);
                    let full = q.shared.reject(FullReason::WaitTimedOut, waited);
                    return Poll::Ready(Kind::Rejected {
                        error: Some(Box::new(full)),
                    });
                }
            }
        }
    };
    let (Some(mut service), Some(mut request)) = (q.service.take(), q.request.take()) else {
        unreachable!("a queued call is started once")
    };
    let future = match q.refresh.take() {
        Some((deadline, refresh)) => {
            refresh(&mut request, deadline);
            // Called later than in `Bulkhead::call`: the deadline goes back
            // in scope for the layers inside (see `crate::deadline`).
            let _scope = deadline.enter();
            service.call(request)
        }
        None => service.call(request),
    };
    Poll::Ready(Kind::Called {
        future,
        permit: Some(permit),
    })
}
