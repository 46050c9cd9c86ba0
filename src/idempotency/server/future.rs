//! The response future of [`Idempotency`](super::Idempotency).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::body::IdempotencyBody;

type Flow<B, E> = Pin<Box<dyn Future<Output = Result<Response<IdempotencyBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`Idempotency`](super::Idempotency).
    ///
    /// Requests that pass through (no key, other methods) poll the inner
    /// future in place; requests the layer rejects at once are ready; keyed
    /// requests run a boxed flow (buffer, claim, call, store). Dropping it
    /// after the claim releases the key (see
    /// [`spawn_release_with`](super::IdempotencyLayerBuilder::spawn_release_with)).
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
        Flow { fut: Flow<B, E> },
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

    pub(crate) fn flow(fut: Flow<B, E>) -> Self {
        Self {
            kind: Kind::Flow { fut },
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
            KindProj::Flow { fut } => fut.as_mut().poll(cx),
        }
    }
}
