use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::core::Core;
use super::future::ResponseFuture;
use super::handle::AdaptiveHandle;
use crate::classify::Classify;

/// Measures each call and moves a bulkhead's limit; made by
/// [`AdaptiveLimitLayer`](super::AdaptiveLimitLayer).
///
/// It admits and rejects nothing itself: the bulkhead outside it does, at
/// the limit this service keeps setting. See the [module docs](super).
///
/// # Clone
///
/// Clones (and every service of the layer) feed one estimate and move one
/// limit.
pub struct AdaptiveLimit<S, C> {
    inner: S,
    core: Arc<Core>,
    classify: C,
}

// === impl AdaptiveLimit ===

impl<S, C> AdaptiveLimit<S, C> {
    pub(crate) fn new(inner: S, core: Arc<Core>, classify: C) -> Self {
        Self {
            inner,
            core,
            classify,
        }
    }

    /// A handle on the limit this service moves.
    pub fn handle(&self) -> AdaptiveHandle {
        AdaptiveHandle::new(self.core.clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, C: Clone> Clone for AdaptiveLimit<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("limit", &self.handle())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimit<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let start = self.core.start();
        ResponseFuture::new(
            self.inner.call(req),
            self.core.clone(),
            self.classify.clone(),
            start,
        )
    }
}
