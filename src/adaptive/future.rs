//! The response future of [`AdaptiveLimit`](super::AdaptiveLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::core::Core;
use crate::classify::{Classify, Outcome};

pin_project! {
    /// The response future of [`AdaptiveLimit`](super::AdaptiveLimit): the
    /// inner future, and what the limit learns from it when it finishes.
    ///
    /// Dropped before it finishes, it teaches the limit nothing: a
    /// cancelled call is neither a drop nor an RTT sample.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        // `None` once the result has been taken into account.
        core: Option<Arc<Core>>,
        classify: C,
        start: Option<Instant>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn new(inner: F, core: Arc<Core>, classify: C, start: Option<Instant>) -> Self {
        Self {
            inner,
            core: Some(core),
            classify,
            start,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(core) = this.core.take() {
            match this.classify.classify(&result) {
                Outcome::Success => core.finish(*this.start, false),
                Outcome::Failure => core.finish(*this.start, true),
                Outcome::Ignored => {}
            }
        }
        Poll::Ready(result)
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.core.is_none())
            .finish_non_exhaustive()
    }
}
