//! A tower adapter for `governor`, the rate limiter Rust users reach for,
//! as thin as its direct API allows: [`GovernorService`] calls
//! `RateLimiter::check` (or `check_key` for a keyed limiter) in `call`,
//! then the inner service; a call over the limit fails at once, boxed as
//! steadfast's own rejection is. governor keeps time with `quanta` (the
//! TSC), not tokio's clock.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter};
use pin_project_lite::pin_project;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a call governor refused.
#[derive(Debug)]
pub struct Limited;

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rate limited")
    }
}

impl std::error::Error for Limited {}

/// Which governor limiter a service asks.
pub enum Governor<K: Hash + Eq + Clone> {
    /// One limit: `check()`.
    Direct(Arc<DefaultDirectRateLimiter>),
    /// A limit per key: `check_key(&key_of(req))`.
    Keyed(Arc<DefaultKeyedRateLimiter<K>>, fn(u64) -> K),
}

impl<K: Hash + Eq + Clone> Clone for Governor<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Direct(l) => Self::Direct(l.clone()),
            Self::Keyed(l, f) => Self::Keyed(l.clone(), *f),
        }
    }
}

/// A service behind a governor limiter; requests are `u64`s.
pub struct GovernorService<S, K: Hash + Eq + Clone = ()> {
    inner: S,
    limiter: Governor<K>,
}

impl<S, K: Hash + Eq + Clone> GovernorService<S, K> {
    /// `inner` behind `limiter`.
    pub fn new(inner: S, limiter: Governor<K>) -> Self {
        Self { inner, limiter }
    }
}

impl<S: Clone, K: Hash + Eq + Clone> Clone for GovernorService<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S, K> Service<u64> for GovernorService<S, K>
where
    S: Service<u64>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = GovernorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: u64) -> Self::Future {
        let allowed = match &self.limiter {
            Governor::Direct(l) => l.check().is_ok(),
            Governor::Keyed(l, key_of) => l.check_key(&key_of(req)).is_ok(),
        };
        if allowed {
            GovernorFuture::Called {
                future: self.inner.call(req),
            }
        } else {
            GovernorFuture::Limited
        }
    }
}

pin_project! {
    /// The response future of [`GovernorService`].
    #[project = GovernorProj]
    pub enum GovernorFuture<F> {
        /// Admitted: the inner call.
        Called { #[pin] future: F },
        /// Refused.
        Limited,
    }
}

impl<F, T, E> Future for GovernorFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GovernorProj::Called { future } => future.poll(cx).map_err(Into::into),
            GovernorProj::Limited => Poll::Ready(Err(Box::new(Limited))),
        }
    }
}
