use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tower_service::Service;

use super::error::{BreakerError, CircuitOpen};
use super::future::{Guard, ResponseFuture};
use super::state::Core;
use crate::classify::Classify;
use crate::error::BoxError;
use crate::metrics::{stripe_count, thread_stripe};
use crate::runtime;

const LAYER: &str = "steadfast::circuit_breaker::CircuitBreaker";

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
        let n = stripe_count();
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

impl<C> Node<C> {
    /// The one node of a compact core (stripe 0), for a keyed breaker's key.
    pub(crate) fn single(core: Arc<Core>, classifier: C) -> Arc<Self> {
        Arc::new(Self {
            core,
            classifier,
            stripe: 0,
        })
    }
}

impl<C> Nodes<C> {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.0[0].core
    }

    #[inline]
    pub(crate) fn local(&self) -> &Arc<Node<C>> {
        match self.0.get(thread_stripe()) {
            Some(node) => node,
            None => &self.0[0],
        }
    }
}

/// Admits a call through `node`'s breaker: the guard that records its
/// outcome, or the rejection. The caller makes the inner call itself, so
/// the request is not moved into a closure on the way (a copy of a few
/// hundred bytes per call).
#[inline]
pub(crate) fn admit<C>(node: &Arc<Node<C>>) -> Result<Guard<C>, CircuitOpen> {
    let core = &node.core;
    match core.try_acquire(node.stripe, || core.now()) {
        Ok(ticket) => Ok(Guard::new(node.clone(), ticket)),
        Err(rejection) => Err(CircuitOpen::new(
            rejection.state,
            rejection.retry_after.map(Duration::from_nanos),
        )),
    }
}

/// Waits until the breaker admits a call and reserves it in `wait.permit`.
///
/// Out of line: the default mode's `poll_ready` stays small enough to be
/// inlined (with this inlined into it, it was a call of its own with a
/// 264-byte frame on every call).
#[inline(never)]
fn poll_admission<C>(wait: &mut Waiting<C>, nodes: &Nodes<C>, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        if wait.permit.is_some() {
            return Poll::Ready(());
        }
        let node = nodes.local();
        let core = &node.core;
        // Register for the wake-up before looking, so that a transition
        // between the look and the registration is not missed.
        let mut notified = Box::pin(core.notify.clone().notified_owned());
        notified.as_mut().enable();
        match core.try_reserve(node.stripe, || core.now()) {
            Ok(ticket) => {
                wait.permit = Some(Guard::new(node.clone(), ticket));
                wait.sleep = None;
                wait.notified = None;
                return Poll::Ready(());
            }
            Err(rejection) => {
                if let Some(after) = rejection.recheck_in {
                    let deadline = tokio::time::Instant::now() + Duration::from_nanos(after);
                    let sleep = match &mut wait.sleep {
                        Some(sleep) => {
                            sleep.as_mut().reset(deadline);
                            sleep
                        }
                        None => wait
                            .sleep
                            .insert(Box::pin(runtime::sleep_until(LAYER, deadline))),
                    };
                    if sleep.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                if notified.as_mut().poll(cx).is_ready() {
                    continue;
                }
                wait.notified = Some(notified);
                return Poll::Pending;
            }
        }
    }
}

/// A service guarded by a circuit breaker; made by [`CircuitBreakerLayer`].
///
/// See the [module docs](super) for the semantics.
///
/// # Clone
///
/// Clones share the breaker: it belongs to the layer, and every service the
/// layer makes and every clone of those count against the same state. In
/// the wait mode, a clone starts without the admission its original may
/// have reserved.
///
/// # Backpressure
///
/// By default `poll_ready` is the inner service's and a refused call fails
/// in its response future; with
/// [`wait_when_open`](super::CircuitBreakerLayer::wait_when_open),
/// `poll_ready` waits until the breaker admits a call. See the module docs.
///
/// # Panics
///
/// With [`wait_when_open`](super::CircuitBreakerLayer::wait_when_open),
/// a `call` panics, before calling the inner service, unless it runs
/// within a Tokio runtime with time enabled (waiting out the open duration
/// needs tokio's timer): "steadfast::circuit_breaker::CircuitBreaker needs a
/// Tokio runtime with time enabled (…)" — on the first call, not when the
/// breaker first opens. The default mode never needs a runtime.
///
/// [`CircuitBreakerLayer`]: super::CircuitBreakerLayer
pub struct CircuitBreaker<S, C = crate::classify::ErrorsAsFailures> {
    inner: S,
    nodes: Nodes<C>,
    /// Only for [`CircuitBreakerLayer::wait_when_open`]: boxed so the default
    /// mode pays one pointer for it.
    ///
    /// [`CircuitBreakerLayer::wait_when_open`]: super::CircuitBreakerLayer::wait_when_open
    wait: Option<Box<Waiting<C>>>,
}

/// The state of a service that waits in `poll_ready`.
struct Waiting<C> {
    /// Admission reserved by `poll_ready`, spent by `call`.
    permit: Option<Guard<C>>,
    /// Wakes the task when the open duration has passed, or when a full
    /// half-open phase may have timed out.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Wakes the task on a transition or a freed probe slot.
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl<C> Waiting<C> {
    fn new() -> Box<Self> {
        Box::new(Self {
            permit: None,
            sleep: None,
            notified: None,
        })
    }
}

// === impl CircuitBreaker ===

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_nodes(inner: S, nodes: Nodes<C>, wait_when_open: bool) -> Self {
        Self {
            inner,
            nodes,
            wait: wait_when_open.then(Waiting::new),
        }
    }

    /// A handle on the breaker this service shares.
    pub fn handle(&self) -> super::CircuitBreakerHandle {
        super::CircuitBreakerHandle::new(self.nodes.core().clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone starts without the reservation `poll_ready` may have made.
        Self {
            inner: self.inner.clone(),
            nodes: self.nodes.clone(),
            wait: self.wait.as_ref().map(|_| Waiting::new()),
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
    type Error = BreakerError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service first: a reserved probe slot should not sit idle
        // while the inner service is not ready.
        ready!(self.inner.poll_ready(cx)).map_err(|e| BreakerError::Inner(e.into()))?;
        match &mut self.wait {
            None => Poll::Ready(Ok(())),
            Some(wait) => poll_admission(wait, &self.nodes, cx).map(Ok),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(wait) = &mut self.wait {
            // Waiting out an open breaker needs the timer: check on every
            // call, not only when the breaker first opens.
            runtime::assert_timer(LAYER);
            let guard = wait.permit.take().expect(
                "CircuitBreaker::call before poll_ready returned Ready: \
                 a wait_when_open service reserves admission in poll_ready",
            );
            return ResponseFuture::called(self.inner.call(req), guard);
        }
        match admit(self.nodes.local()) {
            Ok(guard) => ResponseFuture::called(self.inner.call(req), guard),
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
