//! [`Metrics`], the service of [`MetricsLayer`](super::MetricsLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::{Guard, ResponseFuture};
use super::handle::Core;
use super::thread_stripe;
use crate::classify::Classify;
use crate::error::BoxError;

/// The counters and the classifier, shared by the layer, its services and
/// each call in flight.
pub(crate) struct Node<C> {
    pub(crate) core: Core,
    pub(crate) classifier: C,
}

impl<C: Send + Sync> super::handle::HasCore for Node<C> {
    fn core(&self) -> &Core {
        &self.core
    }
}

/// Counts and times each call to the inner service; made by
/// [`MetricsLayer`](super::MetricsLayer).
pub struct Metrics<S, C> {
    inner: S,
    node: Option<Arc<Node<C>>>,
}

impl<S, C> Metrics<S, C> {
    pub(crate) fn new(inner: S, node: Option<Arc<Node<C>>>) -> Self {
        Self { inner, node }
    }

    /// The name of the layer that made this service.
    pub fn name(&self) -> &str {
        self.node.as_ref().map_or("", |node| &node.core.name)
    }

    define_inner_service_accessors!();
}

impl<S: Clone, C> Clone for Metrics<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            node: self.node.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Metrics<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .field("name", &self.name())
            .finish()
    }
}

impl<S, C, Req> Service<Req> for Metrics<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Every piece's `call` is inlined into the one outside it when
    // optimised: the future is then built in place instead of being copied
    // out of line at each level. Not in debug builds: there every inlined
    // temporary keeps its own stack slot, and the whole preset's `call`
    // forced into one function made a single 2 MiB frame.
    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(node) = &self.node else {
            // The preset's switched-off piece.
            return ResponseFuture::new(self.inner.call(req), None);
        };
        let stripe = thread_stripe();
        node.core.counts.get(stripe).started.incr(stripe);
        let start = Instant::now();
        // Layers inside that read the clock in this same `call` (the
        // preset's deadline) take this reading instead.
        let _now = crate::deadline::enter_now(start);
        let guard = Guard::new(node.clone(), start);
        ResponseFuture::new(self.inner.call(req), Some(guard))
    }
}
