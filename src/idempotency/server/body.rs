//! [`IdempotencyBody`]: a body that is either passed through or held in memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A request or response body of the idempotency layer: either the
    /// original body streamed through untouched, or bytes held in memory
    /// (a buffered request, a stored or replayed response, a problem
    /// response).
    ///
    /// See the [module docs](crate::idempotency).
    #[derive(Debug)]
    pub struct IdempotencyBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Stream { #[pin] body: B },
        Full { data: Option<Bytes> },
        // A body read in part (past a cap, or up to trailers): the bytes read,
        // then the trailers read, then the rest.
        Prefixed { prefix: Option<Bytes>, trailers: Option<HeaderMap>, rest: Pin<Box<B>> },
    }
}

impl<B> IdempotencyBody<B> {
    /// The original body, streamed through.
    pub fn stream(body: B) -> Self {
        Self {
            kind: Kind::Stream { body },
        }
    }

    /// A body of `data`, held in memory.
    pub fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn prefixed(prefix: Bytes, trailers: Option<HeaderMap>, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                trailers,
                rest,
            },
        }
    }

    /// The bytes, when the body is held in memory and not yet read.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full { data } => data.as_ref(),
            Kind::Stream { .. } | Kind::Prefixed { .. } => None,
        }
    }
}

impl<B> Body for IdempotencyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Stream { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Prefixed {
                prefix,
                trailers,
                rest,
            } => {
                if let Some(d) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                if let Some(t) = trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                rest.as_mut().poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Prefixed {
                prefix,
                trailers,
                rest,
            } => prefix.is_none() && trailers.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Prefixed { prefix, rest, .. } => {
                let extra = prefix.as_ref().map_or(0, |d| d.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}
