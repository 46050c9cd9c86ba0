//! The response future of [`FaultService`](super::FaultService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::InjectedReset;
use crate::error::BoxError;

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res> {
        // The inner call, returned as it is.
        Pass { #[pin] future: F },
        // The inner call, whose result is replaced by a reset.
        Reset { #[pin] future: F },
        // An injected error, taken when returned.
        Fail { error: Option<BoxError> },
        // An injected response, taken when returned.
        Respond { response: Option<Res> },
        // Never completes.
        Hang,
    }
}

pin_project! {
    /// The response future of [`FaultService`](super::FaultService): an
    /// optional delay, then the inner call or the injected fault.
    ///
    /// The delay's timer starts in `call`. The inner call's future is
    /// made in `call` too, and polled only once the delay has passed: for
    /// the usual service, whose future does nothing until polled, the
    /// request leaves after the delay. Dropping the future at any point —
    /// during the delay, a hang or the inner call — drops the timer and
    /// the inner future with it.
    pub struct ResponseFuture<F, Res> {
        #[pin]
        sleep: Option<Sleep>,
        #[pin]
        kind: Kind<F, Res>,
    }
}

impl<F, Res> ResponseFuture<F, Res> {
    pub(super) fn pass(sleep: Option<Sleep>, future: F) -> Self {
        Self {
            sleep,
            kind: Kind::Pass { future },
        }
    }

    pub(super) fn reset(sleep: Option<Sleep>, future: F) -> Self {
        Self {
            sleep,
            kind: Kind::Reset { future },
        }
    }

    pub(super) fn fail(sleep: Option<Sleep>, error: BoxError) -> Self {
        Self {
            sleep,
            kind: Kind::Fail { error: Some(error) },
        }
    }

    pub(super) fn respond(sleep: Option<Sleep>, response: Res) -> Self {
        Self {
            sleep,
            kind: Kind::Respond {
                response: Some(response),
            },
        }
    }

    pub(super) fn hang(sleep: Option<Sleep>) -> Self {
        Self {
            sleep,
            kind: Kind::Hang,
        }
    }
}

impl<F, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Pass { .. } => "Pass",
            Kind::Reset { .. } => "Reset",
            Kind::Fail { .. } => "Fail",
            Kind::Respond { .. } => "Respond",
            Kind::Hang => "Hang",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .field("delay_until", &self.sleep.as_ref().map(|s| s.deadline()))
            .finish()
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
        }
        match this.kind.project() {
            KindProj::Pass { future } => future.poll(cx).map_err(Into::into),
            KindProj::Reset { future } => {
                // The request was sent; whatever came back is lost.
                drop(ready!(future.poll(cx)));
                Poll::Ready(Err(Box::new(InjectedReset::new())))
            }
            KindProj::Fail { error } => Poll::Ready(Err(error
                .take()
                .expect("chaos ResponseFuture polled after completion"))),
            KindProj::Respond { response } => Poll::Ready(Ok(response
                .take()
                .expect("chaos ResponseFuture polled after completion"))),
            KindProj::Hang => Poll::Pending,
        }
    }
}
