//! The response future of [`Idempotency`](super::Idempotency).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::IdempotencyBody;
use super::layer::Config;

/// The boxed keyed flow (buffer, claim, call, store).
pub(crate) type Flow<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<IdempotencyBody<B>>, E>> + Send>>;

/// Spawns the rest of a dropped flow; made where the flow's output is known
/// to be `Send + 'static`.
pub(crate) type Detach<B, E> = fn(Flow<B, E>, &Config);

pin_project! {
    /// The response future of [`Idempotency`](super::Idempotency).
    ///
    /// Requests that pass through (no key, other methods) poll the inner
    /// future in place; requests the layer rejects at once are ready; keyed
    /// requests run a boxed flow (buffer, claim, call, store). Dropping it
    /// after the claim, before the handler began, releases the key (see
    /// [`spawn_release_with`](super::IdempotencyLayerBuilder::spawn_release_with));
    /// dropping it once the handler began finishes the flow in a task, or
    /// releases the key, as
    /// [`on_disconnect`](super::IdempotencyLayerBuilder::on_disconnect) says.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Passthrough { #[pin] fut: F },
        Ready { res: Option<Response<IdempotencyBody<B>>> },
        Flow { fut: KeyedFlow<B, E> },
    }
}

/// A keyed flow that, dropped after its handler began, is finished in a
/// task ([`OnDisconnect::Complete`](super::OnDisconnect::Complete)).
pub(crate) struct KeyedFlow<B, E> {
    /// `None` once it finished.
    fut: Option<Flow<B, E>>,
    /// Set by the flow when it calls the inner service; `None` with
    /// [`OnDisconnect::Abandon`](super::OnDisconnect::Abandon).
    started: Option<Arc<AtomicBool>>,
    config: Arc<Config>,
    detach: Detach<B, E>,
    /// Set while the flow is polled: still set when dropped, the poll
    /// panicked, and the flow cannot be resumed.
    in_poll: bool,
}

impl<B, E> Drop for KeyedFlow<B, E> {
    fn drop(&mut self) {
        let began = self
            .started
            .as_ref()
            .is_some_and(|started| started.load(Ordering::Acquire));
        if began && !self.in_poll {
            if let Some(fut) = self.fut.take() {
                (self.detach)(fut, &self.config);
            }
        }
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(fut: F) -> Self {
        Self {
            kind: Kind::Passthrough { fut },
        }
    }

    pub(crate) fn ready(res: Response<IdempotencyBody<B>>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }

    pub(crate) fn flow(
        fut: Flow<B, E>,
        started: Option<Arc<AtomicBool>>,
        config: Arc<Config>,
        detach: Detach<B, E>,
    ) -> Self {
        Self {
            kind: Kind::Flow {
                fut: KeyedFlow {
                    fut: Some(fut),
                    started,
                    config,
                    detach,
                    in_poll: false,
                },
            },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Ready { .. } => "ready",
            Kind::Flow { .. } => "flow",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<IdempotencyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { fut } => {
                let res = ready!(fut.poll(cx))?;
                Poll::Ready(Ok(res.map(IdempotencyBody::stream)))
            }
            KindProj::Ready { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Flow { fut } => {
                let flow = fut
                    .fut
                    .as_mut()
                    .expect("ResponseFuture polled after completion");
                fut.in_poll = true;
                let polled = flow.as_mut().poll(cx);
                fut.in_poll = false;
                let out = ready!(polled);
                fut.fut = None;
                Poll::Ready(out)
            }
        }
    }
}
