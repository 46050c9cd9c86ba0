//! Tower adapters for the two peer breakers that are not tower layers,
//! recloser and failsafe, each as thin as their own future API allows.
//!
//! Both crates wrap a future, not a service: `AsyncRecloser::call(f)` and
//! failsafe's `futures::CircuitBreaker::call(f)` return a future that owns
//! a clone of the breaker (an `Arc`) and `f`, asks the breaker for
//! permission on its first poll and records the outcome when `f` ends. The
//! adapters here call the inner service and hand its future to that API,
//! so the response future is theirs, unchanged:
//!
//! - [`RecloserService`] returns `recloser::RecloserFuture<S::Future, AnyError>`;
//! - [`FailsafeService`] returns
//!   `failsafe::futures::ResponseFuture<S::Future, P, I, failsafe::Any>`.
//!
//! As in their own API, the inner service's `call` runs even when the
//! breaker then rejects (the future is built, never polled); `poll_ready`
//! forwards to the inner service and never consults the breaker. Every error
//! counts as a failure (`AnyError`, `failsafe::Any`), as steadfast's
//! `ErrorsAsFailures` and the other peers' defaults do.

use std::task::{Context, Poll};

use failsafe::failure_policy::FailurePolicy;
use failsafe::futures::CircuitBreaker as _;
use failsafe::{Instrument, StateMachine};
use recloser::{AnyError, AsyncRecloser, RecloserFuture};
use tower_layer::Layer;
use tower_service::Service;

// === impl RecloserLayer ===

/// Wraps services in a [`RecloserService`]; every service it makes shares
/// one breaker.
#[derive(Debug, Clone)]
pub struct RecloserLayer {
    breaker: AsyncRecloser,
}

impl RecloserLayer {
    /// A layer around `breaker` (e.g. `recloser::Recloser::default().into()`).
    pub fn new(breaker: impl Into<AsyncRecloser>) -> Self {
        Self {
            breaker: breaker.into(),
        }
    }
}

impl<S> Layer<S> for RecloserLayer {
    type Service = RecloserService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecloserService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

// === impl RecloserService ===

/// A service behind a recloser breaker; its response future is
/// `recloser::RecloserFuture`.
#[derive(Debug, Clone)]
pub struct RecloserService<S> {
    inner: S,
    breaker: AsyncRecloser,
}

impl<S> RecloserService<S> {
    /// The breaker, shared with every clone.
    pub fn breaker(&self) -> &AsyncRecloser {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, T, E> Service<Req> for RecloserService<S>
where
    S: Service<Req, Response = T, Error = E>,
{
    type Response = T;
    type Error = recloser::Error<E>;
    type Future = RecloserFuture<S::Future, AnyError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(recloser::Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

// === impl FailsafeLayer ===

/// Wraps services in a [`FailsafeService`]; every service it makes shares
/// one breaker.
pub struct FailsafeLayer<P, I> {
    breaker: StateMachine<P, I>,
}

impl<P, I> FailsafeLayer<P, I> {
    /// A layer around `breaker` (e.g. `failsafe::Config::new().build()`).
    pub fn new(breaker: StateMachine<P, I>) -> Self {
        Self { breaker }
    }
}

impl<P, I> Clone for FailsafeLayer<P, I> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
        }
    }
}

impl<P, I> std::fmt::Debug for FailsafeLayer<P, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailsafeLayer").finish_non_exhaustive()
    }
}

impl<S, P, I> Layer<S> for FailsafeLayer<P, I> {
    type Service = FailsafeService<S, P, I>;

    fn layer(&self, inner: S) -> Self::Service {
        FailsafeService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

// === impl FailsafeService ===

/// A service behind a failsafe breaker; its response future is
/// `failsafe::futures::ResponseFuture`.
pub struct FailsafeService<S, P, I> {
    inner: S,
    breaker: StateMachine<P, I>,
}

impl<S, P, I> FailsafeService<S, P, I> {
    /// The breaker, shared with every clone.
    pub fn breaker(&self) -> &StateMachine<P, I> {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, P, I> Clone for FailsafeService<S, P, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<S, P, I> std::fmt::Debug for FailsafeService<S, P, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailsafeService").finish_non_exhaustive()
    }
}

impl<S, P, I, Req, T, E> Service<Req> for FailsafeService<S, P, I>
where
    S: Service<Req, Response = T, Error = E>,
    P: FailurePolicy + Send + Sync,
    I: Instrument + Send + Sync,
{
    type Response = T;
    type Error = failsafe::Error<E>;
    type Future = failsafe::futures::ResponseFuture<S::Future, P, I, failsafe::Any>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}
