//! The breaker piece of the stack: off, one breaker, or one per key.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::toggle::ToggleFuture;
use crate::circuit_breaker::future::ResponseFuture;
use crate::circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, KeyOf, KeyedCircuitBreaker, KeyedCircuitBreakerLayer,
};
use crate::classify::Classify;
use crate::error::BoxError;

/// How the stack's breakers are keyed: [`NoKey`] (one breaker for every
/// call) or `keys::ByAuthority` (one per backend host; feature `http`).
pub trait BreakerKey {
    /// The key type: one breaker per distinct value.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;
}

/// One breaker for every call: the key is never computed, and fits every
/// request type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NoKey;

impl<Req> KeyOf<Req> for NoKey {
    type Key = ();

    #[inline]
    fn key_of(&self, _req: &Req) {}
}

impl BreakerKey for NoKey {
    type Key = ();
}

#[cfg(feature = "http")]
impl BreakerKey for crate::circuit_breaker::keys::ByAuthority {
    type Key = crate::circuit_breaker::keys::AuthorityKey;
}

/// The circuit-breaker piece of [`ResilienceLayer`](super::ResilienceLayer):
/// switched off, one breaker for every call, or one breaker per key.
pub enum BreakerLayer<C, Kf: BreakerKey = NoKey> {
    /// No breaker.
    Off,
    /// One breaker.
    Single(CircuitBreakerLayer<C>),
    /// One breaker per key.
    Keyed(KeyedCircuitBreakerLayer<Kf::Key, Kf, C>),
}

impl<C, Kf: BreakerKey> Clone for BreakerLayer<C, Kf> {
    fn clone(&self) -> Self {
        match self {
            Self::Off => Self::Off,
            Self::Single(l) => Self::Single(l.clone()),
            Self::Keyed(l) => Self::Keyed(l.clone()),
        }
    }
}

impl<C, Kf: BreakerKey> fmt::Debug for BreakerLayer<C, Kf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::Single(l) => f.debug_tuple("Single").field(l).finish(),
            Self::Keyed(l) => f.debug_tuple("Keyed").field(l).finish(),
        }
    }
}

impl<S, C, Kf: BreakerKey> Layer<S> for BreakerLayer<C, Kf> {
    type Service = Breaker<S, C, Kf>;

    fn layer(&self, inner: S) -> Self::Service {
        match self {
            Self::Off => Breaker::Off(inner),
            Self::Single(l) => Breaker::Single(l.layer(inner)),
            Self::Keyed(l) => Breaker::Keyed(l.layer(inner)),
        }
    }
}

/// The service of a [`BreakerLayer`].
///
/// # Clone
///
/// Clones share the breakers (see
/// [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker)).
pub enum Breaker<S, C, Kf: BreakerKey = NoKey> {
    /// No breaker: calls go straight to the inner service.
    Off(S),
    /// One breaker.
    Single(CircuitBreaker<S, C>),
    /// One breaker per key.
    Keyed(KeyedCircuitBreaker<S, Kf::Key, Kf, C>),
}

impl<S: Clone, C, Kf: BreakerKey> Clone for Breaker<S, C, Kf> {
    fn clone(&self) -> Self {
        match self {
            Self::Off(s) => Self::Off(s.clone()),
            Self::Single(s) => Self::Single(s.clone()),
            Self::Keyed(s) => Self::Keyed(s.clone()),
        }
    }
}

impl<S: fmt::Debug, C, Kf: BreakerKey> fmt::Debug for Breaker<S, C, Kf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off(s) => f.debug_tuple("Off").field(s).finish(),
            Self::Single(s) => f.debug_tuple("Single").field(s).finish(),
            Self::Keyed(s) => f.debug_tuple("Keyed").field(s).finish(),
        }
    }
}

impl<S, C, Kf, Req> Service<Req> for Breaker<S, C, Kf>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError> + Clone,
    Kf: BreakerKey + KeyOf<Req, Key = <Kf as BreakerKey>::Key>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ToggleFuture<ResponseFuture<S::Future, C>, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Off(s) => s.poll_ready(cx).map_err(Into::into),
            Self::Single(s) => s.poll_ready(cx).map_err(Into::into),
            Self::Keyed(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Self::Off(s) => ToggleFuture::off(s.call(req)),
            Self::Single(s) => ToggleFuture::on(s.call(req)),
            Self::Keyed(s) => ToggleFuture::on(s.call(req)),
        }
    }
}
