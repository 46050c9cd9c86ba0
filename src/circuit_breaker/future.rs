//! The response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::{BreakerError, CircuitOpen};
use super::service::Node;
use super::state::Ticket;
use crate::classify::{Classify, Outcome};
use crate::error::{is_own_rejection, BoxError};

/// Holds an admitted call's ticket. Dropping it unfinished (the caller
/// cancelled) frees a probe slot and records nothing.
pub(crate) struct Guard<C> {
    node: Arc<Node<C>>,
    /// `None` once the outcome is recorded.
    ticket: Option<Ticket>,
}

impl<C> Guard<C> {
    #[inline]
    pub(crate) fn new(node: Arc<Node<C>>, ticket: Ticket) -> Self {
        Self {
            node,
            ticket: Some(ticket),
        }
    }

    /// Records the call's outcome, once.
    #[inline]
    fn finish<T>(&mut self, result: &Result<T, BoxError>)
    where
        C: Classify<T, BoxError>,
    {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let outcome = match result {
            Err(e) if is_own_rejection(e.as_ref()) => Outcome::Ignored,
            _ => self.node.classifier.classify(result),
        };
        let core = &self.node.core;
        core.complete(ticket, outcome, || core.now());
    }
}

impl<C> Drop for Guard<C> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            self.node.core.cancel(ticket);
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker):
    /// either the inner call, recorded when it finishes, or a rejection.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            guard: Guard<C>,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, guard: Guard<C>) -> Self {
        Self {
            kind: Kind::Called { future, guard },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, BoxError>,
{
    type Output = Result<T, BreakerError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, guard } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                guard.finish(&result);
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
            KindProj::Rejected { error } => {
                let error = error
                    .take()
                    .expect("circuit breaker ResponseFuture polled after completion");
                // In place: a rejection allocates nothing.
                Poll::Ready(Err(BreakerError::Open(error)))
            }
        }
    }
}
