use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::error::CircuitOpen;
use super::future::{Guard, ResponseFuture};
use super::state::Core;
use crate::classify::Classify;
use crate::error::BoxError;
use crate::metrics::{stripe_count, thread_slot};

/// What a response future holds on to: the breaker and the classifier.
///
/// Each stripe (thread slot) has its own `Arc`, so the per-call reference
/// count increments of two cores land on different cache lines.
pub(crate) struct Node<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) classifier: C,
    /// This node's stripe in the core's striped counters and window.
    pub(crate) stripe: usize,
}

pub(crate) struct Nodes<C>(Arc<[Arc<Node<C>>]>);

impl<C> Clone for Nodes<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: Clone> Nodes<C> {
    pub(crate) fn new(core: Arc<Core>, classifier: C) -> Self {
        let n = stripe_count().next_power_of_two();
        Self(
            (0..n)
                .map(|stripe| {
                    Arc::new(Node {
                        core: core.clone(),
                        classifier: classifier.clone(),
                        stripe,
                    })
                })
                .collect(),
        )
    }
}

impl<C> Nodes<C> {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.0[0].core
    }

    #[inline]
    pub(crate) fn local(&self) -> &Arc<Node<C>> {
        &self.0[thread_slot() & (self.0.len() - 1)]
    }
}

/// Admits a call through `node`'s breaker, or builds the rejection.
#[inline]
pub(crate) fn admit<C, F>(node: &Arc<Node<C>>, call: impl FnOnce() -> F) -> ResponseFuture<F, C> {
    let core = &node.core;
    match core.try_acquire(node.stripe, || core.now()) {
        Ok(ticket) => ResponseFuture::called(call(), Guard::new(node.clone(), ticket)),
        Err(rejection) => ResponseFuture::rejected(CircuitOpen::new(
            rejection.state,
            rejection.retry_after.map(Duration::from_nanos),
        )),
    }
}

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`].
///
/// See the [module docs](super) for the semantics.
///
/// # Clone
///
/// Clones share the breaker: it belongs to the layer, and every service the
/// layer makes and every clone of those count against the same state.
///
/// [`CircuitBreakerLayer`]: super::CircuitBreakerLayer
pub struct CircuitBreaker<S, C = crate::classify::ErrorsAsFailures> {
    inner: S,
    nodes: Nodes<C>,
}

// === impl CircuitBreaker ===

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_nodes(inner: S, nodes: Nodes<C>) -> Self {
        Self { inner, nodes }
    }

    /// A handle on the breaker this service shares.
    pub fn handle(&self) -> super::CircuitBreakerHandle {
        super::CircuitBreakerHandle::new(self.nodes.core().clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            nodes: self.nodes.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", self.nodes.core())
            .finish()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
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

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let inner = &mut self.inner;
        admit(self.nodes.local(), || inner.call(req))
    }
}
